//! What a running hypervisor must do for a disk it holds open. The transfer drivers work on
//! files; while a domain runs, QEMU owns the top of each disk's chain, so the changes that
//! touch it (a disk snapshot switching to a new overlay, merging a snapshot away, copying
//! the current content, growing the disk) go through the hypervisor. The node agent
//! implements this with libvirt (block jobs, external disk-only snapshots); this crate does
//! not link libvirt.
//!
//! Paths are absolute; `target` is the disk's device name in the domain (`vda`, `sdb`).

use super::qemu_img::Format;
use crate::Result;
use std::path::{Path, PathBuf};

pub trait LiveDisk {
    /// The file the domain writes for `target` (the top of its chain), as the hypervisor
    /// has it open.
    fn top(&self, target: &str) -> Result<PathBuf>;

    /// From now on the domain writes to `overlay`, an existing qcow2 file whose backing is
    /// the current top (an external disk-only snapshot reusing the file; the other disks
    /// are left alone). Crash-consistent: the switch is atomic for the guest.
    fn snapshot_to(&self, target: &str, overlay: &Path) -> Result<()>;

    /// Pulls into the top every cluster above `base` (`None`: the whole chain), after which
    /// the top's backing is `base`; waits for the job to end.
    fn pull(&self, target: &str, base: Option<&Path>) -> Result<()>;

    /// Merges the intermediate file `top` (not the active one) into its backing `base`;
    /// `top`'s child is rebased onto `base`. Waits for the job to end.
    fn commit(&self, target: &str, top: &Path, base: &Path) -> Result<()>;

    /// Copies the disk's whole current content into a new standalone file `dst` of
    /// `format`, while the guest runs; the domain keeps using its own disk.
    fn copy_to(&self, target: &str, dst: &Path, format: Format) -> Result<()>;

    /// Grows the disk to `bytes`.
    fn resize(&self, target: &str, bytes: u64) -> Result<()>;
}
