//! Transfer operations (OpenNebula's TM drivers, fact sheet §9): how a VM's disks get from
//! an image datastore into the VM's directory on a host's system datastore, move with the
//! VM, and go back; disk snapshots, resizes and save-as of a VM disk.
//!
//! One interface, [`TransferDriver`], shaped like Incus' storage drivers: each operation is
//! one of OpenNebula's TM actions (CLONE, LN, MKIMAGE, CONTEXT, MV, MVDS, CPDS, DELETE,
//! SNAP_*, RESIZE), typed, idempotent, undone when it fails half-way, with errors naming
//! the disk and the file. Implementations:
//!
//! | TM_MAD | type | system datastore | disks |
//! |---|---|---|---|
//! | `shared`, `qcow2` | [`shared::Shared`] | one directory every host and the frontend see (NFS) | read in place from the image datastore: qcow2 overlays, raw copies, links |
//! | `local` (`ssh` before OpenNebula 7) | [`local::Local`] | each host's own disk | copied from / to the frontend through a [`local::Transport`] |
//!
//! What they do the same way with plain files is in [`files`] (volatile disks, sparse
//! copies, atomic renames), the qcow2 chain and its snapshots in [`qcow2`], the operations
//! a running domain must carry out in [`live`]. [`vm`] composes the actions into what the
//! lifecycle asks of a host (prolog, epilog, stop, resume, hotplug).
//!
//! In OpenNebula 7 `shared` is the qcow2 driver under its older name (the 6.x `shared`
//! copied qcow2 images whole); both names get the same driver here.

pub mod disk;
pub mod files;
pub mod live;
pub mod local;
pub mod qcow2;
pub mod qemu_img;
pub mod shared;
pub mod vm;
pub mod vmdir;

#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

pub use disk::{ContextCd, Device, Disk, ImageDisk, Use, VmDisks, Volatile, VolatileDisk};
pub use live::LiveDisk;
pub use qcow2::Live;
pub use qemu_img::Format;
pub use vmdir::VmDir;

use crate::{Error, Result, fault};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The transfer driver a system datastore names in its TM_MAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TmMad {
    /// `shared` and `qcow2`: the system datastore is shared by the frontend and the hosts.
    Shared,
    /// `local` (OpenNebula 7's name) or `ssh` (before): each host's own directory.
    Local,
}

impl TmMad {
    /// `shared`, `qcow2`, `local` or `ssh`; another name is refused, naming it.
    pub fn parse(name: &str) -> Result<TmMad> {
        match name.trim().to_ascii_lowercase().as_str() {
            "shared" | "qcow2" => Ok(TmMad::Shared),
            "local" | "ssh" => Ok(TmMad::Local),
            other => Err(Error::Unsupported(format!(
                "TM_MAD {other:?} (this host serves shared, qcow2, local and ssh)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TmMad::Shared => "shared",
            TmMad::Local => "local",
        }
    }
}

/// Where a save-as writes: the new image's file in its image datastore, and its format
/// (the disk's own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaveAs {
    /// The image datastore's directory (it must exist: it is never made here).
    pub datastore: PathBuf,
    /// The new image's SOURCE, a file directly in `datastore`.
    pub source: PathBuf,
    pub format: Format,
}

impl SaveAs {
    /// Refuses a SOURCE that is not a new name directly inside the datastore directory.
    pub fn check(&self) -> Result<()> {
        if !disk::plain(&self.datastore) || !disk::plain(&self.source) {
            return Err(Error::Refused(format!(
                "save-as: {} / {} are not plain absolute paths",
                self.datastore.display(),
                self.source.display()
            )));
        }
        if self.source.parent() != Some(self.datastore.as_path()) {
            return Err(Error::Refused(format!(
                "save-as: {} is not a file of the datastore {}",
                self.source.display(),
                self.datastore.display()
            )));
        }
        Ok(())
    }
}

/// Where the frontend keeps a VM's files while it is stopped or undeployed off a host-local
/// system datastore (`<frontend's system datastore directory>/<vm id>`), and which stay of
/// the VM (its HISTORY SEQ) the move belongs to, so that a repeated move after a crash is
/// told from a stale copy of an earlier stay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stash {
    pub dir: PathBuf,
    pub seq: i64,
}

/// One system datastore's transfer driver. Every operation is idempotent (the lifecycle
/// repeats a step after a crash: doing it again succeeds and changes nothing more), and
/// takes back what it did when it fails half-way, except removals, which a repeat
/// finishes. The answer is a line for the VM's log.
pub trait TransferDriver: Send + Sync {
    fn mad(&self) -> TmMad;

    /// Makes the VM's directory when it is missing; answers whether it did.
    fn make_vm_dir(&self, vm: &VmDir) -> Result<bool>;

    /// CLONE: the VM's own copy of a non-persistent image as `disk.<id>`, grown to SIZE
    /// when SIZE exceeds ORIGINAL_SIZE. An existing `disk.<id>` is kept.
    fn clone_disk(&self, vm: &VmDir, d: &ImageDisk) -> Result<String>;

    /// LN: a persistent image, a CD-ROM or a block device, used in place (shared) or
    /// copied to the host (local). An existing `disk.<id>` is kept.
    fn link_disk(&self, vm: &VmDir, d: &ImageDisk) -> Result<String>;

    /// MKIMAGE / MKSWAP: a volatile disk. An existing `disk.<id>` is kept.
    fn make_volatile(&self, vm: &VmDir, d: &VolatileDisk) -> Result<String> {
        if files::present(&vm.disk(d.id)) {
            return Ok(format!("disk.{}: kept", d.id));
        }
        files::make_volatile(vm, d)
    }

    /// CONTEXT: the context CD, written again each time (the context may have changed).
    fn context_cd(&self, vm: &VmDir, cd: &ContextCd) -> Result<String> {
        crate::context::write_iso(vm.path(), &vm.disk(cd.id), &cd.vars)?;
        Ok(format!("disk.{}: context CD", cd.id))
    }

    /// MV out, at stop and undeploy: the VM's files leave the host for the frontend.
    fn stash(&self, vm: &VmDir, to: &Stash) -> Result<String>;

    /// MV in, at resume: the VM's files come back from the frontend.
    fn unstash(&self, vm: &VmDir, from: &Stash) -> Result<String>;

    /// MVDS, at terminate: a persistent disk's content goes back to its image.
    fn save_back(&self, vm: &VmDir, d: &ImageDisk) -> Result<String>;

    /// Whether the frontend holds a complete copy of the VM's files in `at` (a VM stopped
    /// or undeployed off a host-local datastore). Shared datastores keep no such copy.
    fn has_stash(&self, _at: &Stash) -> Result<bool> {
        Ok(false)
    }

    /// Removes the frontend's copy of the VM's files (terminate of a stopped VM with
    /// nothing to save back).
    fn discard_stash(&self, at: &Stash) -> Result<String> {
        Ok(format!("{}: nothing kept there", at.dir.display()))
    }

    /// DELETE: the VM's directory goes (links to images are removed, never followed).
    fn delete(&self, vm: &VmDir) -> Result<String> {
        Ok(if vm.remove()? {
            format!("removed {}", vm.path().display())
        } else {
            format!("{} was already gone", vm.path().display())
        })
    }

    /// CPDS: a new image file with the disk's current content (copied from the running
    /// domain when `live`) or snapshot `snap`'s.
    fn save_as(
        &self,
        vm: &VmDir,
        d: &Disk,
        snap: Option<u32>,
        to: &SaveAs,
        live: Option<Live<'_>>,
    ) -> Result<String>;

    /// The disk's files go (detach): `disk.<id>` (a link is removed, not followed) and its
    /// snapshot chain.
    fn remove_disk(&self, vm: &VmDir, id: u32) -> Result<String> {
        fault::step("remove the disk")?;
        let a = files::remove_file(&vm.disk(id))?;
        fault::step("remove the disk's snapshots")?;
        let b = files::remove_tree(&vm.snap_dir(id))?;
        Ok(if a || b {
            format!("disk.{id} removed")
        } else {
            format!("disk.{id} was already gone")
        })
    }

    /// SNAP_CREATE ([`qcow2::snapshot_create`]).
    fn snapshot_create(
        &self,
        vm: &VmDir,
        d: &Disk,
        s: u32,
        live: Option<Live<'_>>,
    ) -> Result<String> {
        qcow2::snapshot_create(vm, d, s, live)
    }

    /// SNAP_REVERT ([`qcow2::snapshot_revert`]); the VM is off.
    fn snapshot_revert(&self, vm: &VmDir, d: &Disk, s: u32) -> Result<String> {
        qcow2::snapshot_revert(vm, d, s)
    }

    /// SNAP_DELETE ([`qcow2::snapshot_delete`]).
    fn snapshot_delete(
        &self,
        vm: &VmDir,
        d: &Disk,
        s: u32,
        live: Option<Live<'_>>,
    ) -> Result<String> {
        qcow2::snapshot_delete(vm, d, s, live)
    }

    /// RESIZE: the disk grows to `bytes` (the running domain's block resize when `live`).
    fn resize(&self, vm: &VmDir, d: &Disk, bytes: u64, live: Option<Live<'_>>) -> Result<String> {
        resize(vm, d, bytes, live)
    }
}

/// The driver for `mad`. `local` needs the channel that carries files between this host
/// and the frontend; without one it is refused with the reason.
pub fn driver(
    mad: TmMad,
    transport: Option<Arc<dyn local::Transport>>,
) -> Result<Box<dyn TransferDriver>> {
    match mad {
        TmMad::Shared => Ok(Box::new(shared::Shared)),
        TmMad::Local => match transport {
            Some(t) => Ok(Box::new(local::Local::new(t))),
            None => Err(Error::Unsupported(
                "TM_MAD local: copying disks between the frontend and this host needs the \
                 agent's byte stream to oned, which this agent does not have"
                    .into(),
            )),
        },
    }
}

/// RESIZE of any disk file in the VM's directory.
pub fn resize(vm: &VmDir, d: &Disk, bytes: u64, live: Option<Live<'_>>) -> Result<String> {
    let file = vm.disk(d.id());
    if !files::present(&file) {
        return Err(Error::Refused(format!("{} does not exist", file.display())));
    }
    fault::step("resize the disk")?;
    match live {
        Some(l) => l.disk.resize(l.target, bytes)?,
        None => {
            let cur = qemu_img::info(&file, false)?.virtual_size;
            if cur >= bytes {
                return Ok(format!("disk.{} is already {cur} bytes", d.id()));
            }
            qemu_img::resize(&file, d.format(), bytes)?;
        }
    }
    Ok(format!(
        "disk.{} resized{} to {bytes} bytes",
        d.id(),
        if live.is_some() { " live" } else { "" }
    ))
}

/// What a disk takes on the host, in MB (rounded up): the file the VM writes and, for a
/// qcow2 chain, its snapshots; for monitoring's DISK_SIZE. `None` when there is no such
/// disk here.
pub fn disk_usage_mb(vm: &VmDir, id: u32) -> Option<u64> {
    let disk = vm.disk(id);
    let mut bytes = files::allocated_bytes(&disk).ok()?;
    if let Ok(rd) = std::fs::read_dir(vm.snap_dir(id)) {
        let active = std::fs::canonicalize(&disk).ok();
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_file() && Some(e.path()) != active {
                use std::os::unix::fs::MetadataExt;
                bytes += m.blocks() * 512;
            }
        }
    }
    Some(bytes.div_ceil(1 << 20))
}

/// The frontend-side path for `p` given as the frontend names it (for messages).
pub fn show(p: &Path) -> String {
    p.display().to_string()
}
