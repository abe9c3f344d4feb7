//! `POST /upload` (our extension, docs/api-compatibility.md): a file for a new image, sent
//! as the request body with the XML-RPC session as HTTP Basic credentials
//! (`curl -u user:secret -T disk.qcow2 http://127.0.0.1:2633/upload`). The body is streamed
//! through the frontend agent's byte stream into the upload staging area (never held in
//! oned's memory), up to `storage.upload_max_bytes` (not the XML-RPC request limit). The
//! answer is a token: `PATH="upload://TOKEN"` in `one.image.allocate` registers the file,
//! for its uploader only; an unused token expires after `storage.upload_token_seconds`.
//!
//! Answers: 201 with `{"token", "path", "size", "expires"}`; 401 without valid credentials;
//! 413 for a body larger than the limit; 507 when the staging area is full;
//! 503 when the frontend agent is not running; 400 when the upload broke off.

use crate::daemon::Oned;
use crate::storage::upload::{SCHEME, Upload, lifetime, new_token};
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use one_proto::ds::{DsDir, DsRequest, Target};
use one_proto::stream::{MAX_DATA, Open};

/// Body chunks smaller than this are gathered into one frame before they are sent.
const GATHER: usize = 64 * 1024;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn answer(code: StatusCode, msg: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

/// The staging area as a "datastore" for the agent's removals (id -1).
pub fn staging_target(oned: &Oned, path: &str) -> Target {
    Target {
        ds: DsDir {
            id: -1,
            path: oned.storage.staging.display().to_string(),
        },
        source: path.to_string(),
    }
}

pub async fn handler(oned: Arc<Oned>, headers: HeaderMap, body: Body) -> Response {
    let Some(session) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::basic_session)
    else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"oned upload\"")],
            "the XML-RPC session (user:secret) is needed as HTTP Basic credentials\n",
        )
            .into_response();
    };
    let Some(who) = oned.auth.authenticate(&oned.store, &session).await else {
        tracing::info!("upload: authentication failed");
        return answer(StatusCode::UNAUTHORIZED, "user couldn't be authenticated");
    };
    let max = oned.config.storage.upload_max_bytes;
    let declared: Option<u64> = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if let Some(n) = declared
        && n > max
    {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the upload is {n} bytes; at most {max} are accepted (storage.upload_max_bytes)"
            ),
        );
    }
    let mux = match oned.storage.stream().await {
        Ok(m) => m,
        Err(e) => return answer(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let token = new_token();
    let path = oned.storage.staging.join(&token).display().to_string();
    // Staged without fsync: a restart forgets the token anyway; the registration flushes
    // the file when `storage.sync_images` asks for it.
    let open = Open::Write {
        path: path.clone(),
        max_bytes: max,
        durable: false,
    };
    let (st, _) = match mux.open(&open).await {
        Ok(s) => s,
        Err(e) => return answer(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let (mut r, mut w) = st.split();
    let stall = Duration::from_secs(oned.config.storage.url_stall_timeout_seconds);
    let mut body = body;
    let mut n: u64 = 0;
    let began = Instant::now();
    use http_body_util::BodyExt;
    let mut pending: Vec<u8> = Vec::with_capacity(MAX_DATA);
    let sent: Result<(), (StatusCode, String)> = async {
        loop {
            let next = tokio::time::timeout(stall, body.frame())
                .await
                .map_err(|_| {
                    (
                        StatusCode::BAD_REQUEST,
                        format!(
                            "the upload stalled: nothing received for {} s",
                            stall.as_secs()
                        ),
                    )
                })?;
            let Some(frame) = next else { break };
            let frame = frame.map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("the upload broke off: {e}"),
                )
            })?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            n += chunk.len() as u64;
            if n > max {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the upload exceeds the {max} bytes accepted (storage.upload_max_bytes)"
                    ),
                ));
            }
            // Small chunks are gathered (the agent then writes big blocks, the stream's
            // per-frame costs stay low); a big one goes as it is, without a copy.
            if chunk.len() >= GATHER && pending.is_empty() {
                w.write_bytes(chunk)
                    .await
                    .map_err(|e| status_of(&e.to_string()))?;
                continue;
            }
            pending.extend_from_slice(&chunk);
            if pending.len() >= GATHER {
                let full = std::mem::replace(&mut pending, Vec::with_capacity(MAX_DATA));
                w.write_owned(full)
                    .await
                    .map_err(|e| status_of(&e.to_string()))?;
            }
        }
        if !pending.is_empty() {
            w.write_owned(pending)
                .await
                .map_err(|e| status_of(&e.to_string()))?;
        }
        w.finish().await.map_err(|e| status_of(&e.to_string()))?;
        // The agent's end: the file is in place.
        match r.read().await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Ok(()),
            Err(e) => Err(status_of(&e.to_string())),
        }
    }
    .await;
    if let Err((code, msg)) = sent {
        w.reset(&msg);
        tracing::warn!(uid = who.uid, bytes = n, error = %msg, "upload failed");
        return answer(code, &msg);
    }
    let secs = oned.config.storage.upload_token_seconds;
    oned.storage.uploads.add(
        token.clone(),
        Upload {
            uid: who.uid,
            path,
            bytes: n,
            expires: Instant::now() + lifetime(secs),
        },
    );
    let ms = began.elapsed().as_millis() as u64;
    tracing::info!(uid = who.uid, bytes = n, ms, "upload staged");
    let expires = crate::auth::now_secs() + secs as i64;
    let body = serde_json::json!({
        "token": token,
        "path": format!("{SCHEME}{token}"),
        "size": n,
        "expires": expires,
    });
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

/// The HTTP status of a failed write into the staging area.
fn status_of(msg: &str) -> (StatusCode, String) {
    let code = if msg.starts_with("Not enough space") {
        StatusCode::INSUFFICIENT_STORAGE
    } else if msg.contains("larger than") {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, msg.to_string())
}

/// Removes the files of expired upload tokens, every minute.
pub fn start_sweeper(oned: &Arc<Oned>) {
    let o = oned.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            for path in o.storage.uploads.expire() {
                tracing::info!(file = %path, "upload token expired: file removed");
                o.storage.cleanup_later(staging_target(&o, &path));
            }
            o.storage.run_cleanups().await;
        }
    });
}

/// The staging request that empties the area but for the uploads still waiting.
pub fn clean_staging(oned: &Oned) -> DsRequest {
    DsRequest::CleanStaging {
        dir: oned.storage.staging.display().to_string(),
        keep: oned.storage.uploads.paths(),
    }
}
