//! Scenario `agents` (`--scenario agents --hosts 1000 --interval 10 --seconds 60`): oned's
//! cost of N node agents.
//!
//! oned runs with `simulate_agents = true`: each host is a real `one-node-agent --stdio
//! --simulate` process on a local pipe, speaking the real protocol (handshake, keepalive,
//! monitoring pushes) and reporting this machine's real capacity, but simulating domains
//! instead of asking libvirt. Hosts are named after loopback addresses (127.1.x.y) so oned
//! reaches each through a local pipe. Host usage and VM usage are pushed every `--interval`
//! seconds. Once all hosts are MONITORED (and `--running-vms` VMs RUNNING on them), the
//! scenario idles for `--seconds` and reports oned's CPU (utime + stime from /proc) over that
//! window, its resident memory, and what the agents used together.

use super::{
    Args, allocate_hosts, cpu_seconds, dummy_hosts::deploy_vms, start_oned, wait_monitored,
};
use oca::Client;
use std::time::{Duration, Instant};

/// The loopback name of host `i` (127.1.0.1 ...): resolves to this machine.
fn host_name(i: usize) -> String {
    format!("127.1.{}.{}", i / 250, i % 250 + 1)
}

/// Pids of the processes whose parent is `parent` and whose command is `comm`.
fn children(parent: u32, comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((head, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let name = head.split_once('(').map(|(_, n)| n).unwrap_or("");
            // Field 4 (ppid) is the second after the command.
            let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            comm.starts_with(name) && ppid == Some(parent)
        })
        .collect()
}

/// Resident memory of a process in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let i = args.interval;
    let config = format!(
        "[hosts]\nsimulate_agents = true\nhost_usage_seconds = {i}\nvm_usage_seconds = {i}\n"
    );
    let (oned, endpoint, session) = start_oned(&args, Some(&config))?;
    let pid = oned.child.id();
    let client = Client::new(endpoint.clone(), session.clone());
    println!("oned at {endpoint} (pid {pid}), agents push every {i} s");

    let t = Instant::now();
    allocate_hosts(&endpoint, &session, args.hosts, host_name, "kvm").await?;
    wait_monitored(&client, args.hosts, Duration::from_secs(300)).await?;
    println!(
        "{} agents started, handshaken and MONITORED {:.1} s after the first host was created",
        args.hosts,
        t.elapsed().as_secs_f64()
    );
    if args.running_vms > 0 {
        deploy_vms(&endpoint, &session, &client, args.running_vms, args.hosts).await?;
    }

    let agents = children(pid, "one-node-agent");
    let agents_cpu = |pids: &[u32]| {
        pids.iter()
            .filter_map(|p| cpu_seconds(*p).ok())
            .sum::<f64>()
    };
    let (cpu0, acpu0) = (cpu_seconds(pid)?, agents_cpu(&agents));
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid)? - cpu0;
    let acpu = agents_cpu(&agents) - acpu0;
    println!();
    println!(
        "| agents | running VMs | push interval | window | oned CPU | oned RSS | all agents' CPU |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {i} s | {wall:.0} s | {:.2} % of a core | {:.0} MiB | {:.2} % of a core ({} processes) |",
        args.hosts,
        args.running_vms,
        100.0 * cpu / wall,
        rss_mib(pid),
        100.0 * acpu / wall,
        agents.len(),
    );
    drop(oned);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_distinct_loopback_addresses() {
        let names: std::collections::HashSet<String> = (0..1000).map(host_name).collect();
        assert_eq!(names.len(), 1000);
        for n in &names {
            let ip: std::net::IpAddr = n.parse().unwrap();
            assert!(ip.is_loopback(), "{n}");
        }
    }
}
