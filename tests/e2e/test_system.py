"""The core: one.system.*, authentication, malformed requests, the bootstrap objects of a
new installation, the data directory, its lock, and restarts."""

from __future__ import annotations

import os
import stat
import xmlrpc.client

import pyone
import pytest
from pyone.bindings import supbind

from harness import parse_xml, rpc_fault, wait_for, xsd_check

VERSION = "7.4.0"


def auth_message(method: str) -> str:
    return f"[{method}] User couldn't be authenticated, aborting call."


def assert_alive(oned):
    """The daemon still answers a normal call."""
    assert oned.alive(), f"oned died\n{oned.logs()}"
    assert oned.admin_call("one.system.version") == [True, VERSION, 0]


def by_id(root, tag):
    return {int(e.findtext("ID")): e for e in root.findall(tag)}


# ---------------------------------------------------------------------------------------
# one.system.*


def test_version_pyone(one):
    assert one.system.version() == VERSION


def test_version_raw_answer(oned):
    assert oned.admin_call("one.system.version") == [True, VERSION, 0]


def test_config_is_valid_xml(oned, one):
    body = oned.admin_xml("one.system.config")
    assert isinstance(body, str) and body.startswith("<"), repr(body[:200])
    assert parse_xml(body).tag == "OPENNEBULA_CONFIGURATION"
    xsd_check(body)
    cfg = one.system.config()  # pyone binds it by root tag
    assert isinstance(cfg, supbind.OPENNEBULA_CONFIGURATION), type(cfg)


# ---------------------------------------------------------------------------------------
# Authentication


def test_wrong_password_pyone(oned):
    bad = oned.client("oneadmin", "not-the-password")
    with pytest.raises(pyone.OneAuthenticationException):
        bad.system.version()


def test_wrong_password_raw_answer(oned):
    r = oned.raw_call("one.system.version", "oneadmin:not-the-password")
    assert isinstance(r, list) and len(r) == 5, r
    assert r[0] is False
    assert r[1] == auth_message("one.system.version")
    assert r[2] == 256
    assert isinstance(r[3], int) and isinstance(r[4], int), r


@pytest.mark.parametrize(
    "session",
    ["nosuchuser:x", "oneadmin", "oneadmin:", ":", "", "serveradmin:x", "oneadmin :x"],
    ids=["unknown-user", "no-colon", "empty-password", "colon-only", "empty", "serveradmin", "space"],
)
def test_bad_sessions_are_auth_errors(oned, session):
    r = oned.raw_call("one.userpool.info", session)
    assert r[:3] == [False, auth_message("one.userpool.info"), 256], r
    assert len(r) == 5, r


def test_session_must_be_a_string(oned):
    with pytest.raises(xmlrpc.client.Fault):
        oned.raw_call("one.system.version", 42)
    assert_alive(oned)


# ---------------------------------------------------------------------------------------
# Unknown methods, malformed requests, wrong parameter types


def test_unknown_method_is_a_fault(oned):
    with pytest.raises(xmlrpc.client.Fault):
        oned.admin_call("one.nosuchobject.info", 0)
    with pytest.raises(xmlrpc.client.Fault):
        oned.admin_call("system.listMethods")
    assert_alive(oned)


def test_unknown_method_pyone(one):
    with pytest.raises(pyone.OneException):
        one.nosuchobject.info(0)


CALL_HEAD = b'<?xml version="1.0"?><methodCall><methodName>one.system.version</methodName><params>'


def _nested(depth: int, closed: bool = True) -> bytes:
    inner = b"<value><array><data>" * depth
    if closed:
        inner += b"</data></array></value>" * depth
    return CALL_HEAD + b"<param>" + inner + b"</param></params></methodCall>"


MALFORMED = {
    "empty": b"",
    "garbage": bytes(range(256)) * 64,
    "text": b"hello, this is not XML",
    "truncated": CALL_HEAD + b"<param><value><string>oneadmin:x",
    "truncated-in-tag": CALL_HEAD[:-10],
    "no-method-name": b'<?xml version="1.0"?><methodCall><params></params></methodCall>',
    "response-instead-of-call": b'<?xml version="1.0"?><methodResponse><params></params></methodResponse>',
    "bad-int": CALL_HEAD + b"<param><value><string>a:b</string></value></param>"
    b"<param><value><int>12abc</int></value></param></params></methodCall>",
    "int-overflow": CALL_HEAD + b"<param><value><string>a:b</string></value></param>"
    b"<param><value><i4>99999999999999999999</i4></value></param></params></methodCall>",
    "bad-boolean": CALL_HEAD + b"<param><value><boolean>7</boolean></value></param></params></methodCall>",
    "bad-base64": CALL_HEAD + b"<param><value><base64>!!!</base64></value></param></params></methodCall>",
    "unknown-type": CALL_HEAD + b"<param><value><frobnicate>1</frobnicate></value></param></params></methodCall>",
    "mismatched-tags": CALL_HEAD + b"<param><value><string>x</int></value></param></params></methodCall>",
    "bad-entity": CALL_HEAD + b"<param><value><string>&nosuch;</string></value></param></params></methodCall>",
    "bad-char-ref": CALL_HEAD + b"<param><value><string>&#0;&#xD800;</string></value></param></params></methodCall>",
    "billion-laughs": b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b']><methodCall><methodName>one.system.version</methodName><params><param><value><string>&lol9;'
    b"</string></value></param></params></methodCall>",
    "invalid-utf8": CALL_HEAD + b"<param><value><string>\xff\xfe\xc3(</string></value></param></params></methodCall>",
    "deep-nesting": _nested(100_000),
    "deep-unclosed-nesting": _nested(200_000, closed=False),
    "two-roots": CALL_HEAD + b"</params></methodCall><methodCall/>",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_body_gets_a_fault(oned, name):
    status, headers, body = oned.raw_post(MALFORMED[name])
    assert status == 200, (status, body[:500])
    assert headers.get("content-type", "").startswith("text/xml"), headers
    assert rpc_fault(body) is not None, f"expected a fault, got {body[:500]!r}"
    assert_alive(oned)


@pytest.mark.slow
def test_huge_body_gets_a_fault(oned):
    """70 MB, above the 64 MiB max_request_bytes default."""
    body = (CALL_HEAD + b"<param><value><string>" + b"A" * (70 * 1024 * 1024)
            + b"</string></value></param></params></methodCall>")
    status, headers, answer = oned.raw_post(body)
    assert status == 200, (status, answer[:500])
    assert rpc_fault(answer) is not None, f"expected a fault, got {answer[:500]!r}"
    assert_alive(oned)


@pytest.mark.parametrize(
    "method,params",
    [
        ("one.vm.info", ["zero"]),
        ("one.vm.info", []),
        ("one.user.info", ["me"]),
        ("one.group.info", [1.5]),
        ("one.datastore.info", [[0]]),
        ("one.user.update", [0, 5, 1]),
        ("one.group.allocate", [7]),
        ("one.user.allocate", ["u", "p", "core", "not-a-list"]),
        ("one.acl.addrule", [1, 2, 3]),
    ],
    ids=lambda v: v if isinstance(v, str) else repr(v),
)
def test_wrong_parameter_types(oned, method, params):
    """An RPC_API (4096) error answer or a fault; never a crash."""
    try:
        r = oned.admin_call(method, *params)
    except xmlrpc.client.Fault:
        pass
    else:
        assert isinstance(r, list) and r[0] is False and r[2] == 4096, r
        assert len(r) == 5, r
    assert_alive(oned)


# ---------------------------------------------------------------------------------------
# Bootstrap objects of a new installation


def test_bootstrap_users(oned, one):
    body = oned.admin_xml("one.userpool.info")
    xsd_check(body)
    users = by_id(parse_xml(body), "USER")
    assert {0, 1} <= set(users), body
    assert users[0].findtext("NAME") == "oneadmin"
    assert users[0].findtext("GID") == "0"
    assert users[0].findtext("GNAME") == "oneadmin"
    assert users[0].findtext("AUTH_DRIVER") == "core"
    assert users[1].findtext("NAME") == "serveradmin"
    assert users[1].findtext("GID") == "0"
    assert users[1].findtext("AUTH_DRIVER") == "server_cipher"
    for uid in (0, 1):
        xsd_check(oned.admin_xml("one.user.info", uid))
    # pyone binds the same documents
    names = {u.ID: u.NAME for u in one.userpool.info().USER}
    assert names[0] == "oneadmin" and names[1] == "serveradmin"
    assert one.user.info(0).NAME == "oneadmin"


def test_bootstrap_groups(oned, one):
    body = oned.admin_xml("one.grouppool.info")
    xsd_check(body)
    groups = by_id(parse_xml(body), "GROUP")
    assert groups[0].findtext("NAME") == "oneadmin"
    assert groups[1].findtext("NAME") == "users"
    members = {int(i.text) for i in groups[0].findall("USERS/ID")}
    assert {0, 1} <= members, body
    for gid in (0, 1):
        xsd_check(oned.admin_xml("one.group.info", gid))
    assert {g.ID: g.NAME for g in one.grouppool.info().GROUP}[1] == "users"


def test_bootstrap_cluster(oned, one):
    body = oned.admin_xml("one.clusterpool.info")
    xsd_check(body)
    clusters = by_id(parse_xml(body), "CLUSTER")
    assert clusters[0].findtext("NAME") == "default"
    ds = {int(i.text) for i in clusters[0].findall("DATASTORES/ID")}
    assert {0, 1, 2} <= ds, body
    xsd_check(oned.admin_xml("one.cluster.info", 0))
    assert one.cluster.info(0).NAME == "default"


DATASTORES = {
    # id: (NAME, TYPE, DS_MAD or None when not checked)
    0: ("system", 1, None),
    1: ("default", 0, "fs"),
    2: ("files", 2, "fs"),
}


def test_bootstrap_datastores(oned, one):
    body = oned.admin_xml("one.datastorepool.info")
    xsd_check(body)
    found = by_id(parse_xml(body), "DATASTORE")
    data_dir = os.path.realpath(oned.data_dir)
    for ds_id, (name, ds_type, ds_mad) in DATASTORES.items():
        assert ds_id in found, body
        ds = found[ds_id]
        assert ds.findtext("NAME") == name
        assert int(ds.findtext("TYPE")) == ds_type, (ds_id, ds.findtext("TYPE"))
        if ds_mad:
            assert ds.findtext("DS_MAD") == ds_mad
        assert ds.findtext("TM_MAD") == "shared"
        base = ds.findtext("BASE_PATH")
        assert os.path.isabs(base), base
        assert base == os.path.join(data_dir, "datastores", str(ds_id))
        # The frontend agent makes the directory (with its token file) once it is up.
        wait_for(f"datastore {ds_id}'s directory", lambda: os.path.isfile(os.path.join(base, ".one-rs-datastore")))
        assert 0 in {int(i.text) for i in ds.findall("CLUSTERS/ID")}
        info = oned.admin_xml("one.datastore.info", ds_id)
        xsd_check(info)
        assert parse_xml(info).findtext("BASE_PATH") == base
    assert one.datastore.info(1).DS_MAD == "fs"


# Resource bits of PoolObjectSQL.h and the ACL id-type bits.
ACL_ALL, ACL_GROUP = 0x4_0000_0000, 0x2_0000_0000
R_VM, R_IMAGE, R_TEMPLATE, R_DOCUMENT = 1 << 36, 1 << 39, 1 << 41, 1 << 46
R_SECGROUP, R_VMGROUP, R_BACKUPJOB = 1 << 48, 1 << 53, 1 << 56
DEFAULT_ACLS = [
    "@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *",
    "* ZONE/* USE *",
    "* MARKETPLACE+MARKETPLACEAPP/* USE *",
]


def test_bootstrap_acl_rules(oned, one):
    body = oned.admin_xml("one.acl.info")
    xsd_check(body)
    rules = {a.findtext("STRING"): a for a in parse_xml(body).findall("ACL")}
    for rule in DEFAULT_ACLS:
        assert rule in rules, f"default ACL rule {rule!r} missing from\n{body}"
    create = rules[DEFAULT_ACLS[0]]
    # USER, RESOURCE, RIGHTS and ZONE are hex strings
    assert int(create.findtext("USER"), 16) == ACL_GROUP | 1
    assert int(create.findtext("RESOURCE"), 16) == (
        ACL_ALL | R_VM | R_IMAGE | R_TEMPLATE | R_DOCUMENT | R_SECGROUP | R_VMGROUP | R_BACKUPJOB
    )
    assert int(create.findtext("RIGHTS"), 16) == 0x8
    assert int(create.findtext("ZONE"), 16) == ACL_ALL
    assert len(one.acl.info().ACL) >= len(DEFAULT_ACLS)


# ---------------------------------------------------------------------------------------
# The data directory


def test_data_dir_layout(oned, db_backend):
    d = oned.data_dir
    if db_backend == "sqlite":
        assert (d / "one.db").is_file()
    auth = d / "one_auth"
    assert auth.is_file()
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600, oct(auth.stat().st_mode)
    assert auth.read_text().strip() == f"oneadmin:{oned.admin_password}"
    endpoint = (d / "one_endpoint").read_text()
    assert endpoint.strip() == oned.endpoint
    assert endpoint.count("\n") <= 1
    assert oned.endpoint.startswith("http://127.0.0.1:") and oned.endpoint.endswith("/RPC2")
    # The frontend agent makes the datastores' directories (and the token files of the
    # shared ones) as soon as it is up.
    for ds_id in (0, 1, 2):
        wait_for(f"datastore {ds_id}'s directory", lambda: (d / "datastores" / str(ds_id) / ".one-rs-datastore").is_file())
    assert (d / "vms").is_dir()
    assert (d / "ssh").is_dir()
    assert (d / "oned.log").is_file()


def test_generated_password_without_one_auth(oned_factory, tmp_path):
    """With no ONE_AUTH file, oned picks a password and writes it to DIR/one_auth."""
    o = oned_factory("gen", start=False, env={"ONE_AUTH": str(tmp_path / "does-not-exist")})
    o.start()
    line = (o.data_dir / "one_auth").read_text().strip()
    user, _, password = line.partition(":")
    assert user == "oneadmin" and len(password) >= 8, line
    o.admin_password = password
    assert o.client().system.version() == VERSION


def test_second_oned_refuses_the_same_data_dir(oned):
    endpoint_before = (oned.data_dir / "one_endpoint").read_text()
    r = oned.run_to_exit(timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode != 0, f"a second oned started on the same data dir:\n{out}"
    assert "lock" in out.lower(), f"no word about the lock in:\n{out}"
    assert (oned.data_dir / "one_endpoint").read_text() == endpoint_before
    assert_alive(oned)


def test_restart_keeps_everything(oned):
    one = oned.client()
    gid = one.group.allocate("restart_group")
    uid = one.user.allocate("restart_user", "restart-secret", "core")
    one.user.update(uid, 'COLOR="blue"', 1)
    auth_before = (oned.data_dir / "one_auth").read_text()
    users_before = {i: u.findtext("NAME") for i, u in by_id(parse_xml(oned.admin_xml("one.userpool.info")), "USER").items()}
    groups_before = {i: g.findtext("NAME") for i, g in by_id(parse_xml(oned.admin_xml("one.grouppool.info")), "GROUP").items()}

    assert oned.stop() == 0, f"oned did not exit cleanly on SIGTERM\n{oned.logs()}"
    oned.start()

    assert (oned.data_dir / "one_auth").read_text() == auth_before
    one = oned.client()  # the same oneadmin password
    assert one.system.version() == VERSION
    users_body = oned.admin_xml("one.userpool.info")
    xsd_check(users_body)
    users_after = {i: u.findtext("NAME") for i, u in by_id(parse_xml(users_body), "USER").items()}
    assert users_after == users_before
    groups_after = {i: g.findtext("NAME") for i, g in by_id(parse_xml(oned.admin_xml("one.grouppool.info")), "GROUP").items()}
    assert groups_after == groups_before
    user = parse_xml(oned.admin_xml("one.user.info", uid))
    assert user.findtext("TEMPLATE/COLOR") == "blue"
    me = oned.client("restart_user", "restart-secret").user.info(-1)
    assert me.ID == uid and me.NAME == "restart_user"
    assert one.group.allocate("after_restart") > gid
    assert one.user.allocate("after_restart", "x1", "core") > uid


def test_one_auth_only_read_on_first_start(oned):
    """ONE_AUTH seeds oneadmin's password of a new installation only."""
    old = oned.admin_password
    oned.stop()
    oned.admin_password = "a-different-password"  # written to the ONE_AUTH file by start()
    try:
        oned.start()
        r = oned.raw_call("one.system.version", "oneadmin:a-different-password")
        assert r[:3] == [False, auth_message("one.system.version"), 256], r
        assert oned.raw_call("one.system.version", f"oneadmin:{old}") == [True, VERSION, 0]
    finally:
        oned.admin_password = old
