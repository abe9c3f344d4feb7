//! The HTTP side of the API: `POST /RPC2`, decoding, authentication, dispatch, encoding.

use crate::api::{Call, Params, Registry, auth_failed};
use crate::daemon::Oned;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use one_proto::xmlrpc::{self, Limits, Value};
use std::sync::Arc;
use std::time::Duration;

/// What the HTTP routes reach: the daemon and the API's method table.
pub struct Http {
    pub oned: Arc<Oned>,
    pub registry: Registry,
}

/// XML-RPC fault codes (the xmlrpc-c values OpenNebula's server uses).
const FAULT_PARSE: i32 = -503;
const FAULT_TYPE: i32 = -501;
const FAULT_NO_METHOD: i32 = -506;
const FAULT_LIMIT: i32 = -509;

pub fn router(oned: Arc<Oned>, registry: Registry) -> Router {
    Router::new()
        .route("/RPC2", post(rpc))
        .route("/", post(rpc))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(Arc::new(Http { oned, registry }))
}

async fn metrics(State(http): State<Arc<Http>>, headers: axum::http::HeaderMap) -> Response {
    crate::metrics::handler(&http.oned, &headers).await
}

fn xml_response(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn fault(code: i32, message: &str) -> Response {
    xml_response(xmlrpc::write_fault(code, message))
}

async fn rpc(State(http): State<Arc<Http>>, body: Body) -> Response {
    let oned = &http.oned;
    let limit = oned.config.max_request_bytes;
    let bytes = match to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return fault(
                FAULT_LIMIT,
                &format!("request body is larger than {limit} bytes, or could not be read"),
            );
        }
    };
    let limits = Limits {
        max_bytes: limit,
        ..Limits::default()
    };
    let call = match xmlrpc::parse_call(&bytes, &limits) {
        Ok(c) => c,
        Err(e) => return fault(FAULT_PARSE, &e.to_string()),
    };
    let Some((method, handler)) = http.registry.get(&call.method) else {
        return fault(
            FAULT_NO_METHOD,
            &format!("Unknown method {:?}", call.method),
        );
    };
    let mut params = call.params.into_iter();
    let session = match params.next() {
        Some(Value::String(s)) => s,
        _ => {
            return fault(
                FAULT_TYPE,
                &format!("[{method}] The first parameter must be the session string"),
            );
        }
    };
    let answer = match oned.auth.authenticate(&oned.store, &session).await {
        None => {
            tracing::info!(method, "authentication failed");
            Err(auth_failed(method))
        }
        Some(session) => {
            let uid = session.uid;
            let call = Call {
                method,
                session,
                oned: oned.clone(),
            };
            let values: Vec<Value> = params.collect();
            // API hooks: None (nothing copied) unless a hook watches this method.
            let hook_event = crate::hooks::ApiCapture::new(oned, method, &values);
            let params = Params::new(method, values);
            // The handler runs as its own task so that a bug that panics answers INTERNAL
            // instead of dropping the connection; a timeout keeps a client from hanging forever.
            let task = tokio::spawn(handler(call, params));
            let answer = match tokio::time::timeout(Duration::from_secs(300), task).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::error!(method, error = %e, "handler panicked");
                    Err(crate::api::internal(method, "internal error, see oned.log"))
                }
                Err(_) => Err(crate::api::internal(method, "the call timed out")),
            };
            if let Some(ev) = hook_event {
                ev.emit(oned, uid, &answer);
            }
            answer
        }
    };
    crate::metrics::api_call(method, answer.is_err());
    let value = match answer {
        Ok(v) => xmlrpc::one_success(v),
        Err(e) => {
            tracing::debug!(method, code = e.code.code(), message = %e.message, "call failed");
            xmlrpc::one_failure(&e.message, e.code.code())
        }
    };
    xml_response(xmlrpc::write_response(&value))
}
