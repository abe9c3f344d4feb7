//! Embeds the browser files into the binary: the console's own (web/src, committed) and the
//! third-party ones that `npm ci` put in web/node_modules (scripts/install-deps.sh runs it;
//! they are never committed). Writes `$OUT_DIR/assets.rs`: a table of (path, bytes, MIME
//! type) and a version string (a hash of every file) that goes into the assets' URLs, so
//! browsers may cache them for good.
//!
//! When web/node_modules is missing the build still succeeds (so `cargo clippy` works on a
//! fresh clone), with a warning, and the table lists which third-party files are missing:
//! the running console then says so on every page instead of failing silently.

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// Third-party files: (URL path under static/, path under web/node_modules). A directory
/// entry takes every .js file below it.
const VENDOR: &[(&str, &str)] = &[
    ("vendor/htmx.min.js", "htmx.org/dist/htmx.min.js"),
    ("vendor/novnc/core", "@novnc/novnc/core"),
    (
        "vendor/novnc/vendor/pako/lib",
        "@novnc/novnc/vendor/pako/lib",
    ),
];

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let web = dir.join("web");
    let modules = web.join("node_modules");
    println!("cargo:rerun-if-changed=web/src");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-changed=web/node_modules/.package-lock.json");

    let mut files: Vec<(String, PathBuf)> = Vec::new();
    collect(&web.join("src"), "", &mut files);
    let mut missing = Vec::new();
    for (url, rel) in VENDOR {
        let src = modules.join(rel);
        if src.is_file() {
            files.push(((*url).to_owned(), src));
        } else if src.is_dir() {
            collect(&src, url, &mut files);
        } else {
            missing.push(format!("{rel} (npm package)"));
        }
    }
    if !missing.is_empty() {
        println!(
            "cargo:warning=sunstone: browser files missing from {}: {}. Run scripts/install-deps.sh (npm ci in sunstone/web), then build again.",
            modules.display(),
            missing.join(", ")
        );
    }
    files.sort();

    let mut hasher = DefaultHasher::new();
    let mut out = String::from(
        "/// (path under static/, contents, MIME type)\npub static FILES: &[(&str, &[u8], &str)] = &[\n",
    );
    for (url, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        url.hash(&mut hasher);
        bytes.hash(&mut hasher);
        writeln!(
            out,
            "    ({url:?}, include_bytes!({:?}), {:?}),",
            path.display().to_string(),
            mime(url)
        )
        .unwrap();
    }
    out.push_str("];\n");
    writeln!(
        out,
        "/// Third-party files that were not found at build time.\npub static MISSING: &[&str] = &{missing:?};"
    )
    .unwrap();
    writeln!(
        out,
        "/// Changes whenever any file changes: part of every asset URL.\npub const VERSION: &str = \"{:012x}\";",
        hasher.finish() & 0xffff_ffff_ffff
    )
    .unwrap();
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("assets.rs");
    std::fs::write(dest, out).unwrap();
}

/// Every file below `dir` (recursively) as (prefix/relative path, absolute path); only .js,
/// .css, .svg and .ico files, so READMEs and licences stay out of the binary.
fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let url = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if path.is_dir() {
            collect(&path, &url, out);
        } else if ["js", "css", "svg", "ico"]
            .iter()
            .any(|ext| name.ends_with(&format!(".{ext}")))
        {
            out.push((url, path));
        }
    }
}

fn mime(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}
