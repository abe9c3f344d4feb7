//! `VMTEMPLATE` (vmtemplate.xsd) and `VMTEMPLATE_POOL`.

use super::{Lock, Object, Ownership, Permissions, int, text};
use crate::dom::Element;
use crate::template::{Template, serde_template};
use serde::{Deserialize, Serialize};

/// A VM template (`one.template.*`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VmTemplate {
    pub id: i64,
    #[serde(flatten)]
    pub owner: Ownership,
    pub name: String,
    pub lock: Option<Lock>,
    pub permissions: Permissions,
    pub regtime: i64,
    #[serde(with = "serde_template")]
    pub template: Template,
}

impl Object for VmTemplate {
    const ROOT: &'static str = "VMTEMPLATE";
    const POOL_ROOT: &'static str = "VMTEMPLATE_POOL";
    const KIND: &'static str = "virtual machine template";

    fn from_element(e: Element<'_>) -> VmTemplate {
        VmTemplate {
            id: int(e, "ID"),
            owner: Ownership::from_element(e),
            name: text(e, "NAME"),
            lock: Lock::from_parent(e),
            permissions: e
                .child("PERMISSIONS")
                .map(Permissions::from_element)
                .unwrap_or_default(),
            regtime: int(e, "REGTIME"),
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
