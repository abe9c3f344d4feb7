//! `oneimage`: images.

use super::{
    filter_flag, new_template, newest_first, owner_name, parse_chmod, print_document, print_id,
    print_list, size_in_mb, update_mode,
};
use crate::args::{ConnOpts, FormatOpts, ListOpts, LockOpts};
use crate::error::{CliError, CliResult};
use crate::fmt;
use crate::input;
use crate::resolve::{self, Kind};
use crate::show::{kv20, permissions, section, template_str};
use crate::table::{Col, Table};
use crate::{Ctx, each};
use clap::{Parser, Subcommand};
use oca::{Image, PoolRange};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "oneimage", version, about = "Manages OpenNebula images")]
#[command(
    after_help = "Image lists: an id, a name, ids and names separated by commas, \
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
    /// Registers a new image from a template file or options (prints `ID: N`)
    Create {
        /// Template file in OpenNebula's syntax
        file: Option<PathBuf>,
        /// Datastore id or name to store the image in
        #[arg(short, long)]
        datastore: String,
        /// Name of the new image
        #[arg(long)]
        name: Option<String>,
        /// Description of the new image
        #[arg(long)]
        description: Option<String>,
        /// Type of the new image: OS, CDROM, DATABLOCK, KERNEL, RAMDISK, CONTEXT
        #[arg(long = "type", value_name = "TYPE")]
        image_type: Option<String>,
        /// Makes the new image persistent
        #[arg(long)]
        persistent: bool,
        /// Device prefix for the disk (eg. sd, hd, xvd or vd)
        #[arg(long)]
        prefix: Option<String>,
        /// Device the disk will be attached to
        #[arg(long)]
        target: Option<String>,
        /// Path of the image file on the front-end (or an URL)
        #[arg(long, conflicts_with = "upload")]
        path: Option<String>,
        /// Local file to upload through oned's upload endpoint (streamed, with a progress
        /// bar on a terminal); the name defaults to the file's name
        #[arg(long, value_name = "LOCAL_FILE", conflicts_with_all = ["source", "file"])]
        upload: Option<PathBuf>,
        /// Source to be used (already in the datastore)
        #[arg(long)]
        source: Option<String>,
        /// Driver to use (raw, qcow2, ...)
        #[arg(long)]
        driver: Option<String>,
        /// Format of the image (raw, qcow2)
        #[arg(long)]
        format: Option<String>,
        /// Size in MB (or with G / T); required for empty datablocks
        #[arg(short, long)]
        size: Option<String>,
        /// Only print the template (with --upload: nothing is sent, PATH shows upload://TOKEN)
        #[arg(long)]
        dry: bool,
    },
    /// Deletes the given images
    Delete {
        images: String,
        /// Delete even a locked image (its files may stay in the datastore)
        #[arg(long)]
        force: bool,
    },
    /// Updates the image template (opens $EDITOR without FILE)
    Update {
        image: String,
        file: Option<PathBuf>,
        /// Append new attributes to the current template
        #[arg(short, long)]
        append: bool,
    },
    /// Renames the image
    Rename { image: String, name: String },
    /// Changes the image owner (and group)
    Chown {
        images: String,
        user: String,
        group: Option<String>,
    },
    /// Changes the image group
    Chgrp { images: String, group: String },
    /// Changes the image permissions (octal, e.g. 640, or u=rw,g=r)
    Chmod { images: String, mode: String },
    /// Locks images (default: --use)
    Lock {
        images: String,
        #[command(flatten)]
        level: LockOpts,
    },
    /// Unlocks images
    Unlock { images: String },
    /// Enables images (READY)
    Enable { images: String },
    /// Disables images: they cannot be used by new VMs
    Disable { images: String },
    /// Makes images persistent
    Persistent { images: String },
    /// Makes images non-persistent
    Nonpersistent { images: String },
    /// Changes the image type (OS, CDROM, DATABLOCK, KERNEL, RAMDISK, CONTEXT)
    Chtype { images: String, image_type: String },
    /// Creates a copy of the image (prints `ID: N`)
    Clone {
        image: String,
        name: String,
        /// Datastore id or name for the copy (default: the same)
        #[arg(short, long)]
        datastore: Option<String>,
    },
    /// Deletes an image snapshot
    #[command(name = "snapshot-delete")]
    SnapshotDelete { image: String, snapshot: i64 },
    /// Reverts the image to a snapshot
    #[command(name = "snapshot-revert")]
    SnapshotRevert { image: String, snapshot: i64 },
    /// Flattens a snapshot into the image, deleting the others
    #[command(name = "snapshot-flatten")]
    SnapshotFlatten { image: String, snapshot: i64 },
    /// Lists images (filter: a|all, m|mine, g|group, G|primary group, uid or user name)
    List {
        /// Whose: a|all, m|mine, g|group, G|primary group, a uid or a user name
        #[arg(value_name = "FILTER")]
        who: Option<String>,
        #[command(flatten)]
        opts: ListOpts,
    },
    /// Shows information for the given image
    Show {
        image: String,
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

/// Streams `local` to oned's upload endpoint and returns the PATH to register
/// (`upload://TOKEN`). On a terminal, stderr shows a progress bar.
async fn upload_file(c: &oca::Client, local: &std::path::Path) -> CliResult<String> {
    use std::io::IsTerminal;
    let total = std::fs::metadata(local)
        .map_err(|e| CliError::msg(format!("Cannot read {}: {e}", local.display())))?
        .len();
    let shown = local.display().to_string();
    let bar = std::io::stderr().is_terminal();
    let mut last = u64::MAX;
    let progress = move |done: u64| {
        let pct = (done * 100).checked_div(total).unwrap_or(100).min(100);
        if bar && pct != last {
            last = pct;
            let filled = (pct / 4) as usize;
            let _ = write!(
                std::io::stderr(),
                "\rUploading {shown} [{}{}] {pct:3}% of {}",
                "#".repeat(filled),
                " ".repeat(25 - filled),
                fmt::unit(total as f64 / 1024.0, "K", false)
            );
        }
    };
    let result = c.upload(local, progress).await;
    if bar {
        let _ = writeln!(std::io::stderr());
    }
    Ok(result?.path)
}

fn q(v: &str) -> String {
    v.replace('"', "\\\"")
}

pub async fn run(verb: Verb, ctx: &Ctx, out: &mut dyn Write) -> CliResult<i32> {
    let c = &ctx.client;
    let ids = |l: String| async move { resolve::ids(c, Kind::Image, &l).await };
    let one = |l: String| async move { resolve::id(c, Kind::Image, &l).await };
    match verb {
        Verb::Create {
            file,
            datastore,
            name,
            description,
            image_type,
            persistent,
            prefix,
            target,
            mut path,
            upload,
            source,
            driver,
            format,
            size,
            dry,
        } => {
            let ds = resolve::id(c, Kind::Datastore, &datastore).await?;
            let mut name = name;
            if let Some(local) = &upload {
                if name.is_none() {
                    name = local.file_name().map(|n| n.to_string_lossy().into_owned());
                }
                path = Some(if dry {
                    "upload://TOKEN".to_owned()
                } else {
                    upload_file(c, local).await?
                });
            }
            let text = match input::file_or_stdin(file.as_deref())? {
                Some(t) => t,
                None => {
                    let Some(name) = name else {
                        return Err(CliError::msg("Image name must be specified (--name)"));
                    };
                    let mut t = format!("NAME=\"{}\"\n", q(&name));
                    let mut add = |k: &str, v: &Option<String>| {
                        if let Some(v) = v {
                            t.push_str(&format!("{k}=\"{}\"\n", q(v)));
                        }
                    };
                    add("DESCRIPTION", &description);
                    add("TYPE", &image_type.map(|t| t.to_ascii_uppercase()));
                    add("DEV_PREFIX", &prefix);
                    add("TARGET", &target);
                    add("PATH", &path);
                    add("SOURCE", &source);
                    add("DRIVER", &driver);
                    add("FORMAT", &format);
                    if let Some(s) = size {
                        add("SIZE", &Some(size_in_mb(&s)?.to_string()));
                    }
                    if persistent {
                        t.push_str("PERSISTENT=\"YES\"\n");
                    }
                    t
                }
            };
            if dry {
                writeln!(out, "{text}")?;
                return Ok(0);
            }
            let id = c.image().allocate(&text, ds).await?;
            print_id(out, id)?;
            Ok(0)
        }
        Verb::Delete { images, force } => {
            let l = ids(images).await?;
            Ok(each(&l, |id| async move {
                if force {
                    c.image().delete_forced(id).await?;
                } else {
                    c.image().delete(id).await?;
                }
                Ok(())
            })
            .await)
        }
        Verb::Update {
            image,
            file,
            append,
        } => {
            let id = one(image).await?;
            let text = new_template(file.as_deref(), append, async {
                Ok(template_str(&c.image().info(id).await?.template, &[], true))
            })
            .await?;
            c.image().update(id, &text, update_mode(append)).await?;
            Ok(0)
        }
        Verb::Rename { image, name } => {
            let id = one(image).await?;
            c.image().rename(id, &name).await?;
            Ok(0)
        }
        Verb::Chown {
            images,
            user,
            group,
        } => {
            let l = ids(images).await?;
            let uid = resolve::id(c, Kind::User, &user).await?;
            let gid = match group {
                Some(g) => resolve::id(c, Kind::Group, &g).await?,
                None => -1,
            };
            Ok(each(
                &l,
                |id| async move { Ok(c.image().chown(id, uid, gid).await?) },
            )
            .await)
        }
        Verb::Chgrp { images, group } => {
            let l = ids(images).await?;
            let gid = resolve::id(c, Kind::Group, &group).await?;
            Ok(each(
                &l,
                |id| async move { Ok(c.image().chown(id, -1, gid).await?) },
            )
            .await)
        }
        Verb::Chmod { images, mode } => {
            let mode = parse_chmod(&mode)?;
            let l = ids(images).await?;
            let mode = &mode;
            Ok(each(&l, |id| async move { Ok(c.image().chmod(id, mode).await?) }).await)
        }
        Verb::Lock { images, level } => {
            let l = ids(images).await?;
            let level = level.level();
            Ok(each(&l, |id| async move { Ok(c.image().lock(id, level).await?) }).await)
        }
        Verb::Unlock { images } => {
            let l = ids(images).await?;
            Ok(each(&l, |id| async move { Ok(c.image().unlock(id).await?) }).await)
        }
        Verb::Enable { images } => {
            let l = ids(images).await?;
            Ok(each(
                &l,
                |id| async move { Ok(c.image().enable(id, true).await?) },
            )
            .await)
        }
        Verb::Disable { images } => {
            let l = ids(images).await?;
            Ok(each(
                &l,
                |id| async move { Ok(c.image().enable(id, false).await?) },
            )
            .await)
        }
        Verb::Persistent { images } => {
            let l = ids(images).await?;
            Ok(each(
                &l,
                |id| async move { Ok(c.image().persistent(id, true).await?) },
            )
            .await)
        }
        Verb::Nonpersistent { images } => {
            let l = ids(images).await?;
            Ok(each(&l, |id| async move {
                Ok(c.image().persistent(id, false).await?)
            })
            .await)
        }
        Verb::Chtype { images, image_type } => {
            let l = ids(images).await?;
            let t = image_type.to_ascii_uppercase();
            let t = &t;
            Ok(each(&l, |id| async move { Ok(c.image().chtype(id, t).await?) }).await)
        }
        Verb::Clone {
            image,
            name,
            datastore,
        } => {
            let id = one(image).await?;
            let ds = match datastore {
                Some(d) => resolve::id(c, Kind::Datastore, &d).await?,
                None => -1,
            };
            let new = c.image().clone_image(id, &name, ds).await?;
            print_id(out, new)?;
            Ok(0)
        }
        Verb::SnapshotDelete { image, snapshot } => {
            let id = one(image).await?;
            c.image().snapshot_delete(id, snapshot).await?;
            Ok(0)
        }
        Verb::SnapshotRevert { image, snapshot } => {
            let id = one(image).await?;
            c.image().snapshot_revert(id, snapshot).await?;
            Ok(0)
        }
        Verb::SnapshotFlatten { image, snapshot } => {
            let id = one(image).await?;
            c.image().snapshot_flatten(id, snapshot).await?;
            Ok(0)
        }
        Verb::List { who, opts } => {
            let f = filter_flag(ctx, who.as_deref()).await?;
            let table = list_table(&opts);
            let r = PoolRange::default();
            print_list(out, &opts, &table, c.image().list_xml(f, r), async {
                let mut v = c.image().list(f, r).await?;
                newest_first(&mut v);
                Ok(v)
            })
            .await
        }
        Verb::Show { image, format, .. } => {
            let id = one(image).await?;
            if print_document(out, &format, c.image().info_xml(id)).await? {
                return Ok(0);
            }
            let image = c.image().info(id).await?;
            show(ctx, out, &image).await?;
            Ok(0)
        }
    }
}

/// `oneimage list`'s columns (OpenNebula 7's oneimage.yaml).
pub fn list_table(opts: &ListOpts) -> Table<'_, Image> {
    let numeric = opts.numeric;
    let kb = opts.kilobytes;
    Table {
        cols: vec![
            Col::new("ID", "ONE identifier for the Image", 4, |i: &Image| {
                i.id.to_string()
            })
            .adjust(),
            Col::new(
                "USER",
                "Username of the Image owner",
                8,
                move |i: &Image| owner_name(numeric, i.owner.uid, &i.owner.uname),
            )
            .left(),
            Col::new("GROUP", "Group of the Image", 8, move |i: &Image| {
                owner_name(numeric, i.owner.gid, &i.owner.gname)
            })
            .left(),
            Col::new("NAME", "Name of the Image", 15, |i: &Image| i.name.clone())
                .left()
                .expand(),
            Col::new("DATASTORE", "Name of the Datastore", 10, |i: &Image| {
                i.datastore.clone()
            })
            .left(),
            Col::new("TYPE", "Type of the Image", 4, |i: &Image| {
                i.short_type().to_string()
            })
            .left(),
            Col::new(
                "REGTIME",
                "Registration time of the Image",
                15,
                |i: &Image| fmt::time(i.regtime),
            ),
            Col::new(
                "MODTIME",
                "Last modification time of the Image",
                15,
                |i: &Image| fmt::time(i.modtime),
            ),
            Col::new(
                "PERSISTENT",
                "Whether the Image is persistent or not",
                3,
                |i: &Image| fmt::yes_no(i.persistent).to_string(),
            ),
            Col::new("STAT", "State of the Image", 4, |i: &Image| {
                i.short_state().to_string()
            })
            .left(),
            Col::new(
                "RVMS",
                "Number of VMs currently running from this Image",
                4,
                |i: &Image| i.running_vms.to_string(),
            ),
            Col::new("SIZE", "Size of the image", 7, move |i: &Image| {
                fmt::unit(i.size as f64, "M", kb)
            }),
        ],
        default: vec![
            "ID",
            "USER",
            "GROUP",
            "NAME",
            "DATASTORE",
            "SIZE",
            "TYPE",
            "PERSISTENT",
            "STAT",
            "RVMS",
        ],
        stat: "STAT",
    }
}

/// `oneimage show`'s layout.
pub async fn show(ctx: &Ctx, out: &mut dyn Write, image: &Image) -> CliResult<()> {
    const W: usize = 15;
    section(out, &format!("IMAGE {} INFORMATION", image.id), true)?;
    kv20(out, W, "ID", &image.id.to_string())?;
    kv20(out, W, "NAME", &image.name)?;
    kv20(out, W, "USER", &image.owner.uname)?;
    kv20(out, W, "GROUP", &image.owner.gname)?;
    kv20(
        out,
        W,
        "LOCK",
        image.lock.map_or("None", |l| l.level_name()),
    )?;
    kv20(out, W, "DATASTORE", &image.datastore)?;
    kv20(out, W, "TYPE", &image.type_name())?;
    kv20(out, W, "REGISTER TIME", &fmt::time(image.regtime))?;
    kv20(out, W, "LAST MODIFIED", &fmt::time(image.modtime))?;
    kv20(out, W, "PERSISTENT", fmt::yes_no(image.persistent))?;
    kv20(out, W, "SOURCE", &image.source)?;
    if !image.path.is_empty() {
        kv20(out, W, "PATH", &image.path)?;
    }
    if !image.format.is_empty() {
        kv20(out, W, "FORMAT", &image.format)?;
    }
    kv20(out, W, "SIZE", &fmt::unit_i(image.size, "M"))?;
    kv20(out, W, "STATE", image.short_state())?;
    kv20(out, W, "RUNNING_VMS", &image.running_vms.to_string())?;
    writeln!(out)?;
    permissions(out, W, &image.permissions)?;
    if !image.snapshots.is_empty() {
        writeln!(out)?;
        section(out, "IMAGE SNAPSHOTS", false)?;
        Table {
            cols: vec![
                Col::new("AC", "", 2, |s: &oca::DiskSnapshot| {
                    if s.active { "=>" } else { "" }.to_string()
                })
                .left(),
                Col::new("ID", "", 3, |s: &oca::DiskSnapshot| s.id.to_string()),
                Col::new("PARENT", "", 6, |s: &oca::DiskSnapshot| {
                    s.parent.to_string()
                }),
                Col::new("DATE", "", 15, |s: &oca::DiskSnapshot| fmt::time(s.date)),
                Col::new("SIZE", "", 8, |s: &oca::DiskSnapshot| {
                    fmt::unit_i(s.size, "M")
                }),
                Col::new("NAME", "", 32, |s: &oca::DiskSnapshot| s.name.clone()).left(),
            ],
            default: vec!["AC", "ID", "PARENT", "DATE", "SIZE", "NAME"],
            stat: "",
        }
        .print(&image.snapshots, &ListOpts::default(), out)?;
    }
    writeln!(out)?;
    section(out, "IMAGE TEMPLATE", false)?;
    writeln!(out, "{}", template_str(&image.template, &[], true))?;
    if image.vms.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    section(out, "VIRTUAL MACHINES", false)?;
    writeln!(out)?;
    let mut vms = ctx.client.vm().list_ids(&image.vms, false).await?;
    newest_first(&mut vms);
    let opts = ListOpts::default();
    super::vm::list_table(&opts, HashMap::new()).print(&vms, &opts, out)?;
    Ok(())
}
