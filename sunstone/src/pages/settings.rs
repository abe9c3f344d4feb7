//! The user's settings: password and SSH public key.

use crate::html;
use crate::web::{Ctx, PageResult};
use axum::Form;
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
pub async fn password(ctx: Ctx, Form(f): Form<PasswordForm>) -> PageResult {
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
    Ok(match ctx.oned().user().passwd(who.uid, &f.new).await {
        Ok(()) => {
            tracing::info!(user = %who.username, "password changed");
            ctx.redirect_ok("settings", "Password changed.")
        }
        Err(e) => ctx.redirect_err("settings", e),
    })
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
