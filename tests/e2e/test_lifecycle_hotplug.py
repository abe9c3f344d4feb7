"""Changes to deployed VMs on dummy hosts, driven through pyone: disk attach / detach
(volatile and image disks), NIC attach / detach on a virtual network (the lease taken and
given back), system snapshots, disk snapshots, disk resize, capacity resize and updateconf:
the transient LCM state each goes through, what the VM document holds afterwards (and
still validates against OpenNebula's XSD), what a failed driver step takes back, and the
states each operation is refused in.

Expected values are OpenNebula's (DispatchManagerActions.cc, LifeCycleStates.cc); where
oned differs the test is an xfail naming the difference.
"""

from __future__ import annotations

import pyone
import pytest

from harness import parse_xml, xsd_check
from lifecycle_util import (
    A_DISK_ATTACH, ACTIVE, CPU_SHARE, DISK_RESIZE, DISK_RESIZE_POWEROFF, DISK_SNAPSHOT,
    DISK_SNAPSHOT_DELETE, DISK_SNAPSHOT_POWEROFF, DISK_SNAPSHOT_REVERT_POWEROFF,
    DISK_SNAPSHOT_SUSPENDED, FAST_MONITOR, HOTPLUG, HOTPLUG_EPILOG_POWEROFF, HOTPLUG_NIC,
    HOTPLUG_NIC_POWEROFF, HOTPLUG_PROLOG_POWEROFF, HOTPLUG_RESIZE, HOTPLUG_SNAPSHOT, LCM_INIT,
    MEM_SHARE, PENDING, POWEROFF, RUNNING, SUSPENDED, UNDEPLOYED, act, add_host, assert_host,
    configure_host, host_share, new_vm, refused, running_vm, start_oned, vm, vm_in, vm_log,
    wait_for, wait_state,
)

R = (ACTIVE, RUNNING)
POFF = (POWEROFF, LCM_INIT)
VOLATILE = 'DISK=[TYPE="fs", SIZE="10"]'


@pytest.fixture
def hid(one):
    return add_host(one, "h1")


def slow(one, hid, ms=400):
    """Lets the transient state of the next operation be seen."""
    configure_host(one, hid, delay_ms=ms)


def failed(oned, vid, step, rest=R):
    """Waits until vm.log reports `step` failing and the VM is back in `rest`."""
    wait_for(f"{step} failure in vm.log", lambda: f"Error executing {step}" in vm_log(oned, vid))
    v = wait_state(oned, vid, *rest)
    assert f"Error executing {step}" in v.error, v.error
    return v


def make_net(one, name="net", size=4):
    return one.vn.allocate(
        f'NAME="{name}"\nVN_MAD="bridge"\nBRIDGE="br0"\n'
        f'AR=[TYPE="IP4", IP="10.0.0.10", SIZE="{size}"]', -1)


def used_leases(oned, net):
    return int(parse_xml(oned.admin_xml("one.vn.info", net)).findtext("USED_LEASES"))


def make_image(oned, one, name="img"):
    iid = one.image.allocate(f'NAME="{name}"\nSOURCE="/var/tmp/{name}"\nSIZE="10"\nFORMAT="raw"\nTYPE="DATABLOCK"', 1)
    return iid


def image(oned, iid):
    r = parse_xml(oned.admin_xml("one.image.info", iid))
    return int(r.findtext("STATE")), int(r.findtext("RUNNING_VMS"))


# ---------------------------------------------------------------------------------------
# Disk attach / detach


def test_attach_and_detach_a_volatile_disk_while_running(oned, one, hid):
    vid = running_vm(oned, one, hid)
    slow(one, hid)
    assert one.vm.attach(vid, VOLATILE) == vid
    v = vm(oned, vid)
    assert v.pair == (ACTIVE, HOTPLUG)
    assert any(d.get("ATTACH") == "YES" for d in v.disks())
    xsd_check(v.xml)
    v = wait_state(oned, vid, *R)
    disks = v.disks()
    assert [d["DISK_ID"] for d in disks] == ["0", "1"]
    new = disks[1]
    assert new["TARGET"] == "sdb" and new["TYPE"] == "fs" and new["SIZE"] == "10"
    assert "ATTACH" not in new
    assert_host(oned, hid, vid)
    xsd_check(v.xml)

    assert one.vm.detach(vid, 1) == vid
    assert vm(oned, vid).pair == (ACTIVE, HOTPLUG)
    v = wait_state(oned, vid, *R)
    assert [d["DISK_ID"] for d in v.disks()] == ["0"]
    assert "HOTPLUG" in vm_log(oned, vid)
    xsd_check(v.xml)


def test_attach_and_detach_while_powered_off(oned, one, hid):
    vid = vm_in(oned, one, hid, "POWEROFF")
    slow(one, hid)
    one.vm.attach(vid, VOLATILE)
    assert vm(oned, vid).pair == (ACTIVE, HOTPLUG_PROLOG_POWEROFF)
    v = wait_state(oned, vid, *POFF)
    assert [d["DISK_ID"] for d in v.disks()] == ["0", "1"] and "ATTACH" not in v.disks()[1]
    one.vm.detach(vid, 1)
    assert vm(oned, vid).pair == (ACTIVE, HOTPLUG_EPILOG_POWEROFF)
    v = wait_state(oned, vid, *POFF)
    assert [d["DISK_ID"] for d in v.disks()] == ["0"]
    assert_host(oned, hid, vid)
    xsd_check(v.xml)


def test_attach_an_image_disk_takes_and_gives_back_the_image(oned, one, hid):
    iid = make_image(oned, one)
    assert image(oned, iid) == (1, 0)  # READY
    vid = running_vm(oned, one, hid)
    one.vm.attach(vid, f'DISK=[IMAGE_ID="{iid}"]')
    v = wait_state(oned, vid, *R)
    d = v.disks()[1]
    assert d["IMAGE_ID"] == str(iid) and d["DISK_ID"] == "1" and d["TARGET"] and "ATTACH" not in d
    assert image(oned, iid) == (2, 1)  # USED by one VM
    xsd_check(v.xml)
    one.vm.detach(vid, 1)
    wait_state(oned, vid, *R)
    wait_for("image READY again", lambda: image(oned, iid) == (1, 0))


def test_failed_disk_attach_takes_the_disk_back(oned, one, hid):
    iid = make_image(oned, one)
    vid = running_vm(oned, one, hid)
    configure_host(one, hid, fail="attach_disk")
    one.vm.attach(vid, VOLATILE)
    v = failed(oned, vid, "attach_disk")
    assert [d["DISK_ID"] for d in v.disks()] == ["0"]
    one.vm.attach(vid, f'DISK=[IMAGE_ID="{iid}"]')
    wait_for("second failure", lambda: vm_log(oned, vid).count("Error executing attach_disk") == 2)
    v = wait_state(oned, vid, *R)
    assert [d["DISK_ID"] for d in v.disks()] == ["0"]
    assert image(oned, iid) == (1, 0), "the image is given back"
    # It works once the driver does.
    configure_host(one, hid, fail="")
    one.vm.attach(vid, VOLATILE)
    v = wait_state(oned, vid, *R)
    assert [d["DISK_ID"] for d in v.disks()] == ["0", "1"]


def test_failed_disk_detach_keeps_the_disk(oned, one, hid):
    vid = running_vm(oned, one, hid)
    one.vm.attach(vid, VOLATILE)
    wait_state(oned, vid, *R)
    configure_host(one, hid, fail="detach_disk")
    one.vm.detach(vid, 1)
    v = failed(oned, vid, "detach_disk")
    assert [d["DISK_ID"] for d in v.disks()] == ["0", "1"]
    assert all("ATTACH" not in d for d in v.disks())
    xsd_check(v.xml)


def test_disk_attach_refusals(oned, one, hid):
    vid = running_vm(oned, one, hid)
    # A second disk with a target in use, a detach of a disk that is not there, junk.
    refused(oned, vid, lambda: one.vm.attach(vid, 'DISK=[TYPE="fs", SIZE="10", TARGET="sda"]'), match=None)
    refused(oned, vid, lambda: one.vm.detach(vid, 7), match=None)
    with pytest.raises(pyone.OneException):
        one.vm.attach(vid, 'DISK=[TYPE="fs"]')
    assert [d["DISK_ID"] for d in vm(oned, vid).disks()] == ["0"]


@pytest.mark.parametrize("where", ["PENDING", "HOLD", "SUSPENDED", "STOPPED", "UNDEPLOYED", "DONE"])
def test_disk_and_nic_hotplug_refused(oned, one, hid, where):
    net = make_net(one)
    vid = vm_in(oned, one, hid, where, extra=f'NIC=[NETWORK_ID="{net}"]\n')
    refused(oned, vid, lambda: one.vm.attach(vid, VOLATILE))
    refused(oned, vid, lambda: one.vm.detach(vid, 0))
    refused(oned, vid, lambda: one.vm.attachnic(vid, f'NIC=[NETWORK_ID="{net}"]'))
    refused(oned, vid, lambda: one.vm.detachnic(vid, 0))
    refused(oned, vid, lambda: one.vm.snapshotcreate(vid, "s"))


def test_hotplug_closes_and_copies_the_history_record(oned, one, hid):
    vid = running_vm(oned, one, hid)
    one.vm.attach(vid, VOLATILE)
    v = wait_state(oned, vid, *R)
    assert len(v.history) == 2
    assert v.history[0]["ACTION"] == A_DISK_ATTACH and v.history[0]["ETIME"] > 0
    assert v.history[1]["SEQ"] == 1 and v.history[1]["ETIME"] == 0


# ---------------------------------------------------------------------------------------
# NICs


def test_attach_and_detach_a_nic_while_running(oned, one, hid):
    net = make_net(one)
    vid = running_vm(oned, one, hid)
    slow(one, hid)
    assert one.vm.attachnic(vid, f'NIC=[NETWORK_ID="{net}"]') == vid
    v = vm(oned, vid)
    assert v.pair == (ACTIVE, HOTPLUG_NIC)
    assert used_leases(oned, net) == 1, "the lease is taken when the attach starts"
    xsd_check(v.xml)
    v = wait_state(oned, vid, *R)
    (nic,) = v.nics()
    assert nic["NIC_ID"] == "0" and nic["NETWORK_ID"] == str(net)
    assert nic["IP"] == "10.0.0.10" and nic["MAC"] and "ATTACH" not in nic
    assert used_leases(oned, net) == 1
    xsd_check(v.xml)

    assert one.vm.detachnic(vid, 0) == vid
    assert vm(oned, vid).pair == (ACTIVE, HOTPLUG_NIC)
    v = wait_state(oned, vid, *R)
    assert v.nics() == []
    assert used_leases(oned, net) == 0, "the lease is given back"
    xsd_check(v.xml)


def test_attach_and_detach_a_nic_while_powered_off(oned, one, hid):
    net = make_net(one)
    vid = vm_in(oned, one, hid, "POWEROFF")
    one.vm.attachnic(vid, f'NIC=[NETWORK_ID="{net}"]')
    assert vm(oned, vid).pair in ((ACTIVE, HOTPLUG_NIC_POWEROFF), POFF)
    v = wait_state(oned, vid, *POFF)
    assert [n["NIC_ID"] for n in v.nics()] == ["0"] and "ATTACH" not in v.nics()[0]
    assert used_leases(oned, net) == 1
    one.vm.detachnic(vid, 0)
    v = wait_state(oned, vid, *POFF)
    assert v.nics() == [] and used_leases(oned, net) == 0
    # Back on, the VM boots without it.
    act(oned, one, "resume", vid, *R)


@pytest.mark.parametrize("step", ["net_pre", "attach_nic", "net_post"])
def test_failed_nic_attach_gives_the_lease_back(oned, one, hid, step):
    net = make_net(one)
    vid = running_vm(oned, one, hid)
    configure_host(one, hid, fail=step)
    one.vm.attachnic(vid, f'NIC=[NETWORK_ID="{net}"]')
    v = failed(oned, vid, step)
    assert v.nics() == []
    assert used_leases(oned, net) == 0
    xsd_check(v.xml)
    configure_host(one, hid, fail="")
    one.vm.attachnic(vid, f'NIC=[NETWORK_ID="{net}"]')
    v = wait_state(oned, vid, *R)
    assert len(v.nics()) == 1 and used_leases(oned, net) == 1


def test_failed_nic_detach_keeps_the_nic_and_its_lease(oned, one, hid):
    net = make_net(one)
    vid = running_vm(oned, one, hid, extra=f'NIC=[NETWORK_ID="{net}"]\n')
    assert used_leases(oned, net) == 1
    configure_host(one, hid, fail="detach_nic")
    one.vm.detachnic(vid, 0)
    v = failed(oned, vid, "detach_nic")
    assert [n["NIC_ID"] for n in v.nics()] == ["0"] and "ATTACH" not in v.nics()[0]
    assert used_leases(oned, net) == 1


def test_nic_attach_to_a_full_network_is_refused(oned, one, hid):
    net = make_net(one, size=1)
    vid = running_vm(oned, one, hid, extra=f'NIC=[NETWORK_ID="{net}"]\n')
    with pytest.raises(pyone.OneException):
        one.vm.attachnic(vid, f'NIC=[NETWORK_ID="{net}"]')
    v = vm(oned, vid)
    assert v.pair == R and len(v.nics()) == 1


# ---------------------------------------------------------------------------------------
# System snapshots


def snapshots(v):
    return [{c.tag: (c.text or "") for c in s} for s in v.root.findall("TEMPLATE/SNAPSHOT")]


def test_system_snapshots_create_revert_delete(oned, one, hid):
    vid = running_vm(oned, one, hid)
    slow(one, hid)
    s0 = one.vm.snapshotcreate(vid, "first")
    assert s0 == 0
    assert vm(oned, vid).pair == (ACTIVE, HOTPLUG_SNAPSHOT)
    v = wait_state(oned, vid, *R)
    (snap,) = snapshots(v)
    assert (snap["SNAPSHOT_ID"], snap["NAME"], snap["ACTIVE"]) == ("0", "first", "YES")
    assert int(snap["TIME"]) > 0 and snap["HYPERVISOR_ID"]
    configure_host(one, hid, delay_ms=0)
    s1 = one.vm.snapshotcreate(vid, "")
    assert s1 == 1
    v = wait_state(oned, vid, *R)
    assert [(s["SNAPSHOT_ID"], s.get("ACTIVE")) for s in snapshots(v)] == [("0", None), ("1", "YES")]

    assert one.vm.snapshotrevert(vid, 0) == vid
    v = wait_state(oned, vid, *R)
    assert [(s["SNAPSHOT_ID"], s.get("ACTIVE")) for s in snapshots(v)] == [("0", "YES"), ("1", None)]
    assert one.vm.snapshotdelete(vid, 1) == vid
    v = wait_state(oned, vid, *R)
    assert [s["SNAPSHOT_ID"] for s in snapshots(v)] == ["0"]
    refused(oned, vid, lambda: one.vm.snapshotrevert(vid, 5), match=None)
    refused(oned, vid, lambda: one.vm.snapshotdelete(vid, 5), match=None)
    # Powered off, system snapshots are not available.
    act(oned, one, "poweroff", vid, *POFF)
    refused(oned, vid, lambda: one.vm.snapshotcreate(vid, "x"))
    refused(oned, vid, lambda: one.vm.snapshotrevert(vid, 0))
    refused(oned, vid, lambda: one.vm.snapshotdelete(vid, 0))


def test_system_snapshot_document_validates(oned, one, hid):
    vid = running_vm(oned, one, hid)
    one.vm.snapshotcreate(vid, "s")
    v = wait_state(oned, vid, *R)
    assert snapshots(v)[0].get("SYSTEM_DISK_SIZE") == "256"
    xsd_check(v.xml)


def test_failed_snapshot_create_leaves_no_snapshot(oned, one, hid):
    vid = running_vm(oned, one, hid)
    configure_host(one, hid, fail="snapshot_create")
    one.vm.snapshotcreate(vid, "s")
    v = failed(oned, vid, "snapshot_create")
    assert snapshots(v) == []
    configure_host(one, hid, fail="snapshot_delete")
    one.vm.snapshotcreate(vid, "s")
    wait_state(oned, vid, *R)
    one.vm.snapshotdelete(vid, 0)
    v = failed(oned, vid, "snapshot_delete")
    assert [s["SNAPSHOT_ID"] for s in snapshots(v)] == ["0"], "a failed delete keeps it"


# ---------------------------------------------------------------------------------------
# Disk snapshots


def disk_snaps(v, disk_id=0):
    for t in v.root.findall("SNAPSHOTS"):
        if t.findtext("DISK_ID") == str(disk_id):
            return {int(s.findtext("ID")): {c.tag: (c.text or "") for c in s} for s in t.findall("SNAPSHOT")}
    return {}


def snap_vm(oned, one, hid, where="RUNNING", name="snapimg"):
    """A VM whose DISK 1 is a non-persistent qcow2 image (disk snapshots need an image disk:
    DISK 0 of the lifecycle VM is volatile), in rest state `where`."""
    iid = one.image.allocate(
        f'NAME="{name}"\nSOURCE="/var/tmp/{name}"\nSIZE="10"\nFORMAT="qcow2"\nTYPE="DATABLOCK"', 1)
    extra = f'DISK=[IMAGE_ID="{iid}"]\n'
    if where == "RUNNING":
        return running_vm(oned, one, hid, extra), iid
    return vm_in(oned, one, hid, where, extra), iid


def test_disk_snapshots_create_rename_revert_delete(oned, one, hid):
    vid, _ = snap_vm(oned, one, hid)
    slow(one, hid)
    assert one.vm.disksnapshotcreate(vid, 1, "base") == 0
    assert vm(oned, vid).pair == (ACTIVE, DISK_SNAPSHOT)
    v = wait_state(oned, vid, *R)
    s = disk_snaps(v, 1)
    assert list(s) == [0] and s[0]["NAME"] == "base" and s[0]["ACTIVE"] == "YES" and s[0]["PARENT"] == "-1"
    # qcow2 disks: ALLOW_ORPHANS FORMAT in TM_MAD_CONF, which is DENY for qcow2.
    assert v.root.findtext("SNAPSHOTS/ALLOW_ORPHANS") == "DENY"
    xsd_check(v.xml)
    configure_host(one, hid, delay_ms=0)
    assert one.vm.disksnapshotcreate(vid, 1, "next") == 1
    v = wait_state(oned, vid, *R)
    s = disk_snaps(v, 1)
    assert s[1]["PARENT"] == "0" and s[1]["ACTIVE"] == "YES" and s[0]["CHILDREN"] == "1"
    assert "ACTIVE" not in s[0] or s[0]["ACTIVE"] != "YES"
    assert v.root.findtext("SNAPSHOTS/NEXT_SNAPSHOT") == "2"
    disk1 = [d for d in v.disks() if d["DISK_ID"] == "1"][0]
    assert disk1["DISK_SNAPSHOT_TOTAL_SIZE"] == "20"
    xsd_check(v.xml)

    assert one.vm.disksnapshotrename(vid, 1, 0, "renamed") == vid
    assert disk_snaps(vm(oned, vid), 1)[0]["NAME"] == "renamed"
    # Revert only while powered off.
    refused(oned, vid, lambda: one.vm.disksnapshotrevert(vid, 1, 0))

    act(oned, one, "poweroff", vid, *POFF)
    slow(one, hid)
    assert one.vm.disksnapshotrevert(vid, 1, 0) == vid
    assert vm(oned, vid).pair == (ACTIVE, DISK_SNAPSHOT_REVERT_POWEROFF)
    v = wait_state(oned, vid, *POFF)
    s = disk_snaps(v, 1)
    assert s[0]["ACTIVE"] == "YES" and s[1].get("ACTIVE") != "YES"
    configure_host(one, hid, delay_ms=0)
    # A second line from 0: 0 now has two children and may not go (DENY).
    assert one.vm.disksnapshotcreate(vid, 1, "branch") == 2
    v = wait_state(oned, vid, *POFF)
    assert disk_snaps(v, 1)[0]["CHILDREN"] == "1,2"
    refused(oned, vid, lambda: one.vm.disksnapshotdelete(vid, 1, 0), match="more than one children")
    # The active leaf goes; its parent becomes active.
    assert one.vm.disksnapshotdelete(vid, 1, 2) == vid
    v = wait_state(oned, vid, *POFF)
    s = disk_snaps(v, 1)
    assert list(s) == [0, 1] and s[0]["ACTIVE"] == "YES" and s[0]["CHILDREN"] == "1"
    # 0 is the active snapshot and has a child: it stays; 1 is a leaf.
    refused(oned, vid, lambda: one.vm.disksnapshotdelete(vid, 1, 0), match="active snapshot with children")
    assert one.vm.disksnapshotdelete(vid, 1, 1) == vid
    v = wait_state(oned, vid, *POFF)
    assert list(disk_snaps(v, 1)) == [0]
    assert disk_snaps(v, 1)[0].get("CHILDREN", "") == ""
    xsd_check(v.xml)


def test_a_snapshot_in_a_line_is_taken_out(oned, one, hid):
    """DENY trees: deleting the middle of 0 <- 1 <- 2 puts 2 under 0."""
    vid, _ = snap_vm(oned, one, hid)
    for i in range(3):
        assert one.vm.disksnapshotcreate(vid, 1, f"s{i}") == i
        wait_state(oned, vid, *R)
    assert one.vm.disksnapshotdelete(vid, 1, 1) == vid
    v = wait_state(oned, vid, *R)
    s = disk_snaps(v, 1)
    assert list(s) == [0, 2] and s[2]["PARENT"] == "0" and s[0]["CHILDREN"] == "2"
    assert s[2]["ACTIVE"] == "YES"
    xsd_check(v.xml)


def test_disk_snapshot_states_while_powered_off_and_suspended(oned, one, hid):
    a, _ = snap_vm(oned, one, hid, "POWEROFF", name="a")
    b, _ = snap_vm(oned, one, hid, "SUSPENDED", name="b")
    slow(one, hid)
    one.vm.disksnapshotcreate(a, 1, "p")
    one.vm.disksnapshotcreate(b, 1, "s")
    assert vm(oned, a).pair == (ACTIVE, DISK_SNAPSHOT_POWEROFF)
    assert vm(oned, b).pair == (ACTIVE, DISK_SNAPSHOT_SUSPENDED)
    wait_state(oned, a, *POFF)
    wait_state(oned, b, SUSPENDED, LCM_INIT)
    assert list(disk_snaps(vm(oned, b), 1)) == [0]
    refused(oned, b, lambda: one.vm.disksnapshotrevert(b, 1, 0))


def test_failed_disk_snapshot_create_is_taken_back(oned, one, hid):
    vid, _ = snap_vm(oned, one, hid)
    configure_host(one, hid, fail="disk_snapshot_create")
    one.vm.disksnapshotcreate(vid, 1, "x")
    v = failed(oned, vid, "disk_snapshot_create")
    assert disk_snaps(v, 1) == {}
    xsd_check(v.xml)


def test_running_disk_snapshot_delete_state(oned, one, hid):
    vid, _ = snap_vm(oned, one, hid)
    one.vm.disksnapshotcreate(vid, 1, "a")
    wait_state(oned, vid, *R)
    one.vm.disksnapshotcreate(vid, 1, "b")
    wait_state(oned, vid, *R)
    slow(one, hid)
    one.vm.disksnapshotdelete(vid, 1, 1)
    assert vm(oned, vid).pair == (ACTIVE, DISK_SNAPSHOT_DELETE)
    v = wait_state(oned, vid, *R)
    assert list(disk_snaps(v, 1)) == [0]
    assert disk_snaps(v, 1)[0]["ACTIVE"] == "YES", "the parent of the deleted active snapshot"


def test_disk_snapshots_need_an_image_disk_that_is_writable(oned, one, hid):
    vid, _ = snap_vm(oned, one, hid)
    # DISK 0 is volatile (OpenNebula: no snapshots of volatile disks).
    refused(oned, vid, lambda: one.vm.disksnapshotcreate(vid, 0, "x"), match="volatile disks")
    refused(oned, vid, lambda: one.vm.disksnapshotcreate(vid, 7, "x"), match="does not exist")


# ---------------------------------------------------------------------------------------
# disk-saveas

HOTPLUG_SAVEAS, HOTPLUG_SAVEAS_POWEROFF, HOTPLUG_SAVEAS_SUSPENDED = 26, 27, 28
HOTPLUG_SAVEAS_UNDEPLOYED, HOTPLUG_SAVEAS_STOPPED = 67, 68
IMG_READY, IMG_LOCKED, IMG_ERROR = 1, 4, 5


def image_doc(oned, iid):
    text = oned.admin_xml("one.image.info", iid)
    xsd_check(text)
    return parse_xml(text)


@pytest.mark.parametrize(
    "where,phase,rest",
    [
        ("RUNNING", HOTPLUG_SAVEAS, R),
        ("POWEROFF", HOTPLUG_SAVEAS_POWEROFF, POFF),
        ("SUSPENDED", HOTPLUG_SAVEAS_SUSPENDED, (SUSPENDED, LCM_INIT)),
        ("UNDEPLOYED", HOTPLUG_SAVEAS_UNDEPLOYED, (UNDEPLOYED, LCM_INIT)),
    ],
)
def test_disk_saveas_makes_an_image_locked_then_ready(oned, one, hid, where, phase, rest):
    vid, orig = snap_vm(oned, one, hid, where)
    slow(one, hid, 2000)  # long enough to look at the image and the VM in between
    new = one.vm.disksaveas(vid, 1, "saved", "", -1)
    assert vm(oned, vid).pair == (ACTIVE, phase)
    x = image_doc(oned, new)
    assert int(x.findtext("STATE")) == IMG_LOCKED
    d = [d for d in vm(oned, vid).disks() if d["DISK_ID"] == "1"][0]
    assert d["HOTPLUG_SAVE_AS"] == str(new) and d["HOTPLUG_SAVE_AS_ACTIVE"] == "YES"
    xsd_check(vm(oned, vid).xml)
    v = wait_state(oned, vid, *rest)
    assert not any(k.startswith("HOTPLUG_SAVE_AS") for d in v.disks() for k in d)
    x = image_doc(oned, new)
    assert int(x.findtext("STATE")) == IMG_READY
    assert x.findtext("NAME") == "saved" and x.findtext("TYPE") == "2", "DATABLOCK, the original's"
    assert x.findtext("SIZE") == "10" and x.findtext("FORMAT") == "qcow2"
    assert x.findtext("DATASTORE_ID") == "1" and x.findtext("PERSISTENT") == "0"
    ds = parse_xml(oned.admin_xml("one.datastore.info", 1))
    assert x.findtext("SOURCE").startswith(ds.findtext("BASE_PATH") + "/")
    assert x.findtext("TEMPLATE/SAVED_IMAGE_ID") == str(orig)
    assert x.findtext("TEMPLATE/SAVED_VM_ID") == str(vid) and x.findtext("TEMPLATE/SAVED_DISK_ID") == "1"
    assert str(new) in [i.text for i in ds.findall("IMAGES/ID")]


def test_disk_saveas_of_a_snapshot_and_its_failure(oned, one, hid):
    vid, _ = snap_vm(oned, one, hid)
    one.vm.disksnapshotcreate(vid, 1, "s")
    wait_state(oned, vid, *R)
    configure_host(one, hid, fail="disk_saveas")
    new = one.vm.disksaveas(vid, 1, "from-snap", "OS", 0)
    failed(oned, vid, "disk_saveas")
    x = image_doc(oned, new)
    # The image says what went wrong and keeps its quota charge until deleted.
    assert int(x.findtext("STATE")) == IMG_ERROR
    assert "disk_saveas" in x.findtext("TEMPLATE/ERROR")
    assert x.findtext("TYPE") == "0", "the TYPE asked for (OS)"
    configure_host(one, hid, fail="")
    ok = one.vm.disksaveas(vid, 1, "from-snap-2", "", 0)
    wait_state(oned, vid, *R)
    x = image_doc(oned, ok)
    assert int(x.findtext("STATE")) == IMG_READY and x.findtext("TEMPLATE/SAVED_SNAPSHOT_ID") == "0"


def test_disk_saveas_refusals(oned, one, hid):
    vid, _ = snap_vm(oned, one, hid)
    with pytest.raises(pyone.OneInternalException, match="volatile disk"):
        one.vm.disksaveas(vid, 0, "x", "", -1)
    with pytest.raises(pyone.OneInternalException, match="does not exist"):
        one.vm.disksaveas(vid, 1, "x", "", 5)
    with pytest.raises(pyone.OneInternalException, match="does not exist"):
        one.vm.disksaveas(vid, 9, "x", "", -1)
    assert vm(oned, vid).pair == R
    one.vm.disksaveas(vid, 1, "taken", "", -1)
    wait_state(oned, vid, *R)
    with pytest.raises(pyone.OneException, match="NAME is already taken"):
        one.vm.disksaveas(vid, 1, "taken", "", -1)
    pending = new_vm(one)
    with pytest.raises(pyone.OneInternalException, match="RUNNING, POWEROFF or SUSPENDED"):
        one.vm.disksaveas(pending, 0, "y", "", -1)


@pytest.mark.parametrize("where", ["PENDING", "STOPPED", "UNDEPLOYED"])
def test_disk_snapshots_refused(oned, one, hid, where):
    vid, _ = snap_vm(oned, one, hid, where)
    refused(oned, vid, lambda: one.vm.disksnapshotcreate(vid, 1, "x"))
    refused(oned, vid, lambda: one.vm.disksnapshotrevert(vid, 1, 0))
    refused(oned, vid, lambda: one.vm.disksnapshotdelete(vid, 1, 0))


# ---------------------------------------------------------------------------------------
# Disk resize


def disk_size(oned, vid, disk_id=0):
    return next(d["SIZE"] for d in vm(oned, vid).disks() if d["DISK_ID"] == str(disk_id))


def test_disk_resize_running_poweroff_undeployed(oned, one, hid):
    vid = running_vm(oned, one, hid)
    slow(one, hid)
    assert one.vm.diskresize(vid, 0, "20") == vid
    assert vm(oned, vid).pair == (ACTIVE, DISK_RESIZE)
    wait_state(oned, vid, *R)
    assert disk_size(oned, vid) == "20"
    refused(oned, vid, lambda: one.vm.diskresize(vid, 0, "15"), match=None)  # smaller
    refused(oned, vid, lambda: one.vm.diskresize(vid, 0, "20"), match=None)  # same
    refused(oned, vid, lambda: one.vm.diskresize(vid, 9, "30"), match=None)  # no such disk
    configure_host(one, hid, delay_ms=0)
    act(oned, one, "poweroff", vid, *POFF)
    slow(one, hid)
    one.vm.diskresize(vid, 0, "30")
    assert vm(oned, vid).pair == (ACTIVE, DISK_RESIZE_POWEROFF)
    wait_state(oned, vid, *POFF)
    assert disk_size(oned, vid) == "30"
    configure_host(one, hid, delay_ms=0)
    act(oned, one, "undeploy", vid, UNDEPLOYED, LCM_INIT)
    one.vm.diskresize(vid, 0, "40")
    v = wait_state(oned, vid, UNDEPLOYED, LCM_INIT)
    assert disk_size(oned, vid) == "40"
    xsd_check(v.xml)


def test_failed_disk_resize_restores_the_size(oned, one, hid):
    vid = running_vm(oned, one, hid)
    configure_host(one, hid, fail="disk_resize")
    one.vm.diskresize(vid, 0, "50")
    failed(oned, vid, "disk_resize")
    assert disk_size(oned, vid) == "10"


@pytest.mark.parametrize("where", ["PENDING", "SUSPENDED", "STOPPED"])
def test_disk_resize_refused(oned, one, hid, where):
    vid = vm_in(oned, one, hid, where)
    refused(oned, vid, lambda: one.vm.diskresize(vid, 0, "50"))
    assert disk_size(oned, vid) == "10"


# ---------------------------------------------------------------------------------------
# Capacity resize


def test_resize_while_powered_off_changes_template_and_host_share(oned, one, hid):
    vid = vm_in(oned, one, hid, "POWEROFF")
    assert one.vm.resize(vid, 'CPU="2"\nVCPU="2"\nMEMORY="512"', False) == vid
    v = vm(oned, vid)
    assert v.pair == POFF, "no driver work while powered off"
    assert (v.tmpl("CPU"), v.tmpl("VCPU"), v.tmpl("MEMORY")) == ("2", "2", "512")
    assert_host(oned, hid, vid, cpu=200, mem=512 * 1024)
    xsd_check(v.xml)
    act(oned, one, "resume", vid, *R)
    assert_host(oned, hid, vid, cpu=200, mem=512 * 1024)
    act(oned, one, "terminate", vid, 6, LCM_INIT)
    assert_host(oned, hid)


def test_resize_while_running_goes_through_hotplug_resize(oned, one, hid):
    vid = running_vm(oned, one, hid)
    slow(one, hid)
    one.vm.resize(vid, 'MEMORY="1024"', False)
    assert vm(oned, vid).pair == (ACTIVE, HOTPLUG_RESIZE)
    v = wait_state(oned, vid, *R)
    assert v.tmpl("MEMORY") == "1024" and v.tmpl("CPU") == "1"
    assert_host(oned, hid, vid, cpu=CPU_SHARE, mem=1024 * 1024)


def test_resize_of_a_pending_vm_edits_the_template(oned, one, hid):
    vid = new_vm(one)
    one.vm.resize(vid, 'CPU="0.5"', False)
    v = vm(oned, vid)
    assert v.pair == (PENDING, LCM_INIT) and v.tmpl("CPU") == "0.5"
    one.vm.deploy(vid, hid, False, -1)
    wait_state(oned, vid, *R)
    assert_host(oned, hid, vid, cpu=50, mem=MEM_SHARE)


def test_failed_live_resize_restores_capacity(oned, one, hid):
    vid = running_vm(oned, one, hid)
    configure_host(one, hid, fail="resize")
    one.vm.resize(vid, 'CPU="3"\nMEMORY="2048"', False)
    v = failed(oned, vid, "resize")
    assert (v.tmpl("CPU"), v.tmpl("MEMORY")) == ("1", "256")
    assert_host(oned, hid, vid)


def test_resize_enforce_checks_the_host(oned_factory, tmp_path):
    o = start_oned(oned_factory, tmp_path, FAST_MONITOR)
    one = o.client()
    hid = add_host(one, "h1")
    one.host.update(hid, 'DUMMY_TOTALCPU="200"', 1)
    wait_for("host monitored with MAX_CPU 200", lambda: host_share(o, hid).max_cpu == 200)
    vid = vm_in(o, one, hid, "POWEROFF")
    refused(o, vid, lambda: one.vm.resize(vid, 'CPU="4"', True), match=None)
    assert vm(o, vid).tmpl("CPU") == "1"
    assert_host(o, hid, vid)
    one.vm.resize(vid, 'CPU="2"', True)
    assert_host(o, hid, vid, cpu=200)


@pytest.mark.parametrize("where", ["SUSPENDED", "STOPPED", "DONE"])
def test_resize_refused(oned, one, hid, where):
    vid = vm_in(oned, one, hid, where)
    with pytest.raises(pyone.OneActionException):
        one.vm.resize(vid, 'CPU="2"', False)
    assert vm(oned, vid).tmpl("CPU") == "1"


# ---------------------------------------------------------------------------------------
# updateconf


def test_updateconf_running_goes_through_hotplug(oned, one, hid):
    vid = running_vm(oned, one, hid, extra='GRAPHICS=[TYPE="VNC", LISTEN="0.0.0.0"]\nOS=[ARCH="x86_64"]\n')
    slow(one, hid)
    new = 'GRAPHICS=[TYPE="SPICE", LISTEN="127.0.0.1"]\nOS=[ARCH="aarch64", BOOT="disk0"]'
    assert one.vm.updateconf(vid, new) == vid
    assert vm(oned, vid).pair == (ACTIVE, HOTPLUG)
    v = wait_state(oned, vid, *R)
    assert v.tmpl("GRAPHICS/TYPE") == "SPICE" and v.tmpl("GRAPHICS/LISTEN") == "127.0.0.1"
    assert v.tmpl("OS/ARCH") == "aarch64" and v.tmpl("OS/BOOT") == "disk0"
    xsd_check(v.xml)


def test_updateconf_powered_off_needs_no_driver(oned, one, hid):
    vid = vm_in(oned, one, hid, "POWEROFF")
    configure_host(one, hid, fail="update_conf")
    one.vm.updateconf(vid, 'GRAPHICS=[TYPE="VNC", LISTEN="0.0.0.0"]')
    v = vm(oned, vid)
    assert v.pair == POFF and v.tmpl("GRAPHICS/TYPE") == "VNC" and v.error == ""


def test_failed_updateconf_returns_to_running(oned, one, hid):
    vid = running_vm(oned, one, hid)
    configure_host(one, hid, fail="update_conf")
    one.vm.updateconf(vid, 'GRAPHICS=[TYPE="VNC", LISTEN="0.0.0.0"]')
    failed(oned, vid, "update_conf")


@pytest.mark.parametrize("where", ["SUSPENDED", "STOPPED", "DONE"])
def test_updateconf_refused(oned, one, hid, where):
    vid = vm_in(oned, one, hid, where)
    before = vm(oned, vid)
    with pytest.raises(pyone.OneException):
        one.vm.updateconf(vid, 'GRAPHICS=[TYPE="VNC", LISTEN="0.0.0.0"]')
    after = vm(oned, vid)
    assert after.pair == before.pair and after.tmpl("GRAPHICS/TYPE") is None


def test_updateconf_refusal_is_opennebulas(oned, one, hid):
    vid = vm_in(oned, one, hid, "SUSPENDED")
    r = oned.admin_call("one.vm.updateconf", vid, 'GRAPHICS=[TYPE="VNC"]', 0)
    assert r[0] is False and r[2] == 0x2000
    assert "configuration cannot be updated in state SUSPENDED" in r[1]
