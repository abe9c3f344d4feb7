//! Takes changed security-group rules to the VMs using them (OpenNebula's `updatesg`), by
//! itself after `one.secgroup.update` and again on `one.secgroup.commit`.
//!
//! A pass takes every OUTDATED VM of every group and, in one transaction:
//!
//! | VM state | what happens | the VM goes to |
//! |---|---|---|
//! | RUNNING (and the hotplug / snapshot / resize states of a running VM) | the group's new rules in the VM template; its host reloads them | UPDATING |
//! | not ACTIVE, or ACTIVE without rules on a host (PROLOG, EPILOG, SHUTDOWN, SAVE_*, ...) | the new rules in the VM template only: the next boot loads them | UPDATED |
//! | BOOT*, MIGRATE, HOTPLUG_NIC*, UNKNOWN (rules being made on a host, or the host lost) | nothing: `one.secgroup.commit(id, true)` tries again | ERROR |
//!
//! That is committed first; then each host gets **one** `update_security_groups` request with
//! all its UPDATING VMs, which its agent loads in one firewall transaction. The answer moves
//! them to UPDATED, or to ERROR (with the reason in the VM log). A VM UPDATING when oned
//! stopped is OUTDATED again at start, so a crash in the middle loses no update.

use super::{group_rules, set_vm_rules};
use crate::daemon::Oned;
use one_proto::agent::VmDocument;
use one_proto::objects::host::Host;
use one_proto::objects::secgroup::SecurityGroup;
use one_proto::objects::vm::Vm;
use one_proto::state::{LcmState as L, VmState as S};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::Notify;

/// How a VM takes a rule change, by its state (OpenNebula's LifeCycleManager::updatesg).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Its host must load the new rules.
    Host,
    /// Only its template changes.
    Template,
    /// Cannot be updated now.
    Error,
    /// DONE or gone: it leaves the group.
    Gone,
}

pub fn classify(state: S, lcm: L) -> Class {
    if state == S::Done {
        return Class::Gone;
    }
    if state != S::Active {
        return Class::Template;
    }
    match lcm {
        L::Boot
        | L::BootMigrate
        | L::BootSuspended
        | L::BootStopped
        | L::BootUndeploy
        | L::BootPoweroff
        | L::BootUnknown
        | L::BootFailure
        | L::BootMigrateFailure
        | L::BootUndeployFailure
        | L::BootStoppedFailure
        | L::Migrate
        | L::HotplugNic
        | L::HotplugNicPoweroff
        | L::Unknown => Class::Error,
        L::Running
        | L::Hotplug
        | L::HotplugSnapshot
        | L::HotplugSaveas
        | L::HotplugResize
        | L::DiskSnapshot
        | L::DiskSnapshotDelete
        | L::DiskResize
        | L::Backup => Class::Host,
        _ => Class::Template,
    }
}

/// The updater task's handle.
#[derive(Default)]
pub struct Updater {
    kick: Notify,
    /// VMs whose host must reload their rules though no group of theirs changed (a group
    /// detached from their last NIC that had one): best effort, not tracked in a group.
    reload: std::sync::Mutex<BTreeSet<i64>>,
}

impl Updater {
    /// Asks for a pass now (rules changed, or a commit).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Has the host of VM `id` load its rules again at the next pass.
    pub fn reload_vm(&self, id: i64) {
        self.reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        self.kick();
    }
}

/// Starts the updater: VMs left UPDATING by a stopped oned go back to OUTDATED, then a pass
/// runs whenever it is kicked.
pub fn start(oned: &Arc<Oned>) {
    let o = oned.clone();
    tokio::spawn(async move {
        recover(&o).await;
        loop {
            // Until a pass finds nothing to do (changes may arrive while one runs).
            while pass(&o).await {}
            o.secgroups.kick.notified().await;
        }
    });
}

async fn recover(oned: &Arc<Oned>) {
    let mut tx = oned.store.begin().await;
    let ids: Vec<i64> = tx
        .committed()
        .secgroups
        .iter()
        .filter(|g| !g.updating_vms.is_empty())
        .map(|g| g.header.id)
        .collect();
    for id in &ids {
        if let Some(mut sg) = tx.get::<SecurityGroup>(*id) {
            for vm in sg.updating_vms.clone() {
                sg.set_outdated(vm);
            }
            tx.put(sg);
        }
    }
    if !ids.is_empty() {
        match tx.commit().await {
            Ok(()) => {
                tracing::info!(groups = ?ids, "security groups: updates in flight at the last stop will be made again")
            }
            Err(e) => {
                tracing::error!(error = %e, "security groups: cannot recover the updates in flight")
            }
        }
    }
}

/// One pass; true when it found work.
async fn pass(oned: &Arc<Oned>) -> bool {
    let mut tx = oned.store.begin().await;
    let groups: Vec<i64> = tx
        .committed()
        .secgroups
        .iter()
        .filter(|g| !g.outdated_vms.is_empty())
        .map(|g| g.header.id)
        .collect();
    let reload: BTreeSet<i64> = std::mem::take(
        &mut *oned
            .secgroups
            .reload
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    if groups.is_empty() && reload.is_empty() {
        return false;
    }
    let mut batches: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for id in &reload {
        if let Some(vm) = tx.get::<Vm>(*id)
            && classify(vm.state, vm.lcm_state) == Class::Host
            && let Some(h) = vm.history.last()
        {
            batches.entry(h.hid).or_default().insert(*id);
        }
    }
    let mut counts = [0usize; 4];
    for gid in &groups {
        let Some(mut sg) = tx.get::<SecurityGroup>(*gid) else {
            continue;
        };
        let rules = group_rules(&tx, &sg);
        for vmid in sg.outdated_vms.clone() {
            let Some(mut vm) = tx.get::<Vm>(vmid) else {
                sg.del_vm(vmid);
                counts[3] += 1;
                continue;
            };
            match classify(vm.state, vm.lcm_state) {
                Class::Gone => {
                    sg.del_vm(vmid);
                    counts[3] += 1;
                }
                Class::Error => {
                    sg.set_error(vmid);
                    counts[2] += 1;
                }
                Class::Template => {
                    set_vm_rules(&mut vm, *gid, rules.clone());
                    tx.put(vm);
                    sg.set_updated(vmid);
                    counts[1] += 1;
                }
                Class::Host => {
                    let Some(hid) = vm.history.last().map(|h| h.hid) else {
                        sg.set_error(vmid);
                        counts[2] += 1;
                        continue;
                    };
                    set_vm_rules(&mut vm, *gid, rules.clone());
                    tx.put(vm);
                    sg.set_updating(vmid);
                    batches.entry(hid).or_default().insert(vmid);
                    counts[0] += 1;
                }
            }
        }
        tx.put(sg);
    }
    if let Err(e) = tx.commit().await {
        tracing::error!(error = %e, "security groups: cannot record the update");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        return true;
    }
    tracing::info!(
        groups = ?groups,
        hosts = batches.len(),
        on_hosts = counts[0],
        template_only = counts[1],
        in_error = counts[2],
        gone = counts[3],
        "security groups: rules changed"
    );
    let jobs: Vec<_> = batches
        .into_iter()
        .map(|(hid, vms)| {
            let o = oned.clone();
            tokio::spawn(async move { update_host(&o, hid, vms).await })
        })
        .collect();
    for j in jobs {
        let _ = j.await;
    }
    true
}

/// Sends one host its VMs' documents, then records the outcome.
async fn update_host(oned: &Arc<Oned>, hid: i64, vms: BTreeSet<i64>) {
    let docs: Vec<VmDocument> = vms
        .iter()
        .filter_map(|id| {
            oned.store.get::<Vm>(*id).map(|vm| VmDocument {
                vm_id: *id,
                vm_xml: Vm::to_xml(&vm),
            })
        })
        .collect();
    let result = match oned.store.get::<Host>(hid) {
        None => Err(format!("host {hid} no longer exists")),
        Some(host) => {
            let driver = crate::driver::for_host(oned, &host);
            let timeout =
                std::time::Duration::from_secs(oned.config.lcm.driver_timeout_seconds.max(1));
            let t = std::time::Instant::now();
            match tokio::time::timeout(timeout, driver.update_security_groups(docs)).await {
                Ok(Ok(r)) => {
                    tracing::info!(host = hid, vms = vms.len(), ms = t.elapsed().as_millis() as u64, info = %r.info, "security groups loaded on the host");
                    Ok(())
                }
                Ok(Err(e)) => Err(e.message),
                Err(_) => Err(format!(
                    "update_security_groups timed out after {} s",
                    timeout.as_secs()
                )),
            }
        }
    };
    let now = crate::auth::now_secs();
    let vms_dir = oned.data_dir.root.join("vms");
    for vm in &vms {
        let (level, line) = match &result {
            Ok(()) => (
                crate::lcm::vmlog::Level::Info,
                "VM security group updated.".to_string(),
            ),
            Err(e) => (
                crate::lcm::vmlog::Level::Error,
                format!("Error updating the security groups: {e}"),
            ),
        };
        crate::lcm::vmlog::append(&vms_dir, *vm, "VMM", level, &[line], now);
    }
    if let Err(e) = &result {
        tracing::warn!(host = hid, vms = ?vms, error = %e, "security groups: host update failed");
    }
    let mut tx = oned.store.begin().await;
    let ids: Vec<i64> = tx
        .committed()
        .secgroups
        .iter()
        .filter(|g| g.updating_vms.iter().any(|v| vms.contains(v)))
        .map(|g| g.header.id)
        .collect();
    for id in ids {
        let Some(mut sg) = tx.get::<SecurityGroup>(id) else {
            continue;
        };
        for vm in &vms {
            if sg.updating_vms.binary_search(vm).is_ok() {
                if result.is_ok() {
                    sg.set_updated(*vm);
                } else {
                    sg.set_error(*vm);
                }
            }
        }
        tx.put(sg);
    }
    if let Err(e) = tx.commit().await {
        tracing::error!(host = hid, error = %e, "security groups: cannot record the host's answer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_classify_as_in_opennebula() {
        assert_eq!(classify(S::Active, L::Running), Class::Host);
        assert_eq!(classify(S::Active, L::HotplugResize), Class::Host);
        assert_eq!(classify(S::Active, L::Boot), Class::Error);
        assert_eq!(classify(S::Active, L::Migrate), Class::Error);
        assert_eq!(classify(S::Active, L::Unknown), Class::Error);
        assert_eq!(classify(S::Active, L::Prolog), Class::Template);
        assert_eq!(classify(S::Active, L::Shutdown), Class::Template);
        assert_eq!(classify(S::Poweroff, L::LcmInit), Class::Template);
        assert_eq!(classify(S::Pending, L::LcmInit), Class::Template);
        assert_eq!(classify(S::Done, L::LcmInit), Class::Gone);
    }
}
