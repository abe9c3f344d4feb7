//! Images registered from an http(s) URL: the body is streamed (never held in memory), with
//! a size limit, a connect timeout and a stall timeout (no byte for that long), and only
//! http and https are followed, redirects included. Certificates are checked against the
//! frontend's system trust store.

use crate::{Error, Result};
use one_proto::ds::UrlLimits;
use std::io::Read;
use std::time::Duration;

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 10;

fn allowed_scheme(s: &str) -> bool {
    s == "http" || s == "https"
}

fn client(limits: &UrlLimits) -> Result<reqwest::blocking::Client> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        if !allowed_scheme(attempt.url().scheme()) {
            let to = attempt.url().to_string();
            attempt.error(format!(
                "redirected to {to}: only http and https URLs are followed"
            ))
        } else if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else {
            attempt.follow()
        }
    });
    reqwest::blocking::Client::builder()
        .redirect(policy)
        .connect_timeout(Duration::from_millis(limits.connect_timeout_ms.max(1)))
        // The blocking client applies this to the request and to each read of the body:
        // a download that stalls this long fails, a slow one that keeps going does not.
        .timeout(Duration::from_millis(limits.stall_timeout_ms.max(1)))
        .user_agent(concat!("one-rs/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Unsupported(format!("no HTTP client: {e}")))
}

fn check_url(url: &str) -> Result<reqwest::Url> {
    let u =
        reqwest::Url::parse(url).map_err(|e| Error::Refused(format!("{url} is not a URL: {e}")))?;
    if !allowed_scheme(u.scheme()) {
        return Err(Error::Refused(format!(
            "{url}: only http and https URLs can be registered"
        )));
    }
    Ok(u)
}

/// The error's whole chain, for the image's ERROR.
fn describe(url: &str, e: &reqwest::Error) -> Error {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    if e.is_timeout() {
        msg = format!("{msg} (no data for the stall timeout)");
    }
    Error::Command {
        cmd: format!("download of {url}"),
        detail: msg,
    }
}

/// A successful answer, or the status as an error.
fn ok(url: &str, r: reqwest::blocking::Response) -> Result<reqwest::blocking::Response> {
    if r.status().is_success() {
        Ok(r)
    } else if let Some(to) = r
        .status()
        .is_redirection()
        .then(|| r.headers().get(reqwest::header::LOCATION))
        .flatten()
    {
        // A redirect the client did not follow: to another scheme.
        Err(Error::Refused(format!(
            "{url} redirects to {}: only http and https URLs are followed",
            String::from_utf8_lossy(to.as_bytes())
        )))
    } else {
        Err(Error::Command {
            cmd: format!("download of {url}"),
            detail: format!("the server answered {}", r.status()),
        })
    }
}

/// The body's length as a HEAD request tells it (None: the server does not say, or does not
/// answer HEAD).
pub fn content_length(url: &str, limits: &UrlLimits) -> Result<Option<u64>> {
    let u = check_url(url)?;
    let r = client(limits)?
        .head(u)
        .send()
        .map_err(|e| describe(url, &e))?;
    if !r.status().is_success() {
        return Ok(None);
    }
    Ok(r.headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok()))
}

/// A reader that turns reqwest's errors into the download's words.
struct Body {
    url: String,
    inner: reqwest::blocking::Response,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let timed_out = e.kind() == std::io::ErrorKind::TimedOut
                || e.get_ref()
                    .and_then(|i| i.downcast_ref::<reqwest::Error>())
                    .is_some_and(|r| r.is_timeout());
            let what = if timed_out {
                format!("the download of {} stalled: {e}", self.url)
            } else {
                format!("the download of {} failed: {e}", self.url)
            };
            std::io::Error::new(e.kind(), what)
        })
    }
}

/// Starts the download: the body as a reader, and its length when the server says it.
pub fn open(url: &str, limits: &UrlLimits) -> Result<(Box<dyn Read + Send>, Option<u64>)> {
    let u = check_url(url)?;
    let r = client(limits)?
        .get(u)
        .send()
        .map_err(|e| describe(url, &e))?;
    let r = ok(url, r)?;
    let len = r.content_length();
    Ok((
        Box::new(Body {
            url: url.to_string(),
            inner: r,
        }),
        len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls() {
        assert!(check_url("https://example.org/a.img").is_ok());
        assert!(check_url("http://example.org/a.img").is_ok());
        for bad in ["file:///etc/shadow", "ftp://x/y", "nonsense", "/var/tmp/x"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
