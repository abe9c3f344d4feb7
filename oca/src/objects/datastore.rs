//! `DATASTORE` (datastore.xsd) and `DATASTORE_POOL`.

use super::{Object, Ownership, Permissions, ids, int, int32, text};
use crate::dom::Element;
use crate::template::{Template, serde_template};
use one_proto::state::{DatastoreState, DatastoreType};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Datastore {
    pub id: i64,
    #[serde(flatten)]
    pub owner: Ownership,
    pub name: String,
    pub permissions: Permissions,
    pub ds_mad: String,
    pub tm_mad: String,
    /// Where the datastore's files live on the front-end and the hosts
    /// (`/var/lib/one/datastores/<id>`).
    pub base_path: String,
    /// TYPE ([`DatastoreType`] numbers).
    #[serde(rename = "type")]
    pub ds_type: i32,
    pub disk_type: i32,
    /// STATE ([`DatastoreState`] numbers).
    pub state: i32,
    pub clusters: Vec<i64>,
    pub total_mb: i64,
    pub free_mb: i64,
    pub used_mb: i64,
    pub images: Vec<i64>,
    #[serde(with = "serde_template")]
    pub template: Template,
}

impl Object for Datastore {
    const ROOT: &'static str = "DATASTORE";
    const POOL_ROOT: &'static str = "DATASTORE_POOL";
    const KIND: &'static str = "datastore";

    fn from_element(e: Element<'_>) -> Datastore {
        Datastore {
            id: int(e, "ID"),
            owner: Ownership::from_element(e),
            name: text(e, "NAME"),
            permissions: e
                .child("PERMISSIONS")
                .map(Permissions::from_element)
                .unwrap_or_default(),
            ds_mad: text(e, "DS_MAD"),
            tm_mad: text(e, "TM_MAD"),
            base_path: text(e, "BASE_PATH"),
            ds_type: int32(e, "TYPE"),
            disk_type: int32(e, "DISK_TYPE"),
            state: int32(e, "STATE"),
            clusters: ids(e, "CLUSTERS"),
            total_mb: int(e, "TOTAL_MB"),
            free_mb: int(e, "FREE_MB"),
            used_mb: int(e, "USED_MB"),
            images: ids(e, "IMAGES"),
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

impl Datastore {
    pub fn ds_type(&self) -> Option<DatastoreType> {
        DatastoreType::from_num(self.ds_type.into())
    }

    pub fn state(&self) -> Option<DatastoreState> {
        DatastoreState::from_num(self.state.into())
    }

    /// TYPE's name (`IMAGE_DS`), or the number.
    pub fn type_name(&self) -> String {
        self.ds_type()
            .map_or_else(|| self.ds_type.to_string(), |t| t.name().to_owned())
    }

    /// STATE's name (`READY`), or the number.
    pub fn state_name(&self) -> String {
        self.state()
            .map_or_else(|| self.state.to_string(), |s| s.name().to_owned())
    }

    /// `onedatastore list`'s TYPE: `img`, `sys`, `fil`, `bck`.
    pub fn short_type(&self) -> &'static str {
        match self.ds_type {
            0 => "img",
            1 => "sys",
            2 => "fil",
            3 => "bck",
            _ => "???",
        }
    }

    /// `onedatastore list`'s STAT: `on` or `off`.
    pub fn short_state(&self) -> &'static str {
        match self.state {
            0 => "on",
            1 => "off",
            _ => "unkn",
        }
    }
}
