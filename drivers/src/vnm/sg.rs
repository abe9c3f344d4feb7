//! Security-group rules as the host applies them: one `SECURITY_GROUP_RULE` of the VM
//! template (a RULE of a group, with SECURITY_GROUP_ID; NETWORK_ID rules already expanded by
//! oned into the address ranges of that network, as OpenNebula does).
//!
//! A rule *allows* traffic (OpenNebula's semantics): PROTOCOL (ALL, TCP, UDP, ICMP, ICMPV6,
//! IPSEC), RULE_TYPE (INBOUND: to the VM, OUTBOUND: from it), RANGE (TCP/UDP destination
//! ports, `22,80:90`), ICMP_TYPE / ICMPV6_TYPE (`8` or `8/0`), and the peer: IP (or IP6,
//! IP6_GLOBAL, IP6_ULA) + SIZE consecutive addresses; no peer means any address.

use crate::{Error, Result};
use one_proto::template::Vector;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Traffic to the VM.
    Inbound,
    /// Traffic from the VM.
    Outbound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    All,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// ESP (OpenNebula's IPSEC).
    Ipsec,
}

/// An ICMP type with an optional code.
pub type IcmpType = (u8, Option<u8>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SgRule {
    pub group: i64,
    pub direction: Direction,
    pub protocol: Protocol,
    /// Destination port ranges (inclusive); empty = any port.
    pub ports: Vec<(u16, u16)>,
    pub icmp_type: Option<IcmpType>,
    pub icmpv6_type: Option<IcmpType>,
    /// Whether the rule names its peer (IP/SIZE); a named peer without addresses (a
    /// NETWORK_ID whose range has no IP) matches nothing, as in OpenNebula.
    pub peer: bool,
    pub v4: Vec<(Ipv4Addr, Ipv4Addr)>,
    pub v6: Vec<(Ipv6Addr, Ipv6Addr)>,
}

fn nonempty<'a>(v: &'a Vector, k: &str) -> Option<&'a str> {
    v.get(k).map(str::trim).filter(|s| !s.is_empty())
}

fn parse_icmp(what: &str, s: &str) -> std::result::Result<IcmpType, String> {
    let (t, c) = match s.split_once('/') {
        Some((t, c)) => (t, Some(c)),
        None => (s, None),
    };
    let t: u8 = t
        .trim()
        .parse()
        .map_err(|_| format!("{what} {s:?} is not a type (0-255) or type/code"))?;
    let c = match c {
        Some(c) => Some(
            c.trim()
                .parse()
                .map_err(|_| format!("{what} {s:?} has a bad code"))?,
        ),
        None => None,
    };
    Ok((t, c))
}

/// `22,80:90` → [(22, 22), (80, 90)].
pub fn parse_ports(s: &str) -> std::result::Result<Vec<(u16, u16)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (a, b) = p.split_once(':').unwrap_or((p, p));
            let a: u16 = a
                .trim()
                .parse()
                .map_err(|_| format!("RANGE {s:?}: {p:?} is not a port"))?;
            let b: u16 = b
                .trim()
                .parse()
                .map_err(|_| format!("RANGE {s:?}: {p:?} is not a port"))?;
            if b < a {
                return Err(format!("RANGE {s:?}: {p:?} ends before it starts"));
            }
            Ok((a, b))
        })
        .collect()
}

fn span_v4(start: Ipv4Addr, size: u128) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let s = u32::from(start) as u128;
    let e = s.checked_add(size.checked_sub(1)?)?;
    (e <= u32::MAX as u128).then(|| (start, Ipv4Addr::from(e as u32)))
}

fn span_v6(start: Ipv6Addr, size: u128) -> Option<(Ipv6Addr, Ipv6Addr)> {
    let s = u128::from(start);
    let e = s.checked_add(size.checked_sub(1)?)?;
    Some((start, Ipv6Addr::from(e)))
}

impl SgRule {
    pub fn from_vector(v: &Vector) -> Result<SgRule> {
        let group: i64 = nonempty(v, "SECURITY_GROUP_ID")
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1);
        let bad = |m: String| Error::Refused(format!("security group {group}: rule {m}"));
        let protocol = match nonempty(v, "PROTOCOL")
            .unwrap_or("")
            .to_ascii_uppercase()
            .as_str()
        {
            "ALL" => Protocol::All,
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "ICMP" => Protocol::Icmp,
            "ICMPV6" => Protocol::Icmpv6,
            "IPSEC" => Protocol::Ipsec,
            other => {
                return Err(bad(format!(
                    "PROTOCOL {other:?} is not one of ALL, TCP, UDP, ICMP, ICMPV6, IPSEC"
                )));
            }
        };
        let direction = match nonempty(v, "RULE_TYPE")
            .unwrap_or("")
            .to_ascii_uppercase()
            .as_str()
        {
            "INBOUND" => Direction::Inbound,
            "OUTBOUND" => Direction::Outbound,
            other => {
                return Err(bad(format!(
                    "RULE_TYPE {other:?} is not INBOUND or OUTBOUND"
                )));
            }
        };
        let ports = match nonempty(v, "RANGE") {
            Some(r) if matches!(protocol, Protocol::Tcp | Protocol::Udp) => {
                parse_ports(r).map_err(bad)?
            }
            Some(r) => return Err(bad(format!("RANGE {r:?} needs PROTOCOL TCP or UDP"))),
            None => Vec::new(),
        };
        let icmp_type = nonempty(v, "ICMP_TYPE")
            .map(|s| parse_icmp("ICMP_TYPE", s))
            .transpose()
            .map_err(bad)?;
        let icmpv6_type = nonempty(v, "ICMPV6_TYPE")
            .map(|s| parse_icmp("ICMPV6_TYPE", s))
            .transpose()
            .map_err(bad)?;
        let size_s = nonempty(v, "SIZE");
        let size: Option<u128> = size_s
            .map(|s| {
                s.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad(format!("SIZE {s:?} is not a positive number")))
            })
            .transpose()?;
        let mut rule = SgRule {
            group,
            direction,
            protocol,
            ports,
            icmp_type,
            icmpv6_type,
            peer: size.is_some() || nonempty(v, "IP").is_some(),
            v4: Vec::new(),
            v6: Vec::new(),
        };
        for k in ["IP", "IP6", "IP6_GLOBAL", "IP6_ULA"] {
            let Some(s) = nonempty(v, k) else { continue };
            let size = size.ok_or_else(|| bad(format!("{k} {s} needs SIZE")))?;
            let ip: IpAddr = s
                .parse()
                .map_err(|_| bad(format!("{k} {s:?} is not an address")))?;
            let too_big = || bad(format!("{k} {s} + SIZE {size} leaves the address space"));
            match ip {
                IpAddr::V4(a) => rule.v4.push(span_v4(a, size).ok_or_else(too_big)?),
                IpAddr::V6(a) => rule.v6.push(span_v6(a, size).ok_or_else(too_big)?),
            }
        }
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use one_proto::template::Template;

    fn rule(text: &str) -> Result<SgRule> {
        let t = Template::parse(&format!(
            "SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=100, {text}]"
        ))
        .unwrap();
        SgRule::from_vector(t.vector("SECURITY_GROUP_RULE").unwrap())
    }

    #[test]
    fn rules_are_read() {
        let r = rule("PROTOCOL=TCP, RULE_TYPE=inbound, RANGE=\"22,80:90\", IP=10.0.0.1, SIZE=10")
            .unwrap();
        assert_eq!(r.direction, Direction::Inbound);
        assert_eq!(r.ports, [(22, 22), (80, 90)]);
        assert_eq!(
            r.v4,
            [("10.0.0.1".parse().unwrap(), "10.0.0.10".parse().unwrap())]
        );
        assert!(r.peer);
        let r = rule("PROTOCOL=ICMP, RULE_TYPE=OUTBOUND, ICMP_TYPE=8").unwrap();
        assert_eq!((r.icmp_type, r.peer), (Some((8, None)), false));
        let r = rule("PROTOCOL=ALL, RULE_TYPE=OUTBOUND, IP6_GLOBAL=\"2001:db8::\", IP6_ULA=\"fd00::\", SIZE=4").unwrap();
        assert_eq!(r.v6.len(), 2);
        assert_eq!(r.v6[0].1, "2001:db8::3".parse::<Ipv6Addr>().unwrap());
        // A NETWORK_ID rule of a range without IP: a peer with no address matches nothing.
        let r = rule(
            "PROTOCOL=ALL, RULE_TYPE=OUTBOUND, NETWORK_ID=3, SIZE=10, MAC=\"02:00:00:00:00:01\"",
        )
        .unwrap();
        assert!(r.peer && r.v4.is_empty() && r.v6.is_empty());
    }

    #[test]
    fn bad_rules_name_their_group_and_attribute() {
        for (t, want) in [
            ("PROTOCOL=GRE, RULE_TYPE=inbound", "PROTOCOL"),
            ("PROTOCOL=TCP, RULE_TYPE=sideways", "RULE_TYPE"),
            (
                "PROTOCOL=ICMP, RULE_TYPE=inbound, RANGE=22",
                "needs PROTOCOL TCP",
            ),
            (
                "PROTOCOL=TCP, RULE_TYPE=inbound, RANGE=\"90:80\"",
                "ends before",
            ),
            ("PROTOCOL=TCP, RULE_TYPE=inbound, IP=10.0.0.1", "needs SIZE"),
            (
                "PROTOCOL=TCP, RULE_TYPE=inbound, IP=255.255.255.255, SIZE=2",
                "address space",
            ),
            (
                "PROTOCOL=ICMP, RULE_TYPE=inbound, ICMP_TYPE=echo",
                "ICMP_TYPE",
            ),
        ] {
            let e = rule(t).unwrap_err().to_string();
            assert!(
                e.starts_with("security group 100: rule") && e.contains(want),
                "{t}: {e}"
            );
        }
    }
}
