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
from storage_util import first_sector, run

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
        c.add_hosts()
        yield c
    finally:
        c.close(request.session.testsfailed > failed_before)


def marks(c: KvmCluster, vid: int, boot: int) -> dict[str, tuple[str, str]]:
    c.wait_marker(vid, "ONE-GUEST-READY", count=boot, timeout=120)
    part = c.serial_log(vid).split("ONE-GUEST-BOOT")[boot]
    return {d: (f, w) for d, f, w in re.findall(r"ONE-GUEST-MARK DEV=(\S+) FOUND=(\S+) WROTE=(\S+)", part)}


def alive_mark(c: KvmCluster, vid: int) -> str:
    m = re.findall(r"ONE-GUEST-ALIVE .* MARK=(\S*)", c.serial_log(vid))
    return m[-1] if m else ""


def test_a_disk_follows_its_vm_between_hosts_through_the_shared_datastore(cluster):
    c = cluster
    # An image in the image datastore, registered with its SOURCE.
    path = c.oned.data_dir / "datastores" / "1" / "shared-img"
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"])
    os.chmod(path, 0o644)
    img = c.one.image.allocate(
        f'NAME="shared-img"\nSOURCE="{path}"\nFORMAT="qcow2"\nSIZE="64"\nTYPE="DATABLOCK"', 1)
    g = c.env.guest
    vid = c.one.vm.allocate(
        f'NAME="follow"\nCPU="0.1"\nVCPU="1"\nMEMORY="96"\n'
        f'OS=[KERNEL="{g.kernel}", INITRD="{g.initrd}", KERNEL_CMD="{g.cmdline}"]\n'
        f'DISK=[IMAGE_ID="{img}", TARGET="vda"]\n'
        'CONTEXT=[ONE_GUEST_MARK="fw", ONE_GUEST_MARK_DEV="vda", ONE_GUEST_HEARTBEAT="1"]\n')
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
