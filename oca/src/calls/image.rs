//! `one.image.*` and `one.imagepool.info`.

use super::{PoolFilter, PoolRange, boolean, calls_struct, int, object_calls, string};
use crate::{Image, Object, OcaError};

calls_struct!(
    /// Images: `one.image.*` and `one.imagepool.info`.
    ImageCalls,
    image
);

object_calls!(
    ImageCalls,
    "one.image",
    Image,
    [info, update, rename, chown, chmod, lock, delete]
);

impl ImageCalls<'_> {
    /// `one.imagepool.info`.
    pub async fn list(&self, filter: PoolFilter, range: PoolRange) -> Result<Vec<Image>, OcaError> {
        Image::pool_from_xml(&self.list_xml(filter, range).await?)
    }

    /// `one.imagepool.info` as XML text.
    pub async fn list_xml(&self, filter: PoolFilter, range: PoolRange) -> Result<String, OcaError> {
        self.c
            .call_string(
                "one.imagepool.info",
                vec![int(filter.flag()), int(range.start), int(range.end)],
            )
            .await
    }

    /// `one.image.allocate` in `datastore` from a template (NAME, PATH or SOURCE, TYPE,
    /// SIZE, ...). Returns its id.
    pub async fn allocate(&self, template: &str, datastore: i64) -> Result<i64, OcaError> {
        self.c
            .call_int("one.image.allocate", vec![string(template), int(datastore)])
            .await
    }

    /// `one.image.clone` as `name` (into `datastore`, -1 the same). Returns the new id.
    pub async fn clone_image(&self, id: i64, name: &str, datastore: i64) -> Result<i64, OcaError> {
        self.c
            .call_int(
                "one.image.clone",
                vec![int(id), string(name), int(datastore)],
            )
            .await
    }

    /// `one.image.delete` with OpenNebula's force flag: removes the image even when it is
    /// locked by a driver operation (its files may stay in the datastore).
    pub async fn delete_forced(&self, id: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.image.delete", vec![int(id), boolean(true)])
            .await
    }

    /// `one.image.enable`: READY (true) or DISABLED.
    pub async fn enable(&self, id: i64, enable: bool) -> Result<(), OcaError> {
        self.c
            .call_done("one.image.enable", vec![int(id), boolean(enable)])
            .await
    }

    /// `one.image.persistent`.
    pub async fn persistent(&self, id: i64, persistent: bool) -> Result<(), OcaError> {
        self.c
            .call_done("one.image.persistent", vec![int(id), boolean(persistent)])
            .await
    }

    /// `one.image.chtype` (OS, CDROM, DATABLOCK, KERNEL, RAMDISK, CONTEXT).
    pub async fn chtype(&self, id: i64, image_type: &str) -> Result<(), OcaError> {
        self.c
            .call_done("one.image.chtype", vec![int(id), string(image_type)])
            .await
    }

    /// `one.image.snapshotdelete`.
    pub async fn snapshot_delete(&self, id: i64, snapshot_id: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.image.snapshotdelete", vec![int(id), int(snapshot_id)])
            .await
    }

    /// `one.image.snapshotrevert`.
    pub async fn snapshot_revert(&self, id: i64, snapshot_id: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.image.snapshotrevert", vec![int(id), int(snapshot_id)])
            .await
    }

    /// `one.image.snapshotflatten`.
    pub async fn snapshot_flatten(&self, id: i64, snapshot_id: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.image.snapshotflatten", vec![int(id), int(snapshot_id)])
            .await
    }
}
