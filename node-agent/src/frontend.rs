//! The frontend role (`one-node-agent --stdio --frontend`): the agent oned runs on its own
//! machine, whatever hosts exist, for every file operation on image and file datastores
//! (docs/storage.md). It has no hypervisor and no domains: it runs [`Request::Ds`] with
//! `one_drivers::ds`, and serves byte streams into the upload staging area and the
//! datastores.
//!
//! [`Request::Ds`]: one_proto::agent::Request::Ds

use one_proto::agent::{AgentConfig, Check, FrontendConfig, OnboardingReport, Reply, checks};
use one_proto::driver::DriverError;
use one_proto::ds::DsRequest;
use std::path::Path;

/// The answer to a datastore request. The work runs on the blocking pool (files, qemu-img,
/// downloads); requests run side by side.
pub async fn execute(req: DsRequest) -> Reply {
    let op = op_name(&req);
    let started = std::time::Instant::now();
    let res = tokio::task::spawn_blocking(move || one_drivers::ds::execute(&req)).await;
    let ms = started.elapsed().as_millis() as u64;
    match res {
        Ok(Ok(r)) => {
            tracing::info!(op, ms, "datastore operation done");
            Reply::Ds(r)
        }
        Ok(Err(e)) => {
            tracing::warn!(op, ms, error = %e, "datastore operation failed");
            Reply::Err(DriverError::new(message(&e)))
        }
        Err(e) => Reply::Err(DriverError::new(format!("the {op} operation failed: {e}"))),
    }
}

/// The error as an image's ERROR reads it: a full file system in OpenNebula's words.
pub fn message(e: &one_drivers::Error) -> String {
    match e {
        one_drivers::Error::NoSpace { path, what } => {
            format!("Not enough space in {path}: {what}")
        }
        other => other.to_string(),
    }
}

fn op_name(r: &DsRequest) -> &'static str {
    match r {
        DsRequest::Stat { .. } => "stat",
        DsRequest::CopyIn { .. } => "cp",
        DsRequest::Mkfs { .. } => "mkfs",
        DsRequest::Clone { .. } => "clone",
        DsRequest::Rm { .. } => "rm",
        DsRequest::Resize { .. } => "resize",
        DsRequest::Snapshot { .. } => "snapshot",
        DsRequest::Monitor { .. } => "monitor",
        DsRequest::Prepare { .. } => "prepare",
        DsRequest::CleanStaging { .. } => "clean_staging",
        DsRequest::SaveStashed { .. } => "cpds",
    }
}

/// The frontend's onboarding checks: qemu-img answers, and the datastores root and the
/// staging area exist (made when missing) and take a file.
pub async fn checks(cfg: &AgentConfig) -> OnboardingReport {
    let fe = cfg.frontend.clone().unwrap_or_default();
    let list = tokio::task::spawn_blocking(move || vec![qemu_img(), dirs(&fe)])
        .await
        .unwrap_or_default();
    OnboardingReport {
        checks: list,
        domain_type: None,
    }
}

fn check(name: &str, r: Result<String, String>) -> Check {
    match r {
        Ok(detail) => Check {
            name: name.into(),
            ok: true,
            detail,
        },
        Err(detail) => Check {
            name: name.into(),
            ok: false,
            detail,
        },
    }
}

fn qemu_img() -> Check {
    let r = std::process::Command::new("qemu-img")
        .arg("--version")
        .output()
        .map_err(|e| format!("qemu-img cannot run ({e}): install qemu-utils"))
        .and_then(|o| {
            let v = String::from_utf8_lossy(&o.stdout);
            let first = v.lines().next().unwrap_or("").trim().to_string();
            if o.status.success() {
                Ok(first)
            } else {
                Err(format!("qemu-img --version failed: {first}"))
            }
        });
    check(checks::QEMU_IMG, r)
}

fn dirs(fe: &FrontendConfig) -> Check {
    let mut done = Vec::new();
    for d in [&fe.datastores_root, &fe.staging_dir] {
        if d.is_empty() {
            continue;
        }
        let p = Path::new(d);
        if let Err(e) = std::fs::create_dir_all(p) {
            return check(
                checks::DATASTORES,
                Err(format!("{d} cannot be created ({e})")),
            );
        }
        let probe = p.join(format!(".one-node-agent-check.{}", std::process::id()));
        if let Err(e) = std::fs::write(&probe, b"check\n") {
            return check(
                checks::DATASTORES,
                Err(format!("{d} is not writable ({e})")),
            );
        }
        let _ = std::fs::remove_file(&probe);
        done.push(d.as_str());
    }
    check(
        checks::DATASTORES,
        Ok(format!("{} writable", done.join(", "))),
    )
}
