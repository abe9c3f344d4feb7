"""Helpers for end-to-end tests on REAL libvirt (the machine's libvirtd, QEMU in software
emulation) with the tiny test guest of tests/guest/build-guest.sh.

    from kvm_util import KvmCloud, kvm_env  # kvm_env: the session fixture (import it)

    def test_x(kvm_env, kvm_cloud):
        cloud = kvm_cloud()                      # an oned of its own, see KvmCloud
        hid = cloud.add_localhost()              # MONITORED kvm host through the local pipe
        vid = cloud.one.vm.allocate(cloud.guest_template("x"))

Every cloud is isolated from parallel tests and from other clouds on this libvirtd:
* its data directory (and so its system datastore, datastores/0) is under
  /var/tmp/one-kvm-e2e/<unique>/ with mode 0755 - QEMU runs as libvirt-qemu and must
  reach the files (pytest's tmp_path is under a 0700 directory);
* its domains are named `<unique prefix><vm id>` ([hosts] domain_prefix);
* its VNC ports start at a random base ([hosts] vnc_port_start).
At teardown every domain with the cloud's prefix is destroyed, libvirt's per-domain logs
are removed, and the directory is deleted (kept, and its path printed, when the test failed).

Skips (printing "SKIP: reason" as well, so a -s run says why) when not root, when libvirtd
cannot be started or reached, when the agent is not built, or when the guest cannot be
built.
"""

from __future__ import annotations

import os
import random
import secrets
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

import harness
from harness import Oned, oned_binary, parse_xml

REPO = Path(__file__).resolve().parents[2]
GUEST_DIR = Path(os.environ.get("ONE_TEST_GUEST_DIR", "/var/tmp/one-rs-guest"))
BASE = Path("/var/tmp/one-kvm-e2e")
URI = "qemu:///system"

# OpenNebula's numbers (proto/src/state.rs).
HOST_MONITORED, HOST_ERROR = 2, 3
VM_ACTIVE, VM_SUSPENDED, VM_DONE, VM_POWEROFF = 3, 5, 6, 8
LCM_RUNNING, LCM_UNKNOWN = 3, 16


def skip(reason: str):
    print(f"SKIP: {reason}")
    pytest.skip(reason)


def run(cmd: list[str], timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)


def virsh(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return run(["virsh", "-q", "-c", URI, *args], timeout=timeout)


def domstate(name: str) -> str | None:
    """`running`, `paused`, `shut off`, ... or None when libvirt has no such domain."""
    r = virsh("domstate", name)
    return r.stdout.strip() if r.returncode == 0 else None


def domid(name: str) -> str | None:
    """The domain's numeric id: a new QEMU process gets a new one."""
    r = virsh("domid", name)
    return r.stdout.strip() if r.returncode == 0 else None


def domuuid(name: str) -> str | None:
    r = virsh("domuuid", name)
    return r.stdout.strip() if r.returncode == 0 else None


def domains_with_prefix(prefix: str) -> list[str]:
    r = virsh("list", "--all", "--name")
    return [n for n in r.stdout.split() if n.startswith(prefix)]


@dataclass(frozen=True)
class Guest:
    kernel: str
    initrd: str
    cmdline: str


@dataclass(frozen=True)
class KvmEnv:
    guest: Guest
    agent: Path


def wait_for(what, check, timeout=30.0, step=0.1):
    """harness.wait_for with this file's defaults."""
    return harness.wait_for(what, check, timeout, step)


def _guest_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            parts = shlex.split(v)
            env[k] = parts[0] if len(parts) == 1 else " ".join(parts)
    return env


@pytest.fixture(scope="session")
def kvm_env() -> KvmEnv:
    """Checks once per session that real KVM tests can run here, and builds the guest."""
    if os.geteuid() != 0:
        skip("real libvirt tests need root (qemu:///system, the VM files' ownership)")
    if not shutil.which("virsh"):
        skip("virsh is not installed (scripts/install-deps.sh)")
    agent = oned_binary().parent / "one-node-agent"
    if not os.access(agent, os.X_OK):
        skip(f"{agent} is not built (cargo build -p one-node-agent)")
    # Starts libvirtd/virtlogd when they are not running and fixes /dev/kvm's mode (without
    # it every libvirt call re-probes QEMU for seconds: docs/hypervisor-hosts-env.md).
    try:
        r = run([str(REPO / "tests/hostenv/start-libvirtd.sh")], timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        skip(f"cannot start libvirtd: {e}")
    if r.returncode != 0:
        skip(f"cannot start libvirtd: {(r.stderr or r.stdout).strip()[-500:]}")
    if virsh("version").returncode != 0:
        skip(f"libvirtd does not answer at {URI}")
    try:
        r = run([str(REPO / "tests/guest/build-guest.sh"), str(GUEST_DIR)], timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        skip(f"cannot build the test guest: {e}")
    if r.returncode != 0:
        skip(f"cannot build the test guest: {(r.stderr or r.stdout).strip()[-500:]}")
    env = _guest_env(GUEST_DIR / "guest.env")
    guest = Guest(env["GUEST_KERNEL"], env["GUEST_INITRD"], env.get("GUEST_CMDLINE", "console=ttyS0"))
    for f in (guest.kernel, guest.initrd):
        if not os.path.isfile(f):
            skip(f"the guest build did not produce {f}")
    return KvmEnv(guest=guest, agent=agent)


def hosts_config(**over) -> dict[str, str]:
    """[hosts] settings for fast tests (TOML values, already quoted)."""
    c = {
        "domain_type": '"qemu"',  # KVM guests are unusably slow here (nested virtualisation)
        "reconnect_initial_seconds": "2.0",
        "reconnect_max_seconds": "4.0",
        "error_after_seconds": "0.5",
        "host_usage_seconds": "1.0",
        "vm_usage_seconds": "1.0",
        "vm_state_seconds": "0.5",
        "vm_state_sync_seconds": "5.0",
        "keepalive_interval_seconds": "1.0",
        "keepalive_timeout_seconds": "5.0",
    }
    c.update({k: str(v) for k, v in over.items()})
    return c


class CloudView:
    """oned's view of a test cloud's hosts and VMs, and the guests' consoles, for the clouds
    of the real-host tests: the class sets `oned`, `prefix` and `vm_dir(vid)`."""

    oned: Oned
    prefix: str

    def vm_dir(self, vid: int) -> Path:
        raise NotImplementedError

    def host_xml(self, hid: int):
        return parse_xml(self.oned.admin_xml("one.host.info", hid))

    def host_state(self, hid: int) -> int:
        return int(self.host_xml(hid).findtext("STATE"))

    def vm_xml(self, vid: int):
        return parse_xml(self.oned.admin_xml("one.vm.info", vid))

    def vm_state(self, vid: int) -> tuple[int, int]:
        x = self.vm_xml(vid)
        return int(x.findtext("STATE")), int(x.findtext("LCM_STATE"))

    def wait_vm(self, vid: int, state: tuple[int, int] | int, timeout: float = 90.0):
        """Waits for (STATE, LCM_STATE), or STATE alone when an int; fails at once, with the
        VM's error, when it lands in FAILED or a *_FAILURE state instead."""
        want = (lambda s: s == state) if isinstance(state, tuple) else (lambda s: s[0] == state)

        def check():
            s = self.vm_state(vid)
            if want(s):
                return s
            if s[0] == 7 or (s[0] == VM_ACTIVE and s[1] in LCM_FAILURES):
                x = self.vm_xml(vid)
                pytest.fail(f"VM {vid} failed in {s}: {x.findtext('USER_TEMPLATE/ERROR')}")
            return None

        return wait_for(f"VM {vid} in {state}", check, timeout=timeout, step=0.1)

    def domain(self, vid: int) -> str:
        return f"{self.prefix}{vid}"

    def serial_log(self, vid: int) -> str:
        try:
            return (self.vm_dir(vid) / "serial.log").read_text(errors="replace")
        except OSError:
            return ""

    def wait_marker(self, vid: int, marker: str, count: int = 1, timeout: float = 90.0):
        """Waits until the guest printed `marker` at least `count` times on its console."""
        wait_for(
            f"{marker} x{count} on VM {vid}'s console",
            lambda: self.serial_log(vid).count(marker) >= count,
            timeout=timeout,
            step=0.2,
        )


class KvmCloud(CloudView):
    """An oned with a localhost kvm host on the machine's libvirtd, isolated by directory,
    domain prefix and VNC port range."""

    def __init__(self, env: KvmEnv, name: str, hosts: dict[str, str] | None = None, lcm: dict | None = None):
        self.env = env
        self.tag = secrets.token_hex(3)
        self.prefix = f"e2e{self.tag}-"
        self.dir = BASE / f"{name}-{self.tag}"
        self.dir.mkdir(parents=True, exist_ok=True)
        for d in (BASE, self.dir):
            os.chmod(d, 0o755)
        hosts = {k: v.replace("{dir}", str(self.dir)) for k, v in (hosts or {}).items()}
        hosts.setdefault("domain_prefix", f'"{self.prefix}"')
        hosts.setdefault("agent_path", f'"{env.agent}"')
        hosts.setdefault("vnc_port_start", str(random.randrange(10000, 32000, 100)))
        lcm_cfg = {"shutdown_timeout_seconds": "30", "driver_timeout_seconds": "120"}
        lcm_cfg.update({k: str(v) for k, v in (lcm or {}).items()})
        text = 'log_level = "info,oned::hostmgr=debug"\n[lcm]\n'
        text += "".join(f"{k} = {v}\n" for k, v in lcm_cfg.items())
        text += "[hosts]\n" + "".join(f"{k} = {v}\n" for k, v in hosts.items())
        cfg = self.dir / "oned.toml"
        cfg.write_text(text)
        self.oned = Oned(self.dir / "one", extra_args=["--config", str(cfg)])
        self.oned.start()
        self.one = self.oned.client()

    # -- objects ------------------------------------------------------------------------

    def add_localhost(self, wait: bool = True) -> int:
        hid = self.one.host.allocate("localhost", "kvm", "kvm", -1)
        if wait:
            wait_for("host MONITORED", lambda: self.host_state(hid) == HOST_MONITORED, timeout=60)
        return hid

    def guest_template(self, name: str, memory: int = 128, extra: str = "") -> str:
        g = self.env.guest
        return (
            f'NAME="{name}"\nCPU="0.1"\nVCPU="1"\nMEMORY="{memory}"\n'
            f'OS=[KERNEL="{g.kernel}", INITRD="{g.initrd}", KERNEL_CMD="{g.cmdline}"]\n'
            'GRAPHICS=[TYPE="VNC", LISTEN="127.0.0.1"]\n' + extra
        )

    def vm_dir(self, vid: int) -> Path:
        return self.oned.data_dir / "datastores" / "0" / str(vid)

    def agent_pids(self) -> list[int]:
        """The one-node-agent processes this oned started (its children)."""
        return harness.agent_children(self.oned.pid)

    # -- teardown -----------------------------------------------------------------------

    def close(self, failed: bool) -> list[str]:
        """Stops oned, removes the cloud's domains and files; returns what was left over
        (domains that had to be destroyed here)."""
        died = self.oned.died_unexpectedly()
        self.oned.stop()
        print(f"\n===== {self.oned!r}\n{self.oned.logs(tail=120)}")
        leftovers = domains_with_prefix(self.prefix)
        for name in leftovers:
            virsh("destroy", name)
            virsh("undefine", name)
        for log in Path("/var/log/libvirt/qemu").glob(f"{self.prefix}*.log*"):
            log.unlink(missing_ok=True)
        if failed or died:
            print(f"kept {self.dir} for inspection")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if died:
            pytest.fail(f"oned died during the test\n{self.oned.logs()}", pytrace=False)
        return leftovers


_LCM_NAMES = {
    # The *_FAILURE LCM states (OpenNebula's numbers).
    14: "FAILURE", 36: "BOOT_FAILURE", 37: "BOOT_MIGRATE_FAILURE",
    38: "PROLOG_MIGRATE_FAILURE", 39: "PROLOG_FAILURE", 40: "EPILOG_FAILURE",
    41: "EPILOG_STOP_FAILURE", 42: "EPILOG_UNDEPLOY_FAILURE", 44: "PROLOG_MIGRATE_POWEROFF_FAILURE",
    46: "PROLOG_MIGRATE_SUSPEND_FAILURE", 47: "BOOT_UNDEPLOY_FAILURE", 48: "BOOT_STOPPED_FAILURE",
    49: "PROLOG_RESUME_FAILURE", 50: "PROLOG_UNDEPLOY_FAILURE", 61: "PROLOG_MIGRATE_UNKNOWN_FAILURE",
}


# LCM states that mean an operation failed.
LCM_FAILURES = frozenset(_LCM_NAMES)


@pytest.fixture
def kvm_cloud(kvm_env, request):
    """kvm_cloud(name="one", hosts={...}, lcm={...}) -> a started KvmCloud, closed at teardown."""
    clouds: list[KvmCloud] = []
    # No report hook in conftest: a failure of this test shows as a new failed test.
    failed_before = request.session.testsfailed

    def make(name: str = "one", hosts: dict | None = None, lcm: dict | None = None) -> KvmCloud:
        c = KvmCloud(kvm_env, f"{request.node.name[:40]}-{name}", hosts_config(**(hosts or {})), lcm)
        clouds.append(c)
        return c

    yield make
    failed = request.session.testsfailed > failed_before
    for c in clouds:
        c.close(failed)


class NetnsHost:
    """A "remote" hypervisor host in a network namespace with its own sshd
    (tests/hostenv/netns-host.sh) on a test bridge of its own, reaching the machine's
    libvirtd. `with NetnsHost(dir, authorized_keys) as h:` h.ip, h.name, h.host_key."""

    def __init__(self, dir: Path, authorized_keys: Path):
        tag = secrets.token_hex(3)
        self.name = f"kh{tag}"
        self.bridge = f"ob{tag}"
        self.dir = dir
        net = f"10.{random.randrange(100, 250)}.{random.randrange(0, 255)}"
        self.ip = f"{net}.2"
        self.script = str(REPO / "tests/hostenv/netns-host.sh")
        self.authorized_keys = authorized_keys

    def __enter__(self) -> "NetnsHost":
        r = run(
            [self.script, "up", self.name, "--dir", str(self.dir), "--ip", f"{self.ip}/24",
             "--bridge", self.bridge, "--authorized-keys", str(self.authorized_keys)],
            timeout=60,
        )
        if r.returncode != 0:
            self.__exit__(None, None, None)
            skip(f"cannot make a namespace host: {(r.stderr or r.stdout).strip()[-500:]}")
        env = _guest_env(self.dir / "host.env")
        self.host_key = env["HOST_KEY_PUB"]
        self.hostname = env.get("HOSTNAME", self.name)
        return self

    def __exit__(self, *exc):
        run([self.script, "down", self.name, "--dir", str(self.dir), "--bridge", self.bridge], timeout=60)
