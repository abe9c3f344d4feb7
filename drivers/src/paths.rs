//! Path checks shared by every operation that writes or removes files: nothing outside the
//! datastore directory (or the VM's directory in it) is ever written or removed.

use crate::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// Refuses a path that is not absolute or holds `.` / `..` components.
pub fn plain_absolute(path: &Path) -> Result<&Path> {
    if !path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(Error::Refused(format!(
            "{} is not a plain absolute path",
            path.display()
        )));
    }
    Ok(path)
}

/// `path` once symlinks are resolved, if it lies strictly inside `base` (also resolved).
/// A path that does not exist is judged by its resolved parent.
pub fn resolved_inside(base: &Path, path: &Path) -> Result<PathBuf> {
    plain_absolute(path)?;
    let real_base = base
        .canonicalize()
        .map_err(|e| Error::io(format!("cannot resolve {}", base.display()), base, e))?;
    let real = match path.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = path.parent().unwrap_or(path);
            let name = path
                .file_name()
                .ok_or_else(|| Error::Refused(format!("{} names no file", path.display())))?;
            parent
                .canonicalize()
                .map_err(|e| Error::io(format!("cannot resolve {}", parent.display()), parent, e))?
                .join(name)
        }
        Err(e) => {
            return Err(Error::io(
                format!("cannot resolve {}", path.display()),
                path,
                e,
            ));
        }
    };
    if real == real_base || !real.starts_with(&real_base) {
        return Err(Error::Refused(format!(
            "{} resolves to {}, outside {}",
            path.display(),
            real.display(),
            real_base.display()
        )));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_dotted_paths_are_refused() {
        assert!(plain_absolute(Path::new("a/b")).is_err());
        assert!(plain_absolute(Path::new("/a/../b")).is_err());
        assert!(plain_absolute(Path::new("/a/b")).is_ok());
    }

    #[test]
    fn a_link_out_of_the_base_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), base.path().join("out")).unwrap();
        assert!(resolved_inside(base.path(), &base.path().join("out/x")).is_err());
        assert!(resolved_inside(base.path(), base.path()).is_err());
        std::fs::create_dir(base.path().join("in")).unwrap();
        assert!(resolved_inside(base.path(), &base.path().join("in/new")).is_ok());
    }
}
