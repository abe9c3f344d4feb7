//! The VM lifecycle methods: one.vm.deploy, one.vm.action, one.vm.migrate, one.vm.recover,
//! one.vm.resize. Rights and arguments are checked here; the state machine is `crate::lcm`.

use super::common::{self, commit};
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id};
use crate::auth::now_secs;
use crate::lcm::{self, actions::Accepted};
use crate::store::Txn;
use one_proto::ApiError;
use one_proto::acl::AuthOp;
use one_proto::objects::datastore::Datastore;
use one_proto::objects::host::Host;
use one_proto::objects::vm::Vm;
use one_proto::state::{DatastoreType, HostState, LcmState, VmState};

pub fn register(r: &mut Registry) {
    r.add("one.vm.deploy", |c: Call, p: Params| async move {
        deploy(
            &c,
            p.int32(0)?,
            p.int32(1)?,
            p.opt_bool(2, false)?,
            p.opt_int(3, -1)?,
        )
        .await
    });
    r.add("one.vm.action", |c: Call, p: Params| async move {
        vm_action(&c, p.str(0)?, p.int32(1)?).await
    });
    r.add("one.vm.migrate", |c: Call, p: Params| async move {
        migrate(
            &c,
            p.int32(0)?,
            p.int32(1)?,
            p.bool(2)?,
            p.opt_bool(3, false)?,
            p.opt_int(4, -1)?,
            p.opt_int(5, 0)?,
        )
        .await
    });
    r.add("one.vm.recover", |c: Call, p: Params| async move {
        recover(&c, p.int32(0)?, p.int32(1)?).await
    });
}

/// Actions oned.conf's VM_ADMIN_OPERATIONS puts at ADMIN level; the rest are MANAGE.
pub fn action_auth_op(name: &str) -> AuthOp {
    const ADMIN: &[&str] = &[
        "migrate",
        "live-migrate",
        "poweroff-migrate",
        "poweroff-hard-migrate",
        "delete",
        "delete-recreate",
        "recover",
        "retry",
        "deploy",
        "resched",
        "unresched",
        "backup",
        "restore",
    ];
    if ADMIN.contains(&name) {
        AuthOp::Admin
    } else {
        AuthOp::Manage
    }
}

/// Writes the log line of a state change made by a call.
pub fn log_state(call: &Call, before: (VmState, LcmState), vm: &Vm) {
    if before != (vm.state, vm.lcm_state) {
        lcm::vmlog::append(
            &call.oned.data_dir.root.join("vms"),
            vm.header.id,
            "VM",
            lcm::vmlog::Level::Info,
            &[lcm::state_line(vm.state, vm.lcm_state)],
            now_secs(),
        );
    }
}

/// After the commit: start the driver work an accepted action asked for.
fn follow_up(call: &Call, id: i64, accepted: &Accepted, replace_runner: bool) {
    match accepted {
        Accepted::Started if replace_runner => lcm::restart(&call.oned, id),
        Accepted::Started => lcm::kick(&call.oned, id),
        Accepted::OneShot(op) => lcm::one_shot(&call.oned, id, *op),
        Accepted::Changed | Accepted::Nothing => {}
    }
}

async fn vm_action(call: &Call, name: &str, id: i64) -> ApiResult {
    if !lcm::actions::ACTIONS.contains(&name) {
        return Err(action(
            call.method,
            &format!("Action \"{name}\" is not supported"),
        ));
    }
    let mut tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, action_auth_op(name))?;
    let before = (vm.state, vm.lcm_state);
    // A hard stop overrides a soft one in progress: its runner is replaced.
    let upgrade = name.ends_with("-hard")
        && vm.state == VmState::Active
        && matches!(
            vm.lcm_state,
            LcmState::Shutdown | LcmState::ShutdownPoweroff | LcmState::ShutdownUndeploy
        );
    let accepted = lcm::actions::action(&mut tx, &mut vm, name, now_secs()).map_err(|e| {
        action(
            call.method,
            &format!("Error performing action \"{name}\": {e}"),
        )
    })?;
    if accepted != Accepted::Nothing {
        log_state(call, before, &vm);
        let state = vm.state_str();
        tx.put(vm);
        commit(call, tx).await?;
        tracing::info!(vm = id, action = name, state, "vm action accepted");
    }
    follow_up(call, id, &accepted, upgrade);
    ok_id(id)
}

/// The system datastore for a placement on `host`: `ds_id`, or (-1) the first system
/// datastore of the host's cluster. It must be a system datastore of that cluster.
fn system_ds(call: &Call, tx: &Txn<'_>, host: &Host, ds_id: i64) -> Result<Datastore, ApiError> {
    let in_cluster = |ds: &Datastore| {
        ds.ds_type == DatastoreType::System && ds.clusters.contains(&host.cluster_id)
    };
    if ds_id < 0 {
        let st = tx.committed();
        return st
            .datastores
            .iter()
            .find(|ds| in_cluster(ds))
            .map(|ds| (**ds).clone())
            .ok_or_else(|| {
                action(
                    call.method,
                    &format!(
                        "Cluster [{}] of host [{}] has no system datastore",
                        host.cluster_id, host.id
                    ),
                )
            });
    }
    let ds: Datastore = tx
        .get(ds_id)
        .ok_or_else(|| no_exists(call.method, "datastore", ds_id))?;
    if ds.ds_type != DatastoreType::System {
        return Err(internal(
            call.method,
            &format!(
                "Trying to use datastore [{ds_id}] to deploy the VM, but it is not of type system datastore."
            ),
        ));
    }
    if !in_cluster(&ds) {
        return Err(action(
            call.method,
            &format!(
                "Datastore [{ds_id}] is not in cluster [{}] of host [{}]",
                host.cluster_id, host.id
            ),
        ));
    }
    Ok(ds)
}

/// The host a VM goes to, authorized (MANAGE) and able to take VMs.
fn target_host(call: &Call, tx: &Txn<'_>, hid: i64) -> Result<Host, ApiError> {
    let host: Host = tx
        .get(hid)
        .ok_or_else(|| no_exists(call.method, "host", hid))?;
    common::authorize(call, &tx.committed(), &host, AuthOp::Manage)?;
    if host.state == HostState::Offline {
        return Err(action(
            call.method,
            &format!("Host [{hid}] is offline and cannot run VMs"),
        ));
    }
    Ok(host)
}

/// A host whose agent says it does not see a shared datastore the VM needs (its system
/// datastore, its disks' image datastores), or cannot serve the network driver of one of its
/// NICs, is refused, enforce or not: the VM's disks would be written to the host's own disk,
/// or not found; its network could not be made there.
fn can_serve(
    call: &Call,
    vm: &Vm,
    host: &one_proto::objects::host::Host,
    ds: &one_proto::objects::datastore::Datastore,
) -> Result<(), one_proto::ApiError> {
    use crate::ops::capability as cap;
    let needed = cap::needed_datastores(vm, ds);
    let why = cap::lacks_datastores(host, &needed)
        .or_else(|| cap::lacks_network_drivers(host, &cap::needed_network_drivers(vm)));
    match why {
        None => Ok(()),
        Some(why) => Err(action(call.method, &why)),
    }
}

async fn deploy(call: &Call, id: i64, hid: i64, enforce: bool, ds_id: i64) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Admin)?;
    let host = target_host(call, &tx, hid)?;
    let ds = system_ds(call, &tx, &host, ds_id)?;
    common::authorize(call, &tx.committed(), &ds, AuthOp::Use)?;
    if enforce {
        lcm::actions::host_fits(&vm, &host).map_err(|e| action(call.method, &e))?;
    }
    can_serve(call, &vm, &host, &ds)?;
    crate::hostmgr::vnc::assign(
        &call.oned.config.hosts,
        &tx.committed(),
        &mut vm,
        host.cluster_id,
    )
    .map_err(|e| action(call.method, &e))?;
    let before = (vm.state, vm.lcm_state);
    lcm::actions::deploy(&mut tx, &mut vm, &host, &ds, now_secs())
        .map_err(|e| action(call.method, &e.replace("This action", "Deploy action")))?;
    vm.user_template.remove("SCHED_MESSAGE");
    log_state(call, before, &vm);
    tx.put(vm);
    commit(call, tx).await?;
    tracing::info!(vm = id, host = hid, ds = ds_id, "vm deployed");
    lcm::kick(&call.oned, id);
    ok_id(id)
}

async fn migrate(
    call: &Call,
    id: i64,
    hid: i64,
    live: bool,
    enforce: bool,
    ds_id: i64,
    mtype: i64,
) -> ApiResult {
    // OpenNebula takes any other type as 0 (save).
    let mtype = if (0..=2).contains(&mtype) { mtype } else { 0 };
    let mut tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Admin)?;
    let host = target_host(call, &tx, hid)?;
    // Without a datastore the VM keeps the one it has (it must be reachable from the host).
    let current_ds = vm.history.last().map(|h| h.ds_id).unwrap_or(-1);
    let ds = system_ds(call, &tx, &host, if ds_id < 0 { current_ds } else { ds_id })?;
    common::authorize(call, &tx.committed(), &ds, AuthOp::Use)?;
    let shared = crate::ops::datastore::tm_shared(&ds.tm_mad);
    if live && !shared {
        // The destination gets the VM's directory from the frontend and libvirt copies the
        // disks' content: a disk snapshot chain would not follow, nor a directory moved
        // to another datastore's path.
        if vm.snapshots.iter().any(|d| !d.snapshots.is_empty()) {
            return Err(action(
                call.method,
                &format!(
                    "Migrate action: a live migration on the host-local system datastore {} \
                     (TM_MAD {}) copies the disks' current content only: delete the VM's \
                     disk snapshots first, or use a cold migration (live = false)",
                    ds.header.id, ds.tm_mad
                ),
            ));
        }
        if current_ds != ds.header.id {
            return Err(action(
                call.method,
                &format!(
                    "Migrate action: a live migration keeps the VM on its host-local system \
                     datastore {current_ds}; use a cold migration to move it to datastore {}",
                    ds.header.id
                ),
            ));
        }
    }
    if let Some(h) = vm.history.last()
        && h.ds_id != ds.header.id
        && crate::ops::datastore::tm_shared(&h.tm_mad) != shared
    {
        return Err(action(
            call.method,
            &format!(
                "Migrate action: the system datastores {} (TM_MAD {}) and {} (TM_MAD {}) keep \
                 disks differently (shared / host-local): a VM cannot move between them",
                h.ds_id, h.tm_mad, ds.header.id, ds.tm_mad
            ),
        ));
    }
    if enforce {
        lcm::actions::host_fits(&vm, &host).map_err(|e| action(call.method, &e))?;
    }
    can_serve(call, &vm, &host, &ds)?;
    crate::hostmgr::vnc::assign(
        &call.oned.config.hosts,
        &tx.committed(),
        &mut vm,
        host.cluster_id,
    )
    .map_err(|e| action(call.method, &e))?;
    let before = (vm.state, vm.lcm_state);
    lcm::actions::migrate(&mut tx, &mut vm, &host, &ds, live, mtype, now_secs())
        .map_err(|e| action(call.method, &e.replace("This action", "Migrate action")))?;
    log_state(call, before, &vm);
    tx.put(vm);
    commit(call, tx).await?;
    tracing::info!(vm = id, host = hid, live, "vm migration started");
    lcm::kick(&call.oned, id);
    ok_id(id)
}

async fn recover(call: &Call, id: i64, op: i64) -> ApiResult {
    use lcm::actions::{Recover, RecoverPlan};
    let how = Recover::from_num(op)
        .ok_or_else(|| action(call.method, "Wrong recovery operation code"))?;
    let level = match how {
        Recover::Delete | Recover::DeleteRecreate | Recover::DeleteDb => AuthOp::Admin,
        _ => action_auth_op("recover"),
    };
    let mut tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, level)?;
    let before = (vm.state, vm.lcm_state);
    let now = now_secs();
    let plan = lcm::actions::recover(&mut tx, &mut vm, how, now).map_err(|e| {
        action(
            call.method,
            &format!("Error performing action \"recover\": {e}"),
        )
    })?;
    let accepted = match plan {
        RecoverPlan::Accepted(a) => a,
        RecoverPlan::Conclude { phase, success } => {
            // Force the phase's end; its runner (if any) finds itself superseded.
            vm.lcm_state = phase;
            lcm::conclude(&mut tx, &mut vm, phase, success, None, None, now);
            vm.prev_lcm_state = before.1;
            if vm.state == VmState::Active
                && lcm::table::phase(vm.lcm_state, &vm.op.clone().unwrap_or_default()).is_some()
            {
                Accepted::Started
            } else {
                Accepted::Changed
            }
        }
    };
    log_state(call, before, &vm);
    tx.put(vm);
    commit(call, tx).await?;
    tracing::info!(vm = id, op, "vm recovered");
    follow_up(call, id, &accepted, true);
    ok_id(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_level_actions() {
        assert_eq!(action_auth_op("resched"), AuthOp::Admin);
        assert_eq!(action_auth_op("delete"), AuthOp::Admin);
        assert_eq!(action_auth_op("terminate-hard"), AuthOp::Manage);
        assert_eq!(action_auth_op("whatever"), AuthOp::Manage);
    }
}
