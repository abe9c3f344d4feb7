"""The PyPI `opennebula-cli` (a CLI we did not write, built on pyone) against our oned.

It first checks `one.system.version` (it accepts only 7.0.x / 7.4.x) and lists VMs through
`one.vmpool.infoextended(-2, -1, -1, -1)`, so these runs exercise what its users do.

Its commands have the same names as ours (onevm, onehost, ...): they are always called by
their full path in the test virtual environment, never looked up in PATH, so a run can never
pick up our own CLI by accident (tests/e2e/test_cli.py tests that one)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli(name):
    # sys.prefix is the virtual environment the suite runs in (scripts/install-deps.sh puts
    # opennebula-cli there).
    path = Path(sys.prefix) / "bin" / name
    if not path.is_file():
        pytest.skip(f"opennebula-cli's {name} is not installed in {sys.prefix} "
                    "(scripts/install-deps.sh installs it)")
    assert "opennebula_cli" in path.read_text(errors="replace")[:2000], \
        f"{path} is not opennebula-cli's entry point"
    return str(path)


def run(oned, *args):
    env = dict(os.environ, ONE_XMLRPC=oned.endpoint, ONE_AUTH=str(oned.data_dir / "one_auth"), NO_COLOR="1")
    out = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{args} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_onevm_onehost_oneuser_list_and_show(oned, one):
    vid = one.vm.allocate('NAME="web-1"\nCPU="1"\nMEMORY="128"', False)
    one.host.allocate("node-cli", "kvm", "kvm", -1)
    vms = run(oned, cli("onevm"), "list")
    assert "web-1" in vms and "PENDING" in vms
    assert "node-cli" in run(oned, cli("onehost"), "list")
    users = run(oned, cli("oneuser"), "list")
    assert "oneadmin" in users and "serveradmin" in users
    shown = run(oned, cli("onevm"), "show", str(vid))
    assert "web-1" in shown and "PENDING" in shown
