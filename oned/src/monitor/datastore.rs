//! Datastore monitoring: TOTAL_MB / FREE_MB / USED_MB of every datastore whose BASE_PATH
//! exists on this machine (all of them while datastores live on the front-end), measured with
//! statvfs(3) the way `df -B1M` reports them (OpenNebula's fs `monitor` script): size, space
//! available to unprivileged users, and size minus free blocks.
//!
//! The figures are whole megabytes and stored when one of them changed (so by at least 1 MB):
//! with OpenNebula's 300 s period and a handful of datastores that is a few rows every five
//! minutes.

use crate::store::{Store, StoreError};
use one_proto::objects::datastore::Datastore;
use std::path::Path;

/// A datastore's capacity in MB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub total_mb: i64,
    pub free_mb: i64,
    pub used_mb: i64,
}

/// Figures from statvfs fields, as `df` computes them.
pub fn figures(blocks: u64, bfree: u64, bavail: u64, frsize: u64) -> Figures {
    let mb = |n: u64| (u128::from(n) * u128::from(frsize) / (1024 * 1024)) as i64;
    Figures {
        total_mb: mb(blocks),
        free_mb: mb(bavail),
        used_mb: mb(blocks.saturating_sub(bfree)),
    }
}

/// statvfs(3) of `path`.
#[allow(clippy::unnecessary_cast)] // the statvfs field types differ between platforms
pub fn measure(path: &Path) -> std::io::Result<Figures> {
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

/// One round: measures every datastore (`full`), or only those never measured (TOTAL_MB 0,
/// e.g. just created), and stores the figures that changed in one transaction. Returns how
/// many datastores changed.
pub async fn round(store: &Store, full: bool) -> Result<usize, StoreError> {
    let targets: Vec<(i64, String)> = store
        .read()
        .datastores
        .iter()
        .filter(|d| full || d.total_mb == 0)
        .map(|d| (d.header.id, d.base_path.clone()))
        .collect();
    if targets.is_empty() {
        return Ok(0);
    }
    // statvfs may block (a hung network file system): never on a runtime thread, never
    // under a lock.
    let measured = tokio::task::spawn_blocking(move || {
        targets
            .into_iter()
            .filter_map(|(id, base)| {
                let path = Path::new(&base);
                if base.is_empty() || !path.is_dir() {
                    return None;
                }
                match measure(path) {
                    Ok(f) => Some((id, f)),
                    Err(e) => {
                        tracing::warn!(datastore = id, path = %base, error = %e, "cannot measure datastore");
                        None
                    }
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let changed: Vec<(i64, Figures)> = {
        let st = store.read();
        measured
            .into_iter()
            .filter(|(id, f)| st.datastores.get(*id).is_some_and(|d| current(d) != *f))
            .collect()
    };
    if changed.is_empty() {
        return Ok(0);
    }
    let mut tx = store.begin().await;
    let mut n = 0;
    for (id, f) in &changed {
        let Some(mut ds) = tx.get::<Datastore>(*id) else {
            continue;
        };
        ds.total_mb = f.total_mb;
        ds.free_mb = f.free_mb;
        ds.used_mb = f.used_mb;
        tx.put(ds);
        n += 1;
        tracing::debug!(
            datastore = id,
            total_mb = f.total_mb,
            free_mb = f.free_mb,
            "datastore monitored"
        );
    }
    tx.commit().await?;
    Ok(n)
}

fn current(d: &Datastore) -> Figures {
    Figures {
        total_mb: d.total_mb,
        free_mb: d.free_mb,
        used_mb: d.used_mb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_as_df() {
        // 4 KB blocks: 10 GB in total, 4 GB free of which 3 GB available to users.
        let f = figures(2_621_440, 1_048_576, 786_432, 4096);
        assert_eq!(
            f,
            Figures {
                total_mb: 10_240,
                free_mb: 3072,
                used_mb: 6144
            }
        );
        assert_eq!(figures(10, 20, 5, 1 << 20).used_mb, 0, "never negative");
    }

    #[test]
    fn measures_a_real_directory_and_refuses_a_missing_one() {
        let f = measure(&std::env::temp_dir()).unwrap();
        assert!(f.total_mb > 0 && f.free_mb <= f.total_mb && f.used_mb <= f.total_mb);
        assert!(measure(Path::new("/nonexistent/one-rs/ds")).is_err());
    }
}
