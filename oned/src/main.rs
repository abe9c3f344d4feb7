//! `oned`: the cloud's central daemon.

use clap::Parser;
use oned::config::Config;
use oned::hostmgr::ssh;
use std::path::PathBuf;

/// The OpenNebula-compatible cloud daemon: XML-RPC API at POST /RPC2.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML; see etc/oned.toml for every option and its default).
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    /// Data directory (database, one_auth, one_endpoint, datastores, VM files, logs).
    #[arg(long, global = true)]
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
    /// Without a command: run the daemon.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Print oned's SSH public key (making the key pair in <data dir>/ssh if missing): put it
    /// in ~/.ssh/authorized_keys of the SSH user on every host.
    SshKey,
    /// Connect to HOST and record the SSH host key it presents in <data dir>/ssh/known_hosts
    /// (check the printed fingerprint against the host's own).
    SshAcceptHost {
        /// The host's name or address, as in its onehost entry.
        host: String,
        /// SSH port (default: [hosts] ssh_port).
        #[arg(long)]
        port: Option<u16>,
        /// Replace the host's recorded key (its key was changed on purpose).
        #[arg(long)]
        replace: bool,
    },
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
    match args.command {
        None => rt.block_on(oned::run::run(cfg)),
        Some(Command::SshKey) => {
            let dir = cfg.data_dir.join("ssh");
            println!("{}", ssh::public_key_line(&dir)?);
            Ok(())
        }
        Some(Command::SshAcceptHost {
            host,
            port,
            replace,
        }) => {
            cfg.validate().map_err(anyhow::Error::msg)?;
            let s = ssh::SshSettings::new(&cfg.hosts, &cfg.data_dir);
            let port = port.unwrap_or(s.port);
            println!(
                "{}",
                rt.block_on(ssh::accept_host(&s, &host, port, replace))?
            );
            Ok(())
        }
    }
}
