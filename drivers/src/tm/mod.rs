//! Transfer operations (TM_MAD `shared`, `qcow2`, `local` a.k.a. `ssh`) between image
//! datastores and a VM's directory on a system datastore. Filled by the storage work
//! (issue 9); the node agent's `libvirt/tm.rs` moves here.
