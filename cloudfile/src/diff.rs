//! Attribute-by-attribute comparison of what the file says with what the cloud has.
//!
//! A managed object's template is what the file says: an attribute the cloud has and the
//! file does not is a removal. Two kinds of attributes are left out: the marker, and the
//! attributes OpenNebula or its drivers write themselves ([`system_attrs`]), which are
//! compared only when the file gives them and are kept when a template is replaced.

use crate::model::{Kind, MARKER};
use oca::{AttrValue, Template, Vector};
use serde::Serialize;

/// One attribute that differs. `old` None: added; `new` None: removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttrDiff {
    /// `TEMPLATE/DNS`, `TEMPLATE/DISK/SIZE`, `AR[1]/SIZE`, `clusters`, `VM/VMS`, ...
    pub attr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

impl AttrDiff {
    pub fn new(attr: impl Into<String>, old: Option<String>, new: Option<String>) -> AttrDiff {
        AttrDiff {
            attr: attr.into(),
            old,
            new,
        }
    }
}

/// Attributes OpenNebula or its drivers set by themselves on objects of `kind`: monitoring
/// probes on hosts, defaults on networks, images and datastores, the token password of users.
pub fn system_attrs(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Host => &[
            "ARCH",
            "CPUSPEED",
            "HOSTNAME",
            "HYPERVISOR",
            "IM_MAD",
            "VM_MAD",
            "MODELNAME",
            "TOTALCPU",
            "TOTALMEMORY",
            "ERROR",
            "VERSION",
            "CGROUPS_VERSION",
            "NUMA_NODE",
            "PCI",
            "KVM_MACHINES",
            "KVM_CPU_MODEL",
            "KVM_CPU_MODELS",
            "KVM_CPU_FEATURES",
        ],
        Kind::Network => &[
            "BRIDGE",
            "BRIDGE_TYPE",
            "PHYDEV",
            "VLAN_ID",
            "OUTER_VLAN_ID",
            "VLAN_ID_AUTOMATIC",
            "OUTER_VLAN_ID_AUTOMATIC",
            "SECURITY_GROUPS",
            "ERROR",
        ],
        Kind::Datastore => &[
            "NAME",
            "BASE_PATH",
            "CLONE_TARGET",
            "CLONE_TARGET_SHARED",
            "CLONE_TARGET_SSH",
            "LN_TARGET",
            "LN_TARGET_SHARED",
            "LN_TARGET_SSH",
            "DISK_TYPE",
            "DISK_TYPE_SHARED",
            "DISK_TYPE_SSH",
            "DS_MIGRATE",
            "SHARED",
            "ALLOW_ORPHANS",
            "RESTRICTED_DIRS",
            "SAFE_DIRS",
            "TM_MAD_SYSTEM",
            "ERROR",
        ],
        Kind::Image => &["DEV_PREFIX", "ERROR", "DRIVER"],
        Kind::User => &["TOKEN_PASSWORD", "SSH_PUBLIC_KEY"],
        _ => &[],
    }
}

/// Whether `name` is left out of a comparison for `kind` when the file does not give it.
pub fn is_system(kind: Kind, name: &str) -> bool {
    system_attrs(kind)
        .iter()
        .any(|a| a.eq_ignore_ascii_case(name))
        || (kind == Kind::Host && name.starts_with("KVM_"))
}

/// Compares templates. `prefix` starts every attribute path; attributes named in `skip`
/// are not compared at all; system attributes of `kind` only when `desired` has them.
pub fn templates(
    kind: Kind,
    prefix: &str,
    desired: &Template,
    live: &Template,
    skip: &[&str],
    out: &mut Vec<AttrDiff>,
) {
    let skipped = |n: &str| n == MARKER || skip.iter().any(|s| s.eq_ignore_ascii_case(n));
    let mut names: Vec<&str> = Vec::new();
    for a in desired.attrs.iter().chain(&live.attrs) {
        if !names.contains(&a.name.as_str()) && !skipped(&a.name) {
            names.push(&a.name);
        }
    }
    names.sort_unstable();
    for name in names {
        let want: Vec<&AttrValue> = values(desired, name);
        if want.is_empty() && is_system(kind, name) {
            continue;
        }
        let have: Vec<&AttrValue> = values(live, name);
        let several = want.len().max(have.len()) > 1;
        for i in 0..want.len().max(have.len()) {
            let path = if several {
                format!("{prefix}{name}[{i}]")
            } else {
                format!("{prefix}{name}")
            };
            values_diff(&path, want.get(i).copied(), have.get(i).copied(), out);
        }
    }
}

fn values<'a>(t: &'a Template, name: &str) -> Vec<&'a AttrValue> {
    t.attrs
        .iter()
        .filter(|a| a.name.eq_ignore_ascii_case(name))
        .map(|a| &a.value)
        .collect()
}

fn values_diff(
    path: &str,
    want: Option<&AttrValue>,
    have: Option<&AttrValue>,
    out: &mut Vec<AttrDiff>,
) {
    match (want, have) {
        (Some(AttrValue::Single(a)), Some(AttrValue::Single(b))) => {
            if a != b {
                out.push(AttrDiff::new(path, Some(b.clone()), Some(a.clone())));
            }
        }
        (Some(AttrValue::Vector(a)), Some(AttrValue::Vector(b))) => vectors(path, a, b, &[], out),
        (want, have) => {
            let show = |v: Option<&AttrValue>| v.map(show_value);
            if want != have {
                out.push(AttrDiff::new(path, show(have), show(want)));
            }
        }
    }
}

/// Compares two vectors sub-attribute by sub-attribute; `computed` names live
/// sub-attributes the file never gives (left out unless the file gives them).
pub fn vectors(
    path: &str,
    want: &Vector,
    have: &Vector,
    computed: &[&str],
    out: &mut Vec<AttrDiff>,
) {
    let mut names: Vec<&str> = Vec::new();
    for (n, _) in want.attrs.iter().chain(&have.attrs) {
        if !names.iter().any(|x| x.eq_ignore_ascii_case(n)) {
            names.push(n);
        }
    }
    names.sort_unstable();
    for n in names {
        let (a, b) = (want.get(n), have.get(n));
        if a.is_none() && computed.iter().any(|c| c.eq_ignore_ascii_case(n)) {
            continue;
        }
        if a != b {
            out.push(AttrDiff::new(
                format!("{path}/{n}"),
                b.map(str::to_owned),
                a.map(str::to_owned),
            ));
        }
    }
}

/// A value as the plan shows it: a single value as is, a vector as `[A=1, B=2]`.
pub fn show_value(v: &AttrValue) -> String {
    match v {
        AttrValue::Single(s) => s.clone(),
        AttrValue::Vector(v) => show_vector(v),
    }
}

pub fn show_vector(v: &Vector) -> String {
    let parts: Vec<String> = v.attrs.iter().map(|(k, x)| format!("{k}={x}")).collect();
    format!("[{}]", parts.join(", "))
}

/// The template to send with a replacing `update`: what the file says, the marker, and the
/// system attributes the object has that the file does not give (so they are not lost).
pub fn replacement(
    kind: Kind,
    desired: &Template,
    live: Option<&Template>,
    cloud: &str,
    drop: &[&str],
) -> Template {
    let mut t = desired.clone();
    t.attrs.retain(|a| a.name != MARKER);
    if let Some(live) = live {
        for a in &live.attrs {
            if is_system(kind, &a.name)
                && !desired.contains(&a.name)
                && !drop.iter().any(|d| d.eq_ignore_ascii_case(&a.name))
            {
                t.attrs.push(a.clone());
            }
        }
    }
    t.set(MARKER, cloud);
    t
}

/// Compares sets of names (clusters, groups): `+x` and `-y` entries in one diff.
pub fn name_sets(attr: &str, want: &[String], have: &[String], out: &mut Vec<AttrDiff>) {
    let mut w: Vec<&String> = want.iter().collect();
    let mut h: Vec<&String> = have.iter().collect();
    w.sort();
    w.dedup();
    h.sort();
    h.dedup();
    if w != h {
        let join = |v: &[&String]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        out.push(AttrDiff::new(attr, Some(join(&h)), Some(join(&w))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Template {
        Template::parse(s).unwrap()
    }

    #[test]
    fn additions_removals_changes() {
        let mut out = Vec::new();
        templates(
            Kind::Network,
            "TEMPLATE/",
            &t("DNS=\"8.8.8.8\"\nVN_MAD=dummy\nNEW=1"),
            &t("DNS=\"1.1.1.1\"\nVN_MAD=dummy\nBYHAND=x\nBRIDGE_TYPE=linux\nONECLOUD=lab"),
            &[],
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                AttrDiff::new("TEMPLATE/BYHAND", Some("x".into()), None),
                AttrDiff::new(
                    "TEMPLATE/DNS",
                    Some("1.1.1.1".into()),
                    Some("8.8.8.8".into())
                ),
                AttrDiff::new("TEMPLATE/NEW", None, Some("1".into())),
            ]
        );
    }

    #[test]
    fn vectors_and_repeats() {
        let mut out = Vec::new();
        templates(
            Kind::Template,
            "",
            &t("DISK=[IMAGE=a,SIZE=10]\nDISK=[IMAGE=b]"),
            &t("DISK=[IMAGE=a,SIZE=20]\nDISK=[IMAGE=b]\nDISK=[IMAGE=c]"),
            &[],
            &mut out,
        );
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].attr, "DISK[0]/SIZE");
        assert_eq!(out[1].attr, "DISK[2]");
        assert_eq!(out[1].new, None);
        // System attributes count once the file gives them.
        let mut out = Vec::new();
        templates(
            Kind::Host,
            "",
            &t("ARCH=arm"),
            &t("ARCH=x86_64\nCPUSPEED=1"),
            &[],
            &mut out,
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn replacement_keeps_system_attributes() {
        let r = replacement(
            Kind::Host,
            &t("LABEL=compute"),
            Some(&t("ARCH=x86_64\nBYHAND=1\nONECLOUD=old")),
            "lab",
            &[],
        );
        assert_eq!(r.get("ARCH"), Some("x86_64"));
        assert_eq!(r.get("BYHAND"), None);
        assert_eq!(r.get("ONECLOUD"), Some("lab"));
        assert_eq!(r.get("LABEL"), Some("compute"));
    }
}
