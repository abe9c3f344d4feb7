"""Shared storage between two REAL hypervisor hosts (issue 9, host half): each host is a
network namespace with its own sshd and libvirtd (kvm_cluster_util.py) and sees oned's
datastore directories at the same path, which is what an NFS mount gives a real
deployment (this machine's kernel has no NFS client, so the namespaces share the root
file system instead). A VM's disk (a qcow2 overlay on an image of the image datastore, in
the VM's directory of the shared system datastore) follows the VM from host to host: the
test guest's disk marker (tests/guest/build-guest.sh) shows it from inside.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from harness import parse_xml, wait_for, xsd_check
from kvm_cluster_util import RUNNING, VM_DONE, VM_POWEROFF, KvmCluster, hostenv_skip_reason
from kvm_util import kvm_env, skip  # noqa: F401  (kvm_env is a fixture)
from storage_util import first_sector, source_image

pytestmark = pytest.mark.db_independent

VM_PENDING, VM_UNDEPLOYED = 1, 9


@pytest.fixture(scope="module")
def cluster(kvm_env, request):
    why = hostenv_skip_reason()
    if why:
        skip(why)
    failed_before = request.session.testsfailed
    c = KvmCluster(kvm_env, "storage")
    try:
        # A host-local system datastore (TM_MAD local): each host keeps its VM directories
        # in a directory of its own at the datastore's path (a bind mount in its mount
        # namespace), as on hosts with their own disks; the frontend's directory there only
        # holds the stash of VMs between two hosts.
        c.local_ds = c.one.datastore.allocate('NAME="sys-local"\nTYPE="SYSTEM_DS"\nTM_MAD="local"', -1)
        c.local_dir = c.oned.data_dir / "datastores" / str(c.local_ds)
        c.local_dir.mkdir(parents=True, exist_ok=True)
        for h in (c.a, c.b):
            own = c.dir / f"local-{h.name}"
            own.mkdir()
            os.chmod(own, 0o755)
            h.local_dir = own
            h.privates.append(f"{c.local_dir}={own}")
        c.add_hosts()
        yield c
    finally:
        c.close(request.session.testsfailed > failed_before)


def marks(c: KvmCluster, vid: int, boot: int) -> dict[str, tuple[str, str]]:
    c.wait_marker(vid, "ONE-GUEST-READY", count=boot, timeout=120)
    part = c.serial_log(vid).split("ONE-GUEST-BOOT")[boot]
    return {d: (f, w) for d, f, w in re.findall(r"ONE-GUEST-MARK DEV=(\S+) FOUND=(\S+) WROTE=(\S+)", part)}


def marked_vm(c: KvmCluster, name: str, img: int, token: str) -> str:
    """The test guest with image `img` as vda, marking it with `token` at each boot and
    printing a heartbeat every second."""
    g = c.env.guest
    return (
        f'NAME="{name}"\nCPU="0.1"\nVCPU="1"\nMEMORY="96"\n'
        f'OS=[KERNEL="{g.kernel}", INITRD="{g.initrd}", KERNEL_CMD="{g.cmdline}"]\n'
        f'DISK=[IMAGE_ID="{img}", TARGET="vda"]\n'
        f'CONTEXT=[ONE_GUEST_MARK="{token}", ONE_GUEST_MARK_DEV="vda", ONE_GUEST_HEARTBEAT="1"]\n'
    )


def alive_mark(c: KvmCluster, vid: int) -> str:
    m = re.findall(r"ONE-GUEST-ALIVE .* MARK=(\S*)", c.serial_log(vid))
    return m[-1] if m else ""


def test_a_disk_follows_its_vm_between_hosts_through_the_shared_datastore(cluster):
    c = cluster
    # An image in the image datastore, registered with its SOURCE.
    img, path = source_image(c.one, c.oned.data_dir, "shared-img", 64)
    vid = c.one.vm.allocate(marked_vm(c, "follow", img, "fw"))
    c.one.vm.deploy(vid, c.a.hid, False, 0)
    c.wait_vm(vid, RUNNING)
    assert marks(c, vid, 1) == {"vda": ("none", "fw:1")}
    d = c.vm_dir(vid)
    assert os.readlink(d / "disk.0") == "disk.0.snap/0"

    # Live migration A -> B: the overlay chain stays where both hosts see it.
    t = time.monotonic()
    c.one.vm.migrate(vid, c.b.hid, True, False, -1, 0)
    c.wait_vm(vid, RUNNING, timeout=120)
    print(f"live migration with an image disk: {time.monotonic() - t:.2f} s")
    assert c.b.domstate(c.domain(vid)) == "running"
    n = c.serial_log(vid).count("ONE-GUEST-ALIVE")
    wait_for("heartbeats from B", lambda: c.serial_log(vid).count("ONE-GUEST-ALIVE") > n + 1, timeout=30)
    assert alive_mark(c, vid) == "vda:fw:1"

    # A live disk snapshot taken by B's libvirtd, in the shared directory.
    assert c.one.vm.disksnapshotcreate(vid, 0, "on-b") == 0
    c.wait_vm(vid, RUNNING)
    assert os.readlink(d / "disk.0") == "disk.0.snap/1"
    xsd_check(c.oned.admin_xml("one.vm.info", vid))

    # Undeployed from B, deployed on A: A's QEMU opens the chain B's wrote.
    c.wait_marker(vid, "ONE-GUEST-READY")
    c.one.vm.action("undeploy", vid)
    c.wait_vm(vid, VM_UNDEPLOYED)
    assert c.b.domstate(c.domain(vid)) is None
    c.one.vm.deploy(vid, c.a.hid, False, 0)
    c.wait_vm(vid, RUNNING)
    assert c.a.domstate(c.domain(vid)) == "running"
    assert marks(c, vid, 2) == {"vda": ("fw:1", "fw:2")}

    # Off on A, the snapshot taken on B reverted: the marker is back.
    c.wait_marker(vid, "ONE-GUEST-READY", count=2)
    c.one.vm.action("poweroff", vid)
    c.wait_vm(vid, VM_POWEROFF)
    assert c.one.vm.disksnapshotrevert(vid, 0, 0) == vid
    c.wait_vm(vid, VM_POWEROFF)
    assert first_sector(d / "disk.0") == b"ONE-MARK fw:1\n"
    c.one.vm.action("resume", vid)
    c.wait_vm(vid, RUNNING)
    assert marks(c, vid, 3) == {"vda": ("fw:1", "fw:2")}
    assert c.history_hosts(vid)[-1] == c.a.hid
    s = parse_xml(c.oned.admin_xml("one.vm.info", vid)).find("SNAPSHOTS")
    assert s.findtext("SNAPSHOT/ACTIVE") == "YES"

    c.one.vm.action("terminate-hard", vid)
    c.wait_vm(vid, VM_DONE)
    assert not d.exists()
    assert first_sector(path) == b"", "the image was never written"


def test_a_local_datastores_vm_moves_between_hosts_live_and_cold(cluster):
    """TM_MAD local between two hosts that do not share the datastore's directory: the
    disks are copied from the frontend to A at deploy. A live migration gives B the VM's
    directory first (its prolog) and libvirt copies the disks' content while the guest runs;
    a cold migration saves the VM, moves its files through the frontend's stash (each
    agent's byte stream over its SSH connection) and restores it. A's copy goes each time."""
    c = cluster
    img, path = source_image(c.one, c.oned.data_dir, "local-img", 64)
    vid = c.one.vm.allocate(marked_vm(c, "local-move", img, "lm"))
    on_a, on_b = c.a.local_dir / str(vid), c.b.local_dir / str(vid)
    stash = c.local_dir / ".stash" / str(vid)

    def log(h) -> str:
        try:
            return (h.local_dir / str(vid) / "serial.log").read_text(errors="replace")
        except OSError:
            return ""

    def boot_marks(h, boot: int) -> dict[str, tuple[str, str]]:
        wait_for(f"boot {boot} on {h.name}", lambda: log(h).count("ONE-GUEST-READY") >= boot, timeout=120)
        part = log(h).split("ONE-GUEST-BOOT")[boot]
        return {d: (f, w) for d, f, w in re.findall(r"ONE-GUEST-MARK DEV=(\S+) FOUND=(\S+) WROTE=(\S+)", part)}

    def alive_on(h, mark: str):
        n = log(h).count("ONE-GUEST-ALIVE")
        wait_for(f"heartbeats on {h.name}", lambda: log(h).count("ONE-GUEST-ALIVE") > n + 1, timeout=60)
        assert re.findall(r"ONE-GUEST-ALIVE .* MARK=(\S*)", log(h))[-1] == mark

    t = time.monotonic()
    c.one.vm.deploy(vid, c.a.hid, False, c.local_ds)
    c.wait_vm(vid, RUNNING)
    print(f"deploy on a local datastore over SSH: {time.monotonic() - t:.2f} s")
    assert boot_marks(c.a, 1) == {"vda": ("none", "lm:1")}
    assert os.readlink(on_a / "disk.0") == "disk.0.snap/0"
    assert not (c.local_dir / str(vid)).exists(), "A's files are on A's own disk"
    assert not on_b.exists()

    # Live: B's prolog, then libvirt's copy of the disk while the guest runs.
    t = time.monotonic()
    c.one.vm.migrate(vid, c.b.hid, True, False, -1, 0)
    c.wait_vm(vid, RUNNING, timeout=180)
    print(f"live migration with a local datastore's disks: {time.monotonic() - t:.2f} s")
    assert c.b.domstate(c.domain(vid)) == "running" and c.a.domstate(c.domain(vid)) is None
    assert not on_a.exists(), "A's copy went"
    assert (on_b / "disk.0").is_symlink()
    alive_on(c.b, "vda:lm:1")
    assert "ONE-GUEST-BOOT" not in log(c.b), "the guest kept running"

    # Cold: saved on B, files B -> frontend -> A, restored on A (no new boot).
    t = time.monotonic()
    c.one.vm.migrate(vid, c.a.hid, False, False, -1, 0)
    c.wait_vm(vid, RUNNING, timeout=180)
    print(f"cold migration of a local datastore's VM: {time.monotonic() - t:.2f} s")
    assert c.a.domstate(c.domain(vid)) == "running" and c.b.domstate(c.domain(vid)) is None
    assert not on_b.exists(), "B's copy went"
    assert not stash.exists(), "the stash went once A had the files"
    assert os.readlink(on_a / "disk.0") == "disk.0.snap/0"
    alive_on(c.a, "vda:lm:1")

    # Powered off on A, moved to B, booted there: it finds what it wrote.
    c.one.vm.action("poweroff-hard", vid)
    c.wait_vm(vid, VM_POWEROFF)
    c.one.vm.migrate(vid, c.b.hid, False, False, -1, 0)
    c.wait_vm(vid, VM_POWEROFF, timeout=180)
    assert not on_a.exists() and (on_b / "disk.0").is_symlink()
    c.one.vm.action("resume", vid)
    c.wait_vm(vid, RUNNING)
    assert boot_marks(c.b, 1) == {"vda": ("lm:1", "lm:2")}
    hh = c.history_hosts(vid)
    assert hh[:4] == [c.a.hid, c.b.hid, c.a.hid, c.b.hid] and hh[-1] == c.b.hid, hh

    # With a disk snapshot, a live migration would lose the chain: refused, saying so.
    assert c.one.vm.disksnapshotcreate(vid, 0, "s") == 0
    c.wait_vm(vid, RUNNING)
    with pytest.raises(Exception) as refused:
        c.one.vm.migrate(vid, c.a.hid, True, False, -1, 0)
    assert "disk snapshots" in str(refused.value), refused.value

    c.one.vm.action("terminate-hard", vid)
    c.wait_vm(vid, VM_DONE)
    assert not on_a.exists() and not on_b.exists() and not stash.exists()
    assert first_sector(path) == b"", "a non-persistent image is never written"
