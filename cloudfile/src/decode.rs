//! From the merged [`Node`] tree to checked [`Desired`] objects: every key of the file's own
//! structure is checked (an unknown key is an error naming the keys allowed there), every
//! value's type too; inside `template:` attributes are free, as in OpenNebula. References are
//! turned into [`ObjKey`]s here and checked (exist, no cycle) in [`crate::refs`].

use crate::error::{Diag, Diags};
use crate::model::*;
use crate::source::{Key, Node, Pos, Value, section_noun};
use oca::{AttrValue, Template, Vector};
use one_proto::acl::{self, AuthOp, ObjectType};
use one_proto::template::{Attribute, canonical_name};

/// Reads the keys of one mapping; [`Fields::finish`] reports those nobody asked for.
struct Fields<'a> {
    entries: &'a [(Key, Node)],
    used: Vec<bool>,
    what: String,
}

impl<'a> Fields<'a> {
    fn new(node: &'a Node, what: impl Into<String>, diags: &mut Diags) -> Option<Fields<'a>> {
        let what = what.into();
        match &node.value {
            Value::Map(entries) => Some(Fields {
                entries,
                used: vec![false; entries.len()],
                what,
            }),
            // `name: ~` or `name:` declares an object with everything default.
            Value::Null => Some(Fields {
                entries: &[],
                used: Vec::new(),
                what,
            }),
            _ => {
                diags.push(Diag::new(
                    &node.pos,
                    format!("{what} must be a mapping, not {}", node.what()),
                ));
                None
            }
        }
    }

    fn get(&mut self, key: &str) -> Option<&'a Node> {
        let i = self.entries.iter().position(|(k, _)| k.name == key)?;
        self.used[i] = true;
        Some(&self.entries[i].1)
    }

    /// Reports unknown keys; `allowed` is what the message offers instead.
    fn finish(self, allowed: &[&str], diags: &mut Diags) {
        for (i, (k, _)) in self.entries.iter().enumerate() {
            if !self.used[i] {
                let hint = allowed
                    .iter()
                    .find(|a| a.eq_ignore_ascii_case(&k.name) || close(a, &k.name))
                    .map_or(String::new(), |a| format!(" (did you mean {a:?}?)"));
                diags.push(Diag::new(
                    &k.pos,
                    format!(
                        "unknown key {:?} in {}{hint}; allowed: {}",
                        k.name,
                        self.what,
                        allowed.join(", ")
                    ),
                ));
            }
        }
    }
}

/// Two keys one typo apart (a letter changed, added or dropped).
fn close(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 || a.len() < 4 {
        return false;
    }
    let (mut i, mut j, mut edits) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            i += 1;
            j += 1;
            continue;
        }
        edits += 1;
        match a.len().cmp(&b.len()) {
            std::cmp::Ordering::Greater => i += 1,
            std::cmp::Ordering::Less => j += 1,
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    edits + (a.len() - i) + (b.len() - j) <= 1
}

fn scalar<'a>(node: &'a Node, what: &str, diags: &mut Diags) -> Option<&'a str> {
    match &node.value {
        Value::Scalar(s) => Some(s),
        _ => {
            diags.push(Diag::new(
                &node.pos,
                format!("{what} must be a single value, not {}", node.what()),
            ));
            None
        }
    }
}

fn boolean(node: &Node, what: &str, diags: &mut Diags) -> Option<bool> {
    let s = scalar(node, what, diags)?;
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Some(true),
        "false" | "no" | "off" => Some(false),
        _ => {
            diags.push(Diag::new(
                &node.pos,
                format!("{what} must be true or false, not {s:?}"),
            ));
            None
        }
    }
}

fn count(node: &Node, what: &str, diags: &mut Diags) -> Option<u32> {
    let s = scalar(node, what, diags)?;
    match s.trim().parse::<u32>() {
        Ok(n) if n <= 10_000 => Some(n),
        _ => {
            diags.push(Diag::new(
                &node.pos,
                format!("{what} must be a whole number from 0 to 10000, not {s:?}"),
            ));
            None
        }
    }
}

fn names(node: &Node, what: &str, diags: &mut Diags) -> Option<Vec<(String, Pos)>> {
    match &node.value {
        Value::List(items) => Some(
            items
                .iter()
                .filter_map(|i| scalar(i, what, diags).map(|s| (s.to_owned(), i.pos.clone())))
                .collect(),
        ),
        Value::Scalar(s) => Some(vec![(s.clone(), node.pos.clone())]),
        _ => {
            diags.push(Diag::new(
                &node.pos,
                format!("{what} must be a list of names, not {}", node.what()),
            ));
            None
        }
    }
}

/// Checks an object name: something OpenNebula accepts and this file format can refer to.
fn check_name(name: &str, pos: &Pos, what: &str, diags: &mut Diags) -> bool {
    let bad = if name.trim().is_empty() {
        Some("is empty")
    } else if name.trim() != name {
        Some("starts or ends with a space")
    } else if name.contains('/') {
        Some("contains '/' (written owner/name only where an owner may be given)")
    } else if name.chars().any(|c| c.is_control() || c == '"') {
        Some("contains a control character or '\"'")
    } else {
        None
    };
    if let Some(why) = bad {
        diags.push(Diag::new(pos, format!("the {what} name {name:?} {why}")));
        return false;
    }
    true
}

/// A free OpenNebula template from a mapping: single values, vectors (a mapping of single
/// values) and repeated attributes (a list).
fn template(node: &Node, what: &str, diags: &mut Diags) -> Template {
    let mut t = Template::default();
    let entries = match &node.value {
        Value::Map(m) => m,
        Value::Null => return t,
        _ => {
            diags.push(Diag::new(
                &node.pos,
                format!(
                    "{what} must be a mapping of attributes, not {}",
                    node.what()
                ),
            ));
            return t;
        }
    };
    for (k, v) in entries {
        let name = canonical_name(k.name.trim());
        if k.name.trim().is_empty() {
            diags.push(Diag::new(&k.pos, "an attribute name is empty"));
            continue;
        }
        if name == MARKER || name == VM_MARKER {
            diags.push(Diag::new(
                &k.pos,
                format!("{name} is onecloud's marker: it is set by onecloud, not in the file"),
            ));
            continue;
        }
        if name == "NAME" && what == "template" {
            diags.push(Diag::new(
                &k.pos,
                "NAME is the object's key in the file: it is not written in its template",
            ));
            continue;
        }
        let mut push = |value| {
            t.attrs.push(Attribute {
                name: name.clone(),
                value,
            })
        };
        match &v.value {
            Value::Null => push(AttrValue::Single(String::new())),
            Value::Scalar(s) => push(AttrValue::Single(s.clone())),
            Value::Map(_) => {
                if let Some(vec) = vector(v, &name, diags) {
                    push(AttrValue::Vector(vec))
                }
            }
            Value::List(items) => {
                if items.is_empty() {
                    diags.push(Diag::new(
                        &v.pos,
                        format!("attribute {name}: an empty list holds no value"),
                    ));
                }
                for item in items {
                    match &item.value {
                        Value::Scalar(s) => push(AttrValue::Single(s.clone())),
                        Value::Null => push(AttrValue::Single(String::new())),
                        Value::Map(_) => {
                            if let Some(vec) = vector(item, &name, diags) {
                                push(AttrValue::Vector(vec))
                            }
                        }
                        Value::List(_) => diags.push(Diag::new(
                            &item.pos,
                            format!("attribute {name}: a list inside a list"),
                        )),
                    }
                }
            }
        }
    }
    t
}

fn vector(node: &Node, name: &str, diags: &mut Diags) -> Option<Vector> {
    let entries = node.as_map()?;
    let mut v = Vector::new();
    for (k, x) in entries {
        let sub = canonical_name(k.name.trim());
        match &x.value {
            Value::Scalar(s) => v.attrs.push((sub, s.clone())),
            Value::Null => v.attrs.push((sub, String::new())),
            _ => {
                diags.push(Diag::new(
                    &x.pos,
                    format!(
                        "attribute {name}/{sub}: OpenNebula templates nest one level, so this \
                         must be a single value, not {}",
                        x.what()
                    ),
                ));
                return None;
            }
        }
    }
    Some(v)
}

/// Everything reading needs: where problems go, who applies, what was declared so far.
struct Reader<'d> {
    diags: &'d mut Diags,
    applier: String,
    objects: Vec<Desired>,
    external: Vec<(ObjKey, Pos)>,
}

const OWNED_KEYS: &[&str] = &["group", "permissions"];

impl Reader<'_> {
    /// A reference written in the file to an object of `kind`: `name`, or `owner/name` for
    /// owned kinds.
    fn reference(&mut self, kind: Kind, text: &str, pos: &Pos) -> Option<ObjKey> {
        let text = text.trim();
        if kind.owned() {
            let (owner, name) = match text.split_once('/') {
                Some((o, n)) => (o.to_owned(), n),
                None => (self.applier.clone(), text),
            };
            if !check_name(name, pos, kind.noun(), self.diags)
                || (owner != self.applier && !check_name(&owner, pos, "owner (user)", self.diags))
            {
                return None;
            }
            Some(ObjKey::owned(kind, owner, name))
        } else {
            if !check_name(text, pos, kind.noun(), self.diags) {
                return None;
            }
            Some(ObjKey::new(kind, text))
        }
    }

    /// The key of a declared object from its map key (`name` or `owner/name`).
    fn declared_key(&mut self, kind: Kind, k: &Key) -> Option<ObjKey> {
        if !kind.owned() && k.name.contains('/') {
            self.diags.push(Diag::new(
                &k.pos,
                format!(
                    "{} names are unique in the whole cloud and have no owner: {:?}",
                    kind.noun(),
                    k.name
                ),
            ));
            return None;
        }
        self.reference(kind, &k.name, &k.pos)
    }

    fn ownership(&mut self, f: &mut Fields<'_>, deps: &mut Vec<Dep>) -> Ownership {
        let mut o = Ownership::default();
        if let Some(g) = f.get("group")
            && let Some(s) = scalar(g, "group", self.diags)
            && let Some(key) = self.reference(Kind::Group, s, &g.pos)
        {
            o.group = Some(key.name.clone());
            deps.push(Dep {
                key,
                pos: g.pos.clone(),
            });
        }
        if let Some(p) = f.get("permissions")
            && let Some(s) = scalar(p, "permissions", self.diags)
        {
            match oca::Chmod::parse_octal(s) {
                Some(_) => o.permissions = u32::from_str_radix(s.trim(), 8).ok(),
                None => self.diags.push(Diag::new(
                    &p.pos,
                    format!("permissions must be octal like \"640\", not {s:?}"),
                )),
            }
        }
        o
    }

    fn depends_on(&mut self, f: &mut Fields<'_>, deps: &mut Vec<Dep>) {
        let Some(node) = f.get("depends_on") else {
            return;
        };
        let Some(list) = names(node, "depends_on", self.diags) else {
            return;
        };
        for (text, pos) in list {
            let Some((kind, rest)) = text.split_once('/') else {
                self.diags.push(Diag::new(
                    &pos,
                    format!("depends_on entries are kind/name (network/lab-net), not {text:?}"),
                ));
                continue;
            };
            let Some(kind) = Kind::from_word(kind.trim()) else {
                self.diags.push(Diag::new(
                    &pos,
                    format!(
                        "unknown kind {kind:?} in depends_on; kinds: {}",
                        Kind::OBJECTS.map(Kind::word).join(", ")
                    ),
                ));
                continue;
            };
            if let Some(key) = self.reference(kind, rest, &pos) {
                deps.push(Dep { key, pos });
            }
        }
    }

    fn clusters(&mut self, f: &mut Fields<'_>, deps: &mut Vec<Dep>) -> Option<Vec<String>> {
        let node = match (f.get("clusters"), f.get("cluster")) {
            (Some(a), Some(_)) => {
                self.diags.push(Diag::new(
                    &a.pos,
                    "give either cluster or clusters, not both",
                ));
                return None;
            }
            (Some(n), None) | (None, Some(n)) => n,
            (None, None) => return None,
        };
        let list = names(node, "clusters", self.diags)?;
        let mut out = Vec::new();
        for (name, pos) in list {
            if let Some(key) = self.reference(Kind::Cluster, &name, &pos) {
                out.push(key.name.clone());
                deps.push(Dep { key, pos });
            }
        }
        Some(out)
    }

    fn push(&mut self, key: ObjKey, pos: &Pos, spec: Spec, deps: Vec<Dep>) {
        self.objects.push(Desired {
            key,
            pos: pos.clone(),
            spec,
            deps,
        });
    }

    /// Adds dependencies on what a VM template's DISK and NIC attributes name (IMAGE,
    /// NETWORK, with their _UNAME), writing `owner/name` as OpenNebula's `NAME` + `_UNAME`.
    fn template_refs(&mut self, t: &mut Template, pos: &Pos, deps: &mut Vec<Dep>) {
        for attr in &mut t.attrs {
            let (kind, field) = match attr.name.as_str() {
                "DISK" => (Kind::Image, "IMAGE"),
                "NIC" | "NIC_ALIAS" => (Kind::Network, "NETWORK"),
                _ => continue,
            };
            let AttrValue::Vector(v) = &mut attr.value else {
                continue;
            };
            let Some(name) = v.get(field).map(str::to_owned) else {
                continue;
            };
            let uname_field = format!("{field}_UNAME");
            if let Some((owner, n)) = name.split_once('/') {
                if v.get(&uname_field).is_some() {
                    self.diags.push(Diag::new(
                        pos,
                        format!(
                            "{}/{field} {name:?} names its owner twice (and {uname_field})",
                            attr.name
                        ),
                    ));
                    continue;
                }
                v.set(field, n.to_owned());
                v.set(&uname_field, owner.to_owned());
            }
            let owner = v
                .get(&uname_field)
                .map_or_else(|| self.applier.clone(), str::to_owned);
            let n = v.get(field).unwrap_or_default().to_owned();
            if check_name(&n, pos, kind.noun(), self.diags) {
                deps.push(Dep {
                    key: ObjKey::owned(kind, owner, n),
                    pos: pos.clone(),
                });
            }
        }
    }
}

const ROOT_KEYS: &[&str] = &[
    "cloud",
    "variables",
    "environments",
    "external",
    "clusters",
    "host_groups",
    "datastores",
    "security_groups",
    "networks",
    "images",
    "templates",
    "vms",
    "users",
    "groups",
    "acls",
];

/// OpenNebula's own objects, always there: they may be referred to without being declared.
pub fn builtins() -> Vec<ObjKey> {
    vec![
        ObjKey::new(Kind::User, "oneadmin"),
        ObjKey::new(Kind::User, "serveradmin"),
        ObjKey::new(Kind::Group, "oneadmin"),
        ObjKey::new(Kind::Group, "users"),
        ObjKey::new(Kind::Cluster, "default"),
        ObjKey::new(Kind::Datastore, "system"),
        ObjKey::new(Kind::Datastore, "default"),
        ObjKey::new(Kind::Datastore, "files"),
        ObjKey::owned(Kind::SecurityGroup, "oneadmin", "default"),
    ]
}

/// Reads the checked parts of a cloud file (variables and environments already applied).
/// Returns the name, the objects in file order and the external references.
pub(crate) fn decode(
    root: &Node,
    applier: &str,
    diags: &mut Diags,
) -> (String, Vec<Desired>, Vec<(ObjKey, Pos)>) {
    let mut r = Reader {
        diags,
        applier: applier.to_owned(),
        objects: Vec::new(),
        external: Vec::new(),
    };
    let Some(mut f) = Fields::new(root, "the cloud file", r.diags) else {
        return (String::new(), Vec::new(), Vec::new());
    };
    let name = match f.get("cloud") {
        None => {
            r.diags.push(Diag::new(
                root_pos(root),
                "the cloud file has no `cloud:` name (the stable name that marks the objects it manages)",
            ));
            String::new()
        }
        Some(n) => match scalar(n, "cloud", r.diags) {
            Some(s)
                if !s.is_empty()
                    && s.len() <= 64
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
            {
                s.to_owned()
            }
            Some(s) => {
                r.diags.push(Diag::new(
                    &n.pos,
                    format!(
                        "the cloud name {s:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
                    ),
                ));
                String::new()
            }
            None => String::new(),
        },
    };
    // Already used by the loader.
    f.get("variables");
    f.get("environments");
    if let Some(n) = f.get("external") {
        external(&mut r, n);
    }
    section(&mut r, &mut f, "groups", group);
    section(&mut r, &mut f, "users", user);
    section(&mut r, &mut f, "clusters", cluster);
    section(&mut r, &mut f, "host_groups", host_group);
    section(&mut r, &mut f, "datastores", datastore);
    section(&mut r, &mut f, "security_groups", |r, k, n| {
        secgroup(r, k, n)
    });
    section(&mut r, &mut f, "networks", network);
    section(&mut r, &mut f, "images", image);
    section(&mut r, &mut f, "templates", vm_template);
    section(&mut r, &mut f, "vms", vm_set);
    if let Some(n) = f.get("acls") {
        match &n.value {
            Value::List(items) => {
                for item in items {
                    if let Some(s) = scalar(item, "an ACL rule", r.diags) {
                        acl_rule(&mut r, s, &item.pos);
                    }
                }
            }
            Value::Null => {}
            _ => r.diags.push(Diag::new(
                &n.pos,
                format!("acls must be a list of rules, not {}", n.what()),
            )),
        }
    }
    f.finish(ROOT_KEYS, r.diags);
    (name, r.objects, r.external)
}

fn root_pos(root: &Node) -> &Pos {
    &root.pos
}

fn section(
    r: &mut Reader<'_>,
    f: &mut Fields<'_>,
    name: &str,
    mut each: impl FnMut(&mut Reader<'_>, &Key, &Node),
) {
    let Some(node) = f.get(name) else {
        return;
    };
    match &node.value {
        Value::Map(entries) => {
            for (k, v) in entries {
                each(r, k, v);
            }
        }
        Value::Null => {}
        _ => r.diags.push(Diag::new(
            &node.pos,
            format!(
                "{name} must be a mapping of {} names to their settings, not {}",
                section_noun(name),
                node.what()
            ),
        )),
    }
}

fn external(r: &mut Reader<'_>, node: &Node) {
    let Some(mut f) = Fields::new(node, "external", r.diags) else {
        return;
    };
    let kinds = Kind::OBJECTS.into_iter().filter(|k| *k != Kind::Vm);
    let allowed: Vec<&str> = kinds.clone().map(Kind::section).collect();
    for kind in kinds {
        let Some(n) = f.get(kind.section()) else {
            continue;
        };
        if let Some(list) = names(n, kind.section(), r.diags) {
            for (name, pos) in list {
                if let Some(key) = r.reference(kind, &name, &pos) {
                    r.external.push((key, pos));
                }
            }
        }
    }
    f.finish(&allowed, r.diags);
}

fn group(r: &mut Reader<'_>, k: &Key, node: &Node) {
    let Some(key) = r.declared_key(Kind::Group, k) else {
        return;
    };
    let Some(mut f) = Fields::new(node, format!("group {}", k.name), r.diags) else {
        return;
    };
    let mut deps = Vec::new();
    let t = f
        .get("template")
        .map(|n| template(n, "template", r.diags))
        .unwrap_or_default();
    r.depends_on(&mut f, &mut deps);
    if let Some(n) = f.get("admins")
        && let Some(list) = names(n, "admins", r.diags)
    {
        let mut adeps = vec![Dep {
            key: key.clone(),
            pos: k.pos.clone(),
        }];
        let mut admins = Vec::new();
        for (name, pos) in list {
            if let Some(u) = r.reference(Kind::User, &name, &pos) {
                admins.push(u.name.clone());
                adeps.push(Dep { key: u, pos });
            }
        }
        r.push(
            ObjKey::new(Kind::GroupAdmins, &k.name),
            &n.pos,
            Spec::GroupAdmins(GroupAdminsSpec {
                group: k.name.clone(),
                admins,
            }),
            adeps,
        );
    }
    if let Some(n) = f.get("quotas") {
        quotas(r, QuotaOwner::Group(k.name.clone()), &key, n);
    }
    f.finish(&["template", "admins", "quotas", "depends_on"], r.diags);
    r.push(key, &k.pos, Spec::Group(GroupSpec { template: t }), deps);
}

fn user(r: &mut Reader<'_>, k: &Key, node: &Node) {
    let Some(key) = r.declared_key(Kind::User, k) else {
        return;
    };
    let Some(mut f) = Fields::new(node, format!("user {}", k.name), r.diags) else {
        return;
    };
    let mut deps = Vec::new();
    let mut group = None;
    if let Some(n) = f.get("group")
        && let Some(s) = scalar(n, "group", r.diags)
        && let Some(g) = r.reference(Kind::Group, s, &n.pos)
    {
        group = Some(g.name.clone());
        deps.push(Dep {
            key: g,
            pos: n.pos.clone(),
        });
    }
    let mut groups = None;
    if let Some(n) = f.get("groups")
        && let Some(list) = names(n, "groups", r.diags)
    {
        let mut out = Vec::new();
        for (name, pos) in list {
            if let Some(g) = r.reference(Kind::Group, &name, &pos) {
                out.push(g.name.clone());
                deps.push(Dep { key: g, pos });
            }
        }
        groups = Some(out);
    }
    let password = f.get("password").and_then(|n| secret(r, n));
    let auth_driver = f
        .get("auth_driver")
        .and_then(|n| scalar(n, "auth_driver", r.diags))
        .map(str::to_owned);
    let enabled = f
        .get("enabled")
        .and_then(|n| boolean(n, "enabled", r.diags));
    let t = f
        .get("template")
        .map(|n| template(n, "template", r.diags))
        .unwrap_or_default();
    r.depends_on(&mut f, &mut deps);
    if let Some(n) = f.get("quotas") {
        quotas(r, QuotaOwner::User(k.name.clone()), &key, n);
    }
    f.finish(
        &[
            "group",
            "groups",
            "password",
            "auth_driver",
            "enabled",
            "template",
            "quotas",
            "depends_on",
        ],
        r.diags,
    );
    r.push(
        key,
        &k.pos,
        Spec::User(UserSpec {
            group,
            groups,
            password,
            auth_driver,
            enabled,
            template: t,
        }),
        deps,
    );
}

fn secret(r: &mut Reader<'_>, node: &Node) -> Option<Secret> {
    if let Value::Scalar(_) = node.value {
        r.diags.push(Diag::new(
            &node.pos,
            "a password is never written in the cloud file: give {env: VARIABLE} or {file: PATH}",
        ));
        return None;
    }
    let mut f = Fields::new(node, "password", r.diags)?;
    let env = f.get("env").and_then(|n| scalar(n, "env", r.diags));
    let file = f.get("file").and_then(|n| scalar(n, "file", r.diags));
    f.finish(&["env", "file"], r.diags);
    match (env, file) {
        (Some(e), None) if !e.is_empty() => Some(Secret::Env(e.to_owned())),
        (None, Some(p)) if !p.is_empty() => {
            // A relative path is relative to the file that names it.
            let base = std::path::Path::new(&*node.pos.file)
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default();
            let path = std::path::Path::new(p);
            Some(Secret::File(if path.is_absolute() {
                path.to_owned()
            } else {
                base.join(path)
            }))
        }
        _ => {
            r.diags.push(Diag::new(
                &node.pos,
                "password needs exactly one of env (an environment variable) or file (a path)",
            ));
            None
        }
    }
}

const QUOTA_ATTRS: &[(&str, &str, &[&str])] = &[
    (
        "vm",
        "VM",
        &[
            "VMS",
            "CPU",
            "MEMORY",
            "SYSTEM_DISK_SIZE",
            "RUNNING_VMS",
            "RUNNING_CPU",
            "RUNNING_MEMORY",
        ],
    ),
    ("datastores", "DATASTORE", &["IMAGES", "SIZE"]),
    ("networks", "NETWORK", &["LEASES"]),
    ("images", "IMAGE", &["RVMS"]),
];

fn quota_value(node: &Node, attr: &str, diags: &mut Diags) -> Option<String> {
    let s = scalar(node, attr, diags)?.trim();
    match s.to_ascii_lowercase().as_str() {
        "unlimited" | "-2" => Some("-2".into()),
        "default" | "-1" => Some("-1".into()),
        _ if s.parse::<f64>().is_ok_and(|v| v >= 0.0) => Some(s.to_owned()),
        _ => {
            diags.push(Diag::new(
                &node.pos,
                format!("quota {attr} must be a number, \"unlimited\" or \"default\", not {s:?}"),
            ));
            None
        }
    }
}

fn quota_limits(
    r: &mut Reader<'_>,
    node: &Node,
    section: &'static str,
    object: Option<&ObjKey>,
    allowed: &[&str],
    out: &mut Vec<QuotaLimit>,
) {
    let Some(entries) = node.as_map() else {
        r.diags.push(Diag::new(
            &node.pos,
            format!(
                "{section} quota limits must be a mapping, not {}",
                node.what()
            ),
        ));
        return;
    };
    for (k, v) in entries {
        let attr = k.name.trim().to_ascii_uppercase();
        if !allowed.contains(&attr.as_str()) {
            r.diags.push(Diag::new(
                &k.pos,
                format!(
                    "unknown {section} quota {:?}; allowed: {}",
                    k.name,
                    allowed.join(", ")
                ),
            ));
            continue;
        }
        if let Some(value) = quota_value(v, &attr, r.diags) {
            out.push(QuotaLimit {
                section,
                object: object.cloned(),
                attr,
                value,
            });
        }
    }
}

fn quotas(r: &mut Reader<'_>, owner: QuotaOwner, owner_key: &ObjKey, node: &Node) {
    let Some(mut f) = Fields::new(node, "quotas", r.diags) else {
        return;
    };
    let mut limits = Vec::new();
    let mut deps = vec![Dep {
        key: owner_key.clone(),
        pos: node.pos.clone(),
    }];
    for (key, section, allowed) in QUOTA_ATTRS {
        let Some(n) = f.get(key) else {
            continue;
        };
        if *key == "vm" {
            quota_limits(r, n, section, None, allowed, &mut limits);
            continue;
        }
        let kind = match *section {
            "DATASTORE" => Kind::Datastore,
            "NETWORK" => Kind::Network,
            _ => Kind::Image,
        };
        let Some(entries) = n.as_map() else {
            r.diags.push(Diag::new(
                &n.pos,
                format!(
                    "quotas {key} must map {} names to limits, not {}",
                    kind.noun(),
                    n.what()
                ),
            ));
            continue;
        };
        for (name, limits_node) in entries {
            if let Some(obj) = r.reference(kind, &name.name, &name.pos) {
                quota_limits(r, limits_node, section, Some(&obj), allowed, &mut limits);
                deps.push(Dep {
                    key: obj,
                    pos: name.pos.clone(),
                });
            }
        }
    }
    f.finish(&["vm", "datastores", "networks", "images"], r.diags);
    let name = match &owner {
        QuotaOwner::User(u) => format!("user {u}"),
        QuotaOwner::Group(g) => format!("group {g}"),
    };
    r.push(
        ObjKey::new(Kind::Quota, name),
        &node.pos,
        Spec::Quota(QuotaSpec { owner, limits }),
        deps,
    );
}

fn cluster(r: &mut Reader<'_>, k: &Key, node: &Node) {
    let Some(key) = r.declared_key(Kind::Cluster, k) else {
        return;
    };
    let Some(mut f) = Fields::new(node, format!("cluster {}", k.name), r.diags) else {
        return;
    };
    let mut deps = Vec::new();
    let t = f
        .get("template")
        .map(|n| template(n, "template", r.diags))
        .unwrap_or_default();
    r.depends_on(&mut f, &mut deps);
    f.finish(&["template", "depends_on"], r.diags);
    r.push(
        key,
        &k.pos,
        Spec::Cluster(ClusterSpec { template: t }),
        deps,
    );
}

/// A host group: settings applied to each host it lists, as Ambari's blueprints do.
fn host_group(r: &mut Reader<'_>, k: &Key, node: &Node) {
    let Some(mut f) = Fields::new(node, format!("host group {}", k.name), r.diags) else {
        return;
    };
    let mut deps = Vec::new();
    let mut cluster = None;
    if let Some(n) = f.get("cluster")
        && let Some(s) = scalar(n, "cluster", r.diags)
        && let Some(c) = r.reference(Kind::Cluster, s, &n.pos)
    {
        cluster = Some(c.name.clone());
        deps.push(Dep {
            key: c,
            pos: n.pos.clone(),
        });
    }
    let im_mad = f
        .get("im_mad")
        .and_then(|n| scalar(n, "im_mad", r.diags))
        .map(str::to_owned);
    let vm_mad = f
        .get("vm_mad")
        .and_then(|n| scalar(n, "vm_mad", r.diags))
        .map(str::to_owned);
    let t = f
        .get("template")
        .map(|n| template(n, "template", r.diags))
        .unwrap_or_default();
    r.depends_on(&mut f, &mut deps);
    let hosts = f.get("hosts");
    f.finish(
        &[
            "cluster",
            "im_mad",
            "vm_mad",
            "template",
            "hosts",
            "depends_on",
        ],
        r.diags,
    );
    let Some(im_mad) = im_mad.or_else(|| vm_mad.clone()) else {
        r.diags.push(Diag::new(
            &k.pos,
            format!(
                "host group {} needs im_mad (the monitoring driver: kvm, dummy; vm_mad defaults to it)",
                k.name
            ),
        ));
        return;
    };
    let vm_mad = vm_mad.unwrap_or_else(|| im_mad.clone());
    let Some(hosts) = hosts else {
        r.diags.push(Diag::new(
            &k.pos,
            format!("host group {} lists no hosts", k.name),
        ));
        return;
    };
    let Value::List(items) = &hosts.value else {
        r.diags.push(Diag::new(
            &hosts.pos,
            format!("hosts must be a list, not {}", hosts.what()),
        ));
        return;
    };
    for item in items {
        let (name, own) = match &item.value {
            Value::Scalar(s) => (s.clone(), Template::default()),
            Value::Map(_) => {
                let Some(mut hf) = Fields::new(item, "a host", r.diags) else {
                    continue;
                };
                let name = hf
                    .get("name")
                    .and_then(|n| scalar(n, "name", r.diags))
                    .map(str::to_owned);
                let own = hf
                    .get("template")
                    .map(|n| template(n, "template", r.diags))
                    .unwrap_or_default();
                hf.finish(&["name", "template"], r.diags);
                let Some(name) = name else {
                    r.diags.push(Diag::new(&item.pos, "a host needs a name"));
                    continue;
                };
                (name, own)
            }
            _ => {
                r.diags.push(Diag::new(
                    &item.pos,
                    format!(
                        "a host is a name or {{name, template}}, not {}",
                        item.what()
                    ),
                ));
                continue;
            }
        };
        if !check_name(&name, &item.pos, "host", r.diags) {
            continue;
        }
        // The group's template, with the host's own attributes replacing those of the same
        // name.
        let mut host_t = t.clone();
        for a in &own.attrs {
            host_t.attrs.retain(|x| x.name != a.name);
        }
        host_t.attrs.extend(own.attrs);
        r.push(
            ObjKey::new(Kind::Host, &name),
            &item.pos,
            Spec::Host(HostSpec {
                host_group: k.name.clone(),
                cluster: cluster.clone(),
                im_mad: im_mad.clone(),
                vm_mad: vm_mad.clone(),
                template: host_t,
            }),
            deps.clone(),
        );
    }
}

fn datastore(r: &mut Reader<'_>, k: &Key, node: &Node) {
    let Some(key) = r.declared_key(Kind::Datastore, k) else {
        return;
    };
    let Some(mut f) = Fields::new(node, format!("datastore {}", k.name), r.diags) else {
        return;
    };
    let mut deps = Vec::new();
    let clusters = r.clusters(&mut f, &mut deps);
    let t = f
        .get("template")
        .map(|n| template(n, "template", r.diags))
        .unwrap_or_default();
    r.depends_on(&mut f, &mut deps);
    f.finish(&["clusters", "cluster", "template", "depends_on"], r.diags);
    if t.get("TYPE").is_none() && t.get("DS_MAD").is_none() {
        r.diags.push(Diag::new(
            &k.pos,
            format!(
                "datastore {} needs TYPE (IMAGE_DS, SYSTEM_DS, FILE_DS) or DS_MAD in its template",
                k.name
            ),
        ));
    }
    r.push(
        key,
        &k.pos,
        Spec::Datastore(DatastoreSpec {
            clusters,
            template: t,
        }),
        deps,
    );
}

fn secgroup(r: &mut Reader<'_>, k: &Key, node: &Node) {
    let Some(key) = r.declared_key(Kind::SecurityGroup, k) else {
        return;
    };
    let Some(mut f) = Fields::new(node, format!("security group {}", k.name), r.diags) else {
        return;
    };
    let mut deps = Vec::new();
    let ownership = r.ownership(&mut f, &mut deps);
    let mut t = f
        .get("template")
        .map(|n| template(n, "template", r.diags))
        .unwrap_or_default();
    if let Some(n) = f.get("rules") {
        match &n.value {
            Value::List(items) => {
                for item in items {
                    if let Some(v) = vector(item, "RULE", r.diags) {
                        t.attrs.push(Attribute {
                            name: "RULE".into(),
                            value: AttrValue::Vector(v),
                        });
                    } else if item.as_map().is_none() {
                        r.diags.push(Diag::new(
                            &item.pos,
                            format!(
                                "a rule is a mapping (PROTOCOL, RULE_TYPE, RANGE, ...), not {}",
                                item.what()
                            ),
                        ));
                    }
                }
            }
            _ => r.diags.push(Diag::new(
                &n.pos,
                format!("rules must be a list, not {}", n.what()),
            )),
        }
    }
    r.depends_on(&mut f, &mut deps);
    let mut allowed = vec!["template", "rules", "depends_on"];
    allowed.extend(OWNED_KEYS);
    f.finish(&allowed, r.diags);
    r.push(
        key,
        &k.pos,
        Spec::SecurityGroup(SecGroupSpec {
            ownership,
            template: t,
        }),
        deps,
    );
}

fn network(r: &mut Reader<'_>, k: &Key, node: &Node) {
    let Some(key) = r.declared_key(Kind::Network, k) else {
        return;
    };
    let Some(mut f) = Fields::new(node, format!("network {}", k.name), r.diags) else {
        return;
    };
    let mut deps = Vec::new();
    let ownership = r.ownership(&mut f, &mut deps);
    let clusters = r.clusters(&mut f, &mut deps);
    let mut security_groups = None;
    if let Some(n) = f.get("security_groups")
        && let Some(list) = names(n, "security_groups", r.diags)
    {
        let mut out = Vec::new();
        for (name, pos) in list {
            if let Some(sg) = r.reference(Kind::SecurityGroup, &name, &pos) {
                out.push(sg.clone());
                deps.push(Dep { key: sg, pos });
            }
        }
        security_groups = Some(out);
    }
    let t = f
        .get("template")
        .map(|n| template(n, "template", r.diags))
        .unwrap_or_default();
    if t.contains("SECURITY_GROUPS") {
        r.diags.push(Diag::new(
            &k.pos,
            "give the network's security groups by name with security_groups:, not as SECURITY_GROUPS ids",
        ));
    }
    if t.contains("AR") {
        r.diags.push(Diag::new(
            &k.pos,
            "give address ranges with address_ranges:, not as AR in the template",
        ));
    }
    if t.get("VN_MAD").is_none() {
        r.diags.push(Diag::new(
            &k.pos,
            format!(
                "network {} needs VN_MAD in its template (bridge, 802.1Q, vxlan, dummy, ...)",
                k.name
            ),
        ));
    }
    let mut address_ranges = Vec::new();
    if let Some(n) = f.get("address_ranges") {
        match &n.value {
            Value::List(items) => {
                for item in items {
                    match vector(item, "AR", r.diags) {
                        Some(v) if v.get("TYPE").is_some() => address_ranges.push(v),
                        Some(_) => r.diags.push(Diag::new(
                            &item.pos,
                            "an address range needs TYPE (IP4, IP6, IP4_6, ETHER, ...)",
                        )),
                        None if item.as_map().is_none() => r.diags.push(Diag::new(
                            &item.pos,
                            format!("an address range is a mapping, not {}", item.what()),
                        )),
                        None => {}
                    }
                }
            }
            _ => r.diags.push(Diag::new(
                &n.pos,
                format!("address_ranges must be a list, not {}", n.what()),
            )),
        }
    }
    r.depends_on(&mut f, &mut deps);
    let mut allowed = vec![
        "clusters",
        "cluster",
        "security_groups",
        "address_ranges",
        "template",
        "depends_on",
    ];
    allowed.extend(OWNED_KEYS);
    f.finish(&allowed, r.diags);
    r.push(
        key,
        &k.pos,
        Spec::Network(NetworkSpec {
            ownership,
            clusters,
            security_groups,
            address_ranges,
            template: t,
        }),
        deps,
    );
}

fn image(r: &mut Reader<'_>, k: &Key, node: &Node) {
    let Some(key) = r.declared_key(Kind::Image, k) else {
        return;
    };
    let Some(mut f) = Fields::new(node, format!("image {}", k.name), r.diags) else {
        return;
    };
    let mut deps = Vec::new();
    let ownership = r.ownership(&mut f, &mut deps);
    let mut datastore = "default".to_owned();
    let ds_pos = f.get("datastore").map(|n| {
        if let Some(s) = scalar(n, "datastore", r.diags) {
            datastore = s.to_owned();
        }
        n.pos.clone()
    });
    if let Some(ds) = r.reference(
        Kind::Datastore,
        &datastore,
        ds_pos.as_ref().unwrap_or(&k.pos),
    ) {
        deps.push(Dep {
            key: ds,
            pos: ds_pos.unwrap_or_else(|| k.pos.clone()),
        });
    }
    let t = f
        .get("template")
        .map(|n| template(n, "template", r.diags))
        .unwrap_or_default();
    if t.get("PATH").is_none() && t.get("SOURCE").is_none() && t.get("SIZE").is_none() {
        r.diags.push(Diag::new(
            &k.pos,
            format!(
                "image {} needs PATH (a file or URL to copy), SOURCE or SIZE (an empty datablock) in its template",
                k.name
            ),
        ));
    }
    r.depends_on(&mut f, &mut deps);
    let mut allowed = vec!["datastore", "template", "depends_on"];
    allowed.extend(OWNED_KEYS);
    f.finish(&allowed, r.diags);
    r.push(
        key,
        &k.pos,
        Spec::Image(ImageSpec {
            ownership,
            datastore,
            template: t,
        }),
        deps,
    );
}

fn vm_template(r: &mut Reader<'_>, k: &Key, node: &Node) {
    let Some(key) = r.declared_key(Kind::Template, k) else {
        return;
    };
    let Some(mut f) = Fields::new(node, format!("template {}", k.name), r.diags) else {
        return;
    };
    let mut deps = Vec::new();
    let ownership = r.ownership(&mut f, &mut deps);
    let tpos = f.get("template").map(|n| n.pos.clone());
    let mut t = f
        .get("template")
        .map(|n| template(n, "template", r.diags))
        .unwrap_or_default();
    r.template_refs(&mut t, tpos.as_ref().unwrap_or(&k.pos), &mut deps);
    r.depends_on(&mut f, &mut deps);
    let mut allowed = vec!["template", "depends_on"];
    allowed.extend(OWNED_KEYS);
    f.finish(&allowed, r.diags);
    r.push(
        key,
        &k.pos,
        Spec::Template(TemplateSpec {
            ownership,
            template: t,
        }),
        deps,
    );
}

fn vm_set(r: &mut Reader<'_>, k: &Key, node: &Node) {
    let Some(key) = r.declared_key(Kind::Vm, k) else {
        return;
    };
    let Some(mut f) = Fields::new(node, format!("VM set {}", k.name), r.diags) else {
        return;
    };
    let mut deps = Vec::new();
    let ownership = r.ownership(&mut f, &mut deps);
    let template_ref = match f.get("template") {
        None => {
            r.diags.push(Diag::new(
                &k.pos,
                format!(
                    "VM set {} needs template: (the VM template to instantiate)",
                    k.name
                ),
            ));
            None
        }
        Some(n) => scalar(n, "template (the name of a VM template)", r.diags)
            .and_then(|s| r.reference(Kind::Template, s, &n.pos))
            .inspect(|t| {
                deps.push(Dep {
                    key: t.clone(),
                    pos: n.pos.clone(),
                })
            }),
    };
    let count = match f.get("count") {
        Some(n) => count(n, "count", r.diags),
        None => Some(1),
    };
    let epos = f.get("extra").map(|n| n.pos.clone());
    let mut extra = f
        .get("extra")
        .map(|n| template(n, "extra", r.diags))
        .unwrap_or_default();
    r.template_refs(&mut extra, epos.as_ref().unwrap_or(&k.pos), &mut deps);
    for reserved in [MARKER, VM_MARKER, "NAME"] {
        if extra.contains(reserved) {
            r.diags.push(Diag::new(
                epos.as_ref().unwrap_or(&k.pos),
                format!("extra may not set {reserved}: onecloud names and marks the VMs itself"),
            ));
        }
    }
    r.depends_on(&mut f, &mut deps);
    let mut allowed = vec!["template", "count", "extra", "depends_on"];
    allowed.extend(OWNED_KEYS);
    f.finish(&allowed, r.diags);
    if let (Some(template), Some(count)) = (template_ref, count) {
        r.push(
            key,
            &k.pos,
            Spec::Vm(VmSpec {
                ownership,
                template,
                count,
                extra,
            }),
            deps,
        );
    }
}

/// An ACL rule as OpenNebula writes it (`USER RESOURCE RIGHTS [ZONE]`), with names where
/// OpenNebula has ids: `@devs VM+IMAGE/* CREATE`, `#alice NET/%lab USE`, `@devs IMAGE/#base USE`.
fn acl_rule(r: &mut Reader<'_>, text: &str, pos: &Pos) {
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() != 3 && fields.len() != 4 {
        r.diags.push(Diag::new(
            pos,
            format!("an ACL rule is USER RESOURCE RIGHTS [ZONE], not {text:?}"),
        ));
        return;
    }
    let mut deps = Vec::new();
    let bad = |r: &mut Reader<'_>, m: String| r.diags.push(Diag::new(pos, m));
    let user = match sel(r, fields[0], &['#', '@'], None, pos, &mut deps) {
        Ok(s) => s,
        Err(m) => return bad(r, m),
    };
    let Some((types, rsel)) = fields[1].split_once('/') else {
        return bad(
            r,
            format!("ACL resource {:?} is TYPE[+TYPE]/SELECTOR", fields[1]),
        );
    };
    let mut resource_types = 0;
    let mut listed = Vec::new();
    for name in types.split('+') {
        match ObjectType::from_name(name).filter(|t| t.is_acl_resource()) {
            Some(t) => {
                resource_types |= t.bit();
                listed.push(t);
            }
            None => return bad(r, format!("unknown ACL resource type {name:?}")),
        }
    }
    let single = match listed.as_slice() {
        [t] => Some(*t),
        _ => None,
    };
    let resource = match sel(r, rsel, &['#', '@', '%'], single, pos, &mut deps) {
        Ok(s) => s,
        Err(m) => return bad(r, m),
    };
    let mut rights = 0;
    for name in fields[2].split('+') {
        match AuthOp::from_name(name) {
            Some(op) => rights |= op.bit(),
            None => {
                return bad(
                    r,
                    format!("unknown ACL right {name:?} (USE, MANAGE, ADMIN, CREATE)"),
                );
            }
        }
    }
    let zone = match fields.get(3) {
        None => acl::INDIVIDUAL_ID | u64::from(acl::LOCAL_ZONE_ID),
        Some(&"*") => acl::ALL_ID,
        Some(z) => match z.strip_prefix('#').and_then(|n| n.parse::<u32>().ok()) {
            Some(id) => acl::INDIVIDUAL_ID | u64::from(id),
            None => return bad(r, format!("ACL zone {z:?} is #ID or *")),
        },
    };
    let normalized = fields.join(" ");
    r.push(
        ObjKey::new(Kind::Acl, &normalized),
        pos,
        Spec::Acl(AclSpec {
            text: normalized.clone(),
            user,
            resource_types,
            resource,
            rights,
            zone,
        }),
        deps,
    );
}

fn sel(
    r: &mut Reader<'_>,
    s: &str,
    allowed: &[char],
    single: Option<ObjectType>,
    pos: &Pos,
    deps: &mut Vec<Dep>,
) -> Result<AclSel, String> {
    if s == "*" {
        return Ok(AclSel::All);
    }
    let mut chars = s.chars();
    let Some(c) = chars.next().filter(|c| allowed.contains(c)) else {
        return Err(format!(
            "ACL selector {s:?} must be * or start with one of {}",
            allowed.iter().collect::<String>()
        ));
    };
    let name = chars.as_str();
    if name.is_empty() {
        return Err(format!("ACL selector {s:?} names nothing"));
    }
    if let Ok(id) = name.parse::<u32>() {
        return Ok(AclSel::Id(c, id));
    }
    let (kind, out): (Kind, fn(ObjKey) -> AclSel) = match c {
        '@' => (Kind::Group, |k| AclSel::Group(k.name)),
        '%' => (Kind::Cluster, |k| AclSel::Cluster(k.name)),
        _ => match (allowed.len(), single) {
            // USER part: #name is a user.
            (2, _) => (Kind::User, |k| AclSel::User(k.name)),
            (_, Some(t)) => match acl_kind(t) {
                Some(kind) => (kind, AclSel::Object),
                None => {
                    return Err(format!(
                        "{} objects cannot be named in a cloud file: use #ID",
                        t.name()
                    ));
                }
            },
            (_, None) => {
                return Err(format!(
                    "#{name}: a name selects one object, so give exactly one resource type (or #ID)"
                ));
            }
        },
    };
    let key = r
        .reference(kind, name, pos)
        .ok_or_else(|| format!("bad name in {s:?}"))?;
    deps.push(Dep {
        key: key.clone(),
        pos: pos.clone(),
    });
    Ok(out(key))
}

/// The cloud-file kind of an ACL resource type, for `#name` selectors.
pub fn acl_kind(t: ObjectType) -> Option<Kind> {
    Some(match t {
        ObjectType::Host => Kind::Host,
        ObjectType::Net => Kind::Network,
        ObjectType::Image => Kind::Image,
        ObjectType::User => Kind::User,
        ObjectType::Template => Kind::Template,
        ObjectType::Group => Kind::Group,
        ObjectType::Datastore => Kind::Datastore,
        ObjectType::Cluster => Kind::Cluster,
        ObjectType::SecGroup => Kind::SecurityGroup,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::close;

    #[test]
    fn typos() {
        assert!(close("template", "templte"));
        assert!(close("address_ranges", "address_range"));
        assert!(!close("hosts", "cluster"));
    }
}
