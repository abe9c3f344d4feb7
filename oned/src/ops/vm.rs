//! A VM's share of quotas, and VMs waiting in CLONING for an image copy.

use crate::context;
use crate::ops::quota::{self, QuotaUsage};
use crate::store::Txn;
use one_proto::objects::vm::Vm;
use one_proto::state::{LcmState, VmState};
use one_proto::template::Vector;

/// For the image code: image `image_id` left LOCKED (its copy finished, or failed). The DISKs
/// of the VMs in `vms` that waited for it lose CLONING=YES; a CLONING VM with no disk left
/// waiting goes PENDING (HOLD if it was submitted on hold); on failure it goes
/// CLONING_FAILURE. As OpenNebula's disk_lock_success / disk_lock_failure.
pub fn image_lock_done(tx: &mut Txn<'_>, image_id: i64, vms: &[i64], success: bool) {
    let iid = image_id.to_string();
    for &vmid in vms {
        let Some(mut vm) = tx.get::<Vm>(vmid) else {
            continue;
        };
        if !matches!(vm.state, VmState::Cloning | VmState::CloningFailure) {
            continue;
        }
        let mut changed = false;
        for d in vm.template.vectors_mut("DISK") {
            if d.get("IMAGE_ID") == Some(iid.as_str()) && context::is_yes(d.get("CLONING")) {
                if success {
                    d.remove("CLONING");
                }
                changed = true;
            }
        }
        if !changed {
            continue;
        }
        let waiting = vm
            .template
            .vectors("DISK")
            .any(|d| context::is_yes(d.get("CLONING")));
        if !success {
            vm.state = VmState::CloningFailure;
        } else if !waiting && vm.state == VmState::Cloning {
            vm.state = if context::is_yes(vm.template.get("SUBMIT_ON_HOLD")) {
                VmState::Hold
            } else {
                VmState::Pending
            };
        }
        tracing::info!(vm = vmid, image = image_id, success, state = %vm.state, "vm disk image ready");
        tx.put(vm);
    }
}

/// States whose VMs count against the RUNNING_* quotas (OpenNebula's is_running_quota).
fn is_running_quota(vm: &Vm) -> bool {
    use LcmState as L;
    match vm.state {
        VmState::Pending | VmState::Cloning | VmState::CloningFailure | VmState::Hold => true,
        VmState::Active => !matches!(
            vm.lcm_state,
            L::HotplugSaveasPoweroff
                | L::HotplugSaveasSuspended
                | L::DiskSnapshotPoweroff
                | L::DiskSnapshotRevertPoweroff
                | L::DiskSnapshotDeletePoweroff
                | L::DiskSnapshotSuspended
                | L::DiskSnapshotDeleteSuspended
                | L::DiskResizePoweroff
                | L::DiskResizeUndeployed
                | L::HotplugNicPoweroff
                | L::HotplugSaveasUndeployed
                | L::HotplugSaveasStopped
                | L::HotplugPrologPoweroff
                | L::HotplugEpilogPoweroff
        ),
        _ => false,
    }
}

/// What a VM charges to VM_QUOTA and IMAGE_QUOTA (NETWORK_QUOTA is the vnet code's).
pub fn quota_usage(vm: &Vm) -> QuotaUsage {
    let t = &vm.template;
    let cpu: f64 = t
        .get("CPU")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let memory: i64 = t
        .get("MEMORY")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut usage = QuotaUsage {
        vms: 1,
        cpu,
        memory_mb: memory,
        system_disk_mb: t.vectors("DISK").filter_map(system_disk_size).sum(),
        ..QuotaUsage::default()
    };
    if is_running_quota(vm) {
        usage.running_vms = 1;
        usage.running_cpu = cpu;
        usage.running_memory_mb = memory;
    }
    for d in t.vectors("DISK") {
        if let Some(iid) = d.get("IMAGE_ID").and_then(|v| v.trim().parse::<i64>().ok()) {
            match usage.image_rvms.iter_mut().find(|(id, _)| *id == iid) {
                Some((_, n)) => *n += 1,
                None => usage.image_rvms.push((iid, 1)),
            }
        }
    }
    usage
}

/// The format of a DISK's files (FORMAT, else DRIVER, else raw), lower case: what a
/// save-as writes and reads.
pub fn disk_format(disk: &Vector) -> String {
    disk.get("FORMAT")
        .or_else(|| disk.get("DRIVER"))
        .map(|f| f.trim().to_ascii_lowercase())
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| "raw".into())
}

/// Size a disk takes in the system datastore: volatile disks, and image disks whose
/// TM_MAD clones them there (LN_TARGET/CLONE_TARGET SYSTEM), in MB.
fn system_disk_size(d: &Vector) -> Option<i64> {
    let size: i64 = d.get("SIZE")?.trim().parse().ok()?;
    let volatile = d.get("IMAGE_ID").is_none();
    let persistent = d
        .get("PERSISTENT")
        .is_some_and(|p| p.eq_ignore_ascii_case("YES"));
    let target = if persistent {
        d.get("LN_TARGET")
    } else {
        d.get("CLONE_TARGET")
    };
    (volatile || target.is_some_and(|t| t.eq_ignore_ascii_case("SYSTEM"))).then_some(size)
}

/// The VM's quota usage changed from `before` to `after` (a device or capacity given back):
/// releases the difference. Giving back never fails.
pub fn release_change(tx: &mut Txn<'_>, before: &Vm, after: &Vm) {
    let (u, g) = (after.header.uid, after.header.gid);
    quota::release(tx, u, g, &quota_usage(before));
    quota::release(tx, u, g, &quota_usage(after).negated());
}

#[cfg(test)]
mod tests {
    use super::*;
    use one_proto::template::Template;

    #[test]
    fn disk_format_reads_format_then_driver_then_says_raw() {
        let t = Template::parse(
            "DISK=[DISK_ID=0, FORMAT=\" QCOW2 \", DRIVER=raw]\nDISK=[DISK_ID=1, DRIVER=qcow2]\nDISK=[DISK_ID=2, FORMAT=\"\"]",
        )
        .unwrap();
        let got: Vec<String> = t.vectors("DISK").map(disk_format).collect();
        assert_eq!(got, ["qcow2", "qcow2", "raw"]);
    }
}
