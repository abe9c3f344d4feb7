//! Host capabilities in the host's TEMPLATE (docs/node-agent.md, "Host capabilities"): what
//! an agent reports becomes `NAME="items"`, `NAME_MISSING="items"` and
//! `NAME_ERROR="item: reason; ..."`; oned's deploy check and the scheduler read them back.
//! A host that never reported a capability (a dummy host) is not limited by it.

use one_proto::agent::{Capability, capabilities};
use one_proto::objects::host::Host;
use one_proto::template::Template;

/// The three attribute names of capability `name`.
pub fn attrs(name: &str) -> [String; 3] {
    [
        name.to_string(),
        format!("{name}_MISSING"),
        format!("{name}_ERROR"),
    ]
}

/// Writes `cap` into a host template; answers whether anything changed.
pub fn write(t: &mut Template, cap: &Capability) -> bool {
    let [have, missing, error] = attrs(&cap.name);
    let values = [
        cap.available.join(" "),
        cap.missing
            .iter()
            .map(|m| m.item.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        cap.missing
            .iter()
            .map(|m| format!("{}: {}", m.item, m.reason))
            .collect::<Vec<_>>()
            .join("; "),
    ];
    let mut changed = false;
    for (name, value) in [have, missing, error].iter().zip(values) {
        if name != &cap.name && value.is_empty() {
            if t.contains(name) {
                t.remove(name);
                changed = true;
            }
        } else if t.get(name) != Some(value.as_str()) {
            t.set(name, value);
            changed = true;
        }
    }
    changed
}

/// The shared datastores a VM placed on system datastore `system` needs its host to see:
/// that one if shared, and the image datastores its disks are read from in place (none on
/// a host-local system datastore: its images are copied through the agent's byte stream).
pub fn needed_datastores(
    vm: &one_proto::objects::vm::Vm,
    system: &one_proto::objects::datastore::Datastore,
) -> Vec<i64> {
    if crate::ops::datastore::tm_local(&system.tm_mad) {
        return Vec::new();
    }
    let mut v: Vec<i64> = vm
        .template
        .vectors("DISK")
        .filter(|d| d.get("IMAGE_ID").is_some())
        .filter(|d| crate::ops::datastore::tm_shared(d.get("TM_MAD").unwrap_or("")))
        .filter_map(|d| d.get("DATASTORE_ID").and_then(|x| x.trim().parse().ok()))
        .collect();
    if crate::ops::datastore::is_shared(system) {
        v.push(system.header.id);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Why `host` cannot serve a VM needing the shared datastores `needed` (None: it can, or it
/// never reported what it sees).
pub fn lacks_datastores(host: &Host, needed: &[i64]) -> Option<String> {
    let [have, _, error] = attrs(capabilities::SHARED_DS);
    let seen = host.template.get(&have)?;
    let seen: Vec<&str> = seen.split_whitespace().collect();
    let lacking: Vec<String> = needed
        .iter()
        .filter(|id| !seen.contains(&id.to_string().as_str()))
        .map(|id| {
            let why = host
                .template
                .get(&error)
                .unwrap_or("")
                .split("; ")
                .find_map(|e| e.strip_prefix(&format!("{id}: ")).map(str::to_string))
                .unwrap_or_else(|| "not reported by its agent yet".into());
            format!("datastore {id} ({why})")
        })
        .collect();
    (!lacking.is_empty()).then(|| {
        format!(
            "Host {} [{}] does not see the shared {}",
            host.name,
            host.id,
            lacking.join(", ")
        )
    })
}

/// The network drivers (VN_MAD) of the VM's NICs its host must serve, sorted (`dummy`, which
/// makes nothing on the host, left out).
pub fn needed_network_drivers(vm: &one_proto::objects::vm::Vm) -> Vec<String> {
    let mut v: Vec<String> = vm
        .template
        .vectors("NIC")
        .filter_map(|n| n.get("VN_MAD"))
        .map(str::trim)
        .filter(|m| !m.is_empty() && *m != "dummy")
        .map(str::to_string)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Why `host` cannot serve NICs of the network drivers `needed` (None: it can, or it never
/// reported which it serves).
pub fn lacks_network_drivers(host: &Host, needed: &[String]) -> Option<String> {
    let [have, _, error] = attrs(capabilities::NETWORK_DRIVERS);
    let served: Vec<&str> = host.template.get(&have)?.split_whitespace().collect();
    let lacking: Vec<String> = needed
        .iter()
        .filter(|m| !served.contains(&m.as_str()))
        .map(|m| {
            let why = host
                .template
                .get(&error)
                .unwrap_or("")
                .split("; ")
                .find_map(|e| e.strip_prefix(&format!("{m}: ")).map(str::to_string))
                .unwrap_or_else(|| "not reported by its agent".into());
            format!("{m} ({why})")
        })
        .collect();
    (!lacking.is_empty()).then(|| {
        format!(
            "Host {} [{}] cannot serve the network driver (VN_MAD) of the VM's NICs: {}",
            host.name,
            host.id,
            lacking.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lcm::tests_support;
    use one_proto::agent::Missing;

    #[test]
    fn capabilities_round_trip_through_the_template() {
        let mut t = Template::new();
        let cap = Capability {
            name: "SHARED_DS".into(),
            available: vec!["0".into(), "1".into()],
            missing: vec![Missing {
                item: "100".into(),
                reason: "/var/lib/one/datastores/100 does not exist".into(),
            }],
        };
        assert!(write(&mut t, &cap));
        assert!(!write(&mut t, &cap), "nothing changes the second time");
        assert_eq!(t.get("SHARED_DS"), Some("0 1"));
        assert_eq!(t.get("SHARED_DS_MISSING"), Some("100"));
        let mut h = crate::hostmgr::ingest::tests::host(3, "node1");
        h.template = t.clone();
        assert_eq!(lacks_datastores(&h, &[0, 1]), None);
        let why = lacks_datastores(&h, &[0, 100]).unwrap();
        assert_eq!(
            why,
            "Host node1 [3] does not see the shared datastore 100 (/var/lib/one/datastores/100 \
             does not exist)"
        );
        // Healed: the MISSING and ERROR attributes go away.
        let all = Capability {
            name: "SHARED_DS".into(),
            available: vec!["0".into(), "1".into(), "100".into()],
            missing: vec![],
        };
        assert!(write(&mut t, &all));
        assert!(!t.contains("SHARED_DS_MISSING") && !t.contains("SHARED_DS_ERROR"));
        // A host that never reported is not limited.
        let dummy = crate::hostmgr::ingest::tests::host(4, "h4");
        assert_eq!(lacks_datastores(&dummy, &[100]), None);
    }

    #[test]
    fn network_drivers_the_host_lacks_are_refused_with_the_reason() {
        let mut h = crate::hostmgr::ingest::tests::host(3, "node1");
        let mut vm = tests_support::vm(7);
        vm.template = Template::parse(
            "NIC=[NIC_ID=0, VN_MAD=\"802.1Q\"] NIC=[NIC_ID=1, VN_MAD=bridge] \
             NIC=[NIC_ID=2, VN_MAD=dummy] NIC=[NIC_ID=3, VN_MAD=bridge] NIC=[NIC_ID=4]",
        )
        .unwrap();
        let needed = needed_network_drivers(&vm);
        assert_eq!(needed, vec!["802.1Q", "bridge"]);
        assert_eq!(
            lacks_network_drivers(&h, &needed),
            None,
            "a host that never reported is not limited"
        );
        let cap = Capability {
            name: "NETWORK_DRIVERS".into(),
            available: vec!["dummy".into(), "bridge".into(), "vxlan".into()],
            missing: vec![Missing {
                item: "802.1Q".into(),
                reason: "the kernel cannot make 802.1Q VLAN interfaces (8021q): Unknown device \
                         type"
                    .into(),
            }],
        };
        assert!(write(&mut h.template, &cap));
        assert_eq!(h.template.get("NETWORK_DRIVERS_MISSING"), Some("802.1Q"));
        assert_eq!(
            lacks_network_drivers(&h, &needed).unwrap(),
            "Host node1 [3] cannot serve the network driver (VN_MAD) of the VM's NICs: 802.1Q \
             (the kernel cannot make 802.1Q VLAN interfaces (8021q): Unknown device type)"
        );
        assert_eq!(lacks_network_drivers(&h, &["bridge".into()]), None);
    }
}
