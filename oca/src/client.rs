//! The connection to oned: one XML-RPC call at a time, OpenNebula's answer envelope unwrapped.

use crate::discovery::Discovery;
use crate::error::{ApiFailure, ErrorCode, OcaError};
use one_proto::xmlrpc::{self, Limits, MethodResponse, Value};
use std::fmt;

/// A connection to one oned. Cheap to clone: clones share the HTTP connection pool.
#[derive(Clone)]
pub struct Client {
    endpoint: String,
    session: String,
    http: reqwest::Client,
    limits: Limits,
}

impl fmt::Debug for Client {
    /// Shows the user but never the password or token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.session.split(':').next().unwrap_or("");
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("user", &user)
            .finish_non_exhaustive()
    }
}

/// What a client accepts from the server by default: answers can be whole pools, so allow what
/// OpenNebula's server allows (`MESSAGE_SIZE`, 1 GiB).
const CLIENT_LIMITS: Limits = Limits {
    max_bytes: 1 << 30,
    max_depth: 64,
};

impl Client {
    /// A client for `endpoint` (`http://host:2633/RPC2`) authenticating as `session`
    /// (`user:password` or `user:token`).
    pub fn new(endpoint: impl Into<String>, session: impl Into<String>) -> Self {
        Self::with_http(endpoint, session, reqwest::Client::new())
    }

    /// Like [`Client::new`], with a caller-built HTTP client (timeouts, proxies, pool sizes).
    pub fn with_http(
        endpoint: impl Into<String>,
        session: impl Into<String>,
        http: reqwest::Client,
    ) -> Self {
        Client {
            endpoint: endpoint.into(),
            session: session.into(),
            http,
            limits: CLIENT_LIMITS,
        }
    }

    /// Endpoint and credentials found as OpenNebula's clients find them (see [`Discovery`]):
    /// `$ONE_XMLRPC` or `~/.one/one_endpoint`, `$ONE_AUTH` or `~/.one/one_auth`, and
    /// `$ONE_XMLRPC_TIMEOUT` seconds per call.
    pub fn from_env() -> Result<Self, OcaError> {
        Self::from_discovery(&Discovery::from_process())
    }

    /// A client from explicit discovery inputs.
    pub fn from_discovery(d: &Discovery) -> Result<Self, OcaError> {
        let mut builder = reqwest::Client::builder();
        if let Some(timeout) = d.call_timeout()? {
            builder = builder.timeout(timeout);
        }
        let http = builder
            .build()
            .map_err(|e| OcaError::Config(format!("HTTP client: {e}")))?;
        Ok(Self::with_http(d.endpoint()?, d.session()?, http))
    }

    /// Replaces the parser limits used on answers.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The session string (`user:secret`), for oned's endpoints beside XML-RPC.
    pub(crate) fn session(&self) -> &str {
        &self.session
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The user part of the session string.
    pub fn username(&self) -> &str {
        self.session.split(':').next().unwrap_or("")
    }

    /// Calls `method` with the session string followed by `params`, and returns the value of a
    /// successful answer.
    pub async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, OcaError> {
        let mut all = Vec::with_capacity(params.len() + 1);
        all.push(Value::String(self.session.clone()));
        all.extend(params);
        let body = xmlrpc::write_call(method, &all);
        match self.post(method, body).await? {
            MethodResponse::Fault { code, message } => Err(OcaError::Fault {
                method: method.to_owned(),
                code,
                message,
            }),
            MethodResponse::Success(v) => unwrap_answer(method, v),
        }
    }

    /// A call whose value is an int (ids from `allocate`, `instantiate`, ...).
    pub async fn call_int(&self, method: &str, params: Vec<Value>) -> Result<i64, OcaError> {
        match self.call(method, params).await? {
            Value::Int(n) => Ok(n),
            other => Err(wrong_type(method, "an int", &other)),
        }
    }

    /// A call whose value is a string (object documents, versions, tokens).
    pub async fn call_string(&self, method: &str, params: Vec<Value>) -> Result<String, OcaError> {
        match self.call(method, params).await? {
            Value::String(s) => Ok(s),
            other => Err(wrong_type(method, "a string", &other)),
        }
    }

    /// `one.system.version`: the server's OpenNebula version, e.g. `7.0.0`.
    pub async fn system_version(&self) -> Result<String, OcaError> {
        self.system().version().await
    }

    /// A client for the same endpoint with another session (`user:password` or
    /// `user:token`), sharing this one's HTTP connections and limits: how a server that acts
    /// for many users (a web console) gives each request its user's own session.
    pub fn with_session(&self, session: impl Into<String>) -> Client {
        Client {
            endpoint: self.endpoint.clone(),
            session: session.into(),
            http: self.http.clone(),
            limits: self.limits,
        }
    }

    /// One HTTP round trip: `text/xml` as OpenNebula's clients send it, any non-2xx status is a
    /// transport error, the body is parsed as a method response.
    async fn post(&self, method: &str, body: String) -> Result<MethodResponse, OcaError> {
        let transport = |e: reqwest::Error| OcaError::Transport(format!("{}: {e}", self.endpoint));
        let response = self
            .http
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "text/xml")
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(OcaError::Transport(format!(
                "{}: HTTP {status}: {}",
                self.endpoint,
                text.trim()
            )));
        }
        xmlrpc::parse_response(&body, &self.limits)
            .map_err(|e| OcaError::Protocol(format!("{method}: {e}")))
    }
}

fn wrong_type(method: &str, wanted: &str, got: &Value) -> OcaError {
    OcaError::Protocol(format!(
        "{method} returned {} where {wanted} was expected",
        got.type_name()
    ))
}

/// OpenNebula's envelope: `[true, value, ..]` or `[false, message, code, ..]`.
fn unwrap_answer(method: &str, v: Value) -> Result<Value, OcaError> {
    let Value::Array(items) = v else {
        return Err(OcaError::Protocol(format!(
            "{method} answered a {} instead of OpenNebula's [ok, value, code] array",
            v.type_name()
        )));
    };
    let mut items = items.into_iter();
    match (items.next(), items.next(), items.next()) {
        (Some(Value::Bool(true)), Some(value), _) => Ok(value),
        (Some(Value::Bool(false)), Some(message), code) => {
            let message = match message {
                Value::String(s) => s,
                // goca accepts an int here; show it rather than fail.
                Value::Int(n) => n.to_string(),
                other => {
                    return Err(OcaError::Protocol(format!(
                        "{method} failed with a {} message",
                        other.type_name()
                    )));
                }
            };
            let raw_code = match code {
                Some(Value::Int(c)) => c,
                _ => ErrorCode::Internal.code().into(),
            };
            let code = i32::try_from(raw_code)
                .ok()
                .and_then(ErrorCode::from_code)
                .unwrap_or(ErrorCode::Internal);
            Err(OcaError::Api(ApiFailure {
                method: method.to_owned(),
                code,
                raw_code,
                message,
            }))
        }
        (first, second, _) => Err(OcaError::Protocol(format!(
            "{method} answered an array starting with {} and {}, not [bool, value, ..]",
            first.as_ref().map_or("nothing", Value::type_name),
            second.as_ref().map_or("nothing", Value::type_name),
        ))),
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
