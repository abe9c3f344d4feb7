"""Our own CLI (onevm, onehost, oneimage, onetemplate, onevnet, onedatastore, oneuser,
onegroup, onecluster, oneacl, onehook, onesecgroup; crate cli/) against a real oned with dummy hosts.

Every verb runs as a user types it, and its effect is checked through the API (pyone); the
tables and `show` layouts are compared with snapshots (tests/e2e/cli_snapshots/, times and
dates masked; ONE_UPDATE_SNAPSHOTS=1 rewrites them); -x/-j/-y must parse; errors must read as
OpenNebula prints them, with exit status 255.

The binaries are found as the harness finds oned: $<NAME>_BIN (e.g. ONEVM_BIN), else
$CARGO_TARGET_DIR/debug/<name>, else target/debug/<name> (cargo build -p one-cli)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness import wait_for, workspace_binary

pytestmark = pytest.mark.db_independent

TOOLS = [
    "onevm",
    "onehost",
    "oneimage",
    "onetemplate",
    "onevnet",
    "onedatastore",
    "oneuser",
    "onegroup",
    "onecluster",
    "oneacl",
    "onehook",
    "onesecgroup",
]
SNAPSHOTS = Path(__file__).parent / "cli_snapshots"

# VM states and LCM states (OpenNebula's numbers).
PENDING, HOLD, ACTIVE, STOPPED, SUSPENDED, DONE, POWEROFF, UNDEPLOYED = 1, 2, 3, 4, 5, 6, 8, 9
RUNNING = 3


def cli_bin(name: str) -> str:
    return str(workspace_binary(name, f"{name.upper()}_BIN"))


@dataclass
class Result:
    rc: int
    out: str
    err: str


class Cli:
    """Runs our commands against one oned, as oneadmin unless told otherwise."""

    def __init__(self, oned, home: Path):
        self.oned = oned
        self.home = home
        home.mkdir(parents=True, exist_ok=True)

    def env(self, extra=None):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "ONE_XMLRPC": self.oned.endpoint,
            "ONE_AUTH": str(self.oned.auth_file),
            "TZ": "UTC",
            "NO_COLOR": "1",
            # An editor that fails: no verb may wait for one in these tests.
            "EDITOR": "false",
        }
        env.update(extra or {})
        return env

    def run(self, tool, *args, stdin=None, env=None) -> Result:
        p = subprocess.run(
            [cli_bin(tool), *map(str, args)],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=self.env(env),
            timeout=120,
        )
        assert "panicked" not in p.stderr, p.stderr
        return Result(p.returncode, p.stdout, p.stderr)

    def ok(self, tool, *args, **kw) -> str:
        r = self.run(tool, *args, **kw)
        assert r.rc == 0 and r.err == "", f"{tool} {args}: rc {r.rc}\n{r.out}\n{r.err}"
        return r.out

    def fail(self, tool, *args, **kw) -> Result:
        r = self.run(tool, *args, **kw)
        assert r.rc == 255, f"{tool} {args} should fail with 255: rc {r.rc}\n{r.out}\n{r.err}"
        assert r.err.strip(), "a failure says why on stderr"
        return r

    def new_id(self, tool, *args, **kw) -> int:
        out = self.ok(tool, *args, **kw)
        # `ID: N` exactly: `onetemplate instantiate` prints `VM ID: N` (checked where used).
        m = re.fullmatch(r"ID: (\d+)\n", out)
        assert m, f"{tool} {args} printed {out!r}, not 'ID: N'"
        return int(m.group(1))


@pytest.fixture(scope="module")
def cloud(shared_oned, tmp_path_factory):
    """One oned for the module with two dummy hosts, a datablock image and a network."""
    cli = Cli(shared_oned, tmp_path_factory.mktemp("cli-home"))
    one = shared_oned.client()
    h1 = cli.new_id("onehost", "create", "cli-h1", "-i", "dummy", "-v", "dummy")
    h2 = cli.new_id("onehost", "create", "cli-h2", "--im", "dummy", "--vm", "dummy")
    blk = cli.new_id("oneimage", "create", "-d", "default", "--name", "cli-blk", "--size", "10",
                     "--type", "datablock")
    net_tmpl = tmp_path_factory.mktemp("cli-files") / "net.tmpl"
    net_tmpl.write_text('NAME="cli-net"\nVN_MAD="dummy"\nBRIDGE="br-cli"\n'
                        'AR=[TYPE="IP4", IP="10.9.0.10", SIZE="50"]\n')
    net = cli.new_id("onevnet", "create", net_tmpl)
    wait_for("dummy hosts monitored", lambda: all(one.host.info(h).STATE == 2 for h in (h1, h2)))

    class Cloud:
        pass

    c = Cloud()
    c.oned, c.one, c.cli, c.h1, c.h2, c.blk, c.net = shared_oned, one, cli, h1, h2, blk, net
    c.files = net_tmpl.parent
    return c


def doc(oned, method, *params) -> ET.Element:
    """An object document read through the raw API (pyone's bindings do not expose every
    element, quotas for one)."""
    return ET.fromstring(oned.admin_xml(method, *params))


def vm_state(one, vid):
    vm = one.vm.info(vid)
    return vm.STATE, vm.LCM_STATE


def wait_state(one, vid, state, lcm=None, timeout=20):
    def check():
        s, l = vm_state(one, vid)
        return (s, l) if s == state and (lcm is None or l == lcm) else None

    return wait_for(f"VM {vid} in state {state}/{lcm}", check, timeout=timeout)


def running_vm(c, name) -> int:
    vid = c.cli.new_id("onevm", "create", "--name", name, "--cpu", "0.1", "--memory", "64",
                       "--disk", "cli-blk", "--nic", "cli-net")
    # CLONING while the datastore copies the disk, then PENDING.
    wait_state(c.one, vid, PENDING)
    c.cli.ok("onevm", "deploy", vid, "cli-h1")
    wait_state(c.one, vid, ACTIVE, RUNNING)
    return vid


# ------------------------------------------------------------------------------------------
# Help, usage


def test_help_on_every_command_and_verb(cloud):
    for tool in TOOLS:
        out = cloud.cli.ok(tool, "--help")
        verbs = re.findall(r"^  ([a-z][a-z-]+)\s", out.split("Commands:")[1].split("Options:")[0], re.M)
        assert "list" in verbs, (tool, verbs)
        for verb in verbs:
            if verb == "help":
                continue
            h = cloud.cli.ok(tool, verb, "--help")
            assert "Usage:" in h, (tool, verb)
    # A wrong verb or option: a short usage, clap's status 2, no backtrace.
    for args in (["bogus"], ["list", "--bogus"], ["show"]):
        r = cloud.cli.run("onevm", *args)
        assert r.rc == 2 and "Usage:" in r.err and "panicked" not in r.err, r


# ------------------------------------------------------------------------------------------
# Hosts


def test_onehost_verbs(cloud):
    c, one = cloud.cli, cloud.one
    hid = c.new_id("onehost", "create", "cli-h3", "-i", "dummy", "-v", "dummy", "--cluster", "default")
    assert one.host.info(hid).CLUSTER_ID == 0
    wait_for("cli-h3 monitored", lambda: one.host.info(hid).STATE == 2)
    c.ok("onehost", "disable", "cli-h3")
    assert one.host.info(hid).STATE == 4
    c.ok("onehost", "enable", hid)
    wait_for("cli-h3 on again", lambda: one.host.info(hid).STATE in (0, 2))
    c.ok("onehost", "offline", hid)
    assert one.host.info(hid).STATE == 8
    c.ok("onehost", "enable", hid)
    c.ok("onehost", "rename", hid, "cli-h3b")
    assert one.host.info(hid).NAME == "cli-h3b"
    f = cloud.files / "host.tmpl"
    f.write_text('OWNER="ops"\n')
    c.ok("onehost", "update", "cli-h3b", f, "--append")
    assert one.host.info(hid).TEMPLATE["OWNER"] == "ops"
    assert "cli-h3b" in c.ok("onehost", "list")
    shown = c.ok("onehost", "show", "cli-h3b")
    assert f"HOST {hid} INFORMATION" in shown and 'OWNER="ops"' in shown
    # flush: disables the host and reschedules its VMs.
    vid = c.new_id("onevm", "create", "--name", "cli-flush", "--cpu", "0.1", "--memory", "32")
    c.ok("onevm", "deploy", vid, hid)
    wait_state(one, vid, ACTIVE, RUNNING)
    c.ok("onehost", "flush", "cli-h3b")
    assert one.host.info(hid).STATE == 4
    assert one.vm.info(vid).RESCHED == 1
    c.ok("onevm", "terminate", "--hard", vid)
    wait_state(one, vid, DONE)
    c.ok("onehost", "delete", hid)
    with pytest.raises(Exception):
        one.host.info(hid)


# ------------------------------------------------------------------------------------------
# VMs


def test_onevm_create_forms(cloud):
    c, one = cloud.cli, cloud.one
    f = cloud.files / "vm.tmpl"
    f.write_text('NAME="cli-file"\nCPU="0.2"\nMEMORY="96"\nTAG="from-file"\n')
    vid = c.new_id("onevm", "create", f)
    vm = one.vm.info(vid)
    assert (vm.NAME, vm.STATE, vm.USER_TEMPLATE["TAG"]) == ("cli-file", PENDING, "from-file")
    # From standard input.
    vid = c.new_id("onevm", "create", stdin='NAME="cli-stdin"\nCPU="0.1"\nMEMORY="32"\n')
    assert one.vm.info(vid).NAME == "cli-stdin"
    # From options, on hold, several at once.
    out = c.ok("onevm", "create", "--name", "cli-opts", "--cpu", "1", "--memory", "0.5g",
               "--disk", "cli-blk", "--nic", "cli-net", "--hold", "--multiple", "2")
    ids = [int(x) for x in re.findall(r"^ID: (\d+)$", out, re.M)]
    assert len(ids) == 2
    for vid in ids:
        vm = one.vm.info(vid)
        assert vm.STATE == HOLD
        assert vm.TEMPLATE["MEMORY"] == "512" and vm.TEMPLATE["CPU"] == "1"
        assert vm.TEMPLATE["DISK"]["IMAGE"] == "cli-blk"
        assert vm.TEMPLATE["NIC"]["NETWORK"] == "cli-net"
    # A template file and options at once is refused.
    c.fail("onevm", "create", f, "--cpu", "1")
    c.ok("onevm", "release", ",".join(map(str, ids)))
    assert [one.vm.info(i).STATE for i in ids] == [PENDING, PENDING]
    c.ok("onevm", "hold", f"{ids[0]}..{ids[1]}")
    assert [one.vm.info(i).STATE for i in ids] == [HOLD, HOLD]
    c.ok("onevm", "terminate", f"{ids[0]},{ids[1]}")
    assert [one.vm.info(i).STATE for i in ids] == [DONE, DONE]


def test_onevm_lifecycle_verbs(cloud):
    c, one = cloud.cli, cloud.one
    vid = running_vm(cloud, "cli-life")
    steps = [
        (["poweroff", vid], (POWEROFF, 0)),
        (["resume", vid], (ACTIVE, RUNNING)),
        (["poweroff", "--hard", vid], (POWEROFF, 0)),
        (["resume", "cli-life"], (ACTIVE, RUNNING)),
        (["suspend", vid], (SUSPENDED, 0)),
        (["resume", vid], (ACTIVE, RUNNING)),
        (["reboot", vid], (ACTIVE, RUNNING)),
        (["reboot", "--hard", vid], (ACTIVE, RUNNING)),
        (["migrate", vid, "cli-h2"], (ACTIVE, RUNNING)),
        (["migrate", "--live", vid, "cli-h1"], (ACTIVE, RUNNING)),
        (["undeploy", vid], (UNDEPLOYED, 0)),
        (["resume", vid], (PENDING, 0)),
        (["deploy", vid, "cli-h2"], (ACTIVE, RUNNING)),
        (["stop", vid], (STOPPED, 0)),
        (["resume", vid], (PENDING, 0)),
        (["deploy", vid, cloud.h1, "0", "--enforce"], (ACTIVE, RUNNING)),
        (["undeploy", "--hard", vid], (UNDEPLOYED, 0)),
        (["resume", vid], (PENDING, 0)),
        (["deploy", vid, cloud.h1], (ACTIVE, RUNNING)),
    ]
    for args, (state, lcm) in steps:
        c.ok("onevm", *args)
        wait_state(one, vid, state, lcm)
    vm = one.vm.info(vid)
    assert vm.HISTORY_RECORDS.HISTORY[-1].HOSTNAME == "cli-h1"
    c.ok("onevm", "resched", vid)
    assert one.vm.info(vid).RESCHED == 1
    c.ok("onevm", "unresched", vid)
    assert one.vm.info(vid).RESCHED == 0
    c.ok("onevm", "terminate", vid)
    wait_state(one, vid, DONE)


def test_onevm_recover(cloud):
    c, one = cloud.cli, cloud.one
    # A host whose deploys fail leaves VMs in BOOT_FAILURE, where recover applies.
    f = cloud.files / "failing.tmpl"
    f.write_text('DUMMY_FAIL="deploy"\n')
    hid = c.new_id("onehost", "create", "cli-fail", "-i", "dummy", "-v", "dummy")
    c.ok("onehost", "update", hid, f, "--append")
    wait_for("cli-fail monitored", lambda: one.host.info(hid).STATE == 2)
    vids = [c.new_id("onevm", "create", "--name", f"cli-rec-{i}", "--cpu", "0.1", "--memory", "32")
            for i in range(3)]
    for vid in vids:
        c.ok("onevm", "deploy", vid, hid)
        wait_state(one, vid, ACTIVE, 36)  # BOOT_FAILURE
    r = c.run("onevm", "recover", vids[0])
    assert r.rc == 2 and "required" in r.err, r  # one of --success ... is needed
    c.ok("onevm", "recover", "--retry", vids[0])
    wait_state(one, vids[0], ACTIVE, 36)
    c.ok("onevm", "recover", "--success", vids[0])
    wait_state(one, vids[0], ACTIVE, RUNNING)
    c.ok("onevm", "recover", "--delete", vids[1])
    wait_state(one, vids[1], DONE)
    c.ok("onevm", "recover", "--recreate", vids[2])
    wait_state(one, vids[2], PENDING)
    # A slow host keeps a VM in a transient state long enough to recover it.
    f.write_text('DUMMY_DELAY="30000"\n')
    c.ok("onehost", "update", hid, f)
    c.ok("onevm", "poweroff", vids[0])
    wait_state(one, vids[0], ACTIVE, 18)  # SHUTDOWN_POWEROFF
    c.ok("onevm", "recover", "--failure", vids[0])
    wait_state(one, vids[0], ACTIVE, RUNNING)
    c.ok("onevm", "poweroff", vids[0])
    wait_state(one, vids[0], ACTIVE, 18)
    c.ok("onevm", "recover", "--delete-db", vids[0])
    wait_state(one, vids[0], DONE)
    c.ok("onevm", "recover", "--delete-db", vids[2])
    c.ok("onehost", "delete", hid)


def test_onevm_hotplug_snapshots_and_config(cloud):
    c, one = cloud.cli, cloud.one
    vid = running_vm(cloud, "cli-hot")
    c.ok("onevm", "disk-attach", vid, "--image", "cli-blk", "--target", "vdz")
    wait_state(one, vid, ACTIVE, RUNNING)
    disks = one.vm.info(vid).TEMPLATE["DISK"]
    assert len(disks) == 2 and disks[1]["TARGET"] == "vdz"
    c.ok("onevm", "disk-detach", vid, disks[1]["DISK_ID"])
    wait_state(one, vid, ACTIVE, RUNNING)
    assert isinstance(one.vm.info(vid).TEMPLATE["DISK"], dict)
    c.ok("onevm", "nic-attach", vid, "--network", "cli-net", "--ip", "10.9.0.40")
    wait_state(one, vid, ACTIVE, RUNNING)
    nics = one.vm.info(vid).TEMPLATE["NIC"]
    assert nics[1]["IP"] == "10.9.0.40"
    c.ok("onevm", "nic-detach", vid, nics[1]["NIC_ID"])
    wait_state(one, vid, ACTIVE, RUNNING)
    # System snapshots, by id and by name.
    c.ok("onevm", "snapshot-create", vid, "snap-a")
    wait_state(one, vid, ACTIVE, RUNNING)
    snap = one.vm.info(vid).TEMPLATE["SNAPSHOT"][0]
    assert snap["NAME"] == "snap-a"
    c.ok("onevm", "snapshot-revert", vid, "snap-a")
    wait_state(one, vid, ACTIVE, RUNNING)
    c.ok("onevm", "snapshot-delete", vid, snap["SNAPSHOT_ID"])
    wait_state(one, vid, ACTIVE, RUNNING)
    assert "SNAPSHOT" not in one.vm.info(vid).TEMPLATE
    # Disk snapshots.
    c.ok("onevm", "disk-snapshot-create", vid, 0, "ds-a")
    wait_state(one, vid, ACTIVE, RUNNING)
    c.ok("onevm", "disk-snapshot-rename", vid, 0, 0, "ds-b")
    assert one.vm.info(vid).SNAPSHOTS[0].SNAPSHOT[0].NAME == "ds-b"
    c.ok("onevm", "disk-snapshot-create", vid, 0, "ds-c")
    wait_state(one, vid, ACTIVE, RUNNING)
    c.ok("onevm", "poweroff", vid)
    wait_state(one, vid, POWEROFF)
    c.ok("onevm", "disk-snapshot-revert", vid, 0, "ds-b")
    wait_state(one, vid, POWEROFF)
    c.ok("onevm", "disk-snapshot-delete", vid, 0, "ds-c")
    wait_state(one, vid, POWEROFF)
    assert [s.NAME for s in one.vm.info(vid).SNAPSHOTS[0].SNAPSHOT] == ["ds-b"]
    c.ok("onevm", "resume", vid)
    wait_state(one, vid, ACTIVE, RUNNING)
    # Disk resize (must grow), capacity resize, updateconf, update, rename.
    r = c.fail("onevm", "disk-resize", vid, 0, "5")
    assert "must be larger than current size" in r.err
    c.ok("onevm", "disk-resize", vid, 0, "1G")
    wait_state(one, vid, ACTIVE, RUNNING)
    assert one.vm.info(vid).TEMPLATE["DISK"]["SIZE"] == "1024"
    c.ok("onevm", "poweroff", vid)
    wait_state(one, vid, POWEROFF)
    c.ok("onevm", "resize", vid, "--cpu", "0.5", "--vcpu", "2", "--memory", "128")
    vm = one.vm.info(vid)
    assert (vm.TEMPLATE["CPU"], vm.TEMPLATE["VCPU"], vm.TEMPLATE["MEMORY"]) == ("0.5", "2", "128")
    conf = cloud.files / "conf.tmpl"
    conf.write_text('GRAPHICS=[TYPE="VNC", LISTEN="127.0.0.1"]\n')
    c.ok("onevm", "updateconf", vid, conf)
    assert one.vm.info(vid).TEMPLATE["GRAPHICS"]["TYPE"] == "VNC"
    ut = cloud.files / "ut.tmpl"
    ut.write_text('LABEL="a"\n')
    c.ok("onevm", "update", vid, ut)
    ut.write_text('OTHER="b"\n')
    c.ok("onevm", "update", vid, ut, "--append")
    vm = one.vm.info(vid)
    assert (vm.USER_TEMPLATE["LABEL"], vm.USER_TEMPLATE["OTHER"]) == ("a", "b")
    c.ok("onevm", "rename", vid, "cli-hot-2")
    assert one.vm.info(vid).NAME == "cli-hot-2"
    # disk-saveas copies the powered-off VM's disk into a new image.
    out = c.ok("onevm", "disk-saveas", vid, 0, "cli-saved")
    m = re.fullmatch(r"Image ID: (\d+)\n", out)
    assert m, out
    assert one.image.info(int(m.group(1))).NAME == "cli-saved"
    r = c.fail("onevm", "disk-saveas", vid, 7, "cli-saved-2")
    assert "[one.vm.disksaveas]" in r.err
    c.ok("onevm", "terminate", "--hard", vid)
    wait_state(one, vid, DONE)


def test_ownership_permissions_locks(cloud, make_user_shared):
    c, one = cloud.cli, cloud.one
    alice = make_user_shared("cli-alice", "pw-alice")
    gid = c.new_id("onegroup", "create", "cli-team")
    vid = c.new_id("onevm", "create", "--name", "cli-owned", "--cpu", "0.1", "--memory", "32")
    c.ok("onevm", "chown", vid, "cli-alice")
    assert one.vm.info(vid).UID == alice.uid
    c.ok("onevm", "chgrp", vid, "cli-team")
    assert one.vm.info(vid).GID == gid
    c.ok("onevm", "chown", vid, "oneadmin", "oneadmin")
    assert (one.vm.info(vid).UID, one.vm.info(vid).GID) == (0, 0)
    c.ok("onevm", "chmod", vid, "640")
    p = one.vm.info(vid).PERMISSIONS
    assert (p.OWNER_U, p.OWNER_M, p.GROUP_U, p.GROUP_M, p.OTHER_U) == (1, 1, 1, 0, 0)
    c.ok("onevm", "chmod", vid, "u=rw,g=,o=")
    assert one.vm.info(vid).PERMISSIONS.GROUP_U == 0
    c.ok("onevm", "lock", vid)
    assert one.vm.info(vid).LOCK.LOCKED == 1
    r = c.fail("onevm", "rename", vid, "x")
    assert "locked" in r.err.lower()
    c.ok("onevm", "unlock", vid)
    c.ok("onevm", "lock", vid, "--admin")
    assert one.vm.info(vid).LOCK.LOCKED == 3
    c.ok("onevm", "unlock", vid)
    assert one.vm.info(vid).LOCK is None
    c.ok("onevm", "terminate", vid)


@pytest.fixture(scope="module")
def make_user_shared(shared_oned):
    return shared_oned.create_user


# ------------------------------------------------------------------------------------------
# Templates, images, networks, datastores


def test_onetemplate_verbs(cloud):
    c, one = cloud.cli, cloud.one
    tid = c.new_id("onetemplate", "create", "--name", "cli-tmpl", "--cpu", "0.5", "--memory", "64",
                   "--disk", "cli-blk")
    t = one.template.info(tid)
    assert (t.NAME, t.TEMPLATE["CPU"], t.TEMPLATE["DISK"]["IMAGE"]) == ("cli-tmpl", "0.5", "cli-blk")
    out = c.ok("onetemplate", "instantiate", "cli-tmpl", "--multiple", "3", "--name", "web-%i")
    ids = [int(x) for x in re.findall(r"^VM ID: (\d+)$", out, re.M)]
    assert [one.vm.info(i).NAME for i in ids] == ["web-0", "web-1", "web-2"]
    assert all(one.vm.info(i).TEMPLATE["TEMPLATE_ID"] == str(tid) for i in ids)
    out = c.ok("onetemplate", "instantiate", tid, "--hold", "--memory", "128")
    vid = int(re.fullmatch(r"VM ID: (\d+)\n", out).group(1))
    vm = one.vm.info(vid)
    assert (vm.STATE, vm.TEMPLATE["MEMORY"]) == (HOLD, "128")
    c.ok("onevm", "terminate", ",".join(map(str, ids + [vid])))
    clone = c.new_id("onetemplate", "clone", tid, "cli-tmpl-2")
    assert one.template.info(clone).TEMPLATE["CPU"] == "0.5"
    f = cloud.files / "t.tmpl"
    f.write_text('CPU="2"\nMEMORY="256"\n')
    c.ok("onetemplate", "update", clone, f)
    assert one.template.info(clone).TEMPLATE["CPU"] == "2"
    c.ok("onetemplate", "rename", clone, "cli-tmpl-3")
    c.ok("onetemplate", "chmod", clone, "644")
    assert one.template.info(clone).PERMISSIONS.OTHER_U == 1
    c.ok("onetemplate", "chgrp", clone, "users")
    assert one.template.info(clone).GID == 1
    c.ok("onetemplate", "lock", clone)
    c.ok("onetemplate", "unlock", clone)
    shown = c.ok("onetemplate", "show", "cli-tmpl-3")
    assert "TEMPLATE CONTENTS" in shown and 'CPU="2"' in shown
    c.ok("onetemplate", "delete", "cli-tmpl-3")
    with pytest.raises(Exception):
        one.template.info(clone)


def test_oneimage_create_upload(cloud, tmp_path):
    """--upload streams a local file through oned's POST /upload, then registers it."""
    c, one = cloud.cli, cloud.one
    data = os.urandom(3 << 20) + b"the end\n"
    f = tmp_path / "cli-up.img"
    f.write_bytes(data)
    iid = c.new_id("oneimage", "create", "-d", "default", "--upload", f, "--type", "datablock")
    img = one.image.info(iid)
    # The name defaults to the file's; PATH is the token the upload answered.
    assert img.NAME == "cli-up.img" and re.fullmatch(r"upload://\S+", img.PATH), img.PATH
    wait_for("uploaded image READY", lambda: one.image.info(iid).STATE == 1)
    assert Path(one.image.info(iid).SOURCE).read_bytes() == data
    assert one.image.info(iid).SIZE == 4  # MB, rounded up
    # A second upload of the same file is a new image (a token is used once).
    iid2 = c.new_id("oneimage", "create", "-d", 1, "--upload", f, "--name", "cli-up-2")
    assert iid2 != iid and one.image.info(iid2).PATH != img.PATH
    wait_for("second upload READY", lambda: one.image.info(iid2).STATE == 1)
    # --dry sends nothing.
    out = c.ok("oneimage", "create", "-d", 1, "--upload", f, "--dry")
    assert 'PATH="upload://TOKEN"' in out and 'NAME="cli-up.img"' in out
    # A missing file: a clear error before anything is sent, OpenNebula's status.
    r = c.fail("oneimage", "create", "-d", 1, "--upload", tmp_path / "nope.img")
    assert "nope.img" in r.err and "No such file" in r.err, r.err
    # Wrong credentials: oned's refusal as it gave it.
    r = c.fail("oneimage", "create", "-d", 1, "--upload", f, "--user", "oneadmin",
               "--password", "wrong")
    assert "HTTP 401" in r.err, r.err
    # --upload and --path (or --source) together: a usage error.
    assert c.run("oneimage", "create", "-d", 1, "--upload", f, "--path", "/x").rc == 2
    c.ok("oneimage", "delete", f"{iid},{iid2}")


def test_oneimage_verbs(cloud):
    c, one = cloud.cli, cloud.one
    iid = c.new_id("oneimage", "create", "-d", "default", "--name", "cli-img", "--size", "20",
                   "--type", "DATABLOCK", "--description", "test disk")
    wait_for("image READY", lambda: one.image.info(iid).STATE == 1)
    img = one.image.info(iid)
    assert (img.SIZE, img.TEMPLATE["DESCRIPTION"]) == (20, "test disk")
    # --path registers a file of the front-end (copied by the datastore driver).
    src = cloud.files / "cli-path.img"
    src.write_bytes(b"cli-path disk\n")
    pid = c.new_id("oneimage", "create", "-d", 1, "--name", "cli-path", "--path", src)
    assert one.image.info(pid).PATH == str(src)
    wait_for("image READY", lambda: one.image.info(pid).STATE == 1)
    assert Path(one.image.info(pid).SOURCE).read_bytes() == b"cli-path disk\n"
    # Paths under the datastore's RESTRICTED_DIRS (/etc by default) are refused.
    r = c.fail("oneimage", "create", "-d", 1, "--name", "cli-etc", "--path", "/etc/hostname")
    assert "RESTRICTED_DIRS" in r.err
    c.ok("oneimage", "persistent", iid)
    assert one.image.info(iid).PERSISTENT == 1
    c.ok("oneimage", "nonpersistent", iid)
    assert one.image.info(iid).PERSISTENT == 0
    c.ok("oneimage", "disable", iid)
    assert one.image.info(iid).STATE == 3
    c.ok("oneimage", "enable", iid)
    assert one.image.info(iid).STATE == 1
    c.ok("oneimage", "chtype", iid, "os")
    assert one.image.info(iid).TYPE == 0
    clone = c.new_id("oneimage", "clone", "cli-img", "cli-img-copy")
    assert one.image.info(clone).NAME == "cli-img-copy"
    c.ok("oneimage", "rename", clone, "cli-img-copy2")
    c.ok("oneimage", "chmod", clone, "604")
    c.ok("oneimage", "lock", clone, "--manage")
    assert one.image.info(clone).LOCK.LOCKED == 2
    c.ok("oneimage", "unlock", clone)
    f = cloud.files / "img.tmpl"
    f.write_text('DEV_PREFIX="vd"\n')
    c.ok("oneimage", "update", iid, f, "--append")
    assert one.image.info(iid).TEMPLATE["DEV_PREFIX"] == "vd"
    assert "cli-img-copy2" in c.ok("oneimage", "list")
    assert "IMAGE TEMPLATE" in c.ok("oneimage", "show", iid)
    # The PATH image is READY (copied by the datastore driver): a plain delete; --force
    # removes an image whatever its state.
    c.ok("oneimage", "delete", pid)
    c.ok("oneimage", "delete", "--force", clone)
    left = {i.ID for i in one.imagepool.info(-2, -1, -1).IMAGE}
    assert clone not in left and pid not in left


def test_onevnet_verbs(cloud):
    c, one = cloud.cli, cloud.one
    f = cloud.files / "vn.tmpl"
    f.write_text('NAME="cli-vn"\nVN_MAD="dummy"\nBRIDGE="br-vn"\n')
    nid = c.new_id("onevnet", "create", f)
    c.ok("onevnet", "addar", nid, "--ip", "192.168.50.1", "--size", "10")
    c.ok("onevnet", "addar", "cli-vn", "--mac", "02:00:00:00:01:00", "--size", "4")
    ars = one.vn.info(nid).AR_POOL.AR
    assert [(a.TYPE, a.SIZE) for a in ars] == [("IP4", 10), ("ETHER", 4)]
    c.ok("onevnet", "rmar", nid, ars[1].AR_ID)
    assert len(one.vn.info(nid).AR_POOL.AR) == 1
    c.ok("onevnet", "hold", nid, "192.168.50.3")
    leases = one.vn.info(nid).AR_POOL.AR[0].LEASES.LEASE
    assert [l.IP for l in leases] == ["192.168.50.3"]
    shown = c.ok("onevnet", "show", nid)
    assert "192.168.50.3" in shown and "ADDRESS RANGE POOL" in shown
    c.ok("onevnet", "release", nid, "192.168.50.3")
    assert not one.vn.info(nid).AR_POOL.AR[0].LEASES.LEASE
    out = c.ok("onevnet", "reserve", nid, "cli-res", "--size", "2")
    rid = int(re.fullmatch(r"Reservation VNET ID: (\d+)\n", out).group(1))
    res = one.vn.info(rid)
    assert (res.NAME, res.AR_POOL.AR[0].SIZE) == ("cli-res", 2)
    assert one.vn.info(nid).USED_LEASES == 2
    c.ok("onevnet", "rename", rid, "cli-res2")
    c.ok("onevnet", "chmod", rid, "640")
    c.ok("onevnet", "delete", "cli-res2")
    f.write_text('DNS="1.1.1.1"\n')
    c.ok("onevnet", "update", nid, f, "--append")
    assert one.vn.info(nid).TEMPLATE["DNS"] == "1.1.1.1"
    c.ok("onevnet", "lock", nid)
    c.ok("onevnet", "unlock", nid)
    c.ok("onevnet", "delete", nid)


def test_onedatastore_verbs_and_mount_unit(cloud):
    c, one = cloud.cli, cloud.one
    f = cloud.files / "ds.tmpl"
    f.write_text('NAME="cli-sys"\nTYPE="SYSTEM_DS"\nTM_MAD="shared"\n')
    did = c.new_id("onedatastore", "create", f)
    ds = one.datastore.info(did)
    assert ds.TYPE == 1
    c.ok("onedatastore", "disable", did)
    assert one.datastore.info(did).STATE == 1
    c.ok("onedatastore", "enable", "cli-sys")
    assert one.datastore.info(did).STATE == 0
    c.ok("onedatastore", "rename", did, "cli-sys2")
    c.ok("onedatastore", "chmod", did, "640")
    unit = c.ok("onedatastore", "mount-unit", did, "--source", "nfs1:/export/one")
    base = one.datastore.info(did).BASE_PATH
    name = base.strip("/").replace("-", "\\x2d").replace("/", "-") + ".mount"
    assert unit.startswith(f"# {name}:"), unit
    assert f"\nWhere={base}\n" in unit and "\nWhat=nfs1:/export/one\n" in unit
    assert "\nType=nfs\n" in unit and "[Install]" in unit
    r = c.fail("onedatastore", "mount-unit", did, "--source", "nfs1")
    assert "SERVER:/EXPORT" in r.err
    shown = c.ok("onedatastore", "show", did)
    assert f"DATASTORE {did} INFORMATION" in shown and "BASE PATH" in shown
    c.ok("onedatastore", "delete", did)


# ------------------------------------------------------------------------------------------
# Users, groups, clusters, ACLs, hooks


def test_oneuser_and_onegroup_verbs(cloud):
    c, one = cloud.cli, cloud.one
    gid = c.new_id("onegroup", "create", "cli-devs")
    uid = c.new_id("oneuser", "create", "cli-bob", "pw1", "--group", "cli-devs")
    u = one.user.info(uid)
    assert (u.GID, u.AUTH_DRIVER) == (gid, "core")
    c.ok("oneuser", "passwd", "cli-bob", "pw2")
    c.ok("onevm", "list", "--user", "cli-bob", "--password", "pw2")
    assert c.run("onevm", "list", "--user", "cli-bob", "--password", "pw1").rc == 255
    c.ok("oneuser", "chgrp", uid, "users")
    assert one.user.info(uid).GID == 1
    c.ok("oneuser", "addgroup", uid, gid)
    assert gid in one.user.info(uid).GROUPS.ID
    c.ok("oneuser", "delgroup", uid, gid)
    assert gid not in one.user.info(uid).GROUPS.ID
    c.ok("oneuser", "disable", uid)
    assert one.user.info(uid).ENABLED == 0
    c.ok("oneuser", "enable", uid)
    q = cloud.files / "quota.tmpl"
    q.write_text('VM=[VMS="3", CPU="2", MEMORY="1024"]\n')
    c.ok("oneuser", "quota", uid, q)
    u = doc(cloud.oned, "one.user.info", uid)
    assert [u.findtext(f"VM_QUOTA/VM/{k}") for k in ("VMS", "CPU", "MEMORY")] == ["3", "2", "1024"]
    assert "  0 /   3" in c.ok("oneuser", "list")
    q.write_text('VM=[VMS="20"]\n')
    c.ok("oneuser", "defaultquota", q)
    assert doc(cloud.oned, "one.userquota.info").findtext("VM_QUOTA/VM/VMS") == "20"
    q.write_text('VM=[VMS="-2"]\n')
    c.ok("oneuser", "defaultquota", q)
    f = cloud.files / "user.tmpl"
    f.write_text('SSH_PUBLIC_KEY="ssh-ed25519 AAAA"\n')
    c.ok("oneuser", "update", uid, f)
    assert one.user.info(uid).TEMPLATE["SSH_PUBLIC_KEY"] == "ssh-ed25519 AAAA"
    shown = c.ok("oneuser", "show", "cli-bob")
    assert f"USER {uid} INFORMATION" in shown and "VMS USAGE & QUOTAS" in shown
    # Groups.
    c.ok("oneuser", "chgrp", uid, "cli-devs")
    c.ok("onegroup", "addadmin", gid, uid)
    assert one.group.info(gid).ADMINS.ID == [uid]
    c.ok("onegroup", "deladmin", "cli-devs", "cli-bob")
    q.write_text('VM=[VMS="7"]\n')
    c.ok("onegroup", "quota", gid, q)
    assert doc(cloud.oned, "one.group.info", gid).findtext("VM_QUOTA/VM/VMS") == "7"
    q.write_text('VM=[VMS="-2"]\n')
    c.ok("onegroup", "defaultquota", q)
    f.write_text('INFO="devs"\n')
    c.ok("onegroup", "update", gid, f)
    assert "cli-devs" in c.ok("onegroup", "list")
    assert "GROUP TEMPLATE" in c.ok("onegroup", "show", gid)
    c.ok("oneuser", "delete", "cli-bob")
    c.ok("onegroup", "delete", "cli-devs")


def test_oneuser_login_and_tokens(cloud):
    c, one = cloud.cli, cloud.one
    uid = c.new_id("oneuser", "create", "cli-tok", "tokpw")
    auth = cloud.files / "tok_auth"
    env = {"ONE_AUTH": str(auth)}
    out = c.ok("oneuser", "login", "cli-tok", "--password", "tokpw", "--time", "600", env=env)
    token = re.search(r"cli-tok:(\S+)", out).group(1)
    assert auth.read_text() == f"cli-tok:{token}" and (auth.stat().st_mode & 0o777) == 0o600
    # The stored token works as a session.
    assert "cli-tok" in c.ok("oneuser", "show", env=env)
    # An existing file is only replaced with --force.
    out = c.ok("oneuser", "login", "cli-tok", "--password", "tokpw", env=env)
    assert "use --force to overwrite" in out and auth.read_text() == f"cli-tok:{token}"
    out = c.ok("oneuser", "login", "cli-tok", "--password", "tokpw", "--force", env=env)
    token2 = re.search(r"cli-tok:(\S+)", out).group(1)
    assert auth.read_text() == f"cli-tok:{token2}"
    def tokens():
        return {t.text for t in doc(cloud.oned, "one.user.info", uid).findall("LOGIN_TOKEN/TOKEN")}

    # (The refused overwrite still created a token, as OpenNebula's CLI does.)
    assert {token, token2} <= tokens()
    out = c.ok("oneuser", "token-set", "--token", token[:6], env=env)
    m = re.fullmatch(r"export ONE_AUTH=(\S+)\n", out)
    assert m and Path(m.group(1)).read_text() == f"cli-tok:{token}"
    c.ok("oneuser", "token-delete", token[:8], env=env)
    assert token not in tokens() and token2 in tokens()
    c.ok("oneuser", "token-delete-all", "cli-tok")
    assert tokens() == set()
    c.ok("oneuser", "delete", uid)


def test_onecluster_verbs(cloud):
    c, one = cloud.cli, cloud.one
    cid = c.new_id("onecluster", "create", "cli-cl")
    hid = c.new_id("onehost", "create", "cli-clh", "-i", "dummy", "-v", "dummy")
    c.ok("onecluster", "addhost", "cli-cl", "cli-clh")
    assert one.host.info(hid).CLUSTER_ID == cid
    c.ok("onecluster", "adddatastore", cid, "default")
    c.ok("onecluster", "addvnet", cid, "cli-net")
    cl = one.cluster.info(cid)
    assert hid in cl.HOSTS.ID and 1 in cl.DATASTORES.ID and cloud.net in cl.VNETS.ID
    shown = c.ok("onecluster", "show", "cli-cl")
    assert "CLUSTER RESOURCES" in shown and "TOTAL CPUs: 8" in shown
    c.ok("onecluster", "delhost", cid, hid)
    c.ok("onecluster", "deldatastore", cid, 1)
    c.ok("onecluster", "delvnet", cid, "cli-net")
    f = cloud.files / "cl.tmpl"
    f.write_text('RESERVED_CPU="10"\n')
    c.ok("onecluster", "update", cid, f)
    assert one.cluster.info(cid).TEMPLATE["RESERVED_CPU"] == "10"
    c.ok("onecluster", "rename", cid, "cli-cl2")
    c.ok("onehost", "delete", hid)
    c.ok("onecluster", "delete", "cli-cl2")


def test_oneacl_verbs(cloud):
    c, one = cloud.cli, cloud.one
    rid = c.new_id("oneacl", "create", "@1 HOST/#0 USE")
    rid2 = c.new_id("oneacl", "create", "#5", "IMAGE+TEMPLATE/@1", "USE+MANAGE", "*")
    rules = {r.ID: r.STRING for r in one.acl.info().ACL}
    assert rules[rid] == "@1 HOST/#0 USE #0" and rules[rid2] == "#5 IMAGE+TEMPLATE/@1 USE+MANAGE *"
    listed = c.ok("oneacl", "list")
    assert re.search(rf"^\s+{rid2}\s+#5\s+---I-T-+\s+@1\s+um--\s+\*$", listed, re.M), listed
    r = c.fail("oneacl", "create", "@1 NOPE/* USE")
    assert "ACL rule" in r.err
    c.ok("oneacl", "delete", f"{rid},{rid2}")
    assert rid not in {r.ID for r in one.acl.info().ACL}


def test_onesecgroup_verbs(cloud):
    c, one = cloud.cli, cloud.one

    def sg(i):
        return doc(cloud.oned, "one.secgroup.info", i)

    f = cloud.files / "sg.tmpl"
    f.write_text('NAME="cli-sg"\nDESCRIPTION="web servers"\n'
                 'RULE=[PROTOCOL="TCP", RULE_TYPE="inbound", RANGE="80,443"]\n'
                 'RULE=[PROTOCOL="ICMP", RULE_TYPE="inbound", ICMP_TYPE="8"]\n'
                 f'RULE=[PROTOCOL="ALL", RULE_TYPE="outbound", NETWORK_ID="{cloud.net}"]\n')
    sid = c.new_id("onesecgroup", "create", f)
    d = sg(sid)
    assert d.findtext("NAME") == "cli-sg" and len(d.findall("TEMPLATE/RULE")) == 3
    out = c.ok("onesecgroup", "show", "cli-sg")
    assert out.startswith(f"SECURITY GROUP {sid} INFORMATION")
    rules = out.split("RULES")[1].split("TEMPLATE CONTENTS")[0].splitlines()
    assert re.match(r"TYPE\s+PROTOCOL\s+ICMP_TYPE\s+ICMVP6_TYPE\s+NETWORK\s+RANGE", rules[1])
    assert re.match(r"inbound\s+TCP\s+Any\s+80,443", rules[2]), rules
    assert re.match(r"inbound\s+ICMP\s+8\s+Any", rules[3]), rules
    assert re.match(rf"outbound\s+ALL\s+VNet {cloud.net}", rules[4]), rules
    contents = out.split("TEMPLATE CONTENTS")[1]
    assert 'DESCRIPTION="web servers"' in contents and "RULE" not in contents
    out = c.ok("onesecgroup", "list", "--list", "ID,NAME,UPDATED", "--filter", "NAME=cli-sg",
               "--no-header")
    assert out.split() == [str(sid), "cli-sg", "0"]
    assert re.match(r"\s*ID\s+USER\s+GROUP\s+NAME\s+UPDATED\s+OUTDATED\s+ERROR\n",
                    c.ok("onesecgroup", "list"))
    # update replaces (the rules with it), --append merges.
    g = cloud.files / "sg2.tmpl"
    g.write_text('DESCRIPTION="dns"\nRULE=[PROTOCOL="UDP", RULE_TYPE="inbound", RANGE="53"]\n')
    c.ok("onesecgroup", "update", sid, g)
    d = sg(sid)
    assert [r.findtext("RANGE") for r in d.findall("TEMPLATE/RULE")] == ["53"]
    g.write_text('OWNER_NOTE="ops"\n')
    c.ok("onesecgroup", "update", sid, g, "--append")
    assert sg(sid).findtext("TEMPLATE/OWNER_NOTE") == "ops"
    assert sg(sid).findtext("TEMPLATE/DESCRIPTION") == "dns"
    c.ok("onesecgroup", "rename", sid, "cli-sg2")
    assert sg(sid).findtext("NAME") == "cli-sg2"
    clone = c.new_id("onesecgroup", "clone", "cli-sg2", "cli-sg-copy")
    assert sg(clone).findtext("NAME") == "cli-sg-copy"
    assert sg(clone).findtext("TEMPLATE/RULE/RANGE") == "53"
    c.ok("onesecgroup", "chmod", f"{sid},{clone}", "640")
    assert sg(sid).findtext("PERMISSIONS/GROUP_U") == "1"
    assert sg(clone).findtext("PERMISSIONS/OTHER_U") == "0"
    c.ok("onesecgroup", "chgrp", sid, "users")
    assert sg(sid).findtext("GID") == "1"
    uid = c.new_id("oneuser", "create", "cli-sg-owner", "pw")
    c.ok("onesecgroup", "chown", sid, "cli-sg-owner", "oneadmin")
    assert (sg(sid).findtext("UID"), sg(sid).findtext("GID")) == (str(uid), "0")
    # commit: a VM using the group has its rules made again (a VM on no host: at once).
    vid = c.new_id("onevm", "create", "--name", "cli-sg-vm", "--cpu", "0.1", "--memory", "32",
                   "--nic", f"cli-net:SECURITY_GROUPS={sid}", "--hold")
    wait_for("VM in the group", lambda: sg(sid).findtext("UPDATED_VMS/ID") == str(vid))
    c.ok("onesecgroup", "commit", sid)
    wait_for("VM updated again", lambda: sg(sid).findtext("UPDATED_VMS/ID") == str(vid)
             and sg(sid).find("OUTDATED_VMS/ID") is None)
    c.ok("onesecgroup", "commit", "cli-sg2", "--recover")
    shown = c.ok("onesecgroup", "show", sid)
    assert re.search(rf"^UPDATED\s+: {vid}\b", shown, re.M), shown
    # Failures as OpenNebula prints them.
    r = c.fail("onesecgroup", "show", "no-such-sg")
    assert r.err.strip() == "SECURITY_GROUP named no-such-sg not found."
    r = c.fail("onesecgroup", "commit", 999999)
    assert r.err.startswith("[one.secgroup.commit]"), r.err
    c.ok("onevm", "recover", vid, "--delete")
    c.ok("onesecgroup", "delete", f"{clone},cli-sg2")
    ids = {int(e.text) for e in doc(cloud.oned, "one.secgrouppool.info", -2, -1, -1)
           .findall("SECURITY_GROUP/ID")}
    assert sid not in ids and clone not in ids
    c.ok("oneuser", "delete", uid)


def test_onehook_verbs(cloud):
    c, one = cloud.cli, cloud.one
    f = cloud.files / "hook.tmpl"
    f.write_text('NAME="cli-hook"\nTYPE="api"\nCOMMAND="/bin/true"\nCALL="one.image.rename"\n')
    hid = c.new_id("onehook", "create", f)
    assert one.hook.info(hid).TYPE == "api"
    c.ok("onehook", "rename", hid, "cli-hook2")
    f.write_text('NAME="cli-hook2"\nTYPE="api"\nCOMMAND="/bin/false"\nCALL="one.image.rename"\n')
    c.ok("onehook", "update", "cli-hook2", f)
    assert one.hook.info(hid).TEMPLATE["COMMAND"] == "/bin/false"
    c.ok("onehook", "lock", hid)
    c.ok("onehook", "unlock", hid)
    assert "cli-hook2" in c.ok("onehook", "list")
    assert "HOOK TEMPLATE" in c.ok("onehook", "show", hid)
    c.ok("onehook", "delete", hid)


# ------------------------------------------------------------------------------------------
# Output formats


def test_json_xml_yaml_parse(cloud):
    c = cloud.cli
    vid = c.new_id("onevm", "create", "--name", "cli-fmt", "--cpu", "0.1", "--memory", "32",
                   "--disk", "cli-blk", "--nic", "cli-net")
    cases = [
        ("onevm", ["show", vid], "VM"),
        ("onevm", ["list"], "VM_POOL"),
        ("onehost", ["show", cloud.h1], "HOST"),
        ("onehost", ["list"], "HOST_POOL"),
        ("oneimage", ["show", cloud.blk], "IMAGE"),
        ("oneimage", ["list"], "IMAGE_POOL"),
        ("onevnet", ["show", cloud.net], "VNET"),
        ("onevnet", ["list"], "VNET_POOL"),
        ("onedatastore", ["show", 0], "DATASTORE"),
        ("onedatastore", ["list"], "DATASTORE_POOL"),
        ("oneuser", ["show", 0], "USER"),
        ("oneuser", ["list"], "USER_POOL"),
        ("onegroup", ["show", 0], "GROUP"),
        ("onegroup", ["list"], "GROUP_POOL"),
        ("onecluster", ["show", 0], "CLUSTER"),
        ("onecluster", ["list"], "CLUSTER_POOL"),
        ("oneacl", ["list"], "ACL_POOL"),
        ("onetemplate", ["list"], "VMTEMPLATE_POOL"),
        ("onehook", ["list"], "HOOK_POOL"),
        ("onesecgroup", ["show", 0], "SECURITY_GROUP"),
        ("onesecgroup", ["list"], "SECURITY_GROUP_POOL"),
    ]
    for tool, args, root in cases:
        x = ET.fromstring(c.ok(tool, *args, "-x"))
        assert x.tag == root, (tool, args)
        j = json.loads(c.ok(tool, *args, "--json"))
        assert list(j) == [root], (tool, args)
        y = yaml.safe_load(c.ok(tool, *args, "-y"))
        assert y == j, (tool, args)
    # As the Ruby CLI: strings everywhere, XSD-repeatable elements as arrays even alone.
    vm = json.loads(c.ok("onevm", "show", vid, "-j"))["VM"]
    assert vm["ID"] == str(vid) and vm["NAME"] == "cli-fmt"
    assert isinstance(vm["TEMPLATE"]["DISK"], list) and vm["TEMPLATE"]["DISK"][0]["IMAGE"] == "cli-blk"
    assert isinstance(vm["TEMPLATE"]["NIC"], list)
    pool = json.loads(c.ok("onevm", "list", "-j"))["VM_POOL"]
    assert isinstance(pool["VM"], list) and str(vid) in [v["ID"] for v in pool["VM"]]
    ext = json.loads(c.ok("onevm", "list", "-j", "--extended"))["VM_POOL"]
    assert "PERMISSIONS" in ext["VM"][0]
    c.ok("onevm", "terminate", vid)


def test_list_options(cloud):
    c = cloud.cli
    ids = [c.new_id("onevm", "create", "--name", f"cli-lst-{i}", "--cpu", "0.1", "--memory", "32",
                    "--hold") for i in range(3)]
    out = c.ok("onevm", "list", "--list", "ID,NAME,STAT", "--filter", "NAME~cli-lst", "--no-header")
    rows = [l.split() for l in out.splitlines()]
    # Newest first, as OpenNebula's CLI shows them.
    assert rows == [[str(i), f"cli-lst-{n}", "hold"] for n, i in reversed(list(enumerate(ids)))]
    out = c.ok("onevm", "list", "-l", "ID,NAME", "-f", f"NAME=cli-lst-1", "--csv")
    assert out == f"ID,NAME\n{ids[1]},cli-lst-1\n"
    out = c.ok("onevm", "list", "--filter", f"ID={ids[0]},ID={ids[2]}", "--operator", "OR", "--no-header")
    assert len(out.splitlines()) == 2
    r = c.fail("onevm", "list", "--list", "ID,NOPE")
    assert r.err.strip() == "Column NOPE not defined."
    assert "ONE identifier for Virtual Machine" in c.ok("onevm", "list", "--describe")
    # Filter flags: mine, and another user's (none).
    assert f"cli-lst-0" in c.ok("onevm", "list", "mine")
    assert c.ok("onevm", "list", "serveradmin", "--no-header") == ""
    c.ok("onevm", "terminate", f"{ids[0]}..{ids[2]}")


# ------------------------------------------------------------------------------------------
# Errors


def test_errors_missing_refused_unauthorized(cloud, make_user_shared):
    c = cloud.cli
    r = c.fail("onevm", "show", 99999)
    assert r.err == "[one.vm.info] Error getting virtual machine [99999].\n"
    r = c.fail("onehost", "show", "no-such-host")
    assert r.err == "HOST named no-such-host not found.\n"
    r = c.fail("oneimage", "delete", 99999)
    assert r.err.startswith("[one.image.delete]")
    # A refused action: resume a pending VM.
    vid = c.new_id("onevm", "create", "--name", "cli-err", "--cpu", "0.1", "--memory", "32")
    r = c.fail("onevm", "resume", vid)
    assert r.err.startswith('[one.vm.action] Error performing action "resume"'), r.err
    # Several VMs: each failure is printed and the others still happen.
    vid2 = c.new_id("onevm", "create", "--name", "cli-err2", "--cpu", "0.1", "--memory", "32")
    r = c.fail("onevm", "hold", f"{vid},99998,{vid2}")
    assert r.err.count("\n") == 1 and "[99998]" in r.err
    assert cloud.one.vm.info(vid2).STATE == HOLD
    # A user without permission.
    make_user_shared("cli-carol", "pw-carol")
    auth = {"--user": "cli-carol", "--password": "pw-carol"}
    args = [x for kv in auth.items() for x in kv]
    r = c.fail("onevm", "show", vid, *args)
    assert r.err.startswith("[one.vm.info] User [") and "Not authorized" in r.err, r.err
    r = c.fail("onehost", "delete", cloud.h1, *args)
    assert "[one.host.delete]" in r.err and "Not authorized" in r.err
    r = c.fail("onevm", "list", "--user", "cli-carol", "--password", "wrong")
    assert "User couldn't be authenticated" in r.err
    # No credentials at all.
    r = c.fail("onevm", "list", env={"ONE_AUTH": str(cloud.files / "missing")})
    assert "missing" in r.err
    c.ok("onevm", "terminate", f"{vid},{vid2}")


# ------------------------------------------------------------------------------------------
# Snapshots of list and show (a fresh oned, so ids and names are always the same)


_MASKS = [
    (re.compile(r"\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\]"), "[DATE]"),
    (re.compile(r"\d\d/\d\d \d\d:\d\d:\d\d"), "MM/DD hh:mm:ss"),
    (re.compile(r"\d\d/\d\d \d\d:\d\d"), "MM/DD hh:mm"),
    (re.compile(r"(\d+)d (\d\d)h(\d\d)m?"), lambda m: re.sub(r"\d", "0", m.group(0))),
    (re.compile(r"(\d+)h(\d\d)m(\d\d)s"), lambda m: re.sub(r"\d", "0", m.group(0))),
]


def mask(text: str, extra: dict[str, str]) -> str:
    for k, v in extra.items():
        text = text.replace(k, v)
    for rx, repl in _MASKS:
        text = rx.sub(repl, text)
    return text


def snapshot(name: str, text: str):
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("ONE_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"missing snapshot {path} (ONE_UPDATE_SNAPSHOTS=1 writes it)"
    expected = path.read_text()
    assert text == expected, f"{name} differs from {path}:\n--- got ---\n{text}\n--- expected ---\n{expected}"


def test_list_and_show_snapshots(oned_factory, tmp_path):
    oned = oned_factory("snap")
    c = Cli(oned, tmp_path / "home")
    one = oned.client()
    c.ok("onehost", "create", "snap-h1", "-i", "dummy", "-v", "dummy")
    c.ok("onehost", "create", "snap-h2", "-i", "dummy", "-v", "dummy")
    wait_for("hosts monitored", lambda: all(h.STATE == 2 for h in one.hostpool.info().HOST))
    c.ok("oneimage", "create", "-d", "default", "--name", "snap-disk", "--size", "2048",
         "--type", "DATABLOCK")
    net = tmp_path / "net.tmpl"
    net.write_text('NAME="snap-net"\nVN_MAD="dummy"\nBRIDGE="br-snap"\nDNS="10.1.0.1"\n'
                   'AR=[TYPE="IP4", IP="10.1.0.10", SIZE="16"]\n')
    c.ok("onevnet", "create", net)
    c.ok("onetemplate", "create", "--name", "snap-tmpl", "--cpu", "0.5", "--memory", "768",
         "--disk", "snap-disk", "--nic", "snap-net")
    c.ok("onetemplate", "instantiate", "snap-tmpl", "--name", "snap-vm-%i", "--multiple", "2")
    c.ok("onevm", "create", "--name", "snap-hold", "--cpu", "2", "--memory", "4g", "--hold")
    # The VMs wait (CLONING) for the disk's copy from the datastore, then are PENDING.
    for v in (0, 1):
        wait_state(one, v, PENDING)
    c.ok("onevm", "deploy", "snap-vm-0", "snap-h1")
    wait_state(one, 0, ACTIVE, RUNNING)
    c.ok("oneacl", "create", "@1 IMAGE/#0 USE")
    extra = {str(oned.data_dir): "DATA_DIR"}
    for name, tool, args in [
        ("onevm_list", "onevm", ["list"]),
        ("onevm_list_ip", "onevm", ["list", "--list", "ID,NAME,IP,STAT"]),
        ("onevm_show_pending", "onevm", ["show", "snap-vm-1"]),
        ("onevm_show_hold", "onevm", ["show", "snap-hold"]),
        ("onehost_list", "onehost", ["list"]),
        ("oneimage_list", "oneimage", ["list"]),
        ("onetemplate_list", "onetemplate", ["list"]),
        ("onetemplate_show", "onetemplate", ["show", "snap-tmpl"]),
        ("onevnet_list", "onevnet", ["list"]),
        ("onevnet_show", "onevnet", ["show", "snap-net"]),
        ("onegroup_list", "onegroup", ["list"]),
        ("onecluster_list", "onecluster", ["list"]),
        ("oneacl_list", "oneacl", ["list"]),
    ]:
        snapshot(name, mask(c.ok(tool, *args), extra))


def test_the_cli_examples_of_the_documentation(oned, tmp_path):
    """README.md "Command-line tools" and docs/cli.md's examples, as typed (with this test's
    endpoint; `$PWD/var` is a clone whose var/ is this oned's data directory)."""
    from doc_examples import doc_example, localize, run_sh

    bindir = Path(cli_bin("onevm")).parent
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "var").symlink_to(oned.data_dir)
    env = {"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(tmp_path),
           "NO_COLOR": "1", "TZ": "UTC"}

    r = run_sh(localize(doc_example("README.md", "cli").text, endpoint=oned.endpoint),
               env=env, cwd=clone)
    one = oned.client()
    assert [h.NAME for h in one.hostpool.info().HOST] == ["h1"]
    vms = one.vmpool.info(-2, -1, -1, -1).VM
    assert sorted(v.NAME for v in vms) == ["web-0", "web-1", "web-2"]
    shown = json.loads(r.stdout[r.stdout.index("{"):])
    assert shown["VM"]["NAME"] == "web-1"

    r = run_sh(localize(doc_example("docs/cli.md", "endpoint").text, endpoint=oned.endpoint),
               env=env, cwd=clone)
    assert "oneadmin" in r.stdout and "h1" in r.stdout

    gen = tmp_path / "gen"
    run_sh(localize(doc_example("docs/cli.md", "gen").text).replace("/tmp/one-cli", str(gen)),
           env=env)
    assert (gen / "completions").is_dir() and any((gen / "completions").iterdir())
    assert (gen / "man" / "onevm.1").is_file()
