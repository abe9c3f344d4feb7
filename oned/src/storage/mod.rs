//! Storage: oned's frontend agent and what runs through it (docs/storage.md).
//!
//! oned always runs one `one-node-agent --frontend` on its own machine, through a local
//! pipe, whatever hosts exist; every file operation on image and file datastores (copy in,
//! mkfs, clone, delete, stat, capacity, snapshots, resize) runs there. oned decides and
//! keeps the objects; the agent acts on the files (`one_drivers::ds`).
//!
//! | module | what |
//! |---|---|
//! | [`frontend`] | the agent's session: start, handshake, requests, keepalive, restart |
//! | [`capacity`] | datastore capacity (TOTAL_MB / FREE_MB / USED_MB) and the token files of shared datastores |
//! | [`image`] | where a new image's bytes come from; the operations an image waits for in LOCKED, and their end |
//! | [`upload`] | upload tokens (`POST /upload`, `PATH="upload://TOKEN"`) |

pub mod capacity;
pub mod frontend;
pub mod image;
pub mod relay;
pub mod upload;

use crate::config::Config;
use crate::datadir::DataDir;
use crate::hostmgr::session::{CallError, Link};
use one_proto::agent::{Reply, Request};
use one_proto::ds::{DsReply, DsRequest, Target};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// How long a request waits for the frontend agent to be (back) up before it fails.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Why a datastore operation did not answer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StorageError {
    #[error("the frontend agent is not running: {0}")]
    NotRunning(String),
    /// The session ended with the request in flight: it may have run partly.
    #[error("the frontend agent stopped during the operation ({0})")]
    Lost(String),
    #[error("the frontend agent did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    /// The operation failed; the agent's message, for the image's ERROR.
    #[error("{0}")]
    Failed(String),
}

/// The frontend agent's session and what oned keeps about storage.
pub struct Storage {
    link: watch::Sender<Option<Link>>,
    /// The frontend agent's byte stream.
    mux: watch::Sender<Option<one_stream::Mux>>,
    /// Why there is no session (or what its checks said), for messages.
    status: Mutex<String>,
    /// This installation's identity, in the token files of shared datastores.
    pub cloud_id: String,
    /// Where new datastores live.
    pub root: PathBuf,
    /// The upload staging area.
    pub staging: PathBuf,
    /// Image files an interrupted operation left (with: only its temporary files), removed
    /// once the agent is back.
    cleanups: Mutex<Vec<(Target, bool)>>,
    /// Uploads waiting for their image.
    pub uploads: upload::Uploads,
    /// Wakes the capacity loop (a datastore was created).
    pub measure_now: tokio::sync::Notify,
}

impl Storage {
    pub fn new(cfg: &Config, dir: &DataDir) -> Result<Storage, crate::datadir::DataDirError> {
        let (link, _) = watch::channel(None);
        let (mux, _) = watch::channel(None);
        Ok(Storage {
            link,
            mux,
            status: Mutex::new("the frontend agent has not started yet".into()),
            cloud_id: dir.cloud_id()?,
            root: cfg.storage.datastores_root(&dir.root),
            staging: cfg.storage.upload_dir(&dir.root),
            cleanups: Mutex::new(Vec::new()),
            uploads: upload::Uploads::default(),
            measure_now: tokio::sync::Notify::new(),
        })
    }

    /// The token of shared datastore `ds_id`.
    pub fn token(&self, ds_id: i64) -> String {
        crate::ops::datastore::token(&self.cloud_id, ds_id)
    }

    /// The directory of a new datastore.
    pub fn datastore_dir(&self, id: i64) -> PathBuf {
        self.root.join(id.to_string())
    }

    fn set_status(&self, s: &str) {
        if let Ok(mut st) = self.status.lock() {
            s.clone_into(&mut st);
        }
    }

    fn status(&self) -> String {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Whether the frontend agent has a session now.
    pub fn connected(&self) -> bool {
        self.link.borrow().is_some()
    }

    /// Runs `req` on the frontend agent within `timeout`, waiting a little for its session
    /// when it is (re)starting.
    pub async fn call(&self, req: DsRequest, timeout: Duration) -> Result<DsReply, StorageError> {
        let mut rx = self.link.subscribe();
        let link = match tokio::time::timeout(CONNECT_WAIT, rx.wait_for(|l| l.is_some())).await {
            Ok(Ok(l)) => l.clone(),
            _ => None,
        };
        let Some(link) = link else {
            return Err(StorageError::NotRunning(self.status()));
        };
        match link.call(Request::Ds(req), timeout).await {
            Ok(Reply::Ds(r)) => Ok(r),
            Ok(Reply::Err(e)) => Err(StorageError::Failed(e.message)),
            Ok(other) => Err(StorageError::Failed(format!(
                "the frontend agent answered {other:?}"
            ))),
            Err(CallError::Lost) => {
                // Let the session record why it ended.
                tokio::time::sleep(Duration::from_millis(300)).await;
                Err(StorageError::Lost(self.status()))
            }
            Err(CallError::Timeout(d)) => Err(StorageError::Timeout(d)),
            Err(CallError::Encode(e)) => Err(StorageError::Failed(e)),
        }
    }

    /// The frontend agent's byte stream, waiting a little for its session when it is
    /// (re)starting: streams into the staging area and the datastores (uploads, and the
    /// `local` transfers' frontend side).
    pub async fn stream(&self) -> Result<one_stream::Mux, StorageError> {
        let mut rx = self.mux.subscribe();
        match tokio::time::timeout(
            CONNECT_WAIT,
            rx.wait_for(|m| m.as_ref().is_some_and(|m| !m.is_closed())),
        )
        .await
        {
            Ok(Ok(m)) => Ok(m.clone().expect("waited for it")),
            _ => Err(StorageError::NotRunning(self.status())),
        }
    }

    /// Remembers an image's files to remove once the agent answers (its operation was
    /// interrupted, or it was deleted).
    pub fn cleanup_later(&self, t: Target) {
        self.cleanup_later_kind(t, false);
    }

    /// Like [`Self::cleanup_later`]; `leftovers_only`: the image stays, only what an
    /// interrupted operation wrote beside it goes.
    pub fn cleanup_later_kind(&self, t: Target, leftovers_only: bool) {
        if let Ok(mut c) = self.cleanups.lock()
            && !c.iter().any(|(x, _)| *x == t)
        {
            c.push((t, leftovers_only));
        }
    }

    /// Removes what [`Self::cleanup_later`] remembered; what fails stays for the next try.
    pub async fn run_cleanups(&self) {
        let todo: Vec<(Target, bool)> = self
            .cleanups
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        for (t, leftovers_only) in todo {
            let req = DsRequest::Rm {
                target: t.clone(),
                leftovers_only,
            };
            match self.call(req, Duration::from_secs(120)).await {
                Ok(_) => {
                    tracing::info!(source = %t.source, datastore = t.ds.id, leftovers_only, "image files removed")
                }
                // Not a file of its datastore (an admin's SOURCE elsewhere): never removed.
                Err(StorageError::Failed(e)) => {
                    tracing::warn!(source = %t.source, error = %e, "image files not removed")
                }
                Err(e) => {
                    tracing::warn!(source = %t.source, error = %e, "cannot remove image files yet");
                    self.cleanup_later_kind(t, leftovers_only);
                }
            }
        }
    }
}
