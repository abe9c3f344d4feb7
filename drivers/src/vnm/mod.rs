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
use nft::{CtMode, Profile, Script};
pub use nic::{NicNet, VmNet, VnMad};
use one_proto::agent::NetworkConfig;
use std::collections::{BTreeSet, HashMap, HashSet};
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
    /// What the host's firewall holds; one transaction at a time.
    fw: Mutex<FwState>,
}

/// The filtered NICs as loaded: which profile each jumps to and its anti-spoofing rules
/// (a rule change that leaves those alone only repoints the NIC).
#[derive(Default, Clone)]
struct FwState {
    /// Read back from the kernel once (chains an earlier agent loaded).
    synced: bool,
    /// The base chains (and the conntrack plumbing, when Some(Some(..))) loaded since the
    /// last sync: later transactions leave them out.
    base: Option<Option<CtMode>>,
    nics: HashMap<(i64, i64), LoadedNic>,
}

#[derive(Clone, PartialEq, Eq)]
struct LoadedNic {
    profile: Option<String>,
    /// The anti-spoofing rules as loaded; None when not known (read back after a restart).
    spoof: Option<Vec<String>>,
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
            fw: Mutex::new(FwState::default()),
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
        let bridge_ct = || self.x.nft(BRIDGE_CT_PROBE, true).is_ok();
        let mode = if bridge_ct() || (self.x.modprobe("nf_conntrack_bridge") && bridge_ct()) {
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
        let gone: Vec<(i64, &NicNet)> = nics
            .iter()
            .filter(|n| n.vn_mad.filters())
            .map(|n| (vm.vm_id, *n))
            .collect();
        match self.unload(&gone) {
            Ok(0) => {}
            Ok(n) => done.push(format!("firewall rules of {n} NIC(s) removed")),
            // Without nft there can be no rules to remove.
            Err(e) if nft_missing(&e) => {}
            Err(e) => return Err(e),
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
        let mut fw = lock(&self.fw);
        let result = self.fw_apply(&mut fw, ct, |fw, script| {
            let mut known: HashSet<String> =
                fw.nics.values().filter_map(|l| l.profile.clone()).collect();
            for (vm, nics) in items {
                for n in nics.iter().filter(|n| n.vn_mad.filters()) {
                    let Some(tap) = n.tap.as_deref() else {
                        continue;
                    };
                    let key = (vm.vm_id, n.nic_id);
                    if !n.needs_filter() {
                        // Chains to take away only when this host has them.
                        if fw.nics.remove(&key).is_some() {
                            script.remove(vm.vm_id, n.nic_id, tap);
                        }
                        continue;
                    }
                    let profile = match (n.security_groups.is_some(), ct) {
                        (true, Some(ct)) => {
                            let p = Profile::of(&vm.rules_of(n), ct);
                            if known.insert(p.name.clone()) {
                                script.add_profile(&p);
                            }
                            Some(p.name)
                        }
                        _ => None,
                    };
                    let spoof = nft::spoof_lines(n);
                    let before = fw.nics.get(&key);
                    let same_spoof = before.is_some_and(|b| b.spoof.as_ref() == Some(&spoof));
                    match (&profile, before.map(|b| &b.profile)) {
                        (Some(p), Some(Some(_))) if same_spoof => {
                            script.repoint(vm.vm_id, n.nic_id, p)
                        }
                        _ => script.set(vm.vm_id, n, profile.as_deref()),
                    }
                    fw.nics.insert(
                        key,
                        LoadedNic {
                            profile,
                            spoof: Some(spoof),
                        },
                    );
                }
            }
        });
        match result {
            Ok(n) => Ok(n),
            // Nothing to filter: a host without nft is fine.
            Err(e) if !any && nft_missing(&e) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Removes the filters of these NICs in one transaction.
    fn unload(&self, nics: &[(i64, &NicNet)]) -> Result<usize> {
        let mut fw = lock(&self.fw);
        self.fw_apply(&mut fw, None, |fw, script| {
            for (vm, n) in nics {
                if let Some(tap) = n.tap.as_deref()
                    && fw.nics.remove(&(*vm, n.nic_id)).is_some()
                {
                    script.remove(*vm, n.nic_id, tap);
                }
            }
        })
    }

    /// Renders a change of the firewall on a copy of what it holds (`change`), deletes the
    /// profiles no NIC uses any more, and loads it in one transaction; the copy becomes the
    /// state only when the kernel took it. A failure makes the next call read the kernel's
    /// state again and render everything in full, so a ruleset flushed behind our back heals.
    fn fw_apply(
        &self,
        fw: &mut FwState,
        ct: Option<CtMode>,
        change: impl Fn(&mut FwState, &mut Script),
    ) -> Result<usize> {
        let mut last = None;
        for _attempt in 0..2 {
            if !fw.synced {
                *fw = FwState {
                    synced: true,
                    base: None,
                    nics: HashMap::new(),
                };
                if let Some(json) = self.x.nft_list(nft::TABLE)? {
                    for (key, profile) in nft::nics_in_listing(&json) {
                        fw.nics.insert(
                            key,
                            LoadedNic {
                                profile,
                                spoof: None,
                            },
                        );
                    }
                }
            }
            let mut next = fw.clone();
            // The base chains go in the first transaction (and again when the conntrack
            // plumbing is needed and was not loaded).
            let need_base = match fw.base {
                None => true,
                Some(loaded) => ct.is_some() && loaded != ct,
            };
            let mut script = if need_base {
                next.base = Some(ct);
                Script::new(ct)
            } else {
                Script::bare()
            };
            change(&mut next, &mut script);
            if script.nics() == 0 {
                return Ok(0);
            }
            let used: HashSet<&String> = next
                .nics
                .values()
                .filter_map(|l| l.profile.as_ref())
                .collect();
            let unused: BTreeSet<&String> = fw
                .nics
                .values()
                .filter_map(|l| l.profile.as_ref())
                .filter(|p| !used.contains(p))
                .collect();
            for p in unused {
                script.delete_profile(p);
            }
            match self.x.nft(script.text(), false) {
                Ok(()) => {
                    let n = script.nics();
                    *fw = next;
                    return Ok(n);
                }
                Err(e) => {
                    // Read the kernel's state again and render in full once more: a
                    // ruleset changed behind our back heals.
                    tracing::warn!(error = %e, "firewall transaction failed; retrying from the kernel's state");
                    fw.synced = false;
                    last = Some(e);
                }
            }
        }
        Err(last.expect("two attempts made"))
    }
}

#[cfg(test)]
mod tests;
