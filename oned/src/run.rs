//! Starting and stopping oned.

use crate::api::Registry;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::daemon::Oned;
use crate::datadir::{DataDir, read_auth_file};
use crate::db::{Db, redact};
use crate::server::router;
use crate::store::Store;
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn init_logging(cfg: &Config, dir: &DataDir) -> anyhow::Result<()> {
    let path = dir.root.join("oned.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open log file {}", path.display()))?;
    let filter = EnvFilter::try_new(&cfg.log_level)
        .with_context(|| format!("invalid log_level {:?}", cfg.log_level))?;
    let file_layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file));
    let stderr_layer = cfg
        .log_stderr
        .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    // A second init (tests starting oned in-process twice) is harmless.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(stderr_layer)
        .try_init();
    Ok(())
}

/// oneadmin's password for a new installation: from the file named by `ONE_AUTH`, if any.
fn initial_password() -> Option<String> {
    let path = PathBuf::from(std::env::var_os("ONE_AUTH")?);
    match read_auth_file(&path) {
        Some((user, pass)) if user == "oneadmin" => Some(pass),
        Some((user, _)) => {
            tracing::warn!(file = %path.display(), %user, "ONE_AUTH names another user; generating oneadmin's password");
            None
        }
        None => None,
    }
}

/// Runs oned until SIGINT or SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let dir = DataDir::open(&cfg.data_dir)?;
    init_logging(&cfg, &dir)?;
    let url = cfg.db_url(&dir.root);
    tracing::info!(data_dir = %dir.root.display(), db = %redact(&url), "starting oned");

    let db = Db::open(&url, cfg.db_sync_full).await?;
    let store = Store::load(db).await?;
    if let Some(password) = crate::bootstrap::bootstrap(&store, &dir, initial_password()).await? {
        let path = dir.write_private("one_auth", &format!("oneadmin:{password}\n"))?;
        tracing::info!(file = %path.display(), "oneadmin credentials written");
    }
    crate::bootstrap::upgrade(&store).await?;

    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let endpoint = format!("http://{addr}/RPC2");
    dir.write_private("one_endpoint", &format!("{endpoint}\n"))?;
    tracing::info!(%endpoint, "XML-RPC API ready");

    let oned = Arc::new(Oned {
        auth: Authenticator::new(Duration::from_secs(cfg.session_cache_seconds)),
        lcm: crate::lcm::Lcm::new(&cfg),
        monitor: crate::monitor::Monitor::new(&cfg),
        hooks: crate::hooks::Hooks::new(&cfg),
        hostmgr: crate::hostmgr::HostMgr::new(&cfg),
        secgroups: Default::default(),
        config: cfg,
        store,
        data_dir: dir,
    });
    crate::hooks::start(&oned);
    crate::lcm::start(&oned);
    crate::monitor::start(&oned);
    crate::recovery::start(&oned);
    crate::secgroup::updater::start(&oned);
    let ssh = crate::hostmgr::ssh::SshTransport::new(&oned).context("oned's SSH key pair")?;
    oned.hostmgr.set_ssh(Arc::new(ssh));
    crate::hostmgr::start(&oned);
    axum::serve(listener, router(oned.clone(), Registry::full()))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    crate::monitor::flush_history(&oned).await;
    oned.store.db.close().await;
    tracing::info!("oned stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
