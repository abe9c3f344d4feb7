//! Changes to an image in place: growing it, and the internal snapshots of a qcow2 image
//! (revert, delete, flatten). A flatten writes the snapshot's content to `SOURCE.tmp` and
//! renames it over the image, so an interrupted one leaves the image as it was.

use super::qemu::{self, Format};
use super::{Facts, ImageFiles, inspect, remove_file, sync_dir};
use crate::{Error, Result, Revert, fault};
use one_proto::ds::{SnapshotAction, Target};

fn existing(t: &Target) -> Result<ImageFiles> {
    let f = ImageFiles::of(t)?;
    if !f.file.is_file() {
        return Err(Error::Refused(format!(
            "the image file {} does not exist",
            t.source
        )));
    }
    Ok(f)
}

/// Grows the image to `size_mb` (a size it already has is fine; shrinking is refused).
pub fn resize(t: &Target, format: Format, size_mb: u64) -> Result<Facts> {
    let f = existing(t)?;
    let now = inspect(&f.file, &f.dir)?;
    if now.format != format.as_str() {
        return Err(Error::Refused(format!(
            "{} is a {} image, not {}",
            t.source,
            now.format,
            format.as_str()
        )));
    }
    if size_mb < now.size_mb {
        return Err(Error::Refused(format!(
            "an image cannot shrink ({} MB to {size_mb} MB)",
            now.size_mb
        )));
    }
    if size_mb == now.size_mb {
        return Ok(now);
    }
    fault::step("resize the image")?;
    qemu::resize(&f.file, format, size_mb * 1024 * 1024).map_err(|e| f.no_space(e))?;
    inspect(&f.file, &f.dir)
}

/// Reverts to, deletes or flattens the internal snapshot `name` of a qcow2 image.
pub fn apply(t: &Target, action: SnapshotAction, name: &str) -> Result<Facts> {
    let f = existing(t)?;
    let now = inspect(&f.file, &f.dir)?;
    if now.format != "qcow2" {
        return Err(Error::Refused(format!(
            "{} is a {} image: only qcow2 images have snapshots",
            t.source, now.format
        )));
    }
    let present = now.snapshots.iter().any(|s| s.name == name);
    match action {
        // Already gone: a repeat of a delete that was done.
        SnapshotAction::Delete if !present => return Ok(now),
        _ if !present => {
            return Err(Error::Refused(format!("the image has no snapshot {name}")));
        }
        _ => {}
    }
    match action {
        SnapshotAction::Revert => {
            fault::step("revert to the snapshot")?;
            qemu::snapshot(&f.file, "-a", name).map_err(|e| f.no_space(e))?;
        }
        SnapshotAction::Delete => {
            fault::step("delete the snapshot")?;
            qemu::snapshot(&f.file, "-d", name).map_err(|e| f.no_space(e))?;
        }
        SnapshotAction::Flatten => {
            let mut revert = Revert::new();
            remove_file(&f.tmp)?;
            fault::step("write the snapshot's content")?;
            revert.add("remove the flattened copy", || remove_file(&f.tmp));
            qemu::convert(&f.file, Format::Qcow2, Some(name), &f.tmp, Format::Qcow2)
                .map_err(|e| f.no_space(e))?;
            fault::step("replace the image")?;
            std::fs::rename(&f.tmp, &f.file)
                .map_err(|e| Error::io(format!("cannot rename {}", f.tmp.display()), &f.file, e))?;
            revert.success();
            sync_dir(&f.dir)?;
        }
    }
    inspect(&f.file, &f.dir)
}
