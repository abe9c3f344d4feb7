//! Object operations: the changes to objects that both the API handlers (`api/`) and the
//! background work (`lcm/`, the image and host managers) make, each inside the caller's
//! [`Txn`](crate::store::Txn). This layer sits below both: it uses the store and the proto
//! objects, never `api/` (which holds authorization and the calls' messages) nor `lcm/`.
//!
//! | module | what |
//! |---|---|
//! | [`quota`] | charging and releasing user and group quotas |
//! | [`image`] | image holds by VM disks and clones, their release, the image's DATASTORE quota |
//! | [`lease`] | giving a NIC's lease back to its network (and its NETWORK quota) |
//! | [`vm`] | what a VM charges to its quotas; VMs waiting for an image copy |
//! | [`context`] | context variables read from the pools; the ETHn_* network context after a NIC hotplug |

pub mod context;
pub mod image;
pub mod lease;
pub mod quota;
pub mod vm;
