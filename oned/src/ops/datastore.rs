//! What the transfer driver of a datastore means for where its files are.

use one_proto::objects::datastore::Datastore;
use one_proto::state::DatastoreType;

/// TM_MADs whose datastore is one file system every host sees at the same path (NFS in a
/// real deployment): `shared` and `qcow2` (one driver in OpenNebula 7).
pub fn tm_shared(tm_mad: &str) -> bool {
    matches!(tm_mad.trim(), "shared" | "qcow2")
}

/// TM_MADs whose system datastore is each host's own disk (the VM's files are copied
/// to the host, and move with the VM): `local` (`ssh` before OpenNebula 7).
pub fn tm_local(tm_mad: &str) -> bool {
    matches!(tm_mad.trim(), "local" | "ssh")
}

/// TM_MADs accepted for new datastores: `shared`, `qcow2`, and `local` (`ssh` before
/// OpenNebula 7): each host's own disk for system datastores.
pub const TM_MADS: &[&str] = &["shared", "qcow2", "local", "ssh"];

/// Whether hosts must see this datastore as the frontend's file system.
pub fn is_shared(ds: &Datastore) -> bool {
    tm_shared(&ds.tm_mad)
}

/// Whether the frontend measures this datastore's capacity: image and file datastores, and
/// shared system datastores (a `local` system datastore is each host's own disk, measured
/// by each host).
pub fn measured_by_frontend(ds: &Datastore) -> bool {
    ds.ds_type != DatastoreType::System || is_shared(ds)
}

/// The token a shared datastore's token file holds for cloud `cloud_id`.
pub fn token(cloud_id: &str, ds_id: i64) -> String {
    format!("one-rs datastore {ds_id} cloud {cloud_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_tm_mads() {
        assert!(tm_shared("shared") && tm_shared("qcow2"));
        assert!(!tm_shared("local") && !tm_shared("ssh") && !tm_shared(""));
        assert_eq!(token("c1", 100), "one-rs datastore 100 cloud c1");
    }
}
