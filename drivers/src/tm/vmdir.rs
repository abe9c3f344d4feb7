//! A VM's directory on a host's system datastore, `<datastore dir>/<vm id>/` (fact sheet
//! §9): `disk.<id>` per disk (a file, or a link: to the image of a persistent disk, or into
//! `disk.<id>.snap/` for a qcow2 disk with its snapshot chain), the context CD
//! `disk.<context id>`, `deployment.<seq>`, `checkpoint`.
//!
//! Every path the drivers write or remove is built here from the datastore directory, the
//! VM id and a disk id, and the VM directory is checked again (symlinks resolved) before it
//! is removed: nothing outside it is ever touched.

use crate::{Error, Result, fault, paths};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmDir {
    base: PathBuf,
    vm_id: i64,
    path: PathBuf,
}

impl VmDir {
    /// `<base>/<vm id>`; refuses a base that is not a plain absolute path (a `..` could make
    /// the VM directory, and so what epilog removes, land outside the datastore).
    pub fn new(base: &Path, vm_id: i64) -> Result<VmDir> {
        if vm_id < 0 {
            return Err(Error::Refused(format!("{vm_id} is not a VM id")));
        }
        paths::plain_absolute(base).map_err(|_| {
            Error::Refused(format!(
                "the datastore directory {} is not a plain absolute path",
                base.display()
            ))
        })?;
        Ok(VmDir {
            base: base.to_path_buf(),
            vm_id,
            path: base.join(vm_id.to_string()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The system datastore's directory.
    pub fn base(&self) -> &Path {
        &self.base
    }

    pub fn vm_id(&self) -> i64 {
        self.vm_id
    }

    /// `disk.<id>`.
    pub fn disk(&self, id: u32) -> PathBuf {
        self.path.join(format!("disk.{id}"))
    }

    /// `disk.<id>.snap`, the directory of a qcow2 disk's chain.
    pub fn snap_dir(&self, id: u32) -> PathBuf {
        self.path.join(format!("disk.{id}.snap"))
    }

    pub fn exists(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_dir())
    }

    /// Makes the VM directory (0755: QEMU runs as libvirt-qemu and must reach the files).
    /// `create_base`: the datastore directory may be made too (a host's local datastore);
    /// otherwise a missing one is an error, since on a shared datastore a missing directory
    /// means the share is not mounted, and writing there would put the VM's disks on the
    /// host's own disk behind everyone's back. Answers whether the VM directory was made.
    pub fn make(&self, create_base: bool) -> Result<bool> {
        if self.exists() {
            return Ok(false);
        }
        if !create_base && !self.base.is_dir() {
            return Err(Error::Refused(format!(
                "the system datastore directory {} does not exist on this host (is the \
                 shared datastore mounted?)",
                self.base.display()
            )));
        }
        fault::step("make the VM directory")?;
        make_dir_all(&self.path)?;
        Ok(true)
    }

    /// Removes the VM directory and what it holds; links (persistent disks) are removed, not
    /// followed. Refuses a directory that is not `<base>/<vm id>` once symlinks are resolved.
    /// Answers whether there was something to remove.
    pub fn remove(&self) -> Result<bool> {
        let meta = match std::fs::symlink_metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(Error::io(
                    format!("cannot read {}", self.path.display()),
                    &self.path,
                    e,
                ));
            }
        };
        if !meta.is_dir() {
            // A link or a file where the VM directory should be: not ours to follow.
            return Err(Error::Refused(format!(
                "{} is not a directory: not removed",
                self.path.display()
            )));
        }
        let real = paths::resolved_inside(&self.base, &self.path)?;
        let real_base = self.base.canonicalize().map_err(|e| {
            Error::io(
                format!("cannot resolve {}", self.base.display()),
                &self.base,
                e,
            )
        })?;
        if real.parent() != Some(real_base.as_path()) {
            return Err(Error::Refused(format!(
                "{} resolves to {}, outside the datastore {}: not removed",
                self.path.display(),
                real.display(),
                real_base.display()
            )));
        }
        fault::step("remove the VM directory")?;
        std::fs::remove_dir_all(&real)
            .map_err(|e| Error::io(format!("cannot remove {}", real.display()), &real, e))?;
        Ok(true)
    }
}

/// `mkdir -p` with mode 0755 for what is made.
pub fn make_dir_all(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_dirs_stay_inside_the_datastore() {
        let d = VmDir::new(Path::new("/var/lib/one/datastores/0"), 7).unwrap();
        assert_eq!(d.path(), Path::new("/var/lib/one/datastores/0/7"));
        assert_eq!(d.disk(2), Path::new("/var/lib/one/datastores/0/7/disk.2"));
        assert_eq!(
            d.snap_dir(2),
            Path::new("/var/lib/one/datastores/0/7/disk.2.snap")
        );
        for base in ["relative/0", "/var/lib/one/../../etc", "./ds"] {
            assert!(VmDir::new(Path::new(base), 1).is_err(), "{base}");
        }
        assert!(VmDir::new(Path::new("/ds"), -1).is_err());
    }

    #[test]
    fn a_shared_datastore_that_is_not_there_is_not_made() {
        let root = tempfile::tempdir().unwrap();
        let d = VmDir::new(&root.path().join("ds"), 3).unwrap();
        let e = d.make(false).unwrap_err();
        assert!(
            e.to_string().contains("is the shared datastore mounted"),
            "{e}"
        );
        assert!(!root.path().join("ds").exists());
        assert!(d.make(true).unwrap());
        assert!(!d.make(false).unwrap(), "there already");
    }

    #[test]
    fn removal_refuses_a_vm_dir_that_is_a_link_out() {
        let root = tempfile::tempdir().unwrap();
        let ds = root.path().join("ds");
        let outside = root.path().join("precious");
        std::fs::create_dir_all(&ds).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, ds.join("3")).unwrap();
        let e = VmDir::new(&ds, 3).unwrap().remove().unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        assert!(outside.join("keep").exists());

        // A real VM dir with a link to a persistent image: the link goes, the image stays.
        let vm = VmDir::new(&ds, 4).unwrap();
        std::fs::create_dir_all(vm.path()).unwrap();
        std::os::unix::fs::symlink(outside.join("keep"), vm.disk(0)).unwrap();
        assert!(vm.remove().unwrap());
        assert!(!vm.path().exists() && outside.join("keep").exists());
        assert!(!vm.remove().unwrap(), "absent: nothing to do");
    }
}
