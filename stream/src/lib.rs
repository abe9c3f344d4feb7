//! one-stream: the byte stream beside a node agent's message session (docs/node-agent.md,
//! "Byte stream"; wire format in `one_proto::stream`).
//!
//! One [`Mux`] runs on one connection: a second SSH channel of the session's connection for
//! a remote agent, a second socket handed to a local one. Either side opens streams
//! ([`Mux::open`]); the other side takes them from its [`Incoming`] queue and accepts or
//! refuses them. A [`Stream`] carries bytes both ways, each direction with its own window:
//! a sender waits for credit, a receiver grants credit as its user reads, so a stream whose
//! reader is slow slows down its own sender and nothing else, and no stream's bytes ever
//! pile up in memory beyond its window.
//!
//! ```text
//! oned                                         agent
//!   mux.open(Open::Write { path, max_bytes })  ──► incoming.recv(): checks the path
//!                                              ◄──  accept(Accepted)
//!   writer.write(..) × n, writer.finish()      ──►  bytes to SOURCE.part, then rename
//!   reader.read() == None  (the file is there) ◄──  EOF   (or RESET "Not enough space ...")
//! ```

use one_proto::stream::{
    Accepted, HEADER_LEN, Header, Kind, MAX_CONTROL, MAX_DATA, Open, WINDOW, opened_by_oned,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

/// Which end of the connection this is (it picks the parity of the ids it opens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Oned,
    Agent,
}

/// Why a stream operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The other side refused to open the stream.
    #[error("{0}")]
    Rejected(String),
    /// The stream was reset (by either side), with the reason.
    #[error("{0}")]
    Reset(String),
    /// The connection under every stream ended.
    #[error("the byte stream connection ended: {0}")]
    Closed(String),
    /// A write after `finish`.
    #[error("the stream was already finished")]
    Finished,
}

/// Incoming streams queued before they are served at most.
const INCOMING: usize = 64;
/// A write batches queued frames up to this size.
const BATCH: usize = 1 << 20;
/// Frames at least this large are written without batching.
const DIRECT: usize = 64 * 1024;
/// The reader's buffer: a frame's header and small frames come in one read.
const READ_BUFFER: usize = 16 * 1024;

enum Inbound {
    Data(Vec<u8>),
    Eof,
    Reset(String),
}

/// What a stream's two halves and the connection share.
struct State {
    id: u32,
    /// Bytes this side may still send.
    credit: Semaphore,
    /// Why the stream ended badly, once it did.
    reason: Mutex<Option<String>>,
    sent_eof: AtomicBool,
    got_eof: AtomicBool,
}

impl State {
    fn reason(&self) -> String {
        self.reason
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .unwrap_or_else(|| "the stream was reset".into())
    }

    fn fail(&self, why: &str) {
        if let Ok(mut r) = self.reason.lock()
            && r.is_none()
        {
            *r = Some(why.to_string());
        }
        self.credit.close();
    }
}

struct Slot {
    state: Arc<State>,
    inbound: mpsc::UnboundedSender<Inbound>,
    /// The opener waiting for ACCEPT / REJECT.
    accept: Option<oneshot::Sender<Result<Accepted, String>>>,
    /// Bytes the peer may still send on this stream (what it was granted).
    budget: u64,
}

struct Shared {
    side: Side,
    out: mpsc::UnboundedSender<Out>,
    slots: Mutex<HashMap<u32, Slot>>,
    next: AtomicU32,
    /// Why the connection ended, once it did.
    closed: watch::Sender<Option<String>>,
}

/// One connection's streams. Cheap to clone.
#[derive(Clone)]
pub struct Mux(Arc<Shared>);

/// The streams the other side opens, to accept or reject.
pub type Incoming = mpsc::Receiver<IncomingStream>;

/// A frame queued for the connection: its header, and its payload as its own buffer (a
/// data frame's bytes are not copied again to be framed).
struct Out {
    head: [u8; HEADER_LEN],
    body: bytes::Bytes,
}

fn frame_owned(stream: u32, kind: Kind, body: bytes::Bytes) -> Out {
    let h = Header {
        stream,
        kind,
        len: body.len() as u32,
    };
    Out {
        head: h.encode(),
        body,
    }
}

fn frame(stream: u32, kind: Kind, payload: &[u8]) -> Out {
    frame_owned(stream, kind, bytes::Bytes::copy_from_slice(payload))
}

impl Mux {
    /// Runs the streams of one connection (`r`, `w`): a reader and a writer task on the
    /// current runtime, until the connection ends or [`Mux::close`].
    pub fn start<R, W>(r: R, w: W, side: Side) -> (Mux, Incoming)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (out, out_rx) = mpsc::unbounded_channel();
        let (inc_tx, inc_rx) = mpsc::channel(INCOMING);
        let (closed, _) = watch::channel(None);
        let mux = Mux(Arc::new(Shared {
            side,
            out,
            slots: Mutex::new(HashMap::new()),
            next: AtomicU32::new(match side {
                Side::Oned => 1,
                Side::Agent => 2,
            }),
            closed,
        }));
        let m = mux.clone();
        let mut stop = mux.0.closed.subscribe();
        tokio::spawn(async move {
            let why = match write_loop(w, out_rx, &mut stop).await {
                Ok(()) => "closed".to_string(),
                Err(e) => format!("cannot write: {e}"),
            };
            m.shut(&why);
        });
        let m = mux.clone();
        let mut stop = mux.0.closed.subscribe();
        tokio::spawn(async move {
            let r = tokio::io::BufReader::with_capacity(READ_BUFFER, r);
            let why = tokio::select! {
                why = m.read_loop(r, inc_tx) => why,
                _ = stop.wait_for(|c| c.is_some()) => return,
            };
            m.shut(&why);
        });
        (mux, inc_rx)
    }

    /// Whether the connection ended.
    pub fn is_closed(&self) -> bool {
        self.0.closed.borrow().is_some()
    }

    /// Resolves with the reason when the connection ends.
    pub async fn closed(&self) -> String {
        let mut rx = self.0.closed.subscribe();
        match rx.wait_for(|c| c.is_some()).await {
            Ok(r) => r.clone().unwrap_or_default(),
            Err(_) => "closed".into(),
        }
    }

    /// Ends every stream and the connection.
    pub fn close(&self) {
        self.shut("closed by this side");
    }

    /// Streams open now.
    pub fn streams(&self) -> usize {
        self.0.slots.lock().map(|s| s.len()).unwrap_or(0)
    }

    fn send(&self, f: Out) {
        let _ = self.0.out.send(f);
    }

    fn shut(&self, why: &str) {
        if self.0.closed.borrow().is_some() {
            return;
        }
        self.0.closed.send_replace(Some(why.to_string()));
        let slots: Vec<Slot> = self
            .0
            .slots
            .lock()
            .map(|mut s| s.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        for mut s in slots {
            let msg = format!("the byte stream connection ended: {why}");
            s.state.fail(&msg);
            let _ = s.inbound.send(Inbound::Reset(msg.clone()));
            if let Some(a) = s.accept.take() {
                let _ = a.send(Err(msg));
            }
        }
        tracing::debug!(reason = why, "byte stream connection ended");
    }

    fn new_slot(&self, id: u32) -> (Arc<State>, mpsc::UnboundedReceiver<Inbound>, Slot) {
        let state = Arc::new(State {
            id,
            credit: Semaphore::new(WINDOW as usize),
            reason: Mutex::new(None),
            sent_eof: AtomicBool::new(false),
            got_eof: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let slot = Slot {
            state: state.clone(),
            inbound: tx,
            accept: None,
            budget: u64::from(WINDOW),
        };
        (state, rx, slot)
    }

    fn stream(&self, state: Arc<State>, rx: mpsc::UnboundedReceiver<Inbound>) -> Stream {
        let guard = Arc::new(Guard {
            mux: self.clone(),
            state: state.clone(),
        });
        Stream {
            reader: StreamReader {
                state: state.clone(),
                rx,
                consumed: 0,
                done: false,
                _guard: guard.clone(),
            },
            writer: StreamWriter {
                state,
                finished: false,
                _guard: guard,
            },
        }
    }

    /// Opens a stream: answers it with what the other side said, or why it refused.
    pub async fn open(&self, req: &Open) -> Result<(Stream, Accepted), StreamError> {
        if let Some(why) = self.0.closed.borrow().clone() {
            return Err(StreamError::Closed(why));
        }
        let id = self.0.next.fetch_add(2, Ordering::Relaxed);
        let (state, rx, mut slot) = self.new_slot(id);
        let (tx, answer) = oneshot::channel();
        slot.accept = Some(tx);
        if let Ok(mut s) = self.0.slots.lock() {
            s.insert(id, slot);
        }
        let body = serde_json::to_vec(req).map_err(|e| StreamError::Rejected(e.to_string()))?;
        self.send(frame(id, Kind::Open, &body));
        match answer.await {
            Ok(Ok(acc)) => Ok((self.stream(state, rx), acc)),
            Ok(Err(why)) => {
                self.forget(id);
                Err(if self.is_closed() {
                    StreamError::Closed(why)
                } else {
                    StreamError::Rejected(why)
                })
            }
            Err(_) => {
                self.forget(id);
                Err(StreamError::Closed("the connection ended".into()))
            }
        }
    }

    fn forget(&self, id: u32) {
        if let Ok(mut s) = self.0.slots.lock() {
            s.remove(&id);
        }
    }

    /// Resets stream `id`: the other side learns why, both directions end.
    fn reset(&self, state: &State, why: &str) {
        state.fail(why);
        self.forget(state.id);
        self.send(frame(state.id, Kind::Reset, why.as_bytes()));
    }

    async fn read_loop<R: AsyncRead + Unpin>(
        &self,
        mut r: R,
        incoming: mpsc::Sender<IncomingStream>,
    ) -> String {
        let mut head = [0u8; HEADER_LEN];
        loop {
            if let Err(e) = r.read_exact(&mut head).await {
                return if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    "the other side closed it".into()
                } else {
                    format!("cannot read: {e}")
                };
            }
            let h = match Header::decode(&head) {
                Ok(h) => h,
                Err(e) => return format!("broken framing: {e}"),
            };
            let mut payload = vec![0u8; h.len as usize];
            if let Err(e) = r.read_exact(&mut payload).await {
                return format!("cannot read: {e}");
            }
            self.dispatch(h, payload, &incoming);
        }
    }

    fn dispatch(&self, h: Header, payload: Vec<u8>, incoming: &mpsc::Sender<IncomingStream>) {
        let text = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
        match h.kind {
            Kind::Open => {
                let mine = match self.0.side {
                    Side::Oned => opened_by_oned(h.stream),
                    Side::Agent => !opened_by_oned(h.stream),
                };
                let taken = self
                    .0
                    .slots
                    .lock()
                    .map(|s| s.contains_key(&h.stream))
                    .unwrap_or(true);
                if mine || taken || h.stream == 0 {
                    self.send(frame(h.stream, Kind::Reject, b"bad stream id"));
                    return;
                }
                let req: Open = match serde_json::from_slice(&payload) {
                    Ok(r) => r,
                    Err(e) => {
                        let why = format!("unknown stream request: {e}");
                        self.send(frame(h.stream, Kind::Reject, why.as_bytes()));
                        return;
                    }
                };
                let (state, rx, slot) = self.new_slot(h.stream);
                if let Ok(mut s) = self.0.slots.lock() {
                    s.insert(h.stream, slot);
                }
                let inc = IncomingStream {
                    request: req,
                    state,
                    rx: Some(rx),
                    mux: self.clone(),
                    answered: false,
                };
                if let Err(e) = incoming.try_send(inc) {
                    // Dropping the refused request answers the opener.
                    drop(e);
                }
            }
            Kind::Accept | Kind::Reject => {
                let waiter = self
                    .0
                    .slots
                    .lock()
                    .ok()
                    .and_then(|mut s| s.get_mut(&h.stream).and_then(|x| x.accept.take()));
                if let Some(w) = waiter {
                    let _ = w.send(if h.kind == Kind::Accept {
                        Ok(serde_json::from_slice(&payload).unwrap_or_default())
                    } else {
                        Err(text(&payload))
                    });
                }
            }
            Kind::Data => {
                let mut slots = match self.0.slots.lock() {
                    Ok(s) => s,
                    Err(_) => return,
                };
                let Some(s) = slots.get_mut(&h.stream) else {
                    // Reset meanwhile: the bytes in flight are dropped.
                    return;
                };
                let n = payload.len() as u64;
                if n > s.budget {
                    let state = s.state.clone();
                    drop(slots);
                    self.reset(&state, "the other side sent beyond its window");
                    return;
                }
                s.budget -= n;
                let _ = s.inbound.send(Inbound::Data(payload));
            }
            Kind::Credit => {
                let n = payload
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                if let Some(s) = self
                    .0
                    .slots
                    .lock()
                    .ok()
                    .and_then(|s| s.get(&h.stream).map(|x| x.state.clone()))
                {
                    s.credit.add_permits(n as usize);
                }
            }
            Kind::Eof => {
                let slots = self.0.slots.lock();
                if let Ok(s) = slots
                    && let Some(x) = s.get(&h.stream)
                {
                    x.state.got_eof.store(true, Ordering::Release);
                    let _ = x.inbound.send(Inbound::Eof);
                }
            }
            Kind::Reset => {
                let slot = self
                    .0
                    .slots
                    .lock()
                    .ok()
                    .and_then(|mut s| s.remove(&h.stream));
                if let Some(mut s) = slot {
                    let why = text(&payload);
                    s.state.fail(&why);
                    let _ = s.inbound.send(Inbound::Reset(why.clone()));
                    if let Some(a) = s.accept.take() {
                        let _ = a.send(Err(why));
                    }
                }
            }
        }
    }

    /// The receiver consumed `n` bytes of stream `id`: the sender may send as many more.
    fn grant(&self, id: u32, n: u32) {
        let granted = match self.0.slots.lock() {
            Ok(mut s) => match s.get_mut(&id) {
                Some(x) => {
                    x.budget += u64::from(n);
                    true
                }
                None => false,
            },
            Err(_) => false,
        };
        if granted {
            self.send(frame(id, Kind::Credit, &n.to_be_bytes()));
        }
    }
}

/// Writes the queued frames until the connection is closed (then the writer is shut down,
/// which the other side reads as the connection's end).
async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<Out>,
    stop: &mut watch::Receiver<Option<String>>,
) -> std::io::Result<()> {
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH);
    loop {
        let f = tokio::select! {
            f = rx.recv() => match f {
                Some(f) => f,
                None => break,
            },
            _ = stop.wait_for(|c| c.is_some()) => break,
        };
        // Small frames are gathered with what else is queued; a large payload goes as it
        // is, right after the batch that ends with its header (no copy into the batch).
        let mut next = Some(f);
        while let Some(f) = next.take() {
            batch.extend_from_slice(&f.head);
            if f.body.len() >= DIRECT {
                w.write_all(&batch).await?;
                batch.clear();
                w.write_all(&f.body).await?;
            } else {
                batch.extend_from_slice(&f.body);
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            w.write_all(&batch).await?;
            batch.clear();
        }
        w.flush().await?;
    }
    // What was queued before the end still goes (a last RESET says why).
    while let Ok(f) = rx.try_recv() {
        w.write_all(&f.head).await?;
        w.write_all(&f.body).await?;
    }
    let _ = w.shutdown().await;
    Ok(())
}

/// A stream the other side opened: [`accept`](Self::accept) it or
/// [`reject`](Self::reject) it (dropping it rejects it).
pub struct IncomingStream {
    pub request: Open,
    state: Arc<State>,
    rx: Option<mpsc::UnboundedReceiver<Inbound>>,
    mux: Mux,
    answered: bool,
}

impl IncomingStream {
    pub fn accept(mut self, info: &Accepted) -> Stream {
        self.answered = true;
        let body = serde_json::to_vec(info).unwrap_or_default();
        self.mux.send(frame(self.state.id, Kind::Accept, &body));
        let rx = self.rx.take().expect("answered once");
        self.mux.stream(self.state.clone(), rx)
    }

    pub fn reject(mut self, why: &str) {
        self.answered = true;
        self.refuse(why);
    }

    fn refuse(&self, why: &str) {
        self.mux.forget(self.state.id);
        let why = &why[..why.len().min(MAX_CONTROL)];
        self.mux
            .send(frame(self.state.id, Kind::Reject, why.as_bytes()));
    }
}

impl Drop for IncomingStream {
    fn drop(&mut self) {
        if !self.answered {
            self.refuse("the stream was not served (too many at once?)");
        }
    }
}

/// Held by both halves of a stream: when both are gone, the stream is forgotten, and reset
/// unless both directions ended cleanly.
struct Guard {
    mux: Mux,
    state: Arc<State>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let s = &self.state;
        let clean = s.sent_eof.load(Ordering::Acquire) && s.got_eof.load(Ordering::Acquire);
        let failed = s.reason.lock().map(|r| r.is_some()).unwrap_or(true);
        if clean || failed {
            self.mux.forget(s.id);
        } else {
            self.mux
                .reset(s, "the other side closed the stream before its end");
        }
    }
}

/// A stream: bytes both ways.
pub struct Stream {
    pub reader: StreamReader,
    pub writer: StreamWriter,
}

impl Stream {
    pub fn split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }

    /// Resets the stream: both sides' operations fail with `why`.
    pub fn reset(self, why: &str) {
        self.writer.reset(why);
    }
}

/// The receiving half.
pub struct StreamReader {
    state: Arc<State>,
    rx: mpsc::UnboundedReceiver<Inbound>,
    /// Bytes read since the last credit granted.
    consumed: u32,
    done: bool,
    _guard: Arc<Guard>,
}

impl StreamReader {
    /// The next bytes, or None once the other side finished its direction.
    pub async fn read(&mut self) -> Result<Option<Vec<u8>>, StreamError> {
        if self.done {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(Inbound::Data(v)) => {
                self.consumed += v.len() as u32;
                if self.consumed >= WINDOW / 2 {
                    self._guard.mux.grant(self.state.id, self.consumed);
                    self.consumed = 0;
                }
                Ok(Some(v))
            }
            Some(Inbound::Eof) => {
                self.done = true;
                Ok(None)
            }
            Some(Inbound::Reset(why)) => {
                self.done = true;
                Err(StreamError::Reset(why))
            }
            None => {
                self.done = true;
                Err(StreamError::Reset(self.state.reason()))
            }
        }
    }

    /// Reads everything until the other side's end (for small answers and tests).
    pub async fn read_to_end(&mut self) -> Result<Vec<u8>, StreamError> {
        let mut all = Vec::new();
        while let Some(v) = self.read().await? {
            all.extend_from_slice(&v);
        }
        Ok(all)
    }
}

/// The sending half.
pub struct StreamWriter {
    state: Arc<State>,
    finished: bool,
    _guard: Arc<Guard>,
}

impl StreamWriter {
    /// Sends `data`, waiting for the receiver's credit as needed.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StreamError> {
        self.write_bytes(bytes::Bytes::copy_from_slice(data)).await
    }

    /// Sends `data`, taking the buffer (no copy when it fits one frame).
    pub async fn write_owned(&mut self, data: Vec<u8>) -> Result<(), StreamError> {
        self.write_bytes(bytes::Bytes::from(data)).await
    }

    /// Sends `data` without copying it (an HTTP body's chunks, a buffer read whole).
    pub async fn write_bytes(&mut self, mut data: bytes::Bytes) -> Result<(), StreamError> {
        if self.finished {
            return Err(StreamError::Finished);
        }
        while data.len() > MAX_DATA {
            let head = data.split_to(MAX_DATA);
            self.send_frame(head).await?;
        }
        if data.is_empty() {
            return Ok(());
        }
        self.send_frame(data).await
    }

    async fn send_frame(&mut self, data: bytes::Bytes) -> Result<(), StreamError> {
        match self.state.credit.acquire_many(data.len() as u32).await {
            Ok(p) => p.forget(),
            Err(_) => return Err(StreamError::Reset(self.state.reason())),
        }
        self._guard
            .mux
            .send(frame_owned(self.state.id, Kind::Data, data));
        Ok(())
    }

    /// Ends this direction (the other side reads its end).
    pub async fn finish(&mut self) -> Result<(), StreamError> {
        if self.finished {
            return Ok(());
        }
        if self.state.credit.is_closed() {
            return Err(StreamError::Reset(self.state.reason()));
        }
        self.finished = true;
        self.state.sent_eof.store(true, Ordering::Release);
        self._guard.mux.send(frame(self.state.id, Kind::Eof, &[]));
        Ok(())
    }

    /// Resets the stream with `why` (the other side's reads and writes fail with it).
    pub fn reset(&self, why: &str) {
        self._guard.mux.reset(&self.state, why);
    }

    /// Whether the stream failed (a reset from either side, or the connection's end).
    pub fn failed(&self) -> Option<String> {
        self.state.reason.lock().ok().and_then(|r| r.clone())
    }
}

/// Copies `r` into the stream's writer and finishes it; answers the bytes sent.
pub async fn send_all<R: AsyncRead + Unpin>(
    r: &mut R,
    w: &mut StreamWriter,
) -> Result<u64, StreamError> {
    let mut buf = vec![0u8; MAX_DATA];
    let mut n = 0u64;
    loop {
        let k = r
            .read(&mut buf)
            .await
            .map_err(|e| StreamError::Reset(format!("reading: {e}")))?;
        if k == 0 {
            break;
        }
        w.write(&buf[..k]).await?;
        n += k as u64;
    }
    w.finish().await?;
    Ok(n)
}

/// Copies the stream's reader into `w` until its end; answers the bytes received.
pub async fn receive_all<W: AsyncWrite + Unpin>(
    r: &mut StreamReader,
    w: &mut W,
) -> Result<u64, StreamError> {
    let mut n = 0u64;
    while let Some(v) = r.read().await? {
        w.write_all(&v)
            .await
            .map_err(|e| StreamError::Reset(format!("writing: {e}")))?;
        n += v.len() as u64;
    }
    w.flush()
        .await
        .map_err(|e| StreamError::Reset(format!("writing: {e}")))?;
    Ok(n)
}

/// Joins two streams (a relay: what `a`'s other side sends goes to `b`'s, and back) until
/// both directions ended; answers the bytes each way (a to b, b to a). A reset of either
/// side resets the other with its reason; a write that fails stops its direction only, the
/// other direction carries the reason (so an end and a reset racing never turn a finished
/// stream into a failed one).
pub async fn splice(a: Stream, b: Stream) -> Result<(u64, u64), StreamError> {
    async fn pump(mut from: StreamReader, mut to: StreamWriter) -> Result<u64, StreamError> {
        let mut n = 0u64;
        loop {
            match from.read().await {
                Ok(Some(v)) => {
                    n += v.len() as u64;
                    if to.write_owned(v).await.is_err() {
                        return Ok(n);
                    }
                }
                Ok(None) => {
                    let _ = to.finish().await;
                    return Ok(n);
                }
                Err(e) => {
                    to.reset(&e.to_string());
                    return Err(e);
                }
            }
        }
    }
    let (ar, aw) = a.split();
    let (br, bw) = b.split();
    let (x, y) = tokio::join!(pump(ar, bw), pump(br, aw));
    Ok((x?, y?))
}

#[cfg(test)]
mod tests;
