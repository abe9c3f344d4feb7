"""Host failure recovery (docs/host-recovery.md): a dummy host made to fail with
DUMMY_FAIL="monitor" goes to ERROR and its VMs to UNKNOWN; after the grace period the
cluster's HOST_ERROR_RECOVERY policy fences it with FENCE_COMMAND and reschedules, recreates
or leaves its VMs; every action is in one.hostrecovery.info."""

from __future__ import annotations

import time
import xmlrpc.client

import pytest

from doc_examples import doc_example
from harness import parse_xml
from lifecycle_util import ACTIVE, PENDING, RUNNING, UNKNOWN, start_oned, vm, wait_for, wait_state
from sched_harness import Scheduler

MONITORED, ERROR = 2, 3

CONFIG = """
[monitoring]
dummy_interval_seconds = 0.2

[recovery]
check_interval_seconds = 0.2
grace_seconds = 1.0
fence_timeout_seconds = 5.0
"""

SCHED_CONFIG = "resched_interval = 0.2\n"
VM_TMPL = 'CPU="0.1"\nMEMORY="64"\n'


def fence_script(tmp_path, code: int = 0, name: str = "fence.sh"):
    """A fence command that appends '<$HOST_ID> <$HOST_NAME> <args>' to a marker file and
    exits with `code`."""
    marker = tmp_path / f"{name}.calls"
    script = tmp_path / name
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$HOST_ID $HOST_NAME $*" >> {marker}\n'
        + (f"echo 'ipmi: BMC unreachable' >&2\nexit {code}\n" if code else "exit 0\n")
    )
    script.chmod(0o755)
    return script, marker


def calls(marker) -> list[str]:
    return marker.read_text().splitlines() if marker.exists() else []


def records(oned, host_id: int = -1, *extra) -> list[dict]:
    root = parse_xml(oned.admin_xml("one.hostrecovery.info", host_id, *extra))
    assert root.tag == "HOST_RECOVERY_POOL"
    out = []
    for r in root.findall("RECOVERY_RECORD"):
        d = {c.tag: c.text or "" for c in r}
        for k in ("ID", "HOST_ID", "VM_ID", "TIMESTAMP"):
            d[k] = int(d[k])
        out.append(d)
    return out


def host_state(oned, hid: int) -> int:
    return int(parse_xml(oned.admin_xml("one.host.info", hid)).findtext("STATE"))


def host_attr(oned, hid: int, name: str) -> str | None:
    return parse_xml(oned.admin_xml("one.host.info", hid)).findtext(f"TEMPLATE/{name}")


def setup(oned, one, policy: str, tm_mad: str = "shared", n_vms: int = 2):
    """Cluster 'rc' with hosts h1, h2 and one system datastore; `policy` is the cluster's
    template; n_vms VMs deployed on h1 and RUNNING. Returns (cid, h1, h2, ds, vms)."""
    cid = one.cluster.allocate("rc")
    h1 = one.host.allocate("h1", "dummy", "dummy", cid)
    h2 = one.host.allocate("h2", "dummy", "dummy", cid)
    ds = one.datastore.allocate(f'NAME="sys"\nTYPE="SYSTEM_DS"\nTM_MAD="{tm_mad}"', cid)
    if policy:
        assert one.cluster.update(cid, policy, 1) == cid
    for h in (h1, h2):
        wait_for(f"host {h} MONITORED", lambda h=h: host_state(oned, h) == MONITORED)
    vms = []
    for _ in range(n_vms):
        vid = one.vm.allocate(VM_TMPL)
        one.vm.deploy(vid, h1, False, ds)
        wait_state(oned, vid, ACTIVE, RUNNING)
        vms.append(vid)
    return cid, h1, h2, ds, vms


def fail_host(oned, one, hid: int, vms: list[int]):
    assert one.host.update(hid, 'DUMMY_FAIL="monitor"', 1) == hid
    wait_for(f"host {hid} in ERROR", lambda: host_state(oned, hid) == ERROR)
    for vid in vms:
        wait_state(oned, vid, ACTIVE, UNKNOWN)


def test_shared_datastore_vms_are_fenced_rescheduled_and_run_elsewhere(oned_factory, tmp_path, xsd):
    oned = start_oned(oned_factory, tmp_path, CONFIG)
    one = oned.client()
    fence, marker = fence_script(tmp_path)
    # docs/host-recovery.md's example policy, with this test's fence command and grace.
    policy = doc_example("docs/host-recovery.md", "cluster-policy").text
    assert "/usr/local/sbin/fence-ipmi" in policy and '"180"' in policy
    policy = policy.replace("/usr/local/sbin/fence-ipmi", str(fence)).replace('"180"', '"1"')
    _, h1, h2, ds, vms = setup(oned, one, policy)
    sched = Scheduler(oned, tmp_path / "sched", config=SCHED_CONFIG).start()
    try:
        t0 = time.monotonic()
        fail_host(oned, one, h1, vms)
        for vid in vms:
            # UNKNOWN -> resched -> PROLOG_MIGRATE_UNKNOWN -> BOOT -> RUNNING on h2.
            wait_for(f"VM {vid} RUNNING on h2",
                     lambda vid=vid: vm(oned, vid).pair == (ACTIVE, RUNNING)
                     and vm(oned, vid).last()["HID"] == h2, timeout=20)
        # The grace period was respected (1 s from when recovery saw the host in ERROR).
        assert time.monotonic() - t0 >= 1.0
    finally:
        sched.stop()
    # Fenced exactly once, with the host in its arguments and its environment.
    assert calls(marker) == [f"{h1} h1 {h1} h1"]
    recs = records(oned, h1)
    assert [(r["ACTION"], r["OUTCOME"], r["VM_ID"]) for r in recs] == (
        [("fence", "success", -1)] + [("resched", "success", v) for v in vms])
    assert all(r["HOST_NAME"] == "h1" and r["TIMESTAMP"] > 0 for r in recs)
    assert "exited with 0" in recs[0]["MESSAGE"]
    assert [r["ID"] for r in recs] == sorted(r["ID"] for r in recs)
    assert "2 rescheduled" in (host_attr(oned, h1, "LAST_RECOVERY") or "")
    assert records(oned, h2) == []
    # Paging: start_id and count.
    assert [r["ID"] for r in records(oned, -1, recs[1]["ID"], 1)] == [recs[1]["ID"]]
    # The VMs' history shows the move: the h1 record was closed, h2 is the current one.
    for vid in vms:
        assert vm(oned, vid).last()["HID"] == h2
    # The host document with LAST_RECOVERY in its template still validates.
    xsd(oned.admin_xml("one.host.info", h1))


def test_fence_failure_moves_no_vm(oned_factory, tmp_path):
    oned = start_oned(oned_factory, tmp_path, CONFIG)
    one = oned.client()
    fence, marker = fence_script(tmp_path, code=3)
    _, h1, _, _, vms = setup(oned, one, f'HOST_ERROR_RECOVERY="RECREATE"\nFENCE_COMMAND="{fence}"')
    fail_host(oned, one, h1, vms)
    wait_for("the fence failure in the log",
             lambda: any(r["ACTION"] == "fence" for r in records(oned, h1)), timeout=10)
    wait_for("every VM's record", lambda: len(records(oned, h1)) == 1 + len(vms))
    time.sleep(1.0)  # a few more rounds: nothing else may happen
    recs = records(oned, h1)
    assert recs[0]["ACTION"] == "fence" and recs[0]["OUTCOME"] == "failure"
    assert "exited with 3" in recs[0]["MESSAGE"] and "BMC unreachable" in recs[0]["MESSAGE"]
    assert [(r["ACTION"], r["OUTCOME"], r["VM_ID"]) for r in recs[1:]] == [
        ("leave", "skipped", v) for v in vms]
    assert len(recs) == 1 + len(vms)
    assert len(calls(marker)) == 1, "one attempt per episode"
    for vid in vms:
        v = vm(oned, vid)
        assert v.pair == (ACTIVE, UNKNOWN) and v.last()["HID"] == h1
        assert "could not be fenced" in v.error
    assert "fencing failed" in (host_attr(oned, h1, "LAST_RECOVERY") or "")


def test_recovery_is_off_by_default(oned_factory, tmp_path):
    fence, marker = fence_script(tmp_path)
    # Even a configured default fence command does nothing without a policy.
    oned = start_oned(oned_factory, tmp_path, CONFIG + f'fence_command = "{fence}"\n')
    one = oned.client()
    _, h1, _, _, vms = setup(oned, one, "")
    fail_host(oned, one, h1, vms)
    time.sleep(2.5)  # grace 1 s and several rounds
    assert records(oned) == []
    assert calls(marker) == []
    for vid in vms:
        v = vm(oned, vid)
        assert v.pair == (ACTIVE, UNKNOWN) and v.last()["HID"] == h1 and v.error in (None, "")
    assert host_attr(oned, h1, "LAST_RECOVERY") is None


def test_non_shared_datastore_vms_are_left_with_the_reason(oned_factory, tmp_path):
    oned = start_oned(oned_factory, tmp_path, CONFIG)
    one = oned.client()
    fence, marker = fence_script(tmp_path)
    _, h1, _, ds, vms = setup(
        oned, one, f'HOST_ERROR_RECOVERY="MIGRATE"\nFENCE_COMMAND="{fence}"', tm_mad="ssh")
    fail_host(oned, one, h1, vms)
    wait_for("records of every VM", lambda: len(records(oned, h1)) == 1 + len(vms))
    recs = records(oned, h1)
    assert (recs[0]["ACTION"], recs[0]["OUTCOME"]) == ("fence", "success")
    for r, vid in zip(recs[1:], vms):
        assert (r["ACTION"], r["OUTCOME"], r["VM_ID"]) == ("leave", "skipped", vid)
        assert f"system datastore {ds} (TM_MAD ssh) is not shared" in r["MESSAGE"]
        v = vm(oned, vid)
        assert v.pair == (ACTIVE, UNKNOWN) and v.last()["HID"] == h1
        assert "not shared" in v.error and "Host recovery" in v.error


def test_recreate_redeploys_vms_of_non_shared_datastores(oned_factory, tmp_path):
    oned = start_oned(oned_factory, tmp_path, CONFIG)
    one = oned.client()
    _, h1, h2, _, vms = setup(oned, one, 'HOST_ERROR_RECOVERY="RECREATE"', tm_mad="ssh")
    fail_host(oned, one, h1, vms)
    for vid in vms:
        # delete-recreate: CLEANUP_RESUBMIT -> PENDING (no scheduler running yet).
        wait_state(oned, vid, PENDING, 0, timeout=10)
    recs = records(oned, h1)
    assert recs[0]["ACTION"] == "fence" and recs[0]["OUTCOME"] == "skipped"
    assert "no FENCE_COMMAND" in recs[0]["MESSAGE"]
    assert [(r["ACTION"], r["OUTCOME"], r["VM_ID"]) for r in recs[1:]] == [
        ("recreate", "success", v) for v in vms]
    sched = Scheduler(oned, tmp_path / "sched", config=SCHED_CONFIG).start()
    try:
        for vid in vms:
            wait_for(f"VM {vid} RUNNING on h2",
                     lambda vid=vid: vm(oned, vid).pair == (ACTIVE, RUNNING)
                     and vm(oned, vid).last()["HID"] == h2, timeout=20)
    finally:
        sched.stop()


def test_restart_does_not_fence_twice_and_healing_starts_a_new_episode(oned_factory, tmp_path):
    oned = start_oned(oned_factory, tmp_path, CONFIG)
    one = oned.client()
    fence, marker = fence_script(tmp_path)
    _, h1, _, _, vms = setup(
        oned, one, f'HOST_ERROR_RECOVERY="MIGRATE"\nFENCE_COMMAND="{fence}"', tm_mad="ssh",
        n_vms=1)
    fail_host(oned, one, h1, vms)
    wait_for("the episode's records", lambda: len(records(oned, h1)) == 2)
    oned.restart()
    one = oned.client()
    time.sleep(2.0)
    assert len(calls(marker)) == 1, "a restart does not fence again"
    assert len(records(oned, h1)) == 2
    # Healed: MONITORED, the VM seen running again; a new failure is a new episode.
    assert one.host.update(h1, 'DUMMY_FAIL=""', 1) == h1
    wait_for("h1 MONITORED", lambda: host_state(oned, h1) == MONITORED)
    wait_state(oned, vms[0], ACTIVE, RUNNING)
    time.sleep(0.5)  # a recovery round sees the host healthy
    fail_host(oned, one, h1, vms)
    wait_for("the second episode's records", lambda: len(records(oned, h1)) == 4)
    assert len(calls(marker)) == 2


def test_log_access_needs_manage_on_the_host(oned, make_user):
    one = oned.client()
    hid = one.host.allocate("h1", "dummy", "dummy", -1)
    # Group users has MANAGE on hosts (OpenNebula's default rule @1 HOST/* MANAGE): take
    # a user of another group.
    gid = one.group.allocate("outsiders")
    acls = parse_xml(oned.admin_xml("one.acl.info"))
    for rule in acls.findall("ACL"):
        if rule.findtext("STRING") == f"@{gid} HOST/* MANAGE #0":
            one.acl.delrule(int(rule.findtext("ID")))
    user = make_user("alice", "pw", [gid])
    with pytest.raises(pyone_error()) as e:
        user.hostrecovery.info(hid)
    assert "Not authorized to perform MANAGE HOST" in str(e.value)
    # Every host: filtered to what the user may manage (nothing), not refused.
    ans = oned.raw_call("one.hostrecovery.info", user.session, -1)
    assert ans[0] is True and empty_pool(ans[1])
    # oneadmin may read the records of a host that no longer exists.
    ans = oned.admin_call("one.hostrecovery.info", 999)
    assert ans[0] is True and empty_pool(ans[1])
    ans = oned.admin_call("one.hostrecovery.info", "x")
    assert ans[0] is False


def empty_pool(xml: str) -> bool:
    root = parse_xml(xml)
    return root.tag == "HOST_RECOVERY_POOL" and len(root) == 0


def pyone_error():
    import pyone
    return (pyone.OneAuthorizationException, pyone.OneException, xmlrpc.client.Fault)
