//! Typed object documents, read from OpenNebula's XML (`one.*.info`, `one.*pool.info`).
//!
//! Each type holds the elements of its XSD that clients use, typed, and every template
//! section as a generic [`Template`] so unknown attributes survive. Reading is lenient the
//! way OpenNebula's own clients are: a missing element reads as 0 / "" / empty, never an
//! error; only a document with the wrong root element is refused. Numbers that OpenNebula
//! defines as enums (STATE, LCM_STATE, TYPE) are kept as numbers, with typed accessors, so a
//! newer server's values never make a document unreadable. Every type serializes with serde
//! (templates in OpenNebula's JSON shape, see [`crate::serde_template`]).

use crate::OcaError;
use crate::dom::{Document, Element};
use serde::{Deserialize, Serialize};

pub mod acl;
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

/// A kind of object document: its root element, its pool's root, and how to read it.
pub trait Object: Sized {
    /// The document's root element (`VM`).
    const ROOT: &'static str;
    /// The pool document's root element (`VM_POOL`).
    const POOL_ROOT: &'static str;
    /// What OpenNebula calls the kind in messages ("virtual machine").
    const KIND: &'static str;

    /// Reads the object from its element.
    fn from_element(e: Element<'_>) -> Self;

    /// The object's id.
    fn id(&self) -> i64;

    /// The object's name.
    fn name(&self) -> &str;

    /// Reads a whole `one.*.info` answer.
    fn from_xml(xml: &str) -> Result<Self, OcaError> {
        let doc = Document::parse(xml)?;
        check_root(&doc, Self::ROOT)?;
        Ok(Self::from_element(doc.root()))
    }

    /// Reads a whole `one.*pool.info` answer.
    fn pool_from_xml(xml: &str) -> Result<Vec<Self>, OcaError> {
        let doc = Document::parse(xml)?;
        check_root(&doc, Self::POOL_ROOT)?;
        Ok(doc
            .root()
            .children_named(Self::ROOT)
            .map(Self::from_element)
            .collect())
    }
}

pub(crate) fn check_root(doc: &Document, root: &str) -> Result<(), OcaError> {
    let got = doc.root().name();
    if got != root {
        return Err(OcaError::Protocol(format!(
            "expected a <{root}> document, got <{got}>"
        )));
    }
    Ok(())
}

/// The integer at child `name` (0 when missing or not a number; OpenNebula's clients read
/// numbers the same lenient way).
pub(crate) fn int(e: Element<'_>, name: &str) -> i64 {
    e.child_text(name).map_or(0, parse_int)
}

/// Like [`int`], but -1 when missing (ids where -1 means none).
pub(crate) fn int_or(e: Element<'_>, name: &str, default: i64) -> i64 {
    e.child_text(name).map_or(default, parse_int)
}

pub(crate) fn parse_int(s: &str) -> i64 {
    let s = s.trim();
    s.parse()
        .unwrap_or_else(|_| s.parse::<f64>().map_or(0, |f| f as i64))
}

pub(crate) fn int32(e: Element<'_>, name: &str) -> i32 {
    i32::try_from(int(e, name)).unwrap_or(-1)
}

pub(crate) fn text(e: Element<'_>, name: &str) -> String {
    e.child_text(name).unwrap_or("").to_owned()
}

/// `1` (or `YES`) is true.
pub(crate) fn flag(e: Element<'_>, name: &str) -> bool {
    e.child_text(name)
        .is_some_and(|v| v.trim() == "1" || v.trim().eq_ignore_ascii_case("yes"))
}

/// The ids of an IDS element (`<VMS><ID>1</ID><ID>2</ID></VMS>`).
pub(crate) fn ids(e: Element<'_>, name: &str) -> Vec<i64> {
    e.child(name)
        .map(|c| {
            c.children_named("ID")
                .map(|i| parse_int(i.text()))
                .collect()
        })
        .unwrap_or_default()
}

/// The nine permission bits of an object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    pub owner_u: bool,
    pub owner_m: bool,
    pub owner_a: bool,
    pub group_u: bool,
    pub group_m: bool,
    pub group_a: bool,
    pub other_u: bool,
    pub other_m: bool,
    pub other_a: bool,
}

impl Permissions {
    pub(crate) fn from_element(e: Element<'_>) -> Permissions {
        Permissions {
            owner_u: flag(e, "OWNER_U"),
            owner_m: flag(e, "OWNER_M"),
            owner_a: flag(e, "OWNER_A"),
            group_u: flag(e, "GROUP_U"),
            group_m: flag(e, "GROUP_M"),
            group_a: flag(e, "GROUP_A"),
            other_u: flag(e, "OTHER_U"),
            other_m: flag(e, "OTHER_M"),
            other_a: flag(e, "OTHER_A"),
        }
    }

    fn bits(&self) -> [bool; 9] {
        [
            self.owner_u,
            self.owner_m,
            self.owner_a,
            self.group_u,
            self.group_m,
            self.group_a,
            self.other_u,
            self.other_m,
            self.other_a,
        ]
    }

    /// The octal form `onevm chmod` takes and `onevm list` shows (`600`).
    pub fn octal(&self) -> u32 {
        self.bits()
            .iter()
            .enumerate()
            .filter(|(_, b)| **b)
            .map(|(i, _)| (4 >> (i % 3)) << (3 * (2 - i / 3)))
            .sum()
    }

    /// Permissions from an octal mode (`0o640`; each digit: use 4, manage 2, admin 1).
    pub fn from_octal(mode: u32) -> Permissions {
        let bit = |i: usize| (mode >> (3 * (2 - i / 3))) & (4 >> (i % 3)) != 0;
        Permissions {
            owner_u: bit(0),
            owner_m: bit(1),
            owner_a: bit(2),
            group_u: bit(3),
            group_m: bit(4),
            group_a: bit(5),
            other_u: bit(6),
            other_m: bit(7),
            other_a: bit(8),
        }
    }

    /// `uma`, `um-`, ... for the owner (0), group (1) or others (2), as `show` prints them.
    pub fn mask(&self, who: usize) -> String {
        let b = self.bits();
        let at = 3 * who.min(2);
        [(b[at], 'u'), (b[at + 1], 'm'), (b[at + 2], 'a')]
            .iter()
            .map(|(on, c)| if *on { *c } else { '-' })
            .collect()
    }
}

/// An object's lock (`<LOCK>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// 1 USE, 2 MANAGE, 3 ADMIN, 4 ALL.
    pub locked: i32,
    pub owner: i64,
    pub time: i64,
    pub req_id: i64,
}

impl Lock {
    pub(crate) fn from_parent(e: Element<'_>) -> Option<Lock> {
        let l = e.child("LOCK")?;
        if !l.has_children() {
            return None;
        }
        Some(Lock {
            locked: int32(l, "LOCKED"),
            owner: int(l, "OWNER"),
            time: int(l, "TIME"),
            req_id: int_or(l, "REQ_ID", -1),
        })
    }

    /// The level as the CLI shows it: `Use`, `Manage`, `Admin`, `All`.
    pub fn level_name(&self) -> &'static str {
        lock_level_name(self.locked)
    }
}

/// `None`, `Use`, `Manage`, `Admin`, `All` for a LOCK/LOCKED value (`-` for others).
pub fn lock_level_name(level: i32) -> &'static str {
    match level {
        0 => "None",
        1 => "Use",
        2 => "Manage",
        3 => "Admin",
        4 => "All",
        _ => "-",
    }
}

/// Owner, group, name and permissions shared by owned objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    pub uid: i64,
    pub gid: i64,
    pub uname: String,
    pub gname: String,
}

impl Ownership {
    pub(crate) fn from_element(e: Element<'_>) -> Ownership {
        Ownership {
            uid: int(e, "UID"),
            gid: int(e, "GID"),
            uname: text(e, "UNAME"),
            gname: text(e, "GNAME"),
        }
    }
}

/// `MONITORING_DATA`: the monitoring records of `one.vm.monitoring` / `one.host.monitoring`.
pub fn monitoring_from_xml(xml: &str) -> Result<Vec<crate::Template>, OcaError> {
    let doc = Document::parse(xml)?;
    check_root(&doc, "MONITORING_DATA")?;
    Ok(doc
        .root()
        .children_named("MONITORING")
        .map(crate::template::from_element)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_octal_and_masks() {
        let p = Permissions::from_octal(0o640);
        assert!(p.owner_u && p.owner_m && !p.owner_a && p.group_u && !p.group_m);
        assert_eq!(p.octal(), 0o640);
        assert_eq!(p.mask(0), "um-");
        assert_eq!(p.mask(1), "u--");
        assert_eq!(p.mask(2), "---");
        assert_eq!(Permissions::from_octal(0o777).octal(), 0o777);
    }

    #[test]
    fn lenient_numbers() {
        assert_eq!(parse_int(" 12 "), 12);
        assert_eq!(parse_int("1.9"), 1);
        assert_eq!(parse_int("x"), 0);
        assert_eq!(parse_int("-1"), -1);
    }
}
