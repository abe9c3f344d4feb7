//! one.host.* / one.hostpool.info: hypervisor hosts. Registering a host records it in INIT;
//! monitoring and drivers come with the host issues.

use super::cluster::{add_to_cluster, remove_from_clusters, resolve_cluster_id};
use super::common::{self, ApiObject, authorize, authorize_create, commit, name_taken};
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id, ok_xml};
use crate::store::{Kind, Txn};
use one_proto::acl::{AuthOp, ObjectType};
use one_proto::objects::host::{Host, HostShare};
use one_proto::state::HostState;
use one_proto::template::Template;

impl ApiObject for Host {
    const OBJNAME: &'static str = "host";
    const POOL_ROOT: &'static str = "HOST_POOL";
    const ACL_TYPE: ObjectType = ObjectType::Host;

    fn user_template_mut(&mut self) -> &mut Template {
        &mut self.template
    }
    fn clusters(&self) -> Vec<i64> {
        vec![self.cluster_id]
    }
}

pub fn register(r: &mut Registry) {
    r.add("one.host.allocate", |c: Call, p: Params| async move {
        allocate_host(&c, p.str(0)?, p.str(1)?, p.str(2)?, p.opt_int(3, -1)?).await
    });
    r.add("one.host.delete", |c: Call, p: Params| async move {
        delete(&c, p.int32(0)?).await
    });
    r.add("one.host.info", |c: Call, p: Params| async move {
        common::info::<Host>(&c, p.int32(0)?)
    });
    r.add("one.host.update", |c: Call, p: Params| async move {
        common::update::<Host>(&c, p.int32(0)?, p.str(1)?, p.opt_int(2, 0)?).await
    });
    r.add("one.host.rename", |c: Call, p: Params| async move {
        rename(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.host.status", |c: Call, p: Params| async move {
        status(&c, p.int32(0)?, p.int32(1)?).await
    });
    r.add("one.hostpool.info", |c: Call, _p: Params| async move {
        ok_xml(common::pool_xml::<Host>(
            &c,
            common::PoolFilter::All,
            common::IdRange::All,
            |_| true,
            false,
        ))
    });
}

/// Host names: what `ssh` and libvirt accept (no blanks, no control characters).
fn check_host_name(name: &str) -> Result<(), String> {
    common::check_name(name)?;
    if name.chars().any(char::is_whitespace) {
        return Err("Invalid NAME, host names cannot contain spaces".into());
    }
    Ok(())
}

fn check_mad(kind: &str, mad: &str) -> Result<(), String> {
    if mad.is_empty() {
        return Err(format!("{kind} cannot be empty"));
    }
    if !mad
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(format!("{kind} {mad:?} is not a valid driver name"));
    }
    Ok(())
}

async fn allocate_host(
    call: &Call,
    name: &str,
    im_mad: &str,
    vm_mad: &str,
    cluster: i64,
) -> ApiResult {
    let alloc_err = |m: &str| allocate(call.method, "host", m);
    check_host_name(name).map_err(|m| alloc_err(&m))?;
    check_mad("IM_MAD", im_mad).map_err(|m| alloc_err(&m))?;
    check_mad("VM_MAD", vm_mad).map_err(|m| alloc_err(&m))?;
    authorize_create(call, &call.oned.store.read(), ObjectType::Host)?;
    let cid = resolve_cluster_id(cluster);
    let mut tx = call.oned.store.begin().await;
    if let Some(other) = name_taken::<Host>(&tx, name, -1) {
        return Err(alloc_err(&format!(
            "NAME is already taken by HOST {other}."
        )));
    }
    let cluster: one_proto::objects::cluster::Cluster = tx
        .get(cid)
        .ok_or_else(|| no_exists(call.method, "cluster", cid))?;
    // Adding a host to a cluster needs ADMIN on the cluster (OpenNebula's rule).
    authorize(call, &tx.committed(), &cluster, AuthOp::Admin)?;
    let id = tx.next_id(Kind::Host);
    let mut template = Template::new();
    template.set("IM_MAD", im_mad);
    template.set("VM_MAD", vm_mad);
    tx.put(Host {
        id,
        name: name.to_string(),
        state: HostState::Init,
        prev_state: HostState::Init,
        im_mad: im_mad.to_string(),
        vm_mad: vm_mad.to_string(),
        cluster_id: cid,
        cluster: cluster.name.clone(),
        share: HostShare::default(),
        vms: Vec::new(),
        template,
        monitoring: None,
    });
    add_to_cluster(&mut tx, call, cid, Kind::Host, id)?;
    commit(call, tx).await?;
    call.oned.monitor.wake();
    call.oned.hostmgr.wake();
    tracing::info!(
        host = id,
        name,
        im_mad,
        vm_mad,
        cluster = cid,
        "host allocated"
    );
    ok_id(id)
}

fn get_host(call: &Call, tx: &Txn<'_>, id: i64, op: AuthOp) -> Result<Host, one_proto::ApiError> {
    let h: Host = tx
        .get(id)
        .ok_or_else(|| no_exists(call.method, "host", id))?;
    authorize(call, &tx.committed(), &h, op)?;
    Ok(h)
}

async fn delete(call: &Call, id: i64) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let h = get_host(call, &tx, id, AuthOp::Admin)?;
    if !h.vms.is_empty() || h.share.running_vms > 0 {
        return Err(action(
            call.method,
            &format!(
                "Cannot delete host {id}: it has {} VM(s).",
                h.vms.len().max(h.share.running_vms as usize)
            ),
        ));
    }
    remove_from_clusters(&mut tx, Kind::Host, id);
    tx.delete::<Host>(id);
    super::group::drop_rules_of(&mut tx, ObjectType::Host, id);
    commit(call, tx).await?;
    tracing::info!(host = id, "host deleted");
    ok_id(id)
}

async fn rename(call: &Call, id: i64, name: &str) -> ApiResult {
    check_host_name(name).map_err(|m| action(call.method, &m))?;
    let mut tx = call.oned.store.begin().await;
    let mut h = get_host(call, &tx, id, AuthOp::Admin)?;
    if let Some(other) = name_taken::<Host>(&tx, name, id) {
        return Err(action(
            call.method,
            &format!("NAME is already taken by HOST {other}."),
        ));
    }
    h.name = name.to_string();
    tx.put(h);
    commit(call, tx).await?;
    ok_id(id)
}

/// `one.host.status(id, 0|1|2)`: enable, disable, offline.
async fn status(call: &Call, id: i64, status: i64) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let mut h = get_host(call, &tx, id, AuthOp::Admin)?;
    let new = match status {
        // Enabling a host that was monitored before returns it to MONITORED, else INIT.
        0 => {
            if h.share.total_cpu > 0 {
                HostState::Monitored
            } else {
                HostState::Init
            }
        }
        1 => HostState::Disabled,
        2 => HostState::Offline,
        _ => {
            return Err(rpc_api(
                call.method,
                "Wrong status: use 0 (enable), 1 (disable) or 2 (offline).",
            ));
        }
    };
    if status == 0 && !matches!(h.state, HostState::Disabled | HostState::Offline) {
        // Already enabled: nothing to change (OpenNebula answers success too).
        return ok_id(id);
    }
    if h.state != new {
        h.prev_state = h.state;
        h.state = new;
    }
    if new == HostState::Offline {
        // An offline host is not monitored: forget its capacity.
        h.share.total_cpu = 0;
        h.share.total_mem = 0;
        h.share.max_cpu = 0;
        h.share.max_mem = 0;
        h.monitoring = None;
    }
    tx.put(h);
    commit(call, tx).await?;
    // An enabled host is monitored again at once.
    call.oned.monitor.wake();
    call.oned.hostmgr.wake();
    tracing::info!(host = id, state = %new, "host status changed");
    ok_id(id)
}
