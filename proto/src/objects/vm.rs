//! VM documents (vm.xsd, vm_pool.xsd, vm_pool_extended.xsd).
//!
//! Three renderings share one struct: the full document of `one.vm.info` (every HISTORY
//! record), the extended pool body of `one.vmpool.infoextended` (same shape, last record only)
//! and the short pool body of `one.vmpool.info`. Listing 20,000 VMs is a hot path, so every
//! rendering writes straight into the caller's [`XmlWriter`].

use super::{Header, Lock};
use crate::state::{LcmState, VmState};
use crate::template::{AttrValue, Attribute, Template, Vector, write_attr_xml};
use crate::xml::XmlWriter;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vm {
    pub header: Header,
    pub last_poll: i64,
    pub state: VmState,
    pub lcm_state: LcmState,
    pub prev_state: VmState,
    pub prev_lcm_state: LcmState,
    pub resched: i32,
    pub stime: i64,
    pub etime: i64,
    pub deploy_id: String,
    /// Last monitoring values (CPU, MEMORY, NETRX, ..., DISK_SIZE vectors), written sorted,
    /// which is the XSD's order.
    #[serde(default)]
    pub monitoring: Template,
    /// Ids of the scheduled actions of the VM (SCHED_ACTIONS).
    #[serde(default)]
    pub sched_actions: Vec<i64>,
    pub template: Template,
    pub user_template: Template,
    /// Every placement of the VM, oldest first (SEQ 0, 1, ...); the last one is current.
    #[serde(default)]
    pub history: Vec<History>,
    /// Snapshots of each disk that has any.
    #[serde(default)]
    pub snapshots: Vec<DiskSnapshots>,
    #[serde(default)]
    pub backups: Backups,
    /// The lifecycle operation in flight, if any (oned's own record; not in the XML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<VmOperation>,
}

/// A lifecycle operation in flight, persisted with the VM so that a restarted oned resumes
/// (or unwinds) it. The VM's LCM state says which phase runs; this says why and with what.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmOperation {
    /// The action that started it, as HISTORY ACTION names it ("terminate-hard",
    /// "disk-attach", ...).
    pub action: String,
    /// Bumped at every phase change, so the answer of a superseded phase is ignored.
    pub generation: u64,
    /// Set when a step of the phase failed: what remains is undoing the steps done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// Arguments: DISK_ID, NIC_ID, SNAPSHOT_ID, HARD, MIGRATE_TYPE, ...
    #[serde(default)]
    pub args: std::collections::BTreeMap<String, String>,
}

/// One HISTORY record: a stay of the VM on a host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub oid: i64,
    pub seq: i64,
    pub hostname: String,
    pub hid: i64,
    pub cid: i64,
    pub stime: i64,
    pub etime: i64,
    pub vm_mad: String,
    pub tm_mad: String,
    pub ds_id: i64,
    pub plan_id: i64,
    pub action_id: i64,
    pub pstime: i64,
    pub petime: i64,
    pub rstime: i64,
    pub retime: i64,
    pub estime: i64,
    pub eetime: i64,
    /// The VMActions code that ended this record (0 none).
    pub action: i32,
    pub uid: i64,
    pub gid: i64,
    pub request_id: String,
}

/// The snapshot tree of one disk (SNAPSHOTS).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSnapshots {
    pub allow_orphans: String,
    pub current_base: i64,
    pub disk_id: i64,
    pub next_snapshot: i64,
    pub snapshots: Vec<DiskSnapshot>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSnapshot {
    pub active: bool,
    /// Comma-separated ids of the children ("" for none).
    pub children: String,
    pub date: i64,
    pub id: i64,
    pub name: String,
    pub parent: i64,
    pub size: i64,
}

/// BACKUPS: the backup configuration and the ids of the backup images.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backups {
    /// BACKUP_CONFIG attributes (all optional; written sorted, which is the XSD's order).
    pub config: Template,
    pub ids: Vec<i64>,
}

/// The attributes the XSD allows in a VM's TEMPLATE, in its `xs:sequence` order. It is nearly
/// alphabetical, but not quite (HYPERV_OPTIONS before GRAPHICS, VIDEO before IMPORTED,
/// MEMORY_ENCRYPTION after TPM, SCHED_ACTION last), so plain sorting is not enough.
pub const TEMPLATE_ORDER: &[&str] = &[
    "AUTOMATIC_DS_REQUIREMENTS",
    "AUTOMATIC_NIC_REQUIREMENTS",
    "AUTOMATIC_REQUIREMENTS",
    "CLONING_TEMPLATE_ID",
    "CONTEXT",
    "CPU",
    "CPU_COST",
    "DISK",
    "DISK_COST",
    "EMULATOR",
    "FEATURES",
    "HYPERV_OPTIONS",
    "GRAPHICS",
    "VIDEO",
    "IMPORTED",
    "INPUT",
    "MEMORY",
    "MEMORY_COST",
    "MEMORY_MAX",
    "MEMORY_SLOTS",
    "MEMORY_RESIZE_MODE",
    "NIC",
    "NIC_ALIAS",
    "NIC_DEFAULT",
    "NUMA_NODE",
    "OS",
    "PCI",
    "QEMU_GA_EXEC",
    "RAW",
    "SECURITY_GROUP_RULE",
    "SNAPSHOT",
    "SPICE_OPTIONS",
    "SUBMIT_ON_HOLD",
    "TEMPLATE_ID",
    "TM_MAD_SYSTEM",
    "TOPOLOGY",
    "TPM",
    "MEMORY_ENCRYPTION",
    "VCPU",
    "VCPU_MAX",
    "VMGROUP",
    "VMID",
    "VROUTER_ID",
    "VROUTER_KEEPALIVED_ID",
    "VROUTER_KEEPALIVED_PASSWORD",
    "SCHED_ACTION",
];

/// Position of an attribute in [`TEMPLATE_ORDER`]; names the XSD does not know go just before
/// SCHED_ACTION (they make the document invalid wherever they are; allocation keeps them in
/// USER_TEMPLATE, so only later changes could put one there).
fn template_rank(name: &str) -> usize {
    TEMPLATE_ORDER
        .iter()
        .position(|n| *n == name)
        .unwrap_or(TEMPLATE_ORDER.len() - 1)
}

const TM_MAD_SYSTEM_RANK: usize = 34;
const VMID_RANK: usize = 41;

/// VIDEO children in the XSD's order (not alphabetical).
const VIDEO_ORDER: &[&str] = &["TYPE", "IOMMU", "ATS", "VRAM", "RESOLUTION"];

/// SCHED_ACTION children in the XSD's order, with the value written when one is missing (all
/// are required).
const SCHED_ACTION_ORDER: &[(&str, &str)] = &[
    ("ID", "-1"),
    ("PARENT_ID", "-1"),
    ("TYPE", "VM"),
    ("ACTION", ""),
    ("ARGS", ""),
    ("TIME", ""),
    ("REPEAT", "-1"),
    ("DAYS", ""),
    ("END_TYPE", "-1"),
    ("END_VALUE", "-1"),
    ("DONE", "-1"),
    ("MESSAGE", ""),
    ("WARNING", "0"),
];

/// Sub-attributes of a DISK in the short pool body, always written (empty when unset).
const SHORT_DISK: &[&str] = &[
    "DISK_ID",
    "DATASTORE",
    "DATASTORE_ID",
    "IMAGE",
    "IMAGE_ID",
    "SIZE",
    "TYPE",
    "CLONE",
    "CLONE_TARGET",
    "LN_TARGET",
    "DISK_SNAPSHOT_TOTAL_SIZE",
];

/// NIC sub-attributes of the short body written only when set, then those always written.
const SHORT_NIC_OPTIONAL: &[&str] = &[
    "IP",
    "EXTERNAL_IP",
    "IP6",
    "IP6_ULA",
    "IP6_LINK",
    "IP6_GLOBAL",
    "NETWORK_MODE",
    "SCHED_REQUIREMENTS",
    "SCHED_RANK",
];
const SHORT_NIC_ALWAYS: &[&str] = &["MAC", "NETWORK", "NETWORK_ID", "NIC_ID", "SECURITY_GROUPS"];

/// USER_TEMPLATE attributes kept in the short body (what Sunstone and the scheduler read).
const SHORT_USER: &[&str] = &[
    "SCHED_RANK",
    "SCHED_DS_RANK",
    "SCHED_REQUIREMENTS",
    "SCHED_DS_REQUIREMENTS",
    "USER_PRIORITY",
];

impl Vm {
    /// The state name OpenNebula reports in messages: the LCM state while ACTIVE.
    pub fn state_str(&self) -> &'static str {
        if self.state == VmState::Active {
            self.lcm_state.name()
        } else {
            self.state.name()
        }
    }

    /// The current placement, if the VM was ever deployed.
    pub fn last_history(&self) -> Option<&History> {
        self.history.last()
    }

    /// The full document (`one.vm.info`): every HISTORY record.
    pub fn write_xml(&self, w: &mut XmlWriter) {
        self.write_full(w, false);
    }

    /// The body of `one.vmpool.infoextended`: as the full document, last HISTORY record only.
    pub fn write_extended_xml(&self, w: &mut XmlWriter) {
        self.write_full(w, true);
    }

    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::with_capacity(4096);
        self.write_xml(&mut w);
        w.finish()
    }

    fn write_full(&self, w: &mut XmlWriter, last_history_only: bool) {
        let h = &self.header;
        w.open("VM");
        h.write_ids_names(w);
        h.perms.write_xml(w);
        w.num("LAST_POLL", self.last_poll)
            .num("STATE", self.state.num())
            .num("LCM_STATE", self.lcm_state.num())
            .num("PREV_STATE", self.prev_state.num())
            .num("PREV_LCM_STATE", self.prev_lcm_state.num())
            .num("RESCHED", self.resched)
            .num("STIME", self.stime)
            .num("ETIME", self.etime)
            .text("DEPLOY_ID", &self.deploy_id);
        h.write_lock(w);
        self.monitoring.write_xml(w, "MONITORING");
        super::write_ids(w, "SCHED_ACTIONS", &self.sched_actions);
        self.write_template(w);
        self.user_template.write_xml(w, "USER_TEMPLATE");
        let records: &[History] = if last_history_only {
            let n = self.history.len();
            &self.history[n.saturating_sub(1)..]
        } else {
            &self.history
        };
        if records.is_empty() {
            w.empty("HISTORY_RECORDS");
        } else {
            w.open("HISTORY_RECORDS");
            for r in records {
                r.write_xml(w);
            }
            w.close("HISTORY_RECORDS");
        }
        for s in &self.snapshots {
            s.write_xml(w);
        }
        self.backups.write_xml(w);
        w.close("VM");
    }

    /// TEMPLATE in the XSD's order, with the required TM_MAD_SYSTEM and VMID written even when
    /// the stored template lacks them.
    fn write_template(&self, w: &mut XmlWriter) {
        let mut order: Vec<(usize, &Attribute)> = self
            .template
            .attrs
            .iter()
            .map(|a| (template_rank(&a.name), a))
            .collect();
        // Stable: repeated names (DISK, NIC) keep their order; unknown names sort by name.
        order.sort_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                if a.0 == TEMPLATE_ORDER.len() - 1 && a.1.name != b.1.name {
                    sched_last(&a.1.name, &b.1.name)
                } else {
                    std::cmp::Ordering::Equal
                }
            })
        });
        let has_tm = order.iter().any(|(r, _)| *r == TM_MAD_SYSTEM_RANK);
        let has_vmid = order.iter().any(|(r, _)| *r == VMID_RANK);
        w.open("TEMPLATE");
        let mut wrote_tm = has_tm;
        let mut wrote_vmid = has_vmid;
        for (rank, a) in order {
            if !wrote_tm && rank > TM_MAD_SYSTEM_RANK {
                w.empty("TM_MAD_SYSTEM");
                wrote_tm = true;
            }
            if !wrote_vmid && rank > VMID_RANK {
                w.num("VMID", self.header.id);
                wrote_vmid = true;
            }
            match (a.name.as_str(), &a.value) {
                ("VIDEO", AttrValue::Vector(v)) => write_vector_ordered(w, "VIDEO", v, VIDEO_ORDER),
                ("SCHED_ACTION", AttrValue::Vector(v)) => write_sched_action(w, v),
                _ => write_attr_xml(w, &a.name, &a.value),
            }
        }
        if !wrote_tm {
            w.empty("TM_MAD_SYSTEM");
        }
        if !wrote_vmid {
            w.num("VMID", self.header.id);
        }
        w.close("TEMPLATE");
    }

    /// The short body of `one.vmpool.info` (vm_pool.xsd).
    pub fn write_short_xml(&self, w: &mut XmlWriter) {
        let h = &self.header;
        w.open("VM");
        h.write_ids_names(w);
        w.num("LAST_POLL", self.last_poll)
            .num("STATE", self.state.num())
            .num("LCM_STATE", self.lcm_state.num())
            .num("RESCHED", self.resched)
            .num("STIME", self.stime)
            .num("ETIME", self.etime)
            .text("DEPLOY_ID", &self.deploy_id);
        if let Some(Lock { level, .. }) = &h.lock {
            w.open("LOCK").num("LOCKED", level).close("LOCK");
        }
        let t = &self.template;
        w.open("TEMPLATE")
            .text("CPU", t.get("CPU").unwrap_or(""))
            .text("MEMORY", t.get("MEMORY").unwrap_or(""))
            .text("VCPU", t.get("VCPU").unwrap_or(""));
        for d in t.vectors("DISK") {
            w.open("DISK");
            for name in SHORT_DISK {
                w.text(name, d.get(name).unwrap_or(""));
            }
            w.close("DISK");
        }
        for n in t.vectors("NIC") {
            w.open("NIC");
            for name in SHORT_NIC_OPTIONAL {
                if let Some(v) = n.get(name).filter(|v| !v.is_empty()) {
                    w.text(name, v);
                }
            }
            for name in SHORT_NIC_ALWAYS {
                w.text(name, n.get(name).unwrap_or(""));
            }
            w.close("NIC");
        }
        let graphics = t
            .attrs
            .iter()
            .find(|a| a.name == "GRAPHICS" && matches!(a.value, AttrValue::Vector(_)));
        if let Some(g) = graphics {
            write_attr_xml(w, &g.name, &g.value);
        }
        w.close("TEMPLATE");
        if self.monitoring.is_empty() {
            w.empty("MONITORING");
        } else {
            w.open("MONITORING");
            for name in ["CPU", "MEMORY", "STATE"] {
                if let Some(v) = self.monitoring.get(name) {
                    w.text(name, v);
                }
            }
            w.close("MONITORING");
        }
        self.write_short_user_template(w);
        match self.history.last() {
            Some(r) => {
                w.open("HISTORY_RECORDS");
                r.write_short_xml(w);
                w.close("HISTORY_RECORDS");
            }
            None => {
                w.empty("HISTORY_RECORDS");
            }
        }
        w.close("VM");
    }

    fn write_short_user_template(&self, w: &mut XmlWriter) {
        let u = &self.user_template;
        if u.is_empty() {
            w.empty("USER_TEMPLATE");
            return;
        }
        w.open("USER_TEMPLATE");
        for name in ["LABELS", "ERROR", "SCHED_MESSAGE"] {
            if let Some(v) = u.get(name).filter(|v| !v.is_empty()) {
                w.text(name, v);
            }
        }
        for name in SHORT_USER {
            if let Some(v) = u.get(name) {
                w.text(name, v);
            }
        }
        for a in &u.attrs {
            if a.name == "SCHED_ACTION" {
                write_attr_xml(w, &a.name, &a.value);
            }
        }
        w.close("USER_TEMPLATE");
    }
}

/// Order of unknown names among themselves: alphabetical, but SCHED_ACTION after all.
fn sched_last(a: &str, b: &str) -> std::cmp::Ordering {
    match (a == "SCHED_ACTION", b == "SCHED_ACTION") {
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.cmp(b),
    }
}

/// Writes a vector with the children named in `order` first, in that order, then any other
/// sub-attribute sorted by name.
fn write_vector_ordered(w: &mut XmlWriter, tag: &str, v: &Vector, order: &[&str]) {
    if v.attrs.is_empty() {
        w.empty(tag);
        return;
    }
    w.open(tag);
    for name in order {
        if let Some(val) = v.get(name) {
            w.text(name, val);
        }
    }
    let mut rest: Vec<&(String, String)> = v
        .attrs
        .iter()
        .filter(|(n, _)| !order.contains(&n.as_str()))
        .collect();
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    for (n, val) in rest {
        w.text(n, val);
    }
    w.close(tag);
}

/// SCHED_ACTION in the shared.xsd order, every required child present.
fn write_sched_action(w: &mut XmlWriter, v: &Vector) {
    w.open("SCHED_ACTION");
    for (name, default) in SCHED_ACTION_ORDER {
        w.text(name, v.get(name).unwrap_or(default));
    }
    w.close("SCHED_ACTION");
}

impl History {
    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("HISTORY")
            .num("OID", self.oid)
            .num("SEQ", self.seq)
            .text("HOSTNAME", &self.hostname)
            .num("HID", self.hid)
            .num("CID", self.cid)
            .num("STIME", self.stime)
            .num("ETIME", self.etime)
            .text("VM_MAD", &self.vm_mad)
            .text("TM_MAD", &self.tm_mad)
            .num("DS_ID", self.ds_id)
            .num("PLAN_ID", self.plan_id)
            .num("ACTION_ID", self.action_id)
            .num("PSTIME", self.pstime)
            .num("PETIME", self.petime)
            .num("RSTIME", self.rstime)
            .num("RETIME", self.retime)
            .num("ESTIME", self.estime)
            .num("EETIME", self.eetime)
            .num("ACTION", self.action)
            .num("UID", self.uid)
            .num("GID", self.gid)
            .text("REQUEST_ID", &self.request_id)
            .close("HISTORY");
    }

    pub fn write_short_xml(&self, w: &mut XmlWriter) {
        w.open("HISTORY")
            .num("OID", self.oid)
            .num("SEQ", self.seq)
            .text("HOSTNAME", &self.hostname)
            .num("HID", self.hid)
            .num("CID", self.cid)
            .num("DS_ID", self.ds_id)
            .text("VM_MAD", &self.vm_mad)
            .text("TM_MAD", &self.tm_mad)
            .num("ACTION", self.action)
            .close("HISTORY");
    }
}

impl DiskSnapshots {
    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("SNAPSHOTS")
            .text("ALLOW_ORPHANS", &self.allow_orphans)
            .num("CURRENT_BASE", self.current_base)
            .num("DISK_ID", self.disk_id)
            .num("NEXT_SNAPSHOT", self.next_snapshot);
        for s in &self.snapshots {
            w.open("SNAPSHOT");
            if s.active {
                w.text("ACTIVE", "YES");
            }
            if !s.children.is_empty() {
                w.text("CHILDREN", &s.children);
            }
            w.num("DATE", s.date).num("ID", s.id);
            if !s.name.is_empty() {
                w.text("NAME", &s.name);
            }
            w.num("PARENT", s.parent)
                .num("SIZE", s.size)
                .close("SNAPSHOT");
        }
        w.close("SNAPSHOTS");
    }
}

impl Backups {
    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("BACKUPS");
        self.config.write_xml(w, "BACKUP_CONFIG");
        super::write_ids(w, "BACKUP_IDS", &self.ids);
        w.close("BACKUPS");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Permissions;

    fn header(id: i64) -> Header {
        Header {
            id,
            uid: 2,
            gid: 1,
            uname: "alice".into(),
            gname: "users".into(),
            name: format!("web-{id}"),
            perms: Permissions::default(),
            lock: None,
        }
    }

    fn vector(pairs: &[(&str, &str)]) -> Vector {
        let mut v = Vector::new();
        for (n, val) in pairs {
            v.set(n, *val);
        }
        v
    }

    /// A pending VM as allocation leaves it: a volatile disk, a NIC, context, graphics.
    pub(super) fn sample(id: i64) -> Vm {
        let mut t = Template::new();
        t.set("VMID", id.to_string());
        t.set("TM_MAD_SYSTEM", "");
        t.set("CPU", "0.5");
        t.set("VCPU", "2");
        t.set("MEMORY", "512");
        t.push(
            "DISK",
            AttrValue::Vector(vector(&[
                ("DISK_ID", "0"),
                ("TYPE", "fs"),
                ("SIZE", "1024"),
                ("FORMAT", "raw"),
                ("DEV_PREFIX", "vd"),
                ("TARGET", "vda"),
            ])),
        );
        t.push(
            "NIC",
            AttrValue::Vector(vector(&[
                ("NIC_ID", "0"),
                ("NETWORK", "priv & <lab>"),
                ("NETWORK_ID", "3"),
                ("IP", "10.0.0.5"),
                ("MAC", "02:00:0a:00:00:05"),
                ("NAME", "NIC0"),
                ("TARGET", format!("one-{id}-0").as_str()),
            ])),
        );
        t.set_vector(
            "CONTEXT",
            vector(&[
                ("NETWORK", "YES"),
                ("ETH0_IP", "10.0.0.5"),
                ("DISK_ID", "1"),
                ("TARGET", "hda"),
            ]),
        );
        t.set_vector(
            "GRAPHICS",
            vector(&[("TYPE", "VNC"), ("LISTEN", "0.0.0.0")]),
        );
        t.set_vector(
            "VIDEO",
            vector(&[
                ("VRAM", "16384"),
                ("TYPE", "virtio"),
                ("RESOLUTION", "1280x720"),
            ]),
        );
        t.set_vector("HYPERV_OPTIONS", vector(&[("A", "1")]));
        t.set(
            "AUTOMATIC_REQUIREMENTS",
            "(CLUSTER_ID = 0) & !(PIN_POLICY = PINNED)",
        );
        t.set("TEMPLATE_ID", "7");
        let mut u = Template::new();
        u.set("SCHED_REQUIREMENTS", "FREE_CPU > 10");
        u.set("LABELS", "prod");
        u.set("DESCRIPTION", "a \"quoted\" value");
        Vm {
            header: header(id),
            last_poll: 0,
            state: VmState::Pending,
            lcm_state: LcmState::LcmInit,
            prev_state: VmState::Pending,
            prev_lcm_state: LcmState::LcmInit,
            resched: 0,
            stime: 1_700_000_000,
            etime: 0,
            deploy_id: String::new(),
            monitoring: Template::new(),
            sched_actions: Vec::new(),
            template: t,
            user_template: u,
            history: Vec::new(),
            snapshots: Vec::new(),
            backups: Backups::default(),
            op: None,
        }
    }

    fn record(seq: i64) -> History {
        History {
            oid: 5,
            seq,
            hostname: format!("host{seq}"),
            hid: seq,
            cid: 0,
            stime: 10 + seq,
            vm_mad: "kvm".into(),
            tm_mad: "shared".into(),
            action: 27,
            uid: 2,
            gid: 1,
            request_id: "4".into(),
            ..History::default()
        }
    }

    /// An active VM with everything optional: lock, monitoring, history, snapshots, backups.
    pub(super) fn sample_full(id: i64) -> Vm {
        let mut vm = sample(id);
        vm.state = VmState::Active;
        vm.lcm_state = LcmState::Running;
        vm.deploy_id = "1b4c-uuid".into();
        vm.header.lock = Some(Lock {
            level: 2,
            owner: 2,
            time: 1_700_000_100,
            req_id: 9,
        });
        vm.monitoring.set("TIMESTAMP", "1700000200");
        vm.monitoring.set("CPU", "12.5");
        vm.monitoring.set("MEMORY", "524288");
        vm.monitoring.set("ID", id.to_string());
        vm.monitoring.push(
            "DISK_SIZE",
            AttrValue::Vector(vector(&[("ID", "0"), ("SIZE", "20")])),
        );
        vm.monitoring.set("NETRX", "1000");
        vm.history = vec![record(0), record(1)];
        vm.snapshots = vec![DiskSnapshots {
            allow_orphans: "NO".into(),
            current_base: -1,
            disk_id: 0,
            next_snapshot: 2,
            snapshots: vec![
                DiskSnapshot {
                    active: false,
                    children: "1".into(),
                    date: 100,
                    id: 0,
                    name: "base".into(),
                    parent: -1,
                    size: 10,
                },
                DiskSnapshot {
                    active: true,
                    children: String::new(),
                    date: 200,
                    id: 1,
                    name: String::new(),
                    parent: 0,
                    size: 20,
                },
            ],
        }];
        vm.backups.config.set("MODE", "FULL");
        vm.backups.config.set("KEEP_LAST", "3");
        vm.backups.ids = vec![11, 12];
        let mut sa = Vector::new();
        sa.set("ID", "0");
        sa.set("ACTION", "poweroff");
        sa.set("TIME", "1700003600");
        sa.set("PARENT_ID", id.to_string());
        vm.template.push("SCHED_ACTION", AttrValue::Vector(sa));
        vm.sched_actions = vec![0];
        vm
    }

    fn pool(vms: &[Vm], f: impl Fn(&Vm, &mut XmlWriter)) -> String {
        let mut w = XmlWriter::new();
        w.open("VM_POOL");
        for vm in vms {
            f(vm, &mut w);
        }
        w.close("VM_POOL");
        w.finish()
    }

    #[test]
    fn full_document_order_and_content() {
        let xml = sample(5).to_xml();
        assert!(xml.starts_with(
            "<VM><ID>5</ID><UID>2</UID><GID>1</GID><UNAME>alice</UNAME><GNAME>users</GNAME>\
             <NAME>web-5</NAME><PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M>"
        ));
        assert!(xml.contains(
            "<LAST_POLL>0</LAST_POLL><STATE>1</STATE><LCM_STATE>0</LCM_STATE><PREV_STATE>1</PREV_STATE>\
             <PREV_LCM_STATE>0</PREV_LCM_STATE><RESCHED>0</RESCHED><STIME>1700000000</STIME>\
             <ETIME>0</ETIME><DEPLOY_ID></DEPLOY_ID><MONITORING/><SCHED_ACTIONS/><TEMPLATE>"
        ));
        // XSD order: HYPERV_OPTIONS before GRAPHICS, VIDEO children TYPE, VRAM, RESOLUTION.
        let t_start = xml.find("<TEMPLATE>").unwrap();
        let t = &xml[t_start..xml.find("</TEMPLATE>").unwrap()];
        let pos = |s: &str| t.find(s).unwrap_or_else(|| panic!("{s} missing in {t}"));
        let order = [
            "<AUTOMATIC_REQUIREMENTS>",
            "<CONTEXT>",
            "<CPU>",
            "<DISK>",
            "<HYPERV_OPTIONS>",
            "<GRAPHICS>",
            "<VIDEO>",
            "<MEMORY>",
            "<NIC>",
            "<TEMPLATE_ID>",
            "<TM_MAD_SYSTEM>",
            "<VCPU>",
            "<VMID>",
        ];
        for pair in order.windows(2) {
            assert!(
                pos(pair[0]) < pos(pair[1]),
                "{} before {}",
                pair[0],
                pair[1]
            );
        }
        assert!(t.contains(
            "<VIDEO><TYPE>virtio</TYPE><VRAM>16384</VRAM><RESOLUTION>1280x720</RESOLUTION></VIDEO>"
        ));
        assert!(t.contains("<NETWORK>priv &amp; &lt;lab&gt;</NETWORK>"));
        assert!(t.contains(
            "<DISK><DEV_PREFIX>vd</DEV_PREFIX><DISK_ID>0</DISK_ID><FORMAT>raw</FORMAT>\
             <SIZE>1024</SIZE><TARGET>vda</TARGET><TYPE>fs</TYPE></DISK>"
        ));
        assert!(xml.ends_with(
            "<USER_TEMPLATE><DESCRIPTION>a &quot;quoted&quot; value</DESCRIPTION><LABELS>prod</LABELS>\
             <SCHED_REQUIREMENTS>FREE_CPU &gt; 10</SCHED_REQUIREMENTS></USER_TEMPLATE>\
             <HISTORY_RECORDS/><BACKUPS><BACKUP_CONFIG/><BACKUP_IDS/></BACKUPS></VM>"
        ));
    }

    #[test]
    fn required_template_attributes_are_always_written() {
        let mut vm = sample(9);
        vm.template.remove("TM_MAD_SYSTEM");
        vm.template.remove("VMID");
        let xml = vm.to_xml();
        assert!(xml.contains(
            "<TEMPLATE_ID>7</TEMPLATE_ID><TM_MAD_SYSTEM/><VCPU>2</VCPU><VMID>9</VMID></TEMPLATE>"
        ));
        vm.template = Template::new();
        assert!(
            vm.to_xml()
                .contains("<TEMPLATE><TM_MAD_SYSTEM/><VMID>9</VMID></TEMPLATE>")
        );
    }

    #[test]
    fn full_document_with_optional_parts() {
        let vm = sample_full(5);
        let xml = vm.to_xml();
        assert!(xml.contains(
            "<DEPLOY_ID>1b4c-uuid</DEPLOY_ID><LOCK><LOCKED>2</LOCKED><OWNER>2</OWNER>\
             <TIME>1700000100</TIME><REQ_ID>9</REQ_ID></LOCK><MONITORING><CPU>12.5</CPU>\
             <DISK_SIZE><ID>0</ID><SIZE>20</SIZE></DISK_SIZE><ID>5</ID><MEMORY>524288</MEMORY>\
             <NETRX>1000</NETRX><TIMESTAMP>1700000200</TIMESTAMP></MONITORING>\
             <SCHED_ACTIONS><ID>0</ID></SCHED_ACTIONS>"
        ));
        assert!(xml.contains(
            "<VMID>5</VMID><SCHED_ACTION><ID>0</ID><PARENT_ID>5</PARENT_ID><TYPE>VM</TYPE>\
             <ACTION>poweroff</ACTION><ARGS></ARGS><TIME>1700003600</TIME><REPEAT>-1</REPEAT>\
             <DAYS></DAYS><END_TYPE>-1</END_TYPE><END_VALUE>-1</END_VALUE><DONE>-1</DONE>\
             <MESSAGE></MESSAGE><WARNING>0</WARNING></SCHED_ACTION></TEMPLATE>"
        ));
        assert_eq!(xml.matches("<HISTORY>").count(), 2);
        assert!(xml.contains(
            "<HISTORY><OID>5</OID><SEQ>1</SEQ><HOSTNAME>host1</HOSTNAME><HID>1</HID><CID>0</CID>\
             <STIME>11</STIME><ETIME>0</ETIME><VM_MAD>kvm</VM_MAD><TM_MAD>shared</TM_MAD>\
             <DS_ID>0</DS_ID><PLAN_ID>0</PLAN_ID><ACTION_ID>0</ACTION_ID><PSTIME>0</PSTIME>\
             <PETIME>0</PETIME><RSTIME>0</RSTIME><RETIME>0</RETIME><ESTIME>0</ESTIME>\
             <EETIME>0</EETIME><ACTION>27</ACTION><UID>2</UID><GID>1</GID>\
             <REQUEST_ID>4</REQUEST_ID></HISTORY>"
        ));
        assert!(xml.ends_with(
            "</HISTORY_RECORDS><SNAPSHOTS><ALLOW_ORPHANS>NO</ALLOW_ORPHANS><CURRENT_BASE>-1</CURRENT_BASE>\
             <DISK_ID>0</DISK_ID><NEXT_SNAPSHOT>2</NEXT_SNAPSHOT><SNAPSHOT><CHILDREN>1</CHILDREN>\
             <DATE>100</DATE><ID>0</ID><NAME>base</NAME><PARENT>-1</PARENT><SIZE>10</SIZE></SNAPSHOT>\
             <SNAPSHOT><ACTIVE>YES</ACTIVE><DATE>200</DATE><ID>1</ID><PARENT>0</PARENT><SIZE>20</SIZE>\
             </SNAPSHOT></SNAPSHOTS><BACKUPS><BACKUP_CONFIG><KEEP_LAST>3</KEEP_LAST><MODE>FULL</MODE>\
             </BACKUP_CONFIG><BACKUP_IDS><ID>11</ID><ID>12</ID></BACKUP_IDS></BACKUPS></VM>"
        ));
        assert_eq!(vm.state_str(), "RUNNING");
        assert_eq!(sample(1).state_str(), "PENDING");
    }

    #[test]
    fn extended_body_keeps_last_history_record() {
        let vm = sample_full(5);
        let mut w = XmlWriter::new();
        vm.write_extended_xml(&mut w);
        let xml = w.finish();
        assert_eq!(xml.matches("<HISTORY>").count(), 1);
        assert!(xml.contains("<SEQ>1</SEQ>"));
        assert!(!xml.contains("<SEQ>0</SEQ>"));
    }

    #[test]
    fn short_body() {
        let vm = sample_full(5);
        let mut w = XmlWriter::new();
        vm.write_short_xml(&mut w);
        let xml = w.finish();
        assert_eq!(
            xml,
            "<VM><ID>5</ID><UID>2</UID><GID>1</GID><UNAME>alice</UNAME><GNAME>users</GNAME>\
             <NAME>web-5</NAME><LAST_POLL>0</LAST_POLL><STATE>3</STATE><LCM_STATE>3</LCM_STATE>\
             <RESCHED>0</RESCHED><STIME>1700000000</STIME><ETIME>0</ETIME>\
             <DEPLOY_ID>1b4c-uuid</DEPLOY_ID><LOCK><LOCKED>2</LOCKED></LOCK><TEMPLATE>\
             <CPU>0.5</CPU><MEMORY>512</MEMORY><VCPU>2</VCPU><DISK><DISK_ID>0</DISK_ID>\
             <DATASTORE></DATASTORE><DATASTORE_ID></DATASTORE_ID><IMAGE></IMAGE><IMAGE_ID></IMAGE_ID>\
             <SIZE>1024</SIZE><TYPE>fs</TYPE><CLONE></CLONE><CLONE_TARGET></CLONE_TARGET>\
             <LN_TARGET></LN_TARGET><DISK_SNAPSHOT_TOTAL_SIZE></DISK_SNAPSHOT_TOTAL_SIZE></DISK>\
             <NIC><IP>10.0.0.5</IP><MAC>02:00:0a:00:00:05</MAC><NETWORK>priv &amp; &lt;lab&gt;</NETWORK>\
             <NETWORK_ID>3</NETWORK_ID><NIC_ID>0</NIC_ID><SECURITY_GROUPS></SECURITY_GROUPS></NIC>\
             <GRAPHICS><LISTEN>0.0.0.0</LISTEN><TYPE>VNC</TYPE></GRAPHICS></TEMPLATE>\
             <MONITORING><CPU>12.5</CPU><MEMORY>524288</MEMORY></MONITORING>\
             <USER_TEMPLATE><LABELS>prod</LABELS><SCHED_REQUIREMENTS>FREE_CPU &gt; 10</SCHED_REQUIREMENTS>\
             </USER_TEMPLATE><HISTORY_RECORDS><HISTORY><OID>5</OID><SEQ>1</SEQ><HOSTNAME>host1</HOSTNAME>\
             <HID>1</HID><CID>0</CID><DS_ID>0</DS_ID><VM_MAD>kvm</VM_MAD><TM_MAD>shared</TM_MAD>\
             <ACTION>27</ACTION></HISTORY></HISTORY_RECORDS></VM>"
        );
        let mut bare = sample(1);
        bare.user_template = Template::new();
        bare.template = Template::new();
        let mut w = XmlWriter::new();
        bare.write_short_xml(&mut w);
        let xml = w.finish();
        assert!(xml.contains(
            "<TEMPLATE><CPU></CPU><MEMORY></MEMORY><VCPU></VCPU></TEMPLATE><MONITORING/>\
             <USER_TEMPLATE/><HISTORY_RECORDS/></VM>"
        ));
    }

    #[test]
    fn rank_constants_match_the_order() {
        assert_eq!(TEMPLATE_ORDER[TM_MAD_SYSTEM_RANK], "TM_MAD_SYSTEM");
        assert_eq!(TEMPLATE_ORDER[VMID_RANK], "VMID");
        assert_eq!(TEMPLATE_ORDER.last(), Some(&"SCHED_ACTION"));
    }

    /// Listing 20,000 VMs must take well under 0.5 s (run with `--release --ignored`).
    #[test]
    #[ignore]
    fn render_20000_vms_bench() {
        let vms: Vec<Vm> = (0..20_000).map(sample).collect();
        for (label, short) in [("short", true), ("extended", false)] {
            let start = std::time::Instant::now();
            let xml = pool(&vms, |v, w| {
                if short {
                    v.write_short_xml(w)
                } else {
                    v.write_extended_xml(w)
                }
            });
            println!("{label}: {:?} for {} bytes", start.elapsed(), xml.len());
        }
    }

    /// The samples validate against the reference XSDs (when xmllint and the checker exist).
    #[test]
    fn samples_validate_against_xsd() {
        let vms = [sample(1), sample_full(2)];
        let mut docs: Vec<(String, Option<&str>, String)> = Vec::new();
        for vm in &vms {
            docs.push((format!("vm-{}.xml", vm.header.id), None, vm.to_xml()));
        }
        docs.push((
            "pool-short.xml".into(),
            Some("vm_pool.xsd"),
            pool(&vms, |v, w| v.write_short_xml(w)),
        ));
        docs.push((
            "pool-extended.xml".into(),
            Some("vm_pool_extended.xsd"),
            pool(&vms, |v, w| v.write_extended_xml(w)),
        ));
        docs.push((
            "pool-empty.xml".into(),
            Some("vm_pool.xsd"),
            pool(&[], |_, _| {}),
        ));
        for (name, schema, xml) in docs {
            crate::objects::xsd::check_with(&name, &xml, schema);
        }
    }
}
