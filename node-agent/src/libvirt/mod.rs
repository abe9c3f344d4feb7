//! The `libvirt` driver: KVM / QEMU domains through libvirt (fact sheet §9), as OpenNebula's
//! KVM driver runs them: transient domains (`virsh create`) named `<prefix><vm id>`, whose
//! UUID is the DEPLOY_ID, files in the VM's directory of the system datastore.
//!
//! libvirt's C calls block, so every call runs on tokio's blocking pool. The connection is
//! opened on first use and opened again after an error that looks like a lost one.

pub mod domain;
pub mod live;

use crate::driver::{AgentDriver, BoxFuture, DriverContext, HostFacts, HypervisorReport};
use crate::host::KvmDevice;
use crate::outbox::Outbox;
use domain::{Device, DomainSettings, VmDoc};
use one_drivers::tm::{self, VmDir};
use one_drivers::vnm::{VmNet, Vnm};
use one_proto::agent::{
    AgentConfig, Capability, Check, Domain as AgentDomain, DomainState, DomainType, VmDocument,
    VmSample, WILD_VM, checks, vm_id_from_domain_name,
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

/// Where a live migration sends the domain when the request names no MIGRATE_URI: `{host}`
/// is the destination host's name, as OpenNebula's `virsh migrate --live` does over SSH.
/// `ONE_AGENT_MIGRATE_URI` (the agent's environment) replaces it.
pub const DEFAULT_MIGRATE_URI: &str = "qemu+ssh://{host}/system";

/// How long a detach waits for the guest to release the device (it must cooperate: ACPI
/// PCI hot-unplug).
const DETACH_WAIT: Duration = Duration::from_secs(10);

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
    /// [`DEFAULT_MIGRATE_URI`] or its replacement.
    migrate_uri: String,
    /// The previous CPU time of each domain (UUID), for the CPU percentage.
    cpu_prev: Mutex<HashMap<String, (Instant, u64)>>,
    /// The host's virtual networks (bridges, VLAN / VXLAN devices, security groups).
    vnm: Vnm,
    /// The last NETWORK_DRIVERS probe and when it ran (kernel support rarely changes, and
    /// the probe makes a network namespace: not at every capability look).
    net_caps: Mutex<Option<(Instant, Capability)>>,
    /// How TM_MAD `local` reaches the frontend's files (the byte stream to oned).
    transport: Option<Arc<dyn tm::local::Transport>>,
}

/// How long a NETWORK_DRIVERS probe is reused (an admin loading a module is seen after it).
const NET_PROBE_TTL: Duration = Duration::from_secs(300);

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
                vnm: Vnm::system(ctx.config.network.clone()),
                config: ctx.config,
                log: ctx.log,
                conn: Mutex::new(None),
                migrate_uri: std::env::var("ONE_AGENT_MIGRATE_URI")
                    .ok()
                    .filter(|u| !u.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_MIGRATE_URI.into()),
                cpu_prev: Mutex::new(HashMap::new()),
                net_caps: Mutex::new(None),
                transport: ctx.streams.and_then(|m| {
                    let rt = tokio::runtime::Handle::try_current().ok()?;
                    let t: Arc<dyn tm::local::Transport> =
                        Arc::new(crate::transfer::StreamTransport::new(m, rt));
                    Some(t)
                }),
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

    /// The system datastore's directory on this host.
    fn ds_base(&self, ds_id: i64) -> PathBuf {
        self.config
            .datastores
            .iter()
            .find(|d| d.id == ds_id)
            .map(|d| PathBuf::from(&d.path))
            .unwrap_or_else(|| Path::new(DEFAULT_DS_BASE).join(ds_id.to_string()))
    }

    fn vm_dir(&self, ds_id: i64, vm_id: i64) -> Result<VmDir, DriverError> {
        VmDir::new(&self.ds_base(ds_id), vm_id).map_err(tm_err)
    }

    fn settings(&self, vm_dir: &Path) -> Result<DomainSettings, DriverError> {
        let dir = vm_dir
            .to_str()
            .ok_or_else(|| DriverError::new(format!("{} is not UTF-8", vm_dir.display())))?;
        Ok(DomainSettings {
            domain_type: self.domain_type(),
            name_prefix: self.config.domain_prefix.clone(),
            vm_dir: dir.to_string(),
            emulator: None,
        })
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
        let vmd = self.vm_dir(req.ds_id, req.vm_id)?;
        let vm_dir = vmd.path().to_path_buf();
        // TM and VNM work needs no libvirt.
        match req.op {
            DriverOp::Prolog => {
                let vm = parse_vm(req)?;
                let lines = tm::vm::prolog(self.transfer(&vm)?.as_ref(), &vmd, &disks(&vm)?)
                    .map_err(tm_err)?;
                return Ok(info(lines.join("; ")));
            }
            DriverOp::PrologResume | DriverOp::PrologMigrate => {
                let vm = parse_vm(req)?;
                let lines = tm::vm::prolog_resume(
                    self.transfer(&vm)?.as_ref(),
                    &vmd,
                    &stash(&vmd, &vm, req),
                )
                .map_err(tm_err)?;
                return Ok(info(lines.join("; ")));
            }
            DriverOp::EpilogStop => {
                let vm = parse_vm(req)?;
                let lines =
                    tm::vm::epilog_stop(self.transfer(&vm)?.as_ref(), &vmd, &stash(&vmd, &vm, req))
                        .map_err(tm_err)?;
                return Ok(info(lines.join("; ")));
            }
            DriverOp::Epilog => {
                let vm = parse_vm(req)?;
                let st = stash(&vmd, &vm, req);
                let lines =
                    tm::vm::epilog(self.transfer(&vm)?.as_ref(), &vmd, &disks(&vm)?, Some(&st))
                        .map_err(tm_err)?;
                tracing::info!(vm_id = req.vm_id, dir = %vm_dir.display(), "epilog");
                return Ok(info(lines.join("; ")));
            }
            // Clean-up (recover delete, a failed VM terminated): the host's files go,
            // nothing is saved back; it needs no transfer to the frontend.
            // A host-local datastore's VM deleted while stopped: its stash goes too.
            DriverOp::EpilogDelete => {
                let removed = vmd.remove().map_err(tm_err)?;
                let mut line = if removed {
                    format!("removed {}", vm_dir.display())
                } else {
                    format!("{} was already gone", vm_dir.display())
                };
                if let Ok(vm) = parse_vm(req)
                    && let Ok(drv) = self.transfer(&vm)
                    && drv.mad() == tm::TmMad::Local
                {
                    // A clean-up: the host's part is done, the frontend's is best effort.
                    let st = stash(&vmd, &vm, req);
                    let more = match drv.has_stash(&st).and_then(|has| {
                        if has {
                            drv.discard_stash(&st).map(Some)
                        } else {
                            Ok(None)
                        }
                    }) {
                        Ok(done) => done,
                        Err(e) => Some(format!("the frontend's stash is left: {e}")),
                    };
                    if let Some(more) = more {
                        line = format!("{line}; {more}");
                    }
                }
                return Ok(info(line));
            }
            // The VNM drivers (one_drivers::vnm): bridges, VLAN / VXLAN devices, filters.
            DriverOp::NetPre | DriverOp::NetPost | DriverOp::NetClean => {
                let vm = parse_vm(req)?;
                let net = match VmNet::from_template(req.vm_id, &vm.template) {
                    Ok(net) => net,
                    // NICs no net_pre could set up left nothing to clean: a VM must be able
                    // to stop (and be deleted) whatever its NICs say.
                    Err(e) if req.op == DriverOp::NetClean => {
                        tracing::warn!(vm_id = req.vm_id, error = %e, "net_clean: nothing to do");
                        return Ok(info(format!("network clean skipped: {e}")));
                    }
                    Err(e) => return Err(vnm_err(e)),
                };
                let only = req.args.get("NIC_ID").and_then(|s| s.trim().parse().ok());
                let done = match req.op {
                    DriverOp::NetPre => self.vnm.pre(&net, only),
                    DriverOp::NetPost => self.vnm.post(&net, only),
                    _ => self.vnm.clean(&net, only),
                }
                .map_err(vnm_err)?;
                return Ok(info(done.join("; ")));
            }
            _ => {}
        }
        let conn = self.connect()?;
        match req.op {
            DriverOp::Deploy => self.deploy(&conn, req, &vm_dir),
            DriverOp::Shutdown => self.shutdown(
                &conn,
                req.vm_id,
                shutdown_timeout(req, &self.config)?,
                force_destroy(req, &self.config)?,
            ),
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
            DriverOp::Migrate => self.migrate(&conn, req),
            DriverOp::AttachDisk => self.attach_disk(&conn, req, &vm_dir),
            DriverOp::DetachDisk => self.detach(&conn, req, &vm_dir, "DISK_ID"),
            DriverOp::AttachNic => self.attach_nic(&conn, req, &vm_dir),
            DriverOp::DetachNic => self.detach(&conn, req, &vm_dir, "NIC_ID"),
            DriverOp::SnapshotCreate | DriverOp::SnapshotRevert | DriverOp::SnapshotDelete => {
                self.snapshot(&conn, req)
            }
            DriverOp::Resize => self.resize(&conn, req),
            DriverOp::UpdateConf => self.update_conf(&conn, req, &vm_dir),
            DriverOp::DiskResize => self.disk_resize(&conn, req, &vmd),
            DriverOp::DiskSnapshotCreate
            | DriverOp::DiskSnapshotRevert
            | DriverOp::DiskSnapshotDelete => self.disk_snapshot(&conn, req, &vmd),
            DriverOp::DiskSaveas => self.disk_saveas(&conn, req, &vmd),
            other => Err(DriverError::new(format!(
                "the libvirt driver does not implement {}",
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
        let vm = parse_vm(req)?;
        let settings = self.settings(vm_dir)?;
        let xml =
            domain::domain_xml(&vm, &settings).map_err(|e| DriverError::new(e.to_string()))?;
        self.transfer(&vm)?
            .make_vm_dir(&self.vm_dir(req.ds_id, req.vm_id)?)
            .map_err(tm_err)?;
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

    /// A graceful shutdown, as OpenNebula's KVM driver does it: the ACPI power button, once
    /// more halfway through the timeout (a press can be lost), then wait. A guest that is
    /// still running at the timeout (no ACPI daemon, or still booting: see
    /// docs/hypervisor-hosts-env.md) is destroyed only when `force` says so; otherwise the
    /// shutdown fails and the domain is left running (oned puts the VM back in RUNNING).
    fn shutdown(
        &self,
        conn: &Connect,
        vm_id: i64,
        timeout: Duration,
        force: bool,
    ) -> Result<DriverReply, DriverError> {
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
        let started = Instant::now();
        let mut pressed_again = false;
        loop {
            if !dom.is_active().unwrap_or(false) {
                return Ok(DriverReply::default());
            }
            let elapsed = started.elapsed();
            if elapsed >= timeout {
                break;
            }
            if !pressed_again && elapsed >= timeout / 2 {
                pressed_again = true;
                // A failure here means the domain is going away: the next look says so.
                let _ = dom.shutdown();
            }
            std::thread::sleep(SHUTDOWN_POLL.min(timeout - elapsed));
        }
        let name = self.name_of(vm_id);
        let secs = timeout.as_secs_f64();
        if !force {
            tracing::warn!(
                vm_id,
                timeout_s = secs,
                "guest ignored the ACPI shutdown: left running"
            );
            return Err(DriverError::new(format!(
                "Timed out shutting down {name}: the guest did not power off within {secs} s of \
                 the ACPI power button and keeps running (the -hard actions destroy it; \
                 SHUTDOWN_FORCE_DESTROY=\"YES\" destroys it after the timeout)"
            )));
        }
        tracing::warn!(
            vm_id,
            timeout_s = secs,
            "guest ignored the ACPI shutdown: destroying the domain (force destroy)"
        );
        self.log.log(
            one_proto::agent::LogLevel::Warn,
            format!("domain {name} did not shut down in {secs} s: destroyed (force destroy)"),
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
        // The domain runs from memory again; the ~RAM-sized file has served (OpenNebula's
        // restore removes it too).
        let _ = std::fs::remove_file(vm_dir.join("checkpoint"));
        Ok(DriverReply {
            deploy_id: Some(uuid),
            info: String::new(),
        })
    }

    /// Live migration to the destination host's libvirt. The domain stays transient (no
    /// PERSIST_DEST, nothing to undefine), as OpenNebula keeps it; UNSAFE because the disks
    /// sit in the VM directory of a shared system datastore, which libvirt cannot tell from
    /// a local disk (docs/hypervisor-hosts-env.md).
    fn migrate(&self, conn: &Connect, req: &DriverRequest) -> Result<DriverReply, DriverError> {
        let uri = migrate_uri(req, &self.migrate_uri)?;
        let dconn = Connect::open(Some(&uri))
            .map_err(|e| verr(&format!("cannot connect to the destination {uri}"), &e))?;
        let result = (|| {
            let Some(dom) = self.lookup(conn, req.vm_id)? else {
                // A repeated migrate: done if the destination has the domain.
                return match dconn.lookup_domain_by_name(&self.name_of(req.vm_id)) {
                    Ok(d) => Ok(DriverReply {
                        deploy_id: Some(d.uuid_string().map_err(|e| verr("uuid", &e))?),
                        info: "the domain already runs on the destination".into(),
                    }),
                    Err(_) => Err(DriverError::new(format!(
                        "domain {} is neither here nor at {uri}",
                        self.name_of(req.vm_id)
                    ))),
                };
            };
            let t = Instant::now();
            let mut flags = virt::sys::VIR_MIGRATE_LIVE | virt::sys::VIR_MIGRATE_UNSAFE;
            // A host-local system datastore: the destination has the VM's directory (its
            // prolog ran), libvirt copies the writable disks' content while the domain runs.
            let vm = parse_vm(req)?;
            let local = vm
                .tm_mad
                .as_deref()
                .is_some_and(|m| tm::TmMad::parse(m).ok() == Some(tm::TmMad::Local));
            if local {
                flags |= virt::sys::VIR_MIGRATE_NON_SHARED_DISK;
            }
            let moved = dom
                .migrate(&dconn, flags, None, None, 0)
                .map_err(|e| verr(&format!("live migration to {uri}"), &e))?;
            let uuid = moved.uuid_string().map_err(|e| verr("uuid", &e))?;
            tracing::info!(
                vm_id = req.vm_id,
                uri,
                ms = t.elapsed().as_millis() as u64,
                "migrated"
            );
            Ok(DriverReply {
                deploy_id: Some(uuid),
                info: format!(
                    "live-migrated to {uri}{} in {} ms",
                    if local { " with its disks" } else { "" },
                    t.elapsed().as_millis()
                ),
            })
        })();
        // Dropping dconn closes the destination connection.
        result
    }

    /// Makes the disk's file when it is not there (a hotplugged disk has had no prolog),
    /// then plugs it into the running domain; a powered-off VM only gets the file.
    fn attach_disk(
        &self,
        conn: &Connect,
        req: &DriverRequest,
        vm_dir: &Path,
    ) -> Result<DriverReply, DriverError> {
        let id = arg_id(req, "DISK_ID")?;
        let vm = parse_vm(req)?;
        let disk = disks(&vm)?.disk(id).map_err(tm_err)?.clone();
        let vmd = self.vm_dir(req.ds_id, req.vm_id)?;
        let made =
            tm::vm::attach_disk(self.transfer(&vm)?.as_ref(), &vmd, &disk).map_err(tm_err)?;
        let Some(dom) = self.lookup(conn, req.vm_id)? else {
            return Ok(info(made));
        };
        let xml = domain::device_xml(&vm, &self.settings(vm_dir)?, Device::Disk(id))
            .map_err(|e| DriverError::new(e.to_string()))?;
        self.plug(&dom, &xml, req.vm_id)
    }

    fn attach_nic(
        &self,
        conn: &Connect,
        req: &DriverRequest,
        vm_dir: &Path,
    ) -> Result<DriverReply, DriverError> {
        let id = arg_id(req, "NIC_ID")?;
        let vm = parse_vm(req)?;
        let xml = domain::device_xml(&vm, &self.settings(vm_dir)?, Device::Nic(id))
            .map_err(|e| DriverError::new(e.to_string()))?;
        let dom = self.lookup(conn, req.vm_id)?.ok_or_else(|| {
            DriverError::new(format!("domain {} is not running", self.name_of(req.vm_id)))
        })?;
        let plugged = self.plug(&dom, &xml, req.vm_id)?;
        let ctx = self.refresh_context(conn, req, vm_dir, &vm)?;
        Ok(info(format!("{}; {ctx}", plugged.info)))
    }

    /// attach-device --live, idempotent: a device whose target is already there is done.
    fn plug(&self, dom: &Domain, xml: &str, vm_id: i64) -> Result<DriverReply, DriverError> {
        let target = target_of(xml).unwrap_or_default();
        if !target.is_empty() && has_target(dom, &target)? {
            return Ok(info(format!("{target} was already attached")));
        }
        dom.attach_device_flags(xml, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
            .map_err(|e| verr(&format!("attach {target}"), &e))?;
        tracing::info!(vm_id, target, "device attached");
        Ok(info(format!("attached {target}")))
    }

    /// detach-device --live, then waits for the guest to release the device (PCI
    /// hot-unplug needs its cooperation). A detached disk's file is removed, as the TM
    /// epilog of the disk does (a persistent disk is a link: its image stays).
    fn detach(
        &self,
        conn: &Connect,
        req: &DriverRequest,
        vm_dir: &Path,
        key: &str,
    ) -> Result<DriverReply, DriverError> {
        let id = arg_id(req, key)?;
        let vm = parse_vm(req)?;
        let dev = if key == "DISK_ID" {
            Device::Disk(id)
        } else {
            Device::Nic(id)
        };
        let xml = domain::device_xml(&vm, &self.settings(vm_dir)?, dev)
            .map_err(|e| DriverError::new(e.to_string()))?;
        let target = target_of(&xml).unwrap_or_default();
        if let Some(dom) = self.lookup(conn, req.vm_id)?
            && has_target(&dom, &target)?
        {
            dom.detach_device_flags(&xml, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
                .map_err(|e| verr(&format!("detach {target}"), &e))?;
            let deadline = Instant::now() + DETACH_WAIT;
            while has_target(&dom, &target)? {
                if Instant::now() > deadline {
                    return Err(DriverError::new(format!(
                        "detach {target}: the guest did not release the device in {} s \
                         (does its OS handle ACPI hot-unplug?)",
                        DETACH_WAIT.as_secs()
                    )));
                }
                std::thread::sleep(SHUTDOWN_POLL);
            }
            tracing::info!(vm_id = req.vm_id, target, "device detached");
        }
        if let Device::Nic(_) = dev {
            // The context lost the NIC's ETHn_* variables (oned took them out).
            let ctx = self.refresh_context(conn, req, vm_dir, &vm)?;
            return Ok(info(format!("detached {target}; {ctx}")));
        }
        if let Device::Disk(id) = dev {
            let disk = disks(&vm)?.disk(id).map_err(tm_err)?.clone();
            let vmd = self.vm_dir(req.ds_id, req.vm_id)?;
            let lines =
                tm::vm::detach_disk(self.transfer(&vm)?.as_ref(), &vmd, &disk).map_err(tm_err)?;
            return Ok(info(format!("detached {target}; {}", lines.join("; "))));
        }
        Ok(info(format!("detached {target}")))
    }

    /// System snapshots as libvirt internal snapshots (memory and disks, in the qcow2
    /// files), named `snap-<SNAPSHOT_ID>`.
    fn snapshot(&self, conn: &Connect, req: &DriverRequest) -> Result<DriverReply, DriverError> {
        let id = arg_id(req, "SNAPSHOT_ID")?;
        let name = format!("snap-{id}");
        let dom = self.lookup(conn, req.vm_id)?.ok_or_else(|| {
            DriverError::new(format!("domain {} is not running", self.name_of(req.vm_id)))
        })?;
        let existing = Domain::lookup_snapshot_by_name(&dom, &name, 0).ok();
        match req.op {
            DriverOp::SnapshotCreate => {
                if existing.is_some() {
                    return Ok(info(format!("{name} already exists")));
                }
                snapshot_disks_ok(&parse_vm(req)?)?;
                let xml = format!("<domainsnapshot><name>{name}</name></domainsnapshot>");
                dom.create_snapshot_xml(&xml, 0)
                    .map_err(|e| verr(&format!("snapshot {name}"), &e))?;
                Ok(info(format!("created {name}")))
            }
            DriverOp::SnapshotRevert => {
                let snap = existing
                    .ok_or_else(|| DriverError::new(format!("the domain has no {name}")))?;
                snap.revert(0)
                    .map_err(|e| verr(&format!("revert to {name}"), &e))?;
                Ok(info(format!("reverted to {name}")))
            }
            _ => {
                let Some(snap) = existing else {
                    return Ok(info(format!("{name} was already gone")));
                };
                snap.delete(0)
                    .map_err(|e| verr(&format!("delete {name}"), &e))?;
                Ok(info(format!("deleted {name}")))
            }
        }
    }

    /// resize: a domain that is not running is re-created from the template at its next
    /// deploy, so there is nothing to do; a running one gets the new vCPUs and memory live
    /// where libvirt allows it (within the domain's maximum), else libvirt's reason.
    fn resize(&self, conn: &Connect, req: &DriverRequest) -> Result<DriverReply, DriverError> {
        let Some(dom) = self.lookup(conn, req.vm_id)? else {
            return Ok(info("not running: the next deploy uses the new capacity"));
        };
        let vm = parse_vm(req)?;
        let t = &vm.template;
        if let Some(v) = t.get("VCPU").map(str::trim).filter(|v| !v.is_empty()) {
            let n: u32 = v
                .parse()
                .map_err(|_| DriverError::new(format!("VCPU {v:?} is not a number")))?;
            dom.set_vcpus_flags(n, virt::sys::VIR_DOMAIN_VCPU_LIVE)
                .map_err(|e| verr("hot resize of the vCPUs", &e))?;
        }
        if let Some(m) = t.get("MEMORY").map(str::trim).filter(|v| !v.is_empty()) {
            let mb: u64 = m
                .parse()
                .map_err(|_| DriverError::new(format!("MEMORY {m:?} is not a number")))?;
            dom.set_memory_flags(mb * 1024, virt::sys::VIR_DOMAIN_MEM_LIVE)
                .map_err(|e| verr("hot resize of the memory", &e))?;
        }
        Ok(info("resized live"))
    }

    /// update_conf: the context CD is written again; a running domain gets the new media
    /// (QEMU keeps the replaced file open otherwise).
    fn update_conf(
        &self,
        conn: &Connect,
        req: &DriverRequest,
        vm_dir: &Path,
    ) -> Result<DriverReply, DriverError> {
        let vm = parse_vm(req)?;
        Ok(info(self.refresh_context(conn, req, vm_dir, &vm)?))
    }

    /// Writes the context CD again from the VM's CONTEXT and, when the domain runs, swaps the
    /// new media in (OpenNebula's reconfigure): after updateconf and NIC attach / detach, so
    /// the guest can read its new network variables.
    fn refresh_context(
        &self,
        conn: &Connect,
        req: &DriverRequest,
        vm_dir: &Path,
        vm: &VmDoc,
    ) -> Result<String, DriverError> {
        if vm.template.vector("CONTEXT").is_none() {
            return Ok("no CONTEXT".into());
        }
        let Some(cd) = disks(vm)?.context else {
            return Ok("the CONTEXT has no CD".into());
        };
        let id = cd.id;
        let drv = self.transfer(vm)?;
        let vmd = self.vm_dir(req.ds_id, req.vm_id)?;
        drv.make_vm_dir(&vmd).map_err(tm_err)?;
        drv.context_cd(&vmd, &cd).map_err(tm_err)?;
        if let Some(dom) = self.lookup(conn, req.vm_id)? {
            let xml = domain::device_xml(vm, &self.settings(vm_dir)?, Device::Context)
                .map_err(|e| DriverError::new(e.to_string()))?;
            // Eject, then insert (OpenNebula's prereconfigure / reconfigure): the new media
            // has the old one's path, and libvirt does nothing for an unchanged source.
            if let Some(ejected) = without_source(&xml) {
                eject(&dom, &ejected)?;
            }
            dom.update_device_flags(&xml, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
                .map_err(|e| verr("change the context CD", &e))?;
        }
        Ok(format!("context CD disk.{id} written"))
    }

    /// The running domain of the VM, if there is one: the disk operations that touch a
    /// file QEMU holds go through it.
    fn running(&self, conn: &Connect, vm_id: i64) -> Result<Option<Domain>, DriverError> {
        Ok(self
            .lookup(conn, vm_id)?
            .filter(|d| d.is_active().unwrap_or(false)))
    }

    /// disk_resize: the disk grows to its SIZE (libvirt's block resize while the domain
    /// runs, `qemu-img resize` otherwise).
    fn disk_resize(
        &self,
        conn: &Connect,
        req: &DriverRequest,
        vmd: &VmDir,
    ) -> Result<DriverReply, DriverError> {
        let id = arg_id(req, "DISK_ID")?;
        let vm = parse_vm(req)?;
        let disks = disks(&vm)?;
        let disk = disks.disk(id).map_err(tm_err)?;
        let size_mb = match disk {
            tm::Disk::Image(d) => d.size_mb,
            tm::Disk::Volatile(d) => Some(d.size_mb),
        }
        .filter(|s| *s > 0)
        .ok_or_else(|| DriverError::new(format!("DISK {id} has no SIZE to grow to")))?;
        let dom = self.running(conn, req.vm_id)?;
        let ld = dom.as_ref().map(|dom| live::LibvirtDisk { dom });
        let live = live_of(&ld, disk)?;
        let r = self
            .transfer(&vm)?
            .resize(vmd, disk, size_mb << 20, live)
            .map_err(tm_err)?;
        Ok(info(r))
    }

    /// disk_snapshot_create / _revert / _delete on a qcow2 disk: through the running domain
    /// when there is one (revert needs the VM off, as OpenNebula's).
    fn disk_snapshot(
        &self,
        conn: &Connect,
        req: &DriverRequest,
        vmd: &VmDir,
    ) -> Result<DriverReply, DriverError> {
        let id = arg_id(req, "DISK_ID")?;
        let snap = arg_id(req, "SNAPSHOT_ID")?;
        let vm = parse_vm(req)?;
        let disks = disks(&vm)?;
        let disk = disks.disk(id).map_err(tm_err)?;
        let drv = self.transfer(&vm)?;
        let dom = self.running(conn, req.vm_id)?;
        let ld = dom.as_ref().map(|dom| live::LibvirtDisk { dom });
        let live = live_of(&ld, disk)?;
        let r = match req.op {
            DriverOp::DiskSnapshotCreate => drv.snapshot_create(vmd, disk, snap, live),
            DriverOp::DiskSnapshotDelete => drv.snapshot_delete(vmd, disk, snap, live),
            _ => {
                if dom.is_some() {
                    return Err(DriverError::new(format!(
                        "domain {} is running: a disk snapshot is reverted with the VM                          powered off",
                        self.name_of(req.vm_id)
                    )));
                }
                drv.snapshot_revert(vmd, disk, snap)
            }
        }
        .map_err(tm_err)?;
        tracing::info!(
            vm_id = req.vm_id,
            disk = id,
            snap,
            op = req.op.name(),
            "{r}"
        );
        Ok(info(r))
    }

    /// disk_saveas: the disk's content (from the running domain when it runs) or a
    /// snapshot's, as a new image file in its image datastore (SAVEAS_SOURCE in
    /// SAVEAS_DATASTORE, both as this host sees them).
    fn disk_saveas(
        &self,
        conn: &Connect,
        req: &DriverRequest,
        vmd: &VmDir,
    ) -> Result<DriverReply, DriverError> {
        let id = arg_id(req, "DISK_ID")?;
        let snap = match req.args.get("SNAPSHOT_ID").map(|s| s.trim()) {
            None | Some("") | Some("-1") => None,
            Some(_) => Some(arg_id(req, "SNAPSHOT_ID")?),
        };
        let arg = |k: &str| {
            req.args
                .get(k)
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .ok_or_else(|| DriverError::new(format!("disk_saveas needs {k}")))
        };
        let vm = parse_vm(req)?;
        let disks = disks(&vm)?;
        let disk = disks.disk(id).map_err(tm_err)?;
        let to = tm::SaveAs {
            datastore: arg("SAVEAS_DATASTORE")?,
            source: arg("SAVEAS_SOURCE")?,
            format: disk.format(),
        };
        let dom = self.running(conn, req.vm_id)?;
        let ld = dom.as_ref().map(|dom| live::LibvirtDisk { dom });
        let live = live_of(&ld, disk)?;
        let r = self
            .transfer(&vm)?
            .save_as(vmd, disk, snap, &to, live)
            .map_err(tm_err)?;
        Ok(info(r))
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
                s.disk_sizes = disk_sizes(&xml);
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

/// DISK_SIZE of monitoring: what each disk of the domain takes in its VM directory (the
/// file it writes and its snapshots), read from the files `disk.<id>` (or a file of
/// `disk.<id>.snap/`) the domain's XML names. CD-ROMs (the context CD) are left out.
fn disk_sizes(xml: &str) -> Vec<one_proto::agent::DiskSize> {
    let mut out = Vec::new();
    for d in live::disk_devices(xml) {
        if d.device != "disk" {
            continue;
        }
        let Some(top) = d.top else { continue };
        // <vm dir>/disk.<id> or <vm dir>/disk.<id>.snap/<n>
        let (vm_dir, name) = match top.parent() {
            Some(p)
                if p.file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(".snap")) =>
            {
                (
                    p.parent(),
                    p.file_name().map(|n| n.to_string_lossy().into_owned()),
                )
            }
            p => (p, top.file_name().map(|n| n.to_string_lossy().into_owned())),
        };
        let id = name
            .as_deref()
            .and_then(|n| n.strip_prefix("disk."))
            .map(|n| n.trim_end_matches(".snap"))
            .and_then(|n| n.parse::<u32>().ok());
        let (Some(vm_dir), Some(id)) = (vm_dir, id) else {
            continue;
        };
        let vm_id = vm_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<i64>().ok());
        let (Some(base), Some(vm_id)) = (vm_dir.parent(), vm_id) else {
            continue;
        };
        let Ok(vmd) = VmDir::new(base, vm_id) else {
            continue;
        };
        if let Some(mb) = tm::disk_usage_mb(&vmd, id) {
            out.push(one_proto::agent::DiskSize {
                id: i64::from(id),
                size_mb: i64::try_from(mb).unwrap_or(i64::MAX),
            });
        }
    }
    out
}

/// Internal snapshots keep the memory and every writable disk in qcow2 files: every
/// writable disk must be qcow2, and there must be one.
fn snapshot_disks_ok(vm: &VmDoc) -> Result<(), DriverError> {
    let mut qcow2 = 0;
    for d in vm.template.vectors("DISK") {
        let kind = d.get("TYPE").unwrap_or("FILE").trim().to_ascii_uppercase();
        let readonly = kind == "CDROM"
            || d.get("READONLY")
                .is_some_and(|r| r.trim().eq_ignore_ascii_case("yes"));
        if readonly {
            continue;
        }
        let format = d
            .get("DRIVER")
            .or_else(|| d.get("FORMAT"))
            .map(|f| f.trim().to_ascii_lowercase())
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "raw".into());
        if format != "qcow2" {
            return Err(DriverError::new(format!(
                "system snapshots need qcow2 disks: DISK {} is {format}",
                d.get("DISK_ID").unwrap_or("?")
            )));
        }
        qcow2 += 1;
    }
    if qcow2 == 0 {
        return Err(DriverError::new(
            "system snapshots need qcow2 disks: the VM has no writable disk to keep one in",
        ));
    }
    Ok(())
}

fn tm_err(e: one_drivers::Error) -> DriverError {
    DriverError::new(e.to_string())
}

impl Inner {
    /// The transfer driver of the VM's system datastore (its last HISTORY's TM_MAD). A VM
    /// document without history (the agent's own tests) is on a shared datastore.
    fn transfer(&self, vm: &VmDoc) -> Result<Box<dyn tm::TransferDriver>, DriverError> {
        let mad = tm::TmMad::parse(vm.tm_mad.as_deref().unwrap_or("shared")).map_err(tm_err)?;
        tm::driver(mad, self.transport.clone()).map_err(tm_err)
    }
}

fn disks(vm: &VmDoc) -> Result<tm::VmDisks, DriverError> {
    tm::VmDisks::from_template(&vm.template).map_err(tm_err)
}

/// Where the frontend keeps the VM's files while it is off a host-local datastore (stopped,
/// undeployed, between two hosts of a cold migration): oned names it in the request's STASH
/// (`<system datastore>/.stash/<vm>` of the datastore the files left), for this stay
/// (HISTORY SEQ). Without one, the stash of the VM's datastore here.
fn stash(vmd: &VmDir, vm: &VmDoc, req: &DriverRequest) -> tm::Stash {
    let dir = req
        .args
        .get("STASH")
        .filter(|s| !s.trim().is_empty())
        .map(|s| PathBuf::from(s.trim()))
        .unwrap_or_else(|| {
            let p = vmd.path();
            p.parent()
                .unwrap_or(p)
                .join(".stash")
                .join(p.file_name().unwrap_or_default())
        });
    tm::Stash { dir, seq: vm.seq }
}

/// The running domain's side of `disk`, when a domain runs.
fn live_of<'a>(
    ld: &'a Option<live::LibvirtDisk<'a>>,
    disk: &'a tm::Disk,
) -> Result<Option<tm::Live<'a>>, DriverError> {
    let Some(ld) = ld else {
        return Ok(None);
    };
    let target = disk
        .target()
        .ok_or_else(|| DriverError::new(format!("DISK {} has no TARGET", disk.id())))?;
    Ok(Some(tm::Live { disk: ld, target }))
}

fn info(text: impl Into<String>) -> DriverReply {
    DriverReply {
        deploy_id: None,
        info: text.into(),
    }
}

/// Ejects a CD (`xml` without its source). A guest may lock the tray or close it again
/// (firmware or kernel probing the drive while it boots), so the eject is forced (QEMU opens
/// a locked tray; libvirt then removes the medium without waiting) and tried again, often,
/// for up to [`EJECT_PATIENCE`] while QEMU reports the tray closed by then.
fn eject(dom: &Domain, xml: &str) -> Result<(), DriverError> {
    let flags = virt::sys::VIR_DOMAIN_AFFECT_LIVE | virt::sys::VIR_DOMAIN_DEVICE_MODIFY_FORCE;
    let start = Instant::now();
    loop {
        match dom.update_device_flags(xml, flags) {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() < EJECT_PATIENCE && e.to_string().contains("is not open") => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(verr("eject the context CD", &e)),
        }
    }
}

/// How long [`eject`] tries while a booting guest keeps closing the tray (seen here: more
/// than 3 s under load).
const EJECT_PATIENCE: Duration = Duration::from_secs(20);

/// A CD-ROM's device XML without its `<source .../>`: the same drive, empty.
fn without_source(xml: &str) -> Option<String> {
    let start = xml.find("<source ")?;
    let end = start + xml[start..].find("/>")? + 2;
    Some(format!("{}{}", &xml[..start], &xml[end..]))
}

fn vnm_err(e: one_drivers::Error) -> DriverError {
    DriverError::new(e.to_string())
}

fn parse_vm(req: &DriverRequest) -> Result<VmDoc, DriverError> {
    VmDoc::parse(&req.vm_xml).map_err(|e| DriverError::new(e.to_string()))
}

/// A numeric id argument of the request (DISK_ID, NIC_ID, SNAPSHOT_ID).
fn arg_id(req: &DriverRequest, key: &str) -> Result<u32, DriverError> {
    let raw = req.args.get(key).map(|s| s.trim()).unwrap_or("");
    raw.parse()
        .map_err(|_| DriverError::new(format!("{} needs {key}, got {raw:?}", req.op.name())))
}

/// SHUTDOWN_TIMEOUT (seconds) from the request, else the agent's configuration.
fn shutdown_timeout(req: &DriverRequest, config: &AgentConfig) -> Result<Duration, DriverError> {
    match req.args.get("SHUTDOWN_TIMEOUT").map(|s| s.trim()) {
        None | Some("") => Ok(Duration::from_millis(config.shutdown_timeout_ms)),
        Some(s) => s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| DriverError::new(format!("SHUTDOWN_TIMEOUT {s:?} is not seconds"))),
    }
}

/// SHUTDOWN_FORCE_DESTROY (YES or NO) from the request, else the agent's configuration.
fn force_destroy(req: &DriverRequest, config: &AgentConfig) -> Result<bool, DriverError> {
    match req.args.get("SHUTDOWN_FORCE_DESTROY").map(|s| s.trim()) {
        None | Some("") => Ok(config.shutdown_force_destroy),
        Some(s) if s.eq_ignore_ascii_case("YES") => Ok(true),
        Some(s) if s.eq_ignore_ascii_case("NO") => Ok(false),
        Some(s) => Err(DriverError::new(format!(
            "SHUTDOWN_FORCE_DESTROY {s:?} is neither YES nor NO"
        ))),
    }
}

/// The destination URI of a live migration: the request's MIGRATE_URI (the destination
/// host's own setting), else the template with `{host}` replaced.
fn migrate_uri(req: &DriverRequest, template: &str) -> Result<String, DriverError> {
    if let Some(uri) = req.args.get("MIGRATE_URI").map(|s| s.trim())
        && !uri.is_empty()
    {
        return Ok(uri.to_string());
    }
    let host = req.source_host.trim();
    // A host name goes into a URI: nothing that could change the URI's meaning.
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
    {
        return Err(DriverError::new(format!(
            "migrate needs the destination host's name, got {host:?}"
        )));
    }
    Ok(template.replace("{host}", host))
}

/// Whether the domain's live XML has a device with target `dev` (disks and interfaces).
fn has_target(dom: &Domain, dev: &str) -> Result<bool, DriverError> {
    let xml = dom.xml_desc(0).map_err(|e| verr("domain XML", &e))?;
    let (nics, disks) = device_targets(&xml);
    Ok(nics.iter().chain(disks.iter()).any(|t| t == dev))
}

/// The target a device XML names (`<target dev='...'>`).
fn target_of(device_xml: &str) -> Option<String> {
    let wrapped = format!("<domain><devices>{device_xml}</devices></domain>");
    let (nics, disks) = device_targets(&wrapped);
    nics.into_iter().chain(disks).next()
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

    fn update_security_groups(
        &self,
        vms: Vec<VmDocument>,
    ) -> BoxFuture<'_, Result<DriverReply, DriverError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || {
            let nets = vms
                .iter()
                .map(|d| {
                    let vm =
                        VmDoc::parse(&d.vm_xml).map_err(|e| DriverError::new(e.to_string()))?;
                    VmNet::from_template(d.vm_id, &vm.template).map_err(vnm_err)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let t = Instant::now();
            let n = inner.vnm.update_security_groups(&nets).map_err(vnm_err)?;
            Ok(info(format!(
                "firewall rules of {n} NIC(s) of {} VM(s) loaded in one transaction ({} ms)",
                nets.len(),
                t.elapsed().as_millis()
            )))
        }))
    }

    fn network_drivers(&self) -> BoxFuture<'_, Option<Capability>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            if let Some((at, cap)) = lock(&inner.net_caps).as_ref()
                && at.elapsed() < NET_PROBE_TTL
            {
                return Some(cap.clone());
            }
            let found = match tokio::task::spawn_blocking(one_drivers::vnm::detect::try_probe).await
            {
                Ok(Ok(found)) => found,
                Ok(Err(why)) => {
                    // Nothing learnt: the host is not limited (rather than limited wrongly).
                    tracing::warn!(host = %inner.host_name, %why, "network drivers not probed");
                    return None;
                }
                Err(_) => return None,
            };
            let cap = crate::capabilities::network_drivers(&found);
            *lock(&inner.net_caps) = Some((Instant::now(), cap.clone()));
            Some(cap)
        })
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
    fn an_ejected_cd_is_the_same_drive_without_source() {
        let cd = "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>\
                  <source file='/ds/0/7/disk.1'/><target dev='hda' bus='ide'/><readonly/></disk>";
        assert_eq!(
            without_source(cd).unwrap(),
            "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>\
             <target dev='hda' bus='ide'/><readonly/></disk>"
        );
        assert_eq!(without_source("<disk/>"), None);
    }

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

    #[test]
    fn snapshots_need_qcow2_disks() {
        let vm = |disks: &str| {
            VmDoc::parse(&format!(
                "<VM><ID>1</ID><TEMPLATE><MEMORY>32</MEMORY>{disks}</TEMPLATE></VM>"
            ))
            .unwrap()
        };
        let e = snapshot_disks_ok(&vm("")).unwrap_err();
        assert!(e.message.contains("no writable disk"), "{e}");
        let e = snapshot_disks_ok(&vm(
            "<DISK><DISK_ID>0</DISK_ID><FORMAT>qcow2</FORMAT></DISK>\
             <DISK><DISK_ID>1</DISK_ID></DISK>",
        ))
        .unwrap_err();
        assert_eq!(
            e.message,
            "system snapshots need qcow2 disks: DISK 1 is raw"
        );
        snapshot_disks_ok(&vm(
            "<DISK><DISK_ID>0</DISK_ID><DRIVER>qcow2</DRIVER></DISK>\
             <DISK><DISK_ID>1</DISK_ID><TYPE>CDROM</TYPE></DISK>",
        ))
        .unwrap();
    }

    #[test]
    fn migrate_uri_from_the_request_or_the_template() {
        let mut req = DriverRequest {
            op: DriverOp::Migrate,
            vm_id: 1,
            deploy_id: String::new(),
            host: "node1".into(),
            source_host: "node2".into(),
            ds_id: 0,
            vm_xml: String::new(),
            args: Default::default(),
        };
        assert_eq!(
            migrate_uri(&req, DEFAULT_MIGRATE_URI).unwrap(),
            "qemu+ssh://node2/system"
        );
        req.source_host = "x/system?socket=/tmp/evil".into();
        assert!(migrate_uri(&req, DEFAULT_MIGRATE_URI).is_err());
        req.args
            .insert("MIGRATE_URI".into(), "qemu+tcp://10.9.0.2/system".into());
        assert_eq!(
            migrate_uri(&req, DEFAULT_MIGRATE_URI).unwrap(),
            "qemu+tcp://10.9.0.2/system"
        );
    }

    #[test]
    fn shutdown_settings_from_the_request_else_the_configuration() {
        let mut req = DriverRequest {
            op: DriverOp::Shutdown,
            vm_id: 1,
            deploy_id: String::new(),
            host: "node1".into(),
            source_host: String::new(),
            ds_id: 0,
            vm_xml: String::new(),
            args: Default::default(),
        };
        let mut config = AgentConfig::default();
        assert!(!force_destroy(&req, &config).unwrap());
        assert_eq!(
            shutdown_timeout(&req, &config).unwrap(),
            Duration::from_secs(120)
        );
        config.shutdown_force_destroy = true;
        assert!(force_destroy(&req, &config).unwrap());
        req.args
            .insert("SHUTDOWN_FORCE_DESTROY".into(), " No ".into());
        req.args.insert("SHUTDOWN_TIMEOUT".into(), "7".into());
        assert!(!force_destroy(&req, &config).unwrap());
        assert_eq!(
            shutdown_timeout(&req, &config).unwrap(),
            Duration::from_secs(7)
        );
        req.args.insert("SHUTDOWN_FORCE_DESTROY".into(), "1".into());
        assert!(force_destroy(&req, &config).is_err());
        req.args.insert("SHUTDOWN_TIMEOUT".into(), "soon".into());
        assert!(shutdown_timeout(&req, &config).is_err());
    }

    fn libvirt_answers() -> bool {
        std::process::Command::new("timeout")
            .args(["10", "virsh", "-c", "qemu:///system", "version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    fn test_driver(prefix: &str, ds: &str) -> Arc<dyn AgentDriver> {
        use one_proto::agent::DatastoreDir;
        let (log, _writer) =
            crate::outbox::spawn_writer(tokio::io::sink(), crate::outbox::Clock::new());
        Libvirt::open(DriverContext {
            host_id: 0,
            host_name: "localhost".into(),
            config: AgentConfig {
                domain_prefix: prefix.into(),
                domain_type: Some(DomainType::Qemu),
                shutdown_timeout_ms: 1000,
                datastores: vec![DatastoreDir {
                    id: 0,
                    path: ds.into(),
                }],
                ..AgentConfig::default()
            },
            log,
            sim: Default::default(),
            streams: None,
        })
        .unwrap()
    }

    /// TM files, hotplug, snapshots, update_conf and disk_resize on the machine's libvirtd,
    /// with a disk-less-OS guest (SeaBIOS waits: enough for libvirt's side of each op).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_hotplug_and_snapshots_on_the_machine_libvirtd() {
        if !libvirt_answers() {
            println!("SKIP: libvirtd does not answer at qemu:///system");
            return;
        }
        let pid = std::process::id();
        let ds = format!("/var/tmp/one-rs-libvirt-hp-{pid}");
        std::fs::create_dir_all(&ds).unwrap();
        let prefix = format!("one-rs-h{pid}-");
        let bridge = format!("onebr{}", pid % 100_000);
        let tap = format!("ort{}n0", pid % 100_000);
        let made_bridge = std::process::Command::new("ip")
            .args(["link", "add", &bridge, "type", "bridge"])
            .status()
            .is_ok_and(|s| s.success());
        let drv = test_driver(&prefix, &ds);
        let vm_xml = |extra: &str, ctx: &str, size0: u32| {
            format!(
                "<VM><ID>8</ID><NAME>t</NAME><TEMPLATE><MEMORY>32</MEMORY>\
                 <DISK><DISK_ID>0</DISK_ID><TYPE>fs</TYPE><SIZE>{size0}</SIZE>\
                 <FORMAT>qcow2</FORMAT><TARGET>vda</TARGET></DISK>{extra}\
                 <CONTEXT><DISK_ID>1</DISK_ID><TARGET>hda</TARGET><HOSTNAME>{ctx}</HOSTNAME>\
                 </CONTEXT></TEMPLATE>\
                 <HISTORY_RECORDS><HISTORY><SEQ>0</SEQ></HISTORY></HISTORY_RECORDS></VM>"
            )
        };
        let req = |op, xml: String, args: &[(&str, &str)]| DriverRequest {
            op,
            vm_id: 8,
            deploy_id: String::new(),
            host: "localhost".into(),
            source_host: String::new(),
            ds_id: 0,
            vm_xml: xml,
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let conn = Connect::open(Some("qemu:///system")).unwrap();
        let live_xml = |conn: &Connect| {
            conn.lookup_domain_by_name(&format!("{prefix}8"))
                .and_then(|d| d.xml_desc(0))
                .unwrap_or_default()
        };
        let base = vm_xml("", "a", 8);
        let dir = format!("{ds}/8");
        let result = async {
            let r = drv
                .execute(req(DriverOp::Prolog, base.clone(), &[]))
                .await?;
            println!("prolog: {}", r.info);
            assert!(Path::new(&format!("{dir}/disk.0")).exists());
            assert!(Path::new(&format!("{dir}/disk.1")).exists());
            drv.execute(req(DriverOp::Deploy, base.clone(), &[]))
                .await?;
            assert!(Path::new(&format!("{dir}/deployment.0")).exists());

            // Disk hotplug: the file is made, then plugged in; repeating is harmless.
            let disk2 = "<DISK><DISK_ID>2</DISK_ID><TYPE>fs</TYPE><SIZE>4</SIZE>\
                         <FORMAT>qcow2</FORMAT><TARGET>vdb</TARGET><ATTACH>YES</ATTACH></DISK>";
            let with2 = vm_xml(disk2, "a", 8);
            let t = Instant::now();
            drv.execute(req(
                DriverOp::AttachDisk,
                with2.clone(),
                &[("DISK_ID", "2")],
            ))
            .await?;
            println!("attach_disk: {:?}", t.elapsed());
            assert!(Path::new(&format!("{dir}/disk.2")).exists());
            assert!(live_xml(&conn).contains(&format!("{dir}/disk.2")));
            let again = drv
                .execute(req(
                    DriverOp::AttachDisk,
                    with2.clone(),
                    &[("DISK_ID", "2")],
                ))
                .await?;
            assert!(again.info.contains("already"), "{again:?}");

            // NIC hotplug on a bridge, MAC from the NIC.
            if made_bridge {
                let nic = format!(
                    "<NIC><NIC_ID>0</NIC_ID><BRIDGE>{bridge}</BRIDGE><TARGET>{tap}</TARGET>\
                     <MAC>02:00:0a:00:00:08</MAC></NIC>"
                );
                drv.execute(req(
                    DriverOp::AttachNic,
                    vm_xml(&format!("{disk2}{nic}"), "a", 8),
                    &[("NIC_ID", "0")],
                ))
                .await?;
                let x = live_xml(&conn);
                assert!(x.contains("02:00:0a:00:00:08") && x.contains(&tap), "{x}");
                assert!(Path::new(&format!("/sys/class/net/{bridge}/brif/{tap}")).exists());
            } else {
                println!("SKIP NIC hotplug: cannot create bridge {bridge}");
            }

            // Snapshots: create, revert, delete (internal, in the qcow2 disks).
            for (op, want) in [
                (DriverOp::SnapshotCreate, "created snap-0"),
                (DriverOp::SnapshotCreate, "already exists"),
                (DriverOp::SnapshotRevert, "reverted to snap-0"),
                (DriverOp::SnapshotDelete, "deleted snap-0"),
                (DriverOp::SnapshotDelete, "already gone"),
            ] {
                let t = Instant::now();
                let r = drv
                    .execute(req(op, with2.clone(), &[("SNAPSHOT_ID", "0")]))
                    .await?;
                println!("{}: {:?}", op.name(), t.elapsed());
                assert!(r.info.contains(want), "{op:?}: {r:?}");
            }

            // update_conf: a new context CD, swapped into the running domain.
            let before = std::fs::read(format!("{dir}/disk.1")).unwrap();
            drv.execute(req(DriverOp::UpdateConf, vm_xml(disk2, "bbbb", 8), &[]))
                .await?;
            assert_ne!(std::fs::read(format!("{dir}/disk.1")).unwrap(), before);

            // disk_resize while running: libvirt's block resize.
            drv.execute(req(
                DriverOp::DiskResize,
                vm_xml(disk2, "bbbb", 12),
                &[("DISK_ID", "0")],
            ))
            .await?;
            let dom = conn.lookup_domain_by_name(&format!("{prefix}8")).unwrap();
            assert_eq!(dom.block_info("vda", 0).unwrap().capacity, 12 << 20);

            // Resize of a running domain beyond its maximum: libvirt's reason, not a panic.
            let e = drv
                .execute(req(
                    DriverOp::Resize,
                    base.replace("<MEMORY>32", "<MEMORY>64"),
                    &[],
                ))
                .await
                .unwrap_err();
            assert!(e.message.contains("hot resize"), "{e}");

            drv.execute(req(DriverOp::Cancel, base.clone(), &[]))
                .await?;
            drv.execute(req(DriverOp::Epilog, base.clone(), &[]))
                .await?;
            assert!(!Path::new(&dir).exists());
            Ok::<(), DriverError>(())
        }
        .await;
        let _ = drv.execute(req(DriverOp::Cancel, base.clone(), &[])).await;
        let _ = std::fs::remove_dir_all(&ds);
        let _ = std::fs::remove_file(format!("/var/log/libvirt/qemu/{prefix}8.log"));
        if made_bridge {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &bridge])
                .status();
        }
        result.unwrap();
    }

    /// Disk snapshots, save-as and resize of a qcow2 image disk while the domain runs, with
    /// libvirt's block jobs on the chain the transfer driver made (relative backing names
    /// through the `.snap` self link), then a revert with the domain off. The guest is
    /// SeaBIOS waiting (it writes nothing): contents are checked with qemu-img.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn live_disk_snapshots_and_saveas_on_the_machine_libvirtd() {
        use one_drivers::tm::qemu_img;
        if !libvirt_answers() {
            println!("SKIP: libvirtd does not answer at qemu:///system");
            return;
        }
        let pid = std::process::id();
        let root = format!("/var/tmp/one-rs-libvirt-ds-{pid}");
        let (ds, images) = (format!("{root}/0"), format!("{root}/1"));
        std::fs::create_dir_all(&ds).unwrap();
        std::fs::create_dir_all(&images).unwrap();
        let _ = std::process::Command::new("chmod")
            .args(["0755", &root])
            .status();
        let prefix = format!("one-rs-s{pid}-");
        let drv = test_driver(&prefix, &ds);
        // The image: 4 MiB qcow2 with a marker in its first sector.
        let raw = format!("{images}/base.raw");
        std::fs::write(&raw, b"IMAGE-A").unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&raw).unwrap();
        f.set_len(4 << 20).unwrap();
        drop(f);
        let base = format!("{images}/base.qcow2");
        qemu_img::convert(
            Path::new(&raw),
            tm::Format::Raw,
            Path::new(&base),
            tm::Format::Qcow2,
            false,
        )
        .unwrap();
        let xml = format!(
            "<VM><ID>9</ID><NAME>s</NAME><TEMPLATE><MEMORY>32</MEMORY>\
             <DISK><DISK_ID>0</DISK_ID><SOURCE>{base}</SOURCE><FORMAT>qcow2</FORMAT>\
             <CLONE>YES</CLONE><SIZE>8</SIZE><ORIGINAL_SIZE>4</ORIGINAL_SIZE>\
             <TARGET>vda</TARGET></DISK></TEMPLATE>\
             <HISTORY_RECORDS><HISTORY><SEQ>0</SEQ><TM_MAD>qcow2</TM_MAD></HISTORY>\
             </HISTORY_RECORDS></VM>"
        );
        let req = |op, args: &[(&str, &str)]| DriverRequest {
            op,
            vm_id: 9,
            deploy_id: String::new(),
            host: "localhost".into(),
            source_host: String::new(),
            ds_id: 0,
            vm_xml: xml.clone(),
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let dir = format!("{ds}/9");
        let flat = |path: &str| {
            let out = format!("{root}/flat");
            qemu_img::convert(
                Path::new(path),
                tm::Format::Qcow2,
                Path::new(&out),
                tm::Format::Raw,
                true,
            )
            .unwrap();
            let b = std::fs::read(&out).unwrap();
            b[..7].to_vec()
        };
        let conn = Connect::open(Some("qemu:///system")).unwrap();
        let top = |conn: &Connect| {
            let x = conn
                .lookup_domain_by_name(&format!("{prefix}9"))
                .and_then(|d| d.xml_desc(0))
                .unwrap_or_default();
            live::disk_chain(&x, "vda").unwrap_or_default()
        };
        let snap_args = |s: &'static str| [("DISK_ID", "0"), ("SNAPSHOT_ID", s)];
        let result = async {
            drv.execute(req(DriverOp::Prolog, &[])).await?;
            drv.execute(req(DriverOp::Deploy, &[])).await?;
            assert_eq!(
                top(&conn).len(),
                2,
                "disk.0 (file 0) -> image: {:?}",
                top(&conn)
            );

            let t = Instant::now();
            let r = drv
                .execute(req(DriverOp::DiskSnapshotCreate, &snap_args("0")))
                .await?;
            println!("live disk snapshot: {:?} ({})", t.elapsed(), r.info);
            assert_eq!(
                top(&conn)[0].path,
                Path::new(&format!("{dir}/disk.0.snap/1"))
            );
            drv.execute(req(DriverOp::DiskSnapshotCreate, &snap_args("1")))
                .await?;
            drv.execute(req(DriverOp::DiskSnapshotCreate, &snap_args("2")))
                .await?;
            assert_eq!(top(&conn).len(), 5);
            // 1 is in the middle of the running chain: committed away by libvirt.
            let t = Instant::now();
            let r = drv
                .execute(req(DriverOp::DiskSnapshotDelete, &snap_args("1")))
                .await?;
            println!("live delete (commit): {:?} ({})", t.elapsed(), r.info);
            assert_eq!(top(&conn).len(), 4, "{:?}", top(&conn));
            // 2 is under the top: pulled into it.
            let r = drv
                .execute(req(DriverOp::DiskSnapshotDelete, &snap_args("2")))
                .await?;
            println!("live delete (pull): {}", r.info);
            assert_eq!(top(&conn).len(), 3, "{:?}", top(&conn));
            // The chain QEMU writes is still readable from the files (relative names).
            assert_eq!(flat(&format!("{dir}/disk.0")), b"IMAGE-A");

            // save-as of the running disk (block copy) and of snapshot 0.
            let saved = format!("{images}/saved");
            let t = Instant::now();
            drv.execute(req(
                DriverOp::DiskSaveas,
                &[
                    ("DISK_ID", "0"),
                    ("SNAPSHOT_ID", "-1"),
                    ("SAVEAS_SOURCE", &saved),
                    ("SAVEAS_DATASTORE", &images),
                ],
            ))
            .await?;
            println!("live save-as: {:?}", t.elapsed());
            let i = qemu_img::info(Path::new(&saved), false).unwrap();
            assert_eq!(
                (i.format.as_str(), i.backing, i.virtual_size),
                ("qcow2", None, 8 << 20)
            );
            assert_eq!(flat(&saved), b"IMAGE-A");
            assert!(top(&conn).len() == 3, "the domain kept its own disk");

            // Resize while running, then off: a new snapshot and a revert.
            drv.execute(req(DriverOp::DiskResize, &[("DISK_ID", "0")]))
                .await?;
            let e = drv
                .execute(req(DriverOp::DiskSnapshotRevert, &snap_args("0")))
                .await
                .unwrap_err();
            assert!(e.message.contains("powered off"), "{e}");
            drv.execute(req(DriverOp::Cancel, &[])).await?;
            drv.execute(req(DriverOp::DiskSnapshotCreate, &snap_args("3")))
                .await?;
            drv.execute(req(DriverOp::DiskSnapshotRevert, &snap_args("0")))
                .await?;
            // Restarts on the reverted chain.
            drv.execute(req(DriverOp::Deploy, &[])).await?;
            drv.execute(req(DriverOp::Cancel, &[])).await?;
            drv.execute(req(DriverOp::Epilog, &[])).await?;
            assert!(!Path::new(&dir).exists());
            assert_eq!(flat(&base), b"IMAGE-A", "the image is untouched");
            Ok::<(), DriverError>(())
        }
        .await;
        let _ = drv.execute(req(DriverOp::Cancel, &[])).await;
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_file(format!("/var/log/libvirt/qemu/{prefix}9.log"));
        result.unwrap();
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
        std::fs::create_dir_all(&ds).unwrap();
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
            streams: None,
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
        let with_args = |op, args: &[(&str, &str)]| DriverRequest {
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..req(op)
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
            // No OS listens to ACPI: the shutdown times out (1 s, pressing the button twice)
            // and fails, the domain left running, as OpenNebula's driver without FORCE_DESTROY.
            let t = Instant::now();
            let e = drv.execute(req(DriverOp::Shutdown)).await.unwrap_err();
            println!("shutdown (timeout, not forced): {:?}", t.elapsed());
            assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
            assert!(
                e.message
                    .contains(&format!("Timed out shutting down {prefix}7"))
                    && e.message.contains("keeps running"),
                "{e}"
            );
            let running = |doms: Vec<AgentDomain>| {
                doms.iter()
                    .any(|d| d.deploy_id == uuid && d.state == DomainState::Running)
            };
            assert!(running(drv.list_domains().await?));
            // A bad setting fails before the button is pressed.
            let e = drv
                .execute(with_args(
                    DriverOp::Shutdown,
                    &[("SHUTDOWN_FORCE_DESTROY", "maybe")],
                ))
                .await
                .unwrap_err();
            assert!(e.message.contains("neither YES nor NO"), "{e}");
            // Forced (the request's setting; the configuration's otherwise): destroyed.
            let t = Instant::now();
            let r = drv
                .execute(with_args(
                    DriverOp::Shutdown,
                    &[("SHUTDOWN_FORCE_DESTROY", "yes"), ("SHUTDOWN_TIMEOUT", "1")],
                ))
                .await?;
            println!("shutdown (timeout + forced destroy): {:?}", t.elapsed());
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
