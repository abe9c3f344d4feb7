//! Host and datastore monitoring (docs/monitoring.md).
//!
//! Two background tasks:
//!
//! * **dummy hosts** (IM_MAD "dummy"), every `monitoring.dummy_interval_seconds` and at once
//!   when [`Monitor::wake`] is called (a host was allocated). A round has three steps:
//!   1. decide, under the read lock and without copying, what each host's probes report
//!      ([`dummy::plan`]) and which hosts really change (state, probe attributes, capacity,
//!      ERROR, VM states);
//!   2. write those changes, for all hosts together, in ONE transaction;
//!   3. write the simulated samples (HOST/MONITORING, HOST_SHARE/DATASTORES, VM MONITORING
//!      and LAST_POLL) in memory only, with [`Store::update_volatile`](crate::store::Store):
//!      they change every round and are cheap to lose, so they reach the database with the
//!      object's next real change instead of costing 10,000 row writes per round.
//! * **datastores**, every `monitoring.datastore_interval_seconds` ([`datastore`]).

pub mod datastore;
pub mod dummy;
pub mod sample;

use crate::auth::now_secs;
use crate::config::Config;
use crate::lcm::{self, Seen};
use crate::server::Oned;
use crate::store::{State, StoreError};
use one_proto::objects::host::{Host, HostDs};
use one_proto::state::{DatastoreType, HostState, LcmState, VmState};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Hosts sampled per hold of the write lock, so API reads never wait long behind a round.
const SAMPLE_CHUNK: usize = 1000;

/// After a wake-up, how long to wait so a burst of allocations is handled by one round.
const WAKE_DELAY: Duration = Duration::from_millis(20);

pub struct Monitor {
    wake: Notify,
    /// MODELNAME of dummy hosts, fixed by the configuration.
    model: String,
}

impl Monitor {
    pub fn new(cfg: &Config) -> Monitor {
        Monitor {
            wake: Notify::new(),
            model: dummy::model_name(cfg.dummy.cpu_speed_mhz),
        }
    }

    /// Asks for a monitoring round now (e.g. a host was just allocated); wake-ups that come
    /// while a round runs are merged into one more round.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Starts the background tasks; called once oned is built.
pub fn start(oned: &Arc<Oned>) {
    let o = oned.clone();
    tokio::spawn(async move { dummy_loop(o).await });
    let o = oned.clone();
    tokio::spawn(async move { datastore_loop(o).await });
}

/// A configured period, or `default` when it is not a positive finite number of seconds.
fn period(secs: f64, default: f64, name: &str) -> Duration {
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            tracing::warn!(
                option = name,
                value = secs,
                default,
                "invalid period, using the default"
            );
            Duration::from_secs_f64(default)
        }
    }
}

async fn dummy_loop(oned: Arc<Oned>) {
    let every = period(
        oned.config.monitoring.dummy_interval_seconds,
        5.0,
        "monitoring.dummy_interval_seconds",
    );
    let mut next_full = Instant::now();
    loop {
        let full = Instant::now() >= next_full;
        if full {
            next_full = Instant::now() + every;
        }
        match dummy_round(&oned, full).await {
            Ok(s) => tracing::debug!(
                full,
                hosts = s.hosts,
                changed = s.changed,
                vms = s.vms,
                plan_us = s.plan.as_micros() as u64,
                commit_us = s.commit.as_micros() as u64,
                sample_us = s.sample.as_micros() as u64,
                "dummy monitoring round"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "dummy monitoring round failed; retried next round")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next_full) => {}
            _ = oned.monitor.wake.notified() => tokio::time::sleep(WAKE_DELAY).await,
        }
    }
}

async fn datastore_loop(oned: Arc<Oned>) {
    let m = &oned.config.monitoring;
    let every = period(
        m.datastore_interval_seconds,
        300.0,
        "monitoring.datastore_interval_seconds",
    );
    // Datastores never measured yet (just created) are looked at more often.
    let check = period(
        m.dummy_interval_seconds,
        5.0,
        "monitoring.dummy_interval_seconds",
    )
    .min(every);
    let mut next_full = Instant::now();
    loop {
        let full = Instant::now() >= next_full;
        if full {
            next_full = Instant::now() + every;
        }
        match datastore::round(&oned, full).await {
            Ok(n) => tracing::debug!(full, changed = n, "datastore monitoring round"),
            Err(e) => tracing::warn!(error = %e, "datastore monitoring round failed"),
        }
        tokio::time::sleep_until(next_full.min(Instant::now() + check)).await;
    }
}

/// What one dummy round did and cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoundStats {
    /// Dummy hosts monitored (not OFFLINE).
    pub hosts: usize,
    /// Hosts whose stored document or VMs changed.
    pub changed: usize,
    /// VMs sampled.
    pub vms: usize,
    pub plan: Duration,
    pub commit: Duration,
    pub sample: Duration,
}

fn plan_in(st: &State, h: &Host, oned: &Oned) -> Option<dummy::Plan> {
    if !dummy::is_monitored(h) {
        return None;
    }
    let cluster = st.clusters.get(h.cluster_id).map(|c| &c.template);
    dummy::plan(
        h,
        cluster,
        |id| st.vms.get(id).map(|v| (v.state, v.lcm_state)),
        &oned.config.dummy,
        &oned.monitor.model,
    )
}

/// One round over every dummy host. A `full` round samples every healthy host; a wake-up
/// round only the hosts it changed (a new host gets its first sample at once).
pub async fn dummy_round(oned: &Oned, full: bool) -> Result<RoundStats, StoreError> {
    let mut stats = RoundStats::default();
    let t = std::time::Instant::now();
    let mut sample_ids = Vec::new();
    let mut change_ids = Vec::new();
    {
        let st = oned.store.read();
        for h in st.hosts.iter() {
            let Some(p) = plan_in(&st, h, oned) else {
                continue;
            };
            stats.hosts += 1;
            if p.needs_txn() {
                change_ids.push(h.id);
            }
            if full && p.capacity.is_some() {
                sample_ids.push(h.id);
            }
        }
    }
    stats.plan = t.elapsed();

    if !change_ids.is_empty() {
        let t = std::time::Instant::now();
        let now = now_secs();
        let cfg = &oned.config.dummy;
        let mut tx = oned.store.begin().await;
        for &id in &change_ids {
            let Some(mut h) = tx.get::<Host>(id) else {
                continue;
            };
            // Decided again inside the transaction: the host may have changed since.
            let Some(p) = plan_in(&tx.committed(), &h, oned) else {
                continue;
            };
            if !p.needs_txn() {
                continue;
            }
            let from = h.state;
            dummy::apply(&mut h, &p, cfg, &oned.monitor.model, now);
            if from != h.state {
                match &p.failure {
                    Some(msg) => {
                        tracing::warn!(host = id, from = %from, to = %h.state, error = %msg, "host monitoring failed")
                    }
                    None => {
                        tracing::info!(host = id, from = %from, to = %h.state, "host monitored")
                    }
                }
            }
            if p.changed {
                tx.put(h);
            }
            if p.fail_vms {
                lcm::host_failed(&mut tx, id);
            }
            for &vm in &p.unknown_vms {
                lcm::vm_seen(&mut tx, vm, Seen::Running);
            }
            if !full && p.capacity.is_some() {
                sample_ids.push(id);
            }
            stats.changed += 1;
        }
        tx.commit().await?;
        stats.commit = t.elapsed();
    }

    if !sample_ids.is_empty() {
        let t = std::time::Instant::now();
        let ds = system_datastores(&oned.store.read());
        for chunk in sample_ids.chunks(SAMPLE_CHUNK) {
            let now = now_secs();
            stats.vms += oned
                .store
                .update_volatile(|st| sample_hosts(st, chunk, &ds, now))
                .await;
        }
        stats.sample = t.elapsed();
    }
    Ok(stats)
}

/// The system datastores of every cluster with their figures, for HOST_SHARE/DATASTORES.
fn system_datastores(st: &State) -> HashMap<i64, Vec<HostDs>> {
    st.clusters
        .iter()
        .map(|c| {
            let ds = c
                .datastores
                .iter()
                .filter_map(|id| st.datastores.get(*id))
                .filter(|d| d.ds_type == DatastoreType::System)
                .map(|d| HostDs {
                    id: d.header.id,
                    total_mb: d.total_mb,
                    free_mb: d.free_mb,
                    used_mb: d.used_mb,
                })
                .collect();
            (c.id, ds)
        })
        .collect()
}

/// Whether a host gets samples: a healthy dummy host that is monitored and not failing.
fn sampled(h: &Host) -> bool {
    dummy::is_monitored(h)
        && matches!(
            h.state,
            HostState::Monitored | HostState::Disabled | HostState::MonitoringDisabled
        )
        && !dummy::monitor_fails(h)
}

/// Writes samples of hosts `ids` and their RUNNING VMs in place (`Arc::make_mut` copies an
/// object only while a reader holds it). Returns the number of VMs sampled.
fn sample_hosts(st: &mut State, ids: &[i64], ds: &HashMap<i64, Vec<HostDs>>, now: i64) -> usize {
    let State { hosts, vms, .. } = st;
    let mut n = 0;
    for id in ids {
        let Some(h) = hosts.map.get_mut(id) else {
            continue;
        };
        // Checked again: the host may have changed since the round decided.
        if !sampled(h) {
            continue;
        }
        let h = Arc::make_mut(h);
        let mut usage = sample::VmUsage::default();
        for vid in &h.vms {
            let Some(vm) = vms.map.get_mut(vid) else {
                continue;
            };
            if vm.state != VmState::Active || vm.lcm_state != LcmState::Running {
                continue;
            }
            let vm = Arc::make_mut(vm);
            let (cpu, mem) = sample::vm_allocation(&vm.template);
            usage += sample::sample_vm(vm.header.id, cpu, mem, &mut vm.monitoring, now);
            vm.last_poll = now;
            n += 1;
        }
        let m = sample::sample_host(h.id, &h.share, h.monitoring.as_ref(), usage, now);
        h.monitoring = Some(m);
        let mine = ds.get(&h.cluster_id).map_or(&[][..], Vec::as_slice);
        sample::set_datastores(&mut h.share, mine);
    }
    n
}
