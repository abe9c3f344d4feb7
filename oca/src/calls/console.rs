//! `one.vm.vnc`: one-rs's extension for the VM's screen (docs/api-compatibility.md).

use super::int;
use super::vm::VmCalls;
use crate::OcaError;

impl VmCalls<'_> {
    /// `one.vm.vnc`: a short-lived, single-use token for the VM's screen, bound to the
    /// calling user and the VM (oned refuses it without USE on the VM). The token opens
    /// oned's websocket `GET /vnc/VM_ID?token=TOKEN` ([`vnc_websocket_url`]), which carries
    /// the VM's VNC (RFB) bytes.
    pub async fn vnc_token(&self, id: i64) -> Result<String, OcaError> {
        self.c.call_string("one.vm.vnc", vec![int(id)]).await
    }
}

/// The URL of oned's VNC websocket for VM `id` and `token`, from oned's XML-RPC endpoint
/// (`http://host:2633/RPC2` -> `ws://host:2633/vnc/7?token=...`).
pub fn vnc_websocket_url(endpoint: &str, id: i64, token: &str) -> Result<String, OcaError> {
    let (scheme, rest) = endpoint
        .split_once("://")
        .ok_or_else(|| OcaError::Config(format!("endpoint {endpoint:?} has no scheme")))?;
    let ws = match scheme {
        "http" => "ws",
        "https" => "wss",
        other => {
            return Err(OcaError::Config(format!(
                "endpoint {endpoint:?}: unknown scheme {other:?}"
            )));
        }
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let token: String = token
        .bytes()
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        .map(char::from)
        .collect();
    Ok(format!("{ws}://{authority}/vnc/{id}?token={token}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_url_from_the_endpoint() {
        assert_eq!(
            vnc_websocket_url("http://127.0.0.1:2633/RPC2", 7, "ab12").unwrap(),
            "ws://127.0.0.1:2633/vnc/7?token=ab12"
        );
        assert_eq!(
            vnc_websocket_url("https://one.example:443/RPC2", 0, "x&y").unwrap(),
            "wss://one.example:443/vnc/0?token=xy"
        );
        assert!(vnc_websocket_url("127.0.0.1:2633", 1, "t").is_err());
    }
}
