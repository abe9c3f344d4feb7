//! The VM's screen: a page with noVNC, and the websocket it connects to, which sunstone
//! proxies to oned's VNC websocket. For each connection sunstone asks oned, with the user's
//! own session, for a single-use token (`one.vm.vnc`, refused without USE on the VM), opens
//! oned's websocket with it, and only then accepts the browser's: a refusal is an HTTP
//! error the page can show. The browser only ever talks to sunstone, on the console's own
//! origin, through a relative URL: no VNC port and no host name reach the browser.

use super::id_path;
use crate::html::{self, head};
use crate::session::same_secret;
use crate::web::{Ctx, Failure, PageResult};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use futures_util::{SinkExt, StreamExt};
use maud::{DOCTYPE, html};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message as UpMessage;

/// `GET /vms/{id}/console`: the screen page (noVNC). Opened in its own tab.
pub async fn page(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let id = id_path(&id)?;
    let vm = ctx.oned().vm().info(id).await?;
    let title = format!("Screen of VM {}: {}", vm.id, vm.name);
    let extra = html! {
        script type="module" src=(crate::assets::url("console.js")) {}
    };
    let m = html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(&title, &ctx.base(), extra)) }
            body.console data-ws=(format!("vms/{id}/console/ws?csrf={}", ctx.csrf())) data-vm=(id) {
                header {
                    a href=(format!("vms/{id}")) { "← VM " (vm.id) }
                    strong { (vm.name) }
                    span #status role="status" aria-live="polite" { "Connecting…" }
                    button #ctrl-alt-del type="button" disabled { "Send Ctrl-Alt-Del" }
                }
                div #screen {}
            }
        }
    };
    Ok(html::respond(StatusCode::OK, m))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct WsQuery {
    csrf: String,
}

/// `GET /vms/{id}/console/ws`: the websocket noVNC opens. The session's CSRF token must come
/// with it (a page of another site cannot open it in the user's name).
pub async fn websocket(
    ctx: Ctx,
    Path(id): Path<String>,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> PageResult {
    let id = id_path(&id)?;
    if !same_secret(&q.csrf, ctx.csrf()) {
        return Err(Failure {
            status: StatusCode::FORBIDDEN,
            message: "The screen's connection lacks the page's CSRF token.".into(),
        });
    }
    let token = ctx.oned().vm().vnc_token(id).await?;
    let url = oca::calls::console::vnc_websocket_url(ctx.oned().endpoint(), id, &token)?;
    let (upstream, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .map_err(|e| Failure {
            status: StatusCode::BAD_GATEWAY,
            message: format!("oned's screen connection for VM {id} failed: {e}"),
        })?;
    let user = ctx.session.who.username.clone();
    tracing::info!(%user, vm = id, "screen opened");
    Ok(ws
        .protocols(["binary"])
        .on_upgrade(move |socket| async move {
            pipe(socket, upstream).await;
            tracing::info!(%user, vm = id, "screen closed");
        }))
}

/// Copies binary messages both ways until either side closes.
async fn pipe(
    browser: WebSocket,
    upstream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) {
    let (mut b_tx, mut b_rx) = browser.split();
    let (mut u_tx, mut u_rx) = upstream.split();
    let to_oned = async {
        while let Some(Ok(m)) = b_rx.next().await {
            let out = match m {
                Message::Binary(b) => UpMessage::Binary(b),
                Message::Text(t) => UpMessage::Binary(t.as_bytes().to_vec().into()),
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if u_tx.send(out).await.is_err() {
                break;
            }
        }
        let _ = u_tx.close().await;
    };
    let to_browser = async {
        while let Some(Ok(m)) = u_rx.next().await {
            let out = match m {
                UpMessage::Binary(b) => Message::Binary(b),
                UpMessage::Text(t) => Message::Binary(t.as_bytes().to_vec().into()),
                UpMessage::Close(_) => break,
                _ => continue,
            };
            if b_tx.send(out).await.is_err() {
                break;
            }
        }
        let _ = b_tx.close().await;
    };
    tokio::select! {
        _ = to_oned => {}
        _ = to_browser => {}
    }
}
