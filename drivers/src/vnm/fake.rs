//! A model of a host's links for the unit tests: it answers the `ip` commands the drivers
//! run as the kernel would (including "File exists", missing devices, and a kernel without
//! 802.1Q), records every command line, and keeps the nft scripts it was given. With it the
//! tests check the exact commands, their idempotence and the clean-up of every driver —
//! 802.1Q included, which this machine's kernel cannot do for real.

use super::exec::Exec;
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

#[derive(Clone, Debug, Default)]
struct FLink {
    kind: String,
    master: Option<String>,
    mtu: u32,
    up: bool,
    alias: Option<String>,
    lower: Option<String>,
    id: Option<u32>,
    group: Option<String>,
}

#[derive(Default)]
struct State {
    links: BTreeMap<String, FLink>,
    log: Vec<String>,
    scripts: Vec<String>,
    no_vlan: bool,
    /// Names whose next `link add` loses a race: the device appears just before.
    races: HashSet<String>,
    sysctls: HashMap<String, String>,
    nft_error: Option<String>,
    bridge_ct: bool,
}

#[derive(Default)]
pub struct FakeHost {
    s: Mutex<State>,
}

fn err(cmd: &str, detail: &str) -> Error {
    Error::Command {
        cmd: cmd.to_string(),
        detail: detail.to_string(),
    }
}

impl FakeHost {
    pub fn new() -> FakeHost {
        FakeHost::default()
    }

    /// A kernel without the 8021q module (this machine's).
    pub fn without_vlan() -> FakeHost {
        let f = FakeHost::default();
        f.s.lock().unwrap().no_vlan = true;
        f
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.s.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A device that is there before the test (a PHYDEV, a tap libvirt made).
    pub fn add_device(&self, name: &str, kind: &str, mtu: u32, master: Option<&str>) {
        self.st().links.insert(
            name.into(),
            FLink {
                kind: kind.into(),
                mtu,
                up: true,
                master: master.map(str::to_string),
                ..FLink::default()
            },
        );
    }

    pub fn remove_device(&self, name: &str) {
        self.st().links.remove(name);
    }

    /// A kernel with bridge conntrack (nf_conntrack_bridge).
    pub fn with_bridge_ct(self) -> FakeHost {
        self.st().bridge_ct = true;
        self
    }

    /// The next `ip link add` of `name` finds it already made by someone else.
    pub fn race_on(&self, name: &str) {
        self.st().races.insert(name.into());
    }

    pub fn set_sysctl(&self, name: &str, value: &str) {
        self.st().sysctls.insert(name.into(), value.into());
    }

    pub fn fail_nft(&self, detail: &str) {
        self.st().nft_error = Some(detail.into());
    }

    /// Every `ip` command line run so far, and forgets them.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.st().log)
    }

    /// Every nft script loaded (or checked) so far, and forgets them.
    pub fn take_scripts(&self) -> Vec<String> {
        std::mem::take(&mut self.st().scripts)
    }

    pub fn exists(&self, name: &str) -> bool {
        self.st().links.contains_key(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.st().links.keys().cloned().collect()
    }

    /// (kind, master, mtu, up, ours) of a device.
    pub fn describe(&self, name: &str) -> Option<(String, Option<String>, u32, bool, bool)> {
        self.st().links.get(name).map(|l| {
            (
                l.kind.clone(),
                l.master.clone(),
                l.mtu,
                l.up,
                l.alias.as_deref() == Some(super::links::OUR_ALIAS),
            )
        })
    }

    fn json(name: &str, l: &FLink) -> serde_json::Value {
        let mut flags = vec!["BROADCAST", "MULTICAST"];
        if l.up {
            flags.push("UP");
        }
        let mut v = serde_json::json!({"ifname": name, "flags": flags, "mtu": l.mtu});
        if let Some(m) = &l.master {
            v["master"] = m.clone().into();
        }
        if let Some(a) = &l.alias {
            v["ifalias"] = a.clone().into();
        }
        if !l.kind.is_empty() {
            let mut data = serde_json::json!({});
            if let Some(i) = l.id {
                data["id"] = i.into();
            }
            if let Some(g) = &l.group {
                data["group"] = g.clone().into();
            }
            if l.kind == "vxlan"
                && let Some(lo) = &l.lower
            {
                data["link"] = lo.clone().into();
            }
            if l.kind == "vlan"
                && let Some(lo) = &l.lower
            {
                v["link"] = lo.clone().into();
            }
            v["linkinfo"] = serde_json::json!({"info_kind": l.kind, "info_data": data});
        }
        v
    }
}

/// The word after `key` among the arguments past `link add|set` (a VLAN's `link PHYDEV`
/// is not the leading `link`).
fn opt<'a>(a: &'a [String], key: &str) -> Option<&'a str> {
    a.iter()
        .skip(2)
        .position(|x| x == key)
        .and_then(|i| a.get(i + 3))
        .map(String::as_str)
}

impl Exec for FakeHost {
    fn ip(&self, args: &[String]) -> Result<String> {
        let line = format!("ip {}", args.join(" "));
        let mut s = self.st();
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let missing = |n: &str| err(&line, &format!("Device \"{n}\" does not exist."));
        match a.as_slice() {
            ["-j", "-d", "link", "show", "dev", n] => {
                // Queries are not logged: the tests check what changes the host.
                let l = s.links.get(*n).ok_or_else(|| missing(n))?;
                Ok(serde_json::Value::Array(vec![FakeHost::json(n, l)]).to_string())
            }
            ["-j", "link", "show", "master", b] => {
                if !s.links.contains_key(*b) {
                    return Err(missing(b));
                }
                let ports: Vec<serde_json::Value> = s
                    .links
                    .iter()
                    .filter(|(_, l)| l.master.as_deref() == Some(*b))
                    .map(|(n, l)| FakeHost::json(n, l))
                    .collect();
                Ok(serde_json::Value::Array(ports).to_string())
            }
            ["link", "add", ..] => {
                s.log.push(line.clone());
                let kind = opt(args, "type").unwrap_or("");
                let name = match kind {
                    "vlan" | "bridge" => opt(args, "name"),
                    _ => args.get(2).map(String::as_str),
                }
                .unwrap_or("")
                .to_string();
                let mtu = opt(args, "mtu")
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(1500);
                let mut l = FLink {
                    kind: kind.into(),
                    mtu,
                    ..FLink::default()
                };
                match kind {
                    "bridge" => {}
                    "veth" => {
                        let peer = opt(args, "name").unwrap_or("").to_string();
                        s.links.insert(peer, l.clone());
                    }
                    "vlan" => {
                        if s.no_vlan {
                            return Err(err(&line, "Error: Unknown device type."));
                        }
                        let parent = opt(args, "link").unwrap_or("");
                        if !s.links.contains_key(parent) {
                            return Err(err(&line, "Cannot find device \"x\""));
                        }
                        l.lower = Some(parent.into());
                        l.id = opt(args, "id").and_then(|i| i.parse().ok());
                    }
                    "vxlan" => {
                        let dev = opt(args, "dev").unwrap_or("");
                        if !s.links.contains_key(dev) {
                            return Err(err(&line, "Cannot find device \"x\""));
                        }
                        l.lower = Some(dev.into());
                        l.id = opt(args, "id").and_then(|i| i.parse().ok());
                        l.group = opt(args, "group").map(str::to_string);
                    }
                    other => panic!("fake ip: no model of link type {other:?}"),
                }
                if s.races.remove(&name) {
                    s.links.insert(name.clone(), l);
                    return Err(err(&line, "RTNETLINK answers: File exists"));
                }
                if s.links.contains_key(&name) {
                    return Err(err(&line, "RTNETLINK answers: File exists"));
                }
                s.links.insert(name, l);
                Ok(String::new())
            }
            ["link", "set", "dev", n, rest @ ..] => {
                s.log.push(line.clone());
                if !s.links.contains_key(*n) {
                    return Err(missing(n));
                }
                let mut i = 0;
                while i < rest.len() {
                    match rest[i] {
                        "up" => s.links.get_mut(*n).unwrap().up = true,
                        "down" => s.links.get_mut(*n).unwrap().up = false,
                        "mtu" => {
                            i += 1;
                            s.links.get_mut(*n).unwrap().mtu = rest[i].parse().unwrap();
                        }
                        "alias" => {
                            i += 1;
                            s.links.get_mut(*n).unwrap().alias = Some(rest[i].into());
                        }
                        "master" => {
                            i += 1;
                            if !s.links.contains_key(rest[i]) {
                                return Err(missing(rest[i]));
                            }
                            s.links.get_mut(*n).unwrap().master = Some(rest[i].into());
                        }
                        "nomaster" => s.links.get_mut(*n).unwrap().master = None,
                        other => panic!("fake ip: no model of link set {other:?}"),
                    }
                    i += 1;
                }
                Ok(String::new())
            }
            ["link", "delete", "dev", n] => {
                s.log.push(line.clone());
                if s.links.remove(*n).is_none() {
                    return Err(err(&line, &format!("Cannot find device \"{n}\"")));
                }
                // The kernel frees a deleted bridge's ports, and a deleted lower device's
                // VLANs go with it.
                let n = n.to_string();
                s.links
                    .retain(|_, l| l.lower.as_deref() != Some(&n) || l.kind == "vxlan");
                for l in s.links.values_mut() {
                    if l.master.as_deref() == Some(&n) {
                        l.master = None;
                    }
                }
                Ok(String::new())
            }
            _ => panic!("fake ip: no model of `{line}`"),
        }
    }

    fn nft(&self, script: &str, check_only: bool) -> Result<()> {
        let mut s = self.st();
        if check_only {
            if script.contains("ct state") && !s.bridge_ct {
                return Err(err(
                    "nft -c -f -",
                    "Error: Could not process rule: Protocol error",
                ));
            }
            return Ok(());
        }
        s.scripts.push(script.to_string());
        match &s.nft_error {
            Some(d) => Err(err("nft -f -", d)),
            None => Ok(()),
        }
    }

    fn nft_list(&self, _table: &str) -> Result<Option<String>> {
        // The model keeps no ruleset: a host whose agent starts afresh.
        Ok(None)
    }

    fn sysctl(&self, name: &str) -> Option<String> {
        self.st().sysctls.get(name).cloned()
    }

    fn modprobe(&self, _name: &str) -> bool {
        false
    }
}
