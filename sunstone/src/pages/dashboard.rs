//! The dashboard: my VMs by state, my quota usage as bars, and for administrators the
//! hosts at a glance. The page is drawn from one `one.user.info` (and, for administrators,
//! `one.hostpool.info`); the VM counts need the user's whole VM pool, so they arrive a
//! moment later (htmx) and are kept five seconds per user, and the page never waits on them.

use crate::html::{self, bar, mb};
use crate::web::{Ctx, PageResult};
use maud::{Markup, html};
use oca::objects::vm::vm_short_state;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const COUNTS_TTL: Duration = Duration::from_secs(5);

/// VM counts per user, kept a few seconds: a dashboard opened by many tabs costs one pool
/// read.
#[derive(Default)]
pub struct Cache {
    counts: Mutex<HashMap<i64, (Instant, Counts)>>,
}

impl Cache {
    pub fn sweep(&self) {
        let now = Instant::now();
        self.counts
            .lock()
            .unwrap()
            .retain(|_, (t, _)| now.duration_since(*t) < COUNTS_TTL);
    }
}

/// VMs per display state, in a stable order.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub by_state: BTreeMap<(u8, &'static str), u64>,
    pub total: u64,
}

/// The order states are shown in, and the colour class of each.
fn state_rank(short: &'static str) -> (u8, &'static str) {
    match short {
        "runn" => (0, "good"),
        "pend" | "hold" | "init" | "clon" => (1, "wait"),
        "fail" | "unkn" => (3, "bad"),
        "poff" | "stop" | "susp" | "unde" | "done" => (4, "off"),
        _ => (2, "busy"),
    }
}

fn label(short: &str) -> &'static str {
    match short {
        "runn" => "running",
        "pend" => "pending",
        "hold" => "on hold",
        "init" => "init",
        "clon" => "cloning",
        "fail" => "failed",
        "unkn" => "unknown",
        "poff" => "powered off",
        "stop" => "stopped",
        "susp" => "suspended",
        "unde" => "undeployed",
        "done" => "done",
        "prol" => "prolog",
        "boot" => "booting",
        "migr" => "migrating",
        "save" => "saving",
        "epil" => "epilog",
        "shut" => "shutting down",
        "hotp" => "hotplugging",
        "snap" => "snapshotting",
        _ => "busy",
    }
}

/// Counts a VM pool document by short state, reading only STATE and LCM_STATE.
///
/// A pool of 20,000 VMs is an 8 MB document: building its tree takes longer than oned
/// takes to write it, so this scans for each VM's `<STATE>n</STATE><LCM_STATE>m</LCM_STATE>`
/// pair (adjacent in every VM body, vm_pool.xsd's order) and checks it found one per
/// `<VM>`; a document written any other way is read the slow, sure way.
pub fn count_states(xml: &str) -> Result<Counts, oca::OcaError> {
    if let Some(c) = scan_states(xml) {
        return Ok(c);
    }
    count_states_dom(xml)
}

fn scan_states(xml: &str) -> Option<Counts> {
    let mut c = Counts::default();
    let mut rest = xml;
    while let Some(at) = rest.find("<STATE>") {
        rest = &rest[at + "<STATE>".len()..];
        let end = rest.find("</STATE>")?;
        let state: i32 = rest[..end].trim().parse().ok()?;
        rest = &rest[end + "</STATE>".len()..];
        // MONITORING/STATE is not followed by LCM_STATE: not a VM's state.
        let Some(after) = rest.strip_prefix("<LCM_STATE>") else {
            continue;
        };
        let end = after.find("</LCM_STATE>")?;
        let lcm: i32 = after[..end].trim().parse().ok()?;
        rest = &after[end..];
        let short = vm_short_state(state, lcm);
        *c.by_state.entry((state_rank(short).0, short)).or_default() += 1;
        c.total += 1;
    }
    (c.total as usize == xml.matches("<VM>").count()).then_some(c)
}

/// The same count through a parsed tree.
fn count_states_dom(xml: &str) -> Result<Counts, oca::OcaError> {
    let doc = oca::dom::Document::parse(xml)?;
    let mut c = Counts::default();
    for vm in doc.root().children_named("VM") {
        let n = |k: &str| {
            vm.child_text(k)
                .and_then(|v| v.trim().parse::<i32>().ok())
                .unwrap_or(-1)
        };
        let short = vm_short_state(n("STATE"), n("LCM_STATE"));
        let (rank, _) = state_rank(short);
        *c.by_state.entry((rank, short)).or_default() += 1;
        c.total += 1;
    }
    Ok(c)
}

async fn counts(ctx: &Ctx) -> Result<Counts, oca::OcaError> {
    let uid = ctx.uid();
    if let Some((t, c)) = ctx.app.cache.counts.lock().unwrap().get(&uid)
        && t.elapsed() < COUNTS_TTL
    {
        return Ok(c.clone());
    }
    let q = oca::VmQuery {
        filter: oca::PoolFilter::Mine,
        ..oca::VmQuery::default()
    };
    let xml = ctx.oned().vm().list_xml(&q).await?;
    let c = count_states(&xml)?;
    ctx.app
        .cache
        .counts
        .lock()
        .unwrap()
        .insert(uid, (Instant::now(), c.clone()));
    Ok(c)
}

/// `GET /dashboard/vms`: my VMs by state (a fragment).
pub async fn vm_counts(ctx: Ctx) -> PageResult {
    let c = counts(&ctx).await?;
    Ok(ctx.fragment(counts_view(&c)))
}

fn counts_view(c: &Counts) -> Markup {
    html! {
        div #vm-counts {
            p.big { (c.total) " VMs" }
            ul.states {
                @for ((_, short), n) in &c.by_state {
                    li { a href=(format!("vms?owner=mine")) {
                        span class=(format!("badge {}", state_rank(short).1)) { (label(short)) }
                        " " strong { (n) }
                    } }
                }
            }
        }
    }
}

/// A quota row: usage against its limit, the default limit when the user's is -1.
fn quota_row(name: &str, used: f64, limit: f64, fmt: fn(f64) -> String) -> Markup {
    html! {
        div.quota {
            span.qname { (name) }
            @if limit >= 0.0 {
                (bar(used, limit, &format!("{} of {}", fmt(used), fmt(limit))))
            } @else {
                span.barlabel { (fmt(used)) " (no limit)" }
            }
        }
    }
}

fn limit_of(mine: Option<&str>, default: Option<&str>) -> f64 {
    let parse = |s: Option<&str>| s.and_then(|v| v.trim().parse::<f64>().ok());
    match parse(mine) {
        Some(v) if v >= 0.0 => v,
        // -2: no limit, whatever the default says.
        Some(-2.0) => -1.0,
        _ => match parse(default) {
            Some(v) if v >= 0.0 => v,
            _ => -1.0,
        },
    }
}

fn quotas_view(user: &oca::User) -> Markup {
    let vmq = user.quotas.vm_global();
    let def = user
        .default_quotas
        .as_ref()
        .and_then(|d| d.vm_global().cloned());
    let get = |k: &str| vmq.and_then(|v| v.get(k));
    let getd = |k: &str| def.as_ref().and_then(|v| v.get(k));
    let used = |k: &str| {
        get(&format!("{k}_USED"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let count = |v: f64| format!("{v:.0}");
    let cpu = |v: f64| format!("{v:.2}");
    html! {
        @if vmq.is_none() && def.is_none() {
            p.muted { "No quotas are set for you." }
        }
        (quota_row("VMs", used("VMS"), limit_of(get("VMS"), getd("VMS")), count))
        (quota_row("CPU", used("CPU"), limit_of(get("CPU"), getd("CPU")), cpu))
        (quota_row("Memory", used("MEMORY"), limit_of(get("MEMORY"), getd("MEMORY")), mb))
        (quota_row("Running VMs", used("RUNNING_VMS"), limit_of(get("RUNNING_VMS"), getd("RUNNING_VMS")), count))
        (quota_row("System disk", used("SYSTEM_DISK_SIZE"), limit_of(get("SYSTEM_DISK_SIZE"), getd("SYSTEM_DISK_SIZE")), mb))
        @for ds in &user.quotas.datastore {
            (quota_row(&format!("Datastore {} images", ds.get("ID").unwrap_or("?")),
                ds.get("SIZE_USED").and_then(|v| v.parse().ok()).unwrap_or(0.0),
                limit_of(ds.get("SIZE"), None), mb))
        }
        @for n in &user.quotas.network {
            (quota_row(&format!("Network {} leases", n.get("ID").unwrap_or("?")),
                n.get("LEASES_USED").and_then(|v| v.parse().ok()).unwrap_or(0.0),
                limit_of(n.get("LEASES"), None), count))
        }
    }
}

fn hosts_view(hosts: &[oca::Host]) -> Markup {
    let (mut cpu_used, mut cpu_max, mut mem_used, mut mem_max) = (0.0, 0.0, 0.0, 0.0);
    let mut states: BTreeMap<String, u64> = BTreeMap::new();
    for h in hosts {
        cpu_used += h.share.cpu_usage as f64;
        cpu_max += h.share.max_cpu as f64;
        mem_used += h.share.mem_usage as f64 / 1024.0;
        mem_max += h.share.max_mem as f64 / 1024.0;
        *states.entry(h.state_name()).or_default() += 1;
    }
    html! {
        p.big { (hosts.len()) " hosts" }
        ul.states { @for (s, n) in &states { li { a href="admin/hosts" { (s) " " strong { (n) } } } } }
        div.quota { span.qname { "CPU allocated" } (bar(cpu_used, cpu_max, &format!("{:.0} of {:.0} %", cpu_used, cpu_max))) }
        div.quota { span.qname { "Memory allocated" } (bar(mem_used, mem_max, &format!("{} of {}", mb(mem_used), mb(mem_max)))) }
    }
}

/// `GET /`.
pub async fn show(ctx: Ctx) -> PageResult {
    let c = ctx.oned();
    let (user, hosts) = tokio::join!(async { c.user().me().await }, async {
        if ctx.is_admin() {
            Some(c.host().list().await)
        } else {
            None
        }
    });
    let user = user?;
    let content = html! {
        h1 { "Dashboard" }
        section.cards {
            div.card {
                h2 { "My VMs" }
                div #vm-counts hx-get="dashboard/vms" hx-trigger="load" hx-swap="outerHTML" {
                    p.muted { "Counting… " a href="vms?owner=mine" { "(see my VMs)" } }
                }
                p { a.button.primary href="templates" { "New VM" } }
            }
            div.card {
                h2 { "My quotas" }
                (quotas_view(&user))
            }
            @if let Some(hosts) = hosts {
                div.card {
                    h2 { "Hosts" }
                    @match hosts {
                        Ok(h) => (hosts_view(&h)),
                        Err(e) => p.flash.error { (e.to_string()) },
                    }
                }
            }
        }
        section.cards {
            div.card {
                h2 { "You" }
                (html::facts(&[
                    ("User", html!{ (user.name) " (" (user.id) ")" }),
                    ("Group", html!{ (user.gname) }),
                    ("Groups", html!{ (user.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(", ")) }),
                ]))
            }
        }
    };
    Ok(ctx.page("Dashboard", content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_state() {
        let xml = "<VM_POOL><VM><ID>1</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE></VM>\
                   <VM><ID>2</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE></VM>\
                   <VM><ID>3</ID><STATE>8</STATE><LCM_STATE>0</LCM_STATE></VM>\
                   <VM><ID>4</ID><STATE>1</STATE><LCM_STATE>0</LCM_STATE></VM></VM_POOL>";
        let c = count_states(xml).unwrap();
        let slow = count_states_dom(xml).unwrap();
        assert_eq!(c.by_state, slow.by_state, "the scan and the tree agree");
        assert_eq!(c.total, 4);
        // MONITORING/STATE is not a VM state; an odd layout falls back to the tree.
        let mon = "<VM_POOL><VM><ID>1</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE>\
                   <MONITORING><STATE>a</STATE></MONITORING></VM></VM_POOL>";
        assert!(
            scan_states(mon).is_none(),
            "a non-numeric STATE: not trusted"
        );
        let mon = "<VM_POOL><VM><ID>1</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE>\
                   <MONITORING><STATE>1</STATE></MONITORING></VM></VM_POOL>";
        assert_eq!(scan_states(mon).unwrap().total, 1);
        let spaced =
            "<VM_POOL>\n <VM>\n  <STATE>8</STATE>\n  <LCM_STATE>0</LCM_STATE>\n </VM>\n</VM_POOL>";
        assert!(scan_states(spaced).is_none());
        assert_eq!(count_states(spaced).unwrap().by_state[&(4, "poff")], 1);
        assert_eq!(c.by_state[&(0, "runn")], 2);
        assert_eq!(c.by_state[&(4, "poff")], 1);
        let first = c.by_state.keys().next().unwrap();
        assert_eq!(first.1, "runn", "running first");
    }

    #[test]
    fn quota_limits() {
        assert_eq!(limit_of(Some("10"), None), 10.0);
        assert_eq!(limit_of(Some("-1"), Some("4")), 4.0);
        assert_eq!(limit_of(Some("-1"), Some("-2")), -1.0);
        assert_eq!(limit_of(Some("-2"), Some("4")), -1.0);
        assert_eq!(limit_of(None, None), -1.0);
    }
}
