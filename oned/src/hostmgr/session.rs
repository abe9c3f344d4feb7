//! The protocol mechanics of one agent session (docs/node-agent.md): reading frames, the
//! handshake, and [`Link`], the handle through which requests go out and their replies come
//! back by id. What the frames *mean* for hosts and VMs is in `host.rs` and `ingest.rs`.

use super::transport::{AgentReader, AgentWriter};
use one_proto::agent::{
    AgentVersion, FrameDecoder, FrameError, FromAgent, Hello, Refused, Reply, Request, RequestId,
    ToAgent, Welcome, check_hello, encode, encode_into,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Frames queued for the writer; a caller waits when the agent does not read.
const OUTBOX: usize = 1024;

/// Why a session could not start or ended.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SessionError {
    #[error("the agent closed the session")]
    Closed,
    #[error("cannot read from the agent: {0}")]
    Read(String),
    #[error("cannot write to the agent: {0}")]
    Write(String),
    /// The stream lost its framing (oversized or truncated frame).
    #[error("broken stream from the agent: {0}")]
    Frame(FrameError),
    /// A frame that is not a message: after the handshake both sides run one build, so a bug.
    #[error("the agent sent a frame that is not a message: {0}")]
    BadBody(String),
    #[error("no hello from the agent within {0} s")]
    HelloTimeout(u64),
    #[error("the agent's first frame is not a hello but a {0} frame")]
    NotHello(&'static str),
    /// oned refused the agent's hello.
    #[error("oned refused the agent: {}", .0.reason)]
    Refused(Refused),
    /// The agent refused oned's welcome (it cannot use the configuration).
    #[error("the agent refused the session: {}", .0.reason)]
    AgentRefused(Refused),
    #[error("nothing received from the agent for {0} s")]
    Silent(u64),
    #[error("the agent sent an unexpected {0} frame")]
    Unexpected(&'static str),
}

/// Reads [`FromAgent`] frames from the agent's stdout.
pub struct FrameReader {
    r: AgentReader,
    dec: FrameDecoder,
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn new(r: AgentReader) -> FrameReader {
        FrameReader {
            r,
            dec: FrameDecoder::new(),
            buf: vec![0; 64 * 1024],
        }
    }

    /// The next message; `Ok(None)` when the stream ended between frames. Cancel-safe: the
    /// only await is the read, which consumes nothing when cancelled.
    pub async fn next(&mut self) -> Result<Option<FromAgent>, SessionError> {
        loop {
            match self.dec.next_message::<FromAgent>() {
                Ok(Some(m)) => return Ok(Some(m)),
                Ok(None) => {}
                Err(FrameError::BadBody(e)) => return Err(SessionError::BadBody(e)),
                Err(e) => return Err(SessionError::Frame(e)),
            }
            let n = self
                .r
                .read(&mut self.buf)
                .await
                .map_err(|e| SessionError::Read(e.to_string()))?;
            if n == 0 {
                return match self.dec.finish() {
                    Ok(()) => Ok(None),
                    Err(e) => Err(SessionError::Frame(e)),
                };
            }
            self.dec.feed(&self.buf[..n]);
        }
    }
}

/// Writes one message as a frame and flushes.
pub async fn write_frame(w: &mut AgentWriter, msg: &ToAgent) -> Result<(), SessionError> {
    let bytes = encode(msg).map_err(|e| SessionError::Write(e.to_string()))?;
    w.write_all(&bytes)
        .await
        .map_err(|e| SessionError::Write(e.to_string()))?;
    w.flush()
        .await
        .map_err(|e| SessionError::Write(e.to_string()))
}

/// The oned side of the handshake: waits up to `timeout` for the agent's hello, refuses it
/// unless it is of `own` build (telling the agent why), else answers `welcome(&hello)`.
pub async fn handshake(
    reader: &mut FrameReader,
    writer: &mut AgentWriter,
    own: &AgentVersion,
    timeout: Duration,
    welcome: impl FnOnce(&Hello) -> Welcome,
) -> Result<Hello, SessionError> {
    let first = match tokio::time::timeout(timeout, reader.next()).await {
        Err(_) => return Err(SessionError::HelloTimeout(timeout.as_secs())),
        Ok(Ok(None)) => return Err(SessionError::Closed),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Some(m))) => m,
    };
    let hello = match first {
        FromAgent::Hello(h) => h,
        FromAgent::Refused(r) => return Err(SessionError::AgentRefused(r)),
        other => return Err(SessionError::NotHello(other.kind())),
    };
    if let Err(refused) = check_hello(&hello, own) {
        // Best effort: the agent learns why, then the session is closed either way.
        let _ = write_frame(writer, &ToAgent::Refused(refused.clone())).await;
        return Err(SessionError::Refused(refused));
    }
    write_frame(writer, &ToAgent::Welcome(welcome(&hello))).await?;
    Ok(hello)
}

/// Why a call on a [`Link`] did not get its reply.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The session ended before the reply came (the request may or may not have run).
    #[error("the session with the agent was lost")]
    Lost,
    #[error("no reply from the agent within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("the request cannot be encoded: {0}")]
    Encode(String),
}

struct Waiter {
    tx: oneshot::Sender<Reply>,
    /// The VM of an `execute` request.
    vm_id: Option<i64>,
}

#[derive(Default)]
struct Pending {
    waiters: HashMap<RequestId, Waiter>,
    /// Set when the session ended: no new waiter is accepted.
    closed: bool,
}

struct LinkInner {
    host_id: i64,
    out: mpsc::Sender<Vec<u8>>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    /// When the writer last wrote, in ms since `epoch` (the keepalive looks at it).
    last_write_ms: AtomicU64,
    epoch: Instant,
}

/// A live session's request side: cheap to clone, usable from any task. Requests get ids
/// unique within the session; the session's reader hands each reply to its caller
/// ([`Link::deliver`]).
#[derive(Clone)]
pub struct Link(Arc<LinkInner>);

/// Removes a waiter when its call ends in any way (reply, timeout, or the caller's future
/// dropped by an outer timeout), so the map holds only calls still waiting.
struct Forget<'a> {
    link: &'a LinkInner,
    id: RequestId,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.link.pending.lock() {
            p.waiters.remove(&self.id);
        }
    }
}

impl Link {
    /// A link whose frames go to `out` (the writer task's queue; see [`spawn_writer`]).
    pub fn new(host_id: i64, out: mpsc::Sender<Vec<u8>>) -> Link {
        Link(Arc::new(LinkInner {
            host_id,
            out,
            pending: Mutex::new(Pending::default()),
            next_id: AtomicU64::new(1),
            last_write_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }))
    }

    pub fn host_id(&self) -> i64 {
        self.0.host_id
    }

    /// Sends `request` and waits up to `timeout` for its reply.
    pub async fn call(&self, request: Request, timeout: Duration) -> Result<Reply, CallError> {
        let inner = &*self.0;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let vm_id = match &request {
            Request::Execute(r) => Some(r.vm_id),
            _ => None,
        };
        let mut frame = Vec::new();
        encode_into(&ToAgent::Request { id, request }, &mut frame)
            .map_err(|e| CallError::Encode(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        {
            let Ok(mut p) = inner.pending.lock() else {
                return Err(CallError::Lost);
            };
            if p.closed {
                return Err(CallError::Lost);
            }
            p.waiters.insert(id, Waiter { tx, vm_id });
        }
        let _forget = Forget { link: inner, id };
        if inner.out.send(frame).await.is_err() {
            return Err(CallError::Lost);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(CallError::Lost),
            Err(_) => Err(CallError::Timeout(timeout)),
        }
    }

    /// Sends a request nobody waits for (its reply is not delivered to a caller); returns
    /// its id, or None when the session is gone or the agent is not reading.
    pub fn send_request(&self, request: Request) -> Option<RequestId> {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(&ToAgent::Request { id, request }).then_some(id)
    }

    /// Queues a frame without waiting; false when the session is gone or the queue is full.
    pub fn send(&self, msg: &ToAgent) -> bool {
        match encode(msg) {
            Ok(frame) => self.0.out.try_send(frame).is_ok(),
            Err(e) => {
                tracing::error!(host = self.0.host_id, error = %e, "cannot encode a frame for the agent");
                false
            }
        }
    }

    /// Hands reply `id` to its caller: `Some(vm id of an execute request)` when somebody
    /// waited, None when nobody does (any more).
    pub fn deliver(&self, id: RequestId, reply: Reply) -> Option<Option<i64>> {
        let w = self.0.pending.lock().ok()?.waiters.remove(&id)?;
        let vm = w.vm_id;
        // The caller may have given up right now: nothing to do then.
        let _ = w.tx.send(reply);
        Some(vm)
    }

    /// The session ended: every waiting call fails with [`CallError::Lost`], new ones too.
    pub fn close(&self) {
        if let Ok(mut p) = self.0.pending.lock() {
            p.closed = true;
            p.waiters.clear();
        }
    }

    /// Calls waiting for a reply.
    pub fn waiting(&self) -> usize {
        self.0.pending.lock().map(|p| p.waiters.len()).unwrap_or(0)
    }

    /// Time since the writer last wrote a frame (or since the link was made).
    pub fn since_write(&self) -> Duration {
        let last = Duration::from_millis(self.0.last_write_ms.load(Ordering::Relaxed));
        self.0.epoch.elapsed().saturating_sub(last)
    }
}

/// A link for the session whose agent reads `w`, and the task writing its frames there (it
/// batches what is queued into one write). The task ends with an error when a write fails;
/// the session aborts it when it ends.
pub fn start_link(
    host_id: i64,
    mut w: AgentWriter,
) -> (Link, tokio::task::JoinHandle<Result<(), SessionError>>) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(OUTBOX);
    let link = Link::new(host_id, tx);
    let clock = link.0.clone();
    let task = tokio::spawn(async move {
        let mut batch = Vec::new();
        while let Some(frame) = rx.recv().await {
            batch.clear();
            batch.extend_from_slice(&frame);
            while batch.len() < 1 << 20 {
                match rx.try_recv() {
                    Ok(f) => batch.extend_from_slice(&f),
                    Err(_) => break,
                }
            }
            let res = async {
                w.write_all(&batch).await?;
                w.flush().await
            }
            .await;
            if let Err(e) = res {
                return Err(SessionError::Write(e.to_string()));
            }
            let ms = clock.epoch.elapsed().as_millis() as u64;
            clock.last_write_ms.store(ms, Ordering::Relaxed);
        }
        let _ = w.shutdown().await;
        Ok(())
    });
    (link, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use one_proto::agent::{AgentConfig, Beat, HostInfo, PROTOCOL_VERSION, RefuseCode};
    use one_proto::driver::{DriverOp, DriverReply, DriverRequest};
    use tokio::io::{DuplexStream, ReadHalf, WriteHalf, duplex, split};

    fn own() -> AgentVersion {
        AgentVersion {
            version: "0.1.0".into(),
            build: "b1".into(),
        }
    }

    fn welcome(h: &Hello) -> Welcome {
        Welcome {
            protocol_version: PROTOCOL_VERSION,
            host_id: 4,
            host_name: h.host.hostname.clone(),
            time_ms: 0,
            config: AgentConfig::default(),
        }
    }

    /// oned's reader and writer, and the agent's ends.
    fn pipes() -> (
        FrameReader,
        AgentWriter,
        ReadHalf<DuplexStream>,
        WriteHalf<DuplexStream>,
    ) {
        let (oned, agent) = duplex(1 << 16);
        let (or, ow) = split(oned);
        let (ar, aw) = split(agent);
        (FrameReader::new(Box::pin(or)), Box::pin(ow), ar, aw)
    }

    async fn agent_send(w: &mut WriteHalf<DuplexStream>, m: &FromAgent) {
        w.write_all(&encode(m).unwrap()).await.unwrap();
    }

    async fn agent_recv(r: &mut ReadHalf<DuplexStream>, dec: &mut FrameDecoder) -> ToAgent {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(m) = dec.next_message::<ToAgent>().unwrap() {
                return m;
            }
            let n = r.read(&mut buf).await.unwrap();
            assert!(n > 0, "oned closed");
            dec.feed(&buf[..n]);
        }
    }

    fn hello(build: &str, protocol: u32) -> FromAgent {
        let mut h = Hello::new(
            AgentVersion {
                version: "0.1.0".into(),
                build: build.into(),
            },
            HostInfo {
                hostname: "node1".into(),
                ..HostInfo::default()
            },
        );
        h.protocol_version = protocol;
        FromAgent::Hello(h)
    }

    #[tokio::test]
    async fn handshake_welcomes_the_own_build() {
        let (mut r, mut w, mut ar, mut aw) = pipes();
        agent_send(&mut aw, &hello("b1", PROTOCOL_VERSION)).await;
        let h = handshake(&mut r, &mut w, &own(), Duration::from_secs(5), welcome)
            .await
            .unwrap();
        assert_eq!(h.host.hostname, "node1");
        let mut dec = FrameDecoder::new();
        let ToAgent::Welcome(wel) = agent_recv(&mut ar, &mut dec).await else {
            panic!("no welcome");
        };
        assert_eq!((wel.host_id, wel.host_name.as_str()), (4, "node1"));
    }

    #[tokio::test]
    async fn handshake_refuses_another_build_or_protocol_and_says_why() {
        for (build, protocol, code) in [
            ("b2", PROTOCOL_VERSION, RefuseCode::BuildMismatch),
            ("b1", PROTOCOL_VERSION + 1, RefuseCode::ProtocolMismatch),
        ] {
            let (mut r, mut w, mut ar, mut aw) = pipes();
            agent_send(&mut aw, &hello(build, protocol)).await;
            let e = handshake(&mut r, &mut w, &own(), Duration::from_secs(5), welcome)
                .await
                .unwrap_err();
            let SessionError::Refused(refused) = &e else {
                panic!("{e:?}");
            };
            assert_eq!(refused.code, code);
            let mut dec = FrameDecoder::new();
            assert_eq!(
                agent_recv(&mut ar, &mut dec).await,
                ToAgent::Refused(refused.clone())
            );
        }
    }

    #[tokio::test]
    async fn handshake_fails_on_silence_eof_and_other_frames() {
        let (mut r, mut w, _ar, _aw) = pipes();
        let e = handshake(&mut r, &mut w, &own(), Duration::from_millis(50), welcome)
            .await
            .unwrap_err();
        assert_eq!(e, SessionError::HelloTimeout(0));

        let (mut r, mut w, ar, aw) = pipes();
        drop((ar, aw));
        let e = handshake(&mut r, &mut w, &own(), Duration::from_secs(5), welcome)
            .await
            .unwrap_err();
        assert_eq!(e, SessionError::Closed);

        let (mut r, mut w, _ar, mut aw) = pipes();
        agent_send(&mut aw, &FromAgent::Ping(Beat::default())).await;
        let e = handshake(&mut r, &mut w, &own(), Duration::from_secs(5), welcome)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the agent's first frame is not a hello but a ping frame"
        );

        // Garbage that announces a huge frame: the framing is lost.
        let (mut r, mut w, _ar, mut aw) = pipes();
        aw.write_all(&[0xff; 8]).await.unwrap();
        let e = handshake(&mut r, &mut w, &own(), Duration::from_secs(5), welcome)
            .await
            .unwrap_err();
        assert!(
            matches!(e, SessionError::Frame(FrameError::TooLarge { .. })),
            "{e:?}"
        );
    }

    fn exec(vm_id: i64) -> Request {
        Request::Execute(DriverRequest {
            op: DriverOp::Deploy,
            vm_id,
            deploy_id: String::new(),
            host: "node1".into(),
            source_host: String::new(),
            ds_id: 0,
            vm_xml: String::new(),
            args: Default::default(),
        })
    }

    #[tokio::test]
    async fn calls_are_matched_by_id_in_any_order_and_time_out() {
        let (_r, w, mut ar, _aw) = pipes();
        let (link, writer) = start_link(4, w);
        let l1 = link.clone();
        let a = tokio::spawn(async move { l1.call(exec(1), Duration::from_secs(5)).await });
        let l2 = link.clone();
        let b = tokio::spawn(async move { l2.call(exec(2), Duration::from_secs(5)).await });
        let mut dec = FrameDecoder::new();
        let mut ids = HashMap::new();
        for _ in 0..2 {
            let ToAgent::Request {
                id,
                request: Request::Execute(r),
            } = agent_recv(&mut ar, &mut dec).await
            else {
                panic!("not an execute");
            };
            ids.insert(r.vm_id, id);
        }
        assert_ne!(ids[&1], ids[&2]);
        assert_eq!(link.waiting(), 2);
        // Answered in reverse order, each reaches its own caller.
        let ok = |d: &str| {
            Reply::Ok(DriverReply {
                deploy_id: Some(d.into()),
                info: String::new(),
            })
        };
        assert_eq!(link.deliver(ids[&2], ok("two")), Some(Some(2)));
        assert_eq!(link.deliver(ids[&1], ok("one")), Some(Some(1)));
        assert_eq!(a.await.unwrap(), Ok(ok("one")));
        assert_eq!(b.await.unwrap(), Ok(ok("two")));
        // A reply nobody waits for (any more) is dropped.
        assert_eq!(link.deliver(ids[&1], ok("again")), None);

        let e = link
            .call(Request::Probe, Duration::from_millis(30))
            .await
            .unwrap_err();
        assert_eq!(e, CallError::Timeout(Duration::from_millis(30)));
        assert_eq!(link.waiting(), 0, "a timed out call leaves no waiter");
        assert!(link.since_write() < Duration::from_secs(5));

        // The session ends: waiting calls and new ones are lost.
        let l3 = link.clone();
        let c = tokio::spawn(async move { l3.call(exec(3), Duration::from_secs(5)).await });
        while link.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        link.close();
        assert_eq!(c.await.unwrap(), Err(CallError::Lost));
        assert_eq!(
            link.call(exec(4), Duration::from_secs(5)).await,
            Err(CallError::Lost)
        );
        writer.abort();
    }

    #[tokio::test]
    async fn reader_reports_a_truncated_stream() {
        let (mut r, _w, ar, mut aw) = pipes();
        let bytes = encode(&FromAgent::Ping(Beat::default())).unwrap();
        aw.write_all(&bytes[..bytes.len() - 1]).await.unwrap();
        drop((ar, aw));
        let e = r.next().await.unwrap_err();
        assert!(
            matches!(e, SessionError::Frame(FrameError::Truncated { .. })),
            "{e:?}"
        );
    }
}
