//! The devices of the three link drivers, made when the first NIC needs them and removed
//! when the last one leaves (OpenNebula's `pre` and `clean`, fact sheet §9):
//!
//! | VN_MAD | made | removed with the last NIC |
//! |---|---|---|
//! | `bridge` | BRIDGE (with the network's MTU), PHYDEV enslaved to it | the bridge |
//! | `802.1Q` | BRIDGE, `<PHYDEV>.<VLAN_ID>` (`type vlan`, MTU or `vlan_mtu`) in it | both |
//! | `vxlan` | BRIDGE, `<PHYDEV>.<VNI>` (`type vxlan`, group = base + VNI, MTU = PHYDEV's − 50 unless given) in it | both |
//!
//! Creation is idempotent and safe under races: a device that exists is checked and reused,
//! an `ip link add` that loses a race ("File exists") is not an error. Only devices carrying
//! [`OUR_ALIAS`] are ever deleted: an administrator's bridge stays.

use super::exec::Exec;
use super::links::{self, Link, OUR_ALIAS, VxlanSpec};
use super::nic::{NicNet, VnMad};
use crate::{Error, Result, Revert};
use one_proto::agent::NetworkConfig;
use std::net::Ipv4Addr;

/// VXLAN's encapsulation: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;

/// The multicast group of VNI `vni`: the base address + the VNI (OpenNebula's scheme).
pub fn vxlan_group(base: Ipv4Addr, vni: u32) -> Result<Ipv4Addr> {
    let g = u32::from(base)
        .checked_add(vni)
        .map(Ipv4Addr::from)
        .filter(|g| g.is_multicast())
        .ok_or_else(|| {
            Error::Refused(format!(
                "VXLAN multicast base {base} + VNI {vni} is not a multicast address"
            ))
        })?;
    Ok(g)
}

fn missing(what: &str, name: &str) -> Error {
    Error::Refused(format!("{what} {name} does not exist on this host"))
}

/// Makes `name` a bridge that is up (with MTU `mtu` when given). Registers its removal in
/// `revert` when it made it.
fn ensure_bridge<'a>(
    x: &'a dyn Exec,
    name: &str,
    mtu: Option<u32>,
    done: &mut Vec<String>,
    revert: &mut Revert<'a>,
) -> Result<()> {
    let existing = match links::show(x, name)? {
        Some(l) => Some(l),
        None => {
            if links::add_bridge(x, name, mtu)? {
                let n = name.to_string();
                revert.add(format!("delete bridge {name}"), move || {
                    links::delete(x, &n).map(|_| ())
                });
                links::set(x, name, &[("alias", Some(OUR_ALIAS)), ("up", None)])?;
                done.push(format!("created bridge {name}"));
                return Ok(());
            }
            // Another deploy made it between our look and our add.
            links::show(x, name)?
        }
    };
    let l = existing.ok_or_else(|| missing("bridge", name))?;
    if l.kind != "bridge" {
        return Err(Error::Refused(format!(
            "{name} exists and is not a bridge (it is a {} device)",
            if l.kind.is_empty() { "plain" } else { &l.kind }
        )));
    }
    let mtu_s = mtu.map(|m| m.to_string());
    let mut settings: Vec<(&str, Option<&str>)> = Vec::new();
    if let Some(m) = &mtu_s
        && l.mtu.to_string() != *m
    {
        settings.push(("mtu", Some(m)));
    }
    if !l.up {
        settings.push(("up", None));
    }
    links::set(x, name, &settings)
}

/// Puts device `dev` into `bridge` and up, when it is not already.
fn enslave(x: &dyn Exec, l: &Link, bridge: &str) -> Result<()> {
    let mut settings: Vec<(&str, Option<&str>)> = Vec::new();
    if l.master.as_deref() != Some(bridge) {
        settings.push(("master", Some(bridge)));
    }
    if !l.up {
        settings.push(("up", None));
    }
    links::set(x, &l.name, &settings)
}

/// Makes what `nic` needs on the host (its bridge and lower device). Says what it made.
pub fn ensure<'a>(
    x: &'a dyn Exec,
    cfg: &NetworkConfig,
    nic: &NicNet,
    revert: &mut Revert<'a>,
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    match nic.vn_mad {
        VnMad::Dummy | VnMad::Fw => {
            // The bridge is the administrator's: it must be there.
            match links::show(x, &nic.bridge)? {
                Some(l) if l.kind == "bridge" => {}
                Some(_) => {
                    return Err(Error::Refused(format!("{} is not a bridge", nic.bridge)));
                }
                None => return Err(missing("bridge", &nic.bridge)),
            }
        }
        VnMad::Bridge => {
            ensure_bridge(x, &nic.bridge, nic.mtu, &mut done, revert)?;
            if let Some(p) = &nic.phydev {
                let l = links::show(x, p)?.ok_or_else(|| missing("PHYDEV", p))?;
                enslave(x, &l, &nic.bridge)?;
            }
        }
        VnMad::Vlan => {
            let (phydev, id) = lower_of(nic)?;
            let dev = format!("{phydev}.{id}");
            links::show(x, phydev)?.ok_or_else(|| missing("PHYDEV", phydev))?;
            ensure_bridge(x, &nic.bridge, None, &mut done, revert)?;
            let l = match links::show(x, &dev)? {
                Some(l) => l,
                None => {
                    let mtu = nic.mtu.unwrap_or(cfg.vlan_mtu);
                    if links::add_vlan(x, phydev, &dev, id, mtu).map_err(|e| match e {
                        Error::Command { detail, .. } if detail.contains("Unknown device type") => {
                            Error::Unsupported(format!(
                                "this host's kernel cannot make 802.1Q VLAN interfaces (no 8021q \
                                 module): {dev} on {phydev}: {detail}"
                            ))
                        }
                        e => e,
                    })? {
                        let d = dev.clone();
                        revert.add(format!("delete {dev}"), move || {
                            links::delete(x, &d).map(|_| ())
                        });
                        links::set(
                            x,
                            &dev,
                            &[
                                ("alias", Some(OUR_ALIAS)),
                                ("master", Some(&nic.bridge)),
                                ("up", None),
                            ],
                        )?;
                        done.push(format!(
                            "created {dev} (VLAN {id} on {phydev}) in {}",
                            nic.bridge
                        ));
                        return Ok(done);
                    }
                    links::show(x, &dev)?.ok_or_else(|| missing("VLAN interface", &dev))?
                }
            };
            if l.kind != "vlan" || l.id != Some(id) || l.lower.as_deref() != Some(phydev) {
                return Err(Error::Refused(format!(
                    "{dev} exists and is not VLAN {id} on {phydev}"
                )));
            }
            enslave(x, &l, &nic.bridge)?;
        }
        VnMad::Vxlan => {
            let (phydev, vni) = lower_of(nic)?;
            let dev = format!("{phydev}.{vni}");
            let phy = links::show(x, phydev)?.ok_or_else(|| missing("PHYDEV", phydev))?;
            let base: Ipv4Addr = match nic.vxlan_mc {
                Some(b) => b,
                None => cfg.vxlan_mc.parse().map_err(|_| {
                    Error::Refused(format!(
                        "the VXLAN multicast base {:?} is not an IPv4 address",
                        cfg.vxlan_mc
                    ))
                })?,
            };
            let group = vxlan_group(base, vni)?;
            let mtu = match nic.mtu {
                Some(m) => m,
                None => phy.mtu.checked_sub(VXLAN_OVERHEAD).ok_or_else(|| {
                    Error::Refused(format!("{phydev}'s MTU {} is too small for VXLAN", phy.mtu))
                })?,
            };
            // The bridge gets the tunnel's MTU, so the taps libvirt adds get it too.
            ensure_bridge(x, &nic.bridge, Some(mtu), &mut done, revert)?;
            let l = match links::show(x, &dev)? {
                Some(l) => l,
                None => {
                    let group_s = group.to_string();
                    let spec = VxlanSpec {
                        name: &dev,
                        vni,
                        group: &group_s,
                        ttl: cfg.vxlan_ttl,
                        dev: phydev,
                        mtu,
                        dstport: cfg.vxlan_dstport,
                    };
                    if links::add_vxlan(x, &spec)? {
                        let d = dev.clone();
                        revert.add(format!("delete {dev}"), move || {
                            links::delete(x, &d).map(|_| ())
                        });
                        links::set(
                            x,
                            &dev,
                            &[
                                ("alias", Some(OUR_ALIAS)),
                                ("master", Some(&nic.bridge)),
                                ("up", None),
                            ],
                        )?;
                        done.push(format!(
                            "created {dev} (VXLAN {vni}, group {group}, MTU {mtu}) in {}",
                            nic.bridge
                        ));
                        return Ok(done);
                    }
                    links::show(x, &dev)?.ok_or_else(|| missing("VXLAN interface", &dev))?
                }
            };
            if l.kind != "vxlan" || l.id != Some(vni) {
                return Err(Error::Refused(format!(
                    "{dev} exists and is not VXLAN {vni}"
                )));
            }
            enslave(x, &l, &nic.bridge)?;
        }
    }
    Ok(done)
}

fn lower_of(nic: &NicNet) -> Result<(&str, u32)> {
    match (&nic.phydev, nic.vlan_id) {
        (Some(p), Some(id)) => Ok((p, id)),
        _ => Err(Error::Refused(format!(
            "NIC {}: VN_MAD {} needs PHYDEV and VLAN_ID",
            nic.nic_id,
            nic.vn_mad.name()
        ))),
    }
}

/// Removes what `nic` used when nothing else uses it: no guest port left on its bridge
/// (`leaving`: the taps of the NICs being cleaned, gone or going) and no other NIC of this
/// host registered on it (`in_use`). Keeps everything with `keep_empty_bridge`.
pub fn release(
    x: &dyn Exec,
    cfg: &NetworkConfig,
    nic: &NicNet,
    leaving: &[String],
    in_use: bool,
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    if !matches!(nic.vn_mad, VnMad::Bridge | VnMad::Vlan | VnMad::Vxlan) {
        return Ok(done);
    }
    let Some(br) = links::show(x, &nic.bridge)? else {
        return Ok(done);
    };
    let lower = nic.lower_dev();
    let guests: Vec<String> = links::ports(x, &nic.bridge)?
        .into_iter()
        .filter(|p| Some(p) != nic.phydev.as_ref() && Some(p) != lower.as_ref())
        .filter(|p| !leaving.contains(p))
        .collect();
    if cfg.keep_empty_bridge || in_use || !guests.is_empty() {
        return Ok(done);
    }
    if let Some(dev) = &lower
        && let Some(l) = links::show(x, dev)?
        && l.is_ours()
        && links::delete(x, dev)?
    {
        done.push(format!("deleted {dev}"));
    }
    if br.is_ours() && links::delete(x, &nic.bridge)? {
        done.push(format!("deleted bridge {}", nic.bridge));
    }
    Ok(done)
}
