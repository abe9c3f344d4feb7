//! `onegroup`: groups, their administrators and quotas.

use super::quota::{Measure, sections, vm_column};
use super::{new_template, newest_first, print_document, print_id, print_list, update_mode};
use crate::args::{ConnOpts, FormatOpts, ListOpts};
use crate::error::CliResult;
use crate::resolve::{self, Kind};
use crate::show::{kv20, section, template_str};
use crate::table::{Col, Table};
use crate::{Ctx, each};
use clap::{Parser, Subcommand};
use oca::Group;
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "onegroup", version, about = "Manages OpenNebula groups")]
#[command(
    after_help = "Group lists: an id, a name, ids and names separated by commas, \
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
    /// Creates a new group (prints `ID: N`)
    Create { name: String },
    /// Deletes the given groups
    Delete { groups: String },
    /// Updates the group template (opens $EDITOR without FILE)
    Update {
        group: String,
        file: Option<PathBuf>,
        /// Append new attributes to the current template
        #[arg(short, long)]
        append: bool,
    },
    /// Makes users administrators of the group
    Addadmin { group: String, users: String },
    /// Removes administrators of the group
    Deladmin { group: String, users: String },
    /// Sets the group's quotas (opens $EDITOR on the current ones without FILE)
    Quota {
        group: String,
        file: Option<PathBuf>,
    },
    /// Sets the default group quotas (opens $EDITOR without FILE)
    Defaultquota { file: Option<PathBuf> },
    /// Lists groups
    List {
        #[command(flatten)]
        opts: ListOpts,
    },
    /// Shows information for the given group (default: the current one)
    Show {
        group: Option<String>,
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

pub async fn run(verb: Verb, ctx: &Ctx, out: &mut dyn Write) -> CliResult<i32> {
    let c = &ctx.client;
    let one = |l: String| async move { resolve::id(c, Kind::Group, &l).await };
    match verb {
        Verb::Create { name } => {
            let id = c.group().allocate(&name).await?;
            print_id(out, id)?;
            Ok(0)
        }
        Verb::Delete { groups } => {
            let l = resolve::ids(c, Kind::Group, &groups).await?;
            Ok(each(&l, |id| async move { Ok(c.group().delete(id).await?) }).await)
        }
        Verb::Update {
            group,
            file,
            append,
        } => {
            let id = one(group).await?;
            let text = new_template(file.as_deref(), append, async {
                Ok(template_str(&c.group().info(id).await?.template, &[], true))
            })
            .await?;
            c.group().update(id, &text, update_mode(append)).await?;
            Ok(0)
        }
        Verb::Addadmin { group, users } => {
            let id = one(group).await?;
            let l = resolve::ids(c, Kind::User, &users).await?;
            Ok(each(
                &l,
                |uid| async move { Ok(c.group().addadmin(id, uid).await?) },
            )
            .await)
        }
        Verb::Deladmin { group, users } => {
            let id = one(group).await?;
            let l = resolve::ids(c, Kind::User, &users).await?;
            Ok(each(
                &l,
                |uid| async move { Ok(c.group().deladmin(id, uid).await?) },
            )
            .await)
        }
        Verb::Quota { group, file } => {
            let id = one(group).await?;
            let current = c.group().info(id).await?.quotas.to_template();
            let text = new_template(file.as_deref(), false, async move { Ok(current) }).await?;
            c.group().quota(id, &text).await?;
            Ok(0)
        }
        Verb::Defaultquota { file } => {
            let current = c.group().default_quotas().await?.to_template();
            let text = new_template(file.as_deref(), false, async move { Ok(current) }).await?;
            c.group().set_default_quotas(&text).await?;
            Ok(0)
        }
        Verb::List { opts } => {
            let table = list_table(&opts);
            print_list(out, &opts, &table, c.group().list_xml(), async {
                let mut v = c.group().list().await?;
                newest_first(&mut v);
                Ok(v)
            })
            .await
        }
        Verb::Show { group, format, .. } => {
            let id = match group {
                Some(g) => one(g).await?,
                None => -1,
            };
            if print_document(out, &format, c.group().info_xml(id)).await? {
                return Ok(0);
            }
            let g = c.group().info(id).await?;
            show(ctx, out, &g).await?;
            Ok(0)
        }
    }
}

/// `onegroup list`'s columns (OpenNebula 7's onegroup.yaml).
pub fn list_table(_opts: &ListOpts) -> Table<'_, Group> {
    let quota = |key: &'static str, m: Measure| {
        move |g: &Group| vm_column(&g.quotas, g.default_quotas.as_ref(), g.id, key, m)
    };
    Table {
        cols: vec![
            Col::new("ID", "ONE identifier for the Group", 4, |g: &Group| {
                g.id.to_string()
            })
            .adjust(),
            Col::new("NAME", "Name of the Group", 15, |g: &Group| g.name.clone())
                .left()
                .expand(),
            Col::new("USERS", "Number of Users in this group", 5, |g: &Group| {
                g.users.len().to_string()
            }),
            Col::new("VMS", "Number of VMS", 9, quota("VMS", Measure::Count)),
            Col::new(
                "MEMORY",
                "Total memory allocated to group VMs",
                15,
                quota("MEMORY", Measure::Memory),
            ),
            Col::new(
                "CPU",
                "Total CPU allocated to group VMs",
                11,
                quota("CPU", Measure::Cpu),
            ),
            Col::new(
                "PCI",
                "Total PCIs allocated to group VMs",
                9,
                quota("PCI_DEV", Measure::Count),
            ),
        ],
        default: vec!["ID", "NAME", "USERS", "VMS", "MEMORY", "CPU", "PCI"],
        stat: "STAT",
    }
}

/// `onegroup show`'s layout.
pub async fn show(ctx: &Ctx, out: &mut dyn Write, g: &Group) -> CliResult<()> {
    const W: usize = 15;
    section(out, &format!("GROUP {} INFORMATION", g.id), true)?;
    kv20(out, W, "ID", &g.id.to_string())?;
    kv20(out, W, "NAME", &g.name)?;
    writeln!(out)?;
    section(out, "GROUP TEMPLATE", false)?;
    writeln!(out, "{}", template_str(&g.template, &[], true))?;
    writeln!(out)?;
    let admins = g.admins.clone();
    Table {
        cols: vec![
            Col::new("USER ID", "", 7, |u: &i64| u.to_string()),
            Col::new("ADMIN", "", 5, move |u: &i64| {
                if admins.contains(u) { "*" } else { "" }.to_string()
            })
            .left(),
        ],
        default: vec!["USER ID", "ADMIN"],
        stat: "",
    }
    .print(&g.users, &ListOpts::default(), out)?;
    let defaults = match &g.default_quotas {
        Some(d) => Some(d.clone()),
        None => ctx.client.group().default_quotas().await.ok(),
    };
    sections(out, &g.quotas, defaults.as_ref(), g.id)?;
    Ok(())
}
