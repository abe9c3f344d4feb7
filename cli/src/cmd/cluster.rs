//! `onecluster`: clusters and what they hold.

use super::{new_template, newest_first, print_document, print_id, print_list, update_mode};
use crate::args::{ConnOpts, FormatOpts, ListOpts};
use crate::error::CliResult;
use crate::resolve::{self, Kind};
use crate::show::{kv20, section, template_str};
use crate::table::{Col, Table, header};
use crate::{Ctx, each};
use clap::{Parser, Subcommand};
use oca::{Cluster, ClusterMember};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "onecluster", version, about = "Manages OpenNebula clusters")]
#[command(
    after_help = "Cluster lists: an id, a name, ids and names separated by commas, \
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
    /// Creates a new cluster (prints `ID: N`)
    Create { name: String },
    /// Deletes the given clusters
    Delete { clusters: String },
    /// Updates the cluster template (opens $EDITOR without FILE)
    Update {
        cluster: String,
        file: Option<PathBuf>,
        /// Append new attributes to the current template
        #[arg(short, long)]
        append: bool,
    },
    /// Renames the cluster
    Rename { cluster: String, name: String },
    /// Adds a host to the cluster
    Addhost { cluster: String, host: String },
    /// Removes a host from the cluster
    Delhost { cluster: String, host: String },
    /// Adds a datastore to the cluster
    Adddatastore { cluster: String, datastore: String },
    /// Removes a datastore from the cluster
    Deldatastore { cluster: String, datastore: String },
    /// Adds a virtual network to the cluster
    Addvnet { cluster: String, vnet: String },
    /// Removes a virtual network from the cluster
    Delvnet { cluster: String, vnet: String },
    /// Lists clusters
    List {
        #[command(flatten)]
        opts: ListOpts,
    },
    /// Shows information for the given cluster
    Show {
        cluster: String,
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

async fn member(
    ctx: &Ctx,
    cluster: &str,
    kind: Kind,
    what: ClusterMember,
    arg: &str,
    add: bool,
) -> CliResult<i32> {
    let c = &ctx.client;
    let id = resolve::id(c, Kind::Cluster, cluster).await?;
    let members = resolve::ids(c, kind, arg).await?;
    Ok(each(&members, |m| async move {
        if add {
            c.cluster().add(id, what, m).await?;
        } else {
            c.cluster().remove(id, what, m).await?;
        }
        Ok(())
    })
    .await)
}

pub async fn run(verb: Verb, ctx: &Ctx, out: &mut dyn Write) -> CliResult<i32> {
    let c = &ctx.client;
    let one = |l: String| async move { resolve::id(c, Kind::Cluster, &l).await };
    use ClusterMember as M;
    match verb {
        Verb::Create { name } => {
            let id = c.cluster().allocate(&name).await?;
            print_id(out, id)?;
            Ok(0)
        }
        Verb::Delete { clusters } => {
            let l = resolve::ids(c, Kind::Cluster, &clusters).await?;
            Ok(each(&l, |id| async move { Ok(c.cluster().delete(id).await?) }).await)
        }
        Verb::Update {
            cluster,
            file,
            append,
        } => {
            let id = one(cluster).await?;
            let text = new_template(file.as_deref(), append, async {
                Ok(template_str(
                    &c.cluster().info(id).await?.template,
                    &[],
                    true,
                ))
            })
            .await?;
            c.cluster().update(id, &text, update_mode(append)).await?;
            Ok(0)
        }
        Verb::Rename { cluster, name } => {
            let id = one(cluster).await?;
            c.cluster().rename(id, &name).await?;
            Ok(0)
        }
        Verb::Addhost { cluster, host } => {
            member(ctx, &cluster, Kind::Host, M::Host, &host, true).await
        }
        Verb::Delhost { cluster, host } => {
            member(ctx, &cluster, Kind::Host, M::Host, &host, false).await
        }
        Verb::Adddatastore { cluster, datastore } => {
            member(
                ctx,
                &cluster,
                Kind::Datastore,
                M::Datastore,
                &datastore,
                true,
            )
            .await
        }
        Verb::Deldatastore { cluster, datastore } => {
            member(
                ctx,
                &cluster,
                Kind::Datastore,
                M::Datastore,
                &datastore,
                false,
            )
            .await
        }
        Verb::Addvnet { cluster, vnet } => {
            member(ctx, &cluster, Kind::Vnet, M::Vnet, &vnet, true).await
        }
        Verb::Delvnet { cluster, vnet } => {
            member(ctx, &cluster, Kind::Vnet, M::Vnet, &vnet, false).await
        }
        Verb::List { opts } => {
            let table = list_table(&opts);
            print_list(out, &opts, &table, c.cluster().list_xml(), async {
                let mut v = c.cluster().list().await?;
                newest_first(&mut v);
                Ok(v)
            })
            .await
        }
        Verb::Show {
            cluster, format, ..
        } => {
            let id = one(cluster).await?;
            if print_document(out, &format, c.cluster().info_xml(id)).await? {
                return Ok(0);
            }
            let cl = c.cluster().info(id).await?;
            show(ctx, out, &cl).await?;
            Ok(0)
        }
    }
}

/// `onecluster list`'s columns (OpenNebula 7's onecluster.yaml).
pub fn list_table(_opts: &ListOpts) -> Table<'_, Cluster> {
    Table {
        cols: vec![
            Col::new("ID", "ONE identifier for the Cluster", 4, |c: &Cluster| {
                c.id.to_string()
            })
            .adjust(),
            Col::new("NAME", "Name of the Cluster", 15, |c: &Cluster| {
                c.name.clone()
            })
            .left()
            .expand(),
            Col::new("HOSTS", "Number of Hosts", 10, |c: &Cluster| {
                c.hosts.len().to_string()
            }),
            Col::new("VNETS", "Number of Networks", 10, |c: &Cluster| {
                c.vnets.len().to_string()
            }),
            Col::new("DATASTORES", "Number of Datastores", 10, |c: &Cluster| {
                c.datastores.len().to_string()
            }),
        ],
        default: vec!["ID", "NAME", "HOSTS", "VNETS", "DATASTORES"],
        stat: "STAT",
    }
}

/// `onecluster show`'s layout.
pub async fn show(ctx: &Ctx, out: &mut dyn Write, cl: &Cluster) -> CliResult<()> {
    const W: usize = 18;
    section(out, &format!("CLUSTER {} INFORMATION", cl.id), true)?;
    kv20(out, W, "ID", &cl.id.to_string())?;
    kv20(out, W, "NAME", &cl.name)?;
    writeln!(out)?;
    section(out, "CLUSTER RESOURCES", false)?;
    if !cl.hosts.is_empty() {
        let hosts = ctx.client.host().list().await?;
        let (mut total_cpu, mut used_cpu, mut total_ram, mut used_ram) = (0, 0, 0, 0);
        for h in hosts.iter().filter(|h| cl.hosts.contains(&h.id)) {
            total_cpu += h.share.total_cpu / 100;
            used_cpu += h.share.cpu_usage / 100;
            total_ram += h.share.total_mem / 1024 / 1024;
            used_ram += h.share.mem_usage / 1024 / 1024;
        }
        writeln!(out, "TOTAL CPUs: {total_cpu}")?;
        writeln!(out, "OCCUPIED CPUs: {used_cpu}")?;
        writeln!(out, "AVAILABLE CPUs: {}", total_cpu - used_cpu)?;
        writeln!(out)?;
        writeln!(out, "TOTAL RAM: {total_ram}")?;
        writeln!(out, "OCCUPIED RAM: {used_ram}")?;
        writeln!(out, "AVAILABLE RAM: {}", total_ram - used_ram)?;
    }
    writeln!(out)?;
    section(out, "CLUSTER TEMPLATE", false)?;
    writeln!(out, "{}", template_str(&cl.template, &[], true))?;
    for (title, ids) in [
        ("HOSTS", &cl.hosts),
        ("VNETS", &cl.vnets),
        ("DATASTORES", &cl.datastores),
    ] {
        writeln!(out)?;
        header(out, &format!("{title:<15}"), true)?;
        for id in ids {
            writeln!(out, "{id:<15}")?;
        }
    }
    Ok(())
}
