//! Authorization: may this session do this operation on this object?
//!
//! OpenNebula's order: group `oneadmin` (and user 0) may do anything; otherwise the object's
//! permission bits (owner / group / other × USE / MANAGE / ADMIN) decide, and where they say
//! no, an ACL rule may still grant. CREATE is decided by ACL rules alone. Administrators of a
//! group (`one.group.addadmin`) may manage the users of that group and their objects.

use crate::auth::Session;
use crate::store::State;
use one_proto::acl::{AclRequest, AuthOp, ObjectType, rule_allows};
use one_proto::objects::Permissions;

/// What authorization needs to know of an object.
#[derive(Clone, Debug)]
pub struct ObjAuth {
    pub obj_type: ObjectType,
    pub id: i64,
    pub uid: i64,
    pub gid: i64,
    /// None for objects without permission bits (hosts, clusters, groups, ...).
    pub perms: Option<Permissions>,
    /// Clusters the object belongs to (for `%cid` ACL rules).
    pub clusters: Vec<i64>,
}

fn perm_bits(op: AuthOp) -> Option<[usize; 3]> {
    use Permissions as P;
    match op {
        AuthOp::Use => Some([P::OWNER_U, P::GROUP_U, P::OTHER_U]),
        AuthOp::Manage => Some([P::OWNER_M, P::GROUP_M, P::OTHER_M]),
        AuthOp::Admin => Some([P::OWNER_A, P::GROUP_A, P::OTHER_A]),
        AuthOp::Create => None,
    }
}

/// Whether the permission bits alone allow `op`.
pub fn perms_allow(session: &Session, obj: &ObjAuth, op: AuthOp) -> bool {
    let (Some(perms), Some([o, g, x])) = (obj.perms, perm_bits(op)) else {
        return false;
    };
    (obj.uid == session.uid && perms.bits[o])
        || (session.gids.contains(&obj.gid) && perms.bits[g])
        || perms.bits[x]
}

fn acl_allows(
    state: &State,
    session: &Session,
    obj: Option<&ObjAuth>,
    ty: ObjectType,
    op: AuthOp,
) -> bool {
    let req = AclRequest {
        uid: session.uid,
        gids: &session.gids,
        obj_type: ty,
        obj_id: obj.map(|o| o.id),
        // A new object belongs to the creator's group: `TYPE/@gid CREATE` rules match it.
        obj_gid: Some(obj.map(|o| o.gid).unwrap_or(session.gid)),
        obj_cluster_ids: obj.map(|o| o.clusters.as_slice()).unwrap_or(&[]),
        op,
        zone_id: 0,
    };
    state.acls.iter().any(|r| rule_allows(r, &req))
}

/// Whether the session administers a group the object belongs to.
fn group_admin_of(state: &State, session: &Session, obj: &ObjAuth) -> bool {
    if obj.obj_type == ObjectType::Group {
        return state
            .groups
            .get(obj.id)
            .is_some_and(|g| g.admins.contains(&session.uid));
    }
    state
        .groups
        .get(obj.gid)
        .is_some_and(|g| g.admins.contains(&session.uid))
}

/// Decides `op` on an existing object.
pub fn allowed(state: &State, session: &Session, obj: &ObjAuth, op: AuthOp) -> bool {
    if session.is_admin() {
        return true;
    }
    if perms_allow(session, obj, op) {
        return true;
    }
    // A group's administrators may MANAGE the group itself (users, admins, quotas) and do
    // anything but CREATE with the objects of the group.
    if op != AuthOp::Create
        && (obj.obj_type != ObjectType::Group || op == AuthOp::Manage)
        && group_admin_of(state, session, obj)
    {
        return true;
    }
    acl_allows(state, session, Some(obj), obj.obj_type, op)
}

/// Decides creating an object of a type (ACL rules only, besides administrators).
pub fn may_create(state: &State, session: &Session, ty: ObjectType) -> bool {
    session.is_admin() || acl_allows(state, session, None, ty, AuthOp::Create)
}

/// `USE VM [3]` as OpenNebula words the refused request.
pub fn describe(op: AuthOp, obj: &ObjAuth) -> String {
    format!("{} {} [{}]", op.name(), obj.obj_type.name(), obj.id)
}
