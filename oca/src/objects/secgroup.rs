//! `SECURITY_GROUP` documents (`one.secgroup.info`, `one.secgrouppool.info`).

use super::{Object, Ownership, Permissions, ids, int, text};
use crate::dom::Element;
use crate::template::{Template, Vector, serde_template};
use serde::{Deserialize, Serialize};

/// A security group: its RULE vectors (in `template`) and the VMs using it, by the state of
/// their rules on the hosts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: i64,
    #[serde(flatten)]
    pub owner: Ownership,
    pub name: String,
    pub permissions: Permissions,
    pub updated_vms: Vec<i64>,
    pub outdated_vms: Vec<i64>,
    pub updating_vms: Vec<i64>,
    pub error_vms: Vec<i64>,
    /// DESCRIPTION, the RULE vectors and any user attribute.
    #[serde(with = "serde_template")]
    pub template: Template,
}

impl Object for SecurityGroup {
    const ROOT: &'static str = "SECURITY_GROUP";
    const POOL_ROOT: &'static str = "SECURITY_GROUP_POOL";
    const KIND: &'static str = "security group";

    fn from_element(e: Element<'_>) -> SecurityGroup {
        SecurityGroup {
            id: int(e, "ID"),
            owner: Ownership::from_element(e),
            name: text(e, "NAME"),
            permissions: e
                .child("PERMISSIONS")
                .map(Permissions::from_element)
                .unwrap_or_default(),
            updated_vms: ids(e, "UPDATED_VMS"),
            outdated_vms: ids(e, "OUTDATED_VMS"),
            updating_vms: ids(e, "UPDATING_VMS"),
            error_vms: ids(e, "ERROR_VMS"),
            template: crate::template::child_template(e, "TEMPLATE"),
        }
    }

    fn id(&self) -> i64 {
        self.id
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl SecurityGroup {
    /// The RULE vectors, in order.
    pub fn rules(&self) -> impl Iterator<Item = &Vector> {
        self.template.vectors("RULE")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_security_group() {
        let sg = SecurityGroup::from_xml(
            "<SECURITY_GROUP><ID>100</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>\
             <GNAME>oneadmin</GNAME><NAME>web</NAME><PERMISSIONS><OWNER_U>1</OWNER_U>\
             </PERMISSIONS><UPDATED_VMS><ID>3</ID></UPDATED_VMS><OUTDATED_VMS/><UPDATING_VMS/>\
             <ERROR_VMS/><TEMPLATE><DESCRIPTION>w</DESCRIPTION><RULE><PROTOCOL>TCP</PROTOCOL>\
             <RANGE>80</RANGE><RULE_TYPE>inbound</RULE_TYPE></RULE></TEMPLATE></SECURITY_GROUP>",
        )
        .unwrap();
        assert_eq!((sg.id, sg.name.as_str()), (100, "web"));
        assert_eq!(sg.updated_vms, [3]);
        assert_eq!(sg.rules().next().unwrap().get("RANGE"), Some("80"));
        assert_eq!(sg.template.get("DESCRIPTION"), Some("w"));
        let pool = SecurityGroup::pool_from_xml(
            "<SECURITY_GROUP_POOL><SECURITY_GROUP><ID>0</ID><NAME>default</NAME>\
             </SECURITY_GROUP></SECURITY_GROUP_POOL>",
        )
        .unwrap();
        assert_eq!(pool[0].name, "default");
    }
}
