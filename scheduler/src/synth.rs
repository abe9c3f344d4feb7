//! Synthetic pool documents shaped like oned's (HOST_POOL, DATASTORE_POOL, VM_POOL), for the
//! placement tests and the `one-sched-bench` benchmark. Going through XML exercises the same
//! parsing path the daemon uses.

use std::fmt::Write;

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn elem(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "<{name}>{}</{name}>", esc(&value.to_string()));
}

/// A host as `one.hostpool.info` shows it; `new` gives a MONITORED dummy host with 8 cores
/// and 16 GB in cluster 0.
#[derive(Clone, Debug)]
pub struct HostSpec {
    pub id: i64,
    pub name: String,
    pub state: i64,
    pub cluster_id: i64,
    pub max_cpu: i64,
    pub max_mem: i64,
    pub cpu_usage: i64,
    pub mem_usage: i64,
    pub running_vms: i64,
    /// MONITORING/CAPACITY/FREE_CPU (absent: no MONITORING section).
    pub free_cpu: Option<i64>,
    /// TEMPLATE attributes (written in this order).
    pub template: Vec<(String, String)>,
    /// HOST_SHARE/DATASTORES/DS entries: (id, free_mb, total_mb).
    pub datastores: Vec<(i64, i64, i64)>,
}

impl HostSpec {
    pub fn new(id: i64) -> HostSpec {
        HostSpec {
            id,
            name: format!("host{id}"),
            state: 2,
            cluster_id: 0,
            max_cpu: 800,
            max_mem: 16 * 1024 * 1024,
            cpu_usage: 0,
            mem_usage: 0,
            running_vms: 0,
            free_cpu: Some(800),
            template: vec![
                ("CPUSPEED".into(), "2200".into()),
                ("HYPERVISOR".into(), "dummy".into()),
            ],
            datastores: Vec::new(),
        }
    }

    pub fn attr(mut self, name: &str, value: impl ToString) -> Self {
        self.template.push((name.to_string(), value.to_string()));
        self
    }

    pub fn write(&self, out: &mut String) {
        out.push_str("<HOST>");
        elem(out, "ID", self.id);
        elem(out, "NAME", &self.name);
        elem(out, "STATE", self.state);
        elem(out, "PREV_STATE", self.state);
        elem(out, "IM_MAD", "dummy");
        elem(out, "VM_MAD", "dummy");
        elem(out, "CLUSTER_ID", self.cluster_id);
        elem(out, "CLUSTER", "default");
        out.push_str("<HOST_SHARE>");
        elem(out, "MEM_USAGE", self.mem_usage);
        elem(out, "CPU_USAGE", self.cpu_usage);
        elem(out, "TOTAL_MEM", self.max_mem);
        elem(out, "TOTAL_CPU", self.max_cpu);
        elem(out, "MAX_MEM", self.max_mem);
        elem(out, "MAX_CPU", self.max_cpu);
        elem(out, "RUNNING_VMS", self.running_vms);
        elem(out, "VMS_THREAD", 0);
        out.push_str("<DATASTORES><DISK_USAGE>0</DISK_USAGE>");
        for (id, free, total) in &self.datastores {
            out.push_str("<DS>");
            elem(out, "FREE_MB", free);
            elem(out, "ID", id);
            elem(out, "TOTAL_MB", total);
            elem(out, "USED_MB", total - free);
            out.push_str("</DS>");
        }
        out.push_str(
            "<FREE_DISK>0</FREE_DISK><MAX_DISK>0</MAX_DISK><USED_DISK>0</USED_DISK></DATASTORES>",
        );
        out.push_str("<PCI_DEVICES/><NUMA_NODES/></HOST_SHARE><VMS/><TEMPLATE>");
        for (k, v) in &self.template {
            elem(out, k, v);
        }
        out.push_str("</TEMPLATE>");
        match self.free_cpu {
            None => out.push_str("<MONITORING/>"),
            Some(free) => {
                out.push_str("<MONITORING><TIMESTAMP>1700000000</TIMESTAMP>");
                elem(out, "ID", self.id);
                out.push_str("<CAPACITY>");
                elem(out, "FREE_CPU", free);
                elem(out, "FREE_MEMORY", self.max_mem - self.mem_usage);
                elem(out, "USED_CPU", self.max_cpu - free);
                elem(out, "USED_MEMORY", self.mem_usage);
                out.push_str(
                    "</CAPACITY><SYSTEM><NETRX>0</NETRX><NETTX>0</NETTX></SYSTEM></MONITORING>",
                );
            }
        }
        out.push_str("</HOST>");
    }
}

pub fn host_pool_xml(hosts: &[HostSpec]) -> String {
    let mut out = String::with_capacity(hosts.len() * 1500);
    out.push_str("<HOST_POOL>");
    for h in hosts {
        h.write(&mut out);
    }
    out.push_str("</HOST_POOL>");
    out
}

/// A datastore; `new` gives a READY shared system datastore in cluster 0 with 100 GB free.
#[derive(Clone, Debug)]
pub struct DsSpec {
    pub id: i64,
    pub name: String,
    pub ds_type: i64,
    pub state: i64,
    pub clusters: Vec<i64>,
    pub total_mb: i64,
    pub free_mb: i64,
    pub shared: bool,
    pub template: Vec<(String, String)>,
}

impl DsSpec {
    pub fn system(id: i64) -> DsSpec {
        DsSpec {
            id,
            name: format!("system{id}"),
            ds_type: 1,
            state: 0,
            clusters: vec![0],
            total_mb: 102_400,
            free_mb: 102_400,
            shared: true,
            template: Vec::new(),
        }
    }

    pub fn attr(mut self, name: &str, value: impl ToString) -> Self {
        self.template.push((name.to_string(), value.to_string()));
        self
    }

    pub fn write(&self, out: &mut String) {
        out.push_str("<DATASTORE>");
        elem(out, "ID", self.id);
        elem(out, "UID", 0);
        elem(out, "GID", 0);
        elem(out, "UNAME", "oneadmin");
        elem(out, "GNAME", "oneadmin");
        elem(out, "NAME", &self.name);
        out.push_str("<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A><GROUP_U>1</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>");
        elem(out, "DS_MAD", "-");
        elem(out, "TM_MAD", if self.shared { "shared" } else { "local" });
        elem(
            out,
            "BASE_PATH",
            format!("/var/lib/one/datastores/{}", self.id),
        );
        elem(out, "TYPE", self.ds_type);
        elem(out, "DISK_TYPE", 0);
        elem(out, "STATE", self.state);
        out.push_str("<CLUSTERS>");
        for c in &self.clusters {
            elem(out, "ID", c);
        }
        out.push_str("</CLUSTERS>");
        elem(out, "TOTAL_MB", self.total_mb);
        elem(out, "FREE_MB", self.free_mb);
        elem(out, "USED_MB", self.total_mb - self.free_mb);
        out.push_str("<IMAGES/><TEMPLATE>");
        elem(out, "SHARED", if self.shared { "YES" } else { "NO" });
        elem(out, "TM_MAD", if self.shared { "shared" } else { "local" });
        elem(out, "TYPE", "SYSTEM_DS");
        for (k, v) in &self.template {
            elem(out, k, v);
        }
        out.push_str("</TEMPLATE></DATASTORE>");
    }
}

pub fn ds_pool_xml(dss: &[DsSpec]) -> String {
    let mut out = String::from("<DATASTORE_POOL>");
    for d in dss {
        d.write(&mut out);
    }
    out.push_str("</DATASTORE_POOL>");
    out
}

/// A VM as `one.vmpool.infoextended` shows it; `pending` gives a PENDING VM in cluster 0.
#[derive(Clone, Debug, Default)]
pub struct VmSpec {
    pub id: i64,
    pub state: i64,
    pub lcm_state: i64,
    pub resched: bool,
    pub cpu: f64,
    pub memory_mb: i64,
    /// Volatile disks of this many MB (they live in the system datastore).
    pub volatile_disks_mb: Vec<i64>,
    pub automatic_requirements: String,
    pub automatic_ds_requirements: String,
    pub requirements: String,
    pub rank: String,
    pub ds_requirements: String,
    pub ds_rank: String,
    pub user_priority: Option<i64>,
    /// The last HISTORY record: (host id, datastore id).
    pub current: Option<(i64, i64)>,
    /// Image disks: (image datastore id, its TM_MAD).
    pub image_disks: Vec<(i64, String)>,
    /// NICs: the VN_MAD of each.
    pub nics: Vec<String>,
}

impl VmSpec {
    pub fn pending(id: i64, cpu: f64, memory_mb: i64) -> VmSpec {
        VmSpec {
            id,
            state: 1,
            cpu,
            memory_mb,
            automatic_requirements: "(CLUSTER_ID = 0) & !(PIN_POLICY = PINNED)".into(),
            automatic_ds_requirements: "(\"CLUSTERS/ID\" @> 0)".into(),
            ..VmSpec::default()
        }
    }

    /// A RUNNING VM on `host` (system datastore `ds`) flagged for rescheduling.
    pub fn resched(id: i64, cpu: f64, memory_mb: i64, host: i64, ds: i64) -> VmSpec {
        VmSpec {
            state: 3,
            lcm_state: 3,
            resched: true,
            current: Some((host, ds)),
            ..VmSpec::pending(id, cpu, memory_mb)
        }
    }

    pub fn write(&self, out: &mut String) {
        out.push_str("<VM>");
        elem(out, "ID", self.id);
        elem(out, "UID", 0);
        elem(out, "GID", 0);
        elem(out, "UNAME", "oneadmin");
        elem(out, "GNAME", "oneadmin");
        elem(out, "NAME", format!("vm-{}", self.id));
        elem(out, "LAST_POLL", 0);
        elem(out, "STATE", self.state);
        elem(out, "LCM_STATE", self.lcm_state);
        elem(out, "PREV_STATE", self.state);
        elem(out, "PREV_LCM_STATE", self.lcm_state);
        elem(out, "RESCHED", u8::from(self.resched));
        elem(out, "STIME", 1_700_000_000);
        elem(out, "ETIME", 0);
        elem(out, "DEPLOY_ID", "");
        out.push_str("<MONITORING/><SCHED_ACTIONS/><TEMPLATE>");
        if !self.automatic_ds_requirements.is_empty() {
            elem(
                out,
                "AUTOMATIC_DS_REQUIREMENTS",
                &self.automatic_ds_requirements,
            );
        }
        if !self.automatic_requirements.is_empty() {
            elem(out, "AUTOMATIC_REQUIREMENTS", &self.automatic_requirements);
        }
        elem(out, "CPU", self.cpu);
        for (i, size) in self.volatile_disks_mb.iter().enumerate() {
            let _ = write!(
                out,
                "<DISK><DISK_ID>{i}</DISK_ID><SIZE>{size}</SIZE><TYPE>fs</TYPE></DISK>"
            );
        }
        let first = self.volatile_disks_mb.len();
        for (i, (ds, tm)) in self.image_disks.iter().enumerate() {
            let _ = write!(
                out,
                "<DISK><DATASTORE_ID>{ds}</DATASTORE_ID><DISK_ID>{}</DISK_ID><IMAGE_ID>{i}</IMAGE_ID>\
                 <SIZE>10</SIZE><TM_MAD>{tm}</TM_MAD></DISK>",
                first + i
            );
        }
        elem(out, "MEMORY", self.memory_mb);
        for (i, vn_mad) in self.nics.iter().enumerate() {
            let _ = write!(
                out,
                "<NIC><NIC_ID>{i}</NIC_ID><VN_MAD><![CDATA[{vn_mad}]]></VN_MAD></NIC>"
            );
        }
        out.push_str("<TM_MAD_SYSTEM></TM_MAD_SYSTEM>");
        elem(out, "VMID", self.id);
        out.push_str("</TEMPLATE><USER_TEMPLATE>");
        for (k, v) in [
            ("SCHED_DS_RANK", &self.ds_rank),
            ("SCHED_DS_REQUIREMENTS", &self.ds_requirements),
            ("SCHED_RANK", &self.rank),
            ("SCHED_REQUIREMENTS", &self.requirements),
        ] {
            if !v.is_empty() {
                elem(out, k, v);
            }
        }
        if let Some(p) = self.user_priority {
            elem(out, "USER_PRIORITY", p);
        }
        out.push_str("</USER_TEMPLATE>");
        match self.current {
            None => out.push_str("<HISTORY_RECORDS/>"),
            Some((hid, ds)) => {
                out.push_str("<HISTORY_RECORDS><HISTORY>");
                elem(out, "OID", self.id);
                elem(out, "SEQ", 0);
                elem(out, "HOSTNAME", format!("host{hid}"));
                elem(out, "HID", hid);
                elem(out, "CID", 0);
                elem(out, "DS_ID", ds);
                out.push_str("</HISTORY></HISTORY_RECORDS>");
            }
        }
        out.push_str("<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS/></BACKUPS></VM>");
    }
}

pub fn vm_pool_xml(vms: &[VmSpec]) -> String {
    let mut out = String::with_capacity(vms.len() * 1200);
    out.push_str("<VM_POOL>");
    for v in vms {
        v.write(&mut out);
    }
    out.push_str("</VM_POOL>");
    out
}
