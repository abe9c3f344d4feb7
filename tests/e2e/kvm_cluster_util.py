"""Helpers for tests/e2e/test_kvm_cluster.py: one oned driving two REAL hypervisor hosts over
SSH, each a network namespace with its own sshd and its own libvirtd
(tests/hostenv/netns-host.sh --libvirtd), sharing the system datastore directory (the
namespaces share the file system).

    cluster = KvmCluster(kvm_env, "name")    # oned + hosts A and B, both MONITORED
    vid = cluster.one.vm.allocate(cluster.guest_template("x"))
    cluster.one.vm.deploy(vid, cluster.a.hid, False, 0)
    cluster.wait_vm(vid, RUNNING); cluster.a.domstate(cluster.domain(vid))
    cluster.close(failed)                     # always: domains, daemons, namespaces, files

Isolation from parallel tests: the data dir (so datastores/0, the shared system datastore)
is under /var/tmp/one-kvm-cluster/<tag>/ with mode 0755 (QEMU runs as libvirt-qemu and must
reach the files); domains are `<tag prefix><vm id>`; the hosts' subnet 10.77.N.0/24 and bridge
`onekcN` are not used by test_hosts_ssh.py (10.231.*), node-agent/tests/migrate.rs (10.78.*)
or kvm_util.NetnsHost (10.100-249.*); VNC ports start at a random base.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness import Oned, parse_xml, wait_for
from kvm_util import CloudView, KvmEnv, run

REPO = Path(__file__).resolve().parents[2]
NETNS_HOST = REPO / "tests" / "hostenv" / "netns-host.sh"
BASE = Path("/var/tmp/one-kvm-cluster")

# OpenNebula's numbers (proto/src/state.rs).
HOST_MONITORED, HOST_ERROR = 2, 3
VM_PENDING, VM_ACTIVE, VM_DONE, VM_POWEROFF = 1, 3, 6, 8
LCM_RUNNING, LCM_UNKNOWN = 3, 16
RUNNING = (VM_ACTIVE, LCM_RUNNING)
UNKNOWN = (VM_ACTIVE, LCM_UNKNOWN)


def hostenv_skip_reason() -> str | None:
    """Why two namespace hosts with their own libvirtd cannot be made here, or None."""
    if os.geteuid() != 0:
        return "not root (network namespaces, sshd and libvirtd need it)"
    if not shutil.which("ip") or subprocess.run(["ip", "netns", "list"], capture_output=True).returncode:
        return "`ip netns` is not available"
    if not Path("/usr/sbin/sshd").exists():
        return "no /usr/sbin/sshd (scripts/install-deps.sh installs openssh-server)"
    if not shutil.which("libvirtd") or not shutil.which("virtlogd"):
        return "no libvirtd/virtlogd binary (scripts/install-deps.sh)"
    return None


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children first found by /proc's ppid)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        k, _, v = line.partition("=")
        env[k] = v.strip().strip("'\"")
    return env


class LibvirtHost:
    """A namespace host with its own sshd (oned's key authorized) and its own libvirtd."""

    def __init__(self, name: str, ip: str, bridge: str, dir: Path, port: int = 22):
        assert len(name) <= 11, name
        self.name, self.ip, self.bridge, self.dir, self.port = name, ip, bridge, dir, port
        self.uri = f"qemu+tcp://{ip}/system"
        self.hid = -1
        self.env: dict[str, str] = {}
        # `DIR=SRC`: the host sees SRC at DIR (its own disk at a path the frontend uses too).
        self.privates: list[str] = []

    def up(self, authorized_keys: Path) -> "LibvirtHost":
        r = run([str(NETNS_HOST), "up", self.name, "--dir", str(self.dir), "--ip", f"{self.ip}/24",
                 "--bridge", self.bridge, "--port", str(self.port), "--authorized-keys", str(authorized_keys),
                 "--libvirtd", *[a for p in self.privates for a in ("--private", p)]],
                timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"netns-host.sh up {self.name}: {(r.stderr or r.stdout).strip()[-800:]}")
        self.env = _env_file(self.dir / "host.env")
        return self

    def down(self):
        # `down` destroys the host's domains through its libvirtd, then stops the daemons.
        run([str(NETNS_HOST), "down", self.name, "--dir", str(self.dir), "--bridge", self.bridge],
            timeout=120)

    def virsh(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return run(["virsh", "-q", "-c", self.uri, *args], timeout=timeout)

    def domstate(self, dom: str) -> str | None:
        """`running`, `shut off`, ... or None when this host's libvirtd has no such domain."""
        r = self.virsh("domstate", dom)
        return r.stdout.strip() if r.returncode == 0 else None

    def domuuid(self, dom: str) -> str | None:
        r = self.virsh("domuuid", dom)
        return r.stdout.strip() if r.returncode == 0 else None

    def domains(self, prefix: str) -> list[str]:
        return [n for n in self.virsh("list", "--all", "--name").stdout.split() if n.startswith(prefix)]

    def sshd_pid(self) -> int | None:
        try:
            pid = int((self.dir / "sshd.pid").read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def lose(self) -> list[int]:
        """The host drops off the network for oned: its sshd and every SSH session below it
        (the agent oned started there) are killed; its libvirtd and domains keep running, as
        on a host whose management path died. Returns the killed pids."""
        pid = self.sshd_pid()
        if pid is None:
            return []
        victims = [pid, *descendants(pid)]
        for p in victims:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return victims


class KvmCluster(CloudView):
    """oned with two kvm hosts A and B over SSH, both MONITORED."""

    def __init__(self, env: KvmEnv, name: str, recovery: dict | None = None):
        self.env = env
        self.tag = secrets.token_hex(3)
        self.prefix = f"kc{self.tag}-"
        BASE.mkdir(parents=True, exist_ok=True)
        self.dir = BASE / f"{name}-{self.tag}"
        self.dir.mkdir()
        for d in (BASE, self.dir):
            os.chmod(d, 0o755)
        n = os.getpid() % 100 + 120
        self.bridge = f"onekc{n}"
        self.a = LibvirtHost(f"kca{n}", f"10.77.{n}.2", self.bridge, self.dir / "host-a")
        # B's sshd on another port: oned must follow the host's SSH_PORT.
        self.b = LibvirtHost(f"kcb{n}", f"10.77.{n}.3", self.bridge, self.dir / "host-b", port=2222)
        self.hosts: list[LibvirtHost] = []
        self.remote_agent = self.dir / "remote" / "one-node-agent"
        self.fence_marker = self.dir / "fence.calls"
        hosts = {
            "agent_path": f'"{env.agent}"',
            "remote_agent_path": f'"{self.remote_agent}"',
            "accept_new_host_keys": "true",
            "domain_prefix": f'"{self.prefix}"',
            "domain_type": '"qemu"',  # KVM guests are unusably slow here (nested virtualisation)
            "vnc_port_start": str(random.randrange(10000, 32000, 100)),
            "ssh_connect_timeout_seconds": "2.0",
            "reconnect_initial_seconds": "1.0",
            "reconnect_max_seconds": "2.0",
            "error_after_seconds": "1.0",
            "host_usage_seconds": "1.0",
            "vm_usage_seconds": "1.0",
            "vm_state_seconds": "0.5",
            "vm_state_sync_seconds": "5.0",
            "keepalive_interval_seconds": "1.0",
            "keepalive_timeout_seconds": "4.0",
        }
        rec = {"check_interval_seconds": "0.3", "fence_timeout_seconds": "30.0"}
        rec.update({k: str(v) for k, v in (recovery or {}).items()})
        text = (
            'log_level = "info,oned::hostmgr=debug,oned::recovery=debug"\n'
            "[lcm]\nshutdown_timeout_seconds = 20\ndriver_timeout_seconds = 120\n"
            "[hosts]\n" + "".join(f"{k} = {v}\n" for k, v in hosts.items())
            + "[recovery]\n" + "".join(f"{k} = {v}\n" for k, v in rec.items())
        )
        cfg = self.dir / "oned.toml"
        cfg.write_text(text)
        self.oned = Oned(self.dir / "one", extra_args=["--config", str(cfg)])
        self.oned.start()
        self.one = self.oned.client()
        self.ds_dir = self.oned.data_dir / "datastores" / "0"

    def add_hosts(self):
        """Both namespace hosts up (oned's key authorized), allocated as kvm hosts with
        MIGRATE_URI naming their own libvirtd, and MONITORED."""
        pub = self.oned.data_dir / "ssh" / "id_ed25519.pub"
        wait_for("oned's key pair", pub.is_file, timeout=10)
        for h in (self.a, self.b):
            self.hosts.append(h)
            h.up(pub)
        for h in (self.a, self.b):
            h.hid = self.one.host.allocate(h.ip, "kvm", "kvm", -1)
            # Live migrations reach the destination's own libvirtd over TCP (the agent's
            # default is qemu+ssh to the host's name).
            self.one.host.update(h.hid, f'MIGRATE_URI="{h.uri}"\nSSH_PORT="{h.port}"', 1)
        for h in (self.a, self.b):
            wait_for(f"host {h.name} MONITORED", lambda h=h: self.host_state(h.hid) == HOST_MONITORED,
                     timeout=90)

    # -- oned's view ----------------------------------------------------------------------

    def guest_template(self, name: str, memory: int = 96, heartbeat: int = 0, disk_mb: int = 0) -> str:
        """The test guest; `heartbeat` > 0: a CONTEXT CD that makes it print ONE-GUEST-ALIVE
        SEQ=n BLOCK=... every `heartbeat` seconds (shows from outside that it keeps running);
        `disk_mb` > 0: a volatile qcow2 disk (vda) in the VM's directory."""
        g = self.env.guest
        return (
            f'NAME="{name}"\nCPU="0.1"\nVCPU="1"\nMEMORY="{memory}"\n'
            f'OS=[KERNEL="{g.kernel}", INITRD="{g.initrd}", KERNEL_CMD="{g.cmdline}"]\n'
            'GRAPHICS=[TYPE="VNC", LISTEN="127.0.0.1"]\n'
            + (f'CONTEXT=[ONE_GUEST_HEARTBEAT="{heartbeat}"]\n' if heartbeat else "")
            + (f'DISK=[TYPE="fs", SIZE="{disk_mb}", FORMAT="qcow2", DEV_PREFIX="vd"]\n' if disk_mb else "")
        )

    def history_hosts(self, vid: int) -> list[int]:
        """HID of each HISTORY record, oldest first."""
        return [int(h.findtext("HID")) for h in self.vm_xml(vid).findall("HISTORY_RECORDS/HISTORY")]

    def vm_dir(self, vid: int) -> Path:
        return self.ds_dir / str(vid)

    def fence_script(self) -> Path:
        """A fence command for this cloud's hosts: records its call, then powers off (virsh
        destroy) every domain of this cloud on the fenced host's libvirtd, reached over TCP
        by the host's name (its address here), as an out-of-band power switch would."""
        script = self.dir / "fence.sh"
        script.write_text(
            "#!/bin/sh\n"
            "# args: HOST_ID HOST_NAME (also in the environment)\n"
            f'echo "$HOST_ID $HOST_NAME $*" >> {self.fence_marker}\n'
            'uri="qemu+tcp://$HOST_NAME/system"\n'
            'for d in $(virsh -q -c "$uri" list --name); do\n'
            f'  case "$d" in {self.prefix}*) virsh -q -c "$uri" destroy "$d" || exit 1 ;; esac\n'
            "done\n"
            "exit 0\n"
        )
        script.chmod(0o755)
        return script

    def recovery_records(self, host_id: int = -1) -> list[dict]:
        root = parse_xml(self.oned.admin_xml("one.hostrecovery.info", host_id))
        assert root.tag == "HOST_RECOVERY_POOL"
        out = []
        for r in root.findall("RECOVERY_RECORD"):
            d = {c.tag: c.text or "" for c in r}
            for k in ("ID", "HOST_ID", "VM_ID", "TIMESTAMP"):
                d[k] = int(d[k])
            out.append(d)
        return out

    # -- teardown ---------------------------------------------------------------------------

    def agent_pids(self) -> list[int]:
        """Agents started from this cloud's remote path (only this test's processes)."""
        pids = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                argv0 = (d / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if argv0 == str(self.remote_agent).encode():
                pids.append(int(d.name))
        return pids

    def close(self, failed: bool):
        died = self.oned.died_unexpectedly()
        self.oned.stop()
        print(f"\n===== {self.oned!r}\n{self.oned.logs(tail=150)}")
        # oned's sessions are closed: the agents get EOF and exit; any that does not is ours.
        deadline = time.monotonic() + 5
        while self.agent_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in self.agent_pids():
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Both at once: each waits for its libvirtd to exit.
        downs = [threading.Thread(target=h.down) for h in self.hosts]
        for t in downs:
            t.start()
        for t in downs:
            t.join()
        if failed or died:
            print(f"kept {self.dir} for inspection")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if died:
            pytest.fail(f"oned died during the tests\n{self.oned.logs()}", pytrace=False)
