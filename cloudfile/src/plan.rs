//! The plan: for every object, what apply would do (create, update attribute by attribute,
//! delete, adopt, nothing), in the order apply would do it. Computing it is a pure function
//! of the cloud file and one [`Live`] snapshot: no call is made here, so the web console can
//! compute and show one, and tests can build both sides by hand.

use crate::diff::{self, AttrDiff};
use crate::live::{self, Live, is_builtin};
use crate::model::*;
use oca::{AttrValue, Template, Vector};
use one_proto::acl::{self as pacl, ObjectType};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// What apply does with one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Delete,
    /// Take over an object that exists but carries no marker: mark it, then make it what
    /// the file says.
    Adopt,
    /// Delete a VM and make it again from the current template.
    Replace,
    Nothing,
    /// The object belongs to another cloud file: the plan cannot be applied.
    Refuse,
}

impl Action {
    pub fn symbol(self) -> char {
        match self {
            Action::Create => '+',
            Action::Update => '~',
            Action::Delete => '-',
            Action::Adopt => '>',
            Action::Replace => '!',
            Action::Nothing => '=',
            Action::Refuse => 'x',
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Adopt => "adopt",
            Action::Replace => "replace",
            Action::Nothing => "nothing to do",
            Action::Refuse => "refused",
        }
    }
}

/// One entry of the plan.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub kind: Kind,
    /// `owner/name` for owned kinds, the VM's own name for VMs, the rule for ACLs.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub action: Action,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<AttrDiff>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The object's key in the file (None for objects only the cloud has).
    #[serde(skip)]
    pub(crate) key: Option<ObjKey>,
    #[serde(skip)]
    pub(crate) ops: Vec<Op>,
}

impl Change {
    fn new(kind: Kind, name: impl Into<String>, id: Option<i64>, action: Action) -> Change {
        Change {
            kind,
            name: name.into(),
            id,
            action,
            diffs: Vec::new(),
            notes: Vec::new(),
            key: None,
            ops: Vec::new(),
        }
    }

    /// Whether applying it changes anything.
    pub fn is_change(&self) -> bool {
        !matches!(self.action, Action::Nothing | Action::Refuse)
    }
}

/// The counts of a plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub adopt: usize,
    pub replace: usize,
    pub unchanged: usize,
}

/// A plan: what applying a cloud file to a cloud would do.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub cloud: String,
    pub user: String,
    /// In the order apply goes through them.
    pub changes: Vec<Change>,
    /// Why the plan cannot be applied (empty when it can).
    pub refusals: Vec<String>,
    /// What apply leaves alone but the user should know (VMs out of date, objects that left
    /// the file and stay without `--prune`).
    pub notes: Vec<String>,
    pub summary: Summary,
    /// A fingerprint of each declared object's settings, for drift detection: an object
    /// whose fingerprint did not change since the cloud last matched the file, but which
    /// has changes now, was changed behind the file's back.
    pub fingerprints: BTreeMap<String, String>,
}

impl Plan {
    /// Whether applying it would change anything.
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(Change::is_change)
    }
}

/// Choices that change the plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanOptions {
    /// Delete managed objects that are no longer in the file.
    pub prune: bool,
    /// Recreate VMs made from an older template.
    pub replace: bool,
}

/// One call (or wait) of apply. `This` is the change's object: known, or made by the
/// change's first op.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    AllocGroup(String),
    AllocUser {
        name: String,
        password: Option<Secret>,
        driver: String,
        groups: Vec<String>,
    },
    AllocCluster(String),
    AllocHost {
        name: String,
        im_mad: String,
        vm_mad: String,
        cluster: Option<String>,
    },
    AllocDatastore {
        template: Template,
        cluster: Option<String>,
    },
    AllocSecGroup(Template),
    AllocNetwork {
        template: Template,
        security_groups: Option<Vec<ObjKey>>,
        cluster: Option<String>,
    },
    AllocImage {
        template: Template,
        datastore: String,
    },
    AllocTemplate(Template),
    Instantiate {
        template: ObjKey,
        name: String,
        extra: Template,
    },
    /// Replace This's template (networks: SECURITY_GROUPS resolved then).
    Update {
        template: Template,
        security_groups: Option<Vec<ObjKey>>,
    },
    ClusterAdd(String),
    ClusterDel(i64),
    ArAdd(Vector),
    ArUpdate(Vector),
    ArRemove(i64),
    Chown {
        user: Option<String>,
        group: Option<String>,
    },
    Chmod(u32),
    ImageType(String),
    ImagePersistent(bool),
    UserChgrp(String),
    UserAddGroup(String),
    UserDelGroup(i64),
    UserEnable(bool),
    Quota(QuotaOwner, Vec<QuotaLimit>),
    GroupAddAdmin(String),
    GroupDelAdmin(i64),
    AclAdd(AclSpec),
    AclDel(i64),
    Delete,
    Terminate,
    WaitHost,
    WaitImage,
    WaitVmRunning,
    WaitVmGone,
}

struct Ctx<'a> {
    file: &'a CloudFile,
    live: &'a Live,
    opts: PlanOptions,
    refusals: Vec<String>,
    notes: Vec<String>,
    /// Keys the file declares (to tell managed objects that left the file).
    declared: BTreeSet<&'a ObjKey>,
}

/// Computes the plan of `file` against `live`.
pub fn plan(file: &CloudFile, live: &Live, opts: PlanOptions) -> Plan {
    let mut ctx = Ctx {
        file,
        live,
        opts,
        refusals: Vec::new(),
        notes: Vec::new(),
        declared: file.objects.iter().map(|d| &d.key).collect(),
    };
    for key in &file.external {
        if live_exists(live, key) == Some(false) {
            ctx.refusals.push(format!(
                "{key} is listed under external: but does not exist (or is not visible to {})",
                file.applier
            ));
        }
    }
    let mut deletes = Vec::new();
    let mut main = Vec::new();
    for d in &file.objects {
        let changes = match &d.spec {
            Spec::Group(s) => vec![group(&mut ctx, d, s)],
            Spec::User(s) => vec![user(&mut ctx, d, s)],
            Spec::Cluster(s) => vec![cluster(&mut ctx, d, s)],
            Spec::Host(s) => vec![host(&mut ctx, d, s)],
            Spec::Datastore(s) => vec![datastore(&mut ctx, d, s)],
            Spec::SecurityGroup(s) => vec![secgroup(&mut ctx, d, s)],
            Spec::Network(s) => vec![network(&mut ctx, d, s)],
            Spec::Image(s) => vec![image(&mut ctx, d, s)],
            Spec::Template(s) => vec![vm_template(&mut ctx, d, s)],
            Spec::Vm(s) => vm_set(&mut ctx, d, s),
            Spec::GroupAdmins(s) => vec![group_admins(&mut ctx, d, s)],
            Spec::Quota(s) => vec![quota(&mut ctx, d, s)],
            Spec::Acl(s) => vec![acl(&mut ctx, s)],
        };
        for mut c in changes {
            c.key.get_or_insert_with(|| d.key.clone());
            // The applier's own objects are shown by name alone.
            if d.key.owner.as_deref() == Some(file.applier.as_str()) && c.name == d.key.full_name()
            {
                c.name = d.key.name.clone();
            }
            if matches!(c.action, Action::Delete) {
                deletes.push(c);
            } else {
                main.push(c);
            }
        }
    }
    deletes.extend(leftovers(&mut ctx));
    // Deletions first, dependents before what they depend on.
    deletes.sort_by_key(|c| std::cmp::Reverse(delete_rank(c.kind)));
    let mut changes = deletes;
    changes.extend(main);
    let mut summary = Summary::default();
    for c in &changes {
        match c.action {
            Action::Create => summary.create += 1,
            Action::Update => summary.update += 1,
            Action::Delete => summary.delete += 1,
            Action::Adopt => summary.adopt += 1,
            Action::Replace => summary.replace += 1,
            Action::Nothing | Action::Refuse => summary.unchanged += 1,
        }
    }
    Plan {
        cloud: file.name.clone(),
        user: file.applier.clone(),
        changes,
        refusals: ctx.refusals,
        notes: ctx.notes,
        summary,
        fingerprints: file
            .objects
            .iter()
            .map(|d| (d.key.to_string(), fingerprint(d)))
            .collect(),
    }
}

/// Deletion order: VMs first, then what they use, groups last.
fn delete_rank(kind: Kind) -> u8 {
    match kind {
        Kind::Acl => 13,
        Kind::Vm => 12,
        Kind::GroupAdmins | Kind::Quota => 11,
        Kind::Template => 10,
        Kind::Image => 9,
        Kind::Network => 8,
        Kind::SecurityGroup => 7,
        Kind::Datastore => 6,
        Kind::Host => 5,
        Kind::Cluster => 4,
        Kind::User => 3,
        Kind::Group => 2,
    }
}

/// Whether a key exists in the cloud (None: kinds without a single object).
fn live_exists(live: &Live, key: &ObjKey) -> Option<bool> {
    Kind::OBJECTS
        .contains(&key.kind)
        .then(|| key.kind == Kind::Vm || live.id_of(key).is_some())
}

fn fingerprint(d: &Desired) -> String {
    let json = serde_json::to_string(&d.spec).unwrap_or_default();
    hex::encode(&Sha256::digest(json.as_bytes())[..8])
}

/// The start of every change on an existing object: adopt, update, nothing, or a refusal
/// when another cloud manages it. Returns None for a refusal (already recorded).
fn existing(
    ctx: &mut Ctx<'_>,
    d: &Desired,
    id: i64,
    marker: Option<&str>,
    diffs: Vec<AttrDiff>,
) -> Option<Change> {
    let name = d.key.full_name();
    match marker {
        Some(m) if m == ctx.file.name => {
            let action = if diffs.is_empty() {
                Action::Nothing
            } else {
                Action::Update
            };
            let mut c = Change::new(d.key.kind, name, Some(id), action);
            c.diffs = diffs;
            Some(c)
        }
        Some(other) => {
            ctx.refusals.push(format!(
                "{} (id {id}) is managed by the cloud file {other:?}, not {:?}: it is never taken over (remove it from one of the files)",
                d.key, ctx.file.name
            ));
            None
        }
        None => {
            let mut c = Change::new(d.key.kind, name, Some(id), Action::Adopt);
            c.diffs = diffs;
            c.notes
                .push("exists without a marker: it becomes managed by this file".into());
            Some(c)
        }
    }
}

/// Finishes a change on an existing object: its ops run only for update and adopt.
fn with_ops(mut c: Change, ops: Vec<Op>) -> Change {
    if matches!(c.action, Action::Update | Action::Adopt) {
        c.ops = ops;
    }
    c
}

fn created(d: &Desired, diffs: Vec<AttrDiff>, ops: Vec<Op>) -> Change {
    let mut c = Change::new(d.key.kind, d.key.full_name(), None, Action::Create);
    c.diffs = diffs;
    c.ops = ops;
    c
}

/// The diff of a new object: every attribute it will have.
fn all_new(prefix: &str, t: &Template, out: &mut Vec<AttrDiff>) {
    diff::templates(Kind::Template, prefix, t, &Template::default(), &[], out);
}

fn with_marker(t: &Template, cloud: &str) -> Template {
    let mut t = t.clone();
    t.set(MARKER, cloud);
    t
}

fn group(ctx: &mut Ctx<'_>, d: &Desired, s: &GroupSpec) -> Change {
    let cloud = &ctx.file.name;
    match ctx.live.group(&d.key.name) {
        None => {
            let mut diffs = Vec::new();
            all_new("TEMPLATE/", &s.template, &mut diffs);
            created(
                d,
                diffs,
                vec![
                    Op::AllocGroup(d.key.name.clone()),
                    Op::Update {
                        template: with_marker(&s.template, cloud),
                        security_groups: None,
                    },
                ],
            )
        }
        Some(g) => {
            let mut diffs = Vec::new();
            diff::templates(
                Kind::Group,
                "TEMPLATE/",
                &s.template,
                &g.template,
                &[],
                &mut diffs,
            );
            let update = diff::replacement(Kind::Group, &s.template, Some(&g.template), cloud, &[]);
            let marker = live::marker(&g.template).map(str::to_owned);
            match existing(ctx, d, g.id, marker.as_deref(), diffs) {
                Some(c) => with_ops(
                    c,
                    vec![Op::Update {
                        template: update,
                        security_groups: None,
                    }],
                ),
                None => refused(d, g.id),
            }
        }
    }
}

fn refused(d: &Desired, id: i64) -> Change {
    let mut c = Change::new(d.key.kind, d.key.full_name(), Some(id), Action::Refuse);
    c.notes
        .push("managed by another cloud file: left alone".into());
    c
}

fn user(ctx: &mut Ctx<'_>, d: &Desired, s: &UserSpec) -> Change {
    let cloud = &ctx.file.name;
    let Some(u) = ctx.live.user(&d.key.name) else {
        match &s.password {
            None => ctx.refusals.push(format!(
                "{} must be created but has no password source (password: {{env: VAR}} or {{file: PATH}})",
                d.key
            )),
            Some(secret) => {
                if let Err(e) = secret.read() {
                    ctx.refusals.push(format!(
                        "{} must be created but its password cannot be read: {e}",
                        d.key
                    ));
                }
            }
        }
        let mut diffs = Vec::new();
        if let Some(g) = &s.group {
            diffs.push(AttrDiff::new("group", None, Some(g.clone())));
        }
        if let Some(gs) = &s.groups {
            diffs.push(AttrDiff::new("groups", None, Some(gs.join(", "))));
        }
        all_new("TEMPLATE/", &s.template, &mut diffs);
        let mut groups: Vec<String> = s.group.iter().cloned().collect();
        for g in s.groups.iter().flatten() {
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        let mut ops = vec![
            Op::AllocUser {
                name: d.key.name.clone(),
                password: s.password.clone(),
                driver: s.auth_driver.clone().unwrap_or_default(),
                groups,
            },
            Op::Update {
                template: with_marker(&s.template, cloud),
                security_groups: None,
            },
        ];
        if s.enabled == Some(false) {
            ops.push(Op::UserEnable(false));
        }
        return created(d, diffs, ops);
    };
    let mut diffs = Vec::new();
    let mut ops = Vec::new();
    let gname_of = |id: i64| {
        ctx.live
            .groups
            .iter()
            .find(|g| g.id == id)
            .map_or_else(|| id.to_string(), |g| g.name.clone())
    };
    if let Some(g) = &s.group
        && *g != gname_of(u.gid)
    {
        diffs.push(AttrDiff::new(
            "group",
            Some(gname_of(u.gid)),
            Some(g.clone()),
        ));
        ops.push(Op::UserChgrp(g.clone()));
    }
    if let Some(want) = &s.groups {
        let primary = s.group.clone().unwrap_or_else(|| gname_of(u.gid));
        let have: Vec<String> = u
            .groups
            .iter()
            .filter(|g| **g != u.gid)
            .map(|g| gname_of(*g))
            .collect();
        let want: Vec<String> = want.iter().filter(|g| **g != primary).cloned().collect();
        diff::name_sets("groups", &want, &have, &mut diffs);
        for g in &want {
            if !have.contains(g) {
                ops.push(Op::UserAddGroup(g.clone()));
            }
        }
        for gid in &u.groups {
            let name = gname_of(*gid);
            if *gid != u.gid && !want.contains(&name) && name != primary {
                ops.push(Op::UserDelGroup(*gid));
            }
        }
    }
    if let Some(drv) = &s.auth_driver
        && *drv != u.auth_driver
    {
        ctx.refusals.push(format!(
            "{} uses the auth driver {:?}, the file says {drv:?}: onecloud does not change auth drivers (it would need the password)",
            d.key, u.auth_driver
        ));
    }
    if let Some(e) = s.enabled
        && e != u.enabled
    {
        diffs.push(AttrDiff::new(
            "enabled",
            Some(u.enabled.to_string()),
            Some(e.to_string()),
        ));
        ops.push(Op::UserEnable(e));
    }
    diff::templates(
        Kind::User,
        "TEMPLATE/",
        &s.template,
        &u.template,
        &[],
        &mut diffs,
    );
    let template_changed = diffs.iter().any(|x| x.attr.starts_with("TEMPLATE/"));
    let marker = live::marker(&u.template).map(str::to_owned);
    if template_changed || marker.as_deref() != Some(cloud.as_str()) {
        ops.insert(
            0,
            Op::Update {
                template: diff::replacement(Kind::User, &s.template, Some(&u.template), cloud, &[]),
                security_groups: None,
            },
        );
    }
    match existing(ctx, d, u.id, marker.as_deref(), diffs) {
        Some(c) => with_ops(c, ops),
        None => refused(d, u.id),
    }
}

fn cluster(ctx: &mut Ctx<'_>, d: &Desired, s: &ClusterSpec) -> Change {
    let cloud = &ctx.file.name;
    match ctx.live.cluster(&d.key.name) {
        None => {
            let mut diffs = Vec::new();
            all_new("TEMPLATE/", &s.template, &mut diffs);
            created(
                d,
                diffs,
                vec![
                    Op::AllocCluster(d.key.name.clone()),
                    Op::Update {
                        template: with_marker(&s.template, cloud),
                        security_groups: None,
                    },
                ],
            )
        }
        Some(c) => {
            let mut diffs = Vec::new();
            diff::templates(
                Kind::Cluster,
                "TEMPLATE/",
                &s.template,
                &c.template,
                &[],
                &mut diffs,
            );
            let update =
                diff::replacement(Kind::Cluster, &s.template, Some(&c.template), cloud, &[]);
            let marker = live::marker(&c.template).map(str::to_owned);
            match existing(ctx, d, c.id, marker.as_deref(), diffs) {
                Some(ch) => with_ops(
                    ch,
                    vec![Op::Update {
                        template: update,
                        security_groups: None,
                    }],
                ),
                None => refused(d, c.id),
            }
        }
    }
}

fn host(ctx: &mut Ctx<'_>, d: &Desired, s: &HostSpec) -> Change {
    let cloud = &ctx.file.name;
    let want_cluster = s.cluster.clone().unwrap_or_else(|| "default".into());
    match ctx.live.host(&d.key.name) {
        None => {
            let mut diffs = vec![
                AttrDiff::new("im_mad", None, Some(s.im_mad.clone())),
                AttrDiff::new("vm_mad", None, Some(s.vm_mad.clone())),
                AttrDiff::new("cluster", None, Some(want_cluster)),
            ];
            all_new("TEMPLATE/", &s.template, &mut diffs);
            created(
                d,
                diffs,
                vec![
                    Op::AllocHost {
                        name: d.key.name.clone(),
                        im_mad: s.im_mad.clone(),
                        vm_mad: s.vm_mad.clone(),
                        cluster: s.cluster.clone(),
                    },
                    Op::Update {
                        template: with_marker(&s.template, cloud),
                        security_groups: None,
                    },
                    Op::WaitHost,
                ],
            )
        }
        Some(h) => {
            let mut diffs = Vec::new();
            let mut ops = Vec::new();
            for (what, want, have) in [
                ("im_mad", &s.im_mad, &h.im_mad),
                ("vm_mad", &s.vm_mad, &h.vm_mad),
            ] {
                if want != have {
                    ctx.refusals.push(format!(
                        "{} has {what} {have:?}, the file says {want:?}: drivers cannot change in place (delete the host and let apply create it again)",
                        d.key
                    ));
                }
            }
            if want_cluster != h.cluster {
                diffs.push(AttrDiff::new(
                    "cluster",
                    Some(h.cluster.clone()),
                    Some(want_cluster.clone()),
                ));
                ops.push(Op::ClusterAdd(want_cluster));
            }
            diff::templates(
                Kind::Host,
                "TEMPLATE/",
                &s.template,
                &h.template,
                &[],
                &mut diffs,
            );
            let marker = live::marker(&h.template).map(str::to_owned);
            if diffs.iter().any(|x| x.attr.starts_with("TEMPLATE/"))
                || marker.as_deref() != Some(cloud.as_str())
            {
                ops.insert(
                    0,
                    Op::Update {
                        template: diff::replacement(
                            Kind::Host,
                            &s.template,
                            Some(&h.template),
                            cloud,
                            &[],
                        ),
                        security_groups: None,
                    },
                );
            }
            match existing(ctx, d, h.id, marker.as_deref(), diffs) {
                Some(c) => with_ops(c, ops),
                None => refused(d, h.id),
            }
        }
    }
}

/// Cluster membership changes of a datastore or network.
fn clusters_diff(
    ctx: &Ctx<'_>,
    want: &Option<Vec<String>>,
    have_ids: &[i64],
    diffs: &mut Vec<AttrDiff>,
    ops: &mut Vec<Op>,
) {
    let Some(want) = want else {
        return;
    };
    let have: Vec<String> = have_ids
        .iter()
        .map(|id| {
            ctx.live
                .clusters
                .iter()
                .find(|c| c.id == *id)
                .map_or_else(|| id.to_string(), |c| c.name.clone())
        })
        .collect();
    diff::name_sets("clusters", want, &have, diffs);
    for c in want {
        if !have.contains(c) {
            ops.push(Op::ClusterAdd(c.clone()));
        }
    }
    for (id, name) in have_ids.iter().zip(&have) {
        if !want.contains(name) {
            ops.push(Op::ClusterDel(*id));
        }
    }
}

fn datastore(ctx: &mut Ctx<'_>, d: &Desired, s: &DatastoreSpec) -> Change {
    let cloud = &ctx.file.name;
    match ctx.live.datastore(&d.key.name) {
        None => {
            let mut diffs = Vec::new();
            if let Some(cs) = &s.clusters {
                diffs.push(AttrDiff::new("clusters", None, Some(cs.join(", "))));
            }
            all_new("TEMPLATE/", &s.template, &mut diffs);
            let mut t = with_marker(&s.template, cloud);
            t.set("NAME", &d.key.name);
            let mut ops = vec![Op::AllocDatastore {
                template: t,
                cluster: s.clusters.as_ref().and_then(|c| c.first().cloned()),
            }];
            for c in s.clusters.iter().flatten().skip(1) {
                ops.push(Op::ClusterAdd(c.clone()));
            }
            created(d, diffs, ops)
        }
        Some(ds) => {
            let mut diffs = Vec::new();
            let mut ops = Vec::new();
            clusters_diff(ctx, &s.clusters, &ds.clusters, &mut diffs, &mut ops);
            diff::templates(
                Kind::Datastore,
                "TEMPLATE/",
                &s.template,
                &ds.template,
                &[],
                &mut diffs,
            );
            let marker = live::marker(&ds.template).map(str::to_owned);
            if diffs.iter().any(|x| x.attr.starts_with("TEMPLATE/"))
                || marker.as_deref() != Some(cloud.as_str())
            {
                ops.insert(
                    0,
                    Op::Update {
                        template: diff::replacement(
                            Kind::Datastore,
                            &s.template,
                            Some(&ds.template),
                            cloud,
                            &["NAME"],
                        ),
                        security_groups: None,
                    },
                );
            }
            match existing(ctx, d, ds.id, marker.as_deref(), diffs) {
                Some(c) => with_ops(c, ops),
                None => refused(d, ds.id),
            }
        }
    }
}

/// Owner, group and permission changes of an owned object.
fn ownership_diff(
    o: &Ownership,
    live_gname: &str,
    live_perms: Option<u32>,
    diffs: &mut Vec<AttrDiff>,
    ops: &mut Vec<Op>,
) {
    if let Some(g) = &o.group
        && g != live_gname
    {
        diffs.push(AttrDiff::new(
            "group",
            Some(live_gname.to_owned()),
            Some(g.clone()),
        ));
        ops.push(Op::Chown {
            user: None,
            group: Some(g.clone()),
        });
    }
    if let Some(p) = o.permissions
        && Some(p) != live_perms
    {
        diffs.push(AttrDiff::new(
            "permissions",
            live_perms.map(|p| format!("{p:03o}")),
            Some(format!("{p:03o}")),
        ));
        ops.push(Op::Chmod(p));
    }
}

/// The ownership ops of a new owned object (made by the applier).
fn ownership_new(ctx: &Ctx<'_>, d: &Desired, o: &Ownership, diffs: &mut Vec<AttrDiff>) -> Vec<Op> {
    let mut ops = Vec::new();
    let owner = d.key.owner.clone().filter(|o| *o != ctx.file.applier);
    if owner.is_some() || o.group.is_some() {
        if let Some(u) = &owner {
            diffs.push(AttrDiff::new("owner", None, Some(u.clone())));
        }
        if let Some(g) = &o.group {
            diffs.push(AttrDiff::new("group", None, Some(g.clone())));
        }
        ops.push(Op::Chown {
            user: owner,
            group: o.group.clone(),
        });
    }
    if let Some(p) = o.permissions {
        diffs.push(AttrDiff::new("permissions", None, Some(format!("{p:03o}"))));
        ops.push(Op::Chmod(p));
    }
    ops
}

fn secgroup(ctx: &mut Ctx<'_>, d: &Desired, s: &SecGroupSpec) -> Change {
    let cloud = &ctx.file.name;
    match ctx.live.secgroup(&d.key) {
        None => {
            let mut diffs = Vec::new();
            all_new("TEMPLATE/", &s.template, &mut diffs);
            let mut t = with_marker(&s.template, cloud);
            t.set("NAME", &d.key.name);
            let mut ops = vec![Op::AllocSecGroup(t)];
            ops.extend(ownership_new(ctx, d, &s.ownership, &mut diffs));
            created(d, diffs, ops)
        }
        Some(sg) => {
            let mut diffs = Vec::new();
            let mut ops = Vec::new();
            diff::templates(
                Kind::SecurityGroup,
                "TEMPLATE/",
                &s.template,
                &sg.template,
                &[],
                &mut diffs,
            );
            let marker = live::marker(&sg.template).map(str::to_owned);
            if !diffs.is_empty() || marker.as_deref() != Some(cloud.as_str()) {
                ops.push(Op::Update {
                    template: diff::replacement(
                        Kind::SecurityGroup,
                        &s.template,
                        Some(&sg.template),
                        cloud,
                        &[],
                    ),
                    security_groups: None,
                });
            }
            ownership_diff(
                &s.ownership,
                &sg.owner.gname,
                Some(sg.permissions.octal()),
                &mut diffs,
                &mut ops,
            );
            match existing(ctx, d, sg.id, marker.as_deref(), diffs) {
                Some(c) => with_ops(c, ops),
                None => refused(d, sg.id),
            }
        }
    }
}

/// Address range attributes the cloud computes (compared only when the file gives them).
const AR_COMPUTED: &[&str] = &[
    "AR_ID",
    "MAC",
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
/// Address range attributes `one.vn.update_ar` cannot change: the range is recreated.
const AR_FIXED: &[&str] = &["TYPE", "IP", "MAC", "IP6"];

/// The SECURITY_GROUPS a network will have: the ids of those named, and the default group
/// (id 0), which oned always adds.
fn sg_names(ctx: &Ctx<'_>, keys: &[ObjKey]) -> Vec<String> {
    let mut ids: Vec<String> = keys
        .iter()
        .map(|k| match ctx.live.id_of(k) {
            Some(id) => id.to_string(),
            None => format!("({} once created)", k.full_name()),
        })
        .collect();
    if !ids.iter().any(|i| i == "0") {
        ids.insert(0, "0".into());
    }
    ids
}

fn network(ctx: &mut Ctx<'_>, d: &Desired, s: &NetworkSpec) -> Change {
    let cloud = &ctx.file.name;
    let Some(n) = ctx.live.network(&d.key) else {
        let mut diffs = Vec::new();
        if let Some(cs) = &s.clusters {
            diffs.push(AttrDiff::new("clusters", None, Some(cs.join(", "))));
        }
        if let Some(sgs) = &s.security_groups {
            diffs.push(AttrDiff::new(
                "security_groups",
                None,
                Some(
                    sgs.iter()
                        .map(ObjKey::full_name)
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            ));
        }
        all_new("TEMPLATE/", &s.template, &mut diffs);
        for (i, ar) in s.address_ranges.iter().enumerate() {
            diffs.push(AttrDiff::new(
                format!("AR[{i}]"),
                None,
                Some(diff::show_vector(ar)),
            ));
        }
        let mut t = with_marker(&s.template, cloud);
        t.set("NAME", &d.key.name);
        for ar in &s.address_ranges {
            t.attrs.push(one_proto::template::Attribute {
                name: "AR".into(),
                value: AttrValue::Vector(ar.clone()),
            });
        }
        let mut ops = vec![Op::AllocNetwork {
            template: t,
            security_groups: s.security_groups.clone(),
            cluster: s.clusters.as_ref().and_then(|c| c.first().cloned()),
        }];
        for c in s.clusters.iter().flatten().skip(1) {
            ops.push(Op::ClusterAdd(c.clone()));
        }
        ops.extend(ownership_new(ctx, d, &s.ownership, &mut diffs));
        return created(d, diffs, ops);
    };
    let mut diffs = Vec::new();
    let mut ops = Vec::new();
    clusters_diff(ctx, &s.clusters, &n.clusters, &mut diffs, &mut ops);
    diff::templates(
        Kind::Network,
        "TEMPLATE/",
        &s.template,
        &n.template,
        &["SECURITY_GROUPS"],
        &mut diffs,
    );
    let mut template_changed = !diffs.iter().all(|x| x.attr == "clusters");
    if let Some(sgs) = &s.security_groups {
        let want = sg_names(ctx, sgs);
        let have: Vec<String> = n
            .template
            .get("SECURITY_GROUPS")
            .unwrap_or("")
            .split(',')
            .map(|x| x.trim().to_owned())
            .filter(|x| !x.is_empty())
            .collect();
        let before = diffs.len();
        diff::name_sets("TEMPLATE/SECURITY_GROUPS", &want, &have, &mut diffs);
        template_changed |= diffs.len() > before;
    }
    let marker = live::marker(&n.template).map(str::to_owned);
    if template_changed || marker.as_deref() != Some(cloud.as_str()) {
        ops.insert(
            0,
            Op::Update {
                template: diff::replacement(
                    Kind::Network,
                    &s.template,
                    Some(&n.template),
                    cloud,
                    if s.security_groups.is_some() {
                        &["SECURITY_GROUPS"]
                    } else {
                        &[]
                    },
                ),
                security_groups: s.security_groups.clone(),
            },
        );
    }
    // Address ranges, matched by position (ranges in AR_ID order).
    let mut have: Vec<&oca::AddressRange> = n.address_ranges.iter().collect();
    have.sort_by_key(|a| a.id);
    for i in 0..s.address_ranges.len().max(have.len()) {
        let path = format!("AR[{i}]");
        match (s.address_ranges.get(i), have.get(i)) {
            (Some(want), Some(ar)) => {
                let live_attrs = Vector {
                    attrs: ar
                        .attrs
                        .attrs
                        .iter()
                        .filter(|(k, _)| k != "LEASES")
                        .cloned()
                        .collect(),
                };
                let before = diffs.len();
                diff::vectors(&path, want, &live_attrs, AR_COMPUTED, &mut diffs);
                if diffs.len() == before {
                    continue;
                }
                let fixed = AR_FIXED
                    .iter()
                    .any(|f| want.get(f).is_some() && want.get(f) != ar.get(f));
                if fixed {
                    if ar.used_leases() > 0 {
                        ctx.refusals.push(format!(
                            "{}: address range {} (AR_ID {}) must be recreated to change its TYPE, IP, MAC or IP6, but {} of its leases are in use",
                            d.key, i, ar.id, ar.used_leases()
                        ));
                    }
                    ops.push(Op::ArRemove(ar.id));
                    ops.push(Op::ArAdd(want.clone()));
                } else {
                    let mut v = want.clone();
                    v.set("AR_ID", ar.id.to_string());
                    ops.push(Op::ArUpdate(v));
                }
            }
            (Some(want), None) => {
                diffs.push(AttrDiff::new(path, None, Some(diff::show_vector(want))));
                ops.push(Op::ArAdd(want.clone()));
            }
            (None, Some(ar)) => {
                diffs.push(AttrDiff::new(
                    path,
                    Some(diff::show_vector(&ar.attrs)),
                    None,
                ));
                ops.push(Op::ArRemove(ar.id));
            }
            (None, None) => {}
        }
    }
    ownership_diff(
        &s.ownership,
        &n.owner.gname,
        Some(n.permissions.octal()),
        &mut diffs,
        &mut ops,
    );
    match existing(ctx, d, n.id, marker.as_deref(), diffs) {
        Some(c) => with_ops(c, ops),
        None => refused(d, n.id),
    }
}

/// Image attributes that are elements of the IMAGE document, not of its TEMPLATE.
const IMAGE_TOP: &[&str] = &[
    "NAME",
    "TYPE",
    "PERSISTENT",
    "SIZE",
    "PATH",
    "SOURCE",
    "FORMAT",
    "FS",
    "DISK_TYPE",
    "DATASTORE",
    "DATASTORE_ID",
];

fn yes(s: &str) -> bool {
    matches!(s.trim().to_ascii_uppercase().as_str(), "YES" | "1" | "TRUE")
}

fn image(ctx: &mut Ctx<'_>, d: &Desired, s: &ImageSpec) -> Change {
    let cloud = &ctx.file.name;
    let Some(img) = ctx.live.image(&d.key) else {
        let mut diffs = vec![AttrDiff::new("datastore", None, Some(s.datastore.clone()))];
        all_new("", &s.template, &mut diffs);
        let mut t = with_marker(&s.template, cloud);
        t.set("NAME", &d.key.name);
        let mut ops = vec![
            Op::AllocImage {
                template: t,
                datastore: s.datastore.clone(),
            },
            Op::WaitImage,
        ];
        ops.extend(ownership_new(ctx, d, &s.ownership, &mut diffs));
        return created(d, diffs, ops);
    };
    let mut diffs = Vec::new();
    let mut ops = Vec::new();
    if img.datastore != s.datastore {
        ctx.refusals.push(format!(
            "{} is in datastore {:?}, the file says {:?}: images do not move (give the image a new name to make a new one)",
            d.key, img.datastore, s.datastore
        ));
    }
    let t = &s.template;
    if let Some(ty) = t.get("TYPE") {
        let ty = ty.trim().to_ascii_uppercase();
        if ty != img.type_name() {
            diffs.push(AttrDiff::new(
                "TYPE",
                Some(img.type_name()),
                Some(ty.clone()),
            ));
            ops.push(Op::ImageType(ty));
        }
    }
    if let Some(p) = t.get("PERSISTENT") {
        let want = yes(p);
        if want != img.persistent {
            let show = |b: bool| if b { "YES" } else { "NO" }.to_string();
            diffs.push(AttrDiff::new(
                "PERSISTENT",
                Some(show(img.persistent)),
                Some(show(want)),
            ));
            ops.push(Op::ImagePersistent(want));
        }
    }
    // What an image was made from cannot change afterwards.
    let fixed: [(&str, String); 4] = [
        ("PATH", img.path.clone()),
        ("FORMAT", img.format.clone()),
        ("FS", img.fs.clone()),
        ("SIZE", img.size.to_string()),
    ];
    for (attr, have) in fixed {
        let Some(want) = t.get(attr) else { continue };
        // SIZE of an image made from PATH is the file's; only an empty datablock's counts.
        if attr == "SIZE" && t.get("PATH").is_some() {
            continue;
        }
        if attr == "FORMAT" && have.is_empty() {
            continue;
        }
        if want.trim() != have {
            ctx.refusals.push(format!(
                "{} has {attr} {have:?}, the file says {want:?}: an image's {attr} cannot change (give the image a new name to make a new one)",
                d.key
            ));
        }
    }
    let mut free = t.clone();
    free.attrs.retain(|a| !IMAGE_TOP.contains(&a.name.as_str()));
    diff::templates(
        Kind::Image,
        "TEMPLATE/",
        &free,
        &img.template,
        IMAGE_TOP,
        &mut diffs,
    );
    let marker = live::marker(&img.template).map(str::to_owned);
    if diffs.iter().any(|x| x.attr.starts_with("TEMPLATE/"))
        || marker.as_deref() != Some(cloud.as_str())
    {
        ops.insert(
            0,
            Op::Update {
                template: diff::replacement(Kind::Image, &free, Some(&img.template), cloud, &[]),
                security_groups: None,
            },
        );
    }
    ownership_diff(
        &s.ownership,
        &img.owner.gname,
        Some(img.permissions.octal()),
        &mut diffs,
        &mut ops,
    );
    match existing(ctx, d, img.id, marker.as_deref(), diffs) {
        Some(c) => with_ops(c, ops),
        None => refused(d, img.id),
    }
}

fn vm_template(ctx: &mut Ctx<'_>, d: &Desired, s: &TemplateSpec) -> Change {
    let cloud = &ctx.file.name;
    let Some(tp) = ctx.live.template(&d.key) else {
        let mut diffs = Vec::new();
        all_new("TEMPLATE/", &s.template, &mut diffs);
        let mut t = with_marker(&s.template, cloud);
        t.set("NAME", &d.key.name);
        let mut ops = vec![Op::AllocTemplate(t)];
        ops.extend(ownership_new(ctx, d, &s.ownership, &mut diffs));
        return created(d, diffs, ops);
    };
    let mut diffs = Vec::new();
    let mut ops = Vec::new();
    diff::templates(
        Kind::Template,
        "TEMPLATE/",
        &s.template,
        &tp.template,
        &["NAME"],
        &mut diffs,
    );
    let marker = live::marker(&tp.template).map(str::to_owned);
    if !diffs.is_empty() || marker.as_deref() != Some(cloud.as_str()) {
        let mut t = diff::replacement(Kind::Template, &s.template, Some(&tp.template), cloud, &[]);
        t.set("NAME", &d.key.name);
        ops.push(Op::Update {
            template: t,
            security_groups: None,
        });
    }
    ownership_diff(
        &s.ownership,
        &tp.owner.gname,
        Some(tp.permissions.octal()),
        &mut diffs,
        &mut ops,
    );
    match existing(ctx, d, tp.id, marker.as_deref(), diffs) {
        Some(c) => with_ops(c, ops),
        None => refused(d, tp.id),
    }
}

/// The digest a VM of this set carries: of the template it is made from (as the file says
/// it) and of the extra attributes. A VM with another digest is out of date.
pub fn vm_digest(file: &CloudFile, s: &VmSpec) -> String {
    let mut h = Sha256::new();
    match file.get(&s.template).map(|d| &d.spec) {
        Some(Spec::Template(t)) => h.update(canonical_text(&t.template).as_bytes()),
        _ => h.update(s.template.full_name().as_bytes()),
    }
    h.update(b"\0");
    h.update(canonical_text(&s.extra).as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// A template's text with attributes in name order (repeated names keep theirs), so that
/// the order a file writes them in does not matter.
fn canonical_text(t: &Template) -> String {
    let mut t = t.clone();
    t.attrs.sort_by(|a, b| a.name.cmp(&b.name));
    for a in &mut t.attrs {
        if let AttrValue::Vector(v) = &mut a.value {
            v.attrs.sort();
        }
    }
    t.to_text()
}

fn vm_set(ctx: &mut Ctx<'_>, d: &Desired, s: &VmSpec) -> Vec<Change> {
    let cloud = ctx.file.name.clone();
    let set = d.key.full_name();
    let shown = if d.key.owner.as_deref() == Some(ctx.file.applier.as_str()) {
        d.key.name.clone()
    } else {
        set.clone()
    };
    let digest = vm_digest(ctx.file, s);
    let mut members: Vec<&oca::Vm> = ctx
        .live
        .vms
        .iter()
        .filter(|vm| live::vm_marker(vm).is_some_and(|(c, st, _)| c == cloud && st == set))
        .collect();
    members.sort_by_key(|vm| vm.id);
    let mut out = Vec::new();
    let want = s.count as usize;
    // The newest go when there are too many.
    let mut keep = members.clone();
    if members.len() > want {
        for vm in members[want..].iter().rev() {
            let mut c = Change::new(Kind::Vm, vm.name.clone(), Some(vm.id), Action::Delete);
            c.diffs.push(AttrDiff::new(
                "count",
                Some(members.len().to_string()),
                Some(want.to_string()),
            ));
            c.notes.push(format!(
                "VM set {shown}: {} VMs, {want} wanted: the newest go",
                members.len()
            ));
            c.ops = vec![Op::Terminate, Op::WaitVmGone];
            c.key = Some(d.key.clone());
            out.push(c);
        }
        keep.truncate(want);
    }
    let mut used: BTreeSet<String> = keep.iter().map(|vm| vm.name.clone()).collect();
    let mut next_name = || {
        let mut i = 0;
        loop {
            let n = format!("{}-{i}", d.key.name);
            if used.insert(n.clone()) {
                return n;
            }
            i += 1;
        }
    };
    let mut extra = s.extra.clone();
    let mut marker = Vector::new();
    marker.set("CLOUD", &cloud);
    marker.set("SET", &set);
    marker.set("DIGEST", &digest);
    extra.set_vector(VM_MARKER, marker);
    let outdated: Vec<&&oca::Vm> = keep
        .iter()
        .filter(|vm| live::vm_marker(vm).is_none_or(|(_, _, dg)| dg != digest))
        .collect();
    if !outdated.is_empty() && !ctx.opts.replace {
        ctx.notes.push(format!(
            "VM set {shown}: {} of {} VMs are out of date (made from an older template or extra): `--replace` recreates them",
            outdated.len(),
            keep.len()
        ));
    }
    for vm in &keep {
        let is_old = outdated.iter().any(|o| o.id == vm.id);
        if is_old && ctx.opts.replace {
            let mut c = Change::new(Kind::Vm, vm.name.clone(), Some(vm.id), Action::Replace);
            c.notes.push(format!(
                "VM set {shown}: made from an older template or extra"
            ));
            c.ops = vec![
                Op::Terminate,
                Op::WaitVmGone,
                Op::Instantiate {
                    template: s.template.clone(),
                    name: vm.name.clone(),
                    extra: extra.clone(),
                },
                Op::WaitVmRunning,
            ];
            c.ops.extend(vm_ownership_ops(ctx, d, &s.ownership));
            c.key = Some(d.key.clone());
            out.push(c);
        } else {
            let mut c = Change::new(Kind::Vm, vm.name.clone(), Some(vm.id), Action::Nothing);
            if is_old {
                c.notes.push("out of date".into());
            }
            let mut ops = Vec::new();
            ownership_diff(
                &s.ownership,
                &vm.owner.gname,
                vm.permissions.map(|p| p.octal()),
                &mut c.diffs,
                &mut ops,
            );
            if !ops.is_empty() {
                c.action = Action::Update;
                c.ops = ops;
            }
            c.key = Some(d.key.clone());
            out.push(c);
        }
    }
    for _ in keep.len()..want {
        let name = next_name();
        let mut c = Change::new(Kind::Vm, name.clone(), None, Action::Create);
        c.diffs.push(AttrDiff::new(
            "template",
            None,
            Some(s.template.full_name()),
        ));
        if members.len() != want {
            c.notes.push(format!(
                "VM set {shown}: {} VMs, {want} wanted",
                members.len()
            ));
        }
        c.ops = vec![Op::Instantiate {
            template: s.template.clone(),
            name,
            extra: extra.clone(),
        }];
        c.ops.extend(vm_ownership_ops(ctx, d, &s.ownership));
        c.ops.push(Op::WaitVmRunning);
        c.key = Some(d.key.clone());
        out.push(c);
    }
    if out.is_empty() {
        // count 0 and none there: still say the set is as the file says.
        let mut c = Change::new(Kind::Vm, shown, None, Action::Nothing);
        c.notes.push("no VM wanted".into());
        out.push(c);
    }
    out
}

fn vm_ownership_ops(ctx: &Ctx<'_>, d: &Desired, o: &Ownership) -> Vec<Op> {
    let mut ops = Vec::new();
    let owner = d.key.owner.clone().filter(|u| *u != ctx.file.applier);
    if owner.is_some() || o.group.is_some() {
        ops.push(Op::Chown {
            user: owner,
            group: o.group.clone(),
        });
    }
    if let Some(p) = o.permissions {
        ops.push(Op::Chmod(p));
    }
    ops
}

fn group_admins(ctx: &mut Ctx<'_>, d: &Desired, s: &GroupAdminsSpec) -> Change {
    let name = d.key.name.clone();
    let live_group = ctx.live.group(&s.group);
    let have: Vec<(i64, String)> = live_group
        .map(|g| {
            g.admins
                .iter()
                .map(|uid| {
                    let n = ctx
                        .live
                        .users
                        .iter()
                        .find(|u| u.id == *uid)
                        .map_or_else(|| uid.to_string(), |u| u.name.clone());
                    (*uid, n)
                })
                .collect()
        })
        .unwrap_or_default();
    let have_names: Vec<String> = have.iter().map(|(_, n)| n.clone()).collect();
    let mut diffs = Vec::new();
    diff::name_sets("admins", &s.admins, &have_names, &mut diffs);
    let mut ops = Vec::new();
    for a in &s.admins {
        if !have_names.contains(a) {
            ops.push(Op::GroupAddAdmin(a.clone()));
        }
    }
    for (uid, n) in &have {
        if !s.admins.contains(n) {
            ops.push(Op::GroupDelAdmin(*uid));
        }
    }
    let action = match (live_group.is_some(), ops.is_empty()) {
        (_, true) => Action::Nothing,
        (false, false) => Action::Create,
        (true, false) => Action::Update,
    };
    let mut c = Change::new(Kind::GroupAdmins, name, live_group.map(|g| g.id), action);
    c.diffs = diffs;
    c.ops = ops;
    c
}

/// Quota numbers compare as numbers (OpenNebula may write `2` as `2.00`).
fn same_number(a: &str, b: &str) -> bool {
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() < 1e-9,
        _ => a.trim() == b.trim(),
    }
}

fn quota(ctx: &mut Ctx<'_>, d: &Desired, s: &QuotaSpec) -> Change {
    let (owner_id, quotas) = match &s.owner {
        QuotaOwner::User(u) => match ctx.live.user(u) {
            Some(x) => (Some(x.id), Some(&x.quotas)),
            None => (None, None),
        },
        QuotaOwner::Group(g) => match ctx.live.group(g) {
            Some(x) => (Some(x.id), Some(&x.quotas)),
            None => (None, None),
        },
    };
    let mut diffs = Vec::new();
    for l in &s.limits {
        let object_id = l.object.as_ref().map(|k| ctx.live.id_of(k));
        let have: Option<String> = quotas.and_then(|q| {
            let entries = match l.section {
                "VM" => &q.vm,
                "DATASTORE" => &q.datastore,
                "NETWORK" => &q.network,
                _ => &q.image,
            };
            let entry = match object_id {
                None => q.vm_global(),
                Some(None) => None,
                Some(Some(id)) => entries
                    .iter()
                    .find(|v| v.get("ID").is_some_and(|x| x.trim() == id.to_string())),
            };
            entry.and_then(|v| v.get(&l.attr)).map(str::to_owned)
        });
        if have.as_deref().is_none_or(|h| !same_number(h, &l.value)) {
            let path = match &l.object {
                Some(k) => format!("{}[{}]/{}", l.section, k.full_name(), l.attr),
                None => format!("{}/{}", l.section, l.attr),
            };
            // An entry OpenNebula has not written yet means the default limit.
            if have.is_none() && l.value == "-1" {
                continue;
            }
            diffs.push(AttrDiff::new(path, have, Some(l.value.clone())));
        }
    }
    let action = if diffs.is_empty() {
        Action::Nothing
    } else if owner_id.is_some() {
        Action::Update
    } else {
        Action::Create
    };
    let mut c = Change::new(Kind::Quota, d.key.name.clone(), owner_id, action);
    if !diffs.is_empty() {
        c.ops = vec![Op::Quota(s.owner.clone(), s.limits.clone())];
    }
    c.diffs = diffs;
    c
}

/// The four words of a rule, if every name in it exists already.
pub(crate) fn acl_words(s: &AclSpec, id_of: &dyn Fn(&ObjKey) -> Option<i64>) -> Option<[u64; 4]> {
    let word = |sel: &AclSel| -> Option<u64> {
        let id = |k: ObjKey| id_of(&k).map(|i| (i as u64) & pacl::ID_MASK);
        Some(match sel {
            AclSel::All => pacl::ALL_ID,
            AclSel::Id('#', n) => pacl::INDIVIDUAL_ID | u64::from(*n),
            AclSel::Id('@', n) => pacl::GROUP_ID | u64::from(*n),
            AclSel::Id(_, n) => pacl::CLUSTER_ID | u64::from(*n),
            AclSel::User(u) => pacl::INDIVIDUAL_ID | id(ObjKey::new(Kind::User, u))?,
            AclSel::Group(g) => pacl::GROUP_ID | id(ObjKey::new(Kind::Group, g))?,
            AclSel::Cluster(c) => pacl::CLUSTER_ID | id(ObjKey::new(Kind::Cluster, c))?,
            AclSel::Object(k) => pacl::INDIVIDUAL_ID | id(k.clone())?,
        })
    };
    Some([
        word(&s.user)?,
        s.resource_types | word(&s.resource)?,
        s.rights,
        s.zone,
    ])
}

fn acl(ctx: &mut Ctx<'_>, s: &AclSpec) -> Change {
    let words = acl_words(s, &|k| ctx.live.id_of(k));
    let found = words.and_then(|w| {
        ctx.live.acls.iter().find(|r| {
            r.parsed()
                .is_some_and(|p| [p.user, p.resource, p.rights, p.zone] == w)
        })
    });
    match found {
        Some(r) => Change::new(Kind::Acl, s.text.clone(), Some(r.id), Action::Nothing),
        None => {
            let mut c = Change::new(Kind::Acl, s.text.clone(), None, Action::Create);
            c.ops = vec![Op::AclAdd(s.clone())];
            c
        }
    }
}

/// Managed objects that are no longer in the file: deleted with `--prune`, else listed.
fn leftovers(ctx: &mut Ctx<'_>) -> Vec<Change> {
    let cloud = ctx.file.name.clone();
    let applier = ctx.file.applier.clone();
    let live = ctx.live;
    let mut found: Vec<(Kind, String, i64)> = Vec::new();
    let mut check = |kind: Kind, key: ObjKey, id: i64, t: &Template| {
        if live::marker(t) == Some(cloud.as_str())
            && !ctx.declared.contains(&key)
            && !is_builtin(kind, id)
        {
            let name = if key.owner.as_deref() == Some(applier.as_str()) {
                key.name.clone()
            } else {
                key.full_name()
            };
            found.push((kind, name, id));
        }
    };
    for o in &live.groups {
        check(
            Kind::Group,
            ObjKey::new(Kind::Group, &o.name),
            o.id,
            &o.template,
        );
    }
    for o in &live.users {
        check(
            Kind::User,
            ObjKey::new(Kind::User, &o.name),
            o.id,
            &o.template,
        );
    }
    for o in &live.clusters {
        check(
            Kind::Cluster,
            ObjKey::new(Kind::Cluster, &o.name),
            o.id,
            &o.template,
        );
    }
    for o in &live.hosts {
        check(
            Kind::Host,
            ObjKey::new(Kind::Host, &o.name),
            o.id,
            &o.template,
        );
    }
    for o in &live.datastores {
        check(
            Kind::Datastore,
            ObjKey::new(Kind::Datastore, &o.name),
            o.id,
            &o.template,
        );
    }
    for o in &live.secgroups {
        let k = ObjKey::owned(Kind::SecurityGroup, &o.owner.uname, &o.name);
        check(Kind::SecurityGroup, k, o.id, &o.template);
    }
    for o in &live.networks {
        let k = ObjKey::owned(Kind::Network, &o.owner.uname, &o.name);
        check(Kind::Network, k, o.id, &o.template);
    }
    for o in &live.images {
        let k = ObjKey::owned(Kind::Image, &o.owner.uname, &o.name);
        check(Kind::Image, k, o.id, &o.template);
    }
    for o in &live.templates {
        let k = ObjKey::owned(Kind::Template, &o.owner.uname, &o.name);
        check(Kind::Template, k, o.id, &o.template);
    }
    // VMs of sets the file no longer has.
    let sets: BTreeSet<String> = ctx
        .file
        .objects
        .iter()
        .filter(|d| d.key.kind == Kind::Vm)
        .map(|d| d.key.full_name())
        .collect();
    for vm in &live.vms {
        if let Some((c, set, _)) = live::vm_marker(vm)
            && c == cloud
            && !sets.contains(set)
        {
            found.push((Kind::Vm, vm.name.clone(), vm.id));
        }
    }
    // ACL rules of managed users and groups that the file does not give.
    found.extend(acl_leftovers(ctx));
    let mut out = Vec::new();
    for (kind, name, id) in found {
        if ctx.opts.prune {
            let mut c = Change::new(kind, name, Some(id), Action::Delete);
            c.notes
                .push("managed by this file and no longer in it".into());
            c.ops = match kind {
                Kind::Vm => vec![Op::Terminate, Op::WaitVmGone],
                Kind::Acl => vec![Op::AclDel(id)],
                _ => vec![Op::Delete],
            };
            out.push(c);
        } else {
            ctx.notes.push(format!(
                "{} {name} (id {id}) is managed by this file but no longer in it: `--prune` deletes it",
                kind.noun()
            ));
        }
    }
    out
}

fn acl_leftovers(ctx: &Ctx<'_>) -> Vec<(Kind, String, i64)> {
    let cloud = ctx.file.name.as_str();
    let live = ctx.live;
    let managed_users: BTreeSet<i64> = live
        .users
        .iter()
        .filter(|u| live::marker(&u.template) == Some(cloud) && !is_builtin(Kind::User, u.id))
        .map(|u| u.id)
        .collect();
    let managed_groups: BTreeSet<i64> = live
        .groups
        .iter()
        .filter(|g| live::marker(&g.template) == Some(cloud) && !is_builtin(Kind::Group, g.id))
        .map(|g| g.id)
        .collect();
    let automatic = automatic_rules(live);
    let wanted: Vec<[u64; 4]> = ctx
        .file
        .objects
        .iter()
        .filter_map(|d| match &d.spec {
            Spec::Acl(s) => acl_words(s, &|k| live.id_of(k)),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for r in &live.acls {
        let Some(p) = r.parsed() else { continue };
        let w = [p.user, p.resource, p.rights, p.zone];
        let id = (p.user & pacl::ID_MASK) as i64;
        let ours = match p.user & pacl::SELECTOR_MASK {
            pacl::INDIVIDUAL_ID => managed_users.contains(&id),
            pacl::GROUP_ID => managed_groups.contains(&id),
            _ => false,
        };
        if ours && !wanted.contains(&w) && !automatic.contains(&w) {
            out.push((Kind::Acl, acl_string(live, &ctx.file.applier, &p), r.id));
        }
    }
    out
}

/// The rules oned adds by itself: OpenNebula's defaults, those of each group (its default
/// VDC) and those of each group administrator. They are never deleted nor exported.
pub(crate) fn automatic_rules(live: &Live) -> Vec<[u64; 4]> {
    let mut rules = pacl::default_rules();
    for g in &live.groups {
        rules.extend(pacl::group_vdc_rules(g.id));
        for uid in &g.admins {
            rules.extend(pacl::group_admin_rules(*uid, g.id));
        }
    }
    rules
        .iter()
        .map(|r| [r.user, r.resource, r.rights, r.zone])
        .collect()
}

/// A rule as a cloud file writes it: names where the cloud has them.
pub fn acl_string(live: &Live, applier: &str, r: &pacl::AclRule) -> String {
    let sel = |word: u64, kinds: &[(u64, char, Kind)], single: Option<Kind>| -> String {
        if word & pacl::ALL_ID != 0 {
            return "*".into();
        }
        let id = (word & pacl::ID_MASK) as i64;
        for (bit, c, kind) in kinds {
            if word & bit != 0 {
                let kind = if *c == '#' {
                    single.unwrap_or(*kind)
                } else {
                    *kind
                };
                let name = (single.is_some() || *c != '#' || kind == Kind::User)
                    .then(|| live.key_of(kind, id))
                    .flatten();
                return match name {
                    Some(k) if !k.name.chars().all(|c| c.is_ascii_digit()) => {
                        if k.owner.as_deref() == Some(applier) {
                            format!("{c}{}", k.name)
                        } else {
                            format!("{c}{}", k.full_name())
                        }
                    }
                    _ => format!("{c}{id}"),
                };
            }
        }
        "??".into()
    };
    let user = sel(
        r.user,
        &[
            (pacl::INDIVIDUAL_ID, '#', Kind::User),
            (pacl::GROUP_ID, '@', Kind::Group),
        ],
        None,
    );
    let types: Vec<ObjectType> = ObjectType::ALL
        .iter()
        .copied()
        .filter(|t| t.is_acl_resource() && r.resource & t.bit() != 0)
        .collect();
    let single = match types.as_slice() {
        [t] => crate::decode::acl_kind(*t),
        _ => None,
    };
    let resource = sel(
        r.resource,
        &[
            (pacl::INDIVIDUAL_ID, '#', Kind::Host),
            (pacl::GROUP_ID, '@', Kind::Group),
            (pacl::CLUSTER_ID, '%', Kind::Cluster),
        ],
        single,
    );
    let full = r.to_rule_string();
    let mut parts = full.split(' ');
    let _user_part = parts.next();
    let res_part = parts.next().unwrap_or("");
    let rights = parts.next().unwrap_or("");
    let zone = parts.next().unwrap_or("");
    let type_names = res_part.split('/').next().unwrap_or("");
    let mut s = format!("{user} {type_names}/{resource} {rights}");
    if zone != "#0" && !zone.is_empty() {
        s.push(' ');
        s.push_str(zone);
    }
    s
}
