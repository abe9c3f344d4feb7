//! one.group.* / one.grouppool.info / one.groupquota.*: groups, their administrators and
//! quotas.
//!
//! As OpenNebula 7: groups have no owner; their members may USE (see) them, group `oneadmin`
//! does everything else (update, quota, delete, addadmin/deladmin need ADMIN), and an
//! administrator of a group may MANAGE it. A new group joins the default VDC, which in
//! OpenNebula grants it `@gid HOST/* MANAGE #0` and `@gid NET+DATASTORE/* USE #0`; oned adds
//! those two rules itself (the CREATE rules `onegroup create` shows are added by the CLI
//! through `one.acl.addrule`, as in OpenNebula). Deleting a group drops every rule naming it.
//! Making a user a group administrator adds OpenNebula's four admin rules (visible in
//! `one.acl.info`), and removing him drops them.

use super::common::{self, ApiObject, authorize, commit, name_taken, parse_template};
use super::user::update_default_quotas;
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id, ok_xml};
use crate::auth::Session;
use crate::authz::{self, ObjAuth};
use crate::ops::quota;
use crate::store::{Kind, State, Txn};
use one_proto::acl::{self, AclRule, AuthOp, ObjectType};
use one_proto::objects::Permissions;
use one_proto::objects::group::Group;
use one_proto::objects::quota::Quotas;
use one_proto::objects::user::User;
use one_proto::template::Template;
use one_proto::xml::XmlWriter;
use one_proto::{ApiError, ErrorCode};

/// Groups below this id are system groups (oneadmin, users) and cannot be deleted.
const FIRST_USER_GROUP: i64 = 100;
/// Characters OpenNebula refuses in group names (its generic list plus the blank).
const INVALID_NAME_CHARS: &str = " &|:\\\";/'#{}$<>\t\n\x0b\x0c\r";

/// A group's authorization view: owned by nobody, in its own group with GROUP_U, so that its
/// members may see it (OpenNebula's permissions for groups).
pub(crate) fn group_auth(g: &Group) -> ObjAuth {
    let mut perms = Permissions { bits: [false; 9] };
    perms.bits[Permissions::OWNER_U] = true;
    perms.bits[Permissions::OWNER_M] = true;
    perms.bits[Permissions::GROUP_U] = true;
    ObjAuth {
        obj_type: ObjectType::Group,
        id: g.id,
        uid: -1,
        gid: g.id,
        perms: Some(perms),
        clusters: Vec::new(),
    }
}

/// Whether `op` on group `g` is allowed (authz gives the group's administrators MANAGE, as
/// OpenNebula's `#uid GROUP/#gid MANAGE` admin rule does).
pub(crate) fn group_allowed(state: &State, session: &Session, g: &Group, op: AuthOp) -> bool {
    authz::allowed(state, session, &group_auth(g), op)
}

impl ApiObject for Group {
    const OBJNAME: &'static str = "group";
    const POOL_ROOT: &'static str = "GROUP_POOL";
    const ACL_TYPE: ObjectType = ObjectType::Group;

    fn user_template_mut(&mut self) -> &mut Template {
        &mut self.template
    }
    fn auth(&self) -> ObjAuth {
        group_auth(self)
    }
}

pub fn register(r: &mut Registry) {
    r.add("one.group.allocate", |c: Call, p: Params| async move {
        allocate_group(&c, p.str(0)?).await
    });
    r.add("one.group.delete", |c: Call, p: Params| async move {
        delete(&c, p.int32(0)?).await
    });
    r.add("one.group.info", |c: Call, p: Params| async move {
        info(&c, p.int32(0)?)
    });
    r.add("one.group.update", |c: Call, p: Params| async move {
        update(&c, p.int32(0)?, p.str(1)?, p.opt_int(2, 0)?).await
    });
    r.add("one.group.quota", |c: Call, p: Params| async move {
        set_quota(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.group.addadmin", |c: Call, p: Params| async move {
        edit_admin(&c, p.int32(0)?, p.int32(1)?, true).await
    });
    r.add("one.group.deladmin", |c: Call, p: Params| async move {
        edit_admin(&c, p.int32(0)?, p.int32(1)?, false).await
    });
    r.add("one.grouppool.info", |c: Call, _p: Params| async move {
        pool_info(&c)
    });
    r.add("one.groupquota.info", |c: Call, _p: Params| async move {
        let d = quota::defaults_in(&c.oned.store.read());
        ok_xml(d.group.default_xml("DEFAULT_GROUP_QUOTAS"))
    });
    r.add("one.groupquota.update", |c: Call, p: Params| async move {
        update_default_quotas(&c, p.str(0)?, false).await
    });
}

// ---------------------------------------------------------------------------------------------
// ACL rules that name users and groups
// ---------------------------------------------------------------------------------------------

/// Drops the rules that only make sense while the user or group exists (OpenNebula's
/// `del_uid_rules` / `del_gid_rules` and `del_resource_rules`).
pub fn drop_rules_of(tx: &mut Txn<'_>, ty: ObjectType, id: i64) {
    for rule in tx.all::<AclRule>() {
        let obsolete = match ty {
            ObjectType::User => rule.obsolete_without_user(id),
            ObjectType::Group => rule.obsolete_without_group(id),
            ObjectType::Cluster => rule.obsolete_without_cluster(id),
            _ => false,
        } || rule.obsolete_without_object(ty, id);
        if obsolete {
            tracing::info!(
                acl = rule.id,
                ?ty,
                id,
                "dropping ACL rule of deleted object"
            );
            tx.delete::<AclRule>(rule.id);
        }
    }
}

/// Adds the rules not already present (a duplicate would be refused by `one.acl.addrule`).
fn add_rules(tx: &mut Txn<'_>, rules: Vec<AclRule>) {
    let existing = tx.all::<AclRule>();
    for rule in rules {
        if existing.iter().any(|r| r.same_rule(&rule)) {
            continue;
        }
        let id = tx.next_id(Kind::Acl);
        tx.put(AclRule { id, ..rule });
    }
}

/// Takes `uid` off the administrators of `group` (if he was one), with his admin rules.
pub(crate) fn drop_admin(tx: &mut Txn<'_>, group: &mut Group, uid: i64) {
    if group.admins.contains(&uid) {
        group.admins.retain(|u| *u != uid);
        remove_rules(tx, &acl::group_admin_rules(uid, group.id));
    }
}

fn remove_rules(tx: &mut Txn<'_>, rules: &[AclRule]) {
    for r in tx.all::<AclRule>() {
        if rules.iter().any(|x| x.same_rule(&r)) {
            tx.delete::<AclRule>(r.id);
        }
    }
}

/// What the default VDC (all clusters of zone 0) grants a new group, with OpenNebula's
/// DEFAULT_VDC_CLUSTER_*_ACL settings: `@gid HOST/* MANAGE #0`, `@gid NET+DATASTORE/* USE #0`.
fn vdc_rules(gid: i64) -> Vec<AclRule> {
    let user = acl::GROUP_ID | (gid as u64 & acl::ID_MASK);
    let zone = acl::INDIVIDUAL_ID | acl::LOCAL_ZONE_ID as u64;
    vec![
        AclRule::new(
            -1,
            user,
            acl::ALL_ID | ObjectType::Host.bit(),
            AuthOp::Manage.bit(),
            zone,
        ),
        AclRule::new(
            -1,
            user,
            acl::ALL_ID | ObjectType::Net.bit() | ObjectType::Datastore.bit(),
            AuthOp::Use.bit(),
            zone,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------------

fn check_group_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Invalid NAME, it cannot be empty".into());
    }
    if let Some(c) = name.chars().find(|c| INVALID_NAME_CHARS.contains(*c)) {
        return Err(format!("Invalid NAME, char '{c}' is not allowed"));
    }
    common::check_name(name)
}

async fn allocate_group(call: &Call, name: &str) -> ApiResult {
    let alloc_err = |m: &str| allocate(call.method, Group::OBJNAME, m);
    check_group_name(name).map_err(|m| alloc_err(&format!("{m}.")))?;
    let mut tx = call.oned.store.begin().await;
    common::authorize_create(call, &tx.committed(), ObjectType::Group)?;
    if let Some(other) = name_taken::<Group>(&tx, name, -1) {
        return Err(alloc_err(&format!(
            "NAME is already taken by GROUP {other}."
        )));
    }
    // Bootstrap reserves ids below 100 for system groups; stay above even if it did not.
    tx.bump_next_id(Kind::Group, FIRST_USER_GROUP);
    let id = tx.next_id(Kind::Group);
    tx.put(Group {
        id,
        name: name.to_string(),
        template: Template::new(),
        users: Vec::new(),
        admins: Vec::new(),
        quotas: Quotas::default(),
    });
    add_rules(&mut tx, vdc_rules(id));
    commit(call, tx).await?;
    tracing::info!(gid = id, name, "group created");
    ok_id(id)
}

async fn delete(call: &Call, id: i64) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let group = get_group(call, &tx, id, AuthOp::Admin)?;
    if id < FIRST_USER_GROUP {
        return Err(action(
            call.method,
            "Cannot delete group. System Groups (ID < 100) cannot be deleted.",
        ));
    }
    if !group.users.is_empty() {
        return Err(action(
            call.method,
            &format!("Cannot delete group. Group {id} is not empty."),
        ));
    }
    drop_rules_of(&mut tx, ObjectType::Group, id);
    tx.delete::<Group>(id);
    commit(call, tx).await?;
    tracing::info!(gid = id, name = %group.name, "group deleted");
    ok_id(id)
}

/// The group, authorized for `op` (with the group-admin MANAGE of [`group_allowed`]).
fn get_group(call: &Call, tx: &Txn<'_>, id: i64, op: AuthOp) -> Result<Group, ApiError> {
    let group: Group = tx
        .get(id)
        .ok_or_else(|| no_exists(call.method, Group::OBJNAME, id))?;
    if !group_allowed(&tx.committed(), &call.session, &group, op) {
        return Err(not_authorized(
            call.method,
            call.session.uid,
            &authz::describe(op, &group_auth(&group)),
        ));
    }
    Ok(group)
}

fn info(call: &Call, id: i64) -> ApiResult {
    let id = if id == -1 { call.session.gid } else { id };
    let state = call.oned.store.read();
    let group = state
        .groups
        .get(id)
        .cloned()
        .ok_or_else(|| no_exists(call.method, Group::OBJNAME, id))?;
    authorize(call, &state, &*group, AuthOp::Use)?;
    let defaults = quota::defaults_in(&state);
    ok_xml(group.to_xml(&defaults.group))
}

/// `one.grouppool.info()`: the groups the caller may see (all for administrators, his own
/// groups and those ACL rules show otherwise).
fn pool_info(call: &Call) -> ApiResult {
    let state = call.oned.store.read();
    let admin = call.session.is_admin();
    let visible: Vec<&Group> = state
        .groups
        .iter()
        .map(|g| &**g)
        .filter(|g| admin || group_allowed(&state, &call.session, g, AuthOp::Use))
        .collect();
    let defaults = quota::defaults_in(&state);
    let mut w = XmlWriter::with_capacity(512 * visible.len() + 512);
    if common::list_desc(call, &state) {
        one_proto::objects::group::write_pool(&mut w, visible.into_iter().rev(), &defaults.group);
    } else {
        one_proto::objects::group::write_pool(&mut w, visible, &defaults.group);
    }
    ok_xml(w.finish())
}

/// `one.group.update(id, template, mode)`: needs ADMIN on the group, as in OpenNebula.
async fn update(call: &Call, id: i64, text: &str, mode: i64) -> ApiResult {
    if mode != 0 && mode != 1 {
        return Err(rpc_api(call.method, "Wrong update type"));
    }
    let new = parse_template(call, text)?;
    let mut tx = call.oned.store.begin().await;
    let mut group = get_group(call, &tx, id, AuthOp::Admin)?;
    if mode == 0 {
        group.template = new;
    } else {
        group.template.merge(&new);
    }
    tx.put(group);
    commit(call, tx).await?;
    tracing::info!(gid = id, mode, "group template updated");
    ok_id(id)
}

async fn set_quota(call: &Call, id: i64, text: &str) -> ApiResult {
    if id == crate::auth::ONEADMIN_GROUP {
        return Err(action(call.method, "Cannot set quotas for oneadmin group"));
    }
    let mut tx = call.oned.store.begin().await;
    let mut group = get_group(call, &tx, id, AuthOp::Admin)?;
    let t = Template::parse(text)
        .map_err(|e| action(call.method, &format!("Error parsing quota template: {e}")))?;
    group
        .quotas
        .set(&t, false)
        .map_err(|m| action(call.method, &m))?;
    tx.put(group);
    commit(call, tx).await?;
    tracing::info!(gid = id, by = call.session.uid, "group quotas set");
    ok_id(id)
}

/// `one.group.addadmin` / `one.group.deladmin`: needs ADMIN on both the group and the user;
/// the user must be a member.
async fn edit_admin(call: &Call, gid: i64, uid: i64, add: bool) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let mut group: Group = tx
        .get(gid)
        .ok_or_else(|| no_exists(call.method, Group::OBJNAME, gid))?;
    let user: User = tx
        .get(uid)
        .ok_or_else(|| no_exists(call.method, User::OBJNAME, uid))?;
    {
        let state = tx.committed();
        if !group_allowed(&state, &call.session, &group, AuthOp::Admin) {
            return Err(not_authorized(
                call.method,
                call.session.uid,
                &authz::describe(AuthOp::Admin, &group_auth(&group)),
            ));
        }
        authorize(call, &state, &user, AuthOp::Admin)?;
    }
    let edit_err = |m: String| {
        ApiError::new(
            ErrorCode::Internal,
            format!("[{}] Cannot edit group. {m}", call.method),
        )
    };
    if add {
        if !group.users.contains(&uid) && !user.in_group(gid) {
            return Err(edit_err(format!("User {uid} is not part of Group {gid}.")));
        }
        if group.admins.contains(&uid) {
            return Err(edit_err(format!(
                "User {uid} is already an administrator of Group {gid}."
            )));
        }
        group.admins.push(uid);
        add_rules(&mut tx, acl::group_admin_rules(uid, gid));
    } else {
        if !group.admins.contains(&uid) {
            return Err(edit_err(format!(
                "User {uid} is not an administrator of Group {gid}."
            )));
        }
        drop_admin(&mut tx, &mut group, uid);
    }
    tx.put(group);
    commit(call, tx).await?;
    tracing::info!(gid, uid, add, "group administrators changed");
    ok_id(gid)
}
