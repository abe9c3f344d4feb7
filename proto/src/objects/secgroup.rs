//! SECURITY_GROUP documents (security_group.xsd, security_group_pool.xsd): a named set of
//! RULEs that allow traffic to or from the NICs using the group, and the VMs using it by the
//! state of their rules on the hosts (OpenNebula's UPDATED / OUTDATED / UPDATING / ERROR_VMS).
//!
//! A VM belongs to one of the four sets while one of its NICs uses the group:
//!
//! ```text
//!           rules changed (update, commit)         picked by the updater
//!  UPDATED ───────────────────────────► OUTDATED ─────────────────────► UPDATING
//!     ▲                                    ▲  │ (VM not on a host: its template only)   │
//!     │◄───────────────────────────────────┼──┘                                         │
//!     │◄─────────────────── the host loaded the rules ──────────────────────────────────┤
//!     │                                    │                                            │
//!     │                 commit (recovery)  └────────── ERROR ◄── host failed, or the VM │
//!     │                                                          was busy (BOOT, MIGRATE)┘
//! ```

use super::{Header, write_ids};
use crate::template::{AttrValue, Template, Vector};
use crate::xml::XmlWriter;
use serde::{Deserialize, Serialize};

/// The default group every network gets, allowing all traffic.
pub const DEFAULT_ID: i64 = 0;
/// User groups start here: OpenNebula keeps ids below 100 for system groups.
pub const FIRST_USER_ID: i64 = 100;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub header: Header,
    pub updated_vms: Vec<i64>,
    pub outdated_vms: Vec<i64>,
    pub updating_vms: Vec<i64>,
    pub error_vms: Vec<i64>,
    /// DESCRIPTION, RULE vectors and any user attribute.
    pub template: Template,
}

fn insert(set: &mut Vec<i64>, id: i64) -> bool {
    match set.binary_search(&id) {
        Ok(_) => false,
        Err(pos) => {
            set.insert(pos, id);
            true
        }
    }
}

fn remove(set: &mut Vec<i64>, id: i64) -> bool {
    match set.binary_search(&id) {
        Ok(pos) => {
            set.remove(pos);
            true
        }
        Err(_) => false,
    }
}

impl SecurityGroup {
    pub fn new(header: Header, template: Template) -> SecurityGroup {
        SecurityGroup {
            header,
            updated_vms: Vec::new(),
            outdated_vms: Vec::new(),
            updating_vms: Vec::new(),
            error_vms: Vec::new(),
            template,
        }
    }

    /// The RULE vectors.
    pub fn rules(&self) -> impl Iterator<Item = &Vector> {
        self.template.vectors("RULE")
    }

    /// Every VM using the group, whatever the state of its rules.
    pub fn vms(&self) -> impl Iterator<Item = i64> + '_ {
        self.updated_vms
            .iter()
            .chain(&self.outdated_vms)
            .chain(&self.updating_vms)
            .chain(&self.error_vms)
            .copied()
    }

    pub fn has_vm(&self, id: i64) -> bool {
        self.vms().any(|v| v == id)
    }

    pub fn vm_count(&self) -> usize {
        self.updated_vms.len()
            + self.outdated_vms.len()
            + self.updating_vms.len()
            + self.error_vms.len()
    }

    fn take(&mut self, id: i64) {
        remove(&mut self.updated_vms, id);
        remove(&mut self.outdated_vms, id);
        remove(&mut self.updating_vms, id);
        remove(&mut self.error_vms, id);
    }

    /// A VM's rules are up to date (it joined with the current rules, or a host loaded them).
    pub fn set_updated(&mut self, id: i64) {
        self.take(id);
        insert(&mut self.updated_vms, id);
    }

    pub fn set_outdated(&mut self, id: i64) {
        self.take(id);
        insert(&mut self.outdated_vms, id);
    }

    pub fn set_updating(&mut self, id: i64) {
        self.take(id);
        insert(&mut self.updating_vms, id);
    }

    pub fn set_error(&mut self, id: i64) {
        self.take(id);
        insert(&mut self.error_vms, id);
    }

    /// The VM no longer uses the group.
    pub fn del_vm(&mut self, id: i64) {
        self.take(id);
    }

    /// OpenNebula's commit: every VM (or, for `recover`, those updating or in error) has to
    /// get the rules again.
    pub fn commit(&mut self, recover: bool) {
        let mut again: Vec<i64> = Vec::new();
        if !recover {
            again.append(&mut self.updated_vms);
        }
        again.append(&mut self.updating_vms);
        again.append(&mut self.error_vms);
        for id in again {
            insert(&mut self.outdated_vms, id);
        }
    }

    /// The SECURITY_GROUP document, elements in security_group.xsd's order (no LOCK: groups
    /// cannot be locked).
    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("SECURITY_GROUP");
        self.header.write_ids_names(w);
        self.header.perms.write_xml(w);
        write_ids(w, "UPDATED_VMS", &self.updated_vms);
        write_ids(w, "OUTDATED_VMS", &self.outdated_vms);
        write_ids(w, "UPDATING_VMS", &self.updating_vms);
        write_ids(w, "ERROR_VMS", &self.error_vms);
        self.template.write_xml(w, "TEMPLATE");
        w.close("SECURITY_GROUP");
    }

    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::new();
        self.write_xml(&mut w);
        w.finish()
    }

    /// The group's rules as the VM template carries them (OpenNebula's get_rules):
    /// `SECURITY_GROUP_RULE = [ ...the RULE..., SECURITY_GROUP_ID, SECURITY_GROUP_NAME ]`.
    /// NETWORK_ID rules are expanded by the caller, who knows the networks.
    pub fn vm_rules(&self) -> Vec<Vector> {
        self.rules()
            .map(|r| {
                let mut v = r.clone();
                v.set("SECURITY_GROUP_ID", self.header.id.to_string());
                v.set("SECURITY_GROUP_NAME", self.header.name.clone());
                v
            })
            .collect()
    }
}

/// Checks a RULE as OpenNebula's SecurityGroup::is_valid does; the message is OpenNebula's.
pub fn check_rule(rule: &Vector) -> Result<(), String> {
    let get = |k: &str| rule.get(k).map(str::trim).unwrap_or("");
    let proto = get("PROTOCOL").to_ascii_uppercase();
    if !matches!(
        proto.as_str(),
        "TCP" | "UDP" | "ICMP" | "ICMPV6" | "IPSEC" | "ALL"
    ) {
        return Err(
            "Wrong PROTOCOL in rule. Valid options: TCP, UDP, ICMP, ICMPV6, IPSEC, ALL.".into(),
        );
    }
    let range = get("RANGE");
    if !range.is_empty() {
        if proto != "TCP" && proto != "UDP" {
            return Err("RANGE is supported only for TCP and UDP protocols.".into());
        }
        let mut ports = 0;
        for part in range.split(',') {
            let nums: Vec<&str> = part.split(':').collect();
            if nums.is_empty()
                || nums.len() > 2
                || nums
                    .iter()
                    .any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err("Invalid RANGE specification.".into());
            }
            let vals: Vec<u64> = nums.iter().map(|n| n.parse().unwrap_or(u64::MAX)).collect();
            if vals.iter().any(|v| *v > 65535) {
                return Err("RANGE out of bounds 0-65536.".into());
            }
            if vals.len() == 2 && vals[1] < vals[0] {
                return Err("RANGE BEGIN value is greater than RANGE END value".into());
            }
            ports += vals.len();
            if ports > 15 {
                return Err("Not more than 15 ports can be specified in a RULE".into());
            }
        }
    }
    for (key, want) in [("ICMP_TYPE", "ICMP"), ("ICMPV6_TYPE", "ICMPV6")] {
        let v = get(key);
        if v.is_empty() {
            continue;
        }
        if proto != want {
            return Err(format!("{key} is supported only for {want} protocol."));
        }
        if v.parse::<u32>().is_err() {
            return Err(format!("Wrong {key}, it must be integer"));
        }
    }
    let rt = get("RULE_TYPE").to_ascii_uppercase();
    if rt != "INBOUND" && rt != "OUTBOUND" {
        return Err("Wrong RULE_TYPE in rule. Valid options: INBOUND, OUTBOUND.".into());
    }
    let ip = get("IP");
    if !ip.is_empty() {
        if get("SIZE").parse::<u32>().is_err() {
            return Err("Wrong or empty SIZE.".into());
        }
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err("Wrong format for IP value.".into());
        }
    } else {
        let n = get("NETWORK_ID");
        if !n.is_empty() && n.parse::<i64>().is_err() {
            return Err("Wrong NETWORK_ID.".into());
        }
    }
    Ok(())
}

/// Checks every RULE and removes duplicates (OpenNebula's remove_duplicates: the later copy
/// of an identical rule goes).
pub fn normalize_rules(t: &mut Template) -> Result<(), String> {
    for r in t.vectors("RULE") {
        check_rule(r)?;
    }
    let mut seen: Vec<Vec<(String, String)>> = Vec::new();
    t.attrs.retain(|a| match (&a.name[..], &a.value) {
        ("RULE", AttrValue::Vector(v)) => {
            let mut key = v.attrs.clone();
            key.sort();
            if seen.contains(&key) {
                false
            } else {
                seen.push(key);
                true
            }
        }
        _ => true,
    });
    Ok(())
}

/// The template of the default group (OpenNebula's, word for word).
pub fn default_template() -> Template {
    Template::parse(
        "DESCRIPTION=\"The default security group is added to every network. Use it to add \
         default filter rules for your networks. You may remove this security group from any \
         network by updating its properties.\"\n\
         RULE=[RULE_TYPE=OUTBOUND,PROTOCOL=ALL]\n\
         RULE=[RULE_TYPE=INBOUND,PROTOCOL=ALL]",
    )
    .expect("the default security group's template parses")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Permissions;
    use crate::objects::xsd::{check as xsd_check, check_with};

    fn sample() -> SecurityGroup {
        let mut g = SecurityGroup::new(
            Header {
                perms: Permissions::from_umask(0o177),
                ..Header::oneadmin(0, "default")
            },
            default_template(),
        );
        g.set_updated(7);
        g.set_updated(3);
        g.set_error(9);
        g
    }

    #[test]
    fn document_has_xsd_order_and_validates() {
        let xml = sample().to_xml();
        assert!(
            xml.starts_with(
                "<SECURITY_GROUP><ID>0</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>\
                 <GNAME>oneadmin</GNAME><NAME>default</NAME><PERMISSIONS>"
            ),
            "{xml}"
        );
        assert!(
            xml.contains(
                "<UPDATED_VMS><ID>3</ID><ID>7</ID></UPDATED_VMS><OUTDATED_VMS/><UPDATING_VMS/>\
                 <ERROR_VMS><ID>9</ID></ERROR_VMS><TEMPLATE><DESCRIPTION>"
            ),
            "{xml}"
        );
        assert!(xml.ends_with(
            "<RULE><PROTOCOL>ALL</PROTOCOL><RULE_TYPE>OUTBOUND</RULE_TYPE></RULE>\
             <RULE><PROTOCOL>ALL</PROTOCOL><RULE_TYPE>INBOUND</RULE_TYPE></RULE>\
             </TEMPLATE></SECURITY_GROUP>"
        ));
        xsd_check("SECURITY_GROUP", &xml);
        let pool = format!("<SECURITY_GROUP_POOL>{xml}{xml}</SECURITY_GROUP_POOL>");
        check_with(
            "SECURITY_GROUP_POOL",
            &pool,
            Some("security_group_pool.xsd"),
        );
    }

    #[test]
    fn vm_sets_move_as_in_opennebula() {
        let mut g = sample();
        g.set_outdated(5);
        g.commit(true);
        // Recovery: the erroneous and updating VMs only.
        assert_eq!(
            (g.updated_vms.clone(), g.outdated_vms.clone()),
            (vec![3, 7], vec![5, 9])
        );
        g.commit(false);
        assert_eq!(g.outdated_vms, [3, 5, 7, 9]);
        assert!(g.updated_vms.is_empty() && g.error_vms.is_empty());
        g.set_updating(3);
        assert_eq!(g.vm_count(), 4);
        g.del_vm(3);
        assert!(!g.has_vm(3));
    }

    #[test]
    fn rules_are_checked_with_opennebulas_messages() {
        let bad = |r: &str| {
            let t = Template::parse(&format!("RULE=[{r}]")).unwrap();
            check_rule(t.vector("RULE").unwrap()).unwrap_err()
        };
        assert_eq!(
            bad("PROTOCOL=GRE, RULE_TYPE=inbound"),
            "Wrong PROTOCOL in rule. Valid options: TCP, UDP, ICMP, ICMPV6, IPSEC, ALL."
        );
        assert_eq!(
            bad("PROTOCOL=ICMP, RULE_TYPE=inbound, RANGE=22"),
            "RANGE is supported only for TCP and UDP protocols."
        );
        assert_eq!(
            bad("PROTOCOL=TCP, RULE_TYPE=inbound, RANGE=\"22-80\""),
            "Invalid RANGE specification."
        );
        assert_eq!(
            bad("PROTOCOL=TCP, RULE_TYPE=inbound, RANGE=70000"),
            "RANGE out of bounds 0-65536."
        );
        assert_eq!(
            bad(
                "PROTOCOL=TCP, RULE_TYPE=inbound, RANGE=\"1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16\""
            ),
            "Not more than 15 ports can be specified in a RULE"
        );
        assert_eq!(
            bad("PROTOCOL=TCP, RULE_TYPE=inbound, ICMP_TYPE=8"),
            "ICMP_TYPE is supported only for ICMP protocol."
        );
        assert_eq!(
            bad("PROTOCOL=TCP, RULE_TYPE=up"),
            "Wrong RULE_TYPE in rule. Valid options: INBOUND, OUTBOUND."
        );
        assert_eq!(
            bad("PROTOCOL=TCP, RULE_TYPE=inbound, IP=10.0.0.1"),
            "Wrong or empty SIZE."
        );
        assert_eq!(
            bad("PROTOCOL=TCP, RULE_TYPE=inbound, IP=10.0.0.x, SIZE=2"),
            "Wrong format for IP value."
        );
        let mut t = Template::parse(
            "RULE=[PROTOCOL=TCP, RULE_TYPE=inbound, RANGE=\"22,80:90\"]\n\
             RULE=[RULE_TYPE=inbound, PROTOCOL=TCP, RANGE=\"22,80:90\"]\n\
             RULE=[PROTOCOL=ALL, RULE_TYPE=outbound]",
        )
        .unwrap();
        normalize_rules(&mut t).unwrap();
        assert_eq!(t.vectors("RULE").count(), 2, "the duplicate went");
    }

    #[test]
    fn vm_rules_carry_the_group() {
        let r = sample().vm_rules();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].get("SECURITY_GROUP_ID"), Some("0"));
        assert_eq!(r[0].get("SECURITY_GROUP_NAME"), Some("default"));
        assert_eq!(r[0].get("PROTOCOL"), Some("ALL"));
    }
}
