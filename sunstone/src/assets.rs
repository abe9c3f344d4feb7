//! The browser files embedded at build time (build.rs): served at
//! `static/<version>/<path>` with a year's caching, since any change gives a new version.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

mod generated {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

pub use generated::{MISSING, VERSION};

/// The relative URL of an asset (`static/<version>/app.css`).
pub fn url(path: &str) -> String {
    format!("static/{VERSION}/{path}")
}

pub fn get(path: &str) -> Option<(&'static [u8], &'static str)> {
    generated::FILES
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, b, m)| (*b, *m))
}

/// `GET static/{version}/{*path}`. An old version still gets the current file, uncached: a
/// page loaded before an upgrade keeps working.
pub async fn serve(Path((version, path)): Path<(String, String)>) -> Response {
    let Some((bytes, mime)) = get(&path) else {
        let msg = if MISSING.is_empty() {
            format!("no such file: {path}")
        } else {
            format!(
                "no such file: {path}. Browser files were missing when sunstone was built ({}): run scripts/install-deps.sh, then cargo build.",
                MISSING.join(", ")
            )
        };
        return (StatusCode::NOT_FOUND, msg).into_response();
    };
    let cache = if version == VERSION {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_files_are_embedded() {
        let (css, mime) = get("app.css").expect("web/src/app.css is embedded");
        assert!(mime.starts_with("text/css"));
        assert!(!css.is_empty());
        assert!(get("app.js").is_some());
        assert!(url("app.js").starts_with("static/"));
        assert!(
            !url("app.js").starts_with('/'),
            "relative, for reverse proxies"
        );
    }

    #[test]
    fn vendor_files_are_embedded_when_npm_ran() {
        if !MISSING.is_empty() {
            // A build without web/node_modules: the console says so on every page.
            return;
        }
        assert!(get("vendor/htmx.min.js").is_some());
        assert!(get("vendor/novnc/core/rfb.js").is_some());
        assert!(get("vendor/novnc/vendor/pako/lib/zlib/inflate.js").is_some());
    }
}
