//! The state machine as data: which driver steps each transient LCM state runs, and where a
//! VM goes when they succeed or fail. Entry into these states (which action is accepted in
//! which state) is in [`super::actions`].

use one_proto::driver::DriverOp;
use one_proto::objects::vm::VmOperation;
use one_proto::state::{LcmState as L, VmState as S};

/// Where a step runs: the VM's current host (the last HISTORY record) or, during a
/// migration, the host it leaves (the record before).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum On {
    Current,
    Source,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub op: DriverOp,
    pub on: On,
    /// What undoes this step when a later step of the same phase fails.
    pub undo: Option<DriverOp>,
    /// Only for a VM on a host-local system datastore (TM_MAD local / ssh): its files move
    /// with it; on a shared one they stay where every host sees them.
    pub local_only: bool,
    /// A clean-up after the phase's work is done: a failure is logged in the VM's log and
    /// the phase goes on (undoing what succeeded would hurt the VM more).
    pub cleanup: bool,
}

const fn step(op: DriverOp) -> Step {
    Step {
        op,
        on: On::Current,
        undo: None,
        local_only: false,
        cleanup: false,
    }
}

const fn undone_by(op: DriverOp, undo: DriverOp) -> Step {
    Step {
        undo: Some(undo),
        ..step(op)
    }
}

const fn on_source(op: DriverOp) -> Step {
    Step {
        on: On::Source,
        ..step(op)
    }
}

/// `s`, for host-local system datastores only.
const fn local(s: Step) -> Step {
    Step {
        local_only: true,
        ..s
    }
}

/// `s`, as a clean-up whose failure does not fail the phase.
const fn cleanup(s: Step) -> Step {
    Step { cleanup: true, ..s }
}

/// The state a phase leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Another transient LCM state (ACTIVE), whose steps run next.
    Phase(L),
    /// A state where the VM rests.
    Rest(S, L),
}

const RUNNING: Next = Next::Rest(S::Active, L::Running);
const POWEROFF: Next = Next::Rest(S::Poweroff, L::LcmInit);
const SUSPENDED: Next = Next::Rest(S::Suspended, L::LcmInit);
const UNKNOWN: Next = Next::Rest(S::Active, L::Unknown);

const fn fail(l: L) -> Next {
    Next::Rest(S::Active, l)
}

/// A transient state's work: its steps, and the state after success or failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    pub steps: Vec<Step>,
    pub ok: Next,
    pub fail: Next,
    /// Cleanup phases go on past a failed step (what can be removed is removed).
    pub best_effort: bool,
}

fn is_hard(op: &VmOperation) -> bool {
    op.action.ends_with("-hard")
}

fn arg<'a>(op: &'a VmOperation, k: &str) -> &'a str {
    op.args.get(k).map(String::as_str).unwrap_or("")
}

/// The ordered boot steps: network first, then the domain, then post-boot network set-up.
/// A failure after the domain started undoes it.
fn boot(vmm: DriverOp) -> Vec<Step> {
    vec![
        undone_by(DriverOp::NetPre, DriverOp::NetClean),
        undone_by(vmm, DriverOp::Cancel),
        step(DriverOp::NetPost),
    ]
}

fn stop_domain(vmm: DriverOp) -> Vec<Step> {
    vec![step(vmm), step(DriverOp::NetClean)]
}

/// The work of transient LCM state `lcm` for the operation `op`; None for states with no
/// driver work (RUNNING, UNKNOWN, the *_FAILURE states, ...).
pub fn phase(lcm: L, op: &VmOperation) -> Option<Phase> {
    use DriverOp as D;
    let shutdown = if is_hard(op) { D::Cancel } else { D::Shutdown };
    let p = |steps: Vec<Step>, ok: Next, fail: Next| Phase {
        steps,
        ok,
        fail,
        best_effort: false,
    };
    Some(match lcm {
        // Deploy and its variants after stop / undeploy.
        L::Prolog => p(
            vec![step(D::Prolog)],
            Next::Phase(L::Boot),
            fail(L::PrologFailure),
        ),
        L::Boot => p(boot(D::Deploy), RUNNING, fail(L::BootFailure)),
        L::PrologResume => p(
            vec![step(D::PrologResume)],
            Next::Phase(L::BootStopped),
            fail(L::PrologResumeFailure),
        ),
        L::BootStopped => p(boot(D::Restore), RUNNING, fail(L::BootStoppedFailure)),
        L::PrologUndeploy => p(
            vec![step(D::PrologResume)],
            Next::Phase(L::BootUndeploy),
            fail(L::PrologUndeployFailure),
        ),
        L::BootUndeploy => p(boot(D::Deploy), RUNNING, fail(L::BootUndeployFailure)),
        // Resume on the same host: a failure leaves the VM where it was.
        L::BootPoweroff => p(boot(D::Deploy), RUNNING, POWEROFF),
        L::BootSuspended => p(boot(D::Restore), RUNNING, SUSPENDED),
        L::BootUnknown => p(boot(D::Deploy), RUNNING, UNKNOWN),
        // Stopping the domain: a failure leaves it running.
        L::Shutdown => p(stop_domain(shutdown), Next::Phase(L::Epilog), RUNNING),
        L::ShutdownPoweroff => p(stop_domain(shutdown), POWEROFF, RUNNING),
        L::ShutdownUndeploy => p(
            stop_domain(shutdown),
            Next::Phase(L::EpilogUndeploy),
            RUNNING,
        ),
        L::SaveStop => p(stop_domain(D::Save), Next::Phase(L::EpilogStop), RUNNING),
        L::SaveSuspend => p(stop_domain(D::Save), SUSPENDED, RUNNING),
        L::Epilog => p(
            vec![step(D::Epilog)],
            Next::Rest(S::Done, L::LcmInit),
            fail(L::EpilogFailure),
        ),
        L::EpilogStop => p(
            vec![step(D::EpilogStop)],
            Next::Rest(S::Stopped, L::LcmInit),
            fail(L::EpilogStopFailure),
        ),
        L::EpilogUndeploy => p(
            vec![step(D::EpilogStop)],
            Next::Rest(S::Undeployed, L::LcmInit),
            fail(L::EpilogUndeployFailure),
        ),
        // Cold migration: save (or shut down) on the source, move the files, boot on the
        // destination. The migrate type decides how the domain leaves and comes back.
        L::SaveMigrate => {
            let leave = match arg(op, "MIGRATE_TYPE") {
                "1" => D::Shutdown,
                "2" => D::Cancel,
                _ => D::Save,
            };
            p(
                vec![on_source(leave), on_source(D::NetClean)],
                Next::Phase(L::PrologMigrate),
                RUNNING,
            )
        }
        L::PrologMigrate => {
            let boot = if matches!(arg(op, "MIGRATE_TYPE"), "1" | "2") {
                L::Boot
            } else {
                L::BootMigrate
            };
            // A host-local system datastore's files go from the source to the frontend,
            // then to the destination (a shared one's stay where they are).
            p(
                vec![local(on_source(D::EpilogStop)), step(D::PrologMigrate)],
                Next::Phase(boot),
                fail(L::PrologMigrateFailure),
            )
        }
        L::BootMigrate => p(boot(D::Restore), RUNNING, fail(L::BootMigrateFailure)),
        L::PrologMigratePoweroff => p(
            vec![local(on_source(D::EpilogStop)), step(D::PrologMigrate)],
            POWEROFF,
            fail(L::PrologMigratePoweroffFailure),
        ),
        L::PrologMigrateSuspend => p(
            vec![local(on_source(D::EpilogStop)), step(D::PrologMigrate)],
            SUSPENDED,
            fail(L::PrologMigrateSuspendFailure),
        ),
        L::PrologMigrateUnknown => p(
            vec![local(on_source(D::EpilogStop)), step(D::PrologMigrate)],
            Next::Phase(L::Boot),
            fail(L::PrologMigrateUnknownFailure),
        ),
        // Live migration: the network on the destination, the domain moves, the source's
        // network is cleaned. A failure leaves the VM running on the source. On a
        // host-local system datastore the destination gets the VM's directory first (the
        // prolog: images from the frontend, volatile disks, the context CD), libvirt copies
        // the writable disks' content while the domain runs (a non-shared storage
        // migration), and the source's copy goes afterwards.
        L::Migrate => p(
            vec![
                undone_by(D::NetPre, D::NetClean),
                local(undone_by(D::Prolog, D::EpilogDelete)),
                on_source(D::Migrate),
                cleanup(on_source(D::NetClean)),
                local(cleanup(on_source(D::EpilogDelete))),
                step(D::NetPost),
            ],
            RUNNING,
            RUNNING,
        ),
        // Hotplug: every failure returns to the state the operation started from.
        L::Hotplug => {
            let op_ = match op.action.as_str() {
                "disk-attach" => D::AttachDisk,
                "disk-detach" => D::DetachDisk,
                _ => D::UpdateConf,
            };
            p(vec![step(op_)], RUNNING, RUNNING)
        }
        L::HotplugPrologPoweroff => p(vec![step(D::AttachDisk)], POWEROFF, POWEROFF),
        L::HotplugEpilogPoweroff => p(vec![step(D::DetachDisk)], POWEROFF, POWEROFF),
        L::HotplugNic => {
            let steps = if op.action == "nic-detach" {
                vec![step(D::DetachNic), step(D::NetClean)]
            } else {
                vec![
                    undone_by(D::NetPre, D::NetClean),
                    undone_by(D::AttachNic, D::DetachNic),
                    step(D::NetPost),
                ]
            };
            p(steps, RUNNING, RUNNING)
        }
        // Powered off: only the template changes.
        L::HotplugNicPoweroff => p(vec![], POWEROFF, POWEROFF),
        L::HotplugSnapshot => {
            let op_ = match op.action.as_str() {
                "snapshot-revert" => D::SnapshotRevert,
                "snapshot-delete" => D::SnapshotDelete,
                _ => D::SnapshotCreate,
            };
            p(vec![step(op_)], RUNNING, RUNNING)
        }
        L::HotplugResize => p(vec![step(D::Resize)], RUNNING, RUNNING),
        L::DiskSnapshot => p(vec![step(D::DiskSnapshotCreate)], RUNNING, RUNNING),
        L::DiskSnapshotPoweroff => p(vec![step(D::DiskSnapshotCreate)], POWEROFF, POWEROFF),
        L::DiskSnapshotSuspended => p(vec![step(D::DiskSnapshotCreate)], SUSPENDED, SUSPENDED),
        L::DiskSnapshotDelete => p(vec![step(D::DiskSnapshotDelete)], RUNNING, RUNNING),
        L::DiskSnapshotDeletePoweroff => p(vec![step(D::DiskSnapshotDelete)], POWEROFF, POWEROFF),
        L::DiskSnapshotDeleteSuspended => {
            p(vec![step(D::DiskSnapshotDelete)], SUSPENDED, SUSPENDED)
        }
        L::DiskSnapshotRevertPoweroff => p(vec![step(D::DiskSnapshotRevert)], POWEROFF, POWEROFF),
        // disk-saveas: the host copies the disk into the new image; the VM goes back to
        // where it was either way (the image says how it went).
        L::HotplugSaveas => p(vec![step(D::DiskSaveas)], RUNNING, RUNNING),
        L::HotplugSaveasPoweroff => p(vec![step(D::DiskSaveas)], POWEROFF, POWEROFF),
        L::HotplugSaveasSuspended => p(vec![step(D::DiskSaveas)], SUSPENDED, SUSPENDED),
        L::HotplugSaveasUndeployed => p(
            vec![step(D::DiskSaveas)],
            Next::Rest(S::Undeployed, L::LcmInit),
            Next::Rest(S::Undeployed, L::LcmInit),
        ),
        L::HotplugSaveasStopped => p(
            vec![step(D::DiskSaveas)],
            Next::Rest(S::Stopped, L::LcmInit),
            Next::Rest(S::Stopped, L::LcmInit),
        ),
        L::DiskResize => p(vec![step(D::DiskResize)], RUNNING, RUNNING),
        L::DiskResizePoweroff => p(vec![step(D::DiskResize)], POWEROFF, POWEROFF),
        L::DiskResizeUndeployed => p(
            vec![step(D::DiskResize)],
            Next::Rest(S::Undeployed, L::LcmInit),
            Next::Rest(S::Undeployed, L::LcmInit),
        ),
        // recover delete / delete-recreate, and terminate of a failed VM: remove what is
        // there, whatever fails.
        L::CleanupDelete | L::CleanupResubmit => {
            let ok = if lcm == L::CleanupDelete {
                Next::Rest(S::Done, L::LcmInit)
            } else {
                Next::Rest(S::Pending, L::LcmInit)
            };
            Phase {
                steps: vec![step(D::Cancel), step(D::NetClean), step(D::EpilogDelete)],
                ok,
                fail: ok,
                best_effort: true,
            }
        }
        _ => return None,
    })
}

/// For a *_FAILURE state: the transient state whose work failed (where `recover retry` goes
/// back to, and whose success `recover success` applies).
pub fn failed_phase(lcm: L) -> Option<L> {
    Some(match lcm {
        L::PrologFailure => L::Prolog,
        L::BootFailure => L::Boot,
        L::BootMigrateFailure => L::BootMigrate,
        L::PrologMigrateFailure => L::PrologMigrate,
        L::EpilogFailure => L::Epilog,
        L::EpilogStopFailure => L::EpilogStop,
        L::EpilogUndeployFailure => L::EpilogUndeploy,
        L::PrologMigratePoweroffFailure => L::PrologMigratePoweroff,
        L::PrologMigrateSuspendFailure => L::PrologMigrateSuspend,
        L::PrologMigrateUnknownFailure => L::PrologMigrateUnknown,
        L::BootUndeployFailure => L::BootUndeploy,
        L::BootStoppedFailure => L::BootStopped,
        L::PrologResumeFailure => L::PrologResume,
        L::PrologUndeployFailure => L::PrologUndeploy,
        _ => return None,
    })
}

/// Whether an LCM state is one of the *_FAILURE states.
pub fn is_failure(lcm: L) -> bool {
    failed_phase(lcm).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(action: &str) -> VmOperation {
        VmOperation {
            action: action.into(),
            ..VmOperation::default()
        }
    }

    #[test]
    fn every_failure_state_maps_back_to_a_phase_that_fails_into_it() {
        for l in L::ALL {
            if let Some(ph) = failed_phase(*l) {
                let plan = phase(ph, &op("deploy")).expect("failed phase has work");
                assert_eq!(plan.fail, fail(*l), "{l} from {ph}");
            }
        }
    }

    #[test]
    fn phases_chain_to_rest_states() {
        // Following ok from every phase ends in a rest state within a few hops.
        for l in L::ALL {
            let mut cur = *l;
            for _ in 0..5 {
                match phase(cur, &op("deploy")).map(|p| p.ok) {
                    Some(Next::Phase(n)) => cur = n,
                    _ => break,
                }
            }
            assert!(phase(cur, &op("deploy")).is_none_or(|p| matches!(p.ok, Next::Rest(..))));
        }
    }

    #[test]
    fn hard_actions_cancel_instead_of_shutdown() {
        let soft = phase(L::Shutdown, &op("terminate")).unwrap();
        let hard = phase(L::Shutdown, &op("terminate-hard")).unwrap();
        assert_eq!(soft.steps[0].op, DriverOp::Shutdown);
        assert_eq!(hard.steps[0].op, DriverOp::Cancel);
    }

    #[test]
    fn migrate_type_chooses_how_the_domain_moves() {
        let mut o = op("migrate");
        assert_eq!(
            phase(L::SaveMigrate, &o).unwrap().steps[0].op,
            DriverOp::Save
        );
        assert_eq!(
            phase(L::PrologMigrate, &o).unwrap().ok,
            Next::Phase(L::BootMigrate)
        );
        o.args.insert("MIGRATE_TYPE".into(), "2".into());
        assert_eq!(
            phase(L::SaveMigrate, &o).unwrap().steps[0].op,
            DriverOp::Cancel
        );
        assert_eq!(
            phase(L::PrologMigrate, &o).unwrap().ok,
            Next::Phase(L::Boot)
        );
    }

    #[test]
    fn boot_undoes_network_and_domain() {
        let b = phase(L::Boot, &op("deploy")).unwrap();
        assert_eq!(b.steps[0].undo, Some(DriverOp::NetClean));
        assert_eq!(b.steps[1].undo, Some(DriverOp::Cancel));
        assert_eq!(b.fail, fail(L::BootFailure));
    }
}
