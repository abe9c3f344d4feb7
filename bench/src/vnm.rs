//! Scenario `vnm` (`--scenario vnm --samples 50`): the host side of virtual networks, with the
//! real tools (`ip`, `nft`) in a throwaway network namespace (root needed; no guests, no
//! oned). It times what the node agent does per NIC:
//!
//! 1. net_pre of a NIC whose bridge exists (security group and anti-spoofing rules loaded):
//!    the cost every deploy pays;
//! 2. net_pre of the first NIC of a new VXLAN network on the host (VXLAN device, bridge,
//!    rules), then its net_clean (untimed);
//! 3. 200 tap devices on a bridge, each a NIC with a security group: the group's rules
//!    change, and the time until all 200 NICs have the new rules, in one nft transaction.

use crate::Args;
use anyhow::{Context, bail};
use one_drivers::vnm::exec::{Exec, System};
use one_drivers::vnm::{VmNet, Vnm};
use one_proto::agent::NetworkConfig;
use one_proto::template::Template;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The real tools, counting the nft transactions.
struct Counting {
    inner: System,
    nft_calls: AtomicUsize,
}

impl Exec for Counting {
    fn ip(&self, args: &[String]) -> one_drivers::Result<String> {
        self.inner.ip(args)
    }
    fn nft(&self, script: &str, check_only: bool) -> one_drivers::Result<()> {
        if !check_only {
            self.nft_calls.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.nft(script, check_only)
    }
    fn nft_list(&self, table: &str) -> one_drivers::Result<Option<String>> {
        self.inner.nft_list(table)
    }
    fn sysctl(&self, name: &str) -> Option<String> {
        self.inner.sysctl(name)
    }
    fn modprobe(&self, name: &str) -> bool {
        self.inner.modprobe(name)
    }
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn sh(ns: &str, script: &str) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", script])
        .output()?;
    if !out.status.success() {
        bail!("{script}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn vm(id: i64, nic: &str, rules: &str) -> VmNet {
    let t = Template::parse(&format!("NIC=[NIC_ID=0, {nic}]\n{rules}")).expect("bench template");
    VmNet::from_template(id, &t).expect("bench NIC")
}

/// A NIC as oned leases it: MAC, IP, tap, the default group plus group 100, anti-spoofing.
fn nic_of(id: i64, net: &str) -> String {
    let (hi, lo) = (id / 250, id % 250 + 1);
    format!(
        "{net}, TARGET=\"one-{id}-0\", MAC=\"02:00:0a:01:{hi:02x}:{lo:02x}\", IP=\"10.1.{hi}.{lo}\", \
         SECURITY_GROUPS=\"0,100\", FILTER_IP_SPOOFING=YES, FILTER_MAC_SPOOFING=YES"
    )
}

const DEFAULT_RULES: &str = "SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=0, PROTOCOL=ALL, RULE_TYPE=OUTBOUND]\n\
     SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=0, PROTOCOL=ALL, RULE_TYPE=INBOUND]\n";

fn rules_v(version: usize) -> String {
    let mut r = String::from(DEFAULT_RULES);
    r.push_str(
        "SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=100, PROTOCOL=TCP, RULE_TYPE=INBOUND, RANGE=\"22,80,443\"]\n",
    );
    r.push_str(&format!(
        "SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=100, PROTOCOL=TCP, RULE_TYPE=INBOUND, RANGE=\"{}\"]\n",
        8000 + version
    ));
    if version % 2 == 1 {
        r.push_str(
            "SECURITY_GROUP_RULE=[SECURITY_GROUP_ID=100, PROTOCOL=ICMP, RULE_TYPE=INBOUND]\n",
        );
    }
    r
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn report(what: &str, mut v: Vec<Duration>, target: &str) {
    let (p50, p95) = (pct(&mut v, 0.5), pct(&mut v, 0.95));
    println!(
        "| {what} | {} | {} | {target} |",
        crate::ms(p50),
        crate::ms(p95)
    );
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(args)).await?
}

fn run_blocking(args: Args) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the vnm scenario needs root (network namespaces, bridges, nftables)");
    }
    let samples = args.samples.clamp(5, 200);
    let ns = Netns(format!("onebench{}", std::process::id() % 100_000));
    let _ = Command::new("ip").args(["netns", "del", &ns.0]).output();
    let out = Command::new("ip").args(["netns", "add", &ns.0]).output()?;
    if !out.status.success() {
        bail!("ip netns add: {}", String::from_utf8_lossy(&out.stderr));
    }
    sh(
        &ns.0,
        "ip link set lo up; ip link add eth0 type veth peer name eth0p; ip link set eth0 up; \
         ip link set eth0p up",
    )
    .context("the namespace's uplink")?;
    let x = Arc::new(Counting {
        inner: System::in_netns(ns.0.clone()),
        nft_calls: AtomicUsize::new(0),
    });
    let v = Vnm::new(x.clone(), NetworkConfig::default());
    println!(
        "vnm scenario in network namespace {} ({samples} samples)",
        ns.0
    );
    println!("| what | p50 | p95 | target |\n|---|---|---|---|");

    // 1. A NIC on an existing bridge: the bridge is made (and kept) by a first NIC.
    let bridge = "VN_MAD=bridge, BRIDGE=onebrb";
    v.pre(&vm(1, &nic_of(1, bridge), &rules_v(0)), None)?;
    let mut t1 = Vec::with_capacity(samples);
    for i in 0..samples as i64 {
        let nic = vm(10 + i, &nic_of(10 + i, bridge), &rules_v(0));
        let t = Instant::now();
        v.pre(&nic, None)?;
        t1.push(t.elapsed());
        v.clean(&nic, None)?;
    }
    report(
        "net_pre of a NIC, bridge exists (security groups + anti-spoofing loaded)",
        t1,
        "p50 < 20 ms",
    );

    // 2. The first NIC of a new VXLAN network on this host.
    let mut t2 = Vec::with_capacity(samples);
    for i in 0..samples as i64 {
        let vni = 100 + i;
        let net = format!("VN_MAD=vxlan, PHYDEV=eth0, VLAN_ID={vni}, BRIDGE=\"onebr.{vni}\"");
        let nic = vm(1000 + i, &nic_of(1000 + i, &net), &rules_v(0));
        let t = Instant::now();
        v.pre(&nic, None)?;
        t2.push(t.elapsed());
        v.clean(&nic, None)?;
    }
    report(
        "net_pre of the first NIC of a new VXLAN network (VXLAN device, bridge, rules)",
        t2,
        "p50 < 100 ms",
    );

    // 3. 200 taps with security groups; a rule change reaches all of them.
    let n = 200i64;
    let mut batch = String::from("link add onebr200 type bridge\nlink set onebr200 up\n");
    for i in 0..n {
        batch.push_str(&format!(
            "tuntap add dev one-{}-0 mode tap\nlink set one-{}-0 master onebr200 up\n",
            5000 + i,
            5000 + i
        ));
    }
    let out = Command::new("sh")
        .args([
            "-c",
            &format!("printf '%s' \"$B\" | ip -n {} -batch -", ns.0),
        ])
        .env("B", &batch)
        .output()?;
    if !out.status.success() {
        bail!("200 taps: {}", String::from_utf8_lossy(&out.stderr));
    }
    let net = "VN_MAD=bridge, BRIDGE=onebr200";
    let make = |version: usize| -> Vec<VmNet> {
        (0..n)
            .map(|i| vm(5000 + i, &nic_of(5000 + i, net), &rules_v(version)))
            .collect()
    };
    let t = Instant::now();
    let loaded = v.update_security_groups(&make(0))?;
    println!(
        "| first load of {loaded} NICs' rules (one transaction) | {} | | |",
        crate::ms(t.elapsed())
    );
    let mut t3 = Vec::with_capacity(samples);
    let mut transactions = Vec::with_capacity(samples);
    for s in 1..=samples {
        let vms = make(s);
        let before = x.nft_calls.load(Ordering::Relaxed);
        let t = Instant::now();
        let k = v.update_security_groups(&vms)?;
        t3.push(t.elapsed());
        transactions.push(x.nft_calls.load(Ordering::Relaxed) - before);
        anyhow::ensure!(k == n as usize, "{k} NICs updated, not {n}");
    }
    // The last change is everywhere: the profile with the last port is what every NIC's
    // inbound chain jumps to.
    let out = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, "nft", "list", "table", "bridge", "one_rs",
        ])
        .output()?;
    let rules = String::from_utf8_lossy(&out.stdout);
    let want = format!("tcp dport {} accept", 8000 + samples);
    let mut chain = "";
    let mut profile = None;
    for line in rules.lines() {
        let l = line.trim();
        if let Some(c) = l.strip_prefix("chain ") {
            chain = c.trim_end_matches(" {");
        } else if l == want {
            profile = Some(chain.trim_end_matches("_i").to_string());
        }
    }
    let profile = profile.context("no profile has the last rules")?;
    let have = rules.matches(&format!("jump {profile}_i")).count();
    anyhow::ensure!(
        have == n as usize,
        "{have} of {n} NICs jump to the last rules"
    );
    report(
        "security group change reaching 200 NICs on one host",
        t3,
        "< 1 s",
    );
    println!(
        "nft transactions per change: {:?} (all {n} NICs in each); taps on the bridge: {n}",
        transactions.iter().max()
    );
    Ok(())
}
