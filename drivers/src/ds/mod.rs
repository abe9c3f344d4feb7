//! Datastore operations of the `fs` DS_MAD on image and file datastores, run by the frontend
//! agent (oned's own agent on its machine): copy an image in (from a path, a URL or an
//! upload), make an empty one, clone, delete, stat, resize, internal snapshots of qcow2
//! images, capacity and the token file of shared datastores (docs/storage.md).
//!
//! | operation | effect | undo when it does not reach its end |
//! |---|---|---|
//! | [`copy::copy_in`] | `SOURCE.part` written, inspected, renamed to `SOURCE` | the partial file removed (a staged upload moved back); the origin is never changed |
//! | [`make::mkfs`] | an empty image (with a file system) at `SOURCE` | its temporary files removed |
//! | [`copy::clone`] | a copy of another image at `SOURCE` | the partial file removed |
//! | [`remove`] | `SOURCE` and what an interrupted operation left of it removed | (a removal, repeated until it is done) |
//! | [`snap::resize`] | the image grown | (one qemu-img call) |
//! | [`snap::apply`] | revert, delete or flatten an internal snapshot | flatten: the temporary copy removed, the image untouched |
//! | [`monitor::measure`], [`monitor::prepare`] | capacity; the datastore directory and its token file | |
//!
//! Nothing is written or removed outside the image's own files (`SOURCE`, `SOURCE.part`,
//! `SOURCE.tmp`) and, for [`monitor::prepare`], the datastore's directory and token file.
//! A file system that fills up is reported as [`Error::NoSpace`] ("Not enough space in
//! datastore ..."), which oned shows in the image's ERROR.

pub mod copy;
pub mod http;
pub mod make;
pub mod monitor;
pub mod policy;
pub mod qemu;
pub mod snap;

#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

use crate::{Error, Result, paths};
use one_proto::ds::{DsReply, DsRequest, SnapshotInfo, Target, mb_ceil};
use std::path::{Path, PathBuf};

/// What an image is once an operation wrote or changed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub format: String,
    pub size_mb: u64,
    pub snapshots: Vec<SnapshotInfo>,
}

impl Facts {
    fn reply(self) -> DsReply {
        DsReply::Image {
            format: self.format,
            size_mb: self.size_mb,
            snapshots: self.snapshots,
        }
    }
}

/// An image's files: `SOURCE` in its datastore directory, and the temporary names an
/// operation writes before the final rename.
#[derive(Clone, Debug)]
pub struct ImageFiles {
    pub ds_id: i64,
    /// The datastore directory, symlinks resolved.
    pub dir: PathBuf,
    pub file: PathBuf,
    pub part: PathBuf,
    pub tmp: PathBuf,
}

impl ImageFiles {
    /// The files of `t`, checked: the datastore directory exists, and SOURCE is a file name
    /// right in it (nothing that could lead elsewhere).
    pub fn of(t: &Target) -> Result<ImageFiles> {
        let dir = Path::new(&t.ds.path);
        paths::plain_absolute(dir)?;
        if !dir.is_dir() {
            return Err(Error::Refused(format!(
                "the directory {} of datastore {} does not exist on the frontend",
                t.ds.path, t.ds.id
            )));
        }
        let real_dir = dir
            .canonicalize()
            .map_err(|e| Error::io(format!("cannot resolve {}", dir.display()), dir, e))?;
        let source = Path::new(&t.source);
        paths::plain_absolute(source)?;
        let name = source
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.starts_with('.'))
            .ok_or_else(|| Error::Refused(format!("SOURCE {} names no image file", t.source)))?;
        let parent = source.parent().unwrap_or(source);
        let real_parent = parent
            .canonicalize()
            .unwrap_or_else(|_| parent.to_path_buf());
        if real_parent != real_dir {
            return Err(Error::Refused(format!(
                "SOURCE {} is not a file of datastore {} ({})",
                t.source, t.ds.id, t.ds.path
            )));
        }
        let file = real_dir.join(name);
        Ok(ImageFiles {
            ds_id: t.ds.id,
            part: real_dir.join(format!("{name}.part")),
            tmp: real_dir.join(format!("{name}.tmp")),
            dir: real_dir,
            file,
        })
    }

    /// A full file system while writing, said for the image's ERROR.
    pub fn no_space(&self, e: Error) -> Error {
        match e {
            Error::NoSpace { what, .. } => Error::NoSpace {
                path: format!("datastore {} ({})", self.ds_id, self.dir.display()),
                what,
            },
            other => other,
        }
    }
}

/// Removes `p` if it is there (a file or a symlink; never a directory tree).
pub(crate) fn remove_file(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("cannot remove {}", p.display()), p, e)),
    }
}

/// fsync of a directory, so a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("cannot sync {}", dir.display()), dir, e))
}

/// Removes an image's file and whatever an interrupted operation left of it
/// (`SOURCE.part`, `SOURCE.tmp`; only those with `leftovers_only`). A missing file is fine:
/// removing is idempotent.
pub fn remove(t: &Target, leftovers_only: bool) -> Result<String> {
    let f = ImageFiles::of(t)?;
    let mut gone = Vec::new();
    let files: &[&PathBuf] = if leftovers_only {
        &[&f.part, &f.tmp]
    } else {
        &[&f.part, &f.tmp, &f.file]
    };
    for p in files {
        if std::fs::symlink_metadata(p).is_ok() {
            crate::fault::step("remove a file")?;
            remove_file(p)?;
            gone.push(p.display().to_string());
        }
    }
    if !gone.is_empty() {
        sync_dir(&f.dir)?;
    }
    Ok(if gone.is_empty() {
        format!("{}: nothing to remove", t.source)
    } else {
        format!("removed {}", gone.join(", "))
    })
}

/// What an image file is: format (sniffed, then confirmed by qemu-img), virtual size and
/// internal snapshots, refusing what a VM must not be given: an unsupported format, a
/// qcow2 external data file, or a backing file outside datastore directory `dir`.
pub fn inspect(file: &Path, dir: &Path) -> Result<Facts> {
    let format = qemu::sniff(file)?;
    let info = qemu::info(file, format)?;
    if let Some(d) = &info.data_file {
        return Err(Error::Refused(format!(
            "the image uses an external data file ({d}): not supported"
        )));
    }
    if let Some(b) = &info.backing {
        let named = Path::new(b);
        let full = if named.is_absolute() {
            named.to_path_buf()
        } else {
            dir.join(named)
        };
        let inside = !full
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
            && paths::resolved_inside(dir, &full).is_ok();
        if !inside {
            return Err(Error::Refused(format!(
                "the qcow2 image has a backing file outside its datastore ({b}): refused"
            )));
        }
    }
    let size_mb = mb_ceil(info.virtual_size);
    Ok(Facts {
        format: format.as_str().to_string(),
        size_mb,
        snapshots: info
            .snapshots
            .iter()
            .map(|s| SnapshotInfo {
                name: if s.name.is_empty() {
                    s.id.clone()
                } else {
                    s.name.clone()
                },
                date: s.date,
                size_mb,
            })
            .collect(),
    })
}

/// Runs one request of oned's (blocking: call it off the async runtime).
pub fn execute(req: &DsRequest) -> Result<DsReply> {
    Ok(match req {
        DsRequest::Stat { origin } => {
            let (size_mb, format) = copy::stat(origin)?;
            DsReply::Stat { size_mb, format }
        }
        DsRequest::CopyIn {
            origin,
            to,
            max_bytes,
            disk,
            durable,
        } => copy::copy_in(origin, to, *max_bytes, *disk, *durable)?.reply(),
        DsRequest::Mkfs {
            to,
            size_mb,
            format,
            fs,
        } => make::mkfs(to, *size_mb, qemu::Format::parse(format)?, fs)?.reply(),
        DsRequest::Clone { from, to, durable } => {
            copy::clone(Path::new(from), to, *durable)?.reply()
        }
        DsRequest::Rm {
            target,
            leftovers_only,
        } => DsReply::Done {
            info: remove(target, *leftovers_only)?,
        },
        DsRequest::Resize {
            target,
            format,
            size_mb,
        } => snap::resize(target, qemu::Format::parse(format)?, *size_mb)?.reply(),
        DsRequest::Snapshot {
            target,
            action,
            name,
        } => snap::apply(target, *action, name)?.reply(),
        DsRequest::Monitor { datastores, tokens } => DsReply::Monitor {
            figures: monitor::measure(datastores, tokens),
        },
        DsRequest::Prepare { ds, token } => DsReply::Done {
            info: monitor::prepare(ds, token.as_deref())?,
        },
        DsRequest::SaveStashed {
            stash,
            vm_id,
            disk_id,
            snapshot,
            format,
            to,
        } => DsReply::Done {
            info: crate::tm::local::save_stashed(
                Path::new(stash),
                *vm_id,
                *disk_id,
                *snapshot,
                &crate::tm::SaveAs {
                    datastore: PathBuf::from(&to.ds.path),
                    source: PathBuf::from(&to.source),
                    format: crate::tm::Format::parse(format)?,
                },
            )?,
        },
        DsRequest::CleanStaging { dir, keep } => DsReply::Done {
            info: monitor::clean_staging(Path::new(dir), keep)?,
        },
    })
}
