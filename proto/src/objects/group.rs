//! GROUP documents (group.xsd, group_pool.xsd).

use super::quota::Quotas;
use super::write_ids;
use crate::template::Template;
use crate::xml::XmlWriter;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: i64,
    pub name: String,
    pub template: Template,
    pub users: Vec<i64>,
    pub admins: Vec<i64>,
    pub quotas: Quotas,
}

impl Group {
    /// ID, NAME, TEMPLATE, USERS, ADMINS: the short body of GROUP_POOL entries.
    fn write_base(&self, w: &mut XmlWriter) {
        w.num("ID", self.id).text("NAME", &self.name);
        self.template.write_xml(w, "TEMPLATE");
        let mut users = self.users.clone();
        users.sort_unstable();
        users.dedup();
        write_ids(w, "USERS", &users);
        let mut admins = self.admins.clone();
        admins.sort_unstable();
        admins.dedup();
        write_ids(w, "ADMINS", &admins);
    }

    /// VLAN_RULES (OpenNebula 7's `one.group.vlan`): always the group id, no rules here.
    fn write_vlan_rules(&self, w: &mut XmlWriter) {
        w.open("VLAN_RULES").num("ID", self.id).close("VLAN_RULES");
    }

    /// The full document (`one.group.info`).
    pub fn write_xml(&self, w: &mut XmlWriter, default_group_quotas: &Quotas) {
        w.open("GROUP");
        self.write_base(w);
        self.quotas.write_xml(w);
        self.write_vlan_rules(w);
        default_group_quotas.write_default_xml(w, "DEFAULT_GROUP_QUOTAS");
        w.close("GROUP");
    }

    pub fn to_xml(&self, default_group_quotas: &Quotas) -> String {
        let mut w = XmlWriter::new();
        self.write_xml(&mut w, default_group_quotas);
        w.finish()
    }

    /// A GROUP_POOL entry: short GROUP body, its QUOTAS, its VLAN_RULES.
    pub fn write_pool_xml(&self, w: &mut XmlWriter) {
        w.open("GROUP");
        self.write_base(w);
        w.close("GROUP");
        self.quotas.write_pool_xml(w, self.id);
        self.write_vlan_rules(w);
    }
}

/// Writes a whole GROUP_POOL document: the groups given (in order), then the default quotas.
pub fn write_pool<'a>(
    w: &mut XmlWriter,
    groups: impl IntoIterator<Item = &'a Group>,
    default_group_quotas: &Quotas,
) {
    w.open("GROUP_POOL");
    for g in groups {
        g.write_pool_xml(w);
    }
    default_group_quotas.write_default_xml(w, "DEFAULT_GROUP_QUOTAS");
    w.close("GROUP_POOL");
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::objects::quota::QuotaKind;

    pub(crate) fn sample_group() -> Group {
        let mut quotas = Quotas::default();
        quotas
            .set(
                &Template::parse(
                    "VM = [ VMS = 4, CPU = -2 ] NETWORK = [ ID = 2, LEASES = 10 ] \
                     DATASTORE = [ ID = 1, SIZE = 2048 ] IMAGE = [ ID = 7, RVMS = 3 ]",
                )
                .unwrap(),
                false,
            )
            .unwrap();
        quotas.add(QuotaKind::Network, Some(2), &[("LEASES", 2.0)]);
        Group {
            id: 100,
            name: "devs".into(),
            template: Template::parse("SUNSTONE = [ VIEWS = \"cloud\" ]\nDESCRIPTION = \"a & b\"")
                .unwrap(),
            users: vec![5, 3],
            admins: vec![3],
            quotas,
        }
    }

    pub(crate) fn sample_group_defaults() -> Quotas {
        let mut d = Quotas::default();
        d.set(
            &Template::parse("VM = [ VMS = 50, CPU = 0.5 ]").unwrap(),
            true,
        )
        .unwrap();
        d
    }

    #[test]
    fn group_document() {
        let g = sample_group();
        let xml = g.to_xml(&Quotas::default());
        assert!(xml.starts_with(concat!(
            "<GROUP><ID>100</ID><NAME>devs</NAME><TEMPLATE><DESCRIPTION>a &amp; b</DESCRIPTION>",
            "<SUNSTONE><VIEWS>cloud</VIEWS></SUNSTONE></TEMPLATE>",
            "<USERS><ID>3</ID><ID>5</ID></USERS><ADMINS><ID>3</ID></ADMINS>",
            "<DATASTORE_QUOTA><DATASTORE><ID>1</ID><IMAGES>-1</IMAGES><IMAGES_USED>0</IMAGES_USED>",
            "<SIZE>2048</SIZE><SIZE_USED>0</SIZE_USED></DATASTORE></DATASTORE_QUOTA>",
            "<NETWORK_QUOTA><NETWORK><ID>2</ID><LEASES>10</LEASES><LEASES_USED>2</LEASES_USED>",
            "</NETWORK></NETWORK_QUOTA><VM_QUOTA><VM><CPU>-2</CPU><CPU_USED>0</CPU_USED>",
        )));
        assert!(xml.ends_with(concat!(
            "<VMS>4</VMS><VMS_USED>0</VMS_USED></VM></VM_QUOTA>",
            "<IMAGE_QUOTA><IMAGE><ID>7</ID><RVMS>3</RVMS><RVMS_USED>0</RVMS_USED></IMAGE></IMAGE_QUOTA>",
            "<VLAN_RULES><ID>100</ID></VLAN_RULES>",
            "<DEFAULT_GROUP_QUOTAS><DATASTORE_QUOTA/><NETWORK_QUOTA/><VM_QUOTA/><IMAGE_QUOTA/>",
            "</DEFAULT_GROUP_QUOTAS></GROUP>",
        )));
        let empty = Group {
            id: 1,
            name: "users".into(),
            template: Template::new(),
            users: vec![],
            admins: vec![],
            quotas: Quotas::default(),
        };
        assert_eq!(
            empty.to_xml(&Quotas::default()),
            concat!(
                "<GROUP><ID>1</ID><NAME>users</NAME><TEMPLATE/><USERS/><ADMINS/>",
                "<DATASTORE_QUOTA/><NETWORK_QUOTA/><VM_QUOTA/><IMAGE_QUOTA/>",
                "<VLAN_RULES><ID>1</ID></VLAN_RULES>",
                "<DEFAULT_GROUP_QUOTAS><DATASTORE_QUOTA/><NETWORK_QUOTA/><VM_QUOTA/><IMAGE_QUOTA/>",
                "</DEFAULT_GROUP_QUOTAS></GROUP>",
            )
        );
    }

    #[test]
    fn pool_document() {
        let g = sample_group();
        let mut w = XmlWriter::new();
        write_pool(&mut w, [&g], &sample_group_defaults());
        let xml = w.finish();
        assert!(xml.starts_with("<GROUP_POOL><GROUP><ID>100</ID>"));
        assert!(
            xml.contains(
                "<ADMINS><ID>3</ID></ADMINS></GROUP><QUOTAS><ID>100</ID><DATASTORE_QUOTA>"
            )
        );
        assert!(xml.contains(
            "</IMAGE_QUOTA></QUOTAS><VLAN_RULES><ID>100</ID></VLAN_RULES><DEFAULT_GROUP_QUOTAS>"
        ));
        assert!(xml.contains("<VM_QUOTA><VM><CPU>0.50</CPU><CPU_USED>0</CPU_USED>"));
        assert!(xml.ends_with("</DEFAULT_GROUP_QUOTAS></GROUP_POOL>"));
    }

    #[test]
    fn samples_validate_against_xsd() {
        use crate::objects::xsd::check as xsd_check;
        let g = sample_group();
        xsd_check("group", &g.to_xml(&sample_group_defaults()));
        let mut plain = g.clone();
        plain.id = 1;
        plain.users.clear();
        plain.admins.clear();
        plain.template = Template::new();
        plain.quotas = Quotas::default();
        xsd_check("group-plain", &plain.to_xml(&Quotas::default()));
        let mut w = XmlWriter::new();
        write_pool(&mut w, [&plain, &g], &sample_group_defaults());
        xsd_check("group_pool", &w.finish());
        let mut w = XmlWriter::new();
        write_pool(&mut w, [], &Quotas::default());
        xsd_check("group_pool-empty", &w.finish());
    }
}
