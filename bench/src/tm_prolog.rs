//! Scenario `tm-prolog`: the prolog of a non-persistent qcow2 disk on a shared system
//! datastore (issue 9, Performance), as the node agent runs it (`one_drivers::tm::vm::prolog`
//! with the `shared` driver on real files and real qemu-img): the VM directory, the qcow2
//! layout (`disk.0 -> disk.0.snap/0`), an overlay on the image with its backing format, the
//! format check of the image.
//!
//! Two images side by side in one run, a 1 GiB and a 20 GiB one (sparse qcow2 holding the
//! same 64 MiB of data), and the 20 GiB one grown to 40 GiB by the DISK's SIZE: `--samples`
//! prologs of each, interleaved, each into a fresh VM directory; beside them `qemu-img
//! create` of the same overlay alone, the tool's own cost. An overlay costs nothing that
//! grows with the image: the columns must not grow with its size.
//!
//! `cargo build --release -p one-bench && target/release/one-bench --scenario tm-prolog --samples 200`

use super::{Args, ms, percentile};
use anyhow::{Context, bail};
use one_drivers::tm::{self, VmDir, VmDisks};
use one_proto::template::Template;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn qemu(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("cannot run {}", args[0]))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

struct Row {
    name: &'static str,
    image: String,
    gib: u64,
    size_mb: u64,
    prolog: Vec<Duration>,
    tool: Vec<Duration>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let root = std::env::temp_dir().join(format!("one-bench-tm-{}", std::process::id()));
    let result = bench(&args, &root);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn bench(args: &Args, root: &Path) -> anyhow::Result<()> {
    let images = root.join("images/1");
    let ds = root.join("ds/0");
    std::fs::create_dir_all(&images)?;
    std::fs::create_dir_all(&ds)?;
    let mut rows = Vec::new();
    for (name, gib, grow) in [
        ("1 GiB image", 1u64, false),
        ("20 GiB image", 20, false),
        ("20 GiB image grown to 40 GiB", 20, true),
    ] {
        let image = images.join(format!("base-{gib}g.qcow2"));
        if !image.exists() {
            let p = image.to_str().context("path")?;
            qemu(&[
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                p,
                &format!("{gib}G"),
            ])?;
            // The same 64 MiB of data in both: the images are sparse, not empty.
            qemu(&["qemu-io", "-f", "qcow2", "-c", "write -q -P 0x5a 0 64M", p])?;
        }
        rows.push(Row {
            name,
            image: image.display().to_string(),
            gib,
            size_mb: if grow { gib * 2048 } else { gib * 1024 },
            prolog: Vec::new(),
            tool: Vec::new(),
        });
    }
    let drv = tm::driver(tm::TmMad::Shared, None)?;
    let n = args.samples.max(1);
    let mut vm_id = 0i64;
    // One warm-up round, then the samples, the rows interleaved.
    for i in 0..=n {
        for r in rows.iter_mut() {
            vm_id += 1;
            let t = Template::parse(&format!(
                "DISK=[DISK_ID=0, SOURCE=\"{}\", FORMAT=qcow2, CLONE=YES, SIZE={}, \
                 ORIGINAL_SIZE={}, TARGET=vda]",
                r.image,
                r.size_mb,
                r.gib * 1024
            ))?;
            let disks = VmDisks::from_template(&t)?;
            let vm = VmDir::new(&ds, vm_id)?;
            let start = Instant::now();
            tm::vm::prolog(drv.as_ref(), &vm, &disks)?;
            let took = start.elapsed();
            vm.remove()?;
            let overlay = ds.join(format!("overlay-{vm_id}"));
            let o = overlay.to_str().context("path")?;
            let start = Instant::now();
            qemu(&[
                "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", &r.image, o,
            ])?;
            let tool = start.elapsed();
            std::fs::remove_file(&overlay)?;
            if i > 0 {
                r.prolog.push(took);
                r.tool.push(tool);
            }
        }
    }
    println!(
        "prolog of a non-persistent qcow2 disk, shared datastore, {n} samples each (release build)"
    );
    println!(
        "{:<32} {:>12} {:>12} {:>22} {:>12}",
        "image", "prolog p50", "prolog p95", "qemu-img create p50", "p95"
    );
    for r in rows.iter_mut() {
        r.prolog.sort();
        r.tool.sort();
        println!(
            "{:<32} {:>12} {:>12} {:>22} {:>12}",
            r.name,
            ms(percentile(&r.prolog, 0.5)),
            ms(percentile(&r.prolog, 0.95)),
            ms(percentile(&r.tool, 0.5)),
            ms(percentile(&r.tool, 0.95)),
        );
    }
    let worst = rows
        .iter()
        .map(|r| percentile(&r.prolog, 0.5))
        .max()
        .unwrap_or_default();
    println!(
        "target: p50 < 100 ms for every image: {}",
        if worst < Duration::from_millis(100) {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
