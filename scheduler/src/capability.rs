//! Host capabilities (docs/node-agent.md, "Host capabilities"): what a host's agent says it
//! can serve, read from the host's TEMPLATE (`NAME`, `NAME_MISSING`, `NAME_ERROR`), and what
//! a VM needs of them. A host that never reported a capability (a dummy host) is not
//! limited by it.
//!
//! Adding a capability: read its attributes into [`HostCaps`] (`Host` in model.rs feeds
//! [`HostCaps::leaf`]), say what a VM needs in [`Needs`] (from its document in model.rs),
//! and check it in [`HostCaps::lacks`]; place.rs refuses the host with the reason.

use one_proto::agent::capabilities;

/// What a host reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostCaps {
    /// SHARED_DS: the shared datastores the host sees; None when it never said.
    pub shared_ds: Option<Vec<i64>>,
    /// SHARED_DS_ERROR: why it does not see the others.
    pub shared_ds_error: String,
}

/// What a VM needs of a host (besides its system datastore, checked per datastore).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Needs {
    /// The shared image datastores its disks are read from.
    pub shared_ds: Vec<i64>,
}

fn ids(v: &str) -> Vec<i64> {
    v.split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect()
}

impl HostCaps {
    /// Takes a HOST/TEMPLATE leaf, if it is a capability attribute.
    pub fn leaf(&mut self, name: &str, value: &str) {
        if name == capabilities::SHARED_DS {
            self.shared_ds = Some(ids(value));
        } else if name == format!("{}_ERROR", capabilities::SHARED_DS) {
            self.shared_ds_error = value.to_string();
        }
    }

    /// Whether the host sees shared datastore `id` (or never said what it sees).
    pub fn sees(&self, id: i64) -> bool {
        self.shared_ds.as_ref().is_none_or(|v| v.contains(&id))
    }

    /// Why the host cannot serve `needs`, None when it can.
    pub fn lacks(&self, needs: &Needs) -> Option<String> {
        let missing: Vec<String> = needs
            .shared_ds
            .iter()
            .filter(|id| !self.sees(**id))
            .map(|id| self.why_not(*id))
            .collect();
        (!missing.is_empty()).then(|| missing.join(", "))
    }

    /// "datastore N (reason)" for a shared datastore the host does not see.
    pub fn why_not(&self, id: i64) -> String {
        let prefix = format!("{id}: ");
        let why = self
            .shared_ds_error
            .split("; ")
            .find_map(|e| e.strip_prefix(&prefix))
            .unwrap_or("not reported by its agent");
        format!("datastore {id} ({why})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_datastores() {
        let mut c = HostCaps::default();
        assert!(c.sees(100), "never reported: not limited");
        c.leaf("SHARED_DS", "0 1 2");
        c.leaf(
            "SHARED_DS_ERROR",
            "100: /var/lib/one/datastores/100 does not exist",
        );
        c.leaf("OTHER", "x");
        let needs = |v: &[i64]| Needs {
            shared_ds: v.to_vec(),
        };
        assert_eq!(c.lacks(&needs(&[1, 2])), None);
        assert_eq!(
            c.lacks(&needs(&[1, 100, 101])).unwrap(),
            "datastore 100 (/var/lib/one/datastores/100 does not exist), datastore 101 (not \
             reported by its agent)"
        );
    }
}
