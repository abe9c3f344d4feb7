//! The page frame and the small pieces pages are made of. maud escapes every value it
//! inserts, so anything oned returns (names, templates, messages) shows as text.

use crate::App;
use crate::assets;
use crate::session::{Flash, FlashKind, Session};
use crate::web::{CSRF_FIELD, Ctx, Failure, up};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// Content-Security-Policy of every page: only our own scripts and styles, no inline code,
/// no framing (clickjacking), forms post only to us.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// The navigation entries: (path from the root, label, admin only).
const NAV: &[(&str, &str, bool)] = &[
    ("", "Dashboard", false),
    ("vms", "VMs", false),
    ("templates", "Templates", false),
    ("images", "Images", false),
    ("networks", "Networks", false),
    ("settings", "Settings", false),
    ("admin/hosts", "Hosts", true),
    ("admin/clusters", "Clusters", true),
    ("admin/datastores", "Datastores", true),
    ("admin/vnets", "Virtual networks", true),
    ("admin/users", "Users", true),
    ("admin/groups", "Groups", true),
    ("admin/acls", "ACL rules", true),
];

/// The `<head>` every page shares (the console page adds its own module).
pub fn head(title: &str, base: &str, extra: Markup) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · one-rs" }
        base href=(base);
        link rel="icon" href=(assets::url("favicon.svg")) type="image/svg+xml";
        link rel="stylesheet" href=(assets::url("app.css"));
        // htmx without eval and without the inline style it would add (the CSP forbids both).
        meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"historyCacheSize":0,"selfRequestsOnly":true}"#;
        script src=(assets::url("vendor/htmx.min.js")) defer {}
        script src=(assets::url("app.js")) defer {}
        (extra)
    }
}

fn flash_box(f: &Flash) -> Markup {
    let class = match f.kind {
        FlashKind::Ok => "flash ok",
        FlashKind::Error => "flash error",
    };
    html! { div class=(class) role=(if f.kind == FlashKind::Error { "alert" } else { "status" }) { (f.text) } }
}

/// The whole page: header, navigation, messages, content.
pub fn layout(
    session: &Session,
    path: &str,
    title: &str,
    flash: &[Flash],
    content: Markup,
) -> Markup {
    let base = {
        let u = up(path);
        if u.is_empty() { "./".to_owned() } else { u }
    };
    let here = path.trim_start_matches('/');
    let active = |p: &str| {
        if p.is_empty() {
            here.is_empty()
        } else {
            here == p || here.starts_with(&format!("{p}/"))
        }
    };
    let admin = session.is_admin();
    let headers = format!(r#"{{"X-CSRF-Token":"{}"}}"#, session.csrf);
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title, &base, html!{})) }
            body hx-headers=(headers) {
                header.top {
                    a.brand href="./" { "one-rs" }
                    span.spacer {}
                    span.who { (session.who.username) " · " (session.who.gname) }
                    form.inline method="post" action="logout" {
                        input type="hidden" name=(CSRF_FIELD) value=(session.csrf);
                        button.link type="submit" { "Log out" }
                    }
                }
                div.shell {
                    nav.side aria-label="Sections" {
                        ul {
                            @for (p, label, _) in NAV.iter().filter(|n| !n.2) {
                                li { a href=(if p.is_empty() { "./" } else { p }) class=[active(p).then_some("on")] { (label) } }
                            }
                        }
                        @if admin {
                            h2 { "Administration" }
                            ul {
                                @for (p, label, _) in NAV.iter().filter(|n| n.2) {
                                    li { a href=(p) class=[active(p).then_some("on")] { (label) } }
                                }
                            }
                        }
                    }
                    main #main {
                        @if !assets::MISSING.is_empty() {
                            div.flash.error role="alert" {
                                "This console was built without some of its browser files ("
                                (assets::MISSING.join(", "))
                                "): run scripts/install-deps.sh, then cargo build."
                            }
                        }
                        div #flash { @for f in flash { (flash_box(f)) } }
                        (content)
                    }
                }
            }
        }
    }
}

/// A page response with the security headers every page gets.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut r = (status, Html(markup.into_string())).into_response();
    secure_headers(&mut r);
    r
}

pub fn secure_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

impl Ctx {
    /// A whole page with this request's messages.
    pub fn page(&self, title: &str, content: Markup) -> Response {
        let flash = self.take_flash();
        respond(
            StatusCode::OK,
            layout(&self.session, &self.path, title, &flash, content),
        )
    }

    /// A fragment for htmx (no frame).
    pub fn fragment(&self, content: Markup) -> Response {
        respond(StatusCode::OK, content)
    }

    /// The hidden CSRF field of a form.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name=(CSRF_FIELD) value=(self.csrf()); }
    }

    /// A one-button form posting to `action` (relative to the root) with `fields`, asking
    /// `confirm` first when given (app.js; without scripts the post goes straight through).
    pub fn button(
        &self,
        action: &str,
        label: &str,
        fields: &[(&str, &str)],
        confirm: Option<&str>,
        class: &str,
    ) -> Markup {
        html! {
            form.inline method="post" action=(action) data-confirm=[confirm] {
                (self.csrf_field())
                @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
                button type="submit" class=(class) { (label) }
            }
        }
    }
}

/// A failure drawn as a page (or as a message fragment for htmx requests).
pub fn failure_page(
    _app: &App,
    session: &Session,
    path: &str,
    htmx: bool,
    f: &Failure,
) -> Response {
    let err = Flash {
        kind: FlashKind::Error,
        text: f.message.clone(),
    };
    if htmx {
        // Shown in the page's message area, whatever element asked.
        let mut r = respond(StatusCode::OK, flash_box(&err));
        r.headers_mut()
            .insert("hx-retarget", HeaderValue::from_static("#flash"));
        r.headers_mut()
            .insert("hx-reswap", HeaderValue::from_static("innerHTML"));
        return r;
    }
    let mut flash = session.take_flash();
    flash.push(err);
    let title = f.status.canonical_reason().unwrap_or("Error");
    respond(
        f.status,
        layout(
            session,
            path,
            title,
            &flash,
            html! {
                h1 { (title) }
                p { a href="./" { "Back to the dashboard" } }
            },
        ),
    )
}

// ---------------------------------------------------------------------------------------
// Small pieces

/// A horizontal capacity bar: `used` of `total` with a label; no inline styles (the CSP
/// forbids them), the width is an SVG attribute.
pub fn bar(used: f64, total: f64, label: &str) -> Markup {
    let pct = if total > 0.0 {
        (used / total * 100.0).clamp(0.0, 100.0)
    } else {
        0.0
    };
    let level = if pct >= 90.0 {
        "high"
    } else if pct >= 70.0 {
        "mid"
    } else {
        "low"
    };
    html! {
        span.bar title=(format!("{pct:.0} %")) {
            svg viewBox="0 0 100 8" preserveAspectRatio="none" role="img" aria-label=(format!("{label}: {pct:.0} %")) {
                rect class="track" x="0" y="0" width="100" height="8" {}
                rect class=(format!("fill {level}")) x="0" y="0" width=(format!("{pct:.2}")) height="8" {}
            }
            span.barlabel { (label) }
        }
    }
}

/// Megabytes as people read them: "512 MB", "2.5 GB", "1.2 TB".
pub fn mb(v: f64) -> String {
    if v >= 1024.0 * 1024.0 {
        format!("{:.1} TB", v / 1024.0 / 1024.0)
    } else if v >= 1024.0 {
        let g = v / 1024.0;
        if g.fract() == 0.0 {
            format!("{g:.0} GB")
        } else {
            format!("{g:.1} GB")
        }
    } else {
        format!("{v:.0} MB")
    }
}

/// Epoch seconds as "2026-11-23 14:02" (UTC); "-" for 0.
pub fn time(epoch: i64) -> String {
    if epoch <= 0 {
        return "-".into();
    }
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// A VM's state as a coloured badge: the LCM state while ACTIVE, else the state.
pub fn vm_state(vm: &oca::Vm) -> Markup {
    let (text, class) = vm_state_text(vm);
    html! { span class=(format!("badge {class}")) { (text) } }
}

pub fn vm_state_text(vm: &oca::Vm) -> (String, &'static str) {
    let text = if vm.state == 3 {
        vm.lcm_state_name()
    } else {
        vm.state_name()
    };
    let class = match (vm.state, vm.lcm_state) {
        (3, 3) => "good",
        (3, 14 | 16 | 36..=42 | 44 | 46..=50 | 61) | (7 | 11, _) => "bad",
        (8 | 9 | 4 | 5 | 6, _) => "off",
        (1 | 2, _) => "wait",
        _ => "busy",
    };
    (text, class)
}

/// A host's state as a coloured badge.
pub fn host_state(h: &oca::Host) -> Markup {
    let class = match h.state {
        2 => "good",
        3 | 5 => "bad",
        4 | 7 | 8 => "off",
        _ => "busy",
    };
    html! { span class=(format!("badge {class}")) { (h.state_name()) } }
}

/// A definition list of (term, value) rows.
pub fn facts(rows: &[(&str, Markup)]) -> Markup {
    html! {
        dl.facts {
            @for (k, v) in rows { dt { (k) } dd { (v) } }
        }
    }
}

/// A template as OpenNebula's text form, in a block.
pub fn template_text(t: &oca::Template) -> Markup {
    html! { pre.template { (t.to_text()) } }
}

/// Text that must not be read as markup, for the few places where a literal entity is
/// wanted.
pub fn nbsp() -> PreEscaped<&'static str> {
    PreEscaped("&nbsp;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes() {
        assert_eq!(time(0), "-");
        assert_eq!(time(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(time(951_782_400), "2000-02-29 00:00");
        assert_eq!(mb(512.0), "512 MB");
        assert_eq!(mb(2048.0), "2 GB");
        assert_eq!(mb(2560.0), "2.5 GB");
    }

    #[test]
    fn bars_are_clamped_and_escaped() {
        let b = bar(150.0, 100.0, "<b>cpu</b>").into_string();
        assert!(b.contains(r#"width="100.00""#), "{b}");
        assert!(b.contains("&lt;b&gt;cpu&lt;/b&gt;"), "{b}");
        assert!(bar(1.0, 0.0, "x").into_string().contains(r#"width="0.00""#));
    }
}
