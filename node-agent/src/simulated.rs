//! The `simulated` driver: a hypervisor in memory. Domains are created, stopped, saved and
//! moved as the operations say, after a configurable delay, and show up in domain states and
//! VM monitoring like real ones, with usage figures made up from what each VM was given. It
//! serves oned's tests without libvirt and the many-agents benchmark.
//!
//! Like OpenNebula's KVM domains (`virsh create`), a domain exists while it runs: shutdown,
//! cancel, save and migrate remove it. Disk (TM) and network (VNM) operations succeed and
//! touch nothing. `--sim-state FILE` keeps the domains across agent restarts (a real
//! hypervisor keeps them when the agent dies); without it a restarted agent reports none,
//! as a rebooted host would.

use crate::driver::{AgentDriver, BoxFuture, DriverContext, HostFacts, HypervisorReport};
use crate::host::{KvmDevice, now_secs};
use one_proto::Template;
use one_proto::agent::{Check, DiskSize, Domain, DomainState, DomainType, VmSample, checks};
use one_proto::driver::{DriverError, DriverFamily, DriverOp, DriverReply, DriverRequest};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The simulated driver's options (command line).
#[derive(Clone, Debug, Default)]
pub struct SimOptions {
    /// How long each operation takes.
    pub delay: Duration,
    /// Operations that fail (to try the lifecycle's failure paths), as oned's dummy
    /// DUMMY_FAIL.
    pub fail: HashSet<DriverOp>,
    /// Where the domains are kept across restarts.
    pub state_file: Option<PathBuf>,
}

/// The operations a comma-separated list names (`prolog,deploy`); an unknown name is an
/// error, so a typo on the command line does not silently test nothing.
pub fn parse_ops(list: &str) -> Result<HashSet<DriverOp>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| DriverOp::from_name(s).ok_or_else(|| format!("no driver operation named {s:?}")))
        .collect()
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct SimState {
    domains: BTreeMap<i64, SimDomain>,
    /// UUIDs of saved domains by VM: a restore brings the same domain back.
    saved: BTreeMap<i64, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SimDomain {
    uuid: String,
    state: DomainState,
    /// What the VM was given: CPU in percent (TEMPLATE/CPU × 100), MEMORY in KB.
    cpu: f64,
    memory_kb: i64,
    disks: Vec<DiskSize>,
    /// When it started (seconds since the epoch): counters grow from there.
    started: i64,
}

pub struct Simulated {
    opts: SimOptions,
    prefix: String,
    host_name: String,
    domain_type: Option<DomainType>,
    state: Mutex<SimState>,
    uuids: AtomicU64,
}

impl Simulated {
    pub fn new(ctx: DriverContext) -> Simulated {
        let state = ctx
            .sim
            .state_file
            .as_ref()
            .and_then(|p| match std::fs::read(p) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| {
                        tracing::warn!(path = %p.display(), error = %e, "simulated state unreadable, starting empty")
                    })
                    .ok(),
                Err(_) => None,
            })
            .unwrap_or_default();
        Simulated {
            opts: ctx.sim,
            prefix: ctx.config.domain_prefix,
            host_name: ctx.host_name,
            domain_type: ctx.config.domain_type,
            state: Mutex::new(state),
            uuids: AtomicU64::new(0),
        }
    }

    fn name_of(&self, vm_id: i64) -> String {
        format!("{}{}", self.prefix, vm_id)
    }

    /// A fresh random-looking UUID (version 4 layout) without a random number generator:
    /// the clock, the process and a counter, mixed.
    fn new_uuid(&self) -> String {
        let n = self.uuids.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = nanos ^ (u64::from(std::process::id()) << 32);
        let hi = mix(seed, n);
        let lo = mix(hi, n ^ 0x5555);
        let hi = (hi & !0xf000) | 0x4000; // version 4
        let lo = (lo & !(0xc << 60)) | (0x8 << 60); // RFC 4122 variant
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xffff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }

    fn save_state(&self, st: &SimState) {
        let Some(path) = &self.opts.state_file else {
            return;
        };
        // Write then rename: a crash leaves the old file or the new one, never half of one.
        let tmp = path.with_extension("tmp");
        let res = serde_json::to_vec(st)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = res {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep simulated state");
        }
    }

    /// The operation's effect on the domains, at once.
    fn apply(&self, req: &DriverRequest) -> Result<DriverReply, DriverError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let before = st.clone();
        let reply = self.apply_to(&mut st, req);
        if *st != before {
            self.save_state(&st);
        }
        reply
    }

    fn apply_to(&self, st: &mut SimState, req: &DriverRequest) -> Result<DriverReply, DriverError> {
        use DriverOp as D;
        let id = req.vm_id;
        let ok = |info: &str| {
            Ok(DriverReply {
                deploy_id: None,
                info: info.to_string(),
            })
        };
        let with_id = |uuid: &str| {
            Ok(DriverReply {
                deploy_id: Some(uuid.to_string()),
                info: String::new(),
            })
        };
        let missing = || {
            Err(DriverError::new(format!(
                "domain {} not found on host {}",
                self.name_of(id),
                self.host_name
            )))
        };
        // Disks and networks: nothing to do in memory, but a resize shows in DISK_SIZE.
        if req.op.family() != DriverFamily::Vmm {
            if matches!(req.op, D::DiskResize | D::DiskSnapshotRevert)
                && let Some(d) = st.domains.get_mut(&id)
            {
                d.disks = allocation(&req.vm_xml).disks;
            }
            return ok("");
        }
        match req.op {
            D::Deploy => {
                if let Some(d) = st.domains.get_mut(&id) {
                    // Already there: deploy is idempotent.
                    if matches!(d.state, DomainState::Shutoff | DomainState::Crashed) {
                        d.state = DomainState::Running;
                        d.started = now_secs();
                    }
                    return with_id(&d.uuid);
                }
                let uuid = if looks_like_uuid(&req.deploy_id) {
                    req.deploy_id.clone()
                } else {
                    self.new_uuid()
                };
                st.domains.insert(id, self.domain(&uuid, req));
                with_id(&uuid)
            }
            D::Restore => {
                if let Some(d) = st.domains.get(&id) {
                    return with_id(&d.uuid);
                }
                // The checkpoint of a save here, or (after a cold migration) of the source's.
                let uuid = st.saved.remove(&id).unwrap_or_else(|| {
                    if looks_like_uuid(&req.deploy_id) {
                        req.deploy_id.clone()
                    } else {
                        self.new_uuid()
                    }
                });
                st.domains.insert(id, self.domain(&uuid, req));
                with_id(&uuid)
            }
            D::Shutdown | D::Cancel => {
                st.domains.remove(&id);
                ok("")
            }
            D::Save => match st.domains.remove(&id) {
                Some(d) => {
                    st.saved.insert(id, d.uuid);
                    ok("")
                }
                None if st.saved.contains_key(&id) => ok("already saved"),
                None => missing(),
            },
            D::Migrate => {
                if req.host != self.host_name
                    && let Some(d) = st.domains.remove(&id)
                {
                    return with_id(&d.uuid);
                }
                if req.host == self.host_name && !st.domains.contains_key(&id) {
                    // Arriving here.
                    let uuid = if looks_like_uuid(&req.deploy_id) {
                        req.deploy_id.clone()
                    } else {
                        self.new_uuid()
                    };
                    st.domains.insert(id, self.domain(&uuid, req));
                    return with_id(&uuid);
                }
                match st.domains.get(&id) {
                    Some(d) => with_id(&d.uuid),
                    // Gone from here already: a repeated migrate of a domain that left.
                    None => Ok(DriverReply {
                        deploy_id: (!req.deploy_id.is_empty()).then(|| req.deploy_id.clone()),
                        info: "domain already migrated".into(),
                    }),
                }
            }
            // Disk hotplug of a powered-off VM only changes its files.
            D::AttachDisk | D::DetachDisk => {
                if let Some(d) = st.domains.get_mut(&id) {
                    d.disks = allocation(&req.vm_xml).disks;
                }
                ok("")
            }
            D::Resize => match st.domains.get_mut(&id) {
                Some(d) => {
                    let a = allocation(&req.vm_xml);
                    (d.cpu, d.memory_kb) = (a.cpu, a.memory_kb);
                    ok("")
                }
                None => missing(),
            },
            D::Reset => match st.domains.get_mut(&id) {
                Some(d) => {
                    d.state = DomainState::Running;
                    d.started = now_secs();
                    ok("")
                }
                None => missing(),
            },
            // Acting on a running domain.
            _ => {
                if st.domains.contains_key(&id) {
                    ok("")
                } else {
                    missing()
                }
            }
        }
    }

    fn domain(&self, uuid: &str, req: &DriverRequest) -> SimDomain {
        let a = allocation(&req.vm_xml);
        SimDomain {
            uuid: uuid.to_string(),
            state: DomainState::Running,
            cpu: a.cpu,
            memory_kb: a.memory_kb,
            disks: a.disks,
            started: now_secs(),
        }
    }

    fn sample(&self, id: i64, d: &SimDomain, now: i64) -> VmSample {
        let (v, t) = (id as u64, now as u64);
        let up = (now - d.started).max(0) as f64;
        let running = d.state == DomainState::Running;
        let load = (0.1 + 0.5 * noise(v, 1) + 0.1 * (noise(v, t) - 0.5)).clamp(0.01, 1.0);
        let cpu = if running {
            (d.cpu * load * 10.0).round() / 10.0
        } else {
            0.0
        };
        let memory_kb = (d.memory_kb as f64 * (0.3 + 0.5 * noise(v, 2))) as i64;
        // Totals since the domain started, at a steady per-VM rate of up to `max` bytes/s.
        let bytes = |seed: u64, max: f64| ((0.1 + 0.9 * noise(v, seed)) * max * up) as i64;
        let (rd, wr) = (bytes(5, 1_000_000.0), bytes(6, 500_000.0));
        VmSample {
            id,
            deploy_id: d.uuid.clone(),
            cpu,
            memory_kb,
            netrx: bytes(3, 100_000.0),
            nettx: bytes(4, 50_000.0),
            diskrdbytes: rd,
            diskwrbytes: wr,
            diskrdiops: rd / 4096,
            diskwriops: wr / 4096,
            disk_sizes: d.disks.clone(),
        }
    }
}

impl AgentDriver for Simulated {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn hypervisor(&self) -> &'static str {
        "simulated"
    }

    fn execute(&self, req: DriverRequest) -> BoxFuture<'_, Result<DriverReply, DriverError>> {
        Box::pin(async move {
            if !self.opts.delay.is_zero() {
                tokio::time::sleep(self.opts.delay).await;
            }
            if self.opts.fail.contains(&req.op) {
                return Err(DriverError::new(format!(
                    "simulated driver: {} of VM {} failed on host {} as --fail asks",
                    req.op.name(),
                    req.vm_id,
                    self.host_name
                )));
            }
            self.apply(&req)
        })
    }

    fn list_domains(&self) -> BoxFuture<'_, Result<Vec<Domain>, DriverError>> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let list = st
            .domains
            .iter()
            .map(|(id, d)| Domain {
                vm_id: *id,
                deploy_id: d.uuid.clone(),
                name: self.name_of(*id),
                state: d.state,
            })
            .collect();
        Box::pin(std::future::ready(Ok(list)))
    }

    fn monitor_vms(&self) -> BoxFuture<'_, Result<Vec<VmSample>, DriverError>> {
        let now = now_secs();
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let list = st
            .domains
            .iter()
            .map(|(id, d)| self.sample(*id, d, now))
            .collect();
        Box::pin(std::future::ready(Ok(list)))
    }

    fn hypervisor_checks(&self, facts: HostFacts) -> BoxFuture<'_, HypervisorReport> {
        let usable = facts.kvm == KvmDevice::Usable;
        let domain_type = self.domain_type.unwrap_or(if usable {
            DomainType::Kvm
        } else {
            DomainType::Qemu
        });
        let device = match &facts.kvm {
            KvmDevice::Usable => "/dev/kvm is usable".to_string(),
            KvmDevice::Absent => "/dev/kvm is absent".to_string(),
            KvmDevice::NoAccess(e) => format!("/dev/kvm cannot be opened: {e}"),
        };
        let kvm = if usable {
            Check {
                name: checks::KVM.into(),
                ok: true,
                detail: format!("KVM usable ({device}; simulated domains)"),
            }
        } else {
            Check {
                name: checks::KVM.into(),
                ok: domain_type != DomainType::Kvm,
                detail: format!("emulation only ({device})"),
            }
        };
        let report = HypervisorReport {
            checks: vec![
                Check {
                    name: checks::LIBVIRT.into(),
                    ok: true,
                    detail: "simulated: no libvirt is used".into(),
                },
                kvm,
                Check {
                    name: checks::CPU_MODEL.into(),
                    ok: true,
                    detail: facts.cpu_model,
                },
            ],
            domain_type: Some(domain_type),
        };
        Box::pin(std::future::ready(report))
    }
}

/// A number in [0, 1) from two seeds (splitmix64's finalizer): repeatable figures.
fn noise(a: u64, b: u64) -> f64 {
    (mix(a, b) >> 11) as f64 / (1u64 << 53) as f64
}

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// What a VM was given, from its document: CPU (percent), MEMORY (KB), disks.
#[derive(Debug, PartialEq)]
struct Alloc {
    cpu: f64,
    memory_kb: i64,
    disks: Vec<DiskSize>,
}

/// Reads TEMPLATE of a one.vm.info document. Missing or nonsense values count as one CPU
/// and 256 MB, as for oned's dummy hosts.
fn allocation(vm_xml: &str) -> Alloc {
    let t = vm_template(vm_xml).unwrap_or_default();
    let cpu = t
        .get("CPU")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(1.0);
    let mem_mb = t
        .get("MEMORY")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|v| *v >= 0)
        .unwrap_or(256);
    let disks = t
        .vectors("DISK")
        .filter_map(|d| {
            Some(DiskSize {
                id: d.get("DISK_ID")?.trim().parse().ok()?,
                size_mb: d
                    .get("SIZE")
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0),
            })
        })
        .collect();
    Alloc {
        cpu: cpu * 100.0,
        memory_kb: mem_mb.saturating_mul(1024),
        disks,
    }
}

/// The VM's TEMPLATE element (the first one: it comes before USER_TEMPLATE and the history).
fn vm_template(vm_xml: &str) -> Option<Template> {
    let start = vm_xml.find("<TEMPLATE>")?;
    let end = start + vm_xml[start..].find("</TEMPLATE>")? + "</TEMPLATE>".len();
    Template::parse(&vm_xml[start..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use one_proto::agent::AgentConfig;

    fn sim(opts: SimOptions) -> Simulated {
        let (outbox, _w) = crate::outbox::spawn_writer(tokio::io::sink(), Default::default());
        Simulated::new(DriverContext {
            host_id: 1,
            host_name: "node1".into(),
            config: AgentConfig::default(),
            log: outbox,
            sim: opts,
            streams: None,
        })
    }

    const VM_XML: &str = "<VM><ID>7</ID><MONITORING><CPU>99</CPU></MONITORING>\
        <TEMPLATE><CPU><![CDATA[0.5]]></CPU><MEMORY>512</MEMORY>\
        <DISK><DISK_ID>0</DISK_ID><SIZE>2048</SIZE></DISK><DISK><DISK_ID>1</DISK_ID></DISK>\
        </TEMPLATE><USER_TEMPLATE><MEMORY>1</MEMORY></USER_TEMPLATE></VM>";

    fn req(op: DriverOp, host: &str) -> DriverRequest {
        DriverRequest {
            op,
            vm_id: 7,
            deploy_id: String::new(),
            host: host.into(),
            source_host: String::new(),
            ds_id: 0,
            vm_xml: VM_XML.into(),
            args: Default::default(),
        }
    }

    #[test]
    fn allocation_reads_the_vm_template() {
        assert_eq!(
            allocation(VM_XML),
            Alloc {
                cpu: 50.0,
                memory_kb: 512 * 1024,
                disks: vec![
                    DiskSize {
                        id: 0,
                        size_mb: 2048
                    },
                    DiskSize { id: 1, size_mb: 0 }
                ],
            }
        );
        assert_eq!(allocation("").memory_kb, 256 * 1024);
        assert_eq!(allocation("<VM><TEMPLATE><CPU>x</CPU>").cpu, 100.0);
    }

    #[tokio::test]
    async fn lifecycle_in_memory() {
        let d = sim(SimOptions::default());
        let r = d.execute(req(DriverOp::Deploy, "node1")).await.unwrap();
        let uuid = r.deploy_id.unwrap();
        assert!(looks_like_uuid(&uuid), "{uuid}");
        // Idempotent deploy: the same domain.
        let again = d.execute(req(DriverOp::Deploy, "node1")).await.unwrap();
        assert_eq!(again.deploy_id.as_deref(), Some(uuid.as_str()));
        let doms = d.list_domains().await.unwrap();
        assert_eq!(
            doms,
            vec![Domain {
                vm_id: 7,
                deploy_id: uuid.clone(),
                name: "one-7".into(),
                state: DomainState::Running
            }]
        );
        let s = &d.monitor_vms().await.unwrap()[0];
        assert!(s.cpu > 0.0 && s.cpu <= 50.0, "{s:?}");
        assert!(s.memory_kb > 0 && s.memory_kb <= 512 * 1024);
        assert_eq!(s.disk_sizes.len(), 2);

        d.execute(req(DriverOp::Reboot, "node1")).await.unwrap();
        d.execute(req(DriverOp::Save, "node1")).await.unwrap();
        assert!(d.list_domains().await.unwrap().is_empty());
        // A repeated save is fine, a reboot of a saved VM is not.
        d.execute(req(DriverOp::Save, "node1")).await.unwrap();
        let e = d.execute(req(DriverOp::Reboot, "node1")).await.unwrap_err();
        assert_eq!(e.message, "domain one-7 not found on host node1");
        let r = d.execute(req(DriverOp::Restore, "node1")).await.unwrap();
        assert_eq!(
            r.deploy_id.as_deref(),
            Some(uuid.as_str()),
            "restore keeps the UUID"
        );

        // Migrating away removes it; arriving creates it with the UUID it had.
        let mut m = req(DriverOp::Migrate, "node2");
        m.deploy_id = uuid.clone();
        assert_eq!(
            d.execute(m.clone()).await.unwrap().deploy_id,
            Some(uuid.clone())
        );
        assert!(d.list_domains().await.unwrap().is_empty());
        let mut arrive = m;
        arrive.host = "node1".into();
        assert_eq!(
            d.execute(arrive).await.unwrap().deploy_id,
            Some(uuid.clone())
        );

        // Shutdown and cancel succeed whether or not the domain is there.
        d.execute(req(DriverOp::Shutdown, "node1")).await.unwrap();
        d.execute(req(DriverOp::Cancel, "node1")).await.unwrap();
        assert!(d.list_domains().await.unwrap().is_empty());
        // Disk hotplug while powered off, and the TM / VNM operations, succeed.
        for op in [DriverOp::AttachDisk, DriverOp::Prolog, DriverOp::NetClean] {
            d.execute(req(op, "node1")).await.unwrap();
        }
    }

    #[tokio::test]
    async fn failures_on_request_and_state_across_restarts() {
        let d = sim(SimOptions {
            fail: parse_ops("save, deploy").unwrap(),
            ..Default::default()
        });
        let e = d.execute(req(DriverOp::Deploy, "node1")).await.unwrap_err();
        assert!(
            e.message.contains("deploy of VM 7 failed on host node1"),
            "{e}"
        );
        assert!(parse_ops("deploy,nope").unwrap_err().contains("\"nope\""));

        let path = std::env::temp_dir().join(format!("one-agent-sim-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let opts = SimOptions {
            state_file: Some(path.clone()),
            ..Default::default()
        };
        let uuid = sim(opts.clone())
            .execute(req(DriverOp::Deploy, "node1"))
            .await
            .unwrap()
            .deploy_id;
        let doms = sim(opts).list_domains().await.unwrap();
        assert_eq!(doms.len(), 1);
        assert_eq!(Some(doms[0].deploy_id.clone()), uuid);
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn checks_follow_the_kvm_device_and_the_config() {
        let d = sim(SimOptions::default());
        let facts = |kvm| HostFacts {
            kvm,
            cpu_model: "Xeon".into(),
        };
        let r = d.hypervisor_checks(facts(KvmDevice::Absent)).await;
        assert_eq!(r.domain_type, Some(DomainType::Qemu));
        assert!(r.checks.iter().all(|c| c.ok), "{r:?}");
        assert_eq!(r.checks[1].detail, "emulation only (/dev/kvm is absent)");
        assert_eq!(r.checks[2].detail, "Xeon");
        let r = d.hypervisor_checks(facts(KvmDevice::Usable)).await;
        assert_eq!(r.domain_type, Some(DomainType::Kvm));

        let mut kvm_only = sim(SimOptions::default());
        kvm_only.domain_type = Some(DomainType::Kvm);
        let r = kvm_only.hypervisor_checks(facts(KvmDevice::Absent)).await;
        assert!(!r.checks[1].ok, "kvm asked for and absent: {r:?}");
    }
}
