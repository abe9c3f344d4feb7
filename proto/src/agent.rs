//! The oned <-> node-agent protocol (docs/node-agent.md).
//!
//! `one-node-agent --stdio` runs on a hypervisor host behind one long-lived SSH session (or a
//! local pipe), so both directions are a byte stream. On it travel *frames*: a u32 big-endian
//! body length, then a JSON body, at most [`MAX_FRAME`] bytes. oned sends [`ToAgent`]
//! messages, the agent [`FromAgent`] ones.
//!
//! ```text
//! agent                                   oned
//!   Hello {protocol, build, host}  ──►      check_hello: same protocol and build?
//!                                  ◄──    Welcome {host id, config}  | Refused → oned installs
//!   OnboardingReport, HostMonitoring,        its own agent build and starts it again
//!   DomainStates {full}, VmMonitoring ──►   reconcile
//!                                  ◄──    Request {id, Execute | Probe | ListDomains | Shutdown}
//!   Reply {id, Ok | Err | ...}     ──►
//!   pushes, any time (no id)       ──►
//!   Ping / Pong, either way        ◄─►    liveness
//! ```
//!
//! Nothing here does I/O: [`encode_into`] writes a frame into a buffer, [`FrameDecoder`] takes
//! bytes as they arrive and hands out whole frames. Neither panics on any input.

use crate::driver::{DriverError, DriverReply, DriverRequest};
use crate::ds::{DsReply, DsRequest};
use crate::objects::host::{HostDs, HostMonitoring as HostMonitoringDoc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the message set. Both ends must speak the same one; [`Hello`] and [`Refused`]
/// keep their shape across versions so that a mismatch can always be told.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame body either side sends or accepts (a VM document plus its request, or the
/// monitoring of a few thousand VMs, stay far below).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// The agent's executable, and the argument that makes it speak this protocol on
/// stdin/stdout.
pub const AGENT_BINARY: &str = "one-node-agent";
pub const STDIO_ARG: &str = "--stdio";

/// `vm_id` of a domain that does not belong to this cloud (OpenNebula's "wild" VMs).
pub const WILD_VM: i64 = -1;

/// Identifies a request within a session; chosen by oned, echoed in the reply.
pub type RequestId = u64;

// ------------------------------------------------------------------------------------------
// Messages
// ------------------------------------------------------------------------------------------

/// What oned sends to the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToAgent {
    /// Answer to an acceptable [`Hello`]; the session is open.
    Welcome(Welcome),
    /// Answer to an unacceptable [`Hello`]; oned closes the session next.
    Refused(Refused),
    Request {
        id: RequestId,
        request: Request,
    },
    Ping(Beat),
    Pong(Beat),
}

/// What the agent sends to oned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromAgent {
    /// The agent's first frame.
    Hello(Hello),
    /// The agent cannot work with the [`Welcome`] it got (e.g. an unusable config); it exits.
    Refused(Refused),
    /// The answer to request `id`.
    Reply {
        id: RequestId,
        reply: Reply,
    },
    HostMonitoring(HostMonitoring),
    VmMonitoring(VmMonitoring),
    DomainStates(DomainStates),
    OnboardingReport(OnboardingReport),
    Log(Log),
    Ping(Beat),
    Pong(Beat),
}

impl FromAgent {
    /// The frame's `type` (its serde tag), for messages and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            FromAgent::Hello(_) => "hello",
            FromAgent::Refused(_) => "refused",
            FromAgent::Reply { .. } => "reply",
            FromAgent::HostMonitoring(_) => "host_monitoring",
            FromAgent::VmMonitoring(_) => "vm_monitoring",
            FromAgent::DomainStates(_) => "domain_states",
            FromAgent::OnboardingReport(_) => "onboarding_report",
            FromAgent::Log(_) => "log",
            FromAgent::Ping(_) => "ping",
            FromAgent::Pong(_) => "pong",
        }
    }
}

/// A request from oned. The agent runs requests concurrently and answers each once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    /// Run a driver operation → [`Reply::Ok`] or [`Reply::Err`].
    Execute(DriverRequest),
    /// Run the onboarding checks again → [`Reply::CheckReport`].
    Probe,
    /// Every domain the hypervisor has → [`Reply::DomainList`].
    ListDomains,
    /// Loads the security-group and anti-spoofing rules of these VMs' NICs again (their
    /// groups' rules changed), all in one firewall transaction → [`Reply::Ok`] or
    /// [`Reply::Err`] for the whole set.
    UpdateSecurityGroups(SecurityGroupUpdate),
    /// Finish the requests in flight, answer them, then exit; domains keep running →
    /// [`Reply::ShuttingDown`] at once.
    Shutdown,
    /// A datastore operation (the frontend agent) → [`Reply::Ds`] or [`Reply::Err`].
    Ds(DsRequest),
    /// The parts of the configuration that change while a session lives (datastores,
    /// shared datastores to verify, bridges, the frontend's datastores) → [`Reply::Configured`].
    /// The agent pushes host monitoring at once, so what it reports follows.
    Configure(AgentConfig),
}

/// The VMs of one host whose security-group rules [`Request::UpdateSecurityGroups`] reloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupUpdate {
    pub vms: Vec<VmDocument>,
}

/// A VM document (one.vm.info XML, with its SECURITY_GROUP_RULEs) as oned has it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmDocument {
    pub vm_id: i64,
    pub vm_xml: String,
}

/// The agent's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    Ok(DriverReply),
    /// The operation (or any request) failed; the message is for the VM's ERROR and log.
    Err(DriverError),
    CheckReport(OnboardingReport),
    DomainList {
        domains: Vec<Domain>,
    },
    ShuttingDown,
    Ds(DsReply),
    Configured,
}

/// Keepalive. Either side may send [`ToAgent::Ping`] / [`FromAgent::Ping`]; the other answers
/// a Pong with the same `seq` and its own clock, which also lets oned watch the clock skew.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    pub seq: u64,
    /// The sender's wall clock, milliseconds since the Unix epoch.
    pub time_ms: i64,
}

// ------------------------------------------------------------------------------------------
// Handshake
// ------------------------------------------------------------------------------------------

/// The agent's first frame. Its shape never changes (fields may only be added, with
/// defaults), so any oned can read any agent's Hello.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    pub agent: AgentVersion,
    #[serde(default)]
    pub host: HostInfo,
    /// Where the agent serves its byte stream when oned did not hand it one (an agent
    /// reached over SSH): a Unix socket on the host that oned reaches through a second
    /// channel of the same SSH connection (docs/node-agent.md, "Byte stream").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamEndpoint>,
}

impl Hello {
    pub fn new(agent: AgentVersion, host: HostInfo) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            agent,
            host,
            stream: None,
        }
    }
}

/// The agent's byte stream socket, and the key a connection must present first (so only
/// the oned this hello went to can use it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEndpoint {
    pub socket: String,
    pub key: String,
}

/// Which build of the agent runs. Hosts run the frontend's own build, so oned accepts exactly
/// its own `build` and replaces anything else.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentVersion {
    /// The crate version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Identifies the binary itself (the SHA-256 of the executable, in hex), so two builds of
    /// one version still differ.
    pub build: String,
}

/// What the agent tells about its host before anything else.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostInfo {
    pub hostname: String,
    /// `ID` and `VERSION_ID` of /etc/os-release ("debian", "12").
    pub os_id: String,
    pub os_version: String,
    /// `uname -m` and `uname -r`.
    pub arch: String,
    pub kernel: String,
    /// /proc/sys/kernel/random/boot_id: changes when the host reboots (its domains are gone).
    pub boot_id: String,
}

/// oned's answer to a good [`Hello`]: who the host is and how the agent should work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol_version: u32,
    pub host_id: i64,
    pub host_name: String,
    /// oned's wall clock when sending, milliseconds since the Unix epoch (the clock check).
    pub time_ms: i64,
    pub config: AgentConfig,
}

/// The agent's configuration: it has no file of its own, oned sends it on every connect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConfig {
    pub monitoring: MonitoringPeriods,
    pub keepalive: Keepalive,
    /// libvirt connection URI.
    pub libvirt_uri: String,
    /// Domain type to use; `None`: `kvm` if a timed probe shows KVM works, else `qemu`.
    pub domain_type: Option<DomainType>,
    /// Domains are named `<prefix><vm id>`; other names are not this cloud's.
    pub domain_prefix: String,
    /// How long a shutdown waits for the guest to power off after the ACPI power button
    /// (OpenNebula's SHUTDOWN_TIMEOUT). A request's SHUTDOWN_TIMEOUT argument overrides it.
    pub shutdown_timeout_ms: u64,
    /// What a shutdown the guest ignored ends with: `false` (OpenNebula's default) fails it,
    /// the domain keeps running and the VM goes back to RUNNING; `true` destroys the domain
    /// (OpenNebula's FORCE_DESTROY=yes). A request's FORCE_DESTROY argument overrides it.
    #[serde(default)]
    pub shutdown_force_destroy: bool,
    /// The system datastores the host serves: measured, and checked writable.
    pub datastores: Vec<DatastoreDir>,
    /// Bridges the host's networks expect to exist (onboarding check).
    pub bridges: Vec<String>,
    /// A larger difference between the host's clock and oned's fails the clock check.
    pub max_clock_skew_ms: u64,
    /// The least important [`Log`] frame the agent sends.
    pub log_level: LogLevel,
    /// How the host's virtual network drivers (bridge, 802.1Q, VXLAN, security groups) work.
    #[serde(default)]
    pub network: NetworkConfig,
    /// Shared datastores the host must see as the frontend's file system (their token
    /// files are read back): the `SHARED_DS` capability. Never created nor measured by the
    /// agent; a system datastore listed in `datastores` and here is such a one (the others
    /// are the host's own disk: made when missing, measured).
    #[serde(default)]
    pub shared_datastores: Vec<SharedDatastore>,
    /// Set for the frontend agent (oned's own, for image and file datastores).
    #[serde(default)]
    pub frontend: Option<FrontendConfig>,
}

/// A shared datastore a host must see: its directory and the token the frontend wrote in
/// its [`crate::ds::TOKEN_FILE`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedDatastore {
    pub id: i64,
    pub path: String,
    pub token: String,
}

/// The frontend agent's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontendConfig {
    /// Where new datastores live, as directories named by id.
    pub datastores_root: String,
    /// The image and file datastores (byte streams may read and write in them).
    pub datastores: Vec<crate::ds::DsDir>,
    /// The upload staging area (byte streams write uploads there).
    pub staging_dir: String,
}

impl AgentConfig {
    /// The system datastores that are this host's own disk (not shared): made when missing,
    /// checked writable and measured by the host.
    pub fn local_datastores(&self) -> Vec<DatastoreDir> {
        self.datastores
            .iter()
            .filter(|d| !self.shared_datastores.iter().any(|s| s.id == d.id))
            .cloned()
            .collect()
    }
}

/// Settings of the host-side network drivers (oned's `[network]` section; OpenNebula keeps
/// them in the hosts' `OpenNebulaNetwork.conf`). A network may override the VXLAN ones with
/// `VXLAN_MC` in its template (inherited by its NICs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkConfig {
    /// Keep a bridge the driver made when the last NIC leaves it (OpenNebula's
    /// `:keep_empty_bridge:`); by default it is removed with its VLAN / VXLAN device.
    pub keep_empty_bridge: bool,
    /// MTU of an 802.1Q interface when the network sets none (`:vlan_mtu:`).
    pub vlan_mtu: u32,
    /// Base of the VXLAN multicast groups: the group of VNI n is this address + n
    /// (`:vxlan_mc:`).
    pub vxlan_mc: String,
    /// TTL of the VXLAN multicast packets (`:vxlan_ttl:`).
    pub vxlan_ttl: u32,
    /// UDP port of VXLAN; 0 leaves the kernel's default (8472), as OpenNebula does.
    pub vxlan_dstport: u16,
    /// Where the host's conntrack state reaches the bridge rules when the kernel has no
    /// bridge conntrack (nf_conntrack_bridge): this bit of the packet mark, set by an inet
    /// chain for established flows (br_netfilter). Never 0.
    pub sg_ct_mark: u32,
}

impl Default for NetworkConfig {
    fn default() -> NetworkConfig {
        NetworkConfig {
            keep_empty_bridge: false,
            vlan_mtu: 1500,
            vxlan_mc: "239.0.0.0".into(),
            vxlan_ttl: 16,
            vxlan_dstport: 0,
            sg_ct_mark: 0x1000_0000,
        }
    }
}

impl Default for AgentConfig {
    /// OpenNebula's defaults (its probe periods, SHUTDOWN_TIMEOUT, `one-` domains).
    fn default() -> AgentConfig {
        AgentConfig {
            monitoring: MonitoringPeriods::default(),
            keepalive: Keepalive::default(),
            libvirt_uri: "qemu:///system".into(),
            domain_type: None,
            domain_prefix: "one-".into(),
            shutdown_timeout_ms: 120_000,
            shutdown_force_destroy: false,
            datastores: Vec::new(),
            bridges: Vec::new(),
            max_clock_skew_ms: 5_000,
            log_level: LogLevel::Info,
            network: NetworkConfig::default(),
            shared_datastores: Vec::new(),
            frontend: None,
        }
    }
}

/// How often the agent pushes each kind of monitoring (fact sheet §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitoringPeriods {
    /// [`HostMonitoring::system`] (OpenNebula's SYSTEM_HOST).
    pub host_system_ms: u64,
    /// [`HostMonitoring::usage`] and datastores (MONITOR_HOST).
    pub host_usage_ms: u64,
    /// [`VmMonitoring`] (MONITOR_VM).
    pub vm_usage_ms: u64,
    /// How often domain states are looked at; changes go out at once (STATE_VM).
    pub vm_state_ms: u64,
    /// A full [`DomainStates`] report, besides the one on connect (SYNC_STATE_VM).
    pub vm_state_sync_ms: u64,
}

impl Default for MonitoringPeriods {
    fn default() -> MonitoringPeriods {
        MonitoringPeriods {
            host_system_ms: 600_000,
            host_usage_ms: 120_000,
            vm_usage_ms: 30_000,
            vm_state_ms: 5_000,
            vm_state_sync_ms: 180_000,
        }
    }
}

/// Liveness: a side that has received nothing for `timeout_ms` takes the session as dead.
/// A side pings when it has sent nothing for `interval_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keepalive {
    pub interval_ms: u64,
    pub timeout_ms: u64,
}

impl Default for Keepalive {
    fn default() -> Keepalive {
        Keepalive {
            interval_ms: 10_000,
            timeout_ms: 30_000,
        }
    }
}

/// A system datastore's directory on the host (`<datastore location>/<id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatastoreDir {
    pub id: i64,
    pub path: String,
}

/// The libvirt domain type: hardware virtualization or software emulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainType {
    Kvm,
    Qemu,
}

impl DomainType {
    /// The value of `<domain type='...'>`.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainType::Kvm => "kvm",
            DomainType::Qemu => "qemu",
        }
    }
}

/// Why a side refuses the session. Its shape never changes, like [`Hello`]'s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub code: RefuseCode,
    /// For the host's ERROR and the logs.
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefuseCode {
    /// The agent speaks another protocol version: oned installs its own build.
    ProtocolMismatch,
    /// Same protocol, another build: oned installs its own build.
    BuildMismatch,
    /// The agent cannot work with the Welcome's configuration.
    BadConfig,
    /// A code from another version.
    #[serde(other)]
    Other,
}

/// oned's decision on a [`Hello`], given its own agent build: only that exact build is
/// accepted (protocol first, so the reason names the deeper mismatch).
pub fn check_hello(hello: &Hello, own: &AgentVersion) -> Result<(), Refused> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(Refused {
            code: RefuseCode::ProtocolMismatch,
            reason: format!(
                "agent {} speaks protocol {}, oned speaks {}",
                hello.agent.version, hello.protocol_version, PROTOCOL_VERSION
            ),
        });
    }
    if hello.agent.build != own.build {
        return Err(Refused {
            code: RefuseCode::BuildMismatch,
            reason: format!(
                "agent build {} ({}) differs from oned's {} ({})",
                short(&hello.agent.build),
                hello.agent.version,
                short(&own.build),
                own.version
            ),
        });
    }
    Ok(())
}

/// The first 12 characters of a build id, enough to tell builds apart in a message.
fn short(build: &str) -> &str {
    match build.char_indices().nth(12) {
        Some((i, _)) => &build[..i],
        None => build,
    }
}

// ------------------------------------------------------------------------------------------
// Pushes
// ------------------------------------------------------------------------------------------

/// Host monitoring. Each part is present when it was measured for this push: `system` every
/// [`MonitoringPeriods::host_system_ms`], `usage` and `datastores` every `host_usage_ms`, all
/// three at connect.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostMonitoring {
    /// Seconds since the Unix epoch, the host's clock.
    pub timestamp: i64,
    pub system: Option<HostSystem>,
    pub usage: Option<HostUsage>,
    /// Space of the [`AgentConfig::datastores`] (HOST_SHARE/DATASTORES).
    pub datastores: Option<Vec<HostDs>>,
    /// What the host can serve (with `usage`): each becomes host template attributes.
    #[serde(default)]
    pub capabilities: Option<Vec<Capability>>,
}

/// One host capability (docs/node-agent.md, "Host capabilities"): the items of kind `name`
/// the host can serve, and those it cannot with the reason. oned writes them into the
/// host's TEMPLATE as `NAME="a b"`, `NAME_MISSING="c"` and `NAME_ERROR="c: reason"`; the
/// scheduler reads them there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    pub name: String,
    pub available: Vec<String>,
    pub missing: Vec<Missing>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    pub item: String,
    pub reason: String,
}

/// The capability names, with what their items are.
pub mod capabilities {
    /// Shared datastores (ids) the host sees as the frontend's file system.
    pub const SHARED_DS: &str = "SHARED_DS";
    /// Network drivers (VN_MAD names: `bridge`, `802.1Q`, `vxlan`, `fw`, `dummy`) the host's
    /// kernel can serve. Hosts whose agent plumbs no network (simulated) do not report it.
    pub const NETWORK_DRIVERS: &str = "NETWORK_DRIVERS";
}

/// What the host is (probe attributes for HOST/TEMPLATE; TOTALCPU and TOTALMEMORY also set
/// HOST_SHARE TOTAL_CPU / TOTAL_MEM).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSystem {
    /// HYPERVISOR ("kvm").
    pub hypervisor: String,
    /// TOTALCPU: cores × 100.
    pub totalcpu: i64,
    /// CPUSPEED in MHz.
    pub cpuspeed: i64,
    /// TOTALMEMORY in KB.
    pub totalmemory: i64,
    pub arch: String,
    pub modelname: String,
    pub hostname: String,
    /// Further probe attributes, by their template names (CGROUPS_VERSION, KVM_MACHINES, ...).
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

impl HostSystem {
    /// The attributes to write into HOST/TEMPLATE, by OpenNebula's names.
    pub fn probe_attributes(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("HYPERVISOR".to_string(), self.hypervisor.clone()),
            ("ARCH".to_string(), self.arch.clone()),
            ("MODELNAME".to_string(), self.modelname.clone()),
            ("CPUSPEED".to_string(), self.cpuspeed.to_string()),
            ("TOTALCPU".to_string(), self.totalcpu.to_string()),
            ("TOTALMEMORY".to_string(), self.totalmemory.to_string()),
            ("HOSTNAME".to_string(), self.hostname.clone()),
        ];
        v.extend(self.extra.iter().map(|(k, x)| (k.clone(), x.clone())));
        v
    }
}

/// What the host uses now (HOST/MONITORING).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostUsage {
    /// USEDMEMORY / FREEMEMORY in KB.
    pub usedmemory: i64,
    pub freememory: i64,
    /// USEDCPU / FREECPU in percent × cores.
    pub usedcpu: i64,
    pub freecpu: i64,
    /// NETRX / NETTX: bytes since boot over the host's interfaces.
    pub netrx: i64,
    pub nettx: i64,
}

impl HostUsage {
    /// The HOST/MONITORING document this sample makes.
    pub fn to_monitoring(&self, timestamp: i64) -> HostMonitoringDoc {
        HostMonitoringDoc {
            timestamp,
            free_cpu: self.freecpu,
            free_memory: self.freememory,
            used_cpu: self.usedcpu,
            used_memory: self.usedmemory,
            netrx: self.netrx,
            nettx: self.nettx,
        }
    }
}

/// Usage of the host's VMs (VM MONITORING), every [`MonitoringPeriods::vm_usage_ms`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VmMonitoring {
    pub timestamp: i64,
    pub vms: Vec<VmSample>,
}

/// One VM's sample. Counters are totals since the domain started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VmSample {
    pub id: i64,
    pub deploy_id: String,
    /// CPU: percent of one core (125.2 = one and a quarter cores); always finite.
    pub cpu: f64,
    /// MEMORY in KB.
    pub memory_kb: i64,
    pub netrx: i64,
    pub nettx: i64,
    pub diskrdbytes: i64,
    pub diskwrbytes: i64,
    pub diskrdiops: i64,
    pub diskwriops: i64,
    /// DISK_SIZE = [ID, SIZE] per disk.
    #[serde(default)]
    pub disk_sizes: Vec<DiskSize>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSize {
    pub id: i64,
    pub size_mb: i64,
}

/// Domain states. `full`: every domain the hypervisor has (sent on connect and every
/// [`MonitoringPeriods::vm_state_sync_ms`]): a VM oned places on this host and that is not
/// listed is missing. Otherwise only the domains whose state changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainStates {
    pub full: bool,
    pub domains: Vec<Domain>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// The VM, from the domain's name; [`WILD_VM`] for a domain that is not this cloud's.
    pub vm_id: i64,
    /// The domain's UUID (OpenNebula's KVM DEPLOY_ID).
    pub deploy_id: String,
    /// The libvirt name, `<prefix><vm id>`.
    pub name: String,
    pub state: DomainState,
}

/// A domain's state as oned needs it (fact sheet §8 maps them to VM states).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainState {
    /// Running, or about to (libvirt running, blocked, in shutdown, no state, paused by a
    /// save / migration / snapshot in progress).
    Running,
    /// Paused by a user, or suspended by the guest (OpenNebula: SUSPENDED).
    Paused,
    /// Defined but not running (OpenNebula: POWEROFF).
    Shutoff,
    /// The guest crashed (OpenNebula: UNKNOWN).
    Crashed,
    /// Was reported before and is gone (only in a change report; OpenNebula: POWEROFF).
    Missing,
}

impl DomainState {
    /// From libvirt's `virDomainState` and its reason: only a pause by a user is a pause,
    /// the others are steps of an operation that resumes or removes the domain.
    pub fn from_libvirt(state: u32, reason: i32) -> DomainState {
        const PAUSED: u32 = 3;
        const SHUTOFF: u32 = 5;
        const CRASHED: u32 = 6;
        const PMSUSPENDED: u32 = 7;
        const PAUSED_USER: i32 = 1;
        match state {
            PAUSED if reason == PAUSED_USER => DomainState::Paused,
            PMSUSPENDED => DomainState::Paused,
            SHUTOFF => DomainState::Shutoff,
            CRASHED => DomainState::Crashed,
            _ => DomainState::Running,
        }
    }
}

/// The VM a domain name `<prefix><id>` stands for, [`WILD_VM`] if it is not of that form
/// (the id written plainly: no sign, no leading zero).
pub fn vm_id_from_domain_name(prefix: &str, name: &str) -> i64 {
    let Some(digits) = name.strip_prefix(prefix) else {
        return WILD_VM;
    };
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return WILD_VM;
    }
    digits.parse().unwrap_or(WILD_VM)
}

/// What the onboarding checks found: sent after the Welcome, and as the answer to
/// [`Request::Probe`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardingReport {
    pub checks: Vec<Check>,
    /// The domain type the agent will use; `None` when libvirt could not be asked.
    pub domain_type: Option<DomainType>,
}

impl OnboardingReport {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The explanation for the host's ERROR when a check failed: "name: detail; ...".
    pub fn failure_message(&self) -> Option<String> {
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        (!failed.is_empty()).then(|| format!("onboarding checks failed: {}", failed.join("; ")))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// One of [`checks`]' names.
    pub name: String,
    pub ok: bool,
    /// What was found, or why it failed, in words an admin can act on.
    pub detail: String,
}

/// The names of the onboarding checks.
pub mod checks {
    /// libvirt answers at `libvirt_uri`.
    pub const LIBVIRT: &str = "libvirt";
    /// KVM works (a timed probe domain), or emulation only: fails only when the Welcome asks
    /// for `kvm` and it does not work.
    pub const KVM: &str = "kvm";
    /// The CPU model libvirt reports for the host.
    pub const CPU_MODEL: &str = "cpu_model";
    /// Every bridge of `bridges` exists.
    pub const BRIDGES: &str = "bridges";
    /// Every datastore directory exists (or could be created) and is writable.
    pub const DATASTORES: &str = "datastores";
    /// The host's clock is within `max_clock_skew_ms` of oned's.
    pub const CLOCK_SKEW: &str = "clock_skew";
    /// The frontend agent: qemu-img answers.
    pub const QEMU_IMG: &str = "qemu_img";
}

/// A message for oned's log (and the VM's log when `vm_id` is set).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log {
    pub level: LogLevel,
    pub message: String,
    #[serde(default)]
    pub vm_id: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

// ------------------------------------------------------------------------------------------
// Framing
// ------------------------------------------------------------------------------------------

/// A frame that cannot be written or read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The stream cannot be resynchronized after this: close the session.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
    /// The frame was consumed; the stream goes on with the next one.
    #[error("frame body is not a valid message: {0}")]
    BadBody(String),
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({have} of {need} bytes)")]
    Truncated { have: usize, need: usize },
    #[error("message cannot be encoded: {0}")]
    Encode(String),
}

/// Appends `msg` as one frame to `out`; on error `out` is left as it was.
pub fn encode_into<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    if let Err(e) = serde_json::to_writer(&mut *out, msg) {
        out.truncate(start);
        return Err(FrameError::Encode(e.to_string()));
    }
    let len = out.len() - start - HEADER_LEN;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(FrameError::TooLarge {
            len: len as u64,
            max: MAX_FRAME,
        });
    }
    // len <= MAX_FRAME < u32::MAX, so the cast keeps the value.
    out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// `msg` as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_into(msg, &mut out)?;
    Ok(out)
}

/// Incremental frame reader: [`feed`](Self::feed) it bytes as they arrive, then take frames
/// with [`next_message`](Self::next_message) until it answers `None`.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`.
    pos: usize,
    max: usize,
    /// Set by an oversized frame: the stream has lost its framing for good.
    broken: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> FrameDecoder {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::with_max(MAX_FRAME)
    }

    /// A decoder refusing bodies larger than `max` bytes.
    pub fn with_max(max: usize) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            pos: 0,
            max,
            broken: None,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.broken.is_some() {
            return;
        }
        // Drop what was read; what stays is at most one partial frame, so this moves little.
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next whole frame body, `None` until more bytes come. An oversized length fails at
    /// once (before its body is buffered) and for good.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let avail = &self.buf[self.pos..];
        let [a, b, c, d, ..] = *avail else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([a, b, c, d]);
        if u64::from(len) > self.max as u64 {
            let e = FrameError::TooLarge {
                len: u64::from(len),
                max: self.max,
            };
            self.broken = Some(e.clone());
            return Err(e);
        }
        let len = len as usize;
        if avail.len() - HEADER_LEN < len {
            return Ok(None);
        }
        let start = self.pos + HEADER_LEN;
        self.pos = start + len;
        Ok(Some(&self.buf[start..start + len]))
    }

    /// The next whole frame, decoded. A body that is not a `T` is consumed and reported as
    /// [`FrameError::BadBody`]; the following frames can still be read.
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        match self.next_frame()? {
            None => Ok(None),
            Some(body) => serde_json::from_slice(body)
                .map(Some)
                .map_err(|e| FrameError::BadBody(e.to_string())),
        }
    }

    /// At the end of the stream: an error if it stopped inside a frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let avail = &self.buf[self.pos..];
        match *avail {
            [] => Ok(()),
            [a, b, c, d, ..] => Err(FrameError::Truncated {
                have: avail.len(),
                need: HEADER_LEN + u32::from_be_bytes([a, b, c, d]) as usize,
            }),
            _ => Err(FrameError::Truncated {
                have: avail.len(),
                need: HEADER_LEN,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::DriverOp;
    use proptest::prelude::*;

    fn agent_version() -> AgentVersion {
        AgentVersion {
            version: "0.1.0".into(),
            build: "9f2c4e1a7b3d5f60aa11bb22cc33dd44".into(),
        }
    }

    fn report() -> OnboardingReport {
        OnboardingReport {
            checks: vec![
                Check {
                    name: checks::LIBVIRT.into(),
                    ok: true,
                    detail: "libvirt 9.0.0 at qemu:///system".into(),
                },
                Check {
                    name: checks::KVM.into(),
                    ok: true,
                    detail: "KVM guests hang: emulation only (qemu)".into(),
                },
                Check {
                    name: checks::DATASTORES.into(),
                    ok: false,
                    detail: "/var/lib/one/datastores/0 is not writable".into(),
                },
            ],
            domain_type: Some(DomainType::Qemu),
        }
    }

    fn domain(vm_id: i64, state: DomainState) -> Domain {
        Domain {
            vm_id,
            deploy_id: format!("5c3e9a1e-0000-4000-8000-{vm_id:012}"),
            name: format!("one-{vm_id}"),
            state,
        }
    }

    fn driver_request() -> DriverRequest {
        DriverRequest {
            op: DriverOp::Deploy,
            vm_id: 12,
            deploy_id: String::new(),
            host: "node1".into(),
            source_host: String::new(),
            ds_id: 0,
            vm_xml: "<VM><ID>12</ID><NAME>a \"q\" & é</NAME></VM>".into(),
            args: [("DISK_ID".to_string(), "1".to_string())].into(),
        }
    }

    /// One message of every kind oned sends.
    fn to_agent_samples() -> Vec<ToAgent> {
        let mut config = AgentConfig {
            domain_type: Some(DomainType::Kvm),
            ..AgentConfig::default()
        };
        config.datastores.push(DatastoreDir {
            id: 0,
            path: "/var/lib/one/datastores/0".into(),
        });
        config.bridges.push("br0".into());
        config.shared_datastores.push(SharedDatastore {
            id: 1,
            path: "/var/lib/one/datastores/1".into(),
            token: "one-rs datastore 1 cloud 0f3c".into(),
        });
        config.frontend = Some(FrontendConfig {
            datastores_root: "/var/lib/one/datastores".into(),
            datastores: vec![crate::ds::DsDir {
                id: 1,
                path: "/var/lib/one/datastores/1".into(),
            }],
            staging_dir: "/var/lib/one/upload".into(),
        });
        let req = |id, request| ToAgent::Request { id, request };
        vec![
            ToAgent::Welcome(Welcome {
                protocol_version: PROTOCOL_VERSION,
                host_id: 3,
                host_name: "node1".into(),
                time_ms: 1_700_000_000_123,
                config,
            }),
            ToAgent::Refused(Refused {
                code: RefuseCode::BuildMismatch,
                reason: "agent build 0 differs".into(),
            }),
            req(1, Request::Execute(driver_request())),
            req(2, Request::Probe),
            req(3, Request::ListDomains),
            req(
                4,
                Request::UpdateSecurityGroups(SecurityGroupUpdate {
                    vms: vec![VmDocument {
                        vm_id: 12,
                        vm_xml: "<VM><ID>12</ID></VM>".into(),
                    }],
                }),
            ),
            req(u64::MAX, Request::Shutdown),
            req(
                4,
                Request::Ds(crate::ds::DsRequest::Rm {
                    leftovers_only: false,
                    target: crate::ds::Target {
                        ds: crate::ds::DsDir {
                            id: 1,
                            path: "/var/lib/one/datastores/1".into(),
                        },
                        source: "/var/lib/one/datastores/1/abc".into(),
                    },
                }),
            ),
            req(5, Request::Configure(AgentConfig::default())),
            ToAgent::Ping(Beat {
                seq: 7,
                time_ms: 1_700_000_000_000,
            }),
            ToAgent::Pong(Beat {
                seq: 8,
                time_ms: -1,
            }),
        ]
    }

    /// One message of every kind the agent sends.
    fn from_agent_samples() -> Vec<FromAgent> {
        let reply = |id, reply| FromAgent::Reply { id, reply };
        vec![
            FromAgent::Hello(Hello::new(
                agent_version(),
                HostInfo {
                    hostname: "node1".into(),
                    os_id: "debian".into(),
                    os_version: "12".into(),
                    arch: "x86_64".into(),
                    kernel: "6.1.0-18-cloud-amd64".into(),
                    boot_id: "0d5e8c44-9a1b-4c8e-b0a4-3f1f0e6b2a77".into(),
                },
            )),
            FromAgent::Refused(Refused {
                code: RefuseCode::BadConfig,
                reason: "libvirt_uri is empty".into(),
            }),
            reply(
                1,
                Reply::Ok(DriverReply {
                    deploy_id: Some("5c3e9a1e-uuid".into()),
                    info: "domain started".into(),
                }),
            ),
            reply(2, Reply::Ok(DriverReply::default())),
            reply(
                3,
                Reply::Err(DriverError::new("virsh create: no such bridge")),
            ),
            reply(4, Reply::CheckReport(report())),
            reply(
                5,
                Reply::DomainList {
                    domains: vec![
                        domain(12, DomainState::Running),
                        domain(-1, DomainState::Shutoff),
                    ],
                },
            ),
            reply(6, Reply::ShuttingDown),
            reply(
                7,
                Reply::Ds(crate::ds::DsReply::Stat {
                    size_mb: 3,
                    format: "qcow2".into(),
                }),
            ),
            reply(8, Reply::Configured),
            FromAgent::HostMonitoring(HostMonitoring {
                timestamp: 1_700_000_000,
                system: Some(HostSystem {
                    hypervisor: "kvm".into(),
                    totalcpu: 200,
                    cpuspeed: 2_400,
                    totalmemory: 24_000_000,
                    arch: "x86_64".into(),
                    modelname: "Intel(R) Xeon(R) CPU @ 2.40GHz".into(),
                    hostname: "node1".into(),
                    extra: [("CGROUPS_VERSION".to_string(), "2".to_string())].into(),
                }),
                usage: Some(HostUsage {
                    usedmemory: 1_000_000,
                    freememory: 23_000_000,
                    usedcpu: 12,
                    freecpu: 188,
                    netrx: 1 << 40,
                    nettx: 5,
                }),
                datastores: Some(vec![HostDs {
                    id: 0,
                    total_mb: 100_000,
                    free_mb: 60_000,
                    used_mb: 40_000,
                }]),
                capabilities: Some(vec![Capability {
                    name: capabilities::SHARED_DS.into(),
                    available: vec!["0".into(), "1".into()],
                    missing: vec![Missing {
                        item: "100".into(),
                        reason: "/var/lib/one/datastores/100 does not exist".into(),
                    }],
                }]),
            }),
            FromAgent::HostMonitoring(HostMonitoring {
                timestamp: 1_700_000_120,
                ..HostMonitoring::default()
            }),
            FromAgent::VmMonitoring(VmMonitoring {
                timestamp: 1_700_000_030,
                vms: vec![VmSample {
                    id: 12,
                    deploy_id: "5c3e9a1e-uuid".into(),
                    cpu: 125.25,
                    memory_kb: 262_144,
                    netrx: 10,
                    nettx: 20,
                    diskrdbytes: 30,
                    diskwrbytes: 40,
                    diskrdiops: 5,
                    diskwriops: 6,
                    disk_sizes: vec![DiskSize { id: 0, size_mb: 64 }],
                }],
            }),
            FromAgent::DomainStates(DomainStates {
                full: true,
                domains: vec![
                    domain(12, DomainState::Paused),
                    domain(13, DomainState::Crashed),
                ],
            }),
            FromAgent::DomainStates(DomainStates {
                full: false,
                domains: vec![domain(14, DomainState::Missing)],
            }),
            FromAgent::OnboardingReport(report()),
            FromAgent::Log(Log {
                level: LogLevel::Warn,
                message: "shutdown timed out, destroying".into(),
                vm_id: Some(12),
            }),
            FromAgent::Log(Log {
                level: LogLevel::Debug,
                message: String::new(),
                vm_id: None,
            }),
            FromAgent::Ping(Beat { seq: 1, time_ms: 2 }),
            FromAgent::Pong(Beat { seq: 7, time_ms: 3 }),
        ]
    }

    // Exhaustive matches: a new message kind does not compile until the samples cover it.
    fn to_agent_kind(m: &ToAgent) -> &'static str {
        match m {
            ToAgent::Welcome(_) => "welcome",
            ToAgent::Refused(_) => "refused",
            ToAgent::Request { request, .. } => match request {
                Request::Execute(_) => "execute",
                Request::Probe => "probe",
                Request::ListDomains => "list_domains",
                Request::UpdateSecurityGroups(_) => "update_security_groups",
                Request::Shutdown => "shutdown",
                Request::Ds(_) => "ds",
                Request::Configure(_) => "configure",
            },
            ToAgent::Ping(_) => "ping",
            ToAgent::Pong(_) => "pong",
        }
    }

    fn from_agent_kind(m: &FromAgent) -> &'static str {
        match m {
            FromAgent::Reply { reply, .. } => match reply {
                Reply::Ok(_) => "ok",
                Reply::Err(_) => "err",
                Reply::CheckReport(_) => "check_report",
                Reply::DomainList { .. } => "domain_list",
                Reply::ShuttingDown => "shutting_down",
                Reply::Ds(_) => "ds",
                Reply::Configured => "configured",
            },
            other => other.kind(),
        }
    }

    fn decode_all<T: DeserializeOwned>(dec: &mut FrameDecoder, out: &mut Vec<T>) {
        while let Some(m) = dec.next_message::<T>().expect("valid frame") {
            out.push(m);
        }
    }

    fn stream<T: Serialize>(msgs: &[T]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            encode_into(m, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn every_frame_round_trips() {
        let to = to_agent_samples();
        let kinds: std::collections::BTreeSet<_> = to.iter().map(to_agent_kind).collect();
        assert_eq!(kinds.len(), 11, "a ToAgent kind has no sample: {kinds:?}");
        for m in &to {
            let bytes = encode(m).unwrap();
            let mut dec = FrameDecoder::new();
            dec.feed(&bytes);
            assert_eq!(dec.next_message::<ToAgent>().unwrap().as_ref(), Some(m));
            assert_eq!(dec.next_message::<ToAgent>().unwrap(), None);
            dec.finish().unwrap();
        }
        let from = from_agent_samples();
        let kinds: std::collections::BTreeSet<_> = from.iter().map(from_agent_kind).collect();
        assert_eq!(kinds.len(), 16, "a FromAgent kind has no sample: {kinds:?}");
        for m in &from {
            let mut dec = FrameDecoder::new();
            dec.feed(&encode(m).unwrap());
            assert_eq!(dec.next_message::<FromAgent>().unwrap().as_ref(), Some(m));
            assert_eq!(dec.buffered(), 0);
        }
    }

    #[test]
    fn header_is_the_big_endian_body_length() {
        let bytes = encode(&ToAgent::Request {
            id: 9,
            request: Request::Probe,
        })
        .unwrap();
        let body = br#"{"type":"request","id":9,"request":{"kind":"probe"}}"#;
        assert_eq!(&bytes[..4], &(body.len() as u32).to_be_bytes());
        assert_eq!(&bytes[4..], body);
    }

    /// Hello and Refused are what two different versions must still understand: their JSON
    /// is pinned here.
    #[test]
    fn hello_and_refused_keep_their_shape() {
        let hello = FromAgent::Hello(Hello::new(agent_version(), HostInfo::default()));
        assert_eq!(
            serde_json::to_string(&hello).unwrap(),
            r#"{"type":"hello","protocol_version":1,"agent":{"version":"0.1.0","build":"9f2c4e1a7b3d5f60aa11bb22cc33dd44"},"host":{"hostname":"","os_id":"","os_version":"","arch":"","kernel":"","boot_id":""}}"#
        );
        // A Hello from another version: unknown fields ignored, missing host info defaulted.
        let other = r#"{"type":"hello","protocol_version":7,"agent":{"version":"9.0.0","build":"x","sig":"y"},"extra":[1]}"#;
        let FromAgent::Hello(h) = serde_json::from_str::<FromAgent>(other).unwrap() else {
            panic!("not a hello");
        };
        assert_eq!(h.protocol_version, 7);
        assert_eq!(h.host, HostInfo::default());

        let refused = ToAgent::Refused(Refused {
            code: RefuseCode::ProtocolMismatch,
            reason: "r".into(),
        });
        assert_eq!(
            serde_json::to_string(&refused).unwrap(),
            r#"{"type":"refused","code":"protocol_mismatch","reason":"r"}"#
        );
        let newer = r#"{"type":"refused","code":"quota_exceeded","reason":"r"}"#;
        let ToAgent::Refused(r) = serde_json::from_str::<ToAgent>(newer).unwrap() else {
            panic!("not refused");
        };
        assert_eq!(r.code, RefuseCode::Other);
    }

    #[test]
    fn check_hello_accepts_only_the_same_protocol_and_build() {
        let own = agent_version();
        let mut hello = Hello::new(own.clone(), HostInfo::default());
        assert_eq!(check_hello(&hello, &own), Ok(()));

        hello.agent.build = "0123456789abcdef0123".into();
        let r = check_hello(&hello, &own).unwrap_err();
        assert_eq!(r.code, RefuseCode::BuildMismatch);
        assert_eq!(
            r.reason,
            "agent build 0123456789ab (0.1.0) differs from oned's 9f2c4e1a7b3d (0.1.0)"
        );

        hello.protocol_version = PROTOCOL_VERSION + 1;
        let r = check_hello(&hello, &own).unwrap_err();
        assert_eq!(r.code, RefuseCode::ProtocolMismatch);
        assert!(
            r.reason.contains("protocol 2, oned speaks 1"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn decoder_handles_a_split_at_every_byte() {
        let msgs = from_agent_samples();
        let bytes = stream(&msgs);
        for cut in 0..=bytes.len() {
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            dec.feed(&bytes[..cut]);
            decode_all::<FromAgent>(&mut dec, &mut got);
            dec.feed(&bytes[cut..]);
            decode_all(&mut dec, &mut got);
            assert_eq!(got, msgs, "cut at {cut}");
            dec.finish().unwrap();
            assert_eq!(dec.buffered(), 0);
        }
    }

    #[test]
    fn decoder_takes_one_byte_at_a_time_and_many_frames_at_once() {
        let msgs = to_agent_samples();
        let bytes = stream(&msgs);
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        for b in &bytes {
            dec.feed(std::slice::from_ref(b));
            decode_all::<ToAgent>(&mut dec, &mut got);
        }
        assert_eq!(got, msgs);

        let mut dec = FrameDecoder::new();
        dec.feed(&bytes);
        let mut got = Vec::new();
        decode_all::<ToAgent>(&mut dec, &mut got);
        assert_eq!(got, msgs);
    }

    #[test]
    fn oversize_fails_at_the_header_and_for_good() {
        let mut dec = FrameDecoder::with_max(16);
        // The header alone says too much: no need to wait for (or buffer) the body.
        dec.feed(&17u32.to_be_bytes());
        let e = dec.next_frame().unwrap_err();
        assert_eq!(e, FrameError::TooLarge { len: 17, max: 16 });
        assert_eq!(
            e.to_string(),
            "frame of 17 bytes exceeds the limit of 16 bytes"
        );
        dec.feed(&encode(&FromAgent::Ping(Beat::default())).unwrap());
        assert_eq!(dec.next_frame().unwrap_err(), e);
        assert_eq!(dec.finish().unwrap_err(), e);

        // A frame of exactly the limit is fine.
        let mut dec = FrameDecoder::with_max(2);
        dec.feed(&[0, 0, 0, 2, b'{', b'}']);
        assert_eq!(dec.next_frame().unwrap(), Some(&b"{}"[..]));

        // The default limit, from a garbage header.
        let mut dec = FrameDecoder::new();
        dec.feed(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            dec.next_frame(),
            Err(FrameError::TooLarge {
                len: 0xffff_ffff,
                max: MAX_FRAME
            })
        ));
    }

    #[test]
    fn encoder_refuses_oversize() {
        let big = FromAgent::Log(Log {
            level: LogLevel::Info,
            message: "x".repeat(MAX_FRAME),
            vm_id: None,
        });
        let mut out = vec![1, 2, 3];
        assert!(matches!(
            encode_into(&big, &mut out),
            Err(FrameError::TooLarge { max: MAX_FRAME, .. })
        ));
        assert_eq!(
            out,
            [1, 2, 3],
            "a failed encode leaves the buffer as it was"
        );
    }

    #[test]
    fn bad_body_is_skipped_and_the_stream_goes_on() {
        let ping = FromAgent::Ping(Beat { seq: 1, time_ms: 0 });
        let mut bytes = Vec::new();
        for body in [&b"not json"[..], br#"{"type":"no_such_frame"}"#, b"", b"{}"] {
            bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
            bytes.extend_from_slice(body);
        }
        encode_into(&ping, &mut bytes).unwrap();
        let mut dec = FrameDecoder::new();
        dec.feed(&bytes);
        for _ in 0..4 {
            assert!(matches!(
                dec.next_message::<FromAgent>(),
                Err(FrameError::BadBody(_))
            ));
        }
        assert_eq!(dec.next_message::<FromAgent>().unwrap(), Some(ping));
        assert_eq!(dec.next_message::<FromAgent>().unwrap(), None);
    }

    #[test]
    fn truncated_stream_is_reported_at_the_end() {
        let bytes = encode(&ToAgent::Ping(Beat::default())).unwrap();
        let mut dec = FrameDecoder::new();
        dec.feed(&bytes[..2]);
        assert_eq!(dec.next_frame().unwrap(), None);
        assert_eq!(
            dec.finish().unwrap_err(),
            FrameError::Truncated { have: 2, need: 4 }
        );
        dec.feed(&bytes[2..bytes.len() - 1]);
        assert_eq!(dec.next_frame().unwrap(), None);
        assert_eq!(
            dec.finish().unwrap_err(),
            FrameError::Truncated {
                have: bytes.len() - 1,
                need: bytes.len()
            }
        );
        dec.feed(&bytes[bytes.len() - 1..]);
        assert!(dec.next_frame().unwrap().is_some());
        dec.finish().unwrap();
    }

    #[test]
    fn domain_names_and_libvirt_states() {
        assert_eq!(vm_id_from_domain_name("one-", "one-0"), 0);
        assert_eq!(vm_id_from_domain_name("one-", "one-12"), 12);
        assert_eq!(vm_id_from_domain_name("t7-one-", "t7-one-3"), 3);
        for wild in [
            "one-",
            "one-x",
            "one-012",
            "one--1",
            "one-+1",
            "win10",
            "one-1 ",
            "one-99999999999999999999",
        ] {
            assert_eq!(vm_id_from_domain_name("one-", wild), WILD_VM, "{wild}");
        }
        assert_eq!(vm_id_from_domain_name("t7-one-", "one-3"), WILD_VM);

        use DomainState as S;
        assert_eq!(S::from_libvirt(1, 1), S::Running);
        assert_eq!(S::from_libvirt(2, 0), S::Running); // blocked
        assert_eq!(S::from_libvirt(4, 1), S::Running); // in shutdown
        assert_eq!(S::from_libvirt(0, 0), S::Running); // no state
        assert_eq!(S::from_libvirt(3, 1), S::Paused); // paused by a user
        assert_eq!(S::from_libvirt(3, 3), S::Running); // paused while saving
        assert_eq!(S::from_libvirt(7, 0), S::Paused); // pmsuspended
        assert_eq!(S::from_libvirt(5, 1), S::Shutoff);
        assert_eq!(S::from_libvirt(6, 0), S::Crashed);
    }

    #[test]
    fn report_and_samples_map_to_opennebula_attributes() {
        let r = report();
        assert!(!r.ok());
        assert_eq!(
            r.failure_message().as_deref(),
            Some("onboarding checks failed: datastores: /var/lib/one/datastores/0 is not writable")
        );
        let good = OnboardingReport {
            checks: r.checks.into_iter().filter(|c| c.ok).collect(),
            domain_type: Some(DomainType::Kvm),
        };
        assert!(good.ok());
        assert_eq!(good.failure_message(), None);

        let usage = HostUsage {
            usedmemory: 1,
            freememory: 2,
            usedcpu: 3,
            freecpu: 4,
            netrx: 5,
            nettx: 6,
        };
        assert_eq!(
            usage.to_monitoring(99),
            HostMonitoringDoc {
                timestamp: 99,
                free_cpu: 4,
                free_memory: 2,
                used_cpu: 3,
                used_memory: 1,
                netrx: 5,
                nettx: 6,
            }
        );
        let FromAgent::HostMonitoring(HostMonitoring {
            system: Some(sys), ..
        }) = &from_agent_samples()[10]
        else {
            panic!("sample 10 is the full host monitoring");
        };
        let attrs = sys.probe_attributes();
        let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("TOTALCPU"), Some("200"));
        assert_eq!(get("TOTALMEMORY"), Some("24000000"));
        assert_eq!(get("HYPERVISOR"), Some("kvm"));
        assert_eq!(get("CGROUPS_VERSION"), Some("2"));
        assert_eq!(DomainType::Qemu.as_str(), "qemu");
    }

    proptest! {
        /// Any bytes, cut anywhere: the decoder never panics, and once it fails for good it
        /// keeps failing.
        #[test]
        fn decoder_survives_garbage(
            framed in proptest::collection::vec((0u32..80, proptest::collection::vec(any::<u8>(), 0..80)), 0..6),
            tail in proptest::collection::vec(any::<u8>(), 0..200),
            cuts in proptest::collection::vec(0usize..800, 0..6),
        ) {
            // Small headers with random bodies (often of another length than they announce),
            // then raw bytes, which mostly announce oversized frames.
            let mut bytes = Vec::new();
            for (len, body) in &framed {
                bytes.extend_from_slice(&len.to_be_bytes());
                bytes.extend_from_slice(body);
            }
            bytes.extend_from_slice(&tail);
            let mut dec = FrameDecoder::with_max(64);
            let mut cuts = cuts;
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let mut at = 0;
            let mut broken = false;
            for c in cuts {
                let c = c.min(bytes.len());
                dec.feed(&bytes[at..c]);
                at = c;
                loop {
                    match dec.next_message::<FromAgent>() {
                        Ok(Some(_)) | Err(FrameError::BadBody(_)) => {}
                        Ok(None) => break,
                        Err(FrameError::TooLarge { .. }) => { broken = true; break }
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
            }
            if broken {
                prop_assert!(dec.finish().is_err());
            }
        }

        /// Messages of any content, fed in any chunks, come out as they went in.
        #[test]
        fn any_logs_in_any_chunks(
            msgs in proptest::collection::vec((any::<String>(), any::<Option<i64>>()), 0..8),
            chunk in 1usize..64,
        ) {
            let msgs: Vec<FromAgent> = msgs
                .into_iter()
                .map(|(message, vm_id)| FromAgent::Log(Log { level: LogLevel::Error, message, vm_id }))
                .collect();
            let bytes = stream(&msgs);
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            for part in bytes.chunks(chunk) {
                dec.feed(part);
                decode_all::<FromAgent>(&mut dec, &mut got);
            }
            prop_assert_eq!(got, msgs);
            prop_assert!(dec.finish().is_ok());
        }
    }
}
