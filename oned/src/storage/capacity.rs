//! Datastore capacity (TOTAL_MB, FREE_MB, USED_MB), measured by the frontend agent once for
//! each image and file datastore and each shared system datastore (never by every host): a
//! full round every `monitoring.datastore_interval_seconds` (OpenNebula's
//! MONITORING_INTERVAL_DATASTORE), datastores not measured yet every few seconds. A `local`
//! system datastore is each host's own disk: its hosts report it (HOST_SHARE/DATASTORES).
//! The same rounds keep the token files of shared datastores, which hosts read back.
//!
//! Figures are stored only when one changed (by at least 1 MB).

use crate::daemon::Oned;
use crate::ops::datastore::{is_shared, measured_by_frontend};
use crate::store::{Store, StoreError};
use one_proto::ds::{DsDir, DsFigures, DsReply, DsRequest, DsToken};
use one_proto::objects::datastore::Datastore;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Makes every datastore's directory on the frontend (and the token files of shared ones),
/// so a host never has to: run on a new session of the frontend agent, before any other
/// request goes to it.
pub async fn prepare_all(oned: &Arc<Oned>, link: &crate::hostmgr::session::Link) {
    let list: Vec<(DsDir, bool)> = oned
        .store
        .read()
        .datastores
        .iter()
        .map(|d| {
            (
                DsDir {
                    id: d.header.id,
                    path: d.base_path.clone(),
                },
                is_shared(d),
            )
        })
        .collect();
    for (ds, shared) in list {
        let id = ds.id;
        let token = shared.then(|| oned.storage.token(id));
        let req = one_proto::agent::Request::Ds(DsRequest::Prepare { ds, token });
        match link.call(req, Duration::from_secs(60)).await {
            Ok(one_proto::agent::Reply::Ds(_)) => {
                tracing::debug!(datastore = id, "datastore directory ready")
            }
            Ok(other) => {
                tracing::warn!(datastore = id, answer = ?other, "cannot prepare datastore directory")
            }
            Err(e) => {
                tracing::warn!(datastore = id, error = %e, "cannot prepare datastore directory")
            }
        }
    }
}

/// One round: measures every datastore the frontend measures (`full`), or those never
/// measured; stores the figures that changed. Answers how many datastores changed.
pub async fn round(oned: &Oned, full: bool) -> Result<usize, String> {
    let (datastores, tokens): (Vec<DsDir>, Vec<DsToken>) = {
        let st = oned.store.read();
        let picked: Vec<&Arc<Datastore>> = st
            .datastores
            .iter()
            .filter(|d| measured_by_frontend(d) && (full || d.total_mb == 0))
            .collect();
        (
            picked
                .iter()
                .map(|d| DsDir {
                    id: d.header.id,
                    path: d.base_path.clone(),
                })
                .collect(),
            picked
                .iter()
                .filter(|d| is_shared(d))
                .map(|d| DsToken {
                    id: d.header.id,
                    token: oned.storage.token(d.header.id),
                })
                .collect(),
        )
    };
    if datastores.is_empty() {
        return Ok(0);
    }
    let req = DsRequest::Monitor { datastores, tokens };
    let figures = match oned.storage.call(req, Duration::from_secs(120)).await {
        Ok(DsReply::Monitor { figures }) => figures,
        Ok(other) => return Err(format!("unexpected answer {other:?}")),
        Err(e) => return Err(e.to_string()),
    };
    for f in figures.iter().filter(|f| !f.error.is_empty()) {
        tracing::warn!(datastore = f.id, error = %f.error, "cannot measure datastore");
    }
    store_figures(&oned.store, &figures)
        .await
        .map_err(|e| e.to_string())
}

/// Stores the figures that differ from the datastores' current ones.
pub async fn store_figures(store: &Store, figures: &[DsFigures]) -> Result<usize, StoreError> {
    let changed: Vec<&DsFigures> = {
        let st = store.read();
        figures
            .iter()
            .filter(|f| f.error.is_empty())
            .filter(|f| {
                st.datastores.get(f.id).is_some_and(|d| {
                    (d.total_mb, d.free_mb, d.used_mb) != (f.total_mb, f.free_mb, f.used_mb)
                })
            })
            .collect()
    };
    if changed.is_empty() {
        return Ok(0);
    }
    let mut tx = store.begin().await;
    let mut n = 0;
    for f in changed {
        let Some(mut ds) = tx.get::<Datastore>(f.id) else {
            continue;
        };
        (ds.total_mb, ds.free_mb, ds.used_mb) = (f.total_mb, f.free_mb, f.used_mb);
        tx.put(ds);
        n += 1;
        tracing::debug!(
            datastore = f.id,
            total_mb = f.total_mb,
            free_mb = f.free_mb,
            "datastore monitored"
        );
    }
    tx.commit().await?;
    Ok(n)
}

/// The capacity loop.
pub fn start(oned: &Arc<Oned>) {
    let o = oned.clone();
    tokio::spawn(async move { run(o).await });
}

fn secs(v: f64, default: f64) -> Duration {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs_f64(default))
}

async fn run(oned: Arc<Oned>) {
    let m = &oned.config.monitoring;
    let every = secs(m.datastore_interval_seconds, 300.0);
    // Datastores never measured yet (just created) are looked at more often.
    let check = secs(m.dummy_interval_seconds, 5.0).min(every);
    let mut next_full = Instant::now();
    loop {
        let full = Instant::now() >= next_full;
        if oned.storage.connected() {
            match round(&oned, full).await {
                Ok(n) => {
                    tracing::debug!(full, changed = n, "datastore monitoring round");
                    if full {
                        next_full = Instant::now() + every;
                    }
                }
                // A full round that failed is tried again at the next check.
                Err(e) => tracing::warn!(error = %e, "datastore monitoring round failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next_full.min(Instant::now() + check)) => {}
            _ = oned.storage.measure_now.notified() => {}
        }
    }
}
