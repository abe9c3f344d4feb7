//! one.image.* / one.imagepool.info, and the image side of VM disks.
//!
//! Images keep OpenNebula's states; their bytes are the frontend agent's work
//! (`storage::image`, docs/storage.md):
//! * `SOURCE` given (already in the datastore, administrators only): READY at once.
//! * `PATH` (a file on the frontend, an http(s) URL, or `upload://TOKEN`): the path rules
//!   and the size are checked by the agent first (`stat`), the quota and the datastore's
//!   space after; then LOCKED while the agent copies it in; READY with FORMAT and SIZE read
//!   by `qemu-img info`, or ERROR with the reason.
//! * empty DATABLOCK/OS (only SIZE, optional FS): LOCKED while the agent makes it.
//! * clone: the new image LOCKED while the agent copies the source's file; the source is in
//!   CLONE (persistent) or USED (non-persistent) with CLONING_OPS until then.
//! * delete removes the record, gives back the quota, and has the agent remove the file.
//! * snapshots: the internal snapshots of a qcow2 image (revert, delete, flatten), and
//!   `one.image.resize` (our extension) grows an image.

use super::common::{self, ApiObject, authorize, authorize_create, check_lock, commit};
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id};
use crate::ops::{self, quota};
use crate::storage::image::{OriginError, lacks_space, origin_for, target_of};
use crate::storage::upload::Upload;
use crate::store::{Kind, State, Txn};
use one_proto::ApiError;
use one_proto::acl::{AuthOp, ObjectType};
use one_proto::ds::{DsReply, DsRequest, FILE_SYSTEMS, SnapshotAction};
use one_proto::objects::datastore::Datastore;
use one_proto::objects::group::Group;
use one_proto::objects::image::{Image, ImageSnapshots};
use one_proto::objects::user::User;
use one_proto::objects::{Header, Permissions};
use one_proto::state::{DatastoreType, DiskType, ImageState, ImageType};
use one_proto::template::{Template, Vector};
use std::time::Duration;

impl ApiObject for Image {
    const OBJNAME: &'static str = "image";
    const POOL_ROOT: &'static str = "IMAGE_POOL";
    const ACL_TYPE: ObjectType = ObjectType::Image;

    crate::owned_header!();
    fn user_template_mut(&mut self) -> &mut Template {
        &mut self.template
    }
}

pub fn register(r: &mut Registry) {
    use common as c;
    r.add("one.image.allocate", |call: Call, p: Params| async move {
        allocate_image(&call, p.str(0)?, p.int32(1)?, p.opt_bool(2, false)?).await
    });
    r.add("one.image.delete", |call: Call, p: Params| async move {
        delete(&call, p.int32(0)?, p.opt_bool(1, false)?).await
    });
    r.add("one.image.info", |call: Call, p: Params| async move {
        c::info::<Image>(&call, p.int32(0)?)
    });
    r.add("one.image.update", |call: Call, p: Params| async move {
        c::update::<Image>(&call, p.int32(0)?, p.str(1)?, p.opt_int(2, 0)?).await
    });
    r.add("one.image.rename", |call: Call, p: Params| async move {
        c::rename_owned::<Image>(&call, p.int32(0)?, p.str(1)?).await
    });
    // Own chown: the image's DATASTORE quota moves to the new owner.
    r.add("one.image.chown", |call: Call, p: Params| async move {
        chown(&call, p.int32(0)?, p.int32(1)?, p.int32(2)?).await
    });
    r.add("one.image.chmod", |call: Call, p: Params| async move {
        c::chmod::<Image>(&call, p.int32(0)?, c::chmod_bits(&p, 1)?).await
    });
    r.add("one.image.lock", |call: Call, p: Params| async move {
        c::lock::<Image>(&call, p.int32(0)?, p.int32(1)?, p.opt_bool(2, false)?).await
    });
    r.add("one.image.unlock", |call: Call, p: Params| async move {
        c::unlock::<Image>(&call, p.int32(0)?).await
    });
    r.add("one.imagepool.info", |call: Call, p: Params| async move {
        c::pool_info::<Image>(
            &call,
            p.opt_int(0, -2)?,
            p.opt_int(1, -1)?,
            p.opt_int(2, -1)?,
        )
    });
    r.add("one.image.enable", |call: Call, p: Params| async move {
        enable(&call, p.int32(0)?, p.bool(1)?).await
    });
    r.add("one.image.persistent", |call: Call, p: Params| async move {
        persistent(&call, p.int32(0)?, p.bool(1)?).await
    });
    r.add("one.image.chtype", |call: Call, p: Params| async move {
        chtype(&call, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.image.clone", |call: Call, p: Params| async move {
        clone(&call, p.int32(0)?, p.str(1)?, p.opt_int(2, -1)?).await
    });
    r.add(
        "one.image.snapshotdelete",
        |call: Call, p: Params| async move {
            snapshot_op(&call, p.int32(0)?, p.int32(1)?, SnapshotAction::Delete).await
        },
    );
    r.add(
        "one.image.snapshotrevert",
        |call: Call, p: Params| async move {
            snapshot_op(&call, p.int32(0)?, p.int32(1)?, SnapshotAction::Revert).await
        },
    );
    r.add(
        "one.image.snapshotflatten",
        |call: Call, p: Params| async move {
            snapshot_op(&call, p.int32(0)?, p.int32(1)?, SnapshotAction::Flatten).await
        },
    );
    // Our extension: grow an image (docs/api-compatibility.md).
    r.add("one.image.resize", |call: Call, p: Params| async move {
        resize(&call, p.int32(0)?, p.int32(1)?).await
    });
    r.add("one.image.restore", |call: Call, p: Params| async move {
        restore(&call, p.int32(0)?, p.int32(1)?, p.opt_str(2, "")?).await
    });
}

// ------------------------------------------------------------------------------------------
// Template rules (pure, unit-tested)

/// Where an image's bytes come from, as the template says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// SOURCE: already in the datastore.
    Source(String),
    /// PATH: a local file or a URL to copy.
    Path(String),
    /// Neither: an empty disk of SIZE MB (DATABLOCK/OS only).
    Empty,
}

/// What `one.image.allocate` derives from a template before it looks at the pools.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSpec {
    pub name: String,
    pub image_type: ImageType,
    pub origin: Origin,
    /// SIZE from the template (MB), when given and valid.
    pub size_mb: Option<i64>,
    pub format: String,
    pub fs: String,
    pub persistent: Option<bool>,
    /// The template to store (NAME, TYPE, PATH, SOURCE, SIZE, ... removed; DEV_PREFIX set).
    pub template: Template,
}

/// An allocate error: which OpenNebula error code it carries, and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    /// ALLOCATE: "Error allocating a new image. <msg>"
    Allocate(String),
    /// INTERNAL: OpenNebula reports SIZE problems this way ("Cannot parse image SIZE: ...").
    Internal(String),
}

fn yes(v: &str) -> bool {
    v.trim().eq_ignore_ascii_case("YES")
}

/// Validates an image template for a datastore of type `ds_type` and prepares what is stored.
/// `ds_driver` is the datastore's DRIVER attribute (forced as FORMAT of empty disks).
pub fn image_spec(
    mut t: Template,
    ds_type: DatastoreType,
    ds_driver: &str,
    default_prefix: &str,
) -> Result<ImageSpec, SpecError> {
    let take = |t: &mut Template, name: &str| -> String {
        let v = t.get(name).unwrap_or("").trim().to_string();
        t.remove(name);
        v
    };
    let name = t.get("NAME").unwrap_or("").to_string();
    t.remove("NAME");
    common::check_name(&name).map_err(SpecError::Allocate)?;

    let type_name = take(&mut t, "TYPE");
    let image_type = if type_name.is_empty() {
        ImageType::Os
    } else {
        ImageType::from_name(&type_name).ok_or_else(|| {
            SpecError::Allocate(format!(
                "Unknown type {type_name}, it must be OS, CDROM, DATABLOCK, KERNEL, RAMDISK, \
                 CONTEXT or FILESYSTEM."
            ))
        })?
    };
    match image_type {
        ImageType::Os | ImageType::Datablock | ImageType::Cdrom | ImageType::Filesystem => {
            if ds_type != DatastoreType::Image {
                return Err(SpecError::Allocate(
                    "Only IMAGES of type KERNEL, RAMDISK and CONTEXT can be registered in a \
                     FILE_DS datastore"
                        .into(),
                ));
            }
        }
        ImageType::Kernel | ImageType::Ramdisk | ImageType::Context => {
            if ds_type != DatastoreType::File {
                return Err(SpecError::Allocate(
                    "IMAGES of type KERNEL, RAMDISK and CONTEXT cannot be registered in an \
                     IMAGE_DS datastore"
                        .into(),
                ));
            }
        }
        ImageType::Backup => {
            return Err(SpecError::Allocate(
                "IMAGES of type BACKUP can only be registered in an BACKUP_DS datastore".into(),
            ));
        }
    }

    let path = take(&mut t, "PATH");
    let source = take(&mut t, "SOURCE");
    let mut format = take(&mut t, "FORMAT");
    let size_text = take(&mut t, "SIZE");
    let fs = take(&mut t, "FS");
    let persistent_text = take(&mut t, "PERSISTENT");
    // Generated by oned, never taken from the user.
    t.remove("DRIVER");
    t.remove("TM_MAD");

    let size_mb = size_text.parse::<i64>().ok().filter(|s| *s >= 0);
    let bad_size = || {
        SpecError::Internal(
            "Cannot parse image SIZE: Wrong number or missing SIZE attribute.".into(),
        )
    };

    let origin = if !source.is_empty() {
        if !path.is_empty() {
            return Err(SpecError::Allocate(
                "PATH and SOURCE cannot be both set.".into(),
            ));
        }
        if image_type == ImageType::Filesystem {
            return Err(SpecError::Internal(
                "Cannot parse image SIZE: Missing PATH attribute.".into(),
            ));
        }
        if size_mb.is_none() {
            return Err(bad_size());
        }
        if format.is_empty() {
            return Err(SpecError::Allocate("SOURCE needs FORMAT to be set.".into()));
        }
        Origin::Source(source)
    } else if !path.is_empty() {
        // The copy (driver) finds the format out.
        format.clear();
        Origin::Path(path)
    } else {
        match image_type {
            ImageType::Os | ImageType::Datablock => {
                if size_mb.is_none_or(|s| s == 0) {
                    return Err(bad_size());
                }
                if !ds_driver.is_empty() {
                    format = ds_driver.to_string();
                    t.set("DRIVER", ds_driver);
                } else if format.is_empty() {
                    format = "raw".into();
                }
                Origin::Empty
            }
            ImageType::Filesystem => {
                return Err(SpecError::Internal(
                    "Cannot parse image SIZE: Missing PATH attribute.".into(),
                ));
            }
            other => {
                return Err(SpecError::Internal(format!(
                    "Cannot parse image SIZE: Either PATH or SOURCE are required for {}",
                    other.name()
                )));
            }
        }
    };
    if image_type == ImageType::Filesystem {
        format = "dir".into();
    }

    // Persistence and device prefix by type (files are never persistent, CDs get their
    // prefix from the VM's chipset at TARGET assignment).
    let persistent = match image_type {
        ImageType::Os | ImageType::Datablock | ImageType::Filesystem => {
            (!persistent_text.is_empty()).then(|| yes(&persistent_text))
        }
        _ => Some(false),
    };
    match image_type {
        ImageType::Os | ImageType::Datablock => {
            if t.get("DEV_PREFIX").unwrap_or("").is_empty() {
                t.set("DEV_PREFIX", default_prefix);
            }
        }
        _ => {
            t.remove("DEV_PREFIX");
        }
    }

    Ok(ImageSpec {
        name,
        image_type,
        origin,
        size_mb,
        format,
        fs,
        persistent,
        template: t,
    })
}

/// How long the frontend agent may take to look at a PATH before registration.
const STAT_TIMEOUT: Duration = Duration::from_secs(120);

/// An upload token taken for a registration: given back unless the image is recorded.
struct TakenUpload<'a> {
    call: &'a Call,
    held: Option<(String, Upload)>,
}

impl TakenUpload<'_> {
    fn consume(mut self) {
        self.held = None;
    }
}

impl Drop for TakenUpload<'_> {
    fn drop(&mut self) {
        if let Some((token, up)) = self.held.take() {
            self.call.oned.storage.uploads.give_back(&token, up);
        }
    }
}

/// The default persistence of new images for a user: DEFAULT_IMAGE_PERSISTENT_NEW in the
/// user's template, then in the group's (OpenNebula's precedence); NO otherwise.
fn default_persistent_new(tx: &Txn<'_>, uid: i64, gid: i64) -> bool {
    let from_user = tx
        .get::<User>(uid)
        .and_then(|u| u.template.get("DEFAULT_IMAGE_PERSISTENT_NEW").map(yes));
    from_user
        .or_else(|| {
            tx.get::<Group>(gid)
                .and_then(|g| g.template.get("DEFAULT_IMAGE_PERSISTENT_NEW").map(yes))
        })
        .unwrap_or(false)
}

/// A planned file name in a datastore: OpenNebula uses md5("time:id"); any 32 hex chars do.
fn new_source(ds: &Datastore) -> String {
    format!(
        "{}/{}",
        ds.base_path.trim_end_matches('/'),
        crate::auth::random_hex(16)
    )
}

fn find_by_name_owner(tx: &Txn<'_>, name: &str, uid: i64, except: i64) -> Option<i64> {
    common::name_taken_by_owner::<Image>(tx, name, uid, except)
}

/// Strips the `[method] ` prefix of an error to embed its text in another message.
pub(crate) fn detail(e: &ApiError) -> &str {
    match e.message.find("] ") {
        Some(i) if e.message.starts_with('[') => &e.message[i + 2..],
        _ => &e.message,
    }
}

// ------------------------------------------------------------------------------------------
// allocate

async fn allocate_image(call: &Call, text: &str, ds_id: i64, no_capacity_check: bool) -> ApiResult {
    let m = call.method;
    let alloc_err = |msg: &str| allocate(m, Image::OBJNAME, msg);
    let template = common::parse_template(call, text)?;
    // Only administrators may skip the capacity check (OpenNebula silently ignores it).
    let skip_capacity = no_capacity_check && call.session.is_admin();

    let ds = call
        .oned
        .store
        .get::<Datastore>(ds_id)
        .ok_or_else(|| no_exists(m, "datastore", ds_id))?;
    if !matches!(ds.ds_type, DatastoreType::Image | DatastoreType::File) {
        return Err(alloc_err(
            "New images can only be allocated in a files or image datastore.",
        ));
    }
    let ds_driver = ds.template.get("DRIVER").unwrap_or("").to_string();
    let spec = image_spec(
        template,
        ds.ds_type,
        &ds_driver,
        &call.oned.config.default_device_prefix,
    )
    .map_err(|e| match e {
        SpecError::Allocate(s) => alloc_err(&s),
        SpecError::Internal(s) => internal(m, &s),
    })?;

    // Authorized before any file is looked at, so nobody else can probe the filesystem.
    {
        let state = call.oned.store.read();
        authorize_create(call, &state, ObjectType::Image)?;
        authorize(call, &state, &*ds, AuthOp::Use)?;
    }
    // Where the bytes come from and how large they are: the frontend agent's `stat` (the
    // path rules are applied to the file it opens), before the transaction.
    let mut upload = TakenUpload { call, held: None };
    let (size_mb, origin) = match &spec.origin {
        Origin::Path(p) => {
            let (origin, up) =
                origin_for(&call.oned, &ds, &call.session, p).map_err(|e| match e {
                    OriginError::Refused(msg) => alloc_err(&msg),
                    OriginError::Unusable(msg) => {
                        internal(m, &format!("Cannot parse image SIZE: {msg}"))
                    }
                })?;
            upload.held = up;
            let stat = DsRequest::Stat {
                origin: origin.clone(),
            };
            let size = match call.oned.storage.call(stat, STAT_TIMEOUT).await {
                Ok(DsReply::Stat { size_mb, .. }) => size_mb as i64,
                Ok(other) => {
                    return Err(internal(m, &format!("unexpected stat answer: {other:?}")));
                }
                Err(e) => {
                    let msg = e.to_string();
                    tracing::info!(datastore = ds_id, uid = call.session.uid, path = %p, error = %msg, "image PATH refused");
                    return Err(if msg.starts_with("Not allowed") {
                        alloc_err(&msg)
                    } else {
                        internal(m, &format!("Cannot parse image SIZE: {msg}"))
                    });
                }
            };
            // A URL that does not say its length: the template's SIZE until it is copied.
            let size = if size == 0 {
                spec.size_mb.unwrap_or(0)
            } else {
                size
            };
            (size, Some(origin))
        }
        Origin::Source(_) | Origin::Empty => (spec.size_mb.unwrap_or(0), None),
    };
    if !spec.fs.is_empty() && !FILE_SYSTEMS.contains(&spec.fs.to_ascii_lowercase().as_str()) {
        return Err(internal(
            m,
            &format!(
                "FS {:?} is not supported: use one of {}",
                spec.fs,
                FILE_SYSTEMS.join(", ")
            ),
        ));
    }
    if !skip_capacity && lacks_space(&ds, size_mb) {
        return Err(action(m, "Not enough space in datastore"));
    }
    // IMAGE_RESTRICTED_ATTR = "SOURCE": users could otherwise point an image at any file.
    if matches!(spec.origin, Origin::Source(_)) && !call.session.is_admin() {
        return Err(not_authorized(
            m,
            call.session.uid,
            "Template includes a restricted attribute SOURCE",
        ));
    }

    let mut tx = call.oned.store.begin().await;
    let mut ds: Datastore = tx
        .get(ds_id)
        .ok_or_else(|| no_exists(m, "datastore", ds_id))?;
    {
        let state = tx.committed();
        authorize_create(call, &state, ObjectType::Image)?;
        authorize(call, &state, &ds, AuthOp::Use)?;
    }
    let (uid, gid) = (call.session.uid, call.session.gid);
    if let Some(other) = find_by_name_owner(&tx, &spec.name, uid, -1) {
        return Err(alloc_err(&format!(
            "NAME is already taken by IMAGE {other}."
        )));
    }
    let persistent = spec
        .persistent
        .unwrap_or_else(|| default_persistent_new(&tx, uid, gid));
    if yes(ds.template.get("PERSISTENT_ONLY").unwrap_or("")) && !persistent {
        return Err(alloc_err("This Datastore only accepts persistent images."));
    }
    quota::charge(
        &mut tx,
        m,
        uid,
        gid,
        &ops::image::datastore_usage(ds_id, size_mb),
    )?;

    let id = tx.next_id(Kind::Image);
    let now = crate::auth::now_secs();
    // What the copy or mkfs may write at most: the datastore's space (LIMIT_MB included).
    let max_bytes = match crate::storage::image::avail_mb(&ds) {
        Some(mb) if !skip_capacity => (mb.max(0) as u64).saturating_mul(1024 * 1024),
        _ => u64::MAX,
    };
    let disk = matches!(
        spec.image_type,
        ImageType::Os | ImageType::Datablock | ImageType::Cdrom | ImageType::Filesystem
    );
    let (state, source, path, op) = match spec.origin {
        Origin::Source(s) => (ImageState::Ready, s, String::new(), None),
        Origin::Empty => {
            let source = new_source(&ds);
            let op = DsRequest::Mkfs {
                to: target_of(&ds, &source),
                size_mb: size_mb as u64,
                format: spec.format.clone(),
                fs: spec.fs.to_ascii_lowercase(),
            };
            (ImageState::Locked, source, String::new(), Some(op))
        }
        Origin::Path(p) => {
            let source = new_source(&ds);
            let op = DsRequest::CopyIn {
                origin: origin.expect("a PATH has an origin"),
                to: target_of(&ds, &source),
                max_bytes,
                disk,
                durable: call.oned.config.storage.sync_images,
            };
            (ImageState::Locked, source, p, Some(op))
        }
    };
    let uname = tx
        .get::<User>(uid)
        .map(|u| u.name)
        .unwrap_or_else(|| call.session.uname.clone());
    let img = Image {
        header: Header {
            id,
            uid,
            gid,
            uname,
            gname: call.session.gname.clone(),
            name: spec.name.clone(),
            perms: Permissions::from_umask(call.oned.config.umask()),
            lock: None,
        },
        image_type: spec.image_type,
        disk_type: ds.disk_type,
        persistent,
        regtime: now,
        modtime: now,
        source,
        path,
        format: spec.format,
        fs: spec.fs,
        size_mb,
        state,
        prev_state: ImageState::Init,
        running_vms: 0,
        cloning_ops: 0,
        cloning_id: -1,
        target_snapshot: -1,
        datastore_id: ds_id,
        datastore: ds.header.name.clone(),
        vms: Vec::new(),
        clones: Vec::new(),
        app_clones: Vec::new(),
        template: spec.template,
        snapshots: ImageSnapshots::default(),
        op,
    };
    let runs = img.op.is_some();
    tx.put(img);
    if !ds.images.contains(&id) {
        ds.images.push(id);
    }
    tx.put(ds);
    commit(call, tx).await?;
    upload.consume();
    tracing::info!(image = id, datastore = ds_id, state = %state, size_mb, "image allocated");
    if runs {
        crate::storage::image::run(&call.oned, id);
    }
    ok_id(id)
}

// ------------------------------------------------------------------------------------------
// delete

async fn delete(call: &Call, id: i64, force: bool) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let files = delete_in(&mut tx, call, id, force)?;
    commit(call, tx).await?;
    tracing::info!(image = id, force, "image deleted");
    remove_files(call, files);
    ok_id(id)
}

/// Has the frontend agent remove deleted images' files (after the deletes committed).
pub(crate) fn remove_files(call: &Call, files: impl IntoIterator<Item = one_proto::ds::Target>) {
    let mut any = false;
    for t in files {
        call.oned.storage.cleanup_later(t);
        any = true;
    }
    if any {
        let o = call.oned.clone();
        tokio::spawn(async move { o.storage.run_cleanups().await });
    }
}

/// Deletes an image inside `tx`: every check comes before the first change, so a refused
/// delete leaves `tx` untouched (one.template.delete with recursive relies on it). Answers
/// the image's file, for the agent to remove once `tx` commits.
pub(crate) fn delete_in(
    tx: &mut Txn<'_>,
    call: &Call,
    id: i64,
    force: bool,
) -> Result<Option<one_proto::ds::Target>, ApiError> {
    let m = call.method;
    let img: Image = tx.get(id).ok_or_else(|| no_exists(m, Image::OBJNAME, id))?;
    authorize(call, &tx.committed(), &img, AuthOp::Manage)?;
    if img.is_locked() {
        if !force {
            return Err(internal(
                m,
                "Image locked, use --force flag to remove the image. Force delete may leave \
                 some files on Datastore",
            ));
        }
        // Removing an image while a datastore operation runs is an administrator's call.
        authorize(call, &tx.committed(), &img, AuthOp::Admin)?;
        check_lock(call, &img, AuthOp::Admin)?;
    } else {
        check_lock(call, &img, AuthOp::Manage)?;
    }
    let in_use = |n: i64| {
        action(
            m,
            &format!("Cannot delete image. There are {n} VMs using it."),
        )
    };
    match img.state {
        ImageState::Ready if img.running_vms > 0 => return Err(in_use(img.running_vms)),
        ImageState::Clone => {
            return Err(action(
                m,
                &format!(
                    "Cannot delete image. There are {} active clone operations.",
                    img.cloning_ops
                ),
            ));
        }
        ImageState::Used if img.running_vms == 0 && img.cloning_ops > 0 => {
            return Err(action(
                m,
                &format!(
                    "Cannot delete image. There are {} active clone operations.",
                    img.cloning_ops
                ),
            ));
        }
        ImageState::Used
        | ImageState::UsedPers
        | ImageState::LockedUsed
        | ImageState::LockedUsedPers => return Err(in_use(img.running_vms)),
        _ => {}
    }

    tx.delete::<Image>(id);
    super::group::drop_rules_of(tx, ObjectType::Image, id);
    let mut files = None;
    if let Some(mut ds) = tx.get::<Datastore>(img.datastore_id) {
        ds.images.retain(|i| *i != id);
        if !img.source.is_empty() {
            files = Some(target_of(&ds, &img.source));
        }
        tx.put(ds);
    }
    quota::release(
        tx,
        img.header.uid,
        img.header.gid,
        &ops::image::datastore_usage(img.datastore_id, img.size_mb),
    );
    if img.cloning_id >= 0 {
        ops::image::release_cloning(tx, img.cloning_id, id);
    }
    Ok(files)
}

// ------------------------------------------------------------------------------------------
// enable / persistent / chtype

async fn enable(call: &Call, id: i64, on: bool) -> ApiResult {
    let m = call.method;
    let mut tx = call.oned.store.begin().await;
    let mut img: Image = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    let verb = if on { "enable" } else { "disable" };
    let wrong = |s: ImageState| {
        internal(
            m,
            &format!("Could not {verb} image: Image cannot be in state {s}."),
        )
    };
    if img.image_type == ImageType::Backup {
        return Err(internal(
            m,
            &format!("Could not {verb} image: Backup images cannot be enabled or disabled."),
        ));
    }
    match (on, img.state) {
        (true, ImageState::Disabled) => img.set_state(ImageState::Ready),
        (true, ImageState::Error) => {
            let next = if img.running_vms == 0 {
                ImageState::Ready
            } else if img.persistent {
                ImageState::UsedPers
            } else {
                ImageState::Used
            };
            img.set_state(next);
        }
        (true, ImageState::Ready) | (false, ImageState::Disabled) => return ok_id(id),
        (false, ImageState::Ready | ImageState::Error) => img.set_state(ImageState::Disabled),
        (_, s) => return Err(wrong(s)),
    }
    let state = img.state;
    tx.put(img);
    commit(call, tx).await?;
    tracing::info!(image = id, state = %state, "image {verb}d");
    ok_id(id)
}

async fn persistent(call: &Call, id: i64, on: bool) -> ApiResult {
    let m = call.method;
    let mut tx = call.oned.store.begin().await;
    let mut img: Image = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    if img.persistent == on {
        return ok_id(id);
    }
    let ds: Datastore = tx
        .get(img.datastore_id)
        .ok_or_else(|| internal(m, "Datastore no longer exists."))?;
    if ds.ds_mad.eq_ignore_ascii_case("lvm") {
        return Err(internal(
            m,
            "lvm datastores doesn't support change of image persistency.",
        ));
    }
    match img.image_type {
        ImageType::Kernel | ImageType::Ramdisk | ImageType::Context => {
            return Err(action(
                m,
                "KERNEL, RAMDISK and CONTEXT must be non-persistent",
            ));
        }
        ImageType::Backup => return Err(action(m, "BACKUP images must be persistent")),
        _ => {}
    }
    if yes(ds.template.get("PERSISTENT_ONLY").unwrap_or("")) && !on {
        return Err(internal(
            m,
            "This Datastore only accepts persistent images.",
        ));
    }
    let what = if on { "persistent" } else { "non-persistent" };
    if !img.snapshots.list.is_empty() && !on {
        return Err(internal(
            m,
            &format!("Could not make image {what}: Image has snapshots."),
        ));
    }
    match img.state {
        ImageState::Used
        | ImageState::Clone
        | ImageState::UsedPers
        | ImageState::LockedUsed
        | ImageState::LockedUsedPers => {
            return Err(internal(
                m,
                &format!(
                    "Could not make image {what}: Image cannot be in state {}.",
                    img.state
                ),
            ));
        }
        _ => {}
    }
    img.persistent = on;
    tx.put(img);
    commit(call, tx).await?;
    tracing::info!(image = id, persistent = on, "image persistence changed");
    ok_id(id)
}

/// Whether `chtype` may turn an image of type `from` into `to` (same datastore family).
pub fn chtype_allowed(from: ImageType, to: ImageType) -> Result<(), String> {
    let incompatible = || {
        "Cannot change image type to an incompatible type for the current datastore.".to_string()
    };
    match from {
        ImageType::Os | ImageType::Datablock | ImageType::Cdrom => {
            if matches!(to, ImageType::Os | ImageType::Datablock | ImageType::Cdrom) {
                Ok(())
            } else {
                Err(incompatible())
            }
        }
        ImageType::Kernel | ImageType::Ramdisk | ImageType::Context => {
            if matches!(
                to,
                ImageType::Kernel | ImageType::Ramdisk | ImageType::Context
            ) {
                Ok(())
            } else {
                Err(incompatible())
            }
        }
        ImageType::Backup | ImageType::Filesystem => {
            Err(format!("Cannot change type for {} images.", from.name()))
        }
    }
}

async fn chtype(call: &Call, id: i64, type_name: &str) -> ApiResult {
    let m = call.method;
    let mut tx = call.oned.store.begin().await;
    let mut img: Image = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    let to = ImageType::from_name(type_name.trim()).ok_or_else(|| {
        internal(
            m,
            &format!(
                "Unknown type {type_name}, it must be OS, CDROM, DATABLOCK, KERNEL, RAMDISK \
                 or CONTEXT."
            ),
        )
    })?;
    chtype_allowed(img.image_type, to).map_err(|e| action(m, &e))?;
    if !matches!(to, ImageType::Os | ImageType::Datablock) && !img.snapshots.list.is_empty() {
        return Err(internal(
            m,
            "Image with snapshots can be only of type OS or DATABLOCK",
        ));
    }
    img.image_type = to;
    tx.put(img);
    commit(call, tx).await?;
    tracing::info!(image = id, image_type = %to, "image type changed");
    ok_id(id)
}

// ------------------------------------------------------------------------------------------
// chown (moves the DATASTORE quota)

async fn chown(call: &Call, id: i64, uid: i64, gid: i64) -> ApiResult {
    let m = call.method;
    let mut tx = call.oned.store.begin().await;
    let mut img: Image = common::get_for_change(call, &tx, id, AuthOp::Admin)?;
    let (old_uid, old_gid) = (img.header.uid, img.header.gid);
    // -1 and the current value both mean "unchanged" (OpenNebula ignores chown to the same).
    let new_user = match uid {
        u if u >= 0 && u != old_uid => {
            Some(tx.get::<User>(u).ok_or_else(|| no_exists(m, "user", u))?)
        }
        _ => None,
    };
    let new_group = match gid {
        g if g >= 0 && g != old_gid => {
            Some(tx.get::<Group>(g).ok_or_else(|| no_exists(m, "group", g))?)
        }
        _ => None,
    };
    if !call.session.is_admin() {
        if let Some(u) = &new_user
            && u.id != call.session.uid
        {
            return Err(not_authorized(
                m,
                call.session.uid,
                &format!("MANAGE USER [{}]", u.id),
            ));
        }
        if let Some(g) = &new_group
            && !call.session.gids.contains(&g.id)
        {
            return Err(not_authorized(
                m,
                call.session.uid,
                &format!("USE GROUP [{}]", g.id),
            ));
        }
    }
    if let Some(u) = &new_user {
        if let Some(other) = find_by_name_owner(&tx, &img.header.name, u.id, id) {
            return Err(action(
                m,
                &format!(
                    "The new owner already has a IMAGE named {:?} [{other}].",
                    img.header.name
                ),
            ));
        }
        img.header.uid = u.id;
        img.header.uname = u.name.clone();
    }
    if let Some(g) = &new_group {
        img.header.gid = g.id;
        img.header.gname = g.name.clone();
    }
    let (new_uid, new_gid) = (img.header.uid, img.header.gid);
    if (new_uid, new_gid) != (old_uid, old_gid) {
        let u = ops::image::datastore_usage(img.datastore_id, img.size_mb);
        quota::charge(&mut tx, m, new_uid, new_gid, &u)?;
        quota::release(&mut tx, old_uid, old_gid, &u);
    }
    tx.put(img);
    commit(call, tx).await?;
    tracing::info!(
        image = id,
        uid = new_uid,
        gid = new_gid,
        "image owner changed"
    );
    ok_id(id)
}

// ------------------------------------------------------------------------------------------
// clone

async fn clone(call: &Call, id: i64, name: &str, ds_id: i64) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let new_id = clone_in(&mut tx, call, id, name, ds_id, None)?;
    commit(call, tx).await?;
    tracing::info!(image = new_id, source = id, "image clone started");
    crate::storage::image::run(&call.oned, new_id);
    ok_id(new_id)
}

/// Clones image `src_id` as `name` into datastore `ds_id` (-1: the same one) inside `tx`.
/// `persistent` overrides the source's persistence. Nothing changes in `tx` on error.
pub(crate) fn clone_in(
    tx: &mut Txn<'_>,
    call: &Call,
    src_id: i64,
    name: &str,
    ds_id: i64,
    persistent: Option<bool>,
) -> Result<i64, ApiError> {
    let m = call.method;
    let mut src: Image = tx
        .get(src_id)
        .ok_or_else(|| no_exists(m, Image::OBJNAME, src_id))?;
    match src.image_type {
        ImageType::Os | ImageType::Datablock | ImageType::Cdrom => {}
        other => {
            return Err(action(
                m,
                &format!("{} images cannot be cloned.", other.name()),
            ));
        }
    }
    if !src.snapshots.list.is_empty() {
        return Err(action(m, "Cannot clone images with snapshots"));
    }
    let target_id = if ds_id == -1 { src.datastore_id } else { ds_id };
    let mut target: Datastore = tx
        .get(target_id)
        .ok_or_else(|| no_exists(m, "datastore", target_id))?;
    if target.ds_type != DatastoreType::Image {
        return Err(action(m, "Clone only supported for IMAGE_DS Datastores"));
    }
    let orig_ds = if target_id != src.datastore_id {
        let orig: Datastore = tx
            .get(src.datastore_id)
            .ok_or_else(|| no_exists(m, "datastore", src.datastore_id))?;
        if orig.ds_type != DatastoreType::Image {
            return Err(action(m, "Clone only supported for IMAGE_DS Datastores"));
        }
        if orig.ds_mad != target.ds_mad {
            return Err(action(m, "Clone only supported to same DS_MAD Datastores"));
        }
        Some(orig)
    } else {
        None
    };
    if lacks_space(&target, src.size_mb) {
        return Err(action(m, "Not enough space in datastore"));
    }
    {
        let state = tx.committed();
        authorize_create(call, &state, ObjectType::Image)?;
        authorize(call, &state, &src, AuthOp::Use)?;
        authorize(call, &state, &target, AuthOp::Use)?;
        if let Some(orig) = &orig_ds {
            authorize(call, &state, orig, AuthOp::Use)?;
        }
    }
    check_lock(call, &src, AuthOp::Use)?;
    let alloc_err = |msg: &str| allocate(m, Image::OBJNAME, msg);
    common::check_name(name).map_err(|e| alloc_err(&e))?;
    let (uid, gid) = (call.session.uid, call.session.gid);
    if let Some(other) = find_by_name_owner(tx, name, uid, -1) {
        return Err(alloc_err(&format!(
            "NAME is already taken by IMAGE {other}."
        )));
    }
    match src.state {
        ImageState::Ready | ImageState::Used | ImageState::Clone => {}
        s => return Err(alloc_err(&format!("Cannot clone image in state: {s}"))),
    }
    quota::charge(
        tx,
        m,
        uid,
        gid,
        &ops::image::datastore_usage(target_id, src.size_mb),
    )?;

    let new_id = tx.next_id(Kind::Image);
    let new_file = new_source(&target);
    let op = DsRequest::Clone {
        from: src.source.clone(),
        to: target_of(&target, &new_file),
        durable: call.oned.config.storage.sync_images,
    };
    let now = crate::auth::now_secs();
    let persistent = match src.image_type {
        ImageType::Cdrom => false,
        _ => persistent.unwrap_or(src.persistent),
    };
    let uname = tx
        .get::<User>(uid)
        .map(|u| u.name)
        .unwrap_or_else(|| call.session.uname.clone());
    let img = Image {
        header: Header {
            id: new_id,
            uid,
            gid,
            uname,
            gname: call.session.gname.clone(),
            name: name.to_string(),
            perms: Permissions::from_umask(call.oned.config.umask()),
            lock: None,
        },
        image_type: src.image_type,
        disk_type: target.disk_type,
        persistent,
        regtime: now,
        modtime: now,
        source: new_file,
        path: src.source.clone(),
        format: src.format.clone(),
        fs: String::new(),
        size_mb: src.size_mb,
        state: ImageState::Locked,
        prev_state: ImageState::Init,
        running_vms: 0,
        cloning_ops: 0,
        cloning_id: src_id,
        target_snapshot: -1,
        datastore_id: target_id,
        datastore: target.header.name.clone(),
        vms: Vec::new(),
        clones: Vec::new(),
        app_clones: Vec::new(),
        template: src.template.clone(),
        snapshots: ImageSnapshots::default(),
        op: Some(op),
    };
    tx.put(img);
    if !target.images.contains(&new_id) {
        target.images.push(new_id);
    }
    tx.put(target);

    src.cloning_ops += 1;
    src.clones.push(new_id);
    if src.state == ImageState::Ready {
        src.set_state(if src.persistent {
            ImageState::Clone
        } else {
            ImageState::Used
        });
    }
    tx.put(src);
    Ok(new_id)
}

// ------------------------------------------------------------------------------------------
// snapshots and restore

/// The internal snapshot `snap_id` of a qcow2 image: revert to it, delete it, or flatten
/// the image to it. The image is LOCKED while the frontend agent works, READY after.
async fn snapshot_op(call: &Call, id: i64, snap_id: i64, op: SnapshotAction) -> ApiResult {
    let m = call.method;
    let what = match op {
        SnapshotAction::Revert => "revert to snapshot",
        SnapshotAction::Delete => "delete snapshot",
        SnapshotAction::Flatten => "flatten snapshot",
    };
    let mut tx = call.oned.store.begin().await;
    let mut img: Image = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    if !matches!(img.image_type, ImageType::Os | ImageType::Datablock) {
        return Err(action(
            m,
            "IMAGES of type KERNEL, RAMDISK, BACKUP, FILESYSTEM and CONTEXT does not have \
             snapshots.",
        ));
    }
    if img.state != ImageState::Ready {
        return Err(action(m, &format!("Cannot {what} in state {}", img.state)));
    }
    let Some(snap) = img.snapshots.get(snap_id) else {
        return Err(action(m, "Snapshot does not exist"));
    };
    let name = snap.name.clone().unwrap_or_else(|| snap_id.to_string());
    let ds: Datastore = tx
        .get(img.datastore_id)
        .ok_or_else(|| internal(m, "Datastore no longer exists."))?;
    img.op = Some(DsRequest::Snapshot {
        target: target_of(&ds, &img.source),
        action: op,
        name,
    });
    img.set_state(ImageState::Locked);
    tx.put(img);
    commit(call, tx).await?;
    tracing::info!(
        image = id,
        snapshot = snap_id,
        what,
        "image snapshot operation started"
    );
    crate::storage::image::run(&call.oned, id);
    ok_id(id)
}

/// `one.image.resize(id, size_mb)` (our extension; OpenNebula grows images only through a
/// VM's disk): grows a READY OS or DATABLOCK image. The DATASTORE quota is charged for the
/// growth now, given back if the resize fails.
async fn resize(call: &Call, id: i64, size_mb: i64) -> ApiResult {
    let m = call.method;
    if size_mb <= 0 {
        return Err(action(
            m,
            &format!("Wrong size {size_mb}: a number of MB above 0"),
        ));
    }
    let mut tx = call.oned.store.begin().await;
    let mut img: Image = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    if !matches!(img.image_type, ImageType::Os | ImageType::Datablock) {
        return Err(action(m, "Only OS and DATABLOCK images can be resized."));
    }
    if img.state != ImageState::Ready {
        return Err(action(
            m,
            &format!("Cannot resize image in state {}", img.state),
        ));
    }
    if size_mb < img.size_mb {
        return Err(action(
            m,
            &format!("An image cannot shrink: it has {} MB", img.size_mb),
        ));
    }
    if size_mb == img.size_mb {
        return ok_id(id);
    }
    let ds: Datastore = tx
        .get(img.datastore_id)
        .ok_or_else(|| internal(m, "Datastore no longer exists."))?;
    if lacks_space(&ds, size_mb - img.size_mb) {
        return Err(action(m, "Not enough space in datastore"));
    }
    let grow = quota::QuotaUsage {
        datastore: vec![(img.datastore_id, 0, size_mb - img.size_mb)],
        ..quota::QuotaUsage::default()
    };
    quota::charge(&mut tx, m, img.header.uid, img.header.gid, &grow)?;
    img.op = Some(DsRequest::Resize {
        target: target_of(&ds, &img.source),
        format: img.format.clone(),
        size_mb: size_mb as u64,
    });
    img.set_state(ImageState::Locked);
    tx.put(img);
    commit(call, tx).await?;
    tracing::info!(image = id, size_mb, "image resize started");
    crate::storage::image::run(&call.oned, id);
    ok_id(id)
}

async fn restore(call: &Call, id: i64, ds_id: i64, _opts: &str) -> ApiResult {
    let m = call.method;
    let img = common::get_authorized::<Image>(call, id, AuthOp::Use)?;
    common::get_authorized::<Datastore>(call, ds_id, AuthOp::Use)?;
    if img.image_type != ImageType::Backup {
        return Err(action(m, "Can only restore images of type BACKUP"));
    }
    Err(action(
        m,
        "Backup restore needs the datastore driver, which is not available yet",
    ))
}

// ------------------------------------------------------------------------------------------
// VM disks

/// An error about a VM's DISK, with the code of the calling method: ALLOCATE for VM creation,
/// ACTION for hotplug and the like.
fn disk_error(call: &Call, msg: &str) -> ApiError {
    if call.method.ends_with(".allocate") || call.method.ends_with(".instantiate") {
        allocate(call.method, "virtual machine", msg)
    } else {
        action(call.method, msg)
    }
}

/// The owner a DISK's (or a FILES_DS `$FILE`'s) IMAGE name refers to: IMAGE_UID, else
/// IMAGE_UNAME, else `uid`.
fn disk_image_owner(state: &State, disk: &Vector, uid: i64) -> Option<i64> {
    if let Some(u) = disk.get("IMAGE_UID").filter(|v| !v.trim().is_empty()) {
        return u.trim().parse().ok();
    }
    if let Some(name) = disk.get("IMAGE_UNAME").filter(|v| !v.trim().is_empty()) {
        return state
            .users
            .iter()
            .find(|u| u.name == name.trim())
            .map(|u| u.id);
    }
    Some(uid)
}

/// The image id a DISK (or a FILES_DS `$FILE`) refers to (IMAGE_ID, or IMAGE by name and
/// owner), if it names one that exists; None for volatile disks and unresolvable names.
pub(crate) fn disk_image_id(state: &State, disk: &Vector, uid: i64) -> Option<i64> {
    if let Some(id) = disk.get("IMAGE_ID").filter(|v| !v.trim().is_empty()) {
        return id.trim().parse().ok();
    }
    let name = disk.get("IMAGE").filter(|v| !v.trim().is_empty())?;
    let owner = disk_image_owner(state, disk, uid)?;
    state
        .images
        .iter()
        .find(|i| i.header.uid == owner && i.header.name == name)
        .map(|i| i.header.id)
}

/// DISK TYPE of an image disk (OpenNebula's disk_type_to_str, with CD-ROMs always CDROM).
fn disk_type_str(image_type: ImageType, dt: DiskType) -> Option<&'static str> {
    let name = |d: DiskType| match d {
        DiskType::CdRom => "CDROM",
        DiskType::FileSystem => "FILESYSTEM",
        other => other.name(),
    };
    match image_type {
        ImageType::Os | ImageType::Datablock | ImageType::Filesystem => Some(name(dt)),
        ImageType::Cdrom => Some(match dt {
            DiskType::Rbd => "RBD_CDROM",
            DiskType::Sheepdog => "SHEEPDOG_CDROM",
            DiskType::Gluster => "GLUSTER_CDROM",
            _ => "CDROM",
        }),
        _ => None,
    }
}

/// CLONE_TARGET / LN_TARGET of the common TM drivers (oned.conf's TM_MAD_CONF), used when the
/// datastore's template does not say.
fn tm_targets(tm_mad: &str) -> Option<(&'static str, &'static str)> {
    Some(match tm_mad {
        "shared" | "qcow2" | "dummy" => ("SYSTEM", "NONE"),
        "ssh" | "local" | "fs_lvm" | "fs_lvm_ssh" => ("SYSTEM", "SYSTEM"),
        "ceph" | "lvm" | "iscsi_libvirt" | "netapp" | "purefa" => ("SELF", "NONE"),
        "dev" | "virtiofs" => ("NONE", "NONE"),
        _ => return None,
    })
}

/// Resolves a VM DISK's image (IMAGE_ID, or IMAGE + IMAGE_UNAME/IMAGE_UID), checks the VM
/// owner may USE it and that it is usable (READY, or USED for non-persistent), marks it used
/// by VM `vmid`, and fills in the attributes oned adds to a DISK (DISK_ID, SOURCE, DATASTORE,
/// DATASTORE_ID, TM_MAD, CLONE, TARGET, ...). Disks without an image (volatile) are left to
/// the caller. Contract used by VM allocation.
///
/// A LOCKED image (copy pending) is accepted like OpenNebula does for new VMs (the DISK gets
/// CLONING=YES and the image goes LOCKED_USED[_PERS]); hotplug (`one.vm.attach`) refuses it.
/// TARGET is left to the VM code; DEV_PREFIX is set from the image or DEFAULT_DEVICE_PREFIX.
pub fn disk_from_image(
    tx: &mut Txn<'_>,
    call: &Call,
    disk: &mut Vector,
    disk_id: i64,
    vmid: i64,
    uid: i64,
) -> Result<(), ApiError> {
    let has_id = disk.get("IMAGE_ID").is_some_and(|v| !v.trim().is_empty());
    let has_name = disk.get("IMAGE").is_some_and(|v| !v.trim().is_empty());
    if !has_id && !has_name {
        return Ok(());
    }
    let attach = call.method == "one.vm.attach";
    let mut img: Image = if has_id {
        let text = disk.get("IMAGE_ID").unwrap_or("").trim().to_string();
        let iid: i64 = text.parse().map_err(|_| {
            disk_error(
                call,
                &format!("Wrong IMAGE_ID {text:?} in DISK, it must be an image id."),
            )
        })?;
        tx.get(iid)
            .ok_or_else(|| disk_error(call, &format!("Image with ID: {iid} does not exist")))?
    } else {
        let name = disk.get("IMAGE").unwrap_or("").trim().to_string();
        let not_owned = |owner: i64| {
            disk_error(
                call,
                &format!(
                    "User {owner} does not own an image with name: {name} . Set IMAGE_UNAME \
                     or IMAGE_UID of owner in DISK."
                ),
            )
        };
        let owner = disk_image_owner(&tx.committed(), disk, uid).ok_or_else(|| not_owned(uid))?;
        let iid = disk_image_id(&tx.committed(), disk, uid).ok_or_else(|| not_owned(owner))?;
        tx.get(iid).ok_or_else(|| not_owned(owner))?
    };
    let iid = img.header.id;
    authorize(call, &tx.committed(), &img, AuthOp::Use)?;
    check_lock(call, &img, AuthOp::Use)?;

    if matches!(
        img.image_type,
        ImageType::Kernel | ImageType::Ramdisk | ImageType::Context | ImageType::Backup
    ) {
        return Err(disk_error(
            call,
            &format!(
                "Image {iid} ({}) of type {} cannot be used as DISK.",
                img.header.name, img.image_type
            ),
        ));
    }
    // SIZE checks happen before the image is taken (OpenNebula releases it on failure).
    if let Some(text) = disk.get("SIZE").filter(|v| !v.trim().is_empty()) {
        let size: i64 = text
            .trim()
            .parse()
            .map_err(|_| disk_error(call, "SIZE attribute must be a positive integer value."))?;
        if img.persistent && size != img.size_mb {
            return Err(disk_error(
                call,
                &format!("SIZE attribute is not supported for persistent image [{iid}]."),
            ));
        }
        if img.image_type == ImageType::Cdrom && size != img.size_mb {
            return Err(disk_error(
                call,
                &format!("SIZE attribute is not supported for CDROM image [{iid}]."),
            ));
        }
        if size < img.size_mb {
            return Err(disk_error(
                call,
                &format!(
                    "SIZE of {size}MB is less than the image [{iid}] size of {}MB.",
                    img.size_mb
                ),
            ));
        }
    }

    let ptype = img
        .template
        .get("PERSISTENT_TYPE")
        .unwrap_or("")
        .to_ascii_uppercase();
    let shareable = ptype == "SHAREABLE";
    let busy = || format!("Cannot acquire image {iid}, it is persistent and already in use");
    let locked_msg = || format!("Cannot acquire image {iid}, it is locked");
    let used_state = if img.persistent {
        ImageState::UsedPers
    } else {
        ImageState::Used
    };
    let next = match img.state {
        ImageState::Ready => used_state,
        ImageState::Locked if attach => return Err(disk_error(call, &locked_msg())),
        ImageState::Locked => {
            if img.persistent {
                ImageState::LockedUsedPers
            } else {
                ImageState::LockedUsed
            }
        }
        ImageState::UsedPers | ImageState::LockedUsedPers if !shareable => {
            return Err(disk_error(call, &busy()));
        }
        ImageState::LockedUsed | ImageState::LockedUsedPers if attach => {
            return Err(disk_error(call, &locked_msg()));
        }
        s @ (ImageState::Used
        | ImageState::UsedPers
        | ImageState::LockedUsed
        | ImageState::LockedUsedPers) => s,
        s => {
            return Err(disk_error(
                call,
                &format!("Cannot acquire image {iid}, it is in state: {s}"),
            ));
        }
    };
    let ds: Datastore = tx
        .get(img.datastore_id)
        .ok_or_else(|| disk_error(call, "Associated datastore for the image does not exist"))?;
    if !img.vms.contains(&vmid) {
        img.vms.push(vmid);
        img.running_vms += 1;
    }
    img.set_state(next);

    fill_disk(call, disk, &img, &ds, &ptype);
    disk.set("DISK_ID", disk_id.to_string());
    tracing::debug!(image = iid, vm = vmid, disk_id, state = %img.state, "image attached to VM disk");
    tx.put(img);
    Ok(())
}

/// The attributes OpenNebula's Image::disk_attribute and Datastore::disk_attribute add.
fn fill_disk(call: &Call, disk: &mut Vector, img: &Image, ds: &Datastore, ptype: &str) {
    let is_cd = img.image_type == ImageType::Cdrom;
    if disk.get("DEV_PREFIX").unwrap_or("").is_empty()
        && !matches!(img.image_type, ImageType::Cdrom | ImageType::Filesystem)
    {
        let prefix = match img.template.get("DEV_PREFIX") {
            Some(p) if !p.is_empty() => p.to_string(),
            _ => call.oned.config.default_device_prefix.clone(),
        };
        disk.set("DEV_PREFIX", prefix);
    }
    disk.set("IMAGE", img.header.name.clone());
    disk.set("IMAGE_ID", img.header.id.to_string());
    disk.set("IMAGE_UNAME", img.header.uname.clone());
    disk.set("SOURCE", img.source.clone());
    disk.set("ORIGINAL_SIZE", img.size_mb.to_string());
    if disk.get("SIZE").unwrap_or("").trim().is_empty() {
        disk.set("SIZE", img.size_mb.to_string());
    }
    disk.set("DISK_SNAPSHOT_TOTAL_SIZE", "0");
    if img.format.is_empty() {
        disk.remove("DRIVER");
        disk.remove("FORMAT");
    } else {
        let f = img.format.to_ascii_lowercase();
        disk.set("DRIVER", f.clone());
        disk.set("FORMAT", f);
    }
    disk.set("IMAGE_STATE", img.state.num().to_string());

    if is_cd || ptype == "IMMUTABLE" {
        disk.set("SAVE", "NO");
        disk.set("CLONE", "NO");
        disk.set("READONLY", "YES");
    } else {
        if disk.get("READONLY").unwrap_or("").is_empty() {
            let ro = img.template.get("READONLY").map(yes).unwrap_or(false);
            disk.set("READONLY", if ro { "YES" } else { "NO" });
        }
        if img.persistent {
            disk.set("PERSISTENT", "YES");
            disk.set("CLONE", "NO");
            disk.set("SAVE", "YES");
            if ptype == "SHAREABLE" && (img.format == "raw" || img.format == "dir") {
                disk.set("SHAREABLE", "YES");
            }
        } else {
            disk.set("CLONE", "YES");
            disk.set("SAVE", "NO");
        }
    }
    if img.is_locked() {
        disk.set("CLONING", "YES");
    } else {
        disk.remove("CLONING");
    }
    if let Some(t) = disk_type_str(img.image_type, img.disk_type) {
        disk.set("TYPE", t);
        disk.set("DISK_TYPE", t);
    }
    if disk.get("TARGET").unwrap_or("").is_empty()
        && let Some(t) = img.template.get("TARGET").filter(|t| !t.is_empty())
    {
        disk.set("TARGET", t.to_string());
    }

    disk.set("DATASTORE", ds.header.name.clone());
    disk.set("DATASTORE_ID", ds.header.id.to_string());
    disk.set("TM_MAD", ds.tm_mad.clone());
    let clusters: Vec<String> = ds.clusters.iter().map(|c| c.to_string()).collect();
    disk.set("CLUSTER_ID", clusters.join(","));
    let defaults = tm_targets(&ds.tm_mad);
    for (attr, default) in [
        ("CLONE_TARGET", defaults.map(|d| d.0)),
        ("LN_TARGET", defaults.map(|d| d.1)),
    ] {
        if !disk.get(attr).unwrap_or("").is_empty() {
            continue;
        }
        match ds.template.get(attr).filter(|v| !v.is_empty()) {
            Some(v) => disk.set(attr, v.to_string()),
            None => {
                if let Some(d) = default {
                    disk.set(attr, d);
                }
            }
        }
    }
    // oned.conf's default INHERIT_DATASTORE_ATTR.
    for attr in ["CEPH_HOST", "CEPH_SECRET", "CEPH_KEY"] {
        if disk.get(attr).unwrap_or("").is_empty()
            && let Some(v) = ds.template.get(attr).filter(|v| !v.is_empty())
        {
            disk.set(attr, v.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str, ds: DatastoreType) -> Result<ImageSpec, SpecError> {
        image_spec(Template::parse(text).unwrap(), ds, "", "sd")
    }

    fn alloc_msg(r: Result<ImageSpec, SpecError>) -> String {
        match r {
            Err(SpecError::Allocate(m)) => m,
            other => panic!("expected an ALLOCATE error, got {other:?}"),
        }
    }

    fn internal_msg(r: Result<ImageSpec, SpecError>) -> String {
        match r {
            Err(SpecError::Internal(m)) => m,
            other => panic!("expected an INTERNAL error, got {other:?}"),
        }
    }

    #[test]
    fn path_image_strips_registration_attributes() {
        let s = spec(
            "NAME = deb\nPATH = /tmp/x.qcow2\nFORMAT = qcow2\nSIZE = 5\nDESCRIPTION = d\nDRIVER = x",
            DatastoreType::Image,
        )
        .unwrap();
        assert_eq!(s.name, "deb");
        assert_eq!(s.image_type, ImageType::Os);
        assert_eq!(s.origin, Origin::Path("/tmp/x.qcow2".into()));
        assert_eq!(s.format, "", "the copy decides the format");
        assert_eq!(s.size_mb, Some(5));
        assert_eq!(s.persistent, None);
        assert_eq!(s.template.get("DEV_PREFIX"), Some("sd"));
        assert_eq!(s.template.get("DESCRIPTION"), Some("d"));
        for gone in [
            "NAME",
            "PATH",
            "FORMAT",
            "SIZE",
            "TYPE",
            "DRIVER",
            "PERSISTENT",
        ] {
            assert!(!s.template.contains(gone), "{gone} must not be stored");
        }
    }

    #[test]
    fn source_needs_size_and_format_and_excludes_path() {
        let s = spec(
            "NAME=a\nSOURCE=/ds/1/abc\nSIZE=10\nFORMAT=raw\nPERSISTENT=yes\nDEV_PREFIX=vd",
            DatastoreType::Image,
        )
        .unwrap();
        assert_eq!(s.origin, Origin::Source("/ds/1/abc".into()));
        assert_eq!(s.persistent, Some(true));
        assert_eq!(s.template.get("DEV_PREFIX"), Some("vd"));
        assert_eq!(
            alloc_msg(spec(
                "NAME=a\nSOURCE=/x\nPATH=/y\nSIZE=1\nFORMAT=raw",
                DatastoreType::Image
            )),
            "PATH and SOURCE cannot be both set."
        );
        assert_eq!(
            alloc_msg(spec("NAME=a\nSOURCE=/x\nSIZE=1", DatastoreType::Image)),
            "SOURCE needs FORMAT to be set."
        );
        assert_eq!(
            internal_msg(spec("NAME=a\nSOURCE=/x\nFORMAT=raw", DatastoreType::Image)),
            "Cannot parse image SIZE: Wrong number or missing SIZE attribute."
        );
    }

    #[test]
    fn empty_datablock_needs_a_positive_size_and_gets_a_format() {
        let s = spec("NAME=d\nTYPE=datablock\nSIZE=100", DatastoreType::Image).unwrap();
        assert_eq!(s.origin, Origin::Empty);
        assert_eq!(s.format, "raw");
        assert_eq!(s.image_type, ImageType::Datablock);
        let s = image_spec(
            Template::parse("NAME=d\nTYPE=DATABLOCK\nSIZE=1\nFORMAT=raw").unwrap(),
            DatastoreType::Image,
            "qcow2",
            "vd",
        )
        .unwrap();
        assert_eq!(s.format, "qcow2", "the datastore's DRIVER wins");
        assert_eq!(s.template.get("DRIVER"), Some("qcow2"));
        assert_eq!(s.template.get("DEV_PREFIX"), Some("vd"));
        for bad in [
            "NAME=d\nTYPE=DATABLOCK",
            "NAME=d\nTYPE=DATABLOCK\nSIZE=0",
            "NAME=d\nSIZE=ten",
        ] {
            assert_eq!(
                internal_msg(spec(bad, DatastoreType::Image)),
                "Cannot parse image SIZE: Wrong number or missing SIZE attribute.",
                "{bad}"
            );
        }
    }

    #[test]
    fn types_and_datastores() {
        assert_eq!(
            alloc_msg(spec("NAME=k\nTYPE=KERNEL\nPATH=/k", DatastoreType::Image)),
            "IMAGES of type KERNEL, RAMDISK and CONTEXT cannot be registered in an IMAGE_DS datastore"
        );
        assert_eq!(
            alloc_msg(spec("NAME=o\nTYPE=OS\nPATH=/k", DatastoreType::File)),
            "Only IMAGES of type KERNEL, RAMDISK and CONTEXT can be registered in a FILE_DS datastore"
        );
        assert!(
            alloc_msg(spec("NAME=o\nTYPE=floppy\nPATH=/k", DatastoreType::Image))
                .starts_with("Unknown type floppy")
        );
        assert!(
            alloc_msg(spec("NAME=o\nTYPE=BACKUP\nSOURCE=/k", DatastoreType::Image))
                .contains("BACKUP_DS")
        );
        let k = spec(
            "NAME=k\nTYPE=context\nPATH=/k\nPERSISTENT=YES\nDEV_PREFIX=hd",
            DatastoreType::File,
        )
        .unwrap();
        assert_eq!(k.persistent, Some(false), "files are never persistent");
        assert!(!k.template.contains("DEV_PREFIX"));
        assert_eq!(
            internal_msg(spec("NAME=c\nTYPE=CDROM", DatastoreType::Image)),
            "Cannot parse image SIZE: Either PATH or SOURCE are required for CDROM"
        );
        let cd = spec(
            "NAME=c\nTYPE=CDROM\nPATH=http://x/y.iso",
            DatastoreType::Image,
        )
        .unwrap();
        assert!(!cd.template.contains("DEV_PREFIX"));
        assert_eq!(
            internal_msg(spec("NAME=f\nTYPE=FILESYSTEM", DatastoreType::Image)),
            "Cannot parse image SIZE: Missing PATH attribute."
        );
        assert_eq!(
            spec("NAME=f\nTYPE=FILESYSTEM\nPATH=/d", DatastoreType::Image)
                .unwrap()
                .format,
            "dir"
        );
    }

    #[test]
    fn name_is_required() {
        assert_eq!(
            alloc_msg(spec("PATH=/x", DatastoreType::Image)),
            "Invalid NAME, it cannot be empty"
        );
    }

    #[test]
    fn chtype_families() {
        assert!(chtype_allowed(ImageType::Os, ImageType::Cdrom).is_ok());
        assert!(chtype_allowed(ImageType::Kernel, ImageType::Context).is_ok());
        assert_eq!(
            chtype_allowed(ImageType::Os, ImageType::Kernel).unwrap_err(),
            "Cannot change image type to an incompatible type for the current datastore."
        );
        assert!(chtype_allowed(ImageType::Ramdisk, ImageType::Datablock).is_err());
        assert_eq!(
            chtype_allowed(ImageType::Filesystem, ImageType::Os).unwrap_err(),
            "Cannot change type for FILESYSTEM images."
        );
    }

    #[test]
    fn disk_types_and_tm_targets() {
        assert_eq!(disk_type_str(ImageType::Os, DiskType::File), Some("FILE"));
        assert_eq!(
            disk_type_str(ImageType::Cdrom, DiskType::File),
            Some("CDROM")
        );
        assert_eq!(
            disk_type_str(ImageType::Cdrom, DiskType::Rbd),
            Some("RBD_CDROM")
        );
        assert_eq!(
            disk_type_str(ImageType::Datablock, DiskType::Block),
            Some("BLOCK")
        );
        assert_eq!(disk_type_str(ImageType::Kernel, DiskType::File), None);
        assert_eq!(tm_targets("shared"), Some(("SYSTEM", "NONE")));
        assert_eq!(tm_targets("ssh"), Some(("SYSTEM", "SYSTEM")));
        assert_eq!(tm_targets("mystery"), None);
    }

    #[test]
    fn detail_strips_the_method() {
        let e = action("one.image.clone", "Cannot clone images with snapshots");
        assert_eq!(detail(&e), "Cannot clone images with snapshots");
    }
}
