"""Security groups through the API (issue 10): one.secgroup.* and one.secgrouppool.info with
OpenNebula's parameters, errors and documents; group 0 `default` on every new network; VM
membership; rule changes reaching running VMs by themselves (UPDATED / OUTDATED / UPDATING /
ERROR_VMS) on dummy hosts, commit as recovery, and an oned restart in between.

The real-host side (nftables on namespace hosts, guests that ping) is in test_networking.py.
"""

from __future__ import annotations

import pyone
import pytest

from harness import parse_xml, xsd_check
from lifecycle_util import RUNNING, ACTIVE, add_host, configure_host, running_vm, wait_for

RULES = (
    'RULE=[PROTOCOL="ALL", RULE_TYPE="OUTBOUND"]\n'
    'RULE=[PROTOCOL="TCP", RULE_TYPE="INBOUND"]\n'
)


def sg_xml(oned, sid):
    return parse_xml(oned.admin_xml("one.secgroup.info", sid))


def vm_sets(oned, sid):
    r = sg_xml(oned, sid)
    return {s: sorted(int(i.text) for i in r.findall(f"{s}/ID"))
            for s in ("UPDATED_VMS", "OUTDATED_VMS", "UPDATING_VMS", "ERROR_VMS")}


def test_default_group_is_there_and_validates(oned, one):
    x = oned.admin_xml("one.secgroup.info", 0)
    xsd_check(x)
    r = parse_xml(x)
    assert r.findtext("NAME") == "default"
    assert [(ru.findtext("PROTOCOL"), ru.findtext("RULE_TYPE")) for ru in r.findall("TEMPLATE/RULE")] == [
        ("ALL", "OUTBOUND"), ("ALL", "INBOUND")]
    # OpenNebula's permissions 1 1 1 / 1 0 0 / 1 0 0: usable by everyone.
    perms = [int(p.text) for p in r.find("PERMISSIONS")]
    assert perms == [1, 1, 1, 1, 0, 0, 1, 0, 0]
    pool = oned.admin_xml("one.secgrouppool.info", -2, -1, -1)
    xsd_check(pool)
    assert [int(s.findtext("ID")) for s in parse_xml(pool).findall("SECURITY_GROUP")] == [0]
    # pyone reads it (its bindings are generated from the same XSD).
    assert one.secgroup.info(0).NAME == "default"
    with pytest.raises(pyone.OneActionException, match=r"default security group \(ID 0\) cannot be deleted"):
        one.secgroup.delete(0)


def test_allocate_update_rename_clone_chmod_delete(oned, one):
    sid = one.secgroup.allocate(f'NAME="web"\nDESCRIPTION="web servers"\n{RULES}')
    assert sid == 100, "ids below 100 are kept for system groups, as in OpenNebula"
    xsd_check(oned.admin_xml("one.secgroup.info", sid))
    g = one.secgroup.info(sid)
    assert g.NAME == "web" and g.UNAME == "oneadmin"
    with pytest.raises(pyone.OneInternalException, match="NAME is already taken by SecurityGroup 100"):
        one.secgroup.allocate(f'NAME="web"\n{RULES}')
    with pytest.raises(pyone.OneInternalException, match="No NAME in template for Security Group"):
        one.secgroup.allocate(RULES)
    # Rules are checked with OpenNebula's messages; a bad one leaves nothing behind.
    for rule, msg in [
        ('PROTOCOL="GRE", RULE_TYPE="INBOUND"', "Wrong PROTOCOL in rule"),
        ('PROTOCOL="ICMP", RULE_TYPE="INBOUND", RANGE="22"', "RANGE is supported only for TCP and UDP"),
        ('PROTOCOL="TCP", RULE_TYPE="sideways"', "Wrong RULE_TYPE in rule"),
        ('PROTOCOL="TCP", RULE_TYPE="INBOUND", IP="10.0.0.1"', "Wrong or empty SIZE"),
    ]:
        with pytest.raises(pyone.OneInternalException, match=msg):
            one.secgroup.allocate(f'NAME="bad"\nRULE=[{rule}]')
    assert sorted(s.ID for s in one.secgrouppool.info(-2, -1, -1).SECURITY_GROUP) == [0, 100]

    # Rules with RANGE, IP and SIZE are kept as written (sub-attributes sorted, as OpenNebula
    # writes them; OpenNebula's own XSD only lists PROTOCOL and RULE_TYPE in a RULE). Update
    # mode 1 replaces every RULE with the given ones, as OpenNebula's template merge does.
    one.secgroup.update(sid, 'RULE=[PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="22,80:90", IP="10.0.0.0", SIZE="256"]', 1)
    rules = sg_xml(oned, sid).findall("TEMPLATE/RULE")
    assert [[c.tag for c in r] for r in rules] == [["IP", "PROTOCOL", "RANGE", "RULE_TYPE", "SIZE"]]
    assert one.secgroup.info(sid).TEMPLATE["DESCRIPTION"] == "web servers"
    with pytest.raises(pyone.OneInternalException, match="Cannot update template. RANGE out of bounds"):
        one.secgroup.update(sid, 'RULE=[PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="70000"]', 1)
    with pytest.raises(pyone.OneException, match="Wrong update type"):
        one.secgroup.update(sid, "A=1", 7)
    # Duplicated rules are kept once.
    one.secgroup.update(sid, f"{RULES}{RULES}", 0)
    assert len(sg_xml(oned, sid).findall("TEMPLATE/RULE")) == 2

    one.secgroup.rename(sid, "web2")
    assert one.secgroup.info(sid).NAME == "web2"
    cid = one.secgroup.clone(sid, "web-copy")
    assert cid == 101 and len(sg_xml(oned, cid).findall("TEMPLATE/RULE")) == 2
    one.secgroup.chmod(cid, 1, 1, 0, 1, 0, 0, 1, 0, 0)
    assert [int(p.text) for p in sg_xml(oned, cid).find("PERMISSIONS")] == [1, 1, 0, 1, 0, 0, 1, 0, 0]
    one.secgroup.chown(cid, -1, 1)
    assert one.secgroup.info(cid).GNAME == "users"
    one.secgroup.delete(cid)
    with pytest.raises(pyone.OneNoExistsException):
        one.secgroup.info(cid)
    xsd_check(oned.admin_xml("one.secgrouppool.info", -2, -1, -1))


def test_users_need_rights(oned, one, make_user):
    alice = make_user("alice", "pw")
    # Group users may create groups (the default ACL), and use group 0.
    sid = alice.secgroup.allocate(f'NAME="mine"\n{RULES}')
    assert alice.secgroup.info(sid).UNAME == "alice"
    alice.secgroup.info(0)
    with pytest.raises(pyone.OneAuthorizationException):
        alice.secgroup.update(0, RULES, 0)
    other = one.secgroup.allocate(f'NAME="admins-only"\n{RULES}')
    with pytest.raises(pyone.OneAuthorizationException):
        alice.secgroup.info(other)
    assert [s.ID for s in alice.secgrouppool.info(-3, -1, -1).SECURITY_GROUP] == [sid]
    # A NIC may not name a group its owner cannot use.
    net = one.vn.allocate('NAME="pub"\nVN_MAD="bridge"\nBRIDGE="br0"\nAR=[TYPE="IP4", IP="10.0.0.10", SIZE="4"]', -1)
    one.vn.chmod(net, -1, -1, -1, -1, -1, -1, 1, -1, -1)
    with pytest.raises(pyone.OneAuthorizationException):
        alice.vm.allocate(f'CPU=1\nMEMORY=64\nNIC=[NETWORK_ID={net}, SECURITY_GROUPS="{other}"]')


def test_networks_get_group_0_and_vms_join_their_groups(oned, one):
    sid = one.secgroup.allocate(f'NAME="ssh"\n{RULES}')
    net = one.vn.allocate(
        f'NAME="n"\nVN_MAD="bridge"\nBRIDGE="br0"\nSECURITY_GROUPS="{sid}"\n'
        'FILTER_IP_SPOOFING="YES"\nMTU="1400"\nAR=[TYPE="IP4", IP="10.0.0.10", SIZE="8"]', -1)
    assert one.vn.info(net).TEMPLATE["SECURITY_GROUPS"] == f"0,{sid}"
    vid = one.vm.allocate(f'CPU=1\nMEMORY=64\nNIC=[NETWORK_ID={net}]')
    x = oned.admin_xml("one.vm.info", vid)
    xsd_check(x)
    r = parse_xml(x)
    nic = r.find("TEMPLATE/NIC")
    assert nic.findtext("SECURITY_GROUPS") == f"0,{sid}"
    # The network attributes the host drivers read are on the NIC (INHERIT_VNET_ATTR).
    assert (nic.findtext("FILTER_IP_SPOOFING"), nic.findtext("MTU")) == ("YES", "1400")
    rules = [(ru.findtext("SECURITY_GROUP_ID"), ru.findtext("SECURITY_GROUP_NAME"), ru.findtext("PROTOCOL"))
             for ru in r.findall("TEMPLATE/SECURITY_GROUP_RULE")]
    assert sorted(rules) == sorted([("0", "default", "ALL"), ("0", "default", "ALL"),
                                    (str(sid), "ssh", "ALL"), (str(sid), "ssh", "TCP")])
    assert vm_sets(oned, 0)["UPDATED_VMS"] == [vid]
    assert vm_sets(oned, sid)["UPDATED_VMS"] == [vid]
    # A group with VMs cannot be deleted; the VM's end frees it.
    with pytest.raises(pyone.OneActionException, match="The security group has VMs using it"):
        one.secgroup.delete(sid)
    one.vm.action("terminate-hard", vid)
    wait_for("the VM gone from the group", lambda: vm_sets(oned, sid)["UPDATED_VMS"] == [])
    one.secgroup.delete(sid)


def test_network_id_rules_become_the_networks_ranges(oned, one):
    net = one.vn.allocate('NAME="peers"\nVN_MAD="bridge"\nBRIDGE="br0"\n'
                          'AR=[TYPE="IP4", IP="10.1.0.1", SIZE="10"]\nAR=[TYPE="IP4", IP="10.2.0.1", SIZE="5"]', -1)
    sid = one.secgroup.allocate(f'NAME="from-peers"\nRULE=[PROTOCOL="ALL", RULE_TYPE="INBOUND", NETWORK_ID="{net}"]')
    mine = one.vn.allocate(f'NAME="mine"\nVN_MAD="bridge"\nBRIDGE="br1"\nSECURITY_GROUPS="{sid}"\n'
                           'AR=[TYPE="IP4", IP="10.3.0.1", SIZE="4"]', -1)
    vid = one.vm.allocate(f'CPU=1\nMEMORY=64\nNIC=[NETWORK_ID={mine}]')
    rules = [ru for ru in parse_xml(oned.admin_xml("one.vm.info", vid)).findall("TEMPLATE/SECURITY_GROUP_RULE")
             if ru.findtext("SECURITY_GROUP_ID") == str(sid)]
    assert sorted((ru.findtext("IP"), ru.findtext("SIZE"), ru.findtext("AR_ID")) for ru in rules) == [
        ("10.1.0.1", "10", "0"), ("10.2.0.1", "5", "1")]


@pytest.fixture
def hid(one):
    return add_host(one, "h1")


def test_update_reaches_running_vms_and_commit_recovers(oned, one, hid):
    sid = one.secgroup.allocate(f'NAME="g"\n{RULES}')
    net = one.vn.allocate(f'NAME="n"\nVN_MAD="bridge"\nBRIDGE="br0"\nSECURITY_GROUPS="{sid}"\n'
                          'AR=[TYPE="IP4", IP="10.0.0.10", SIZE="8"]', -1)
    nic = f"NIC=[NETWORK_ID={net}]"
    a, b = running_vm(oned, one, hid, nic), running_vm(oned, one, hid, nic)
    assert vm_sets(oned, sid)["UPDATED_VMS"] == [a, b]
    # New rules: both VMs get them by themselves (their host loads them: UPDATING -> UPDATED).
    one.secgroup.update(sid, RULES + 'RULE=[PROTOCOL="ICMP", RULE_TYPE="INBOUND"]', 0)
    wait_for("both VMs updated", lambda: vm_sets(oned, sid)["UPDATED_VMS"] == [a, b])
    protos = [ru.findtext("PROTOCOL") for ru in parse_xml(oned.admin_xml("one.vm.info", a)).findall("TEMPLATE/SECURITY_GROUP_RULE")
              if ru.findtext("SECURITY_GROUP_ID") == str(sid)]
    assert sorted(protos) == ["ALL", "ICMP", "TCP"]
    assert "VM security group updated." in (oned.data_dir / "vms" / str(a) / "vm.log").read_text()

    # The host fails the update: ERROR_VMS, the reason in the VM log.
    configure_host(one, hid, fail="update_sg")
    one.secgroup.update(sid, RULES + 'RULE=[PROTOCOL="UDP", RULE_TYPE="INBOUND", RANGE="53"]', 0)
    wait_for("both VMs in error", lambda: vm_sets(oned, sid)["ERROR_VMS"] == [a, b])
    assert "update_sg failed" in (oned.data_dir / "vms" / str(a) / "vm.log").read_text()
    xsd_check(oned.admin_xml("one.secgroup.info", 0))

    # Recovery: the erroneous VMs only, once the host works again.
    configure_host(one, hid, fail="")
    one.secgroup.commit(sid, True)
    wait_for("recovered", lambda: vm_sets(oned, sid)["UPDATED_VMS"] == [a, b])

    # A VM that is not on a host only gets the template.
    one.vm.action("poweroff-hard", a)
    wait_for("poweroff", lambda: one.vm.info(a).STATE == 8)
    one.secgroup.commit(sid, False)
    wait_for("all updated", lambda: vm_sets(oned, sid)["UPDATED_VMS"] == [a, b])


def test_updates_survive_a_restart(oned, one, hid):
    sid = one.secgroup.allocate(f'NAME="g"\n{RULES}')
    net = one.vn.allocate(f'NAME="n"\nVN_MAD="bridge"\nBRIDGE="br0"\nSECURITY_GROUPS="{sid}"\n'
                          'AR=[TYPE="IP4", IP="10.0.0.10", SIZE="8"]', -1)
    a = running_vm(oned, one, hid, f"NIC=[NETWORK_ID={net}]")
    # A slow host: the update is in flight (UPDATING) when oned is killed.
    configure_host(one, hid, delay_ms=3000)
    one.secgroup.update(sid, RULES + 'RULE=[PROTOCOL="ICMP", RULE_TYPE="INBOUND"]', 0)
    wait_for("updating", lambda: vm_sets(oned, sid)["UPDATING_VMS"] == [a])
    oned.kill()
    oned.start()
    configure_host(oned.client(), hid, delay_ms=0)
    wait_for("updated after the restart", lambda: vm_sets(oned, sid)["UPDATED_VMS"] == [a], timeout=20)
    r = parse_xml(oned.admin_xml("one.vm.info", a))
    assert "ICMP" in [ru.findtext("PROTOCOL") for ru in r.findall("TEMPLATE/SECURITY_GROUP_RULE")]
    assert (int(r.findtext("STATE")), int(r.findtext("LCM_STATE"))) == (ACTIVE, RUNNING)


def test_attachsg_and_detachsg(oned, one, hid):
    sid = one.secgroup.allocate(f'NAME="extra"\n{RULES}')
    net = one.vn.allocate('NAME="n"\nVN_MAD="bridge"\nBRIDGE="br0"\nAR=[TYPE="IP4", IP="10.0.0.10", SIZE="8"]', -1)
    vid = running_vm(oned, one, hid, f"NIC=[NETWORK_ID={net}]")

    def groups_of_nic():
        return parse_xml(oned.admin_xml("one.vm.info", vid)).findtext("TEMPLATE/NIC/SECURITY_GROUPS")

    def rule_groups():
        r = parse_xml(oned.admin_xml("one.vm.info", vid))
        return sorted({ru.findtext("SECURITY_GROUP_ID") for ru in r.findall("TEMPLATE/SECURITY_GROUP_RULE")})

    one.vm.attachsg(vid, 0, sid)
    assert groups_of_nic() == f"0,{sid}"
    assert rule_groups() == ["0", str(sid)]
    # Running: its host reloads the rules, tracked in the group.
    wait_for("updated on the host", lambda: vm_sets(oned, sid)["UPDATED_VMS"] == [vid])
    with pytest.raises(pyone.OneActionException, match=f"SG {sid} already in NIC 0"):
        one.vm.attachsg(vid, 0, sid)
    with pytest.raises(pyone.OneActionException, match="doesn't have NIC id 5"):
        one.vm.attachsg(vid, 5, sid)
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.attachsg(vid, 0, 4242)
    one.vm.detachsg(vid, 0, sid)
    assert groups_of_nic() == "0" and rule_groups() == ["0"]
    assert vid not in sum(vm_sets(oned, sid).values(), [])
    with pytest.raises(pyone.OneActionException, match=f"NIC 0 doesn't contain SG {sid}"):
        one.vm.detachsg(vid, 0, sid)
    # The last group goes too: no rules, the host is told all the same.
    one.vm.detachsg(vid, 0, 0)
    assert rule_groups() == [] and groups_of_nic() == ""
    wait_for("reloaded", lambda: vm_log_has(oned, vid, "VM security group updated."))


def vm_log_has(oned, vid, text):
    try:
        return (oned.data_dir / "vms" / str(vid) / "vm.log").read_text().count(text) >= 2
    except OSError:
        return False


def test_the_readme_networks_example(oned, one):
    """README.md "Networks", as typed (after the README's `one` client): a group, a network
    that carries it, and a VM whose NIC leases the range's first address and joins the group."""
    from doc_examples import doc_example, localize, pyone_prelude, run_python

    ex = doc_example("README.md", "networks")
    r = run_python(localize(ex.text, endpoint=oned.endpoint),
                   prelude=pyone_prelude(oned.endpoint, oned.data_dir))
    assert r.stdout.strip() == "10.1.0.10"
    (vm,) = one.vmpool.info(-2, -1, -1, -1).VM
    sg = next(g for g in one.secgrouppool.info(-2, -1, -1).SECURITY_GROUP if g.NAME == "web")
    assert str(sg.ID) in vm.TEMPLATE["NIC"]["SECURITY_GROUPS"].split(",")
    xsd_check(oned.admin_xml("one.vm.info", vm.ID))
