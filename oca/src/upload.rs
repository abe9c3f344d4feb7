//! `POST /upload`: a local file for a new image, streamed to oned's upload endpoint (our
//! extension, docs/api-compatibility.md) with the session as HTTP Basic credentials. The
//! answer's `path` (`upload://TOKEN`) goes into `one.image.allocate` as the image's PATH; it
//! is usable once, by the uploader only, until it expires.

use crate::client::Client;
use crate::error::OcaError;
use serde::Deserialize;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};

/// How long an upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// What oned answers to a finished upload.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Upload {
    /// The token naming the staged file.
    pub token: String,
    /// `upload://TOKEN`: the PATH of the image to register.
    pub path: String,
    /// Bytes received.
    pub size: u64,
    /// When an unused token expires (seconds since the epoch).
    pub expires: i64,
}

/// The upload endpoint beside an XML-RPC endpoint: the last path segment (`RPC2`) replaced
/// by `upload` (`http://host:2633/RPC2` → `http://host:2633/upload`).
pub fn upload_url(endpoint: &str) -> Result<reqwest::Url, OcaError> {
    let mut url = reqwest::Url::parse(endpoint)
        .map_err(|e| OcaError::Config(format!("endpoint {endpoint}: {e}")))?;
    let path = url.path().to_owned();
    let base = match path.rsplit_once('/') {
        Some((dir, _)) => dir.to_owned(),
        None => String::new(),
    };
    url.set_path(&format!("{base}/upload"));
    url.set_query(None);
    Ok(url)
}

/// A reader that reports the bytes read so far.
struct Counting<R, P> {
    inner: R,
    done: u64,
    progress: P,
}

impl<R: AsyncRead + Unpin, P: FnMut(u64) + Unpin> AsyncRead for Counting<R, P> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let n = (buf.filled().len() - before) as u64;
            if n > 0 {
                self.done += n;
                let done = self.done;
                (self.progress)(done);
            }
        }
        polled
    }
}

impl Client {
    /// Streams `file` to oned's `POST /upload` (never whole in memory), calling `progress`
    /// with the bytes sent so far, and returns oned's answer; register the image with
    /// `PATH="<answer.path>"` in [`crate::ImageCalls::allocate`].
    ///
    /// A file that cannot be opened is [`OcaError::File`]; a refusal (401 bad credentials,
    /// 413 too large, 507 staging area full, 503 no frontend agent) is
    /// [`OcaError::Upload`] with oned's reason.
    pub async fn upload<P>(&self, file: &Path, progress: P) -> Result<Upload, OcaError>
    where
        P: FnMut(u64) + Send + Unpin + 'static,
    {
        let file_err = |e: std::io::Error| OcaError::File {
            path: file.display().to_string(),
            source: e,
        };
        let f = tokio::fs::File::open(file).await.map_err(file_err)?;
        let meta = f.metadata().await.map_err(file_err)?;
        if !meta.is_file() {
            return Err(OcaError::File {
                path: file.display().to_string(),
                source: std::io::Error::other("not a regular file"),
            });
        }
        let reader = Counting {
            inner: f,
            done: 0,
            progress,
        };
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            reader,
            1 << 16,
        ));
        self.upload_body(body, meta.len()).await
    }

    /// Sends `len` bytes of `body` (a stream from anywhere: a file, a browser's request) to
    /// oned's `POST /upload` as this client's user. oned refuses a body without a known
    /// length, so `len` must be exact. Errors as [`Client::upload`].
    pub async fn upload_body(&self, body: reqwest::Body, len: u64) -> Result<Upload, OcaError> {
        let url = upload_url(self.endpoint())?;
        let (user, secret) = self
            .session()
            .split_once(':')
            .unwrap_or((self.session(), ""));
        let transport = |e: reqwest::Error| OcaError::Transport(format!("{url}: {e}"));
        let response = self
            .http()
            .post(url.clone())
            .basic_auth(user, Some(secret))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            // The size up front: oned refuses a file over its limit before any byte is sent.
            .header(reqwest::header::CONTENT_LENGTH, len)
            // An upload may take much longer than an ordinary call (ONE_XMLRPC_TIMEOUT).
            .timeout(UPLOAD_TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        if !status.is_success() {
            return Err(OcaError::Upload {
                url: url.to_string(),
                status: status.as_u16(),
                message: text.trim().to_owned(),
            });
        }
        serde_json::from_str(&text)
            .map_err(|e| OcaError::Protocol(format!("{url} answered {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::upload_url;

    #[test]
    fn answers_read_as_oned_writes_them() {
        let t: super::Upload = serde_json::from_str(
            r#"{"token":"ab","path":"upload://ab","size":5,"expires":1700000000}"#,
        )
        .unwrap();
        assert_eq!((t.path.as_str(), t.size), ("upload://ab", 5));
    }

    #[test]
    fn the_upload_url_sits_beside_the_xmlrpc_endpoint() {
        let u = |e| upload_url(e).unwrap().to_string();
        assert_eq!(
            u("http://127.0.0.1:2633/RPC2"),
            "http://127.0.0.1:2633/upload"
        );
        assert_eq!(
            u("https://one.example/api/RPC2"),
            "https://one.example/api/upload"
        );
        assert_eq!(u("http://h:1/"), "http://h:1/upload");
        assert!(upload_url("not a url").is_err());
    }
}
