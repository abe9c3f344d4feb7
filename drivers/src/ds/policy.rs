//! Which local files an image may be registered from (OpenNebula's RESTRICTED_DIRS and
//! SAFE_DIRS, plus what nobody may read), judged on the file actually opened: the path is
//! opened first and the check made on the name the kernel gives the open file, so a symlink
//! swapped in between a check and the open cannot lead elsewhere.

use crate::{Error, Result};
use one_proto::ds::PathPolicy;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A regular file opened for reading, and the real path it was opened at.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    pub real: PathBuf,
    pub len: u64,
}

/// `p` without symlinks when it can be resolved, as given otherwise (a directory listed in
/// a policy may not exist).
fn real_dir(p: &str) -> PathBuf {
    let p = Path::new(p.trim());
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

fn under(path: &Path, dirs: &[String]) -> Option<PathBuf> {
    dirs.iter()
        .filter(|d| !d.trim().is_empty())
        .map(|d| real_dir(d))
        .find(|d| path.starts_with(d))
}

/// The decision of `policy` on the real path `real`: Ok, or the refusal a user reads.
pub fn judge(real: &Path, policy: &PathPolicy) -> Result<()> {
    if let Some(d) = under(real, &policy.forbidden) {
        return Err(Error::Refused(format!(
            "Not allowed to copy images from {}: it holds the cloud's own files",
            d.display()
        )));
    }
    let safe = under(real, &policy.safe).is_some();
    if policy.safe_only {
        if safe {
            return Ok(());
        }
        let dirs = if policy.safe.is_empty() {
            "none".to_string()
        } else {
            policy.safe.join(" ")
        };
        return Err(Error::Refused(format!(
            "Not allowed to copy images from {}: users outside group oneadmin register files \
             from the datastore's SAFE_DIRS ({dirs}), a URL or an upload",
            real.display()
        )));
    }
    if !safe && let Some(d) = under(real, &policy.restricted) {
        return Err(Error::Refused(format!(
            "Not allowed to copy images from {} (RESTRICTED_DIRS of the datastore)",
            d.display()
        )));
    }
    Ok(())
}

/// Opens `path` (a plain absolute path, or a `file://` URL) for reading, if it is a regular
/// file `policy` allows.
pub fn open(path: &str, policy: &PathPolicy) -> Result<Opened> {
    let p = path.strip_prefix("file://").unwrap_or(path);
    let p = Path::new(p);
    if !p.is_absolute() {
        return Err(Error::Refused(format!(
            "PATH {path} is not an absolute path on the frontend"
        )));
    }
    let file = File::open(p).map_err(|e| {
        Error::Refused(match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("Cannot determine size for {path}: no such file")
            }
            _ => format!("Cannot open {path}: {e}"),
        })
    })?;
    // The name of what was opened, whatever the links on the way.
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| Error::io("cannot resolve the opened file", p, e))?;
    judge(&real, policy)?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {path}"), p, e))?;
    if !meta.is_file() {
        return Err(Error::Refused(format!(
            "{path} is not a regular file (a directory, device or pipe cannot be an image)"
        )));
    }
    Ok(Opened {
        len: meta.len(),
        file,
        real,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pol(restricted: &[&str], safe: &[&str], forbidden: &[&str], safe_only: bool) -> PathPolicy {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
        PathPolicy {
            restricted: v(restricted),
            safe: v(safe),
            forbidden: v(forbidden),
            safe_only,
        }
    }

    #[test]
    fn safe_dirs_win_over_restricted_ones_but_not_over_forbidden() {
        let p = pol(&["/etc"], &["/etc/images"], &["/var/lib/one"], false);
        assert!(judge(Path::new("/var/tmp/a.img"), &p).is_ok());
        assert!(judge(Path::new("/etc/shadow"), &p).is_err());
        assert!(judge(Path::new("/etc/images/a.img"), &p).is_ok());
        assert!(judge(Path::new("/etcx/a"), &p).is_ok(), "whole components");
        let e = judge(Path::new("/var/lib/one/one_auth"), &p).unwrap_err();
        assert!(
            e.to_string()
                .contains("Not allowed to copy images from /var/lib/one"),
            "{e}"
        );
        let everything_safe = pol(&["/etc"], &["/"], &["/var/lib/one"], false);
        assert!(judge(Path::new("/var/lib/one/ssh/id_ed25519"), &everything_safe).is_err());
    }

    #[test]
    fn users_outside_oneadmin_only_read_safe_dirs() {
        let p = pol(&["/etc"], &["/srv/images"], &[], true);
        assert!(judge(Path::new("/srv/images/a.img"), &p).is_ok());
        let e = judge(Path::new("/var/tmp/a.img"), &p).unwrap_err();
        assert!(e.to_string().contains("SAFE_DIRS (/srv/images)"), "{e}");
        let none = pol(&[], &[], &[], true);
        assert!(
            judge(Path::new("/tmp/x"), &none)
                .unwrap_err()
                .to_string()
                .contains("(none)")
        );
    }

    #[test]
    fn open_judges_the_file_behind_links_and_refuses_what_is_not_a_file() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("secret");
        std::fs::create_dir(&secret).unwrap();
        std::fs::write(secret.join("key"), b"k").unwrap();
        let public = d.path().join("public");
        std::fs::create_dir(&public).unwrap();
        std::fs::write(public.join("ok.img"), b"1234").unwrap();
        std::os::unix::fs::symlink(secret.join("key"), public.join("link.img")).unwrap();
        let p = pol(&[], &[], &[secret.to_str().unwrap()], false);
        let o = open(public.join("ok.img").to_str().unwrap(), &p).unwrap();
        assert_eq!(o.len, 4);
        let url = format!("file://{}", public.join("ok.img").display());
        assert!(open(&url, &p).is_ok());
        assert!(open(public.join("link.img").to_str().unwrap(), &p).is_err());
        assert!(
            open(public.to_str().unwrap(), &p)
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
        assert!(open("relative/x", &p).is_err());
        let e = open(public.join("nope").to_str().unwrap(), &p).unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
    }
}
