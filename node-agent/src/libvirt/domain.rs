//! The libvirt domain XML of a VM, built from its VM document (one.vm.info XML): what
//! OpenNebula's KVM driver writes to `deployment.<seq>` (fact sheet §6, §9).
//!
//! Pure functions: [`VmDoc::parse`] reads what is needed from the document, [`domain_xml`]
//! writes the domain. Every value is escaped; a value XML cannot carry (control characters)
//! or libvirt would misread (an unknown bus, cache mode, boot device) is an error naming the
//! attribute, so a bad template fails the deploy with a message instead of a libvirt one.

use one_proto::agent::DomainType;
use one_proto::template::{Template, Vector};
use quick_xml::Reader;
use quick_xml::events::Event;
use std::fmt::Write;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DomainError {
    #[error("the VM document is not valid XML: {0}")]
    Xml(String),
    #[error("the VM document has no {0}")]
    Missing(&'static str),
    #[error("{attr} has an invalid value {value:?}: {why}")]
    Invalid {
        attr: String,
        value: String,
        why: &'static str,
    },
}

fn invalid(attr: impl Into<String>, value: &str, why: &'static str) -> DomainError {
    DomainError::Invalid {
        attr: attr.into(),
        value: value.to_string(),
        why,
    }
}

/// What the domain is made from: the VM's id, name and TEMPLATE.
#[derive(Clone, Debug, PartialEq)]
pub struct VmDoc {
    pub id: i64,
    pub name: String,
    pub template: Template,
    /// The SEQ of the last HISTORY record (the `deployment.<seq>` file); 0 without history.
    pub seq: i64,
    /// The TM_MAD of the last HISTORY record: the transfer driver of the system datastore
    /// the VM is on; `None` without history.
    pub tm_mad: Option<String>,
}

impl VmDoc {
    /// Reads `/VM/ID`, `/VM/NAME` and `/VM/TEMPLATE` (parsed by the template language's XML
    /// reader, so CDATA and entities are handled as everywhere else).
    pub fn parse(vm_xml: &str) -> Result<VmDoc, DomainError> {
        let xml_err = |e: &dyn std::fmt::Display| DomainError::Xml(e.to_string());
        let mut reader = Reader::from_str(vm_xml);
        reader.config_mut().check_end_names = true;
        let mut depth = 0usize;
        let mut id_raw = None;
        let mut name_raw = None;
        let mut template_raw = None;
        let mut history_raw = None;
        loop {
            match reader.read_event().map_err(|e| xml_err(&e))? {
                Event::Start(e) => {
                    depth += 1;
                    if depth == 1 {
                        if e.name().into_inner() != "VM" {
                            return Err(DomainError::Missing("VM root element"));
                        }
                    } else if depth == 2 {
                        let name = e.name();
                        let span = reader.read_to_end(name).map_err(|e| xml_err(&e))?;
                        depth -= 1;
                        let start = usize::try_from(span.start).unwrap_or(usize::MAX);
                        let end = usize::try_from(span.end).unwrap_or(usize::MAX);
                        let inner = vm_xml
                            .get(start..end)
                            .ok_or_else(|| DomainError::Xml("bad element span".into()))?;
                        match name.into_inner() {
                            "ID" => id_raw = Some(inner),
                            "NAME" => name_raw = Some(inner),
                            "TEMPLATE" => template_raw = Some(inner),
                            "HISTORY_RECORDS" => history_raw = Some(inner),
                            _ => {}
                        }
                    }
                }
                Event::Empty(e) if depth == 1 && e.name().into_inner() == "TEMPLATE" => {
                    template_raw = Some("");
                }
                Event::End(_) => depth = depth.saturating_sub(1),
                Event::Eof => break,
                _ => {}
            }
        }
        let ids = Template::parse(&format!(
            "<VM><ID>{}</ID><NAME>{}</NAME></VM>",
            id_raw.ok_or(DomainError::Missing("ID"))?,
            name_raw.unwrap_or("")
        ))
        .map_err(|e| xml_err(&e))?;
        let id_text = ids.get("ID").unwrap_or("").trim();
        let id = id_text
            .parse::<i64>()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| invalid("ID", id_text, "not a VM id"))?;
        let template = Template::parse(&format!(
            "<TEMPLATE>{}</TEMPLATE>",
            template_raw.ok_or(DomainError::Missing("TEMPLATE"))?
        ))
        .map_err(|e| xml_err(&e))?;
        Ok(VmDoc {
            id,
            name: ids.get("NAME").unwrap_or("").to_string(),
            template,
            seq: history_raw.map_or(Ok(0), |h| last_history(h, "SEQ").map(|v| v.unwrap_or(0)))?,
            tm_mad: history_raw
                .map(|h| last_text(h, "TM_MAD"))
                .transpose()?
                .flatten()
                .filter(|t| !t.trim().is_empty()),
        })
    }
}

/// The last `HISTORY/<name>` in the body of HISTORY_RECORDS, as a number.
fn last_history(history: &str, name: &'static str) -> Result<Option<i64>, DomainError> {
    match last_text(history, name)? {
        None => Ok(None),
        Some(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| invalid(format!("HISTORY/{name}"), &text, "not a number")),
    }
}

/// The text of the last `HISTORY/<name>` in the body of HISTORY_RECORDS.
fn last_text(history: &str, name: &str) -> Result<Option<String>, DomainError> {
    let mut reader = Reader::from_str(history);
    let mut out = None;
    let mut inside = false;
    loop {
        match reader
            .read_event()
            .map_err(|e| DomainError::Xml(e.to_string()))?
        {
            Event::Start(e) => inside = e.name().into_inner() == name,
            Event::Text(t) if inside => out = Some(t.xml10_content().into_owned()),
            Event::Empty(e) if e.name().into_inner() == name => out = Some(String::new()),
            Event::End(_) => inside = false,
            Event::Eof => return Ok(out),
            _ => {}
        }
    }
}

/// The driver's side of the domain: how this host runs guests.
#[derive(Clone, Debug)]
pub struct DomainSettings {
    pub domain_type: DomainType,
    /// Domains are named `<prefix><vm id>` (`one-`).
    pub name_prefix: String,
    /// The VM's directory in the system datastore, `<ds base path>/<vm id>`: disks
    /// (`disk.<DISK_ID>`), the context CD, the serial log.
    pub vm_dir: String,
    /// `<emulator>`; libvirt picks its default for the domain type when `None`.
    pub emulator: Option<String>,
}

/// The domain's name for VM `vm_id`.
pub fn domain_name(prefix: &str, vm_id: i64) -> String {
    format!("{prefix}{vm_id}")
}

/// The libvirt domain XML for `vm` on this host.
pub fn domain_xml(vm: &VmDoc, s: &DomainSettings) -> Result<String, DomainError> {
    let t = &vm.template;
    let vm_dir = s.vm_dir.trim_end_matches('/');
    let mut w = W::default();

    w.open("domain", &[("type", s.domain_type.as_str())])?;
    w.text("name", &domain_name(&s.name_prefix, vm.id))?;
    if !vm.name.is_empty() {
        w.text("title", &vm.name)?;
    }

    let memory = single(t, "MEMORY").ok_or(DomainError::Missing("MEMORY"))?;
    let memory_mb: u64 = memory
        .parse()
        .ok()
        .filter(|m| *m > 0)
        .ok_or_else(|| invalid("MEMORY", memory, "not a positive number of MB"))?;
    let memory_kib = memory_mb
        .checked_mul(1024)
        .ok_or_else(|| invalid("MEMORY", memory, "too large"))?;
    w.text_attrs("memory", &[("unit", "KiB")], &memory_kib.to_string())?;

    let vcpu = match single(t, "VCPU") {
        None => 1,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid("VCPU", v, "not a positive integer"))?,
    };
    w.text("vcpu", &vcpu.to_string())?;

    // CPU is the VM's share of the host's cores: cgroup shares relative to other VMs,
    // 1024 per core as OpenNebula writes them.
    if let Some(cpu) = single(t, "CPU") {
        let share: f64 = cpu
            .parse()
            .ok()
            .filter(|c: &f64| c.is_finite() && *c > 0.0 && *c <= 1.0e6)
            .ok_or_else(|| invalid("CPU", cpu, "not a positive number"))?;
        let shares = (share * 1024.0).ceil().max(2.0) as u64;
        w.open("cputune", &[])?;
        w.text("shares", &shares.to_string())?;
        w.close("cputune");
    }

    let boot = Boot::parse(t.vector("OS").and_then(|os| os.get("BOOT")))?;
    write_os(&mut w, t.vector("OS"), &boot)?;

    let features = t.vector("FEATURES");
    let feature_on = |name: &str, default: bool| -> Result<bool, DomainError> {
        match features.and_then(|f| f.get(name)) {
            None | Some("") => Ok(default),
            Some(v) => yes_no(&format!("FEATURES/{name}"), v),
        }
    };
    w.open("features", &[])?;
    if feature_on("ACPI", true)? {
        w.empty("acpi", &[])?;
    }
    if feature_on("APIC", true)? {
        w.empty("apic", &[])?;
    }
    if feature_on("PAE", false)? {
        w.empty("pae", &[])?;
    }
    w.close("features");
    let offset = if feature_on("LOCALTIME", false)? {
        "localtime"
    } else {
        "utc"
    };
    w.empty("clock", &[("offset", offset)])?;

    w.text("on_poweroff", "destroy")?;
    w.text("on_reboot", "restart")?;
    w.text("on_crash", "destroy")?;

    w.open("devices", &[])?;
    if let Some(emulator) = &s.emulator {
        w.text("emulator", emulator)?;
    }
    let mut scsi = false;
    for disk in t.vectors("DISK") {
        scsi |= write_disk(&mut w, disk, vm_dir, &boot)?;
    }
    if let Some(ctx) = t.vector("CONTEXT") {
        scsi |= write_context_cd(&mut w, ctx, vm_dir)?;
    }
    if scsi {
        // sd* targets sit on virtio-scsi: the test kernels (and many cloud images) have no
        // driver for libvirt's default SCSI controller model.
        w.empty(
            "controller",
            &[("type", "scsi"), ("index", "0"), ("model", "virtio-scsi")],
        )?;
    }
    for nic in t.vectors("NIC") {
        write_nic(&mut w, nic, vm.id, &boot)?;
    }
    if let Some(g) = t.vector("GRAPHICS") {
        write_graphics(&mut w, g)?;
    }
    // A pty console for `virsh console`, logged to the VM dir; append='on' keeps the log
    // across the QEMU processes of a restore or a migration.
    w.open("serial", &[("type", "pty")])?;
    w.empty(
        "log",
        &[("file", &format!("{vm_dir}/serial.log")), ("append", "on")],
    )?;
    w.empty("target", &[("port", "0")])?;
    w.close("serial");
    w.open("console", &[("type", "pty")])?;
    w.empty("target", &[("type", "serial"), ("port", "0")])?;
    w.close("console");
    if feature_on("GUEST_AGENT", false)? {
        w.open("channel", &[("type", "unix")])?;
        w.empty(
            "target",
            &[("type", "virtio"), ("name", "org.qemu.guest_agent.0")],
        )?;
        w.close("channel");
    }
    w.close("devices");
    w.close("domain");
    Ok(w.out)
}

/// A device of a running domain, for hotplug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The DISK whose DISK_ID is this.
    Disk(u32),
    /// The NIC whose NIC_ID is this.
    Nic(u32),
    /// The CONTEXT CD (update_conf changes its media).
    Context,
}

/// The `<disk>` or `<interface>` element of one device of `vm`, as [`domain_xml`] writes it
/// (without boot order: libvirt refuses one on a hotplugged device), for
/// attach / detach device.
pub fn device_xml(vm: &VmDoc, s: &DomainSettings, dev: Device) -> Result<String, DomainError> {
    let vm_dir = s.vm_dir.trim_end_matches('/');
    let (vector, key, id) = match dev {
        Device::Disk(id) => ("DISK", "DISK_ID", id),
        Device::Nic(id) => ("NIC", "NIC_ID", id),
        Device::Context => {
            let ctx = vm
                .template
                .vector("CONTEXT")
                .ok_or(DomainError::Missing("CONTEXT"))?;
            let mut w = W::default();
            if !write_context_cd(&mut w, ctx, vm_dir)? && w.out.is_empty() {
                return Err(DomainError::Missing("CONTEXT/DISK_ID"));
            }
            return Ok(w.out);
        }
    };
    let v = find_device(vm, vector, key, id).ok_or(DomainError::Missing(if vector == "DISK" {
        "DISK with that DISK_ID"
    } else {
        "NIC with that NIC_ID"
    }))?;
    let mut w = W::default();
    match dev {
        Device::Disk(_) => {
            write_disk(&mut w, v, vm_dir, &Boot::default())?;
        }
        _ => write_nic(&mut w, v, vm.id, &Boot::default())?,
    }
    Ok(w.out)
}

/// A non-empty single attribute.
fn single<'a>(t: &'a Template, name: &str) -> Option<&'a str> {
    t.get(name).map(str::trim).filter(|v| !v.is_empty())
}

/// A non-empty sub-attribute.
/// The `vector` (DISK, NIC) of `vm` whose `key` (DISK_ID, NIC_ID) is `id`.
pub fn find_device<'a>(vm: &'a VmDoc, vector: &'a str, key: &str, id: u32) -> Option<&'a Vector> {
    vm.template
        .vectors(vector)
        .find(|v| sub(v, key).and_then(|k| k.parse::<u32>().ok()) == Some(id))
}

fn sub<'a>(v: &'a Vector, name: &str) -> Option<&'a str> {
    v.get(name).map(str::trim).filter(|v| !v.is_empty())
}

fn yes_no(attr: &str, v: &str) -> Result<bool, DomainError> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" => Ok(true),
        "no" | "false" | "0" | "off" => Ok(false),
        _ => Err(invalid(attr, v, "expected YES or NO")),
    }
}

/// OS/BOOT: OpenNebula's per-device list ("disk0,nic1": DISK_ID / NIC_ID, written as
/// `<boot order>` on the devices), or the old device kinds ("hd,cdrom,network": `<os><boot
/// dev>`). libvirt refuses both at once, so one list is one form.
#[derive(Debug, Default, PartialEq)]
struct Boot {
    devices: Vec<(BootDev, u32)>,
    legacy: Vec<&'static str>,
}

#[derive(Debug, PartialEq, Clone, Copy)]
enum BootDev {
    Disk(u32),
    Nic(u32),
}

impl Boot {
    fn parse(list: Option<&str>) -> Result<Boot, DomainError> {
        let mut boot = Boot::default();
        let Some(list) = list else { return Ok(boot) };
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let lower = item.to_ascii_lowercase();
            let dev = if let Some(n) = lower.strip_prefix("disk") {
                n.parse().ok().map(BootDev::Disk)
            } else if let Some(n) = lower.strip_prefix("nic") {
                n.parse().ok().map(BootDev::Nic)
            } else {
                None
            };
            match dev {
                Some(dev) => {
                    let order = boot.devices.len() as u32 + 1;
                    boot.devices.push((dev, order));
                }
                None => boot.legacy.push(match lower.as_str() {
                    "hd" => "hd",
                    "cdrom" => "cdrom",
                    "network" => "network",
                    "fd" => "fd",
                    _ => return Err(invalid("OS/BOOT", list, "unknown boot device")),
                }),
            }
        }
        if !boot.devices.is_empty() && !boot.legacy.is_empty() {
            return Err(invalid(
                "OS/BOOT",
                list,
                "mixes diskN/nicN with hd/cdrom/network",
            ));
        }
        Ok(boot)
    }

    fn order(&self, dev: BootDev) -> Option<u32> {
        self.devices
            .iter()
            .find(|(d, _)| *d == dev)
            .map(|(_, o)| *o)
    }
}

fn write_os(w: &mut W, os: Option<&Vector>, boot: &Boot) -> Result<(), DomainError> {
    let os_sub = |name: &str| os.and_then(|os| sub(os, name));
    w.open("os", &[])?;
    let mut type_attrs = Vec::new();
    if let Some(arch) = os_sub("ARCH") {
        type_attrs.push(("arch", arch));
    }
    if let Some(machine) = os_sub("MACHINE") {
        type_attrs.push(("machine", machine));
    }
    w.text_attrs("type", &type_attrs, "hvm")?;
    if let Some(kernel) = os_sub("KERNEL") {
        w.text("kernel", kernel)?;
        if let Some(initrd) = os_sub("INITRD") {
            w.text("initrd", initrd)?;
        }
        // ROOT names the root device as OpenNebula does: `root=/dev/<ROOT>` before KERNEL_CMD.
        let cmdline = match (os_sub("ROOT"), os_sub("KERNEL_CMD")) {
            (Some(root), Some(cmd)) => format!("root=/dev/{root} {cmd}"),
            (Some(root), None) => format!("root=/dev/{root}"),
            (None, Some(cmd)) => cmd.to_string(),
            (None, None) => String::new(),
        };
        if !cmdline.is_empty() {
            w.text("cmdline", &cmdline)?;
        }
    } else if os_sub("INITRD").is_some() {
        return Err(DomainError::Missing("OS/KERNEL for its OS/INITRD"));
    }
    for dev in &boot.legacy {
        w.empty("boot", &[("dev", dev)])?;
    }
    w.close("os");
    Ok(())
}

/// The bus of a disk target, by its prefix (OpenNebula's DEV_PREFIX).
fn bus_of(attr: &str, target: &str) -> Result<&'static str, DomainError> {
    let ok_name = target.len() <= 32 && target.bytes().all(|b| b.is_ascii_alphanumeric());
    let bus = if target.starts_with("vd") {
        Some("virtio")
    } else if target.starts_with("sd") {
        Some("scsi")
    } else if target.starts_with("hd") {
        Some("ide")
    } else {
        None
    };
    match bus {
        Some(bus) if ok_name && target.len() > 2 => Ok(bus),
        _ => Err(invalid(attr, target, "expected vdX, sdX or hdX")),
    }
}

const CACHE_MODES: &[&str] = &[
    "default",
    "none",
    "writethrough",
    "writeback",
    "directsync",
    "unsafe",
];

/// One DISK; answers whether it sits on the SCSI bus.
fn write_disk(w: &mut W, d: &Vector, vm_dir: &str, boot: &Boot) -> Result<bool, DomainError> {
    let disk_id = sub(d, "DISK_ID").ok_or(DomainError::Missing("DISK/DISK_ID"))?;
    let id: u32 = disk_id
        .parse()
        .map_err(|_| invalid("DISK/DISK_ID", disk_id, "not a disk id"))?;
    let at = |name: &str| format!("DISK {id} {name}");
    let target = sub(d, "TARGET").ok_or(DomainError::Missing("DISK/TARGET"))?;
    let bus = bus_of(&at("TARGET"), target)?;
    let kind = sub(d, "TYPE").unwrap_or("FILE").to_ascii_uppercase();
    let (dtype, device, source_attr) = match kind.as_str() {
        // Volatile disks (fs, swap) are files made by the TM in the VM dir.
        "FILE" | "FS" | "SWAP" => ("file", "disk", "file"),
        "BLOCK" => ("block", "disk", "dev"),
        "CDROM" => ("file", "cdrom", "file"),
        _ => {
            return Err(invalid(
                at("TYPE"),
                &kind,
                "only FILE, BLOCK and CDROM disks are supported",
            ));
        }
    };
    if device == "cdrom" && bus == "virtio" {
        return Err(invalid(
            at("TARGET"),
            target,
            "a CD-ROM needs an hdX (IDE) or sdX (SCSI) target",
        ));
    }
    let format = sub(d, "DRIVER")
        .or_else(|| sub(d, "FORMAT"))
        .unwrap_or("raw")
        .to_ascii_lowercase();
    if device == "cdrom" && format != "raw" {
        return Err(invalid(at("DRIVER"), &format, "a CD-ROM image is raw"));
    }
    if !matches!(format.as_str(), "raw" | "qcow2") {
        return Err(invalid(at("DRIVER"), &format, "expected raw or qcow2"));
    }
    let mut driver: Vec<(&str, &str)> = vec![("name", "qemu"), ("type", &format)];
    let cache = sub(d, "CACHE").map(str::to_ascii_lowercase);
    if let Some(cache) = &cache {
        if !CACHE_MODES.contains(&cache.as_str()) {
            return Err(invalid(at("CACHE"), cache, "unknown cache mode"));
        }
        if cache != "default" {
            driver.push(("cache", cache));
        }
    }
    let readonly = device == "cdrom"
        || match sub(d, "READONLY") {
            None => false,
            Some(v) => yes_no(&at("READONLY"), v)?,
        };

    w.open("disk", &[("type", dtype), ("device", device)])?;
    w.empty("driver", &driver)?;
    w.empty("source", &[(source_attr, &format!("{vm_dir}/disk.{id}"))])?;
    w.empty("target", &[("dev", target), ("bus", bus)])?;
    if readonly {
        w.empty("readonly", &[])?;
    }
    if let Some(order) = boot.order(BootDev::Disk(id)) {
        w.empty("boot", &[("order", &order.to_string())])?;
    }
    w.close("disk");
    Ok(bus == "scsi")
}

/// The CONTEXT CD (`disk.<CONTEXT/DISK_ID>`, an ISO the TM wrote); none when oned gave the
/// context no disk. Answers whether it sits on the SCSI bus.
fn write_context_cd(w: &mut W, ctx: &Vector, vm_dir: &str) -> Result<bool, DomainError> {
    let Some(disk_id) = sub(ctx, "DISK_ID") else {
        return Ok(false);
    };
    let id: u32 = disk_id
        .parse()
        .map_err(|_| invalid("CONTEXT/DISK_ID", disk_id, "not a disk id"))?;
    // oned sets TARGET; hda is its default for the pc machine.
    let target = sub(ctx, "TARGET").unwrap_or("hda");
    let bus = bus_of("CONTEXT/TARGET", target)?;
    if bus == "virtio" {
        return Err(invalid(
            "CONTEXT/TARGET",
            target,
            "a CD-ROM needs an hdX (IDE) or sdX (SCSI) target",
        ));
    }
    w.open("disk", &[("type", "file"), ("device", "cdrom")])?;
    w.empty("driver", &[("name", "qemu"), ("type", "raw")])?;
    w.empty("source", &[("file", &format!("{vm_dir}/disk.{id}"))])?;
    w.empty("target", &[("dev", target), ("bus", bus)])?;
    w.empty("readonly", &[])?;
    w.close("disk");
    Ok(bus == "scsi")
}

fn write_nic(w: &mut W, n: &Vector, vm_id: i64, boot: &Boot) -> Result<(), DomainError> {
    let nic_id = sub(n, "NIC_ID").ok_or(DomainError::Missing("NIC/NIC_ID"))?;
    let id: u32 = nic_id
        .parse()
        .map_err(|_| invalid("NIC/NIC_ID", nic_id, "not a NIC id"))?;
    let at = |name: &str| format!("NIC {id} {name}");
    let bridge = sub(n, "BRIDGE").ok_or(DomainError::Missing("NIC/BRIDGE"))?;
    let default_target = format!("one-{vm_id}-{id}");
    let target = sub(n, "TARGET").unwrap_or(&default_target);
    // Linux interface names: at most 15 bytes, no '/' or blanks.
    if target.len() > 15 || target.bytes().any(|b| b == b'/' || b.is_ascii_whitespace()) {
        return Err(invalid(at("TARGET"), target, "not an interface name"));
    }
    let model = sub(n, "MODEL").unwrap_or("virtio");
    w.open("interface", &[("type", "bridge")])?;
    w.empty("source", &[("bridge", bridge)])?;
    if let Some(mac) = sub(n, "MAC") {
        if !is_mac(mac) {
            return Err(invalid(at("MAC"), mac, "not a MAC address"));
        }
        w.empty("mac", &[("address", mac)])?;
    }
    w.empty("target", &[("dev", target)])?;
    w.empty("model", &[("type", model)])?;
    if let Some(order) = boot.order(BootDev::Nic(id)) {
        w.empty("boot", &[("order", &order.to_string())])?;
    }
    w.close("interface");
    Ok(())
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn write_graphics(w: &mut W, g: &Vector) -> Result<(), DomainError> {
    let Some(kind) = sub(g, "TYPE") else {
        return Ok(());
    };
    let kind = kind.to_ascii_lowercase();
    if !matches!(kind.as_str(), "vnc" | "spice") {
        return Err(invalid("GRAPHICS/TYPE", &kind, "expected VNC or SPICE"));
    }
    let mut attrs: Vec<(&str, &str)> = vec![("type", &kind)];
    let port = sub(g, "PORT");
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err(invalid("GRAPHICS/PORT", port, "not a TCP port"));
        }
        attrs.push(("port", port));
        attrs.push(("autoport", "no"));
    } else {
        attrs.push(("autoport", "yes"));
    }
    if let Some(listen) = sub(g, "LISTEN") {
        attrs.push(("listen", listen));
    }
    if let Some(passwd) = sub(g, "PASSWD") {
        attrs.push(("passwd", passwd));
    }
    if let Some(keymap) = sub(g, "KEYMAP") {
        attrs.push(("keymap", keymap));
    }
    w.empty("graphics", &attrs)
}

/// A minimal XML writer with attributes. Values are escaped; XML 1.0 cannot carry most
/// control characters at all, so those are refused.
#[derive(Default)]
struct W {
    out: String,
}

impl W {
    fn start(&mut self, tag: &str, attrs: &[(&str, &str)]) -> Result<(), DomainError> {
        self.out.push('<');
        self.out.push_str(tag);
        for (name, value) in attrs {
            let _ = write!(self.out, " {name}='");
            escape_into(&mut self.out, tag, value)?;
            self.out.push('\'');
        }
        Ok(())
    }

    fn open(&mut self, tag: &str, attrs: &[(&str, &str)]) -> Result<(), DomainError> {
        self.start(tag, attrs)?;
        self.out.push('>');
        Ok(())
    }

    fn empty(&mut self, tag: &str, attrs: &[(&str, &str)]) -> Result<(), DomainError> {
        self.start(tag, attrs)?;
        self.out.push_str("/>");
        Ok(())
    }

    fn close(&mut self, tag: &str) {
        let _ = write!(self.out, "</{tag}>");
    }

    fn text(&mut self, tag: &str, text: &str) -> Result<(), DomainError> {
        self.text_attrs(tag, &[], text)
    }

    fn text_attrs(
        &mut self,
        tag: &str,
        attrs: &[(&str, &str)],
        text: &str,
    ) -> Result<(), DomainError> {
        self.open(tag, attrs)?;
        escape_into(&mut self.out, tag, text)?;
        self.close(tag);
        Ok(())
    }
}

/// Escapes for both text and attribute values (tabs and newlines as references, since an
/// attribute value would turn them into spaces).
fn escape_into(out: &mut String, tag: &str, s: &str) -> Result<(), DomainError> {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                return Err(invalid(tag, s, "holds a character XML cannot carry"));
            }
            c => out.push(c),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
