//! What an agent's pushes and a session's fate do to hosts and VMs in the store.
//!
//! * Host capacity (`system`) and state changes are real changes: one transaction, and only
//!   when something differs from what the host already has.
//! * Usage samples (`usage`, datastores, VM samples) change every period: written in memory
//!   only ([`Store::update_volatile`]), they reach SQL with the object's next real change, as
//!   the dummy monitor's do (docs/monitoring.md).
//! * Domain states move VMs as OpenNebula's monitor does (`lcm::vm_seen`), all the VMs of one
//!   push in one transaction.

use crate::auth::now_secs;
use crate::lcm::{self, Seen};
use crate::monitor::dummy::{failure_message, keeps_state, reservation, reserved_max};
use crate::monitor::sample::set_datastores;
use crate::store::{State, Store, StoreError};
use one_proto::agent::{
    DomainState, DomainStates, HostMonitoring, HostSystem, VmMonitoring, VmSample,
};
use one_proto::objects::host::Host;
use one_proto::objects::vm::Vm;
use one_proto::state::{HostState, LcmState, VmState};
use one_proto::template::{AttrValue, Attribute, Template, Vector};
use one_proto::time::ctime as log_time;
use std::collections::HashSet;
use std::sync::Arc;

/// OpenNebula's reading of a domain state (fact sheet §8: paused → SUSPENDED, shut off or
/// missing → POWEROFF, crashed → UNKNOWN).
pub fn seen(state: DomainState) -> Seen {
    match state {
        DomainState::Running => Seen::Running,
        DomainState::Paused => Seen::Suspended,
        DomainState::Shutoff | DomainState::Missing => Seen::Missing,
        DomainState::Crashed => Seen::Failure,
    }
}

/// Whether `lcm::vm_seen` would move a VM in this state (kept in step with it), so that a
/// push that changes nothing costs no transaction.
fn reacts(vm: &Vm, seen: Seen) -> bool {
    let running = vm.state == VmState::Active && vm.lcm_state == LcmState::Running;
    let unknown = vm.state == VmState::Active && vm.lcm_state == LcmState::Unknown;
    match seen {
        Seen::Running => unknown || vm.state == VmState::Poweroff,
        Seen::Missing | Seen::Suspended => running || unknown,
        Seen::Failure => running,
    }
}

/// Whether VM `vm` is placed on host `host_id` now (its last history record).
fn placed_on(vm: &Vm, host_id: i64) -> bool {
    vm.history.last().is_some_and(|h| h.hid == host_id)
}

/// The host goes to ERROR (a DISABLED one keeps its state) with `reason` in TEMPLATE/ERROR,
/// and its RUNNING VMs to UNKNOWN. Writes only what differs: calling it again with the same
/// reason costs no transaction. Returns whether anything changed.
pub async fn host_error(store: &Store, host_id: i64, reason: &str) -> Result<bool, StoreError> {
    let needed = {
        let st = store.read();
        let Some(h) = st.hosts.get(host_id) else {
            return Ok(false);
        };
        if h.state == HostState::Offline {
            return Ok(false);
        }
        let msg = failure_message(h, reason);
        let state_changes = !keeps_state(h.state) && h.state != HostState::Error;
        let error_current = h.template.get("ERROR").is_some_and(|e| e.ends_with(&msg));
        state_changes || !error_current || has_running(&st, h)
    };
    if !needed {
        return Ok(false);
    }
    let mut tx = store.begin().await;
    let Some(mut h) = tx.get::<Host>(host_id) else {
        return Ok(false);
    };
    if h.state == HostState::Offline {
        return Ok(false);
    }
    let msg = failure_message(&h, reason);
    if !h.template.get("ERROR").is_some_and(|e| e.ends_with(&msg)) {
        h.template
            .set("ERROR", format!("{} : {}", log_time(now_secs()), msg));
    }
    if !keeps_state(h.state) && h.state != HostState::Error {
        tracing::warn!(host = host_id, from = %h.state, error = %reason, "host in error");
        h.prev_state = h.state;
        h.state = HostState::Error;
    }
    tx.put(h);
    lcm::host_failed(&mut tx, host_id);
    tx.commit().await?;
    Ok(true)
}

fn has_running(st: &State, h: &Host) -> bool {
    h.vms.iter().any(|id| {
        st.vms
            .get(*id)
            .is_some_and(|vm| vm.state == VmState::Active && vm.lcm_state == LcmState::Running)
    })
}

/// Writes a host's probe attributes and HOST_SHARE capacity from `sys` (when given), MAX_*
/// from the totals and RESERVED_* (the host's, else its cluster's, as the dummy monitor),
/// and, when `healthy`, the state MONITORED (DISABLED hosts keep theirs) without ERROR.
/// Returns whether the document changed.
pub fn apply_system(
    h: &mut Host,
    sys: Option<&HostSystem>,
    cluster: Option<&Template>,
    healthy: bool,
) -> bool {
    let mut changed = false;
    if let Some(sys) = sys {
        for (k, v) in sys.probe_attributes() {
            if h.template.get(&k) != Some(v.as_str()) {
                h.template.set(&k, v);
                changed = true;
            }
        }
        if h.share.total_cpu != sys.totalcpu || h.share.total_mem != sys.totalmemory {
            h.share.total_cpu = sys.totalcpu;
            h.share.total_mem = sys.totalmemory;
            changed = true;
        }
    }
    let max_cpu = reserved_max(
        h.share.total_cpu,
        reservation(h.template.get("RESERVED_CPU"), cluster, "RESERVED_CPU"),
    );
    let max_mem = reserved_max(
        h.share.total_mem,
        reservation(h.template.get("RESERVED_MEM"), cluster, "RESERVED_MEM"),
    );
    if h.share.max_cpu != max_cpu || h.share.max_mem != max_mem {
        h.share.max_cpu = max_cpu;
        h.share.max_mem = max_mem;
        changed = true;
    }
    // Monitored means: a healthy session that has told the host's capacity.
    if healthy && h.share.total_cpu > 0 {
        if !keeps_state(h.state) && h.state != HostState::Monitored {
            h.prev_state = h.state;
            h.state = HostState::Monitored;
            changed = true;
        }
        // A successful monitoring clears the last error (OpenNebula's Host::update_info).
        if h.template.contains("ERROR") {
            h.template.remove("ERROR");
            changed = true;
        }
    }
    changed
}

/// Writes the capabilities an agent reported into the host's TEMPLATE; answers those that
/// changed it.
pub fn apply_capabilities<'a>(
    h: &mut Host,
    caps: Option<&'a [one_proto::agent::Capability]>,
) -> Vec<&'a one_proto::agent::Capability> {
    caps.unwrap_or_default()
        .iter()
        .filter(|c| crate::ops::capability::write(&mut h.template, c))
        .collect()
}

/// A `host_monitoring` push (or, with every part `None`, the news that the session is
/// healthy). `healthy`: the session passed its onboarding checks.
pub async fn host_monitoring(
    store: &Store,
    host_id: i64,
    m: &HostMonitoring,
    healthy: bool,
) -> Result<(), StoreError> {
    let needs_txn = {
        let st = store.read();
        let Some(h) = st.hosts.get(host_id) else {
            return Ok(());
        };
        if h.state == HostState::Offline {
            return Ok(());
        }
        let cluster = st.clusters.get(h.cluster_id).map(|c| &c.template);
        // Decided on a copy of the part that changes; hosts rarely differ, so this is cheap
        // next to a transaction.
        let mut probe = Host::clone(h);
        let sys = apply_system(&mut probe, m.system.as_ref(), cluster, healthy);
        !apply_capabilities(&mut probe, m.capabilities.as_deref()).is_empty() || sys
    };
    if needs_txn {
        let mut tx = store.begin().await;
        if let Some(mut h) = tx.get::<Host>(host_id)
            && h.state != HostState::Offline
        {
            let cluster = tx
                .committed()
                .clusters
                .get(h.cluster_id)
                .map(|c| c.template.clone());
            let from = h.state;
            let sys = apply_system(&mut h, m.system.as_ref(), cluster.as_ref(), healthy);
            let caps = apply_capabilities(&mut h, m.capabilities.as_deref());
            if !caps.is_empty() || sys {
                let to = h.state;
                tx.put(h);
                tx.commit().await?;
                // Said once, when stored (not by the read-only look above).
                for c in caps {
                    tracing::info!(host = host_id, capability = %c.name, available = ?c.available, missing = ?c.missing, "host capability");
                }
                if from != to {
                    tracing::info!(host = host_id, from = %from, to = %to, "host monitored");
                }
            }
        }
    }
    if m.usage.is_none() && m.datastores.is_none() {
        return Ok(());
    }
    let stamp = if m.timestamp > 0 {
        m.timestamp
    } else {
        now_secs()
    };
    let recorded = store
        .update_volatile(|st| {
            let Some(h) = st.hosts.map.get_mut(&host_id) else {
                return false;
            };
            if h.state == HostState::Offline {
                return false;
            }
            let h = Arc::make_mut(h);
            if let Some(u) = &m.usage {
                h.monitoring = Some(u.to_monitoring(stamp));
            }
            if let Some(ds) = &m.datastores {
                set_datastores(&mut h.share, ds);
            }
            true
        })
        .await;
    // The history has its own lock: recorded after the store's write lock is released.
    if recorded && let Some(u) = &m.usage {
        store
            .history
            .record_hosts([(host_id, u.to_monitoring(stamp))]);
    }
    Ok(())
}

/// VM MONITORING from one sample, attributes in vm.xsd's order (the writer sorts by name,
/// which is the same order).
pub fn vm_monitoring_template(s: &VmSample, timestamp: i64) -> Template {
    let single = |name: &str, v: String| Attribute {
        name: name.to_string(),
        value: AttrValue::Single(v),
    };
    let cpu = if s.cpu.is_finite() && s.cpu >= 0.0 {
        s.cpu
    } else {
        0.0
    };
    let mut attrs = vec![
        single("CPU", format!("{:.2}", cpu)),
        single("DISKRDBYTES", s.diskrdbytes.to_string()),
        single("DISKRDIOPS", s.diskrdiops.to_string()),
        single("DISKWRBYTES", s.diskwrbytes.to_string()),
        single("DISKWRIOPS", s.diskwriops.to_string()),
    ];
    for d in &s.disk_sizes {
        let mut v = Vector::new();
        v.set("ID", d.id.to_string());
        v.set("SIZE", d.size_mb.to_string());
        attrs.push(Attribute {
            name: "DISK_SIZE".into(),
            value: AttrValue::Vector(v),
        });
    }
    attrs.extend([
        single("ID", s.id.to_string()),
        single("MEMORY", s.memory_kb.to_string()),
        single("NETRX", s.netrx.to_string()),
        single("NETTX", s.nettx.to_string()),
        single("TIMESTAMP", timestamp.to_string()),
    ]);
    Template { attrs }
}

/// A `vm_monitoring` push: each sample of a VM placed on this host becomes its MONITORING
/// (in memory only). Returns the number of VMs written.
pub async fn vm_monitoring(store: &Store, host_id: i64, m: &VmMonitoring) -> usize {
    if m.vms.is_empty() {
        return 0;
    }
    let now = now_secs();
    let stamp = if m.timestamp > 0 { m.timestamp } else { now };
    let written: Vec<&VmSample> = store
        .update_volatile(|st| {
            let mut written = Vec::with_capacity(m.vms.len());
            for s in &m.vms {
                let Some(vm) = st.vms.map.get_mut(&s.id) else {
                    continue;
                };
                if !placed_on(vm, host_id) {
                    continue;
                }
                let vm = Arc::make_mut(vm);
                vm.monitoring = vm_monitoring_template(s, stamp);
                vm.last_poll = now;
                written.push(s);
            }
            written
        })
        .await;
    // The history has its own lock: recorded after the store's write lock is released.
    store.history.record_vms(written.iter().map(|s| {
        (
            s.id,
            crate::monitor::history::VmRecord::from_sample(s, stamp),
        )
    }));
    written.len()
}

/// A `domain_states` push: each listed VM placed on this host is seen in its domain's
/// state; with a `full` report, every VM placed here that is not listed is missing, except
/// those `fresh` names (an operation just answered for them: the report may predate it).
/// Returns the number of VMs that changed state.
pub async fn domain_states(
    store: &Store,
    host_id: i64,
    d: &DomainStates,
    fresh: impl Fn(i64) -> bool,
) -> Result<usize, StoreError> {
    let changes: Vec<(i64, Seen)> = {
        let st = store.read();
        let mut out = Vec::new();
        let mut listed = HashSet::new();
        for dom in &d.domains {
            if dom.vm_id < 0 {
                continue; // not this cloud's
            }
            listed.insert(dom.vm_id);
            let s = seen(dom.state);
            if let Some(vm) = st.vms.get(dom.vm_id)
                && placed_on(vm, host_id)
                && reacts(vm, s)
            {
                out.push((dom.vm_id, s));
            }
        }
        if d.full
            && let Some(h) = st.hosts.get(host_id)
        {
            for id in &h.vms {
                if listed.contains(id) || fresh(*id) {
                    continue;
                }
                if let Some(vm) = st.vms.get(*id)
                    && placed_on(vm, host_id)
                    && reacts(vm, Seen::Missing)
                {
                    out.push((*id, Seen::Missing));
                }
            }
        }
        out
    };
    if changes.is_empty() {
        return Ok(0);
    }
    let mut tx = store.begin().await;
    for (id, s) in &changes {
        lcm::vm_seen(&mut tx, *id, *s);
    }
    tx.commit().await?;
    Ok(changes.len())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::db::Db;
    use crate::lcm::tests_support;
    use one_proto::agent::{DiskSize, Domain, HostUsage};
    use one_proto::objects::cluster::Cluster;
    use one_proto::objects::host::{HostDs, HostShare};
    use one_proto::objects::vm::History;

    pub(crate) async fn open(dir: &std::path::Path) -> Store {
        let url = format!("sqlite://{}/one.db?mode=rwc", dir.display());
        Store::load(Db::open(&url, false).await.unwrap())
            .await
            .unwrap()
    }

    pub(crate) fn host(id: i64, name: &str) -> Host {
        Host {
            id,
            name: name.into(),
            state: HostState::Init,
            prev_state: HostState::Init,
            im_mad: "kvm".into(),
            vm_mad: "kvm".into(),
            cluster_id: 0,
            cluster: "default".into(),
            share: HostShare::default(),
            vms: vec![],
            template: Template::new(),
            monitoring: None,
        }
    }

    pub(crate) fn vm_on(id: i64, host_id: i64, state: VmState, lcm: LcmState) -> Vm {
        let mut vm = tests_support::vm(id);
        vm.state = state;
        vm.lcm_state = lcm;
        vm.history.push(History {
            oid: id,
            seq: 0,
            hostname: format!("h{host_id}"),
            hid: host_id,
            ..History::default()
        });
        vm
    }

    pub(crate) fn system() -> HostSystem {
        HostSystem {
            hypervisor: "kvm".into(),
            totalcpu: 200,
            cpuspeed: 2400,
            totalmemory: 8_000_000,
            arch: "x86_64".into(),
            modelname: "Test CPU".into(),
            hostname: "node1".into(),
            extra: Default::default(),
        }
    }

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("oned-ingest-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn domain_states_map_as_opennebula() {
        assert_eq!(seen(DomainState::Running), Seen::Running);
        assert_eq!(seen(DomainState::Paused), Seen::Suspended);
        assert_eq!(seen(DomainState::Shutoff), Seen::Missing);
        assert_eq!(seen(DomainState::Missing), Seen::Missing);
        assert_eq!(seen(DomainState::Crashed), Seen::Failure);
    }

    #[test]
    fn system_sets_probe_capacity_reservation_and_state() {
        let mut h = host(1, "node1");
        h.template.set("RESERVED_MEM", "10%");
        let cluster = Template::parse("RESERVED_CPU=\"50\"").unwrap();
        // Not healthy yet (e.g. onboarding failed): capacity, no state change.
        assert!(apply_system(&mut h, Some(&system()), Some(&cluster), false));
        assert_eq!(h.state, HostState::Init);
        assert_eq!(h.template.get("TOTALCPU"), Some("200"));
        assert_eq!(h.template.get("HYPERVISOR"), Some("kvm"));
        assert_eq!((h.share.total_cpu, h.share.max_cpu), (200, 150));
        assert_eq!((h.share.total_mem, h.share.max_mem), (8_000_000, 7_200_000));
        h.template.set("ERROR", "old");
        assert!(apply_system(&mut h, None, Some(&cluster), true));
        assert_eq!(
            (h.state, h.prev_state),
            (HostState::Monitored, HostState::Init)
        );
        assert!(!h.template.contains("ERROR"));
        // The same again: nothing to write.
        assert!(!apply_system(&mut h, Some(&system()), Some(&cluster), true));
        // A disabled host keeps its state.
        h.state = HostState::Disabled;
        let mut s = system();
        s.totalcpu = 400;
        assert!(apply_system(&mut h, Some(&s), None, true));
        assert_eq!((h.state, h.share.max_cpu), (HostState::Disabled, 400));
    }

    #[test]
    fn vm_sample_is_xsd_ordered() {
        let s = VmSample {
            id: 7,
            deploy_id: "u".into(),
            cpu: 12.345,
            memory_kb: 1024,
            netrx: 1,
            nettx: 2,
            diskrdbytes: 3,
            diskwrbytes: 4,
            diskrdiops: 5,
            diskwriops: 6,
            disk_sizes: vec![DiskSize { id: 0, size_mb: 10 }],
        };
        let xml = vm_monitoring_template(&s, 99).to_xml("MONITORING");
        assert_eq!(
            xml,
            "<MONITORING><CPU>12.35</CPU><DISKRDBYTES>3</DISKRDBYTES><DISKRDIOPS>5</DISKRDIOPS>\
             <DISKWRBYTES>4</DISKWRBYTES><DISKWRIOPS>6</DISKWRIOPS><DISK_SIZE><ID>0</ID>\
             <SIZE>10</SIZE></DISK_SIZE><ID>7</ID><MEMORY>1024</MEMORY><NETRX>1</NETRX>\
             <NETTX>2</NETTX><TIMESTAMP>99</TIMESTAMP></MONITORING>"
        );
        let nan = VmSample { cpu: f64::NAN, ..s };
        assert_eq!(vm_monitoring_template(&nan, 1).get("CPU"), Some("0.00"));
    }

    #[tokio::test]
    async fn pushes_reach_the_store_and_samples_stay_in_memory() {
        let dir = tmpdir("push");
        let store = open(&dir).await;
        let mut tx = store.begin().await;
        tx.put(Cluster {
            id: 0,
            name: "default".into(),
            hosts: vec![1],
            datastores: vec![],
            vnets: vec![],
            template: Template::new(),
        });
        let mut h = host(1, "node1");
        h.vms = vec![10, 11, 12, 13];
        tx.put(h);
        tx.put(vm_on(10, 1, VmState::Active, LcmState::Running));
        tx.put(vm_on(11, 1, VmState::Active, LcmState::Unknown));
        tx.put(vm_on(12, 1, VmState::Active, LcmState::Boot));
        tx.put(vm_on(13, 1, VmState::Active, LcmState::Running));
        // Placed elsewhere now: a report from host 1 must not touch it.
        tx.put(vm_on(14, 2, VmState::Active, LcmState::Running));
        tx.commit().await.unwrap();

        let push = HostMonitoring {
            capabilities: None,
            timestamp: 1000,
            system: Some(system()),
            usage: Some(HostUsage {
                usedmemory: 1,
                freememory: 2,
                usedcpu: 3,
                freecpu: 197,
                netrx: 5,
                nettx: 6,
            }),
            datastores: Some(vec![HostDs {
                id: 0,
                total_mb: 100,
                free_mb: 60,
                used_mb: 40,
            }]),
        };
        host_monitoring(&store, 1, &push, true).await.unwrap();
        let h = store.get::<Host>(1).unwrap();
        assert_eq!(h.state, HostState::Monitored);
        assert_eq!(h.share.total_cpu, 200);
        assert_eq!(h.monitoring.as_ref().unwrap().free_cpu, 197);
        assert_eq!(h.monitoring.as_ref().unwrap().timestamp, 1000);
        assert_eq!(h.share.max_disk, 100);
        drop(h);

        let vms = VmMonitoring {
            timestamp: 1001,
            vms: vec![
                VmSample {
                    id: 10,
                    cpu: 50.0,
                    memory_kb: 512,
                    ..VmSample::default()
                },
                VmSample {
                    id: 12,
                    ..VmSample::default()
                },
                VmSample {
                    id: 14,
                    ..VmSample::default()
                },
            ],
        };
        assert_eq!(vm_monitoring(&store, 1, &vms).await, 2);
        assert_eq!(
            store.get::<Vm>(10).unwrap().monitoring.get("MEMORY"),
            Some("512")
        );
        assert!(store.get::<Vm>(14).unwrap().monitoring.is_empty());

        // A full report: 11 (UNKNOWN) runs, 13 is gone (RUNNING → POWEROFF), 12 is booting
        // (left to its operation), 10 is fresh (an operation just answered), 14 is not ours.
        let dom = |vm_id, state| Domain {
            vm_id,
            deploy_id: format!("uuid-{vm_id}"),
            name: format!("one-{vm_id}"),
            state,
        };
        let report = DomainStates {
            full: true,
            domains: vec![
                dom(11, DomainState::Running),
                dom(14, DomainState::Shutoff),
                dom(-1, DomainState::Running),
            ],
        };
        let n = domain_states(&store, 1, &report, |id| id == 10)
            .await
            .unwrap();
        assert_eq!(n, 2);
        let st = |id| {
            let v = store.get::<Vm>(id).unwrap();
            (v.state, v.lcm_state)
        };
        assert_eq!(st(10), (VmState::Active, LcmState::Running));
        assert_eq!(st(11), (VmState::Active, LcmState::Running));
        assert_eq!(st(12), (VmState::Active, LcmState::Boot));
        assert_eq!(st(13), (VmState::Poweroff, LcmState::LcmInit));
        assert_eq!(st(14), (VmState::Active, LcmState::Running));
        // The same report again changes nothing (and costs no transaction).
        assert_eq!(
            domain_states(&store, 1, &report, |id| id == 10)
                .await
                .unwrap(),
            0
        );
        // A change report: 10 crashed → UNKNOWN; 11 paused → SUSPENDED.
        let change = DomainStates {
            full: false,
            domains: vec![dom(10, DomainState::Crashed), dom(11, DomainState::Paused)],
        };
        assert_eq!(
            domain_states(&store, 1, &change, |_| false).await.unwrap(),
            2
        );
        assert_eq!(st(10), (VmState::Active, LcmState::Unknown));
        assert_eq!(st(11), (VmState::Suspended, LcmState::LcmInit));

        // Session lost for good: ERROR once, RUNNING VMs → UNKNOWN; repeating costs nothing.
        let mut tx = store.begin().await;
        tx.put(vm_on(15, 1, VmState::Active, LcmState::Running));
        let mut h: Host = tx.get(1).unwrap();
        h.vms.push(15);
        tx.put(h);
        tx.commit().await.unwrap();
        assert!(host_error(&store, 1, "agent session lost").await.unwrap());
        let h = store.get::<Host>(1).unwrap();
        assert_eq!(
            (h.state, h.prev_state),
            (HostState::Error, HostState::Monitored)
        );
        let err = h.template.get("ERROR").unwrap();
        assert!(
            err.ends_with(" : Error monitoring Host node1 (1): agent session lost"),
            "{err}"
        );
        drop(h);
        assert_eq!(st(15), (VmState::Active, LcmState::Unknown));
        assert!(!host_error(&store, 1, "agent session lost").await.unwrap());
        // Healthy again: MONITORED, ERROR gone.
        host_monitoring(&store, 1, &HostMonitoring::default(), true)
            .await
            .unwrap();
        let h = store.get::<Host>(1).unwrap();
        assert_eq!(h.state, HostState::Monitored);
        assert!(!h.template.contains("ERROR"));
        drop(h);
        store.db.close().await;

        // Samples are not written to SQL on their own, only with a real change (VM 10's).
        let store = open(&dir).await;
        assert!(store.get::<Vm>(12).unwrap().monitoring.is_empty());
        assert!(!store.get::<Vm>(10).unwrap().monitoring.is_empty());
        store.db.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
