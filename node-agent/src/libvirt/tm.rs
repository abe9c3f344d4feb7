//! The VM's directory on the host's system datastore and the minimal transfer-manager work
//! a *shared* system datastore needs (fact sheet §9): `<ds dir>/<vm id>/` holds `disk.<id>`
//! (volatile disks made here, image disks cloned or linked from their SOURCE), the context
//! CD `disk.<context disk id>`, `deployment.<seq>` and `checkpoint`.
//!
//! Everything written or removed is inside the VM's directory: paths are built from the
//! datastore base and the VM id only, and checked again before a removal. The full transfer
//! drivers (copies between hosts, image datastores) come with the storage work.

use super::domain::VmDoc;
use one_proto::template::Vector;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum TmError {
    #[error("{0}")]
    Refused(String),
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    #[error("{cmd} failed: {out}")]
    Command { cmd: String, out: String },
    #[error("DISK {id} {attr}: {why}")]
    Disk {
        id: String,
        attr: &'static str,
        why: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TmError {
    let what = what.into();
    move |err| TmError::Io { what, err }
}

/// `<base>/<vm id>`, refusing a base that is not a plain absolute path (a `..` could make
/// the VM directory, and so what epilog removes, land outside the datastore).
pub fn vm_dir(base: &Path, vm_id: i64) -> Result<PathBuf, TmError> {
    if vm_id < 0 {
        return Err(TmError::Refused(format!("{vm_id} is not a VM id")));
    }
    if !base.is_absolute()
        || base
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(TmError::Refused(format!(
            "the datastore directory {} is not a plain absolute path",
            base.display()
        )));
    }
    Ok(base.join(vm_id.to_string()))
}

/// Creates the VM directory (0755: QEMU runs as libvirt-qemu and must reach the files).
pub fn mkdir(dir: &Path) -> Result<(), TmError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(io(format!("cannot create {}", dir.display())))
}

/// Removes the VM directory and what it holds; links (persistent disks) are removed, not
/// followed. Refuses a directory that is not `<base>/<vm id>` once symlinks are resolved.
pub fn remove_vm_dir(base: &Path, vm_id: i64) -> Result<bool, TmError> {
    let dir = vm_dir(base, vm_id)?;
    let meta = match std::fs::symlink_metadata(&dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(format!("cannot read {}", dir.display()))(e)),
    };
    if !meta.is_dir() {
        // A link or a file where the VM directory should be: not ours to follow.
        return Err(TmError::Refused(format!(
            "{} is not a directory: not removed",
            dir.display()
        )));
    }
    let real_base = base
        .canonicalize()
        .map_err(io(format!("cannot resolve {}", base.display())))?;
    let real = dir
        .canonicalize()
        .map_err(io(format!("cannot resolve {}", dir.display())))?;
    if real.parent() != Some(real_base.as_path()) || real == real_base {
        return Err(TmError::Refused(format!(
            "{} resolves to {}, outside the datastore {}: not removed",
            dir.display(),
            real.display(),
            real_base.display()
        )));
    }
    std::fs::remove_dir_all(&real).map_err(io(format!("cannot remove {}", real.display())))?;
    Ok(true)
}

fn run(cmd: &mut Command) -> Result<(), TmError> {
    let name = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| TmError::Command {
        cmd: name.clone(),
        out: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if text.is_empty() {
        text = format!("{}", out.status);
    }
    Err(TmError::Command {
        cmd: name,
        out: text,
    })
}

fn sub<'a>(v: &'a Vector, name: &str) -> Option<&'a str> {
    v.get(name).map(str::trim).filter(|s| !s.is_empty())
}

fn yes(v: &Vector, name: &str) -> bool {
    sub(v, name).is_some_and(|s| s.eq_ignore_ascii_case("yes"))
}

/// The disk's id as a number (it names the file `disk.<id>`).
fn disk_id(d: &Vector) -> Result<u32, TmError> {
    let raw = sub(d, "DISK_ID").unwrap_or("");
    raw.parse().map_err(|_| TmError::Disk {
        id: raw.into(),
        attr: "DISK_ID",
        why: "not a disk id".into(),
    })
}

/// What prolog did, one line per disk, for the VM log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PrologReport {
    pub lines: Vec<String>,
}

/// prolog on a shared system datastore: the VM directory, every disk file that is not
/// there yet (a repeated prolog keeps what the first one made, and what the guest wrote),
/// and the context CD, made again each time (the context may have changed).
pub fn prolog(dir: &Path, vm: &VmDoc) -> Result<PrologReport, TmError> {
    mkdir(dir)?;
    let mut report = PrologReport::default();
    for d in vm.template.vectors("DISK") {
        let id = disk_id(d)?;
        let file = dir.join(format!("disk.{id}"));
        if std::fs::symlink_metadata(&file).is_ok() {
            report.lines.push(format!("disk.{id}: kept"));
            continue;
        }
        report.lines.push(make_disk(d, id, &file)?);
    }
    if let Some(ctx) = vm.template.vector("CONTEXT")
        && sub(ctx, "DISK_ID").is_some()
    {
        let id = disk_id(ctx)?;
        context_iso(dir, ctx, id)?;
        report.lines.push(format!("disk.{id}: context CD"));
    }
    Ok(report)
}

/// One disk file: volatile ones made with qemu-img, image ones linked or cloned.
pub fn make_disk(d: &Vector, id: u32, file: &Path) -> Result<String, TmError> {
    let err = |attr, why: String| TmError::Disk {
        id: id.to_string(),
        attr,
        why,
    };
    let kind = sub(d, "TYPE").unwrap_or("FILE").to_ascii_uppercase();
    let format = sub(d, "FORMAT")
        .or_else(|| sub(d, "DRIVER"))
        .unwrap_or("raw")
        .to_ascii_lowercase();
    if !matches!(format.as_str(), "raw" | "qcow2") {
        return Err(err("FORMAT", format!("{format:?}: expected raw or qcow2")));
    }
    let tmp = file.with_extension(format!("{id}.part"));
    match (kind.as_str(), sub(d, "SOURCE")) {
        ("FS" | "SWAP", _) => {
            let size = sub(d, "SIZE")
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|s| *s > 0)
                .ok_or_else(|| err("SIZE", "a volatile disk needs a size in MB".into()))?;
            // swap is always raw: mkswap writes its signature into the file itself.
            let format = if kind == "SWAP" { "raw" } else { &format };
            run(Command::new("qemu-img")
                .args(["create", "-q", "-f", format])
                .arg(&tmp)
                .arg(format!("{size}M")))?;
            if kind == "SWAP" {
                run(Command::new("mkswap").arg(&tmp))?;
            }
            rename(&tmp, file)?;
            Ok(format!("disk.{id}: {kind} {size} MB {format}"))
        }
        (_, None) => Err(err(
            "SOURCE",
            "no SOURCE and not a volatile (TYPE=fs/swap) disk".into(),
        )),
        (_, Some(source)) => {
            let src = Path::new(source);
            if !src.is_absolute() || src.components().any(|c| c == Component::ParentDir) {
                return Err(err("SOURCE", format!("{source}: not an absolute path")));
            }
            if std::fs::metadata(src).is_err() {
                return Err(err(
                    "SOURCE",
                    format!("{source} does not exist on this host"),
                ));
            }
            let persistent = yes(d, "PERSISTENT")
                || sub(d, "CLONE").is_some_and(|c| c.eq_ignore_ascii_case("no"))
                || matches!(kind.as_str(), "CDROM" | "BLOCK");
            if persistent {
                // The guest writes the image itself (or reads a CD / device): a link.
                std::os::unix::fs::symlink(src, file)
                    .map_err(io(format!("cannot link {}", file.display())))?;
                Ok(format!("disk.{id}: linked to {source}"))
            } else if format == "qcow2" {
                // A qcow2 image is cloned as an overlay, as OpenNebula's shared/qcow2 TM does.
                run(Command::new("qemu-img")
                    .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", source])
                    .arg(&tmp))?;
                rename(&tmp, file)?;
                Ok(format!("disk.{id}: qcow2 overlay of {source}"))
            } else {
                std::fs::copy(src, &tmp).map_err(io(format!("cannot copy {source}")))?;
                rename(&tmp, file)?;
                Ok(format!("disk.{id}: copy of {source}"))
            }
        }
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), TmError> {
    std::fs::rename(from, to).map_err(io(format!("cannot rename to {}", to.display())))
}

/// `context.sh` as OpenNebula writes it: a header, then `KEY='value'` per CONTEXT
/// attribute, sorted, a `'` written as `'\''`.
pub fn context_sh(ctx: &Vector) -> String {
    let mut attrs: Vec<&(String, String)> = ctx.attrs.iter().collect();
    attrs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::from("# Context variables generated by OpenNebula\n");
    for (k, v) in attrs {
        out.push_str(k);
        out.push_str("='");
        out.push_str(&v.replace('\'', "'\\''"));
        out.push_str("'\n");
    }
    out
}

/// Writes the context CD `disk.<id>`: an ISO 9660 image (Joliet + Rock Ridge) labelled
/// CONTEXT holding `context.sh`, replaced atomically.
pub fn context_iso(dir: &Path, ctx: &Vector, id: u32) -> Result<(), TmError> {
    let staging = dir.join(".context");
    let _ = std::fs::remove_dir_all(&staging);
    mkdir(&staging)?;
    let sh = staging.join("context.sh");
    std::fs::write(&sh, context_sh(ctx)).map_err(io(format!("cannot write {}", sh.display())))?;
    let file = dir.join(format!("disk.{id}"));
    let tmp = dir.join(format!("disk.{id}.part"));
    let r = run(Command::new("genisoimage")
        .args(["-quiet", "-V", "CONTEXT", "-J", "-R", "-o"])
        .arg(&tmp)
        .arg(&staging));
    let _ = std::fs::remove_dir_all(&staging);
    r?;
    rename(&tmp, &file)
}

/// disk_resize of a disk whose domain is not running: `qemu-img resize` of `disk.<id>` to
/// the DISK's SIZE (MB). Answers the new size in bytes.
pub fn resize_file(dir: &Path, d: &Vector) -> Result<u64, TmError> {
    let id = disk_id(d)?;
    let bytes = new_size_bytes(d)?;
    let file = dir.join(format!("disk.{id}"));
    if std::fs::metadata(&file).is_err() {
        return Err(TmError::Refused(format!(
            "{} does not exist",
            file.display()
        )));
    }
    run(Command::new("qemu-img")
        .args(["resize", "-q"])
        .arg(&file)
        .arg(bytes.to_string()))?;
    Ok(bytes)
}

/// The DISK's SIZE (MB) in bytes.
pub fn new_size_bytes(d: &Vector) -> Result<u64, TmError> {
    let id = sub(d, "DISK_ID").unwrap_or("?").to_string();
    sub(d, "SIZE")
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .and_then(|mb| mb.checked_mul(1024 * 1024))
        .ok_or(TmError::Disk {
            id,
            attr: "SIZE",
            why: "not a size in MB".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(pairs: &[(&str, &str)]) -> Vector {
        let mut v = Vector::new();
        for (k, val) in pairs {
            v.set(k, *val);
        }
        v
    }

    #[test]
    fn context_sh_is_sorted_and_quotes_are_escaped() {
        let ctx = vector(&[
            ("SET_HOSTNAME", "vm1"),
            ("ETH0_IP", "10.0.0.2"),
            ("START_SCRIPT", "echo 'hi' && rm x"),
            ("EMPTY", ""),
        ]);
        assert_eq!(
            context_sh(&ctx),
            "# Context variables generated by OpenNebula\n\
             EMPTY=''\n\
             ETH0_IP='10.0.0.2'\n\
             SET_HOSTNAME='vm1'\n\
             START_SCRIPT='echo '\\''hi'\\'' && rm x'\n"
        );
    }

    #[test]
    fn vm_dirs_stay_inside_the_datastore() {
        assert_eq!(
            vm_dir(Path::new("/var/lib/one/datastores/0"), 7).unwrap(),
            Path::new("/var/lib/one/datastores/0/7")
        );
        for base in ["relative/0", "/var/lib/one/../../etc", "./ds"] {
            assert!(vm_dir(Path::new(base), 1).is_err(), "{base}");
        }
        assert!(vm_dir(Path::new("/ds"), -1).is_err());
    }

    #[test]
    fn removal_refuses_a_vm_dir_that_is_a_link_out() {
        let root = std::env::temp_dir().join(format!("one-tm-rm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let ds = root.join("ds");
        let outside = root.join("precious");
        std::fs::create_dir_all(&ds).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, ds.join("3")).unwrap();
        let e = remove_vm_dir(&ds, 3).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        assert!(outside.join("keep").exists());

        // A real VM dir with a link to a persistent image: the link goes, the image stays.
        let vm = ds.join("4");
        std::fs::create_dir_all(&vm).unwrap();
        std::os::unix::fs::symlink(outside.join("keep"), vm.join("disk.0")).unwrap();
        assert!(remove_vm_dir(&ds, 4).unwrap());
        assert!(!vm.exists() && outside.join("keep").exists());
        assert!(!remove_vm_dir(&ds, 4).unwrap(), "absent: nothing to do");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn bad_disks_are_errors_naming_the_attribute() {
        let dir = std::env::temp_dir().join(format!("one-tm-bad-{}", std::process::id()));
        let f = dir.join("disk.0");
        let e = make_disk(&vector(&[("TYPE", "fs")]), 0, &f).unwrap_err();
        assert_eq!(
            e.to_string(),
            "DISK 0 SIZE: a volatile disk needs a size in MB"
        );
        let e = make_disk(&vector(&[("SOURCE", "../etc/passwd")]), 0, &f).unwrap_err();
        assert!(e.to_string().contains("not an absolute path"), "{e}");
        let e = make_disk(&vector(&[("SOURCE", "/nonexistent/img")]), 0, &f).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = make_disk(
            &vector(&[("TYPE", "fs"), ("SIZE", "1"), ("FORMAT", "vmdk")]),
            0,
            &f,
        )
        .unwrap_err();
        assert!(e.to_string().contains("expected raw or qcow2"), "{e}");
    }

    fn have(cmd: &str) -> bool {
        Command::new(cmd)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// prolog with real tools: volatile disks, a qcow2 overlay, a copy, a link, the context
    /// CD; then a resize and the removal.
    #[test]
    fn prolog_makes_the_files_and_epilog_removes_them() {
        if !have("qemu-img") || !have("genisoimage") {
            println!("SKIP: qemu-img or genisoimage is missing");
            return;
        }
        let root = std::env::temp_dir().join(format!("one-tm-prolog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let images = root.join("images");
        std::fs::create_dir_all(&images).unwrap();
        let qcow = images.join("base.qcow2");
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&qcow)
            .arg("8M"))
        .unwrap();
        let raw = images.join("base.raw");
        std::fs::write(&raw, vec![7u8; 4096]).unwrap();
        let xml = format!(
            "<VM><ID>9</ID><NAME>t</NAME><TEMPLATE>\
             <DISK><DISK_ID>0</DISK_ID><SOURCE>{}</SOURCE><FORMAT>qcow2</FORMAT></DISK>\
             <DISK><DISK_ID>1</DISK_ID><SOURCE>{}</SOURCE><CLONE>YES</CLONE></DISK>\
             <DISK><DISK_ID>2</DISK_ID><SOURCE>{}</SOURCE><PERSISTENT>YES</PERSISTENT></DISK>\
             <DISK><DISK_ID>3</DISK_ID><TYPE>fs</TYPE><SIZE>4</SIZE><FORMAT>qcow2</FORMAT></DISK>\
             <DISK><DISK_ID>4</DISK_ID><TYPE>swap</TYPE><SIZE>2</SIZE></DISK>\
             <CONTEXT><DISK_ID>5</DISK_ID><TARGET>hda</TARGET>\
             <SET_HOSTNAME>it's</SET_HOSTNAME></CONTEXT></TEMPLATE></VM>",
            qcow.display(),
            raw.display(),
            raw.display()
        );
        let vm = VmDoc::parse(&xml).unwrap();
        let ds = root.join("ds");
        let dir = vm_dir(&ds, 9).unwrap();
        let report = prolog(&dir, &vm).unwrap();
        assert_eq!(report.lines.len(), 6, "{report:?}");
        let info = |f: &str| {
            let out = Command::new("qemu-img")
                .args(["info", "-U", "--output=json"])
                .arg(dir.join(f))
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let d0 = info("disk.0");
        assert!(
            d0.contains("\"format\": \"qcow2\"") && d0.contains("base.qcow2"),
            "{d0}"
        );
        assert_eq!(std::fs::read(dir.join("disk.1")).unwrap(), vec![7u8; 4096]);
        assert!(
            !std::fs::symlink_metadata(dir.join("disk.1"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(std::fs::read_link(dir.join("disk.2")).unwrap(), raw);
        assert!(info("disk.3").contains("\"virtual-size\": 4194304"));
        assert_eq!(
            std::fs::metadata(dir.join("disk.4")).unwrap().len(),
            2 << 20
        );
        // The context CD: ISO 9660 labelled CONTEXT, with context.sh inside.
        let iso = std::fs::read(dir.join("disk.5")).unwrap();
        assert_eq!(&iso[0x8001..0x8006], b"CD001");
        assert_eq!(&iso[0x8028..0x802f], b"CONTEXT");
        let text = String::from_utf8_lossy(&iso);
        assert!(
            text.contains("SET_HOSTNAME='it'\\''s'"),
            "context.sh in the ISO"
        );
        assert!(!dir.join(".context").exists());

        // A repeated prolog keeps the disks.
        std::fs::write(dir.join("disk.1"), b"guest data").unwrap();
        let again = prolog(&dir, &vm).unwrap();
        assert!(again.lines[1].ends_with("kept"), "{again:?}");
        assert_eq!(std::fs::read(dir.join("disk.1")).unwrap(), b"guest data");

        // disk_resize of disk 3 to 6 MB.
        let d3 = vector(&[("DISK_ID", "3"), ("SIZE", "6")]);
        assert_eq!(resize_file(&dir, &d3).unwrap(), 6 << 20);
        assert!(info("disk.3").contains("\"virtual-size\": 6291456"));

        assert!(remove_vm_dir(&ds, 9).unwrap());
        assert!(!dir.exists() && raw.exists() && qcow.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
