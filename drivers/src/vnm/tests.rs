//! The drivers against the kernel model ([`super::fake`]): the exact commands, idempotence,
//! races and clean-up; then for real in throwaway network namespaces (root only).

use super::fake::FakeHost;
use super::nft::{CtMode, Profile};
use super::*;
use one_proto::template::Template;

/// Says why a check could not run: on stdout and in ONE_TEST_SKIP_LOG (scripts/test.sh
/// counts those lines as skips).
pub fn skip(reason: &str) {
    println!("SKIP: {reason}");
    if let Some(path) = std::env::var_os("ONE_TEST_SKIP_LOG") {
        let test = std::thread::current().name().unwrap_or("?").to_string();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            use std::io::Write;
            let _ = f.write_all(format!("{test}\t{reason}\n").as_bytes());
        }
    }
}

/// Why throwaway network namespaces cannot be made here, or None.
pub fn no_netns() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: network namespaces need it".into());
    }
    let ok = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| o.status.success());
    (!ok).then(|| "`ip netns` does not work here".into())
}

fn vm(id: i64, text: &str) -> VmNet {
    VmNet::from_template(id, &Template::parse(text).unwrap()).unwrap()
}

fn cfg() -> NetworkConfig {
    NetworkConfig::default()
}

fn host(f: FakeHost) -> (Arc<FakeHost>, Vnm) {
    let f = Arc::new(f);
    let v = Vnm::new(f.clone(), cfg());
    (f, v)
}

const BRIDGE_NIC: &str = r#"NIC=[NIC_ID=0, BRIDGE=onebr5, VN_MAD=bridge, TARGET="one-7-0",
    MAC="02:00:0a:00:00:07", IP="10.0.0.7"]"#;

#[test]
fn bridge_is_made_once_and_removed_with_its_last_nic() {
    let (f, v) = host(FakeHost::new());
    let a = vm(7, BRIDGE_NIC);
    v.pre(&a, None).unwrap();
    assert_eq!(
        f.take_log(),
        [
            "ip link add name onebr5 type bridge",
            "ip link set dev onebr5 alias one-rs-vnm up",
        ]
    );
    // Repeated (the lifecycle re-runs a step after a crash): nothing changes.
    v.pre(&a, None).unwrap();
    assert_eq!(f.take_log(), Vec::<String>::new());
    // libvirt plugs the tap; a second VM joins, then leaves: the bridge stays for the first.
    f.add_device("one-7-0", "tun", 1500, Some("onebr5"));
    let b = vm(8, &BRIDGE_NIC.replace("one-7-0", "one-8-0"));
    v.pre(&b, None).unwrap();
    f.add_device("one-8-0", "tun", 1500, Some("onebr5"));
    assert!(f.take_log().is_empty());
    f.remove_device("one-8-0");
    v.clean(&b, None).unwrap();
    assert!(f.take_log().is_empty(), "VM 7's tap is still on the bridge");
    // The last one leaves (its domain is gone, the tap with it).
    f.remove_device("one-7-0");
    v.clean(&a, None).unwrap();
    assert_eq!(f.take_log(), ["ip link delete dev onebr5"]);
    assert!(!f.exists("onebr5"));
    // Cleaning again finds nothing to do.
    v.clean(&a, None).unwrap();
    assert!(f.take_log().is_empty());
}

#[test]
fn mtu_and_phydev_are_honoured() {
    let (f, v) = host(FakeHost::new());
    f.add_device("eth1", "veth", 9000, None);
    let a = vm(
        7,
        r#"NIC=[NIC_ID=0, BRIDGE=onebr5, VN_MAD=bridge, PHYDEV=eth1, MTU=9000, TARGET="one-7-0"]"#,
    );
    v.pre(&a, None).unwrap();
    assert_eq!(
        f.take_log(),
        [
            "ip link add name onebr5 mtu 9000 type bridge",
            "ip link set dev onebr5 alias one-rs-vnm up",
            "ip link set dev eth1 master onebr5",
        ]
    );
    v.pre(&a, None).unwrap();
    assert!(f.take_log().is_empty());
    v.clean(&a, None).unwrap();
    assert_eq!(f.take_log(), ["ip link delete dev onebr5"]);
    assert_eq!(f.describe("eth1").unwrap().1, None, "PHYDEV freed");
}

#[test]
fn a_bridge_made_concurrently_is_reused() {
    let (f, v) = host(FakeHost::new());
    f.race_on("onebr5");
    v.pre(&vm(7, BRIDGE_NIC), None).unwrap();
    // The loser's add found it; it only makes sure the bridge is up.
    assert_eq!(
        f.take_log(),
        [
            "ip link add name onebr5 type bridge",
            "ip link set dev onebr5 up",
        ]
    );
}

#[test]
fn racing_deploys_on_one_host_both_succeed() {
    let (f, v) = host(FakeHost::new());
    let v = Arc::new(v);
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let v = v.clone();
            std::thread::spawn(move || {
                v.pre(
                    &vm(i, &BRIDGE_NIC.replace("one-7-0", &format!("one-{i}-0"))),
                    None,
                )
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    let adds = f
        .take_log()
        .into_iter()
        .filter(|l| l.starts_with("ip link add"))
        .count();
    assert_eq!(adds, 1);
}

#[test]
fn a_nic_between_pre_and_boot_keeps_its_bridge() {
    let (f, v) = host(FakeHost::new());
    let a = vm(7, BRIDGE_NIC);
    let b = vm(8, &BRIDGE_NIC.replace("one-7-0", "one-8-0"));
    v.pre(&a, None).unwrap();
    v.pre(&b, None).unwrap();
    f.take_log();
    // VM 7 leaves before VM 8's domain (and tap) exists: the bridge is still VM 8's.
    v.clean(&a, None).unwrap();
    assert!(f.exists("onebr5"));
    v.clean(&b, None).unwrap();
    assert!(!f.exists("onebr5"));
}

#[test]
fn an_administrators_bridge_is_never_deleted() {
    let (f, v) = host(FakeHost::new());
    f.add_device("onebr5", "bridge", 1500, None);
    let a = vm(7, BRIDGE_NIC);
    v.pre(&a, None).unwrap();
    v.clean(&a, None).unwrap();
    assert!(f.exists("onebr5"));
    assert!(f.take_log().is_empty());
}

#[test]
fn keep_empty_bridge_keeps_it() {
    let f = Arc::new(FakeHost::new());
    let v = Vnm::new(
        f.clone(),
        NetworkConfig {
            keep_empty_bridge: true,
            ..cfg()
        },
    );
    let a = vm(7, BRIDGE_NIC);
    v.pre(&a, None).unwrap();
    v.clean(&a, None).unwrap();
    assert!(f.exists("onebr5"));
}

#[test]
fn something_else_named_like_the_bridge_is_refused() {
    let (f, v) = host(FakeHost::new());
    f.add_device("onebr5", "veth", 1500, None);
    let e = v.pre(&vm(7, BRIDGE_NIC), None).unwrap_err().to_string();
    assert_eq!(e, "onebr5 exists and is not a bridge (it is a veth device)");
}

const VLAN_NIC: &str = r#"NIC=[NIC_ID=0, BRIDGE="onebr.46", VN_MAD="802.1Q", PHYDEV=eth0,
    VLAN_ID=46, TARGET="one-7-0"]"#;

#[test]
fn vlan_interface_as_opennebula_makes_it() {
    let (f, v) = host(FakeHost::new());
    f.add_device("eth0", "veth", 1500, None);
    let a = vm(7, VLAN_NIC);
    v.pre(&a, None).unwrap();
    assert_eq!(
        f.take_log(),
        [
            "ip link add name onebr.46 type bridge",
            "ip link set dev onebr.46 alias one-rs-vnm up",
            "ip link add link eth0 name eth0.46 mtu 1500 type vlan id 46",
            "ip link set dev eth0.46 alias one-rs-vnm master onebr.46 up",
        ]
    );
    v.pre(&a, None).unwrap();
    assert!(f.take_log().is_empty(), "idempotent");
    // A NIC with its own MTU on another VLAN.
    let b = vm(
        8,
        &VLAN_NIC
            .replace("46", "47")
            .replace("one-7-0", "one-8-0")
            .replace("TARGET", "MTU=1400, TARGET"),
    );
    v.pre(&b, None).unwrap();
    assert!(
        f.take_log()
            .contains(&"ip link add link eth0 name eth0.47 mtu 1400 type vlan id 47".to_string())
    );
    v.clean(&a, None).unwrap();
    assert_eq!(
        f.take_log(),
        ["ip link delete dev eth0.46", "ip link delete dev onebr.46"]
    );
    assert!(f.exists("eth0") && f.exists("eth0.47") && f.exists("onebr.47"));
}

#[test]
fn a_kernel_without_8021q_leaves_nothing_behind() {
    let (f, v) = host(FakeHost::without_vlan());
    f.add_device("eth0", "veth", 1500, None);
    let e = v.pre(&vm(7, VLAN_NIC), None).unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
    assert!(e.to_string().contains("802.1Q"), "{e}");
    assert!(
        !f.exists("onebr.46"),
        "the bridge made before the failure is removed"
    );
    assert_eq!(f.names(), ["eth0"]);
}

#[test]
fn a_foreign_device_with_the_vlan_name_is_refused() {
    let (f, v) = host(FakeHost::new());
    f.add_device("eth0", "veth", 1500, None);
    f.add_device("eth0.46", "veth", 1500, None);
    let e = v.pre(&vm(7, VLAN_NIC), None).unwrap_err().to_string();
    assert_eq!(e, "eth0.46 exists and is not VLAN 46 on eth0");
    assert!(!f.exists("onebr.46"));
}

#[test]
fn missing_phydev_is_named() {
    let (_f, v) = host(FakeHost::new());
    let e = v.pre(&vm(7, VLAN_NIC), None).unwrap_err().to_string();
    assert_eq!(e, "PHYDEV eth0 does not exist on this host");
}

const VXLAN_NIC: &str = r#"NIC=[NIC_ID=0, BRIDGE="onebr.46", VN_MAD="vxlan", PHYDEV=eth0,
    VLAN_ID=46, TARGET="one-7-0"]"#;

#[test]
fn vxlan_gets_its_group_and_a_lower_mtu() {
    let (f, v) = host(FakeHost::new());
    f.add_device("eth0", "veth", 1500, None);
    let a = vm(7, VXLAN_NIC);
    v.pre(&a, None).unwrap();
    assert_eq!(
        f.take_log(),
        [
            "ip link add name onebr.46 mtu 1450 type bridge",
            "ip link set dev onebr.46 alias one-rs-vnm up",
            "ip link add eth0.46 mtu 1450 type vxlan id 46 group 239.0.0.46 ttl 16 dev eth0 dstport 0",
            "ip link set dev eth0.46 alias one-rs-vnm master onebr.46 up",
        ]
    );
    v.pre(&a, None).unwrap();
    assert!(f.take_log().is_empty());
    v.clean(&a, None).unwrap();
    assert_eq!(
        f.take_log(),
        ["ip link delete dev eth0.46", "ip link delete dev onebr.46"]
    );
    // An MTU given, a network's own multicast base, another base and port for the host.
    let f = Arc::new(FakeHost::new());
    f.add_device("eth0", "veth", 9000, None);
    let v = Vnm::new(
        f.clone(),
        NetworkConfig {
            vxlan_mc: "239.1.0.0".into(),
            vxlan_dstport: 4789,
            ..cfg()
        },
    );
    v.pre(
        &vm(7, &VXLAN_NIC.replace("TARGET", "MTU=8000, TARGET")),
        None,
    )
    .unwrap();
    assert!(f.take_log().contains(
        &"ip link add eth0.46 mtu 8000 type vxlan id 46 group 239.1.0.46 ttl 16 dev eth0 dstport 4789"
            .to_string()
    ));
    v.pre(
        &vm(
            8,
            &VXLAN_NIC
                .replace("46", "300")
                .replace("TARGET", "VXLAN_MC=\"239.5.0.0\", TARGET"),
        ),
        None,
    )
    .unwrap();
    assert!(f.take_log().contains(
        &"ip link add eth0.300 mtu 8950 type vxlan id 300 group 239.5.1.44 ttl 16 dev eth0 dstport 4789"
            .to_string()
    ));
}

#[test]
fn vxlan_groups_stay_multicast() {
    let base = "239.0.0.0".parse().unwrap();
    assert_eq!(
        devices::vxlan_group(base, 70000).unwrap().to_string(),
        "239.1.17.112"
    );
    assert!(devices::vxlan_group(base, 16_777_216).is_err());
}

#[test]
fn a_hotplugged_nic_only_touches_itself() {
    let (f, v) = host(FakeHost::new());
    let two = vm(
        7,
        &format!(
            "{BRIDGE_NIC}\nNIC=[NIC_ID=1, BRIDGE=onebr6, VN_MAD=bridge, TARGET=\"one-7-1\", \
             MAC=\"02:00:00:00:00:01\", FILTER_MAC_SPOOFING=YES]"
        ),
    );
    v.pre(&two, Some(1)).unwrap();
    assert!(f.exists("onebr6") && !f.exists("onebr5"));
    f.take_scripts();
    v.clean(&two, Some(1)).unwrap();
    assert!(!f.exists("onebr6"));
    let s = f.take_scripts().join("");
    assert!(s.contains("vm7_nic1_o") && !s.contains("vm7_nic0"), "{s}");
}

// ------------------------------------------------------------------------------------------
// Firewall scripts

const SG_NIC: &str = r#"NIC=[NIC_ID=0, BRIDGE=onebr5, VN_MAD=bridge, TARGET="one-7-0",
    MAC="02:00:0a:00:00:07", IP="10.0.0.7", SECURITY_GROUPS="0,100",
    FILTER_IP_SPOOFING=YES, FILTER_MAC_SPOOFING=YES]
  SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=100, PROTOCOL=ALL, RULE_TYPE=OUTBOUND]
  SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=100, PROTOCOL=TCP, RULE_TYPE=INBOUND, RANGE="22,8000:8080"]
  SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=100, PROTOCOL=ICMP, RULE_TYPE=INBOUND, ICMP_TYPE=8,
      IP="10.0.0.0", SIZE=256]
  SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=200, PROTOCOL=ALL, RULE_TYPE=INBOUND]"#;

#[test]
fn security_groups_need_conntrack_for_bridged_traffic() {
    let (f, v) = host(FakeHost::new());
    let e = v.pre(&vm(7, SG_NIC), None).unwrap_err();
    assert!(
        e.to_string().contains("br_netfilter") && matches!(e, Error::Unsupported(_)),
        "{e}"
    );
    assert!(!f.exists("onebr5"), "what pre made is removed");
    assert!(f.take_scripts().is_empty());
}

#[test]
fn the_rules_of_a_nic_exactly() {
    let f = Arc::new(FakeHost::new().with_bridge_ct());
    let v = Vnm::new(f.clone(), cfg());
    v.pre(&vm(7, SG_NIC), None).unwrap();
    let scripts = f.take_scripts();
    assert_eq!(scripts.len(), 1, "one transaction");
    let s = &scripts[0];
    let p = Profile::of(
        &vm(7, SG_NIC)
            .rules
            .iter()
            .filter(|r| r.group != 200)
            .collect::<Vec<_>>(),
        CtMode::Bridge,
    );
    let body: Vec<String> = s
        .lines()
        .filter(|l| l.contains("vm7_nic0") || l.contains(&p.name))
        .map(|l| l.replace(&p.name, "P"))
        .collect();
    let want = [
        "add chain bridge one_rs P_o",
        "flush chain bridge one_rs P_o",
        "add rule bridge one_rs P_o meta protocol != { ip, ip6 } accept",
        "add rule bridge one_rs P_o icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept",
        "add rule bridge one_rs P_o ct state established,related accept",
        "add rule bridge one_rs P_o accept",
        "add rule bridge one_rs P_o drop",
        "add chain bridge one_rs P_i",
        "flush chain bridge one_rs P_i",
        "add rule bridge one_rs P_i meta protocol != { ip, ip6 } accept",
        "add rule bridge one_rs P_i icmpv6 type { nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } accept",
        "add rule bridge one_rs P_i ct state established,related accept",
        "add rule bridge one_rs P_i ip saddr { 10.0.0.0-10.0.0.255 } meta l4proto icmp icmp type 8 accept",
        "add rule bridge one_rs P_i meta l4proto tcp th dport { 22, 8000-8080 } accept",
        "add rule bridge one_rs P_i drop",
        "add chain bridge one_rs vm7_nic0_og",
        "flush chain bridge one_rs vm7_nic0_og",
        "add rule bridge one_rs vm7_nic0_og jump P_o",
        "add chain bridge one_rs vm7_nic0_i",
        "flush chain bridge one_rs vm7_nic0_i",
        "add rule bridge one_rs vm7_nic0_i jump P_i",
        "add chain bridge one_rs vm7_nic0_o",
        "flush chain bridge one_rs vm7_nic0_o",
        "add rule bridge one_rs vm7_nic0_o meta protocol { 0x8100, 0x88a8 } drop",
        "add rule bridge one_rs vm7_nic0_o ether saddr != 02:00:0a:00:00:07 drop",
        "add rule bridge one_rs vm7_nic0_o meta protocol arp arp saddr ip != { 0.0.0.0, 10.0.0.7 } drop",
        "add rule bridge one_rs vm7_nic0_o meta protocol ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept",
        "add rule bridge one_rs vm7_nic0_o meta protocol ip ip saddr != { 10.0.0.7 } drop",
        "add rule bridge one_rs vm7_nic0_o meta protocol ip6 ip6 saddr != { ::, fe80::aff:fe00:7 } drop",
        "add rule bridge one_rs vm7_nic0_o jump vm7_nic0_og",
        "add element bridge one_rs nic_in { \"one-7-0\" : jump vm7_nic0_i }",
        "add element bridge one_rs nic_out { \"one-7-0\" : jump vm7_nic0_o }",
    ];
    assert_eq!(body, want, "group 200's rule is not the NIC's");
    for l in [
        "add rule bridge one_rs fwd_out iifname vmap @nic_out",
        "add rule bridge one_rs fwd_in oifname vmap @nic_in",
        "add chain bridge one_rs fwd_in { type filter hook forward priority 10 ; policy accept ; }",
    ] {
        assert!(s.contains(l), "{l}");
    }
    // A second NIC with the same groups shares the profile; a repeated pre rewrites the NIC
    // but not the profile.
    v.pre(&vm(8, &SG_NIC.replace("one-7-0", "one-8-0")), None)
        .unwrap();
    let s = f.take_scripts().join("");
    assert!(s.contains(&format!(
        "add rule bridge one_rs vm8_nic0_i jump {}_i",
        p.name
    )));
    assert!(
        !s.contains(&format!("add chain bridge one_rs {}_o", p.name)),
        "loaded once"
    );
    // A rule change: one new profile, the NICs repointed (their anti-spoofing rules stay),
    // the old profile deleted once no NIC uses it.
    let more = format!(
        "{SG_NIC}\n  SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=100, PROTOCOL=UDP, RULE_TYPE=INBOUND]"
    );
    let changed = [vm(7, &more), vm(8, &more.replace("one-7-0", "one-8-0"))];
    assert_eq!(v.update_security_groups(&changed).unwrap(), 2);
    let s = f.take_scripts();
    assert_eq!(s.len(), 1, "one transaction");
    let s = &s[0];
    assert!(s.contains("meta l4proto udp accept"));
    assert!(
        !s.contains("vm7_nic0_o "),
        "the anti-spoofing chain is left alone:\n{s}"
    );
    assert!(s.contains(&format!("delete chain bridge one_rs {}_i", p.name)));
    // Clean removes both NICs' chains and map entries, and the profile with the last one.
    v.clean(&changed[0], None).unwrap();
    let s = f.take_scripts().join("");
    for l in [
        "delete element bridge one_rs nic_out { \"one-7-0\" }",
        "delete chain bridge one_rs vm7_nic0_o",
        "delete chain bridge one_rs vm7_nic0_og",
        "delete element bridge one_rs nic_in { \"one-7-0\" }",
        "delete chain bridge one_rs vm7_nic0_i",
    ] {
        assert!(s.contains(l), "{l}\n{s}");
    }
    assert!(
        !s.contains("delete chain bridge one_rs p"),
        "VM 8 still uses the profile"
    );
    v.clean(&changed[1], None).unwrap();
    assert!(
        f.take_scripts()
            .join("")
            .contains("delete chain bridge one_rs p")
    );
}

#[test]
fn without_bridge_conntrack_replies_are_told_by_a_mark_bit() {
    let (f, v) = host(FakeHost::new());
    f.set_sysctl("net.bridge.bridge-nf-call-iptables", "1");
    f.set_sysctl("net.bridge.bridge-nf-call-ip6tables", "1");
    v.pre(&vm(7, SG_NIC), None).unwrap();
    let s = f.take_scripts().join("");
    for l in [
        "add rule bridge one_rs prerouting meta mark set meta mark and 0xefffffff",
        "add rule inet one_rs prerouting ct state established,related meta mark set meta mark or 0x10000000",
        "add rule inet one_rs output meta mark set meta mark and 0xefffffff",
        "meta mark & 0x10000000 == 0x10000000 accept",
    ] {
        assert!(s.contains(l), "{l}\n{s}");
    }
    assert!(!s.contains("ct state established,related accept"));
}

#[test]
fn spoofing_filters_need_no_conntrack_and_no_groups_mean_no_inbound_chain() {
    let (f, v) = host(FakeHost::new());
    let a = vm(
        7,
        r#"NIC=[NIC_ID=0, BRIDGE=onebr5, VN_MAD=bridge, TARGET="one-7-0", MAC="02:00:0a:00:00:07",
            FILTER_IP_SPOOFING=YES]"#,
    );
    v.pre(&a, None).unwrap();
    let s = f.take_scripts().join("");
    assert!(
        s.contains("add rule bridge one_rs vm7_nic0_o meta protocol ip drop"),
        "{s}"
    );
    assert!(s.contains("delete chain bridge one_rs vm7_nic0_i"));
    assert!(!s.contains("inet"));
}

#[test]
fn update_of_many_vms_is_one_transaction() {
    let f = Arc::new(FakeHost::new().with_bridge_ct());
    let v = Vnm::new(f.clone(), cfg());
    let vms: Vec<VmNet> = (0..200)
        .map(|i| vm(i, &SG_NIC.replace("one-7-0", &format!("one-{i}-0"))))
        .collect();
    assert_eq!(v.update_security_groups(&vms).unwrap(), 200);
    let scripts = f.take_scripts();
    assert_eq!(scripts.len(), 1);
    assert_eq!(
        scripts[0]
            .matches("add element bridge one_rs nic_in")
            .count(),
        200
    );
}

#[test]
fn a_failed_load_undoes_the_devices() {
    let f = Arc::new(FakeHost::new().with_bridge_ct());
    let v = Vnm::new(f.clone(), cfg());
    f.fail_nft("Error: syntax error");
    assert!(v.pre(&vm(7, SG_NIC), None).is_err());
    assert!(!f.exists("onebr5"));
}

#[test]
fn dummy_nics_are_left_alone() {
    let (f, v) = host(FakeHost::new());
    f.add_device("br0", "bridge", 1500, None);
    let a = vm(
        7,
        r#"NIC=[NIC_ID=0, BRIDGE=br0, VN_MAD=dummy, TARGET="one-7-0", SECURITY_GROUPS="0"]"#,
    );
    v.pre(&a, None).unwrap();
    v.clean(&a, None).unwrap();
    assert!(f.take_log().is_empty() && f.take_scripts().is_empty());
    let e = v
        .pre(
            &vm(
                8,
                &BRIDGE_NIC
                    .replace("bridge", "dummy")
                    .replace("onebr5", "nobr"),
            ),
            None,
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "bridge nobr does not exist on this host");
}

// ------------------------------------------------------------------------------------------
// For real, in throwaway network namespaces

/// A network namespace removed when dropped.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("onet{tag}{}", std::process::id() % 100_000);
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .output();
        crate::cmd::run(std::process::Command::new("ip").args(["netns", "add", &name])).unwrap();
        Netns(name)
    }

    pub fn sh(&self, script: &str) -> std::process::Output {
        std::process::Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", script])
            .output()
            .unwrap()
    }

    pub fn vnm(&self) -> Vnm {
        Vnm::new(Arc::new(exec::System::in_netns(self.0.clone())), cfg())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

fn have_nft() -> bool {
    std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Bridges for real: made, reused, cleaned up (`ip -d link` in the namespace says so).
#[test]
fn real_bridge_in_a_namespace() {
    if let Some(why) = no_netns() {
        return skip(&why);
    }
    let ns = Netns::new("br");
    let v = ns.vnm();
    let a = vm(7, &BRIDGE_NIC.replace("TARGET", "MTU=1400, TARGET"));
    v.pre(&a, None).unwrap();
    v.pre(&a, None).unwrap();
    let out = String::from_utf8_lossy(&ns.sh("ip -d link show dev onebr5").stdout).to_string();
    assert!(
        out.contains("mtu 1400") && out.contains("bridge") && out.contains("UP"),
        "{out}"
    );
    assert!(out.contains("alias one-rs-vnm"), "{out}");
    v.clean(&a, None).unwrap();
    assert!(!ns.sh("ip link show dev onebr5").status.success());
}

/// Two hosts (namespaces) joined by a veth link; a VXLAN network on each; a "guest" (a
/// namespace on a veth in the network's bridge, as a tap would be) on each pings the other.
/// A second VXLAN network on the same link does not reach them.
#[test]
fn real_vxlan_between_two_hosts() {
    if let Some(why) = no_netns() {
        return skip(&why);
    }
    let (ha, hb) = (Netns::new("ha"), Netns::new("hb"));
    let (ga, gb, gc) = (Netns::new("ga"), Netns::new("gb"), Netns::new("gc"));
    let link = format!(
        "ip link add eth0 type veth peer name eth0 netns {}; ip link set eth0 up; \
         ip addr add 10.199.0.1/24 dev eth0",
        hb.0
    );
    assert!(ha.sh(&link).status.success());
    assert!(
        hb.sh("ip link set eth0 up; ip addr add 10.199.0.2/24 dev eth0")
            .status
            .success()
    );
    let nic = |vm_id: i64, vni: u32, tap: &str| {
        vm(
            vm_id,
            &format!(
                r#"NIC=[NIC_ID=0, BRIDGE="onebr.{vni}", VN_MAD=vxlan, PHYDEV=eth0, VLAN_ID={vni},
                    TARGET="{tap}"]"#
            ),
        )
    };
    let (va, vb) = (ha.vnm(), hb.vnm());
    va.pre(&nic(1, 46, "one-1-0"), None).unwrap();
    vb.pre(&nic(2, 46, "one-2-0"), None).unwrap();
    vb.pre(&nic(3, 47, "one-3-0"), None).unwrap();
    // The "taps": veth ends in the bridges, the other end in a guest namespace.
    let plug = |h: &Netns, g: &Netns, tap: &str, br: &str, ip: &str| {
        let s = format!(
            "ip link add {tap} type veth peer name eth0 netns {g}; ip link set {tap} master {br} up",
            g = g.0
        );
        assert!(h.sh(&s).status.success());
        assert!(
            g.sh(&format!(
                "ip link set eth0 up; ip addr add {ip}/24 dev eth0"
            ))
            .status
            .success()
        );
    };
    plug(&ha, &ga, "one-1-0", "onebr.46", "192.168.46.1");
    plug(&hb, &gb, "one-2-0", "onebr.46", "192.168.46.2");
    plug(&hb, &gc, "one-3-0", "onebr.47", "192.168.46.3");
    let out = String::from_utf8_lossy(&ha.sh("ip -d link show dev eth0.46").stdout).to_string();
    assert!(
        out.contains("vxlan id 46 group 239.0.0.46") && out.contains("mtu 1450"),
        "{out}"
    );
    let ping = |g: &Netns, ip: &str| g.sh(&format!("ping -c 1 -W 1 {ip}")).status.success();
    let mut ok = false;
    for _ in 0..5 {
        if ping(&ga, "192.168.46.2") {
            ok = true;
            break;
        }
    }
    assert!(ok, "the VXLAN network spans both hosts");
    assert!(
        !ping(&gc, "192.168.46.1"),
        "another VXLAN network is another segment"
    );
    assert!(!ping(&gc, "192.168.46.2"));
    // Clean up on host A: the taps are gone (their domains ended).
    assert!(ha.sh("ip link del one-1-0").status.success());
    va.clean(&nic(1, 46, "one-1-0"), None).unwrap();
    assert!(!ha.sh("ip link show dev eth0.46").status.success());
    assert!(!ha.sh("ip link show dev onebr.46").status.success());
}

/// Security groups and anti-spoofing for real: two "guests" on a bridge, each NIC with a
/// group allowing all outbound and inbound TCP 22 only: no ping; the group gets inbound
/// ICMP: ping works (replies pass as replies); a guest using another address reaches no one.
#[test]
fn real_security_groups_and_spoofing() {
    if let Some(why) = no_netns() {
        return skip(&why);
    }
    if !have_nft() {
        return skip("nft is not installed (scripts/install-deps.sh installs nftables)");
    }
    let h = Netns::new("sh");
    let (ga, gb) = (Netns::new("sa"), Netns::new("sb"));
    let v = h.vnm();
    let nic = |id: i64, ip: &str, mac: &str, extra_rules: &str| {
        vm(
            id,
            &format!(
                r#"NIC=[NIC_ID=0, BRIDGE=onebr9, VN_MAD=bridge, TARGET="one-{id}-0", IP="{ip}",
                    MAC="{mac}", SECURITY_GROUPS="100", FILTER_IP_SPOOFING=YES, FILTER_MAC_SPOOFING=YES]
                   SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=100, PROTOCOL=ALL, RULE_TYPE=OUTBOUND]
                   SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=100, PROTOCOL=TCP, RULE_TYPE=INBOUND, RANGE=22]
                   {extra_rules}"#
            ),
        )
    };
    let (ma, mb) = ("02:00:c0:a8:09:01", "02:00:c0:a8:09:02");
    let a = nic(1, "192.168.9.1", ma, "");
    let b = nic(2, "192.168.9.2", mb, "");
    v.pre(&a, None).unwrap();
    v.pre(&b, None).unwrap();
    for (g, tap, ip, mac) in [
        (&ga, "one-1-0", "192.168.9.1", ma),
        (&gb, "one-2-0", "192.168.9.2", mb),
    ] {
        assert!(h
            .sh(&format!(
                "ip link add {tap} type veth peer name eth0 netns {g}; ip link set {tap} master onebr9 up",
                g = g.0
            ))
            .status
            .success());
        assert!(
            g.sh(&format!(
                "ip link set eth0 address {mac}; ip link set eth0 up; ip addr add {ip}/24 dev eth0"
            ))
            .status
            .success()
        );
    }
    v.post(&a, None).unwrap();
    v.post(&b, None).unwrap();
    let ping = |g: &Netns, ip: &str| g.sh(&format!("ping -c 1 -W 1 {ip}")).status.success();
    assert!(!ping(&ga, "192.168.9.2"), "inbound ICMP is not allowed");
    let icmp = "SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=100, PROTOCOL=ICMP, RULE_TYPE=INBOUND]";
    let (a2, b2) = (
        nic(1, "192.168.9.1", ma, icmp),
        nic(2, "192.168.9.2", mb, icmp),
    );
    assert_eq!(
        v.update_security_groups(&[a2.clone(), b2.clone()]).unwrap(),
        2
    );
    assert!(ping(&ga, "192.168.9.2"), "inbound ICMP allowed now");
    assert!(ping(&gb, "192.168.9.1"));
    // Stateful: A may send anything; only replies come back. Drop B's inbound ICMP: A's ping
    // to B fails again, B's ping to A (A allows inbound ICMP) works, replies included.
    v.update_security_groups(&[a2.clone(), b.clone()]).unwrap();
    assert!(!ping(&ga, "192.168.9.2"));
    assert!(ping(&gb, "192.168.9.1"));
    // A takes another address: its packets are dropped at the bridge.
    assert!(
        ga.sh("ip addr flush dev eth0; ip addr add 192.168.9.77/24 dev eth0")
            .status
            .success()
    );
    assert!(!ping(&ga, "192.168.9.2"));
    assert!(!ping(&gb, "192.168.9.77"));
    // Its own address again, but another MAC: dropped too.
    assert!(ga
        .sh("ip addr flush dev eth0; ip addr add 192.168.9.1/24 dev eth0; ip link set eth0 address 02:00:00:00:00:99")
        .status
        .success());
    assert!(!ping(&gb, "192.168.9.1"));
    // Clean removes the chains: nothing of VM 1 left in the ruleset.
    v.clean(&a2, None).unwrap();
    let rules = String::from_utf8_lossy(&h.sh("nft list table bridge one_rs").stdout).to_string();
    assert!(!rules.contains("vm1_") && rules.contains("vm2_"), "{rules}");
}
