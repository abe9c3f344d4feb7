//! The qcow2 layout of a VM's disk and its snapshots (OpenNebula's qcow2 TM layout, with an
//! explicit table instead of guessing from file names):
//!
//! ```text
//! <vm dir>/disk.0                    -> disk.0.snap/2          (the file the VM writes)
//! <vm dir>/disk.0.snap/disk.0.snap   -> .                      (see below)
//! <vm dir>/disk.0.snap/0             qcow2, backing: the image SOURCE (or standalone)
//! <vm dir>/disk.0.snap/1             qcow2, backing: disk.0.snap/0
//! <vm dir>/disk.0.snap/2             qcow2, backing: disk.0.snap/1  (active)
//! <vm dir>/disk.0.snap/snapshots.json  {"snapshots": {"0": "0", "1": "1"}}
//! ```
//!
//! A disk snapshot freezes the file the VM writes and puts a new, empty overlay on top of
//! it; the table says which file holds which snapshot (snapshot *s* of OpenNebula's
//! SNAPSHOTS is file *s* as long as nothing failed; the table keeps that true when something
//! did). Backing names are relative, `disk.<id>.snap/<n>`: QEMU resolves them against the
//! directory of the file naming them, which is the VM directory when the disk is opened
//! through `disk.<id>`, and the `.snap` directory itself when a file there is opened
//! directly, hence the link `disk.<id>.snap/disk.<id>.snap -> .`. So the directory can move
//! (stop / undeploy on a host-local datastore) without rewriting any header.
//!
//! Every operation is idempotent and commits at one atomic step (a rename of the link, of
//! the top file or of the table); a repeated call after a crash finds what was done and
//! finishes it. Files no snapshot and no chain needs any more are removed at the end of
//! each operation, so a failure leaves no litter that a later run does not clean.

use super::disk::Disk;
use super::files;
use super::live::LiveDisk;
use super::qemu_img::{self, Format};
use super::vmdir::VmDir;
use crate::{Error, Result, Revert, fault};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The table of snapshots, in the `.snap` directory.
pub const TABLE: &str = "snapshots.json";

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Table {
    /// Snapshot id -> the file in the `.snap` directory holding it.
    snapshots: BTreeMap<u32, String>,
}

/// A running domain's view of the disk, for the operations that must go through it.
#[derive(Clone, Copy)]
pub struct Live<'a> {
    pub disk: &'a dyn LiveDisk,
    /// The disk's device name in the domain.
    pub target: &'a str,
}

/// `disk.<id>` and `disk.<id>.snap/` of one disk.
#[derive(Clone, Debug)]
pub struct Chain {
    id: u32,
    link: PathBuf,
    dir: PathBuf,
}

fn numeric(name: &str) -> bool {
    !name.is_empty() && name.len() < 12 && name.bytes().all(|b| b.is_ascii_digit())
}

impl Chain {
    pub fn new(vm: &VmDir, id: u32) -> Chain {
        Chain {
            id,
            link: vm.disk(id),
            dir: vm.snap_dir(id),
        }
    }

    /// `disk.<id>`.
    pub fn link(&self) -> &Path {
        &self.link
    }

    /// `disk.<id>.snap`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn dir_name(&self) -> String {
        format!("disk.{}.snap", self.id)
    }

    /// How a file of the chain is named in a child's header and in `disk.<id>`'s link.
    fn rel(&self, name: &str) -> String {
        format!("{}/{name}", self.dir_name())
    }

    /// Whether `disk.<id>` is a link into `disk.<id>.snap`.
    pub fn is_layout(&self) -> bool {
        self.link_name().is_some()
    }

    /// The file `disk.<id>` points at, when it is a link into the `.snap` directory.
    fn link_name(&self) -> Option<String> {
        let t = files::read_link(&self.link)?;
        let t = t.to_str()?;
        let name = t.strip_prefix(&format!("{}/", self.dir_name()))?;
        numeric(name).then(|| name.to_string())
    }

    /// The file the VM writes: the running domain's top when it runs, else `disk.<id>`'s
    /// target.
    fn active(&self, live: Option<Live<'_>>) -> Result<String> {
        if let Some(l) = live {
            let top = l.disk.top(l.target)?;
            if top == self.link {
                // Opened through the link, which is only ever moved after the domain
                // switched, so it still names what the domain writes.
                return self.link_name().ok_or_else(|| self.not_layout());
            }
            if top.parent() == Some(self.dir.as_path())
                && let Some(name) = top.file_name().and_then(|n| n.to_str())
                && numeric(name)
            {
                return Ok(name.to_string());
            }
            return Err(Error::Refused(format!(
                "the running domain writes {} for disk.{}, which is not in {}",
                top.display(),
                self.id,
                self.dir.display()
            )));
        }
        self.link_name().ok_or_else(|| self.not_layout())
    }

    fn not_layout(&self) -> Error {
        Error::Refused(format!(
            "{} is not a link into {}",
            self.link.display(),
            self.dir.display()
        ))
    }

    fn read_table(&self) -> Result<Table> {
        let path = self.file(TABLE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Table::default()),
            Err(e) => {
                return Err(Error::io(
                    format!("cannot read {}", path.display()),
                    &path,
                    e,
                ));
            }
        };
        let t: Table = serde_json::from_str(&text)
            .map_err(|e| Error::Refused(format!("{} is damaged: {e}", path.display())))?;
        if let Some((id, f)) = t.snapshots.iter().find(|(_, f)| !numeric(f)) {
            return Err(Error::Refused(format!(
                "{}: snapshot {id} names the file {f:?}",
                path.display()
            )));
        }
        Ok(t)
    }

    fn write_table(&self, t: &Table) -> Result<()> {
        let text = serde_json::to_vec(t).map_err(|e| Error::Refused(e.to_string()))?;
        files::write_atomic(&self.file(TABLE), &text)
    }

    /// The file holding snapshot `s`, if the disk has it.
    pub fn snapshot_file(&self, s: u32) -> Result<Option<String>> {
        Ok(self.read_table()?.snapshots.get(&s).cloned())
    }

    /// The files in the `.snap` directory (numeric names only).
    fn names(&self) -> Result<Vec<String>> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::io(
                    format!("cannot list {}", self.dir.display()),
                    &self.dir,
                    e,
                ));
            }
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            if let Some(n) = e.file_name().to_str()
                && numeric(n)
            {
                out.push(n.to_string());
            }
        }
        out.sort_by_key(|n| n.parse::<u64>().unwrap_or(u64::MAX));
        Ok(out)
    }

    /// The backing of file `name`: another file of the chain (`Ok(Some(Sibling))`), a file
    /// outside it (the image), or none.
    fn backing(&self, name: &str) -> Result<Backing> {
        let i = qemu_img::info(&self.file(name), true)?;
        let Some(b) = i.backing else {
            return Ok(Backing::None);
        };
        let format = Format::parse(i.backing_format.as_deref().unwrap_or("raw"))?;
        // Relative names are `<n>`, `disk.<id>.snap/<n>`, or with the self link repeated
        // (libvirt's relative names after a block job); absolute ones name the directory.
        let sib = if Path::new(&b).is_absolute() {
            let p = Path::new(&b);
            let parent = p.parent().and_then(|d| d.canonicalize().ok());
            (parent.is_some() && parent == self.dir.canonicalize().ok())
                .then(|| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
                .flatten()
        } else {
            let mut parts: Vec<&str> = b.split('/').collect();
            let last = parts.pop().unwrap_or("");
            parts
                .iter()
                .all(|p| *p == self.dir_name() || *p == ".")
                .then(|| last.to_string())
        };
        match sib {
            Some(s) if numeric(&s) => Ok(Backing::Sibling(s)),
            _ => Ok(Backing::Outside(
                i.full_backing.unwrap_or_else(|| PathBuf::from(&b)),
                format,
            )),
        }
    }

    /// The chain below `top`, `top` first, as far as it stays in the `.snap` directory.
    fn chain_from(&self, top: &str) -> Result<Vec<String>> {
        let mut out = vec![top.to_string()];
        let mut cur = top.to_string();
        while let Backing::Sibling(next) = self.backing(&cur)? {
            if out.contains(&next) || out.len() > 4096 {
                return Err(Error::Refused(format!(
                    "{}: the backing chain of {top} loops",
                    self.dir.display()
                )));
            }
            out.push(next.clone());
            cur = next;
        }
        Ok(out)
    }

    /// The files whose backing is `name`.
    fn children(&self, name: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for n in self.names()? {
            if n != name && self.backing(&n)? == Backing::Sibling(name.to_string()) {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// A file name not used yet, above every number in use.
    fn fresh_name(&self, at_least: u32, table: &Table) -> Result<String> {
        let mut n = u64::from(at_least);
        for name in self.names()?.iter().chain(table.snapshots.values()) {
            if let Ok(v) = name.parse::<u64>() {
                n = n.max(v + 1);
            }
        }
        Ok(n.to_string())
    }

    /// Makes `disk.<id>.snap` and its self link.
    fn make_dir(&self) -> Result<()> {
        super::vmdir::make_dir_all(&self.dir)?;
        let me = self.file(&self.dir_name());
        if files::read_link(&me).as_deref() != Some(Path::new(".")) {
            files::symlink_replace(Path::new("."), &me)?;
        }
        Ok(())
    }

    /// Makes the layout for a new disk: file `0` made by `fill` (an overlay, a copy),
    /// grown to `grow` bytes when given, then `disk.<id>` pointing at it. On failure
    /// nothing is left.
    pub fn create(
        &self,
        fill: impl FnOnce(&Path) -> Result<()>,
        format: Format,
        grow: Option<u64>,
    ) -> Result<()> {
        let mut undo = Revert::new();
        if self.dir.exists() {
            if self.file(TABLE).exists() {
                // A chain that was a disk (adopt writes the table first), whose disk.<id> is
                // missing: it holds a guest's data, so it is never made over.
                return Err(Error::Refused(format!(
                    "{} is missing but {} holds a disk's chain: not overwritten",
                    self.link.display(),
                    self.dir.display()
                )));
            }
            // What a crashed earlier attempt of this call left: disk.<id> was never made, so
            // no guest ever wrote there.
            files::remove_tree(&self.dir)?;
        }
        fault::step("make the .snap directory")?;
        self.make_dir()?;
        let dir = self.dir.clone();
        undo.add("remove the .snap directory", move || {
            files::remove_tree(&dir).map(drop)
        });
        fault::step("make the first file of the chain")?;
        fill(&self.file("0"))?;
        if let Some(bytes) = grow {
            fault::step("grow the disk")?;
            qemu_img::resize(&self.file("0"), format, bytes)?;
        }
        fault::step("point disk at the chain")?;
        files::symlink_replace(Path::new(&self.rel("0")), &self.link)?;
        undo.success();
        Ok(())
    }

    /// Turns a plain qcow2 file `disk.<id>` into the layout (the file moves into the
    /// `.snap` directory; a running QEMU keeps its open file, the rename keeps the inode).
    fn adopt(&self) -> Result<()> {
        if self.is_layout() {
            return Ok(());
        }
        let meta = std::fs::symlink_metadata(&self.link);
        match meta {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(self.not_layout()),
            Err(_) => {
                // A crash between the rename and the link (the table was written first).
                if self.file(TABLE).exists()
                    && self.read_table()?.snapshots.is_empty()
                    && self.file("0").is_file()
                {
                    fault::step("point disk at the chain")?;
                    return files::symlink_replace(Path::new(&self.rel("0")), &self.link);
                }
                return Err(Error::Refused(format!(
                    "{} is missing",
                    self.link.display()
                )));
            }
        }
        fault::step("make the .snap directory")?;
        self.make_dir()?;
        // The table first: it tells this chain (a guest's disk) from a half-made new one.
        if !self.file(TABLE).exists() {
            self.write_table(&Table::default())?;
        }
        fault::step("move the disk into the chain")?;
        files::rename(&self.link, &self.file("0"))?;
        fault::step("point disk at the chain")?;
        files::symlink_replace(Path::new(&self.rel("0")), &self.link)
    }

    /// Removes the files no snapshot, no chain of one and not the active chain needs, and
    /// leftover `.part` files.
    fn collect(&self, active: &str) -> Result<Vec<String>> {
        let table = self.read_table()?;
        let mut keep: BTreeSet<String> = BTreeSet::new();
        let roots: Vec<String> = table
            .snapshots
            .values()
            .cloned()
            .chain(std::iter::once(active.to_string()))
            .collect();
        for r in roots {
            if keep.contains(&r) || !self.file(&r).exists() {
                continue;
            }
            for n in self.chain_from(&r)? {
                keep.insert(n);
            }
        }
        let mut removed = Vec::new();
        for n in self.names()? {
            if !keep.contains(&n) {
                fault::step("remove a file no snapshot needs")?;
                files::remove_file(&self.file(&n))?;
                removed.push(n);
            }
        }
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with(".part") {
                    files::remove_file(&e.path())?;
                }
            }
        }
        Ok(removed)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Backing {
    None,
    Sibling(String),
    Outside(PathBuf, Format),
}

/// Disk snapshots live in the VM's own file of a qcow2 disk.
fn check_snapshottable(d: &Disk) -> Result<()> {
    if d.format() != Format::Qcow2 {
        return Err(Error::Refused(format!(
            "disk snapshots need a qcow2 disk: DISK {} is {}",
            d.id(),
            d.format()
        )));
    }
    if !d.owned_by_vm() {
        return Err(Error::Refused(format!(
            "DISK {} is used in place (persistent image, CD-ROM or block device): snapshots \
             of such disks would live in the image datastore, which is not supported yet",
            d.id()
        )));
    }
    Ok(())
}

/// SNAP_CREATE: snapshot `s` of the disk freezes what the VM sees now; the VM goes on
/// writing into a new overlay. With `live`, the running domain switches to the overlay
/// (an atomic, crash-consistent point for the guest).
pub fn snapshot_create(vm: &VmDir, d: &Disk, s: u32, live: Option<Live<'_>>) -> Result<String> {
    check_snapshottable(d)?;
    let c = Chain::new(vm, d.id());
    c.adopt()?;
    let mut table = c.read_table()?;
    if let Some(f) = table.snapshots.get(&s) {
        return Ok(format!(
            "disk.{} snapshot {s} was already taken ({f})",
            d.id()
        ));
    }
    let active = c.active(live)?;
    let next = c.fresh_name(s + 1, &table)?;
    let mut undo = Revert::new();
    fault::step("create the overlay")?;
    let over = c.file(&next);
    qemu_img::create(
        &over,
        Format::Qcow2,
        None,
        Some((&c.rel(&active), Format::Qcow2)),
    )?;
    let over_ = over.clone();
    undo.add("remove the overlay", move || {
        files::remove_file(&over_).map(drop)
    });
    if let Some(l) = live {
        fault::step("switch the running domain to the overlay")?;
        l.disk.snapshot_to(l.target, &over)?;
        // The domain writes the overlay now: nothing to take back.
        std::mem::take(&mut undo).success();
        fault::step("point disk at the overlay")?;
        files::symlink_replace(Path::new(&c.rel(&next)), c.link())?;
    } else {
        fault::step("point disk at the overlay")?;
        files::symlink_replace(Path::new(&c.rel(&next)), c.link())?;
        let (link, back) = (c.link().to_path_buf(), c.rel(&active));
        undo.add("point disk back", move || {
            files::symlink_replace(Path::new(&back), &link)
        });
    }
    fault::step("record the snapshot")?;
    table.snapshots.insert(s, active.clone());
    c.write_table(&table)?;
    undo.success();
    c.collect(&next)?;
    Ok(format!(
        "disk.{} snapshot {s} taken{} (in {active}; the VM writes {next})",
        d.id(),
        if live.is_some() { " live" } else { "" }
    ))
}

/// SNAP_REVERT (the VM is off): the disk's content becomes snapshot `s` again; what was
/// written since the last snapshot is dropped, as in OpenNebula. The disk takes the
/// snapshot's size.
pub fn snapshot_revert(vm: &VmDir, d: &Disk, s: u32) -> Result<String> {
    check_snapshottable(d)?;
    let c = Chain::new(vm, d.id());
    let file = c
        .snapshot_file(s)?
        .ok_or_else(|| Error::Refused(format!("DISK {} has no snapshot {s}", d.id())))?;
    let active = c.active(None)?;
    if file == active {
        return Err(Error::Refused(format!(
            "{}: snapshot {s} is the file the VM writes",
            c.dir().display()
        )));
    }
    let target = c.file(&active);
    let tmp = files::part(&target);
    let mut undo = Revert::new();
    fault::step("create the new top on the snapshot")?;
    qemu_img::create(
        &tmp,
        Format::Qcow2,
        None,
        Some((&c.rel(&file), Format::Qcow2)),
    )?;
    let tmp_ = tmp.clone();
    undo.add("remove the new top", move || {
        files::remove_file(&tmp_).map(drop)
    });
    fault::step("replace the top")?;
    files::rename(&tmp, &target)?;
    undo.success();
    c.collect(&active)?;
    Ok(format!("disk.{} reverted to snapshot {s} ({file})", d.id()))
}

/// SNAP_DELETE: snapshot `s` goes; what other snapshots and the VM see does not change. A
/// snapshot under the file the VM writes is merged into it (pulled, while running); one in
/// the middle of the chain is merged into its child, or, while the domain runs on that
/// chain, its child is committed into it and takes its file. Refuses a snapshot with more
/// than one child (OpenNebula's DENY rule for qcow2 disks keeps that from being asked).
pub fn snapshot_delete(vm: &VmDir, d: &Disk, s: u32, live: Option<Live<'_>>) -> Result<String> {
    check_snapshottable(d)?;
    let c = Chain::new(vm, d.id());
    let mut table = c.read_table()?;
    let Some(file) = table.snapshots.get(&s).cloned() else {
        if c.is_layout() {
            let active = c.active(live)?;
            c.collect(&active)?;
        }
        return Ok(format!("disk.{} snapshot {s} was already gone", d.id()));
    };
    let active = c.active(live)?;
    let running_chain = match live {
        Some(_) => c.chain_from(&active)?,
        None => Vec::new(),
    };
    let shared_by_others = table.snapshots.iter().any(|(id, f)| *id != s && *f == file);
    let how = if shared_by_others {
        // Another snapshot holds the same file (a commit moved it there): only the entry goes.
        "dropped".to_string()
    } else {
        let children = c.children(&file)?;
        // While running, the file just above `file` in the domain's chain is the one QEMU
        // relates it to.
        let above = running_chain
            .iter()
            .position(|n| *n == file)
            .and_then(|i| i.checked_sub(1))
            .map(|i| running_chain[i].clone());
        // A child beside the running chain is one a commit already merged into `file` (a
        // repeated call after a crash): its snapshots only have to move to `file`.
        let committed = above.as_ref().and_then(|_| {
            children
                .iter()
                .find(|n| !running_chain.contains(n))
                .cloned()
        });
        match (above, children.as_slice()) {
            (Some(_), _) if committed.is_some() => {
                let child = committed.unwrap_or_default();
                for f in table.snapshots.values_mut() {
                    if *f == child {
                        *f = file.clone();
                    }
                }
                format!("{child} already committed into {file}")
            }
            (Some(child), _) if child == active => merge_into_top(&c, &file, &active, live)?,
            (Some(child), _) => commit_child(&c, &mut table, &file, &child, live)?,
            (None, []) => "removed".to_string(),
            (None, [child]) if *child == active => merge_into_top(&c, &file, &active, None)?,
            (None, [child]) => {
                let base = c.backing(&file)?;
                fault::step("rebase the child off the snapshot")?;
                rebase_onto(&c, child, &base)?;
                format!("merged into {child}")
            }
            (None, many) => {
                return Err(Error::Refused(format!(
                    "DISK {} snapshot {s} has {} children in {}: delete them first",
                    d.id(),
                    many.len(),
                    c.dir().display()
                )));
            }
        }
    };
    fault::step("forget the snapshot")?;
    table.snapshots.remove(&s);
    c.write_table(&table)?;
    let removed = c.collect(&active)?;
    Ok(format!(
        "disk.{} snapshot {s} deleted ({how}; removed {})",
        d.id(),
        if removed.is_empty() {
            "no file".to_string()
        } else {
            removed.join(", ")
        }
    ))
}

fn rebase_onto(c: &Chain, name: &str, base: &Backing) -> Result<()> {
    let path = c.file(name);
    match base {
        Backing::None => qemu_img::rebase(&path, None),
        Backing::Sibling(b) => qemu_img::rebase(&path, Some((&c.rel(b), Format::Qcow2))),
        Backing::Outside(p, f) => {
            let p = p
                .to_str()
                .ok_or_else(|| Error::Refused(format!("{} is not UTF-8", p.display())))?;
            qemu_img::rebase(&path, Some((p, *f)))
        }
    }
}

/// The snapshot's file is the backing of the file the VM writes: its data goes into the top.
fn merge_into_top(c: &Chain, file: &str, active: &str, live: Option<Live<'_>>) -> Result<String> {
    let base = c.backing(file)?;
    fault::step("merge the snapshot into the top")?;
    match live {
        Some(l) => {
            let base_path = match &base {
                Backing::None => None,
                Backing::Sibling(b) => Some(c.file(b)),
                Backing::Outside(p, _) => Some(p.clone()),
            };
            l.disk.pull(l.target, base_path.as_deref())?;
        }
        None => rebase_onto(c, active, &base)?,
    }
    Ok(format!("merged into the top {active}"))
}

/// While the domain runs on it, the snapshot's child (a frozen file of the running chain)
/// is committed into the snapshot's file, which then holds the child's snapshots.
fn commit_child(
    c: &Chain,
    table: &mut Table,
    file: &str,
    child: &str,
    live: Option<Live<'_>>,
) -> Result<String> {
    let l = live.ok_or_else(|| Error::Refused("a commit needs the running domain".into()))?;
    fault::step("commit the child into the snapshot")?;
    l.disk.commit(l.target, &c.file(child), &c.file(file))?;
    // The child's snapshots now live in `file`; the table takes it in the same write that
    // forgets the deleted snapshot.
    for f in table.snapshots.values_mut() {
        if f == child {
            *f = file.to_string();
        }
    }
    Ok(format!("{child} committed into {file}"))
}

/// The file holding the disk's current content, or snapshot `s`'s: what a save-as copies.
pub fn content_file(vm: &VmDir, id: u32, s: Option<u32>) -> Result<PathBuf> {
    let c = Chain::new(vm, id);
    match s {
        None => Ok(vm.disk(id)),
        Some(s) => {
            let f = c
                .snapshot_file(s)?
                .ok_or_else(|| Error::Refused(format!("DISK {id} has no snapshot {s}")))?;
            Ok(c.file(&f))
        }
    }
}

/// The snapshots the disk has (id -> file), for monitoring and tests.
pub fn snapshots(vm: &VmDir, id: u32) -> Result<BTreeMap<u32, String>> {
    Ok(Chain::new(vm, id).read_table()?.snapshots)
}
