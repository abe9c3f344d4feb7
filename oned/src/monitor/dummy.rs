//! What a `dummy` host's probes report, as a pure function of the host document, its cluster's
//! template and the configuration ([`plan`]), kept apart from changing the document
//! ([`apply`]) so that a round can tell, without copying anything, which hosts really change.
//!
//! The figures follow OpenNebula's dummy probes (`im_mad/remotes/dummy-probes.d`): the system
//! probe reports HYPERVISOR, ARCH, MODELNAME, CPUSPEED, TOTALCPU, TOTALMEMORY and HOSTNAME,
//! which land in the host's TEMPLATE; TOTALCPU / TOTALMEMORY become HOST_SHARE TOTAL_CPU /
//! TOTAL_MEM and MAX_* = total − RESERVED_* (host template, else the cluster's), as
//! `HostShare::set_monitorization` does.

use crate::config::DummyConfig;
use one_proto::objects::host::Host;
use one_proto::state::{HostState, LcmState, VmState};
use one_proto::template::{AttrValue, Template};

/// The IM_MAD (and VM_MAD) of simulated hosts.
pub const IM_MAD: &str = "dummy";

/// Probe values that do not depend on the host.
pub const HYPERVISOR: &str = "dummy";
pub const ARCH: &str = "x86_64";

/// The driver operation name in DUMMY_FAIL that makes monitoring fail.
pub const FAIL_MONITOR: &str = "monitor";

/// MODELNAME as OpenNebula's dummy probe writes it ("Dummy(R) Core @ 3.2GHz" at 3200 MHz).
pub fn model_name(cpu_speed_mhz: i64) -> String {
    format!("Dummy(R) Core @ {:.1}GHz", cpu_speed_mhz as f64 / 1000.0)
}

/// Whether a DUMMY_FAIL list ("deploy, monitor, ...") names `op`.
pub fn fails(list: Option<&str>, op: &str) -> bool {
    list.is_some_and(|l| l.split(',').any(|x| x.trim().eq_ignore_ascii_case(op)))
}

/// MAX_CPU / MAX_MEM from a total and a RESERVED_CPU / RESERVED_MEM value, as OpenNebula
/// computes them: empty → the total; "N" → total − N (negative N over-commits); "N%" →
/// total × (1 − N/100), truncated; anything unparsable → the total.
pub fn reserved_max(total: i64, reserved: &str) -> i64 {
    let r = reserved.trim();
    if r.is_empty() {
        return total;
    }
    let (num, percent) = match r.strip_suffix('%') {
        Some(n) => (n, true),
        None => (r, false),
    };
    let Ok(v) = num.parse::<i64>() else {
        return total;
    };
    if percent {
        (total as f64 * (1.0 - v as f64 / 100.0)) as i64
    } else {
        total.saturating_sub(v)
    }
}

/// HOST_SHARE totals a successful monitoring gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub total_cpu: i64,
    pub total_mem: i64,
    pub max_cpu: i64,
    pub max_mem: i64,
}

/// The single-valued template attributes a round looks at, found in one scan of the
/// template (the first of a name wins, as `Template::get`).
#[derive(Default)]
struct Attrs<'a> {
    dummy_fail: Option<&'a str>,
    dummy_totalcpu: Option<&'a str>,
    dummy_totalmemory: Option<&'a str>,
    reserved_cpu: Option<&'a str>,
    reserved_mem: Option<&'a str>,
    hypervisor: Option<&'a str>,
    arch: Option<&'a str>,
    modelname: Option<&'a str>,
    cpuspeed: Option<&'a str>,
    totalcpu: Option<&'a str>,
    totalmemory: Option<&'a str>,
    hostname: Option<&'a str>,
    error: Option<&'a str>,
}

fn scan(t: &Template) -> Attrs<'_> {
    let mut a = Attrs::default();
    for attr in &t.attrs {
        let AttrValue::Single(v) = &attr.value else {
            continue;
        };
        // Template names are canonical (upper case), so an exact match is enough.
        let slot = match attr.name.as_str() {
            "DUMMY_FAIL" => &mut a.dummy_fail,
            "DUMMY_TOTALCPU" => &mut a.dummy_totalcpu,
            "DUMMY_TOTALMEMORY" => &mut a.dummy_totalmemory,
            "RESERVED_CPU" => &mut a.reserved_cpu,
            "RESERVED_MEM" => &mut a.reserved_mem,
            "HYPERVISOR" => &mut a.hypervisor,
            "ARCH" => &mut a.arch,
            "MODELNAME" => &mut a.modelname,
            "CPUSPEED" => &mut a.cpuspeed,
            "TOTALCPU" => &mut a.totalcpu,
            "TOTALMEMORY" => &mut a.totalmemory,
            "HOSTNAME" => &mut a.hostname,
            "ERROR" => &mut a.error,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v.as_str());
        }
    }
    a
}

fn num(v: Option<&str>) -> Option<i64> {
    v.and_then(|s| s.trim().parse().ok())
}

/// A positive override (DUMMY_TOTALCPU, ...) or the configured value.
fn positive_or(v: Option<&str>, default: i64) -> i64 {
    num(v).filter(|n| *n > 0).unwrap_or(default)
}

/// The host's RESERVED_CPU / RESERVED_MEM, or its cluster's when the host's is empty
/// (`Host::reserved_capacity`).
pub fn reservation<'a>(own: Option<&'a str>, cluster: Option<&'a Template>, name: &str) -> &'a str {
    match own.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => v,
        None => cluster.and_then(|c| c.get(name)).unwrap_or(""),
    }
}

/// Hosts whose state monitoring leaves alone: OpenNebula keeps monitoring DISABLED hosts (they
/// only leave the scheduler's candidates) but never sets them MONITORED or ERROR.
pub fn keeps_state(s: HostState) -> bool {
    matches!(s, HostState::Disabled | HostState::MonitoringDisabled)
}

/// Whether a round monitors this host at all: dummy hosts that are not OFFLINE.
pub fn is_monitored(host: &Host) -> bool {
    host.im_mad == IM_MAD && host.state != HostState::Offline
}

/// What monitoring does to one host this round.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The host's next state.
    pub state: HostState,
    /// Monitoring worked: the capacity reported. `None`: it failed, and the host keeps the
    /// figures it last had (OpenNebula does too).
    pub capacity: Option<Capacity>,
    /// Monitoring failed: the message for TEMPLATE/ERROR (without its time stamp).
    pub failure: Option<String>,
    /// The stored document changes: state, probe attributes, capacity or ERROR.
    pub changed: bool,
    /// The host failed and has RUNNING VMs, which go to UNKNOWN (`lcm::host_failed`).
    pub fail_vms: bool,
    /// UNKNOWN VMs of a healthy host: seen running again (`lcm::vm_seen`).
    pub unknown_vms: Vec<i64>,
}

impl Plan {
    /// Whether this plan needs a transaction (anything but the volatile samples).
    pub fn needs_txn(&self) -> bool {
        self.changed || self.fail_vms || !self.unknown_vms.is_empty()
    }
}

/// The failure message OpenNebula's `Host::error` writes, after "<time> : ".
pub fn failure_message(host: &Host, reason: &str) -> String {
    format!(
        "Error monitoring Host {} ({}): {}",
        host.name, host.id, reason
    )
}

/// Decides one host's round. `cluster` is the template of the host's cluster (for
/// RESERVED_CPU / RESERVED_MEM), `vm_state` the state of a VM by id. `None` for hosts that
/// are not monitored ([`is_monitored`]). Allocates nothing for a healthy host that does not
/// change.
pub fn plan(
    host: &Host,
    cluster: Option<&Template>,
    vm_state: impl Fn(i64) -> Option<(VmState, LcmState)>,
    cfg: &DummyConfig,
    model: &str,
) -> Option<Plan> {
    if !is_monitored(host) {
        return None;
    }
    let a = scan(&host.template);
    let keep = keeps_state(host.state);
    if fails(a.dummy_fail, FAIL_MONITOR) {
        let message = failure_message(
            host,
            "simulated failure: DUMMY_FAIL names \"monitor\" for this dummy host",
        );
        let state = if keep { host.state } else { HostState::Error };
        // The ERROR attribute is written once per failure, not every round (its time stamp
        // would make every round a change).
        let error_current = a.error.is_some_and(|e| e.ends_with(message.as_str()));
        let fail_vms = host
            .vms
            .iter()
            .any(|id| vm_state(*id) == Some((VmState::Active, LcmState::Running)));
        return Some(Plan {
            changed: state != host.state || !error_current,
            state,
            capacity: None,
            failure: Some(message),
            fail_vms,
            unknown_vms: Vec::new(),
        });
    }

    let total_cpu = positive_or(a.dummy_totalcpu, cfg.total_cpu);
    let total_mem = positive_or(a.dummy_totalmemory, cfg.total_memory_kb);
    let max_cpu = reserved_max(
        total_cpu,
        reservation(a.reserved_cpu, cluster, "RESERVED_CPU"),
    );
    let max_mem = reserved_max(
        total_mem,
        reservation(a.reserved_mem, cluster, "RESERVED_MEM"),
    );
    let cap = Capacity {
        total_cpu,
        total_mem,
        max_cpu,
        max_mem,
    };
    let state = if keep {
        host.state
    } else {
        HostState::Monitored
    };
    let probe_current = a.hypervisor == Some(HYPERVISOR)
        && a.arch == Some(ARCH)
        && a.modelname == Some(model)
        && num(a.cpuspeed) == Some(cfg.cpu_speed_mhz)
        && num(a.totalcpu) == Some(total_cpu)
        && num(a.totalmemory) == Some(total_mem)
        && a.hostname == Some(host.name.as_str());
    let s = &host.share;
    let share_current = s.total_cpu == total_cpu
        && s.total_mem == total_mem
        && s.max_cpu == max_cpu
        && s.max_mem == max_mem;
    let unknown_vms = host
        .vms
        .iter()
        .copied()
        .filter(|id| vm_state(*id) == Some((VmState::Active, LcmState::Unknown)))
        .collect();
    Some(Plan {
        changed: state != host.state || !probe_current || !share_current || a.error.is_some(),
        state,
        capacity: Some(cap),
        failure: None,
        fail_vms: false,
        unknown_vms,
    })
}

/// Writes a plan's persistent part into the host: state (remembering the previous one),
/// probe attributes, HOST_SHARE totals, TEMPLATE/ERROR. `now` stamps a new ERROR.
pub fn apply(host: &mut Host, plan: &Plan, cfg: &DummyConfig, model: &str, now: i64) {
    if plan.state != host.state {
        host.prev_state = host.state;
        host.state = plan.state;
    }
    if let Some(cap) = &plan.capacity {
        let t = &mut host.template;
        t.set("HYPERVISOR", HYPERVISOR);
        t.set("ARCH", ARCH);
        t.set("MODELNAME", model);
        t.set("CPUSPEED", cfg.cpu_speed_mhz.to_string());
        t.set("TOTALCPU", cap.total_cpu.to_string());
        t.set("TOTALMEMORY", cap.total_mem.to_string());
        t.set("HOSTNAME", host.name.clone());
        // A successful monitoring clears the last error (Host::update_info).
        t.remove("ERROR");
        host.share.total_cpu = cap.total_cpu;
        host.share.total_mem = cap.total_mem;
        host.share.max_cpu = cap.max_cpu;
        host.share.max_mem = cap.max_mem;
    }
    if let Some(msg) = &plan.failure {
        let current = host
            .template
            .get("ERROR")
            .is_some_and(|e| e.ends_with(msg.as_str()));
        if !current {
            host.template.set(
                "ERROR",
                format!("{} : {}", one_proto::time::ctime(now), msg),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use one_proto::objects::host::HostShare;

    fn cfg() -> DummyConfig {
        DummyConfig::default()
    }

    pub(crate) fn host(id: i64, state: HostState, tmpl: &str) -> Host {
        let mut template = Template::parse(tmpl).unwrap();
        template.set("IM_MAD", "dummy");
        Host {
            id,
            name: format!("h{id}"),
            state,
            prev_state: state,
            im_mad: "dummy".into(),
            vm_mad: "dummy".into(),
            cluster_id: 0,
            cluster: "default".into(),
            share: HostShare::default(),
            vms: Vec::new(),
            template,
            monitoring: None,
        }
    }

    fn no_vms(_: i64) -> Option<(VmState, LcmState)> {
        None
    }

    fn run(h: &mut Host, cluster: Option<&Template>) -> Plan {
        let model = model_name(cfg().cpu_speed_mhz);
        let p = plan(h, cluster, no_vms, &cfg(), &model).unwrap();
        apply(h, &p, &cfg(), &model, 1_700_000_000);
        p
    }

    #[test]
    fn reserved_follows_opennebula() {
        assert_eq!(reserved_max(800, ""), 800);
        assert_eq!(reserved_max(800, "100"), 700);
        assert_eq!(reserved_max(800, " 100 "), 700);
        assert_eq!(reserved_max(800, "-200"), 1000, "negative over-commits");
        assert_eq!(reserved_max(800, "10%"), 720);
        // Same double arithmetic as OpenNebula: 1000 × 0.6699999… truncates to 669.
        assert_eq!(reserved_max(1000, "33%"), 669);
        assert_eq!(reserved_max(800, "abc"), 800, "unparsable: the total");
        assert_eq!(reserved_max(800, "1.5"), 800);
        assert_eq!(reserved_max(800, "%"), 800);
    }

    #[test]
    fn dummy_fail_list() {
        assert!(fails(Some("deploy, Monitor"), "monitor"));
        assert!(fails(Some("monitor"), "monitor"));
        assert!(!fails(Some("monitoring,deploy"), "monitor"));
        assert!(!fails(Some(""), "monitor"));
        assert!(!fails(None, "monitor"));
    }

    #[test]
    fn new_host_becomes_monitored_with_probe_and_capacity() {
        let mut h = host(1, HostState::Init, "");
        let p = run(&mut h, None);
        assert!(p.changed);
        assert_eq!(h.state, HostState::Monitored);
        assert_eq!(h.prev_state, HostState::Init);
        assert_eq!(h.template.get("HYPERVISOR"), Some("dummy"));
        assert_eq!(h.template.get("HOSTNAME"), Some("h1"));
        assert_eq!(h.template.get("TOTALCPU"), Some("800"));
        assert_eq!(h.template.get("TOTALMEMORY"), Some("16777216"));
        assert_eq!(
            h.template.get("MODELNAME"),
            Some("Dummy(R) Core @ 3.2GHz"),
            "OpenNebula's dummy probe value at the default speed"
        );
        assert_eq!(
            (h.share.total_cpu, h.share.max_cpu, h.share.max_mem),
            (800, 800, 16_777_216)
        );
        // The next round finds nothing to change: no write.
        let again = plan(&h, None, no_vms, &cfg(), &model_name(3200)).unwrap();
        assert!(!again.needs_txn(), "{again:?}");
    }

    #[test]
    fn overrides_and_reserved_capacity_host_then_cluster() {
        let mut h = host(
            2,
            HostState::Init,
            "DUMMY_TOTALCPU=1600\nDUMMY_TOTALMEMORY=1048576\nRESERVED_CPU=\"25%\"\nRESERVED_MEM=\"\"",
        );
        let cluster = Template::parse("RESERVED_CPU=\"100\"\nRESERVED_MEM=\"48576\"").unwrap();
        run(&mut h, Some(&cluster));
        assert_eq!(h.share.total_cpu, 1600);
        assert_eq!(h.share.max_cpu, 1200, "host's own RESERVED_CPU wins");
        assert_eq!(h.share.total_mem, 1_048_576);
        assert_eq!(
            h.share.max_mem, 1_000_000,
            "empty host value: the cluster's"
        );
        assert_eq!(h.template.get("TOTALCPU"), Some("1600"));

        // Changing the reservation is a real change on the next round.
        h.template.set("RESERVED_CPU", "");
        let p = run(&mut h, Some(&cluster));
        assert!(p.changed);
        assert_eq!(h.share.max_cpu, 1500);
        // Nonsense overrides fall back to the configuration.
        h.template.set("DUMMY_TOTALCPU", "-3");
        run(&mut h, None);
        assert_eq!(h.share.total_cpu, 800);
    }

    #[test]
    fn failing_monitor_errors_once_then_heals() {
        let mut h = host(3, HostState::Monitored, "DUMMY_FAIL=\"deploy,monitor\"");
        h.vms = vec![10, 11];
        let states = |id: i64| match id {
            10 => Some((VmState::Active, LcmState::Running)),
            _ => Some((VmState::Poweroff, LcmState::LcmInit)),
        };
        let model = model_name(3200);
        let p = plan(&h, None, states, &cfg(), &model).unwrap();
        assert_eq!(p.state, HostState::Error);
        assert!(p.changed && p.fail_vms && p.capacity.is_none());
        apply(&mut h, &p, &cfg(), &model, 0);
        assert_eq!(h.state, HostState::Error);
        assert_eq!(
            h.template.get("ERROR"),
            Some(
                "Thu Jan  1 00:00:00 1970 : Error monitoring Host h3 (3): simulated failure: \
                 DUMMY_FAIL names \"monitor\" for this dummy host"
            )
        );
        // Still failing, VMs already UNKNOWN: nothing to write.
        let unknown = |_| Some((VmState::Active, LcmState::Unknown));
        let p = plan(&h, None, unknown, &cfg(), &model).unwrap();
        assert!(!p.needs_txn(), "{p:?}");

        // Healed: MONITORED, ERROR gone, UNKNOWN VMs seen running.
        h.template.set("DUMMY_FAIL", "deploy");
        let p = plan(&h, None, unknown, &cfg(), &model).unwrap();
        assert_eq!(p.unknown_vms, vec![10, 11]);
        apply(&mut h, &p, &cfg(), &model, 0);
        assert_eq!(h.state, HostState::Monitored);
        assert_eq!(h.prev_state, HostState::Error);
        assert!(h.template.get("ERROR").is_none());
    }

    #[test]
    fn disabled_is_monitored_but_keeps_its_state_and_offline_is_skipped() {
        let mut h = host(4, HostState::Disabled, "");
        run(&mut h, None);
        assert_eq!(h.state, HostState::Disabled);
        assert_eq!(h.share.total_cpu, 800);
        h.template.set("DUMMY_FAIL", "monitor");
        let p = run(&mut h, None);
        assert_eq!(h.state, HostState::Disabled);
        assert!(p.changed && h.template.get("ERROR").is_some());

        let off = host(5, HostState::Offline, "");
        assert!(plan(&off, None, no_vms, &cfg(), "m").is_none());
        let mut kvm = host(6, HostState::Init, "");
        kvm.im_mad = "kvm".into();
        assert!(plan(&kvm, None, no_vms, &cfg(), "m").is_none());
    }
}
