//! The transfer drivers' [`LiveDisk`] with libvirt: what a running domain does for a disk it
//! holds open. External disk-only snapshots reusing the overlay the driver made, block
//! pull / commit / copy jobs waited for, block resize. libvirt names backing files by their
//! index in the chain (`vda[2]`), read from the domain's live XML; the drivers give paths.

use one_drivers::tm::{Format, LiveDisk};
use one_drivers::{Error, Result};
use quick_xml::Reader;
use quick_xml::events::Event;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use virt::domain::Domain;

/// How long a block job may run before the operation gives up on it.
const JOB_LIMIT: Duration = Duration::from_secs(600);
const JOB_POLL: Duration = Duration::from_millis(50);

pub struct LibvirtDisk<'a> {
    pub dom: &'a Domain,
}

fn fail(what: String, e: &virt::error::Error) -> Error {
    Error::Command {
        cmd: format!("libvirt {what}"),
        detail: e.message().to_string(),
    }
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Refused(format!("{s:?} holds a NUL byte")))
}

/// One file of a disk's chain as the live XML shows it: its path and libvirt's index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub path: PathBuf,
    pub index: Option<u32>,
}

/// The chain of disk `target` in a domain's live XML, top first.
pub fn disk_chain(xml: &str, target: &str) -> Option<Vec<Layer>> {
    let mut reader = Reader::from_str(xml);
    // Inside <devices><disk>: collect layers; a disk is ours once its <target dev> matches.
    let mut in_disk = false;
    let mut layers: Vec<Layer> = Vec::new();
    let mut pending_index: Vec<Option<u32>> = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut ours = false;
    let attr = |e: &quick_xml::events::BytesStart<'_>, name: &str| -> Option<String> {
        e.attributes()
            .flatten()
            .find(|a| a.key.into_inner() == name)
            .and_then(|a| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .ok()
                    .map(|v| v.into_owned())
            })
    };
    loop {
        let (e, empty) = match reader.read_event() {
            Ok(Event::Start(e)) => (e, false),
            Ok(Event::Empty(e)) => (e, true),
            Ok(Event::End(_)) => {
                if let Some(name) = stack.pop() {
                    if name == "disk" && stack.len() == 2 {
                        if ours {
                            return Some(layers);
                        }
                        in_disk = false;
                    }
                    if name == "backingStore" {
                        pending_index.pop();
                    }
                }
                continue;
            }
            Ok(Event::Eof) | Err(_) => return None,
            Ok(_) => continue,
        };
        let name = e.name().into_inner().to_string();
        let path: Vec<&str> = stack.iter().map(String::as_str).collect();
        if name == "disk" && path == ["domain", "devices"] {
            in_disk = true;
            ours = false;
            layers.clear();
            pending_index.clear();
        } else if in_disk {
            match name.as_str() {
                "target" if path.len() == 3 => {
                    ours = attr(&e, "dev").as_deref() == Some(target);
                }
                "backingStore" => {
                    pending_index.push(attr(&e, "index").and_then(|i| i.parse().ok()));
                }
                // A <mirror>'s source (a block copy running) is not part of the chain.
                "source" if matches!(path.last(), Some(&"disk") | Some(&"backingStore")) => {
                    if let Some(f) = attr(&e, "file").or_else(|| attr(&e, "dev")) {
                        let index = if path.len() == 3 {
                            attr(&e, "index").and_then(|i| i.parse().ok())
                        } else {
                            pending_index.last().copied().flatten()
                        };
                        layers.push(Layer {
                            path: PathBuf::from(f),
                            index,
                        });
                    }
                }
                _ => {}
            }
        }
        if !empty {
            stack.push(name);
        } else if name == "backingStore" {
            pending_index.pop();
        }
    }
}

/// One `<disk>` of a domain's XML: its target, `device` (disk, cdrom) and top file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskDev {
    pub target: String,
    pub device: String,
    pub top: Option<PathBuf>,
}

/// The `<disk>` devices of a domain's XML.
pub fn disk_devices(xml: &str) -> Vec<DiskDev> {
    let mut out = Vec::new();
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut cur: Option<DiskDev> = None;
    let attr = |e: &quick_xml::events::BytesStart<'_>, name: &str| -> Option<String> {
        e.attributes()
            .flatten()
            .find(|a| a.key.into_inner() == name)
            .and_then(|a| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .ok()
                    .map(|v| v.into_owned())
            })
    };
    loop {
        let (e, empty) = match reader.read_event() {
            Ok(Event::Start(e)) => (e, false),
            Ok(Event::Empty(e)) => (e, true),
            Ok(Event::End(_)) => {
                if stack.pop().as_deref() == Some("disk")
                    && stack.len() == 2
                    && let Some(d) = cur.take()
                {
                    out.push(d);
                }
                continue;
            }
            Ok(Event::Eof) | Err(_) => return out,
            Ok(_) => continue,
        };
        let name = e.name().into_inner().to_string();
        let depth = stack.len();
        if name == "disk" && depth == 2 && stack[1] == "devices" {
            cur = Some(DiskDev {
                target: String::new(),
                device: attr(&e, "device").unwrap_or_else(|| "disk".into()),
                top: None,
            });
        } else if depth == 3
            && let Some(d) = cur.as_mut()
        {
            match name.as_str() {
                "target" => d.target = attr(&e, "dev").unwrap_or_default(),
                "source" => {
                    d.top = attr(&e, "file")
                        .or_else(|| attr(&e, "dev"))
                        .map(PathBuf::from)
                }
                _ => {}
            }
        }
        if !empty {
            stack.push(name);
        }
    }
}

/// Every disk target of the domain.
fn disk_targets(xml: &str) -> Vec<String> {
    let (_, disks) = super::device_targets(xml);
    disks
}

/// Whether a file is in a disk's `.snap` directory, whose files name each other by
/// relative names (kept relative by block jobs); others (the image) are named absolutely,
/// and libvirt refuses to keep a relative name to them.
fn in_snap_dir(p: &Path) -> bool {
    p.parent()
        .and_then(|d| d.file_name())
        .is_some_and(|n| n.to_string_lossy().ends_with(".snap"))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

impl LibvirtDisk<'_> {
    fn xml(&self) -> Result<String> {
        self.dom
            .xml_desc(0)
            .map_err(|e| fail("domain XML".into(), &e))
    }

    fn chain(&self, target: &str) -> Result<Vec<Layer>> {
        disk_chain(&self.xml()?, target)
            .ok_or_else(|| Error::Refused(format!("the running domain has no disk {target}")))
    }

    /// The files of the running chain, top first, as they are now named. libvirt keeps
    /// the name a layer was opened by, and a former top was opened through `disk.<id>`,
    /// which the driver has pointed elsewhere since; so the real files are found from the
    /// top down through each file's own backing name (the order is QEMU's).
    fn real_chain(&self, layers: &[Layer]) -> Result<Vec<PathBuf>> {
        let Some(top) = layers.first() else {
            return Ok(Vec::new());
        };
        let mut cur = top.path.canonicalize().unwrap_or_else(|_| top.path.clone());
        let mut out = vec![cur.clone()];
        while out.len() < layers.len() {
            let info = one_drivers::tm::qemu_img::info(&cur, true)?;
            let Some(next) = info.full_backing else { break };
            cur = next.canonicalize().unwrap_or(next);
            out.push(cur.clone());
        }
        Ok(out)
    }

    /// `vda[3]`: how libvirt names the layer holding `path`.
    fn layer_name(&self, target: &str, path: &Path) -> Result<String> {
        let chain = self.chain(target)?;
        let real = self.real_chain(&chain)?;
        let l = real
            .iter()
            .position(|r| same_file(r, path))
            .and_then(|p| chain.get(p))
            .ok_or_else(|| {
                Error::Refused(format!(
                    "{} is not in the running chain of {target}",
                    path.display()
                ))
            })?;
        let i = l.index.ok_or_else(|| {
            Error::Refused(format!(
                "libvirt gives no index for {} in {target}",
                path.display()
            ))
        })?;
        Ok(format!("{target}[{i}]"))
    }

    /// Waits while a block job runs on `target`; `ready`: a mirror job (copy) that is done
    /// copying and waits to be finished, which it answers as soon as it is.
    fn wait_job(&self, target: &str, what: &str, ready: bool) -> Result<()> {
        let disk = cstr(target)?;
        let start = Instant::now();
        loop {
            let mut info = virt::sys::virDomainBlockJobInfo {
                type_: 0,
                bandwidth: 0,
                cur: 0,
                end: 0,
            };
            // SAFETY: `self.dom` is a live handle; `disk` and `info` outlive the call.
            let rc = unsafe {
                virt::sys::virDomainGetBlockJobInfo(self.dom.as_ptr(), disk.as_ptr(), &mut info, 0)
            };
            if rc < 0 {
                return Err(fail(
                    format!("block job of {target}"),
                    &virt::error::Error::last_error(),
                ));
            }
            if rc == 0 {
                return Ok(()); // no job any more
            }
            if ready && info.end > 0 && info.cur == info.end {
                let xml = self.xml()?;
                if xml.contains("ready='yes'") || xml.contains("ready=\"yes\"") {
                    return Ok(());
                }
            }
            if start.elapsed() > JOB_LIMIT {
                return Err(Error::Refused(format!(
                    "{what} of {target} did not finish in {} s ({} of {} bytes)",
                    JOB_LIMIT.as_secs(),
                    info.cur,
                    info.end
                )));
            }
            std::thread::sleep(JOB_POLL);
        }
    }
}

impl LiveDisk for LibvirtDisk<'_> {
    fn top(&self, target: &str) -> Result<PathBuf> {
        self.chain(target)?
            .into_iter()
            .next()
            .map(|l| l.path)
            .ok_or_else(|| Error::Refused(format!("{target} has no source file")))
    }

    fn snapshot_to(&self, target: &str, overlay: &Path) -> Result<()> {
        let xml = self.xml()?;
        let mut doc = String::from("<domainsnapshot><disks>");
        for t in disk_targets(&xml) {
            if t == target {
                doc.push_str(&format!(
                    "<disk name='{t}' snapshot='external' type='file'><driver type='qcow2'/>\
                     <source file='{}'/></disk>",
                    xml_escape(&overlay.to_string_lossy())
                ));
            } else {
                doc.push_str(&format!("<disk name='{t}' snapshot='no'/>"));
            }
        }
        doc.push_str("</disks></domainsnapshot>");
        let flags = virt::sys::VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
            | virt::sys::VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
            | virt::sys::VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
            | virt::sys::VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT;
        self.dom
            .create_snapshot_xml(&doc, flags)
            .map_err(|e| fail(format!("disk-only snapshot of {target}"), &e))?;
        Ok(())
    }

    fn pull(&self, target: &str, base: Option<&Path>) -> Result<()> {
        let disk = cstr(target)?;
        let rc = match base {
            Some(b) => {
                let name = cstr(&self.layer_name(target, b)?)?;
                // SAFETY: live handle; the C strings outlive the call.
                unsafe {
                    virt::sys::virDomainBlockRebase(
                        self.dom.as_ptr(),
                        disk.as_ptr(),
                        name.as_ptr(),
                        0,
                        if in_snap_dir(b) {
                            virt::sys::VIR_DOMAIN_BLOCK_REBASE_RELATIVE
                        } else {
                            0
                        },
                    )
                }
            }
            // SAFETY: as above.
            None => unsafe {
                virt::sys::virDomainBlockPull(self.dom.as_ptr(), disk.as_ptr(), 0, 0)
            },
        };
        if rc < 0 {
            return Err(fail(
                format!("block pull of {target}"),
                &virt::error::Error::last_error(),
            ));
        }
        self.wait_job(target, "the block pull", false)?;
        let real = self.real_chain(&self.chain(target)?)?;
        let now = real.get(1).map(|p| p.as_path());
        let done = match (base, now) {
            (None, None) => true,
            (Some(b), Some(n)) => same_file(b, n),
            _ => false,
        };
        if !done {
            return Err(Error::Refused(format!(
                "the block pull of {target} ended without finishing (see libvirt's log of the \
                 domain)"
            )));
        }
        Ok(())
    }

    fn commit(&self, target: &str, top: &Path, base: &Path) -> Result<()> {
        let disk = cstr(target)?;
        let top_name = cstr(&self.layer_name(target, top)?)?;
        let base_name = cstr(&self.layer_name(target, base)?)?;
        // SAFETY: live handle; the C strings outlive the call.
        let rc = unsafe {
            virt::sys::virDomainBlockCommit(
                self.dom.as_ptr(),
                disk.as_ptr(),
                base_name.as_ptr(),
                top_name.as_ptr(),
                0,
                if in_snap_dir(base) {
                    virt::sys::VIR_DOMAIN_BLOCK_COMMIT_RELATIVE
                } else {
                    0
                },
            )
        };
        if rc < 0 {
            return Err(fail(
                format!("block commit of {target}"),
                &virt::error::Error::last_error(),
            ));
        }
        self.wait_job(target, "the block commit", false)?;
        let real = self.real_chain(&self.chain(target)?)?;
        if real.iter().any(|p| same_file(p, top)) {
            return Err(Error::Refused(format!(
                "the block commit of {} into {} ended without finishing (see libvirt's log of \
                 the domain)",
                top.display(),
                base.display()
            )));
        }
        Ok(())
    }

    fn copy_to(&self, target: &str, dst: &Path, format: Format) -> Result<()> {
        let disk = cstr(target)?;
        let xml = cstr(&format!(
            "<disk type='file'><source file='{}'/><driver type='{}'/></disk>",
            xml_escape(&dst.to_string_lossy()),
            format.as_str()
        ))?;
        // SAFETY: live handle; the C strings outlive the call; no typed parameters.
        let rc = unsafe {
            virt::sys::virDomainBlockCopy(
                self.dom.as_ptr(),
                disk.as_ptr(),
                xml.as_ptr(),
                std::ptr::null_mut(),
                0,
                virt::sys::VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB,
            )
        };
        if rc < 0 {
            return Err(fail(
                format!("block copy of {target}"),
                &virt::error::Error::last_error(),
            ));
        }
        let waited = self.wait_job(target, "the block copy", true);
        // Finishing the job without pivoting leaves `dst` a consistent copy of this
        // instant and the domain on its own disk (virsh blockcopy --finish).
        // SAFETY: as above.
        let rc = unsafe { virt::sys::virDomainBlockJobAbort(self.dom.as_ptr(), disk.as_ptr(), 0) };
        waited?;
        if rc < 0 {
            return Err(fail(
                format!("finishing the block copy of {target}"),
                &virt::error::Error::last_error(),
            ));
        }
        // The abort may return before the job is gone.
        self.wait_job(target, "the end of the block copy", false)
    }

    fn resize(&self, target: &str, bytes: u64) -> Result<()> {
        self.dom
            .block_resize(target, bytes, virt::sys::VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            .map_err(|e| fail(format!("block resize of {target}"), &e))
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_of_a_disk_from_the_live_xml() {
        let xml = "<domain><devices>\
            <disk type='file' device='cdrom'><source file='/vm/disk.1' index='4'/>\
              <backingStore/><target dev='hda'/></disk>\
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
              <source file='/vm/disk.0.snap/2' index='3'/>\
              <backingStore type='file' index='2'><format type='qcow2'/>\
                <source file='/vm/disk.0.snap/disk.0.snap/1'/>\
                <backingStore type='file' index='1'><format type='qcow2'/>\
                  <source file='/img/base'/><backingStore/></backingStore>\
              </backingStore>\
              <target dev='vda' bus='virtio'/></disk>\
            </devices></domain>";
        let c = disk_chain(xml, "vda").unwrap();
        assert_eq!(
            c,
            [
                Layer {
                    path: "/vm/disk.0.snap/2".into(),
                    index: Some(3)
                },
                Layer {
                    path: "/vm/disk.0.snap/disk.0.snap/1".into(),
                    index: Some(2)
                },
                Layer {
                    path: "/img/base".into(),
                    index: Some(1)
                },
            ]
        );
        assert_eq!(disk_chain(xml, "hda").unwrap().len(), 1);
        assert_eq!(disk_chain(xml, "vdz"), None);
    }
}
