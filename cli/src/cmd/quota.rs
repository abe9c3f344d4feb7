//! Quota columns and sections shared by `oneuser` and `onegroup`.

use crate::args::ListOpts;
use crate::error::CliResult;
use crate::fmt;
use crate::show::section;
use crate::table::{Col, Table};
use oca::{Quotas, Vector};
use std::io::Write;

/// How a quota value prints.
#[derive(Clone, Copy)]
pub enum Measure {
    /// A count: `%3d / %3d`.
    Count,
    /// MB: `%6s / %6s` with units.
    Memory,
    /// Cores: `%3.1f / %3.1f`.
    Cpu,
}

/// The limit that applies: the entry's, or the default quota's for `-1` (unlimited when the
/// default is unset).
fn effective_limit(limit: Option<&str>, default: Option<&str>) -> String {
    match limit.map(str::trim) {
        Some("-1") | None => match default.map(str::trim) {
            Some(d) if !d.is_empty() && d != "-1" => d.to_string(),
            _ => "-2".into(),
        },
        Some(l) => l.to_string(),
    }
}

/// `used / limit` as OpenNebula's quota columns print it (`-` for no limit).
pub fn cell(used: Option<&str>, limit: Option<&str>, default: Option<&str>, m: Measure) -> String {
    let used = used.unwrap_or("0");
    let limit = effective_limit(limit, default);
    let unlimited = limit == "-2";
    let num = |s: &str| s.trim().parse::<f64>().unwrap_or(0.0);
    match m {
        Measure::Count => {
            if unlimited {
                format!("{:3} /   -", num(used) as i64)
            } else {
                format!("{:3} / {:3}", num(used) as i64, num(&limit) as i64)
            }
        }
        Measure::Memory => {
            let u = fmt::unit(num(used), "M", false);
            if unlimited {
                format!("{u:>6} /      -")
            } else {
                format!("{u:>6} / {:>6}", fmt::unit(num(&limit), "M", false))
            }
        }
        Measure::Cpu => {
            if unlimited {
                format!("{:3.1} /   -", num(used))
            } else {
                format!("{:3.1} / {:3.1}", num(used), num(&limit))
            }
        }
    }
}

/// The VM quota a list column shows: the global entry, else OpenNebula's implicit default
/// quota (every limit "the default") for everyone but `id` 0, else nothing (`-`).
pub fn vm_column(
    quotas: &Quotas,
    defaults: Option<&Quotas>,
    id: i64,
    key: &str,
    m: Measure,
) -> String {
    let entry = quotas.vm_global();
    if entry.is_none() && id == 0 {
        return "-".into();
    }
    let default = defaults
        .and_then(|d| d.vm_global())
        .and_then(|v| v.get(key));
    cell(
        entry.and_then(|e| e.get(&format!("{key}_USED"))),
        entry.and_then(|e| e.get(key)),
        default,
        m,
    )
}

/// The `*USAGE & QUOTAS` sections of `show`.
pub fn sections(
    out: &mut dyn Write,
    q: &Quotas,
    defaults: Option<&Quotas>,
    id: i64,
) -> CliResult<()> {
    let none = ListOpts::default();
    writeln!(out)?;
    section(out, "VMS USAGE & QUOTAS", false)?;
    writeln!(out)?;
    let mut vms: Vec<Vector> = q.vm.clone();
    if vms.is_empty() && id != 0 {
        vms.push(Vector::new());
    }
    let dvm = defaults.and_then(|d| d.vm_global()).cloned();
    let dvm = &dvm;
    let vm_col = move |key: &'static str, m: Measure| {
        move |v: &Vector| {
            cell(
                v.get(&format!("{key}_USED")),
                v.get(key),
                dvm.as_ref().and_then(|d| d.get(key)),
                m,
            )
        }
    };
    Table {
        cols: vec![
            Col::new("CLUSTERS", "", 8, |v: &Vector| {
                v.get("CLUSTER_IDS").unwrap_or("").to_string()
            }),
            Col::new("VMS", "", 9, vm_col("VMS", Measure::Count)),
            Col::new("MEMORY", "", 15, vm_col("MEMORY", Measure::Memory)),
            Col::new("CPU", "", 15, vm_col("CPU", Measure::Cpu)),
            Col::new(
                "DISK SIZE",
                "",
                15,
                vm_col("SYSTEM_DISK_SIZE", Measure::Memory),
            ),
        ],
        default: vec!["CLUSTERS", "VMS", "MEMORY", "CPU", "DISK SIZE"],
        stat: "",
    }
    .print(&vms, &none, out)?;

    let entry_table = |out: &mut dyn Write,
                       title: &str,
                       entries: &[Vector],
                       defaults: Option<&Vec<Vector>>,
                       cols: &[(&'static str, &'static str, Measure)]|
     -> CliResult<()> {
        writeln!(out)?;
        section(out, title, false)?;
        writeln!(out)?;
        let default_of = |id: Option<&str>, key: &str| -> Option<String> {
            defaults?
                .iter()
                .find(|d| d.get("ID") == id)
                .and_then(|d| d.get(key))
                .map(str::to_string)
        };
        let mut table_cols: Vec<Col<'_, Vector>> = vec![Col::new("ID", "", 12, |v: &Vector| {
            v.get("ID").unwrap_or("").to_string()
        })];
        let mut names = vec!["ID"];
        for (name, key, m) in cols {
            let (key, m) = (*key, *m);
            let default_of = &default_of;
            table_cols.push(Col::new(name, "", 20, move |v: &Vector| {
                let d = default_of(v.get("ID"), key);
                cell(v.get(&format!("{key}_USED")), v.get(key), d.as_deref(), m)
            }));
            names.push(name);
        }
        Table {
            cols: table_cols,
            default: names,
            stat: "",
        }
        .print(entries, &ListOpts::default(), out)?;
        Ok(())
    };
    entry_table(
        out,
        "DATASTORE USAGE & QUOTAS",
        &q.datastore,
        defaults.map(|d| &d.datastore),
        &[
            ("IMAGES", "IMAGES", Measure::Count),
            ("SIZE", "SIZE", Measure::Memory),
        ],
    )?;
    entry_table(
        out,
        "NETWORK USAGE & QUOTAS",
        &q.network,
        defaults.map(|d| &d.network),
        &[("LEASES", "LEASES", Measure::Count)],
    )?;
    entry_table(
        out,
        "IMAGE USAGE & QUOTAS",
        &q.image,
        defaults.map(|d| &d.image),
        &[("RUNNING", "RVMS", Measure::Count)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells() {
        assert_eq!(
            cell(Some("1"), Some("-2"), None, Measure::Count),
            "  1 /   -"
        );
        assert_eq!(
            cell(Some("1"), Some("10"), None, Measure::Count),
            "  1 /  10"
        );
        assert_eq!(
            cell(Some("1"), Some("-1"), Some("5"), Measure::Count),
            "  1 /   5"
        );
        assert_eq!(cell(None, None, None, Measure::Count), "  0 /   -");
        assert_eq!(
            cell(Some("512"), Some("2048"), None, Measure::Memory),
            "  512M /     2G"
        );
        assert_eq!(
            cell(Some("0.5"), Some("-2"), None, Measure::Cpu),
            "0.5 /   -"
        );
    }
}
