//! Scenario `storage` (issue 9, Performance): registration and upload of a 1 GiB file,
//! each side by side with what a user would do without the cloud, in the same run, on the
//! same disk, rounds alternating:
//!
//! 1. registration from a path: `one.image.allocate` with `PATH=<file>` → the image READY
//!    (polled every 5 ms), against `cp <file> <datastore dir>/x`;
//! 2. upload: `curl -T <file> http://.../upload` (through oned's byte stream into the
//!    staging area), against `curl -T <file>` to a plain HTTP sink in this program that
//!    writes the body to a file in the same directory (blocking std I/O, a thread per
//!    connection).
//!
//! Everything (the source, oned's data directory and datastores, the sink's file) lives
//! under `$TMPDIR` (default `/tmp`), which chooses the file system measured.
//!
//! With `--sync`, oned runs with `storage.sync_images = true` and the reference is
//! `cp` followed by `sync <copy>` (both flush the copy to the disk). The source file is read
//! once before the rounds, so every round reads it from the page cache. p50 of `--rounds`
//! rounds. Run on a release build:
//! `cargo build --release -p oned -p one-node-agent -p one-bench &&
//!  target/release/one-bench --scenario storage --rounds 5`
//!
//! Figures (2026-12-07, release build, `--rounds 5`, 2 shared cores at a load average of
//! 1.4-2.5), p50, one run on each file system:
//!
//! | measure | ext4 | vs reference | tmpfs | vs reference | target |
//! |---|---|---|---|---|---|
//! | `cp` to the datastore's directory | 292 ms | | 437 ms | | |
//! | registration from a path (allocate → READY) | 304 ms | 96 % | 464 ms | 94 % | ≥ 90 % |
//! | `curl -T` to a plain HTTP sink | 869 ms | | 890 ms | | |
//! | `curl -T` to `/upload` | 966 ms | 90 % | 1,070 ms | 83 % | ≥ 80 % |
//!
//! The machine's speed swings by up to 2x between runs; over three runs on tmpfs:
//! registration 94-99 %, upload 74-83 %. The upload has a floor near 0.9 s per GiB that
//! the tmpfs sink sometimes beats by more than 20 %.

use super::{Args, start_oned};
use anyhow::{Context, bail};
use oca::Client;
use one_proto::xmlrpc::Value;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;

fn field<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find('<')?;
    Some(&xml[start..end])
}

/// A 1 GiB file of incompressible bytes (made once, kept for the next run).
pub(crate) fn source_file(dir: &Path) -> anyhow::Result<PathBuf> {
    let p = dir.join("one-bench-1g.bin");
    if std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0) == GIB {
        return Ok(p);
    }
    let mut f = std::fs::File::create(&p)?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf)?;
    }
    f.sync_all()?;
    Ok(p)
}

pub(crate) fn run_timed(cmd: &mut Command) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = cmd.output().context("cannot run the reference command")?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(t.elapsed())
}

/// A plain HTTP sink: every PUT/POST body goes to a file in `dir` (then removed); answers 201.
/// Blocking std I/O, a thread per connection: what a minimal server written without the
/// cloud's machinery would do (std::io::copy, which splices on Linux).
fn sink(dir: PathBuf) -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/sink", l.local_addr()?);
    std::thread::spawn(move || {
        for (n, conn) in l.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let path = dir.join(format!("sink-{n}"));
            std::thread::spawn(move || {
                let Ok(read_half) = conn.try_clone() else {
                    return;
                };
                let mut r = std::io::BufReader::with_capacity(1 << 20, read_half);
                let mut len = 0u64;
                let mut expect = false;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let l = line.to_ascii_lowercase();
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if l.starts_with("expect:") && l.contains("100-continue") {
                        expect = true;
                    }
                }
                if expect {
                    let _ = conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                if let Ok(mut f) = std::fs::File::create(&path) {
                    let _ = std::io::copy(&mut (&mut r).take(len), &mut f);
                }
                let _ = conn.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
                let _ = std::fs::remove_file(&path);
            });
        }
    });
    Ok(url)
}

pub(crate) fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub(crate) fn rate(d: Duration) -> String {
    format!(
        "{:.0} ms ({:.0} MiB/s)",
        d.as_secs_f64() * 1000.0,
        1024.0 / d.as_secs_f64()
    )
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if Command::new("curl").arg("--version").output().is_err() {
        bail!("curl is needed (scripts/install-deps.sh)");
    }
    let config = format!("[storage]\nsync_images = {}\n", args.sync);
    let (oned, endpoint, auth) = start_oned(&args, Some(&config))?;
    let c = Client::new(endpoint.clone(), auth.clone());
    let data_dir = oned.dir.clone();
    // The datastore, ready (its directory made by the frontend agent).
    let ds_dir = data_dir.join("datastores").join("1");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ds_dir.join(".one-rs-datastore").exists() {
        if Instant::now() > deadline {
            bail!("the frontend agent did not make {}", ds_dir.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let src = source_file(&std::env::temp_dir())?;
    // Read once: every round then reads it from the page cache.
    run_timed(
        Command::new("cat")
            .arg(&src)
            .stdout(std::process::Stdio::null()),
    )?;
    let sink_url = sink(data_dir.clone())?;
    let upload_url = endpoint.replace("/RPC2", "/upload");
    println!(
        "oned at {endpoint}; source {} (1 GiB); {} rounds; sync_images = {}",
        src.display(),
        args.rounds,
        args.sync
    );

    let (mut cp, mut reg, mut curl_sink, mut curl_up) = (vec![], vec![], vec![], vec![]);
    for round in 0..args.rounds {
        let copy = ds_dir.join("cp-reference");
        let cp_run = || -> anyhow::Result<Duration> {
            let d = if args.sync {
                run_timed(Command::new("sh").arg("-c").arg(format!(
                    "cp '{}' '{}' && sync '{}'",
                    src.display(),
                    copy.display(),
                    copy.display()
                )))?
            } else {
                run_timed(Command::new("cp").arg(&src).arg(&copy))?
            };
            std::fs::remove_file(&copy)?;
            Ok(d)
        };
        let register = || async {
            let t = Instant::now();
            let id = c
                .call_int(
                    "one.image.allocate",
                    vec![
                        Value::String(format!(
                            "NAME=\"bench{round}\"\nTYPE=\"DATABLOCK\"\nPATH=\"{}\"",
                            src.display()
                        )),
                        Value::Int(1),
                    ],
                )
                .await?;
            loop {
                let xml = c
                    .call_string("one.image.info", vec![Value::Int(id)])
                    .await?;
                match field(&xml, "STATE") {
                    Some("1") => break,
                    Some("5") => bail!("image {id} in ERROR: {:?}", field(&xml, "ERROR")),
                    _ => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            let d = t.elapsed();
            c.call("one.image.delete", vec![Value::Int(id)]).await?;
            Ok::<_, anyhow::Error>(d)
        };
        if round % 2 == 0 {
            cp.push(cp_run()?);
            reg.push(register().await?);
        } else {
            reg.push(register().await?);
            cp.push(cp_run()?);
        }
        // Let the removals reach the disk before the uploads.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let curl_to = |url: &str, user: Option<&str>| -> anyhow::Result<Duration> {
            let mut cmd = Command::new("curl");
            cmd.args(["-s", "-f", "-o", "/dev/null", "-T"])
                .arg(&src)
                .arg(url);
            if let Some(u) = user {
                cmd.arg("-u").arg(u);
            }
            run_timed(&mut cmd)
        };
        let staged = data_dir.join("upload");
        let up = || -> anyhow::Result<Duration> {
            let d = curl_to(&upload_url, Some(&auth))?;
            for e in std::fs::read_dir(&staged)?.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
            Ok(d)
        };
        if round % 2 == 0 {
            curl_sink.push(curl_to(&sink_url, None)?);
            curl_up.push(up()?);
        } else {
            curl_up.push(up()?);
            curl_sink.push(curl_to(&sink_url, None)?);
        }
        println!(
            "round {round}: cp {:?} register {:?} | curl→sink {:?} curl→/upload {:?}",
            cp[round], reg[round], curl_sink[round], curl_up[round]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (cp, reg, curl_sink, curl_up) = (p50(cp), p50(reg), p50(curl_sink), p50(curl_up));
    let reference = if args.sync { "cp + sync" } else { "cp" };
    println!();
    println!(
        "| measure (1 GiB, p50 of {} rounds) | time | vs reference | target |",
        args.rounds
    );
    println!("|---|---|---|---|");
    println!(
        "| {reference} to the datastore's directory | {} | | |",
        rate(cp)
    );
    println!(
        "| registration from a path (allocate → READY) | {} | {:.0} % | ≥ 90 % |",
        rate(reg),
        100.0 * cp.as_secs_f64() / reg.as_secs_f64()
    );
    println!(
        "| curl -T to a plain HTTP sink (writes a file) | {} | | |",
        rate(curl_sink)
    );
    println!(
        "| curl -T to /upload (byte stream → staging area) | {} | {:.0} % | ≥ 80 % |",
        rate(curl_up),
        100.0 * curl_sink.as_secs_f64() / curl_up.as_secs_f64()
    );
    drop(oned);
    Ok(())
}
