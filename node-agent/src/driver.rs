//! The hypervisor behind the agent: the [`AgentDriver`] trait, and the drivers by name.
//!
//! A driver is chosen on the command line (`--driver`, or `--simulate`; the protocol's
//! Welcome has no field for it) and made once the Welcome brings the configuration. Drivers:
//!
//! * `simulated` ([`crate::simulated`]): domains in memory, every operation completes after a
//!   configurable delay. oned's tests and the many-agents benchmark use it.
//! * `libvirt`: KVM/QEMU through the `virt` crate ([`crate::libvirt`]). When it cannot be
//!   opened the agent still says hello; its onboarding report then fails the `libvirt` check
//!   with the reason (so the host shows it in ERROR), and every request is answered with it.

use crate::host::KvmDevice;
use crate::outbox::Outbox;
use crate::simulated::{SimOptions, Simulated};
use one_proto::agent::{AgentConfig, Capability, Check, Domain, DomainType, VmDocument, VmSample};
use one_proto::driver::{DriverError, DriverReply, DriverRequest};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a driver does for the session. Calls come concurrently from many tasks; the session
/// already runs one VM's operations one at a time, in arrival order.
pub trait AgentDriver: Send + Sync {
    /// The driver's name (`--driver`).
    fn name(&self) -> &'static str;

    /// The HYPERVISOR probe attribute ("kvm").
    fn hypervisor(&self) -> &'static str;

    /// Carries out one driver operation, idempotently (a repeated deploy answers the running
    /// domain's UUID, cancelling a missing domain succeeds, ...).
    fn execute(&self, req: DriverRequest) -> BoxFuture<'_, Result<DriverReply, DriverError>>;

    /// Every domain the hypervisor has, this cloud's and others' ([`one_proto::agent::WILD_VM`]).
    /// An error is not an empty list: a full report made of it would make oned take every
    /// VM as gone.
    fn list_domains(&self) -> BoxFuture<'_, Result<Vec<Domain>, DriverError>>;

    /// A usage sample of each of this cloud's domains.
    fn monitor_vms(&self) -> BoxFuture<'_, Result<Vec<VmSample>, DriverError>>;

    /// Loads the security-group and anti-spoofing rules of these VMs' NICs again, all in one
    /// firewall transaction (their groups' rules changed). Drivers that plumb no network
    /// answer at once.
    fn update_security_groups(
        &self,
        vms: Vec<VmDocument>,
    ) -> BoxFuture<'_, Result<DriverReply, DriverError>> {
        Box::pin(async move {
            Ok(DriverReply {
                deploy_id: None,
                info: format!("{} VM(s): no network driver on this host", vms.len()),
            })
        })
    }

    /// The `NETWORK_DRIVERS` capability: which VN_MADs this host's kernel can serve. None
    /// for drivers that plumb no network (the host is then not limited by it).
    fn network_drivers(&self) -> BoxFuture<'_, Option<Capability>> {
        Box::pin(async { None })
    }

    /// The hypervisor's part of the onboarding checks: `libvirt`, `kvm` and `cpu_model`
    /// (one_proto::agent::checks), and the domain type it will use.
    fn hypervisor_checks(&self, facts: HostFacts) -> BoxFuture<'_, HypervisorReport>;
}

/// What the session found on the host for [`AgentDriver::hypervisor_checks`].
#[derive(Clone, Debug)]
pub struct HostFacts {
    pub kvm: KvmDevice,
    /// /proc/cpuinfo's model name.
    pub cpu_model: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HypervisorReport {
    pub checks: Vec<Check>,
    pub domain_type: Option<DomainType>,
}

/// What a driver is made with.
#[derive(Clone)]
pub struct DriverContext {
    pub host_id: i64,
    pub host_name: String,
    pub config: AgentConfig,
    /// Log frames to oned (and VM logs).
    pub log: Outbox,
    /// The simulated driver's options (command line).
    pub sim: SimOptions,
    /// The byte stream connections to oned (TM_MAD `local` copies files through them);
    /// None where there are none (tests).
    pub streams: Option<crate::transfer::Muxes>,
}

/// Every driver name the agent knows, built in or not.
pub const DRIVER_NAMES: &[&str] = &["libvirt", "simulated"];

/// The message for a driver this build does not contain.
pub fn not_built(name: &str) -> String {
    format!(
        "the {name} driver is not built into this one-node-agent ({}); built-in drivers: libvirt, simulated",
        crate::host::AGENT_VERSION
    )
}

/// Makes the driver `name`; the error says why it cannot be had (for the onboarding report
/// and the replies).
pub fn open(name: &str, ctx: DriverContext) -> Result<Arc<dyn AgentDriver>, String> {
    match name {
        "simulated" => Ok(Arc::new(Simulated::new(ctx))),
        "libvirt" => crate::libvirt::Libvirt::open(ctx),
        other => Err(format!(
            "no driver named {other:?} (known: {})",
            DRIVER_NAMES.join(", ")
        )),
    }
}
