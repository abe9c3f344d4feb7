//! Virtual networks on a host: the VNM operations of the lifecycle (`net_pre`, `net_post`,
//! `net_clean`) for VN_MAD `bridge`, `802.1Q` and `vxlan` (plus `fw` and `dummy` on an
//! existing bridge), and security groups with anti-spoofing in nftables.
//!
//! | operation | what happens on the host |
//! |---|---|
//! | [`Vnm::pre`] | the NICs' bridges and VLAN / VXLAN devices are made ([`devices`]), then their firewall chains loaded ([`nft`]) — before the domain (or the migrating VM) arrives, so its taps are never unfiltered |
//! | [`Vnm::post`] | the firewall chains loaded again (the domain's taps exist now; idempotent) |
//! | [`Vnm::clean`] | the NICs' chains removed; bridges and devices nobody uses any more deleted |
//! | [`Vnm::update_security_groups`] | the chains of many VMs' NICs replaced, in one transaction |
//!
//! Each operation is idempotent (the lifecycle repeats a step after a crash) and a `pre`
//! that fails half-way removes what it made ([`crate::Revert`]). Operations that change
//! links run one at a time on a host (a lock), so a `clean` cannot delete a bridge that a
//! concurrent `pre` has just decided to use; the host also remembers which NICs a bridge
//! serves between `pre` and the domain's start (when its tap is not there yet).
//!
//! [`detect`] tells which VN_MADs the host's kernel can serve.

pub mod detect;
pub mod devices;
pub mod exec;
#[cfg(test)]
pub mod fake;
pub mod links;
pub mod nft;
pub mod nic;
pub mod sg;

use crate::{Error, Result, Revert};
use exec::Exec;
use nft::{CtMode, Script};
pub use nic::{NicNet, VmNet, VnMad};
use one_proto::agent::NetworkConfig;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// Probe of bridge conntrack: checked by the kernel (`nft -c`), never applied.
const BRIDGE_CT_PROBE: &str = "add table bridge one_rs_probe\n\
    add chain bridge one_rs_probe c\n\
    add rule bridge one_rs_probe c ct state established,related accept\n";

/// The network side of one host.
pub struct Vnm {
    x: Arc<dyn Exec>,
    cfg: NetworkConfig,
    /// Held while links change.
    links: Mutex<()>,
    /// Bridge → the (VM, NIC) pairs a `pre` set it up for and no `clean` has released.
    users: Mutex<HashMap<String, BTreeSet<(i64, i64)>>>,
    ct: Mutex<Option<CtMode>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn nft_missing(e: &Error) -> bool {
    matches!(e, Error::Command { detail, .. } if detail.contains("not installed"))
}

impl Vnm {
    pub fn new(x: Arc<dyn Exec>, cfg: NetworkConfig) -> Vnm {
        Vnm {
            x,
            cfg,
            links: Mutex::new(()),
            users: Mutex::new(HashMap::new()),
            ct: Mutex::new(None),
        }
    }

    /// The host this process runs on.
    pub fn system(cfg: NetworkConfig) -> Vnm {
        Vnm::new(Arc::new(exec::System::new()), cfg)
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    /// How this host tells replies to a NIC's own connections (decided once).
    pub fn ct_mode(&self) -> Result<CtMode> {
        let mut slot = lock(&self.ct);
        if let Some(m) = *slot {
            return Ok(m);
        }
        let mode = if self.x.nft(BRIDGE_CT_PROBE, true).is_ok() {
            CtMode::Bridge
        } else {
            let key4 = "net.bridge.bridge-nf-call-iptables";
            let key6 = "net.bridge.bridge-nf-call-ip6tables";
            if self.x.sysctl(key4).is_none() {
                self.x.modprobe("br_netfilter");
            }
            let on = |k| self.x.sysctl(k).as_deref() == Some("1");
            if !(on(key4) && on(key6)) {
                return Err(Error::Unsupported(format!(
                    "security groups need conntrack for bridged traffic: the kernel's bridge \
                     conntrack (nf_conntrack_bridge), or br_netfilter with {key4}=1 and \
                     {key6}=1; this host has neither"
                )));
            }
            if self.cfg.sg_ct_mark == 0 {
                return Err(Error::Refused(
                    "[network] sg_ct_mark must name a mark bit, not 0".into(),
                ));
            }
            CtMode::Mark(self.cfg.sg_ct_mark)
        };
        tracing::info!(?mode, "security groups: conntrack mode");
        *slot = Some(mode);
        Ok(mode)
    }

    /// net_pre: makes the devices of the NICs (NIC `only`, or all) and loads their filters.
    pub fn pre(&self, vm: &VmNet, only: Option<i64>) -> Result<Vec<String>> {
        let nics = vm.select(only);
        let _g = lock(&self.links);
        let mut revert = Revert::new();
        let mut done = Vec::new();
        for n in &nics {
            done.extend(devices::ensure(&*self.x, &self.cfg, n, &mut revert)?);
        }
        let loaded = self.load(&[(vm, nics.clone())])?;
        revert.success();
        let mut users = lock(&self.users);
        for n in &nics {
            users
                .entry(n.bridge.clone())
                .or_default()
                .insert((vm.vm_id, n.nic_id));
        }
        if loaded > 0 {
            done.push(format!("firewall rules of {loaded} NIC(s) loaded"));
        }
        tracing::info!(vm_id = vm.vm_id, nics = nics.len(), ?done, "net_pre");
        Ok(done)
    }

    /// net_post: loads the NICs' filters again (idempotent).
    pub fn post(&self, vm: &VmNet, only: Option<i64>) -> Result<Vec<String>> {
        let nics = vm.select(only);
        let loaded = self.load(&[(vm, nics)])?;
        Ok(if loaded > 0 {
            vec![format!("firewall rules of {loaded} NIC(s) loaded")]
        } else {
            Vec::new()
        })
    }

    /// net_clean: removes the NICs' filters, then the devices nobody uses any more.
    pub fn clean(&self, vm: &VmNet, only: Option<i64>) -> Result<Vec<String>> {
        let nics = vm.select(only);
        let _g = lock(&self.links);
        let mut done = Vec::new();
        let mut script = Script::new(None);
        for n in nics.iter().filter(|n| n.vn_mad.filters()) {
            if let Some(tap) = &n.tap {
                script.remove(vm.vm_id, n.nic_id, tap);
            }
        }
        if script.nics() > 0 {
            match self.x.nft(script.text(), false) {
                Ok(()) => done.push(format!(
                    "firewall rules of {} NIC(s) removed",
                    script.nics()
                )),
                // Without nft there can be no rules to remove.
                Err(e) if nft_missing(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let leaving: Vec<String> = nics.iter().filter_map(|n| n.tap.clone()).collect();
        {
            let mut users = lock(&self.users);
            for n in &nics {
                if let Some(set) = users.get_mut(&n.bridge) {
                    set.remove(&(vm.vm_id, n.nic_id));
                    if set.is_empty() {
                        users.remove(&n.bridge);
                    }
                }
            }
        }
        for n in &nics {
            let in_use = lock(&self.users).contains_key(&n.bridge);
            done.extend(devices::release(&*self.x, &self.cfg, n, &leaving, in_use)?);
        }
        tracing::info!(vm_id = vm.vm_id, nics = nics.len(), ?done, "net_clean");
        Ok(done)
    }

    /// Replaces the filters of every NIC of `vms` (their groups' rules changed) in one
    /// transaction. Says how many NICs it loaded.
    pub fn update_security_groups(&self, vms: &[VmNet]) -> Result<usize> {
        let items: Vec<(&VmNet, Vec<&NicNet>)> =
            vms.iter().map(|vm| (vm, vm.select(None))).collect();
        self.load(&items)
    }

    /// Loads the filters of the given NICs in one nft transaction. Says how many NICs it set.
    fn load(&self, items: &[(&VmNet, Vec<&NicNet>)]) -> Result<usize> {
        let mut stateful = false;
        let mut any = false;
        for (_, nics) in items {
            for n in nics.iter().filter(|n| n.needs_filter()) {
                any = true;
                stateful |= n.security_groups.is_some();
                if n.tap.is_none() {
                    return Err(Error::Refused(format!(
                        "NIC {} has no TARGET (tap name): its traffic cannot be filtered",
                        n.nic_id
                    )));
                }
            }
        }
        let ct = if stateful {
            Some(self.ct_mode()?)
        } else {
            None
        };
        let mut script = Script::new(ct);
        for (vm, nics) in items {
            for n in nics.iter().filter(|n| n.vn_mad.filters()) {
                script.set(vm.vm_id, n, &vm.rules_of(n), ct);
            }
        }
        if script.nics() == 0 {
            return Ok(0);
        }
        match self.x.nft(script.text(), false) {
            Ok(()) => Ok(script.nics()),
            // Nothing to filter: a host without nft is fine.
            Err(e) if !any && nft_missing(&e) => Ok(0),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
