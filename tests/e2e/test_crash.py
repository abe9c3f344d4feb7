"""Durability: SIGKILL oned in the middle of a burst of writes, restart it on the same data
dir and database, and check that every acknowledged change is there, whole, and that ids
are never reused.

Each worker thread loops: one.group.allocate, one.user.allocate, two merges of
`K="v"\\nL="v"` into the new user's template (one.user.update mode 1). A call counts as
acknowledged once its answer arrived; the one call in flight at the kill may or may not
have been applied, so for templates the stored value must be the last acknowledged one
or the in-flight one, and K and L must always be equal (a half-applied update is a bug).
"""

from __future__ import annotations

import os
import random
import threading
import time

import pyone
import pytest

from harness import parse_xml, xsd_check

ITERATIONS = int(os.environ.get("ONE_CRASH_ITERATIONS", "3"))
THREADS = 4
BURST_SECONDS = 2.5


class Worker(threading.Thread):
    def __init__(self, endpoint: str, session: str, tag: str, killed: threading.Event):
        super().__init__(daemon=True, name=f"burst-{tag}")
        self.endpoint, self.session, self.tag, self.killed = endpoint, session, tag, killed
        self.groups: dict[int, str] = {}  # acknowledged: gid -> name
        self.users: dict[int, tuple[str, str]] = {}  # acknowledged: uid -> (name, password)
        self.template: dict[int, str] = {}  # uid -> last acknowledged K/L value
        self.in_flight: dict[int, str] = {}  # uid -> value of the update the kill interrupted
        self.calls = 0
        self.error: BaseException | None = None  # a failure before the kill

    def run(self):
        one = pyone.OneServer(self.endpoint, session=self.session)
        i = 0
        try:
            while True:
                i += 1
                name = f"crash_g_{self.tag}_{i}"
                gid = one.group.allocate(name)
                self.groups[gid] = name
                self.calls += 1

                uname, password = f"crash_u_{self.tag}_{i}", f"pw{self.tag}x{i}"
                uid = one.user.allocate(uname, password, "core")
                self.users[uid] = (uname, password)
                self.calls += 1

                for k in range(2):
                    value = f"{self.tag}-{i}-{k}"
                    self.in_flight[uid] = value
                    assert one.user.update(uid, f'K="{value}"\nL="{value}"', 1) == uid
                    self.template[uid] = value
                    del self.in_flight[uid]
                    self.calls += 1
        except BaseException as e:  # noqa: BLE001 - after the kill every call fails
            if not self.killed.is_set():
                self.error = e


def _check_survivors(oned, workers: list[Worker]):
    """Everything the workers saw acknowledged is present and whole."""
    groups = {g: n for w in workers for g, n in w.groups.items()}
    users = {u: v for w in workers for u, v in w.users.items()}
    template = {u: v for w in workers for u, v in w.template.items()}
    in_flight = {u: v for w in workers for u, v in w.in_flight.items()}

    group_pool = oned.admin_xml("one.grouppool.info")
    xsd_check(group_pool)
    pool_gids = {int(g.findtext("ID")): g.findtext("NAME") for g in parse_xml(group_pool).findall("GROUP")}
    missing = {g: n for g, n in groups.items() if pool_gids.get(g) != n}
    assert not missing, f"acknowledged groups missing after the crash: {missing}"

    user_pool = oned.admin_xml("one.userpool.info")
    xsd_check(user_pool)
    pool_uids = {int(u.findtext("ID")): u.findtext("NAME") for u in parse_xml(user_pool).findall("USER")}
    missing = {u: n for u, (n, _) in users.items() if pool_uids.get(u) != n}
    assert not missing, f"acknowledged users missing after the crash: {missing}"

    for gid, name in groups.items():
        g = parse_xml(oned.admin_xml("one.group.info", gid))
        assert (g.findtext("ID"), g.findtext("NAME")) == (str(gid), name)
    for uid, (name, _) in users.items():
        u = parse_xml(oned.admin_xml("one.user.info", uid))
        assert (u.findtext("ID"), u.findtext("NAME")) == (str(uid), name)
        k, l_ = u.findtext("TEMPLATE/K"), u.findtext("TEMPLATE/L")
        assert k == l_, f"user {uid}: half-applied update K={k!r} L={l_!r}"
        allowed = {template.get(uid), in_flight.get(uid)} - {None}
        if uid in template:
            assert k in allowed, f"user {uid}: K={k!r}, acknowledged {template[uid]!r}"
        elif k is not None:
            assert k in allowed, f"user {uid}: K={k!r} was never sent"

    rng = random.Random(len(users))
    for gid in rng.sample(sorted(groups), min(3, len(groups))):
        xsd_check(oned.admin_xml("one.group.info", gid))
    for uid in rng.sample(sorted(users), min(3, len(users))):
        xsd_check(oned.admin_xml("one.user.info", uid))
        name, password = users[uid]
        assert oned.client(name, password).user.info(-1).ID == uid


@pytest.mark.slow
def test_sigkill_during_burst_loses_no_acknowledged_write(oned):
    all_workers: list[Worker] = []
    for it in range(ITERATIONS):
        killed = threading.Event()
        workers = [Worker(oned.endpoint, oned.session, f"{it}{t}", killed) for t in range(THREADS)]
        for w in workers:
            w.start()
        time.sleep(BURST_SECONDS)
        running = sum(w.is_alive() for w in workers)
        killed.set()
        oned.kill()
        for w in workers:
            w.join(30)
            assert not w.is_alive(), f"worker {w.name} still blocked 30 s after the kill"
        errors = [f"{w.name}: {w.error!r}" for w in workers if w.error]
        assert not errors, "calls failed before the kill:\n" + "\n".join(errors)
        assert running == THREADS, "workers stopped before the kill"
        acked = sum(w.calls for w in workers)
        assert acked >= THREADS, f"iteration {it}: only {acked} calls acknowledged in {BURST_SECONDS} s"
        all_workers += workers
        in_flight = sum(len(w.in_flight) for w in workers)
        print(f"iteration {it}: {acked} calls acknowledged ({sum(len(w.groups) for w in workers)} groups, "
              f"{sum(len(w.users) for w in workers)} users), {in_flight} template updates in flight at the kill")

        oned.start()
        _check_survivors(oned, all_workers)

        # ids are never reused: new objects get ids above every acknowledged one
        one = oned.client()
        max_gid = max(g for w in all_workers for g in w.groups)
        max_uid = max(u for w in all_workers for u in w.users)
        gid = one.group.allocate(f"crash_after_{it}")
        uid = one.user.allocate(f"crash_after_{it}", "x1", "core")
        assert gid > max_gid, f"group id {gid} reused (acknowledged up to {max_gid})"
        assert uid > max_uid, f"user id {uid} reused (acknowledged up to {max_uid})"
