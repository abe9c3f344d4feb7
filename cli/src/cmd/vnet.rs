//! `onevnet`: virtual networks, their address ranges and leases.

use super::{
    clusters_str, filter_flag, new_template, newest_first, owner_name, parse_chmod, print_document,
    print_id, print_list, update_mode,
};
use crate::args::{ConnOpts, FormatOpts, ListOpts, LockOpts};
use crate::error::{CliError, CliResult};
use crate::input;
use crate::resolve::{self, Kind};
use crate::show::{kv20, permissions, section, template_str};
use crate::table::{Col, Table, header};
use crate::{Ctx, each};
use clap::{Args, Parser, Subcommand};
use oca::{PoolRange, Vector, VirtualNetwork};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "onevnet",
    version,
    about = "Manages OpenNebula virtual networks"
)]
#[command(
    after_help = "Network lists: an id, a name, ids and names separated by commas, \
    or ranges such as 1,8..15."
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnOpts,
    #[command(subcommand)]
    pub verb: Verb,
}

/// An address range given by options (`onevnet addar`).
#[derive(Args, Debug, Clone, Default)]
pub struct ArOpts {
    /// Number of addresses
    #[arg(short, long)]
    pub size: Option<String>,
    /// First IPv4 address of the range
    #[arg(long)]
    pub ip: Option<String>,
    /// First MAC address of the range
    #[arg(short, long)]
    pub mac: Option<String>,
    /// First IPv6 address, with its prefix length (2001:db8::1/64): a static IPv6 range
    #[arg(long)]
    pub ip6: Option<String>,
    /// IPv6 global prefix
    #[arg(short = 'g', long = "ip6_global")]
    pub ip6_global: Option<String>,
    /// IPv6 ULA prefix
    #[arg(short = 'u', long = "ip6_ula")]
    pub ip6_ula: Option<String>,
    /// Gateway of the range
    #[arg(long)]
    pub gateway: Option<String>,
    /// Netmask of the range
    #[arg(long)]
    pub netmask: Option<String>,
    /// Network driver of the range
    #[arg(long = "vn_mad")]
    pub vn_mad: Option<String>,
    /// VLAN id of the range
    #[arg(long = "vlanid")]
    pub vlanid: Option<String>,
}

impl ArOpts {
    /// `AR = [ TYPE=..., SIZE=..., IP=..., ... ]` as OpenNebula's CLI writes it.
    fn template(&self) -> CliResult<String> {
        let ty = match (&self.ip, &self.ip6, &self.ip6_global, &self.ip6_ula) {
            (Some(_), _, Some(_), _) | (Some(_), _, _, Some(_)) => "IP4_6",
            (Some(_), Some(_), _, _) => "IP4_6_STATIC",
            (Some(_), None, None, None) => "IP4",
            (None, Some(_), _, _) => "IP6_STATIC",
            (None, None, Some(_), _) | (None, None, _, Some(_)) => "IP6",
            (None, None, None, None) => "ETHER",
        };
        let mut ar = format!("AR = [ TYPE=\"{ty}\"");
        match &self.size {
            Some(s) => ar.push_str(&format!(", SIZE = \"{s}\"")),
            None if self.ip6.is_none() => {
                return Err(CliError::msg(
                    "Address range needs to specify size (-s size)",
                ));
            }
            None => {}
        }
        let mut ip6 = None;
        if let Some(v) = &self.ip6 {
            let Some((addr, len)) = v.split_once('/') else {
                return Err(CliError::msg("IP6 address need to set the prefix length"));
            };
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(CliError::msg("Wrong IP6 format address"));
            }
            ar.push_str(&format!(", PREFIX_LENGTH=\"{len}\""));
            ip6 = Some(addr.to_string());
        }
        for (k, v) in [
            ("IP", &self.ip),
            ("IP6", &ip6),
            ("MAC", &self.mac),
            ("GLOBAL_PREFIX", &self.ip6_global),
            ("ULA_PREFIX", &self.ip6_ula),
            ("GATEWAY", &self.gateway),
            ("MASK", &self.netmask),
            ("VN_MAD", &self.vn_mad),
            ("VLAN_ID", &self.vlanid),
        ] {
            if let Some(v) = v {
                ar.push_str(&format!(", {k} = \"{v}\""));
            }
        }
        ar.push_str(" ]");
        Ok(ar)
    }
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Creates a new virtual network from a template file (prints `ID: N`)
    Create {
        file: Option<PathBuf>,
        /// Cluster id or name (default: the default cluster)
        #[arg(short, long)]
        cluster: Option<String>,
    },
    /// Deletes the given virtual networks
    Delete { vnets: String },
    /// Adds an address range, from a file or options
    Addar {
        vnet: String,
        /// Template file with the AR
        #[arg(short, long, value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        ar: ArOpts,
    },
    /// Removes an address range
    Rmar {
        vnet: String,
        ar_id: i64,
        /// Remove it even if it has leases in use
        #[arg(long)]
        force: bool,
    },
    /// Updates an address range (opens $EDITOR without FILE)
    Updatear {
        vnet: String,
        ar_id: i64,
        file: Option<PathBuf>,
    },
    /// Frees a reservation's address range
    Free { vnet: String, ar_id: i64 },
    /// Puts an address (IP or MAC) on hold: it is not leased to VMs
    Hold {
        vnet: String,
        address: String,
        /// Address range id holding the address
        #[arg(short = 'a', long = "address_range")]
        ar_id: Option<i64>,
    },
    /// Releases an address on hold
    Release {
        vnet: String,
        address: String,
        /// Address range id holding the address
        #[arg(short = 'a', long = "address_range")]
        ar_id: Option<i64>,
    },
    /// Reserves addresses into a new reservation network (prints `Reservation VNET ID: N`)
    Reserve {
        vnet: String,
        /// Name of the new reservation
        name: Option<String>,
        /// Number of addresses to reserve
        #[arg(short, long)]
        size: Option<i64>,
        /// Address range to reserve from
        #[arg(short = 'a', long = "address_range")]
        ar_id: Option<i64>,
        /// First IP address to reserve
        #[arg(long = "addr", alias = "ip")]
        ip: Option<String>,
        /// First MAC address to reserve
        #[arg(short, long)]
        mac: Option<String>,
        /// Add the addresses to this existing reservation (id or name)
        #[arg(long = "vnet", value_name = "VNET")]
        into: Option<String>,
    },
    /// Updates the network template (opens $EDITOR without FILE)
    Update {
        vnet: String,
        file: Option<PathBuf>,
        /// Append new attributes to the current template
        #[arg(short, long)]
        append: bool,
    },
    /// Renames the virtual network
    Rename { vnet: String, name: String },
    /// Changes the network owner (and group)
    Chown {
        vnets: String,
        user: String,
        group: Option<String>,
    },
    /// Changes the network group
    Chgrp { vnets: String, group: String },
    /// Changes the network permissions (octal, e.g. 640, or u=rw,g=r)
    Chmod { vnets: String, mode: String },
    /// Locks networks (default: --use)
    Lock {
        vnets: String,
        #[command(flatten)]
        level: LockOpts,
    },
    /// Unlocks networks
    Unlock { vnets: String },
    /// Lists virtual networks (filter: a|all, m|mine, g|group, G|primary group, uid or user)
    List {
        /// Whose: a|all, m|mine, g|group, G|primary group, a uid or a user name
        #[arg(value_name = "FILTER")]
        who: Option<String>,
        #[command(flatten)]
        opts: ListOpts,
    },
    /// Shows information for the given virtual network
    Show {
        vnet: String,
        #[command(flatten)]
        format: FormatOpts,
        /// Show the address ranges' attributes too
        #[arg(long = "show-ar")]
        show_ar: bool,
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

/// `LEASES=[IP="..."]` (or MAC) for hold / release.
fn lease(address: &str, ar_id: Option<i64>) -> String {
    let is_mac = address.len() == 17
        && address
            .split(':')
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    let key = if is_mac { "MAC" } else { "IP" };
    match ar_id {
        Some(ar) => format!("LEASES=[{key}=\"{address}\", AR_ID=\"{ar}\"]"),
        None => format!("LEASES=[{key}=\"{address}\"]"),
    }
}

pub async fn run(verb: Verb, ctx: &Ctx, out: &mut dyn Write) -> CliResult<i32> {
    let c = &ctx.client;
    let ids = |l: String| async move { resolve::ids(c, Kind::Vnet, &l).await };
    let one = |l: String| async move { resolve::id(c, Kind::Vnet, &l).await };
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
            let id = c.vnet().allocate(&text, cluster).await?;
            print_id(out, id)?;
            Ok(0)
        }
        Verb::Delete { vnets } => {
            let l = ids(vnets).await?;
            Ok(each(&l, |id| async move { Ok(c.vnet().delete(id).await?) }).await)
        }
        Verb::Addar { vnet, file, ar } => {
            let id = one(vnet).await?;
            let text = match input::file_or_stdin(file.as_deref())? {
                Some(t) => t,
                None => ar.template()?,
            };
            c.vnet().add_ar(id, &text).await?;
            Ok(0)
        }
        Verb::Rmar { vnet, ar_id, force } => {
            let id = one(vnet).await?;
            c.vnet().rm_ar(id, ar_id, force).await?;
            Ok(0)
        }
        Verb::Updatear { vnet, ar_id, file } => {
            let id = one(vnet).await?;
            let text = match input::file_or_stdin(file.as_deref())? {
                Some(t) => t,
                None => {
                    let net = c.vnet().info(id).await?;
                    let Some(ar) = net.address_range(ar_id) else {
                        return Err(CliError::msg(format!("Address Range {ar_id} not found")));
                    };
                    let mut t = oca::Template::new();
                    t.set_vector("AR", ar.attrs.clone());
                    input::editor(&template_str(&t, &[], true))?
                }
            };
            // The range to update is named inside the AR vector.
            let mut t =
                oca::Template::parse(&text).map_err(|e| CliError::msg(format!("Template: {e}")))?;
            if let Some(v) = t.vector_mut("AR") {
                v.set("AR_ID", ar_id.to_string());
            } else {
                let mut v = Vector::new();
                for a in &t.attrs {
                    if let oca::AttrValue::Single(s) = &a.value {
                        v.set(&a.name, s.clone());
                    }
                }
                v.set("AR_ID", ar_id.to_string());
                t = oca::Template::new();
                t.set_vector("AR", v);
            }
            c.vnet().update_ar(id, &t.to_text()).await?;
            Ok(0)
        }
        Verb::Free { vnet, ar_id } => {
            let id = one(vnet).await?;
            c.vnet().free_ar(id, ar_id).await?;
            Ok(0)
        }
        Verb::Hold {
            vnet,
            address,
            ar_id,
        } => {
            let id = one(vnet).await?;
            c.vnet().hold(id, &lease(&address, ar_id)).await?;
            Ok(0)
        }
        Verb::Release {
            vnet,
            address,
            ar_id,
        } => {
            let id = one(vnet).await?;
            c.vnet().release(id, &lease(&address, ar_id)).await?;
            Ok(0)
        }
        Verb::Reserve {
            vnet,
            name,
            size,
            ar_id,
            ip,
            mac,
            into,
        } => {
            let id = one(vnet).await?;
            let mut t = String::new();
            match size {
                Some(s) => t.push_str(&format!("SIZE = {s}\n")),
                None => {
                    return Err(CliError::msg("Reservation needs a size (-s size)"));
                }
            }
            if let Some(n) = name {
                t.push_str(&format!("NAME = \"{}\"\n", n.replace('"', "\\\"")));
            }
            if let Some(a) = ar_id {
                t.push_str(&format!("AR_ID = {a}\n"));
            }
            if let Some(ip) = ip {
                t.push_str(&format!("IP = \"{ip}\"\n"));
            }
            if let Some(mac) = mac {
                t.push_str(&format!("MAC = \"{mac}\"\n"));
            }
            if let Some(r) = into {
                let rid = resolve::id(c, Kind::Vnet, &r).await?;
                t.push_str(&format!("NETWORK_ID = {rid}\n"));
            }
            let rid = c.vnet().reserve(id, &t).await?;
            writeln!(out, "Reservation VNET ID: {rid}")?;
            Ok(0)
        }
        Verb::Update { vnet, file, append } => {
            let id = one(vnet).await?;
            let text = new_template(file.as_deref(), append, async {
                Ok(template_str(&c.vnet().info(id).await?.template, &[], true))
            })
            .await?;
            c.vnet().update(id, &text, update_mode(append)).await?;
            Ok(0)
        }
        Verb::Rename { vnet, name } => {
            let id = one(vnet).await?;
            c.vnet().rename(id, &name).await?;
            Ok(0)
        }
        Verb::Chown { vnets, user, group } => {
            let l = ids(vnets).await?;
            let uid = resolve::id(c, Kind::User, &user).await?;
            let gid = match group {
                Some(g) => resolve::id(c, Kind::Group, &g).await?,
                None => -1,
            };
            Ok(each(
                &l,
                |id| async move { Ok(c.vnet().chown(id, uid, gid).await?) },
            )
            .await)
        }
        Verb::Chgrp { vnets, group } => {
            let l = ids(vnets).await?;
            let gid = resolve::id(c, Kind::Group, &group).await?;
            Ok(each(
                &l,
                |id| async move { Ok(c.vnet().chown(id, -1, gid).await?) },
            )
            .await)
        }
        Verb::Chmod { vnets, mode } => {
            let mode = parse_chmod(&mode)?;
            let l = ids(vnets).await?;
            let mode = &mode;
            Ok(each(&l, |id| async move { Ok(c.vnet().chmod(id, mode).await?) }).await)
        }
        Verb::Lock { vnets, level } => {
            let l = ids(vnets).await?;
            let level = level.level();
            Ok(each(&l, |id| async move { Ok(c.vnet().lock(id, level).await?) }).await)
        }
        Verb::Unlock { vnets } => {
            let l = ids(vnets).await?;
            Ok(each(&l, |id| async move { Ok(c.vnet().unlock(id).await?) }).await)
        }
        Verb::List { who, opts } => {
            let f = filter_flag(ctx, who.as_deref()).await?;
            let r = PoolRange::default();
            let table = list_table(&opts);
            print_list(out, &opts, &table, c.vnet().list_xml(f, r), async {
                let mut v = c.vnet().list(f, r).await?;
                newest_first(&mut v);
                Ok(v)
            })
            .await
        }
        Verb::Show {
            vnet,
            format,
            show_ar,
            ..
        } => {
            let id = one(vnet).await?;
            if print_document(out, &format, c.vnet().info_xml(id)).await? {
                return Ok(0);
            }
            show(out, &c.vnet().info(id).await?, show_ar)?;
            Ok(0)
        }
    }
}

/// `onevnet list`'s columns (OpenNebula 7's onevnet.yaml).
pub fn list_table(opts: &ListOpts) -> Table<'_, VirtualNetwork> {
    let numeric = opts.numeric;
    type N = VirtualNetwork;
    Table {
        cols: vec![
            Col::new("ID", "ONE identifier for Virtual Network", 4, |n: &N| {
                n.id.to_string()
            })
            .adjust(),
            Col::new(
                "USER",
                "Username of the Virtual Network owner",
                8,
                move |n: &N| owner_name(numeric, n.owner.uid, &n.owner.uname),
            )
            .left(),
            Col::new("GROUP", "Group of the Virtual Network", 8, move |n: &N| {
                owner_name(numeric, n.owner.gid, &n.owner.gname)
            })
            .left(),
            Col::new("NAME", "Name of the Virtual Network", 15, |n: &N| {
                n.name.clone()
            })
            .left()
            .expand(),
            Col::new("CLUSTERS", "Cluster IDs", 10, |n: &N| {
                clusters_str(&n.clusters)
            })
            .left(),
            Col::new(
                "BRIDGE",
                "Bridge associated to the Virtual Network",
                8,
                |n: &N| n.bridge.clone(),
            )
            .left()
            .expand(),
            Col::new("STATE", "State of the Virtual Network", 6, |n: &N| {
                n.short_state().to_string()
            })
            .left()
            .expand(),
            Col::new(
                "LEASES",
                "Number of this Virtual Network's given leases",
                6,
                |n: &N| n.used_leases.to_string(),
            ),
            Col::new(
                "UPDATED",
                "Number of VMs with updated VN attributes",
                4,
                |n: &N| n.updated_vms.len().to_string(),
            ),
            Col::new(
                "OUTDATED",
                "Number of VMs with outdated VN attributes",
                4,
                |n: &N| n.outdated_vms.len().to_string(),
            ),
            Col::new(
                "ERROR",
                "Number of VMs that failed to update VN attributes",
                4,
                |n: &N| n.error_vms.len().to_string(),
            ),
        ],
        default: vec![
            "ID", "USER", "GROUP", "NAME", "CLUSTERS", "BRIDGE", "STATE", "LEASES", "OUTDATED",
            "ERROR",
        ],
        stat: "STAT",
    }
}

/// `onevnet show`'s layout.
pub fn show(out: &mut dyn Write, n: &VirtualNetwork, show_ar: bool) -> CliResult<()> {
    const W: usize = 25;
    section(out, &format!("VIRTUAL NETWORK {} INFORMATION", n.id), true)?;
    kv20(out, W, "ID", &n.id.to_string())?;
    kv20(out, W, "NAME", &n.name)?;
    kv20(out, W, "USER", &n.owner.uname)?;
    kv20(out, W, "GROUP", &n.owner.gname)?;
    kv20(out, W, "LOCK", n.lock.map_or("None", |l| l.level_name()))?;
    kv20(out, W, "CLUSTERS", &clusters_str(&n.clusters))?;
    kv20(out, W, "BRIDGE", &n.bridge)?;
    kv20(out, W, "STATE", &n.state_name())?;
    if !n.vn_mad.is_empty() {
        kv20(out, W, "VN_MAD", &n.vn_mad)?;
    }
    if !n.phydev.is_empty() {
        kv20(out, W, "PHYSICAL DEVICE", &n.phydev)?;
    }
    if !n.vlan_id.is_empty() {
        kv20(out, W, "VLAN ID", &n.vlan_id)?;
    }
    let yes = |b: bool| if b { "YES" } else { "NO" };
    kv20(out, W, "AUTOMATIC VLAN ID", yes(n.vlan_id_automatic))?;
    if !n.outer_vlan_id.is_empty() {
        kv20(out, W, "OUTER VLAN ID", &n.outer_vlan_id)?;
    }
    kv20(
        out,
        W,
        "AUTOMATIC OUTER VLAN ID",
        yes(n.outer_vlan_id_automatic),
    )?;
    kv20(out, W, "USED LEASES", &n.used_leases.to_string())?;
    writeln!(out)?;
    permissions(out, W, &n.permissions)?;
    writeln!(out)?;
    section(out, "VIRTUAL NETWORK TEMPLATE", false)?;
    writeln!(out, "{}", template_str(&n.template, &[], false))?;
    writeln!(out)?;
    section(out, "ADDRESS RANGE POOL", false)?;
    for ar in &n.address_ranges {
        section(out, &format!("AR {}", ar.id), true)?;
        let get = |k: &str| ar.get(k).unwrap_or("").to_string();
        kv20(out, 15, "SIZE", &get("SIZE"))?;
        kv20(out, 15, "LEASES", &get("USED_LEASES"))?;
        if let Some(v) = ar.get("VN_MAD") {
            kv20(out, 15, "VN_MAD", v)?;
        }
        if let Some(v) = ar.get("IPAM_MAD") {
            kv20(out, 15, "IPAM_MAD", v)?;
        }
        writeln!(out)?;
        let row = |a: &str, b: &str, c: &str| format!("{a:<10} {b:>34} {c:>34}");
        header(out, &row("RANGE", "FIRST", "LAST"), false)?;
        writeln!(out, "{}", row("MAC", &get("MAC"), &get("MAC_END")))?;
        for (name, first, last) in [
            ("IP", "IP", "IP_END"),
            ("IP6_GLOBAL", "IP6_GLOBAL", "IP6_GLOBAL_END"),
            ("IP6_ULA", "IP6_ULA", "IP6_ULA_END"),
            ("IP6", "IP6", "IP6_END"),
        ] {
            if let Some(f) = ar.get(first) {
                writeln!(out, "{}", row(name, f, ar.get(last).unwrap_or("")))?;
            }
        }
        writeln!(out)?;
    }
    writeln!(out)?;
    section(out, "LEASES", false)?;
    let leases: Vec<(i64, &Vector)> = n
        .address_ranges
        .iter()
        .flat_map(|ar| ar.leases.iter().map(move |l| (ar.id, l)))
        .collect();
    type L<'a> = (i64, &'a Vector);
    Table {
        cols: vec![
            Col::new("AR", "", 3, |l: &L| l.0.to_string()).left(),
            Col::new("OWNER", "", 10, |l: &L| {
                if let Some(vm) = l.1.get("VM") {
                    format!("V:{vm}")
                } else if let Some(n) = l.1.get("VNET") {
                    format!("N:{n}")
                } else if let Some(r) = l.1.get("VROUTER") {
                    format!("R:{r}")
                } else {
                    String::new()
                }
            })
            .left(),
            Col::new("MAC", "", 5, |l: &L| {
                l.1.get("MAC").unwrap_or("").to_string()
            })
            .adjust(),
            Col::new("IP", "", 5, |l: &L| {
                l.1.get("IP").unwrap_or("-").to_string()
            })
            .adjust(),
            Col::new("PORT_FORWARD", "", 5, |l: &L| {
                match (
                    l.1.get("EXTERNAL_PORT_RANGE"),
                    l.1.get("INTERNAL_PORT_RANGE"),
                ) {
                    (Some(e), Some(i)) => {
                        format!("[{e}]:[{}]", i.split('/').next().unwrap_or(""))
                    }
                    _ => "-".into(),
                }
            })
            .adjust(),
            Col::new("IP6", "", 5, |l: &L| {
                l.1.get("IP6")
                    .or_else(|| l.1.get("IP6_GLOBAL"))
                    .unwrap_or("-")
                    .to_string()
            })
            .adjust(),
        ],
        default: vec!["AR", "OWNER", "MAC", "IP", "PORT_FORWARD", "IP6"],
        stat: "",
    }
    .print(&leases, &ListOpts::default(), out)?;
    writeln!(out)?;
    header(out, &format!("{:<15}", "VIRTUAL ROUTERS"), true)?;
    for id in &n.vrouters {
        writeln!(out, "{id:<15}")?;
    }
    writeln!(out)?;
    section(out, "VIRTUAL MACHINES", false)?;
    let join = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    kv20(out, W, "UPDATED", &join(&n.updated_vms))?;
    kv20(out, W, "OUTDATED", &join(&n.outdated_vms))?;
    kv20(out, W, "ERROR", &join(&n.error_vms))?;
    if show_ar {
        for ar in &n.address_ranges {
            writeln!(out)?;
            section(out, &format!("ADDRESS RANGE {}", ar.id), true)?;
            for (k, v) in &ar.attrs.attrs {
                kv20(out, 15, k, v)?;
            }
        }
    }
    Ok(())
}
