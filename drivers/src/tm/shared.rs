//! TM_MAD `shared` and `qcow2` (OpenNebula 7 semantics: one driver, two names): the
//! system datastore and the image datastores are one file system every host sees at the
//! same path (NFS in a real deployment). Images are read in place: a non-persistent qcow2
//! image becomes a qcow2 overlay in the VM's directory (it costs nothing that grows with
//! the image), a raw one a sparse copy; a persistent disk is a link to its image. Nothing
//! moves at stop, undeploy or migration; a save-as writes the new image straight into its
//! datastore.

use super::disk::{Disk, ImageDisk, Use};
use super::qcow2::{self, Chain, Live};
use super::qemu_img::{self, Format};
use super::vmdir::VmDir;
use super::{SaveAs, Stash, TmMad, TransferDriver, files};
use crate::{Error, Result, Revert, fault};
use std::path::Path;

pub struct Shared;

/// The image file on this host: it must be there (a missing one means the image datastore
/// is not mounted here), and be of the format the image says it is.
fn image_here(d: &ImageDisk) -> Result<&str> {
    let src = d
        .source
        .to_str()
        .ok_or_else(|| Error::Refused(format!("DISK {} SOURCE is not UTF-8", d.id)))?;
    if !files::present(&d.source) {
        return Err(Error::Refused(format!(
            "DISK {} SOURCE {src} does not exist on this host (is the image datastore mounted?)",
            d.id
        )));
    }
    Ok(src)
}

fn check_format(d: &ImageDisk) -> Result<()> {
    let found = qemu_img::detect(&d.source)?;
    if found != d.format {
        return Err(Error::Refused(format!(
            "DISK {} SOURCE {} is a {found} image, but its FORMAT says {}",
            d.id,
            d.source.display(),
            d.format
        )));
    }
    Ok(())
}

impl TransferDriver for Shared {
    fn mad(&self) -> TmMad {
        TmMad::Shared
    }

    fn make_vm_dir(&self, vm: &VmDir) -> Result<bool> {
        vm.make(false)
    }

    fn clone_disk(&self, vm: &VmDir, d: &ImageDisk) -> Result<String> {
        let file = vm.disk(d.id);
        if files::present(&file) {
            return Ok(format!("disk.{}: kept", d.id));
        }
        let src = image_here(d)?;
        check_format(d)?;
        let grow = d.grow_to_bytes();
        match d.format {
            Format::Qcow2 => {
                // The overlay is made at the DISK's size at once (one tool run, not two).
                Chain::new(vm, d.id).create(
                    |first| {
                        qemu_img::create(first, Format::Qcow2, grow, Some((src, Format::Qcow2)))
                    },
                    Format::Qcow2,
                    None,
                )?;
                Ok(format!("disk.{}: qcow2 overlay of {src}", d.id))
            }
            Format::Raw => {
                let tmp = files::part(&file);
                let mut undo = Revert::new();
                let t = tmp.clone();
                undo.add("remove the partial copy", move || {
                    files::remove_file(&t).map(drop)
                });
                fault::step("copy the image")?;
                files::copy_sparse(&d.source, &tmp)?;
                if let Some(bytes) = grow {
                    fault::step("grow the copy")?;
                    qemu_img::resize(&tmp, Format::Raw, bytes)?;
                }
                fault::step("rename the copy into place")?;
                files::rename(&tmp, &file)?;
                undo.success();
                Ok(format!("disk.{}: copy of {src}", d.id))
            }
        }
    }

    fn link_disk(&self, vm: &VmDir, d: &ImageDisk) -> Result<String> {
        let file = vm.disk(d.id);
        if files::present(&file) {
            return Ok(format!("disk.{}: kept", d.id));
        }
        let src = image_here(d)?;
        fault::step("link the image")?;
        files::symlink_replace(&d.source, &file)?;
        Ok(format!("disk.{}: linked to {src}", d.id))
    }

    fn stash(&self, _vm: &VmDir, _to: &Stash) -> Result<String> {
        Ok("shared system datastore: the files stay where every host sees them".into())
    }

    fn unstash(&self, vm: &VmDir, _from: &Stash) -> Result<String> {
        self.make_vm_dir(vm)?;
        Ok("shared system datastore: nothing to move".into())
    }

    fn save_back(&self, _vm: &VmDir, d: &ImageDisk) -> Result<String> {
        Ok(format!(
            "disk.{}: the VM wrote its image in place (shared datastore)",
            d.id
        ))
    }

    fn save_as(
        &self,
        vm: &VmDir,
        d: &Disk,
        snap: Option<u32>,
        to: &SaveAs,
        live: Option<Live<'_>>,
    ) -> Result<String> {
        to.check()?;
        if !to.datastore.is_dir() {
            return Err(Error::Refused(format!(
                "the image datastore directory {} does not exist on this host (is it mounted?)",
                to.datastore.display()
            )));
        }
        copy_out(vm, d, snap, &to.source, to.format, live)?;
        Ok(format!(
            "disk.{}{} saved as {}",
            d.id(),
            snap.map(|s| format!(" snapshot {s}")).unwrap_or_default(),
            to.source.display()
        ))
    }
}

/// Writes the disk's content (or a snapshot's) as a standalone image `dst` of `format`:
/// from the running domain when it runs and the current content is asked, else from the
/// files. Written as `dst.part`, renamed when whole.
pub fn copy_out(
    vm: &VmDir,
    d: &Disk,
    snap: Option<u32>,
    dst: &Path,
    format: Format,
    live: Option<Live<'_>>,
) -> Result<()> {
    if let Some(Disk::Image(i)) = Some(d)
        && i.use_ == Use::Link
        && snap.is_some()
    {
        return Err(Error::Refused(format!(
            "DISK {} is used in place: it has no snapshots here",
            i.id
        )));
    }
    copy_file_out(vm, d.id(), d.format(), snap, dst, format, live)
}

/// [`copy_out`] of disk `id`, whose files are in `format` `disk_format` (a snapshot is
/// always qcow2), whatever kind of disk it is.
pub fn copy_file_out(
    vm: &VmDir,
    id: u32,
    disk_format: Format,
    snap: Option<u32>,
    dst: &Path,
    format: Format,
    live: Option<Live<'_>>,
) -> Result<()> {
    let src = qcow2::content_file(vm, id, snap)?;
    if !files::present(&src) {
        return Err(Error::Refused(format!("{} does not exist", src.display())));
    }
    let tmp = files::part(dst);
    let mut undo = Revert::new();
    let t = tmp.clone();
    undo.add("remove the partial image", move || {
        files::remove_file(&t).map(drop)
    });
    fault::step("copy the disk out")?;
    match (live, snap) {
        (Some(l), None) => l.disk.copy_to(l.target, &tmp, format)?,
        _ => {
            let src_format = if snap.is_some() {
                Format::Qcow2
            } else {
                disk_format
            };
            qemu_img::convert(&src, src_format, &tmp, format, true)?;
        }
    }
    fault::step("rename the image into place")?;
    files::rename(&tmp, dst)?;
    undo.success();
    Ok(())
}
