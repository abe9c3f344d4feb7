"""Helpers shared by the VM lifecycle tests (test_lifecycle*.py): state numbers, a parsed view
of one.vm.info, polling for a state, host capacity, dummy hosts with DUMMY_FAIL /
DUMMY_DELAY, and driving a VM to a given rest state.

Everything reads the raw XML (`oned.admin_xml`), not pyone's objects: the tests check exact
numbers (STATE, LCM_STATE, HISTORY fields, HOST_SHARE) and the raw body is also what the XSD
check wants. Actions go through pyone, the client OpenNebula users have.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyone
import pytest

import harness
from harness import parse_xml

# VM STATE
INIT, PENDING, HOLD, ACTIVE, STOPPED, SUSPENDED, DONE = 0, 1, 2, 3, 4, 5, 6
POWEROFF, UNDEPLOYED = 8, 9

# LCM_STATE (OpenNebula's numbers, fact sheet §3)
LCM_INIT = 0
PROLOG, BOOT, RUNNING, MIGRATE = 1, 2, 3, 4
SAVE_STOP, SAVE_SUSPEND, SAVE_MIGRATE = 5, 6, 7
PROLOG_MIGRATE, PROLOG_RESUME, EPILOG_STOP, EPILOG, SHUTDOWN = 8, 9, 10, 11, 12
CLEANUP_RESUBMIT, UNKNOWN, HOTPLUG, SHUTDOWN_POWEROFF = 15, 16, 17, 18
BOOT_UNKNOWN, BOOT_POWEROFF, BOOT_SUSPENDED, BOOT_STOPPED = 19, 20, 21, 22
CLEANUP_DELETE, HOTPLUG_SNAPSHOT, HOTPLUG_NIC = 23, 24, 25
SHUTDOWN_UNDEPLOY, EPILOG_UNDEPLOY, PROLOG_UNDEPLOY, BOOT_UNDEPLOY = 29, 30, 31, 32
HOTPLUG_PROLOG_POWEROFF, HOTPLUG_EPILOG_POWEROFF, BOOT_MIGRATE = 33, 34, 35
BOOT_FAILURE, BOOT_MIGRATE_FAILURE, PROLOG_MIGRATE_FAILURE, PROLOG_FAILURE = 36, 37, 38, 39
EPILOG_FAILURE, EPILOG_STOP_FAILURE, EPILOG_UNDEPLOY_FAILURE = 40, 41, 42
PROLOG_MIGRATE_POWEROFF, PROLOG_MIGRATE_POWEROFF_FAILURE = 43, 44
PROLOG_MIGRATE_SUSPEND, PROLOG_MIGRATE_SUSPEND_FAILURE = 45, 46
BOOT_UNDEPLOY_FAILURE, BOOT_STOPPED_FAILURE = 47, 48
PROLOG_RESUME_FAILURE, PROLOG_UNDEPLOY_FAILURE = 49, 50
DISK_SNAPSHOT_POWEROFF, DISK_SNAPSHOT_REVERT_POWEROFF, DISK_SNAPSHOT_DELETE_POWEROFF = 51, 52, 53
DISK_SNAPSHOT_SUSPENDED, DISK_SNAPSHOT_DELETE_SUSPENDED = 54, 56
DISK_SNAPSHOT, DISK_SNAPSHOT_DELETE = 57, 59
DISK_RESIZE, DISK_RESIZE_POWEROFF, DISK_RESIZE_UNDEPLOYED = 62, 63, 64
HOTPLUG_NIC_POWEROFF, HOTPLUG_RESIZE = 65, 66

# HISTORY/ACTION codes (VMActions)
A_NONE, A_MIGRATE, A_LIVE_MIGRATE = 0, 1, 2
A_UNDEPLOY, A_UNDEPLOY_HARD, A_STOP, A_SUSPEND, A_RESUME = 5, 6, 9, 10, 11
A_DELETE, A_DELETE_RECREATE, A_REBOOT, A_REBOOT_HARD = 13, 14, 15, 16
A_POWEROFF, A_POWEROFF_HARD = 19, 20
A_DISK_ATTACH, A_DISK_DETACH, A_NIC_ATTACH, A_NIC_DETACH = 21, 22, 23, 24
A_TERMINATE, A_TERMINATE_HARD, A_DISK_RESIZE = 27, 28, 29
A_UPDATECONF, A_RESIZE = 33, 35
A_SNAPSHOT_CREATE, A_SNAPSHOT_DELETE, A_SNAPSHOT_REVERT = 37, 38, 39
A_POWEROFF_MIGRATE, A_POWEROFF_HARD_MIGRATE = 48, 49

# recover operations
R_FAILURE, R_SUCCESS, R_RETRY, R_DELETE, R_DELETE_RECREATE, R_DELETE_DB = 0, 1, 2, 3, 4, 5

# The VM every test deploys: CPU 1 -> CPU_USAGE 100, MEMORY 256 MB -> MEM_USAGE 262144 KB.
VM_CPU, VM_MEM_MB = 1, 256
VM_TMPL = f'CPU="{VM_CPU}"\nMEMORY="{VM_MEM_MB}"\nDISK=[TYPE="fs", SIZE="10"]\n'
CPU_SHARE, MEM_SHARE = VM_CPU * 100, VM_MEM_MB * 1024

# A config with short monitoring rounds, for tests that need a MONITORED host with capacity.
FAST_MONITOR = """
[monitoring]
dummy_interval_seconds = 0.2
"""

HISTORY_INTS = ("OID", "SEQ", "HID", "CID", "STIME", "ETIME", "DS_ID", "PSTIME", "PETIME",
                "RSTIME", "RETIME", "ESTIME", "EETIME", "ACTION")


def start_oned(oned_factory, tmp_path, config: str, name: str = "one"):
    """An oned started with `config` as its configuration file."""
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(config)
    return oned_factory(name, extra_args=["--config", str(cfg)])


# --------------------------------------------------------------------------------------
# Reading a VM


@dataclass
class VmView:
    """one.vm.info, parsed: the numbers the lifecycle tests look at."""

    xml: str
    root: object
    state: int
    lcm: int
    prev_state: int
    prev_lcm: int
    resched: int
    etime: int
    deploy_id: str
    history: list[dict] = field(default_factory=list)

    @property
    def pair(self) -> tuple[int, int]:
        return (self.state, self.lcm)

    @property
    def error(self) -> str:
        return self.root.findtext("USER_TEMPLATE/ERROR") or ""

    def tmpl(self, path: str) -> str | None:
        return self.root.findtext(f"TEMPLATE/{path}")

    def disks(self) -> list[dict]:
        return [{c.tag: (c.text or "") for c in d} for d in self.root.findall("TEMPLATE/DISK")]

    def nics(self) -> list[dict]:
        return [{c.tag: (c.text or "") for c in n} for n in self.root.findall("TEMPLATE/NIC")]

    def last(self) -> dict:
        assert self.history, f"VM has no HISTORY record:\n{self.xml}"
        return self.history[-1]


def vm(oned, vid: int) -> VmView:
    xml = oned.admin_xml("one.vm.info", vid)
    root = parse_xml(xml)
    hist = []
    for h in root.findall("HISTORY_RECORDS/HISTORY"):
        rec = {k: int(h.findtext(k)) for k in HISTORY_INTS}
        rec["HOSTNAME"] = h.findtext("HOSTNAME")
        hist.append(rec)
    return VmView(
        xml=xml,
        root=root,
        state=int(root.findtext("STATE")),
        lcm=int(root.findtext("LCM_STATE")),
        prev_state=int(root.findtext("PREV_STATE")),
        prev_lcm=int(root.findtext("PREV_LCM_STATE")),
        resched=int(root.findtext("RESCHED")),
        etime=int(root.findtext("ETIME")),
        deploy_id=root.findtext("DEPLOY_ID") or "",
        history=hist,
    )


def wait_state(oned, vid: int, state: int, lcm: int = LCM_INIT, timeout: float = 10.0) -> VmView:
    """Polls one.vm.info every 20 ms until the VM is in (state, lcm); fails with the last state
    seen (and its ERROR) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        v = vm(oned, vid)
        if v.pair == (state, lcm):
            return v
        if time.monotonic() > deadline:
            pytest.fail(
                f"VM {vid} did not reach ({state}, {lcm}) within {timeout} s: last seen "
                f"({v.state}, {v.lcm}), ERROR={v.error!r}",
                pytrace=False,
            )
        time.sleep(0.02)


def wait_for(what: str, check, timeout: float = 10.0, step: float = 0.02):
    """harness.wait_for with this file's defaults."""
    return harness.wait_for(what, check, timeout, step)


def vm_log(oned, vid: int) -> str:
    p = oned.data_dir / "vms" / str(vid) / "vm.log"
    return p.read_text() if p.exists() else ""


# --------------------------------------------------------------------------------------
# Hosts


@dataclass
class Share:
    cpu: int
    mem: int
    running: int
    vms: list[int]
    max_cpu: int
    max_mem: int


def host_share(oned, hid: int) -> Share:
    h = parse_xml(oned.admin_xml("one.host.info", hid))
    s = h.find("HOST_SHARE")
    return Share(
        cpu=int(s.findtext("CPU_USAGE")),
        mem=int(s.findtext("MEM_USAGE")),
        running=int(s.findtext("RUNNING_VMS")),
        vms=sorted(int(i.text) for i in h.findall("VMS/ID")),
        max_cpu=int(s.findtext("MAX_CPU")),
        max_mem=int(s.findtext("MAX_MEM")),
    )


def assert_host(oned, hid: int, *vids: int, cpu: int = CPU_SHARE, mem: int = MEM_SHARE):
    """Host `hid` is charged for exactly `vids` (each taking `cpu` / `mem` KB)."""
    s = host_share(oned, hid)
    n = len(vids)
    assert (s.cpu, s.mem, s.running, s.vms) == (cpu * n, mem * n, n, sorted(vids)), (
        f"host {hid} share (CPU_USAGE, MEM_USAGE, RUNNING_VMS, VMS) = "
        f"{(s.cpu, s.mem, s.running, s.vms)}, expected {(cpu * n, mem * n, n, sorted(vids))}"
    )


def add_host(one, name: str = "h1", fail: str = "", delay_ms: int | None = None) -> int:
    hid = one.host.allocate(name, "dummy", "dummy", -1)
    if fail or delay_ms is not None:
        configure_host(one, hid, fail=fail, delay_ms=delay_ms)
    return hid


def configure_host(one, hid: int, fail: str | None = None, delay_ms: int | None = None):
    """Sets the dummy driver's DUMMY_FAIL (comma list of operations) and / or DUMMY_DELAY."""
    parts = []
    if fail is not None:
        parts.append(f'DUMMY_FAIL="{fail}"')
    if delay_ms is not None:
        parts.append(f'DUMMY_DELAY="{delay_ms}"')
    assert one.host.update(hid, "\n".join(parts), 1) == hid


# --------------------------------------------------------------------------------------
# VMs


def new_vm(one, extra: str = "", hold: bool = False) -> int:
    return one.vm.allocate(VM_TMPL + extra, hold)


def deploy(oned, one, vid: int, hid: int, timeout: float = 10.0) -> VmView:
    assert one.vm.deploy(vid, hid, False, -1) == vid
    return wait_state(oned, vid, ACTIVE, RUNNING, timeout)


def running_vm(oned, one, hid: int, extra: str = "") -> int:
    vid = new_vm(one, extra)
    deploy(oned, one, vid, hid)
    return vid


def act(oned, one, name: str, vid: int, state: int, lcm: int = LCM_INIT, timeout: float = 10.0) -> VmView:
    """one.vm.action(name) then wait for (state, lcm)."""
    assert one.vm.action(name, vid) == vid
    return wait_state(oned, vid, state, lcm, timeout)


# How to bring a RUNNING VM (deployed on `hid`) to each rest state, and the state it lands in.
REST = {
    "RUNNING": ((ACTIVE, RUNNING), []),
    "POWEROFF": ((POWEROFF, LCM_INIT), ["poweroff"]),
    "SUSPENDED": ((SUSPENDED, LCM_INIT), ["suspend"]),
    "STOPPED": ((STOPPED, LCM_INIT), ["stop"]),
    "UNDEPLOYED": ((UNDEPLOYED, LCM_INIT), ["undeploy"]),
    "DONE": ((DONE, LCM_INIT), ["terminate"]),
}


def vm_in(oned, one, hid: int, where: str, extra: str = "") -> int:
    """A VM in rest state `where` (PENDING, HOLD, or one of REST, reached from RUNNING)."""
    if where == "PENDING":
        return new_vm(one, extra)
    if where == "HOLD":
        return new_vm(one, extra, hold=True)
    vid = running_vm(oned, one, hid, extra)
    (state, lcm), actions = REST[where]
    for a in actions:
        act(oned, one, a, vid, state, lcm)
    return vid


def refused(oned, vid: int, call, match: str | None = "not available for state"):
    """`call()` must fail with ACTION (pyone.OneActionException) and leave the VM as it was."""
    before = vm(oned, vid)
    with pytest.raises(pyone.OneActionException, match=match) as ei:
        call()
    after = vm(oned, vid)
    assert after.pair == before.pair, f"refused call changed the VM: {before.pair} -> {after.pair}"
    assert after.history == before.history
    return ei.value
