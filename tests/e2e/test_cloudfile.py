"""onecloud (crate cloudfile/) against a real oned with dummy hosts and one-scheduler.

One cloud per module, built by `onecloud apply` from a cloud file with two host groups
(three hosts), a security group, a network with an address range, a datablock image, a
template, three VMs, a group with a quota, a user whose password comes from the environment
and ACL rules; the tests then change the file (and the cloud by hand) and check that plan
lists exactly the differences and apply makes them, in order. Effects are checked through
the API with pyone. The last test runs the GitOps mode against a local Git repository.

The binary is found as the harness finds oned: $ONECLOUD_BIN, else
$CARGO_TARGET_DIR/debug/onecloud, else target/debug/onecloud (cargo build -p one-cloudfile).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pyone
import pytest

from doc_examples import doc_example, localize, run_sh
from harness import wait_for, workspace_binary
from sched_harness import Scheduler

pytestmark = pytest.mark.db_independent

RUNNING = 3
CLOUD = """\
cloud: lab
variables:
  web_count: 3
  subnet: 10.77.0
clusters:
  edge: {}
host_groups:
  compute:
    im_mad: dummy
    template: {ROLE: compute}
    hosts: [cf-node1, cf-node2]
  edge:
    cluster: edge
    im_mad: dummy
    template: {ROLE: edge}
    hosts: [{name: cf-node3, template: {RACK: r2}}]
security_groups:
  web:
    rules:
      - {PROTOCOL: TCP, RULE_TYPE: inbound, RANGE: "80,443"}
networks:
  lab-net:
    clusters: [default, edge]
    security_groups: [web]
    template: {VN_MAD: dummy, BRIDGE: br-cf, DNS: 1.1.1.1}
    address_ranges:
      - {TYPE: IP4, IP: "${subnet}.10", SIZE: 50}
images:
  data:
    datastore: default
    template: {TYPE: DATABLOCK, SIZE: 8}
templates:
  web:
    template:
      CPU: 0.1
      MEMORY: 64
      DISK: {IMAGE: data}
      NIC: {NETWORK: lab-net}
vms:
  web:
    template: web
    count: ${web_count}
groups:
  devs:
    quotas:
      vm: {VMS: 10}
users:
  alice:
    group: devs
    password: {env: CF_ALICE_PASSWORD}
acls:
  - "@devs VM+IMAGE+TEMPLATE/* CREATE"
  - "#alice NET/#lab-net USE"
"""
ALICE_PASSWORD = "alice-secret-1"


def onecloud_bin() -> str:
    return str(workspace_binary("onecloud", "ONECLOUD_BIN"))


class Cloud:
    def __init__(self, oned, work: Path):
        self.oned = oned
        self.one = oned.client()
        self.work = work
        self.file = work / "cloud.yaml"

    def env(self, extra=None):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.work),
            "ONE_XMLRPC": self.oned.endpoint,
            "ONE_AUTH": str(self.oned.auth_file),
            "CF_ALICE_PASSWORD": ALICE_PASSWORD,
        }
        env.update(extra or {})
        return env

    def run(self, *args, env=None, timeout=180) -> subprocess.CompletedProcess:
        p = subprocess.run([onecloud_bin(), *map(str, args)], capture_output=True, text=True,
                           env=self.env(env), timeout=timeout, stdin=subprocess.DEVNULL)
        assert "panicked" not in p.stderr, p.stderr
        return p

    def write(self, text: str, name="cloud.yaml") -> Path:
        path = self.work / name
        path.write_text(text)
        return path

    def plan(self, path=None, *extra) -> tuple[int, dict]:
        p = self.run("plan", path or self.file, "--json", "--detailed-exitcode", *extra)
        assert p.returncode in (0, 2), f"plan failed: {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p.returncode, json.loads(p.stdout)

    def apply(self, path=None, *extra) -> str:
        p = self.run("apply", path or self.file, "--yes", "--timeout", "60s", *extra)
        assert p.returncode == 0, f"apply failed: {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p.stdout

    def vms(self, state=-1):
        return [vm for vm in self.one.vmpool.infoextended(-2, -1, -1, state).VM
                if (vm.USER_TEMPLATE.get("ONECLOUD_VM") or {}).get("SET") == "oneadmin/web"]

    def vnet(self, name):
        return next(n for n in self.one.vnpool.info(-2, -1, -1).VNET if n.NAME == name)


def changes(plan: dict) -> list[tuple[str, str, str]]:
    return [(c["kind"], c["name"], c["action"]) for c in plan["changes"]
            if c["action"] != "nothing"]


@pytest.fixture(scope="module")
def cloud(shared_oned, tmp_path_factory):
    """The module's cloud, applied from CLOUD."""
    work = tmp_path_factory.mktemp("cloudfile")
    sched = Scheduler(shared_oned, work / "sched").start()
    c = Cloud(shared_oned, work)
    c.write(CLOUD)
    c.apply()
    yield c
    sched.stop()


def test_apply_settles_everything_and_a_second_apply_changes_nothing(cloud):
    one = cloud.one
    hosts = {h.NAME: h for h in one.hostpool.info().HOST}
    for name in ("cf-node1", "cf-node2", "cf-node3"):
        assert hosts[name].STATE == 2, f"{name} MONITORED"
        assert hosts[name].TEMPLATE["ONECLOUD"] == "lab"
    assert hosts["cf-node3"].CLUSTER == "edge"
    assert hosts["cf-node3"].TEMPLATE["RACK"] == "r2"
    assert hosts["cf-node3"].TEMPLATE["ROLE"] == "edge"
    assert hosts["cf-node1"].TEMPLATE["ROLE"] == "compute"
    image = next(i for i in one.imagepool.info(-2, -1, -1).IMAGE if i.NAME == "data")
    assert image.STATE in (1, 2), "image READY (or USED by the VMs)"
    net = cloud.vnet("lab-net")
    ar = net.AR_POOL.AR[0]
    assert (ar.IP, ar.SIZE) == ("10.77.0.10", 50)
    assert net.TEMPLATE["SECURITY_GROUPS"].split(",")[-1] != "0", "the file's group is there"
    vms = cloud.vms()
    assert len(vms) == 3
    assert all((vm.STATE, vm.LCM_STATE) == (3, RUNNING) for vm in vms)
    assert sorted(vm.NAME for vm in vms) == ["web-0", "web-1", "web-2"]
    devs = next(g for g in one.grouppool.info().GROUP if g.NAME == "devs")
    vm_quota = one.group.info(devs.ID).VM_QUOTA.VM
    assert [float(q.VMS) for q in vm_quota] == [10], "the group's quota is set"
    # The user's password came from the environment: alice can log in with it.
    alice = pyone.OneServer(cloud.oned.endpoint, session=f"alice:{ALICE_PASSWORD}")
    assert alice.user.info(-1).NAME == "alice"
    # Again: nothing to do, and apply says so without changing anything.
    code, plan = cloud.plan()
    assert code == 0, changes(plan)
    assert plan["summary"]["unchanged"] == len(plan["changes"])
    out = cloud.apply()
    assert "Nothing to do" in out


def test_bad_input_is_refused_before_any_call(cloud):
    # An oned that does not exist: the file's problems must be found without calling it.
    dead = {"ONE_XMLRPC": "http://127.0.0.1:9/RPC2"}
    cases = {
        "unknown key": ("networks:\n  lab-net:\n", "networks:\n  lab-net:\n    bogus: 1\n",
                        r"cloud\.yaml:\d+:5: unknown key \"bogus\" in network lab-net"),
        "missing name": ("NIC: {NETWORK: lab-net}", "NIC: {NETWORK: nowhere}",
                         r"cloud\.yaml:\d+:\d+: template oneadmin/web refers to network "
                         r"oneadmin/nowhere, which the file does not declare"),
        "cycle": ("  edge: {}\n", "  edge: {depends_on: [cluster/other]}\n  other: "
                  "{depends_on: [cluster/edge]}\n", r"cloud\.yaml:\d+:\d+: dependency cycle: "),
        "duplicate": ("hosts: [cf-node1, cf-node2]", "hosts: [cf-node1, cf-node2, cf-node1]",
                      r"cloud\.yaml:\d+:\d+: host cf-node1 is listed twice"),
    }
    for what, (old, new, pattern) in cases.items():
        assert old in CLOUD, what
        path = cloud.write(CLOUD.replace(old, new, 1), f"bad-{what.replace(' ', '-')}.yaml")
        for verb in ("plan", "apply"):
            args = [verb, path] + (["--yes"] if verb == "apply" else [])
            p = cloud.run(*args, env=dead)
            assert p.returncode == 1, (what, p.stdout, p.stderr)
            assert re.search(pattern.replace("cloud\\.yaml", re.escape(path.name)), p.stderr), \
                (what, p.stderr)
            assert "nothing was called" in p.stderr, p.stderr
            assert "transport" not in p.stderr and "connect" not in p.stderr.lower(), p.stderr


def test_changed_count_template_and_range_are_planned_exactly_and_applied(cloud):
    newest = max(vm.ID for vm in cloud.vms())
    text = (CLOUD.replace("web_count: 3", "web_count: 2")
            .replace("MEMORY: 64", "MEMORY: 96")
            .replace("SIZE: 50}", "SIZE: 80}"))
    path = cloud.write(text, "changed.yaml")
    code, plan = cloud.plan(path)
    assert code == 2
    assert changes(plan) == [
        ("vm", next(vm.NAME for vm in cloud.vms() if vm.ID == newest), "delete"),
        ("network", "lab-net", "update"),
        ("template", "web", "update"),
    ]
    by_kind = {c["kind"]: c for c in plan["changes"] if c["action"] != "nothing"}
    assert by_kind["network"]["diffs"] == [{"attr": "AR[0]/SIZE", "old": "50", "new": "80"}]
    assert by_kind["template"]["diffs"] == [{"attr": "TEMPLATE/MEMORY", "old": "64", "new": "96"}]
    assert by_kind["vm"]["id"] == newest, "the newest VM goes"
    out = cloud.apply(path)
    # One progress line per change, in plan order.
    lines = [l for l in out.splitlines() if l.startswith("[")]
    assert [l.split(":")[0] for l in lines] == [
        f"[1/3] delete VM {by_kind['vm']['name']} (id {newest})",
        "[2/3] update network lab-net (id %d)" % by_kind["network"]["id"],
        "[3/3] update template web (id %d)" % by_kind["template"]["id"],
    ], out
    wait_for("the newest VM gone", lambda: newest not in [vm.ID for vm in cloud.vms()])
    assert len(cloud.vms()) == 2
    assert cloud.vnet("lab-net").AR_POOL.AR[0].SIZE == 80
    tmpl = next(t for t in cloud.one.templatepool.info(-2, -1, -1).VMTEMPLATE if t.NAME == "web")
    assert tmpl.TEMPLATE["MEMORY"] == "96"
    code, plan = cloud.plan(path)
    assert code == 0, changes(plan)
    # The running VMs were left alone; the plan says they are out of date.
    assert any("2 of 2 VMs are out of date" in n for n in plan["notes"]), plan["notes"]
    # --replace recreates them from the new template.
    old_ids = sorted(vm.ID for vm in cloud.vms())
    code, plan = cloud.plan(path, "--replace")
    assert code == 2 and [a for _, _, a in changes(plan)] == ["replace", "replace"]
    cloud.apply(path, "--replace")
    vms = cloud.vms()
    assert len(vms) == 2 and not set(old_ids) & {vm.ID for vm in vms}
    assert all(vm.LCM_STATE == RUNNING and vm.TEMPLATE["MEMORY"] == "96" for vm in vms)
    code, plan = cloud.plan(path)
    assert code == 0 and not plan["notes"], plan["notes"]
    cloud.file = path


def test_a_change_by_hand_shows_in_the_plan(cloud):
    net = cloud.vnet("lab-net")
    cloud.one.vn.update(net.ID, 'DNS="9.9.9.9"\nADDED_BY_HAND="yes"', 1)
    code, plan = cloud.plan()
    assert code == 2
    assert changes(plan) == [("network", "lab-net", "update")]
    diffs = next(c for c in plan["changes"] if c["kind"] == "network")["diffs"]
    assert diffs == [
        {"attr": "TEMPLATE/ADDED_BY_HAND", "old": "yes"},
        {"attr": "TEMPLATE/DNS", "old": "9.9.9.9", "new": "1.1.1.1"},
    ]
    cloud.apply()
    t = cloud.vnet("lab-net").TEMPLATE
    assert t["DNS"] == "1.1.1.1" and "ADDED_BY_HAND" not in t
    assert cloud.plan()[0] == 0


def test_removed_objects_go_only_with_prune_and_hand_made_ones_never(cloud):
    one = cloud.one
    hand = one.vn.allocate('NAME="cf-handmade"\nVN_MAD="dummy"\nBRIDGE="br-hand"', -1)
    text = cloud.file.read_text().replace(
        "  edge:\n    cluster: edge\n    im_mad: dummy\n    template: {ROLE: edge}\n"
        "    hosts: [{name: cf-node3, template: {RACK: r2}}]\n", "")
    path = cloud.write(text, "pruned.yaml")
    code, plan = cloud.plan(path)
    assert code == 0, "without --prune nothing is deleted"
    assert any("host cf-node3" in n and "--prune" in n for n in plan["notes"]), plan["notes"]
    assert not any("cf-handmade" in json.dumps(c) for c in plan["changes"] + plan["notes"])
    code, plan = cloud.plan(path, "--prune")
    assert code == 2
    assert changes(plan) == [("host", "cf-node3", "delete")]
    cloud.apply(path, "--prune")
    assert "cf-node3" not in [h.NAME for h in one.hostpool.info().HOST]
    assert one.vn.info(hand).NAME == "cf-handmade", "a hand-made network is never touched"
    assert cloud.plan(path, "--prune")[0] == 0
    cloud.file = path


def test_an_object_of_another_cloud_is_refused(cloud):
    other = cloud.one.vn.allocate('NAME="cf-theirs"\nVN_MAD="dummy"\nBRIDGE="br-o"\n'
                                  'ONECLOUD="other"', -1)
    text = cloud.file.read_text().replace(
        "networks:\n", "networks:\n  cf-theirs:\n    template: {VN_MAD: dummy, BRIDGE: br-x}\n", 1)
    path = cloud.write(text, "theirs.yaml")
    p = cloud.run("plan", path)
    assert p.returncode == 1
    assert 'managed by the cloud file "other", not "lab"' in p.stdout
    p = cloud.run("apply", path, "--yes")
    assert p.returncode == 1 and "nothing was applied" in p.stderr
    t = cloud.one.vn.info(other).TEMPLATE
    assert t["BRIDGE"] == "br-o" and t["ONECLOUD"] == "other"


def test_export_then_plan_shows_nothing_to_do(cloud):
    out = cloud.work / "exported.yaml"
    p = cloud.run("export", "--name", "lab", "-o", out)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "", "the file goes to -o, messages to standard error"
    assert 'cf-theirs (id' in p.stderr and 'managed by cloud "other"' in p.stderr
    text = out.read_text()
    # Never password hashes or tokens.
    for secret in ("PASSWORD", "argon2", "TOKEN"):
        assert secret not in text, text
    assert "alice:" in text and "cf-handmade:" in text
    code, plan = cloud.plan(out)
    assert code == 0, (changes(plan), text)
    # The hand-made network was adopted by the export: a change to it now shows.
    hand = cloud.vnet("cf-handmade")
    assert hand.TEMPLATE["ONECLOUD"] == "lab"
    cloud.one.vn.update(hand.ID, 'NOTE="x"', 1)
    code, plan = cloud.plan(out)
    assert code == 2 and changes(plan) == [("network", "cf-handmade", "update")]
    # Standard output, TOML, --no-adopt.
    p = cloud.run("export", "--name", "lab", "--format", "toml", "--no-adopt")
    assert p.returncode == 0 and p.stdout.startswith("# Cloud file") and 'cloud = "lab"' in p.stdout
    cloud.one.vn.delete(hand.ID)
    # The README's example, as typed.
    env = cloud.env({"PATH": f"{Path(onecloud_bin()).parent}:{cloud.env()['PATH']}"})
    run_sh(doc_example("README.md", "onecloud").text, env=env, cwd=cloud.work, inherit=False)
    assert (cloud.work / "lab.yaml").read_text().startswith("# Cloud file")


def test_reconcile_applies_a_new_commit_with_an_audit_record(cloud, tmp_path):
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run(git + ["init", "-q", "-b", "main"], check=True)
    (repo / "cloud.yaml").write_text(cloud.file.read_text())
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "the lab"], check=True)
    audit = tmp_path / "audit"
    out = open(tmp_path / "reconcile.out", "w")
    proc = subprocess.Popen(
        [onecloud_bin(), "reconcile", "--git", str(repo), "--branch", "main", "--interval", "1s",
         "--apply", "--audit-dir", str(audit), "--metrics", "127.0.0.1:0"],
        stdout=out, stderr=subprocess.PIPE, text=True, env=cloud.env())
    try:
        records = lambda: [json.loads(l) for l in (audit / "audit.jsonl").read_text().splitlines()] \
            if (audit / "audit.jsonl").exists() else []
        wait_for("a first reconcile run", lambda: records(), timeout=30)
        assert records()[0]["result"] == "in-sync", records()[0]
        before = len(cloud.vms())
        (repo / "cloud.yaml").write_text(
            (repo / "cloud.yaml").read_text().replace("web_count: 2", "web_count: 3"))
        subprocess.run(git + ["commit", "-qam", "one more web VM"], check=True)
        head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        applied = wait_for("the commit applied",
                           lambda: [r for r in records() if r["commit"] == head
                                    and r["result"] == "applied"], timeout=60)
        rec = applied[0]
        assert rec["subject"] == "one more web VM" and rec["user"] == "oneadmin"
        assert rec["mode"] == "apply"
        assert [(c["kind"], c["action"]) for c in rec["changes"]] == [("vm", "create")]
        assert rec["report"]["failed"] is None
        vms = cloud.vms()
        assert len(vms) == before + 1
        assert all(vm.LCM_STATE == RUNNING for vm in vms)
        # A change by hand is drift: reported in the audit record and the metrics.
        net = cloud.vnet("lab-net")
        cloud.one.vn.update(net.ID, 'DRIFTED="1"', 1)
        drift = wait_for("drift recorded",
                         lambda: [r for r in records() if "network lab-net" in r["drift"]],
                         timeout=30)
        assert drift[0]["commit"] == head
        line = proc.stderr.readline()
        m = re.search(r"metrics on (http://\S+/metrics)", line)
        assert m, line
        text = urllib.request.urlopen(m.group(1), timeout=10).read().decode()
        assert 'onecloud_reconcile_runs_total{result="applied"}' in text
        assert f'onecloud_last_commit_info{{commit="{head}"}} 1' in text
        assert "onecloud_drift_objects" in text
    finally:
        proc.terminate()
        code = proc.wait(10)
        out.close()
        print((tmp_path / "reconcile.out").read_text())
    # SIGTERM stops it cleanly (after the run in progress, if any).
    assert code == 0, proc.stderr.read()
    # The module's cloud is now what the repository says.
    cloud.file = cloud.write((repo / "cloud.yaml").read_text(), "reconciled.yaml")


def test_reconcile_once_reports_drift_and_applies_only_when_allowed(cloud, tmp_path):
    """`reconcile --once`, as from cron: report mode leaves a change by hand in place and
    exits 2 naming the drift; with --apply the cloud is put back and the run exits 0."""
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run(git + ["init", "-q", "-b", "main"], check=True)
    (repo / "cloud.yaml").write_text(cloud.file.read_text())
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "the lab"], check=True)
    audit = tmp_path / "audit"

    def reconcile(*extra):
        p = cloud.run("reconcile", "--git", repo, "--branch", "main", "--audit-dir", audit,
                      "--once", *extra)
        last = json.loads((audit / "audit.jsonl").read_text().splitlines()[-1])
        return p, last

    # The first run finds the cloud in line and keeps that as the baseline.
    p, rec = reconcile()
    assert p.returncode == 0 and rec["result"] == "in-sync", (p.stdout, p.stderr, rec)
    assert (audit / "state.json").exists()
    net = cloud.vnet("lab-net")
    cloud.one.vn.update(net.ID, 'DNS="9.9.9.9"', 1)
    # Report only: the drift is named, nothing is changed.
    p, rec = reconcile()
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "changes-pending" in p.stdout and "drift: network lab-net" in p.stdout, p.stdout
    assert (rec["mode"], rec["result"], rec["drift"]) == \
        ("report", "changes-pending", ["network lab-net"])
    assert [(c["kind"], c["name"], c["action"]) for c in rec["changes"]] == \
        [("network", "lab-net", "update")]
    assert "report" not in rec
    assert cloud.vnet("lab-net").TEMPLATE["DNS"] == "9.9.9.9"
    # Allowed to apply: put back, and the record says what was done.
    p, rec = reconcile("--apply")
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert (rec["mode"], rec["result"], rec["drift"]) == ("apply", "applied", ["network lab-net"])
    assert [c["name"] for c in rec["report"]["done"]] == ["lab-net"]
    assert cloud.vnet("lab-net").TEMPLATE["DNS"] == "1.1.1.1"
    p, rec = reconcile()
    assert p.returncode == 0 and (rec["result"], rec["drift"]) == ("in-sync", []), rec
    assert len((audit / "audit.jsonl").read_text().splitlines()) == 4


def test_apply_stops_at_the_first_failure_saying_what_was_done(cloud):
    """A VM that can never be placed: apply waits up to --timeout, stops there, reports what
    it did and did not do, and the next plan starts from where it stopped."""
    path = cloud.write(
        "cloud: cf-fail\n"
        "templates:\n"
        "  stuck:\n"
        "    template: {CPU: 0.1, MEMORY: 64, SCHED_REQUIREMENTS: 'ROLE = \"nowhere\"'}\n"
        "vms:\n"
        "  stuck: {template: stuck, count: 2}\n", "fail.yaml")
    p = cloud.run("apply", path, "--yes", "--timeout", "2s")
    assert p.returncode == 1, (p.stdout, p.stderr)
    report = p.stdout[p.stdout.index("Apply stopped"):]
    assert re.match(r"Apply stopped: VM stuck-0 failed \(create\): timed out after 2s waiting "
                    r"for .*RUNNING.*\n", report), report
    assert report.splitlines()[1:] == [
        "Done (1):", "  create template stuck",
        "Not done (2):", "  create VM stuck-0 (failed)", "  create VM stuck-1",
    ], report
    stuck = [vm for vm in cloud.one.vmpool.info(-2, -1, -1, -1).VM if vm.NAME == "stuck-0"]
    tmpl = next(t for t in cloud.one.templatepool.info(-2, -1, -1).VMTEMPLATE
                if t.NAME == "stuck")
    try:
        assert len(stuck) == 1 and stuck[0].STATE == 1, "made, and PENDING"
        code, plan = cloud.plan(path)
        assert code == 2 and changes(plan) == [("vm", "stuck-1", "create")], changes(plan)
    finally:
        for vm in stuck:
            cloud.one.vm.action("terminate-hard", vm.ID)
        wait_for("the stuck VM gone",
                 lambda: all(vm.STATE == 6 for vm in cloud.one.vmpool.info(-2, -1, -1, -1).VM
                             if vm.NAME == "stuck-0") or not stuck)
        cloud.one.template.delete(tmpl.ID)


def test_the_examples_of_docs_cloudfile(oned_factory, tmp_path):
    """docs/cloudfile.md's example cloud and commands, as typed, on an oned of their own."""
    oned = oned_factory("docs")
    sched = Scheduler(oned, tmp_path / "sched").start()
    try:
        (tmp_path / "cloud.yaml").write_text(doc_example("docs/cloudfile.md", "lab-cloud").text)
        env = {"PATH": f"{Path(onecloud_bin()).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               "HOME": str(tmp_path)}
        examples = [doc_example("docs/cloudfile.md", "plan-apply"),
                    doc_example("docs/cloudfile.md", "reconcile-once")]
        outputs = [run_sh(localize(e.text, oned.endpoint, oned.data_dir), env=env, cwd=tmp_path,
                          inherit=False).stdout for e in examples]
        assert "Apply complete: 16 changes made." in outputs[0], outputs[0]
        record = json.loads(outputs[1].strip().splitlines()[-1])
        assert record["result"] == "in-sync", record
        one = oned.client()
        vms = one.vmpool.info(-2, -1, -1, -1).VM
        assert len(vms) == 3 and all(vm.LCM_STATE == RUNNING for vm in vms)
    finally:
        sched.stop()
