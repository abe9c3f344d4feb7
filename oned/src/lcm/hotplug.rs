//! Ends of the hotplug phases (disk / NIC attach and detach, snapshots, resizes): what stays in
//! the VM when the driver succeeded, and what is taken back when it failed.

use super::effects;
use crate::store::Txn;
use one_proto::objects::vm::{Vm, VmOperation};
use one_proto::state::LcmState;
use one_proto::template::{AttrValue, Vector};

pub fn is_hotplug_phase(lcm: LcmState) -> bool {
    use LcmState as L;
    matches!(
        lcm,
        L::Hotplug
            | L::HotplugPrologPoweroff
            | L::HotplugEpilogPoweroff
            | L::HotplugNic
            | L::HotplugNicPoweroff
            | L::HotplugSnapshot
            | L::HotplugResize
            | L::DiskSnapshot
            | L::DiskSnapshotPoweroff
            | L::DiskSnapshotSuspended
            | L::DiskSnapshotDelete
            | L::DiskSnapshotDeletePoweroff
            | L::DiskSnapshotDeleteSuspended
            | L::DiskSnapshotRevertPoweroff
            | L::DiskResize
            | L::DiskResizePoweroff
            | L::DiskResizeUndeployed
    )
}

fn arg_id(op: &VmOperation, k: &str) -> Option<i64> {
    op.args.get(k).and_then(|v| v.parse().ok())
}

fn matches_id(v: &Vector, key: &str, id: Option<i64>) -> bool {
    id.is_some() && v.get(key).and_then(|s| s.trim().parse().ok()) == id
}

/// Removes the `name` vector whose `key` is `id`, returning it.
fn take(vm: &mut Vm, name: &str, key: &str, id: Option<i64>) -> Option<Vector> {
    let pos = vm.template.attrs.iter().position(|a| {
        a.name == name && matches!(&a.value, AttrValue::Vector(v) if matches_id(v, key, id))
    })?;
    match vm.template.attrs.remove(pos).value {
        AttrValue::Vector(v) => Some(v),
        AttrValue::Single(_) => None,
    }
}

fn clear_attach(vm: &mut Vm, name: &str, key: &str, id: Option<i64>) {
    for v in vm.template.vectors_mut(name) {
        if matches_id(v, key, id) {
            v.remove("ATTACH");
        }
    }
}

/// Gives back what a removed disk or NIC held, and the quota it took.
fn drop_device(tx: &mut Txn<'_>, vm: &mut Vm, name: &str, key: &str, id: Option<i64>) {
    let before = vm.clone();
    let vmid = vm.header.id;
    if let Some(v) = take(vm, name, key, id) {
        if name == "NIC" {
            crate::api::vnet::release_nic(tx, &v, vmid);
            // Groups only this NIC used are left; its variables leave the context.
            crate::secgroup::sync_vm(tx, vm);
            if let Some(nic) = id {
                crate::api::vm::refresh_network_context(tx, vm, Some(nic));
            }
        } else {
            crate::api::image::release_disk(tx, &v, vmid);
            let (u, g) = (vm.header.uid, vm.header.gid);
            crate::quota::release(tx, u, g, &crate::api::vm::quota_usage(&before));
            crate::quota::release(tx, u, g, &crate::api::vm::quota_usage(vm).negated());
        }
    }
}

pub fn conclude(tx: &mut Txn<'_>, vm: &mut Vm, op: &VmOperation, success: bool, _now: i64) {
    let disk = arg_id(op, "DISK_ID");
    let snap = arg_id(op, "SNAPSHOT_ID");
    match (op.action.as_str(), success) {
        ("disk-attach", true) => clear_attach(vm, "DISK", "DISK_ID", disk),
        ("disk-attach", false) | ("disk-detach", true) => {
            drop_device(tx, vm, "DISK", "DISK_ID", disk)
        }
        ("disk-detach", false) => clear_attach(vm, "DISK", "DISK_ID", disk),
        ("nic-attach", true) => clear_attach(vm, "NIC", "NIC_ID", arg_id(op, "NIC_ID")),
        ("nic-attach", false) | ("nic-detach", true) => {
            drop_device(tx, vm, "NIC", "NIC_ID", arg_id(op, "NIC_ID"))
        }
        ("nic-detach", false) => {
            clear_attach(vm, "NIC", "NIC_ID", arg_id(op, "NIC_ID"));
            // Still there: its variables come back.
            crate::api::vm::refresh_network_context(tx, vm, None);
        }
        ("snapshot-create", false) | ("snapshot-delete", true) => {
            take(vm, "SNAPSHOT", "SNAPSHOT_ID", snap);
        }
        ("snapshot-revert", true) => {
            for s in vm.template.vectors_mut("SNAPSHOT") {
                if matches_id(s, "SNAPSHOT_ID", snap) {
                    s.set("ACTIVE", "YES");
                } else {
                    s.remove("ACTIVE");
                }
            }
        }
        ("disk-snapshot-create", false) | ("disk-snapshot-delete", true) => {
            if let Some(tree) = vm.snapshots.iter_mut().find(|t| Some(t.disk_id) == disk) {
                let was_active = tree
                    .snapshots
                    .iter()
                    .any(|s| Some(s.id) == snap && s.active);
                let parent = tree
                    .snapshots
                    .iter()
                    .find(|s| Some(s.id) == snap)
                    .map(|s| s.parent);
                tree.snapshots.retain(|s| Some(s.id) != snap);
                let sid = snap.map(|s| s.to_string()).unwrap_or_default();
                for s in tree.snapshots.iter_mut() {
                    s.children = s
                        .children
                        .split(',')
                        .filter(|c| !c.is_empty() && *c != sid)
                        .collect::<Vec<_>>()
                        .join(",");
                    if was_active && Some(s.id) == parent {
                        s.active = true;
                    }
                }
            }
            vm.snapshots.retain(|t| !t.snapshots.is_empty());
        }
        ("disk-snapshot-revert", true) => {
            if let Some(tree) = vm.snapshots.iter_mut().find(|t| Some(t.disk_id) == disk) {
                for s in tree.snapshots.iter_mut() {
                    s.active = Some(s.id) == snap;
                }
            }
        }
        ("disk-resize", false) => {
            if let Some(old) = op.args.get("OLD_SIZE") {
                let before = vm.clone();
                for d in vm.template.vectors_mut("DISK") {
                    if matches_id(d, "DISK_ID", disk) {
                        d.set("SIZE", old.clone());
                    }
                }
                let (u, g) = (vm.header.uid, vm.header.gid);
                crate::quota::release(tx, u, g, &crate::api::vm::quota_usage(&before));
                crate::quota::release(tx, u, g, &crate::api::vm::quota_usage(vm).negated());
            }
        }
        ("resize", false) => {
            let before = vm.clone();
            for (arg, key) in [
                ("OLD_CPU", "CPU"),
                ("OLD_VCPU", "VCPU"),
                ("OLD_MEMORY", "MEMORY"),
            ] {
                if let Some(v) = op.args.get(arg) {
                    if v.is_empty() {
                        vm.template.remove(key);
                    } else {
                        vm.template.set(key, v.clone());
                    }
                }
            }
            effects::recharge_host(tx, &before, vm);
            let (u, g) = (vm.header.uid, vm.header.gid);
            crate::quota::release(tx, u, g, &crate::api::vm::quota_usage(&before));
            crate::quota::release(tx, u, g, &crate::api::vm::quota_usage(vm).negated());
        }
        _ => {}
    }
}
