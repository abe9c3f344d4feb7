//! The user's settings: password and SSH public key.

use crate::html;
use crate::session::FlashKind;
use crate::web::{Ctx, PageResult, SessionCookie};
use axum::http::{HeaderValue, header};
use axum::{Extension, Form};
use maud::html;
use oca::{Template, UpdateMode};
use serde::Deserialize;

/// `GET /settings`.
pub async fn show(ctx: Ctx) -> PageResult {
    let me = ctx.oned().user().me().await?;
    let key = me.template.get("SSH_PUBLIC_KEY").unwrap_or("");
    let content = html! {
        h1 { "Settings" }
        section.cards {
            div.card {
                h2 { "Password" }
                form.stack #password method="post" action="settings/password" {
                    (ctx.csrf_field())
                    label { "Current password" input type="password" name="current" autocomplete="current-password" required; }
                    label { "New password" input type="password" name="new" autocomplete="new-password" required minlength="8"; }
                    label { "New password again" input type="password" name="again" autocomplete="new-password" required minlength="8"; }
                    button.primary type="submit" { "Change password" }
                }
            }
            div.card {
                h2 { "SSH public key" }
                p.muted { "Put into the context of the VMs you create, so you can log in to them." }
                form.stack #sshkey method="post" action="settings/ssh" {
                    (ctx.csrf_field())
                    textarea name="key" placeholder="ssh-ed25519 AAAA… you@laptop" { (key) }
                    button.primary type="submit" { "Save key" }
                }
            }
        }
        section.cards {
            div.card {
                h2 { "Account" }
                (html::facts(&[
                    ("User", html!{ (me.name) " (" (me.id) ")" }),
                    ("Primary group", html!{ (me.gname) }),
                    ("Authentication", html!{ (me.auth_driver) }),
                    ("Login tokens", html!{ (me.login_tokens.len()) }),
                ]))
            }
        }
    };
    Ok(ctx.page("Settings", content))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    current: String,
    new: String,
    again: String,
}

/// `POST /settings/password`: checks the current password with oned first.
pub async fn password(
    ctx: Ctx,
    old: Option<Extension<SessionCookie>>,
    Form(f): Form<PasswordForm>,
) -> PageResult {
    let old = old.map(|Extension(c)| c);
    if f.new != f.again {
        return Ok(ctx.redirect_err("settings", "The two new passwords differ."));
    }
    if f.new.chars().count() < 8 {
        return Ok(ctx.redirect_err("settings", "The new password needs at least 8 characters."));
    }
    let who = &ctx.session.who;
    let check = ctx
        .app
        .base
        .with_session(format!("{}:{}", who.username, f.current));
    if let Err(e) = check.user().info(-1).await {
        let msg = if e.is_authentication() {
            "The current password is wrong.".to_owned()
        } else {
            e.to_string()
        };
        return Ok(ctx.redirect_err("settings", msg));
    }
    if let Err(e) = ctx.oned().user().passwd(who.uid, &f.new).await {
        return Ok(ctx.redirect_err("settings", e));
    }
    tracing::info!(user = %who.username, "password changed");
    // oned drops the user's login tokens with the old password: this session goes on
    // with a new token asked with the new one (the user's other sessions end).
    let lifetime = ctx.app.sessions.lifetime().as_secs() as i64;
    let fresh = ctx
        .app
        .base
        .with_session(format!("{}:{}", who.username, f.new));
    let token = match fresh
        .user()
        .login(&who.username, "", oca::TokenLife::Seconds(lifetime), -1)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            return Ok(ctx.redirect_err(
                "settings",
                format!("Password changed, but a new session could not be opened: {e}"),
            ));
        }
    };
    if let Some(SessionCookie(old)) = old {
        ctx.app.sessions.remove(&old);
    }
    let client = ctx
        .app
        .base
        .with_session(format!("{}:{token}", who.username));
    let (cookie, s) = ctx.app.sessions.create(who.clone(), token, client);
    s.push_flash(FlashKind::Ok, "Password changed.");
    let mut r = ctx.redirect("settings");
    if let Ok(v) = HeaderValue::from_str(&crate::session::set_cookie(
        crate::session::COOKIE,
        &cookie,
        ctx.secure,
        None,
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(r)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct KeyForm {
    key: String,
}

/// `POST /settings/ssh`.
pub async fn ssh_key(ctx: Ctx, Form(f): Form<KeyForm>) -> PageResult {
    let key = f.key.trim();
    if key.lines().count() > 1 {
        return Ok(ctx.redirect_err("settings", "Give one key, on one line."));
    }
    let mut t = Template::new();
    t.set("SSH_PUBLIC_KEY", key);
    Ok(
        match ctx
            .oned()
            .user()
            .update(ctx.uid(), &t.to_text(), UpdateMode::Merge)
            .await
        {
            Ok(()) => ctx.redirect_ok("settings", "SSH key saved."),
            Err(e) => ctx.redirect_err("settings", e),
        },
    )
}
