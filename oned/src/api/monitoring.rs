//! one.host.monitoring, one.hostpool.monitoring, one.vm.monitoring, one.vmpool.monitoring:
//! the monitoring history (monitor/history.rs) as `<MONITORING_DATA>` documents.
//!
//! As OpenNebula: USE on the object for the single calls; the pool calls list what the
//! caller may USE (vmpool with the usual filter flag); `seconds` (default -1) selects all
//! records (-1), the last one per object (0) or those of the last N seconds.

use super::common::{ApiObject, PoolFilter, get_authorized};
use super::{ApiResult, Call, Params, Registry, ok_xml};
use crate::auth::now_secs;
use crate::authz;
use one_proto::acl::AuthOp;
use one_proto::objects::host::Host;
use one_proto::objects::vm::Vm;
use one_proto::xml::XmlWriter;

const ROOT: &str = "MONITORING_DATA";

pub fn register(r: &mut Registry) {
    r.add("one.host.monitoring", |c: Call, p: Params| async move {
        host(&c, p.int32(0)?)
    });
    r.add("one.hostpool.monitoring", |c: Call, p: Params| async move {
        host_pool(&c, p.opt_int(0, -1)?)
    });
    r.add("one.vm.monitoring", |c: Call, p: Params| async move {
        vm(&c, p.int32(0)?)
    });
    r.add("one.vmpool.monitoring", |c: Call, p: Params| async move {
        vm_pool(&c, p.int32(0)?, p.opt_int(1, -1)?)
    });
}

fn host(call: &Call, id: i64) -> ApiResult {
    get_authorized::<Host>(call, id, AuthOp::Use)?;
    let mut w = XmlWriter::new();
    w.open(ROOT);
    call.oned
        .store
        .history
        .write_host(id, -1, now_secs(), &mut w);
    w.close(ROOT);
    ok_xml(w.finish())
}

fn vm(call: &Call, id: i64) -> ApiResult {
    get_authorized::<Vm>(call, id, AuthOp::Use)?;
    let mut w = XmlWriter::new();
    w.open(ROOT);
    call.oned.store.history.write_vm(id, -1, now_secs(), &mut w);
    w.close(ROOT);
    ok_xml(w.finish())
}

/// Ids of the objects of a pool the caller may USE and `keep` accepts, ascending. Taken
/// first, so the store's read lock is not held while the history's lock is.
fn visible<T: ApiObject>(call: &Call, keep: impl Fn(&T) -> bool) -> Vec<i64> {
    let st = call.oned.store.read();
    let admin = call.session.is_admin();
    T::pool(&st)
        .iter()
        .filter(|o| keep(o))
        .filter(|o| admin || authz::allowed(&st, &call.session, &o.auth(), AuthOp::Use))
        .map(|o| o.oid())
        .collect()
}

fn host_pool(call: &Call, seconds: i64) -> ApiResult {
    let ids = visible::<Host>(call, |_| true);
    let (h, now) = (&call.oned.store.history, now_secs());
    let mut w = XmlWriter::new();
    w.open(ROOT);
    for id in ids {
        h.write_host(id, seconds, now, &mut w);
    }
    w.close(ROOT);
    ok_xml(w.finish())
}

fn vm_pool(call: &Call, filter: i64, seconds: i64) -> ApiResult {
    let filter = PoolFilter::parse(call, filter)?;
    let ids = visible::<Vm>(call, |vm| {
        filter.matches(call, vm.header.uid, vm.header.gid)
    });
    let (h, now) = (&call.oned.store.history, now_secs());
    let mut w = XmlWriter::new();
    w.open(ROOT);
    for id in ids {
        h.write_vm(id, seconds, now, &mut w);
    }
    w.close(ROOT);
    ok_xml(w.finish())
}
