//! What every page handler shares: the request context (session, relative URLs), failures
//! shown as pages with oned's own message, and the middleware that sends anonymous visitors
//! to the login page and checks the CSRF token of every state-changing request.

use crate::App;
use crate::session::{self, Flash, FlashKind, Session};
use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use oca::OcaError;
use std::sync::Arc;

/// The header htmx sends on its requests.
pub const HX_REQUEST: &str = "hx-request";
/// Background polls carry this header: they do not count as activity for the idle timeout.
pub const POLL_HEADER: &str = "x-sunstone-poll";
/// The header carrying the CSRF token on htmx and script requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field carrying the CSRF token on plain form posts.
pub const CSRF_FIELD: &str = "_csrf";
/// Form posts larger than this are refused (uploads use their own route and a header).
const FORM_LIMIT: usize = 1 << 20;

/// `../` for each directory level of `path`, so that a relative link from the page at
/// `path` reaches the console's root: "/vms/5" -> "../". Empty at the root level.
pub fn up(path: &str) -> String {
    "../".repeat(path.matches('/').count().saturating_sub(1))
}

/// The relative URL from the page at `path` to `target` (a path from the console's root,
/// without a leading slash). Never empty.
pub fn rel(path: &str, target: &str) -> String {
    let s = format!("{}{target}", up(path));
    if s.is_empty() { "./".into() } else { s }
}

/// A 303 redirect to a relative URL.
pub fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The request as page handlers see it.
pub struct Ctx {
    pub app: Arc<App>,
    pub session: Arc<Session>,
    /// The request's path ("/vms/5"), for relative URLs.
    pub path: String,
    /// The request's path and query, without the leading slash ("vms?page=2").
    pub here: String,
    /// Sent by htmx (a fragment is wanted, not a whole page).
    pub htmx: bool,
    /// Sent over TLS (directly or through a proxy that says so).
    pub secure: bool,
}

impl Ctx {
    /// The oned client acting as this session's user.
    pub fn oned(&self) -> &oca::Client {
        &self.session.client
    }

    pub fn is_admin(&self) -> bool {
        self.session.is_admin()
    }

    pub fn uid(&self) -> i64 {
        self.session.who.uid
    }

    /// `<base href>` of pages drawn for this request.
    pub fn base(&self) -> String {
        let u = up(&self.path);
        if u.is_empty() { "./".into() } else { u }
    }

    /// A 303 to `target` (a path from the console's root) with a message for the next page.
    pub fn redirect_ok(&self, target: &str, msg: impl Into<String>) -> Response {
        self.session.push_flash(FlashKind::Ok, msg);
        self.redirect(target)
    }

    /// A 303 to `target` with oned's error as the message for the next page.
    pub fn redirect_err(&self, target: &str, err: impl std::fmt::Display) -> Response {
        self.session.push_flash(FlashKind::Error, err.to_string());
        self.redirect(target)
    }

    pub fn redirect(&self, target: &str) -> Response {
        see_other(&rel(&self.path, target))
    }

    pub fn take_flash(&self) -> Vec<Flash> {
        self.session.take_flash()
    }

    pub fn csrf(&self) -> &str {
        &self.session.csrf
    }
}

impl FromRequestParts<Arc<App>> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let session = parts
            .extensions
            .get::<Arc<Session>>()
            .cloned()
            .ok_or_else(|| StatusCode::UNAUTHORIZED.into_response())?;
        let path = parts.uri.path().to_owned();
        let here = parts
            .uri
            .path_and_query()
            .map_or(path.as_str(), |pq| pq.as_str())
            .trim_start_matches('/')
            .to_owned();
        Ok(Ctx {
            app: app.clone(),
            session,
            here,
            htmx: parts.headers.contains_key(HX_REQUEST),
            secure: is_secure(&parts.headers),
            path,
        })
    }
}

/// True when the browser reached us over TLS: a reverse proxy in front says so with
/// X-Forwarded-Proto (trusting it only ever adds the Secure flag to cookies).
pub fn is_secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').next().unwrap_or("").trim() == "https")
}

/// Why a page could not be drawn. Handlers return it with `?`; the session middleware draws
/// it as a page (or, for htmx, a message fragment), with oned's message as oned gave it.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl Failure {
    pub fn bad_request(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<OcaError> for Failure {
    fn from(e: OcaError) -> Failure {
        let status = match &e {
            OcaError::Api(a) => match a.code {
                oca::ErrorCode::Authentication => StatusCode::UNAUTHORIZED,
                oca::ErrorCode::Authorization => StatusCode::FORBIDDEN,
                oca::ErrorCode::NoExists => StatusCode::NOT_FOUND,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
            OcaError::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        };
        Failure {
            status,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut r = self.status.into_response();
        r.extensions_mut().insert(Arc::new(self));
        r
    }
}

/// What page handlers return.
pub type PageResult = Result<Response, Failure>;

/// Finds the browser's session; sends anonymous visitors to the login page; checks the
/// CSRF token of every request that is not GET or HEAD; draws failures as pages.
pub async fn require_session(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let htmx = parts.headers.contains_key(HX_REQUEST);
    let poll = parts.headers.contains_key(POLL_HEADER);
    let cookie = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| session::cookie_value(h, session::COOKIE))
        .map(str::to_owned);
    let session = match cookie.as_deref().map(|c| app.sessions.lookup(c, !poll)) {
        Some(session::Lookup::Live(s)) => s,
        Some(session::Lookup::Expired(s, last)) => {
            tracing::info!(user = %s.who.username, uid = s.who.uid, "session expired");
            if last {
                crate::login::revoke(s);
            }
            return to_login(&parts, htmx);
        }
        _ => return to_login(&parts, htmx),
    };
    let body = if parts.method == Method::GET || parts.method == Method::HEAD {
        body
    } else {
        match check_csrf(&parts, body, &session.csrf).await {
            Ok(b) => b,
            Err(msg) => {
                tracing::warn!(user = %session.who.username, path = %parts.uri.path(), "{msg}");
                return crate::html::failure_page(
                    &app,
                    &session,
                    parts.uri.path(),
                    htmx,
                    &Failure {
                        status: StatusCode::FORBIDDEN,
                        message: msg.into(),
                    },
                );
            }
        }
    };
    parts.extensions.insert(session.clone());
    parts
        .extensions
        .insert(SessionCookie(cookie.unwrap_or_default()));
    let path = parts.uri.path().to_owned();
    let login_again = to_login(&parts, htmx);
    let mut resp = next.run(Request::from_parts(parts, body)).await;
    if let Some(f) = resp.extensions_mut().remove::<Arc<Failure>>() {
        tracing::info!(user = %session.who.username, %path, status = %f.status, "{}", f.message);
        if f.status == StatusCode::UNAUTHORIZED {
            // oned no longer takes the session's token (revoked, or the password changed
            // elsewhere): the session is over, the user logs in again.
            end_session(&app, &session);
            return login_again;
        }
        return crate::html::failure_page(&app, &session, &path, htmx, &f);
    }
    // Pages hold the user's data: never cache them.
    resp.headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// The browser's session cookie value, for handlers that replace the session.
#[derive(Clone)]
pub struct SessionCookie(pub String);

/// Ends `session` (every cookie naming it) and revokes its token when it was the last.
fn end_session(app: &App, session: &Arc<Session>) {
    if let Some(last) = app.sessions.remove_session(session) {
        tracing::info!(user = %session.who.username, uid = session.who.uid, "session ended: oned refused its token");
        if last {
            crate::login::revoke(session.clone());
        }
    }
}

fn to_login(parts: &Parts, htmx: bool) -> Response {
    let here = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .trim_start_matches('/');
    let target = if here.is_empty() || parts.method != Method::GET {
        "login".to_owned()
    } else {
        format!(
            "login?next={}",
            percent_encoding::utf8_percent_encode(here, percent_encoding::NON_ALPHANUMERIC)
        )
    };
    if htmx {
        // htmx resolves the redirect against the page's <base>, the console's root.
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(v) = HeaderValue::from_str(&target) {
            r.headers_mut().insert("hx-redirect", v);
        }
        return r;
    }
    see_other(&rel(parts.uri.path(), &target))
}

/// The CSRF token from the X-CSRF-Token header, or from the `_csrf` field of a url-encoded
/// form (then the body is read and handed on unchanged).
async fn check_csrf(parts: &Parts, body: Body, expected: &str) -> Result<Body, &'static str> {
    if let Some(h) = parts.headers.get(CSRF_HEADER) {
        return if session::same_secret(h.to_str().unwrap_or(""), expected) {
            Ok(body)
        } else {
            Err("The form's CSRF token is wrong (reload the page and try again).")
        };
    }
    let urlencoded = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !urlencoded {
        return Err("The request carries no CSRF token.");
    }
    let bytes = to_bytes(body, FORM_LIMIT)
        .await
        .map_err(|_| "The form is too large.")?;
    let token = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    match token {
        Some(t) if session::same_secret(&t, expected) => Ok(Body::from(bytes)),
        Some(_) => Err("The form's CSRF token is wrong (reload the page and try again)."),
        None => Err("The form carries no CSRF token."),
    }
}

/// A form value parsed as a number, with a message naming the field.
pub fn num<T: std::str::FromStr>(field: &str, v: &str) -> Result<T, Failure> {
    v.trim()
        .parse()
        .map_err(|_| Failure::bad_request(format!("{field}: {v:?} is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_urls_reach_the_root_from_any_depth() {
        assert_eq!(up("/"), "");
        assert_eq!(up("/vms"), "");
        assert_eq!(up("/vms/5"), "../");
        assert_eq!(up("/vms/5/action"), "../../");
        assert_eq!(rel("/", ""), "./");
        assert_eq!(rel("/login", ""), "./");
        assert_eq!(rel("/vms/5/action", "vms/5"), "../../vms/5");
        assert_eq!(rel("/vms", "login?next=vms"), "login?next=vms");
    }

    #[test]
    fn tls_is_seen_through_a_proxy() {
        let mut h = HeaderMap::new();
        assert!(!is_secure(&h));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(is_secure(&h));
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        assert!(!is_secure(&h));
    }

    #[test]
    fn oned_errors_keep_their_message_and_map_to_statuses() {
        let e = OcaError::Api(oca::ApiFailure {
            method: "one.vm.info".into(),
            code: oca::ErrorCode::Authorization,
            raw_code: 512,
            message: "[one.vm.info] User [3] : Not authorized to perform USE VM [0].".into(),
        });
        let f = Failure::from(e);
        assert_eq!(f.status, StatusCode::FORBIDDEN);
        assert_eq!(
            f.message,
            "[one.vm.info] User [3] : Not authorized to perform USE VM [0]."
        );
    }
}
