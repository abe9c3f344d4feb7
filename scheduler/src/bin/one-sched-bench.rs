//! one-sched-bench: how long one scheduling pass takes on a large synthetic cloud.
//!
//! Builds HOST_POOL / DATASTORE_POOL / VM_POOL documents shaped like oned's (2,500 hosts in
//! 4 clusters (`--clusters`) with varied attributes, some disabled; 10,000 pending VMs with mixed
//! requirements and some custom ranks), then measures parsing them and placing every VM,
//! wall-clock and CPU time. Run it in release mode:
//!
//! ```sh
//! cargo run --release -p one-scheduler --bin one-sched-bench
//! ```

use anyhow::Result;
use clap::Parser;
use one_scheduler::model::{DatastorePool, HostPool, parse_cluster_pool, parse_vm_pool};
use one_scheduler::policy::HostPolicy;
use one_scheduler::synth::{DsSpec, HostSpec, VmSpec, ds_pool_xml, host_pool_xml, vm_pool_xml};
use one_scheduler::{PlaceConfig, schedule};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Measures one scheduling pass on a synthetic cloud (run with --release)")]
struct Args {
    /// Hosts in the synthetic cloud.
    #[arg(long, default_value_t = 2500)]
    hosts: i64,
    /// Pending VMs to place.
    #[arg(long, default_value_t = 10000)]
    vms: i64,
    /// Passes to run (the best and median are shown).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Host policy: 0 packing, 1 striping, 2 load-aware.
    #[arg(long, default_value_t = 1)]
    policy: i64,
    /// Clusters the hosts (and the VMs' AUTOMATIC_REQUIREMENTS) are spread over.
    #[arg(long, default_value_t = 4)]
    clusters: i64,
}

/// CPU time of this process so far (user + system).
fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes the struct it is given; RUSAGE_SELF is always valid.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Runs `f`, returning its result with wall-clock and CPU time.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (w, c) = (Instant::now(), cpu_time());
    let r = f();
    (r, w.elapsed(), cpu_time() - c)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn synth_hosts(n: i64, clusters: i64) -> Vec<HostSpec> {
    (0..n)
        .map(|i| {
            let mut h = HostSpec::new(i);
            h.cluster_id = i % clusters;
            h.template = vec![
                ("ARCH".into(), "x86_64".into()),
                ("CPUSPEED".into(), (1800 + (i % 7) * 200).to_string()),
                ("HOSTNAME".into(), format!("node{i:05}.example.org")),
                ("HYPERVISOR".into(), "kvm".into()),
                (
                    "MODELNAME".into(),
                    "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz".into(),
                ),
                ("RESERVED_CPU".into(), String::new()),
                ("RESERVED_MEM".into(), String::new()),
                ("TOTALCPU".into(), "800".into()),
                ("TOTALMEMORY".into(), "16777216".into()),
                ("VERSION".into(), "7.0.0".into()),
            ];
            if i % 10 == 0 {
                h.template.push(("GPU".into(), "nvidia-a100".into()));
            }
            if i % 50 == 7 {
                h.state = 4; // a few disabled hosts
            }
            // Some load already.
            h.running_vms = i % 5;
            h.cpu_usage = (i % 5) * 50;
            h.mem_usage = (i % 5) * 1_048_576;
            h.free_cpu = Some(800 - (i % 9) * 60);
            h.datastores = vec![(0, 500_000, 1_000_000)];
            h
        })
        .collect()
}

fn synth_vms(n: i64, clusters: i64) -> Vec<VmSpec> {
    (0..n)
        .map(|i| {
            let cluster = i % clusters;
            let mut v = VmSpec::pending(
                10_000 + i,
                [0.5, 1.0, 2.0][(i % 3) as usize],
                512 * (1 + i % 4),
            );
            v.automatic_requirements = format!("(CLUSTER_ID = {cluster}) & !(PIN_POLICY = PINNED)");
            v.automatic_ds_requirements = format!("(\"CLUSTERS/ID\" @> {cluster})");
            v.requirements = match i % 10 {
                0..=5 => String::new(),
                6 | 7 => "CPUSPEED > 2000".into(),
                8 => "HYPERVISOR = kvm & ARCH = \"x86*\"".into(),
                _ => "GPU = \"nvidia-*\" | CPUSPEED > 2800".into(),
            };
            v.rank = match i % 20 {
                0 => "FREE_CPU".into(),
                1 => "CPUSPEED / 100 - RUNNING_VMS".into(),
                _ => String::new(),
            };
            v.user_priority = (i % 100 == 0).then_some(5);
            v.volatile_disks_mb = vec![1024];
            v
        })
        .collect()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let cfg = PlaceConfig {
        host_policy: HostPolicy::from_number(args.policy, "").map_err(anyhow::Error::msg)?,
        ..PlaceConfig::default()
    };
    let hosts_xml = host_pool_xml(&synth_hosts(args.hosts, args.clusters.max(1)));
    let mut dss: Vec<DsSpec> = (0..args.clusters.max(1))
        .map(|c| {
            let mut d = DsSpec::system(100 + c);
            d.clusters = vec![c];
            d.total_mb = 100_000_000;
            d.free_mb = 100_000_000;
            d
        })
        .collect();
    dss.push(DsSpec::system(0));
    let ds_xml = ds_pool_xml(&dss);
    let vms_xml = vm_pool_xml(&synth_vms(args.vms, args.clusters.max(1)));
    let clusters_xml = format!(
        "<CLUSTER_POOL>{}</CLUSTER_POOL>",
        (0..args.clusters.max(1))
            .map(|c| format!("<CLUSTER><ID>{c}</ID><NAME>c{c}</NAME><HOSTS/><DATASTORES/><VNETS/><TEMPLATE><RESERVED_CPU></RESERVED_CPU></TEMPLATE></CLUSTER>"))
            .collect::<String>()
    );
    println!(
        "synthetic cloud: {} hosts ({:.1} MB of HOST_POOL XML), {} pending VMs ({:.1} MB of VM_POOL XML), policy {}",
        args.hosts,
        hosts_xml.len() as f64 / 1e6,
        args.vms,
        vms_xml.len() as f64 / 1e6,
        cfg.host_policy.rank()
    );

    let mut parse_hosts = Vec::new();
    let mut parse_vms = Vec::new();
    let mut passes = Vec::new();
    let mut placed = 0;
    let mut unplaced = Vec::new();
    for _ in 0..args.runs.max(1) {
        let (hp, w, c) = timed(|| -> Result<HostPool> {
            let mut hp = HostPool::parse(&hosts_xml)?;
            hp.attach_clusters(&parse_cluster_pool(&clusters_xml)?);
            Ok(hp)
        });
        let hp = hp?;
        parse_hosts.push((w, c));
        let (vms, w, c) = timed(|| parse_vm_pool(&vms_xml));
        let vms = vms?;
        parse_vms.push((w, c));
        let dp = DatastorePool::parse(&ds_xml)?;
        let (out, w, c) = timed(|| schedule(&vms, &hp, &dp, &cfg));
        passes.push((w, c));
        placed = out.decisions.len();
        unplaced = out.unplaced;
    }
    let show = |name: &str, v: &mut Vec<(Duration, Duration)>| {
        v.sort();
        let (bw, bc) = v[0];
        let (mw, mc) = v[v.len() / 2];
        println!(
            "{name:<34} best {} wall / {} CPU, median {} wall / {} CPU",
            ms(bw),
            ms(bc),
            ms(mw),
            ms(mc)
        );
    };
    show("parse HOST_POOL (+ clusters)", &mut parse_hosts);
    show("parse VM_POOL (infoextended)", &mut parse_vms);
    show("scheduling pass", &mut passes);
    println!(
        "placed {placed} VMs, {} could not be placed",
        unplaced.len()
    );
    if let Some(u) = unplaced.first() {
        println!("for example: {}", u.message);
    }
    Ok(())
}
