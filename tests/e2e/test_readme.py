"""README.md, typed in order on this machine: `scripts/start.sh` (example "start"), the test
guest ("guest"), the first VM with pyone ("first-vm"), the API from the shell ("api"), then
`scripts/stop.sh`. Each block is the README's own text, run with doc_examples.localize: the
walkthrough's oned listens on a free port and keeps its data in a directory of its own
(start.sh's ONED_LISTEN and ONED_DATA_DIR), runs the debug build the suite built
(ONE_BUILD_PROFILE=debug) and names its domains with a prefix of its own (ONED_CONFIG), so
it runs beside other tests and beside a `scripts/start.sh` instance on 127.0.0.1:2633.

Needs what the real-KVM tests need (root, libvirtd, the agent built; kvm_util.kvm_env) and
skips, saying why, without it."""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
from pathlib import Path

import pytest

from doc_examples import doc_example, localize, run_python, run_sh
from harness import oned_binary
from kvm_util import BASE, domains_with_prefix, kvm_env, virsh  # noqa: F401  (kvm_env: fixture)

pytestmark = pytest.mark.db_independent


class Walkthrough:
    """Where the README's steps run: a data directory, a configuration and an environment
    for scripts/start.sh and stop.sh."""

    def __init__(self):
        tag = secrets.token_hex(3)
        self.dir = BASE / f"readme-{tag}"
        self.data = self.dir / "var"
        self.prefix = f"readme{tag}-"
        self.dir.mkdir(parents=True)
        # QEMU (user libvirt-qemu) must reach the VM files.
        for d in (BASE, self.dir):
            os.chmod(d, 0o755)
        self.config = self.dir / "oned.toml"
        self.config.write_text(
            "[hosts]\n"
            f'domain_prefix = "{self.prefix}"\n'
            # KVM guests hang on this machine (docs/hypervisor-hosts-env.md).
            'domain_type = "qemu"\n'
            f"vnc_port_start = {random.randrange(10000, 32000, 100)}\n"
        )
        self.env = {
            "ONED_LISTEN": "127.0.0.1:0",
            "ONED_DATA_DIR": str(self.data),
            "ONED_CONFIG": str(self.config),
            "ONE_BUILD_PROFILE": "debug",
            # The suite's binaries: start.sh builds (a no-op) and runs these.
            "CARGO_TARGET_DIR": str(oned_binary().parent.parent),
        }

    def run_sh(self, text: str, timeout: float = 900):
        # A fresh shell: no ONE_AUTH / ONE_XMLRPC / ONED_DB of the caller's (start.sh would
        # take oneadmin's password or the database from them).
        env = {k: v for k, v in os.environ.items() if k not in ("ONE_AUTH", "ONE_XMLRPC", "ONED_DB")}
        return run_sh(text, env=dict(env, **self.env), timeout=timeout, inherit=False)

    @property
    def endpoint(self) -> str:
        return (self.data / "one_endpoint").read_text().strip()

    def oned_pid(self) -> int | None:
        try:
            return int((self.data / "oned.pid").read_text())
        except (OSError, ValueError):
            return None

    def close(self, failed: bool):
        # scripts/stop.sh ran in the test; this is for a test that failed before it.
        for name in ("scheduler.pid", "oned.pid"):
            try:
                pid = int((self.data / name).read_text())
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except (OSError, ValueError):
                continue
            if comm in ("oned", "one-scheduler"):
                os.kill(pid, signal.SIGKILL)
        for name in domains_with_prefix(self.prefix):
            virsh("destroy", name)
            virsh("undefine", name)
        for log in Path("/var/log/libvirt/qemu").glob(f"{self.prefix}*.log*"):
            log.unlink(missing_ok=True)
        if failed:
            print(f"kept {self.dir} for inspection")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def walkthrough(kvm_env, request):
    w = Walkthrough()
    failed_before = request.session.testsfailed
    yield w
    w.close(request.session.testsfailed > failed_before)


def as_root(text: str) -> str:
    """README's start command, which runs as root (as CI and this test do)."""
    assert os.geteuid() == 0
    assert text.lstrip().startswith("scripts/start.sh "), text
    return text


def test_readme_first_steps_work_as_typed(walkthrough):
    w = walkthrough
    # "start": the cloud, with this machine as the KVM host localhost.
    start = doc_example("README.md", "start")
    out = w.run_sh(as_root(start.text)).stdout
    assert (w.data / "one_endpoint").is_file() and (w.data / "one_auth").is_file()
    assert "is MONITORED" in out, out[-3000:]
    assert "one-scheduler (pid" in out, out[-3000:]

    # "guest": the tiny guest (cached: built once per machine).
    w.run_sh(doc_example("README.md", "guest").text)
    assert Path("/var/tmp/one-rs-guest/vmlinuz").is_file()

    # "first-vm": allocate, RUNNING, wait for the guest, graceful poweroff.
    first = localize(doc_example("README.md", "first-vm").text, w.endpoint, w.data)
    lines = run_python(first, timeout=600).stdout.split()
    assert lines == ["3", "8"], lines
    # The guest powered itself off: no running domain is left.
    assert all(virsh("domstate", d).stdout.strip() != "running" for d in domains_with_prefix(w.prefix))

    # "api": the shell one-liner with pyone.
    api = localize(doc_example("README.md", "api").text, w.endpoint, w.data)
    out = w.run_sh(api).stdout
    assert "7.4.0" in out and "'oneadmin'" in out and "'serveradmin'" in out, out

    # scripts/stop.sh stops what start.sh started; the data stays.
    pid = w.oned_pid()
    assert pid and Path(f"/proc/{pid}").exists()
    w.run_sh("scripts/stop.sh")
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/comm").read_text().strip() != "oned"
    assert (w.data / "one.db").is_file()
