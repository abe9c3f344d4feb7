//! The cloud as it is: every pool read once (in parallel), indexed by the keys cloud files
//! use. A plan is computed against one such snapshot.

use crate::model::{Kind, MARKER, ObjKey, VM_MARKER};
use oca::objects::secgroup::SecurityGroup;
use oca::{
    AclRule, Client, Cluster, Datastore, Group, Host, Image, OcaError, PoolFilter, PoolRange,
    Template, User, VirtualNetwork, Vm, VmQuery, VmStateFilter, VmTemplate,
};
use std::collections::HashMap;

/// Every object the applying user can see.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub clusters: Vec<Cluster>,
    pub hosts: Vec<Host>,
    pub datastores: Vec<Datastore>,
    pub secgroups: Vec<SecurityGroup>,
    pub networks: Vec<VirtualNetwork>,
    pub images: Vec<Image>,
    pub templates: Vec<VmTemplate>,
    /// VMs that are not DONE (full bodies: the marker is in USER_TEMPLATE).
    pub vms: Vec<Vm>,
    pub acls: Vec<AclRule>,
    index: HashMap<ObjKey, usize>,
}

/// OpenNebula's own objects: never deleted, never exported.
pub fn is_builtin(kind: Kind, id: i64) -> bool {
    match kind {
        Kind::User | Kind::Group => id <= 1,
        Kind::Cluster | Kind::SecurityGroup => id == 0,
        Kind::Datastore => id <= 2,
        _ => false,
    }
}

impl Live {
    /// Reads every pool.
    pub async fn read(client: &Client) -> Result<Live, OcaError> {
        let all = PoolFilter::All;
        let range = PoolRange::default();
        let vmq = VmQuery {
            filter: all,
            range,
            state: VmStateFilter::NotDone,
            search: String::new(),
        };
        let (u, g, c, h, d) = (
            client.user(),
            client.group(),
            client.cluster(),
            client.host(),
            client.datastore(),
        );
        let (s, n, i, t, v, a) = (
            client.secgroup(),
            client.vnet(),
            client.image(),
            client.template(),
            client.vm(),
            client.acl(),
        );
        let (
            users,
            groups,
            clusters,
            hosts,
            datastores,
            secgroups,
            networks,
            images,
            templates,
            vms,
            acls,
        ) = tokio::try_join!(
            u.list(),
            g.list(),
            c.list(),
            h.list(),
            d.list(),
            s.list(all, range),
            n.list(all, range),
            i.list(all, range),
            t.list(all, range),
            v.list_extended(&vmq),
            a.list(),
        )?;
        let mut live = Live {
            users,
            groups,
            clusters,
            hosts,
            datastores,
            secgroups,
            networks,
            images,
            templates,
            vms,
            acls,
            index: HashMap::new(),
        };
        live.reindex();
        Ok(live)
    }

    /// Rebuilds the name index (after changing the vectors by hand, in tests).
    pub fn reindex(&mut self) {
        let mut index = HashMap::new();
        // Names are unique per kind (per owner for owned kinds), so a key finds one object.
        macro_rules! add {
            ($list:expr, |$o:ident| $key:expr) => {
                for (i, $o) in $list.iter().enumerate() {
                    index.entry($key).or_insert(i);
                }
            };
        }
        add!(self.users, |o| ObjKey::new(Kind::User, &o.name));
        add!(self.groups, |o| ObjKey::new(Kind::Group, &o.name));
        add!(self.clusters, |o| ObjKey::new(Kind::Cluster, &o.name));
        add!(self.hosts, |o| ObjKey::new(Kind::Host, &o.name));
        add!(self.datastores, |o| ObjKey::new(Kind::Datastore, &o.name));
        add!(self.secgroups, |o| ObjKey::owned(
            Kind::SecurityGroup,
            &o.owner.uname,
            &o.name
        ));
        add!(self.networks, |o| ObjKey::owned(
            Kind::Network,
            &o.owner.uname,
            &o.name
        ));
        add!(self.images, |o| ObjKey::owned(
            Kind::Image,
            &o.owner.uname,
            &o.name
        ));
        add!(self.templates, |o| ObjKey::owned(
            Kind::Template,
            &o.owner.uname,
            &o.name
        ));
        self.index = index;
    }

    fn pos(&self, key: &ObjKey) -> Option<usize> {
        self.index.get(key).copied()
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.pos(&ObjKey::new(Kind::User, name))
            .map(|i| &self.users[i])
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.pos(&ObjKey::new(Kind::Group, name))
            .map(|i| &self.groups[i])
    }

    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.pos(&ObjKey::new(Kind::Cluster, name))
            .map(|i| &self.clusters[i])
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.pos(&ObjKey::new(Kind::Host, name))
            .map(|i| &self.hosts[i])
    }

    pub fn datastore(&self, name: &str) -> Option<&Datastore> {
        self.pos(&ObjKey::new(Kind::Datastore, name))
            .map(|i| &self.datastores[i])
    }

    pub fn secgroup(&self, key: &ObjKey) -> Option<&SecurityGroup> {
        self.pos(key).map(|i| &self.secgroups[i])
    }

    pub fn network(&self, key: &ObjKey) -> Option<&VirtualNetwork> {
        self.pos(key).map(|i| &self.networks[i])
    }

    pub fn image(&self, key: &ObjKey) -> Option<&Image> {
        self.pos(key).map(|i| &self.images[i])
    }

    pub fn template(&self, key: &ObjKey) -> Option<&VmTemplate> {
        self.pos(key).map(|i| &self.templates[i])
    }

    /// The id of an object, by key.
    pub fn id_of(&self, key: &ObjKey) -> Option<i64> {
        match key.kind {
            Kind::User => self.user(&key.name).map(|o| o.id),
            Kind::Group => self.group(&key.name).map(|o| o.id),
            Kind::Cluster => self.cluster(&key.name).map(|o| o.id),
            Kind::Host => self.host(&key.name).map(|o| o.id),
            Kind::Datastore => self.datastore(&key.name).map(|o| o.id),
            Kind::SecurityGroup => self.secgroup(key).map(|o| o.id),
            Kind::Network => self.network(key).map(|o| o.id),
            Kind::Image => self.image(key).map(|o| o.id),
            Kind::Template => self.template(key).map(|o| o.id),
            _ => None,
        }
    }

    /// The key of an object, by kind and id (to write ids back as names).
    pub fn key_of(&self, kind: Kind, id: i64) -> Option<ObjKey> {
        match kind {
            Kind::User => self
                .users
                .iter()
                .find(|o| o.id == id)
                .map(|o| ObjKey::new(kind, &o.name)),
            Kind::Group => self
                .groups
                .iter()
                .find(|o| o.id == id)
                .map(|o| ObjKey::new(kind, &o.name)),
            Kind::Cluster => self
                .clusters
                .iter()
                .find(|o| o.id == id)
                .map(|o| ObjKey::new(kind, &o.name)),
            Kind::Host => self
                .hosts
                .iter()
                .find(|o| o.id == id)
                .map(|o| ObjKey::new(kind, &o.name)),
            Kind::Datastore => self
                .datastores
                .iter()
                .find(|o| o.id == id)
                .map(|o| ObjKey::new(kind, &o.name)),
            Kind::SecurityGroup => self
                .secgroups
                .iter()
                .find(|o| o.id == id)
                .map(|o| ObjKey::owned(kind, &o.owner.uname, &o.name)),
            Kind::Network => self
                .networks
                .iter()
                .find(|o| o.id == id)
                .map(|o| ObjKey::owned(kind, &o.owner.uname, &o.name)),
            Kind::Image => self
                .images
                .iter()
                .find(|o| o.id == id)
                .map(|o| ObjKey::owned(kind, &o.owner.uname, &o.name)),
            Kind::Template => self
                .templates
                .iter()
                .find(|o| o.id == id)
                .map(|o| ObjKey::owned(kind, &o.owner.uname, &o.name)),
            _ => None,
        }
    }
}

/// The cloud named by an object's marker, if any.
pub fn marker(t: &Template) -> Option<&str> {
    t.get(MARKER).map(str::trim).filter(|s| !s.is_empty())
}

/// A VM's set membership: (cloud, set, digest).
pub fn vm_marker(vm: &Vm) -> Option<(&str, &str, &str)> {
    let v = vm.user_template.vector(VM_MARKER)?;
    Some((
        v.get("CLOUD")?,
        v.get("SET").unwrap_or(""),
        v.get("DIGEST").unwrap_or(""),
    ))
}
