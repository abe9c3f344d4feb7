//! The console's sections, one module each, and their routes. Every route here is behind
//! the session middleware (web::require_session): anonymous visitors go to the login page
//! and every POST carries its CSRF token.

use crate::App;
use crate::web::Failure;
use axum::Router;
use axum::routing::{get, post};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

pub mod admin;
pub mod console;
pub mod dashboard;
pub mod images;
pub mod networks;
pub mod settings;
pub mod templates;
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
        .route("/vms/{id}/console", get(console::page))
        .route("/vms/{id}/console/ws", get(console::websocket))
        .route("/vms/{id}/action", post(vm::action))
        .route("/vms/{id}/{op}", post(vm::op))
        .route("/vms/{id}/disksnap/{disk}", post(vm::disk_snapshot_create))
        .route("/vms/{id}/disksave/{disk}", post(vm::disk_saveas))
        .route(
            "/vms/{id}/disksnap/{disk}/{snap}/{op}",
            post(vm::disk_snapshot_op),
        )
        .route("/vms/{id}/{kind}/{n}/{op}", post(vm::sub_op))
        .route("/templates", get(templates::list).post(templates::create))
        .route("/templates/{id}", get(templates::show))
        .route("/templates/{id}/update", post(templates::update))
        .route("/templates/{id}/delete", post(templates::delete))
        .route(
            "/templates/{id}/instantiate",
            get(templates::instantiate_form).post(templates::instantiate),
        )
        .route("/images", get(images::list).post(images::create))
        .route("/images/upload", post(images::upload))
        .route("/images/{id}", get(images::show))
        .route("/images/{id}/{op}", post(images::op))
        .route("/networks", get(networks::list))
        .route("/networks/{id}", get(networks::show))
        .route("/networks/{id}/ar", post(networks::add_ar))
        .route("/networks/{id}/ar/{ar}/delete", post(networks::rm_ar))
        .route("/networks/{id}/delete", post(networks::delete))
        .route("/settings", get(settings::show))
        .route("/settings/password", post(settings::password))
        .route("/settings/ssh", post(settings::ssh_key))
        .route(
            "/admin/hosts",
            get(admin::hosts::list).post(admin::hosts::create),
        )
        .route("/admin/hosts/rows", get(admin::hosts::rows_fragment))
        .route("/admin/hosts/{id}", get(admin::hosts::show))
        .route("/admin/hosts/{id}/{op}", post(admin::hosts::op))
        .route(
            "/admin/clusters",
            get(admin::infra::clusters).post(admin::infra::cluster_create),
        )
        .route("/admin/clusters/{id}", get(admin::infra::cluster_show))
        .route("/admin/clusters/{id}/{op}", post(admin::infra::cluster_op))
        .route(
            "/admin/datastores",
            get(admin::infra::datastores).post(admin::infra::datastore_create),
        )
        .route("/admin/datastores/{id}", get(admin::infra::datastore_show))
        .route(
            "/admin/datastores/{id}/{op}",
            post(admin::infra::datastore_op),
        )
        .route(
            "/admin/vnets",
            get(admin::vnets::list).post(admin::vnets::create),
        )
        .route(
            "/admin/users",
            get(admin::accounts::users).post(admin::accounts::user_create),
        )
        .route("/admin/users/{id}", get(admin::accounts::user_show))
        .route("/admin/users/{id}/{op}", post(admin::accounts::user_op))
        .route(
            "/admin/groups",
            get(admin::accounts::groups).post(admin::accounts::group_create),
        )
        .route("/admin/groups/{id}", get(admin::accounts::group_show))
        .route("/admin/groups/{id}/{op}", post(admin::accounts::group_op))
        .route(
            "/admin/acls",
            get(admin::accounts::acls).post(admin::accounts::acl_create),
        )
        .route("/admin/acls/{id}/delete", post(admin::accounts::acl_delete))
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
