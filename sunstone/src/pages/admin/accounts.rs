//! Users, groups, their quotas, and ACL rules (administrators).

use crate::html::{self, bar, mb, template_text};
use crate::pages::id_path;
use crate::web::{Ctx, Failure, PageResult, num};
use axum::Form;
use axum::extract::Path;
use maud::{Markup, html};
use oca::{Quotas, Vector};
use serde::Deserialize;

fn names(groups: &[oca::Group], ids: &[i64]) -> String {
    ids.iter()
        .map(|id| {
            groups
                .iter()
                .find(|g| g.id == *id)
                .map_or_else(|| id.to_string(), |g| g.name.clone())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------
// Quotas

/// The VM quota attributes the form edits: (attribute, label, is a size in MB).
const VM_QUOTA: &[(&str, &str, bool)] = &[
    ("VMS", "VMs", false),
    ("CPU", "CPU", false),
    ("MEMORY", "Memory (MB)", true),
    ("RUNNING_VMS", "Running VMs", false),
    ("RUNNING_CPU", "Running CPU", false),
    ("RUNNING_MEMORY", "Running memory (MB)", true),
    ("SYSTEM_DISK_SIZE", "System disk (MB)", true),
];

/// A quota section: usage bars and a form for the VM limits (-1 the default, -2 no limit),
/// posting to `action`.
fn quota_section(ctx: &Ctx, q: &Quotas, action: &str) -> Markup {
    let vm = q.vm_global().cloned().unwrap_or_default();
    html! {
        section.card #quotas {
            h2 { "Quotas" }
            @for (attr, label, is_mb) in VM_QUOTA {
                @let used: f64 = vm.get(&format!("{attr}_USED")).and_then(|v| v.parse().ok()).unwrap_or(0.0);
                @let limit: f64 = vm.get(attr).and_then(|v| v.parse().ok()).unwrap_or(-1.0);
                @let fmt = |v: f64| if *is_mb { mb(v) } else { format!("{v}") };
                div.quota {
                    span.qname { (label) }
                    @if limit >= 0.0 { (bar(used, limit, &format!("{} of {}", fmt(used), fmt(limit)))) }
                    @else { span.barlabel { (fmt(used)) (if limit == -2.0 { " (no limit)" } else { " (default limit)" }) } }
                }
            }
            @for ds in &q.datastore {
                div.quota { span.qname { "Datastore " (ds.get("ID").unwrap_or("?")) }
                    span.barlabel { (mb(ds.get("SIZE_USED").and_then(|v| v.parse().ok()).unwrap_or(0.0))) " used, limit " (ds.get("SIZE").unwrap_or("-1")) " MB" } }
            }
            @for n in &q.network {
                div.quota { span.qname { "Network " (n.get("ID").unwrap_or("?")) }
                    span.barlabel { (n.get("LEASES_USED").unwrap_or("0")) " leases, limit " (n.get("LEASES").unwrap_or("-1")) } }
            }
            form.stack method="post" action=(action) {
                (ctx.csrf_field())
                p.muted { "Limits: a number, -1 for the default quota, -2 for no limit." }
                @for (attr, label, _) in VM_QUOTA {
                    label { (label) input type="number" step="any" name=(attr) value=(vm.get(attr).unwrap_or("-1")); }
                }
                button type="submit" { "Set quotas" }
            }
        }
    }
}

/// The `VM=[...]` quota template of a quota form.
fn quota_template(form: &[(String, String)]) -> Result<String, Failure> {
    let mut v = Vector::new();
    for (attr, label, _) in VM_QUOTA {
        if let Some((_, val)) = form.iter().find(|(k, _)| k == attr) {
            if val.trim().is_empty() {
                continue;
            }
            let n: f64 = num(label, val)?;
            if n < -2.0 {
                return Err(Failure::bad_request(format!("{label}: {n} is not a limit")));
            }
            v.set(attr, val.trim());
        }
    }
    let mut t = oca::Template::new();
    t.set_vector("VM", v);
    Ok(t.to_text())
}

// ---------------------------------------------------------------------------------------
// Users

/// `GET /admin/users`.
pub async fn users(ctx: Ctx) -> PageResult {
    let c = ctx.oned();
    let (users, groups) = tokio::join!(async { c.user().list().await }, async {
        c.group().list().await
    });
    let users = users?;
    let groups = groups.unwrap_or_default();
    let content = html! {
        h1 { "Users" }
        table.list #users {
            thead { tr { th.num { "ID" } th { "Name" } th { "Group" } th { "Groups" } th { "Auth" } th { "Enabled" } th.num { "VMs" } } }
            tbody {
                @for u in &users {
                    tr {
                        td.num { (u.id) }
                        td { a href=(format!("admin/users/{}", u.id)) { (u.name) } }
                        td { (u.gname) }
                        td { (names(&groups, &u.groups)) }
                        td { (u.auth_driver) }
                        td { (if u.enabled { "yes" } else { "no" }) }
                        td.num { (u.quotas.vm_global().and_then(|v| v.get("VMS_USED")).unwrap_or("0")) }
                    }
                }
            }
        }
        div.card {
            h2 { "New user" }
            form.inline #new-user method="post" action="admin/users" {
                (ctx.csrf_field())
                input type="text" name="name" placeholder="user name" aria-label="User name" required;
                input type="password" name="password" placeholder="password" aria-label="Password" autocomplete="new-password" required;
                select name="group" aria-label="Group" { @for g in &groups { option value=(g.id) selected[g.id == 1] { (g.name) } } }
                button.primary type="submit" { "Create user" }
            }
        }
    };
    Ok(ctx.page("Users", content))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewUser {
    name: String,
    password: String,
    group: String,
}

/// `POST /admin/users`.
pub async fn user_create(ctx: Ctx, Form(f): Form<NewUser>) -> PageResult {
    let groups: Vec<i64> = if f.group.is_empty() {
        vec![]
    } else {
        vec![num("group", &f.group)?]
    };
    Ok(
        match ctx
            .oned()
            .user()
            .allocate(f.name.trim(), &f.password, "", &groups)
            .await
        {
            Ok(id) => ctx.redirect_ok(&format!("admin/users/{id}"), format!("User {id} created.")),
            Err(e) => ctx.redirect_err("admin/users", e),
        },
    )
}

/// `GET /admin/users/{id}`.
pub async fn user_show(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let id = id_path(&id)?;
    let c = ctx.oned();
    let (u, groups) = tokio::join!(async { c.user().info(id).await }, async {
        c.group().list().await
    });
    let u = u?;
    let groups = groups.unwrap_or_default();
    let group_select = |name: &str| {
        html! {
            select name=(name) aria-label="Group" { @for g in &groups { option value=(g.id) { (g.name) " (" (g.id) ")" } } }
        }
    };
    let content = html! {
        h1 { "User " (u.id) ": " (u.name) }
        div.actions {
            @if u.enabled { (ctx.button(&format!("admin/users/{id}/disable"), "Disable", &[], Some(&format!("Disable user {}?", u.name)), "")) }
            @else { (ctx.button(&format!("admin/users/{id}/enable"), "Enable", &[], None, "")) }
            (ctx.button(&format!("admin/users/{id}/delete"), "Delete", &[], Some(&format!("Delete user {}?", u.name)), "danger"))
        }
        section.cards {
            div.card {
                (html::facts(&[
                    ("Primary group", html!{ (u.gname) " (" (u.gid) ")" }),
                    ("Groups", html!{ (names(&groups, &u.groups)) }),
                    ("Authentication", html!{ (u.auth_driver) }),
                    ("Enabled", html!{ (if u.enabled { "yes" } else { "no" }) }),
                    ("Login tokens", html!{ (u.login_tokens.len()) }),
                ]))
                form.inline method="post" action=(format!("admin/users/{id}/chgrp")) { (ctx.csrf_field()) (group_select("group")) button type="submit" { "Set primary group" } }
                form.inline method="post" action=(format!("admin/users/{id}/addgroup")) { (ctx.csrf_field()) (group_select("group")) button type="submit" { "Add to group" } }
                form.inline method="post" action=(format!("admin/users/{id}/delgroup")) { (ctx.csrf_field()) (group_select("group")) button type="submit" { "Remove from group" } }
                form.inline method="post" action=(format!("admin/users/{id}/passwd")) {
                    (ctx.csrf_field())
                    input type="password" name="password" placeholder="new password" aria-label="New password" autocomplete="new-password" required;
                    button type="submit" { "Set password" }
                }
            }
            (quota_section(&ctx, &u.quotas, &format!("admin/users/{id}/quota")))
        }
        section { h2 { "Template" } (template_text(&u.template)) }
    };
    Ok(ctx.page(&format!("User {}", u.name), content))
}

/// `POST /admin/users/{id}/{op}`.
pub async fn user_op(
    ctx: Ctx,
    Path((id, op)): Path<(String, String)>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let id = id_path(&id)?;
    let back = format!("admin/users/{id}");
    let field = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v.as_str())
    };
    let u = ctx.oned().user();
    let r = match op.as_str() {
        "enable" => u.enable(id, true).await,
        "disable" => u.enable(id, false).await,
        "chgrp" => u.chgrp(id, num("group", field("group"))?).await,
        "addgroup" => u.addgroup(id, num("group", field("group"))?).await,
        "delgroup" => u.delgroup(id, num("group", field("group"))?).await,
        "passwd" => u.passwd(id, field("password")).await,
        "quota" => u.quota(id, &quota_template(&form)?).await,
        "delete" => {
            return Ok(match u.delete(id).await {
                Ok(()) => ctx.redirect_ok("admin/users", format!("User {id} deleted.")),
                Err(e) => ctx.redirect_err(&back, e),
            });
        }
        _ => return Err(Failure::not_found(format!("No user operation {op:?}"))),
    };
    Ok(match r {
        Ok(()) => ctx.redirect_ok(&back, format!("User {id}: {op} done.")),
        Err(e) => ctx.redirect_err(&back, e),
    })
}

// ---------------------------------------------------------------------------------------
// Groups

/// `GET /admin/groups`.
pub async fn groups(ctx: Ctx) -> PageResult {
    let groups = ctx.oned().group().list().await?;
    let content = html! {
        h1 { "Groups" }
        table.list #groups {
            thead { tr { th.num { "ID" } th { "Name" } th.num { "Users" } th.num { "VMs" } } }
            tbody {
                @for g in &groups {
                    tr {
                        td.num { (g.id) }
                        td { a href=(format!("admin/groups/{}", g.id)) { (g.name) } }
                        td.num { (g.users.len()) }
                        td.num { (g.quotas.vm_global().and_then(|v| v.get("VMS_USED")).unwrap_or("0")) }
                    }
                }
            }
        }
        div.card {
            h2 { "New group" }
            form.inline method="post" action="admin/groups" {
                (ctx.csrf_field())
                input type="text" name="name" placeholder="group name" aria-label="Group name" required;
                button.primary type="submit" { "Create group" }
            }
        }
    };
    Ok(ctx.page("Groups", content))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NameForm {
    name: String,
}

/// `POST /admin/groups`.
pub async fn group_create(ctx: Ctx, Form(f): Form<NameForm>) -> PageResult {
    Ok(match ctx.oned().group().allocate(f.name.trim()).await {
        Ok(id) => ctx.redirect_ok(
            &format!("admin/groups/{id}"),
            format!("Group {id} created."),
        ),
        Err(e) => ctx.redirect_err("admin/groups", e),
    })
}

/// `GET /admin/groups/{id}`.
pub async fn group_show(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let id = id_path(&id)?;
    let g = ctx.oned().group().info(id).await?;
    let content = html! {
        h1 { "Group " (g.id) ": " (g.name) }
        section.cards {
            div.card {
                (html::facts(&[
                    ("Users", html!{ @for u in &g.users { a href=(format!("admin/users/{u}")) { (u) } " " } }),
                    ("Administrators", html!{ @for u in &g.admins { a href=(format!("admin/users/{u}")) { (u) } " " } }),
                ]))
                p { (ctx.button(&format!("admin/groups/{id}/delete"), "Delete group", &[], Some(&format!("Delete group {}?", g.name)), "danger")) }
            }
            (quota_section(&ctx, &g.quotas, &format!("admin/groups/{id}/quota")))
        }
        section { h2 { "Template" } (template_text(&g.template)) }
    };
    Ok(ctx.page(&format!("Group {}", g.name), content))
}

/// `POST /admin/groups/{id}/{op}`: quota, delete.
pub async fn group_op(
    ctx: Ctx,
    Path((id, op)): Path<(String, String)>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let id = id_path(&id)?;
    let back = format!("admin/groups/{id}");
    let g = ctx.oned().group();
    Ok(match op.as_str() {
        "quota" => match g.quota(id, &quota_template(&form)?).await {
            Ok(()) => ctx.redirect_ok(&back, "Quotas set."),
            Err(e) => ctx.redirect_err(&back, e),
        },
        "delete" => match g.delete(id).await {
            Ok(()) => ctx.redirect_ok("admin/groups", format!("Group {id} deleted.")),
            Err(e) => ctx.redirect_err(&back, e),
        },
        _ => return Err(Failure::not_found(format!("No group operation {op:?}"))),
    })
}

// ---------------------------------------------------------------------------------------
// ACL rules

/// `GET /admin/acls`.
pub async fn acls(ctx: Ctx) -> PageResult {
    let rules = ctx.oned().acl().list().await?;
    let content = html! {
        h1 { "ACL rules" }
        table.list #acls {
            thead { tr { th.num { "ID" } th { "Rule" } th {} } }
            tbody {
                @for r in &rules {
                    tr {
                        td.num { (r.id) }
                        td { code { (r.string) } }
                        td { (ctx.button(&format!("admin/acls/{}/delete", r.id), "Delete", &[], Some(&format!("Delete ACL rule {} ({})?", r.id, r.string)), "small danger")) }
                    }
                }
            }
        }
        div.card {
            h2 { "New rule" }
            form.inline method="post" action="admin/acls" {
                (ctx.csrf_field())
                input type="text" name="rule" size="40" placeholder="@100 VM+IMAGE/* USE+MANAGE *" aria-label="Rule" required;
                button.primary type="submit" { "Add rule" }
            }
            p.muted { "OpenNebula's syntax: USER RESOURCES/IDS RIGHTS [ZONE], e.g. " code { "#5 NET/#2 USE" } "." }
        }
    };
    Ok(ctx.page("ACL rules", content))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RuleForm {
    rule: String,
}

/// `POST /admin/acls`.
pub async fn acl_create(ctx: Ctx, Form(f): Form<RuleForm>) -> PageResult {
    Ok(match ctx.oned().acl().add(f.rule.trim()).await {
        Ok(id) => ctx.redirect_ok("admin/acls", format!("ACL rule {id} added.")),
        Err(e) => ctx.redirect_err("admin/acls", e),
    })
}

/// `POST /admin/acls/{id}/delete`.
pub async fn acl_delete(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let id = id_path(&id)?;
    Ok(match ctx.oned().acl().delete(id).await {
        Ok(()) => ctx.redirect_ok("admin/acls", format!("ACL rule {id} deleted.")),
        Err(e) => ctx.redirect_err("admin/acls", e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_forms_become_vm_quota_templates() {
        let form = vec![
            ("_csrf".to_string(), "x".to_string()),
            ("VMS".into(), "10".into()),
            ("MEMORY".into(), "-2".into()),
            ("CPU".into(), "".into()),
        ];
        let t = oca::Template::parse(&quota_template(&form).unwrap()).unwrap();
        let vm = t.vector("VM").unwrap();
        assert_eq!(vm.get("VMS"), Some("10"));
        assert_eq!(vm.get("MEMORY"), Some("-2"));
        assert_eq!(vm.get("CPU"), None);
        assert!(quota_template(&[("VMS".into(), "-5".into())]).is_err());
        assert!(quota_template(&[("VMS".into(), "many".into())]).is_err());
    }
}
