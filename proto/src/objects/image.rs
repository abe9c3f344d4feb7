//! IMAGE documents (image.xsd).

use super::{Header, write_ids};
use crate::state::{DiskType, ImageState, ImageType};
use crate::template::Template;
use crate::xml::XmlWriter;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub header: Header,
    pub image_type: ImageType,
    pub disk_type: DiskType,
    pub persistent: bool,
    pub regtime: i64,
    pub modtime: i64,
    pub source: String,
    pub path: String,
    pub format: String,
    pub fs: String,
    pub size_mb: i64,
    pub state: ImageState,
    pub prev_state: ImageState,
    pub running_vms: i64,
    pub cloning_ops: i64,
    pub cloning_id: i64,
    pub target_snapshot: i64,
    pub datastore_id: i64,
    pub datastore: String,
    pub vms: Vec<i64>,
    pub clones: Vec<i64>,
    pub app_clones: Vec<i64>,
    pub template: Template,
    /// Image snapshots: the internal snapshots of a qcow2 image.
    #[serde(default)]
    pub snapshots: ImageSnapshots,
    /// The datastore operation this image waits for while LOCKED (not in the document).
    /// Stored with the LOCKED state, so a stop of oned in the middle is seen at the next
    /// start: the image goes to ERROR and what the operation left is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<crate::ds::DsRequest>,
}

/// The SNAPSHOTS element of an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSnapshots {
    /// "NO" (DENY), "YES", "MIXED", "FORMAT" or "LINEAR"; images default to "NO".
    pub allow_orphans: String,
    pub current_base: i64,
    pub next_snapshot: i64,
    pub list: Vec<ImageSnapshot>,
}

impl Default for ImageSnapshots {
    fn default() -> Self {
        ImageSnapshots {
            allow_orphans: "NO".into(),
            current_base: -1,
            next_snapshot: 0,
            list: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSnapshot {
    pub id: i64,
    pub name: Option<String>,
    pub date: i64,
    pub parent: i64,
    pub size_mb: i64,
    pub active: bool,
    /// Comma-separated child ids, as OpenNebula stores them.
    pub children: String,
}

impl ImageSnapshots {
    pub fn get(&self, id: i64) -> Option<&ImageSnapshot> {
        self.list.iter().find(|s| s.id == id)
    }

    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("SNAPSHOTS")
            .text("ALLOW_ORPHANS", &self.allow_orphans)
            .num("CURRENT_BASE", self.current_base)
            .num("NEXT_SNAPSHOT", self.next_snapshot);
        for s in &self.list {
            // Sub-elements in the XSD's (alphabetical) order.
            w.open("SNAPSHOT");
            if !s.children.is_empty() {
                w.text("CHILDREN", &s.children);
            }
            if s.active {
                w.text("ACTIVE", "YES");
            }
            w.num("DATE", s.date).num("ID", s.id);
            if let Some(n) = &s.name {
                w.text("NAME", n);
            }
            w.num("PARENT", s.parent).num("SIZE", s.size_mb);
            w.close("SNAPSHOT");
        }
        w.close("SNAPSHOTS");
    }
}

impl Image {
    /// LOCKED, LOCKED_USED or LOCKED_USED_PERS: a datastore operation is (or would be) running.
    pub fn is_locked(&self) -> bool {
        matches!(
            self.state,
            ImageState::Locked | ImageState::LockedUsed | ImageState::LockedUsedPers
        )
    }

    /// Changes the state, remembering the previous one (PREV_STATE).
    pub fn set_state(&mut self, state: ImageState) {
        if state != self.state {
            self.prev_state = self.state;
            self.state = state;
        }
    }

    /// The full IMAGE document, elements in image.xsd's order.
    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("IMAGE");
        self.header.write_ids_names(w);
        self.header.write_lock(w);
        self.header.perms.write_xml(w);
        w.num("TYPE", self.image_type.num())
            .num("DISK_TYPE", self.disk_type.num())
            .flag("PERSISTENT", self.persistent)
            .num("REGTIME", self.regtime)
            .num("MODTIME", self.modtime)
            .text("SOURCE", &self.source)
            .text("PATH", &self.path)
            .text("FORMAT", &self.format)
            .text("FS", &self.fs)
            .num("SIZE", self.size_mb)
            .num("STATE", self.state.num())
            .num("PREV_STATE", self.prev_state.num())
            .num("RUNNING_VMS", self.running_vms)
            .num("CLONING_OPS", self.cloning_ops)
            .num("CLONING_ID", self.cloning_id)
            .num("TARGET_SNAPSHOT", self.target_snapshot)
            .num("DATASTORE_ID", self.datastore_id)
            .text("DATASTORE", &self.datastore);
        write_ids(w, "VMS", &self.vms);
        write_ids(w, "CLONES", &self.clones);
        write_ids(w, "APP_CLONES", &self.app_clones);
        self.template.write_xml(w, "TEMPLATE");
        self.snapshots.write_xml(w);
        // Backups are not supported yet: no increments, no disk ids (as oned writes them empty).
        w.empty("BACKUP_INCREMENTS");
        w.empty("BACKUP_DISK_IDS");
        w.close("IMAGE");
    }

    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::new();
        self.write_xml(&mut w);
        w.finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::objects::xsd::check as xsd_check;
    use crate::objects::{Lock, Permissions};
    use crate::template::{AttrValue, Vector};

    pub(crate) fn sample(locked: bool) -> Image {
        let mut template = Template::new();
        template.set("DEV_PREFIX", "vd");
        template.set("DESCRIPTION", "Debian <12> & co");
        let mut v = Vector::new();
        v.set("KEY", "value");
        v.set("ANOTHER", "x");
        template.push("LABELS", AttrValue::Vector(v));
        Image {
            header: Header {
                id: 7,
                uid: 2,
                gid: 1,
                uname: "alice".into(),
                gname: "users".into(),
                name: "debian".into(),
                perms: Permissions::default(),
                lock: locked.then_some(Lock {
                    level: 1,
                    owner: 2,
                    time: 1700000000,
                    req_id: 0,
                }),
            },
            image_type: ImageType::Os,
            disk_type: DiskType::File,
            persistent: true,
            regtime: 1700000000,
            modtime: 1700000001,
            source: "/var/lib/one/datastores/1/0123456789abcdef0123456789abcdef".into(),
            path: "".into(),
            format: "qcow2".into(),
            fs: "".into(),
            size_mb: 2048,
            state: ImageState::UsedPers,
            prev_state: ImageState::Ready,
            running_vms: 1,
            cloning_ops: 0,
            cloning_id: -1,
            target_snapshot: -1,
            datastore_id: 1,
            datastore: "default".into(),
            vms: vec![3],
            clones: vec![8, 9],
            app_clones: vec![],
            template,
            snapshots: ImageSnapshots::default(),
            op: None,
        }
    }

    #[test]
    fn image_xml_has_xsd_order_and_optional_parts() {
        let xml = sample(true).to_xml();
        assert_eq!(
            xml,
            "<IMAGE><ID>7</ID><UID>2</UID><GID>1</GID><UNAME>alice</UNAME><GNAME>users</GNAME>\
             <NAME>debian</NAME>\
             <LOCK><LOCKED>1</LOCKED><OWNER>2</OWNER><TIME>1700000000</TIME><REQ_ID>0</REQ_ID></LOCK>\
             <PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A>\
             <GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A>\
             <OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>\
             <TYPE>0</TYPE><DISK_TYPE>0</DISK_TYPE><PERSISTENT>1</PERSISTENT>\
             <REGTIME>1700000000</REGTIME><MODTIME>1700000001</MODTIME>\
             <SOURCE>/var/lib/one/datastores/1/0123456789abcdef0123456789abcdef</SOURCE>\
             <PATH></PATH><FORMAT>qcow2</FORMAT><FS></FS><SIZE>2048</SIZE>\
             <STATE>8</STATE><PREV_STATE>1</PREV_STATE><RUNNING_VMS>1</RUNNING_VMS>\
             <CLONING_OPS>0</CLONING_OPS><CLONING_ID>-1</CLONING_ID>\
             <TARGET_SNAPSHOT>-1</TARGET_SNAPSHOT><DATASTORE_ID>1</DATASTORE_ID>\
             <DATASTORE>default</DATASTORE><VMS><ID>3</ID></VMS>\
             <CLONES><ID>8</ID><ID>9</ID></CLONES><APP_CLONES/>\
             <TEMPLATE><DESCRIPTION>Debian &lt;12&gt; &amp; co</DESCRIPTION>\
             <DEV_PREFIX>vd</DEV_PREFIX><LABELS><ANOTHER>x</ANOTHER><KEY>value</KEY></LABELS>\
             </TEMPLATE>\
             <SNAPSHOTS><ALLOW_ORPHANS>NO</ALLOW_ORPHANS><CURRENT_BASE>-1</CURRENT_BASE>\
             <NEXT_SNAPSHOT>0</NEXT_SNAPSHOT></SNAPSHOTS>\
             <BACKUP_INCREMENTS/><BACKUP_DISK_IDS/></IMAGE>"
        );
        xsd_check("image-locked", &xml);
    }

    #[test]
    fn image_without_lock_and_with_snapshots_validates() {
        let mut img = sample(false);
        img.template = Template::new();
        img.snapshots = ImageSnapshots {
            allow_orphans: "NO".into(),
            current_base: -1,
            next_snapshot: 2,
            list: vec![
                ImageSnapshot {
                    id: 0,
                    name: Some("base".into()),
                    date: 1700000002,
                    parent: -1,
                    size_mb: 10,
                    active: false,
                    children: "1".into(),
                },
                ImageSnapshot {
                    id: 1,
                    name: None,
                    date: 1700000003,
                    parent: 0,
                    size_mb: 11,
                    active: true,
                    children: String::new(),
                },
            ],
        };
        let xml = img.to_xml();
        assert!(!xml.contains("<LOCK>"));
        assert!(xml.contains("<TEMPLATE/>"));
        assert!(xml.contains(
            "<SNAPSHOT><CHILDREN>1</CHILDREN><DATE>1700000002</DATE><ID>0</ID>\
             <NAME>base</NAME><PARENT>-1</PARENT><SIZE>10</SIZE></SNAPSHOT>\
             <SNAPSHOT><ACTIVE>YES</ACTIVE><DATE>1700000003</DATE><ID>1</ID>\
             <PARENT>0</PARENT><SIZE>11</SIZE></SNAPSHOT>"
        ));
        xsd_check("image-snapshots", &xml);
        let pool = format!("<IMAGE_POOL>{}{}</IMAGE_POOL>", xml, sample(true).to_xml());
        xsd_check("image-pool", &pool);
        xsd_check("image-pool-empty", "<IMAGE_POOL></IMAGE_POOL>");
    }

    #[test]
    fn state_changes_keep_the_previous_state() {
        let mut img = sample(false);
        img.state = ImageState::Ready;
        img.set_state(ImageState::Disabled);
        assert_eq!(img.prev_state, ImageState::Ready);
        img.set_state(ImageState::Disabled);
        assert_eq!(img.prev_state, ImageState::Ready);
        assert!(!img.is_locked());
        img.set_state(ImageState::LockedUsed);
        assert!(img.is_locked());
    }
}
