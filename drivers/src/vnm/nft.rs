//! Security groups and anti-spoofing with nftables: the rules are rendered as text and
//! loaded with one `nft -f` per operation, one transaction for however many NICs (Incus's
//! habit: render, load atomically, remove by deleting chains).
//!
//! ```text
//! table bridge one_rs
//!   map nic_out { ifname : verdict }  tap → jump vm<V>_nic<N>_o      frames from the VM
//!   map nic_in  { ifname : verdict }  tap → jump vm<V>_nic<N>_i      frames to the VM
//!   chain fwd_out (forward, priority 0)   iifname vmap @nic_out
//!   chain fwd_in  (forward, priority 10)  oifname vmap @nic_in
//!   chain in_out  (input, priority 0)     iifname vmap @nic_out      VM → host
//!   chain out_in  (output, priority 0)    oifname vmap @nic_in       host → VM
//!   chain vm<V>_nic<N>_o    anti-spoofing drops (MAC, ARP, IPv4, IPv6, VLAN tags), DHCP
//!                           discovery accepted, then `jump vm<V>_nic<N>_og`
//!   chain vm<V>_nic<N>_og   `jump p<hash>_o`       (NICs with security groups)
//!   chain vm<V>_nic<N>_i    `jump p<hash>_i`
//!   chain p<hash>_o / _i    a *profile*: the rules of one set of groups, shared by every NIC
//!                           with those groups and rules: non-IP, neighbour discovery and
//!                           replies accepted, each allowed flow accepted, the rest dropped
//! ```
//!
//! A frame between two filtered NICs passes the sender's chains in `fwd_out` and the
//! receiver's in `fwd_in` (an `accept` ends one base chain, not the hook; a `drop` ends all).
//! A NIC without security groups keeps only its anti-spoofing rules. The NIC chains are keyed
//! by the tap's name, so they are loaded before the tap exists (net_pre, the destination of a
//! migration) and nothing runs unfiltered in between. Maps make the lookup one hash per frame
//! however many NICs a host has.
//!
//! Profiles are named by a hash of their rules, so a VM still carrying an older version of a
//! group keeps it while its neighbours move on, and a rule change touches only two one-rule
//! chains per NIC: a change of a group's rules reaches hundreds of NICs in one small
//! transaction. A profile no NIC uses any more is deleted in the transaction that leaves it.
//!
//! "Replies to its own connections" need conntrack. Bridge conntrack (the kernel's
//! nf_conntrack_bridge) is used directly where the kernel has it ([`CtMode::Bridge`]).
//! Elsewhere the IP layer's conntrack sees bridged traffic through br_netfilter, and an inet
//! chain hands its verdict to the bridge rules in one bit of the packet mark
//! ([`CtMode::Mark`]): cleared for every frame when it enters the bridge, set for packets of
//! established flows. The bridge rules read only that bit.

use super::nic::NicNet;
use super::sg::{Direction, Protocol, SgRule};
use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The table name in both families.
pub const TABLE: &str = "one_rs";

/// How the rules tell replies to a NIC's own connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtMode {
    /// `ct state` in the bridge family (nf_conntrack_bridge).
    Bridge,
    /// This bit of the packet mark, set by the inet chains (br_netfilter).
    Mark(u32),
}

/// The chain of NIC `nic` of VM `vm` (`o`, `og` or `i`).
pub fn chain(vm: i64, nic: i64, part: &str) -> String {
    format!("vm{vm}_nic{nic}_{part}")
}

/// A profile: the rules of one set of security groups, in both directions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// `p<16 hex digits>`; the chains are `<name>_o` and `<name>_i`.
    pub name: String,
    pub out: Vec<String>,
    pub inb: Vec<String>,
}

/// FNV-1a: names profiles by their content (no security property is needed of it).
fn fnv64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Profile {
    /// The profile of a NIC with these rules (its groups') under conntrack mode `ct`.
    pub fn of(rules: &[&SgRule], ct: CtMode) -> Profile {
        let state = match ct {
            CtMode::Bridge => "ct state established,related accept".to_string(),
            CtMode::Mark(bit) => format!("meta mark & {bit:#010x} == {bit:#010x} accept"),
        };
        let mut out = vec![
            "meta protocol != { ip, ip6 } accept".to_string(),
            "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept"
                .to_string(),
            state.clone(),
        ];
        let mut inb = vec![
            "meta protocol != { ip, ip6 } accept".to_string(),
            "icmpv6 type { nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } accept"
                .to_string(),
            state,
        ];
        // Sorted and unique: the same groups give the same profile whatever their order.
        let mut o_rules: Vec<String> = Vec::new();
        let mut i_rules: Vec<String> = Vec::new();
        for r in rules {
            let lines = rule_lines(r);
            match r.direction {
                Direction::Outbound => o_rules.extend(lines),
                Direction::Inbound => i_rules.extend(lines),
            }
        }
        for v in [&mut o_rules, &mut i_rules] {
            v.sort();
            v.dedup();
        }
        out.extend(o_rules);
        inb.extend(i_rules);
        out.push("drop".into());
        inb.push("drop".into());
        let name = format!(
            "p{:016x}",
            fnv64(&format!("{}\n--\n{}", out.join("\n"), inb.join("\n")))
        );
        Profile { name, out, inb }
    }
}

/// A script under construction.
pub struct Script {
    text: String,
    nics: usize,
}

impl Script {
    /// An empty script, for a host that has the table, maps and base chains already.
    pub fn bare() -> Script {
        Script {
            text: String::new(),
            nics: 0,
        }
    }

    /// Starts a script: the table, its maps and base chains (their rules re-added in the same
    /// transaction, so loading this again changes nothing), and the conntrack plumbing of
    /// `ct` when the NICs in it need state.
    pub fn new(ct: Option<CtMode>) -> Script {
        let mut s = String::new();
        let t = TABLE;
        let _ = writeln!(s, "add table bridge {t}");
        for m in ["nic_out", "nic_in"] {
            let _ = writeln!(s, "add map bridge {t} {m} {{ type ifname : verdict ; }}");
        }
        for (chain, hook, prio, rule) in [
            ("fwd_out", "forward", 0, "iifname vmap @nic_out"),
            ("fwd_in", "forward", 10, "oifname vmap @nic_in"),
            ("in_out", "input", 0, "iifname vmap @nic_out"),
            ("out_in", "output", 0, "oifname vmap @nic_in"),
        ] {
            let _ = writeln!(
                s,
                "add chain bridge {t} {chain} {{ type filter hook {hook} priority {prio} ; policy accept ; }}"
            );
            let _ = writeln!(s, "flush chain bridge {t} {chain}");
            let _ = writeln!(s, "add rule bridge {t} {chain} {rule}");
        }
        if let Some(CtMode::Mark(bit)) = ct {
            let clear = !bit;
            // Every frame enters the bridge without the bit (a mark that came with a frame,
            // e.g. from the outer packet of a VXLAN tunnel, must not count).
            let _ = writeln!(
                s,
                "add chain bridge {t} prerouting {{ type filter hook prerouting priority -300 ; policy accept ; }}"
            );
            let _ = writeln!(s, "flush chain bridge {t} prerouting");
            let _ = writeln!(
                s,
                "add rule bridge {t} prerouting meta mark set meta mark and {clear:#010x}"
            );
            let _ = writeln!(s, "add table inet {t}");
            for chain in ["prerouting", "output"] {
                let _ = writeln!(
                    s,
                    "add chain inet {t} {chain} {{ type filter hook {chain} priority -150 ; policy accept ; }}"
                );
                let _ = writeln!(s, "flush chain inet {t} {chain}");
                if chain == "output" {
                    let _ = writeln!(
                        s,
                        "add rule inet {t} {chain} meta mark set meta mark and {clear:#010x}"
                    );
                }
                let _ = writeln!(
                    s,
                    "add rule inet {t} {chain} ct state established,related meta mark set meta mark or {bit:#010x}"
                );
            }
        }
        Script { text: s, nics: 0 }
    }

    /// How many NICs the script sets or removes.
    pub fn nics(&self) -> usize {
        self.nics
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    fn line(&mut self, l: impl std::fmt::Display) {
        let _ = writeln!(self.text, "{l}");
    }

    /// A chain made (when missing) and emptied.
    fn fresh(&mut self, c: &str) {
        let t = TABLE;
        self.line(format_args!("add chain bridge {t} {c}"));
        self.line(format_args!("flush chain bridge {t} {c}"));
    }

    /// A chain removed whether it exists or not.
    fn gone(&mut self, c: &str) {
        self.fresh(c);
        self.line(format_args!("delete chain bridge {TABLE} {c}"));
    }

    /// A map entry removed whether it exists or not (added first, so the deletion finds it;
    /// its chain must exist).
    fn unmap(&mut self, map: &str, tap: &str, c: &str) {
        let t = TABLE;
        self.line(format_args!("add chain bridge {t} {c}"));
        self.line(format_args!(
            "add element bridge {t} {map} {{ \"{tap}\" : jump {c} }}"
        ));
        self.line(format_args!(
            "delete element bridge {t} {map} {{ \"{tap}\" }}"
        ));
    }

    /// Loads a profile's chains (replacing them: loading one twice changes nothing).
    pub fn add_profile(&mut self, p: &Profile) {
        for (dir, rules) in [("o", &p.out), ("i", &p.inb)] {
            let c = format!("{}_{dir}", p.name);
            self.fresh(&c);
            for r in rules {
                self.line(format_args!("add rule bridge {TABLE} {c} {r}"));
            }
        }
    }

    /// Deletes a profile no NIC jumps to any more.
    pub fn delete_profile(&mut self, name: &str) {
        self.gone(&format!("{name}_o"));
        self.gone(&format!("{name}_i"));
    }

    /// Removes a NIC's chains and map entries, whether they exist or not.
    pub fn remove(&mut self, vm: i64, nic: i64, tap: &str) {
        self.nics += 1;
        let (o, og, i) = (
            chain(vm, nic, "o"),
            chain(vm, nic, "og"),
            chain(vm, nic, "i"),
        );
        self.unmap("nic_out", tap, &o);
        self.unmap("nic_in", tap, &i);
        for c in [&o, &og, &i] {
            self.gone(c);
        }
    }

    /// Sets NIC `nic` of VM `vm`: its anti-spoofing rules, and a jump to `profile` (its
    /// groups' rules, loaded by [`Script::add_profile`]) when it has security groups. A NIC
    /// that needs no filtering has its chains removed.
    pub fn set(&mut self, vm: i64, nic: &NicNet, profile: Option<&str>) {
        let Some(tap) = nic.tap.as_deref() else {
            return;
        };
        if !nic.needs_filter() {
            self.remove(vm, nic.nic_id, tap);
            return;
        }
        self.nics += 1;
        let t = TABLE;
        let (o, og, i) = (
            chain(vm, nic.nic_id, "o"),
            chain(vm, nic.nic_id, "og"),
            chain(vm, nic.nic_id, "i"),
        );
        match profile {
            Some(p) => {
                self.fresh(&og);
                self.line(format_args!("add rule bridge {t} {og} jump {p}_o"));
                self.fresh(&i);
                self.line(format_args!("add rule bridge {t} {i} jump {p}_i"));
            }
            None => {
                // The outbound chain is rewritten below without the jump first.
                self.fresh(&o);
                self.unmap("nic_in", tap, &i);
                self.gone(&i);
                self.gone(&og);
            }
        }
        self.fresh(&o);
        for r in spoof_lines(nic) {
            self.line(format_args!("add rule bridge {t} {o} {r}"));
        }
        if profile.is_some() {
            self.line(format_args!("add rule bridge {t} {o} jump {og}"));
            self.line(format_args!(
                "add element bridge {t} nic_in {{ \"{tap}\" : jump {i} }}"
            ));
        }
        self.line(format_args!(
            "add element bridge {t} nic_out {{ \"{tap}\" : jump {o} }}"
        ));
    }

    /// Repoints a NIC that keeps its anti-spoofing rules at another profile (a group's rules
    /// changed): two one-rule chains.
    pub fn repoint(&mut self, vm: i64, nic: i64, profile: &str) {
        self.nics += 1;
        let t = TABLE;
        let (og, i) = (chain(vm, nic, "og"), chain(vm, nic, "i"));
        self.fresh(&og);
        self.line(format_args!("add rule bridge {t} {og} jump {profile}_o"));
        self.fresh(&i);
        self.line(format_args!("add rule bridge {t} {i} jump {profile}_i"));
    }
}

fn set_of<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    format!("{{ {} }}", v.join(", "))
}

/// The anti-spoofing rules of a NIC's outbound chain (frames the VM sends).
pub fn spoof_lines(nic: &NicNet) -> Vec<String> {
    let mut out = Vec::new();
    // VLAN-tagged frames would carry IP past every rule below.
    out.push("meta protocol { 0x8100, 0x88a8 } drop".to_string());
    if nic.filter_mac_spoofing
        && let Some(mac) = &nic.mac
    {
        out.push(format!("ether saddr != {mac} drop"));
    }
    if nic.filter_ip_spoofing {
        let v4: Vec<Ipv4Addr> = nic.ipv4.clone();
        // 0.0.0.0: ARP probes and DHCP before the guest has its address.
        out.push(format!(
            "meta protocol arp arp saddr ip != {} drop",
            set_of(std::iter::once(Ipv4Addr::UNSPECIFIED).chain(v4.iter().copied()))
        ));
        out.push(
            "meta protocol ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept"
                .to_string(),
        );
        if v4.is_empty() {
            out.push("meta protocol ip drop".to_string());
        } else {
            out.push(format!("meta protocol ip ip saddr != {} drop", set_of(&v4)));
        }
        // :: for duplicate address detection; the link-local address is in ipv6.
        out.push(format!(
            "meta protocol ip6 ip6 saddr != {} drop",
            set_of(std::iter::once(Ipv6Addr::UNSPECIFIED).chain(nic.ipv6.iter().copied()))
        ));
    }
    out
}

fn range<T: std::fmt::Display + PartialEq>(a: &T, b: &T) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

/// One security-group rule as nft rules accepting what it allows (one per address family
/// when it names peers; none when its peer has no address).
pub fn rule_lines(r: &SgRule) -> Vec<String> {
    let mut l4 = String::new();
    match r.protocol {
        Protocol::All => {}
        Protocol::Tcp | Protocol::Udp => {
            l4.push_str(if r.protocol == Protocol::Tcp {
                "meta l4proto tcp"
            } else {
                "meta l4proto udp"
            });
            if !r.ports.is_empty() {
                let ports = r.ports.iter().map(|(a, b)| range(a, b));
                let _ = write!(l4, " th dport {}", set_of(ports));
            }
        }
        Protocol::Icmp => {
            l4.push_str("meta l4proto icmp");
            if let Some((t, c)) = r.icmp_type {
                let _ = write!(l4, " icmp type {t}");
                if let Some(c) = c {
                    let _ = write!(l4, " icmp code {c}");
                }
            }
        }
        Protocol::Icmpv6 => {
            l4.push_str("meta l4proto ipv6-icmp");
            if let Some((t, c)) = r.icmpv6_type {
                let _ = write!(l4, " icmpv6 type {t}");
                if let Some(c) = c {
                    let _ = write!(l4, " icmpv6 code {c}");
                }
            }
        }
        Protocol::Ipsec => l4.push_str("meta l4proto esp"),
    }
    let join = |addr: String| {
        let mut parts: Vec<&str> = Vec::new();
        if !addr.is_empty() {
            parts.push(&addr);
        }
        if !l4.is_empty() {
            parts.push(&l4);
        }
        parts.push("accept");
        parts.join(" ")
    };
    if !r.peer {
        return vec![join(String::new())];
    }
    let dir = match r.direction {
        Direction::Inbound => "saddr",
        Direction::Outbound => "daddr",
    };
    let mut out = Vec::new();
    if !r.v4.is_empty() && r.protocol != Protocol::Icmpv6 {
        let set = set_of(r.v4.iter().map(|(a, b)| range(a, b)));
        out.push(join(format!("ip {dir} {set}")));
    }
    if !r.v6.is_empty() && r.protocol != Protocol::Icmp {
        let set = set_of(r.v6.iter().map(|(a, b)| range(a, b)));
        out.push(join(format!("ip6 {dir} {set}")));
    }
    out
}

/// The NICs whose chains the table holds, with the profile each jumps to, read from
/// `nft -j list table bridge one_rs` (after an agent restart the host still has the chains
/// the previous agent loaded).
pub fn nics_in_listing(json: &str) -> Vec<((i64, i64), Option<String>)> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let key_of = |chain: &str| -> Option<((i64, i64), String)> {
        let rest = chain.strip_prefix("vm")?;
        let (vm, rest) = rest.split_once("_nic")?;
        let (nic, part) = rest.split_once('_')?;
        Some(((vm.parse().ok()?, nic.parse().ok()?), part.to_string()))
    };
    let mut out: std::collections::BTreeMap<(i64, i64), Option<String>> = Default::default();
    for item in v["nftables"].as_array().into_iter().flatten() {
        if let Some(name) = item["chain"]["name"].as_str()
            && let Some((key, _)) = key_of(name)
        {
            out.entry(key).or_default();
        }
        let rule = &item["rule"];
        let Some((key, part)) = rule["chain"].as_str().and_then(key_of) else {
            continue;
        };
        if part != "i" {
            continue;
        }
        for e in rule["expr"].as_array().into_iter().flatten() {
            if let Some(p) = e["jump"]["target"]
                .as_str()
                .and_then(|t| t.strip_suffix("_i"))
            {
                out.insert(key, Some(p.to_string()));
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_named_by_their_rules_not_their_order() {
        let t = one_proto::template::Template::parse(
            "SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=1, PROTOCOL=TCP, RULE_TYPE=INBOUND, RANGE=22]\n\
             SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=2, PROTOCOL=ICMP, RULE_TYPE=INBOUND]",
        )
        .unwrap();
        let rules: Vec<SgRule> = t
            .vectors("SECURITY_GROUP_RULE")
            .map(|v| SgRule::from_vector(v).unwrap())
            .collect();
        let a = Profile::of(&[&rules[0], &rules[1]], CtMode::Bridge);
        let b = Profile::of(&[&rules[1], &rules[0]], CtMode::Bridge);
        assert_eq!(a, b);
        assert_ne!(a.name, Profile::of(&[&rules[0]], CtMode::Bridge).name);
        assert_ne!(
            a.name,
            Profile::of(&[&rules[0], &rules[1]], CtMode::Mark(1)).name
        );
    }

    #[test]
    fn nic_profiles_are_read_back_from_a_listing() {
        let json = r#"{"nftables":[{"metainfo":{}},
            {"chain":{"family":"bridge","table":"one_rs","name":"vm7_nic0_o","handle":1}},
            {"chain":{"family":"bridge","table":"one_rs","name":"vm9_nic2_o","handle":2}},
            {"chain":{"family":"bridge","table":"one_rs","name":"fwd_out","handle":3}},
            {"rule":{"family":"bridge","table":"one_rs","chain":"vm7_nic0_i","handle":5,
                     "expr":[{"jump":{"target":"p00000000000000ab_i"}}]}},
            {"rule":{"family":"bridge","table":"one_rs","chain":"vm7_nic0_o","handle":6,
                     "expr":[{"jump":{"target":"vm7_nic0_og"}}]}}]}"#;
        assert_eq!(
            nics_in_listing(json),
            [
                ((7, 0), Some("p00000000000000ab".to_string())),
                ((9, 2), None)
            ]
        );
        assert!(nics_in_listing("not json").is_empty());
    }
}
