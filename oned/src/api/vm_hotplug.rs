//! Changes to a deployed VM: disk and NIC attach / detach, system and disk snapshots, disk
//! resize, capacity resize, updateconf. Each checks the state, edits the template in the
//! call's transaction, and enters the matching hotplug phase (crate::lcm); the phase's end
//! (crate::lcm::hotplug) keeps or takes back the change.

use super::common::{self, commit};
use super::vm_lifecycle::log_state;
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id};
use crate::auth::now_secs;
use crate::lcm::{self, effects};
use crate::ops::quota;
use crate::store::Txn;
use one_proto::ApiError;
use one_proto::acl::AuthOp;
use one_proto::objects::vm::{DiskSnapshot, DiskSnapshots, Vm, VmOperation};
use one_proto::state::{LcmState as L, VmState as S};
use one_proto::template::{AttrValue, Template, Vector};
use one_proto::xmlrpc::Value;
use std::collections::BTreeMap;

pub fn register(r: &mut Registry) {
    r.add("one.vm.attach", |c: Call, p: Params| async move {
        attach_disk(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.vm.detach", |c: Call, p: Params| async move {
        detach(&c, p.int32(0)?, &DISK, p.int32(1)?).await
    });
    r.add("one.vm.attachnic", |c: Call, p: Params| async move {
        attach_nic(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.vm.detachnic", |c: Call, p: Params| async move {
        detach(&c, p.int32(0)?, &NIC, p.int32(1)?).await
    });
    r.add("one.vm.snapshotcreate", |c: Call, p: Params| async move {
        snapshot_create(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.vm.snapshotrevert", |c: Call, p: Params| async move {
        snapshot_change(&c, p.int32(0)?, p.int32(1)?, "snapshot-revert").await
    });
    r.add("one.vm.snapshotdelete", |c: Call, p: Params| async move {
        snapshot_change(&c, p.int32(0)?, p.int32(1)?, "snapshot-delete").await
    });
    r.add(
        "one.vm.disksnapshotcreate",
        |c: Call, p: Params| async move {
            disk_snapshot_create(&c, p.int32(0)?, p.int32(1)?, p.str(2)?).await
        },
    );
    r.add(
        "one.vm.disksnapshotrevert",
        |c: Call, p: Params| async move {
            disk_snapshot_change(&c, p.int32(0)?, p.int32(1)?, p.int32(2)?, false).await
        },
    );
    r.add(
        "one.vm.disksnapshotdelete",
        |c: Call, p: Params| async move {
            disk_snapshot_change(&c, p.int32(0)?, p.int32(1)?, p.int32(2)?, true).await
        },
    );
    r.add(
        "one.vm.disksnapshotrename",
        |c: Call, p: Params| async move {
            disk_snapshot_rename(&c, p.int32(0)?, p.int32(1)?, p.int32(2)?, p.str(3)?).await
        },
    );
    r.add("one.vm.disksaveas", |c: Call, p: Params| async move {
        disk_saveas(
            &c,
            p.int32(0)?,
            p.int32(1)?,
            p.str(2)?,
            p.opt_str(3, "")?,
            p.opt_int(4, -1)?,
        )
        .await
    });
    r.add("one.vm.diskresize", |c: Call, p: Params| async move {
        disk_resize(&c, p.int32(0)?, p.int32(1)?, p.str(2)?).await
    });
    r.add("one.vm.resize", |c: Call, p: Params| async move {
        resize(&c, p.int32(0)?, p.str(1)?, p.opt_bool(2, true)?).await
    });
    r.add("one.vm.updateconf", |c: Call, p: Params| async move {
        updateconf(&c, p.int32(0)?, p.str(1)?, p.opt_int(2, 0)?).await
    });
}

fn running(vm: &Vm) -> bool {
    vm.state == S::Active && vm.lcm_state == L::Running
}

fn refused(call: &Call, what: &str, vm: &Vm) -> ApiError {
    action(
        call.method,
        &format!(
            "Error performing action \"{what}\": This action is not available for state {}",
            vm.state_str()
        ),
    )
}

fn op(action: &str, args: &[(&str, String)]) -> VmOperation {
    VmOperation {
        action: action.to_string(),
        args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        ..VmOperation::default()
    }
}

/// How an operation marks HISTORY_RECORDS: hotplug operations close the current record and
/// open a copy (OpenNebula's close_cp_history); system snapshots only set its ACTION.
enum HistoryMark {
    CloseCopy,
    Action,
}

/// Enters `phase` for `action` (with its arguments) and marks the history.
fn start(vm: &mut Vm, phase: L, action: &str, args: &[(&str, String)], mark: HistoryMark) {
    lcm::enter(vm, phase, op(action, args));
    let code = lcm::actions::action_code(action);
    match mark {
        HistoryMark::CloseCopy => effects::close_cp_history(vm, code, now_secs()),
        HistoryMark::Action => effects::set_history_action(vm, code),
    }
}

/// Commits a VM that entered a phase (or changed) and starts the phase's work.
async fn finish(
    call: &Call,
    mut tx: Txn<'_>,
    vm: Vm,
    before: (S, L),
    started: bool,
) -> Result<(), ApiError> {
    let id = vm.header.id;
    log_state(call, before, &vm);
    tx.put(vm);
    commit(call, tx).await?;
    if started {
        lcm::kick(&call.oned, id);
    }
    Ok(())
}

/// Parses a template holding exactly one `name` vector.
fn single_vector(call: &Call, text: &str, name: &str) -> Result<Vector, ApiError> {
    let t = Template::parse(text)
        .map_err(|e| rpc_api(call.method, &format!("Cannot parse template: {e}")))?;
    let mut vs: Vec<Vector> = t.vectors(name).cloned().collect();
    if vs.len() != 1 {
        return Err(action(
            call.method,
            &format!("The template must hold exactly one {name} vector"),
        ));
    }
    Ok(vs.remove(0))
}

fn id_of(v: &Vector, key: &str) -> Option<i64> {
    v.get(key).and_then(|s| s.trim().parse().ok())
}

/// The next free id among `name` vectors' `key` values (and the context disk for disks).
fn next_id(vm: &Vm, name: &str, key: &str) -> i64 {
    let mut ids: Vec<i64> = vm
        .template
        .vectors(name)
        .filter_map(|v| id_of(v, key))
        .collect();
    if name == "DISK"
        && let Some(c) = vm
            .template
            .vector("CONTEXT")
            .and_then(|c| id_of(c, "DISK_ID"))
    {
        ids.push(c);
    }
    ids.into_iter().max().map_or(0, |m| m + 1)
}

/// A disk target with `prefix` that no disk (or the context CD) uses yet.
fn free_target(vm: &Vm, prefix: &str) -> String {
    let mut used: Vec<String> = vm
        .template
        .vectors("DISK")
        .filter_map(|d| d.get("TARGET").map(str::to_string))
        .collect();
    if let Some(t) = vm.template.vector("CONTEXT").and_then(|c| c.get("TARGET")) {
        used.push(t.to_string());
    }
    (0..)
        .map(|i| super::vm::target_name(prefix, i))
        .find(|t| !used.contains(t))
        .unwrap_or_default()
}

/// Moves the quota charge from what `before` used to what `after` uses.
fn requota(call: &Call, tx: &mut Txn<'_>, before: &Vm, after: &Vm) -> Result<(), ApiError> {
    let (u, g) = (after.header.uid, after.header.gid);
    quota::release(tx, u, g, &crate::ops::vm::quota_usage(before));
    quota::charge(tx, call.method, u, g, &crate::ops::vm::quota_usage(after))
}

async fn attach_disk(call: &Call, id: i64, text: &str) -> ApiResult {
    let mut disk = single_vector(call, text, "DISK")?;
    let mut tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    let phase = match vm.state {
        _ if running(&vm) => L::Hotplug,
        S::Poweroff => L::HotplugPrologPoweroff,
        _ => return Err(refused(call, "disk-attach", &vm)),
    };
    let before_vm = vm.clone();
    let before = (vm.state, vm.lcm_state);
    let disk_id = next_id(&vm, "DISK", "DISK_ID");
    disk.remove("DISK_ID");
    if disk.get("IMAGE_ID").is_some() || disk.get("IMAGE").is_some() {
        super::image::disk_from_image(&mut tx, call, &mut disk, disk_id, id, vm.header.uid)?;
    } else {
        let ty = disk.get("TYPE").unwrap_or("").trim().to_ascii_lowercase();
        let size = id_of(&disk, "SIZE").filter(|s| *s > 0);
        if !matches!(ty.as_str(), "fs" | "swap") || size.is_none() {
            return Err(action(
                call.method,
                "A volatile DISK needs TYPE fs or swap and a positive SIZE (MB); an image DISK needs IMAGE_ID or IMAGE",
            ));
        }
        disk.set("TYPE", ty);
        if disk.get("FORMAT").is_none_or(str::is_empty) {
            disk.set("FORMAT", "raw");
        }
    }
    let prefix = disk
        .get("DEV_PREFIX")
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| call.oned.config.default_device_prefix.clone());
    if disk.get("TARGET").is_none_or(str::is_empty) {
        disk.set("TARGET", free_target(&vm, &prefix));
    } else if vm
        .template
        .vectors("DISK")
        .any(|d| d.get("TARGET") == disk.get("TARGET"))
    {
        return Err(action(
            call.method,
            &format!(
                "Target {} is already in use",
                disk.get("TARGET").unwrap_or("")
            ),
        ));
    }
    disk.set("DISK_ID", disk_id.to_string());
    disk.set("ATTACH", "YES");
    vm.template.push("DISK", AttrValue::Vector(disk));
    requota(call, &mut tx, &before_vm, &vm)?;
    start(
        &mut vm,
        phase,
        "disk-attach",
        &[("DISK_ID", disk_id.to_string())],
        HistoryMark::CloseCopy,
    );
    finish(call, tx, vm, before, true).await?;
    tracing::info!(vm = id, disk = disk_id, "disk attach started");
    ok_id(id)
}

/// A device kind detach works on: its vector, id key, action and the phases it runs in.
struct Device {
    vector: &'static str,
    key: &'static str,
    action: &'static str,
    running: L,
    poweroff: L,
}

const DISK: Device = Device {
    vector: "DISK",
    key: "DISK_ID",
    action: "disk-detach",
    running: L::Hotplug,
    poweroff: L::HotplugEpilogPoweroff,
};

const NIC: Device = Device {
    vector: "NIC",
    key: "NIC_ID",
    action: "nic-detach",
    running: L::HotplugNic,
    poweroff: L::HotplugNicPoweroff,
};

/// one.vm.detach / one.vm.detachnic: marks the device ATTACH=YES and enters the phase that
/// removes it (the phase's end takes it out of the template).
async fn detach(call: &Call, id: i64, dev: &Device, dev_id: i64) -> ApiResult {
    let tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    let phase = match vm.state {
        _ if running(&vm) => dev.running,
        S::Poweroff => dev.poweroff,
        _ => return Err(refused(call, dev.action, &vm)),
    };
    let before = (vm.state, vm.lcm_state);
    let Some(v) = vm
        .template
        .vectors_mut(dev.vector)
        .find(|v| id_of(v, dev.key) == Some(dev_id))
    else {
        return Err(action(
            call.method,
            &format!("VM {id} has no {} with {} {dev_id}", dev.vector, dev.key),
        ));
    };
    v.set("ATTACH", "YES");
    if dev.vector == "NIC" {
        // The guest reads the context without the NIC once it is gone (OpenNebula clears
        // its variables when the detach starts).
        crate::ops::context::refresh_network_context(&tx, &mut vm, Some(dev_id));
    }
    start(
        &mut vm,
        phase,
        dev.action,
        &[(dev.key, dev_id.to_string())],
        HistoryMark::CloseCopy,
    );
    finish(call, tx, vm, before, true).await?;
    tracing::info!(vm = id, device = dev.vector, dev_id, "detach started");
    ok_id(id)
}

async fn attach_nic(call: &Call, id: i64, text: &str) -> ApiResult {
    let mut nic = single_vector(call, text, "NIC")?;
    let mut tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    let phase = match vm.state {
        _ if running(&vm) => L::HotplugNic,
        S::Poweroff => L::HotplugNicPoweroff,
        _ => return Err(refused(call, "nic-attach", &vm)),
    };
    let before = (vm.state, vm.lcm_state);
    let nic_id = next_id(&vm, "NIC", "NIC_ID");
    nic.remove("NIC_ID");
    nic.set("NIC_ID", nic_id.to_string());
    super::vnet::lease_for_nic(&mut tx, call, &mut nic, id, vm.header.uid)?;
    if nic.get("NAME").is_none_or(str::is_empty) {
        nic.set("NAME", format!("NIC{nic_id}"));
    }
    // The VM's host must serve the NIC's network driver (a host that never said is not
    // limited); the lease taken above goes with the transaction.
    if let Some(h) = vm.history.last()
        && let Some(host) = tx.get::<one_proto::objects::host::Host>(h.hid)
    {
        let needed: Vec<String> = nic
            .get("VN_MAD")
            .map(|m| m.trim().to_string())
            .into_iter()
            .collect();
        if let Some(why) = crate::ops::capability::lacks_network_drivers(&host, &needed) {
            return Err(action(call.method, &why));
        }
    }
    nic.set("ATTACH", "YES");
    vm.template.push("NIC", AttrValue::Vector(nic));
    super::secgroup::authorize_vm(call, &tx, &vm)?;
    crate::secgroup::sync_vm(&mut tx, &mut vm);
    crate::ops::context::refresh_network_context(&tx, &mut vm, None);
    start(
        &mut vm,
        phase,
        "nic-attach",
        &[("NIC_ID", nic_id.to_string())],
        HistoryMark::CloseCopy,
    );
    finish(call, tx, vm, before, true).await?;
    tracing::info!(vm = id, nic = nic_id, "nic attach started");
    ok_id(id)
}

async fn snapshot_create(call: &Call, id: i64, name: &str) -> ApiResult {
    let tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    if !running(&vm) {
        return Err(refused(call, "snapshot-create", &vm));
    }
    let before = (vm.state, vm.lcm_state);
    let snap_id = next_id(&vm, "SNAPSHOT", "SNAPSHOT_ID");
    let now = now_secs();
    let mut s = Vector::new();
    s.set("ACTIVE", "YES");
    s.set("HYPERVISOR_ID", format!("snap-{snap_id}"));
    s.set(
        "NAME",
        if name.is_empty() {
            format!("snapshot-{snap_id}")
        } else {
            name.to_string()
        },
    );
    s.set("SNAPSHOT_ID", snap_id.to_string());
    // The space the snapshot takes: the memory (VM_SNAPSHOT_FACTOR 0 counts no disk).
    s.set(
        "SYSTEM_DISK_SIZE",
        vm.template.get("MEMORY").unwrap_or("0").trim().to_string(),
    );
    s.set("TIME", now.to_string());
    for other in vm.template.vectors_mut("SNAPSHOT") {
        other.remove("ACTIVE");
    }
    vm.template.push("SNAPSHOT", AttrValue::Vector(s));
    start(
        &mut vm,
        L::HotplugSnapshot,
        "snapshot-create",
        &[("SNAPSHOT_ID", snap_id.to_string())],
        HistoryMark::Action,
    );
    finish(call, tx, vm, before, true).await?;
    Ok(Value::Int(snap_id))
}

async fn snapshot_change(call: &Call, id: i64, snap_id: i64, what: &str) -> ApiResult {
    let tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    if !running(&vm) {
        return Err(refused(call, what, &vm));
    }
    if !vm
        .template
        .vectors("SNAPSHOT")
        .any(|s| id_of(s, "SNAPSHOT_ID") == Some(snap_id))
    {
        return Err(action(
            call.method,
            &format!("VM {id} has no snapshot with SNAPSHOT_ID {snap_id}"),
        ));
    }
    let before = (vm.state, vm.lcm_state);
    start(
        &mut vm,
        L::HotplugSnapshot,
        what,
        &[("SNAPSHOT_ID", snap_id.to_string())],
        HistoryMark::Action,
    );
    finish(call, tx, vm, before, true).await?;
    ok_id(id)
}

async fn disk_snapshot_create(call: &Call, id: i64, disk_id: i64, name: &str) -> ApiResult {
    let tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    let phase = match vm.state {
        _ if running(&vm) => L::DiskSnapshot,
        S::Poweroff => L::DiskSnapshotPoweroff,
        S::Suspended => L::DiskSnapshotSuspended,
        _ => return Err(refused(call, "disk-snapshot-create", &vm)),
    };
    let Some(disk) = vm
        .template
        .vectors("DISK")
        .find(|d| id_of(d, "DISK_ID") == Some(disk_id))
        .cloned()
    else {
        return Err(action(call.method, "VM disk does not exist"));
    };
    snapshot_support(&disk).map_err(|e| action(call.method, &e))?;
    let before = (vm.state, vm.lcm_state);
    let size = id_of(&disk, "SIZE").unwrap_or(0);
    let now = now_secs();
    let pos = match vm.snapshots.iter().position(|s| s.disk_id == disk_id) {
        Some(p) => p,
        None => {
            vm.snapshots.push(DiskSnapshots {
                allow_orphans: allow_orphans(&disk).into(),
                current_base: -1,
                disk_id,
                next_snapshot: 0,
                snapshots: Vec::new(),
            });
            vm.snapshots.len() - 1
        }
    };
    let tree = &mut vm.snapshots[pos];
    let snap_id = tree.next_snapshot;
    let parent = tree
        .snapshots
        .iter()
        .find(|s| s.active)
        .map_or(-1, |s| s.id);
    for s in tree.snapshots.iter_mut() {
        s.active = false;
        if s.id == parent {
            s.children = if s.children.is_empty() {
                snap_id.to_string()
            } else {
                format!("{},{snap_id}", s.children)
            };
        }
    }
    tree.snapshots.push(DiskSnapshot {
        active: true,
        children: String::new(),
        date: now,
        id: snap_id,
        name: if name.is_empty() {
            format!("snapshot-{snap_id}")
        } else {
            name.to_string()
        },
        parent,
        size,
    });
    tree.next_snapshot += 1;
    lcm::hotplug::set_snapshot_total(&mut vm, disk_id);
    start(
        &mut vm,
        phase,
        "disk-snapshot-create",
        &[
            ("DISK_ID", disk_id.to_string()),
            ("SNAPSHOT_ID", snap_id.to_string()),
        ],
        HistoryMark::CloseCopy,
    );
    finish(call, tx, vm, before, true).await?;
    Ok(Value::Int(snap_id))
}

async fn disk_snapshot_change(
    call: &Call,
    id: i64,
    disk_id: i64,
    snap_id: i64,
    delete: bool,
) -> ApiResult {
    let what = if delete {
        "disk-snapshot-delete"
    } else {
        "disk-snapshot-revert"
    };
    let tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    let phase = match (vm.state, delete) {
        (S::Active, true) if running(&vm) => L::DiskSnapshotDelete,
        (S::Poweroff, true) => L::DiskSnapshotDeletePoweroff,
        (S::Suspended, true) => L::DiskSnapshotDeleteSuspended,
        (S::Poweroff, false) => L::DiskSnapshotRevertPoweroff,
        _ => return Err(refused(call, what, &vm)),
    };
    let Some(tree) = vm.snapshots.iter().find(|t| t.disk_id == disk_id) else {
        return Err(action(
            call.method,
            &format!("VM {id} disk {disk_id} has no snapshot {snap_id}"),
        ));
    };
    if !tree.snapshots.iter().any(|s| s.id == snap_id) {
        return Err(action(
            call.method,
            &format!("VM {id} disk {disk_id} has no snapshot {snap_id}"),
        ));
    }
    if delete {
        let persistent = vm
            .template
            .vectors("DISK")
            .find(|d| id_of(d, "DISK_ID") == Some(disk_id))
            .is_some_and(|d| {
                d.get("PERSISTENT")
                    .is_some_and(|p| p.eq_ignore_ascii_case("yes"))
            });
        test_delete(tree, snap_id, persistent).map_err(|e| action(call.method, &e))?;
    }
    let before = (vm.state, vm.lcm_state);
    start(
        &mut vm,
        phase,
        what,
        &[
            ("DISK_ID", disk_id.to_string()),
            ("SNAPSHOT_ID", snap_id.to_string()),
        ],
        HistoryMark::CloseCopy,
    );
    finish(call, tx, vm, before, true).await?;
    ok_id(id)
}

/// OpenNebula's checks before a disk snapshot: a disk of an image, not read-only.
fn snapshot_support(disk: &Vector) -> Result<(), String> {
    let kind = disk.get("TYPE").unwrap_or("").trim().to_ascii_uppercase();
    if disk.get("IMAGE_ID").is_none_or(|v| v.trim().is_empty()) || kind == "FS" || kind == "SWAP" {
        return Err("Cannot make snapshots on volatile disks".into());
    }
    if kind == "CDROM" {
        return Err(format!("Cannot make snapshots on disks of type: {kind}"));
    }
    if disk
        .get("READONLY")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"))
    {
        return Err("Cannot make snapshots on readonly disks".into());
    }
    Ok(())
}

/// ALLOW_ORPHANS of a disk's snapshots: the shared, qcow2 and local TM drivers say FORMAT
/// (oned.conf's TM_MAD_CONF), which is DENY for a qcow2 disk and ALLOW for a raw one.
fn allow_orphans(disk: &Vector) -> &'static str {
    let raw = disk
        .get("FORMAT")
        .or_else(|| disk.get("DRIVER"))
        .is_some_and(|f| f.trim().eq_ignore_ascii_case("raw"));
    if raw { "ALLOW" } else { "DENY" }
}

fn children_of(tree: &DiskSnapshots, id: i64) -> Vec<i64> {
    tree.snapshots
        .iter()
        .find(|s| s.id == id)
        .map(|s| {
            s.children
                .split(',')
                .filter_map(|c| c.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether snapshot `id` may be deleted: OpenNebula's rules for ALLOW_ORPHANS=DENY (qcow2
/// disks), which allow taking a snapshot out of a line of them but never orphan one.
pub fn test_delete(tree: &DiskSnapshots, id: i64, persistent: bool) -> Result<(), String> {
    if tree.allow_orphans.eq_ignore_ascii_case("ALLOW") {
        return Ok(());
    }
    let Some(snap) = tree.snapshots.iter().find(|s| s.id == id) else {
        return Err("Snapshot does not exist".into());
    };
    let active = tree.snapshots.iter().find(|s| s.active).map(|s| s.id);
    if persistent && id == 0 {
        return Err("Cannot delete snapshot 0 for persistent disk images".into());
    }
    let children = children_of(tree, id);
    match children.as_slice() {
        [] => return Ok(()),
        [_] if active == Some(id) => {
            return Err("Cannot delete the active snapshot with children".into());
        }
        [child] => {
            let grand = children_of(tree, *child);
            if grand.len() > 1 || (grand.len() == 1 && active == Some(*child)) {
                return Err("Cannot delete snapshot if child has children".into());
            }
        }
        _ => return Err("Cannot delete snapshot with more than one children".into()),
    }
    if snap.parent != -1 && children_of(tree, snap.parent).len() > 1 {
        return Err("Cannot delete snapshot if parent has more than one child".into());
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// disk-saveas

/// The HOTPLUG_SAVEAS phase of a VM in `vm`'s state (OpenNebula's set_saveas_state).
fn saveas_phase(vm: &Vm) -> Option<L> {
    Some(match vm.state {
        _ if running(vm) => L::HotplugSaveas,
        S::Poweroff => L::HotplugSaveasPoweroff,
        S::Suspended => L::HotplugSaveasSuspended,
        S::Undeployed => L::HotplugSaveasUndeployed,
        S::Stopped => L::HotplugSaveasStopped,
        _ => return None,
    })
}

/// one.vm.disksaveas: a new image (LOCKED until the copy is done, then READY; ERROR with the
/// reason if it fails) in the datastore of the disk's image, holding the disk's current
/// content or snapshot `snap_id`'s. The VM goes through HOTPLUG_SAVEAS* and back; the copy
/// is the host's `disk_saveas` (CPDS).
async fn disk_saveas(
    call: &Call,
    id: i64,
    disk_id: i64,
    img_name: &str,
    img_type: &str,
    snap_id: i64,
) -> ApiResult {
    use super::common::ApiObject;
    use crate::store::Kind;
    use one_proto::acl::ObjectType;
    use one_proto::objects::datastore::Datastore;
    use one_proto::objects::image::{Image, ImageSnapshots};
    use one_proto::objects::{Header, Permissions};
    use one_proto::state::{ImageState, ImageType};
    let m = call.method;
    let mut tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    let Some(phase) = saveas_phase(&vm) else {
        return Err(internal(
            m,
            "VM has to be RUNNING, POWEROFF or SUSPENDED to save disks.",
        ));
    };
    let Some(disk) = vm
        .template
        .vectors("DISK")
        .find(|d| id_of(d, "DISK_ID") == Some(disk_id))
        .cloned()
    else {
        return Err(internal(m, "Cannot use DISK. VM disk does not exist"));
    };
    let Some(iid_orig) = id_of(&disk, "IMAGE_ID") else {
        return Err(internal(
            m,
            "Cannot use DISK. Cannot save_as a volatile disk",
        ));
    };
    if snap_id != -1
        && !vm
            .snapshots
            .iter()
            .filter(|t| t.disk_id == disk_id)
            .any(|t| t.snapshots.iter().any(|s| s.id == snap_id))
    {
        return Err(internal(
            m,
            &format!("Cannot use DISK. Snapshot {snap_id} does not exist"),
        ));
    }
    let size = id_of(&disk, "SIZE").unwrap_or(0);
    let orig: one_proto::objects::image::Image = tx
        .get(iid_orig)
        .ok_or_else(|| no_exists(m, "image", iid_orig))?;
    if !matches!(
        orig.image_type,
        ImageType::Os | ImageType::Datablock | ImageType::Cdrom
    ) {
        return Err(internal(
            m,
            &format!("Cannot save an image of type {}", orig.image_type),
        ));
    }
    let image_type = if img_type.trim().is_empty() {
        orig.image_type
    } else {
        ImageType::from_name(img_type.trim())
            .ok_or_else(|| internal(m, &format!("Unknown image type {img_type:?}")))?
    };
    let ds_id = orig.datastore_id;
    let mut ds: Datastore = tx
        .get(ds_id)
        .ok_or_else(|| no_exists(m, "datastore", ds_id))?;
    if ds.total_mb > 0 && size > ds.free_mb {
        return Err(action(m, "Not enough space in datastore"));
    }
    {
        let state = tx.committed();
        common::authorize_create(call, &state, ObjectType::Image)?;
        common::authorize(call, &state, &ds, AuthOp::Use)?;
    }
    common::check_name(img_name).map_err(|e| allocate(m, Image::OBJNAME, &e))?;
    let (uid, gid) = (call.session.uid, call.session.gid);
    if let Some(other) = common::name_taken_by_owner::<Image>(&tx, img_name, uid, -1) {
        return Err(allocate(
            m,
            Image::OBJNAME,
            &format!("NAME is already taken by IMAGE {other}."),
        ));
    }
    quota::charge(
        &mut tx,
        m,
        uid,
        gid,
        &crate::ops::image::datastore_usage(ds_id, size),
    )?;
    let format = crate::ops::vm::disk_format(&disk);
    let new_id = tx.next_id(Kind::Image);
    let source = format!(
        "{}/{}",
        ds.base_path.trim_end_matches('/'),
        crate::auth::random_hex(16)
    );
    let mut template = Template::new();
    template.set("SAVED_IMAGE_ID", iid_orig.to_string());
    template.set("SAVED_DISK_ID", disk_id.to_string());
    template.set("SAVED_VM_ID", id.to_string());
    if snap_id != -1 {
        template.set("SAVED_SNAPSHOT_ID", snap_id.to_string());
    }
    for k in ["TARGET", "DEV_PREFIX"] {
        if let Some(v) = orig.template.get(k).filter(|v| !v.is_empty()) {
            template.set(k, v.to_string());
        }
    }
    let uname = tx
        .get::<one_proto::objects::user::User>(uid)
        .map(|u| u.name)
        .unwrap_or_else(|| call.session.uname.clone());
    let now = now_secs();
    let img = Image {
        header: Header {
            id: new_id,
            uid,
            gid,
            uname,
            gname: call.session.gname.clone(),
            name: img_name.to_string(),
            perms: Permissions::from_umask(call.oned.config.umask()),
            lock: None,
        },
        image_type,
        disk_type: ds.disk_type,
        persistent: false,
        regtime: now,
        modtime: now,
        source: source.clone(),
        path: String::new(),
        format,
        fs: String::new(),
        size_mb: size,
        state: ImageState::Locked,
        prev_state: ImageState::Init,
        running_vms: 0,
        cloning_ops: 0,
        cloning_id: -1,
        target_snapshot: -1,
        datastore_id: ds_id,
        datastore: ds.header.name.clone(),
        vms: Vec::new(),
        clones: Vec::new(),
        app_clones: Vec::new(),
        template,
        snapshots: ImageSnapshots::default(),
        // The host copies the disk (the lcm's disk-saveas), not the frontend agent.
        op: None,
    };
    tx.put(img);
    if !ds.images.contains(&new_id) {
        ds.images.push(new_id);
    }
    let ds_path = ds.base_path.clone();
    tx.put(ds);
    // The DISK says what it is being saved as while the copy runs (OpenNebula's
    // HOTPLUG_SAVE_AS* attributes).
    for d in vm.template.vectors_mut("DISK") {
        if id_of(d, "DISK_ID") == Some(disk_id) {
            d.set("HOTPLUG_SAVE_AS", new_id.to_string());
            d.set("HOTPLUG_SAVE_AS_ACTIVE", "YES");
            d.set("HOTPLUG_SAVE_AS_SNAPSHOT_ID", snap_id.to_string());
            d.set("HOTPLUG_SAVE_AS_SOURCE", source.clone());
        }
    }
    let before = (vm.state, vm.lcm_state);
    start(
        &mut vm,
        phase,
        "disk-saveas",
        &[
            ("DISK_ID", disk_id.to_string()),
            ("SNAPSHOT_ID", snap_id.to_string()),
            ("IMAGE_ID", new_id.to_string()),
            ("SAVEAS_SOURCE", source),
            ("SAVEAS_DATASTORE", ds_path),
        ],
        HistoryMark::Action,
    );
    finish(call, tx, vm, before, true).await?;
    tracing::info!(
        vm = id,
        disk = disk_id,
        image = new_id,
        snap = snap_id,
        "disk save-as started"
    );
    Ok(Value::Int(new_id))
}

async fn disk_snapshot_rename(
    call: &Call,
    id: i64,
    disk_id: i64,
    snap_id: i64,
    name: &str,
) -> ApiResult {
    if name.trim().is_empty() {
        return Err(action(call.method, "The snapshot name cannot be empty"));
    }
    let mut tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    let Some(snap) = vm
        .snapshots
        .iter_mut()
        .find(|t| t.disk_id == disk_id)
        .and_then(|t| t.snapshots.iter_mut().find(|s| s.id == snap_id))
    else {
        return Err(action(
            call.method,
            &format!("VM {id} disk {disk_id} has no snapshot {snap_id}"),
        ));
    };
    snap.name = name.to_string();
    tx.put(vm);
    commit(call, tx).await?;
    ok_id(id)
}

async fn disk_resize(call: &Call, id: i64, disk_id: i64, size: &str) -> ApiResult {
    let new_size: i64 = size
        .trim()
        .parse()
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| action(call.method, &format!("Invalid disk size \"{size}\" (MB)")))?;
    let mut tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    let phase = match vm.state {
        _ if running(&vm) => L::DiskResize,
        S::Poweroff => L::DiskResizePoweroff,
        S::Undeployed => L::DiskResizeUndeployed,
        _ => return Err(refused(call, "disk-resize", &vm)),
    };
    let before_vm = vm.clone();
    let before = (vm.state, vm.lcm_state);
    let Some(disk) = vm
        .template
        .vectors_mut("DISK")
        .find(|d| id_of(d, "DISK_ID") == Some(disk_id))
    else {
        return Err(action(
            call.method,
            &format!("VM {id} has no DISK with DISK_ID {disk_id}"),
        ));
    };
    let old = id_of(disk, "SIZE").unwrap_or(0);
    if new_size <= old {
        return Err(action(
            call.method,
            &format!("New size {new_size} MB must be larger than the current {old} MB"),
        ));
    }
    disk.set("SIZE", new_size.to_string());
    requota(call, &mut tx, &before_vm, &vm)?;
    start(
        &mut vm,
        phase,
        "disk-resize",
        &[
            ("DISK_ID", disk_id.to_string()),
            ("OLD_SIZE", old.to_string()),
        ],
        HistoryMark::CloseCopy,
    );
    finish(call, tx, vm, before, true).await?;
    ok_id(id)
}

async fn resize(call: &Call, id: i64, text: &str, enforce: bool) -> ApiResult {
    let t = Template::parse(text)
        .map_err(|e| rpc_api(call.method, &format!("Cannot parse template: {e}")))?;
    let mut tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    let live = running(&vm);
    let editable = matches!(
        vm.state,
        S::Init
            | S::Pending
            | S::Hold
            | S::Cloning
            | S::CloningFailure
            | S::Poweroff
            | S::Undeployed
    );
    if !live && !editable {
        return Err(refused(call, "resize", &vm));
    }
    let before_vm = vm.clone();
    let before = (vm.state, vm.lcm_state);
    let mut args = Vec::new();
    for key in ["CPU", "VCPU", "MEMORY"] {
        let Some(v) = t.get(key) else { continue };
        let v = v.trim();
        let ok = match key {
            "CPU" => v.parse::<f64>().is_ok_and(|x| x > 0.0),
            _ => v.parse::<i64>().is_ok_and(|x| x > 0),
        };
        if !ok {
            return Err(action(
                call.method,
                &format!("{key} must be a positive number, not \"{v}\""),
            ));
        }
        args.push((key, vm.template.get(key).unwrap_or("").to_string()));
        vm.template.set(key, v.to_string());
    }
    if args.is_empty() {
        return Err(action(
            call.method,
            "Nothing to resize: give CPU, VCPU or MEMORY",
        ));
    }
    requota(call, &mut tx, &before_vm, &vm)?;
    // The host keeps what the VM takes; a grown VM must still fit when asked to check.
    if let Some(h) = vm.history.last() {
        let hid = h.hid;
        let on_host = tx
            .get::<one_proto::objects::host::Host>(hid)
            .is_some_and(|host| host.vms.contains(&id));
        if on_host {
            if enforce && let Some(mut host) = tx.get::<one_proto::objects::host::Host>(hid) {
                host.share.cpu_usage -= effects::cpu_share(&before_vm);
                host.share.mem_usage -= effects::mem_share(&before_vm);
                lcm::actions::host_fits(&vm, &host).map_err(|e| action(call.method, &e))?;
            }
            effects::recharge_host(&mut tx, &before_vm, &vm);
        }
    }
    let started = if live {
        let args: Vec<(&str, String)> = args
            .into_iter()
            .map(|(k, v)| match k {
                "CPU" => ("OLD_CPU", v),
                "VCPU" => ("OLD_VCPU", v),
                _ => ("OLD_MEMORY", v),
            })
            .collect();
        lcm::enter(&mut vm, L::HotplugResize, op("resize", &args));
        true
    } else {
        false
    };
    effects::close_cp_history(&mut vm, lcm::actions::action_code("resize"), now_secs());
    finish(call, tx, vm, before, started).await?;
    ok_id(id)
}

/// Sections one.vm.updateconf may replace (OpenNebula's list).
const UPDATECONF_SECTIONS: &[&str] = &[
    "OS",
    "FEATURES",
    "INPUT",
    "GRAPHICS",
    "RAW",
    "CONTEXT",
    "CPU_MODEL",
    "BACKUP_CONFIG",
    "VIDEO",
];

async fn updateconf(call: &Call, id: i64, text: &str, mode: i64) -> ApiResult {
    if !(0..=1).contains(&mode) {
        return Err(rpc_api(
            call.method,
            &format!("Invalid update mode {mode}: 0 replace, 1 merge"),
        ));
    }
    let t = Template::parse(text)
        .map_err(|e| rpc_api(call.method, &format!("Cannot parse template: {e}")))?;
    let tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    let live = running(&vm);
    let editable = matches!(
        vm.state,
        S::Init
            | S::Pending
            | S::Hold
            | S::Cloning
            | S::CloningFailure
            | S::Poweroff
            | S::Undeployed
    );
    if !live && !editable {
        return Err(internal(
            call.method,
            &format!(
                "configuration cannot be updated in state {}",
                vm.state_str()
            ),
        ));
    }
    let before = (vm.state, vm.lcm_state);
    for a in &t.attrs {
        if !UPDATECONF_SECTIONS.contains(&a.name.as_str()) {
            continue;
        }
        let keep_context_ids = a.name == "CONTEXT";
        let mut value = a.value.clone();
        if keep_context_ids
            && let (AttrValue::Vector(new), Some(old)) = (&mut value, vm.template.vector("CONTEXT"))
        {
            for k in ["DISK_ID", "TARGET"] {
                if let Some(v) = old.get(k) {
                    new.set(k, v.to_string());
                }
            }
            // FILES_DS sent back as the VM has it stays; a new one is resolved as at
            // allocation (never a host path written by the user).
            if new.get("FILES_DS").is_some() && new.get("FILES_DS") != old.get("FILES_DS") {
                super::vm::expand_files_ds(call, &tx.committed(), vm.header.uid, new)
                    .map_err(|m| internal(call.method, &m))?;
            }
        } else if keep_context_ids && let AttrValue::Vector(new) = &mut value {
            super::vm::expand_files_ds(call, &tx.committed(), vm.header.uid, new)
                .map_err(|m| internal(call.method, &m))?;
        }
        match (mode, &value, vm.template.vector(&a.name).cloned()) {
            (1, AttrValue::Vector(new), Some(mut old)) => {
                for (k, v) in &new.attrs {
                    old.set(k, v.clone());
                }
                vm.template.remove(&a.name);
                vm.template.push(&a.name, AttrValue::Vector(old));
            }
            _ => {
                vm.template.remove(&a.name);
                vm.template.push(&a.name, value);
            }
        }
    }
    if live {
        lcm::enter(&mut vm, L::Hotplug, op("updateconf", &[]));
    }
    effects::set_history_action(&mut vm, lcm::actions::action_code("updateconf"));
    finish(call, tx, vm, before, live).await?;
    ok_id(id)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// OpenNebula's Snapshots::test_delete for DENY (qcow2 disks).
    #[test]
    fn deny_rules_for_deleting_disk_snapshots() {
        // 0 <- 1 <- 2 (active): any of the line may go (its child takes its place).
        let line = tree(&[(0, -1, "1", false), (1, 0, "2", false), (2, 1, "", true)]);
        assert!(test_delete(&line, 0, false).is_ok());
        assert!(test_delete(&line, 1, false).is_ok());
        assert!(test_delete(&line, 2, false).is_ok());
        assert_eq!(
            test_delete(&line, 0, true).unwrap_err(),
            "Cannot delete snapshot 0 for persistent disk images"
        );
        // 0 with two children; 1 active with a child.
        let fork = tree(&[
            (0, -1, "1,2", false),
            (1, 0, "3", true),
            (2, 0, "", false),
            (3, 1, "", false),
        ]);
        assert_eq!(
            test_delete(&fork, 0, false).unwrap_err(),
            "Cannot delete snapshot with more than one children"
        );
        assert_eq!(
            test_delete(&fork, 1, false).unwrap_err(),
            "Cannot delete the active snapshot with children"
        );
        assert!(test_delete(&fork, 2, false).is_ok());
        // 0 <- 1 (active) <- 3: 0's child is active and has a child.
        let under_active = tree(&[(0, -1, "1", false), (1, 0, "3", true), (3, 1, "", false)]);
        assert_eq!(
            test_delete(&under_active, 0, false).unwrap_err(),
            "Cannot delete snapshot if child has children"
        );
        assert!(test_delete(&fork, 3, false).is_ok());
        // ALLOW (raw disks): anything goes.
        let mut raw = fork.clone();
        raw.allow_orphans = "ALLOW".into();
        assert!(test_delete(&raw, 0, false).is_ok());
    }

    #[test]
    fn volatile_cdrom_and_readonly_disks_have_no_snapshots() {
        let v = |pairs: &[(&str, &str)]| {
            let mut v = Vector::new();
            for (k, x) in pairs {
                v.set(k, *x);
            }
            v
        };
        assert!(snapshot_support(&v(&[("IMAGE_ID", "3"), ("FORMAT", "qcow2")])).is_ok());
        assert_eq!(
            snapshot_support(&v(&[("TYPE", "fs"), ("SIZE", "4")])).unwrap_err(),
            "Cannot make snapshots on volatile disks"
        );
        assert!(snapshot_support(&v(&[("IMAGE_ID", "3"), ("TYPE", "CDROM")])).is_err());
        assert!(snapshot_support(&v(&[("IMAGE_ID", "3"), ("READONLY", "YES")])).is_err());
        assert_eq!(allow_orphans(&v(&[("FORMAT", "qcow2")])), "DENY");
        assert_eq!(allow_orphans(&v(&[("FORMAT", "raw")])), "ALLOW");
    }
}
