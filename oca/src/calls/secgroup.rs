//! `one.secgroup.*` and `one.secgrouppool.info`.

use super::{PoolFilter, PoolRange, boolean, calls_struct, int, object_calls, string};
use crate::objects::secgroup::SecurityGroup;
use crate::{Object, OcaError};

calls_struct!(
    /// Security groups: `one.secgroup.*` and `one.secgrouppool.info`.
    SecGroupCalls,
    secgroup
);

object_calls!(
    SecGroupCalls,
    "one.secgroup",
    SecurityGroup,
    [info, update, rename, chown, chmod, delete]
);

impl SecGroupCalls<'_> {
    /// `one.secgrouppool.info`.
    pub async fn list(
        &self,
        filter: PoolFilter,
        range: PoolRange,
    ) -> Result<Vec<SecurityGroup>, OcaError> {
        SecurityGroup::pool_from_xml(&self.list_xml(filter, range).await?)
    }

    /// `one.secgrouppool.info` as XML text.
    pub async fn list_xml(&self, filter: PoolFilter, range: PoolRange) -> Result<String, OcaError> {
        self.c
            .call_string(
                "one.secgrouppool.info",
                vec![int(filter.flag()), int(range.start), int(range.end)],
            )
            .await
    }

    /// `one.secgroup.allocate`. Returns its id.
    pub async fn allocate(&self, template: &str) -> Result<i64, OcaError> {
        self.c
            .call_int("one.secgroup.allocate", vec![string(template)])
            .await
    }

    /// `one.secgroup.clone`. Returns the new group's id.
    pub async fn clone_secgroup(&self, id: i64, name: &str) -> Result<i64, OcaError> {
        self.c
            .call_int("one.secgroup.clone", vec![int(id), string(name)])
            .await
    }

    /// `one.secgroup.commit`: takes the rules to the VMs using the group again (all of them,
    /// or with `recovery` only those whose update failed or is pending).
    pub async fn commit(&self, id: i64, recovery: bool) -> Result<(), OcaError> {
        self.c
            .call_done("one.secgroup.commit", vec![int(id), boolean(recovery)])
            .await
    }
}
