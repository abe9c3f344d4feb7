//! Simulated usage figures of dummy hosts and their VMs: a VM uses a stable share of what it
//! was given (its own base load) plus a little noise per sample; a host uses what its VMs use
//! plus a small overhead; network and disk counters only grow. The noise is a hash of (id,
//! time), so no generator state is kept and tests are repeatable.
//!
//! Samples are written in place: a VM's MONITORING keeps one fixed attribute layout whose
//! strings are overwritten, so a round over thousands of VMs allocates nothing once each has
//! been sampled.

use one_proto::objects::host::{HostDs, HostMonitoring, HostShare};
use one_proto::template::{AttrValue, Attribute, Template};
use std::fmt::Write;

/// A number in [0, 1) from two seeds (splitmix64 finalizer): the same seeds give the same
/// value.
pub fn noise(a: u64, b: u64) -> f64 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Seconds a sample covers: since the previous one, at most an hour (a long outage does not
/// make counters jump), 0 for the first.
fn span(prev: i64, now: i64) -> i64 {
    if prev > 0 {
        (now - prev).clamp(0, 3600)
    } else {
        0
    }
}

/// What a VM's sample adds to its host's: current CPU (percent) and memory (KB), and the
/// network bytes since the VM's previous sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VmUsage {
    pub cpu: f64,
    pub memory_kb: i64,
    pub netrx: i64,
    pub nettx: i64,
}

impl std::ops::AddAssign for VmUsage {
    fn add_assign(&mut self, o: VmUsage) {
        self.cpu += o.cpu;
        self.memory_kb += o.memory_kb;
        self.netrx += o.netrx;
        self.nettx += o.nettx;
    }
}

/// What a VM was given: CPU in percent (TEMPLATE/CPU × 100) and MEMORY in KB (TEMPLATE/MEMORY
/// is in MB). Missing or nonsense values count as one CPU and 256 MB. One pass over the
/// template, stopping when both are found (this runs for every VM every round).
pub fn vm_allocation(t: &Template) -> (f64, i64) {
    let (mut cpu, mut mem) = (None, None);
    for a in &t.attrs {
        let AttrValue::Single(v) = &a.value else {
            continue;
        };
        match a.name.as_str() {
            "CPU" if cpu.is_none() => cpu = Some(v.as_str()),
            "MEMORY" if mem.is_none() => mem = Some(v.as_str()),
            _ => continue,
        }
        if cpu.is_some() && mem.is_some() {
            break;
        }
    }
    let cpu = cpu
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(1.0);
    let mem_mb = mem
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|v| *v >= 0)
        .unwrap_or(256);
    (cpu * 100.0, mem_mb.saturating_mul(1024))
}

/// The VM MONITORING attributes written, sorted by name (vm.xsd's order, which the XML writer
/// sorts to anyway).
const VM_ATTRS: [&str; 10] = [
    "CPU",
    "DISKRDBYTES",
    "DISKRDIOPS",
    "DISKWRBYTES",
    "DISKWRIOPS",
    "ID",
    "MEMORY",
    "NETRX",
    "NETTX",
    "TIMESTAMP",
];
const CPU: usize = 0;
const DISKRDBYTES: usize = 1;
const DISKRDIOPS: usize = 2;
const DISKWRBYTES: usize = 3;
const DISKWRIOPS: usize = 4;
const ID: usize = 5;
const MEMORY: usize = 6;
const NETRX: usize = 7;
const NETTX: usize = 8;
const TIMESTAMP: usize = 9;

/// Gives MONITORING exactly the [`VM_ATTRS`] layout, keeping the values it had.
fn ensure_layout(t: &mut Template) {
    // Only this module writes MONITORING, so name lengths plus the first and last names
    // identify the layout; comparing every name would read ten more strings per VM per round.
    let ok = t.attrs.len() == VM_ATTRS.len()
        && t.attrs
            .iter()
            .zip(VM_ATTRS)
            .all(|(a, n)| a.name.len() == n.len() && matches!(a.value, AttrValue::Single(_)))
        && t.attrs[CPU].name == VM_ATTRS[CPU]
        && t.attrs[TIMESTAMP].name == VM_ATTRS[TIMESTAMP];
    if ok {
        return;
    }
    let attrs = VM_ATTRS
        .iter()
        .map(|n| Attribute {
            name: (*n).to_string(),
            value: AttrValue::Single(t.get(n).unwrap_or("0").to_string()),
        })
        .collect();
    t.attrs = attrs;
}

fn get(t: &Template, i: usize) -> i64 {
    match &t.attrs[i].value {
        AttrValue::Single(s) => s.parse().unwrap_or(0),
        AttrValue::Vector(_) => 0,
    }
}

/// Overwrites a value in its existing string (no allocation once it has grown).
fn put(t: &mut Template, i: usize, v: impl std::fmt::Display) {
    if let AttrValue::Single(s) = &mut t.attrs[i].value {
        s.clear();
        let _ = write!(s, "{v}");
    }
}

/// Samples VM `id` into its MONITORING: `cpu_alloc` percent and `memory_kb` are what it was
/// given ([`vm_allocation`]).
pub fn sample_vm(id: i64, cpu_alloc: f64, memory_kb: i64, mon: &mut Template, now: i64) -> VmUsage {
    ensure_layout(mon);
    let dt = span(get(mon, TIMESTAMP), now) as f64;
    let (v, t) = (id as u64, now as u64);
    let load = (0.1 + 0.5 * noise(v, 1) + 0.1 * (noise(v, t) - 0.5)).clamp(0.01, 1.0);
    // In tenths, written as "12.5" without float formatting (this runs for every VM).
    let tenths = (cpu_alloc * load * 10.0).round() as i64;
    let cpu = tenths as f64 / 10.0;
    let mem_share = (0.3 + 0.5 * noise(v, 2) + 0.04 * (noise(v, t ^ 2) - 0.5)).clamp(0.05, 1.0);
    let memory = (memory_kb as f64 * mem_share) as i64;
    // Bytes in `dt` seconds at a per-VM base rate of up to `max` bytes/s, ±50 % per sample.
    let bytes = |seed: u64, max: f64| -> i64 {
        ((0.1 + 0.9 * noise(v, seed)) * max * (0.5 + noise(v, t ^ seed)) * dt) as i64
    };
    let (rx, tx) = (bytes(3, 100_000.0), bytes(4, 50_000.0));
    let (rd, wr) = (bytes(5, 1_000_000.0), bytes(6, 500_000.0));
    let grow = |mon: &Template, i: usize, by: i64| get(mon, i).saturating_add(by);
    let vals = [
        (DISKRDBYTES, grow(mon, DISKRDBYTES, rd)),
        (DISKRDIOPS, grow(mon, DISKRDIOPS, rd / 4096)),
        (DISKWRBYTES, grow(mon, DISKWRBYTES, wr)),
        (DISKWRIOPS, grow(mon, DISKWRIOPS, wr / 4096)),
        (ID, id),
        (MEMORY, memory),
        (NETRX, grow(mon, NETRX, rx)),
        (NETTX, grow(mon, NETTX, tx)),
        (TIMESTAMP, now),
    ];
    put(mon, CPU, format_args!("{}.{}", tenths / 10, tenths % 10));
    for (i, v) in vals {
        put(mon, i, v);
    }
    VmUsage {
        cpu,
        memory_kb: memory,
        netrx: rx,
        nettx: tx,
    }
}

/// A host's sample: what its RUNNING VMs use (`vms`) plus a small overhead of its own, within
/// its HOST_SHARE totals; network counters grow from `prev`.
pub fn sample_host(
    id: i64,
    share: &HostShare,
    prev: Option<&HostMonitoring>,
    vms: VmUsage,
    now: i64,
) -> HostMonitoring {
    let (h, t) = (id as u64, now as u64);
    let total_cpu = share.total_cpu.max(0);
    let total_mem = share.total_mem.max(0);
    let own_cpu = total_cpu as f64 * (0.01 + 0.01 * noise(h, t));
    let used_cpu = ((vms.cpu + own_cpu).round() as i64).clamp(0, total_cpu);
    let own_mem = total_mem as f64 * (0.02 + 0.005 * noise(h, t ^ 1));
    let used_mem = vms
        .memory_kb
        .saturating_add(own_mem as i64)
        .clamp(0, total_mem);
    let dt = span(prev.map_or(0, |p| p.timestamp), now) as f64;
    let own_net = |seed: u64| ((1000.0 + 2000.0 * noise(h, t ^ seed)) * dt) as i64;
    let (netrx, nettx) = prev.map_or((0, 0), |p| (p.netrx, p.nettx));
    HostMonitoring {
        timestamp: now,
        free_cpu: total_cpu - used_cpu,
        free_memory: total_mem - used_mem,
        used_cpu,
        used_memory: used_mem,
        netrx: netrx.saturating_add(vms.netrx).saturating_add(own_net(3)),
        nettx: nettx.saturating_add(vms.nettx).saturating_add(own_net(4)),
    }
}

/// HOST_SHARE/DATASTORES: the system datastores of the host's cluster with their figures;
/// MAX_DISK / FREE_DISK / USED_DISK (OpenNebula's DS_LOCATION_* probe values, the file system
/// holding the datastores) from the first of them. Copies only when something differs.
pub fn set_datastores(share: &mut HostShare, ds: &[HostDs]) {
    if share.datastores != ds {
        share.datastores.clear();
        share.datastores.extend_from_slice(ds);
    }
    let (max, free, used) = ds
        .first()
        .map_or((0, 0, 0), |d| (d.total_mb, d.free_mb, d.used_mb));
    share.max_disk = max;
    share.free_disk = free;
    share.used_disk = used;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_repeatable_and_in_range() {
        assert_eq!(noise(1, 2), noise(1, 2));
        assert_ne!(noise(1, 2), noise(2, 1));
        for i in 0..1000 {
            let x = noise(i, i * 7);
            assert!((0.0..1.0).contains(&x));
        }
    }

    #[test]
    fn allocation_from_template() {
        let t = Template::parse("CPU=\"0.5\"\nMEMORY=\"128\"").unwrap();
        assert_eq!(vm_allocation(&t), (50.0, 131_072));
        let t = Template::parse("CPU=\"nan\"\nMEMORY=\"-1\"").unwrap();
        assert_eq!(vm_allocation(&t), (100.0, 262_144));
    }

    #[test]
    fn vm_sample_stays_within_allocation_and_counters_grow() {
        let mut mon = Template::new();
        mon.set("NETRX", "500");
        let first = sample_vm(7, 200.0, 1_048_576, &mut mon, 1000);
        assert_eq!(mon.attrs.len(), VM_ATTRS.len());
        assert_eq!(mon.get("ID"), Some("7"));
        assert_eq!(mon.get("TIMESTAMP"), Some("1000"));
        assert_eq!(mon.get("NETRX"), Some("500"), "first sample: kept, no span");
        assert!(first.cpu > 0.0 && first.cpu <= 200.0);
        assert!(first.memory_kb > 0 && first.memory_kb <= 1_048_576);
        let second = sample_vm(7, 200.0, 1_048_576, &mut mon, 1010);
        assert!(second.netrx > 0);
        assert_eq!(
            mon.get("NETRX").unwrap().parse::<i64>().unwrap(),
            500 + second.netrx
        );
        assert!(mon.get("DISKWRBYTES").unwrap().parse::<i64>().unwrap() > 0);
        // The XML is what vm.xsd's MONITORING sequence expects.
        let xml = mon.to_xml("MONITORING");
        assert!(xml.starts_with("<MONITORING><CPU>"), "{xml}");
        assert!(
            xml.ends_with("<TIMESTAMP>1010</TIMESTAMP></MONITORING>"),
            "{xml}"
        );
    }

    #[test]
    fn host_sample_adds_vms_and_stays_within_totals() {
        let share = HostShare {
            total_cpu: 800,
            total_mem: 1_000_000,
            ..HostShare::default()
        };
        let vms = VmUsage {
            cpu: 150.0,
            memory_kb: 400_000,
            netrx: 1000,
            nettx: 10,
        };
        let m = sample_host(1, &share, None, vms, 100);
        assert!(m.used_cpu >= 150 && m.used_cpu <= 150 + 16, "{m:?}");
        assert_eq!(m.free_cpu + m.used_cpu, 800);
        assert!(m.used_memory >= 400_000 && m.used_memory < 430_000);
        assert_eq!(m.free_memory + m.used_memory, 1_000_000);
        assert_eq!(
            (m.netrx, m.nettx),
            (1000, 10),
            "first sample: no own traffic yet"
        );
        let n = sample_host(1, &share, Some(&m), vms, 110);
        assert!(n.netrx >= m.netrx + 1000 + 10_000);
        // Over-committed VMs never push usage past the totals.
        let huge = VmUsage {
            cpu: 5000.0,
            memory_kb: 9_000_000,
            ..vms
        };
        let o = sample_host(1, &share, None, huge, 100);
        assert_eq!((o.used_cpu, o.free_cpu, o.free_memory), (800, 0, 0));
    }

    #[test]
    fn datastores_copied_only_when_different() {
        let mut share = HostShare::default();
        let ds = [HostDs {
            id: 0,
            total_mb: 100,
            free_mb: 60,
            used_mb: 40,
        }];
        set_datastores(&mut share, &ds);
        assert_eq!(share.datastores, ds);
        assert_eq!(
            (share.max_disk, share.free_disk, share.used_disk),
            (100, 60, 40)
        );
        set_datastores(&mut share, &[]);
        assert!(share.datastores.is_empty());
        assert_eq!(share.max_disk, 0);
    }
}
