//! VNET documents (vnet.xsd, vnet_pool.xsd): virtual networks, address ranges and leases.
//!
//! A network owns address ranges ([`AddressRange`]); a lease is an index into a range held by
//! a VM, by a reservation network (a child network whose ranges are carved out of its
//! parent's), by a virtual router, or by nobody in particular (`one.vn.hold`: VM -1).

mod addr;
mod ar;

pub use addr::{
    eui64, ipv4_to_string, ipv6_to_string, mac_to_string, parse_ipv4, parse_ipv6, parse_mac,
    parse_mac_prefix, parse_prefix6, slaac,
};
pub use ar::{AddrRequest, Address, AddressRange, ArContext, ArType, LeaseOwner};

use super::{Header, write_ids};
use crate::state::VnetState;
use crate::template::{Template, Vector};
use crate::xml::XmlWriter;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vnet {
    pub header: Header,
    pub clusters: Vec<i64>,
    pub bridge: String,
    /// linux, openvswitch, openvswitch_dpdk or none (from the driver).
    #[serde(default)]
    pub bridge_type: String,
    pub state: VnetState,
    pub prev_state: VnetState,
    /// Set for reservations.
    pub parent_network_id: Option<i64>,
    /// The network template it was instantiated from (none here: no VN templates yet).
    #[serde(default)]
    pub template_id: Option<i64>,
    pub vn_mad: String,
    pub phydev: String,
    /// Empty when the network has none.
    pub vlan_id: String,
    #[serde(default)]
    pub outer_vlan_id: String,
    #[serde(default)]
    pub vlan_id_automatic: bool,
    #[serde(default)]
    pub outer_vlan_id_automatic: bool,
    #[serde(default)]
    pub vrouters: Vec<i64>,
    /// VMs using the network, by the state of their NIC configuration (OpenNebula's
    /// UPDATED/OUTDATED/UPDATING/ERROR_VMS): a leasing VM joins UPDATED_VMS.
    #[serde(default)]
    pub updated_vms: Vec<i64>,
    #[serde(default)]
    pub outdated_vms: Vec<i64>,
    #[serde(default)]
    pub updating_vms: Vec<i64>,
    #[serde(default)]
    pub error_vms: Vec<i64>,
    pub template: Template,
    /// Address ranges, ordered by AR_ID.
    #[serde(default)]
    pub ars: Vec<AddressRange>,
    /// AR_ID of the next range added (ids are not reused).
    #[serde(default)]
    pub next_ar_id: i64,
}

impl Vnet {
    /// Leases in use over all ranges (USED_LEASES).
    pub fn used_leases(&self) -> u64 {
        self.ars.iter().map(AddressRange::used).sum()
    }

    pub fn is_reservation(&self) -> bool {
        self.parent_network_id.is_some()
    }

    pub fn ar(&self, ar_id: i64) -> Option<&AddressRange> {
        self.ars.iter().find(|a| a.ar_id == ar_id)
    }

    pub fn ar_mut(&mut self, ar_id: i64) -> Option<&mut AddressRange> {
        self.ars.iter_mut().find(|a| a.ar_id == ar_id)
    }

    /// Adds a range built from an `AR` vector; returns its AR_ID.
    pub fn add_ar(&mut self, v: &Vector, ctx: ArContext) -> Result<i64, String> {
        let id = self.next_ar_id;
        let ar = AddressRange::from_vector(id, v, ctx)?;
        self.push_ar(ar);
        Ok(id)
    }

    /// Adds an already built range, giving it the next AR_ID.
    pub fn push_ar(&mut self, mut ar: AddressRange) -> i64 {
        let id = self
            .next_ar_id
            .max(self.ars.iter().map(|a| a.ar_id + 1).max().unwrap_or(0));
        ar.ar_id = id;
        self.next_ar_id = id + 1;
        self.ars.push(ar);
        id
    }

    /// Leases an address for `owner`: the one asked for, or the first free one of the first
    /// range that has any. Returns (AR_ID, index).
    pub fn lease(
        &mut self,
        owner: LeaseOwner,
        req: Option<&AddrRequest>,
    ) -> Result<(i64, u64), String> {
        match req {
            None => self
                .ars
                .iter_mut()
                .find_map(|ar| ar.allocate(owner).map(|i| (ar.ar_id, i)))
                .ok_or_else(|| "it has no free addresses left".to_string()),
            Some(req) => self
                .ars
                .iter_mut()
                .find_map(|ar| {
                    let i = ar.index_of(req)?;
                    ar.allocate_at(i, owner).then_some((ar.ar_id, i))
                })
                .ok_or_else(|| {
                    format!(
                        "{} is already in use or is not part of its address ranges",
                        req.describe()
                    )
                }),
        }
    }

    /// `one.vn.hold`: marks an address as held (VM -1) in range `ar_id`, or in every range
    /// holding it. False when no range could hold it (not in a range, or in use).
    pub fn hold(&mut self, req: &AddrRequest, ar_id: Option<i64>) -> bool {
        let mut held = false;
        for ar in self
            .ars
            .iter_mut()
            .filter(|a| ar_id.is_none_or(|id| a.ar_id == id))
        {
            if let Some(i) = ar.index_of(req) {
                held |= ar.allocate_at(i, LeaseOwner::HELD);
            }
        }
        held
    }

    /// `one.vn.release`: frees a held address (only held ones: VM leases stay).
    pub fn release_held(&mut self, req: &AddrRequest, ar_id: Option<i64>) -> u64 {
        let mut freed = 0;
        for ar in self
            .ars
            .iter_mut()
            .filter(|a| ar_id.is_none_or(|id| a.ar_id == id))
        {
            if let Some(i) = ar.index_of(req) {
                freed += u64::from(ar.free_index(i, LeaseOwner::HELD));
            }
        }
        freed
    }

    /// Frees the lease of `owner` at `req` in range `ar_id` (or in any range when the range
    /// is unknown). Returns whether something was freed.
    pub fn free_lease(&mut self, ar_id: Option<i64>, req: &AddrRequest, owner: LeaseOwner) -> bool {
        for ar in self
            .ars
            .iter_mut()
            .filter(|a| ar_id.is_none_or(|id| a.ar_id == id))
        {
            if let Some(i) = ar.index_of(req)
                && ar.free_index(i, owner)
            {
                return true;
            }
        }
        false
    }

    /// Frees every lease of `owner`; returns how many.
    pub fn free_owner(&mut self, owner: LeaseOwner) -> u64 {
        self.ars.iter_mut().map(|ar| ar.free_owner(owner)).sum()
    }

    /// Whether `owner` still holds a lease here.
    pub fn holds(&self, owner: LeaseOwner) -> bool {
        self.ars
            .iter()
            .any(|ar| ar.leases.values().any(|o| *o == owner))
    }

    /// Forgets a VM in the UPDATED/OUTDATED/UPDATING/ERROR lists.
    pub fn forget_vm(&mut self, vmid: i64) {
        for list in [
            &mut self.updated_vms,
            &mut self.outdated_vms,
            &mut self.updating_vms,
            &mut self.error_vms,
        ] {
            list.retain(|v| *v != vmid);
        }
    }

    /// Notes a VM using the network (UPDATED_VMS).
    pub fn add_vm(&mut self, vmid: i64) {
        if !self.updated_vms.contains(&vmid) {
            self.updated_vms.push(vmid);
            self.updated_vms.sort_unstable();
        }
    }

    /// Writes `<VNET>` in vnet.xsd's order. `leases` decides which leases `<LEASES>` shows
    /// (None: no LEASES element, as in pool listings).
    pub fn write_xml(&self, w: &mut XmlWriter, leases: Option<&dyn Fn(LeaseOwner) -> bool>) {
        fn text_or_empty(w: &mut XmlWriter, tag: &str, value: &str) {
            if value.is_empty() {
                w.empty(tag);
            } else {
                w.text(tag, value);
            }
        }
        let h = &self.header;
        w.open("VNET");
        h.write_ids_names(w);
        h.write_lock(w);
        h.perms.write_xml(w);
        write_ids(w, "CLUSTERS", &self.clusters);
        w.text("BRIDGE", &self.bridge)
            .text("BRIDGE_TYPE", &self.bridge_type)
            .num("STATE", self.state.num())
            .num("PREV_STATE", self.prev_state.num());
        match self.parent_network_id {
            Some(p) => w.num("PARENT_NETWORK_ID", p),
            None => w.empty("PARENT_NETWORK_ID"),
        };
        match self.template_id {
            Some(t) => w.num("TEMPLATE_ID", t),
            None => w.empty("TEMPLATE_ID"),
        };
        text_or_empty(w, "VN_MAD", &self.vn_mad);
        text_or_empty(w, "PHYDEV", &self.phydev);
        text_or_empty(w, "VLAN_ID", &self.vlan_id);
        text_or_empty(w, "OUTER_VLAN_ID", &self.outer_vlan_id);
        w.flag("VLAN_ID_AUTOMATIC", self.vlan_id_automatic)
            .flag("OUTER_VLAN_ID_AUTOMATIC", self.outer_vlan_id_automatic)
            .num("USED_LEASES", self.used_leases());
        write_ids(w, "VROUTERS", &self.vrouters);
        write_ids(w, "UPDATED_VMS", &self.updated_vms);
        write_ids(w, "OUTDATED_VMS", &self.outdated_vms);
        write_ids(w, "UPDATING_VMS", &self.updating_vms);
        write_ids(w, "ERROR_VMS", &self.error_vms);
        self.template.write_xml(w, "TEMPLATE");
        if self.ars.is_empty() {
            w.empty("AR_POOL");
        } else {
            w.open("AR_POOL");
            for ar in &self.ars {
                ar.write_xml(w, leases);
            }
            w.close("AR_POOL");
        }
        w.close("VNET");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Lock;

    const CTX: ArContext = ArContext {
        mac_prefix: 0x0200,
        random: 7,
    };

    fn vnet() -> Vnet {
        let mut template = Template::new();
        for (k, v) in [
            ("BRIDGE", "onebr0"),
            ("BRIDGE_TYPE", "linux"),
            ("VN_MAD", "bridge"),
            ("PHYDEV", ""),
            ("SECURITY_GROUPS", "0"),
            ("DNS", "10.0.0.254"),
        ] {
            template.set(k, v);
        }
        Vnet {
            header: Header::oneadmin(0, "private"),
            clusters: vec![0],
            bridge: "onebr0".into(),
            bridge_type: "linux".into(),
            state: VnetState::Ready,
            prev_state: VnetState::Ready,
            parent_network_id: None,
            template_id: None,
            vn_mad: "bridge".into(),
            phydev: String::new(),
            vlan_id: String::new(),
            outer_vlan_id: String::new(),
            vlan_id_automatic: false,
            outer_vlan_id_automatic: false,
            vrouters: vec![],
            updated_vms: vec![],
            outdated_vms: vec![],
            updating_vms: vec![],
            error_vms: vec![],
            template,
            ars: vec![],
            next_ar_id: 0,
        }
    }

    fn ar_vec(text: &str) -> Vector {
        Template::parse(text).unwrap().vector("AR").unwrap().clone()
    }

    #[test]
    fn leases_hold_release_across_ranges() {
        let mut v = vnet();
        assert_eq!(
            v.add_ar(&ar_vec("AR=[TYPE=IP4, IP=10.0.0.1, SIZE=2]"), CTX),
            Ok(0)
        );
        assert_eq!(
            v.add_ar(&ar_vec("AR=[TYPE=IP4, IP=10.0.1.1, SIZE=2]"), CTX),
            Ok(1)
        );
        let ip = |s: &str| AddrRequest::Ip(s.to_string());
        assert!(v.hold(&ip("10.0.0.2"), None));
        assert!(!v.hold(&ip("10.0.0.2"), None), "already held");
        assert!(!v.hold(&ip("10.0.9.9"), None), "not in a range");
        assert_eq!(v.lease(LeaseOwner::Vm(4), None), Ok((0, 0)));
        assert_eq!(
            v.lease(LeaseOwner::Vm(4), None),
            Ok((1, 0)),
            "first range full"
        );
        assert_eq!(
            v.lease(LeaseOwner::Vm(5), Some(&ip("10.0.1.2"))),
            Ok((1, 1))
        );
        let err = v
            .lease(LeaseOwner::Vm(5), Some(&ip("10.0.0.2")))
            .unwrap_err();
        assert!(err.contains("IP 10.0.0.2 is already in use"), "{err}");
        assert!(
            v.lease(LeaseOwner::Vm(5), None)
                .unwrap_err()
                .contains("no free addresses")
        );
        assert_eq!(v.used_leases(), 4);
        assert_eq!(
            v.release_held(&ip("10.0.0.1"), None),
            0,
            "VM leases are not released"
        );
        assert_eq!(v.release_held(&ip("10.0.0.2"), Some(0)), 1);
        assert!(v.free_lease(
            Some(1),
            &AddrRequest::Mac("02:00:0a:00:01:02".into()),
            LeaseOwner::Vm(5)
        ));
        assert_eq!(v.free_owner(LeaseOwner::Vm(4)), 2);
        assert_eq!(v.used_leases(), 0);
    }

    #[test]
    fn ar_ids_are_not_reused() {
        let mut v = vnet();
        v.add_ar(&ar_vec("AR=[TYPE=ETHER, SIZE=2]"), CTX).unwrap();
        v.add_ar(&ar_vec("AR=[TYPE=ETHER, SIZE=2]"), CTX).unwrap();
        v.ars.retain(|a| a.ar_id != 1);
        assert_eq!(v.add_ar(&ar_vec("AR=[TYPE=ETHER, SIZE=2]"), CTX), Ok(2));
    }

    #[test]
    fn xml_shape() {
        let mut v = vnet();
        v.header.lock = Some(Lock {
            level: 1,
            owner: 0,
            time: 10,
            req_id: 0,
        });
        v.add_ar(&ar_vec("AR=[TYPE=IP4, IP=10.0.0.1, SIZE=2]"), CTX)
            .unwrap();
        v.lease(LeaseOwner::Vm(3), None).unwrap();
        v.add_vm(3);
        let mut w = XmlWriter::new();
        v.write_xml(&mut w, Some(&|_| true));
        assert_eq!(
            w.finish(),
            "<VNET><ID>0</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME>\
             <NAME>private</NAME><LOCK><LOCKED>1</LOCKED><OWNER>0</OWNER><TIME>10</TIME><REQ_ID>0</REQ_ID></LOCK>\
             <PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A><GROUP_U>0</GROUP_U>\
             <GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>\
             <CLUSTERS><ID>0</ID></CLUSTERS><BRIDGE>onebr0</BRIDGE><BRIDGE_TYPE>linux</BRIDGE_TYPE>\
             <STATE>1</STATE><PREV_STATE>1</PREV_STATE><PARENT_NETWORK_ID/><TEMPLATE_ID/>\
             <VN_MAD>bridge</VN_MAD><PHYDEV/><VLAN_ID/><OUTER_VLAN_ID/><VLAN_ID_AUTOMATIC>0</VLAN_ID_AUTOMATIC>\
             <OUTER_VLAN_ID_AUTOMATIC>0</OUTER_VLAN_ID_AUTOMATIC><USED_LEASES>1</USED_LEASES><VROUTERS/>\
             <UPDATED_VMS><ID>3</ID></UPDATED_VMS><OUTDATED_VMS/><UPDATING_VMS/><ERROR_VMS/>\
             <TEMPLATE><BRIDGE>onebr0</BRIDGE><BRIDGE_TYPE>linux</BRIDGE_TYPE><DNS>10.0.0.254</DNS>\
             <PHYDEV></PHYDEV><SECURITY_GROUPS>0</SECURITY_GROUPS><VN_MAD>bridge</VN_MAD></TEMPLATE>\
             <AR_POOL><AR><AR_ID>0</AR_ID><IP>10.0.0.1</IP><MAC>02:00:0a:00:00:01</MAC><NEXT_INDEX>1</NEXT_INDEX>\
             <SIZE>2</SIZE><TYPE>IP4</TYPE><MAC_END>02:00:0a:00:00:02</MAC_END><IP_END>10.0.0.2</IP_END>\
             <USED_LEASES>1</USED_LEASES><LEASES><LEASE><IP>10.0.0.1</IP><MAC>02:00:0a:00:00:01</MAC><VM>3</VM></LEASE>\
             </LEASES></AR></AR_POOL></VNET>"
        );
    }

    /// Representative documents: every optional part that vnet.xsd knows.
    fn xsd_samples() -> Vec<(&'static str, String)> {
        let mut v = vnet();
        v.header.lock = Some(Lock {
            level: 2,
            owner: 0,
            time: 10,
            req_id: 3,
        });
        v.vlan_id = "12".into();
        v.add_ar(
            &ar_vec("AR=[TYPE=IP4, IP=10.0.0.1, SIZE=10, VN_MAD=bridge, VLAN_ID=12]"),
            CTX,
        )
        .unwrap();
        v.add_ar(
            &ar_vec("AR=[TYPE=IP4_6, IP=10.0.1.1, SIZE=4, GLOBAL_PREFIX=\"2001:db8::\", ULA_PREFIX=\"fd00::\"]"),
            CTX,
        )
        .unwrap();
        v.add_ar(&ar_vec("AR=[TYPE=ETHER, SIZE=3]"), CTX).unwrap();
        v.add_ar(
            &ar_vec("AR=[TYPE=IP6, SIZE=3, GLOBAL_PREFIX=\"2001:db8:1::\"]"),
            CTX,
        )
        .unwrap();
        v.lease(LeaseOwner::Vm(3), None).unwrap();
        v.hold(&AddrRequest::Ip("10.0.0.5".into()), None);
        let first = v.ars[0].reserve(LeaseOwner::Vnet(1), 2, None).unwrap();
        v.lease(LeaseOwner::Vm(4), Some(&AddrRequest::Ip("10.0.1.2".into())))
            .unwrap();
        v.lease(
            LeaseOwner::Vrouter(1),
            Some(&AddrRequest::Mac(mac_to_string(v.ars[2].mac))),
        )
        .unwrap();
        v.add_vm(3);
        v.add_vm(4);
        let mut r = vnet();
        r.header.id = 1;
        r.header.name = "mine".into();
        r.parent_network_id = Some(0);
        r.push_ar(v.ars[0].reservation_child(0, first, 2));
        let mut empty = vnet();
        empty.header.id = 2;

        let mut out = Vec::new();
        for (name, n) in [("vnet", &v), ("reservation", &r), ("no ranges", &empty)] {
            let mut w = XmlWriter::new();
            n.write_xml(&mut w, Some(&|_| true));
            out.push((name, w.finish()));
        }
        let mut w = XmlWriter::new();
        w.open("VNET_POOL");
        for n in [&v, &r, &empty] {
            n.write_xml(&mut w, None);
        }
        w.close("VNET_POOL");
        out.push(("pool", w.finish()));
        out.push(("empty pool", "<VNET_POOL></VNET_POOL>".into()));
        out
    }

    #[test]
    fn samples_validate_against_the_xsd() {
        for (name, xml) in xsd_samples() {
            crate::objects::xsd::check(name, &xml);
        }
    }
}
