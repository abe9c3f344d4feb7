//! Host failure recovery (docs/host-recovery.md): OpenNebula's `ft/host_error.rb` hook, built
//! in. A host that stays in ERROR past its grace period is fenced with the configured
//! command; once fenced (or when no command is configured), its ACTIVE VMs are rescheduled
//! (shared system datastore), recreated, or left with the reason, as the host's or its
//! cluster's HOST_ERROR_RECOVERY says. Off unless a template enables it.
//!
//! One task looks at the hosts every `recovery.check_interval_seconds`. What it knows about
//! each failed host (an *episode*: since when it is in ERROR and how far recovery went) is
//! persisted, so a restart neither resets the grace period nor fences or moves twice; every
//! action goes to the recovery log ([`log`]), read with `one.hostrecovery.info`.

pub mod log;
pub mod policy;

use crate::auth::now_secs;
use crate::daemon::Oned;
use crate::lcm::{self, actions};
use log::{Episode, Record, Stage};
use one_proto::objects::datastore::Datastore;
use one_proto::objects::host::Host;
use one_proto::objects::vm::Vm;
use policy::{Mode, Policy, VmAction, VmView};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use crate::config::RecoveryConfig;

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Starts the recovery task; called once oned is built.
pub fn start(oned: &Arc<Oned>) {
    let cfg = &oned.config.recovery;
    if !cfg.enabled {
        tracing::info!("host failure recovery disabled (recovery.enabled = false)");
        return;
    }
    let oned = oned.clone();
    tokio::spawn(async move {
        let mut task = match Task::load(oned).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the recovery tables; host recovery is off");
                return;
            }
        };
        let every = Duration::from_secs_f64(task.oned.config.recovery.check_interval_seconds);
        loop {
            task.round().await;
            tokio::time::sleep(every).await;
        }
    });
}

struct Task {
    oned: Arc<Oned>,
    episodes: HashMap<i64, Episode>,
    next_id: i64,
}

/// A failed host as one round sees it.
struct Failed {
    id: i64,
    name: String,
    policy: Result<Policy, String>,
}

impl Task {
    async fn load(oned: Arc<Oned>) -> Result<Task, sqlx::Error> {
        let episodes = log::load_episodes(&oned.store.db)
            .await?
            .into_iter()
            .map(|e| (e.host_id, e))
            .collect();
        let next_id = log::next_id(&oned.store.db).await?;
        Ok(Task {
            oned,
            episodes,
            next_id,
        })
    }

    /// One look at every host.
    async fn round(&mut self) {
        let cfg = &self.oned.config.recovery;
        let failed: Vec<Failed> = {
            let st = self.oned.store.read();
            st.hosts
                .iter()
                .filter(|h| policy::is_failed(h.state))
                .map(|h| Failed {
                    id: h.id,
                    name: h.name.clone(),
                    policy: policy::resolve(
                        cfg,
                        &h.template,
                        st.clusters.get(h.cluster_id).map(|c| &c.template),
                    ),
                })
                .collect()
        };
        // Healed (or deleted) hosts: their episode is over; a new failure starts a new one.
        let healed: Vec<i64> = self
            .episodes
            .keys()
            .filter(|id| !failed.iter().any(|f| f.id == **id))
            .copied()
            .collect();
        for id in healed {
            match log::end_episode(&self.oned.store.db, id).await {
                Ok(()) => {
                    self.episodes.remove(&id);
                    tracing::info!(host_id = id, "host left ERROR: recovery episode over");
                }
                Err(e) => tracing::warn!(host_id = id, error = %e, "cannot end a recovery episode"),
            }
        }
        let now_ms = now_millis();
        for f in failed {
            let ep = match self.episodes.get(&f.id) {
                Some(e) => *e,
                None => {
                    let e = Episode {
                        host_id: f.id,
                        since_ms: now_ms,
                        stage: Stage::Waiting,
                    };
                    if let Err(err) = log::save_episode(&self.oned.store.db, &e, now_secs()).await {
                        tracing::warn!(host_id = f.id, error = %err, "cannot store a recovery episode");
                        continue;
                    }
                    match &f.policy {
                        Ok(p) if p.mode != Mode::None => tracing::warn!(
                            host_id = f.id,
                            mode = ?p.mode,
                            grace_s = p.grace.as_secs_f64(),
                            "host in ERROR: it will be recovered after the grace period"
                        ),
                        Ok(_) => {}
                        Err(why) => tracing::warn!(
                            host_id = f.id,
                            error = %why,
                            "host in ERROR, but its recovery policy is invalid: nothing will be done"
                        ),
                    }
                    self.episodes.insert(f.id, e);
                    e
                }
            };
            let Ok(policy) = &f.policy else { continue };
            if ep.stage == Stage::Done || policy.mode == Mode::None {
                continue;
            }
            let elapsed = Duration::from_millis(u64::try_from(now_ms - ep.since_ms).unwrap_or(0));
            if ep.stage == Stage::Waiting && elapsed < policy.grace {
                continue;
            }
            self.recover(&f, policy, ep).await;
        }
    }

    async fn set_stage(&mut self, mut ep: Episode, stage: Stage) -> Option<Episode> {
        ep.stage = stage;
        match log::save_episode(&self.oned.store.db, &ep, now_secs()).await {
            Ok(()) => {
                self.episodes.insert(ep.host_id, ep);
                Some(ep)
            }
            Err(e) => {
                // Acting without the stage stored could repeat the action after a restart.
                tracing::warn!(host_id = ep.host_id, error = %e, "cannot store the recovery stage; retried next round");
                None
            }
        }
    }

    /// Fences the host (unless already fenced), then recovers its VMs.
    async fn recover(&mut self, f: &Failed, policy: &Policy, ep: Episode) {
        let mut ep = ep;
        let mut fenced = "not fenced (no FENCE_COMMAND)";
        if ep.stage != Stage::Recovering {
            let Some(e) = self.set_stage(ep, Stage::Fencing).await else {
                return;
            };
            ep = e;
            if policy.fence.is_empty() {
                self.record(
                    f,
                    -1,
                    "fence",
                    "skipped",
                    "no FENCE_COMMAND configured: the host was not fenced".into(),
                )
                .await;
            } else {
                let (ok, msg) = self.fence(f, policy).await;
                self.record(f, -1, "fence", if ok { "success" } else { "failure" }, msg)
                    .await;
                if !ok {
                    self.fence_failed(f).await;
                    self.finish(f, ep, "fencing failed: no VM was recovered".into())
                        .await;
                    return;
                }
                fenced = "fenced";
            }
            let Some(e) = self.set_stage(ep, Stage::Recovering).await else {
                return;
            };
            ep = e;
        } else {
            fenced = "fenced before a restart";
        }
        let counts = self.recover_vms(f, policy.mode).await;
        let summary = format!(
            "{fenced}; VMs: {} rescheduled, {} recreated, {} left, {} failed",
            counts[0], counts[1], counts[2], counts[3]
        );
        self.finish(f, ep, summary).await;
    }

    /// Runs the fence command: HOST_ID and HOST_NAME as its last two arguments and in its
    /// environment. Exit status 0 means the host is fenced.
    async fn fence(&self, f: &Failed, policy: &Policy) -> (bool, String) {
        let cfg = &self.oned.config.recovery;
        let dir = crate::hooks::hooks_dir(&self.oned);
        let args = format!("{} {}", f.id, f.name);
        let env = [
            ("HOST_ID".to_string(), f.id.to_string()),
            ("HOST_NAME".to_string(), f.name.clone()),
        ];
        let spec = crate::hooks::exec::RunSpec {
            dir: &dir,
            command: &policy.fence,
            arguments: &args,
            stdin: false,
            timeout: Some(Duration::from_secs_f64(cfg.fence_timeout_seconds)),
            max_output: 4096,
            env: &env,
        };
        tracing::warn!(host_id = f.id, command = %spec.command_line(), "fencing host");
        let res = crate::hooks::exec::run(&spec).await;
        let tail = |s: &str| {
            let s = s.trim();
            let start = s.char_indices().rev().nth(399).map_or(0, |(i, _)| i);
            s[start..].to_string()
        };
        if res.code == 0 {
            (true, format!("{} exited with 0", res.command))
        } else {
            let err = tail(&res.stderr);
            (
                false,
                format!(
                    "{} exited with {}{}{}",
                    res.command,
                    res.code,
                    if err.is_empty() { "" } else { ": " },
                    err
                ),
            )
        }
    }

    /// Fencing failed: no VM moves (it may still run), each concerned VM says why.
    async fn fence_failed(&mut self, f: &Failed) {
        let why = format!(
            "not recovered: host {} ({}) is in ERROR and could not be fenced",
            f.id, f.name
        );
        let vms = self.concerned(f.id, Mode::Migrate);
        for (vmid, _) in vms {
            self.leave(f, vmid, &why).await;
        }
    }

    /// The host's VMs that recovery concerns, with the action for each.
    fn concerned(&self, host_id: i64, mode: Mode) -> Vec<(i64, VmAction)> {
        let st = self.oned.store.read();
        let Some(host) = st.hosts.get(host_id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for vmid in &host.vms {
            let Some(vm) = st.vms.get(*vmid) else {
                continue;
            };
            let Some(h) = vm.history.last().filter(|h| h.hid == host_id) else {
                continue;
            };
            let ds: Option<&Datastore> = st.datastores.get(h.ds_id).map(|d| &**d);
            let view = VmView {
                state: vm.state,
                lcm: vm.lcm_state,
                resched: vm.resched != 0,
                ds,
                ds_id: h.ds_id,
            };
            if let Some(a) = policy::decide(mode, &view) {
                out.push((*vmid, a));
            }
        }
        out
    }

    /// Recovers every concerned VM; counts [rescheduled, recreated, left, failed].
    async fn recover_vms(&mut self, f: &Failed, mode: Mode) -> [usize; 4] {
        let mut counts = [0; 4];
        for (vmid, act) in self.concerned(f.id, mode) {
            let (i, outcome, msg) = match &act {
                VmAction::Leave(why) => {
                    self.leave(f, vmid, why).await;
                    counts[2] += 1;
                    continue;
                }
                VmAction::Resched => match self.vm_change(vmid, &act).await {
                    Ok(()) => (
                        0,
                        "success",
                        format!(
                            "host {} failed: VM flagged for rescheduling; the scheduler moves it with its disks",
                            f.id
                        ),
                    ),
                    Err(e) => (3, "failure", format!("resched refused: {e}")),
                },
                VmAction::Recreate => match self.vm_change(vmid, &act).await {
                    Ok(()) => (
                        1,
                        "success",
                        format!(
                            "host {} failed: VM deleted and recreated (back to PENDING, disk changes lost)",
                            f.id
                        ),
                    ),
                    Err(e) => (3, "failure", format!("delete-recreate refused: {e}")),
                },
            };
            counts[i] += 1;
            lcm::vmlog::append(
                &self.oned.data_dir.root.join("vms"),
                vmid,
                "VM",
                if outcome == "success" {
                    lcm::vmlog::Level::Info
                } else {
                    lcm::vmlog::Level::Error
                },
                &[format!("Host recovery: {msg}")],
                now_secs(),
            );
            self.record(f, vmid, act.name(), outcome, msg).await;
        }
        counts
    }

    /// Applies resched or delete-recreate to a VM in its own transaction.
    async fn vm_change(&self, vmid: i64, act: &VmAction) -> Result<(), String> {
        let now = now_secs();
        let mut tx = self.oned.store.begin().await;
        let mut vm: Vm = tx.get(vmid).ok_or("the VM no longer exists")?;
        let started = match act {
            VmAction::Resched => {
                actions::action(&mut tx, &mut vm, "resched", now)?;
                false
            }
            VmAction::Recreate => {
                match actions::recover(&mut tx, &mut vm, actions::Recover::DeleteRecreate, now)? {
                    actions::RecoverPlan::Accepted(a) => a == actions::Accepted::Started,
                    actions::RecoverPlan::Conclude { .. } => {
                        return Err("unexpected recover plan".into());
                    }
                }
            }
            VmAction::Leave(_) => return Ok(()),
        };
        tx.put(vm);
        tx.commit().await.map_err(|e| e.to_string())?;
        if started {
            // Replaces a runner stuck on the dead host, as one.vm.recover does.
            lcm::restart(&self.oned, vmid);
        }
        Ok(())
    }

    /// Leaves a VM as it is, with the reason in its USER_TEMPLATE/ERROR and the log.
    async fn leave(&mut self, f: &Failed, vmid: i64, why: &str) {
        let now = now_secs();
        {
            let mut tx = self.oned.store.begin().await;
            if let Some(mut vm) = tx.get::<Vm>(vmid) {
                lcm::set_error(&mut vm, &format!("Host recovery: {why}"), now);
                tx.put(vm);
                if let Err(e) = tx.commit().await {
                    tracing::warn!(vm_id = vmid, error = %e, "cannot store the recovery reason");
                }
            }
        }
        self.record(f, vmid, "leave", "skipped", why.to_string())
            .await;
    }

    /// Ends the episode's work: LAST_RECOVERY on the host, stage done.
    async fn finish(&mut self, f: &Failed, ep: Episode, summary: String) {
        let now = now_secs();
        {
            let mut tx = self.oned.store.begin().await;
            if let Some(mut h) = tx.get::<Host>(f.id) {
                h.template.set(
                    "LAST_RECOVERY",
                    format!("{} : {summary}", one_proto::time::ctime(now)),
                );
                tx.put(h);
                if let Err(e) = tx.commit().await {
                    tracing::warn!(host_id = f.id, error = %e, "cannot store LAST_RECOVERY");
                }
            }
        }
        tracing::warn!(host_id = f.id, %summary, "host recovery done");
        self.set_stage(ep, Stage::Done).await;
    }

    /// Appends a record to the log (and to oned's log).
    async fn record(
        &mut self,
        f: &Failed,
        vm_id: i64,
        action: &str,
        outcome: &str,
        message: String,
    ) {
        let r = Record {
            id: self.next_id,
            host_id: f.id,
            host_name: f.name.clone(),
            vm_id,
            time: now_secs(),
            action: action.into(),
            outcome: outcome.into(),
            message,
        };
        if outcome == "failure" {
            tracing::error!(host_id = f.id, vm_id, action, outcome, detail = %r.message, "host recovery");
        } else {
            tracing::warn!(host_id = f.id, vm_id, action, outcome, detail = %r.message, "host recovery");
        }
        match log::append(
            &self.oned.store.db,
            &r,
            self.oned.config.recovery.log_retention,
        )
        .await
        {
            Ok(()) => self.next_id += 1,
            Err(e) => {
                tracing::error!(host_id = f.id, vm_id, error = %e, "cannot write the recovery log")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etc_oned_toml_documents_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/oned.toml");
        let cfg = crate::config::Config::load(&path).expect("etc/oned.toml parses");
        let (r, d) = (&cfg.recovery, RecoveryConfig::default());
        assert_eq!(r.enabled, d.enabled);
        assert_eq!(r.check_interval_seconds, d.check_interval_seconds);
        assert_eq!(r.grace_seconds, d.grace_seconds);
        assert_eq!(r.fence_command, d.fence_command);
        assert_eq!(r.fence_timeout_seconds, d.fence_timeout_seconds);
        assert_eq!(r.log_retention, d.log_retention);
    }

    #[test]
    fn bad_values_are_refused() {
        let d = RecoveryConfig::default;
        assert!(d().validate().is_ok());
        for bad in [
            RecoveryConfig {
                check_interval_seconds: 0.0,
                ..d()
            },
            RecoveryConfig {
                grace_seconds: f64::NAN,
                ..d()
            },
            RecoveryConfig {
                log_retention: 0,
                ..d()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
