//! Datastore operations (DS_MAD `fs`) that oned asks of its frontend agent: the wire types of
//! [`crate::agent::Request::Ds`] and [`crate::agent::Reply::Ds`] (docs/storage.md).
//!
//! oned decides (which file, which datastore, which limits); the frontend agent acts on the
//! files (`one_drivers::ds`). Every path here is absolute, as the frontend names it.

use serde::{Deserialize, Serialize};

/// A datastore's directory on the frontend (`BASE_PATH`, `<datastores root>/<id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsDir {
    pub id: i64,
    pub path: String,
}

/// Which local paths an image may be registered from (the datastore's RESTRICTED_DIRS and
/// SAFE_DIRS, and what nobody may read).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathPolicy {
    /// Refused unless also under `safe`.
    pub restricted: Vec<String>,
    /// Allowed even under `restricted`; for `safe_only` callers, the only places allowed.
    pub safe: Vec<String>,
    /// Refused for everyone, `safe` or not (oned's data directory, its keys, the datastores).
    pub forbidden: Vec<String>,
    /// The caller is not in group oneadmin: only paths under `safe` are allowed.
    pub safe_only: bool,
}

/// Limits of a download from an http(s) URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlLimits {
    /// A body larger than this is refused (and what was written removed).
    pub max_bytes: u64,
    /// Connecting and receiving the headers.
    pub connect_timeout_ms: u64,
    /// No byte received for this long: the download has stalled.
    pub stall_timeout_ms: u64,
}

/// Where the bytes of a new image come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Origin {
    /// A file on the frontend (PATH), allowed by `policy`; never changed.
    Path { path: String, policy: PathPolicy },
    /// An http(s) URL; redirects to other schemes are refused.
    Url { url: String, limits: UrlLimits },
    /// A file of the upload staging area (`POST /upload`): moved into the datastore.
    Staged { path: String },
}

/// What an image operation is given: its datastore and the image file in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub ds: DsDir,
    /// The image file (SOURCE), in `ds.path`.
    pub source: String,
}

/// What oned asks of the frontend agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DsRequest {
    /// Size (and format, when it can be told without copying) of what `origin` names, after
    /// the path rules: oned checks space and quotas with it before registering. No change.
    Stat { origin: Origin },
    /// Copies an image in (OpenNebula's `cp`): `origin` into `to.source`, at most
    /// `max_bytes`. `disk`: an OS, CDROM or DATABLOCK image (format and size read by
    /// `qemu-img info`, a qcow2 backing file outside the datastore refused); otherwise a
    /// file of a files datastore, taken as it is.
    CopyIn {
        origin: Origin,
        to: Target,
        max_bytes: u64,
        disk: bool,
        /// fsync before the answer (`storage.sync_images`).
        #[serde(default)]
        durable: bool,
    },
    /// An empty image of `size_mb` (OpenNebula's `mkfs`), `raw` or `qcow2`, with a file
    /// system `fs` ("" for none).
    Mkfs {
        to: Target,
        size_mb: u64,
        format: String,
        fs: String,
    },
    /// A copy of image file `from` (another image's SOURCE) as `to.source`.
    Clone {
        from: String,
        to: Target,
        #[serde(default)]
        durable: bool,
    },
    /// Removes an image's file, and what an interrupted operation left of it
    /// (`SOURCE.part`, `SOURCE.tmp`); with `leftovers_only`, only those (an interrupted
    /// resize or snapshot operation on an image that stays).
    Rm {
        target: Target,
        #[serde(default)]
        leftovers_only: bool,
    },
    /// Grows an image to `size_mb`.
    Resize {
        target: Target,
        format: String,
        size_mb: u64,
    },
    /// An operation on the internal snapshot `name` of a qcow2 image.
    Snapshot {
        target: Target,
        action: SnapshotAction,
        name: String,
    },
    /// Capacity of each datastore; the token files of shared ones (written when missing or
    /// different).
    Monitor {
        datastores: Vec<DsDir>,
        tokens: Vec<DsToken>,
    },
    /// Makes a new datastore's directory (and its token file when shared).
    Prepare { ds: DsDir, token: Option<String> },
    /// disk-saveas of a VM stopped or undeployed off a host-local system datastore
    /// (OpenNebula's CPDS): its files are in the frontend's copy `stash`
    /// (`<system datastore>/.stash/<vm_id>`); disk `disk_id`, whose files are in `format`,
    /// or its snapshot `snapshot`, becomes the new image `to.source`.
    SaveStashed {
        stash: String,
        vm_id: i64,
        disk_id: u32,
        snapshot: Option<u32>,
        format: String,
        to: Target,
    },
    /// Empties the upload staging area `dir` (made when missing) but for the files of
    /// `keep` (uploads still waiting for their image).
    CleanStaging { dir: String, keep: Vec<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotAction {
    /// The image becomes the snapshot's content again (the snapshot stays).
    Revert,
    Delete,
    /// The image becomes the snapshot's content and keeps no snapshot.
    Flatten,
}

/// An internal snapshot of a qcow2 image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// qemu's name of the snapshot (its id when it has none).
    pub name: String,
    /// Seconds since the Unix epoch.
    pub date: i64,
    pub size_mb: u64,
}

/// The token a shared datastore's [`TOKEN_FILE`] holds: every host reads it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsToken {
    pub id: i64,
    pub token: String,
}

/// A datastore's capacity in MB.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsFigures {
    pub id: i64,
    pub total_mb: i64,
    pub free_mb: i64,
    pub used_mb: i64,
    /// Why the datastore could not be measured ("" when it was).
    #[serde(default)]
    pub error: String,
}

/// The frontend agent's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DsReply {
    /// To [`DsRequest::Stat`]: `size_mb` rounded up (0 when a URL does not say); `format`
    /// when known ("" otherwise).
    Stat {
        size_mb: u64,
        format: String,
    },
    /// An image written or changed: its format, size (virtual size of a disk image) and
    /// internal snapshots.
    Image {
        format: String,
        size_mb: u64,
        snapshots: Vec<SnapshotInfo>,
    },
    Done {
        info: String,
    },
    Monitor {
        figures: Vec<DsFigures>,
    },
}

/// The file every host reads back at the root of a shared datastore: it proves the host
/// sees the frontend's file system there.
pub const TOKEN_FILE: &str = ".one-rs-datastore";

/// The file systems an empty image can be made with (FS of `one.image.allocate`).
pub const FILE_SYSTEMS: &[&str] = &["ext2", "ext3", "ext4", "xfs", "btrfs", "vfat"];

/// Megabytes of `bytes`, rounded up (OpenNebula's image SIZE).
pub fn mb_ceil(bytes: u64) -> u64 {
    bytes.div_ceil(1024 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip() {
        let reqs = vec![
            DsRequest::Stat {
                origin: Origin::Path {
                    path: "/var/tmp/a.qcow2".into(),
                    policy: PathPolicy {
                        restricted: vec!["/etc".into()],
                        safe: vec![],
                        forbidden: vec!["/var/lib/one".into()],
                        safe_only: true,
                    },
                },
            },
            DsRequest::CopyIn {
                origin: Origin::Url {
                    url: "https://example.org/x.img".into(),
                    limits: UrlLimits {
                        max_bytes: 1 << 30,
                        connect_timeout_ms: 1000,
                        stall_timeout_ms: 2000,
                    },
                },
                to: Target {
                    ds: DsDir {
                        id: 1,
                        path: "/d/1".into(),
                    },
                    source: "/d/1/abc".into(),
                },
                max_bytes: 5,
                disk: true,
                durable: false,
            },
            DsRequest::Snapshot {
                target: Target {
                    ds: DsDir {
                        id: 1,
                        path: "/d/1".into(),
                    },
                    source: "/d/1/abc".into(),
                },
                action: SnapshotAction::Flatten,
                name: "s1".into(),
            },
            DsRequest::SaveStashed {
                stash: "/d/0/.stash/7".into(),
                vm_id: 7,
                disk_id: 0,
                snapshot: Some(1),
                format: "qcow2".into(),
                to: Target {
                    ds: DsDir {
                        id: 1,
                        path: "/d/1".into(),
                    },
                    source: "/d/1/abc".into(),
                },
            },
        ];
        for r in reqs {
            let j = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<DsRequest>(&j).unwrap(), r, "{j}");
        }
        let rep = DsReply::Monitor {
            figures: vec![DsFigures {
                id: 100,
                total_mb: 10,
                free_mb: 5,
                used_mb: 5,
                error: String::new(),
            }],
        };
        let j = serde_json::to_string(&rep).unwrap();
        assert_eq!(serde_json::from_str::<DsReply>(&j).unwrap(), rep);
        assert_eq!(mb_ceil(0), 0);
        assert_eq!(mb_ceil(1), 1);
        assert_eq!(mb_ceil(1024 * 1024), 1);
        assert_eq!(mb_ceil(1024 * 1024 + 1), 2);
    }
}
