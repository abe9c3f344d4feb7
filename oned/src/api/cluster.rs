//! one.cluster.* / one.clusterpool.info: clusters group hosts, datastores and networks.

use super::common::{self, ApiObject, authorize, authorize_create, check_name, commit, name_taken};
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id, ok_xml};
use crate::store::{Kind, Txn};
use one_proto::acl::{AuthOp, ObjectType};
use one_proto::objects::cluster::Cluster;
use one_proto::objects::datastore::Datastore;
use one_proto::objects::host::Host;
use one_proto::objects::vnet::Vnet;
use one_proto::template::Template;

/// The cluster every installation has; it cannot be deleted.
pub const DEFAULT_CLUSTER: i64 = 0;

impl ApiObject for Cluster {
    const OBJNAME: &'static str = "cluster";
    const POOL_ROOT: &'static str = "CLUSTER_POOL";
    const ACL_TYPE: ObjectType = ObjectType::Cluster;

    fn user_template_mut(&mut self) -> &mut Template {
        &mut self.template
    }
    fn clusters(&self) -> Vec<i64> {
        vec![self.id]
    }
}

pub fn register(r: &mut Registry) {
    r.add("one.cluster.allocate", |c: Call, p: Params| async move {
        allocate_cluster(&c, p.str(0)?).await
    });
    r.add("one.cluster.delete", |c: Call, p: Params| async move {
        delete(&c, p.int32(0)?).await
    });
    r.add("one.cluster.info", |c: Call, p: Params| async move {
        common::info::<Cluster>(&c, p.int32(0)?)
    });
    r.add("one.cluster.update", |c: Call, p: Params| async move {
        common::update::<Cluster>(&c, p.int32(0)?, p.str(1)?, p.opt_int(2, 0)?).await
    });
    r.add("one.cluster.rename", |c: Call, p: Params| async move {
        rename(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.clusterpool.info", |c: Call, _p: Params| async move {
        ok_xml(common::pool_xml::<Cluster>(
            &c,
            common::PoolFilter::All,
            common::IdRange::All,
            |_| true,
            false,
        ))
    });
    r.add("one.cluster.addhost", |c: Call, p: Params| async move {
        set_member(&c, p.int32(0)?, Member::Host(p.int32(1)?), true).await
    });
    r.add("one.cluster.delhost", |c: Call, p: Params| async move {
        set_member(&c, p.int32(0)?, Member::Host(p.int32(1)?), false).await
    });
    r.add(
        "one.cluster.adddatastore",
        |c: Call, p: Params| async move {
            set_member(&c, p.int32(0)?, Member::Datastore(p.int32(1)?), true).await
        },
    );
    r.add(
        "one.cluster.deldatastore",
        |c: Call, p: Params| async move {
            set_member(&c, p.int32(0)?, Member::Datastore(p.int32(1)?), false).await
        },
    );
    r.add("one.cluster.addvnet", |c: Call, p: Params| async move {
        set_member(&c, p.int32(0)?, Member::Vnet(p.int32(1)?), true).await
    });
    r.add("one.cluster.delvnet", |c: Call, p: Params| async move {
        set_member(&c, p.int32(0)?, Member::Vnet(p.int32(1)?), false).await
    });
}

async fn allocate_cluster(call: &Call, name: &str) -> ApiResult {
    check_name(name).map_err(|m| allocate_err(call, &m))?;
    authorize_create(call, &call.oned.store.read(), ObjectType::Cluster)?;
    let mut tx = call.oned.store.begin().await;
    if let Some(other) = name_taken::<Cluster>(&tx, name, -1) {
        return Err(allocate_err(
            call,
            &format!("NAME is already taken by CLUSTER {other}."),
        ));
    }
    let id = tx.next_id(Kind::Cluster);
    tx.put(Cluster {
        id,
        name: name.to_string(),
        hosts: Vec::new(),
        datastores: Vec::new(),
        vnets: Vec::new(),
        template: Template::new(),
    });
    commit(call, tx).await?;
    tracing::info!(cluster = id, name, "cluster allocated");
    ok_id(id)
}

fn allocate_err(call: &Call, reason: &str) -> one_proto::ApiError {
    allocate(call.method, "cluster", reason)
}

fn get_cluster(
    call: &Call,
    tx: &Txn<'_>,
    id: i64,
    op: AuthOp,
) -> Result<Cluster, one_proto::ApiError> {
    let c: Cluster = tx
        .get(id)
        .ok_or_else(|| no_exists(call.method, "cluster", id))?;
    authorize(call, &tx.committed(), &c, op)?;
    Ok(c)
}

async fn delete(call: &Call, id: i64) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let c = get_cluster(call, &tx, id, AuthOp::Admin)?;
    if id == DEFAULT_CLUSTER {
        return Err(action(
            call.method,
            "The default cluster cannot be deleted.",
        ));
    }
    if !c.hosts.is_empty() || !c.datastores.is_empty() || !c.vnets.is_empty() {
        return Err(action(
            call.method,
            &format!(
                "Cannot delete cluster {id}: it still has {} host(s), {} datastore(s) and {} network(s).",
                c.hosts.len(),
                c.datastores.len(),
                c.vnets.len()
            ),
        ));
    }
    tx.delete::<Cluster>(id);
    super::group::drop_rules_of(&mut tx, ObjectType::Cluster, id);
    commit(call, tx).await?;
    tracing::info!(cluster = id, "cluster deleted");
    ok_id(id)
}

async fn rename(call: &Call, id: i64, name: &str) -> ApiResult {
    check_name(name).map_err(|m| action(call.method, &m))?;
    let mut tx = call.oned.store.begin().await;
    let mut c = get_cluster(call, &tx, id, AuthOp::Manage)?;
    if let Some(other) = name_taken::<Cluster>(&tx, name, id) {
        return Err(action(
            call.method,
            &format!("NAME is already taken by CLUSTER {other}."),
        ));
    }
    c.name = name.to_string();
    // Hosts show their cluster's name.
    for hid in c.hosts.clone() {
        if let Some(mut h) = tx.get::<Host>(hid) {
            h.cluster = c.name.clone();
            tx.put(h);
        }
    }
    tx.put(c);
    commit(call, tx).await?;
    ok_id(id)
}

enum Member {
    Host(i64),
    Datastore(i64),
    Vnet(i64),
}

/// Adds or removes a member. A host is in exactly one cluster (adding moves it; removing
/// puts it back in the default cluster); datastores and networks may be in several.
async fn set_member(call: &Call, cid: i64, member: Member, add: bool) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let mut cluster = get_cluster(call, &tx, cid, AuthOp::Admin)?;
    match member {
        Member::Host(hid) => {
            let mut host: Host = tx
                .get(hid)
                .ok_or_else(|| no_exists(call.method, "host", hid))?;
            authorize(call, &tx.committed(), &host, AuthOp::Admin)?;
            let target = if add { cid } else { DEFAULT_CLUSTER };
            if !add && host.cluster_id != cid {
                return Err(action(
                    call.method,
                    &format!("Host {hid} is not in cluster {cid}."),
                ));
            }
            move_host(&mut tx, &mut host, target, call)?;
            tx.put(host);
            cluster = tx.get(cid).unwrap_or(cluster);
        }
        Member::Datastore(did) => {
            let mut ds: Datastore = tx
                .get(did)
                .ok_or_else(|| no_exists(call.method, "datastore", did))?;
            authorize(call, &tx.committed(), &ds, AuthOp::Admin)?;
            toggle(&mut cluster.datastores, did, add);
            toggle(&mut ds.clusters, cid, add);
            tx.put(ds);
        }
        Member::Vnet(vid) => {
            let mut vn: Vnet = tx
                .get(vid)
                .ok_or_else(|| no_exists(call.method, "virtual network", vid))?;
            authorize(call, &tx.committed(), &vn, AuthOp::Admin)?;
            toggle(&mut cluster.vnets, vid, add);
            toggle(&mut vn.clusters, cid, add);
            tx.put(vn);
        }
    }
    tx.put(cluster);
    commit(call, tx).await?;
    ok_id(cid)
}

fn toggle(ids: &mut Vec<i64>, id: i64, add: bool) {
    if add {
        if !ids.contains(&id) {
            ids.push(id);
            ids.sort_unstable();
        }
    } else {
        ids.retain(|x| *x != id);
    }
}

/// Moves a host to cluster `target`, updating both clusters' HOSTS lists.
pub fn move_host(
    tx: &mut Txn<'_>,
    host: &mut Host,
    target: i64,
    call: &Call,
) -> Result<(), one_proto::ApiError> {
    let mut to: Cluster = tx
        .get(target)
        .ok_or_else(|| no_exists(call.method, "cluster", target))?;
    if host.cluster_id != target
        && let Some(mut from) = tx.get::<Cluster>(host.cluster_id)
    {
        toggle(&mut from.hosts, host.id, false);
        tx.put(from);
    }
    toggle(&mut to.hosts, host.id, true);
    host.cluster_id = target;
    host.cluster = to.name.clone();
    tx.put(to);
    Ok(())
}

/// Adds an object id to a cluster's list inside a transaction (used by allocations).
pub fn add_to_cluster(
    tx: &mut Txn<'_>,
    call: &Call,
    cid: i64,
    kind: Kind,
    id: i64,
) -> Result<(), one_proto::ApiError> {
    let mut c: Cluster = tx
        .get(cid)
        .ok_or_else(|| no_exists(call.method, "cluster", cid))?;
    match kind {
        Kind::Host => toggle(&mut c.hosts, id, true),
        Kind::Datastore => toggle(&mut c.datastores, id, true),
        Kind::Vnet => toggle(&mut c.vnets, id, true),
        _ => {
            return Err(internal(
                call.method,
                "only hosts, datastores and networks join clusters",
            ));
        }
    }
    tx.put(c);
    Ok(())
}

/// Removes an object id from every cluster's list (used by deletions).
pub fn remove_from_clusters(tx: &mut Txn<'_>, kind: Kind, id: i64) {
    for mut c in tx.all::<Cluster>() {
        let before = (c.hosts.len(), c.datastores.len(), c.vnets.len());
        match kind {
            Kind::Host => toggle(&mut c.hosts, id, false),
            Kind::Datastore => toggle(&mut c.datastores, id, false),
            Kind::Vnet => toggle(&mut c.vnets, id, false),
            _ => {}
        }
        if before != (c.hosts.len(), c.datastores.len(), c.vnets.len()) {
            tx.put(c);
        }
    }
}

/// The cluster id a call names, with -1 meaning the default cluster.
pub fn resolve_cluster_id(id: i64) -> i64 {
    if id < 0 { DEFAULT_CLUSTER } else { id }
}
