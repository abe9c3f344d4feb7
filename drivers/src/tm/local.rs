//! TM_MAD `local` (`ssh` before OpenNebula 7): the system datastore is each host's own
//! disk. The images live on the frontend; a VM's disks are copied to the host at deploy
//! (non-persistent and persistent alike: OpenNebula's LN_TARGET / CLONE_TARGET SYSTEM), go
//! to the frontend at stop and undeploy and come back at resume, and a persistent disk's
//! content goes back to its image at terminate. A qcow2 disk keeps the qcow2 layout
//! ([`super::qcow2`]) on the host, so snapshots work the same as on a shared datastore.
//!
//! Every byte between the frontend and the host goes through a [`Transport`]: the file
//! channel beside the agent's session (a second SSH channel, or a second pipe for a local
//! agent). [`LocalDir`] is a transport to a directory this host can reach as a path; the
//! unit tests use it as the frontend.

use super::disk::{Device, Disk, ImageDisk, Use};
use super::qcow2::{Chain, Live};
use super::qemu_img::{self, Format};
use super::vmdir::{VmDir, make_dir_all};
use super::{SaveAs, Stash, TmMad, TransferDriver, files};
use crate::{Error, Result, Revert, fault};
use one_proto::stream::ListEntry;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// The marker of a complete copy of a VM's directory (it holds the stay's SEQ).
pub const STASH_MARKER: &str = ".stashed";

/// One entry of a directory tree on the frontend, relative to the directory listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: EntryKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File { len: u64 },
    Link { target: PathBuf },
}

/// An entry as a byte stream's `list` answers it (`one_proto::stream::ListEntry`).
impl From<Entry> for ListEntry {
    fn from(e: Entry) -> ListEntry {
        let path = e.path.display().to_string();
        match e.kind {
            EntryKind::Dir => ListEntry::Dir { path },
            EntryKind::File { len } => ListEntry::File { path, len },
            EntryKind::Link { target } => ListEntry::Link {
                path,
                target: target.display().to_string(),
            },
        }
    }
}

impl From<ListEntry> for Entry {
    fn from(e: ListEntry) -> Entry {
        let (path, kind) = match e {
            ListEntry::Dir { path } => (path, EntryKind::Dir),
            ListEntry::File { path, len } => (path, EntryKind::File { len }),
            ListEntry::Link { path, target } => (
                path,
                EntryKind::Link {
                    target: PathBuf::from(target),
                },
            ),
        };
        Entry {
            path: PathBuf::from(path),
            kind,
        }
    }
}

/// Copies files between this host and the frontend. Paths on the frontend are absolute,
/// as the frontend names them (an image's SOURCE, `<system datastore>/<vm id>/...`).
/// Implementations write a file whole or not at all (a temporary name renamed when
/// complete), keep holes of sparse files, and report a full disk as [`Error::NoSpace`].
pub trait Transport: Send + Sync {
    /// Copies the frontend's file `remote` to `local` on this host.
    fn fetch(&self, remote: &Path, local: &Path) -> Result<u64>;

    /// Copies this host's file `local` to `remote` on the frontend, making the directories
    /// above it.
    fn send(&self, local: &Path, remote: &Path) -> Result<u64>;

    /// Makes `remote` a symlink to `target` on the frontend.
    fn send_link(&self, target: &Path, remote: &Path) -> Result<()>;

    /// Every entry under the frontend directory `remote_dir`, parents before children;
    /// `None` when it does not exist.
    fn list(&self, remote_dir: &Path) -> Result<Option<Vec<Entry>>>;

    /// Removes the frontend file or directory tree `remote` (a missing one is fine).
    fn remove(&self, remote: &Path) -> Result<()>;
}

pub struct Local {
    transport: Arc<dyn Transport>,
}

impl Local {
    pub fn new(transport: Arc<dyn Transport>) -> Local {
        Local { transport }
    }

    fn fetch_into(&self, remote: &Path, local: &Path) -> Result<u64> {
        fault::step("fetch from the frontend")?;
        self.transport.fetch(remote, local)
    }
}

/// A standalone copy of an image: a qcow2 image with a backing file of its own cannot be
/// copied alone.
fn check_copy(d: &ImageDisk, file: &Path) -> Result<()> {
    let info = qemu_img::info(file, false)?;
    let found = Format::parse(&info.format)?;
    if found != d.format {
        return Err(Error::Refused(format!(
            "DISK {} SOURCE {} is a {found} image, but its FORMAT says {}",
            d.id,
            d.source.display(),
            d.format
        )));
    }
    if let Some(b) = info.backing {
        return Err(Error::Refused(format!(
            "DISK {} SOURCE {} has a backing file ({b}): it cannot be copied alone",
            d.id,
            d.source.display()
        )));
    }
    Ok(())
}

impl TransferDriver for Local {
    fn mad(&self) -> TmMad {
        TmMad::Local
    }

    fn make_vm_dir(&self, vm: &VmDir) -> Result<bool> {
        // The host's own datastore: its directory is made when missing.
        vm.make(true)
    }

    fn clone_disk(&self, vm: &VmDir, d: &ImageDisk) -> Result<String> {
        let file = vm.disk(d.id);
        if files::present(&file) {
            return Ok(format!("disk.{}: kept", d.id));
        }
        let grow = d.grow_to_bytes();
        match d.format {
            Format::Qcow2 => {
                Chain::new(vm, d.id).create(
                    |first| {
                        self.fetch_into(&d.source, first)?;
                        fault::step("check the copy")?;
                        check_copy(d, first)
                    },
                    Format::Qcow2,
                    grow,
                )?;
            }
            Format::Raw => {
                let tmp = files::part(&file);
                let mut undo = Revert::new();
                let t = tmp.clone();
                undo.add("remove the partial copy", move || {
                    files::remove_file(&t).map(drop)
                });
                self.fetch_into(&d.source, &tmp)?;
                fault::step("check the copy")?;
                check_copy(d, &tmp)?;
                if let Some(bytes) = grow {
                    fault::step("grow the copy")?;
                    qemu_img::resize(&tmp, Format::Raw, bytes)?;
                }
                fault::step("rename the copy into place")?;
                files::rename(&tmp, &file)?;
                undo.success();
            }
        }
        Ok(format!(
            "disk.{}: copy of {} from the frontend",
            d.id,
            d.source.display()
        ))
    }

    fn link_disk(&self, vm: &VmDir, d: &ImageDisk) -> Result<String> {
        let file = vm.disk(d.id);
        if files::present(&file) {
            return Ok(format!("disk.{}: kept", d.id));
        }
        if d.device == Device::Block {
            return Err(Error::Refused(format!(
                "DISK {} is a block device: it needs a shared datastore, not TM_MAD local",
                d.id
            )));
        }
        // The persistent image's content on the host; it goes back at terminate.
        let tmp = files::part(&file);
        let mut undo = Revert::new();
        let t = tmp.clone();
        undo.add("remove the partial copy", move || {
            files::remove_file(&t).map(drop)
        });
        self.fetch_into(&d.source, &tmp)?;
        fault::step("check the copy")?;
        check_copy(d, &tmp)?;
        fault::step("rename the copy into place")?;
        files::rename(&tmp, &file)?;
        undo.success();
        Ok(format!(
            "disk.{}: copy of the {} image {} from the frontend",
            d.id,
            if d.device == Device::Cdrom {
                "CD-ROM"
            } else {
                "persistent"
            },
            d.source.display()
        ))
    }

    fn stash(&self, vm: &VmDir, to: &Stash) -> Result<String> {
        let marker = to.dir.join(STASH_MARKER);
        let remote_marked = |t: &dyn Transport| -> Result<Option<bool>> {
            Ok(t.list(&to.dir)?.map(|es| {
                es.iter().any(|e| {
                    e.path == Path::new(STASH_MARKER) && matches!(e.kind, EntryKind::File { .. })
                })
            }))
        };
        if !vm.exists() {
            // A repeat after the host's copy went: the frontend must have all of it.
            return match remote_marked(self.transport.as_ref())? {
                Some(true) => Ok(format!(
                    "the VM's files are on the frontend in {}",
                    to.dir.display()
                )),
                _ => Err(Error::Refused(format!(
                    "the VM's files are neither in {} nor complete on the frontend in {}",
                    vm.path().display(),
                    to.dir.display()
                ))),
            };
        }
        // Sent completely by this stay's move (a repeat after a crash)? The host's marker
        // tells this stay's copy from a stale one left by an earlier stay.
        let done_remote = read_marker(vm.path()) == Some(to.seq)
            && remote_marked(self.transport.as_ref())? == Some(true);
        let mut sent = 0u64;
        if !done_remote {
            // Whatever is there is a stale or partial copy: start afresh.
            fault::step("clear the frontend directory")?;
            self.transport.remove(&to.dir)?;
            let local_marker = vm.path().join(STASH_MARKER);
            for e in walk(vm.path())? {
                if e.path == Path::new(STASH_MARKER) || is_part(&e.path) {
                    continue;
                }
                let remote = to.dir.join(&e.path);
                match &e.kind {
                    EntryKind::Dir => {}
                    EntryKind::File { .. } => {
                        fault::step("send a file to the frontend")?;
                        sent += self.transport.send(&vm.path().join(&e.path), &remote)?;
                    }
                    EntryKind::Link { target } => {
                        fault::step("send a link to the frontend")?;
                        self.transport.send_link(target, &remote)?;
                    }
                }
            }
            fault::step("mark the frontend copy complete")?;
            files::write_atomic(&local_marker, to.seq.to_string().as_bytes())?;
            self.transport.send(&local_marker, &marker)?;
        }
        fault::step("remove the files from the host")?;
        vm.remove()?;
        Ok(format!(
            "moved {} to the frontend's {} ({sent} bytes)",
            vm.path().display(),
            to.dir.display()
        ))
    }

    fn unstash(&self, vm: &VmDir, from: &Stash) -> Result<String> {
        let Some(entries) = self.transport.list(&from.dir)? else {
            if vm.exists() {
                // A repeat after the frontend copy went: the host has the files.
                let _ = files::remove_file(&vm.path().join(STASH_MARKER));
                return Ok(format!("the VM's files are in {}", vm.path().display()));
            }
            return Err(Error::Refused(format!(
                "the VM's files are neither on the frontend in {} nor in {}",
                from.dir.display(),
                vm.path().display()
            )));
        };
        if !entries.iter().any(|e| e.path == Path::new(STASH_MARKER)) {
            return Err(Error::Refused(format!(
                "the frontend's copy in {} is incomplete (no {STASH_MARKER}): the stop or \
                 undeploy that made it did not finish",
                from.dir.display()
            )));
        }
        self.make_vm_dir(vm)?;
        let mut got = 0u64;
        for e in &entries {
            let local = vm.path().join(&e.path);
            if !inside(&e.path) {
                return Err(Error::Refused(format!(
                    "the frontend lists {} in {}: not a path inside it",
                    e.path.display(),
                    from.dir.display()
                )));
            }
            match &e.kind {
                EntryKind::Dir => make_dir_all(&local)?,
                EntryKind::File { .. } => {
                    got += self.fetch_into(&from.dir.join(&e.path), &local)?;
                }
                EntryKind::Link { target } => {
                    fault::step("make a link")?;
                    files::symlink_replace(target, &local)?;
                }
            }
        }
        fault::step("remove the frontend copy")?;
        self.transport.remove(&from.dir)?;
        files::remove_file(&vm.path().join(STASH_MARKER))?;
        Ok(format!(
            "moved the frontend's {} to {} ({got} bytes)",
            from.dir.display(),
            vm.path().display()
        ))
    }

    fn save_back(&self, vm: &VmDir, d: &ImageDisk) -> Result<String> {
        if !(d.save && d.use_ == Use::Link && d.device == Device::Disk) {
            return Ok(format!("disk.{}: nothing to save back", d.id));
        }
        let file = vm.disk(d.id);
        if !files::present(&file) {
            // A repeat after the directory went: the image already has it.
            return Ok(format!("disk.{}: already saved back", d.id));
        }
        fault::step("send the disk back to its image")?;
        // A persistent disk has no snapshot chain (refused: `qcow2::snapshot_create`): the
        // file is the disk.
        let what = self.transport.send(&file, &d.source)?;
        Ok(format!(
            "disk.{}: saved back to {} ({what} bytes)",
            d.id,
            d.source.display()
        ))
    }

    fn has_stash(&self, at: &Stash) -> Result<bool> {
        Ok(self.transport.list(&at.dir)?.is_some_and(|es| {
            es.iter().any(|e| {
                e.path == Path::new(STASH_MARKER) && matches!(e.kind, EntryKind::File { .. })
            })
        }))
    }

    fn discard_stash(&self, at: &Stash) -> Result<String> {
        fault::step("remove the frontend copy")?;
        self.transport.remove(&at.dir)?;
        Ok(format!("removed the frontend's copy {}", at.dir.display()))
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
        let tmp = vm.path().join(format!(".saveas.disk.{}", d.id()));
        let mut undo = Revert::new();
        let t = tmp.clone();
        undo.add("remove the local copy", move || {
            files::remove_file(&t)?;
            files::remove_file(&files::part(&t)).map(drop)
        });
        super::shared::copy_out(vm, d, snap, &tmp, to.format, live)?;
        fault::step("send the image to the frontend")?;
        let n = self.transport.send(&tmp, &to.source)?;
        files::remove_file(&tmp)?;
        undo.success();
        Ok(format!(
            "disk.{}{} saved as {} on the frontend ({n} bytes)",
            d.id(),
            snap.map(|s| format!(" snapshot {s}")).unwrap_or_default(),
            to.source.display()
        ))
    }
}

/// CPDS of a VM stopped or undeployed off a host-local system datastore, run by the
/// frontend agent: the VM's files are in the frontend's `stash` (`<system datastore>/.stash/
/// <vm id>`, a complete copy: [`STASH_MARKER`]), so disk `disk_id` (files in `format`), or
/// its snapshot `snap`, becomes the new image `to` there, without a host. Only `to.source`
/// (and its `.part`) is written; the stash is read, never changed.
pub fn save_stashed(
    stash: &Path,
    vm_id: i64,
    disk_id: u32,
    snap: Option<u32>,
    to: &SaveAs,
) -> Result<String> {
    to.check()?;
    let vm = VmDir::new(stash.parent().unwrap_or(stash), vm_id)?;
    if vm.path() != stash {
        return Err(Error::Refused(format!(
            "{} is not the frontend's copy of VM {vm_id}'s files",
            stash.display()
        )));
    }
    if !files::present(&stash.join(STASH_MARKER)) {
        return Err(Error::Refused(format!(
            "the frontend holds no complete copy of VM {vm_id}'s files in {} (no \
             {STASH_MARKER}): the stop or undeploy that moved them did not finish",
            stash.display()
        )));
    }
    if !to.datastore.is_dir() {
        return Err(Error::Refused(format!(
            "the image datastore directory {} does not exist",
            to.datastore.display()
        )));
    }
    super::shared::copy_file_out(&vm, disk_id, to.format, snap, &to.source, to.format, None)?;
    Ok(format!(
        "disk.{disk_id}{} saved as {} from the frontend's copy of the VM's files",
        snap.map(|s| format!(" snapshot {s}")).unwrap_or_default(),
        to.source.display()
    ))
}

fn is_part(p: &Path) -> bool {
    p.to_string_lossy().ends_with(".part")
}

fn inside(p: &Path) -> bool {
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

fn read_marker(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(dir.join(STASH_MARKER))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Every entry under `dir`, relative, parents first, links not followed.
pub fn walk(dir: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let abs = dir.join(&rel);
        let rd = std::fs::read_dir(&abs)
            .map_err(|e| Error::io(format!("cannot list {}", abs.display()), &abs, e))?;
        let mut names: Vec<_> = rd.flatten().collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let p = rel.join(e.file_name());
            let m = std::fs::symlink_metadata(e.path()).map_err(|err| {
                Error::io(
                    format!("cannot read {}", e.path().display()),
                    &e.path(),
                    err,
                )
            })?;
            let kind = if m.file_type().is_symlink() {
                EntryKind::Link {
                    target: std::fs::read_link(e.path()).map_err(|err| {
                        Error::io(
                            format!("cannot read {}", e.path().display()),
                            &e.path(),
                            err,
                        )
                    })?,
                }
            } else if m.is_dir() {
                todo.push(p.clone());
                EntryKind::Dir
            } else {
                EntryKind::File { len: m.len() }
            };
            out.push(Entry { path: p, kind });
        }
    }
    // Parents before children.
    out.sort_by_key(|e| e.path.components().count());
    Ok(out)
}

/// A [`Transport`] to a directory this host reaches as a path: the frontend's absolute path
/// `/x/y` is `<root>/x/y`. The unit tests' frontend; also what a frontend that is the host
/// itself would use.
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: impl Into<PathBuf>) -> LocalDir {
        LocalDir { root: root.into() }
    }

    fn map(&self, remote: &Path) -> Result<PathBuf> {
        if !super::disk::plain(remote) {
            return Err(Error::Refused(format!(
                "{} is not a plain absolute path on the frontend",
                remote.display()
            )));
        }
        Ok(self.root.join(remote.strip_prefix("/").unwrap_or(remote)))
    }
}

impl Transport for LocalDir {
    fn fetch(&self, remote: &Path, local: &Path) -> Result<u64> {
        let src = self.map(remote)?;
        let tmp = files::part(local);
        let n = files::copy_sparse(&src, &tmp).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        files::rename(&tmp, local)?;
        Ok(n)
    }

    fn send(&self, local: &Path, remote: &Path) -> Result<u64> {
        let dst = self.map(remote)?;
        if let Some(p) = dst.parent() {
            make_dir_all(p)?;
        }
        let tmp = files::part(&dst);
        let n = files::copy_sparse(local, &tmp).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        files::rename(&tmp, &dst)?;
        Ok(n)
    }

    fn send_link(&self, target: &Path, remote: &Path) -> Result<()> {
        let dst = self.map(remote)?;
        if let Some(p) = dst.parent() {
            make_dir_all(p)?;
        }
        files::symlink_replace(target, &dst)
    }

    fn list(&self, remote_dir: &Path) -> Result<Option<Vec<Entry>>> {
        let dir = self.map(remote_dir)?;
        if !dir.is_dir() {
            return Ok(None);
        }
        walk(&dir).map(Some)
    }

    fn remove(&self, remote: &Path) -> Result<()> {
        files::remove_tree(&self.map(remote)?).map(drop)
    }
}
