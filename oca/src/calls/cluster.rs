//! `one.cluster.*` and `one.clusterpool.info`.

use super::{calls_struct, int, object_calls, string};
use crate::{Cluster, Object, OcaError};

calls_struct!(
    /// Clusters: `one.cluster.*` and `one.clusterpool.info`.
    ClusterCalls,
    cluster
);

object_calls!(
    ClusterCalls,
    "one.cluster",
    Cluster,
    [info, update, rename, delete]
);

/// What a cluster holds (`one.cluster.add*` / `del*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterMember {
    Host,
    Datastore,
    Vnet,
}

impl ClusterMember {
    fn word(self) -> &'static str {
        match self {
            ClusterMember::Host => "host",
            ClusterMember::Datastore => "datastore",
            ClusterMember::Vnet => "vnet",
        }
    }
}

impl ClusterCalls<'_> {
    /// `one.clusterpool.info`.
    pub async fn list(&self) -> Result<Vec<Cluster>, OcaError> {
        Cluster::pool_from_xml(&self.list_xml().await?)
    }

    /// `one.clusterpool.info` as XML text.
    pub async fn list_xml(&self) -> Result<String, OcaError> {
        self.c.call_string("one.clusterpool.info", vec![]).await
    }

    /// `one.cluster.allocate`. Returns its id.
    pub async fn allocate(&self, name: &str) -> Result<i64, OcaError> {
        self.c
            .call_int("one.cluster.allocate", vec![string(name)])
            .await
    }

    /// `one.cluster.addhost` / `adddatastore` / `addvnet`.
    pub async fn add(
        &self,
        id: i64,
        member: ClusterMember,
        member_id: i64,
    ) -> Result<(), OcaError> {
        let method = format!("one.cluster.add{}", member.word());
        self.c
            .call_done(&method, vec![int(id), int(member_id)])
            .await
    }

    /// `one.cluster.delhost` / `deldatastore` / `delvnet`.
    pub async fn remove(
        &self,
        id: i64,
        member: ClusterMember,
        member_id: i64,
    ) -> Result<(), OcaError> {
        let method = format!("one.cluster.del{}", member.word());
        self.c
            .call_done(&method, vec![int(id), int(member_id)])
            .await
    }
}
