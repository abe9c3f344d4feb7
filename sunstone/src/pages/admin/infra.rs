//! Clusters and datastores (administrators).

use crate::html::{self, bar, mb, template_text};
use crate::pages::id_path;
use crate::web::{Ctx, Failure, PageResult, num};
use axum::Form;
use axum::extract::Path;
use maud::{Markup, html};
use oca::{ClusterMember, Datastore, Template};
use serde::Deserialize;

fn ids(v: &[i64], prefix: &str) -> Markup {
    html! {
        @for (i, id) in v.iter().enumerate() {
            @if i > 0 { ", " }
            a href=(format!("{prefix}/{id}")) { (id) }
        }
        @if v.is_empty() { span.muted { "none" } }
    }
}

// ---------------------------------------------------------------------------------------
// Clusters

/// `GET /admin/clusters`.
pub async fn clusters(ctx: Ctx) -> PageResult {
    let clusters = ctx.oned().cluster().list().await?;
    let content = html! {
        h1 { "Clusters" }
        table.list #clusters {
            thead { tr { th.num { "ID" } th { "Name" } th { "Hosts" } th { "Datastores" } th { "Networks" } } }
            tbody {
                @for c in &clusters {
                    tr {
                        td.num { (c.id) }
                        td { a href=(format!("admin/clusters/{}", c.id)) { (c.name) } }
                        td { (ids(&c.hosts, "admin/hosts")) }
                        td { (ids(&c.datastores, "admin/datastores")) }
                        td { (ids(&c.vnets, "networks")) }
                    }
                }
            }
        }
        div.card {
            h2 { "New cluster" }
            form.inline method="post" action="admin/clusters" {
                (ctx.csrf_field())
                input type="text" name="name" placeholder="cluster name" aria-label="Cluster name" required;
                button.primary type="submit" { "Create" }
            }
        }
    };
    Ok(ctx.page("Clusters", content))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NameForm {
    name: String,
}

/// `POST /admin/clusters`.
pub async fn cluster_create(ctx: Ctx, Form(f): Form<NameForm>) -> PageResult {
    Ok(match ctx.oned().cluster().allocate(f.name.trim()).await {
        Ok(id) => ctx.redirect_ok(
            &format!("admin/clusters/{id}"),
            format!("Cluster {id} created."),
        ),
        Err(e) => ctx.redirect_err("admin/clusters", e),
    })
}

/// `GET /admin/clusters/{id}`.
pub async fn cluster_show(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let id = id_path(&id)?;
    let c = ctx.oned().cluster().info(id).await?;
    let member_form = |kind: &str, label: &str| {
        html! {
            form.inline method="post" action=(format!("admin/clusters/{id}/add")) {
                (ctx.csrf_field())
                input type="hidden" name="kind" value=(kind);
                input.short type="number" name="member" min="0" placeholder=(format!("{label} id")) aria-label=(format!("{label} id")) required;
                button.small type="submit" { "Add " (label) }
            }
        }
    };
    let members = |kind: &str, v: &[i64], prefix: &str| {
        html! {
            ul { @for m in v { li { a href=(format!("{prefix}/{m}")) { (kind) " " (m) } " "
                (ctx.button(&format!("admin/clusters/{id}/remove"), "Remove", &[("kind", kind), ("member", &m.to_string())], Some(&format!("Remove {kind} {m} from cluster {id}?")), "small danger")) } } }
        }
    };
    let content = html! {
        h1 { "Cluster " (c.id) ": " (c.name) }
        section.cards {
            div.card { h2 { "Hosts" } (members("host", &c.hosts, "admin/hosts")) (member_form("host", "host")) }
            div.card { h2 { "Datastores" } (members("datastore", &c.datastores, "admin/datastores")) (member_form("datastore", "datastore")) }
            div.card { h2 { "Networks" } (members("vnet", &c.vnets, "networks")) (member_form("vnet", "network")) }
        }
        section { h2 { "Template" } (template_text(&c.template)) }
        p { (ctx.button(&format!("admin/clusters/{id}/delete"), "Delete cluster", &[], Some(&format!("Delete cluster {id} ({})?", c.name)), "danger")) }
    };
    Ok(ctx.page(&format!("Cluster {}", c.name), content))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct MemberForm {
    kind: String,
    member: String,
}

/// `POST /admin/clusters/{id}/{op}`: add, remove (a member), delete.
pub async fn cluster_op(
    ctx: Ctx,
    Path((id, op)): Path<(String, String)>,
    Form(f): Form<MemberForm>,
) -> PageResult {
    let id = id_path(&id)?;
    let back = format!("admin/clusters/{id}");
    let calls = ctx.oned().cluster();
    if op == "delete" {
        return Ok(match calls.delete(id).await {
            Ok(()) => ctx.redirect_ok("admin/clusters", format!("Cluster {id} deleted.")),
            Err(e) => ctx.redirect_err(&back, e),
        });
    }
    let kind = match f.kind.as_str() {
        "host" => ClusterMember::Host,
        "datastore" => ClusterMember::Datastore,
        "vnet" => ClusterMember::Vnet,
        other => {
            return Err(Failure::bad_request(format!(
                "Unknown cluster member kind {other:?}"
            )));
        }
    };
    let member: i64 = num(&f.kind, &f.member)?;
    let r = match op.as_str() {
        "add" => calls.add(id, kind, member).await,
        "remove" => calls.remove(id, kind, member).await,
        _ => return Err(Failure::not_found(format!("No cluster operation {op:?}"))),
    };
    Ok(match r {
        Ok(()) => ctx.redirect_ok(&back, format!("{} {member}: {op} done.", f.kind)),
        Err(e) => ctx.redirect_err(&back, e),
    })
}

// ---------------------------------------------------------------------------------------
// Datastores

fn capacity(d: &Datastore) -> Markup {
    let used = (d.total_mb - d.free_mb).max(0) as f64;
    bar(
        used,
        d.total_mb as f64,
        &format!("{} of {}", mb(used), mb(d.total_mb as f64)),
    )
}

/// `GET /admin/datastores`.
pub async fn datastores(ctx: Ctx) -> PageResult {
    let c = ctx.oned();
    let (dss, clusters) = tokio::join!(async { c.datastore().list().await }, async {
        c.cluster().list().await
    });
    let dss = dss?;
    let clusters = clusters.unwrap_or_default();
    let content = html! {
        h1 { "Datastores" }
        table.list #datastores {
            thead { tr { th.num { "ID" } th { "Name" } th { "Type" } th { "Drivers" } th { "State" } th { "Capacity" } th.num { "Images" } } }
            tbody {
                @for d in &dss {
                    tr {
                        td.num { (d.id) }
                        td { a href=(format!("admin/datastores/{}", d.id)) { (d.name) } }
                        td { (d.type_name()) }
                        td { (d.ds_mad) " / " (d.tm_mad) }
                        td { (d.state_name()) }
                        td { (capacity(d)) }
                        td.num { (d.images.len()) }
                    }
                }
            }
        }
        div.card {
            h2 { "New datastore" }
            form.stack method="post" action="admin/datastores" {
                (ctx.csrf_field())
                label { "Name" input type="text" name="name" required; }
                label { "Type" select name="type" { option value="IMAGE_DS" { "Images" } option value="SYSTEM_DS" { "System (running VMs)" } option value="FILE_DS" { "Files (kernels, contexts)" } } }
                label { "Datastore driver (DS_MAD; not for system datastores)" input type="text" name="ds_mad" value="fs"; }
                label { "Transfer driver (TM_MAD)" input type="text" name="tm_mad" value="shared"; }
                label { "Cluster" select name="cluster" { @for c in &clusters { option value=(c.id) { (c.name) } } } }
                button.primary type="submit" { "Create" }
            }
        }
    };
    Ok(ctx.page("Datastores", content))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewDatastore {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    ds_mad: String,
    tm_mad: String,
    cluster: String,
}

/// `POST /admin/datastores`.
pub async fn datastore_create(ctx: Ctx, Form(f): Form<NewDatastore>) -> PageResult {
    if !["IMAGE_DS", "SYSTEM_DS", "FILE_DS"].contains(&f.kind.as_str()) {
        return Err(Failure::bad_request(format!(
            "Unknown datastore type {:?}",
            f.kind
        )));
    }
    let mut t = Template::new();
    t.set("NAME", f.name.trim());
    t.set("TYPE", f.kind.as_str());
    if f.kind != "SYSTEM_DS" && !f.ds_mad.trim().is_empty() {
        t.set("DS_MAD", f.ds_mad.trim());
    }
    t.set("TM_MAD", f.tm_mad.trim());
    let cluster: i64 = if f.cluster.is_empty() {
        -1
    } else {
        num("cluster", &f.cluster)?
    };
    Ok(
        match ctx.oned().datastore().allocate(&t.to_text(), cluster).await {
            Ok(id) => ctx.redirect_ok(
                &format!("admin/datastores/{id}"),
                format!("Datastore {id} created."),
            ),
            Err(e) => ctx.redirect_err("admin/datastores", e),
        },
    )
}

/// `GET /admin/datastores/{id}`.
pub async fn datastore_show(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let id = id_path(&id)?;
    let d = ctx.oned().datastore().info(id).await?;
    let content = html! {
        h1 { "Datastore " (d.id) ": " (d.name) }
        div.actions {
            @if d.ds_type == 1 {
                @if d.state == 0 { (ctx.button(&format!("admin/datastores/{id}/disable"), "Disable", &[], Some("Disable this system datastore?"), "")) }
                @else { (ctx.button(&format!("admin/datastores/{id}/enable"), "Enable", &[], None, "")) }
            }
            (ctx.button(&format!("admin/datastores/{id}/delete"), "Delete", &[], Some(&format!("Delete datastore {id} ({})?", d.name)), "danger"))
        }
        section.cards {
            div.card {
                (html::facts(&[
                    ("Type", html!{ (d.type_name()) }),
                    ("State", html!{ (d.state_name()) }),
                    ("Drivers", html!{ (d.ds_mad) " / " (d.tm_mad) }),
                    ("Path", html!{ (d.base_path) }),
                    ("Clusters", html!{ (ids(&d.clusters, "admin/clusters")) }),
                    ("Capacity", capacity(&d)),
                    ("Images", html!{ (ids(&d.images, "images")) }),
                ]))
            }
        }
        section { h2 { "Template" } (template_text(&d.template)) }
    };
    Ok(ctx.page(&format!("Datastore {}", d.name), content))
}

/// `POST /admin/datastores/{id}/{op}`.
pub async fn datastore_op(ctx: Ctx, Path((id, op)): Path<(String, String)>) -> PageResult {
    let id = id_path(&id)?;
    let back = format!("admin/datastores/{id}");
    let d = ctx.oned().datastore();
    let r = match op.as_str() {
        "enable" => d.enable(id, true).await,
        "disable" => d.enable(id, false).await,
        "delete" => {
            return Ok(match d.delete(id).await {
                Ok(()) => ctx.redirect_ok("admin/datastores", format!("Datastore {id} deleted.")),
                Err(e) => ctx.redirect_err(&back, e),
            });
        }
        _ => return Err(Failure::not_found(format!("No datastore operation {op:?}"))),
    };
    Ok(match r {
        Ok(()) => ctx.redirect_ok(&back, format!("Datastore {id}: {op} done.")),
        Err(e) => ctx.redirect_err(&back, e),
    })
}
