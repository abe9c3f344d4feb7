//! Image datastore operations: where a new image's bytes come from, and the operations an
//! image waits for in LOCKED (copy in, mkfs, clone, resize, snapshots), run by the frontend
//! agent; their end moves the image to READY (or back to USED / USED_PERS) or to ERROR with
//! the reason in its TEMPLATE/ERROR, as OpenNebula's image manager does.
//!
//! The operation is stored in the image (`Image::op`) with its LOCKED state, before it is
//! sent: if oned stops in the middle, the next start finds it, puts the image in ERROR
//! ("oned stopped during ...") and has the agent remove what it left. The same happens
//! when the agent dies with the operation in flight. The origin of a copy is never changed.

use super::StorageError;
use super::upload::Uploads;
use crate::auth::Session;
use crate::daemon::Oned;
use crate::ops::{self, quota};
use one_proto::ds::{DsReply, DsRequest, Origin, PathPolicy, SnapshotInfo, Target, UrlLimits};
use one_proto::objects::datastore::Datastore;
use one_proto::objects::image::{Image, ImageSnapshot, ImageSnapshots};
use one_proto::state::ImageState;
use std::sync::Arc;
use std::time::Duration;

/// Why a PATH cannot be registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginError {
    /// Not allowed (path rules, someone else's upload): OpenNebula's ALLOCATE error.
    Refused(String),
    /// Not usable (no such file, a scheme no driver reads): INTERNAL, as OpenNebula's
    /// "Cannot parse image SIZE" errors.
    Unusable(String),
}

/// The datastore's RESTRICTED_DIRS / SAFE_DIRS for `session`, and what nobody may read:
/// oned's data directory (its database, credentials and keys), the datastores and the
/// upload staging area.
pub fn policy_for(oned: &Oned, ds: &Datastore, session: &Session) -> PathPolicy {
    let list = |v: &str| -> Vec<String> { v.split_whitespace().map(str::to_string).collect() };
    let restricted = match ds.template.get("RESTRICTED_DIRS") {
        Some(v) => list(v),
        None => list(&oned.config.storage.restricted_dirs),
    };
    PathPolicy {
        restricted,
        safe: list(ds.template.get("SAFE_DIRS").unwrap_or("")),
        forbidden: vec![
            oned.data_dir.root.display().to_string(),
            oned.storage.root.display().to_string(),
            oned.storage.staging.display().to_string(),
        ],
        safe_only: !session.is_admin(),
    }
}

/// The download limits of `[storage]`.
pub fn url_limits(oned: &Oned) -> UrlLimits {
    let s = &oned.config.storage;
    UrlLimits {
        max_bytes: s.url_max_bytes,
        connect_timeout_ms: s.url_connect_timeout_seconds.saturating_mul(1000),
        stall_timeout_ms: s.url_stall_timeout_seconds.saturating_mul(1000),
    }
}

/// Where the bytes of an image registered with `path` come from. An upload token is taken
/// (it cannot be used twice): the caller gives it back if the image is not recorded.
pub fn origin_for(
    oned: &Oned,
    ds: &Datastore,
    session: &Session,
    path: &str,
) -> Result<(Origin, Option<(String, super::upload::Upload)>), OriginError> {
    let path = path.trim();
    if let Some(token) = Uploads::token_of(path) {
        let up = oned
            .storage
            .uploads
            .take(token, session.uid)
            .map_err(|e| match e {
                super::upload::TokenError::NotYours(_) => OriginError::Refused(e.to_string()),
                super::upload::TokenError::Unknown(_) => OriginError::Unusable(e.to_string()),
            })?;
        let origin = Origin::Staged {
            path: up.path.clone(),
        };
        return Ok((origin, Some((token.to_string(), up))));
    }
    let lower = path.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok((
            Origin::Url {
                url: path.to_string(),
                limits: url_limits(oned),
            },
            None,
        ));
    }
    if path.contains("://") && !lower.starts_with("file://") {
        return Err(OriginError::Unusable(format!(
            "Cannot determine size for {path}: only local paths, http(s) URLs and \
             {}TOKEN uploads can be registered",
            super::upload::SCHEME
        )));
    }
    Ok((
        Origin::Path {
            path: path.to_string(),
            policy: policy_for(oned, ds, session),
        },
        None,
    ))
}

/// MB an image of a datastore may still take: its free space, and LIMIT_MB (the most its
/// images may use, as OpenNebula's datastore capacity); None when it was never measured.
pub fn avail_mb(ds: &Datastore) -> Option<i64> {
    let free = (ds.total_mb > 0).then_some(ds.free_mb);
    let limit = ds
        .template
        .get("LIMIT_MB")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|l| *l > 0)
        .map(|l| l - ds.used_mb.max(0));
    match (free, limit) {
        (Some(f), Some(l)) => Some(f.min(l)),
        (f, l) => f.or(l),
    }
}

/// Whether `size_mb` does not fit (OpenNebula's "Not enough space in datastore").
pub fn lacks_space(ds: &Datastore, size_mb: i64) -> bool {
    avail_mb(ds).is_some_and(|a| size_mb > a)
}

/// The datastore and file of an image.
pub fn target_of(ds: &Datastore, source: &str) -> Target {
    Target {
        ds: one_proto::ds::DsDir {
            id: ds.header.id,
            path: ds.base_path.clone(),
        },
        source: source.to_string(),
    }
}

/// What an operation's target is (for leftovers).
fn target_in(req: &DsRequest) -> Option<(&Target, bool)> {
    match req {
        DsRequest::CopyIn { to, .. } | DsRequest::Mkfs { to, .. } | DsRequest::Clone { to, .. } => {
            Some((to, false))
        }
        DsRequest::Resize { target, .. } | DsRequest::Snapshot { target, .. } => {
            Some((target, true))
        }
        _ => None,
    }
}

/// An operation's name in messages.
pub fn op_name(req: &DsRequest) -> &'static str {
    match req {
        DsRequest::CopyIn { .. } => "copy",
        DsRequest::Mkfs { .. } => "creation",
        DsRequest::Clone { .. } => "clone",
        DsRequest::Resize { .. } => "resize",
        DsRequest::Snapshot { .. } => "snapshot operation",
        _ => "operation",
    }
}

/// The state an image returns to when its operation ends well: LOCKED → READY, the
/// LOCKED_USED states → their USED ones.
fn unlocked(s: ImageState) -> ImageState {
    match s {
        ImageState::LockedUsed => ImageState::Used,
        ImageState::LockedUsedPers => ImageState::UsedPers,
        _ => ImageState::Ready,
    }
}

/// Rebuilds an image's SNAPSHOTS from the internal snapshots its file holds: a snapshot
/// already known keeps its id, a new one gets the next.
pub fn merge_snapshots(
    old: &ImageSnapshots,
    found: &[SnapshotInfo],
    active: Option<&str>,
) -> ImageSnapshots {
    let mut next = old.next_snapshot;
    let list = found
        .iter()
        .map(|f| {
            let known = old
                .list
                .iter()
                .find(|s| s.name.as_deref() == Some(f.name.as_str()));
            let id = known.map(|s| s.id).unwrap_or_else(|| {
                let id = next;
                next += 1;
                id
            });
            ImageSnapshot {
                id,
                name: Some(f.name.clone()),
                date: f.date,
                parent: -1,
                size_mb: f.size_mb as i64,
                active: active == Some(f.name.as_str())
                    || (active.is_none() && known.is_some_and(|s| s.active)),
                children: String::new(),
            }
        })
        .collect();
    ImageSnapshots {
        // Internal snapshots are independent of one another: any can go.
        allow_orphans: if found.is_empty() {
            "NO".into()
        } else {
            "YES".into()
        },
        current_base: -1,
        next_snapshot: next,
        list,
    }
}

/// Runs image `id`'s operation on the frontend agent and records its end.
pub fn run(oned: &Arc<Oned>, id: i64) {
    let o = oned.clone();
    tokio::spawn(async move {
        let Some(req) = o.store.get::<Image>(id).and_then(|i| i.op.clone()) else {
            return;
        };
        tracing::info!(
            image = id,
            op = op_name(&req),
            "image datastore operation started"
        );
        let timeout = Duration::from_secs(o.config.storage.operation_timeout_seconds);
        let res = o.storage.call(req.clone(), timeout).await;
        if let Err(e) = finish(&o, id, &req, res).await {
            tracing::error!(image = id, error = %e, "cannot record the end of the image's operation");
        }
    });
}

/// Records the end of image `id`'s operation `req` (nothing when the image is gone or waits
/// for another operation now).
pub async fn finish(
    oned: &Arc<Oned>,
    id: i64,
    req: &DsRequest,
    res: Result<DsReply, StorageError>,
) -> Result<(), crate::store::StoreError> {
    let leftovers = matches!(
        res,
        Err(StorageError::Lost(_) | StorageError::Timeout(_) | StorageError::NotRunning(_))
    );
    let mut tx = oned.store.begin().await;
    let Some(mut img) = tx.get::<Image>(id) else {
        // Deleted meanwhile (a forced delete): its files go.
        if let Some((t, _)) = target_in(req) {
            oned.storage.cleanup_later(t.clone());
            spawn_cleanups(oned);
        }
        return Ok(());
    };
    if img.op.as_ref() != Some(req) {
        return Ok(());
    }
    img.op = None;
    let waiting = img.vms.clone();
    let ok = match res {
        Ok(DsReply::Image {
            format,
            size_mb,
            snapshots,
        }) => {
            let size = size_mb as i64;
            if size != img.size_mb && !matches!(req, DsRequest::Resize { .. }) {
                // Charged at registration with the estimate: the quota follows the real
                // size, so what is released at delete is what was charged.
                let (u, g) = (img.header.uid, img.header.gid);
                let delta = quota::QuotaUsage {
                    datastore: vec![(img.datastore_id, 0, size - img.size_mb)],
                    ..quota::QuotaUsage::default()
                };
                if size > img.size_mb {
                    if let Err(e) = quota::charge(&mut tx, "one.image.allocate", u, g, &delta) {
                        fail(&mut img, &format!("the image is {size} MB: {}", e.message));
                        tx.put(img);
                        ops::vm::image_lock_done(&mut tx, id, &waiting, false);
                        tx.commit().await?;
                        return Ok(());
                    }
                } else {
                    quota::release(&mut tx, u, g, &delta.negated());
                }
                img.size_mb = size;
            }
            if !matches!(req, DsRequest::Resize { .. }) {
                img.format = format;
            } else {
                img.size_mb = size;
            }
            let active = match req {
                DsRequest::Snapshot {
                    action: one_proto::ds::SnapshotAction::Revert,
                    name,
                    ..
                } => Some(name.as_str()),
                _ => None,
            };
            img.snapshots = merge_snapshots(&img.snapshots, &snapshots, active);
            img.template.remove("ERROR");
            img.modtime = crate::auth::now_secs();
            let next = unlocked(img.state);
            img.set_state(next);
            true
        }
        Ok(other) => {
            fail(
                &mut img,
                &format!("unexpected answer of the frontend agent: {other:?}"),
            );
            false
        }
        Err(e) => {
            fail(
                &mut img,
                &format!("Error in the image's {}: {e}", op_name(req)),
            );
            if let DsRequest::Resize { size_mb, .. } = req {
                // The resize was charged when asked for: given back, the size stays.
                let delta = quota::QuotaUsage {
                    datastore: vec![(img.datastore_id, 0, *size_mb as i64 - img.size_mb)],
                    ..quota::QuotaUsage::default()
                };
                quota::release(&mut tx, img.header.uid, img.header.gid, &delta);
            }
            false
        }
    };
    if let DsRequest::Clone { .. } = req
        && img.cloning_id >= 0
    {
        ops::image::release_cloning(&mut tx, img.cloning_id, id);
        img.cloning_id = -1;
    }
    let state = img.state;
    tx.put(img);
    ops::vm::image_lock_done(&mut tx, id, &waiting, ok);
    tx.commit().await?;
    tracing::info!(image = id, op = op_name(req), ok, state = %state, "image datastore operation ended");
    if leftovers && let Some((t, only)) = target_in(req) {
        // The agent may have died before it took back what it did.
        oned.storage.cleanup_later_kind(t.clone(), only);
        spawn_cleanups(oned);
    }
    Ok(())
}

/// ERROR with the reason, as OpenNebula's image manager.
fn fail(img: &mut Image, reason: &str) {
    tracing::warn!(image = img.header.id, reason, "image in error");
    img.template.set("ERROR", reason.to_string());
    img.set_state(ImageState::Error);
}

fn spawn_cleanups(oned: &Arc<Oned>) {
    let o = oned.clone();
    tokio::spawn(async move { o.storage.run_cleanups().await });
}

/// At start: images whose operation was interrupted by a stop of oned go to ERROR, and
/// what the operation left is removed once the frontend agent is up.
pub async fn recover(oned: &Arc<Oned>) -> Result<usize, crate::store::StoreError> {
    let ids: Vec<i64> = oned
        .store
        .read()
        .images
        .iter()
        .filter(|i| i.op.is_some())
        .map(|i| i.header.id)
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let mut tx = oned.store.begin().await;
    for &id in &ids {
        let Some(mut img) = tx.get::<Image>(id) else {
            continue;
        };
        let Some(req) = img.op.take() else { continue };
        fail(
            &mut img,
            &format!(
                "Error in the image's {}: oned stopped during it; what it wrote was removed",
                op_name(&req)
            ),
        );
        if let DsRequest::Clone { .. } = req
            && img.cloning_id >= 0
        {
            ops::image::release_cloning(&mut tx, img.cloning_id, id);
            img.cloning_id = -1;
        }
        if let DsRequest::Resize { size_mb, .. } = req {
            let delta = quota::QuotaUsage {
                datastore: vec![(img.datastore_id, 0, size_mb as i64 - img.size_mb)],
                ..quota::QuotaUsage::default()
            };
            quota::release(&mut tx, img.header.uid, img.header.gid, &delta);
        }
        if let Some((t, only)) = target_in(&req) {
            oned.storage.cleanup_later_kind(t.clone(), only);
        }
        let waiting = img.vms.clone();
        tx.put(img);
        ops::vm::image_lock_done(&mut tx, id, &waiting, false);
    }
    tx.commit().await?;
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_keep_their_ids() {
        let f = |n: &str| SnapshotInfo {
            name: n.into(),
            date: 5,
            size_mb: 10,
        };
        let first = merge_snapshots(&ImageSnapshots::default(), &[f("a"), f("b")], None);
        assert_eq!(
            first
                .list
                .iter()
                .map(|s| (s.id, s.name.clone().unwrap()))
                .collect::<Vec<_>>(),
            vec![(0, "a".into()), (1, "b".into())]
        );
        assert_eq!(first.next_snapshot, 2);
        assert_eq!(first.allow_orphans, "YES");
        let after = merge_snapshots(&first, &[f("b"), f("c")], Some("b"));
        assert_eq!(
            after
                .list
                .iter()
                .map(|s| (s.id, s.active))
                .collect::<Vec<_>>(),
            vec![(1, true), (2, false)]
        );
        assert_eq!(merge_snapshots(&after, &[], None).allow_orphans, "NO");
    }

    #[test]
    fn space_counts_free_space_and_limit_mb() {
        let mut ds = Datastore {
            header: one_proto::objects::Header::oneadmin(1, "default"),
            ds_mad: "fs".into(),
            tm_mad: "shared".into(),
            base_path: "/d/1".into(),
            ds_type: one_proto::state::DatastoreType::Image,
            disk_type: one_proto::state::DiskType::File,
            state: one_proto::state::DatastoreState::Ready,
            clusters: vec![0],
            total_mb: 0,
            free_mb: 0,
            used_mb: 0,
            images: vec![],
            template: one_proto::template::Template::new(),
        };
        assert_eq!(avail_mb(&ds), None, "never measured: no limit known");
        ds.total_mb = 1000;
        ds.free_mb = 600;
        ds.used_mb = 400;
        assert_eq!(avail_mb(&ds), Some(600));
        ds.template.set("LIMIT_MB", "500");
        assert_eq!(avail_mb(&ds), Some(100));
        assert!(lacks_space(&ds, 101) && !lacks_space(&ds, 100));
    }
}
