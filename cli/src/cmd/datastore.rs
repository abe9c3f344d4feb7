//! `onedatastore`: datastores, and the systemd mount unit a host needs for a shared one.

use super::{
    clusters_str, new_template, newest_first, owner_name, parse_chmod, print_document, print_id,
    print_list, update_mode,
};
use crate::args::{ConnOpts, FormatOpts, ListOpts};
use crate::error::{CliError, CliResult};
use crate::fmt;
use crate::input;
use crate::resolve::{self, Kind};
use crate::show::{kv20, permissions, section, template_str};
use crate::table::{Col, Table, header};
use crate::{Ctx, each};
use clap::{Parser, Subcommand};
use oca::Datastore;
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "onedatastore",
    version,
    about = "Manages OpenNebula datastores"
)]
#[command(
    after_help = "Datastore lists: an id, a name, ids and names separated by commas, \
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
    /// Creates a new datastore from a template file (prints `ID: N`)
    Create {
        file: Option<PathBuf>,
        /// Cluster id or name (default: the default cluster)
        #[arg(short, long)]
        cluster: Option<String>,
    },
    /// Deletes the given datastores
    Delete { datastores: String },
    /// Updates the datastore template (opens $EDITOR without FILE)
    Update {
        datastore: String,
        file: Option<PathBuf>,
        /// Append new attributes to the current template
        #[arg(short, long)]
        append: bool,
    },
    /// Renames the datastore
    Rename { datastore: String, name: String },
    /// Changes the datastore owner (and group)
    Chown {
        datastores: String,
        user: String,
        group: Option<String>,
    },
    /// Changes the datastore group
    Chgrp { datastores: String, group: String },
    /// Changes the datastore permissions (octal, e.g. 640, or u=rw,g=r)
    Chmod { datastores: String, mode: String },
    /// Enables the given system datastores
    Enable { datastores: String },
    /// Disables the given system datastores: the scheduler stops using them
    Disable { datastores: String },
    /// Prints the systemd mount unit that mounts the datastore's directory on a host
    #[command(name = "mount-unit")]
    MountUnit {
        datastore: String,
        /// What to mount, SERVER:/EXPORT for NFS
        #[arg(long, value_name = "SERVER:/EXPORT")]
        source: String,
        /// File system type
        #[arg(long = "type", default_value = "nfs", value_name = "TYPE")]
        fs_type: String,
        /// Mount options
        #[arg(long, default_value = "defaults,_netdev", value_name = "OPTIONS")]
        options: String,
    },
    /// Lists datastores
    List {
        #[command(flatten)]
        opts: ListOpts,
    },
    /// Shows information for the given datastore
    Show {
        datastore: String,
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
    let ids = |l: String| async move { resolve::ids(c, Kind::Datastore, &l).await };
    let one = |l: String| async move { resolve::id(c, Kind::Datastore, &l).await };
    match verb {
        Verb::Create { file, cluster } => {
            let Some(text) = input::file_or_stdin(file.as_deref())? else {
                return Err(CliError::msg(
                    "A template file (or standard input) is needed",
                ));
            };
            let cluster = match cluster {
                Some(cl) => resolve::id(c, Kind::Cluster, &cl).await?,
                None => -1,
            };
            let id = c.datastore().allocate(&text, cluster).await?;
            print_id(out, id)?;
            Ok(0)
        }
        Verb::Delete { datastores } => {
            let l = ids(datastores).await?;
            Ok(each(&l, |id| async move { Ok(c.datastore().delete(id).await?) }).await)
        }
        Verb::Update {
            datastore,
            file,
            append,
        } => {
            let id = one(datastore).await?;
            let text = new_template(file.as_deref(), append, async {
                Ok(template_str(
                    &c.datastore().info(id).await?.template,
                    &[],
                    true,
                ))
            })
            .await?;
            c.datastore().update(id, &text, update_mode(append)).await?;
            Ok(0)
        }
        Verb::Rename { datastore, name } => {
            let id = one(datastore).await?;
            c.datastore().rename(id, &name).await?;
            Ok(0)
        }
        Verb::Chown {
            datastores,
            user,
            group,
        } => {
            let l = ids(datastores).await?;
            let uid = resolve::id(c, Kind::User, &user).await?;
            let gid = match group {
                Some(g) => resolve::id(c, Kind::Group, &g).await?,
                None => -1,
            };
            Ok(each(&l, |id| async move {
                Ok(c.datastore().chown(id, uid, gid).await?)
            })
            .await)
        }
        Verb::Chgrp { datastores, group } => {
            let l = ids(datastores).await?;
            let gid = resolve::id(c, Kind::Group, &group).await?;
            Ok(each(&l, |id| async move {
                Ok(c.datastore().chown(id, -1, gid).await?)
            })
            .await)
        }
        Verb::Chmod { datastores, mode } => {
            let mode = parse_chmod(&mode)?;
            let l = ids(datastores).await?;
            let mode = &mode;
            Ok(each(
                &l,
                |id| async move { Ok(c.datastore().chmod(id, mode).await?) },
            )
            .await)
        }
        Verb::Enable { datastores } => {
            let l = ids(datastores).await?;
            Ok(each(
                &l,
                |id| async move { Ok(c.datastore().enable(id, true).await?) },
            )
            .await)
        }
        Verb::Disable { datastores } => {
            let l = ids(datastores).await?;
            Ok(each(&l, |id| async move {
                Ok(c.datastore().enable(id, false).await?)
            })
            .await)
        }
        Verb::MountUnit {
            datastore,
            source,
            fs_type,
            options,
        } => {
            let id = one(datastore).await?;
            let ds = c.datastore().info(id).await?;
            out.write_all(mount_unit(&ds, &source, &fs_type, &options)?.as_bytes())?;
            Ok(0)
        }
        Verb::List { opts } => {
            let table = list_table(&opts);
            print_list(out, &opts, &table, c.datastore().list_xml(), async {
                let mut v = c.datastore().list().await?;
                newest_first(&mut v);
                Ok(v)
            })
            .await
        }
        Verb::Show {
            datastore, format, ..
        } => {
            let id = one(datastore).await?;
            if print_document(out, &format, c.datastore().info_xml(id)).await? {
                return Ok(0);
            }
            show(out, &c.datastore().info(id).await?)?;
            Ok(0)
        }
    }
}

/// A path's systemd unit name, as `systemd-escape --path --suffix=mount` writes it:
/// `/var/lib/one/datastores/100` is `var-lib-one-datastores-100.mount`.
pub fn unit_name(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return "-.mount".into();
    }
    let mut out = String::new();
    // Collapse repeated slashes as systemd normalizes the path first.
    let parts: Vec<&str> = trimmed.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        for (j, b) in part.bytes().enumerate() {
            let plain = b.is_ascii_alphanumeric()
                || b == b':'
                || b == b'_'
                || (b == b'.' && !(i == 0 && j == 0));
            if plain {
                out.push(b as char);
            } else {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    out + ".mount"
}

/// The mount unit for the datastore's BASE_PATH.
pub fn mount_unit(ds: &Datastore, source: &str, fs_type: &str, options: &str) -> CliResult<String> {
    let path = ds.base_path.trim_end_matches('/');
    if !path.starts_with('/') {
        return Err(CliError::msg(format!(
            "Datastore {} has no absolute BASE_PATH ({:?})",
            ds.id, ds.base_path
        )));
    }
    if source.trim().is_empty() || source.contains(['\n', '\r']) {
        return Err(CliError::msg("--source must be SERVER:/EXPORT"));
    }
    if fs_type.starts_with("nfs") && !source.contains(":/") {
        return Err(CliError::msg(format!(
            "--source must be SERVER:/EXPORT for {fs_type}, not {source:?}"
        )));
    }
    Ok(format!(
        "# {name}: install as /etc/systemd/system/{name} on each host, then\n\
         # systemctl daemon-reload && systemctl enable --now {name}\n\
         [Unit]\n\
         Description=OpenNebula datastore {id} ({dsname}) from {source}\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Mount]\n\
         What={source}\n\
         Where={path}\n\
         Type={fs_type}\n\
         Options={options}\n\
         \n\
         [Install]\n\
         WantedBy=remote-fs.target\n",
        name = unit_name(path),
        id = ds.id,
        dsname = ds.name,
    ))
}

/// `onedatastore list`'s columns (OpenNebula 7's onedatastore.yaml).
pub fn list_table(opts: &ListOpts) -> Table<'_, Datastore> {
    let numeric = opts.numeric;
    type D = Datastore;
    let local = |d: &D| {
        d.template
            .get("SHARED")
            .is_some_and(|s| s.eq_ignore_ascii_case("NO"))
    };
    Table {
        cols: vec![
            Col::new("ID", "ONE identifier for the Datastore", 4, |d: &D| {
                d.id.to_string()
            })
            .adjust(),
            Col::new(
                "USER",
                "Username of the Datastore owner",
                8,
                move |d: &D| owner_name(numeric, d.owner.uid, &d.owner.uname),
            )
            .left(),
            Col::new("GROUP", "Group of the Datastore", 8, move |d: &D| {
                owner_name(numeric, d.owner.gid, &d.owner.gname)
            })
            .left(),
            Col::new("NAME", "Name of the Datastore", 10, |d: &D| d.name.clone())
                .left()
                .expand(),
            Col::new("SIZE", "Datastore total size", 6, move |d: &D| {
                if local(d) {
                    "-".into()
                } else {
                    fmt::unit_i(d.total_mb, "M")
                }
            }),
            Col::new("AVAIL", "Datastore free size", 3, |d: &D| {
                if d.total_mb == 0 {
                    "-".into()
                } else {
                    format!(
                        "{}%",
                        ((d.free_mb as f64 / d.total_mb as f64) * 100.0).round()
                    )
                }
            })
            .left(),
            Col::new("CLUSTERS", "Cluster IDs", 8, |d: &D| {
                clusters_str(&d.clusters)
            })
            .left(),
            Col::new("IMAGES", "Number of Images", 6, |d: &D| {
                d.images.len().to_string()
            }),
            Col::new("TYPE", "Datastore type", 4, |d: &D| {
                d.short_type().to_string()
            })
            .left(),
            Col::new("DS", "Datastore driver", 7, |d: &D| d.ds_mad.clone()).left(),
            Col::new("TM", "Transfer driver", 7, |d: &D| d.tm_mad.clone()).left(),
            Col::new("STAT", "State of the Datastore", 4, |d: &D| {
                d.short_state().to_string()
            })
            .left(),
        ],
        default: vec![
            "ID", "NAME", "SIZE", "AVAIL", "CLUSTERS", "IMAGES", "TYPE", "DS", "TM", "STAT",
        ],
        stat: "STAT",
    }
}

fn disk_type_name(t: i32) -> String {
    one_proto::state::DiskType::from_num(t.into())
        .map_or_else(|| t.to_string(), |d| d.name().to_string())
}

/// `onedatastore show`'s layout.
pub fn show(out: &mut dyn Write, d: &Datastore) -> CliResult<()> {
    const W: usize = 15;
    section(out, &format!("DATASTORE {} INFORMATION", d.id), true)?;
    kv20(out, W, "ID", &d.id.to_string())?;
    kv20(out, W, "NAME", &d.name)?;
    kv20(out, W, "USER", &d.owner.uname)?;
    kv20(out, W, "GROUP", &d.owner.gname)?;
    kv20(out, W, "CLUSTERS", &clusters_str(&d.clusters))?;
    kv20(out, W, "TYPE", d.type_name().trim_end_matches("_DS"))?;
    kv20(out, W, "DS_MAD", &d.ds_mad)?;
    kv20(out, W, "TM_MAD", &d.tm_mad)?;
    kv20(out, W, "BASE PATH", &d.base_path)?;
    kv20(out, W, "DISK_TYPE", &disk_type_name(d.disk_type))?;
    kv20(out, W, "STATE", &d.state_name())?;
    writeln!(out)?;
    section(out, "DATASTORE CAPACITY", false)?;
    let local = d
        .template
        .get("SHARED")
        .is_some_and(|s| s.eq_ignore_ascii_case("NO"));
    let size = |v: i64| {
        if local {
            "-".to_string()
        } else {
            fmt::unit_i(v, "M")
        }
    };
    kv20(out, W, "TOTAL:", &size(d.total_mb))?;
    kv20(out, W, "FREE:", &size(d.free_mb))?;
    kv20(out, W, "USED: ", &size(d.used_mb))?;
    let limit = d
        .template
        .get("LIMIT_MB")
        .and_then(|l| l.parse::<i64>().ok())
        .filter(|_| !local)
        .map_or_else(|| "-".to_string(), |l| fmt::unit_i(l, "M"));
    kv20(out, W, "LIMIT:", &limit)?;
    writeln!(out)?;
    permissions(out, W, &d.permissions)?;
    writeln!(out)?;
    section(out, "DATASTORE TEMPLATE", false)?;
    writeln!(out, "{}", template_str(&d.template, &[], true))?;
    writeln!(out)?;
    header(out, &format!("{:<15}", "IMAGES"), true)?;
    for id in &d.images {
        writeln!(out, "{id:<15}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_as_systemd_escapes_them() {
        assert_eq!(
            unit_name("/var/lib/one/datastores/100"),
            "var-lib-one-datastores-100.mount"
        );
        assert_eq!(unit_name("/var/lib/one//x/"), "var-lib-one-x.mount");
        assert_eq!(unit_name("/srv/my data"), "srv-my\\x20data.mount");
        assert_eq!(unit_name("/srv/a-b"), "srv-a\\x2db.mount");
        assert_eq!(unit_name("/.hidden/x"), "\\x2ehidden-x.mount");
        assert_eq!(unit_name("/"), "-.mount");
    }

    #[test]
    fn mount_unit_for_a_datastore() {
        let ds = Datastore {
            id: 100,
            name: "shared".into(),
            base_path: "/var/lib/one/datastores/100".into(),
            ..Datastore::default()
        };
        let unit = mount_unit(&ds, "nfs1:/export/one/100", "nfs", "defaults,_netdev").unwrap();
        assert!(
            unit.starts_with("# var-lib-one-datastores-100.mount:"),
            "{unit}"
        );
        assert!(unit.contains("\nWhat=nfs1:/export/one/100\n"));
        assert!(unit.contains("\nWhere=/var/lib/one/datastores/100\n"));
        assert!(unit.contains("\nType=nfs\n"));
        assert!(mount_unit(&ds, "nfs1", "nfs", "x").is_err());
        let relative = Datastore {
            base_path: "relative".into(),
            ..ds
        };
        assert!(mount_unit(&relative, "a:/b", "nfs", "x").is_err());
    }
}
