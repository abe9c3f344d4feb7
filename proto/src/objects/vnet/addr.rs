//! Address arithmetic for address ranges: MAC, IPv4 and IPv6 parsing and formatting, and the
//! EUI-64 interface ids OpenNebula derives IPv6 SLAAC addresses from.
//!
//! Addresses are plain integers (MAC: 48 bits in a `u64`, IPv4: `u32`, IPv6: `u128`) so a
//! lease is "first address + index".

use std::net::Ipv6Addr;

/// Parses `xx:xx:xx:xx:xx:xx` (one or two hex digits per octet, as OpenNebula accepts).
/// `ff:ff:ff:ff:ff:ff` is refused, as OpenNebula does (it is the broadcast address).
pub fn parse_mac(s: &str) -> Option<u64> {
    let mut mac = 0u64;
    let mut parts = 0;
    for part in s.split(':') {
        if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        mac = (mac << 8) | u64::from(u8::from_str_radix(part, 16).ok()?);
        parts += 1;
    }
    if parts != 6 || mac == 0xffff_ffff_ffff {
        return None;
    }
    Some(mac)
}

/// `02:00:0a:00:00:05` (lowercase, two digits per octet).
pub fn mac_to_string(mac: u64) -> String {
    let b = mac.to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

/// Parses a MAC prefix of two hex octets (`02:00`), as oned.conf's MAC_PREFIX.
pub fn parse_mac_prefix(s: &str) -> Option<u16> {
    let (a, b) = s.split_once(':')?;
    let a = u8::from_str_radix(a, 16).ok()?;
    let b = u8::from_str_radix(b, 16).ok()?;
    Some(u16::from_be_bytes([a, b]))
}

/// Parses a dotted-quad IPv4 address (leading zeros allowed, each octet <= 255).
pub fn parse_ipv4(s: &str) -> Option<u32> {
    let mut ip = 0u32;
    let mut parts = 0;
    for part in s.split('.') {
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let octet: u32 = part.parse().ok()?;
        if octet > 255 {
            return None;
        }
        ip = (ip << 8) | octet;
        parts += 1;
    }
    (parts == 4).then_some(ip)
}

pub fn ipv4_to_string(ip: u32) -> String {
    std::net::Ipv4Addr::from(ip).to_string()
}

pub fn parse_ipv6(s: &str) -> Option<u128> {
    s.parse::<Ipv6Addr>().ok().map(u128::from)
}

/// RFC 5952 text (the same as inet_ntop for the addresses address ranges produce).
pub fn ipv6_to_string(ip: u128) -> String {
    Ipv6Addr::from(ip).to_string()
}

/// The upper 64 bits of an IPv6 prefix given as an address (`2001:db8::`); OpenNebula keeps
/// only those, the interface id comes from the MAC.
pub fn parse_prefix6(s: &str) -> Option<u64> {
    parse_ipv6(s).map(|ip| (ip >> 64) as u64)
}

/// The modified EUI-64 interface id of a MAC: the universal/local bit flipped and `ff:fe`
/// inserted in the middle (RFC 4291 appendix A).
pub fn eui64(mac: u64) -> u64 {
    let b = mac.to_be_bytes();
    u64::from_be_bytes([b[2] ^ 0x02, b[3], b[4], 0xff, 0xfe, b[5], b[6], b[7]])
}

/// A SLAAC address: a /64 prefix and the MAC's EUI-64 interface id.
pub fn slaac(prefix: u64, mac: u64) -> u128 {
    (u128::from(prefix) << 64) | u128::from(eui64(mac))
}

/// The link-local prefix fe80::/64.
pub const LINK_LOCAL_PREFIX: u64 = 0xfe80_0000_0000_0000;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mac_parsing_and_formatting() {
        assert_eq!(parse_mac("02:00:0a:00:00:05"), Some(0x0200_0a00_0005));
        assert_eq!(parse_mac("2:0:A:0:0:5"), Some(0x0200_0a00_0005));
        assert_eq!(mac_to_string(0x0200_0a00_0005), "02:00:0a:00:00:05");
        for bad in [
            "",
            "02:00:0a:00:00",
            "02:00:0a:00:00:05:06",
            "02:00:0a:00:00:g5",
            "002:00:0a:00:00:05",
            "ff:ff:ff:ff:ff:ff",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert_eq!(parse_mac_prefix("02:00"), Some(0x0200));
        assert_eq!(parse_mac_prefix("zz:00"), None);
    }

    #[test]
    fn ipv4_parsing() {
        assert_eq!(parse_ipv4("10.0.0.5"), Some(0x0a00_0005));
        assert_eq!(parse_ipv4("010.000.0.5"), Some(0x0a00_0005));
        assert_eq!(parse_ipv4("255.255.255.255"), Some(u32::MAX));
        for bad in [
            "",
            "10.0.0",
            "10.0.0.256",
            "10.0.0.5.1",
            "10.0.0.-1",
            "a.b.c.d",
            "10..0.5",
            " 10.0.0.5",
        ] {
            assert_eq!(parse_ipv4(bad), None, "{bad}");
        }
        assert_eq!(ipv4_to_string(0x0a00_0005), "10.0.0.5");
    }

    #[test]
    fn eui64_matches_opennebula() {
        // MAC 02:00:0a:00:00:05 → interface id 0000:0aff:fe00:0005 (U/L bit of 02 flipped).
        assert_eq!(eui64(0x0200_0a00_0005), 0x0000_0aff_fe00_0005);
        let prefix = parse_prefix6("2001:db8:1:2::").unwrap();
        assert_eq!(
            ipv6_to_string(slaac(prefix, 0x0200_0a00_0005)),
            "2001:db8:1:2:0:aff:fe00:5"
        );
        assert_eq!(
            ipv6_to_string(slaac(LINK_LOCAL_PREFIX, 0x0011_2233_4455)),
            "fe80::211:22ff:fe33:4455"
        );
        assert_eq!(parse_prefix6("2001:db8::/64"), None);
    }

    proptest! {
        #[test]
        fn mac_round_trips(mac in 0u64..0xffff_ffff_ffff) {
            prop_assert_eq!(parse_mac(&mac_to_string(mac)), Some(mac));
        }

        #[test]
        fn ipv4_round_trips(ip: u32) {
            prop_assert_eq!(parse_ipv4(&ipv4_to_string(ip)), Some(ip));
        }

        #[test]
        fn ipv6_round_trips(ip: u128) {
            prop_assert_eq!(parse_ipv6(&ipv6_to_string(ip)), Some(ip));
        }
    }
}
