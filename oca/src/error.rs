//! What a call can fail with. OpenNebula's own failures keep the method, the message and the
//! code exactly as the server sent them, so a client can show them the way OpenNebula's CLI
//! does (`[one.vm.info] Error getting virtual machine [42].`) and match on the code.

pub use one_proto::ErrorCode;
use std::fmt;

/// OpenNebula's failure answer `[false, message, code, ..]` to one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiFailure {
    /// The XML-RPC method called (`one.vm.info`).
    pub method: String,
    /// The error code, [`ErrorCode::Internal`] when the server sent one OpenNebula does not
    /// define (the number is in `raw_code`).
    pub code: ErrorCode,
    /// The code as sent.
    pub raw_code: i64,
    /// The message as sent; OpenNebula's start with `[method]`.
    pub message: String,
}

impl fmt::Display for ApiFailure {
    /// The message as OpenNebula's CLI prints it: the server's text, with `[method] ` in front
    /// when the server did not put it there itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.starts_with('[') {
            f.write_str(&self.message)
        } else {
            write!(f, "[{}] {}", self.method, self.message)
        }
    }
}

impl std::error::Error for ApiFailure {}

/// Everything a call (or reading its answer) can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OcaError {
    /// OpenNebula answered `[false, message, code, ..]`.
    #[error(transparent)]
    Api(#[from] ApiFailure),
    /// The server answered with an XML-RPC fault (unknown method, wrong parameter types).
    #[error("[{method}] XML-RPC fault {code}: {message}")]
    Fault {
        method: String,
        code: i32,
        message: String,
    },
    /// No answer: connection refused, timeout, HTTP error status, unreadable body.
    #[error("transport error: {0}")]
    Transport(String),
    /// An answer that is not what an OpenNebula server sends (bad XML, wrong envelope or type,
    /// an object document that cannot be read).
    #[error("unexpected response: {0}")]
    Protocol(String),
    /// The endpoint or credentials could not be found or read.
    #[error("client configuration: {0}")]
    Config(String),
    /// oned's upload endpoint refused a file (HTTP status and oned's reason).
    #[error("upload to {url} refused (HTTP {status}): {message}")]
    Upload {
        url: String,
        status: u16,
        message: String,
    },
    /// A local file (to upload) could not be read.
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    /// A request the client refuses to send (an ACL rule it cannot parse, a bad argument).
    #[error("{0}")]
    Invalid(String),
}

impl OcaError {
    /// The OpenNebula error code, for [`OcaError::Api`].
    pub fn api_code(&self) -> Option<ErrorCode> {
        match self {
            OcaError::Api(e) => Some(e.code),
            _ => None,
        }
    }

    /// The method that failed, when the server answered.
    pub fn method(&self) -> Option<&str> {
        match self {
            OcaError::Api(e) => Some(&e.method),
            OcaError::Fault { method, .. } => Some(method),
            _ => None,
        }
    }

    /// OpenNebula said the object does not exist (`NO_EXISTS`).
    pub fn is_not_found(&self) -> bool {
        self.api_code() == Some(ErrorCode::NoExists)
    }

    /// OpenNebula refused the session (`AUTHENTICATION`).
    pub fn is_authentication(&self) -> bool {
        self.api_code() == Some(ErrorCode::Authentication)
    }

    /// OpenNebula refused the operation to this user (`AUTHORIZATION`).
    pub fn is_authorization(&self) -> bool {
        self.api_code() == Some(ErrorCode::Authorization)
    }
}
