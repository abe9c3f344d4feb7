//! `CLUSTER` (cluster.xsd) and `CLUSTER_POOL`.

use super::{Object, ids, int, text};
use crate::dom::Element;
use crate::template::{Template, serde_template};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: i64,
    pub name: String,
    pub hosts: Vec<i64>,
    pub datastores: Vec<i64>,
    pub vnets: Vec<i64>,
    #[serde(with = "serde_template")]
    pub template: Template,
}

impl Object for Cluster {
    const ROOT: &'static str = "CLUSTER";
    const POOL_ROOT: &'static str = "CLUSTER_POOL";
    const KIND: &'static str = "cluster";

    fn from_element(e: Element<'_>) -> Cluster {
        Cluster {
            id: int(e, "ID"),
            name: text(e, "NAME"),
            hosts: ids(e, "HOSTS"),
            datastores: ids(e, "DATASTORES"),
            vnets: ids(e, "VNETS"),
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
