//! Command line and environment: where oned is, where to listen, how long sessions live.

use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The web console of one-rs: pages over oned's API, each browser session acting with its
/// user's own login token. Holds no credentials of its own.
#[derive(Parser, Clone, Debug)]
#[command(name = "sunstone", version)]
pub struct Config {
    /// Address to serve on (ADDR:PORT; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9869")]
    pub listen: SocketAddr,

    /// oned's XML-RPC endpoint. Default: as every OpenNebula client finds it ($ONE_XMLRPC,
    /// ~/.one/one_endpoint, http://localhost:2633/RPC2).
    #[arg(long)]
    pub endpoint: Option<String>,

    /// Seconds without a request after which a browser session ends (background refreshes
    /// of an open page do not count as requests).
    #[arg(long, default_value_t = 1800)]
    pub idle_seconds: u64,

    /// Hours after login after which a session ends whatever happens (the lifetime of the
    /// login token sunstone asks oned for).
    #[arg(long, default_value_t = 8)]
    pub session_hours: u64,

    /// Seconds a call to oned may take before the page shows an error.
    #[arg(long, default_value_t = 60)]
    pub call_timeout: u64,

    /// Reverse proxies whose X-Forwarded-For names the client (for slowing down failed logins
    /// per client address). Repeat the flag for several.
    #[arg(long = "trusted-proxy")]
    pub trusted_proxies: Vec<IpAddr>,

    /// Write the URL served (http://ADDR:PORT/) to this file once listening.
    #[arg(long)]
    pub url_file: Option<PathBuf>,

    /// Log filter (tracing's syntax), e.g. "info" or "sunstone=debug".
    #[arg(long, env = "SUNSTONE_LOG", default_value = "info")]
    pub log: String,
}

impl Config {
    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_seconds.max(1))
    }

    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(self.session_hours.max(1) * 3600)
    }

    /// The endpoint given, or found as OpenNebula's clients find it.
    pub fn resolve_endpoint(&self) -> Result<String, oca::OcaError> {
        match &self.endpoint {
            Some(e) => Ok(e.clone()),
            None => oca::Discovery::from_process().endpoint(),
        }
    }
}
