//! one.secgroup.* / one.secgrouppool.info: security groups (OpenNebula's SecurityGroupXRPC).
//!
//! | method | params | answer |
//! |---|---|---|
//! | allocate | s template | id (ids from 100; 0 is `default`) |
//! | delete | i id | id (not group 0, not while VMs use it) |
//! | update | i id, s template, [i mode = 0] | id; new rules go to the VMs by themselves |
//! | rename / chmod / chown | common | id |
//! | clone | i id, s name | new id |
//! | commit | i id, b recovery | id; rules again to all VMs, or to UPDATING / ERROR ones |
//! | info | i id, [b decrypt] | SECURITY_GROUP |
//! | one.secgrouppool.info | i filter, i start, i end | SECURITY_GROUP_POOL |
//! | one.vm.attachsg / detachsg | i vm, i nic_id, i secgroup | vm id; a running VM's host reloads its rules |
//!
//! Every change is committed before the call is answered; the VMs' hosts get the rules
//! afterwards from the updater (`crate::secgroup::updater`), tracked in the group's VM sets.

use super::common::{self, ApiObject, authorize_create, commit, get_for_change, parse_template};
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id};
use crate::store::{Kind, Txn};
use one_proto::ApiError;
use one_proto::acl::{AuthOp, ObjectType};
use one_proto::objects::secgroup::{self, SecurityGroup, normalize_rules};
use one_proto::objects::user::User;
use one_proto::objects::{Header, Permissions};
use one_proto::template::Template;

const OBJNAME: &str = "security group";

impl ApiObject for SecurityGroup {
    const OBJNAME: &'static str = OBJNAME;
    const POOL_ROOT: &'static str = "SECURITY_GROUP_POOL";
    const ACL_TYPE: ObjectType = ObjectType::SecGroup;

    crate::owned_header!();
    fn user_template_mut(&mut self) -> &mut Template {
        &mut self.template
    }
    /// Security groups cannot be locked (OpenNebula has no one.secgroup.lock).
    fn lock_slot(&mut self) -> Option<&mut Option<one_proto::objects::Lock>> {
        None
    }
}

pub fn register(r: &mut Registry) {
    r.add("one.secgroup.allocate", |c: Call, p: Params| async move {
        allocate_sg(&c, p.str(0)?).await
    });
    r.add("one.secgroup.delete", |c: Call, p: Params| async move {
        delete(&c, p.int32(0)?).await
    });
    r.add("one.secgroup.update", |c: Call, p: Params| async move {
        update(&c, p.int32(0)?, p.str(1)?, p.opt_int(2, 0)?).await
    });
    r.add("one.secgroup.rename", |c: Call, p: Params| async move {
        common::rename_owned::<SecurityGroup>(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.secgroup.chmod", |c: Call, p: Params| async move {
        common::chmod::<SecurityGroup>(&c, p.int32(0)?, common::chmod_bits(&p, 1)?).await
    });
    r.add("one.secgroup.chown", |c: Call, p: Params| async move {
        common::chown::<SecurityGroup>(&c, p.int32(0)?, p.int32(1)?, p.int32(2)?).await
    });
    r.add("one.secgroup.clone", |c: Call, p: Params| async move {
        clone(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.secgroup.commit", |c: Call, p: Params| async move {
        commit_sg(&c, p.int32(0)?, p.opt_bool(1, false)?).await
    });
    r.add("one.secgroup.info", |c: Call, p: Params| async move {
        common::info::<SecurityGroup>(&c, p.int32(0)?)
    });
    r.add("one.vm.attachsg", |c: Call, p: Params| async move {
        attach_detach(&c, p.int32(0)?, p.int32(1)?, p.int32(2)?, true).await
    });
    r.add("one.vm.detachsg", |c: Call, p: Params| async move {
        attach_detach(&c, p.int32(0)?, p.int32(1)?, p.int32(2)?, false).await
    });
    r.add("one.secgrouppool.info", |c: Call, p: Params| async move {
        common::pool_info::<SecurityGroup>(
            &c,
            p.opt_int(0, -2)?,
            p.opt_int(1, -1)?,
            p.opt_int(2, -1)?,
        )
    });
}

fn new_header(call: &Call, tx: &Txn<'_>, id: i64, name: &str) -> Header {
    let uname = tx
        .get::<User>(call.session.uid)
        .map(|u| u.name)
        .unwrap_or_else(|| call.session.uname.clone());
    Header {
        id,
        uid: call.session.uid,
        gid: call.session.gid,
        uname,
        gname: call.session.gname.clone(),
        name: name.to_string(),
        perms: Permissions::from_umask(call.oned.config.umask()),
        lock: None,
    }
}

/// A new group from `t` (NAME taken out; RULEs checked, duplicates dropped), as the caller's.
async fn create(call: &Call, mut t: Template, name: &str) -> Result<i64, ApiError> {
    let fail = |m: &str| internal(call.method, m);
    common::check_name(name).map_err(|m| fail(&m))?;
    t.remove("NAME");
    normalize_rules(&mut t).map_err(|m| fail(&m))?;
    let mut tx = call.oned.store.begin().await;
    if let Some(other) =
        common::name_taken_by_owner::<SecurityGroup>(&tx, name, call.session.uid, -1)
    {
        return Err(fail(&format!(
            "NAME is already taken by SecurityGroup {other}."
        )));
    }
    tx.bump_next_id(Kind::SecGroup, secgroup::FIRST_USER_ID);
    let id = tx.next_id(Kind::SecGroup);
    let sg = SecurityGroup::new(new_header(call, &tx, id, name), t);
    tx.put(sg);
    commit(call, tx).await?;
    Ok(id)
}

async fn allocate_sg(call: &Call, text: &str) -> ApiResult {
    let t = parse_template(call, text)?;
    authorize_create(call, &call.oned.store.read(), ObjectType::SecGroup)?;
    let name = t.get("NAME").map(str::trim).unwrap_or("").to_string();
    if name.is_empty() {
        return Err(internal(
            call.method,
            "No NAME in template for Security Group.",
        ));
    }
    let id = create(call, t, &name).await?;
    tracing::info!(
        secgroup = id,
        name,
        uid = call.session.uid,
        "security group allocated"
    );
    ok_id(id)
}

async fn clone(call: &Call, id: i64, name: &str) -> ApiResult {
    let src = common::get_authorized::<SecurityGroup>(call, id, AuthOp::Use)?;
    authorize_create(call, &call.oned.store.read(), ObjectType::SecGroup)?;
    let new_id = create(call, src.template.clone(), name).await?;
    tracing::info!(secgroup = new_id, source = id, "security group cloned");
    ok_id(new_id)
}

async fn delete(call: &Call, id: i64) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let sg: SecurityGroup = get_for_change(call, &tx, id, AuthOp::Manage)?;
    let cannot = |m: &str| action(call.method, &format!("Cannot delete security group. {m}"));
    if id == secgroup::DEFAULT_ID {
        return Err(cannot(
            "The default security group (ID 0) cannot be deleted.",
        ));
    }
    if sg.vm_count() > 0 {
        return Err(cannot("The security group has VMs using it"));
    }
    // ACL rules naming the group (`#id`) would grant on a future group of the same id.
    super::group::drop_rules_of(&mut tx, ObjectType::SecGroup, id);
    tx.delete::<SecurityGroup>(id);
    commit(call, tx).await?;
    tracing::info!(secgroup = id, "security group deleted");
    ok_id(id)
}

/// `one.secgroup.update`: the template is replaced (0) or merged (1); the RULEs are checked
/// as at allocation, and when they changed every VM of the group gets them (OUTDATED, then
/// the updater).
async fn update(call: &Call, id: i64, text: &str, mode: i64) -> ApiResult {
    if mode != 0 && mode != 1 {
        return Err(rpc_api(call.method, "Wrong update type"));
    }
    let new = parse_template(call, text)?;
    let mut tx = call.oned.store.begin().await;
    let mut sg: SecurityGroup = get_for_change(call, &tx, id, AuthOp::Manage)?;
    let mut t = if mode == 0 {
        new
    } else {
        let mut t = sg.template.clone();
        t.merge(&new);
        t
    };
    normalize_rules(&mut t)
        .map_err(|m| internal(call.method, &format!("Cannot update template. {m}")))?;
    let before: Vec<_> = sg.rules().cloned().collect();
    sg.template = t;
    let changed = sg.rules().cloned().collect::<Vec<_>>() != before;
    // OpenNebula commits on every update; with the same rules that only reloads them.
    sg.commit(false);
    let vms = sg.vm_count();
    tx.put(sg);
    commit(call, tx).await?;
    call.oned.secgroups.kick();
    tracing::info!(
        secgroup = id,
        rules_changed = changed,
        vms,
        "security group updated"
    );
    ok_id(id)
}

/// `one.secgroup.commit(id, recovery)`: the rules go again to every VM of the group, or with
/// `recovery` to those UPDATING or in ERROR only.
async fn commit_sg(call: &Call, id: i64, recover: bool) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let mut sg: SecurityGroup = get_for_change(call, &tx, id, AuthOp::Manage)?;
    sg.commit(recover);
    tx.put(sg);
    commit(call, tx).await?;
    call.oned.secgroups.kick();
    tracing::info!(secgroup = id, recover, "security group committed");
    ok_id(id)
}

/// `one.vm.attachsg` / `one.vm.detachsg(vm, nic, group)`: the group joins or leaves the
/// NIC's SECURITY_GROUPS; the VM's rules follow, and a running VM's host loads them again
/// (as OpenNebula: refused while the VM's rules are being made on a host, BOOT, MIGRATE,
/// HOTPLUG_NIC, or it is UNKNOWN).
async fn attach_detach(call: &Call, id: i64, nic_id: i64, sg_id: i64, attach: bool) -> ApiResult {
    use crate::secgroup::updater::{Class, classify};
    use one_proto::objects::vm::Vm;
    let m = call.method;
    let mut tx = call.oned.store.begin().await;
    let mut vm: Vm = get_for_change(call, &tx, id, AuthOp::Manage)?;
    let class = classify(vm.state, vm.lcm_state);
    if matches!(class, Class::Error | Class::Gone) {
        return Err(action(
            m,
            &format!("VM {id} is in wrong state {}", vm.state_str()),
        ));
    }
    let sg: SecurityGroup = tx.get(sg_id).ok_or_else(|| no_exists(m, OBJNAME, sg_id))?;
    common::authorize(call, &tx.committed(), &sg, AuthOp::Use)?;
    let Some(nic) = vm
        .template
        .vectors_mut("NIC")
        .find(|n| n.get("NIC_ID").and_then(|s| s.trim().parse::<i64>().ok()) == Some(nic_id))
    else {
        return Err(action(m, &format!("VM {id} doesn't have NIC id {nic_id}")));
    };
    let mut ids: Vec<i64> = nic
        .get("SECURITY_GROUPS")
        .unwrap_or("")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    match (attach, ids.contains(&sg_id)) {
        (true, true) => {
            return Err(action(
                m,
                &format!("VM {id} SG {sg_id} already in NIC {nic_id}"),
            ));
        }
        (false, false) => {
            return Err(action(
                m,
                &format!("VM {id} NIC {nic_id} doesn't contain SG {sg_id}"),
            ));
        }
        (true, false) => ids.push(sg_id),
        (false, true) => ids.retain(|i| *i != sg_id),
    }
    ids.sort_unstable();
    let joined: Vec<String> = ids.iter().map(i64::to_string).collect();
    nic.set("SECURITY_GROUPS", joined.join(","));
    crate::secgroup::sync_vm(&mut tx, &mut vm);
    let on_host = class == Class::Host;
    let mut tracked = false;
    if on_host {
        // The host reloads the VM's rules: tracked in a group the VM is (still) in.
        let group = if attach {
            Some(sg_id)
        } else {
            crate::secgroup::vm_groups(&vm).into_iter().next()
        };
        if let Some(g) = group.and_then(|g| tx.get::<SecurityGroup>(g)) {
            let mut g = g;
            g.set_outdated(id);
            tx.put(g);
            tracked = true;
        }
    }
    tx.put(vm);
    commit(call, tx).await?;
    if on_host && !tracked {
        call.oned.secgroups.reload_vm(id);
    } else {
        call.oned.secgroups.kick();
    }
    tracing::info!(
        vm = id,
        nic = nic_id,
        secgroup = sg_id,
        attach,
        "security group of a NIC changed"
    );
    ok_id(id)
}

/// Refuses the call unless it may USE every (existing) security group the VM's NICs name,
/// as OpenNebula authorizes a NIC.
pub fn authorize_vm(
    call: &Call,
    tx: &Txn<'_>,
    vm: &one_proto::objects::vm::Vm,
) -> Result<(), ApiError> {
    let state = tx.committed();
    for id in crate::secgroup::vm_groups(vm) {
        if let Some(sg) = state.secgroups.get(id) {
            super::common::authorize(call, &state, &**sg, AuthOp::Use)?;
        }
    }
    Ok(())
}
