//! `oned`: the cloud's central daemon.

use clap::Parser;
use oned::config::Config;
use std::path::PathBuf;

/// The OpenNebula-compatible cloud daemon: XML-RPC API at POST /RPC2.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML; see etc/oned.toml for every option and its default).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Data directory (database, one_auth, one_endpoint, datastores, VM files, logs).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:2633; port 0 picks a free port and writes the
    /// endpoint to <data dir>/one_endpoint.
    #[arg(long)]
    listen: Option<String>,
    /// Database URL (default SQLite in the data directory; postgres://... for PostgreSQL).
    #[arg(long)]
    db: Option<String>,
    /// Also log to stderr.
    #[arg(long)]
    log_stderr: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cfg = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(db) = args.db {
        cfg.db = db;
    }
    cfg.log_stderr |= args.log_stderr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(oned::run::run(cfg))
}
