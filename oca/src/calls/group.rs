//! `one.group.*`, `one.grouppool.info` and `one.groupquota.*`.

use super::{calls_struct, int, object_calls, string};
use crate::{Group, Object, OcaError, Quotas};

calls_struct!(
    /// Groups: `one.group.*`, `one.grouppool.info`, `one.groupquota.*`.
    GroupCalls,
    group
);

object_calls!(GroupCalls, "one.group", Group, [info, update, delete]);

impl GroupCalls<'_> {
    /// `one.grouppool.info`: every group, each with its quotas and the default quotas.
    pub async fn list(&self) -> Result<Vec<Group>, OcaError> {
        Group::pool_from_xml(&self.list_xml().await?)
    }

    /// `one.grouppool.info` as XML text.
    pub async fn list_xml(&self) -> Result<String, OcaError> {
        self.c.call_string("one.grouppool.info", vec![]).await
    }

    /// `one.group.allocate`. Returns the id.
    pub async fn allocate(&self, name: &str) -> Result<i64, OcaError> {
        self.c
            .call_int("one.group.allocate", vec![string(name)])
            .await
    }

    /// `one.group.addadmin`.
    pub async fn addadmin(&self, id: i64, uid: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.group.addadmin", vec![int(id), int(uid)])
            .await
    }

    /// `one.group.deladmin`.
    pub async fn deladmin(&self, id: i64, uid: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.group.deladmin", vec![int(id), int(uid)])
            .await
    }

    /// `one.group.quota`: sets the quotas given in `template`.
    pub async fn quota(&self, id: i64, template: &str) -> Result<(), OcaError> {
        self.c
            .call_done("one.group.quota", vec![int(id), string(template)])
            .await
    }

    /// `one.groupquota.info`: the default group quotas.
    pub async fn default_quotas(&self) -> Result<Quotas, OcaError> {
        let xml = self.c.call_string("one.groupquota.info", vec![]).await?;
        crate::objects::user::default_quotas_from_xml(&xml, "DEFAULT_GROUP_QUOTAS")
    }

    /// `one.groupquota.update`: sets default group quotas.
    pub async fn set_default_quotas(&self, template: &str) -> Result<(), OcaError> {
        self.c
            .call_done("one.groupquota.update", vec![string(template)])
            .await
    }
}
