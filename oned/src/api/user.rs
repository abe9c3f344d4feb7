//! one.user.* / one.userpool.info / one.userquota.*: users, their groups, login tokens and
//! quotas.
//!
//! Authorization follows OpenNebula: a user may USE and MANAGE himself (info, passwd, update,
//! login, chgrp to one of his groups), group `oneadmin` may do everything, administrators of
//! a group may do everything to the users whose primary group it is (authz.rs), and ADMIN
//! operations (delete, chauth, quota, enable) are theirs alone.
//!
//! Deleting a user does not touch the objects he owns (as OpenNebula: they stay owned by the
//! deleted id and only administrators see them); it removes him from his groups and drops the
//! ACL rules that name him.

use super::common::{self, ApiObject, authorize, commit, get_for_change, name_taken};
use super::group::{drop_admin, drop_rules_of, group_allowed, group_auth};
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id, ok_xml};
use crate::auth::{self, now_secs, random_hex};
use crate::authz::{self, ObjAuth};
use crate::ops::quota;
use crate::store::{Kind, Txn};
use one_proto::acl::{AuthOp, ObjectType};
use one_proto::objects::Permissions;
use one_proto::objects::group::Group;
use one_proto::objects::quota::{QuotaKind, Quotas};
use one_proto::objects::user::{LoginToken, User};
use one_proto::template::Template;
use one_proto::xml::XmlWriter;
use one_proto::{ApiError, ErrorCode};

/// Users oned creates itself and never deletes.
const ONEADMIN: i64 = 0;
const SERVERADMIN: i64 = 1;
const USERS_GROUP: i64 = 1;
/// OpenNebula keeps at most this many login tokens per user.
const MAX_TOKENS: usize = 10;

impl ApiObject for User {
    const OBJNAME: &'static str = "user";
    const POOL_ROOT: &'static str = "USER_POOL";
    const ACL_TYPE: ObjectType = ObjectType::User;

    fn user_template_mut(&mut self) -> &mut Template {
        &mut self.template
    }
    /// A user owns himself with USE and MANAGE (OpenNebula's default permissions for users);
    /// his primary group is the object's group (for group admins and `USER/@gid` rules).
    fn auth(&self) -> ObjAuth {
        let mut perms = Permissions { bits: [false; 9] };
        perms.bits[Permissions::OWNER_U] = true;
        perms.bits[Permissions::OWNER_M] = true;
        ObjAuth {
            obj_type: ObjectType::User,
            id: self.id,
            uid: self.id,
            gid: self.gid,
            perms: Some(perms),
            clusters: Vec::new(),
        }
    }
}

pub fn register(r: &mut Registry) {
    r.add("one.user.allocate", |c: Call, p: Params| async move {
        let groups = p.opt_int_array(3)?;
        allocate_user(&c, p.str(0)?, p.str(1)?, p.opt_str(2, "")?, &groups).await
    });
    r.add("one.user.delete", |c: Call, p: Params| async move {
        delete(&c, p.int32(0)?).await
    });
    r.add("one.user.info", |c: Call, p: Params| async move {
        info(&c, p.int32(0)?)
    });
    r.add("one.user.passwd", |c: Call, p: Params| async move {
        passwd(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.user.login", |c: Call, p: Params| async move {
        login(&c, p.str(0)?, p.str(1)?, p.int(2)?, p.opt_int(3, -1)?).await
    });
    r.add("one.user.chgrp", |c: Call, p: Params| async move {
        chgrp(&c, p.int32(0)?, p.int32(1)?).await
    });
    r.add("one.user.addgroup", |c: Call, p: Params| async move {
        addgroup(&c, p.int32(0)?, p.int32(1)?).await
    });
    r.add("one.user.delgroup", |c: Call, p: Params| async move {
        delgroup(&c, p.int32(0)?, p.int32(1)?).await
    });
    r.add("one.user.chauth", |c: Call, p: Params| async move {
        chauth(&c, p.int32(0)?, p.str(1)?, p.opt_str(2, "")?).await
    });
    r.add("one.user.enable", |c: Call, p: Params| async move {
        enable(&c, p.int32(0)?, p.bool(1)?).await
    });
    r.add("one.user.update", |c: Call, p: Params| async move {
        common::update::<User>(&c, p.int32(0)?, p.str(1)?, p.opt_int(2, 0)?).await
    });
    r.add("one.user.rename", |c: Call, p: Params| async move {
        rename(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.user.quota", |c: Call, p: Params| async move {
        set_quota(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.userpool.info", |c: Call, _p: Params| async move {
        pool_info(&c)
    });
    r.add("one.userquota.info", |c: Call, _p: Params| async move {
        let d = quota::defaults_in(&c.oned.store.read());
        ok_xml(d.user.default_xml("DEFAULT_USER_QUOTAS"))
    });
    r.add("one.userquota.update", |c: Call, p: Params| async move {
        update_default_quotas(&c, p.str(0)?, true).await
    });
}

// ---------------------------------------------------------------------------------------------
// What OpenNebula's AUTH_MAD_CONF says about each driver
// ---------------------------------------------------------------------------------------------

/// Drivers whose users may change their own password (`PASSWORD_CHANGE = YES`).
fn password_change_allowed(driver: &str) -> bool {
    matches!(driver, "core" | "ssh" | "ldap" | "saml")
}

/// Drivers whose users need no password (`PASSWORD_REQUIRED = NO`).
fn password_required(driver: &str) -> bool {
    !matches!(driver, "ldap" | "saml")
}

/// Drivers that manage group membership themselves (`DRIVER_MANAGED_GROUPS = YES`).
fn driver_manages_groups(driver: &str) -> bool {
    matches!(driver, "ldap" | "saml")
}

/// `MAX_TOKEN_TIME` in seconds (-1: no maximum).
fn max_token_time(driver: &str) -> i64 {
    match driver {
        "ldap" | "saml" => 86400,
        _ => -1,
    }
}

/// Longest password (or key, certificate...) each driver takes, as OpenNebula.
fn max_password_len(driver: &str) -> Option<usize> {
    Some(match driver {
        "core" | "ldap" | "sunstone" => 256,
        "ssh" => 16 * 1024,
        "x509" | "server_x509" => 64 * 1024,
        "saml" => 12 * 1024,
        "server_cipher" => 4096,
        _ => return None,
    })
}

fn check_password(driver: &str, password: &str) -> Result<(), String> {
    auth::check_password(password)?;
    if let Some(max) = max_password_len(driver)
        && password.len() > max
    {
        return Err(format!(
            "Password is longer than max allowed length. Max allowed length for the driver \
             {driver} : {max} bytes"
        ));
    }
    Ok(())
}

fn check_driver(driver: &str) -> Result<(), String> {
    if driver.is_empty() || driver.len() > 64 {
        return Err(
            "Invalid auth driver, it must be a name such as core, ssh, x509 or ldap".into(),
        );
    }
    if !driver
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("Invalid auth driver {driver:?}"));
    }
    Ok(())
}

/// What the user record stores for a password: a slow salted hash for `core` (the only driver
/// oned verifies itself), the value as given for the others (an ssh key, a certificate DN).
/// Hashing takes tens of milliseconds, so it runs off the async threads and before any
/// transaction (which would hold every other writer back meanwhile).
async fn stored_secret(call: &Call, driver: &str, password: &str) -> Result<String, ApiError> {
    if driver != "core" {
        return Ok(password.to_string());
    }
    let pw = password.to_string();
    tokio::task::spawn_blocking(move || auth::hash_password(&pw))
        .await
        .map_err(|e| internal(call.method, &format!("Cannot hash the password: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------------

fn info(call: &Call, id: i64) -> ApiResult {
    let id = if id == -1 { call.session.uid } else { id };
    let state = call.oned.store.read();
    let user = state
        .users
        .get(id)
        .cloned()
        .ok_or_else(|| no_exists(call.method, User::OBJNAME, id))?;
    authorize(call, &state, &*user, AuthOp::Use)?;
    let defaults = quota::defaults_in(&state);
    ok_xml(user.to_xml(&defaults.user))
}

/// `one.userpool.info()`: every user the caller may see (all for administrators, himself and
/// the users of groups he administers otherwise), with their quotas and the defaults.
fn pool_info(call: &Call) -> ApiResult {
    let state = call.oned.store.read();
    let admin = call.session.is_admin();
    let visible: Vec<&User> = state
        .users
        .iter()
        .map(|u| &**u)
        .filter(|u| admin || authz::allowed(&state, &call.session, &u.auth(), AuthOp::Use))
        .collect();
    let defaults = quota::defaults_in(&state);
    let mut w = XmlWriter::with_capacity(1024 * visible.len() + 512);
    if common::list_desc(call, &state) {
        one_proto::objects::user::write_pool(&mut w, visible.into_iter().rev(), &defaults.user);
    } else {
        one_proto::objects::user::write_pool(&mut w, visible, &defaults.user);
    }
    ok_xml(w.finish())
}

// ---------------------------------------------------------------------------------------------
// Allocate / delete
// ---------------------------------------------------------------------------------------------

async fn allocate_user(
    call: &Call,
    name: &str,
    password: &str,
    driver: &str,
    group_ids: &[i64],
) -> ApiResult {
    let alloc_err = |m: &str| allocate(call.method, User::OBJNAME, m);
    let driver = if driver.is_empty() { "core" } else { driver };
    check_driver(driver).map_err(|m| alloc_err(&format!("{m}.")))?;
    if password_required(driver) || !password.is_empty() {
        check_password(driver, password).map_err(|m| alloc_err(&format!("{m}.")))?;
    }
    auth::check_username(name).map_err(|m| alloc_err(&format!("{m}.")))?;
    let secret = stored_secret(call, driver, password).await?;

    let mut tx = call.oned.store.begin().await;
    let session = &call.session;
    // Without groups the user goes to `users`, or to the creator's group when a group
    // administrator creates him (OpenNebula's rule).
    let mut gids: Vec<i64> = Vec::new();
    for g in group_ids {
        if !gids.contains(g) {
            gids.push(*g);
        }
    }
    if gids.is_empty() {
        gids.push(if session.gid == auth::ONEADMIN_GROUP {
            USERS_GROUP
        } else {
            session.gid
        });
    }
    let mut groups: Vec<Group> = Vec::with_capacity(gids.len());
    for g in &gids {
        groups.push(
            tx.get::<Group>(*g)
                .ok_or_else(|| no_exists(call.method, "group", *g))?,
        );
    }
    {
        let state = tx.committed();
        let own_group_admin = state
            .groups
            .get(session.gid)
            .is_some_and(|g| g.admins.contains(&session.uid));
        if !(own_group_admin || authz::may_create(&state, session, ObjectType::User)) {
            return Err(not_authorized(call.method, session.uid, "CREATE USER"));
        }
        // Putting the user in other groups than the creator's needs MANAGE on them.
        for g in groups.iter().filter(|g| g.id != session.gid) {
            if !group_allowed(&state, session, g, AuthOp::Manage) {
                return Err(not_authorized(
                    call.method,
                    session.uid,
                    &authz::describe(AuthOp::Manage, &group_auth(g)),
                ));
            }
        }
    }
    if let Some(other) = name_taken::<User>(&tx, name, -1) {
        return Err(alloc_err(&format!(
            "NAME is already taken by USER {other}."
        )));
    }
    let id = tx.next_id(Kind::User);
    let mut template = Template::new();
    // The secret OneGate tokens of this user's VMs are derived from.
    template.set("TOKEN_PASSWORD", random_hex(32));
    let user = User {
        id,
        gid: gids[0],
        groups: gids.clone(),
        gname: groups[0].name.clone(),
        name: name.to_string(),
        password: secret,
        auth_driver: driver.to_string(),
        enabled: true,
        login_tokens: Vec::new(),
        template,
        quotas: Quotas::default(),
    };
    for mut g in groups {
        if !g.users.contains(&id) {
            g.users.push(id);
        }
        tx.put(g);
    }
    tx.put(user);
    commit(call, tx).await?;
    tracing::info!(uid = id, name, gid = gids[0], driver, "user created");
    ok_id(id)
}

async fn delete(call: &Call, id: i64) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let user: User = get_for_change(call, &tx, id, AuthOp::Admin)?;
    if id == ONEADMIN || id == SERVERADMIN {
        return Err(action(
            call.method,
            &format!("Cannot delete user. {} cannot be deleted.", user.name),
        ));
    }
    for g in tx.all::<Group>() {
        if g.users.contains(&id) || g.admins.contains(&id) {
            let mut g = g;
            g.users.retain(|u| *u != id);
            g.admins.retain(|u| *u != id);
            tx.put(g);
        }
    }
    drop_rules_of(&mut tx, ObjectType::User, id);
    tx.delete::<User>(id);
    commit(call, tx).await?;
    call.oned.auth.forget_user(id);
    tracing::info!(uid = id, name = %user.name, "user deleted");
    ok_id(id)
}

// ---------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------

async fn passwd(call: &Call, id: i64, password: &str) -> ApiResult {
    // Authorize and validate before hashing, so a refused call costs nothing.
    let driver = {
        let state = call.oned.store.read();
        let user = state
            .users
            .get(id)
            .cloned()
            .ok_or_else(|| no_exists(call.method, User::OBJNAME, id))?;
        authorize(call, &state, &*user, AuthOp::Manage)?;
        user.auth_driver.clone()
    };
    if !password_change_allowed(&driver) && !call.session.is_admin() {
        return Err(action(
            call.method,
            &format!("Password for driver {driver} cannot be changed."),
        ));
    }
    check_password(&driver, password).map_err(|m| action(call.method, &m))?;
    let secret = stored_secret(call, &driver, password).await?;

    let mut tx = call.oned.store.begin().await;
    let mut user: User = get_for_change(call, &tx, id, AuthOp::Manage)?;
    if user.auth_driver != driver {
        return Err(action(
            call.method,
            "The user's auth driver changed meanwhile; retry the password change.",
        ));
    }
    user.password = secret;
    // A new password ends every login token and cached session, as in OpenNebula.
    user.login_tokens.clear();
    tx.put(user);
    commit(call, tx).await?;
    call.oned.auth.forget_user(id);
    tracing::info!(uid = id, by = call.session.uid, "password changed");
    ok_id(id)
}

async fn chauth(call: &Call, id: i64, driver: &str, password: &str) -> ApiResult {
    {
        let state = call.oned.store.read();
        let user = state
            .users
            .get(id)
            .cloned()
            .ok_or_else(|| no_exists(call.method, User::OBJNAME, id))?;
        authorize(call, &state, &*user, AuthOp::Admin)?;
    }
    check_driver(driver).map_err(|m| action(call.method, &m))?;
    let secret = if password.is_empty() {
        None
    } else {
        check_password(driver, password).map_err(|m| action(call.method, &m))?;
        Some(stored_secret(call, driver, password).await?)
    };
    let mut tx = call.oned.store.begin().await;
    let mut user: User = get_for_change(call, &tx, id, AuthOp::Admin)?;
    user.auth_driver = driver.to_string();
    if let Some(secret) = secret {
        user.password = secret;
        user.login_tokens.clear();
    }
    tx.put(user);
    commit(call, tx).await?;
    call.oned.auth.forget_user(id);
    tracing::info!(
        uid = id,
        driver,
        by = call.session.uid,
        "auth driver changed"
    );
    ok_id(id)
}

/// `one.user.login(username, token, valid, egid)`: creates (valid > 0 seconds, or -1 for the
/// longest the driver allows) or revokes (valid 0; an empty token revokes them all) a login
/// token, usable as the password in sessions. Returns the token.
async fn login(call: &Call, username: &str, token: &str, valid: i64, egid: i64) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let found = tx
        .find::<User>(|u| u.name == username)
        .and_then(|id| tx.get::<User>(id));
    let Some(mut user) = found else {
        return Err(ApiError::new(
            ErrorCode::NoExists,
            format!("[{}] Error getting user [{username}].", call.method),
        ));
    };
    authorize(call, &tx.committed(), &user, AuthOp::Manage)?;
    let uid = user.id;
    let max = max_token_time(&user.auth_driver);
    let valid = if max > 0 && (valid > max || valid == -1) {
        max
    } else {
        valid
    };
    let now = now_secs();
    let answer;
    if valid == 0 {
        if token.is_empty() {
            user.login_tokens.clear();
        } else {
            let before = user.login_tokens.len();
            user.login_tokens.retain(|t| t.token != token);
            if user.login_tokens.len() == before {
                return Err(rpc_api(
                    call.method,
                    &format!("Could not find token: {token}"),
                ));
            }
        }
        answer = token.to_string();
    } else if valid > 0 || valid == -1 {
        let s = &call.session;
        // A group token's group must be one of the user's, and (unless an administrator
        // asks) one the calling session acts in.
        if egid != -1 && (!user.in_group(egid) || (!s.is_admin() && !s.gids.contains(&egid))) {
            return Err(rpc_api(call.method, "EGID is not in user group list"));
        }
        // A session limited to one group (a group token) cannot mint a full token.
        if egid == -1 && s.uid == uid && !same_set(&user.groups, &s.gids) {
            return Err(rpc_api(
                call.method,
                "Cannot create a full token with a specific group token",
            ));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(rpc_api(call.method, "A token cannot contain blanks"));
        }
        user.login_tokens.retain(|t| !t.is_expired(now));
        let expiration_time = if valid == -1 {
            -1
        } else {
            now.saturating_add(valid)
        };
        let value = if token.is_empty() {
            random_hex(20)
        } else {
            token.to_string()
        };
        match user.login_tokens.iter_mut().find(|t| t.token == value) {
            Some(t) => {
                t.expiration_time = expiration_time;
                t.egid = egid;
            }
            None => {
                if user.login_tokens.len() >= MAX_TOKENS {
                    return Err(rpc_api(call.method, "Max number of tokens limit reached."));
                }
                user.login_tokens.push(LoginToken {
                    token: value.clone(),
                    expiration_time,
                    egid,
                });
            }
        }
        answer = value;
    } else {
        return Err(rpc_api(call.method, "Wrong valid period for token"));
    }
    tx.put(user);
    commit(call, tx).await?;
    if valid == 0 {
        call.oned.auth.forget_user(uid);
    }
    tracing::info!(
        uid,
        valid,
        egid,
        by = call.session.uid,
        "login token changed"
    );
    Ok(one_proto::xmlrpc::Value::String(answer))
}

fn same_set(a: &[i64], b: &[i64]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    a.dedup();
    b.sort_unstable();
    b.dedup();
    a == b
}

async fn enable(call: &Call, id: i64, enabled: bool) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let mut user: User = get_for_change(call, &tx, id, AuthOp::Admin)?;
    if id == ONEADMIN {
        return Err(action(call.method, "Cannot enable/disable oneadmin user"));
    }
    if user.enabled == enabled {
        return ok_id(id);
    }
    user.enabled = enabled;
    tx.put(user);
    commit(call, tx).await?;
    if !enabled {
        call.oned.auth.forget_user(id);
    }
    tracing::info!(
        uid = id,
        enabled,
        by = call.session.uid,
        "user enabled state changed"
    );
    ok_id(id)
}

/// `one.user.rename(id, name)`: not in OpenNebula 7's API, kept for older clients; renames
/// need ADMIN (the name is the login).
async fn rename(call: &Call, id: i64, name: &str) -> ApiResult {
    auth::check_username(name).map_err(|m| action(call.method, &m))?;
    let mut tx = call.oned.store.begin().await;
    let mut user: User = get_for_change(call, &tx, id, AuthOp::Admin)?;
    if id == ONEADMIN || id == SERVERADMIN {
        return Err(action(
            call.method,
            &format!("{} cannot be renamed.", user.name),
        ));
    }
    if let Some(other) = name_taken::<User>(&tx, name, id) {
        return Err(action(
            call.method,
            &format!("NAME is already taken by USER {other}."),
        ));
    }
    user.name = name.to_string();
    tx.put(user);
    commit(call, tx).await?;
    call.oned.auth.forget_user(id);
    tracing::info!(uid = id, name, "user renamed");
    ok_id(id)
}

// ---------------------------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------------------------

/// Reads the user and the group of a group change, authorizing `user_op` on the user and
/// `group_op` on the group.
fn user_and_group(
    call: &Call,
    tx: &Txn<'_>,
    id: i64,
    gid: i64,
    user_op: AuthOp,
    group_op: AuthOp,
) -> Result<(User, Group), ApiError> {
    let user: User = tx
        .get(id)
        .ok_or_else(|| no_exists(call.method, User::OBJNAME, id))?;
    let group: Group = tx
        .get(gid)
        .ok_or_else(|| no_exists(call.method, "group", gid))?;
    let state = tx.committed();
    authorize(call, &state, &user, user_op)?;
    if !group_allowed(&state, &call.session, &group, group_op) {
        return Err(not_authorized(
            call.method,
            call.session.uid,
            &authz::describe(group_op, &group_auth(&group)),
        ));
    }
    Ok((user, group))
}

/// `one.user.chgrp(id, gid)`: changes the primary group. The old primary group stays a
/// secondary one only if the new group already was one.
async fn chgrp(call: &Call, id: i64, gid: i64) -> ApiResult {
    if gid < 0 {
        return Err(rpc_api(call.method, "Wrong group ID"));
    }
    let mut tx = call.oned.store.begin().await;
    let (mut user, mut group) = {
        let user: User = tx
            .get(id)
            .ok_or_else(|| no_exists(call.method, User::OBJNAME, id))?;
        if driver_manages_groups(&user.auth_driver) && !user.in_group(gid) {
            return Err(rpc_api(
                call.method,
                &format!(
                    "Groups cannot be manually managed for auth driver {}",
                    user.auth_driver
                ),
            ));
        }
        if tx.get::<Group>(gid).is_none() {
            return Err(no_exists(call.method, "group", gid));
        }
        if id == ONEADMIN {
            return Err(internal(
                call.method,
                "user [0] oneadmin cannot be moved outside of the group [0] oneadmin",
            ));
        }
        user_and_group(call, &tx, id, gid, AuthOp::Manage, AuthOp::Use)?
    };
    let old = user.gid;
    if old == gid {
        return ok_id(id);
    }
    let was_member = user.groups.contains(&gid);
    user.gid = gid;
    user.gname = group.name.clone();
    if !was_member {
        user.groups.push(gid);
        user.groups.retain(|g| *g != old);
        if let Some(mut old_group) = tx.get::<Group>(old) {
            old_group.users.retain(|u| *u != id);
            drop_admin(&mut tx, &mut old_group, id);
            tx.put(old_group);
        }
    }
    if !group.users.contains(&id) {
        group.users.push(id);
    }
    tx.put(group);
    tx.put(user);
    commit(call, tx).await?;
    tracing::info!(uid = id, old_gid = old, gid, "primary group changed");
    ok_id(id)
}

/// Users whose auth driver manages their groups (LDAP-style) cannot have them changed here.
fn refuse_driver_managed_groups(call: &Call, tx: &Txn<'_>, id: i64) -> Result<(), ApiError> {
    match tx.get::<User>(id) {
        Some(u) if driver_manages_groups(&u.auth_driver) => Err(action(
            call.method,
            &format!(
                "Groups cannot be manually managed for auth driver {}",
                u.auth_driver
            ),
        )),
        _ => Ok(()),
    }
}

async fn addgroup(call: &Call, id: i64, gid: i64) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    refuse_driver_managed_groups(call, &tx, id)?;
    let (mut user, mut group) = user_and_group(call, &tx, id, gid, AuthOp::Manage, AuthOp::Manage)?;
    if user.in_group(gid) {
        return Err(action(call.method, "User is already in this group"));
    }
    user.groups.push(gid);
    if !group.users.contains(&id) {
        group.users.push(id);
    }
    tx.put(user);
    tx.put(group);
    commit(call, tx).await?;
    tracing::info!(uid = id, gid, "secondary group added");
    ok_id(id)
}

async fn delgroup(call: &Call, id: i64, gid: i64) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    refuse_driver_managed_groups(call, &tx, id)?;
    let (mut user, mut group) = user_and_group(call, &tx, id, gid, AuthOp::Manage, AuthOp::Manage)?;
    if user.gid == gid {
        return Err(action(
            call.method,
            "Cannot remove user from the primary group",
        ));
    }
    if !user.groups.contains(&gid) {
        return Err(action(call.method, "User is not part of this group"));
    }
    user.groups.retain(|g| *g != gid);
    group.users.retain(|u| *u != id);
    // Administering a group needs being in it.
    drop_admin(&mut tx, &mut group, id);
    // Tokens scoped to that group would otherwise keep its rights.
    user.login_tokens.retain(|t| t.egid != gid);
    tx.put(user);
    tx.put(group);
    commit(call, tx).await?;
    call.oned.auth.forget_user(id);
    tracing::info!(uid = id, gid, "secondary group removed");
    ok_id(id)
}

// ---------------------------------------------------------------------------------------------
// Quotas
// ---------------------------------------------------------------------------------------------

async fn set_quota(call: &Call, id: i64, text: &str) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let mut user: User = get_for_change(call, &tx, id, AuthOp::Admin)?;
    if id == ONEADMIN {
        return Err(action(call.method, "Cannot set quotas for oneadmin user"));
    }
    let t = Template::parse(text)
        .map_err(|e| action(call.method, &format!("Error parsing quota template: {e}")))?;
    user.quotas
        .set(&t, false)
        .map_err(|m| action(call.method, &m))?;
    tx.put(user);
    commit(call, tx).await?;
    tracing::info!(uid = id, by = call.session.uid, "user quotas set");
    ok_id(id)
}

/// `one.userquota.update` / `one.groupquota.update`: replaces default quota entries, returns
/// the new defaults document. Only members of group oneadmin (by their active group).
pub(crate) async fn update_default_quotas(call: &Call, text: &str, users: bool) -> ApiResult {
    let s = &call.session;
    if s.gid != auth::ONEADMIN_GROUP && s.uid != auth::ONEADMIN_USER {
        return Err(ApiError::new(
            ErrorCode::Authorization,
            format!(
                "[{}] User [{}] : The default quotas can only be updated by users in the \
                 oneadmin group.",
                call.method, s.uid
            ),
        ));
    }
    let t = Template::parse(text)
        .map_err(|e| action(call.method, &format!("Error parsing quota template: {e}")))?;
    let vms: Vec<_> = t.vectors(QuotaKind::Vm.entry_name()).collect();
    if vms.len() > 1 {
        return Err(action(
            call.method,
            "Only one default VM quota can be defined",
        ));
    }
    if vms
        .first()
        .and_then(|v| v.get("CLUSTER_IDS"))
        .is_some_and(|c| !c.trim().is_empty())
    {
        return Err(action(
            call.method,
            "CLUSTER_IDS attribute is not allowed for default VM quota",
        ));
    }
    let mut tx = call.oned.store.begin().await;
    let mut defaults = quota::defaults(&tx);
    let (set, root) = if users {
        (&mut defaults.user, "DEFAULT_USER_QUOTAS")
    } else {
        (&mut defaults.group, "DEFAULT_GROUP_QUOTAS")
    };
    set.set(&t, true).map_err(|m| action(call.method, &m))?;
    let xml = set.default_xml(root);
    quota::set_defaults(&mut tx, defaults).map_err(|m| internal(call.method, &m))?;
    commit(call, tx).await?;
    tracing::info!(by = s.uid, root, "default quotas updated");
    ok_xml(xml)
}
