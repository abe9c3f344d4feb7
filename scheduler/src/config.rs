//! The scheduler's configuration file (etc/scheduler.toml documents every option).

use crate::place::PlaceConfig;
use crate::policy::{DsPolicy, HostPolicy};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("{0}")]
    Invalid(String),
}

/// A policy section: `[default_sched]` / `[default_ds_sched]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    pub policy: i64,
    #[serde(default)]
    pub rank: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// oned's XML-RPC endpoint; empty: as OpenNebula clients find it.
    pub endpoint: String,
    /// File with `user:password`; empty: as OpenNebula clients find it.
    pub auth_file: Option<PathBuf>,
    /// Seconds between two looks for pending VMs when there is nothing to do.
    pub interval: f64,
    /// Seconds between two looks for VMs flagged for rescheduling.
    pub resched_interval: f64,
    /// Seconds before VMs that could not be placed (or whose dispatch failed) are tried
    /// again when nothing else happened.
    pub retry_interval: f64,
    /// Seconds one XML-RPC call may take.
    pub call_timeout: f64,
    pub max_vm: usize,
    pub max_dispatch: usize,
    pub max_host: usize,
    /// Calls to oned in flight at once while dispatching.
    pub max_in_flight: usize,
    pub live_rescheds: bool,
    pub cold_migrate_mode: i64,
    pub memory_system_ds_scale: f64,
    pub log_level: String,
    pub default_sched: PolicySection,
    pub default_ds_sched: PolicySection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: String::new(),
            auth_file: None,
            interval: 0.05,
            resched_interval: 5.0,
            retry_interval: 5.0,
            call_timeout: 60.0,
            max_vm: 0,
            max_dispatch: 0,
            max_host: 0,
            max_in_flight: 16,
            live_rescheds: false,
            cold_migrate_mode: 0,
            memory_system_ds_scale: 0.0,
            log_level: "info".into(),
            default_sched: PolicySection {
                policy: 1,
                rank: String::new(),
            },
            default_ds_sched: PolicySection {
                policy: 1,
                rank: String::new(),
            },
        }
    }
}

fn seconds(name: &str, v: f64) -> Result<Duration, ConfigError> {
    if v.is_finite() && v > 0.0 && v < 1e9 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(ConfigError::Invalid(format!(
            "{name} must be a positive number of seconds, not {v}"
        )))
    }
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    /// Checks every value; the daemon refuses to start on a bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.interval()?;
        self.resched_interval()?;
        self.retry_interval()?;
        self.call_timeout()?;
        if self.max_in_flight == 0 {
            return Err(ConfigError::Invalid(
                "max_in_flight must be at least 1".into(),
            ));
        }
        if !(0..=2).contains(&self.cold_migrate_mode) {
            return Err(ConfigError::Invalid(format!(
                "cold_migrate_mode must be 0 (save), 1 (poweroff) or 2 (poweroff-hard), not {}",
                self.cold_migrate_mode
            )));
        }
        if !(self.memory_system_ds_scale.is_finite() && self.memory_system_ds_scale >= 0.0) {
            return Err(ConfigError::Invalid(
                "memory_system_ds_scale must be a number >= 0".into(),
            ));
        }
        self.place_config()?;
        Ok(())
    }

    pub fn interval(&self) -> Result<Duration, ConfigError> {
        seconds("interval", self.interval)
    }

    pub fn resched_interval(&self) -> Result<Duration, ConfigError> {
        seconds("resched_interval", self.resched_interval)
    }

    pub fn retry_interval(&self) -> Result<Duration, ConfigError> {
        seconds("retry_interval", self.retry_interval)
    }

    pub fn call_timeout(&self) -> Result<Duration, ConfigError> {
        seconds("call_timeout", self.call_timeout)
    }

    pub fn place_config(&self) -> Result<PlaceConfig, ConfigError> {
        let host_policy =
            HostPolicy::from_number(self.default_sched.policy, &self.default_sched.rank)
                .map_err(|e| ConfigError::Invalid(format!("default_sched: {e}")))?;
        let ds_policy =
            DsPolicy::from_number(self.default_ds_sched.policy, &self.default_ds_sched.rank)
                .map_err(|e| ConfigError::Invalid(format!("default_ds_sched: {e}")))?;
        Ok(PlaceConfig {
            max_vm: self.max_vm,
            max_dispatch: self.max_dispatch,
            max_host: self.max_host,
            host_policy,
            ds_policy,
            memory_system_ds_scale: self.memory_system_ds_scale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.interval().unwrap(), Duration::from_millis(50));
        let p = c.place_config().unwrap();
        assert_eq!(p.host_policy, HostPolicy::Striping);
        assert_eq!(p.ds_policy, DsPolicy::Striping);
        assert_eq!((p.max_vm, p.max_dispatch, p.max_host), (0, 0, 0));
    }

    #[test]
    fn the_shipped_file_parses_and_matches_the_defaults() {
        let text = include_str!("../../etc/scheduler.toml");
        assert_eq!(Config::from_toml(text).unwrap(), Config::default());
    }

    #[test]
    fn values_and_errors() {
        let c = Config::from_toml(
            "interval = 0.2\nmax_host = 1\n[default_sched]\npolicy = 3\nrank = \"FREE_CPU * 2\"\n",
        )
        .unwrap();
        assert_eq!(c.max_host, 1);
        assert_eq!(
            c.place_config().unwrap().host_policy,
            HostPolicy::Custom("FREE_CPU * 2".into())
        );
        for (bad, want) in [
            ("interval = 0", "interval must be"),
            ("interval = -1", "interval must be"),
            ("resched_interval = 0", "resched_interval"),
            ("max_in_flight = 0", "max_in_flight"),
            ("cold_migrate_mode = 3", "cold_migrate_mode"),
            ("memory_system_ds_scale = -1", "memory_system_ds_scale"),
            (
                "[default_sched]\npolicy = 9",
                "default_sched: host policy 9",
            ),
            ("[default_sched]\npolicy = 3", "needs a rank"),
            (
                "[default_ds_sched]\npolicy = 2\nrank = \"(\"",
                "default_ds_sched",
            ),
            ("unknown = 1", "unknown field"),
            ("max_vm = -1", "invalid value"),
        ] {
            let e = Config::from_toml(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }
}
