//! GitOps: a Git repository is the truth. At each interval: pull (the `git` command line),
//! load the cloud file, plan, apply when allowed, write an audit record (one JSON line per
//! run: time, commit, user, plan, drift, result) and update the Prometheus metrics.
//!
//! Drift is a change made behind the file's back: an object with changes in the plan
//! although its declaration is the same as when the cloud last matched the file (after an
//! apply, or a plan with nothing to do). That baseline is kept in `state.json` in the audit
//! directory, so it survives restarts.

use crate::apply::{ApplyOptions, ApplyReport, Event, Progress, apply};
use crate::error::Error;
use crate::live::Live;
use crate::load::{LoadOptions, load};
use crate::plan::{Change, Plan, PlanOptions, Summary, plan};
use oca::Client;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::process::Command;

/// How to reconcile.
#[derive(Clone, Debug)]
pub struct ReconcileOptions {
    /// A URL or a local directory.
    pub git: String,
    pub branch: Option<String>,
    /// The cloud file or directory inside the repository.
    pub path: PathBuf,
    pub interval: Duration,
    /// Apply (otherwise only report).
    pub apply: bool,
    pub plan: PlanOptions,
    pub env: Option<String>,
    /// Audit records (`audit.jsonl`), the baseline (`state.json`), the checkout (`checkout/`).
    pub audit_dir: PathBuf,
    /// Address for `GET /metrics`.
    pub metrics: Option<String>,
    /// One run only.
    pub once: bool,
    pub apply_options: ApplyOptions,
}

/// `60s`, `5m`, `1h`, `500ms`, or seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, ""), |i| s.split_at(i));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (60s, 5m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("{s:?} must be more than zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What the metrics show, updated after each run.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub runs: BTreeMap<String, u64>,
    pub last_run: u64,
    pub last_success: bool,
    pub commit: String,
    pub summary: Summary,
    pub drift: Vec<(String, String)>,
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        };
        family(
            "onecloud_reconcile_runs_total",
            "counter",
            "Reconcile runs by result.",
        );
        let mut out = s;
        for (result, n) in &self.runs {
            out.push_str(&format!(
                "onecloud_reconcile_runs_total{{result=\"{result}\"}} {n}\n"
            ));
        }
        let mut put = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        };
        put(
            "onecloud_last_run_timestamp_seconds",
            "gauge",
            "When the last run ended.",
            vec![format!(
                "onecloud_last_run_timestamp_seconds {}",
                self.last_run
            )],
        );
        put(
            "onecloud_last_run_success",
            "gauge",
            "1 if the last run planned (and applied, when allowed) without error.",
            vec![format!(
                "onecloud_last_run_success {}",
                u8::from(self.last_success)
            )],
        );
        put(
            "onecloud_last_commit_info",
            "gauge",
            "The commit of the last run.",
            vec![format!(
                "onecloud_last_commit_info{{commit=\"{}\"}} 1",
                escape(&self.commit)
            )],
        );
        let m = &self.summary;
        put(
            "onecloud_plan_changes",
            "gauge",
            "Changes in the last plan, by action.",
            [
                ("create", m.create),
                ("update", m.update),
                ("delete", m.delete),
                ("adopt", m.adopt),
                ("replace", m.replace),
            ]
            .iter()
            .map(|(a, n)| format!("onecloud_plan_changes{{action=\"{a}\"}} {n}"))
            .collect(),
        );
        put(
            "onecloud_drift_objects",
            "gauge",
            "Objects changed behind the file's back (last run).",
            vec![format!("onecloud_drift_objects {}", self.drift.len())],
        );
        put(
            "onecloud_drifted_object",
            "gauge",
            "One series per object changed behind the file's back (last run).",
            self.drift
                .iter()
                .map(|(k, n)| {
                    format!(
                        "onecloud_drifted_object{{kind=\"{}\",name=\"{}\"}} 1",
                        escape(k),
                        escape(n)
                    )
                })
                .collect(),
        );
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The baseline: the declarations when the cloud last matched the file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct State {
    commit: String,
    fingerprints: BTreeMap<String, String>,
}

/// One audit record.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub time: String,
    pub unix_time: u64,
    pub source: String,
    pub branch: Option<String>,
    pub commit: String,
    pub subject: String,
    /// The OpenNebula user the run acted as.
    pub user: String,
    /// The operating system user running onecloud.
    pub os_user: String,
    /// `apply` or `report`.
    pub mode: &'static str,
    /// in-sync, applied, changes-pending, failed, refused, invalid-file, error.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// The plan's changes (entries with nothing to do are left out).
    pub changes: Vec<Change>,
    pub refusals: Vec<String>,
    pub drift: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ApplyReport>,
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The system user running onecloud: $USER, else the name of the process's uid in
/// /etc/passwd, else `uid N`.
fn os_user() -> String {
    if let Ok(u) = std::env::var("USER").or_else(|_| std::env::var("LOGNAME"))
        && !u.is_empty()
    {
        return u;
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid).then(|| f[0].to_owned())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn git(dir: Option<&Path>, args: &[&str]) -> Result<String, Error> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    cmd.args(args).env("GIT_TERMINAL_PROMPT", "0");
    let out = cmd
        .output()
        .await
        .map_err(|e| Error::Other(format!("running git: {e} (is git installed?)")))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Brings the checkout to the newest commit of the branch; returns (commit, subject).
async fn pull(opts: &ReconcileOptions, checkout: &Path) -> Result<(String, String), Error> {
    if !checkout.join(".git").exists() {
        let mut args = vec!["clone", "--quiet"];
        if let Some(b) = &opts.branch {
            args.extend(["--branch", b]);
        }
        let dest = checkout.to_string_lossy().into_owned();
        args.extend([opts.git.as_str(), dest.as_str()]);
        git(None, &args).await?;
    } else {
        let refspec = opts.branch.as_deref().unwrap_or("HEAD");
        git(Some(checkout), &["fetch", "--quiet", "origin", refspec]).await?;
        git(
            Some(checkout),
            &["reset", "--quiet", "--hard", "FETCH_HEAD"],
        )
        .await?;
        git(Some(checkout), &["clean", "--quiet", "-fdx"]).await?;
    }
    let commit = git(Some(checkout), &["rev-parse", "HEAD"]).await?;
    let subject = git(Some(checkout), &["log", "-1", "--format=%s"]).await?;
    Ok((commit, subject))
}

/// Prints one line per change as apply goes (standard output).
struct Lines;

impl Progress for Lines {
    fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Done {
                index,
                total,
                change,
                ..
            } => println!(
                "  [{index}/{total}] {} {}: done",
                change.action.word(),
                crate::render::change_title(change)
            ),
            Event::Failed {
                index,
                total,
                change,
                error,
            } => println!(
                "  [{index}/{total}] {} {}: FAILED: {error}",
                change.action.word(),
                crate::render::change_title(change)
            ),
            _ => {}
        }
    }
}

/// Objects with changes whose declaration has not changed since the baseline.
fn drift(plan: &Plan, base: &State) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for c in plan.changes.iter().filter(|c| c.is_change()) {
        let Some(key) = &c.key else { continue };
        let k = key.to_string();
        if let (Some(now), Some(then)) = (plan.fingerprints.get(&k), base.fingerprints.get(&k))
            && now == then
        {
            let entry = (c.kind.word().to_owned(), c.name.clone());
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    out
}

/// Runs reconcile until interrupted (or once). Returns the exit status of the last run with
/// `once`: 0 in line, 2 changes (or drift) left, 1 a failure.
///
/// SIGINT and SIGTERM stop it between runs: a signal that comes during a run lets that run
/// finish (an apply is not cut in the middle, and its audit record is written), then it
/// exits 0.
pub async fn run(client: &Client, opts: ReconcileOptions) -> Result<u8, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    std::fs::create_dir_all(&opts.audit_dir)
        .map_err(|e| Error::Other(format!("creating {}: {e}", opts.audit_dir.display())))?;
    let metrics = Arc::new(Mutex::new(Metrics::default()));
    if let Some(addr) = &opts.metrics {
        serve_metrics(addr, metrics.clone()).await?;
    }
    // Registered once, before the first run: a signal during a run stays pending.
    let handler =
        |kind| signal(kind).map_err(|e| Error::Other(format!("installing a signal handler: {e}")));
    let mut interrupt = handler(SignalKind::interrupt())?;
    let mut terminate = handler(SignalKind::terminate())?;
    loop {
        let code = once(client, &opts, &metrics).await;
        if opts.once {
            return Ok(code);
        }
        tokio::select! {
            _ = tokio::time::sleep(opts.interval) => {}
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    eprintln!("onecloud: reconcile stopped by a signal");
    Ok(0)
}

async fn serve_metrics(addr: &str, metrics: Arc<Mutex<Metrics>>) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Other(format!("metrics address {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Other(format!("metrics address {addr}: {e}")))?;
    eprintln!("onecloud: metrics on http://{bound}/metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                let text = m.lock().map(|m| m.render()).unwrap_or_default();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    text,
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(())
}

fn read_state(path: &Path) -> State {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_state(path: &Path, s: &State) -> Result<(), Error> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(s).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::Other(format!("writing {}: {e}", path.display())))
}

fn append_record(dir: &Path, r: &Record) -> Result<(), Error> {
    use std::io::Write;
    let path = dir.join("audit.jsonl");
    let mut line = serde_json::to_string(r).map_err(|e| Error::Other(e.to_string()))?;
    line.push('\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(line.as_bytes())?;
            f.sync_data()
        })
        .map_err(|e| Error::Other(format!("writing {}: {e}", path.display())))
}

async fn once(client: &Client, opts: &ReconcileOptions, metrics: &Mutex<Metrics>) -> u8 {
    let started = now();
    let mut record = Record {
        time: rfc3339(started),
        unix_time: started,
        source: opts.git.clone(),
        branch: opts.branch.clone(),
        commit: String::new(),
        subject: String::new(),
        user: client.username().to_owned(),
        os_user: os_user(),
        mode: if opts.apply { "apply" } else { "report" },
        result: String::new(),
        error: None,
        summary: None,
        changes: Vec::new(),
        refusals: Vec::new(),
        drift: Vec::new(),
        report: None,
    };
    let state_path = opts.audit_dir.join("state.json");
    let (code, drifted) = match step(client, opts, &state_path, &mut record).await {
        Ok((code, drifted)) => (code, drifted),
        Err(e) => {
            if record.result.is_empty() {
                record.result = "error".into();
            }
            record.error = Some(e.to_string());
            (1, Vec::new())
        }
    };
    println!(
        "{} commit {}: {}{}{}",
        record.time,
        record.commit.get(..12).unwrap_or(&record.commit),
        record.result,
        record
            .summary
            .map(|s| format!(
                " ({} create, {} update, {} delete, {} adopt, {} replace)",
                s.create, s.update, s.delete, s.adopt, s.replace
            ))
            .unwrap_or_default(),
        if record.drift.is_empty() {
            String::new()
        } else {
            format!("; drift: {}", record.drift.join(", "))
        }
    );
    if let Some(e) = &record.error {
        println!("  {e}");
    }
    if let Err(e) = append_record(&opts.audit_dir, &record) {
        eprintln!("onecloud: {e}");
    }
    if let Ok(mut m) = metrics.lock() {
        *m.runs.entry(record.result.clone()).or_default() += 1;
        m.last_run = now();
        m.last_success = code != 1;
        m.commit = record.commit.clone();
        m.summary = record.summary.unwrap_or_default();
        m.drift = drifted;
    }
    code
}

async fn step(
    client: &Client,
    opts: &ReconcileOptions,
    state_path: &Path,
    record: &mut Record,
) -> Result<(u8, Vec<(String, String)>), Error> {
    let checkout = opts.audit_dir.join("checkout");
    let (commit, subject) = pull(opts, &checkout).await?;
    record.commit = commit.clone();
    record.subject = subject;
    let lopts = LoadOptions {
        env: opts.env.clone(),
        vars: Vec::new(),
        applier: client.username().to_owned(),
    };
    let file = match load(&checkout.join(&opts.path), &lopts) {
        Ok(f) => f,
        Err(d) => {
            record.result = "invalid-file".into();
            return Err(Error::File(d));
        }
    };
    let live = Live::read(client).await.map_err(Error::Read)?;
    let p = plan(&file, &live, opts.plan);
    let base = read_state(state_path);
    let drifted = drift(&p, &base);
    record.summary = Some(p.summary);
    record.changes = p
        .changes
        .iter()
        .filter(|c| c.is_change())
        .cloned()
        .collect();
    record.refusals = p.refusals.clone();
    record.drift = drifted.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let baseline = State {
        commit: commit.clone(),
        fingerprints: p.fingerprints.clone(),
    };
    if !p.refusals.is_empty() {
        record.result = "refused".into();
        return Ok((1, drifted));
    }
    if !p.has_changes() {
        record.result = "in-sync".into();
        write_state(state_path, &baseline)?;
        return Ok((0, drifted));
    }
    if !opts.apply {
        record.result = "changes-pending".into();
        return Ok((2, drifted));
    }
    let report = apply(client, &p, &live, opts.apply_options, &mut Lines).await?;
    let ok = report.ok();
    record.report = Some(report);
    if ok {
        record.result = "applied".into();
        write_state(state_path, &baseline)?;
        Ok((0, drifted))
    } else {
        record.result = "failed".into();
        Ok((1, drifted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn drift_is_a_change_whose_declaration_did_not_change() {
        use crate::plan::plan;
        use crate::tests::{SMALL, small_live, yaml};
        let f = yaml(SMALL).unwrap();
        let mut live = small_live(&f);
        let in_line = plan(&f, &live, PlanOptions::default());
        assert!(!in_line.has_changes());
        let base = State {
            commit: "c1".into(),
            fingerprints: in_line.fingerprints.clone(),
        };
        // A change by hand: the file is the same, the cloud is not.
        live.networks[0].template.set("DNS", "8.8.8.8");
        let p = plan(&f, &live, PlanOptions::default());
        assert_eq!(drift(&p, &base), [("network".to_owned(), "net".to_owned())]);
        // Without a baseline (the first run) nothing is called drift.
        assert!(drift(&p, &State::default()).is_empty());
        // A new declaration of the same object is a change of the file, not drift.
        let f2 = yaml(&SMALL.replace("DNS: 1.1.1.1", "DNS: 9.9.9.9")).unwrap();
        let p = plan(&f2, &live, PlanOptions::default());
        assert!(p.has_changes());
        assert!(drift(&p, &base).is_empty());
        // A VM removed by hand (the set's declaration unchanged) is drift of the VM set.
        let mut live = small_live(&f);
        live.vms.pop();
        live.reindex();
        let p = plan(&f, &live, PlanOptions::default());
        let d = drift(&p, &base);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].0, "vm");
    }

    #[test]
    fn the_baseline_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(read_state(&path).fingerprints.is_empty(), "none yet");
        let s = State {
            commit: "abc".into(),
            fingerprints: [("network oneadmin/net".to_owned(), "f1".to_owned())].into(),
        };
        write_state(&path, &s).unwrap();
        let back = read_state(&path);
        assert_eq!(
            (back.commit.as_str(), back.fingerprints),
            ("abc", s.fingerprints)
        );
        assert!(!path.with_extension("json.tmp").exists());
    }

    /// Runs git in `dir`; None (with the reason printed as a skip) when git is missing.
    fn git_in(dir: &Path, args: &[&str]) -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=test", "-c", "user.email=test@localhost"])
            .args(args)
            .output();
        match out {
            Ok(o) => {
                assert!(o.status.success(), "git {args:?}: {o:?}");
                Some(String::from_utf8_lossy(&o.stdout).trim().to_owned())
            }
            Err(e) => {
                skip(&format!("git cannot run here: {e}"));
                None
            }
        }
    }

    /// Says why a check could not run: on stdout and in ONE_TEST_SKIP_LOG (scripts/test.sh
    /// counts those lines as skips).
    fn skip(reason: &str) {
        println!("SKIP: {reason}");
        if let Some(path) = std::env::var_os("ONE_TEST_SKIP_LOG") {
            let test = std::thread::current().name().unwrap_or("?").to_string();
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
            {
                use std::io::Write;
                let _ = f.write_all(format!("{test}\t{reason}\n").as_bytes());
            }
        }
    }

    fn records(dir: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Each run pulls the branch's newest commit and leaves one audit record, also when
    /// the file is refused or oned cannot be reached (nothing listens on port 9).
    #[tokio::test]
    async fn every_run_pulls_the_newest_commit_and_leaves_an_audit_record() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        if git_in(&repo, &["init", "-q", "-b", "live"]).is_none() {
            return;
        }
        std::fs::write(
            repo.join("cloud.yaml"),
            "cloud: lab\nnetworks:\n  n: {bogus: 1}\n",
        )
        .unwrap();
        git_in(&repo, &["add", "."]).unwrap();
        git_in(&repo, &["commit", "-qm", "a typo"]).unwrap();
        let first = git_in(&repo, &["rev-parse", "HEAD"]).unwrap();
        let audit = tmp.path().join("audit");
        let opts = ReconcileOptions {
            git: repo.to_string_lossy().into_owned(),
            branch: Some("live".into()),
            path: "cloud.yaml".into(),
            interval: Duration::from_secs(60),
            apply: false,
            plan: PlanOptions::default(),
            env: None,
            audit_dir: audit.clone(),
            metrics: None,
            once: true,
            apply_options: ApplyOptions::default(),
        };
        let client = Client::new("http://127.0.0.1:9/RPC2", "oneadmin:secret");
        let metrics = Mutex::new(Metrics::default());
        assert_eq!(once(&client, &opts, &metrics).await, 1);
        let r = records(&audit);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["commit"], first.as_str());
        assert_eq!(r[0]["subject"], "a typo");
        assert_eq!(r[0]["result"], "invalid-file");
        assert_eq!(r[0]["mode"], "report");
        assert_eq!(r[0]["user"], "oneadmin");
        let err = r[0]["error"].as_str().unwrap();
        assert!(
            err.contains("cloud.yaml:3:") && err.contains("bogus"),
            "{err}"
        );
        // The fix, committed: the next run sees it (and now fails reaching oned).
        std::fs::write(
            repo.join("cloud.yaml"),
            "cloud: lab\nnetworks:\n  n: {template: {VN_MAD: dummy}}\n",
        )
        .unwrap();
        git_in(&repo, &["commit", "-qam", "the fix"]).unwrap();
        let second = git_in(&repo, &["rev-parse", "HEAD"]).unwrap();
        assert_eq!(once(&client, &opts, &metrics).await, 1);
        let r = records(&audit);
        assert_eq!(r.len(), 2, "records are appended");
        assert_eq!(
            (&r[1]["commit"], &r[1]["subject"]),
            (&second.as_str().into(), &"the fix".into())
        );
        assert_eq!(r[1]["result"], "error", "{}", r[1]);
        let err = r[1]["error"].as_str().unwrap();
        assert!(err.contains("127.0.0.1:9"), "{err}");
        let m = metrics.lock().unwrap();
        assert_eq!(m.commit, second);
        assert!(!m.last_success);
        assert_eq!(m.runs.get("invalid-file"), Some(&1));
        assert_eq!(m.runs.get("error"), Some(&1));
        // The checkout is the audit directory's own clone, on the branch asked for.
        let head = git_in(&audit.join("checkout"), &["rev-parse", "HEAD"]).unwrap();
        assert_eq!(head, second);
        // No baseline is written by a run that did not match the file.
        assert!(!audit.join("state.json").exists());
    }

    #[test]
    fn metrics_text() {
        let mut m = Metrics::default();
        m.runs.insert("applied".into(), 2);
        m.drift.push(("network".into(), "lab \"x\"".into()));
        let t = m.render();
        assert!(t.contains("onecloud_reconcile_runs_total{result=\"applied\"} 2"));
        assert!(t.contains("onecloud_drift_objects 1"));
        assert!(t.contains("name=\"lab \\\"x\\\"\""));
    }
}
