//! VM templates: the list, a template's page (its text, update, delete), creating one from
//! its text, and instantiating: name, count, CPU / VCPU / memory within the limits the
//! template's USER_INPUTS give, the network of each NIC, and the user's SSH key into the
//! context.

use super::id_path;
use crate::html::{self, mb, template_text};
use crate::web::{Ctx, Failure, PageResult, num};
use axum::Form;
use axum::extract::Path;
use maud::{Markup, html};
use oca::{AttrValue, PoolFilter, PoolRange, Template, UpdateMode, Vector, VmTemplate};
use serde::Deserialize;

/// How many VMs one instantiate form may create.
pub const MAX_COUNT: u32 = 100;

/// `GET /templates`.
pub async fn list(ctx: Ctx) -> PageResult {
    let templates = ctx
        .oned()
        .template()
        .list(PoolFilter::All, PoolRange::default())
        .await?;
    let content = html! {
        h1 { "Templates" }
        table.list #templates {
            thead { tr { th.num { "ID" } th { "Name" } th { "Owner" } th.num { "CPU" } th.num { "VCPU" } th.num { "Memory" } th { "Registered" } th {} } }
            tbody {
                @for t in &templates {
                    tr {
                        td.num { (t.id) }
                        td { a href=(format!("templates/{}", t.id)) { (t.name) } }
                        td { (t.owner.uname) }
                        td.num { (t.template.get("CPU").unwrap_or("")) }
                        td.num { (t.template.get("VCPU").unwrap_or("1")) }
                        td.num { (t.template.get("MEMORY").map(|m| mb(m.parse().unwrap_or(0.0))).unwrap_or_default()) }
                        td { (html::time(t.regtime)) }
                        td { a.button.primary href=(format!("templates/{}/instantiate", t.id)) { "Instantiate" } }
                    }
                }
                @if templates.is_empty() { tr { td colspan="8" .empty { "No templates you may use." } } }
            }
        }
        details.card {
            summary { "Create a template from its text" }
            form.stack method="post" action="templates" {
                (ctx.csrf_field())
                label { "Template (OpenNebula syntax)"
                    textarea name="template" required placeholder="NAME=\"small\"\nCPU=\"0.5\"\nMEMORY=\"256\"" {}
                }
                button.primary type="submit" { "Create" }
            }
        }
    };
    Ok(ctx.page("Templates", content))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TextForm {
    template: String,
}

/// `POST /templates`.
pub async fn create(ctx: Ctx, Form(f): Form<TextForm>) -> PageResult {
    Ok(match ctx.oned().template().allocate(&f.template).await {
        Ok(id) => ctx.redirect_ok(
            &format!("templates/{id}"),
            format!("Template {id} created."),
        ),
        Err(e) => ctx.redirect_err("templates", e),
    })
}

/// `GET /templates/{id}`.
pub async fn show(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let id = id_path(&id)?;
    let t = ctx.oned().template().info(id).await?;
    let content = html! {
        div.titlebar {
            h1 { "Template " (t.id) ": " (t.name) }
            a.button.primary href=(format!("templates/{id}/instantiate")) { "Instantiate" }
        }
        (html::facts(&[
            ("Owner", html!{ (t.owner.uname) " / " (t.owner.gname) }),
            ("Registered", html!{ (html::time(t.regtime)) }),
            ("Permissions", html!{ (format!("{:03o}", t.permissions.octal())) }),
        ]))
        section {
            h2 { "Template" }
            (template_text(&t.template))
        }
        details.card {
            summary { "Edit" }
            form.stack method="post" action=(format!("templates/{id}/update")) {
                (ctx.csrf_field())
                textarea name="template" { (t.template.to_text()) }
                button type="submit" { "Save" }
            }
        }
        p { (ctx.button(&format!("templates/{id}/delete"), "Delete template", &[], Some(&format!("Delete template {id} ({})?", t.name)), "danger")) }
    };
    Ok(ctx.page(&format!("Template {}", t.name), content))
}

/// `POST /templates/{id}/update`.
pub async fn update(ctx: Ctx, Path(id): Path<String>, Form(f): Form<TextForm>) -> PageResult {
    let id = id_path(&id)?;
    let back = format!("templates/{id}");
    Ok(
        match ctx
            .oned()
            .template()
            .update(id, &f.template, UpdateMode::Replace)
            .await
        {
            Ok(()) => ctx.redirect_ok(&back, "Template saved."),
            Err(e) => ctx.redirect_err(&back, e),
        },
    )
}

/// `POST /templates/{id}/delete`.
pub async fn delete(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let id = id_path(&id)?;
    Ok(match ctx.oned().template().delete(id, false).await {
        Ok(()) => ctx.redirect_ok("templates", format!("Template {id} deleted.")),
        Err(e) => ctx.redirect_err(&format!("templates/{id}"), e),
    })
}

// ---------------------------------------------------------------------------------------
// Instantiate

/// What the user may choose for a capacity attribute (from USER_INPUTS, OpenNebula's
/// `M|type|description|params|default` form).
#[derive(Clone, Debug, PartialEq)]
pub enum Limit {
    Any,
    Fixed(String),
    Range(f64, f64),
    List(Vec<String>),
}

impl Limit {
    pub fn parse(spec: &str) -> Limit {
        let parts: Vec<&str> = spec.split('|').collect();
        let kind = parts.get(1).map_or("", |s| s.trim());
        let params = parts.get(3).map_or("", |s| s.trim());
        match kind {
            "fixed" => Limit::Fixed(parts.get(4).map_or(params, |d| d.trim()).to_owned()),
            "range" | "range-float" => params
                .split_once("..")
                .and_then(|(a, b)| {
                    Some(Limit::Range(a.trim().parse().ok()?, b.trim().parse().ok()?))
                })
                .unwrap_or(Limit::Any),
            "list" | "list-multiple" => Limit::List(
                params
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
            _ => Limit::Any,
        }
    }

    /// Checks a chosen value; the message names the attribute and the allowed values.
    pub fn check(&self, name: &str, v: &str) -> Result<(), String> {
        let n: f64 = v
            .trim()
            .parse()
            .map_err(|_| format!("{name}: {v:?} is not a number"))?;
        if n <= 0.0 {
            return Err(format!("{name} must be more than 0"));
        }
        match self {
            Limit::Any => Ok(()),
            Limit::Fixed(f) if f.trim().parse::<f64>().ok() == Some(n) => Ok(()),
            Limit::Fixed(f) => Err(format!("{name} is fixed at {f} by the template")),
            Limit::Range(a, b) if n >= *a && n <= *b => Ok(()),
            Limit::Range(a, b) => Err(format!("{name} must be between {a} and {b}")),
            Limit::List(l) if l.iter().any(|x| x.parse::<f64>().ok() == Some(n)) => Ok(()),
            Limit::List(l) => Err(format!("{name} must be one of {}", l.join(", "))),
        }
    }
}

fn limit_of(t: &VmTemplate, attr: &str) -> Limit {
    t.template
        .vector("USER_INPUTS")
        .and_then(|u| u.get(attr))
        .map_or(Limit::Any, Limit::parse)
}

fn capacity_input(name: &str, label: &str, value: &str, limit: &Limit, step: &str) -> Markup {
    html! {
        label {
            (label)
            @match limit {
                Limit::Fixed(v) => { input type="number" name=(name) value=(v) readonly; small.muted { "fixed by the template" } }
                Limit::List(l) => select name=(name) { @for o in l { option value=(o) selected[o == value] { (o) } } },
                Limit::Range(a, b) => { input type="number" name=(name) value=(value) min=(a) max=(b) step=(step) required; small.muted { (a) " to " (b) } }
                Limit::Any => input type="number" name=(name) value=(value) min=(step) step=(step) required;,
            }
        }
    }
}

/// `GET /templates/{id}/instantiate`.
pub async fn instantiate_form(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let id = id_path(&id)?;
    render_form(&ctx, id, None).await
}

/// The instantiate form, filled with what the user sent when it is drawn again after an
/// error (so nothing typed is lost).
async fn render_form(ctx: &Ctx, id: i64, sent: Option<&InstantiateForm>) -> PageResult {
    let c = ctx.oned();
    let (t, vnets, me) = tokio::join!(
        async { c.template().info(id).await },
        async { c.vnet().list(PoolFilter::All, PoolRange::default()).await },
        async { c.user().me().await },
    );
    let t = t?;
    let vnets = vnets.unwrap_or_default();
    let key = me
        .ok()
        .and_then(|u| u.template.get("SSH_PUBLIC_KEY").map(str::to_owned));
    let g = |k: &str, d: &str| {
        let sent = sent.map(|f| match k {
            "CPU" => f.cpu.as_str(),
            "VCPU" => f.vcpu.as_str(),
            _ => f.memory.as_str(),
        });
        match sent.filter(|v| !v.trim().is_empty()) {
            Some(v) => v.to_owned(),
            None => t.template.get(k).unwrap_or(d).to_owned(),
        }
    };
    let nics: Vec<&Vector> = t.template.vectors("NIC").collect();
    let sent_nic = |i: usize| sent.map(|f| f.nic(i).to_owned()).filter(|v| !v.is_empty());
    let content = html! {
        h1 { "Instantiate " (t.name) }
        form.stack #instantiate method="post" action=(format!("templates/{id}/instantiate")) {
            (ctx.csrf_field())
            label { "VM name" input type="text" name="name" placeholder="(OpenNebula's default)" maxlength="128" value=(sent.map_or("", |f| f.name.as_str())); }
            label { "Number of VMs" input type="number" name="count" value=(sent.map_or("1", |f| f.count.as_str())) min="1" max=(MAX_COUNT) required; }
            (capacity_input("cpu", "CPU", &g("CPU", "1"), &limit_of(&t, "CPU"), "0.01"))
            (capacity_input("vcpu", "VCPU", &g("VCPU", "1"), &limit_of(&t, "VCPU"), "1"))
            (capacity_input("memory", "Memory (MB)", &g("MEMORY", "128"), &limit_of(&t, "MEMORY"), "1"))
            fieldset {
                legend { "Network" }
                @if nics.is_empty() {
                    label { "Add a NIC on"
                        select name="nic0" {
                            option value="" { "no network" }
                            @for n in &vnets { option value=(n.id) selected[sent_nic(0) == Some(n.id.to_string())] { (n.name) " (" (n.id) ")" } }
                        }
                    }
                }
                @for (i, nic) in nics.iter().enumerate() {
                    @let current = sent_nic(i).or_else(|| nic.get("NETWORK_ID").map(str::to_owned));
                    @let current_name = nic.get("NETWORK");
                    label { "NIC " (i)
                        select name=(format!("nic{i}")) {
                            @for n in &vnets {
                                @let sel = current.as_deref() == Some(n.id.to_string().as_str()) || (current.is_none() && current_name == Some(n.name.as_str()));
                                option value=(n.id) selected[sel] { (n.name) " (" (n.id) ")" }
                            }
                        }
                    }
                }
            }
            @match &key {
                Some(k) => label.check { input type="checkbox" name="ssh_key" value="1" checked[sent.is_none_or(|f| f.ssh_key == "1")]; " Put my SSH public key into the context (" (k.split_whitespace().next().unwrap_or("")) " …)" },
                None => p.muted { "No SSH public key is set for you: " a href="settings" { "add one in Settings" } "." },
            }
            button.primary type="submit" { "Instantiate" }
        }
    };
    Ok(ctx.page(&format!("Instantiate {}", t.name), content))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct InstantiateForm {
    name: String,
    count: String,
    cpu: String,
    vcpu: String,
    memory: String,
    ssh_key: String,
    nic0: String,
    nic1: String,
    nic2: String,
    nic3: String,
    nic4: String,
    nic5: String,
    nic6: String,
    nic7: String,
}

impl InstantiateForm {
    fn nic(&self, i: usize) -> &str {
        [
            &self.nic0, &self.nic1, &self.nic2, &self.nic3, &self.nic4, &self.nic5, &self.nic6,
            &self.nic7,
        ]
        .get(i)
        .map_or("", |s| s.as_str())
        .trim()
    }
}

/// The extra template of an instantiation: the capacity chosen, each NIC on its chosen
/// network (the whole NIC list, since a NIC in the extra template replaces the template's),
/// and the context with the user's key (likewise the whole CONTEXT).
pub fn extra_template(
    t: &VmTemplate,
    f: &InstantiateForm,
    ssh_key: Option<&str>,
) -> Result<String, String> {
    let mut extra = Template::new();
    for (attr, v) in [("CPU", &f.cpu), ("VCPU", &f.vcpu), ("MEMORY", &f.memory)] {
        if v.trim().is_empty() {
            continue;
        }
        limit_of(t, attr).check(attr, v)?;
        extra.set(attr, v.trim());
    }
    let nics: Vec<&Vector> = t.template.vectors("NIC").collect();
    if nics.is_empty() {
        if !f.nic(0).is_empty() {
            let id: i64 = f
                .nic(0)
                .parse()
                .map_err(|_| "NIC 0: not a network id".to_string())?;
            let mut v = Vector::new();
            v.set("NETWORK_ID", id.to_string());
            extra.push("NIC", AttrValue::Vector(v));
        }
    } else {
        for (i, nic) in nics.iter().enumerate() {
            let mut v = (*nic).clone();
            if !f.nic(i).is_empty() {
                let id: i64 = f
                    .nic(i)
                    .parse()
                    .map_err(|_| format!("NIC {i}: not a network id"))?;
                for k in ["NETWORK", "NETWORK_UNAME", "NETWORK_UID"] {
                    v.remove(k);
                }
                v.set("NETWORK_ID", id.to_string());
            }
            extra.push("NIC", AttrValue::Vector(v));
        }
    }
    if let Some(key) = ssh_key {
        let mut ctx = t.template.vector("CONTEXT").cloned().unwrap_or_default();
        ctx.set("SSH_PUBLIC_KEY", key);
        extra.set_vector("CONTEXT", ctx);
    }
    Ok(extra.to_text())
}

/// The name of VM `i` of `count`: OpenNebula's `%i` is replaced by the index; otherwise a
/// suffix keeps names apart.
fn nth_name(name: &str, i: u32, count: u32) -> String {
    let name = name.trim();
    if name.is_empty() {
        String::new()
    } else if name.contains("%i") {
        name.replace("%i", &i.to_string())
    } else if count > 1 {
        format!("{name}-{i}")
    } else {
        name.to_owned()
    }
}

/// `POST /templates/{id}/instantiate`.
pub async fn instantiate(
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<InstantiateForm>,
) -> PageResult {
    let id = id_path(&id)?;
    let count: u32 = if f.count.trim().is_empty() {
        1
    } else {
        num("count", &f.count)?
    };
    if count == 0 || count > MAX_COUNT {
        return Err(Failure::bad_request(format!(
            "Number of VMs: 1 to {MAX_COUNT}"
        )));
    }
    let c = ctx.oned();
    let t = c.template().info(id).await?;
    let key = if f.ssh_key == "1" {
        let me = c.user().me().await?;
        me.template.get("SSH_PUBLIC_KEY").map(str::to_owned)
    } else {
        None
    };
    let extra = match extra_template(&t, &f, key.as_deref()) {
        Ok(e) => e,
        Err(msg) => {
            ctx.session
                .push_flash(crate::session::FlashKind::Error, msg);
            return render_form(&ctx, id, Some(&f)).await;
        }
    };
    let mut created = Vec::new();
    for i in 0..count {
        match c
            .template()
            .instantiate(id, &nth_name(&f.name, i, count), false, &extra, false)
            .await
        {
            Ok(vid) => created.push(vid),
            Err(e) => {
                tracing::info!(user = %ctx.session.who.username, template = id, "instantiate failed: {e}");
                if created.is_empty() {
                    ctx.session
                        .push_flash(crate::session::FlashKind::Error, e.to_string());
                    return render_form(&ctx, id, Some(&f)).await;
                }
                return Ok(ctx.redirect_err(
                    "vms?owner=mine",
                    format!("{e} (created before the failure: {created:?})"),
                ));
            }
        }
    }
    tracing::info!(user = %ctx.session.who.username, template = id, vms = ?created, "instantiated");
    Ok(match created.as_slice() {
        [one] => ctx.redirect_ok(&format!("vms/{one}"), format!("VM {one} created.")),
        many => ctx.redirect_ok(
            "vms?owner=mine",
            format!("{} VMs created: {:?}.", many.len(), many),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oca::Object;

    fn tmpl(text: &str) -> VmTemplate {
        let t = Template::parse(text).unwrap();
        VmTemplate::from_xml(&format!(
            "<VMTEMPLATE><ID>1</ID><NAME>t</NAME>{}</VMTEMPLATE>",
            t.to_xml("TEMPLATE")
        ))
        .unwrap()
    }

    #[test]
    fn user_input_limits() {
        assert_eq!(
            Limit::parse("M|range||128..1024|256"),
            Limit::Range(128.0, 1024.0)
        );
        assert_eq!(
            Limit::parse("O|list||1,2,4|2"),
            Limit::List(vec!["1".into(), "2".into(), "4".into()])
        );
        assert_eq!(Limit::parse("O|fixed|| |1"), Limit::Fixed("1".into()));
        assert_eq!(Limit::parse("nonsense"), Limit::Any);
        let r = Limit::Range(128.0, 1024.0);
        assert!(r.check("MEMORY", "512").is_ok());
        assert_eq!(
            r.check("MEMORY", "2048").unwrap_err(),
            "MEMORY must be between 128 and 1024"
        );
        assert!(Limit::Any.check("CPU", "0").is_err());
        assert!(Limit::Any.check("CPU", "x").is_err());
        assert!(
            Limit::List(vec!["1".into(), "2".into()])
                .check("VCPU", "3")
                .is_err()
        );
    }

    #[test]
    fn extra_template_keeps_nics_and_context_whole() {
        let t = tmpl(
            "CPU=\"1\"\nMEMORY=\"128\"\nNIC=[NETWORK=\"old\", NETWORK_UNAME=\"oneadmin\", MODEL=\"virtio\"]\n\
             CONTEXT=[NETWORK=\"YES\", TOKEN=\"YES\"]\nUSER_INPUTS=[MEMORY=\"M|range||64..512|128\"]",
        );
        let f = InstantiateForm {
            cpu: "0.5".into(),
            memory: "256".into(),
            nic0: "7".into(),
            ..Default::default()
        };
        let extra = extra_template(&t, &f, Some("ssh-ed25519 AAAA \"me\"")).unwrap();
        let back = Template::parse(&extra).unwrap();
        assert_eq!(back.get("CPU"), Some("0.5"));
        assert_eq!(back.get("MEMORY"), Some("256"));
        let nic = back.vector("NIC").unwrap();
        assert_eq!(nic.get("NETWORK_ID"), Some("7"));
        assert_eq!(nic.get("NETWORK"), None);
        assert_eq!(nic.get("MODEL"), Some("virtio"));
        let c = back.vector("CONTEXT").unwrap();
        assert_eq!(c.get("TOKEN"), Some("YES"));
        assert_eq!(c.get("SSH_PUBLIC_KEY"), Some("ssh-ed25519 AAAA \"me\""));
        let too_big = InstantiateForm {
            memory: "1024".into(),
            ..Default::default()
        };
        assert!(
            extra_template(&t, &too_big, None)
                .unwrap_err()
                .contains("between 64 and 512")
        );
    }

    #[test]
    fn names_of_many_vms() {
        assert_eq!(nth_name("web", 0, 1), "web");
        assert_eq!(nth_name("web", 2, 3), "web-2");
        assert_eq!(nth_name("web-%i-x", 2, 3), "web-2-x");
        assert_eq!(nth_name(" ", 2, 3), "");
    }
}
