//! one-scheduler: the daemon that places pending VMs.
//!
//! It looks for PENDING VMs every `interval` (cheap: one pool call that is empty when there
//! is nothing to do), and for VMs flagged for rescheduling every `resched_interval`. When
//! there is work it reads hosts, datastores and clusters, runs a placement pass
//! (`one_scheduler::schedule`) and dispatches the decisions concurrently: `one.vm.deploy`
//! for pending VMs, `one.vm.migrate` for rescheduled ones. It never waits for VMs to boot,
//! only for oned to accept each call. VMs it cannot place get a SCHED_MESSAGE saying why.

use anyhow::{Context, Result};
use clap::Parser;
use oca::{Client, Discovery, OcaError, Value};
use one_scheduler::model::{DatastorePool, HostPool, Vm, parse_cluster_pool, parse_vm_pool};
use one_scheduler::{Action, Config, Decision, Outcome, Unplaced, message, schedule};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

/// Places pending VMs on hosts for an OpenNebula-compatible oned.
#[derive(Parser, Debug)]
#[command(
    name = "one-scheduler",
    version,
    about = "Places pending VMs on hosts (deploy) and moves VMs flagged for rescheduling (migrate)",
    long_about = "Places pending VMs on hosts (one.vm.deploy) and moves VMs flagged for \
rescheduling (one.vm.migrate), following requirements (SCHED_REQUIREMENTS, \
AUTOMATIC_REQUIREMENTS), capacity and the ranking policy. VMs that cannot be placed get a \
SCHED_MESSAGE in their user template saying why.\n\n\
oned's endpoint and the credentials (a user of group oneadmin) are found as every OpenNebula \
client finds them: $ONE_XMLRPC or ~/.one/one_endpoint, $ONE_AUTH or ~/.one/one_auth, unless \
--endpoint / --auth-file (or the configuration file) say otherwise. Every option of the \
configuration file, with its default, is in etc/scheduler.toml; docs/scheduler.md explains \
how placement works."
)]
struct Cli {
    /// Configuration file (TOML); without it, the defaults of etc/scheduler.toml apply.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// oned's XML-RPC endpoint, e.g. http://127.0.0.1:2633/RPC2.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// File holding `user:password` (instead of $ONE_AUTH / ~/.one/one_auth).
    #[arg(long, value_name = "FILE")]
    auth_file: Option<PathBuf>,
    /// Seconds between two looks for pending VMs.
    #[arg(long, value_name = "SECONDS")]
    interval: Option<f64>,
    /// Run one pass (pending and rescheduled VMs), dispatch it, and exit.
    #[arg(long)]
    once: bool,
    /// Log level on stderr: error, warn, info, debug, trace (or a tracing filter).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

fn load_config(cli: &Cli) -> Result<Config> {
    let mut cfg = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str::<Config>(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(e) = &cli.endpoint {
        cfg.endpoint = e.clone();
    }
    if let Some(a) = &cli.auth_file {
        cfg.auth_file = Some(a.clone());
    }
    if let Some(i) = cli.interval {
        cfg.interval = i;
    }
    if let Some(l) = &cli.log_level {
        cfg.log_level = l.clone();
    }
    cfg.validate()?;
    Ok(cfg)
}

fn init_logging(level: &str) -> Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => tracing_subscriber::EnvFilter::new(v),
        _ => tracing_subscriber::EnvFilter::try_new(level)
            .with_context(|| format!("log level {level:?}"))?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    Ok(())
}

fn client(cfg: &Config) -> Result<Client> {
    let mut d = Discovery::from_process();
    if !cfg.endpoint.trim().is_empty() {
        d.one_xmlrpc = Some(cfg.endpoint.trim().to_string());
    }
    if let Some(a) = &cfg.auth_file {
        d.one_auth = Some(a.clone());
    }
    if d.timeout.is_none() {
        d.timeout = Some((cfg.call_timeout.ceil() as u64).max(1).to_string());
    }
    Ok(Client::from_discovery(&d)?)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let cfg = load_config(&cli)?;
    init_logging(&cfg.log_level)?;
    let client = client(&cfg)?;
    info!(
        endpoint = client.endpoint(),
        user = client.username(),
        "one-scheduler starting"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(Scheduler::new(cfg, client, cli.once)?.run())
}

// ------------------------------------------------------------------------------------------

/// VM STATE numbers the scheduler lists.
const PENDING: i64 = 1;
const ACTIVE: i64 = 3;
const POWEROFF: i64 = 8;

struct Scheduler {
    cfg: Config,
    place: one_scheduler::PlaceConfig,
    client: Client,
    once: bool,
    interval: Duration,
    resched_interval: Duration,
    retry_interval: Duration,
    /// Pending VMs the last pass saw: a pass runs at once only for VMs not in it.
    seen: HashSet<i64>,
    last_pass: Option<Instant>,
    last_resched: Option<Instant>,
}

/// What a look at oned found.
struct Work {
    vms: Vec<Vm>,
    new: bool,
}

impl Scheduler {
    fn new(cfg: Config, client: Client, once: bool) -> Result<Self> {
        Ok(Scheduler {
            place: cfg.place_config()?,
            interval: cfg.interval()?,
            resched_interval: cfg.resched_interval()?,
            retry_interval: cfg.retry_interval()?,
            cfg,
            client,
            once,
            seen: HashSet::new(),
            last_pass: None,
            last_resched: None,
        })
    }

    async fn run(mut self) -> Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut failures = 0u32;
        loop {
            let step = tokio::select! {
                r = self.step() => r,
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            };
            let pause = match step {
                Ok(stuck) => {
                    failures = 0;
                    if self.once {
                        return Ok(());
                    }
                    // Looking is cheap while nothing waits; with many VMs that cannot be placed,
                    // each look lists them all, so look less often (at most once a second).
                    let factor = 1.0 + stuck as f64 / 100.0;
                    self.interval
                        .mul_f64(factor)
                        .min(Duration::from_secs(1).max(self.interval))
                }
                Err(e) => {
                    if self.once {
                        return Err(e);
                    }
                    failures += 1;
                    // Back off while oned is unreachable, up to 5 s, logging the first failure
                    // loudly and the following ones quietly.
                    if failures == 1 {
                        error!("{e:#}");
                    } else {
                        debug!(failures, "{e:#}");
                    }
                    self.interval
                        .mul_f64(2f64.powi(failures.min(10) as i32))
                        .min(Duration::from_secs(5))
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        info!("one-scheduler stopping");
        Ok(())
    }

    /// One look and, if there is work, one pass. Returns how many VMs are left waiting.
    async fn step(&mut self) -> Result<usize> {
        let work = self.look().await?;
        let retry_due = self
            .last_pass
            .is_none_or(|t| t.elapsed() >= self.retry_interval);
        if work.vms.is_empty() || !(work.new || retry_due || self.once) {
            return Ok(work.vms.len());
        }
        let outcome = self.pass(&work.vms).await?;
        self.seen = work
            .vms
            .iter()
            .filter(|v| v.is_pending())
            .map(|v| v.id)
            .collect();
        self.last_pass = Some(Instant::now());
        let failed = self.dispatch(&outcome.decisions).await;
        self.report(&work.vms, &outcome.unplaced).await;
        Ok(outcome.unplaced.len() + outcome.deferred + failed)
    }

    /// Pending VMs, plus VMs to reschedule when that look is due.
    async fn look(&mut self) -> Result<Work> {
        let mut vms = self.vms_in(PENDING).await?;
        let mut new = vms.iter().any(|v| !self.seen.contains(&v.id));
        if self
            .last_resched
            .is_none_or(|t| t.elapsed() >= self.resched_interval)
        {
            self.last_resched = Some(Instant::now());
            let mut moving = Vec::new();
            for state in [ACTIVE, POWEROFF] {
                moving.extend(
                    self.vms_in(state)
                        .await?
                        .into_iter()
                        .filter(Vm::wants_resched),
                );
            }
            if !moving.is_empty() {
                debug!(vms = moving.len(), "VMs to reschedule");
                new = true;
                vms.extend(moving);
            }
        }
        Ok(Work { vms, new })
    }

    async fn vms_in(&self, state: i64) -> Result<Vec<Vm>> {
        let xml = self
            .client
            .call_string(
                "one.vmpool.infoextended",
                vec![
                    Value::Int(-2),
                    Value::Int(-1),
                    Value::Int(-1),
                    Value::Int(state),
                ],
            )
            .await
            .context("one.vmpool.infoextended")?;
        Ok(parse_vm_pool(&xml)?)
    }

    async fn pass(&self, vms: &[Vm]) -> Result<Outcome> {
        let started = Instant::now();
        let (hosts, dss, clusters) = tokio::join!(
            self.client.call_string("one.hostpool.info", vec![]),
            self.client.call_string("one.datastorepool.info", vec![]),
            self.client.call_string("one.clusterpool.info", vec![]),
        );
        let mut hosts = HostPool::parse(&hosts.context("one.hostpool.info")?)?;
        hosts.attach_clusters(&parse_cluster_pool(
            &clusters.context("one.clusterpool.info")?,
        )?);
        let dss = DatastorePool::parse(&dss.context("one.datastorepool.info")?)?;
        let read = started.elapsed();
        let outcome = schedule(vms, &hosts, &dss, &self.place);
        // A pass that places nothing (VMs waiting for room) is routine: keep it out of the
        // default log.
        let level_info = !outcome.decisions.is_empty();
        macro_rules! pass_log {
            ($lvl:ident) => {
                $lvl!(
                    vms = vms.len(),
                    hosts = hosts.hosts.len(),
                    placed = outcome.decisions.len(),
                    unplaced = outcome.unplaced.len(),
                    deferred = outcome.deferred,
                    read_ms = read.as_millis() as u64,
                    pass_ms = (started.elapsed() - read).as_millis() as u64,
                    "scheduling pass"
                )
            };
        }
        if level_info {
            pass_log!(info);
        } else {
            pass_log!(debug);
        }
        Ok(outcome)
    }

    /// Sends the decisions, `max_in_flight` calls at a time; returns how many failed.
    async fn dispatch(&self, decisions: &[Decision]) -> usize {
        if decisions.is_empty() {
            return 0;
        }
        let started = Instant::now();
        let slots = Arc::new(Semaphore::new(self.cfg.max_in_flight));
        let mut calls = JoinSet::new();
        for d in decisions.iter().cloned() {
            let client = self.client.clone();
            let slots = slots.clone();
            let (live, mode) = (self.cfg.live_rescheds, self.cfg.cold_migrate_mode);
            calls.spawn(async move {
                let _slot = slots.acquire_owned().await;
                let r = send(&client, &d, live, mode).await;
                (d, r)
            });
        }
        let mut failed = 0;
        while let Some(joined) = calls.join_next().await {
            let Ok((d, r)) = joined else { continue };
            match r {
                Ok(()) => {
                    info!(vm = d.vm_id, host = d.host_id, ds = d.ds_id, action = ?d.action, "dispatched")
                }
                Err(e) => {
                    failed += 1;
                    // The VM stays where it was (e.g. PENDING) and the next pass retries it.
                    warn!(vm = d.vm_id, host = d.host_id, ds = d.ds_id, action = ?d.action, "dispatch failed: {e}");
                }
            }
        }
        debug!(
            calls = decisions.len(),
            failed,
            ms = started.elapsed().as_millis() as u64,
            "dispatch done"
        );
        failed
    }

    /// Sets SCHED_MESSAGE on VMs that could not be placed, when the text changed.
    async fn report(&self, vms: &[Vm], unplaced: &[Unplaced]) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        for u in unplaced {
            let old = vms
                .iter()
                .find(|v| v.id == u.vm_id)
                .map_or("", |v| v.sched_message.as_str());
            if message::strip_stamp(old) == u.message {
                continue;
            }
            info!(vm = u.vm_id, "cannot place: {}", u.message);
            let text = message::stamp(now, &u.message);
            let r = self
                .client
                .call_int(
                    "one.vm.update",
                    vec![
                        Value::Int(u.vm_id),
                        Value::String(sched_message_template(&text)),
                        Value::Int(1),
                    ],
                )
                .await;
            if let Err(e) = r {
                warn!(vm = u.vm_id, "setting SCHED_MESSAGE failed: {e}");
            }
        }
    }
}

/// One decision as an XML-RPC call.
async fn send(
    client: &Client,
    d: &Decision,
    live_rescheds: bool,
    cold_mode: i64,
) -> Result<(), OcaError> {
    let (vm, host, ds) = (
        Value::Int(d.vm_id),
        Value::Int(d.host_id),
        Value::Int(d.ds_id),
    );
    match d.action {
        // one.vm.deploy(id, host_id, enforce, ds_id)
        Action::Deploy => {
            client
                .call_int("one.vm.deploy", vec![vm, host, Value::Bool(false), ds])
                .await?;
        }
        // one.vm.migrate(id, host_id, live, enforce, ds_id, cold_migrate_mode)
        Action::Migrate => {
            client
                .call_int(
                    "one.vm.migrate",
                    vec![
                        vm,
                        host,
                        Value::Bool(live_rescheds),
                        Value::Bool(false),
                        ds,
                        Value::Int(cold_mode),
                    ],
                )
                .await?;
        }
    }
    Ok(())
}

/// The one.vm.update template setting SCHED_MESSAGE: attribute syntax, or XML for text the
/// attribute syntax cannot carry (a backslash, `]]>`).
fn sched_message_template(text: &str) -> String {
    if text.contains('\\') || text.contains("]]>") {
        let esc = text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        format!("<TEMPLATE><SCHED_MESSAGE>{esc}</SCHED_MESSAGE></TEMPLATE>")
    } else {
        format!("SCHED_MESSAGE=\"{}\"", text.replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_templates() {
        assert_eq!(
            sched_message_template("Mon Nov 23 10:00:00 2026 : fail \"X = 1\""),
            "SCHED_MESSAGE=\"Mon Nov 23 10:00:00 2026 : fail \\\"X = 1\\\"\""
        );
        assert_eq!(
            sched_message_template("a\\b <c> & d"),
            "<TEMPLATE><SCHED_MESSAGE>a\\b &lt;c&gt; &amp; d</SCHED_MESSAGE></TEMPLATE>"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("one-sched-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.toml");
        std::fs::write(
            &file,
            "interval = 0.5\nmax_host = 2\nendpoint = \"http://a/RPC2\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "one-scheduler",
            "--config",
            file.to_str().unwrap(),
            "--interval",
            "0.2",
            "--endpoint",
            "http://b/RPC2",
        ]);
        let cfg = load_config(&cli).unwrap();
        assert_eq!(
            (cfg.interval, cfg.max_host, cfg.endpoint.as_str()),
            (0.2, 2, "http://b/RPC2")
        );
        let cli = Cli::parse_from(["one-scheduler", "--interval", "0"]);
        assert!(
            load_config(&cli)
                .unwrap_err()
                .to_string()
                .contains("interval")
        );
        std::fs::write(&file, "nope = 1\n").unwrap();
        let cli = Cli::parse_from(["one-scheduler", "--config", file.to_str().unwrap()]);
        assert!(format!("{:#}", load_config(&cli).unwrap_err()).contains("unknown field"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
