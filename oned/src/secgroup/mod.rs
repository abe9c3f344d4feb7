//! Security groups below the API and the lifecycle: which VMs use which group, the rules a
//! VM carries (`SECURITY_GROUP_RULE`, as OpenNebula puts them in the VM template for the
//! hosts' drivers), and the updater that takes changed rules to the hosts ([`updater`]).
//!
//! A VM uses the groups its NICs name (the NIC's SECURITY_GROUPS: its own, its network's and
//! its address range's, merged when the lease is taken). [`sync_vm`] makes the VM's rules and
//! the groups' VM sets agree with that after any change of NICs (allocation, NIC attach /
//! detach), [`release_vm`] takes a finished VM out of every group.

pub mod updater;

use crate::store::Txn;
use one_proto::objects::secgroup::SecurityGroup;
use one_proto::objects::vm::Vm;
use one_proto::objects::vnet::Vnet;
use one_proto::template::{AttrValue, Vector};
use std::collections::BTreeSet;

pub use updater::Updater;

/// The security groups the VM's NICs use.
pub fn vm_groups(vm: &Vm) -> BTreeSet<i64> {
    vm.template
        .vectors("NIC")
        .filter_map(|n| n.get("SECURITY_GROUPS"))
        .flat_map(|s| s.split(','))
        .filter_map(|p| p.trim().parse::<i64>().ok())
        .collect()
}

/// The rules of `sg` as a VM carries them: its RULEs with SECURITY_GROUP_ID / _NAME, a
/// NETWORK_ID rule once per address range of that network (AR_ID, TYPE, SIZE, MAC, IP, IP6,
/// IP6_ULA, IP6_GLOBAL of the range's first address), as OpenNebula expands them. A rule
/// naming a network that no longer exists is left out.
pub fn group_rules(tx: &Txn<'_>, sg: &SecurityGroup) -> Vec<Vector> {
    let mut out = Vec::new();
    for rule in sg.vm_rules() {
        let Some(net) = rule
            .get("NETWORK_ID")
            .map(str::trim)
            .filter(|s| !s.is_empty())
        else {
            out.push(rule);
            continue;
        };
        let Some(vnet) = net.parse::<i64>().ok().and_then(|id| tx.get::<Vnet>(id)) else {
            continue;
        };
        for ar in &vnet.ars {
            let mut r = rule.clone();
            let first = ar.address(0);
            first.set_on(&mut r);
            r.remove("IP6_LINK");
            r.set("AR_ID", ar.ar_id.to_string());
            r.set("TYPE", ar.ar_type.name());
            r.set("SIZE", ar.size.to_string());
            out.push(r);
        }
    }
    out
}

/// Replaces the VM's rules of group `sg_id` with `rules` (the others stay).
pub fn set_vm_rules(vm: &mut Vm, sg_id: i64, rules: Vec<Vector>) {
    let id = sg_id.to_string();
    vm.template.attrs.retain(|a| {
        !(a.name == "SECURITY_GROUP_RULE"
            && matches!(&a.value, AttrValue::Vector(v) if v.get("SECURITY_GROUP_ID") == Some(id.as_str())))
    });
    for r in rules {
        vm.template
            .push("SECURITY_GROUP_RULE", AttrValue::Vector(r));
    }
}

/// Brings the VM's rules and the groups' VM sets in line with the groups its NICs name now:
/// it joins new groups (their current rules, UPDATED_VMS), leaves the ones no NIC names any
/// more. Groups that do not exist are skipped, as in OpenNebula. Changed groups are put in
/// `tx`; the caller puts the VM.
pub fn sync_vm(tx: &mut Txn<'_>, vm: &mut Vm) {
    let vmid = vm.header.id;
    let want = vm_groups(vm);
    let had: BTreeSet<i64> = tx
        .committed()
        .secgroups
        .iter()
        .filter(|g| g.has_vm(vmid))
        .map(|g| g.header.id)
        .collect();
    vm.template.remove("SECURITY_GROUP_RULE");
    for id in &want {
        let Some(mut sg) = tx.get::<SecurityGroup>(*id) else {
            continue;
        };
        let rules = group_rules(tx, &sg);
        set_vm_rules(vm, *id, rules);
        if !sg.has_vm(vmid) {
            sg.set_updated(vmid);
            tx.put(sg);
        }
    }
    for id in had.difference(&want) {
        if let Some(mut sg) = tx.get::<SecurityGroup>(*id) {
            sg.del_vm(vmid);
            tx.put(sg);
        }
    }
}

/// Takes a VM that ended (DONE) out of every group.
pub fn release_vm(tx: &mut Txn<'_>, vmid: i64) {
    let ids: Vec<i64> = tx
        .committed()
        .secgroups
        .iter()
        .filter(|g| g.has_vm(vmid))
        .map(|g| g.header.id)
        .collect();
    for id in ids {
        if let Some(mut sg) = tx.get::<SecurityGroup>(id) {
            sg.del_vm(vmid);
            tx.put(sg);
        }
    }
}
