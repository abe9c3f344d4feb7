"""Failures of the VM lifecycle on dummy hosts: every multi-step operation with each of its
driver steps made to fail in turn (the host's DUMMY_FAIL), the state it lands in, the
USER_TEMPLATE/ERROR naming the step, the host capacity, and the way back: the same step
repeated, one.vm.recover (retry, success, failure, delete, delete-recreate) and terminate.
Last, oned is killed (SIGKILL) in the middle of an operation and must finish it after the
restart, charging the host exactly once.

Expected values are OpenNebula's (LifeCycleStates.cc, LifeCycleActions.cc,
DispatchManagerActions.cc); where oned differs the case is an xfail naming the difference.
"""

from __future__ import annotations

import pyone
import pytest

from harness import xsd_check
from lifecycle_util import (
    ACTIVE, BOOT, BOOT_FAILURE, BOOT_MIGRATE_FAILURE, BOOT_STOPPED_FAILURE, BOOT_UNDEPLOY_FAILURE,
    CLEANUP_DELETE, CLEANUP_RESUBMIT, DONE, EPILOG, EPILOG_FAILURE, EPILOG_STOP_FAILURE,
    EPILOG_UNDEPLOY_FAILURE, LCM_INIT, PENDING, POWEROFF, PROLOG, PROLOG_FAILURE,
    PROLOG_MIGRATE_FAILURE, PROLOG_MIGRATE_POWEROFF_FAILURE, PROLOG_MIGRATE_SUSPEND_FAILURE,
    PROLOG_RESUME_FAILURE, PROLOG_UNDEPLOY_FAILURE, R_DELETE, R_DELETE_RECREATE, R_FAILURE,
    R_RETRY, R_SUCCESS, RUNNING, STOPPED, SUSPENDED, UNDEPLOYED, add_host, assert_host,
    configure_host, deploy, host_share, new_vm, refused, running_vm, vm, vm_in, vm_log, wait_for,
    wait_state,
)

R = (ACTIVE, RUNNING)
POFF = (POWEROFF, LCM_INIT)
SUSP = (SUSPENDED, LCM_INIT)


def fail(lcm):
    return (ACTIVE, lcm)


# Each operation: the rest state it starts from (the VM placed on h1) and its calls.
OPS = {
    "deploy": ("PENDING", [("deploy",)]),
    "terminate": ("RUNNING", [("action", "terminate")]),
    "terminate-hard": ("RUNNING", [("action", "terminate-hard")]),
    "terminate-poweroff": ("POWEROFF", [("action", "terminate")]),
    "poweroff": ("RUNNING", [("action", "poweroff")]),
    "poweroff-hard": ("RUNNING", [("action", "poweroff-hard")]),
    "suspend": ("RUNNING", [("action", "suspend")]),
    "stop": ("RUNNING", [("action", "stop")]),
    "stop-suspended": ("SUSPENDED", [("action", "stop")]),
    "undeploy": ("RUNNING", [("action", "undeploy")]),
    "undeploy-hard": ("RUNNING", [("action", "undeploy-hard")]),
    "undeploy-poweroff": ("POWEROFF", [("action", "undeploy")]),
    "resume-poweroff": ("POWEROFF", [("action", "resume")]),
    "resume-suspended": ("SUSPENDED", [("action", "resume")]),
    "resume-stopped": ("STOPPED", [("action", "resume"), ("deploy",)]),
    "resume-undeployed": ("UNDEPLOYED", [("action", "resume"), ("deploy",)]),
    "migrate": ("RUNNING", [("migrate", False, 0)]),
    "migrate-poweroff-type": ("RUNNING", [("migrate", False, 1)]),
    "migrate-poweroff-hard-type": ("RUNNING", [("migrate", False, 2)]),
    "live-migrate": ("RUNNING", [("migrate", True, 0)]),
    "migrate-poweroff": ("POWEROFF", [("migrate", False, 0)]),
    "migrate-suspended": ("SUSPENDED", [("migrate", False, 0)]),
}

# Where each operation is meant to end: the state and the host charged (None: no host).
INTENDED = {
    "deploy": (R, "h1"),
    "terminate": ((DONE, LCM_INIT), None),
    "terminate-hard": ((DONE, LCM_INIT), None),
    "terminate-poweroff": ((DONE, LCM_INIT), None),
    "poweroff": (POFF, "h1"),
    "poweroff-hard": (POFF, "h1"),
    "suspend": (SUSP, "h1"),
    "stop": ((STOPPED, LCM_INIT), None),
    "stop-suspended": ((STOPPED, LCM_INIT), None),
    "undeploy": ((UNDEPLOYED, LCM_INIT), None),
    "undeploy-hard": ((UNDEPLOYED, LCM_INIT), None),
    "undeploy-poweroff": ((UNDEPLOYED, LCM_INIT), None),
    "resume-poweroff": (R, "h1"),
    "resume-suspended": (R, "h1"),
    "resume-stopped": (R, "h1"),
    "resume-undeployed": (R, "h1"),
    "migrate": (R, "h2"),
    "migrate-poweroff-type": (R, "h2"),
    "migrate-poweroff-hard-type": (R, "h2"),
    "live-migrate": (R, "h2"),
    "migrate-poweroff": (POFF, "h2"),
    "migrate-suspended": (SUSP, "h2"),
}

# (operation, failing driver step, host whose DUMMY_FAIL names it, landing state, host charged
# there).
SAGAS = [
    ("deploy", "prolog", "h1", fail(PROLOG_FAILURE), "h1"),
    ("deploy", "net_pre", "h1", fail(BOOT_FAILURE), "h1"),
    ("deploy", "deploy", "h1", fail(BOOT_FAILURE), "h1"),
    ("deploy", "net_post", "h1", fail(BOOT_FAILURE), "h1"),
    ("terminate", "shutdown", "h1", R, "h1"),
    ("terminate", "net_clean", "h1", R, "h1"),
    ("terminate", "epilog", "h1", fail(EPILOG_FAILURE), "h1"),
    ("terminate-hard", "cancel", "h1", R, "h1"),
    ("terminate-hard", "epilog", "h1", fail(EPILOG_FAILURE), "h1"),
    ("terminate-poweroff", "epilog", "h1", fail(EPILOG_FAILURE), "h1"),
    ("poweroff", "shutdown", "h1", R, "h1"),
    ("poweroff", "net_clean", "h1", R, "h1"),
    ("poweroff-hard", "cancel", "h1", R, "h1"),
    ("suspend", "save", "h1", R, "h1"),
    ("suspend", "net_clean", "h1", R, "h1"),
    ("stop", "save", "h1", R, "h1"),
    ("stop", "epilog_stop", "h1", fail(EPILOG_STOP_FAILURE), "h1"),
    ("stop-suspended", "epilog_stop", "h1", fail(EPILOG_STOP_FAILURE), "h1"),
    ("undeploy", "shutdown", "h1", R, "h1"),
    ("undeploy", "epilog_stop", "h1", fail(EPILOG_UNDEPLOY_FAILURE), "h1"),
    ("undeploy-hard", "cancel", "h1", R, "h1"),
    ("undeploy-poweroff", "epilog_stop", "h1", fail(EPILOG_UNDEPLOY_FAILURE), "h1"),
    ("resume-poweroff", "net_pre", "h1", POFF, "h1"),
    ("resume-poweroff", "deploy", "h1", POFF, "h1"),
    ("resume-poweroff", "net_post", "h1", POFF, "h1"),
    ("resume-suspended", "restore", "h1", SUSP, "h1"),
    ("resume-suspended", "net_post", "h1", SUSP, "h1"),
    ("resume-stopped", "prolog_resume", "h1", fail(PROLOG_RESUME_FAILURE), "h1"),
    ("resume-stopped", "net_pre", "h1", fail(BOOT_STOPPED_FAILURE), "h1"),
    ("resume-stopped", "restore", "h1", fail(BOOT_STOPPED_FAILURE), "h1"),
    ("resume-undeployed", "prolog_resume", "h1", fail(PROLOG_UNDEPLOY_FAILURE), "h1"),
    ("resume-undeployed", "deploy", "h1", fail(BOOT_UNDEPLOY_FAILURE), "h1"),
    ("migrate", "save", "h1", R, "h1"),
    ("migrate", "net_clean", "h1", R, "h1"),
    pytest.param("migrate", "prolog_migrate", "h2", fail(PROLOG_MIGRATE_FAILURE), "h2",
                 id="migrate-prolog_migrate"),
    ("migrate", "restore", "h2", fail(BOOT_MIGRATE_FAILURE), "h2"),
    ("migrate", "net_post", "h2", fail(BOOT_MIGRATE_FAILURE), "h2"),
    ("migrate-poweroff-type", "shutdown", "h1", R, "h1"),
    ("migrate-poweroff-type", "deploy", "h2", fail(BOOT_FAILURE), "h2"),
    ("migrate-poweroff-hard-type", "cancel", "h1", R, "h1"),
    ("live-migrate", "migrate", "h1", R, "h1"),
    ("live-migrate", "net_pre", "h2", R, "h1"),
    ("live-migrate", "net_post", "h2", R, "h1"),
    pytest.param("migrate-poweroff", "prolog_migrate", "h2", fail(PROLOG_MIGRATE_POWEROFF_FAILURE), "h2",
                 id="migrate-poweroff-prolog_migrate"),
    pytest.param("migrate-suspended", "prolog_migrate", "h2", fail(PROLOG_MIGRATE_SUSPEND_FAILURE), "h2",
                 id="migrate-suspended-prolog_migrate"),
]


def saga_id(p):
    return p.id if hasattr(p, "id") and p.id else f"{p[0]}-{p[1]}"


class Cloud:
    """A daemon with two dummy hosts, h1 and h2, and the operations of OPS."""

    def __init__(self, oned, one):
        self.oned, self.one = oned, one
        self.h = {"h1": add_host(one, "h1"), "h2": add_host(one, "h2")}

    def run(self, op: str, vid: int):
        for call in OPS[op][1]:
            if call[0] == "deploy":
                assert self.one.vm.deploy(vid, self.h["h1"], False, -1) == vid
            elif call[0] == "action":
                assert self.one.vm.action(call[1], vid) == vid
            else:
                assert self.one.vm.migrate(vid, self.h["h2"], call[1], False, -1, call[2]) == vid

    def charged(self, vid: int, where: str | None):
        for name, hid in self.h.items():
            if name == where:
                assert_host(self.oned, hid, vid)
            else:
                assert_host(self.oned, hid)

    def clear(self):
        for hid in self.h.values():
            configure_host(self.one, hid, fail="")


def errors(oned, vid):
    """The failed driver steps vm.log reports (one line each)."""
    return [line for line in vm_log(oned, vid).splitlines() if "][E]: Error executing " in line]


def wait_errors(oned, vid, n):
    """Waits until vm.log reports `n` failed steps; returns their lines."""
    return wait_for(f"{n} failed step(s) in vm.log of VM {vid}",
                    lambda: len(errors(oned, vid)) >= n and errors(oned, vid))


@pytest.fixture
def cloud(oned, one):
    return Cloud(oned, one)


@pytest.mark.parametrize("op,step,fail_on,landing,charged", SAGAS, ids=[saga_id(p) for p in SAGAS])
def test_saga_step_fails_then_recovers(cloud, op, step, fail_on, landing, charged):
    oned, one = cloud.oned, cloud.one
    vid = vm_in(oned, one, cloud.h["h1"], OPS[op][0])
    n_err = len(errors(oned, vid))
    configure_host(one, cloud.h[fail_on], fail=step)

    cloud.run(op, vid)
    lines = wait_errors(oned, vid, n_err + 1)
    v = wait_state(oned, vid, *landing)
    assert step in lines[-1], f"vm.log error line does not name {step}: {lines[-1]}"
    assert f"Error executing {step}" in v.error, v.error
    cloud.charged(vid, charged)
    hist = len(v.history)
    xsd_check(v.xml)

    # The same again while the step still fails: same landing, nothing charged twice.
    if landing[1] in (RUNNING, LCM_INIT):
        cloud.run(op, vid)
    else:
        assert one.vm.recover(vid, R_RETRY) == vid
    wait_errors(oned, vid, n_err + 2)
    v = wait_state(oned, vid, *landing)
    cloud.charged(vid, charged)

    # The step works again: the operation completes, from the rest state by repeating it,
    # from a failure state by recover retry.
    cloud.clear()
    if landing[1] in (RUNNING, LCM_INIT):
        cloud.run(op, vid)
    else:
        assert one.vm.recover(vid, R_RETRY) == vid
    state, host = INTENDED[op]
    v = wait_state(oned, vid, *state)
    cloud.charged(vid, host)
    assert len(v.history) >= hist
    # Retry of a VM that is not ACTIVE is refused (DispatchManager::retry).
    if state[0] != ACTIVE:
        refused(oned, vid, lambda: one.vm.recover(vid, R_RETRY), match=None)


# ---------------------------------------------------------------------------------------
# Capacity and history of a failed migration


def test_failed_save_migrate_releases_the_destination(cloud):
    oned, one = cloud.oned, cloud.one
    h1, h2 = cloud.h["h1"], cloud.h["h2"]
    vid = running_vm(oned, one, h1)
    configure_host(one, h1, fail="save")
    one.vm.migrate(vid, h2, False, False, -1, 0)
    wait_errors(oned, vid, 1)
    v = wait_state(oned, vid, *R)
    assert v.last()["HID"] == h1 and v.last()["ETIME"] == 0
    assert_host(oned, h1, vid)
    assert_host(oned, h2)
    # It still runs on h1: a poweroff there works.
    configure_host(one, h1, fail="")
    one.vm.action("poweroff", vid)
    wait_state(oned, vid, *POFF)
    assert_host(oned, h1, vid)


def test_failed_migration_keeps_the_attempt_in_history(cloud):
    oned, one = cloud.oned, cloud.one
    h1, h2 = cloud.h["h1"], cloud.h["h2"]
    vid = running_vm(oned, one, h1)
    configure_host(one, h1, fail="migrate")
    one.vm.migrate(vid, h2, True, False, -1, 0)
    wait_errors(oned, vid, 1)
    v = wait_state(oned, vid, *R)
    assert [h["HID"] for h in v.history] == [h1, h2, h1]
    assert v.history[1]["ETIME"] > 0 and v.history[2]["ETIME"] == 0


def test_failed_shutdown_clears_the_history_action(cloud):
    oned, one = cloud.oned, cloud.one
    vid = running_vm(oned, one, cloud.h["h1"])
    configure_host(one, cloud.h["h1"], fail="shutdown")
    one.vm.action("terminate", vid)
    wait_errors(oned, vid, 1)
    v = wait_state(oned, vid, *R)
    assert v.last()["ACTION"] == 0


# ---------------------------------------------------------------------------------------
# recover


def failed_vm(cloud, op, step, fail_on, landing):
    """A VM left in `landing` by `op` failing at `step` (DUMMY_FAIL then cleared)."""
    vid = vm_in(cloud.oned, cloud.one, cloud.h["h1"], OPS[op][0])
    configure_host(cloud.one, cloud.h[fail_on], fail=step)
    cloud.run(op, vid)
    wait_errors(cloud.oned, vid, 1)
    wait_state(cloud.oned, vid, *landing)
    cloud.clear()
    return vid


@pytest.mark.parametrize("op,step,fail_on,landing,after,host", [
    ("deploy", "prolog", "h1", fail(PROLOG_FAILURE), R, "h1"),
    pytest.param("deploy", "deploy", "h1", fail(BOOT_FAILURE), R, "h1", id="deploy-deploy"),
    ("terminate", "epilog", "h1", fail(EPILOG_FAILURE), (DONE, LCM_INIT), None),
    ("stop", "epilog_stop", "h1", fail(EPILOG_STOP_FAILURE), (STOPPED, LCM_INIT), None),
    ("undeploy", "epilog_stop", "h1", fail(EPILOG_UNDEPLOY_FAILURE), (UNDEPLOYED, LCM_INIT), None),
    ("resume-stopped", "restore", "h1", fail(BOOT_STOPPED_FAILURE), R, "h1"),
    ("resume-undeployed", "prolog_resume", "h1", fail(PROLOG_UNDEPLOY_FAILURE), R, "h1"),
    ("migrate", "restore", "h2", fail(BOOT_MIGRATE_FAILURE), R, "h2"),
])
def test_recover_success_concludes_the_failed_phase(cloud, op, step, fail_on, landing, after, host):
    oned, one = cloud.oned, cloud.one
    vid = failed_vm(cloud, op, step, fail_on, landing)
    hist = len(vm(oned, vid).history)
    assert one.vm.recover(vid, R_SUCCESS) == vid
    v = wait_state(oned, vid, *after)
    cloud.charged(vid, host)
    assert len(v.history) == hist, "recover success adds no HISTORY record"
    if after == R:
        assert v.deploy_id == f"one-{vid}"


@pytest.mark.parametrize("op,step,fail_on,landing", [
    ("deploy", "prolog", "h1", fail(PROLOG_FAILURE)),
    ("deploy", "net_post", "h1", fail(BOOT_FAILURE)),
    ("terminate", "epilog", "h1", fail(EPILOG_FAILURE)),
])
def test_recover_failure_of_a_failed_vm_keeps_it_there(cloud, op, step, fail_on, landing):
    oned, one = cloud.oned, cloud.one
    vid = failed_vm(cloud, op, step, fail_on, landing)
    before = vm(oned, vid)
    assert one.vm.recover(vid, R_FAILURE) == vid
    after = vm(oned, vid)
    assert after.pair == landing and after.history == before.history
    cloud.charged(vid, "h1")


def test_recover_failure_of_a_failed_migration_goes_back_to_the_source(cloud):
    oned, one = cloud.oned, cloud.one
    vid = failed_vm(cloud, "migrate", "prolog_migrate", "h2", fail(PROLOG_MIGRATE_FAILURE))
    one.vm.recover(vid, R_FAILURE)
    v = wait_state(oned, vid, *R)
    assert [h["HID"] for h in v.history] == [cloud.h["h1"], cloud.h["h2"], cloud.h["h1"]]
    cloud.charged(vid, "h1")


@pytest.mark.parametrize("op,step,fail_on,landing", [
    ("deploy", "prolog", "h1", fail(PROLOG_FAILURE)),
    ("deploy", "deploy", "h1", fail(BOOT_FAILURE)),
    ("terminate", "epilog", "h1", fail(EPILOG_FAILURE)),
    ("stop", "epilog_stop", "h1", fail(EPILOG_STOP_FAILURE)),
    ("migrate", "restore", "h2", fail(BOOT_MIGRATE_FAILURE)),
    ("resume-undeployed", "deploy", "h1", fail(BOOT_UNDEPLOY_FAILURE)),
])
def test_recover_delete_cleans_up_and_releases_the_host(cloud, op, step, fail_on, landing):
    oned, one = cloud.oned, cloud.one
    vid = failed_vm(cloud, op, step, fail_on, landing)
    assert one.vm.recover(vid, R_DELETE) == vid
    assert vm(oned, vid).pair in ((ACTIVE, CLEANUP_DELETE), (DONE, LCM_INIT))
    v = wait_state(oned, vid, DONE, LCM_INIT)
    assert v.etime > 0 and v.last()["ETIME"] > 0
    cloud.charged(vid, None)
    assert "CLEANUP_DELETE" in vm_log(oned, vid)
    xsd_check(v.xml)
    refused(oned, vid, lambda: one.vm.recover(vid, R_DELETE), match=None)


def test_recover_delete_of_a_running_vm(cloud):
    oned, one = cloud.oned, cloud.one
    vid = running_vm(oned, one, cloud.h["h1"])
    assert one.vm.recover(vid, R_DELETE) == vid
    wait_state(oned, vid, DONE, LCM_INIT)
    cloud.charged(vid, None)


@pytest.mark.parametrize("op,step,fail_on,landing", [
    ("deploy", "prolog", "h1", fail(PROLOG_FAILURE)),
    ("deploy", "net_post", "h1", fail(BOOT_FAILURE)),
    ("terminate", "epilog", "h1", fail(EPILOG_FAILURE)),
    ("migrate", "restore", "h2", fail(BOOT_MIGRATE_FAILURE)),
])
def test_recover_delete_recreate_resubmits_the_same_vm(cloud, op, step, fail_on, landing):
    oned, one = cloud.oned, cloud.one
    vid = failed_vm(cloud, op, step, fail_on, landing)
    hist = len(vm(oned, vid).history)
    assert one.vm.recover(vid, R_DELETE_RECREATE) == vid
    assert vm(oned, vid).pair in ((ACTIVE, CLEANUP_RESUBMIT), (PENDING, LCM_INIT))
    v = wait_state(oned, vid, PENDING, LCM_INIT)
    assert len(v.history) == hist and v.last()["ETIME"] > 0
    cloud.charged(vid, None)
    assert "CLEANUP_RESUBMIT" in vm_log(oned, vid)
    # Same id, deployable again.
    deploy(oned, one, vid, cloud.h["h2"])
    v = vm(oned, vid)
    assert len(v.history) == hist + 1 and v.last()["HID"] == cloud.h["h2"]
    cloud.charged(vid, "h2")


def test_recover_delete_recreate_of_a_running_vm(cloud):
    oned, one = cloud.oned, cloud.one
    vid = running_vm(oned, one, cloud.h["h1"])
    assert one.vm.recover(vid, R_DELETE_RECREATE) == vid
    wait_state(oned, vid, PENDING, LCM_INIT)
    cloud.charged(vid, None)


def test_recover_delete_recreate_of_pending_and_held_vms(cloud):
    oned, one = cloud.oned, cloud.one
    a, b = new_vm(one), new_vm(one, hold=True)
    assert one.vm.recover(a, R_DELETE_RECREATE) == a
    assert one.vm.recover(b, R_DELETE_RECREATE) == b
    assert vm(oned, a).pair == (PENDING, LCM_INIT)
    assert vm(oned, b).pair == (PENDING, LCM_INIT)


@pytest.mark.parametrize("op,step,fail_on,landing,charged", [
    ("deploy", "prolog", "h1", fail(PROLOG_FAILURE), "h1"),
    ("deploy", "net_pre", "h1", fail(BOOT_FAILURE), "h1"),
    ("terminate", "epilog", "h1", fail(EPILOG_FAILURE), "h1"),
    ("stop", "epilog_stop", "h1", fail(EPILOG_STOP_FAILURE), "h1"),
    ("undeploy", "epilog_stop", "h1", fail(EPILOG_UNDEPLOY_FAILURE), "h1"),
    ("resume-stopped", "prolog_resume", "h1", fail(PROLOG_RESUME_FAILURE), "h1"),
    ("resume-undeployed", "deploy", "h1", fail(BOOT_UNDEPLOY_FAILURE), "h1"),
    ("migrate", "restore", "h2", fail(BOOT_MIGRATE_FAILURE), "h2"),
])
@pytest.mark.parametrize("name", ["terminate", "terminate-hard"])
def test_terminate_of_a_failed_vm(cloud, op, step, fail_on, landing, charged, name):
    oned, one = cloud.oned, cloud.one
    vid = vm_in(oned, one, cloud.h["h1"], OPS[op][0])
    configure_host(one, cloud.h[fail_on], fail=step)
    cloud.run(op, vid)
    wait_errors(oned, vid, 1)
    wait_state(oned, vid, *landing)
    cloud.charged(vid, charged)
    # The failing step stays set: cleanup goes on past failures.
    assert one.vm.action(name, vid) == vid
    v = wait_state(oned, vid, DONE, LCM_INIT)
    assert v.etime > 0
    cloud.charged(vid, None)


def test_recover_of_a_vm_at_rest_is_refused(cloud):
    oned, one = cloud.oned, cloud.one
    vid = vm_in(oned, one, cloud.h["h1"], "POWEROFF")
    for op in (R_FAILURE, R_SUCCESS, R_RETRY):
        refused(oned, vid, lambda: one.vm.recover(vid, op), match=None)
    with pytest.raises(pyone.OneException):
        one.vm.recover(vid, 9)
    assert vm(oned, vid).pair == POFF


def test_unknown_recover_operation_is_opennebulas_error(cloud):
    vid = new_vm(cloud.one)
    r = cloud.oned.admin_call("one.vm.recover", vid, 9)
    assert r[:3] == [False, "[one.vm.recover] Wrong recovery operation code", 0x800]


def test_recover_of_a_running_vm_is_a_no_op(cloud):
    oned, one = cloud.oned, cloud.one
    vid = running_vm(oned, one, cloud.h["h1"])
    for op in (R_FAILURE, R_SUCCESS, R_RETRY):
        assert oned.admin_call("one.vm.recover", vid, op) == [True, vid, 0]
    assert vm(oned, vid).pair == R


def test_recover_retry_after_recovery(cloud):
    # A failed deploy retried twice: the first retry fails again, the second works; a third
    # retry finds nothing to retry and changes nothing.
    oned, one = cloud.oned, cloud.one
    h1 = cloud.h["h1"]
    vid = new_vm(one)
    configure_host(one, h1, fail="deploy")
    one.vm.deploy(vid, h1, False, -1)
    wait_errors(oned, vid, 1)
    wait_state(oned, vid, *fail(BOOT_FAILURE))
    one.vm.recover(vid, R_RETRY)
    wait_errors(oned, vid, 2)
    wait_state(oned, vid, *fail(BOOT_FAILURE))
    cloud.clear()
    one.vm.recover(vid, R_RETRY)
    v = wait_state(oned, vid, *R)
    assert len(v.history) == 1 and v.error == ""
    assert_host(oned, h1, vid)
    before = vm(oned, vid)
    one.vm.recover(vid, R_RETRY)  # nothing failed: success, nothing changes (as OpenNebula)
    after = vm(oned, vid)
    assert after.pair == R and after.history == before.history
    assert_host(oned, h1, vid)


# ---------------------------------------------------------------------------------------
# One-shot operations and failed reboots


@pytest.mark.parametrize("name,step", [("reboot", "reboot"), ("reboot-hard", "reset")])
def test_failed_reboot_keeps_running_with_an_error(cloud, name, step):
    oned, one = cloud.oned, cloud.one
    vid = running_vm(oned, one, cloud.h["h1"])
    configure_host(one, cloud.h["h1"], fail=step)
    one.vm.action(name, vid)
    wait_errors(oned, vid, 1)
    v = wait_for("ERROR set", lambda: (lambda x: x if x.error else None)(vm(oned, vid)))
    assert step in v.error and v.pair == R
    cloud.charged(vid, "h1")


# ---------------------------------------------------------------------------------------
# Crashes: SIGKILL in the middle of an operation


def test_kill_during_prolog_finishes_the_deploy_after_restart(oned, one):
    hid = add_host(one, "slow", delay_ms=1500)
    vid = new_vm(one)
    one.vm.deploy(vid, hid, False, -1)
    assert vm(oned, vid).pair == (ACTIVE, PROLOG)
    oned.kill()
    oned.start()
    one = oned.client()  # a new port
    v = vm(oned, vid)
    assert v.pair == (ACTIVE, PROLOG), "the committed phase is where the restart resumes"
    assert_host(oned, hid, vid)
    configure_host(one, hid, delay_ms=0)
    v = wait_state(oned, vid, ACTIVE, RUNNING, timeout=15)
    assert len(v.history) == 1 and v.last()["HID"] == hid
    assert_host(oned, hid, vid)
    s = host_share(oned, hid)
    assert (s.cpu, s.running) == (100, 1)


def test_kill_during_epilog_finishes_the_terminate_after_restart(oned, one):
    hid = add_host(one, "h")
    vid = running_vm(oned, one, hid)
    configure_host(one, hid, delay_ms=1500)
    one.vm.action("terminate", vid)
    wait_state(oned, vid, ACTIVE, EPILOG)
    oned.kill()
    oned.start()
    one = oned.client()
    assert vm(oned, vid).pair == (ACTIVE, EPILOG)
    assert_host(oned, hid, vid)
    configure_host(one, hid, delay_ms=0)
    v = wait_state(oned, vid, DONE, LCM_INIT, timeout=15)
    assert len(v.history) == 1 and v.last()["ETIME"] > 0
    assert_host(oned, hid)
    s = host_share(oned, hid)
    assert (s.cpu, s.mem, s.running) == (0, 0, 0), "released exactly once"


def test_kill_during_an_unwinding_ends_in_the_failure_state(oned, one):
    # BOOT runs net_pre, deploy, then net_post fails: the failure is persisted, then deploy and
    # net_pre are undone. oned is killed during that undo; after the restart it finishes the
    # undo and the VM lands in BOOT_FAILURE (not RUNNING, not a second attempt).
    hid = add_host(one, "h", fail="net_post", delay_ms=400)
    vid = new_vm(one)
    one.vm.deploy(vid, hid, False, -1)
    wait_state(oned, vid, ACTIVE, BOOT)
    log = oned.data_dir / "oned.log"
    wait_for("the failed step in oned.log", lambda: "driver step failed" in log.read_text(), timeout=15)
    assert vm(oned, vid).pair == (ACTIVE, BOOT)
    oned.kill()
    oned.start()
    one = oned.client()
    v = wait_state(oned, vid, *fail(BOOT_FAILURE), timeout=15)
    assert "net_post" in v.error
    assert len(v.history) == 1
    assert_host(oned, hid, vid)
    text = vm_log(oned, vid)
    assert "RUNNING" not in text
    # And it recovers like any failed VM.
    configure_host(one, hid, fail="", delay_ms=0)
    one.vm.recover(vid, R_RETRY)
    wait_state(oned, vid, *R)
    assert_host(oned, hid, vid)
