//! `HOST` (host.xsd) and `HOST_POOL`.

use super::{Object, ids, int, int_or, int32, text};
use crate::dom::Element;
use crate::template::{Template, serde_template};
use one_proto::state::HostState;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub id: i64,
    pub name: String,
    /// STATE ([`HostState`] numbers).
    pub state: i32,
    pub prev_state: i32,
    pub im_mad: String,
    pub vm_mad: String,
    pub cluster_id: i64,
    pub cluster: String,
    pub share: HostShare,
    /// Ids of the VMs on the host.
    pub vms: Vec<i64>,
    #[serde(with = "serde_template")]
    pub template: Template,
    /// Last monitoring: TIMESTAMP, CAPACITY (FREE_CPU, USED_CPU, FREE_MEMORY, USED_MEMORY) and
    /// SYSTEM (NETRX, NETTX) as vectors.
    #[serde(with = "serde_template")]
    pub monitoring: Template,
}

/// HOST_SHARE: the capacity OpenNebula accounts (CPU in percent of a core, memory in KB).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostShare {
    pub mem_usage: i64,
    pub cpu_usage: i64,
    pub total_mem: i64,
    pub total_cpu: i64,
    pub max_mem: i64,
    pub max_cpu: i64,
    pub running_vms: i64,
    pub disk_usage: i64,
    pub free_disk: i64,
    pub max_disk: i64,
    pub used_disk: i64,
    /// Local system datastores reported by the host.
    pub datastores: Vec<HostDatastore>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDatastore {
    pub id: i64,
    pub total_mb: i64,
    pub free_mb: i64,
    pub used_mb: i64,
}

impl Object for Host {
    const ROOT: &'static str = "HOST";
    const POOL_ROOT: &'static str = "HOST_POOL";
    const KIND: &'static str = "host";

    fn from_element(e: Element<'_>) -> Host {
        let share = e.child("HOST_SHARE");
        let dss = share.and_then(|s| s.child("DATASTORES"));
        Host {
            id: int(e, "ID"),
            name: text(e, "NAME"),
            state: int32(e, "STATE"),
            prev_state: int32(e, "PREV_STATE"),
            im_mad: text(e, "IM_MAD"),
            vm_mad: text(e, "VM_MAD"),
            cluster_id: int_or(e, "CLUSTER_ID", -1),
            cluster: text(e, "CLUSTER"),
            share: share
                .map(|s| HostShare {
                    mem_usage: int(s, "MEM_USAGE"),
                    cpu_usage: int(s, "CPU_USAGE"),
                    total_mem: int(s, "TOTAL_MEM"),
                    total_cpu: int(s, "TOTAL_CPU"),
                    max_mem: int(s, "MAX_MEM"),
                    max_cpu: int(s, "MAX_CPU"),
                    running_vms: int(s, "RUNNING_VMS"),
                    disk_usage: dss.map_or(0, |d| int(d, "DISK_USAGE")),
                    free_disk: dss.map_or(0, |d| int(d, "FREE_DISK")),
                    max_disk: dss.map_or(0, |d| int(d, "MAX_DISK")),
                    used_disk: dss.map_or(0, |d| int(d, "USED_DISK")),
                    datastores: dss
                        .map(|d| {
                            d.children_named("DS")
                                .map(|ds| HostDatastore {
                                    id: int(ds, "ID"),
                                    total_mb: int(ds, "TOTAL_MB"),
                                    free_mb: int(ds, "FREE_MB"),
                                    used_mb: int(ds, "USED_MB"),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .unwrap_or_default(),
            vms: ids(e, "VMS"),
            template: crate::template::child_template(e, "TEMPLATE"),
            monitoring: crate::template::child_template(e, "MONITORING"),
        }
    }

    fn id(&self) -> i64 {
        self.id
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl Host {
    pub fn state(&self) -> Option<HostState> {
        HostState::from_num(self.state.into())
    }

    /// STATE's name (`MONITORED`), or the number.
    pub fn state_name(&self) -> String {
        self.state()
            .map_or_else(|| self.state.to_string(), |s| s.name().to_owned())
    }

    /// The state `onehost list` shows: `on`, `off`, `dsbl`, `err`, `init`, ...
    pub fn short_state(&self) -> &'static str {
        host_short_state(self.state)
    }

    /// A value of the last monitoring's CAPACITY (`USED_CPU`, `FREE_MEMORY`, ...).
    pub fn capacity(&self, name: &str) -> Option<&str> {
        self.monitoring.vector("CAPACITY").and_then(|v| v.get(name))
    }

    /// The time of the last monitoring (0 never).
    pub fn last_monitored(&self) -> i64 {
        self.monitoring.get("TIMESTAMP").map_or(0, super::parse_int)
    }
}

/// OpenNebula's short host state.
pub fn host_short_state(state: i32) -> &'static str {
    match state {
        0 | 6 => "init",
        1 => "update",
        2 => "on",
        3 => "err",
        4 | 7 => "dsbl",
        5 => "retry",
        8 => "off",
        _ => "unkn",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_host() {
        let h = Host::from_xml(
            "<HOST><ID>3</ID><NAME>h1</NAME><STATE>2</STATE><PREV_STATE>2</PREV_STATE>\
             <IM_MAD>dummy</IM_MAD><VM_MAD>dummy</VM_MAD><CLUSTER_ID>0</CLUSTER_ID>\
             <CLUSTER>default</CLUSTER><HOST_SHARE><MEM_USAGE>131072</MEMUSAGE></HOST_SHARE></HOST>",
        );
        assert!(h.is_err(), "mismatched tags are refused");
        let h = Host::from_xml(
            "<HOST><ID>3</ID><NAME>h1</NAME><STATE>2</STATE><IM_MAD>dummy</IM_MAD>\
             <CLUSTER_ID>0</CLUSTER_ID><CLUSTER>default</CLUSTER><HOST_SHARE>\
             <MEM_USAGE>131072</MEM_USAGE><CPU_USAGE>50</CPU_USAGE><MAX_CPU>800</MAX_CPU>\
             <RUNNING_VMS>1</RUNNING_VMS><DATASTORES><DS><ID>0</ID><TOTAL_MB>10</TOTAL_MB></DS>\
             </DATASTORES></HOST_SHARE><VMS><ID>5</ID></VMS><TEMPLATE><HYPERVISOR>dummy\
             </HYPERVISOR></TEMPLATE><MONITORING><TIMESTAMP>77</TIMESTAMP><CAPACITY>\
             <USED_CPU>12</USED_CPU></CAPACITY></MONITORING></HOST>",
        )
        .unwrap();
        assert_eq!(h.short_state(), "on");
        assert_eq!(h.share.max_cpu, 800);
        assert_eq!(h.share.datastores[0].total_mb, 10);
        assert_eq!(h.vms, [5]);
        assert_eq!(h.capacity("USED_CPU"), Some("12"));
        assert_eq!(h.last_monitored(), 77);
        assert_eq!(h.template.get("HYPERVISOR"), Some("dummy"));
        assert_eq!(host_short_state(4), "dsbl");
        assert_eq!(host_short_state(8), "off");
    }
}
