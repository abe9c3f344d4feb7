//! The object pools: all objects in memory, written through to the database.
//!
//! Reads take a short read lock on [`State`]. Every change goes through a [`Txn`]: it holds
//! the single write lock (so concurrent changes are serialized and none is lost), collects the
//! changed objects with read-your-writes, writes them to SQL in one transaction on
//! [`Txn::commit`], and only then applies them in memory. A failed commit changes nothing.

use crate::db::{Db, DbError, Row_, WriteSet};
use one_proto::acl::AclRule;
use one_proto::objects::{
    cluster::Cluster, datastore::Datastore, group::Group, hook::Hook, host::Host, image::Image,
    secgroup::SecurityGroup, user::User, vm::Vm, vmtemplate::VmTemplate, vnet::Vnet,
};
use serde::{Serialize, de::DeserializeOwned};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use tokio::sync::{Mutex, MutexGuard};

/// Object kinds, named as stored in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    User,
    Group,
    Cluster,
    Host,
    Datastore,
    Image,
    Vnet,
    VmTemplate,
    Vm,
    Acl,
    Hook,
    SecGroup,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::User,
        Kind::Group,
        Kind::Cluster,
        Kind::Host,
        Kind::Datastore,
        Kind::Image,
        Kind::Vnet,
        Kind::VmTemplate,
        Kind::Vm,
        Kind::Acl,
        Kind::Hook,
        Kind::SecGroup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
            Kind::Cluster => "cluster",
            Kind::Host => "host",
            Kind::Datastore => "datastore",
            Kind::Image => "image",
            Kind::Vnet => "vnet",
            Kind::VmTemplate => "vmtemplate",
            Kind::Vm => "vm",
            Kind::Acl => "acl",
            Kind::Hook => "hook",
            Kind::SecGroup => "secgroup",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A pool of one kind, ordered by id.
pub struct Pool<T> {
    pub map: BTreeMap<i64, Arc<T>>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            map: BTreeMap::new(),
        }
    }
}

impl<T> Pool<T> {
    pub fn get(&self, id: i64) -> Option<&Arc<T>> {
        self.map.get(&id)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<T>> {
        self.map.values()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Everything oned knows, in memory.
#[derive(Default)]
pub struct State {
    pub users: Pool<User>,
    pub groups: Pool<Group>,
    pub clusters: Pool<Cluster>,
    pub hosts: Pool<Host>,
    pub datastores: Pool<Datastore>,
    pub images: Pool<Image>,
    pub vnets: Pool<Vnet>,
    pub templates: Pool<VmTemplate>,
    pub vms: Pool<Vm>,
    pub acls: Pool<AclRule>,
    pub hooks: Pool<Hook>,
    pub secgroups: Pool<SecurityGroup>,
    /// Next id per kind.
    pub next_id: HashMap<Kind, i64>,
}

/// A stored object kind: how to find its pool and the columns the database indexes.
pub trait Stored: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    const KIND: Kind;
    fn pool(state: &State) -> &Pool<Self>;
    fn pool_mut(state: &mut State) -> &mut Pool<Self>;
    fn oid(&self) -> i64;
    fn obj_name(&self) -> &str;
    /// (uid, gid) of the owner; objects without an owner report oneadmin's (0, 0).
    fn owner(&self) -> (i64, i64);
    fn into_any(self) -> AnyObject;
    fn from_any(any: &AnyObject) -> Option<&Self>;
}

/// A changed object of any kind, held by a transaction until commit.
#[derive(Clone)]
pub enum AnyObject {
    User(User),
    Group(Group),
    Cluster(Cluster),
    Host(Host),
    Datastore(Datastore),
    Image(Image),
    Vnet(Vnet),
    VmTemplate(VmTemplate),
    Vm(Vm),
    Acl(AclRule),
    Hook(Hook),
    SecGroup(SecurityGroup),
}

macro_rules! stored {
    ($ty:ty, $kind:ident, $field:ident, $variant:ident, |$s:ident| id: $id:expr, name: $name:expr, owner: $owner:expr) => {
        impl Stored for $ty {
            const KIND: Kind = Kind::$kind;
            fn pool(state: &State) -> &Pool<Self> {
                &state.$field
            }
            fn pool_mut(state: &mut State) -> &mut Pool<Self> {
                &mut state.$field
            }
            fn oid(&self) -> i64 {
                let $s = self;
                $id
            }
            #[allow(unused_variables)]
            fn obj_name(&self) -> &str {
                let $s = self;
                $name
            }
            #[allow(unused_variables)]
            fn owner(&self) -> (i64, i64) {
                let $s = self;
                $owner
            }
            fn into_any(self) -> AnyObject {
                AnyObject::$variant(self)
            }
            fn from_any(any: &AnyObject) -> Option<&Self> {
                match any {
                    AnyObject::$variant(x) => Some(x),
                    _ => None,
                }
            }
        }
    };
}

stored!(User, User, users, User, |s| id: s.id, name: &s.name, owner: (s.id, s.gid));
stored!(Group, Group, groups, Group, |s| id: s.id, name: &s.name, owner: (0, 0));
stored!(Cluster, Cluster, clusters, Cluster, |s| id: s.id, name: &s.name, owner: (0, 0));
stored!(Host, Host, hosts, Host, |s| id: s.id, name: &s.name, owner: (0, 0));
stored!(Datastore, Datastore, datastores, Datastore,
    |s| id: s.header.id, name: &s.header.name, owner: (s.header.uid, s.header.gid));
stored!(Image, Image, images, Image,
    |s| id: s.header.id, name: &s.header.name, owner: (s.header.uid, s.header.gid));
stored!(Vnet, Vnet, vnets, Vnet,
    |s| id: s.header.id, name: &s.header.name, owner: (s.header.uid, s.header.gid));
stored!(VmTemplate, VmTemplate, templates, VmTemplate,
    |s| id: s.header.id, name: &s.header.name, owner: (s.header.uid, s.header.gid));
stored!(Vm, Vm, vms, Vm,
    |s| id: s.header.id, name: &s.header.name, owner: (s.header.uid, s.header.gid));
stored!(AclRule, Acl, acls, Acl, |s| id: s.id, name: "", owner: (0, 0));
stored!(Hook, Hook, hooks, Hook, |s| id: s.id, name: &s.name, owner: (0, 0));
stored!(SecurityGroup, SecGroup, secgroups, SecGroup,
    |s| id: s.header.id, name: &s.header.name, owner: (s.header.uid, s.header.gid));

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("stored {kind} {oid} cannot be read: {source}")]
    Corrupt {
        kind: String,
        oid: i64,
        source: serde_json::Error,
    },
    #[error("cannot encode {kind} {oid}: {source}")]
    Encode {
        kind: &'static str,
        oid: i64,
        source: serde_json::Error,
    },
}

pub struct Store {
    state: RwLock<State>,
    write: Mutex<()>,
    pub db: Db,
    /// State events of committed changes go out here (see `events`).
    pub events: crate::events::EventBus,
    /// Monitoring samples of hosts and VMs (in memory, flushed to SQL in batches).
    pub history: crate::monitor::history::History,
}

impl Store {
    /// Loads every object from the database.
    pub async fn load(db: Db) -> Result<Store, StoreError> {
        let mut state = State::default();
        for row in db.load_objects().await? {
            let corrupt = |source| StoreError::Corrupt {
                kind: row.kind.clone(),
                oid: row.oid,
                source,
            };
            fn ins<T: Stored>(state: &mut State, body: &str) -> Result<(), serde_json::Error> {
                let obj: T = serde_json::from_str(body)?;
                T::pool_mut(state).map.insert(obj.oid(), Arc::new(obj));
                Ok(())
            }
            let res = match Kind::parse(&row.kind) {
                Some(Kind::User) => ins::<User>(&mut state, &row.body),
                Some(Kind::Group) => ins::<Group>(&mut state, &row.body),
                Some(Kind::Cluster) => ins::<Cluster>(&mut state, &row.body),
                Some(Kind::Host) => ins::<Host>(&mut state, &row.body),
                Some(Kind::Datastore) => ins::<Datastore>(&mut state, &row.body),
                Some(Kind::Image) => ins::<Image>(&mut state, &row.body),
                Some(Kind::Vnet) => ins::<Vnet>(&mut state, &row.body),
                Some(Kind::VmTemplate) => ins::<VmTemplate>(&mut state, &row.body),
                Some(Kind::Vm) => ins::<Vm>(&mut state, &row.body),
                Some(Kind::Acl) => ins::<AclRule>(&mut state, &row.body),
                Some(Kind::Hook) => ins::<Hook>(&mut state, &row.body),
                Some(Kind::SecGroup) => ins::<SecurityGroup>(&mut state, &row.body),
                None => {
                    tracing::warn!(kind = %row.kind, oid = row.oid, "ignoring row of unknown kind");
                    Ok(())
                }
            };
            res.map_err(corrupt)?;
        }
        for (kind, next) in db.load_sequences().await? {
            if let Some(k) = Kind::parse(&kind) {
                state.next_id.insert(k, next);
            }
        }
        Ok(Store {
            state: RwLock::new(state),
            write: Mutex::new(()),
            db,
            events: Default::default(),
            history: Default::default(),
        })
    }

    /// A read view of every pool. Hold it briefly: writers wait for it when applying.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// One object, cloned out of the pool.
    pub fn get<T: Stored>(&self, id: i64) -> Option<Arc<T>> {
        T::pool(&self.read()).get(id).cloned()
    }

    /// Starts a transaction; waits for the one before it to finish.
    pub async fn begin(&self) -> Txn<'_> {
        let guard = self.write.lock().await;
        Txn {
            store: self,
            _guard: guard,
            changes: HashMap::new(),
            order: Vec::new(),
            next_id: HashMap::new(),
            system: Vec::new(),
        }
    }

    /// Changes objects in memory only, never in the database: for values that change often
    /// and are cheap to lose (monitoring samples). They reach SQL with the object's next real
    /// change. Holds the write lock as a Txn does, so none interleaves. `f` must not add or
    /// remove objects; it should change them in place with `Arc::make_mut` (which copies only
    /// an object a reader holds right then).
    pub async fn update_volatile<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let _guard = self.write.lock().await;
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }
}

/// A set of changes applied all together or not at all.
pub struct Txn<'a> {
    store: &'a Store,
    _guard: MutexGuard<'a, ()>,
    /// Changed objects: Some = put, None = deleted.
    changes: HashMap<(Kind, i64), Option<AnyObject>>,
    order: Vec<(Kind, i64)>,
    next_id: HashMap<Kind, i64>,
    system: Vec<(String, String)>,
}

impl Txn<'_> {
    /// The object as this transaction sees it (its own changes first).
    pub fn get<T: Stored>(&self, id: i64) -> Option<T> {
        match self.changes.get(&(T::KIND, id)) {
            Some(Some(any)) => T::from_any(any).cloned(),
            Some(None) => None,
            None => T::pool(&self.store.read()).get(id).map(|a| (**a).clone()),
        }
    }

    /// Every object of a kind as this transaction sees it, ordered by id.
    pub fn all<T: Stored>(&self) -> Vec<T> {
        let state = self.store.read();
        let mut out: BTreeMap<i64, T> = T::pool(&state)
            .iter()
            .map(|o| (o.oid(), (**o).clone()))
            .collect();
        drop(state);
        for ((kind, id), change) in &self.changes {
            if *kind != T::KIND {
                continue;
            }
            match change.as_ref().and_then(T::from_any) {
                Some(obj) => {
                    out.insert(*id, obj.clone());
                }
                None => {
                    out.remove(id);
                }
            }
        }
        out.into_values().collect()
    }

    /// The id of the first object of a kind, as this transaction sees it, that matches
    /// `pred`; scans without cloning (used for name uniqueness on every allocation).
    pub fn find<T: Stored>(&self, pred: impl Fn(&T) -> bool) -> Option<i64> {
        let pending = self.changes.iter().filter(|((k, _), _)| *k == T::KIND);
        let mut best: Option<i64> = None;
        for ((_, id), change) in pending {
            if change.as_ref().and_then(T::from_any).is_some_and(&pred) {
                best = Some(best.map_or(*id, |b| b.min(*id)));
            }
        }
        let state = self.store.read();
        let committed = T::pool(&state)
            .iter()
            .filter(|o| !self.changes.contains_key(&(T::KIND, o.oid())))
            .find(|o| pred(o))
            .map(|o| o.oid());
        match (best, committed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A read view of the committed state (without this transaction's changes).
    pub fn committed(&self) -> RwLockReadGuard<'_, State> {
        self.store.read()
    }

    pub fn put<T: Stored>(&mut self, obj: T) {
        let key = (T::KIND, obj.oid());
        if !self.changes.contains_key(&key) {
            self.order.push(key);
        }
        self.changes.insert(key, Some(obj.into_any()));
    }

    pub fn delete<T: Stored>(&mut self, id: i64) {
        let key = (T::KIND, id);
        if !self.changes.contains_key(&key) {
            self.order.push(key);
        }
        self.changes.insert(key, None);
    }

    /// Reserves the next id of a kind (ids are never reused, even after a failed commit:
    /// a failed commit just leaves a gap).
    pub fn next_id(&mut self, kind: Kind) -> i64 {
        let committed = self.store.read().next_id.get(&kind).copied().unwrap_or(0);
        let next = self.next_id.entry(kind).or_insert(committed);
        let id = *next;
        *next += 1;
        id
    }

    /// Makes the next id of a kind at least `min` (OpenNebula starts user ids at 0, others too,
    /// but ACL rules and bootstrap objects need fixed ids).
    pub fn bump_next_id(&mut self, kind: Kind, min: i64) {
        let committed = self.store.read().next_id.get(&kind).copied().unwrap_or(0);
        let next = self.next_id.entry(kind).or_insert(committed);
        *next = (*next).max(min);
    }

    pub fn set_system(&mut self, name: &str, body: String) {
        self.system.push((name.to_string(), body));
    }

    /// Writes every change to the database, then applies it in memory.
    pub async fn commit(self) -> Result<(), StoreError> {
        let mut set = WriteSet::default();
        for key in &self.order {
            match &self.changes[key] {
                Some(any) => set.puts.push(row_of(any)?),
                None => set.deletes.push((key.0.as_str(), key.1)),
            }
        }
        for (kind, next) in &self.next_id {
            set.sequences.push((kind.as_str(), *next));
        }
        set.system = self.system.clone();
        self.store.db.write(&set).await?;

        let mut state = self.store.state.write().unwrap_or_else(|e| e.into_inner());
        for (kind, next) in &self.next_id {
            state.next_id.insert(*kind, *next);
        }
        // State hooks: which committed objects entered a new state (nothing when none watch).
        let watched = self.store.events.state_mask();
        let mut fired = Vec::new();
        for key in &self.order {
            let change = &self.changes[key];
            if watched != 0 && crate::events::state_changed(&state, watched, *key, change) {
                fired.push(*key);
            }
            fn apply<T: Stored>(state: &mut State, id: i64, change: &Option<AnyObject>) {
                match change.as_ref().and_then(T::from_any) {
                    Some(obj) => {
                        T::pool_mut(state).map.insert(id, Arc::new(obj.clone()));
                    }
                    None => {
                        T::pool_mut(state).map.remove(&id);
                    }
                }
            }
            let (kind, id) = *key;
            match kind {
                Kind::User => apply::<User>(&mut state, id, change),
                Kind::Group => apply::<Group>(&mut state, id, change),
                Kind::Cluster => apply::<Cluster>(&mut state, id, change),
                Kind::Host => apply::<Host>(&mut state, id, change),
                Kind::Datastore => apply::<Datastore>(&mut state, id, change),
                Kind::Image => apply::<Image>(&mut state, id, change),
                Kind::Vnet => apply::<Vnet>(&mut state, id, change),
                Kind::VmTemplate => apply::<VmTemplate>(&mut state, id, change),
                Kind::Vm => apply::<Vm>(&mut state, id, change),
                Kind::Acl => apply::<AclRule>(&mut state, id, change),
                Kind::Hook => apply::<Hook>(&mut state, id, change),
                Kind::SecGroup => apply::<SecurityGroup>(&mut state, id, change),
            }
        }
        if !fired.is_empty() {
            let events = crate::events::state_events(&state, &fired);
            drop(state);
            for ev in events {
                self.store.events.send(ev);
            }
        }
        Ok(())
    }
}

fn row_of(any: &AnyObject) -> Result<Row_, StoreError> {
    fn row<T: Stored>(obj: &T) -> Result<Row_, StoreError> {
        let (uid, gid) = obj.owner();
        let body = serde_json::to_string(obj).map_err(|source| StoreError::Encode {
            kind: T::KIND.as_str(),
            oid: obj.oid(),
            source,
        })?;
        Ok(Row_ {
            kind: T::KIND.as_str(),
            oid: obj.oid(),
            name: obj.obj_name().to_string(),
            uid,
            gid,
            body,
        })
    }
    match any {
        AnyObject::User(o) => row(o),
        AnyObject::Group(o) => row(o),
        AnyObject::Cluster(o) => row(o),
        AnyObject::Host(o) => row(o),
        AnyObject::Datastore(o) => row(o),
        AnyObject::Image(o) => row(o),
        AnyObject::Vnet(o) => row(o),
        AnyObject::VmTemplate(o) => row(o),
        AnyObject::Vm(o) => row(o),
        AnyObject::Acl(o) => row(o),
        AnyObject::Hook(o) => row(o),
        AnyObject::SecGroup(o) => row(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use one_proto::template::Template;

    fn cluster(id: i64, name: &str) -> Cluster {
        Cluster {
            id,
            name: name.into(),
            hosts: vec![],
            datastores: vec![],
            vnets: vec![],
            template: Template::new(),
        }
    }

    #[tokio::test]
    async fn txn_reads_its_writes_commits_atomically_and_never_reuses_ids() {
        let dir = std::env::temp_dir().join(format!("oned-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/one.db?mode=rwc", dir.display());
        let store = Store::load(Db::open(&url, false).await.unwrap())
            .await
            .unwrap();

        let mut tx = store.begin().await;
        let a = tx.next_id(Kind::Cluster);
        tx.put(cluster(a, "a"));
        assert_eq!(
            tx.find::<Cluster>(|c| c.name == "a"),
            Some(a),
            "own writes visible"
        );
        assert!(
            store.get::<Cluster>(a).is_none(),
            "not applied before commit"
        );
        tx.commit().await.unwrap();
        assert_eq!(store.get::<Cluster>(a).unwrap().name, "a");

        // A transaction dropped without commit changes nothing.
        let mut tx = store.begin().await;
        let b = tx.next_id(Kind::Cluster);
        tx.put(cluster(b, "b"));
        tx.delete::<Cluster>(a);
        assert_eq!(
            tx.find::<Cluster>(|c| c.name == "a"),
            None,
            "own delete visible"
        );
        drop(tx);
        assert!(store.get::<Cluster>(a).is_some());
        let mut tx = store.begin().await;
        let c = tx.next_id(Kind::Cluster);
        assert!(c > a);
        tx.put(cluster(c, "c"));
        tx.commit().await.unwrap();
        store.db.close().await;

        // Reloading from the database gives back exactly what was committed.
        let store = Store::load(Db::open(&url, false).await.unwrap())
            .await
            .unwrap();
        let names: Vec<String> = store
            .read()
            .clusters
            .iter()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(names, ["a", "c"]);
        let mut tx = store.begin().await;
        assert!(
            tx.next_id(Kind::Cluster) > c,
            "ids are never reused after restart"
        );
        drop(tx);
        store.db.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
