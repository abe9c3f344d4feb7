//! sunstone: the web console of one-rs.
//!
//! A client of oned like the CLI: it reaches oned only through oned's own endpoints (the
//! XML-RPC API through `oca`, the upload endpoint, the console websocket), always with the
//! logged-in user's own login token, and holds no credentials of its own. Pages are drawn
//! on the server (maud, every value escaped) and work as plain HTML; htmx refreshes lists
//! in place and app.js adds confirmations and upload progress. Every URL it writes is
//! relative (pages carry a `<base>`), so it works behind a reverse proxy under any prefix.
//!
//! * [`session`], [`throttle`], [`login`]: sessions, slowed failed logins, login / logout.
//! * [`web`]: the request context, failures, the session + CSRF middleware.
//! * [`html`]: the page frame and small pieces; [`graph`]: SVG charts.
//! * [`pages`]: one module per section of the console.
//! * [`assets`]: the embedded browser files.

pub mod assets;
pub mod config;
pub mod graph;
pub mod html;
pub mod login;
pub mod pages;
pub mod session;
pub mod throttle;
pub mod web;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What every handler can reach.
pub struct App {
    pub cfg: Config,
    /// A client of oned without a session: handlers use `with_session` per user.
    pub base: oca::Client,
    pub sessions: session::SessionStore,
    pub throttle: throttle::Throttle,
    pub cache: pages::dashboard::Cache,
}

impl App {
    pub fn new(cfg: Config) -> anyhow::Result<Arc<App>> {
        let endpoint = cfg.resolve_endpoint()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.call_timeout.max(1)))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Arc::new(App {
            base: oca::Client::with_http(endpoint, "", http),
            sessions: session::SessionStore::new(cfg.idle(), cfg.lifetime()),
            throttle: throttle::Throttle::default(),
            cache: pages::dashboard::Cache::default(),
            cfg,
        }))
    }
}

/// Every route of the console.
pub fn router(app: Arc<App>) -> Router {
    let public = Router::new()
        .route("/login", get(login::form).post(login::submit))
        .route("/static/{version}/{*path}", get(assets::serve))
        .route("/favicon.ico", get(favicon))
        .route("/healthz", get(|| async { "ok" }));
    let private = pages::routes()
        .route("/logout", post(login::logout))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            app.clone(),
            web::require_session,
        ));
    public
        .merge(private)
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(middleware::from_fn(server_timing))
        .with_state(app)
}

/// `Server-Timing: app;dur=MS` on every answer: the time sunstone took, oned's calls
/// included (browsers show it in their developer tools; the benchmark reads it).
async fn server_timing(req: axum::extract::Request, next: middleware::Next) -> Response {
    let t = std::time::Instant::now();
    let mut r = next.run(req).await;
    let v = format!("app;dur={:.2}", t.elapsed().as_secs_f64() * 1000.0);
    if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
        r.headers_mut().insert("server-timing", v);
    }
    r
}

/// Browsers ask for /favicon.ico whatever the page says; answer it without a session.
async fn favicon() -> Response {
    match assets::get("favicon.svg") {
        Some((bytes, mime)) => ([(axum::http::header::CONTENT_TYPE, mime)], bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn not_found() -> Response {
    web::Failure {
        status: StatusCode::NOT_FOUND,
        message: "There is no such page.".into(),
    }
    .into_response()
}

/// Runs the console until SIGINT / SIGTERM.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}/");
    let app = App::new(cfg.clone())?;
    tracing::info!(%url, oned = app.base.endpoint(), "sunstone serving");
    println!("sunstone: {url}");
    if let Some(f) = &cfg.url_file {
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, format!("{url}\n"))?;
        std::fs::rename(&tmp, f)?;
    }
    if let Err(e @ oca::OcaError::Transport(_)) = app.base.system_version().await {
        tracing::warn!("oned does not answer yet: {e}");
    }
    let sweeper = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            for (s, last) in sweeper.sessions.sweep() {
                tracing::info!(user = %s.who.username, uid = s.who.uid, "session expired");
                if last {
                    login::revoke(s);
                }
            }
            sweeper.throttle.sweep();
            sweeper.cache.sweep();
        }
    });
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown())
    .await?;
    Ok(())
}

async fn shutdown() {
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
