//! Object documents: the structs oned stores and their XSD-valid XML.
//!
//! Each kind's struct serializes with serde (oned's durable form) and writes OpenNebula's XML
//! (the API form) with `write_xml`; element order follows the XSD `xs:sequence`.

use crate::xml::XmlWriter;
use serde::{Deserialize, Serialize};

/// The nine permission bits (OWNER_U .. OTHER_A).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    pub bits: [bool; 9],
}

impl Permissions {
    pub const OWNER_U: usize = 0;
    pub const OWNER_M: usize = 1;
    pub const OWNER_A: usize = 2;
    pub const GROUP_U: usize = 3;
    pub const GROUP_M: usize = 4;
    pub const GROUP_A: usize = 5;
    pub const OTHER_U: usize = 6;
    pub const OTHER_M: usize = 7;
    pub const OTHER_A: usize = 8;
    const TAGS: [&'static str; 9] = [
        "OWNER_U", "OWNER_M", "OWNER_A", "GROUP_U", "GROUP_M", "GROUP_A", "OTHER_U", "OTHER_M",
        "OTHER_A",
    ];

    /// Permissions from an octal umask, as OpenNebula's DEFAULT_UMASK (177 → 600).
    pub fn from_umask(umask: u32) -> Self {
        let mode = 0o777 & !umask;
        let mut bits = [false; 9];
        // Octal digit order is owner, group, other; within a digit: u=4 (use), m=2, a=1.
        for (i, bit) in bits.iter_mut().enumerate() {
            let digit = (mode >> (3 * (2 - i / 3))) & 0o7;
            let mask = 4 >> (i % 3);
            *bit = digit & mask != 0;
        }
        Permissions { bits }
    }

    /// Octal form as shown by `onevm list` / chmod (e.g. 600).
    pub fn octal(&self) -> u32 {
        let mut v = 0;
        for (i, b) in self.bits.iter().enumerate() {
            if *b {
                v |= (4 >> (i % 3)) << (3 * (2 - i / 3));
            }
        }
        v
    }

    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("PERMISSIONS");
        for (tag, bit) in Self::TAGS.iter().zip(self.bits) {
            w.flag(tag, bit);
        }
        w.close("PERMISSIONS");
    }
}

impl Default for Permissions {
    fn default() -> Self {
        Permissions::from_umask(0o177)
    }
}

/// An object lock (`one.*.lock`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// 1 USE, 2 MANAGE, 3 ADMIN (4 ALL is stored as 1).
    pub level: i32,
    pub owner: i64,
    pub time: i64,
    pub req_id: i64,
}

impl Lock {
    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("LOCK")
            .num("LOCKED", self.level)
            .num("OWNER", self.owner)
            .num("TIME", self.time)
            .num("REQ_ID", self.req_id)
            .close("LOCK");
    }
}

/// Writes `<TAG><ID>a</ID><ID>b</ID></TAG>` (or `<TAG/>`), the XSD's IDS type.
pub fn write_ids(w: &mut XmlWriter, tag: &str, ids: &[i64]) {
    if ids.is_empty() {
        w.empty(tag);
        return;
    }
    w.open(tag);
    for id in ids {
        w.num("ID", id);
    }
    w.close(tag);
}

/// Test support shared by every document's tests.
#[cfg(test)]
pub(crate) mod xsd {
    /// Validates `xml` against OpenNebula's XSDs with the project's checker,
    /// tests/xsd/one_xsd_check.py (optionally against one named schema). Prints `SKIP: reason`
    /// and returns only when python3 or xmllint is missing (the samples are still asserted
    /// literally by their own tests); the checker and the schemas are part of the repository.
    pub(crate) fn check_with(label: &str, xml: &str, schema: Option<&str>) {
        let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/xsd/one_xsd_check.py");
        assert!(
            std::path::Path::new(tool).is_file(),
            "{tool} is missing: the XSD checker is part of the repository"
        );
        for (bin, package) in [("python3", "python3"), ("xmllint", "libxml2-utils")] {
            let found = std::process::Command::new(bin).arg("--version").output();
            if !found.is_ok_and(|o| o.status.success()) {
                skip(&format!("{bin} not installed (apt-get install {package})"));
                return;
            }
        }
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(tool);
        if let Some(s) = schema {
            cmd.arg("--schema").arg(s);
        }
        let mut child = cmd
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run one_xsd_check.py");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(xml.as_bytes()).expect("write the sample");
        }
        let out = child.wait_with_output().expect("one_xsd_check.py output");
        assert!(
            out.status.success(),
            "{label} does not validate:\n{}{}\n{xml}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Says why a check could not run: on stdout, and as `test name: reason` in the file named
    /// by ONE_TEST_SKIP_LOG (`test name<TAB>reason`), which scripts/test.sh counts as skips.
    fn skip(reason: &str) {
        println!("SKIP: {reason}");
        if let Some(path) = std::env::var_os("ONE_TEST_SKIP_LOG") {
            let test = std::thread::current().name().unwrap_or("?").to_string();
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
            {
                use std::io::Write;
                // One write per line: O_APPEND keeps concurrent tests' lines whole.
                let _ = f.write_all(format!("{test}\t{reason}\n").as_bytes());
            }
        }
    }

    pub(crate) fn check(label: &str, xml: &str) {
        check_with(label, xml, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umask_177_is_600() {
        let p = Permissions::from_umask(0o177);
        assert_eq!(p.octal(), 0o600);
        assert!(p.bits[Permissions::OWNER_U] && p.bits[Permissions::OWNER_M]);
        assert!(!p.bits[Permissions::OWNER_A] && !p.bits[Permissions::OTHER_U]);
        assert_eq!(Permissions::from_umask(0o022).octal(), 0o755);
    }
}

pub mod cluster;
pub mod datastore;
pub mod group;
pub mod hook;
pub mod host;
pub mod image;
pub mod quota;
pub mod secgroup;
pub mod user;
pub mod vm;
pub mod vmtemplate;
pub mod vnet;

/// The owner, group, name and permissions shared by owned objects (VM, IMAGE, VNET, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub id: i64,
    pub uid: i64,
    pub gid: i64,
    pub uname: String,
    pub gname: String,
    pub name: String,
    pub perms: Permissions,
    pub lock: Option<Lock>,
}

impl Header {
    /// The header of an object oneadmin (user 0, group 0) owns, with default permissions
    /// and no lock: the built-in objects, and test fixtures.
    pub fn oneadmin(id: i64, name: impl Into<String>) -> Header {
        Header {
            id,
            uid: 0,
            gid: 0,
            uname: "oneadmin".into(),
            gname: "oneadmin".into(),
            name: name.into(),
            perms: Permissions::default(),
            lock: None,
        }
    }

    /// Writes ID, UID, GID, UNAME, GNAME, NAME: the opening elements of every owned object.
    pub fn write_ids_names(&self, w: &mut XmlWriter) {
        w.num("ID", self.id)
            .num("UID", self.uid)
            .num("GID", self.gid)
            .text("UNAME", &self.uname)
            .text("GNAME", &self.gname)
            .text("NAME", &self.name);
    }

    pub fn write_lock(&self, w: &mut XmlWriter) {
        if let Some(l) = &self.lock {
            l.write_xml(w);
        }
    }
}
