"""Two REAL hypervisor hosts reached over SSH: migration, a domain lost behind oned's back,
and host loss with recovery (issue 4, section Tests).

Each host is a network namespace with its own sshd and its OWN libvirtd
(tests/hostenv/netns-host.sh --libvirtd: distinct libvirt host UUIDs, so libvirt migrates
between them). oned installs its agent over SSH on both; in an SSH session there,
qemu:///system is that host's libvirtd, so the agents need no LIBVIRT_URI. The test reads
each host's libvirt from outside over qemu+tcp://HOST_IP/system. Both see the same system
datastore directory (datastores/0 of oned's data dir, TM_MAD shared: the namespaces share
the file system), which is what live and cold migration and recovery rely on.

The tests of this module share one cloud and run in order; each starts its own VM(s) except
the cold migration, which brings back the VM the live migration moved.
Helpers: kvm_cluster_util.py. Skips, saying why, when not root, without `ip netns`, sshd or
libvirtd, or when the guest cannot be built.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from harness import wait_for, xsd_check
from kvm_cluster_util import (
    HOST_ERROR,
    HOST_MONITORED,
    RUNNING,
    UNKNOWN,
    VM_DONE,
    VM_POWEROFF,
    KvmCluster,
    hostenv_skip_reason,
)
from kvm_util import kvm_env, skip  # noqa: F401  (kvm_env is a fixture)
from sched_harness import Scheduler, scheduler_binary

# Real hosts and domains, not the database: the SQLite stage runs these (conftest.py).
pytestmark = pytest.mark.db_independent

# HOST_ERROR_GRACE of the recovery test: long enough to see the VMs in UNKNOWN first.
GRACE = 3


@pytest.fixture(scope="module")
def cluster(kvm_env, request):
    why = hostenv_skip_reason()
    if why:
        skip(why)
    failed_before = request.session.testsfailed
    c = KvmCluster(kvm_env, "cluster")
    try:
        t = time.monotonic()
        c.add_hosts()
        print(f"\ntwo namespace hosts up and MONITORED over SSH in {time.monotonic() - t:.2f} s")
        yield c
    finally:
        c.close(request.session.testsfailed > failed_before)


def meminfo_total_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    raise AssertionError("no MemTotal in /proc/meminfo")


def boots(c: KvmCluster, vid: int) -> int:
    return c.serial_log(vid).count("ONE-GUEST-BOOT")


def alive_seq(c: KvmCluster, vid: int) -> int:
    """The last heartbeat number the guest printed (-1: none yet)."""
    seqs = re.findall(r"ONE-GUEST-ALIVE SEQ=(\d+)", c.serial_log(vid))
    return int(seqs[-1]) if seqs else -1


def alive_block(c: KvmCluster, vid: int) -> str:
    """The block devices the guest's last heartbeat named."""
    blocks = re.findall(r"ONE-GUEST-ALIVE SEQ=\d+ .*?BLOCK=(\S*)", c.serial_log(vid))
    return blocks[-1] if blocks else ""


def deploy(c: KvmCluster, name: str, host, **guest) -> int:
    vid = c.one.vm.allocate(c.guest_template(name, **guest))
    c.one.vm.deploy(vid, host.hid, False, 0)
    c.wait_vm(vid, RUNNING)
    return vid


def test_both_hosts_are_separate_libvirt_hosts_with_real_capacity(cluster):
    c = cluster
    uuids = set()
    for h in (c.a, c.b):
        x = c.host_xml(h.hid)
        assert int(x.findtext("STATE")) == HOST_MONITORED
        # The agent runs inside the namespace (its hostname), on this machine's hardware.
        assert x.findtext("TEMPLATE/HOSTNAME") == h.name, x.findtext("TEMPLATE/HOSTNAME")
        assert x.findtext("TEMPLATE/HYPERVISOR") == "kvm"
        assert int(x.findtext("HOST_SHARE/TOTAL_MEM")) == meminfo_total_kb()
        assert int(x.findtext("HOST_SHARE/TOTAL_CPU")) == (os.cpu_count() or 0) * 100
        assert x.findtext("TEMPLATE/ERROR") is None
        assert x.findtext("TEMPLATE/SSH_PORT") == str(h.port)
        xsd_check(c.oned.admin_xml("one.host.info", h.hid))
        caps = h.virsh("capabilities").stdout
        uuids.add(caps.split("<uuid>", 1)[1].split("</uuid>", 1)[0] if "<uuid>" in caps else caps)
    assert len(uuids) == 2, "each host has its own libvirtd (own host UUID)"
    assert c.remote_agent.is_file(), "oned installed its agent over SSH"
    assert len(c.agent_pids()) == 2, "one agent per host"


def test_deploy_on_a_runs_a_real_domain_and_actions_act_on_it(cluster):
    c = cluster
    t = time.monotonic()
    vid = deploy(c, "on-a", c.a)
    print(f"deploy on A -> RUNNING in {time.monotonic() - t:.2f} s")
    dom = c.domain(vid)
    assert c.a.domstate(dom) == "running"
    assert c.b.domstate(dom) is None, "only on A's libvirtd"
    assert c.vm_xml(vid).findtext("DEPLOY_ID") == c.a.domuuid(dom)
    assert (c.vm_dir(vid) / "deployment.0").is_file(), "the VM directory is on the shared datastore"
    c.wait_marker(vid, "ONE-GUEST-BOOT")

    # poweroff: ACPI, obeyed once the guest listens (READY comes after its ACPI watcher).
    c.wait_marker(vid, "ONE-GUEST-READY")
    c.one.vm.action("poweroff", vid)
    c.wait_vm(vid, VM_POWEROFF)
    assert "ONE-GUEST-POWEROFF" in c.serial_log(vid), "the guest shut down by itself"
    assert c.a.domstate(dom) in (None, "shut off")

    # resume: a new boot on the same host.
    c.one.vm.action("resume", vid)
    c.wait_vm(vid, RUNNING)
    assert c.a.domstate(dom) == "running"
    c.wait_marker(vid, "ONE-GUEST-BOOT", count=2)
    assert c.history_hosts(vid)[-1] == c.a.hid

    # terminate: an ACPI shutdown again, then gone from libvirt, the VM directory cleaned.
    c.wait_marker(vid, "ONE-GUEST-READY", count=2)
    c.one.vm.action("terminate", vid)
    c.wait_vm(vid, VM_DONE)
    assert c.a.domstate(dom) is None
    assert not c.vm_dir(vid).exists()


# The VM the live migration moves to B; the cold migration brings it back.
MIGRATING: dict[str, int] = {}


def test_live_migration_a_to_b(cluster):
    c = cluster
    # With a writable qcow2 disk in the shared VM directory (libvirt cannot tell the
    # directory is shared: the agent migrates UNSAFE) and the context CD.
    vid = deploy(c, "live", c.a, heartbeat=1, disk_mb=16)
    MIGRATING["vid"] = vid
    dom = c.domain(vid)
    uuid = c.a.domuuid(dom)
    c.wait_marker(vid, "ONE-GUEST-ALIVE")
    assert "vda" in alive_block(c, vid).split(","), c.serial_log(vid)[-1000:]
    t = time.monotonic()
    c.one.vm.migrate(vid, c.b.hid, True, False, -1, 0)
    c.wait_vm(vid, RUNNING, timeout=120)
    took = time.monotonic() - t
    print(f"live migration A -> B: migrate call -> RUNNING on B in {took:.2f} s")
    assert c.b.domstate(dom) == "running"
    assert c.a.domstate(dom) is None, "gone from A"
    assert c.b.domuuid(dom) == uuid == c.vm_xml(vid).findtext("DEPLOY_ID")
    assert c.history_hosts(vid) == [c.a.hid, c.b.hid]
    # Live: the guest kept running on B: its heartbeat goes on counting (the console log is
    # in the shared VM directory, appended to by both QEMUs) and it did not boot again.
    seq = alive_seq(c, vid)
    wait_for("a heartbeat from B", lambda: alive_seq(c, vid) > seq, timeout=20)
    assert boots(c, vid) == 1, c.serial_log(vid)[-2000:]
    assert "vda" in alive_block(c, vid).split(","), "the disk is still there"
    xsd_check(c.oned.admin_xml("one.vm.info", vid))
    # B's agent monitors it now.
    wait_for("VM monitoring from B", lambda: c.vm_xml(vid).findtext("MONITORING/CPU") is not None, timeout=30)


def test_cold_migration_b_to_a(cluster):
    c = cluster
    vid = MIGRATING.get("vid")
    if vid is None or c.vm_state(vid) != RUNNING or c.history_hosts(vid)[-1] != c.b.hid:
        pytest.skip("needs the VM the live migration moved to B")
    dom = c.domain(vid)
    t = time.monotonic()
    c.one.vm.migrate(vid, c.a.hid, False, False, -1, 0)
    c.wait_vm(vid, RUNNING, timeout=120)
    print(f"cold migration B -> A: migrate call -> RUNNING on A in {time.monotonic() - t:.2f} s")
    assert c.a.domstate(dom) == "running"
    assert c.b.domstate(dom) is None
    assert c.history_hosts(vid) == [c.a.hid, c.b.hid, c.a.hid]
    # Saved on B and restored on A from the shared checkpoint: the guest goes on where it
    # was, without booting again.
    seq = alive_seq(c, vid)
    wait_for("a heartbeat from A", lambda: alive_seq(c, vid) > seq, timeout=20)
    assert boots(c, vid) == 1, c.serial_log(vid)[-2000:]
    c.one.vm.action("terminate-hard", vid)
    c.wait_vm(vid, VM_DONE)
    assert c.a.domstate(dom) is None


def test_domain_destroyed_behind_oneds_back_on_b_means_poweroff(cluster):
    c = cluster
    vid = deploy(c, "destroyed", c.b)
    dom = c.domain(vid)
    assert c.b.domstate(dom) == "running"
    t = time.monotonic()
    r = c.b.virsh("destroy", dom)
    assert r.returncode == 0, r.stderr
    t_destroy = time.monotonic() - t
    c.wait_vm(vid, VM_POWEROFF, timeout=30)
    print(f"virsh destroy on B ({t_destroy:.2f} s) -> POWEROFF in {time.monotonic() - t:.2f} s")
    assert c.host_state(c.b.hid) == HOST_MONITORED
    c.one.vm.action("terminate-hard", vid)
    c.wait_vm(vid, VM_DONE)


def test_host_loss_with_recovery_moves_the_vms_to_the_other_host(cluster):
    c = cluster
    if not scheduler_binary().is_file():
        skip(f"{scheduler_binary()} is not built (cargo build -p one-scheduler)")
    # One with a volatile qcow2 disk: it must be kept (moved with the VM, not made again).
    vids = [deploy(c, "lost-disk", c.a, disk_mb=8), deploy(c, "lost", c.a)]
    for vid in vids:
        c.wait_marker(vid, "ONE-GUEST-BOOT")
    disk = c.vm_dir(vids[0]) / "disk.0"
    disk_inode = disk.stat().st_ino
    fence = c.fence_script()
    # docs/host-recovery.md: the system datastore is shared (TM_MAD shared), so MIGRATE
    # reschedules the lost host's VMs and the scheduler cold-migrates them with their disks
    # (PROLOG_MIGRATE_UNKNOWN -> BOOT); RECREATE would do the same for them.
    policy = f'HOST_ERROR_RECOVERY="MIGRATE"\nHOST_ERROR_GRACE="{GRACE}"\nFENCE_COMMAND="{fence}"'
    assert c.one.cluster.update(0, policy, 1) == 0
    sched = Scheduler(c.oned, c.dir / "sched", config="resched_interval = 0.5\n").start()
    try:
        t0 = time.monotonic()
        killed = c.a.lose()
        assert killed, "A's sshd was running"
        wait_for("host A in ERROR", lambda: c.host_state(c.a.hid) == HOST_ERROR, timeout=30)
        t_error = time.monotonic() - t0
        reason = c.host_xml(c.a.hid).findtext("TEMPLATE/ERROR") or ""
        print(f"host A's ERROR: {reason[:300]}")
        assert reason, "the reason is in the host's template"
        # Its VMs are UNKNOWN until the grace period is over (their domains still run on A:
        # only the management path died).
        for vid in vids:
            wait_for(f"VM {vid} UNKNOWN", lambda vid=vid: c.vm_state(vid) == UNKNOWN, timeout=10, step=0.05)
        assert all(c.a.domstate(c.domain(v)) == "running" for v in vids)
        assert not c.fence_marker.exists(), "no fencing before the grace period"

        wait_for("the fence command", c.fence_marker.exists, timeout=GRACE + 15)
        t_fence = time.monotonic() - t0
        call = c.fence_marker.read_text().split()
        # HOST_ID HOST_NAME, then the same as arguments.
        assert call == [str(c.a.hid), c.a.ip, str(c.a.hid), c.a.ip], call
        for vid in vids:
            c.wait_vm(vid, RUNNING, timeout=120)
        t_back = time.monotonic() - t0
        print(f"host A lost: ERROR after {t_error:.2f} s, fenced after {t_fence:.2f} s, "
              f"{len(vids)} VMs RUNNING on B after {t_back:.2f} s")
        for vid in vids:
            dom = c.domain(vid)
            assert c.history_hosts(vid)[-1] == c.b.hid
            assert c.b.domstate(dom) == "running", "a real domain on B"
            assert c.a.domstate(dom) is None, "fenced: nothing of it left on A"
            # A cold recovery: the guest boots again on B from the shared disks.
            c.wait_marker(vid, "ONE-GUEST-BOOT", count=2)
        assert disk.stat().st_ino == disk_inode, "the disk was kept on the shared datastore"
        assert str(disk) in c.b.virsh("domblklist", c.domain(vids[0])).stdout

        recs = c.recovery_records(c.a.hid)
        fences = [r for r in recs if r["ACTION"] == "fence"]
        assert len(fences) == 1 and fences[0]["OUTCOME"] == "success", recs
        assert str(fence) in fences[0]["MESSAGE"], fences
        resched = {r["VM_ID"]: r for r in recs if r["ACTION"] == "resched"}
        assert sorted(resched) == sorted(vids), recs
        assert all(r["OUTCOME"] == "success" and r["HOST_ID"] == c.a.hid for r in resched.values()), recs
        assert fences[0]["ID"] < min(r["ID"] for r in resched.values()), "fenced first"
        last = c.host_xml(c.a.hid).findtext("TEMPLATE/LAST_RECOVERY") or ""
        assert "fenced" in last and f"{len(vids)} rescheduled" in last, last
        assert c.host_state(c.a.hid) == HOST_ERROR, "A stays down"
        for vid in vids:
            c.one.vm.action("terminate-hard", vid)
        for vid in vids:
            c.wait_vm(vid, VM_DONE)
    finally:
        sched.stop()
        print(f"----- scheduler\n{sched.logs(tail=40)}")
