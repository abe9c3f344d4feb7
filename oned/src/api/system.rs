//! one.system.* methods.

use super::{ApiResult, Call, Params, Registry, ok_xml};
use one_proto::xml::XmlWriter;
use one_proto::xmlrpc::Value;

/// The version oned reports: clients check it (the Terraform provider parses it as semver;
/// the PyPI `opennebula-cli` accepts only 7.0.x and 7.4.x).
pub const ONE_VERSION: &str = "7.4.0";

/// Operations grouped by the right they need on a VM (OpenNebula's oned.conf defaults).
pub const VM_ADMIN_OPERATIONS: &str =
    "migrate, delete, recover, retry, deploy, resched, backup, restore";
pub const VM_MANAGE_OPERATIONS: &str = "undeploy, hold, release, stop, suspend, resume, reboot, \
     poweroff, disk-attach, nic-attach, disk-snapshot, terminate, disk-resize, snapshot, \
     updateconf, rename, resize, update, disk-saveas, sched-action, sg-attach, pci-attach, \
     exec, vmgroup";

pub fn register(r: &mut Registry) {
    r.add("one.system.version", |_c: Call, _p: Params| async move {
        Ok(Value::String(ONE_VERSION.into()))
    });
    r.add("one.system.config", |c: Call, _p: Params| async move {
        config(&c)
    });
}

/// `<OPENNEBULA_CONFIGURATION>`: the settings clients may care about, in XSD order.
fn config(call: &Call) -> ApiResult {
    let cfg = &call.oned.config;
    let (addr, port) = cfg
        .listen
        .rsplit_once(':')
        .map(|(a, p)| (a.to_string(), p.parse::<i64>().unwrap_or(2633)))
        .unwrap_or_else(|| (cfg.listen.clone(), 2633));
    let mut w = XmlWriter::new();
    w.open("OPENNEBULA_CONFIGURATION")
        .text("API_LIST_ORDER", &cfg.api_list_order)
        .text("DEFAULT_AUTH", "core")
        .text("DEFAULT_DEVICE_PREFIX", &cfg.default_device_prefix)
        .text("DEFAULT_UMASK", &cfg.default_umask)
        .text("LISTEN_ADDRESS", &addr)
        .text("MAC_PREFIX", &cfg.mac_prefix)
        .num("MESSAGE_SIZE", cfg.max_request_bytes)
        .num("PORT", port)
        .num("SESSION_EXPIRATION_TIME", cfg.session_cache_seconds)
        .text("VM_ADMIN_OPERATIONS", VM_ADMIN_OPERATIONS)
        .text("VM_MANAGE_OPERATIONS", VM_MANAGE_OPERATIONS)
        .text("VM_USE_OPERATIONS", "")
        .close("OPENNEBULA_CONFIGURATION");
    ok_xml(w.finish())
}
