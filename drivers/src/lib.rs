//! Host-side operations, called by `one-node-agent` (on every hypervisor host, and in the
//! frontend agent that oned runs on its own machine for image and file datastores). oned never
//! links this crate: oned decides, an agent acts.
//!
//! | module | what |
//! |---|---|
//! | [`ds`] | datastore (`fs`) operations on image and file datastores: copy in, mkfs, clone, delete, stat, capacity, image snapshots |
//! | [`tm`] | transfer operations between an image datastore and a VM's directory on a system datastore (`shared`, `qcow2`, `local`), disk snapshots, save-as |
//! | [`context`] | the CONTEXT CD (`context.sh` in an ISO 9660 image) |
//! | [`vnm`] | virtual network set-up on a host (bridge, 802.1Q, VXLAN) and security groups (nftables) |
//!
//! Every operation is a typed function with its inputs, its effect, its undo and errors a
//! user can act on. Operations that make several changes collect an undo for each in a
//! [`Revert`] and unwind them in reverse if they do not reach the end, so a failure in the
//! middle leaves the host as it was. Operations are idempotent: the lifecycle re-runs a step
//! after a crash, so doing one twice must succeed and change nothing the second time. Each
//! change is announced as a [`fault::step`], which the unit tests fail in turn.

pub mod cmd;
pub mod context;
pub mod ds;
pub mod error;
pub mod fault;
pub mod paths;
pub mod revert;
pub mod tm;
pub mod vnm;

pub use error::{Error, Result};
pub use revert::Revert;
