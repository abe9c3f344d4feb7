//! The transfer operations on real files with real qemu-img: what each makes, and, for
//! every one, each of its steps failing in turn (testkit::each_step).

use super::testkit::{self, Mode, QemuImgDomain, each_step, guest_bytes, guest_write, tree};
use super::*;
use one_proto::template::Template;
use std::path::{Path, PathBuf};

const TOOLS: &[&str] = &["qemu-img", "qemu-io", "genisoimage", "mkswap"];

/// A test world under `root`: an image datastore `images/1` holding a qcow2 and a raw
/// image and a persistent raw one, and a system datastore `ds/0`.
struct World {
    root: PathBuf,
}

impl World {
    fn new(root: &Path) -> World {
        World {
            root: root.to_path_buf(),
        }
    }
    fn images(&self) -> PathBuf {
        self.root.join("images/1")
    }
    fn ds(&self) -> PathBuf {
        self.root.join("ds/0")
    }
    fn vm(&self) -> VmDir {
        VmDir::new(&self.ds(), 7).unwrap()
    }
    fn qcow(&self) -> PathBuf {
        self.images().join("base.qcow2")
    }
    fn raw(&self) -> PathBuf {
        self.images().join("base.raw")
    }
    fn pers(&self) -> PathBuf {
        self.images().join("pers.raw")
    }
    /// Makes the datastores and images.
    fn setup(&self) {
        std::fs::create_dir_all(self.images()).unwrap();
        std::fs::create_dir_all(self.ds()).unwrap();
        testkit::qcow2_image(&self.qcow(), 4, b"IMAGE-A");
        testkit::raw_image(&self.raw(), 4, b"IMAGE-R");
        testkit::raw_image(&self.pers(), 4, b"PERSIST");
    }
    fn template(&self, extra: &str) -> VmDisks {
        let t = Template::parse(&format!(
            "DISK=[DISK_ID=0, SOURCE=\"{}\", FORMAT=qcow2, CLONE=YES, SIZE=8, ORIGINAL_SIZE=4, TARGET=vda]\n\
             DISK=[DISK_ID=1, SOURCE=\"{}\", FORMAT=raw, CLONE=YES, SIZE=6, ORIGINAL_SIZE=4, TARGET=vdb]\n\
             DISK=[DISK_ID=2, SOURCE=\"{}\", FORMAT=raw, PERSISTENT=YES, CLONE=NO, SAVE=YES, TARGET=vdc]\n\
             {extra}",
            self.qcow().display(),
            self.raw().display(),
            self.pers().display(),
        ))
        .unwrap();
        VmDisks::from_template(&t).unwrap()
    }
    fn full(&self) -> VmDisks {
        self.template(
            "DISK=[DISK_ID=3, TYPE=fs, SIZE=8, FS=ext4, FORMAT=qcow2, TARGET=vdd]\n\
             DISK=[DISK_ID=4, TYPE=swap, SIZE=2, TARGET=vde]\n\
             CONTEXT=[DISK_ID=5, TARGET=hda, HOSTNAME=\"it's\"]",
        )
    }
    fn qcow_only(&self) -> VmDisks {
        let t = Template::parse(&format!(
            "DISK=[DISK_ID=0, SOURCE=\"{}\", FORMAT=qcow2, CLONE=YES, SIZE=4, ORIGINAL_SIZE=4, TARGET=vda]",
            self.qcow().display()
        ))
        .unwrap();
        VmDisks::from_template(&t).unwrap()
    }
}

fn shared() -> Box<dyn TransferDriver> {
    driver(TmMad::Shared, None).unwrap()
}

fn sees(vm: &VmDir, id: u32) -> Vec<u8> {
    guest_bytes(&vm.disk(id), Format::Qcow2, 7)
}

#[test]
fn tm_mad_names() {
    assert_eq!(TmMad::parse("qcow2").unwrap(), TmMad::Shared);
    assert_eq!(TmMad::parse("SSH").unwrap(), TmMad::Local);
    assert_eq!(TmMad::parse("local").unwrap().name(), "local");
    let e = TmMad::parse("ceph").unwrap_err().to_string();
    assert!(e.contains("TM_MAD \"ceph\""), "{e}");
    // local without the frontend channel: refused, saying so.
    let e = driver(TmMad::Local, None).err().unwrap().to_string();
    assert!(e.contains("byte stream"), "{e}");
}

#[test]
fn shared_prolog_makes_every_kind_of_disk_and_touches_no_image() {
    if !testkit::tools_or_skip(TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = World::new(dir.path());
    w.setup();
    let images = tree(&w.images());
    let vm = w.vm();
    let lines = vm::prolog(shared().as_ref(), &vm, &w.full()).unwrap();
    assert_eq!(lines.len(), 6, "{lines:?}");

    // disk.0: the qcow2 layout, an overlay on the image (backing format recorded), grown.
    assert_eq!(
        std::fs::read_link(vm.disk(0)).unwrap(),
        Path::new("disk.0.snap/0")
    );
    assert_eq!(
        std::fs::read_link(vm.snap_dir(0).join("disk.0.snap")).unwrap(),
        Path::new(".")
    );
    let i = qemu_img::info(&vm.disk(0), false).unwrap();
    assert_eq!(i.backing.as_deref(), Some(w.qcow().to_str().unwrap()));
    assert_eq!(i.backing_format.as_deref(), Some("qcow2"));
    assert_eq!(i.virtual_size, 8 << 20);
    assert_eq!(sees(&vm, 0), b"IMAGE-A");
    // disk.1: a sparse copy of the raw image, grown to SIZE.
    assert!(!std::fs::symlink_metadata(vm.disk(1)).unwrap().is_symlink());
    assert_eq!(std::fs::metadata(vm.disk(1)).unwrap().len(), 6 << 20);
    assert_eq!(&std::fs::read(vm.disk(1)).unwrap()[..7], b"IMAGE-R");
    // disk.2: the persistent image itself.
    assert_eq!(std::fs::read_link(vm.disk(2)).unwrap(), w.pers());
    // disk.3: qcow2 holding an ext4 file system (magic 0xEF53 at 1080).
    let fs = guest_bytes(&vm.disk(3), Format::Qcow2, 1082);
    assert_eq!(&fs[1080..1082], &[0x53, 0xef]);
    assert_eq!(qemu_img::info(&vm.disk(3), false).unwrap().format, "qcow2");
    // disk.4: raw swap (signature at the end of the first page).
    let sw = std::fs::read(vm.disk(4)).unwrap();
    assert_eq!(&sw[4086..4096], b"SWAPSPACE2");
    // disk.5: the context CD.
    let iso = std::fs::read(vm.disk(5)).unwrap();
    assert_eq!(&iso[0x8028..0x802f], b"CONTEXT");
    assert_eq!(tree(&w.images()), images, "the images are untouched");

    // A repeated prolog keeps every disk (and what the guest wrote).
    guest_write(&vm.disk(0), b"GUEST-1");
    let again = vm::prolog(shared().as_ref(), &vm, &w.full()).unwrap();
    assert!(again[..5].iter().all(|l| l.ends_with("kept")), "{again:?}");
    assert_eq!(sees(&vm, 0), b"GUEST-1");

    // disk_usage_mb: what the disk takes here.
    assert!(disk_usage_mb(&vm, 1).unwrap() <= 1);
    assert_eq!(disk_usage_mb(&vm, 9), None);

    // epilog: the VM directory goes, the images stay.
    let l = vm::epilog(shared().as_ref(), &vm, &w.full(), None).unwrap();
    assert!(l.last().unwrap().starts_with("removed"), "{l:?}");
    assert!(!vm.path().exists());
    assert_eq!(tree(&w.images()), images);
}

#[test]
fn shared_prolog_fails_at_every_step_and_leaves_nothing() {
    if !testkit::tools_or_skip(TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let w = World::new(&root);
    let steps = each_step(
        &root,
        &|| w.setup(),
        &|| vm::prolog(shared().as_ref(), &w.vm(), &w.full()).map(|l| l.join("; ")),
        Mode::Undone,
        // mkfs and mkswap write random UUIDs, the ISO a time stamp.
        &["disk.3", "disk.4", "disk.5"],
    );
    assert!(steps.len() >= 12, "{steps:?}");
}

#[test]
fn shared_prolog_refusals_name_the_problem_and_make_nothing() {
    if !testkit::tools_or_skip(TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = World::new(dir.path());
    w.setup();
    let vm = w.vm();
    let err = |disks: &VmDisks| {
        let before = tree(dir.path());
        let e = vm::prolog(shared().as_ref(), &vm, disks)
            .unwrap_err()
            .to_string();
        assert_eq!(tree(dir.path()), before, "{e}");
        e
    };
    let one = |d: &str| VmDisks::from_template(&Template::parse(d).unwrap()).unwrap();
    let e = err(&one(&format!(
        "DISK=[DISK_ID=0, SOURCE=\"{}/nope\", FORMAT=qcow2]",
        w.images().display()
    )));
    assert!(e.contains("does not exist on this host"), "{e}");
    // An image whose FORMAT lies: a raw file announced as qcow2.
    let e = err(&one(&format!(
        "DISK=[DISK_ID=0, SOURCE=\"{}\", FORMAT=qcow2]",
        w.raw().display()
    )));
    assert!(
        e.contains("is a raw image, but its FORMAT says qcow2"),
        "{e}"
    );
    let e = err(&one("DISK=[DISK_ID=0, TYPE=fs, SIZE=4, FS=ntfs]"));
    assert!(e.contains("FS: \"ntfs\" is not supported"), "{e}");
    // The shared system datastore's directory is missing: never made by a host.
    std::fs::remove_dir(w.ds()).unwrap();
    let e = err(&w.qcow_only());
    assert!(e.contains("is the shared datastore mounted"), "{e}");
}

#[test]
fn epilog_fails_at_every_step_and_a_repeat_finishes() {
    if !testkit::tools_or_skip(TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let w = World::new(&root);
    each_step(
        &root,
        &|| {
            w.setup();
            vm::prolog(shared().as_ref(), &w.vm(), &w.template("")).unwrap();
        },
        &|| vm::epilog(shared().as_ref(), &w.vm(), &w.template(""), None).map(|l| l.join("; ")),
        Mode::Resumable,
        &[],
    );
}

/// Offline disk snapshots through their whole life: create, revert, delete of a leaf, of
/// one in the middle, of the one under the top; what the guest sees at each point.
#[test]
fn offline_snapshots_keep_what_each_one_saw() {
    if !testkit::tools_or_skip(TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = World::new(dir.path());
    w.setup();
    let vm = w.vm();
    let drv = shared();
    let disks = w.qcow_only();
    let d = disks.disk(0).unwrap();
    vm::prolog(drv.as_ref(), &vm, &disks).unwrap();
    let snaps = || qcow2::snapshots(&vm, 0).unwrap();

    guest_write(&vm.disk(0), b"WROTE-B");
    drv.snapshot_create(&vm, d, 0, None).unwrap();
    guest_write(&vm.disk(0), b"WROTE-C");
    drv.snapshot_create(&vm, d, 1, None).unwrap();
    guest_write(&vm.disk(0), b"WROTE-D");
    // Snapshot s lives in file s; the VM writes file 2.
    assert_eq!(
        snaps().into_iter().collect::<Vec<_>>(),
        [(0, "0".to_string()), (1, "1".to_string())]
    );
    assert_eq!(
        std::fs::read_link(vm.disk(0)).unwrap(),
        Path::new("disk.0.snap/2")
    );
    let again = drv.snapshot_create(&vm, d, 1, None).unwrap();
    assert!(again.contains("already taken"), "{again}");

    drv.snapshot_revert(&vm, d, 0).unwrap();
    assert_eq!(sees(&vm, 0), b"WROTE-B");
    guest_write(&vm.disk(0), b"WROTE-E");
    // A leaf (1, taken after 0, not under the top any more): its file goes.
    drv.snapshot_delete(&vm, d, 1, None).unwrap();
    assert!(!vm.snap_dir(0).join("1").exists());
    assert_eq!(sees(&vm, 0), b"WROTE-E");
    let gone = drv.snapshot_delete(&vm, d, 1, None).unwrap();
    assert!(gone.contains("already gone"), "{gone}");

    drv.snapshot_create(&vm, d, 2, None).unwrap();
    guest_write(&vm.disk(0), b"WROTE-F");
    // 0 is in the middle now (image <- 0 <- 2 <- top): merged into its child.
    drv.snapshot_delete(&vm, d, 0, None).unwrap();
    assert_eq!(snaps().keys().copied().collect::<Vec<_>>(), [2]);
    assert_eq!(sees(&vm, 0), b"WROTE-F");
    drv.snapshot_revert(&vm, d, 2).unwrap();
    assert_eq!(sees(&vm, 0), b"WROTE-E");
    // 2 is under the top: merged into it.
    guest_write(&vm.disk(0), b"WROTE-G");
    drv.snapshot_delete(&vm, d, 2, None).unwrap();
    assert!(snaps().is_empty());
    assert_eq!(sees(&vm, 0), b"WROTE-G");
    // Only the top is left, still on the image.
    let left: Vec<_> = std::fs::read_dir(vm.snap_dir(0))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        qemu_img::info(&vm.disk(0), false)
            .unwrap()
            .full_backing
            .unwrap(),
        w.qcow()
    );

    // Refusals: raw disks and persistent disks have no snapshots here.
    let raw = w.template("");
    let e = drv
        .snapshot_create(&vm, raw.disk(1).unwrap(), 0, None)
        .unwrap_err();
    assert!(e.to_string().contains("need a qcow2 disk"), "{e}");
    let e = drv.snapshot_revert(&vm, d, 9).unwrap_err();
    assert!(e.to_string().contains("has no snapshot 9"), "{e}");
}

/// Sets up a VM whose disk 0 has snapshots 0 and 1 (file 2 on top), for the step tests.
fn with_two_snapshots(w: &World) {
    w.setup();
    let vm = w.vm();
    let disks = w.qcow_only();
    let d = disks.disk(0).unwrap();
    vm::prolog(shared().as_ref(), &vm, &disks).unwrap();
    guest_write(&vm.disk(0), b"WROTE-B");
    qcow2::snapshot_create(&vm, d, 0, None).unwrap();
    guest_write(&vm.disk(0), b"WROTE-C");
    qcow2::snapshot_create(&vm, d, 1, None).unwrap();
    guest_write(&vm.disk(0), b"WROTE-D");
}

#[test]
fn snapshot_operations_fail_at_every_step() {
    if !testkit::tools_or_skip(TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let w = World::new(&root);
    let disks = w.qcow_only();
    let d = disks.disk(0).unwrap();
    let check = |state: &dyn Fn(&VmDir)| {
        state(&w.vm());
    };
    each_step(
        &root,
        &|| with_two_snapshots(&w),
        &|| qcow2::snapshot_create(&w.vm(), d, 2, None),
        Mode::Undone,
        &[],
    );
    each_step(
        &root,
        &|| with_two_snapshots(&w),
        &|| qcow2::snapshot_revert(&w.vm(), d, 0),
        Mode::Undone,
        &[],
    );
    check(&|vm| assert_eq!(sees(vm, 0), b"WROTE-B"));
    // Deletes: the one under the top (1), one in the middle (0), a leaf (1 after a revert).
    for (s, revert_first) in [(1, None), (0, None), (1, Some(0))] {
        each_step(
            &root,
            &|| {
                with_two_snapshots(&w);
                if let Some(r) = revert_first {
                    qcow2::snapshot_revert(&w.vm(), d, r).unwrap();
                }
            },
            &|| qcow2::snapshot_delete(&w.vm(), d, s, None),
            Mode::Resumable,
            &[],
        );
        let expect: &[u8] = if revert_first.is_some() {
            b"WROTE-B"
        } else {
            b"WROTE-D"
        };
        assert_eq!(sees(&w.vm(), 0), expect, "delete {s}");
    }
}

/// The live paths with a domain played by qemu-img: the domain switches to the overlay,
/// pulls the snapshot under the top, commits a middle one; a repeat after a crash finishes.
#[test]
fn live_snapshots_go_through_the_domain() {
    if !testkit::tools_or_skip(TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = World::new(dir.path());
    w.setup();
    let vm = w.vm();
    let disks = w.qcow_only();
    let d = disks.disk(0).unwrap();
    vm::prolog(shared().as_ref(), &vm, &disks).unwrap();
    // QEMU opened the disk through disk.0.
    let dom = QemuImgDomain::new(vm.disk(0));
    let live = Live {
        disk: &dom,
        target: "vda",
    };
    let top = || dom.top.borrow().clone();
    guest_write(&top(), b"WROTE-B");
    qcow2::snapshot_create(&vm, d, 0, Some(live)).unwrap();
    assert_eq!(top(), vm.snap_dir(0).join("1"));
    assert_eq!(
        std::fs::read_link(vm.disk(0)).unwrap(),
        Path::new("disk.0.snap/1")
    );
    guest_write(&top(), b"WROTE-C");
    qcow2::snapshot_create(&vm, d, 1, Some(live)).unwrap();
    guest_write(&top(), b"WROTE-D");
    qcow2::snapshot_create(&vm, d, 2, Some(live)).unwrap();
    guest_write(&top(), b"WROTE-E");
    // A failed switch leaves things as they were.
    *dom.fail.borrow_mut() = Some("snapshot_to");
    let before = tree(dir.path());
    assert!(qcow2::snapshot_create(&vm, d, 3, Some(live)).is_err());
    assert_eq!(tree(dir.path()), before);
    *dom.fail.borrow_mut() = None;

    // 1 is in the middle of the running chain (0 <- 1 <- 2 <- top): 2 is committed into
    // 1's file, which then holds snapshot 2.
    qcow2::snapshot_delete(&vm, d, 1, Some(live)).unwrap();
    assert!(dom.calls.borrow().contains(&"commit".to_string()));
    let t = qcow2::snapshots(&vm, 0).unwrap();
    assert_eq!(t.get(&2).map(String::as_str), Some("1"), "{t:?}");
    assert!(!vm.snap_dir(0).join("2").exists());
    assert_eq!(guest_bytes(&top(), Format::Qcow2, 7), b"WROTE-E");
    let flat = |s: u32| {
        guest_bytes(
            &qcow2::content_file(&vm, d.id(), Some(s)).unwrap(),
            Format::Qcow2,
            7,
        )
    };
    assert_eq!(flat(0), b"WROTE-B");
    assert_eq!(flat(2), b"WROTE-D");
    // 2 (now file 1) is under the top: pulled into it.
    qcow2::snapshot_delete(&vm, d, 2, Some(live)).unwrap();
    assert!(dom.calls.borrow().contains(&"pull".to_string()));
    assert_eq!(guest_bytes(&top(), Format::Qcow2, 7), b"WROTE-E");
    assert_eq!(flat(0), b"WROTE-B");

    // A crash right after a commit: the repeat sees the commit done and only records it.
    qcow2::snapshot_create(&vm, d, 3, Some(live)).unwrap();
    guest_write(&top(), b"WROTE-F");
    qcow2::snapshot_create(&vm, d, 4, Some(live)).unwrap();
    guest_write(&top(), b"WROTE-G");
    fault::armed(None);
    let _ = qcow2::snapshot_delete(&vm, d, 3, Some(live));
    let steps = fault::disarm().seen;
    let forget = steps
        .iter()
        .position(|s| s == "forget the snapshot")
        .unwrap();
    // Undo that delete is impossible; start again from a fresh chain for the crash run.
    let t = qcow2::snapshots(&vm, 0).unwrap();
    assert!(!t.contains_key(&3));
    qcow2::snapshot_create(&vm, d, 5, Some(live)).unwrap();
    guest_write(&top(), b"WROTE-H");
    qcow2::snapshot_create(&vm, d, 6, Some(live)).unwrap();
    guest_write(&top(), b"WROTE-I");
    fault::armed(Some(forget));
    assert!(qcow2::snapshot_delete(&vm, d, 5, Some(live)).is_err());
    fault::disarm();
    let commits = dom.calls.borrow().iter().filter(|c| *c == "commit").count();
    qcow2::snapshot_delete(&vm, d, 5, Some(live)).unwrap();
    assert_eq!(
        dom.calls.borrow().iter().filter(|c| *c == "commit").count(),
        commits,
        "no second commit"
    );
    assert_eq!(flat(6), b"WROTE-H");
    assert_eq!(flat(0), b"WROTE-B");
    assert_eq!(guest_bytes(&top(), Format::Qcow2, 7), b"WROTE-I");
}

#[test]
fn save_as_copies_the_disk_or_a_snapshot_and_leaves_nothing_on_failure() {
    if !testkit::tools_or_skip(TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let w = World::new(&root);
    let disks = w.qcow_only();
    let d = disks.disk(0).unwrap();
    let to = |name: &str| SaveAs {
        datastore: w.images(),
        source: w.images().join(name),
        format: Format::Qcow2,
    };
    for snap in [None, Some(0)] {
        each_step(
            &root,
            &|| with_two_snapshots(&w),
            &|| shared().save_as(&w.vm(), d, snap, &to("saved"), None),
            Mode::Undone,
            &[],
        );
        let saved = w.images().join("saved");
        let i = qemu_img::info(&saved, false).unwrap();
        assert_eq!(
            (i.format.as_str(), i.backing),
            ("qcow2", None),
            "standalone"
        );
        let want: &[u8] = if snap.is_some() {
            b"WROTE-B"
        } else {
            b"WROTE-D"
        };
        assert_eq!(guest_bytes(&saved, Format::Qcow2, 7), want);
        // Byte for byte what the guest sees, over the whole disk.
        let src = qcow2::content_file(&w.vm(), d.id(), snap).unwrap();
        let out = std::process::Command::new("qemu-img")
            .args(["compare", "-q", "-U", "-f", "qcow2", "-F", "qcow2"])
            .arg(&src)
            .arg(&saved)
            .status()
            .unwrap();
        assert!(out.success(), "qemu-img compare");
    }
    // Live: the domain copies its disk.
    with_two_snapshots(&w);
    let dom = QemuImgDomain::new(w.vm().disk(0));
    let live = Live {
        disk: &dom,
        target: "vda",
    };
    shared()
        .save_as(&w.vm(), d, None, &to("live"), Some(live))
        .unwrap();
    assert_eq!(dom.calls.borrow().as_slice(), ["copy_to"]);
    assert_eq!(
        guest_bytes(&w.images().join("live"), Format::Qcow2, 7),
        b"WROTE-D"
    );
    // Refusals: outside the datastore, a missing datastore.
    let bad = SaveAs {
        datastore: w.images(),
        source: root.join("elsewhere"),
        format: Format::Qcow2,
    };
    assert!(shared().save_as(&w.vm(), d, None, &bad, None).is_err());
    let gone = SaveAs {
        datastore: root.join("images/9"),
        source: root.join("images/9/x"),
        format: Format::Qcow2,
    };
    let e = shared().save_as(&w.vm(), d, None, &gone, None).unwrap_err();
    assert!(e.to_string().contains("does not exist on this host"), "{e}");
}

#[test]
fn resize_grows_the_file_the_vm_writes() {
    if !testkit::tools_or_skip(TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = World::new(dir.path());
    w.setup();
    let vm = w.vm();
    let disks = w.template("");
    vm::prolog(shared().as_ref(), &vm, &disks).unwrap();
    for id in [0, 1] {
        let d = disks.disk(id).unwrap();
        shared().resize(&vm, d, 16 << 20, None).unwrap();
        assert_eq!(
            qemu_img::info(&vm.disk(id), false).unwrap().virtual_size,
            16 << 20
        );
        let again = shared().resize(&vm, d, 16 << 20, None).unwrap();
        assert!(again.contains("already"), "{again}");
    }
    // The image under the overlay keeps its size.
    assert_eq!(
        qemu_img::info(&w.qcow(), false).unwrap().virtual_size,
        4 << 20
    );
}

// --- local ----------------------------------------------------------------------------

/// A host-local system datastore: the frontend is `fe/` (its paths `/images/1/...` and
/// `/ds/0/<vm>` map there), the host's datastore `host/0`.
struct LocalWorld {
    root: PathBuf,
}

impl LocalWorld {
    fn fe(&self) -> PathBuf {
        self.root.join("fe")
    }
    fn vm(&self) -> VmDir {
        VmDir::new(&self.root.join("host/0"), 7).unwrap()
    }
    fn drv(&self) -> Box<dyn TransferDriver> {
        driver(
            TmMad::Local,
            Some(std::sync::Arc::new(local::LocalDir::new(self.fe()))),
        )
        .unwrap()
    }
    fn stash(&self, seq: i64) -> Stash {
        Stash {
            dir: PathBuf::from("/ds/0/7"),
            seq,
        }
    }
    fn setup(&self) {
        let img = self.fe().join("images/1");
        std::fs::create_dir_all(&img).unwrap();
        // The host's own datastore directory (made at onboarding).
        std::fs::create_dir_all(self.root.join("host/0")).unwrap();
        testkit::qcow2_image(&img.join("base.qcow2"), 4, b"IMAGE-A");
        testkit::raw_image(&img.join("pers.raw"), 4, b"PERSIST");
    }
    fn disks(&self) -> VmDisks {
        VmDisks::from_template(
            &Template::parse(
                "DISK=[DISK_ID=0, SOURCE=\"/images/1/base.qcow2\", FORMAT=qcow2, CLONE=YES, SIZE=8, ORIGINAL_SIZE=4, TARGET=vda]\n\
                 DISK=[DISK_ID=1, SOURCE=\"/images/1/pers.raw\", FORMAT=raw, PERSISTENT=YES, CLONE=NO, SAVE=YES, TARGET=vdb]\n\
                 DISK=[DISK_ID=2, TYPE=swap, SIZE=2, TARGET=vdc]",
            )
            .unwrap(),
        )
        .unwrap()
    }
}

/// A set-up [`LocalWorld`] in a fresh directory (kept as long as the first value lives);
/// None when the tools are missing (the test then skips, saying so).
fn local_world() -> Option<(tempfile::TempDir, LocalWorld)> {
    if !testkit::tools_or_skip(TOOLS) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let lw = LocalWorld {
        root: dir.path().to_path_buf(),
    };
    lw.setup();
    Some((dir, lw))
}

#[test]
fn local_copies_disks_from_the_frontend_and_moves_them_back_and_forth() {
    let Some((_dir, lw)) = local_world() else {
        return;
    };
    let (drv, vm, disks) = (lw.drv(), lw.vm(), lw.disks());
    vm::prolog(drv.as_ref(), &vm, &disks).unwrap();
    // A standalone copy of the qcow2 image under the layout, grown; the persistent image
    // copied whole.
    let i = qemu_img::info(&vm.disk(0), false).unwrap();
    assert_eq!((i.backing, i.virtual_size), (None, 8 << 20));
    assert_eq!(sees(&vm, 0), b"IMAGE-A");
    assert_eq!(&std::fs::read(vm.disk(1)).unwrap()[..7], b"PERSIST");
    let d0 = disks.disk(0).unwrap();
    guest_write(&vm.disk(0), b"WROTE-B");
    drv.snapshot_create(&vm, d0, 0, None).unwrap();
    guest_write(&vm.disk(0), b"WROTE-C");
    std::fs::write(vm.path().join("checkpoint"), b"memory").unwrap();

    // stop: everything to the frontend, nothing left on the host.
    vm::epilog_stop(drv.as_ref(), &vm, &lw.stash(1)).unwrap();
    assert!(!vm.path().exists());
    let fe_vm = lw.fe().join("ds/0/7");
    assert_eq!(std::fs::read(fe_vm.join("checkpoint")).unwrap(), b"memory");
    assert_eq!(
        std::fs::read_link(fe_vm.join("disk.0")).unwrap(),
        Path::new("disk.0.snap/1")
    );
    // A repeat finds it done.
    vm::epilog_stop(drv.as_ref(), &vm, &lw.stash(1)).unwrap();

    // save-as while stopped: the frontend agent copies from its copy, no host involved;
    // the current content and a snapshot's, the copy itself untouched.
    let images = lw.fe().join("images/1");
    let stashed = |name: &str| SaveAs {
        datastore: images.clone(),
        source: images.join(name),
        format: Format::Qcow2,
    };
    local::save_stashed(&fe_vm, 7, 0, None, &stashed("from-stash")).unwrap();
    assert_eq!(
        guest_bytes(&images.join("from-stash"), Format::Qcow2, 7),
        b"WROTE-C"
    );
    assert!(
        qemu_img::info(&images.join("from-stash"), false)
            .unwrap()
            .backing
            .is_none()
    );
    local::save_stashed(&fe_vm, 7, 0, Some(0), &stashed("from-stash-snap")).unwrap();
    assert_eq!(
        guest_bytes(&images.join("from-stash-snap"), Format::Qcow2, 7),
        b"WROTE-B"
    );
    assert_eq!(
        std::fs::read_link(fe_vm.join("disk.0")).unwrap(),
        Path::new("disk.0.snap/1")
    );
    assert!(fe_vm.join(local::STASH_MARKER).is_file());
    // Another VM's id, a source outside the datastore, a missing snapshot: refused, nothing
    // written.
    let e = local::save_stashed(&fe_vm, 8, 0, None, &stashed("x")).unwrap_err();
    assert!(e.to_string().contains("is not the frontend's copy"), "{e}");
    let outside = SaveAs {
        datastore: images.clone(),
        source: lw.fe().join("elsewhere"),
        format: Format::Qcow2,
    };
    assert!(local::save_stashed(&fe_vm, 7, 0, None, &outside).is_err());
    let e = local::save_stashed(&fe_vm, 7, 0, Some(5), &stashed("x")).unwrap_err();
    assert!(e.to_string().contains("no snapshot 5"), "{e}");
    assert!(!images.join("x").exists() && !images.join("x.part").exists());

    // resume: back on the host, same content and snapshots, the frontend copy gone.
    vm::prolog_resume(drv.as_ref(), &vm, &lw.stash(1)).unwrap();
    assert!(!fe_vm.exists());
    assert_eq!(sees(&vm, 0), b"WROTE-C");
    drv.snapshot_revert(&vm, d0, 0).unwrap();
    assert_eq!(sees(&vm, 0), b"WROTE-B");
    vm::prolog_resume(drv.as_ref(), &vm, &lw.stash(1)).unwrap();
    assert!(!vm.path().join(local::STASH_MARKER).exists());

    // save-as: the new image lands on the frontend.
    let to = SaveAs {
        datastore: PathBuf::from("/images/1"),
        source: PathBuf::from("/images/1/saved"),
        format: Format::Qcow2,
    };
    drv.save_as(&vm, d0, None, &to, None).unwrap();
    assert_eq!(
        guest_bytes(&lw.fe().join("images/1/saved"), Format::Qcow2, 7),
        b"WROTE-B"
    );
    assert!(!vm.path().join(".saveas.disk.0").exists());

    // terminate: the persistent disk's content goes back to its image.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(vm.disk(1))
        .unwrap();
    std::io::Write::write_all(&mut f, b"CHANGED").unwrap();
    drop(f);
    vm::epilog(drv.as_ref(), &vm, &disks, None).unwrap();
    assert!(!vm.path().exists());
    assert_eq!(
        &std::fs::read(lw.fe().join("images/1/pers.raw")).unwrap()[..7],
        b"CHANGED"
    );
    // The non-persistent image was never written.
    assert_eq!(
        guest_bytes(&lw.fe().join("images/1/base.qcow2"), Format::Qcow2, 7),
        b"IMAGE-A"
    );
}

#[test]
fn local_terminate_of_a_stopped_vm_saves_from_the_frontend_copy() {
    let Some((_dir, lw)) = local_world() else {
        return;
    };
    testkit::qcow2_image(&lw.fe().join("images/1/pers.qcow2"), 4, b"PERSIST");
    let (drv, vm) = (lw.drv(), lw.vm());
    let disks = VmDisks::from_template(
        &Template::parse(
            "DISK=[DISK_ID=0, SOURCE=\"/images/1/base.qcow2\", FORMAT=qcow2, CLONE=YES, TARGET=vda]\n\
             DISK=[DISK_ID=1, SOURCE=\"/images/1/pers.qcow2\", FORMAT=qcow2, PERSISTENT=YES, CLONE=NO, SAVE=YES, TARGET=vdb]",
        )
        .unwrap(),
    )
    .unwrap();
    vm::prolog(drv.as_ref(), &vm, &disks).unwrap();
    guest_write(&vm.disk(1), b"STOPPED");
    vm::epilog_stop(drv.as_ref(), &vm, &lw.stash(3)).unwrap();
    assert!(!vm.path().exists());
    let fe_vm = lw.fe().join("ds/0/7");
    assert!(drv.has_stash(&lw.stash(3)).unwrap());

    // terminate while stopped: the persistent disk's content comes from the stash, goes to
    // its image, and nothing is left on either side.
    let lines = vm::epilog(drv.as_ref(), &vm, &disks, Some(&lw.stash(3))).unwrap();
    assert!(!vm.path().exists() && !fe_vm.exists(), "{lines:?}");
    let img = lw.fe().join("images/1/pers.qcow2");
    assert_eq!(guest_bytes(&img, Format::Qcow2, 7), b"STOPPED", "{lines:?}");
    assert!(qemu_img::info(&img, false).unwrap().backing.is_none());
    // A repeat: nothing left to do.
    vm::epilog(drv.as_ref(), &vm, &disks, Some(&lw.stash(3))).unwrap();

    // Without a persistent disk, the frontend's copy is dropped, nothing fetched.
    let only = VmDisks::from_template(
        &Template::parse(
            "DISK=[DISK_ID=0, SOURCE=\"/images/1/base.qcow2\", FORMAT=qcow2, CLONE=YES, TARGET=vda]",
        )
        .unwrap(),
    )
    .unwrap();
    vm::prolog(drv.as_ref(), &vm, &only).unwrap();
    vm::epilog_stop(drv.as_ref(), &vm, &lw.stash(4)).unwrap();
    let lines = vm::epilog(drv.as_ref(), &vm, &only, Some(&lw.stash(4))).unwrap();
    assert!(!fe_vm.exists() && !vm.path().exists(), "{lines:?}");
    assert!(
        lines[0].contains("removed the frontend's copy"),
        "{lines:?}"
    );
}

#[test]
fn local_operations_fail_at_every_step() {
    if !testkit::tools_or_skip(TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let lw = LocalWorld { root: root.clone() };
    let prolog = || {
        lw.setup();
        vm::prolog(lw.drv().as_ref(), &lw.vm(), &lw.disks()).unwrap();
        std::fs::write(lw.vm().path().join("checkpoint"), b"memory").unwrap();
    };
    each_step(
        &root,
        &|| lw.setup(),
        &|| vm::prolog(lw.drv().as_ref(), &lw.vm(), &lw.disks()).map(|l| l.join("; ")),
        Mode::Undone,
        &["disk.2"],
    );
    each_step(
        &root,
        &prolog,
        &|| vm::epilog_stop(lw.drv().as_ref(), &lw.vm(), &lw.stash(3)).map(|l| l.join("; ")),
        Mode::Resumable,
        &["disk.2"],
    );
    each_step(
        &root,
        &|| {
            prolog();
            vm::epilog_stop(lw.drv().as_ref(), &lw.vm(), &lw.stash(3)).unwrap();
        },
        &|| vm::prolog_resume(lw.drv().as_ref(), &lw.vm(), &lw.stash(3)).map(|l| l.join("; ")),
        Mode::Resumable,
        &["disk.2"],
    );
    each_step(
        &root,
        &prolog,
        &|| vm::epilog(lw.drv().as_ref(), &lw.vm(), &lw.disks(), None).map(|l| l.join("; ")),
        Mode::Resumable,
        &["disk.2"],
    );
    // save-as of a stopped VM, on the frontend's copy: undone whole, the copy untouched.
    let images = lw.fe().join("images/1");
    each_step(
        &root,
        &|| {
            prolog();
            vm::epilog_stop(lw.drv().as_ref(), &lw.vm(), &lw.stash(3)).unwrap();
        },
        &|| {
            local::save_stashed(
                &lw.fe().join("ds/0/7"),
                7,
                0,
                None,
                &SaveAs {
                    datastore: images.clone(),
                    source: images.join("saved"),
                    format: Format::Qcow2,
                },
            )
        },
        Mode::Undone,
        &["disk.2"],
    );
}

/// A frontend copy left by an earlier stay (its resume crashed before removing it) is not
/// taken for this stay's: the next stop sends everything again.
#[test]
fn a_stale_frontend_copy_is_replaced() {
    let Some((_dir, lw)) = local_world() else {
        return;
    };
    let (drv, vm, disks) = (lw.drv(), lw.vm(), lw.disks());
    vm::prolog(drv.as_ref(), &vm, &disks).unwrap();
    vm::epilog_stop(drv.as_ref(), &vm, &lw.stash(1)).unwrap();
    // resume fetches, then "crashes" before removing the frontend copy: simulate by
    // copying it back.
    vm::prolog_resume(drv.as_ref(), &vm, &lw.stash(1)).unwrap();
    let fe_vm = lw.fe().join("ds/0/7");
    std::fs::create_dir_all(&fe_vm).unwrap();
    std::fs::write(fe_vm.join(local::STASH_MARKER), b"1").unwrap();
    std::fs::write(vm.path().join(local::STASH_MARKER), b"1").unwrap();
    guest_write(&vm.disk(0), b"NEWDATA");
    vm::epilog_stop(drv.as_ref(), &vm, &lw.stash(2)).unwrap();
    assert_eq!(
        std::fs::read(fe_vm.join(local::STASH_MARKER)).unwrap(),
        b"2"
    );
    vm::prolog_resume(drv.as_ref(), &vm, &lw.stash(2)).unwrap();
    assert_eq!(sees(&vm, 0), b"NEWDATA");
}

/// A full datastore (a small tmpfs): the copy fails as "not enough space", and nothing is
/// left behind.
#[test]
fn a_full_datastore_is_told_apart_and_leaves_nothing() {
    if !testkit::tools_or_skip(TOOLS) {
        return;
    }
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = World::new(dir.path());
    w.setup();
    // The raw image holds 3 MiB of data; the datastore has 1 MiB.
    testkit::raw_image(&w.raw(), 4, &vec![7u8; 3 << 20]);
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(w.ds())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("SKIP: cannot mount a tmpfs here");
        return;
    }
    let vm = w.vm();
    let r = vm::prolog(shared().as_ref(), &vm, &w.template(""));
    let left: Vec<_> = std::fs::read_dir(w.ds()).unwrap().collect();
    let _ = std::process::Command::new("umount").arg(w.ds()).status();
    let e = r.unwrap_err();
    assert!(e.is_no_space(), "{e}");
    assert!(e.to_string().starts_with("not enough space in"), "{e}");
    assert!(left.is_empty(), "{left:?}");
}

/// A disk that is a plain qcow2 file (a volatile disk, or a clone made before the layout)
/// moves into the layout at its first snapshot; every step of that failing is finished by a
/// repeat, and a chain whose disk.<id> went missing is never made over by a prolog.
#[test]
fn a_plain_qcow2_disk_is_adopted_into_the_layout() {
    if !testkit::tools_or_skip(TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let w = World::new(&root);
    let disks = VmDisks::from_template(
        &Template::parse("DISK=[DISK_ID=0, TYPE=fs, SIZE=4, FORMAT=qcow2, TARGET=vda]").unwrap(),
    )
    .unwrap();
    let d = disks.disk(0).unwrap();
    let setup = || {
        w.setup();
        vm::prolog(shared().as_ref(), &w.vm(), &disks).unwrap();
        guest_write(&w.vm().disk(0), b"PLAIN-1");
    };
    each_step(
        &root,
        &setup,
        &|| qcow2::snapshot_create(&w.vm(), d, 0, None),
        Mode::Resumable,
        &[],
    );
    let vm = w.vm();
    assert_eq!(
        std::fs::read_link(vm.disk(0)).unwrap(),
        Path::new("disk.0.snap/1")
    );
    guest_write(&vm.disk(0), b"PLAIN-2");
    qcow2::snapshot_revert(&vm, d, 0).unwrap();
    assert_eq!(sees(&vm, 0), b"PLAIN-1");

    // disk.0 lost, its chain left: a prolog does not make a new disk over it.
    std::fs::remove_file(vm.disk(0)).unwrap();
    let img = w.template("");
    let Disk::Image(i) = img.disk(0).unwrap() else {
        panic!()
    };
    let e = shared().clone_disk(&vm, i).unwrap_err().to_string();
    assert!(e.contains("holds a disk's chain"), "{e}");
    assert!(vm.snap_dir(0).join("0").exists());
}
