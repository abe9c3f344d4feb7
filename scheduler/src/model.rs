//! What the scheduler knows about hosts, datastores, clusters and VMs, read from the XML oned
//! answers (`one.hostpool.info`, `one.datastorepool.info`, `one.clusterpool.info`,
//! `one.vmpool.infoextended`).
//!
//! Hosts and datastores keep, besides their typed figures, every leaf element of their
//! document (path id + text, in document order) so that expressions can read any attribute.
//! A variable is looked up the way OpenNebula's scheduler does it: as the union of the XPaths
//! `<root>/<name>` over a fixed list of roots, first match in document order; a name starting
//! with `/` is an absolute path (`/HOST/TEMPLATE/X`; plain child steps only). The roots:
//!
//! * host: `TEMPLATE`, `HOST_SHARE`, `HOST_SHARE/DATASTORES`, `MONITORING/CAPACITY`,
//!   `MONITORING/SYSTEM`, the `HOST` element itself, `CLUSTER_TEMPLATE` (filled from the
//!   host's cluster when oned's document lacks it);
//! * datastore: `TEMPLATE`, the `DATASTORE` element itself (so `"CLUSTERS/ID"` works).
//!
//! Paths are interned in a [`PathTable`] per pool, and a variable is resolved to its candidate
//! path ids once per pass ([`PathTable::bind`]), so evaluating against a host is a scan over
//! that host's few dozen leaves with integer compares.

use crate::expr::{Resolver, Val, VarId};
use one_proto::state::{HostState, LcmState, VmState};
use quick_xml::Reader;
use quick_xml::events::Event;
use std::cell::Cell;
use std::collections::HashMap;

/// A pool document that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("malformed XML at byte {at}: {message}")]
    Xml { at: u64, message: String },
    #[error("{kind} element without a numeric ID")]
    MissingId { kind: &'static str },
}

// ------------------------------------------------------------------------------------------
// XML walking

/// One step of a document walk; paths are `/`-joined element names from the object's root
/// (`HOST/HOST_SHARE/CPU_USAGE`).
enum Ev<'a> {
    Start(&'a str),
    /// An element without child elements, with its text.
    Leaf(&'a str, &'a str),
}

/// Where a walk is: the path of the element being read (relative to the object), where each
/// level of it starts, the document depth, the depth of the object element (while inside
/// one), the text read so far and whether the current element has child elements.
#[derive(Default)]
struct Walk {
    path: String,
    starts: Vec<usize>,
    depth: usize,
    object_depth: Option<usize>,
    text: String,
    has_children: bool,
}

type Sink<'s> = dyn FnMut(Option<Ev<'_>>) -> Result<(), ModelError> + 's;

impl Walk {
    fn start(&mut self, name: &str, object: &str, sink: &mut Sink<'_>) -> Result<(), ModelError> {
        self.depth += 1;
        if self.object_depth.is_none() && name == object && self.depth <= 2 {
            self.object_depth = Some(self.depth);
            self.path.clear();
            self.starts.clear();
        }
        if self.object_depth.is_some() {
            self.starts.push(self.path.len());
            if !self.path.is_empty() {
                self.path.push('/');
            }
            self.path.push_str(name);
            sink(Some(Ev::Start(&self.path)))?;
            self.text.clear();
            self.has_children = false;
        }
        Ok(())
    }

    fn end(&mut self, sink: &mut Sink<'_>) -> Result<(), ModelError> {
        if let Some(od) = self.object_depth {
            if !self.has_children {
                sink(Some(Ev::Leaf(&self.path, &self.text)))?;
            }
            self.text.clear();
            // The parent has (at least) this child.
            self.has_children = true;
            let start = self.starts.pop().unwrap_or(0);
            self.path.truncate(start);
            if self.depth == od {
                self.object_depth = None;
                sink(None)?;
            }
        }
        self.depth = self.depth.saturating_sub(1);
        Ok(())
    }

    fn inside(&self) -> bool {
        self.object_depth.is_some()
    }
}

/// Walks every `object` element of `xml` (either the document root, or its children: a pool)
/// and hands its events to `sink`, called with `None` when an object ends.
fn walk_objects(
    xml: &str,
    object: &str,
    mut sink: impl FnMut(Option<Ev<'_>>) -> Result<(), ModelError>,
) -> Result<(), ModelError> {
    let sink: &mut Sink<'_> = &mut sink;
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut w = Walk::default();
    let err = |r: &Reader<&[u8]>, message: String| ModelError::Xml {
        at: r.buffer_position(),
        message,
    };
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| err(&reader, e.to_string()))?;
        match ev {
            Event::Start(e) => w.start(e.name().into_inner(), object, sink)?,
            Event::Empty(e) => {
                // An empty element is a leaf with no text.
                w.start(e.name().into_inner(), object, sink)?;
                w.end(sink)?;
            }
            Event::End(_) => w.end(sink)?,
            Event::Text(t) if w.inside() => w.text.push_str(&t.xml10_content()),
            Event::CData(t) if w.inside() => w.text.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if w.inside() => {
                match r
                    .resolve_char_ref()
                    .map_err(|e| err(&reader, e.to_string()))?
                {
                    Some(c) => w.text.push(c),
                    None => match quick_xml::escape::resolve_xml_entity(&r) {
                        Some(s) => w.text.push_str(s),
                        None => return Err(err(&reader, format!("unknown entity &{};", &*r))),
                    },
                }
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

// ------------------------------------------------------------------------------------------
// Attribute storage and lookup

/// Interned element paths of one pool.
#[derive(Clone, Debug, Default)]
pub struct PathTable {
    ids: HashMap<Box<str>, u32>,
}

impl PathTable {
    fn intern(&mut self, path: &str) -> u32 {
        if let Some(&id) = self.ids.get(path) {
            return id;
        }
        let id = self.ids.len() as u32;
        self.ids.insert(path.into(), id);
        id
    }

    pub fn get(&self, path: &str) -> Option<u32> {
        self.ids.get(path).copied()
    }

    /// The candidate paths of each variable of an expression, searched under `roots` (full
    /// paths, e.g. `HOST/TEMPLATE`), and which of them are live figures.
    pub fn bind(&self, vars: &[String], roots: &[&str], live: &[(u32, Live)]) -> Binding {
        let vars = vars
            .iter()
            .map(|name| {
                let paths: Vec<String> = match name.strip_prefix('/') {
                    Some(abs) => vec![abs.to_string()],
                    None => roots.iter().map(|r| format!("{r}/{name}")).collect(),
                };
                paths
                    .iter()
                    .filter_map(|p| self.get(p))
                    .map(|id| (id, live.iter().find(|(l, _)| *l == id).map(|(_, f)| *f)))
                    .collect()
            })
            .collect();
        Binding { vars }
    }
}

/// Figures that change during a pass as VMs are placed; expressions read the current value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Live {
    CpuUsage,
    MemUsage,
    RunningVms,
    FreeCpu,
    FreeMemory,
    /// A datastore's free space (as seen from the host being considered).
    FreeMb,
}

/// For each variable of one expression: its candidate path ids (and live marker).
#[derive(Clone, Debug, Default)]
pub struct Binding {
    vars: Vec<Vec<(u32, Option<Live>)>>,
}

/// The leaves of one object: path id and a range of `text`, in document order.
#[derive(Clone, Debug, Default)]
pub struct Attrs {
    text: String,
    leaves: Vec<(u32, u32, u32)>,
}

impl Attrs {
    fn push(&mut self, id: u32, value: &str) {
        let start = self.text.len() as u32;
        self.text.push_str(value);
        self.leaves.push((id, start, self.text.len() as u32));
    }

    fn value(&self, i: usize) -> &str {
        let (_, s, e) = self.leaves[i];
        &self.text[s as usize..e as usize]
    }
}

/// Evaluates expressions against one object, with live figures; remembers whether a live
/// figure was read (such results cannot be cached for the whole pass).
pub struct ObjResolver<'a> {
    attrs: &'a Attrs,
    binding: &'a Binding,
    live: &'a dyn Fn(Live) -> i64,
    touched_live: Cell<bool>,
}

impl<'a> ObjResolver<'a> {
    pub fn new(attrs: &'a Attrs, binding: &'a Binding, live: &'a dyn Fn(Live) -> i64) -> Self {
        ObjResolver {
            attrs,
            binding,
            live,
            touched_live: Cell::new(false),
        }
    }

    pub fn touched_live(&self) -> bool {
        self.touched_live.get()
    }

    fn val(&self, i: usize, live: Option<Live>) -> Val<'_> {
        match live {
            Some(f) => {
                self.touched_live.set(true);
                Val::Int((self.live)(f))
            }
            None => Val::Text(self.attrs.value(i)),
        }
    }
}

impl Resolver for ObjResolver<'_> {
    fn first(&self, var: VarId) -> Option<Val<'_>> {
        let cands = self.binding.vars.get(var)?;
        if cands.is_empty() {
            return None;
        }
        self.attrs
            .leaves
            .iter()
            .enumerate()
            .find_map(|(i, (id, _, _))| {
                cands
                    .iter()
                    .find(|(c, _)| c == id)
                    .map(|(_, live)| self.val(i, *live))
            })
    }

    fn any(&self, var: VarId, f: &mut dyn FnMut(Val<'_>) -> bool) -> bool {
        let Some(cands) = self.binding.vars.get(var) else {
            return false;
        };
        for (i, (id, _, _)) in self.attrs.leaves.iter().enumerate() {
            if let Some((_, live)) = cands.iter().find(|(c, _)| c == id)
                && f(self.val(i, *live))
            {
                return true;
            }
        }
        false
    }
}

fn num(s: &str) -> i64 {
    let t = s.trim();
    t.parse::<i64>()
        .ok()
        .or_else(|| t.parse::<f64>().ok().map(|f| f as i64))
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------------------
// Hosts

/// The search roots of host expressions, in OpenNebula's order.
pub const HOST_ROOTS: &[&str] = &[
    "HOST/TEMPLATE",
    "HOST/HOST_SHARE",
    "HOST/HOST_SHARE/DATASTORES",
    "HOST/MONITORING/CAPACITY",
    "HOST/MONITORING/SYSTEM",
    "HOST",
    "HOST/CLUSTER_TEMPLATE",
];

/// A datastore as a host reports it (HOST_SHARE/DATASTORES/DS): local system datastores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostDs {
    pub id: i64,
    pub free_mb: i64,
    pub total_mb: i64,
}

#[derive(Clone, Debug, Default)]
pub struct Host {
    pub id: i64,
    pub name: String,
    /// HOST/STATE as a number (see [`HostState`]).
    pub state: i64,
    pub cluster_id: i64,
    pub cpu_usage: i64,
    pub mem_usage: i64,
    pub max_cpu: i64,
    pub max_mem: i64,
    pub running_vms: i64,
    pub free_cpu: i64,
    pub free_memory: i64,
    pub datastores: Vec<HostDs>,
    /// What its agent says it can serve (host capabilities).
    pub caps: crate::capability::HostCaps,
    has_cluster_template: bool,
    pub attrs: Attrs,
}

impl Host {
    /// Whether the scheduler may place VMs here: MONITORED, or INIT (not monitored yet) as
    /// OpenNebula allows; never ERROR, DISABLED or OFFLINE.
    pub fn schedulable(&self) -> bool {
        self.state == HostState::Monitored.num() as i64
            || self.state == HostState::Init.num() as i64
    }

    pub fn state_name(&self) -> &'static str {
        HostState::from_num(self.state).map_or("UNKNOWN", |s| s.name())
    }
}

/// HOST_POOL: the hosts and the path table their attributes use.
#[derive(Clone, Debug, Default)]
pub struct HostPool {
    pub hosts: Vec<Host>,
    pub paths: PathTable,
}

impl HostPool {
    /// Reads `<HOST_POOL>` (or a single `<HOST>`).
    pub fn parse(xml: &str) -> Result<HostPool, ModelError> {
        let mut pool = HostPool::default();
        let mut cur = Host::default();
        let mut id_seen = false;
        let paths = &mut pool.paths;
        let hosts = &mut pool.hosts;
        walk_objects(xml, "HOST", |ev| {
            match ev {
                None => {
                    if !id_seen {
                        return Err(ModelError::MissingId { kind: "HOST" });
                    }
                    hosts.push(std::mem::take(&mut cur));
                    id_seen = false;
                }
                Some(Ev::Start(p)) => {
                    if p == "HOST/HOST_SHARE/DATASTORES/DS" {
                        cur.datastores.push(HostDs::default());
                    } else if p == "HOST/CLUSTER_TEMPLATE" {
                        cur.has_cluster_template = true;
                    }
                }
                Some(Ev::Leaf(p, v)) => {
                    let id = paths.intern(p);
                    cur.attrs.push(id, v);
                    match p {
                        "HOST/ID" => {
                            cur.id = v
                                .trim()
                                .parse()
                                .map_err(|_| ModelError::MissingId { kind: "HOST" })?;
                            id_seen = true;
                        }
                        "HOST/NAME" => cur.name = v.to_string(),
                        "HOST/STATE" => cur.state = num(v),
                        "HOST/CLUSTER_ID" => cur.cluster_id = num(v),
                        "HOST/HOST_SHARE/CPU_USAGE" => cur.cpu_usage = num(v),
                        "HOST/HOST_SHARE/MEM_USAGE" => cur.mem_usage = num(v),
                        "HOST/HOST_SHARE/MAX_CPU" => cur.max_cpu = num(v),
                        "HOST/HOST_SHARE/MAX_MEM" => cur.max_mem = num(v),
                        "HOST/HOST_SHARE/RUNNING_VMS" => cur.running_vms = num(v),
                        "HOST/MONITORING/CAPACITY/FREE_CPU" => cur.free_cpu = num(v),
                        "HOST/MONITORING/CAPACITY/FREE_MEMORY" => cur.free_memory = num(v),
                        _ if p.starts_with("HOST/TEMPLATE/") => {
                            cur.caps.leaf(&p["HOST/TEMPLATE/".len()..], v);
                        }
                        _ => {
                            if let Some(field) = p.strip_prefix("HOST/HOST_SHARE/DATASTORES/DS/")
                                && let Some(ds) = cur.datastores.last_mut()
                            {
                                match field {
                                    "ID" => ds.id = num(v),
                                    "FREE_MB" => ds.free_mb = num(v),
                                    "TOTAL_MB" => ds.total_mb = num(v),
                                    _ => {}
                                }
                            }
                        }
                    }
                }
            }
            Ok(())
        })?;
        // oned lists newest first by default (API_LIST_ORDER): ties between hosts go to the
        // lowest id whatever order the pool came in.
        pool.hosts.sort_by_key(|h| h.id);
        Ok(pool)
    }

    /// Gives every host whose document has no CLUSTER_TEMPLATE its cluster's TEMPLATE under
    /// that name, so host expressions (and the fixed policy's PRIORITY) see cluster attributes.
    pub fn attach_clusters(&mut self, clusters: &[Cluster]) {
        for h in &mut self.hosts {
            if h.has_cluster_template {
                continue;
            }
            let Some(c) = clusters.iter().find(|c| c.id == h.cluster_id) else {
                continue;
            };
            for (rel, value) in &c.template {
                let id = self.paths.intern(&format!("HOST/CLUSTER_TEMPLATE/{rel}"));
                h.attrs.push(id, value);
            }
            h.has_cluster_template = true;
        }
    }

    /// The path ids of the live figures of hosts.
    pub fn live_paths(&self) -> Vec<(u32, Live)> {
        [
            ("HOST/HOST_SHARE/CPU_USAGE", Live::CpuUsage),
            ("HOST/HOST_SHARE/MEM_USAGE", Live::MemUsage),
            ("HOST/HOST_SHARE/RUNNING_VMS", Live::RunningVms),
            ("HOST/MONITORING/CAPACITY/FREE_CPU", Live::FreeCpu),
            ("HOST/MONITORING/CAPACITY/FREE_MEMORY", Live::FreeMemory),
        ]
        .iter()
        .filter_map(|(p, l)| self.paths.get(p).map(|id| (id, *l)))
        .collect()
    }
}

// ------------------------------------------------------------------------------------------
// Clusters

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cluster {
    pub id: i64,
    pub name: String,
    /// TEMPLATE leaves: path below TEMPLATE (`RESERVED_CPU`, `VEC/SUB`) and value.
    pub template: Vec<(String, String)>,
}

/// Reads `<CLUSTER_POOL>`.
pub fn parse_cluster_pool(xml: &str) -> Result<Vec<Cluster>, ModelError> {
    let mut out = Vec::new();
    let mut cur = Cluster::default();
    let mut id_seen = false;
    walk_objects(xml, "CLUSTER", |ev| {
        match ev {
            None => {
                if !id_seen {
                    return Err(ModelError::MissingId { kind: "CLUSTER" });
                }
                out.push(std::mem::take(&mut cur));
                id_seen = false;
            }
            Some(Ev::Leaf(p, v)) => match p {
                "CLUSTER/ID" => {
                    cur.id = v
                        .trim()
                        .parse()
                        .map_err(|_| ModelError::MissingId { kind: "CLUSTER" })?;
                    id_seen = true;
                }
                "CLUSTER/NAME" => cur.name = v.to_string(),
                _ => {
                    if let Some(rel) = p.strip_prefix("CLUSTER/TEMPLATE/") {
                        cur.template.push((rel.to_string(), v.to_string()));
                    }
                }
            },
            Some(Ev::Start(_)) => {}
        }
        Ok(())
    })?;
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// Datastores

pub const DS_ROOTS: &[&str] = &["DATASTORE/TEMPLATE", "DATASTORE"];

/// Datastore TYPE of system datastores.
pub const SYSTEM_DS: i64 = 1;

#[derive(Clone, Debug, Default)]
pub struct Datastore {
    pub id: i64,
    pub name: String,
    /// TYPE: 0 image, 1 system, 2 file, 3 backup.
    pub ds_type: i64,
    /// STATE: 0 READY, 1 DISABLED.
    pub state: i64,
    pub clusters: Vec<i64>,
    pub total_mb: i64,
    pub free_mb: i64,
    /// TEMPLATE/SHARED is not NO: the free space is the datastore's, not each host's.
    pub shared: bool,
    pub attrs: Attrs,
}

#[derive(Clone, Debug, Default)]
pub struct DatastorePool {
    pub datastores: Vec<Datastore>,
    pub paths: PathTable,
}

impl DatastorePool {
    /// Reads `<DATASTORE_POOL>` (or a single `<DATASTORE>`).
    pub fn parse(xml: &str) -> Result<DatastorePool, ModelError> {
        let mut pool = DatastorePool::default();
        let mut cur = Datastore {
            shared: true,
            ..Datastore::default()
        };
        let mut id_seen = false;
        let paths = &mut pool.paths;
        let out = &mut pool.datastores;
        walk_objects(xml, "DATASTORE", |ev| {
            match ev {
                None => {
                    if !id_seen {
                        return Err(ModelError::MissingId { kind: "DATASTORE" });
                    }
                    let next = Datastore {
                        shared: true,
                        ..Datastore::default()
                    };
                    out.push(std::mem::replace(&mut cur, next));
                    id_seen = false;
                }
                Some(Ev::Leaf(p, v)) => {
                    let id = paths.intern(p);
                    cur.attrs.push(id, v);
                    match p {
                        "DATASTORE/ID" => {
                            cur.id = v
                                .trim()
                                .parse()
                                .map_err(|_| ModelError::MissingId { kind: "DATASTORE" })?;
                            id_seen = true;
                        }
                        "DATASTORE/NAME" => cur.name = v.to_string(),
                        "DATASTORE/TYPE" => cur.ds_type = num(v),
                        "DATASTORE/STATE" => cur.state = num(v),
                        "DATASTORE/CLUSTERS/ID" => cur.clusters.push(num(v)),
                        "DATASTORE/TOTAL_MB" => cur.total_mb = num(v),
                        "DATASTORE/FREE_MB" => cur.free_mb = num(v),
                        "DATASTORE/TEMPLATE/SHARED" => {
                            cur.shared = !v.trim().eq_ignore_ascii_case("NO")
                        }
                        _ => {}
                    }
                }
                Some(Ev::Start(_)) => {}
            }
            Ok(())
        })?;
        // Whatever the listing order (see HostPool::parse): ties go to the lowest id.
        pool.datastores.sort_by_key(|d| d.id);
        Ok(pool)
    }

    pub fn live_paths(&self) -> Vec<(u32, Live)> {
        self.paths
            .get("DATASTORE/FREE_MB")
            .map(|id| vec![(id, Live::FreeMb)])
            .unwrap_or_default()
    }
}

// ------------------------------------------------------------------------------------------
// VMs

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vm {
    pub id: i64,
    pub uid: i64,
    pub gid: i64,
    pub state: i64,
    pub lcm_state: i64,
    pub resched: bool,
    /// TEMPLATE/CPU × 100 (host CPU accounting units).
    pub cpu: i64,
    /// TEMPLATE/MEMORY × 1024 (KB).
    pub memory_kb: i64,
    /// MB the VM's disks take in the system datastore.
    pub system_disk_mb: i64,
    /// TEMPLATE/MEMORY in MB (for MEMORY_SYSTEM_DS_SCALE).
    pub memory_mb: i64,
    pub user_priority: i64,
    pub requirements: String,
    pub automatic_requirements: String,
    pub rank: String,
    pub ds_requirements: String,
    pub automatic_ds_requirements: String,
    pub ds_rank: String,
    /// USER_TEMPLATE/SCHED_MESSAGE as oned has it now.
    pub sched_message: String,
    /// The current placement (last HISTORY record): host id, system datastore id.
    pub current_host: Option<i64>,
    pub current_ds: Option<i64>,
    /// What it needs of a host's capabilities (the shared image datastores of its disks, the
    /// network drivers of its NICs).
    pub needs: crate::capability::Needs,
}

impl Vm {
    /// PENDING: waiting for a first placement.
    pub fn is_pending(&self) -> bool {
        self.state == VmState::Pending.num() as i64
    }

    /// A VM oned flagged for rescheduling that the scheduler may move: ACTIVE/RUNNING or
    /// ACTIVE/UNKNOWN, or POWEROFF, with RESCHED=1.
    pub fn wants_resched(&self) -> bool {
        let active = self.state == VmState::Active.num() as i64
            && (self.lcm_state == LcmState::Running.num() as i64
                || self.lcm_state == LcmState::Unknown.num() as i64);
        self.resched && (active || self.state == VmState::Poweroff.num() as i64)
    }

    /// Whether the VM can move with a live migration (running), as opposed to a cold one.
    pub fn is_running(&self) -> bool {
        self.state == VmState::Active.num() as i64
            && self.lcm_state == LcmState::Running.num() as i64
    }
}

/// One DISK of a VM being read.
#[derive(Default)]
struct DiskRead {
    size: Option<i64>,
    image: bool,
    persistent: bool,
    clone_target: String,
    ln_target: String,
    /// The image's datastore and its TM_MAD.
    datastore_id: Option<i64>,
    tm_mad: String,
}

impl DiskRead {
    /// MB this disk takes in the system datastore (same rule as oned's quota accounting).
    fn system_mb(&self) -> i64 {
        let Some(size) = self.size else { return 0 };
        let target = if self.persistent {
            &self.ln_target
        } else {
            &self.clone_target
        };
        if !self.image || target.eq_ignore_ascii_case("SYSTEM") {
            size
        } else {
            0
        }
    }
}

/// Reads `<VM_POOL>` (extended bodies) or a single `<VM>`.
pub fn parse_vm_pool(xml: &str) -> Result<Vec<Vm>, ModelError> {
    let mut out = Vec::new();
    let mut cur = Vm::default();
    let mut id_seen = false;
    let mut disks: Vec<DiskRead> = Vec::new();
    // The VN_MADs of its NICs that need the host's NETWORK_DRIVERS.
    let mut vn_mads: Vec<String> = Vec::new();
    // Attributes read from TEMPLATE, overridden by USER_TEMPLATE (where they belong).
    let mut from_template: Vec<(&'static str, String)> = Vec::new();
    const SCHED_ATTRS: &[&str] = &[
        "SCHED_REQUIREMENTS",
        "SCHED_RANK",
        "SCHED_DS_REQUIREMENTS",
        "SCHED_DS_RANK",
        "USER_PRIORITY",
    ];
    let mut user_seen: Vec<&'static str> = Vec::new();
    walk_objects(xml, "VM", |ev| {
        match ev {
            None => {
                if !id_seen {
                    return Err(ModelError::MissingId { kind: "VM" });
                }
                for (name, v) in from_template.drain(..) {
                    if !user_seen.contains(&name) {
                        set_sched_attr(&mut cur, name, &v);
                    }
                }
                user_seen.clear();
                cur.system_disk_mb = disks.iter().map(|d| d.system_mb()).sum();
                // Disks read in place from a shared image datastore: hosts must see it.
                let mut shared: Vec<i64> = disks
                    .drain(..)
                    .filter(|d| d.image && matches!(d.tm_mad.as_str(), "shared" | "qcow2"))
                    .filter_map(|d| d.datastore_id)
                    .collect();
                shared.sort_unstable();
                shared.dedup();
                cur.needs.shared_ds = shared;
                vn_mads.sort_unstable();
                vn_mads.dedup();
                cur.needs.vn_mads = std::mem::take(&mut vn_mads);
                out.push(std::mem::take(&mut cur));
                id_seen = false;
            }
            Some(Ev::Start(p)) => {
                if p == "VM/TEMPLATE/DISK" {
                    disks.push(DiskRead::default());
                } else if p == "VM/HISTORY_RECORDS/HISTORY" {
                    cur.current_host = None;
                    cur.current_ds = None;
                }
            }
            Some(Ev::Leaf(p, v)) => match p {
                "VM/ID" => {
                    cur.id = v
                        .trim()
                        .parse()
                        .map_err(|_| ModelError::MissingId { kind: "VM" })?;
                    id_seen = true;
                }
                "VM/UID" => cur.uid = num(v),
                "VM/GID" => cur.gid = num(v),
                "VM/STATE" => cur.state = num(v),
                "VM/LCM_STATE" => cur.lcm_state = num(v),
                "VM/RESCHED" => cur.resched = num(v) == 1,
                "VM/TEMPLATE/CPU" => {
                    let cpu = crate::expr::leading_float(v).unwrap_or(0.0);
                    cur.cpu = (cpu * 100.0).round() as i64;
                }
                "VM/TEMPLATE/MEMORY" => {
                    cur.memory_mb = num(v);
                    cur.memory_kb = cur.memory_mb.saturating_mul(1024);
                }
                "VM/TEMPLATE/AUTOMATIC_REQUIREMENTS" => cur.automatic_requirements = v.to_string(),
                "VM/TEMPLATE/AUTOMATIC_DS_REQUIREMENTS" => {
                    cur.automatic_ds_requirements = v.to_string()
                }
                "VM/USER_TEMPLATE/SCHED_MESSAGE" => cur.sched_message = v.to_string(),
                "VM/TEMPLATE/NIC/VN_MAD" => {
                    if crate::capability::vn_mad_needed(v) {
                        vn_mads.push(v.trim().to_string());
                    }
                }
                "VM/HISTORY_RECORDS/HISTORY/HID" => cur.current_host = Some(num(v)),
                "VM/HISTORY_RECORDS/HISTORY/DS_ID" => cur.current_ds = Some(num(v)),
                _ => {
                    if let Some(field) = p.strip_prefix("VM/TEMPLATE/DISK/") {
                        if let Some(d) = disks.last_mut() {
                            match field {
                                "SIZE" => d.size = crate::expr::leading_int(v),
                                "IMAGE_ID" => d.image = true,
                                "PERSISTENT" => d.persistent = v.trim().eq_ignore_ascii_case("YES"),
                                "CLONE_TARGET" => d.clone_target = v.trim().to_string(),
                                "LN_TARGET" => d.ln_target = v.trim().to_string(),
                                "DATASTORE_ID" => d.datastore_id = v.trim().parse().ok(),
                                "TM_MAD" => d.tm_mad = v.trim().to_string(),
                                _ => {}
                            }
                        }
                    } else if let Some(name) = p.strip_prefix("VM/USER_TEMPLATE/") {
                        if let Some(&n) = SCHED_ATTRS.iter().find(|&&a| a == name) {
                            user_seen.push(n);
                            set_sched_attr(&mut cur, n, v);
                        }
                    } else if let Some(name) = p.strip_prefix("VM/TEMPLATE/")
                        && let Some(&n) = SCHED_ATTRS.iter().find(|&&a| a == name)
                    {
                        from_template.push((n, v.to_string()));
                    }
                }
            },
        }
        Ok(())
    })?;
    Ok(out)
}

fn set_sched_attr(vm: &mut Vm, name: &str, v: &str) {
    match name {
        "SCHED_REQUIREMENTS" => vm.requirements = v.to_string(),
        "SCHED_RANK" => vm.rank = v.to_string(),
        "SCHED_DS_REQUIREMENTS" => vm.ds_requirements = v.to_string(),
        "SCHED_DS_RANK" => vm.ds_rank = v.to_string(),
        "USER_PRIORITY" => vm.user_priority = crate::expr::leading_int(v).unwrap_or(0),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{Rank, Requirement};

    pub const HOSTS: &str = "<HOST_POOL>\
        <HOST><ID>0</ID><NAME>h0</NAME><STATE>2</STATE><PREV_STATE>2</PREV_STATE>\
        <IM_MAD>dummy</IM_MAD><VM_MAD>dummy</VM_MAD><CLUSTER_ID>0</CLUSTER_ID><CLUSTER>default</CLUSTER>\
        <HOST_SHARE><MEM_USAGE>1024</MEM_USAGE><CPU_USAGE>50</CPU_USAGE><TOTAL_MEM>16777216</TOTAL_MEM>\
        <TOTAL_CPU>800</TOTAL_CPU><MAX_MEM>16777216</MAX_MEM><MAX_CPU>800</MAX_CPU><RUNNING_VMS>2</RUNNING_VMS>\
        <VMS_THREAD>0</VMS_THREAD><DATASTORES><DISK_USAGE>0</DISK_USAGE>\
        <DS><FREE_MB>900</FREE_MB><ID>0</ID><TOTAL_MB>1000</TOTAL_MB><USED_MB>100</USED_MB></DS>\
        <DS><FREE_MB>50</FREE_MB><ID>100</ID><TOTAL_MB>60</TOTAL_MB><USED_MB>10</USED_MB></DS>\
        <FREE_DISK>0</FREE_DISK><MAX_DISK>0</MAX_DISK><USED_DISK>0</USED_DISK></DATASTORES>\
        <PCI_DEVICES/><NUMA_NODES/></HOST_SHARE><VMS><ID>3</ID><ID>4</ID></VMS>\
        <TEMPLATE><CPUSPEED>2200</CPUSPEED><HYPERVISOR>dummy</HYPERVISOR><ID>99</ID>\
        <NOTE><![CDATA[a & b]]></NOTE><ESC>x&amp;y&#65;</ESC></TEMPLATE>\
        <MONITORING><TIMESTAMP>1</TIMESTAMP><ID>0</ID><CAPACITY><FREE_CPU>700</FREE_CPU>\
        <FREE_MEMORY>1000</FREE_MEMORY><USED_CPU>100</USED_CPU><USED_MEMORY>5</USED_MEMORY></CAPACITY>\
        <SYSTEM><NETRX>7</NETRX><NETTX>8</NETTX></SYSTEM></MONITORING></HOST>\
        <HOST><ID>1</ID><NAME>h1</NAME><STATE>4</STATE><CLUSTER_ID>100</CLUSTER_ID>\
        <HOST_SHARE><MAX_CPU>400</MAX_CPU><DATASTORES/></HOST_SHARE><TEMPLATE/><MONITORING/></HOST>\
        </HOST_POOL>";

    fn eval_host(pool: &HostPool, h: usize, text: &str) -> (bool, bool) {
        let r = Requirement::parse(text).unwrap();
        let b = pool.paths.bind(r.vars(), HOST_ROOTS, &pool.live_paths());
        let live = |f: Live| match f {
            Live::RunningVms => 42,
            _ => 0,
        };
        let res = ObjResolver::new(&pool.hosts[h].attrs, &b, &live);
        (r.eval(&res), res.touched_live())
    }

    #[test]
    fn host_pool_typed_fields() {
        let pool = HostPool::parse(HOSTS).unwrap();
        assert_eq!(pool.hosts.len(), 2);
        let h = &pool.hosts[0];
        assert_eq!(
            (h.id, h.name.as_str(), h.state, h.cluster_id),
            (0, "h0", 2, 0)
        );
        assert_eq!(
            (h.cpu_usage, h.mem_usage, h.max_cpu, h.max_mem),
            (50, 1024, 800, 16777216)
        );
        assert_eq!((h.running_vms, h.free_cpu, h.free_memory), (2, 700, 1000));
        assert_eq!(
            h.datastores,
            vec![
                HostDs {
                    id: 0,
                    free_mb: 900,
                    total_mb: 1000
                },
                HostDs {
                    id: 100,
                    free_mb: 50,
                    total_mb: 60
                }
            ]
        );
        assert!(h.schedulable());
        let h1 = &pool.hosts[1];
        assert_eq!(
            (h1.id, h1.state, h1.cluster_id, h1.max_cpu),
            (1, 4, 100, 400)
        );
        assert!(!h1.schedulable(), "DISABLED");
        assert_eq!(h1.state_name(), "DISABLED");
    }

    #[test]
    fn host_lookup_follows_opennebula_paths() {
        let pool = HostPool::parse(HOSTS).unwrap();
        // TEMPLATE, HOST_SHARE, MONITORING/CAPACITY, MONITORING/SYSTEM, HOST.
        assert!(eval_host(&pool, 0, "CPUSPEED = 2200").0);
        assert!(eval_host(&pool, 0, "MAX_CPU = 800").0);
        assert!(eval_host(&pool, 0, "USED_CPU = 100").0);
        assert!(eval_host(&pool, 0, "NETRX = 7").0);
        assert!(eval_host(&pool, 0, "NAME = \"h*\"").0);
        assert!(eval_host(&pool, 0, "CLUSTER_ID = 0").0);
        // Union in document order: HOST/ID (0) comes before TEMPLATE/ID (99).
        assert!(eval_host(&pool, 0, "ID = 0").0);
        assert!(eval_host(&pool, 0, "ID @> 99").0);
        // HOST_SHARE/DATASTORES: DISK_USAGE; a relative path; raw paths.
        assert!(eval_host(&pool, 0, "DISK_USAGE = 0").0);
        assert!(eval_host(&pool, 0, "\"DS/ID\" @> 100").0);
        assert!(eval_host(&pool, 0, "\"/HOST/TEMPLATE/HYPERVISOR\" = dummy").0);
        assert!(!eval_host(&pool, 0, "\"/HOST/NAME\" = h1").0);
        assert!(!eval_host(&pool, 0, "\"/HOST/MISSING\" = 1").0);
        // Text with CDATA and references.
        assert!(eval_host(&pool, 0, "NOTE = \"a & b\"").0);
        assert!(eval_host(&pool, 0, "ESC = \"x&yA\"").0);
        // Unknown names are missing.
        assert!(!eval_host(&pool, 0, "NOPE = 1").0);
        assert!(!eval_host(&pool, 1, "CPUSPEED = 2200").0);
    }

    #[test]
    fn live_figures_replace_document_values() {
        let pool = HostPool::parse(HOSTS).unwrap();
        assert_eq!(eval_host(&pool, 0, "RUNNING_VMS = 42"), (true, true));
        assert_eq!(eval_host(&pool, 0, "CPUSPEED = 2200"), (true, false));
        let r = Rank::parse("RUNNING_VMS * 2").unwrap();
        let b = pool.paths.bind(r.vars(), HOST_ROOTS, &pool.live_paths());
        let live = |_: Live| 5;
        assert_eq!(
            r.eval(&ObjResolver::new(&pool.hosts[0].attrs, &b, &live)),
            10.0
        );
    }

    #[test]
    fn cluster_template_is_attached() {
        let mut pool = HostPool::parse(HOSTS).unwrap();
        let clusters = parse_cluster_pool(
            "<CLUSTER_POOL><CLUSTER><ID>0</ID><NAME>default</NAME><HOSTS><ID>0</ID></HOSTS>\
             <DATASTORES/><VNETS/><TEMPLATE><PRIORITY>7</PRIORITY><CPUSPEED>1</CPUSPEED></TEMPLATE>\
             </CLUSTER><CLUSTER><ID>100</ID><NAME>c</NAME><TEMPLATE/></CLUSTER></CLUSTER_POOL>",
        )
        .unwrap();
        assert_eq!(clusters.len(), 2);
        assert_eq!(
            clusters[0].template[0],
            ("PRIORITY".to_string(), "7".to_string())
        );
        pool.attach_clusters(&clusters);
        assert!(eval_host(&pool, 0, "PRIORITY = 7").0);
        // The host's own TEMPLATE comes first.
        assert!(eval_host(&pool, 0, "CPUSPEED = 2200").0);
        assert!(eval_host(&pool, 0, "\"/HOST/CLUSTER_TEMPLATE/CPUSPEED\" = 1").0);
        assert!(!eval_host(&pool, 1, "PRIORITY = 7").0);
    }

    #[test]
    fn pools_listed_newest_first_are_read_in_id_order() {
        // oned's default API_LIST_ORDER is DESC; ties go to the lowest id all the same.
        let hosts = HostPool::parse(
            "<HOST_POOL><HOST><ID>9</ID><NAME>b</NAME></HOST>\
             <HOST><ID>2</ID><NAME>a</NAME></HOST></HOST_POOL>",
        )
        .unwrap();
        let ids: Vec<i64> = hosts.hosts.iter().map(|h| h.id).collect();
        assert_eq!(ids, [2, 9]);
        assert_eq!(hosts.hosts[0].name, "a");
        let dss = DatastorePool::parse(
            "<DATASTORE_POOL><DATASTORE><ID>100</ID></DATASTORE>\
             <DATASTORE><ID>0</ID></DATASTORE></DATASTORE_POOL>",
        )
        .unwrap();
        let ids: Vec<i64> = dss.datastores.iter().map(|d| d.id).collect();
        assert_eq!(ids, [0, 100]);
    }

    #[test]
    fn datastores() {
        let pool = DatastorePool::parse(
            "<DATASTORE_POOL><DATASTORE><ID>0</ID><UID>0</UID><NAME>system</NAME><TYPE>1</TYPE>\
             <STATE>0</STATE><CLUSTERS><ID>0</ID><ID>100</ID></CLUSTERS><TOTAL_MB>100</TOTAL_MB>\
             <FREE_MB>40</FREE_MB><USED_MB>60</USED_MB><IMAGES/><TEMPLATE><SHARED>YES</SHARED>\
             <TM_MAD>shared</TM_MAD></TEMPLATE></DATASTORE>\
             <DATASTORE><ID>1</ID><NAME>local</NAME><TYPE>1</TYPE><STATE>1</STATE><CLUSTERS/>\
             <TEMPLATE><SHARED>NO</SHARED></TEMPLATE></DATASTORE></DATASTORE_POOL>",
        )
        .unwrap();
        let d = &pool.datastores[0];
        assert_eq!(
            (d.id, d.ds_type, d.state, d.total_mb, d.free_mb),
            (0, 1, 0, 100, 40)
        );
        assert_eq!(d.clusters, vec![0, 100]);
        assert!(d.shared);
        assert!(!pool.datastores[1].shared);
        assert_eq!(pool.datastores[1].state, 1);
        let r =
            Requirement::parse("\"CLUSTERS/ID\" @> 100 & TM_MAD = shared & FREE_MB > 30").unwrap();
        let b = pool.paths.bind(r.vars(), DS_ROOTS, &pool.live_paths());
        let live = |_: Live| 35;
        let res = ObjResolver::new(&d.attrs, &b, &live);
        assert!(r.eval(&res));
        assert!(res.touched_live());
    }

    #[test]
    fn vms() {
        let vms = parse_vm_pool(
            "<VM_POOL><VM><ID>7</ID><UID>2</UID><GID>1</GID><STATE>1</STATE><LCM_STATE>0</LCM_STATE>\
             <RESCHED>0</RESCHED><TEMPLATE><AUTOMATIC_DS_REQUIREMENTS>(\"CLUSTERS/ID\" @&gt; 0)</AUTOMATIC_DS_REQUIREMENTS>\
             <AUTOMATIC_REQUIREMENTS>(CLUSTER_ID = 0) &amp; !(PIN_POLICY = PINNED)</AUTOMATIC_REQUIREMENTS>\
             <CPU>0.29</CPU>\
             <DISK><CLONE>YES</CLONE><CLONE_TARGET>SYSTEM</CLONE_TARGET><IMAGE_ID>1</IMAGE_ID><SIZE>100</SIZE></DISK>\
             <DISK><IMAGE_ID>2</IMAGE_ID><PERSISTENT>YES</PERSISTENT><LN_TARGET>NONE</LN_TARGET><SIZE>1000</SIZE></DISK>\
             <DISK><SIZE>30</SIZE><TYPE>fs</TYPE></DISK>\
             <MEMORY>64</MEMORY><SCHED_RANK>FREE_CPU</SCHED_RANK><VMID>7</VMID></TEMPLATE>\
             <USER_TEMPLATE><SCHED_MESSAGE>Mon Nov 23 10:00:00 2026 : x</SCHED_MESSAGE>\
             <SCHED_REQUIREMENTS>CPUSPEED &gt; 9000</SCHED_REQUIREMENTS><USER_PRIORITY>5</USER_PRIORITY></USER_TEMPLATE>\
             <HISTORY_RECORDS/></VM>\
             <VM><ID>8</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE><RESCHED>1</RESCHED><TEMPLATE/>\
             <USER_TEMPLATE><SCHED_RANK>-RUNNING_VMS</SCHED_RANK></USER_TEMPLATE>\
             <HISTORY_RECORDS><HISTORY><OID>8</OID><SEQ>0</SEQ><HID>3</HID><DS_ID>0</DS_ID></HISTORY></HISTORY_RECORDS></VM>\
             </VM_POOL>",
        )
        .unwrap();
        let v = &vms[0];
        assert_eq!(
            (v.id, v.uid, v.gid, v.state, v.cpu, v.memory_kb),
            (7, 2, 1, 1, 29, 65536)
        );
        assert_eq!(v.system_disk_mb, 130);
        assert_eq!(v.requirements, "CPUSPEED > 9000");
        assert_eq!(
            v.automatic_requirements,
            "(CLUSTER_ID = 0) & !(PIN_POLICY = PINNED)"
        );
        assert_eq!(v.automatic_ds_requirements, "(\"CLUSTERS/ID\" @> 0)");
        assert_eq!(
            v.rank, "FREE_CPU",
            "from TEMPLATE when USER_TEMPLATE lacks it"
        );
        assert_eq!(v.user_priority, 5);
        assert_eq!(v.sched_message, "Mon Nov 23 10:00:00 2026 : x");
        assert!(v.is_pending() && !v.wants_resched());
        assert_eq!(v.current_host, None);
        let w = &vms[1];
        assert!(w.wants_resched() && w.is_running());
        assert_eq!((w.current_host, w.current_ds), (Some(3), Some(0)));
        assert_eq!(w.rank, "-RUNNING_VMS");
    }

    #[test]
    fn errors() {
        assert!(matches!(
            HostPool::parse("<HOST_POOL><HOST><NAME>x</NAME></HOST></HOST_POOL>"),
            Err(ModelError::MissingId { kind: "HOST" })
        ));
        assert!(matches!(
            HostPool::parse("<HOST_POOL><HOST></HOSTX>"),
            Err(ModelError::Xml { .. })
        ));
        assert!(parse_vm_pool("<VM_POOL></VM_POOL>").unwrap().is_empty());
        assert!(parse_vm_pool("<VM_POOL/>").unwrap().is_empty());
    }
}
