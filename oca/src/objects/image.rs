//! `IMAGE` (image.xsd) and `IMAGE_POOL`.

use super::vm::DiskSnapshot;
use super::{Lock, Object, Ownership, Permissions, flag, ids, int, int_or, int32, text};
use crate::dom::Element;
use crate::template::{Template, serde_template};
use one_proto::state::{ImageState, ImageType};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: i64,
    #[serde(flatten)]
    pub owner: Ownership,
    pub name: String,
    pub lock: Option<Lock>,
    pub permissions: Permissions,
    /// TYPE ([`ImageType`] numbers).
    #[serde(rename = "type")]
    pub image_type: i32,
    pub disk_type: i32,
    pub persistent: bool,
    pub regtime: i64,
    pub modtime: i64,
    pub source: String,
    pub path: String,
    pub format: String,
    pub fs: String,
    /// Size in MB.
    pub size: i64,
    /// STATE ([`ImageState`] numbers).
    pub state: i32,
    pub prev_state: i32,
    pub running_vms: i64,
    pub cloning_ops: i64,
    pub cloning_id: i64,
    pub target_snapshot: i64,
    pub datastore_id: i64,
    pub datastore: String,
    pub vms: Vec<i64>,
    pub clones: Vec<i64>,
    pub app_clones: Vec<i64>,
    #[serde(with = "serde_template")]
    pub template: Template,
    pub snapshots: Vec<DiskSnapshot>,
}

impl Object for Image {
    const ROOT: &'static str = "IMAGE";
    const POOL_ROOT: &'static str = "IMAGE_POOL";
    const KIND: &'static str = "image";

    fn from_element(e: Element<'_>) -> Image {
        Image {
            id: int(e, "ID"),
            owner: Ownership::from_element(e),
            name: text(e, "NAME"),
            lock: Lock::from_parent(e),
            permissions: e
                .child("PERMISSIONS")
                .map(Permissions::from_element)
                .unwrap_or_default(),
            image_type: int32(e, "TYPE"),
            disk_type: int32(e, "DISK_TYPE"),
            persistent: flag(e, "PERSISTENT"),
            regtime: int(e, "REGTIME"),
            modtime: int(e, "MODTIME"),
            source: text(e, "SOURCE"),
            path: text(e, "PATH"),
            format: text(e, "FORMAT"),
            fs: text(e, "FS"),
            size: int(e, "SIZE"),
            state: int32(e, "STATE"),
            prev_state: int32(e, "PREV_STATE"),
            running_vms: int(e, "RUNNING_VMS"),
            cloning_ops: int(e, "CLONING_OPS"),
            cloning_id: int_or(e, "CLONING_ID", -1),
            target_snapshot: int_or(e, "TARGET_SNAPSHOT", -1),
            datastore_id: int_or(e, "DATASTORE_ID", -1),
            datastore: text(e, "DATASTORE"),
            vms: ids(e, "VMS"),
            clones: ids(e, "CLONES"),
            app_clones: ids(e, "APP_CLONES"),
            template: crate::template::child_template(e, "TEMPLATE"),
            snapshots: e
                .child("SNAPSHOTS")
                .map(|s| {
                    s.children_named("SNAPSHOT")
                        .map(DiskSnapshot::from_element)
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

impl Image {
    pub fn state(&self) -> Option<ImageState> {
        ImageState::from_num(self.state.into())
    }

    pub fn image_type(&self) -> Option<ImageType> {
        ImageType::from_num(self.image_type.into())
    }

    /// STATE's name (`READY`), or the number.
    pub fn state_name(&self) -> String {
        self.state()
            .map_or_else(|| self.state.to_string(), |s| s.name().to_owned())
    }

    /// TYPE's name (`OS`, `DATABLOCK`), or the number.
    pub fn type_name(&self) -> String {
        self.image_type()
            .map_or_else(|| self.image_type.to_string(), |t| t.name().to_owned())
    }

    /// `oneimage list`'s STAT: `rdy`, `used`, `lock`, `err`, ...
    pub fn short_state(&self) -> &'static str {
        match self.state {
            0 => "init",
            1 => "rdy",
            2 | 8 => "used",
            3 => "disa",
            4 | 9 | 10 => "lock",
            5 => "err",
            6 => "clon",
            7 => "dele",
            _ => "unkn",
        }
    }

    /// `oneimage list`'s TYPE: `OS`, `CD`, `DB`, `KL`, `RD`, `CX`, `BK`, `FS`.
    pub fn short_type(&self) -> &'static str {
        match self.image_type {
            0 => "OS",
            1 => "CD",
            2 => "DB",
            3 => "KL",
            4 => "RD",
            5 => "CX",
            6 => "BK",
            7 => "FS",
            _ => "??",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_image() {
        let i = Image::from_xml(
            "<IMAGE><ID>2</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME>\
             <NAME>disk</NAME><PERMISSIONS><OWNER_U>1</OWNER_U></PERMISSIONS><TYPE>2</TYPE>\
             <PERSISTENT>1</PERSISTENT><SIZE>512</SIZE><STATE>1</STATE><DATASTORE_ID>1</DATASTORE_ID>\
             <DATASTORE>default</DATASTORE><VMS><ID>4</ID></VMS><TEMPLATE><DEV_PREFIX>vd</DEV_PREFIX>\
             </TEMPLATE><SNAPSHOTS><SNAPSHOT><ID>0</ID><NAME>s0</NAME></SNAPSHOT></SNAPSHOTS></IMAGE>",
        )
        .unwrap();
        assert_eq!(i.short_type(), "DB");
        assert_eq!(i.type_name(), "DATABLOCK");
        assert_eq!(i.short_state(), "rdy");
        assert!(i.persistent);
        assert_eq!(i.vms, [4]);
        assert_eq!(i.snapshots[0].name, "s0");
        assert_eq!(i.template.get("DEV_PREFIX"), Some("vd"));
    }
}
