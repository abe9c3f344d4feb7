//! `one.hostrecovery.info`: the host recovery log (an extension; docs/host-recovery.md).
//!
//! `one.hostrecovery.info(session, host_id, start_id = -1, count = -1)`: the records of host
//! `host_id` (-1: every host) with `ID >= start_id`, oldest first, at most `count` (-1: all
//! that are kept), as `<HOST_RECOVERY_POOL>`. Group oneadmin sees everything; other users
//! need MANAGE on the host (with -1: the records of the hosts they may manage).

use super::common::{authorize, get_authorized};
use super::{ApiResult, Call, Params, Registry, errors::*, ok_xml};
use crate::recovery::log;
use one_proto::acl::AuthOp;
use one_proto::objects::host::Host;

pub fn register(r: &mut Registry) {
    r.add("one.hostrecovery.info", |c: Call, p: Params| async move {
        info(&c, p.int32(0)?, p.opt_int(1, -1)?, p.opt_int(2, -1)?).await
    });
}

async fn info(call: &Call, host_id: i64, start: i64, count: i64) -> ApiResult {
    let admin = call.session.is_admin();
    if host_id >= 0 && !admin {
        // Records of a deleted host stay readable by oneadmin only.
        get_authorized::<Host>(call, host_id, AuthOp::Manage)?;
    } else if host_id < -1 {
        return Err(rpc_api(
            call.method,
            "host_id must be a host id or -1 (every host).",
        ));
    }
    // Non-admins listing every host: fetch all, then keep what they may manage, so paging
    // by `count` applies to what they see.
    let sql_count = if admin || host_id >= 0 { count } else { -1 };
    let mut records = log::query(&call.oned.store.db, host_id, start, sql_count)
        .await
        .map_err(|e| {
            tracing::error!(method = call.method, error = %e, "cannot read the recovery log");
            internal(call.method, &format!("Cannot read the recovery log: {e}"))
        })?;
    if !admin && host_id < 0 {
        let st = call.oned.store.read();
        records.retain(|r| {
            st.hosts
                .get(r.host_id)
                .is_some_and(|h| authorize(call, &st, &**h, AuthOp::Manage).is_ok())
        });
        if count >= 0 {
            records.truncate(usize::try_from(count).unwrap_or(0));
        }
    }
    ok_xml(log::pool_xml(&records))
}
