//! Hosts (administrators): the list with state and capacity bars (refreshing itself, so a
//! new host is seen reaching MONITORED), adding one (name, hypervisor, cluster), enable /
//! disable / offline / delete, and a host's page with its monitoring graphs and VMs.

use crate::graph;
use crate::html::{self, bar, host_state, mb, template_text};
use crate::pages::{hash_of, id_path, poll_attrs};
use crate::web::{Ctx, Failure, PageResult, num};
use axum::Form;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use maud::{Markup, html};
use oca::{Host, HostStatus};
use serde::Deserialize;

/// The hypervisors a host can be added with (IM_MAD = VM_MAD).
pub const HYPERVISORS: &[(&str, &str)] = &[
    ("kvm", "KVM (libvirt, through the node agent)"),
    ("dummy", "dummy (simulated by oned)"),
];

/// CPU and memory allocated to VMs (what the scheduler counts) and really used (the last
/// monitoring), as bars.
fn capacity(h: &Host) -> Markup {
    let s = &h.share;
    let used_cpu: f64 = h
        .capacity("USED_CPU")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let used_mem_kb: f64 = h
        .capacity("USED_MEMORY")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    html! {
        div.quota { span.qname { "CPU allocated" } (bar(s.cpu_usage as f64, s.max_cpu as f64, &format!("{} of {} %", s.cpu_usage, s.max_cpu))) }
        div.quota { span.qname { "CPU used" } (bar(used_cpu, s.total_cpu as f64, &format!("{used_cpu:.0} of {} %", s.total_cpu))) }
        div.quota { span.qname { "Memory allocated" } (bar(s.mem_usage as f64, s.max_mem as f64, &format!("{} of {}", mb(s.mem_usage as f64 / 1024.0), mb(s.max_mem as f64 / 1024.0)))) }
        div.quota { span.qname { "Memory used" } (bar(used_mem_kb, s.total_mem as f64, &format!("{} of {}", mb(used_mem_kb / 1024.0), mb(s.total_mem as f64 / 1024.0)))) }
    }
}

fn rows(ctx: &Ctx, hosts: &[Host]) -> Markup {
    html! {
        @for h in hosts {
            tr data-id=(h.id) {
                td.num { (h.id) }
                td { a href=(format!("admin/hosts/{}", h.id)) { (h.name) } }
                td { (h.cluster) }
                td { (h.vm_mad) }
                td { (host_state(h)) }
                td.num { (h.share.running_vms) }
                td {
                    (bar(h.share.cpu_usage as f64, h.share.max_cpu as f64, &format!("CPU {} / {} %", h.share.cpu_usage, h.share.max_cpu)))
                    (bar(h.share.mem_usage as f64, h.share.max_mem as f64, &format!("Memory {} / {}", mb(h.share.mem_usage as f64 / 1024.0), mb(h.share.max_mem as f64 / 1024.0))))
                }
                td { (status_buttons(ctx, h)) }
            }
        }
        @if hosts.is_empty() { tr { td colspan="8" .empty { "No hosts yet: add one below." } } }
    }
}

fn status_buttons(ctx: &Ctx, h: &Host) -> Markup {
    let id = h.id;
    html! {
        @if h.state == 4 || h.state == 8 { (ctx.button(&format!("admin/hosts/{id}/enable"), "Enable", &[], None, "small")) }
        @if h.state != 4 && h.state != 7 { (ctx.button(&format!("admin/hosts/{id}/disable"), "Disable", &[], Some(&format!("Disable host {}? The scheduler stops placing VMs there.", h.name)), "small")) }
        @if h.state != 8 { (ctx.button(&format!("admin/hosts/{id}/offline"), "Offline", &[], Some(&format!("Set host {} offline? It is no longer monitored.", h.name)), "small")) }
        (ctx.button(&format!("admin/hosts/{id}/delete"), "Delete", &[], Some(&format!("Delete host {}?", h.name)), "small danger"))
    }
}

fn tbody(ctx: &Ctx, hosts: &[Host]) -> (Markup, String) {
    let inner = rows(ctx, hosts);
    let hash = hash_of(&inner.0);
    (
        html! {
            tbody #host-rows hx-get=(format!("admin/hosts/rows?since={hash}")) hx-trigger="every 2s" hx-swap="outerHTML" hx-headers=(poll_attrs()) {
                (inner)
            }
        },
        hash,
    )
}

/// `GET /admin/hosts`.
pub async fn list(ctx: Ctx) -> PageResult {
    let c = ctx.oned();
    let (hosts, clusters) = tokio::join!(async { c.host().list().await }, async {
        c.cluster().list().await
    });
    let hosts = hosts?;
    let clusters = clusters.unwrap_or_default();
    let content = html! {
        h1 { "Hosts" }
        table.list #hosts {
            thead { tr { th.num { "ID" } th { "Name" } th { "Cluster" } th { "Hypervisor" } th { "State" } th.num { "VMs" } th { "Allocated" } th {} } }
            (tbody(&ctx, &hosts).0)
        }
        div.card {
            h2 { "Add a host" }
            form.inline #add-host method="post" action="admin/hosts" {
                (ctx.csrf_field())
                input type="text" name="name" placeholder="host name" aria-label="Host name" required;
                select name="hypervisor" aria-label="Hypervisor" { @for (v, l) in HYPERVISORS { option value=(v) { (l) } } }
                select name="cluster" aria-label="Cluster" { @for c in &clusters { option value=(c.id) { (c.name) } } }
                button.primary type="submit" { "Add host" }
            }
            p.muted { "A KVM host needs oned's SSH key in its authorized_keys and its host key accepted first (docs/node-agent.md)." }
        }
    };
    Ok(ctx.page("Hosts", content))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Since {
    since: String,
}

/// `GET /admin/hosts/rows`.
pub async fn rows_fragment(ctx: Ctx, Query(s): Query<Since>) -> PageResult {
    let hosts = ctx.oned().host().list().await?;
    let (body, hash) = tbody(&ctx, &hosts);
    if s.since == hash {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(ctx.fragment(body))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AddHost {
    name: String,
    hypervisor: String,
    cluster: String,
}

/// `POST /admin/hosts`.
pub async fn create(ctx: Ctx, Form(f): Form<AddHost>) -> PageResult {
    let Some((mad, _)) = HYPERVISORS.iter().find(|(v, _)| *v == f.hypervisor) else {
        return Err(Failure::bad_request(format!(
            "Unknown hypervisor {:?}",
            f.hypervisor
        )));
    };
    let cluster: i64 = if f.cluster.is_empty() {
        -1
    } else {
        num("cluster", &f.cluster)?
    };
    Ok(
        match ctx
            .oned()
            .host()
            .allocate(f.name.trim(), mad, mad, cluster)
            .await
        {
            Ok(id) => ctx.redirect_ok(
                "admin/hosts",
                format!(
                    "Host {id} ({}) added: it is being monitored.",
                    f.name.trim()
                ),
            ),
            Err(e) => ctx.redirect_err("admin/hosts", e),
        },
    )
}

/// `POST /admin/hosts/{id}/{op}`.
pub async fn op(ctx: Ctx, Path((id, op)): Path<(String, String)>) -> PageResult {
    let id = id_path(&id)?;
    let h = ctx.oned().host();
    let r = match op.as_str() {
        "enable" => h.status(id, HostStatus::Enabled).await,
        "disable" => h.status(id, HostStatus::Disabled).await,
        "offline" => h.status(id, HostStatus::Offline).await,
        "delete" => h.delete(id).await,
        _ => return Err(Failure::not_found(format!("No host operation {op:?}"))),
    };
    Ok(match r {
        Ok(()) => ctx.redirect_ok("admin/hosts", format!("Host {id}: {op} done.")),
        Err(e) => ctx.redirect_err("admin/hosts", e),
    })
}

fn series(records: &[oca::Template], vector: &str, attr: &str, scale: f64) -> Vec<(i64, f64)> {
    records
        .iter()
        .filter_map(|r| {
            let t = r.get("TIMESTAMP")?.trim().parse::<i64>().ok()?;
            let v = r.vector(vector)?.get(attr)?.trim().parse::<f64>().ok()?;
            Some((t, v * scale))
        })
        .collect()
}

/// `GET /admin/hosts/{id}`.
pub async fn show(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let id = id_path(&id)?;
    let c = ctx.oned();
    let (h, mon) = tokio::join!(async { c.host().info(id).await }, async {
        c.host().monitoring(id).await
    });
    let h = h?;
    let total_mem_mb = h.share.total_mem as f64 / 1024.0;
    let content = html! {
        div.titlebar { h1 { "Host " (h.id) ": " (h.name) } (host_state(&h)) }
        div.actions { (status_buttons(&ctx, &h)) }
        section.cards {
            div.card {
                (html::facts(&[
                    ("Cluster", html!{ (h.cluster) " (" (h.cluster_id) ")" }),
                    ("Hypervisor", html!{ (h.vm_mad) " / " (h.im_mad) }),
                    ("Running VMs", html!{ (h.share.running_vms) }),
                    ("Last monitored", html!{ (html::time(h.last_monitored())) }),
                    ("Error", html!{ (h.template.get("ERROR").unwrap_or("")) }),
                ]))
            }
            div.card { h2 { "Capacity" } (capacity(&h)) }
        }
        section {
            h2 { "Monitoring" }
            @match &mon {
                Ok(records) => div.charts {
                    (graph::line("CPU used", &series(records, "CAPACITY", "USED_CPU", 1.0), Some(h.share.total_cpu.max(1) as f64), |v| format!("{v:.0} %")))
                    (graph::line("Memory used", &series(records, "CAPACITY", "USED_MEMORY", 1.0 / 1024.0), Some(total_mem_mb.max(1.0)), mb))
                },
                Err(e) => p.flash.error { (e.to_string()) },
            }
        }
        section {
            h2 { "VMs on this host" }
            p { @for v in &h.vms { a href=(format!("vms/{v}")) { (v) } " " } @if h.vms.is_empty() { span.muted { "None." } } }
        }
        section { h2 { "Template" } (template_text(&h.template)) }
    };
    Ok(ctx.page(&format!("Host {}", h.name), content))
}
