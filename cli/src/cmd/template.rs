//! `onetemplate`: VM templates.

use super::{
    filter_flag, new_template, newest_first, owner_name, parse_chmod, print_document, print_id,
    print_list, update_mode,
};
use crate::args::{ConnOpts, FormatOpts, ListOpts, LockOpts};
use crate::error::{CliError, CliResult};
use crate::fmt;
use crate::input::{self, TemplateOpts};
use crate::resolve::{self, Kind};
use crate::show::{kv20, permissions, section, template_str};
use crate::table::{Col, Table};
use crate::{Ctx, each};
use clap::{Parser, Subcommand};
use oca::{PoolRange, VmTemplate};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "onetemplate",
    version,
    about = "Manages OpenNebula VM templates"
)]
#[command(
    after_help = "Template lists: an id, a name, ids and names separated by commas, \
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
    /// Creates a new VM template from a file, standard input or options (prints `ID: N`)
    Create {
        file: Option<PathBuf>,
        #[command(flatten)]
        template: TemplateOpts,
    },
    /// Creates VMs from a template (prints `VM ID: N` for each)
    Instantiate {
        template: String,
        /// Extra template file merged into the template
        file: Option<PathBuf>,
        /// Instance multiple VMs; %i in --name is replaced by 0, 1, ...
        #[arg(short = 'm', long, value_name = "N", default_value_t = 1)]
        multiple: u32,
        /// Creates the VMs on hold instead of pending
        #[arg(long)]
        hold: bool,
        /// Creates private persistent copies of the template and its images
        #[arg(long)]
        persistent: bool,
        #[command(flatten)]
        opts: TemplateOpts,
    },
    /// Creates a copy of the template (prints `ID: N`)
    Clone {
        template: String,
        name: String,
        /// Clone the template's images too
        #[arg(long)]
        recursive: bool,
    },
    /// Deletes the given templates
    Delete {
        templates: String,
        /// Delete the templates' images too
        #[arg(long)]
        recursive: bool,
    },
    /// Updates the template (opens $EDITOR without FILE)
    Update {
        template: String,
        file: Option<PathBuf>,
        /// Append new attributes to the current template
        #[arg(short, long)]
        append: bool,
    },
    /// Renames the template
    Rename { template: String, name: String },
    /// Changes the template owner (and group)
    Chown {
        templates: String,
        user: String,
        group: Option<String>,
    },
    /// Changes the template group
    Chgrp { templates: String, group: String },
    /// Changes the template permissions (octal, e.g. 640, or u=rw,g=r)
    Chmod {
        templates: String,
        mode: String,
        /// Change the permissions of the template's images too
        #[arg(long)]
        recursive: bool,
    },
    /// Locks templates (default: --use)
    Lock {
        templates: String,
        #[command(flatten)]
        level: LockOpts,
    },
    /// Unlocks templates
    Unlock { templates: String },
    /// Lists templates (filter: a|all, m|mine, g|group, G|primary group, uid or user name)
    List {
        /// Whose: a|all, m|mine, g|group, G|primary group, a uid or a user name
        #[arg(value_name = "FILTER")]
        who: Option<String>,
        #[command(flatten)]
        opts: ListOpts,
    },
    /// Shows information for the given template
    Show {
        template: String,
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
    let ids = |l: String| async move { resolve::ids(c, Kind::Template, &l).await };
    let one = |l: String| async move { resolve::id(c, Kind::Template, &l).await };
    match verb {
        Verb::Create { file, template } => {
            let text = match input::file_or_stdin(file.as_deref())? {
                Some(_) if template.has_content() => {
                    return Err(CliError::msg(
                        "You cannot pass a template file or standard input and use template \
                         creation options.",
                    ));
                }
                Some(t) => t,
                None => template.template(true)?,
            };
            if template.dry {
                writeln!(out, "{text}")?;
                return Ok(0);
            }
            let id = c.template().allocate(&text).await?;
            print_id(out, id)?;
            Ok(0)
        }
        Verb::Instantiate {
            template,
            file,
            multiple,
            hold,
            persistent,
            opts,
        } => {
            let id = one(template).await?;
            let extra = match input::file_or_stdin(file.as_deref())? {
                Some(_) if opts.has_content() => {
                    return Err(CliError::msg(
                        "You cannot pass a template file or standard input and use template \
                         creation options.",
                    ));
                }
                Some(t) => t,
                None => opts.template(false)?,
            };
            // Several persistent copies need distinct names: add the index.
            let mut name = opts.name.clone();
            if persistent && multiple > 1 {
                match &name {
                    Some(n) if !n.contains("%i") => name = Some(format!("{n}-%i")),
                    Some(_) => {}
                    None => {
                        return Err(CliError::msg(
                            "Persistent template cannot be instantiated multiple times without \
                             including a name (use '%i' to chose where to insert the index).",
                        ));
                    }
                }
            }
            for i in 0..multiple.max(1) {
                let vm_name = name
                    .as_deref()
                    .map(|n| n.replace("%i", &i.to_string()))
                    .unwrap_or_default();
                let vm = c
                    .template()
                    .instantiate(id, &vm_name, hold, extra.trim(), persistent)
                    .await?;
                writeln!(out, "VM ID: {vm}")?;
            }
            Ok(0)
        }
        Verb::Clone {
            template,
            name,
            recursive,
        } => {
            let id = one(template).await?;
            let new = c.template().clone_template(id, &name, recursive).await?;
            print_id(out, new)?;
            Ok(0)
        }
        Verb::Delete {
            templates,
            recursive,
        } => {
            let l = ids(templates).await?;
            Ok(each(&l, |id| async move {
                Ok(c.template().delete(id, recursive).await?)
            })
            .await)
        }
        Verb::Update {
            template,
            file,
            append,
        } => {
            let id = one(template).await?;
            let text = new_template(file.as_deref(), append, async {
                Ok(template_str(
                    &c.template().info(id).await?.template,
                    &[],
                    true,
                ))
            })
            .await?;
            c.template().update(id, &text, update_mode(append)).await?;
            Ok(0)
        }
        Verb::Rename { template, name } => {
            let id = one(template).await?;
            c.template().rename(id, &name).await?;
            Ok(0)
        }
        Verb::Chown {
            templates,
            user,
            group,
        } => {
            let l = ids(templates).await?;
            let uid = resolve::id(c, Kind::User, &user).await?;
            let gid = match group {
                Some(g) => resolve::id(c, Kind::Group, &g).await?,
                None => -1,
            };
            Ok(each(&l, |id| async move {
                Ok(c.template().chown(id, uid, gid).await?)
            })
            .await)
        }
        Verb::Chgrp { templates, group } => {
            let l = ids(templates).await?;
            let gid = resolve::id(c, Kind::Group, &group).await?;
            Ok(each(&l, |id| async move {
                Ok(c.template().chown(id, -1, gid).await?)
            })
            .await)
        }
        Verb::Chmod {
            templates,
            mode,
            recursive,
        } => {
            let mode = parse_chmod(&mode)?;
            let l = ids(templates).await?;
            let mode = &mode;
            Ok(each(&l, |id| async move {
                Ok(c.template().chmod(id, mode, recursive).await?)
            })
            .await)
        }
        Verb::Lock { templates, level } => {
            let l = ids(templates).await?;
            let level = level.level();
            Ok(each(
                &l,
                |id| async move { Ok(c.template().lock(id, level).await?) },
            )
            .await)
        }
        Verb::Unlock { templates } => {
            let l = ids(templates).await?;
            Ok(each(&l, |id| async move { Ok(c.template().unlock(id).await?) }).await)
        }
        Verb::List { who, opts } => {
            let f = filter_flag(ctx, who.as_deref()).await?;
            let r = PoolRange::default();
            let table = list_table(&opts);
            print_list(out, &opts, &table, c.template().list_xml(f, r), async {
                let mut v = c.template().list(f, r).await?;
                newest_first(&mut v);
                Ok(v)
            })
            .await
        }
        Verb::Show {
            template, format, ..
        } => {
            let id = one(template).await?;
            if print_document(out, &format, c.template().info_xml(id)).await? {
                return Ok(0);
            }
            show(out, &c.template().info(id).await?)?;
            Ok(0)
        }
    }
}

/// `onetemplate list`'s columns (OpenNebula 7's onetemplate.yaml).
pub fn list_table(opts: &ListOpts) -> Table<'_, VmTemplate> {
    let numeric = opts.numeric;
    Table {
        cols: vec![
            Col::new(
                "ID",
                "ONE identifier for the Template",
                4,
                |t: &VmTemplate| t.id.to_string(),
            )
            .adjust(),
            Col::new("NAME", "Name of the Template", 15, |t: &VmTemplate| {
                t.name.clone()
            })
            .left()
            .expand(),
            Col::new(
                "USER",
                "Username of the Template owner",
                8,
                move |t: &VmTemplate| owner_name(numeric, t.owner.uid, &t.owner.uname),
            )
            .left(),
            Col::new(
                "GROUP",
                "Group of the Template",
                8,
                move |t: &VmTemplate| owner_name(numeric, t.owner.gid, &t.owner.gname),
            )
            .left(),
            Col::new(
                "REGTIME",
                "Registration time of the Template",
                15,
                |t: &VmTemplate| fmt::time(t.regtime),
            ),
        ],
        default: vec!["ID", "USER", "GROUP", "NAME", "REGTIME"],
        stat: "STAT",
    }
}

/// `onetemplate show`'s layout.
pub fn show(out: &mut dyn Write, t: &VmTemplate) -> CliResult<()> {
    const W: usize = 15;
    section(out, &format!("TEMPLATE {} INFORMATION", t.id), true)?;
    kv20(out, W, "ID", &t.id.to_string())?;
    kv20(out, W, "NAME", &t.name)?;
    kv20(out, W, "USER", &t.owner.uname)?;
    kv20(out, W, "GROUP", &t.owner.gname)?;
    kv20(out, W, "LOCK", t.lock.map_or("None", |l| l.level_name()))?;
    kv20(out, W, "REGISTER TIME", &fmt::time(t.regtime))?;
    writeln!(out)?;
    permissions(out, W, &t.permissions)?;
    writeln!(out)?;
    section(out, "TEMPLATE CONTENTS", false)?;
    writeln!(out, "{}", template_str(&t.template, &[], true))?;
    Ok(())
}
