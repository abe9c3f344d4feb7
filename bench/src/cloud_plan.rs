//! Scenario `cloudfile`: `onecloud plan` against a cloud of 1,000 objects with 100 changes.
//!
//! Writes a cloud file of `--objects` objects (dummy hosts in host groups, clusters,
//! security groups, networks with an address range, datablock images, VM templates, groups
//! and users, ACL rules), applies it with the cloudfile library, then makes 100 changes: half
//! by hand in the cloud (a network attribute), half in the file (a template attribute). It then
//! measures, `--samples` times, the whole plan as `onecloud plan` does it (read and check the
//! file, read every pool, compare), and the `onecloud plan` command itself when it is next to
//! this program.

use super::{Args, measure, ms, start_oned};
use anyhow::{Context, bail};
use cloudfile::{ApplyOptions, LoadOptions, PlanOptions, Quiet};
use oca::Client;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// The cloud file: `n` objects in all, spread over the kinds.
fn cloud_file(n: usize, template_memory: impl Fn(usize) -> u32) -> (String, usize) {
    let hosts = n / 10;
    let clusters = 5;
    let secgroups = 10;
    let groups = 20;
    let users = 20;
    let acls = 20;
    let rest = n.saturating_sub(hosts + clusters + secgroups + groups + users + acls);
    let (networks, images) = (rest / 3, rest / 3);
    let templates = rest - networks - images;
    let mut s = String::from("cloud: bench\nclusters:\n");
    for c in 0..clusters {
        let _ = writeln!(s, "  c{c}: {{template: {{NOTE: cluster{c}}}}}");
    }
    s.push_str("host_groups:\n");
    for c in 0..clusters {
        let _ = writeln!(
            s,
            "  g{c}:\n    cluster: c{c}\n    im_mad: dummy\n    template: {{ROLE: r{c}}}\n    hosts:"
        );
        for h in (0..hosts).filter(|h| h % clusters == c) {
            let _ = writeln!(s, "      - h{h}");
        }
    }
    s.push_str("security_groups:\n");
    for i in 0..secgroups {
        let _ = writeln!(
            s,
            "  sg{i}:\n    rules:\n      - {{PROTOCOL: TCP, RULE_TYPE: inbound, RANGE: \"{}\"}}",
            1000 + i
        );
    }
    s.push_str("networks:\n");
    for i in 0..networks {
        let _ = writeln!(
            s,
            "  n{i}:\n    clusters: [c{}]\n    security_groups: [sg{}]\n    template: {{VN_MAD: dummy, BRIDGE: br{i}, DNS: 10.0.0.1}}\n    address_ranges: [{{TYPE: IP4, IP: 10.{}.{}.1, SIZE: 100}}]",
            i % clusters,
            i % secgroups,
            i / 250,
            i % 250
        );
    }
    s.push_str("images:\n");
    for i in 0..images {
        let _ = writeln!(s, "  i{i}: {{template: {{TYPE: DATABLOCK, SIZE: 1}}}}");
    }
    s.push_str("templates:\n");
    for i in 0..templates {
        let _ = writeln!(
            s,
            "  t{i}:\n    template: {{CPU: 0.1, MEMORY: {}, DISK: {{IMAGE: i{}}}, NIC: {{NETWORK: n{}}}}}",
            template_memory(i),
            i % images.max(1),
            i % networks.max(1)
        );
    }
    s.push_str("groups:\n");
    for i in 0..groups {
        let _ = writeln!(s, "  grp{i}: {{template: {{NOTE: g{i}}}}}");
    }
    s.push_str("users:\n");
    for i in 0..users {
        let _ = writeln!(
            s,
            "  u{i}: {{group: grp{}, password: {{file: password}}}}",
            i % groups
        );
    }
    s.push_str("acls:\n");
    for i in 0..acls {
        let _ = writeln!(s, "  - \"@grp{i} NET/%c{} USE\"", i % clusters);
    }
    (s, templates)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let n = args.objects;
    let (oned, endpoint, session) = start_oned(&args, None)?;
    let client = Client::new(endpoint.clone(), session.clone());
    let dir = oned.dir.join("cloud");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("cloud.yaml");
    std::fs::write(dir.join("password"), "bench-password\n")?;
    let (text, templates) = cloud_file(n, |_| 64);
    std::fs::write(&file, &text)?;
    let opts = LoadOptions {
        applier: client.username().to_owned(),
        ..LoadOptions::default()
    };
    let loaded = cloudfile::load(&file, &opts).map_err(|d| anyhow::anyhow!("{d}"))?;
    println!(
        "cloud file: {} objects, {} KB",
        loaded.objects.len(),
        text.len() / 1024
    );
    let t = Instant::now();
    let live = cloudfile::Live::read(&client).await?;
    let plan = cloudfile::plan(&loaded, &live, PlanOptions::default());
    let apply_opts = ApplyOptions {
        timeout: Duration::from_secs(60),
        poll: Duration::from_millis(20),
    };
    let report = cloudfile::apply(&client, &plan, &live, apply_opts, &mut Quiet).await?;
    if let Some(f) = &report.failed {
        bail!("applying the bench cloud failed at {}: {}", f.name, f.error);
    }
    println!(
        "applied {} changes in {:.1} s",
        report.done.len(),
        t.elapsed().as_secs_f64()
    );
    // 100 changes: 50 networks changed by hand, 50 templates changed in the file.
    let vnets = client
        .vnet()
        .list(oca::PoolFilter::All, oca::PoolRange::default())
        .await?;
    for v in vnets.iter().take(50) {
        client
            .vnet()
            .update(v.id, "CHANGED_BY_HAND=\"1\"", oca::UpdateMode::Merge)
            .await?;
    }
    let (text, _) = cloud_file(n, |i| if i < 50.min(templates) { 128 } else { 64 });
    std::fs::write(&file, &text)?;
    let check = {
        let live = cloudfile::Live::read(&client).await?;
        let f = cloudfile::load(&file, &opts).map_err(|d| anyhow::anyhow!("{d}"))?;
        cloudfile::plan(&f, &live, PlanOptions::default())
    };
    let changes = check.changes.iter().filter(|c| c.is_change()).count();
    println!(
        "plan: {} objects, {changes} changes ({} update, {} create)",
        check.changes.len(),
        check.summary.update,
        check.summary.create
    );
    if changes != 100 {
        bail!("expected 100 changes, the plan has {changes}");
    }
    let lib = measure(
        "plan (library: load + read pools + compare)",
        args.samples,
        |_| {
            let client = client.clone();
            let file = file.clone();
            let opts = opts.clone();
            async move {
                let f = cloudfile::load(&file, &opts).map_err(|d| anyhow::anyhow!("{d}"))?;
                let live = cloudfile::Live::read(&client).await?;
                let p = cloudfile::plan(&f, &live, PlanOptions::default());
                std::hint::black_box(p);
                Ok(())
            }
        },
    )
    .await?;
    println!(
        "{:<48} p50 {:>9}  p95 {:>9}  max {:>9}  (n={})",
        lib.name,
        ms(lib.p50),
        ms(lib.p95),
        ms(lib.max),
        lib.n
    );
    let bin = std::env::current_exe()?.with_file_name("onecloud");
    if bin.exists() {
        let auth = oned.dir.join("one_auth");
        let cmd = measure(
            "`onecloud plan` (the command, end to end)",
            args.samples,
            |_| {
                let bin = bin.clone();
                let file = file.clone();
                let endpoint = endpoint.clone();
                let auth = auth.clone();
                async move {
                    let out = tokio::process::Command::new(&bin)
                        .arg("plan")
                        .arg(&file)
                        .env("ONE_XMLRPC", &endpoint)
                        .env("ONE_AUTH", &auth)
                        .output()
                        .await
                        .context("running onecloud")?;
                    if !out.status.success() {
                        bail!("onecloud plan: {}", String::from_utf8_lossy(&out.stderr));
                    }
                    Ok(())
                }
            },
        )
        .await?;
        println!(
            "{:<48} p50 {:>9}  p95 {:>9}  max {:>9}  (n={})",
            cmd.name,
            ms(cmd.p50),
            ms(cmd.p95),
            ms(cmd.max),
            cmd.n
        );
    } else {
        println!(
            "({} not found: build it with cargo build --release -p one-cloudfile to time the command)",
            bin.display()
        );
    }
    Ok(())
}
