//! `onesecgroup`: security groups (their RULE vectors, and taking them to the VMs using them
//! again with `commit`).

use super::{
    filter_flag, new_template, newest_first, owner_name, parse_chmod, print_document, print_id,
    print_list, update_mode,
};
use crate::args::{ConnOpts, FormatOpts, ListOpts};
use crate::error::{CliError, CliResult};
use crate::input;
use crate::resolve::{self, Kind};
use crate::show::{kv20, permissions, section, template_str};
use crate::table::{Col, Table};
use crate::{Ctx, each};
use clap::{Parser, Subcommand};
use oca::{PoolRange, SecurityGroup, Vector};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "onesecgroup",
    version,
    about = "Manages OpenNebula security groups"
)]
#[command(
    after_help = "Security group lists: an id, a name, ids and names separated by commas, \
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
    /// Creates a new security group from a template file (prints `ID: N`)
    Create {
        /// Template file in OpenNebula's syntax (NAME, DESCRIPTION, RULE=[...]); standard
        /// input without it
        file: Option<PathBuf>,
    },
    /// Creates a copy of the security group (prints `ID: N`)
    Clone { secgroup: String, name: String },
    /// Deletes the given security groups
    Delete { secgroups: String },
    /// Updates the security group template (opens $EDITOR without FILE); the new rules
    /// reach the VMs with `commit`
    Update {
        secgroup: String,
        file: Option<PathBuf>,
        /// Append new attributes to the current template
        #[arg(short, long)]
        append: bool,
    },
    /// Renames the security group
    Rename { secgroup: String, name: String },
    /// Changes the security group owner (and group)
    Chown {
        secgroups: String,
        user: String,
        group: Option<String>,
    },
    /// Changes the security group group
    Chgrp { secgroups: String, group: String },
    /// Changes the security group permissions (octal, e.g. 640, or u=rw,g=r)
    Chmod { secgroups: String, mode: String },
    /// Takes the security group's rules to the VMs using it again
    Commit {
        secgroup: String,
        /// Only the VMs whose update failed or is outdated (retries an update, or restarts
        /// one that oned stopped)
        #[arg(short, long)]
        recover: bool,
    },
    /// Lists security groups (filter: a|all, m|mine, g|group, G|primary group, uid or user
    /// name)
    List {
        /// Whose: a|all, m|mine, g|group, G|primary group, a uid or a user name
        #[arg(value_name = "FILTER")]
        who: Option<String>,
        #[command(flatten)]
        opts: ListOpts,
    },
    /// Shows information for the given security group
    Show {
        secgroup: String,
        #[command(flatten)]
        format: FormatOpts,
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
    let ids = |l: String| async move { resolve::ids(c, Kind::SecGroup, &l).await };
    let one = |l: String| async move { resolve::id(c, Kind::SecGroup, &l).await };
    match verb {
        Verb::Create { file } => {
            let Some(text) = input::file_or_stdin(file.as_deref())? else {
                return Err(CliError::msg(
                    "A template file (or standard input) is needed",
                ));
            };
            let id = c.secgroup().allocate(&text).await?;
            print_id(out, id)?;
            Ok(0)
        }
        Verb::Clone { secgroup, name } => {
            let id = one(secgroup).await?;
            let new = c.secgroup().clone_secgroup(id, &name).await?;
            print_id(out, new)?;
            Ok(0)
        }
        Verb::Delete { secgroups } => {
            let l = ids(secgroups).await?;
            Ok(each(&l, |id| async move { Ok(c.secgroup().delete(id).await?) }).await)
        }
        Verb::Update {
            secgroup,
            file,
            append,
        } => {
            let id = one(secgroup).await?;
            let text = new_template(file.as_deref(), append, async {
                Ok(template_str(
                    &c.secgroup().info(id).await?.template,
                    &[],
                    true,
                ))
            })
            .await?;
            c.secgroup().update(id, &text, update_mode(append)).await?;
            Ok(0)
        }
        Verb::Rename { secgroup, name } => {
            let id = one(secgroup).await?;
            c.secgroup().rename(id, &name).await?;
            Ok(0)
        }
        Verb::Chown {
            secgroups,
            user,
            group,
        } => {
            let l = ids(secgroups).await?;
            let uid = resolve::id(c, Kind::User, &user).await?;
            let gid = match group {
                Some(g) => resolve::id(c, Kind::Group, &g).await?,
                None => -1,
            };
            Ok(each(&l, |id| async move {
                Ok(c.secgroup().chown(id, uid, gid).await?)
            })
            .await)
        }
        Verb::Chgrp { secgroups, group } => {
            let l = ids(secgroups).await?;
            let gid = resolve::id(c, Kind::Group, &group).await?;
            Ok(each(&l, |id| async move {
                Ok(c.secgroup().chown(id, -1, gid).await?)
            })
            .await)
        }
        Verb::Chmod { secgroups, mode } => {
            let mode = parse_chmod(&mode)?;
            let l = ids(secgroups).await?;
            let mode = &mode;
            Ok(each(
                &l,
                |id| async move { Ok(c.secgroup().chmod(id, mode).await?) },
            )
            .await)
        }
        Verb::Commit { secgroup, recover } => {
            let id = one(secgroup).await?;
            c.secgroup().commit(id, recover).await?;
            Ok(0)
        }
        Verb::List { who, opts } => {
            let f = filter_flag(ctx, who.as_deref()).await?;
            let table = list_table(&opts);
            let r = PoolRange::default();
            print_list(out, &opts, &table, c.secgroup().list_xml(f, r), async {
                let mut v = c.secgroup().list(f, r).await?;
                newest_first(&mut v);
                Ok(v)
            })
            .await
        }
        Verb::Show { secgroup, format } => {
            let id = one(secgroup).await?;
            if print_document(out, &format, c.secgroup().info_xml(id)).await? {
                return Ok(0);
            }
            show(out, &c.secgroup().info(id).await?)?;
            Ok(0)
        }
    }
}

/// `onesecgroup list`'s columns (OpenNebula's onesecgroup.yaml).
pub fn list_table(opts: &ListOpts) -> Table<'_, SecurityGroup> {
    let numeric = opts.numeric;
    Table {
        cols: vec![
            Col::new(
                "ID",
                "ONE identifier for the Security Group",
                4,
                |s: &SecurityGroup| s.id.to_string(),
            )
            .adjust(),
            Col::new(
                "NAME",
                "Name of the Security Group",
                20,
                |s: &SecurityGroup| s.name.clone(),
            )
            .left()
            .expand(),
            Col::new(
                "USER",
                "Username of the Security Group owner",
                15,
                move |s: &SecurityGroup| owner_name(numeric, s.owner.uid, &s.owner.uname),
            )
            .left(),
            Col::new(
                "GROUP",
                "Group of the Security Group",
                15,
                move |s: &SecurityGroup| owner_name(numeric, s.owner.gid, &s.owner.gname),
            )
            .left(),
            Col::new(
                "UPDATED",
                "Number of VMs with updated rules",
                8,
                |s: &SecurityGroup| s.updated_vms.len().to_string(),
            ),
            Col::new(
                "OUTDATED",
                "Number of VMs with outdated rules",
                8,
                |s: &SecurityGroup| s.outdated_vms.len().to_string(),
            ),
            Col::new(
                "ERROR",
                "Number of VMs that failed to update rules",
                8,
                |s: &SecurityGroup| s.error_vms.len().to_string(),
            ),
        ],
        default: vec![
            "ID", "USER", "GROUP", "NAME", "UPDATED", "OUTDATED", "ERROR",
        ],
        stat: "STAT",
    }
}

fn joined(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// The NETWORK column of a rule: `VNet N`, the address range (`Start: IP, Size: N`), or
/// `Any`.
fn rule_network(r: &Vector) -> String {
    let get = |k: &str| r.get(k).filter(|v| !v.is_empty());
    let mut net = String::new();
    if let Some(id) = get("NETWORK_ID") {
        net.push_str(&format!("VNet {id}"));
    }
    if let Some(size) = get("SIZE") {
        if !net.is_empty() {
            net.push_str(": ");
        }
        if let Some(start) = get("IP").or_else(|| get("MAC")) {
            net.push_str(&format!("Start: {start}, "));
        }
        net.push_str(&format!("Size: {size}"));
    }
    if net.is_empty() {
        net.push_str("Any");
    }
    net
}

/// `onesecgroup show`'s layout.
pub fn show(out: &mut dyn Write, sg: &SecurityGroup) -> CliResult<()> {
    const W: usize = 15;
    section(out, &format!("SECURITY GROUP {} INFORMATION", sg.id), true)?;
    kv20(out, W, "ID", &sg.id.to_string())?;
    kv20(out, W, "NAME", &sg.name)?;
    kv20(out, W, "USER", &sg.owner.uname)?;
    kv20(out, W, "GROUP", &sg.owner.gname)?;
    permissions(out, W, &sg.permissions)?;
    writeln!(out)?;
    section(out, "VIRTUAL MACHINES", false)?;
    kv20(out, W, "UPDATED", &joined(&sg.updated_vms))?;
    kv20(out, W, "OUTDATED", &joined(&sg.outdated_vms))?;
    kv20(out, W, "ERROR", &joined(&sg.error_vms))?;
    writeln!(out)?;
    section(out, "RULES", false)?;
    let rules: Vec<Vector> = sg.rules().cloned().collect();
    let field = |k: &'static str| move |r: &Vector| r.get(k).unwrap_or_default().to_owned();
    Table {
        cols: vec![
            Col::new("TYPE", "", 8, field("RULE_TYPE")).left(),
            Col::new("PROTOCOL", "", 8, field("PROTOCOL")).left(),
            Col::new("ICMP_TYPE", "", 9, field("ICMP_TYPE")).left(),
            Col::new("ICMVP6_TYPE", "", 11, field("ICMPV6_TYPE")).left(),
            Col::new("NETWORK", "", 35, rule_network).left().adjust(),
            Col::new("RANGE", "", 16, field("RANGE")).left().adjust(),
        ],
        default: vec![
            "TYPE",
            "PROTOCOL",
            "ICMP_TYPE",
            "ICMVP6_TYPE",
            "NETWORK",
            "RANGE",
        ],
        stat: "",
    }
    .print(&rules, &ListOpts::default(), out)?;
    writeln!(out)?;
    section(out, "TEMPLATE CONTENTS", false)?;
    writeln!(out, "{}", template_str(&sg.template, &["RULE"], true))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pairs: &[(&str, &str)]) -> Vector {
        let mut v = Vector::default();
        for (k, val) in pairs {
            v.set(k, *val);
        }
        v
    }

    #[test]
    fn rule_networks_read_as_opennebula_prints_them() {
        assert_eq!(rule_network(&rule(&[("PROTOCOL", "TCP")])), "Any");
        assert_eq!(rule_network(&rule(&[("NETWORK_ID", "3")])), "VNet 3");
        assert_eq!(
            rule_network(&rule(&[("IP", "10.0.0.1"), ("SIZE", "8")])),
            "Start: 10.0.0.1, Size: 8"
        );
        assert_eq!(
            rule_network(&rule(&[
                ("NETWORK_ID", "3"),
                ("IP", "10.0.0.1"),
                ("SIZE", "8")
            ])),
            "VNet 3: Start: 10.0.0.1, Size: 8"
        );
    }
}
