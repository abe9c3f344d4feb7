//! one.vm.* / one.vmpool.* methods: allocation (DISK, NIC and CONTEXT expansion, quotas),
//! listing, and the actions a VM that has not been deployed yet can take (terminate, hold,
//! release).
//!
//! Rendering: `one.vm.info` answers the full document (every HISTORY record); through
//! [`ApiObject`] the pool listings use the short body (`one.vmpool.info`) and the extended one
//! (`one.vmpool.infoextended`, last HISTORY record only). So `ApiObject::write_xml` of a VM
//! is the extended body, while the inherent `Vm::write_xml` is the full document.
//!
//! Choices where OpenNebula offers none or several:
//! * TEMPLATE holds only what vm.xsd allows there (capacity, DISK, NIC, CONTEXT, OS, GRAPHICS,
//!   ...); everything else, CPU_MODEL and SCHED_ACTION included, stays in USER_TEMPLATE.
//! * AUTOMATIC_REQUIREMENTS come from the clusters of the datastores of image disks and of
//!   the networks of NICs (OpenNebula also looks at KERNEL/INITRD datastores and PCI NICs).
//! * CONTEXT/FILES_DS: each `$FILE[...]` becomes its CONTEXT image's `'SOURCE':'NAME'`
//!   ([`expand_files_ds`]; USE on the image needed); TOKEN = YES is refused, as OpenNebula
//!   does without ONEGATE_ENDPOINT.
//! * The vmpool search argument is OpenNebula 7's `KEY=VALUE&...` (see `Query`), evaluated
//!   in memory on every database backend.

use super::common::{self, ApiObject, IdRange, PoolFilter, authorize_create, commit};
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id, ok_xml};
use crate::auth::now_secs;
use crate::authz::{self, ObjAuth};
use crate::context::{self, Scope};
use crate::ops::quota;
use crate::ops::vm::quota_usage;
use crate::store::{Kind, Txn};
use one_proto::acl::{AuthOp, ObjectType};
use one_proto::objects::datastore::Datastore;
use one_proto::objects::group::Group;
use one_proto::objects::image::Image;
use one_proto::objects::user::User;
use one_proto::objects::vm::{Backups, Vm};
use one_proto::objects::vnet::Vnet;
use one_proto::objects::{Header, Permissions};
use one_proto::state::{ImageType, LcmState, VmState};
use one_proto::template::{AttrValue, Template, Vector};
use one_proto::{ApiError, ErrorCode};
use std::collections::{BTreeSet, HashSet};

const OBJNAME: &str = "virtual machine";

impl ApiObject for Vm {
    const OBJNAME: &'static str = OBJNAME;
    const POOL_ROOT: &'static str = "VM_POOL";
    const ACL_TYPE: ObjectType = ObjectType::Vm;

    crate::owned_header!();
    fn user_template_mut(&mut self) -> &mut Template {
        &mut self.user_template
    }
    /// The cluster of the host the VM is on (for `%cid` ACL rules).
    fn clusters(&self) -> Vec<i64> {
        match self.last_history() {
            Some(h) if h.cid >= 0 => vec![h.cid],
            _ => Vec::new(),
        }
    }
}

pub fn register(r: &mut Registry) {
    r.add("one.vm.allocate", |c: Call, p: Params| async move {
        vm_allocate(&c, p.str(0)?, p.opt_bool(1, false)?).await
    });
    r.add("one.vm.info", |c: Call, p: Params| async move {
        // The decrypt flag (param 2) has nothing to act on: no VM attribute is stored encrypted.
        p.opt_bool(1, false)?;
        info(&c, p.int32(0)?)
    });
    r.add("one.vm.update", |c: Call, p: Params| async move {
        update(&c, p.int32(0)?, p.str(1)?, p.opt_int(2, 0)?).await
    });
    r.add("one.vm.rename", |c: Call, p: Params| async move {
        rename(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.vm.chown", |c: Call, p: Params| async move {
        chown(&c, p.int32(0)?, p.int32(1)?, p.int32(2)?).await
    });
    r.add("one.vm.chmod", |c: Call, p: Params| async move {
        common::chmod::<Vm>(&c, p.int32(0)?, common::chmod_bits(&p, 1)?).await
    });
    r.add("one.vm.lock", |c: Call, p: Params| async move {
        common::lock::<Vm>(&c, p.int32(0)?, p.int32(1)?, p.opt_bool(2, false)?).await
    });
    r.add("one.vm.unlock", |c: Call, p: Params| async move {
        common::unlock::<Vm>(&c, p.int32(0)?).await
    });
    r.add("one.vmpool.info", |c: Call, p: Params| async move {
        pool_info(&c, &p, true)
    });
    r.add("one.vmpool.infoextended", |c: Call, p: Params| async move {
        pool_info(&c, &p, false)
    });
    r.add("one.vmpool.infoset", |c: Call, p: Params| async move {
        infoset(&c, p.str(0)?, p.opt_bool(1, false)?)
    });
}

// -----------------------------------------------------------------------------------------
// info, update, rename, chown

fn info(call: &Call, id: i64) -> ApiResult {
    let vm = common::get_authorized::<Vm>(call, id, AuthOp::Use)?;
    ok_xml(Vm::to_xml(&vm))
}

async fn update(call: &Call, id: i64, text: &str, mode: i64) -> ApiResult {
    if !call.session.is_admin() && (mode == 0 || mode == 1) {
        let new = common::parse_template(call, text)?;
        let current = call
            .oned
            .store
            .get::<Vm>(id)
            .map(|vm| vm.user_template.clone())
            .unwrap_or_default();
        if let Some(attr) = changed_restricted_attr(&new, &current) {
            return Err(restricted(
                call,
                &format!("Template includes a restricted attribute {attr}"),
            ));
        }
    }
    common::update::<Vm>(call, id, text, mode).await
}

/// VM names need not be unique (unlike other owned objects), so this is not `rename_owned`.
async fn rename(call: &Call, id: i64, name: &str) -> ApiResult {
    common::check_name(name).map_err(|m| action(call.method, &m))?;
    let mut tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    vm.header.name = name.to_string();
    tx.put(vm);
    commit(call, tx).await?;
    tracing::info!(vm = id, name, "vm renamed");
    ok_id(id)
}

/// `one.vm.chown`: MANAGE on the VM (OpenNebula's level for VMs), MANAGE on the new owner,
/// USE on the new group; the VM's quota usage moves from the old owner to the new one.
async fn chown(call: &Call, id: i64, uid: i64, gid: i64) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let mut vm: Vm = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    let (old_uid, old_gid) = (vm.header.uid, vm.header.gid);
    let new_user = match uid {
        u if u >= 0 => Some(
            tx.get::<User>(u)
                .ok_or_else(|| no_exists(call.method, "user", u))?,
        ),
        _ => None,
    };
    let new_group = match gid {
        g if g >= 0 => Some(
            tx.get::<Group>(g)
                .ok_or_else(|| no_exists(call.method, "group", g))?,
        ),
        _ => None,
    };
    if !call.session.is_admin() {
        let state = tx.committed();
        if let Some(u) = new_user.as_ref().filter(|u| u.id != old_uid) {
            let obj = ObjAuth {
                obj_type: ObjectType::User,
                id: u.id,
                uid: u.id,
                gid: u.gid,
                perms: None,
                clusters: Vec::new(),
            };
            if u.id != call.session.uid
                && !authz::allowed(&state, &call.session, &obj, AuthOp::Manage)
            {
                return Err(not_authorized(
                    call.method,
                    call.session.uid,
                    &format!("MANAGE USER [{}]", u.id),
                ));
            }
        }
        if let Some(g) = new_group.as_ref().filter(|g| g.id != old_gid) {
            let obj = ObjAuth {
                obj_type: ObjectType::Group,
                id: g.id,
                uid: 0,
                gid: g.id,
                perms: None,
                clusters: Vec::new(),
            };
            if !call.session.gids.contains(&g.id)
                && !authz::allowed(&state, &call.session, &obj, AuthOp::Use)
            {
                return Err(not_authorized(
                    call.method,
                    call.session.uid,
                    &format!("USE GROUP [{}]", g.id),
                ));
            }
        }
    }
    if let Some(u) = &new_user {
        vm.header.uid = u.id;
        vm.header.uname = u.name.clone();
    }
    if let Some(g) = &new_group {
        vm.header.gid = g.id;
        vm.header.gname = g.name.clone();
    }
    let (new_uid, new_gid) = (vm.header.uid, vm.header.gid);
    if (new_uid, new_gid) != (old_uid, old_gid) && vm.state != VmState::Done {
        // NETWORK leases move too (the vnet code charged them to the old owner).
        let mut usage = quota_usage(&vm);
        usage.leases = lease_usage(&vm.template);
        quota::release(&mut tx, old_uid, old_gid, &usage);
        quota::charge(&mut tx, call.method, new_uid, new_gid, &usage)?;
    }
    tx.put(vm);
    commit(call, tx).await?;
    tracing::info!(vm = id, uid = new_uid, gid = new_gid, "vm owner changed");
    ok_id(id)
}

// -----------------------------------------------------------------------------------------
// Pool listings

/// The STATE filter of vmpool calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StateFilter {
    /// -2: any state, DONE included.
    Any,
    /// -1: any but DONE.
    NotDone,
    Exactly(VmState),
}

impl StateFilter {
    fn parse(n: i64) -> Option<StateFilter> {
        match n {
            -2 => Some(StateFilter::Any),
            -1 => Some(StateFilter::NotDone),
            n => VmState::from_num(n).map(StateFilter::Exactly),
        }
    }

    fn matches(self, s: VmState) -> bool {
        match self {
            StateFilter::Any => true,
            StateFilter::NotDone => s != VmState::Done,
            StateFilter::Exactly(x) => s == x,
        }
    }
}

/// `one.vmpool.info(filter, start, end, state, [query])` and `infoextended` (same args).
fn pool_info(call: &Call, p: &Params, short: bool) -> ApiResult {
    let filter = PoolFilter::parse(call, p.opt_int(0, -2)?)?;
    let range = IdRange::parse(p.opt_int(1, -1)?, p.opt_int(2, -1)?);
    let state_n = p.opt_int(3, -1)?;
    let state = StateFilter::parse(state_n)
        .ok_or_else(|| rpc_api(call.method, &format!("Incorrect state filter {state_n}")))?;
    let query = Query::parse(p.opt_str(4, "")?).map_err(|m| rpc_api(call.method, &m))?;
    let xml = common::pool_xml::<Vm>(
        call,
        filter,
        range,
        |vm| state.matches(vm.state) && query.matches(vm),
        short,
    );
    ok_xml(xml)
}

/// `one.vmpool.infoset("1,2,3", extended)`: the listed VMs the caller may see, in the
/// listing order.
fn infoset(call: &Call, ids: &str, extended: bool) -> ApiResult {
    let mut set = HashSet::new();
    for part in ids.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let id: i64 = part.parse().map_err(|_| {
            rpc_api(
                call.method,
                &format!("Invalid VM id {part:?} in the id list: expected ids separated by commas"),
            )
        })?;
        set.insert(id);
    }
    if set.is_empty() {
        return ok_xml("<VM_POOL></VM_POOL>".into());
    }
    let xml = common::pool_xml::<Vm>(
        call,
        PoolFilter::All,
        IdRange::All,
        |vm| set.contains(&vm.header.id),
        !extended,
    );
    ok_xml(xml)
}

/// The 5th argument of vmpool.info: `KEY=VALUE&KEY=VALUE` (OpenNebula 7's search; 6.x took a
/// single `KEY=VALUE`). Every term must match: the value at KEY contains VALUE, ignoring case.
/// KEY is a path such as `VM.NAME`, `VM.TEMPLATE.NIC.IP`, `VM.USER_TEMPLATE.LABELS` (the
/// `VM.` prefix is optional); a bare attribute name (`LABELS`) is looked up in TEMPLATE, then
/// USER_TEMPLATE. A term without `=` matches anywhere in the VM document. OpenNebula 7 runs
/// this in MySQL only (other backends refuse non-empty queries); here it works on any backend.
struct Query {
    terms: Vec<(Option<Vec<String>>, String)>,
}

impl Query {
    fn parse(q: &str) -> Result<Query, String> {
        let mut terms = Vec::new();
        for term in q.split('&').map(str::trim).filter(|t| !t.is_empty()) {
            match term.split_once('=') {
                Some((key, value)) => {
                    let path: Vec<String> = key
                        .trim()
                        .split('.')
                        .map(|s| s.trim().to_ascii_uppercase())
                        .collect();
                    if path.iter().any(String::is_empty) {
                        return Err(format!(
                            "Invalid search term {term:?}: the key must be an attribute path like VM.NAME"
                        ));
                    }
                    terms.push((Some(path), value.trim().to_lowercase()));
                }
                None => terms.push((None, term.to_lowercase())),
            }
        }
        Ok(Query { terms })
    }

    fn matches(&self, vm: &Vm) -> bool {
        self.terms.iter().all(|(path, needle)| match path {
            None => Vm::to_xml(vm).to_lowercase().contains(needle.as_str()),
            Some(path) => {
                let path: &[String] = match path.first() {
                    Some(first) if first == "VM" && path.len() > 1 => &path[1..],
                    _ => path,
                };
                query_values(vm, path)
                    .iter()
                    .any(|v| v.to_lowercase().contains(needle.as_str()))
            }
        })
    }
}

fn template_values(t: &Template, path: &[String]) -> Vec<String> {
    match path {
        [attr] => t
            .attrs
            .iter()
            .filter(|a| a.name == *attr)
            .filter_map(|a| match &a.value {
                AttrValue::Single(v) => Some(v.clone()),
                AttrValue::Vector(_) => None,
            })
            .collect(),
        [vec, sub] => t
            .vectors(vec)
            .filter_map(|v| v.get(sub).map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn query_values(vm: &Vm, path: &[String]) -> Vec<String> {
    let h = &vm.header;
    let field = |v: String| vec![v];
    match path {
        [f] => match f.as_str() {
            "ID" => field(h.id.to_string()),
            "UID" => field(h.uid.to_string()),
            "GID" => field(h.gid.to_string()),
            "UNAME" => field(h.uname.clone()),
            "GNAME" => field(h.gname.clone()),
            "NAME" => field(h.name.clone()),
            "STATE" => field(vm.state.num().to_string()),
            "LCM_STATE" => field(vm.lcm_state.num().to_string()),
            "DEPLOY_ID" => field(vm.deploy_id.clone()),
            "STIME" => field(vm.stime.to_string()),
            "ETIME" => field(vm.etime.to_string()),
            _ => {
                let mut v = template_values(&vm.template, path);
                v.extend(template_values(&vm.user_template, path));
                v
            }
        },
        [section, rest @ ..] if section == "TEMPLATE" => template_values(&vm.template, rest),
        [section, rest @ ..] if section == "USER_TEMPLATE" => {
            template_values(&vm.user_template, rest)
        }
        [section, rest @ ..] if section == "MONITORING" => template_values(&vm.monitoring, rest),
        _ => template_values(&vm.template, path),
    }
}

// -----------------------------------------------------------------------------------------
// one.vm.action

// -----------------------------------------------------------------------------------------
// Quotas

/// NETWORK_QUOTA usage: one lease per NIC / NIC_ALIAS per network.
fn lease_usage(t: &Template) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for a in &t.attrs {
        let AttrValue::Vector(v) = &a.value else {
            continue;
        };
        if a.name != "NIC" && a.name != "NIC_ALIAS" {
            continue;
        }
        if let Some(net) = v
            .get("NETWORK_ID")
            .and_then(|n| n.trim().parse::<i64>().ok())
        {
            match out.iter_mut().find(|(id, _)| *id == net) {
                Some((_, n)) => *n += 1,
                None => out.push((net, 1)),
            }
        }
    }
    out
}

// -----------------------------------------------------------------------------------------
// Allocation

/// oned.conf's default VM_RESTRICTED_ATTR: what only oneadmin's group may set in a VM.
const RESTRICTED: &[&str] = &[
    "CONTEXT/FILES",
    "NIC/MAC",
    "NIC/VLAN_ID",
    "NIC/BRIDGE",
    "NIC/FILTER",
    "NIC/FILTER_IP_SPOOFING",
    "NIC/FILTER_MAC_SPOOFING",
    "NIC/INBOUND_AVG_BW",
    "NIC/INBOUND_PEAK_BW",
    "NIC/INBOUND_PEAK_KB",
    "NIC/OUTBOUND_AVG_BW",
    "NIC/OUTBOUND_PEAK_BW",
    "NIC/OUTBOUND_PEAK_KB",
    "NIC/OPENNEBULA_MANAGED",
    "NIC/EXTERNAL",
    "NIC/VLAN_TAGGED_ID",
    "NIC_ALIAS/MAC",
    "NIC_ALIAS/VLAN_ID",
    "NIC_ALIAS/BRIDGE",
    "NIC_ALIAS/INBOUND_AVG_BW",
    "NIC_ALIAS/INBOUND_PEAK_BW",
    "NIC_ALIAS/INBOUND_PEAK_KB",
    "NIC_ALIAS/OUTBOUND_AVG_BW",
    "NIC_ALIAS/OUTBOUND_PEAK_BW",
    "NIC_ALIAS/OUTBOUND_PEAK_KB",
    "NIC_ALIAS/OPENNEBULA_MANAGED",
    "NIC_DEFAULT/MAC",
    "NIC_DEFAULT/VLAN_ID",
    "NIC_DEFAULT/BRIDGE",
    "NIC_DEFAULT/FILTER",
    "NIC_DEFAULT/EXTERNAL",
    "DISK/TOTAL_BYTES_SEC",
    "DISK/TOTAL_BYTES_SEC_MAX_LENGTH",
    "DISK/TOTAL_BYTES_SEC_MAX",
    "DISK/READ_BYTES_SEC",
    "DISK/READ_BYTES_SEC_MAX_LENGTH",
    "DISK/READ_BYTES_SEC_MAX",
    "DISK/WRITE_BYTES_SEC",
    "DISK/WRITE_BYTES_SEC_MAX_LENGTH",
    "DISK/WRITE_BYTES_SEC_MAX",
    "DISK/TOTAL_IOPS_SEC",
    "DISK/TOTAL_IOPS_SEC_MAX_LENGTH",
    "DISK/TOTAL_IOPS_SEC_MAX",
    "DISK/READ_IOPS_SEC",
    "DISK/READ_IOPS_SEC_MAX_LENGTH",
    "DISK/READ_IOPS_SEC_MAX",
    "DISK/WRITE_IOPS_SEC",
    "DISK/WRITE_IOPS_SEC_MAX_LENGTH",
    "DISK/WRITE_IOPS_SEC_MAX",
    "DISK/SIZE_IOPS_SEC",
    "DISK/OPENNEBULA_MANAGED",
    "DISK/ORIGINAL_SIZE",
    "DISK/SIZE_PREV",
    "DEPLOY_ID",
    "CPU_COST",
    "MEMORY_COST",
    "DISK_COST",
    "PCI",
    "EMULATOR",
    "RAW/DATA",
    "USER_PRIORITY",
    "USER_INPUTS/CPU",
    "USER_INPUTS/MEMORY",
    "USER_INPUTS/VCPU",
    "TOPOLOGY/PIN_POLICY",
    "TOPOLOGY/HUGEPAGE_SIZE",
];

/// Values of a restricted attribute path (`NAME` or `VECTOR/SUB`) in a template.
fn restricted_values<'a>(t: &'a Template, path: &'a str) -> Vec<&'a str> {
    match path.split_once('/') {
        None => t
            .attrs
            .iter()
            .filter(|a| a.name == path)
            .map(|a| match &a.value {
                AttrValue::Single(v) => v.as_str(),
                AttrValue::Vector(_) => "",
            })
            .collect(),
        Some((vec, sub)) => t.vectors(vec).filter_map(|v| v.get(sub)).collect(),
    }
}

/// OpenNebula's AUTHORIZATION answer with a reason: `[method] User [uid] : reason.`
fn restricted(call: &Call, reason: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Authorization,
        format!("[{}] User [{}] : {reason}.", call.method, call.session.uid),
    )
}

/// The first restricted attribute `new` sets (that `old` does not already have, same value).
fn changed_restricted_attr(new: &Template, old: &Template) -> Option<&'static str> {
    RESTRICTED.iter().copied().find(|path| {
        let n = restricted_values(new, path);
        !n.is_empty() && n != restricted_values(old, path)
    })
}

/// `one.vm.allocate(template, hold)`.
async fn vm_allocate(call: &Call, text: &str, hold: bool) -> ApiResult {
    let template = common::parse_template(call, text)?;
    if !call.session.is_admin()
        && let Some(attr) = changed_restricted_attr(&template, &Template::new())
    {
        return Err(restricted(
            call,
            &format!("VM Template includes a restricted attribute {attr}"),
        ));
    }
    ok_id(allocate_vm(call, template, hold, None).await?)
}

/// Creates a VM from a template (one.vm.allocate, one.template.instantiate): expands DISK,
/// NIC and CONTEXT, checks and charges quotas, stores it PENDING (HOLD if `hold`).
/// `from_template` carries (TEMPLATE_ID, the VM name given to instantiate or "").
///
/// Everything happens in one transaction: when any step fails, nothing is stored (leases and
/// images taken on the way vanish with it).
pub async fn allocate_vm(
    call: &Call,
    template: Template,
    hold: bool,
    from_template: Option<(i64, String)>,
) -> Result<i64, ApiError> {
    authorize_create(call, &call.oned.store.read(), ObjectType::Vm)?;
    let mut tx = call.oned.store.begin().await;
    let vmid = tx.next_id(Kind::Vm);
    let mut vm = build_vm(call, &mut tx, vmid, template, hold, from_template.as_ref())?;
    super::secgroup::authorize_vm(call, &tx, &vm)?;
    crate::secgroup::sync_vm(&mut tx, &mut vm);
    let usage = quota_usage(&vm);
    quota::charge(&mut tx, call.method, vm.header.uid, vm.header.gid, &usage)?;
    let (state, name) = (vm.state, vm.header.name.clone());
    tx.put(vm);
    commit(call, tx).await?;
    tracing::info!(
        vm = vmid,
        name = %name,
        uid = call.session.uid,
        state = %state,
        template = from_template.as_ref().map(|t| t.0),
        "vm allocated"
    );
    Ok(vmid)
}

/// The attributes moved as they are from the user template to TEMPLATE.
const WELL_KNOWN: &[&str] = &[
    "INPUT",
    "RAW",
    "CLONING_TEMPLATE_ID",
    "TOPOLOGY",
    "NUMA_NODE",
    "HYPERV_OPTIONS",
    "SPICE_OPTIONS",
    "FEATURES",
    "OS",
    "PCI",
    "NIC_DEFAULT",
];

struct Builder<'c> {
    call: &'c Call,
    vmid: i64,
    uid: i64,
    /// The user template being emptied into TEMPLATE.
    user: Template,
    tmpl: Template,
}

impl Builder<'_> {
    fn err(&self, reason: &str) -> ApiError {
        allocate(self.call.method, OBJNAME, reason)
    }

    /// Moves every attribute named `name` from the user template to TEMPLATE.
    fn take(&mut self, name: &str) {
        for v in self.user.remove(name) {
            self.tmpl.push(name, v);
        }
    }

    fn take_single(&mut self, name: &str) -> Option<String> {
        let v = self.user.get(name).map(str::to_string);
        self.user.remove(name);
        v
    }
}

fn parse_int(v: &str) -> Option<i64> {
    v.trim().parse().ok()
}

fn parse_float(v: &str) -> Option<f64> {
    v.trim().parse::<f64>().ok().filter(|f| f.is_finite())
}

fn build_vm(
    call: &Call,
    tx: &mut Txn<'_>,
    vmid: i64,
    template: Template,
    hold: bool,
    from_template: Option<&(i64, String)>,
) -> Result<Vm, ApiError> {
    let s = &call.session;
    let mut b = Builder {
        call,
        vmid,
        uid: s.uid,
        user: template,
        tmpl: Template::new(),
    };

    // Identity: VMID, TEMPLATE_ID, NAME.
    b.user.remove("VMID");
    b.tmpl.set("VMID", vmid.to_string());
    let template_id = b.take_single("TEMPLATE_ID").filter(|v| !v.is_empty());
    let template_id = from_template.map(|t| t.0.to_string()).or(template_id);
    if let Some(tid) = template_id {
        b.tmpl.set("TEMPLATE_ID", tid);
    }
    let given = b.take_single("NAME").filter(|n| !n.trim().is_empty());
    let prefix = b.take_single("TEMPLATE_NAME").filter(|n| !n.is_empty());
    let name = match from_template {
        Some((_, requested)) if !requested.trim().is_empty() => requested.clone(),
        // Instantiated without a name: `<template name>-<vmid>`.
        Some(_) => format!(
            "{}-{vmid}",
            prefix.or(given).unwrap_or_else(|| "one".into())
        ),
        None => {
            given.unwrap_or_else(|| format!("{}-{vmid}", prefix.unwrap_or_else(|| "one".into())))
        }
    };
    common::check_name(&name).map_err(|m| b.err(&m))?;

    for n in WELL_KNOWN {
        b.take(n);
    }
    // One GRAPHICS and one VIDEO device: the first of each (as OpenNebula).
    for n in ["GRAPHICS", "VIDEO"] {
        if let Some(first) = b.user.remove(n).into_iter().next() {
            b.tmpl.push(n, first);
        }
    }
    if let Some(e) = b.take_single("EMULATOR")
        && !e.is_empty()
    {
        b.tmpl.set("EMULATOR", e);
    }

    // Capacity, in OpenNebula's order and words.
    let memory = b
        .user
        .get("MEMORY")
        .and_then(parse_int)
        .filter(|m| *m > 0)
        .ok_or_else(|| b.err("MEMORY attribute must be a positive integer value."))?;
    b.user.remove("MEMORY");
    b.tmpl.set("MEMORY", memory.to_string());
    if let Some(mode) = b.take_single("MEMORY_RESIZE_MODE") {
        let m = mode.trim().to_ascii_uppercase();
        if m != "HOTPLUG" && m != "BALLOONING" {
            return Err(b.err(&format!(
                "Invalid MEMORY_RESIZE_MODE {mode:?}: it must be HOTPLUG or BALLOONING."
            )));
        }
        b.tmpl.set("MEMORY_RESIZE_MODE", m);
    }
    for name in ["MEMORY_MAX", "MEMORY_SLOTS"] {
        if let Some(v) = b.user.get(name).and_then(parse_int).filter(|v| *v > 0) {
            b.user.remove(name);
            b.tmpl.set(name, v.to_string());
        }
    }
    let cpu = b
        .user
        .get("CPU")
        .and_then(parse_float)
        .filter(|c| *c > 0.0)
        .ok_or_else(|| b.err("CPU attribute must be a positive float or integer value."))?;
    b.user.remove("CPU");
    b.tmpl.set("CPU", cpu.to_string());
    if let Some(v) = b.user.get("VCPU").filter(|v| !v.is_empty()) {
        let vcpu = parse_int(v)
            .filter(|n| *n > 0)
            .ok_or_else(|| b.err("VCPU attribute must be a positive integer value."))?;
        b.user.remove("VCPU");
        b.tmpl.set("VCPU", vcpu.to_string());
    }
    if let Some(v) = b
        .user
        .get("VCPU_MAX")
        .and_then(parse_int)
        .filter(|v| *v > 0)
    {
        b.user.remove("VCPU_MAX");
        b.tmpl.set("VCPU_MAX", v.to_string());
    }
    for name in ["CPU_COST", "MEMORY_COST", "DISK_COST"] {
        if let Some(v) = b.take_single(name) {
            let f = parse_float(&v).filter(|f| *f >= 0.0).ok_or_else(|| {
                b.err(&format!(
                    "{name} attribute must be a positive float or integer value."
                ))
            })?;
            b.tmpl.set(name, f.to_string());
        }
    }
    for (name, required) in [("TPM", "MODEL"), ("MEMORY_ENCRYPTION", "TYPE")] {
        for v in b.user.remove(name) {
            match &v {
                AttrValue::Vector(vec) if vec.get(required).is_some_and(|m| !m.is_empty()) => {
                    b.tmpl.push(name, v);
                }
                _ => {
                    return Err(b.err(&format!(
                        "{name} must be a vector with a {required} attribute."
                    )));
                }
            }
        }
    }

    // NICs (leases), then DISKs (images, targets).
    expand_nics(&mut b, tx)?;
    let context = take_context(&mut b)?;
    let context = expand_disks(&mut b, tx, context)?;

    // Hold on submit.
    let submit_on_hold = b
        .take_single("SUBMIT_ON_HOLD")
        .is_some_and(|v| context::is_yes(Some(&v)));
    let hold = hold || submit_on_hold;
    if hold {
        b.tmpl.set("SUBMIT_ON_HOLD", "YES");
    }

    // Backups: the known BACKUP_CONFIG keys (anything else is not part of vm.xsd).
    let mut backups = Backups::default();
    for v in b.user.remove("BACKUP_CONFIG") {
        if let AttrValue::Vector(vec) = v {
            for (k, val) in vec.attrs {
                if BACKUP_CONFIG_KEYS.contains(&k.as_str()) {
                    backups.config.set(&k, val);
                }
            }
        }
    }

    // Imported (wild) VMs bring their hypervisor id.
    let mut deploy_id = String::new();
    if let Some(d) = b.take_single("DEPLOY_ID").filter(|d| !d.is_empty()) {
        let one_vm = d
            .strip_prefix("one-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()));
        if one_vm {
            return Err(b.err("Trying to import an OpenNebula VM: 'one-*'."));
        }
        b.tmpl.set("IMPORTED", "YES");
        deploy_id = d;
    }

    b.tmpl.set("TM_MAD_SYSTEM", "");
    // Disks whose image is still being copied keep the VM in CLONING (even if held), as
    // OpenNebula; `ops::vm::image_lock_done` moves it on.
    let cloning = b
        .tmpl
        .vectors("DISK")
        .any(|d| context::is_yes(d.get("CLONING")));
    let state = if cloning {
        VmState::Cloning
    } else if hold {
        VmState::Hold
    } else {
        VmState::Pending
    };
    let mut vm = Vm {
        header: Header {
            id: vmid,
            uid: s.uid,
            gid: s.gid,
            uname: s.uname.clone(),
            gname: s.gname.clone(),
            name,
            perms: Permissions::from_umask(call.oned.config.umask()),
            lock: None,
        },
        last_poll: 0,
        state,
        lcm_state: LcmState::LcmInit,
        prev_state: state,
        prev_lcm_state: LcmState::LcmInit,
        resched: 0,
        stime: now_secs(),
        etime: 0,
        deploy_id,
        monitoring: Template::new(),
        sched_actions: Vec::new(),
        template: b.tmpl,
        user_template: b.user,
        history: Vec::new(),
        snapshots: Vec::new(),
        backups,
        op: None,
    };

    // Variables: SCHED_REQUIREMENTS and CONTEXT, against the VM as built so far.
    resolve_variables(call, tx, &mut vm, context)?;
    automatic_requirements(call, tx, &mut vm)?;
    parse_graphics(call, &mut vm.template)?;
    parse_video(call, &mut vm.template)?;
    Ok(vm)
}

const BACKUP_CONFIG_KEYS: &[&str] = &[
    "BACKUP_JOB_ID",
    "BACKUP_VOLATILE",
    "DISK_IDS",
    "FS_FREEZE",
    "INCREMENTAL_BACKUP_ID",
    "INCREMENT_MODE",
    "INTERACTIVE",
    "KEEP_LAST",
    "LAST_BACKUP_ID",
    "LAST_BACKUP_SIZE",
    "LAST_BRIDGE",
    "LAST_DATASTORE_ID",
    "LAST_INCREMENT_ID",
    "MODE",
];

/// The vectors named `name` of the user template, in order (a single value there is refused:
/// DISK = "x" is not a disk).
fn take_vectors(b: &mut Builder<'_>, name: &str) -> Result<Vec<Vector>, ApiError> {
    let mut out = Vec::new();
    for v in b.user.remove(name) {
        match v {
            AttrValue::Vector(v) => out.push(v),
            AttrValue::Single(_) => {
                return Err(b.err(&format!(
                    "Wrong format for {name}: it must be a vector attribute, {name} = [ ... ]."
                )));
            }
        }
    }
    Ok(out)
}

fn is_internal_nic_name(name: &str) -> bool {
    // OpenNebula's own names: NIC<n> or NIC<n>_ALIAS<m>.
    let Some(rest) = name.strip_prefix("NIC") else {
        return false;
    };
    let (nic, alias) = match rest.split_once("_ALIAS") {
        Some((n, a)) => (n, Some(a)),
        None => (rest, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    digits(nic) && alias.is_none_or(digits)
}

/// NICs and NIC aliases: NIC_ID by position (aliases after the NICs), a lease for each
/// (auto NICs wait for the scheduler), NAME and TARGET.
fn expand_nics(b: &mut Builder<'_>, tx: &mut Txn<'_>) -> Result<(), ApiError> {
    let nics = take_vectors(b, "NIC")?;
    let aliases = take_vectors(b, "NIC_ALIAS")?;
    let nic_default = b.tmpl.vector("NIC_DEFAULT").cloned();
    let mut done: Vec<Vector> = Vec::with_capacity(nics.len());
    // NAME → (NIC_ID, aliases so far, their NIC_IDs).
    let mut by_name: Vec<(String, i64, i64, Vec<i64>)> = Vec::new();
    let mut nic_id: i64 = 0;
    for mut nic in nics {
        let mode = nic
            .get("NETWORK_MODE")
            .unwrap_or("")
            .trim()
            .to_ascii_uppercase();
        nic.remove("NIC_ID");
        nic.set("NIC_ID", nic_id.to_string());
        if mode != "AUTO" && mode != "DUMMY" {
            if let Some(d) = &nic_default {
                merge_missing(&mut nic, d);
            }
            super::vnet::lease_for_nic(tx, b.call, &mut nic, b.vmid, b.uid)?;
            nic.set("NIC_ID", nic_id.to_string());
        } else if mode == "DUMMY" {
            if let Some(d) = &nic_default {
                merge_missing(&mut nic, d);
            }
            if nic.get("MAC").is_none_or(str::is_empty) {
                nic.set("MAC", random_mac(&b.call.oned.config.mac_prefix));
            }
        }
        let name = match nic.get("NAME").filter(|n| !n.is_empty()) {
            Some(n) if is_internal_nic_name(n) => format!("_{n}"),
            Some(n) => n.to_string(),
            None => format!("NIC{nic_id}"),
        };
        nic.set("NAME", name.clone());
        if mode != "AUTO" && mode != "DUMMY" && nic.get("TARGET").is_none_or(str::is_empty) {
            nic.set("TARGET", format!("one-{}-{nic_id}", b.vmid));
        }
        by_name.push((name, nic_id, 0, Vec::new()));
        done.push(nic);
        nic_id += 1;
    }
    let mut done_aliases = Vec::with_capacity(aliases.len());
    for mut alias in aliases {
        let mode = alias
            .get("NETWORK_MODE")
            .unwrap_or("")
            .trim()
            .to_ascii_uppercase();
        if mode == "AUTO" || mode == "DUMMY" {
            return Err(b.err(&format!("Alias is incompatible with mode {mode}")));
        }
        let parent = alias.get("PARENT").unwrap_or("").to_string();
        let Some(entry) = by_name.iter_mut().find(|e| e.0 == parent) else {
            return Err(b.err(&format!("NIC named {parent} not found for alias")));
        };
        let (parent_id, alias_id) = (entry.1, entry.2);
        entry.2 += 1;
        entry.3.push(nic_id);
        alias.remove("NIC_ID");
        alias.set("PARENT_ID", parent_id.to_string());
        alias.set("ALIAS_ID", alias_id.to_string());
        alias.set("NIC_ID", nic_id.to_string());
        super::vnet::lease_for_nic(tx, b.call, &mut alias, b.vmid, b.uid)?;
        alias.set("NIC_ID", nic_id.to_string());
        let name = match alias.get("NAME").filter(|n| !n.is_empty()) {
            Some(n) if is_internal_nic_name(n) => format!("_{n}"),
            Some(n) => n.to_string(),
            None => format!("NIC{parent_id}_ALIAS{alias_id}"),
        };
        alias.set("NAME", name);
        done_aliases.push(alias);
        nic_id += 1;
    }
    for (nic, (_, _, _, alias_ids)) in done.iter_mut().zip(&by_name) {
        if !alias_ids.is_empty() {
            let ids: Vec<String> = alias_ids.iter().map(i64::to_string).collect();
            nic.set("ALIAS_IDS", ids.join(","));
        }
    }
    for nic in done {
        b.tmpl.push("NIC", AttrValue::Vector(nic));
    }
    for alias in done_aliases {
        b.tmpl.push("NIC_ALIAS", AttrValue::Vector(alias));
    }
    Ok(())
}

/// Adds the sub-attributes of `defaults` that `v` does not have.
fn merge_missing(v: &mut Vector, defaults: &Vector) {
    for (k, val) in &defaults.attrs {
        if v.get(k).is_none() {
            v.set(k, val.clone());
        }
    }
}

fn random_mac(prefix: &str) -> String {
    let mut b = [0u8; 4];
    rand::fill(&mut b);
    format!(
        "{prefix}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3]
    )
}

/// The CONTEXT vector, if any (OpenNebula uses the first one).
fn take_context(b: &mut Builder<'_>) -> Result<Option<Vector>, ApiError> {
    let mut contexts = take_vectors(b, "CONTEXT")?;
    Ok(if contexts.is_empty() {
        None
    } else {
        Some(contexts.swap_remove(0))
    })
}

/// Which queue a disk's target is assigned from (OS first, then CD-ROMs and the context CD,
/// then the rest), as OpenNebula.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TargetQueue {
    Os,
    Cdrom,
    Datablock,
}

/// Target names in the order OpenNebula tries them: prefix + a, b, ..., z, aa, ab, ...
pub fn target_name(prefix: &str, index: usize) -> String {
    let mut letters = Vec::new();
    let mut q = index / 26;
    let mut r = index % 26;
    while q > 0 {
        letters.push(b'a' + r as u8);
        r = (q - 1) % 26;
        q = (q - 1) / 26;
    }
    letters.push(b'a' + r as u8);
    letters.reverse();
    format!("{prefix}{}", String::from_utf8_lossy(&letters))
}

/// Assigns TARGETs to the disks without one: OS disks, then CD-ROMs (and the context CD), then
/// data blocks, each the first free `<prefix><letter>`. `disks` are (queue, prefix, explicit
/// target); the answer is the target of each disk.
pub fn assign_targets(
    disks: &[(TargetQueue, String, Option<String>)],
) -> Result<Vec<String>, String> {
    let mut used: HashSet<String> = HashSet::new();
    for (_, _, t) in disks {
        if let Some(t) = t
            && !used.insert(t.clone())
        {
            return Err(format!("Two disks have defined the same target {t}"));
        }
    }
    let mut out: Vec<Option<String>> = disks.iter().map(|(_, _, t)| t.clone()).collect();
    for queue in [TargetQueue::Os, TargetQueue::Cdrom, TargetQueue::Datablock] {
        for (i, (q, prefix, t)) in disks.iter().enumerate() {
            if *q != queue || t.is_some() {
                continue;
            }
            let target = (0..)
                .map(|n| target_name(prefix, n))
                .find(|t| !used.contains(t))
                .unwrap_or_default();
            used.insert(target.clone());
            out[i] = Some(target);
        }
    }
    Ok(out.into_iter().map(Option::unwrap_or_default).collect())
}

/// DISKs: DISK_ID by position, images through the image code, volatile disks checked and
/// completed, then TARGETs for every disk and the context CD (which also gets its DISK_ID).
fn expand_disks(
    b: &mut Builder<'_>,
    tx: &mut Txn<'_>,
    mut context: Option<Vector>,
) -> Result<Option<Vector>, ApiError> {
    let disks = take_vectors(b, "DISK")?;
    let default_prefix = b.call.oned.config.default_device_prefix.clone();
    let machine = b
        .tmpl
        .vector("OS")
        .and_then(|os| os.get("MACHINE"))
        .unwrap_or("")
        .to_ascii_lowercase();
    let q35 = machine.contains("q35") || machine.contains("virt");
    let cdrom_prefix = if q35 { "sd" } else { "hd" };
    let mut done: Vec<Vector> = Vec::with_capacity(disks.len());
    let mut plan: Vec<(TargetQueue, String, Option<String>)> = Vec::with_capacity(disks.len() + 1);
    let mut first_os = true;
    let (mut hd, mut sd) = (0, 0);
    for (i, mut disk) in disks.into_iter().enumerate() {
        let disk_id = i as i64;
        disk.remove("DISK_ID");
        let uses_image = disk.get("IMAGE_ID").is_some() || disk.get("IMAGE").is_some();
        let (queue, prefix) = if uses_image {
            super::image::disk_from_image(tx, b.call, &mut disk, disk_id, b.vmid, b.uid)?;
            let image: Option<Image> = disk
                .get("IMAGE_ID")
                .and_then(parse_int)
                .and_then(|iid| tx.get::<Image>(iid));
            let prefix = disk
                .get("DEV_PREFIX")
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .or_else(|| {
                    image
                        .as_ref()
                        .and_then(|i| i.template.get("DEV_PREFIX"))
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                });
            match image.map(|i| i.image_type) {
                Some(ImageType::Os) if first_os => {
                    first_os = false;
                    (
                        TargetQueue::Os,
                        prefix.unwrap_or_else(|| default_prefix.clone()),
                    )
                }
                Some(ImageType::Cdrom) => (
                    TargetQueue::Cdrom,
                    prefix.unwrap_or_else(|| cdrom_prefix.to_string()),
                ),
                _ => (
                    TargetQueue::Datablock,
                    prefix.unwrap_or_else(|| default_prefix.clone()),
                ),
            }
        } else {
            volatile_disk(b, &mut disk, disk_id, &default_prefix)?;
            let prefix = disk
                .get("DEV_PREFIX")
                .unwrap_or(&default_prefix)
                .to_string();
            (TargetQueue::Datablock, prefix)
        };
        disk.set("DISK_ID", disk_id.to_string());
        match prefix.as_str() {
            "hd" => hd += 1,
            "sd" => sd += 1,
            _ => {}
        }
        let target = disk
            .get("TARGET")
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        plan.push((queue, prefix, target));
        done.push(disk);
    }
    if hd > 4 && !q35 {
        return Err(b.err(&format!(
            "Non q35 or virt VM {} has more than 4 hd disks",
            b.vmid
        )));
    }
    if sd > 256 {
        return Err(b.err(&format!("VM {} has more than 256 disks", b.vmid)));
    }
    if let Some(ctx) = &context {
        let prefix = ctx
            .get("DEV_PREFIX")
            .filter(|p| !p.is_empty())
            .unwrap_or(cdrom_prefix)
            .to_string();
        let target = ctx
            .get("TARGET")
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        plan.push((TargetQueue::Cdrom, prefix, target));
    }
    let targets = assign_targets(&plan).map_err(|m| b.err(&m))?;
    for (disk, target) in done.iter_mut().zip(&targets) {
        disk.set("TARGET", target.clone());
    }
    if let Some(ctx) = context.as_mut() {
        // Disk ids are 0..n-1; the context CD is n.
        ctx.set("DISK_ID", done.len().to_string());
        ctx.set("TARGET", targets.last().cloned().unwrap_or_default());
    }
    for disk in done {
        b.tmpl.push("DISK", AttrValue::Vector(disk));
    }
    Ok(context)
}

/// A disk without an image: TYPE fs or swap with a positive SIZE (MB).
fn volatile_disk(
    b: &Builder<'_>,
    disk: &mut Vector,
    disk_id: i64,
    default_prefix: &str,
) -> Result<(), ApiError> {
    let ty = disk.get("TYPE").unwrap_or("").trim().to_ascii_lowercase();
    if ty != "fs" && ty != "swap" {
        return Err(b.err(&format!(
            "DISK {disk_id}: Unknown disk type {}",
            disk.get("TYPE").unwrap_or("").to_ascii_uppercase()
        )));
    }
    let size = disk
        .get("SIZE")
        .and_then(parse_int)
        .filter(|s| *s > 0)
        .ok_or_else(|| {
            b.err(&format!(
                "DISK {disk_id}: SIZE attribute must be a positive integer value."
            ))
        })?;
    disk.set("TYPE", ty);
    disk.set("SIZE", size.to_string());
    if disk.get("FORMAT").is_none_or(str::is_empty) {
        disk.set("FORMAT", "raw");
    }
    if disk.get("DEV_PREFIX").is_none_or(str::is_empty) {
        disk.set("DEV_PREFIX", default_prefix);
    }
    Ok(())
}

/// SCHED_REQUIREMENTS (one at most; the legacy REQUIREMENTS name too) and CONTEXT variables.
fn resolve_variables(
    call: &Call,
    tx: &Txn<'_>,
    vm: &mut Vm,
    context: Option<Vector>,
) -> Result<(), ApiError> {
    let err = |m: &str| allocate(call.method, OBJNAME, m);
    let mut reqs = vm.user_template.remove("SCHED_REQUIREMENTS");
    let legacy = vm.user_template.remove("REQUIREMENTS");
    if reqs.is_empty() {
        reqs = legacy;
    }
    if reqs.len() > 1 {
        return Err(err("Only one SCHED_REQUIREMENTS attribute can be defined."));
    }
    if reqs.is_empty() && context.is_none() {
        return Ok(());
    }
    if let Some(context) = &context
        && context::is_yes(context.get("TOKEN"))
    {
        return Err(err(
            "TOKEN set, but onegate endpoint was not defined in oned.conf.",
        ));
    }
    let state = tx.committed();
    let lookup = crate::ops::context::StateLookup { state: &state };
    let snapshot = vm.clone();
    let document = || Vm::to_xml(&snapshot);
    let scope = Scope {
        vmid: vm.header.id,
        name: &snapshot.header.name,
        uid: snapshot.header.uid,
        uname: &snapshot.header.uname,
        gid: snapshot.header.gid,
        gname: &snapshot.header.gname,
        template: &snapshot.template,
        user_template: &snapshot.user_template,
        lookup: &lookup,
        document: &document,
    };
    if let Some(r) = reqs.pop() {
        let AttrValue::Single(text) = r else {
            return Err(err("Wrong format for SCHED_REQUIREMENTS attribute."));
        };
        let parsed = context::substitute(&text, &scope).map_err(|m| err(&m))?;
        vm.user_template.set("SCHED_REQUIREMENTS", parsed);
    }
    if let Some(mut ctx) = context {
        expand_files_ds(call, &state, snapshot.header.uid, &mut ctx).map_err(|m| err(&m))?;
        let resolved = context::resolve_context(&ctx, &scope).map_err(|m| err(&m))?;
        vm.template.push("CONTEXT", AttrValue::Vector(resolved));
    }
    Ok(())
}

/// CONTEXT/FILES_DS: each `$FILE[...]` becomes the image's `'SOURCE':'NAME'`, which the host's
/// driver copies onto the context CD as NAME. Only CONTEXT images of the files datastore the
/// caller may USE; IMAGE names are looked up among the VM owner's images unless
/// IMAGE_UNAME / IMAGE_UID say whose. Called at allocation and at updateconf.
pub(crate) fn expand_files_ds(
    call: &Call,
    state: &crate::store::State,
    owner: i64,
    ctx: &mut Vector,
) -> Result<(), String> {
    let Some(text) = ctx.get("FILES_DS").map(str::to_string) else {
        return Ok(());
    };
    let mut files = Vec::new();
    for r in context::parse_files_ds(&text)? {
        // A $FILE names its image as a DISK does.
        let image = super::image::disk_image_id(state, &r, owner)
            .and_then(|id| state.images.get(id))
            .ok_or_else(|| match (r.get("IMAGE_ID"), r.get("IMAGE")) {
                (Some(id), _) => format!("FILES_DS: image {id} does not exist"),
                (None, name) => format!(
                    "FILES_DS: there is no image named {:?} of that owner (IMAGE_UNAME / \
                     IMAGE_UID say whose)",
                    name.unwrap_or_default()
                ),
            })?;
        let id = image.header.id;
        if image.image_type != ImageType::Context {
            return Err(format!(
                "FILES_DS: image {id} is of type {}, only CONTEXT images go on the context CD",
                image.image_type.name()
            ));
        }
        if !matches!(
            image.state,
            one_proto::state::ImageState::Ready | one_proto::state::ImageState::Used
        ) {
            return Err(format!(
                "FILES_DS: image {id} is in state {}, not READY",
                image.state.name()
            ));
        }
        common::authorize(call, state, &**image, AuthOp::Use).map_err(|e| e.message)?;
        files.push((image.source.clone(), image.header.name.clone()));
    }
    ctx.set("FILES_DS", context::files_ds_value(&files));
    Ok(())
}

/// AUTOMATIC_REQUIREMENTS / AUTOMATIC_NIC_REQUIREMENTS / AUTOMATIC_DS_REQUIREMENTS from the
/// clusters of the datastores of the disks and of the networks of the NICs (each DISK and
/// NIC also gets its CLUSTER_ID list), as OpenNebula.
fn automatic_requirements(call: &Call, tx: &Txn<'_>, vm: &mut Vm) -> Result<(), ApiError> {
    let err = |m: String| allocate(call.method, OBJNAME, &m);
    let join = |s: &BTreeSet<i64>| s.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let state = tx.committed();
    let mut cluster_ids: Option<BTreeSet<i64>> = None;
    let mut ds_ids: Option<BTreeSet<i64>> = None;
    let mut shareable = false;
    // Narrows the candidate set; Err(true) = disjoint, Err(false) = the element has none.
    fn narrow(current: &mut Option<BTreeSet<i64>>, ids: BTreeSet<i64>) -> Result<(), bool> {
        if ids.is_empty() {
            return Err(false);
        }
        match current {
            None => *current = Some(ids),
            Some(cur) => {
                let both: BTreeSet<i64> = cur.intersection(&ids).copied().collect();
                if both.is_empty() {
                    return Err(true);
                }
                *cur = both;
            }
        }
        Ok(())
    }
    for (i, disk) in vm.template.vectors_mut("DISK").enumerate() {
        if disk.get("TYPE") == Some("FILESYSTEM") {
            continue;
        }
        shareable |= context::is_yes(disk.get("SHAREABLE"));
        let Some(ds_id) = disk.get("DATASTORE_ID").and_then(parse_int) else {
            continue;
        };
        let ds: Option<&std::sync::Arc<Datastore>> = state.datastores.get(ds_id);
        let clusters: BTreeSet<i64> = ds
            .map(|d| d.clusters.iter().copied().collect())
            .unwrap_or_default();
        disk.set("CLUSTER_ID", join(&clusters));
        let before = cluster_ids.as_ref().map(join).unwrap_or_default();
        narrow(&mut cluster_ids, clusters).map_err(|disjoint| {
            err(if disjoint {
                format!(
                    "Incompatible clusters in DISK. Datastore for DISK {i} is not in the same cluster as the one used by other VM elements (cluster {before})"
                )
            } else {
                format!("Missing clusters. Datastore for DISK {i} is not in any cluster")
            })
        })?;
        let compatible: BTreeSet<i64> = ds
            .and_then(|d| d.template.get("COMPATIBLE_SYS_DS"))
            .map(|s| s.split(',').filter_map(parse_int).collect())
            .unwrap_or_default();
        if !compatible.is_empty() {
            let before = ds_ids.as_ref().map(join).unwrap_or_default();
            narrow(&mut ds_ids, compatible).map_err(|_| {
                err(format!(
                    "Incompatible system datastore in DISK. Images Datastore for DISK {i} has not the same complatible system datastore(system datastores {before})"
                ))
            })?;
        }
    }
    for (i, nic) in vm.template.vectors_mut("NIC").enumerate() {
        if nic
            .get("NETWORK_MODE")
            .is_some_and(|m| m.eq_ignore_ascii_case("DUMMY"))
        {
            continue;
        }
        let Some(net) = nic.get("NETWORK_ID").and_then(parse_int) else {
            continue;
        };
        let clusters: BTreeSet<i64> = state
            .vnets
            .get(net)
            .map(|n: &std::sync::Arc<Vnet>| n.clusters.iter().copied().collect())
            .unwrap_or_default();
        nic.set("CLUSTER_ID", join(&clusters));
        let before = cluster_ids.as_ref().map(join).unwrap_or_default();
        narrow(&mut cluster_ids, clusters).map_err(|disjoint| {
            err(if disjoint {
                format!(
                    "Incompatible clusters in NIC. Network for NIC {i} is not in the same cluster as the one used by other VM elements (cluster {before})"
                )
            } else {
                format!("Missing clusters. Network for NIC {i} is not in any cluster")
            })
        })?;
    }
    drop(state);

    let t = &mut vm.template;
    t.remove("AUTOMATIC_REQUIREMENTS");
    t.remove("AUTOMATIC_DS_REQUIREMENTS");
    t.remove("AUTOMATIC_NIC_REQUIREMENTS");
    let mut req = String::new();
    if let Some(c) = &cluster_ids {
        let parts: Vec<String> = c.iter().map(|id| format!("CLUSTER_ID = {id}")).collect();
        req.push_str(&format!("({}) & ", parts.join(" | ")));
    }
    let pinned = t
        .vector("TOPOLOGY")
        .and_then(|v| v.get("PIN_POLICY"))
        .is_some_and(|p| !p.is_empty() && !p.eq_ignore_ascii_case("NONE"));
    req.push_str(if pinned {
        "(PIN_POLICY = PINNED)"
    } else {
        "!(PIN_POLICY = PINNED)"
    });
    if let Some(enc) = t
        .vector("MEMORY_ENCRYPTION")
        .and_then(|v| v.get("TYPE"))
        .filter(|s| !s.is_empty())
    {
        let pattern = match enc {
            "SEV" => "SEV*",
            "SEV-ES" => "SEV-*",
            other => other,
        };
        req.push_str(&format!(" & (MEMORY_ENCRYPTION = \"{pattern}\")"));
    }
    t.set("AUTOMATIC_REQUIREMENTS", req);

    let mut ds_req = String::new();
    if cluster_ids.is_some() || ds_ids.is_some() {
        if let Some(c) = &cluster_ids {
            let parts: Vec<String> = c
                .iter()
                .map(|id| format!("\"CLUSTERS/ID\" @> {id}"))
                .collect();
            ds_req = format!("({})", parts.join(" | "));
            t.set("AUTOMATIC_NIC_REQUIREMENTS", ds_req.clone());
            if ds_ids.is_some() {
                ds_req.push_str(" & ");
            }
        }
        if let Some(d) = &ds_ids {
            let parts: Vec<String> = d.iter().map(|id| format!("\"ID\" @> {id}")).collect();
            ds_req.push_str(&format!("({})", parts.join(" | ")));
        }
        if let Some(tm) = t
            .get("TM_MAD_SYSTEM")
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            ds_req.push_str(&format!(" & (TM_MAD = \"{tm}\")"));
        }
    }
    if shareable {
        if !ds_req.is_empty() {
            ds_req.push_str(" & ");
        }
        ds_req.push_str("(SHARED = \"YES\")");
    }
    if !ds_req.is_empty() {
        t.set("AUTOMATIC_DS_REQUIREMENTS", ds_req);
    }
    Ok(())
}

/// GRAPHICS: moved to TEMPLATE by the caller; PORT must be a port number, RANDOM_PASSWD
/// makes a password, passwords are cut to what VNC (8) and SPICE (59) accept.
fn parse_graphics(call: &Call, t: &mut Template) -> Result<(), ApiError> {
    let Some(g) = t.vector_mut("GRAPHICS") else {
        return Ok(());
    };
    if let Some(port) = g.get("PORT").filter(|p| !p.is_empty())
        && !matches!(port.trim().parse::<u32>(), Ok(p) if p <= 65535)
    {
        return Err(allocate(
            call.method,
            OBJNAME,
            "Wrong PORT number in GRAPHICS attribute",
        ));
    }
    let mut passwd = g.get("PASSWD").unwrap_or("").to_string();
    if context::is_yes(g.get("RANDOM_PASSWD")) && passwd.is_empty() {
        passwd = crate::auth::random_hex(8);
    }
    let ty = g.get("TYPE").unwrap_or("").to_ascii_lowercase();
    let max = match ty.as_str() {
        "vnc" => Some(8),
        "spice" => Some(59),
        _ => None,
    };
    if let Some(max) = max {
        passwd = passwd.chars().take(max).collect();
    }
    if !passwd.is_empty() {
        g.set("PASSWD", passwd);
    }
    Ok(())
}

/// VIDEO: TYPE required (none, vga, cirrus, virtio), IOMMU/ATS only for virtio, VRAM >= 1024,
/// RESOLUTION WxH.
fn parse_video(call: &Call, t: &mut Template) -> Result<(), ApiError> {
    let Some(v) = t.vector_mut("VIDEO") else {
        return Ok(());
    };
    let err = |m: &str| allocate(call.method, OBJNAME, m);
    let ty = v.get("TYPE").unwrap_or("").trim().to_ascii_lowercase();
    if ty.is_empty() {
        return Err(err("Video TYPE is required"));
    }
    if !["vga", "cirrus", "none", "virtio"].contains(&ty.as_str()) {
        return Err(err(
            "Invalid video TYPE, should be either: none, vga, cirrus, or virtio",
        ));
    }
    if (context::is_yes(v.get("IOMMU")) || context::is_yes(v.get("ATS"))) && ty != "virtio" {
        return Err(err("IOMMU and ATS are only available for virtio TYPE"));
    }
    if let Some(vram) = v.get("VRAM").filter(|s| !s.is_empty())
        && !matches!(vram.trim().parse::<u32>(), Ok(n) if n >= 1024)
    {
        return Err(err(
            "Invalid VRAM value in VIDEO attribute, must be >= 1024",
        ));
    }
    if let Some(res) = v.get("RESOLUTION").filter(|s| !s.is_empty()) {
        let ok = res.split_once('x').is_some_and(|(w, h)| {
            !w.is_empty() && !h.is_empty() && w.bytes().chain(h.bytes()).all(|c| c.is_ascii_digit())
        });
        if !ok {
            return Err(err("Invalid RESOLUTION string format"));
        }
    }
    v.set("TYPE", ty);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names() {
        assert_eq!(target_name("vd", 0), "vda");
        assert_eq!(target_name("sd", 25), "sdz");
        assert_eq!(target_name("sd", 26), "sdaa");
        assert_eq!(target_name("sd", 27), "sdab");
        assert_eq!(target_name("hd", 26 * 27), "hdaaa");
    }

    fn plan(
        items: &[(TargetQueue, &str, Option<&str>)],
    ) -> Vec<(TargetQueue, String, Option<String>)> {
        items
            .iter()
            .map(|(q, p, t)| (*q, p.to_string(), t.map(str::to_string)))
            .collect()
    }

    #[test]
    fn targets_os_then_cdrom_then_datablocks_skipping_used() {
        use TargetQueue::*;
        // datablock, OS, explicit sdb, CD-ROM, context CD (hd).
        let p = plan(&[
            (Datablock, "sd", None),
            (Os, "sd", None),
            (Datablock, "sd", Some("sdb")),
            (Cdrom, "hd", None),
            (Cdrom, "hd", None),
        ]);
        assert_eq!(
            assign_targets(&p).unwrap(),
            ["sdc", "sda", "sdb", "hda", "hdb"]
        );
        let p = plan(&[
            (Datablock, "vd", None),
            (Datablock, "vd", None),
            (Cdrom, "hd", None),
        ]);
        assert_eq!(assign_targets(&p).unwrap(), ["vda", "vdb", "hda"]);
        let p = plan(&[(Datablock, "vd", Some("vda")), (Os, "vd", Some("vda"))]);
        assert_eq!(
            assign_targets(&p).unwrap_err(),
            "Two disks have defined the same target vda"
        );
    }

    #[test]
    fn state_filters() {
        assert_eq!(StateFilter::parse(-2), Some(StateFilter::Any));
        assert_eq!(StateFilter::parse(-3), None);
        assert_eq!(StateFilter::parse(12), None);
        assert!(StateFilter::Any.matches(VmState::Done));
        assert!(!StateFilter::NotDone.matches(VmState::Done));
        assert!(StateFilter::NotDone.matches(VmState::Hold));
        let hold = StateFilter::parse(2).unwrap();
        assert!(hold.matches(VmState::Hold) && !hold.matches(VmState::Pending));
    }

    #[test]
    fn restricted_attributes() {
        let t = Template::parse("CPU=1 NIC=[NETWORK_ID=0, MAC=\"02:00:00:00:00:01\"]").unwrap();
        assert_eq!(
            changed_restricted_attr(&t, &Template::new()),
            Some("NIC/MAC")
        );
        assert_eq!(changed_restricted_attr(&t, &t), None);
        let t = Template::parse("CPU=1 RAW=[TYPE=kvm, DATA=\"<x/>\"] ").unwrap();
        assert_eq!(
            changed_restricted_attr(&t, &Template::new()),
            Some("RAW/DATA")
        );
        let t = Template::parse("CPU=1 MEMORY=2 DISK=[IMAGE_ID=1, SIZE=10]").unwrap();
        assert_eq!(changed_restricted_attr(&t, &Template::new()), None);
    }

    #[test]
    fn internal_nic_names() {
        assert!(is_internal_nic_name("NIC0"));
        assert!(is_internal_nic_name("NIC12_ALIAS3"));
        assert!(!is_internal_nic_name("NIC"));
        assert!(!is_internal_nic_name("NICE"));
        assert!(!is_internal_nic_name("NIC1_ALIAS"));
        assert!(!is_internal_nic_name("eth0"));
    }

    fn vm_with(tmpl: &str, state: VmState) -> Vm {
        Vm {
            header: Header {
                id: 1,
                uid: 2,
                gid: 1,
                uname: "u".into(),
                gname: "users".into(),
                name: "n".into(),
                perms: Permissions::default(),
                lock: None,
            },
            last_poll: 0,
            state,
            lcm_state: LcmState::LcmInit,
            prev_state: state,
            prev_lcm_state: LcmState::LcmInit,
            resched: 0,
            stime: 0,
            etime: 0,
            deploy_id: String::new(),
            monitoring: Template::new(),
            sched_actions: Vec::new(),
            template: Template::parse(tmpl).unwrap(),
            user_template: Template::new(),
            history: Vec::new(),
            snapshots: Vec::new(),
            backups: Backups::default(),
            op: None,
        }
    }

    #[test]
    fn quota_usage_of_a_vm() {
        let vm = vm_with(
            "CPU=0.5 MEMORY=256 DISK=[TYPE=fs, SIZE=100] DISK=[TYPE=swap, SIZE=50] \
             DISK=[IMAGE_ID=3, SIZE=2048, CLONE_TARGET=SYSTEM] DISK=[IMAGE_ID=3, SIZE=10, CLONE_TARGET=SELF] \
             NIC=[NETWORK_ID=4] NIC_ALIAS=[NETWORK_ID=4] NIC=[NETWORK_ID=5] NIC=[NETWORK_MODE=auto]",
            VmState::Pending,
        );
        let u = quota_usage(&vm);
        assert_eq!((u.vms, u.cpu, u.memory_mb), (1, 0.5, 256));
        assert_eq!(u.system_disk_mb, 100 + 50 + 2048);
        assert_eq!(
            (u.running_vms, u.running_cpu, u.running_memory_mb),
            (1, 0.5, 256)
        );
        assert_eq!(u.image_rvms, vec![(3, 2)]);
        assert!(u.leases.is_empty());
        assert_eq!(lease_usage(&vm.template), vec![(4, 2), (5, 1)]);
        let done = vm_with("CPU=1 MEMORY=1", VmState::Done);
        assert_eq!(quota_usage(&done).running_vms, 0);
    }

    #[test]
    fn search_queries() {
        let mut vm = vm_with(
            "CPU=1 MEMORY=64 NIC=[IP=10.0.0.7, NETWORK_ID=1]",
            VmState::Pending,
        );
        vm.header.name = "Web-Frontend".into();
        vm.user_template = Template::parse("LABELS=\"prod,eu\"").unwrap();
        let q = |s: &str| Query::parse(s).unwrap().matches(&vm);
        assert!(q(""));
        assert!(q("VM.NAME=web"));
        assert!(q("NAME=frontend"));
        assert!(!q("VM.NAME=db"));
        assert!(q("VM.TEMPLATE.NIC.IP=10.0.0.7"));
        assert!(q("VM.USER_TEMPLATE.LABELS=prod&VM.NAME=web"));
        assert!(!q("VM.USER_TEMPLATE.LABELS=prod&VM.NAME=db"));
        assert!(q("LABELS=eu"));
        assert!(q("MEMORY=64"));
        assert!(q("frontend"));
        assert!(Query::parse("VM..NAME=x").is_err());
    }
}
