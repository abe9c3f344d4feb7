//! `GET /metrics`: hosts, VMs and oned's own figures in Prometheus' text exposition format
//! (version 0.0.4), on the API listener (docs/monitoring.md, "Prometheus").
//!
//! Access: off with `[metrics] enabled = false`. When oned listens on a loopback address only
//! local processes reach it, so it is served to anyone; otherwise it needs HTTP Basic
//! credentials of a user of the oneadmin group (checked as an API session), unless
//! `[metrics] public = true`. Host and VM names are not for everybody's eyes.

use crate::daemon::Oned;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use one_proto::state::VmState;
use one_proto::template::Template;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

/// API calls and failures per method, for the whole process.
static API: Mutex<BTreeMap<&'static str, (u64, u64)>> = Mutex::new(BTreeMap::new());

/// Counts one answered API call (called by the XML-RPC handler).
pub fn api_call(method: &'static str, failed: bool) {
    let mut m = API.lock().unwrap_or_else(|e| e.into_inner());
    let e = m.entry(method).or_default();
    e.0 += 1;
    if failed {
        e.1 += 1;
    }
}

/// Escapes a label value: backslash, double quote and line feed (the format's rules).
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A text exposition being written: a family's HELP/TYPE once, then its samples.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl std::fmt::Display,
    ) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Whether `listen` (ADDR:PORT) is a loopback address.
pub fn loopback(listen: &str) -> bool {
    if let Ok(a) = listen.parse::<std::net::SocketAddr>() {
        return a.ip().is_loopback();
    }
    listen
        .rsplit_once(':')
        .is_some_and(|(host, _)| host == "localhost")
}

/// `user:password` from an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    String::from_utf8(raw).ok().filter(|s| s.contains(':'))
}

pub async fn handler(oned: &Oned, headers: &HeaderMap) -> Response {
    let cfg = &oned.config.metrics;
    if !cfg.enabled {
        return StatusCode::NOT_FOUND.into_response();
    }
    if !cfg.public && !loopback(&oned.config.listen) {
        let session = match basic_credentials(headers) {
            Some(c) => oned.auth.authenticate(&oned.store, &c).await,
            None => None,
        };
        if !session.is_some_and(|s| s.is_admin()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"oned metrics\"")],
                "credentials of a oneadmin-group user are needed\n",
            )
                .into_response();
        }
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(oned),
    )
        .into_response()
}

fn mon_i64(t: &Template, name: &str) -> i64 {
    t.get(name).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn mon_f64(t: &Template, name: &str) -> f64 {
    t.get(name)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .unwrap_or(0.0)
}

/// CPU seconds (user + system) and resident bytes of this process, from /proc/self.
fn process_figures() -> Option<(f64, i64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state (field 3) ... utime (14), stime (15).
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as i64;
    Some((ticks / hz, pages * page))
}

/// The whole exposition.
pub fn render(oned: &Oned) -> String {
    let mut x = Exposition::default();
    let (hosts, vms, counts) = {
        let st = oned.store.read();
        let hosts: Vec<_> = st.hosts.iter().cloned().collect();
        let vms: Vec<_> = st
            .vms
            .iter()
            .filter(|v| v.state != VmState::Done)
            .cloned()
            .collect();
        let counts = [
            ("user", st.users.len()),
            ("group", st.groups.len()),
            ("cluster", st.clusters.len()),
            ("host", st.hosts.len()),
            ("datastore", st.datastores.len()),
            ("image", st.images.len()),
            ("vnet", st.vnets.len()),
            ("vmtemplate", st.templates.len()),
            ("vm", st.vms.len()),
            ("hook", st.hooks.len()),
        ];
        (hosts, vms, counts)
    };

    // Hosts.
    let hl: Vec<(String, &str)> = hosts
        .iter()
        .map(|h| (h.id.to_string(), h.name.as_str()))
        .collect();
    let lab = |i: usize| [("id", hl[i].0.as_str()), ("name", hl[i].1)];
    x.family(
        "one_host_state",
        "gauge",
        "Host STATE (OpenNebula's number: 2 MONITORED, 3 ERROR, 4 DISABLED, 8 OFFLINE).",
    );
    for (i, h) in hosts.iter().enumerate() {
        x.sample("one_host_state", &lab(i), h.state.num());
    }
    x.family(
        "one_host_cpu_total",
        "gauge",
        "Host TOTAL_CPU (100 per core).",
    );
    for (i, h) in hosts.iter().enumerate() {
        x.sample("one_host_cpu_total", &lab(i), h.share.total_cpu);
    }
    x.family(
        "one_host_cpu_used",
        "gauge",
        "Host MONITORING/CAPACITY/USED_CPU (100 per core).",
    );
    for (i, h) in hosts.iter().enumerate() {
        if let Some(m) = &h.monitoring {
            x.sample("one_host_cpu_used", &lab(i), m.used_cpu);
        }
    }
    x.family(
        "one_host_memory_total_bytes",
        "gauge",
        "Host TOTAL_MEM in bytes.",
    );
    for (i, h) in hosts.iter().enumerate() {
        x.sample(
            "one_host_memory_total_bytes",
            &lab(i),
            h.share.total_mem.saturating_mul(1024),
        );
    }
    x.family(
        "one_host_memory_used_bytes",
        "gauge",
        "Host MONITORING/CAPACITY/USED_MEMORY in bytes.",
    );
    for (i, h) in hosts.iter().enumerate() {
        if let Some(m) = &h.monitoring {
            x.sample(
                "one_host_memory_used_bytes",
                &lab(i),
                m.used_memory.saturating_mul(1024),
            );
        }
    }
    x.family(
        "one_host_vms",
        "gauge",
        "VMs placed on the host (HOST/VMS).",
    );
    for (i, h) in hosts.iter().enumerate() {
        x.sample("one_host_vms", &lab(i), h.vms.len());
    }

    // VMs (DONE ones left out: they are history, and many).
    let vl: Vec<(String, &str, &str)> = vms
        .iter()
        .map(|v| {
            let host = v.history.last().map_or("", |h| h.hostname.as_str());
            (v.header.id.to_string(), v.header.name.as_str(), host)
        })
        .collect();
    let vlab = |i: usize| {
        [
            ("id", vl[i].0.as_str()),
            ("name", vl[i].1),
            ("host", vl[i].2),
        ]
    };
    x.family("one_vm_state", "gauge", "VM STATE (OpenNebula's number).");
    for (i, v) in vms.iter().enumerate() {
        x.sample("one_vm_state", &vlab(i), v.state.num());
    }
    x.family(
        "one_vm_lcm_state",
        "gauge",
        "VM LCM_STATE (OpenNebula's number).",
    );
    for (i, v) in vms.iter().enumerate() {
        x.sample("one_vm_lcm_state", &vlab(i), v.lcm_state.num());
    }
    let monitored: Vec<usize> = (0..vms.len())
        .filter(|i| !vms[*i].monitoring.is_empty())
        .collect();
    x.family(
        "one_vm_cpu",
        "gauge",
        "VM MONITORING/CPU: percent of one core.",
    );
    for &i in &monitored {
        x.sample("one_vm_cpu", &vlab(i), mon_f64(&vms[i].monitoring, "CPU"));
    }
    x.family(
        "one_vm_memory_bytes",
        "gauge",
        "VM MONITORING/MEMORY in bytes.",
    );
    for &i in &monitored {
        x.sample(
            "one_vm_memory_bytes",
            &vlab(i),
            mon_i64(&vms[i].monitoring, "MEMORY").saturating_mul(1024),
        );
    }
    for (name, attr, help) in [
        (
            "one_vm_net_rx_bytes_total",
            "NETRX",
            "VM MONITORING/NETRX: bytes received.",
        ),
        (
            "one_vm_net_tx_bytes_total",
            "NETTX",
            "VM MONITORING/NETTX: bytes sent.",
        ),
        (
            "one_vm_disk_read_bytes_total",
            "DISKRDBYTES",
            "VM MONITORING/DISKRDBYTES.",
        ),
        (
            "one_vm_disk_write_bytes_total",
            "DISKWRBYTES",
            "VM MONITORING/DISKWRBYTES.",
        ),
    ] {
        x.family(name, "counter", help);
        for &i in &monitored {
            x.sample(name, &vlab(i), mon_i64(&vms[i].monitoring, attr));
        }
    }

    // oned itself.
    let api: Vec<(&'static str, (u64, u64))> = API
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (*k, *v))
        .collect();
    x.family(
        "oned_api_calls_total",
        "counter",
        "XML-RPC calls answered, by method.",
    );
    for (m, (n, _)) in &api {
        x.sample("oned_api_calls_total", &[("method", m)], n);
    }
    x.family(
        "oned_api_errors_total",
        "counter",
        "XML-RPC calls answered with an error, by method.",
    );
    for (m, (_, e)) in &api {
        x.sample("oned_api_errors_total", &[("method", m)], e);
    }
    x.family("oned_objects", "gauge", "Objects in each pool.");
    for (pool, n) in counts {
        x.sample("oned_objects", &[("pool", pool)], n);
    }
    let connected = hosts
        .iter()
        .filter(|h| oned.hostmgr.link(h.id).is_some())
        .count();
    x.family(
        "oned_agent_sessions",
        "gauge",
        "Node agent sessions connected.",
    );
    x.sample("oned_agent_sessions", &[], connected);
    x.family(
        "oned_agent_hosts",
        "gauge",
        "Hosts managed through a node agent (connected or not).",
    );
    x.sample("oned_agent_hosts", &[], oned.hostmgr.managed_hosts());

    let h = &oned.store.history;
    let c = &h.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    x.family(
        "oned_monitoring_samples_total",
        "counter",
        "Monitoring samples received (dummy rounds and agents), by kind.",
    );
    x.sample(
        "oned_monitoring_samples_total",
        &[("kind", "host")],
        get(&c.host_samples),
    );
    x.sample(
        "oned_monitoring_samples_total",
        &[("kind", "vm")],
        get(&c.vm_samples),
    );
    x.family(
        "oned_monitoring_history_recorded_total",
        "counter",
        "Samples kept in the monitoring history.",
    );
    x.sample(
        "oned_monitoring_history_recorded_total",
        &[],
        get(&c.recorded),
    );
    let (hs, vs) = h.len();
    x.family(
        "oned_monitoring_history_samples",
        "gauge",
        "Samples held in the monitoring history, by kind.",
    );
    x.sample("oned_monitoring_history_samples", &[("kind", "host")], hs);
    x.sample("oned_monitoring_history_samples", &[("kind", "vm")], vs);
    x.family(
        "oned_monitoring_flushes_total",
        "counter",
        "Monitoring history flushes to SQL.",
    );
    x.sample("oned_monitoring_flushes_total", &[], get(&c.flushes));
    x.family(
        "oned_monitoring_flush_errors_total",
        "counter",
        "Monitoring history flushes that failed.",
    );
    x.sample(
        "oned_monitoring_flush_errors_total",
        &[],
        get(&c.flush_errors),
    );
    x.family(
        "oned_monitoring_flushed_rows_total",
        "counter",
        "Monitoring history rows written to SQL.",
    );
    x.sample(
        "oned_monitoring_flushed_rows_total",
        &[],
        get(&c.flushed_rows),
    );
    x.family(
        "oned_monitoring_flush_seconds_total",
        "counter",
        "Time spent in monitoring history flushes.",
    );
    x.sample(
        "oned_monitoring_flush_seconds_total",
        &[],
        get(&c.flush_micros_total) as f64 / 1e6,
    );
    x.family(
        "oned_monitoring_last_flush_seconds",
        "gauge",
        "Duration of the last monitoring history flush.",
    );
    x.sample(
        "oned_monitoring_last_flush_seconds",
        &[],
        get(&c.last_flush_micros) as f64 / 1e6,
    );

    if let Some((cpu, rss)) = process_figures() {
        x.family(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time of oned.",
        );
        x.sample("process_cpu_seconds_total", &[], cpu);
        x.family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of oned.",
        );
        x.sample("process_resident_memory_bytes", &[], rss);
    }
    x.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        let mut x = Exposition::default();
        x.family("m", "gauge", "line\\one\nline two")
            .sample("m", &[("name", "h\"1"), ("id", "0")], 5)
            .sample("m", &[], 1.5);
        assert_eq!(
            x.finish(),
            "# HELP m line\\\\one\\nline two\n# TYPE m gauge\nm{name=\"h\\\"1\",id=\"0\"} 5\nm 1.5\n"
        );
    }

    #[test]
    fn loopback_listeners() {
        assert!(loopback("127.0.0.1:2633"));
        assert!(loopback("[::1]:2633"));
        assert!(loopback("localhost:2633"));
        assert!(!loopback("0.0.0.0:2633"));
        assert!(!loopback("10.0.0.1:2633"));
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_credentials(&h), None);
        // "oneadmin:pw"
        h.insert(
            header::AUTHORIZATION,
            "Basic b25lYWRtaW46cHc=".parse().unwrap(),
        );
        assert_eq!(basic_credentials(&h).as_deref(), Some("oneadmin:pw"));
        h.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
    }

    #[test]
    fn process_figures_are_read() {
        let (cpu, rss) = process_figures().unwrap();
        assert!(cpu >= 0.0 && rss > 0);
    }
}
