//! `one.host.*` and `one.hostpool.*`.

use super::{calls_struct, int, object_calls, string};
use crate::{Host, Object, OcaError, Template};

calls_struct!(
    /// Hosts: `one.host.*` and `one.hostpool.*`.
    HostCalls,
    host
);

object_calls!(HostCalls, "one.host", Host, [info, update, rename, delete]);

/// `one.host.status` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostStatus {
    /// Fully operational (0).
    Enabled,
    /// Monitored, but the scheduler does not deploy on it (1).
    Disabled,
    /// Neither monitored nor used (2).
    Offline,
}

impl HostCalls<'_> {
    /// `one.hostpool.info`.
    pub async fn list(&self) -> Result<Vec<Host>, OcaError> {
        Host::pool_from_xml(&self.list_xml().await?)
    }

    /// `one.hostpool.info` as XML text.
    pub async fn list_xml(&self) -> Result<String, OcaError> {
        self.c.call_string("one.hostpool.info", vec![]).await
    }

    /// `one.host.allocate`: a host with its information and virtualization drivers, in
    /// `cluster` (-1: the default cluster). Returns its id.
    pub async fn allocate(
        &self,
        name: &str,
        im_mad: &str,
        vm_mad: &str,
        cluster: i64,
    ) -> Result<i64, OcaError> {
        self.c
            .call_int(
                "one.host.allocate",
                vec![string(name), string(im_mad), string(vm_mad), int(cluster)],
            )
            .await
    }

    /// `one.host.status`: enable, disable or set offline.
    pub async fn status(&self, id: i64, status: HostStatus) -> Result<(), OcaError> {
        let n = match status {
            HostStatus::Enabled => 0,
            HostStatus::Disabled => 1,
            HostStatus::Offline => 2,
        };
        self.c
            .call_done("one.host.status", vec![int(id), int(n)])
            .await
    }

    /// `one.host.monitoring`: the host's monitoring records, oldest first.
    pub async fn monitoring(&self, id: i64) -> Result<Vec<Template>, OcaError> {
        let xml = self
            .c
            .call_string("one.host.monitoring", vec![int(id)])
            .await?;
        crate::objects::monitoring_from_xml(&xml)
    }
}
