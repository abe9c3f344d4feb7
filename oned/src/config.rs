//! oned's configuration: typed, with defaults in code; `etc/oned.toml` documents every option.

use serde::Deserialize;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the XML-RPC API listens on. Port 0 picks a free port (see `one_endpoint`).
    pub listen: String,
    /// Directory for the database, credentials, datastores and VM files.
    pub data_dir: PathBuf,
    /// Database URL; empty means SQLite at `<data_dir>/one.db`.
    pub db: String,
    /// SQLite only: fsync every commit (`synchronous=FULL`) so commits survive power loss.
    /// The default (`NORMAL` in WAL mode) survives a killed process, not a power cut.
    pub db_sync_full: bool,
    /// Also log to stderr (always logs to `<data_dir>/oned.log`).
    pub log_stderr: bool,
    /// tracing filter, e.g. `info` or `oned=debug`.
    pub log_level: String,
    /// How long a verified session is remembered, in seconds.
    pub session_cache_seconds: u64,
    /// Largest XML-RPC request accepted, in bytes.
    pub max_request_bytes: usize,
    /// Permissions of new objects, as an octal umask (177 → 600, as OpenNebula).
    pub default_umask: String,
    /// Order of pool listings by id: "DESC" (newest first, OpenNebula's default) or "ASC". A
    /// user's or group's template can override it: `OPENNEBULA=[API_LIST_ORDER="ASC"]`.
    pub api_list_order: String,
    /// Prefix of the device names given to disks without TARGET/DEV_PREFIX.
    pub default_device_prefix: String,
    /// Prefix of generated MAC addresses (two bytes).
    pub mac_prefix: String,
    /// The VM lifecycle: driver timeouts.
    pub lcm: LcmConfig,
    /// The simulated `dummy` hosts and drivers.
    pub dummy: DummyConfig,
    /// Host monitoring periods.
    pub monitoring: MonitoringConfig,
    /// The Prometheus endpoint `GET /metrics`.
    pub metrics: MetricsConfig,
    /// State and API hooks.
    pub hooks: HooksConfig,
    /// Hypervisor hosts reached through the node agent (IM_MAD / VM_MAD `kvm`).
    pub hosts: HostsConfig,
    /// Host failure recovery (docs/host-recovery.md).
    pub recovery: RecoveryConfig,
    /// Virtual networks: automatic VLAN / VXLAN ids, the hosts' network drivers, security
    /// group updates (docs/networking.md).
    pub network: NetworkConfig,
    /// Datastores, images, uploads and the frontend agent (docs/storage.md).
    pub storage: StorageConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// First id of the automatic 802.1Q / Open vSwitch VLAN ids (OpenNebula's
    /// VLAN_IDS/START); network n tries START + n mod (4095 - START) first.
    pub vlan_ids_start: i64,
    /// Ids never given automatically: "a, b, c:d" (VLAN_IDS/RESERVED).
    pub vlan_ids_reserved: String,
    /// First automatic VNI of VXLAN networks (VXLAN_IDS/START): network n gets START + n.
    pub vxlan_ids_start: i64,
    /// Keep a bridge a driver made when its last NIC leaves.
    pub keep_empty_bridge: bool,
    /// MTU of an 802.1Q interface when the network sets none.
    pub vlan_mtu: u32,
    /// Base of the VXLAN multicast groups (group of VNI n = base + n); a network's VXLAN_MC
    /// overrides it.
    pub vxlan_mc: String,
    /// TTL of the VXLAN multicast packets.
    pub vxlan_ttl: u32,
    /// VXLAN UDP port; 0: the kernel's default (8472), as OpenNebula.
    pub vxlan_dstport: u16,
    /// The packet-mark bit through which conntrack reaches the bridge rules on hosts without
    /// bridge conntrack (br_netfilter). Change it if the hosts use that bit otherwise.
    pub sg_ct_mark: u32,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        let h = one_proto::agent::NetworkConfig::default();
        NetworkConfig {
            vlan_ids_start: 2,
            vlan_ids_reserved: "0, 1, 4095".into(),
            vxlan_ids_start: 2,
            keep_empty_bridge: h.keep_empty_bridge,
            vlan_mtu: h.vlan_mtu,
            vxlan_mc: h.vxlan_mc,
            vxlan_ttl: h.vxlan_ttl,
            vxlan_dstport: h.vxlan_dstport,
            sg_ct_mark: h.sg_ct_mark,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Where new datastores live, as directories named by id (`/var/lib/one/datastores` in
    /// a packaged install, where an NFS export is mounted); empty: `<data_dir>/datastores`.
    pub datastores_root: PathBuf,
    /// The upload staging area (`POST /upload`); empty: `<data_dir>/upload`.
    pub upload_dir: PathBuf,
    /// Largest upload accepted, in bytes (independent of `max_request_bytes`).
    pub upload_max_bytes: u64,
    /// Seconds an upload token stays valid when no image uses it.
    pub upload_token_seconds: u64,
    /// Largest image downloaded from a URL, in bytes.
    pub url_max_bytes: u64,
    /// Seconds to connect to a URL's server and get its answer's headers.
    pub url_connect_timeout_seconds: u64,
    /// A download that receives nothing for this many seconds has stalled and fails.
    pub url_stall_timeout_seconds: u64,
    /// Seconds a datastore operation (a copy of a large image) may take.
    pub operation_timeout_seconds: u64,
    /// RESTRICTED_DIRS of datastores that do not set it (OpenNebula's default).
    pub restricted_dirs: String,
    /// fsync every image copied into a datastore before it is READY (it then survives a
    /// power cut; without it, as `cp` and OpenNebula's drivers, a killed oned or agent
    /// loses nothing but a power cut may).
    pub sync_images: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            datastores_root: PathBuf::new(),
            upload_dir: PathBuf::new(),
            upload_max_bytes: 64 << 30,
            upload_token_seconds: 3600,
            url_max_bytes: 64 << 30,
            url_connect_timeout_seconds: 30,
            url_stall_timeout_seconds: 60,
            operation_timeout_seconds: 6 * 3600,
            restricted_dirs: "/etc".into(),
            sync_images: false,
        }
    }
}

/// Highest 802.1Q VLAN id.
pub const VLAN_ID_MAX: i64 = 4095;
/// Highest VXLAN network identifier (24 bits).
pub const VNI_MAX: i64 = 16_777_215;

impl NetworkConfig {
    /// The reserved VLAN ids (ranges "a:b" included).
    pub fn reserved_vlan_ids(&self) -> Result<Vec<(i64, i64)>, String> {
        let bad = |p: &str| {
            format!(
                "network.vlan_ids_reserved: {p:?} is not a VLAN id (0-{VLAN_ID_MAX}) or range a:b"
            )
        };
        self.vlan_ids_reserved
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (a, b) = p.split_once(':').unwrap_or((p, p));
                let a: i64 = a.trim().parse().map_err(|_| bad(p))?;
                let b: i64 = b.trim().parse().map_err(|_| bad(p))?;
                if !(0..=VLAN_ID_MAX).contains(&a) || !(a..=VLAN_ID_MAX).contains(&b) {
                    return Err(bad(p));
                }
                Ok((a, b))
            })
            .collect()
    }

    /// What the agents get (AgentConfig.network).
    pub fn for_hosts(&self) -> one_proto::agent::NetworkConfig {
        one_proto::agent::NetworkConfig {
            keep_empty_bridge: self.keep_empty_bridge,
            vlan_mtu: self.vlan_mtu,
            vxlan_mc: self.vxlan_mc.clone(),
            vxlan_ttl: self.vxlan_ttl,
            vxlan_dstport: self.vxlan_dstport,
            sg_ct_mark: self.sg_ct_mark,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..VLAN_ID_MAX).contains(&self.vlan_ids_start) {
            return Err(format!(
                "network.vlan_ids_start {} must be from 1 to {}",
                self.vlan_ids_start,
                VLAN_ID_MAX - 1
            ));
        }
        self.reserved_vlan_ids()?;
        if !(0..=VNI_MAX).contains(&self.vxlan_ids_start) {
            return Err(format!(
                "network.vxlan_ids_start {} must be from 0 to {VNI_MAX}",
                self.vxlan_ids_start
            ));
        }
        let mc: std::net::Ipv4Addr = self.vxlan_mc.parse().map_err(|_| {
            format!(
                "network.vxlan_mc {:?} is not an IPv4 address",
                self.vxlan_mc
            )
        })?;
        if !mc.is_multicast() {
            return Err(format!(
                "network.vxlan_mc {mc} is not a multicast address (224.0.0.0/4)"
            ));
        }
        if self.vlan_mtu < 68 {
            return Err(format!("network.vlan_mtu {} is below 68", self.vlan_mtu));
        }
        if self.sg_ct_mark.count_ones() != 1 {
            return Err(format!(
                "network.sg_ct_mark {:#x} must be exactly one bit",
                self.sg_ct_mark
            ));
        }
        Ok(())
    }
}

impl StorageConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("upload_max_bytes", self.upload_max_bytes),
            ("upload_token_seconds", self.upload_token_seconds),
            ("url_max_bytes", self.url_max_bytes),
            (
                "url_connect_timeout_seconds",
                self.url_connect_timeout_seconds,
            ),
            ("url_stall_timeout_seconds", self.url_stall_timeout_seconds),
            ("operation_timeout_seconds", self.operation_timeout_seconds),
        ] {
            if v == 0 {
                return Err(format!("storage.{name} must be above 0"));
            }
        }
        for (name, p) in [
            ("datastores_root", &self.datastores_root),
            ("upload_dir", &self.upload_dir),
        ] {
            if !p.as_os_str().is_empty() && !p.is_absolute() {
                return Err(format!(
                    "storage.{name} must be an absolute path, not {}",
                    p.display()
                ));
            }
        }
        Ok(())
    }

    /// Where new datastores live.
    pub fn datastores_root(&self, data_dir: &Path) -> PathBuf {
        if self.datastores_root.as_os_str().is_empty() {
            data_dir.join("datastores")
        } else {
            self.datastores_root.clone()
        }
    }

    /// The upload staging area.
    pub fn upload_dir(&self, data_dir: &Path) -> PathBuf {
        if self.upload_dir.as_os_str().is_empty() {
            data_dir.join("upload")
        } else {
            self.upload_dir.clone()
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LcmConfig {
    /// Seconds a driver operation may take before it counts as failed.
    pub driver_timeout_seconds: u64,
    /// Seconds a graceful shutdown (ACPI power button) waits for the guest to power off.
    pub shutdown_timeout_seconds: u64,
    /// After that: `false` (OpenNebula's default) the shutdown fails and the VM goes back to
    /// RUNNING; `true` the domain is destroyed (OpenNebula's FORCE_DESTROY). A host's or a
    /// VM's SHUTDOWN_FORCE_DESTROY (and SHUTDOWN_TIMEOUT) override both.
    pub shutdown_force_destroy: bool,
}

impl Default for LcmConfig {
    fn default() -> Self {
        LcmConfig {
            driver_timeout_seconds: 300,
            shutdown_timeout_seconds: 120,
            shutdown_force_destroy: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DummyConfig {
    /// Milliseconds every dummy driver operation takes (a host's DUMMY_DELAY overrides).
    pub delay_ms: u64,
    /// Capacity a dummy host reports: TOTALCPU (100 per core); DUMMY_TOTALCPU overrides.
    pub total_cpu: i64,
    /// TOTALMEMORY in KB; DUMMY_TOTALMEMORY overrides.
    pub total_memory_kb: i64,
    /// CPUSPEED in MHz (MODELNAME says it too: "Dummy(R) Core @ 3.2GHz").
    pub cpu_speed_mhz: i64,
}

impl Default for DummyConfig {
    fn default() -> Self {
        DummyConfig {
            delay_ms: 0,
            total_cpu: 800,
            total_memory_kb: 16 * 1024 * 1024,
            cpu_speed_mhz: 3200,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitoringConfig {
    /// Seconds between two monitoring rounds of dummy hosts (the first comes at once, and a
    /// new host is monitored at once). Datastores not measured yet are retried this often.
    pub dummy_interval_seconds: f64,
    /// Seconds between two measurements of every datastore (OpenNebula's
    /// MONITORING_INTERVAL_DATASTORE); the first comes at start.
    pub datastore_interval_seconds: f64,
    /// Seconds a host / VM monitoring sample is kept in the history (OpenNebula's
    /// HOST_MONITORING_EXPIRATION_TIME / VM_MONITORING_EXPIRATION_TIME).
    pub host_monitoring_expiration_seconds: i64,
    pub vm_monitoring_expiration_seconds: i64,
    /// Most samples kept per host and per VM (memory bound: about 100 bytes each).
    pub history_max_samples: usize,
    /// A sample closer than this to the last one kept for the same object is not kept in
    /// the history (it still is the object's current MONITORING).
    pub history_min_spacing_seconds: i64,
    /// Seconds between two writes of the history to SQL (one transaction each); a killed
    /// oned loses at most this much history.
    pub history_flush_seconds: f64,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            dummy_interval_seconds: 5.0,
            datastore_interval_seconds: 300.0,
            host_monitoring_expiration_seconds: 43_200,
            vm_monitoring_expiration_seconds: 43_200,
            history_max_samples: 360,
            history_min_spacing_seconds: 30,
            history_flush_seconds: 30.0,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` (Prometheus text format) on the API listener.
    pub enabled: bool,
    /// Serve it without credentials even when oned listens on a non-loopback address.
    /// Otherwise such requests need HTTP Basic credentials of a oneadmin-group user.
    pub public: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            public: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// Directory relative COMMANDs are looked up in; empty: `<data_dir>/hooks`.
    pub dir: PathBuf,
    /// Execution records kept per hook (OpenNebula's LOG_RETENTION).
    pub log_retention: usize,
    /// Seconds a hook command may run before it is killed (a hook's TIMEOUT overrides).
    pub timeout_seconds: u64,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            dir: PathBuf::new(),
            log_retention: 20,
            timeout_seconds: 60,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostsConfig {
    /// The `one-node-agent` binary oned starts for local hosts (and ships to remote ones);
    /// empty: the one next to the oned binary.
    pub agent_path: PathBuf,
    /// Test facility: start every agent with `--simulate` (domains simulated, no libvirt).
    /// A host's `AGENT_SIMULATE="YES"` does the same for that host alone.
    pub simulate_agents: bool,
    /// First delay before connecting again after a session is lost or a connection failed;
    /// it doubles at each failure up to `reconnect_max_seconds`.
    pub reconnect_initial_seconds: f64,
    pub reconnect_max_seconds: f64,
    /// Seconds without a session before the host goes to ERROR and its RUNNING VMs to UNKNOWN.
    pub error_after_seconds: f64,
    /// Seconds to wait for the agent's hello once it is started.
    pub hello_timeout_seconds: f64,
    /// Seconds a request that is not a driver operation (probe, list_domains) may take;
    /// driver operations use `lcm.driver_timeout_seconds`.
    pub request_timeout_seconds: f64,
    /// libvirt connection URI the agents use.
    pub libvirt_uri: String,
    /// Domain type: "kvm", "qemu" (software emulation) or "detect" (kvm where a timed probe
    /// shows KVM works). A host's DOMAIN_TYPE overrides.
    pub domain_type: String,
    /// Domains are named `<prefix><vm id>`; other names are not this cloud's.
    pub domain_prefix: String,
    /// Monitoring periods sent to the agents (OpenNebula's probe periods).
    pub host_system_seconds: f64,
    pub host_usage_seconds: f64,
    pub vm_usage_seconds: f64,
    pub vm_state_seconds: f64,
    pub vm_state_sync_seconds: f64,
    /// Keepalive: a side that sent nothing for the interval pings; one that heard nothing
    /// for the timeout takes the session as dead.
    pub keepalive_interval_seconds: f64,
    pub keepalive_timeout_seconds: f64,
    /// Largest difference between a host's clock and oned's before its clock check fails.
    pub max_clock_skew_seconds: f64,
    /// Least important log message agents send: "error", "warn", "info" or "debug".
    pub agent_log_level: String,
    /// VNC ports given to VMs without GRAPHICS/PORT: from `vnc_port_start` (+ VM id as the
    /// first guess, as OpenNebula's VNC_PORTS START), skipping `vnc_ports_reserved` ("a:b,c").
    pub vnc_port_start: u32,
    pub vnc_ports_reserved: String,
    /// The address every VM's VNC server listens on, whatever its template says: the
    /// host's loopback, reached only through the node agent's byte stream (`one.vm.vnc`).
    /// An administrator may choose another address (then VNC ports are on the network).
    pub vnc_listen: String,
    /// Seconds a screen token (`one.vm.vnc`) may wait to be used.
    pub vnc_token_seconds: u64,
    /// SSH (hosts that are not this machine): the remote user; empty: the user oned runs as.
    pub ssh_user: String,
    /// SSH port of hosts whose template has no SSH_PORT.
    pub ssh_port: u16,
    /// Record the key of a host seen for the first time instead of refusing it (a host's
    /// SSH_ACCEPT_NEW_HOST_KEY="YES" does it for that host alone). A changed key is always
    /// refused.
    pub accept_new_host_keys: bool,
    /// Where oned installs the agent on remote hosts; `~/` is the remote user's home.
    pub remote_agent_path: String,
    /// Seconds to open an SSH connection (TCP, key exchange).
    pub ssh_connect_timeout_seconds: f64,
}

impl Default for HostsConfig {
    fn default() -> Self {
        HostsConfig {
            agent_path: PathBuf::new(),
            simulate_agents: false,
            reconnect_initial_seconds: 1.0,
            reconnect_max_seconds: 60.0,
            error_after_seconds: 60.0,
            hello_timeout_seconds: 30.0,
            request_timeout_seconds: 60.0,
            libvirt_uri: "qemu:///system".into(),
            domain_type: "detect".into(),
            domain_prefix: "one-".into(),
            host_system_seconds: 600.0,
            host_usage_seconds: 120.0,
            vm_usage_seconds: 30.0,
            vm_state_seconds: 5.0,
            vm_state_sync_seconds: 180.0,
            keepalive_interval_seconds: 10.0,
            keepalive_timeout_seconds: 30.0,
            max_clock_skew_seconds: 5.0,
            agent_log_level: "info".into(),
            vnc_port_start: 5900,
            vnc_listen: "127.0.0.1".into(),
            vnc_token_seconds: 60,
            vnc_ports_reserved: "32768:65536".into(),
            ssh_user: String::new(),
            ssh_port: 22,
            accept_new_host_keys: false,
            remote_agent_path: "~/.one-rs/bin/one-node-agent".into(),
            ssh_connect_timeout_seconds: 10.0,
        }
    }
}

impl HostsConfig {
    pub fn validate(&self) -> Result<(), String> {
        let periods = [
            ("reconnect_initial_seconds", self.reconnect_initial_seconds),
            ("reconnect_max_seconds", self.reconnect_max_seconds),
            ("hello_timeout_seconds", self.hello_timeout_seconds),
            ("request_timeout_seconds", self.request_timeout_seconds),
            ("host_system_seconds", self.host_system_seconds),
            ("host_usage_seconds", self.host_usage_seconds),
            ("vm_usage_seconds", self.vm_usage_seconds),
            ("vm_state_seconds", self.vm_state_seconds),
            ("vm_state_sync_seconds", self.vm_state_sync_seconds),
            (
                "keepalive_interval_seconds",
                self.keepalive_interval_seconds,
            ),
            ("keepalive_timeout_seconds", self.keepalive_timeout_seconds),
            (
                "ssh_connect_timeout_seconds",
                self.ssh_connect_timeout_seconds,
            ),
        ];
        for (name, v) in periods {
            // Bounded so that conversions to milliseconds and Durations cannot overflow.
            if !(v.is_finite() && v > 0.0 && v <= 1e9) {
                return Err(format!(
                    "hosts.{name} must be a positive number of seconds, not {v}"
                ));
            }
        }
        for (name, v) in [
            ("error_after_seconds", self.error_after_seconds),
            ("max_clock_skew_seconds", self.max_clock_skew_seconds),
        ] {
            if !(v.is_finite() && (0.0..=1e9).contains(&v)) {
                return Err(format!("hosts.{name} must be a number of seconds, not {v}"));
            }
        }
        if !matches!(self.domain_type.as_str(), "detect" | "kvm" | "qemu") {
            return Err(format!(
                "hosts.domain_type must be \"detect\", \"kvm\" or \"qemu\", not {:?}",
                self.domain_type
            ));
        }
        let p = &self.domain_prefix;
        if p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "hosts.domain_prefix {p:?} must be letters, digits, '-', '_' or '.'"
            ));
        }
        if !matches!(
            self.agent_log_level.as_str(),
            "error" | "warn" | "info" | "debug"
        ) {
            return Err(format!(
                "hosts.agent_log_level must be error, warn, info or debug, not {:?}",
                self.agent_log_level
            ));
        }
        if self.vnc_port_start == 0 || self.vnc_port_start > 65535 {
            return Err(format!(
                "hosts.vnc_port_start {} is not a port",
                self.vnc_port_start
            ));
        }
        parse_reserved(&self.vnc_ports_reserved)
            .map_err(|e| format!("hosts.vnc_ports_reserved: {e}"))?;
        if self.ssh_port == 0 {
            return Err("hosts.ssh_port must be a port, not 0".into());
        }
        let path = &self.remote_agent_path;
        if path.is_empty() || path.ends_with('/') || path.contains(['\n', '\0']) {
            return Err(format!(
                "hosts.remote_agent_path {path:?} must name a file (no newline)"
            ));
        }
        if self
            .ssh_user
            .contains(|c: char| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "hosts.ssh_user {:?} is not a user name",
                self.ssh_user
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:2633".into(),
            data_dir: PathBuf::from("var"),
            db: String::new(),
            db_sync_full: false,
            log_stderr: false,
            log_level: "info".into(),
            session_cache_seconds: 180,
            max_request_bytes: 64 * 1024 * 1024,
            default_umask: "177".into(),
            api_list_order: "DESC".into(),
            default_device_prefix: "sd".into(),
            mac_prefix: "02:00".into(),
            lcm: LcmConfig::default(),
            dummy: DummyConfig::default(),
            monitoring: MonitoringConfig::default(),
            metrics: MetricsConfig::default(),
            hooks: HooksConfig::default(),
            hosts: HostsConfig::default(),
            recovery: Default::default(),
            network: NetworkConfig::default(),
            storage: StorageConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        u32::from_str_radix(&self.default_umask, 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                format!(
                    "default_umask {:?} is not an octal umask",
                    self.default_umask
                )
            })?;
        if !matches!(self.api_list_order.as_str(), "ASC" | "DESC") {
            return Err(format!(
                "api_list_order must be \"ASC\" or \"DESC\", not {:?}",
                self.api_list_order
            ));
        }
        let parts: Vec<&str> = self.mac_prefix.split(':').collect();
        if parts.len() != 2 || parts.iter().any(|p| u8::from_str_radix(p, 16).is_err()) {
            return Err(format!(
                "mac_prefix {:?} must be two hex bytes like \"02:00\"",
                self.mac_prefix
            ));
        }
        self.hosts.validate()?;
        self.recovery.validate()?;
        self.network.validate()?;
        self.storage.validate()?;
        Ok(())
    }

    pub fn umask(&self) -> u32 {
        u32::from_str_radix(&self.default_umask, 8).unwrap_or(0o177)
    }

    /// The database URL, defaulting to SQLite inside the data directory.
    pub fn db_url(&self, data_dir: &Path) -> String {
        if self.db.is_empty() {
            format!("sqlite://{}?mode=rwc", data_dir.join("one.db").display())
        } else {
            self.db.clone()
        }
    }
}

/// `[recovery]` in oned.toml.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecoveryConfig {
    /// false: no recovery at all, whatever templates say.
    pub enabled: bool,
    /// Seconds between two looks at the hosts.
    pub check_interval_seconds: f64,
    /// Default HOST_ERROR_GRACE: seconds a host stays in ERROR before it is recovered.
    pub grace_seconds: f64,
    /// Default FENCE_COMMAND ("" = hosts are not fenced).
    pub fence_command: String,
    /// Seconds the fence command may run before it is killed (and counts as failed).
    pub fence_timeout_seconds: f64,
    /// Recovery log records kept (the oldest go first).
    pub log_retention: i64,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            enabled: true,
            check_interval_seconds: 5.0,
            grace_seconds: 120.0,
            fence_command: String::new(),
            fence_timeout_seconds: 60.0,
            log_retention: 1000,
        }
    }
}

impl RecoveryConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, v, min) in [
            ("check_interval_seconds", self.check_interval_seconds, 0.01),
            ("grace_seconds", self.grace_seconds, 0.0),
            ("fence_timeout_seconds", self.fence_timeout_seconds, 0.01),
        ] {
            if !(v.is_finite() && v >= min && v <= 1e9) {
                return Err(format!(
                    "recovery.{name} must be a number of seconds >= {min}, not {v}"
                ));
            }
        }
        if self.log_retention < 1 {
            return Err(format!(
                "recovery.log_retention must be at least 1, not {}",
                self.log_retention
            ));
        }
        Ok(())
    }
}

/// Parses reserved ranges: "a:b" (inclusive) or "p", separated by commas or blanks.
pub fn parse_reserved(s: &str) -> Result<Vec<RangeInclusive<u32>>, String> {
    let mut out = Vec::new();
    for part in s.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty()) {
        let num = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("{part:?} is not a port or a range of ports (a:b)"))
        };
        let r = match part.split_once(':') {
            Some((a, b)) => num(a)?..=num(b)?,
            None => {
                let p = num(part)?;
                p..=p
            }
        };
        if r.start() > r.end() {
            return Err(format!("{part:?}: the range ends before it starts"));
        }
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_parses_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/oned.toml");
        let cfg = Config::load(&path).expect("etc/oned.toml parses");
        let def = Config::default();
        assert_eq!(cfg.listen, def.listen);
        assert_eq!(cfg.data_dir, def.data_dir);
        assert_eq!(cfg.session_cache_seconds, def.session_cache_seconds);
        assert_eq!(cfg.max_request_bytes, def.max_request_bytes);
        assert_eq!(cfg.default_umask, def.default_umask);
        assert_eq!(cfg.mac_prefix, def.mac_prefix);
        let (h, d) = (&cfg.hosts, &def.hosts);
        assert_eq!(h.agent_path, d.agent_path);
        assert_eq!(h.simulate_agents, d.simulate_agents);
        assert_eq!(h.error_after_seconds, d.error_after_seconds);
        assert_eq!(h.domain_type, d.domain_type);
        assert_eq!(h.domain_prefix, d.domain_prefix);
        assert_eq!(h.host_usage_seconds, d.host_usage_seconds);
        assert_eq!(h.keepalive_timeout_seconds, d.keepalive_timeout_seconds);
        assert_eq!(h.vnc_ports_reserved, d.vnc_ports_reserved);
        assert_eq!(h.ssh_user, d.ssh_user);
        assert_eq!(h.ssh_port, d.ssh_port);
        assert_eq!(h.accept_new_host_keys, d.accept_new_host_keys);
        assert_eq!(h.remote_agent_path, d.remote_agent_path);
        assert_eq!(h.ssh_connect_timeout_seconds, d.ssh_connect_timeout_seconds);
        let (n, d) = (&cfg.network, &def.network);
        assert_eq!(n.vlan_ids_start, d.vlan_ids_start);
        assert_eq!(n.vlan_ids_reserved, d.vlan_ids_reserved);
        assert_eq!(n.vxlan_ids_start, d.vxlan_ids_start);
        assert_eq!(n.for_hosts(), d.for_hosts());
    }

    #[test]
    fn rejects_bad_values() {
        let c = Config {
            default_umask: "9".into(),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            mac_prefix: "zz:00".into(),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.hosts.domain_type = "xen".into();
        assert!(c.validate().unwrap_err().contains("hosts.domain_type"));
        let mut c = Config::default();
        c.hosts.keepalive_timeout_seconds = 0.0;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.hosts.domain_prefix = "a b".into();
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.hosts.vnc_ports_reserved = "1:x".into();
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.hosts.remote_agent_path = "/opt/dir/".into();
        assert!(c.validate().unwrap_err().contains("remote_agent_path"));
        let mut c = Config::default();
        c.hosts.ssh_port = 0;
        assert!(c.validate().is_err());
        for f in [
            |c: &mut Config| c.network.vlan_ids_reserved = "1, x".into(),
            |c: &mut Config| c.network.vlan_ids_reserved = "5:3".into(),
            |c: &mut Config| c.network.vlan_ids_start = 4095,
            |c: &mut Config| c.network.vxlan_mc = "10.0.0.0".into(),
            |c: &mut Config| c.network.sg_ct_mark = 3,
        ] {
            let mut c = Config::default();
            f(&mut c);
            assert!(c.validate().unwrap_err().starts_with("network."));
        }
        let mut c = Config::default();
        c.network.vlan_ids_reserved = "0,1, 100:200 ,4095".into();
        assert_eq!(
            c.network.reserved_vlan_ids().unwrap(),
            [(0, 0), (1, 1), (100, 200), (4095, 4095)]
        );
    }
}
