//! What the lifecycle asks of a host's transfer driver for a whole VM, composed of the TM
//! actions (OpenNebula's TM prolog / epilog scripts, one line per disk):
//!
//! | lifecycle step (oned/src/lcm/table.rs) | here |
//! |---|---|
//! | prolog | [`prolog`]: the VM directory, CLONE / LN / MKIMAGE per disk, CONTEXT |
//! | epilog (terminate), epilog_delete | [`epilog`]: MVDS per persistent disk, DELETE |
//! | epilog_stop (stop, undeploy) | [`epilog_stop`]: MV out |
//! | prolog_resume (resume of a stopped or undeployed VM) | [`prolog_resume`]: MV in |
//! | attach_disk / detach_disk | [`attach_disk`] / [`detach_disk`] |

use super::disk::{Device, Disk, Use, VmDisks};
use super::vmdir::VmDir;
use super::{Stash, TransferDriver, files};
use crate::{Result, Revert};

/// The VM's disks and context CD on the host. Disks already there are kept (a repeated
/// prolog keeps what the first made and what the guest wrote); the context CD is written
/// again. When a disk fails, what this call made goes again (the VM directory too if it made
/// it), so a failed prolog leaves the host as it found it.
pub fn prolog(drv: &dyn TransferDriver, vm: &VmDir, disks: &VmDisks) -> Result<Vec<String>> {
    let mut undo = Revert::new();
    if drv.make_vm_dir(vm)? {
        let v = vm.clone();
        undo.add("remove the VM directory", move || v.remove().map(drop));
    }
    let mut lines = Vec::new();
    for d in &disks.disks {
        let id = d.id();
        if files::present(&vm.disk(id)) {
            lines.push(format!("disk.{id}: kept"));
            continue;
        }
        lines.push(make_disk(drv, vm, d)?);
        let v = vm.clone();
        undo.add(format!("remove disk.{id}"), move || {
            files::remove_file(&v.disk(id))?;
            files::remove_tree(&v.snap_dir(id)).map(drop)
        });
    }
    if let Some(cd) = &disks.context {
        lines.push(drv.context_cd(vm, cd)?);
    }
    undo.success();
    Ok(lines)
}

fn make_disk(drv: &dyn TransferDriver, vm: &VmDir, d: &Disk) -> Result<String> {
    match d {
        Disk::Image(i) if i.use_ == Use::Clone => drv.clone_disk(vm, i),
        Disk::Image(i) => drv.link_disk(vm, i),
        Disk::Volatile(v) => drv.make_volatile(vm, v),
    }
}

/// terminate: every persistent disk's content back to its image (a no-op where the VM
/// wrote the image in place), then the VM directory goes. A VM stopped or undeployed off a
/// host-local datastore has its files in the frontend's `stash`: they come back first when
/// a persistent disk must be saved, else they are dropped there.
pub fn epilog(
    drv: &dyn TransferDriver,
    vm: &VmDir,
    disks: &VmDisks,
    stash: Option<&Stash>,
) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    if let Some(st) = stash
        && !vm.exists()
        && drv.has_stash(st)?
    {
        let saves = disks.disks.iter().any(|d| {
            matches!(d, Disk::Image(i) if i.use_ == Use::Link && i.save && i.device == Device::Disk)
        });
        if saves {
            lines.push(drv.unstash(vm, st)?);
        } else {
            lines.push(drv.discard_stash(st)?);
        }
    }
    if vm.exists() {
        for d in &disks.disks {
            if let Disk::Image(i) = d
                && i.use_ == Use::Link
                && i.save
            {
                lines.push(drv.save_back(vm, i)?);
            }
        }
    }
    lines.push(drv.delete(vm)?);
    Ok(lines)
}

/// stop and undeploy: the VM's files leave the host (a shared datastore keeps them where
/// they are).
pub fn epilog_stop(drv: &dyn TransferDriver, vm: &VmDir, to: &Stash) -> Result<Vec<String>> {
    Ok(vec![drv.stash(vm, to)?])
}

/// resume of a stopped or undeployed VM (and the destination of a cold migration): the
/// VM's files come back to the host.
pub fn prolog_resume(drv: &dyn TransferDriver, vm: &VmDir, from: &Stash) -> Result<Vec<String>> {
    Ok(vec![drv.unstash(vm, from)?])
}

/// Disk hotplug: the disk's file, made when missing (a hotplugged disk had no prolog).
pub fn attach_disk(drv: &dyn TransferDriver, vm: &VmDir, d: &Disk) -> Result<String> {
    drv.make_vm_dir(vm)?;
    if files::present(&vm.disk(d.id())) {
        return Ok(format!("disk.{}: kept", d.id()));
    }
    make_disk(drv, vm, d)
}

/// Disk detach: a persistent disk's content goes back to its image first (host-local
/// datastores), then the disk's files go.
pub fn detach_disk(drv: &dyn TransferDriver, vm: &VmDir, d: &Disk) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    if let Disk::Image(i) = d
        && i.use_ == Use::Link
        && i.save
    {
        lines.push(drv.save_back(vm, i)?);
    }
    lines.push(drv.remove_disk(vm, d.id())?);
    Ok(lines)
}
