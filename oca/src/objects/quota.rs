//! Quotas of users and groups (shared.xsd's DATASTORE_QUOTA, NETWORK_QUOTA, VM_QUOTA,
//! IMAGE_QUOTA), and the default quotas of `one.userquota.info` / `one.groupquota.info`.
//!
//! Each quota entry is kept as the ordered attributes OpenNebula sends (a limit `X` and its
//! usage `X_USED`), so quota kinds a newer server adds (GPU, generic VM quotas) survive.
//! Limits are strings: `-1` means "the default quota", `-2` unlimited (see [`QuotaLimit`]).

use crate::dom::Element;
use crate::template::{Vector, serde_vectors};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quotas {
    /// DATASTORE entries: ID, IMAGES(_USED), SIZE(_USED) (MB).
    #[serde(with = "serde_vectors")]
    pub datastore: Vec<Vector>,
    /// NETWORK entries: ID, LEASES(_USED).
    #[serde(with = "serde_vectors")]
    pub network: Vec<Vector>,
    /// VM entries: VMS, CPU, MEMORY (MB), RUNNING_*, SYSTEM_DISK_SIZE, ... and their
    /// `_USED`; an entry with CLUSTER_IDS applies to those clusters only.
    #[serde(with = "serde_vectors")]
    pub vm: Vec<Vector>,
    /// IMAGE entries: ID, RVMS(_USED).
    #[serde(with = "serde_vectors")]
    pub image: Vec<Vector>,
}

/// What a quota limit means.
#[derive(Clone, Debug, PartialEq)]
pub enum QuotaLimit {
    /// `-1`: the default quota applies.
    Default,
    /// `-2`: no limit.
    Unlimited,
    /// A number (MB for sizes and memory, cores for CPU).
    Value(f64),
}

impl QuotaLimit {
    pub fn parse(s: &str) -> QuotaLimit {
        match s.trim() {
            "-1" | "" => QuotaLimit::Default,
            "-2" => QuotaLimit::Unlimited,
            v => v
                .parse()
                .map(QuotaLimit::Value)
                .unwrap_or(QuotaLimit::Default),
        }
    }
}

const KINDS: [(&str, &str); 4] = [
    ("DATASTORE_QUOTA", "DATASTORE"),
    ("NETWORK_QUOTA", "NETWORK"),
    ("VM_QUOTA", "VM"),
    ("IMAGE_QUOTA", "IMAGE"),
];

impl Quotas {
    /// The quota sections among `e`'s children (a USER, GROUP, QUOTAS or DEFAULT_*_QUOTAS).
    pub(crate) fn from_parent(e: Element<'_>) -> Quotas {
        let read = |section: &str, entry: &str| -> Vec<Vector> {
            e.child(section)
                .map(|s| {
                    s.children_named(entry)
                        .map(crate::template::vector_from_element)
                        .collect()
                })
                .unwrap_or_default()
        };
        Quotas {
            datastore: read(KINDS[0].0, KINDS[0].1),
            network: read(KINDS[1].0, KINDS[1].1),
            vm: read(KINDS[2].0, KINDS[2].1),
            image: read(KINDS[3].0, KINDS[3].1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.datastore.is_empty()
            && self.network.is_empty()
            && self.vm.is_empty()
            && self.image.is_empty()
    }

    /// The VM quota that applies to every cluster (the entry without CLUSTER_IDS).
    pub fn vm_global(&self) -> Option<&Vector> {
        self.vm
            .iter()
            .find(|v| v.get("CLUSTER_IDS").is_none_or(str::is_empty))
    }

    /// The limits as a quota template for `one.user.quota` / `one.group.quota` (usage
    /// attributes left out): `VM=[CPU="2", ...]` and `DATASTORE=[ID="1", SIZE="1024"]` lines.
    pub fn to_template(&self) -> String {
        let mut out = String::new();
        for (entries, name) in [
            (&self.datastore, "DATASTORE"),
            (&self.network, "NETWORK"),
            (&self.vm, "VM"),
            (&self.image, "IMAGE"),
        ] {
            for v in entries {
                let attrs: Vec<String> = v
                    .attrs
                    .iter()
                    .filter(|(k, _)| !k.ends_with("_USED"))
                    .map(|(k, val)| format!("{k}=\"{}\"", val.replace('"', "\\\"")))
                    .collect();
                if !attrs.is_empty() {
                    out.push_str(&format!("{name}=[{}]\n", attrs.join(", ")));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dom::Document;

    #[test]
    fn reads_and_writes_quotas() {
        let doc = Document::parse(
            "<USER><DATASTORE_QUOTA><DATASTORE><ID>1</ID><IMAGES>-1</IMAGES><IMAGES_USED>0\
             </IMAGES_USED><SIZE>1024</SIZE><SIZE_USED>0</SIZE_USED></DATASTORE></DATASTORE_QUOTA>\
             <NETWORK_QUOTA/><VM_QUOTA><VM><CPU>2</CPU><CPU_USED>0.5</CPU_USED><VMS>-2</VMS>\
             <VMS_USED>1</VMS_USED></VM></VM_QUOTA><IMAGE_QUOTA/></USER>",
        )
        .unwrap();
        let q = Quotas::from_parent(doc.root());
        assert_eq!(q.datastore[0].get("SIZE"), Some("1024"));
        assert!(q.network.is_empty());
        let vm = q.vm_global().unwrap();
        assert_eq!(
            QuotaLimit::parse(vm.get("VMS").unwrap()),
            QuotaLimit::Unlimited
        );
        assert_eq!(
            QuotaLimit::parse(vm.get("CPU").unwrap()),
            QuotaLimit::Value(2.0)
        );
        assert_eq!(QuotaLimit::parse("-1"), QuotaLimit::Default);
        assert_eq!(
            q.to_template(),
            "DATASTORE=[ID=\"1\", IMAGES=\"-1\", SIZE=\"1024\"]\nVM=[CPU=\"2\", VMS=\"-2\"]\n"
        );
    }
}
