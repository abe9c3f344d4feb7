//! The calls every pool object kind shares: info, pool info with filters and paging,
//! update, rename, chown, chmod, lock and unlock. Each kind plugs in through [`ApiObject`].

use super::errors::*;
use super::{ApiResult, Call, ok_id, ok_xml};
use crate::authz::{self, ObjAuth};
pub use crate::doc::Document;
use crate::store::{State, Stored, Txn};
use one_proto::ApiError;
use one_proto::acl::{AuthOp, ObjectType};
use one_proto::objects::{Header, Lock};
use one_proto::template::Template;
use one_proto::xml::XmlWriter;
use std::sync::Arc;

/// A pool object as the API sees it.
pub trait ApiObject: Stored + Document {
    /// Name in error messages ("virtual machine").
    const OBJNAME: &'static str;
    /// Root element of pool listings ("VM_POOL").
    const POOL_ROOT: &'static str;
    const ACL_TYPE: ObjectType;

    /// Owner, group, name, permissions and lock of owned objects.
    fn header(&self) -> Option<&Header> {
        None
    }
    fn header_mut(&mut self) -> Option<&mut Header> {
        None
    }
    /// The template `update` edits.
    fn user_template_mut(&mut self) -> &mut Template;
    /// Clusters the object is in (for `%cid` ACL rules).
    fn clusters(&self) -> Vec<i64> {
        Vec::new()
    }
    /// Lock of the object (owned objects keep it in the header).
    fn lock(&self) -> Option<&Lock> {
        self.header().and_then(|h| h.lock.as_ref())
    }
    /// Where the lock is kept, for lock / unlock; None: the kind cannot be locked.
    fn lock_slot(&mut self) -> Option<&mut Option<Lock>> {
        self.header_mut().map(|h| &mut h.lock)
    }

    fn auth(&self) -> ObjAuth {
        let (uid, gid) = self.owner();
        ObjAuth {
            obj_type: Self::ACL_TYPE,
            id: self.oid(),
            uid,
            gid,
            perms: self.header().map(|h| h.perms),
            clusters: self.clusters(),
        }
    }
}

/// Implements `ApiObject::header`/`header_mut` for kinds that keep a `header: Header` field.
#[macro_export]
macro_rules! owned_header {
    () => {
        fn header(&self) -> Option<&one_proto::objects::Header> {
            Some(&self.header)
        }
        fn header_mut(&mut self) -> Option<&mut one_proto::objects::Header> {
            Some(&mut self.header)
        }
    };
}

/// Refuses the call unless `op` is allowed on `obj`.
pub fn authorize<T: ApiObject>(
    call: &Call,
    state: &State,
    obj: &T,
    op: AuthOp,
) -> Result<(), ApiError> {
    let a = obj.auth();
    if authz::allowed(state, &call.session, &a, op) {
        Ok(())
    } else {
        Err(not_authorized(
            call.method,
            call.session.uid,
            &authz::describe(op, &a),
        ))
    }
}

/// Refuses the call unless the session may create objects of this type.
pub fn authorize_create(call: &Call, state: &State, ty: ObjectType) -> Result<(), ApiError> {
    if authz::may_create(state, &call.session, ty) {
        Ok(())
    } else {
        Err(not_authorized(
            call.method,
            call.session.uid,
            &format!("CREATE {}", ty.name()),
        ))
    }
}

/// Refuses an operation on a locked object. A lock at level L blocks operations of level ≥ L
/// (1 USE blocks everything, 2 MANAGE blocks manage and admin, 3 ADMIN blocks admin).
pub fn check_lock<T: ApiObject>(call: &Call, obj: &T, op: AuthOp) -> Result<(), ApiError> {
    let Some(lock) = obj.lock() else {
        return Ok(());
    };
    let level = match op {
        AuthOp::Use => 1,
        AuthOp::Manage => 2,
        AuthOp::Admin | AuthOp::Create => 3,
    };
    if lock.level <= level {
        Err(locked(call.method, T::OBJNAME, obj.oid()))
    } else {
        Ok(())
    }
}

/// Looks an object up and authorizes `op` on it (no lock check: reads ignore locks).
pub fn get_authorized<T: ApiObject>(call: &Call, id: i64, op: AuthOp) -> Result<Arc<T>, ApiError> {
    let state = call.oned.store.read();
    let obj = T::pool(&state)
        .get(id)
        .cloned()
        .ok_or_else(|| no_exists(call.method, T::OBJNAME, id))?;
    authorize(call, &state, &*obj, op)?;
    Ok(obj)
}

/// Inside a transaction: the object, authorized for `op` and not locked against it.
pub fn get_for_change<T: ApiObject>(
    call: &Call,
    tx: &Txn<'_>,
    id: i64,
    op: AuthOp,
) -> Result<T, ApiError> {
    let obj: T = tx
        .get(id)
        .ok_or_else(|| no_exists(call.method, T::OBJNAME, id))?;
    authorize(call, &tx.committed(), &obj, op)?;
    check_lock(call, &obj, op)?;
    Ok(obj)
}

/// Commits a transaction, turning a storage failure into an INTERNAL error (never a panic).
pub async fn commit(call: &Call, tx: Txn<'_>) -> Result<(), ApiError> {
    tx.commit().await.map_err(|e| {
        tracing::error!(method = call.method, error = %e, "commit failed");
        internal(call.method, &format!("Cannot store the change: {e}"))
    })
}

/// `one.<kind>.info(id)`.
pub fn info<T: ApiObject>(call: &Call, id: i64) -> ApiResult {
    let obj = get_authorized::<T>(call, id, AuthOp::Use)?;
    ok_xml(obj.to_xml())
}

/// The filter flag of pool info calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolFilter {
    /// -4: the user's primary group.
    PrimaryGroup,
    /// -3: the user's own objects.
    Mine,
    /// -2: everything the user may see.
    All,
    /// -1: the user's objects and those of all his groups.
    MineAndGroups,
    /// >= 0: objects of that user.
    Uid(i64),
}

impl PoolFilter {
    pub fn parse(call: &Call, flag: i64) -> Result<PoolFilter, ApiError> {
        Ok(match flag {
            -4 => PoolFilter::PrimaryGroup,
            -3 => PoolFilter::Mine,
            -2 => PoolFilter::All,
            -1 => PoolFilter::MineAndGroups,
            n if n >= 0 => PoolFilter::Uid(n),
            _ => return Err(rpc_api(call.method, "Incorrect filter_flag.")),
        })
    }

    pub fn matches(self, call: &Call, uid: i64, gid: i64) -> bool {
        let s = &call.session;
        match self {
            PoolFilter::PrimaryGroup => gid == s.gid,
            PoolFilter::Mine => uid == s.uid,
            PoolFilter::All => true,
            PoolFilter::MineAndGroups => uid == s.uid || s.gids.contains(&gid),
            PoolFilter::Uid(u) => uid == u,
        }
    }
}

/// The id range / paging arguments of pool info calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdRange {
    All,
    From(i64),
    Between(i64, i64),
    /// `end < -1`: offset `start`, page size `-end`.
    Page {
        offset: usize,
        size: usize,
    },
}

impl IdRange {
    pub fn parse(start: i64, end: i64) -> IdRange {
        if end < -1 {
            IdRange::Page {
                offset: start.max(0) as usize,
                size: (-end) as usize,
            }
        } else if start < 0 && end == -1 {
            IdRange::All
        } else if end == -1 {
            IdRange::From(start)
        } else {
            IdRange::Between(start.max(0), end)
        }
    }

    fn contains(self, id: i64) -> bool {
        match self {
            IdRange::All | IdRange::Page { .. } => true,
            IdRange::From(s) => id >= s,
            IdRange::Between(s, e) => id >= s && id <= e,
        }
    }
}

/// Whether the caller's pool listings go newest first. As OpenNebula's API_LIST_ORDER: the
/// caller's user template `OPENNEBULA=[API_LIST_ORDER=...]`, else his group's, else
/// `api_list_order` of the configuration (DESC unless configured).
pub fn list_desc(call: &Call, state: &State) -> bool {
    let from = |t: &Template| {
        t.vector("OPENNEBULA")
            .and_then(|v| v.get("API_LIST_ORDER"))
            .map(|o| o.trim().eq_ignore_ascii_case("DESC"))
    };
    let s = &call.session;
    state
        .users
        .get(s.uid)
        .and_then(|u| from(&u.template))
        .or_else(|| state.groups.get(s.gid).and_then(|g| from(&g.template)))
        .unwrap_or_else(|| call.oned.config.api_list_order.eq_ignore_ascii_case("DESC"))
}

/// Writes a pool listing of the objects visible to the caller that pass `filter`, newest
/// first (or in id order: [`list_desc`]), restricted to `range`; a page (`end < -1`) is
/// counted in that order.
pub fn pool_xml<T: ApiObject>(
    call: &Call,
    filter: PoolFilter,
    range: IdRange,
    extra: impl Fn(&T) -> bool,
    short: bool,
) -> String {
    let state = call.oned.store.read();
    let desc = list_desc(call, &state);
    let pool = T::pool(&state);
    let admin = call.session.is_admin();
    let mut w = XmlWriter::with_capacity(256 * pool.len().min(100_000) + 64);
    w.open(T::POOL_ROOT);
    let selected = |o: &&Arc<T>| {
        let (uid, gid) = o.owner();
        range.contains(o.oid())
            && filter.matches(call, uid, gid)
            && extra(o)
            && (admin || authz::allowed(&state, &call.session, &o.auth(), AuthOp::Use))
    };
    let (skip, take) = match range {
        IdRange::Page { offset, size } => (offset, size),
        _ => (0, usize::MAX),
    };
    let mut write = |o: &Arc<T>| {
        if short {
            o.write_pool_xml(&mut w)
        } else {
            o.write_xml(&mut w)
        }
    };
    if desc {
        pool.iter()
            .rev()
            .filter(selected)
            .skip(skip)
            .take(take)
            .for_each(&mut write);
    } else {
        pool.iter()
            .filter(selected)
            .skip(skip)
            .take(take)
            .for_each(&mut write);
    }
    w.close(T::POOL_ROOT);
    w.finish()
}

/// `one.<kind>pool.info(filter, start, end)`.
pub fn pool_info<T: ApiObject>(call: &Call, filter: i64, start: i64, end: i64) -> ApiResult {
    let filter = PoolFilter::parse(call, filter)?;
    ok_xml(pool_xml::<T>(
        call,
        filter,
        IdRange::parse(start, end),
        |_| true,
        true,
    ))
}

/// Parses a template argument, with the parser's position in the error.
pub fn parse_template(call: &Call, text: &str) -> Result<Template, ApiError> {
    Template::parse(text).map_err(|e| bad_template(call.method, &e))
}

/// `one.<kind>.update(id, template, mode)`: mode 0 replaces, 1 merges.
pub async fn update<T: ApiObject>(call: &Call, id: i64, text: &str, mode: i64) -> ApiResult {
    if mode != 0 && mode != 1 {
        return Err(rpc_api(call.method, "Wrong update type"));
    }
    let new = parse_template(call, text)?;
    let mut tx = call.oned.store.begin().await;
    let mut obj: T = get_for_change(call, &tx, id, AuthOp::Manage)?;
    let t = obj.user_template_mut();
    if mode == 0 {
        *t = new;
    } else {
        t.merge(&new);
    }
    tx.put(obj);
    commit(call, tx).await?;
    ok_id(id)
}

/// Characters no object name may hold (OpenNebula's INVALID_NAME_CHARS).
pub const INVALID_NAME_CHARS: &str = "&|:\\\";/'#{}$<>";

/// Name rules shared by every kind.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("Invalid NAME, it cannot be empty".into());
    }
    if name.len() > 128 {
        return Err("Invalid NAME, max length is 128 chars".into());
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("Invalid NAME, it cannot contain control characters".into());
    }
    // OpenNebula refuses these everywhere: they break its CLI, templates and shell drivers.
    if let Some(c) = name.chars().find(|c| INVALID_NAME_CHARS.contains(*c)) {
        return Err(format!("Invalid NAME, char '{c}' is not allowed"));
    }
    Ok(())
}

/// Finds an object of the same kind and owner with this name (names of owned objects are
/// unique per owner), other than `except`.
pub fn name_taken_by_owner<T: ApiObject>(
    tx: &Txn<'_>,
    name: &str,
    uid: i64,
    except: i64,
) -> Option<i64> {
    tx.find::<T>(|o| o.obj_name() == name && o.owner().0 == uid && o.oid() != except)
}

/// Finds an object of the same kind with this name (hosts, users, groups, ... are unique
/// across the whole pool), other than `except`.
pub fn name_taken<T: ApiObject>(tx: &Txn<'_>, name: &str, except: i64) -> Option<i64> {
    tx.find::<T>(|o| o.obj_name() == name && o.oid() != except)
}

/// `one.<kind>.rename(id, name)` for owned objects (unique per owner).
pub async fn rename_owned<T: ApiObject>(call: &Call, id: i64, name: &str) -> ApiResult {
    check_name(name).map_err(|m| action(call.method, &m))?;
    let mut tx = call.oned.store.begin().await;
    let mut obj: T = get_for_change(call, &tx, id, AuthOp::Manage)?;
    let uid = obj.owner().0;
    if let Some(other) = name_taken_by_owner::<T>(&tx, name, uid, id) {
        return Err(action(
            call.method,
            &format!("NAME is already taken by {} {other}.", T::ACL_TYPE.name()),
        ));
    }
    let h = obj
        .header_mut()
        .ok_or_else(|| internal(call.method, "object has no name header"))?;
    h.name = name.to_string();
    tx.put(obj);
    commit(call, tx).await?;
    ok_id(id)
}

/// `one.<kind>.chown(id, uid, gid)`; -1 keeps the current value.
pub async fn chown<T: ApiObject>(call: &Call, id: i64, uid: i64, gid: i64) -> ApiResult {
    use one_proto::objects::{group::Group, user::User};
    let mut tx = call.oned.store.begin().await;
    let mut obj: T = get_for_change(call, &tx, id, AuthOp::Admin)?;
    let (cur_uid, cur_gid) = obj.owner();
    let new_user = if uid >= 0 {
        Some(
            tx.get::<User>(uid)
                .ok_or_else(|| no_exists(call.method, "user", uid))?,
        )
    } else {
        None
    };
    let new_group = if gid >= 0 {
        Some(
            tx.get::<Group>(gid)
                .ok_or_else(|| no_exists(call.method, "group", gid))?,
        )
    } else {
        None
    };
    if !call.session.is_admin() {
        // Changing the owner needs ADMIN on the user; changing the group needs membership.
        if let Some(u) = &new_user
            && u.id != call.session.uid
        {
            return Err(not_authorized(
                call.method,
                call.session.uid,
                &format!("MANAGE USER [{}]", u.id),
            ));
        }
        if let Some(g) = &new_group
            && !call.session.gids.contains(&g.id)
        {
            return Err(not_authorized(
                call.method,
                call.session.uid,
                &format!("USE GROUP [{}]", g.id),
            ));
        }
    }
    let target_uid = new_user.as_ref().map(|u| u.id).unwrap_or(cur_uid);
    let h = obj
        .header_mut()
        .ok_or_else(|| internal(call.method, "object has no owner"))?;
    if let Some(u) = &new_user {
        h.uid = u.id;
        h.uname = u.name.clone();
    }
    if let Some(g) = &new_group {
        h.gid = g.id;
        h.gname = g.name.clone();
    }
    let name = h.name.clone();
    if target_uid != cur_uid
        && let Some(other) = name_taken_by_owner::<T>(&tx, &name, target_uid, id)
    {
        return Err(action(
            call.method,
            &format!(
                "The new owner already has a {} named {name:?} [{other}].",
                T::ACL_TYPE.name()
            ),
        ));
    }
    let _ = cur_gid;
    tx.put(obj);
    commit(call, tx).await?;
    ok_id(id)
}

/// `one.<kind>.chmod(id, ou, om, oa, gu, gm, ga, tu, tm, ta)`; -1 keeps a bit.
pub async fn chmod<T: ApiObject>(call: &Call, id: i64, bits: [i64; 9]) -> ApiResult {
    for b in bits {
        if !(-1..=1).contains(&b) {
            return Err(rpc_api(
                call.method,
                "Permission values must be -1, 0 or 1.",
            ));
        }
    }
    let mut tx = call.oned.store.begin().await;
    let mut obj: T = get_for_change(call, &tx, id, AuthOp::Manage)?;
    // Setting any ADMIN bit needs ADMIN rights (OpenNebula's rule).
    let wants_admin_bits = [2usize, 5, 8].iter().any(|&i| bits[i] == 1);
    if wants_admin_bits {
        authorize(call, &tx.committed(), &obj, AuthOp::Admin)?;
    }
    let h = obj
        .header_mut()
        .ok_or_else(|| internal(call.method, "object has no permissions"))?;
    for (i, b) in bits.iter().enumerate() {
        if *b >= 0 {
            h.perms.bits[i] = *b == 1;
        }
    }
    tx.put(obj);
    commit(call, tx).await?;
    ok_id(id)
}

/// Reads the nine chmod arguments starting at parameter `first`.
pub fn chmod_bits(p: &super::Params, first: usize) -> Result<[i64; 9], ApiError> {
    let mut bits = [0i64; 9];
    for (i, b) in bits.iter_mut().enumerate() {
        *b = p.int32(first + i)?;
    }
    Ok(bits)
}

/// `one.<kind>.lock(id, level, test)`.
pub async fn lock<T: ApiObject>(call: &Call, id: i64, level: i64, test: bool) -> ApiResult {
    let level = match level {
        1..=3 => level as i32,
        4 => 1,
        _ => {
            return Err(rpc_api(
                call.method,
                "Wrong lock level, it must be 1, 2, 3 or 4.",
            ));
        }
    };
    let mut tx = call.oned.store.begin().await;
    let mut obj: T = tx
        .get(id)
        .ok_or_else(|| no_exists(call.method, T::OBJNAME, id))?;
    authorize(call, &tx.committed(), &obj, AuthOp::Manage)?;
    let uid = call.session.uid;
    let slot = obj
        .lock_slot()
        .ok_or_else(|| internal(call.method, "object cannot be locked"))?;
    if let Some(l) = slot
        && (test || l.owner != uid)
    {
        return Err(locked(call.method, T::OBJNAME, id));
    }
    *slot = Some(Lock {
        level,
        owner: uid,
        time: crate::auth::now_secs(),
        req_id: 0,
    });
    tx.put(obj);
    commit(call, tx).await?;
    ok_id(id)
}

/// `one.<kind>.unlock(id)`.
pub async fn unlock<T: ApiObject>(call: &Call, id: i64) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let mut obj: T = tx
        .get(id)
        .ok_or_else(|| no_exists(call.method, T::OBJNAME, id))?;
    authorize(call, &tx.committed(), &obj, AuthOp::Manage)?;
    let is_admin = call.session.is_admin();
    let uid = call.session.uid;
    let slot = obj
        .lock_slot()
        .ok_or_else(|| internal(call.method, "object cannot be locked"))?;
    if let Some(l) = slot
        && l.owner != uid
        && !is_admin
    {
        return Err(locked(call.method, T::OBJNAME, id));
    }
    *slot = None;
    tx.put(obj);
    commit(call, tx).await?;
    ok_id(id)
}

/// Registers info/update/rename/chown/chmod/lock/unlock for an owned kind under `prefix`
/// (e.g. "one.template"), plus `<prefix>pool.info`.
#[macro_export]
macro_rules! register_owned_common {
    ($r:expr, $ty:ty, $prefix:literal) => {{
        use $crate::api::common as c;
        $r.add(concat!($prefix, ".info"), |call, p| async move {
            c::info::<$ty>(&call, p.int32(0)?)
        });
        $r.add(concat!($prefix, ".update"), |call, p| async move {
            c::update::<$ty>(&call, p.int32(0)?, p.str(1)?, p.opt_int(2, 0)?).await
        });
        $r.add(concat!($prefix, ".rename"), |call, p| async move {
            c::rename_owned::<$ty>(&call, p.int32(0)?, p.str(1)?).await
        });
        $r.add(concat!($prefix, ".chown"), |call, p| async move {
            c::chown::<$ty>(&call, p.int32(0)?, p.int32(1)?, p.int32(2)?).await
        });
        $r.add(concat!($prefix, ".chmod"), |call, p| async move {
            c::chmod::<$ty>(&call, p.int32(0)?, c::chmod_bits(&p, 1)?).await
        });
        $r.add(concat!($prefix, ".lock"), |call, p| async move {
            c::lock::<$ty>(&call, p.int32(0)?, p.int32(1)?, p.opt_bool(2, false)?).await
        });
        $r.add(concat!($prefix, ".unlock"), |call, p| async move {
            c::unlock::<$ty>(&call, p.int32(0)?).await
        });
        $r.add(concat!($prefix, "pool.info"), |call, p| async move {
            c::pool_info::<$ty>(
                &call,
                p.opt_int(0, -2)?,
                p.opt_int(1, -1)?,
                p.opt_int(2, -1)?,
            )
        });
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_opennebula_rules() {
        assert!(check_name("web-1.example_vm (copy)").is_ok());
        assert_eq!(
            check_name("").unwrap_err(),
            "Invalid NAME, it cannot be empty"
        );
        assert_eq!(
            check_name("a/b").unwrap_err(),
            "Invalid NAME, char '/' is not allowed"
        );
        for bad in [
            "a&b", "a|b", "a:b", "a\\b", "a\"b", "a;b", "a'b", "a#b", "a{b", "a}b", "a$b", "a<b",
            "a>b",
        ] {
            assert!(check_name(bad).is_err(), "{bad} must be refused");
        }
        assert!(check_name("tab\there").is_err());
        assert!(check_name(&"x".repeat(129)).is_err());
    }

    #[test]
    fn id_ranges_and_pages() {
        assert_eq!(IdRange::parse(-1, -1), IdRange::All);
        assert_eq!(IdRange::parse(5, -1), IdRange::From(5));
        assert_eq!(IdRange::parse(2, 7), IdRange::Between(2, 7));
        assert_eq!(
            IdRange::parse(10, -100),
            IdRange::Page {
                offset: 10,
                size: 100
            }
        );
        assert!(IdRange::parse(2, 7).contains(7) && !IdRange::parse(2, 7).contains(8));
    }
}
