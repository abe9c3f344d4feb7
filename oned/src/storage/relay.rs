//! Streams a host's agent opens to oned (TM_MAD `local`, docs/storage.md): oned checks
//! what the host asks for and relays the stream to the frontend agent, which does the file
//! work (and checks the path again against its own directories). oned itself opens no file.
//!
//! What a host may ask for, inside the datastores' directories only:
//!
//! | request | where |
//! |---|---|
//! | read, list | any datastore (an image's SOURCE, a stopped VM's files) |
//! | put (a file, replacing) | any datastore (a persistent disk back to its image, a saved disk, a stopped VM's file) |
//! | remove, link | a system datastore's stash (`<datastore>/.stash/<vm>`) |
//!
//! A host cannot reach oned's data directory, its keys or the staging area this way.

use crate::daemon::Oned;
use one_proto::state::DatastoreType;
use one_proto::stream::Open;
use one_stream::{Incoming, IncomingStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Where a system datastore keeps the files of VMs stopped or undeployed off a host-local
/// datastore (and of a VM between two hosts in a cold migration): `<ds>/.stash/<vm>`, a
/// name no VM directory has, so a frontend that is also a host never confuses the two.
pub const STASH_DIR: &str = ".stash";

/// The stash of VM `vm_id` in the system datastore whose directory is `ds_path`.
pub fn stash_path(ds_path: &str, vm_id: i64) -> PathBuf {
    Path::new(ds_path).join(STASH_DIR).join(vm_id.to_string())
}

/// Serves the streams host `host_id`'s agent opens, until its connection ends.
pub async fn serve(oned: Arc<Oned>, host_id: i64, mut incoming: Incoming) {
    while let Some(s) = incoming.recv().await {
        let o = oned.clone();
        tokio::spawn(async move { relay(o, host_id, s).await });
    }
}

/// Refuses every stream (an agent that is no host: the frontend agent).
pub async fn refuse_all(mut incoming: Incoming, why: &'static str) {
    while let Some(s) = incoming.recv().await {
        s.reject(why);
    }
}

async fn relay(oned: Arc<Oned>, host_id: i64, s: IncomingStream) {
    let req = s.request.clone();
    let what = describe(&req);
    if let Err(why) = allowed(&oned, &req) {
        tracing::warn!(host = host_id, stream = %what, reason = %why, "host stream refused");
        s.reject(&why);
        return;
    }
    let fe = match oned.storage.stream().await {
        Ok(m) => m,
        Err(e) => {
            let why = format!("the frontend agent is not available: {e}");
            tracing::warn!(host = host_id, stream = %what, reason = %why, "host stream refused");
            s.reject(&why);
            return;
        }
    };
    let (to_fe, acc) = match fe.open(&req).await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(host = host_id, stream = %what, reason = %e, "the frontend agent refused a host stream");
            s.reject(&e.to_string());
            return;
        }
    };
    let from_host = s.accept(&acc);
    match one_stream::splice(from_host, to_fe).await {
        Ok((up, down)) => {
            tracing::debug!(host = host_id, stream = %what, up, down, "host stream relayed")
        }
        Err(e) => {
            tracing::warn!(host = host_id, stream = %what, error = %e, "host stream failed")
        }
    }
}

fn describe(req: &Open) -> String {
    match req {
        Open::Read { path, .. } => format!("read {path}"),
        Open::Write { path, .. } => format!("write {path}"),
        Open::Put { path, .. } => format!("put {path}"),
        Open::List { path } => format!("list {path}"),
        Open::Remove { path } => format!("remove {path}"),
        Open::Link { path, target } => format!("link {path} -> {target}"),
        Open::Tcp { port } => format!("tcp {port}"),
    }
}

/// Whether `p` is a plain absolute path strictly inside `dir`.
fn under(p: &Path, dir: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && p != dir
        && p.starts_with(dir)
}

/// Why a host may not open `req`, if it may not.
fn allowed(oned: &Oned, req: &Open) -> Result<(), String> {
    let st = oned.store.read();
    let dirs: Vec<(PathBuf, bool)> = st
        .datastores
        .iter()
        .filter(|d| !d.base_path.is_empty())
        .map(|d| {
            (
                PathBuf::from(&d.base_path),
                d.ds_type == DatastoreType::System,
            )
        })
        .collect();
    drop(st);
    let in_any = |p: &str| dirs.iter().any(|(d, _)| under(Path::new(p), d));
    let in_stash = |p: &str| {
        dirs.iter()
            .filter(|(_, system)| *system)
            .any(|(d, _)| under(Path::new(p), &d.join(STASH_DIR)))
    };
    let ok = match req {
        Open::Read { path, .. } | Open::List { path } | Open::Put { path, .. } => in_any(path),
        Open::Remove { path } | Open::Link { path, .. } => in_stash(path),
        Open::Write { .. } | Open::Tcp { .. } => {
            return Err(format!(
                "{}: oned relays a host's reads and writes of datastore files only",
                describe(req)
            ));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{}: not a file of a datastore this host may reach",
            describe(req)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_plain_and_strictly_inside() {
        let d = Path::new("/var/lib/one/datastores/0");
        assert!(under(
            Path::new("/var/lib/one/datastores/0/.stash/7/disk.0"),
            d
        ));
        assert!(!under(d, d));
        assert!(!under(
            Path::new("/var/lib/one/datastores/0/../../one.db"),
            d
        ));
        assert!(!under(Path::new("/var/lib/one/datastores/00/x"), d));
        assert!(!under(Path::new("relative/x"), d));
        assert_eq!(stash_path("/d/100", 7), PathBuf::from("/d/100/.stash/7"));
    }
}
