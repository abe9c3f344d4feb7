//! `VNET` (vnet.xsd) and `VNET_POOL`: virtual networks, their address ranges and leases.

use super::{Lock, Object, Ownership, Permissions, flag, ids, int, int32, parse_int, text};
use crate::dom::Element;
use crate::template::{Template, Vector, serde_template, serde_vector, serde_vectors};
use one_proto::state::VnetState;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VirtualNetwork {
    pub id: i64,
    #[serde(flatten)]
    pub owner: Ownership,
    pub name: String,
    pub lock: Option<Lock>,
    pub permissions: Permissions,
    pub clusters: Vec<i64>,
    pub bridge: String,
    pub bridge_type: String,
    /// STATE ([`VnetState`] numbers).
    pub state: i32,
    pub prev_state: i32,
    /// The network this one is a reservation of ("" for none).
    pub parent_network_id: String,
    pub vn_mad: String,
    pub phydev: String,
    pub vlan_id: String,
    pub outer_vlan_id: String,
    pub vlan_id_automatic: bool,
    pub outer_vlan_id_automatic: bool,
    pub used_leases: i64,
    pub vrouters: Vec<i64>,
    pub updated_vms: Vec<i64>,
    pub outdated_vms: Vec<i64>,
    pub updating_vms: Vec<i64>,
    pub error_vms: Vec<i64>,
    #[serde(with = "serde_template")]
    pub template: Template,
    pub address_ranges: Vec<AddressRange>,
}

/// One address range (`AR`): its attributes as OpenNebula sends them (AR_ID, TYPE, IP, MAC,
/// SIZE, USED_LEASES, MAC_END, IP_END, GATEWAY, ...) and its leases.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AddressRange {
    pub id: i64,
    #[serde(with = "serde_vector")]
    pub attrs: Vector,
    /// Each lease's attributes: IP, IP6*, MAC, and VM, VNET or VROUTER naming the holder.
    #[serde(with = "serde_vectors")]
    pub leases: Vec<Vector>,
}

impl AddressRange {
    fn from_element(e: Element<'_>) -> AddressRange {
        let mut attrs = Vector::new();
        let mut leases = Vec::new();
        for c in e.children() {
            if c.name() == "LEASES" {
                leases = c
                    .children_named("LEASE")
                    .map(crate::template::vector_from_element)
                    .collect();
            } else if !c.has_children() {
                attrs.attrs.push((c.name().to_owned(), c.text().to_owned()));
            }
        }
        AddressRange {
            id: int(e, "AR_ID"),
            attrs,
            leases,
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs.get(name)
    }

    pub fn size(&self) -> i64 {
        self.get("SIZE").map_or(0, parse_int)
    }

    pub fn used_leases(&self) -> i64 {
        self.get("USED_LEASES").map_or(0, parse_int)
    }
}

impl Object for VirtualNetwork {
    const ROOT: &'static str = "VNET";
    const POOL_ROOT: &'static str = "VNET_POOL";
    const KIND: &'static str = "virtual network";

    fn from_element(e: Element<'_>) -> VirtualNetwork {
        VirtualNetwork {
            id: int(e, "ID"),
            owner: Ownership::from_element(e),
            name: text(e, "NAME"),
            lock: Lock::from_parent(e),
            permissions: e
                .child("PERMISSIONS")
                .map(Permissions::from_element)
                .unwrap_or_default(),
            clusters: ids(e, "CLUSTERS"),
            bridge: text(e, "BRIDGE"),
            bridge_type: text(e, "BRIDGE_TYPE"),
            state: int32(e, "STATE"),
            prev_state: int32(e, "PREV_STATE"),
            parent_network_id: text(e, "PARENT_NETWORK_ID"),
            vn_mad: text(e, "VN_MAD"),
            phydev: text(e, "PHYDEV"),
            vlan_id: text(e, "VLAN_ID"),
            outer_vlan_id: text(e, "OUTER_VLAN_ID"),
            vlan_id_automatic: flag(e, "VLAN_ID_AUTOMATIC"),
            outer_vlan_id_automatic: flag(e, "OUTER_VLAN_ID_AUTOMATIC"),
            used_leases: int(e, "USED_LEASES"),
            vrouters: ids(e, "VROUTERS"),
            updated_vms: ids(e, "UPDATED_VMS"),
            outdated_vms: ids(e, "OUTDATED_VMS"),
            updating_vms: ids(e, "UPDATING_VMS"),
            error_vms: ids(e, "ERROR_VMS"),
            template: crate::template::child_template(e, "TEMPLATE"),
            address_ranges: e
                .child("AR_POOL")
                .map(|p| {
                    p.children_named("AR")
                        .map(AddressRange::from_element)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn id(&self) -> i64 {
        self.id
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl VirtualNetwork {
    pub fn state(&self) -> Option<VnetState> {
        VnetState::from_num(self.state.into())
    }

    /// STATE's name (`READY`), or the number.
    pub fn state_name(&self) -> String {
        self.state()
            .map_or_else(|| self.state.to_string(), |s| s.name().to_owned())
    }

    /// `onevnet list`'s STATE: `rdy`, `init`, `lock`, `err`, ...
    pub fn short_state(&self) -> &'static str {
        match self.state {
            0 => "init",
            1 => "rdy",
            2 | 3 => "lock",
            4 => "done",
            5 => "err",
            6 => "fail",
            _ => "unkn",
        }
    }

    pub fn address_range(&self, ar_id: i64) -> Option<&AddressRange> {
        self.address_ranges.iter().find(|a| a.id == ar_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ranges_and_leases() {
        let n = VirtualNetwork::from_xml(
            "<VNET><ID>0</ID><NAME>net</NAME><CLUSTERS><ID>0</ID></CLUSTERS><BRIDGE>br0</BRIDGE>\
             <STATE>1</STATE><USED_LEASES>1</USED_LEASES><TEMPLATE><DNS>1.1.1.1</DNS></TEMPLATE>\
             <AR_POOL><AR><AR_ID>0</AR_ID><IP>10.0.0.1</IP><MAC>02:00:0a:00:00:01</MAC>\
             <SIZE>10</SIZE><TYPE>IP4</TYPE><USED_LEASES>1</USED_LEASES><LEASES><LEASE>\
             <IP>10.0.0.1</IP><MAC>02:00:0a:00:00:01</MAC><VM>3</VM></LEASE></LEASES></AR>\
             </AR_POOL></VNET>",
        )
        .unwrap();
        assert_eq!(n.short_state(), "rdy");
        assert_eq!(n.clusters, [0]);
        let ar = n.address_range(0).unwrap();
        assert_eq!((ar.size(), ar.used_leases()), (10, 1));
        assert_eq!(ar.get("TYPE"), Some("IP4"));
        assert_eq!(ar.leases[0].get("VM"), Some("3"));
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(json["address_ranges"][0]["attrs"]["IP"], "10.0.0.1");
        assert_eq!(json["address_ranges"][0]["leases"][0]["VM"], "3");
        let back: VirtualNetwork = serde_json::from_value(json).unwrap();
        assert_eq!(back, n);
    }
}
