//! How oned reaches a host's agent: a [`Transport`] turns a [`Target`] into an
//! [`AgentStream`], the byte stream pair the protocol runs on (the agent's stdin and stdout).
//!
//! [`LocalPipe`] starts the agent as a child process, for `localhost` and names that resolve
//! to a loopback address. Other hosts need an SSH transport ([`super::HostMgr::set_ssh`]);
//! until one is installed they cannot be reached and say so.

use std::collections::VecDeque;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};

pub type AgentReader = Pin<Box<dyn AsyncRead + Send>>;
pub type AgentWriter = Pin<Box<dyn AsyncWrite + Send>>;
pub type ConnectFuture<'a> =
    Pin<Box<dyn Future<Output = Result<AgentStream, TransportError>> + Send + 'a>>;

/// Lines of the agent's stderr kept for the host's ERROR when the agent dies.
const STDERR_LINES: usize = 20;

/// What a transport needs to start a host's agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host_id: i64,
    pub host_name: String,
    /// oned's own agent binary (started locally, shipped to remote hosts).
    pub agent_path: PathBuf,
    /// Start the agent with `--simulate` (a test facility: no libvirt).
    pub simulate: bool,
    /// The host's SSH_PORT as its template says it ("" when unset): a change starts a new
    /// session on the new port.
    pub ssh_port: String,
}

impl Target {
    /// The agent's arguments.
    pub fn args(&self) -> Vec<&'static str> {
        let mut a = vec![one_proto::agent::STDIO_ARG];
        if self.simulate {
            a.push(SIMULATE_ARG);
        }
        a
    }
}

/// The agent's argument for its simulated mode.
pub const SIMULATE_ARG: &str = "--simulate";

/// The last lines an agent wrote to stderr (its logs; a loader error when it cannot start).
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    /// Keeps `line` unless it is one of the agent's routine log lines (tracing's format:
    /// time, then INFO / DEBUG / TRACE): what explains a dead agent is a warning, an error
    /// or a loader's message, and the tail ends up in the host's ERROR.
    pub fn push(&self, line: String) {
        if matches!(
            line.split_whitespace().nth(1),
            Some("INFO" | "DEBUG" | "TRACE")
        ) {
            return;
        }
        if let Ok(mut q) = self.0.lock() {
            if q.len() == STDERR_LINES {
                q.pop_front();
            }
            q.push_back(line);
        }
    }

    /// The lines kept, joined with " | ", or "" when there are none.
    pub fn joined(&self) -> String {
        self.0
            .lock()
            .map(|q| q.iter().map(String::as_str).collect::<Vec<_>>().join(" | "))
            .unwrap_or_default()
    }
}

/// A connection to an agent: its stdout (`reader`) and stdin (`writer`).
pub struct AgentStream {
    pub reader: AgentReader,
    pub writer: AgentWriter,
    pub stderr: StderrTail,
    /// Held as long as the session lives (the child process, an SSH channel, ...); dropping
    /// it ends the agent's side.
    pub keep: Option<Box<dyn Send>>,
    /// How the byte stream beside the session is reached.
    pub stream: StreamLink,
}

/// The connection of an agent's byte stream (docs/node-agent.md, "Byte stream").
pub enum StreamLink {
    None,
    /// A socket handed to the agent when it was started (a local pipe).
    Socket(tokio::net::UnixStream),
    /// Reached once the agent's hello says where its socket is (SSH: a second channel of
    /// the same connection).
    Dial(Box<dyn StreamDial>),
}

pub type DialFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(AgentReader, AgentWriter), String>> + Send + 'a>>;

/// Opens the byte stream connection to an agent's socket, presenting its key.
pub trait StreamDial: Send + Sync {
    fn dial<'a>(&'a self, ep: &'a one_proto::agent::StreamEndpoint) -> DialFuture<'a>;
}

/// Starts the byte stream of a welcomed agent: over the socket it was handed, or dialed to
/// the socket its hello names, with the streams the agent opens (the caller serves or
/// refuses them). None (logged) when it has none: sessions work without.
pub async fn start_stream(
    link: StreamLink,
    hello: &one_proto::agent::Hello,
    who: &str,
) -> Option<(one_stream::Mux, one_stream::Incoming)> {
    let (mux, incoming) = match link {
        StreamLink::None => return None,
        StreamLink::Socket(s) => {
            let (r, w) = s.into_split();
            one_stream::Mux::start(r, w, one_stream::Side::Oned)
        }
        StreamLink::Dial(d) => {
            let Some(ep) = &hello.stream else {
                tracing::warn!(agent = who, "the agent offers no byte stream");
                return None;
            };
            match d.dial(ep).await {
                Ok((r, w)) => one_stream::Mux::start(r, w, one_stream::Side::Oned),
                Err(e) => {
                    tracing::warn!(agent = who, error = %e, "no byte stream");
                    return None;
                }
            }
        }
    };
    tracing::debug!(agent = who, "byte stream open");
    Some((mux, incoming))
}

/// The descriptor a local agent finds its byte stream socket on (`--stream-fd 3`).
pub const STREAM_FD: i32 = 3;

/// A socket pair for a local agent's byte stream: `cmd` is set to hand the agent its end as
/// [`STREAM_FD`]; answers oned's end, and the agent's, to be dropped once `cmd` spawned.
pub fn stream_pair(
    cmd: &mut tokio::process::Command,
) -> std::io::Result<(tokio::net::UnixStream, std::os::unix::net::UnixStream)> {
    use std::os::unix::io::AsRawFd;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    let fd = theirs.as_raw_fd();
    // SAFETY: the closure runs in the child between fork and exec, where it only calls
    // dup2 and fcntl (async-signal-safe) on descriptors this process owns.
    unsafe {
        cmd.pre_exec(move || {
            if fd == STREAM_FD {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, STREAM_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.arg("--stream-fd").arg(STREAM_FD.to_string());
    Ok((tokio::net::UnixStream::from_std(ours)?, theirs))
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot start the agent {path}: {source}")]
    Spawn {
        path: String,
        source: std::io::Error,
    },
    /// The host cannot be reached this way (no SSH transport, unresolvable name, no answer,
    /// ...): it may be reachable later, so the host goes to ERROR only after
    /// `hosts.error_after_seconds`.
    #[error("{0}")]
    Unreachable(String),
    /// The host answered but cannot be used as it is (unknown or changed host key, key not
    /// authorized, agent install failed): an admin must act, so the host goes to ERROR at once.
    #[error("{0}")]
    Refused(String),
}

/// A plain message from a transport is the host's answer: [`TransportError::Refused`].
/// Failures to reach the host are built as [`TransportError::Unreachable`] explicitly.
impl From<String> for TransportError {
    fn from(s: String) -> Self {
        TransportError::Refused(s)
    }
}

impl From<&str> for TransportError {
    fn from(s: &str) -> Self {
        TransportError::Refused(s.to_string())
    }
}

/// A way to start an agent and talk to it.
pub trait Transport: Send + Sync {
    /// For logs and messages ("local pipe", "ssh").
    fn name(&self) -> &'static str;
    fn connect<'a>(&'a self, target: &'a Target) -> ConnectFuture<'a>;
}

/// Starts `<agent> --stdio [--simulate]` as a child of oned with piped stdin/stdout.
pub struct LocalPipe;

impl Transport for LocalPipe {
    fn name(&self) -> &'static str {
        "local pipe"
    }

    fn connect<'a>(&'a self, target: &'a Target) -> ConnectFuture<'a> {
        Box::pin(async move {
            let mut cmd = tokio::process::Command::new(&target.agent_path);
            cmd.args(target.args())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // Domains do not depend on the agent: killing it when the session ends is safe.
                .kill_on_drop(true);
            let (stream, theirs) =
                stream_pair(&mut cmd).map_err(|source| TransportError::Spawn {
                    path: target.agent_path.display().to_string(),
                    source,
                })?;
            let spawned = cmd.spawn();
            drop(theirs);
            let mut child = spawned.map_err(|source| TransportError::Spawn {
                path: target.agent_path.display().to_string(),
                source,
            })?;
            let (Some(stdin), Some(stdout), stderr) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            else {
                return Err(TransportError::Unreachable(
                    "the agent's standard streams are not available".into(),
                ));
            };
            let tail = StderrTail::default();
            if let Some(err) = stderr {
                let (tail, host) = (tail.clone(), target.host_id);
                tokio::spawn(async move {
                    let mut lines = BufReader::new(err).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::debug!(host, agent = %line, "agent stderr");
                        tail.push(line);
                    }
                });
            }
            tracing::debug!(host = target.host_id, pid = child.id(), path = %target.agent_path.display(), "agent started");
            Ok(AgentStream {
                reader: Box::pin(stdout),
                writer: Box::pin(stdin),
                stderr: tail,
                keep: Some(Box::new(child)),
                stream: StreamLink::Socket(stream),
            })
        })
    }
}

/// Whether `name` is this machine: `localhost`, a loopback address, or a name whose
/// addresses are all loopback ones. `Err` when the name cannot be resolved.
pub async fn is_local(name: &str) -> Result<bool, String> {
    if name.eq_ignore_ascii_case("localhost") {
        return Ok(true);
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ip.is_loopback());
    }
    let lookup = tokio::net::lookup_host((name, 0));
    match tokio::time::timeout(Duration::from_secs(10), lookup).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<_> = addrs.collect();
            Ok(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()))
        }
        Ok(Err(e)) => Err(format!("cannot resolve host name {name}: {e}")),
        Err(_) => Err(format!("cannot resolve host name {name}: timed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_names() {
        assert_eq!(is_local("localhost").await, Ok(true));
        assert_eq!(is_local("LOCALHOST").await, Ok(true));
        assert_eq!(is_local("127.0.0.1").await, Ok(true));
        assert_eq!(is_local("127.3.4.5").await, Ok(true));
        assert_eq!(is_local("::1").await, Ok(true));
        assert_eq!(is_local("192.0.2.1").await, Ok(false));
        // A reserved TLD never resolves.
        assert!(is_local("no-such-host.invalid").await.is_err());
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        let t = StderrTail::default();
        assert_eq!(t.joined(), "");
        for i in 0..30 {
            t.push(format!("l{i}"));
        }
        let j = t.joined();
        assert!(j.starts_with("l10 | l11"), "{j}");
        assert!(j.ends_with("l29"), "{j}");
    }

    #[tokio::test]
    async fn local_pipe_runs_a_program_and_reports_a_missing_one() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let target = Target {
            host_id: 1,
            host_name: "localhost".into(),
            agent_path: "/bin/sh".into(),
            simulate: false,
            ssh_port: String::new(),
        };
        // `sh --stdio` fails at once, printing to stderr: the tail keeps it.
        let mut s = LocalPipe.connect(&target).await.unwrap();
        let mut out = Vec::new();
        s.reader.read_to_end(&mut out).await.unwrap();
        assert!(out.is_empty());
        drop(s.writer.shutdown().await);
        // The stderr task may still be reading: give it a moment.
        for _ in 0..50 {
            if !s.stderr.joined().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!s.stderr.joined().is_empty(), "sh complains about --stdio");

        let missing = Target {
            agent_path: "/nonexistent/one-node-agent".into(),
            ..target
        };
        let e = LocalPipe.connect(&missing).await.err().unwrap();
        assert!(
            e.to_string()
                .starts_with("cannot start the agent /nonexistent/one-node-agent:"),
            "{e}"
        );
    }

    #[test]
    fn the_stderr_tail_keeps_warnings_errors_and_foreign_lines_only() {
        let t = StderrTail::default();
        t.push("2026-11-23T16:50:25.123Z  INFO one_node_agent::session: operation done".into());
        t.push("2026-11-23T16:50:25.124Z DEBUG one_node_agent: frame".into());
        t.push("2026-11-23T16:50:26.000Z  WARN one_node_agent: libvirt closed".into());
        t.push("error while loading shared libraries: libvirt.so.0".into());
        assert_eq!(
            t.joined(),
            "2026-11-23T16:50:26.000Z  WARN one_node_agent: libvirt closed | error while loading \
             shared libraries: libvirt.so.0"
        );
    }
}
