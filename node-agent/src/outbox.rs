//! The agent's output: one writer task owns stdout and writes the frames every other task
//! hands it through an [`Outbox`], so frames never interleave and a slow oned slows the
//! senders down (the queue is bounded) instead of growing memory.

use one_proto::agent::{self, FromAgent, Log, LogLevel, Reply};
use one_proto::driver::DriverError;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Instant;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// Frames waiting for the writer; beyond this, senders wait (and Log frames are dropped).
const QUEUE: usize = 1024;

/// Milliseconds on a monotonic clock shared by the session's tasks (for keepalive).
#[derive(Clone, Debug)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Clock {
        Clock(Instant::now())
    }

    pub fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// A handle to send frames to oned. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<FromAgent>,
    /// The least important [`LogLevel`] sent as a Log frame (its discriminant); until the
    /// Welcome sets it, no Log frame is sent.
    log_level: Arc<AtomicU8>,
}

const NO_LOGS: u8 = u8::MAX;

fn level_rank(l: LogLevel) -> u8 {
    match l {
        LogLevel::Error => 0,
        LogLevel::Warn => 1,
        LogLevel::Info => 2,
        LogLevel::Debug => 3,
    }
}

impl Outbox {
    /// Queues a frame; false when the session's output is gone.
    pub async fn send(&self, msg: FromAgent) -> bool {
        self.tx.send(msg).await.is_ok()
    }

    pub fn set_log_level(&self, level: LogLevel) {
        self.log_level.store(level_rank(level), Ordering::Relaxed);
    }

    /// Sends a Log frame to oned (and the VM's log when `vm_id` is set) if the Welcome's
    /// `log_level` asks for this level. Never waits: when the queue is full the frame is
    /// dropped (it is in the agent's stderr log anyway).
    pub fn log(&self, level: LogLevel, message: impl Into<String>, vm_id: Option<i64>) {
        let wanted = self.log_level.load(Ordering::Relaxed);
        if wanted == NO_LOGS || level_rank(level) > wanted {
            return;
        }
        let _ = self.tx.try_send(FromAgent::Log(Log {
            level,
            message: message.into(),
            vm_id,
        }));
    }
}

/// The writer task's end: how it finished, and when it last wrote.
pub struct Writer {
    pub task: tokio::task::JoinHandle<WriterEnd>,
    /// [`Clock`] time of the last frame written (keepalive: ping when idle).
    pub last_sent: Arc<AtomicU64>,
    /// Becomes true when writing failed.
    pub failed: watch::Receiver<bool>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum WriterEnd {
    /// Every Outbox was dropped and everything queued was written.
    Drained,
    /// Writing failed: oned is gone.
    Failed(String),
}

/// Starts the writer on `out`.
pub fn spawn_writer<W>(out: W, clock: Clock) -> (Outbox, Writer)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    let last_sent = Arc::new(AtomicU64::new(clock.now()));
    let (failed_tx, failed) = watch::channel(false);
    let last_sent_w = last_sent.clone();
    let task = tokio::spawn(async move {
        let end = write_loop(out, rx, clock, last_sent_w).await;
        if matches!(end, WriterEnd::Failed(_)) {
            let _ = failed_tx.send(true);
        }
        end
    });
    (
        Outbox {
            tx,
            log_level: Arc::new(AtomicU8::new(NO_LOGS)),
        },
        Writer {
            task,
            last_sent,
            failed,
        },
    )
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut out: W,
    mut rx: mpsc::Receiver<FromAgent>,
    clock: Clock,
    last_sent: Arc<AtomicU64>,
) -> WriterEnd {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        // Everything already queued goes out in one write.
        buf.clear();
        push(&mut buf, first);
        while let Ok(more) = rx.try_recv() {
            push(&mut buf, more);
        }
        if let Err(e) = async {
            out.write_all(&buf).await?;
            out.flush().await
        }
        .await
        {
            tracing::warn!(error = %e, "cannot write to oned");
            return WriterEnd::Failed(e.to_string());
        }
        last_sent.store(clock.now(), Ordering::Relaxed);
    }
    let _ = out.flush().await;
    WriterEnd::Drained
}

/// Encodes one frame; one that cannot be (too large) is replaced by an error reply when it
/// answered a request, so that oned is not left waiting, and dropped otherwise.
fn push(buf: &mut Vec<u8>, msg: FromAgent) {
    let Err(e) = agent::encode_into(&msg, buf) else {
        return;
    };
    tracing::error!(error = %e, "frame not sent");
    if let FromAgent::Reply { id, .. } = msg {
        let reply = FromAgent::Reply {
            id,
            reply: Reply::Err(DriverError::new(format!(
                "the agent's reply cannot be sent: {e}"
            ))),
        };
        let _ = agent::encode_into(&reply, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use one_proto::agent::{Beat, FrameDecoder};
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn frames_in_order_logs_filtered_oversize_replaced() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let (outbox, writer) = spawn_writer(a, Clock::new());
        outbox.log(LogLevel::Error, "before welcome: not sent", None);
        outbox.set_log_level(LogLevel::Warn);
        outbox.log(LogLevel::Info, "too chatty", None);
        outbox.log(LogLevel::Warn, "sent", Some(3));
        assert!(
            outbox
                .send(FromAgent::Ping(Beat { seq: 1, time_ms: 2 }))
                .await
        );
        let huge = FromAgent::Reply {
            id: 7,
            reply: Reply::Err(DriverError::new("x".repeat(agent::MAX_FRAME))),
        };
        assert!(outbox.send(huge).await);
        drop(outbox);
        assert_eq!(writer.task.await.unwrap(), WriterEnd::Drained);
        let mut bytes = Vec::new();
        b.read_to_end(&mut bytes).await.unwrap();
        let mut dec = FrameDecoder::new();
        dec.feed(&bytes);
        let mut got = Vec::new();
        while let Some(m) = dec.next_message::<FromAgent>().unwrap() {
            got.push(m);
        }
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(matches!(&got[0], FromAgent::Log(l) if l.message == "sent" && l.vm_id == Some(3)));
        assert_eq!(got[1], FromAgent::Ping(Beat { seq: 1, time_ms: 2 }));
        match &got[2] {
            FromAgent::Reply {
                id: 7,
                reply: Reply::Err(e),
            } => assert!(e.message.contains("cannot be sent"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_closed_output_ends_the_writer() {
        let (a, b) = tokio::io::duplex(64);
        drop(b);
        let (outbox, writer) = spawn_writer(a, Clock::new());
        outbox.send(FromAgent::Ping(Beat::default())).await;
        assert!(matches!(writer.task.await.unwrap(), WriterEnd::Failed(_)));
        assert!(!outbox.send(FromAgent::Ping(Beat::default())).await);
    }
}
