//! `one.vm.*` and `one.vmpool.*`.

use super::{PoolFilter, PoolRange, boolean, calls_struct, int, object_calls, string};
use crate::{Object, OcaError, Template, UpdateMode, Vm};
use one_proto::state::VmState;

calls_struct!(
    /// Virtual machines: `one.vm.*` and `one.vmpool.*`.
    VmCalls,
    vm
);

object_calls!(
    VmCalls,
    "one.vm",
    Vm,
    [info, update, rename, chown, chmod, lock]
);

/// The actions of `one.vm.action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmAction {
    Terminate,
    TerminateHard,
    Undeploy,
    UndeployHard,
    Poweroff,
    PoweroffHard,
    Reboot,
    RebootHard,
    Hold,
    Release,
    Stop,
    Suspend,
    Resume,
    Resched,
    Unresched,
}

impl VmAction {
    /// The name `one.vm.action` takes.
    pub fn name(self) -> &'static str {
        match self {
            VmAction::Terminate => "terminate",
            VmAction::TerminateHard => "terminate-hard",
            VmAction::Undeploy => "undeploy",
            VmAction::UndeployHard => "undeploy-hard",
            VmAction::Poweroff => "poweroff",
            VmAction::PoweroffHard => "poweroff-hard",
            VmAction::Reboot => "reboot",
            VmAction::RebootHard => "reboot-hard",
            VmAction::Hold => "hold",
            VmAction::Release => "release",
            VmAction::Stop => "stop",
            VmAction::Suspend => "suspend",
            VmAction::Resume => "resume",
            VmAction::Resched => "resched",
            VmAction::Unresched => "unresched",
        }
    }
}

/// `one.vm.recover` operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoverOp {
    /// Fail the pending transition (0).
    Failure,
    /// Succeed it (1).
    Success,
    /// Retry the last failed operation (2).
    Retry,
    /// Delete the VM (3).
    Delete,
    /// Delete and recreate it, back to PENDING with the same id (4).
    DeleteRecreate,
    /// Delete it from the database only (5).
    DeleteDb,
}

impl RecoverOp {
    fn num(self) -> i64 {
        match self {
            RecoverOp::Failure => 0,
            RecoverOp::Success => 1,
            RecoverOp::Retry => 2,
            RecoverOp::Delete => 3,
            RecoverOp::DeleteRecreate => 4,
            RecoverOp::DeleteDb => 5,
        }
    }
}

/// How a cold migration stops the VM (`one.vm.migrate`'s type).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MigrationType {
    /// Save the memory (0).
    #[default]
    Save,
    /// Power off (1).
    Poweroff,
    /// Power off hard (2).
    PoweroffHard,
}

/// Which VMs a pool call returns by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VmStateFilter {
    /// Every state, DONE included (-2).
    Any,
    /// Every state but DONE (-1).
    #[default]
    NotDone,
    /// One state.
    Only(VmState),
}

impl VmStateFilter {
    fn num(self) -> i64 {
        match self {
            VmStateFilter::Any => -2,
            VmStateFilter::NotDone => -1,
            VmStateFilter::Only(s) => s.num().into(),
        }
    }
}

/// The arguments of `one.vmpool.info` / `infoextended`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmQuery {
    pub filter: PoolFilter,
    pub range: PoolRange,
    pub state: VmStateFilter,
    /// OpenNebula 7's search (`VM.NAME=abc&...`); empty for none.
    pub search: String,
}

impl VmCalls<'_> {
    fn pool_params(q: &VmQuery) -> Vec<crate::Value> {
        let mut p = vec![
            int(q.filter.flag()),
            int(q.range.start),
            int(q.range.end),
            int(q.state.num()),
        ];
        if !q.search.is_empty() {
            p.push(string(&q.search));
        }
        p
    }

    /// `one.vmpool.info`: short VM bodies (no PERMISSIONS, a short TEMPLATE, the last
    /// HISTORY record).
    pub async fn list(&self, q: &VmQuery) -> Result<Vec<Vm>, OcaError> {
        Vm::pool_from_xml(&self.list_xml(q).await?)
    }

    /// `one.vmpool.info` as XML text.
    pub async fn list_xml(&self, q: &VmQuery) -> Result<String, OcaError> {
        self.c
            .call_string("one.vmpool.info", Self::pool_params(q))
            .await
    }

    /// `one.vmpool.infoextended`: full VM bodies.
    pub async fn list_extended(&self, q: &VmQuery) -> Result<Vec<Vm>, OcaError> {
        Vm::pool_from_xml(&self.list_extended_xml(q).await?)
    }

    /// `one.vmpool.infoextended` as XML text.
    pub async fn list_extended_xml(&self, q: &VmQuery) -> Result<String, OcaError> {
        self.c
            .call_string("one.vmpool.infoextended", Self::pool_params(q))
            .await
    }

    /// `one.vmpool.infoset`: the VMs with these ids (full bodies when `extended`), those the
    /// user may see.
    pub async fn list_ids(&self, ids: &[i64], extended: bool) -> Result<Vec<Vm>, OcaError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        let xml = self
            .c
            .call_string(
                "one.vmpool.infoset",
                vec![string(&list.join(",")), boolean(extended)],
            )
            .await?;
        Vm::pool_from_xml(&xml)
    }

    /// `one.vm.allocate`: a new VM from a template (attribute syntax or XML); on hold
    /// instead of pending when `hold`. Returns its id.
    pub async fn allocate(&self, template: &str, hold: bool) -> Result<i64, OcaError> {
        self.c
            .call_int("one.vm.allocate", vec![string(template), boolean(hold)])
            .await
    }

    /// `one.vm.action`.
    pub async fn action(&self, action: VmAction, id: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.vm.action", vec![string(action.name()), int(id)])
            .await
    }

    /// `one.vm.deploy` on `host` (`enforce`: check capacity; `datastore` -1: the cluster's
    /// default system datastore).
    pub async fn deploy(
        &self,
        id: i64,
        host: i64,
        enforce: bool,
        datastore: i64,
    ) -> Result<(), OcaError> {
        self.c
            .call_done(
                "one.vm.deploy",
                vec![int(id), int(host), boolean(enforce), int(datastore)],
            )
            .await
    }

    /// `one.vm.migrate` to `host`, live or cold.
    pub async fn migrate(
        &self,
        id: i64,
        host: i64,
        live: bool,
        enforce: bool,
        datastore: i64,
        kind: MigrationType,
    ) -> Result<(), OcaError> {
        let kind = match kind {
            MigrationType::Save => 0,
            MigrationType::Poweroff => 1,
            MigrationType::PoweroffHard => 2,
        };
        self.c
            .call_done(
                "one.vm.migrate",
                vec![
                    int(id),
                    int(host),
                    boolean(live),
                    boolean(enforce),
                    int(datastore),
                    int(kind),
                ],
            )
            .await
    }

    /// `one.vm.recover`.
    pub async fn recover(&self, id: i64, op: RecoverOp) -> Result<(), OcaError> {
        self.c
            .call_done("one.vm.recover", vec![int(id), int(op.num())])
            .await
    }

    /// `one.vm.attach`: hotplugs the disk described by `template` (`DISK=[IMAGE_ID=3]`).
    pub async fn disk_attach(&self, id: i64, template: &str) -> Result<(), OcaError> {
        self.c
            .call_done("one.vm.attach", vec![int(id), string(template)])
            .await
    }

    /// `one.vm.detach`.
    pub async fn disk_detach(&self, id: i64, disk_id: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.vm.detach", vec![int(id), int(disk_id)])
            .await
    }

    /// `one.vm.diskresize` to `size_mb`.
    pub async fn disk_resize(&self, id: i64, disk_id: i64, size_mb: u64) -> Result<(), OcaError> {
        self.c
            .call_done(
                "one.vm.diskresize",
                vec![int(id), int(disk_id), string(&size_mb.to_string())],
            )
            .await
    }

    /// `one.vm.disksaveas`: a new image from a disk (or one of its snapshots, -1 for the
    /// current state). Returns the image id.
    pub async fn disk_saveas(
        &self,
        id: i64,
        disk_id: i64,
        image_name: &str,
        image_type: &str,
        snapshot_id: i64,
    ) -> Result<i64, OcaError> {
        self.c
            .call_int(
                "one.vm.disksaveas",
                vec![
                    int(id),
                    int(disk_id),
                    string(image_name),
                    string(image_type),
                    int(snapshot_id),
                ],
            )
            .await
    }

    /// `one.vm.attachnic`: hotplugs the NIC described by `template` (`NIC=[NETWORK_ID=0]`).
    pub async fn nic_attach(&self, id: i64, template: &str) -> Result<(), OcaError> {
        self.c
            .call_done("one.vm.attachnic", vec![int(id), string(template)])
            .await
    }

    /// `one.vm.detachnic`.
    pub async fn nic_detach(&self, id: i64, nic_id: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.vm.detachnic", vec![int(id), int(nic_id)])
            .await
    }

    /// `one.vm.snapshotcreate`: a system snapshot. Returns its id.
    pub async fn snapshot_create(&self, id: i64, name: &str) -> Result<i64, OcaError> {
        self.c
            .call_int("one.vm.snapshotcreate", vec![int(id), string(name)])
            .await
    }

    /// `one.vm.snapshotrevert`.
    pub async fn snapshot_revert(&self, id: i64, snapshot_id: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.vm.snapshotrevert", vec![int(id), int(snapshot_id)])
            .await
    }

    /// `one.vm.snapshotdelete`.
    pub async fn snapshot_delete(&self, id: i64, snapshot_id: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.vm.snapshotdelete", vec![int(id), int(snapshot_id)])
            .await
    }

    /// `one.vm.disksnapshotcreate`. Returns the snapshot id.
    pub async fn disk_snapshot_create(
        &self,
        id: i64,
        disk_id: i64,
        name: &str,
    ) -> Result<i64, OcaError> {
        self.c
            .call_int(
                "one.vm.disksnapshotcreate",
                vec![int(id), int(disk_id), string(name)],
            )
            .await
    }

    /// `one.vm.disksnapshotrevert`.
    pub async fn disk_snapshot_revert(
        &self,
        id: i64,
        disk_id: i64,
        snapshot_id: i64,
    ) -> Result<(), OcaError> {
        self.c
            .call_done(
                "one.vm.disksnapshotrevert",
                vec![int(id), int(disk_id), int(snapshot_id)],
            )
            .await
    }

    /// `one.vm.disksnapshotdelete`.
    pub async fn disk_snapshot_delete(
        &self,
        id: i64,
        disk_id: i64,
        snapshot_id: i64,
    ) -> Result<(), OcaError> {
        self.c
            .call_done(
                "one.vm.disksnapshotdelete",
                vec![int(id), int(disk_id), int(snapshot_id)],
            )
            .await
    }

    /// `one.vm.disksnapshotrename`.
    pub async fn disk_snapshot_rename(
        &self,
        id: i64,
        disk_id: i64,
        snapshot_id: i64,
        name: &str,
    ) -> Result<(), OcaError> {
        self.c
            .call_done(
                "one.vm.disksnapshotrename",
                vec![int(id), int(disk_id), int(snapshot_id), string(name)],
            )
            .await
    }

    /// `one.vm.resize`: new CPU / VCPU / MEMORY from `template`; `enforce` checks host
    /// capacity and quotas.
    pub async fn resize(&self, id: i64, template: &str, enforce: bool) -> Result<(), OcaError> {
        self.c
            .call_done(
                "one.vm.resize",
                vec![int(id), string(template), boolean(enforce)],
            )
            .await
    }

    /// `one.vm.updateconf`: OS, FEATURES, INPUT, GRAPHICS, RAW, CONTEXT, ... of the VM.
    pub async fn updateconf(
        &self,
        id: i64,
        template: &str,
        mode: UpdateMode,
    ) -> Result<(), OcaError> {
        self.c
            .call_done(
                "one.vm.updateconf",
                vec![int(id), string(template), int(mode.num())],
            )
            .await
    }

    /// `one.vm.monitoring`: the VM's monitoring records, oldest first.
    pub async fn monitoring(&self, id: i64) -> Result<Vec<Template>, OcaError> {
        let xml = self
            .c
            .call_string("one.vm.monitoring", vec![int(id)])
            .await?;
        crate::objects::monitoring_from_xml(&xml)
    }
}
