//! Scenario `lifecycle`: oned and one-scheduler together, VMs from allocation to RUNNING on
//! dummy hosts.
//!
//! Starts oned and `one-scheduler` (next to this program), creates `--hosts` dummy hosts and
//! waits until they are MONITORED, then measures
//! 1. latency: `--samples` VMs one after the other on an idle cloud, each from
//!    `one.vm.allocate` until `one.vm.info` shows ACTIVE/RUNNING (polled every 2 ms);
//! 2. throughput: `--vms` VMs allocated by 8 concurrent clients, the time from the first
//!    allocation until all of them are RUNNING.

use super::{Args, ms, percentile, running_count, start_oned};
use anyhow::{Context, bail};
use oca::Client;
use one_proto::xmlrpc::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Scheduler(Child);

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const TEMPLATE: &str = "NAME=bench\nCPU=0.01\nMEMORY=16\n";

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

async fn vm_state(c: &Client, id: i64) -> anyhow::Result<(i64, i64)> {
    let xml = c.call_string("one.vm.info", vec![Value::Int(id)]).await?;
    let field = |tag: &str| -> Option<i64> {
        let open = format!("<{tag}>");
        let start = xml.find(&open)? + open.len();
        let end = start + xml[start..].find('<')?;
        xml[start..end].parse().ok()
    };
    Ok((
        field("STATE").unwrap_or(-1),
        field("LCM_STATE").unwrap_or(-1),
    ))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = "[monitoring]\ndummy_interval_seconds = 2.0\n";
    let (oned, endpoint, session) = start_oned(&args, Some(config))?;
    let sched_bin = std::env::current_exe()?.with_file_name("one-scheduler");
    let auth_file = oned.dir.join("one_auth");
    let _sched = Scheduler(
        Command::new(&sched_bin)
            .arg("--endpoint")
            .arg(&endpoint)
            .arg("--auth-file")
            .arg(&auth_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", sched_bin.display()))?,
    );
    let c = Client::new(endpoint.clone(), session.clone());
    for i in 0..args.hosts {
        c.call_int(
            "one.host.allocate",
            vec![
                s(&format!("bench-{i}")),
                s("dummy"),
                s("dummy"),
                Value::Int(-1),
            ],
        )
        .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let xml = c.call_string("one.hostpool.info", vec![]).await?;
        if xml.matches("<STATE>2</STATE>").count() >= args.hosts {
            break;
        }
        if Instant::now() > deadline {
            bail!("hosts not MONITORED within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{} dummy hosts MONITORED; one-scheduler running",
        args.hosts
    );

    // 1. Latency on an idle cloud.
    let mut times = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let t = Instant::now();
        let id = c.call_int("one.vm.allocate", vec![s(TEMPLATE)]).await?;
        loop {
            if vm_state(&c, id).await? == (3, 3) {
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!("VM {id} not RUNNING within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "allocate -> RUNNING, one VM at a time ({} VMs): p50 {}  p95 {}  max {}",
        args.samples,
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.95)),
        ms(*times.last().unwrap_or(&Duration::ZERO))
    );

    // 2. Throughput.
    let before = running_count(&c).await?;
    let t = Instant::now();
    let clients = 8;
    let mut tasks = Vec::new();
    for k in 0..clients {
        let (endpoint, session) = (endpoint.clone(), session.clone());
        let n = args.vms / clients + usize::from(k < args.vms % clients);
        tasks.push(tokio::spawn(async move {
            let c = Client::new(endpoint, session);
            for _ in 0..n {
                c.call_int("one.vm.allocate", vec![s(TEMPLATE)]).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let allocated = t.elapsed();
    loop {
        if running_count(&c).await? >= before + args.vms {
            break;
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!("not all VMs RUNNING within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = t.elapsed();
    println!(
        "{} VMs on {} hosts: allocated in {:.2} s, all RUNNING {:.2} s after the first allocation",
        args.vms,
        args.hosts,
        allocated.as_secs_f64(),
        all.as_secs_f64()
    );
    drop(oned);
    Ok(())
}
