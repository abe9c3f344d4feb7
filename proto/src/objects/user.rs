//! USER documents (user.xsd, user_pool.xsd).

use super::quota::Quotas;
use crate::template::Template;
use crate::xml::XmlWriter;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginToken {
    pub token: String,
    pub expiration_time: i64,
    /// Effective group for sessions using this token (-1: all the user's groups).
    pub egid: i64,
}

impl LoginToken {
    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("LOGIN_TOKEN")
            .text("TOKEN", &self.token)
            .num("EXPIRATION_TIME", self.expiration_time)
            .num("EGID", self.egid)
            .close("LOGIN_TOKEN");
    }

    /// Expired at `now` (-1 never expires).
    pub fn is_expired(&self, now: i64) -> bool {
        self.expiration_time != -1 && self.expiration_time <= now
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    /// Primary group.
    pub gid: i64,
    /// All groups, primary included.
    pub groups: Vec<i64>,
    pub gname: String,
    pub name: String,
    /// Salted slow hash (PHC string), never the plain password.
    pub password: String,
    pub auth_driver: String,
    pub enabled: bool,
    pub login_tokens: Vec<LoginToken>,
    pub template: Template,
    pub quotas: Quotas,
}

impl User {
    /// The elements every USER body starts with, up to TEMPLATE (user_pool.xsd's USER).
    fn write_base(&self, w: &mut XmlWriter) {
        w.num("ID", self.id).num("GID", self.gid);
        // The XSD needs at least one group; a user always has his primary one.
        let mut groups = self.groups.clone();
        if !groups.contains(&self.gid) {
            groups.push(self.gid);
        }
        groups.sort_unstable();
        w.open("GROUPS");
        for g in groups {
            w.num("ID", g);
        }
        w.close("GROUPS");
        w.text("GNAME", &self.gname)
            .text("NAME", &self.name)
            .text("PASSWORD", &self.password)
            .text("AUTH_DRIVER", &self.auth_driver)
            .flag("ENABLED", self.enabled);
        for t in &self.login_tokens {
            t.write_xml(w);
        }
        self.template.write_xml(w, "TEMPLATE");
    }

    /// The full document (`one.user.info`): base, quotas and the default user quotas.
    pub fn write_xml(&self, w: &mut XmlWriter, default_user_quotas: &Quotas) {
        w.open("USER");
        self.write_base(w);
        self.quotas.write_xml(w);
        default_user_quotas.write_default_xml(w, "DEFAULT_USER_QUOTAS");
        w.close("USER");
    }

    pub fn to_xml(&self, default_user_quotas: &Quotas) -> String {
        let mut w = XmlWriter::new();
        self.write_xml(&mut w, default_user_quotas);
        w.finish()
    }

    /// A USER_POOL entry: the short USER body followed by its QUOTAS element.
    pub fn write_pool_xml(&self, w: &mut XmlWriter) {
        w.open("USER");
        self.write_base(w);
        w.close("USER");
        self.quotas.write_pool_xml(w, self.id);
    }

    /// Whether the user belongs to `gid` (primary or secondary).
    pub fn in_group(&self, gid: i64) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// Writes a whole USER_POOL document: the users given (in order), then the default quotas.
pub fn write_pool<'a>(
    w: &mut XmlWriter,
    users: impl IntoIterator<Item = &'a User>,
    default_user_quotas: &Quotas,
) {
    w.open("USER_POOL");
    for u in users {
        u.write_pool_xml(w);
    }
    default_user_quotas.write_default_xml(w, "DEFAULT_USER_QUOTAS");
    w.close("USER_POOL");
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::objects::quota::QuotaKind;

    pub(crate) fn sample_user() -> User {
        let mut template = Template::parse(
            "SSH_PUBLIC_KEY = \"ssh-ed25519 AAAA alice@host\"\n\
             TOKEN_PASSWORD = abc\n\
             LABELS = [ A = 1, B = \"x<y\" ]",
        )
        .unwrap();
        template.set("DESCRIPTION", "Alice & co");
        let mut quotas = Quotas::default();
        quotas
            .set(
                &Template::parse(
                    "VM = [ VMS = 2, CPU = 1.5, MEMORY = 1024 ] \
                     NETWORK = [ ID = 0, LEASES = 5 ] \
                     IMAGE = [ ID = 3, RVMS = 1 ] \
                     DATASTORE = [ ID = 1, IMAGES = 4, SIZE = 10240 ]",
                )
                .unwrap(),
                false,
            )
            .unwrap();
        quotas.add(
            QuotaKind::Vm,
            None,
            &[("VMS", 1.0), ("CPU", 0.5), ("MEMORY", 512.0)],
        );
        User {
            id: 3,
            gid: 1,
            groups: vec![100, 1],
            gname: "users".into(),
            name: "alice".into(),
            password: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            auth_driver: "core".into(),
            enabled: true,
            login_tokens: vec![
                LoginToken {
                    token: "0123abcd".into(),
                    expiration_time: 1_900_000_000,
                    egid: -1,
                },
                LoginToken {
                    token: "feed".into(),
                    expiration_time: -1,
                    egid: 100,
                },
            ],
            template,
            quotas,
        }
    }

    pub(crate) fn sample_defaults() -> Quotas {
        let mut d = Quotas::default();
        d.set(
            &Template::parse("VM = [ VMS = 10 ] NETWORK = [ ID = 0, LEASES = 20 ]").unwrap(),
            true,
        )
        .unwrap();
        d
    }

    #[test]
    fn user_document() {
        let u = sample_user();
        let xml = u.to_xml(&sample_defaults());
        let expected = concat!(
            "<USER><ID>3</ID><GID>1</GID><GROUPS><ID>1</ID><ID>100</ID></GROUPS>",
            "<GNAME>users</GNAME><NAME>alice</NAME>",
            "<PASSWORD>$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA</PASSWORD>",
            "<AUTH_DRIVER>core</AUTH_DRIVER><ENABLED>1</ENABLED>",
            "<LOGIN_TOKEN><TOKEN>0123abcd</TOKEN><EXPIRATION_TIME>1900000000</EXPIRATION_TIME>",
            "<EGID>-1</EGID></LOGIN_TOKEN>",
            "<LOGIN_TOKEN><TOKEN>feed</TOKEN><EXPIRATION_TIME>-1</EXPIRATION_TIME>",
            "<EGID>100</EGID></LOGIN_TOKEN>",
            "<TEMPLATE><DESCRIPTION>Alice &amp; co</DESCRIPTION><LABELS><A>1</A><B>x&lt;y</B></LABELS>",
            "<SSH_PUBLIC_KEY>ssh-ed25519 AAAA alice@host</SSH_PUBLIC_KEY>",
            "<TOKEN_PASSWORD>abc</TOKEN_PASSWORD></TEMPLATE>",
            "<DATASTORE_QUOTA><DATASTORE><ID>1</ID><IMAGES>4</IMAGES><IMAGES_USED>0</IMAGES_USED>",
            "<SIZE>10240</SIZE><SIZE_USED>0</SIZE_USED></DATASTORE></DATASTORE_QUOTA>",
            "<NETWORK_QUOTA><NETWORK><ID>0</ID><LEASES>5</LEASES><LEASES_USED>0</LEASES_USED>",
            "</NETWORK></NETWORK_QUOTA>",
            "<VM_QUOTA><VM><CPU>1.50</CPU><CPU_USED>0.50</CPU_USED><MEMORY>1024</MEMORY>",
            "<MEMORY_USED>512</MEMORY_USED><PCI_DEV>-1</PCI_DEV><PCI_DEV_USED>0</PCI_DEV_USED>",
            "<PCI_NIC>-1</PCI_NIC><PCI_NIC_USED>0</PCI_NIC_USED><RUNNING_CPU>-1</RUNNING_CPU>",
            "<RUNNING_CPU_USED>0</RUNNING_CPU_USED><RUNNING_MEMORY>-1</RUNNING_MEMORY>",
            "<RUNNING_MEMORY_USED>0</RUNNING_MEMORY_USED><RUNNING_PCI_DEV>-1</RUNNING_PCI_DEV>",
            "<RUNNING_PCI_DEV_USED>0</RUNNING_PCI_DEV_USED><RUNNING_PCI_NIC>-1</RUNNING_PCI_NIC>",
            "<RUNNING_PCI_NIC_USED>0</RUNNING_PCI_NIC_USED><RUNNING_VMS>-1</RUNNING_VMS>",
            "<RUNNING_VMS_USED>0</RUNNING_VMS_USED><SYSTEM_DISK_SIZE>-1</SYSTEM_DISK_SIZE>",
            "<SYSTEM_DISK_SIZE_USED>0</SYSTEM_DISK_SIZE_USED><VMS>2</VMS><VMS_USED>1</VMS_USED>",
            "</VM></VM_QUOTA>",
            "<IMAGE_QUOTA><IMAGE><ID>3</ID><RVMS>1</RVMS><RVMS_USED>0</RVMS_USED></IMAGE></IMAGE_QUOTA>",
            "<DEFAULT_USER_QUOTAS><DATASTORE_QUOTA/>",
            "<NETWORK_QUOTA><NETWORK><ID>0</ID><LEASES>20</LEASES><LEASES_USED>0</LEASES_USED>",
            "</NETWORK></NETWORK_QUOTA>",
            "<VM_QUOTA><VM><CPU>-2</CPU><CPU_USED>0</CPU_USED><MEMORY>-2</MEMORY>",
            "<MEMORY_USED>0</MEMORY_USED><PCI_DEV>-2</PCI_DEV><PCI_DEV_USED>0</PCI_DEV_USED>",
            "<PCI_NIC>-2</PCI_NIC><PCI_NIC_USED>0</PCI_NIC_USED><RUNNING_CPU>-2</RUNNING_CPU>",
            "<RUNNING_CPU_USED>0</RUNNING_CPU_USED><RUNNING_MEMORY>-2</RUNNING_MEMORY>",
            "<RUNNING_MEMORY_USED>0</RUNNING_MEMORY_USED><RUNNING_PCI_DEV>-2</RUNNING_PCI_DEV>",
            "<RUNNING_PCI_DEV_USED>0</RUNNING_PCI_DEV_USED><RUNNING_PCI_NIC>-2</RUNNING_PCI_NIC>",
            "<RUNNING_PCI_NIC_USED>0</RUNNING_PCI_NIC_USED><RUNNING_VMS>-2</RUNNING_VMS>",
            "<RUNNING_VMS_USED>0</RUNNING_VMS_USED><SYSTEM_DISK_SIZE>-2</SYSTEM_DISK_SIZE>",
            "<SYSTEM_DISK_SIZE_USED>0</SYSTEM_DISK_SIZE_USED><VMS>10</VMS><VMS_USED>0</VMS_USED>",
            "</VM></VM_QUOTA><IMAGE_QUOTA/></DEFAULT_USER_QUOTAS></USER>",
        );
        assert_eq!(xml, expected);
    }

    #[test]
    fn pool_document() {
        let u = sample_user();
        let mut plain = u.clone();
        plain.id = 4;
        plain.name = "bob".into();
        plain.login_tokens.clear();
        plain.template = Template::new();
        plain.quotas = Quotas::default();
        plain.groups = vec![];
        let mut w = XmlWriter::new();
        write_pool(&mut w, [&u, &plain], &Quotas::default());
        let xml = w.finish();
        assert!(xml.starts_with("<USER_POOL><USER><ID>3</ID>"));
        // Short bodies carry no quotas: they follow in QUOTAS.
        assert!(xml.contains("<TOKEN_PASSWORD>abc</TOKEN_PASSWORD></TEMPLATE></USER><QUOTAS><ID>3</ID><DATASTORE_QUOTA>"));
        assert!(xml.contains(
            "<USER><ID>4</ID><GID>1</GID><GROUPS><ID>1</ID></GROUPS><GNAME>users</GNAME><NAME>bob</NAME>"
        ));
        assert!(xml.contains(
            "<TEMPLATE/></USER><QUOTAS><ID>4</ID><DATASTORE_QUOTA/><NETWORK_QUOTA/><VM_QUOTA/><IMAGE_QUOTA/></QUOTAS>"
        ));
        assert!(xml.ends_with(
            "<DEFAULT_USER_QUOTAS><DATASTORE_QUOTA/><NETWORK_QUOTA/><VM_QUOTA/><IMAGE_QUOTA/></DEFAULT_USER_QUOTAS></USER_POOL>"
        ));
        let mut w = XmlWriter::new();
        write_pool(&mut w, [], &Quotas::default());
        assert!(w.finish().starts_with("<USER_POOL><DEFAULT_USER_QUOTAS>"));
    }

    #[test]
    fn samples_validate_against_xsd() {
        use crate::objects::xsd::check as xsd_check;
        let u = sample_user();
        xsd_check("user", &u.to_xml(&sample_defaults()));
        xsd_check("user-no-quotas", &{
            let mut plain = u.clone();
            plain.quotas = Quotas::default();
            plain.login_tokens.clear();
            plain.template = Template::new();
            plain.to_xml(&Quotas::default())
        });
        let mut w = XmlWriter::new();
        let mut other = u.clone();
        other.id = 9;
        other.quotas = Quotas::default();
        write_pool(&mut w, [&u, &other], &sample_defaults());
        xsd_check("user_pool", &w.finish());
        let mut w = XmlWriter::new();
        write_pool(&mut w, [], &Quotas::default());
        xsd_check("user_pool-empty", &w.finish());
    }
}
