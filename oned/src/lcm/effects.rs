//! What a transition does besides changing the state: host capacity (HOST_SHARE), HISTORY
//! timestamps, giving back leases / images / quotas when a VM is done.
//!
//! Host capacity follows OpenNebula: it is charged when the VM is placed on a host (PROLOG
//! starts, or a migration picks the destination) and given back when the host is left
//! (EPILOG of terminate / stop / undeploy ends, a migration leaves the source, a cleanup).
//! Membership in HOST/VMS records the charge, so charging and releasing are idempotent.

use crate::store::Txn;
use one_proto::objects::host::Host;
use one_proto::objects::vm::{History, Vm};
use one_proto::state::{LcmState, VmState};
use one_proto::template::AttrValue;

/// CPU share a VM takes on its host: CPU × 100 (percent of one core).
pub fn cpu_share(vm: &Vm) -> i64 {
    let cpu: f64 = vm
        .template
        .get("CPU")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    (cpu * 100.0).round() as i64
}

/// Memory a VM takes on its host, in KB (MEMORY is in MB).
pub fn mem_share(vm: &Vm) -> i64 {
    vm.template
        .get("MEMORY")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Adds the VM to host `hid`'s VMS and HOST_SHARE (no-op if already there).
pub fn charge_host(tx: &mut Txn<'_>, vm: &Vm, hid: i64) {
    let Some(mut host) = tx.get::<Host>(hid) else {
        return;
    };
    let id = vm.header.id;
    if host.vms.contains(&id) {
        return;
    }
    host.vms.push(id);
    host.share.cpu_usage += cpu_share(vm);
    host.share.mem_usage += mem_share(vm);
    host.share.running_vms += 1;
    tracing::debug!(vm = id, host = hid, "host capacity charged");
    tx.put(host);
}

/// Removes the VM from host `hid`'s VMS and HOST_SHARE (no-op if not there).
pub fn release_host(tx: &mut Txn<'_>, vm: &Vm, hid: i64) {
    let Some(mut host) = tx.get::<Host>(hid) else {
        return;
    };
    let id = vm.header.id;
    let Some(pos) = host.vms.iter().position(|v| *v == id) else {
        return;
    };
    host.vms.remove(pos);
    host.share.cpu_usage = (host.share.cpu_usage - cpu_share(vm)).max(0);
    host.share.mem_usage = (host.share.mem_usage - mem_share(vm)).max(0);
    host.share.running_vms = (host.share.running_vms - 1).max(0);
    tracing::debug!(vm = id, host = hid, "host capacity released");
    tx.put(host);
}

/// Changes the charge of a VM whose capacity changed (resize) on the host it is on.
pub fn recharge_host(tx: &mut Txn<'_>, before: &Vm, after: &Vm) {
    if let Some(h) = before.history.last() {
        let on_host = tx
            .get::<Host>(h.hid)
            .is_some_and(|host| host.vms.contains(&before.header.id));
        if on_host {
            release_host(tx, before, h.hid);
            charge_host(tx, after, h.hid);
        }
    }
}

/// Releases the charge on every host the VM is still charged to (any history record).
pub fn release_all_hosts(tx: &mut Txn<'_>, vm: &Vm) {
    let mut hids: Vec<i64> = vm.history.iter().map(|h| h.hid).collect();
    hids.sort_unstable();
    hids.dedup();
    for hid in hids {
        release_host(tx, vm, hid);
    }
}

/// A new HISTORY record: the VM is placed on `host` with system datastore `ds_id`.
pub fn new_history(vm: &Vm, host: &Host, ds_id: i64, tm_mad: &str, now: i64) -> History {
    History {
        oid: vm.header.id,
        seq: vm.history.len() as i64,
        hostname: host.name.clone(),
        hid: host.id,
        cid: host.cluster_id,
        stime: now,
        vm_mad: host.vm_mad.clone(),
        tm_mad: tm_mad.to_string(),
        ds_id,
        plan_id: -1,
        action_id: -1,
        uid: vm.header.uid,
        gid: vm.header.gid,
        ..History::default()
    }
}

/// A new record on the same host as the last one (a resume after the last stay ended).
pub fn copy_history(vm: &mut Vm, now: i64) {
    if let Some(last) = vm.history.last() {
        let h = History {
            seq: vm.history.len() as i64,
            stime: now,
            etime: 0,
            pstime: 0,
            petime: 0,
            rstime: now,
            retime: 0,
            estime: 0,
            eetime: 0,
            action: 0,
            ..last.clone()
        };
        vm.history.push(h);
    }
}

/// Closes the current record and starts a copy of the one before it: the VM is back on the
/// host it came from (OpenNebula's cp_previous_history after a failed migration).
pub fn cp_previous_history(vm: &mut Vm, now: i64) {
    let n = vm.history.len();
    if n < 2 {
        return;
    }
    close_history(vm, now);
    let back = History {
        seq: n as i64,
        stime: now,
        etime: 0,
        pstime: 0,
        petime: 0,
        rstime: now,
        retime: 0,
        estime: 0,
        eetime: 0,
        action: 0,
        ..vm.history[n - 2].clone()
    };
    vm.history.push(back);
}

/// Closes the current record with `code` as its ACTION and opens a copy on the same host (a
/// hotplug operation; OpenNebula's close_cp_history).
pub fn close_cp_history(vm: &mut Vm, code: i32, now: i64) {
    if vm.history.is_empty() {
        return;
    }
    set_history_action(vm, code);
    close_history(vm, now);
    copy_history(vm, now);
}

/// Sets the HISTORY ACTION of the current record (the action that ends or changes the stay).
pub fn set_history_action(vm: &mut Vm, code: i32) {
    if let Some(h) = vm.history.last_mut() {
        h.action = code;
    }
}

/// Closes the current record (the VM left the host or stopped running there).
pub fn close_history(vm: &mut Vm, now: i64) {
    if let Some(h) = vm.history.last_mut() {
        if h.rstime != 0 && h.retime == 0 {
            h.retime = now;
        }
        if h.estime != 0 && h.eetime == 0 {
            h.eetime = now;
        }
        if h.etime == 0 {
            h.etime = now;
        }
    }
}

/// Gives back everything the VM holds (leases, images, quotas, host capacity): it is DONE.
pub fn finish(tx: &mut Txn<'_>, vm: &mut Vm, now: i64) {
    let vmid = vm.header.id;
    let usage = crate::ops::vm::quota_usage(vm);
    for a in &vm.template.attrs {
        if let AttrValue::Vector(v) = &a.value {
            match a.name.as_str() {
                "NIC" | "NIC_ALIAS" if v.get("NETWORK_ID").is_some() => {
                    crate::ops::lease::release_nic(tx, v, vmid);
                }
                "DISK" if v.get("IMAGE_ID").is_some() => {
                    crate::ops::image::release_disk(tx, v, vmid)
                }
                _ => {}
            }
        }
    }
    crate::ops::quota::release(tx, vm.header.uid, vm.header.gid, &usage);
    crate::secgroup::release_vm(tx, vmid);
    release_all_hosts(tx, vm);
    super::set_state(vm, VmState::Done, LcmState::LcmInit);
    vm.op = None;
    vm.etime = now;
    close_history(vm, now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use one_proto::template::Template;

    #[test]
    fn shares_from_template() {
        let mut vm = crate::lcm::tests_support::vm(7);
        vm.template = Template::parse("CPU=0.5\nMEMORY=128").unwrap();
        assert_eq!(cpu_share(&vm), 50);
        assert_eq!(mem_share(&vm), 131072);
    }

    #[test]
    fn copied_history_gets_next_seq_and_open_times() {
        let mut vm = crate::lcm::tests_support::vm(7);
        vm.history.push(History {
            seq: 0,
            hid: 3,
            hostname: "h3".into(),
            stime: 10,
            etime: 20,
            action: 19,
            ..History::default()
        });
        copy_history(&mut vm, 30);
        let h = vm.history.last().unwrap();
        assert_eq!((h.seq, h.hid, h.stime, h.etime, h.action), (1, 3, 30, 0, 0));
        assert_eq!(h.hostname, "h3");
    }
}
