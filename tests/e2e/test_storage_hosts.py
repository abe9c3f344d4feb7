"""Shared datastores are verified, not assumed (docs/storage.md, docs/node-agent.md "Host
capabilities"): each host's agent reads back the token file the frontend agent wrote at the
root of every shared datastore of its cluster and reports SHARED_DS in the host's template;
the scheduler and a forced one.vm.deploy honour it.

Two namespace hosts over SSH (tests/hostenv/netns-host.sh; simulated domains, no libvirt):
one sees the machine's file system as the frontend does, the other has the shared system
datastore masked by an empty directory of its own (`--mask`), as a host where the NFS
export is not mounted. That host reports the datastore missing, stays usable for
everything else, never writes there, and is healed when the real directory shows again.

Needs root and `ip netns`; otherwise the tests skip, saying why. Real-host test: the SQLite
stage runs it (conftest.py).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from harness import Oned, oned_binary, parse_xml, wait_for
from sched_harness import Scheduler
from storage_util import wait_frontend
from test_hosts_ssh import NETNS_HOST, NsHost, _skip_reason, agent_binary

pytestmark = pytest.mark.db_independent

MONITORED = 2
PENDING, ACTIVE = 1, 3


@pytest.fixture(autouse=True)
def _needs_hostenv():
    why = _skip_reason()
    if why:
        print(f"SKIP: {why}")
        pytest.skip(why)


class MaskedHost(NsHost):
    """A namespace host whose private mount namespace hides `masks` under empty tmpfs."""

    def __init__(self, name, subnet, base, masks):
        super().__init__(name, subnet, base)
        self.masks = masks

    def up(self, authorized_key: str):
        keys = self.dir.parent / f"{self.name}.authorized_keys"
        keys.write_text(authorized_key + "\n")
        cmd = [str(NETNS_HOST), "up", self.name, "--dir", str(self.dir), "--ip", f"{self.ip}/24",
               "--bridge", self.bridge, "--authorized-keys", str(keys)]
        for m in self.masks:
            cmd += ["--mask", str(m)]
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60)
        return self

    def run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(NETNS_HOST), "exec", "--dir", str(self.dir), *cmd],
                              capture_output=True, text=True, timeout=30)


def host_tmpl(o, hid):
    return parse_xml(o.admin_xml("one.host.info", hid)).find("TEMPLATE")


def test_a_host_that_does_not_see_a_shared_datastore(tmp_path):
    remote = tmp_path / "remote" / "bin" / "one-node-agent"
    cfg = tmp_path / "oned.toml"
    cfg.write_text(
        "[hosts]\n"
        f'agent_path = "{agent_binary()}"\n'
        "simulate_agents = true\n"
        f'remote_agent_path = "{remote}"\n'
        "accept_new_host_keys = true\n"
        "host_usage_seconds = 2.0\n"
        "reconnect_initial_seconds = 0.5\n"
    )
    o = Oned(tmp_path / "one", extra_args=["--config", str(cfg)], binary=oned_binary())
    o.start()
    hosts = []
    sched = None
    try:
        wait_frontend(o)
        one = o.client()
        sys_ds = one.datastore.allocate('NAME="nfs-system"\nTYPE="SYSTEM_DS"\nTM_MAD="shared"', -1)
        img_ds = one.datastore.allocate('NAME="nfs-images"\nDS_MAD="fs"\nTM_MAD="qcow2"', -1)
        root = Path(parse_xml(o.admin_xml("one.datastore.info", sys_ds)).findtext("BASE_PATH"))
        wait_for("the frontend's token files", lambda: (root / ".one-rs-datastore").is_file())
        key = subprocess.run([str(oned_binary()), "--data-dir", str(o.data_dir), "ssh-key"],
                             check=True, capture_output=True, text=True).stdout.strip()
        seeing = MaskedHost("stsee", 71, tmp_path, []).up(key)
        blind = MaskedHost("stblind", 72, tmp_path, [root]).up(key)
        hosts += [seeing, blind]
        hs = one.host.allocate(seeing.ip, "kvm", "kvm", -1)
        hb = one.host.allocate(blind.ip, "kvm", "kvm", -1)
        for h in (hs, hb):
            wait_for(f"host {h} MONITORED", lambda: one.host.info(h).STATE == MONITORED, timeout=60)

        # What each host sees, as its template says.
        all_ids = {"0", "1", "2", str(sys_ds), str(img_ds)}
        wait_for("SHARED_DS of the seeing host",
                 lambda: set((host_tmpl(o, hs).findtext("SHARED_DS") or "").split()) == all_ids)
        assert host_tmpl(o, hs).find("SHARED_DS_MISSING") is None
        wait_for("SHARED_DS of the blind host",
                 lambda: host_tmpl(o, hb).findtext("SHARED_DS_MISSING") == str(sys_ds))
        t = host_tmpl(o, hb)
        assert set(t.findtext("SHARED_DS").split()) == all_ids - {str(sys_ds)}
        assert f"{sys_ds}: {root} has no .one-rs-datastore" in t.findtext("SHARED_DS_ERROR")
        # Still MONITORED and usable for everything else: a VM on system datastore 0 runs
        # there.
        assert one.host.info(hb).STATE == MONITORED and t.find("ERROR") is None
        v0 = one.vm.allocate('NAME="on-zero"\nCPU="0.1"\nMEMORY="16"')
        one.vm.deploy(v0, hb, False, 0)
        wait_for("VM on datastore 0 RUNNING", lambda: one.vm.info(v0).LCM_STATE == 3)

        # A forced deploy onto the shared datastore it does not see: refused with the reason.
        v1 = one.vm.allocate('NAME="on-nfs"\nCPU="0.1"\nMEMORY="16"')
        r = o.admin_call("one.vm.deploy", v1, hb, False, sys_ds)
        assert r[0] is False and f"does not see the shared datastore {sys_ds}" in r[1], r
        assert one.vm.info(v1).STATE == PENDING

        # The scheduler passes the blind host over, saying why.
        one.vm.update(v1, f'SCHED_REQUIREMENTS="ID = {hb}"\nSCHED_DS_REQUIREMENTS="ID = {sys_ds}"', 1)
        sched = Scheduler(o, tmp_path / "sched").start()
        msg = wait_for("SCHED_MESSAGE", lambda: one.vm.info(v1).USER_TEMPLATE.get("SCHED_MESSAGE"))
        assert "does not see the shared system datastore" in msg and str(root) in msg, msg
        assert one.vm.info(v1).STATE == PENDING
        # The host never made nor wrote anything in the datastore it does not see.
        assert blind.run("ls", "-A", str(root)).stdout.strip() == ""

        # The admin mounts the shared file system there: the host sees it within seconds,
        # and the VM is placed.
        r = blind.run("umount", str(root))
        assert r.returncode == 0, r.stderr
        wait_for("the blind host healed",
                 lambda: set((host_tmpl(o, hb).findtext("SHARED_DS") or "").split()) == all_ids,
                 timeout=40)
        assert host_tmpl(o, hb).find("SHARED_DS_MISSING") is None
        wait_for("VM placed", lambda: one.vm.info(v1).STATE == ACTIVE, timeout=30)
        assert one.vm.info(v1).HISTORY_RECORDS.HISTORY[-1].HID == hb
    finally:
        if sched:
            sched.stop()
        o.stop()
        for h in hosts:
            h.down()
        print(f"\n===== {o!r}\n{o.logs(tail=60)}")
