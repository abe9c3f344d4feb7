//! Quotas of users and groups (DATASTORE_QUOTA, NETWORK_QUOTA, VM_QUOTA, IMAGE_QUOTA).
//!
//! Each section holds entries (`DATASTORE = [ ID, IMAGES, IMAGES_USED, SIZE, SIZE_USED ]`, ...);
//! an entry maps every metric of its kind to a limit and a usage. Limits follow OpenNebula:
//! [`DEFAULT`] (-1) takes the limit from the default quotas (`one.userquota.update` /
//! `one.groupquota.update`), [`UNLIMITED`] (-2) has no limit, n >= 0 is the limit. Default
//! quotas themselves cannot say -1, and an absent default means unlimited.
//!
//! This module is pure arithmetic and XML; oned decides whose quotas an operation charges.

use crate::template::{AttrValue, Template, Vector};
use crate::xml::XmlWriter;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Limit -1: use the default quota.
pub const DEFAULT: f64 = -1.0;
/// Limit -2: no limit.
pub const UNLIMITED: f64 = -2.0;

/// Usage is kept to this precision, so sums of fractional CPUs never drift.
const PRECISION: f64 = 1e6;

/// The four quota sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    Datastore,
    Network,
    Vm,
    Image,
}

impl QuotaKind {
    /// In XML order.
    pub const ALL: [QuotaKind; 4] = [
        QuotaKind::Datastore,
        QuotaKind::Network,
        QuotaKind::Vm,
        QuotaKind::Image,
    ];

    /// The entry's name (`VM = [ ... ]` in templates, `<VM>` in XML).
    pub fn entry_name(self) -> &'static str {
        match self {
            QuotaKind::Datastore => "DATASTORE",
            QuotaKind::Network => "NETWORK",
            QuotaKind::Vm => "VM",
            QuotaKind::Image => "IMAGE",
        }
    }

    /// The section element (`VM_QUOTA`).
    pub fn section_name(self) -> &'static str {
        match self {
            QuotaKind::Datastore => "DATASTORE_QUOTA",
            QuotaKind::Network => "NETWORK_QUOTA",
            QuotaKind::Vm => "VM_QUOTA",
            QuotaKind::Image => "IMAGE_QUOTA",
        }
    }

    /// The metrics, sorted by name (the XML order the XSD expects).
    pub fn metrics(self) -> &'static [&'static str] {
        match self {
            QuotaKind::Datastore => &["IMAGES", "SIZE"],
            QuotaKind::Network => &["LEASES"],
            QuotaKind::Vm => &[
                "CPU",
                "MEMORY",
                "PCI_DEV",
                "PCI_NIC",
                "RUNNING_CPU",
                "RUNNING_MEMORY",
                "RUNNING_PCI_DEV",
                "RUNNING_PCI_NIC",
                "RUNNING_VMS",
                "SYSTEM_DISK_SIZE",
                "VMS",
            ],
            QuotaKind::Image => &["RVMS"],
        }
    }

    /// Entries of every kind but VM are per resource id.
    pub fn has_id(self) -> bool {
        self != QuotaKind::Vm
    }
}

/// One metric of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub limit: f64,
    pub used: f64,
}

/// One entry: the VM quota, or the quota of one datastore / network / image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuotaEntry {
    /// Resource id; `None` for the VM quota.
    pub id: Option<i64>,
    /// Metric name → limit and usage. A metric missing here has the implicit limit and no
    /// usage (so adding metrics in a later version needs no migration).
    pub metrics: BTreeMap<String, Metric>,
}

impl QuotaEntry {
    fn new(kind: QuotaKind, id: Option<i64>, implicit: f64) -> Self {
        let metrics = kind
            .metrics()
            .iter()
            .map(|m| {
                (
                    m.to_string(),
                    Metric {
                        limit: implicit,
                        used: 0.0,
                    },
                )
            })
            .collect();
        QuotaEntry { id, metrics }
    }

    pub fn limit(&self, metric: &str, implicit: f64) -> f64 {
        self.metrics.get(metric).map_or(implicit, |m| m.limit)
    }

    pub fn used(&self, metric: &str) -> f64 {
        self.metrics.get(metric).map_or(0.0, |m| m.used)
    }

    fn write_xml(&self, w: &mut XmlWriter, kind: QuotaKind, implicit: f64) {
        w.open(kind.entry_name());
        if let Some(id) = self.id {
            w.num("ID", id);
        }
        for m in kind.metrics() {
            w.text(m, &format_value(self.limit(m, implicit)));
            w.text(&format!("{m}_USED"), &format_value(self.used(m)));
        }
        w.close(kind.entry_name());
    }
}

/// The quotas of a user or group, or a set of default quotas.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quotas {
    #[serde(default)]
    pub datastore: Vec<QuotaEntry>,
    #[serde(default)]
    pub network: Vec<QuotaEntry>,
    /// At most one entry (cluster-scoped VM quotas are not supported).
    #[serde(default)]
    pub vm: Vec<QuotaEntry>,
    #[serde(default)]
    pub image: Vec<QuotaEntry>,
    /// The installation's default quotas. Only group 0 (oneadmin) carries them: its own quotas
    /// are never set nor charged, and keeping the defaults in a stored object means they are
    /// loaded with the pools and changed in the same transaction as everything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Box<DefaultQuotas>>,
}

/// DEFAULT_USER_QUOTAS and DEFAULT_GROUP_QUOTAS.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DefaultQuotas {
    pub user: Quotas,
    pub group: Quotas,
}

/// A quota check that failed: which limit, for the error message.
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaExceeded {
    pub kind: QuotaKind,
    pub id: Option<i64>,
    pub metric: &'static str,
    pub limit: f64,
}

impl std::fmt::Display for QuotaExceeded {
    /// OpenNebula's wording: `limit of 2 reached for VMS quota in VM` (+ ` with ID: 3`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "limit of {} reached for {} quota in {}",
            format_limit(self.limit),
            self.metric,
            self.kind.entry_name()
        )?;
        if let Some(id) = self.id {
            write!(f, " with ID: {id}")?;
        }
        Ok(())
    }
}

/// A quota value as OpenNebula writes it: integers without decimals, others with two.
pub fn format_value(v: f64) -> String {
    let v = v + 0.0; // -0.0 → 0.0
    if v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A limit in an error message (integers without decimals, others as they are).
fn format_limit(v: f64) -> String {
    if v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn round(v: f64) -> f64 {
    (v * PRECISION).round() / PRECISION
}

impl Quotas {
    pub fn entries(&self, kind: QuotaKind) -> &Vec<QuotaEntry> {
        match kind {
            QuotaKind::Datastore => &self.datastore,
            QuotaKind::Network => &self.network,
            QuotaKind::Vm => &self.vm,
            QuotaKind::Image => &self.image,
        }
    }

    pub fn entries_mut(&mut self, kind: QuotaKind) -> &mut Vec<QuotaEntry> {
        match kind {
            QuotaKind::Datastore => &mut self.datastore,
            QuotaKind::Network => &mut self.network,
            QuotaKind::Vm => &mut self.vm,
            QuotaKind::Image => &mut self.image,
        }
    }

    pub fn entry(&self, kind: QuotaKind, id: Option<i64>) -> Option<&QuotaEntry> {
        self.entries(kind).iter().find(|e| e.id == id)
    }

    /// Whether no section has an entry.
    pub fn is_empty(&self) -> bool {
        QuotaKind::ALL.iter().all(|k| self.entries(*k).is_empty())
    }

    /// Sets limits from a quota template (`VM = [ VMS = 2 ]`, `NETWORK = [ ID = 0, LEASES = 5 ]`):
    /// each given entry gets every limit replaced (a metric left out goes back to the implicit
    /// limit: default for user/group quotas, unlimited for default quotas); usage is kept.
    /// All or nothing: on error nothing changes.
    pub fn set(&mut self, tmpl: &Template, is_default: bool) -> Result<(), String> {
        let implicit = if is_default { UNLIMITED } else { DEFAULT };
        let mut next = self.clone();
        for attr in &tmpl.attrs {
            let Some(kind) = QuotaKind::ALL
                .into_iter()
                .find(|k| attr.name == k.entry_name())
            else {
                continue;
            };
            let AttrValue::Vector(v) = &attr.value else {
                return Err(format!(
                    "Quota {} must be a vector, e.g. {} = [ {} ]",
                    kind.entry_name(),
                    kind.entry_name(),
                    example(kind)
                ));
            };
            let (id, limits) = parse_limits(kind, v, is_default)?;
            let entries = next.entries_mut(kind);
            let entry = match entries.iter().position(|e| e.id == id) {
                Some(i) => &mut entries[i],
                None => {
                    entries.push(QuotaEntry::new(kind, id, implicit));
                    entries.last_mut().expect("just pushed")
                }
            };
            for m in kind.metrics() {
                let limit = limits.get(m).copied().unwrap_or(implicit);
                let used = entry.used(m);
                entry.metrics.insert(m.to_string(), Metric { limit, used });
            }
            next.cleanup(kind, id, implicit);
        }
        *self = next;
        Ok(())
    }

    /// Checks `deltas` (metric → amount) against the entry `id` of `kind` and adds them.
    /// Only positive amounts are checked; negative ones give back (never below zero). A limit
    /// of -1 is looked up in `defaults` (entry of the same id), absent there = unlimited.
    /// On error nothing changes.
    pub fn check_and_add(
        &mut self,
        kind: QuotaKind,
        id: Option<i64>,
        deltas: &[(&'static str, f64)],
        defaults: &Quotas,
    ) -> Result<(), QuotaExceeded> {
        if deltas.iter().all(|(_, d)| *d == 0.0) {
            return Ok(());
        }
        let entry = self.entry(kind, id);
        let default_entry = defaults.entry(kind, id);
        for (metric, delta) in deltas {
            if *delta <= 0.0 {
                continue;
            }
            let mut limit = entry.map_or(DEFAULT, |e| e.limit(metric, DEFAULT));
            if limit == DEFAULT {
                limit = default_entry.map_or(UNLIMITED, |e| e.limit(metric, UNLIMITED));
            }
            // A default of -1 cannot be set, but a stored one must not mean "limit -1".
            if limit < 0.0 {
                continue;
            }
            let used = entry.map_or(0.0, |e| e.used(metric));
            if round(used + delta) > limit + 1.0 / PRECISION {
                return Err(QuotaExceeded {
                    kind,
                    id,
                    metric,
                    limit,
                });
            }
        }
        self.add(kind, id, deltas);
        Ok(())
    }

    /// Adds `deltas` to the usage of entry `id` without checking limits (negative amounts give
    /// back; usage never goes below zero). Entries left with implicit limits and no usage are
    /// dropped, as OpenNebula does.
    pub fn add(&mut self, kind: QuotaKind, id: Option<i64>, deltas: &[(&'static str, f64)]) {
        if deltas.iter().all(|(_, d)| *d == 0.0) {
            return;
        }
        let entries = self.entries_mut(kind);
        let pos = match entries.iter().position(|e| e.id == id) {
            Some(i) => i,
            None => {
                // Nothing to give back from an entry that does not exist.
                if deltas.iter().all(|(_, d)| *d <= 0.0) {
                    return;
                }
                entries.push(QuotaEntry::new(kind, id, DEFAULT));
                entries.len() - 1
            }
        };
        let entry = &mut entries[pos];
        for (metric, delta) in deltas {
            let m = entry.metrics.entry(metric.to_string()).or_insert(Metric {
                limit: DEFAULT,
                used: 0.0,
            });
            m.used = round(m.used + delta).max(0.0);
        }
        self.cleanup(kind, id, DEFAULT);
    }

    /// Drops entry `id` if it says nothing: implicit limits and no usage.
    fn cleanup(&mut self, kind: QuotaKind, id: Option<i64>, implicit: f64) {
        let entries = self.entries_mut(kind);
        entries.retain(|e| {
            e.id != id
                || kind
                    .metrics()
                    .iter()
                    .any(|m| e.limit(m, implicit) != implicit || e.used(m) != 0.0)
        });
    }

    /// Writes the four sections (`<DATASTORE_QUOTA>...<IMAGE_QUOTA>`), entries sorted by id.
    pub fn write_sections(&self, w: &mut XmlWriter, implicit: f64) {
        for kind in QuotaKind::ALL {
            let entries = self.entries(kind);
            if entries.is_empty() {
                w.empty(kind.section_name());
                continue;
            }
            let mut sorted: Vec<&QuotaEntry> = entries.iter().collect();
            sorted.sort_by_key(|e| e.id);
            w.open(kind.section_name());
            for e in sorted {
                e.write_xml(w, kind, implicit);
            }
            w.close(kind.section_name());
        }
    }

    /// Writes the quota sections of a user or group.
    pub fn write_xml(&self, w: &mut XmlWriter) {
        self.write_sections(w, DEFAULT);
    }

    /// Writes `<QUOTAS><ID>id</ID>sections</QUOTAS>`, the pool listings' quota element.
    pub fn write_pool_xml(&self, w: &mut XmlWriter, id: i64) {
        w.open("QUOTAS").num("ID", id);
        self.write_xml(w);
        w.close("QUOTAS");
    }

    /// Writes default quotas under `root` (`DEFAULT_USER_QUOTAS` / `DEFAULT_GROUP_QUOTAS`).
    pub fn write_default_xml(&self, w: &mut XmlWriter, root: &str) {
        w.open(root);
        self.write_sections(w, UNLIMITED);
        w.close(root);
    }

    pub fn default_xml(&self, root: &str) -> String {
        let mut w = XmlWriter::new();
        self.write_default_xml(&mut w, root);
        w.finish()
    }
}

fn example(kind: QuotaKind) -> &'static str {
    match kind {
        QuotaKind::Datastore => "ID = 1, IMAGES = 10, SIZE = 10240",
        QuotaKind::Network => "ID = 0, LEASES = 5",
        QuotaKind::Vm => "VMS = 2, CPU = 4, MEMORY = 2048",
        QuotaKind::Image => "ID = 3, RVMS = 2",
    }
}

/// Reads one quota vector: its id and the limits it gives.
fn parse_limits(
    kind: QuotaKind,
    v: &Vector,
    is_default: bool,
) -> Result<(Option<i64>, BTreeMap<&'static str, f64>), String> {
    let shown = || {
        let body: Vec<String> = v.attrs.iter().map(|(n, x)| format!("{n}={x}")).collect();
        format!("{} = [ {} ]", kind.entry_name(), body.join(", "))
    };
    let bad = |why: String| format!("Negative limits or bad format in quota {}: {why}", shown());
    let mut id = None;
    let mut limits = BTreeMap::new();
    for (name, value) in &v.attrs {
        let value = value.trim();
        if let Some(m) = kind.metrics().iter().find(|m| **m == name.as_str()) {
            if value.is_empty() {
                continue;
            }
            let limit: f64 = value
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite())
                .ok_or_else(|| bad(format!("{m} must be a number, not {value:?}")))?;
            let negative_ok = if is_default {
                limit == UNLIMITED
            } else {
                limit == UNLIMITED || limit == DEFAULT
            };
            if limit < 0.0 && !negative_ok {
                let allowed = if is_default {
                    "-2 (unlimited) or a limit >= 0"
                } else {
                    "-1 (default), -2 (unlimited) or a limit >= 0"
                };
                return Err(bad(format!("{m} must be {allowed}")));
            }
            limits.insert(*m, limit);
        } else if name == "ID" && kind.has_id() {
            let parsed: i64 = value
                .parse()
                .ok()
                .filter(|x| *x >= 0)
                .ok_or_else(|| bad(format!("ID must be a resource id, not {value:?}")))?;
            id = Some(parsed);
        } else if name == "CLUSTER_IDS" && kind == QuotaKind::Vm {
            if !value.is_empty() {
                return Err(bad("cluster quotas (CLUSTER_IDS) are not supported".into()));
            }
        } else if name.ends_with("_USED") || matches!(name.as_str(), "UID" | "GID" | "ID") {
            // Usage and owner fields come back when clients send a quota they read; usage is
            // never set by hand, so they are ignored.
        } else {
            return Err(bad(format!(
                "unknown attribute {name}; {} quotas have {}",
                kind.entry_name(),
                kind.metrics().join(", ")
            )));
        }
    }
    if kind.has_id() && id.is_none() {
        return Err(bad(format!(
            "ID is missing, e.g. {} = [ {} ]",
            kind.entry_name(),
            example(kind)
        )));
    }
    Ok((id, limits))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn tmpl(s: &str) -> Template {
        Template::parse(s).unwrap()
    }

    #[test]
    fn set_creates_and_replaces_limits() {
        let mut q = Quotas::default();
        q.set(&tmpl("VM = [ VMS = 2, CPU = -2, MEMORY = 1024 ]"), false)
            .unwrap();
        let vm = q.entry(QuotaKind::Vm, None).unwrap();
        assert_eq!(vm.limit("VMS", 0.0), 2.0);
        assert_eq!(vm.limit("CPU", 0.0), UNLIMITED);
        assert_eq!(vm.limit("MEMORY", 0.0), 1024.0);
        assert_eq!(vm.limit("RUNNING_VMS", 0.0), DEFAULT);
        // A second set replaces every limit: MEMORY goes back to default.
        q.set(&tmpl("VM = [ VMS = 3 ]"), false).unwrap();
        let vm = q.entry(QuotaKind::Vm, None).unwrap();
        assert_eq!(vm.limit("VMS", 0.0), 3.0);
        assert_eq!(vm.limit("MEMORY", 0.0), DEFAULT);
        // All-default with no usage: the entry disappears.
        q.set(&tmpl("VM = [ VMS = -1 ]"), false).unwrap();
        assert!(q.vm.is_empty());
    }

    #[test]
    fn set_refuses_bad_limits_and_changes_nothing() {
        let mut q = Quotas::default();
        q.set(&tmpl("NETWORK = [ ID = 0, LEASES = 5 ]"), false)
            .unwrap();
        let before = q.clone();
        for bad in [
            "NETWORK = [ ID = 1, LEASES = -3 ]",
            "NETWORK = [ LEASES = 3 ]",
            "NETWORK = [ ID = x, LEASES = 3 ]",
            "VM = [ VMS = abc ]",
            "VM = [ VMSS = 3 ]",
            "VM = [ CLUSTER_IDS = 0, VMS = 1 ]",
            "NETWORK = [ ID = 0, LEASES = 7 ] VM = 3",
        ] {
            let e = q.set(&tmpl(bad), false).unwrap_err();
            assert!(
                e.starts_with("Negative limits or bad format in quota") || e.contains("vector"),
                "{e}"
            );
            assert_eq!(q, before, "{bad} changed the quotas");
        }
        // Defaults cannot be -1.
        let mut d = Quotas::default();
        assert!(d.set(&tmpl("VM = [ VMS = -1 ]"), true).is_err());
        d.set(&tmpl("VM = [ VMS = 5 ]"), true).unwrap();
        assert_eq!(d.vm[0].limit("CPU", 0.0), UNLIMITED);
    }

    #[test]
    fn charge_within_limit_refuse_over_limit_and_release() {
        let mut q = Quotas::default();
        let none = Quotas::default();
        q.set(&tmpl("VM = [ VMS = 2, MEMORY = 1024 ]"), false)
            .unwrap();
        let one_vm = [("VMS", 1.0), ("MEMORY", 512.0), ("CPU", 0.5)];
        q.check_and_add(QuotaKind::Vm, None, &one_vm, &none)
            .unwrap();
        q.check_and_add(QuotaKind::Vm, None, &one_vm, &none)
            .unwrap();
        let before = q.clone();
        let e = q
            .check_and_add(QuotaKind::Vm, None, &one_vm, &none)
            .unwrap_err();
        assert_eq!(e.to_string(), "limit of 2 reached for VMS quota in VM");
        assert_eq!(q, before, "nothing charged on refusal");
        let vm = q.entry(QuotaKind::Vm, None).unwrap();
        assert_eq!(vm.used("VMS"), 2.0);
        assert_eq!(vm.used("CPU"), 1.0);
        // Release twice: usage never below zero.
        let back = [("VMS", -1.0), ("MEMORY", -512.0), ("CPU", -0.5)];
        q.add(QuotaKind::Vm, None, &back);
        q.add(QuotaKind::Vm, None, &back);
        q.add(QuotaKind::Vm, None, &back);
        let vm = q.entry(QuotaKind::Vm, None).unwrap();
        assert_eq!(vm.used("VMS"), 0.0);
        assert_eq!(vm.used("MEMORY"), 0.0);
    }

    #[test]
    fn default_and_unlimited_limits() {
        let mut defaults = Quotas::default();
        defaults
            .set(
                &tmpl("VM = [ VMS = 1 ] NETWORK = [ ID = 4, LEASES = 1 ]"),
                true,
            )
            .unwrap();
        // No own quota: -1 everywhere → the defaults apply.
        let mut q = Quotas::default();
        q.check_and_add(QuotaKind::Vm, None, &[("VMS", 1.0)], &defaults)
            .unwrap();
        let e = q
            .check_and_add(QuotaKind::Vm, None, &[("VMS", 1.0)], &defaults)
            .unwrap_err();
        assert_eq!(e.limit, 1.0);
        // Network 4 limited by default, network 5 has no default → unlimited.
        q.check_and_add(QuotaKind::Network, Some(4), &[("LEASES", 1.0)], &defaults)
            .unwrap();
        let e = q
            .check_and_add(QuotaKind::Network, Some(4), &[("LEASES", 1.0)], &defaults)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "limit of 1 reached for LEASES quota in NETWORK with ID: 4"
        );
        for _ in 0..10 {
            q.check_and_add(QuotaKind::Network, Some(5), &[("LEASES", 1.0)], &defaults)
                .unwrap();
        }
        // -2 overrides a default limit.
        q.set(&tmpl("VM = [ VMS = -2 ]"), false).unwrap();
        for _ in 0..5 {
            q.check_and_add(QuotaKind::Vm, None, &[("VMS", 1.0)], &defaults)
                .unwrap();
        }
        assert_eq!(q.entry(QuotaKind::Vm, None).unwrap().used("VMS"), 6.0);
        // Limit 0 refuses any use.
        q.set(&tmpl("IMAGE = [ ID = 2, RVMS = 0 ]"), false).unwrap();
        assert!(
            q.check_and_add(QuotaKind::Image, Some(2), &[("RVMS", 1.0)], &defaults)
                .is_err()
        );
    }

    #[test]
    fn fractional_usage_does_not_drift() {
        let mut q = Quotas::default();
        q.set(&tmpl("VM = [ CPU = 0.3 ]"), false).unwrap();
        let none = Quotas::default();
        q.check_and_add(QuotaKind::Vm, None, &[("CPU", 0.1)], &none)
            .unwrap();
        q.check_and_add(QuotaKind::Vm, None, &[("CPU", 0.2)], &none)
            .unwrap();
        assert!(
            q.check_and_add(QuotaKind::Vm, None, &[("CPU", 0.1)], &none)
                .is_err()
        );
        assert_eq!(format_value(q.vm[0].used("CPU")), "0.30");
        assert_eq!(format_value(1024.0), "1024");
        assert_eq!(format_value(-0.0), "0");
        assert_eq!(format_value(-2.0), "-2");
    }

    #[test]
    fn xml_sections() {
        let mut q = Quotas::default();
        q.set(
            &tmpl("DATASTORE = [ ID = 1, SIZE = 1000 ] NETWORK = [ ID = 3, LEASES = 2 ] NETWORK = [ ID = 0, LEASES = 1 ]"),
            false,
        )
        .unwrap();
        q.add(QuotaKind::Network, Some(3), &[("LEASES", 1.0)]);
        let mut w = XmlWriter::new();
        q.write_pool_xml(&mut w, 7);
        assert_eq!(
            w.finish(),
            "<QUOTAS><ID>7</ID>\
             <DATASTORE_QUOTA><DATASTORE><ID>1</ID><IMAGES>-1</IMAGES><IMAGES_USED>0</IMAGES_USED>\
             <SIZE>1000</SIZE><SIZE_USED>0</SIZE_USED></DATASTORE></DATASTORE_QUOTA>\
             <NETWORK_QUOTA><NETWORK><ID>0</ID><LEASES>1</LEASES><LEASES_USED>0</LEASES_USED></NETWORK>\
             <NETWORK><ID>3</ID><LEASES>2</LEASES><LEASES_USED>1</LEASES_USED></NETWORK></NETWORK_QUOTA>\
             <VM_QUOTA/><IMAGE_QUOTA/></QUOTAS>"
        );
        assert_eq!(
            Quotas::default().default_xml("DEFAULT_USER_QUOTAS"),
            "<DEFAULT_USER_QUOTAS><DATASTORE_QUOTA/><NETWORK_QUOTA/><VM_QUOTA/><IMAGE_QUOTA/>\
             </DEFAULT_USER_QUOTAS>"
        );
    }
}
