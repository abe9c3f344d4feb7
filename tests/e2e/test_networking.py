"""Virtual networks on REAL hosts (issue 10, section Tests): two namespace hosts with their own
libvirtd and sshd (tests/hostenv/netns-host.sh --libvirtd) on one link, oned driving them over
SSH, and real guests (tests/guest/build-guest.sh with tests/guest/net-init.sh) that configure
themselves from the context CD and report on their serial console.

    host A: VM a (vx1, 192.168.N.11)           host B: VM b (vx1, .12), VM c (vx2, .101)
              \\_____________ VXLAN vx1 over eth0 (multicast) ______________/

* every guest brings eth0 up from its context, prints its address, hostname and the SHA-256
  of the SSH key it applied, and pings its peers every second: a <-> b succeed (one L2
  segment across the hosts), c (another VXLAN network, same subnet) reaches neither;
* vx1's NICs carry security group `g` (group 0 removed from the network): its rules go from
  "allow all" to "all outbound, inbound TCP 22" (pings stop) to "+ inbound ICMP" (pings come
  back), with one.secgroup.update only, no VM restart; UPDATED_VMS lists both;
* vx1 filters IP and MAC spoofing: b, told by updateconf (a new context CD, swapped in) to use
  another address, reaches no one, and reaches a again once told to use its own;
* a NIC attached to the running a is seen by the guest with the new context; detached, it is
  gone from guest and context and its lease is free;
* a live migration of c makes vx2's devices and c's rules on the destination first and
  removes them from the source after;
* bridge devices made, reused and removed as NICs come and go (`ip -d link` on the host);
  802.1Q: the real VLAN interface where the host's NETWORK_DRIVERS capability has it, else
  a forced deploy refused and the scheduler's SCHED_MESSAGE, both with the kernel's reason,
  and a SKIP saying so.

The tests share one cloud and its guests and run in order (module scope).
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import time

import pytest

from harness import parse_xml, wait_for, xsd_check
from kvm_cluster_util import NETNS_HOST, RUNNING, VM_DONE, KvmCluster, hostenv_skip_reason
from kvm_util import kvm_env, skip  # noqa: F401  (kvm_env is a fixture)
from sched_harness import Scheduler

pytestmark = pytest.mark.db_independent

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOneRsNetworkTestKeyNotForUse0000000000000 test@one-rs"
START_SCRIPT = "echo started > /tmp/started"


def sh(host, cmd: str, timeout: float = 30) -> str:
    """Runs `cmd` on a namespace host (its network, mounts and hostname)."""
    r = subprocess.run([str(NETNS_HOST), "exec", "--dir", str(host.dir), "sh", "-c", cmd],
                       capture_output=True, text=True, timeout=timeout)
    return r.stdout + r.stderr


class Net:
    """The cloud, its networks, group and guests."""

    def __init__(self, c: KvmCluster):
        self.c = c
        n = int(c.bridge.removeprefix("onekc"))
        self.sub = f"192.168.{n}"
        one = c.one
        one.user.update(0, f'SSH_PUBLIC_KEY="{SSH_KEY}"', 1)
        self.sg = one.secgroup.allocate(
            'NAME="g"\nRULE=[PROTOCOL="ALL", RULE_TYPE="OUTBOUND"]\nRULE=[PROTOCOL="ALL", RULE_TYPE="INBOUND"]')
        common = (f'VN_MAD="vxlan"\nPHYDEV="eth0"\nAUTOMATIC_VLAN_ID="YES"\n'
                  f'GATEWAY="{self.sub}.1"\nDNS="{self.sub}.1"\nSEARCH_DOMAIN="net.test"\n'
                  'NETWORK_MASK="255.255.255.0"\nGUEST_MTU="1450"\n')
        self.vx1 = one.vn.allocate(
            f'NAME="vx1"\n{common}FILTER_IP_SPOOFING="YES"\nFILTER_MAC_SPOOFING="YES"\n'
            f'SECURITY_GROUPS="{self.sg}"\nAR=[TYPE="IP4", IP="{self.sub}.10", SIZE="20"]', -1)
        # Group 0 came with the network; the test's group alone guards vx1.
        one.vn.update(self.vx1, f'SECURITY_GROUPS="{self.sg}"', 1)
        # vx2 keeps group 0 (allows all: its NICs need no group chains); its MAC filter gives
        # c's NIC a chain to follow it across a migration.
        self.vx2 = one.vn.allocate(
            f'NAME="vx2"\n{common}FILTER_MAC_SPOOFING="YES"\n'
            f'AR=[TYPE="IP4", IP="{self.sub}.100", SIZE="10"]', -1)
        self.vni1 = int(c.oned.admin_xml("one.vn.info", self.vx1).split("<VLAN_ID>")[1].split("<")[0])
        self.vni2 = int(c.oned.admin_xml("one.vn.info", self.vx2).split("<VLAN_ID>")[1].split("<")[0])
        # Automatic VLAN ids come after the default bridge name, as in OpenNebula: onebr<id>.
        self.br1, self.br2 = one.vn.info(self.vx1).BRIDGE, one.vn.info(self.vx2).BRIDGE
        self.ip = {"a": f"{self.sub}.11", "b": f"{self.sub}.12", "c": f"{self.sub}.101"}
        peers = {"a": [self.ip["b"]], "b": [self.ip["a"]], "c": [self.ip["a"], self.ip["b"]]}
        nets = {"a": self.vx1, "b": self.vx1, "c": self.vx2}
        hosts = {"a": c.a, "b": c.b, "c": c.b}
        self.vid = {}
        for name in ("a", "b", "c"):
            ctx = (f'CONTEXT=[NETWORK="YES", SSH_PUBLIC_KEY="$USER[SSH_PUBLIC_KEY]", SET_HOSTNAME="$NAME",'
                   f' USERNAME="tester", START_SCRIPT_BASE64="{base64.b64encode(START_SCRIPT.encode()).decode()}",'
                   f' ONE_GUEST_PING="{" ".join(peers[name])}", ONE_GUEST_HEARTBEAT="2"]\n')
            tmpl = (c.guest_template(f"net-{name}") + ctx
                    + f'NIC=[NETWORK_ID="{nets[name]}", IP="{self.ip[name]}"]\n')
            vid = one.vm.allocate(tmpl)
            one.vm.deploy(vid, hosts[name].hid, False, 0)
            self.vid[name] = vid
        for name, vid in self.vid.items():
            c.wait_vm(vid, RUNNING)
        for vid in self.vid.values():
            c.wait_marker(vid, "ONE-GUEST-NET ", timeout=120)

    def log(self, name: str) -> str:
        return self.c.serial_log(self.vid[name])

    def pings(self, name: str, target: str, since: int = 0) -> list[str]:
        """ok / fail of each ping `name` made to `target` after log offset `since`."""
        return re.findall(rf"ONE-GUEST-PING {re.escape(target)} (ok|fail) ", self.log(name)[since:])

    def wait_pings(self, name: str, target: str, want: str, since: int | None = None, n: int = 2,
                   timeout: float = 60):
        """Waits until the last `n` pings from `name` to `target` after `since` are `want`."""
        if since is None:
            since = len(self.log(name))

        def check():
            r = self.pings(name, target, since)
            return len(r) >= n and all(x == want for x in r[-n:])

        wait_for(f"{name} -> {target}: {want}", check, timeout=timeout, step=0.3)

    def sg_sets(self):
        r = parse_xml(self.c.oned.admin_xml("one.secgroup.info", self.sg))
        return {s: sorted(int(i.text) for i in r.findall(f"{s}/ID"))
                for s in ("UPDATED_VMS", "OUTDATED_VMS", "UPDATING_VMS", "ERROR_VMS")}

    def lease_ips(self, vnet: int) -> dict[str, int]:
        r = parse_xml(self.c.oned.admin_xml("one.vn.info", vnet))
        return {le.findtext("IP"): int(le.findtext("VM")) for le in r.findall("AR_POOL/AR/LEASES/LEASE")}


@pytest.fixture(scope="module")
def net(kvm_env, request):
    why = hostenv_skip_reason()
    if why:
        skip(why)
    failed_before = request.session.testsfailed
    c = KvmCluster(kvm_env, "net")
    try:
        t = time.monotonic()
        c.add_hosts()
        n = Net(c)
        print(f"\ntwo hosts and three networked guests up in {time.monotonic() - t:.1f} s")
        yield n
    finally:
        c.close(request.session.testsfailed > failed_before)


def test_guests_configure_themselves_from_the_context_cd(net):
    c = net.c
    leases = net.lease_ips(net.vx1) | net.lease_ips(net.vx2)
    key_sha = hashlib.sha256((SSH_KEY + "\n").encode()).hexdigest()
    for name, vid in net.vid.items():
        m = re.search(r"ONE-GUEST-NET IP=(\S*) HOSTNAME=(\S*) SSH_KEY_SHA256=(\S*)", net.log(name))
        assert m, net.log(name)[-2000:]
        ip, hostname, sha = m.groups()
        assert ip == net.ip[name] and leases[ip] == vid, (ip, leases)
        assert hostname == f"net-{name}"
        assert sha == key_sha, "the guest applied the user's SSH key"
        # The domain's NIC has the leased MAC.
        nic = c.vm_xml(vid).find("TEMPLATE/NIC")
        host = c.a if name == "a" else c.b
        dom = host.virsh("dumpxml", c.domain(vid)).stdout
        assert f"<mac address='{nic.findtext('MAC')}'/>" in dom
        assert f"<target dev='one-{vid}-0'/>" in dom
    xsd_check(c.oned.admin_xml("one.vm.info", net.vid["a"]))

    # context.sh exactly as OpenNebula writes it (its one-context and cloud-init read this):
    # the header, then KEY='value' sorted by key, every ETH0_* variable present.
    vid = net.vid["a"]
    ctx = [l.removeprefix("ONE-GUEST-CONTEXT ") for l in net.log("a").splitlines()
           if l.startswith("ONE-GUEST-CONTEXT ")]
    nic = c.vm_xml(vid).find("TEMPLATE/NIC")
    disk_id = c.vm_xml(vid).findtext("TEMPLATE/CONTEXT/DISK_ID")
    want = {
        "DISK_ID": disk_id,
        "ETH0_DNS": f"{net.sub}.1", "ETH0_EXTERNAL": "", "ETH0_GATEWAY": f"{net.sub}.1",
        "ETH0_IP": net.ip["a"], "ETH0_IP6": "", "ETH0_IP6_GATEWAY": "", "ETH0_IP6_METHOD": "",
        "ETH0_IP6_METRIC": "", "ETH0_IP6_PREFIX_LENGTH": "", "ETH0_IP6_ULA": "",
        "ETH0_MAC": nic.findtext("MAC"), "ETH0_MASK": "255.255.255.0", "ETH0_METHOD": "",
        "ETH0_METRIC": "", "ETH0_MTU": "1450", "ETH0_NETWORK": "", "ETH0_ROUTES": "",
        "ETH0_SEARCH_DOMAIN": "net.test", "ETH0_VLAN_ID": str(net.vni1), "ETH0_VROUTER_IP": "",
        "ETH0_VROUTER_IP6": "", "ETH0_VROUTER_MANAGEMENT": "",
        "NETWORK": "YES", "ONE_GUEST_HEARTBEAT": "2", "ONE_GUEST_PING": net.ip["b"],
        "SET_HOSTNAME": "net-a", "SSH_PUBLIC_KEY": SSH_KEY,
        "START_SCRIPT_BASE64": base64.b64encode(START_SCRIPT.encode()).decode(),
        "TARGET": c.vm_xml(vid).findtext("TEMPLATE/CONTEXT/TARGET"), "USERNAME": "tester",
    }
    golden = ["# Context variables generated by OpenNebula"] + [f"{k}='{v}'" for k, v in sorted(want.items())]
    assert ctx == golden, "\n".join(ctx)


def test_vxlan_joins_the_hosts_and_separates_networks(net):
    c = net.c
    net.wait_pings("a", net.ip["b"], "ok", since=0)
    net.wait_pings("b", net.ip["a"], "ok", since=0)
    since = len(net.log("c"))
    net.wait_pings("c", net.ip["a"], "fail", since=since, n=3)
    assert "ok" not in net.pings("c", net.ip["a"], since) + net.pings("c", net.ip["b"], since)
    # The devices, as OpenNebula's vxlan driver makes them.
    for h in (c.a, c.b):
        dev = sh(h, f"ip -d link show dev eth0.{net.vni1}")
        assert f"vxlan id {net.vni1} group 239.0.{net.vni1 // 256}.{net.vni1 % 256}" in dev, dev
        assert "mtu 1450" in dev and f"master {net.br1}" in dev, dev
        br = sh(h, f"ip -d link show dev {net.br1}")
        assert "bridge" in br and "alias one-rs-vnm" in br, br
    assert "does not exist" in sh(c.a, f"ip link show dev eth0.{net.vni2}"), "vx2 only where its VMs are"
    assert f"master {net.br1}" in sh(c.a, f"ip link show dev one-{net.vid['a']}-0")


def test_security_group_update_reaches_running_guests(net):
    c, one = net.c, net.c.one
    a, b = net.vid["a"], net.vid["b"]
    assert net.sg_sets()["UPDATED_VMS"] == sorted([a, b])
    boots = {n: net.log(n).count("ONE-GUEST-BOOT") for n in ("a", "b")}
    one.secgroup.update(net.sg, 'RULE=[PROTOCOL="ALL", RULE_TYPE="OUTBOUND"]\n'
                                'RULE=[PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="22"]', 0)
    since_a, since_b = len(net.log("a")), len(net.log("b"))
    wait_for("both updated", lambda: net.sg_sets()["UPDATED_VMS"] == sorted([a, b]), timeout=30)
    net.wait_pings("a", net.ip["b"], "fail", since=since_a)
    net.wait_pings("b", net.ip["a"], "fail", since=since_b)
    rules = sh(c.a, "nft list table bridge one_rs")
    # The group's rules in a profile chain a's inbound chain jumps to.
    assert f"chain vm{a}_nic0_i" in rules and "tcp dport 22 accept" in rules, rules
    # An inbound ICMP rule: the pings come back (replies pass as replies), no restart.
    one.secgroup.update(net.sg, 'RULE=[PROTOCOL="ALL", RULE_TYPE="OUTBOUND"]\n'
                                'RULE=[PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="22"]\n'
                                'RULE=[PROTOCOL="ICMP", RULE_TYPE="INBOUND"]', 0)
    since_a, since_b = len(net.log("a")), len(net.log("b"))
    net.wait_pings("a", net.ip["b"], "ok", since=since_a)
    net.wait_pings("b", net.ip["a"], "ok", since=since_b)
    wait_for("UPDATED_VMS lists both", lambda: net.sg_sets()["UPDATED_VMS"] == sorted([a, b]))
    assert {n: net.log(n).count("ONE-GUEST-BOOT") for n in ("a", "b")} == boots, "no restart"
    assert c.vm_state(a) == RUNNING and c.vm_state(b) == RUNNING
    xsd_check(c.oned.admin_xml("one.secgroup.info", 0))


def test_a_spoofed_address_reaches_no_one(net):
    one = net.c.one
    b = net.vid["b"]
    spoof = f"{net.sub}.29"
    one.vm.updateconf(b, f'CONTEXT=[ONE_GUEST_SPOOF_IP="{spoof}"]', 1)
    wait_for("the guest read its new context", lambda: f"ONE-GUEST-SPOOF IP={spoof}" in net.log("b"), timeout=60)
    since = len(net.log("b"))
    net.wait_pings("b", net.ip["a"], "fail", since=since, n=3)
    # Its own address again (updateconf once more): it reaches a again.
    one.vm.updateconf(b, 'CONTEXT=[ONE_GUEST_SPOOF_IP=""]', 1)
    since = len(net.log("b"))
    net.wait_pings("b", net.ip["a"], "ok", since=since)
    assert "ONE-GUEST-CONTEXT-UPDATE ONE_GUEST_SPOOF_IP=''" in net.log("b")


def test_nic_hotplug_is_seen_by_the_guest(net):
    c, one = net.c, net.c.one
    a = net.vid["a"]
    one.vm.attachnic(a, f'NIC=[NETWORK_ID="{net.vx1}", IP="{net.sub}.21"]')
    c.wait_vm(a, RUNNING)
    nic = [n for n in c.vm_xml(a).findall("TEMPLATE/NIC") if n.findtext("NIC_ID") == "1"][0]
    mac = nic.findtext("MAC")
    assert net.lease_ips(net.vx1).get(f"{net.sub}.21") == a
    wait_for("the guest configured its new NIC from the new context",
             lambda: re.search(rf"ONE-GUEST-NICS .*={re.escape(mac)}/{re.escape(net.sub)}\.21 ", net.log("a")),
             timeout=60)
    assert f"ETH1_IP='{net.sub}.21'" in net.log("a")
    one.vm.detachnic(a, 1)
    c.wait_vm(a, RUNNING)

    def guest_nics():
        lines = [l for l in net.log("a").splitlines() if l.startswith("ONE-GUEST-NICS")]
        return re.findall(r" (\w+)=[0-9a-f:]+/", lines[-1]) if lines else []

    def last_context():
        lines = [l.removeprefix("ONE-GUEST-CONTEXT-UPDATE ") for l in net.log("a").splitlines()
                 if l.startswith("ONE-GUEST-CONTEXT-UPDATE ")]
        start = max(i for i, l in enumerate(lines) if l.startswith("# Context"))
        return lines[start:]

    wait_for("the NIC is gone in the guest", lambda: guest_nics() == ["eth0"], timeout=60)
    wait_for("the guest read the context without it",
             lambda: not any(l.startswith("ETH1_") for l in last_context()), timeout=60)
    assert any(l.startswith("ETH0_IP=") for l in last_context())
    assert f"{net.sub}.21" not in net.lease_ips(net.vx1), "the lease is free again"
    assert "ETH1_IP" not in c.oned.admin_xml("one.vm.info", a)


def test_live_migration_takes_the_network_and_rules_along(net):
    c, one = net.c, net.c.one
    vid = net.vid["c"]
    assert "does not exist" in sh(c.a, f"ip link show dev eth0.{net.vni2}")
    alive = net.log("c").count("ONE-GUEST-ALIVE")
    one.vm.migrate(vid, c.a.hid, True, False, -1, 0)
    wait_for("RUNNING on A", lambda: c.vm_state(vid) == RUNNING and c.history_hosts(vid)[-1] == c.a.hid,
             timeout=120)
    assert f"vxlan id {net.vni2}" in sh(c.a, f"ip -d link show dev eth0.{net.vni2}")
    assert f"vm{vid}_nic0_o" in sh(c.a, "nft list table bridge one_rs")
    wait_for("source cleaned", lambda: "does not exist" in sh(c.b, f"ip link show dev eth0.{net.vni2}"))
    assert "does not exist" in sh(c.b, f"ip link show dev {net.br2}")
    assert f"vm{vid}_" not in sh(c.b, "nft list table bridge one_rs")
    wait_for("the guest lives on", lambda: net.log("c").count("ONE-GUEST-ALIVE") > alive + 1, timeout=60)
    since = len(net.log("c"))
    net.wait_pings("c", net.ip["a"], "fail", since=since)


def _deploy_bare(c, name: str, vnet: int, host) -> int:
    """A VM on `vnet` whose guest is not waited for (the host side is what is looked at)."""
    vid = c.one.vm.allocate(c.guest_template(name, memory=64) + f'NIC=[NETWORK_ID="{vnet}"]\n')
    c.one.vm.deploy(vid, host.hid, False, 0)
    return vid


def test_bridges_are_made_reused_and_removed(net):
    c, one = net.c, net.c.one
    br = f"onebrt{c.tag[:4]}"
    vn = one.vn.allocate(f'NAME="plain"\nVN_MAD="bridge"\nBRIDGE="{br}"\nMTU="1400"\n'
                         f'AR=[TYPE="IP4", IP="{net.sub}.200", SIZE="4"]', -1)
    e = _deploy_bare(c, "br-e", vn, c.a)
    c.wait_vm(e, RUNNING)
    link = sh(c.a, f"ip -d link show dev {br}")
    assert "bridge" in link and "mtu 1400" in link and "alias one-rs-vnm" in link, link
    ifindex = link.split(":")[0]
    assert f"master {br}" in sh(c.a, f"ip link show dev one-{e}-0")
    f = _deploy_bare(c, "br-f", vn, c.a)
    c.wait_vm(f, RUNNING)
    assert sh(c.a, f"ip -d link show dev {br}").split(":")[0] == ifindex, "the bridge was reused"
    one.vm.action("terminate-hard", e)
    c.wait_vm(e, VM_DONE)
    assert "alias one-rs-vnm" in sh(c.a, f"ip -d link show dev {br}"), "f still uses it"
    one.vm.action("terminate-hard", f)
    c.wait_vm(f, VM_DONE)
    assert "does not exist" in sh(c.a, f"ip link show dev {br}"), "removed with its last NIC"


def test_8021q_vlan_interface_or_the_clear_refusal(net):
    """Host A's agent reports the network drivers its kernel serves (NETWORK_DRIVERS). Where
    it can make VLAN interfaces, a real one is made and removed; where it cannot, a VM with
    an 802.1Q NIC is refused by a forced deploy and left PENDING by the scheduler, both
    saying why (and not attached to a VM running there)."""
    c, one = net.c, net.c.one
    vn = one.vn.allocate(f'NAME="v50"\nVN_MAD="802.1Q"\nPHYDEV="eth0"\nVLAN_ID="50"\n'
                         f'AR=[TYPE="IP4", IP="{net.sub}.210", SIZE="4"]', -1)
    assert one.vn.info(vn).BRIDGE == "onebr.50"
    t = wait_for("host A's NETWORK_DRIVERS", lambda: (
        x if (x := c.host_xml(c.a.hid).find("TEMPLATE")).findtext("NETWORK_DRIVERS") else None))
    served = t.findtext("NETWORK_DRIVERS").split()
    assert {"bridge", "vxlan", "dummy"} <= set(served), served
    if "802.1Q" in served:
        vid = _deploy_bare(c, "vlan", vn, c.a)
        c.wait_vm(vid, RUNNING)
        dev = sh(c.a, "ip -d link show dev eth0.50")
        assert "vlan protocol 802.1Q id 50" in dev and "master onebr.50" in dev, dev
        one.vm.action("terminate-hard", vid)
        c.wait_vm(vid, VM_DONE)
        assert "does not exist" in sh(c.a, "ip link show dev eth0.50")
        return
    assert "802.1Q" in t.findtext("NETWORK_DRIVERS_MISSING").split()
    why = t.findtext("NETWORK_DRIVERS_ERROR")
    assert "802.1Q: the kernel cannot make 802.1Q VLAN interfaces (8021q)" in why, why
    vid = c.one.vm.allocate(c.guest_template("vlan", memory=64) + f'NIC=[NETWORK_ID="{vn}"]\n')
    # A forced deploy is refused with the host's reason, and changes nothing.
    r = c.oned.admin_call("one.vm.deploy", vid, c.a.hid, False, 0)
    assert r[0] is False, r
    assert (f"cannot serve the network driver (VN_MAD) of the VM's NICs: 802.1Q (the kernel "
            f"cannot make 802.1Q VLAN interfaces") in r[1], r
    assert c.vm_state(vid)[0] == 1, "still PENDING"
    # The scheduler passes both hosts over, saying why.
    p = Scheduler(c.oned, c.dir / "sched").run_once()
    assert p.returncode == 0, p.stderr
    msg = one.vm.info(vid).USER_TEMPLATE.get("SCHED_MESSAGE") or ""
    assert ("cannot serve the network driver of the VM's NICs: 802.1Q (the kernel "
            "cannot make 802.1Q VLAN interfaces") in msg, msg
    assert c.vm_state(vid)[0] == 1, "still PENDING"
    assert "does not exist" in sh(c.a, "ip link show dev onebr.50"), "nothing made"
    one.vm.recover(vid, 3)
    # Nor is such a NIC attached to a VM running there; the lease it took is given back.
    r = c.oned.admin_call("one.vm.attachnic", net.vid["a"], f'NIC=[NETWORK_ID="{vn}"]')
    assert r[0] is False and "cannot serve the network driver (VN_MAD) of the VM's NICs: 802.1Q" in r[1], r
    assert net.lease_ips(vn) == {}, "no lease left behind"
    assert c.vm_state(net.vid["a"]) == RUNNING
    skip(f"802.1Q cannot be tried for real here (the refusal was checked): {why.split(': ', 2)[-1]}")
