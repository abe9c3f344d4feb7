//! one.vn.* / one.vnpool.info: virtual networks, their address ranges, leases, holds and
//! reservations; and the NIC lease contract VM allocation uses ([`lease_for_nic`],
//! `ops::lease::release_nic`).
//!
//! Address arithmetic and lease bookkeeping live in `one_proto::objects::vnet`; this module
//! does what needs the pools: authorization, names, clusters, quotas, reservations (which
//! change two networks in one transaction).
//!
//! Error codes follow OpenNebula 7: failures of the network's own operations (bad address
//! range, address in use, ...) are INTERNAL, wrong requests to reserve/delete are ACTION.
//!
//! NETWORK quota: [`lease_for_nic`] charges one lease to the VM owner and `ops::lease::release_nic`
//! gives it back; the VM code must not charge or release NETWORK quota itself.

use super::cluster::{add_to_cluster, remove_from_clusters, resolve_cluster_id};
use super::common::{
    self, ApiObject, authorize, authorize_create, check_lock, commit, get_for_change,
    parse_template,
};
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id, ok_xml};
use crate::authz::{self, ObjAuth};
use crate::config::{NetworkConfig, VLAN_ID_MAX, VNI_MAX};
use crate::ops::quota::{self, QuotaUsage};
use crate::store::{Kind, State, Txn};
use one_proto::acl::{AuthOp, ObjectType};
use one_proto::objects::cluster::Cluster;
use one_proto::objects::user::User;
use one_proto::objects::vm::Vm;
use one_proto::objects::vnet::{
    AddrRequest, ArContext, LeaseOwner, Vnet, mac_to_string, parse_mac_prefix,
};
use one_proto::objects::{Header, Permissions};
use one_proto::state::VnetState;
use one_proto::template::{Template, Vector};
use one_proto::xml::XmlWriter;
use one_proto::{ApiError, ErrorCode};

const OBJNAME: &str = "virtual network";

impl ApiObject for Vnet {
    const OBJNAME: &'static str = OBJNAME;
    const POOL_ROOT: &'static str = "VNET_POOL";
    const ACL_TYPE: ObjectType = ObjectType::Net;

    crate::owned_header!();
    fn user_template_mut(&mut self) -> &mut Template {
        &mut self.template
    }
    fn clusters(&self) -> Vec<i64> {
        self.clusters.clone()
    }
}

pub fn register(r: &mut Registry) {
    r.add("one.vn.allocate", |c: Call, p: Params| async move {
        allocate_vn(&c, p.str(0)?, p.opt_int(1, -1)?).await
    });
    r.add("one.vn.delete", |c: Call, p: Params| async move {
        delete(&c, p.int32(0)?).await
    });
    r.add("one.vn.info", |c: Call, p: Params| async move {
        info(&c, p.int32(0)?)
    });
    r.add("one.vn.update", |c: Call, p: Params| async move {
        update(&c, p.int32(0)?, p.str(1)?, p.opt_int(2, 0)?).await
    });
    r.add("one.vn.rename", |c: Call, p: Params| async move {
        common::rename_owned::<Vnet>(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.vn.chown", |c: Call, p: Params| async move {
        common::chown::<Vnet>(&c, p.int32(0)?, p.int32(1)?, p.int32(2)?).await
    });
    r.add("one.vn.chmod", |c: Call, p: Params| async move {
        common::chmod::<Vnet>(&c, p.int32(0)?, common::chmod_bits(&p, 1)?).await
    });
    r.add("one.vn.lock", |c: Call, p: Params| async move {
        common::lock::<Vnet>(&c, p.int32(0)?, p.int32(1)?, p.opt_bool(2, false)?).await
    });
    r.add("one.vn.unlock", |c: Call, p: Params| async move {
        common::unlock::<Vnet>(&c, p.int32(0)?).await
    });
    r.add("one.vnpool.info", |c: Call, p: Params| async move {
        common::pool_info::<Vnet>(&c, p.opt_int(0, -2)?, p.opt_int(1, -1)?, p.opt_int(2, -1)?)
    });
    r.add("one.vn.add_ar", |c: Call, p: Params| async move {
        add_ar(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.vn.rm_ar", |c: Call, p: Params| async move {
        rm_ar(
            &c,
            p.int32(0)?,
            p.int32(1)?,
            p.opt_bool(2, false)?,
            AuthOp::Admin,
        )
        .await
    });
    r.add("one.vn.free_ar", |c: Call, p: Params| async move {
        rm_ar(&c, p.int32(0)?, p.int32(1)?, false, AuthOp::Manage).await
    });
    r.add("one.vn.update_ar", |c: Call, p: Params| async move {
        update_ar(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.vn.reserve", |c: Call, p: Params| async move {
        reserve(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.vn.hold", |c: Call, p: Params| async move {
        hold_release(&c, p.int32(0)?, p.str(1)?, true).await
    });
    r.add("one.vn.release", |c: Call, p: Params| async move {
        hold_release(&c, p.int32(0)?, p.str(1)?, false).await
    });
    r.add("one.vn.recover", |c: Call, p: Params| async move {
        recover(&c, p.int32(0)?, p.int32(1)?).await
    });
}

// ---------------------------------------------------------------------------------------------
// Drivers and template rules

/// BRIDGE_TYPE values each VN_MAD accepts, first = default (oned.conf VN_MAD_CONF).
const VN_MAD_CONF: &[(&str, &[&str])] = &[
    ("dummy", &["linux"]),
    ("802.1Q", &["linux"]),
    ("fw", &["linux"]),
    ("ovswitch", &["openvswitch", "openvswitch_dpdk"]),
    ("vxlan", &["linux"]),
    ("ovswitch_vxlan", &["openvswitch"]),
    ("bridge", &["linux"]),
    ("elastic", &["linux"]),
    ("nodeport", &["linux"]),
];

/// Template attributes only oneadmin may set or change (oned.conf VNET_RESTRICTED_ATTR).
const RESTRICTED: &[&str] = &[
    "VN_MAD",
    "PHYDEV",
    "QINQ_TYPE",
    "BRIDGE",
    "CONF",
    "BRIDGE_CONF",
    "OVS_BRIDGE_CONF",
    "IP_LINK_CONF",
    "FILTER",
    "FILTER_IP_SPOOFING",
    "FILTER_MAC_SPOOFING",
    "CLUSTER_IDS",
    "EXTERNAL",
];
/// The same, inside address ranges (`AR/VN_MAD`, ...).
const AR_RESTRICTED: &[&str] = &[
    "VN_MAD",
    "PHYDEV",
    "BRIDGE",
    "FILTER",
    "FILTER_IP_SPOOFING",
    "FILTER_MAC_SPOOFING",
];

fn bridge_type_for(vn_mad: &str, requested: &str) -> Result<String, String> {
    let Some((_, types)) = VN_MAD_CONF.iter().find(|(n, _)| *n == vn_mad) else {
        let known: Vec<&str> = VN_MAD_CONF.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "VN_MAD named \"{vn_mad}\" is not defined in oned.conf (use one of: {})",
            known.join(", ")
        ));
    };
    let requested = requested.trim();
    if requested.is_empty() {
        return Ok(types[0].to_string());
    }
    types
        .iter()
        .find(|t| **t == requested)
        .map(|t| t.to_string())
        .ok_or_else(|| {
            format!(
                "Attribute BRIDGE_TYPE has wrong value \"{requested}\" for VN_MAD_CONF {vn_mad} in \
                 oned.conf (use {})",
                types.join(" or ")
            )
        })
}

/// Takes (removes) a single attribute, trimmed.
fn take(t: &mut Template, name: &str) -> String {
    let v = t
        .get(name)
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    t.remove(name);
    v
}

fn is_yes(s: &str) -> bool {
    matches!(s.trim().to_ascii_uppercase().as_str(), "YES" | "TRUE" | "1")
}

/// VLAN_ID / AUTOMATIC_VLAN_ID (or the OUTER_ pair) as OpenNebula reads them: an integer id
/// wins over the automatic flag. `max`: 4095 for VLANs, the 24-bit VNI limit for VXLAN.
fn parse_vlan(
    t: &mut Template,
    id_name: &str,
    auto_name: &str,
    max: i64,
) -> Result<(String, bool), String> {
    let id = t
        .get(id_name)
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if !id.is_empty() {
        let n: i64 = id
            .parse()
            .ok()
            .filter(|n| (0..=max).contains(n))
            .ok_or_else(|| format!("{id_name} must be an integer from 0 to {max}, not {id:?}"))?;
        t.set(id_name, n.to_string());
        t.remove(auto_name);
        return Ok((n.to_string(), false));
    }
    t.remove(id_name);
    let auto = is_yes(&take(t, auto_name));
    Ok((String::new(), auto))
}

/// The mandatory attributes of each driver (OpenNebula's parse_phydev_vlans).
fn check_driver_args(v: &Vnet) -> Result<(), String> {
    let (phydev, bridge, vlan, outer) = match v.vn_mad.as_str() {
        "dummy" => (false, true, false, false),
        "802.1Q" | "vxlan" => (true, false, true, false),
        "ovswitch_vxlan" => (false, false, false, true),
        _ => (false, false, false, false),
    };
    let m = &v.vn_mad;
    if phydev && v.phydev.is_empty() {
        return Err(format!("PHYDEV is mandatory for driver {m}"));
    }
    if bridge && v.bridge.is_empty() {
        return Err(format!("BRIDGE is mandatory for driver {m}"));
    }
    if vlan && !v.vlan_id_automatic && v.vlan_id.is_empty() {
        return Err(format!(
            "VLAN_ID (or AUTOMATIC_VLAN_ID) is mandatory for driver {m}"
        ));
    }
    if outer && !v.outer_vlan_id_automatic && v.outer_vlan_id.is_empty() {
        return Err(format!(
            "OUTER_VLAN_ID (or AUTOMATIC) is mandatory for driver {m}"
        ));
    }
    Ok(())
}

/// SECURITY_GROUPS with the default group 0 added, sorted and unique.
fn security_groups_with_default(s: &str) -> Result<String, String> {
    let mut ids = parse_ids(s).map_err(|bad| {
        format!("SECURITY_GROUPS must be a comma-separated list of security group ids, not {bad:?}")
    })?;
    ids.push(0);
    ids.sort_unstable();
    ids.dedup();
    Ok(join_ids(&ids))
}

fn parse_ids(s: &str) -> Result<Vec<i64>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<i64>().map_err(|_| p.to_string()))
        .collect()
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// Assigns automatic VLAN ids as OpenNebula: 802.1Q / Open vSwitch ids from the VLAN id pool
/// (`[network] vlan_ids_start` / `vlan_ids_reserved`, free among other networks' automatic
/// ids), trying START + id mod (4095 - START) first, then the lowest free one; VXLAN ids are
/// `vxlan_ids_start` + network id, a pool of their own.
fn assign_vlans(tx: &Txn<'_>, v: &mut Vnet, net: &NetworkConfig) -> Result<(), String> {
    let id = v.header.id;
    let from_pool = |tx: &Txn<'_>| -> Result<String, String> {
        let reserved = net.reserved_vlan_ids()?;
        let used: std::collections::HashSet<i64> = tx
            .all::<Vnet>()
            .iter()
            .filter(|o| o.vlan_id_automatic && o.header.id != id && o.vn_mad != "vxlan")
            .filter_map(|o| o.vlan_id.parse().ok())
            .collect();
        pick_vlan_id(id, net.vlan_ids_start, &reserved, &used)
            .map(|c| c.to_string())
            .ok_or_else(|| "Cannot automatically assign VLAN_ID to network.".to_string())
    };
    let vxlan = || -> Result<String, String> {
        let vni = net.vxlan_ids_start + id;
        if vni > VNI_MAX {
            return Err(format!(
                "Cannot automatically assign VLAN_ID to network: VNI {vni} is above {VNI_MAX}."
            ));
        }
        Ok(vni.to_string())
    };
    match v.vn_mad.as_str() {
        "802.1Q" | "ovswitch" if v.vlan_id_automatic && v.vlan_id.is_empty() => {
            v.vlan_id = from_pool(tx)?;
        }
        "vxlan" if v.vlan_id_automatic && v.vlan_id.is_empty() => v.vlan_id = vxlan()?,
        "ovswitch_vxlan" => {
            if v.vlan_id_automatic && v.vlan_id.is_empty() {
                v.vlan_id = from_pool(tx)?;
            }
            if v.outer_vlan_id_automatic && v.outer_vlan_id.is_empty() {
                v.outer_vlan_id = vxlan()?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// OpenNebula's VLAN bitmap: the hint START + id mod (4095 - START) when free, else the
/// lowest free id from START; reserved ids never.
fn pick_vlan_id(
    vnet_id: i64,
    start: i64,
    reserved: &[(i64, i64)],
    used: &std::collections::HashSet<i64>,
) -> Option<i64> {
    let free = |c: i64| !used.contains(&c) && !reserved.iter().any(|(a, b)| (*a..=*b).contains(&c));
    let hint = start + vnet_id.rem_euclid((VLAN_ID_MAX - start).max(1));
    if free(hint) {
        return Some(hint);
    }
    (start..=VLAN_ID_MAX).find(|c| free(*c))
}

fn ar_context(call: &Call) -> ArContext {
    ArContext {
        mac_prefix: parse_mac_prefix(&call.oned.config.mac_prefix).unwrap_or(0x0200),
        random: rand::random(),
    }
}

fn restricted_error(call: &Call, what: &str, attr: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Authorization,
        format!(
            "[{}] User [{}] : {what} {attr}.",
            call.method, call.session.uid
        ),
    )
}

/// Refuses an operation unless the network is READY (or UPDATE_FAILURE), as OpenNebula.
fn check_ready(call: &Call, v: &Vnet, what: &str) -> Result<(), ApiError> {
    match v.state {
        VnetState::Ready | VnetState::UpdateFailure => Ok(()),
        s => Err(action(
            call.method,
            &format!(
                "Could not {what}, Virtual Network is in wrong state: {}",
                s.name()
            ),
        )),
    }
}

fn set_state(v: &mut Vnet, s: VnetState) {
    v.prev_state = v.state;
    v.state = s;
}

// ---------------------------------------------------------------------------------------------
// allocate / delete / info / update

/// Builds a network from an allocation template (OpenNebula's VirtualNetwork::insert):
/// NAME, VN_MAD (required), PHYDEV, BRIDGE (default `onebr<id>` or `onebr.<vlan>`),
/// BRIDGE_TYPE, VLAN ids, SECURITY_GROUPS (0 always added) and the AR vectors.
fn build_vnet(call: &Call, id: i64, mut t: Template, cluster: i64) -> Result<Vnet, String> {
    let name = take(&mut t, "NAME");
    if name.is_empty() {
        return Err("No NAME in template for Virtual Network.".into());
    }
    common::check_name(&name)?;
    t.remove("TEMPLATE_ID");
    let vn_mad = take(&mut t, "VN_MAD");
    if vn_mad.is_empty() {
        return Err(
            "No VN_MAD in template for Virtual Network. Set VN_MAD to the network \
                    driver, e.g. VN_MAD=\"bridge\"."
                .into(),
        );
    }
    let phydev = take(&mut t, "PHYDEV");
    let bridge = take(&mut t, "BRIDGE");
    let vlan_max = if vn_mad == "vxlan" {
        VNI_MAX
    } else {
        VLAN_ID_MAX
    };
    let outer_max = if vn_mad == "ovswitch_vxlan" {
        VNI_MAX
    } else {
        VLAN_ID_MAX
    };
    let (vlan_id, vlan_auto) = parse_vlan(&mut t, "VLAN_ID", "AUTOMATIC_VLAN_ID", vlan_max)?;
    let (outer_id, outer_auto) = parse_vlan(
        &mut t,
        "OUTER_VLAN_ID",
        "AUTOMATIC_OUTER_VLAN_ID",
        outer_max,
    )?;
    let bridge_type = bridge_type_for(&vn_mad, &take(&mut t, "BRIDGE_TYPE"))?;
    let sgs = security_groups_with_default(&take(&mut t, "SECURITY_GROUPS"))?;
    let ars: Vec<Vector> = t
        .remove("AR")
        .into_iter()
        .filter_map(|a| match a {
            one_proto::AttrValue::Vector(v) => Some(v),
            one_proto::AttrValue::Single(_) => None,
        })
        .collect();

    for (k, v) in [
        ("VN_MAD", &vn_mad),
        ("PHYDEV", &phydev),
        ("BRIDGE_TYPE", &bridge_type),
        ("SECURITY_GROUPS", &sgs),
    ] {
        t.set(k, v.clone());
    }
    let mut vnet = Vnet {
        header: Header {
            id,
            uid: call.session.uid,
            gid: call.session.gid,
            uname: call.session.uname.clone(),
            gname: call.session.gname.clone(),
            name,
            perms: Permissions::from_umask(call.oned.config.umask()),
            lock: None,
        },
        clusters: vec![cluster],
        bridge,
        bridge_type,
        state: VnetState::Ready,
        prev_state: VnetState::Ready,
        parent_network_id: None,
        template_id: None,
        vn_mad,
        phydev,
        vlan_id,
        outer_vlan_id: outer_id,
        vlan_id_automatic: vlan_auto,
        outer_vlan_id_automatic: outer_auto,
        vrouters: Vec::new(),
        updated_vms: Vec::new(),
        outdated_vms: Vec::new(),
        updating_vms: Vec::new(),
        error_vms: Vec::new(),
        template: t,
        ars: Vec::new(),
        next_ar_id: 0,
    };
    // Drivers that need a BRIDGE are checked before the default name is given.
    check_driver_args(&vnet)?;
    if vnet.bridge.is_empty() && vnet.bridge_type != "none" {
        vnet.bridge = if vnet.vlan_id.is_empty() {
            format!("onebr{id}")
        } else {
            format!("onebr.{}", vnet.vlan_id)
        };
    }
    vnet.template.set("BRIDGE", vnet.bridge.clone());
    for ar in &ars {
        vnet.add_ar(ar, ar_context(call))?;
    }
    Ok(vnet)
}

async fn allocate_vn(call: &Call, text: &str, cluster: i64) -> ApiResult {
    let t = parse_template(call, text)?;
    let cid = resolve_cluster_id(cluster);
    authorize_create(call, &call.oned.store.read(), ObjectType::Net)?;
    if !call.session.is_admin() {
        if let Some(a) = RESTRICTED.iter().find(|a| t.contains(a)) {
            return Err(restricted_error(
                call,
                "VNET Template includes a restricted attribute",
                a,
            ));
        }
        for ar in t.vectors("AR") {
            if let Some(a) = AR_RESTRICTED.iter().find(|a| ar.get(a).is_some()) {
                return Err(restricted_error(
                    call,
                    "AR includes a restricted attribute",
                    a,
                ));
            }
        }
    }
    let mut tx = call.oned.store.begin().await;
    let cl: Cluster = tx
        .get(cid)
        .ok_or_else(|| no_exists(call.method, "cluster", cid))?;
    authorize(call, &tx.committed(), &cl, AuthOp::Admin)?;
    let id = tx.next_id(Kind::Vnet);
    let mut vnet = build_vnet(call, id, t, cid).map_err(|m| internal(call.method, &m))?;
    if let Some(other) =
        common::name_taken_by_owner::<Vnet>(&tx, &vnet.header.name, call.session.uid, -1)
    {
        return Err(internal(
            call.method,
            &format!("NAME is already taken by NET {other}."),
        ));
    }
    assign_vlans(&tx, &mut vnet, &call.oned.config.network)
        .map_err(|m| internal(call.method, &m))?;
    let name = vnet.header.name.clone();
    tx.put(vnet);
    add_to_cluster(&mut tx, call, cid, Kind::Vnet, id)?;
    commit(call, tx).await?;
    tracing::info!(vnet = id, name, cluster = cid, "virtual network allocated");
    ok_id(id)
}

/// Removes a network: from its clusters, and for a reservation, gives its addresses back to
/// the parent (and the reservation owner's NETWORK quota).
fn drop_vnet(tx: &mut Txn<'_>, v: &Vnet) {
    let id = v.header.id;
    remove_from_clusters(tx, Kind::Vnet, id);
    if let Some(pid) = v.parent_network_id {
        match tx.get::<Vnet>(pid) {
            Some(mut parent) => {
                let freed = parent.free_owner(LeaseOwner::Vnet(id));
                tx.put(parent);
                if freed > 0 {
                    let usage = QuotaUsage {
                        leases: vec![(pid, freed as i64)],
                        ..QuotaUsage::default()
                    };
                    quota::release(tx, v.header.uid, v.header.gid, &usage);
                }
            }
            None => tracing::warn!(
                vnet = id,
                parent = pid,
                "reservation's parent network is gone"
            ),
        }
    }
    // Rules naming the network (`#id`) would grant on a future network of the same id.
    super::group::drop_rules_of(tx, ObjectType::Net, id);
    tx.delete::<Vnet>(id);
}

async fn delete(call: &Call, id: i64) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let v: Vnet = get_for_change(call, &tx, id, AuthOp::Manage)?;
    if v.used_leases() > 0 {
        return Err(action(
            call.method,
            "Cannot delete virtual network. Can not remove a virtual network with leases in use",
        ));
    }
    if matches!(
        v.state,
        VnetState::LockCreate | VnetState::LockDelete | VnetState::Done
    ) {
        return Err(action(
            call.method,
            &format!(
                "Cannot delete virtual network. Can not remove a Virtual Network, wrong state {}",
                v.state.name()
            ),
        ));
    }
    drop_vnet(&mut tx, &v);
    commit(call, tx).await?;
    tracing::info!(vnet = id, "virtual network deleted");
    ok_id(id)
}

fn vm_auth(vm: &Vm) -> ObjAuth {
    ObjAuth {
        obj_type: ObjectType::Vm,
        id: vm.header.id,
        uid: vm.header.uid,
        gid: vm.header.gid,
        perms: Some(vm.header.perms),
        clusters: Vec::new(),
    }
}

/// Which leases a caller sees: all of them with MANAGE on the network; otherwise only those
/// of VMs and reservations the caller may use (OpenNebula hides the rest, held ones too).
fn lease_visibility<'a>(
    call: &'a Call,
    state: &'a State,
    v: &Vnet,
) -> impl Fn(LeaseOwner) -> bool + 'a {
    let all = authz::allowed(state, &call.session, &v.auth(), AuthOp::Manage);
    move |owner| {
        all || match owner {
            LeaseOwner::Vm(id) => state
                .vms
                .get(id)
                .is_some_and(|vm| authz::allowed(state, &call.session, &vm_auth(vm), AuthOp::Use)),
            LeaseOwner::Vnet(id) => state
                .vnets
                .get(id)
                .is_some_and(|r| authz::allowed(state, &call.session, &r.auth(), AuthOp::Use)),
            LeaseOwner::Vrouter(_) => false,
        }
    }
}

fn info(call: &Call, id: i64) -> ApiResult {
    let v = common::get_authorized::<Vnet>(call, id, AuthOp::Use)?;
    let state = call.oned.store.read();
    let show = lease_visibility(call, &state, &v);
    let mut w = XmlWriter::new();
    v.write_xml(&mut w, Some(&show));
    ok_xml(w.finish())
}

/// `one.vn.update`: as the common update, then the driver attributes are read back from the
/// new template (OpenNebula's post_update_template): VN_MAD stays mandatory, BRIDGE, PHYDEV
/// and VLAN ids follow the template. Non-admins may not change restricted attributes.
async fn update(call: &Call, id: i64, text: &str, mode: i64) -> ApiResult {
    if mode != 0 && mode != 1 {
        return Err(rpc_api(call.method, "Wrong update type"));
    }
    let new = parse_template(call, text)?;
    let fail = |m: &str| internal(call.method, &format!("Cannot update template. {m}"));
    let mut tx = call.oned.store.begin().await;
    let mut v: Vnet = get_for_change(call, &tx, id, AuthOp::Manage)?;
    let mut t = if mode == 0 {
        new
    } else {
        let mut t = v.template.clone();
        t.merge(&new);
        t
    };
    if !call.session.is_admin()
        && let Some(a) = RESTRICTED.iter().find(|a| t.get(a) != v.template.get(a))
    {
        return Err(fail(&format!("Tried to change restricted attribute: {a}")));
    }
    t.remove("TEMPLATE_ID");
    let vn_mad = take(&mut t, "VN_MAD");
    if vn_mad.is_empty() {
        return Err(fail("No VN_MAD in template for Virtual Network."));
    }
    let mut br_type = take(&mut t, "BRIDGE_TYPE");
    if vn_mad != v.vn_mad && br_type == v.bridge_type {
        br_type.clear();
    }
    v.bridge_type = bridge_type_for(&vn_mad, &br_type).map_err(|m| fail(&m))?;
    v.vn_mad = vn_mad;
    v.phydev = take(&mut t, "PHYDEV");
    t.remove("AUTOMATIC_VLAN_ID");
    t.remove("AUTOMATIC_OUTER_VLAN_ID");
    if v.vlan_id_automatic {
        t.remove("VLAN_ID");
    } else {
        v.vlan_id = take(&mut t, "VLAN_ID");
    }
    if v.outer_vlan_id_automatic {
        t.remove("OUTER_VLAN_ID");
    } else {
        v.outer_vlan_id = take(&mut t, "OUTER_VLAN_ID");
    }
    let bridge = take(&mut t, "BRIDGE");
    if !bridge.is_empty() {
        v.bridge = bridge;
    }
    for (k, val) in [
        ("VN_MAD", &v.vn_mad),
        ("BRIDGE_TYPE", &v.bridge_type),
        ("PHYDEV", &v.phydev),
        ("BRIDGE", &v.bridge),
    ] {
        t.set(k, val.clone());
    }
    if !v.vlan_id_automatic && !v.vlan_id.is_empty() {
        t.set("VLAN_ID", v.vlan_id.clone());
    }
    if !v.outer_vlan_id_automatic && !v.outer_vlan_id.is_empty() {
        t.set("OUTER_VLAN_ID", v.outer_vlan_id.clone());
    }
    v.template = t;
    tx.put(v);
    commit(call, tx).await?;
    ok_id(id)
}

// ---------------------------------------------------------------------------------------------
// Address ranges

async fn add_ar(call: &Call, id: i64, text: &str) -> ApiResult {
    let t = parse_template(call, text)?;
    let mut tx = call.oned.store.begin().await;
    // Adding ranges to networks not made from a VN template needs ADMIN (all of ours).
    let mut v: Vnet = get_for_change(call, &tx, id, AuthOp::Admin)?;
    check_ready(call, &v, "execute one.vn.add_ar")?;
    let ar = t.vector("AR").ok_or_else(|| {
        internal(
            call.method,
            "Wrong AR definition. AR vector attribute is missing.",
        )
    })?;
    if !call.session.is_admin()
        && let Some(a) = AR_RESTRICTED.iter().find(|a| ar.get(a).is_some())
    {
        return Err(restricted_error(
            call,
            "AR includes a restricted attribute",
            a,
        ));
    }
    let ar_id = v
        .add_ar(ar, ar_context(call))
        .map_err(|m| internal(call.method, &m))?;
    tx.put(v);
    commit(call, tx).await?;
    tracing::info!(vnet = id, ar = ar_id, "address range added");
    ok_id(id)
}

/// `rm_ar` (ADMIN, optional force) and `free_ar` (MANAGE, used by reservation owners): removes
/// a range; a reservation's range gives its addresses back to the parent network.
async fn rm_ar(call: &Call, id: i64, ar_id: i64, force: bool, op: AuthOp) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let mut v: Vnet = get_for_change(call, &tx, id, op)?;
    if !matches!(v.state, VnetState::Ready | VnetState::UpdateFailure) {
        return Err(action(
            call.method,
            &format!(
                "Could not remove Adress Range, Virtual Network is in wrong state: {}",
                v.state.name()
            ),
        ));
    }
    let ar = v
        .ar(ar_id)
        .cloned()
        .ok_or_else(|| internal(call.method, "Address Range does not exist"))?;
    if !force && ar.used() > 0 {
        return Err(internal(call.method, "Address Range has leases in use"));
    }
    v.ars.retain(|a| a.ar_id != ar_id);
    let (uid, gid) = (v.header.uid, v.header.gid);
    let parent = v.parent_network_id;
    tx.put(v);
    if let (Some(pid), Some(par)) = (parent, ar.parent_network_ar_id)
        && let Some(mut p) = tx.get::<Vnet>(pid)
    {
        let mac = AddrRequest::Mac(mac_to_string(ar.mac));
        let freed = match p.ar_mut(par) {
            Some(pa) => match pa.index_of(&mac) {
                Some(first) => pa.free_range(LeaseOwner::Vnet(id), first, ar.size),
                None => 0,
            },
            None => 0,
        };
        tx.put(p);
        if freed > 0 {
            let usage = QuotaUsage {
                leases: vec![(pid, freed as i64)],
                ..QuotaUsage::default()
            };
            quota::release(&mut tx, uid, gid, &usage);
        }
    }
    commit(call, tx).await?;
    tracing::info!(vnet = id, ar = ar_id, force, "address range removed");
    ok_id(id)
}

async fn update_ar(call: &Call, id: i64, text: &str) -> ApiResult {
    let t = parse_template(call, text)?;
    let mut tx = call.oned.store.begin().await;
    let mut v: Vnet = get_for_change(call, &tx, id, AuthOp::Manage)?;
    check_ready(call, &v, "execute one.vn.update_ar")?;
    let fail = |m: &str| internal(call.method, m);
    let mut upd = t
        .vector("AR")
        .cloned()
        .ok_or_else(|| fail("Wrong AR definition. AR vector attribute is missing."))?;
    let ar_id: i64 = upd
        .get("AR_ID")
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| fail("AR/AR_ID attribute is missing."))?;
    let admin = call.session.is_admin();
    let ar = v
        .ar_mut(ar_id)
        .ok_or_else(|| fail(&format!("Address Range with ID {ar_id} was not found.")))?;
    if !admin {
        for a in AR_RESTRICTED {
            match upd.get(a) {
                Some(new) if ar.attrs.get(a) != Some(new) => {
                    return Err(fail(&format!("AR includes a restricted attribute {a}")));
                }
                _ => {}
            }
            // Restricted values stay as they were.
            upd.remove(a);
            if let Some(old) = ar.attrs.get(a) {
                upd.set(a, old.to_string());
            }
        }
    }
    ar.update(&upd).map_err(|m| fail(&m))?;
    tx.put(v);
    commit(call, tx).await?;
    tracing::info!(vnet = id, ar = ar_id, "address range updated");
    ok_id(id)
}

// ---------------------------------------------------------------------------------------------
// Holds and reservations

async fn hold_release(call: &Call, id: i64, text: &str, hold: bool) -> ApiResult {
    let t = parse_template(call, text)?;
    let mut tx = call.oned.store.begin().await;
    let mut v: Vnet = get_for_change(call, &tx, id, AuthOp::Manage)?;
    check_ready(call, &v, &format!("execute {}", call.method))?;
    let fail = |m: &str| internal(call.method, m);
    let lease = t.vector("LEASES").ok_or_else(|| {
        fail("Empty lease description. Give the address as LEASES=[IP=\"...\"] (or MAC, IP6).")
    })?;
    let req = AddrRequest::from_vector(lease)
        .map_err(fail)?
        .ok_or_else(|| fail("Missing MAC, IP or IP6."))?;
    let ar_id: Option<i64> = lease.get("AR_ID").and_then(|s| s.trim().parse().ok());
    if hold {
        if !v.hold(&req, ar_id) {
            return Err(fail("Address is not part of the address range or in use."));
        }
    } else {
        v.release_held(&req, ar_id);
    }
    tx.put(v);
    commit(call, tx).await?;
    tracing::info!(vnet = id, address = %req.describe(), hold, "lease held/released");
    ok_id(id)
}

/// The reservation network for a new reservation: the parent's configuration under a new
/// name and owner, no ranges yet.
fn reservation_of(call: &Call, parent: &Vnet, rid: i64, name: &str) -> Vnet {
    let mut t = parent.template.clone();
    t.remove("NAME");
    t.remove("ERROR");
    Vnet {
        header: Header {
            id: rid,
            uid: call.session.uid,
            gid: call.session.gid,
            uname: call.session.uname.clone(),
            gname: call.session.gname.clone(),
            name: name.to_string(),
            perms: Permissions::from_umask(call.oned.config.umask()),
            lock: None,
        },
        clusters: parent.clusters.clone(),
        bridge: parent.bridge.clone(),
        bridge_type: parent.bridge_type.clone(),
        state: VnetState::Ready,
        prev_state: VnetState::Ready,
        parent_network_id: Some(parent.header.id),
        template_id: None,
        vn_mad: parent.vn_mad.clone(),
        phydev: parent.phydev.clone(),
        vlan_id: parent.vlan_id.clone(),
        outer_vlan_id: parent.outer_vlan_id.clone(),
        vlan_id_automatic: parent.vlan_id_automatic,
        outer_vlan_id_automatic: parent.outer_vlan_id_automatic,
        vrouters: Vec::new(),
        updated_vms: Vec::new(),
        outdated_vms: Vec::new(),
        updating_vms: Vec::new(),
        error_vms: Vec::new(),
        template: t,
        ars: Vec::new(),
        next_ar_id: 0,
    }
}

/// `one.vn.reserve(id, tmpl)`: carves SIZE addresses out of network `id` into a reservation
/// network owned by the caller (a new one named NAME, or the existing NETWORK_ID), optionally
/// from range AR_ID starting at IP/IP6/MAC. Answers the reservation's id.
async fn reserve(call: &Call, id: i64, text: &str) -> ApiResult {
    let t = parse_template(call, text)?;
    let act = |m: &str| action(call.method, m);
    let int_attr = |n: &str| t.get(n).and_then(|s| s.trim().parse::<i64>().ok());
    let size = int_attr("SIZE")
        .filter(|s| *s > 0)
        .ok_or_else(|| act("Reservation SIZE must be a greater than 0"))?;
    let existing = int_attr("NETWORK_ID");
    if let Some(rid) = existing {
        if rid < 0 {
            return Err(act("NETWORK_ID must be equal or greater than 0"));
        }
        if rid == id {
            return Err(act("Cannot add a reservation from the same network"));
        }
    }
    let name = t.get("NAME").map(str::trim).unwrap_or("").to_string();
    if name.is_empty() && existing.is_none() {
        return Err(act("NAME for reservation has to be set"));
    }
    let ar_id = int_attr("AR_ID");
    if ar_id.is_some_and(|a| a < 0) {
        return Err(act("AR_ID must be equal or greater than 0"));
    }
    let start = AddrRequest::from_vector(&Vector {
        attrs: ["IP", "IP6", "MAC"]
            .iter()
            .filter_map(|n| t.get(n).map(|v| (n.to_string(), v.to_string())))
            .collect(),
    })
    .map_err(act)?;
    if start.is_some() && ar_id.is_none() {
        return Err(act("AR_ID must be specified for IP/MAC based reservations"));
    }

    let mut tx = call.oned.store.begin().await;
    let mut parent: Vnet = tx
        .get(id)
        .ok_or_else(|| no_exists(call.method, OBJNAME, id))?;
    let existing_rvn = match existing {
        Some(rid) => {
            let r: Vnet = tx
                .get(rid)
                .ok_or_else(|| no_exists(call.method, OBJNAME, rid))?;
            match r.parent_network_id {
                None => return Err(act("Cannot add reservations to a non-reservation VNET")),
                Some(p) if p != id => {
                    return Err(act(&format!(
                        "New reservations for virtual network {rid} have to be from network {p}"
                    )));
                }
                Some(_) => {}
            }
            Some(r)
        }
        None => None,
    };
    if parent.is_reservation() {
        return Err(act("Cannot reserve addresses from a reserved VNET"));
    }
    authorize(call, &tx.committed(), &parent, AuthOp::Use)?;
    check_lock(call, &parent, AuthOp::Use)?;
    if let Some(r) = &existing_rvn {
        authorize(call, &tx.committed(), r, AuthOp::Manage)?;
        check_lock(call, r, AuthOp::Manage)?;
    }
    let mut rvn = match existing_rvn {
        Some(r) => r,
        None => {
            if let Some(other) =
                common::name_taken_by_owner::<Vnet>(&tx, &name, call.session.uid, -1)
            {
                return Err(internal(
                    call.method,
                    &format!("NAME is already taken by NET {other}."),
                ));
            }
            let rid = tx.next_id(Kind::Vnet);
            reservation_of(call, &parent, rid, &name)
        }
    };
    let rid = rvn.header.id;

    // The reservation's owner pays the leases, as if its VMs used them.
    let usage = QuotaUsage {
        leases: vec![(id, size)],
        ..QuotaUsage::default()
    };
    quota::charge(&mut tx, call.method, rvn.header.uid, rvn.header.gid, &usage)?;

    let owner = LeaseOwner::Vnet(rid);
    let n = size as u64;
    let carved = match ar_id {
        Some(a) => {
            let not_enough = || {
                act(&format!(
                    "Not enough free addresses in address range {a}, or it does not exist"
                ))
            };
            let ar = parent.ar_mut(a).ok_or_else(not_enough)?;
            let first = match &start {
                Some(req) => Some(ar.index_of(req).ok_or_else(not_enough)?),
                None => None,
            };
            let first = ar.reserve(owner, n, first).ok_or_else(not_enough)?;
            ar.reservation_child(0, first, n)
        }
        None => parent
            .ars
            .iter_mut()
            .find_map(|ar| {
                ar.reserve(owner, n, None)
                    .map(|first| ar.reservation_child(0, first, n))
            })
            .ok_or_else(|| act("Not enough free addresses in an address range"))?,
    };
    let new_ar = rvn.push_ar(carved);
    let is_new = existing.is_none();
    let clusters = rvn.clusters.clone();
    tx.put(parent);
    tx.put(rvn);
    if is_new {
        for cid in clusters {
            add_to_cluster(&mut tx, call, cid, Kind::Vnet, rid)?;
        }
    }
    commit(call, tx).await?;
    tracing::info!(
        vnet = id,
        reservation = rid,
        ar = new_ar,
        size,
        "addresses reserved"
    );
    ok_id(rid)
}

/// `one.vn.recover(id, op)`: 0 failure, 1 success, 2 delete, 3 retry, as OpenNebula's state
/// table. Networks here are READY as soon as they are created (no IPAM driver round trip), so
/// in practice this answers that the state is wrong.
async fn recover(call: &Call, id: i64, op: i64) -> ApiResult {
    let op_name = match op {
        0 => "failure",
        1 => "success",
        2 => "delete",
        3 => "retry",
        _ => return Err(action(call.method, "Wrong recovery operation code")),
    };
    let mut tx = call.oned.store.begin().await;
    let mut v: Vnet = get_for_change(call, &tx, id, AuthOp::Manage)?;
    use VnetState as S;
    let s = v.state;
    let wrong = || {
        internal(
            call.method,
            &format!(
                "Could not perform 'recover {op_name}' on VN {id}, wrong state {}.",
                s.name()
            ),
        )
    };
    match (op, s) {
        (0, S::Init | S::LockCreate | S::LockDelete) => {
            set_state(&mut v, S::Error);
            v.template.set("ERROR", "Failure forced by user");
            tx.put(v);
        }
        (1, S::Init | S::LockCreate | S::Error | S::UpdateFailure) => {
            v.template.remove("ERROR");
            set_state(&mut v, S::Ready);
            tx.put(v);
        }
        (1, S::LockDelete) | (2, S::Init | S::LockCreate | S::LockDelete | S::Error) => {
            drop_vnet(&mut tx, &v);
        }
        (3, S::UpdateFailure) => {
            set_state(&mut v, S::Ready);
            tx.put(v);
        }
        _ => return Err(wrong()),
    }
    commit(call, tx).await?;
    tracing::info!(vnet = id, op = op_name, "virtual network recovered");
    ok_id(id)
}

// ---------------------------------------------------------------------------------------------
// The NIC lease contract

/// Network attributes a NIC inherits (oned.conf's default INHERIT_VNET_ATTR list, without the
/// public-cloud ones).
const INHERIT_VNET_ATTR: &[&str] = &[
    "VLAN_TAGGED_ID",
    "FILTER",
    "FILTER_IP_SPOOFING",
    "FILTER_MAC_SPOOFING",
    "MTU",
    "METRIC",
    "IP6_METRIC",
    "METHOD",
    "IP6_METHOD",
    "INBOUND_AVG_BW",
    "INBOUND_PEAK_BW",
    "INBOUND_PEAK_KB",
    "OUTBOUND_AVG_BW",
    "OUTBOUND_PEAK_BW",
    "OUTBOUND_PEAK_KB",
    "CONF",
    "BRIDGE_CONF",
    "OVS_BRIDGE_CONF",
    "IP_LINK_CONF",
    "EXTERNAL_IP",
    "GATEWAY",
    "DNS",
    "VXLAN_MODE",
    "VXLAN_TEP",
    "VXLAN_MC",
    "CVLANS",
    "QINQ_TYPE",
    "TRUST",
    "SPOOFCHK",
];

fn nonempty<'a>(v: &'a Vector, name: &str) -> Option<&'a str> {
    v.get(name).map(str::trim).filter(|s| !s.is_empty())
}

/// The network a NIC names: NETWORK_ID, or NETWORK owned by NETWORK_UID / NETWORK_UNAME
/// (default: the VM owner `uid`). `Ok(None)` when the NIC names no network.
fn resolve_nic_network(
    tx: &Txn<'_>,
    call: &Call,
    nic: &Vector,
    uid: i64,
) -> Result<Option<Vnet>, ApiError> {
    let fail = |m: String| internal(call.method, &m);
    if let Some(id_s) = nonempty(nic, "NETWORK_ID") {
        let v = id_s
            .parse::<i64>()
            .ok()
            .and_then(|id| tx.get::<Vnet>(id))
            .ok_or_else(|| fail(format!("Virtual network with ID: {id_s} does not exist")))?;
        return Ok(Some(v));
    }
    let Some(name) = nonempty(nic, "NETWORK") else {
        return Ok(None);
    };
    let owner = if let Some(s) = nonempty(nic, "NETWORK_UID") {
        s.parse::<i64>()
            .map_err(|_| fail("Cannot get user in NETWORK_UID".into()))?
    } else if let Some(uname) = nonempty(nic, "NETWORK_UNAME") {
        tx.committed()
            .users
            .iter()
            .find(|u| u.name == uname)
            .map(|u| u.id)
            .ok_or_else(|| fail("User set in NETWORK_UNAME does not exist".into()))?
    } else {
        uid
    };
    tx.find::<Vnet>(|v| v.header.name == name && v.header.uid == owner)
        .and_then(|id| tx.get::<Vnet>(id))
        .map(Some)
        .ok_or_else(|| {
            fail(format!(
                "User {owner} does not own a network with name: {name} . Set NETWORK_UNAME or \
                 NETWORK_UID of owner in NIC."
            ))
        })
}

/// Resolves a VM NIC's network (NETWORK_ID, or NETWORK + NETWORK_UNAME/NETWORK_UID; default
/// owner the VM owner), checks that the calling session may USE it, leases an address
/// (honouring a requested IP, IP6 or MAC) for VM `vmid`, and fills in the attributes oned adds
/// to a NIC (AR_ID, IP, MAC, IP6_*, BRIDGE, BRIDGE_TYPE, VN_MAD, PHYDEV, VLAN_ID, NETWORK,
/// NETWORK_ID, NETWORK_UNAME, CLUSTER_ID, SECURITY_GROUPS, TARGET if NIC_ID is set and TARGET
/// is not). Charges one NETWORK lease to the VM owner `uid` and his primary group.
/// A NIC naming no network is left as it is (OpenNebula allows that). Contract used by VM
/// allocation; the caller drops the transaction on error.
pub fn lease_for_nic(
    tx: &mut Txn<'_>,
    call: &Call,
    nic: &mut Vector,
    vmid: i64,
    uid: i64,
) -> Result<(), ApiError> {
    let Some(mut v) = resolve_nic_network(tx, call, nic, uid)? else {
        return Ok(());
    };
    let id = v.header.id;
    authorize(call, &tx.committed(), &v, AuthOp::Use)?;
    check_lock(call, &v, AuthOp::Use)?;
    let cannot = |detail: &str| {
        internal(
            call.method,
            &format!("Cannot get IP/MAC lease from virtual network {id}: {detail}."),
        )
    };
    let req = AddrRequest::from_vector(nic).map_err(cannot)?;
    let (ar_id, index) = v
        .lease(LeaseOwner::Vm(vmid), req.as_ref())
        .map_err(|m| cannot(&m))?;

    nic.set("NETWORK", v.header.name.clone());
    nic.set("NETWORK_ID", id.to_string());
    nic.set("NETWORK_UNAME", v.header.uname.clone());
    nic.set("BRIDGE", v.bridge.clone());
    for (name, val) in [
        ("VN_MAD", &v.vn_mad),
        ("PHYDEV", &v.phydev),
        ("VLAN_ID", &v.vlan_id),
        ("OUTER_VLAN_ID", &v.outer_vlan_id),
        ("BRIDGE_TYPE", &v.bridge_type),
    ] {
        if !val.is_empty() {
            nic.set(name, val.clone());
        }
    }
    if let Some(p) = v.parent_network_id {
        nic.set("PARENT_NETWORK_ID", p.to_string());
    }
    if nonempty(nic, "TARGET").is_none()
        && let Some(nic_id) = nonempty(nic, "NIC_ID").map(str::to_string)
    {
        nic.set("TARGET", format!("one-{vmid}-{nic_id}"));
    }
    nic.set("CLUSTER_ID", join_ids(&v.clusters));
    let ar = v
        .ar(ar_id)
        .ok_or_else(|| internal(call.method, "leased address range vanished"))?;
    ar.fill_nic(index, nic);
    // What the hosts' drivers and the context read (MTU, FILTER_*_SPOOFING, GATEWAY, ...):
    // from the address range, else the network, unless the NIC has it.
    for name in INHERIT_VNET_ATTR {
        if nonempty(nic, name).is_some() {
            continue;
        }
        let value = nonempty(&ar.attrs, name).or_else(|| {
            v.template
                .get(name)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        });
        if let Some(value) = value {
            nic.set(name, value.to_string());
        }
    }
    let mut sgs = parse_ids(nic.get("SECURITY_GROUPS").unwrap_or("")).unwrap_or_default();
    for src in [
        v.template.get("SECURITY_GROUPS"),
        ar.attrs.get("SECURITY_GROUPS"),
    ] {
        sgs.extend(parse_ids(src.unwrap_or("")).unwrap_or_default());
    }
    sgs.sort_unstable();
    sgs.dedup();
    nic.set("SECURITY_GROUPS", join_ids(&sgs));

    let gid = tx
        .get::<User>(uid)
        .map(|u| u.gid)
        .ok_or_else(|| no_exists(call.method, "user", uid))?;
    let usage = QuotaUsage {
        leases: vec![(id, 1)],
        ..QuotaUsage::default()
    };
    quota::charge(tx, call.method, uid, gid, &usage)?;
    v.add_vm(vmid);
    tx.put(v);
    tracing::info!(
        vnet = id,
        vm = vmid,
        ar = ar_id,
        mac = nic.get("MAC").unwrap_or(""),
        "lease taken"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_types_follow_vn_mad_conf() {
        assert_eq!(bridge_type_for("bridge", "").unwrap(), "linux");
        assert_eq!(bridge_type_for("ovswitch", "").unwrap(), "openvswitch");
        assert_eq!(
            bridge_type_for("ovswitch", "openvswitch_dpdk").unwrap(),
            "openvswitch_dpdk"
        );
        assert!(
            bridge_type_for("bridge", "openvswitch")
                .unwrap_err()
                .contains("wrong value")
        );
        assert!(
            bridge_type_for("nope", "")
                .unwrap_err()
                .contains("not defined")
        );
    }

    #[test]
    fn vlan_parsing() {
        let mut t = Template::parse("VLAN_ID=\"0012\"\nAUTOMATIC_VLAN_ID=YES").unwrap();
        assert_eq!(
            parse_vlan(&mut t, "VLAN_ID", "AUTOMATIC_VLAN_ID", 4095).unwrap(),
            ("12".into(), false)
        );
        assert_eq!(t.get("VLAN_ID"), Some("12"));
        assert!(!t.contains("AUTOMATIC_VLAN_ID"));
        let mut t = Template::parse("AUTOMATIC_VLAN_ID=yes").unwrap();
        assert_eq!(
            parse_vlan(&mut t, "VLAN_ID", "AUTOMATIC_VLAN_ID", 4095).unwrap(),
            (String::new(), true)
        );
        let mut t = Template::parse("VLAN_ID=abc").unwrap();
        assert!(parse_vlan(&mut t, "VLAN_ID", "AUTOMATIC_VLAN_ID", 4095).is_err());
        let mut t = Template::parse("VLAN_ID=5000").unwrap();
        assert!(parse_vlan(&mut t, "VLAN_ID", "AUTOMATIC_VLAN_ID", 4095).is_err());
        let mut t = Template::parse("VLAN_ID=5000").unwrap();
        assert!(parse_vlan(&mut t, "VLAN_ID", "AUTOMATIC_VLAN_ID", VNI_MAX).is_ok());
    }

    #[test]
    fn vlan_pool_honours_start_reserved_and_used_ids() {
        let used: std::collections::HashSet<i64> = [12].into_iter().collect();
        let reserved = [(0, 1), (4095, 4095)];
        // Network 10 hints 2 + 10 = 12, which another network has: the lowest free id.
        assert_eq!(pick_vlan_id(10, 2, &reserved, &used), Some(2));
        assert_eq!(pick_vlan_id(3, 2, &reserved, &Default::default()), Some(5));
        // START 100, 100-110 reserved: network 5 hints 105 (reserved) and gets 111.
        assert_eq!(
            pick_vlan_id(5, 100, &[(100, 110)], &Default::default()),
            Some(111)
        );
        // Everything taken.
        let all: std::collections::HashSet<i64> = (2..=4094).collect();
        assert_eq!(pick_vlan_id(1, 2, &reserved, &all), None);
    }

    #[test]
    fn security_groups_always_include_default() {
        assert_eq!(security_groups_with_default("").unwrap(), "0");
        assert_eq!(security_groups_with_default("5, 2,5").unwrap(), "0,2,5");
        assert!(security_groups_with_default("1,x").is_err());
    }

    #[test]
    fn stored_form_round_trips() {
        let t = Template::parse("AR=[TYPE=IP4, IP=10.0.0.1, SIZE=300]").unwrap();
        let mut v: Vnet = serde_json::from_str(&serde_json::to_string(&sample()).unwrap()).unwrap();
        v.add_ar(
            t.vector("AR").unwrap(),
            ArContext {
                mac_prefix: 0x0200,
                random: 1,
            },
        )
        .unwrap();
        v.lease(LeaseOwner::Vm(1), None).unwrap();
        v.ars[0].reserve(LeaseOwner::Vnet(9), 100, None).unwrap();
        let json = serde_json::to_string(&v).unwrap();
        let back: Vnet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
    }

    fn sample() -> Vnet {
        Vnet {
            header: Header::oneadmin(3, "n"),
            clusters: vec![0],
            bridge: "onebr3".into(),
            bridge_type: "linux".into(),
            state: VnetState::Ready,
            prev_state: VnetState::Ready,
            parent_network_id: None,
            template_id: None,
            vn_mad: "bridge".into(),
            phydev: String::new(),
            vlan_id: String::new(),
            outer_vlan_id: String::new(),
            vlan_id_automatic: false,
            outer_vlan_id_automatic: false,
            vrouters: vec![],
            updated_vms: vec![],
            outdated_vms: vec![],
            updating_vms: vec![],
            error_vms: vec![],
            template: Template::new(),
            ars: vec![],
            next_ar_id: 0,
        }
    }
}
