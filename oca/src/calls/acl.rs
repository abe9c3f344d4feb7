//! `one.acl.*`.

use super::{calls_struct, int, string};
use crate::{AclRule, Object, OcaError};

calls_struct!(
    /// ACL rules: `one.acl.*`.
    AclCalls,
    acl
);

impl AclCalls<'_> {
    /// `one.acl.info`: every rule.
    pub async fn list(&self) -> Result<Vec<AclRule>, OcaError> {
        AclRule::pool_from_xml(&self.list_xml().await?)
    }

    /// `one.acl.info` as XML text.
    pub async fn list_xml(&self) -> Result<String, OcaError> {
        self.c.call_string("one.acl.info", vec![]).await
    }

    /// `one.acl.addrule` with the four hex words. Returns the rule id.
    pub async fn add_hex(
        &self,
        user: &str,
        resource: &str,
        rights: &str,
        zone: Option<&str>,
    ) -> Result<i64, OcaError> {
        let mut params = vec![string(user), string(resource), string(rights)];
        if let Some(z) = zone {
            params.push(string(z));
        }
        self.c.call_int("one.acl.addrule", params).await
    }

    /// `one.acl.addrule` from OpenNebula's rule string (`@1 VM+IMAGE/* CREATE [*]`), encoded
    /// here as the OCAs do. Returns the rule id.
    pub async fn add(&self, rule: &str) -> Result<i64, OcaError> {
        let parsed = one_proto::acl::AclRule::parse_rule_string(rule)
            .map_err(|e| OcaError::Invalid(format!("ACL rule {rule:?}: {e}")))?;
        let [user, resource, rights, zone] = parsed.to_hex();
        self.add_hex(&user, &resource, &rights, Some(&zone)).await
    }

    /// `one.acl.delrule`.
    pub async fn delete(&self, id: i64) -> Result<(), OcaError> {
        self.c.call_done("one.acl.delrule", vec![int(id)]).await
    }
}
