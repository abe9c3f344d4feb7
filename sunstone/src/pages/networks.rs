//! Virtual networks: the ones the user may use, a network's page with its address ranges
//! and leases, and (administrators, or the owner) address range management. Creating
//! networks is in the admin view (admin/vnets.rs).

use super::id_path;
use crate::html::{self, bar, template_text};
use crate::web::{Ctx, Failure, PageResult, num};
use axum::Form;
use axum::extract::Path;
use maud::{Markup, html};
use oca::{PoolFilter, PoolRange, Template, VirtualNetwork};
use serde::Deserialize;

/// Leases of a network: (used, total) over its address ranges.
pub fn leases(n: &VirtualNetwork) -> (i64, i64) {
    let total: i64 = n.address_ranges.iter().map(|a| a.size()).sum();
    (n.used_leases, total)
}

pub fn driver_name(vn_mad: &str) -> &str {
    match vn_mad {
        "bridge" => "Bridge",
        "802.1Q" => "802.1Q VLAN",
        "vxlan" => "VXLAN",
        "" => "-",
        other => other,
    }
}

/// The table of networks (used by this page and the admin list).
pub fn table(nets: &[VirtualNetwork]) -> Markup {
    html! {
        table.list #networks {
            thead { tr { th.num { "ID" } th { "Name" } th { "Owner" } th { "Driver" } th { "Bridge" } th { "VLAN" } th { "Leases" } } }
            tbody {
                @for n in nets {
                    @let (used, total) = leases(n);
                    tr {
                        td.num { (n.id) }
                        td { a href=(format!("networks/{}", n.id)) { (n.name) } }
                        td { (n.owner.uname) }
                        td { (driver_name(&n.vn_mad)) }
                        td { (n.bridge) }
                        td { (n.vlan_id) }
                        td { (bar(used as f64, total as f64, &format!("{used} of {total}"))) }
                    }
                }
                @if nets.is_empty() { tr { td colspan="7" .empty { "No networks you may use." } } }
            }
        }
    }
}

/// `GET /networks`.
pub async fn list(ctx: Ctx) -> PageResult {
    let nets = ctx
        .oned()
        .vnet()
        .list(PoolFilter::All, PoolRange::default())
        .await?;
    Ok(ctx.page("Networks", html! { h1 { "Networks" } (table(&nets)) }))
}

/// `GET /networks/{id}`.
pub async fn show(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let id = id_path(&id)?;
    let n = ctx.oned().vnet().info(id).await?;
    let manage = ctx.is_admin() || n.owner.uid == ctx.uid();
    let (used, total) = leases(&n);
    let content = html! {
        div.titlebar { h1 { "Network " (n.id) ": " (n.name) } span.badge.good { (n.state_name()) } }
        section.cards {
            div.card {
                (html::facts(&[
                    ("Owner", html!{ (n.owner.uname) " / " (n.owner.gname) }),
                    ("Driver", html!{ (driver_name(&n.vn_mad)) }),
                    ("Bridge", html!{ (n.bridge) }),
                    ("Physical device", html!{ (n.phydev) }),
                    ("VLAN / VNI", html!{ (n.vlan_id) }),
                    ("Clusters", html!{ (n.clusters.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")) }),
                    ("Leases", html!{ (bar(used as f64, total as f64, &format!("{used} of {total}"))) }),
                ]))
            }
        }
        section {
            h2 { "Address ranges" }
            table.list #ars {
                thead { tr { th.num { "AR" } th { "Type" } th { "First IP" } th { "Last IP" } th { "First MAC" } th { "Leases" } @if manage { th {} } } }
                tbody {
                    @for ar in &n.address_ranges {
                        tr {
                            td.num { (ar.id) }
                            td { (ar.get("TYPE").unwrap_or("")) }
                            td { (ar.get("IP").unwrap_or("")) }
                            td { (ar.get("IP_END").unwrap_or("")) }
                            td { (ar.get("MAC").unwrap_or("")) }
                            td { (bar(ar.used_leases() as f64, ar.size() as f64, &format!("{} of {}", ar.used_leases(), ar.size()))) }
                            @if manage { td { (ctx.button(&format!("networks/{id}/ar/{}/delete", ar.id), "Remove", &[], Some(&format!("Remove address range {} of network {id}?", ar.id)), "small danger")) } }
                        }
                    }
                }
            }
            @if manage {
                form.inline.attach method="post" action=(format!("networks/{id}/ar")) {
                    (ctx.csrf_field())
                    "Add "
                    select name="type" aria-label="Type" { option value="IP4" { "IPv4" } option value="ETHER" { "Ethernet only" } }
                    input type="text" name="ip" placeholder="first IP, e.g. 10.0.0.10" aria-label="First IP";
                    input.short type="number" name="size" min="1" placeholder="size" aria-label="Size" required;
                    button type="submit" { "Add address range" }
                }
            }
        }
        section {
            h2 { "Leases" }
            table.list #leases {
                thead { tr { th { "IP" } th { "MAC" } th { "Held by" } th.num { "AR" } } }
                tbody {
                    @for ar in &n.address_ranges {
                        @for l in &ar.leases {
                            tr {
                                td { (l.get("IP").or(l.get("IP6_GLOBAL")).unwrap_or("")) }
                                td { (l.get("MAC").unwrap_or("")) }
                                td {
                                    @if let Some(vm) = l.get("VM") { a href=(format!("vms/{vm}")) { "VM " (vm) } }
                                    @else if let Some(v) = l.get("VNET") { "network " (v) }
                                    @else if let Some(r) = l.get("VROUTER") { "router " (r) }
                                }
                                td.num { (ar.id) }
                            }
                        }
                    }
                    @if n.address_ranges.iter().all(|a| a.leases.is_empty()) { tr { td colspan="4" .empty { "No leases." } } }
                }
            }
        }
        section { h2 { "Template" } (template_text(&n.template)) }
        @if manage {
            p { (ctx.button(&format!("networks/{id}/delete"), "Delete network", &[], Some(&format!("Delete network {id} ({})?", n.name)), "danger")) }
        }
    };
    Ok(ctx.page(&format!("Network {}", n.name), content))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ArForm {
    #[serde(rename = "type")]
    kind: String,
    ip: String,
    size: String,
}

/// The AR template of an address range form.
pub fn ar_template(kind: &str, ip: &str, size: &str) -> Result<Template, Failure> {
    let size: u64 = num("size", size)?;
    let mut ar = oca::Vector::new();
    match kind {
        "IP4" => {
            let ip: std::net::Ipv4Addr = ip.trim().parse().map_err(|_| {
                Failure::bad_request(format!("First IP: {ip:?} is not an IPv4 address"))
            })?;
            ar.set("TYPE", "IP4");
            ar.set("IP", ip.to_string());
        }
        "ETHER" => ar.set("TYPE", "ETHER"),
        other => {
            return Err(Failure::bad_request(format!(
                "Unknown address range type {other:?}"
            )));
        }
    }
    ar.set("SIZE", size.to_string());
    let mut t = Template::new();
    t.set_vector("AR", ar);
    Ok(t)
}

/// `POST /networks/{id}/ar`.
pub async fn add_ar(ctx: Ctx, Path(id): Path<String>, Form(f): Form<ArForm>) -> PageResult {
    let id = id_path(&id)?;
    let t = ar_template(&f.kind, &f.ip, &f.size)?;
    let back = format!("networks/{id}");
    Ok(match ctx.oned().vnet().add_ar(id, &t.to_text()).await {
        Ok(()) => ctx.redirect_ok(&back, "Address range added."),
        Err(e) => ctx.redirect_err(&back, e),
    })
}

/// `POST /networks/{id}/ar/{ar}/delete`.
pub async fn rm_ar(ctx: Ctx, Path((id, ar)): Path<(String, String)>) -> PageResult {
    let id = id_path(&id)?;
    let ar: i64 = num("address range", &ar)?;
    let back = format!("networks/{id}");
    Ok(match ctx.oned().vnet().rm_ar(id, ar, false).await {
        Ok(()) => ctx.redirect_ok(&back, format!("Address range {ar} removed.")),
        Err(e) => ctx.redirect_err(&back, e),
    })
}

/// `POST /networks/{id}/delete`.
pub async fn delete(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let id = id_path(&id)?;
    Ok(match ctx.oned().vnet().delete(id).await {
        Ok(()) => ctx.redirect_ok(
            if ctx.is_admin() {
                "admin/vnets"
            } else {
                "networks"
            },
            format!("Network {id} deleted."),
        ),
        Err(e) => ctx.redirect_err(&format!("networks/{id}"), e),
    })
}
