//! One scheduling pass: pending and rescheduled VMs × hosts × system datastores → decisions,
//! and for each VM that cannot be placed, the reason (for its SCHED_MESSAGE).
//!
//! VMs are taken by USER_PRIORITY (higher first), then id. For each VM the hosts that pass
//! every filter are ranked and the best one that also has a fitting system datastore wins;
//! ties go to the host listed first (lowest id). Filters, in the order the reason message
//! reports them: host state (MONITORED or INIT), not the VM's current host (resched),
//! AUTOMATIC_REQUIREMENTS, SCHED_REQUIREMENTS, the host capabilities the VM needs (it sees
//! the shared image datastores of the VM's disks, it serves the network drivers of its
//! NICs), the per-host dispatch limit, free CPU
//! (`MAX_CPU - CPU_USAGE >= CPU*100`), free memory (`MAX_MEM - MEM_USAGE >= MEMORY*1024`),
//! a system datastore (that the host sees, when it is shared).
//!
//! What this pass placed counts at once: the chosen host's CPU_USAGE, MEM_USAGE and
//! RUNNING_VMS grow (and its monitored FREE_CPU / FREE_MEMORY shrink), the datastore's free
//! space shrinks, so the next VM sees them and policies such as striping spread VMs within a
//! single pass.
//!
//! Speed: requirement results are cached per (distinct expression, host) and only
//! re-evaluated for a host whose figures changed when the expression read one of those
//! figures; ranks likewise. VMs whose placement failed leave their "shape" (requirements,
//! rank, size) behind, and later VMs of the same shape fail at once with the same reason:
//! within a pass capacity only shrinks.

use crate::expr::{ExprError, Rank, Requirement};
use crate::model::{
    Binding, DS_ROOTS, DatastorePool, HOST_ROOTS, HostDs, HostPool, Live, ObjResolver, SYSTEM_DS,
    Vm,
};
use crate::policy::{DsPolicy, HostPolicy, effective_rank};
use std::collections::HashMap;
use std::rc::Rc;

/// The knobs of a pass (see etc/scheduler.toml).
#[derive(Clone, Debug, PartialEq)]
pub struct PlaceConfig {
    /// VMs considered per pass, 0 = all.
    pub max_vm: usize,
    /// VMs dispatched per pass, 0 = unlimited.
    pub max_dispatch: usize,
    /// VMs dispatched to one host per pass, 0 = unlimited.
    pub max_host: usize,
    pub host_policy: HostPolicy,
    pub ds_policy: DsPolicy,
    /// Part of the VM's memory that also needs room in the system datastore (0 = none).
    pub memory_system_ds_scale: f64,
}

impl Default for PlaceConfig {
    fn default() -> Self {
        PlaceConfig {
            max_vm: 0,
            max_dispatch: 0,
            max_host: 0,
            host_policy: HostPolicy::Striping,
            ds_policy: DsPolicy::Striping,
            memory_system_ds_scale: 0.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `one.vm.deploy`: a pending VM's first placement.
    Deploy,
    /// `one.vm.migrate`: a VM flagged for rescheduling moves to another host.
    Migrate,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub vm_id: i64,
    pub host_id: i64,
    /// The system datastore; for a migration, -1 when the VM keeps its current one.
    pub ds_id: i64,
    pub action: Action,
}

/// A VM that cannot be placed now, and why (the text of SCHED_MESSAGE, without the time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaced {
    pub vm_id: i64,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub decisions: Vec<Decision>,
    pub unplaced: Vec<Unplaced>,
    /// VMs left for a later pass by `max_vm` / `max_dispatch`.
    pub deferred: usize,
}

/// Runs one pass. `vms` may hold pending VMs and VMs to reschedule in any order; other VMs
/// are ignored. `hosts` should have its clusters attached ([`HostPool::attach_clusters`]).
pub fn schedule(vms: &[Vm], hosts: &HostPool, dss: &DatastorePool, cfg: &PlaceConfig) -> Outcome {
    Pass::new(hosts, dss, cfg).run(vms)
}

// ------------------------------------------------------------------------------------------

/// What changes on a host during the pass.
#[derive(Clone, Debug)]
struct HostLive {
    cpu_usage: i64,
    mem_usage: i64,
    running_vms: i64,
    free_cpu: i64,
    free_memory: i64,
    dispatched: usize,
    /// Bumped at each placement: cached results that read live figures are stale then.
    version: u32,
    /// The host's own view of its datastores (non-shared system datastores).
    datastores: Vec<HostDs>,
}

impl HostLive {
    fn get(&self, f: Live) -> i64 {
        match f {
            Live::CpuUsage => self.cpu_usage,
            Live::MemUsage => self.mem_usage,
            Live::RunningVms => self.running_vms,
            Live::FreeCpu => self.free_cpu,
            Live::FreeMemory => self.free_memory,
            Live::FreeMb => 0,
        }
    }
}

const STATIC: u32 = u32::MAX;

#[derive(Clone, Copy, Default)]
struct Slot<T> {
    known: bool,
    /// The host version the value was computed at, or [`STATIC`] (read no live figure).
    version: u32,
    value: T,
}

/// A distinct host expression of the pass with its per-host cache.
struct Cached<E, T> {
    expr: E,
    binding: Binding,
    slots: Vec<Slot<T>>,
}

/// Parsed expressions by text, so each distinct text is parsed and bound once.
struct Registry<E, T> {
    by_text: HashMap<String, Result<usize, ExprError>>,
    items: Vec<Cached<E, T>>,
}

impl<E, T: Copy + Default> Registry<E, T> {
    fn new() -> Self {
        Registry {
            by_text: HashMap::new(),
            items: Vec::new(),
        }
    }

    /// The id of `text`, parsing and binding it on first sight.
    fn id(
        &mut self,
        text: &str,
        parse: impl Fn(&str) -> Result<E, ExprError>,
        bind: impl Fn(&E) -> Binding,
        n_objects: usize,
    ) -> Result<usize, ExprError> {
        if let Some(r) = self.by_text.get(text) {
            return r.clone();
        }
        let r = parse(text).map(|expr| {
            let binding = bind(&expr);
            self.items.push(Cached {
                expr,
                binding,
                slots: vec![Slot::default(); n_objects],
            });
            self.items.len() - 1
        });
        self.by_text.insert(text.to_string(), r.clone());
        r
    }
}

/// The expressions a VM is placed with, resolved to registry ids (None = empty = true).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Exprs {
    auto: Option<usize>,
    sched: Option<usize>,
    rank: usize,
    ds_auto: Option<usize>,
    ds_sched: Option<usize>,
    ds_rank: usize,
}

/// Everything a placement attempt depends on besides the hosts: VMs with equal shapes
/// get equal answers within a pass (as long as no live figure decided a requirement).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Shape {
    exprs: Exprs,
    cpu: i64,
    mem: i64,
    disk_mb: i64,
    current_host: Option<i64>,
    current_ds: Option<i64>,
    /// What the VM needs of host capabilities, as an index in `Pass::needs`.
    needs: usize,
}

/// Host indexes, each with "must check the requirements again" (they read a live figure).
type Candidates = Rc<[(usize, bool)]>;

/// Why a host was turned down for a VM, in check order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Refusal {
    State,
    Current,
    Automatic,
    Sched,
    NetDriver,
    HostLimit,
    Cpu,
    Memory,
    NoSystemDs,
    DsRequirements,
    SystemDsNotSeen,
    /// The image datastores read in place from a shared system datastore (a host-local
    /// one gets its images through the agent's byte stream and needs none of them).
    SharedDs,
    DsSpace,
}

struct Pass<'a> {
    hosts: &'a HostPool,
    dss: &'a DatastorePool,
    cfg: &'a PlaceConfig,
    live: Vec<HostLive>,
    /// Free space of each (shared) datastore, by index in `dss`.
    ds_free: Vec<i64>,
    /// Indexes of hosts in a schedulable state.
    eligible: Vec<usize>,
    host_live_paths: Vec<(u32, Live)>,
    ds_live_paths: Vec<(u32, Live)>,
    reqs: Registry<Requirement, bool>,
    ranks: Registry<Rank, f64>,
    ds_reqs: Registry<Requirement, bool>,
    ds_ranks: Registry<Rank, f64>,
    /// Shapes that failed, with their reason (VM id left out).
    failed: HashMap<Shape, String>,
    /// Candidate hosts per (AUTOMATIC_REQUIREMENTS, SCHED_REQUIREMENTS) pair.
    candidates: HashMap<(Option<usize>, Option<usize>), Candidates>,
    /// A datastore requirement read a live figure: failures may not repeat, so none are
    /// remembered from then on.
    ds_dynamic: bool,
    dispatched: usize,
    /// The distinct capability needs of the pass's VMs (shapes refer to them by index).
    needs: Vec<crate::capability::Needs>,
}

impl<'a> Pass<'a> {
    fn new(hosts: &'a HostPool, dss: &'a DatastorePool, cfg: &'a PlaceConfig) -> Self {
        let live = hosts
            .hosts
            .iter()
            .map(|h| HostLive {
                cpu_usage: h.cpu_usage,
                mem_usage: h.mem_usage,
                running_vms: h.running_vms,
                free_cpu: h.free_cpu,
                free_memory: h.free_memory,
                dispatched: 0,
                version: 0,
                datastores: h.datastores.clone(),
            })
            .collect();
        Pass {
            hosts,
            dss,
            cfg,
            live,
            ds_free: dss.datastores.iter().map(|d| d.free_mb).collect(),
            eligible: (0..hosts.hosts.len())
                .filter(|&i| hosts.hosts[i].schedulable())
                .collect(),
            host_live_paths: hosts.live_paths(),
            ds_live_paths: dss.live_paths(),
            reqs: Registry::new(),
            ranks: Registry::new(),
            ds_reqs: Registry::new(),
            ds_ranks: Registry::new(),
            failed: HashMap::new(),
            candidates: HashMap::new(),
            ds_dynamic: false,
            dispatched: 0,
            needs: vec![crate::capability::Needs::default()],
        }
    }

    fn needs_index(&mut self, n: &crate::capability::Needs) -> usize {
        match self.needs.iter().position(|x| x == n) {
            Some(i) => i,
            None => {
                self.needs.push(n.clone());
                self.needs.len() - 1
            }
        }
    }

    fn run(mut self, vms: &[Vm]) -> Outcome {
        let mut order: Vec<&Vm> = vms
            .iter()
            .filter(|v| v.is_pending() || v.wants_resched())
            .collect();
        order.sort_by_key(|v| (std::cmp::Reverse(v.user_priority), v.id));
        let mut out = Outcome::default();
        if self.cfg.max_vm > 0 && order.len() > self.cfg.max_vm {
            out.deferred += order.len() - self.cfg.max_vm;
            order.truncate(self.cfg.max_vm);
        }
        for (i, vm) in order.iter().enumerate() {
            if self.cfg.max_dispatch > 0 && self.dispatched >= self.cfg.max_dispatch {
                out.deferred += order.len() - i;
                break;
            }
            match self.place(vm) {
                Ok(d) => out.decisions.push(d),
                Err(message) => out.unplaced.push(Unplaced {
                    vm_id: vm.id,
                    message,
                }),
            }
        }
        out
    }

    /// Registry ids of a VM's expressions, or the message for the one that does not parse.
    fn exprs(&mut self, vm: &Vm) -> Result<Exprs, String> {
        let n_hosts = self.hosts.hosts.len();
        let n_ds = self.dss.datastores.len();
        let (hp, hl) = (&self.hosts.paths, &self.host_live_paths);
        let (dp, dl) = (&self.dss.paths, &self.ds_live_paths);
        let bad = |what: &str, text: &str, e: ExprError| {
            format!(
                "Cannot schedule VM {}: {what} \"{text}\" does not parse: {e}",
                vm.id
            )
        };
        let host_req = |reg: &mut Registry<Requirement, bool>, text: &str, what: &str| {
            if text.trim().is_empty() {
                return Ok(None);
            }
            reg.id(
                text,
                Requirement::parse,
                |e| hp.bind(e.vars(), HOST_ROOTS, hl),
                n_hosts,
            )
            .map(Some)
            .map_err(|e| bad(what, text, e))
        };
        let auto = host_req(
            &mut self.reqs,
            &vm.automatic_requirements,
            "AUTOMATIC_REQUIREMENTS",
        )?;
        let sched = host_req(&mut self.reqs, &vm.requirements, "SCHED_REQUIREMENTS")?;
        let rank_text = effective_rank(&vm.rank, self.cfg.host_policy.rank());
        let rank = self
            .ranks
            .id(
                rank_text,
                Rank::parse,
                |e| hp.bind(e.vars(), HOST_ROOTS, hl),
                n_hosts,
            )
            .map_err(|e| bad("SCHED_RANK", rank_text, e))?;
        let ds_req = |reg: &mut Registry<Requirement, bool>, text: &str, what: &str| {
            if text.trim().is_empty() {
                return Ok(None);
            }
            reg.id(
                text,
                Requirement::parse,
                |e| dp.bind(e.vars(), DS_ROOTS, dl),
                n_ds,
            )
            .map(Some)
            .map_err(|e| bad(what, text, e))
        };
        let ds_auto = ds_req(
            &mut self.ds_reqs,
            &vm.automatic_ds_requirements,
            "AUTOMATIC_DS_REQUIREMENTS",
        )?;
        let ds_sched = ds_req(
            &mut self.ds_reqs,
            &vm.ds_requirements,
            "SCHED_DS_REQUIREMENTS",
        )?;
        let ds_rank_text = effective_rank(&vm.ds_rank, self.cfg.ds_policy.rank());
        let ds_rank = self
            .ds_ranks
            .id(
                ds_rank_text,
                Rank::parse,
                |e| dp.bind(e.vars(), DS_ROOTS, dl),
                n_ds,
            )
            .map_err(|e| bad("SCHED_DS_RANK", ds_rank_text, e))?;
        Ok(Exprs {
            auto,
            sched,
            rank,
            ds_auto,
            ds_sched,
            ds_rank,
        })
    }

    fn disk_need(&self, vm: &Vm) -> i64 {
        let mem = (vm.memory_mb as f64 * self.cfg.memory_system_ds_scale).ceil() as i64;
        vm.system_disk_mb + mem.max(0)
    }

    fn place(&mut self, vm: &Vm) -> Result<Decision, String> {
        let exprs = self.exprs(vm)?;
        let needs = self.needs_index(&vm.needs);
        let shape = Shape {
            needs,
            exprs,
            cpu: vm.cpu,
            mem: vm.memory_kb,
            disk_mb: self.disk_need(vm),
            current_host: if vm.is_pending() {
                None
            } else {
                vm.current_host
            },
            current_ds: if vm.is_pending() { None } else { vm.current_ds },
        };
        if let Some(reason) = self.failed.get(&shape) {
            return Err(format!("No host fits VM {}: {reason}", vm.id));
        }
        let mut excluded: Vec<usize> = Vec::new();
        let mut touched_live = false;
        while let Some(h) = self.best_host(&shape, &excluded, &mut touched_live) {
            match self.choose_ds(h, &shape, vm) {
                Ok(ds) => return Ok(self.commit(vm, h, ds, &shape)),
                Err(_) => excluded.push(h),
            }
        }
        let reason = self.explain(&shape, vm);
        if !touched_live && !self.ds_dynamic {
            self.failed.insert(shape, reason.clone());
        }
        Err(format!("No host fits VM {}: {reason}", vm.id))
    }

    /// The best-ranked host passing every host filter (datastores aside).
    /// The hosts a VM with these requirements may go to at all: schedulable, and not
    /// refused by a requirement whose result cannot change in this pass. The flag marks
    /// hosts whose result read a live figure and must be checked again each time.
    fn candidates(&mut self, auto: Option<usize>, sched: Option<usize>) -> Candidates {
        if let Some(c) = self.candidates.get(&(auto, sched)) {
            return c.clone();
        }
        let mut out = Vec::new();
        for k in 0..self.eligible.len() {
            let h = self.eligible[k];
            let mut dynamic = false;
            let ok = self.req_ok(auto, h, &mut dynamic);
            if !ok && !dynamic {
                continue;
            }
            let ok2 = self.req_ok(sched, h, &mut dynamic);
            if (ok && ok2) || dynamic {
                out.push((h, dynamic));
            }
        }
        let c: Candidates = out.into();
        self.candidates.insert((auto, sched), c.clone());
        c
    }

    /// The best-ranked host passing every host filter (datastores aside).
    fn best_host(&mut self, s: &Shape, excluded: &[usize], touched: &mut bool) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        let max_host = self.cfg.max_host;
        let cands = self.candidates(s.exprs.auto, s.exprs.sched);
        for &(h, recheck) in cands.iter() {
            let l = &self.live[h];
            let host = &self.hosts.hosts[h];
            if host.max_cpu - l.cpu_usage < s.cpu
                || host.max_mem - l.mem_usage < s.mem
                || (max_host > 0 && l.dispatched >= max_host)
                || s.current_host == Some(host.id)
                || excluded.contains(&h)
                || (s.needs != 0 && host.caps.lacks_network(&self.needs[s.needs]).is_some())
            {
                continue;
            }
            if recheck
                && (!self.req_ok(s.exprs.auto, h, touched)
                    || !self.req_ok(s.exprs.sched, h, touched))
            {
                continue;
            }
            let r = self.rank(s.exprs.rank, h);
            if best.is_none_or(|(_, b)| r > b) {
                best = Some((h, r));
            }
        }
        if cands.iter().any(|&(_, recheck)| recheck) {
            *touched = true;
        }
        best.map(|(h, _)| h)
    }

    fn req_ok(&mut self, id: Option<usize>, h: usize, touched: &mut bool) -> bool {
        let Some(id) = id else { return true };
        let live = &self.live[h];
        let c = &mut self.reqs.items[id];
        let slot = c.slots[h];
        if slot.known && (slot.version == STATIC || slot.version == live.version) {
            *touched |= slot.version != STATIC;
            return slot.value;
        }
        let get = |f: Live| live.get(f);
        let r = ObjResolver::new(&self.hosts.hosts[h].attrs, &c.binding, &get);
        let value = c.expr.eval(&r);
        let dynamic = r.touched_live();
        *touched |= dynamic;
        c.slots[h] = Slot {
            known: true,
            version: if dynamic { live.version } else { STATIC },
            value,
        };
        value
    }

    fn rank(&mut self, id: usize, h: usize) -> f64 {
        let live = &self.live[h];
        let c = &mut self.ranks.items[id];
        let slot = c.slots[h];
        if slot.known && (slot.version == STATIC || slot.version == live.version) {
            return slot.value;
        }
        let get = |f: Live| live.get(f);
        let r = ObjResolver::new(&self.hosts.hosts[h].attrs, &c.binding, &get);
        let value = c.expr.eval(&r);
        c.slots[h] = Slot {
            known: true,
            version: if r.touched_live() {
                live.version
            } else {
                STATIC
            },
            value,
        };
        value
    }

    /// Free space of datastore `d` as host `h` sees it, `None` when unknown (not monitored
    /// yet: TOTAL_MB 0), which never refuses a VM.
    fn ds_free(&self, h: usize, d: usize) -> Option<i64> {
        let ds = &self.dss.datastores[d];
        if !ds.shared
            && let Some(local) = self.live[h].datastores.iter().find(|x| x.id == ds.id)
            && local.total_mb > 0
        {
            return Some(local.free_mb);
        }
        (ds.total_mb > 0).then_some(self.ds_free[d])
    }

    /// The best system datastore for the VM on host `h`, or why there is none.
    fn choose_ds(&mut self, h: usize, s: &Shape, vm: &Vm) -> Result<usize, (Refusal, i64)> {
        let host = &self.hosts.hosts[h];
        let mut best: Option<(usize, f64)> = None;
        let mut worst = Refusal::NoSystemDs;
        let mut best_free = i64::MIN;
        for d in 0..self.dss.datastores.len() {
            let ds = &self.dss.datastores[d];
            if ds.ds_type != SYSTEM_DS || ds.state != 0 || !ds.clusters.contains(&host.cluster_id) {
                continue;
            }
            // A shared system datastore the host does not see (not mounted there).
            if ds.shared && !host.caps.sees(ds.id) {
                worst = worst.max(Refusal::SystemDsNotSeen);
                continue;
            }
            // Disks read in place there: the host must see their image datastores too.
            if ds.shared
                && s.needs != 0
                && host.caps.lacks_datastores(&self.needs[s.needs]).is_some()
            {
                worst = worst.max(Refusal::SharedDs);
                continue;
            }
            let free = self.ds_free(h, d);
            if !self.ds_req_ok(s.exprs.ds_auto, d, free)
                || !self.ds_req_ok(s.exprs.ds_sched, d, free)
            {
                worst = worst.max(Refusal::DsRequirements);
                continue;
            }
            // A resched VM staying on a shared datastore needs no new space.
            let keeps = !vm.is_pending() && vm.current_ds == Some(ds.id) && ds.shared;
            if let Some(f) = free
                && !keeps
                && f < s.disk_mb
            {
                worst = Refusal::DsSpace;
                best_free = best_free.max(f);
                continue;
            }
            let r = if keeps {
                f64::INFINITY
            } else {
                self.ds_rank(s.exprs.ds_rank, d, free)
            };
            if best.is_none_or(|(_, b)| r > b) {
                best = Some((d, r));
            }
        }
        best.map(|(d, _)| d).ok_or((worst, best_free))
    }

    fn ds_req_ok(&mut self, id: Option<usize>, d: usize, free: Option<i64>) -> bool {
        let Some(id) = id else { return true };
        let c = &mut self.ds_reqs.items[id];
        let slot = c.slots[d];
        if slot.known && slot.version == STATIC {
            return slot.value;
        }
        let get = |_: Live| free.unwrap_or(0);
        let r = ObjResolver::new(&self.dss.datastores[d].attrs, &c.binding, &get);
        let value = c.expr.eval(&r);
        self.ds_dynamic |= r.touched_live();
        if !r.touched_live() {
            c.slots[d] = Slot {
                known: true,
                version: STATIC,
                value,
            };
        }
        value
    }

    fn ds_rank(&mut self, id: usize, d: usize, free: Option<i64>) -> f64 {
        let c = &mut self.ds_ranks.items[id];
        let slot = c.slots[d];
        if slot.known && slot.version == STATIC {
            return slot.value;
        }
        let get = |_: Live| free.unwrap_or(0);
        let r = ObjResolver::new(&self.dss.datastores[d].attrs, &c.binding, &get);
        let value = c.expr.eval(&r);
        if !r.touched_live() {
            c.slots[d] = Slot {
                known: true,
                version: STATIC,
                value,
            };
        }
        value
    }

    /// Accounts the placement and returns the decision.
    fn commit(&mut self, vm: &Vm, h: usize, d: usize, s: &Shape) -> Decision {
        let ds = &self.dss.datastores[d];
        let keeps = !vm.is_pending() && vm.current_ds == Some(ds.id);
        if !(keeps && ds.shared) {
            if ds.shared {
                self.ds_free[d] -= s.disk_mb;
            } else if let Some(local) = self.live[h].datastores.iter_mut().find(|x| x.id == ds.id) {
                local.free_mb -= s.disk_mb;
            } else {
                self.ds_free[d] -= s.disk_mb;
            }
        }
        let l = &mut self.live[h];
        l.cpu_usage += s.cpu;
        l.mem_usage += s.mem;
        l.running_vms += 1;
        l.free_cpu -= s.cpu;
        l.free_memory -= s.mem;
        l.dispatched += 1;
        l.version = l.version.wrapping_add(1) % STATIC;
        self.dispatched += 1;
        let pending = vm.is_pending();
        Decision {
            vm_id: vm.id,
            host_id: self.hosts.hosts[h].id,
            ds_id: if !pending && keeps { -1 } else { ds.id },
            action: if pending {
                Action::Deploy
            } else {
                Action::Migrate
            },
        }
    }

    /// Why no host fits: every host is attributed to the first check it fails.
    fn explain(&mut self, s: &Shape, vm: &Vm) -> String {
        let total = self.hosts.hosts.len();
        if total == 0 {
            return "there are no hosts".into();
        }
        let mut groups: Vec<(Refusal, Vec<i64>)> = Vec::new();
        let mut best_cpu = i64::MIN;
        let mut best_mem = i64::MIN;
        let mut best_ds = i64::MIN;
        let mut states: Vec<&'static str> = Vec::new();
        let mut touched = false;
        // What the first host refused for a capability does not see (for the message).
        let mut unseen_image: Option<String> = None;
        let mut no_net_driver: Option<String> = None;
        let mut unseen_system: Option<String> = None;
        for h in 0..total {
            let host = &self.hosts.hosts[h];
            let l = &self.live[h];
            let (free_cpu, free_mem) = (host.max_cpu - l.cpu_usage, host.max_mem - l.mem_usage);
            let at_limit = self.cfg.max_host > 0 && l.dispatched >= self.cfg.max_host;
            let refusal = if !host.schedulable() {
                if !states.contains(&host.state_name()) {
                    states.push(host.state_name());
                }
                Refusal::State
            } else if s.current_host == Some(host.id) {
                Refusal::Current
            } else if !self.req_ok(s.exprs.auto, h, &mut touched) {
                Refusal::Automatic
            } else if !self.req_ok(s.exprs.sched, h, &mut touched) {
                Refusal::Sched
            } else if let Some(why) = host.caps.lacks_network(&self.needs[s.needs]) {
                no_net_driver.get_or_insert(why);
                Refusal::NetDriver
            } else if at_limit {
                Refusal::HostLimit
            } else if free_cpu < s.cpu {
                best_cpu = best_cpu.max(free_cpu);
                Refusal::Cpu
            } else if free_mem < s.mem {
                best_mem = best_mem.max(free_mem);
                Refusal::Memory
            } else {
                match self.choose_ds(h, s, vm) {
                    Ok(_) => continue,
                    Err((r, free)) => {
                        best_ds = best_ds.max(free);
                        if r == Refusal::SharedDs && unseen_image.is_none() {
                            unseen_image = self.hosts.hosts[h]
                                .caps
                                .lacks_datastores(&self.needs[s.needs]);
                        }
                        if r == Refusal::SystemDsNotSeen && unseen_system.is_none() {
                            let host = &self.hosts.hosts[h];
                            let why: Vec<String> = self
                                .dss
                                .datastores
                                .iter()
                                .filter(|d| {
                                    d.ds_type == SYSTEM_DS
                                        && d.shared
                                        && d.clusters.contains(&host.cluster_id)
                                        && !host.caps.sees(d.id)
                                })
                                .map(|d| host.caps.why_not(d.id))
                                .collect();
                            unseen_system = Some(why.join(", "));
                        }
                        r
                    }
                }
            };
            match groups.iter_mut().find(|(r, _)| *r == refusal) {
                Some((_, ids)) => ids.push(host.id),
                None => groups.push((refusal, vec![host.id])),
            }
        }
        groups.sort_by_key(|(r, _)| *r);
        // The reason for a group of hosts, its verb agreeing with the group's size.
        let text = |r: Refusal, one: bool| -> String {
            let verb =
                |singular: &str, plural: &str| if one { singular } else { plural }.to_string();
            let rest = match r {
                Refusal::State => format!(" not schedulable ({})", states.join(", ")),
                Refusal::Current => " the VM's current host".into(),
                Refusal::Automatic => {
                    format!(" AUTOMATIC_REQUIREMENTS \"{}\"", vm.automatic_requirements)
                }
                Refusal::Sched => format!(" SCHED_REQUIREMENTS \"{}\"", vm.requirements),
                Refusal::SharedDs => format!(
                    " the shared image datastore of the VM's disks: {}",
                    unseen_image.as_deref().unwrap_or("")
                ),
                Refusal::NetDriver => format!(
                    " the network driver of the VM's NICs: {}",
                    no_net_driver.as_deref().unwrap_or("")
                ),
                Refusal::SystemDsNotSeen => format!(
                    " the shared system datastore: {}",
                    unseen_system.as_deref().unwrap_or("")
                ),
                Refusal::HostLimit => format!(
                    " the limit of {} VMs dispatched per host and cycle",
                    self.cfg.max_host
                ),
                Refusal::Cpu => format!(" CPU (needs {}, best free {best_cpu})", s.cpu),
                Refusal::Memory => {
                    format!(" memory (needs {} KB, best free {best_mem} KB)", s.mem)
                }
                Refusal::NoSystemDs => format!(
                    " no READY system datastore in {} cluster",
                    if one { "its" } else { "their" }
                ),
                Refusal::DsRequirements => {
                    let mut reqs = Vec::new();
                    if !vm.automatic_ds_requirements.trim().is_empty() {
                        reqs.push(format!(
                            "AUTOMATIC_DS_REQUIREMENTS \"{}\"",
                            vm.automatic_ds_requirements
                        ));
                    }
                    if !vm.ds_requirements.trim().is_empty() {
                        reqs.push(format!("SCHED_DS_REQUIREMENTS \"{}\"", vm.ds_requirements));
                    }
                    format!(" no system datastore matching {}", reqs.join(" & "))
                }
                Refusal::DsSpace => format!(
                    " system datastore space (needs {} MB, best free {best_ds} MB)",
                    s.disk_mb
                ),
            };
            let verb = match r {
                Refusal::State | Refusal::Current => verb("is", "are"),
                Refusal::Automatic | Refusal::Sched => verb("fails", "fail"),
                Refusal::SharedDs | Refusal::SystemDsNotSeen => verb("does not see", "do not see"),
                Refusal::NetDriver => verb("cannot serve", "cannot serve"),
                Refusal::HostLimit => "reached".into(),
                Refusal::Cpu | Refusal::Memory | Refusal::DsSpace => verb("lacks", "lack"),
                Refusal::NoSystemDs | Refusal::DsRequirements => verb("has", "have"),
            };
            verb + &rest
        };
        let mut parts = Vec::new();
        for (i, (r, ids)) in groups.iter().enumerate() {
            let n = ids.len();
            let mut shown: Vec<String> = ids.iter().take(3).map(i64::to_string).collect();
            if n > 3 {
                shown.push("...".into());
            }
            let which = format!(
                " (host{} {})",
                if n > 1 { "s" } else { "" },
                shown.join(", ")
            );
            let reason = text(*r, n == 1);
            if i == 0 {
                let hosts = if total == 1 { "host" } else { "hosts" };
                parts.push(format!("{n} of {total} {hosts} {reason}{which}"));
            } else {
                parts.push(format!("{n} {reason}{which}"));
            }
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests;
