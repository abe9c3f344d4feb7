//! The VM's screen (one-rs's extension, docs/api-compatibility.md): `one.vm.vnc` issues a
//! short-lived, single-use token bound to the calling user and the VM; the websocket
//! `GET /vnc/{vm_id}?token=TOKEN` on oned's port redeems it and carries the bytes of the
//! VM's VNC server, which listens on its host's loopback only, through the host's byte
//! stream (the node agent connects to that port on the host).
//!
//! Tokens live in memory only: a restart of oned invalidates them (clients ask for another).

use crate::api::common::get_authorized;
use crate::api::errors::action;
use crate::api::{ApiResult, Call, Params, Registry};
use crate::daemon::Oned;
use crate::store::Stored;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use one_proto::acl::AuthOp;
use one_proto::objects::vm::Vm;
use one_proto::state::VmState;
use one_proto::stream::Open;
use one_proto::xmlrpc::Value;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The tokens of this process (they are never written anywhere).
pub static TOKENS: LazyLock<ConsoleTokens> = LazyLock::new(ConsoleTokens::default);

pub fn register(r: &mut Registry) {
    r.add("one.vm.vnc", |c: Call, p: Params| async move {
        issue(&c, p.int32(0)?)
    });
}

/// `one.vm.vnc(id)`: a token for the VM's screen; USE on the VM, and a screen to show.
fn issue(call: &Call, id: i64) -> ApiResult {
    let vm = get_authorized::<Vm>(call, id, AuthOp::Use)?;
    screen_of(&vm).map_err(|m| action(call.method, &m))?;
    let ttl = Duration::from_secs(call.oned.config.hosts.vnc_token_seconds.max(1));
    let token = TOKENS.issue(call.session.uid, id, ttl);
    tracing::info!(vm = id, uid = call.session.uid, "screen token issued");
    Ok(Value::String(token))
}

/// The host and port of a VM's VNC screen, or why it has none now.
pub fn screen_of(vm: &Vm) -> Result<(i64, u16), String> {
    let id = vm.header.id;
    let g = vm
        .template
        .vector("GRAPHICS")
        .filter(|g| g.get("TYPE").is_some_and(|t| t.eq_ignore_ascii_case("vnc")))
        .ok_or_else(|| format!("VM [{id}] has no VNC screen (GRAPHICS TYPE=VNC)."))?;
    if vm.state != VmState::Active {
        return Err(format!(
            "VM [{id}] has no screen in state {}: it is not on a host.",
            vm.state_str()
        ));
    }
    let port = g
        .get("PORT")
        .and_then(|p| p.trim().parse::<u16>().ok())
        .ok_or_else(|| format!("VM [{id}] has no VNC port yet."))?;
    let host = vm
        .history
        .last()
        .map(|h| h.hid)
        .ok_or_else(|| format!("VM [{id}] is on no host."))?;
    Ok((host, port))
}

/// `GET /vnc/{vm}?token=`: redeems the token, connects to the VM's VNC server on its host's
/// loopback through the host's byte stream, and carries the bytes as binary websocket
/// messages. Every refusal is an HTTP error before the upgrade.
pub async fn websocket(
    oned: Arc<Oned>,
    vm_id: i64,
    token: String,
    ws: WebSocketUpgrade,
) -> Response {
    let refuse = |status: StatusCode, msg: String| {
        tracing::info!(vm = vm_id, %status, "screen refused: {msg}");
        (status, msg).into_response()
    };
    let grant = match TOKENS.redeem(&token, vm_id) {
        Ok(g) => g,
        Err(r) => {
            return refuse(
                StatusCode::FORBIDDEN,
                format!("Screen of VM [{vm_id}] refused: {r}."),
            );
        }
    };
    let vm = {
        let st = oned.store.read();
        Vm::pool(&st).get(vm_id).cloned()
    };
    let Some(vm) = vm else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("VM [{vm_id}] does not exist."),
        );
    };
    let (host, port) = match screen_of(&vm) {
        Ok(s) => s,
        Err(m) => return refuse(StatusCode::CONFLICT, m),
    };
    let Some(mux) = oned.hostmgr.stream(host) else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Host [{host}] of VM [{vm_id}] has no byte stream now (no node agent session)."
            ),
        );
    };
    let stream = match mux.open(&Open::Tcp { port }).await {
        Ok((s, _)) => s,
        Err(e) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                format!("VNC server of VM [{vm_id}] (host [{host}], port {port}): {e}"),
            );
        }
    };
    tracing::info!(vm = vm_id, uid = grant.uid, host, port, "screen opened");
    ws.protocols(["binary"])
        .on_upgrade(move |socket| async move {
            pipe(socket, stream).await;
            tracing::info!(vm = vm_id, uid = grant.uid, "screen closed");
        })
}

/// Copies bytes both ways until either side ends.
async fn pipe(mut socket: WebSocket, stream: one_stream::Stream) {
    let (mut reader, mut writer) = stream.split();
    loop {
        tokio::select! {
            m = socket.recv() => match m {
                Some(Ok(Message::Binary(b))) => {
                    if writer.write(&b).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    if writer.write(t.as_bytes()).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                _ => break,
            },
            d = reader.read() => match d {
                Ok(Some(bytes)) => {
                    if socket.send(Message::Binary(bytes.into())).await.is_err() {
                        break;
                    }
                }
                _ => break,
            },
        }
    }
    let _ = writer.finish().await;
    let _ = socket.send(Message::Close(None)).await;
}

/// Tokens issued and not yet redeemed are capped, so a client asking in a loop cannot grow
/// memory without end; past the cap the oldest are dropped.
const MAX_TOKENS: usize = 10_000;

/// What a token grants: the screen of one VM, to one user, until `expires`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub uid: i64,
    pub vm_id: i64,
    pub expires: Instant,
}

/// Why a token was refused (each is logged; the client only sees "refused").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Never issued, or already used (single use).
    Unknown,
    /// Issued, but its time ran out.
    Expired,
    /// Issued for another VM.
    OtherVm,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Unknown => "unknown or already used token",
            Refusal::Expired => "expired token",
            Refusal::OtherVm => "token issued for another VM",
        })
    }
}

#[derive(Default)]
pub struct ConsoleTokens {
    map: Mutex<HashMap<String, Grant>>,
}

impl ConsoleTokens {
    /// A new token for `uid` on `vm_id`, valid `ttl`.
    pub fn issue(&self, uid: i64, vm_id: i64, ttl: Duration) -> String {
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        let token = hex::encode(b);
        let now = Instant::now();
        let mut map = self.map.lock().unwrap();
        map.retain(|_, g| g.expires > now);
        if map.len() >= MAX_TOKENS {
            let mut by_age: Vec<(Instant, String)> =
                map.iter().map(|(t, g)| (g.expires, t.clone())).collect();
            by_age.sort();
            for (_, t) in by_age.into_iter().take(MAX_TOKENS / 10) {
                map.remove(&t);
            }
        }
        map.insert(
            token.clone(),
            Grant {
                uid,
                vm_id,
                expires: now + ttl,
            },
        );
        token
    }

    /// Redeems `token` for `vm_id`: it is gone afterwards, whatever the outcome (a token
    /// tried on the wrong VM cannot be tried again).
    pub fn redeem(&self, token: &str, vm_id: i64) -> Result<Grant, Refusal> {
        let g = self
            .map
            .lock()
            .unwrap()
            .remove(token)
            .ok_or(Refusal::Unknown)?;
        if g.expires <= Instant::now() {
            return Err(Refusal::Expired);
        }
        if g.vm_id != vm_id {
            return Err(Refusal::OtherVm);
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_single_use_short_lived_and_bound_to_their_vm() {
        let t = ConsoleTokens::default();
        let a = t.issue(3, 7, Duration::from_secs(60));
        assert_eq!(a.len(), 64);
        assert_eq!(t.redeem(&a, 7).unwrap().uid, 3);
        assert_eq!(t.redeem(&a, 7), Err(Refusal::Unknown), "single use");
        let b = t.issue(3, 7, Duration::from_secs(60));
        assert_eq!(t.redeem(&b, 8), Err(Refusal::OtherVm));
        assert_eq!(
            t.redeem(&b, 7),
            Err(Refusal::Unknown),
            "a wrong try uses it up"
        );
        let c = t.issue(3, 7, Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(t.redeem(&c, 7), Err(Refusal::Expired));
        assert_eq!(t.redeem("made-up", 7), Err(Refusal::Unknown));
    }

    #[test]
    fn the_store_is_bounded() {
        let t = ConsoleTokens::default();
        for i in 0..(MAX_TOKENS + 5) {
            t.issue(0, i as i64, Duration::from_secs(60));
        }
        assert!(t.map.lock().unwrap().len() <= MAX_TOKENS);
    }
}
