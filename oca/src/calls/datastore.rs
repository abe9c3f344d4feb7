//! `one.datastore.*` and `one.datastorepool.info`.

use super::{boolean, calls_struct, int, object_calls, string};
use crate::{Datastore, Object, OcaError};

calls_struct!(
    /// Datastores: `one.datastore.*` and `one.datastorepool.info`.
    DatastoreCalls,
    datastore
);

object_calls!(
    DatastoreCalls,
    "one.datastore",
    Datastore,
    [info, update, rename, chown, chmod, delete]
);

impl DatastoreCalls<'_> {
    /// `one.datastorepool.info`.
    pub async fn list(&self) -> Result<Vec<Datastore>, OcaError> {
        Datastore::pool_from_xml(&self.list_xml().await?)
    }

    /// `one.datastorepool.info` as XML text.
    pub async fn list_xml(&self) -> Result<String, OcaError> {
        self.c.call_string("one.datastorepool.info", vec![]).await
    }

    /// `one.datastore.allocate` in `cluster` (-1: the default). Returns its id.
    pub async fn allocate(&self, template: &str, cluster: i64) -> Result<i64, OcaError> {
        self.c
            .call_int(
                "one.datastore.allocate",
                vec![string(template), int(cluster)],
            )
            .await
    }

    /// `one.datastore.enable` (system datastores).
    pub async fn enable(&self, id: i64, enable: bool) -> Result<(), OcaError> {
        self.c
            .call_done("one.datastore.enable", vec![int(id), boolean(enable)])
            .await
    }
}
