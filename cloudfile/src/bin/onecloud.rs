//! onecloud: plan, apply, export and reconcile a declarative cloud file against oned.

use anyhow::{Context, Result, anyhow};
use clap::{Args, Parser, Subcommand};
use cloudfile::render;
use cloudfile::{ApplyOptions, Event, LoadOptions, Plan, PlanOptions, Progress};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "onecloud",
    version,
    about = "A declarative cloud: a cloud file (YAML or TOML, a file or a directory) says what the cloud has; plan shows the difference, apply makes it so, export writes a running cloud as a file, reconcile keeps a cloud in line with a Git repository.",
    after_help = "Connects as OpenNebula's clients do: ONE_XMLRPC (default http://localhost:2633/RPC2) and ONE_AUTH (a file with user:password, default ~/.one/one_auth). See docs/cloudfile.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a cloud file without calling the cloud.
    Validate(FileArgs),
    /// Show what apply would do, object by object, in the order it would do it.
    Plan {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        choices: Choices,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Make the cloud match the file: shows the plan, asks, applies in dependency order.
    Apply {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        choices: Choices,
        /// Apply without asking.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print the plan and the report as JSON (progress lines go to standard error).
        #[arg(long)]
        json: bool,
        /// How long to wait for each host, image or VM to settle (e.g. 300s, 5m).
        #[arg(long, default_value = "300s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Write the cloud file of a running cloud to standard output (or -o FILE) and mark the
    /// exported objects as managed by it.
    Export {
        /// The cloud's name in the file and in the markers.
        #[arg(long, default_value = "default")]
        name: String,
        /// Write the file here (.yaml, .yml or .toml) instead of standard output.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Only the objects of this user (and what they use).
        #[arg(long)]
        user: Option<String>,
        /// Only the objects of this cluster (and what they use).
        #[arg(long)]
        cluster: Option<String>,
        /// Only write the file: do not mark the objects as managed.
        #[arg(long)]
        no_adopt: bool,
        /// Format on standard output: yaml or toml.
        #[arg(long, default_value = "yaml")]
        format: String,
    },
    /// GitOps: pull a Git repository at an interval, plan its cloud file, apply it when
    /// allowed, record every run and serve drift metrics. SIGINT or SIGTERM stops it after
    /// the run in progress.
    Reconcile(ReconcileArgs),
}

#[derive(Args, Clone)]
struct FileArgs {
    /// The cloud file, or a directory of cloud files.
    path: PathBuf,
    /// Apply this environment's overrides.
    #[arg(long)]
    env: Option<String>,
    /// Set a variable (NAME=VALUE), over the file's; may repeat.
    #[arg(long = "var", value_parser = parse_var)]
    vars: Vec<(String, String)>,
}

#[derive(Args, Clone, Copy)]
struct Choices {
    /// Delete managed objects that are no longer in the file.
    #[arg(long)]
    prune: bool,
    /// Recreate VMs made from an older template or extra attributes.
    #[arg(long)]
    replace: bool,
}

#[derive(Args)]
struct ReconcileArgs {
    /// The repository: a URL or a local directory.
    #[arg(long)]
    git: String,
    /// The branch to follow (default: the repository's default branch).
    #[arg(long)]
    branch: Option<String>,
    /// The cloud file or directory inside the repository (default: its root).
    #[arg(long, default_value = ".")]
    path: PathBuf,
    /// Time between runs (60s, 5m, 1h).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    interval: Duration,
    /// Apply the plan (without it, only report).
    #[arg(long)]
    apply: bool,
    #[command(flatten)]
    choices: Choices,
    /// Apply this environment's overrides.
    #[arg(long)]
    env: Option<String>,
    /// Directory for the audit records (one JSON line per run) and the checkout.
    #[arg(long)]
    audit_dir: PathBuf,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
    #[arg(long)]
    metrics: Option<String>,
    /// One run, then exit (status: 0 in line, 2 changes or drift, 1 failure).
    #[arg(long)]
    once: bool,
    /// How long apply waits for each host, image or VM.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    timeout: Duration,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    cloudfile::reconcile::parse_duration(s)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("onecloud: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("onecloud: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn client() -> Result<oca::Client> {
    oca::Client::from_env().context("cannot find the cloud (ONE_XMLRPC, ONE_AUTH)")
}

/// Loads the file; problems are printed one per line (file:line:column: reason).
fn load(file: &FileArgs, applier: &str) -> Result<cloudfile::CloudFile, u8> {
    let opts = LoadOptions {
        env: file.env.clone(),
        vars: file.vars.clone(),
        applier: applier.to_owned(),
    };
    cloudfile::load(&file.path, &opts).map_err(|d| {
        eprintln!("{d}");
        eprintln!(
            "onecloud: {} refused: {} problem{} (nothing was called)",
            file.path.display(),
            d.items.len(),
            if d.items.len() == 1 { "" } else { "s" }
        );
        1
    })
}

fn plan_options(c: Choices) -> PlanOptions {
    PlanOptions {
        prune: c.prune,
        replace: c.replace,
    }
}

async fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Validate(file) => {
            // The applier only decides whose objects `name` means; no call is made.
            let applier = oca::Discovery::from_process()
                .session()
                .ok()
                .and_then(|s| s.split(':').next().map(str::to_owned))
                .unwrap_or_else(|| "oneadmin".into());
            match load(&file, &applier) {
                Err(code) => Ok(code),
                Ok(f) => {
                    println!(
                        "{}: cloud {:?}, {} objects, valid",
                        file.path.display(),
                        f.name,
                        f.objects.len()
                    );
                    Ok(0)
                }
            }
        }
        Command::Plan {
            file,
            choices,
            json,
            detailed_exitcode,
        } => {
            let client = client()?;
            let f = match load(&file, client.username()) {
                Ok(f) => f,
                Err(code) => return Ok(code),
            };
            let live = cloudfile::Live::read(&client)
                .await
                .context("reading the cloud")?;
            let plan = cloudfile::plan(&f, &live, plan_options(choices));
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", render::plan_text(&plan));
            }
            Ok(if !plan.refusals.is_empty() {
                1
            } else if detailed_exitcode && plan.has_changes() {
                2
            } else {
                0
            })
        }
        Command::Apply {
            file,
            choices,
            yes,
            json,
            timeout,
        } => {
            let client = client()?;
            let f = match load(&file, client.username()) {
                Ok(f) => f,
                Err(code) => return Ok(code),
            };
            let live = cloudfile::Live::read(&client)
                .await
                .context("reading the cloud")?;
            let plan = cloudfile::plan(&f, &live, plan_options(choices));
            if json {
                eprint!("{}", render::plan_text(&plan));
            } else {
                print!("{}", render::plan_text(&plan));
            }
            if !plan.refusals.is_empty() {
                eprintln!("onecloud: nothing was applied");
                return Ok(1);
            }
            if !plan.has_changes() {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&cloudfile::ApplyReport::default())?
                    );
                }
                return Ok(0);
            }
            if !yes && !confirm(&plan)? {
                eprintln!("onecloud: apply cancelled, nothing was changed");
                return Ok(1);
            }
            let mut progress = Lines { to_stderr: json };
            let opts = ApplyOptions {
                timeout,
                ..ApplyOptions::default()
            };
            let report = cloudfile::apply(&client, &plan, &live, opts, &mut progress).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render::report_text(&report));
            }
            Ok(if report.ok() { 0 } else { 1 })
        }
        Command::Export {
            name,
            output,
            user,
            cluster,
            no_adopt,
            format,
        } => {
            let client = client()?;
            let format = match &output {
                Some(p) => cloudfile::Format::of(p).ok_or_else(|| {
                    anyhow!(
                        "{}: the file name must end in .yaml, .yml or .toml",
                        p.display()
                    )
                })?,
                None => match format.as_str() {
                    "yaml" | "yml" => cloudfile::Format::Yaml,
                    "toml" => cloudfile::Format::Toml,
                    other => return Err(anyhow!("unknown format {other:?} (yaml or toml)")),
                },
            };
            let opts = cloudfile::export::ExportOptions {
                name,
                user,
                cluster,
                adopt: !no_adopt,
                format,
            };
            let out = cloudfile::export::export(&client, &opts).await?;
            for m in &out.messages {
                eprintln!("{m}");
            }
            match output {
                Some(p) => {
                    std::fs::write(&p, &out.text)
                        .with_context(|| format!("writing {}", p.display()))?;
                    eprintln!("onecloud: wrote {} ({} objects)", p.display(), out.objects);
                }
                None => print!("{}", out.text),
            }
            Ok(0)
        }
        Command::Reconcile(a) => {
            let client = client()?;
            let opts = cloudfile::reconcile::ReconcileOptions {
                git: a.git,
                branch: a.branch,
                path: a.path,
                interval: a.interval,
                apply: a.apply,
                plan: plan_options(a.choices),
                env: a.env,
                audit_dir: a.audit_dir,
                metrics: a.metrics,
                once: a.once,
                apply_options: ApplyOptions {
                    timeout: a.timeout,
                    ..ApplyOptions::default()
                },
            };
            Ok(cloudfile::reconcile::run(&client, opts).await?)
        }
    }
}

fn confirm(plan: &Plan) -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        eprintln!("onecloud: standard input is not a terminal: reading the answer from it");
    }
    let m = &plan.summary;
    print!(
        "\nApply {} changes to cloud {:?}? Only 'yes' is accepted: ",
        m.create + m.update + m.delete + m.adopt + m.replace,
        plan.cloud
    );
    std::io::stdout().flush()?;
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

/// One line per change, as apply goes.
struct Lines {
    to_stderr: bool,
}

impl Lines {
    fn say(&self, s: &str) {
        if self.to_stderr {
            eprintln!("{s}");
        } else {
            println!("{s}");
            let _ = std::io::stdout().flush();
        }
    }
}

impl Progress for Lines {
    fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Start { .. } => {}
            Event::Wait { what, .. } => self.say(&format!("        waiting for {what}")),
            Event::Done {
                index,
                total,
                change,
                id,
            } => self.say(&format!(
                "[{index}/{total}] {} {}: done{}",
                change.action.word(),
                render::change_title(change),
                id.filter(|_| change.id.is_none())
                    .map(|i| format!(" (id {i})"))
                    .unwrap_or_default()
            )),
            Event::Failed {
                index,
                total,
                change,
                error,
            } => self.say(&format!(
                "[{index}/{total}] {} {}: FAILED: {error}",
                change.action.word(),
                render::change_title(change)
            )),
        }
    }
}
