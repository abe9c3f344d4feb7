//! `one.vn.*` and `one.vnpool.info`: virtual networks, address ranges, leases.

use super::{PoolFilter, PoolRange, boolean, calls_struct, int, object_calls, string};
use crate::{Object, OcaError, VirtualNetwork};

calls_struct!(
    /// Virtual networks: `one.vn.*` and `one.vnpool.info`.
    VnetCalls,
    vnet
);

object_calls!(
    VnetCalls,
    "one.vn",
    VirtualNetwork,
    [info, update, rename, chown, chmod, lock, delete]
);

impl VnetCalls<'_> {
    /// `one.vnpool.info`.
    pub async fn list(
        &self,
        filter: PoolFilter,
        range: PoolRange,
    ) -> Result<Vec<VirtualNetwork>, OcaError> {
        VirtualNetwork::pool_from_xml(&self.list_xml(filter, range).await?)
    }

    /// `one.vnpool.info` as XML text.
    pub async fn list_xml(&self, filter: PoolFilter, range: PoolRange) -> Result<String, OcaError> {
        self.c
            .call_string(
                "one.vnpool.info",
                vec![int(filter.flag()), int(range.start), int(range.end)],
            )
            .await
    }

    /// `one.vn.allocate` in `cluster` (-1: the default). Returns its id.
    pub async fn allocate(&self, template: &str, cluster: i64) -> Result<i64, OcaError> {
        self.c
            .call_int("one.vn.allocate", vec![string(template), int(cluster)])
            .await
    }

    /// `one.vn.add_ar`: adds the range described by `template` (`AR=[TYPE=IP4, IP=..., SIZE=...]`).
    pub async fn add_ar(&self, id: i64, template: &str) -> Result<(), OcaError> {
        self.c
            .call_done("one.vn.add_ar", vec![int(id), string(template)])
            .await
    }

    /// `one.vn.rm_ar`; `force` removes it even with leases in use.
    pub async fn rm_ar(&self, id: i64, ar_id: i64, force: bool) -> Result<(), OcaError> {
        self.c
            .call_done("one.vn.rm_ar", vec![int(id), int(ar_id), boolean(force)])
            .await
    }

    /// `one.vn.update_ar` (`AR=[AR_ID=n, ...]`).
    pub async fn update_ar(&self, id: i64, template: &str) -> Result<(), OcaError> {
        self.c
            .call_done("one.vn.update_ar", vec![int(id), string(template)])
            .await
    }

    /// `one.vn.free_ar`: releases every lease of a reservation's range.
    pub async fn free_ar(&self, id: i64, ar_id: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.vn.free_ar", vec![int(id), int(ar_id)])
            .await
    }

    /// `one.vn.reserve`: a reservation from the network (`SIZE`, `NAME` or `NETWORK_ID`,
    /// optional `AR_ID`, `IP`, `MAC`). Returns the reservation's network id.
    pub async fn reserve(&self, id: i64, template: &str) -> Result<i64, OcaError> {
        self.c
            .call_int("one.vn.reserve", vec![int(id), string(template)])
            .await
    }

    /// `one.vn.hold`: puts a lease on hold (`LEASES=[IP=...]` or MAC).
    pub async fn hold(&self, id: i64, template: &str) -> Result<(), OcaError> {
        self.c
            .call_done("one.vn.hold", vec![int(id), string(template)])
            .await
    }

    /// `one.vn.release`: frees a held lease.
    pub async fn release(&self, id: i64, template: &str) -> Result<(), OcaError> {
        self.c
            .call_done("one.vn.release", vec![int(id), string(template)])
            .await
    }
}
