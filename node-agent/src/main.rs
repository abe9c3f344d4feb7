//! `one-node-agent --stdio`: the node agent's command line (see the library for the rest).

use clap::Parser;
use one_node_agent::simulated::{SimOptions, parse_ops};
use one_node_agent::{EXIT_ERROR, EXIT_OK, Options, Role, driver, run_stdio};
use std::path::PathBuf;
use std::time::Duration;

/// The agent oned runs on each hypervisor host. It has no configuration file: oned sends
/// the configuration in its Welcome. Logs go to stderr; stdout carries the protocol only.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Speak the node-agent protocol on stdin/stdout (the only mode).
    #[arg(long, required = true)]
    stdio: bool,
    /// The hypervisor driver.
    #[arg(long, env = "ONE_AGENT_DRIVER", default_value = "libvirt",
          value_parser = clap::builder::PossibleValuesParser::new(driver::DRIVER_NAMES))]
    driver: String,
    /// Same as --driver simulated: domains in memory, no hypervisor.
    #[arg(long)]
    simulate: bool,
    /// The frontend agent oned runs on its own machine: datastore operations and byte
    /// streams, no hypervisor (docs/storage.md).
    #[arg(long)]
    frontend: bool,
    /// The byte stream's socket, a file descriptor oned hands over (a local agent);
    /// without it the agent listens on a Unix socket of its own (docs/node-agent.md).
    #[arg(long)]
    stream_fd: Option<i32>,
    /// Simulated driver: how long each operation takes, in ms.
    #[arg(long, env = "ONE_AGENT_SIM_DELAY_MS", default_value_t = 0)]
    sim_delay_ms: u64,
    /// Simulated driver: operations that fail, comma-separated (prolog,deploy,...).
    #[arg(long, env = "ONE_AGENT_SIM_FAIL", default_value = "")]
    sim_fail: String,
    /// Simulated driver: keep the domains in this file across restarts.
    #[arg(long, env = "ONE_AGENT_SIM_STATE")]
    sim_state: Option<PathBuf>,
    /// How long to wait for oned's Welcome, in ms.
    #[arg(long, default_value_t = 30_000)]
    welcome_timeout_ms: u64,
    /// What goes to stderr (a tracing filter: error, warn, info, debug, or per module).
    #[arg(long, env = "ONE_AGENT_LOG", default_value = "info")]
    log: String,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let code = match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("one-node-agent: {e:#}");
            EXIT_ERROR
        }
    };
    std::process::exit(code);
}

fn run(args: Args) -> anyhow::Result<i32> {
    let fail = parse_ops(&args.sim_fail).map_err(anyhow::Error::msg)?;
    let opts = Options {
        driver: if args.simulate {
            "simulated".into()
        } else {
            args.driver
        },
        sim: SimOptions {
            delay: Duration::from_millis(args.sim_delay_ms),
            fail,
            state_file: args.sim_state,
        },
        welcome_timeout: Duration::from_millis(args.welcome_timeout_ms),
        role: if args.frontend {
            Role::Frontend
        } else {
            Role::Host
        },
        stream_fd: args.stream_fd,
    };
    // One thread: an agent is mostly idle, and a host may run many (the simulated benchmark
    // runs a thousand). Blocking calls (stdio, libvirt, statvfs) go to the blocking pool,
    // whose threads outlive the monitoring periods instead of being made again each time.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_keep_alive(Duration::from_secs(300))
        .build()?;
    let result = rt.block_on(run_stdio(opts));
    // A read of stdin may still be pending in the blocking pool: do not wait for it.
    rt.shutdown_background();
    Ok(match result {
        Ok(outcome) => {
            tracing::info!(?outcome, "session ended");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("one-node-agent: {e}");
            e.exit_code()
        }
    })
}
