//! Changes to a deployed VM: disk and NIC attach / detach, system and disk snapshots, disk
//! resize, capacity resize, updateconf. Each checks the state, edits the template in the
//! call's transaction, and enters the matching hotplug phase (crate::lcm); the phase's end
//! (crate::lcm::hotplug) keeps or takes back the change.

use super::common::{self, commit};
use super::vm_lifecycle::log_state;
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id};
use crate::auth::now_secs;
use crate::lcm::{self, effects};
use crate::quota;
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
    quota::release(tx, u, g, &super::vm::quota_usage(before));
    quota::charge(tx, call.method, u, g, &super::vm::quota_usage(after))
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
        super::vm::refresh_network_context(&tx, &mut vm, Some(dev_id));
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
    nic.set("ATTACH", "YES");
    vm.template.push("NIC", AttrValue::Vector(nic));
    crate::secgroup::authorize_vm(call, &tx, &vm)?;
    crate::secgroup::sync_vm(&mut tx, &mut vm);
    super::vm::refresh_network_context(&tx, &mut vm, None);
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

fn disk_exists(vm: &Vm, disk_id: i64) -> bool {
    vm.template
        .vectors("DISK")
        .any(|d| id_of(d, "DISK_ID") == Some(disk_id))
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
    if !disk_exists(&vm, disk_id) {
        return Err(action(
            call.method,
            &format!("VM {id} has no DISK with DISK_ID {disk_id}"),
        ));
    }
    let before = (vm.state, vm.lcm_state);
    let size = vm
        .template
        .vectors("DISK")
        .find(|d| id_of(d, "DISK_ID") == Some(disk_id))
        .and_then(|d| id_of(d, "SIZE"))
        .unwrap_or(0);
    let now = now_secs();
    let pos = match vm.snapshots.iter().position(|s| s.disk_id == disk_id) {
        Some(p) => p,
        None => {
            vm.snapshots.push(DiskSnapshots {
                allow_orphans: "MIXED".into(),
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
    let Some(snap) = vm
        .snapshots
        .iter()
        .find(|t| t.disk_id == disk_id)
        .and_then(|t| t.snapshots.iter().find(|s| s.id == snap_id))
    else {
        return Err(action(
            call.method,
            &format!("VM {id} disk {disk_id} has no snapshot {snap_id}"),
        ));
    };
    if delete && (snap.active || !snap.children.is_empty()) {
        return Err(action(
            call.method,
            &format!("Snapshot {snap_id} is active or has children and cannot be deleted"),
        ));
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
