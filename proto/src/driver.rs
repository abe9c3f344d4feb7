//! Driver operations: what oned asks a host to do for a VM.
//!
//! The lifecycle in oned runs every multi-step VM operation as a sequence of these; a host
//! driver carries them out (the `dummy` driver simulates them inside oned, the node agent
//! executes them on a real hypervisor). The names double as the keys a dummy host's
//! `DUMMY_FAIL` list uses to make an operation fail.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

macro_rules! driver_ops {
    ($($variant:ident => $name:expr, $family:ident;)+) => {
        /// One driver operation. TM operations move disk files, VNM ones plumb the network,
        /// VMM ones act on the hypervisor domain.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum DriverOp { $($variant),+ }

        impl DriverOp {
            pub const ALL: &'static [DriverOp] = &[$(DriverOp::$variant),+];

            /// The snake_case name (the `DUMMY_FAIL` key, and the name in logs).
            pub fn name(self) -> &'static str {
                match self { $(DriverOp::$variant => $name),+ }
            }

            pub fn family(self) -> DriverFamily {
                match self { $(DriverOp::$variant => DriverFamily::$family),+ }
            }

            pub fn from_name(s: &str) -> Option<DriverOp> {
                match s { $($name => Some(DriverOp::$variant),)+ _ => None }
            }
        }
    };
}

driver_ops! {
    Prolog => "prolog", Tm;
    PrologResume => "prolog_resume", Tm;
    PrologMigrate => "prolog_migrate", Tm;
    Epilog => "epilog", Tm;
    EpilogStop => "epilog_stop", Tm;
    EpilogDelete => "epilog_delete", Tm;
    DiskSnapshotCreate => "disk_snapshot_create", Tm;
    DiskSnapshotRevert => "disk_snapshot_revert", Tm;
    DiskSnapshotDelete => "disk_snapshot_delete", Tm;
    DiskResize => "disk_resize", Tm;
    DiskSaveas => "disk_saveas", Tm;
    NetPre => "net_pre", Vnm;
    NetPost => "net_post", Vnm;
    NetClean => "net_clean", Vnm;
    Deploy => "deploy", Vmm;
    Shutdown => "shutdown", Vmm;
    Cancel => "cancel", Vmm;
    Save => "save", Vmm;
    Restore => "restore", Vmm;
    Reboot => "reboot", Vmm;
    Reset => "reset", Vmm;
    Migrate => "migrate", Vmm;
    AttachDisk => "attach_disk", Vmm;
    DetachDisk => "detach_disk", Vmm;
    AttachNic => "attach_nic", Vmm;
    DetachNic => "detach_nic", Vmm;
    SnapshotCreate => "snapshot_create", Vmm;
    SnapshotRevert => "snapshot_revert", Vmm;
    SnapshotDelete => "snapshot_delete", Vmm;
    Resize => "resize", Vmm;
    UpdateConf => "update_conf", Vmm;
}

/// Which kind of driver an operation belongs to (OpenNebula's TM, VNM and VMM).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriverFamily {
    Tm,
    Vnm,
    Vmm,
}

/// A request to a host driver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriverRequest {
    pub op: DriverOp,
    pub vm_id: i64,
    /// The hypervisor's name for the domain ("" before the first deploy).
    pub deploy_id: String,
    /// The host the operation runs on (for migrations: the destination for prolog_migrate,
    /// restore and migrate; `source_host` names the other end).
    pub host: String,
    pub source_host: String,
    /// System datastore id and the VM's directory in it.
    pub ds_id: i64,
    /// The VM document (one.vm.info XML) at the time of the request.
    pub vm_xml: String,
    /// Operation arguments: DISK_ID, NIC_ID, SNAPSHOT_ID, SIZE, ...
    pub args: BTreeMap<String, String>,
}

/// What a driver answers on success.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DriverReply {
    /// Set by deploy / restore / migrate: the hypervisor's name of the domain.
    pub deploy_id: Option<String>,
    /// Free text for the VM log.
    pub info: String,
}

/// A failed driver operation: the message goes to the VM's ERROR attribute and log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct DriverError {
    pub message: String,
}

impl DriverError {
    pub fn new(message: impl Into<String>) -> DriverError {
        DriverError {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for op in DriverOp::ALL {
            assert_eq!(DriverOp::from_name(op.name()), Some(*op));
            assert!(seen.insert(op.name()), "duplicate name {}", op.name());
        }
        assert_eq!(DriverOp::from_name("nope"), None);
        assert_eq!(DriverOp::Prolog.family(), DriverFamily::Tm);
        assert_eq!(DriverOp::NetPre.family(), DriverFamily::Vnm);
        assert_eq!(DriverOp::Deploy.family(), DriverFamily::Vmm);
    }

    #[test]
    fn serde_uses_the_snake_case_names() {
        let json = serde_json::to_string(&DriverOp::DiskSnapshotCreate).unwrap();
        assert_eq!(json, "\"disk_snapshot_create\"");
    }
}
