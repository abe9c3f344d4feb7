//! `onevm`: virtual machines.

use super::{
    filter_flag, new_template, newest_first, owner_name, parse_chmod, print_document, print_id,
    print_list, size_in_mb, update_mode,
};
use crate::args::{ConnOpts, FormatOpts, ListOpts, LockOpts};
use crate::error::{CliError, CliResult};
use crate::fmt;
use crate::input::{self, TemplateOpts};
use crate::resolve::{self, Kind};
use crate::show::{kv, section, template_str};
use crate::table::{Col, Table};
use crate::{Ctx, each};
use clap::{Parser, Subcommand};
use oca::{MigrationType, RecoverOp, Vector, Vm, VmAction, VmQuery, VmStateFilter};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

/// Manages OpenNebula virtual machines.
#[derive(Parser, Debug)]
#[command(name = "onevm", version, about = "Manages OpenNebula virtual machines")]
#[command(
    after_help = "VM lists: an id, a name, ids and names separated by commas, \
    or ranges such as 1,8..15."
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnOpts,
    #[command(subcommand)]
    pub verb: Verb,
}

/// The VMs a verb acts on: `ID`, `NAME`, `1,2,5`, `10..20`, `web-1,web-2`.
type VmList = String;

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Creates a new VM from a template file, standard input or options (prints `ID: N`)
    Create {
        /// Template file in OpenNebula's syntax
        file: Option<PathBuf>,
        /// Instance multiple VMs
        #[arg(short = 'm', long, value_name = "N", default_value_t = 1)]
        multiple: u32,
        /// Creates the VM on hold instead of pending
        #[arg(long)]
        hold: bool,
        #[command(flatten)]
        template: TemplateOpts,
    },
    /// Updates the user template (opens $EDITOR without FILE)
    Update {
        vm: String,
        file: Option<PathBuf>,
        /// Append new attributes to the current template
        #[arg(short, long)]
        append: bool,
    },
    /// Sets the VM on hold: it will not be scheduled (States: PENDING)
    Hold { vms: VmList },
    /// Releases a VM on hold (States: HOLD)
    Release { vms: VmList },
    /// Terminates the VM: its life cycle ends (--hard: destroys it at once)
    Terminate {
        vms: VmList,
        /// Does not communicate with the guest OS
        #[arg(long)]
        hard: bool,
    },
    /// Shuts down the VM and keeps its disks on the system datastore (States: RUNNING, POWEROFF)
    Undeploy {
        vms: VmList,
        /// Does not communicate with the guest OS
        #[arg(long)]
        hard: bool,
    },
    /// Powers off the VM; its disks stay on the host (States: RUNNING)
    Poweroff {
        vms: VmList,
        /// Does not communicate with the guest OS
        #[arg(long)]
        hard: bool,
    },
    /// Reboots the VM (--hard: resets it) (States: RUNNING)
    Reboot {
        vms: VmList,
        /// Resets the VM instead of asking the guest
        #[arg(long)]
        hard: bool,
    },
    /// Deploys the VM on a host, bypassing the scheduler (States: PENDING, HOLD, STOPPED, UNDEPLOYED)
    Deploy {
        vms: VmList,
        /// Host id or name
        host: String,
        /// System datastore id or name
        datastore: Option<String>,
        /// Enforce that the host capacity is not exceeded
        #[arg(short, long)]
        enforce: bool,
    },
    /// Migrates the VM to another host (--live: without downtime) (States: RUNNING, POWEROFF, ...)
    Migrate {
        vms: VmList,
        /// Host id or name
        host: String,
        /// System datastore id or name
        datastore: Option<String>,
        /// Do the migration with the VM running
        #[arg(long)]
        live: bool,
        /// Enforce that the host capacity is not exceeded
        #[arg(short, long)]
        enforce: bool,
        /// Do the migration by powering off the VM
        #[arg(long)]
        poff: bool,
        /// Do the migration by powering off the VM hard
        #[arg(long = "poff-hard")]
        poff_hard: bool,
    },
    /// Saves a running VM and moves its files back to the system datastore (States: RUNNING)
    Stop { vms: VmList },
    /// Saves a running VM; its files stay on the host (States: RUNNING)
    Suspend { vms: VmList },
    /// Resumes a stopped, suspended, undeployed or powered off VM
    Resume { vms: VmList },
    /// Recovers a VM stuck in a transition or failure
    #[command(group = clap::ArgGroup::new("result").required(true))]
    Recover {
        vms: VmList,
        /// Recover the VM by succeeding the pending action
        #[arg(long, group = "result")]
        success: bool,
        /// Recover the VM by failing the pending action
        #[arg(long, group = "result")]
        failure: bool,
        /// Recover the VM by retrying the last failed action
        #[arg(long, group = "result")]
        retry: bool,
        /// No recovery possible: delete the VM
        #[arg(long, group = "result")]
        delete: bool,
        /// No recovery possible: delete and recreate the VM (back to PENDING)
        #[arg(long, group = "result")]
        recreate: bool,
        /// Delete the VM from the database only
        #[arg(long = "delete-db", group = "result")]
        delete_db: bool,
    },
    /// Attaches a disk to a VM (States: RUNNING, POWEROFF)
    #[command(name = "disk-attach")]
    DiskAttach {
        vm: String,
        /// Template file with the DISK
        #[arg(short, long, value_name = "FILE", conflicts_with = "image")]
        file: Option<PathBuf>,
        /// Image id or name
        #[arg(short, long, value_name = "IMAGE")]
        image: Option<String>,
        /// Device to map the disk to
        #[arg(short, long)]
        target: Option<String>,
        /// Hypervisor cache mode: default, none, writethrough, writeback, directsync, unsafe
        #[arg(long)]
        cache: Option<String>,
        /// Hypervisor discard mode: ignore, unmap
        #[arg(long)]
        discard: Option<String>,
        /// Device prefix for the disk (eg. sd, hd, xvd or vd)
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Detaches a disk from a VM (States: RUNNING, POWEROFF)
    #[command(name = "disk-detach")]
    DiskDetach { vm: String, disk_id: i64 },
    /// Attaches a NIC to a VM (States: RUNNING, POWEROFF)
    #[command(name = "nic-attach")]
    NicAttach {
        vm: String,
        /// Template file with the NIC
        #[arg(short, long, value_name = "FILE", conflicts_with = "network")]
        file: Option<PathBuf>,
        /// Virtual network id or name
        #[arg(short, long, value_name = "NETWORK")]
        network: Option<String>,
        /// IP address for the new NIC
        #[arg(short, long)]
        ip: Option<String>,
    },
    /// Detaches a NIC from a VM (States: RUNNING, POWEROFF)
    #[command(name = "nic-detach")]
    NicDetach { vm: String, nic_id: i64 },
    /// Changes the VM group
    Chgrp { vms: VmList, group: String },
    /// Changes the VM owner (and group)
    Chown {
        vms: VmList,
        user: String,
        group: Option<String>,
    },
    /// Changes the VM permissions (octal, e.g. 640, or u=rw,g=r)
    Chmod { vms: VmList, mode: String },
    /// Sets the reschedule flag: the scheduler will migrate the VM
    Resched { vms: VmList },
    /// Clears the reschedule flag
    Unresched { vms: VmList },
    /// Renames the VM
    Rename { vm: String, name: String },
    /// Creates a system snapshot of the VM (States: RUNNING)
    #[command(name = "snapshot-create")]
    SnapshotCreate { vms: VmList, name: Option<String> },
    /// Reverts a VM to a system snapshot
    #[command(name = "snapshot-revert")]
    SnapshotRevert { vm: String, snapshot: String },
    /// Deletes a system snapshot of a VM
    #[command(name = "snapshot-delete")]
    SnapshotDelete { vm: String, snapshot: String },
    /// Takes a snapshot of a disk (States: RUNNING, POWEROFF, SUSPENDED)
    #[command(name = "disk-snapshot-create")]
    DiskSnapshotCreate {
        vm: String,
        disk_id: i64,
        name: String,
    },
    /// Reverts a disk to a snapshot (States: POWEROFF, SUSPENDED)
    #[command(name = "disk-snapshot-revert")]
    DiskSnapshotRevert {
        vm: String,
        disk_id: i64,
        snapshot: String,
    },
    /// Deletes a disk snapshot (States: RUNNING, POWEROFF, SUSPENDED)
    #[command(name = "disk-snapshot-delete")]
    DiskSnapshotDelete {
        vm: String,
        disk_id: i64,
        snapshot: String,
    },
    /// Renames a disk snapshot
    #[command(name = "disk-snapshot-rename")]
    DiskSnapshotRename {
        vm: String,
        disk_id: i64,
        snapshot: i64,
        name: String,
    },
    /// Saves a disk as a new image (prints `Image ID: N`)
    #[command(name = "disk-saveas")]
    DiskSaveas {
        vm: String,
        disk_id: i64,
        image_name: String,
        /// Type of the new image
        #[arg(short = 't', long = "type")]
        image_type: Option<String>,
        /// Snapshot to save (id or name; default: the current disk)
        #[arg(short, long)]
        snapshot: Option<String>,
    },
    /// Resizes a disk; the new size (MB, or with G / T) must be larger (States: RUNNING, POWEROFF)
    #[command(name = "disk-resize")]
    DiskResize {
        vm: String,
        disk_id: i64,
        size: String,
    },
    /// Changes the capacity (CPU, VCPU, MEMORY) of a VM
    Resize {
        vm: String,
        /// CPU percentage reserved for the VM (1=100% one CPU)
        #[arg(long)]
        cpu: Option<f64>,
        /// Number of virtualized CPUs
        #[arg(long)]
        vcpu: Option<u32>,
        /// Memory in MB; add 'g' for GB
        #[arg(long)]
        memory: Option<String>,
        /// Enforce that the host capacity is not exceeded
        #[arg(short, long)]
        enforce: bool,
        /// Template file with the new capacity
        #[arg(short, long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Updates the VM configuration: OS, FEATURES, INPUT, GRAPHICS, RAW, CONTEXT, ...
    Updateconf {
        vm: String,
        file: Option<PathBuf>,
        /// Append new attributes to the current configuration
        #[arg(short, long)]
        append: bool,
    },
    /// Locks a VM to prevent actions (default: --use)
    Lock {
        vms: VmList,
        #[command(flatten)]
        level: LockOpts,
    },
    /// Unlocks a VM
    Unlock { vms: VmList },
    /// Lists VMs (filter: a|all, m|mine, g|group, G|primary group, uid or user name)
    List {
        /// Whose: a|all, m|mine, g|group, G|primary group, a uid or a user name
        #[arg(value_name = "FILTER")]
        who: Option<String>,
        #[command(flatten)]
        opts: ListOpts,
        /// With -x/-j/-y: the full VM bodies (one.vmpool.infoextended)
        #[arg(long)]
        extended: bool,
        /// Query in PATH=VALUE form, e.g. "VM.NAME=abc&VM.TEMPLATE.DISK[*].IMAGE=db1"
        #[arg(long)]
        search: Option<String>,
    },
    /// Shows information for the given VM
    Show {
        vm: String,
        #[command(flatten)]
        format: FormatOpts,
        /// Show all template data
        #[arg(long)]
        all: bool,
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

async fn vms(ctx: &Ctx, arg: &str) -> CliResult<Vec<i64>> {
    resolve::ids(&ctx.client, Kind::Vm, arg).await
}

async fn vm(ctx: &Ctx, arg: &str) -> CliResult<i64> {
    resolve::id(&ctx.client, Kind::Vm, arg).await
}

/// Runs an action on every VM of a list.
async fn act(ctx: &Ctx, out: &mut dyn Write, list: &str, action: VmAction) -> CliResult<i32> {
    let ids = vms(ctx, list).await?;
    let c = &ctx.client;
    let mut messages = Vec::new();
    let code = each(&ids, |id| {
        messages.push(id);
        async move { c.vm().action(action, id).await.map_err(CliError::from) }
    })
    .await;
    for id in messages {
        ctx.verbose(out, "VM", id, action.name())?;
    }
    Ok(code)
}

pub async fn run(verb: Verb, ctx: &Ctx, out: &mut dyn Write) -> CliResult<i32> {
    let c = &ctx.client;
    match verb {
        Verb::Create {
            file,
            multiple,
            hold,
            template,
        } => {
            let from_input = input::file_or_stdin(file.as_deref())?;
            let text = match from_input {
                Some(t) if template.has_content() => {
                    let _ = t;
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
            for _ in 0..multiple.max(1) {
                let id = c.vm().allocate(&text, hold).await?;
                print_id(out, id)?;
            }
            Ok(0)
        }
        Verb::Update {
            vm: v,
            file,
            append,
        } => {
            let id = vm(ctx, &v).await?;
            let text = new_template(file.as_deref(), append, async {
                let vm = c.vm().info(id).await?;
                Ok(template_str(&vm.user_template, &[], true))
            })
            .await?;
            c.vm().update(id, &text, update_mode(append)).await?;
            ctx.verbose(out, "VM", id, "modified")?;
            Ok(0)
        }
        Verb::Hold { vms: l } => act(ctx, out, &l, VmAction::Hold).await,
        Verb::Release { vms: l } => act(ctx, out, &l, VmAction::Release).await,
        Verb::Terminate { vms: l, hard } => {
            let a = if hard {
                VmAction::TerminateHard
            } else {
                VmAction::Terminate
            };
            act(ctx, out, &l, a).await
        }
        Verb::Undeploy { vms: l, hard } => {
            let a = if hard {
                VmAction::UndeployHard
            } else {
                VmAction::Undeploy
            };
            act(ctx, out, &l, a).await
        }
        Verb::Poweroff { vms: l, hard } => {
            let a = if hard {
                VmAction::PoweroffHard
            } else {
                VmAction::Poweroff
            };
            act(ctx, out, &l, a).await
        }
        Verb::Reboot { vms: l, hard } => {
            let a = if hard {
                VmAction::RebootHard
            } else {
                VmAction::Reboot
            };
            act(ctx, out, &l, a).await
        }
        Verb::Stop { vms: l } => act(ctx, out, &l, VmAction::Stop).await,
        Verb::Suspend { vms: l } => act(ctx, out, &l, VmAction::Suspend).await,
        Verb::Resume { vms: l } => act(ctx, out, &l, VmAction::Resume).await,
        Verb::Resched { vms: l } => act(ctx, out, &l, VmAction::Resched).await,
        Verb::Unresched { vms: l } => act(ctx, out, &l, VmAction::Unresched).await,
        Verb::Deploy {
            vms: l,
            host,
            datastore,
            enforce,
        } => {
            let ids = vms(ctx, &l).await?;
            let host = resolve::id(c, Kind::Host, &host).await?;
            let ds = match datastore {
                Some(d) => resolve::id(c, Kind::Datastore, &d).await?,
                None => -1,
            };
            let code = each(&ids, |id| async move {
                c.vm().deploy(id, host, enforce, ds).await?;
                Ok(())
            })
            .await;
            for id in &ids {
                ctx.verbose(out, "VM", *id, &format!("deploying in host {host}"))?;
            }
            Ok(code)
        }
        Verb::Migrate {
            vms: l,
            host,
            datastore,
            live,
            enforce,
            poff,
            poff_hard,
        } => {
            let ids = vms(ctx, &l).await?;
            let host = resolve::id(c, Kind::Host, &host).await?;
            let ds = match datastore {
                Some(d) => resolve::id(c, Kind::Datastore, &d).await?,
                None => -1,
            };
            let kind = if poff_hard {
                MigrationType::PoweroffHard
            } else if poff {
                MigrationType::Poweroff
            } else {
                MigrationType::Save
            };
            let code = each(&ids, |id| async move {
                c.vm().migrate(id, host, live, enforce, ds, kind).await?;
                Ok(())
            })
            .await;
            for id in &ids {
                ctx.verbose(out, "VM", *id, &format!("migrating to {host}"))?;
            }
            Ok(code)
        }
        Verb::Recover {
            vms: l,
            success,
            failure,
            retry,
            delete,
            recreate,
            delete_db,
        } => {
            let op = if success {
                RecoverOp::Success
            } else if failure {
                RecoverOp::Failure
            } else if retry {
                RecoverOp::Retry
            } else if delete {
                RecoverOp::Delete
            } else if recreate {
                RecoverOp::DeleteRecreate
            } else if delete_db {
                RecoverOp::DeleteDb
            } else {
                return Err(CliError::msg(
                    "Need to specify the result of the pending action.",
                ));
            };
            let ids = vms(ctx, &l).await?;
            Ok(each(&ids, |id| async move {
                c.vm().recover(id, op).await?;
                Ok(())
            })
            .await)
        }
        Verb::DiskAttach {
            vm: v,
            file,
            image,
            target,
            cache,
            discard,
            prefix,
        } => {
            let id = vm(ctx, &v).await?;
            let template = if let Some(t) = input::file_or_stdin(file.as_deref())? {
                t
            } else if let Some(image) = image {
                let image = resolve::id(c, Kind::Image, &image).await?;
                let mut t = format!("DISK = [ IMAGE_ID = {image}");
                match (&target, &prefix) {
                    (Some(tg), _) => t.push_str(&format!(", TARGET = \"{tg}\"")),
                    (None, Some(p)) => t.push_str(&format!(", DEV_PREFIX = \"{p}\"")),
                    _ => {}
                }
                if let Some(x) = cache {
                    t.push_str(&format!(", CACHE = \"{x}\""));
                }
                if let Some(x) = discard {
                    t.push_str(&format!(", DISCARD = \"{x}\""));
                }
                t.push_str(" ]");
                t
            } else {
                return Err(CliError::msg(
                    "Provide a template or an image:\n\t--file  <file>\n\t--image <image>",
                ));
            };
            c.vm().disk_attach(id, &template).await?;
            ctx.verbose(out, "VM", id, "Attaching disk")?;
            Ok(0)
        }
        Verb::DiskDetach { vm: v, disk_id } => {
            let id = vm(ctx, &v).await?;
            c.vm().disk_detach(id, disk_id).await?;
            ctx.verbose(out, "VM", id, "Detaching disk")?;
            Ok(0)
        }
        Verb::NicAttach {
            vm: v,
            file,
            network,
            ip,
        } => {
            let id = vm(ctx, &v).await?;
            let template = if let Some(t) = input::file_or_stdin(file.as_deref())? {
                t
            } else if let Some(net) = network {
                let net = resolve::id(c, Kind::Vnet, &net).await?;
                let mut t = format!("NIC = [ NETWORK_ID = {net}");
                if let Some(ip) = ip {
                    t.push_str(&format!(", IP = \"{ip}\""));
                }
                t.push_str(" ]");
                t
            } else {
                return Err(CliError::msg(
                    "Provide a network or a template:\n\t--file    <file>\n\t--network <network>",
                ));
            };
            c.vm().nic_attach(id, &template).await?;
            ctx.verbose(out, "VM", id, "Attaching NIC")?;
            Ok(0)
        }
        Verb::NicDetach { vm: v, nic_id } => {
            let id = vm(ctx, &v).await?;
            c.vm().nic_detach(id, nic_id).await?;
            ctx.verbose(out, "VM", id, "Detaching NIC")?;
            Ok(0)
        }
        Verb::Chgrp { vms: l, group } => {
            let ids = vms(ctx, &l).await?;
            let gid = resolve::id(c, Kind::Group, &group).await?;
            Ok(each(&ids, |id| async move {
                c.vm().chown(id, -1, gid).await?;
                Ok(())
            })
            .await)
        }
        Verb::Chown {
            vms: l,
            user,
            group,
        } => {
            let ids = vms(ctx, &l).await?;
            let uid = resolve::id(c, Kind::User, &user).await?;
            let gid = match group {
                Some(g) => resolve::id(c, Kind::Group, &g).await?,
                None => -1,
            };
            Ok(each(&ids, |id| async move {
                c.vm().chown(id, uid, gid).await?;
                Ok(())
            })
            .await)
        }
        Verb::Chmod { vms: l, mode } => {
            let mode = parse_chmod(&mode)?;
            let ids = vms(ctx, &l).await?;
            let mode = &mode;
            Ok(each(&ids, |id| async move {
                c.vm().chmod(id, mode).await?;
                Ok(())
            })
            .await)
        }
        Verb::Rename { vm: v, name } => {
            let id = vm(ctx, &v).await?;
            c.vm().rename(id, &name).await?;
            ctx.verbose(out, "VM", id, "renamed")?;
            Ok(0)
        }
        Verb::SnapshotCreate { vms: l, name } => {
            let ids = vms(ctx, &l).await?;
            let name = name.unwrap_or_default();
            let name = &name;
            Ok(each(&ids, |id| async move {
                c.vm().snapshot_create(id, name).await?;
                Ok(())
            })
            .await)
        }
        Verb::SnapshotRevert { vm: v, snapshot } => {
            let id = vm(ctx, &v).await?;
            let snap = system_snapshot_id(ctx, id, &snapshot).await?;
            c.vm().snapshot_revert(id, snap).await?;
            Ok(0)
        }
        Verb::SnapshotDelete { vm: v, snapshot } => {
            let id = vm(ctx, &v).await?;
            let snap = system_snapshot_id(ctx, id, &snapshot).await?;
            c.vm().snapshot_delete(id, snap).await?;
            Ok(0)
        }
        Verb::DiskSnapshotCreate {
            vm: v,
            disk_id,
            name,
        } => {
            let id = vm(ctx, &v).await?;
            c.vm().disk_snapshot_create(id, disk_id, &name).await?;
            Ok(0)
        }
        Verb::DiskSnapshotRevert {
            vm: v,
            disk_id,
            snapshot,
        } => {
            let id = vm(ctx, &v).await?;
            let snap = disk_snapshot_id(ctx, id, disk_id, &snapshot).await?;
            c.vm().disk_snapshot_revert(id, disk_id, snap).await?;
            Ok(0)
        }
        Verb::DiskSnapshotDelete {
            vm: v,
            disk_id,
            snapshot,
        } => {
            let id = vm(ctx, &v).await?;
            let snap = disk_snapshot_id(ctx, id, disk_id, &snapshot).await?;
            c.vm().disk_snapshot_delete(id, disk_id, snap).await?;
            Ok(0)
        }
        Verb::DiskSnapshotRename {
            vm: v,
            disk_id,
            snapshot,
            name,
        } => {
            let id = vm(ctx, &v).await?;
            c.vm()
                .disk_snapshot_rename(id, disk_id, snapshot, &name)
                .await?;
            Ok(0)
        }
        Verb::DiskSaveas {
            vm: v,
            disk_id,
            image_name,
            image_type,
            snapshot,
        } => {
            let id = vm(ctx, &v).await?;
            let snap = match snapshot {
                Some(s) => disk_snapshot_id(ctx, id, disk_id, &s).await?,
                None => -1,
            };
            let image = c
                .vm()
                .disk_saveas(
                    id,
                    disk_id,
                    &image_name,
                    image_type.as_deref().unwrap_or(""),
                    snap,
                )
                .await?;
            writeln!(out, "Image ID: {image}")?;
            Ok(0)
        }
        Verb::DiskResize {
            vm: v,
            disk_id,
            size,
        } => {
            let id = vm(ctx, &v).await?;
            let new_size = size_in_mb(&size)?;
            let current = c.vm().info(id).await?;
            let old = current
                .disks()
                .find(|d| d.get("DISK_ID") == Some(&disk_id.to_string()))
                .and_then(|d| d.get("SIZE"))
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            if new_size <= old {
                return Err(CliError::msg(format!(
                    "New size '{size}' must be larger than current size '{old}'"
                )));
            }
            c.vm().disk_resize(id, disk_id, new_size).await?;
            Ok(0)
        }
        Verb::Resize {
            vm: v,
            cpu,
            vcpu,
            memory,
            enforce,
            file,
        } => {
            let id = vm(ctx, &v).await?;
            let template = match input::file_or_stdin(file.as_deref())? {
                Some(t) => t,
                None => {
                    let mut t = String::new();
                    if let Some(c) = cpu {
                        t.push_str(&format!("CPU = {}\n", fmt::trim_float(c)));
                    }
                    if let Some(v) = vcpu {
                        t.push_str(&format!("VCPU = {v}\n"));
                    }
                    if let Some(m) = memory {
                        t.push_str(&format!("MEMORY = {}\n", size_in_mb(&m)?));
                    }
                    if t.is_empty() {
                        return Err(CliError::msg(
                            "Provide the new capacity: --cpu, --vcpu, --memory or --file",
                        ));
                    }
                    t
                }
            };
            c.vm().resize(id, &template, enforce).await?;
            ctx.verbose(out, "VM", id, "Resizing VM")?;
            Ok(0)
        }
        Verb::Updateconf {
            vm: v,
            file,
            append,
        } => {
            let id = vm(ctx, &v).await?;
            let text = match input::file_or_stdin(file.as_deref())? {
                Some(t) => t,
                None => {
                    let vm = c.vm().info(id).await?;
                    let conf: Vec<&str> = vm
                        .template
                        .attrs
                        .iter()
                        .map(|a| a.name.as_str())
                        .filter(|n| {
                            !matches!(
                                *n,
                                "OS" | "FEATURES"
                                    | "INPUT"
                                    | "GRAPHICS"
                                    | "VIDEO"
                                    | "RAW"
                                    | "CONTEXT"
                                    | "CPU_MODEL"
                            )
                        })
                        .collect();
                    input::editor(&template_str(&vm.template, &conf, true))?
                }
            };
            c.vm().updateconf(id, &text, update_mode(append)).await?;
            ctx.verbose(out, "VM", id, "Updating VM configuration")?;
            Ok(0)
        }
        Verb::Lock { vms: l, level } => {
            let ids = vms(ctx, &l).await?;
            let level = level.level();
            Ok(each(&ids, |id| async move {
                c.vm().lock(id, level).await?;
                Ok(())
            })
            .await)
        }
        Verb::Unlock { vms: l } => {
            let ids = vms(ctx, &l).await?;
            Ok(each(&ids, |id| async move {
                c.vm().unlock(id).await?;
                Ok(())
            })
            .await)
        }
        Verb::List {
            who,
            opts,
            extended,
            search,
        } => {
            let query = VmQuery {
                filter: filter_flag(ctx, who.as_deref()).await?,
                state: VmStateFilter::NotDone,
                search: search.unwrap_or_default(),
                ..VmQuery::default()
            };
            let clusters = if wants_cluster(&opts) {
                cluster_names(ctx).await
            } else {
                HashMap::new()
            };
            let table = list_table(&opts, clusters);
            let extended = extended || !query.search.is_empty();
            print_list(
                out,
                &opts,
                &table,
                async {
                    if extended {
                        c.vm().list_extended_xml(&query).await
                    } else {
                        c.vm().list_xml(&query).await
                    }
                },
                async {
                    let mut v = if query.search.is_empty() {
                        c.vm().list(&query).await?
                    } else {
                        c.vm().list_extended(&query).await?
                    };
                    newest_first(&mut v);
                    Ok(v)
                },
            )
            .await
        }
        Verb::Show {
            vm: v,
            format,
            all,
            decrypt: _,
        } => {
            let id = vm(ctx, &v).await?;
            if print_document(out, &format, c.vm().info_xml(id)).await? {
                return Ok(0);
            }
            let vm = c.vm().info(id).await?;
            show(ctx, out, &vm, all).await?;
            Ok(0)
        }
    }
}

/// A system snapshot by id or name.
async fn system_snapshot_id(ctx: &Ctx, vm: i64, arg: &str) -> CliResult<i64> {
    if let Ok(n) = arg.parse() {
        return Ok(n);
    }
    let v = ctx.client.vm().info(vm).await?;
    let ids: Vec<&str> = v
        .template
        .vectors("SNAPSHOT")
        .filter(|s| s.get("NAME") == Some(arg))
        .filter_map(|s| s.get("SNAPSHOT_ID"))
        .collect();
    match ids.as_slice() {
        [one] => one
            .parse()
            .map_err(|_| CliError::msg(format!("{arg} not found or duplicated"))),
        _ => Err(CliError::msg(format!("{arg} not found or duplicated"))),
    }
}

/// A disk snapshot by id or name.
async fn disk_snapshot_id(ctx: &Ctx, vm: i64, disk: i64, arg: &str) -> CliResult<i64> {
    if let Ok(n) = arg.parse() {
        return Ok(n);
    }
    let v = ctx.client.vm().info(vm).await?;
    let ids: Vec<i64> = v
        .snapshots
        .iter()
        .filter(|d| d.disk_id == disk)
        .flat_map(|d| d.snapshots.iter())
        .filter(|s| s.name == arg)
        .map(|s| s.id)
        .collect();
    match ids.as_slice() {
        [one] => Ok(*one),
        _ => Err(CliError::msg(format!(
            "Snapshot {arg} not found or duplicated"
        ))),
    }
}

fn wants_cluster(opts: &ListOpts) -> bool {
    let named = |s: &str| s.trim().to_ascii_uppercase().starts_with("CLUSTER");
    opts.list.iter().any(|c| named(c)) || opts.filter.iter().any(|f| named(f))
}

async fn cluster_names(ctx: &Ctx) -> HashMap<i64, String> {
    let mut names: HashMap<i64, String> = ctx
        .client
        .cluster()
        .list()
        .await
        .map(|v| v.into_iter().map(|c| (c.id, c.name)).collect())
        .unwrap_or_default();
    names.insert(-1, "default".into());
    names
}

/// `onevm list`'s columns (etc/cli/onevm.yaml of OpenNebula 7: ID USER GROUP NAME STAT CPU
/// MEM HOST TIME by default).
pub fn list_table<'a>(opts: &'a ListOpts, clusters: HashMap<i64, String>) -> Table<'a, Vm> {
    let numeric = opts.numeric;
    let kilobytes = opts.kilobytes;
    let now = fmt::now();
    Table {
        cols: vec![
            Col::new("ID", "ONE identifier for Virtual Machine", 4, |v: &Vm| {
                v.id.to_string()
            })
            .adjust(),
            Col::new("NAME", "Name of the Virtual Machine", 15, |v: &Vm| {
                if v.resched {
                    format!("*{}", v.name)
                } else {
                    v.name.clone()
                }
            })
            .left()
            .expand(),
            Col::new(
                "USER",
                "Username of the Virtual Machine owner",
                8,
                move |v: &Vm| owner_name(numeric, v.owner.uid, &v.owner.uname),
            )
            .left(),
            Col::new("GROUP", "Group of the Virtual Machine", 8, move |v: &Vm| {
                owner_name(numeric, v.owner.gid, &v.owner.gname)
            })
            .left(),
            Col::new("STAT", "Actual status", 4, |v: &Vm| {
                v.short_state().to_string()
            }),
            Col::new("CPU", "CPU assigned to the VM", 4, |v: &Vm| {
                v.cpu().unwrap_or("0").to_string()
            }),
            Col::new("MEM", "Memory assigned by the VM", 7, move |v: &Vm| {
                fmt::unit(v.memory_mb() as f64, "M", kilobytes)
            }),
            Col::new("HOST", "Host where the VM is running", 10, |v: &Vm| {
                v.host().unwrap_or("").to_string()
            })
            .left()
            .expand(),
            Col::new(
                "CLUSTER",
                "Cluster where the VM is running",
                10,
                move |v: &Vm| match v.last_history() {
                    Some(h) => clusters
                        .get(&h.cid)
                        .cloned()
                        .unwrap_or_else(|| h.cid.to_string()),
                    None => "NONE".into(),
                },
            )
            .left(),
            Col::new(
                "TIME",
                "Time since the VM was submitted",
                10,
                move |v: &Vm| {
                    let end = if v.etime == 0 { now } else { v.etime };
                    fmt::period(end - v.stime, false)
                },
            ),
            Col::new("IP", "VM IP addresses", 15, |v: &Vm| {
                let ips = v.ips();
                if ips.is_empty() {
                    "--".into()
                } else {
                    ips.join(",")
                }
            })
            .left()
            .adjust(),
        ],
        default: vec![
            "ID", "USER", "GROUP", "NAME", "STAT", "CPU", "MEM", "HOST", "TIME",
        ],
        stat: "STAT",
    }
}

fn no_opts() -> ListOpts {
    ListOpts::default()
}

/// `onevm show`'s layout: information, monitoring, permissions, disks, disk snapshots,
/// NICs, system snapshots, history, user template and template, as OpenNebula 7 prints it.
pub async fn show(ctx: &Ctx, out: &mut dyn Write, vm: &Vm, all: bool) -> CliResult<()> {
    const W: usize = 20;
    let on_host = matches!(vm.state, 3 | 5 | 8);
    let cluster_id = if on_host {
        vm.last_history().map(|h| h.cid)
    } else {
        None
    };
    let cluster = match cluster_id {
        Some(-1) => Some("default".to_string()),
        Some(cid) => Some(match ctx.client.cluster().info(cid).await {
            Ok(c) => c.name,
            Err(_) => "ERROR".into(),
        }),
        None => None,
    };

    section(out, &format!("VIRTUAL MACHINE {} INFORMATION", vm.id), true)?;
    kv(out, W, "ID", &vm.id.to_string())?;
    kv(out, W, "NAME", &vm.name)?;
    kv(out, W, "USER", &vm.owner.uname)?;
    kv(out, W, "GROUP", &vm.owner.gname)?;
    kv(out, W, "STATE", &vm.state_name())?;
    kv(out, W, "LCM_STATE", &vm.lcm_state_name())?;
    kv(out, W, "LOCK", vm.lock.map_or("None", |l| l.level_name()))?;
    kv(out, W, "RESCHED", fmt::yes_no(vm.resched))?;
    if on_host {
        kv(
            out,
            W,
            "HOST",
            vm.last_history().map_or("", |h| h.hostname.as_str()),
        )?;
    }
    if let Some(cid) = cluster_id {
        kv(out, W, "CLUSTER ID", &cid.to_string())?;
    }
    if let Some(c) = &cluster {
        kv(out, W, "CLUSTER", c)?;
    }
    kv(out, W, "START TIME", &fmt::time(vm.stime))?;
    kv(out, W, "END TIME", &fmt::time(vm.etime))?;
    kv(
        out,
        W,
        "DEPLOY ID",
        if vm.deploy_id.is_empty() {
            "-"
        } else {
            &vm.deploy_id
        },
    )?;
    if let Some(vr) = vm.template.get("VROUTER_ID") {
        kv(out, W, "VIRTUAL ROUTER ID", vr)?;
    }
    writeln!(out)?;

    // Monitoring: the known metrics in a table, then the others.
    let mon = &vm.monitoring;
    let stamp = mon
        .get("TIMESTAMP")
        .and_then(|t| t.parse::<i64>().ok())
        .map_or_else(|| "-".to_string(), fmt::ctime);
    section(out, &format!("VIRTUAL MACHINE MONITORING [{stamp}]"), false)?;
    type Unit = fn(&str) -> String;
    let kb: Unit = |v| fmt::unit_i(v.parse::<f64>().unwrap_or(0.0) as i64, "K");
    let bytes_kb: Unit = |v| fmt::unit_i(v.parse::<f64>().unwrap_or(0.0) as i64 / 1024, "K");
    let gb: Unit = |v| fmt::unit_i(v.parse::<f64>().unwrap_or(0.0) as i64 / 1024, "G");
    let order: [(&str, Option<Unit>); 19] = [
        ("CPU", None),
        ("MEMORY", Some(kb)),
        ("NETTX", Some(bytes_kb)),
        ("NETTX_BW", Some(bytes_kb)),
        ("NETRX", Some(bytes_kb)),
        ("NETRX_BW", Some(bytes_kb)),
        ("DISKRDBYTES", Some(kb)),
        ("DISKRDBYTES_BW", Some(kb)),
        ("DISKRDIOPS", None),
        ("DISKRDIOPS_BW", None),
        ("DISKWRBYTES", Some(kb)),
        ("DISKWRBYTES_BW", Some(kb)),
        ("DISKWRIOPS_BW", None),
        ("DISKWRIOPS", None),
        ("GPU_COUNT", None),
        ("GPU_UTILIZATION", None),
        ("GPU_MEMORY_UTILIZATION", None),
        ("GPU_MEMORY_FREE", Some(gb)),
        ("GPU_POWER_USAGE", None),
    ];
    let mut shown: Vec<String> = Vec::new();
    let mut rows: Vec<[String; 4]> = Vec::new();
    for (key, unit) in order {
        let f = |v: &str| unit.map_or_else(|| v.to_string(), |u| u(v));
        let Some(value) = mon.get(key) else {
            rows.push([key.into(), "-".into(), "-".into(), "-".into()]);
            continue;
        };
        let near = format!("{key}_FORECAST");
        let far = format!("{key}_FORECAST_FAR");
        rows.push([
            key.into(),
            f(value),
            mon.get(&near).map_or_else(|| "-".into(), f),
            mon.get(&far).map_or_else(|| "-".into(), f),
        ]);
        shown.extend([key.to_string(), near, far]);
    }
    Table {
        cols: vec![
            Col::new("METRIC", "", 20, |r: &[String; 4]| r[0].clone()).left(),
            Col::new("VALUE", "", 15, |r: &[String; 4]| r[1].clone()).left(),
            Col::new("FORECAST", "", 15, |r: &[String; 4]| r[2].clone()).left(),
            Col::new("FORECAST_FAR", "", 15, |r: &[String; 4]| r[3].clone()).left(),
        ],
        default: vec!["METRIC", "VALUE", "FORECAST", "FORECAST_FAR"],
        stat: "",
    }
    .print(&rows, &no_opts(), out)?;
    writeln!(out)?;
    const HIDDEN: [&str; 5] = ["STATE", "DISK_SIZE", "SNAPSHOT_SIZE", "ID", "TIMESTAMP"];
    for a in &mon.attrs {
        if shown.contains(&a.name) || HIDDEN.contains(&a.name.as_str()) {
            continue;
        }
        if let oca::AttrValue::Single(v) = &a.value {
            writeln!(out, "{:<20}: {}", trunc(&a.name, 20), trunc(v, 80))?;
        }
    }
    writeln!(out)?;

    let perms = vm.permissions.unwrap_or_default();
    section(out, "PERMISSIONS", false)?;
    for (i, who) in ["OWNER", "GROUP", "OTHER"].iter().enumerate() {
        kv(out, W, who, &perms.mask(i))?;
    }

    // Disks (and the context CD).
    let mut disks: Vec<Vector> = vm.disks().cloned().collect();
    if let Some(ctxd) = vm.template.vector("CONTEXT") {
        let mut d = ctxd.clone();
        for (k, v) in [
            ("IMAGE", "CONTEXT"),
            ("DATASTORE", "-"),
            ("TYPE", "-"),
            ("READONLY", "-"),
            ("SAVE", "-"),
            ("CLONE", "-"),
        ] {
            d.set(k, v);
        }
        disks.push(d);
    }
    let disk_sizes: HashMap<String, String> = mon
        .vectors("DISK_SIZE")
        .filter_map(|v| Some((v.get("ID")?.to_string(), v.get("SIZE")?.to_string())))
        .collect();
    if !disks.is_empty() {
        writeln!(out)?;
        section(out, "VM DISKS", false)?;
        let size_of = |v: Option<&str>| {
            v.and_then(|s| s.parse::<f64>().ok())
                .map_or_else(|| "-".to_string(), |s| fmt::unit_i(s as i64, "M"))
        };
        let disk_sizes = &disk_sizes;
        Table {
            cols: vec![
                Col::new("ID", "", 3, |d: &Vector| {
                    d.get("DISK_ID").unwrap_or("").to_string()
                }),
                Col::new("DATASTORE", "", 10, |d: &Vector| {
                    d.get("DATASTORE").unwrap_or("").to_string()
                })
                .left(),
                Col::new("TARGET", "", 6, |d: &Vector| {
                    d.get("TARGET").unwrap_or("").to_string()
                })
                .left(),
                Col::new("IMAGE", "", 35, move |d: &Vector| {
                    if let Some(i) = d.get("IMAGE") {
                        return i.to_string();
                    }
                    match d.get("TYPE").map(str::to_ascii_uppercase).as_deref() {
                        Some("FS") => format!(
                            "{} - {}",
                            d.get("FORMAT").unwrap_or(""),
                            size_of(d.get("SIZE"))
                        ),
                        Some("SWAP") => size_of(d.get("SIZE")),
                        _ => String::new(),
                    }
                })
                .left(),
                Col::new("SIZE", "", 9, move |d: &Vector| {
                    let mon = d
                        .get("DISK_ID")
                        .and_then(|id| disk_sizes.get(id))
                        .map(String::as_str);
                    format!("{}/{}", size_of(mon), size_of(d.get("SIZE")))
                })
                .left(),
                Col::new("TYPE", "", 4, |d: &Vector| {
                    d.get("TYPE").unwrap_or("").to_ascii_lowercase()
                })
                .left(),
                Col::new("SAVE", "", 4, |d: &Vector| {
                    d.get("SAVE").unwrap_or("NO").to_string()
                }),
            ],
            default: vec!["ID", "DATASTORE", "TARGET", "IMAGE", "SIZE", "TYPE", "SAVE"],
            stat: "",
        }
        .print(&disks, &no_opts(), out)?;
    }

    if !vm.snapshots.is_empty() {
        writeln!(out)?;
        section(out, "VM DISK SNAPSHOTS", false)?;
        let rows: Vec<(i64, &oca::DiskSnapshot)> = vm
            .snapshots
            .iter()
            .flat_map(|d| d.snapshots.iter().map(move |s| (d.disk_id, s)))
            .collect();
        let snap_sizes: HashMap<(String, String), String> = mon
            .vectors("SNAPSHOT_SIZE")
            .filter_map(|v| {
                Some((
                    (v.get("DISK_ID")?.to_string(), v.get("ID")?.to_string()),
                    v.get("SIZE")?.to_string(),
                ))
            })
            .collect();
        let snap_sizes = &snap_sizes;
        Table {
            cols: vec![
                Col::new("AC", "", 2, |r: &(i64, &oca::DiskSnapshot)| {
                    if r.1.active { "=>" } else { "" }.to_string()
                })
                .left(),
                Col::new("ID", "", 3, |r: &(i64, &oca::DiskSnapshot)| {
                    r.1.id.to_string()
                }),
                Col::new("DISK", "", 4, |r: &(i64, &oca::DiskSnapshot)| {
                    r.0.to_string()
                }),
                Col::new("PARENT", "", 6, |r: &(i64, &oca::DiskSnapshot)| {
                    r.1.parent.to_string()
                }),
                Col::new("DATE", "", 15, |r: &(i64, &oca::DiskSnapshot)| {
                    fmt::time(r.1.date)
                }),
                Col::new("SIZE", "", 12, move |r: &(i64, &oca::DiskSnapshot)| {
                    let mon = snap_sizes
                        .get(&(r.0.to_string(), r.1.id.to_string()))
                        .map_or_else(
                            || "-".to_string(),
                            |s| fmt::unit_i(s.parse().unwrap_or(0), "M"),
                        );
                    format!("{mon}/{}", fmt::unit_i(r.1.size, "M"))
                })
                .left(),
                Col::new("NAME", "", 32, |r: &(i64, &oca::DiskSnapshot)| {
                    r.1.name.clone()
                })
                .left(),
            ],
            default: vec!["AC", "ID", "DISK", "PARENT", "DATE", "SIZE", "NAME"],
            stat: "",
        }
        .print(&rows, &no_opts(), out)?;
    }

    for (kind, title) in [("NIC", "VM NICS"), ("NIC_ALIAS", "VM ALIAS")] {
        let nics: Vec<&Vector> = vm.template.vectors(kind).collect();
        if nics.is_empty() {
            continue;
        }
        writeln!(out)?;
        section(out, title, false)?;
        // One row per NIC, plus one per extra address (IPv6, external), IP only.
        let mut rows: Vec<[String; 6]> = Vec::new();
        let dash = |v: Option<&str>| v.unwrap_or("-").to_string();
        for nic in nics {
            rows.push([
                nic.get("NIC_ID").unwrap_or("").to_string(),
                dash(nic.get("NETWORK")),
                dash(nic.get("BRIDGE")),
                dash(nic.get("IP")),
                dash(nic.get("MAC")),
                nic.get("PCI_ID").unwrap_or("").to_string(),
            ]);
            for extra in ["EXTERNAL_IP", "IP6_LINK", "IP6_ULA", "IP6_GLOBAL", "IP6"] {
                if let Some(ip) = nic.get(extra) {
                    rows.push([
                        String::new(),
                        String::new(),
                        String::new(),
                        ip.to_string(),
                        String::new(),
                        String::new(),
                    ]);
                }
            }
        }
        let mut cols = vec![
            Col::new("ID", "", 3, |r: &[String; 6]| r[0].clone()),
            Col::new("NETWORK", "", 20, |r: &[String; 6]| r[1].clone()).left(),
            Col::new("BRIDGE", "", 12, |r: &[String; 6]| r[2].clone()).left(),
            Col::new("IP", "", 15, |r: &[String; 6]| r[3].clone())
                .left()
                .adjust(),
            Col::new("MAC", "", 17, |r: &[String; 6]| r[4].clone()).left(),
        ];
        let mut default = vec!["ID", "NETWORK", "BRIDGE", "IP", "MAC"];
        if kind == "NIC" {
            cols.push(Col::new("PCI_ID", "", 8, |r: &[String; 6]| r[5].clone()).left());
            default.push("PCI_ID");
        }
        Table {
            cols,
            default,
            stat: "",
        }
        .print(&rows, &no_opts(), out)?;
    }

    let snaps: Vec<&Vector> = vm.template.vectors("SNAPSHOT").collect();
    if !snaps.is_empty() {
        writeln!(out)?;
        section(out, "SNAPSHOTS", false)?;
        Table {
            cols: vec![
                Col::new("ID", "", 4, |s: &&Vector| {
                    s.get("SNAPSHOT_ID").unwrap_or("").to_string()
                }),
                Col::new("TIME", "", 12, |s: &&Vector| {
                    fmt::time_short(s.get("TIME").and_then(|t| t.parse().ok()).unwrap_or(0))
                }),
                Col::new("NAME", "", 46, |s: &&Vector| {
                    s.get("NAME").unwrap_or("").to_string()
                })
                .left(),
                Col::new("HYPERVISOR_ID", "", 15, |s: &&Vector| {
                    s.get("HYPERVISOR_ID").unwrap_or("").to_string()
                })
                .left(),
            ],
            default: vec!["ID", "TIME", "NAME", "HYPERVISOR_ID"],
            stat: "",
        }
        .print(&snaps, &no_opts(), out)?;
    }

    if !vm.history.is_empty() {
        writeln!(out)?;
        section(out, "VIRTUAL MACHINE HISTORY", false)?;
        history_table(out, &vm.history)?;
    }

    if !vm.backup_config.is_empty() {
        writeln!(out)?;
        section(out, "BACKUP CONFIGURATION", false)?;
        writeln!(out, "{}", template_str(&vm.backup_config, &[], true))?;
    }
    if !vm.backup_ids.is_empty() {
        writeln!(out)?;
        section(out, "VM BACKUPS", false)?;
        let ids: Vec<String> = vm.backup_ids.iter().map(i64::to_string).collect();
        writeln!(out, "IMAGE IDS: {}", ids.join(","))?;
    }

    if !vm.user_template.is_empty() {
        writeln!(out)?;
        section(out, "USER TEMPLATE", false)?;
        writeln!(out, "{}", template_str(&vm.user_template, &[], true))?;
    }

    writeln!(out)?;
    section(out, "VIRTUAL MACHINE TEMPLATE", false)?;
    let skip: &[&str] = if all {
        &["SNAPSHOT"]
    } else {
        &[
            "DISK",
            "NIC",
            "NIC_ALIAS",
            "SNAPSHOT",
            "SCHED_ACTION",
            "NUMA_NODE",
            "TOPOLOGY",
            "SECURITY_GROUP_RULE",
        ]
    };
    writeln!(out, "{}", template_str(&vm.template, skip, true))?;
    Ok(())
}

fn trunc(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        let cut: String = s.chars().take(max - 3).collect();
        format!("{cut}...")
    } else {
        s.to_string()
    }
}

fn history_table(out: &mut dyn Write, history: &[oca::History]) -> CliResult<()> {
    let now = fmt::now();
    Table {
        cols: vec![
            Col::new("SEQ", "", 3, |h: &oca::History| h.seq.to_string()),
            Col::new("UID", "", 4, |h: &oca::History| {
                if h.uid == -1 {
                    "-".into()
                } else {
                    h.uid.to_string()
                }
            })
            .left(),
            Col::new("REQ", "", 5, |h: &oca::History| {
                if h.request_id == "-1" {
                    "-".into()
                } else {
                    h.request_id.clone()
                }
            })
            .left(),
            Col::new("HOST", "", 12, |h: &oca::History| h.hostname.clone()).left(),
            Col::new("ACTION", "", 10, |h: &oca::History| {
                h.action_name().to_string()
            })
            .left(),
            Col::new("DS", "", 4, |h: &oca::History| h.ds_id.to_string()),
            Col::new("START", "", 15, |h: &oca::History| fmt::time(h.stime)),
            Col::new("TIME", "", 11, move |h: &oca::History| {
                let end = if h.etime == 0 { now } else { h.etime };
                fmt::period(end - h.stime, false)
            }),
            Col::new("PROLOG", "", 10, move |h: &oca::History| {
                let end = if h.pstime == 0 {
                    0
                } else if h.petime == 0 {
                    now
                } else {
                    h.petime
                };
                fmt::short_period(end - h.pstime)
            }),
        ],
        default: vec![
            "SEQ", "UID", "REQ", "HOST", "ACTION", "DS", "START", "TIME", "PROLOG",
        ],
        stat: "",
    }
    .print(history, &no_opts(), out)
}
