//! Security groups and anti-spoofing with nftables: the rules of every NIC are rendered as
//! text and loaded with one `nft -f` per operation, one transaction for however many NICs
//! (Incus's habit: render, load atomically, remove by deleting the NIC's chains).
//!
//! ```text
//! table bridge one_rs
//!   map nic_out { ifname : verdict }   tap → jump vm<V>_nic<N>_o   (frames from the VM)
//!   map nic_in  { ifname : verdict }   tap → jump vm<V>_nic<N>_i   (frames to the VM)
//!   chain forward (hook forward)   iifname vmap @nic_out ; oifname vmap @nic_in
//!   chain input   (hook input)     iifname vmap @nic_out        VM → host
//!   chain output  (hook output)    oifname vmap @nic_in         host → VM
//!   chain vm<V>_nic<N>_o   anti-spoofing drops; then, with security groups: non-IP return,
//!                          neighbour discovery return, replies return, allowed → return, drop
//!   chain vm<V>_nic<N>_i   with security groups: non-IP return, ND return, replies return,
//!                          allowed → return, drop
//! ```
//!
//! Frames between two filtered NICs pass the sender's `_o` chain, then the receiver's `_i`
//! chain ("return" hands the frame on). The chains are keyed by the tap's name, so they can
//! be loaded before the tap exists (net_pre, or the destination of a migration) and nothing
//! is ever unfiltered in between. Maps make the lookup one hash per frame however many NICs
//! a host has.
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

/// The chains of NIC `nic` of VM `vm`.
pub fn chain(vm: i64, nic: i64, dir: Direction) -> String {
    let d = match dir {
        Direction::Outbound => "o",
        Direction::Inbound => "i",
    };
    format!("vm{vm}_nic{nic}_{d}")
}

fn map_of(dir: Direction) -> &'static str {
    match dir {
        Direction::Outbound => "nic_out",
        Direction::Inbound => "nic_in",
    }
}

/// A script under construction.
pub struct Script {
    text: String,
    nics: usize,
}

impl Script {
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
        for (chain, rule) in [
            ("forward", "iifname vmap @nic_out\noifname vmap @nic_in"),
            ("input", "iifname vmap @nic_out"),
            ("output", "oifname vmap @nic_in"),
        ] {
            let _ = writeln!(
                s,
                "add chain bridge {t} {chain} {{ type filter hook {chain} priority 0 ; policy accept ; }}"
            );
            let _ = writeln!(s, "flush chain bridge {t} {chain}");
            for r in rule.lines() {
                let _ = writeln!(s, "add rule bridge {t} {chain} {r}");
            }
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
            for (chain, hook) in [("prerouting", "prerouting"), ("output", "output")] {
                let _ = writeln!(
                    s,
                    "add chain inet {t} {chain} {{ type filter hook {hook} priority -150 ; policy accept ; }}"
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

    /// Removes a NIC's chains and map entries, whether they exist or not (each is added
    /// first, so the deletions always find it).
    pub fn remove(&mut self, vm: i64, nic: i64, tap: &str) {
        self.nics += 1;
        for dir in [Direction::Outbound, Direction::Inbound] {
            self.remove_dir(vm, nic, tap, dir);
        }
    }

    fn remove_dir(&mut self, vm: i64, nic: i64, tap: &str, dir: Direction) {
        let (t, c, m) = (TABLE, chain(vm, nic, dir), map_of(dir));
        self.line(format_args!("add chain bridge {t} {c}"));
        self.line(format_args!(
            "add element bridge {t} {m} {{ \"{tap}\" : jump {c} }}"
        ));
        self.line(format_args!(
            "delete element bridge {t} {m} {{ \"{tap}\" }}"
        ));
        self.line(format_args!("flush chain bridge {t} {c}"));
        self.line(format_args!("delete chain bridge {t} {c}"));
    }

    /// Sets the rules of NIC `nic` of VM `vm` (its groups' `rules`), replacing what it had.
    /// `ct` must be given when the NIC has security groups. A NIC that needs no filtering
    /// has its chains removed.
    pub fn set(&mut self, vm: i64, nic: &NicNet, rules: &[&SgRule], ct: Option<CtMode>) {
        let Some(tap) = nic.tap.as_deref() else {
            return;
        };
        if !nic.needs_filter() {
            self.remove(vm, nic.nic_id, tap);
            return;
        }
        self.nics += 1;
        let out = out_chain(nic, rules, ct);
        self.fill(vm, nic.nic_id, tap, Direction::Outbound, &out);
        if nic.security_groups.is_some() {
            let inb = in_chain(rules, ct);
            self.fill(vm, nic.nic_id, tap, Direction::Inbound, &inb);
        } else {
            self.remove_dir(vm, nic.nic_id, tap, Direction::Inbound);
        }
    }

    fn fill(&mut self, vm: i64, nic: i64, tap: &str, dir: Direction, rules: &[String]) {
        let (t, c, m) = (TABLE, chain(vm, nic, dir), map_of(dir));
        self.line(format_args!("add chain bridge {t} {c}"));
        self.line(format_args!("flush chain bridge {t} {c}"));
        for r in rules {
            self.line(format_args!("add rule bridge {t} {c} {r}"));
        }
        self.line(format_args!(
            "add element bridge {t} {m} {{ \"{tap}\" : jump {c} }}"
        ));
    }
}

fn state_rule(ct: Option<CtMode>) -> Option<String> {
    match ct? {
        CtMode::Bridge => Some("ct state established,related return".into()),
        CtMode::Mark(bit) => Some(format!("meta mark & {bit:#010x} == {bit:#010x} return")),
    }
}

fn set_of<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    format!("{{ {} }}", v.join(", "))
}

/// The rules of a NIC's outbound chain (frames the VM sends).
pub fn out_chain(nic: &NicNet, rules: &[&SgRule], ct: Option<CtMode>) -> Vec<String> {
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
            "meta protocol ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 return"
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
    if nic.security_groups.is_some() {
        out.push("meta protocol != { ip, ip6 } return".to_string());
        out.push(
            "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } return"
                .to_string(),
        );
        out.extend(state_rule(ct));
        for r in rules.iter().filter(|r| r.direction == Direction::Outbound) {
            out.extend(rule_lines(r));
        }
        out.push("drop".to_string());
    }
    out
}

/// The rules of a NIC's inbound chain (frames to the VM); only NICs with security groups
/// have one.
pub fn in_chain(rules: &[&SgRule], ct: Option<CtMode>) -> Vec<String> {
    let mut out = vec![
        "meta protocol != { ip, ip6 } return".to_string(),
        "icmpv6 type { nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } return"
            .to_string(),
    ];
    out.extend(state_rule(ct));
    for r in rules.iter().filter(|r| r.direction == Direction::Inbound) {
        out.extend(rule_lines(r));
    }
    out.push("drop".to_string());
    out
}

fn range<T: std::fmt::Display + PartialEq>(a: &T, b: &T) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

/// One security-group rule as nft rules (one per address family when it names peers).
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
        parts.push("return");
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
