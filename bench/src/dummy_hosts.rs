//! Scenario `dummy-hosts`: the cost of monitoring N simulated hosts.
//!
//! oned runs with `dummy_interval_seconds = --interval` and debug logs for `oned::monitor`,
//! whose every round logs `plan_us`, `commit_us` and `sample_us`. Once all hosts are
//! MONITORED the scenario idles for `--seconds` and reports oned's CPU time over that window
//! (utime + stime from /proc/<pid>/stat) and the rounds it logged, then measures
//! `one.host.info` while rounds keep running.

use super::{
    Args, allocate_hosts, cpu_seconds, measure, ms, running_count, start_oned, wait_monitored,
};
use anyhow::bail;
use oca::Client;
use one_proto::xmlrpc::Value;
use rand::Rng;
use std::path::Path;
use std::time::{Duration, Instant};

/// One logged round: (full, hosts, plan µs, commit µs, sample µs).
#[derive(Debug, Default, Clone, Copy)]
struct Round {
    full: bool,
    hosts: u64,
    plan: u64,
    commit: u64,
    sample: u64,
}

impl Round {
    fn total_us(&self) -> u64 {
        self.plan + self.commit + self.sample
    }
}

/// The rounds logged after byte `from` of oned.log.
fn rounds_since(log: &Path, from: u64) -> anyhow::Result<Vec<Round>> {
    let text = std::fs::read(log)?;
    let tail = String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).into_owned();
    let mut out = Vec::new();
    for line in tail
        .lines()
        .filter(|l| l.contains("dummy monitoring round"))
    {
        let mut r = Round::default();
        for tok in line.split_whitespace() {
            let Some((k, v)) = tok.split_once('=') else {
                continue;
            };
            let n = v.parse::<u64>().unwrap_or(0);
            match k {
                "full" => r.full = v == "true",
                "hosts" => r.hosts = n,
                "plan_us" => r.plan = n,
                "commit_us" => r.commit = n,
                "sample_us" => r.sample = n,
                _ => {}
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// Allocates `n` small VMs and deploys them round-robin on hosts 0..hosts, then waits until
/// all are RUNNING.
pub(crate) async fn deploy_vms(
    endpoint: &str,
    session: &str,
    client: &Client,
    n: usize,
    hosts: usize,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let workers = 8;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let c = Client::new(endpoint.to_string(), session.to_string());
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(workers) {
                let id = c
                    .call(
                        "one.vm.allocate",
                        vec![
                            Value::String(
                                "NAME=\"mon\"\nCPU=\"0.5\"\nVCPU=\"1\"\nMEMORY=\"512\"".into(),
                            ),
                            Value::Bool(false),
                        ],
                    )
                    .await?;
                let Value::Int(id) = id else {
                    anyhow::bail!("one.vm.allocate answered {id:?}");
                };
                c.call(
                    "one.vm.deploy",
                    vec![
                        Value::Int(id),
                        Value::Int((i % hosts.max(1)) as i64),
                        Value::Bool(false),
                        Value::Int(-1),
                    ],
                )
                .await?;
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let running = running_count(client).await?;
        if running >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {running} of {n} VMs RUNNING after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "deployed {n} VMs, all RUNNING after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = format!(
        "log_level = \"info,oned::monitor=debug\"\n[monitoring]\ndummy_interval_seconds = {}\n",
        args.interval
    );
    let (oned, endpoint, session) = start_oned(&args, Some(&config))?;
    let pid = oned.child.id();
    let log = oned.dir.join("oned.log");
    let client = Client::new(endpoint.clone(), session.clone());
    println!(
        "oned at {endpoint} (pid {pid}), dummy interval {} s",
        args.interval
    );

    let t = Instant::now();
    allocate_hosts(
        &endpoint,
        &session,
        args.hosts,
        |i| format!("dummy{i:05}"),
        "dummy",
    )
    .await?;
    println!(
        "created {} dummy hosts in {:.1} s",
        args.hosts,
        t.elapsed().as_secs_f64()
    );
    wait_monitored(&client, args.hosts, Duration::from_secs(120)).await?;
    println!(
        "all {} hosts MONITORED {:.1} s after the first was created",
        args.hosts,
        t.elapsed().as_secs_f64()
    );

    if args.running_vms > 0 {
        deploy_vms(&endpoint, &session, &client, args.running_vms, args.hosts).await?;
    }

    // Idle window: only monitoring runs.
    let from = std::fs::metadata(&log)?.len();
    let cpu0 = cpu_seconds(pid)?;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let cpu = cpu_seconds(pid)? - cpu0;
    let wall = t.elapsed().as_secs_f64();
    let rounds: Vec<Round> = rounds_since(&log, from)?
        .into_iter()
        .filter(|r| r.full)
        .collect();
    if rounds.is_empty() {
        bail!("no monitoring round logged in {wall:.0} s (is oned::monitor logging at debug?)");
    }
    let mut totals: Vec<u64> = rounds.iter().map(Round::total_us).collect();
    totals.sort_unstable();
    let mean =
        |f: fn(&Round) -> u64| rounds.iter().map(f).sum::<u64>() as f64 / rounds.len() as f64;
    println!();
    println!(
        "| dummy hosts | running VMs | rounds in {wall:.0} s | round p50 | round max | decide | commit | sample | oned CPU | CPU per round |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} % of a core | {:.1} ms |",
        rounds[0].hosts,
        args.running_vms,
        rounds.len(),
        totals[totals.len() / 2] as f64 / 1000.0,
        *totals.last().unwrap_or(&0) as f64 / 1000.0,
        mean(|r| r.plan) / 1000.0,
        mean(|r| r.commit) / 1000.0,
        mean(|r| r.sample) / 1000.0,
        100.0 * cpu / wall,
        1000.0 * cpu / rounds.len() as f64,
    );

    // Reads while rounds run: the samples are written under the write lock in chunks.
    let mut rng = rand::rng();
    let ids: Vec<i64> = (0..args.samples)
        .map(|_| rng.random_range(0..args.hosts.max(1) as i64))
        .collect();
    let info = measure("one.host.info during monitoring", args.samples, |i| {
        let c = &client;
        let id = ids[i];
        async move {
            c.call("one.host.info", vec![Value::Int(id), Value::Bool(false)])
                .await?;
            Ok(())
        }
    })
    .await?;
    let whole = measure("one.hostpool.info (whole pool)", 5, |_| {
        let c = &client;
        async move {
            c.call("one.hostpool.info", vec![]).await?;
            Ok(())
        }
    })
    .await?;
    println!();
    println!("| call | samples | p50 | p95 | max |");
    println!("|---|---|---|---|---|");
    for s in [&info, &whole] {
        println!(
            "| {} | {} | {} | {} | {} |",
            s.name,
            s.n,
            ms(s.p50),
            ms(s.p95),
            ms(s.max)
        );
    }
    drop(oned);
    Ok(())
}
