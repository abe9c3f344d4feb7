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
pub mod history;
pub mod sample;

use crate::auth::now_secs;
use crate::config::{Config, DummyConfig};
use crate::daemon::Oned;
use crate::lcm::{self, Seen};
use crate::store::{State, Store, StoreError};
use one_proto::objects::host::{Host, HostDs};
use one_proto::state::{DatastoreType, HostState, LcmState, VmState};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Objects (hosts and VMs) sampled per hold of the write lock, so API calls never wait more
/// than a millisecond or two behind a round.
const SAMPLE_BUDGET: usize = 1000;

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
    start_history(oned);
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
    let mut memo = Memo::default();
    loop {
        let full = Instant::now() >= next_full;
        if full {
            next_full = Instant::now() + every;
        }
        let (cfg, model) = (&oned.config.dummy, oned.monitor.model.as_str());
        match dummy_round(&oned.store, cfg, model, full, &mut memo).await {
            Ok(s) => tracing::debug!(
                full,
                hosts = s.hosts,
                planned = s.planned,
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
        match datastore::round(&oned.store, full).await {
            Ok(n) => tracing::debug!(full, changed = n, "datastore monitoring round"),
            Err(e) => tracing::warn!(error = %e, "datastore monitoring round failed"),
        }
        tokio::time::sleep_until(next_full.min(Instant::now() + check)).await;
    }
}

/// Every this many full rounds, every host is decided again even if its document did not
/// change: it catches what [`Memo`] cannot see (a VM of the host changing state on its own, a
/// freed document's address reused), a minute late at the default period.
const REPLAN_EVERY: u64 = 12;

/// What the previous rounds decided, so that a round does not decide again for hosts whose
/// document has not changed since (nearly all of them, nearly always).
///
/// A host is known by the address of its shared document: a transaction replaces the
/// document (new address), while samples change it in place (same address). A host whose
/// address is the one recorded needs nothing but its samples; looking that up costs no
/// access to the document itself, which keeps a round over 10,000 idle hosts to a walk of
/// the pool.
#[derive(Default)]
pub struct Memo {
    /// Host id → (document address, healthy: gets samples).
    hosts: HashMap<i64, (usize, bool)>,
    /// Cluster id → document address: a cluster change (RESERVED_*) decides every host again.
    clusters: Vec<(i64, usize)>,
    /// HOST_SHARE/DATASTORES as the last full round wrote them to every healthy host.
    datastores: HashMap<i64, Vec<HostDs>>,
    /// VM id → (document address, what it was given): reading CPU and MEMORY out of a VM's
    /// template was the largest cost of sampling thousands of VMs.
    vm_alloc: HashMap<i64, (usize, f64, i64)>,
    full_rounds: u64,
}

/// What one dummy round did and cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoundStats {
    /// Dummy hosts monitored (not OFFLINE).
    pub hosts: usize,
    /// Hosts decided (the others had not changed since the last round).
    pub planned: usize,
    /// Hosts whose stored document or VMs changed.
    pub changed: usize,
    /// VMs sampled.
    pub vms: usize,
    pub plan: Duration,
    pub commit: Duration,
    pub sample: Duration,
}

fn plan_in(st: &State, h: &Host, cfg: &DummyConfig, model: &str) -> Option<dummy::Plan> {
    if !dummy::is_monitored(h) {
        return None;
    }
    let cluster = st.clusters.get(h.cluster_id).map(|c| &c.template);
    dummy::plan(
        h,
        cluster,
        |id| st.vms.get(id).map(|v| (v.state, v.lcm_state)),
        cfg,
        model,
    )
}

/// One round over every dummy host. A `full` round samples every healthy host; a wake-up
/// round only the hosts it changed (a new host gets its first sample at once).
pub async fn dummy_round(
    store: &Store,
    cfg: &DummyConfig,
    model: &str,
    full: bool,
    memo: &mut Memo,
) -> Result<RoundStats, StoreError> {
    let mut stats = RoundStats::default();
    let t = std::time::Instant::now();
    let mut sample_ids = Vec::new();
    let mut change_ids = Vec::new();
    {
        let st = store.read();
        let clusters: Vec<(i64, usize)> = st
            .clusters
            .map
            .iter()
            .map(|(id, c)| (*id, Arc::as_ptr(c) as usize))
            .collect();
        let replan =
            (full && memo.full_rounds.is_multiple_of(REPLAN_EVERY)) || clusters != memo.clusters;
        if replan {
            memo.hosts.clear();
            memo.vm_alloc.clear();
            memo.clusters = clusters;
        }
        if full {
            memo.full_rounds += 1;
        }
        for (id, h) in st.hosts.map.iter() {
            let addr = Arc::as_ptr(h) as usize;
            if let Some(&(known, healthy)) = memo.hosts.get(id)
                && known == addr
            {
                stats.hosts += 1;
                if full && healthy {
                    sample_ids.push((*id, true));
                }
                continue;
            }
            let Some(p) = plan_in(&st, h, cfg, model) else {
                continue;
            };
            stats.hosts += 1;
            stats.planned += 1;
            if p.needs_txn() {
                change_ids.push(*id);
            } else {
                memo.hosts.insert(*id, (addr, p.capacity.is_some()));
            }
            if full && p.capacity.is_some() {
                sample_ids.push((*id, false));
            }
        }
    }
    stats.plan = t.elapsed();

    if !change_ids.is_empty() {
        let t = std::time::Instant::now();
        let now = now_secs();
        let mut tx = store.begin().await;
        for &id in &change_ids {
            let Some(mut h) = tx.get::<Host>(id) else {
                continue;
            };
            // Decided again inside the transaction: the host may have changed since.
            let Some(p) = plan_in(&tx.committed(), &h, cfg, model) else {
                continue;
            };
            if !p.needs_txn() {
                continue;
            }
            let from = h.state;
            dummy::apply(&mut h, &p, cfg, model, now);
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
                sample_ids.push((id, false));
            }
            stats.changed += 1;
        }
        tx.commit().await?;
        stats.commit = t.elapsed();
    }

    if !sample_ids.is_empty() {
        let t = std::time::Instant::now();
        // Already ascending in a full round; a wake-up round appends changed hosts.
        sample_ids.sort_unstable();
        sample_ids.dedup_by_key(|(id, _)| *id);
        let ds = system_datastores(&store.read());
        // Hosts unchanged since the last full round already hold these figures, unless they
        // changed: then every host gets them (a wake-up round samples only some hosts, so it
        // neither relies on nor updates what the memo remembers).
        let ds_known = full && ds == memo.datastores;
        let mut done = 0;
        while done < sample_ids.len() {
            let now = now_secs();
            let rest = &sample_ids[done..];
            let alloc = &mut memo.vm_alloc;
            let (taken, vms) = store
                .update_volatile(|st| {
                    sample_hosts(st, rest, &ds, ds_known, alloc, now, SAMPLE_BUDGET)
                })
                .await;
            done += taken.max(1); // never 0, but never loop on a bug either
            stats.vms += vms;
        }
        if full && !ds_known {
            memo.datastores = ds;
        }
        record_history(store, &sample_ids);
        stats.sample = t.elapsed();
    }
    Ok(stats)
}

/// Copies the samples just written into the monitoring history (history.rs), under the
/// read lock only; VM samples closer than the history's spacing are not even decoded.
fn record_history(store: &Store, ids: &[(i64, bool)]) {
    let h = &store.history;
    let (hosts, vms) = {
        let st = store.read();
        let mut hosts = Vec::with_capacity(ids.len());
        let mut vms = Vec::new();
        for (id, _) in ids {
            let Some(host) = st.hosts.get(*id) else {
                continue;
            };
            if !sampled(host) {
                continue;
            }
            if let Some(m) = &host.monitoring {
                hosts.push((*id, m.clone()));
            }
            let running = host
                .vms
                .iter()
                .filter_map(|v| st.vms.get(*v))
                .filter(|vm| vm.state == VmState::Active && vm.lcm_state == LcmState::Running);
            vms.extend(history::vm_records(h, running.map(|vm| &**vm)));
        }
        (hosts, vms)
    };
    h.record_hosts(hosts);
    h.record_vms(vms);
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

/// Whether a host the round decided to sample may still be: it may have changed state since
/// (only the state is looked at, which sits in the document itself; a DUMMY_FAIL added in
/// between costs at most one more sample).
fn sampled(h: &Host) -> bool {
    matches!(
        h.state,
        HostState::Monitored | HostState::Disabled | HostState::MonitoringDisabled
    )
}

/// Writes samples of hosts `ids` (ascending; with whether the host is unchanged since the
/// last round) and their RUNNING VMs in place (`Arc::make_mut` copies an object only while a
/// reader holds it), until about `budget` objects are done. `ds_known`: unchanged hosts
/// already hold `ds`, so their datastore list is not even looked at (a memory access per host
/// saved). `alloc` caches what each VM was given ([`Memo`]). Returns how many of `ids` were
/// handled and the number of VMs sampled.
fn sample_hosts(
    st: &mut State,
    ids: &[(i64, bool)],
    ds: &HashMap<i64, Vec<HostDs>>,
    ds_known: bool,
    alloc: &mut HashMap<i64, (usize, f64, i64)>,
    now: i64,
    budget: usize,
) -> (usize, usize) {
    let (Some(&(first, _)), Some(&(last, _))) = (ids.first(), ids.last()) else {
        return (0, 0);
    };
    let State { hosts, vms, .. } = st;
    let (mut next, mut n, mut spent) = (0, 0, 0);
    // One walk over the pool's range, merged with the sorted ids: cheaper than a lookup each.
    for (id, h) in hosts.map.range_mut(first..=last) {
        if spent >= budget {
            return (next, n);
        }
        while next < ids.len() && ids[next].0 < *id {
            next += 1;
        }
        let Some(&(want, unchanged)) = ids.get(next) else {
            return (ids.len(), n);
        };
        if want != *id {
            continue;
        }
        next += 1;
        spent += 1;
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
            // Taken after make_mut (which may have copied): the address the next round sees.
            let at = &raw const *vm as usize;
            let (cpu, mem) = match alloc.get(vid) {
                Some(&(known, cpu, mem)) if known == at => (cpu, mem),
                _ => {
                    let (cpu, mem) = sample::vm_allocation(&vm.template);
                    alloc.insert(*vid, (at, cpu, mem));
                    (cpu, mem)
                }
            };
            usage += sample::sample_vm(vm.header.id, cpu, mem, &mut vm.monitoring, now);
            vm.last_poll = now;
            n += 1;
            spent += 1;
        }
        let m = sample::sample_host(h.id, &h.share, h.monitoring.as_ref(), usage, now);
        h.monitoring = Some(m);
        if !(ds_known && unchanged) {
            let mine = ds.get(&h.cluster_id).map_or(&[][..], Vec::as_slice);
            sample::set_datastores(&mut h.share, mine);
        }
    }
    // The walk reached the end: every id was handled (those of deleted hosts too).
    (ids.len(), n)
}

/// Configures the history, loads it, then flushes it every `history_flush_seconds`.
fn start_history(oned: &Arc<Oned>) {
    let oned = oned.clone();
    tokio::spawn(async move {
        let h = &oned.store.history;
        h.configure(history::Retention::from_config(&oned.config.monitoring));
        match h.load(&oned.store.db, now_secs()).await {
            Ok((hosts, vms)) => tracing::info!(hosts, vms, "monitoring history loaded"),
            Err(e) => tracing::warn!(error = %e, "monitoring history not loaded"),
        }
        let every = period(
            oned.config.monitoring.history_flush_seconds,
            30.0,
            "monitoring.history_flush_seconds",
        );
        loop {
            tokio::time::sleep(every).await;
            flush_history(&oned).await;
        }
    });
}

/// Prunes and flushes the history now (also called at shutdown).
pub async fn flush_history(oned: &Oned) {
    let h = &oned.store.history;
    let now = now_secs();
    let (hosts, vms): (HashSet<i64>, HashSet<i64>) = {
        let st = oned.store.read();
        (
            st.hosts.map.keys().copied().collect(),
            st.vms.map.keys().copied().collect(),
        )
    };
    h.prune(now, &hosts, &vms);
    match h.flush(&oned.store.db, now).await {
        Ok(n) => tracing::debug!(rows = n, "monitoring history flushed"),
        Err(e) => tracing::warn!(error = %e, "monitoring history flush failed; retried next time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use one_proto::objects::Header;
    use one_proto::objects::cluster::Cluster;
    use one_proto::objects::datastore::Datastore;
    use one_proto::objects::host::HostShare;
    use one_proto::state::{DatastoreState, DiskType};
    use one_proto::template::Template;

    async fn open(dir: &std::path::Path) -> Store {
        let url = format!("sqlite://{}/one.db?mode=rwc", dir.display());
        Store::load(Db::open(&url, false).await.unwrap())
            .await
            .unwrap()
    }

    fn datastore(id: i64, base_path: &str, ds_type: DatastoreType, mb: i64) -> Datastore {
        Datastore {
            header: Header::oneadmin(id, format!("ds{id}")),
            ds_mad: "-".into(),
            tm_mad: "ssh".into(),
            base_path: base_path.into(),
            ds_type,
            disk_type: DiskType::File,
            state: DatastoreState::Ready,
            clusters: vec![0],
            total_mb: mb,
            free_mb: mb / 2,
            used_mb: mb / 2,
            images: vec![],
            template: Template::new(),
        }
    }

    fn host(id: i64, im_mad: &str) -> Host {
        Host {
            id,
            name: format!("h{id}"),
            state: HostState::Init,
            prev_state: HostState::Init,
            im_mad: im_mad.into(),
            vm_mad: im_mad.into(),
            cluster_id: 0,
            cluster: "default".into(),
            share: HostShare::default(),
            vms: vec![],
            template: Template::new(),
            monitoring: None,
        }
    }

    fn addr(store: &Store, id: i64) -> usize {
        Arc::as_ptr(store.read().hosts.get(id).unwrap()) as usize
    }

    #[tokio::test]
    async fn rounds_write_changes_once_and_samples_in_memory_only() {
        let dir = std::env::temp_dir().join(format!("oned-monitor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = open(&dir).await;
        let mut tx = store.begin().await;
        tx.put(Cluster {
            id: 0,
            name: "default".into(),
            hosts: vec![0, 1, 2],
            datastores: vec![0, 1],
            vnets: vec![],
            template: Template::parse("RESERVED_CPU=\"100\"").unwrap(),
        });
        tx.put(datastore(0, "/x", DatastoreType::System, 1000));
        tx.put(datastore(1, "/y", DatastoreType::Image, 5000));
        tx.put(host(0, "dummy"));
        tx.put(host(1, "dummy"));
        tx.put(host(2, "kvm"));
        tx.commit().await.unwrap();
        let cfg = DummyConfig::default();
        let model = dummy::model_name(cfg.cpu_speed_mhz);
        let mut memo = Memo::default();

        let s = dummy_round(&store, &cfg, &model, true, &mut memo)
            .await
            .unwrap();
        assert_eq!((s.hosts, s.planned, s.changed), (2, 2, 2), "{s:?}");
        let h0 = store.get::<Host>(0).unwrap();
        assert_eq!(h0.state, HostState::Monitored);
        assert_eq!((h0.share.total_cpu, h0.share.max_cpu), (800, 700));
        let ds: Vec<i64> = h0.share.datastores.iter().map(|d| d.id).collect();
        assert_eq!(ds, [0], "the cluster's system datastores only");
        assert_eq!(h0.share.max_disk, 1000);
        let m = h0.monitoring.clone().unwrap();
        assert_eq!(m.used_cpu + m.free_cpu, 800);
        assert_eq!(store.get::<Host>(2).unwrap().state, HostState::Init);
        drop(h0);

        // Written by the round's transaction, the hosts are decided once more (nothing to
        // change); after that they are not decided again, and are sampled in place.
        let s = dummy_round(&store, &cfg, &model, true, &mut memo)
            .await
            .unwrap();
        assert_eq!((s.hosts, s.planned, s.changed), (2, 2, 0), "{s:?}");
        let before = (addr(&store, 0), addr(&store, 1));
        let s = dummy_round(&store, &cfg, &model, true, &mut memo)
            .await
            .unwrap();
        assert_eq!((s.hosts, s.planned, s.changed), (2, 0, 0), "{s:?}");
        assert_eq!((addr(&store, 0), addr(&store, 1)), before);

        // New datastore figures reach every host.
        let mut tx = store.begin().await;
        tx.put(datastore(0, "/x", DatastoreType::System, 3000));
        tx.commit().await.unwrap();
        dummy_round(&store, &cfg, &model, true, &mut memo)
            .await
            .unwrap();
        for id in [0, 1] {
            let h = store.get::<Host>(id).unwrap();
            assert_eq!(h.share.datastores[0].total_mb, 3000);
        }

        // A host changed by someone else is decided again, alone.
        let mut tx = store.begin().await;
        let mut h1: Host = tx.get(1).unwrap();
        h1.template.set("DUMMY_FAIL", "monitor");
        tx.put(h1);
        tx.commit().await.unwrap();
        let stamp = store
            .get::<Host>(1)
            .unwrap()
            .monitoring
            .clone()
            .unwrap()
            .timestamp;
        let s = dummy_round(&store, &cfg, &model, true, &mut memo)
            .await
            .unwrap();
        assert_eq!((s.planned, s.changed), (1, 1), "{s:?}");
        let h1 = store.get::<Host>(1).unwrap();
        assert_eq!(h1.state, HostState::Error);
        assert!(
            h1.template
                .get("ERROR")
                .unwrap()
                .contains("Error monitoring Host h1 (1)")
        );
        assert_eq!(
            h1.monitoring.clone().unwrap().timestamp,
            stamp,
            "no sample while failing"
        );
        drop(h1);
        store.db.close().await;

        // What is stored: states and capacity; samples only as far as a real change carried
        // them (host 1 was last written with one, host 0 before its first).
        let store = open(&dir).await;
        let h0 = store.get::<Host>(0).unwrap();
        assert_eq!((h0.state, h0.share.total_cpu), (HostState::Monitored, 800));
        assert!(h0.monitoring.is_none());
        let h1 = store.get::<Host>(1).unwrap();
        assert_eq!(h1.state, HostState::Error);
        assert!(h1.monitoring.is_some());
        drop((h0, h1));
        store.db.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_periods_fall_back_to_the_default() {
        assert_eq!(period(0.5, 5.0, "x"), Duration::from_millis(500));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300] {
            assert_eq!(period(bad, 5.0, "x"), Duration::from_secs(5), "{bad}");
        }
    }

    #[tokio::test]
    async fn datastore_round_measures_existing_paths() {
        let dir = std::env::temp_dir().join(format!("oned-monitor-ds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = open(&dir).await;
        let mut tx = store.begin().await;
        tx.put(datastore(
            0,
            &dir.display().to_string(),
            DatastoreType::System,
            0,
        ));
        tx.put(datastore(1, "/nonexistent/one-rs", DatastoreType::Image, 0));
        tx.commit().await.unwrap();
        assert_eq!(datastore::round(&store, true).await.unwrap(), 1);
        let d0 = store.get::<Datastore>(0).unwrap();
        assert!(d0.total_mb > 0 && d0.free_mb <= d0.total_mb);
        assert_eq!(store.get::<Datastore>(1).unwrap().total_mb, 0);
        // A non-full round looks only at datastores never measured.
        assert_eq!(datastore::round(&store, false).await.unwrap(), 0);
        drop(d0);
        store.db.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
