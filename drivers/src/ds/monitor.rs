//! Datastore capacity (OpenNebula's `monitor`, `df` of BASE_PATH) and the directory and
//! token file of a datastore. A shared datastore's token file is what each host reads back
//! to tell it sees the frontend's file system at that path, and not a directory of its own.

use crate::{Error, Result, Revert, fault, paths};
use one_proto::ds::{DsDir, DsFigures, DsToken, TOKEN_FILE};
use std::io::Write;
use std::path::Path;

/// Capacity in MB from statvfs fields, as `df -B1M` computes it: size, space available to
/// unprivileged users, size minus free blocks.
pub fn figures(blocks: u64, bfree: u64, bavail: u64, frsize: u64) -> (i64, i64, i64) {
    let mb = |n: u64| (u128::from(n) * u128::from(frsize) / (1024 * 1024)) as i64;
    (mb(blocks), mb(bavail), mb(blocks.saturating_sub(bfree)))
}

/// statvfs(3) of `path`: (total, free, used) MB.
#[allow(clippy::unnecessary_cast)] // the statvfs field types differ between platforms
pub fn statvfs(path: &Path) -> std::io::Result<(i64, i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut buf = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `buf` is valid for one statvfs struct, which
    // the call fills completely when it returns 0.
    let rc = unsafe { libc::statvfs(c.as_ptr(), buf.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialized `buf`.
    let s = unsafe { buf.assume_init() };
    let frsize = if s.f_frsize > 0 {
        s.f_frsize
    } else {
        s.f_bsize
    };
    Ok(figures(
        s.f_blocks as u64,
        s.f_bfree as u64,
        s.f_bavail as u64,
        frsize as u64,
    ))
}

/// What a token file holds, when it can be read.
pub fn read_token(dir: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(dir.join(TOKEN_FILE)).map(|s| s.trim_end().to_string())
}

/// Writes `token` as the directory's token file unless it already holds it (atomically: a
/// host never reads half a token).
fn write_token(dir: &Path, token: &str) -> Result<bool> {
    if read_token(dir).is_ok_and(|t| t == token) {
        return Ok(false);
    }
    let tmp = dir.join(format!("{TOKEN_FILE}.tmp"));
    let file = dir.join(TOKEN_FILE);
    fault::step("write the token file")?;
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(token.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &file)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(
            format!("cannot write {}", file.display()),
            &file,
            e,
        ));
    }
    Ok(true)
}

/// Capacity of each datastore directory, writing the token files of `tokens` where missing
/// or different. A directory that cannot be measured is reported with the reason.
pub fn measure(datastores: &[DsDir], tokens: &[DsToken]) -> Vec<DsFigures> {
    datastores
        .iter()
        .map(|d| {
            let path = Path::new(&d.path);
            let mut fig = DsFigures {
                id: d.id,
                ..DsFigures::default()
            };
            if !path.is_dir() {
                fig.error = format!("{} does not exist", d.path);
                return fig;
            }
            match statvfs(path) {
                Ok((t, f, u)) => (fig.total_mb, fig.free_mb, fig.used_mb) = (t, f, u),
                Err(e) => fig.error = format!("cannot measure {}: {e}", d.path),
            }
            if let Some(t) = tokens.iter().find(|t| t.id == d.id)
                && let Err(e) = write_token(path, &t.token)
            {
                tracing::warn!(datastore = d.id, error = %e, "token file");
                if fig.error.is_empty() {
                    fig.error = e.to_string();
                }
            }
            fig
        })
        .collect()
}

/// Makes a datastore's directory (its parents too) and, for a shared one, its token file.
pub fn prepare(ds: &DsDir, token: Option<&str>) -> Result<String> {
    let dir = Path::new(&ds.path);
    paths::plain_absolute(dir)?;
    // The directories this makes, deepest first: taken back (if still empty) on failure.
    let missing: Vec<&Path> = dir.ancestors().take_while(|a| !a.exists()).collect();
    let mut revert = Revert::new();
    let made = !missing.is_empty();
    if made {
        fault::step("make the datastore directory")?;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), dir, e))?;
        for d in missing.iter().rev() {
            revert.add("remove a directory made", move || {
                std::fs::remove_dir(d).map_err(|e| Error::io("cannot remove", d, e))
            });
        }
    }
    let wrote = match token {
        Some(t) => write_token(dir, t)?,
        None => false,
    };
    revert.success();
    Ok(format!(
        "datastore {} at {}{}{}",
        ds.id,
        ds.path,
        if made { ": directory made" } else { "" },
        if wrote { ", token written" } else { "" }
    ))
}

/// Empties the upload staging area `dir` (made when missing) but for the files in `keep`:
/// what uploads left that no token names any more. Only regular files right in `dir` go.
pub fn clean_staging(dir: &Path, keep: &[String]) -> Result<String> {
    paths::plain_absolute(dir)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), dir, e))?;
    let rd = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("cannot list {}", dir.display()), dir, e))?;
    let mut n = 0;
    for e in rd.flatten() {
        let p = e.path();
        let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && !keep.iter().any(|k| Path::new(k) == p) {
            fault::step("remove a staged file")?;
            std::fs::remove_file(&p)
                .map_err(|e| Error::io(format!("cannot remove {}", p.display()), &p, e))?;
            n += 1;
        }
    }
    Ok(format!("{n} staged file(s) removed from {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_keeps_what_is_waiting_only() {
        let d = tempfile::tempdir().unwrap();
        let up = d.path().join("upload");
        std::fs::create_dir(&up).unwrap();
        std::fs::write(up.join("a"), b"a").unwrap();
        std::fs::write(up.join("b.part"), b"b").unwrap();
        std::fs::create_dir(up.join("sub")).unwrap();
        let keep = vec![up.join("a").display().to_string()];
        assert!(clean_staging(&up, &keep).unwrap().starts_with("1 staged"));
        let mut left: Vec<String> = std::fs::read_dir(&up)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec!["a", "sub"]);
        assert!(
            clean_staging(&d.path().join("new"), &[]).is_ok(),
            "made when missing"
        );
    }

    #[test]
    fn df_figures() {
        // 1000 blocks of 1 MiB, 400 free, 300 available to users.
        assert_eq!(figures(1000, 400, 300, 1 << 20), (1000, 300, 600));
        assert_eq!(figures(0, 0, 0, 4096), (0, 0, 0));
    }

    #[test]
    fn measure_reports_missing_dirs_and_writes_tokens_once() {
        let d = tempfile::tempdir().unwrap();
        let ds = DsDir {
            id: 100,
            path: d.path().display().to_string(),
        };
        let gone = DsDir {
            id: 101,
            path: d.path().join("nope").display().to_string(),
        };
        let tokens = [DsToken {
            id: 100,
            token: "one-rs datastore 100 cloud c1".into(),
        }];
        let f = measure(&[ds.clone(), gone], &tokens);
        assert!(f[0].error.is_empty() && f[0].total_mb > 0, "{f:?}");
        assert!(f[1].error.contains("does not exist"));
        assert_eq!(
            read_token(d.path()).unwrap(),
            "one-rs datastore 100 cloud c1"
        );
        assert!(!write_token(d.path(), "one-rs datastore 100 cloud c1").unwrap());
        assert!(
            prepare(&ds, Some("one-rs datastore 100 cloud c2"))
                .unwrap()
                .contains("token written")
        );
        let sub = DsDir {
            id: 5,
            path: d.path().join("5").display().to_string(),
        };
        assert!(prepare(&sub, None).unwrap().contains("directory made"));
        assert!(d.path().join("5").is_dir());
    }
}
