//! Login and logout. The login page is a plain HTML form (no script needed) whose hidden
//! CSRF field must match a cookie set with the form. A successful login asks oned for a
//! login token (`one.user.login`) with the user's password; the password is then forgotten
//! and every call of the session uses `user:token`. Failed logins are slowed down per user
//! name and per client address (throttle.rs).

use crate::App;
use crate::html::{self, CSP};
use crate::session::{self, Identity, LOGIN_COOKIE};
use crate::throttle::Key;
use crate::web::{CSRF_FIELD, Ctx, is_secure, rel, see_other};
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

#[derive(Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// Where to go after login: a path from the console's root as the login redirect gave it;
/// anything that could leave the console (a scheme, `//host`, `..`) is dropped.
pub fn safe_next(next: &str) -> &str {
    let ok = !next.starts_with('/')
        && !next.starts_with('\\')
        && !next.contains("..")
        && !next.contains("://")
        && next
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-?=&.%+,~".contains(&b));
    if ok && next != "login" { next } else { "" }
}

fn login_page(csrf: &str, next: &str, error: Option<&str>, username: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (html::head("Log in", "./", html!{})) }
            body.login {
                main.login {
                    h1 { "one-rs" }
                    p.sub { "Log in with your cloud user" }
                    @if !crate::assets::MISSING.is_empty() {
                        div.flash.error { "Browser files missing from this build: run scripts/install-deps.sh, then cargo build." }
                    }
                    @if let Some(e) = error { div.flash.error role="alert" #login-error { (e) } }
                    form method="post" action="login" {
                        input type="hidden" name=(CSRF_FIELD) value=(csrf);
                        input type="hidden" name="next" value=(next);
                        label { "User" input type="text" name="username" autocomplete="username" required autofocus value=(username); }
                        label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                        button.primary type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

/// The login page with its CSRF pair (cookie + hidden field). The browser's current login
/// cookie is kept when it has one, so two login tabs (or a favicon fetch) do not invalidate
/// each other's forms.
fn respond_login(
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    error: Option<&str>,
    username: &str,
) -> Response {
    let secure = is_secure(headers);
    let csrf = cookie(headers, LOGIN_COOKIE)
        .filter(|c| c.len() == 48 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| session::random_hex(24));
    let mut r = (
        status,
        axum::response::Html(login_page(&csrf, next, error, username).into_string()),
    )
        .into_response();
    html::secure_headers(&mut r);
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(
        LOGIN_COOKIE,
        &csrf,
        secure,
        Some(3600),
    )) {
        h.append(header::SET_COOKIE, v);
    }
    r
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| session::cookie_value(h, name))
        .map(str::to_owned)
}

/// `GET /login`.
pub async fn form(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(&q.next);
    if cookie(&headers, session::COOKIE).is_some_and(|c| app.sessions.get(&c, true).is_some()) {
        return see_other(&rel("/login", next));
    }
    respond_login(&headers, StatusCode::OK, next, None, "")
}

/// The client's address: the peer, or what a trusted reverse proxy says it forwarded for.
fn client_addr(app: &App, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let peer = peer.ip();
    if !app.cfg.trusted_proxies.contains(&peer) {
        return peer;
    }
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(peer)
}

/// `POST /login`.
pub async fn submit(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let secure = is_secure(&headers);
    let next = safe_next(&f.next);
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !session::same_secret(&expected, &f.csrf) {
        return respond_login(
            &headers,
            StatusCode::FORBIDDEN,
            next,
            Some("The login form expired or lacks its CSRF token: please log in again."),
            &f.username,
        );
    }
    let username = f.username.trim();
    if username.is_empty() || f.password.is_empty() || username.contains(':') {
        return respond_login(
            &headers,
            StatusCode::BAD_REQUEST,
            next,
            Some("Give a user name (without ':') and a password."),
            username,
        );
    }
    let addr = client_addr(&app, peer, &headers);
    let keys = [Key::User(username.to_owned()), Key::Addr(addr.to_string())];
    if let Some(wait) = app.throttle.wait(&keys) {
        tracing::warn!(user = username, %addr, "login refused: too many failures");
        return respond_login(
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            next,
            Some(&format!(
                "Too many failed logins: try again in {} s.",
                wait.as_secs().max(1)
            )),
            username,
        );
    }

    let with_password = app.base.with_session(format!("{username}:{}", f.password));
    let lifetime = app.sessions.lifetime().as_secs() as i64;
    // The token the user's other sessions use, refreshed (oned keeps ten per user).
    let shared = app.sessions.user_token(username).unwrap_or_default();
    let token = match with_password
        .user()
        .login(username, &shared, oca::TokenLife::Seconds(lifetime), -1)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            let (status, msg) = if e.is_authentication() {
                app.throttle.failed(&keys);
                // Every failure costs the guesser a moment too.
                tokio::time::sleep(Duration::from_millis(300)).await;
                (StatusCode::UNAUTHORIZED, e.to_string())
            } else if matches!(e, oca::OcaError::Transport(_)) {
                (
                    StatusCode::BAD_GATEWAY,
                    format!("oned cannot be reached: {e}"),
                )
            } else {
                (StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            };
            tracing::info!(user = username, %addr, "login failed: {msg}");
            return respond_login(&headers, status, next, Some(&msg), username);
        }
    };
    app.throttle.succeeded(&keys[0]);
    let client = app.base.with_session(format!("{username}:{token}"));
    let me = match client.user().me().await {
        Ok(u) => u,
        Err(e) => {
            return respond_login(
                &headers,
                StatusCode::BAD_GATEWAY,
                next,
                Some(&e.to_string()),
                username,
            );
        }
    };
    let who = Identity {
        username: me.name.clone(),
        uid: me.id,
        gid: me.gid,
        gname: me.gname.clone(),
        groups: me.groups.clone(),
    };
    tracing::info!(user = %who.username, uid = who.uid, %addr, "login");
    let (value, _) = app.sessions.create(who, token, client);
    let mut r = see_other(&rel("/login", next));
    let h = r.headers_mut();
    for c in [
        session::set_cookie(session::COOKIE, &value, secure, None),
        session::set_cookie(LOGIN_COOKIE, "", secure, Some(0)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `POST /logout` (behind the session middleware, so its CSRF token is checked).
pub async fn logout(ctx: Ctx, headers: HeaderMap) -> Response {
    if let Some((s, last)) =
        cookie(&headers, session::COOKIE).and_then(|c| ctx.app.sessions.remove(&c))
    {
        tracing::info!(user = %s.who.username, uid = s.who.uid, "logout");
        if last {
            revoke(s);
        }
    }
    let mut r = ctx.redirect("login");
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(
        session::COOKIE,
        "",
        ctx.secure,
        Some(0),
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// Revokes a finished session's token at oned, in the background.
pub fn revoke(s: Arc<session::Session>) {
    tokio::spawn(async move {
        if let Err(e) = s
            .client
            .user()
            .login(&s.who.username, &s.token, oca::TokenLife::Revoke, -1)
            .await
        {
            tracing::info!(user = %s.who.username, "token not revoked: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_inside_the_console() {
        assert_eq!(safe_next("vms/5"), "vms/5");
        assert_eq!(safe_next("vms?page=2&q=web"), "vms?page=2&q=web");
        assert_eq!(safe_next("/vms"), "");
        assert_eq!(safe_next("//evil.example/"), "");
        assert_eq!(safe_next("https://evil.example/"), "");
        assert_eq!(safe_next("../x"), "");
        assert_eq!(safe_next("javascript:alert(1)"), "");
        assert_eq!(safe_next("login"), "");
    }

    #[test]
    fn the_login_page_works_without_scripts_and_carries_csrf() {
        let page = login_page("tok", "vms", Some("<b>bad</b>"), "a\"b").into_string();
        assert!(page.contains(r#"<form method="post" action="login">"#));
        assert!(page.contains(r#"name="_csrf" value="tok""#));
        assert!(page.contains("&lt;b&gt;bad&lt;/b&gt;"));
        assert!(page.contains(r#"value="a&quot;b""#));
    }
}
