//! `USER` (user.xsd) and `USER_POOL` (user_pool.xsd).

use super::quota::Quotas;
use super::{Object, check_root, flag, int, int_or, text};
use crate::OcaError;
use crate::dom::{Document, Element};
use crate::template::{Template, serde_template};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    /// Primary group.
    pub gid: i64,
    /// Every group the user is in, the primary one first.
    pub groups: Vec<i64>,
    pub gname: String,
    pub name: String,
    /// The stored password hash (as the server shows it).
    pub password: String,
    pub auth_driver: String,
    pub enabled: bool,
    pub login_tokens: Vec<LoginToken>,
    #[serde(with = "serde_template")]
    pub template: Template,
    /// The user's quotas (from `one.user.info`, or the pool's QUOTAS entry for the user).
    pub quotas: Quotas,
    /// The default user quotas, when the document carries them.
    pub default_quotas: Option<Quotas>,
}

/// A login token (`one.user.login`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginToken {
    pub token: String,
    /// Epoch seconds; -1 never expires.
    pub expiration_time: i64,
    /// The group the token acts in; -1 all the user's groups.
    pub egid: i64,
}

impl Object for User {
    const ROOT: &'static str = "USER";
    const POOL_ROOT: &'static str = "USER_POOL";
    const KIND: &'static str = "user";

    fn from_element(e: Element<'_>) -> User {
        User {
            id: int(e, "ID"),
            gid: int(e, "GID"),
            groups: super::ids(e, "GROUPS"),
            gname: text(e, "GNAME"),
            name: text(e, "NAME"),
            password: text(e, "PASSWORD"),
            auth_driver: text(e, "AUTH_DRIVER"),
            enabled: flag(e, "ENABLED"),
            login_tokens: e
                .children_named("LOGIN_TOKEN")
                .map(|t| LoginToken {
                    token: text(t, "TOKEN"),
                    expiration_time: int(t, "EXPIRATION_TIME"),
                    egid: int_or(t, "EGID", -1),
                })
                .collect(),
            template: crate::template::child_template(e, "TEMPLATE"),
            quotas: Quotas::from_parent(e),
            default_quotas: e.child("DEFAULT_USER_QUOTAS").map(Quotas::from_parent),
        }
    }

    fn id(&self) -> i64 {
        self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// The pool lists users and, separately, a QUOTAS entry per user: each user gets its
    /// quotas, and the pool's DEFAULT_USER_QUOTAS.
    fn pool_from_xml(xml: &str) -> Result<Vec<User>, OcaError> {
        let doc = Document::parse(xml)?;
        check_root(&doc, Self::POOL_ROOT)?;
        let root = doc.root();
        let defaults = root.child("DEFAULT_USER_QUOTAS").map(Quotas::from_parent);
        let quotas: Vec<(i64, Quotas)> = root
            .children_named("QUOTAS")
            .map(|q| (int(q, "ID"), Quotas::from_parent(q)))
            .collect();
        Ok(root
            .children_named("USER")
            .map(|u| {
                let mut user = User::from_element(u);
                if let Some((_, q)) = quotas.iter().find(|(id, _)| *id == user.id) {
                    user.quotas = q.clone();
                }
                user.default_quotas = defaults.clone();
                user
            })
            .collect())
    }
}

/// The default user or group quotas (`one.userquota.info`, `one.groupquota.info`).
pub fn default_quotas_from_xml(xml: &str, root: &str) -> Result<Quotas, OcaError> {
    let doc = Document::parse(xml)?;
    check_root(&doc, root)?;
    Ok(Quotas::from_parent(doc.root()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_gives_each_user_its_quotas() {
        let users = User::pool_from_xml(
            "<USER_POOL><USER><ID>0</ID><GID>0</GID><GROUPS><ID>0</ID></GROUPS><GNAME>oneadmin\
             </GNAME><NAME>oneadmin</NAME><AUTH_DRIVER>core</AUTH_DRIVER><ENABLED>1</ENABLED>\
             <TEMPLATE/></USER><USER><ID>2</ID><GID>1</GID><GROUPS><ID>1</ID><ID>100</ID></GROUPS>\
             <NAME>alice</NAME><ENABLED>0</ENABLED><LOGIN_TOKEN><TOKEN>abc</TOKEN>\
             <EXPIRATION_TIME>-1</EXPIRATION_TIME><EGID>-1</EGID></LOGIN_TOKEN></USER>\
             <QUOTAS><ID>2</ID><VM_QUOTA><VM><VMS>3</VMS><VMS_USED>1</VMS_USED></VM></VM_QUOTA>\
             </QUOTAS><DEFAULT_USER_QUOTAS><VM_QUOTA><VM><VMS>-2</VMS></VM></VM_QUOTA>\
             </DEFAULT_USER_QUOTAS></USER_POOL>",
        )
        .unwrap();
        assert_eq!(users.len(), 2);
        assert!(users[0].enabled && !users[1].enabled);
        assert_eq!(users[1].groups, [1, 100]);
        assert_eq!(users[1].login_tokens[0].token, "abc");
        assert_eq!(users[1].quotas.vm[0].get("VMS"), Some("3"));
        assert!(users[0].quotas.is_empty());
        assert_eq!(
            users[0].default_quotas.as_ref().unwrap().vm[0].get("VMS"),
            Some("-2")
        );
    }
}
