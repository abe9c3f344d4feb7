"""The examples of README.md and docs/*.md (doc_examples.py has the convention):

* every fenced block is marked, either as an example that a test runs and names, or as
  not-run with the reason;
* every example is named by a test, and every name a test uses exists;
* the examples of docs/ that need only an oned (dummy hosts) run here, as typed, against a
  test oned (doc_examples.localize). The README's own examples run in test_readme.py (a real
  KVM host); docs/lifecycle.md's in test_kvm_shutdown.py; docs/host-recovery.md's in
  test_host_recovery.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib

import pytest

from doc_examples import (
    blocks,
    doc_example,
    documents,
    localize,
    pyone_prelude,
    references,
    run_python,
    run_sh,
)
from harness import REPO, parse_xml, wait_for

# These run no real host either; the database does not matter to them.
pytestmark = pytest.mark.db_independent

NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def test_every_block_of_the_documentation_is_marked():
    unmarked, bad = [], []
    for path in documents():
        names = []
        for b in blocks(path):
            if b.kind is None:
                unmarked.append(b.where())
            elif b.kind == "example":
                if not NAME.match(b.label):
                    bad.append(f"{b.where()}: example name {b.label!r} (lowercase, digits, -)")
                names.append(b.label)
            elif not b.label:
                bad.append(f"{b.where()}: not-run without a reason")
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            bad.append(f"{path.name}: example names used twice: {sorted(dup)}")
    assert not unmarked, (
        "fenced blocks without <!-- example: NAME --> or <!-- not-run: REASON --> on the line "
        "before (docs/testing.md, 'Examples in the documentation'):\n  " + "\n  ".join(unmarked))
    assert not bad, "\n".join(bad)
    # The scan sees the README's examples (it would pass vacuously otherwise).
    readme = [b.label for b in blocks(REPO / "README.md") if b.kind == "example"]
    assert {"start", "first-vm", "api"} <= set(readme), readme


def test_every_example_is_run_by_a_test_that_names_it():
    examples = {(b.doc, b.label) for p in documents() for b in blocks(p) if b.kind == "example"}
    refs = references()
    missing = sorted(examples - refs)
    assert not missing, (
        "examples no test runs (a test must call doc_example(FILE, NAME)):\n  "
        + "\n  ".join(f"{d}: {n}" for d, n in missing))
    dangling = sorted(refs - examples)
    assert not dangling, "tests name examples the documents do not have:\n  " + "\n  ".join(
        f"{d}: {n}" for d, n in dangling)


# ---------------------------------------------------------------------------------------
# docs/monitoring.md


def test_monitoring_dummy_host_example(oned):
    ex = doc_example("docs/monitoring.md", "dummy-host")
    out = run_python(localize(ex.text), prelude=pyone_prelude(oned.endpoint, oned.data_dir))
    # The comment in the example says what it prints.
    promised = re.search(r"#\s*(\d+) \(MONITORED\) (\d+) (\d+)", ex.text).groups()
    assert out.stdout.split() == list(promised), out.stdout


def test_monitoring_configuration_example(oned_factory, tmp_path):
    ex = doc_example("docs/monitoring.md", "config")
    cfg = tmp_path / "oned.toml"
    cfg.write_text(ex.text)
    oned = oned_factory("cfg", extra_args=["--config", str(cfg)])
    one = oned.client()
    values = tomllib.loads(ex.text)
    hid = one.host.allocate("h1", "dummy", "dummy", -1)
    wait_for("the dummy host MONITORED", lambda: one.host.info(hid).STATE == 2)
    share = one.host.info(hid).HOST_SHARE
    assert (share.TOTAL_CPU, share.TOTAL_MEM) == (
        values["dummy"]["total_cpu"], values["dummy"]["total_memory_kb"])


# ---------------------------------------------------------------------------------------
# docs/hooks.md


def test_hook_example_notes_running_vms(oned):
    if not shutil.which("xmllint"):
        pytest.skip("xmllint not found: the example's script uses it (scripts/install-deps.sh)")
    hooks = oned.data_dir / "hooks"
    assert hooks.is_dir(), "oned makes its hooks directory at start"
    run_sh(localize(doc_example("docs/hooks.md", "script").text, data_dir=oned.data_dir))
    assert os.access(hooks / "vm-running.sh", os.X_OK)
    run_python(localize(doc_example("docs/hooks.md", "allocate").text),
               prelude=pyone_prelude(oned.endpoint, oned.data_dir))
    one = oned.client()
    assert [h.NAME for h in one.hookpool.info(-2, -1, -1).HOOK] == ["vm-running"]
    hid = one.host.allocate("h1", "dummy", "dummy", -1)
    vid = one.vm.allocate('CPU="0.1"\nMEMORY="16"')
    one.vm.deploy(vid, hid, False, -1)
    log = hooks / "vm-running.log"
    wait_for("the hook's line", lambda: log.is_file() and f"VM {vid} is running" in log.read_text(),
             timeout=30)


# ---------------------------------------------------------------------------------------
# docs/scheduler.md


def test_scheduler_run_once_example(oned):
    one = oned.client()
    hid = one.host.allocate("h1", "dummy", "dummy", -1)
    wait_for("the dummy host MONITORED", lambda: one.host.info(hid).STATE == 2)
    vid = one.vm.allocate('CPU="0.1"\nMEMORY="16"')
    ex = doc_example("docs/scheduler.md", "run-once")
    run_sh(localize(ex.text, oned.endpoint, oned.data_dir), timeout=900)
    # One pass placed it; the dummy host runs it.
    wait_for("the VM RUNNING", lambda: (one.vm.info(vid).STATE, one.vm.info(vid).LCM_STATE) == (3, 3))
    x = parse_xml(oned.admin_xml("one.vm.info", vid))
    assert x.findtext("HISTORY_RECORDS/HISTORY/HID") == str(hid)


# ---------------------------------------------------------------------------------------
# docs/testing.md


def test_running_one_test_example():
    if not shutil.which("cargo"):
        pytest.skip("cargo is not installed")
    r = subprocess.run(["cargo", "nextest", "--version"], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cargo-nextest is not installed (the example's last line uses it)")
    ex = doc_example("docs/testing.md", "run-one-test")
    # The example's own pytest runs, not this run's options or database.
    env = {"PYTEST_ADDOPTS": "-p no:cacheprovider", "ONE_TEST_DB": "sqlite"}
    out = run_sh(ex.text, env=env, timeout=1200).stdout
    assert "test_restart_keeps_everything PASSED" in out, out[-3000:]
    assert re.search(r"\d+ passed", out), out[-3000:]
