//! Network devices as the drivers see them: what `ip -j -d link show` says about one, and
//! the few `ip link` commands the drivers run. Every command is built here, so the exact
//! command lines the unit tests check are these.

use super::exec::{Exec, is_exists, is_missing};
use crate::{Error, Result};

/// Devices (bridges, VLAN and VXLAN interfaces) the drivers created carry this alias; only
/// those are ever deleted, so an administrator's own bridge survives its last NIC.
pub const OUR_ALIAS: &str = "one-rs-vnm";

/// Linux limits interface names to 15 bytes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// A network device, from `ip -j -d link show dev NAME`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    /// `bridge`, `vlan`, `vxlan`, `veth`, `tun`, ... ("" for a plain device).
    pub kind: String,
    pub master: Option<String>,
    pub mtu: u32,
    /// Administratively up (the UP flag).
    pub up: bool,
    pub alias: Option<String>,
    /// The lower device of a VLAN interface (top-level `link`) or of a VXLAN one (its `dev`).
    pub lower: Option<String>,
    /// The VLAN id or the VNI.
    pub id: Option<u32>,
    /// A VXLAN interface's multicast group.
    pub group: Option<String>,
}

impl Link {
    pub fn is_ours(&self) -> bool {
        self.alias.as_deref() == Some(OUR_ALIAS)
    }

    fn from_json(v: &serde_json::Value) -> Link {
        let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
        let info = &v["linkinfo"];
        let data = &info["info_data"];
        Link {
            name: s(&v["ifname"]).unwrap_or_default(),
            kind: s(&info["info_kind"]).unwrap_or_default(),
            master: s(&v["master"]),
            mtu: v["mtu"].as_u64().unwrap_or(0) as u32,
            up: v["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP")),
            alias: s(&v["ifalias"]),
            lower: s(&data["link"]).or_else(|| s(&v["link"])),
            id: data["id"].as_u64().map(|i| i as u32),
            group: s(&data["group"]),
        }
    }
}

/// An interface name the drivers may put on a command line or in a firewall rule: 1 to 15
/// bytes of letters, digits and `. _ - :`, and not `.` / `..` (device names the kernel
/// refuses, and nothing a shell or nft would read as syntax).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

pub fn check_ifname(what: &str, name: &str) -> Result<()> {
    if valid_ifname(name) {
        Ok(())
    } else {
        Err(Error::Refused(format!(
            "{what} {name:?} is not a usable interface name (1-{IFNAME_MAX} letters, digits, \
             '.', '_', '-', ':')"
        )))
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// The device `name`, None when the host has none.
pub fn show(x: &dyn Exec, name: &str) -> Result<Option<Link>> {
    match x.ip(&args(&["-j", "-d", "link", "show", "dev", name])) {
        Ok(out) => {
            let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| {
                Error::Refused(format!(
                    "ip -j link show dev {name} gave unreadable JSON: {e}"
                ))
            })?;
            Ok(v.as_array().and_then(|a| a.first()).map(Link::from_json))
        }
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The names of the devices enslaved to `bridge` (empty when it does not exist).
pub fn ports(x: &dyn Exec, bridge: &str) -> Result<Vec<String>> {
    match x.ip(&args(&["-j", "link", "show", "master", bridge])) {
        Ok(out) => {
            let out = out.trim();
            if out.is_empty() {
                return Ok(Vec::new());
            }
            let v: serde_json::Value = serde_json::from_str(out).map_err(|e| {
                Error::Refused(format!(
                    "ip -j link show master {bridge} gave unreadable JSON: {e}"
                ))
            })?;
            Ok(v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default())
        }
        Err(e) if is_missing(&e) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// `ip link add ...`; Ok(false) when a device of that name appeared meanwhile (a concurrent
/// deploy made it): the caller looks at it again.
fn add(x: &dyn Exec, a: Vec<String>) -> Result<bool> {
    match x.ip(&a) {
        Ok(_) => Ok(true),
        Err(e) if is_exists(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `ip link add name BR [mtu M] type bridge`.
pub fn add_bridge(x: &dyn Exec, name: &str, mtu: Option<u32>) -> Result<bool> {
    let mut a = args(&["link", "add", "name", name]);
    if let Some(m) = mtu {
        a.extend(args(&["mtu", &m.to_string()]));
    }
    a.extend(args(&["type", "bridge"]));
    add(x, a)
}

/// `ip link add link PHYDEV name PHYDEV.ID mtu M type vlan id ID` (OpenNebula's command).
pub fn add_vlan(x: &dyn Exec, phydev: &str, name: &str, id: u32, mtu: u32) -> Result<bool> {
    add(
        x,
        args(&[
            "link",
            "add",
            "link",
            phydev,
            "name",
            name,
            "mtu",
            &mtu.to_string(),
            "type",
            "vlan",
            "id",
            &id.to_string(),
        ]),
    )
}

/// What a VXLAN interface is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanSpec<'a> {
    pub name: &'a str,
    pub vni: u32,
    pub group: &'a str,
    pub ttl: u32,
    pub dev: &'a str,
    pub mtu: u32,
    pub dstport: u16,
}

/// `ip link add NAME mtu M type vxlan id VNI group G ttl T dev PHYDEV dstport P` (OpenNebula's
/// multicast mode; dstport 0 is the kernel's default port, said explicitly to keep `ip` quiet).
pub fn add_vxlan(x: &dyn Exec, s: &VxlanSpec<'_>) -> Result<bool> {
    add(
        x,
        args(&[
            "link",
            "add",
            s.name,
            "mtu",
            &s.mtu.to_string(),
            "type",
            "vxlan",
            "id",
            &s.vni.to_string(),
            "group",
            s.group,
            "ttl",
            &s.ttl.to_string(),
            "dev",
            s.dev,
            "dstport",
            &s.dstport.to_string(),
        ]),
    )
}

/// One `ip link set dev NAME ...` with the given settings (`up`, `mtu N`, `master BR`,
/// `alias A`), nothing when there are none.
pub fn set(x: &dyn Exec, name: &str, settings: &[(&str, Option<&str>)]) -> Result<()> {
    if settings.is_empty() {
        return Ok(());
    }
    let mut a = args(&["link", "set", "dev", name]);
    for (k, v) in settings {
        a.push(k.to_string());
        if let Some(v) = v {
            a.push(v.to_string());
        }
    }
    x.ip(&a).map(|_| ())
}

/// `ip link delete dev NAME`; a device already gone is fine.
pub fn delete(x: &dyn Exec, name: &str) -> Result<bool> {
    match x.ip(&args(&["link", "delete", "dev", name])) {
        Ok(_) => Ok(true),
        Err(e) if is_missing(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_be_syntax_are_refused() {
        for good in ["one-5-0", "onebr.46", "eth0.46", "br_x", "a:b"] {
            assert!(valid_ifname(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "x\"y",
            "a;b",
            "0123456789abcdef",
            "br/0",
            "é",
        ] {
            assert!(!valid_ifname(bad), "{bad}");
        }
    }

    #[test]
    fn json_of_ip_is_read() {
        let v: serde_json::Value = serde_json::from_str(
            r#"[{"ifname":"vp.46","flags":["BROADCAST","UP"],"mtu":1450,"master":"br9",
            "ifalias":"one-rs-vnm","linkinfo":{"info_kind":"vxlan","info_data":{"id":46,
            "group":"239.0.0.46","link":"vp"}}}]"#,
        )
        .unwrap();
        let l = Link::from_json(&v[0]);
        assert_eq!(
            l,
            Link {
                name: "vp.46".into(),
                kind: "vxlan".into(),
                master: Some("br9".into()),
                mtu: 1450,
                up: true,
                alias: Some(OUR_ALIAS.into()),
                lower: Some("vp".into()),
                id: Some(46),
                group: Some("239.0.0.46".into()),
            }
        );
        assert!(l.is_ours());
        let v: serde_json::Value = serde_json::from_str(
            r#"[{"ifname":"eth0.7","flags":[],"mtu":1500,"link":"eth0",
            "linkinfo":{"info_kind":"vlan","info_data":{"protocol":"802.1Q","id":7}}}]"#,
        )
        .unwrap();
        let l = Link::from_json(&v[0]);
        assert_eq!(
            (l.lower.as_deref(), l.id, l.up),
            (Some("eth0"), Some(7), false)
        );
    }
}
