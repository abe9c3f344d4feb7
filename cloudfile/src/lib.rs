//! cloudfile: a declarative cloud. A cloud file (YAML or TOML, one file or a directory of
//! them) says which clusters, hosts (by host groups, as blueprints), datastores, security
//! groups, networks, images, VM templates, VMs (by template and count), users, groups,
//! quotas and ACL rules a cloud has; this crate reads it strictly ([`load`]), compares it
//! with the cloud ([`Live`], [`plan`]), makes the cloud match ([`apply`]), writes a running
//! cloud back as a file ([`export`]) and keeps doing so from a Git repository
//! ([`reconcile`]). It is a client of oned's API only, through [`oca`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), cloudfile::Error> {
//! let client = oca::Client::from_env().map_err(cloudfile::Error::Read)?;
//! let opts = cloudfile::LoadOptions { applier: client.username().to_owned(), ..Default::default() };
//! let file = cloudfile::load(std::path::Path::new("cloud.yaml"), &opts)?;
//! let live = cloudfile::Live::read(&client).await.map_err(cloudfile::Error::Read)?;
//! let plan = cloudfile::plan(&file, &live, cloudfile::PlanOptions::default());
//! print!("{}", cloudfile::render::plan_text(&plan));
//! # Ok(())
//! # }
//! ```
//!
//! Objects a file manages carry the attribute [`model::MARKER`] with the cloud's name; an
//! object without it is never changed unless the file names it (then it is adopted), one
//! with another cloud's name never (the plan is refused).

pub mod apply;
mod decode;
pub mod diff;
pub mod error;
pub mod export;
pub mod live;
mod load;
pub mod model;
pub mod plan;
pub mod reconcile;
pub mod render;
pub mod source;

pub use apply::{ApplyOptions, ApplyReport, Event, Progress, Quiet, apply};
pub use error::{Diag, Diags, Error};
pub use live::Live;
pub use load::{LoadOptions, load, load_str};
pub use model::{CloudFile, Kind, ObjKey};
pub use plan::{Action, Change, Plan, PlanOptions, Summary, plan};
pub use source::Format;

#[cfg(test)]
mod tests;
