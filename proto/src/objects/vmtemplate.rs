//! VMTEMPLATE documents (vmtemplate.xsd).

use super::Header;
use crate::template::Template;
use crate::xml::XmlWriter;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmTemplate {
    pub header: Header,
    pub regtime: i64,
    pub template: Template,
}

impl VmTemplate {
    /// The VMTEMPLATE document, elements in vmtemplate.xsd's order.
    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("VMTEMPLATE");
        self.header.write_ids_names(w);
        self.header.write_lock(w);
        self.header.perms.write_xml(w);
        w.num("REGTIME", self.regtime);
        self.template.write_xml(w, "TEMPLATE");
        w.close("VMTEMPLATE");
    }

    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::new();
        self.write_xml(&mut w);
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::xsd::check as xsd_check;
    use crate::objects::{Lock, Permissions};

    fn sample(locked: bool) -> VmTemplate {
        let t = Template::parse(
            "CPU = 1\nMEMORY = 512\nDISK = [ IMAGE_ID = 3 ]\nDISK = [ IMAGE = \"data\", IMAGE_UNAME = bob ]\n\
             NIC = [ NETWORK_ID = 0, MODEL = virtio ]\nCONTEXT = [ NETWORK = YES, SSH_PUBLIC_KEY = \"$USER[SSH_PUBLIC_KEY]\" ]\n\
             DESCRIPTION = \"a < b\"",
        )
        .expect("sample template parses");
        VmTemplate {
            header: Header {
                id: 4,
                uid: 0,
                gid: 0,
                uname: "oneadmin".into(),
                gname: "oneadmin".into(),
                name: "web".into(),
                perms: Permissions::from_umask(0o022),
                lock: locked.then_some(Lock {
                    level: 2,
                    owner: 0,
                    time: 1700000000,
                    req_id: 0,
                }),
            },
            regtime: 1700000000,
            template: t,
        }
    }

    #[test]
    fn vmtemplate_xml_has_xsd_order() {
        let xml = sample(true).to_xml();
        assert_eq!(
            xml,
            "<VMTEMPLATE><ID>4</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>\
             <GNAME>oneadmin</GNAME><NAME>web</NAME>\
             <LOCK><LOCKED>2</LOCKED><OWNER>0</OWNER><TIME>1700000000</TIME><REQ_ID>0</REQ_ID></LOCK>\
             <PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>1</OWNER_A>\
             <GROUP_U>1</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>1</GROUP_A>\
             <OTHER_U>1</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>1</OTHER_A></PERMISSIONS>\
             <REGTIME>1700000000</REGTIME><TEMPLATE>\
             <CONTEXT><NETWORK>YES</NETWORK><SSH_PUBLIC_KEY>$USER[SSH_PUBLIC_KEY]</SSH_PUBLIC_KEY></CONTEXT>\
             <CPU>1</CPU><DESCRIPTION>a &lt; b</DESCRIPTION>\
             <DISK><IMAGE_ID>3</IMAGE_ID></DISK><DISK><IMAGE>data</IMAGE><IMAGE_UNAME>bob</IMAGE_UNAME></DISK>\
             <MEMORY>512</MEMORY><NIC><MODEL>virtio</MODEL><NETWORK_ID>0</NETWORK_ID></NIC>\
             </TEMPLATE></VMTEMPLATE>"
        );
        xsd_check("vmtemplate-locked", &xml);
    }

    #[test]
    fn vmtemplate_without_lock_and_pool_validate() {
        let mut t = sample(false);
        let xml = t.to_xml();
        assert!(!xml.contains("<LOCK>"));
        xsd_check("vmtemplate", &xml);
        t.template = Template::new();
        let empty = t.to_xml();
        assert!(empty.contains("<TEMPLATE/>"));
        let pool = format!(
            "<VMTEMPLATE_POOL>{xml}{empty}{}</VMTEMPLATE_POOL>",
            sample(true).to_xml()
        );
        xsd_check("vmtemplate-pool", &pool);
        xsd_check(
            "vmtemplate-pool-empty",
            "<VMTEMPLATE_POOL></VMTEMPLATE_POOL>",
        );
    }
}
