//! A VM's page: state, IPs, host, graphs from `one.vm.monitoring`, disks, NICs, snapshots,
//! history, context and template, and every operation as a form (with a confirmation for
//! the ones that stop or destroy something). The head (state and buttons) refreshes itself
//! while the page is open.

use super::{hash_of, id_path, poll_attrs};
use crate::graph;
use crate::html::{self, facts, mb, template_text};
use crate::web::{Ctx, Failure, PageResult, num};
use axum::Form;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use oca::{Image, PoolFilter, PoolRange, VirtualNetwork, Vm, VmAction};
use serde::Deserialize;

/// The `one.vm.action`s offered in each state (STATE, or LCM_STATE while ACTIVE), with the
/// confirmation question of those that stop or destroy something.
fn actions_for(vm: &Vm) -> Vec<(VmAction, &'static str, Option<&'static str>)> {
    use VmAction::*;
    let mut out: Vec<(VmAction, &'static str, Option<&'static str>)> = Vec::new();
    let mut add = |a, label, confirm| out.push((a, label, confirm));
    match (vm.state, vm.lcm_state) {
        (3, 3) => {
            add(Poweroff, "Power off", Some("Power off"));
            add(PoweroffHard, "Power off (hard)", Some("Power off (hard)"));
            add(Reboot, "Reboot", Some("Reboot"));
            add(RebootHard, "Reset", Some("Reset"));
            add(Suspend, "Suspend", Some("Suspend"));
            add(Stop, "Stop", Some("Stop"));
            add(Undeploy, "Undeploy", Some("Undeploy"));
        }
        (3, 16) => {
            add(Resume, "Resume", None);
            add(PoweroffHard, "Power off (hard)", Some("Power off (hard)"));
        }
        (8, _) => {
            add(Resume, "Resume", None);
            add(Undeploy, "Undeploy", Some("Undeploy"));
        }
        (5, _) => {
            add(Resume, "Resume", None);
            add(Stop, "Stop", Some("Stop"));
        }
        (4 | 9, _) => add(Resume, "Resume", None),
        (1, _) => add(Hold, "Hold", None),
        (2, _) => add(Release, "Release", None),
        _ => {}
    }
    if vm.state != 6 {
        add(Terminate, "Terminate", Some("Terminate"));
        add(TerminateHard, "Terminate (hard)", Some("Terminate (hard)"));
    }
    out
}

fn action_from_name(name: &str) -> Option<VmAction> {
    use VmAction::*;
    [
        Terminate,
        TerminateHard,
        Undeploy,
        UndeployHard,
        Poweroff,
        PoweroffHard,
        Reboot,
        RebootHard,
        Hold,
        Release,
        Stop,
        Suspend,
        Resume,
        Resched,
        Unresched,
    ]
    .into_iter()
    .find(|a| a.name() == name)
}

/// True when the VM has a VNC screen that can be reached now.
fn has_screen(vm: &Vm) -> bool {
    let vnc = vm
        .template
        .vector("GRAPHICS")
        .and_then(|g| g.get("TYPE"))
        .is_some_and(|t| t.eq_ignore_ascii_case("vnc"));
    vnc && vm.state == 3 && vm.lcm_state == 3
}

/// The head: name, state, host, IPs and the action buttons; polls itself.
fn head(ctx: &Ctx, vm: &Vm) -> (Markup, String) {
    let inner = html! {
        div.titlebar {
            h1 { "VM " (vm.id) ": " (vm.name) }
            (html::vm_state(vm))
        }
        p.summary {
            span { "Host: " strong { (vm.host().unwrap_or("—")) } }
            span { "IPs: " strong.ips { @let ips = vm.ips(); @if ips.is_empty() { "—" } @else { (ips.join(", ")) } } }
            @if has_screen(vm) {
                a.button href=(format!("vms/{}/console", vm.id)) target="_blank" rel="noopener" { "Open screen" }
            }
        }
        div.actions {
            @for (a, label, confirm) in actions_for(vm) {
                @let question = confirm.map(|c| format!("{c} VM {} ({})?", vm.id, vm.name));
                (ctx.button(&format!("vms/{}/action", vm.id), label, &[("action", a.name())], question.as_deref(),
                    if matches!(a, VmAction::Terminate | VmAction::TerminateHard) { "danger" } else { "" }))
            }
        }
    };
    let hash = hash_of(&inner.0);
    let m = html! {
        div #vm-head hx-get=(format!("vms/{}/head?since={hash}", vm.id)) hx-trigger="every 2s" hx-swap="outerHTML" hx-headers=(poll_attrs()) {
            (inner)
        }
    };
    (m, hash)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Since {
    since: String,
}

/// `GET /vms/{id}/head`: the head, or 204 when unchanged.
pub async fn head_fragment(ctx: Ctx, Path(id): Path<String>, Query(s): Query<Since>) -> PageResult {
    let id = id_path(&id)?;
    let vm = ctx.oned().vm().info(id).await?;
    let (m, hash) = head(&ctx, &vm);
    if s.since == hash {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(ctx.fragment(m))
}

/// Monitoring records as (time, value) series of one attribute.
fn series(records: &[oca::Template], attr: &str, scale: f64) -> Vec<(i64, f64)> {
    records
        .iter()
        .filter_map(|r| {
            let t = r.get("TIMESTAMP")?.trim().parse::<i64>().ok()?;
            let v = r.get(attr)?.trim().parse::<f64>().ok()?;
            Some((t, v * scale))
        })
        .collect()
}

/// `GET /vms/{id}`.
pub async fn show(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let id = id_path(&id)?;
    let c = ctx.oned();
    let vm = c.vm().info(id).await?;
    let (monitoring, images, vnets) = tokio::join!(
        async { c.vm().monitoring(id).await },
        async { c.image().list(PoolFilter::All, PoolRange::default()).await },
        async { c.vnet().list(PoolFilter::All, PoolRange::default()).await },
    );
    // The page is still useful without these: show why they are missing instead.
    let monitoring = monitoring.map_err(|e| e.to_string());
    let images = images.unwrap_or_default();
    let vnets = vnets.unwrap_or_default();
    Ok(ctx.page(
        &format!("VM {}", vm.name),
        body(&ctx, &vm, monitoring, &images, &vnets),
    ))
}

fn body(
    ctx: &Ctx,
    vm: &Vm,
    monitoring: Result<Vec<oca::Template>, String>,
    images: &[Image],
    vnets: &[VirtualNetwork],
) -> Markup {
    let id = vm.id;
    let vcpu: f64 = vm.vcpu().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    html! {
        (head(ctx, vm).0)
        section.cards {
            div.card {
                h2 { "Information" }
                (facts(&[
                    ("Owner", html!{ (vm.owner.uname) " / " (vm.owner.gname) }),
                    ("State", html!{ (vm.state_name()) @if vm.state == 3 { " / " (vm.lcm_state_name()) } }),
                    ("CPU / VCPU", html!{ (vm.cpu().unwrap_or("-")) " / " (vm.vcpu().unwrap_or("1")) }),
                    ("Memory", html!{ (mb(vm.memory_mb() as f64)) }),
                    ("Started", html!{ (html::time(vm.stime)) }),
                    ("Ended", html!{ (html::time(vm.etime)) }),
                    ("Deploy id", html!{ (vm.deploy_id) }),
                    ("Lock", html!{ (vm.lock.map_or("none", |l| l.level_name())) }),
                ]))
                form.rename method="post" action=(format!("vms/{id}/rename")) {
                    (ctx.csrf_field())
                    input type="text" name="name" value=(vm.name) aria-label="New name" required;
                    button type="submit" { "Rename" }
                }
            }
            div.card {
                h2 { "Resize" }
                form.stack method="post" action=(format!("vms/{id}/resize")) data-confirm=(format!("Resize VM {id}?")) {
                    (ctx.csrf_field())
                    label { "CPU" input type="number" name="cpu" step="0.01" min="0.01" value=(vm.cpu().unwrap_or("1")); }
                    label { "VCPU" input type="number" name="vcpu" step="1" min="1" value=(vm.vcpu().unwrap_or("1")); }
                    label { "Memory (MB)" input type="number" name="memory" step="1" min="1" value=(vm.memory_mb()); }
                    button type="submit" { "Resize" }
                }
                p.muted { "A running VM is resized by its hypervisor where it can; otherwise power it off first." }
            }
        }
        section {
            h2 { "Monitoring" }
            @match &monitoring {
                Ok(records) => div.charts {
                    (graph::line("CPU", &series(records, "CPU", 1.0), Some(vcpu * 100.0), |v| format!("{v:.0} %")))
                    (graph::line("Memory", &series(records, "MEMORY", 1.0 / 1024.0), Some(vm.memory_mb().max(1) as f64), mb))
                },
                Err(e) => p.flash.error { (e) },
            }
        }
        (disks(ctx, vm, images))
        (nics(ctx, vm, vnets))
        (snapshots(ctx, vm))
        section {
            h2 { "History" }
            table.list {
                thead { tr { th.num { "#" } th { "Host" } th { "Datastore" } th { "Action" } th { "Start" } th { "End" } } }
                tbody {
                    @for h in &vm.history {
                        tr { td.num { (h.seq) } td { (h.hostname) } td.num { (h.ds_id) } td { (h.action_name()) } td { (html::time(h.stime)) } td { (html::time(h.etime)) } }
                    }
                    @if vm.history.is_empty() { tr { td colspan="6" .empty { "Never deployed yet." } } }
                }
            }
        }
        section.cards {
            div.card {
                h2 { "Context" }
                @match vm.template.vector("CONTEXT") {
                    Some(c) => dl.facts { @for (k, v) in &c.attrs { dt { (k) } dd { (v) } } },
                    None => p.muted { "No context." },
                }
            }
            div.card {
                h2 { "User template" }
                (template_text(&vm.user_template))
            }
        }
        section {
            h2 { "Template" }
            (template_text(&vm.template))
        }
    }
}

fn disks(ctx: &Ctx, vm: &Vm, images: &[Image]) -> Markup {
    let id = vm.id;
    let usable: Vec<&Image> = images
        .iter()
        .filter(|i| i.state == 1 || i.state == 2)
        .collect();
    html! {
        section {
            h2 { "Disks" }
            table.list {
                thead { tr { th.num { "ID" } th { "Target" } th { "Image" } th { "Type" } th.num { "Size" } th { "Snapshots" } th {} } }
                tbody {
                    @for d in vm.disks() {
                        @let did = d.get("DISK_ID").unwrap_or("");
                        tr {
                            td.num { (did) }
                            td { (d.get("TARGET").unwrap_or("")) }
                            td { (d.get("IMAGE").unwrap_or("—")) }
                            td { (d.get("TYPE").unwrap_or("")) }
                            td.num { (d.get("SIZE").map(|s| mb(s.parse().unwrap_or(0.0))).unwrap_or_default()) }
                            td {
                                @for tree in vm.snapshots.iter().filter(|s| s.disk_id.to_string() == did) {
                                    @for s in &tree.snapshots {
                                        div.snap {
                                            (s.name) " (" (s.id) ")" @if s.active { " · current" }
                                            (ctx.button(&format!("vms/{id}/disksnap/{did}/{}/revert", s.id), "Revert", &[], Some(&format!("Revert disk {did} to snapshot {}?", s.name)), "small"))
                                            (ctx.button(&format!("vms/{id}/disksnap/{did}/{}/delete", s.id), "Delete", &[], Some(&format!("Delete snapshot {} of disk {did}?", s.name)), "small danger"))
                                        }
                                    }
                                }
                                form.inline method="post" action=(format!("vms/{id}/disksnap/{did}")) {
                                    (ctx.csrf_field())
                                    input.short type="text" name="name" placeholder="snapshot name" aria-label="Snapshot name";
                                    button.small type="submit" { "Snapshot" }
                                }
                            }
                            td {
                                (ctx.button(&format!("vms/{id}/disk/{did}/detach"), "Detach", &[], Some(&format!("Detach disk {did} from VM {id}?")), "small danger"))
                                form.inline method="post" action=(format!("vms/{id}/disksave/{did}")) {
                                    (ctx.csrf_field())
                                    input.short type="text" name="name" placeholder="image name" aria-label="Name of the new image" required;
                                    button.small type="submit" { "Save as image" }
                                }
                            }
                        }
                    }
                }
            }
            form.inline.attach method="post" action=(format!("vms/{id}/disk")) {
                (ctx.csrf_field())
                "Attach "
                select name="image" aria-label="Image" {
                    option value="" { "a new empty disk of…" }
                    @for i in &usable { option value=(i.id) { (i.name) " (" (i.id) ", " (mb(i.size as f64)) ")" } }
                }
                input.short type="number" name="size" min="1" placeholder="MB" aria-label="Size of a new disk (MB)";
                button type="submit" { "Attach disk" }
            }
        }
    }
}

fn nics(ctx: &Ctx, vm: &Vm, vnets: &[VirtualNetwork]) -> Markup {
    let id = vm.id;
    html! {
        section {
            h2 { "Network interfaces" }
            table.list {
                thead { tr { th.num { "ID" } th { "Network" } th { "IP" } th { "MAC" } th { "Bridge" } th {} } }
                tbody {
                    @for n in vm.nics() {
                        @let nid = n.get("NIC_ID").unwrap_or("");
                        tr {
                            td.num { (nid) }
                            td { (n.get("NETWORK").unwrap_or("")) }
                            td { (n.get("IP").or(n.get("IP6_GLOBAL")).unwrap_or("")) }
                            td { (n.get("MAC").unwrap_or("")) }
                            td { (n.get("BRIDGE").unwrap_or("")) }
                            td { (ctx.button(&format!("vms/{id}/nic/{nid}/detach"), "Detach", &[], Some(&format!("Detach NIC {nid} from VM {id}?")), "small danger")) }
                        }
                    }
                }
            }
            form.inline.attach method="post" action=(format!("vms/{id}/nic")) {
                (ctx.csrf_field())
                "Attach a NIC on "
                select name="network" aria-label="Network" required {
                    @for n in vnets { option value=(n.id) { (n.name) " (" (n.id) ")" } }
                }
                button type="submit" { "Attach NIC" }
            }
        }
    }
}

fn snapshots(ctx: &Ctx, vm: &Vm) -> Markup {
    let id = vm.id;
    html! {
        section {
            h2 { "Snapshots" }
            table.list {
                thead { tr { th.num { "ID" } th { "Name" } th { "Taken" } th {} } }
                tbody {
                    @for s in vm.template.vectors("SNAPSHOT") {
                        @let sid = s.get("SNAPSHOT_ID").unwrap_or("");
                        tr {
                            td.num { (sid) }
                            td { (s.get("NAME").unwrap_or("")) }
                            td { (html::time(s.get("TIME").and_then(|t| t.parse().ok()).unwrap_or(0))) }
                            td {
                                (ctx.button(&format!("vms/{id}/snapshot/{sid}/revert"), "Revert", &[], Some(&format!("Revert VM {id} to snapshot {sid}?")), "small"))
                                (ctx.button(&format!("vms/{id}/snapshot/{sid}/delete"), "Delete", &[], Some(&format!("Delete snapshot {sid} of VM {id}?")), "small danger"))
                            }
                        }
                    }
                }
            }
            form.inline method="post" action=(format!("vms/{id}/snapshot")) {
                (ctx.csrf_field())
                input type="text" name="name" placeholder="snapshot name" aria-label="Snapshot name";
                button type="submit" { "Take snapshot" }
            }
        }
    }
}

/// The fields any VM operation form may carry.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct OpForm {
    action: String,
    name: String,
    cpu: String,
    vcpu: String,
    memory: String,
    image: String,
    size: String,
    network: String,
}

/// `POST /vms/{id}/action`.
pub async fn action(ctx: Ctx, Path(id): Path<String>, Form(f): Form<OpForm>) -> PageResult {
    let id = id_path(&id)?;
    let back = format!("vms/{id}");
    let Some(a) = action_from_name(&f.action) else {
        return Err(Failure::bad_request(format!(
            "Unknown action {:?}",
            f.action
        )));
    };
    Ok(match ctx.oned().vm().action(a, id).await {
        Ok(()) => ctx.redirect_ok(&back, format!("VM {id}: {} requested.", a.name())),
        Err(e) => ctx.redirect_err(&back, e),
    })
}

/// `POST /vms/{id}/{op}`: rename, resize, snapshot, disk, nic.
pub async fn op(
    ctx: Ctx,
    Path((id, op)): Path<(String, String)>,
    Form(f): Form<OpForm>,
) -> PageResult {
    let id = id_path(&id)?;
    let back = format!("vms/{id}");
    let vm = ctx.oned().vm();
    let result = match op.as_str() {
        "rename" => vm
            .rename(id, f.name.trim())
            .await
            .map(|_| "renamed".to_owned()),
        "resize" => {
            let mut t = String::new();
            for (k, v) in [("CPU", &f.cpu), ("VCPU", &f.vcpu), ("MEMORY", &f.memory)] {
                if !v.trim().is_empty() {
                    let n: f64 = num(k, v)?;
                    t.push_str(&format!("{k}=\"{n}\"\n"));
                }
            }
            vm.resize(id, &t, true)
                .await
                .map(|_| "resize requested".to_owned())
        }
        "snapshot" => vm
            .snapshot_create(id, f.name.trim())
            .await
            .map(|s| format!("snapshot {s} requested")),
        "disk" => {
            let t = if !f.image.trim().is_empty() {
                format!("DISK=[IMAGE_ID=\"{}\"]", num::<i64>("image", &f.image)?)
            } else if !f.size.trim().is_empty() {
                format!(
                    "DISK=[TYPE=\"fs\", SIZE=\"{}\"]",
                    num::<u64>("size", &f.size)?
                )
            } else {
                return Err(Failure::bad_request(
                    "Choose an image, or give the size of a new disk.",
                ));
            };
            vm.disk_attach(id, &t)
                .await
                .map(|_| "disk attach requested".to_owned())
        }
        "nic" => {
            let n: i64 = num("network", &f.network)?;
            vm.nic_attach(id, &format!("NIC=[NETWORK_ID=\"{n}\"]"))
                .await
                .map(|_| "NIC attach requested".to_owned())
        }
        _ => return Err(Failure::not_found(format!("No VM operation {op:?}"))),
    };
    Ok(done(&ctx, &back, id, result))
}

/// `POST /vms/{id}/{kind}/{n}/{op}`: snapshot revert/delete, disk and NIC detach.
pub async fn sub_op(
    ctx: Ctx,
    Path((id, kind, n, op)): Path<(String, String, String, String)>,
) -> PageResult {
    let id = id_path(&id)?;
    let n: i64 = num("id", &n)?;
    let back = format!("vms/{id}");
    let vm = ctx.oned().vm();
    let result = match (kind.as_str(), op.as_str()) {
        ("snapshot", "revert") => vm
            .snapshot_revert(id, n)
            .await
            .map(|_| format!("revert to snapshot {n} requested")),
        ("snapshot", "delete") => vm
            .snapshot_delete(id, n)
            .await
            .map(|_| format!("deletion of snapshot {n} requested")),
        ("disk", "detach") => vm
            .disk_detach(id, n)
            .await
            .map(|_| format!("detach of disk {n} requested")),
        ("nic", "detach") => vm
            .nic_detach(id, n)
            .await
            .map(|_| format!("detach of NIC {n} requested")),
        _ => return Err(Failure::not_found(format!("No VM operation {kind}/{op}"))),
    };
    Ok(done(&ctx, &back, id, result))
}

/// `POST /vms/{id}/disksnap/{disk}`: a disk snapshot.
pub async fn disk_snapshot_create(
    ctx: Ctx,
    Path((id, disk)): Path<(String, String)>,
    Form(f): Form<OpForm>,
) -> PageResult {
    let id = id_path(&id)?;
    let disk: i64 = num("disk", &disk)?;
    let r = ctx
        .oned()
        .vm()
        .disk_snapshot_create(id, disk, f.name.trim())
        .await
        .map(|s| format!("snapshot {s} of disk {disk} requested"));
    Ok(done(&ctx, &format!("vms/{id}"), id, r))
}

/// `POST /vms/{id}/disksave/{disk}`: a new image from the disk (OpenNebula's disk-saveas;
/// oned copies in the background, the page returns at once).
pub async fn disk_saveas(
    ctx: Ctx,
    Path((id, disk)): Path<(String, String)>,
    Form(f): Form<OpForm>,
) -> PageResult {
    let id = id_path(&id)?;
    let disk: i64 = num("disk", &disk)?;
    let r = ctx
        .oned()
        .vm()
        .disk_saveas(id, disk, f.name.trim(), "", -1)
        .await
        .map(|img| format!("disk {disk} is being saved as image {img}"));
    Ok(done(&ctx, &format!("vms/{id}"), id, r))
}

/// `POST /vms/{id}/disksnap/{disk}/{snap}/{op}`: revert or delete a disk snapshot.
pub async fn disk_snapshot_op(
    ctx: Ctx,
    Path((id, disk, snap, op)): Path<(String, String, String, String)>,
) -> PageResult {
    let id = id_path(&id)?;
    let disk: i64 = num("disk", &disk)?;
    let s: i64 = num("snapshot", &snap)?;
    let vm = ctx.oned().vm();
    let r = match op.as_str() {
        "revert" => vm
            .disk_snapshot_revert(id, disk, s)
            .await
            .map(|_| format!("revert of disk {disk} to snapshot {s} requested")),
        "delete" => vm
            .disk_snapshot_delete(id, disk, s)
            .await
            .map(|_| format!("deletion of snapshot {s} of disk {disk} requested")),
        _ => return Err(Failure::not_found("No such disk snapshot operation")),
    };
    Ok(done(&ctx, &format!("vms/{id}"), id, r))
}

fn done(ctx: &Ctx, back: &str, id: i64, r: Result<String, oca::OcaError>) -> Response {
    match r {
        Ok(msg) => ctx.redirect_ok(back, format!("VM {id}: {msg}.")),
        Err(e) => ctx.redirect_err(back, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(state: i32, lcm: i32) -> Vm {
        Vm {
            id: 4,
            name: "web".into(),
            state,
            lcm_state: lcm,
            ..Vm::default()
        }
    }

    #[test]
    fn actions_follow_the_state() {
        let names = |v: &Vm| {
            actions_for(v)
                .iter()
                .map(|a| a.0.name())
                .collect::<Vec<_>>()
        };
        let running = names(&vm(3, 3));
        assert!(running.contains(&"poweroff") && running.contains(&"terminate"));
        assert!(!running.contains(&"resume"));
        let off = names(&vm(8, 0));
        assert!(off.contains(&"resume") && !off.contains(&"poweroff"));
        assert!(names(&vm(6, 0)).is_empty(), "nothing for a DONE VM");
        // Everything that stops or destroys asks first.
        for (a, _, confirm) in actions_for(&vm(3, 3)) {
            if a != VmAction::Resume {
                assert!(confirm.is_some(), "{a:?}");
            }
        }
        assert_eq!(
            action_from_name("poweroff-hard"),
            Some(VmAction::PoweroffHard)
        );
        assert_eq!(action_from_name("rm -rf"), None);
    }
}
