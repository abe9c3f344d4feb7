//! `onehost`: hosts.

use super::{new_template, newest_first, print_document, print_id, print_list, update_mode};
use crate::args::{ConnOpts, FormatOpts, ListOpts};
use crate::error::CliResult;
use crate::fmt;
use crate::resolve::{self, Kind};
use crate::show::{kv20, section, template_str};
use crate::table::{Col, Table};
use crate::{Ctx, each};
use clap::{Parser, Subcommand};
use oca::{Host, HostStatus, VmAction};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "onehost", version, about = "Manages OpenNebula hosts")]
#[command(
    after_help = "Host lists: an id, a name, ids and names separated by commas, \
    or ranges such as 1,8..15."
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnOpts,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Creates a new host (prints `ID: N`)
    Create {
        /// The host's name (how oned reaches it)
        name: String,
        /// Information (monitoring) driver: kvm, dummy, ...
        #[arg(short = 'i', long = "im", value_name = "IM_MAD")]
        im: String,
        /// Virtualization driver: kvm, dummy, ...
        #[arg(short = 'v', long = "vm", value_name = "VM_MAD")]
        vm: String,
        /// Cluster id or name (default: the default cluster)
        #[arg(short, long)]
        cluster: Option<String>,
    },
    /// Deletes the given hosts
    Delete { hosts: String },
    /// Enables the given hosts: fully operational
    Enable { hosts: String },
    /// Disables the given hosts: monitored, no scheduler deployments, manual ones allowed
    Disable { hosts: String },
    /// Sets the given hosts offline: neither monitored nor used
    Offline { hosts: String },
    /// Disables the hosts and reschedules their running VMs elsewhere
    Flush { hosts: String },
    /// Updates the host template (opens $EDITOR without FILE)
    Update {
        host: String,
        file: Option<PathBuf>,
        /// Append new attributes to the current template
        #[arg(short, long)]
        append: bool,
    },
    /// Renames the host
    Rename { host: String, name: String },
    /// Lists hosts
    List {
        #[command(flatten)]
        opts: ListOpts,
    },
    /// Shows information for the given host
    Show {
        host: String,
        #[command(flatten)]
        format: FormatOpts,
        /// Accepted for compatibility (attributes are never encrypted)
        #[arg(long)]
        decrypt: bool,
    },
}

impl crate::Command for Cli {
    fn conn(&self) -> &ConnOpts {
        &self.conn
    }

    async fn run(self, ctx: Ctx, out: &mut dyn Write) -> CliResult<i32> {
        run(self.verb, &ctx, out).await
    }
}

async fn status(ctx: &Ctx, out: &mut dyn Write, list: &str, s: HostStatus) -> CliResult<i32> {
    let ids = resolve::ids(&ctx.client, Kind::Host, list).await?;
    let c = &ctx.client;
    let code = each(&ids, |id| async move {
        c.host().status(id, s).await?;
        Ok(())
    })
    .await;
    for id in &ids {
        ctx.verbose(out, "HOST", *id, &format!("{s:?}").to_ascii_lowercase())?;
    }
    Ok(code)
}

pub async fn run(verb: Verb, ctx: &Ctx, out: &mut dyn Write) -> CliResult<i32> {
    let c = &ctx.client;
    match verb {
        Verb::Create {
            name,
            im,
            vm,
            cluster,
        } => {
            let cluster = match cluster {
                Some(cl) => resolve::id(c, Kind::Cluster, &cl).await?,
                None => -1,
            };
            let id = c.host().allocate(&name, &im, &vm, cluster).await?;
            print_id(out, id)?;
            Ok(0)
        }
        Verb::Delete { hosts } => {
            let ids = resolve::ids(c, Kind::Host, &hosts).await?;
            Ok(each(&ids, |id| async move {
                c.host().delete(id).await?;
                Ok(())
            })
            .await)
        }
        Verb::Enable { hosts } => status(ctx, out, &hosts, HostStatus::Enabled).await,
        Verb::Disable { hosts } => status(ctx, out, &hosts, HostStatus::Disabled).await,
        Verb::Offline { hosts } => status(ctx, out, &hosts, HostStatus::Offline).await,
        Verb::Flush { hosts } => {
            let ids = resolve::ids(c, Kind::Host, &hosts).await?;
            Ok(each(&ids, |id| async move {
                // Disable first so that the scheduler does not pick the host again, then
                // reschedule every VM whose current host it is.
                c.host().status(id, HostStatus::Disabled).await?;
                let host = c.host().info(id).await?;
                let vms = c.vm().list_ids(&host.vms, false).await?;
                for vm in vms {
                    if vm.last_history().is_some_and(|h| h.hid == id) {
                        c.vm().action(VmAction::Resched, vm.id).await?;
                    }
                }
                Ok(())
            })
            .await)
        }
        Verb::Update { host, file, append } => {
            let id = resolve::id(c, Kind::Host, &host).await?;
            let text = new_template(file.as_deref(), append, async {
                Ok(template_str(&c.host().info(id).await?.template, &[], true))
            })
            .await?;
            c.host().update(id, &text, update_mode(append)).await?;
            Ok(0)
        }
        Verb::Rename { host, name } => {
            let id = resolve::id(c, Kind::Host, &host).await?;
            c.host().rename(id, &name).await?;
            Ok(0)
        }
        Verb::List { opts } => {
            let table = list_table(&opts);
            print_list(out, &opts, &table, c.host().list_xml(), async {
                let mut v = c.host().list().await?;
                newest_first(&mut v);
                Ok(v)
            })
            .await
        }
        Verb::Show { host, format, .. } => {
            let id = resolve::id(c, Kind::Host, &host).await?;
            if print_document(out, &format, c.host().info_xml(id)).await? {
                return Ok(0);
            }
            let host = c.host().info(id).await?;
            show(ctx, out, &host).await?;
            Ok(0)
        }
    }
}

fn ratio(used: i64, max: i64) -> i64 {
    if max == 0 { 0 } else { used * 100 / max }
}

/// `onehost list`'s columns (OpenNebula 7's onehost.yaml: ID NAME CLUSTER TVM
/// ALLOCATED_CPU ALLOCATED_MEM STAT by default).
pub fn list_table(opts: &ListOpts) -> Table<'_, Host> {
    let kb = opts.kilobytes;
    let mem = move |v: i64| fmt::unit(v as f64, "K", kb);
    let used_cpu = |h: &Host| h.capacity("USED_CPU").map_or(0, |v| v.parse().unwrap_or(0));
    let used_mem = |h: &Host| {
        h.capacity("USED_MEMORY")
            .map_or(0, |v| v.parse().unwrap_or(0))
    };
    Table {
        cols: vec![
            Col::new("ID", "ONE identifier for Host", 4, |h: &Host| {
                h.id.to_string()
            })
            .adjust(),
            Col::new("NAME", "Name of the Host", 15, |h: &Host| h.name.clone())
                .left()
                .expand(),
            Col::new("CLUSTER", "Name of the Cluster", 10, |h: &Host| {
                if h.cluster.is_empty() {
                    "-".into()
                } else {
                    h.cluster.clone()
                }
            })
            .left(),
            Col::new(
                "TVM",
                "Total Virtual Machines allocated to the Host",
                3,
                |h: &Host| h.share.running_vms.to_string(),
            ),
            Col::new("ZVM", "Number of Virtual Machine zombies", 3, |h: &Host| {
                h.template.get("TOTAL_ZOMBIES").unwrap_or("0").to_string()
            }),
            Col::new("TCPU", "Total CPU percentage", 4, |h: &Host| {
                h.share.max_cpu.to_string()
            }),
            Col::new("FCPU", "Free CPU percentage", 4, move |h: &Host| {
                (h.share.max_cpu - used_cpu(h)).to_string()
            }),
            Col::new(
                "ACPU",
                "Available cpu percentage (not reserved by VMs)",
                4,
                |h: &Host| {
                    let max = if h.share.max_cpu == 0 {
                        100
                    } else {
                        h.share.max_cpu
                    };
                    (max - h.share.cpu_usage).to_string()
                },
            ),
            Col::new("TMEM", "Total Memory", 7, move |h: &Host| {
                mem(h.share.max_mem)
            }),
            Col::new("FMEM", "Free Memory", 7, move |h: &Host| {
                mem(h
                    .capacity("FREE_MEMORY")
                    .map_or(0, |v| v.parse().unwrap_or(0)))
            }),
            Col::new(
                "AMEM",
                "Available Memory (not reserved by VMs)",
                7,
                move |h: &Host| mem(h.share.max_mem - h.share.mem_usage),
            ),
            Col::new("ALLOCATED_CPU", "Allocated CPU", 18, |h: &Host| {
                let (max, usage) = (h.share.max_cpu, h.share.cpu_usage);
                if max == 0 && usage == 0 {
                    "-".into()
                } else if max != 0 {
                    format!("{usage} / {max} ({}%)", ratio(usage, max))
                } else {
                    format!("{usage} / -")
                }
            }),
            Col::new("REAL_CPU", "Real CPU", 18, move |h: &Host| {
                let max = h.share.max_cpu;
                if max == 0 {
                    "-".into()
                } else {
                    let used = used_cpu(h);
                    format!("{used} / {max} ({}%)", ratio(used, max))
                }
            }),
            Col::new("ALLOCATED_MEM", "Allocated MEM", 18, move |h: &Host| {
                let (max, usage) = (h.share.max_mem, h.share.mem_usage);
                if max == 0 && usage == 0 {
                    "-".into()
                } else if max != 0 {
                    format!("{} / {} ({}%)", mem(usage), mem(max), ratio(usage, max))
                } else {
                    format!("{} / -", mem(usage))
                }
            }),
            Col::new("REAL_MEM", "Real MEM", 18, move |h: &Host| {
                let max = h.share.max_mem;
                if max == 0 {
                    "-".into()
                } else {
                    let used = used_mem(h);
                    format!("{} / {} ({}%)", mem(used), mem(max), ratio(used, max))
                }
            }),
            Col::new("STAT", "Host status", 4, |h: &Host| {
                h.short_state().to_string()
            })
            .left(),
        ],
        default: vec![
            "ID",
            "NAME",
            "CLUSTER",
            "TVM",
            "ALLOCATED_CPU",
            "ALLOCATED_MEM",
            "STAT",
        ],
        stat: "STAT",
    }
}

/// `onehost show`'s layout.
pub async fn show(ctx: &Ctx, out: &mut dyn Write, host: &Host) -> CliResult<()> {
    const W: usize = 22;
    let s = &host.share;
    section(out, &format!("HOST {} INFORMATION", host.id), true)?;
    kv20(out, W, "ID", &host.id.to_string())?;
    kv20(out, W, "NAME", &host.name)?;
    kv20(
        out,
        W,
        "CLUSTER",
        if host.cluster.is_empty() {
            "-"
        } else {
            &host.cluster
        },
    )?;
    kv20(out, W, "STATE", &host.state_name())?;
    kv20(out, W, "IM_MAD", &host.im_mad)?;
    kv20(out, W, "VM_MAD", &host.vm_mad)?;
    kv20(
        out,
        W,
        "LAST MONITORING TIME",
        &fmt::time(host.last_monitored()),
    )?;
    writeln!(out)?;
    section(out, "HOST SHARES", false)?;
    kv20(out, W, "RUNNING VMS", &s.running_vms.to_string())?;
    section(out, "MEMORY", false)?;
    let k = |v: i64| fmt::unit_i(v, "K");
    let cap = |n: &str| host.capacity(n).map_or(0, |v| v.parse().unwrap_or(0));
    kv20(out, W, "  TOTAL", &k(s.total_mem))?;
    kv20(out, W, "  TOTAL +/- RESERVED", &k(s.max_mem))?;
    kv20(out, W, "  USED (REAL)", &k(cap("USED_MEMORY")))?;
    kv20(out, W, "  USED (ALLOCATED)", &k(s.mem_usage))?;
    section(out, "CPU", false)?;
    kv20(out, W, "  TOTAL", &s.total_cpu.to_string())?;
    kv20(out, W, "  TOTAL +/- RESERVED", &s.max_cpu.to_string())?;
    kv20(
        out,
        W,
        "  USED (REAL)",
        host.capacity("USED_CPU").unwrap_or(""),
    )?;
    kv20(out, W, "  USED (ALLOCATED)", &s.cpu_usage.to_string())?;
    writeln!(out)?;
    for ds in &s.datastores {
        section(
            out,
            &format!("LOCAL SYSTEM DATASTORE #{} CAPACITY", ds.id),
            false,
        )?;
        kv20(out, W, "TOTAL:", &fmt::unit_i(ds.total_mb, "M"))?;
        kv20(out, W, "USED: ", &fmt::unit_i(ds.used_mb, "M"))?;
        kv20(out, W, "FREE:", &fmt::unit_i(ds.free_mb, "M"))?;
        writeln!(out)?;
    }
    section(out, "MONITORING INFORMATION", false)?;
    writeln!(
        out,
        "{}",
        template_str(&host.template, &["VM", "TEMPLATE_WILDS"], true)
    )?;
    writeln!(out)?;
    section(out, "WILD VIRTUAL MACHINES", false)?;
    writeln!(out)?;
    crate::table::header(
        out,
        &format!(
            "{:<30} {:>36} {:>4} {:>10}",
            "NAME", "DEPLOY_ID", "CPU", "MEMORY"
        ),
        true,
    )?;
    for wild in host.template.vectors("VM") {
        if wild.get("ID").is_some_and(|id| id != "-1") {
            continue;
        }
        let name: String = wild.get("VM_NAME").unwrap_or("").chars().take(30).collect();
        writeln!(
            out,
            "{:<30} {:>36} {:>4} {:>10}",
            name,
            wild.get("DEPLOY_ID").unwrap_or(""),
            "-",
            "-"
        )?;
    }
    writeln!(out)?;
    section(out, "VIRTUAL MACHINES", false)?;
    writeln!(out)?;
    let mut vms = ctx.client.vm().list_ids(&host.vms, false).await?;
    vms.retain(|v| v.host() == Some(host.name.as_str()));
    newest_first(&mut vms);
    let opts = ListOpts::default();
    super::vm::list_table(&opts, HashMap::new()).print(&vms, &opts, out)?;
    Ok(())
}
