//! `qemu-img` for the datastore operations, typed. An image being registered is untrusted:
//! its format is told from its first bytes here, and qemu-img is always given it (`-f`), so
//! a raw image that merely starts with some format's header is never read as that format
//! by accident, and formats whose headers name other files (vmdk extents, ...) are refused
//! before any tool opens them.

use crate::{Error, Result, cmd};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The formats images are registered in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "raw" => Ok(Format::Raw),
            "qcow2" => Ok(Format::Qcow2),
            other => Err(Error::Refused(format!(
                "image format {other:?} is not supported (raw or qcow2)"
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

/// Formats qemu-img knows by a magic number at offset 0, besides qcow2.
const OTHER_MAGICS: &[(&[u8], &str)] = &[
    (b"KDMV", "vmdk"),
    (b"# Disk DescriptorFile", "vmdk"),
    (b"QED\0", "qed"),
    (b"vhdxfile", "vhdx"),
    (b"conectix", "vpc"),
    (b"<<< QEMU VM Virtual Disk Image >>>", "vdi"),
    (b"<<< Sun VirtualBox Disk Image >>>", "vdi"),
    (b"<<< innotek VirtualBox Disk Image >>>", "vdi"),
    (b"QFI\xfb", "qcow2"),
    (b"QFI\x00", "qcow"),
    (b"WithoutFreeSpace", "parallels"),
    (b"WithouFreSpacExt", "parallels"),
    (b"cloop", "cloop"),
    (b"\xbe\x1c\x8a\xb9", "vvfat"),
];

/// The format a file's first bytes announce: qcow2, raw (nothing known), or refused.
pub fn sniff(path: &Path) -> Result<Format> {
    let mut head = [0u8; 64];
    let mut f = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), path, e))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => {
                return Err(Error::io(
                    format!("cannot read {}", path.display()),
                    path,
                    e,
                ));
            }
        }
    }
    sniff_bytes(&head[..n])
}

pub fn sniff_bytes(head: &[u8]) -> Result<Format> {
    for (magic, name) in OTHER_MAGICS {
        if head.starts_with(magic) {
            return match *name {
                "qcow2" => Ok(Format::Qcow2),
                other => Err(Error::Refused(format!(
                    "the image is in {other} format, which this cloud does not serve: convert it \
                     to qcow2 first (qemu-img convert -O qcow2 IN OUT) and register that"
                ))),
            };
        }
    }
    Ok(Format::Raw)
}

/// The virtual size in a qcow2 header (bytes 24..32), for a size estimate without running
/// a tool on an unchecked file.
pub fn qcow2_header_size(head: &[u8]) -> Option<u64> {
    if !head.starts_with(b"QFI\xfb") || head.len() < 32 {
        return None;
    }
    Some(u64::from_be_bytes(head[24..32].try_into().ok()?))
}

/// An internal snapshot of a qcow2 image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub name: String,
    pub date: i64,
}

/// What `qemu-img info` says about an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    pub format: String,
    pub virtual_size: u64,
    /// The backing file as written in the image, and as qemu-img resolves it.
    pub backing: Option<String>,
    pub full_backing: Option<PathBuf>,
    /// A qcow2 external data file.
    pub data_file: Option<String>,
    pub snapshots: Vec<Snapshot>,
}

fn qemu_img() -> Command {
    let mut c = Command::new("qemu-img");
    // English messages whatever the locale: they end up in an image's ERROR.
    c.env("LC_ALL", "C");
    c
}

/// `qemu-img info` of an image of known format.
pub fn info(path: &Path, format: Format) -> Result<Info> {
    let mut c = qemu_img();
    c.args(["info", "--output=json", "-f", format.as_str()])
        .arg(path);
    let text = cmd::stdout(&mut c)?;
    parse_info(&text).map_err(|why| Error::Command {
        cmd: cmd::display(&c),
        detail: format!("unreadable answer: {why}"),
    })
}

pub fn parse_info(text: &str) -> std::result::Result<Info, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let snapshots = v
        .get("snapshots")
        .and_then(|x| x.as_array())
        .map(|a| {
            a.iter()
                .map(|s| Snapshot {
                    id: s
                        .get("id")
                        .and_then(|x| x.as_str())
                        .unwrap_or("")
                        .to_string(),
                    name: s
                        .get("name")
                        .and_then(|x| x.as_str())
                        .unwrap_or("")
                        .to_string(),
                    date: s.get("date-sec").and_then(|x| x.as_i64()).unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Info {
        format: s("format").ok_or("no format")?,
        virtual_size: v
            .get("virtual-size")
            .and_then(|x| x.as_u64())
            .ok_or("no virtual-size")?,
        backing: s("backing-filename"),
        full_backing: s("full-backing-filename").map(PathBuf::from),
        data_file: v
            .pointer("/format-specific/data/data-file")
            .and_then(|x| x.as_str())
            .map(str::to_string),
        snapshots,
    })
}

/// Runs a qemu-img command that writes `path`: a full disk is [`Error::NoSpace`].
fn run_writing(c: &mut Command, path: &Path) -> Result<()> {
    match cmd::run(c) {
        Ok(_) => Ok(()),
        Err(Error::Command { cmd, detail })
            if detail.contains("No space left on device")
                || detail.contains("Disk quota exceeded") =>
        {
            Err(Error::NoSpace {
                path: path.display().to_string(),
                what: format!("{cmd}: {detail}"),
            })
        }
        Err(e) => Err(e),
    }
}

/// A new empty image of `bytes`.
pub fn create(path: &Path, format: Format, bytes: u64) -> Result<()> {
    let mut c = qemu_img();
    c.args(["create", "-q", "-f", format.as_str()])
        .arg(path)
        .arg(bytes.to_string());
    run_writing(&mut c, path)
}

/// Grows an image to `bytes`.
pub fn resize(path: &Path, format: Format, bytes: u64) -> Result<()> {
    let mut c = qemu_img();
    c.args(["resize", "-q", "-f", format.as_str()])
        .arg(path)
        .arg(bytes.to_string());
    run_writing(&mut c, path)
}

/// A standalone copy of `src` (or of its internal snapshot `snapshot`) as `dst`.
pub fn convert(
    src: &Path,
    src_format: Format,
    snapshot: Option<&str>,
    dst: &Path,
    dst_format: Format,
) -> Result<()> {
    let mut c = qemu_img();
    c.args(["convert", "-q", "-f", src_format.as_str()]);
    if let Some(s) = snapshot {
        c.arg("-l").arg(format!("snapshot.name={s}"));
    }
    c.args(["-O", dst_format.as_str()]).arg(src).arg(dst);
    run_writing(&mut c, dst)
}

/// `qemu-img snapshot -a` (revert) or `-d` (delete) of snapshot `name`.
pub fn snapshot(path: &Path, flag: &str, name: &str) -> Result<()> {
    // `snapshot` takes no -f: the driver is named in the image options instead (a comma in
    // an option value is written twice).
    let opts = format!(
        "driver=qcow2,file.filename={}",
        path.display().to_string().replace(',', ",,")
    );
    let mut c = qemu_img();
    c.args(["snapshot", "-q", flag, name, "--image-opts", &opts]);
    run_writing(&mut c, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_tells_qcow2_raw_and_refused_formats() {
        assert_eq!(sniff_bytes(b"QFI\xfb\0\0\0\x03").unwrap(), Format::Qcow2);
        assert_eq!(sniff_bytes(b"\0\0\0\0").unwrap(), Format::Raw);
        assert_eq!(sniff_bytes(b"").unwrap(), Format::Raw);
        let e = sniff_bytes(b"# Disk DescriptorFile\nRW 8 FLAT \"/etc/shadow\" 0").unwrap_err();
        assert!(e.to_string().contains("vmdk format"), "{e}");
        assert!(sniff_bytes(b"KDMV....").is_err());
        let mut h = b"QFI\xfb\0\0\0\x03".to_vec();
        h.extend_from_slice(&[0; 16]);
        h.extend_from_slice(&(10u64 << 20).to_be_bytes());
        assert_eq!(qcow2_header_size(&h), Some(10 << 20));
        assert_eq!(qcow2_header_size(b"QFI\xfb"), None);
    }

    #[test]
    fn info_parses_snapshots_backing_and_data_file() {
        let i = parse_info(
            r#"{"snapshots":[{"name":"s1","date-sec":17,"id":"1"}],"virtual-size":10485760,
            "format":"qcow2","format-specific":{"type":"qcow2","data":{"data-file":"/x"}},
            "backing-filename":"b","full-backing-filename":"/d/b"}"#,
        )
        .unwrap();
        assert_eq!(i.virtual_size, 10 << 20);
        assert_eq!(i.backing.as_deref(), Some("b"));
        assert_eq!(i.full_backing, Some(PathBuf::from("/d/b")));
        assert_eq!(i.data_file.as_deref(), Some("/x"));
        assert_eq!(
            i.snapshots,
            vec![Snapshot {
                id: "1".into(),
                name: "s1".into(),
                date: 17
            }]
        );
        assert!(parse_info("{}").is_err());
    }
}
