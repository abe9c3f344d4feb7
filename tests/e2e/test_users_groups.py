"""Users, groups and quotas: one.user.*, one.userpool.info, one.userquota.*, one.group.*,
one.grouppool.info, one.groupquota.*, through pyone (success and error paths) with every
document checked against OpenNebula's XSDs."""

from __future__ import annotations

import xmlrpc.client

import pyone
import pytest

from harness import parse_xml, xsd_check

# OpenNebula answers failed allocations with INTERNAL (0x2000).
ALLOCATE = 0x2000


# ---------------------------------------------------------------------------------------
# helpers


def user_doc(oned, uid):
    """one.user.info as oneadmin: the XML checked against user.xsd, parsed."""
    body = oned.admin_xml("one.user.info", uid)
    xsd_check(body)
    return parse_xml(body)


def group_doc(oned, gid):
    body = oned.admin_xml("one.group.info", gid)
    xsd_check(body)
    return parse_xml(body)


def ids(root, path):
    return sorted(int(e.text) for e in root.findall(path))


def vm_quota(root, metric, section="VM_QUOTA/VM"):
    return root.findtext(f"{section}/{metric}")


def fails_with(answer, code, text=None):
    """A raw answer is a failure with this code (and text in its message)."""
    assert answer[0] is False, answer
    assert answer[2] == code, answer
    if text is not None:
        assert text in answer[1], answer


def acl_rules(oned):
    root = parse_xml(oned.admin_xml("one.acl.info"))
    return [e.findtext("STRING") for e in root.findall("ACL")]


# ---------------------------------------------------------------------------------------
# bootstrap objects and pool listings


def test_bootstrap_pools_validate(oned, one):
    users = oned.admin_xml("one.userpool.info")
    xsd_check(users)
    root = parse_xml(users)
    names = {e.findtext("NAME"): int(e.findtext("ID")) for e in root.findall("USER")}
    assert names == {"oneadmin": 0, "serveradmin": 1}
    # Each USER is followed by its QUOTAS; the defaults close the pool.
    assert ids(root, "QUOTAS/ID") == [0, 1]
    assert root[-1].tag == "DEFAULT_USER_QUOTAS"

    groups = oned.admin_xml("one.grouppool.info")
    xsd_check(groups)
    groot = parse_xml(groups)
    gnames = {e.findtext("NAME"): int(e.findtext("ID")) for e in groot.findall("GROUP")}
    assert gnames == {"oneadmin": 0, "users": 1}
    assert groot[-1].tag == "DEFAULT_GROUP_QUOTAS"
    oneadmin_group = group_doc(oned, 0)
    assert ids(oneadmin_group, "USERS/ID") == [0, 1]

    pool = one.userpool.info()
    assert sorted(u.NAME for u in pool.USER) == ["oneadmin", "serveradmin"]
    assert sorted(g.NAME for g in one.grouppool.info().GROUP) == ["oneadmin", "users"]
    me = one.user.info(-1)
    assert me.ID == 0 and me.NAME == "oneadmin" and me.GID == 0
    assert one.group.info(-1).NAME == "oneadmin"


# ---------------------------------------------------------------------------------------
# one.user.allocate / info / delete


def test_user_allocate_and_info(oned, one):
    uid = one.user.allocate("alice", "s3cret", "")
    assert uid >= 2
    doc = user_doc(oned, uid)
    assert doc.findtext("NAME") == "alice"
    assert doc.findtext("GID") == "1" and doc.findtext("GNAME") == "users"
    assert ids(doc, "GROUPS/ID") == [1]
    assert doc.findtext("AUTH_DRIVER") == "core"
    assert doc.findtext("ENABLED") == "1"
    assert doc.findtext("PASSWORD") not in ("", "s3cret")
    assert doc.findtext("TEMPLATE/TOKEN_PASSWORD")
    assert doc.find("DEFAULT_USER_QUOTAS") is not None
    assert uid in ids(group_doc(oned, 1), "USERS/ID")

    alice = oned.client("alice", "s3cret")
    me = alice.user.info(-1)
    assert me.ID == uid and me.NAME == "alice"
    # A user sees only himself in the pool.
    assert [u.NAME for u in alice.userpool.info().USER] == ["alice"]
    body = oned.raw_call("one.userpool.info", "alice:s3cret")[1]
    xsd_check(body)
    # ...and his own group.
    assert alice.group.info(-1).NAME == "users"
    assert [g.NAME for g in alice.grouppool.info().GROUP] == ["users"]


def test_user_allocate_with_groups(oned, one):
    gid = one.group.allocate("devs")
    uid = one.user.allocate("bob", "pw", "core", [gid, 1])
    doc = user_doc(oned, uid)
    assert doc.findtext("GID") == str(gid) and doc.findtext("GNAME") == "devs"
    assert ids(doc, "GROUPS/ID") == [1, gid]
    assert uid in ids(group_doc(oned, gid), "USERS/ID")
    assert uid in ids(group_doc(oned, 1), "USERS/ID")


def test_user_allocate_errors(oned, one, make_user):
    one.user.allocate("carol", "pw", "core")
    with pytest.raises(pyone.OneException) as e:
        one.user.allocate("carol", "other", "core")
    assert "NAME is already taken by USER" in str(e.value)
    r = oned.admin_call("one.user.allocate", "carol", "pw", "core")
    fails_with(r, ALLOCATE, "[one.user.allocate] Error allocating a new user. NAME is already taken")
    fails_with(oned.admin_call("one.user.allocate", "a b", "pw", "core"), ALLOCATE, "Invalid NAME")
    fails_with(oned.admin_call("one.user.allocate", "a:b", "pw", "core"), ALLOCATE, "Invalid NAME")
    fails_with(oned.admin_call("one.user.allocate", "", "pw", "core"), ALLOCATE, "cannot be empty")
    fails_with(oned.admin_call("one.user.allocate", "dave", "", "core"), ALLOCATE, "password")
    fails_with(oned.admin_call("one.user.allocate", "dave", "p w", "core"), ALLOCATE, "password")
    with pytest.raises(pyone.OneNoExistsException) as e:
        one.user.allocate("dave", "pw", "core", [999])
    assert "Error getting group [999]" in str(e.value)
    plain = make_user("plain", "pw")
    with pytest.raises(pyone.OneAuthorizationException) as e:
        plain.user.allocate("eve", "pw", "core")
    assert "CREATE USER" in str(e.value)


def test_user_info_errors(oned, one, make_user):
    alice = make_user("alice", "pw")
    make_user("bob", "pw")
    with pytest.raises(pyone.OneNoExistsException) as e:
        one.user.info(4242)
    assert str(e.value) == "[one.user.info] Error getting user [4242]."
    with pytest.raises(pyone.OneAuthorizationException) as e:
        alice.user.info(0)
    assert "USE USER [0]" in str(e.value)


def test_user_delete(oned, one, make_user):
    gid = one.group.allocate("team")
    uid = one.user.allocate("gone", "pw", "core", [gid])
    one.group.addadmin(gid, uid)
    assert any(f"#{uid} " in r for r in acl_rules(oned))
    alice = make_user("alice", "pw")
    with pytest.raises(pyone.OneAuthorizationException):
        alice.user.delete(uid)
    assert one.user.delete(uid) == uid
    with pytest.raises(pyone.OneNoExistsException):
        one.user.info(uid)
    g = group_doc(oned, gid)
    assert uid not in ids(g, "USERS/ID") and uid not in ids(g, "ADMINS/ID")
    assert not any(f"#{uid} " in r for r in acl_rules(oned))
    with pytest.raises(pyone.OneNoExistsException):
        one.user.delete(uid)
    with pytest.raises(pyone.OneActionException) as e:
        one.user.delete(0)
    assert "oneadmin cannot be deleted" in str(e.value)
    with pytest.raises(pyone.OneActionException):
        one.user.delete(1)
    # The deleted user cannot log in any more; the name is free again.
    with pytest.raises(pyone.OneAuthenticationException):
        oned.client("gone", "pw").user.info(-1)
    assert one.user.allocate("gone", "pw2", "core") > uid


# ---------------------------------------------------------------------------------------
# credentials: passwd, login tokens, chauth, enable


def test_passwd(oned, one, make_user):
    alice = make_user("alice", "old")
    bob = make_user("bob", "pw")
    assert alice.user.passwd(alice.uid, "new") == alice.uid
    with pytest.raises(pyone.OneAuthenticationException):
        oned.client("alice", "old").user.info(-1)
    assert oned.client("alice", "new").user.info(-1).NAME == "alice"
    with pytest.raises(pyone.OneAuthorizationException):
        bob.user.passwd(alice.uid, "hijack")
    with pytest.raises(pyone.OneActionException) as e:
        one.user.passwd(alice.uid, "has space")
    assert "password" in str(e.value)
    with pytest.raises(pyone.OneNoExistsException):
        one.user.passwd(4242, "x")
    # oneadmin may change anyone's password.
    assert one.user.passwd(bob.uid, "reset") == bob.uid
    assert oned.client("bob", "reset").user.info(-1).NAME == "bob"


def test_login_tokens(oned, one, make_user):
    gid = one.group.allocate("proj")
    alice = make_user("alice", "pw", [1, gid])
    token = alice.user.login("alice", "", 3600)
    assert isinstance(token, str) and len(token) >= 16
    by_token = oned.client("alice", token)
    assert by_token.user.info(-1).NAME == "alice"
    doc = user_doc(oned, alice.uid)
    tokens = {t.findtext("TOKEN"): t for t in doc.findall("LOGIN_TOKEN")}
    assert token in tokens and tokens[token].findtext("EGID") == "-1"
    assert int(tokens[token].findtext("EXPIRATION_TIME")) > 0

    # A token given by the caller, never expiring, scoped to one group.
    assert alice.user.login("alice", "mytoken123", -1, gid) == "mytoken123"
    scoped = oned.client("alice", "mytoken123")
    assert scoped.group.info(-1).ID == gid
    assert user_doc(oned, alice.uid).find("LOGIN_TOKEN[TOKEN='mytoken123']/EXPIRATION_TIME").text == "-1"
    # A group-scoped session cannot mint a full token.
    with pytest.raises(pyone.OneApiException):
        scoped.user.login("alice", "", 60)

    # Revoke one, then an unknown one, then all.
    assert alice.user.login("alice", token, 0) == token
    with pytest.raises(pyone.OneAuthenticationException):
        by_token.user.info(-1)
    with pytest.raises(pyone.OneApiException) as e:
        alice.user.login("alice", "nope", 0)
    assert "Could not find token: nope" in str(e.value)
    # Revoking them all answers the empty token given, as OpenNebula (which pyone cannot
    # parse: it indexes the first character), so through a raw call.
    assert oned.raw_call("one.user.login", alice.session, "alice", "", 0) == [True, "", 0]
    assert user_doc(oned, alice.uid).find("LOGIN_TOKEN") is None
    with pytest.raises(pyone.OneAuthenticationException):
        scoped.user.info(-1)

    with pytest.raises(pyone.OneApiException) as e:
        alice.user.login("alice", "", -7)
    assert "Wrong valid period" in str(e.value)
    with pytest.raises(pyone.OneApiException) as e:
        alice.user.login("alice", "", 60, 0)
    assert "EGID is not in user group list" in str(e.value)
    with pytest.raises(pyone.OneNoExistsException):
        one.user.login("nobody", "", 60)
    bob = make_user("bob", "pw")
    with pytest.raises(pyone.OneAuthorizationException):
        bob.user.login("alice", "", 60)
    # At most ten tokens.
    for i in range(10):
        alice.user.login("alice", f"tok{i}", 60)
    with pytest.raises(pyone.OneApiException) as e:
        alice.user.login("alice", "tok10", 60)
    assert "Max number of tokens" in str(e.value)
    # A password change ends every token.
    alice.user.passwd(alice.uid, "pw2")
    assert user_doc(oned, alice.uid).find("LOGIN_TOKEN") is None


def test_chauth(oned, one, make_user):
    alice = make_user("alice", "pw")
    bob = make_user("bob", "pw")
    with pytest.raises(pyone.OneAuthorizationException):
        alice.user.chauth(alice.uid, "ssh", "")
    with pytest.raises(pyone.OneAuthorizationException):
        bob.user.chauth(alice.uid, "ssh", "")
    assert one.user.chauth(alice.uid, "ssh", "AAAAC3NzaC1lZDI1NTE5key") == alice.uid
    doc = user_doc(oned, alice.uid)
    assert doc.findtext("AUTH_DRIVER") == "ssh"
    assert doc.findtext("PASSWORD") == "AAAAC3NzaC1lZDI1NTE5key"
    # oned only verifies core passwords itself.
    with pytest.raises(pyone.OneAuthenticationException):
        oned.client("alice", "pw").user.info(-1)
    one.user.chauth(alice.uid, "core", "back")
    assert oned.client("alice", "back").user.info(-1).NAME == "alice"
    with pytest.raises(pyone.OneActionException):
        one.user.chauth(alice.uid, "bad driver", "")
    with pytest.raises(pyone.OneNoExistsException):
        one.user.chauth(4242, "core", "x")


def test_enable_disable(oned, one, make_user):
    alice = make_user("alice", "pw")
    assert alice.user.info(-1).ENABLED == 1
    with pytest.raises(pyone.OneAuthorizationException):
        alice.user.enable(alice.uid, False)
    assert one.user.enable(alice.uid, False) == alice.uid
    assert user_doc(oned, alice.uid).findtext("ENABLED") == "0"
    with pytest.raises(pyone.OneAuthenticationException):
        alice.user.info(-1)
    one.user.enable(alice.uid, True)
    assert alice.user.info(-1).ENABLED == 1
    with pytest.raises(pyone.OneActionException) as e:
        one.user.enable(0, False)
    assert "Cannot enable/disable oneadmin user" in str(e.value)
    with pytest.raises(pyone.OneNoExistsException):
        one.user.enable(4242, True)


# ---------------------------------------------------------------------------------------
# template, rename


def test_user_update(oned, one, make_user):
    alice = make_user("alice", "pw")
    bob = make_user("bob", "pw")
    assert alice.user.update(alice.uid, 'SSH_PUBLIC_KEY = "ssh-rsa AAAA alice"', 1) == alice.uid
    doc = user_doc(oned, alice.uid)
    assert doc.findtext("TEMPLATE/SSH_PUBLIC_KEY") == "ssh-rsa AAAA alice"
    assert doc.findtext("TEMPLATE/TOKEN_PASSWORD")  # merge kept it
    alice.user.update(alice.uid, "<TEMPLATE><LANG>en</LANG></TEMPLATE>", 0)
    doc = user_doc(oned, alice.uid)
    assert doc.findtext("TEMPLATE/LANG") == "en"
    assert doc.find("TEMPLATE/SSH_PUBLIC_KEY") is None  # replaced
    with pytest.raises(pyone.OneAuthorizationException):
        bob.user.update(alice.uid, "A = 1", 1)
    with pytest.raises(pyone.OneApiException) as e:
        alice.user.update(alice.uid, "A = [ B = 1", 1)
    assert "line" in str(e.value)
    with pytest.raises(pyone.OneApiException):
        alice.user.update(alice.uid, "A = 1", 7)
    with pytest.raises(pyone.OneNoExistsException):
        one.user.update(4242, "A = 1", 1)


def test_user_rename(oned, one, make_user):
    alice = make_user("alice", "pw")
    make_user("bob", "pw")
    assert one.user.rename(alice.uid, "alicia") == alice.uid
    assert oned.client("alicia", "pw").user.info(-1).NAME == "alicia"
    with pytest.raises(pyone.OneActionException) as e:
        one.user.rename(alice.uid, "bob")
    assert "NAME is already taken by USER" in str(e.value)
    with pytest.raises(pyone.OneActionException):
        one.user.rename(alice.uid, "has space")
    with pytest.raises(pyone.OneNoExistsException):
        one.user.rename(4242, "x")


# ---------------------------------------------------------------------------------------
# primary and secondary groups


def test_chgrp(oned, one, make_user):
    g1 = one.group.allocate("g1")
    g2 = one.group.allocate("g2")
    alice = make_user("alice", "pw")
    assert one.user.chgrp(alice.uid, g1) == alice.uid
    doc = user_doc(oned, alice.uid)
    assert doc.findtext("GID") == str(g1) and doc.findtext("GNAME") == "g1"
    assert ids(doc, "GROUPS/ID") == [g1]
    assert alice.uid not in ids(group_doc(oned, 1), "USERS/ID")
    assert alice.uid in ids(group_doc(oned, g1), "USERS/ID")
    # Moving to a secondary group keeps the old primary as secondary.
    one.user.addgroup(alice.uid, g2)
    alice.user.chgrp(alice.uid, g2)  # a user may switch among his own groups
    doc = user_doc(oned, alice.uid)
    assert doc.findtext("GID") == str(g2) and ids(doc, "GROUPS/ID") == [g1, g2]
    # ...but not join another group.
    with pytest.raises(pyone.OneAuthorizationException):
        alice.user.chgrp(alice.uid, 1)
    with pytest.raises(pyone.OneNoExistsException) as e:
        one.user.chgrp(alice.uid, 999)
    assert "Error getting group [999]" in str(e.value)
    with pytest.raises(pyone.OneNoExistsException):
        one.user.chgrp(4242, 1)
    with pytest.raises(pyone.OneApiException):
        one.user.chgrp(alice.uid, -5)
    with pytest.raises(pyone.OneInternalException) as e:
        one.user.chgrp(0, 1)
    assert "oneadmin cannot be moved" in str(e.value)


def test_addgroup_delgroup(oned, one, make_user):
    gid = one.group.allocate("extra")
    alice = make_user("alice", "pw")
    with pytest.raises(pyone.OneAuthorizationException):
        alice.user.addgroup(alice.uid, gid)
    assert one.user.addgroup(alice.uid, gid) == alice.uid
    assert ids(user_doc(oned, alice.uid), "GROUPS/ID") == [1, gid]
    assert alice.uid in ids(group_doc(oned, gid), "USERS/ID")
    # Members see their secondary groups.
    assert sorted(g.ID for g in alice.grouppool.info().GROUP) == [1, gid]
    with pytest.raises(pyone.OneActionException) as e:
        one.user.addgroup(alice.uid, gid)
    assert "User is already in this group" in str(e.value)
    with pytest.raises(pyone.OneActionException) as e:
        one.user.delgroup(alice.uid, 1)
    assert "Cannot remove user from the primary group" in str(e.value)
    assert one.user.delgroup(alice.uid, gid) == alice.uid
    assert ids(user_doc(oned, alice.uid), "GROUPS/ID") == [1]
    assert alice.uid not in ids(group_doc(oned, gid), "USERS/ID")
    with pytest.raises(pyone.OneActionException) as e:
        one.user.delgroup(alice.uid, gid)
    assert "User is not part of this group" in str(e.value)
    with pytest.raises(pyone.OneNoExistsException):
        one.user.addgroup(alice.uid, 999)
    with pytest.raises(pyone.OneNoExistsException):
        one.user.delgroup(4242, gid)


# ---------------------------------------------------------------------------------------
# groups


def test_group_allocate_info_delete(oned, one, make_user):
    gid = one.group.allocate("web")
    assert gid >= 100
    doc = group_doc(oned, gid)
    assert doc.findtext("NAME") == "web"
    assert doc.find("USERS/ID") is None and doc.find("ADMINS/ID") is None
    assert doc.findtext("VLAN_RULES/ID") == str(gid)
    # The default VDC's rules for the new group.
    rules = acl_rules(oned)
    assert f"@{gid} HOST/* MANAGE #0" in rules
    assert f"@{gid} NET+DATASTORE/* USE #0" in rules

    with pytest.raises(pyone.OneException) as e:
        one.group.allocate("web")
    assert "NAME is already taken by GROUP" in str(e.value)
    fails_with(oned.admin_call("one.group.allocate", "a b"), ALLOCATE, "Invalid NAME")
    fails_with(oned.admin_call("one.group.allocate", ""), ALLOCATE, "Invalid NAME")
    alice = make_user("alice", "pw")
    with pytest.raises(pyone.OneAuthorizationException):
        alice.group.allocate("mine")
    with pytest.raises(pyone.OneAuthorizationException):
        alice.group.info(gid)
    with pytest.raises(pyone.OneNoExistsException) as e:
        one.group.info(999)
    assert str(e.value) == "[one.group.info] Error getting group [999]."

    uid = one.user.allocate("member", "pw", "core", [gid])
    with pytest.raises(pyone.OneActionException) as e:
        one.group.delete(gid)
    assert f"Group {gid} is not empty" in str(e.value)
    one.user.delete(uid)
    with pytest.raises(pyone.OneAuthorizationException):
        alice.group.delete(gid)
    assert one.group.delete(gid) == gid
    with pytest.raises(pyone.OneNoExistsException):
        one.group.info(gid)
    assert not any(f"@{gid} " in r for r in acl_rules(oned))
    with pytest.raises(pyone.OneActionException) as e:
        one.group.delete(1)
    assert "System Groups (ID < 100) cannot be deleted" in str(e.value)
    with pytest.raises(pyone.OneNoExistsException):
        one.group.delete(999)
    # Ids are not reused.
    assert one.group.allocate("web") > gid


def test_group_update(oned, one, make_user):
    gid = one.group.allocate("web")
    alice = make_user("alice", "pw", [gid])
    assert one.group.update(gid, 'DESCRIPTION = "web team"', 1) == gid
    one.group.update(gid, "SUNSTONE = [ VIEWS = cloud ]", 1)
    doc = group_doc(oned, gid)
    assert doc.findtext("TEMPLATE/DESCRIPTION") == "web team"
    assert doc.findtext("TEMPLATE/SUNSTONE/VIEWS") == "cloud"
    one.group.update(gid, "OTHER = 1", 0)
    doc = group_doc(oned, gid)
    assert doc.find("TEMPLATE/DESCRIPTION") is None and doc.findtext("TEMPLATE/OTHER") == "1"
    # Members see their group but updating it needs ADMIN.
    assert alice.group.info(gid).NAME == "web"
    with pytest.raises(pyone.OneAuthorizationException):
        alice.group.update(gid, "X = 1", 1)
    with pytest.raises(pyone.OneApiException):
        one.group.update(gid, "X = 1", 3)
    with pytest.raises(pyone.OneApiException):
        one.group.update(gid, "X = [", 1)
    with pytest.raises(pyone.OneNoExistsException):
        one.group.update(999, "X = 1", 1)


def test_group_admins(oned, one, make_user):
    gid = one.group.allocate("team")
    boss = make_user("boss", "pw", [gid])
    worker = make_user("worker", "pw", [gid])
    outsider = make_user("outsider", "pw")
    assert one.group.addadmin(gid, boss.uid) == gid
    doc = group_doc(oned, gid)
    assert ids(doc, "ADMINS/ID") == [boss.uid]
    assert f"#{boss.uid} USER/@{gid} USE+MANAGE+ADMIN+CREATE *" in acl_rules(oned)
    with pytest.raises(pyone.OneInternalException) as e:
        one.group.addadmin(gid, boss.uid)
    assert "already an administrator" in str(e.value)
    with pytest.raises(pyone.OneInternalException) as e:
        one.group.addadmin(gid, outsider.uid)
    assert f"User {outsider.uid} is not part of Group {gid}" in str(e.value)
    with pytest.raises(pyone.OneNoExistsException):
        one.group.addadmin(999, boss.uid)
    with pytest.raises(pyone.OneNoExistsException):
        one.group.addadmin(gid, 4242)
    with pytest.raises(pyone.OneAuthorizationException):
        worker.group.addadmin(gid, worker.uid)

    # The group admin manages the users of his group, not others.
    assert {u.NAME for u in boss.userpool.info().USER} == {"boss", "worker"}
    assert boss.user.passwd(worker.uid, "newpw") == worker.uid
    boss.user.update(worker.uid, "NOTE = managed", 1)
    boss.user.quota(worker.uid, "VM = [ VMS = 3 ]")
    assert vm_quota(user_doc(oned, worker.uid), "VMS") == "3"
    with pytest.raises(pyone.OneAuthorizationException):
        boss.user.passwd(outsider.uid, "x")
    # ...and creates users, who land in his group.
    new = boss.user.allocate("recruit", "pw", "core")
    assert user_doc(oned, new).findtext("GID") == str(gid)

    assert one.group.deladmin(gid, boss.uid) == gid
    assert ids(group_doc(oned, gid), "ADMINS/ID") == []
    assert not any(r.startswith(f"#{boss.uid} ") for r in acl_rules(oned))
    with pytest.raises(pyone.OneInternalException) as e:
        one.group.deladmin(gid, boss.uid)
    assert "is not an administrator" in str(e.value)
    with pytest.raises(pyone.OneAuthorizationException):
        boss.user.passwd(worker.uid, "again")


# ---------------------------------------------------------------------------------------
# quotas


def test_user_quota(oned, one, make_user):
    alice = make_user("alice", "pw")
    assert one.user.quota(alice.uid, "VM = [ VMS = 2, CPU = -2, MEMORY = 1024 ]") == alice.uid
    one.user.quota(alice.uid, "NETWORK = [ ID = 0, LEASES = 5 ] IMAGE = [ ID = 3, RVMS = 1 ]")
    one.user.quota(alice.uid, "DATASTORE = [ ID = 1, IMAGES = 4, SIZE = 10240 ]")
    doc = user_doc(oned, alice.uid)
    assert vm_quota(doc, "VMS") == "2" and vm_quota(doc, "VMS_USED") == "0"
    assert vm_quota(doc, "CPU") == "-2" and vm_quota(doc, "MEMORY") == "1024"
    assert vm_quota(doc, "RUNNING_VMS") == "-1"
    assert doc.findtext("NETWORK_QUOTA/NETWORK[ID='0']/LEASES") == "5"
    assert doc.findtext("IMAGE_QUOTA/IMAGE[ID='3']/RVMS") == "1"
    assert doc.findtext("DATASTORE_QUOTA/DATASTORE[ID='1']/SIZE") == "10240"
    # The pool carries the quotas in QUOTAS elements.
    pool = parse_xml(oned.admin_xml("one.userpool.info"))
    q = [e for e in pool.findall("QUOTAS") if e.findtext("ID") == str(alice.uid)][0]
    assert q.findtext("VM_QUOTA/VM/VMS") == "2"
    # The user sees his quotas but cannot change them.
    assert alice.user.info(-1).VM_QUOTA.VM[0].VMS == "2"
    with pytest.raises(pyone.OneAuthorizationException):
        alice.user.quota(alice.uid, "VM = [ VMS = 100 ]")
    # All limits back to default: the entry goes away.
    one.user.quota(alice.uid, "VM = [ VMS = -1 ]")
    assert user_doc(oned, alice.uid).find("VM_QUOTA/VM") is None

    with pytest.raises(pyone.OneActionException) as e:
        one.user.quota(alice.uid, "VM = [ VMS = -5 ]")
    assert "Negative limits or bad format in quota VM" in str(e.value)
    with pytest.raises(pyone.OneActionException):
        one.user.quota(alice.uid, "NETWORK = [ LEASES = 5 ]")
    with pytest.raises(pyone.OneActionException):
        one.user.quota(alice.uid, "VM = [ VMS = many ]")
    with pytest.raises(pyone.OneActionException) as e:
        one.user.quota(alice.uid, "VM = [ VMS = 1")
    assert "line" in str(e.value)
    with pytest.raises(pyone.OneActionException) as e:
        one.user.quota(0, "VM = [ VMS = 1 ]")
    assert "Cannot set quotas for oneadmin user" in str(e.value)
    with pytest.raises(pyone.OneNoExistsException):
        one.user.quota(4242, "VM = [ VMS = 1 ]")


def test_group_quota(oned, one, make_user):
    gid = one.group.allocate("q")
    alice = make_user("alice", "pw", [gid])
    assert one.group.quota(gid, "VM = [ VMS = 4, MEMORY = 2048 ] NETWORK = [ ID = 2, LEASES = 10 ]") == gid
    doc = group_doc(oned, gid)
    assert vm_quota(doc, "VMS") == "4" and vm_quota(doc, "MEMORY") == "2048"
    assert doc.findtext("NETWORK_QUOTA/NETWORK[ID='2']/LEASES") == "10"
    pool = oned.admin_xml("one.grouppool.info")
    xsd_check(pool)
    with pytest.raises(pyone.OneAuthorizationException):
        alice.group.quota(gid, "VM = [ VMS = 100 ]")
    with pytest.raises(pyone.OneActionException) as e:
        one.group.quota(0, "VM = [ VMS = 1 ]")
    assert "Cannot set quotas for oneadmin group" in str(e.value)
    with pytest.raises(pyone.OneActionException):
        one.group.quota(gid, "IMAGE = [ ID = 1, RVMS = -3 ]")
    with pytest.raises(pyone.OneNoExistsException):
        one.group.quota(999, "VM = [ VMS = 1 ]")


def test_default_quotas(oned, one, make_user):
    body = oned.admin_xml("one.userquota.info")
    assert body.startswith("<DEFAULT_USER_QUOTAS>")
    xsd_check(f"<USER_POOL>{body}</USER_POOL>")  # the element as user_pool.xsd places it
    updated = oned.admin_xml("one.userquota.update", "VM = [ VMS = 7 ] NETWORK = [ ID = 0, LEASES = 3 ]")
    root = parse_xml(updated)
    assert root.tag == "DEFAULT_USER_QUOTAS"
    assert root.findtext("VM_QUOTA/VM/VMS") == "7"
    assert root.findtext("VM_QUOTA/VM/CPU") == "-2"  # unset defaults are unlimited
    assert root.findtext("NETWORK_QUOTA/NETWORK[ID='0']/LEASES") == "3"
    alice = make_user("alice", "pw")
    doc = user_doc(oned, alice.uid)
    assert doc.findtext("DEFAULT_USER_QUOTAS/VM_QUOTA/VM/VMS") == "7"
    pool = oned.admin_xml("one.userpool.info")
    xsd_check(pool)
    assert parse_xml(pool).findtext("DEFAULT_USER_QUOTAS/VM_QUOTA/VM/VMS") == "7"
    assert parse_xml(oned.raw_call("one.userquota.info", alice.session)[1]).findtext("VM_QUOTA/VM/VMS") == "7"

    gbody = oned.admin_xml("one.groupquota.update", "VM = [ VMS = 50, CPU = 0.5 ]")
    assert parse_xml(gbody).findtext("VM_QUOTA/VM/CPU") == "0.50"
    assert parse_xml(oned.admin_xml("one.groupquota.info")).findtext("VM_QUOTA/VM/VMS") == "50"
    assert group_doc(oned, 1).findtext("DEFAULT_GROUP_QUOTAS/VM_QUOTA/VM/VMS") == "50"
    xsd_check(oned.admin_xml("one.grouppool.info"))

    r = oned.raw_call("one.userquota.update", alice.session, "VM = [ VMS = 99 ]")
    fails_with(r, 0x200, "default quotas can only be updated by users in the oneadmin group")
    with pytest.raises(pyone.OneAuthorizationException):
        alice.groupquota.update("VM = [ VMS = 99 ]")
    fails_with(oned.admin_call("one.userquota.update", "VM = [ VMS = -1 ]"), 0x800, "Negative limits")
    fails_with(oned.admin_call("one.userquota.update", "VM = [ VMS = 1 ] VM = [ CPU = 1 ]"), 0x800,
               "Only one default VM quota")
    fails_with(oned.admin_call("one.groupquota.update", "VM = [ CLUSTER_IDS = 0, VMS = 1 ]"), 0x800,
               "CLUSTER_IDS")
    fails_with(oned.admin_call("one.userquota.update", "VM = ["), 0x800)
    # Nothing changed by the failures.
    assert parse_xml(oned.admin_xml("one.userquota.info")).findtext("VM_QUOTA/VM/VMS") == "7"


def test_quota_enforced_on_vm_allocate(oned, one, make_user):
    """Charging is done by the VM calls (quota::charge); checked here when they exist."""
    alice = make_user("alice", "pw")
    one.user.quota(alice.uid, "VM = [ VMS = 1 ]")
    tmpl = 'NAME = q1\nCPU = 1\nMEMORY = 128'
    try:
        r = oned.raw_call("one.vm.allocate", alice.session, tmpl, True)
    except xmlrpc.client.Fault as f:
        pytest.skip(f"one.vm.allocate not available yet: {f}")
    if r[0] is not True:
        pytest.skip(f"one.vm.allocate failed for another reason: {r}")
    used = vm_quota(user_doc(oned, alice.uid), "VMS_USED")
    if used != "1":
        pytest.skip(f"one.vm.allocate does not charge quotas yet (VMS_USED={used})")
    r = oned.raw_call("one.vm.allocate", alice.session, tmpl.replace("q1", "q2"), True)
    fails_with(r, 0x200, f"user [{alice.uid}] limit of 1 reached for VMS quota in VM")
    assert vm_quota(user_doc(oned, alice.uid), "VMS_USED") == "1"


# ---------------------------------------------------------------------------------------
# raw answers and persistence


def test_raw_answers(oned, make_user):
    alice = make_user("alice", "pw")
    assert oned.admin_call("one.user.info", alice.uid)[0:1] == [True]
    r = oned.raw_call("one.user.info", alice.session, 0)
    fails_with(r, 0x200, f"[one.user.info] User [{alice.uid}] : Not authorized to perform USE USER [0].")
    fails_with(oned.admin_call("one.group.info", 777), 0x400, "[one.group.info] Error getting group [777].")
    fails_with(oned.admin_call("one.user.delete", 0), 0x800)
    # Missing parameters are API errors, not crashes.
    fails_with(oned.admin_call("one.user.passwd", alice.uid), 0x1000)
    fails_with(oned.admin_call("one.group.addadmin", 100), 0x1000)


def test_state_survives_restart(oned, one, make_user):
    gid = one.group.allocate("durable")
    alice = make_user("alice", "pw", [gid])
    one.group.addadmin(gid, alice.uid)
    one.user.quota(alice.uid, "VM = [ VMS = 3 ]")
    one.group.quota(gid, "NETWORK = [ ID = 1, LEASES = 2 ]")
    oned.admin_xml("one.userquota.update", "VM = [ MEMORY = 4096 ]")
    token = alice.user.login("alice", "", -1)
    before_user = oned.admin_xml("one.user.info", alice.uid)
    before_group = oned.admin_xml("one.group.info", gid)
    oned.restart()
    assert oned.admin_xml("one.user.info", alice.uid) == before_user
    assert oned.admin_xml("one.group.info", gid) == before_group
    assert oned.client("alice", token).user.info(-1).NAME == "alice"
    assert parse_xml(oned.admin_xml("one.userquota.info")).findtext("VM_QUOTA/VM/MEMORY") == "4096"
