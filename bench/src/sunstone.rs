//! Scenario `sunstone`: the web console with a large pool. Starts oned, lets a plain user
//! create `--vms` VMs (20,000 by default), starts the `sunstone` binary next to this program,
//! logs in over HTTP and measures the pages users open most: the VM list (first page, a page
//! deep in the pool, a name search and a state filter that scan the whole pool), the poll
//! an open list makes every second, a VM's page and the dashboard. Each figure is the time
//! sunstone reports in its `Server-Timing` header (oned's calls included), with the time an
//! HTTP client on the same machine saw beside it.
//!
//! Then, when Python with selenium and Debian's chromium are there, `bench/sunstone_browser.py`
//! times "submit the login form -> dashboard drawn" in the real browser.

use crate::{Args, Stats, ms, percentile, start_oned};
use anyhow::{Context, bail};
use oca::Client;
use one_proto::xmlrpc::Value;
use rand::Rng;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Sunstone {
    child: Child,
    url: String,
}

impl Drop for Sunstone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sunstone(endpoint: &str) -> anyhow::Result<Sunstone> {
    let bin = std::env::current_exe()?.with_file_name("sunstone");
    let url_file =
        std::env::temp_dir().join(format!("one-bench-sunstone-{}.url", std::process::id()));
    let _ = std::fs::remove_file(&url_file);
    let child = Command::new(&bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--endpoint",
            endpoint,
            "--log",
            "warn",
            "--url-file",
        ])
        .arg(&url_file)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (cargo build --release -p sunstone)",
                bin.display()
            )
        })?;
    let mut s = Sunstone {
        child,
        url: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(u) = std::fs::read_to_string(&url_file)
            && !u.trim().is_empty()
        {
            s.url = u.trim().to_owned();
            let _ = std::fs::remove_file(&url_file);
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("sunstone did not start within 30 s")
}

/// A logged-in browser session, over HTTP.
struct Session {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Session {
    async fn login(base: &str, user: &str, password: &str) -> anyhow::Result<Session> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let r = http.get(format!("{base}login")).send().await?;
        let login_cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("sunstone_login="))
            .and_then(|c| c.split(';').next())
            .context("no login cookie")?
            .to_owned();
        let page = r.text().await?;
        let token = page
            .split("name=\"_csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .context("no CSRF field on the login page")?
            .to_owned();
        let form = format!(
            "_csrf={token}&username={}&password={}&next=",
            enc(user),
            enc(password)
        );
        let r = http
            .post(format!("{base}login"))
            .header("cookie", &login_cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await?;
        if r.status().as_u16() != 303 {
            bail!("login as {user} answered {}", r.status());
        }
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("sunstone_session="))
            .and_then(|c| c.split(';').next())
            .context("no session cookie")?
            .to_owned();
        Ok(Session {
            http,
            base: base.to_owned(),
            cookie,
        })
    }

    /// GETs `path`; returns (the server's own time, the time seen here, status, body).
    async fn get(
        &self,
        path: &str,
        poll: bool,
    ) -> anyhow::Result<(Duration, Duration, u16, String)> {
        let t = Instant::now();
        let mut req = self
            .http
            .get(format!("{}{path}", self.base))
            // Compressed, as browsers ask (reqwest's gzip feature asks and decompresses).
            .header("cookie", &self.cookie);
        if poll {
            req = req
                .header("hx-request", "true")
                .header("x-sunstone-poll", "1");
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        let server = r
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("dur=").nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
            .context("no Server-Timing header")?;
        let body = r.text().await?;
        let seen = t.elapsed();
        if status != 200 && status != 204 {
            bail!(
                "GET {path} answered {status}: {}",
                &body[..body.len().min(300)]
            );
        }
        Ok((server, seen, status, body))
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

struct Row {
    server: Stats,
    seen: Stats,
}

async fn page(
    s: &Session,
    name: &str,
    n: usize,
    path: impl Fn(usize) -> String,
    poll: bool,
) -> anyhow::Result<Row> {
    let mut server = Vec::with_capacity(n);
    let mut seen = Vec::with_capacity(n);
    for i in 0..n {
        let (a, b, _, _) = s.get(&path(i), poll).await?;
        server.push(a);
        seen.push(b);
    }
    server.sort();
    seen.sort();
    let stats = |t: &[Duration]| Stats {
        name: name.to_owned(),
        p50: percentile(t, 0.5),
        p95: percentile(t, 0.95),
        max: *t.last().unwrap_or(&Duration::ZERO),
        n,
    };
    Ok(Row {
        server: stats(&server),
        seen: stats(&seen),
    })
}

fn venv_python() -> Option<PathBuf> {
    let venv = std::env::var_os("ONE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            if unsafe { libc::geteuid() } == 0 {
                PathBuf::from("/var/tmp/one-rs-venv")
            } else {
                PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/one-rs-venv")
            }
        });
    let py = venv.join("bin/python");
    py.is_file().then_some(py)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (_oned, endpoint, admin_session) = start_oned(&args, None)?;
    let admin = Client::new(endpoint.clone(), admin_session.clone());
    let admin_password = admin_session
        .split_once(':')
        .map(|(_, p)| p.to_owned())
        .unwrap_or_default();
    println!("oned at {endpoint}");
    let (user, password) = ("bench", "bench-password-1");
    admin
        .call(
            "one.user.allocate",
            vec![
                Value::String(user.into()),
                Value::String(password.into()),
                Value::String(String::new()),
            ],
        )
        .await?;

    // The user's VMs, from 8 clients (filling is not what is measured).
    let t = Instant::now();
    let workers = 8;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let c = Client::new(endpoint.clone(), format!("{user}:{password}"));
        let n = args.vms;
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(workers) {
                let tmpl = format!(
                    "NAME=\"web-{i:05}\"\nCPU=\"0.1\"\nMEMORY=\"64\"\nNIC=[IP=\"10.{}.{}.{}\"]\n",
                    i / 65536 % 256,
                    i / 256 % 256,
                    i % 256
                );
                c.call(
                    "one.vm.allocate",
                    vec![Value::String(tmpl), Value::Bool(false)],
                )
                .await?;
            }
            Ok::<_, oca::OcaError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "{user} created {} VMs in {:.1} s",
        args.vms,
        t.elapsed().as_secs_f64()
    );

    let sun = start_sunstone(&endpoint)?;
    println!("sunstone at {}", sun.url);
    let s = Session::login(&sun.url, user, password).await?;
    let total = args.vms.max(1) as i64;
    let mut rng = rand::rng();
    let offsets: Vec<i64> = (0..args.samples)
        .map(|_| rng.random_range(0..total) / 50 * 50)
        .collect();
    let ids: Vec<i64> = (0..args.samples)
        .map(|_| rng.random_range(0..total))
        .collect();
    let names: Vec<i64> = (0..args.samples)
        .map(|_| rng.random_range(0..total))
        .collect();
    // The hash an open first page polls with.
    let (_, _, _, first) = s.get("vms", false).await?;
    let since = first
        .split("vms/rows?since=")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .context("no poll URL on the list page")?
        .to_owned();

    let n = args.samples;
    let mut rows = vec![
        page(
            &s,
            "VM list, first page (50 VMs)",
            n,
            |_| "vms".into(),
            false,
        )
        .await?,
        page(
            &s,
            "VM list, a page anywhere in the pool",
            n,
            |i| format!("vms?offset={}", offsets[i]),
            false,
        )
        .await?,
        page(
            &s,
            "VM list, name search (scans the pool)",
            n,
            |i| format!("vms?q=web-{:05}", names[i]),
            false,
        )
        .await?,
        page(
            &s,
            "VM list, state filter matching nothing",
            n,
            |_| "vms?state=SUSPENDED".into(),
            false,
        )
        .await?,
        page(
            &s,
            "poll of an open list, nothing changed (204)",
            n,
            |_| format!("vms/rows?since={since}"),
            true,
        )
        .await?,
        page(
            &s,
            "a VM's page",
            n.min(500),
            |i| format!("vms/{}", ids[i]),
            false,
        )
        .await?,
        page(
            &s,
            "dashboard (without the VM counts)",
            n.min(500),
            |_| String::new(),
            false,
        )
        .await?,
    ];
    // The dashboard's VM counts read the user's whole pool; sunstone keeps them 5 s, so
    // each sample waits that long to be a fresh read.
    let fresh = |_: usize| "dashboard/vms".to_string();
    let mut counts = Vec::new();
    for i in 0..5 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(5_100)).await;
        }
        counts.push(
            page(
                &s,
                "dashboard VM counts (whole pool, not cached)",
                1,
                fresh,
                true,
            )
            .await?,
        );
    }
    let mut server: Vec<Duration> = counts.iter().map(|r| r.server.p50).collect();
    let mut seen: Vec<Duration> = counts.iter().map(|r| r.seen.p50).collect();
    server.sort();
    seen.sort();
    rows.push(Row {
        server: Stats {
            name: counts[0].server.name.clone(),
            p50: percentile(&server, 0.5),
            p95: percentile(&server, 0.95),
            max: server[server.len() - 1],
            n: server.len(),
        },
        seen: Stats {
            name: String::new(),
            p50: percentile(&seen, 0.5),
            p95: percentile(&seen, 0.95),
            max: seen[seen.len() - 1],
            n: seen.len(),
        },
    });

    println!(
        "\nsunstone with {} VMs of one user (server time from Server-Timing; client time over loopback, keep-alive)",
        args.vms
    );
    println!("| page | server p50 | server p95 | client p95 | samples |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.server.name,
            ms(r.server.p50),
            ms(r.server.p95),
            ms(r.seen.p95),
            r.server.n
        );
    }
    let list_p95 = rows[0].server.p95;
    println!(
        "\nVM list page p95 {} (target < 50 ms): {}",
        ms(list_p95),
        if list_p95 < Duration::from_millis(50) {
            "met"
        } else {
            "MISSED"
        }
    );

    // oneadmin's list sees the same pool through the admin path.
    let a = Session::login(&sun.url, "oneadmin", &admin_password).await?;
    let r = page(
        &a,
        "VM list as oneadmin, first page",
        n,
        |_| "vms".into(),
        false,
    )
    .await?;
    println!(
        "| {} | {} | {} | {} | {} |",
        r.server.name,
        ms(r.server.p50),
        ms(r.server.p95),
        ms(r.seen.p95),
        n
    );

    // The real browser.
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sunstone_browser.py");
    let Some(py) = venv_python() else {
        println!(
            "\nbrowser timing skipped: no Python virtual environment (scripts/install-deps.sh)"
        );
        return Ok(());
    };
    if !std::path::Path::new("/usr/bin/chromium").exists() {
        println!("\nbrowser timing skipped: /usr/bin/chromium missing (scripts/install-deps.sh)");
        return Ok(());
    }
    println!("\nlogin -> dashboard in headless chromium (20 rounds):");
    let out = Command::new(py)
        .arg(script)
        .args([&sun.url, user, password, "20"])
        .stderr(Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("the browser timing failed: {text}");
    }
    let summary = text.lines().last().unwrap_or("");
    println!("{summary}");
    let v: serde_json::Value = serde_json::from_str(summary)?;
    let f = |k: &str, p: &str| v["summary"][k][p].as_f64().unwrap_or(f64::NAN);
    println!("| measure | p50 | p95 |");
    println!("|---|---|---|");
    println!(
        "| submit -> dashboard drawn (first contentful paint) | {:.0} ms | {:.0} ms |",
        f("fcp", "p50"),
        f("fcp", "p95")
    );
    println!(
        "| submit -> dashboard loaded (load event) | {:.0} ms | {:.0} ms |",
        f("load", "p50"),
        f("load", "p95")
    );
    println!(
        "| submit -> VM counts of {} VMs shown | {:.0} ms | {:.0} ms |",
        args.vms,
        f("counts", "p50"),
        f("counts", "p95")
    );
    Ok(())
}
