//! Every datastore operation run cleanly, then with each of its steps failing in turn (the
//! files under the test directory compared before and after), and the bad inputs and
//! faults of docs/storage.md: path rules, formats and backing files, URLs that redirect
//! elsewhere, stall or are too large, a datastore that fills up.

use super::testkit::{Serve, each_step, http_server, tree};
use super::*;
use crate::fault;
use one_proto::ds::{DsDir, DsToken, Origin, PathPolicy, SnapshotAction, UrlLimits};
use std::path::PathBuf;
use std::process::Command;

/// A datastore directory `<root>/ds/1` and a place for origins `<root>/src`.
struct Site {
    root: PathBuf,
}

impl Site {
    fn new() -> (tempfile::TempDir, Site) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("t");
        (d, Site { root })
    }
    fn ds(&self) -> PathBuf {
        self.root.join("ds/1")
    }
    fn src(&self) -> PathBuf {
        self.root.join("src")
    }
    fn target(&self, name: &str) -> Target {
        Target {
            ds: DsDir {
                id: 1,
                path: self.ds().display().to_string(),
            },
            source: self.ds().join(name).display().to_string(),
        }
    }
    fn dirs(&self) {
        std::fs::create_dir_all(self.ds()).unwrap();
        std::fs::create_dir_all(self.src()).unwrap();
    }
}

fn policy() -> PathPolicy {
    PathPolicy::default()
}

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Says why a test could not run (stdout, and ONE_TEST_SKIP_LOG for scripts/test.sh).
fn skip(reason: &str) {
    println!("SKIP: {reason}");
    if let Some(path) = std::env::var_os("ONE_TEST_SKIP_LOG") {
        let test = std::thread::current().name().unwrap_or("?").to_string();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            use std::io::Write;
            let _ = f.write_all(format!("{test}\t{reason}\n").as_bytes());
        }
    }
}

fn limits() -> UrlLimits {
    UrlLimits {
        max_bytes: 1 << 30,
        connect_timeout_ms: 2000,
        stall_timeout_ms: 2000,
    }
}

#[test]
fn copy_in_from_a_path_at_every_step() {
    let (_d, s) = Site::new();
    let raw = s.src().join("disk.raw");
    let setup = || {
        s.dirs();
        std::fs::write(&raw, vec![3u8; 3 * 1024 * 1024 + 5]).unwrap();
    };
    let origin = Origin::Path {
        path: raw.display().to_string(),
        policy: policy(),
    };
    let t = s.target("img0");
    let steps = each_step(
        &s.root,
        &setup,
        &|| copy::copy_in(&origin, &t, 1 << 30, true, true),
        &[],
    );
    assert!(
        steps.contains(&"move the image into place".to_string()),
        "{steps:?}"
    );
    let facts = copy::copy_in(&origin, &t, 1 << 30, true, true).unwrap();
    assert_eq!((facts.format.as_str(), facts.size_mb), ("raw", 4));
    assert_eq!(
        std::fs::read(&raw).unwrap(),
        std::fs::read(&t.source).unwrap()
    );
    // Without fsync (storage.sync_images = false) every step fails as cleanly, and the
    // result is the same file.
    let t = s.target("img1");
    each_step(
        &s.root,
        &setup,
        &|| copy::copy_in(&origin, &t, 1 << 30, true, false),
        &[],
    );
    copy::copy_in(&origin, &t, 1 << 30, true, false).unwrap();
    assert_eq!(
        std::fs::read(&raw).unwrap(),
        std::fs::read(&t.source).unwrap()
    );
}

#[test]
fn copy_in_a_qcow2_reads_its_virtual_size_and_snapshots() {
    let (_d, s) = Site::new();
    let q = s.src().join("d.qcow2");
    // Made once: a snapshot's date would make every setup differ.
    let model = _d.path().join("model.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        model.to_str().unwrap(),
        "20M",
    ]);
    qemu_img(&["snapshot", "-c", "first", model.to_str().unwrap()]);
    let setup = || {
        s.dirs();
        std::fs::copy(&model, &q).unwrap();
    };
    let origin = Origin::Path {
        path: q.display().to_string(),
        policy: policy(),
    };
    let t = s.target("img1");
    each_step(
        &s.root,
        &setup,
        &|| copy::copy_in(&origin, &t, 1 << 30, true, true),
        &[],
    );
    let f = copy::copy_in(&origin, &t, 1 << 30, true, true).unwrap();
    assert_eq!((f.format.as_str(), f.size_mb), ("qcow2", 20));
    assert_eq!(f.snapshots.len(), 1);
    assert_eq!(f.snapshots[0].name, "first");
    let (mb, fmt) = copy::stat(&origin).unwrap();
    assert_eq!((mb, fmt.as_str()), (20, "qcow2"), "stat reads the header");
}

#[test]
fn copy_in_from_a_url_at_every_step() {
    let (_d, s) = Site::new();
    let body = vec![9u8; 2 * 1024 * 1024];
    let url = format!("{}/disk.img", http_server(Serve::Body(body.clone())));
    let origin = Origin::Url {
        url: url.clone(),
        limits: limits(),
    };
    let t = s.target("img2");
    each_step(
        &s.root,
        &|| s.dirs(),
        &|| copy::copy_in(&origin, &t, 1 << 30, true, true),
        &[],
    );
    assert_eq!(std::fs::read(&t.source).unwrap(), body);
    assert_eq!(copy::stat(&origin).unwrap(), (2, String::new()));
}

#[test]
fn copy_in_of_an_upload_moves_it_and_gives_it_back_on_failure() {
    let (_d, s) = Site::new();
    let staged = s.src().join("upload-token");
    let setup = || {
        s.dirs();
        std::fs::write(&staged, b"uploaded bytes").unwrap();
    };
    let origin = Origin::Staged {
        path: staged.display().to_string(),
    };
    let t = s.target("img3");
    each_step(
        &s.root,
        &setup,
        &|| copy::copy_in(&origin, &t, 1 << 30, false, true),
        &[],
    );
    assert!(!staged.exists(), "the upload is consumed");
    assert_eq!(std::fs::read(&t.source).unwrap(), b"uploaded bytes");
}

#[test]
fn mkfs_at_every_step() {
    let (_d, s) = Site::new();
    let t = s.target("blank");
    let steps = each_step(
        &s.root,
        &|| s.dirs(),
        &|| make::mkfs(&t, 8, qemu::Format::Raw, ""),
        &[],
    );
    assert_eq!(steps.len(), 3, "{steps:?}");
    let f = make::mkfs(&t, 8, qemu::Format::Raw, "").unwrap();
    assert_eq!((f.format.as_str(), f.size_mb), ("raw", 8));
    let q = s.target("blankq");
    let f = make::mkfs(&q, 8, qemu::Format::Qcow2, "").unwrap();
    assert_eq!(f.format, "qcow2");
    if !have("mkfs.ext4") {
        return skip("mkfs.ext4 is not installed");
    }
    for (name, fmt) in [("fsraw", qemu::Format::Raw), ("fsq", qemu::Format::Qcow2)] {
        let t = s.target(name);
        let steps = each_step(
            &s.root,
            &|| s.dirs(),
            &|| make::mkfs(&t, 16, fmt, "ext4"),
            &[name],
        );
        assert!(
            steps.contains(&"make the file system".to_string()),
            "{steps:?}"
        );
        if fmt == qemu::Format::Raw && have("blkid") {
            let o = Command::new("blkid")
                .args(["-o", "value", "-s", "TYPE", &t.source])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ext4");
        }
    }
    let e = make::mkfs(&s.target("bad"), 8, qemu::Format::Raw, "ntfs; rm -rf /").unwrap_err();
    assert!(e.to_string().contains("not supported"), "{e}");
    assert!(make::mkfs(&s.target("zero"), 0, qemu::Format::Raw, "").is_err());
}

#[test]
fn clone_at_every_step() {
    let (_d, s) = Site::new();
    let orig = s.ds().join("orig");
    let model = _d.path().join("model.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        model.to_str().unwrap(),
        "10M",
    ]);
    let setup = || {
        s.dirs();
        std::fs::copy(&model, &orig).unwrap();
    };
    let t = s.target("copy");
    each_step(&s.root, &setup, &|| copy::clone(&orig, &t, true), &[]);
    assert_eq!(
        std::fs::read(&orig).unwrap(),
        std::fs::read(&t.source).unwrap()
    );
}

#[test]
fn remove_takes_the_image_and_its_leftovers_and_is_repeatable() {
    let (_d, s) = Site::new();
    let t = s.target("gone");
    let setup = || {
        s.dirs();
        for suffix in ["", ".part", ".tmp"] {
            std::fs::write(format!("{}{suffix}", t.source), b"x").unwrap();
        }
        std::fs::write(s.ds().join("other"), b"keep").unwrap();
    };
    setup();
    fault::armed(None);
    remove(&t, false).unwrap();
    let steps = fault::disarm().seen;
    assert_eq!(steps.len(), 3);
    for n in 0..steps.len() {
        let _ = std::fs::remove_dir_all(&s.root);
        setup();
        fault::armed(Some(n));
        assert!(remove(&t, false).is_err());
        fault::disarm();
        // What is left is removed by the next run; nothing else is touched.
        remove(&t, false).unwrap();
        let left = tree(&s.ds());
        assert_eq!(left.keys().collect::<Vec<_>>(), vec!["other"], "{left:?}");
    }
    assert!(remove(&t, false).unwrap().contains("nothing to remove"));
    // Leftovers only: the image stays.
    setup();
    remove(&t, true).unwrap();
    assert_eq!(
        tree(&s.ds()).keys().collect::<Vec<_>>(),
        vec!["gone", "other"]
    );
}

#[test]
fn resize_and_snapshots_at_every_step() {
    let (_d, s) = Site::new();
    let t = s.target("snappy");
    let model = _d.path().join("model.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        model.to_str().unwrap(),
        "10M",
    ]);
    qemu_img(&["snapshot", "-c", "a", model.to_str().unwrap()]);
    qemu_img(&["snapshot", "-c", "b", model.to_str().unwrap()]);
    let setup = || {
        s.dirs();
        std::fs::copy(&model, &t.source).unwrap();
    };
    each_step(
        &s.root,
        &setup,
        &|| snap::resize(&t, qemu::Format::Qcow2, 12),
        &[],
    );
    assert_eq!(
        snap::resize(&t, qemu::Format::Qcow2, 12).unwrap().size_mb,
        12
    );
    assert!(
        snap::resize(&t, qemu::Format::Qcow2, 4).is_err(),
        "no shrinking"
    );
    each_step(
        &s.root,
        &setup,
        &|| snap::apply(&t, SnapshotAction::Delete, "a"),
        &[],
    );
    let f = snap::apply(&t, SnapshotAction::Delete, "a").unwrap();
    assert_eq!(
        f.snapshots
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        vec!["b"]
    );
    each_step(
        &s.root,
        &setup,
        &|| snap::apply(&t, SnapshotAction::Flatten, "a"),
        &[],
    );
    assert!(
        snap::apply(&t, SnapshotAction::Flatten, "a").is_err(),
        "flattened: no snapshot left"
    );
    setup();
    let f = snap::apply(&t, SnapshotAction::Revert, "a").unwrap();
    assert_eq!(f.snapshots.len(), 2);
    let e = snap::apply(&t, SnapshotAction::Revert, "zzz").unwrap_err();
    assert!(e.to_string().contains("no snapshot zzz"), "{e}");
}

#[test]
fn prepare_and_measure() {
    let (_d, s) = Site::new();
    let ds = DsDir {
        id: 100,
        path: s.root.join("ds/100").display().to_string(),
    };
    each_step(&s.root, &|| {}, &|| monitor::prepare(&ds, Some("tok")), &[]);
    let f = monitor::measure(
        std::slice::from_ref(&ds),
        &[DsToken {
            id: 100,
            token: "tok".into(),
        }],
    );
    assert!(f[0].total_mb > 0);
    assert_eq!(monitor::read_token(Path::new(&ds.path)).unwrap(), "tok");
}

// ---------------------------------------------------------------------------------------
// Bad input and faults: the image is refused or fails, nothing is left, the origin is
// untouched.

fn assert_nothing_left(s: &Site) {
    let left = tree(&s.ds());
    assert!(left.is_empty(), "left in the datastore: {left:?}");
}

#[test]
fn a_qcow2_with_a_backing_file_outside_the_datastore_is_refused() {
    let (_d, s) = Site::new();
    s.dirs();
    let base = s.src().join("base.qcow2");
    let top = s.src().join("top.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", base.to_str().unwrap(), "1M"]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        base.to_str().unwrap(),
        top.to_str().unwrap(),
    ]);
    let before = tree(&s.src());
    let origin = Origin::Path {
        path: top.display().to_string(),
        policy: policy(),
    };
    let e = copy::copy_in(&origin, &s.target("x"), 1 << 30, true, true).unwrap_err();
    assert!(
        e.to_string().contains("backing file outside its datastore"),
        "{e}"
    );
    assert_nothing_left(&s);
    assert_eq!(before, tree(&s.src()), "the origin is untouched");
    // Relative names climbing out are refused too.
    let rel = s.src().join("rel.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-u",
        "-F",
        "raw",
        "-b",
        "../../src/secret",
        rel.to_str().unwrap(),
        "1M",
    ]);
    let origin = Origin::Path {
        path: rel.display().to_string(),
        policy: policy(),
    };
    assert!(copy::copy_in(&origin, &s.target("y"), 1 << 30, true, true).is_err());
    // An external data file too.
    let data = s.src().join("data.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={}", s.src().join("d.bin").display()),
        data.to_str().unwrap(),
        "1M",
    ]);
    let origin = Origin::Path {
        path: data.display().to_string(),
        policy: policy(),
    };
    let e = copy::copy_in(&origin, &s.target("z"), 1 << 30, true, true).unwrap_err();
    assert!(e.to_string().contains("external data file"), "{e}");
    assert_nothing_left(&s);
}

#[test]
fn a_vmdk_descriptor_naming_other_files_is_refused_before_any_tool_reads_it() {
    let (_d, s) = Site::new();
    s.dirs();
    let v = s.src().join("evil.vmdk");
    std::fs::write(
        &v,
        "# Disk DescriptorFile\nversion=1\nRW 8 FLAT \"/etc/shadow\" 0\n",
    )
    .unwrap();
    let origin = Origin::Path {
        path: v.display().to_string(),
        policy: policy(),
    };
    let e = copy::copy_in(&origin, &s.target("v"), 1 << 30, true, true).unwrap_err();
    assert!(e.to_string().contains("vmdk format"), "{e}");
    assert!(copy::stat(&origin).is_err());
    assert_nothing_left(&s);
}

#[test]
fn path_rules_are_applied_to_the_real_file() {
    let (_d, s) = Site::new();
    s.dirs();
    let secret = s.root.join("oned");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("one_auth"), b"oneadmin:pw").unwrap();
    std::os::unix::fs::symlink(secret.join("one_auth"), s.src().join("innocent.img")).unwrap();
    let p = PathPolicy {
        forbidden: vec![secret.display().to_string()],
        ..PathPolicy::default()
    };
    for path in [s.src().join("innocent.img"), secret.join("one_auth")] {
        let origin = Origin::Path {
            path: path.display().to_string(),
            policy: p.clone(),
        };
        assert!(copy::stat(&origin).is_err());
        let e = copy::copy_in(&origin, &s.target("a"), 1 << 30, false, true).unwrap_err();
        assert!(
            e.to_string().contains("Not allowed to copy images from"),
            "{e}"
        );
    }
    assert_nothing_left(&s);
}

#[test]
fn a_url_redirecting_to_another_scheme_is_refused() {
    let (_d, s) = Site::new();
    s.dirs();
    let url = http_server(Serve::Redirect("file:///etc/passwd".into()));
    let origin = Origin::Url {
        url,
        limits: limits(),
    };
    let e = copy::copy_in(&origin, &s.target("r"), 1 << 30, true, true).unwrap_err();
    assert!(e.to_string().contains("only http and https"), "{e}");
    assert_nothing_left(&s);
    for bad in ["file:///etc/passwd", "ftp://example.org/x"] {
        let o = Origin::Url {
            url: bad.into(),
            limits: limits(),
        };
        assert!(
            copy::copy_in(&o, &s.target("r"), 1 << 30, true, true).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn a_stalled_url_fails_and_leaves_nothing() {
    let (_d, s) = Site::new();
    s.dirs();
    let url = http_server(Serve::Stall {
        len: 10 << 20,
        sent: 1 << 20,
    });
    let origin = Origin::Url {
        url,
        limits: UrlLimits {
            stall_timeout_ms: 500,
            ..limits()
        },
    };
    let t0 = std::time::Instant::now();
    let e = copy::copy_in(&origin, &s.target("s"), 1 << 30, true, true).unwrap_err();
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        e.to_string().contains("stalled") || e.to_string().contains("timed out"),
        "{e}"
    );
    assert_nothing_left(&s);
}

#[test]
fn too_large_origins_are_refused_and_leave_nothing() {
    let (_d, s) = Site::new();
    s.dirs();
    let url = http_server(Serve::Body(vec![1u8; 3 << 20]));
    let origin = Origin::Url {
        url,
        limits: UrlLimits {
            max_bytes: 1 << 20,
            ..limits()
        },
    };
    assert!(
        copy::stat(&origin)
            .unwrap_err()
            .to_string()
            .contains("larger")
    );
    assert!(copy::copy_in(&origin, &s.target("l"), 1 << 30, true, true).is_err());
    let big = s.src().join("big");
    std::fs::write(&big, vec![0u8; 2 << 20]).unwrap();
    let origin = Origin::Path {
        path: big.display().to_string(),
        policy: policy(),
    };
    let e = copy::copy_in(&origin, &s.target("l"), 1 << 20, true, true).unwrap_err();
    assert!(e.is_no_space(), "the datastore's room: {e}");
    assert!(
        e.to_string().contains("does not fit in the 1 MB left"),
        "{e}"
    );
    assert_nothing_left(&s);
}

/// A 4 MiB tmpfs as the datastore, as root; skipped elsewhere.
#[test]
fn a_full_datastore_fails_the_copy_with_no_space_and_leaves_nothing() {
    let (_d, s) = Site::new();
    s.dirs();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "one-rs-ds-test"])
        .arg(s.ds())
        .output();
    if !mounted.as_ref().is_ok_and(|o| o.status.success()) {
        return skip("cannot mount a small tmpfs (needs root)");
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(s.ds());
    let big = s.src().join("big");
    std::fs::write(&big, vec![5u8; 8 << 20]).unwrap();
    let before = tree(&s.src());
    let origin = Origin::Path {
        path: big.display().to_string(),
        policy: policy(),
    };
    let e = copy::copy_in(&origin, &s.target("full"), 1 << 30, true, true).unwrap_err();
    assert!(e.is_no_space(), "{e:?}");
    assert!(e.to_string().contains("datastore 1"), "{e}");
    assert_nothing_left(&s);
    assert_eq!(before, tree(&s.src()));
    let e = make::mkfs(&s.target("blank"), 64, qemu::Format::Qcow2, "").map(|_| ());
    // A sparse qcow2 of 64 MB fits in 4 MB: it is made.
    assert!(e.is_ok(), "{e:?}");
}
