//! The `libvirt` driver: KVM / QEMU domains through libvirt (fact sheet §9), as OpenNebula's
//! KVM driver runs them: transient domains (`virsh create`) named `<prefix><vm id>`, whose
//! UUID is the DEPLOY_ID, files in the VM's directory of the system datastore.
//!
//! libvirt's C calls block, so every call runs on tokio's blocking pool. The connection is
//! opened on first use and opened again after an error that looks like a lost one.

pub mod domain;

use crate::driver::{AgentDriver, BoxFuture, DriverContext, HostFacts, HypervisorReport};
use crate::host::KvmDevice;
use crate::outbox::Outbox;
use domain::{DomainSettings, VmDoc};
use one_proto::agent::{
    AgentConfig, Check, Domain as AgentDomain, DomainState, DomainType, VmSample, WILD_VM, checks,
    vm_id_from_domain_name,
};
use one_proto::driver::{DriverError, DriverOp, DriverReply, DriverRequest};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;

/// OpenNebula's datastore location when the Welcome names no directory for a datastore.
const DEFAULT_DS_BASE: &str = "/var/lib/one/datastores";

/// How often a shutdown looks whether the guest is gone.
const SHUTDOWN_POLL: Duration = Duration::from_millis(250);

pub struct Libvirt {
    inner: Arc<Inner>,
}

struct Inner {
    host_name: String,
    config: AgentConfig,
    log: Outbox,
    /// The domain type, once `hypervisor_checks` decided it (config first, else the probe).
    domain_type: Mutex<Option<DomainType>>,
    conn: Mutex<Option<Arc<Connect>>>,
    /// The previous CPU time of each domain (UUID), for the CPU percentage.
    cpu_prev: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Libvirt {
    /// The driver for `driver::open`; libvirt itself is reached at first use, so a daemon
    /// that is down shows as a failed `libvirt` check rather than an agent that cannot start.
    pub fn open(ctx: DriverContext) -> Result<Arc<dyn AgentDriver>, String> {
        // libvirt's default handler prints every error, expected ones (a lookup of a domain
        // that is gone) included, to the agent's stderr; errors are handled where returned.
        virt::error::clear_error_callback();
        Ok(Arc::new(Libvirt {
            inner: Arc::new(Inner {
                host_name: ctx.host_name,
                domain_type: Mutex::new(ctx.config.domain_type),
                config: ctx.config,
                log: ctx.log,
                conn: Mutex::new(None),
                cpu_prev: Mutex::new(HashMap::new()),
            }),
        }))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn verr(what: &str, e: &virt::error::Error) -> DriverError {
    DriverError::new(format!("{what}: {}", e.message()))
}

fn no_domain(e: &virt::error::Error) -> bool {
    e.code().is(ErrorNumber::NoDomain)
}

/// Errors after which the connection is opened again at the next call.
fn connection_lost(e: &virt::error::Error) -> bool {
    e.code().is_any(vec![
        ErrorNumber::SystemError,
        ErrorNumber::Rpc,
        ErrorNumber::NoConnect,
    ])
}

impl Inner {
    fn connect(&self) -> Result<Arc<Connect>, DriverError> {
        let mut slot = lock(&self.conn);
        if let Some(c) = slot.as_ref()
            && c.is_alive().unwrap_or(false)
        {
            return Ok(c.clone());
        }
        let uri = &self.config.libvirt_uri;
        let c = Connect::open(Some(uri))
            .map_err(|e| verr(&format!("cannot connect to libvirt at {uri}"), &e))?;
        let c = Arc::new(c);
        *slot = Some(c.clone());
        Ok(c)
    }

    fn forget_connection_after(&self, e: &virt::error::Error) {
        if connection_lost(e) {
            *lock(&self.conn) = None;
        }
    }

    fn domain_type(&self) -> DomainType {
        lock(&self.domain_type).unwrap_or(DomainType::Qemu)
    }

    fn vm_dir(&self, ds_id: i64, vm_id: i64) -> PathBuf {
        let base = self
            .config
            .datastores
            .iter()
            .find(|d| d.id == ds_id)
            .map(|d| PathBuf::from(&d.path))
            .unwrap_or_else(|| Path::new(DEFAULT_DS_BASE).join(ds_id.to_string()));
        base.join(vm_id.to_string())
    }

    fn name_of(&self, vm_id: i64) -> String {
        domain::domain_name(&self.config.domain_prefix, vm_id)
    }

    /// The VM's domain, `None` when libvirt has none of that name.
    fn lookup(&self, conn: &Connect, vm_id: i64) -> Result<Option<Domain>, DriverError> {
        match conn.lookup_domain_by_name(&self.name_of(vm_id)) {
            Ok(d) => Ok(Some(d)),
            Err(e) if no_domain(&e) => Ok(None),
            Err(e) => {
                self.forget_connection_after(&e);
                Err(verr("cannot look the domain up", &e))
            }
        }
    }

    fn execute(&self, req: &DriverRequest) -> Result<DriverReply, DriverError> {
        let conn = self.connect()?;
        let vm_dir = self.vm_dir(req.ds_id, req.vm_id);
        match req.op {
            DriverOp::Deploy => self.deploy(&conn, req, &vm_dir),
            DriverOp::Shutdown => self.shutdown(&conn, req.vm_id),
            DriverOp::Cancel => self.cancel(&conn, req.vm_id),
            DriverOp::Save => self.save(&conn, req.vm_id, &vm_dir),
            DriverOp::Restore => self.restore(&conn, req.vm_id, &vm_dir),
            DriverOp::Reboot | DriverOp::Reset => {
                let dom = self.lookup(&conn, req.vm_id)?.ok_or_else(|| {
                    DriverError::new(format!("domain {} is not running", self.name_of(req.vm_id)))
                })?;
                let r = if req.op == DriverOp::Reboot {
                    dom.reboot(0)
                } else {
                    dom.reset()
                };
                r.map_err(|e| verr(req.op.name(), &e))?;
                Ok(DriverReply::default())
            }
            // The VM directory is the only thing the shared system datastore needs before a
            // deploy: disks are made by the TM driver, which this agent does not run yet.
            DriverOp::Prolog | DriverOp::PrologResume | DriverOp::PrologMigrate => {
                mkdir_vm_dir(&vm_dir)?;
                Ok(DriverReply::default())
            }
            // Bridges are checked at onboarding; creating them is the VNM driver's job.
            DriverOp::NetPre | DriverOp::NetPost | DriverOp::NetClean => Ok(DriverReply::default()),
            other => Err(DriverError::new(format!(
                "the libvirt driver does not implement {} yet",
                other.name()
            ))),
        }
    }

    fn deploy(
        &self,
        conn: &Connect,
        req: &DriverRequest,
        vm_dir: &Path,
    ) -> Result<DriverReply, DriverError> {
        // Idempotent: a domain already running (a repeated request) answers its UUID.
        if let Some(dom) = self.lookup(conn, req.vm_id)? {
            let uuid = dom.uuid_string().map_err(|e| verr("uuid", &e))?;
            return Ok(DriverReply {
                deploy_id: Some(uuid),
                info: "the domain was already running".into(),
            });
        }
        let vm = VmDoc::parse(&req.vm_xml).map_err(|e| DriverError::new(e.to_string()))?;
        let dir = vm_dir
            .to_str()
            .ok_or_else(|| DriverError::new(format!("{} is not UTF-8", vm_dir.display())))?;
        let settings = DomainSettings {
            domain_type: self.domain_type(),
            name_prefix: self.config.domain_prefix.clone(),
            vm_dir: dir.to_string(),
            emulator: None,
        };
        let xml =
            domain::domain_xml(&vm, &settings).map_err(|e| DriverError::new(e.to_string()))?;
        mkdir_vm_dir(vm_dir)?;
        let file = vm_dir.join(format!("deployment.{}", vm.seq));
        std::fs::write(&file, &xml)
            .map_err(|e| DriverError::new(format!("cannot write {}: {e}", file.display())))?;
        let dom = conn.create_domain_xml(&xml, 0).map_err(|e| {
            self.forget_connection_after(&e);
            verr("cannot create the domain", &e)
        })?;
        let uuid = dom.uuid_string().map_err(|e| verr("uuid", &e))?;
        tracing::info!(vm_id = req.vm_id, uuid, host = %self.host_name, "domain created");
        Ok(DriverReply {
            deploy_id: Some(uuid),
            info: format!("deployed from {}", file.display()),
        })
    }

    fn shutdown(&self, conn: &Connect, vm_id: i64) -> Result<DriverReply, DriverError> {
        let Some(dom) = self.lookup(conn, vm_id)? else {
            return Ok(DriverReply {
                deploy_id: None,
                info: "the domain was already gone".into(),
            });
        };
        if let Err(e) = dom.shutdown() {
            // Gone between the lookup and the shutdown: what was asked.
            if no_domain(&e) || e.code().is(ErrorNumber::OperationInvalid) {
                return Ok(DriverReply::default());
            }
            return Err(verr("shutdown", &e));
        }
        // A guest ignores ACPI until its OS listens (docs/hypervisor-hosts-env.md): wait for
        // it up to the timeout, then destroy it as OpenNebula's driver does.
        let deadline = Instant::now() + Duration::from_millis(self.config.shutdown_timeout_ms);
        while Instant::now() < deadline {
            if !dom.is_active().unwrap_or(false) {
                return Ok(DriverReply::default());
            }
            std::thread::sleep(SHUTDOWN_POLL);
        }
        tracing::warn!(
            vm_id,
            "guest ignored the ACPI shutdown: destroying the domain"
        );
        self.log.log(
            one_proto::agent::LogLevel::Warn,
            format!(
                "domain {} did not shut down in {} ms: destroyed",
                self.name_of(vm_id),
                self.config.shutdown_timeout_ms
            ),
            Some(vm_id),
        );
        match dom.destroy() {
            Ok(()) => Ok(DriverReply {
                deploy_id: None,
                info: "the guest did not shut down in time: destroyed".into(),
            }),
            Err(e) if no_domain(&e) || e.code().is(ErrorNumber::OperationInvalid) => {
                Ok(DriverReply::default())
            }
            Err(e) => Err(verr("destroy after the shutdown timeout", &e)),
        }
    }

    fn cancel(&self, conn: &Connect, vm_id: i64) -> Result<DriverReply, DriverError> {
        let Some(dom) = self.lookup(conn, vm_id)? else {
            return Ok(DriverReply::default());
        };
        match dom.destroy() {
            Ok(()) => Ok(DriverReply::default()),
            Err(e) if no_domain(&e) || e.code().is(ErrorNumber::OperationInvalid) => {
                Ok(DriverReply::default())
            }
            Err(e) => Err(verr("destroy", &e)),
        }
    }

    fn save(&self, conn: &Connect, vm_id: i64, vm_dir: &Path) -> Result<DriverReply, DriverError> {
        let file = vm_dir.join("checkpoint");
        let Some(dom) = self.lookup(conn, vm_id)? else {
            // A repeated save: the first one already removed the domain.
            if file.exists() {
                return Ok(DriverReply::default());
            }
            return Err(DriverError::new(format!(
                "domain {} is not running and {} does not exist",
                self.name_of(vm_id),
                file.display()
            )));
        };
        let path = std::ffi::CString::new(file.as_os_str().as_encoded_bytes())
            .map_err(|_| DriverError::new("the checkpoint path holds a NUL byte"))?;
        // SAFETY: `dom` is a live domain handle for the whole call, `path` a NUL-terminated
        // string that outlives it; virt 0.5 has no wrapper for virDomainSave.
        let rc = unsafe { virt::sys::virDomainSave(dom.as_ptr(), path.as_ptr()) };
        if rc < 0 {
            let e = virt::error::Error::last_error();
            return Err(verr(&format!("save to {}", file.display()), &e));
        }
        Ok(DriverReply {
            deploy_id: None,
            info: format!("saved to {}", file.display()),
        })
    }

    fn restore(
        &self,
        conn: &Connect,
        vm_id: i64,
        vm_dir: &Path,
    ) -> Result<DriverReply, DriverError> {
        if self.lookup(conn, vm_id)?.is_none() {
            let file = vm_dir.join("checkpoint");
            let path = file
                .to_str()
                .ok_or_else(|| DriverError::new(format!("{} is not UTF-8", file.display())))?;
            conn.restore_domain(path)
                .map_err(|e| verr(&format!("restore from {path}"), &e))?;
        }
        let dom = self
            .lookup(conn, vm_id)?
            .ok_or_else(|| DriverError::new("the restored domain is not there"))?;
        let uuid = dom.uuid_string().map_err(|e| verr("uuid", &e))?;
        Ok(DriverReply {
            deploy_id: Some(uuid),
            info: String::new(),
        })
    }

    fn list_domains(&self) -> Result<Vec<AgentDomain>, DriverError> {
        let conn = self.connect()?;
        let doms = conn.list_all_domains(0).map_err(|e| {
            self.forget_connection_after(&e);
            verr("cannot list the domains", &e)
        })?;
        let mut out = Vec::with_capacity(doms.len());
        for dom in doms {
            // A domain that vanished while we looked is simply not listed.
            let (Ok(name), Ok(uuid), Ok((state, reason))) =
                (dom.name(), dom.uuid_string(), dom.state())
            else {
                continue;
            };
            out.push(AgentDomain {
                vm_id: vm_id_from_domain_name(&self.config.domain_prefix, &name),
                deploy_id: uuid,
                name,
                state: domain_state(state, reason),
            });
        }
        Ok(out)
    }

    fn monitor_vms(&self) -> Result<Vec<VmSample>, DriverError> {
        let conn = self.connect()?;
        let doms = conn
            .list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            .map_err(|e| verr("cannot list the domains", &e))?;
        let now = Instant::now();
        let mut prev = lock(&self.cpu_prev);
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for dom in doms {
            let (Ok(name), Ok(uuid), Ok(info)) = (dom.name(), dom.uuid_string(), dom.info()) else {
                continue;
            };
            let id = vm_id_from_domain_name(&self.config.domain_prefix, &name);
            if id == WILD_VM {
                continue;
            }
            // CPU: the domain's CPU time since the previous sample over the wall time.
            let cpu = match prev.insert(uuid.clone(), (now, info.cpu_time)) {
                Some((t, c)) if now > t && info.cpu_time >= c => {
                    let wall = now.duration_since(t).as_nanos() as f64;
                    ((info.cpu_time - c) as f64 / wall * 100.0 * 100.0).round() / 100.0
                }
                _ => 0.0,
            };
            let mut s = VmSample {
                id,
                deploy_id: uuid.clone(),
                cpu: if cpu.is_finite() { cpu } else { 0.0 },
                memory_kb: i64::try_from(info.memory).unwrap_or(i64::MAX),
                netrx: 0,
                nettx: 0,
                diskrdbytes: 0,
                diskwrbytes: 0,
                diskrdiops: 0,
                diskwriops: 0,
                disk_sizes: Vec::new(),
            };
            if let Ok(xml) = dom.xml_desc(0) {
                let (nics, disks) = device_targets(&xml);
                for nic in nics {
                    if let Ok(st) = dom.interface_stats(&nic) {
                        s.netrx += st.rx_bytes.max(0);
                        s.nettx += st.tx_bytes.max(0);
                    }
                }
                for disk in disks {
                    if let Ok(st) = dom.block_stats(&disk) {
                        s.diskrdbytes += st.rd_bytes.max(0);
                        s.diskwrbytes += st.wr_bytes.max(0);
                        s.diskrdiops += st.rd_req.max(0);
                        s.diskwriops += st.wr_req.max(0);
                    }
                }
            }
            seen.push(uuid);
            out.push(s);
        }
        prev.retain(|uuid, _| seen.contains(uuid));
        Ok(out)
    }

    fn hypervisor_checks(&self, facts: &HostFacts) -> HypervisorReport {
        let mut checks_out = Vec::new();
        let conn = self.connect();
        checks_out.push(match &conn {
            Ok(c) => {
                let version = c
                    .lib_version()
                    .map(|v| format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000))
                    .unwrap_or_else(|_| "?".into());
                Check {
                    name: checks::LIBVIRT.into(),
                    ok: true,
                    detail: format!("libvirt {version} answers at {}", self.config.libvirt_uri),
                }
            }
            Err(e) => Check {
                name: checks::LIBVIRT.into(),
                ok: false,
                detail: e.message.clone(),
            },
        });

        let wanted = self.config.domain_type;
        let probe = match &facts.kvm {
            KvmDevice::Usable => kvm_probe(),
            KvmDevice::Absent => Err("/dev/kvm is absent".to_string()),
            KvmDevice::NoAccess(e) => Err(format!("/dev/kvm cannot be opened: {e}")),
        };
        let domain_type = wanted.unwrap_or(if probe.is_ok() {
            DomainType::Kvm
        } else {
            DomainType::Qemu
        });
        *lock(&self.domain_type) = Some(domain_type);
        checks_out.push(match probe {
            Ok(detail) => Check {
                name: checks::KVM.into(),
                ok: true,
                detail: format!("KVM usable ({detail})"),
            },
            Err(why) => Check {
                name: checks::KVM.into(),
                ok: domain_type != DomainType::Kvm,
                detail: format!("emulation only ({why})"),
            },
        });

        let model = conn
            .ok()
            .and_then(|c| c.capabilities().ok())
            .and_then(|caps| host_cpu_model(&caps));
        checks_out.push(match model {
            Some(m) => Check {
                name: checks::CPU_MODEL.into(),
                ok: true,
                detail: format!("libvirt: {m}; /proc/cpuinfo: {}", facts.cpu_model),
            },
            None => Check {
                name: checks::CPU_MODEL.into(),
                ok: false,
                detail: "libvirt reports no host CPU model".into(),
            },
        });
        HypervisorReport {
            checks: checks_out,
            domain_type: Some(domain_type),
        }
    }
}

fn mkdir_vm_dir(dir: &Path) -> Result<(), DriverError> {
    use std::os::unix::fs::DirBuilderExt;
    // 0755: QEMU runs as libvirt-qemu and must reach the files.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| DriverError::new(format!("cannot create {}: {e}", dir.display())))
}

/// libvirt's state and reason as the protocol's [`DomainState`].
fn domain_state(
    state: virt::domain::DomainStateEnum,
    reason: virt::domain::DomainStateReasonEnum,
) -> DomainState {
    use virt::domain::{DomainPausedReason, DomainStateReason};
    use virt::enumutil::Enum;
    // Only a pause by a user is a pause for OpenNebula (DomainState::from_libvirt).
    let paused_by_user = matches!(
        reason,
        Enum::Known(DomainStateReason::Paused(r)) if r.is(DomainPausedReason::User)
    );
    DomainState::from_libvirt(state.to_raw(), i32::from(paused_by_user))
}

/// The tap names of a domain's interfaces and the target names of its disks.
fn device_targets(xml: &str) -> (Vec<String>, Vec<String>) {
    use quick_xml::Reader;
    use quick_xml::events::Event;
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let (mut nics, mut disks) = (Vec::new(), Vec::new());
    loop {
        let (e, empty) = match reader.read_event() {
            Ok(Event::Start(e)) => (e, false),
            Ok(Event::Empty(e)) => (e, true),
            Ok(Event::End(_)) => {
                stack.pop();
                continue;
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => continue,
        };
        let name = e.name().into_inner().to_string();
        if name == "target" {
            let dev = e
                .attributes()
                .flatten()
                .find(|a| a.key.into_inner() == "dev")
                .and_then(|a| {
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .ok()
                        .map(|v| v.into_owned())
                });
            let parent: Vec<&str> = stack.iter().map(String::as_str).collect();
            match (parent.as_slice(), dev) {
                (["domain", "devices", "interface"], Some(dev)) => nics.push(dev),
                (["domain", "devices", "disk"], Some(dev)) => disks.push(dev),
                _ => {}
            }
        }
        if !empty {
            stack.push(name);
        }
    }
    (nics, disks)
}

/// `<capabilities><host><cpu><model>` of `virConnectGetCapabilities`.
fn host_cpu_model(caps: &str) -> Option<String> {
    use quick_xml::Reader;
    use quick_xml::events::Event;
    let mut reader = Reader::from_str(caps);
    let mut stack: Vec<String> = Vec::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => stack.push(e.name().into_inner().to_string()),
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(t) if stack == ["capabilities", "host", "cpu", "model"] => {
                let m = t.xml10_content().trim().to_string();
                return (!m.is_empty()).then_some(m);
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// Whether KVM guests run at a usable speed: nested virtualisation can give a /dev/kvm
/// whose guests crawl (docs/hypervisor-hosts-env.md). SeaBIOS prints `Booting from` on the
/// debug port within ~0.2 s under TCG; KVM is usable when it does so within a second.
fn kvm_probe() -> Result<String, String> {
    const LIMIT: Duration = Duration::from_millis(1500);
    let out = std::env::temp_dir().join(format!("one-kvm-probe-{}", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let start = Instant::now();
    let mut child = std::process::Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-machine",
            "pc",
            "-nodefaults",
            "-display",
            "none",
            "-m",
            "16",
            "-chardev",
        ])
        .arg(format!("file,id=d,path={}", out.display()))
        .args(["-device", "isa-debugcon,iobase=0x402,chardev=d"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run qemu-system-x86_64: {e}"))?;
    let result = loop {
        let booted = std::fs::read(&out)
            .map(|b| b.windows(12).any(|w| w == b"Booting from"))
            .unwrap_or(false);
        if booted {
            break Ok(format!(
                "probe guest booted in {} ms",
                start.elapsed().as_millis()
            ));
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("the KVM probe guest exited ({status})"));
        }
        if start.elapsed() > LIMIT {
            break Err(format!(
                "a KVM guest did not reach its boot loader in {} ms (nested virtualisation?)",
                LIMIT.as_millis()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&out);
    result
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DriverError> + Send + 'static,
) -> Result<T, DriverError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(DriverError::new(format!("libvirt call failed: {e}"))))
}

impl AgentDriver for Libvirt {
    fn name(&self) -> &'static str {
        "libvirt"
    }

    fn hypervisor(&self) -> &'static str {
        "kvm"
    }

    fn execute(&self, req: DriverRequest) -> BoxFuture<'_, Result<DriverReply, DriverError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let (op, vm_id) = (req.op, req.vm_id);
            let r = blocking(move || inner.execute(&req)).await;
            if let Err(e) = &r {
                tracing::warn!(vm_id, op = op.name(), error = %e, "driver operation failed");
            }
            r
        })
    }

    fn list_domains(&self) -> BoxFuture<'_, Result<Vec<AgentDomain>, DriverError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || inner.list_domains()))
    }

    fn monitor_vms(&self) -> BoxFuture<'_, Result<Vec<VmSample>, DriverError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || inner.monitor_vms()))
    }

    fn hypervisor_checks(&self, facts: HostFacts) -> BoxFuture<'_, HypervisorReport> {
        let inner = self.inner.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.hypervisor_checks(&facts))
                .await
                .unwrap_or_default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_targets_reads_interfaces_and_disks() {
        let xml = "<domain><devices><disk type='file'><target dev='vda' bus='virtio'/></disk>\
                   <interface type='bridge'><target dev='one-3-0'/></interface>\
                   <console type='pty'><target type='serial' port='0'/></console>\
                   <disk><target dev='hda'/></disk></devices></domain>";
        let (nics, disks) = device_targets(xml);
        assert_eq!(nics, ["one-3-0"]);
        assert_eq!(disks, ["vda", "hda"]);
    }

    #[test]
    fn cpu_model_from_capabilities() {
        let caps = "<capabilities><host><uuid>x</uuid><cpu><arch>x86_64</arch>\
                    <model>Skylake-Client-IBRS</model></cpu></host>\
                    <guest><cpu><model>no</model></cpu></guest></capabilities>";
        assert_eq!(host_cpu_model(caps).as_deref(), Some("Skylake-Client-IBRS"));
        assert_eq!(host_cpu_model("<capabilities/>"), None);
    }

    /// Drives the machine's libvirtd: a disk-less 32 MiB guest (SeaBIOS finds nothing to
    /// boot and waits, ignoring ACPI, which exercises the shutdown timeout). Skips, saying
    /// why, when libvirtd does not answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn operations_on_the_machine_libvirtd() {
        use one_proto::agent::DatastoreDir;
        let answers = std::process::Command::new("timeout")
            .args(["10", "virsh", "-c", "qemu:///system", "version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !answers {
            println!("SKIP: libvirtd does not answer at qemu:///system");
            return;
        }
        let pid = std::process::id();
        let ds = format!("/var/tmp/one-rs-libvirt-test-{pid}");
        let prefix = format!("one-rs-t{pid}-");
        let (log, _writer) =
            crate::outbox::spawn_writer(tokio::io::sink(), crate::outbox::Clock::new());
        let ctx = DriverContext {
            host_id: 0,
            host_name: "localhost".into(),
            config: AgentConfig {
                domain_prefix: prefix.clone(),
                domain_type: Some(DomainType::Qemu),
                shutdown_timeout_ms: 1000,
                datastores: vec![DatastoreDir {
                    id: 0,
                    path: ds.clone(),
                }],
                ..AgentConfig::default()
            },
            log,
            sim: Default::default(),
        };
        let drv = Libvirt::open(ctx).unwrap();
        let req = |op| DriverRequest {
            op,
            vm_id: 7,
            deploy_id: String::new(),
            host: "localhost".into(),
            source_host: String::new(),
            ds_id: 0,
            vm_xml: "<VM><ID>7</ID><NAME>t</NAME><TEMPLATE><MEMORY>32</MEMORY></TEMPLATE>\
                     <HISTORY_RECORDS><HISTORY><SEQ>2</SEQ></HISTORY></HISTORY_RECORDS></VM>"
                .into(),
            args: Default::default(),
        };
        let result = async {
            drv.execute(req(DriverOp::Prolog)).await?;
            let t = Instant::now();
            let uuid = drv.execute(req(DriverOp::Deploy)).await?.deploy_id.unwrap();
            println!("deploy: {:?}", t.elapsed());
            assert!(Path::new(&format!("{ds}/7/deployment.2")).exists());
            let again = drv.execute(req(DriverOp::Deploy)).await?;
            assert_eq!(
                again.deploy_id.as_deref(),
                Some(uuid.as_str()),
                "idempotent"
            );

            let doms = drv.list_domains().await?;
            let d = doms.iter().find(|d| d.deploy_id == uuid).expect("listed");
            assert_eq!((d.vm_id, d.state), (7, DomainState::Running));
            assert_eq!(d.name, format!("{prefix}7"));
            drv.monitor_vms().await?;
            let samples = drv.monitor_vms().await?;
            let s = samples.iter().find(|s| s.id == 7).expect("sampled");
            assert_eq!(s.memory_kb, 32 * 1024);
            assert!(s.cpu >= 0.0);

            let t = Instant::now();
            drv.execute(req(DriverOp::Save)).await?;
            println!("save: {:?}", t.elapsed());
            assert!(Path::new(&format!("{ds}/7/checkpoint")).exists());
            assert!(
                !drv.list_domains()
                    .await?
                    .iter()
                    .any(|d| d.deploy_id == uuid)
            );
            drv.execute(req(DriverOp::Save)).await?; // repeated: fine
            let t = Instant::now();
            let restored = drv.execute(req(DriverOp::Restore)).await?;
            println!("restore: {:?}", t.elapsed());
            assert_eq!(restored.deploy_id.as_deref(), Some(uuid.as_str()));

            drv.execute(req(DriverOp::Reset)).await?;
            // No OS listens to ACPI: the shutdown times out (1 s) and destroys.
            let t = Instant::now();
            let r = drv.execute(req(DriverOp::Shutdown)).await?;
            println!("shutdown (timeout + destroy): {:?}", t.elapsed());
            assert!(r.info.contains("destroyed"), "{r:?}");
            assert!(
                !drv.list_domains()
                    .await?
                    .iter()
                    .any(|d| d.deploy_id == uuid)
            );
            drv.execute(req(DriverOp::Cancel)).await?; // absent: success
            drv.execute(req(DriverOp::Shutdown)).await?; // absent: success
            let e = drv.execute(req(DriverOp::Reboot)).await.unwrap_err();
            assert!(e.message.contains("not running"), "{e}");
            Ok::<(), DriverError>(())
        }
        .await;
        let _ = drv.execute(req(DriverOp::Cancel)).await;
        let _ = std::fs::remove_dir_all(&ds);
        let _ = std::fs::remove_file(format!("/var/log/libvirt/qemu/{prefix}7.log"));
        result.unwrap();
    }
}
