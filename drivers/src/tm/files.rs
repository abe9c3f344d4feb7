//! What every transfer driver does the same way with plain files on the host (Incus'
//! `generic_vfs`): atomic replacement (write a `.part`, rename), sparse copies, links,
//! volatile disks (MKIMAGE / MKSWAP), removal of a disk, the space a disk takes.

use super::disk::{Volatile, VolatileDisk};
use super::qemu_img::{self, Format};
use super::vmdir::VmDir;
use crate::{Error, Result, Revert, cmd, fault};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The file systems a volatile disk may be formatted with (OpenNebula's SUPPORTED_FS).
pub const SUPPORTED_FS: &[&str] = &["ext2", "ext3", "ext4", "xfs"];

/// `<path>.part`: where a file is written before it is renamed into place.
pub fn part(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Whether anything (a file, a dangling link) is at `path`.
pub fn present(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

pub fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| {
        Error::io(
            format!("cannot rename {} to {}", from.display(), to.display()),
            to,
            e,
        )
    })
}

/// Removes a file or a link; a missing one is fine. Answers whether there was one.
pub fn remove_file(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(
            format!("cannot remove {}", path.display()),
            path,
            e,
        )),
    }
}

/// Removes a directory tree; a missing one is fine.
pub fn remove_tree(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(
            format!("cannot read {}", path.display()),
            path,
            e,
        )),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path)
            .map(|()| true)
            .map_err(|e| Error::io(format!("cannot remove {}", path.display()), path, e)),
        Ok(_) => remove_file(path),
    }
}

/// Writes `bytes` to `path` through a `.part` file renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = part(path);
    std::fs::write(&tmp, bytes)
        .map_err(|e| Error::io(format!("cannot write {}", tmp.display()), &tmp, e))?;
    rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Makes `link` a symlink to `target`, replacing what is there in one step (a new link is
/// made beside it and renamed over it).
pub fn symlink_replace(target: &Path, link: &Path) -> Result<()> {
    let tmp = part(link);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .map_err(|e| Error::io(format!("cannot make the link {}", tmp.display()), &tmp, e))?;
    rename(&tmp, link).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The target of a link, `None` when `path` is not a link.
pub fn read_link(path: &Path) -> Option<PathBuf> {
    std::fs::read_link(path).ok()
}

/// Copies `src` to `dst` (created or truncated) keeping holes: only the data ranges of the
/// source are copied (SEEK_DATA / SEEK_HOLE, copy_file_range), so a 20 GiB sparse image
/// holding 100 MB copies 100 MB. The copy is flushed to disk before this returns. Answers
/// the bytes of data copied.
pub fn copy_sparse(src: &Path, dst: &Path) -> Result<u64> {
    use std::os::fd::AsRawFd;
    let input = std::fs::File::open(src)
        .map_err(|e| Error::io(format!("cannot open {}", src.display()), src, e))?;
    let len = input
        .metadata()
        .map_err(|e| Error::io(format!("cannot read {}", src.display()), src, e))?
        .len();
    let output = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(dst)
        .map_err(|e| Error::io(format!("cannot create {}", dst.display()), dst, e))?;
    let wr = |e: std::io::Error| Error::io(format!("cannot write {}", dst.display()), dst, e);
    output.set_len(len).map_err(wr)?;
    let (fi, fo) = (input.as_raw_fd(), output.as_raw_fd());
    let mut copied = 0u64;
    let mut pos: i64 = 0;
    let end = i64::try_from(len).unwrap_or(i64::MAX);
    while pos < end {
        // SAFETY: plain syscalls on file descriptors owned by `input` for this whole loop.
        let data = unsafe { libc::lseek(fi, pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // no data after pos: the rest is a hole
            }
            return Err(Error::io(format!("cannot read {}", src.display()), src, e));
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fi, data, libc::SEEK_HOLE) };
        let hole = if hole < 0 { end } else { hole.min(end) };
        let mut off_in: i64 = data;
        let mut off_out: i64 = data;
        while off_in < hole {
            let want = usize::try_from(hole - off_in)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            // SAFETY: valid fds, offsets are plain integers owned by this frame.
            let n = unsafe { libc::copy_file_range(fi, &mut off_in, fo, &mut off_out, want, 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                // Across file systems (or where the kernel cannot): plain reads and writes.
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                ) {
                    copied += copy_range(&input, &output, off_in as u64, (hole - off_in) as u64)
                        .map_err(|e| {
                            Error::io(format!("cannot copy to {}", dst.display()), dst, e)
                        })?;
                    break;
                }
                return Err(wr(e));
            }
            if n == 0 {
                break; // the source shrank under us
            }
            copied += n as u64;
        }
        pos = hole;
    }
    output.sync_all().map_err(wr)?;
    Ok(copied)
}

/// Copies `len` bytes at `at` from `input` to the same offset of `output` with reads and
/// writes (1 MiB at a time), skipping all-zero blocks (they stay holes).
fn copy_range(
    input: &std::fs::File,
    output: &std::fs::File,
    at: u64,
    len: u64,
) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from(len - done)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = input.read_at(&mut buf[..want], at + done)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            output.write_all_at(&buf[..n], at + done)?;
        }
        done += n as u64;
    }
    Ok(done)
}

/// Bytes the file (a link is followed) takes on disk.
pub fn allocated_bytes(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), path, e))?;
    Ok(m.blocks() * 512)
}

/// Whether `path` (a link is followed) is a block device.
pub fn is_block_device(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// MKIMAGE / MKSWAP: a volatile disk `disk.<id>`: an empty raw or qcow2 file of its size,
/// formatted with its FS (made raw, formatted, then converted when qcow2, as OpenNebula's
/// mkfs does) or made a swap area. Written as `.part` files renamed into place: on failure
/// nothing is left.
pub fn make_volatile(dir: &VmDir, d: &VolatileDisk) -> Result<String> {
    let file = dir.disk(d.id);
    let size = d.size_mb.checked_mul(1 << 20).ok_or_else(|| {
        Error::Refused(format!("DISK {} SIZE: {} MB is too large", d.id, d.size_mb))
    })?;
    let tmp = part(&file);
    let mut undo = Revert::new();
    let tmp_ = tmp.clone();
    undo.add("remove the partial disk", move || {
        remove_file(&tmp_).map(drop)
    });
    let what = match &d.kind {
        Volatile::Swap => {
            fault::step("create the swap file")?;
            qemu_img::create(&tmp, Format::Raw, Some(size), None)?;
            fault::step("mkswap")?;
            cmd::run(Command::new("mkswap").arg(&tmp))?;
            format!("disk.{}: swap, {} MB", d.id, d.size_mb)
        }
        Volatile::Fs { fs: None } => {
            fault::step("create the empty disk")?;
            qemu_img::create(&tmp, d.format, Some(size), None)?;
            format!("disk.{}: empty {} disk, {} MB", d.id, d.format, d.size_mb)
        }
        Volatile::Fs { fs: Some(fs) } => {
            if !SUPPORTED_FS.contains(&fs.as_str()) {
                return Err(Error::Refused(format!(
                    "DISK {} FS: {fs:?} is not supported (supported: {})",
                    d.id,
                    SUPPORTED_FS.join(", ")
                )));
            }
            let raw = if d.format == Format::Raw {
                tmp.clone()
            } else {
                let r = PathBuf::from(format!("{}.raw.part", file.display()));
                let r_ = r.clone();
                undo.add("remove the raw staging file", move || {
                    remove_file(&r_).map(drop)
                });
                r
            };
            fault::step("create the raw file to format")?;
            qemu_img::create(&raw, Format::Raw, Some(size), None)?;
            fault::step("mkfs")?;
            let mut mkfs = Command::new(format!("mkfs.{fs}"));
            // Never ask: -F (ext*) / -f (xfs) format a plain file without a prompt.
            mkfs.arg(if fs == "xfs" { "-f" } else { "-F" });
            if fs != "xfs" {
                mkfs.arg("-q");
            }
            cmd::run(mkfs.arg(&raw))?;
            if d.format == Format::Qcow2 {
                fault::step("convert to qcow2")?;
                qemu_img::convert(&raw, Format::Raw, &tmp, Format::Qcow2, false)?;
                remove_file(&raw)?;
            }
            format!(
                "disk.{}: {} MB {} disk with an {fs} file system",
                d.id, d.size_mb, d.format
            )
        }
    };
    fault::step("rename the disk into place")?;
    rename(&tmp, &file)?;
    undo.success();
    Ok(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_copies_keep_holes_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let f = std::fs::File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        drop(f);
        // 1 MiB of data in the middle of a 64 MiB hole.
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
            f.seek(SeekFrom::Start(32 << 20)).unwrap();
            f.write_all(&vec![0xabu8; 1 << 20]).unwrap();
        }
        let dst = dir.path().join("dst");
        let copied = copy_sparse(&src, &dst).unwrap();
        assert!((1 << 20..8 << 20).contains(&copied), "{copied}");
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
        assert!(allocated_bytes(&dst).unwrap() < 8 << 20, "holes kept");
        // An empty file and a missing source.
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(copy_sparse(&empty, &dir.path().join("e2")).unwrap(), 0);
        assert!(copy_sparse(&dir.path().join("nope"), &dst).is_err());
    }

    #[test]
    fn atomic_writes_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        write_atomic(&f, b"one").unwrap();
        write_atomic(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert!(!part(&f).exists());
        let l = dir.path().join("l");
        symlink_replace(Path::new("a"), &l).unwrap();
        symlink_replace(Path::new("b"), &l).unwrap();
        assert_eq!(read_link(&l).unwrap(), Path::new("b"));
        assert!(remove_file(&l).unwrap());
        assert!(!remove_file(&l).unwrap());
    }
}
