//! `VM` (vm.xsd) and the short VM body of `VM_POOL` (vm_pool.xsd).

use super::{Lock, Object, Ownership, Permissions, flag, ids, int, int_or, int32, text};
use crate::dom::Element;
use crate::template::{Template, Vector, child_template, serde_template};
use one_proto::state::{LcmState, VmState};
use serde::{Deserialize, Serialize};

/// A virtual machine. From `one.vmpool.info` (short bodies) PERMISSIONS, SNAPSHOTS and most
/// of TEMPLATE are absent; `one.vm.info` and `one.vmpool.infoextended` give everything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Vm {
    pub id: i64,
    #[serde(flatten)]
    pub owner: Ownership,
    pub name: String,
    pub permissions: Option<Permissions>,
    pub last_poll: i64,
    /// STATE ([`VmState`] numbers).
    pub state: i32,
    /// LCM_STATE ([`LcmState`] numbers; meaningful while ACTIVE).
    pub lcm_state: i32,
    pub prev_state: i32,
    pub prev_lcm_state: i32,
    pub resched: bool,
    /// Submission time (epoch seconds).
    pub stime: i64,
    /// End time, 0 until DONE.
    pub etime: i64,
    pub deploy_id: String,
    pub lock: Option<Lock>,
    #[serde(with = "serde_template")]
    pub monitoring: Template,
    #[serde(with = "serde_template")]
    pub template: Template,
    #[serde(with = "serde_template")]
    pub user_template: Template,
    /// HISTORY records, oldest first (pool bodies carry only the last).
    pub history: Vec<History>,
    /// Disk snapshot trees, one per disk that has snapshots.
    pub snapshots: Vec<DiskSnapshots>,
    #[serde(with = "serde_template")]
    pub backup_config: Template,
    pub backup_ids: Vec<i64>,
}

/// One stay of the VM on a host (`HISTORY`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub seq: i64,
    pub hostname: String,
    pub hid: i64,
    /// Cluster id (-1 none).
    pub cid: i64,
    pub stime: i64,
    pub etime: i64,
    pub vm_mad: String,
    pub tm_mad: String,
    pub ds_id: i64,
    pub pstime: i64,
    pub petime: i64,
    pub rstime: i64,
    pub retime: i64,
    pub estime: i64,
    pub eetime: i64,
    /// The VMActions code that ended the record (see [`history_action_name`]).
    pub action: i32,
    pub uid: i64,
    pub gid: i64,
    pub request_id: String,
}

/// The snapshot tree of one disk (`SNAPSHOTS`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSnapshots {
    pub disk_id: i64,
    pub allow_orphans: String,
    pub current_base: i64,
    pub next_snapshot: i64,
    pub snapshots: Vec<DiskSnapshot>,
}

/// One disk (or image) snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSnapshot {
    pub id: i64,
    pub name: String,
    pub active: bool,
    /// Comma-separated child ids ("" for none).
    pub children: String,
    pub parent: i64,
    /// Creation time (epoch seconds).
    pub date: i64,
    /// Size in MB.
    pub size: i64,
}

impl DiskSnapshot {
    pub(crate) fn from_element(e: Element<'_>) -> DiskSnapshot {
        DiskSnapshot {
            id: int(e, "ID"),
            name: text(e, "NAME"),
            active: flag(e, "ACTIVE"),
            children: text(e, "CHILDREN"),
            parent: int_or(e, "PARENT", -1),
            date: int(e, "DATE"),
            size: int(e, "SIZE"),
        }
    }
}

impl History {
    fn from_element(e: Element<'_>) -> History {
        History {
            seq: int(e, "SEQ"),
            hostname: text(e, "HOSTNAME"),
            hid: int_or(e, "HID", -1),
            cid: int_or(e, "CID", -1),
            stime: int(e, "STIME"),
            etime: int(e, "ETIME"),
            vm_mad: text(e, "VM_MAD"),
            tm_mad: text(e, "TM_MAD"),
            ds_id: int_or(e, "DS_ID", -1),
            pstime: int(e, "PSTIME"),
            petime: int(e, "PETIME"),
            rstime: int(e, "RSTIME"),
            retime: int(e, "RETIME"),
            estime: int(e, "ESTIME"),
            eetime: int(e, "EETIME"),
            action: int32(e, "ACTION"),
            uid: int_or(e, "UID", -1),
            gid: int_or(e, "GID", -1),
            request_id: e.child_text("REQUEST_ID").unwrap_or("-1").to_owned(),
        }
    }

    /// The name of the action that ended this record (`poweroff`, `live-migrate`, ...).
    pub fn action_name(&self) -> &'static str {
        history_action_name(self.action)
    }
}

impl Object for Vm {
    const ROOT: &'static str = "VM";
    const POOL_ROOT: &'static str = "VM_POOL";
    const KIND: &'static str = "virtual machine";

    fn from_element(e: Element<'_>) -> Vm {
        let mut vm = Vm {
            id: int(e, "ID"),
            owner: Ownership::from_element(e),
            name: text(e, "NAME"),
            permissions: e.child("PERMISSIONS").map(Permissions::from_element),
            last_poll: int(e, "LAST_POLL"),
            state: int32(e, "STATE"),
            lcm_state: int32(e, "LCM_STATE"),
            prev_state: int32(e, "PREV_STATE"),
            prev_lcm_state: int32(e, "PREV_LCM_STATE"),
            resched: flag(e, "RESCHED"),
            stime: int(e, "STIME"),
            etime: int(e, "ETIME"),
            deploy_id: text(e, "DEPLOY_ID"),
            lock: Lock::from_parent(e),
            ..Vm::default()
        };
        for c in e.children() {
            match c.name() {
                "MONITORING" => vm.monitoring = crate::template::from_element(c),
                "TEMPLATE" => vm.template = crate::template::from_element(c),
                "USER_TEMPLATE" => vm.user_template = crate::template::from_element(c),
                "HISTORY_RECORDS" => {
                    vm.history = c
                        .children_named("HISTORY")
                        .map(History::from_element)
                        .collect()
                }
                "SNAPSHOTS" => vm.snapshots.push(DiskSnapshots {
                    disk_id: int(c, "DISK_ID"),
                    allow_orphans: text(c, "ALLOW_ORPHANS"),
                    current_base: int_or(c, "CURRENT_BASE", -1),
                    next_snapshot: int(c, "NEXT_SNAPSHOT"),
                    snapshots: c
                        .children_named("SNAPSHOT")
                        .map(DiskSnapshot::from_element)
                        .collect(),
                }),
                "BACKUPS" => {
                    vm.backup_config = child_template(c, "BACKUP_CONFIG");
                    vm.backup_ids = ids(c, "BACKUP_IDS");
                }
                _ => {}
            }
        }
        vm
    }

    fn id(&self) -> i64 {
        self.id
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// The states in which a VM is on a host (its last HISTORY record names it).
const ON_HOST: [i32; 3] = [3, 5, 8]; // ACTIVE, SUSPENDED, POWEROFF

impl Vm {
    pub fn state(&self) -> Option<VmState> {
        VmState::from_num(self.state.into())
    }

    pub fn lcm_state(&self) -> Option<LcmState> {
        LcmState::from_num(self.lcm_state.into())
    }

    /// STATE's name (`ACTIVE`), or the number for one this crate does not know.
    pub fn state_name(&self) -> String {
        self.state()
            .map_or_else(|| self.state.to_string(), |s| s.name().to_owned())
    }

    /// LCM_STATE's name (`RUNNING`), or the number.
    pub fn lcm_state_name(&self) -> String {
        self.lcm_state()
            .map_or_else(|| self.lcm_state.to_string(), |s| s.name().to_owned())
    }

    /// The four-letter state `onevm list` shows (`runn`, `poff`, `pend`, ...).
    pub fn short_state(&self) -> &'static str {
        vm_short_state(self.state, self.lcm_state)
    }

    /// The last HISTORY record (the current or last host).
    pub fn last_history(&self) -> Option<&History> {
        self.history.last()
    }

    /// The host the VM is on, when its state places it on one (ACTIVE, SUSPENDED, POWEROFF),
    /// as `onevm list` shows it.
    pub fn host(&self) -> Option<&str> {
        if ON_HOST.contains(&self.state) {
            self.last_history().map(|h| h.hostname.as_str())
        } else {
            None
        }
    }

    /// TEMPLATE/CPU as written (a float: physical CPU share).
    pub fn cpu(&self) -> Option<&str> {
        self.template.get("CPU")
    }

    /// TEMPLATE/VCPU.
    pub fn vcpu(&self) -> Option<&str> {
        self.template.get("VCPU")
    }

    /// TEMPLATE/MEMORY in MB (0 when absent).
    pub fn memory_mb(&self) -> i64 {
        self.template.get("MEMORY").map_or(0, super::parse_int)
    }

    pub fn disks(&self) -> impl Iterator<Item = &Vector> {
        self.template.vectors("DISK")
    }

    pub fn nics(&self) -> impl Iterator<Item = &Vector> {
        self.template.vectors("NIC")
    }

    /// The IP addresses of the VM's NICs (IP, EXTERNAL_IP, IP6_GLOBAL, IP6_ULA, IP6, ...).
    pub fn ips(&self) -> Vec<&str> {
        const ATTRS: [&str; 8] = [
            "IP",
            "EXTERNAL_IP",
            "IP6_GLOBAL",
            "IP6_ULA",
            "IP6",
            "VROUTER_IP",
            "VROUTER_IP6_GLOBAL",
            "VROUTER_IP6_ULA",
        ];
        let mut out = Vec::new();
        for nic in self
            .template
            .vectors("NIC")
            .chain(self.template.vectors("PCI"))
        {
            for a in ATTRS {
                if let Some(v) = nic.get(a) {
                    out.push(v);
                }
            }
        }
        out
    }
}

/// OpenNebula's short VM state: STATE's, or LCM_STATE's while ACTIVE.
pub fn vm_short_state(state: i32, lcm_state: i32) -> &'static str {
    match state {
        0 => "init",
        1 => "pend",
        2 => "hold",
        3 => lcm_short_state(lcm_state),
        4 => "stop",
        5 => "susp",
        6 => "done",
        7 | 11 => "fail",
        8 => "poff",
        9 => "unde",
        10 => "clon",
        _ => "unkn",
    }
}

fn lcm_short_state(lcm: i32) -> &'static str {
    match lcm {
        0 => "init",
        1 | 9 | 31 => "prol",
        2 | 19..=22 | 32 | 35 => "boot",
        3 => "runn",
        4 | 8 | 43 | 45 | 60 => "migr",
        5..=7 => "save",
        10 | 11 | 30 => "epil",
        12 | 13 | 18 | 29 => "shut",
        14 | 36..=42 | 44 | 46..=50 | 61 => "fail",
        15 | 23 => "clea",
        16 => "unkn",
        17 | 25..=28 | 33 | 34 | 65..=68 => "hotp",
        24 | 51..=59 => "snap",
        62..=64 => "drsz",
        69 | 70 => "back",
        71 => "rest",
        _ => "actv",
    }
}

/// The name of a HISTORY/ACTION code (OpenNebula's VMActions).
pub fn history_action_name(action: i32) -> &'static str {
    const NAMES: [&str; 66] = [
        "none",
        "migrate",
        "live-migrate",
        "shutdown",
        "shutdown-hard",
        "undeploy",
        "undeploy-hard",
        "hold",
        "release",
        "stop",
        "suspend",
        "resume",
        "boot",
        "delete",
        "delete-recreate",
        "reboot",
        "reboot-hard",
        "resched",
        "unresched",
        "poweroff",
        "poweroff-hard",
        "disk-attach",
        "disk-detach",
        "nic-attach",
        "nic-detach",
        "disk-snapshot-create",
        "disk-snapshot-delete",
        "terminate",
        "terminate-hard",
        "disk-resize",
        "deploy",
        "chown",
        "chmod",
        "updateconf",
        "rename",
        "resize",
        "update",
        "snapshot-create",
        "snapshot-delete",
        "snapshot-revert",
        "disk-saveas",
        "disk-snapshot-revert",
        "recover",
        "retry",
        "monitor",
        "disk-snapshot-rename",
        "alias-attach",
        "alias-detach",
        "poweroff-migrate",
        "poweroff-hard-migrate",
        "backup",
        "nic-update",
        "backup-cancel",
        "sched-add",
        "sched-update",
        "sched-delete",
        "sg-attach",
        "sg-detach",
        "pci-attach",
        "pci-detach",
        "restore",
        "exec",
        "exec-retry",
        "exec-cancel",
        "vmgroup-add",
        "vmgroup-del",
    ];
    usize::try_from(action)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "<VM><ID>7</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>\
        <GNAME>oneadmin</GNAME><NAME>web-1</NAME><PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1\
        </OWNER_M><OWNER_A>0</OWNER_A><GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A>\
        <OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>\
        <LAST_POLL>0</LAST_POLL><STATE>3</STATE><LCM_STATE>3</LCM_STATE><PREV_STATE>3</PREV_STATE>\
        <PREV_LCM_STATE>3</PREV_LCM_STATE><RESCHED>0</RESCHED><STIME>100</STIME><ETIME>0</ETIME>\
        <DEPLOY_ID>one-7</DEPLOY_ID><LOCK><LOCKED>1</LOCKED><OWNER>0</OWNER><TIME>5</TIME>\
        <REQ_ID>-1</REQ_ID></LOCK><MONITORING><CPU>1.5</CPU></MONITORING>\
        <TEMPLATE><CPU>0.5</CPU><DISK><DISK_ID>0</DISK_ID></DISK><MEMORY>128</MEMORY>\
        <NIC><IP>10.0.0.2</IP><NIC_ID>0</NIC_ID></NIC></TEMPLATE><USER_TEMPLATE><TAG>x</TAG>\
        </USER_TEMPLATE><HISTORY_RECORDS><HISTORY><OID>7</OID><SEQ>0</SEQ><HOSTNAME>h1</HOSTNAME>\
        <HID>1</HID><CID>0</CID><ACTION>19</ACTION></HISTORY><HISTORY><SEQ>1</SEQ>\
        <HOSTNAME>h2</HOSTNAME><HID>2</HID><CID>0</CID></HISTORY></HISTORY_RECORDS>\
        <SNAPSHOTS><ALLOW_ORPHANS>NO</ALLOW_ORPHANS><CURRENT_BASE>-1</CURRENT_BASE>\
        <DISK_ID>0</DISK_ID><NEXT_SNAPSHOT>1</NEXT_SNAPSHOT><SNAPSHOT><ACTIVE>YES</ACTIVE>\
        <DATE>9</DATE><ID>0</ID><NAME>s</NAME><PARENT>-1</PARENT><SIZE>10</SIZE></SNAPSHOT>\
        </SNAPSHOTS><BACKUPS><BACKUP_CONFIG/><BACKUP_IDS/></BACKUPS></VM>";

    #[test]
    fn reads_a_full_vm() {
        let vm = Vm::from_xml(FULL).unwrap();
        assert_eq!((vm.id, vm.name.as_str()), (7, "web-1"));
        assert_eq!(vm.owner.uname, "oneadmin");
        assert_eq!(vm.permissions.unwrap().octal(), 0o600);
        assert_eq!(vm.state(), Some(VmState::Active));
        assert_eq!(vm.lcm_state_name(), "RUNNING");
        assert_eq!(vm.short_state(), "runn");
        assert_eq!(vm.lock.unwrap().level_name(), "Use");
        assert_eq!(vm.cpu(), Some("0.5"));
        assert_eq!(vm.memory_mb(), 128);
        assert_eq!(vm.host(), Some("h2"));
        assert_eq!(vm.history[0].action_name(), "poweroff");
        assert_eq!(vm.ips(), ["10.0.0.2"]);
        assert_eq!(vm.user_template.get("TAG"), Some("x"));
        assert_eq!(vm.snapshots[0].snapshots[0].name, "s");
        assert!(vm.snapshots[0].snapshots[0].active);
        assert_eq!(vm.monitoring.get("CPU"), Some("1.5"));
    }

    #[test]
    fn serde_round_trip() {
        let vm = Vm::from_xml(FULL).unwrap();
        let json = serde_json::to_value(&vm).unwrap();
        assert_eq!(json["uname"], "oneadmin");
        assert_eq!(json["template"]["DISK"]["DISK_ID"], "0");
        let back: Vm = serde_json::from_value(json).unwrap();
        assert_eq!(back, vm);
    }

    #[test]
    fn wrong_root_is_refused() {
        assert!(Vm::from_xml("<HOST><ID>1</ID></HOST>").is_err());
        assert!(Vm::pool_from_xml(FULL).is_err());
        let pool = Vm::pool_from_xml(&format!("<VM_POOL>{FULL}{FULL}</VM_POOL>")).unwrap();
        assert_eq!(pool.len(), 2);
        assert!(Vm::pool_from_xml("<VM_POOL/>").unwrap().is_empty());
    }

    #[test]
    fn short_states() {
        assert_eq!(vm_short_state(1, 0), "pend");
        assert_eq!(vm_short_state(8, 0), "poff");
        assert_eq!(vm_short_state(3, 36), "fail");
        assert_eq!(vm_short_state(3, 17), "hotp");
        assert_eq!(vm_short_state(3, 62), "drsz");
        assert_eq!(vm_short_state(11, 0), "fail");
        assert_eq!(history_action_name(2), "live-migrate");
        assert_eq!(history_action_name(65), "vmgroup-del");
        assert_eq!(history_action_name(-1), "unknown");
    }
}
