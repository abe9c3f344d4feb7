//! Copying an image into a datastore (OpenNebula's `cp`) and cloning one: the bytes go to
//! `SOURCE.part`, which is inspected and renamed to `SOURCE` only when complete and
//! acceptable. The origin is only read (a staged upload is moved, and moved back if the
//! operation does not reach its end).

use super::{Facts, ImageFiles, http, inspect, policy, qemu, remove_file, sync_dir};
use crate::{Error, Result, Revert, fault};
use one_proto::ds::{Origin, Target, mb_ceil};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::Path;

/// Size (MB, rounded up) and format (when it can be told without copying) of what `origin`
/// names, after the path rules. A URL that does not say its length is 0 MB.
pub fn stat(origin: &Origin) -> Result<(u64, String)> {
    match origin {
        Origin::Path { path, policy } => {
            let mut o = policy::open(path, policy)?;
            file_stat(&mut o.file, o.len)
        }
        Origin::Staged { path } => {
            let p = Path::new(path);
            let mut f =
                File::open(p).map_err(|e| Error::io(format!("cannot open {path}"), p, e))?;
            let len = f
                .metadata()
                .map_err(|e| Error::io(format!("cannot stat {path}"), p, e))?
                .len();
            file_stat(&mut f, len)
        }
        Origin::Url { url, limits } => {
            let len = http::content_length(url, limits)?;
            if let Some(n) = len
                && n > limits.max_bytes
            {
                return Err(too_large(url, n, limits.max_bytes));
            }
            Ok((len.map(mb_ceil).unwrap_or(0), String::new()))
        }
    }
}

/// Size and format from a file's first bytes (a qcow2 header gives the virtual size).
fn file_stat(f: &mut File, len: u64) -> Result<(u64, String)> {
    let mut head = Vec::with_capacity(64);
    f.take(64).read_to_end(&mut head).map_err(|e| Error::Io {
        what: "cannot read the file".into(),
        err: e,
    })?;
    match qemu::sniff_bytes(&head)? {
        qemu::Format::Qcow2 => Ok((
            qemu::qcow2_header_size(&head)
                .map(mb_ceil)
                .unwrap_or(mb_ceil(len)),
            "qcow2".into(),
        )),
        qemu::Format::Raw => Ok((mb_ceil(len), "raw".into())),
    }
}

fn too_large(what: &str, n: u64, max: u64) -> Error {
    Error::Refused(format!(
        "{what} is larger ({} MB) than the {} MB allowed",
        mb_ceil(n),
        mb_ceil(max)
    ))
}

/// More than the datastore may take (its free space, LIMIT_MB): said as a full datastore.
fn no_room(f: &ImageFiles, what: &str, n: u64, room: u64) -> Error {
    f.no_space(Error::NoSpace {
        path: String::new(),
        what: format!(
            "{what} ({} MB and more) does not fit in the {} MB left (free space, LIMIT_MB)",
            mb_ceil(n),
            mb_ceil(room)
        ),
    })
}

/// How much a copy may write: the datastore's room, and for a download its own limit.
#[derive(Clone, Copy)]
struct Limit {
    room: u64,
    download: u64,
}

impl Limit {
    fn max(self) -> u64 {
        self.room.min(self.download)
    }

    /// The error for `n` bytes over the limit.
    fn exceeded(self, f: &ImageFiles, what: &str, n: u64) -> Error {
        if self.room <= self.download {
            no_room(f, what, n, self.room)
        } else {
            too_large(what, n, self.download)
        }
    }
}

/// Copies `src` into `dst` (a new file) within `limit`; answers the bytes copied.
fn pump(
    src: &mut dyn Read,
    dst: &mut File,
    limit: Limit,
    what: &str,
    f: &ImageFiles,
) -> Result<u64> {
    // One byte more than allowed tells an origin that is too large.
    let mut limited = src.take(limit.max().saturating_add(1));
    let n = std::io::copy(&mut limited, dst).map_err(|e| {
        // Read and write errors come back alike: a full disk is told by its errno.
        f.no_space(Error::io(format!("copying {what}"), &f.part, e))
    })?;
    if n > limit.max() {
        return Err(limit.exceeded(f, what, n));
    }
    Ok(n)
}

/// Copies `File` to `File` (std::io::copy uses copy_file_range between two files, like cp).
fn pump_file(src: &File, dst: &mut File, limit: Limit, what: &str, f: &ImageFiles) -> Result<u64> {
    let mut limited = src.take(limit.max().saturating_add(1));
    let n = std::io::copy(&mut limited, dst)
        .map_err(|e| f.no_space(Error::io(format!("copying {what}"), &f.part, e)))?;
    if n > limit.max() {
        return Err(limit.exceeded(f, what, n));
    }
    Ok(n)
}

fn create_part(f: &ImageFiles) -> Result<File> {
    remove_file(&f.part)?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&f.part)
        .map_err(|e| {
            f.no_space(Error::io(
                format!("cannot create {}", f.part.display()),
                &f.part,
                e,
            ))
        })
}

/// Closes the partial file, flushed to the disk first when `durable`.
fn finish_part(file: File, f: &ImageFiles, durable: bool) -> Result<()> {
    if !durable {
        return Ok(());
    }
    file.sync_all().map_err(|e| {
        f.no_space(Error::io(
            format!("cannot write {}", f.part.display()),
            &f.part,
            e,
        ))
    })
}

/// What a finished partial file is: inspected as a disk image (`disk`), else a plain file
/// of a files datastore.
fn facts_of(path: &Path, f: &ImageFiles, disk: bool) -> Result<Facts> {
    if disk {
        inspect(path, &f.dir)
    } else {
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("cannot stat {}", path.display()), path, e))?
            .len();
        Ok(Facts {
            format: "raw".into(),
            size_mb: mb_ceil(len),
            snapshots: Vec::new(),
        })
    }
}

/// Renames the partial file to SOURCE (the operation's commit) and, when `durable`, syncs
/// the directory.
fn commit<'a>(f: &'a ImageFiles, revert: &mut Revert<'a>, durable: bool) -> Result<()> {
    fault::step("move the image into place")?;
    std::fs::rename(&f.part, &f.file)
        .map_err(|e| Error::io(format!("cannot rename {}", f.part.display()), &f.file, e))?;
    // Back to the partial name, which the earlier undos take care of.
    revert.add("take the image back", move || {
        std::fs::rename(&f.file, &f.part)
            .map_err(|e| Error::io(format!("cannot rename {}", f.file.display()), &f.part, e))
    });
    fault::step("sync the datastore directory")?;
    if durable { sync_dir(&f.dir) } else { Ok(()) }
}

/// Copies an image in: `origin` to `to.source`, at most `max_bytes`. An image already at
/// SOURCE (a repeat after a crash between the rename and the answer) is answered as it is.
/// `durable`: the bytes reach the disk before the answer (fsync), so a READY image survives
/// a power cut too; without it, as `cp`, a killed process loses nothing but a power cut may.
pub fn copy_in(
    origin: &Origin,
    to: &Target,
    max_bytes: u64,
    disk: bool,
    durable: bool,
) -> Result<Facts> {
    let f = ImageFiles::of(to)?;
    if f.file.exists() {
        return facts_of(&f.file, &f, disk);
    }
    let mut revert = Revert::new();
    let f = &f;
    match origin {
        Origin::Path { path, policy } => {
            fault::step("open the origin")?;
            let o = policy::open(path, policy)?;
            fault::step("create the partial file")?;
            let mut out = create_part(f)?;
            revert.add("remove the partial file", || remove_file(&f.part));
            fault::step("copy")?;
            let limit = Limit {
                room: max_bytes,
                download: u64::MAX,
            };
            pump_file(&o.file, &mut out, limit, path, f)?;
            fault::step("sync the partial file")?;
            finish_part(out, f, durable)?;
        }
        Origin::Url { url, limits } => {
            fault::step("open the origin")?;
            let (mut body, len) = http::open(url, limits)?;
            let limit = Limit {
                room: max_bytes,
                download: limits.max_bytes,
            };
            if let Some(n) = len
                && n > limit.max()
            {
                return Err(limit.exceeded(f, url, n));
            }
            fault::step("create the partial file")?;
            let mut out = create_part(f)?;
            revert.add("remove the partial file", || remove_file(&f.part));
            fault::step("copy")?;
            let n = pump(&mut body, &mut out, limit, url, f)?;
            if let Some(want) = len
                && n != want
            {
                return Err(Error::Refused(format!(
                    "{url} ended after {n} of its {want} bytes"
                )));
            }
            fault::step("sync the partial file")?;
            finish_part(out, f, durable)?;
        }
        Origin::Staged { path } => {
            let staged = Path::new(path);
            fault::step("take the upload")?;
            let len = std::fs::metadata(staged)
                .map_err(|e| Error::io(format!("the upload {path} is gone"), staged, e))?
                .len();
            let limit = Limit {
                room: max_bytes,
                download: u64::MAX,
            };
            if len > max_bytes {
                return Err(limit.exceeded(f, "the upload", len));
            }
            remove_file(&f.part)?;
            match std::fs::rename(staged, &f.part) {
                Ok(()) => {
                    revert.add("give the upload back", move || {
                        std::fs::rename(&f.part, staged)
                            .map_err(|e| Error::io("cannot move the upload back", staged, e))
                    });
                }
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                    // Another file system: copied, and the upload removed once in place.
                    let src = File::open(staged)
                        .map_err(|e| Error::io(format!("cannot open {path}"), staged, e))?;
                    let mut out = create_part(f)?;
                    revert.add("remove the partial file", || remove_file(&f.part));
                    fault::step("copy")?;
                    pump_file(&src, &mut out, limit, "the upload", f)?;
                    finish_part(out, f, durable)?;
                }
                Err(e) => return Err(Error::io(format!("cannot move {path}"), staged, e)),
            }
        }
    }
    if durable && let Origin::Staged { .. } = origin {
        // An upload is written without fsync: its bytes reach the disk now.
        File::open(&f.part)
            .and_then(|x| x.sync_all())
            .map_err(|e| {
                f.no_space(Error::io(
                    format!("cannot write {}", f.part.display()),
                    &f.part,
                    e,
                ))
            })?;
    }
    fault::step("inspect the image")?;
    let facts = facts_of(&f.part, f, disk)?;
    commit(f, &mut revert, durable)?;
    if let Origin::Staged { path } = origin {
        // Copied across file systems: the upload's bytes are in the datastore now.
        remove_file(Path::new(path))?;
    }
    revert.success();
    Ok(facts)
}

/// A copy of image file `from` (another image's SOURCE) at `to.source` (`durable` as for
/// [`copy_in`]).
pub fn clone(from: &Path, to: &Target, durable: bool) -> Result<Facts> {
    let f = ImageFiles::of(to)?;
    if f.file.exists() {
        return inspect(&f.file, &f.dir);
    }
    let mut revert = Revert::new();
    fault::step("open the image to clone")?;
    let src = File::open(from)
        .map_err(|e| Error::io(format!("cannot open the image {}", from.display()), from, e))?;
    let len = src
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {}", from.display()), from, e))?
        .len();
    fault::step("create the partial file")?;
    let mut out = create_part(&f)?;
    revert.add("remove the partial file", || remove_file(&f.part));
    fault::step("copy")?;
    let limit = Limit {
        room: u64::MAX,
        download: len,
    };
    pump_file(&src, &mut out, limit, &from.display().to_string(), &f)?;
    fault::step("sync the partial file")?;
    finish_part(out, &f, durable)?;
    fault::step("inspect the image")?;
    let facts = inspect(&f.part, &f.dir)?;
    commit(&f, &mut revert, durable)?;
    revert.success();
    Ok(facts)
}
