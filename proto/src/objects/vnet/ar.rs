//! Address ranges (AR): a run of SIZE consecutive addresses, each lease being "first address
//! + index" in every form the range has (MAC always; IPv4, IPv6 SLAAC or static IPv6 by TYPE).
//!
//! Leases are kept sparsely (index → owner), so a /8 costs nothing until it is used. Every
//! index fits the range's MAC space: the four low MAC octets never overflow into the prefix.

use super::addr::{
    LINK_LOCAL_PREFIX, ipv4_to_string, ipv6_to_string, mac_to_string, parse_ipv4, parse_ipv6,
    parse_mac, parse_prefix6, slaac,
};
use crate::template::{Vector, canonical_name};
use crate::xml::XmlWriter;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv6Addr;

/// The MAC space of a range: the four low octets (the two high ones are the prefix).
const MAC_SPACE: u64 = 1 << 32;

/// Address range TYPE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ArType {
    Ip4,
    Ip6,
    Ip4Ip6,
    Ether,
    Ip6Static,
    Ip4Ip6Static,
}

impl ArType {
    pub const ALL: [ArType; 6] = [
        ArType::Ip4,
        ArType::Ip6,
        ArType::Ip4Ip6,
        ArType::Ether,
        ArType::Ip6Static,
        ArType::Ip4Ip6Static,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ArType::Ip4 => "IP4",
            ArType::Ip6 => "IP6",
            ArType::Ip4Ip6 => "IP4_6",
            ArType::Ether => "ETHER",
            ArType::Ip6Static => "IP6_STATIC",
            ArType::Ip4Ip6Static => "IP4_6_STATIC",
        }
    }

    pub fn from_name(s: &str) -> Option<ArType> {
        ArType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Has IPv4 addresses (IP, IP_END).
    pub fn has_ip4(self) -> bool {
        matches!(self, ArType::Ip4 | ArType::Ip4Ip6 | ArType::Ip4Ip6Static)
    }

    /// Has SLAAC IPv6 addresses derived from the MAC (GLOBAL_PREFIX, ULA_PREFIX).
    pub fn has_slaac(self) -> bool {
        matches!(self, ArType::Ip6 | ArType::Ip4Ip6)
    }

    /// Has static IPv6 addresses (IP6 + PREFIX_LENGTH).
    pub fn has_ip6_static(self) -> bool {
        matches!(self, ArType::Ip6Static | ArType::Ip4Ip6Static)
    }
}

/// Who holds a lease. A held lease (`one.vn.hold`) belongs to VM -1, as in OpenNebula.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LeaseOwner {
    Vm(i64),
    /// A reservation network holding part of its parent's range.
    Vnet(i64),
    Vrouter(i64),
}

impl LeaseOwner {
    pub const HELD: LeaseOwner = LeaseOwner::Vm(-1);
}

/// One address of a range in all its forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub index: u64,
    pub mac: u64,
    pub ip: Option<u32>,
    /// Static IPv6 (IP6_STATIC ranges).
    pub ip6: Option<u128>,
    /// SLAAC addresses (IP6 ranges): link-local always, ULA and global when prefixed.
    pub ip6_link: Option<u128>,
    pub ip6_ula: Option<u128>,
    pub ip6_global: Option<u128>,
}

impl Address {
    /// Sets the address attributes on a NIC or LEASE vector (MAC, IP, IP6_*).
    pub fn set_on(&self, v: &mut Vector) {
        v.set("MAC", mac_to_string(self.mac));
        if let Some(ip) = self.ip {
            v.set("IP", ipv4_to_string(ip));
        }
        if let Some(ip6) = self.ip6 {
            v.set("IP6", ipv6_to_string(ip6));
        }
        for (name, addr) in [
            ("IP6_LINK", self.ip6_link),
            ("IP6_ULA", self.ip6_ula),
            ("IP6_GLOBAL", self.ip6_global),
        ] {
            if let Some(a) = addr {
                v.set(name, ipv6_to_string(a));
            }
        }
    }
}

/// An address a caller asks for by value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddrRequest {
    Ip(String),
    Ip6(String),
    Mac(String),
}

impl AddrRequest {
    /// Reads IP, IP6 or MAC from a NIC, LEASES or reservation vector: `Ok(None)` when none
    /// is set, an error when more than one is.
    pub fn from_vector(v: &Vector) -> Result<Option<AddrRequest>, &'static str> {
        let get = |n: &str| v.get(n).map(str::trim).filter(|s| !s.is_empty());
        let (ip, ip6, mac) = (get("IP"), get("IP6"), get("MAC"));
        match (ip, ip6, mac) {
            (None, None, None) => Ok(None),
            (Some(ip), None, None) => Ok(Some(AddrRequest::Ip(ip.to_string()))),
            (None, Some(ip6), None) => Ok(Some(AddrRequest::Ip6(ip6.to_string()))),
            (None, None, Some(mac)) => Ok(Some(AddrRequest::Mac(mac.to_string()))),
            _ => Err("Only one attribute MAC, IP or IP6 can be set."),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            AddrRequest::Ip(s) => format!("IP {s}"),
            AddrRequest::Ip6(s) => format!("IP6 {s}"),
            AddrRequest::Mac(s) => format!("MAC {s}"),
        }
    }
}

/// Inputs of a new range that do not come from its template.
#[derive(Clone, Copy, Debug)]
pub struct ArContext {
    /// Two high octets of generated MACs (oned's MAC_PREFIX).
    pub mac_prefix: u16,
    /// A random number; the low MAC octets of ranges without IPv4 or MAC come from it.
    pub random: u32,
}

/// Attributes the range computes or keeps itself: dropped from user input.
const INTERNAL_ATTRS: &[&str] = &[
    "AR_ID",
    "TYPE",
    "IP",
    "IP6",
    "MAC",
    "SIZE",
    "NEXT_INDEX",
    "GLOBAL_PREFIX",
    "ULA_PREFIX",
    "PARENT_NETWORK_AR_ID",
    "PARENT_NETWORK",
    "ALLOCATED",
    "USED_LEASES",
    "LEASES",
    "SHARED",
    "IPAM_MAD",
    "MAC_END",
    "IP_END",
    "IP6_END",
    "IP6_ULA",
    "IP6_ULA_END",
    "IP6_GLOBAL",
    "IP6_GLOBAL_END",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AddressRange {
    pub ar_id: i64,
    pub ar_type: ArType,
    /// First MAC (48 bits).
    pub mac: u64,
    /// First IPv4 address (IPv4 types).
    pub ip: Option<u32>,
    /// First static IPv6 address (static types).
    pub ip6: Option<Ipv6Addr>,
    /// SLAAC prefixes as given (validated; only the upper 64 bits are used).
    pub global_prefix: Option<String>,
    pub ula_prefix: Option<String>,
    pub size: u64,
    /// Where the search for a free address starts (round robin, as OpenNebula).
    pub next_index: u64,
    /// For ranges of a reservation: the parent network's range they come from.
    pub parent_network_ar_id: Option<i64>,
    /// Every other attribute (GATEWAY, DNS, PREFIX_LENGTH, VN_MAD, SECURITY_GROUPS, ...).
    pub attrs: Vector,
    /// index → owner.
    pub leases: BTreeMap<u64, LeaseOwner>,
}

fn user_attrs(v: &Vector) -> Vector {
    let mut out = Vector::new();
    for (name, value) in &v.attrs {
        let name = canonical_name(name);
        if !INTERNAL_ATTRS.contains(&name.as_str()) {
            out.set(&name, value.clone());
        }
    }
    out
}

fn nonempty<'a>(v: &'a Vector, name: &str) -> Option<&'a str> {
    v.get(name).map(str::trim).filter(|s| !s.is_empty())
}

fn parse_prefix_attr(v: &Vector, name: &str, what: &str) -> Result<Option<String>, String> {
    match nonempty(v, name) {
        None => Ok(None),
        Some(p) => match parse_prefix6(p) {
            Some(_) => Ok(Some(p.to_string())),
            None => Err(format!(
                "Wrong format for IP6 {what} address prefix: {p:?} (write the prefix as an \
                 IPv6 address, e.g. 2001:db8::, without a length)"
            )),
        },
    }
}

fn parse_prefix_length(v: &Vector) -> Result<u32, String> {
    nonempty(v, "PREFIX_LENGTH")
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|pl| *pl <= 128)
        .ok_or_else(|| "Wrong or empty PREFIX_LENGTH (an integer from 0 to 128)".to_string())
}

impl AddressRange {
    /// Builds a range from an `AR = [...]` vector (add_ar, allocate), validating it.
    /// Errors read like OpenNebula's, with what to fix.
    pub fn from_vector(ar_id: i64, v: &Vector, ctx: ArContext) -> Result<AddressRange, String> {
        let type_s = v.get("TYPE").unwrap_or("");
        let ar_type = ArType::from_name(type_s).ok_or_else(|| {
            "Unknown or missing address range TYPE. Use IP4, IP6, IP4_6, ETHER, IP6_STATIC or \
             IP4_6_STATIC."
                .to_string()
        })?;
        if v.get("SHARED")
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("YES"))
        {
            return Err("Shared address ranges (SHARED=YES) are not supported.".into());
        }
        if let Some(ipam) = nonempty(v, "IPAM_MAD")
            && ipam != "internal"
        {
            return Err(format!(
                "IPAM_MAD {ipam:?} is not available: only the internal IPAM is supported."
            ));
        }

        let ip = if ar_type.has_ip4() {
            Some(
                nonempty(v, "IP")
                    .and_then(parse_ipv4)
                    .ok_or("Wrong or empty IP attribute")?,
            )
        } else {
            None
        };

        let (global_prefix, ula_prefix) = if ar_type.has_slaac() {
            (
                parse_prefix_attr(v, "GLOBAL_PREFIX", "global")?,
                parse_prefix_attr(v, "ULA_PREFIX", "unique local")?,
            )
        } else {
            (None, None)
        };

        // Static IPv6 ranges without SIZE span the rest of their prefix (span); others need SIZE.
        let mut span = None;
        let ip6 = if ar_type.has_ip6_static() {
            let ip6 = nonempty(v, "IP6")
                .and_then(parse_ipv6)
                .ok_or("Wrong or empty IP6 attribute")?;
            let pl = parse_prefix_length(v)?;
            if nonempty(v, "SIZE").is_none() {
                let host_bits = 128 - pl.max(64);
                let prefix_span: u128 = 1 << host_bits;
                span = Some(prefix_span - (ip6 & (prefix_span - 1)));
            }
            Some(ip6)
        } else {
            None
        };
        let given_size = match span {
            Some(_) => None,
            None => Some(
                nonempty(v, "SIZE")
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|s| *s > 0)
                    .ok_or("Wrong SIZE for address range, it must be an integer greater than 0")?,
            ),
        };

        let mac = match nonempty(v, "MAC") {
            Some(m) => {
                parse_mac(m).ok_or_else(|| format!("Wrong format for MAC attribute: {m}"))?
            }
            None => {
                let low = match ip {
                    Some(ip) => u64::from(ip),
                    // Random low octets, chosen so the whole range fits the MAC space.
                    None => {
                        let size = given_size.unwrap_or(1).min(MAC_SPACE);
                        u64::from(ctx.random) % (MAC_SPACE - size + 1)
                    }
                };
                (u64::from(ctx.mac_prefix) << 32) | low
            }
        };

        // The span is capped to what the MAC (and IPv4) space leaves: OpenNebula would wrap.
        let size = match (given_size, span) {
            (Some(s), _) => s,
            (None, span) => {
                let mut room = MAC_SPACE - (mac & 0xffff_ffff);
                if let Some(ip) = ip {
                    room = room.min((1 << 32) - u64::from(ip));
                }
                span.map_or(room, |s| s.min(u128::from(room)) as u64)
            }
        };

        let ar = AddressRange {
            ar_id,
            ar_type,
            mac,
            ip,
            ip6: ip6.map(Ipv6Addr::from),
            global_prefix,
            ula_prefix,
            size,
            next_index: 0,
            parent_network_ar_id: None,
            attrs: user_attrs(v),
            leases: BTreeMap::new(),
        };
        ar.check_bounds(size)?;
        Ok(ar)
    }

    /// Refuses a size whose last address would overflow the IPv4 space or the MAC space.
    fn check_bounds(&self, size: u64) -> Result<(), String> {
        let last = size - 1;
        if let Some(ip) = self.ip
            && u64::from(ip) + last > u64::from(u32::MAX)
        {
            return Err(format!(
                "IP range overflow: IP {} with SIZE {size} goes past 255.255.255.255",
                ipv4_to_string(ip)
            ));
        }
        if (self.mac & 0xffff_ffff) + last >= MAC_SPACE {
            return Err(format!(
                "MAC range overflow: MAC {} with SIZE {size} goes past {}; use a smaller SIZE \
                 or another MAC",
                mac_to_string(self.mac),
                mac_to_string(self.mac | 0xffff_ffff)
            ));
        }
        if let Some(ip6) = self.ip6
            && u128::from(ip6).checked_add(u128::from(last)).is_none()
        {
            return Err(format!("IP6 range overflow: IP6 {ip6} with SIZE {size}"));
        }
        Ok(())
    }

    /// Applies `one.vn.update_ar`: the new vector replaces the range's attributes, except
    /// TYPE, MAC, IP and IP6 (which cannot change) and the leases. SIZE may change if no
    /// lease falls outside (a reservation's size cannot change).
    pub fn update(&mut self, v: &Vector) -> Result<(), String> {
        let mut attrs = user_attrs(v);
        if self.ar_type.has_ip6_static() {
            match nonempty(v, "PREFIX_LENGTH") {
                Some(_) => {
                    parse_prefix_length(v)?;
                }
                None => {
                    if let Some(old) = self.attrs.get("PREFIX_LENGTH") {
                        attrs.set("PREFIX_LENGTH", old.to_string());
                    }
                }
            }
        } else {
            attrs.remove("PREFIX_LENGTH");
        }
        let (global, ula) = if self.ar_type.has_slaac() {
            (
                parse_prefix_attr(v, "GLOBAL_PREFIX", "global")?,
                parse_prefix_attr(v, "ULA_PREFIX", "unique local")?,
            )
        } else {
            (None, None)
        };
        let size =
            match nonempty(v, "SIZE") {
                None => self.size,
                Some(s) => s.parse::<u64>().ok().filter(|s| *s > 0).ok_or(
                    "Unable to read the SIZE attribute, it must be an integer greater than 0",
                )?,
            };
        if size != self.size {
            if self.parent_network_ar_id.is_some() {
                return Err("The SIZE of a reservation cannot be changed.".into());
            }
            if self.leases.range(size..).next().is_some() {
                return Err(
                    "New SIZE cannot be applied. There are used leases that would fall \
                            outside the range."
                        .into(),
                );
            }
            self.check_bounds(size)?;
        }
        self.size = size;
        if self.next_index >= size {
            self.next_index = 0;
        }
        self.global_prefix = global;
        self.ula_prefix = ula;
        self.attrs = attrs;
        Ok(())
    }

    pub fn used(&self) -> u64 {
        self.leases.len() as u64
    }

    pub fn free(&self) -> u64 {
        self.size.saturating_sub(self.used())
    }

    pub fn is_reservation(&self) -> bool {
        self.parent_network_ar_id.is_some()
    }

    /// The address at `index` (which must be < size).
    pub fn address(&self, index: u64) -> Address {
        let mac = self.mac + index;
        let (ula, global) = if self.ar_type.has_slaac() {
            (
                self.ula_prefix.as_deref().and_then(parse_prefix6),
                self.global_prefix.as_deref().and_then(parse_prefix6),
            )
        } else {
            (None, None)
        };
        Address {
            index,
            mac,
            ip: self.ip.map(|ip| ip.wrapping_add(index as u32)),
            ip6: self
                .ip6
                .map(|ip6| u128::from(ip6).wrapping_add(u128::from(index))),
            ip6_link: self
                .ar_type
                .has_slaac()
                .then(|| slaac(LINK_LOCAL_PREFIX, mac)),
            ip6_ula: ula.map(|p| slaac(p, mac)),
            ip6_global: global.map(|p| slaac(p, mac)),
        }
    }

    /// The index of an address of this range, if it is one.
    pub fn index_of(&self, req: &AddrRequest) -> Option<u64> {
        let index = match req {
            AddrRequest::Mac(s) => parse_mac(s)?.checked_sub(self.mac)?,
            AddrRequest::Ip(s) => u64::from(parse_ipv4(s)?.checked_sub(self.ip?)?),
            AddrRequest::Ip6(s) => {
                let off = parse_ipv6(s)?.checked_sub(u128::from(self.ip6?))?;
                u64::try_from(off).ok()?
            }
        };
        (index < self.size).then_some(index)
    }

    pub fn is_free(&self, index: u64) -> bool {
        index < self.size && !self.leases.contains_key(&index)
    }

    /// The first free index in `[start, end)`.
    fn first_free_in(&self, start: u64, end: u64) -> Option<u64> {
        let mut cand = start;
        for &k in self.leases.range(start..end).map(|(k, _)| k) {
            if k != cand {
                break;
            }
            cand += 1;
        }
        (cand < end).then_some(cand)
    }

    /// Leases the next free address (round robin from NEXT_INDEX, as OpenNebula).
    pub fn allocate(&mut self, owner: LeaseOwner) -> Option<u64> {
        if self.free() == 0 {
            return None;
        }
        let next = self.next_index.min(self.size);
        let index = self
            .first_free_in(next, self.size)
            .or_else(|| self.first_free_in(0, next))?;
        self.leases.insert(index, owner);
        self.next_index = (index + 1) % self.size;
        Some(index)
    }

    /// Leases a given index if it is free.
    pub fn allocate_at(&mut self, index: u64, owner: LeaseOwner) -> bool {
        if !self.is_free(index) {
            return false;
        }
        self.leases.insert(index, owner);
        true
    }

    /// Frees a lease if `owner` holds it.
    pub fn free_index(&mut self, index: u64, owner: LeaseOwner) -> bool {
        if self.leases.get(&index) == Some(&owner) {
            self.leases.remove(&index);
            true
        } else {
            false
        }
    }

    /// Frees every lease of `owner`; returns how many.
    pub fn free_owner(&mut self, owner: LeaseOwner) -> u64 {
        let before = self.leases.len();
        self.leases.retain(|_, o| *o != owner);
        (before - self.leases.len()) as u64
    }

    /// Frees the leases of `owner` in `[first, first + n)`; returns how many.
    pub fn free_range(&mut self, owner: LeaseOwner, first: u64, n: u64) -> u64 {
        let end = first.saturating_add(n);
        let mine: Vec<u64> = self
            .leases
            .range(first..end)
            .filter(|(_, o)| **o == owner)
            .map(|(k, _)| *k)
            .collect();
        for k in &mine {
            self.leases.remove(k);
        }
        mine.len() as u64
    }

    /// The first start of `n` consecutive free indexes within `[from, to)`.
    fn find_run(&self, from: u64, to: u64, n: u64) -> Option<u64> {
        let mut start = from;
        for &k in self.leases.range(from..to).map(|(k, _)| k) {
            if k >= start + n {
                return Some(start);
            }
            start = k + 1;
        }
        (start + n <= to).then_some(start)
    }

    /// Takes `n` consecutive addresses for `owner`, at `start` or wherever they fit
    /// (searching from NEXT_INDEX, as OpenNebula). Returns the first index.
    pub fn reserve(&mut self, owner: LeaseOwner, n: u64, start: Option<u64>) -> Option<u64> {
        if n == 0 || n > self.free() {
            return None;
        }
        let first = match start {
            Some(s) => {
                let end = s.checked_add(n)?;
                if end > self.size || self.leases.range(s..end).next().is_some() {
                    return None;
                }
                s
            }
            None => {
                let next = self.next_index.min(self.size);
                let s = self
                    .find_run(next, self.size, n)
                    .or_else(|| self.find_run(0, self.size, n))?;
                self.next_index = (s + n) % self.size;
                s
            }
        };
        for i in first..first + n {
            self.leases.insert(i, owner);
        }
        Some(first)
    }

    /// The range a reservation gets for `[first, first + n)` of this one: same attributes,
    /// addresses starting at `first`, no leases.
    pub fn reservation_child(&self, new_ar_id: i64, first: u64, n: u64) -> AddressRange {
        let a = self.address(first);
        AddressRange {
            ar_id: new_ar_id,
            ar_type: self.ar_type,
            mac: a.mac,
            ip: a.ip,
            ip6: a.ip6.map(Ipv6Addr::from),
            global_prefix: self.global_prefix.clone(),
            ula_prefix: self.ula_prefix.clone(),
            size: n,
            next_index: 0,
            parent_network_ar_id: Some(self.ar_id),
            attrs: self.attrs.clone(),
            leases: BTreeMap::new(),
        }
    }

    /// Sets on a NIC what a lease at `index` gives it: the addresses, AR_ID and the
    /// range-level VN_MAD, BRIDGE, PHYDEV and VLAN_ID overrides.
    pub fn fill_nic(&self, index: u64, nic: &mut Vector) {
        self.address(index).set_on(nic);
        nic.set("AR_ID", self.ar_id.to_string());
        for name in ["VN_MAD", "BRIDGE", "PHYDEV", "VLAN_ID"] {
            if let Some(v) = nonempty(&self.attrs, name) {
                nic.set(name, v.to_string());
            }
        }
    }

    /// The range's attributes as OpenNebula keeps them (what `update_ar` replaces).
    fn stored_attrs(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("AR_ID".to_string(), self.ar_id.to_string()),
            ("MAC".to_string(), mac_to_string(self.mac)),
            ("NEXT_INDEX".to_string(), self.next_index.to_string()),
            ("SIZE".to_string(), self.size.to_string()),
            ("TYPE".to_string(), self.ar_type.name().to_string()),
        ];
        if let Some(ip) = self.ip {
            out.push(("IP".into(), ipv4_to_string(ip)));
        }
        if let Some(p) = &self.global_prefix {
            out.push(("GLOBAL_PREFIX".into(), p.clone()));
        }
        if let Some(p) = &self.ula_prefix {
            out.push(("ULA_PREFIX".into(), p.clone()));
        }
        if let Some(p) = self.parent_network_ar_id {
            out.push(("PARENT_NETWORK_AR_ID".into(), p.to_string()));
        }
        out.extend(self.attrs.attrs.iter().cloned());
        // Alphabetical, as oned writes vector attributes, except that vnet.xsd wants VLAN_ID
        // between TYPE and ULA_PREFIX.
        out.sort_by(|a, b| xsd_key(&a.0).cmp(xsd_key(&b.0)));
        out
    }

    /// Writes `<AR>`: its attributes, the computed MAC_END / IP_END / IP6_* / USED_LEASES,
    /// then `<LEASES>` with the leases `show` accepts (no LEASES element when `show` is None,
    /// as pool listings).
    pub fn write_xml(&self, w: &mut XmlWriter, show: Option<&dyn Fn(LeaseOwner) -> bool>) {
        w.open("AR");
        for (name, value) in self.stored_attrs() {
            w.text(&name, &value);
        }
        let last = self.address(self.size - 1);
        let first = self.address(0);
        w.text("MAC_END", &mac_to_string(last.mac));
        if let Some(ip) = last.ip {
            w.text("IP_END", &ipv4_to_string(ip));
        }
        if let (Some(a), Some(b)) = (first.ip6_ula, last.ip6_ula) {
            w.text("IP6_ULA", &ipv6_to_string(a))
                .text("IP6_ULA_END", &ipv6_to_string(b));
        }
        if let (Some(a), Some(b)) = (first.ip6_global, last.ip6_global) {
            w.text("IP6_GLOBAL", &ipv6_to_string(a))
                .text("IP6_GLOBAL_END", &ipv6_to_string(b));
        }
        if let (Some(a), Some(b)) = (first.ip6, last.ip6) {
            w.text("IP6", &ipv6_to_string(a))
                .text("IP6_END", &ipv6_to_string(b));
        }
        w.num("USED_LEASES", self.used());
        if let Some(show) = show {
            let mut shown = self.leases.iter().filter(|(_, o)| show(**o)).peekable();
            if shown.peek().is_none() {
                w.empty("LEASES");
            } else {
                w.open("LEASES");
                for (&index, &owner) in shown {
                    let mut lease = Vector::new();
                    self.address(index).set_on(&mut lease);
                    match owner {
                        LeaseOwner::Vm(id) => lease.set("VM", id.to_string()),
                        LeaseOwner::Vnet(id) => lease.set("VNET", id.to_string()),
                        LeaseOwner::Vrouter(id) => lease.set("VROUTER", id.to_string()),
                    }
                    lease.attrs.sort();
                    w.open("LEASE");
                    for (n, v) in &lease.attrs {
                        w.text(n, v);
                    }
                    w.close("LEASE");
                }
                w.close("LEASES");
            }
        }
        w.close("AR");
    }
}

/// Sort key of an AR attribute: its name, except VLAN_ID, which vnet.xsd places right after
/// TYPE.
fn xsd_key(name: &str) -> &str {
    if name == "VLAN_ID" { "TYPE\u{1}" } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;
    use proptest::prelude::*;

    const CTX: ArContext = ArContext {
        mac_prefix: 0x0200,
        random: 0x1234_5678,
    };

    fn ar(text: &str) -> Result<AddressRange, String> {
        let t = Template::parse(text).expect("test template parses");
        AddressRange::from_vector(0, t.vector("AR").expect("AR vector"), CTX)
    }

    #[test]
    fn ip4_sequence_and_mac_derivation() {
        let mut r = ar("AR=[TYPE=IP4, IP=10.0.0.5, SIZE=3]").unwrap();
        assert_eq!(mac_to_string(r.mac), "02:00:0a:00:00:05");
        let leased: Vec<u64> = (0..3)
            .map(|_| r.allocate(LeaseOwner::Vm(1)).unwrap())
            .collect();
        let got: Vec<_> = leased
            .into_iter()
            .map(|i| {
                let a = r.address(i);
                (ipv4_to_string(a.ip.unwrap()), mac_to_string(a.mac))
            })
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.5".to_string(), "02:00:0a:00:00:05".to_string()),
                ("10.0.0.6".into(), "02:00:0a:00:00:06".into()),
                ("10.0.0.7".into(), "02:00:0a:00:00:07".into()),
            ]
        );
        assert_eq!(r.allocate(LeaseOwner::Vm(1)), None, "full");
        assert!(r.free_index(1, LeaseOwner::Vm(1)));
        assert!(!r.free_index(1, LeaseOwner::Vm(1)), "already free");
        assert_eq!(r.allocate(LeaseOwner::Vm(2)), Some(1));
    }

    #[test]
    fn round_robin_continues_after_last_lease() {
        let mut r = ar("AR=[TYPE=IP4, IP=10.0.0.1, SIZE=4]").unwrap();
        assert_eq!(r.allocate(LeaseOwner::Vm(1)), Some(0));
        assert_eq!(r.allocate(LeaseOwner::Vm(1)), Some(1));
        r.free_index(0, LeaseOwner::Vm(1));
        // OpenNebula does not reuse a freed address until the range wraps.
        assert_eq!(r.allocate(LeaseOwner::Vm(1)), Some(2));
        assert_eq!(r.allocate(LeaseOwner::Vm(1)), Some(3));
        assert_eq!(r.allocate(LeaseOwner::Vm(1)), Some(0));
    }

    #[test]
    fn explicit_mac_and_ether_random_mac() {
        let r = ar("AR=[TYPE=IP4, IP=10.0.0.5, MAC=aa:bb:cc:dd:ee:00, SIZE=3]").unwrap();
        assert_eq!(mac_to_string(r.mac), "aa:bb:cc:dd:ee:00");
        let t = Template::parse("AR=[TYPE=ETHER, SIZE=10]").unwrap();
        let ctx = ArContext {
            mac_prefix: 0x0200,
            random: 0xffff_fff8,
        };
        let e = AddressRange::from_vector(0, t.vector("AR").unwrap(), ctx).unwrap();
        assert_eq!(e.mac >> 32, 0x0200, "prefix");
        // The random number modulo the room left for 10 addresses (2^32 - 9).
        assert_eq!(e.mac & 0xffff_ffff, 1);
        assert_eq!(e.ip, None);
        let a = e.address(9);
        assert_eq!(a.mac, e.mac + 9);
        assert_eq!((a.ip, a.ip6, a.ip6_link), (None, None, None));
    }

    #[test]
    fn ip6_slaac_addresses() {
        let r = ar("AR=[TYPE=IP6, MAC=02:00:0a:00:00:05, GLOBAL_PREFIX=\"2001:db8::\", ULA_PREFIX=\"fd00::\", SIZE=2]").unwrap();
        let a = r.address(1);
        assert_eq!(
            ipv6_to_string(a.ip6_global.unwrap()),
            "2001:db8::aff:fe00:6"
        );
        assert_eq!(ipv6_to_string(a.ip6_ula.unwrap()), "fd00::aff:fe00:6");
        assert_eq!(ipv6_to_string(a.ip6_link.unwrap()), "fe80::aff:fe00:6");
        assert_eq!(a.ip, None);
        let both =
            ar("AR=[TYPE=IP4_6, IP=10.0.0.1, GLOBAL_PREFIX=\"2001:db8::\", SIZE=2]").unwrap();
        let b = both.address(0);
        assert_eq!(ipv4_to_string(b.ip.unwrap()), "10.0.0.1");
        assert_eq!(
            ipv6_to_string(b.ip6_global.unwrap()),
            "2001:db8::aff:fe00:1"
        );
    }

    #[test]
    fn ip6_static_ranges() {
        let r = ar("AR=[TYPE=IP6_STATIC, IP6=\"2001:db8::10\", PREFIX_LENGTH=64, SIZE=5]").unwrap();
        assert_eq!(ipv6_to_string(r.address(3).ip6.unwrap()), "2001:db8::13");
        assert_eq!(
            r.index_of(&AddrRequest::Ip6("2001:db8::14".into())),
            Some(4)
        );
        assert_eq!(r.index_of(&AddrRequest::Ip6("2001:db8::15".into())), None);
        assert_eq!(r.attrs.get("PREFIX_LENGTH"), Some("64"));
        // Without SIZE: the rest of the prefix (here a /120 from ::10: 240 addresses).
        let auto = ar("AR=[TYPE=IP6_STATIC, IP6=\"2001:db8::10\", PREFIX_LENGTH=120]").unwrap();
        assert_eq!(auto.size, 240);
        // A /64 is capped to what the MAC space leaves after the first MAC (10.0.0.0 here).
        let big = ar("AR=[TYPE=IP4_6_STATIC, IP=10.0.0.0, IP6=\"2001:db8::\", PREFIX_LENGTH=64]")
            .unwrap();
        assert_eq!(big.size, (1 << 32) - 0x0a00_0000);
        assert!(
            ar("AR=[TYPE=IP6_STATIC, IP6=\"2001:db8::\", SIZE=4]")
                .unwrap_err()
                .contains("PREFIX_LENGTH")
        );
    }

    #[test]
    fn invalid_ranges_are_refused_with_reasons() {
        let cases = [
            ("AR=[IP=10.0.0.1, SIZE=2]", "TYPE"),
            ("AR=[TYPE=IP5, IP=10.0.0.1, SIZE=2]", "TYPE"),
            ("AR=[TYPE=IP4, SIZE=2]", "Wrong or empty IP attribute"),
            (
                "AR=[TYPE=IP4, IP=10.0.0.300, SIZE=2]",
                "Wrong or empty IP attribute",
            ),
            ("AR=[TYPE=IP4, IP=10.0.0.1]", "Wrong SIZE"),
            ("AR=[TYPE=IP4, IP=10.0.0.1, SIZE=0]", "Wrong SIZE"),
            ("AR=[TYPE=IP4, IP=10.0.0.1, SIZE=-3]", "Wrong SIZE"),
            ("AR=[TYPE=IP4, IP=10.0.0.1, SIZE=abc]", "Wrong SIZE"),
            (
                "AR=[TYPE=IP4, IP=255.255.255.250, SIZE=7]",
                "IP range overflow",
            ),
            (
                "AR=[TYPE=ETHER, MAC=02:00:ff:ff:ff:f0, SIZE=17]",
                "MAC range overflow",
            ),
            (
                "AR=[TYPE=ETHER, MAC=02:00:zz:ff:ff:f0, SIZE=1]",
                "Wrong format for MAC",
            ),
            (
                "AR=[TYPE=IP6, GLOBAL_PREFIX=\"2001:db8::/64\", SIZE=1]",
                "global address prefix",
            ),
            (
                "AR=[TYPE=IP6, ULA_PREFIX=\"nope\", SIZE=1]",
                "unique local address prefix",
            ),
            (
                "AR=[TYPE=IP6_STATIC, IP6=\"x\", PREFIX_LENGTH=64, SIZE=1]",
                "IP6 attribute",
            ),
            ("AR=[TYPE=IP4, IP=10.0.0.1, SIZE=1, SHARED=YES]", "SHARED"),
        ];
        for (text, want) in cases {
            let err = ar(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        // The last address of IPv4 space is fine.
        assert!(ar("AR=[TYPE=IP4, IP=255.255.255.250, SIZE=6]").is_ok());
    }

    #[test]
    fn user_attributes_are_kept_and_internal_ones_dropped() {
        let r = ar("AR=[TYPE=IP4, IP=10.0.0.1, SIZE=2, GATEWAY=10.0.0.254, DNS=\"8.8.8.8\", USED_LEASES=9, MAC_END=x, GLOBAL_PREFIX=\"2001:db8::\"]").unwrap();
        assert_eq!(r.attrs.get("GATEWAY"), Some("10.0.0.254"));
        assert_eq!(r.attrs.get("DNS"), Some("8.8.8.8"));
        assert_eq!(r.attrs.get("USED_LEASES"), None);
        assert_eq!(r.attrs.get("MAC_END"), None);
        assert_eq!(r.global_prefix, None, "IP4 ranges have no SLAAC prefix");
    }

    #[test]
    fn reserve_contiguous_and_child() {
        let mut r = ar("AR=[TYPE=IP4, IP=10.0.0.1, SIZE=10, GATEWAY=10.0.0.254]").unwrap();
        r.allocate_at(2, LeaseOwner::Vm(7));
        // Needs 3 in a row: 0..2 is too short, 3..6 fits.
        assert_eq!(r.reserve(LeaseOwner::Vnet(5), 3, None), Some(3));
        assert_eq!(r.next_index, 6);
        assert_eq!(
            r.reserve(LeaseOwner::Vnet(5), 2, Some(1)),
            None,
            "index 2 is taken"
        );
        assert_eq!(
            r.reserve(LeaseOwner::Vnet(5), 2, Some(9)),
            None,
            "past the end"
        );
        assert_eq!(
            r.reserve(LeaseOwner::Vnet(5), 5, None),
            None,
            "only 4 left in a row"
        );
        let child = r.reservation_child(0, 3, 3);
        assert_eq!(ipv4_to_string(child.ip.unwrap()), "10.0.0.4");
        assert_eq!(mac_to_string(child.mac), "02:00:0a:00:00:04");
        assert_eq!((child.size, child.parent_network_ar_id), (3, Some(0)));
        assert_eq!(child.attrs.get("GATEWAY"), Some("10.0.0.254"));
        assert_eq!(r.free_range(LeaseOwner::Vnet(5), 3, 3), 3);
        assert_eq!(r.used(), 1);
        r.reserve(LeaseOwner::Vnet(6), 2, Some(0)).unwrap();
        assert_eq!(r.free_owner(LeaseOwner::Vnet(6)), 2);
    }

    #[test]
    fn update_keeps_identity_and_checks_size() {
        let mut r = ar("AR=[TYPE=IP4, IP=10.0.0.1, SIZE=10, GATEWAY=1.1.1.1]").unwrap();
        r.allocate_at(7, LeaseOwner::Vm(1));
        let v =
            Template::parse("AR=[AR_ID=0, TYPE=ETHER, IP=9.9.9.9, SIZE=8, DNS=2.2.2.2]").unwrap();
        r.update(v.vector("AR").unwrap()).unwrap();
        assert_eq!((r.ar_type, r.size), (ArType::Ip4, 8));
        assert_eq!(ipv4_to_string(r.ip.unwrap()), "10.0.0.1");
        assert_eq!(
            r.attrs.get("GATEWAY"),
            None,
            "update replaces user attributes"
        );
        assert_eq!(r.attrs.get("DNS"), Some("2.2.2.2"));
        let v = Template::parse("AR=[AR_ID=0, SIZE=7]").unwrap();
        assert!(
            r.update(v.vector("AR").unwrap())
                .unwrap_err()
                .contains("used leases")
        );
        let v = Template::parse("AR=[AR_ID=0, SIZE=0]").unwrap();
        assert!(r.update(v.vector("AR").unwrap()).is_err());
        let mut child = r.reservation_child(1, 0, 2);
        let v = Template::parse("AR=[AR_ID=1, SIZE=3]").unwrap();
        assert!(
            child
                .update(v.vector("AR").unwrap())
                .unwrap_err()
                .contains("reservation")
        );
    }

    #[test]
    fn xml_of_a_range_with_leases() {
        let mut r =
            ar("AR=[TYPE=IP4, IP=10.0.0.1, SIZE=4, GATEWAY=10.0.0.254, VLAN_ID=7, VN_MAD=bridge]")
                .unwrap();
        r.allocate(LeaseOwner::Vm(3)).unwrap();
        r.allocate_at(2, LeaseOwner::HELD);
        let mut w = XmlWriter::new();
        r.write_xml(&mut w, Some(&|_| true));
        assert_eq!(
            w.finish(),
            "<AR><AR_ID>0</AR_ID><GATEWAY>10.0.0.254</GATEWAY><IP>10.0.0.1</IP>\
             <MAC>02:00:0a:00:00:01</MAC><NEXT_INDEX>1</NEXT_INDEX><SIZE>4</SIZE><TYPE>IP4</TYPE>\
             <VLAN_ID>7</VLAN_ID><VN_MAD>bridge</VN_MAD><MAC_END>02:00:0a:00:00:04</MAC_END>\
             <IP_END>10.0.0.4</IP_END><USED_LEASES>2</USED_LEASES><LEASES>\
             <LEASE><IP>10.0.0.1</IP><MAC>02:00:0a:00:00:01</MAC><VM>3</VM></LEASE>\
             <LEASE><IP>10.0.0.3</IP><MAC>02:00:0a:00:00:03</MAC><VM>-1</VM></LEASE>\
             </LEASES></AR>"
        );
        let mut w = XmlWriter::new();
        r.write_xml(&mut w, Some(&|o| o != LeaseOwner::HELD));
        assert!(!w.as_str().contains("<VM>-1</VM>"));
        let mut w = XmlWriter::new();
        r.write_xml(&mut w, None);
        assert!(
            !w.as_str().contains("<LEASES") && w.as_str().contains("<USED_LEASES>2</USED_LEASES>")
        );
    }

    proptest! {
        /// Allocating until full hands out every index exactly once, then nothing.
        #[test]
        fn allocation_is_a_permutation(size in 1u64..64, taken in proptest::collection::btree_set(0u64..64, 0..20)) {
            let mut r = ar(&format!("AR=[TYPE=IP4, IP=10.0.0.0, SIZE={size}]")).unwrap();
            for t in &taken {
                r.allocate_at(*t, LeaseOwner::HELD);
            }
            let mut seen = std::collections::BTreeSet::new();
            while let Some(i) = r.allocate(LeaseOwner::Vm(1)) {
                prop_assert!(i < size);
                prop_assert!(!taken.contains(&i));
                prop_assert!(seen.insert(i));
            }
            prop_assert_eq!(r.used(), size);
        }

        /// A reservation without a start finds a free run whenever one exists.
        #[test]
        fn reserve_finds_a_run_if_any(size in 1u64..40, taken in proptest::collection::btree_set(0u64..40, 0..15), n in 1u64..8, next in 0u64..40) {
            let mut r = ar(&format!("AR=[TYPE=ETHER, SIZE={size}]")).unwrap();
            for t in &taken {
                r.allocate_at(*t, LeaseOwner::HELD);
            }
            r.next_index = next % size;
            let exists = n <= size && (0..=size - n).any(|s| (s..s + n).all(|i| r.is_free(i)));
            let got = r.reserve(LeaseOwner::Vnet(1), n, None);
            prop_assert_eq!(got.is_some(), exists);
            if let Some(s) = got {
                prop_assert!((s..s + n).all(|i| r.leases.get(&i) == Some(&LeaseOwner::Vnet(1))));
            }
        }
    }
}
