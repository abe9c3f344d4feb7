"""Hooks (one.hook.*, one.hookpool.info, one.hooklog.info): API hooks, state hooks on dummy
hosts and VMs, execution records, retry, timeouts, REMOTE, and the oneadmin-only rule.

Hook commands here are small shell scripts in the test's tmp dir that write what they got
into files the test then reads."""

import base64
import stat
import time
import xmlrpc.client
import xml.etree.ElementTree as ET
from pathlib import Path

import pyone
import pytest

from harness import parse_xml, wait_for, xsd_check


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def files(d: Path) -> list[Path]:
    return sorted(d.glob("*.xml"), key=lambda p: int(p.stem)) if d.exists() else []


def counting_script(tmp_path: Path, name: str, stdin: bool = False) -> tuple[Path, Path]:
    """A hook command that decodes its (base64) argument into OUT/<n>.xml, n = 0, 1, ..."""
    out = tmp_path / f"{name}-out"
    out.mkdir()
    src = "base64 -d" if stdin else 'printf %s "$1" | base64 -d'
    cmd = script(tmp_path / f"{name}.sh", f'n=$(ls {out} | wc -l)\n{src} > {out}/$n.xml.tmp && mv {out}/$n.xml.tmp {out}/$n.xml\necho "hook ran $n"')
    return cmd, out


def hooklog(oned, hook_id=-1, rc=0, min_ts=-1, max_ts=-1) -> ET.Element:
    # pyone has no binding for a HOOKLOG root document: read it raw.
    body = oned.admin_xml("one.hooklog.info", min_ts, max_ts, hook_id, rc)
    root = parse_xml(body)
    assert root.tag == "HOOKLOG"
    # hook.xsd defines HOOKLOG inside HOOK only: validate it there.
    xsd_check(f"<HOOK><ID>0</ID><NAME>x</NAME><TYPE>api</TYPE><TEMPLATE><COMMAND>x</COMMAND></TEMPLATE>{body}</HOOK>")
    return root


def records(oned, hook_id, rc=0):
    return hooklog(oned, hook_id, rc).findall("HOOK_EXECUTION_RECORD")


def params(call_info: ET.Element, direction: str) -> dict[int, str]:
    return {
        int(p.findtext("POSITION")): p.findtext("VALUE") or ""
        for p in call_info.findall("PARAMETERS/PARAMETER")
        if p.findtext("TYPE") == direction
    }


def test_api_hook_gets_call_info_and_is_recorded(oned, one, tmp_path):
    cmd, out = counting_script(tmp_path, "api")
    hid = one.hook.allocate(
        f'NAME="on-vm-allocate"\nTYPE="api"\nCOMMAND="{cmd}"\nARGUMENTS="$API"\nCALL="one.vm.allocate"'
    )
    h = one.hook.info(hid)
    assert (h.NAME, h.TYPE) == ("on-vm-allocate", "api")
    hook_xml = oned.admin_xml("one.hook.info", hid)
    xsd_check(hook_xml)
    t = parse_xml(hook_xml).find("TEMPLATE")
    assert [c.tag for c in t] == ["ARGUMENTS", "CALL", "COMMAND", "REMOTE"]
    assert t.findtext("REMOTE") == "NO" and t.findtext("CALL") == "one.vm.allocate"

    vm_id = one.vm.allocate('NAME="hooked"\nCPU="0.5"\nMEMORY="64"')
    first = wait_for("the API hook's output", lambda: files(out))[0]
    info_xml = first.read_text()
    xsd_check(info_xml)
    info = parse_xml(info_xml)
    assert info.tag == "CALL_INFO" and info.findtext("RESULT") == "1"
    ins, outs = params(info, "IN"), params(info, "OUT")
    assert ins[1] == "****", "the session never reaches hooks"
    assert 'NAME="hooked"' in ins[2] and 'MEMORY="64"' in ins[2]
    assert (outs[1], outs[2], outs[3]) == ("true", str(vm_id), "0")
    assert info.findtext("EXTRA/VM/ID") == str(vm_id)
    assert info.findtext("EXTRA/VM/NAME") == "hooked"

    recs = wait_for("the execution record", lambda: records(oned, hid))
    r = recs[0]
    assert (r.findtext("HOOK_ID"), r.findtext("EXECUTION_ID")) == (str(hid), "0")
    assert r.findtext("EXECUTION_RESULT/CODE") == "0"
    assert base64.b64decode(r.findtext("EXECUTION_RESULT/STDOUT")) == b"hook ran 0\n"
    assert r.findtext("EXECUTION_RESULT/COMMAND").startswith(f"{cmd} ")
    assert base64.b64decode(r.findtext("ARGUMENTS")).decode() == info_xml
    assert abs(int(r.findtext("TIMESTAMP")) - time.time()) < 60
    # The same record in one.hook.info, which pyone parses.
    xsd_check(oned.admin_xml("one.hook.info", hid))
    assert one.hook.info(hid).HOOKLOG.HOOK_EXECUTION_RECORD[0].EXECUTION_ID == 0

    # A failed call fires the hook too, with RESULT 0 and the error as OpenNebula answers it.
    with pytest.raises(pyone.OneException):
        one.vm.allocate('NAME = [')
    second = wait_for("the hook of the failed call", lambda: len(files(out)) >= 2 and files(out)[1])
    failed = parse_xml(second.read_text())
    assert failed.findtext("RESULT") == "0"
    outs = params(failed, "OUT")
    assert outs[1] == "false" and outs[2].startswith("[one.vm.allocate]") and outs[3] == "4096"

    # Retry runs a recorded execution again with the same arguments.
    assert one.hook.retry(hid, 0) == hid
    recs = wait_for("the retried execution", lambda: (r := records(oned, hid)) and len(r) >= 3 and r)
    retried = [x for x in recs if x.findtext("RETRY") == "yes"]
    assert len(retried) == 1 and retried[0].findtext("EXECUTION_ID") == "2"
    assert retried[0].findtext("ARGUMENTS") == r.findtext("ARGUMENTS")
    assert wait_for("the retry's output", lambda: len(files(out)) >= 3 and files(out)[2]).read_text() == info_xml
    with pytest.raises(pyone.OneInternalException, match="Arguments not found"):
        one.hook.retry(hid, 99)

    # Filters of one.hooklog.info.
    assert len(records(oned, hid, rc=1)) == 3 and records(oned, hid, rc=-1) == []
    assert len(hooklog(oned, -1, 0, min_ts=0).findall("HOOK_EXECUTION_RECORD")) == 3
    assert hooklog(oned, -1, 0, max_ts=1).findall("HOOK_EXECUTION_RECORD") == []
    assert hooklog(oned, hid + 1).findall("HOOK_EXECUTION_RECORD") == []

    # Hooks and their records survive a restart, and keep firing.
    oned.restart()
    one = oned.client()
    assert len(records(oned, hid)) == 3
    one.vm.allocate('NAME="after-restart"\nCPU="0.5"\nMEMORY="64"')
    wait_for("the hook after a restart", lambda: len(files(out)) >= 4)
    wait_for("its record", lambda: len(records(oned, hid)) == 4)

    # Deleting the hook stops it.
    one.hook.delete(hid)
    with pytest.raises(pyone.OneNoExistsException):
        one.hook.info(hid)
    one.vm.allocate('NAME="unhooked"\nCPU="0.5"\nMEMORY="64"')
    time.sleep(1)
    assert len(files(out)) == 4


def test_hook_management_and_errors(oned, one, make_user):
    hid = one.hook.allocate('NAME="h"\nTYPE="state"\nCOMMAND="x.sh"\nRESOURCE="HOST"\nSTATE="ERROR"')
    xsd_check(oned.admin_xml("one.hookpool.info", -2, -1, -1))
    pool = parse_xml(oned.admin_xml("one.hookpool.info", -2, -1, -1))
    assert [h.findtext("NAME") for h in pool.findall("HOOK")] == ["h"]
    assert pool.find("HOOK/HOOKLOG") is None, "pool bodies carry no execution records"
    assert [h.NAME for h in one.hookpool.info(-2, -1, -1).HOOK] == ["h"]

    # Names are unique; rename, update (replace and merge) re-check the template.
    with pytest.raises(pyone.OneInternalException, match=r"NAME is already taken by HOOK %d\." % hid):
        one.hook.allocate('NAME="h"\nTYPE="api"\nCOMMAND="x"\nCALL="one.vm.allocate"')
    one.hook.rename(hid, "host-error")
    assert one.hook.info(hid).NAME == "host-error"
    one.hook.update(hid, 'TIMEOUT="5"', 1)
    t = parse_xml(oned.admin_xml("one.hook.info", hid)).find("TEMPLATE")
    assert (t.findtext("TIMEOUT"), t.findtext("STATE"), t.findtext("COMMAND")) == ("5", "ERROR", "x.sh")
    with pytest.raises(pyone.OneInternalException, match="Cannot update template. No COMMAND"):
        one.hook.update(hid, 'RESOURCE="HOST"\nSTATE="ERROR"', 0)
    with pytest.raises(pyone.OneInternalException, match="Invalid STATE: NOPE"):
        one.hook.update(hid, 'STATE="NOPE"', 1)
    one.hook.update(hid, 'COMMAND="y.sh"\nRESOURCE="HOST"\nSTATE="DISABLED"', 0)
    t = parse_xml(oned.admin_xml("one.hook.info", hid)).find("TEMPLATE")
    assert (t.findtext("COMMAND"), t.findtext("STATE"), t.findtext("TIMEOUT")) == ("y.sh", "DISABLED", None)

    # Locks.
    one.hook.lock(hid, 1)
    with pytest.raises(pyone.OneException, match=r"The resource hook is locked"):
        one.hook.delete(hid)
    one.hook.unlock(hid)
    xsd_check(oned.admin_xml("one.hook.info", hid))

    # Template errors, worded as OpenNebula's.
    bad = {
        'NAME="b"\nTYPE="cron"\nCOMMAND="x"': "Invalid Hook type: cron",
        'TYPE="api"\nCOMMAND="x"\nCALL="one.vm.allocate"': "No NAME in template for Hook.",
        'NAME="b"\nTYPE="api"\nCALL="one.vm.allocate"': "No COMMAND in template for Hook.",
        'NAME="b"\nTYPE="api"\nCOMMAND="x"\nCALL="one.vm.fly"': "API call does not exist or is not supported: one.vm.fly",
        'NAME="b"\nTYPE="api"\nCOMMAND="x"\nCALL="one.vm.info"': "API call does not exist or is not supported: one.vm.info",
        'NAME="b"\nTYPE="state"\nCOMMAND="x"\nSTATE="ERROR"': "RESOURCE attribute is required for STATE hooks.",
        'NAME="b"\nTYPE="state"\nCOMMAND="x"\nRESOURCE="ZONE"': "Invalid resource type: ZONE",
        'NAME="b"\nTYPE="state"\nCOMMAND="x"\nRESOURCE="VM"\nSTATE="ACTIVE"\nLCM_STATE="FLYING"': "Wrong LCM_STATE: FLYING",
    }
    for tmpl, msg in bad.items():
        r = oned.admin_call("one.hook.allocate", tmpl)
        assert r[:3] == [False, f"[one.hook.allocate] Error allocating a new hook. {msg}", 0x2000], (tmpl, r)

    # Missing hooks.
    for method, args in [("one.hook.info", (4242,)), ("one.hook.delete", (4242,)),
                         ("one.hook.retry", (4242, 0)), ("one.hook.update", (4242, "COMMAND=x", 0))]:
        r = oned.admin_call(method, *args)
        assert r[:3] == [False, f"[{method}] Error getting hook [4242].", 0x400], r

    # Only group oneadmin: hooks run commands on the front-end.
    u = make_user("alice", "pw")
    with pytest.raises(pyone.OneAuthorizationException):
        u.hook.allocate('NAME="x"\nTYPE="api"\nCOMMAND="/bin/true"\nCALL="one.vm.allocate"')
    with pytest.raises(pyone.OneAuthorizationException):
        u.hook.info(hid)
    with pytest.raises(pyone.OneAuthorizationException):
        u.hook.delete(hid)
    with pytest.raises(pyone.OneAuthorizationException):
        u.hook.retry(hid, 0)
    r = oned.raw_call("one.hooklog.info", u.session, -1, -1, -1, 0)
    assert r[0] is False and r[2] == 0x200
    assert parse_xml(oned.raw_call("one.hookpool.info", u.session, -2, -1, -1)[1]).findall("HOOK") == []
    admin2 = make_user("root2", "pw", [0])
    assert admin2.hook.info(hid).ID == hid, "other members of group oneadmin may"


def test_relative_commands_stdin_timeout_remote_and_retention(oned_factory, tmp_path):
    conf = tmp_path / "oned.toml"
    conf.write_text('[hooks]\ndir = "myhooks"\nlog_retention = 2\ntimeout_seconds = 30\n')
    oned = oned_factory("cfg", extra_args=["--config", str(conf)])
    one = oned.client()
    hooks_dir = oned.data_dir / "myhooks"
    assert hooks_dir.is_dir(), "oned creates its hooks directory"
    out = tmp_path / "env.txt"
    script(hooks_dir / "env.sh", f'cat > {out}.stdin\necho "$ONE_XMLRPC $#" > {out}')
    script(hooks_dir / "slow.sh", "sleep 20")

    env_hook = one.hook.allocate(
        'NAME="env"\nTYPE="api"\nCOMMAND="env.sh"\nARGUMENTS="fixed $API"\nARGUMENTS_STDIN="yes"\nCALL="one.cluster.allocate"'
    )
    slow = one.hook.allocate('NAME="slow"\nTYPE="api"\nCOMMAND="slow.sh"\nTIMEOUT="1"\nCALL="one.cluster.allocate"')
    remote = one.hook.allocate('NAME="remote"\nTYPE="api"\nCOMMAND="env.sh"\nREMOTE="yes"\nCALL="one.cluster.allocate"')

    started = time.monotonic()
    one.cluster.allocate("c1")
    wait_for("the relative command", lambda: out.exists() and out.read_text())
    # Arguments went to stdin: no command-line arguments; the hook knows where oned is.
    assert out.read_text().strip() == f"{oned.endpoint} 0"
    words = Path(f"{out}.stdin").read_text().split(" ")
    assert words[0] == "fixed"
    assert parse_xml(base64.b64decode(words[1]).decode()).findtext("EXTRA/CLUSTER/NAME") == "c1"

    (t,) = wait_for("the timed-out execution", lambda: records(oned, slow))
    assert t.findtext("EXECUTION_RESULT/CODE") == "255"
    assert base64.b64decode(t.findtext("EXECUTION_RESULT/STDERR")).decode() == f"Timeout executing {hooks_dir}/slow.sh"
    assert time.monotonic() - started < 15, "the 1 s TIMEOUT killed the command"

    (rm,) = wait_for("the remote execution", lambda: records(oned, remote))
    assert rm.findtext("EXECUTION_RESULT/CODE") == "255"
    assert "node agent" in base64.b64decode(rm.findtext("EXECUTION_RESULT/STDERR")).decode()
    assert records(oned, remote, rc=-1) and records(oned, remote, rc=1) == []

    # log_retention = 2: the oldest records go, execution ids keep growing.
    for name in ("c2", "c3"):
        one.cluster.allocate(name)
    wait_for("three executions", lambda: [r.findtext("EXECUTION_ID") for r in records(oned, env_hook)] == ["1", "2"])


def wait_monitored(one, host_id, timeout=30.0):
    """Waits for the dummy monitor to move a host to MONITORED (2); skips when it never does."""
    deadline = time.monotonic() + timeout
    while one.host.info(host_id).STATE != 2:
        if time.monotonic() > deadline:
            pytest.skip(f"dummy host never became MONITORED in {timeout}s (is host monitoring there?)")
        time.sleep(0.2)


def test_state_hook_on_host_monitored(oned, one, tmp_path):
    cmd, out = counting_script(tmp_path, "host", stdin=True)
    hook = one.hook.allocate(
        f'NAME="monitored"\nTYPE="state"\nRESOURCE="HOST"\nSTATE="MONITORED"\nCOMMAND="{cmd}"\n'
        'ARGUMENTS="$TEMPLATE"\nARGUMENTS_STDIN="YES"'
    )
    error_hook = one.hook.allocate(
        'NAME="error"\nTYPE="state"\nRESOURCE="HOST"\nSTATE="ERROR"\nCOMMAND="/bin/false"'
    )
    host_id = one.host.allocate("h1", "dummy", "dummy", -1)
    wait_monitored(one, host_id)
    doc = wait_for("the state hook's output", lambda: files(out))[0].read_text()
    xsd_check(doc)
    host = parse_xml(doc)
    assert (host.tag, host.findtext("ID"), host.findtext("NAME"), host.findtext("STATE")) == ("HOST", str(host_id), "h1", "2")
    (rec,) = wait_for("its record", lambda: records(oned, hook))
    assert rec.findtext("REMOTE_HOST") == "h1"
    assert rec.findtext("EXECUTION_RESULT/COMMAND") == str(cmd), "arguments went to stdin"
    # Monitoring rounds that leave the host MONITORED do not fire again.
    time.sleep(2)
    assert len(files(out)) == 1
    assert records(oned, error_hook) == []


def test_state_hook_on_vm_running(oned, one, tmp_path):
    try:
        oned.admin_call("one.vm.deploy", -1, -1)
    except xmlrpc.client.Fault:
        pytest.skip("one.vm.deploy is not served by this oned yet")
    cmd, out = counting_script(tmp_path, "vm")
    legacy_cmd, legacy_out = counting_script(tmp_path, "legacy")
    hook = one.hook.allocate(
        f'NAME="running"\nTYPE="state"\nRESOURCE="VM"\nSTATE="ACTIVE"\nLCM_STATE="RUNNING"\nCOMMAND="{cmd}"\nARGUMENTS="$TEMPLATE"'
    )
    one.hook.allocate(f'NAME="legacy"\nTYPE="state"\nRESOURCE="VM"\nON="RUNNING"\nCOMMAND="{legacy_cmd}"\nARGUMENTS="$TEMPLATE"')
    t = parse_xml(oned.admin_xml("one.hook.info", hook + 1)).find("TEMPLATE")
    assert (t.findtext("STATE"), t.findtext("LCM_STATE"), t.findtext("ON")) == ("ACTIVE", "RUNNING", None)

    host_id = one.host.allocate("h1", "dummy", "dummy", -1)
    wait_monitored(one, host_id)
    vm_id = one.vm.allocate('NAME="web"\nCPU="0.5"\nMEMORY="64"')
    one.vm.deploy(vm_id, host_id)
    wait_for("the VM to run", lambda: one.vm.info(vm_id).LCM_STATE == 3)
    for o in (out, legacy_out):
        vm = parse_xml(wait_for("the VM state hook's output", lambda: files(o))[0].read_text())
        assert (vm.tag, vm.findtext("ID"), vm.findtext("STATE"), vm.findtext("LCM_STATE")) == ("VM", str(vm_id), "3", "3")
        assert vm.findtext("HISTORY_RECORDS/HISTORY/HOSTNAME") == "h1"
    (rec,) = wait_for("its record", lambda: records(oned, hook))
    assert rec.findtext("REMOTE_HOST") == "h1" and rec.findtext("EXECUTION_RESULT/CODE") == "0"
