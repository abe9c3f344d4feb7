//! `POST /upload`: one-rs's extension for a new image's file (docs/api-compatibility.md).
//! The file is the request body, the session goes as HTTP Basic credentials; oned answers a
//! token that `one.image.allocate` takes as `PATH="upload://TOKEN"`, for the uploader only.

use crate::{Client, OcaError};
use serde::Deserialize;
use std::time::Duration;

/// oned's answer to an upload.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct UploadTicket {
    pub token: String,
    /// `upload://TOKEN`: the `PATH` of the image to register.
    pub path: String,
    /// Bytes received.
    pub size: u64,
    /// When an unused token expires (seconds since the epoch).
    pub expires: i64,
}

/// An upload may take much longer than an ordinary call.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// oned's upload URL beside its XML-RPC endpoint (`http://host:2633/RPC2` ->
/// `http://host:2633/upload`).
pub fn upload_url(endpoint: &str) -> Result<String, OcaError> {
    let (scheme, rest) = endpoint
        .split_once("://")
        .ok_or_else(|| OcaError::Config(format!("endpoint {endpoint:?} has no scheme")))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    Ok(format!("{scheme}://{authority}/upload"))
}

impl Client {
    /// Sends `len` bytes of `body` to oned's `POST /upload` as this client's user. oned
    /// refuses a body without a known length, so `len` must be exact.
    pub async fn upload(&self, body: reqwest::Body, len: u64) -> Result<UploadTicket, OcaError> {
        let url = upload_url(self.endpoint())?;
        let (user, secret) = self
            .session()
            .split_once(':')
            .unwrap_or((self.session(), ""));
        let transport = |e: reqwest::Error| OcaError::Transport(format!("{url}: {e}"));
        let response = self
            .http()
            .post(&url)
            .basic_auth(user, Some(secret))
            .header(reqwest::header::CONTENT_LENGTH, len)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .timeout(UPLOAD_TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        if !status.is_success() {
            // oned's message says what to do (too large, staging area full, ...).
            return Err(OcaError::Transport(format!(
                "upload refused (HTTP {}): {}",
                status.as_u16(),
                text.trim()
            )));
        }
        serde_json::from_str(&text)
            .map_err(|e| OcaError::Protocol(format!("{url} answered {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_url_beside_the_endpoint() {
        assert_eq!(
            upload_url("http://127.0.0.1:2633/RPC2").unwrap(),
            "http://127.0.0.1:2633/upload"
        );
        assert_eq!(
            upload_url("https://one.example/RPC2").unwrap(),
            "https://one.example/upload"
        );
        assert!(upload_url("127.0.0.1:2633").is_err());
    }

    #[test]
    fn tickets_read_as_oned_writes_them() {
        let t: UploadTicket = serde_json::from_str(
            r#"{"token":"ab","path":"upload://ab","size":5,"expires":1700000000}"#,
        )
        .unwrap();
        assert_eq!((t.path.as_str(), t.size), ("upload://ab", 5));
    }
}
