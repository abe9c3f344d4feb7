//! Streams a host's agent opens to oned (TM_MAD `local`, docs/storage.md): oned checks
//! what the host asks for and relays the stream to the frontend agent, which does the file
//! work (and checks the path again against its own directories). oned itself opens no file.
//!
//! A host reaches only the files of the VMs it holds (the VMs whose last stay is on it, or
//! the stay before: the source of a migration), inside the datastores' directories:
//!
//! | request | what |
//! |---|---|
//! | read | a DISK's SOURCE of such a VM; a file of its stash (`<system datastore>/.stash/<vm>`) |
//! | list, remove, link | its stash |
//! | put (a file, replacing) | its stash; the SOURCE of its persistent DISKs (saved back at terminate); the new image of a disk-saveas it runs (HOTPLUG_SAVE_AS_SOURCE) |
//!
//! A host cannot reach another VM's disks or images, oned's data directory, its keys or the
//! staging area this way.

use crate::daemon::Oned;
use crate::store::State;
use one_proto::objects::vm::Vm;
use one_proto::state::{DatastoreType, VmState};
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
    if let Err(why) = allowed(&oned, host_id, &req) {
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

/// The files of the VMs host `host_id` holds that it may reach (see the module's table).
#[derive(Debug, Default, PartialEq)]
struct Reach {
    stashes: Vec<PathBuf>,
    readable: Vec<PathBuf>,
    writable: Vec<PathBuf>,
}

impl Reach {
    fn of(st: &State, host_id: i64) -> Reach {
        let ds_path = |id: i64| st.datastores.get(id).map(|d| d.base_path.clone());
        let mut r = Reach::default();
        for vm in st.vms.iter().filter(|v| v.state != VmState::Done) {
            r.add(vm, host_id, &ds_path);
        }
        r
    }

    fn add(&mut self, vm: &Vm, host_id: i64, ds_path: &dyn Fn(i64) -> Option<String>) {
        let stays = &vm.history[vm.history.len().saturating_sub(2)..];
        if !stays.iter().any(|h| h.hid == host_id) {
            return;
        }
        for h in stays {
            if let Some(p) = ds_path(h.ds_id).filter(|p| !p.is_empty()) {
                self.stashes.push(stash_path(&p, vm.header.id));
            }
        }
        for d in vm.template.vectors("DISK") {
            let attr = |k: &str| d.get(k).map(str::trim).filter(|v| !v.is_empty());
            if let Some(src) = attr("SOURCE") {
                self.readable.push(PathBuf::from(src));
                let yes = |k: &str| attr(k).is_some_and(|v| v.eq_ignore_ascii_case("YES"));
                if yes("PERSISTENT") || yes("SAVE") {
                    self.writable.push(PathBuf::from(src));
                }
            }
            if let Some(saved) = attr("HOTPLUG_SAVE_AS_SOURCE") {
                self.writable.push(PathBuf::from(saved));
            }
        }
    }

    fn in_stash(&self, p: &Path) -> bool {
        self.stashes.iter().any(|s| p == s || under(p, s))
    }

    /// Whether the host may open `req` (a path already known to be plain and inside a
    /// datastore).
    fn admits(&self, req: &Open) -> bool {
        match req {
            Open::Read { path, .. } => {
                let p = Path::new(path);
                self.in_stash(p) || self.readable.iter().any(|r| r == p)
            }
            Open::Put { path, .. } => {
                let p = Path::new(path);
                self.in_stash(p) || self.writable.iter().any(|w| w == p)
            }
            Open::List { path } | Open::Remove { path } | Open::Link { path, .. } => {
                self.in_stash(Path::new(path))
            }
            Open::Write { .. } | Open::Tcp { .. } => false,
        }
    }
}

/// Why host `host_id` may not open `req`, if it may not.
fn allowed(oned: &Oned, host_id: i64, req: &Open) -> Result<(), String> {
    let st = oned.store.read();
    let reach = Reach::of(&st, host_id);
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
    if !ok {
        return Err(format!(
            "{}: not a file of a datastore this host may reach",
            describe(req)
        ));
    }
    if !reach.admits(req) {
        return Err(format!(
            "{}: not a file of a VM on host {host_id}",
            describe(req)
        ));
    }
    Ok(())
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

    fn stay(hid: i64, ds_id: i64) -> one_proto::objects::vm::History {
        one_proto::objects::vm::History {
            hid,
            ds_id,
            ..Default::default()
        }
    }

    #[test]
    fn a_host_reaches_only_the_files_of_the_vms_it_holds() {
        let ds = |id: i64| Some(format!("/d/{id}"));
        let mut vm = crate::lcm::tests_support::vm(7);
        vm.template = one_proto::template::Template::parse(
            "DISK=[DISK_ID=0, SOURCE=\"/d/1/base\", PERSISTENT=NO]\n\
             DISK=[DISK_ID=1, SOURCE=\"/d/1/pers\", PERSISTENT=YES, HOTPLUG_SAVE_AS_SOURCE=\"/d/1/new\"]",
        )
        .unwrap();
        // A cold migration from host 3 (datastore 0) to host 4 (datastore 100).
        vm.history = vec![stay(2, 0), stay(3, 0), stay(4, 100)];
        let read = |p: &str| Open::Read {
            path: p.into(),
            offset: 0,
        };
        let put = |p: &str| Open::Put {
            path: p.into(),
            max_bytes: 1,
        };
        let list = |p: &str| Open::List { path: p.into() };
        let remove = |p: &str| Open::Remove { path: p.into() };
        for host in [3, 4] {
            let mut r = Reach::default();
            r.add(&vm, host, &ds);
            for ok in [
                read("/d/1/base"),
                read("/d/1/pers"),
                read("/d/0/.stash/7/disk.0"),
                list("/d/100/.stash/7"),
                remove("/d/0/.stash/7"),
                put("/d/0/.stash/7/disk.0.snap/0"),
                put("/d/1/pers"),
                put("/d/1/new"),
            ] {
                assert!(r.admits(&ok), "host {host}: {ok:?}");
            }
            for no in [
                put("/d/1/base"),
                read("/d/1/other"),
                read("/d/0/.stash/8/disk.0"),
                list("/d/0/.stash"),
                remove("/d/0/7"),
                put("/d/0/.stash/70/disk.0"),
            ] {
                assert!(!r.admits(&no), "host {host}: {no:?}");
            }
        }
        // The host of an older stay reaches nothing of it.
        let mut r = Reach::default();
        r.add(&vm, 2, &ds);
        assert_eq!(r, Reach::default());
        assert!(!r.admits(&read("/d/1/base")));
    }
}
