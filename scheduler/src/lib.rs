//! one-scheduler: places pending VMs on hosts.
//!
//! The library is pure (no I/O): [`expr`] parses and evaluates OpenNebula's requirement and
//! rank expressions, [`model`] reads the pool documents oned answers, [`policy`] turns the
//! scheduling policies into ranks, and [`place::schedule`] runs one pass, turning pending and
//! rescheduled VMs into deploy/migrate decisions plus a reason for each VM it could not
//! place. The `one-scheduler` binary adds the loop that reads pools from oned and dispatches
//! the decisions; `one-sched-bench` measures a pass. docs/scheduler.md tells the whole story.

pub mod capability;
pub mod config;
pub mod expr;
pub mod glob;
pub mod message;
pub mod model;
pub mod place;
pub mod policy;
pub mod synth;

pub use config::Config;
pub use place::{Action, Decision, Outcome, PlaceConfig, Unplaced, schedule};
