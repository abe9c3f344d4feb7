"""The VM lifecycle on dummy hosts, driven through pyone: every legal transition of
one.vm.deploy / one.vm.action / one.vm.migrate with its STATE / LCM_STATE numbers, its
HISTORY_RECORDS (count, SEQ, HID, ACTION, time stamps) and the host capacity it charges
(HOST_SHARE CPU_USAGE / MEM_USAGE / RUNNING_VMS and HOST/VMS); then the refused actions.

Dummy operations complete at once (DUMMY_DELAY 0) unless a test gives the host a delay, so
every test polls for the state it expects (lifecycle_util.wait_state) and never sleeps.
Expected values are OpenNebula's (LifeCycleManager / DispatchManager / VirtualMachineAPI);
where oned differs the test is an xfail naming the difference.
"""

from __future__ import annotations

import pyone
import pytest

from harness import xsd_check
from lifecycle_util import (
    A_LIVE_MIGRATE, A_MIGRATE, A_NONE, A_POWEROFF, A_POWEROFF_HARD, A_POWEROFF_HARD_MIGRATE,
    A_POWEROFF_MIGRATE, A_RESUME, A_STOP, A_SUSPEND, A_TERMINATE, A_TERMINATE_HARD, A_UNDEPLOY,
    A_UNDEPLOY_HARD, ACTIVE, BOOT, BOOT_MIGRATE, BOOT_POWEROFF, CPU_SHARE, DONE, EPILOG,
    EPILOG_STOP, EPILOG_UNDEPLOY, FAST_MONITOR, HOLD, LCM_INIT, MEM_SHARE, MIGRATE, PENDING,
    POWEROFF, PROLOG, PROLOG_MIGRATE, PROLOG_MIGRATE_POWEROFF, PROLOG_MIGRATE_SUSPEND, RUNNING,
    SAVE_MIGRATE, SAVE_STOP, SAVE_SUSPEND, SHUTDOWN, SHUTDOWN_POWEROFF, SHUTDOWN_UNDEPLOY, STOPPED,
    SUSPENDED, UNDEPLOYED, act, add_host, assert_host, configure_host, deploy, host_share, new_vm,
    refused, running_vm, start_oned, vm, vm_in, vm_log, wait_for, wait_state,
)


@pytest.fixture
def hosts(one):
    """Two dummy hosts, h1 and h2, in the default cluster."""
    return add_host(one, "h1"), add_host(one, "h2")


def lcm_lines(oned, vid):
    """The states vm.log went through, in order (the text after 'New ... state is ')."""
    return [line.split(" state is ", 1)[1] for line in vm_log(oned, vid).splitlines() if " state is " in line]


# ---------------------------------------------------------------------------------------
# deploy


def test_deploy_runs_prolog_boot_and_charges_the_host(oned, one, hosts):
    h1, h2 = hosts
    vid = new_vm(one)
    assert one.vm.deploy(vid, h1, False, -1) == vid
    v = wait_state(oned, vid, ACTIVE, RUNNING)
    assert v.deploy_id == f"one-{vid}"
    assert v.error == ""
    assert len(v.history) == 1
    h = v.last()
    assert (h["OID"], h["SEQ"], h["HID"], h["HOSTNAME"], h["DS_ID"], h["CID"]) == (vid, 0, h1, "h1", 0, 0)
    assert h["STIME"] > 0 and h["PSTIME"] > 0 and h["PETIME"] >= h["PSTIME"] and h["RSTIME"] > 0
    assert (h["ETIME"], h["RETIME"], h["ESTIME"], h["EETIME"]) == (0, 0, 0, 0)
    assert v.root.findtext("HISTORY_RECORDS/HISTORY/VM_MAD") == "dummy"
    assert v.tmpl("TM_MAD_SYSTEM") == "shared"
    assert_host(oned, h1, vid)
    assert_host(oned, h2)
    assert lcm_lines(oned, vid) == ["PROLOG", "BOOT", "RUNNING"]
    xsd_check(v.xml)


def test_deploy_goes_through_prolog_and_boot_with_the_host_charged(oned, one):
    # With a slow driver the transient states can be seen, and the host is charged from PROLOG.
    hid = add_host(one, "slow", delay_ms=300)
    vid = new_vm(one)
    one.vm.deploy(vid, hid, False, -1)
    v = vm(oned, vid)
    assert v.pair == (ACTIVE, PROLOG), "deploy answers once PROLOG is committed"
    assert v.last()["PSTIME"] > 0 and v.last()["PETIME"] == 0
    assert_host(oned, hid, vid)
    xsd_check(v.xml)
    v = wait_state(oned, vid, ACTIVE, BOOT)
    assert v.last()["PETIME"] > 0
    assert_host(oned, hid, vid)
    wait_state(oned, vid, ACTIVE, RUNNING)
    assert_host(oned, hid, vid)


def test_deploy_from_hold(oned, one, hosts):
    vid = new_vm(one, hold=True)
    assert vm(oned, vid).pair == (HOLD, LCM_INIT)
    deploy(oned, one, vid, hosts[0])
    assert_host(oned, hosts[0], vid)


def test_deploy_enforce_refuses_a_host_too_small(oned_factory, tmp_path):
    o = start_oned(oned_factory, tmp_path, FAST_MONITOR)
    one = o.client()
    small = add_host(one, "small")
    one.host.update(small, 'DUMMY_TOTALCPU="50"', 1)
    wait_for("host 'small' monitored with MAX_CPU 50", lambda: host_share(o, small).max_cpu == 50)
    vid = new_vm(one)
    with pytest.raises(pyone.OneActionException):
        one.vm.deploy(vid, small, True, -1)
    v = vm(o, vid)
    assert v.pair == (PENDING, LCM_INIT) and v.history == []
    assert_host(o, small)
    # Without enforce the host is over-committed, as OpenNebula allows.
    deploy(o, one, vid, small)
    assert_host(o, small, vid)
    # A migration with enforce is checked the same way.
    big = add_host(one, "big")
    tiny = add_host(one, "tiny")
    one.host.update(tiny, 'DUMMY_TOTALMEMORY="1024"', 1)
    wait_for("host 'tiny' monitored", lambda: host_share(o, tiny).max_mem == 1024)
    wait_for("host 'big' monitored", lambda: host_share(o, big).max_cpu == 800)
    refused(o, vid, lambda: one.vm.migrate(vid, tiny, False, True, -1, 0), match=None)
    assert_host(o, tiny)
    assert one.vm.migrate(vid, big, False, True, -1, 0) == vid
    wait_state(o, vid, ACTIVE, RUNNING)
    assert_host(o, big, vid)
    assert_host(o, small)


def test_deploy_enforce_message_is_opennebulas(oned_factory, tmp_path):
    o = start_oned(oned_factory, tmp_path, FAST_MONITOR)
    one = o.client()
    small = add_host(one, "small")
    one.host.update(small, 'DUMMY_TOTALCPU="50"', 1)
    wait_for("host monitored with MAX_CPU 50", lambda: host_share(o, small).max_cpu == 50)
    vid = new_vm(one)
    r = o.admin_call("one.vm.deploy", vid, small, True, -1)
    assert r[:3] == [False, f"[one.vm.deploy] virtual machine [{vid}] does not fit in host [{small}]. "
                     "Not enough CPU: 100/50", 0x800]


def test_deploy_to_a_missing_host_or_a_non_system_datastore_fails(oned, one, hosts):
    vid = new_vm(one)
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.deploy(vid, 99, False, -1)
    with pytest.raises(pyone.OneException):
        one.vm.deploy(vid, hosts[0], False, 1)  # 1: the default image datastore
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.deploy(vid, hosts[0], False, 77)
    v = vm(oned, vid)
    assert v.pair == (PENDING, LCM_INIT) and v.history == []
    assert_host(oned, hosts[0])


def test_deploy_to_a_non_system_datastore_answers_like_opennebula(oned, one, hosts):
    vid = new_vm(one)
    r = oned.admin_call("one.vm.deploy", vid, hosts[0], False, 1)
    assert r[:3] == [False, "[one.vm.deploy] Trying to use datastore [1] to deploy the VM, but it is not "
                     "of type system datastore.", 0x2000]


# ---------------------------------------------------------------------------------------
# terminate


@pytest.mark.parametrize("name", ["terminate", "terminate-hard"])
def test_terminate_running(oned, one, hosts, name):
    h1 = hosts[0]
    vid = running_vm(oned, one, h1)
    assert one.vm.action(name, vid) == vid
    assert vm(oned, vid).pair in ((ACTIVE, SHUTDOWN), (ACTIVE, EPILOG), (DONE, LCM_INIT))
    v = wait_state(oned, vid, DONE, LCM_INIT)
    assert v.etime > 0
    assert len(v.history) == 1
    h = v.last()
    assert h["ACTION"] == (A_TERMINATE if name == "terminate" else A_TERMINATE_HARD)
    assert h["ETIME"] > 0 and h["RETIME"] > 0 and h["ESTIME"] > 0 and h["EETIME"] >= h["ESTIME"]
    assert_host(oned, h1)
    lines = lcm_lines(oned, vid)
    assert lines[-3:] == ["SHUTDOWN", "EPILOG", "DONE"]
    xsd_check(v.xml)


@pytest.mark.parametrize("where", ["POWEROFF", "SUSPENDED", "STOPPED", "UNDEPLOYED"])
def test_terminate_from_a_rest_state_runs_the_epilog(oned, one, hosts, where):
    h1 = hosts[0]
    vid = vm_in(oned, one, h1, where)
    n = len(vm(oned, vid).history)
    assert one.vm.action("terminate", vid) == vid
    v = wait_state(oned, vid, DONE, LCM_INIT)
    assert "EPILOG" in lcm_lines(oned, vid)[-2:]
    assert len(v.history) == n == 1, "terminating a stopped VM adds no HISTORY record"
    h = v.last()
    assert h["ACTION"] == A_TERMINATE
    assert h["ETIME"] > 0 and h["ESTIME"] > 0 and h["EETIME"] > 0
    assert v.etime > 0
    assert_host(oned, h1)


def test_terminate_hard_of_a_poweroff_vm_records_terminate(oned, one, hosts):
    vid = vm_in(oned, one, hosts[0], "POWEROFF")
    one.vm.action("terminate-hard", vid)
    v = wait_state(oned, vid, DONE, LCM_INIT)
    assert v.last()["ACTION"] == A_TERMINATE


@pytest.mark.parametrize("where", ["PENDING", "HOLD"])
@pytest.mark.parametrize("name", ["terminate", "terminate-hard"])
def test_terminate_of_a_vm_never_deployed_is_immediate(oned, one, hosts, where, name):
    vid = vm_in(oned, one, hosts[0], where)
    assert one.vm.action(name, vid) == vid
    v = vm(oned, vid)
    assert v.pair == (DONE, LCM_INIT), "no driver work: DONE when the call returns"
    assert v.history == [] and v.etime > 0
    assert_host(oned, hosts[0])


def test_terminate_of_a_done_vm_is_a_successful_no_op(oned, one, hosts):
    vid = vm_in(oned, one, hosts[0], "DONE")
    before = vm(oned, vid)
    assert oned.admin_call("one.vm.action", "terminate", vid) == [True, vid, 0]
    assert oned.admin_call("one.vm.action", "terminate-hard", vid) == [True, vid, 0]
    after = vm(oned, vid)
    assert after.pair == (DONE, LCM_INIT)
    assert after.history == before.history and after.etime == before.etime
    assert_host(oned, hosts[0])


# ---------------------------------------------------------------------------------------
# poweroff, suspend, resume


@pytest.mark.parametrize("name,code", [("poweroff", A_POWEROFF), ("poweroff-hard", A_POWEROFF_HARD)])
def test_poweroff_and_resume(oned, one, hosts, name, code):
    h1 = hosts[0]
    vid = running_vm(oned, one, h1)
    assert one.vm.action(name, vid) == vid
    assert vm(oned, vid).pair in ((ACTIVE, SHUTDOWN_POWEROFF), (POWEROFF, LCM_INIT))
    v = wait_state(oned, vid, POWEROFF, LCM_INIT)
    assert (v.prev_state, v.prev_lcm) == (ACTIVE, SHUTDOWN_POWEROFF)
    assert len(v.history) == 1
    h = v.last()
    assert h["ACTION"] == code and h["ETIME"] > 0 and h["RETIME"] > 0 and h["ESTIME"] == 0
    assert_host(oned, h1, vid)  # a powered-off VM keeps its place on the host
    xsd_check(v.xml)

    assert one.vm.action("resume", vid) == vid
    assert vm(oned, vid).pair in ((ACTIVE, BOOT_POWEROFF), (ACTIVE, RUNNING))
    v = wait_state(oned, vid, ACTIVE, RUNNING)
    assert len(v.history) == 2, "resume opens a new HISTORY record"
    old, new = v.history
    assert old["ACTION"] == code and old["ETIME"] > 0
    assert (new["SEQ"], new["HID"], new["HOSTNAME"], new["DS_ID"]) == (1, h1, "h1", 0)
    assert new["STIME"] > 0 and new["RSTIME"] > 0 and new["ETIME"] == 0
    assert new["ACTION"] == A_RESUME
    assert_host(oned, h1, vid)
    assert lcm_lines(oned, vid)[-2:] == ["BOOT_POWEROFF", "RUNNING"]
    xsd_check(v.xml)


def test_suspend_and_resume(oned, one, hosts):
    h1 = hosts[0]
    vid = running_vm(oned, one, h1)
    assert one.vm.action("suspend", vid) == vid
    assert vm(oned, vid).pair in ((ACTIVE, SAVE_SUSPEND), (SUSPENDED, LCM_INIT))
    v = wait_state(oned, vid, SUSPENDED, LCM_INIT)
    assert len(v.history) == 1
    h = v.last()
    assert h["ACTION"] == A_SUSPEND and h["ETIME"] > 0
    assert_host(oned, h1, vid)
    xsd_check(v.xml)

    assert one.vm.action("resume", vid) == vid
    v = wait_state(oned, vid, ACTIVE, RUNNING)
    assert len(v.history) == 2
    new = v.last()
    assert (new["SEQ"], new["HID"], new["ETIME"], new["ACTION"]) == (1, h1, 0, A_RESUME)
    assert new["RSTIME"] > 0
    assert_host(oned, h1, vid)
    assert lcm_lines(oned, vid)[-4:] == ["SAVE_SUSPEND", "SUSPENDED", "BOOT_SUSPENDED", "RUNNING"]


def test_stop_resume_and_deploy_go_through_prolog_resume(oned, one, hosts):
    h1, h2 = hosts
    vid = running_vm(oned, one, h1)
    assert one.vm.action("stop", vid) == vid
    assert vm(oned, vid).pair in ((ACTIVE, SAVE_STOP), (ACTIVE, EPILOG_STOP), (STOPPED, LCM_INIT))
    v = wait_state(oned, vid, STOPPED, LCM_INIT)
    h = v.last()
    assert len(v.history) == 1
    assert h["ACTION"] == A_STOP and h["ETIME"] > 0 and h["ESTIME"] > 0 and h["EETIME"] > 0
    assert_host(oned, h1)  # the files left the host
    xsd_check(v.xml)

    assert one.vm.action("resume", vid) == vid
    v = vm(oned, vid)
    assert v.pair == (PENDING, LCM_INIT) and len(v.history) == 1
    assert_host(oned, h1)

    assert one.vm.deploy(vid, h2, False, -1) == vid
    v = wait_state(oned, vid, ACTIVE, RUNNING)
    assert len(v.history) == 2
    new = v.last()
    assert (new["SEQ"], new["HID"], new["HOSTNAME"], new["ETIME"]) == (1, h2, "h2", 0)
    assert new["PSTIME"] > 0 and new["PETIME"] > 0 and new["RSTIME"] > 0
    assert_host(oned, h2, vid)
    assert_host(oned, h1)
    log = vm_log(oned, vid)
    assert "PROLOG_RESUME" in log and "BOOT_STOPPED" in log
    assert lcm_lines(oned, vid)[-3:] == ["PROLOG_RESUME", "BOOT_STOPPED", "RUNNING"]
    xsd_check(v.xml)


@pytest.mark.parametrize("name,code", [("undeploy", A_UNDEPLOY), ("undeploy-hard", A_UNDEPLOY_HARD)])
def test_undeploy_resume_and_deploy_go_through_prolog_undeploy(oned, one, hosts, name, code):
    h1 = hosts[0]
    vid = running_vm(oned, one, h1)
    assert one.vm.action(name, vid) == vid
    assert vm(oned, vid).pair in ((ACTIVE, SHUTDOWN_UNDEPLOY), (ACTIVE, EPILOG_UNDEPLOY), (UNDEPLOYED, LCM_INIT))
    v = wait_state(oned, vid, UNDEPLOYED, LCM_INIT)
    assert len(v.history) == 1
    h = v.last()
    assert h["ACTION"] == code and h["ETIME"] > 0 and h["RETIME"] > 0 and h["EETIME"] > 0
    assert_host(oned, h1)
    xsd_check(v.xml)

    assert one.vm.action("resume", vid) == vid
    assert vm(oned, vid).pair == (PENDING, LCM_INIT)
    deploy(oned, one, vid, h1)
    v = vm(oned, vid)
    assert len(v.history) == 2 and v.last()["SEQ"] == 1 and v.last()["HID"] == h1
    assert_host(oned, h1, vid)
    assert lcm_lines(oned, vid)[-3:] == ["PROLOG_UNDEPLOY", "BOOT_UNDEPLOY", "RUNNING"]


def test_deploy_of_an_undeployed_vm_without_resume(oned, one, hosts):
    # one.vm.deploy accepts UNDEPLOYED and STOPPED VMs directly (OpenNebula does too).
    h1, h2 = hosts
    vid = vm_in(oned, one, h1, "UNDEPLOYED")
    assert one.vm.deploy(vid, h2, False, -1) == vid
    wait_state(oned, vid, ACTIVE, RUNNING)
    assert lcm_lines(oned, vid)[-3:] == ["PROLOG_UNDEPLOY", "BOOT_UNDEPLOY", "RUNNING"]
    assert_host(oned, h2, vid)
    assert_host(oned, h1)


def test_undeploy_from_poweroff(oned, one, hosts):
    h1 = hosts[0]
    vid = vm_in(oned, one, h1, "POWEROFF")
    assert_host(oned, h1, vid)
    assert one.vm.action("undeploy", vid) == vid
    v = wait_state(oned, vid, UNDEPLOYED, LCM_INIT)
    assert lcm_lines(oned, vid)[-2:] == ["EPILOG_UNDEPLOY", "UNDEPLOYED"]
    assert len(v.history) == 1 and v.last()["ACTION"] == A_UNDEPLOY and v.last()["EETIME"] > 0
    assert_host(oned, h1)


def test_stop_from_suspended(oned, one, hosts):
    h1 = hosts[0]
    vid = vm_in(oned, one, h1, "SUSPENDED")
    assert one.vm.action("stop", vid) == vid
    v = wait_state(oned, vid, STOPPED, LCM_INIT)
    assert lcm_lines(oned, vid)[-2:] == ["EPILOG_STOP", "STOPPED"]
    assert len(v.history) == 1 and v.last()["ACTION"] == A_STOP and v.last()["EETIME"] > 0
    assert_host(oned, h1)


def test_hold_and_release(oned, one):
    vid = new_vm(one)
    assert one.vm.action("hold", vid) == vid
    v = vm(oned, vid)
    assert v.pair == (HOLD, LCM_INIT) and (v.prev_state, v.prev_lcm) == (PENDING, LCM_INIT)
    assert one.vm.action("release", vid) == vid
    v = vm(oned, vid)
    assert v.pair == (PENDING, LCM_INIT) and v.prev_state == HOLD and v.history == []


@pytest.mark.parametrize("name", ["reboot", "reboot-hard"])
def test_reboot_keeps_the_vm_running_and_clears_resched(oned, one, hosts, name):
    h1 = hosts[0]
    vid = running_vm(oned, one, h1)
    one.vm.action("resched", vid)
    assert vm(oned, vid).resched == 1
    assert one.vm.action(name, vid) == vid
    v = vm(oned, vid)
    assert v.pair == (ACTIVE, RUNNING) and v.resched == 0
    op = "reboot" if name == "reboot" else "reset"
    wait_for(f"'{op} done' in vm.log", lambda: f"{op} done" in vm_log(oned, vid))
    v = vm(oned, vid)
    assert v.pair == (ACTIVE, RUNNING) and v.error == ""
    assert len(v.history) == 1 and v.last()["ETIME"] == 0
    assert_host(oned, h1, vid)


def test_reboot_is_not_recorded_in_history(oned, one, hosts):
    vid = running_vm(oned, one, hosts[0])
    one.vm.action("reboot", vid)
    assert vm(oned, vid).last()["ACTION"] == A_NONE


@pytest.mark.parametrize("where", ["RUNNING", "POWEROFF"])
def test_resched_and_unresched_set_the_flag(oned, one, hosts, where):
    vid = vm_in(oned, one, hosts[0], where)
    before = vm(oned, vid)
    assert one.vm.action("resched", vid) == vid
    v = vm(oned, vid)
    assert v.resched == 1 and v.pair == before.pair and v.history == before.history
    assert one.vm.action("unresched", vid) == vid
    v = vm(oned, vid)
    assert v.resched == 0 and v.pair == before.pair
    xsd_check(v.xml)


# ---------------------------------------------------------------------------------------
# migrate


@pytest.mark.parametrize("mtype,code,boot", [
    (0, A_MIGRATE, "BOOT_MIGRATE"),
    (1, A_POWEROFF_MIGRATE, "BOOT"),
    (2, A_POWEROFF_HARD_MIGRATE, "BOOT"),
])
def test_cold_migrate(oned, one, hosts, mtype, code, boot):
    h1, h2 = hosts
    vid = running_vm(oned, one, h1)
    assert one.vm.migrate(vid, h2, False, False, -1, mtype) == vid
    assert vm(oned, vid).pair in ((ACTIVE, SAVE_MIGRATE), (ACTIVE, PROLOG_MIGRATE), (ACTIVE, BOOT_MIGRATE),
                                  (ACTIVE, BOOT), (ACTIVE, RUNNING))
    v = wait_state(oned, vid, ACTIVE, RUNNING)
    assert len(v.history) == 2
    src, dst = v.history
    assert (src["SEQ"], src["HID"], src["ACTION"]) == (0, h1, code)
    assert src["ETIME"] > 0 and src["RETIME"] > 0
    assert (dst["SEQ"], dst["HID"], dst["HOSTNAME"], dst["DS_ID"], dst["ETIME"]) == (1, h2, "h2", 0, 0)
    assert dst["STIME"] > 0 and dst["PSTIME"] > 0 and dst["PETIME"] > 0 and dst["RSTIME"] > 0
    assert_host(oned, h2, vid)
    assert_host(oned, h1)
    assert lcm_lines(oned, vid)[-4:] == ["SAVE_MIGRATE", "PROLOG_MIGRATE", boot, "RUNNING"]
    xsd_check(v.xml)


def test_cold_migrate_charges_the_destination_from_the_start(oned, one):
    h1, h2 = add_host(one, "h1"), add_host(one, "h2")
    vid = running_vm(oned, one, h1)
    configure_host(one, h1, delay_ms=300)  # the save on the source takes a while
    one.vm.migrate(vid, h2, False, False, -1, 0)
    assert vm(oned, vid).pair == (ACTIVE, SAVE_MIGRATE)
    # OpenNebula charges the destination when the migration starts; the source is left later.
    assert_host(oned, h2, vid)
    wait_state(oned, vid, ACTIVE, RUNNING)
    assert_host(oned, h1)
    assert_host(oned, h2, vid)


def test_live_migrate(oned, one, hosts):
    h1, h2 = hosts
    vid = running_vm(oned, one, h1)
    assert one.vm.migrate(vid, h2, True, False, -1, 0) == vid
    assert vm(oned, vid).pair in ((ACTIVE, MIGRATE), (ACTIVE, RUNNING))
    v = wait_state(oned, vid, ACTIVE, RUNNING)
    assert len(v.history) == 2
    src, dst = v.history
    assert (src["HID"], src["ACTION"]) == (h1, A_LIVE_MIGRATE) and src["ETIME"] > 0
    assert (dst["SEQ"], dst["HID"], dst["ETIME"]) == (1, h2, 0) and dst["RSTIME"] > 0
    assert_host(oned, h2, vid)
    assert_host(oned, h1)
    assert lcm_lines(oned, vid)[-2:] == ["MIGRATE", "RUNNING"]
    # And back again.
    one.vm.migrate(vid, h1, True, False, -1, 0)
    v = wait_state(oned, vid, ACTIVE, RUNNING)
    assert [h["HID"] for h in v.history] == [h1, h2, h1]
    assert [h["SEQ"] for h in v.history] == [0, 1, 2]
    assert_host(oned, h1, vid)
    assert_host(oned, h2)


@pytest.mark.parametrize("where,via,rest", [
    ("POWEROFF", PROLOG_MIGRATE_POWEROFF, (POWEROFF, LCM_INIT)),
    ("SUSPENDED", PROLOG_MIGRATE_SUSPEND, (SUSPENDED, LCM_INIT)),
])
def test_migrate_a_stopped_domain_moves_its_files(oned, one, hosts, where, via, rest):
    h1, h2 = hosts
    vid = vm_in(oned, one, h1, where)
    assert one.vm.migrate(vid, h2, False, False, -1, 0) == vid
    assert vm(oned, vid).pair in ((ACTIVE, via), rest)
    v = wait_state(oned, vid, *rest)
    assert len(v.history) == 2
    src, dst = v.history
    assert src["HID"] == h1 and src["ETIME"] > 0
    assert (dst["SEQ"], dst["HID"]) == (1, h2) and dst["PSTIME"] > 0 and dst["PETIME"] > 0
    assert_host(oned, h2, vid)
    assert_host(oned, h1)
    names = {PROLOG_MIGRATE_POWEROFF: "PROLOG_MIGRATE_POWEROFF", PROLOG_MIGRATE_SUSPEND: "PROLOG_MIGRATE_SUSPEND"}
    assert names[via] in lcm_lines(oned, vid)
    xsd_check(v.xml)
    # It resumes on the new host.
    one.vm.action("resume", vid)
    v = wait_state(oned, vid, ACTIVE, RUNNING)
    assert v.last()["HID"] == h2 and len(v.history) == 3
    assert_host(oned, h2, vid)


def test_migration_history_actions_match_opennebula(oned, one, hosts):
    h1, h2 = hosts
    a = running_vm(oned, one, h1)
    one.vm.migrate(a, h2, False, False, -1, 0)
    v = wait_state(oned, a, ACTIVE, RUNNING)
    assert [h["ACTION"] for h in v.history] == [A_MIGRATE, A_MIGRATE]
    b = vm_in(oned, one, h1, "POWEROFF")
    one.vm.migrate(b, h2, False, False, -1, 0)
    v = wait_state(oned, b, POWEROFF, LCM_INIT)
    assert [h["ACTION"] for h in v.history] == [A_POWEROFF, A_MIGRATE]


def test_unknown_migration_type_is_a_plain_migration(oned, one, hosts):
    vid = running_vm(oned, one, hosts[0])
    assert one.vm.migrate(vid, hosts[1], False, False, -1, 3) == vid
    wait_state(oned, vid, ACTIVE, RUNNING)
    assert "BOOT_MIGRATE" in lcm_lines(oned, vid)


def test_migrate_to_the_same_host_and_datastore_is_refused(oned, one, hosts):
    vid = running_vm(oned, one, hosts[0])
    e = refused(oned, vid, lambda: one.vm.migrate(vid, hosts[0], False, False, -1, 0), match=None)
    assert f"VM is already running on host [{hosts[0]}] and datastore [0]" in str(e)
    assert_host(oned, hosts[0], vid)


def test_deploy_and_migrate_refusals_use_opennebulas_messages(oned, one, hosts):
    vid = running_vm(oned, one, hosts[0])
    r = oned.admin_call("one.vm.deploy", vid, hosts[1], False, -1)
    assert r[:3] == [False, "[one.vm.deploy] Deploy action is not available for state RUNNING", 0x800]
    p = new_vm(one)
    r = oned.admin_call("one.vm.migrate", p, hosts[1], False, False, -1, 0)
    assert r[:3] == [False, "[one.vm.migrate] Migrate action is not available for state PENDING", 0x800]


# ---------------------------------------------------------------------------------------
# Authorization: the owner manages his VM, placement is for administrators


def test_owner_may_poweroff_and_terminate_but_not_deploy_or_migrate(oned, one, make_user, hosts):
    h1, h2 = hosts
    ann = make_user("ann", "pw")
    vid = ann.vm.allocate('CPU="1"\nMEMORY="256"\n')
    other = ann.vm.allocate('CPU="1"\nMEMORY="256"\n')
    with pytest.raises(pyone.OneAuthorizationException):
        ann.vm.deploy(vid, h1, False, -1)
    assert vm(oned, vid).pair == (PENDING, LCM_INIT)
    deploy(oned, one, vid, h1)
    with pytest.raises(pyone.OneAuthorizationException):
        ann.vm.migrate(vid, h2, False, False, -1, 0)
    with pytest.raises(pyone.OneAuthorizationException):
        ann.vm.migrate(vid, h2, True, False, -1, 0)
    with pytest.raises(pyone.OneAuthorizationException):
        ann.vm.recover(vid, 2)
    with pytest.raises(pyone.OneAuthorizationException):
        ann.vm.action("resched", vid)
    assert vm(oned, vid).pair == (ACTIVE, RUNNING)
    assert_host(oned, h1, vid)
    assert_host(oned, h2)

    assert ann.vm.action("poweroff", vid) == vid
    wait_state(oned, vid, POWEROFF, LCM_INIT)
    assert ann.vm.action("resume", vid) == vid
    wait_state(oned, vid, ACTIVE, RUNNING)
    assert ann.vm.action("terminate", vid) == vid
    wait_state(oned, vid, DONE, LCM_INIT)
    assert_host(oned, h1)
    # Another user may not touch it at all.
    bob = make_user("bob", "pw")
    with pytest.raises(pyone.OneAuthorizationException):
        bob.vm.action("hold", other)
    with pytest.raises(pyone.OneAuthorizationException):
        bob.vm.deploy(other, h1, False, -1)


# ---------------------------------------------------------------------------------------
# Refused actions: one daemon for the whole table (each case has a VM of its own, and no
# case looks at host capacity).


@pytest.fixture(scope="module")
def table_host(shared_one):
    return add_host(shared_one, "table")


def _call(one, op, vid, hid):
    kind, arg = op
    if kind == "action":
        return lambda: one.vm.action(arg, vid)
    if kind == "deploy":
        return lambda: one.vm.deploy(vid, hid, False, -1)
    if kind == "migrate":
        return lambda: one.vm.migrate(vid, hid, arg, False, -1, 0)
    raise AssertionError(kind)


def A(name):
    return ("action", name)


DEPLOY = ("deploy", None)
COLD = ("migrate", False)
LIVE = ("migrate", True)

REFUSED = [
    ("RUNNING", A("resume")), ("RUNNING", A("hold")), ("RUNNING", A("release")), ("RUNNING", DEPLOY),
    ("POWEROFF", A("suspend")), ("POWEROFF", A("stop")), ("POWEROFF", A("poweroff")),
    ("POWEROFF", A("reboot")), ("POWEROFF", A("reboot-hard")), ("POWEROFF", A("hold")),
    ("POWEROFF", A("release")), ("POWEROFF", DEPLOY), ("POWEROFF", LIVE),
    ("SUSPENDED", A("suspend")), ("SUSPENDED", A("poweroff")), ("SUSPENDED", A("undeploy")),
    ("SUSPENDED", A("reboot")), ("SUSPENDED", A("resched")), ("SUSPENDED", A("hold")),
    ("SUSPENDED", DEPLOY), ("SUSPENDED", LIVE),
    ("STOPPED", A("stop")), ("STOPPED", A("suspend")), ("STOPPED", A("poweroff")),
    ("STOPPED", A("undeploy")), ("STOPPED", A("reboot")), ("STOPPED", A("resched")),
    ("STOPPED", A("hold")), ("STOPPED", COLD), ("STOPPED", LIVE),
    ("UNDEPLOYED", A("undeploy")), ("UNDEPLOYED", A("poweroff")), ("UNDEPLOYED", A("stop")),
    ("UNDEPLOYED", A("suspend")), ("UNDEPLOYED", A("release")), ("UNDEPLOYED", COLD),
    ("PENDING", A("poweroff")), ("PENDING", A("release")), ("PENDING", A("resume")),
    ("PENDING", A("stop")), ("PENDING", A("suspend")), ("PENDING", A("undeploy")),
    ("PENDING", A("reboot")), ("PENDING", A("resched")), ("PENDING", COLD), ("PENDING", LIVE),
    ("HOLD", A("hold")), ("HOLD", A("poweroff")), ("HOLD", A("resume")), ("HOLD", COLD),
    ("DONE", A("hold")), ("DONE", A("release")), ("DONE", A("resume")), ("DONE", A("poweroff")),
    ("DONE", A("stop")), ("DONE", DEPLOY), ("DONE", COLD),
]


def _refused_id(where, op):
    kind, arg = op
    return f"{where}-{arg if kind == 'action' else kind + ('-live' if arg else '')}"


@pytest.mark.parametrize("where,op", REFUSED, ids=[_refused_id(w, o) for w, o in REFUSED])
def test_refused(shared_oned, shared_one, table_host, where, op):
    vid = vm_in(shared_oned, shared_one, table_host, where)
    refused(shared_oned, vid, _call(shared_one, op, vid, table_host))


def test_transient_states_refuse_other_actions(oned, one):
    # While a step runs (the driver takes 1.5 s) nothing else is accepted, not even terminate.
    hid = add_host(one, "slow", delay_ms=1500)
    other = add_host(one, "other")
    vid = new_vm(one)
    one.vm.deploy(vid, hid, False, -1)
    assert vm(oned, vid).pair == (ACTIVE, PROLOG)
    for call in (lambda: one.vm.action("terminate", vid), lambda: one.vm.action("poweroff", vid),
                 lambda: one.vm.action("suspend", vid), lambda: one.vm.action("hold", vid),
                 lambda: one.vm.action("resched", vid), lambda: one.vm.deploy(vid, other, False, -1),
                 lambda: one.vm.migrate(vid, other, False, False, -1, 0)):
        with pytest.raises(pyone.OneActionException):
            call()
    v = vm(oned, vid)
    assert v.pair == (ACTIVE, PROLOG) and len(v.history) == 1
    assert_host(oned, hid, vid)
    assert_host(oned, other)


def test_unknown_action_name(oned, one):
    vid = new_vm(one)
    with pytest.raises(pyone.OneActionException):
        one.vm.action("explode", vid)
    assert vm(oned, vid).pair == (PENDING, LCM_INIT)


def test_history_survives_a_restart(oned, one, hosts):
    h1, h2 = hosts
    vid = running_vm(oned, one, h1)
    one.vm.migrate(vid, h2, True, False, -1, 0)
    wait_state(oned, vid, ACTIVE, RUNNING)
    act(oned, one, "poweroff", vid, POWEROFF)
    before = vm(oned, vid)
    oned.restart()
    after = vm(oned, vid)
    assert after.pair == (POWEROFF, LCM_INIT)
    assert after.history == before.history
    assert_host(oned, h2, vid)
    assert_host(oned, h1)
    assert host_share(oned, h2).cpu == CPU_SHARE and host_share(oned, h2).mem == MEM_SHARE
