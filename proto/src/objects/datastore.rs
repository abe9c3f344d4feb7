//! DATASTORE documents (datastore.xsd).

use super::{Header, write_ids};
use crate::state::{DatastoreState, DatastoreType, DiskType};
use crate::template::Template;
use crate::xml::XmlWriter;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Datastore {
    pub header: Header,
    pub ds_mad: String,
    pub tm_mad: String,
    pub base_path: String,
    pub ds_type: DatastoreType,
    pub disk_type: DiskType,
    pub state: DatastoreState,
    pub clusters: Vec<i64>,
    pub total_mb: i64,
    pub free_mb: i64,
    pub used_mb: i64,
    pub images: Vec<i64>,
    pub template: Template,
}

impl Datastore {
    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("DATASTORE");
        self.header.write_ids_names(w);
        self.header.perms.write_xml(w);
        w.text("DS_MAD", &self.ds_mad)
            .text("TM_MAD", &self.tm_mad)
            .text("BASE_PATH", &self.base_path)
            .num("TYPE", self.ds_type.num())
            .num("DISK_TYPE", self.disk_type.num())
            .num("STATE", self.state.num());
        write_ids(w, "CLUSTERS", &self.clusters);
        w.num("TOTAL_MB", self.total_mb)
            .num("FREE_MB", self.free_mb)
            .num("USED_MB", self.used_mb);
        write_ids(w, "IMAGES", &self.images);
        self.template.write_xml(w, "TEMPLATE");
        w.close("DATASTORE");
    }
}
