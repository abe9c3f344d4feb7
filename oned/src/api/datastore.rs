//! one.datastore.* / one.datastorepool.info. Datastores are registered here; the drivers that
//! move bytes come with the storage issue.

use super::cluster::{add_to_cluster, remove_from_clusters, resolve_cluster_id};
use super::common::{self, ApiObject, authorize, authorize_create, commit, name_taken};
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id, ok_xml};
use crate::store::{Kind, Txn};
use one_proto::acl::{AuthOp, ObjectType};
use one_proto::objects::datastore::Datastore;
use one_proto::objects::user::User;
use one_proto::objects::{Header, Permissions};
use one_proto::state::{DatastoreState, DatastoreType, DiskType};
use one_proto::template::Template;

impl ApiObject for Datastore {
    const OBJNAME: &'static str = "datastore";
    const POOL_ROOT: &'static str = "DATASTORE_POOL";
    const ACL_TYPE: ObjectType = ObjectType::Datastore;

    crate::owned_header!();
    fn user_template_mut(&mut self) -> &mut Template {
        &mut self.template
    }
    fn clusters(&self) -> Vec<i64> {
        self.clusters.clone()
    }
}

pub fn register(r: &mut Registry) {
    r.add("one.datastore.allocate", |c: Call, p: Params| async move {
        allocate_ds(&c, p.str(0)?, p.opt_int(1, -1)?).await
    });
    r.add("one.datastore.delete", |c: Call, p: Params| async move {
        delete(&c, p.int32(0)?).await
    });
    r.add("one.datastore.info", |c: Call, p: Params| async move {
        common::info::<Datastore>(&c, p.int32(0)?)
    });
    r.add("one.datastore.update", |c: Call, p: Params| async move {
        common::update::<Datastore>(&c, p.int32(0)?, p.str(1)?, p.opt_int(2, 0)?).await
    });
    r.add("one.datastore.rename", |c: Call, p: Params| async move {
        rename(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.datastore.chown", |c: Call, p: Params| async move {
        common::chown::<Datastore>(&c, p.int32(0)?, p.int32(1)?, p.int32(2)?).await
    });
    r.add("one.datastore.chmod", |c: Call, p: Params| async move {
        common::chmod::<Datastore>(&c, p.int32(0)?, common::chmod_bits(&p, 1)?).await
    });
    r.add("one.datastore.enable", |c: Call, p: Params| async move {
        enable(&c, p.int32(0)?, p.bool(1)?).await
    });
    r.add("one.datastorepool.info", |c: Call, _p: Params| async move {
        ok_xml(common::pool_xml::<Datastore>(
            &c,
            common::PoolFilter::All,
            common::IdRange::All,
            |_| true,
            false,
        ))
    });
}

async fn allocate_ds(call: &Call, text: &str, cluster: i64) -> ApiResult {
    let alloc_err = |m: &str| allocate(call.method, "datastore", m);
    let mut template = common::parse_template(call, text)?;
    let name = template
        .get("NAME")
        .map(str::to_string)
        .ok_or_else(|| alloc_err("No NAME in template."))?;
    common::check_name(&name).map_err(|m| alloc_err(&m))?;
    let ds_type = match template.get("TYPE") {
        None | Some("") => DatastoreType::Image,
        Some(t) => DatastoreType::from_name(t).ok_or_else(|| {
            alloc_err(&format!(
                "Unknown datastore TYPE {t:?}: use IMAGE_DS, SYSTEM_DS, FILE_DS or BACKUP_DS."
            ))
        })?,
    };
    let tm_mad = template.get("TM_MAD").unwrap_or("").to_string();
    let ds_mad = template.get("DS_MAD").unwrap_or("").to_string();
    if tm_mad.is_empty() && ds_type != DatastoreType::File && ds_type != DatastoreType::Backup {
        return Err(alloc_err("No TM_MAD in template."));
    }
    if ds_mad.is_empty() && ds_type != DatastoreType::System {
        return Err(alloc_err("No DS_MAD in template."));
    }
    authorize_create(call, &call.oned.store.read(), ObjectType::Datastore)?;
    let cid = resolve_cluster_id(cluster);
    let mut tx = call.oned.store.begin().await;
    if let Some(other) = name_taken::<Datastore>(&tx, &name, -1) {
        return Err(alloc_err(&format!(
            "NAME is already taken by DATASTORE {other}."
        )));
    }
    let cl: one_proto::objects::cluster::Cluster = tx
        .get(cid)
        .ok_or_else(|| no_exists(call.method, "cluster", cid))?;
    authorize(call, &tx.committed(), &cl, AuthOp::Admin)?;
    let owner: User = tx
        .get(call.session.uid)
        .ok_or_else(|| no_exists(call.method, "user", call.session.uid))?;
    let id = tx.next_id(Kind::Datastore);
    let base_path = match template.get("BASE_PATH") {
        Some(p) if !p.is_empty() => {
            if !p.starts_with('/') {
                return Err(alloc_err("BASE_PATH must be an absolute path."));
            }
            p.trim_end_matches('/').to_string()
        }
        _ => call.oned.data_dir.datastore_path(id).display().to_string(),
    };
    let disk_type = match template.get("DISK_TYPE") {
        Some(t) if !t.is_empty() => {
            DiskType::from_name(t).ok_or_else(|| alloc_err(&format!("Unknown DISK_TYPE {t:?}.")))?
        }
        _ => DiskType::File,
    };
    template.set("TYPE", ds_type.name());
    if ds_type == DatastoreType::System {
        template.remove("DS_MAD");
    }
    let ds = Datastore {
        header: Header {
            id,
            uid: call.session.uid,
            gid: call.session.gid,
            uname: owner.name.clone(),
            gname: call.session.gname.clone(),
            name: name.clone(),
            perms: Permissions::from_umask(call.oned.config.umask()),
            lock: None,
        },
        ds_mad: if ds_type == DatastoreType::System {
            "-".into()
        } else {
            ds_mad
        },
        tm_mad,
        base_path,
        ds_type,
        disk_type,
        state: DatastoreState::Ready,
        clusters: vec![cid],
        total_mb: 0,
        free_mb: 0,
        used_mb: 0,
        images: Vec::new(),
        template,
    };
    tx.put(ds);
    add_to_cluster(&mut tx, call, cid, Kind::Datastore, id)?;
    commit(call, tx).await?;
    tracing::info!(datastore = id, name, "datastore allocated");
    ok_id(id)
}

fn get_ds(
    call: &Call,
    tx: &Txn<'_>,
    id: i64,
    op: AuthOp,
) -> Result<Datastore, one_proto::ApiError> {
    let ds = common::get_for_change::<Datastore>(call, tx, id, op)?;
    Ok(ds)
}

async fn delete(call: &Call, id: i64) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let ds = get_ds(call, &tx, id, AuthOp::Admin)?;
    if !ds.images.is_empty() {
        return Err(action(
            call.method,
            &format!(
                "Cannot delete datastore {id}: it holds {} image(s).",
                ds.images.len()
            ),
        ));
    }
    remove_from_clusters(&mut tx, Kind::Datastore, id);
    tx.delete::<Datastore>(id);
    super::group::drop_rules_of(&mut tx, ObjectType::Datastore, id);
    commit(call, tx).await?;
    tracing::info!(datastore = id, "datastore deleted");
    ok_id(id)
}

async fn rename(call: &Call, id: i64, name: &str) -> ApiResult {
    common::check_name(name).map_err(|m| action(call.method, &m))?;
    let mut tx = call.oned.store.begin().await;
    let mut ds = get_ds(call, &tx, id, AuthOp::Manage)?;
    if let Some(other) = name_taken::<Datastore>(&tx, name, id) {
        return Err(action(
            call.method,
            &format!("NAME is already taken by DATASTORE {other}."),
        ));
    }
    ds.header.name = name.to_string();
    tx.put(ds);
    commit(call, tx).await?;
    ok_id(id)
}

async fn enable(call: &Call, id: i64, on: bool) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let mut ds = get_ds(call, &tx, id, AuthOp::Manage)?;
    if ds.ds_type != DatastoreType::System {
        return Err(action(
            call.method,
            "Only system datastores can be enabled or disabled.",
        ));
    }
    ds.state = if on {
        DatastoreState::Ready
    } else {
        DatastoreState::Disabled
    };
    tx.put(ds);
    commit(call, tx).await?;
    ok_id(id)
}
