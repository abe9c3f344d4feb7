//! A running cloud written back as a cloud file (Ambari's "export blueprint"): all of it, or
//! the objects of one user or one cluster. Hosts with the same settings become one host group;
//! VMs made from the same template become one VM set with its count. Password hashes, login
//! tokens and the token password are never written: exported users carry no password
//! source (a secret is only needed to create a user).
//!
//! Unless told not to, the exported objects are then marked as managed by the named cloud, so
//! that `onecloud plan` of the file shows nothing to do and, from then on, shows any change
//! made by hand.

use crate::diff::is_system;
use crate::error::Error;
use crate::live::{self, Live, is_builtin};
use crate::load::{LoadOptions, load_str};
use crate::model::{Kind, MARKER, ObjKey, Spec, VM_MARKER};
use crate::plan::{acl_string, vm_digest};
use crate::source::Format;
use oca::{AttrValue, Client, Template, UpdateMode, Vector};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};

/// What to export.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// The cloud's name (written as `cloud:` and into the markers).
    pub name: String,
    /// Only this user's objects.
    pub user: Option<String>,
    /// Only this cluster's objects.
    pub cluster: Option<String>,
    /// Mark the exported objects as managed by `name`.
    pub adopt: bool,
    pub format: Format,
}

/// The result of an export.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The cloud file.
    pub text: String,
    /// How many objects it declares.
    pub objects: usize,
    /// What was left out and why, what was marked (for standard error).
    pub messages: Vec<String>,
}

/// An ordered value of the file being written.
#[derive(Clone, Debug, PartialEq)]
pub enum Out {
    Str(String),
    Bool(bool),
    List(Vec<Out>),
    Map(Vec<(String, Out)>),
}

impl Out {
    fn map() -> Out {
        Out::Map(Vec::new())
    }

    fn set(&mut self, k: &str, v: Out) {
        if let Out::Map(m) = self {
            m.push((k.to_owned(), v));
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Out::Map(m) => m.is_empty(),
            Out::List(l) => l.is_empty(),
            _ => false,
        }
    }

    fn str(s: impl Into<String>) -> Out {
        Out::Str(s.into())
    }
}

/// A number written as text stays a number in the file when it reads back the same.
fn as_int(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|i| i.to_string() == s)
}

impl Serialize for Out {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Out::Str(v) => match as_int(v) {
                Some(i) => s.serialize_i64(i),
                None => s.serialize_str(v),
            },
            Out::Bool(b) => s.serialize_bool(*b),
            Out::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Out::Map(entries) => {
                let mut m = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

fn to_toml(o: &Out) -> toml::Value {
    match o {
        Out::Str(v) => match as_int(v) {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::String(v.clone()),
        },
        Out::Bool(b) => toml::Value::Boolean(*b),
        Out::List(items) => toml::Value::Array(items.iter().map(to_toml).collect()),
        Out::Map(entries) => toml::Value::Table(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), to_toml(v)))
                .collect(),
        ),
    }
}

/// Writes the document in a format.
pub fn write(doc: &Out, format: Format) -> Result<String, Error> {
    match format {
        Format::Yaml => yaml_serde::to_string(doc)
            .map(|s| format!("# Cloud file written by `onecloud export`.\n{s}"))
            .map_err(|e| Error::Other(format!("writing YAML: {e}"))),
        Format::Toml => {
            let toml::Value::Table(t) = to_toml(doc) else {
                return Err(Error::Other("the document is not a table".into()));
            };
            toml::to_string(&t)
                .map(|s| format!("# Cloud file written by `onecloud export`.\n{s}"))
                .map_err(|e| Error::Other(format!("writing TOML: {e}")))
        }
    }
}

/// A template as a mapping: vectors as mappings, repeated names as lists. `keep` decides
/// which attributes are written.
fn template_out(t: &Template, keep: impl Fn(&str) -> bool) -> Out {
    let mut names: Vec<&str> = Vec::new();
    for a in &t.attrs {
        if keep(&a.name) && !names.contains(&a.name.as_str()) {
            names.push(&a.name);
        }
    }
    let mut out = Out::map();
    for n in names {
        let values: Vec<Out> = t
            .attrs
            .iter()
            .filter(|a| a.name == n)
            .map(|a| match &a.value {
                AttrValue::Single(s) => Out::str(s.clone()),
                AttrValue::Vector(v) => vector_out(v),
            })
            .collect();
        if values.len() == 1 {
            out.set(n, values.into_iter().next().unwrap_or(Out::map()));
        } else {
            out.set(n, Out::List(values));
        }
    }
    out
}

fn vector_out(v: &Vector) -> Out {
    Out::Map(
        v.attrs
            .iter()
            .map(|(k, x)| (k.clone(), Out::str(x.clone())))
            .collect(),
    )
}

fn names_out(names: impl IntoIterator<Item = String>) -> Out {
    Out::List(names.into_iter().map(Out::Str).collect())
}

/// Whether an object may be exported: not OpenNebula's own, not another cloud's.
fn eligible(
    messages: &mut Vec<String>,
    cloud: &str,
    kind: Kind,
    key: &ObjKey,
    id: i64,
    t: &Template,
) -> bool {
    if is_builtin(kind, id) {
        return false;
    }
    match live::marker(t) {
        Some(m) if m != cloud => {
            messages.push(format!(
                "onecloud: {key} (id {id}) left out: managed by cloud {m:?}"
            ));
            false
        }
        _ => true,
    }
}

/// What is exported, by key.
pub struct Picked {
    keys: BTreeSet<ObjKey>,
}

/// Writes the cloud file of the cloud `client` sees, and marks what it wrote.
pub async fn export(client: &Client, opts: &ExportOptions) -> Result<Exported, Error> {
    let live = Live::read(client).await.map_err(Error::Read)?;
    let applier = client.username().to_owned();
    let (doc, picked, mut messages) = build(&live, &applier, opts)?;
    let text = write(&doc, opts.format)?;
    // The written file must read back: it is what `plan` will read.
    let loaded = load_str(
        "exported file",
        &text,
        opts.format,
        &LoadOptions {
            applier: applier.clone(),
            ..LoadOptions::default()
        },
    )
    .map_err(|d| {
        Error::Other(format!(
            "the exported file does not read back (a bug):\n{d}"
        ))
    })?;
    if opts.adopt {
        let marked = mark(client, &live, &opts.name, &picked, &loaded).await?;
        messages.push(format!(
            "onecloud: {marked} objects marked as managed by cloud {:?}",
            opts.name
        ));
    }
    Ok(Exported {
        text,
        objects: loaded.objects.len(),
        messages,
    })
}

/// The file for `live`, what it declares, and messages about what was left out.
pub fn build(
    live: &Live,
    applier: &str,
    opts: &ExportOptions,
) -> Result<(Out, Picked, Vec<String>), Error> {
    let cloud = opts.name.as_str();
    let mut messages = Vec::new();
    let mut picked = Picked {
        keys: BTreeSet::new(),
    };
    let mut external: BTreeSet<ObjKey> = BTreeSet::new();
    let builtin_keys: BTreeSet<ObjKey> = crate::decode::builtins().into_iter().collect();
    let user_filter = opts.user.as_deref();
    let cluster_id = match &opts.cluster {
        None => None,
        Some(c) => Some(
            live.cluster(c)
                .map(|c| c.id)
                .ok_or_else(|| Error::Other(format!("no cluster {c:?}")))?,
        ),
    };
    if let Some(u) = user_filter
        && live.user(u).is_none()
    {
        return Err(Error::Other(format!("no user {u:?}")));
    }
    let owned_key = |kind: Kind, uname: &str, name: &str| ObjKey::owned(kind, uname, name);
    // Written names: `name` for the applier's objects, `owner/name` for others'.
    let written = |k: &ObjKey| -> String {
        match &k.owner {
            Some(o) if o != applier => format!("{o}/{}", k.name),
            _ => k.name.clone(),
        }
    };
    let all = user_filter.is_none() && cluster_id.is_none();
    let in_cluster = |ids: &[i64]| cluster_id.is_none_or(|c| ids.contains(&c));
    let of_user = |uname: &str| user_filter.is_none_or(|u| u == uname);
    let refer = |external: &mut BTreeSet<ObjKey>, picked: &Picked, k: ObjKey| {
        if !picked.keys.contains(&k) && !builtin_keys.contains(&k) {
            external.insert(k);
        }
    };

    let mut root = Out::map();
    root.set("cloud", Out::str(cloud));

    // Groups and users (whole cloud or one user).
    let mut groups = Out::map();
    if all {
        for g in &live.groups {
            let key = ObjKey::new(Kind::Group, &g.name);
            if !eligible(&mut messages, cloud, Kind::Group, &key, g.id, &g.template) {
                continue;
            }
            picked.keys.insert(key);
        }
    }
    let mut users = Out::map();
    for u in &live.users {
        let key = ObjKey::new(Kind::User, &u.name);
        if !(all || user_filter == Some(u.name.as_str()))
            || !eligible(&mut messages, cloud, Kind::User, &key, u.id, &u.template)
        {
            continue;
        }
        picked.keys.insert(key);
    }
    let gname = |id: i64| {
        live.groups
            .iter()
            .find(|g| g.id == id)
            .map(|g| g.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let uname = |id: i64| {
        live.users
            .iter()
            .find(|u| u.id == id)
            .map(|u| u.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    for g in live.groups.iter().rev() {
        let key = ObjKey::new(Kind::Group, &g.name);
        if !picked.keys.contains(&key) {
            continue;
        }
        let mut o = Out::map();
        let t = template_out(&g.template, |n| n != MARKER);
        if !t.is_empty() {
            o.set("template", t);
        }
        let admins: Vec<String> = g.admins.iter().map(|u| uname(*u)).collect();
        if !admins.is_empty() {
            for a in &admins {
                refer(&mut external, &picked, ObjKey::new(Kind::User, a));
            }
            o.set("admins", names_out(admins));
        }
        let q = quotas_out(
            live,
            &g.quotas,
            applier,
            &picked,
            &mut external,
            &builtin_keys,
        );
        if !q.is_empty() {
            o.set("quotas", q);
        }
        groups.set(&g.name, o);
    }
    for u in live.users.iter().rev() {
        let key = ObjKey::new(Kind::User, &u.name);
        if !picked.keys.contains(&key) {
            continue;
        }
        let mut o = Out::map();
        o.set("group", Out::str(gname(u.gid)));
        refer(
            &mut external,
            &picked,
            ObjKey::new(Kind::Group, gname(u.gid)),
        );
        let secondary: Vec<String> = u
            .groups
            .iter()
            .filter(|g| **g != u.gid)
            .map(|g| gname(*g))
            .collect();
        for g in &secondary {
            refer(&mut external, &picked, ObjKey::new(Kind::Group, g));
        }
        o.set("groups", names_out(secondary));
        if !u.auth_driver.is_empty() && u.auth_driver != "core" {
            o.set("auth_driver", Out::str(u.auth_driver.clone()));
        }
        if !u.enabled {
            o.set("enabled", Out::Bool(false));
        }
        // Never the password hash, the login tokens or the token password.
        let t = template_out(&u.template, |n| n != MARKER && n != "TOKEN_PASSWORD");
        if !t.is_empty() {
            o.set("template", t);
        }
        let q = quotas_out(
            live,
            &u.quotas,
            applier,
            &picked,
            &mut external,
            &builtin_keys,
        );
        if !q.is_empty() {
            o.set("quotas", q);
        }
        users.set(&u.name, o);
    }

    // Clusters, hosts, datastores.
    let mut clusters = Out::map();
    if all || cluster_id.is_some() {
        for c in live.clusters.iter().rev() {
            let key = ObjKey::new(Kind::Cluster, &c.name);
            if cluster_id.is_some_and(|id| id != c.id)
                || !eligible(&mut messages, cloud, Kind::Cluster, &key, c.id, &c.template)
            {
                continue;
            }
            picked.keys.insert(key);
            let mut o = Out::map();
            let t = template_out(&c.template, |n| n != MARKER);
            if !t.is_empty() {
                o.set("template", t);
            }
            clusters.set(&c.name, o);
        }
    }
    let cluster_name = |id: i64| {
        live.clusters
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    // Hosts with the same settings form one host group.
    let mut host_groups: Vec<(String, Out, Vec<String>)> = Vec::new();
    if all || cluster_id.is_some() {
        let mut by_settings: BTreeMap<(String, String, String, String), Vec<&oca::Host>> =
            BTreeMap::new();
        for h in live.hosts.iter().rev() {
            let key = ObjKey::new(Kind::Host, &h.name);
            if !in_cluster(&[h.cluster_id])
                || !eligible(&mut messages, cloud, Kind::Host, &key, h.id, &h.template)
            {
                continue;
            }
            picked.keys.insert(key);
            let mut t = h.template.clone();
            t.attrs
                .retain(|a| a.name != MARKER && !is_system(Kind::Host, &a.name));
            by_settings
                .entry((
                    cluster_name(h.cluster_id),
                    h.im_mad.clone(),
                    h.vm_mad.clone(),
                    t.to_text(),
                ))
                .or_default()
                .push(h);
        }
        let mut used = BTreeSet::new();
        for ((cluster, im, vm, _), hosts) in by_settings {
            let base = format!("{cluster}-{im}");
            let mut name = base.clone();
            let mut i = 2;
            while !used.insert(name.clone()) {
                name = format!("{base}-{i}");
                i += 1;
            }
            let mut o = Out::map();
            if cluster != "default" {
                refer(&mut external, &picked, ObjKey::new(Kind::Cluster, &cluster));
                o.set("cluster", Out::str(cluster.clone()));
            }
            o.set("im_mad", Out::str(im.clone()));
            if vm != im {
                o.set("vm_mad", Out::str(vm.clone()));
            }
            let t = template_out(&hosts[0].template, |n| {
                n != MARKER && !is_system(Kind::Host, n)
            });
            if !t.is_empty() {
                o.set("template", t);
            }
            host_groups.push((name, o, hosts.iter().map(|h| h.name.clone()).collect()));
        }
    }
    let mut datastores = Out::map();
    for d in live.datastores.iter().rev() {
        let key = ObjKey::new(Kind::Datastore, &d.name);
        if !(all || (cluster_id.is_some() && in_cluster(&d.clusters)))
            || !eligible(
                &mut messages,
                cloud,
                Kind::Datastore,
                &key,
                d.id,
                &d.template,
            )
        {
            continue;
        }
        picked.keys.insert(key);
        let mut o = Out::map();
        let cs: Vec<String> = d.clusters.iter().map(|c| cluster_name(*c)).collect();
        for c in &cs {
            refer(&mut external, &picked, ObjKey::new(Kind::Cluster, c));
        }
        o.set("clusters", names_out(cs));
        o.set(
            "template",
            template_out(&d.template, |n| {
                n != MARKER && !is_system(Kind::Datastore, n)
            }),
        );
        datastores.set(&d.name, o);
    }

    // Owned objects.
    let ownership = |o: &mut Out, owner: &oca::Ownership, perms: &oca::Permissions| {
        let primary = live.users.iter().find(|u| u.id == owner.uid).map(|u| u.gid);
        if primary != Some(owner.gid) {
            o.set("group", Out::str(owner.gname.clone()));
        }
        o.set("permissions", Out::str(format!("{:03o}", perms.octal())));
    };
    let mut secgroups = Out::map();
    for s in live.secgroups.iter().rev() {
        let key = owned_key(Kind::SecurityGroup, &s.owner.uname, &s.name);
        if !(all || (user_filter.is_some() && of_user(&s.owner.uname)))
            || !eligible(
                &mut messages,
                cloud,
                Kind::SecurityGroup,
                &key,
                s.id,
                &s.template,
            )
        {
            continue;
        }
        picked.keys.insert(key.clone());
        let mut o = Out::map();
        ownership(&mut o, &s.owner, &s.permissions);
        o.set("template", template_out(&s.template, |n| n != MARKER));
        secgroups.set(&written(&key), o);
    }
    let mut networks = Out::map();
    for n in live.networks.iter().rev() {
        let key = owned_key(Kind::Network, &n.owner.uname, &n.name);
        let wanted = all
            || (user_filter.is_some() && of_user(&n.owner.uname))
            || (cluster_id.is_some() && in_cluster(&n.clusters));
        if !wanted
            || !n.parent_network_id.is_empty()
            || !eligible(&mut messages, cloud, Kind::Network, &key, n.id, &n.template)
        {
            continue;
        }
        picked.keys.insert(key.clone());
        let mut o = Out::map();
        ownership(&mut o, &n.owner, &n.permissions);
        let cs: Vec<String> = n.clusters.iter().map(|c| cluster_name(*c)).collect();
        for c in &cs {
            refer(&mut external, &picked, ObjKey::new(Kind::Cluster, c));
        }
        o.set("clusters", names_out(cs));
        let sgs: Vec<ObjKey> = n
            .template
            .get("SECURITY_GROUPS")
            .unwrap_or("")
            .split(',')
            .filter_map(|x| x.trim().parse::<i64>().ok())
            .filter_map(|id| live.key_of(Kind::SecurityGroup, id))
            .collect();
        for sg in &sgs {
            refer(&mut external, &picked, sg.clone());
        }
        o.set("security_groups", names_out(sgs.iter().map(&written)));
        o.set(
            "template",
            template_out(&n.template, |a| {
                a != MARKER
                    && a != "SECURITY_GROUPS"
                    && a != "BRIDGE_TYPE"
                    && !(is_system(Kind::Network, a)
                        && n.template.get(a).is_none_or(|v| v.is_empty()))
                    && !(a == "VLAN_ID" && n.vlan_id_automatic)
                    && !(a == "OUTER_VLAN_ID" && n.outer_vlan_id_automatic)
            }),
        );
        let mut ars: Vec<&oca::AddressRange> = n.address_ranges.iter().collect();
        ars.sort_by_key(|a| a.id);
        let ars: Vec<Out> = ars
            .iter()
            .map(|a| {
                let mut v = a.attrs.clone();
                v.attrs.retain(|(k, _)| {
                    let computed = AR_NOT_WRITTEN.contains(&k.as_str());
                    // A MAC is written only for Ethernet ranges (elsewhere it follows the IP).
                    let derived_mac = k == "MAC" && a.get("TYPE") != Some("ETHER");
                    !(computed || derived_mac)
                });
                vector_out(&v)
            })
            .collect();
        o.set("address_ranges", Out::List(ars));
        networks.set(&written(&key), o);
    }
    let mut images = Out::map();
    for i in live.images.iter().rev() {
        let key = owned_key(Kind::Image, &i.owner.uname, &i.name);
        if !(all || (user_filter.is_some() && of_user(&i.owner.uname)))
            || !eligible(&mut messages, cloud, Kind::Image, &key, i.id, &i.template)
        {
            continue;
        }
        picked.keys.insert(key.clone());
        let mut o = Out::map();
        ownership(&mut o, &i.owner, &i.permissions);
        refer(
            &mut external,
            &picked,
            ObjKey::new(Kind::Datastore, &i.datastore),
        );
        o.set("datastore", Out::str(i.datastore.clone()));
        let mut t = Template::default();
        t.set("TYPE", i.type_name());
        t.set("PERSISTENT", if i.persistent { "YES" } else { "NO" });
        if i.path.is_empty() {
            t.set("SIZE", i.size.to_string());
        } else {
            t.set("PATH", i.path.clone());
        }
        if !i.format.is_empty() {
            t.set("FORMAT", i.format.clone());
        }
        if !i.fs.is_empty() {
            t.set("FS", i.fs.clone());
        }
        for a in &i.template.attrs {
            if a.name != MARKER && a.name != "ERROR" {
                t.attrs.push(a.clone());
            }
        }
        o.set("template", template_out(&t, |_| true));
        images.set(&written(&key), o);
    }
    let mut templates = Out::map();
    for t in live.templates.iter().rev() {
        let key = owned_key(Kind::Template, &t.owner.uname, &t.name);
        if !(all || (user_filter.is_some() && of_user(&t.owner.uname)))
            || !eligible(
                &mut messages,
                cloud,
                Kind::Template,
                &key,
                t.id,
                &t.template,
            )
        {
            continue;
        }
        picked.keys.insert(key.clone());
        let mut o = Out::map();
        ownership(&mut o, &t.owner, &t.permissions);
        for a in &t.template.attrs {
            let (kind, field) = match a.name.as_str() {
                "DISK" => (Kind::Image, "IMAGE"),
                "NIC" | "NIC_ALIAS" => (Kind::Network, "NETWORK"),
                _ => continue,
            };
            if let AttrValue::Vector(v) = &a.value
                && let Some(n) = v.get(field)
            {
                let owner = v
                    .get(&format!("{field}_UNAME"))
                    .unwrap_or(applier)
                    .to_owned();
                refer(&mut external, &picked, ObjKey::owned(kind, owner, n));
            }
        }
        o.set(
            "template",
            template_out(&t.template, |n| n != MARKER && n != "NAME"),
        );
        templates.set(&written(&key), o);
    }
    // VMs: by set (theirs, when marked) or by template.
    let mut sets: BTreeMap<ObjKey, (ObjKey, Vec<i64>)> = BTreeMap::new();
    for vm in &live.vms {
        if !(all || (user_filter.is_some() && of_user(&vm.owner.uname))) {
            continue;
        }
        let marker = live::vm_marker(vm);
        if let Some((c, _, _)) = marker
            && c != cloud
        {
            messages.push(format!(
                "onecloud: VM {} (id {}) left out: managed by cloud {c:?}",
                vm.name, vm.id
            ));
            continue;
        }
        let tid = vm
            .template
            .get("TEMPLATE_ID")
            .and_then(|t| t.trim().parse::<i64>().ok());
        let Some(tkey) = tid.and_then(|id| live.key_of(Kind::Template, id)) else {
            messages.push(format!(
                "onecloud: VM {} (id {}) left out: it was not made from a template that exists",
                vm.name, vm.id
            ));
            continue;
        };
        let set = match marker {
            Some((_, set, _)) if !set.is_empty() => match set.split_once('/') {
                Some((o, n)) => ObjKey::owned(Kind::Vm, o, n),
                None => ObjKey::owned(Kind::Vm, &vm.owner.uname, set),
            },
            _ => ObjKey::owned(Kind::Vm, &vm.owner.uname, &tkey.name),
        };
        let entry = sets
            .entry(set)
            .or_insert_with(|| (tkey.clone(), Vec::new()));
        if entry.0 != tkey {
            messages.push(format!(
                "onecloud: VM {} (id {}) left out: its set is made from template {} but it is from {}",
                vm.name,
                vm.id,
                entry.0.full_name(),
                tkey.full_name()
            ));
            continue;
        }
        entry.1.push(vm.id);
    }
    let mut vms = Out::map();
    for (set, (tkey, ids)) in &sets {
        refer(&mut external, &picked, tkey.clone());
        picked.keys.insert(set.clone());
        let mut o = Out::map();
        o.set("template", Out::str(written(tkey)));
        o.set("count", Out::str(ids.len().to_string()));
        vms.set(&written(set), o);
    }

    // ACL rules (the whole cloud only): all but OpenNebula's defaults and the rules oned
    // adds itself for group administrators.
    let mut acls = Vec::new();
    if all {
        let automatic = crate::plan::automatic_rules(live);
        for r in &live.acls {
            let Some(p) = r.parsed() else { continue };
            let w = [p.user, p.resource, p.rights, p.zone];
            if automatic.contains(&w) {
                continue;
            }
            acls.push(Out::str(acl_string(live, applier, &p)));
        }
    }

    // External references, by section.
    let mut ext = Out::map();
    for kind in Kind::OBJECTS {
        let names: Vec<String> = external
            .iter()
            .filter(|k| k.kind == kind && !picked.keys.contains(k))
            .map(&written)
            .collect();
        if !names.is_empty() {
            ext.set(kind.section(), names_out(names));
        }
    }
    if !ext.is_empty() {
        root.set("external", ext);
    }
    for (name, section) in [("groups", groups), ("users", users), ("clusters", clusters)] {
        if !section.is_empty() {
            root.set(name, section);
        }
    }
    if !host_groups.is_empty() {
        let mut hg = Out::map();
        for (name, mut o, hosts) in host_groups {
            o.set("hosts", names_out(hosts));
            hg.set(&name, o);
        }
        root.set("host_groups", hg);
    }
    for (name, section) in [
        ("datastores", datastores),
        ("security_groups", secgroups),
        ("networks", networks),
        ("images", images),
        ("templates", templates),
        ("vms", vms),
    ] {
        if !section.is_empty() {
            root.set(name, section);
        }
    }
    if !acls.is_empty() {
        root.set("acls", Out::List(acls));
    }
    Ok((root, picked, messages))
}

/// Address range attributes the cloud computes: not written.
const AR_NOT_WRITTEN: &[&str] = &[
    "AR_ID",
    "MAC_END",
    "IP_END",
    "IP6_END",
    "IP6_GLOBAL",
    "IP6_GLOBAL_END",
    "IP6_ULA",
    "IP6_ULA_END",
    "NEXT_INDEX",
    "USED_LEASES",
    "ALLOCATED",
    "PARENT_NETWORK_AR_ID",
];

fn quotas_out(
    live: &Live,
    q: &oca::Quotas,
    applier: &str,
    picked: &Picked,
    external: &mut BTreeSet<ObjKey>,
    builtins: &BTreeSet<ObjKey>,
) -> Out {
    let limit = |v: &str| -> Option<String> {
        match v.trim() {
            "-1" | "" => None,
            "-2" => Some("unlimited".into()),
            x => Some(x.to_owned()),
        }
    };
    let limits = |v: &Vector| -> Out {
        let mut o = Out::map();
        for (k, x) in &v.attrs {
            if k == "ID" || k.ends_with("_USED") || k == "CLUSTER_IDS" {
                continue;
            }
            if let Some(l) = limit(x) {
                o.set(k, Out::str(l));
            }
        }
        o
    };
    let mut out = Out::map();
    if let Some(vm) = q.vm_global() {
        let l = limits(vm);
        if !l.is_empty() {
            out.set("vm", l);
        }
    }
    for (section, kind, entries) in [
        ("datastores", Kind::Datastore, &q.datastore),
        ("networks", Kind::Network, &q.network),
        ("images", Kind::Image, &q.image),
    ] {
        let mut s = Out::map();
        for v in entries {
            let Some(id) = v.get("ID").and_then(|i| i.trim().parse::<i64>().ok()) else {
                continue;
            };
            let Some(key) = live.key_of(kind, id) else {
                continue;
            };
            let l = limits(v);
            if l.is_empty() {
                continue;
            }
            if !picked.keys.contains(&key) && !builtins.contains(&key) {
                external.insert(key.clone());
            }
            let name = match &key.owner {
                Some(o) if o != applier => format!("{o}/{}", key.name),
                _ => key.name.clone(),
            };
            s.set(&name, l);
        }
        if !s.is_empty() {
            out.set(section, s);
        }
    }
    out
}

/// Marks what was exported as managed by `cloud` (objects already marked are left as
/// they are). VMs get the set marker with the digest of the exported file's set.
async fn mark(
    client: &Client,
    live: &Live,
    cloud: &str,
    picked: &Picked,
    loaded: &crate::model::CloudFile,
) -> Result<usize, Error> {
    let text = format!("{MARKER}=\"{cloud}\"");
    let fail = |what: String| move |e: oca::OcaError| Error::Other(format!("marking {what}: {e}"));
    let mut n = 0;
    macro_rules! mark_kind {
        ($list:expr, $kind:expr, $calls:ident, |$o:ident| $key:expr) => {
            for $o in &$list {
                let key = $key;
                if picked.keys.contains(&key) && live::marker(&$o.template) != Some(cloud) {
                    client
                        .$calls()
                        .update($o.id, &text, UpdateMode::Merge)
                        .await
                        .map_err(fail(key.to_string()))?;
                    n += 1;
                }
            }
        };
    }
    mark_kind!(live.groups, Kind::Group, group, |o| ObjKey::new(
        Kind::Group,
        &o.name
    ));
    mark_kind!(live.users, Kind::User, user, |o| ObjKey::new(
        Kind::User,
        &o.name
    ));
    mark_kind!(live.clusters, Kind::Cluster, cluster, |o| ObjKey::new(
        Kind::Cluster,
        &o.name
    ));
    mark_kind!(live.hosts, Kind::Host, host, |o| ObjKey::new(
        Kind::Host,
        &o.name
    ));
    mark_kind!(
        live.datastores,
        Kind::Datastore,
        datastore,
        |o| ObjKey::new(Kind::Datastore, &o.name)
    );
    mark_kind!(live.secgroups, Kind::SecurityGroup, secgroup, |o| {
        ObjKey::owned(Kind::SecurityGroup, &o.owner.uname, &o.name)
    });
    mark_kind!(live.networks, Kind::Network, vnet, |o| ObjKey::owned(
        Kind::Network,
        &o.owner.uname,
        &o.name
    ));
    mark_kind!(live.images, Kind::Image, image, |o| ObjKey::owned(
        Kind::Image,
        &o.owner.uname,
        &o.name
    ));
    mark_kind!(live.templates, Kind::Template, template, |o| ObjKey::owned(
        Kind::Template,
        &o.owner.uname,
        &o.name
    ));
    // VMs: the set marker, with the digest the file's set gives (so none is out of date).
    for d in &loaded.objects {
        let Spec::Vm(s) = &d.spec else { continue };
        let digest = vm_digest(loaded, s);
        let set = d.key.full_name();
        let tid = live.id_of(&s.template);
        for vm in &live.vms {
            let same_set = match live::vm_marker(vm) {
                Some((c, st, dg)) => {
                    if c == cloud && st == set && dg == digest {
                        continue;
                    }
                    c == cloud && st == set
                }
                None => {
                    vm.owner.uname == d.key.owner.clone().unwrap_or_default()
                        && vm
                            .template
                            .get("TEMPLATE_ID")
                            .and_then(|t| t.trim().parse::<i64>().ok())
                            == tid
                }
            };
            if !same_set {
                continue;
            }
            let mut v = Vector::new();
            v.set("CLOUD", cloud);
            v.set("SET", &set);
            v.set("DIGEST", &digest);
            let mut t = Template::default();
            t.set_vector(VM_MARKER, v);
            client
                .vm()
                .update(vm.id, &t.to_text(), UpdateMode::Merge)
                .await
                .map_err(fail(format!("VM {}", vm.id)))?;
            n += 1;
        }
    }
    Ok(n)
}
