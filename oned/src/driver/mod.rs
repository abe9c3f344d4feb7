//! Host drivers: who carries out a VM's driver operations on its host.
//!
//! The lifecycle (`crate::lcm`) only knows [`HostDriver`]. Which implementation serves a host
//! follows its VM_MAD: `dummy` is simulated inside oned ([`dummy`]); `kvm` hosts are reached
//! through their node agent's session (`crate::hostmgr`). A host whose VM_MAD has no driver
//! in this oned gets an error for every operation — never a silent fake.

pub mod dummy;

use crate::daemon::Oned;
use one_proto::agent::VmDocument;
use one_proto::driver::{DriverError, DriverReply, DriverRequest};
use one_proto::objects::host::Host;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type DriverFuture = Pin<Box<dyn Future<Output = Result<DriverReply, DriverError>> + Send>>;

/// Carries out driver operations on one host. Every operation must be idempotent: after a
/// crash oned repeats the step that was in flight.
pub trait HostDriver: Send + Sync {
    fn execute(&self, req: DriverRequest) -> DriverFuture;

    /// Loads the security-group rules of these VMs (all on this host) again, in one go.
    fn update_security_groups(&self, vms: Vec<VmDocument>) -> DriverFuture;
}

/// A VM_MAD this oned has no driver for: every operation fails with the reason.
struct Unavailable {
    vm_mad: String,
}

impl HostDriver for Unavailable {
    fn execute(&self, req: DriverRequest) -> DriverFuture {
        let msg = format!(
            "no hypervisor driver for VM_MAD \"{}\" in this oned: {} cannot run (hosts with VM_MAD \"dummy\" are simulated)",
            self.vm_mad,
            req.op.name()
        );
        Box::pin(async move { Err(DriverError::new(msg)) })
    }

    fn update_security_groups(&self, _vms: Vec<VmDocument>) -> DriverFuture {
        let msg = format!(
            "no hypervisor driver for VM_MAD \"{}\" in this oned: security groups cannot be updated",
            self.vm_mad
        );
        Box::pin(async move { Err(DriverError::new(msg)) })
    }
}

/// The driver for `host` as it is now (its template carries the dummy's settings).
pub fn for_host(oned: &Oned, host: &Host) -> Arc<dyn HostDriver> {
    match host.vm_mad.as_str() {
        "dummy" => Arc::new(dummy::Dummy::for_host(&oned.config.dummy, host)),
        crate::hostmgr::AGENT_MAD => Arc::new(oned.hostmgr.driver(host)),
        other => Arc::new(Unavailable {
            vm_mad: other.to_string(),
        }),
    }
}
