//! Scheduling policies: each one is a rank expression, higher rank wins (OpenNebula's
//! DEFAULT_SCHED / DEFAULT_DS_SCHED). A VM's own SCHED_RANK / SCHED_DS_RANK replaces the
//! policy's rank for that VM.

use crate::expr::{ExprError, Rank};

/// How hosts are ranked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPolicy {
    /// 0: fill the busiest host first (`RUNNING_VMS`).
    Packing,
    /// 1: spread VMs over hosts (`- RUNNING_VMS`).
    Striping,
    /// 2: the host with most free CPU (`FREE_CPU`).
    LoadAware,
    /// 3: a custom rank expression.
    Custom(String),
    /// 4: the host's (or its cluster's) `PRIORITY` attribute.
    Fixed,
}

impl HostPolicy {
    /// The policy for OpenNebula's POLICY number (`rank` is used by the custom policy).
    pub fn from_number(policy: i64, rank: &str) -> Result<HostPolicy, String> {
        Ok(match policy {
            0 => HostPolicy::Packing,
            1 => HostPolicy::Striping,
            2 => HostPolicy::LoadAware,
            3 => HostPolicy::Custom(custom(rank)?),
            4 => HostPolicy::Fixed,
            n => {
                return Err(format!(
                    "host policy {n} is not one of 0 (packing), 1 (striping), 2 (load-aware), 3 (custom), 4 (fixed)"
                ));
            }
        })
    }

    /// The rank expression of the policy.
    pub fn rank(&self) -> &str {
        match self {
            HostPolicy::Packing => "RUNNING_VMS",
            HostPolicy::Striping => "- RUNNING_VMS",
            HostPolicy::LoadAware => "FREE_CPU",
            HostPolicy::Custom(r) => r,
            HostPolicy::Fixed => "PRIORITY",
        }
    }
}

/// How system datastores are ranked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DsPolicy {
    /// 0: fill the fullest datastore first (`- FREE_MB`).
    Packing,
    /// 1: the datastore with most free space (`FREE_MB`).
    Striping,
    /// 2: a custom rank expression.
    Custom(String),
    /// 3: the datastore's `PRIORITY` attribute.
    Fixed,
}

impl DsPolicy {
    pub fn from_number(policy: i64, rank: &str) -> Result<DsPolicy, String> {
        Ok(match policy {
            0 => DsPolicy::Packing,
            1 => DsPolicy::Striping,
            2 => DsPolicy::Custom(custom(rank)?),
            3 => DsPolicy::Fixed,
            n => {
                return Err(format!(
                    "datastore policy {n} is not one of 0 (packing), 1 (striping), 2 (custom), 3 (fixed)"
                ));
            }
        })
    }

    pub fn rank(&self) -> &str {
        match self {
            DsPolicy::Packing => "- FREE_MB",
            DsPolicy::Striping => "FREE_MB",
            DsPolicy::Custom(r) => r,
            DsPolicy::Fixed => "PRIORITY",
        }
    }
}

fn custom(rank: &str) -> Result<String, String> {
    if rank.trim().is_empty() {
        return Err("the custom policy needs a rank expression".into());
    }
    Rank::parse(rank).map_err(|e: ExprError| format!("rank {rank:?}: {e}"))?;
    Ok(rank.to_string())
}

/// The rank a VM is placed by: its own expression when it has a non-blank one, else the
/// policy's.
pub fn effective_rank<'a>(vm_rank: &'a str, policy_rank: &'a str) -> &'a str {
    if vm_rank.trim().is_empty() {
        policy_rank
    } else {
        vm_rank
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_policies() {
        assert_eq!(
            HostPolicy::from_number(0, "").unwrap().rank(),
            "RUNNING_VMS"
        );
        assert_eq!(
            HostPolicy::from_number(1, "").unwrap().rank(),
            "- RUNNING_VMS"
        );
        assert_eq!(HostPolicy::from_number(2, "").unwrap().rank(), "FREE_CPU");
        assert_eq!(
            HostPolicy::from_number(3, "CPUSPEED * 2").unwrap().rank(),
            "CPUSPEED * 2"
        );
        assert_eq!(HostPolicy::from_number(4, "").unwrap().rank(), "PRIORITY");
        assert!(
            HostPolicy::from_number(3, " ")
                .unwrap_err()
                .contains("needs a rank")
        );
        assert!(
            HostPolicy::from_number(3, "1 +")
                .unwrap_err()
                .contains("column")
        );
        assert!(HostPolicy::from_number(5, "").is_err());
    }

    #[test]
    fn ds_policies() {
        assert_eq!(DsPolicy::from_number(0, "").unwrap().rank(), "- FREE_MB");
        assert_eq!(DsPolicy::from_number(1, "").unwrap().rank(), "FREE_MB");
        assert_eq!(DsPolicy::from_number(2, "ID").unwrap().rank(), "ID");
        assert_eq!(DsPolicy::from_number(3, "").unwrap().rank(), "PRIORITY");
        assert!(DsPolicy::from_number(2, "").is_err());
        assert!(DsPolicy::from_number(4, "").is_err());
    }

    #[test]
    fn vm_rank_overrides() {
        assert_eq!(effective_rank("FREE_CPU", "- RUNNING_VMS"), "FREE_CPU");
        assert_eq!(effective_rank("  ", "- RUNNING_VMS"), "- RUNNING_VMS");
    }
}
