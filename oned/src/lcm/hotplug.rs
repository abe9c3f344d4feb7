//! Ends of the hotplug phases (disk / NIC attach and detach, snapshots, resizes): what stays in
//! the VM when the driver succeeded, and what is taken back when it failed.

use super::effects;
use crate::store::Txn;
use one_proto::objects::image::Image;
use one_proto::objects::vm::{DiskSnapshots, Vm, VmOperation};
use one_proto::state::ImageState;
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
            | L::HotplugSaveas
            | L::HotplugSaveasPoweroff
            | L::HotplugSaveasSuspended
            | L::HotplugSaveasUndeployed
            | L::HotplugSaveasStopped
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
            crate::ops::lease::release_nic(tx, &v, vmid);
            // Groups only this NIC used are left; its variables leave the context.
            crate::secgroup::sync_vm(tx, vm);
            if let Some(nic) = id {
                crate::ops::context::refresh_network_context(tx, vm, Some(nic));
            }
        } else {
            crate::ops::image::release_disk(tx, &v, vmid);
            crate::ops::vm::release_change(tx, &before, vm);
        }
    }
}

pub fn conclude(
    tx: &mut Txn<'_>,
    vm: &mut Vm,
    op: &VmOperation,
    success: bool,
    error: Option<&str>,
    now: i64,
) {
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
            crate::ops::context::refresh_network_context(tx, vm, None);
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
            if let (Some(tree), Some(snap)) = (
                vm.snapshots.iter_mut().find(|t| Some(t.disk_id) == disk),
                snap,
            ) {
                remove_snapshot(tree, snap);
            }
            vm.snapshots.retain(|t| !t.snapshots.is_empty());
            if let Some(d) = disk {
                set_snapshot_total(vm, d);
            }
        }
        ("disk-snapshot-revert", true) => {
            let mut size = None;
            if let Some(tree) = vm.snapshots.iter_mut().find(|t| Some(t.disk_id) == disk) {
                for s in tree.snapshots.iter_mut() {
                    s.active = Some(s.id) == snap;
                    if s.active {
                        size = Some(s.size);
                    }
                }
            }
            // The disk is what the snapshot was, its size included (OpenNebula's
            // revert_snapshot_quotas).
            if let Some(size) = size.filter(|s| *s > 0) {
                let before = vm.clone();
                for d in vm.template.vectors_mut("DISK") {
                    if matches_id(d, "DISK_ID", disk) {
                        d.set("SIZE", size.to_string());
                    }
                }
                crate::ops::vm::release_change(tx, &before, vm);
            }
        }
        ("disk-saveas", _) => {
            for d in vm.template.vectors_mut("DISK") {
                if matches_id(d, "DISK_ID", disk) {
                    for k in [
                        "HOTPLUG_SAVE_AS",
                        "HOTPLUG_SAVE_AS_ACTIVE",
                        "HOTPLUG_SAVE_AS_SNAPSHOT_ID",
                        "HOTPLUG_SAVE_AS_SOURCE",
                    ] {
                        d.remove(k);
                    }
                }
            }
            if let Some(mut img) = arg_id(op, "IMAGE_ID").and_then(|i| tx.get::<Image>(i)) {
                if success {
                    img.set_state(ImageState::Ready);
                    img.template.remove("ERROR");
                } else {
                    // The image keeps its DATASTORE quota charge until it is deleted.
                    img.set_state(ImageState::Error);
                    img.template.set(
                        "ERROR",
                        format!(
                            "Error saving disk {} of VM {}: {}",
                            disk.unwrap_or(-1),
                            vm.header.id,
                            error.unwrap_or("the copy failed")
                        ),
                    );
                }
                img.modtime = now;
                tracing::info!(
                    image = img.header.id,
                    vm = vm.header.id,
                    success,
                    "disk save-as done"
                );
                tx.put(img);
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
                crate::ops::vm::release_change(tx, &before, vm);
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
            crate::ops::vm::release_change(tx, &before, vm);
        }
        _ => {}
    }
}

/// Takes snapshot `id` out of its tree as OpenNebula's Snapshots::delete_snapshot does for
/// DENY trees: its only child (if one) takes its place under its parent, and its parent
/// becomes active if it was.
pub fn remove_snapshot(tree: &mut DiskSnapshots, id: i64) {
    let Some(pos) = tree.snapshots.iter().position(|s| s.id == id) else {
        return;
    };
    let gone = tree.snapshots.remove(pos);
    let ids =
        |c: &str| -> Vec<i64> { c.split(',').filter_map(|x| x.trim().parse().ok()).collect() };
    let my_children = ids(&gone.children);
    let adopted = (my_children.len() == 1).then(|| my_children[0]);
    for s in tree.snapshots.iter_mut() {
        if s.id == gone.parent {
            let mut c: Vec<i64> = ids(&s.children).into_iter().filter(|x| *x != id).collect();
            if let Some(a) = adopted {
                c.push(a);
            }
            c.sort_unstable();
            c.dedup();
            s.children = c.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            if gone.active {
                s.active = true;
            }
        }
        if Some(s.id) == adopted {
            s.parent = gone.parent;
        }
    }
}

/// DISK_SNAPSHOT_TOTAL_SIZE: the sizes of the disk's snapshots.
pub fn set_snapshot_total(vm: &mut Vm, disk_id: i64) {
    let total: i64 = vm
        .snapshots
        .iter()
        .filter(|t| t.disk_id == disk_id)
        .flat_map(|t| t.snapshots.iter().map(|s| s.size))
        .sum();
    for d in vm.template.vectors_mut("DISK") {
        if matches_id(d, "DISK_ID", Some(disk_id)) {
            d.set("DISK_SNAPSHOT_TOTAL_SIZE", total.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use one_proto::objects::vm::DiskSnapshot;

    fn tree(spec: &[(i64, i64, &str, bool)]) -> DiskSnapshots {
        DiskSnapshots {
            allow_orphans: "DENY".into(),
            current_base: -1,
            disk_id: 0,
            next_snapshot: 9,
            snapshots: spec
                .iter()
                .map(|(id, parent, children, active)| DiskSnapshot {
                    id: *id,
                    parent: *parent,
                    children: children.to_string(),
                    active: *active,
                    ..DiskSnapshot::default()
                })
                .collect(),
        }
    }

    fn shape(t: &DiskSnapshots) -> Vec<(i64, i64, String, bool)> {
        t.snapshots
            .iter()
            .map(|s| (s.id, s.parent, s.children.clone(), s.active))
            .collect()
    }

    #[test]
    fn a_snapshot_leaves_its_line_as_opennebula_takes_it_out() {
        // 0 <- 1 <- 2 (active): deleting 1 puts 2 under 0.
        let mut t = tree(&[(0, -1, "1", false), (1, 0, "2", false), (2, 1, "", true)]);
        remove_snapshot(&mut t, 1);
        assert_eq!(
            shape(&t),
            [(0, -1, "2".into(), false), (2, 0, "".into(), true)]
        );
        // Deleting the active leaf makes its parent active.
        remove_snapshot(&mut t, 2);
        assert_eq!(shape(&t), [(0, -1, "".into(), true)]);
        // A root with one child: the child becomes a root.
        let mut t = tree(&[(0, -1, "1", false), (1, 0, "", true)]);
        remove_snapshot(&mut t, 0);
        assert_eq!(shape(&t), [(1, -1, "".into(), true)]);
    }
}
