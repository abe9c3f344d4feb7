//! Leases held by VM NICs, given back to their networks.

use crate::ops::quota::{self, QuotaUsage};
use crate::store::Txn;
use one_proto::objects::vm::Vm;
use one_proto::objects::vnet::{AddrRequest, LeaseOwner, Vnet};
use one_proto::template::Vector;

fn nonempty<'a>(v: &'a Vector, name: &str) -> Option<&'a str> {
    v.get(name).map(str::trim).filter(|s| !s.is_empty())
}

/// Returns a NIC's lease to its network (VM ended or NIC detached) and the lease to the VM
/// owner's NETWORK quota (the owner is read from the VM in the transaction, so call this while
/// the VM is still there). Missing networks or leases are ignored: releasing is idempotent.
pub fn release_nic(tx: &mut Txn<'_>, nic: &Vector, vmid: i64) {
    let Some(id) = nonempty(nic, "NETWORK_ID").and_then(|s| s.parse::<i64>().ok()) else {
        return;
    };
    let Some(mut v) = tx.get::<Vnet>(id) else {
        tracing::warn!(
            vnet = id,
            vm = vmid,
            "NIC of a network that no longer exists"
        );
        return;
    };
    let owner = LeaseOwner::Vm(vmid);
    let ar_id = nonempty(nic, "AR_ID").and_then(|s| s.parse::<i64>().ok());
    let freed = match nonempty(nic, "MAC") {
        Some(mac) => v.free_lease(ar_id, &AddrRequest::Mac(mac.to_string()), owner),
        None => false,
    };
    if !v.holds(owner) {
        v.forget_vm(vmid);
    }
    tx.put(v);
    if !freed {
        tracing::debug!(vnet = id, vm = vmid, "no lease to release");
        return;
    }
    match tx.get::<Vm>(vmid) {
        Some(vm) => {
            let usage = QuotaUsage {
                leases: vec![(id, 1)],
                ..QuotaUsage::default()
            };
            quota::release(tx, vm.header.uid, vm.header.gid, &usage);
        }
        None => tracing::warn!(
            vnet = id,
            vm = vmid,
            "lease freed but the VM is gone: NETWORK quota not released"
        ),
    }
    tracing::info!(vnet = id, vm = vmid, "lease released");
}
