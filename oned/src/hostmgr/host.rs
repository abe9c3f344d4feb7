//! One task per agent-managed host: connect (transport, handshake), run the session (replies,
//! pushes, keepalive), and when it is lost connect again with exponential backoff. After
//! `error_after` without a session (at once for a refusal, a failed onboarding check or a
//! host that cannot be reached at all) the host goes to ERROR and its RUNNING VMs to UNKNOWN;
//! a healthy session's monitoring brings it back to MONITORED, and its full domain report
//! settles the VMs.

use super::session::{FrameReader, Link, SessionError, handshake, start_link};
use super::transport::{AgentStream, StderrTail, Target, TransportError};
use super::{Inner, Timing, ingest};
use crate::daemon::Oned;
use crate::ops::datastore::is_shared;
use one_proto::agent::{
    AgentConfig, Beat, DatastoreDir, DomainType, FromAgent, Keepalive, LogLevel, MonitoringPeriods,
    OnboardingReport, PROTOCOL_VERSION, Reply, Request, RequestId, SharedDatastore, ToAgent,
    Welcome,
};
use one_proto::objects::host::Host;
use one_proto::state::DatastoreType;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a stopped session waits for the agent to finish after `shutdown`.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Lets a dying agent's stderr reach the tail before it goes into the host's ERROR.
const STDERR_SETTLE: Duration = Duration::from_millis(200);

pub(super) struct HostTask {
    pub oned: Arc<Oned>,
    pub mgr: Arc<Inner>,
    pub target: Target,
    pub stop: watch::Receiver<bool>,
    pub link: watch::Sender<Option<Link>>,
    /// The session's byte stream (None while it has none).
    pub mux: watch::Sender<Option<one_stream::Mux>>,
    /// Why the host has no session (for "not connected" messages); empty while connected.
    pub status: Arc<Mutex<String>>,
}

/// A failed attempt, or the end of a session.
struct Failure {
    reason: String,
    /// Put the host in ERROR now rather than after `error_after`.
    at_once: bool,
}

enum End {
    Stopped,
    Lost(Failure),
}

struct Connected {
    reader: FrameReader,
    link: Link,
    writer: JoinHandle<Result<(), SessionError>>,
    stderr: StderrTail,
    /// The configuration the welcome carried.
    config: AgentConfig,
    /// The byte stream beside the session.
    mux: Option<one_stream::Mux>,
    /// The agent process (or channel): dropped when the session ends.
    _keep: Option<Box<dyn Send>>,
}

/// What one session has learned.
#[derive(Default)]
struct SessionState {
    /// None until the agent's onboarding report; Some(false) keeps the host out of MONITORED.
    onboarding_ok: Option<bool>,
    /// `probe` requests sent after a failed onboarding, by id.
    probes: HashSet<RequestId>,
    next_probe: Option<Instant>,
    /// VMs whose operation was just answered: a full report may predate it.
    fresh: HashMap<i64, Instant>,
    ping_seq: u64,
    /// The configuration the agent has (welcome, then the last Configure).
    sent: Option<AgentConfig>,
    /// The documents that configuration was made from ([`config_key`]).
    sent_key: Vec<usize>,
}

/// Where the documents a host's agent configuration is made from live: a transaction
/// replaces the documents it changes, so an unchanged key means an unchanged configuration
/// (and nothing to compute, once a second for each of a thousand hosts).
fn config_key(oned: &Oned, id: i64) -> Vec<usize> {
    let st = oned.store.read();
    let Some(h) = st.hosts.map.get(&id) else {
        return Vec::new();
    };
    let mut key = vec![std::sync::Arc::as_ptr(h) as usize];
    if let Some(cl) = st.clusters.map.get(&h.cluster_id) {
        key.push(std::sync::Arc::as_ptr(cl) as usize);
        for d in &cl.datastores {
            key.extend(
                st.datastores
                    .map
                    .get(d)
                    .map(|x| std::sync::Arc::as_ptr(x) as usize),
            );
        }
        for v in &cl.vnets {
            key.extend(
                st.vnets
                    .map
                    .get(v)
                    .map(|x| std::sync::Arc::as_ptr(x) as usize),
            );
        }
    }
    key
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn ms(secs: f64) -> u64 {
    (secs * 1000.0).round() as u64
}

/// The configuration a host's agent gets in its welcome: `[hosts]` settings, the host's
/// DOMAIN_TYPE, its cluster's system datastores (where VM directories go), its cluster's
/// shared datastores with their tokens (verified, never made nor measured by the host: the
/// `SHARED_DS` capability; the other system datastores are the host's own disk, made when
/// missing and measured there), and the bridges its networks expect to exist (those of
/// `dummy` networks, which oned does not create).
pub fn agent_config(oned: &Oned, host: &Host) -> AgentConfig {
    let c = &oned.config.hosts;
    let domain_type = |v: &str| match v.trim().to_ascii_lowercase().as_str() {
        "kvm" => Some(DomainType::Kvm),
        "qemu" => Some(DomainType::Qemu),
        _ => None,
    };
    let log_level = match c.agent_log_level.as_str() {
        "error" => LogLevel::Error,
        "warn" => LogLevel::Warn,
        "debug" => LogLevel::Debug,
        _ => LogLevel::Info,
    };
    let (datastores, shared_datastores, bridges) = {
        let st = oned.store.read();
        let cluster = st.clusters.get(host.cluster_id);
        let in_cluster: Vec<&std::sync::Arc<one_proto::objects::datastore::Datastore>> = cluster
            .map(|cl| {
                cl.datastores
                    .iter()
                    .filter_map(|id| st.datastores.get(*id))
                    .collect()
            })
            .unwrap_or_default();
        let datastores = in_cluster
            .iter()
            .filter(|d| d.ds_type == DatastoreType::System)
            .map(|d| DatastoreDir {
                id: d.header.id,
                path: d.base_path.clone(),
            })
            .collect();
        let shared = in_cluster
            .iter()
            .filter(|d| is_shared(d))
            .map(|d| SharedDatastore {
                id: d.header.id,
                path: d.base_path.clone(),
                token: oned.storage.token(d.header.id),
            })
            .collect();
        let bridges: BTreeSet<String> = cluster
            .map(|cl| {
                cl.vnets
                    .iter()
                    .filter_map(|id| st.vnets.get(*id))
                    .filter(|v| v.vn_mad == "dummy" && !v.bridge.is_empty())
                    .map(|v| v.bridge.clone())
                    .collect()
            })
            .unwrap_or_default();
        (datastores, shared, bridges.into_iter().collect())
    };
    AgentConfig {
        monitoring: MonitoringPeriods {
            host_system_ms: ms(c.host_system_seconds),
            host_usage_ms: ms(c.host_usage_seconds),
            vm_usage_ms: ms(c.vm_usage_seconds),
            vm_state_ms: ms(c.vm_state_seconds),
            vm_state_sync_ms: ms(c.vm_state_sync_seconds),
        },
        keepalive: Keepalive {
            interval_ms: ms(c.keepalive_interval_seconds),
            timeout_ms: ms(c.keepalive_timeout_seconds),
        },
        // A host's own LIBVIRT_URI wins (a libvirtd elsewhere than qemu:///system).
        libvirt_uri: host
            .template
            .get("LIBVIRT_URI")
            .filter(|u| !u.trim().is_empty())
            .map_or_else(|| c.libvirt_uri.clone(), |u| u.trim().to_string()),
        domain_type: host
            .template
            .get("DOMAIN_TYPE")
            .and_then(domain_type)
            .or_else(|| domain_type(&c.domain_type)),
        domain_prefix: c.domain_prefix.clone(),
        shutdown_timeout_ms: oned
            .config
            .lcm
            .shutdown_timeout_seconds
            .saturating_mul(1000),
        shutdown_force_destroy: oned.config.lcm.shutdown_force_destroy,
        datastores,
        bridges,
        max_clock_skew_ms: ms(c.max_clock_skew_seconds),
        log_level,
        network: oned.config.network.for_hosts(),
        shared_datastores,
        frontend: None,
    }
}

impl HostTask {
    fn id(&self) -> i64 {
        self.target.host_id
    }

    fn timing(&self) -> &Timing {
        &self.mgr.timing
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow() || self.stop.has_changed().is_err()
    }

    fn set_status(&self, s: &str) {
        if let Ok(mut st) = self.status.lock() {
            s.clone_into(&mut st);
        }
    }

    /// Waits until the host's session is to stop.
    async fn stopped(stop: &mut watch::Receiver<bool>) {
        // An error means the manager dropped the entry: stop as well.
        let _ = stop.wait_for(|s| *s).await;
    }

    pub(super) async fn run(mut self) {
        let id = self.id();
        let t = self.timing().clone();
        let mut backoff = t.reconnect_initial;
        let mut down_since = Instant::now();
        let mut failures = 0u32;
        let mut last = String::from("the agent session has not started yet");
        self.set_status(&last);
        while !self.stopping() {
            let mut stop = self.stop.clone();
            let attempt = tokio::select! {
                r = self.connect(failures) => r,
                _ = Self::stopped(&mut stop) => break,
            };
            let failure = match attempt {
                Ok(c) => {
                    failures = 0;
                    let began = Instant::now();
                    self.set_status("");
                    tracing::info!(host = id, name = %self.target.host_name, "agent session open");
                    let end = self.session(c).await;
                    self.link.send_replace(None);
                    match end {
                        End::Stopped => break,
                        End::Lost(f) => {
                            // A session that lived a while earns a quick reconnect; one that
                            // dies at once keeps backing off.
                            if began.elapsed() >= t.keepalive_timeout {
                                backoff = t.reconnect_initial;
                            }
                            down_since = Instant::now();
                            tracing::warn!(host = id, reason = %f.reason, "agent session lost");
                            f
                        }
                    }
                }
                Err(f) => {
                    failures += 1;
                    tracing::warn!(host = id, reason = %f.reason, failures, "cannot connect to the agent");
                    f
                }
            };
            last = failure.reason;
            self.set_status(&last);
            if failure.at_once || down_since.elapsed() >= t.error_after {
                self.error(&last).await;
            }
            // Sleep until the next attempt; the ERROR deadline may come first.
            let deadline = down_since + t.error_after;
            let wake = Instant::now() + backoff;
            backoff = (backoff * 2).min(t.reconnect_max);
            let mut stop = self.stop.clone();
            if Instant::now() < deadline && deadline < wake {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.into()) => self.error(&last).await,
                    _ = Self::stopped(&mut stop) => break,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = Self::stopped(&mut stop) => break,
            }
        }
        self.link.send_replace(None);
        tracing::info!(host = id, "agent session stopped");
    }

    async fn error(&self, reason: &str) {
        if let Err(e) = ingest::host_error(&self.oned.store, self.id(), reason).await {
            tracing::error!(host = self.id(), error = %e, "cannot store the host's error");
        }
    }

    async fn connect(&self, failures: u32) -> Result<Connected, Failure> {
        let at_once = |reason: String| Failure {
            reason,
            at_once: true,
        };
        // An unreachable host may become reachable (DNS, an SSH transport): it goes to
        // ERROR after `error_after`, as a lost session does.
        let transport = self
            .mgr
            .transport_for(&self.target.host_name)
            .await
            .map_err(|reason| Failure {
                reason,
                at_once: false,
            })?;
        let own = self
            .mgr
            .own_build(&self.target.agent_path)
            .await
            .map_err(at_once)?;
        let AgentStream {
            reader,
            mut writer,
            stderr,
            keep,
            stream,
        } = transport.connect(&self.target).await.map_err(|e| Failure {
            at_once: !matches!(e, TransportError::Unreachable(_)),
            reason: e.to_string(),
        })?;
        let mut reader = FrameReader::new(reader);
        let Some(host) = self.oned.store.get::<Host>(self.id()) else {
            return Err(Failure {
                reason: "the host no longer exists".into(),
                at_once: false,
            });
        };
        let config = agent_config(&self.oned, &host);
        let welcome = |_: &one_proto::agent::Hello| Welcome {
            protocol_version: PROTOCOL_VERSION,
            host_id: host.id,
            host_name: host.name.clone(),
            time_ms: now_ms(),
            config: config.clone(),
        };
        let res = handshake(
            &mut reader,
            &mut writer,
            &own,
            self.timing().hello_timeout,
            welcome,
        )
        .await;
        match res {
            Ok(hello) => {
                tracing::debug!(host = self.id(), via = transport.name(), agent = %hello.agent.version, hostname = %hello.host.hostname, "agent welcomed");
                let (link, writer) = start_link(self.id(), writer);
                let mux = super::transport::start_stream(stream, &hello, &self.target.host_name)
                    .await
                    .map(|(mux, incoming)| {
                        // TM_MAD local: the host's reads and writes of the frontend's files.
                        tokio::spawn(crate::storage::relay::serve(
                            self.oned.clone(),
                            self.id(),
                            incoming,
                        ));
                        mux
                    });
                Ok(Connected {
                    reader,
                    link,
                    writer,
                    stderr,
                    config,
                    mux,
                    _keep: keep,
                })
            }
            Err(e @ (SessionError::Refused(_) | SessionError::AgentRefused(_))) => {
                Err(at_once(e.to_string()))
            }
            Err(e) => {
                // The agent died or stayed silent: its stderr says why (a missing library, a
                // bad option). A second failure in a row goes to ERROR at once.
                tokio::time::sleep(STDERR_SETTLE).await;
                Err(Failure {
                    reason: with_stderr(e.to_string(), &stderr),
                    at_once: failures >= 1,
                })
            }
        }
    }

    /// Runs a session until it ends. Replies go to their callers; pushes into the store.
    async fn session(&mut self, mut c: Connected) -> End {
        let id = self.id();
        let t = self.timing().clone();
        self.link.send_replace(Some(c.link.clone()));
        self.mux.send_replace(c.mux.clone());
        let mut st = SessionState {
            sent: Some(c.config.clone()),
            sent_key: config_key(&self.oned, id),
            ..SessionState::default()
        };
        let mut last_rx = Instant::now();
        let tick_every =
            (t.keepalive_interval / 2).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = self.stop.clone();
        let end = loop {
            tokio::select! {
                _ = Self::stopped(&mut stop) => {
                    self.shut_down(&mut c).await;
                    break End::Stopped;
                }
                res = &mut c.writer => {
                    let reason = match res {
                        Ok(Err(e)) => e.to_string(),
                        _ => "the writer to the agent ended".to_string(),
                    };
                    break End::Lost(Failure { reason: with_stderr(reason, &c.stderr), at_once: false });
                }
                frame = c.reader.next() => match frame {
                    Ok(Some(m)) => {
                        last_rx = Instant::now();
                        if let Some(end) = self.handle(m, &c.link, &mut st).await {
                            break end;
                        }
                    }
                    Ok(None) => {
                        tokio::time::sleep(STDERR_SETTLE).await;
                        break End::Lost(Failure {
                            reason: with_stderr(SessionError::Closed.to_string(), &c.stderr),
                            at_once: false,
                        });
                    }
                    Err(e) => break End::Lost(Failure { reason: e.to_string(), at_once: false }),
                },
                _ = tick.tick() => {
                    if last_rx.elapsed() >= t.keepalive_timeout {
                        let e = SessionError::Silent(t.keepalive_timeout.as_secs());
                        break End::Lost(Failure { reason: e.to_string(), at_once: false });
                    }
                    if c.link.since_write() >= t.keepalive_interval {
                        st.ping_seq += 1;
                        c.link.send(&ToAgent::Ping(Beat { seq: st.ping_seq, time_ms: now_ms() }));
                    }
                    // Datastores or bridges changed (a datastore added to the cluster, its
                    // token known): the agent takes them without a new session.
                    let key = config_key(&self.oned, id);
                    if st.onboarding_ok != Some(false) && key != st.sent_key {
                        st.sent_key = key;
                        if let Some(now) = self.oned.store.get::<Host>(id).map(|h| agent_config(&self.oned, &h))
                            && st.sent.as_ref() != Some(&now)
                        {
                            c.link.send_request(Request::Configure(now.clone()));
                            st.sent = Some(now);
                        }
                    }
                    if st.onboarding_ok == Some(false)
                        && st.next_probe.is_none_or(|n| Instant::now() >= n)
                    {
                        // A check may fail for what the welcome said (a bridge of a network
                        // since deleted): a changed configuration needs a new session.
                        let now = self.oned.store.get::<Host>(id).map(|h| agent_config(&self.oned, &h));
                        if now.is_some_and(|cfg| cfg != c.config) {
                            let reason = "the agent's configuration changed".to_string();
                            break End::Lost(Failure { reason, at_once: false });
                        }
                        if let Some(rid) = c.link.send_request(Request::Probe) {
                            st.probes.insert(rid);
                        }
                        st.next_probe = Some(Instant::now() + t.probe_retry);
                    }
                }
            }
        };
        c.link.close();
        c.writer.abort();
        self.mux.send_replace(None);
        if let Some(m) = &c.mux {
            m.close();
        }
        tracing::debug!(host = id, "agent session closed");
        end
    }

    /// Asks the agent to finish and exit, and waits a little for it (its replies still reach
    /// their callers).
    async fn shut_down(&self, c: &mut Connected) {
        c.link.send_request(Request::Shutdown);
        let _ = tokio::time::timeout(STOP_GRACE, async {
            while let Ok(Some(m)) = c.reader.next().await {
                if let FromAgent::Reply { id, reply } = m {
                    c.link.deliver(id, reply);
                }
            }
        })
        .await;
    }

    async fn handle(&self, m: FromAgent, link: &Link, st: &mut SessionState) -> Option<End> {
        let id = self.id();
        let store = &self.oned.store;
        match m {
            FromAgent::Reply { id: rid, reply } => {
                if st.probes.remove(&rid) {
                    match reply {
                        Reply::CheckReport(r) => self.onboarding(r, st).await,
                        other => {
                            tracing::warn!(host = id, reply = ?other, "unexpected answer to probe")
                        }
                    }
                } else if let Some(Some(vm)) = link.deliver(rid, reply) {
                    st.fresh.insert(vm, Instant::now());
                }
            }
            FromAgent::HostMonitoring(m) => {
                let healthy = st.onboarding_ok != Some(false);
                if let Err(e) = ingest::host_monitoring(store, id, &m, healthy).await {
                    tracing::warn!(host = id, error = %e, "cannot store host monitoring");
                }
            }
            FromAgent::VmMonitoring(m) => {
                let n = ingest::vm_monitoring(store, id, &m).await;
                tracing::trace!(host = id, vms = n, "vm monitoring");
            }
            FromAgent::DomainStates(d) => {
                let grace = self.timing().fresh_grace;
                st.fresh.retain(|_, at| at.elapsed() < grace);
                let fresh = &st.fresh;
                match ingest::domain_states(store, id, &d, |vm| fresh.contains_key(&vm)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        host = id,
                        full = d.full,
                        changed = n,
                        "vm states from the agent"
                    ),
                    Err(e) => tracing::warn!(host = id, error = %e, "cannot store vm states"),
                }
            }
            FromAgent::OnboardingReport(r) => self.onboarding(r, st).await,
            FromAgent::Log(l) => self.agent_log(&l),
            FromAgent::Ping(b) => {
                link.send(&ToAgent::Pong(Beat {
                    seq: b.seq,
                    time_ms: now_ms(),
                }));
            }
            FromAgent::Pong(_) => {}
            FromAgent::Refused(r) => {
                return Some(End::Lost(Failure {
                    reason: SessionError::AgentRefused(r).to_string(),
                    at_once: true,
                }));
            }
            other @ FromAgent::Hello(_) => {
                return Some(End::Lost(Failure {
                    reason: SessionError::Unexpected(other.kind()).to_string(),
                    at_once: false,
                }));
            }
        }
        None
    }

    async fn onboarding(&self, r: OnboardingReport, st: &mut SessionState) {
        let id = self.id();
        let was = st.onboarding_ok;
        match r.failure_message() {
            None => {
                tracing::info!(host = id, domain_type = ?r.domain_type.map(DomainType::as_str), "onboarding checks passed");
                st.onboarding_ok = Some(true);
                st.next_probe = None;
                if was == Some(false) {
                    // Healed: the host may be MONITORED again right away.
                    let healthy = one_proto::agent::HostMonitoring::default();
                    if let Err(e) =
                        ingest::host_monitoring(&self.oned.store, id, &healthy, true).await
                    {
                        tracing::warn!(host = id, error = %e, "cannot store the host's state");
                    }
                }
            }
            Some(msg) => {
                tracing::warn!(host = id, reason = %msg, "onboarding checks failed");
                st.onboarding_ok = Some(false);
                st.next_probe = Some(Instant::now() + self.timing().probe_retry);
                self.set_status(&msg);
                self.error(&msg).await;
            }
        }
    }

    fn agent_log(&self, l: &one_proto::agent::Log) {
        let id = self.id();
        match l.level {
            LogLevel::Error => {
                tracing::error!(host = id, vm = ?l.vm_id, agent = %l.message, "agent")
            }
            LogLevel::Warn => tracing::warn!(host = id, vm = ?l.vm_id, agent = %l.message, "agent"),
            LogLevel::Info => tracing::info!(host = id, vm = ?l.vm_id, agent = %l.message, "agent"),
            LogLevel::Debug => {
                tracing::debug!(host = id, vm = ?l.vm_id, agent = %l.message, "agent")
            }
        }
        if let Some(vm) = l.vm_id
            && l.level != LogLevel::Debug
        {
            let level = if l.level == LogLevel::Error {
                crate::lcm::vmlog::Level::Error
            } else {
                crate::lcm::vmlog::Level::Info
            };
            crate::lcm::vmlog::append(
                &self.oned.data_dir.root.join("vms"),
                vm,
                "VMM",
                level,
                std::slice::from_ref(&l.message),
                crate::auth::now_secs(),
            );
        }
    }
}

/// `reason`, followed by what the agent last wrote to stderr, if anything.
fn with_stderr(reason: String, tail: &StderrTail) -> String {
    let t = tail.joined();
    if t.is_empty() {
        reason
    } else {
        format!("{reason}; agent stderr: {t}")
    }
}
