"""Hypervisor hosts reached over SSH (oned/src/hostmgr/ssh.rs, docs/node-agent.md).

Each test makes a "host" with tests/hostenv/netns-host.sh: a network namespace with its own
address on a test-owned bridge and its own sshd (test host key, authorized_keys holding
oned's public key from `oned ssh-key`). oned connects to it with russh as the user it runs
as (root here), checks the host key against <data dir>/ssh/known_hosts, installs its agent
at `[hosts] remote_agent_path` when missing or of another build, and runs it in an exec
channel. The agents run with --simulate (`simulate_agents`): no libvirt is needed, but
the capacity they report is this machine's (the namespace shares it).

The namespace shares the file system, so the remote agent path (a test-owned directory) is
checked directly. Needs root and `ip netns`; otherwise the tests skip, saying why.

These are the steps of README.md's "Another hypervisor host" paragraph (`oned ssh-key` into
the host's authorized_keys, `oned ssh-accept-host`, `one.host.allocate(NAME, "kvm", "kvm",
-1)`): test_unknown_host_key_is_refused_until_accepted_then_agent_installed guards it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import oned_binary, parse_xml, wait_for, xsd_check

# Tests SSH and namespaces, not the database: the SQLite stage runs it (conftest.py).
pytestmark = pytest.mark.db_independent

REPO = Path(__file__).resolve().parents[2]
NETNS_HOST = REPO / "tests" / "hostenv" / "netns-host.sh"
MONITORED, ERROR = 2, 3


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "not root (network namespaces and sshd need it)"
    if not shutil.which("ip") or subprocess.run(["ip", "netns", "list"], capture_output=True).returncode:
        return "`ip netns` is not available"
    if not Path("/usr/sbin/sshd").exists():
        return "no /usr/sbin/sshd (scripts/install-deps.sh installs openssh-server)"
    agent = oned_binary().parent / "one-node-agent"
    if not os.access(agent, os.X_OK):
        return f"{agent} is not built (cargo build -p one-node-agent)"
    return None


@pytest.fixture(autouse=True)
def _needs_hostenv():
    why = _skip_reason()
    if why:
        print(f"SKIP: {why}")
        pytest.skip(why)


def agent_binary() -> Path:
    return oned_binary().parent / "one-node-agent"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class NsHost:
    """A namespace host: `up` with oned's key authorized, `down` at teardown."""

    def __init__(self, name: str, subnet: int, base: Path, port: int = 22):
        assert len(name) <= 11
        self.name = name
        self.ip = f"10.231.{subnet}.2"
        self.bridge = f"onessh{subnet}"
        self.port = port
        self.dir = base / f"host-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)

    def up(self, authorized_key: str):
        keys = self.dir.parent / f"{self.name}.authorized_keys"
        keys.write_text(authorized_key + "\n")
        subprocess.run(
            [str(NETNS_HOST), "up", self.name, "--dir", str(self.dir), "--ip", f"{self.ip}/24",
             "--bridge", self.bridge, "--port", str(self.port), "--authorized-keys", str(keys)],
            check=True, capture_output=True, text=True, timeout=60,
        )
        env = {}
        for line in (self.dir / "host.env").read_text().splitlines():
            k, _, v = line.partition("=")
            env[k] = v.strip().strip("'\"")
        self.env = env
        return self

    def down(self):
        subprocess.run(
            [str(NETNS_HOST), "down", self.name, "--dir", str(self.dir), "--bridge", self.bridge],
            capture_output=True, text=True, timeout=60,
        )


@pytest.fixture
def ns_hosts(tmp_path):
    made = []

    def make(name, subnet, port=22):
        h = NsHost(name, subnet, tmp_path, port)
        made.append(h)
        return h

    yield make
    for h in made:
        h.down()


def config(remote_agent: Path, **over) -> str:
    hosts = {
        "agent_path": f'"{agent_binary()}"',
        "simulate_agents": "true",
        "remote_agent_path": f'"{remote_agent}"',
        "ssh_connect_timeout_seconds": "3.0",
        # The reconnection comes after the ERROR deadline, so tests see both.
        "reconnect_initial_seconds": "2.0",
        "reconnect_max_seconds": "3.0",
        "error_after_seconds": "0.5",
        "host_usage_seconds": "1.0",
        "keepalive_interval_seconds": "1.0",
        "keepalive_timeout_seconds": "5.0",
    }
    hosts.update({k: str(v) for k, v in over.items()})
    lines = "\n".join(f"{k} = {v}" for k, v in hosts.items())
    return f'log_level = "info,oned::hostmgr=debug"\n[hosts]\n{lines}\n'


def start_oned(oned_factory, tmp_path, text: str):
    cfg = tmp_path / "oned.toml"
    cfg.write_text(text)
    o = oned_factory("one", extra_args=["--config", str(cfg)])
    return o, cfg


def oned_cmd(o, cfg: Path, *args: str, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(oned_binary()), *args, "--data-dir", str(o.data_dir), "--config", str(cfg)],
        capture_output=True, text=True, timeout=60, check=check,
    )


def host_xml(o, hid):
    return parse_xml(o.admin_xml("one.host.info", hid))


def state(o, hid) -> int:
    return int(host_xml(o, hid).findtext("STATE"))


def error_of(o, hid) -> str:
    x = host_xml(o, hid)
    return x.findtext("TEMPLATE/ERROR") or "" if int(x.findtext("STATE")) == ERROR else ""


def meminfo_total_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    raise AssertionError("no MemTotal")


def installed_builds(o) -> list[str]:
    """The builds oned logged installing (target/debug may be rebuilt while a test runs, so
    the file next to oned is not a stable reference)."""
    log = (o.data_dir / "oned.log").read_text()
    return re.findall(r"agent installed over SSH .*?build=([0-9a-f]{64})", log)


def agent_pids(remote: Path) -> list[int]:
    r = subprocess.run(["pgrep", "-f", f"^{remote} --stdio"], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


def test_unknown_host_key_is_refused_until_accepted_then_agent_installed(
    oned_factory, tmp_path, ns_hosts
):
    remote = tmp_path / "remote" / "bin" / "one-node-agent"
    o, cfg = start_oned(oned_factory, tmp_path, config(remote))
    key = oned_cmd(o, cfg, "ssh-key").stdout.strip()
    assert key.startswith("ssh-ed25519 AAAA") and "oned@" in key, key
    # Made at oned's first start, private and in OpenSSH format.
    priv = o.data_dir / "ssh" / "id_ed25519"
    assert priv.stat().st_mode & 0o777 == 0o600
    assert priv.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert (o.data_dir / "ssh" / "id_ed25519.pub").read_text().strip() == key
    h = ns_hosts("osh1", 41, port=2222).up(key)

    one = o.client()
    hid = one.host.allocate(h.ip, "kvm", "kvm", -1)
    one.host.update(hid, 'SSH_PORT="2222"', 1)
    err = wait_for("ERROR for the unknown key",
                   lambda: "is not known" in error_of(o, hid) and error_of(o, hid))
    # The message tells the admin exactly how to accept the key.
    assert f"oned ssh-accept-host {h.ip} --port 2222" in err, err
    assert "SSH_ACCEPT_NEW_HOST_KEY=YES" in err and "SHA256:" in err, err
    assert not remote.exists(), "nothing is installed on a host that is not trusted"

    out = oned_cmd(o, cfg, "ssh-accept-host", h.ip, "--port", "2222").stdout
    assert f"added [{h.ip}]:2222" in out, out
    known = (o.data_dir / "ssh" / "known_hosts").read_text()
    host_key = h.env["HOST_KEY_PUB"].split()[1] if "HOST_KEY_PUB" in h.env else None
    assert known.startswith(f"[{h.ip}]:2222 ssh-ed25519 "), known
    if host_key:
        assert host_key in known
    # Accepting again says so and changes nothing.
    again = oned_cmd(o, cfg, "ssh-accept-host", h.ip, "--port", "2222").stdout
    assert "already known" in again
    assert (o.data_dir / "ssh" / "known_hosts").read_text() == known

    wait_for("MONITORED", lambda: state(o, hid) == MONITORED, timeout=30)
    assert remote.exists() and [sha256(remote)] == installed_builds(o)
    assert remote.stat().st_mode & 0o777 == 0o755
    assert agent_pids(remote), "the agent runs from the installed path"
    x = host_xml(o, hid)
    assert int(x.findtext("HOST_SHARE/TOTAL_CPU")) == os.cpu_count() * 100
    assert x.findtext("TEMPLATE/TOTALMEMORY") == str(meminfo_total_kb())
    assert x.findtext("TEMPLATE/ERROR") is None
    xsd_check(o.admin_xml("one.host.info", hid))


def test_other_binary_replaced_and_killed_agent_reconnects(oned_factory, tmp_path, ns_hosts):
    remote = tmp_path / "remote" / "bin" / "one-node-agent"
    remote.parent.mkdir(parents=True)
    remote.write_text("#!/bin/sh\necho 'an old agent' >&2\nexit 3\n")
    remote.chmod(0o755)
    o, cfg = start_oned(oned_factory, tmp_path, config(remote, accept_new_host_keys="true"))
    h = ns_hosts("osh2", 42).up(oned_cmd(o, cfg, "ssh-key").stdout.strip())
    one = o.client()
    hid = one.host.allocate(h.ip, "kvm", "kvm", -1)
    wait_for("MONITORED", lambda: state(o, hid) == MONITORED, timeout=30)
    # accept_new_host_keys recorded the new host's key; the other binary was replaced.
    assert f"{h.ip} ssh-ed25519 " in (o.data_dir / "ssh" / "known_hosts").read_text()
    assert [sha256(remote)] == installed_builds(o)
    assert not list(remote.parent.glob("*.tmp.*")), "no temporary file left"

    before = agent_pids(remote)
    assert len(before) == 1, before
    subprocess.run(["pkill", "-KILL", "-f", f"^{remote} --stdio"], check=True)
    wait_for("ERROR after the agent died", lambda: state(o, hid) == ERROR, timeout=15)
    wait_for("MONITORED again", lambda: state(o, hid) == MONITORED, timeout=30)
    after = agent_pids(remote)
    assert len(after) == 1 and after != before, (before, after)
    assert host_xml(o, hid).findtext("TEMPLATE/ERROR") is None
    # The build was the same: no second install (unless target/debug was rebuilt meanwhile).
    builds = installed_builds(o)
    assert len(builds) == 1 or builds[-1] != builds[0], builds


def test_changed_host_key_is_refused_as_a_possible_mitm(oned_factory, tmp_path, ns_hosts):
    remote = tmp_path / "remote" / "bin" / "one-node-agent"
    o, cfg = start_oned(oned_factory, tmp_path, config(remote))
    key = oned_cmd(o, cfg, "ssh-key").stdout.strip()
    h = ns_hosts("osh3", 43).up(key)
    known = o.data_dir / "ssh" / "known_hosts"
    # Another key recorded for the host (oned's own public key will do), after a comment.
    known.write_text(f"# test\n{h.ip} {' '.join(key.split()[:2])}\n")
    one = o.client()
    hid = one.host.allocate(h.ip, "kvm", "kvm", -1)
    err = wait_for("ERROR for the changed key",
                   lambda: "mismatch" in error_of(o, hid) and error_of(o, hid))
    assert "host key mismatch" in err and "man-in-the-middle" in err, err
    assert f"{known} line 2" in err, err
    assert not remote.exists()
    # The accept command refuses too, unless told the change is wanted.
    r = oned_cmd(o, cfg, "ssh-accept-host", h.ip, check=False)
    assert r.returncode != 0 and "mismatch" in r.stderr, r
    out = oned_cmd(o, cfg, "ssh-accept-host", h.ip, "--replace").stdout
    assert "added" in out
    assert known.read_text().count(h.ip) == 1
    wait_for("MONITORED", lambda: state(o, hid) == MONITORED, timeout=30)


def test_unreachable_host_goes_to_error_with_the_reason(oned_factory, tmp_path, ns_hosts):
    remote = tmp_path / "remote" / "bin" / "one-node-agent"
    o, cfg = start_oned(oned_factory, tmp_path, config(remote, accept_new_host_keys="true"))
    h = ns_hosts("osh4", 44).up(oned_cmd(o, cfg, "ssh-key").stdout.strip())
    one = o.client()
    # Nothing listens on port 2: the connection is refused.
    hid = one.host.allocate(h.ip, "kvm", "kvm", -1)
    one.host.update(hid, 'SSH_PORT="2"', 1)
    err = wait_for("ERROR", lambda: "port 2 over SSH" in error_of(o, hid) and error_of(o, hid))
    assert f"cannot connect to {h.ip} port 2 over SSH" in err and "refused" in err.lower(), err
    # A bad port in the template is said as such.
    one.host.update(hid, 'SSH_PORT="http"', 1)
    err = wait_for("ERROR", lambda: "not a port" in error_of(o, hid) and error_of(o, hid))
    assert "SSH_PORT=http" in err, err
    # Fixed: the host heals.
    one.host.update(hid, 'SSH_PORT="22"', 1)
    wait_for("MONITORED", lambda: state(o, hid) == MONITORED, timeout=30)
    # A key that is not authorized: refused, saying how to authorize it.
    (h.dir / "authorized_keys").write_text("")
    subprocess.run(["pkill", "-KILL", "-f", f"^{remote} --stdio"], check=True)
    err = wait_for("ERROR", lambda: "authorized_keys" in error_of(o, hid) and error_of(o, hid))
    assert "oned ssh-key" in err, err
