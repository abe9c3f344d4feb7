//! The data directory: layout, the lock that keeps a second oned away, and the files
//! clients read (`one_auth`, `one_endpoint`).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create data directory {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another oned is using {0} (its lock file oned.lock is held); stop it first")]
    Locked(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An open data directory; holds the lock for as long as it lives.
pub struct DataDir {
    pub root: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates the layout (if needed) and takes the exclusive lock.
    pub fn open(root: &Path) -> Result<DataDir, DataDirError> {
        let create = |path: &Path| {
            fs::create_dir_all(path).map_err(|source| DataDirError::Create {
                path: path.to_path_buf(),
                source,
            })
        };
        create(root)?;
        let root = root.canonicalize().map_err(|source| DataDirError::Create {
            path: root.to_path_buf(),
            source,
        })?;
        for sub in ["datastores", "vms", "ssh"] {
            create(&root.join(sub))?;
        }
        let lock_path = root.join("oned.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| DataDirError::Write {
                path: lock_path.clone(),
                source,
            })?;
        // SAFETY: flock on a file descriptor we own; it has no memory-safety preconditions.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(DataDirError::Locked(root));
        }
        Ok(DataDir { root, _lock: lock })
    }

    pub fn datastore_path(&self, id: i64) -> PathBuf {
        self.root.join("datastores").join(id.to_string())
    }

    pub fn vm_path(&self, id: i64) -> PathBuf {
        self.root.join("vms").join(id.to_string())
    }

    /// This installation's identity (made at the first start, kept in `cloud_id`): the
    /// token files of shared datastores carry it, so a host tells this cloud's datastore
    /// from another's.
    pub fn cloud_id(&self) -> Result<String, DataDirError> {
        let path = self.root.join("cloud_id");
        if let Ok(s) = fs::read_to_string(&path) {
            let id = s.trim();
            if !id.is_empty() {
                return Ok(id.to_string());
            }
        }
        let mut b = [0u8; 16];
        rand::fill(&mut b);
        let id = hex::encode(b);
        self.write_private("cloud_id", &format!("{id}\n"))?;
        Ok(id)
    }

    pub fn create_dir(&self, path: &Path) -> Result<(), DataDirError> {
        fs::create_dir_all(path).map_err(|source| DataDirError::Create {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes a file readable only by oned's user, atomically (temp file + rename).
    pub fn write_private(&self, name: &str, content: &str) -> Result<PathBuf, DataDirError> {
        let path = self.root.join(name);
        let tmp = self.root.join(format!(".{name}.tmp"));
        let err = |source| DataDirError::Write {
            path: path.clone(),
            source,
        };
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(content.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)?;
        Ok(path)
    }
}

/// Reads `user:password` from an OpenNebula auth file (trailing whitespace stripped).
pub fn read_auth_file(path: &Path) -> Option<(String, String)> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().next()?.trim_end();
    let (u, p) = line.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_excludes_a_second_opener() {
        let dir = std::env::temp_dir().join(format!("oned-dd-{}", std::process::id()));
        let a = DataDir::open(&dir).unwrap();
        assert!(matches!(DataDir::open(&dir), Err(DataDirError::Locked(_))));
        let p = a.write_private("one_auth", "oneadmin:x\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            read_auth_file(&p),
            Some(("oneadmin".to_string(), "x".to_string()))
        );
        drop(a);
        assert!(DataDir::open(&dir).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
