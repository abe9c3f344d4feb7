//! The console's sections, one module each, and their routes. Every route here is behind
//! the session middleware (web::require_session): anonymous visitors go to the login page
//! and every POST carries its CSRF token.

use crate::App;
use crate::web::Failure;
use axum::Router;
use axum::routing::{get, post};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

pub mod dashboard;
pub mod vm;
pub mod vms;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(dashboard::show))
        .route("/dashboard/vms", get(dashboard::vm_counts))
        .route("/vms", get(vms::list))
        .route("/vms/rows", get(vms::rows_fragment))
        .route("/vms/{id}", get(vm::show))
        .route("/vms/{id}/head", get(vm::head_fragment))
        .route("/vms/{id}/action", post(vm::action))
        .route("/vms/{id}/{op}", post(vm::op))
        .route("/vms/{id}/disksnap/{disk}", post(vm::disk_snapshot_create))
        .route(
            "/vms/{id}/disksnap/{disk}/{snap}/{op}",
            post(vm::disk_snapshot_op),
        )
        .route("/vms/{id}/{kind}/{n}/{op}", post(vm::sub_op))
}

/// A short hash of drawn HTML: polls send it back, and get 204 while it is unchanged.
pub fn hash_of(s: &str) -> String {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The hx-headers of polling elements: polls do not keep a session alive.
pub fn poll_attrs() -> &'static str {
    r#"{"X-Sunstone-Poll":"1"}"#
}

/// An object id from the URL.
pub fn id_path(s: &str) -> Result<i64, Failure> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| Failure::not_found(format!("{s:?} is not an object id")))
}
