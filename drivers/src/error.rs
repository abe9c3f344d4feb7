//! The error every operation answers. Its text goes to a VM's or image's ERROR and log, so
//! it says what failed and on which file or device, in words an administrator can act on.

use std::path::Path;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is not acceptable (a path outside its datastore, a size of 0, ...): nothing
    /// was done.
    #[error("{0}")]
    Refused(String),
    /// A file system call failed.
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    /// The file system is full (ENOSPC / EDQUOT) while writing `path`.
    #[error("not enough space in {path}: {what}")]
    NoSpace { path: String, what: String },
    /// An external command (qemu-img, mkfs, ip, nft, ...) failed or could not start.
    #[error("{cmd} failed: {detail}")]
    Command { cmd: String, detail: String },
    /// A kernel or tool feature this host lacks (no 8021q module, no qemu-img, ...).
    #[error("not supported on this host: {0}")]
    Unsupported(String),
}

impl Error {
    /// An I/O error on `path`, classified: ENOSPC and EDQUOT become [`Error::NoSpace`] so
    /// callers (and users) can tell a full datastore from other failures.
    pub fn io(what: impl Into<String>, path: &Path, err: std::io::Error) -> Error {
        let what = what.into();
        match err.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::NoSpace {
                path: path.display().to_string(),
                what: format!("{what}: {err}"),
            },
            _ => Error::Io { what, err },
        }
    }

    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::NoSpace { .. })
    }
}

/// `map_err` helper: `.map_err(io_err("cannot create", &dir))`.
pub fn io_err<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |err| Error::io(format!("{what} {}", path.display()), path, err)
}
