"""Hypervisor hosts driven by the node agent over a local pipe (docs/node-agent.md).

oned starts `one-node-agent --stdio --simulate` for a `kvm` host named localhost: the
agent's simulated mode (a test facility, `[hosts] simulate_agents`) reports this machine's
real capacity and usage but keeps its domains in memory, without libvirt. Everything else is
the real thing: the handshake (oned accepts only its own agent build), the session, driver
operations as requests, monitoring pushes, session loss and reconnection.

The agent binary is found next to oned (target/debug/one-node-agent); the tests skip, saying
so, when it has not been built.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import harness
from harness import oned_binary, parse_xml, xsd_check

MONITORED, ERROR, OFFLINE = 2, 3, 8
ACTIVE, DONE, POWEROFF = 3, 6, 8
RUNNING, UNKNOWN = 3, 16


def agent_binary() -> Path:
    return oned_binary().parent / "one-node-agent"


def config(agent: Path, **over) -> str:
    hosts = {
        "agent_path": f'"{agent}"',
        "simulate_agents": "true",
        # Long enough that a test sees ERROR between the loss and the reconnection.
        "reconnect_initial_seconds": "2.0",
        "reconnect_max_seconds": "4.0",
        "error_after_seconds": "0.0",
        "host_usage_seconds": "1.0",
        "vm_usage_seconds": "1.0",
        "vm_state_seconds": "0.5",
        "keepalive_interval_seconds": "1.0",
        "keepalive_timeout_seconds": "5.0",
    }
    hosts.update({k: str(v) for k, v in over.items()})
    lines = "\n".join(f"{k} = {v}" for k, v in hosts.items())
    return f'log_level = "info,oned::hostmgr=debug"\n[hosts]\n{lines}\n'


@pytest.fixture
def agent_bin() -> Path:
    path = agent_binary()
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} is not built (cargo build -p one-node-agent)")
    return path


def start(oned_factory, tmp_path, text: str, name: str = "one", env=None):
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(text)
    return oned_factory(name, extra_args=["--config", str(cfg)], env=env or {})


def wait_for(what, check, timeout=20.0, step=0.05):
    """harness.wait_for with this file's defaults."""
    return harness.wait_for(what, check, timeout, step)


def host_xml(o, hid):
    return parse_xml(o.admin_xml("one.host.info", hid))


def host_state(o, hid) -> int:
    return int(host_xml(o, hid).findtext("STATE"))


def vm_state(o, vid) -> tuple[int, int]:
    x = parse_xml(o.admin_xml("one.vm.info", vid))
    return int(x.findtext("STATE")), int(x.findtext("LCM_STATE"))


def agent_pids(o) -> list[int]:
    return harness.agent_children(o.pid)


def meminfo_total_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_localhost_is_monitored_with_this_machines_capacity(oned_factory, tmp_path, agent_bin):
    o = start(oned_factory, tmp_path, config(agent_bin))
    one = o.client()
    hid = one.host.allocate("localhost", "kvm", "kvm", -1)
    t = time.monotonic()
    wait_for("MONITORED", lambda: host_state(o, hid) == MONITORED, timeout=15)
    took = time.monotonic() - t
    x = host_xml(o, hid)
    assert int(x.findtext("HOST_SHARE/TOTAL_CPU")) == os.cpu_count() * 100
    assert int(x.findtext("HOST_SHARE/TOTAL_MEM")) == meminfo_total_kb()
    assert x.findtext("HOST_SHARE/MAX_CPU") == x.findtext("HOST_SHARE/TOTAL_CPU")
    # The simulated agent says what it is; a real one says kvm.
    assert x.findtext("TEMPLATE/HYPERVISOR") in ("kvm", "simulated")
    assert x.findtext("TEMPLATE/TOTALMEMORY") == str(meminfo_total_kb())
    assert x.findtext("TEMPLATE/ERROR") is None
    # Usage pushed by the agent (every second here) within the machine's totals.
    wait_for("usage", lambda: host_xml(o, hid).findtext("MONITORING/CAPACITY/FREE_CPU"))
    x = host_xml(o, hid)
    free_mem = int(x.findtext("MONITORING/CAPACITY/FREE_MEMORY"))
    assert 0 < free_mem <= meminfo_total_kb()
    xsd_check(o.admin_xml("one.host.info", hid))
    xsd_check(o.admin_xml("one.hostpool.info"))
    # One agent process for the host, started by oned.
    assert len(agent_pids(o)) == 1
    print(f"allocate -> MONITORED in {took:.2f} s")


def test_vm_runs_through_the_agent_and_survives_losing_it(oned_factory, tmp_path, agent_bin):
    # The simulated hypervisor keeps its domains in a file, as a real one keeps them when
    # the agent dies.
    env = {"ONE_AGENT_SIM_STATE": str(tmp_path / "sim-domains.json")}
    o = start(oned_factory, tmp_path, config(agent_bin), env=env)
    one = o.client()
    hid = one.host.allocate("localhost", "kvm", "kvm", -1)
    wait_for("MONITORED", lambda: host_state(o, hid) == MONITORED, timeout=15)

    vid = one.vm.allocate('NAME="through-agent"\nCPU="0.1"\nMEMORY="64"')
    assert one.vm.deploy(vid, hid, False, -1) == vid
    wait_for("RUNNING", lambda: vm_state(o, vid) == (ACTIVE, RUNNING))
    vm = one.vm.info(vid)
    assert vm.DEPLOY_ID, "the agent names the domain"
    # VM monitoring from the agent.
    wait_for("VM monitoring", lambda: parse_xml(o.admin_xml("one.vm.info", vid)).findtext("MONITORING/MEMORY"))
    xsd_check(o.admin_xml("one.vm.info", vid))

    # The agent dies: the host goes to ERROR (error_after_seconds = 0), its RUNNING VM to
    # UNKNOWN; oned starts a new agent, the host is MONITORED again and the full domain
    # report brings the VM back to RUNNING (its domain never stopped).
    [pid] = agent_pids(o)
    os.kill(pid, signal.SIGKILL)
    wait_for("host ERROR", lambda: host_state(o, hid) == ERROR, timeout=10, step=0.02)
    err = host_xml(o, hid).findtext("TEMPLATE/ERROR")
    assert f"Error monitoring Host localhost ({hid}):" in err, err
    wait_for("VM UNKNOWN", lambda: vm_state(o, vid) == (ACTIVE, UNKNOWN), timeout=5, step=0.02)
    wait_for("MONITORED again", lambda: host_state(o, hid) == MONITORED, timeout=20)
    assert host_xml(o, hid).findtext("TEMPLATE/ERROR") is None
    wait_for("VM RUNNING again", lambda: vm_state(o, vid) == (ACTIVE, RUNNING), timeout=10)
    new = agent_pids(o)
    assert len(new) == 1 and new != [pid], new

    # Operations go to the new agent.
    one.vm.action("terminate-hard", vid)
    wait_for("DONE", lambda: vm_state(o, vid)[0] == DONE)

    # Deleting the host ends its agent.
    one.host.delete(hid)
    wait_for("agent gone", lambda: not agent_pids(o), timeout=10)


def test_domain_gone_behind_oneds_back_means_poweroff(oned_factory, tmp_path, agent_bin):
    """The agent restarts without its domains (no saved state: as after a host reboot):
    the full report on reconnect lacks the VM, which goes to POWEROFF as in OpenNebula."""
    o = start(oned_factory, tmp_path, config(agent_bin, reconnect_initial_seconds="0.2"))
    one = o.client()
    hid = one.host.allocate("localhost", "kvm", "kvm", -1)
    wait_for("MONITORED", lambda: host_state(o, hid) == MONITORED, timeout=15)
    vid = one.vm.allocate('NAME="vanishing"\nCPU="0.1"\nMEMORY="64"')
    one.vm.deploy(vid, hid, False, -1)
    wait_for("RUNNING", lambda: vm_state(o, vid) == (ACTIVE, RUNNING))
    [pid] = agent_pids(o)
    os.kill(pid, signal.SIGKILL)
    wait_for("POWEROFF", lambda: vm_state(o, vid)[0] == POWEROFF, timeout=20)
    wait_for("MONITORED again", lambda: host_state(o, hid) == MONITORED, timeout=20)
    # And it can be started again, through the new agent.
    one.vm.action("resume", vid)
    wait_for("RUNNING again", lambda: vm_state(o, vid) == (ACTIVE, RUNNING))


def test_offline_stops_the_agent_and_enable_starts_it(oned_factory, tmp_path, agent_bin):
    o = start(oned_factory, tmp_path, config(agent_bin))
    one = o.client()
    hid = one.host.allocate("127.0.0.1", "kvm", "kvm", -1)
    wait_for("MONITORED", lambda: host_state(o, hid) == MONITORED, timeout=15)
    one.host.status(hid, 2)
    assert host_state(o, hid) == OFFLINE
    wait_for("agent gone", lambda: not agent_pids(o), timeout=10)
    time.sleep(1.5)
    assert host_state(o, hid) == OFFLINE, "an OFFLINE host is left alone"
    one.host.status(hid, 0)
    wait_for("MONITORED", lambda: host_state(o, hid) == MONITORED, timeout=15)
    assert len(agent_pids(o)) == 1


def test_unreachable_hosts_and_broken_agents_go_to_error(oned_factory, tmp_path, agent_bin):
    # An agent that cannot start (here: a script failing as a missing library would): the
    # host's ERROR quotes what it wrote to stderr.
    broken = tmp_path / "broken-agent"
    broken.write_text(
        "#!/bin/sh\necho 'one-node-agent: error while loading shared libraries: libvirt.so.0' >&2\nexit 127\n"
    )
    broken.chmod(0o755)
    o = start(oned_factory, tmp_path, config(broken, reconnect_initial_seconds="0.2"))
    one = o.client()
    hid = one.host.allocate("localhost", "kvm", "kvm", -1)
    wait_for("ERROR", lambda: host_state(o, hid) == ERROR, timeout=15)
    err = host_xml(o, hid).findtext("TEMPLATE/ERROR")
    assert "the agent closed the session" in err and "libvirt.so.0" in err, err

    # A host that is not this machine: no SSH transport in this oned yet.
    remote = one.host.allocate("192.0.2.1", "kvm", "kvm", -1)
    wait_for("ERROR", lambda: host_state(o, remote) == ERROR, timeout=15)
    err = host_xml(o, remote).findtext("TEMPLATE/ERROR")
    assert "Error monitoring Host 192.0.2.1" in err and "SSH" in err, err

    # A VM deployed there fails with the reason, instead of hanging.
    vid = one.vm.allocate('NAME="nowhere"\nCPU="0.1"\nMEMORY="64"')
    one.vm.deploy(vid, remote, False, -1)
    wait_for("failure", lambda: vm_state(o, vid)[1] not in (1, 2))  # PROLOG, BOOT
    x = parse_xml(o.admin_xml("one.vm.info", vid))
    assert "host 192.0.2.1 is not connected" in (x.findtext("USER_TEMPLATE/ERROR") or ""), \
        o.admin_xml("one.vm.info", vid)
    xsd_check(o.admin_xml("one.hostpool.info"))


def test_failed_onboarding_check_is_explained_and_heals(oned_factory, tmp_path, agent_bin):
    """A network of the host's cluster names a bridge the host lacks (dummy networks expect
    it to exist): the agent's bridges check fails, and the host is in ERROR saying so instead
    of failing later at deploy time. Without that network the next session passes."""
    o = start(oned_factory, tmp_path, config(agent_bin, reconnect_max_seconds="1.0",
                                             reconnect_initial_seconds="0.2"))
    one = o.client()
    net = one.vn.allocate('NAME="needs-a-bridge"\nVN_MAD="dummy"\nBRIDGE="onetestnobr0"', -1)
    hid = one.host.allocate("localhost", "kvm", "kvm", -1)
    wait_for("ERROR", lambda: host_state(o, hid) == ERROR, timeout=15)
    err = host_xml(o, hid).findtext("TEMPLATE/ERROR")
    assert err.endswith(
        f"Error monitoring Host localhost ({hid}): onboarding checks failed: bridges: bridge onetestnobr0 does not exist"
    ), err
    # Capacity is known all the same; the host stays in ERROR while the check fails.
    wait_for("capacity", lambda: int(host_xml(o, hid).findtext("HOST_SHARE/TOTAL_CPU")) > 0)
    time.sleep(1.5)
    assert host_state(o, hid) == ERROR

    one.vn.delete(net)
    wait_for("MONITORED", lambda: host_state(o, hid) == MONITORED, timeout=15)
    assert host_xml(o, hid).findtext("TEMPLATE/ERROR") is None
