//! Images: the list, an image's page and its operations, new empty datablocks, and uploads
//! from the browser (app.js sends the file with a progress bar; sunstone streams it to oned's
//! `POST /upload` with the user's own session and registers it).

use super::id_path;
use crate::html::{self, mb, template_text};
use crate::web::{Ctx, Failure, PageResult, num};
use axum::Form;
use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use oca::{Datastore, Image, PoolFilter, PoolRange, Template};
use serde::Deserialize;

fn image_state(i: &Image) -> Markup {
    let class = match i.state {
        1 | 2 => "good",
        5 | 6 => "bad",
        3 => "off",
        _ => "busy",
    };
    html! { span class=(format!("badge {class}")) { (i.state_name()) } }
}

/// Image datastores (TYPE 0) the user can see: where new images may go.
pub async fn image_datastores(ctx: &Ctx) -> Vec<Datastore> {
    ctx.oned()
        .datastore()
        .list()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.ds_type == 0)
        .collect()
}

/// `GET /images`.
pub async fn list(ctx: Ctx) -> PageResult {
    let (images, datastores) = tokio::join!(
        async {
            ctx.oned()
                .image()
                .list(PoolFilter::All, PoolRange::default())
                .await
        },
        image_datastores(&ctx)
    );
    let images = images?;
    let ds_select = html! {
        select name="datastore" aria-label="Datastore" required {
            @for d in &datastores { option value=(d.id) { (d.name) " (" (d.id) ", " (mb(d.free_mb as f64)) " free)" } }
        }
    };
    let content = html! {
        h1 { "Images" }
        table.list #images {
            thead { tr { th.num { "ID" } th { "Name" } th { "Owner" } th { "Datastore" } th { "Type" } th { "State" } th.num { "Size" } th { "Persistent" } th.num { "VMs" } } }
            tbody {
                @for i in &images {
                    tr {
                        td.num { (i.id) }
                        td { a href=(format!("images/{}", i.id)) { (i.name) } }
                        td { (i.owner.uname) }
                        td { (i.datastore) }
                        td { (i.type_name()) }
                        td { (image_state(i)) }
                        td.num { (mb(i.size as f64)) }
                        td { (if i.persistent { "yes" } else { "no" }) }
                        td.num { (i.running_vms) }
                    }
                }
                @if images.is_empty() { tr { td colspan="9" .empty { "No images you may use." } } }
            }
        }
        section.cards {
            div.card {
                h2 { "New empty disk" }
                form.stack method="post" action="images" {
                    (ctx.csrf_field())
                    label { "Name" input type="text" name="name" required; }
                    label { "Size (MB)" input type="number" name="size" min="1" required; }
                    label { "Datastore" (ds_select) }
                    button.primary type="submit" { "Create" }
                }
            }
            div.card {
                h2 { "Upload an image" }
                // Needs JavaScript: app.js sends the file itself as the body, with a progress bar.
                form.stack method="post" action="images/upload" enctype="multipart/form-data" data-upload {
                    label { "File" input type="file" name="file" required; }
                    label { "Name" input type="text" name="name" required; }
                    label { "Type" select name="type" aria-label="Type" {
                        option value="OS" { "OS disk" }
                        option value="CDROM" { "CD-ROM (ISO)" }
                        option value="DATABLOCK" { "Data disk" }
                    } }
                    label { "Datastore" (ds_select) }
                    progress hidden value="0" max="1" {}
                    p.muted data-status role="status" aria-live="polite" {}
                    button.primary type="submit" { "Upload" }
                }
            }
        }
    };
    Ok(ctx.page("Images", content))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewImage {
    name: String,
    size: String,
    datastore: String,
}

/// `POST /images`: an empty datablock.
pub async fn create(ctx: Ctx, Form(f): Form<NewImage>) -> PageResult {
    let size: u64 = num("size", &f.size)?;
    let ds: i64 = num("datastore", &f.datastore)?;
    let mut t = Template::new();
    t.set("NAME", f.name.trim());
    t.set("TYPE", "DATABLOCK");
    t.set("SIZE", size.to_string());
    Ok(match ctx.oned().image().allocate(&t.to_text(), ds).await {
        Ok(id) => ctx.redirect_ok(&format!("images/{id}"), format!("Image {id} created.")),
        Err(e) => ctx.redirect_err("images", e),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UploadQuery {
    name: String,
    datastore: String,
    #[serde(rename = "type")]
    kind: String,
}

/// An answer for app.js: `{"location": ...}` to go to, or `{"error": ...}` to show.
fn json(status: StatusCode, key: &str, value: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ key: value }).to_string(),
    )
        .into_response()
}

/// `POST /images/upload?name=..&datastore=..&type=..`: the file is the request body (as
/// app.js sends it), streamed on to oned's `POST /upload` with the user's own session (never
/// held whole in memory here), then registered with `one.image.allocate`
/// (`PATH="upload://TOKEN"`). Every refusal is oned's message.
pub async fn upload(
    ctx: Ctx,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bad = |msg: String| json(StatusCode::BAD_REQUEST, "error", &msg);
    let name = q.name.trim();
    if name.is_empty() {
        return bad("The image needs a name.".into());
    }
    let kind = match q.kind.as_str() {
        "" | "OS" => "OS",
        "CDROM" => "CDROM",
        "DATABLOCK" => "DATABLOCK",
        other => return bad(format!("type: {other:?} is not OS, CDROM or DATABLOCK")),
    };
    let ds: i64 = match num("datastore", &q.datastore) {
        Ok(d) => d,
        Err(f) => return bad(f.message),
    };
    let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return json(
            StatusCode::LENGTH_REQUIRED,
            "error",
            "The upload must say its length (Content-Length).",
        );
    };
    let user = &ctx.session.who.username;
    let stream = reqwest::Body::wrap_stream(body.into_data_stream());
    let ticket = match ctx.oned().upload_body(stream, len).await {
        Ok(t) => t,
        Err(e) => {
            tracing::info!(%user, bytes = len, "upload failed: {e}");
            return json(StatusCode::BAD_GATEWAY, "error", &e.to_string());
        }
    };
    let mut t = Template::new();
    t.set("NAME", name);
    t.set("TYPE", kind);
    t.set("PATH", ticket.path.as_str());
    match ctx.oned().image().allocate(&t.to_text(), ds).await {
        Ok(id) => {
            tracing::info!(%user, image = id, bytes = ticket.size, "image uploaded");
            ctx.session.push_flash(
                crate::session::FlashKind::Ok,
                format!("Image {id} uploaded ({} bytes).", ticket.size),
            );
            json(StatusCode::OK, "location", &format!("images/{id}"))
        }
        Err(e) => json(StatusCode::UNPROCESSABLE_ENTITY, "error", &e.to_string()),
    }
}

/// `GET /images/{id}`.
pub async fn show(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let id = id_path(&id)?;
    let i = ctx.oned().image().info(id).await?;
    let op = |name: &str, label: &str, confirm: Option<String>, class: &str| {
        ctx.button(
            &format!("images/{id}/{name}"),
            label,
            &[],
            confirm.as_deref(),
            class,
        )
    };
    let content = html! {
        div.titlebar { h1 { "Image " (i.id) ": " (i.name) } (image_state(&i)) }
        div.actions {
            @if i.persistent { (op("nonpersistent", "Make non-persistent", None, "")) } @else { (op("persistent", "Make persistent", None, "")) }
            @if i.state == 3 { (op("enable", "Enable", None, "")) } @else { (op("disable", "Disable", None, "")) }
            (op("delete", "Delete", Some(format!("Delete image {id} ({})?", i.name)), "danger"))
        }
        section.cards {
            div.card {
                (html::facts(&[
                    ("Owner", html!{ (i.owner.uname) " / " (i.owner.gname) }),
                    ("Datastore", html!{ (i.datastore) " (" (i.datastore_id) ")" }),
                    ("Type", html!{ (i.type_name()) }),
                    ("Size", html!{ (mb(i.size as f64)) }),
                    ("Format", html!{ (i.format) }),
                    ("Registered", html!{ (html::time(i.regtime)) }),
                    ("Used by VMs", html!{ (i.vms.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")) }),
                    ("Source", html!{ (i.source) }),
                ]))
            }
            div.card {
                h2 { "Snapshots" }
                @if i.snapshots.is_empty() { p.muted { "None." } }
                ul { @for s in &i.snapshots { li { (s.name) " (" (s.id) ", " (html::time(s.date)) ")" } } }
            }
        }
        section { h2 { "Template" } (template_text(&i.template)) }
    };
    Ok(ctx.page(&format!("Image {}", i.name), content))
}

/// `POST /images/{id}/{op}`.
pub async fn op(ctx: Ctx, Path((id, op)): Path<(String, String)>) -> PageResult {
    let id = id_path(&id)?;
    let back = format!("images/{id}");
    let img = ctx.oned().image();
    let r = match op.as_str() {
        "persistent" => img.persistent(id, true).await,
        "nonpersistent" => img.persistent(id, false).await,
        "enable" => img.enable(id, true).await,
        "disable" => img.enable(id, false).await,
        "delete" => {
            return Ok(match img.delete(id).await {
                Ok(()) => ctx.redirect_ok("images", format!("Image {id} deleted.")),
                Err(e) => ctx.redirect_err(&back, e),
            });
        }
        _ => return Err(Failure::not_found(format!("No image operation {op:?}"))),
    };
    Ok(match r {
        Ok(()) => ctx.redirect_ok(&back, format!("Image {id}: {op} done.")),
        Err(e) => ctx.redirect_err(&back, e),
    })
}
