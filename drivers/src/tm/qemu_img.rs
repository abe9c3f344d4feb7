//! `qemu-img`, the one tool that reads and writes disk image formats: what the transfer
//! drivers ask of it, typed. Every call names its formats explicitly (`-f`, `-F`): a format
//! left to probing lets a raw image whose guest wrote a qcow2 header be read as qcow2, and
//! libvirt refuses overlays whose backing format is not recorded.

use crate::{Error, Result, cmd};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The disk formats the drivers handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Raw,
    Qcow2,
}

impl Format {
    /// `raw` or `qcow2` (any case); anything else is refused, naming what was given.
    pub fn parse(s: &str) -> Result<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "raw" => Ok(Format::Raw),
            "qcow2" => Ok(Format::Qcow2),
            other => Err(Error::Refused(format!(
                "disk format {other:?} is not supported (raw or qcow2)"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `qemu-img info` says about one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// The format qemu-img detected (`raw`, `qcow2`, or another it knows).
    pub format: String,
    pub virtual_size: u64,
    /// Bytes the file takes on disk.
    pub actual_size: u64,
    /// The backing file name as written in the image (may be relative).
    pub backing: Option<String>,
    /// The backing file name resolved by qemu-img.
    pub full_backing: Option<PathBuf>,
    pub backing_format: Option<String>,
}

fn qemu_img() -> Command {
    let mut c = Command::new("qemu-img");
    // Messages in English whatever the host's locale: they end up in VM errors.
    c.env("LC_ALL", "C");
    c
}

/// `qemu-img info`. `shared`: read an image a running QEMU holds (`-U`, no lock taken).
pub fn info(path: &Path, shared: bool) -> Result<Info> {
    let mut c = qemu_img();
    c.args(["info", "--output=json"]);
    if shared {
        c.arg("-U");
    }
    c.arg(path);
    let text = cmd::stdout(&mut c)?;
    parse_info(&text).map_err(|why| Error::Command {
        cmd: cmd::display(&c),
        detail: format!("unreadable answer: {why}"),
    })
}

fn parse_info(text: &str) -> std::result::Result<Info, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let n = |k: &str| v.get(k).and_then(|x| x.as_u64());
    Ok(Info {
        format: s("format").ok_or("no format")?,
        virtual_size: n("virtual-size").ok_or("no virtual-size")?,
        actual_size: n("actual-size").unwrap_or(0),
        backing: s("backing-filename"),
        full_backing: s("full-backing-filename").map(PathBuf::from),
        backing_format: s("backing-filename-format"),
    })
}

/// The format of an existing image, as qemu-img detects it: `raw` or `qcow2`, else refused
/// (vmdk, vdi, ... are not served by these drivers).
pub fn detect(path: &Path) -> Result<Format> {
    let i = info(path, true)?;
    Format::parse(&i.format).map_err(|_| {
        Error::Refused(format!(
            "{} is a {} image; the drivers serve raw and qcow2",
            path.display(),
            i.format
        ))
    })
}

/// `qemu-img create`: a new image of `format` at `path`, `size` bytes (or the backing's
/// size when omitted), on top of `backing` (its name as it will be written in the header,
/// and its format).
pub fn create(
    path: &Path,
    format: Format,
    size: Option<u64>,
    backing: Option<(&str, Format)>,
) -> Result<()> {
    let mut c = qemu_img();
    c.args(["create", "-q", "-f", format.as_str()]);
    if let Some((name, bf)) = backing {
        c.args(["-F", bf.as_str(), "-b", name]);
    }
    c.arg(path);
    if let Some(bytes) = size {
        c.arg(bytes.to_string());
    }
    run_io(&mut c, path)
}

/// `qemu-img resize` to `bytes` (never shrinks: callers check).
pub fn resize(path: &Path, format: Format, bytes: u64) -> Result<()> {
    let mut c = qemu_img();
    c.args(["resize", "-q", "-f", format.as_str()])
        .arg(path)
        .arg(bytes.to_string());
    run_io(&mut c, path)
}

/// `qemu-img convert`: the whole content of `src` (its backing chain included) into a new
/// standalone image `dst` of `dst_format`. Zeroes are not written (sparse output).
/// `shared`: `src` may be held by a running QEMU (read without taking its lock).
pub fn convert(
    src: &Path,
    src_format: Format,
    dst: &Path,
    dst_format: Format,
    shared: bool,
) -> Result<()> {
    let mut c = qemu_img();
    c.args(["convert", "-q", "-f", src_format.as_str()]);
    if shared {
        c.arg("-U");
    }
    c.arg(src).args(["-O", dst_format.as_str()]).arg(dst);
    run_io(&mut c, dst)
}

/// `qemu-img rebase` in safe mode: `path` gets `backing` (name, format; `None`: no backing
/// at all) as its backing file, and first takes into itself every cluster where the old and
/// the new backing differ, so the content seen through `path` does not change.
pub fn rebase(path: &Path, backing: Option<(&str, Format)>) -> Result<()> {
    let mut c = qemu_img();
    c.args(["rebase", "-q", "-f", "qcow2"]);
    match backing {
        Some((name, f)) => c.args(["-F", f.as_str(), "-b", name]),
        None => c.args(["-b", ""]),
    };
    c.arg(path);
    run_io(&mut c, path)
}

/// Runs a command that writes `path`; a failure whose message says the disk is full is
/// reported as [`Error::NoSpace`].
fn run_io(c: &mut Command, path: &Path) -> Result<()> {
    match cmd::run(c) {
        Ok(_) => Ok(()),
        Err(Error::Command { cmd, detail }) if detail.contains("No space left on device") => {
            Err(Error::NoSpace {
                path: path.display().to_string(),
                what: format!("{cmd}: {detail}"),
            })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_others_are_named() {
        assert_eq!(Format::parse(" QCOW2").unwrap(), Format::Qcow2);
        assert_eq!(Format::parse("raw").unwrap(), Format::Raw);
        assert_eq!(
            Format::parse("vmdk").unwrap_err().to_string(),
            "disk format \"vmdk\" is not supported (raw or qcow2)"
        );
    }

    #[test]
    fn info_json_is_read() {
        let i = parse_info(
            r#"{"backing-filename-format": "qcow2", "virtual-size": 1073741824,
                "format": "qcow2", "actual-size": 200704,
                "full-backing-filename": "/d/disk.0.snap/0", "backing-filename": "disk.0.snap/0"}"#,
        )
        .unwrap();
        assert_eq!(i.virtual_size, 1 << 30);
        assert_eq!(i.backing.as_deref(), Some("disk.0.snap/0"));
        assert_eq!(
            i.full_backing.as_deref(),
            Some(Path::new("/d/disk.0.snap/0"))
        );
        assert!(parse_info("{}").is_err());
    }
}
