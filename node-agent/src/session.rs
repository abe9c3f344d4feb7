//! One session with oned (docs/node-agent.md): Hello, then the Welcome (or a refusal), then
//! requests served concurrently, monitoring pushed at the Welcome's periods, keepalive both
//! ways, until oned closes the input, asks for a Shutdown, or stops answering.
//!
//! Tasks: the reader (this module's loop) decodes frames and starts one task per request;
//! the writer ([`crate::outbox`]) owns the output; the monitor pushes host and VM
//! monitoring and domain states. A VM's operations run one at a time in arrival order
//! ([`VmQueue`]); everything else runs side by side, so a 120 s ACPI shutdown holds up
//! nothing but its own VM.

use crate::checks::{self, ClockRef};
use crate::driver::{self, AgentDriver, DriverContext};
use crate::host::{self, UsageSampler, now_ms, now_secs};
use crate::outbox::{self, Clock, Outbox, WriterEnd};
use crate::simulated::SimOptions;
use one_proto::agent::{
    AgentConfig, AgentVersion, Beat, Domain, DomainState, DomainStates, FrameDecoder, FromAgent,
    Hello, HostMonitoring, LogLevel, PROTOCOL_VERSION, RefuseCode, Refused, Reply, Request,
    RequestId, ToAgent, VmMonitoring, Welcome,
};
use one_proto::driver::{DriverError, DriverRequest};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

/// Which agent this is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// A hypervisor host's agent: domains, monitoring, transfers.
    #[default]
    Host,
    /// oned's own agent on the frontend: datastore operations and byte streams only
    /// ([`crate::frontend`]); no hypervisor.
    Frontend,
}

/// How the agent runs (command line).
#[derive(Clone, Debug)]
pub struct Options {
    /// The driver's name ([`driver::DRIVER_NAMES`]).
    pub driver: String,
    pub sim: SimOptions,
    /// How long to wait for oned's Welcome after the Hello.
    pub welcome_timeout: Duration,
    pub role: Role,
    /// The byte stream's socket, handed over by oned (`--stream-fd`); without it the agent
    /// listens on a Unix socket of its own and says where in its hello.
    pub stream_fd: Option<i32>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            driver: "libvirt".into(),
            sim: SimOptions::default(),
            welcome_timeout: Duration::from_secs(30),
            role: Role::Host,
            stream_fd: None,
        }
    }
}

/// How a session ended well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// oned closed our input.
    Eof,
    /// oned asked for it.
    Shutdown,
    /// SIGTERM / SIGINT.
    Signal,
}

/// How a session ended badly; [`SessionError::exit_code`] tells them apart for whoever
/// started the agent.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("oned refused this agent ({code:?}): {reason}")]
    Refused { code: RefuseCode, reason: String },
    #[error("this agent cannot work with oned's welcome: {0}")]
    RefusedWelcome(String),
    #[error("no welcome from oned within {0:?}")]
    NoWelcome(Duration),
    #[error("oned closed the session before its welcome")]
    ClosedBeforeWelcome,
    #[error("nothing received from oned for {0} ms: the session is dead")]
    KeepaliveTimeout(u64),
    #[error("reading from oned failed: {0}")]
    Read(#[source] std::io::Error),
    #[error("writing to oned failed: {0}")]
    Write(String),
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl SessionError {
    pub fn exit_code(&self) -> i32 {
        match self {
            SessionError::Refused { .. } => crate::EXIT_REFUSED,
            SessionError::RefusedWelcome(_) => crate::EXIT_BAD_WELCOME,
            _ => crate::EXIT_SESSION_LOST,
        }
    }
}

/// How long the in-flight requests may take to finish once the session ends, beyond the
/// configured shutdown timeout (the longest operation the agent itself waits for).
const DRAIN_MARGIN: Duration = Duration::from_secs(30);

/// How often capabilities with something missing are looked at again, in ms.
const CAPABILITY_RECHECK_MS: u64 = 15_000;

/// How long the queued frames may take to go out at the end.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// Runs one session on `input` / `output` until it ends; `stop` resolving (a signal) ends it
/// as a Shutdown would.
pub async fn run<R, W, S>(
    input: R,
    output: W,
    opts: Options,
    stop: S,
) -> Result<Outcome, SessionError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
    S: Future<Output = ()> + Send,
{
    let clock = Clock::new();
    // Made now so the first CPU figure spans the handshake.
    let usage = UsageSampler::new();
    let (outbox, mut writer) = outbox::spawn_writer(output, clock.clone());
    let mut reader = Reader::new(input);
    let mut state = Running {
        tasks: JoinSet::new(),
        monitor: None,
        drain: DRAIN_MARGIN,
        muxes: Arc::new(Mutex::new(Vec::new())),
    };
    let result = session(
        &mut reader,
        &outbox,
        &writer,
        &clock,
        opts,
        usage,
        stop,
        &mut state,
    )
    .await;

    // Finish what was asked, then let the writer send everything queued.
    if let Some(m) = state.monitor.take() {
        m.abort();
    }
    for m in state
        .muxes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain(..)
    {
        m.close();
    }
    let in_flight = state.tasks.len();
    if in_flight > 0 {
        tracing::info!(in_flight, "finishing the requests in flight");
        if tokio::time::timeout(state.drain, async {
            while state.tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(left = state.tasks.len(), "requests still running at exit");
        }
    }
    drop(outbox);
    match tokio::time::timeout(FLUSH_LIMIT, &mut writer.task).await {
        Ok(Ok(WriterEnd::Drained)) => {}
        Ok(Ok(WriterEnd::Failed(e))) => tracing::debug!(error = %e, "output closed"),
        Ok(Err(e)) => tracing::error!(error = %e, "writer task failed"),
        Err(_) => tracing::warn!("output not flushed at exit"),
    }
    result
}

/// What outlives the session loop and is wound down after it.
struct Running {
    tasks: JoinSet<()>,
    monitor: Option<tokio::task::JoinHandle<()>>,
    drain: Duration,
    /// The byte stream connections: closed when the session ends.
    muxes: Arc<Mutex<Vec<one_stream::Mux>>>,
}

#[allow(clippy::too_many_arguments)]
async fn session<R, S>(
    reader: &mut Reader<R>,
    outbox: &Outbox,
    writer: &outbox::Writer,
    clock: &Clock,
    opts: Options,
    usage: UsageSampler,
    stop: S,
    run: &mut Running,
) -> Result<Outcome, SessionError>
where
    R: AsyncRead + Unpin,
    S: Future<Output = ()>,
{
    let build = tokio::task::spawn_blocking(host::build_id)
        .await
        .map_err(|e| SessionError::Protocol(e.to_string()))
        .and_then(|r| {
            r.map_err(|e| SessionError::Protocol(format!("cannot read own executable: {e}")))
        })
        .unwrap_or_else(|e| {
            // oned will refuse an unknown build and install its own: say why here.
            tracing::error!(error = %e, "no build id");
            "unknown".into()
        });
    let info = tokio::task::spawn_blocking(host::host_info)
        .await
        .unwrap_or_default();
    let mut hello = Hello::new(
        AgentVersion {
            version: host::AGENT_VERSION.into(),
            build,
        },
        info,
    );
    // The byte stream: oned's socket, or one of our own that the hello names.
    let listener = match opts.stream_fd {
        Some(_) => None,
        None => match crate::stream::Listener::bind() {
            Ok(l) => {
                hello.stream = Some(l.endpoint.clone());
                Some(l)
            }
            Err(e) => {
                tracing::warn!(error = %e, "no byte stream socket: streams are unavailable");
                None
            }
        },
    };
    if !outbox.send(FromAgent::Hello(hello)).await {
        return Err(SessionError::Write("output closed".into()));
    }

    let welcome = handshake(reader, outbox, clock, opts.welcome_timeout).await?;
    let cfg = welcome.config.clone();
    outbox.set_log_level(cfg.log_level);
    run.drain = Duration::from_millis(cfg.shutdown_timeout_ms) + DRAIN_MARGIN;
    let clock_ref = Arc::new(Mutex::new(ClockRef {
        oned_ms: welcome.time_ms,
        local_ms: now_ms(),
    }));
    tracing::info!(
        host_id = welcome.host_id,
        host = %welcome.host_name,
        driver = %opts.driver,
        "welcome from oned"
    );
    let driver = match opts.role {
        Role::Frontend => {
            Err("this is the frontend agent: it serves datastores, not domains".to_string())
        }
        Role::Host => driver::open(
            &opts.driver,
            DriverContext {
                host_id: welcome.host_id,
                host_name: welcome.host_name.clone(),
                config: cfg.clone(),
                log: outbox.clone(),
                sim: opts.sim.clone(),
                streams: Some(run.muxes.clone()),
            },
        ),
    };
    if opts.role == Role::Host
        && let Err(why) = &driver
    {
        tracing::error!(reason = %why, "no driver: every request will fail");
        outbox.log(LogLevel::Error, why.clone(), None);
    }
    let hypervisor = match &driver {
        Ok(d) => d.hypervisor().to_string(),
        // What the host would be with the driver it was asked for.
        Err(_) if opts.driver == "libvirt" => "kvm".into(),
        Err(_) => opts.driver.clone(),
    };
    let ctx = Ctx {
        outbox: outbox.clone(),
        driver,
        live: Arc::new(Mutex::new(cfg.clone())),
        config: cfg,
        clock_ref,
        kick: Arc::new(Notify::new()),
        push_host: Arc::new(Notify::new()),
        role: opts.role,
    };
    run.monitor = Some(match opts.role {
        Role::Host => tokio::spawn(monitor(ctx.clone(), hypervisor, usage)),
        Role::Frontend => tokio::spawn(frontend_monitor(ctx.clone())),
    });
    let live = ctx.live.clone();
    let roots: crate::stream::Roots =
        Arc::new(move || crate::stream::roots_of(&live.lock().unwrap_or_else(|p| p.into_inner())));
    match (opts.stream_fd, listener) {
        (Some(fd), _) => match crate::stream::from_fd(fd) {
            Ok((mux, incoming)) => {
                run.muxes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(mux);
                tokio::spawn(crate::stream::serve(incoming, roots));
            }
            Err(e) => tracing::warn!(fd, error = %e, "the byte stream socket is unusable"),
        },
        (None, Some(l)) => {
            tokio::spawn(l.serve(roots, run.muxes.clone()));
        }
        (None, None) => {}
    }
    serve(reader, writer, clock, &ctx, stop, &mut run.tasks).await
}

/// Waits for the Welcome, answering what may come before it.
async fn handshake<R: AsyncRead + Unpin>(
    reader: &mut Reader<R>,
    outbox: &Outbox,
    clock: &Clock,
    limit: Duration,
) -> Result<Welcome, SessionError> {
    let deadline = Instant::now() + limit;
    loop {
        let frame = tokio::time::timeout_at(deadline, reader.next_frame(clock))
            .await
            .map_err(|_| SessionError::NoWelcome(limit))??;
        let Some(body) = frame else {
            return Err(SessionError::ClosedBeforeWelcome);
        };
        // A Welcome of another protocol version may not parse as ours: look at its version
        // before anything else, so the refusal names the real problem.
        if let Some(v) = welcome_version(&body)
            && v != u64::from(PROTOCOL_VERSION)
        {
            let reason =
                format!("oned's welcome speaks protocol {v}, this agent speaks {PROTOCOL_VERSION}");
            return Err(refuse(outbox, RefuseCode::ProtocolMismatch, reason).await);
        }
        match serde_json::from_slice::<ToAgent>(&body) {
            Ok(ToAgent::Welcome(w)) => {
                if let Err(reason) = check_config(&w.config) {
                    return Err(refuse(outbox, RefuseCode::BadConfig, reason).await);
                }
                return Ok(w);
            }
            Ok(ToAgent::Refused(r)) => {
                return Err(SessionError::Refused {
                    code: r.code,
                    reason: r.reason,
                });
            }
            Ok(ToAgent::Ping(b)) => {
                outbox.send(pong(b)).await;
            }
            Ok(ToAgent::Pong(_)) => {}
            Ok(ToAgent::Request { id, .. }) => {
                tracing::warn!(id, "request before the welcome");
                outbox
                    .send(FromAgent::Reply {
                        id,
                        reply: Reply::Err(DriverError::new("request before the welcome")),
                    })
                    .await;
            }
            Err(e) if welcome_version(&body).is_some() => {
                let reason = format!("oned's welcome cannot be read: {e}");
                return Err(refuse(outbox, RefuseCode::BadConfig, reason).await);
            }
            Err(e) => tracing::warn!(error = %e, "unreadable frame before the welcome, skipped"),
        }
    }
}

/// The protocol version of a Welcome frame, whatever else it holds.
fn welcome_version(body: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if v.get("type")?.as_str()? != "welcome" {
        return None;
    }
    // A welcome without a readable version counts as version 0: refused as a mismatch.
    Some(
        v.get("protocol_version")
            .and_then(|p| p.as_u64())
            .unwrap_or(0),
    )
}

async fn refuse(outbox: &Outbox, code: RefuseCode, reason: String) -> SessionError {
    tracing::error!(?code, %reason, "refusing oned's welcome");
    outbox
        .send(FromAgent::Refused(Refused {
            code,
            reason: reason.clone(),
        }))
        .await;
    SessionError::RefusedWelcome(reason)
}

/// A configuration the agent cannot run with: periods of zero would spin.
pub fn check_config(cfg: &AgentConfig) -> Result<(), String> {
    let m = &cfg.monitoring;
    let periods = [
        ("monitoring.host_system_ms", m.host_system_ms),
        ("monitoring.host_usage_ms", m.host_usage_ms),
        ("monitoring.vm_usage_ms", m.vm_usage_ms),
        ("monitoring.vm_state_ms", m.vm_state_ms),
        ("monitoring.vm_state_sync_ms", m.vm_state_sync_ms),
        ("keepalive.interval_ms", cfg.keepalive.interval_ms),
        ("keepalive.timeout_ms", cfg.keepalive.timeout_ms),
    ];
    let zero: Vec<&str> = periods
        .iter()
        .filter(|(_, v)| *v == 0)
        .map(|(n, _)| *n)
        .collect();
    if !zero.is_empty() {
        return Err(format!("{} must be above 0", zero.join(", ")));
    }
    if cfg.domain_prefix.is_empty() {
        return Err("domain_prefix is empty: every domain would look like this cloud's".into());
    }
    Ok(())
}

fn pong(b: Beat) -> FromAgent {
    FromAgent::Pong(Beat {
        seq: b.seq,
        time_ms: now_ms(),
    })
}

/// What the request tasks and the monitor share.
#[derive(Clone)]
struct Ctx {
    outbox: Outbox,
    /// The driver, or why there is none.
    driver: Result<Arc<dyn AgentDriver>, String>,
    /// The Welcome's configuration (what needs a new session to change).
    config: AgentConfig,
    /// The configuration as the last Configure left it (datastores, shared datastores,
    /// bridges, the frontend's datastores).
    live: Arc<Mutex<AgentConfig>>,
    clock_ref: Arc<Mutex<ClockRef>>,
    /// Tells the monitor to look at domain states now (an operation finished).
    kick: Arc<Notify>,
    /// Tells the monitor to push host usage (and capabilities) now (a Configure).
    push_host: Arc<Notify>,
    role: Role,
}

impl Ctx {
    fn driver(&self) -> Result<&Arc<dyn AgentDriver>, &str> {
        self.driver.as_ref().map_err(String::as_str)
    }

    /// The configuration now.
    fn current(&self) -> AgentConfig {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes what a Configure may change.
    fn reconfigure(&self, c: AgentConfig) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.datastores = c.datastores;
        live.shared_datastores = c.shared_datastores;
        live.bridges = c.bridges;
        live.frontend = c.frontend;
    }

    fn clock_ref(&self) -> ClockRef {
        *self.clock_ref.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn saw_oned_clock(&self, oned_ms: i64) {
        *self.clock_ref.lock().unwrap_or_else(|p| p.into_inner()) = ClockRef {
            oned_ms,
            local_ms: now_ms(),
        };
    }
}

/// The request loop after the Welcome.
async fn serve<R, S>(
    reader: &mut Reader<R>,
    writer: &outbox::Writer,
    clock: &Clock,
    ctx: &Ctx,
    stop: S,
    tasks: &mut JoinSet<()>,
) -> Result<Outcome, SessionError>
where
    R: AsyncRead + Unpin,
    S: Future<Output = ()>,
{
    let ka = ctx.config.keepalive;
    let mut ping_seq = 0u64;
    // When the last ping was queued (the writer's last_sent follows once it is written).
    let mut pinged_at = 0u64;
    let queue = VmQueue::default();
    tokio::pin!(stop);
    loop {
        // Wake only when a ping or the timeout may be due (an idle agent sleeps between its
        // pushes; a host may run a thousand simulated ones). Frames sent or received in the
        // meantime only push these times later, so waking early is all that can happen.
        let now = clock.now();
        let idle_since = writer.last_sent.load(Ordering::Relaxed).max(pinged_at);
        let due = (idle_since + ka.interval_ms).min(reader.last_received + ka.timeout_ms);
        let wake = Instant::now() + Duration::from_millis(due.saturating_sub(now));
        tokio::select! {
            frame = reader.next_frame(clock) => {
                let Some(body) = frame? else {
                    tracing::info!("oned closed the session");
                    return Ok(Outcome::Eof);
                };
                let msg = serde_json::from_slice::<ToAgent>(&body).map_err(|e| {
                    // Both ends run the same build after the handshake: this is a bug.
                    SessionError::Protocol(format!("unreadable frame from oned: {e}"))
                })?;
                match msg {
                    ToAgent::Request { id, request: Request::Shutdown } => {
                        tracing::info!(id, "shutdown asked");
                        ctx.outbox.send(FromAgent::Reply { id, reply: Reply::ShuttingDown }).await;
                        return Ok(Outcome::Shutdown);
                    }
                    ToAgent::Request { id, request } => start_request(ctx, &queue, tasks, id, request),
                    ToAgent::Ping(b) => {
                        ctx.saw_oned_clock(b.time_ms);
                        ctx.outbox.send(pong(b)).await;
                    }
                    ToAgent::Pong(b) => ctx.saw_oned_clock(b.time_ms),
                    ToAgent::Welcome(_) => tracing::warn!("second welcome ignored"),
                    ToAgent::Refused(r) => {
                        return Err(SessionError::Refused { code: r.code, reason: r.reason });
                    }
                }
            }
            () = tokio::time::sleep_until(wake) => {
                let now = clock.now();
                let quiet = now.saturating_sub(reader.last_received);
                if quiet >= ka.timeout_ms {
                    return Err(SessionError::KeepaliveTimeout(quiet));
                }
                let idle_since = writer.last_sent.load(Ordering::Relaxed).max(pinged_at);
                if now.saturating_sub(idle_since) >= ka.interval_ms {
                    ping_seq += 1;
                    pinged_at = now;
                    ctx.outbox.send(FromAgent::Ping(Beat { seq: ping_seq, time_ms: now_ms() })).await;
                }
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "request task failed");
                }
            }
            () = &mut stop => {
                tracing::info!("signalled: finishing");
                return Ok(Outcome::Signal);
            }
            () = writer_gone(writer) => {
                return Err(SessionError::Write("output closed".into()));
            }
        }
    }
}

/// Resolves when writing to oned failed.
async fn writer_gone(writer: &outbox::Writer) {
    let mut failed = writer.failed.clone();
    if failed.wait_for(|f| *f).await.is_err() {
        // The writer ended without failing: it cannot while the session holds an Outbox.
        std::future::pending::<()>().await;
    }
}

fn start_request(ctx: &Ctx, queue: &VmQueue, tasks: &mut JoinSet<()>, id: RequestId, req: Request) {
    let ctx = ctx.clone();
    match req {
        Request::Execute(dr) => {
            // The VM's turn is taken here, in arrival order, before the task starts.
            let turn = queue.enter(dr.vm_id);
            tasks.spawn(async move {
                let reply = execute(&ctx, turn, id, dr).await;
                ctx.outbox.send(FromAgent::Reply { id, reply }).await;
                ctx.kick.notify_one();
            });
        }
        Request::Probe => {
            tasks.spawn(async move {
                let report = onboarding(&ctx).await;
                let reply = Reply::CheckReport(report);
                ctx.outbox.send(FromAgent::Reply { id, reply }).await;
            });
        }
        Request::Ds(req) => {
            tasks.spawn(async move {
                let reply = match ctx.role {
                    Role::Frontend => crate::frontend::execute(req).await,
                    Role::Host => Reply::Err(DriverError::new(
                        "datastore operations run in the frontend agent, not on a host",
                    )),
                };
                ctx.outbox.send(FromAgent::Reply { id, reply }).await;
            });
        }
        Request::Configure(c) => {
            ctx.reconfigure(c);
            ctx.push_host.notify_one();
            let outbox = ctx.outbox.clone();
            tasks.spawn(async move {
                outbox
                    .send(FromAgent::Reply {
                        id,
                        reply: Reply::Configured,
                    })
                    .await;
            });
        }
        Request::ListDomains => {
            tasks.spawn(async move {
                let reply = match ctx.driver() {
                    Ok(d) => match d.list_domains().await {
                        Ok(domains) => Reply::DomainList { domains },
                        Err(e) => Reply::Err(e),
                    },
                    Err(why) => Reply::Err(DriverError::new(why)),
                };
                ctx.outbox.send(FromAgent::Reply { id, reply }).await;
            });
        }
        Request::UpdateSecurityGroups(u) => {
            tasks.spawn(async move {
                let n = u.vms.len();
                let started = std::time::Instant::now();
                let reply = match ctx.driver() {
                    Ok(d) => match d.update_security_groups(u.vms).await {
                        Ok(r) => Reply::Ok(r),
                        Err(e) => Reply::Err(e),
                    },
                    Err(why) => Reply::Err(DriverError::new(why)),
                };
                tracing::info!(
                    vms = n,
                    ms = started.elapsed().as_millis() as u64,
                    ok = matches!(reply, Reply::Ok(_)),
                    "security groups updated"
                );
                ctx.outbox.send(FromAgent::Reply { id, reply }).await;
            });
        }
        // Answered by the loop itself.
        Request::Shutdown => {}
    }
}

async fn execute(ctx: &Ctx, mut turn: Turn, id: RequestId, req: DriverRequest) -> Reply {
    turn.wait().await;
    let (vm_id, op) = (req.vm_id, req.op.name());
    let started = std::time::Instant::now();
    let result = match ctx.driver() {
        Ok(d) => d.execute(req).await,
        Err(why) => Err(DriverError::new(why)),
    };
    drop(turn);
    let ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(r) => {
            tracing::info!(id, vm_id, op, ms, deploy_id = ?r.deploy_id, "operation done");
            Reply::Ok(r)
        }
        Err(e) => {
            tracing::warn!(id, vm_id, op, ms, error = %e, "operation failed");
            Reply::Err(e)
        }
    }
}

// ------------------------------------------------------------------------------------------
// Per-VM ordering
// ------------------------------------------------------------------------------------------

/// One VM's operations run one at a time, in the order they arrived: each takes a turn when
/// it arrives, waits for the previous turn of its VM to end, and ends its own when done. A
/// VM with nothing in flight has no entry.
#[derive(Clone, Default)]
struct VmQueue {
    last: Arc<Mutex<LastTurns>>,
    seq: Arc<AtomicU64>,
}

/// By VM: the sequence number of its last turn, and what resolves when that turn ends.
type LastTurns = HashMap<i64, (u64, oneshot::Receiver<()>)>;

struct Turn {
    vm_id: i64,
    seq: u64,
    /// Resolves (as an error: the sender is dropped) when the previous turn ends.
    prev: Option<oneshot::Receiver<()>>,
    /// Dropped with the turn, which wakes the next one.
    _done: oneshot::Sender<()>,
    queue: VmQueue,
}

impl VmQueue {
    fn enter(&self, vm_id: i64) -> Turn {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let prev = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(vm_id, (seq, rx))
            .map(|(_, r)| r);
        Turn {
            vm_id,
            seq,
            prev,
            _done: tx,
            queue: self.clone(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.last.lock().unwrap().len()
    }
}

impl Turn {
    async fn wait(&mut self) {
        if let Some(prev) = self.prev.take() {
            let _ = prev.await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut last = self.queue.last.lock().unwrap_or_else(|p| p.into_inner());
        // The last turn of its VM leaves no entry behind.
        if last.get(&self.vm_id).is_some_and(|(s, _)| *s == self.seq) {
            last.remove(&self.vm_id);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Monitoring
// ------------------------------------------------------------------------------------------

fn every(ms: u64) -> tokio::time::Interval {
    let period = Duration::from_millis(ms);
    let mut i = tokio::time::interval_at(Instant::now() + period, period);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

/// The pushes: at connect the onboarding report, host monitoring with every part, a full
/// domain report and the VMs' monitoring; then each at its own period.
/// The onboarding checks of this agent's role.
async fn onboarding(ctx: &Ctx) -> one_proto::agent::OnboardingReport {
    let cfg = ctx.current();
    match ctx.role {
        Role::Host => checks::run(ctx.driver(), &cfg, ctx.clock_ref()).await,
        Role::Frontend => crate::frontend::checks(&cfg).await,
    }
}

/// The frontend agent's pushes: its onboarding report; nothing else is monitored here (oned
/// asks for datastore capacity with a request).
async fn frontend_monitor(ctx: Ctx) {
    let report = onboarding(&ctx).await;
    if let Some(msg) = report.failure_message() {
        tracing::warn!(%msg, "frontend checks");
    }
    ctx.outbox.send(FromAgent::OnboardingReport(report)).await;
}

async fn monitor(ctx: Ctx, hypervisor: String, mut usage: UsageSampler) {
    let report = onboarding(&ctx).await;
    if let Some(msg) = report.failure_message() {
        tracing::warn!(%msg, "onboarding");
    }
    ctx.outbox.send(FromAgent::OnboardingReport(report)).await;

    tokio::time::sleep(usage.wait_needed()).await;
    let system = Some(host::system(&hypervisor));
    let (u, ds) = (Some(usage.sample()), Some(datastores(&ctx).await));
    let first_caps = capabilities(&ctx).await;
    push_host(&ctx, system, u, ds, Some(first_caps.clone())).await;
    let mut known = HashMap::new();
    domain_states(&ctx, &mut known, true).await;
    vm_monitoring(&ctx).await;

    let m = ctx.config.monitoring;
    let (mut sys, mut use_, mut vm) = (
        every(m.host_system_ms),
        every(m.host_usage_ms),
        every(m.vm_usage_ms),
    );
    // What is missing is looked at again often (an admin mounts a shared datastore).
    let mut recheck = every(CAPABILITY_RECHECK_MS.min(m.host_usage_ms));
    let mut last_caps = Some(first_caps);
    let (mut state, mut sync) = (every(m.vm_state_ms), every(m.vm_state_sync_ms));
    loop {
        tokio::select! {
            _ = sys.tick() => push_host(&ctx, Some(host::system(&hypervisor)), None, None, None).await,
            _ = use_.tick() => {
                let (u, ds) = (Some(usage.sample()), Some(datastores(&ctx).await));
                let caps = capabilities(&ctx).await;
                last_caps = Some(caps.clone());
                push_host(&ctx, None, u, ds, Some(caps)).await;
            }
            _ = ctx.push_host.notified() => {
                let (ds, caps) = (Some(datastores(&ctx).await), capabilities(&ctx).await);
                last_caps = Some(caps.clone());
                push_host(&ctx, None, None, ds, Some(caps)).await;
            }
            _ = recheck.tick(), if last_caps.as_ref().is_some_and(|c| c.iter().any(|c| !c.missing.is_empty())) => {
                let caps = capabilities(&ctx).await;
                if last_caps.as_ref() != Some(&caps) {
                    last_caps = Some(caps.clone());
                    push_host(&ctx, None, None, None, Some(caps)).await;
                }
            }
            _ = vm.tick() => vm_monitoring(&ctx).await,
            _ = sync.tick() => domain_states(&ctx, &mut known, true).await,
            _ = state.tick() => domain_states(&ctx, &mut known, false).await,
            _ = ctx.kick.notified() => domain_states(&ctx, &mut known, false).await,
        }
    }
}

async fn capabilities(ctx: &Ctx) -> Vec<one_proto::agent::Capability> {
    let mut caps = crate::capabilities::probe(&ctx.current()).await;
    if let Ok(d) = ctx.driver()
        && let Some(net) = d.network_drivers().await
    {
        caps.push(net);
    }
    caps
}

async fn datastores(ctx: &Ctx) -> Vec<one_proto::objects::host::HostDs> {
    // Shared datastores are measured once, by the frontend.
    let dirs = ctx.current().local_datastores();
    // statvfs of a hung network file system blocks: not on the runtime's thread.
    tokio::task::spawn_blocking(move || host::datastores(&dirs))
        .await
        .unwrap_or_default()
}

async fn push_host(
    ctx: &Ctx,
    system: Option<one_proto::agent::HostSystem>,
    usage: Option<one_proto::agent::HostUsage>,
    datastores: Option<Vec<one_proto::objects::host::HostDs>>,
    capabilities: Option<Vec<one_proto::agent::Capability>>,
) {
    let m = HostMonitoring {
        timestamp: now_secs(),
        system,
        usage,
        datastores,
        capabilities,
    };
    ctx.outbox.send(FromAgent::HostMonitoring(m)).await;
}

async fn vm_monitoring(ctx: &Ctx) {
    let Ok(d) = ctx.driver() else { return };
    match d.monitor_vms().await {
        Ok(vms) => {
            let m = VmMonitoring {
                timestamp: now_secs(),
                vms,
            };
            ctx.outbox.send(FromAgent::VmMonitoring(m)).await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "VM monitoring failed");
            ctx.outbox
                .log(LogLevel::Warn, format!("VM monitoring failed: {e}"), None);
        }
    }
}

/// Looks at the domains: a full report sends them all, otherwise only what changed since
/// the last look (if anything). `known` is what oned was last told.
async fn domain_states(ctx: &Ctx, known: &mut HashMap<String, Domain>, full: bool) {
    let Ok(d) = ctx.driver() else { return };
    let now = match d.list_domains().await {
        Ok(v) => v,
        Err(e) => {
            // Nothing is sent: an empty full report would make oned take every VM as gone.
            tracing::warn!(error = %e, "cannot list domains");
            ctx.outbox
                .log(LogLevel::Warn, format!("cannot list domains: {e}"), None);
            return;
        }
    };
    let domains = if full {
        // Domains that vanished since the last look are said as a change first: oned reads a
        // VM absent from a full report as gone only once its deploy is old enough (the report
        // may predate the domain), and after this report they would never be said again.
        let gone: Vec<Domain> = diff_domains(known, now.clone())
            .into_iter()
            .filter(|d| d.state == DomainState::Missing)
            .collect();
        if !gone.is_empty() {
            ctx.outbox
                .send(FromAgent::DomainStates(DomainStates {
                    full: false,
                    domains: gone,
                }))
                .await;
        }
        *known = now.iter().map(|d| (d.name.clone(), d.clone())).collect();
        now
    } else {
        let changed = diff_domains(known, now);
        if changed.is_empty() {
            return;
        }
        changed
    };
    ctx.outbox
        .send(FromAgent::DomainStates(DomainStates { full, domains }))
        .await;
}

/// What changed from `known` to `now` (new domains, other states or UUIDs, and the gone ones
/// as [`DomainState::Missing`]); `known` becomes `now`.
fn diff_domains(known: &mut HashMap<String, Domain>, now: Vec<Domain>) -> Vec<Domain> {
    let mut changed: Vec<Domain> = now
        .iter()
        .filter(|d| known.get(&d.name) != Some(d))
        .cloned()
        .collect();
    let mut next: HashMap<String, Domain> = now.into_iter().map(|d| (d.name.clone(), d)).collect();
    let mut gone: Vec<Domain> = known
        .drain()
        .filter(|(name, _)| !next.contains_key(name))
        .map(|(_, mut d)| {
            d.state = DomainState::Missing;
            d
        })
        .collect();
    gone.sort_by(|a, b| a.name.cmp(&b.name));
    changed.extend(gone);
    std::mem::swap(known, &mut next);
    changed
}

// ------------------------------------------------------------------------------------------
// Input
// ------------------------------------------------------------------------------------------

/// Frames from oned. [`next_frame`](Self::next_frame) may be cancelled (it only awaits a
/// read, which loses nothing when dropped).
struct Reader<R> {
    input: R,
    dec: FrameDecoder,
    buf: Vec<u8>,
    /// [`Clock`] time of the last bytes received.
    last_received: u64,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(input: R) -> Reader<R> {
        Reader {
            input,
            dec: FrameDecoder::new(),
            buf: vec![0; 64 * 1024],
            last_received: 0,
        }
    }

    /// The next frame's body; `None` at the end of the input.
    async fn next_frame(&mut self, clock: &Clock) -> Result<Option<Vec<u8>>, SessionError> {
        loop {
            match self.dec.next_frame() {
                Ok(Some(body)) => return Ok(Some(body.to_vec())),
                Ok(None) => {}
                // The stream has lost its framing.
                Err(e) => return Err(SessionError::Protocol(e.to_string())),
            }
            let n = self
                .input
                .read(&mut self.buf)
                .await
                .map_err(SessionError::Read)?;
            if n == 0 {
                if let Err(e) = self.dec.finish() {
                    tracing::warn!(error = %e, "input ended inside a frame");
                }
                return Ok(None);
            }
            self.last_received = clock.now();
            self.dec.feed(&self.buf[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(name: &str, state: DomainState) -> Domain {
        Domain {
            vm_id: one_proto::agent::vm_id_from_domain_name("one-", name),
            deploy_id: format!("uuid-{name}"),
            name: name.into(),
            state,
        }
    }

    #[test]
    fn domain_diffs() {
        use DomainState as S;
        let mut known = HashMap::new();
        let first = diff_domains(
            &mut known,
            vec![dom("one-1", S::Running), dom("win", S::Running)],
        );
        assert_eq!(first.len(), 2, "new domains are changes");
        assert!(
            diff_domains(
                &mut known,
                vec![dom("one-1", S::Running), dom("win", S::Running)]
            )
            .is_empty()
        );
        let ch = diff_domains(
            &mut known,
            vec![dom("one-1", S::Paused), dom("one-2", S::Running)],
        );
        assert_eq!(
            ch,
            vec![
                dom("one-1", S::Paused),
                dom("one-2", S::Running),
                dom("win", S::Missing)
            ]
        );
        assert_eq!(known.len(), 2);
        // A missing domain is told once.
        let ch = diff_domains(&mut known, vec![dom("one-2", S::Running)]);
        assert_eq!(ch, vec![dom("one-1", S::Missing)]);
        assert!(diff_domains(&mut known, vec![dom("one-2", S::Running)]).is_empty());
    }

    #[tokio::test]
    async fn one_vm_at_a_time_in_arrival_order() {
        let q = VmQueue::default();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = JoinSet::new();
        // VM 1: a slow first operation, then two quick ones; VM 2 does not wait for VM 1.
        for (i, (vm, ms)) in [(1, 100), (1, 0), (2, 0), (1, 0)].into_iter().enumerate() {
            let mut turn = q.enter(vm);
            let order = order.clone();
            tasks.spawn(async move {
                turn.wait().await;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                order.lock().unwrap().push(i);
            });
        }
        while tasks.join_next().await.is_some() {}
        assert_eq!(*order.lock().unwrap(), vec![2, 0, 1, 3]);
        assert_eq!(q.len(), 0, "no entry left behind");
    }

    #[test]
    fn config_checks() {
        assert!(check_config(&AgentConfig::default()).is_ok());
        let mut c = AgentConfig::default();
        c.monitoring.vm_usage_ms = 0;
        c.keepalive.timeout_ms = 0;
        assert_eq!(
            check_config(&c).unwrap_err(),
            "monitoring.vm_usage_ms, keepalive.timeout_ms must be above 0"
        );
        let c = AgentConfig {
            domain_prefix: String::new(),
            ..AgentConfig::default()
        };
        assert!(check_config(&c).is_err());
    }

    #[test]
    fn welcome_version_is_read_from_any_welcome() {
        assert_eq!(
            welcome_version(br#"{"type":"welcome","protocol_version":9,"x":[]}"#),
            Some(9)
        );
        assert_eq!(welcome_version(br#"{"type":"welcome"}"#), Some(0));
        assert_eq!(
            welcome_version(br#"{"type":"ping","seq":1,"time_ms":2}"#),
            None
        );
        assert_eq!(welcome_version(b"junk"), None);
    }
}
