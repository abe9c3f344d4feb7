//! oned's configuration: typed, with defaults in code; `etc/oned.toml` documents every option.

use serde::Deserialize;
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
    /// Order of pool listings: "ASC" or "DESC".
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
    /// State and API hooks.
    pub hooks: HooksConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LcmConfig {
    /// Seconds a driver operation may take before it counts as failed.
    pub driver_timeout_seconds: u64,
    /// Seconds an ACPI shutdown may take before the domain is destroyed.
    pub shutdown_timeout_seconds: u64,
}

impl Default for LcmConfig {
    fn default() -> Self {
        LcmConfig {
            driver_timeout_seconds: 300,
            shutdown_timeout_seconds: 120,
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
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            dummy_interval_seconds: 5.0,
            datastore_interval_seconds: 300.0,
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
            api_list_order: "ASC".into(),
            default_device_prefix: "sd".into(),
            mac_prefix: "02:00".into(),
            lcm: LcmConfig::default(),
            dummy: DummyConfig::default(),
            monitoring: MonitoringConfig::default(),
            hooks: HooksConfig::default(),
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
    }
}
