//! one.hook.* / one.hookpool.info / one.hooklog.info: hooks run commands on the frontend
//! as oned's user, so only members of group oneadmin may see or change them, whatever ACL
//! rules say (OpenNebula's hooks belong to oneadmin and no default ACL grants them).

use super::common::{self, ApiObject, check_lock, check_name, commit, parse_template};
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id, ok_xml};
use crate::events::Event;
use crate::store::Kind;
use one_proto::ApiError;
use one_proto::acl::{AuthOp, ObjectType};
use one_proto::objects::Lock;
use one_proto::objects::hook::{Hook, HookType, write_hooklog};
use one_proto::template::Template;
use one_proto::xml::XmlWriter;

const OBJNAME: &str = "hook";

impl ApiObject for Hook {
    const OBJNAME: &'static str = OBJNAME;
    const POOL_ROOT: &'static str = "HOOK_POOL";
    const ACL_TYPE: ObjectType = ObjectType::Hook;

    fn user_template_mut(&mut self) -> &mut Template {
        &mut self.template
    }
    fn lock(&self) -> Option<&Lock> {
        self.lock.as_ref()
    }
    fn lock_slot(&mut self) -> Option<&mut Option<Lock>> {
        Some(&mut self.lock)
    }
}

pub fn register(r: &mut Registry) {
    r.add("one.hook.allocate", |c: Call, p: Params| async move {
        allocate_hook(&c, p.str(0)?).await
    });
    r.add("one.hook.delete", |c: Call, p: Params| async move {
        delete(&c, p.int32(0)?).await
    });
    r.add("one.hook.update", |c: Call, p: Params| async move {
        update(&c, p.int32(0)?, p.str(1)?, p.opt_int(2, 0)?).await
    });
    r.add("one.hook.rename", |c: Call, p: Params| async move {
        rename(&c, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.hook.info", |c: Call, p: Params| async move {
        let id = p.int32(0)?;
        admin_only(&c, AuthOp::Use, Some(id))?;
        common::info::<Hook>(&c, id)
    });
    r.add("one.hook.lock", |c: Call, p: Params| async move {
        lock(&c, p.int32(0)?, p.int32(1)?, p.opt_bool(2, false)?).await
    });
    r.add("one.hook.unlock", |c: Call, p: Params| async move {
        unlock(&c, p.int32(0)?).await
    });
    r.add("one.hook.retry", |c: Call, p: Params| async move {
        retry(&c, p.int32(0)?, p.int32(1)?)
    });
    // The filter and range arguments are accepted and ignored, as oned does.
    r.add("one.hookpool.info", |c: Call, _p: Params| async move {
        if !c.session.is_admin() {
            return ok_xml("<HOOK_POOL></HOOK_POOL>".into());
        }
        ok_xml(common::pool_xml::<Hook>(
            &c,
            common::PoolFilter::All,
            common::IdRange::All,
            |_| true,
            true,
        ))
    });
    r.add("one.hooklog.info", |c: Call, p: Params| async move {
        hooklog_info(&c, p.int(0)?, p.int(1)?, p.int32(2)?, p.int32(3)?)
    });
}

/// Refuses callers outside group oneadmin, worded as OpenNebula's authorization errors.
fn admin_only(call: &Call, op: AuthOp, id: Option<i64>) -> Result<(), ApiError> {
    if call.session.is_admin() {
        return Ok(());
    }
    let what = match id {
        Some(id) => format!("{} HOOK [{id}]", op.name()),
        None => format!("{} HOOK", op.name()),
    };
    Err(not_authorized(call.method, call.session.uid, &what))
}

/// Whether oned serves a method (the CALL of an API hook must exist).
fn method_exists(m: &str) -> bool {
    static SERVED: std::sync::LazyLock<super::Registry> =
        std::sync::LazyLock::new(super::Registry::full);
    SERVED.get(m).is_some()
}

fn allocate_err(call: &Call, reason: &str) -> ApiError {
    allocate(call.method, OBJNAME, reason)
}

async fn allocate_hook(call: &Call, text: &str) -> ApiResult {
    admin_only(call, AuthOp::Create, None)?;
    let mut t = parse_template(call, text)?;
    let name = t.get("NAME").map(str::trim).unwrap_or("").to_string();
    if name.is_empty() {
        return Err(allocate_err(call, "No NAME in template for Hook."));
    }
    check_name(&name).map_err(|m| allocate_err(call, &m))?;
    let type_text = t.get("TYPE").unwrap_or("").to_string();
    let ty = HookType::parse(&type_text)
        .ok_or_else(|| allocate_err(call, &format!("Invalid Hook type: {type_text}")))?;
    crate::hooks::spec::check_template(&mut t, ty, &method_exists)
        .map_err(|m| allocate_err(call, &m))?;

    let mut tx = call.oned.store.begin().await;
    if let Some(other) = common::name_taken::<Hook>(&tx, &name, -1) {
        return Err(allocate_err(
            call,
            &format!("NAME is already taken by HOOK {other}."),
        ));
    }
    let id = tx.next_id(Kind::Hook);
    tx.put(Hook {
        id,
        name: name.clone(),
        hook_type: ty,
        lock: None,
        template: t,
        log: Vec::new(),
        next_execution_id: 0,
    });
    commit(call, tx).await?;
    crate::hooks::refresh(&call.oned);
    tracing::info!(hook = id, %name, r#type = ty.name(), "hook allocated");
    ok_id(id)
}

async fn delete(call: &Call, id: i64) -> ApiResult {
    admin_only(call, AuthOp::Manage, Some(id))?;
    let mut tx = call.oned.store.begin().await;
    let hook: Hook = tx
        .get(id)
        .ok_or_else(|| no_exists(call.method, OBJNAME, id))?;
    check_lock(call, &hook, AuthOp::Manage)?;
    tx.delete::<Hook>(id);
    commit(call, tx).await?;
    crate::hooks::refresh(&call.oned);
    tracing::info!(hook = id, "hook deleted");
    ok_id(id)
}

async fn update(call: &Call, id: i64, text: &str, mode: i64) -> ApiResult {
    admin_only(call, AuthOp::Manage, Some(id))?;
    if mode != 0 && mode != 1 {
        return Err(rpc_api(call.method, "Wrong update type"));
    }
    let new = parse_template(call, text)?;
    let mut tx = call.oned.store.begin().await;
    let mut hook: Hook = tx
        .get(id)
        .ok_or_else(|| no_exists(call.method, OBJNAME, id))?;
    check_lock(call, &hook, AuthOp::Manage)?;
    let mut t = hook.template.clone();
    if mode == 0 {
        t = new;
    } else {
        t.merge(&new);
    }
    // TYPE cannot change: the template is checked against the hook's own type.
    crate::hooks::spec::check_template(&mut t, hook.hook_type, &method_exists)
        .map_err(|m| internal(call.method, &format!("Cannot update template. {m}")))?;
    hook.template = t;
    tx.put(hook);
    commit(call, tx).await?;
    crate::hooks::refresh(&call.oned);
    ok_id(id)
}

async fn rename(call: &Call, id: i64, name: &str) -> ApiResult {
    admin_only(call, AuthOp::Manage, Some(id))?;
    check_name(name).map_err(|m| action(call.method, &m))?;
    let mut tx = call.oned.store.begin().await;
    let mut hook: Hook = tx
        .get(id)
        .ok_or_else(|| no_exists(call.method, OBJNAME, id))?;
    check_lock(call, &hook, AuthOp::Manage)?;
    if let Some(other) = common::name_taken::<Hook>(&tx, name, id) {
        return Err(action(
            call.method,
            &format!("hook cannot be renamed to {name} because it collides with hook {other}"),
        ));
    }
    hook.name = name.to_string();
    tx.put(hook);
    commit(call, tx).await?;
    ok_id(id)
}

async fn lock(call: &Call, id: i64, level: i64, test: bool) -> ApiResult {
    admin_only(call, AuthOp::Manage, Some(id))?;
    common::lock::<Hook>(call, id, level, test).await
}

async fn unlock(call: &Call, id: i64) -> ApiResult {
    admin_only(call, AuthOp::Manage, Some(id))?;
    common::unlock::<Hook>(call, id).await
}

/// `one.hook.retry(hook_id, execution_id)`: runs a recorded execution again, with the same
/// arguments; the new record says RETRY=yes. Answers at once, the command runs afterwards.
fn retry(call: &Call, id: i64, execution_id: i64) -> ApiResult {
    admin_only(call, AuthOp::Manage, Some(id))?;
    let hook = call
        .oned
        .store
        .get::<Hook>(id)
        .ok_or_else(|| no_exists(call.method, OBJNAME, id))?;
    if !hook.log.iter().any(|r| r.execution_id == execution_id) {
        return Err(internal(
            call.method,
            "Invalid HookLog body. Arguments not found.",
        ));
    }
    call.oned.store.events.send(Event::Retry {
        hook_id: id,
        execution_id,
    });
    tracing::info!(hook = id, execution = execution_id, "hook retry requested");
    ok_id(id)
}

/// `one.hooklog.info(min_ts, max_ts, hook_id, rc)`: the records with min_ts < TIMESTAMP <
/// max_ts (-1: no bound) of one hook (-1: all), failed only (rc -1), successful only (1) or
/// all (0); newest hook first, as oned orders them.
fn hooklog_info(call: &Call, min_ts: i64, max_ts: i64, hook_id: i64, rc: i64) -> ApiResult {
    if !call.session.is_admin() {
        return Err(not_authorized(call.method, call.session.uid, "USE HOOK"));
    }
    let state = call.oned.store.read();
    let records = state
        .hooks
        .iter()
        .rev()
        .filter(|h| hook_id < 0 || h.id == hook_id)
        .flat_map(|h| h.log.iter())
        .filter(|r| {
            (min_ts < 0 || r.timestamp > min_ts)
                && (max_ts < 0 || r.timestamp < max_ts)
                && match rc {
                    -1 => r.result.code != 0,
                    1 => r.result.code == 0,
                    _ => true,
                }
        });
    let mut w = XmlWriter::new();
    write_hooklog(&mut w, records);
    ok_xml(w.finish())
}
