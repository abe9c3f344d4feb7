//! Test machinery for the datastore operations: the files under a directory as a comparable
//! value, every step of an operation failed in turn, and a small HTTP server.

use crate::{Result, fault};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

/// Relative path -> (length, content hash), or "dir"/"link".
pub type Tree = BTreeMap<String, String>;

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
            out.insert(
                rel,
                format!("link {}", std::fs::read_link(&p).unwrap().display()),
            );
        } else if m.is_dir() {
            out.insert(rel, "dir".into());
            walk(root, &p, out);
        } else {
            let bytes = std::fs::read(&p).unwrap();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            out.insert(rel, format!("file {} {:x}", m.len(), h.finish()));
        }
    }
}

pub fn diff(a: &Tree, b: &Tree) -> String {
    let mut out = String::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push_str(&format!("  - {k} {v}\n")),
            Some(w) if w != v => out.push_str(&format!("  ~ {k} {v} -> {w}\n")),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            out.push_str(&format!("  + {k} {v}\n"));
        }
    }
    out
}

/// `t` with the content of the files named in `loose` forgotten (a file system's UUID
/// differs from run to run).
fn loosen(mut t: Tree, loose: &[&str]) -> Tree {
    for (p, v) in t.iter_mut() {
        if loose.iter().any(|l| p.ends_with(l)) && v.starts_with("file ") {
            *v = v
                .rsplit_once(' ')
                .map(|(a, _)| a.to_string())
                .unwrap_or_default();
        }
    }
    t
}

/// Runs `op` cleanly on a fresh `setup` (it must succeed), then, for each step it announced,
/// again on a fresh `setup` with that step failing: the operation must answer the injected
/// error and leave every file under `root` as `setup` made it (it took back what it did);
/// then a run without failure must succeed and end where the clean run ended (the content
/// of files named in `loose` aside). Answers the steps.
pub fn each_step<T: std::fmt::Debug>(
    root: &Path,
    setup: &dyn Fn(),
    op: &dyn Fn() -> Result<T>,
    loose: &[&str],
) -> Vec<String> {
    let fresh = || {
        let _ = std::fs::remove_dir_all(root);
        std::fs::create_dir_all(root).unwrap();
        setup();
        tree(root)
    };
    let tree = |r: &Path| loosen(tree(r), loose);
    fresh();
    fault::armed(None);
    let res = op();
    let steps = fault::disarm().seen;
    res.unwrap_or_else(|e| panic!("the clean run failed: {e}"));
    let done = tree(root);
    assert!(!steps.is_empty(), "the operation announced no step");
    for (n, step) in steps.iter().enumerate() {
        let before = fresh();
        fault::armed(Some(n));
        let res = op();
        fault::disarm();
        let err = res.expect_err(&format!(
            "step {n} ({step}) failed, yet the operation succeeded"
        ));
        assert!(
            err.to_string().contains("injected failure"),
            "step {n} ({step}): {err}"
        );
        let after = tree(root);
        assert!(
            before == after,
            "step {n} ({step}) failed and left:\n{}",
            diff(&before, &after)
        );
        op().unwrap_or_else(|e| panic!("a run after step {n} ({step}) failed: {e}"));
        let again = tree(root);
        assert!(
            again == done,
            "after step {n} ({step}) failed, a new run ends elsewhere:\n{}",
            diff(&done, &again)
        );
    }
    steps
}

/// How the test HTTP server answers.
#[derive(Clone)]
pub enum Serve {
    /// 200 with this body (Content-Length set).
    Body(Vec<u8>),
    /// 302 to this location.
    Redirect(String),
    /// 200 announcing `len` bytes, sending `sent` of them, then silence.
    Stall { len: usize, sent: usize },
}

/// An HTTP/1.0 server on a free loopback port answering every request the same way;
/// answers its base URL. It lives as long as the test process.
pub fn http_server(how: Serve) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let how = how.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut first = String::new();
                let _ = r.read_line(&mut first);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let head = first.starts_with("HEAD");
                let _ = match how {
                    Serve::Body(b) => {
                        let _ = write!(c, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", b.len());
                        if head { Ok(()) } else { c.write_all(&b) }
                    }
                    Serve::Redirect(to) => {
                        write!(
                            c,
                            "HTTP/1.0 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n"
                        )
                    }
                    Serve::Stall { len, sent } => {
                        let _ = write!(c, "HTTP/1.0 200 OK\r\nContent-Length: {len}\r\n\r\n");
                        if !head {
                            let _ = c.write_all(&vec![7u8; sent]);
                            let _ = c.flush();
                            std::thread::sleep(Duration::from_secs(30));
                        }
                        Ok(())
                    }
                };
                let mut rest = Vec::new();
                let _ = r.read_to_end(&mut rest);
            });
        }
    });
    format!("http://{addr}")
}
