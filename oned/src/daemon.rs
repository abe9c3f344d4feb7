//! The daemon's parts, as every subsystem reaches them: configuration, pools, authentication,
//! data directory, lifecycle, monitoring, hooks and host sessions. The HTTP side
//! (`server.rs`, `api/`) sits above it and is not part of it.

use crate::auth::Authenticator;
use crate::config::Config;
use crate::datadir::DataDir;
use crate::store::Store;

/// Everything a request handler or a background task can reach.
pub struct Oned {
    pub config: Config,
    pub store: Store,
    pub auth: Authenticator,
    pub data_dir: DataDir,
    /// The VM lifecycle: operations in flight and their driver steps.
    pub lcm: crate::lcm::Lcm,
    /// Host (and datastore) monitoring.
    pub monitor: crate::monitor::Monitor,
    /// State and API hooks.
    pub hooks: crate::hooks::Hooks,
    /// Node agent sessions of hypervisor hosts.
    pub hostmgr: crate::hostmgr::HostMgr,
    /// Takes security-group rule changes to the hosts.
    pub secgroups: crate::secgroup::Updater,
}
