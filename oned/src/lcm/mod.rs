//! The VM lifecycle: OpenNebula's state machine, run as persisted sequences of driver steps.
//!
//! ```text
//!  allocate ─► PENDING ◄──────── resume (STOPPED, UNDEPLOYED) ◄──────────┐
//!     │ hold ▲│ release          │ deploy (scheduler or one.vm.deploy)    │
//!     ▼      │▼                  ▼                                         │
//!    HOLD ───┘          ACTIVE/PROLOG ──fail──► PROLOG_FAILURE             │
//!                            │ (PROLOG_RESUME / PROLOG_UNDEPLOY after stop │ / undeploy)
//!                            ▼                                             │
//!                       ACTIVE/BOOT ──fail──► BOOT_FAILURE                 │
//!                            ▼                                             │
//!   ┌──────────────── ACTIVE/RUNNING ◄───── resume: BOOT_POWEROFF / BOOT_SUSPENDED / BOOT_UNKNOWN
//!   │ terminate        │ poweroff   │ suspend      │ stop          │ undeploy
//!   ▼                  ▼            ▼              ▼               ▼
//! SHUTDOWN      SHUTDOWN_POWEROFF  SAVE_SUSPEND   SAVE_STOP     SHUTDOWN_UNDEPLOY
//!   ▼                  ▼            ▼              ▼               ▼
//! EPILOG ─► DONE    POWEROFF     SUSPENDED      EPILOG_STOP    EPILOG_UNDEPLOY
//!   └fail─► EPILOG_FAILURE                         ▼               ▼
//!                                               STOPPED ──┘     UNDEPLOYED ──┘
//!
//!  migrate: RUNNING ─► SAVE_MIGRATE ─► PROLOG_MIGRATE ─► BOOT_MIGRATE ─► RUNNING (live: MIGRATE)
//!  hotplug: RUNNING ─► HOTPLUG / HOTPLUG_NIC / HOTPLUG_SNAPSHOT / DISK_SNAPSHOT* / ... ─► back
//!  recover: *_FAILURE ─ retry ─► the failed phase; success/failure conclude it; delete
//!           ─► CLEANUP_DELETE ─► DONE; delete-recreate ─► CLEANUP_RESUBMIT ─► PENDING
//! ```
//!
//! Each transient LCM state (a *phase*) runs a list of driver steps ([`table`]), each with an
//! undo. Entering a phase is one committed transaction, the VM carrying a [`VmOperation`] (the
//! action, arguments, a generation); the phase's steps then run in a task of their own and
//! their outcome is applied in another transaction that moves the VM on ([`conclude`]). When a
//! step fails, the failure is persisted first (`op.failed`), the steps already done are undone
//! in reverse, then the VM lands in the phase's failure state with the driver's message in
//! USER_TEMPLATE/ERROR and `vms/<id>/vm.log`. A restarted oned finds every VM in a phase and
//! runs the phase again (driver operations are idempotent), or finishes its unwinding.
//! Which action enters which phase is in [`actions`]; host capacity and history in [`effects`].

pub mod actions;
pub mod effects;
pub mod hotplug;
pub mod table;
pub mod vmlog;

use crate::auth::now_secs;
use crate::config::Config;
use crate::daemon::Oned;
use crate::store::Txn;
use one_proto::driver::{DriverError, DriverOp, DriverReply, DriverRequest};
use one_proto::objects::host::Host;
use one_proto::objects::vm::{Vm, VmOperation};
use one_proto::state::{LcmState, VmState};
use one_proto::template::Template;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use table::{Next, On, Phase};

/// The runners of the VMs with driver work in flight.
pub struct Lcm {
    runners: Mutex<HashMap<i64, u64>>,
    next_token: AtomicU64,
    driver_timeout: Duration,
}

impl Lcm {
    pub fn new(cfg: &Config) -> Lcm {
        Lcm {
            runners: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            driver_timeout: Duration::from_secs(cfg.lcm.driver_timeout_seconds.max(1)),
        }
    }
}

/// Resumes the operations a previous oned left in flight.
pub fn start(oned: &Arc<Oned>) {
    let ids: Vec<i64> = {
        let st = oned.store.read();
        st.vms
            .iter()
            .filter(|vm| work_of(vm).is_some())
            .map(|vm| vm.header.id)
            .collect()
    };
    if !ids.is_empty() {
        tracing::info!(count = ids.len(), "resuming vm operations in flight");
    }
    for id in ids {
        kick(oned, id);
    }
}

/// Makes sure VM `id`'s driver work runs (call after committing a VM into a phase).
pub fn kick(oned: &Arc<Oned>, id: i64) {
    spawn_runner(oned, id, false);
}

/// Starts a fresh runner for VM `id` even if one is busy (it is left to finish its step and
/// then finds itself superseded). For recover and for upgrading a soft shutdown to hard.
pub fn restart(oned: &Arc<Oned>, id: i64) {
    spawn_runner(oned, id, true);
}

fn spawn_runner(oned: &Arc<Oned>, id: i64, replace: bool) {
    let Ok(mut runners) = oned.lcm.runners.lock() else {
        return;
    };
    if runners.contains_key(&id) && !replace {
        return;
    }
    let token = oned.lcm.next_token.fetch_add(1, Ordering::Relaxed);
    runners.insert(id, token);
    let oned = oned.clone();
    tokio::spawn(async move { drive(oned, id, token).await });
}

/// The phase VM `vm` is in, with its work, if any.
fn work_of(vm: &Vm) -> Option<(LcmState, Phase, VmOperation)> {
    if vm.state != VmState::Active {
        return None;
    }
    let op = vm.op.as_ref()?;
    table::phase(vm.lcm_state, op).map(|p| (vm.lcm_state, p, op.clone()))
}

/// Moves a VM to a new state, remembering the one it leaves (PREV_STATE, PREV_LCM_STATE).
pub fn set_state(vm: &mut Vm, state: VmState, lcm: LcmState) {
    vm.prev_state = vm.state;
    vm.prev_lcm_state = vm.lcm_state;
    vm.state = state;
    vm.lcm_state = lcm;
}

/// Enters transient state `lcm` with operation `op` (a new generation).
pub fn enter(vm: &mut Vm, lcm: LcmState, mut op: VmOperation) {
    op.generation = rand::random();
    op.failed = None;
    if matches!(
        lcm,
        LcmState::Epilog | LcmState::EpilogStop | LcmState::EpilogUndeploy
    ) && let Some(h) = vm.history.last_mut()
    {
        let now = now_secs();
        if h.rstime != 0 && h.retime == 0 {
            h.retime = now;
        }
        if h.estime == 0 {
            h.estime = now;
        }
    }
    set_state(vm, VmState::Active, lcm);
    vm.op = Some(op);
}

/// Sets USER_TEMPLATE/ERROR as OpenNebula does: the time, then the message.
pub fn set_error(vm: &mut Vm, msg: &str, now: i64) {
    vm.user_template
        .set("ERROR", format!("{} : {msg}", vmlog::ctime(now)));
}

async fn drive(oned: Arc<Oned>, id: i64, token: u64) {
    loop {
        let work = {
            let Ok(mut runners) = oned.lcm.runners.lock() else {
                return;
            };
            if runners.get(&id) != Some(&token) {
                return; // superseded by a newer runner
            }
            let vm = oned.store.get::<Vm>(id);
            match vm
                .as_deref()
                .and_then(|v| work_of(v).map(|w| (v.clone(), w)))
            {
                Some(w) => w,
                None => {
                    runners.remove(&id);
                    return;
                }
            }
        };
        let (vm, (lcm, phase, op)) = work;
        run_phase(&oned, &vm, lcm, &phase, &op).await;
    }
}

async fn run_phase(oned: &Arc<Oned>, vm: &Vm, lcm: LcmState, phase: &Phase, op: &VmOperation) {
    let id = vm.header.id;
    let generation = op.generation;
    // Every step of the phase sees the VM as it was when the phase started.
    let vm_xml = vm.to_xml();
    tracing::debug!(vm = id, phase = %lcm, action = %op.action, "phase starts");
    if let Some(msg) = &op.failed {
        // An unwinding interrupted by a restart: undo what may have been done, then fail.
        // Not the host-local datastores' file moves: whether the domain had already moved
        // is not known here, and removing the files it runs on would lose data (a stale
        // directory left behind costs only disk space).
        for s in phase.steps.iter().rev().filter(|s| !s.local_only) {
            if let Some(u) = s.undo {
                let _ = exec(oned, vm, &vm_xml, u, s.on, op).await;
            }
        }
        conclude_in_txn(oned, id, lcm, generation, false, None, Some(msg.clone())).await;
        return;
    }
    let mut done = Vec::new();
    let mut deploy_id = None;
    // Steps for host-local system datastores (files that move with the VM).
    let local = vm
        .history
        .last()
        .is_some_and(|h| crate::ops::datastore::tm_local(&h.tm_mad));
    for s in phase.steps.iter().filter(|s| local || !s.local_only) {
        match exec(oned, vm, &vm_xml, s.op, s.on, op).await {
            Ok(reply) => {
                if reply.deploy_id.is_some() {
                    deploy_id = reply.deploy_id;
                }
                done.push(*s);
            }
            Err(e) if phase.best_effort || s.cleanup => {
                tracing::warn!(vm = id, op = s.op.name(), error = %e, "cleanup step failed, going on");
                vmlog::append(
                    &oned.data_dir.root.join("vms"),
                    id,
                    "LCM",
                    vmlog::Level::Error,
                    &[format!("Cleanup {} failed (ignored): {e}", s.op.name())],
                    now_secs(),
                );
            }
            Err(e) => {
                let msg = format!("Error executing {}: {}", s.op.name(), e.message);
                tracing::warn!(vm = id, phase = %lcm, op = s.op.name(), error = %e.message, "driver step failed");
                if done.iter().any(|d| d.undo.is_some()) {
                    // Persist the failure before undoing, so a crash mid-undo finishes it.
                    if !mark_failed(oned, id, lcm, generation, &msg).await {
                        return;
                    }
                    // Once the domain moved (a live migration), its new host's files are
                    // what it runs on: they stay.
                    let moved = done.iter().any(|d| d.op == DriverOp::Migrate);
                    for d in done.iter().rev().filter(|d| !(moved && d.local_only)) {
                        if let Some(u) = d.undo
                            && let Err(ue) = exec(oned, vm, &vm_xml, u, d.on, op).await
                        {
                            tracing::warn!(vm = id, op = u.name(), error = %ue, "undo failed");
                        }
                    }
                }
                conclude_in_txn(oned, id, lcm, generation, false, None, Some(msg)).await;
                return;
            }
        }
    }
    conclude_in_txn(oned, id, lcm, generation, true, deploy_id, None).await;
}

/// Runs one driver operation for `vm` on the host `on` names, within the driver timeout.
async fn exec(
    oned: &Arc<Oned>,
    vm: &Vm,
    vm_xml: &str,
    op: DriverOp,
    on: On,
    vmop: &VmOperation,
) -> Result<DriverReply, DriverError> {
    let n = vm.history.len();
    let (cur, src) = match n {
        0 => return Err(DriverError::new("the VM has no host")),
        1 => (&vm.history[0], &vm.history[0]),
        _ => (&vm.history[n - 1], &vm.history[n - 2]),
    };
    let (target, other) = match on {
        On::Current => (cur, src),
        On::Source => (src, cur),
    };
    if op == DriverOp::DiskSaveas
        && matches!(
            vm.lcm_state,
            LcmState::HotplugSaveasStopped | LcmState::HotplugSaveasUndeployed
        )
        && crate::ops::datastore::tm_local(&target.tm_mad)
    {
        // Off a host-local datastore, a stopped or undeployed VM's files are on the
        // frontend: its agent copies the disk, whatever became of the host.
        return save_stashed(oned, vm, target.ds_id, vmop).await;
    }
    let Some(host) = oned.store.get::<Host>(target.hid) else {
        return Err(DriverError::new(format!(
            "host {} ({}) no longer exists",
            target.hid, target.hostname
        )));
    };
    let driver = crate::driver::for_host(oned, &host);
    let mut args = vmop.args.clone();
    if op == DriverOp::Migrate {
        // A live migration runs on the source and reaches the destination's hypervisor: the
        // destination host's MIGRATE_URI says how, when the default (qemu+ssh to its name)
        // does not fit (a libvirtd on another port, a test host).
        let uri = oned
            .store
            .get::<Host>(other.hid)
            .and_then(|h| h.template.get("MIGRATE_URI").map(str::to_string));
        if let Some(uri) = uri.filter(|u| !u.is_empty()) {
            args.insert("MIGRATE_URI".into(), uri);
        }
    }
    if op == DriverOp::Shutdown {
        args.extend(shutdown_settings(&vm.user_template, &host.template));
    }
    if matches!(
        op,
        DriverOp::EpilogStop
            | DriverOp::Epilog
            | DriverOp::EpilogDelete
            | DriverOp::PrologResume
            | DriverOp::PrologMigrate
    ) {
        // Host-local datastores: where the frontend keeps the files between two stays,
        // in the system datastore they left (this stay's for a move out and for the
        // terminate of a stopped VM, the previous one's for a move in).
        let left = if matches!(
            op,
            DriverOp::EpilogStop | DriverOp::Epilog | DriverOp::EpilogDelete
        ) {
            target
        } else {
            other
        };
        if let Some(ds) = oned
            .store
            .get::<one_proto::objects::datastore::Datastore>(left.ds_id)
        {
            args.insert(
                "STASH".into(),
                crate::storage::relay::stash_path(&ds.base_path, vm.header.id)
                    .display()
                    .to_string(),
            );
        }
    }
    let req = DriverRequest {
        op,
        vm_id: vm.header.id,
        deploy_id: vm.deploy_id.clone(),
        host: target.hostname.clone(),
        source_host: if std::ptr::eq(target, other) {
            String::new()
        } else {
            other.hostname.clone()
        },
        ds_id: target.ds_id,
        vm_xml: vm_xml.to_string(),
        args,
    };
    let timeout = oned.lcm.driver_timeout;
    match tokio::time::timeout(timeout, driver.execute(req)).await {
        Ok(r) => r,
        Err(_) => Err(DriverError::new(format!(
            "{} timed out after {} s",
            op.name(),
            timeout.as_secs()
        ))),
    }
}

/// disk-saveas of a VM stopped or undeployed off host-local system datastore `sys_ds`: the
/// frontend agent copies the disk from its copy of the VM's files (the stash) into the new
/// image (the request's IMAGE_ID, SAVEAS_SOURCE, SNAPSHOT_ID).
async fn save_stashed(
    oned: &Arc<Oned>,
    vm: &Vm,
    sys_ds: i64,
    vmop: &VmOperation,
) -> Result<DriverReply, DriverError> {
    use one_proto::ds::{DsDir, DsReply, DsRequest, Target};
    use one_proto::objects::datastore::Datastore;
    use one_proto::objects::image::Image;
    let arg = |k: &str| vmop.args.get(k).map(|v| v.trim()).unwrap_or("");
    let num = |k: &str| {
        arg(k)
            .parse::<i64>()
            .map_err(|_| DriverError::new(format!("disk-saveas needs {k}, got {:?}", arg(k))))
    };
    let (disk_id, image_id) = (num("DISK_ID")?, num("IMAGE_ID")?);
    let snapshot = match num("SNAPSHOT_ID")? {
        -1 => None,
        s => Some(u32::try_from(s).map_err(|_| DriverError::new(format!("no snapshot {s}")))?),
    };
    let disk_id =
        u32::try_from(disk_id).map_err(|_| DriverError::new(format!("no disk {disk_id}")))?;
    let Some(disk) = vm
        .template
        .vectors("DISK")
        .find(|d| d.get("DISK_ID").map(str::trim) == Some(&disk_id.to_string()))
    else {
        return Err(DriverError::new(format!("the VM has no DISK {disk_id}")));
    };
    let format = crate::ops::vm::disk_format(disk);
    let sys = oned
        .store
        .get::<Datastore>(sys_ds)
        .ok_or_else(|| DriverError::new(format!("system datastore {sys_ds} no longer exists")))?;
    let image = oned
        .store
        .get::<Image>(image_id)
        .ok_or_else(|| DriverError::new(format!("image {image_id} no longer exists")))?;
    let ds = oned
        .store
        .get::<Datastore>(image.datastore_id)
        .ok_or_else(|| {
            DriverError::new(format!("datastore {} no longer exists", image.datastore_id))
        })?;
    let req = DsRequest::SaveStashed {
        stash: crate::storage::relay::stash_path(&sys.base_path, vm.header.id)
            .display()
            .to_string(),
        vm_id: vm.header.id,
        disk_id,
        snapshot,
        format,
        to: Target {
            ds: DsDir {
                id: ds.header.id,
                path: ds.base_path.clone(),
            },
            source: arg("SAVEAS_SOURCE").to_string(),
        },
    };
    match oned.storage.call(req, oned.lcm.driver_timeout).await {
        Ok(DsReply::Done { info }) => Ok(DriverReply {
            deploy_id: None,
            info,
        }),
        Ok(other) => Err(DriverError::new(format!(
            "the frontend agent answered {other:?} to a save-as"
        ))),
        Err(e) => Err(DriverError::new(e.to_string())),
    }
}

/// The graceful shutdown settings that the VM's USER_TEMPLATE or its host's TEMPLATE give
/// (the VM's win), passed to the driver as request arguments: SHUTDOWN_TIMEOUT (seconds) and
/// SHUTDOWN_FORCE_DESTROY (YES|NO). Without them the agent uses `[lcm]`'s values from its
/// welcome; it also checks the values (a bad one fails the shutdown, saying why).
fn shutdown_settings(vm: &Template, host: &Template) -> Vec<(String, String)> {
    ["SHUTDOWN_TIMEOUT", "SHUTDOWN_FORCE_DESTROY"]
        .into_iter()
        .filter_map(|name| {
            [vm, host]
                .into_iter()
                .filter_map(|t| t.get(name).map(str::trim))
                .find(|v| !v.is_empty())
                .map(|v| (name.to_string(), v.to_string()))
        })
        .collect()
}

/// Runs one driver operation that changes no state (reboot, reset) in the background; a
/// failure is reported in USER_TEMPLATE/ERROR and the log.
pub fn one_shot(oned: &Arc<Oned>, id: i64, op: DriverOp) {
    let oned = oned.clone();
    tokio::spawn(async move {
        let Some(vm) = oned.store.get::<Vm>(id) else {
            return;
        };
        let vmop = VmOperation {
            action: op.name().to_string(),
            ..VmOperation::default()
        };
        let res = exec(&oned, &vm, &vm.to_xml(), op, On::Current, &vmop).await;
        let now = now_secs();
        let vms = oned.data_dir.root.join("vms");
        match res {
            Ok(_) => {
                vmlog::append(
                    &vms,
                    id,
                    "VM",
                    vmlog::Level::Info,
                    &[format!("{} done", op.name())],
                    now,
                );
            }
            Err(e) => {
                let msg = format!("Error executing {}: {}", op.name(), e.message);
                vmlog::append(
                    &vms,
                    id,
                    "VMM",
                    vmlog::Level::Error,
                    std::slice::from_ref(&msg),
                    now,
                );
                let mut tx = oned.store.begin().await;
                if let Some(mut vm) = tx.get::<Vm>(id) {
                    set_error(&mut vm, &msg, now);
                    tx.put(vm);
                    if let Err(e) = tx.commit().await {
                        tracing::error!(vm = id, error = %e, "cannot store the error");
                    }
                }
            }
        }
    });
}

/// Persists that the current phase failed and is being unwound. False if the VM moved on.
async fn mark_failed(oned: &Arc<Oned>, id: i64, lcm: LcmState, generation: u64, msg: &str) -> bool {
    loop {
        let mut tx = oned.store.begin().await;
        let Some(mut vm) = tx.get::<Vm>(id) else {
            return false;
        };
        if !same_phase(&vm, lcm, generation) {
            return false;
        }
        if let Some(o) = vm.op.as_mut() {
            o.failed = Some(msg.to_string());
        }
        tx.put(vm);
        match tx.commit().await {
            Ok(()) => return true,
            Err(e) => {
                tracing::error!(vm = id, error = %e, "cannot store the failure, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn same_phase(vm: &Vm, lcm: LcmState, generation: u64) -> bool {
    vm.state == VmState::Active
        && vm.lcm_state == lcm
        && vm.op.as_ref().is_some_and(|o| o.generation == generation)
}

/// Applies the end of a phase in its own transaction (unless the VM moved on meanwhile).
async fn conclude_in_txn(
    oned: &Arc<Oned>,
    id: i64,
    lcm: LcmState,
    generation: u64,
    success: bool,
    deploy_id: Option<String>,
    error: Option<String>,
) {
    loop {
        let mut tx = oned.store.begin().await;
        let Some(mut vm) = tx.get::<Vm>(id) else {
            return;
        };
        if !same_phase(&vm, lcm, generation) {
            tracing::debug!(vm = id, phase = %lcm, "phase superseded; result dropped");
            return;
        }
        let now = now_secs();
        conclude(
            &mut tx,
            &mut vm,
            lcm,
            success,
            deploy_id.clone(),
            error.as_deref(),
            now,
        );
        let (state, lcm_after) = (vm.state, vm.lcm_state);
        let vm_name = vm.state_str();
        tx.put(vm);
        match tx.commit().await {
            Ok(()) => {
                let mut lines = Vec::new();
                if let Some(e) = &error {
                    lines.push(e.clone());
                }
                lines.push(state_line(state, lcm_after));
                let level = if error.is_some() {
                    vmlog::Level::Error
                } else {
                    vmlog::Level::Info
                };
                vmlog::append(
                    &oned.data_dir.root.join("vms"),
                    id,
                    "LCM",
                    level,
                    &lines,
                    now,
                );
                tracing::info!(vm = id, from = %lcm, to = vm_name, success, "vm phase done");
                return;
            }
            Err(e) => {
                tracing::error!(vm = id, error = %e, "cannot store the phase's end, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The vm.log line for a new state.
pub fn state_line(state: VmState, lcm: LcmState) -> String {
    if state == VmState::Active {
        format!("New LCM state is {lcm}")
    } else {
        format!("New state is {state}")
    }
}

/// The end of phase `lcm`: its effects, then the next phase or the rest state. Also applied
/// by `recover` (success / failure) without driver work.
pub fn conclude(
    tx: &mut Txn<'_>,
    vm: &mut Vm,
    lcm: LcmState,
    success: bool,
    deploy_id: Option<String>,
    error: Option<&str>,
    now: i64,
) {
    use LcmState as L;
    let op = vm.op.clone().unwrap_or_default();
    let Some(plan) = table::phase(lcm, &op) else {
        return;
    };
    let next = if success { plan.ok } else { plan.fail };
    if let Some(d) = deploy_id {
        vm.deploy_id = d;
    }
    match error {
        Some(e) => set_error(vm, e, now),
        None if success => {
            vm.user_template.remove("ERROR");
        }
        None => {}
    }
    let n = vm.history.len();
    match (lcm, success) {
        (L::Prolog | L::PrologResume | L::PrologUndeploy, true) => {
            if let Some(h) = vm.history.last_mut() {
                h.petime = now;
            }
        }
        (
            L::PrologMigrate
            | L::PrologMigratePoweroff
            | L::PrologMigrateSuspend
            | L::PrologMigrateUnknown,
            true,
        ) => {
            if let Some(h) = vm.history.last_mut() {
                h.petime = now;
            }
        }
        // The domain left the source (saved, or moved live): the source's capacity goes
        // back, as OpenNebula does when PROLOG_MIGRATE starts.
        (L::SaveMigrate | L::Migrate, true)
            if n >= 2 && vm.history[n - 2].hid != vm.history[n - 1].hid =>
        {
            let src = vm.history[n - 2].hid;
            effects::release_host(tx, vm, src);
        }
        // The VM stays on the source: the destination's record is closed and the source's
        // stay goes on in a copy of its record (OpenNebula's revert_migrate_after_failure).
        (L::SaveMigrate | L::Migrate, false) if n >= 2 => {
            let dst = vm.history[n - 1].hid;
            if dst != vm.history[n - 2].hid {
                effects::release_host(tx, vm, dst);
            }
            effects::cp_previous_history(vm, now);
        }
        // A failed shutdown or save: the VM runs on; the action did not happen.
        (
            L::Shutdown | L::ShutdownPoweroff | L::ShutdownUndeploy | L::SaveStop | L::SaveSuspend,
            false,
        ) => effects::set_history_action(vm, 0),
        (L::ShutdownPoweroff | L::SaveSuspend, true) => effects::close_history(vm, now),
        (L::Epilog, true) | (L::CleanupDelete, _) => {
            effects::finish(tx, vm, now);
            return;
        }
        (L::EpilogStop | L::EpilogUndeploy, true) => {
            effects::close_history(vm, now);
            if let Some(hid) = vm.history.last().map(|h| h.hid) {
                effects::release_host(tx, vm, hid);
            }
        }
        (L::CleanupResubmit, _) => {
            effects::close_history(vm, now);
            effects::release_all_hosts(tx, vm);
            vm.deploy_id.clear();
        }
        _ => {}
    }
    if hotplug::is_hotplug_phase(lcm) {
        hotplug::conclude(tx, vm, &op, success, error, now);
    }
    match next {
        Next::Phase(l) => enter(vm, l, op),
        Next::Rest(state, l) => {
            if state == VmState::Active && l == L::Running {
                if let Some(h) = vm.history.last_mut()
                    && h.rstime == 0
                {
                    h.rstime = now;
                }
                // recover success without a driver answer: name the domain as deploy does.
                if vm.deploy_id.is_empty() {
                    vm.deploy_id = format!("one-{}", vm.header.id);
                }
            }
            set_state(vm, state, l);
            // A failure state keeps the operation: retry and recover need its arguments.
            if !table::is_failure(l) || state != VmState::Active {
                vm.op = None;
            } else if let Some(o) = vm.op.as_mut() {
                o.failed = None;
            }
        }
    }
}

/// What monitoring saw of a VM on its host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Running,
    /// The hypervisor has no such domain, or it is shut off.
    Missing,
    Suspended,
    /// The domain crashed.
    Failure,
}

/// Host `host_id` went to ERROR: its RUNNING VMs go to UNKNOWN, as OpenNebula does. Runs in
/// the caller's transaction.
pub fn host_failed(tx: &mut Txn<'_>, host_id: i64) {
    let Some(host) = tx.get::<Host>(host_id) else {
        return;
    };
    for vmid in host.vms {
        let Some(mut vm) = tx.get::<Vm>(vmid) else {
            continue;
        };
        if vm.state == VmState::Active && vm.lcm_state == LcmState::Running {
            set_state(&mut vm, VmState::Active, LcmState::Unknown);
            tracing::warn!(vm = vmid, host = host_id, "host in error: vm state unknown");
            tx.put(vm);
        }
    }
}

/// Monitoring saw VM `vm_id` as `seen`; the VM follows as OpenNebula's monitor does (RUNNING
/// or UNKNOWN and missing → POWEROFF; seen running while UNKNOWN or POWEROFF → RUNNING;
/// crashed → UNKNOWN; paused → SUSPENDED). VMs in the middle of an operation are left to it.
pub fn vm_seen(tx: &mut Txn<'_>, vm_id: i64, seen: Seen) {
    let Some(mut vm) = tx.get::<Vm>(vm_id) else {
        return;
    };
    let running = vm.state == VmState::Active && vm.lcm_state == LcmState::Running;
    let unknown = vm.state == VmState::Active && vm.lcm_state == LcmState::Unknown;
    let (state, lcm) = match seen {
        Seen::Running if unknown || vm.state == VmState::Poweroff => {
            (VmState::Active, LcmState::Running)
        }
        Seen::Missing if running || unknown => (VmState::Poweroff, LcmState::LcmInit),
        Seen::Suspended if running || unknown => (VmState::Suspended, LcmState::LcmInit),
        Seen::Failure if running => (VmState::Active, LcmState::Unknown),
        _ => return,
    };
    tracing::info!(vm = vm_id, ?seen, from = %vm.state_str(), to = %state, "vm state from monitoring");
    if state == VmState::Poweroff {
        effects::close_history(&mut vm, now_secs());
    } else if vm.state == VmState::Poweroff
        && let Some(h) = vm.history.last()
        && h.etime != 0
    {
        effects::copy_history(&mut vm, now_secs());
    }
    set_state(&mut vm, state, lcm);
    tx.put(vm);
}

#[cfg(test)]
pub(crate) mod tests_support {
    use one_proto::objects::Header;
    use one_proto::objects::vm::{Backups, Vm};
    use one_proto::state::{LcmState, VmState};
    use one_proto::template::Template;

    /// A minimal PENDING VM for unit tests.
    pub fn vm(id: i64) -> Vm {
        Vm {
            header: Header::oneadmin(id, "t"),
            last_poll: 0,
            state: VmState::Pending,
            lcm_state: LcmState::LcmInit,
            prev_state: VmState::Pending,
            prev_lcm_state: LcmState::LcmInit,
            resched: 0,
            stime: 0,
            etime: 0,
            deploy_id: String::new(),
            monitoring: Template::new(),
            sched_actions: Vec::new(),
            template: Template::new(),
            user_template: Template::new(),
            history: Vec::new(),
            snapshots: Vec::new(),
            backups: Backups::default(),
            op: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_settings_come_from_the_vm_then_its_host() {
        let t = |text: &str| Template::parse(text).unwrap();
        assert!(shutdown_settings(&t(""), &t("")).is_empty());
        let host = t("SHUTDOWN_FORCE_DESTROY=\"YES\"\nSHUTDOWN_TIMEOUT=\"30\"");
        assert_eq!(
            shutdown_settings(
                &t("SHUTDOWN_TIMEOUT=\" 5 \"\nSHUTDOWN_FORCE_DESTROY=\"\""),
                &host
            ),
            [
                ("SHUTDOWN_TIMEOUT".to_string(), "5".to_string()),
                ("SHUTDOWN_FORCE_DESTROY".to_string(), "YES".to_string()),
            ]
        );
        assert_eq!(
            shutdown_settings(&t("SHUTDOWN_FORCE_DESTROY=\"no\""), &t("")),
            [("SHUTDOWN_FORCE_DESTROY".to_string(), "no".to_string())]
        );
    }
}
