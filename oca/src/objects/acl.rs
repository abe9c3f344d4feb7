//! `ACL_POOL` (acl_pool.xsd): ACL rules.

use super::{Object, int, text};
use crate::dom::Element;
use serde::{Deserialize, Serialize};

/// One ACL rule: the four hex words of `one.acl.addrule` and OpenNebula's string form
/// (`@1 VM+IMAGE/* CREATE *`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRule {
    pub id: i64,
    pub user: String,
    pub resource: String,
    pub rights: String,
    pub zone: String,
    pub string: String,
}

impl Object for AclRule {
    const ROOT: &'static str = "ACL";
    const POOL_ROOT: &'static str = "ACL_POOL";
    const KIND: &'static str = "ACL";

    fn from_element(e: Element<'_>) -> AclRule {
        AclRule {
            id: int(e, "ID"),
            user: text(e, "USER"),
            resource: text(e, "RESOURCE"),
            rights: text(e, "RIGHTS"),
            zone: text(e, "ZONE"),
            string: text(e, "STRING"),
        }
    }

    fn id(&self) -> i64 {
        self.id
    }

    fn name(&self) -> &str {
        &self.string
    }
}

impl AclRule {
    /// The rule parsed by one-proto's ACL model (hex words decoded), when they are valid.
    pub fn parsed(&self) -> Option<one_proto::acl::AclRule> {
        one_proto::acl::AclRule::from_hex(
            self.id,
            &self.user,
            &self.resource,
            &self.rights,
            Some(&self.zone),
        )
        .ok()
    }
}
