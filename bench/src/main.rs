//! `one-bench`: starts a real `oned` on a free port with a fresh data directory, fills it with
//! hosts and VMs through the API, and measures the calls clients make most, from one client.
//!
//! Run it on a release build: `cargo run --release -p one-bench -- --vms 20000 --hosts 1250`.
//!
//! Scenario `dummy-hosts` (`--scenario dummy-hosts --hosts 10000`) measures monitoring
//! instead: it creates N dummy hosts, waits until all are MONITORED, then reads oned's CPU time
//! (/proc) and its monitoring round times (its log, at debug level for `oned::monitor`) over
//! `--seconds`, and the latency of `one.host.info` while rounds run.
//!
//! Scenario `lifecycle` (`--scenario lifecycle --hosts 100 --vms 1000 --samples 50`) starts
//! one-scheduler too and measures allocate → RUNNING, one VM at a time and 1,000 at once.
//!
//! Scenario `agents` (`--scenario agents --hosts 1000 --interval 10 --seconds 60`) measures
//! oned's cost of N node agents (simulated mode: real processes and protocol, no libvirt).
//!
//! Scenario `tm-prolog` (`--scenario tm-prolog --samples 200`) measures the prolog of a
//! non-persistent qcow2 disk for a 1 GiB and a 20 GiB image side by side.
//! Scenario `cli` (`--scenario cli --hosts 100 --vms 20000 --samples 20`) times our `onevm`
//! (`--help`, `list`, `show`) against the third-party Python `onevm` on the same cloud.
//! Scenario `vnm` (`--scenario vnm --samples 50`, root) measures the host side of virtual
//! networks in a throwaway network namespace (see `vnm.rs`).
//! Scenario `sunstone` (`--scenario sunstone --vms 20000 --samples 500`, with
//! `cargo build --release -p sunstone` first) measures the web console's pages with a large
//! pool and, in headless chromium, login -> dashboard drawn.
//!
//! Scenario `cloud-plan` (`--scenario cloud-plan --objects 1000 --samples 20`) measures
//! `onecloud plan` against a cloud of 1,000 objects with 100 changes.
//!
//! Scenario `storage` (`--scenario storage --rounds 5 [--sync]`) measures registration and
//! upload of 1 GiB against `cp` and `curl -T` to a plain sink, side by side.
//!
//! Scenario `local-transfer` (`--scenario local-transfer --rounds 5`, root) measures TM_MAD
//! `local` copying a 1 GiB image to a namespace host against `scp` to the same host.

use anyhow::{Context, bail};
use clap::Parser;
use oca::Client;
use one_proto::xmlrpc::Value;
use rand::Rng;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod agents;
mod cli;
mod cloud_plan;
mod dummy_hosts;
mod kvm_deploy;
mod lifecycle;
mod local_transfer;
mod storage;
mod sunstone;
mod tm_prolog;
mod vnm;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// API latency and allocation rate with many VMs.
    Api,
    /// Monitoring cost of many dummy hosts.
    DummyHosts,
    /// oned + one-scheduler: allocate → RUNNING latency and throughput on dummy hosts.
    Lifecycle,
    /// oned's cost of N node agents in simulated mode (real protocol over local pipes)
    /// pushing monitoring every `--interval` seconds.
    Agents,
    /// Deploy overhead on a real KVM host (localhost, libvirt): one.vm.deploy -> RUNNING
    /// minus `virsh create` of the same domain XML. Needs root and libvirtd.
    KvmDeploy,
    /// Prolog of a non-persistent qcow2 disk (the node agent's transfer driver on real
    /// files): a 1 GiB and a 20 GiB image side by side. Needs qemu-img and qemu-io.
    TmProlog,
    /// Our onevm (--help, list, show) against the third-party Python onevm, same cloud.
    Cli,
    /// Host-side virtual networks in a throwaway network namespace (no oned): NIC set-up on
    /// an existing bridge, the first NIC of a new VXLAN network, a security-group change
    /// reaching 200 NICs. Needs root.
    Vnm,
    /// The web console with `--vms` VMs of one user: page server times, and login ->
    /// dashboard in headless chromium (needs the sunstone binary next to this one).
    Sunstone,
    /// `onecloud plan` (load the file, read the pools, compare) against a cloud of
    /// `--objects` objects with 100 changes.
    CloudPlan,
    /// Registration of a 1 GiB file from a path against `cp`, and its upload against
    /// `curl -T` to a plain HTTP sink, side by side.
    Storage,
    /// TM_MAD `local`: deploy of a 1 GiB image onto a namespace host over SSH, until the
    /// VM leaves PROLOG, against `scp` of the file to the same host. Needs root.
    LocalTransfer,
}

#[derive(Parser, Debug)]
#[command(about = "Benchmark oned's API against a fresh oned started by this program")]
struct Args {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Scenario::Api)]
    scenario: Scenario,
    /// VMs to create before measuring.
    #[arg(long, default_value_t = 20_000)]
    vms: usize,
    /// Hosts to create before measuring.
    #[arg(long, default_value_t = 1_250)]
    hosts: usize,
    /// Samples per latency measurement.
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
    /// The oned binary (default: next to this program).
    #[arg(long)]
    oned: Option<PathBuf>,
    /// Database URL for oned (default: SQLite in the temporary data directory).
    #[arg(long)]
    db: Option<String>,
    /// dummy-hosts: seconds between monitoring rounds (oned's dummy_interval_seconds);
    /// agents: seconds between the agents' host and VM usage pushes.
    #[arg(long, default_value_t = 5.0)]
    interval: f64,
    /// dummy-hosts, agents: seconds over which CPU (and round times) are measured.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// dummy-hosts, agents: VMs deployed (one.vm.deploy, round-robin) on the hosts before
    /// measuring.
    #[arg(long, default_value_t = 0)]
    running_vms: usize,
    /// kvm-deploy: measured deploys (after one warm-up).
    #[arg(long, default_value_t = 20)]
    deploys: usize,
    /// cli: where the third-party Python CLI's onevm is (default /var/tmp/one-rs-venv/bin).
    #[arg(long)]
    compat_dir: Option<PathBuf>,
    /// cli: runs of each Python command (they are slow).
    #[arg(long, default_value_t = 3)]
    compat_samples: usize,
    /// cloud-plan: objects the cloud file declares.
    #[arg(long, default_value_t = 1_000)]
    objects: usize,
    /// storage, local-transfer: rounds of each measure.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// storage: oned flushes images to the disk (storage.sync_images), against cp + sync.
    #[arg(long)]
    sync: bool,
}

struct Oned {
    child: Child,
    dir: PathBuf,
}

impl Drop for Oned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_oned(args: &Args, config: Option<&str>) -> anyhow::Result<(Oned, String, String)> {
    let bin = match &args.oned {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("oned"),
    };
    let dir = std::env::temp_dir().join(format!("one-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut cmd = Command::new(&bin);
    cmd.arg("--data-dir")
        .arg(&dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env_remove("ONE_AUTH")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(db) = &args.db {
        cmd.arg("--db").arg(db);
    }
    if let Some(text) = config {
        let path = dir.join("bench-oned.toml");
        std::fs::write(&path, text)?;
        cmd.arg("--config").arg(path);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let oned = Oned { child, dir };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let (Ok(ep), Ok(auth)) = (
            std::fs::read_to_string(oned.dir.join("one_endpoint")),
            std::fs::read_to_string(oned.dir.join("one_auth")),
        ) && !ep.trim().is_empty()
            && !auth.trim().is_empty()
        {
            return Ok((oned, ep.trim().to_string(), auth.trim().to_string()));
        }
        if Instant::now() > deadline {
            bail!("oned did not write one_endpoint within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

struct Stats {
    name: String,
    p50: Duration,
    p95: Duration,
    max: Duration,
    n: usize,
}

async fn measure<F, Fut>(name: &str, n: usize, mut f: F) -> anyhow::Result<Stats>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i).await?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(Stats {
        name: name.to_string(),
        p50: percentile(&times, 0.5),
        p95: percentile(&times, 0.95),
        max: *times.last().unwrap_or(&Duration::ZERO),
        n,
    })
}

/// Creates hosts `name(0..n)` with the given IM/VM drivers from 8 clients at once (creating
/// is not what the scenarios measure).
async fn allocate_hosts(
    endpoint: &str,
    session: &str,
    n: usize,
    name: fn(usize) -> String,
    mad: &'static str,
) -> anyhow::Result<()> {
    let workers = 8;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let c = Client::new(endpoint.to_string(), session.to_string());
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(workers) {
                c.call(
                    "one.host.allocate",
                    vec![
                        Value::String(name(i)),
                        Value::String(mad.into()),
                        Value::String(mad.into()),
                        Value::Int(-1),
                    ],
                )
                .await?;
            }
            Ok::<_, oca::OcaError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Waits until `n` hosts are MONITORED.
async fn wait_monitored(c: &Client, n: usize, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let pool = c.call_string("one.hostpool.info", vec![]).await?;
        // "<STATE>2</STATE>" cannot match PREV_STATE (its tag does not start right after '<').
        let monitored = pool.matches("<STATE>2</STATE>").count();
        if monitored >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "only {monitored} of {n} hosts MONITORED after {} s",
                within.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many VMs are ACTIVE/RUNNING.
async fn running_count(c: &Client) -> anyhow::Result<usize> {
    // State filter 3 (ACTIVE): count the RUNNING ones in the short bodies.
    let xml = c
        .call_string(
            "one.vmpool.info",
            vec![
                Value::Int(-2),
                Value::Int(-1),
                Value::Int(-1),
                Value::Int(3),
            ],
        )
        .await?;
    Ok(xml.matches("<LCM_STATE>3</LCM_STATE>").count())
}

/// CPU seconds (user + system) a process has used so far.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc/pid/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).context("no utime")?.parse::<f64>()?
        + f.get(12).context("no stime")?.parse::<f64>()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Ok(ticks / if hz > 0 { hz as f64 } else { 100.0 })
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.scenario {
        Scenario::Api => api(args).await,
        Scenario::DummyHosts => dummy_hosts::run(args).await,
        Scenario::Lifecycle => lifecycle::run(args).await,
        Scenario::Agents => agents::run(args).await,
        Scenario::KvmDeploy => kvm_deploy::run(args).await,
        Scenario::TmProlog => tm_prolog::run(args).await,
        Scenario::Cli => cli::run(args).await,
        Scenario::Vnm => vnm::run(args).await,
        Scenario::Sunstone => sunstone::run(args).await,
        Scenario::CloudPlan => cloud_plan::run(args).await,
        Scenario::Storage => storage::run(args).await,
        Scenario::LocalTransfer => local_transfer::run(args).await,
    }
}

async fn api(args: Args) -> anyhow::Result<()> {
    let (_oned, endpoint, session) = start_oned(&args, None)?;
    let client = Client::new(endpoint.clone(), session.clone());
    println!("oned at {endpoint}");

    // Fill: hosts, then VMs, with a few concurrent clients (filling is not what we measure).
    let t = Instant::now();
    for i in 0..args.hosts {
        client
            .call(
                "one.host.allocate",
                vec![
                    Value::String(format!("host{i:05}")),
                    Value::String("dummy".into()),
                    Value::String("dummy".into()),
                    Value::Int(-1),
                ],
            )
            .await?;
    }
    println!(
        "created {} hosts in {:.1} s",
        args.hosts,
        t.elapsed().as_secs_f64()
    );

    let template = "NAME=\"bench\"\nCPU=\"0.1\"\nMEMORY=\"64\"\nVCPU=\"1\"\nLABEL=\"benchmark\"\n";
    let workers = 8;
    let per = args.vms.div_ceil(workers);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let c = Client::new(endpoint.clone(), session.clone());
        let n = per.min(args.vms.saturating_sub(w * per));
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                c.call(
                    "one.vm.allocate",
                    vec![Value::String(template.into()), Value::Bool(false)],
                )
                .await?;
            }
            Ok::<_, oca::OcaError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let fill = t.elapsed();
    println!(
        "created {} VMs in {:.1} s with {workers} clients ({:.0}/s)",
        args.vms,
        fill.as_secs_f64(),
        args.vms as f64 / fill.as_secs_f64()
    );

    // Allocation rate from ONE client, sequential calls.
    let n_alloc = 2_000;
    let t = Instant::now();
    for _ in 0..n_alloc {
        client
            .call(
                "one.vm.allocate",
                vec![Value::String(template.into()), Value::Bool(false)],
            )
            .await?;
    }
    let alloc_rate = n_alloc as f64 / t.elapsed().as_secs_f64();

    let total_vms = (args.vms + n_alloc) as i64;
    let mut rng = rand::rng();
    let vm_ids: Vec<i64> = (0..args.samples)
        .map(|_| rng.random_range(0..total_vms))
        .collect();
    let host_ids: Vec<i64> = (0..args.samples)
        .map(|_| rng.random_range(0..args.hosts.max(1) as i64))
        .collect();
    let pages: Vec<i64> = (0..200)
        .map(|_| rng.random_range(0..(total_vms - 100).max(1)))
        .collect();

    let mut results = Vec::new();
    results.push(
        measure("one.vm.info", args.samples, |i| {
            let c = &client;
            let id = vm_ids[i];
            async move {
                c.call("one.vm.info", vec![Value::Int(id), Value::Bool(false)])
                    .await?;
                Ok(())
            }
        })
        .await?,
    );
    results.push(
        measure("one.host.info", args.samples, |i| {
            let c = &client;
            let id = host_ids[i];
            async move {
                c.call("one.host.info", vec![Value::Int(id), Value::Bool(false)])
                    .await?;
                Ok(())
            }
        })
        .await?,
    );
    results.push(
        measure("one.vmpool.info, 100-VM page", pages.len(), |i| {
            let c = &client;
            let off = pages[i];
            async move {
                c.call(
                    "one.vmpool.info",
                    vec![
                        Value::Int(-2),
                        Value::Int(off),
                        Value::Int(-100),
                        Value::Int(-1),
                    ],
                )
                .await?;
                Ok(())
            }
        })
        .await?,
    );
    let whole_len = std::cell::Cell::new(0usize);
    let whole = measure("one.vmpool.info, whole pool", 5, |_| {
        let c = &client;
        let len = &whole_len;
        async move {
            let v = c
                .call(
                    "one.vmpool.info",
                    vec![
                        Value::Int(-2),
                        Value::Int(-1),
                        Value::Int(-1),
                        Value::Int(-1),
                    ],
                )
                .await?;
            if let Value::String(s) = v {
                len.set(s.len());
            }
            Ok(())
        }
    })
    .await?;
    results.push(whole);

    println!();
    println!("| call | samples | p50 | p95 | max |");
    println!("|---|---|---|---|---|");
    for s in &results {
        println!(
            "| {} | {} | {} | {} | {} |",
            s.name,
            s.n,
            ms(s.p50),
            ms(s.p95),
            ms(s.max)
        );
    }
    println!(
        "| one.vm.allocate, one client, sequential | {n_alloc} | {alloc_rate:.0} calls/s | | |"
    );
    println!();
    println!(
        "pool: {total_vms} VMs, {} hosts; whole vmpool.info body {:.1} MB",
        args.hosts,
        whole_len.get() as f64 / 1e6
    );
    Ok(())
}
