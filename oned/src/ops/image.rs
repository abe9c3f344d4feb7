//! Image holds: a VM disk or a clone takes an image (USED, USED_PERS, CLONE, LOCKED_USED...)
//! and gives it back here; and what an image charges to its owner's DATASTORE quota.

use crate::ops::quota::QuotaUsage;
use crate::store::Txn;
use one_proto::objects::image::Image;
use one_proto::state::{ImageState, ImageType};
use one_proto::template::Vector;

/// What an image of `size_mb` MB charges to its owner's DATASTORE quota in datastore `ds_id`.
pub fn datastore_usage(ds_id: i64, size_mb: i64) -> QuotaUsage {
    QuotaUsage {
        datastore: vec![(ds_id, 1, size_mb)],
        ..QuotaUsage::default()
    }
}

/// Ends a clone operation on image `src` (the clone `clone_id` is gone or done).
pub fn release_cloning(tx: &mut Txn<'_>, src: i64, clone_id: i64) {
    let Some(mut img) = tx.get::<Image>(src) else {
        return;
    };
    match img.state {
        ImageState::Used | ImageState::Clone => {
            if img.clones.contains(&clone_id) {
                img.clones.retain(|i| *i != clone_id);
                img.cloning_ops = (img.cloning_ops - 1).max(0);
            }
            if img.cloning_ops == 0 && img.running_vms == 0 {
                img.set_state(ImageState::Ready);
            }
            tx.put(img);
        }
        other => {
            tracing::error!(image = src, clone = clone_id, state = %other, "release cloning image in wrong state");
        }
    }
}

/// Releases a DISK's image (VM ended or disk detached); idempotent.
pub fn release_disk(tx: &mut Txn<'_>, disk: &Vector, vmid: i64) {
    let Some(iid) = disk
        .get("IMAGE_ID")
        .and_then(|v| v.trim().parse::<i64>().ok())
    else {
        return;
    };
    let Some(mut img) = tx.get::<Image>(iid) else {
        return;
    };
    if !img.vms.contains(&vmid) {
        return;
    }
    if matches!(
        img.image_type,
        ImageType::Kernel | ImageType::Ramdisk | ImageType::Context | ImageType::Backup
    ) {
        tracing::error!(
            image = iid,
            vm = vmid,
            "trying to release a KERNEL, RAMDISK, BACKUP or CONTEXT image"
        );
        return;
    }
    img.vms.retain(|v| *v != vmid);
    img.running_vms = (img.running_vms - 1).max(0);
    let idle = img.running_vms == 0;
    match img.state {
        ImageState::UsedPers => {
            img.modtime = crate::auth::now_secs();
            if idle {
                img.set_state(ImageState::Ready);
            }
        }
        ImageState::LockedUsedPers => {
            img.modtime = crate::auth::now_secs();
            if idle {
                img.set_state(ImageState::Locked);
            }
        }
        ImageState::Used if idle && img.cloning_ops == 0 => img.set_state(ImageState::Ready),
        ImageState::LockedUsed if idle && img.cloning_ops == 0 => img.set_state(ImageState::Locked),
        ImageState::Used | ImageState::LockedUsed => {}
        other => {
            tracing::error!(image = iid, vm = vmid, state = %other, "releasing image in wrong state");
        }
    }
    tracing::debug!(image = iid, vm = vmid, state = %img.state, "image released by VM disk");
    tx.put(img);
}
