"""Clusters, hosts, datastores and ACL rules through pyone, with every body XSD-checked."""

import pyone
import pytest

from harness import parse_xml, xsd_check


def test_cluster_lifecycle(oned, one):
    cid = one.cluster.allocate("c1")
    assert cid >= 100, "ids below 100 are reserved for system clusters"
    xsd_check(oned.admin_xml("one.cluster.info", cid))
    with pytest.raises(pyone.OneException, match="NAME is already taken by CLUSTER"):
        one.cluster.allocate("c1")

    hid = one.host.allocate("node1", "kvm", "kvm", cid)
    host = one.host.info(hid)
    assert host.CLUSTER_ID == cid and host.CLUSTER == "c1"
    assert hid in one.cluster.info(cid).HOSTS.ID

    # The default cluster holds the bootstrap datastores; a datastore may be in several.
    one.cluster.adddatastore(cid, 1)
    assert cid in one.datastore.info(1).CLUSTERS.ID
    one.cluster.deldatastore(cid, 1)
    assert cid not in one.datastore.info(1).CLUSTERS.ID

    # A non-empty cluster cannot be deleted.
    with pytest.raises(pyone.OneActionException):
        one.cluster.delete(cid)
    one.cluster.delhost(cid, hid)
    assert one.host.info(hid).CLUSTER_ID == 0
    one.cluster.rename(cid, "c2")
    assert one.cluster.info(cid).NAME == "c2"
    one.cluster.update(cid, 'RESERVED_CPU="100"', 1)
    assert one.cluster.info(cid).TEMPLATE["RESERVED_CPU"] == "100"
    one.cluster.delete(cid)
    with pytest.raises(pyone.OneNoExistsException):
        one.cluster.info(cid)
    with pytest.raises(pyone.OneActionException):
        one.cluster.delete(0)
    xsd_check(oned.admin_xml("one.clusterpool.info"))


def test_host_allocate_status_and_errors(oned, one):
    hid = one.host.allocate("node-a", "kvm", "kvm", -1)
    h = one.host.info(hid)
    assert (h.STATE, h.IM_MAD, h.VM_MAD, h.CLUSTER_ID) == (0, "kvm", "kvm", 0)
    xsd_check(oned.admin_xml("one.host.info", hid))
    with pytest.raises(pyone.OneException, match="NAME is already taken by HOST"):
        one.host.allocate("node-a", "kvm", "kvm", -1)
    with pytest.raises(pyone.OneException, match="host names cannot contain spaces"):
        one.host.allocate("bad name", "kvm", "kvm", -1)
    with pytest.raises(pyone.OneNoExistsException):
        one.host.allocate("node-b", "kvm", "kvm", 4242)

    one.host.status(hid, 1)
    assert one.host.info(hid).STATE == 4  # DISABLED
    one.host.status(hid, 2)
    assert one.host.info(hid).STATE == 8  # OFFLINE
    one.host.status(hid, 0)
    assert one.host.info(hid).STATE == 0  # never monitored: back to INIT
    with pytest.raises(pyone.OneException):
        one.host.status(hid, 7)

    one.host.update(hid, 'LABEL="fast"', 1)
    assert one.host.info(hid).TEMPLATE["LABEL"] == "fast"
    one.host.rename(hid, "node-renamed")
    pool = oned.admin_xml("one.hostpool.info")
    xsd_check(pool)
    assert [h.findtext("NAME") for h in parse_xml(pool).findall("HOST")] == ["node-renamed"]
    one.host.delete(hid)
    with pytest.raises(pyone.OneNoExistsException):
        one.host.info(hid)
    assert hid not in (one.cluster.info(0).HOSTS.ID or [])


def test_datastore_allocate_and_rules(oned, one):
    with pytest.raises(pyone.OneException, match="No DS_MAD"):
        one.datastore.allocate('NAME="x"\nTYPE="IMAGE_DS"\nTM_MAD="shared"', -1)
    with pytest.raises(pyone.OneException, match="No NAME"):
        one.datastore.allocate('TYPE="IMAGE_DS"', -1)
    did = one.datastore.allocate('NAME="images2"\nDS_MAD="fs"\nTM_MAD="shared"', -1)
    ds = one.datastore.info(did)
    assert ds.TYPE == 0 and ds.DS_MAD == "fs" and ds.TM_MAD == "shared"
    assert ds.BASE_PATH == str(oned.data_dir / "datastores" / str(did))
    assert 0 in ds.CLUSTERS.ID
    xsd_check(oned.admin_xml("one.datastore.info", did))

    sid = one.datastore.allocate('NAME="sys2"\nTYPE="SYSTEM_DS"\nTM_MAD="shared"', -1)
    assert one.datastore.info(sid).TYPE == 1
    one.datastore.enable(sid, False)
    assert one.datastore.info(sid).STATE == 1
    one.datastore.enable(sid, True)
    with pytest.raises(pyone.OneActionException):
        one.datastore.enable(did, False)

    one.datastore.chmod(did, 1, 1, 0, 1, 0, 0, 1, 0, 0)
    p = one.datastore.info(did).PERMISSIONS
    assert (p.OWNER_U, p.GROUP_U, p.OTHER_U, p.OWNER_A) == (1, 1, 1, 0)
    one.datastore.rename(did, "images3")
    with pytest.raises(pyone.OneException, match="already taken by DATASTORE"):
        one.datastore.rename(did, "default")
    xsd_check(oned.admin_xml("one.datastorepool.info"))
    one.datastore.delete(did)
    with pytest.raises(pyone.OneNoExistsException):
        one.datastore.info(did)


def test_plain_user_cannot_manage_infrastructure(oned, one, make_user):
    alice = make_user("alice", "pw-alice")
    with pytest.raises(pyone.OneAuthorizationException):
        alice.host.allocate("h", "kvm", "kvm", -1)
    with pytest.raises(pyone.OneAuthorizationException):
        alice.cluster.allocate("mine")
    with pytest.raises(pyone.OneAuthorizationException):
        alice.acl.addrule("100000000", "1000000000", "1")
    # Hosts are not visible to plain users without an ACL rule.
    hid = one.host.allocate("hidden", "kvm", "kvm", -1)
    with pytest.raises(pyone.OneAuthorizationException):
        alice.host.info(hid)
    assert "<HOST>" not in oned.raw_call("one.hostpool.info", alice.session)[1]
    # A rule granting USE of every host lets her see them.
    rule = one.acl.addrule("%x" % (0x100000000 | alice.uid), "%x" % (0x2000000000 | 0x400000000), "1")
    assert alice.host.info(hid).NAME == "hidden"
    one.acl.delrule(rule)


def test_acl_rules(oned, one):
    body = oned.admin_xml("one.acl.info")
    xsd_check(body)
    strings = [a.findtext("STRING") for a in parse_xml(body).findall("ACL")]
    assert "@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *" in strings
    rid = one.acl.addrule("200000001", "2400000000", "3")
    rules = parse_xml(oned.admin_xml("one.acl.info")).findall("ACL")
    mine = [r for r in rules if int(r.findtext("ID")) == rid]
    assert mine and mine[0].findtext("STRING").startswith("@1 HOST")
    with pytest.raises(pyone.OneInternalException, match="already exists"):
        one.acl.addrule("200000001", "2400000000", "3")
    with pytest.raises(pyone.OneException):
        one.acl.addrule("zz", "2400000000", "3")
    one.acl.delrule(rid)
    with pytest.raises(pyone.OneInternalException, match="does not exist"):
        one.acl.delrule(rid)


def test_deleting_objects_drops_their_acl_rules(oned, one):
    """Rules that name a deleted host, cluster or template by id go with it, as in oned."""
    hid = one.host.allocate("short-lived", "kvm", "kvm", -1)
    cid = one.cluster.allocate("short-lived")
    tid = one.template.allocate('NAME="short-lived"\nCPU="1"\nMEMORY="64"')
    host_rule = one.acl.addrule("200000001", "%x" % (0x2000000000 | 0x100000000 | hid), "1")
    cluster_rule = one.acl.addrule("200000001", "%x" % (0x2000000000 | 0x800000000 | cid), "1")
    tmpl_rule = one.acl.addrule("200000001", "%x" % (0x20000000000 | 0x100000000 | tid), "1")
    keep = one.acl.addrule("200000001", "%x" % (0x2000000000 | 0x400000000), "1")

    def ids():
        return {a.ID for a in one.acl.info().ACL}

    assert {host_rule, cluster_rule, tmpl_rule, keep} <= ids()
    one.host.delete(hid)
    one.cluster.delete(cid)
    one.template.delete(tid)
    left = ids()
    assert host_rule not in left and cluster_rule not in left and tmpl_rule not in left
    assert keep in left
