"""A real KVM host: oned drives the machine's libvirtd through `one-node-agent` (local pipe,
host `localhost`, IM/VM MAD kvm), and VMs of the tiny test guest (kernel + busybox initramfs,
direct kernel boot, tests/guest/build-guest.sh) run as libvirt domains of type qemu
(software emulation: KVM guests hang on this machine, docs/hypervisor-hosts-env.md).

Every effect is checked on libvirt itself (virsh) and on the guest's serial console log
(`serial.log` in the VM's directory), not only in oned's view. Helpers and isolation (data
dir under /var/tmp, a domain prefix and VNC ports per test): kvm_util.py.

The last test does it on a "remote" host: a network namespace with its own sshd
(tests/hostenv/netns-host.sh), reached over SSH with the agent installed by oned.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from harness import xsd_check
from kvm_util import (  # noqa: F401  (kvm_env, kvm_cloud are fixtures)
    HOST_ERROR,
    HOST_MONITORED,
    LCM_RUNNING,
    LCM_UNKNOWN,
    NetnsHost,
    VM_ACTIVE,
    VM_DONE,
    VM_POWEROFF,
    VM_SUSPENDED,
    domid,
    domstate,
    domuuid,
    kvm_cloud,
    kvm_env,
    virsh,
    wait_for,
)

# Real domains, not the database: the SQLite stage runs these (conftest.py).
pytestmark = pytest.mark.db_independent

RUNNING = (VM_ACTIVE, LCM_RUNNING)


def meminfo_total_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    raise AssertionError("no MemTotal in /proc/meminfo")


def cpuinfo() -> tuple[int, float]:
    """(logical CPUs, MHz of the first one) from /proc/cpuinfo."""
    text = Path("/proc/cpuinfo").read_text()
    cpus = len(re.findall(r"^processor\s*:", text, re.M))
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)
    return cpus, float(mhz.group(1)) if mhz else 0.0


def test_localhost_kvm_host_is_monitored_with_this_machines_capacity(kvm_cloud):
    cloud = kvm_cloud()
    t = time.monotonic()
    hid = cloud.add_localhost()
    took = time.monotonic() - t
    x = cloud.host_xml(hid)
    cpus, mhz = cpuinfo()
    assert x.findtext("TEMPLATE/HYPERVISOR") == "kvm"
    assert int(x.findtext("TEMPLATE/TOTALCPU")) == cpus * 100
    assert int(x.findtext("TEMPLATE/TOTALMEMORY")) == meminfo_total_kb()
    if mhz:
        assert abs(int(x.findtext("TEMPLATE/CPUSPEED")) - mhz) <= max(1.0, mhz * 0.2), x.findtext("TEMPLATE/CPUSPEED")
    assert int(x.findtext("HOST_SHARE/TOTAL_CPU")) == cpus * 100
    assert int(x.findtext("HOST_SHARE/TOTAL_MEM")) == meminfo_total_kb()
    assert x.findtext("TEMPLATE/ERROR") is None
    wait_for("usage", lambda: cloud.host_xml(hid).findtext("MONITORING/CAPACITY/FREE_MEMORY"))
    free = int(cloud.host_xml(hid).findtext("MONITORING/CAPACITY/FREE_MEMORY"))
    assert 0 < free <= meminfo_total_kb()
    xsd_check(cloud.oned.admin_xml("one.host.info", hid))
    assert len(cloud.agent_pids()) == 1
    print(f"allocate -> MONITORED (real libvirt) in {took:.2f} s")


def test_guest_lifecycle_acts_on_the_real_domain(kvm_cloud):
    cloud = kvm_cloud()
    one = cloud.one
    hid = cloud.add_localhost()
    vid = one.vm.allocate(cloud.guest_template("kvm-guest"))
    dom = cloud.domain(vid)

    # deploy -> RUNNING, as a running libvirt domain whose UUID is the DEPLOY_ID.
    t = time.monotonic()
    one.vm.deploy(vid, hid, False, 0)
    cloud.wait_vm(vid, RUNNING)
    print(f"deploy -> RUNNING in {time.monotonic() - t:.2f} s")
    assert domstate(dom) == "running"
    x = cloud.vm_xml(vid)
    assert x.findtext("DEPLOY_ID") == domuuid(dom)
    deployment = cloud.vm_dir(vid) / "deployment.0"
    text = deployment.read_text()
    assert f"<name>{dom}</name>" in text and "type='qemu'" in text.replace('"', "'"), text
    assert cloud.env.guest.kernel in text and cloud.env.guest.initrd in text
    # The VNC port oned allocated is the one QEMU listens on.
    port = int(x.findtext("TEMPLATE/GRAPHICS/PORT"))
    assert virsh("domdisplay", dom).stdout.strip().endswith(f":{port - 5900}"), virsh("domdisplay", dom).stdout
    # The guest really boots, and the agent's VM monitoring reaches oned.
    cloud.wait_marker(vid, "ONE-GUEST-BOOT")
    wait_for("VM monitoring", lambda: cloud.vm_xml(vid).findtext("MONITORING/MEMORY"), timeout=30)
    xsd_check(cloud.oned.admin_xml("one.vm.info", vid))

    # poweroff: an ACPI shutdown the guest obeys, once it listens (READY comes after its
    # ACPI watcher started; a press right at the ACPI marker can still be lost).
    cloud.wait_marker(vid, "ONE-GUEST-READY")
    one.vm.action("poweroff", vid)
    cloud.wait_vm(vid, VM_POWEROFF)
    assert "ONE-GUEST-POWEROFF" in cloud.serial_log(vid), "the guest shut down by itself, not destroyed"
    assert domstate(dom) in (None, "shut off")

    # resume -> a new QEMU process.
    one.vm.action("resume", vid)
    cloud.wait_vm(vid, RUNNING)
    assert domstate(dom) == "running"
    cloud.wait_marker(vid, "ONE-GUEST-BOOT", count=2)
    first_id = domid(dom)

    # reboot: ACPI again; the guest powers off and libvirt starts it again in the same QEMU.
    cloud.wait_marker(vid, "ONE-GUEST-READY", count=2)
    one.vm.action("reboot", vid)
    cloud.wait_marker(vid, "ONE-GUEST-BOOT", count=3)
    assert cloud.vm_state(vid) == RUNNING
    assert domstate(dom) == "running" and domid(dom) == first_id

    # suspend: the domain is saved to the VM's checkpoint file and is gone.
    one.vm.action("suspend", vid)
    cloud.wait_vm(vid, VM_SUSPENDED)
    checkpoint = cloud.vm_dir(vid) / "checkpoint"
    assert checkpoint.is_file() and checkpoint.stat().st_size > 1 << 20
    assert domstate(dom) is None
    # resume: restored from it, in the state it was (no new boot).
    one.vm.action("resume", vid)
    cloud.wait_vm(vid, RUNNING)
    assert domstate(dom) == "running"
    assert cloud.serial_log(vid).count("ONE-GUEST-BOOT") == 3

    # terminate (ACPI shutdown + epilog): DONE, the domain gone, the VM directory cleaned.
    one.vm.action("terminate", vid)
    cloud.wait_vm(vid, VM_DONE)
    assert domstate(dom) is None
    assert not cloud.vm_dir(vid).exists(), sorted(os.listdir(cloud.vm_dir(vid)))


def test_domain_destroyed_behind_oneds_back_means_poweroff(kvm_cloud):
    cloud = kvm_cloud()
    one = cloud.one
    hid = cloud.add_localhost()
    vid = one.vm.allocate(cloud.guest_template("destroyed"))
    one.vm.deploy(vid, hid, False, 0)
    cloud.wait_vm(vid, RUNNING)
    dom = cloud.domain(vid)
    # The agent looks at domain states every 0.5 s here.
    t = time.monotonic()
    assert virsh("destroy", dom).returncode == 0
    cloud.wait_vm(vid, VM_POWEROFF, timeout=20)
    print(f"virsh destroy started -> POWEROFF in {time.monotonic() - t:.2f} s")
    assert cloud.host_state(hid) == HOST_MONITORED
    # It can be started again.
    one.vm.action("resume", vid)
    cloud.wait_vm(vid, RUNNING)
    assert domstate(dom) == "running"
    one.vm.action("poweroff-hard", vid)
    cloud.wait_vm(vid, VM_POWEROFF)
    assert domstate(dom) is None


def test_agent_killed_host_errors_then_heals_and_the_vm_is_untouched(kvm_cloud):
    cloud = kvm_cloud()
    one = cloud.one
    hid = cloud.add_localhost()
    vid = one.vm.allocate(cloud.guest_template("survivor"))
    one.vm.deploy(vid, hid, False, 0)
    cloud.wait_vm(vid, RUNNING)
    dom = cloud.domain(vid)
    before = (domid(dom), domuuid(dom))

    [pid] = cloud.agent_pids()
    os.kill(pid, signal.SIGKILL)
    # error_after_seconds = 0.5 < reconnect_initial_seconds = 2: ERROR is seen in between.
    wait_for("host ERROR", lambda: cloud.host_state(hid) == HOST_ERROR, timeout=15, step=0.05)
    err = cloud.host_xml(hid).findtext("TEMPLATE/ERROR")
    assert f"Error monitoring Host localhost ({hid}):" in err, err
    wait_for("VM UNKNOWN", lambda: cloud.vm_state(vid) == (VM_ACTIVE, LCM_UNKNOWN), timeout=10, step=0.05)
    assert domstate(dom) == "running", "the domain does not depend on the agent"

    wait_for("host MONITORED again", lambda: cloud.host_state(hid) == HOST_MONITORED, timeout=30)
    assert cloud.host_xml(hid).findtext("TEMPLATE/ERROR") is None
    cloud.wait_vm(vid, RUNNING, timeout=20)
    # The very same QEMU process: nothing was done to the domain.
    assert (domid(dom), domuuid(dom)) == before
    assert cloud.serial_log(vid).count("ONE-GUEST-BOOT") <= 1
    new = cloud.agent_pids()
    assert len(new) == 1 and new != [pid], new

    # The new agent drives it (poweroff-hard: a destroy, without the epilog).
    one.vm.action("poweroff-hard", vid)
    cloud.wait_vm(vid, VM_POWEROFF)
    assert domstate(dom) is None


def test_missing_libvirt_puts_the_host_in_error_with_the_reason(kvm_cloud):
    sock = "/var/tmp/one-kvm-e2e/no-such-dir/libvirt-sock"
    uri = f"qemu+unix:///system?socket={sock}"
    cloud = kvm_cloud(hosts={"libvirt_uri": f'"{uri}"'})
    hid = cloud.one.host.allocate("localhost", "kvm", "kvm", -1)
    wait_for("host ERROR", lambda: cloud.host_state(hid) == HOST_ERROR, timeout=30)
    err = cloud.host_xml(hid).findtext("TEMPLATE/ERROR")
    assert f"Error monitoring Host localhost ({hid}):" in err, err
    assert "libvirt" in err and sock in err, err
    # Capacity is known all the same (it does not need libvirt); the host stays in ERROR.
    wait_for("capacity", lambda: int(cloud.host_xml(hid).findtext("HOST_SHARE/TOTAL_CPU")) > 0)
    time.sleep(2)
    assert cloud.host_state(hid) == HOST_ERROR
    xsd_check(cloud.oned.admin_xml("one.host.info", hid))


def test_namespace_host_over_ssh_runs_the_guest(kvm_cloud):
    """A host that is not this machine: oned reaches it over SSH (its own key, the host key
    checked against its known_hosts), installs its agent there and starts it; the guest
    runs on libvirt as seen from that host (here the machine's libvirtd)."""
    # {dir}: the cloud's own directory (shared with the namespace: same file system).
    cloud = kvm_cloud(hosts={"remote_agent_path": '"{dir}/host-agent/one-node-agent"'})
    agent_dir = cloud.dir / "host-agent"
    ssh_dir = cloud.oned.data_dir / "ssh"
    wait_for("oned's key pair", lambda: (ssh_dir / "id_ed25519.pub").is_file(), timeout=10)
    with NetnsHost(cloud.dir / "nshost", ssh_dir / "id_ed25519.pub") as h:
        known = ssh_dir / "known_hosts"
        try:
            # A wrong key on record for the host (oned's own): refused, said in the host's ERROR.
            wrong = " ".join((ssh_dir / "id_ed25519.pub").read_text().split()[:2])
            known.write_text(f"{h.ip} {wrong}\n")
            hid = cloud.one.host.allocate(h.ip, "kvm", "kvm", -1)
            wait_for("host ERROR (wrong host key)", lambda: cloud.host_state(hid) == HOST_ERROR, timeout=30)
            err = cloud.host_xml(hid).findtext("TEMPLATE/ERROR")
            assert f"host key mismatch for {h.ip} port 22" in err and str(known) in err, err
            assert not (agent_dir / "one-node-agent").exists(), "nothing was sent to that host"

            # The admin records the host's real key (a plain entry: port 22): the next attempt
            # connects, installs the agent and the host is MONITORED.
            key = " ".join(h.host_key.split()[:2])
            known.write_text(f"{h.ip} {key}\n")
            t = time.monotonic()
            wait_for("namespace host MONITORED", lambda: cloud.host_state(hid) == HOST_MONITORED, timeout=60)
            print(f"key accepted -> MONITORED over SSH (agent installed) in {time.monotonic() - t:.2f} s")
            assert cloud.host_xml(hid).findtext("TEMPLATE/ERROR") is None
            x = cloud.host_xml(hid)
            # The agent ran inside the namespace (its hostname), on this machine's hardware.
            assert x.findtext("TEMPLATE/HOSTNAME") == h.hostname, x.findtext("TEMPLATE/HOSTNAME")
            assert int(x.findtext("TEMPLATE/TOTALMEMORY")) == meminfo_total_kb()
            assert (agent_dir / "one-node-agent").is_file(), "oned installed its agent there"
            assert not cloud.agent_pids(), "no local agent: it runs through sshd"

            vid = cloud.one.vm.allocate(cloud.guest_template("on-nshost"))
            cloud.one.vm.deploy(vid, hid, False, 0)
            cloud.wait_vm(vid, RUNNING)
            dom = cloud.domain(vid)
            assert domstate(dom) == "running"
            assert cloud.vm_xml(vid).findtext("DEPLOY_ID") == domuuid(dom)
            cloud.wait_marker(vid, "ONE-GUEST-BOOT")
            cloud.one.vm.action("terminate-hard", vid)
            cloud.wait_vm(vid, VM_DONE)
            assert domstate(dom) is None
        finally:
            # Before the namespace goes: the session ends cleanly.
            cloud.oned.stop()
