//! Scenario `cli`: our command-line tools against the third-party Python CLI
//! (`opennebula-cli` from PyPI, built on pyone), in the same run against the same oned.
//!
//! Starts oned, creates `--hosts` dummy hosts and `--vms` VMs (a tenth of them deployed, so
//! lists show hosts), then times, as a user runs them (a fresh process each time, output to
//! a pipe that is drained and discarded):
//! 1. `onevm --help` (start-up of a command that makes no call);
//! 2. `onevm list` (the whole pool);
//! 3. `onevm show ID`;
//!
//! each `--samples` times for ours (`onevm` next to this program, a release build) and
//! `--compat-samples` times for the Python one (`--compat-dir`, default the test venv),
//! and the ratio of the medians. It also times oca reading the whole `one.vmpool.info`
//! answer into typed VMs (no process, no call).

use super::{Args, allocate_hosts, ms, percentile, start_oned, wait_monitored};
use anyhow::{Context, bail};
use oca::{Client, Object, Vm};
use one_proto::xmlrpc::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `bin args` with the cloud's endpoint and credentials; the wall time until it exits
/// having written all its output. Fails on a non-zero exit.
fn time_run(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<(Duration, usize)> {
    let t = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let mut out = Vec::new();
    child.stdout.take().expect("piped").read_to_end(&mut out)?;
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut err)?;
    let status = child.wait()?;
    let elapsed = t.elapsed();
    if !status.success() {
        bail!(
            "{} {} failed ({status}): {}",
            bin.display(),
            args.join(" "),
            err.trim()
        );
    }
    Ok((elapsed, out.len()))
}

struct Timing {
    p50: Duration,
    p95: Duration,
    bytes: usize,
}

fn sample(bin: &Path, args: &[&str], env: &[(&str, &str)], n: usize) -> anyhow::Result<Timing> {
    // One warm-up run (page cache, the server's first read of the pool).
    let (_, bytes) = time_run(bin, args, env)?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        times.push(time_run(bin, args, env)?.0);
    }
    times.sort();
    Ok(Timing {
        p50: percentile(&times, 0.5),
        p95: percentile(&times, 0.95),
        bytes,
    })
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let ours_dir = std::env::current_exe()?
        .parent()
        .context("no directory")?
        .to_path_buf();
    let ours = ours_dir.join("onevm");
    if !ours.is_file() {
        bail!(
            "{} not found: cargo build --release -p one-cli -p one-bench",
            ours.display()
        );
    }
    let compat = args
        .compat_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/var/tmp/one-rs-venv/bin"))
        .join("onevm");

    let (oned, endpoint, session) = start_oned(&args, None)?;
    let client = Client::new(endpoint.clone(), session.clone());
    println!("oned at {endpoint}");
    let auth = oned.dir.join("bench_auth");
    std::fs::write(&auth, format!("{session}\n"))?;
    let auth = auth.to_string_lossy().into_owned();
    let env = [
        ("ONE_XMLRPC", endpoint.as_str()),
        ("ONE_AUTH", auth.as_str()),
    ];

    // Fill: hosts, VMs, a tenth of them deployed.
    let hosts = args.hosts.max(1);
    allocate_hosts(
        &endpoint,
        &session,
        hosts,
        |i| format!("host{i:04}"),
        "dummy",
    )
    .await?;
    wait_monitored(&client, hosts, Duration::from_secs(120)).await?;
    let t = Instant::now();
    let template = "NAME=\"web\"\nCPU=\"0.1\"\nMEMORY=\"64\"\nVCPU=\"1\"\n\
                    NIC_DEFAULT=[MODEL=\"virtio\"]\nLABEL=\"benchmark\"\n";
    let workers = 8;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let c = Client::new(endpoint.clone(), session.clone());
        let n = args.vms;
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(workers) {
                let id = c
                    .call_int(
                        "one.vm.allocate",
                        vec![Value::String(template.into()), Value::Bool(false)],
                    )
                    .await?;
                if i % 10 == 0 {
                    c.call(
                        "one.vm.deploy",
                        vec![
                            Value::Int(id),
                            Value::Int((i / 10 % hosts) as i64),
                            Value::Bool(false),
                            Value::Int(-1),
                        ],
                    )
                    .await?;
                }
            }
            Ok::<_, oca::OcaError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "created {hosts} hosts and {} VMs ({} deployed) in {:.1} s",
        args.vms,
        args.vms.div_ceil(10),
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // oca alone: reading the whole pool into typed VMs.
    let xml = client
        .vm()
        .list_xml(&oca::VmQuery::default())
        .await
        .context("one.vmpool.info")?;
    let mut parse = Vec::new();
    let mut count = 0;
    for _ in 0..5 {
        let t = Instant::now();
        count = Vm::pool_from_xml(&xml)?.len();
        parse.push(t.elapsed());
    }
    parse.sort();
    println!(
        "oca: {count} VMs ({:.1} MB of XML) read into typed documents in {} (p50 of 5)",
        xml.len() as f64 / 1e6,
        ms(percentile(&parse, 0.5))
    );

    let show_id = (args.vms / 2).to_string();
    let cases: [(&str, Vec<&str>); 3] = [
        ("onevm --help", vec!["--help"]),
        ("onevm list", vec!["list"]),
        ("onevm show", vec!["show", &show_id]),
    ];
    println!();
    println!(
        "| command | ours p50 | ours p95 | Python opennebula-cli p50 | Python p95 | speed-up (p50) |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, a) in &cases {
        let mine = sample(&ours, a, &env, args.samples)?;
        let theirs = if compat.is_file() {
            Some(sample(&compat, a, &env, args.compat_samples)?)
        } else {
            None
        };
        match theirs {
            Some(th) => println!(
                "| `{name}` | {} | {} | {} | {} | {:.0}x |",
                ms(mine.p50),
                ms(mine.p95),
                ms(th.p50),
                ms(th.p95),
                th.p50.as_secs_f64() / mine.p50.as_secs_f64()
            ),
            None => println!(
                "| `{name}` | {} | {} | ({} not found) | | |",
                ms(mine.p50),
                ms(mine.p95),
                compat.display()
            ),
        }
        if *name == "onevm list" {
            println!("|   (ours printed {} bytes) | | | | | |", mine.bytes);
        }
    }
    drop(oned);
    Ok(())
}
