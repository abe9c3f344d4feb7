//! What the network drivers need of a VM: its NICs (from `/VM/TEMPLATE/NIC`, as oned filled
//! them when it leased the addresses) and the rules of its security groups
//! (`/VM/TEMPLATE/SECURITY_GROUP_RULE`, as OpenNebula puts them in the VM).

use super::links::check_ifname;
use super::sg::SgRule;
use crate::{Error, Result};
use one_proto::template::{Template, Vector};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The network driver of a NIC (its VN_MAD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VnMad {
    /// A Linux bridge made on demand, PHYDEV (if any) enslaved to it.
    Bridge,
    /// An 802.1Q interface `<PHYDEV>.<VLAN_ID>` on its own bridge.
    Vlan,
    /// A VXLAN interface `<PHYDEV>.<VNI>` (multicast) on its own bridge.
    Vxlan,
    /// An existing bridge; security groups and anti-spoofing only.
    Fw,
    /// An existing bridge, nothing done on the host (OpenNebula's `dummy`).
    Dummy,
}

impl VnMad {
    pub fn parse(s: &str) -> Result<VnMad> {
        Ok(match s.trim() {
            "bridge" => VnMad::Bridge,
            "802.1Q" => VnMad::Vlan,
            "vxlan" => VnMad::Vxlan,
            "fw" => VnMad::Fw,
            "dummy" | "" => VnMad::Dummy,
            other => {
                return Err(Error::Unsupported(format!(
                    "VN_MAD {other:?}: this host's agent drives bridge, 802.1Q, vxlan, fw and \
                     dummy networks"
                )));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            VnMad::Bridge => "bridge",
            VnMad::Vlan => "802.1Q",
            VnMad::Vxlan => "vxlan",
            VnMad::Fw => "fw",
            VnMad::Dummy => "dummy",
        }
    }

    /// Whether the driver filters traffic (security groups, anti-spoofing).
    pub fn filters(self) -> bool {
        !matches!(self, VnMad::Dummy)
    }
}

/// One NIC as the host sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicNet {
    pub nic_id: i64,
    pub vn_mad: VnMad,
    pub bridge: String,
    pub phydev: Option<String>,
    pub vlan_id: Option<u32>,
    /// The network's MTU (inherited by the NIC).
    pub mtu: Option<u32>,
    /// The tap device libvirt makes (TARGET, `one-<vm>-<nic>`).
    pub tap: Option<String>,
    /// Lower case, colon separated.
    pub mac: Option<String>,
    /// The addresses the NIC (and its aliases) leased.
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    pub filter_ip_spoofing: bool,
    pub filter_mac_spoofing: bool,
    /// None: the NIC names no security group, or its groups allow everything both ways (no
    /// filtering by groups at all).
    pub security_groups: Option<Vec<i64>>,
    /// The network's own VXLAN multicast base (VXLAN_MC), overriding the host's.
    pub vxlan_mc: Option<Ipv4Addr>,
}

impl NicNet {
    /// The VLAN / VXLAN device, `<PHYDEV>.<VLAN_ID>`, as OpenNebula names it.
    pub fn lower_dev(&self) -> Option<String> {
        match (self.vn_mad, &self.phydev, self.vlan_id) {
            (VnMad::Vlan | VnMad::Vxlan, Some(p), Some(id)) => Some(format!("{p}.{id}")),
            _ => None,
        }
    }

    /// Whether the host must filter this NIC's traffic.
    pub fn needs_filter(&self) -> bool {
        self.vn_mad.filters()
            && (self.security_groups.is_some()
                || self.filter_ip_spoofing
                || self.filter_mac_spoofing)
    }
}

/// The network side of a VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmNet {
    pub vm_id: i64,
    pub nics: Vec<NicNet>,
    pub rules: Vec<SgRule>,
}

fn nonempty<'a>(v: &'a Vector, k: &str) -> Option<&'a str> {
    v.get(k).map(str::trim).filter(|s| !s.is_empty())
}

fn yes(v: &Vector, k: &str) -> bool {
    nonempty(v, k).is_some_and(|s| s.eq_ignore_ascii_case("yes"))
}

fn number<T: std::str::FromStr>(nic_id: &str, v: &Vector, k: &str) -> Result<Option<T>> {
    match nonempty(v, k) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| Error::Refused(format!("NIC {nic_id}: {k} {s:?} is not a valid number"))),
    }
}

/// The IPv4 and IPv6 addresses of a NIC or NIC_ALIAS (OpenNebula's anti-spoofing list).
fn addresses(
    nic_id: &str,
    v: &Vector,
    v4: &mut Vec<Ipv4Addr>,
    v6: &mut Vec<Ipv6Addr>,
) -> Result<()> {
    for k in ["IP", "VROUTER_IP"] {
        if let Some(s) = nonempty(v, k) {
            v4.push(s.parse().map_err(|_| {
                Error::Refused(format!("NIC {nic_id}: {k} {s:?} is not an IPv4 address"))
            })?);
        }
    }
    for k in [
        "IP6",
        "IP6_GLOBAL",
        "IP6_ULA",
        "IP6_LINK",
        "VROUTER_IP6",
        "VROUTER_IP6_GLOBAL",
        "VROUTER_IP6_ULA",
        "VROUTER_IP6_LINK",
    ] {
        if let Some(s) = nonempty(v, k) {
            v6.push(s.parse().map_err(|_| {
                Error::Refused(format!("NIC {nic_id}: {k} {s:?} is not an IPv6 address"))
            })?);
        }
    }
    Ok(())
}

/// A MAC address, lower case; None when it is not one.
pub fn normalize_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    if parts.len() != 6
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(parts.join(":").to_ascii_lowercase())
}

/// The link-local address the guest's kernel derives from its MAC (EUI-64).
pub fn link_local(mac: &str) -> Option<Ipv6Addr> {
    let b: Vec<u8> = mac
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    if b.len() != 6 {
        return None;
    }
    let iid = [b[0] ^ 0x02, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]];
    let mut o = [0u8; 16];
    o[0] = 0xfe;
    o[1] = 0x80;
    o[8..].copy_from_slice(&iid);
    Some(Ipv6Addr::from(o))
}

impl VmNet {
    /// Reads the NICs and security-group rules of a VM template.
    pub fn from_template(vm_id: i64, t: &Template) -> Result<VmNet> {
        let mut nics = Vec::new();
        for v in t.vectors("NIC") {
            let id_s = nonempty(v, "NIC_ID").unwrap_or("?");
            let nic_id: i64 = id_s
                .parse()
                .map_err(|_| Error::Refused(format!("a NIC has no valid NIC_ID ({id_s:?})")))?;
            // A NIC with no network yet (NETWORK_MODE = "auto" before scheduling) or none at
            // all: nothing to plumb.
            let Some(bridge) = nonempty(v, "BRIDGE") else {
                continue;
            };
            let vn_mad = VnMad::parse(v.get("VN_MAD").unwrap_or(""))
                .map_err(|e| Error::Unsupported(format!("NIC {nic_id}: {e}")))?;
            let mut ipv4 = Vec::new();
            let mut ipv6 = Vec::new();
            addresses(id_s, v, &mut ipv4, &mut ipv6)?;
            for a in t.vectors("NIC_ALIAS") {
                if nonempty(a, "PARENT_ID") == Some(id_s) {
                    addresses(id_s, a, &mut ipv4, &mut ipv6)?;
                }
            }
            let mac = match nonempty(v, "MAC") {
                Some(m) => Some(normalize_mac(m).ok_or_else(|| {
                    Error::Refused(format!("NIC {nic_id}: MAC {m:?} is not a MAC address"))
                })?),
                None => None,
            };
            if let Some(ll) = mac.as_deref().and_then(link_local)
                && !ipv6.contains(&ll)
            {
                ipv6.push(ll);
            }
            let security_groups = match nonempty(v, "SECURITY_GROUPS") {
                None => None,
                Some(s) => Some(
                    s.split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            p.parse::<i64>().map_err(|_| {
                                Error::Refused(format!(
                                    "NIC {nic_id}: SECURITY_GROUPS {s:?} is not a list of ids"
                                ))
                            })
                        })
                        .collect::<Result<Vec<_>>>()?,
                ),
            };
            let tap = nonempty(v, "TARGET").map(str::to_string);
            if let Some(tap) = &tap {
                check_ifname(&format!("NIC {nic_id} TARGET"), tap)?;
            }
            check_ifname(&format!("NIC {nic_id} BRIDGE"), bridge)?;
            let phydev = nonempty(v, "PHYDEV").map(str::to_string);
            if let Some(p) = &phydev {
                check_ifname(&format!("NIC {nic_id} PHYDEV"), p)?;
            }
            let vxlan_mc = match nonempty(v, "VXLAN_MC") {
                None => None,
                Some(s) => Some(s.parse().map_err(|_| {
                    Error::Refused(format!(
                        "NIC {nic_id}: VXLAN_MC {s:?} is not an IPv4 address"
                    ))
                })?),
            };
            let nic = NicNet {
                nic_id,
                vn_mad,
                bridge: bridge.to_string(),
                phydev,
                vlan_id: number(id_s, v, "VLAN_ID")?,
                mtu: number(id_s, v, "MTU")?,
                tap,
                mac,
                ipv4,
                ipv6,
                filter_ip_spoofing: yes(v, "FILTER_IP_SPOOFING"),
                filter_mac_spoofing: yes(v, "FILTER_MAC_SPOOFING"),
                security_groups,
                vxlan_mc,
            };
            match nic.vn_mad {
                VnMad::Vlan | VnMad::Vxlan => {
                    if nic.phydev.is_none() {
                        return Err(Error::Refused(format!(
                            "NIC {nic_id}: VN_MAD {} needs PHYDEV",
                            nic.vn_mad.name()
                        )));
                    }
                    if nic.vlan_id.is_none() {
                        return Err(Error::Refused(format!(
                            "NIC {nic_id}: VN_MAD {} needs VLAN_ID",
                            nic.vn_mad.name()
                        )));
                    }
                    if let Some(d) = nic.lower_dev() {
                        check_ifname(&format!("NIC {nic_id} device"), &d)?;
                    }
                }
                _ => {}
            }
            nics.push(nic);
        }
        let rules = t
            .vectors("SECURITY_GROUP_RULE")
            .map(SgRule::from_vector)
            .collect::<Result<Vec<_>>>()?;
        let mut vm = VmNet { vm_id, nics, rules };
        // Groups that allow everything both ways (group 0 `default`) filter nothing: such a
        // NIC needs no chains at all, as if it had no group.
        for i in 0..vm.nics.len() {
            let open = |dir| {
                vm.rules_of(&vm.nics[i]).iter().any(|r| {
                    r.direction == dir && r.protocol == super::sg::Protocol::All && !r.peer
                })
            };
            if open(super::sg::Direction::Inbound) && open(super::sg::Direction::Outbound) {
                vm.nics[i].security_groups = None;
            }
        }
        Ok(vm)
    }

    /// The NICs an operation works on: NIC `only` (a NIC hotplug), else all of them.
    pub fn select(&self, only: Option<i64>) -> Vec<&NicNet> {
        self.nics
            .iter()
            .filter(|n| only.is_none_or(|id| n.nic_id == id))
            .collect()
    }

    /// The rules that apply to `nic`: those of its security groups.
    pub fn rules_of(&self, nic: &NicNet) -> Vec<&SgRule> {
        let Some(groups) = &nic.security_groups else {
            return Vec::new();
        };
        self.rules
            .iter()
            .filter(|r| groups.contains(&r.group))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn template(text: &str) -> Template {
        Template::parse(text).unwrap()
    }

    #[test]
    fn nics_are_read_with_their_addresses_and_groups() {
        let t = template(
            r#"NIC=[NIC_ID="0", BRIDGE="onebr.46", VN_MAD="vxlan", PHYDEV="eth0", VLAN_ID="46",
                TARGET="one-7-0", MAC="02:00:0A:00:00:05", IP="10.0.0.5", IP6_GLOBAL="2001:db8::5",
                FILTER_IP_SPOOFING="YES", SECURITY_GROUPS="0,100"]
               NIC_ALIAS=[NIC_ID="2", PARENT_ID="0", IP="10.0.0.9"]
               NIC=[NIC_ID="1", NETWORK_MODE="auto"]
               SECURITY_GROUP_RULE=[SECURITY_GROUP_ID="100", PROTOCOL="TCP", RULE_TYPE="inbound", RANGE="22"]"#,
        );
        let vm = VmNet::from_template(7, &t).unwrap();
        assert_eq!(vm.nics.len(), 1, "the auto NIC has no network yet");
        let n = &vm.nics[0];
        assert_eq!(n.vn_mad, VnMad::Vxlan);
        assert_eq!(n.lower_dev().as_deref(), Some("eth0.46"));
        assert_eq!(n.mac.as_deref(), Some("02:00:0a:00:00:05"));
        assert_eq!(
            n.ipv4,
            [
                "10.0.0.5".parse::<Ipv4Addr>().unwrap(),
                "10.0.0.9".parse().unwrap()
            ]
        );
        assert_eq!(
            n.ipv6,
            [
                "2001:db8::5".parse::<Ipv6Addr>().unwrap(),
                "fe80::aff:fe00:5".parse().unwrap()
            ]
        );
        assert!(n.filter_ip_spoofing && !n.filter_mac_spoofing);
        assert_eq!(n.security_groups, Some(vec![0, 100]));
        assert_eq!(vm.rules_of(n).len(), 1);
        assert!(n.needs_filter());
    }

    #[test]
    fn groups_that_allow_everything_filter_nothing() {
        let nic = r#"NIC=[NIC_ID=0, BRIDGE=br, VN_MAD=bridge, TARGET="one-1-0", SECURITY_GROUPS="0,5"]
            SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=0, PROTOCOL=ALL, RULE_TYPE=OUTBOUND]
            SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=0, PROTOCOL=ALL, RULE_TYPE=INBOUND]
            SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=5, PROTOCOL=TCP, RULE_TYPE=INBOUND, RANGE=22]"#;
        let vm = VmNet::from_template(1, &template(nic)).unwrap();
        assert_eq!(vm.nics[0].security_groups, None);
        assert!(!vm.nics[0].needs_filter());
        // Only one direction open: filtered.
        let one_way = nic.replace(
            "PROTOCOL=ALL, RULE_TYPE=INBOUND",
            "PROTOCOL=ICMP, RULE_TYPE=INBOUND",
        );
        let vm = VmNet::from_template(1, &template(&one_way)).unwrap();
        assert_eq!(vm.nics[0].security_groups, Some(vec![0, 5]));
        // An open rule limited to some peers is not open.
        let peers = nic.replace(
            "PROTOCOL=ALL, RULE_TYPE=INBOUND",
            "PROTOCOL=ALL, RULE_TYPE=INBOUND, IP=10.0.0.1, SIZE=5",
        );
        let vm = VmNet::from_template(1, &template(&peers)).unwrap();
        assert!(vm.nics[0].security_groups.is_some());
    }

    #[test]
    fn bad_input_is_refused_with_the_nic_named() {
        for (t, want) in [
            (
                "NIC=[NIC_ID=0, BRIDGE=\"a b\", VN_MAD=bridge]",
                "NIC 0 BRIDGE",
            ),
            (
                "NIC=[NIC_ID=0, BRIDGE=br, VN_MAD=802.1Q, VLAN_ID=4]",
                "needs PHYDEV",
            ),
            (
                "NIC=[NIC_ID=0, BRIDGE=br, VN_MAD=vxlan, PHYDEV=eth0]",
                "needs VLAN_ID",
            ),
            (
                "NIC=[NIC_ID=0, BRIDGE=br, VN_MAD=bridge, IP=10.0.0.300]",
                "not an IPv4",
            ),
            (
                "NIC=[NIC_ID=0, BRIDGE=br, VN_MAD=ovswitch]",
                "VN_MAD \"ovswitch\"",
            ),
            (
                "NIC=[NIC_ID=0, BRIDGE=br, VN_MAD=bridge, TARGET=\"x;rm\"]",
                "TARGET",
            ),
            (
                "NIC=[NIC_ID=0, BRIDGE=br, VN_MAD=802.1Q, PHYDEV=enp0s31f6xy, VLAN_ID=4000]",
                "device",
            ),
        ] {
            let e = VmNet::from_template(1, &template(t))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{t}: {e}");
        }
    }

    #[test]
    fn eui64_link_local() {
        assert_eq!(
            link_local("52:54:00:12:34:56").unwrap(),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
    }
}
