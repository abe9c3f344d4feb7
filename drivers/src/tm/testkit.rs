//! Test machinery for the transfer operations: the files under a directory as a comparable
//! value, "fail every step in turn" runs (omicron's saga checks at the scale of one host
//! operation), and [`QemuImgDomain`], a running domain played by qemu-img on its files for
//! the live paths (the agent's tests and the e2e suite run them against libvirt).

use super::live::LiveDisk;
use super::qemu_img::{self, Format};
use crate::{Error, Result, fault};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir,
    File { len: u64, hash: u64 },
    Link(String),
}

/// Every entry under `root` (relative path -> what it is); link targets with `root`
/// written `$ROOT`; file contents hashed.
pub type Tree = BTreeMap<String, Node>;

pub fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Tree) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.file_type().is_symlink() {
            let t = std::fs::read_link(&p)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(
                rel,
                Node::Link(t.replace(&*root.to_string_lossy(), "$ROOT")),
            );
        } else if m.is_dir() {
            out.insert(rel, Node::Dir);
            walk(root, &p, out);
        } else {
            let bytes = std::fs::read(&p).unwrap();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            out.insert(
                rel,
                Node::File {
                    len: m.len(),
                    hash: h.finish(),
                },
            );
        }
    }
}

/// `t` with the content of files whose path contains one of `loose` forgotten (files that
/// differ from run to run: ISO timestamps, file system UUIDs).
pub fn loosen(mut t: Tree, loose: &[&str]) -> Tree {
    for (p, n) in t.iter_mut() {
        if loose.iter().any(|l| p.contains(l))
            && let Node::File { hash, .. } = n
        {
            *hash = 0;
        }
    }
    t
}

pub fn diff(a: &Tree, b: &Tree) -> String {
    let mut out = String::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push_str(&format!("  - {k} {v:?}\n")),
            Some(w) if w != v => out.push_str(&format!("  ~ {k} {v:?} -> {w:?}\n")),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            out.push_str(&format!("  + {k} {v:?}\n"));
        }
    }
    out
}

/// What a failed operation may leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Exactly what was there before: the operation took back what it did.
    Undone,
    /// Part of the work (removals, content-preserving merges): a repeat finishes it.
    Resumable,
}

/// Runs `op` once cleanly, then once more (a repeat changes nothing), then, for every step
/// it announced, again on a fresh `setup` with that step failing: the operation must answer
/// the injected error, leave the files under `root` as `mode` says, and a repeat without the
/// failure must succeed and end where the clean run ended. `root` is wiped before each run.
pub fn each_step(
    root: &Path,
    setup: &dyn Fn(),
    op: &dyn Fn() -> Result<String>,
    mode: Mode,
    loose: &[&str],
) -> Vec<String> {
    let fresh = || {
        let _ = std::fs::remove_dir_all(root);
        std::fs::create_dir_all(root).unwrap();
        setup();
    };
    fresh();
    fault::armed(None);
    let r = op();
    let steps = fault::disarm().seen;
    let first = r.unwrap_or_else(|e| panic!("the clean run failed: {e}"));
    let done = loosen(tree(root), loose);
    let again = op().unwrap_or_else(|e| panic!("a repeat of a successful run failed: {e}"));
    let done2 = loosen(tree(root), loose);
    assert!(
        done == done2,
        "a repeat changed the files ({first} / {again}):\n{}",
        diff(&done, &done2)
    );
    assert!(!steps.is_empty(), "the operation announced no step");
    for (i, name) in steps.iter().enumerate() {
        fresh();
        let before = tree(root);
        fault::armed(Some(i));
        let r = op();
        let seen = fault::disarm();
        match r {
            Err(e) => assert!(
                e.to_string().contains("injected failure"),
                "step {i} ({name}) failed with another error: {e}"
            ),
            Ok(s) => panic!(
                "step {i} ({name}) was to fail but the operation answered {s:?} (steps seen: {:?})",
                seen.seen
            ),
        }
        let after = tree(root);
        if mode == Mode::Undone {
            assert!(
                before == after,
                "a failure at step {i} ({name}) left changes:\n{}",
                diff(&before, &after)
            );
        }
        op().unwrap_or_else(|e| {
            panic!("the repeat after a failure at step {i} ({name}) failed: {e}")
        });
        let end = loosen(tree(root), loose);
        assert!(
            end == done,
            "the repeat after a failure at step {i} ({name}) ended elsewhere:\n{}",
            diff(&done, &end)
        );
    }
    steps
}

pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether the test can run; prints why not.
pub fn tools_or_skip(tools: &[&str]) -> bool {
    for t in tools {
        if !have(t) {
            println!("SKIP: {t} is not installed (scripts/install-deps.sh)");
            return false;
        }
    }
    true
}

/// A qcow2 image of `mb` MB whose first sector holds `marker`.
pub fn qcow2_image(path: &Path, mb: u64, marker: &[u8]) {
    let raw = PathBuf::from(format!("{}.raw", path.display()));
    raw_image(&raw, mb, marker);
    qemu_img::convert(&raw, Format::Raw, path, Format::Qcow2, false).unwrap();
    std::fs::remove_file(raw).unwrap();
}

/// A raw (sparse) image of `mb` MB whose first sector holds `marker`.
pub fn raw_image(path: &Path, mb: u64, marker: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(mb << 20).unwrap();
    drop(f);
    write_raw(path, 0, marker);
}

fn write_raw(path: &Path, at: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(bytes).unwrap();
}

/// What a guest sees in the first `n` bytes of the disk `path` (any format, through its
/// chain).
pub fn guest_bytes(path: &Path, format: Format, n: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("flat");
    qemu_img::convert(path, format, &out, Format::Raw, true).unwrap();
    let mut b = std::fs::read(&out).unwrap();
    b.truncate(n);
    b
}

/// Writes `bytes` at the start of the qcow2 disk `path` (into the top of its chain), as a
/// guest would, with `qemu-io` (qemu-utils).
pub fn guest_write(path: &Path, bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("data");
    std::fs::write(&src, bytes).unwrap();
    let out = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c"])
        .arg(format!("write -q -s {} 0 {}", src.display(), bytes.len()))
        .arg(path)
        .output()
        .expect("qemu-io (qemu-utils) is installed");
    assert!(
        out.status.success(),
        "qemu-io: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running domain played by qemu-img on the files: its top is a path, a snapshot switches
/// it, pull / commit / copy / resize do to the files what QEMU's block jobs do. Calls are
/// recorded.
pub struct QemuImgDomain {
    pub top: RefCell<PathBuf>,
    pub calls: RefCell<Vec<String>>,
    /// An operation that fails (by name), as libvirt would.
    pub fail: RefCell<Option<&'static str>>,
}

impl QemuImgDomain {
    pub fn new(top: PathBuf) -> QemuImgDomain {
        QemuImgDomain {
            top: RefCell::new(top),
            calls: RefCell::new(Vec::new()),
            fail: RefCell::new(None),
        }
    }

    fn call(&self, what: &'static str) -> Result<()> {
        self.calls.borrow_mut().push(what.into());
        if *self.fail.borrow() == Some(what) {
            return Err(Error::Refused(format!("libvirt: {what} failed")));
        }
        Ok(())
    }
}

/// How a file in a `.snap` directory is named in a child's header.
fn rel(p: &Path) -> String {
    let dir = p.parent().unwrap().file_name().unwrap().to_string_lossy();
    if dir.ends_with(".snap") {
        format!("{dir}/{}", p.file_name().unwrap().to_string_lossy())
    } else {
        p.display().to_string()
    }
}

impl LiveDisk for QemuImgDomain {
    fn top(&self, _target: &str) -> Result<PathBuf> {
        Ok(self.top.borrow().clone())
    }

    fn snapshot_to(&self, _target: &str, overlay: &Path) -> Result<()> {
        self.call("snapshot_to")?;
        *self.top.borrow_mut() = overlay.to_path_buf();
        Ok(())
    }

    fn pull(&self, _target: &str, base: Option<&Path>) -> Result<()> {
        self.call("pull")?;
        let top = self.top.borrow().clone();
        let b = base.map(|b| (rel(b), Format::Qcow2));
        qemu_img::rebase(&top, b.as_ref().map(|(n, f)| (n.as_str(), *f)))
    }

    fn commit(&self, _target: &str, top: &Path, base: &Path) -> Result<()> {
        self.call("commit")?;
        let out = Command::new("qemu-img")
            .args(["commit", "-q", "-f", "qcow2", "-b"])
            .arg(base)
            .arg(top)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // QEMU points the committed file's child at the base.
        let dir = top.parent().unwrap();
        let name = rel(top);
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let info = qemu_img::info(&e.path(), true).unwrap();
            if info.backing.as_deref() == Some(name.as_str()) {
                let out = Command::new("qemu-img")
                    .args(["rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b"])
                    .arg(rel(base))
                    .arg(e.path())
                    .output()
                    .unwrap();
                assert!(out.status.success());
            }
        }
        Ok(())
    }

    fn copy_to(&self, _target: &str, dst: &Path, format: Format) -> Result<()> {
        self.call("copy_to")?;
        let top = self.top.borrow().clone();
        qemu_img::convert(&top, Format::Qcow2, dst, format, true)
    }

    fn resize(&self, _target: &str, bytes: u64) -> Result<()> {
        self.call("resize")?;
        let top = self.top.borrow().clone();
        qemu_img::resize(&top, Format::Qcow2, bytes)
    }
}
