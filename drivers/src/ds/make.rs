//! Empty images (OpenNebula's `mkfs`): a DATABLOCK or OS image of SIZE, raw (sparse) or
//! qcow2, optionally with a file system. A file system is made on a raw file (mkfs cannot
//! write qcow2), converted when the image is qcow2.

use super::qemu::{self, Format};
use super::{Facts, ImageFiles, inspect, remove_file, sync_dir};
use crate::{Error, Result, Revert, cmd, fault};
use one_proto::ds::Target;
use std::process::Command;

/// The file systems an empty image can be made with, and mkfs's options to write a file
/// quietly without asking.
fn mkfs_args(fs: &str) -> Option<&'static [&'static str]> {
    Some(match fs {
        "ext2" | "ext3" | "ext4" => &["-F", "-q"],
        "xfs" => &["-f", "-q"],
        "btrfs" => &["-f", "-q"],
        "vfat" => &[],
        _ => return None,
    })
}

pub use one_proto::ds::FILE_SYSTEMS;

/// Refuses an FS that is not known (before anything is written).
pub fn check_fs(fs: &str) -> Result<()> {
    if fs.is_empty() || mkfs_args(fs).is_some() {
        Ok(())
    } else {
        Err(Error::Refused(format!(
            "FS {fs:?} is not supported: use one of {}",
            FILE_SYSTEMS.join(", ")
        )))
    }
}

/// An empty image of `size_mb` at `to.source`. One already there is answered as it is.
pub fn mkfs(to: &Target, size_mb: u64, format: Format, fs: &str) -> Result<Facts> {
    let fs = fs.trim().to_ascii_lowercase();
    check_fs(&fs)?;
    if size_mb == 0 {
        return Err(Error::Refused("an empty image needs a SIZE above 0".into()));
    }
    let f = ImageFiles::of(to)?;
    if f.file.exists() {
        return inspect(&f.file, &f.dir);
    }
    let bytes = size_mb
        .checked_mul(1024 * 1024)
        .ok_or_else(|| Error::Refused(format!("SIZE {size_mb} MB is too large")))?;
    let mut revert = Revert::new();
    remove_file(&f.part)?;
    remove_file(&f.tmp)?;
    if fs.is_empty() {
        fault::step("create the image")?;
        revert.add("remove the partial file", || remove_file(&f.part));
        qemu::create(&f.part, format, bytes).map_err(|e| f.no_space(e))?;
    } else {
        let raw = if format == Format::Raw {
            &f.part
        } else {
            &f.tmp
        };
        fault::step("create the raw file")?;
        revert.add("remove the raw file", move || remove_file(raw));
        qemu::create(raw, Format::Raw, bytes).map_err(|e| f.no_space(e))?;
        fault::step("make the file system")?;
        let mut c = Command::new(format!("mkfs.{fs}"));
        c.env("LC_ALL", "C")
            .args(mkfs_args(&fs).unwrap_or_default())
            .arg(raw);
        cmd::run(&mut c).map_err(|e| f.no_space(e))?;
        if format == Format::Qcow2 {
            fault::step("convert to qcow2")?;
            revert.add("remove the partial file", || remove_file(&f.part));
            qemu::convert(&f.tmp, Format::Raw, None, &f.part, Format::Qcow2)
                .map_err(|e| f.no_space(e))?;
            fault::step("remove the raw file")?;
            remove_file(&f.tmp)?;
        }
    }
    fault::step("move the image into place")?;
    std::fs::rename(&f.part, &f.file)
        .map_err(|e| Error::io(format!("cannot rename {}", f.part.display()), &f.file, e))?;
    revert.add("remove the image", || remove_file(&f.file));
    fault::step("sync the datastore directory")?;
    sync_dir(&f.dir)?;
    let facts = inspect(&f.file, &f.dir)?;
    revert.success();
    Ok(facts)
}
