"""Monitoring history and /metrics (docs/monitoring.md, "History" and "Prometheus").

one.host.monitoring, one.hostpool.monitoring, one.vm.monitoring and one.vmpool.monitoring
answer from oned's in-memory history, fed by dummy hosts and by node agents; the history is
flushed to SQL in batches and reloaded at start. GET /metrics serves Prometheus text.
"""

from __future__ import annotations

import os
import re
import time
import urllib.request

import pyone
import pytest

from harness import oned_binary, parse_xml, wait_for

MONITORED = 2
ACTIVE, RUNNING = 3, 3

FAST = """
[monitoring]
dummy_interval_seconds = 0.3
history_min_spacing_seconds = 1
history_flush_seconds = 0.5
"""


def start(oned_factory, tmp_path, text: str = FAST, name: str = "one"):
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(text)
    return oned_factory(name, extra_args=["--config", str(cfg)])


def records(o, method, *args):
    root = parse_xml(o.admin_xml(method, *args))
    assert root.tag == "MONITORING_DATA"
    return root.findall("MONITORING")


def running_vm_on_dummy(o, one):
    hid = one.host.allocate("h1", "dummy", "dummy", -1)
    wait_for("MONITORED", lambda: one.host.info(hid).STATE == MONITORED)
    vid = one.vm.allocate('NAME="v1" CPU="0.5" MEMORY="128"')
    one.vm.deploy(vid, hid)
    wait_for("RUNNING", lambda: (one.vm.info(vid).STATE, one.vm.info(vid).LCM_STATE) == (ACTIVE, RUNNING))
    return hid, vid


def test_methods_return_history_xsd_valid_and_parsed_by_pyone(oned_factory, tmp_path, xsd):
    o = start(oned_factory, tmp_path)
    one = o.client()
    hid, vid = running_vm_on_dummy(o, one)
    wait_for("3 host samples", lambda: len(records(o, "one.host.monitoring", hid)) >= 3)
    wait_for("2 VM samples", lambda: len(records(o, "one.vm.monitoring", vid)) >= 2)

    # Host records: as HOST/MONITORING, ascending, at least the configured spacing apart.
    recs = records(o, "one.host.monitoring", hid)
    stamps = [int(r.findtext("TIMESTAMP")) for r in recs]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert all(b - a >= 1 for a, b in zip(stamps, stamps[1:]))
    for r in recs:
        assert [c.tag for c in r] == ["TIMESTAMP", "ID", "CAPACITY", "SYSTEM"]
        assert int(r.findtext("ID")) == hid
        cap = r.find("CAPACITY")
        assert int(cap.findtext("FREE_CPU")) + int(cap.findtext("USED_CPU")) == 800
    # The newest record is the host's current MONITORING.
    cur = parse_xml(o.admin_xml("one.host.info", hid)).find("MONITORING")
    assert int(cur.findtext("TIMESTAMP")) >= stamps[-1]

    # VM records validate against monitoring_data.xsd.
    body = o.admin_xml("one.vm.monitoring", vid)
    xsd(body, "monitoring_data.xsd")
    vrecs = parse_xml(body).findall("MONITORING")
    for r in vrecs:
        assert int(r.findtext("ID")) == vid
        assert 0 < float(r.findtext("CPU")) <= 50.0
        assert 0 < int(r.findtext("MEMORY")) <= 128 * 1024
    rx = [int(r.findtext("NETRX")) for r in vrecs]
    assert rx == sorted(rx), "counters only grow"

    # pyone parses all four.
    assert len(one.host.monitoring(hid).MONITORING) >= 3
    assert one.vm.monitoring(vid).MONITORING[0].ID == vid
    assert len(one.hostpool.monitoring(-1).MONITORING) >= 3
    last = one.vmpool.monitoring(-2, 0).MONITORING
    assert [m.ID for m in last] == [vid], "seconds 0: the last record per VM"

    # seconds: 0 one per host; N the last N seconds only; default (-1) everything.
    assert len(records(o, "one.hostpool.monitoring", 0)) == 1
    assert len(records(o, "one.hostpool.monitoring")) == len(records(o, "one.hostpool.monitoring", -1))
    assert len(records(o, "one.hostpool.monitoring", 1)) <= 2
    xsd(o.admin_xml("one.vmpool.monitoring", -2, -1), "monitoring_data.xsd")

    # Rights: USE on the object; a user sees only VMs she may use; bad filter flags refused.
    one.user.allocate("alice", "pw", "core", [])
    alice = o.client("alice", "pw")
    with pytest.raises(pyone.OneAuthorizationException):
        alice.vm.monitoring(vid)
    with pytest.raises(pyone.OneAuthorizationException):
        alice.host.monitoring(hid)
    assert alice.vmpool.monitoring(-2, -1).MONITORING == []
    with pytest.raises(pyone.OneNoExistsException):
        one.host.monitoring(999)
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.monitoring(999)
    with pytest.raises(pyone.OneException):
        one.vmpool.monitoring(-9, -1)


def test_history_survives_sigkill(oned_factory, tmp_path):
    o = start(oned_factory, tmp_path)
    one = o.client()
    hid, vid = running_vm_on_dummy(o, one)
    wait_for("3 host samples", lambda: len(records(o, "one.host.monitoring", hid)) >= 3)
    time.sleep(1.2)  # two flush periods: what was recorded so far is in SQL
    before = [int(r.findtext("TIMESTAMP")) for r in records(o, "one.host.monitoring", hid)]
    vm_before = [int(r.findtext("TIMESTAMP")) for r in records(o, "one.vm.monitoring", vid)]
    o.kill()
    o.start()
    after = [int(r.findtext("TIMESTAMP")) for r in records(o, "one.host.monitoring", hid)]
    assert after[: len(before)] == before, (before, after)
    vm_after = [int(r.findtext("TIMESTAMP")) for r in records(o, "one.vm.monitoring", vid)]
    assert vm_after[: len(vm_before)] == vm_before


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A small parser of the text exposition format: checks HELP/TYPE come before each
    family's samples and unescapes label values."""
    families: dict[str, list] = {}
    typed: set[str] = set()
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert kind in ("gauge", "counter"), line
            typed.add(name)
            families.setdefault(name, [])
            continue
        assert line and not line.startswith("#"), repr(line)
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)", line)
        assert m, f"bad sample line {line!r}"
        name, labels_text, value = m.group(1), m.group(3) or "", m.group(4)
        assert name in typed, f"{name} has no TYPE line before its samples"
        labels = {
            k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
            for k, v in label_re.findall(labels_text)
        }
        families[name].append((labels, float(value)))
    return families


def get_metrics(o) -> tuple[str, str]:
    url = o.endpoint.rsplit("/", 1)[0] + "/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.headers.get("Content-Type", ""), r.read().decode()


def test_metrics_endpoint(oned_factory, tmp_path):
    o = start(oned_factory, tmp_path)
    one = o.client()
    hid, vid = running_vm_on_dummy(o, one)
    # Quotes and backslashes are refused in names (their escaping has a unit test).
    one.vm.rename(vid, "web (copy) é")
    wait_for("VM samples", lambda: len(records(o, "one.vm.monitoring", vid)) >= 1)
    ctype, text = get_metrics(o)
    assert ctype.startswith("text/plain; version=0.0.4")
    m = parse_metrics(text)
    host = {s[0]["id"]: s for s in m["one_host_state"]}
    assert host[str(hid)][0]["name"] == "h1" and host[str(hid)][1] == MONITORED
    assert dict(m["one_host_cpu_total"][0][0]) == {"id": str(hid), "name": "h1"}
    assert m["one_host_cpu_total"][0][1] == 800
    assert m["one_host_vms"][0][1] == 1
    vm = [s for s in m["one_vm_lcm_state"] if s[0]["id"] == str(vid)]
    assert vm and vm[0][0]["name"] == "web (copy) é" and vm[0][0]["host"] == "h1"
    assert vm[0][1] == RUNNING
    assert [s[1] for s in m["one_vm_memory_bytes"]][0] > 0
    calls = {s[0]["method"]: s[1] for s in m["oned_api_calls_total"]}
    assert calls["one.host.allocate"] >= 1 and calls["one.vm.deploy"] >= 1
    pools = {s[0]["pool"]: s[1] for s in m["oned_objects"]}
    assert pools["host"] == 1 and pools["vm"] == 1
    samples = {s[0]["kind"]: s[1] for s in m["oned_monitoring_samples_total"]}
    assert samples["host"] >= 1 and samples["vm"] >= 1
    assert m["process_resident_memory_bytes"][0][1] > 1_000_000
    assert m["process_cpu_seconds_total"][0][1] > 0
    wait_for("a flush", lambda: parse_metrics(get_metrics(o)[1])["oned_monitoring_flushes_total"][0][1] >= 1)


def test_metrics_can_be_disabled(oned_factory, tmp_path):
    o = start(oned_factory, tmp_path, FAST + "[metrics]\nenabled = false\n")
    with pytest.raises(urllib.error.HTTPError) as e:
        get_metrics(o)
    assert e.value.code == 404


def test_agent_samples_reach_the_history(oned_factory, tmp_path):
    agent = oned_binary().parent / "one-node-agent"
    if not os.access(agent, os.X_OK):
        pytest.skip(f"{agent} is not built (cargo build -p one-node-agent)")
    o = start(
        oned_factory,
        tmp_path,
        FAST
        + f'[hosts]\nagent_path = "{agent}"\nsimulate_agents = true\nhost_usage_seconds = 0.5\n'
        'vm_usage_seconds = 0.5\nkeepalive_interval_seconds = 1.0\n',
    )
    one = o.client()
    hid = one.host.allocate("localhost", "kvm", "kvm", -1)
    wait_for("MONITORED", lambda: one.host.info(hid).STATE == MONITORED, timeout=30)
    wait_for("2 agent samples", lambda: len(records(o, "one.host.monitoring", hid)) >= 2, timeout=30)
    r = records(o, "one.host.monitoring", hid)[-1]
    total = int(one.host.info(hid).HOST_SHARE.TOTAL_CPU)
    cap = r.find("CAPACITY")
    assert int(cap.findtext("FREE_CPU")) + int(cap.findtext("USED_CPU")) <= total + 100
    assert int(cap.findtext("USED_MEMORY")) > 0
