//! Onboarding checks (docs/node-agent.md): sent after the Welcome and as the answer to a
//! Probe. The hypervisor's checks (`libvirt`, `kvm`, `cpu_model`) come from the driver; the
//! host's (`bridges`, `datastores`, `clock_skew`) are made here.

use crate::driver::{AgentDriver, HostFacts};
use crate::host::{self, KvmDevice};
use one_proto::agent::{AgentConfig, Check, DatastoreDir, OnboardingReport, checks};
use std::path::Path;
use std::sync::Arc;

/// oned's clock as last seen: its time in a frame, and ours when the frame arrived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockRef {
    pub oned_ms: i64,
    pub local_ms: i64,
}

impl ClockRef {
    /// How far our clock is ahead of oned's (negative: behind), in ms. The frame's transit
    /// time counts as skew, which is small next to the limits used.
    pub fn skew_ms(&self) -> i64 {
        self.local_ms.saturating_sub(self.oned_ms)
    }
}

pub fn host_facts() -> HostFacts {
    HostFacts {
        kvm: host::kvm_device(),
        cpu_model: host::cpu_model(),
    }
}

/// Runs every check. `driver` is the driver, or why there is none.
pub async fn run(
    driver: Result<&Arc<dyn AgentDriver>, &str>,
    cfg: &AgentConfig,
    clock: ClockRef,
) -> OnboardingReport {
    let facts = tokio::task::spawn_blocking(host_facts)
        .await
        .unwrap_or_else(|_| HostFacts {
            kvm: KvmDevice::Absent,
            cpu_model: "unknown".into(),
        });
    let (mut list, domain_type) = match driver {
        Ok(d) => {
            let r = d.hypervisor_checks(facts).await;
            (r.checks, r.domain_type)
        }
        Err(why) => (without_driver(why, facts), None),
    };
    list.push(bridges(&cfg.bridges));
    // Shared datastores are never made here (capabilities say whether they are seen).
    let dirs = cfg.local_datastores();
    list.push(
        tokio::task::spawn_blocking(move || datastores(&dirs))
            .await
            .unwrap_or_else(|e| failed(checks::DATASTORES, format!("check aborted: {e}"))),
    );
    list.push(clock_skew(clock, cfg.max_clock_skew_ms));
    OnboardingReport {
        checks: list,
        domain_type,
    }
}

fn passed(name: &str, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: true,
        detail: detail.into(),
    }
}

fn failed(name: &str, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: false,
        detail: detail.into(),
    }
}

/// The hypervisor checks when the driver could not be had: `libvirt` fails with the reason,
/// the others say what the host itself shows.
fn without_driver(why: &str, facts: HostFacts) -> Vec<Check> {
    let kvm = match facts.kvm {
        KvmDevice::Usable => "/dev/kvm is present".to_string(),
        KvmDevice::Absent => "emulation only: /dev/kvm is absent".to_string(),
        KvmDevice::NoAccess(e) => format!("emulation only: /dev/kvm cannot be opened: {e}"),
    };
    vec![
        failed(checks::LIBVIRT, why),
        passed(checks::KVM, kvm),
        passed(checks::CPU_MODEL, facts.cpu_model),
    ]
}

pub fn bridges(names: &[String]) -> Check {
    bridges_with(names, host::bridge_exists)
}

fn bridges_with(names: &[String], exists: impl Fn(&str) -> bool) -> Check {
    if names.is_empty() {
        return passed(checks::BRIDGES, "no bridges configured");
    }
    let missing: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !exists(n))
        .collect();
    match missing.as_slice() {
        [] => passed(checks::BRIDGES, format!("{} exist", names.join(", "))),
        [one] => failed(checks::BRIDGES, format!("bridge {one} does not exist")),
        many => failed(
            checks::BRIDGES,
            format!("bridges {} do not exist", many.join(", ")),
        ),
    }
}

/// Every datastore directory exists (created if it can be) and takes a new file.
pub fn datastores(dirs: &[DatastoreDir]) -> Check {
    if dirs.is_empty() {
        return passed(checks::DATASTORES, "no datastores configured");
    }
    let problems: Vec<String> = dirs
        .iter()
        .filter_map(|d| writable(Path::new(&d.path)).err())
        .collect();
    if problems.is_empty() {
        let paths: Vec<&str> = dirs.iter().map(|d| d.path.as_str()).collect();
        passed(checks::DATASTORES, format!("{} writable", paths.join(", ")))
    } else {
        failed(checks::DATASTORES, problems.join("; "))
    }
}

fn writable(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    std::fs::create_dir_all(dir).map_err(|e| format!("{shown} cannot be created ({e})"))?;
    let probe = dir.join(format!(".one-node-agent-check.{}", std::process::id()));
    std::fs::write(&probe, b"check\n").map_err(|e| format!("{shown} is not writable ({e})"))?;
    std::fs::remove_file(&probe).map_err(|e| format!("{shown}: cannot remove {e}"))
}

pub fn clock_skew(clock: ClockRef, max_ms: u64) -> Check {
    let skew = clock.skew_ms();
    let max = i64::try_from(max_ms).unwrap_or(i64::MAX);
    let words = if skew >= 0 { "ahead of" } else { "behind" };
    let detail = format!(
        "host clock {} ms {words} oned's (limit {max_ms} ms)",
        skew.unsigned_abs()
    );
    if skew.saturating_abs() <= max {
        passed(checks::CLOCK_SKEW, detail)
    } else {
        failed(checks::CLOCK_SKEW, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bridges_name_what_is_missing() {
        let exists = |n: &str| n == "br0";
        assert!(bridges_with(&[], exists).ok);
        let c = bridges_with(&names(&["br0"]), exists);
        assert_eq!((c.ok, c.detail.as_str()), (true, "br0 exist"));
        let c = bridges_with(&names(&["br0", "br9"]), exists);
        assert_eq!(
            (c.ok, c.detail.as_str()),
            (false, "bridge br9 does not exist")
        );
        let c = bridges_with(&names(&["br8", "br9"]), exists);
        assert_eq!(c.detail, "bridges br8, br9 do not exist");
    }

    #[test]
    fn datastores_are_created_and_written() {
        let base = std::env::temp_dir().join(format!("one-agent-ds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let ds = |id, p: &Path| DatastoreDir {
            id,
            path: p.display().to_string(),
        };
        let good = base.join("0");
        let c = datastores(&[ds(0, &good)]);
        assert!(c.ok, "{c:?}");
        assert!(good.is_dir(), "created");
        assert_eq!(
            std::fs::read_dir(&good).unwrap().count(),
            0,
            "probe file removed"
        );
        // A path under a regular file cannot be a directory.
        std::fs::write(base.join("file"), b"").unwrap();
        let bad = base.join("file").join("100");
        let c = datastores(&[ds(0, &good), ds(100, &bad)]);
        assert!(!c.ok);
        assert!(
            c.detail
                .starts_with(&format!("{} cannot be created", bad.display())),
            "{}",
            c.detail
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn clock_skew_both_ways() {
        let c = clock_skew(
            ClockRef {
                oned_ms: 10_000,
                local_ms: 12_000,
            },
            5_000,
        );
        assert!(c.ok);
        assert_eq!(
            c.detail,
            "host clock 2000 ms ahead of oned's (limit 5000 ms)"
        );
        let c = clock_skew(
            ClockRef {
                oned_ms: 10_000,
                local_ms: 4_000,
            },
            5_000,
        );
        assert!(!c.ok);
        assert_eq!(c.detail, "host clock 6000 ms behind oned's (limit 5000 ms)");
    }

    #[tokio::test]
    async fn without_a_driver_the_libvirt_check_fails_with_the_reason() {
        let r = run(
            Err("not built"),
            &AgentConfig::default(),
            ClockRef::default(),
        )
        .await;
        let names: Vec<&str> = r.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "libvirt",
                "kvm",
                "cpu_model",
                "bridges",
                "datastores",
                "clock_skew"
            ]
        );
        assert_eq!(
            r.failure_message().as_deref(),
            Some("onboarding checks failed: libvirt: not built")
        );
        assert_eq!(r.domain_type, None);
    }
}
