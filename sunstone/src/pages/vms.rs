//! The VM list: paged and filtered by oned (`one.vmpool.info` with a page range, a state
//! filter and OpenNebula 7's search), so a page costs the same with 20 VMs or 20,000. The
//! table body asks every second whether anything changed; the server answers 204 (nothing
//! to do) unless the rows it would draw differ from the ones the page shows.

use super::{hash_of, poll_attrs};
use crate::html::{self, mb};
use crate::web::{Ctx, PageResult};
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use maud::{Markup, html};
use oca::{PoolFilter, PoolRange, Vm, VmQuery, VmState, VmStateFilter};
use serde::Deserialize;

pub const PAGE_SIZES: [i64; 4] = [20, 50, 100, 200];
const DEFAULT_SIZE: i64 = 50;

/// The list's query string.
#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct ListQuery {
    /// First VM shown (0-based).
    pub offset: i64,
    pub size: i64,
    /// Part of the VM's name.
    pub q: String,
    /// "" (all but DONE), "any", or a STATE name (`POWEROFF`).
    pub state: String,
    /// "" (all I may see) or "mine".
    pub owner: String,
    /// The hash of the rows the page shows (polls only).
    pub since: String,
}

impl ListQuery {
    fn size(&self) -> i64 {
        if PAGE_SIZES.contains(&self.size) {
            self.size
        } else {
            DEFAULT_SIZE
        }
    }

    fn offset(&self) -> i64 {
        self.offset.max(0)
    }

    fn state_filter(&self) -> VmStateFilter {
        match self.state.as_str() {
            "any" => VmStateFilter::Any,
            s => VmState::from_name(s).map_or(VmStateFilter::NotDone, VmStateFilter::Only),
        }
    }

    /// The oned query. The page asks for one VM more than it shows, to know whether there
    /// is a next page without counting the pool.
    pub fn oned_query(&self) -> VmQuery {
        // The search syntax separates terms with & and keys from values with =.
        let name: String = self.q.chars().filter(|c| *c != '&' && *c != '=').collect();
        VmQuery {
            filter: if self.owner == "mine" {
                PoolFilter::Mine
            } else {
                PoolFilter::All
            },
            range: PoolRange::page(self.offset(), self.size() + 1),
            state: self.state_filter(),
            search: if name.trim().is_empty() {
                String::new()
            } else {
                format!("VM.NAME={}", name.trim())
            },
        }
    }

    /// The query string of this list, with another offset.
    fn to_query(&self, offset: i64) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if offset > 0 {
            s.append_pair("offset", &offset.to_string());
        }
        if self.size() != DEFAULT_SIZE {
            s.append_pair("size", &self.size().to_string());
        }
        for (k, v) in [
            ("q", &self.q),
            ("state", &self.state),
            ("owner", &self.owner),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }
}

/// Reads a page of VMs: (the page, whether more follow).
pub async fn fetch(ctx: &Ctx, q: &ListQuery) -> Result<(Vec<Vm>, bool), oca::OcaError> {
    let mut vms = ctx.oned().vm().list(&q.oned_query()).await?;
    let more = vms.len() as i64 > q.size();
    vms.truncate(q.size() as usize);
    Ok((vms, more))
}

fn rows(vms: &[Vm]) -> Markup {
    html! {
        @for vm in vms {
            tr data-id=(vm.id) {
                td.num { (vm.id) }
                td { a href=(format!("vms/{}", vm.id)) { (vm.name) } }
                td { (vm.owner.uname) }
                td { (html::vm_state(vm)) }
                td { (vm.host().unwrap_or("")) }
                td.ips { (vm.ips().join(", ")) }
                td.num { (vm.cpu().unwrap_or("")) }
                td.num { (mb(vm.memory_mb() as f64)) }
                td { (html::time(vm.stime)) }
            }
        }
        @if vms.is_empty() {
            tr { td colspan="9" .empty { "No VMs here." } }
        }
    }
}

/// The table body with its poll attributes (the poll URL carries the hash of these rows),
/// and that hash.
fn tbody(q: &ListQuery, vms: &[Vm]) -> (Markup, String) {
    let inner = rows(vms);
    let since = hash_of(&inner.0);
    let mut poll = q.to_query(q.offset());
    if !poll.is_empty() {
        poll.push('&');
    }
    poll.push_str(&format!("since={since}"));
    let body = html! {
        tbody #vm-rows hx-get=(format!("vms/rows?{poll}")) hx-trigger="every 1s" hx-swap="outerHTML" hx-headers=(poll_attrs()) {
            (inner)
        }
    };
    (body, since)
}

/// `GET /vms`.
pub async fn list(ctx: Ctx, Query(q): Query<ListQuery>) -> PageResult {
    let (vms, more) = fetch(&ctx, &q).await?;
    let offset = q.offset();
    let size = q.size();
    let content = html! {
        div.titlebar {
            h1 { "Virtual machines" }
            a.button.primary href="templates" { "New VM" }
        }
        form.filters method="get" action="vms" {
            input type="search" name="q" value=(q.q) placeholder="Name contains…" aria-label="Name contains";
            select name="state" aria-label="State" {
                @for (v, label) in STATE_CHOICES {
                    option value=(v) selected[q.state == *v] { (label) }
                }
            }
            select name="owner" aria-label="Owner" {
                option value="" selected[q.owner.is_empty()] { "All I can see" }
                option value="mine" selected[q.owner == "mine"] { "Mine" }
            }
            select name="size" aria-label="Page size" {
                @for s in PAGE_SIZES { option value=(s) selected[size == s] { (s) " per page" } }
            }
            button type="submit" { "Filter" }
        }
        table.list #vms {
            thead { tr {
                th.num { "ID" } th { "Name" } th { "Owner" } th { "State" } th { "Host" }
                th { "IPs" } th.num { "CPU" } th.num { "Memory" } th { "Started" }
            } }
            (tbody(&q, &vms).0)
        }
        nav.pager aria-label="Pages" {
            @if offset > 0 {
                a href=(format!("vms?{}", q.to_query((offset - size).max(0)))) rel="prev" { "← Previous" }
            }
            span { "VMs " (if vms.is_empty() { offset } else { offset + 1 }) "–" (offset + vms.len() as i64) }
            @if more {
                a href=(format!("vms?{}", q.to_query(offset + size))) rel="next" { "Next →" }
            }
        }
    };
    Ok(ctx.page("Virtual machines", content))
}

/// `GET /vms/rows`: the table body, or 204 when it is what the page shows already.
pub async fn rows_fragment(ctx: Ctx, Query(q): Query<ListQuery>) -> PageResult {
    let (vms, _) = fetch(&ctx, &q).await?;
    let (body, hash) = tbody(&q, &vms);
    if !q.since.is_empty() && q.since == hash {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(ctx.fragment(body))
}

const STATE_CHOICES: &[(&str, &str)] = &[
    ("", "Any state but DONE"),
    ("ACTIVE", "Active"),
    ("PENDING", "Pending"),
    ("HOLD", "On hold"),
    ("POWEROFF", "Powered off"),
    ("SUSPENDED", "Suspended"),
    ("STOPPED", "Stopped"),
    ("UNDEPLOYED", "Undeployed"),
    ("FAILED", "Failed"),
    ("DONE", "Done"),
    ("any", "Any state"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_page_and_filter_on_the_server() {
        let q = ListQuery {
            offset: 100,
            size: 20,
            q: "web&x=1".into(),
            state: "POWEROFF".into(),
            owner: "mine".into(),
            since: String::new(),
        };
        let o = q.oned_query();
        assert_eq!(
            o.range,
            PoolRange {
                start: 100,
                end: -21
            }
        );
        assert_eq!(o.search, "VM.NAME=webx1");
        assert_eq!(o.state, VmStateFilter::Only(VmState::Poweroff));
        assert_eq!(o.filter, PoolFilter::Mine);
        assert_eq!(
            q.to_query(120),
            "offset=120&size=20&q=web%26x%3D1&state=POWEROFF&owner=mine"
        );
        let d = ListQuery::default();
        assert_eq!(d.size(), 50);
        assert_eq!(d.oned_query().state, VmStateFilter::NotDone);
        assert_eq!(d.to_query(0), "");
    }
}
