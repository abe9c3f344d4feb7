//! one.acl.*: ACL rules (addrule, delrule, info). Only group oneadmin may change them, as in
//! OpenNebula (ACL rules are not objects with owners).

use super::common::commit;
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id, ok_xml};
use crate::store::Kind;
use one_proto::acl::{AclRule, write_pool_xml};

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
    let parsed = AclRule::from_hex(-1, user, resource, rights, zone)
        .map_err(|e| action(call.method, &format!("Error creating rule: {e}")))?;
    let mut tx = call.oned.store.begin().await;
    let existing = tx.all::<AclRule>();
    if let Some(dup) = existing.iter().find(|r| {
        r.user == parsed.user
            && r.resource == parsed.resource
            && r.rights == parsed.rights
            && r.zone == parsed.zone
    }) {
        return Err(action(
            call.method,
            &format!("Rule already exists with ID {}.", dup.id),
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
        return Err(no_exists(call.method, "ACL", id));
    }
    tx.delete::<AclRule>(id);
    commit(call, tx).await?;
    tracing::info!(acl = id, "ACL rule deleted");
    ok_id(id)
}

fn info(call: &Call) -> ApiResult {
    let state = call.oned.store.read();
    let rules: Vec<AclRule> = state.acls.iter().map(|r| (**r).clone()).collect();
    ok_xml(write_pool_xml(&rules))
}
