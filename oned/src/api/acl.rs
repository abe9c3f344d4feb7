//! one.acl.*: ACL rules (addrule, delrule, info). Only group oneadmin may change them, as in
//! OpenNebula (ACL rules are not objects with owners).

use super::common::commit;
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id, ok_xml};
use crate::store::Kind;
use one_proto::ApiError;
use one_proto::acl::{AclError, AclRule, sort_like_oned, write_pool_xml};

pub fn register(r: &mut Registry) {
    r.add("one.acl.addrule", |c: Call, p: Params| async move {
        add_rule(&c, p.str(0)?, p.str(1)?, p.str(2)?, p.opt_str(3, "")?).await
    });
    r.add("one.acl.delrule", |c: Call, p: Params| async move {
        del_rule(&c, p.int32(0)?).await
    });
    r.add(
        "one.acl.info",
        |c: Call, _p: Params| async move { info(&c) },
    );
}

/// ACL failures answer INTERNAL with oned's own texts (`Rule ... is malformed: ...`).
fn acl_err(call: &Call, e: AclError) -> ApiError {
    ApiError::new(e.code(), format!("[{}] {e}", call.method))
}

fn require_admin(call: &Call, what: &str) -> Result<(), one_proto::ApiError> {
    if call.session.is_admin() {
        Ok(())
    } else {
        Err(not_authorized(call.method, call.session.uid, what))
    }
}

async fn add_rule(call: &Call, user: &str, resource: &str, rights: &str, zone: &str) -> ApiResult {
    require_admin(call, "MANAGE ACL")?;
    let zone = if zone.is_empty() { None } else { Some(zone) };
    let parsed =
        AclRule::from_hex(-1, user, resource, rights, zone).map_err(|e| acl_err(call, e))?;
    let mut tx = call.oned.store.begin().await;
    if let Some(dup) = tx.find::<AclRule>(|r| r.same_rule(&parsed)) {
        tracing::debug!(acl = dup, "duplicate ACL rule refused");
        return Err(acl_err(
            call,
            AclError::Duplicate {
                rule: parsed.to_rule_string(),
            },
        ));
    }
    let id = tx.next_id(Kind::Acl);
    let rule = AclRule { id, ..parsed };
    tx.put(rule);
    commit(call, tx).await?;
    tracing::info!(acl = id, "ACL rule added");
    ok_id(id)
}

async fn del_rule(call: &Call, id: i64) -> ApiResult {
    require_admin(call, "MANAGE ACL")?;
    let mut tx = call.oned.store.begin().await;
    if tx.get::<AclRule>(id).is_none() {
        return Err(acl_err(call, AclError::NotFound(id)));
    }
    tx.delete::<AclRule>(id);
    commit(call, tx).await?;
    tracing::info!(acl = id, "ACL rule deleted");
    ok_id(id)
}

fn info(call: &Call) -> ApiResult {
    let state = call.oned.store.read();
    let mut rules: Vec<AclRule> = state.acls.iter().map(|r| (**r).clone()).collect();
    sort_like_oned(&mut rules);
    ok_xml(write_pool_xml(&rules))
}
