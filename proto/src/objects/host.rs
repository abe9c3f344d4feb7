//! HOST documents (host.xsd).

use super::write_ids;
use crate::state::HostState;
use crate::template::Template;
use crate::xml::XmlWriter;
use serde::{Deserialize, Serialize};

/// Capacity of one datastore as seen from a host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostDs {
    pub id: i64,
    pub total_mb: i64,
    pub free_mb: i64,
    pub used_mb: i64,
}

/// HOST_SHARE: what is allocated to VMs against what the host has.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostShare {
    /// KB allocated to VMs.
    pub mem_usage: i64,
    /// Percent (100 per core) allocated to VMs.
    pub cpu_usage: i64,
    pub total_mem: i64,
    pub total_cpu: i64,
    /// Total minus RESERVED_MEM / RESERVED_CPU.
    pub max_mem: i64,
    pub max_cpu: i64,
    pub running_vms: i64,
    pub vms_thread: i64,
    pub disk_usage: i64,
    pub datastores: Vec<HostDs>,
    pub free_disk: i64,
    pub max_disk: i64,
    pub used_disk: i64,
}

/// The latest monitoring sample (HOST/MONITORING).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostMonitoring {
    pub timestamp: i64,
    pub free_cpu: i64,
    pub free_memory: i64,
    pub used_cpu: i64,
    pub used_memory: i64,
    pub netrx: i64,
    pub nettx: i64,
}

impl HostMonitoring {
    /// `<MONITORING>` of host `host_id` in host.xsd's order: HOST/MONITORING, and each
    /// record of `one.host.monitoring`.
    pub fn write_xml(&self, host_id: i64, w: &mut XmlWriter) {
        w.open("MONITORING")
            .num("TIMESTAMP", self.timestamp)
            .num("ID", host_id)
            .open("CAPACITY")
            .num("FREE_CPU", self.free_cpu)
            .num("FREE_MEMORY", self.free_memory)
            .num("USED_CPU", self.used_cpu)
            .num("USED_MEMORY", self.used_memory)
            .close("CAPACITY")
            .open("SYSTEM")
            .num("NETRX", self.netrx)
            .num("NETTX", self.nettx)
            .close("SYSTEM")
            .close("MONITORING");
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub id: i64,
    pub name: String,
    pub state: HostState,
    pub prev_state: HostState,
    pub im_mad: String,
    pub vm_mad: String,
    pub cluster_id: i64,
    pub cluster: String,
    pub share: HostShare,
    pub vms: Vec<i64>,
    pub template: Template,
    #[serde(default)]
    pub monitoring: Option<HostMonitoring>,
}

impl HostShare {
    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("HOST_SHARE")
            .num("MEM_USAGE", self.mem_usage)
            .num("CPU_USAGE", self.cpu_usage)
            .num("TOTAL_MEM", self.total_mem)
            .num("TOTAL_CPU", self.total_cpu)
            .num("MAX_MEM", self.max_mem)
            .num("MAX_CPU", self.max_cpu)
            .num("RUNNING_VMS", self.running_vms)
            .num("VMS_THREAD", self.vms_thread);
        w.open("DATASTORES").num("DISK_USAGE", self.disk_usage);
        for ds in &self.datastores {
            w.open("DS")
                .num("FREE_MB", ds.free_mb)
                .num("ID", ds.id)
                .num("TOTAL_MB", ds.total_mb)
                .num("USED_MB", ds.used_mb)
                .close("DS");
        }
        w.num("FREE_DISK", self.free_disk)
            .num("MAX_DISK", self.max_disk)
            .num("USED_DISK", self.used_disk)
            .close("DATASTORES");
        w.empty("PCI_DEVICES")
            .empty("NUMA_NODES")
            .close("HOST_SHARE");
    }
}

impl Host {
    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("HOST")
            .num("ID", self.id)
            .text("NAME", &self.name)
            .num("STATE", self.state.num())
            .num("PREV_STATE", self.prev_state.num())
            .text("IM_MAD", &self.im_mad)
            .text("VM_MAD", &self.vm_mad)
            .num("CLUSTER_ID", self.cluster_id)
            .text("CLUSTER", &self.cluster);
        self.share.write_xml(w);
        write_ids(w, "VMS", &self.vms);
        self.template.write_xml(w, "TEMPLATE");
        match &self.monitoring {
            None => {
                w.empty("MONITORING");
            }
            Some(m) => m.write_xml(self.id, w),
        }
        w.close("HOST");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> Host {
        let mut template = Template::new();
        template.set("RESERVED_CPU", "");
        template.set("HYPERVISOR", "dummy");
        Host {
            id: 3,
            name: "node1".into(),
            state: HostState::Init,
            prev_state: HostState::Init,
            im_mad: "kvm".into(),
            vm_mad: "kvm".into(),
            cluster_id: 0,
            cluster: "default".into(),
            share: HostShare {
                datastores: vec![HostDs {
                    id: 0,
                    total_mb: 100,
                    free_mb: 60,
                    used_mb: 40,
                }],
                ..HostShare::default()
            },
            vms: vec![4],
            template,
            monitoring: Some(HostMonitoring {
                timestamp: 1,
                free_cpu: 100,
                ..HostMonitoring::default()
            }),
        }
    }

    #[test]
    fn xml_starts_in_xsd_order() {
        let mut w = XmlWriter::new();
        sample().write_xml(&mut w);
        let xml = w.finish();
        assert!(xml.starts_with(
            "<HOST><ID>3</ID><NAME>node1</NAME><STATE>0</STATE><PREV_STATE>0</PREV_STATE>\
             <IM_MAD>kvm</IM_MAD><VM_MAD>kvm</VM_MAD><CLUSTER_ID>0</CLUSTER_ID><CLUSTER>default</CLUSTER>\
             <HOST_SHARE><MEM_USAGE>0</MEM_USAGE>"
        ));
        assert!(xml.contains("<VMS><ID>4</ID></VMS><TEMPLATE><HYPERVISOR>dummy</HYPERVISOR>"));
        assert!(xml.ends_with("</SYSTEM></MONITORING></HOST>"));
    }
}
