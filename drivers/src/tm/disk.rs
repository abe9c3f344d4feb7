//! A VM's disks as the transfer drivers see them, read from the DISK and CONTEXT vectors
//! oned writes into the VM document (fact sheet §6): each one checked once here, so the
//! operations work on typed values and a bad attribute is an error naming the DISK and the
//! attribute.

use super::qemu_img::Format;
use crate::{Error, Result};
use one_proto::template::{Template, Vector};
use std::path::{Component, Path, PathBuf};

/// How an image disk reaches the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// CLONE=YES: the VM gets its own copy (a qcow2 overlay of a qcow2 image, a copy of a
    /// raw one); the image stays untouched.
    Clone,
    /// A persistent image (CLONE=NO), a CD-ROM or a block device: the VM uses the image
    /// itself.
    Link,
}

/// What the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Disk,
    Cdrom,
    Block,
}

/// A DISK backed by an image of a datastore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDisk {
    pub id: u32,
    /// The image file (its SOURCE), as the frontend and every host of a shared datastore
    /// name it.
    pub source: PathBuf,
    pub format: Format,
    pub use_: Use,
    pub device: Device,
    /// SIZE (MB): larger than ORIGINAL_SIZE when the VM asked for a bigger disk.
    pub size_mb: Option<u64>,
    /// ORIGINAL_SIZE (MB): the image's size.
    pub original_size_mb: Option<u64>,
    /// SAVE=YES: a persistent disk whose content goes back to the image at terminate.
    pub save: bool,
    pub target: Option<String>,
}

impl ImageDisk {
    /// The size the VM's copy must be grown to, in bytes, when SIZE exceeds ORIGINAL_SIZE.
    pub fn grow_to_bytes(&self) -> Option<u64> {
        match (self.size_mb, self.original_size_mb) {
            (Some(size), Some(orig)) if size > orig => size.checked_mul(1 << 20),
            _ => None,
        }
    }
}

/// What a volatile disk holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Volatile {
    /// TYPE=fs: empty, or formatted with FS (ext4, xfs, ...).
    Fs { fs: Option<String> },
    /// TYPE=swap: a swap area (always raw: mkswap writes its signature into the file).
    Swap,
}

/// A volatile DISK (TYPE=fs or swap): made empty in the VM's directory, gone with the VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolatileDisk {
    pub id: u32,
    pub kind: Volatile,
    pub size_mb: u64,
    pub format: Format,
    pub target: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disk {
    Image(ImageDisk),
    Volatile(VolatileDisk),
}

impl Disk {
    pub fn id(&self) -> u32 {
        match self {
            Disk::Image(d) => d.id,
            Disk::Volatile(d) => d.id,
        }
    }

    pub fn format(&self) -> Format {
        match self {
            Disk::Image(d) => d.format,
            Disk::Volatile(d) => d.format,
        }
    }

    pub fn target(&self) -> Option<&str> {
        match self {
            Disk::Image(d) => d.target.as_deref(),
            Disk::Volatile(d) => d.target.as_deref(),
        }
    }

    /// Whether the VM writes a file of its own in its directory (a clone or a volatile
    /// disk), which is what disk snapshots and save-as of the current state work on.
    pub fn owned_by_vm(&self) -> bool {
        match self {
            Disk::Image(d) => d.use_ == Use::Clone,
            Disk::Volatile(_) => true,
        }
    }

    /// Reads one DISK vector.
    pub fn from_vector(d: &Vector) -> Result<Disk> {
        let id = disk_id(d)?;
        let bad = |attr: &str, why: String| Error::Refused(format!("DISK {id} {attr}: {why}"));
        let kind = sub(d, "TYPE").unwrap_or("FILE").to_ascii_uppercase();
        let format = match sub(d, "FORMAT").or_else(|| sub(d, "DRIVER")) {
            None => Format::Raw,
            Some(f) => Format::parse(f).map_err(|e| bad("FORMAT", e.to_string()))?,
        };
        let mb = |attr: &str| -> Result<Option<u64>> {
            match sub(d, attr) {
                None => Ok(None),
                Some(v) => v
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| bad(attr, format!("{v:?} is not a size in MB"))),
            }
        };
        let size_mb = mb("SIZE")?;
        let target = sub(d, "TARGET").map(str::to_string);
        if matches!(kind.as_str(), "FS" | "SWAP") {
            let size_mb = size_mb
                .filter(|s| *s > 0)
                .ok_or_else(|| bad("SIZE", "a volatile disk needs a size in MB".into()))?;
            let kind = if kind == "SWAP" {
                Volatile::Swap
            } else {
                Volatile::Fs {
                    fs: sub(d, "FS").map(|s| s.to_ascii_lowercase()),
                }
            };
            let format = if kind == Volatile::Swap {
                Format::Raw
            } else {
                format
            };
            return Ok(Disk::Volatile(VolatileDisk {
                id,
                kind,
                size_mb,
                format,
                target,
            }));
        }
        let device = match kind.as_str() {
            "FILE" | "DISK" => Device::Disk,
            "CDROM" => Device::Cdrom,
            "BLOCK" => Device::Block,
            other => {
                return Err(bad(
                    "TYPE",
                    format!("{other:?}: expected FILE, BLOCK, CDROM, fs or swap"),
                ));
            }
        };
        let source = sub(d, "SOURCE").ok_or_else(|| {
            bad(
                "SOURCE",
                "no SOURCE and not a volatile (TYPE=fs/swap) disk".into(),
            )
        })?;
        let source = PathBuf::from(source);
        if !source.is_absolute()
            || source
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(bad(
                "SOURCE",
                format!("{}: not a plain absolute path", source.display()),
            ));
        }
        let linked = yes(d, "PERSISTENT")
            || sub(d, "CLONE").is_some_and(|c| c.eq_ignore_ascii_case("no"))
            || device != Device::Disk;
        Ok(Disk::Image(ImageDisk {
            id,
            source,
            format: if device == Device::Cdrom {
                Format::Raw
            } else {
                format
            },
            use_: if linked { Use::Link } else { Use::Clone },
            device,
            size_mb,
            original_size_mb: mb("ORIGINAL_SIZE")?,
            save: yes(d, "SAVE") || yes(d, "PERSISTENT"),
            target,
        }))
    }
}

/// The context CD: `context.sh` made of the CONTEXT vector, as `disk.<id>`.
#[derive(Clone, Debug, PartialEq)]
pub struct ContextCd {
    pub id: u32,
    pub vars: Vector,
}

/// Every disk of a VM and its context CD.
#[derive(Clone, Debug, PartialEq)]
pub struct VmDisks {
    pub disks: Vec<Disk>,
    pub context: Option<ContextCd>,
}

impl VmDisks {
    /// The DISK vectors and the CONTEXT of a VM template (`/VM/TEMPLATE`).
    pub fn from_template(t: &Template) -> Result<VmDisks> {
        let disks = t
            .vectors("DISK")
            .map(Disk::from_vector)
            .collect::<Result<Vec<_>>>()?;
        let mut seen = std::collections::BTreeSet::new();
        for d in &disks {
            if !seen.insert(d.id()) {
                return Err(Error::Refused(format!("two DISKs have DISK_ID {}", d.id())));
            }
        }
        let context = match t.vector("CONTEXT") {
            Some(ctx) if sub(ctx, "DISK_ID").is_some() => Some(ContextCd {
                id: disk_id(ctx).map_err(|e| Error::Refused(format!("CONTEXT: {e}")))?,
                vars: ctx.clone(),
            }),
            _ => None,
        };
        Ok(VmDisks { disks, context })
    }

    pub fn disk(&self, id: u32) -> Result<&Disk> {
        self.disks
            .iter()
            .find(|d| d.id() == id)
            .ok_or_else(|| Error::Refused(format!("the VM has no DISK {id}")))
    }
}

fn sub<'a>(v: &'a Vector, name: &str) -> Option<&'a str> {
    v.get(name).map(str::trim).filter(|s| !s.is_empty())
}

fn yes(v: &Vector, name: &str) -> bool {
    sub(v, name).is_some_and(|s| s.eq_ignore_ascii_case("yes"))
}

/// DISK_ID as a number: it names the file `disk.<id>`, so nothing else is accepted.
fn disk_id(d: &Vector) -> Result<u32> {
    let raw = sub(d, "DISK_ID").unwrap_or("");
    raw.parse()
        .map_err(|_| Error::Refused(format!("DISK_ID {raw:?} is not a disk id")))
}

/// Whether `path` is an absolute path without `.` or `..`.
pub fn plain(path: &Path) -> bool {
    path.is_absolute()
        && !path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(pairs: &[(&str, &str)]) -> Vector {
        let mut v = Vector::new();
        for (k, val) in pairs {
            v.set(k, *val);
        }
        v
    }

    #[test]
    fn image_disks_clone_or_link() {
        let d = Disk::from_vector(&v(&[
            ("DISK_ID", "0"),
            ("SOURCE", "/ds/1/abc"),
            ("FORMAT", "qcow2"),
            ("CLONE", "YES"),
            ("SIZE", "2048"),
            ("ORIGINAL_SIZE", "1024"),
            ("TARGET", "vda"),
        ]))
        .unwrap();
        let Disk::Image(i) = &d else { panic!() };
        assert_eq!(
            (i.use_, i.format, i.save),
            (Use::Clone, Format::Qcow2, false)
        );
        assert_eq!(i.grow_to_bytes(), Some(2048 << 20));
        assert!(d.owned_by_vm());

        let p = Disk::from_vector(&v(&[
            ("DISK_ID", "1"),
            ("SOURCE", "/ds/1/p"),
            ("PERSISTENT", "YES"),
            ("CLONE", "NO"),
            ("SAVE", "YES"),
        ]))
        .unwrap();
        let Disk::Image(p) = p else { panic!() };
        assert_eq!((p.use_, p.save, p.format), (Use::Link, true, Format::Raw));
        assert_eq!(p.grow_to_bytes(), None);

        let cd = Disk::from_vector(&v(&[
            ("DISK_ID", "2"),
            ("SOURCE", "/ds/1/iso"),
            ("TYPE", "CDROM"),
            ("CLONE", "YES"),
        ]))
        .unwrap();
        let Disk::Image(cd) = cd else { panic!() };
        assert_eq!((cd.use_, cd.device), (Use::Link, Device::Cdrom));
    }

    #[test]
    fn volatile_disks() {
        let d = Disk::from_vector(&v(&[
            ("DISK_ID", "3"),
            ("TYPE", "fs"),
            ("SIZE", "16"),
            ("FS", "EXT4"),
            ("FORMAT", "qcow2"),
        ]))
        .unwrap();
        assert_eq!(
            d,
            Disk::Volatile(VolatileDisk {
                id: 3,
                kind: Volatile::Fs {
                    fs: Some("ext4".into())
                },
                size_mb: 16,
                format: Format::Qcow2,
                target: None,
            })
        );
        let s = Disk::from_vector(&v(&[
            ("DISK_ID", "4"),
            ("TYPE", "swap"),
            ("SIZE", "8"),
            ("FORMAT", "qcow2"),
        ]))
        .unwrap();
        assert_eq!(s.format(), Format::Raw, "swap is raw");
    }

    #[test]
    fn bad_disks_name_the_attribute() {
        let e = |pairs: &[(&str, &str)]| Disk::from_vector(&v(pairs)).unwrap_err().to_string();
        assert_eq!(
            e(&[("DISK_ID", "0"), ("TYPE", "fs")]),
            "DISK 0 SIZE: a volatile disk needs a size in MB"
        );
        assert!(e(&[("DISK_ID", "0"), ("SOURCE", "../etc/passwd")]).contains("absolute"));
        assert!(e(&[("DISK_ID", "0"), ("SOURCE", "/a/../b")]).contains("absolute"));
        assert!(e(&[("DISK_ID", "0")]).contains("no SOURCE"));
        assert!(e(&[("DISK_ID", "x")]).contains("not a disk id"));
        assert!(
            e(&[("DISK_ID", "0"), ("SOURCE", "/a"), ("FORMAT", "vmdk")]).contains("DISK 0 FORMAT")
        );
        assert!(e(&[("DISK_ID", "0"), ("SOURCE", "/a"), ("SIZE", "-1")]).contains("DISK 0 SIZE"));
    }

    #[test]
    fn a_vm_with_a_context_cd() {
        let t = Template::parse(
            "DISK=[DISK_ID=0, SOURCE=\"/ds/1/a\"]\nDISK=[DISK_ID=1, TYPE=swap, SIZE=4]\n\
             CONTEXT=[DISK_ID=2, HOSTNAME=x]",
        )
        .unwrap();
        let vm = VmDisks::from_template(&t).unwrap();
        assert_eq!(vm.disks.len(), 2);
        assert_eq!(vm.context.as_ref().unwrap().id, 2);
        assert!(vm.disk(1).is_ok() && vm.disk(7).is_err());
        let dup = Template::parse(
            "DISK=[DISK_ID=0, TYPE=swap, SIZE=4]\nDISK=[DISK_ID=0, TYPE=swap, SIZE=4]",
        )
        .unwrap();
        assert!(VmDisks::from_template(&dup).is_err());
    }
}
