//! The host manager: one long-lived session with the node agent of every hypervisor host
//! (IM_MAD or VM_MAD `kvm`), the `kvm` [`HostDriver`] that runs driver operations through it,
//! and the ingest of what agents push (docs/node-agent.md).
//!
//! ```text
//! supervisor (every second, or wake()) ── hosts to manage ──► one task per host (host.rs)
//!     transport.rs: LocalPipe (localhost) | SSH (installed with set_ssh)
//!     session.rs:   handshake, Link (requests by id), frames
//!     ingest.rs:    pushes → HOST TEMPLATE / HOST_SHARE / MONITORING, VM states
//! lcm ── driver::for_host ── AgentDriver::execute ── Link::call(Execute) ──► agent
//! ```
//!
//! A session starts when a host is allocated (or at start for existing hosts) and stops
//! when the host is deleted or set OFFLINE. DISABLED hosts keep their session: OpenNebula
//! keeps monitoring them.

pub mod host;
pub mod ingest;
pub mod session;
pub mod ssh;
pub mod transport;
pub mod vnc;

use crate::config::{Config, HostsConfig};
use crate::daemon::Oned;
use crate::driver::{DriverFuture, HostDriver};
use one_proto::agent::{AgentVersion, Reply, Request, SecurityGroupUpdate, VmDocument};
use one_proto::driver::DriverError;
use one_proto::objects::host::Host;
use one_proto::state::HostState;
use session::{CallError, Link};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, watch};
use transport::{LocalPipe, Target, Transport};

/// The IM_MAD / VM_MAD of hosts driven by the node agent.
pub const AGENT_MAD: &str = "kvm";

/// How often the supervisor looks at the host pool (a walk of the pool's addresses; the
/// sessions are compared only when a host document changed).
const SCAN_EVERY: Duration = Duration::from_millis(250);

/// Whether a host is driven by a node agent now (and so has a session).
pub fn managed(h: &Host) -> bool {
    (h.im_mad == AGENT_MAD || h.vm_mad == AGENT_MAD) && h.state != HostState::Offline
}

/// `[hosts]` periods as durations (validated by the configuration).
#[derive(Clone, Debug)]
pub struct Timing {
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    pub error_after: Duration,
    pub hello_timeout: Duration,
    pub request_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// A VM whose operation was answered this recently is not taken as missing from a full
    /// domain report (the report may have been made before the operation ended).
    pub fresh_grace: Duration,
    /// How often a host whose onboarding checks failed is probed again.
    pub probe_retry: Duration,
}

fn secs(v: f64) -> Duration {
    Duration::try_from_secs_f64(v).unwrap_or(Duration::from_secs(1))
}

impl Timing {
    pub fn new(c: &HostsConfig) -> Timing {
        let max = secs(c.reconnect_max_seconds);
        Timing {
            reconnect_initial: secs(c.reconnect_initial_seconds).min(max),
            reconnect_max: max,
            error_after: secs(c.error_after_seconds),
            hello_timeout: secs(c.hello_timeout_seconds),
            request_timeout: secs(c.request_timeout_seconds),
            keepalive_interval: secs(c.keepalive_interval_seconds),
            keepalive_timeout: secs(c.keepalive_timeout_seconds),
            fresh_grace: (secs(c.vm_state_seconds) * 2).max(Duration::from_secs(10)),
            probe_retry: max,
        }
    }
}

/// oned's own agent build, remembered with the file's size and time.
struct OwnBuild {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
    version: AgentVersion,
}

/// The current session of a host (None while it has none).
type LinkWatch = watch::Receiver<Option<Link>>;

struct Entry {
    target: Target,
    stop: watch::Sender<bool>,
    link: LinkWatch,
    status: Arc<Mutex<String>>,
}

pub struct Inner {
    timing: Timing,
    agent_path: PathBuf,
    simulate_all: bool,
    /// Driver operations' timeout (the lifecycle's).
    driver_timeout: Duration,
    hosts: Mutex<HashMap<i64, Entry>>,
    local: Arc<dyn Transport>,
    ssh: RwLock<Option<Arc<dyn Transport>>>,
    own: tokio::sync::Mutex<Option<OwnBuild>>,
    wake: Notify,
}

/// The agent sessions of every managed host.
pub struct HostMgr {
    inner: Arc<Inner>,
}

/// The agent binary next to the running oned.
fn default_agent_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default()
        .join(one_proto::agent::AGENT_BINARY)
}

impl HostMgr {
    pub fn new(cfg: &Config) -> HostMgr {
        HostMgr::with_local_transport(cfg, Arc::new(LocalPipe))
    }

    /// A manager reaching local hosts through `local` instead of a child process (tests).
    pub fn with_local_transport(cfg: &Config, local: Arc<dyn Transport>) -> HostMgr {
        let c = &cfg.hosts;
        let agent_path = if c.agent_path.as_os_str().is_empty() {
            default_agent_path()
        } else {
            c.agent_path.clone()
        };
        HostMgr {
            inner: Arc::new(Inner {
                timing: Timing::new(c),
                agent_path,
                simulate_all: c.simulate_agents,
                driver_timeout: Duration::from_secs(cfg.lcm.driver_timeout_seconds.max(1)),
                hosts: Mutex::new(HashMap::new()),
                local,
                ssh: RwLock::new(None),
                own: tokio::sync::Mutex::new(None),
                wake: Notify::new(),
            }),
        }
    }

    /// Installs the transport that reaches remote hosts (SSH); hosts that failed for lack
    /// of it connect at their next attempt.
    pub fn set_ssh(&self, t: Arc<dyn Transport>) {
        if let Ok(mut s) = self.inner.ssh.write() {
            *s = Some(t);
        }
    }

    /// Asks the supervisor to look at the host pool now (e.g. a host was allocated).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// The agent binary oned starts and ships.
    pub fn agent_path(&self) -> &Path {
        &self.inner.agent_path
    }

    /// The live session of host `id`, if it has one.
    pub fn link(&self, id: i64) -> Option<Link> {
        self.inner.watch(id).and_then(|(w, _)| w.borrow().clone())
    }

    /// Hosts with a session task (connected or not).
    pub fn managed_hosts(&self) -> usize {
        self.inner.hosts.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// The driver of an agent-managed host.
    pub fn driver(&self, host: &Host) -> AgentDriver {
        AgentDriver {
            inner: self.inner.clone(),
            host_id: host.id,
            host_name: host.name.clone(),
        }
    }

    /// Runs a request that is not a driver operation (probe, list_domains) on host `id`'s
    /// session, within `[hosts] request_timeout_seconds`.
    pub async fn request(&self, id: i64, req: Request) -> Result<Reply, CallError> {
        let link = self.link(id).ok_or(CallError::Lost)?;
        link.call(req, self.inner.timing.request_timeout).await
    }
}

impl Inner {
    fn watch(&self, id: i64) -> Option<(LinkWatch, Arc<Mutex<String>>)> {
        let hosts = self.hosts.lock().ok()?;
        hosts.get(&id).map(|e| (e.link.clone(), e.status.clone()))
    }

    /// The transport that reaches host `name`.
    async fn transport_for(&self, name: &str) -> Result<Arc<dyn Transport>, String> {
        let ssh = self.ssh.read().ok().and_then(|s| s.clone());
        match transport::is_local(name).await {
            Ok(true) => Ok(self.local.clone()),
            Ok(false) => ssh.ok_or_else(|| {
                format!(
                    "host {name} is not this machine and this oned has no SSH transport: only \
                     localhost (or a name resolving to a loopback address) can be reached"
                )
            }),
            // Let SSH resolve it (it may know the name from its own configuration).
            Err(e) => ssh.ok_or(e),
        }
    }

    /// The version oned expects agents to run: the SHA-256 of its own agent binary,
    /// computed again only when the file changed.
    async fn own_build(&self, path: &Path) -> Result<AgentVersion, String> {
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| format!("agent binary {}: {e}", path.display()))?;
        let (len, modified) = (meta.len(), meta.modified().ok());
        let mut own = self.own.lock().await;
        if let Some(o) = own.as_ref()
            && o.path == path
            && o.len == len
            && o.modified == modified
        {
            return Ok(o.version.clone());
        }
        let p = path.to_path_buf();
        let build = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut f = std::fs::File::open(&p)?;
            let mut h = Sha256::new();
            std::io::copy(&mut f, &mut h)?;
            Ok(hex::encode(h.finalize()))
        })
        .await
        .map_err(|e| format!("hashing the agent binary: {e}"))?
        .map_err(|e| format!("agent binary {}: {e}", path.display()))?;
        let version = AgentVersion {
            version: env!("CARGO_PKG_VERSION").to_string(),
            build,
        };
        *own = Some(OwnBuild {
            path: path.to_path_buf(),
            len,
            modified,
            version: version.clone(),
        });
        Ok(version)
    }
}

/// Starts the supervisor; called once oned is built.
pub fn start(oned: &Arc<Oned>) {
    let o = oned.clone();
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut scans = 0u64;
        loop {
            scans += 1;
            // Now and then regardless: a freed document's address may be reused.
            if scans.is_multiple_of(20) {
                seen.clear();
            }
            // A transaction replaces the documents it changes, so unchanged addresses mean
            // nothing to do (samples change documents in place).
            let now: Vec<(i64, usize)> = o
                .store
                .read()
                .hosts
                .map
                .iter()
                .map(|(id, h)| (*id, Arc::as_ptr(h) as usize))
                .collect();
            if now != seen {
                reconcile(&o);
                seen = now;
            }
            tokio::select! {
                _ = tokio::time::sleep(SCAN_EVERY) => {}
                _ = o.hostmgr.inner.wake.notified() => seen.clear(),
            }
        }
    });
}

/// What the session of a managed host needs to know about it; a change restarts it.
fn target_of(inner: &Inner, h: &Host) -> Target {
    let simulate = inner.simulate_all
        || h.template
            .get("AGENT_SIMULATE")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"));
    Target {
        host_id: h.id,
        host_name: h.name.clone(),
        agent_path: inner.agent_path.clone(),
        simulate,
    }
}

/// Starts a session task for every managed host without one, and stops those of hosts
/// deleted, set OFFLINE, renamed or switched to another mode.
pub fn reconcile(oned: &Arc<Oned>) {
    let inner = &oned.hostmgr.inner;
    let wanted: HashMap<i64, Target> = {
        let st = oned.store.read();
        st.hosts
            .iter()
            .filter(|h| managed(h))
            .map(|h| (h.id, target_of(inner, h)))
            .collect()
    };
    let Ok(mut hosts) = inner.hosts.lock() else {
        return;
    };
    hosts.retain(|id, e| {
        let keep = wanted.get(id) == Some(&e.target);
        if !keep {
            tracing::info!(host = id, "stopping the agent session");
            e.stop.send_replace(true);
        }
        keep
    });
    for (id, target) in wanted {
        if hosts.contains_key(&id) {
            continue;
        }
        tracing::info!(host = id, name = %target.host_name, simulate = target.simulate, "starting the agent session");
        let (stop_tx, stop_rx) = watch::channel(false);
        let (link_tx, link_rx) = watch::channel(None);
        let status = Arc::new(Mutex::new(String::new()));
        let task = host::HostTask {
            oned: oned.clone(),
            mgr: inner.clone(),
            target: target.clone(),
            stop: stop_rx,
            link: link_tx,
            status: status.clone(),
        };
        tokio::spawn(task.run());
        hosts.insert(
            id,
            Entry {
                target,
                stop: stop_tx,
                link: link_rx,
                status,
            },
        );
    }
}

/// The `kvm` host driver: each operation is an `execute` request on the host's session.
pub struct AgentDriver {
    inner: Arc<Inner>,
    host_id: i64,
    host_name: String,
}

fn not_connected(name: &str, why: &str) -> DriverError {
    if why.is_empty() {
        DriverError::new(format!("host {name} is not connected"))
    } else {
        DriverError::new(format!("host {name} is not connected: {why}"))
    }
}

impl HostDriver for AgentDriver {
    fn execute(&self, req: one_proto::driver::DriverRequest) -> DriverFuture {
        let inner = self.inner.clone();
        let (id, name) = (self.host_id, self.host_name.clone());
        Box::pin(async move {
            let Some((mut watch, status)) = inner.watch(id) else {
                return Err(not_connected(&name, "it has no agent session"));
            };
            let current = watch.borrow_and_update().clone();
            let Some(mut link) = current else {
                let why = status.lock().map(|s| s.clone()).unwrap_or_default();
                return Err(not_connected(&name, &why));
            };
            let op = req.op;
            loop {
                let res = link
                    .call(Request::Execute(req.clone()), inner.driver_timeout)
                    .await;
                match res {
                    Ok(Reply::Ok(r)) => return Ok(r),
                    Ok(Reply::Err(e)) => return Err(e),
                    Ok(other) => {
                        return Err(DriverError::new(format!(
                            "the agent of host {name} answered {other:?} to {}",
                            op.name()
                        )));
                    }
                    // The session was lost with the request in flight: it goes again on the
                    // next session (operations are idempotent); the lifecycle's timeout
                    // bounds the wait.
                    Err(CallError::Lost) => loop {
                        if watch.changed().await.is_err() {
                            return Err(not_connected(&name, "its agent session was stopped"));
                        }
                        let next = watch.borrow_and_update().clone();
                        if let Some(l) = next {
                            tracing::info!(
                                host = id,
                                vm = req.vm_id,
                                op = op.name(),
                                "sending the operation again on the new session"
                            );
                            link = l;
                            break;
                        }
                    },
                    Err(e) => {
                        return Err(DriverError::new(format!("host {name}: {e}")));
                    }
                }
            }
        })
    }

    fn update_security_groups(&self, vms: Vec<VmDocument>) -> DriverFuture {
        let inner = self.inner.clone();
        let (id, name) = (self.host_id, self.host_name.clone());
        Box::pin(async move {
            let link = inner
                .watch(id)
                .and_then(|(w, _)| w.borrow().clone())
                .ok_or_else(|| not_connected(&name, "it has no agent session"))?;
            let req = Request::UpdateSecurityGroups(SecurityGroupUpdate { vms });
            match link.call(req, inner.driver_timeout).await {
                Ok(Reply::Ok(r)) => Ok(r),
                Ok(Reply::Err(e)) => Err(e),
                Ok(other) => Err(DriverError::new(format!(
                    "the agent of host {name} answered {other:?} to update_security_groups"
                ))),
                Err(e) => Err(DriverError::new(format!("host {name}: {e}"))),
            }
        })
    }
}

#[cfg(test)]
mod tests;
