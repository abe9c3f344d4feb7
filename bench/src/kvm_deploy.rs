//! Scenario `kvm-deploy`: the deploy overhead on a real KVM host (issue 4, Performance).
//!
//! Starts oned with a `localhost` kvm host (the real `one-node-agent` on the machine's
//! libvirtd, domain type qemu) and, `--deploys` times (after one warm-up round):
//! 1. allocates a VM of the test guest (tests/guest/build-guest.sh, direct kernel boot) and
//!    measures `one.vm.deploy` → `one.vm.info` shows ACTIVE/RUNNING (polled every 2 ms): the
//!    whole path, PROLOG (VM directory), BOOT (net_pre, deploy: domain XML + create, net_post);
//! 2. destroys it (`poweroff-hard`), then measures `virsh create` of the very deployment file
//!    the agent wrote (renamed, its own console log): what libvirt itself takes;
//! 3. measures `virsh uri` on the same connection URI: virsh's own start-up and connection,
//!    included in (2) but not in libvirt's work.
//!
//! Overhead = (1) − (2) per deploy; p50 / p95 of all of them. Needs root and libvirtd
//! (tests/hostenv/start-libvirtd.sh). Run on a release build:
//! `cargo build --release -p oned -p one-node-agent -p one-bench &&
//!  target/release/one-bench --scenario kvm-deploy --deploys 20`

use super::{Args, ms, start_oned};
use anyhow::{Context, bail};
use oca::Client;
use one_proto::xmlrpc::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const URI: &str = "qemu:///system";

pub(crate) fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

/// The first `<tag>` number in an XML body (the object's own STATE / LCM_STATE come first).
pub(crate) fn field(xml: &str, tag: &str) -> Option<i64> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find('<')?;
    xml[start..end].trim().parse().ok()
}

async fn vm_state(c: &Client, id: i64) -> anyhow::Result<(i64, i64)> {
    let xml = c.call_string("one.vm.info", vec![Value::Int(id)]).await?;
    Ok((
        field(&xml, "STATE").unwrap_or(-1),
        field(&xml, "LCM_STATE").unwrap_or(-1),
    ))
}

async fn wait_vm(
    c: &Client,
    id: i64,
    want: impl Fn((i64, i64)) -> bool,
    what: &str,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    loop {
        let st = vm_state(c, id).await?;
        if want(st) {
            return Ok(t.elapsed());
        }
        // ACTIVE in a *_FAILURE state, or FAILED: the VM's ERROR says why.
        if st.0 == 7 || (st.0 == 3 && matches!(st.1, 14 | 36..=50 | 61)) {
            let xml = c.call_string("one.vm.info", vec![Value::Int(id)]).await?;
            bail!("VM {id} failed ({st:?}) waiting for {what}: {xml}");
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!("VM {id} not {what} within 120 s (last state {st:?})");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs virsh; its duration when it succeeded.
fn virsh(args: &[&str]) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = Command::new("virsh")
        .arg("-q")
        .arg("-c")
        .arg(URI)
        .args(args)
        .output()
        .context("cannot run virsh")?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!(
            "virsh {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

/// The test guest's files, built (or found in its cache) by the project's script.
fn guest() -> anyhow::Result<(String, String, String)> {
    let dir =
        std::env::var("ONE_TEST_GUEST_DIR").unwrap_or_else(|_| "/var/tmp/one-rs-guest".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/guest/build-guest.sh");
    let out = Command::new(&script)
        .arg(&dir)
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let env = std::fs::read_to_string(Path::new(&dir).join("guest.env"))?;
    let get = |k: &str| -> Option<String> {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('\'').trim_matches('"').to_string())
    };
    Ok((
        get("GUEST_KERNEL").context("no GUEST_KERNEL in guest.env")?,
        get("GUEST_INITRD").context("no GUEST_INITRD in guest.env")?,
        get("GUEST_CMDLINE").unwrap_or_else(|| "console=ttyS0".into()),
    ))
}

/// Destroys what is left of the run's domains and their libvirt logs.
pub(crate) fn clean_up(prefix: &str) {
    if let Ok(out) = Command::new("virsh")
        .args(["-q", "-c", URI, "list", "--all", "--name"])
        .output()
    {
        for name in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if name.starts_with(prefix) {
                let _ = virsh(&["destroy", name]);
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/var/log/libvirt/qemu") {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

struct Round {
    vm: i64,
    oned: Duration,
    virsh: Duration,
    virsh_noop: Duration,
}

/// The agent's own duration of each VM's deploy operation (domain XML, deployment file,
/// libvirt create), from its `operation done` lines that oned's log carries.
fn agent_deploy_ms(oned_log: &str) -> std::collections::HashMap<i64, f64> {
    let num = |line: &str, key: &str| -> Option<i64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    oned_log
        .lines()
        .filter(|l| l.contains("operation done") && l.contains("op=\"deploy\""))
        .filter_map(|l| Some((num(l, " vm_id=")?, num(l, " ms=")? as f64)))
        .collect()
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    // SAFETY: geteuid only reads the process's credentials.
    if unsafe { libc::geteuid() } != 0 {
        bail!("kvm-deploy needs root (qemu:///system and the VM files' ownership)");
    }
    virsh(&["version"]).context("libvirtd does not answer (tests/hostenv/start-libvirtd.sh)")?;
    let (kernel, initrd, cmdline) = guest()?;
    let prefix = format!("bench{}-", std::process::id());
    let config = format!(
        "log_level = \"info,oned::hostmgr::transport=debug\"\n\
         [lcm]\nshutdown_timeout_seconds = 10\n[hosts]\ndomain_type = \"qemu\"\n\
         domain_prefix = \"{prefix}\"\nvnc_port_start = 15900\n"
    );
    let (oned, endpoint, session) = start_oned(&args, Some(&config))?;
    let result = measure(
        &args,
        &oned.dir,
        &endpoint,
        &session,
        &prefix,
        (&kernel, &initrd, &cmdline),
    )
    .await;
    clean_up(&prefix);
    drop(oned);
    result
}

async fn measure(
    args: &Args,
    dir: &Path,
    endpoint: &str,
    session: &str,
    prefix: &str,
    (kernel, initrd, cmdline): (&str, &str, &str),
) -> anyhow::Result<()> {
    let c = Client::new(endpoint.to_string(), session.to_string());
    let t = Instant::now();
    let hid = c
        .call_int(
            "one.host.allocate",
            vec![s("localhost"), s("kvm"), s("kvm"), Value::Int(-1)],
        )
        .await?;
    loop {
        let xml = c
            .call_string("one.host.info", vec![Value::Int(hid)])
            .await?;
        match field(&xml, "STATE") {
            Some(2) => break,
            Some(3) => bail!("host localhost in ERROR: {xml}"),
            _ => {}
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("host localhost not MONITORED within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "host localhost (kvm, real libvirt, domain type qemu) MONITORED in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let template = format!(
        "NAME=\"bench\"\nCPU=\"0.1\"\nVCPU=\"1\"\nMEMORY=\"128\"\n\
         OS=[KERNEL=\"{kernel}\", INITRD=\"{initrd}\", KERNEL_CMD=\"{cmdline}\"]\n\
         GRAPHICS=[TYPE=\"VNC\", LISTEN=\"127.0.0.1\"]\n"
    );
    let ds_dir = dir.join("datastores").join("0");
    let mut rounds = Vec::new();
    // One warm-up round: libvirt's first domain of a run is slower (caches).
    for i in 0..=args.deploys {
        let vid = c
            .call_int("one.vm.allocate", vec![s(&template), Value::Bool(false)])
            .await?;
        let t = Instant::now();
        c.call(
            "one.vm.deploy",
            vec![
                Value::Int(vid),
                Value::Int(hid),
                Value::Bool(false),
                Value::Int(0),
            ],
        )
        .await?;
        wait_vm(&c, vid, |st| st == (3, 3), "RUNNING").await?;
        let oned_took = t.elapsed();
        // Gone before libvirt's own run, so both start from the same machine load.
        c.call("one.vm.action", vec![s("poweroff-hard"), Value::Int(vid)])
            .await?;
        wait_vm(&c, vid, |st| st.0 == 8, "POWEROFF").await?;

        let vm_dir = ds_dir.join(vid.to_string());
        let deployment = std::fs::read_to_string(vm_dir.join("deployment.0"))
            .with_context(|| format!("no deployment file in {}", vm_dir.display()))?;
        let name = format!("{prefix}{vid}");
        let copy_name = format!("{prefix}copy-{vid}");
        let copy = deployment
            .replace(
                &format!("<name>{name}</name>"),
                &format!("<name>{copy_name}</name>"),
            )
            .replace("serial.log", "copy-serial.log");
        if copy == deployment || !copy.contains(&copy_name) {
            bail!("cannot rename the domain in {}", vm_dir.display());
        }
        let copy_file: PathBuf = vm_dir.join("copy.xml");
        std::fs::write(&copy_file, copy)?;
        let path = copy_file.to_string_lossy().to_string();
        let virsh_took = virsh(&["create", &path])?;
        virsh(&["destroy", &copy_name])?;
        let noop = virsh(&["uri"])?;
        if i > 0 {
            rounds.push(Round {
                vm: vid,
                oned: oned_took,
                virsh: virsh_took,
                virsh_noop: noop,
            });
        }
        println!(
            "deploy {i:>3}{}: one.vm.deploy -> RUNNING {}, virsh create {}, overhead {:+.1} ms",
            if i == 0 { " (warm-up)" } else { "" },
            ms(oned_took),
            ms(virsh_took),
            (oned_took.as_secs_f64() - virsh_took.as_secs_f64()) * 1000.0
        );
    }
    let log = std::fs::read_to_string(dir.join("oned.log")).unwrap_or_default();
    report(&rounds, &agent_deploy_ms(&log));
    Ok(())
}

fn report(rounds: &[Round], agent_ms: &std::collections::HashMap<i64, f64>) {
    let sorted = |f: &dyn Fn(&Round) -> f64| -> Vec<f64> {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    // The same nearest-rank rule as `percentile`, on seconds (a difference may be negative).
    let pct = |v: &[f64], p: f64| -> f64 {
        let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(idx).copied().unwrap_or(0.0) * 1000.0
    };
    // Rounds whose agent line was found (all of them unless the log lost some).
    let with_agent: Vec<(&Round, f64)> = rounds
        .iter()
        .filter_map(|r| agent_ms.get(&r.vm).map(|ms| (r, ms / 1000.0)))
        .collect();
    let mut in_agent: Vec<f64> = with_agent.iter().map(|(_, a)| *a).collect();
    in_agent.sort_by(f64::total_cmp);
    let mut outside: Vec<f64> = with_agent
        .iter()
        .map(|(r, a)| r.oned.as_secs_f64() - a)
        .collect();
    outside.sort_by(f64::total_cmp);
    let rows: [(&str, Vec<f64>); 6] = [
        (
            "one.vm.deploy -> RUNNING (oned + agent + libvirt)",
            sorted(&|r| r.oned.as_secs_f64()),
        ),
        (
            "virsh create of the same XML (libvirt alone)",
            sorted(&|r| r.virsh.as_secs_f64()),
        ),
        (
            "overhead: difference per deploy",
            sorted(&|r| r.oned.as_secs_f64() - r.virsh.as_secs_f64()),
        ),
        (
            "virsh uri (virsh start-up + connect, part of virsh create)",
            sorted(&|r| r.virsh_noop.as_secs_f64()),
        ),
        (
            "the agent's deploy operation (domain XML, file, libvirt create)",
            in_agent,
        ),
        (
            "everything but the agent's deploy operation (oned, protocol, prolog, net_*, polling)",
            outside,
        ),
    ];
    println!();
    println!("| {} deploys | p50 | p95 |", rounds.len());
    println!("|---|---|---|");
    for (name, v) in &rows {
        println!(
            "| {name} | {:.1} ms | {:.1} ms |",
            pct(v, 0.5),
            pct(v, 0.95)
        );
    }
}
