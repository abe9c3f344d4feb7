"""Disks on a real KVM host (issue 9, host half): the transfer drivers `shared` and `qcow2`
on the machine's libvirtd, with the test guest writing a marker to its disks.

The guest (tests/guest/build-guest.sh) reads `ONE-MARK <token>:<n>` in the first sector of
each disk named by ONE_GUEST_MARK_DEV at every boot, writes `<token>:<n+1>` there and says
so on its serial console (`ONE-GUEST-MARK DEV=vda FOUND=tok:1 WROTE=tok:2`); its heartbeat
re-reads the disks (`MARK=vda:tok:2,...`). So a disk's data surviving an operation is seen
from inside the guest, and checked on the files as well.

Images are registered with SOURCE already in the image datastore (READY at once), as an
administrator can today; registration from a path, a URL or an upload is the frontend
half of the issue. One cloud (oned + localhost) serves the whole module: datastore 0 is
`shared`, a second system datastore is `qcow2`.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from harness import agent_children, parse_xml, wait_for, xsd_check
from storage_util import first_sector, run, source_image
from kvm_util import (  # noqa: F401  (kvm_env is a fixture)
    LCM_RUNNING,
    VM_ACTIVE,
    VM_DONE,
    VM_POWEROFF,
    KvmCloud,
    hosts_config,
    kvm_env,
)

# Real domains and files, not the database: the SQLite stage runs these (conftest.py).
pytestmark = pytest.mark.db_independent

RUNNING = (VM_ACTIVE, LCM_RUNNING)
VM_STOPPED, VM_UNDEPLOYED = 4, 9
IMG_READY, IMG_USED, IMG_USED_PERS = 1, 2, 8
DISK_SNAPSHOT_LIVE, HOTPLUG_SAVEAS = 57, 26


class StorageCloud(KvmCloud):
    """A KvmCloud whose VMs may sit on other system datastores: a VM's directory is in the
    datastore of its last HISTORY record."""

    def vm_dir(self, vid: int) -> Path:
        x = self.vm_xml(vid)
        ds = x.findtext("HISTORY_RECORDS/HISTORY[last()]/DS_ID") or "0"
        return self.oned.data_dir / "datastores" / ds / str(vid)

    def image_xml(self, iid: int):
        text = self.oned.admin_xml("one.image.info", iid)
        xsd_check(text)
        return parse_xml(text)

    def image_state(self, iid: int) -> int:
        return int(self.image_xml(iid).findtext("STATE"))

    def image(self, name: str, mb: int = 64, persistent: bool = False) -> tuple[int, Path]:
        """A qcow2 image made in the image datastore (datastore 1) and registered with its
        SOURCE: READY at once."""
        iid, path = source_image(self.one, self.oned.data_dir, name, mb,
                                 extra=f'PERSISTENT="{"YES" if persistent else "NO"}"\nDEV_PREFIX="vd"')
        assert self.image_state(iid) == IMG_READY
        return iid, path

    def marks(self, vid: int) -> list[tuple[str, str, str]]:
        """(device, found, wrote) of every ONE-GUEST-MARK line so far."""
        return re.findall(r"ONE-GUEST-MARK DEV=(\S+) FOUND=(\S+) WROTE=(\S+)", self.serial_log(vid))

    def wait_boot_marks(self, vid: int, boot: int, timeout: float = 120.0) -> dict[str, tuple[str, str]]:
        """Waits for boot number `boot` (1-based) to report its marks; device -> (found, wrote)."""
        self.wait_marker(vid, "ONE-GUEST-READY", count=boot, timeout=timeout)
        log = self.serial_log(vid)
        part = log.split("ONE-GUEST-BOOT")[boot]
        return {d: (f, w) for d, f, w in re.findall(r"ONE-GUEST-MARK DEV=(\S+) FOUND=(\S+) WROTE=(\S+)", part)}

    def last_alive_mark(self, vid: int) -> str:
        marks = re.findall(r"ONE-GUEST-ALIVE .* MARK=(\S*)", self.serial_log(vid))
        return marks[-1] if marks else ""


@pytest.fixture(scope="module")
def cloud(kvm_env, request):
    failed_before = request.session.testsfailed
    c = StorageCloud(kvm_env, "storage", hosts_config(vm_usage_seconds="2.0"))
    try:
        # A qcow2 system datastore beside the shared one (0): made before the host joins, so
        # the agent gets its directory; the directory is the "share" (an admin mounts NFS
        # there; this machine's kernel has no NFS client).
        c.qcow2_ds = c.one.datastore.allocate('NAME="sys-qcow2"\nTYPE="SYSTEM_DS"\nTM_MAD="qcow2"', -1)
        # And a host-local one (TM_MAD local): disks copied to and from the host.
        c.local_ds = c.one.datastore.allocate('NAME="sys-local"\nTYPE="SYSTEM_DS"\nTM_MAD="local"', -1)
        for ds in (c.qcow2_ds, c.local_ds):
            d = c.oned.data_dir / "datastores" / str(ds)
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)
        c.hid = c.add_localhost()
        yield c
    finally:
        c.close(request.session.testsfailed > failed_before)


def vm_template(c: StorageCloud, name: str, token: str, disks: str, mark_dev: str = "vda",
                extra_ctx: str = "") -> str:
    return c.guest_template(
        name,
        extra=disks
        + f'CONTEXT=[ONE_GUEST_MARK="{token}", ONE_GUEST_MARK_DEV="{mark_dev}", '
        f'ONE_GUEST_HEARTBEAT="1"{extra_ctx}]\n',
    )


def both(c: StorageCloud, vids: list[int], state, timeout: float = 120.0):
    for v in vids:
        c.wait_vm(v, state, timeout=timeout)


def test_disk_data_survives_poweroff_stop_and_undeploy_on_shared_qcow2_and_local(cloud):
    """The same VM on each kind of system datastore. `local` (TM_MAD local) copies the
    disks from the frontend to the host's own directory at deploy, to the frontend's stash
    (`<ds>/.stash/<vm>`) at stop and undeploy and back at resume, and the persistent disk
    back to its image at terminate: every byte through the agent's byte stream, relayed by
    oned to its frontend agent."""
    c = cloud
    vms = {}
    sys_ds = {"sh": 0, "qc": c.qcow2_ds, "lo": c.local_ds}
    for tag, ds in sys_ds.items():
        img, img_path = c.image(f"data-{tag}")
        pimg, pimg_path = c.image(f"pers-{tag}", mb=16, persistent=True)
        disks = (
            f'DISK=[IMAGE_ID="{img}", TARGET="vda", SIZE="96"]\n'
            f'DISK=[IMAGE_ID="{pimg}", TARGET="vdb"]\n'
            'DISK=[TYPE="fs", SIZE="16", FS="ext4", FORMAT="qcow2", TARGET="vdc"]\n'
            'DISK=[TYPE="swap", SIZE="8", TARGET="vdd"]\n'
        )
        vid = c.one.vm.allocate(vm_template(
            c, f"marks-{tag}", tag, disks, mark_dev="vda vdb",
            extra_ctx=', ONE_GUEST_MOUNT="vdc", ONE_GUEST_SWAP="vdd"'))
        c.one.vm.deploy(vid, c.hid, False, ds)
        vms[tag] = (vid, img, img_path, pimg, pimg_path)
    ids = [v[0] for v in vms.values()]
    t = time.monotonic()
    both(c, ids, RUNNING)
    print(f"three VMs with four disks each deployed in {time.monotonic() - t:.2f} s")

    for tag, (vid, img, img_path, pimg, pimg_path) in vms.items():
        marks = c.wait_boot_marks(vid, 1)
        assert marks == {"vda": ("none", f"{tag}:1"), "vdb": ("none", f"{tag}:1")}, c.serial_log(vid)[-2000:]
        log = c.serial_log(vid)
        assert "ONE-GUEST-MOUNT DEV=vdc FS=ext4" in log, "the volatile disk is formatted"
        assert "ONE-GUEST-SWAP DEV=vdd ON=yes" in log, "the swap disk is a swap area"
        d = c.vm_dir(vid)
        # A non-persistent qcow2 image: an overlay on the image (backing format recorded),
        # grown to the DISK's SIZE; the persistent one: the image itself; the image held.
        # On `local` both are copies on the host (the overlay's base is the copy).
        assert os.readlink(d / "disk.0") == "disk.0.snap/0"
        info = run(["qemu-img", "info", "-U", "--output=json", str(d / "disk.0")])
        if tag != "lo":
            assert f'"backing-filename": "{img_path}"' in info and '"backing-filename-format": "qcow2"' in info
        else:
            assert str(img_path) not in info, "the host's copy does not read the frontend's image"
        assert '"virtual-size": 100663296' in info, info
        if tag == "lo":
            assert not (d / "disk.1").is_symlink() and (d / "disk.1").is_file()
            assert d.parent == c.oned.data_dir / "datastores" / str(c.local_ds)
        else:
            assert os.readlink(d / "disk.1") == str(pimg_path)
        assert c.image_state(img) == IMG_USED
        assert c.image_state(pimg) == IMG_USED_PERS
        x = c.vm_xml(vid)
        assert x.findtext("HISTORY_RECORDS/HISTORY[last()]/TM_MAD") == {"sh": "shared", "qc": "qcow2", "lo": "local"}[tag]
        xsd_check(c.oned.admin_xml("one.vm.info", vid))

    # poweroff / resume: a new boot finds what the last one wrote.
    for vid in ids:
        c.one.vm.action("poweroff", vid)
    both(c, ids, VM_POWEROFF)
    for vid in ids:
        c.one.vm.action("resume", vid)
    both(c, ids, RUNNING)
    for tag, (vid, *_rest) in vms.items():
        assert c.wait_boot_marks(vid, 2) == {"vda": (f"{tag}:1", f"{tag}:2"), "vdb": (f"{tag}:1", f"{tag}:2")}

    # stop / resume: memory saved and restored (no boot), the disks read back from the files.
    for vid in ids:
        c.one.vm.action("stop", vid)
    both(c, ids, VM_STOPPED)
    for tag, (vid, *_r) in vms.items():
        if tag == "lo":
            # Moved to the frontend: the host's directory is gone, the stash is complete.
            stash = c.oned.data_dir / "datastores" / str(c.local_ds) / ".stash" / str(vid)
            assert not c.vm_dir(vid).exists()
            assert (stash / "checkpoint").is_file() and (stash / ".stashed").is_file()
            assert first_sector(stash / "disk.1") == b"ONE-MARK lo:2\n"
        else:
            assert (c.vm_dir(vid) / "checkpoint").is_file(), "the files stay on the shared datastore"
        c.one.vm.action("resume", vid)
    # A resumed STOPPED VM goes PENDING; deploy it back (no scheduler in this cloud).
    for tag, (vid, *_r) in vms.items():
        c.wait_vm(vid, 1)
        c.one.vm.deploy(vid, c.hid, False, sys_ds[tag])
    both(c, ids, RUNNING)
    for tag, (vid, *_r) in vms.items():
        n = c.serial_log(vid).count("ONE-GUEST-ALIVE")
        wait_for("a heartbeat after the restore", lambda: c.serial_log(vid).count("ONE-GUEST-ALIVE") > n + 1,
                 timeout=30)
        assert c.serial_log(vid).count("ONE-GUEST-BOOT") == 2, "restored, not booted"
        assert c.last_alive_mark(vid) == f"vda:{tag}:2,vdb:{tag}:2"

    lo_stash = c.oned.data_dir / "datastores" / str(c.local_ds) / ".stash" / str(vms["lo"][0])
    assert not lo_stash.exists(), "the resume took the stash back"

    # undeploy / resume: a boot from the files left on the datastore (on the frontend's
    # stash for `local`).
    for vid in ids:
        c.wait_marker(vid, "ONE-GUEST-READY", count=2)
        c.one.vm.action("undeploy", vid)
    both(c, ids, VM_UNDEPLOYED)
    for tag, (vid, *_r) in vms.items():
        c.one.vm.action("resume", vid)
        c.wait_vm(vid, 1)
        c.one.vm.deploy(vid, c.hid, False, sys_ds[tag])
    both(c, ids, RUNNING)
    for tag, (vid, *_r) in vms.items():
        assert c.wait_boot_marks(vid, 3) == {"vda": (f"{tag}:2", f"{tag}:3"), "vdb": (f"{tag}:2", f"{tag}:3")}

    # terminate: the persistent image has what the guest wrote, the other one nothing, and
    # both are free again.
    dirs = {vid: c.vm_dir(vid) for vid in ids}
    for vid in ids:
        c.wait_marker(vid, "ONE-GUEST-READY", count=3)
        c.one.vm.action("terminate-hard", vid)
    both(c, ids, VM_DONE)
    for tag, (vid, img, img_path, pimg, pimg_path) in vms.items():
        assert not dirs[vid].exists()
        assert first_sector(pimg_path) == f"ONE-MARK {tag}:3\n".encode()
        assert first_sector(img_path) == b"", "a non-persistent image is never written"
        assert c.image_state(img) == IMG_READY and c.image_state(pimg) == IMG_READY


@pytest.mark.parametrize("kind", ["qcow2", "local"])
def test_disk_snapshot_before_an_overwrite_brings_the_marker_back_and_saveas_copies_the_disk(cloud, kind):
    """Disk snapshots, revert, save-as and resize on a shared qcow2 system datastore and
    on a host-local one (where a save-as goes to the frontend's image datastore through the
    byte stream)."""
    c = cloud
    img, img_path = c.image(f"snap-src-{kind}")
    vid = c.one.vm.allocate(vm_template(c, f"snap-{kind}", "sn", f'DISK=[IMAGE_ID="{img}", TARGET="vda"]\n'))
    c.one.vm.deploy(vid, c.hid, False, c.qcow2_ds if kind == "qcow2" else c.local_ds)
    c.wait_vm(vid, RUNNING)
    assert c.wait_boot_marks(vid, 1) == {"vda": ("none", "sn:1")}
    d = c.vm_dir(vid)

    # A live snapshot (the domain switches to a new overlay), while sn:1 is on the disk.
    t = time.monotonic()
    assert c.one.vm.disksnapshotcreate(vid, 0, "before-overwrite") == 0
    c.wait_vm(vid, RUNNING)
    print(f"live disk snapshot: {time.monotonic() - t:.2f} s")
    assert os.readlink(d / "disk.0") == "disk.0.snap/1"
    text = c.oned.admin_xml("one.vm.info", vid)
    xsd_check(text)
    snaps = parse_xml(text).find("SNAPSHOTS")
    assert snaps.findtext("DISK_ID") == "0" and snaps.findtext("ALLOW_ORPHANS") == "DENY"
    assert snaps.findtext("SNAPSHOT/NAME") == "before-overwrite" and snaps.findtext("SNAPSHOT/ACTIVE") == "YES"
    assert c.one.vm.disksnapshotrename(vid, 0, 0, "sn1") == vid

    # The next boot overwrites the marker.
    c.wait_marker(vid, "ONE-GUEST-READY")
    c.one.vm.action("poweroff", vid)
    c.wait_vm(vid, VM_POWEROFF)
    c.one.vm.action("resume", vid)
    c.wait_vm(vid, RUNNING)
    assert c.wait_boot_marks(vid, 2) == {"vda": ("sn:1", "sn:2")}
    c.wait_marker(vid, "ONE-GUEST-READY", count=2)
    c.one.vm.action("poweroff", vid)
    c.wait_vm(vid, VM_POWEROFF)

    # disk-saveas while powered off: the current disk and the snapshot, byte for byte.
    saved = c.one.vm.disksaveas(vid, 0, f"snap-saved-{kind}", "", -1)
    c.wait_vm(vid, VM_POWEROFF)
    wait_for("saved image READY", lambda: c.image_state(saved) == IMG_READY, timeout=30)
    src = Path(c.image_xml(saved).findtext("SOURCE"))
    assert src.parent == img_path.parent, "in the disk's image datastore"
    run(["qemu-img", "compare", "-U", "-f", "qcow2", "-F", "qcow2", str(d / "disk.0"), str(src)])
    assert first_sector(src) == b"ONE-MARK sn:2\n"
    assert "backing-filename" not in run(["qemu-img", "info", "-U", "--output=json", str(src)])
    from_snap = c.one.vm.disksaveas(vid, 0, f"snap-0-{kind}", "", 0)
    c.wait_vm(vid, VM_POWEROFF)
    wait_for("snapshot image READY", lambda: c.image_state(from_snap) == IMG_READY, timeout=30)
    assert first_sector(Path(c.image_xml(from_snap).findtext("SOURCE"))) == b"ONE-MARK sn:1\n"

    # Revert (powered off) to the snapshot taken before the overwrite: the marker is back.
    assert c.one.vm.disksnapshotrevert(vid, 0, 0) == vid
    c.wait_vm(vid, VM_POWEROFF)
    assert first_sector(d / "disk.0") == b"ONE-MARK sn:1\n"
    c.one.vm.action("resume", vid)
    c.wait_vm(vid, RUNNING)
    assert c.wait_boot_marks(vid, 3) == {"vda": ("sn:1", "sn:2")}

    # disk-saveas of the running disk (libvirt's block copy).
    live = c.one.vm.disksaveas(vid, 0, f"snap-live-{kind}", "", -1)
    c.wait_vm(vid, RUNNING)
    wait_for("live image READY", lambda: c.image_state(live) == IMG_READY, timeout=60)
    assert first_sector(Path(c.image_xml(live).findtext("SOURCE"))) == b"ONE-MARK sn:2\n"

    # Delete the (active, childless) snapshot while running: merged into the top.
    assert c.one.vm.disksnapshotdelete(vid, 0, 0) == vid
    c.wait_vm(vid, RUNNING)
    assert parse_xml(c.oned.admin_xml("one.vm.info", vid)).find("SNAPSHOTS") is None
    n = c.serial_log(vid).count("ONE-GUEST-ALIVE")
    wait_for("heartbeats go on", lambda: c.serial_log(vid).count("ONE-GUEST-ALIVE") > n + 1, timeout=30)
    assert c.last_alive_mark(vid) == "vda:sn:2"

    # Grow the disk while running: the file grows, the DISK says so, monitoring sees it.
    assert c.one.vm.diskresize(vid, 0, "128") == vid
    c.wait_vm(vid, RUNNING)
    info = run(["qemu-img", "info", "-U", "--output=json", str(d / "disk.0")])
    assert '"virtual-size": 134217728' in info, info
    wait_for("DISK_SIZE in monitoring",
             lambda: c.vm_xml(vid).find("MONITORING/DISK_SIZE[ID='0']") is not None, timeout=30)
    c.one.vm.action("terminate-hard", vid)
    c.wait_vm(vid, VM_DONE)


def test_terminating_a_stopped_vm_on_a_local_datastore_saves_its_persistent_disk(cloud):
    """A VM stopped off a host-local datastore has its files in the frontend's stash: a
    disk-saveas copies from there, a terminate brings the persistent disk's content back to
    its image and removes the stash (OpenNebula's CPDS, MVDS + DELETE of a stopped VM)."""
    c = cloud
    pimg, pimg_path = c.image("local-stopped", mb=16, persistent=True)
    vid = c.one.vm.allocate(vm_template(c, "lstop", "ts", f'DISK=[IMAGE_ID="{pimg}", TARGET="vda"]\n'))
    c.one.vm.deploy(vid, c.hid, False, c.local_ds)
    c.wait_vm(vid, RUNNING)
    assert c.wait_boot_marks(vid, 1) == {"vda": ("none", "ts:1")}
    c.one.vm.action("stop", vid)
    c.wait_vm(vid, VM_STOPPED)
    stash = c.oned.data_dir / "datastores" / str(c.local_ds) / ".stash" / str(vid)
    assert (stash / ".stashed").is_file() and not c.vm_dir(vid).exists()
    assert first_sector(pimg_path) == b"", "the image is written at terminate, not before"
    # disk-saveas while stopped: the frontend agent copies from the stash (no host needed).
    saved = c.one.vm.disksaveas(vid, 0, "local-stopped-saved", "", -1)
    c.wait_vm(vid, VM_STOPPED)
    wait_for("saved image READY", lambda: c.image_state(saved) == IMG_READY, timeout=30)
    src = Path(c.image_xml(saved).findtext("SOURCE"))
    assert src.parent == pimg_path.parent, "in the disk's image datastore"
    assert first_sector(src) == b"ONE-MARK ts:1\n"
    assert (stash / ".stashed").is_file() and first_sector(pimg_path) == b""
    c.one.vm.action("terminate", vid)
    c.wait_vm(vid, VM_DONE)
    assert first_sector(pimg_path) == b"ONE-MARK ts:1\n"
    assert not stash.exists() and not c.vm_dir(vid).exists()
    assert c.image_state(pimg) == IMG_READY

    # recover --delete of a stopped VM: nothing saved, the stash goes too.
    vid = c.one.vm.allocate(vm_template(c, "lstop2", "td", f'DISK=[IMAGE_ID="{pimg}", TARGET="vda"]\n'))
    c.one.vm.deploy(vid, c.hid, False, c.local_ds)
    c.wait_vm(vid, RUNNING)
    c.wait_boot_marks(vid, 1)
    c.one.vm.action("stop", vid)
    c.wait_vm(vid, VM_STOPPED)
    stash = c.oned.data_dir / "datastores" / str(c.local_ds) / ".stash" / str(vid)
    assert stash.is_dir()
    c.one.vm.recover(vid, 3)
    c.wait_vm(vid, VM_DONE)
    wait_for("the stash removed", lambda: not stash.exists(), timeout=30)
    assert first_sector(pimg_path) == b"ONE-MARK ts:1\n", "a delete saves nothing back"


def test_a_local_copy_cut_by_a_killed_frontend_agent_fails_cleanly_and_is_retried(cloud):
    """The frontend agent killed while a host copies an image from it (a 2 GiB sparse raw
    image, read whole through the byte stream): the prolog fails with the reason, the host
    keeps no partial file, the image is untouched; a retry once the agent is back (oned
    starts it again) deploys the VM."""
    c = cloud
    img, path = source_image(c.one, c.oned.data_dir, "local-big", 2048, fmt="raw", extra='DEV_PREFIX="vd"')
    vid = c.one.vm.allocate(vm_template(c, "lcut", "cut", f'DISK=[IMAGE_ID="{img}", TARGET="vda"]\n'))
    c.one.vm.deploy(vid, c.hid, False, c.local_ds)
    wait_for("PROLOG", lambda: c.vm_state(vid) == (VM_ACTIVE, 1), timeout=30, step=0.02)
    d = c.vm_dir(vid)
    def copies() -> list[str]:
        return [p.name for p in d.iterdir() if p.name.startswith("disk.0")] if d.exists() else []

    wait_for("the copy under way", lambda: any(n.endswith(".part") for n in copies()), timeout=30, step=0.01)
    fe = agent_children(c.oned.pid, frontend=True)
    assert len(fe) == 1, fe
    os.kill(fe[0], signal.SIGKILL)
    wait_for("PROLOG_FAILURE", lambda: c.vm_state(vid) == (VM_ACTIVE, 39), timeout=60)
    err = c.vm_xml(vid).findtext("USER_TEMPLATE/ERROR")
    assert "byte stream" in err or "frontend" in err, err
    assert copies() == [], "no partial copy left on the host"
    assert path.stat().st_size == 2 << 30
    c.one.vm.recover(vid, 2)  # retry
    c.wait_vm(vid, RUNNING, timeout=180)
    assert (d / "disk.0").stat().st_size == 2 << 30
    assert (d / "disk.0").stat().st_blocks * 512 < 64 << 20, "the copy stayed sparse"
    c.one.vm.action("terminate-hard", vid)
    c.wait_vm(vid, VM_DONE)


def test_files_ds_puts_context_images_on_the_cd(cloud, tmp_path):
    """CONTEXT/FILES_DS (issue 10): `$FILE[IMAGE_ID=..]` / `$FILE[IMAGE=..]` name CONTEXT
    images of the files datastore; oned resolves them to `'SOURCE':'NAME'` and the host's
    driver copies each onto the context CD under its name. Host paths written by the user,
    and images of another type, are refused."""
    c = cloud
    src = tmp_path / "init.sh"
    src.write_text("echo hello from FILES_DS\n")
    fid = c.one.image.allocate(f'NAME="init.sh"\nTYPE="CONTEXT"\nPATH="{src}"', 2)
    wait_for("the CONTEXT image READY", lambda: c.image_state(fid) == IMG_READY, timeout=60)
    data, _ = c.image("not-a-file", mb=16)
    refused = []
    for files in ("'/etc/shadow':'x'", f"$FILE[IMAGE_ID={data}]", "$FILE[IMAGE=nope]"):
        try:
            c.one.vm.allocate(c.guest_template("fds-bad", extra=f'CONTEXT=[FILES_DS="{files}"]\n'))
        except Exception as e:  # pyone raises OneException with oned's message
            refused.append(str(e))
    assert len(refused) == 3, refused
    assert "only $FILE" in refused[0] and "CONTEXT" in refused[1] and "no image named" in refused[2], refused
    vid = c.one.vm.allocate(
        c.guest_template("fds", extra='CONTEXT=[FILES_DS="$FILE[IMAGE=init.sh]", NETWORK="NO"]\n'))
    ctx = c.vm_xml(vid).find("TEMPLATE/CONTEXT")
    source = c.image_xml(fid).findtext("SOURCE")
    assert ctx.findtext("FILES_DS") == f"'{source}':'init.sh'"
    c.one.vm.deploy(vid, c.hid, False, 0)
    c.wait_vm(vid, RUNNING)
    iso = c.vm_dir(vid) / f"disk.{ctx.findtext('DISK_ID')}"
    listing = run(["isoinfo", "-R", "-f", "-i", str(iso)])
    assert "/init.sh" in listing and "/context.sh" in listing, listing
    body = run(["isoinfo", "-R", "-i", str(iso), "-x", "/init.sh"])
    assert body == "echo hello from FILES_DS\n", body
    c.one.vm.action("terminate-hard", vid)
    c.wait_vm(vid, VM_DONE)
