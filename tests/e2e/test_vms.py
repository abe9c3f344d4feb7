"""Virtual machines: one.vm.allocate (DISK, NIC and CONTEXT expansion, quotas), info and the
pool listings (short, extended, infoset, state filter, paging, search), update / rename /
chown / chmod / lock, and the actions of VMs that were never deployed (terminate, hold,
release) with OpenNebula's errors for every other action."""

from __future__ import annotations

import base64
import xmlrpc.client

import pyone
import pytest

from harness import parse_xml, xsd_check

MINIMAL = 'CPU="0.5"\nMEMORY="128"\n'


def vm_xml(oned, vid: int) -> str:
    return oned.admin_xml("one.vm.info", vid)


def vm_root(oned, vid: int):
    return parse_xml(vm_xml(oned, vid))


def pool_ids(xml_text: str) -> list[int]:
    return [int(v.findtext("ID")) for v in parse_xml(xml_text).findall("VM")]


def fails(answer, code: int, text: str | None = None):
    """A raw failed answer with that code (and message fragment)."""
    assert answer[0] is False, answer
    assert answer[2] == code, answer
    if text is not None:
        assert text in answer[1], answer


def make_net(one, name="net", size=10, extra=""):
    return one.vn.allocate(
        f'NAME="{name}"\nVN_MAD="bridge"\nBRIDGE="br0"\nGATEWAY="10.0.0.1"\n'
        f'DNS="1.1.1.1"\nNETWORK_MASK="255.255.255.0"\n{extra}'
        f'AR=[TYPE="IP4", IP="10.0.0.10", SIZE="{size}", SEARCH_DOMAIN="example.org"]',
        -1,
    )


def net_used_leases(oned, net: int) -> int:
    return int(parse_xml(oned.admin_xml("one.vn.info", net)).findtext("USED_LEASES"))


def make_image(one, name="img", type_="OS", extra=""):
    return one.image.allocate(
        f'NAME="{name}"\nSOURCE="/var/tmp/{name}"\nSIZE="10"\nFORMAT="raw"\nTYPE="{type_}"\n{extra}', 1
    )


# ---------------------------------------------------------------------------------------
# Allocation


def test_allocate_minimal_vm(oned, one):
    vid = one.vm.allocate(MINIMAL)
    assert isinstance(vid, int) and vid >= 0
    vm = one.vm.info(vid)
    assert vm.ID == vid
    assert vm.NAME == f"one-{vid}"
    assert (vm.STATE, vm.LCM_STATE, vm.PREV_STATE, vm.ETIME) == (1, 0, 1, 0)
    assert vm.UNAME == "oneadmin" and vm.GNAME == "oneadmin"
    assert vm.STIME > 0 and vm.DEPLOY_ID in ("", None)
    t = vm.TEMPLATE
    assert t["CPU"] == "0.5" and t["MEMORY"] == "128" and t["VMID"] == str(vid)
    assert "TM_MAD_SYSTEM" in t
    assert t["AUTOMATIC_REQUIREMENTS"] == "!(PIN_POLICY = PINNED)"
    body = vm_xml(oned, vid)
    xsd_check(body)
    root = parse_xml(body)
    assert root.find("HISTORY_RECORDS") is not None and len(root.find("HISTORY_RECORDS")) == 0
    perms = root.find("PERMISSIONS")
    assert [perms.findtext(p) for p in ("OWNER_U", "OWNER_M", "OWNER_A", "OTHER_U")] == ["1", "1", "0", "0"]


def test_allocate_raw_answer_and_names(oned, one):
    r = oned.admin_call("one.vm.allocate", 'NAME="web"\n' + MINIMAL)
    assert r == [True, r[1], 0] and isinstance(r[1], int)
    # VM names need not be unique.
    r2 = oned.admin_call("one.vm.allocate", 'NAME="web"\n' + MINIMAL, False)
    assert r2[0] is True and r2[1] != r[1]
    assert one.vm.info(r[1]).NAME == "web" and one.vm.info(r2[1]).NAME == "web"


def test_allocate_on_hold(oned, one):
    held = one.vm.allocate(MINIMAL, True)
    vm = one.vm.info(held)
    assert vm.STATE == 2 and vm.TEMPLATE["SUBMIT_ON_HOLD"] == "YES"
    submit = one.vm.allocate(MINIMAL + 'SUBMIT_ON_HOLD="yes"\n')
    assert one.vm.info(submit).STATE == 2
    pending = one.vm.allocate(MINIMAL, False)
    assert one.vm.info(pending).STATE == 1


def test_allocate_moves_known_sections_and_keeps_user_attributes(oned, one):
    vid = one.vm.allocate(
        MINIMAL
        + 'VCPU="2"\nOS=[ARCH="x86_64", BOOT="disk0"]\nFEATURES=[ACPI="yes"]\n'
        + 'GRAPHICS=[TYPE="vnc", LISTEN="0.0.0.0"]\nINPUT=[TYPE="tablet", BUS="usb"]\n'
        + 'RAW=[TYPE="kvm", DATA="<a/>"]\nSCHED_REQUIREMENTS="ID != $VMID"\n'
        + 'SCHED_RANK="FREE_CPU"\nLABELS="prod"\nDESCRIPTION="web server"\nTEMPLATE_ID="99"\n'
    )
    vm = one.vm.info(vid)
    t, u = vm.TEMPLATE, vm.USER_TEMPLATE
    for name in ("VCPU", "OS", "FEATURES", "GRAPHICS", "INPUT", "RAW", "TEMPLATE_ID"):
        assert name in t, name
        assert name not in u, name
    assert t["VCPU"] == "2" and t["TEMPLATE_ID"] == "99"
    assert t["GRAPHICS"]["TYPE"] == "vnc"
    assert u["SCHED_REQUIREMENTS"] == f"ID != {vid}"
    assert u["SCHED_RANK"] == "FREE_CPU" and u["LABELS"] == "prod" and u["DESCRIPTION"] == "web server"
    xsd_check(vm_xml(oned, vid))


@pytest.mark.parametrize(
    "tmpl, message",
    [
        ('CPU="1"\n', "MEMORY attribute must be a positive integer value."),
        ('CPU="1"\nMEMORY="0"\n', "MEMORY attribute must be a positive integer value."),
        ('CPU="1"\nMEMORY="1.5"\n', "MEMORY attribute must be a positive integer value."),
        ('MEMORY="64"\n', "CPU attribute must be a positive float or integer value."),
        ('CPU="-1"\nMEMORY="64"\n', "CPU attribute must be a positive float or integer value."),
        ('CPU="abc"\nMEMORY="64"\n', "CPU attribute must be a positive float or integer value."),
        ('CPU="1"\nMEMORY="64"\nVCPU="0"\n', "VCPU attribute must be a positive integer value."),
        ('CPU="1"\nMEMORY="64"\nVCPU="two"\n', "VCPU attribute must be a positive integer value."),
        (MINIMAL + 'DISK=[TYPE="ext9", SIZE="10"]\n', "DISK 0: Unknown disk type EXT9"),
        (MINIMAL + 'DISK=[TYPE="fs"]\n', "DISK 0: SIZE attribute must be a positive integer value."),
        (MINIMAL + 'DISK=[TYPE="fs", SIZE="10"]\nDISK=[TYPE="swap", SIZE="-3"]\n',
         "DISK 1: SIZE attribute must be a positive integer value."),
        (MINIMAL + 'DISK=[TYPE="fs", SIZE="1", TARGET="vda"]\nDISK=[TYPE="fs", SIZE="1", TARGET="vda"]\n',
         "Two disks have defined the same target vda"),
        (MINIMAL + 'GRAPHICS=[TYPE="vnc", PORT="70000"]\n', "Wrong PORT number in GRAPHICS attribute"),
        (MINIMAL + 'VIDEO=[TYPE="fancy"]\n', "Invalid video TYPE"),
        (MINIMAL + 'CONTEXT=[A="cost 5$"]\n', "expected a variable name after '$'"),
        (MINIMAL + 'CONTEXT=[TOKEN="YES"]\n', "TOKEN set, but onegate endpoint was not defined"),
        (MINIMAL + 'NIC_ALIAS=[NETWORK_ID="0", PARENT="NIC7"]\n', "NIC named NIC7 not found for alias"),
        (MINIMAL + 'DISK="x"\n', "Wrong format for DISK"),
        (MINIMAL + 'SCHED_REQUIREMENTS="A"\nSCHED_REQUIREMENTS="B"\n',
         "Only one SCHED_REQUIREMENTS attribute can be defined."),
    ],
)
def test_allocate_refuses_bad_templates(oned, one, tmpl, message):
    r = oned.admin_call("one.vm.allocate", tmpl)
    fails(r, 0x2000, "[one.vm.allocate] Error allocating a new virtual machine. ")
    assert message in r[1], r
    with pytest.raises(pyone.OneException, match="Error allocating a new virtual machine"):
        one.vm.allocate(tmpl)
    # Nothing was stored.
    assert pool_ids(oned.admin_xml("one.vmpool.info", -2, -1, -1, -2)) == []


def test_allocate_template_syntax_error_is_readable(oned):
    r = oned.admin_call("one.vm.allocate", 'CPU="1\nMEMORY=[')
    assert r[0] is False and r[2] == 0x1000, r
    assert r[1].startswith("[one.vm.allocate] Error parsing template"), r


def test_allocate_xml_template_from_pyone_dict(oned, one):
    vid = one.vm.allocate({"TEMPLATE": {"NAME": "fromdict", "CPU": "1", "MEMORY": "64",
                                        "CONTEXT": {"HOST": "$NAME", "ID": "$VMID"}}})
    vm = one.vm.info(vid)
    assert vm.NAME == "fromdict"
    assert vm.TEMPLATE["CONTEXT"]["HOST"] == "fromdict"
    assert vm.TEMPLATE["CONTEXT"]["ID"] == str(vid)


def test_volatile_disks_and_targets(oned, one):
    vid = one.vm.allocate(
        MINIMAL
        + 'DISK=[TYPE="fs", SIZE="100"]\nDISK=[TYPE="swap", SIZE="50", DEV_PREFIX="vd"]\n'
        + 'DISK=[TYPE="FS", SIZE="10", TARGET="sda"]\nCONTEXT=[SET_HOSTNAME="$NAME"]\n'
    )
    disks = vm_root(oned, vid).findall("TEMPLATE/DISK")
    got = [{c.tag: c.text or "" for c in d} for d in disks]
    assert [d["DISK_ID"] for d in got] == ["0", "1", "2"]
    assert [d["TARGET"] for d in got] == ["sdb", "vda", "sda"]
    assert [d["TYPE"] for d in got] == ["fs", "swap", "fs"]
    assert all(d["FORMAT"] == "raw" for d in got)
    assert got[0]["DEV_PREFIX"] == "sd" and got[1]["DEV_PREFIX"] == "vd"
    ctx = one.vm.info(vid).TEMPLATE["CONTEXT"]
    assert ctx["DISK_ID"] == "3" and ctx["TARGET"] == "hda"
    assert ctx["SET_HOSTNAME"] == f"one-{vid}"
    xsd_check(vm_xml(oned, vid))


def test_image_disks(oned, one):
    os_img = make_image(one, "os")
    cd = make_image(one, "cd", "CDROM")
    vid = one.vm.allocate(
        MINIMAL + f'DISK=[IMAGE_ID="{cd}"]\nDISK=[TYPE="fs", SIZE="5"]\nDISK=[IMAGE="os"]\n'
        + 'CONTEXT=[DISTRO="$IMAGE[DISTRO, IMAGE=\\"os\\"]"]\n'
    )
    root = vm_root(oned, vid)
    disks = [{c.tag: c.text or "" for c in d} for d in root.findall("TEMPLATE/DISK")]
    assert [d["DISK_ID"] for d in disks] == ["0", "1", "2"]
    assert disks[2]["IMAGE_ID"] == str(os_img) and disks[2]["TARGET"] == "sda"
    assert disks[0]["IMAGE_ID"] == str(cd) and disks[0]["TARGET"] == "hda"
    assert disks[1]["TARGET"] == "sdb"
    ctx = {c.tag: c.text or "" for c in root.find("TEMPLATE/CONTEXT")}
    assert ctx["TARGET"] == "hdb" and ctx["DISK_ID"] == "3"
    assert "(CLUSTER_ID = 0)" in root.findtext("TEMPLATE/AUTOMATIC_REQUIREMENTS")
    assert root.findtext("TEMPLATE/AUTOMATIC_DS_REQUIREMENTS") == '("CLUSTERS/ID" @> 0)'
    assert one.image.info(os_img).STATE == 2  # USED
    xsd_check(vm_xml(oned, vid))
    one.vm.action("terminate", vid)
    assert one.image.info(os_img).STATE == 1  # READY again
    assert one.image.info(cd).RUNNING_VMS == 0


def test_missing_image_leaves_nothing_behind(oned, one):
    net = make_net(one)
    r = oned.admin_call("one.vm.allocate", MINIMAL + f'NIC=[NETWORK_ID="{net}"]\nDISK=[IMAGE_ID="77"]\n')
    assert r[0] is False, r
    # The lease taken for the NIC vanished with the failed allocation.
    assert net_used_leases(oned, net) == 0
    assert pool_ids(oned.admin_xml("one.vmpool.info", -2, -1, -1, -2)) == []


# ---------------------------------------------------------------------------------------
# NICs and network context


def test_nics_leases_and_network_context(oned, one):
    net = make_net(one)
    vid = one.vm.allocate(
        MINIMAL
        + f'NIC=[NETWORK_ID="{net}"]\nNIC=[NETWORK="net", NAME="mgmt"]\n'
        + 'NIC_ALIAS=[NETWORK_ID="%d", PARENT="NIC0"]\n' % net
        + 'CONTEXT=[NETWORK="YES", MY_IP="$NIC[IP, NAME=\\"mgmt\\"]", '
        + f'GW="$NETWORK[GATEWAY, NETWORK_ID={net}]", SD="$NETWORK[SEARCH_DOMAIN, NIC_ID=0]"]\n'
    )
    root = vm_root(oned, vid)
    nics = [{c.tag: c.text or "" for c in n} for n in root.findall("TEMPLATE/NIC")]
    assert [n["NIC_ID"] for n in nics] == ["0", "1"]
    assert [n["NAME"] for n in nics] == ["NIC0", "mgmt"]
    assert [n["TARGET"] for n in nics] == [f"one-{vid}-0", f"one-{vid}-1"]
    assert nics[0]["IP"] == "10.0.0.10" and nics[1]["IP"] == "10.0.0.11"
    assert nics[0]["ALIAS_IDS"] == "2"
    alias = {c.tag: c.text or "" for c in root.find("TEMPLATE/NIC_ALIAS")}
    assert (alias["NIC_ID"], alias["PARENT_ID"], alias["ALIAS_ID"], alias["NAME"]) == ("2", "0", "0", "NIC0_ALIAS0")
    ctx = {c.tag: c.text or "" for c in root.find("TEMPLATE/CONTEXT")}
    assert ctx["ETH0_IP"] == "10.0.0.10" and ctx["ETH1_IP"] == "10.0.0.11"
    assert ctx["ETH0_MAC"] == nics[0]["MAC"]
    # NIC, then address range, then network template.
    assert ctx["ETH0_GATEWAY"] == "10.0.0.1" and ctx["ETH0_DNS"] == "1.1.1.1"
    assert ctx["ETH0_MASK"] == "255.255.255.0"
    assert ctx["ETH0_SEARCH_DOMAIN"] == "example.org"
    assert ctx["ETH0_MTU"] == "" and ctx["ETH0_IP6"] == ""
    assert ctx["ETH0_ALIAS0_IP"] == alias["IP"]
    assert ctx["MY_IP"] == "10.0.0.11" and ctx["GW"] == "10.0.0.1" and ctx["SD"] == "example.org"
    assert root.findtext("TEMPLATE/AUTOMATIC_NIC_REQUIREMENTS") == '("CLUSTERS/ID" @> 0)'
    assert net_used_leases(oned, net) == 3
    xsd_check(vm_xml(oned, vid))
    # The short body lists the NICs' addresses.
    short = parse_xml(oned.admin_xml("one.vmpool.info", -2, -1, -1, -1))
    assert [n.findtext("IP") for n in short.findall("VM/TEMPLATE/NIC")] == ["10.0.0.10", "10.0.0.11"]
    one.vm.action("terminate", vid)
    assert net_used_leases(oned, net) == 0


def test_auto_nic_waits_for_the_scheduler(oned, one):
    vid = one.vm.allocate(MINIMAL + 'NIC=[NETWORK_MODE="auto"]\nCONTEXT=[NETWORK="YES"]\n')
    root = vm_root(oned, vid)
    nic = {c.tag: c.text or "" for c in root.find("TEMPLATE/NIC")}
    assert nic["NIC_ID"] == "0" and nic["NAME"] == "NIC0" and "IP" not in nic
    ctx = {c.tag for c in root.find("TEMPLATE/CONTEXT")}
    assert "ETH0_IP" not in ctx


def test_user_variables_in_context(oned, one, make_user):
    alice = make_user("alice", "pw")
    one.user.update(alice.uid, 'SSH_PUBLIC_KEY="ssh-ed25519 AAAA alice"', 1)
    vid = alice.vm.allocate(
        MINIMAL + 'ROLE="web"\nCONTEXT=[SSH_PUBLIC_KEY="$USER[SSH_PUBLIC_KEY]", '
        'OWNER="$UNAME:$UID:$GNAME:$GID", ROLE="$ROLE", MEM="$MEMORY", LITERAL="\\$HOME", '
        'TPL="$TEMPLATE"]\n'
    )
    ctx = alice.vm.info(vid).TEMPLATE["CONTEXT"]
    assert ctx["SSH_PUBLIC_KEY"] == "ssh-ed25519 AAAA alice"
    assert ctx["OWNER"] == f"alice:{alice.uid}:users:1"
    assert ctx["ROLE"] == "web" and ctx["MEM"] == "128"
    assert ctx["LITERAL"] == "\\$HOME"
    assert base64.b64decode(ctx["TPL"]).decode().startswith(f"<VM><ID>{vid}</ID>")


# ---------------------------------------------------------------------------------------
# Quotas


def test_quota_charged_refused_and_released(oned, one, make_user):
    bob = make_user("bob", "pw")
    one.user.quota(bob.uid, 'VM=[VMS="1", CPU="-2", MEMORY="-2", SYSTEM_DISK_SIZE="-2"]')
    vid = bob.vm.allocate(MINIMAL + 'DISK=[TYPE="fs", SIZE="20"]\n')
    q = parse_xml(oned.admin_xml("one.user.info", bob.uid)).find("VM_QUOTA/VM")
    assert q.findtext("VMS_USED") == "1"
    assert float(q.findtext("CPU_USED")) == 0.5 and q.findtext("MEMORY_USED") == "128"
    assert q.findtext("SYSTEM_DISK_SIZE_USED") == "20"
    with pytest.raises(pyone.OneAuthorizationException):
        bob.vm.allocate(MINIMAL)
    assert len(pool_ids(oned.admin_xml("one.vmpool.info", -2, -1, -1, -2))) == 1
    bob.vm.action("terminate", vid)
    q = parse_xml(oned.admin_xml("one.user.info", bob.uid)).find("VM_QUOTA/VM")
    assert q.findtext("VMS_USED") == "0" and q.findtext("MEMORY_USED") == "0"
    bob.vm.allocate(MINIMAL)


def test_chown_moves_quota_usage(oned, one, make_user):
    carol = make_user("carol", "pw")
    dave = make_user("dave", "pw")
    vid = carol.vm.allocate(MINIMAL)
    assert one.vm.chown(vid, dave.uid, -1) == vid
    vm = one.vm.info(vid)
    assert (vm.UID, vm.UNAME) == (dave.uid, "dave")
    quota = lambda uid: parse_xml(oned.admin_xml("one.user.info", uid)).findtext("VM_QUOTA/VM/VMS_USED")
    assert quota(dave.uid) == "1"
    assert quota(carol.uid) in (None, "0")
    # chown to a missing user / group.
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.chown(vid, 99, -1)
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.chown(vid, -1, 99)
    # A user cannot give his VM away.
    with pytest.raises(pyone.OneAuthorizationException):
        dave.vm.chown(vid, carol.uid, -1)


# ---------------------------------------------------------------------------------------
# Actions


def test_hold_and_release(oned, one):
    vid = one.vm.allocate(MINIMAL)
    assert one.vm.action("hold", vid) == vid
    assert one.vm.info(vid).STATE == 2
    with pytest.raises(pyone.OneActionException, match='Error performing action "hold": '
                       "This action is not available for state HOLD"):
        one.vm.action("hold", vid)
    assert one.vm.action("release", vid) == vid
    assert one.vm.info(vid).STATE == 1
    r = oned.admin_call("one.vm.action", "release", vid)
    assert r[:3] == [False, '[one.vm.action] Error performing action "release": '
                     "This action is not available for state PENDING", 0x800]


def test_terminate_pending_and_held_vms(oned, one):
    a = one.vm.allocate(MINIMAL)
    b = one.vm.allocate(MINIMAL, True)
    assert one.vm.action("terminate", a) == a
    assert one.vm.action("terminate-hard", b) == b
    for vid in (a, b):
        vm = one.vm.info(vid)  # DONE VMs stay readable
        assert vm.STATE == 6 and vm.LCM_STATE == 0 and vm.ETIME >= vm.STIME > 0
        xsd_check(vm_xml(oned, vid))
    # Terminating a DONE VM is a no-op success.
    assert oned.admin_call("one.vm.action", "terminate", a) == [True, a, 0]
    with pytest.raises(pyone.OneActionException, match="not available for state DONE"):
        one.vm.action("release", a)


@pytest.mark.parametrize(
    "name",
    ["undeploy", "undeploy-hard", "poweroff", "poweroff-hard", "reboot", "reboot-hard", "suspend",
     "resume", "stop", "resched", "unresched"],
)
def test_other_actions_are_not_available_for_pending_vms(oned, one, name):
    vid = one.vm.allocate(MINIMAL)
    r = oned.admin_call("one.vm.action", name, vid)
    assert r[:3] == [False, f'[one.vm.action] Error performing action "{name}": '
                     "This action is not available for state PENDING", 0x800]
    with pytest.raises(pyone.OneActionException):
        one.vm.action(name, vid)
    assert one.vm.info(vid).STATE == 1


def test_unknown_actions_and_missing_vms(oned, one):
    vid = one.vm.allocate(MINIMAL)
    r = oned.admin_call("one.vm.action", "explode", vid)
    assert r[:3] == [False, '[one.vm.action] Action "explode" is not supported', 0x800]
    r = oned.admin_call("one.vm.action", "delete", vid)
    assert r[:3] == [False, '[one.vm.action] Action "delete" is not supported', 0x800]
    r = oned.admin_call("one.vm.action", "terminate", 999)
    assert r[:3] == [False, "[one.vm.action] Error getting virtual machine [999].", 0x400]
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.action("hold", 999)
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.info(999)


def test_methods_of_later_issues_are_not_registered_yet(oned):
    # No pretending: backups and PCI passthrough come with their own issues.
    for method in ("one.vm.backup", "one.vm.attachpci"):
        with pytest.raises(xmlrpc.client.Fault):
            oned.admin_call(method, 0, 0)


# ---------------------------------------------------------------------------------------
# Authorization


def test_other_users_vms_are_off_limits(oned, one, make_user):
    erin = make_user("erin", "pw")
    frank = make_user("frank", "pw")
    vid = erin.vm.allocate(MINIMAL)
    assert erin.vm.info(vid).UNAME == "erin"
    for call in (
        lambda: frank.vm.info(vid),
        lambda: frank.vm.action("terminate", vid),
        lambda: frank.vm.action("hold", vid),
        lambda: frank.vm.update(vid, 'A="b"', 1),
        lambda: frank.vm.rename(vid, "mine"),
        lambda: frank.vm.chmod(vid, 1, 1, 1, 1, 1, 1, 1, 1, 1),
        lambda: frank.vm.lock(vid, 1),
    ):
        with pytest.raises(pyone.OneAuthorizationException):
            call()
    r = frank.vmpool.info(-2, -1, -1, -1)
    assert not getattr(r, "VM", [])
    # The owner may manage but not administer (resched is an ADMIN operation).
    assert erin.vm.action("hold", vid) == vid
    with pytest.raises(pyone.OneAuthorizationException):
        erin.vm.action("resched", vid)
    # oneadmin may do anything.
    assert one.vm.action("release", vid) == vid
    # Sharing with the group lets group members see it.
    assert erin.vm.chmod(vid, -1, -1, -1, 1, 0, 0, -1, -1, -1) == vid
    assert frank.vm.info(vid).ID == vid
    assert [v.ID for v in frank.vmpool.info(-2, -1, -1, -1).VM] == [vid]


def test_restricted_attributes_for_users(oned, one, make_user):
    gina = make_user("gina", "pw")
    r = oned.raw_call("one.vm.allocate", gina.session, MINIMAL + 'EMULATOR="/bin/evil"\n')
    assert r[:3] == [False, f"[one.vm.allocate] User [{gina.uid}] : VM Template includes a restricted attribute EMULATOR.", 0x200]
    with pytest.raises(pyone.OneAuthorizationException, match="restricted attribute NIC/MAC"):
        gina.vm.allocate(MINIMAL + 'NIC=[NETWORK_ID="0", MAC="02:00:00:00:00:01"]\n')
    vid = gina.vm.allocate(MINIMAL)
    with pytest.raises(pyone.OneAuthorizationException, match="restricted attribute USER_PRIORITY"):
        gina.vm.update(vid, 'USER_PRIORITY="100"', 1)
    # oneadmin may set them.
    assert one.vm.allocate(MINIMAL + 'EMULATOR="/usr/bin/qemu-kvm"\n') >= 0


def test_create_needs_an_acl(oned, one, make_user):
    # Users outside the default "users" group have no CREATE VM rule.
    gid = one.group.allocate("nocreate")
    acls = parse_xml(oned.admin_xml("one.acl.info"))
    for rule in acls.findall("ACL"):
        if rule.findtext("STRING", "").startswith(f"@{gid} "):
            one.acl.delrule(int(rule.findtext("ID")))
    hank = make_user("hank", "pw", [gid])
    with pytest.raises(pyone.OneAuthorizationException, match="CREATE VM"):
        hank.vm.allocate(MINIMAL)


# ---------------------------------------------------------------------------------------
# update, rename, chmod, lock


def test_update_user_template(oned, one):
    vid = one.vm.allocate(MINIMAL + 'LABELS="a"\nKEEP="x"\n')
    assert one.vm.update(vid, 'LABELS="b"\nNEW="1"', 1) == vid
    u = one.vm.info(vid).USER_TEMPLATE
    assert (u["LABELS"], u["KEEP"], u["NEW"]) == ("b", "x", "1")
    assert one.vm.update(vid, 'ONLY="this"', 0) == vid
    u = one.vm.info(vid).USER_TEMPLATE
    assert dict(u) == {"ONLY": "this"}
    assert one.vm.info(vid).TEMPLATE["MEMORY"] == "128"  # TEMPLATE untouched
    with pytest.raises(pyone.OneApiException):
        one.vm.update(vid, 'A="1"', 7)
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.update(999, 'A="1"', 0)


def test_rename(oned, one):
    a = one.vm.allocate('NAME="a"\n' + MINIMAL)
    b = one.vm.allocate('NAME="b"\n' + MINIMAL)
    assert one.vm.rename(b, "a") == b  # not unique
    assert one.vm.info(b).NAME == "a"
    with pytest.raises(pyone.OneActionException, match="NAME"):
        one.vm.rename(a, "")
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.rename(999, "x")


def test_chmod_and_lock(oned, one):
    vid = one.vm.allocate(MINIMAL)
    assert one.vm.chmod(vid, 1, 1, 1, 1, 0, 0, 1, 0, 0) == vid
    perms = vm_root(oned, vid).find("PERMISSIONS")
    assert [perms.findtext(p) for p in ("OWNER_A", "GROUP_U", "OTHER_U", "OTHER_M")] == ["1", "1", "1", "0"]
    assert one.vm.lock(vid, 2) == vid
    body = vm_xml(oned, vid)
    assert parse_xml(body).findtext("LOCK/LOCKED") == "2"
    xsd_check(body)
    short = oned.admin_xml("one.vmpool.info", -2, -1, -1, -1)
    assert "<LOCK><LOCKED>2</LOCKED></LOCK>" in short
    xsd_check(short, "vm_pool.xsd")
    xsd_check(oned.admin_xml("one.vmpool.infoextended", -2, -1, -1, -1), "vm_pool_extended.xsd")
    r = oned.admin_call("one.vm.action", "terminate", vid)
    # oneadmin owns the lock, but MANAGE operations are blocked by a MANAGE lock.
    assert r[0] is False and r[2] == 0x8000, r
    assert one.vm.unlock(vid) == vid
    assert one.vm.action("terminate", vid) == vid


# ---------------------------------------------------------------------------------------
# Pool listings


def test_pool_info_short_bodies_validate(oned, one):
    net = make_net(one)
    one.vm.allocate(MINIMAL + f'NIC=[NETWORK_ID="{net}"]\nDISK=[TYPE="fs", SIZE="1"]\n'
                    'GRAPHICS=[TYPE="vnc"]\nLABELS="x"\nSCHED_MESSAGE="waiting"\n')
    one.vm.allocate(MINIMAL, True)
    body = oned.admin_xml("one.vmpool.info", -2, -1, -1, -1)
    xsd_check(body, "vm_pool.xsd")
    root = parse_xml(body)
    # Newest first (OpenNebula's default API_LIST_ORDER): VM 0 comes last.
    first = root.findall("VM")[-1]
    assert first.findtext("ID") == "0"
    assert [c.tag for c in first] == [
        "ID", "UID", "GID", "UNAME", "GNAME", "NAME", "LAST_POLL", "STATE", "LCM_STATE", "RESCHED",
        "STIME", "ETIME", "DEPLOY_ID", "TEMPLATE", "MONITORING", "USER_TEMPLATE", "HISTORY_RECORDS",
    ]
    assert [c.tag for c in first.find("USER_TEMPLATE")] == ["LABELS", "SCHED_MESSAGE"]
    pool = one.vmpool.info(-2, -1, -1, -1)
    assert [v.ID for v in pool.VM] == [1, 0]
    ext = oned.admin_xml("one.vmpool.infoextended", -2, -1, -1, -1)
    xsd_check(ext, "vm_pool_extended.xsd")
    assert parse_xml(ext).find("VM/TEMPLATE/CONTEXT") is None
    assert parse_xml(ext).find("VM/PERMISSIONS") is not None
    assert [v.ID for v in one.vmpool.infoextended(-2, -1, -1, -1).VM] == [1, 0]
    empty = oned.admin_xml("one.vmpool.info", -2, 50, 60, -1)
    assert parse_xml(empty).findall("VM") == []
    xsd_check(empty, "vm_pool.xsd")


def test_pool_state_filter(oned, one):
    pending = one.vm.allocate(MINIMAL)
    held = one.vm.allocate(MINIMAL, True)
    done = one.vm.allocate(MINIMAL)
    one.vm.action("terminate", done)
    ids = lambda state: pool_ids(oned.admin_xml("one.vmpool.info", -2, -1, -1, state))
    assert ids(-2) == [done, held, pending]
    assert ids(-1) == [held, pending]
    assert ids(1) == [pending] and ids(2) == [held] and ids(6) == [done] and ids(3) == []
    for bad in (-3, 12, 100):
        r = oned.admin_call("one.vmpool.info", -2, -1, -1, bad)
        assert r[:3] == [False, f"[one.vmpool.info] Incorrect state filter {bad}", 0x1000], r
    r = oned.admin_call("one.vmpool.info", -5, -1, -1, -1)
    assert r[0] is False and r[2] == 0x1000
    # Extended listings filter alike.
    assert pool_ids(oned.admin_xml("one.vmpool.infoextended", -2, -1, -1, -1)) == [held, pending]


def test_pool_paging_and_ranges(oned, one):
    vids = [one.vm.allocate(MINIMAL) for _ in range(7)]
    newest = vids[::-1]
    page = lambda start, end: pool_ids(oned.admin_xml("one.vmpool.info", -2, start, end, -1, ""))
    # Newest first, as OpenNebula (API_LIST_ORDER DESC): a page (end < -1) is offset `start`
    # and size `-end` counted in that order.
    assert page(-1, -1) == newest
    assert page(0, -3) == newest[0:3]
    assert page(3, -3) == newest[3:6]
    assert page(6, -3) == newest[6:]
    assert page(9, -3) == []
    # Id ranges select by id and list in the same order.
    assert page(2, 4) == vids[4:1:-1]
    assert page(5, -1) == [vids[6], vids[5]]
    # Paging counts VMs that pass the state filter: the newest, terminated, is not counted.
    one.vm.action("terminate", vids[6])
    assert page(0, -2) == newest[1:3]
    assert page(1, -2) == newest[2:4]


def test_pool_filters_by_owner(oned, one, make_user):
    ivan = make_user("ivan", "pw")
    mine = ivan.vm.allocate(MINIMAL)
    admins = one.vm.allocate(MINIMAL)
    assert pool_ids(oned.admin_xml("one.vmpool.info", -3, -1, -1, -1)) == [admins]
    assert pool_ids(oned.admin_xml("one.vmpool.info", ivan.uid, -1, -1, -1)) == [mine]
    assert [v.ID for v in ivan.vmpool.info(-3, -1, -1, -1).VM] == [mine]
    assert [v.ID for v in ivan.vmpool.info(-2, -1, -1, -1).VM] == [mine]


def test_pool_search_query(oned, one):
    a = one.vm.allocate('NAME="web-1"\nLABELS="prod"\n' + MINIMAL)
    b = one.vm.allocate('NAME="db-1"\nLABELS="test"\n' + MINIMAL)
    ids = lambda q: pool_ids(oned.admin_xml("one.vmpool.info", -2, -1, -1, -1, q))
    assert ids("") == [b, a]
    assert ids("VM.NAME=web") == [a]
    assert ids("VM.USER_TEMPLATE.LABELS=test") == [b]
    assert ids("LABELS=prod&VM.NAME=db") == []
    assert ids("db-1") == [b]
    r = oned.admin_call("one.vmpool.info", -2, -1, -1, -1, "VM..NAME=x")
    assert r[0] is False and r[2] == 0x1000


def test_pool_infoset(oned, one):
    vids = [one.vm.allocate(MINIMAL) for _ in range(4)]
    short = oned.admin_xml("one.vmpool.infoset", f"{vids[3]},{vids[1]},999", False)
    assert pool_ids(short) == [vids[3], vids[1]]
    xsd_check(short, "vm_pool.xsd")
    ext = oned.admin_xml("one.vmpool.infoset", f"{vids[0]}", True)
    assert pool_ids(ext) == [vids[0]]
    xsd_check(ext, "vm_pool_extended.xsd")
    assert oned.admin_xml("one.vmpool.infoset", "", False) == "<VM_POOL></VM_POOL>"
    r = oned.admin_call("one.vmpool.infoset", "1,x", False)
    assert r[0] is False and r[2] == 0x1000


# ---------------------------------------------------------------------------------------
# Templates and persistence


def test_instantiate_from_template(oned, one):
    r = oned.admin_call("one.template.allocate", 'NAME="tpl"\n' + MINIMAL + 'CONTEXT=[HOST="$NAME"]\n')
    if r[0] is not True:
        pytest.skip(f"one.template.allocate not available yet: {r!r}")
    tid = r[1]
    try:
        vid = one.template.instantiate(tid, "", False, "", False)
    except xmlrpc.client.Fault as e:
        pytest.skip(f"one.template.instantiate not registered yet: {e}")
    except pyone.OneException as e:
        if "unknown method" in str(e).lower() or "not found" in str(e).lower():
            pytest.skip(f"one.template.instantiate not registered yet: {e}")
        raise
    vm = one.vm.info(vid)
    assert vm.NAME == f"tpl-{vid}"
    assert vm.TEMPLATE["TEMPLATE_ID"] == str(tid)
    assert vm.TEMPLATE["CONTEXT"]["HOST"] == f"tpl-{vid}"
    named = one.template.instantiate(tid, "given", True, "", False)
    vm = one.vm.info(named)
    assert vm.NAME == "given" and vm.STATE == 2
    xsd_check(vm_xml(oned, named))


def test_vms_survive_a_restart(oned, one):
    vid = one.vm.allocate('NAME="durable"\n' + MINIMAL + 'CONTEXT=[A="$NAME"]\n')
    done = one.vm.allocate(MINIMAL)
    one.vm.action("terminate", done)
    before = vm_xml(oned, vid)
    oned.restart()
    assert vm_xml(oned, vid) == before
    assert oned.client().vm.info(done).STATE == 6
    # Ids are not reused.
    assert oned.client().vm.allocate(MINIMAL) == done + 1
