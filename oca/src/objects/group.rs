//! `GROUP` (group.xsd) and `GROUP_POOL` (group_pool.xsd).

use super::quota::Quotas;
use super::{Object, check_root, ids, int, text};
use crate::OcaError;
use crate::dom::{Document, Element};
use crate::template::{Template, serde_template};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: i64,
    pub name: String,
    #[serde(with = "serde_template")]
    pub template: Template,
    pub users: Vec<i64>,
    pub admins: Vec<i64>,
    pub quotas: Quotas,
    pub default_quotas: Option<Quotas>,
}

impl Object for Group {
    const ROOT: &'static str = "GROUP";
    const POOL_ROOT: &'static str = "GROUP_POOL";
    const KIND: &'static str = "group";

    fn from_element(e: Element<'_>) -> Group {
        Group {
            id: int(e, "ID"),
            name: text(e, "NAME"),
            template: crate::template::child_template(e, "TEMPLATE"),
            users: ids(e, "USERS"),
            admins: ids(e, "ADMINS"),
            quotas: Quotas::from_parent(e),
            default_quotas: e.child("DEFAULT_GROUP_QUOTAS").map(Quotas::from_parent),
        }
    }

    fn id(&self) -> i64 {
        self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// As for users: each group gets its pool QUOTAS entry and the DEFAULT_GROUP_QUOTAS.
    fn pool_from_xml(xml: &str) -> Result<Vec<Group>, OcaError> {
        let doc = Document::parse(xml)?;
        check_root(&doc, Self::POOL_ROOT)?;
        let root = doc.root();
        let defaults = root.child("DEFAULT_GROUP_QUOTAS").map(Quotas::from_parent);
        let quotas: Vec<(i64, Quotas)> = root
            .children_named("QUOTAS")
            .map(|q| (int(q, "ID"), Quotas::from_parent(q)))
            .collect();
        Ok(root
            .children_named("GROUP")
            .map(|g| {
                let mut group = Group::from_element(g);
                if let Some((_, q)) = quotas.iter().find(|(id, _)| *id == group.id) {
                    group.quotas = q.clone();
                }
                group.default_quotas = defaults.clone();
                group
            })
            .collect())
    }
}
