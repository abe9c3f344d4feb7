//! The frontend agent's session: `one-node-agent --stdio --frontend`, a child of oned on a
//! local pipe (no SSH, no libvirt), with the node-agent protocol's handshake, requests by
//! id and keepalive (`hostmgr/session.rs`). When it dies it is started again with backoff;
//! requests in flight fail (their images go to ERROR and their partial files are removed
//! once it is back). It works beside a `localhost` KVM host's agent on the same machine:
//! each agent is oned's own child on its own pipes, they share no socket, lock or file.

use crate::daemon::Oned;
use crate::hostmgr::session::{FrameReader, Link, handshake, start_link};
use crate::hostmgr::transport::StderrTail;
use one_proto::agent::{
    AgentConfig, Beat, FromAgent, FrontendConfig, Keepalive, LogLevel, PROTOCOL_VERSION, ToAgent,
    Welcome,
};
use one_proto::ds::DsDir;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The agent's argument for the frontend role.
pub const FRONTEND_ARG: &str = "--frontend";

/// The host id and name the frontend agent is welcomed with (it is no host).
pub const FRONTEND_ID: i64 = -1;
pub const FRONTEND_NAME: &str = "frontend";

/// Every datastore's directory (the agent may read and write there through byte streams).
pub fn datastore_dirs(oned: &Oned) -> Vec<DsDir> {
    oned.store
        .read()
        .datastores
        .iter()
        .map(|d| DsDir {
            id: d.header.id,
            path: d.base_path.clone(),
        })
        .collect()
}

/// The frontend agent's configuration.
pub fn config(oned: &Oned) -> AgentConfig {
    let c = &oned.config.hosts;
    let ms = |s: f64| (s * 1000.0).round() as u64;
    AgentConfig {
        keepalive: Keepalive {
            interval_ms: ms(c.keepalive_interval_seconds),
            timeout_ms: ms(c.keepalive_timeout_seconds),
        },
        log_level: LogLevel::Info,
        frontend: Some(FrontendConfig {
            datastores_root: oned.storage.root.display().to_string(),
            datastores: datastore_dirs(oned),
            staging_dir: oned.storage.staging.display().to_string(),
        }),
        ..AgentConfig::default()
    }
}

struct Connected {
    reader: FrameReader,
    link: Link,
    writer: tokio::task::JoinHandle<Result<(), crate::hostmgr::session::SessionError>>,
    stderr: StderrTail,
    mux: Option<one_stream::Mux>,
    _child: tokio::process::Child,
}

/// Starts the supervisor of the frontend agent.
pub fn start(oned: &Arc<Oned>) {
    let o = oned.clone();
    tokio::spawn(async move { supervise(o).await });
}

async fn supervise(oned: Arc<Oned>) {
    let t = oned.hostmgr.timing().clone();
    let mut backoff = t.reconnect_initial;
    loop {
        match connect(&oned).await {
            Ok(c) => {
                let began = Instant::now();
                oned.storage.set_status("");
                tracing::info!("frontend agent session open");
                let reason = session(&oned, c).await;
                oned.storage.link.send_replace(None);
                oned.storage.set_status(&reason);
                tracing::warn!(reason = %reason, "frontend agent session lost");
                if began.elapsed() >= t.keepalive_timeout {
                    backoff = t.reconnect_initial;
                }
            }
            Err(reason) => {
                oned.storage.set_status(&reason);
                tracing::warn!(reason = %reason, "cannot start the frontend agent");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(t.reconnect_max);
    }
}

async fn connect(oned: &Arc<Oned>) -> Result<Connected, String> {
    let path = oned.hostmgr.agent_path().to_path_buf();
    let own = oned.hostmgr.own_build().await?;
    let mut cmd = tokio::process::Command::new(&path);
    cmd.args([one_proto::agent::STDIO_ARG, FRONTEND_ARG])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // It dies with oned: a frontend agent left behind by a killed oned would go on writing
    // into the datastores while the next oned cleans them.
    // SAFETY: runs in the child between fork and exec; prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Its byte stream: a socket pair, the agent's end as a file descriptor.
    let (stream, theirs) = crate::hostmgr::transport::stream_pair(&mut cmd)
        .map_err(|e| format!("cannot make the frontend agent's byte stream: {e}"))?;
    let spawned = cmd.spawn();
    drop(theirs);
    let mut child = spawned.map_err(|e| format!("cannot start {}: {e}", path.display()))?;
    let (Some(stdin), Some(stdout), stderr) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("the frontend agent's standard streams are not available".into());
    };
    let tail = StderrTail::default();
    if let Some(err) = stderr {
        let tail = tail.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(agent = %line, "frontend agent stderr");
                tail.push(line);
            }
        });
    }
    let mut reader = FrameReader::new(Box::pin(stdout));
    let mut writer: crate::hostmgr::transport::AgentWriter = Box::pin(stdin);
    let cfg = config(oned);
    let welcome = |_: &one_proto::agent::Hello| Welcome {
        protocol_version: PROTOCOL_VERSION,
        host_id: FRONTEND_ID,
        host_name: FRONTEND_NAME.into(),
        time_ms: now_ms(),
        config: cfg.clone(),
    };
    let hello_timeout = oned.hostmgr.timing().hello_timeout;
    match handshake(&mut reader, &mut writer, &own, hello_timeout, welcome).await {
        Ok(hello) => {
            let (link, writer) = start_link(FRONTEND_ID, writer);
            let mux = crate::hostmgr::transport::start_stream(
                crate::hostmgr::transport::StreamLink::Socket(stream),
                &hello,
                FRONTEND_NAME,
            )
            .await
            .map(|(mux, incoming)| {
                tokio::spawn(super::relay::refuse_all(
                    incoming,
                    "oned serves no streams to its frontend agent",
                ));
                mux
            });
            Ok(Connected {
                reader,
                link,
                writer,
                stderr: tail,
                mux,
                _child: child,
            })
        }
        Err(e) => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err(with_stderr(e.to_string(), &tail))
        }
    }
}

fn with_stderr(reason: String, tail: &StderrTail) -> String {
    let t = tail.joined();
    if t.is_empty() {
        reason
    } else {
        format!("{reason}; agent stderr: {t}")
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs the session until it ends; answers why it ended.
async fn session(oned: &Arc<Oned>, mut c: Connected) -> String {
    let t = oned.hostmgr.timing().clone();
    // First the datastores' directories and token files, then the session is everyone's;
    // then what waited for the agent: hosts look at the tokens again, leftovers go.
    let o = oned.clone();
    let link = c.link.clone();
    let mux = c.mux.clone();
    let on_connect = tokio::spawn(async move {
        super::capacity::prepare_all(&o, &link).await;
        // What uploads left that no token names any more (oned restarted) goes.
        let clean = one_proto::agent::Request::Ds(crate::upload::clean_staging(&o));
        if let Err(e) = link.call(clean, Duration::from_secs(60)).await {
            tracing::warn!(error = %e, "cannot clean the upload staging area");
        }
        o.storage.mux.send_replace(mux);
        o.storage.link.send_replace(Some(link));
        o.hostmgr.refresh_capabilities(&o);
        o.storage.run_cleanups().await;
        o.storage.measure_now.notify_one();
    });
    let mut last_rx = Instant::now();
    let mut ping_seq = 0u64;
    let mut tick = tokio::time::interval(
        (t.keepalive_interval / 2).clamp(Duration::from_millis(20), Duration::from_secs(1)),
    );
    let mut sent_dirs = datastore_dirs(oned);
    let end = loop {
        tokio::select! {
            res = &mut c.writer => {
                let reason = match res {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the writer to the frontend agent ended".into(),
                };
                break with_stderr(reason, &c.stderr);
            }
            frame = c.reader.next() => match frame {
                Ok(Some(m)) => {
                    last_rx = Instant::now();
                    match m {
                        FromAgent::Reply { id, reply } => {
                            c.link.deliver(id, reply);
                        }
                        FromAgent::OnboardingReport(r) => match r.failure_message() {
                            None => tracing::info!("frontend agent checks passed"),
                            Some(msg) => {
                                tracing::error!(reason = %msg, "frontend agent checks failed");
                            }
                        },
                        FromAgent::Ping(b) => {
                            c.link.send(&ToAgent::Pong(Beat { seq: b.seq, time_ms: now_ms() }));
                        }
                        FromAgent::Log(l) => tracing::info!(agent = %l.message, "frontend agent"),
                        FromAgent::Refused(r) => break format!("the frontend agent refused the session: {}", r.reason),
                        _ => {}
                    }
                }
                Ok(None) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break with_stderr("the frontend agent closed the session".into(), &c.stderr);
                }
                Err(e) => break e.to_string(),
            },
            _ = tick.tick() => {
                if last_rx.elapsed() >= t.keepalive_timeout {
                    break format!("nothing received from the frontend agent for {} s", t.keepalive_timeout.as_secs());
                }
                if c.link.since_write() >= t.keepalive_interval {
                    ping_seq += 1;
                    c.link.send(&ToAgent::Ping(Beat { seq: ping_seq, time_ms: now_ms() }));
                }
                // New or deleted datastores: the agent's stream roots follow.
                let dirs = datastore_dirs(oned);
                if dirs != sent_dirs {
                    let link = c.link.clone();
                    let cfg = config(oned);
                    tokio::spawn(async move {
                        let _ = link
                            .call(one_proto::agent::Request::Configure(cfg), Duration::from_secs(30))
                            .await;
                    });
                    sent_dirs = dirs;
                }
            }
        }
    };
    on_connect.abort();
    oned.storage.mux.send_replace(None);
    if let Some(m) = &c.mux {
        m.close();
    }
    c.link.close();
    c.writer.abort();
    end
}
