//! Applying a plan: its changes in order, each one's calls in order, waiting where the cloud
//! needs time (a host MONITORED, an image READY, a VM RUNNING or gone) up to a timeout, and
//! stopping at the first failure with a report of what was done and what was not.

use crate::error::Error;
use crate::live::Live;
use crate::model::{AclSpec, Kind, ObjKey, QuotaLimit, QuotaOwner};
use crate::plan::{Action, Change, Op, Plan, acl_words};
use oca::{Chmod, Client, ClusterMember, OcaError, Template, UpdateMode, Vector, VmAction};
use one_proto::template::Attribute;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long to wait for what must settle.
#[derive(Clone, Copy, Debug)]
pub struct ApplyOptions {
    /// For each wait (a host, an image, a VM).
    pub timeout: Duration,
    /// Between two looks.
    pub poll: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            timeout: Duration::from_secs(300),
            poll: Duration::from_millis(500),
        }
    }
}

/// What apply reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// Starting change `index` (1-based) of `total` changes.
    Start {
        index: usize,
        total: usize,
        change: &'a Change,
    },
    /// Waiting for something to settle.
    Wait { change: &'a Change, what: String },
    /// The change is done; `id` is the object's.
    Done {
        index: usize,
        total: usize,
        change: &'a Change,
        id: Option<i64>,
    },
    /// The change failed; apply stops.
    Failed {
        index: usize,
        total: usize,
        change: &'a Change,
        error: &'a str,
    },
}

/// Receives apply's progress.
pub trait Progress {
    fn event(&mut self, e: Event<'_>);
}

/// Progress nobody looks at.
pub struct Quiet;

impl Progress for Quiet {
    fn event(&mut self, _: Event<'_>) {}
}

/// One change, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub kind: Kind,
    pub name: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
}

/// The failed change and why.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub kind: Kind,
    pub name: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub error: String,
}

/// What apply did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ApplyReport {
    pub done: Vec<Outcome>,
    /// The change that failed (apply stopped there).
    pub failed: Option<Failure>,
    /// Changes not attempted because of the failure.
    pub not_done: Vec<Outcome>,
}

impl ApplyReport {
    pub fn ok(&self) -> bool {
        self.failed.is_none()
    }
}

/// Applies `plan` (computed against `live`). Refuses before any call when the plan has
/// refusals or a secret needed to create a user cannot be read.
pub async fn apply(
    client: &Client,
    plan: &Plan,
    live: &Live,
    opts: ApplyOptions,
    progress: &mut dyn Progress,
) -> Result<ApplyReport, Error> {
    if !plan.refusals.is_empty() {
        return Err(Error::Refused(plan.refusals.clone()));
    }
    // Secrets first: nothing is done if one of them cannot be read.
    let mut secrets = HashMap::new();
    let mut problems = Vec::new();
    for c in &plan.changes {
        for op in &c.ops {
            if let Op::AllocUser { name, password, .. } = op {
                match password.as_ref().map(|s| s.read()) {
                    Some(Ok(v)) => {
                        secrets.insert(name.clone(), v);
                    }
                    Some(Err(e)) => problems.push(format!("user {name}: {e}")),
                    None => problems.push(format!("user {name}: no password source")),
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::Refused(problems));
    }
    let mut run = Run {
        client,
        live,
        opts,
        ids: HashMap::new(),
        secrets,
    };
    let todo: Vec<&Change> = plan.changes.iter().filter(|c| c.is_change()).collect();
    let total = todo.len();
    let mut report = ApplyReport::default();
    for (i, change) in todo.iter().enumerate() {
        let index = i + 1;
        progress.event(Event::Start {
            index,
            total,
            change,
        });
        match run.change(change, progress).await {
            Ok(id) => {
                tracing::info!(kind = ?change.kind, name = %change.name, id, action = ?change.action, "applied");
                progress.event(Event::Done {
                    index,
                    total,
                    change,
                    id,
                });
                report.done.push(Outcome {
                    kind: change.kind,
                    name: change.name.clone(),
                    action: change.action,
                    id,
                });
            }
            Err((id, error)) => {
                tracing::warn!(kind = ?change.kind, name = %change.name, id, %error, "apply failed");
                progress.event(Event::Failed {
                    index,
                    total,
                    change,
                    error: &error,
                });
                report.failed = Some(Failure {
                    kind: change.kind,
                    name: change.name.clone(),
                    action: change.action,
                    id,
                    error,
                });
                report.not_done = todo[i + 1..]
                    .iter()
                    .map(|c| Outcome {
                        kind: c.kind,
                        name: c.name.clone(),
                        action: c.action,
                        id: c.id,
                    })
                    .collect();
                break;
            }
        }
    }
    Ok(report)
}

struct Run<'a> {
    client: &'a Client,
    live: &'a Live,
    opts: ApplyOptions,
    /// Objects made during this run.
    ids: HashMap<ObjKey, i64>,
    secrets: HashMap<String, String>,
}

type OpResult<T> = Result<T, String>;

fn api(what: &str) -> impl Fn(OcaError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Run<'_> {
    fn id_of(&self, key: &ObjKey) -> Option<i64> {
        self.ids.get(key).copied().or_else(|| self.live.id_of(key))
    }

    fn need(&self, kind: Kind, name: &str) -> OpResult<i64> {
        self.id_of(&ObjKey::new(kind, name))
            .ok_or_else(|| format!("{} {name} does not exist", kind.noun()))
    }

    fn need_key(&self, key: &ObjKey) -> OpResult<i64> {
        self.id_of(key)
            .ok_or_else(|| format!("{key} does not exist"))
    }

    fn cluster_or_default(&self, name: &Option<String>) -> OpResult<i64> {
        match name {
            None => Ok(-1),
            Some(n) => self.need(Kind::Cluster, n),
        }
    }

    /// Runs one change's ops; returns the object's id, or the id so far and the error.
    async fn change(
        &mut self,
        c: &Change,
        progress: &mut dyn Progress,
    ) -> Result<Option<i64>, (Option<i64>, String)> {
        let mut this = c.id;
        for op in &c.ops {
            if let Err(e) = self.op(c, op, &mut this, progress).await {
                return Err((this, e));
            }
            // Objects made here are known by key to the changes that follow.
            if let (Some(id), Some(key)) = (this, &c.key)
                && c.kind != Kind::Vm
                && Kind::OBJECTS.contains(&c.kind)
            {
                self.ids.insert(key.clone(), id);
            }
        }
        Ok(this)
    }

    async fn op(
        &mut self,
        c: &Change,
        op: &Op,
        this: &mut Option<i64>,
        progress: &mut dyn Progress,
    ) -> OpResult<()> {
        let client = self.client;
        let me = || this.ok_or_else(|| "the object was not made".to_string());
        match op {
            Op::AllocGroup(name) => {
                *this = Some(
                    client
                        .group()
                        .allocate(name)
                        .await
                        .map_err(api("one.group.allocate"))?,
                );
            }
            Op::AllocUser {
                name,
                driver,
                groups,
                ..
            } => {
                let gids = groups
                    .iter()
                    .map(|g| self.need(Kind::Group, g))
                    .collect::<OpResult<Vec<_>>>()?;
                let pw = self.secrets.get(name).cloned().unwrap_or_default();
                *this = Some(
                    client
                        .user()
                        .allocate(name, &pw, driver, &gids)
                        .await
                        .map_err(api("one.user.allocate"))?,
                );
            }
            Op::AllocCluster(name) => {
                *this = Some(
                    client
                        .cluster()
                        .allocate(name)
                        .await
                        .map_err(api("one.cluster.allocate"))?,
                );
            }
            Op::AllocHost {
                name,
                im_mad,
                vm_mad,
                cluster,
            } => {
                let cid = self.cluster_or_default(cluster)?;
                *this = Some(
                    client
                        .host()
                        .allocate(name, im_mad, vm_mad, cid)
                        .await
                        .map_err(api("one.host.allocate"))?,
                );
            }
            Op::AllocDatastore { template, cluster } => {
                let cid = self.cluster_or_default(cluster)?;
                *this = Some(
                    client
                        .datastore()
                        .allocate(&template.to_text(), cid)
                        .await
                        .map_err(api("one.datastore.allocate"))?,
                );
            }
            Op::AllocSecGroup(t) => {
                *this = Some(
                    client
                        .secgroup()
                        .allocate(&t.to_text())
                        .await
                        .map_err(api("one.secgroup.allocate"))?,
                );
            }
            Op::AllocNetwork {
                template,
                security_groups,
                cluster,
            } => {
                let t = self.with_secgroups(template, security_groups)?;
                let cid = self.cluster_or_default(cluster)?;
                *this = Some(
                    client
                        .vnet()
                        .allocate(&t.to_text(), cid)
                        .await
                        .map_err(api("one.vn.allocate"))?,
                );
            }
            Op::AllocImage {
                template,
                datastore,
            } => {
                let ds = self.need(Kind::Datastore, datastore)?;
                *this = Some(
                    client
                        .image()
                        .allocate(&template.to_text(), ds)
                        .await
                        .map_err(api("one.image.allocate"))?,
                );
            }
            Op::AllocTemplate(t) => {
                *this = Some(
                    client
                        .template()
                        .allocate(&t.to_text())
                        .await
                        .map_err(api("one.template.allocate"))?,
                );
            }
            Op::Instantiate {
                template,
                name,
                extra,
            } => {
                let tid = self.need_key(template)?;
                *this = Some(
                    client
                        .template()
                        .instantiate(tid, name, false, &extra.to_text(), false)
                        .await
                        .map_err(api("one.template.instantiate"))?,
                );
            }
            Op::Update {
                template,
                security_groups,
            } => {
                let id = me()?;
                let t = self.with_secgroups(template, security_groups)?;
                let text = t.to_text();
                let r = match c.kind {
                    Kind::Group => client.group().update(id, &text, UpdateMode::Replace).await,
                    Kind::User => client.user().update(id, &text, UpdateMode::Replace).await,
                    Kind::Cluster => {
                        client
                            .cluster()
                            .update(id, &text, UpdateMode::Replace)
                            .await
                    }
                    Kind::Host => client.host().update(id, &text, UpdateMode::Replace).await,
                    Kind::Datastore => {
                        client
                            .datastore()
                            .update(id, &text, UpdateMode::Replace)
                            .await
                    }
                    Kind::SecurityGroup => {
                        client
                            .secgroup()
                            .update(id, &text, UpdateMode::Replace)
                            .await
                    }
                    Kind::Network => client.vnet().update(id, &text, UpdateMode::Replace).await,
                    Kind::Image => client.image().update(id, &text, UpdateMode::Replace).await,
                    Kind::Template => {
                        client
                            .template()
                            .update(id, &text, UpdateMode::Replace)
                            .await
                    }
                    other => return Err(format!("cannot update a {}", other.noun())),
                };
                r.map_err(api("update"))?;
            }
            Op::ClusterAdd(cluster) => {
                let cid = self.need(Kind::Cluster, cluster)?;
                client
                    .cluster()
                    .add(cid, member(c.kind)?, me()?)
                    .await
                    .map_err(api("one.cluster.add"))?;
            }
            Op::ClusterDel(cid) => {
                client
                    .cluster()
                    .remove(*cid, member(c.kind)?, me()?)
                    .await
                    .map_err(api("one.cluster.del"))?;
            }
            Op::ArAdd(v) => {
                client
                    .vnet()
                    .add_ar(me()?, &vector_text("AR", v))
                    .await
                    .map_err(api("one.vn.add_ar"))?;
            }
            Op::ArUpdate(v) => {
                client
                    .vnet()
                    .update_ar(me()?, &vector_text("AR", v))
                    .await
                    .map_err(api("one.vn.update_ar"))?;
            }
            Op::ArRemove(ar) => {
                client
                    .vnet()
                    .rm_ar(me()?, *ar, false)
                    .await
                    .map_err(api("one.vn.rm_ar"))?;
            }
            Op::Chown { user, group } => {
                let uid = match user {
                    Some(u) => self.need(Kind::User, u)?,
                    None => -1,
                };
                let gid = match group {
                    Some(g) => self.need(Kind::Group, g)?,
                    None => -1,
                };
                let id = me()?;
                let r = match c.kind {
                    Kind::SecurityGroup => client.secgroup().chown(id, uid, gid).await,
                    Kind::Network => client.vnet().chown(id, uid, gid).await,
                    Kind::Image => client.image().chown(id, uid, gid).await,
                    Kind::Template => client.template().chown(id, uid, gid).await,
                    Kind::Vm => client.vm().chown(id, uid, gid).await,
                    other => return Err(format!("cannot chown a {}", other.noun())),
                };
                r.map_err(api("chown"))?;
            }
            Op::Chmod(mode) => {
                let m = Chmod::octal(*mode);
                let id = me()?;
                let r = match c.kind {
                    Kind::SecurityGroup => client.secgroup().chmod(id, &m).await,
                    Kind::Network => client.vnet().chmod(id, &m).await,
                    Kind::Image => client.image().chmod(id, &m).await,
                    Kind::Template => client.template().chmod(id, &m, false).await,
                    Kind::Vm => client.vm().chmod(id, &m).await,
                    other => return Err(format!("cannot chmod a {}", other.noun())),
                };
                r.map_err(api("chmod"))?;
            }
            Op::ImageType(t) => {
                client
                    .image()
                    .chtype(me()?, t)
                    .await
                    .map_err(api("one.image.chtype"))?;
            }
            Op::ImagePersistent(p) => {
                client
                    .image()
                    .persistent(me()?, *p)
                    .await
                    .map_err(api("one.image.persistent"))?;
            }
            Op::UserChgrp(g) => {
                let gid = self.need(Kind::Group, g)?;
                client
                    .user()
                    .chgrp(me()?, gid)
                    .await
                    .map_err(api("one.user.chgrp"))?;
            }
            Op::UserAddGroup(g) => {
                let gid = self.need(Kind::Group, g)?;
                client
                    .user()
                    .addgroup(me()?, gid)
                    .await
                    .map_err(api("one.user.addgroup"))?;
            }
            Op::UserDelGroup(gid) => {
                client
                    .user()
                    .delgroup(me()?, *gid)
                    .await
                    .map_err(api("one.user.delgroup"))?;
            }
            Op::UserEnable(e) => {
                client
                    .user()
                    .enable(me()?, *e)
                    .await
                    .map_err(api("one.user.enable"))?;
            }
            Op::Quota(owner, limits) => {
                let text = self.quota_text(limits)?;
                match owner {
                    QuotaOwner::User(u) => {
                        let id = self.need(Kind::User, u)?;
                        *this = Some(id);
                        client.user().quota(id, &text).await
                    }
                    QuotaOwner::Group(g) => {
                        let id = self.need(Kind::Group, g)?;
                        *this = Some(id);
                        client.group().quota(id, &text).await
                    }
                }
                .map_err(api("quota"))?;
            }
            Op::GroupAddAdmin(u) => {
                let gid = match this {
                    Some(id) => *id,
                    None => self.need(Kind::Group, &c.name)?,
                };
                *this = Some(gid);
                let uid = self.need(Kind::User, u)?;
                client
                    .group()
                    .addadmin(gid, uid)
                    .await
                    .map_err(api("one.group.addadmin"))?;
            }
            Op::GroupDelAdmin(uid) => {
                client
                    .group()
                    .deladmin(me()?, *uid)
                    .await
                    .map_err(api("one.group.deladmin"))?;
            }
            Op::AclAdd(spec) => {
                let [u, r, rt, z] = self.acl(spec)?;
                let hex = |w: u64| format!("{w:x}");
                *this = Some(
                    client
                        .acl()
                        .add_hex(&hex(u), &hex(r), &hex(rt), Some(&hex(z)))
                        .await
                        .map_err(api("one.acl.addrule"))?,
                );
            }
            Op::AclDel(id) => {
                client
                    .acl()
                    .delete(*id)
                    .await
                    .map_err(api("one.acl.delrule"))?;
            }
            Op::Delete => {
                let id = me()?;
                let r = match c.kind {
                    Kind::Group => client.group().delete(id).await,
                    Kind::User => client.user().delete(id).await,
                    Kind::Cluster => client.cluster().delete(id).await,
                    Kind::Host => client.host().delete(id).await,
                    Kind::Datastore => client.datastore().delete(id).await,
                    Kind::SecurityGroup => client.secgroup().delete(id).await,
                    Kind::Network => client.vnet().delete(id).await,
                    Kind::Image => client.image().delete(id).await,
                    Kind::Template => client.template().delete(id, false).await,
                    other => return Err(format!("cannot delete a {}", other.noun())),
                };
                r.map_err(api("delete"))?;
            }
            Op::Terminate => {
                client
                    .vm()
                    .action(VmAction::TerminateHard, me()?)
                    .await
                    .map_err(api("one.vm.action terminate-hard"))?;
            }
            Op::WaitHost => {
                let id = me()?;
                progress.event(Event::Wait {
                    change: c,
                    what: format!("host {} to be MONITORED", c.name),
                });
                self.wait(&format!("host {} to be MONITORED", c.name), || async move {
                    let h = client.host().info(id).await.map_err(api("one.host.info"))?;
                    match h.state {
                        2 => Ok(true),
                        3 | 5 => Err(format!(
                            "host {} is in ERROR: {}",
                            h.name,
                            h.template.get("ERROR").unwrap_or("(no message)")
                        )),
                        _ => Ok(false),
                    }
                })
                .await?;
            }
            Op::WaitImage => {
                let id = me()?;
                progress.event(Event::Wait {
                    change: c,
                    what: format!("image {} to be READY", c.name),
                });
                self.wait(&format!("image {} to be READY", c.name), || async move {
                    let i = client
                        .image()
                        .info(id)
                        .await
                        .map_err(api("one.image.info"))?;
                    match i.state {
                        1 | 2 | 8 => Ok(true),
                        5 => Err(format!(
                            "image {} is in ERROR: {}",
                            i.name,
                            i.template.get("ERROR").unwrap_or("(no message)")
                        )),
                        _ => Ok(false),
                    }
                })
                .await?;
            }
            Op::WaitVmRunning => {
                let id = me()?;
                progress.event(Event::Wait {
                    change: c,
                    what: format!("VM {} (id {id}) to be RUNNING", c.name),
                });
                self.wait(
                    &format!("VM {} (id {id}) to be RUNNING", c.name),
                    || async move {
                        let vm = client.vm().info(id).await.map_err(api("one.vm.info"))?;
                        if vm.state == 3 && vm.lcm_state == 3 {
                            return Ok(true);
                        }
                        let lcm = vm.lcm_state_name();
                        if vm.state == 6 || vm.state == 7 || lcm.contains("FAILURE") {
                            return Err(format!(
                                "VM {} (id {id}) is {}{}",
                                vm.name,
                                if vm.state == 3 { lcm } else { vm.state_name() },
                                vm.user_template
                                    .get("ERROR")
                                    .or_else(|| vm.template.get("ERROR"))
                                    .map(|e| format!(": {e}"))
                                    .unwrap_or_default()
                            ));
                        }
                        Ok(false)
                    },
                )
                .await?;
            }
            Op::WaitVmGone => {
                let id = me()?;
                progress.event(Event::Wait {
                    change: c,
                    what: format!("VM {} (id {id}) to be gone", c.name),
                });
                self.wait(
                    &format!("VM {} (id {id}) to be DONE", c.name),
                    || async move {
                        match client.vm().info(id).await {
                            Ok(vm) => Ok(vm.state == 6),
                            Err(e) if e.is_not_found() => Ok(true),
                            Err(e) => Err(format!("one.vm.info: {e}")),
                        }
                    },
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn wait<F, Fut>(&self, what: &str, mut check: F) -> OpResult<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = OpResult<bool>>,
    {
        let start = Instant::now();
        loop {
            if check().await? {
                return Ok(());
            }
            if start.elapsed() >= self.opts.timeout {
                return Err(format!(
                    "timed out after {}s waiting for {what}",
                    self.opts.timeout.as_secs()
                ));
            }
            tokio::time::sleep(self.opts.poll).await;
        }
    }

    fn with_secgroups(&self, t: &Template, sgs: &Option<Vec<ObjKey>>) -> OpResult<Template> {
        let mut t = t.clone();
        if let Some(sgs) = sgs {
            let mut ids = sgs
                .iter()
                .map(|k| self.need_key(k).map(|i| i.to_string()))
                .collect::<OpResult<Vec<_>>>()?;
            // oned adds the default group (0) to every network; say so to keep plans stable.
            if !ids.iter().any(|i| i == "0") {
                ids.insert(0, "0".into());
            }
            t.set("SECURITY_GROUPS", ids.join(","));
        }
        Ok(t)
    }

    fn quota_text(&self, limits: &[QuotaLimit]) -> OpResult<String> {
        let mut t = Template::default();
        let mut vm = Vector::new();
        let mut per_object: Vec<(&'static str, i64, Vector)> = Vec::new();
        for l in limits {
            match &l.object {
                None => vm.set(&l.attr, &l.value),
                Some(k) => {
                    let id = self.need_key(k)?;
                    match per_object
                        .iter_mut()
                        .find(|(s, i, _)| *s == l.section && *i == id)
                    {
                        Some((_, _, v)) => v.set(&l.attr, &l.value),
                        None => {
                            let mut v = Vector::new();
                            v.set("ID", id.to_string());
                            v.set(&l.attr, &l.value);
                            per_object.push((l.section, id, v));
                        }
                    }
                }
            }
        }
        if !vm.attrs.is_empty() {
            t.set_vector("VM", vm);
        }
        for (section, _, v) in per_object {
            t.attrs.push(Attribute {
                name: section.into(),
                value: oca::AttrValue::Vector(v),
            });
        }
        Ok(t.to_text())
    }

    fn acl(&self, spec: &AclSpec) -> OpResult<[u64; 4]> {
        acl_words(spec, &|k| self.id_of(k)).ok_or_else(|| {
            format!(
                "ACL rule {:?} names an object that does not exist",
                spec.text
            )
        })
    }
}

fn member(kind: Kind) -> OpResult<ClusterMember> {
    match kind {
        Kind::Host => Ok(ClusterMember::Host),
        Kind::Datastore => Ok(ClusterMember::Datastore),
        Kind::Network => Ok(ClusterMember::Vnet),
        other => Err(format!("a {} is not in clusters", other.noun())),
    }
}

fn vector_text(name: &str, v: &Vector) -> String {
    let mut t = Template::default();
    t.attrs.push(Attribute {
        name: name.into(),
        value: oca::AttrValue::Vector(v.clone()),
    });
    t.to_text()
}
