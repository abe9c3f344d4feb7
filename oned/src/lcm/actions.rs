//! Entry into the state machine: which state accepts which action, and where it leads
//! (OpenNebula's DispatchManager and LifeCycleManager tables, fact sheet §3). A refused action
//! answers with the reason; an accepted one changes the VM inside the caller's transaction
//! and tells the caller whether driver work was started.

use super::effects;
use super::table;
use super::{enter, set_state};
use crate::store::Txn;
use one_proto::driver::DriverOp;
use one_proto::objects::datastore::Datastore;
use one_proto::objects::host::Host;
use one_proto::objects::vm::{Vm, VmOperation};
use one_proto::state::{LcmState as L, VmState as S};
use std::collections::BTreeMap;

/// What an accepted action asks of the caller after the commit.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    /// The VM entered a transient state: start its driver work.
    Started,
    /// The VM changed state (or flags) with no driver work.
    Changed,
    /// A driver operation that changes no state (reboot, reset).
    OneShot(DriverOp),
    /// Nothing to do (terminate of a DONE VM).
    Nothing,
}

pub type Outcome = Result<Accepted, String>;

/// OpenNebula's VMActions codes, written to HISTORY/ACTION.
pub fn action_code(name: &str) -> i32 {
    match name {
        "migrate" => 1,
        "live-migrate" => 2,
        "undeploy" => 5,
        "undeploy-hard" => 6,
        "hold" => 7,
        "release" => 8,
        "stop" => 9,
        "suspend" => 10,
        "resume" => 11,
        "delete" => 13,
        "delete-recreate" => 14,
        "reboot" => 15,
        "reboot-hard" => 16,
        "resched" => 17,
        "unresched" => 18,
        "poweroff" => 19,
        "poweroff-hard" => 20,
        "disk-attach" => 21,
        "disk-detach" => 22,
        "nic-attach" => 23,
        "nic-detach" => 24,
        "disk-snapshot-create" => 25,
        "disk-snapshot-delete" => 26,
        "terminate" => 27,
        "terminate-hard" => 28,
        "disk-resize" => 29,
        "deploy" => 30,
        "updateconf" => 33,
        "resize" => 35,
        "snapshot-create" => 37,
        "snapshot-delete" => 38,
        "snapshot-revert" => 39,
        "disk-saveas" => 40,
        "disk-snapshot-revert" => 41,
        "recover" => 42,
        "retry" => 43,
        "disk-snapshot-rename" => 45,
        "poweroff-migrate" => 48,
        "poweroff-hard-migrate" => 49,
        _ => 0,
    }
}

/// Every action name `one.vm.action` knows.
pub const ACTIONS: &[&str] = &[
    "terminate",
    "terminate-hard",
    "undeploy",
    "undeploy-hard",
    "poweroff",
    "poweroff-hard",
    "hold",
    "release",
    "stop",
    "suspend",
    "resume",
    "reboot",
    "reboot-hard",
    "resched",
    "unresched",
];

fn op(action: &str) -> VmOperation {
    VmOperation {
        action: action.to_string(),
        ..VmOperation::default()
    }
}

fn not_available(vm: &Vm) -> String {
    format!("This action is not available for state {}", vm.state_str())
}

fn active_in(vm: &Vm, states: &[L]) -> bool {
    vm.state == S::Active && states.contains(&vm.lcm_state)
}

/// Starts a phase for `action` and records it in the current HISTORY record.
fn start(vm: &mut Vm, lcm: L, action: &str) -> Outcome {
    effects::set_history_action(vm, action_code(action));
    enter(vm, lcm, op(action));
    Ok(Accepted::Started)
}

/// `one.vm.action`: terminate[-hard], undeploy[-hard], poweroff[-hard], hold, release, stop,
/// suspend, resume, reboot[-hard], resched, unresched.
pub fn action(tx: &mut Txn<'_>, vm: &mut Vm, name: &str, now: i64) -> Outcome {
    let hard = name.ends_with("-hard");
    match name {
        "terminate" | "terminate-hard" => match vm.state {
            S::Done => Ok(Accepted::Nothing),
            S::Init | S::Pending | S::Hold | S::Cloning | S::CloningFailure => {
                effects::finish(tx, vm, now);
                Ok(Accepted::Changed)
            }
            S::Poweroff | S::Suspended | S::Stopped | S::Undeployed => {
                // Nothing runs, so there is nothing hard about it: OpenNebula records terminate.
                start(vm, L::Epilog, "terminate")?;
                if let Some(o) = vm.op.as_mut() {
                    o.action = name.to_string();
                }
                Ok(Accepted::Started)
            }
            S::Active if matches!(vm.lcm_state, L::Running | L::Unknown) => {
                // UNKNOWN: the domain may be gone; a hard stop is the only safe attempt.
                start(vm, L::Shutdown, name)
            }
            S::Active if hard && vm.lcm_state == L::Shutdown => start(vm, L::Shutdown, name),
            S::Active if table::is_failure(vm.lcm_state) => start(vm, L::CleanupDelete, name),
            _ => Err(format!(
                "Could not terminate VM {}, wrong state {}.",
                vm.header.id,
                vm.state_str()
            )),
        },
        "undeploy" | "undeploy-hard" => {
            if vm.state == S::Poweroff {
                start(vm, L::EpilogUndeploy, name)
            } else if active_in(vm, &[L::Running, L::Unknown])
                || (hard && active_in(vm, &[L::ShutdownUndeploy]))
            {
                start(vm, L::ShutdownUndeploy, name)
            } else {
                Err(not_available(vm))
            }
        }
        "poweroff" | "poweroff-hard" => {
            if active_in(vm, &[L::Running, L::Unknown])
                || (hard && active_in(vm, &[L::ShutdownPoweroff]))
            {
                start(vm, L::ShutdownPoweroff, name)
            } else {
                Err(not_available(vm))
            }
        }
        "hold" => {
            if vm.state != S::Pending {
                return Err(not_available(vm));
            }
            set_state(vm, S::Hold, L::LcmInit);
            Ok(Accepted::Changed)
        }
        "release" => {
            if vm.state != S::Hold {
                return Err(not_available(vm));
            }
            set_state(vm, S::Pending, L::LcmInit);
            Ok(Accepted::Changed)
        }
        "stop" => {
            if vm.state == S::Suspended {
                start(vm, L::EpilogStop, name)
            } else if active_in(vm, &[L::Running]) {
                start(vm, L::SaveStop, name)
            } else {
                Err(not_available(vm))
            }
        }
        "suspend" => {
            if !active_in(vm, &[L::Running]) {
                return Err(not_available(vm));
            }
            start(vm, L::SaveSuspend, name)
        }
        "resume" => match vm.state {
            S::Stopped | S::Undeployed => {
                // Back to the scheduler; the next deploy moves the files back first.
                set_state(vm, S::Pending, L::LcmInit);
                Ok(Accepted::Changed)
            }
            S::Suspended => {
                effects::copy_history(vm, now);
                start(vm, L::BootSuspended, name)
            }
            S::Poweroff => {
                effects::copy_history(vm, now);
                start(vm, L::BootPoweroff, name)
            }
            S::Active if vm.lcm_state == L::Unknown => start(vm, L::BootUnknown, name),
            _ => Err(not_available(vm)),
        },
        "reboot" | "reboot-hard" => {
            if !active_in(vm, &[L::Running]) {
                return Err(not_available(vm));
            }
            vm.resched = 0;
            Ok(Accepted::OneShot(if hard {
                DriverOp::Reset
            } else {
                DriverOp::Reboot
            }))
        }
        "resched" | "unresched" => {
            if vm.state == S::Poweroff || active_in(vm, &[L::Running, L::Unknown]) {
                vm.resched = i32::from(name == "resched");
                Ok(Accepted::Changed)
            } else {
                Err(not_available(vm))
            }
        }
        other => Err(format!("Unknown action \"{other}\"")),
    }
}

/// `one.vm.deploy` once the caller has checked rights, host and datastore: places the VM on
/// `host`, charges its capacity and starts the prolog (or the resume of a stopped /
/// undeployed VM's files).
pub fn deploy(tx: &mut Txn<'_>, vm: &mut Vm, host: &Host, ds: &Datastore, now: i64) -> Outcome {
    if !matches!(vm.state, S::Pending | S::Hold | S::Stopped | S::Undeployed) {
        return Err(not_available(vm));
    }
    // Where the files are decides the first phase: the previous stay ended with stop or
    // undeploy (and its files wait in the system datastore), or this is a fresh start.
    let previous = vm.history.last().map(|h| h.action).unwrap_or(0);
    let first = match (vm.state, previous) {
        (S::Stopped, _) | (S::Pending | S::Hold, 9) => L::PrologResume,
        (S::Undeployed, _) | (S::Pending | S::Hold, 5 | 6) => L::PrologUndeploy,
        _ => L::Prolog,
    };
    let mut h = effects::new_history(vm, host, ds.header.id, &ds.tm_mad, now);
    h.pstime = now;
    vm.history.push(h);
    vm.resched = 0;
    vm.template.set("TM_MAD_SYSTEM", ds.tm_mad.clone());
    effects::charge_host(tx, vm, host.id);
    enter(vm, first, op("deploy"));
    Ok(Accepted::Started)
}

/// Whether the host has room for the VM (`enforce` of deploy and migrate).
pub fn host_fits(vm: &Vm, host: &Host) -> Result<(), String> {
    let cpu = effects::cpu_share(vm);
    let mem = effects::mem_share(vm);
    let s = &host.share;
    let (free_cpu, free_mem) = (s.max_cpu - s.cpu_usage, s.max_mem - s.mem_usage);
    let lacking = if free_cpu < cpu {
        Some(format!("Not enough CPU: {cpu}/{free_cpu}"))
    } else if free_mem < mem {
        Some(format!("Not enough memory: {mem}/{free_mem}"))
    } else {
        None
    };
    match lacking {
        Some(what) => Err(format!(
            "virtual machine [{}] does not fit in host [{}]. {what}",
            vm.header.id, host.id
        )),
        None => Ok(()),
    }
}

/// `one.vm.migrate`: `live` for a running VM; otherwise cold with `mtype` 0 save, 1 poweroff,
/// 2 poweroff-hard. POWEROFF, SUSPENDED and UNKNOWN VMs move their files only.
pub fn migrate(
    tx: &mut Txn<'_>,
    vm: &mut Vm,
    host: &Host,
    ds: &Datastore,
    live: bool,
    mtype: i64,
    now: i64,
) -> Outcome {
    let (phase, action) = match (vm.state, vm.lcm_state) {
        (S::Active, L::Running) if live => (L::Migrate, "live-migrate"),
        (S::Active, L::Running) => (
            L::SaveMigrate,
            match mtype {
                1 => "poweroff-migrate",
                2 => "poweroff-hard-migrate",
                _ => "migrate",
            },
        ),
        (S::Poweroff, _) if !live => (L::PrologMigratePoweroff, "migrate"),
        (S::Suspended, _) if !live => (L::PrologMigrateSuspend, "migrate"),
        (S::Active, L::Unknown) if !live => (L::PrologMigrateUnknown, "migrate"),
        _ => return Err(not_available(vm)),
    };
    if vm.history.last().is_some_and(|h| h.hid == host.id)
        && ds.header.id == vm.history.last().map_or(-1, |h| h.ds_id)
    {
        return Err(format!(
            "VM is already running on host [{}] and datastore [{}]",
            host.id, ds.header.id
        ));
    }
    let code = action_code(action);
    let running = vm.state == S::Active && vm.lcm_state == L::Running;
    // OpenNebula writes the action on the record left only when the VM was running there.
    if running {
        effects::set_history_action(vm, code);
    }
    effects::close_history(vm, now);
    let source = vm.history.last().map(|h| h.hid);
    let mut h = effects::new_history(vm, host, ds.header.id, &ds.tm_mad, now);
    h.pstime = now;
    h.action = code;
    vm.history.push(h);
    vm.resched = 0;
    effects::charge_host(tx, vm, host.id);
    // A VM that does not run leaves its source at once (only its files move).
    if !running && let Some(src) = source.filter(|s| *s != host.id) {
        effects::release_host(tx, vm, src);
    }
    let mut o = op(action);
    o.args = BTreeMap::from([("MIGRATE_TYPE".to_string(), mtype.to_string())]);
    enter(vm, phase, o);
    Ok(Accepted::Started)
}

/// `one.vm.recover` operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recover {
    Failure,
    Success,
    Retry,
    Delete,
    DeleteRecreate,
    DeleteDb,
}

impl Recover {
    pub fn from_num(n: i64) -> Option<Recover> {
        Some(match n {
            0 => Recover::Failure,
            1 => Recover::Success,
            2 => Recover::Retry,
            3 => Recover::Delete,
            4 => Recover::DeleteRecreate,
            5 => Recover::DeleteDb,
            _ => return None,
        })
    }
}

/// What `recover` does: a state change applied here, or the outcome of a phase the caller
/// must apply through the runner's transition code (success or failure of `phase`).
#[derive(Debug, PartialEq, Eq)]
pub enum RecoverPlan {
    Accepted(Accepted),
    /// Apply the end of `phase` as if its driver work had succeeded (true) or failed.
    Conclude {
        phase: L,
        success: bool,
    },
}

pub fn recover(
    tx: &mut Txn<'_>,
    vm: &mut Vm,
    how: Recover,
    now: i64,
) -> Result<RecoverPlan, String> {
    let lcm = vm.lcm_state;
    let active = vm.state == S::Active;
    let in_phase = active
        && vm
            .op
            .as_ref()
            .is_some_and(|o| table::phase(lcm, o).is_some());
    match how {
        Recover::Success | Recover::Failure => {
            let success = how == Recover::Success;
            if active && !success && lcm == L::PrologMigrateFailure && vm.history.len() >= 2 {
                // Back to the source: the saved domain is restored there.
                let n = vm.history.len();
                let (src, dst) = (vm.history[n - 2].hid, vm.history[n - 1].hid);
                if src != dst {
                    effects::release_host(tx, vm, dst);
                }
                effects::cp_previous_history(vm, now);
                effects::charge_host(tx, vm, src);
                let o = vm.op.clone().unwrap_or_else(|| op("migrate"));
                enter(vm, L::BootMigrate, o);
                return Ok(RecoverPlan::Accepted(Accepted::Started));
            }
            if let Some(ph) = table::failed_phase(lcm).filter(|_| active) {
                if !success {
                    // It already failed; nothing changes.
                    return Ok(RecoverPlan::Accepted(Accepted::Nothing));
                }
                Ok(RecoverPlan::Conclude { phase: ph, success })
            } else if in_phase {
                Ok(RecoverPlan::Conclude {
                    phase: lcm,
                    success,
                })
            } else if active {
                // Nothing in flight and nothing failed: OpenNebula answers success.
                Ok(RecoverPlan::Accepted(Accepted::Nothing))
            } else {
                Err(format!(
                    "Recover operation is only available for VMs in a transient or failure state, not {}",
                    vm.state_str()
                ))
            }
        }
        Recover::Retry => match table::failed_phase(lcm).filter(|_| active) {
            Some(ph) => {
                let o = vm.op.clone().unwrap_or_else(|| op("retry"));
                enter(vm, ph, VmOperation { failed: None, ..o });
                Ok(RecoverPlan::Accepted(Accepted::Started))
            }
            None if active => Ok(RecoverPlan::Accepted(Accepted::Nothing)),
            None => Err(format!(
                "Retry is only available for VMs in a failure state, not {}",
                vm.state_str()
            )),
        },
        Recover::Delete | Recover::DeleteRecreate => {
            let recreate = how == Recover::DeleteRecreate;
            match vm.state {
                S::Done => Err(not_available(vm)),
                S::Init | S::Pending | S::Hold | S::Cloning | S::CloningFailure if !recreate => {
                    effects::finish(tx, vm, now);
                    Ok(RecoverPlan::Accepted(Accepted::Changed))
                }
                S::Pending | S::Hold => {
                    // It never ran: it only goes (back) to the scheduler.
                    set_state(vm, S::Pending, L::LcmInit);
                    Ok(RecoverPlan::Accepted(Accepted::Changed))
                }
                S::Init | S::Cloning | S::CloningFailure => Err(not_available(vm)),
                _ => {
                    let (phase, name) = if recreate {
                        (L::CleanupResubmit, "delete-recreate")
                    } else {
                        (L::CleanupDelete, "delete")
                    };
                    Ok(RecoverPlan::Accepted(start(vm, phase, name)?))
                }
            }
        }
        Recover::DeleteDb => {
            if vm.state == S::Done {
                return Err(not_available(vm));
            }
            effects::finish(tx, vm, now);
            Ok(RecoverPlan::Accepted(Accepted::Changed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::store::Store;

    async fn store() -> Store {
        let dir = std::env::temp_dir().join(format!("oned-lcm-actions-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/one.db?mode=rwc", dir.display());
        Store::load(Db::open(&url, false).await.unwrap())
            .await
            .unwrap()
    }

    /// Every (STATE, LCM_STATE) pair a VM can rest or work in.
    fn all_states() -> Vec<(S, L)> {
        let mut v: Vec<(S, L)> = [
            S::Init,
            S::Pending,
            S::Hold,
            S::Stopped,
            S::Suspended,
            S::Done,
            S::Poweroff,
            S::Undeployed,
            S::Cloning,
            S::CloningFailure,
        ]
        .iter()
        .map(|s| (*s, L::LcmInit))
        .collect();
        v.extend(
            L::ALL
                .iter()
                .filter(|l| !matches!(l, L::LcmInit | L::Cancel | L::Failure))
                .map(|l| (S::Active, *l)),
        );
        v
    }

    /// The fact sheet's table (§3): where each action is accepted.
    fn expected(action: &str, s: S, l: L) -> bool {
        let active = |ls: &[L]| s == S::Active && ls.contains(&l);
        let hard = action.ends_with("-hard");
        match action {
            "terminate" | "terminate-hard" => {
                matches!(
                    s,
                    S::Done
                        | S::Init
                        | S::Pending
                        | S::Hold
                        | S::Cloning
                        | S::CloningFailure
                        | S::Poweroff
                        | S::Suspended
                        | S::Stopped
                        | S::Undeployed
                ) || active(&[L::Running, L::Unknown])
                    || (hard && active(&[L::Shutdown]))
                    || (s == S::Active && table::is_failure(l))
            }
            "undeploy" | "undeploy-hard" => {
                s == S::Poweroff
                    || active(&[L::Running, L::Unknown])
                    || (hard && active(&[L::ShutdownUndeploy]))
            }
            "poweroff" | "poweroff-hard" => {
                active(&[L::Running, L::Unknown]) || (hard && active(&[L::ShutdownPoweroff]))
            }
            "hold" => s == S::Pending,
            "release" => s == S::Hold,
            "stop" => s == S::Suspended || active(&[L::Running]),
            "suspend" | "reboot" | "reboot-hard" => active(&[L::Running]),
            "resume" => {
                matches!(s, S::Stopped | S::Undeployed | S::Suspended | S::Poweroff)
                    || active(&[L::Unknown])
            }
            "resched" | "unresched" => s == S::Poweroff || active(&[L::Running, L::Unknown]),
            _ => false,
        }
    }

    #[tokio::test]
    async fn every_action_is_accepted_exactly_where_opennebula_accepts_it() {
        let store = store().await;
        for name in ACTIONS {
            for (s, l) in all_states() {
                let mut tx = store.begin().await;
                let mut vm = crate::lcm::tests_support::vm(1);
                vm.state = s;
                vm.lcm_state = l;
                vm.op = Some(op("deploy"));
                let got = action(&mut tx, &mut vm, name, 100).is_ok();
                assert_eq!(got, expected(name, s, l), "{name} in {s}/{l}");
            }
        }
    }

    #[tokio::test]
    async fn refusals_name_the_state() {
        let store = store().await;
        let mut tx = store.begin().await;
        let mut vm = crate::lcm::tests_support::vm(1);
        vm.state = S::Poweroff;
        let e = action(&mut tx, &mut vm, "suspend", 0).unwrap_err();
        assert_eq!(e, "This action is not available for state POWEROFF");
        vm.state = S::Active;
        vm.lcm_state = L::Prolog;
        let e = action(&mut tx, &mut vm, "terminate", 0).unwrap_err();
        assert_eq!(e, "Could not terminate VM 1, wrong state PROLOG.");
    }

    #[tokio::test]
    async fn accepted_actions_enter_the_documented_phase() {
        let store = store().await;
        let cases = [
            ("terminate", S::Active, L::Running, S::Active, L::Shutdown),
            ("terminate", S::Poweroff, L::LcmInit, S::Active, L::Epilog),
            (
                "terminate",
                S::Active,
                L::BootFailure,
                S::Active,
                L::CleanupDelete,
            ),
            ("terminate", S::Pending, L::LcmInit, S::Done, L::LcmInit),
            (
                "undeploy",
                S::Poweroff,
                L::LcmInit,
                S::Active,
                L::EpilogUndeploy,
            ),
            (
                "undeploy",
                S::Active,
                L::Running,
                S::Active,
                L::ShutdownUndeploy,
            ),
            (
                "poweroff",
                S::Active,
                L::Unknown,
                S::Active,
                L::ShutdownPoweroff,
            ),
            ("stop", S::Suspended, L::LcmInit, S::Active, L::EpilogStop),
            ("stop", S::Active, L::Running, S::Active, L::SaveStop),
            ("suspend", S::Active, L::Running, S::Active, L::SaveSuspend),
            ("resume", S::Stopped, L::LcmInit, S::Pending, L::LcmInit),
            (
                "resume",
                S::Suspended,
                L::LcmInit,
                S::Active,
                L::BootSuspended,
            ),
            (
                "resume",
                S::Poweroff,
                L::LcmInit,
                S::Active,
                L::BootPoweroff,
            ),
            ("resume", S::Active, L::Unknown, S::Active, L::BootUnknown),
            ("hold", S::Pending, L::LcmInit, S::Hold, L::LcmInit),
            ("release", S::Hold, L::LcmInit, S::Pending, L::LcmInit),
        ];
        for (name, s, l, s2, l2) in cases {
            let mut tx = store.begin().await;
            let mut vm = crate::lcm::tests_support::vm(1);
            vm.state = s;
            vm.lcm_state = l;
            action(&mut tx, &mut vm, name, 100).unwrap();
            assert_eq!((vm.state, vm.lcm_state), (s2, l2), "{name} from {s}/{l}");
            assert_eq!((vm.prev_state, vm.prev_lcm_state), (s, l), "{name} prev");
        }
    }
}
