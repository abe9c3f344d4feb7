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
    /// NETWORK_DRIVERS: the VN_MADs the host serves; None when it never said.
    pub network_drivers: Option<Vec<String>>,
    /// NETWORK_DRIVERS_ERROR: why it cannot serve the others.
    pub network_drivers_error: String,
}

/// What a VM needs of a host (besides its system datastore, checked per datastore).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Needs {
    /// The shared image datastores its disks are read from.
    pub shared_ds: Vec<i64>,
    /// The network drivers (VN_MAD) of its NICs, sorted, `dummy` and empty left out (they
    /// need nothing of the host).
    pub vn_mads: Vec<String>,
}

/// Whether a NIC of VN_MAD `m` needs the host's NETWORK_DRIVERS (`dummy` needs nothing).
pub fn vn_mad_needed(m: &str) -> bool {
    !matches!(m.trim(), "" | "dummy")
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
        } else if name == capabilities::NETWORK_DRIVERS {
            self.network_drivers = Some(value.split_whitespace().map(str::to_string).collect());
        } else if name == format!("{}_ERROR", capabilities::NETWORK_DRIVERS) {
            self.network_drivers_error = value.to_string();
        }
    }

    /// Whether the host sees shared datastore `id` (or never said what it sees).
    pub fn sees(&self, id: i64) -> bool {
        self.shared_ds.as_ref().is_none_or(|v| v.contains(&id))
    }

    /// Why the host cannot serve `needs`, None when it can.
    pub fn lacks(&self, needs: &Needs) -> Option<String> {
        self.lacks_datastores(needs)
            .or_else(|| self.lacks_network(needs))
    }

    /// The shared image datastores of `needs` the host does not see, None when it sees all.
    pub fn lacks_datastores(&self, needs: &Needs) -> Option<String> {
        let missing: Vec<String> = needs
            .shared_ds
            .iter()
            .filter(|id| !self.sees(**id))
            .map(|id| self.why_not(*id))
            .collect();
        (!missing.is_empty()).then(|| missing.join(", "))
    }

    /// The network drivers of `needs` the host cannot serve, each with the reason it gave
    /// ("802.1Q (reason)"); None when it serves all or never said.
    pub fn lacks_network(&self, needs: &Needs) -> Option<String> {
        let have = self.network_drivers.as_ref()?;
        let missing: Vec<String> = needs
            .vn_mads
            .iter()
            .filter(|m| !have.contains(m))
            .map(|m| {
                let prefix = format!("{m}: ");
                let why = self
                    .network_drivers_error
                    .split("; ")
                    .find_map(|e| e.strip_prefix(&prefix))
                    .unwrap_or("not reported by its agent");
                format!("{m} ({why})")
            })
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
            ..Needs::default()
        };
        assert_eq!(c.lacks(&needs(&[1, 2])), None);
        assert_eq!(
            c.lacks(&needs(&[1, 100, 101])).unwrap(),
            "datastore 100 (/var/lib/one/datastores/100 does not exist), datastore 101 (not \
             reported by its agent)"
        );
    }

    #[test]
    fn network_drivers() {
        let needs = |v: &[&str]| Needs {
            vn_mads: v.iter().map(|m| m.to_string()).collect(),
            ..Needs::default()
        };
        let mut c = HostCaps::default();
        assert_eq!(
            c.lacks(&needs(&["802.1Q"])),
            None,
            "never reported: not limited"
        );
        c.leaf("NETWORK_DRIVERS", "dummy bridge vxlan fw");
        c.leaf("NETWORK_DRIVERS_MISSING", "802.1Q");
        c.leaf(
            "NETWORK_DRIVERS_ERROR",
            "802.1Q: the kernel cannot make 802.1Q VLAN interfaces (8021q): Unknown device type",
        );
        assert_eq!(c.lacks(&needs(&["bridge", "vxlan"])), None);
        assert_eq!(
            c.lacks(&needs(&["802.1Q", "bridge", "ovswitch"])).unwrap(),
            "802.1Q (the kernel cannot make 802.1Q VLAN interfaces (8021q): Unknown device \
             type), ovswitch (not reported by its agent)"
        );
        assert!(!vn_mad_needed("dummy") && !vn_mad_needed("") && vn_mad_needed("802.1Q"));
    }
}
