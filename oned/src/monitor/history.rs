//! Monitoring history: the samples `one.host.monitoring`, `one.vm.monitoring` and the pool
//! variants answer with (docs/monitoring.md, "History").
//!
//! * In memory, one ring per host and per VM, bounded by age (OpenNebula's
//!   HOST_MONITORING_EXPIRATION_TIME / VM_MONITORING_EXPIRATION_TIME) AND by count, and thinned
//!   to one sample per `history_min_spacing_seconds` so a 5 s dummy round does not keep 8,640
//!   samples per VM. Recording takes this module's own mutex, never the store's write lock.
//! * In SQL (`host_monitoring` / `vm_monitoring`), written by a flusher task every
//!   `history_flush_seconds` in ONE transaction per flush (never one write per sample), which
//!   also deletes expired rows. Reloaded at start, so a SIGKILL loses at most one interval.

use crate::config::MonitoringConfig;
use crate::db::Db;
use one_proto::agent::VmSample;
use one_proto::objects::host::HostMonitoring;
use one_proto::objects::vm::Vm;
use one_proto::template::{AttrValue, Template};
use one_proto::xml::XmlWriter;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Rows per INSERT statement (3 parameters each: far below every backend's limit).
const INSERT_ROWS: usize = 500;

/// Samples waiting for the flusher beyond this are dropped (oldest first): a database that
/// stays down must not make oned's memory grow without bound.
const MAX_PENDING: usize = 2_000_000;

/// One VM sample, compact (about 100 bytes) rather than its XML.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    pub timestamp: i64,
    /// Percent of one core.
    pub cpu: f64,
    /// KB.
    pub memory: i64,
    pub netrx: i64,
    pub nettx: i64,
    pub diskrdbytes: i64,
    pub diskwrbytes: i64,
    pub diskrdiops: i64,
    pub diskwriops: i64,
    /// DISK_SIZE = [ID, SIZE (MB)].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk_sizes: Vec<(i64, i64)>,
}

impl VmRecord {
    /// The record of a VM's MONITORING template (the dummy monitor writes it in place);
    /// None when it carries no TIMESTAMP.
    pub fn from_template(t: &Template) -> Option<VmRecord> {
        let mut r = VmRecord::default();
        for a in &t.attrs {
            match &a.value {
                AttrValue::Single(v) => {
                    let int = || v.trim().parse::<i64>().unwrap_or(0);
                    match a.name.as_str() {
                        "TIMESTAMP" => r.timestamp = int(),
                        "CPU" => r.cpu = v.trim().parse::<f64>().unwrap_or(0.0),
                        "MEMORY" => r.memory = int(),
                        "NETRX" => r.netrx = int(),
                        "NETTX" => r.nettx = int(),
                        "DISKRDBYTES" => r.diskrdbytes = int(),
                        "DISKWRBYTES" => r.diskwrbytes = int(),
                        "DISKRDIOPS" => r.diskrdiops = int(),
                        "DISKWRIOPS" => r.diskwriops = int(),
                        _ => {}
                    }
                }
                AttrValue::Vector(v) if a.name == "DISK_SIZE" => {
                    let n = |k: &str| v.get(k).and_then(|s| s.trim().parse().ok());
                    if let (Some(id), Some(size)) = (n("ID"), n("SIZE")) {
                        r.disk_sizes.push((id, size));
                    }
                }
                AttrValue::Vector(_) => {}
            }
        }
        if !r.cpu.is_finite() || r.cpu < 0.0 {
            r.cpu = 0.0;
        }
        (r.timestamp > 0).then_some(r)
    }

    /// The record of an agent's VM sample.
    pub fn from_sample(s: &VmSample, timestamp: i64) -> VmRecord {
        VmRecord {
            timestamp,
            cpu: if s.cpu.is_finite() && s.cpu >= 0.0 {
                s.cpu
            } else {
                0.0
            },
            memory: s.memory_kb,
            netrx: s.netrx,
            nettx: s.nettx,
            diskrdbytes: s.diskrdbytes,
            diskwrbytes: s.diskwrbytes,
            diskrdiops: s.diskrdiops,
            diskwriops: s.diskwriops,
            disk_sizes: s.disk_sizes.iter().map(|d| (d.id, d.size_mb)).collect(),
        }
    }

    /// `<MONITORING>` in monitoring_data.xsd's order.
    pub fn write_xml(&self, vm_id: i64, w: &mut XmlWriter) {
        w.open("MONITORING")
            .num("CPU", format_args!("{:.2}", self.cpu))
            .num("DISKRDBYTES", self.diskrdbytes)
            .num("DISKRDIOPS", self.diskrdiops)
            .num("DISKWRBYTES", self.diskwrbytes)
            .num("DISKWRIOPS", self.diskwriops);
        for (id, size) in &self.disk_sizes {
            w.open("DISK_SIZE")
                .num("ID", id)
                .num("SIZE", size)
                .close("DISK_SIZE");
        }
        w.num("ID", vm_id)
            .num("MEMORY", self.memory)
            .num("NETRX", self.netrx)
            .num("NETTX", self.nettx)
            .num("TIMESTAMP", self.timestamp)
            .close("MONITORING");
    }
}

/// Retention, from `[monitoring]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retention {
    pub host_expiration: i64,
    pub vm_expiration: i64,
    pub max_samples: usize,
    pub min_spacing: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention::from_config(&MonitoringConfig::default())
    }
}

impl Retention {
    pub fn from_config(c: &MonitoringConfig) -> Retention {
        Retention {
            host_expiration: c.host_monitoring_expiration_seconds.max(0),
            vm_expiration: c.vm_monitoring_expiration_seconds.max(0),
            max_samples: c.history_max_samples,
            min_spacing: c.history_min_spacing_seconds.max(0),
        }
    }
}

/// Something with a time stamp.
trait Stamped {
    fn stamp(&self) -> i64;
}
impl Stamped for HostMonitoring {
    fn stamp(&self) -> i64 {
        self.timestamp
    }
}
impl Stamped for VmRecord {
    fn stamp(&self) -> i64 {
        self.timestamp
    }
}

/// Adds `s` to a ring unless it is older than, or closer than `spacing` to, the newest
/// sample; then drops what is older than `oldest` or beyond `max`. Returns whether `s` was
/// kept.
fn push<T: Stamped>(ring: &mut VecDeque<T>, s: T, spacing: i64, oldest: i64, max: usize) -> bool {
    if let Some(last) = ring.back()
        && s.stamp() < last.stamp().saturating_add(spacing.max(1))
    {
        return false;
    }
    if s.stamp() < oldest || max == 0 {
        return false;
    }
    ring.push_back(s);
    trim(ring, oldest, max);
    true
}

fn trim<T: Stamped>(ring: &mut VecDeque<T>, oldest: i64, max: usize) {
    while ring.front().is_some_and(|f| f.stamp() < oldest) || ring.len() > max {
        ring.pop_front();
    }
}

/// The samples of a ring a `seconds` argument selects: 0 the last one, -1 (any negative) all,
/// N those of the last N seconds (OpenNebula's `dump_monitoring`).
fn select<T: Stamped>(ring: &VecDeque<T>, seconds: i64, now: i64) -> impl Iterator<Item = &T> {
    let skip = match seconds {
        0 => ring.len().saturating_sub(1),
        s if s < 0 => 0,
        s => ring.partition_point(|x| x.stamp() <= now - s),
    };
    ring.iter().skip(skip)
}

#[derive(Default)]
struct Inner {
    retention: Retention,
    hosts: HashMap<i64, VecDeque<HostMonitoring>>,
    vms: HashMap<i64, VecDeque<VmRecord>>,
    pending_hosts: Vec<(i64, HostMonitoring)>,
    pending_vms: Vec<(i64, VmRecord)>,
}

/// Counters for /metrics.
#[derive(Default)]
pub struct Counters {
    pub host_samples: AtomicU64,
    pub vm_samples: AtomicU64,
    /// Samples kept in the history (the others were closer than the spacing).
    pub recorded: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_errors: AtomicU64,
    pub flushed_rows: AtomicU64,
    pub flush_micros_total: AtomicU64,
    pub last_flush_micros: AtomicU64,
    pub dropped: AtomicU64,
}

/// The history of every host and VM.
#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
    pub counters: Counters,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("monitoring history: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("monitoring history: {0}")]
    Encode(#[from] serde_json::Error),
}

impl History {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn configure(&self, r: Retention) {
        self.lock().retention = r;
    }

    pub fn retention(&self) -> Retention {
        self.lock().retention
    }

    /// Records host samples (one lock for all of them).
    pub fn record_hosts(&self, samples: impl IntoIterator<Item = (i64, HostMonitoring)>) {
        let mut g = self.lock();
        let Inner {
            retention: r,
            hosts,
            pending_hosts,
            ..
        } = &mut *g;
        let (mut seen, mut kept) = (0, 0);
        for (id, m) in samples {
            seen += 1;
            let oldest = m.timestamp - r.host_expiration;
            if push(
                hosts.entry(id).or_default(),
                m.clone(),
                r.min_spacing,
                oldest,
                r.max_samples,
            ) {
                pending_hosts.push((id, m));
                kept += 1;
            }
        }
        bound_pending(pending_hosts, &self.counters);
        drop(g);
        self.counters
            .host_samples
            .fetch_add(seen, Ordering::Relaxed);
        self.counters.recorded.fetch_add(kept, Ordering::Relaxed);
    }

    /// Whether a VM sample stamped `ts` would be kept (so callers skip building it).
    pub fn wants_vm(&self, id: i64, ts: i64) -> bool {
        let g = self.lock();
        let spacing = g.retention.min_spacing.max(1);
        g.vms
            .get(&id)
            .and_then(|r| r.back())
            .is_none_or(|l| ts >= l.timestamp.saturating_add(spacing))
    }

    /// Records VM samples (one lock for all of them).
    pub fn record_vms(&self, samples: impl IntoIterator<Item = (i64, VmRecord)>) {
        let mut g = self.lock();
        let Inner {
            retention: r,
            vms,
            pending_vms,
            ..
        } = &mut *g;
        let (mut seen, mut kept) = (0, 0);
        for (id, s) in samples {
            seen += 1;
            let oldest = s.timestamp - r.vm_expiration;
            if push(
                vms.entry(id).or_default(),
                s.clone(),
                r.min_spacing,
                oldest,
                r.max_samples,
            ) {
                pending_vms.push((id, s));
                kept += 1;
            }
        }
        bound_pending(pending_vms, &self.counters);
        drop(g);
        self.counters.vm_samples.fetch_add(seen, Ordering::Relaxed);
        self.counters.recorded.fetch_add(kept, Ordering::Relaxed);
    }

    /// Writes the `MONITORING` records of host `id` selected by `seconds` ([`select`]).
    pub fn write_host(&self, id: i64, seconds: i64, now: i64, w: &mut XmlWriter) {
        let g = self.lock();
        if let Some(ring) = g.hosts.get(&id) {
            for m in select(ring, seconds, now) {
                m.write_xml(id, w);
            }
        }
    }

    /// Writes the `MONITORING` records of VM `id` selected by `seconds` ([`select`]).
    pub fn write_vm(&self, id: i64, seconds: i64, now: i64, w: &mut XmlWriter) {
        let g = self.lock();
        if let Some(ring) = g.vms.get(&id) {
            for s in select(ring, seconds, now) {
                s.write_xml(id, w);
            }
        }
    }

    /// Samples held: (hosts, VMs).
    pub fn len(&self) -> (usize, usize) {
        let g = self.lock();
        (
            g.hosts.values().map(VecDeque::len).sum(),
            g.vms.values().map(VecDeque::len).sum(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    /// Drops expired samples and the rings of objects that no longer exist.
    pub fn prune(&self, now: i64, hosts: &HashSet<i64>, vms: &HashSet<i64>) {
        let mut g = self.lock();
        let r = g.retention;
        g.hosts.retain(|id, ring| {
            trim(ring, now - r.host_expiration, r.max_samples);
            hosts.contains(id) && !ring.is_empty()
        });
        g.vms.retain(|id, ring| {
            trim(ring, now - r.vm_expiration, r.max_samples);
            vms.contains(id) && !ring.is_empty()
        });
    }

    /// Writes the samples recorded since the last flush and deletes expired rows, in one
    /// transaction. On failure the samples are kept for the next flush. Returns the number
    /// of rows written.
    pub async fn flush(&self, db: &Db, now: i64) -> Result<usize, HistoryError> {
        let t = Instant::now();
        let (hosts, vms, r) = {
            let mut g = self.lock();
            (
                std::mem::take(&mut g.pending_hosts),
                std::mem::take(&mut g.pending_vms),
                g.retention,
            )
        };
        let res = write_rows(db, &hosts, &vms, now, r).await;
        let n = hosts.len() + vms.len();
        let c = &self.counters;
        match res {
            Ok(()) => {
                let us = t.elapsed().as_micros() as u64;
                c.flushes.fetch_add(1, Ordering::Relaxed);
                c.flushed_rows.fetch_add(n as u64, Ordering::Relaxed);
                c.flush_micros_total.fetch_add(us, Ordering::Relaxed);
                c.last_flush_micros.store(us, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                c.flush_errors.fetch_add(1, Ordering::Relaxed);
                // Put them back in front of what came in meanwhile, order kept.
                let mut g = self.lock();
                let later = std::mem::replace(&mut g.pending_hosts, hosts);
                g.pending_hosts.extend(later);
                let later = std::mem::replace(&mut g.pending_vms, vms);
                g.pending_vms.extend(later);
                bound_pending(&mut g.pending_hosts, c);
                bound_pending(&mut g.pending_vms, c);
                Err(e)
            }
        }
    }

    /// Loads the stored samples that are not expired (the newest `max_samples` per object),
    /// in front of anything recorded since start. Returns (host, VM) samples loaded.
    pub async fn load(&self, db: &Db, now: i64) -> Result<(usize, usize), HistoryError> {
        let r = self.retention();
        let pool = db.pool();
        let rows = sqlx::query(
            "SELECT hid, last_mon_time, body FROM host_monitoring WHERE last_mon_time >= $1 \
             ORDER BY hid, last_mon_time",
        )
        .bind(now - r.host_expiration)
        .fetch_all(pool)
        .await?;
        let mut hosts: HashMap<i64, VecDeque<HostMonitoring>> = HashMap::new();
        for row in rows {
            let (id, ts, body): (i64, i64, String) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let mut m: HostMonitoring = serde_json::from_str(&body)?;
            m.timestamp = ts;
            hosts.entry(id).or_default().push_back(m);
        }
        let rows = sqlx::query(
            "SELECT vmid, last_poll, body FROM vm_monitoring WHERE last_poll >= $1 \
             ORDER BY vmid, last_poll",
        )
        .bind(now - r.vm_expiration)
        .fetch_all(pool)
        .await?;
        let mut vms: HashMap<i64, VecDeque<VmRecord>> = HashMap::new();
        for row in rows {
            let (id, ts, body): (i64, i64, String) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let mut s: VmRecord = serde_json::from_str(&body)?;
            s.timestamp = ts;
            vms.entry(id).or_default().push_back(s);
        }
        let mut g = self.lock();
        let counts = (
            merge(&mut g.hosts, hosts, r.max_samples),
            merge(&mut g.vms, vms, r.max_samples),
        );
        Ok(counts)
    }
}

/// Puts loaded rings in front of the live ones (only what is older than their first sample).
fn merge<T: Stamped>(
    live: &mut HashMap<i64, VecDeque<T>>,
    loaded: HashMap<i64, VecDeque<T>>,
    max: usize,
) -> usize {
    let mut n = 0;
    for (id, mut old) in loaded {
        let ring = live.entry(id).or_default();
        if let Some(first) = ring.front().map(Stamped::stamp) {
            old.retain(|s| s.stamp() < first);
        }
        n += old.len();
        old.append(ring);
        while old.len() > max {
            old.pop_front();
        }
        *ring = old;
    }
    n
}

fn bound_pending<T>(p: &mut Vec<T>, c: &Counters) {
    if p.len() > MAX_PENDING {
        let extra = p.len() - MAX_PENDING;
        p.drain(..extra);
        c.dropped.fetch_add(extra as u64, Ordering::Relaxed);
        tracing::warn!(
            dropped = extra,
            "monitoring history: samples not yet stored dropped"
        );
    }
}

async fn write_rows(
    db: &Db,
    hosts: &[(i64, HostMonitoring)],
    vms: &[(i64, VmRecord)],
    now: i64,
    r: Retention,
) -> Result<(), HistoryError> {
    let mut tx = db.pool().begin().await?;
    for chunk in hosts.chunks(INSERT_ROWS) {
        let bodies = chunk
            .iter()
            .map(|(_, m)| serde_json::to_string(m))
            .collect::<Result<Vec<_>, _>>()?;
        insert(
            &mut tx,
            "host_monitoring",
            "hid",
            "last_mon_time",
            chunk.iter().map(|(id, m)| (*id, m.timestamp)),
            bodies,
        )
        .await?;
    }
    for chunk in vms.chunks(INSERT_ROWS) {
        let bodies = chunk
            .iter()
            .map(|(_, s)| serde_json::to_string(s))
            .collect::<Result<Vec<_>, _>>()?;
        insert(
            &mut tx,
            "vm_monitoring",
            "vmid",
            "last_poll",
            chunk.iter().map(|(id, s)| (*id, s.timestamp)),
            bodies,
        )
        .await?;
    }
    sqlx::query("DELETE FROM host_monitoring WHERE last_mon_time < $1")
        .bind(now - r.host_expiration)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM vm_monitoring WHERE last_poll < $1")
        .bind(now - r.vm_expiration)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    table: &str,
    id_col: &str,
    ts_col: &str,
    keys: impl Iterator<Item = (i64, i64)>,
    bodies: Vec<String>,
) -> Result<(), sqlx::Error> {
    let keys: Vec<(i64, i64)> = keys.collect();
    let mut sql = format!("INSERT INTO {table} ({id_col}, {ts_col}, body) VALUES ");
    for i in 0..keys.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3));
    }
    sql.push_str(" ON CONFLICT DO NOTHING");
    // Built from constant table names and numbered placeholders only.
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for ((id, ts), body) in keys.into_iter().zip(bodies) {
        q = q.bind(id).bind(ts).bind(body);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

/// The VM samples of a dummy round: those of `vms` the history wants (spacing).
pub fn vm_records<'a>(h: &History, vms: impl Iterator<Item = &'a Vm>) -> Vec<(i64, VmRecord)> {
    vms.filter_map(|vm| {
        let ts = vm.monitoring.get("TIMESTAMP")?.parse().ok()?;
        if !h.wants_vm(vm.header.id, ts) {
            return None;
        }
        VmRecord::from_template(&vm.monitoring).map(|r| (vm.header.id, r))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hm(ts: i64) -> HostMonitoring {
        HostMonitoring {
            timestamp: ts,
            used_cpu: ts,
            ..HostMonitoring::default()
        }
    }

    fn ret(max: usize, spacing: i64, exp: i64) -> Retention {
        Retention {
            host_expiration: exp,
            vm_expiration: exp,
            max_samples: max,
            min_spacing: spacing,
        }
    }

    #[test]
    fn ring_is_bounded_by_count_age_and_spacing() {
        let h = History::default();
        h.configure(ret(3, 10, 100));
        h.record_hosts((0..10).map(|i| (1, hm(1000 + i * 10))));
        let g = h.lock();
        let stamps: Vec<i64> = g.hosts[&1].iter().map(|m| m.timestamp).collect();
        assert_eq!(stamps, [1070, 1080, 1090], "count bound keeps the newest");
        drop(g);
        // Closer than the spacing, or older than the newest: not kept.
        h.record_hosts([(1, hm(1095)), (1, hm(1050))]);
        assert_eq!(h.len().0, 3);
        // Age: a sample 200 s later expires everything older than 100 s before it.
        h.record_hosts([(1, hm(1290))]);
        let g = h.lock();
        let stamps: Vec<i64> = g.hosts[&1].iter().map(|m| m.timestamp).collect();
        assert_eq!(stamps, [1290]);
        assert_eq!(
            g.pending_hosts.len(),
            10 + 1,
            "every kept sample waits for the flusher"
        );
        drop(g);
        assert_eq!(h.counters.host_samples.load(Ordering::Relaxed), 13);
    }

    #[test]
    fn prune_expires_and_forgets_deleted_objects() {
        let h = History::default();
        h.configure(ret(100, 1, 50));
        h.record_hosts([(1, hm(100)), (1, hm(140)), (2, hm(140))]);
        h.record_vms([(
            7,
            VmRecord {
                timestamp: 100,
                ..VmRecord::default()
            },
        )]);
        h.prune(160, &HashSet::from([1]), &HashSet::from([7]));
        let g = h.lock();
        assert_eq!(g.hosts[&1].len(), 1, "the sample of 100 expired at 160");
        assert!(!g.hosts.contains_key(&2), "host 2 is gone");
        assert!(g.vms.is_empty(), "VM 7's only sample expired");
    }

    #[test]
    fn select_follows_opennebula_seconds() {
        let ring: VecDeque<HostMonitoring> = [100, 200, 300].into_iter().map(hm).collect();
        let ts = |s: i64| {
            select(&ring, s, 310)
                .map(|m| m.timestamp)
                .collect::<Vec<_>>()
        };
        assert_eq!(ts(0), [300]);
        assert_eq!(ts(-1), [100, 200, 300]);
        assert_eq!(ts(150), [200, 300]);
        assert_eq!(ts(5), Vec::<i64>::new());
        assert!(
            select(&VecDeque::<HostMonitoring>::new(), 0, 1)
                .next()
                .is_none()
        );
    }

    #[test]
    fn vm_record_from_template_and_xml() {
        let t = Template::parse(
            "CPU=\"12.5\"\nMEMORY=\"1024\"\nNETRX=\"7\"\nTIMESTAMP=\"99\"\nDISK_SIZE=[ID=\"0\",SIZE=\"20\"]",
        )
        .unwrap();
        let r = VmRecord::from_template(&t).unwrap();
        assert_eq!((r.cpu, r.memory, r.netrx, r.timestamp), (12.5, 1024, 7, 99));
        assert_eq!(r.disk_sizes, [(0, 20)]);
        let mut w = XmlWriter::new();
        r.write_xml(3, &mut w);
        let xml = w.finish();
        assert!(
            xml.starts_with("<MONITORING><CPU>12.50</CPU><DISKRDBYTES>0</DISKRDBYTES>"),
            "{xml}"
        );
        assert!(
            xml.contains("<DISK_SIZE><ID>0</ID><SIZE>20</SIZE></DISK_SIZE><ID>3</ID>"),
            "{xml}"
        );
        assert!(
            xml.ends_with("<TIMESTAMP>99</TIMESTAMP></MONITORING>"),
            "{xml}"
        );
        assert!(VmRecord::from_template(&Template::new()).is_none());
    }

    #[tokio::test]
    async fn flush_writes_batches_and_load_restores() {
        let dir = std::env::temp_dir().join(format!("oned-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/one.db?mode=rwc", dir.display());
        let db = Db::open(&url, false).await.unwrap();
        let h = History::default();
        h.configure(ret(1000, 1, 1000));
        // More rows than one INSERT holds.
        h.record_hosts((0..1200).map(|i| (i % 3, hm(10_000 + i))));
        h.record_vms([(
            5,
            VmRecord {
                timestamp: 10_500,
                cpu: 3.5,
                ..VmRecord::default()
            },
        )]);
        assert_eq!(h.flush(&db, 10_600).await.unwrap(), 1201);
        assert_eq!(h.flush(&db, 10_600).await.unwrap(), 0, "nothing new");
        // A later flush deletes expired rows (older than 11_100 - 1000).
        h.flush(&db, 11_100).await.unwrap();

        let again = History::default();
        again.configure(ret(1000, 1, 1000));
        again.record_hosts([(0, hm(20_000))]);
        let (hosts, vms) = again.load(&db, 11_100).await.unwrap();
        assert_eq!((hosts, vms), (1200 - 100, 1));
        {
            let g = again.lock();
            let ring = &g.hosts[&0];
            assert_eq!(
                ring.back().unwrap().timestamp,
                20_000,
                "live samples stay last"
            );
            assert_eq!(
                ring.front().unwrap().timestamp,
                10_102,
                "10_000 + a multiple of 3, not expired"
            );
            assert_eq!(g.vms[&5][0].cpu, 3.5);
        }
        db.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Cost of recording 1,000 hosts' samples (the agent ingest path): printed, and bounded
    /// loosely so a regression by an order of magnitude fails.
    #[test]
    fn ingest_cost_of_1000_hosts() {
        let h = History::default();
        h.configure(ret(240, 1, 43_200));
        let rounds = 50;
        let t = Instant::now();
        for round in 0..rounds {
            for id in 0..1000 {
                h.record_hosts([(id, hm(100_000 + round * 10))]);
            }
        }
        let per_round = t.elapsed() / rounds as u32;
        eprintln!("history: 1,000 host samples recorded one by one in {per_round:?}");
        assert!(per_round < Duration::from_millis(200), "{per_round:?}");
    }
}
