//! What a cloud file declares, once read and checked: the API types of the crate.
//!
//! Every object has a [`ObjKey`] (kind, owner for owned kinds, name), the place it was
//! declared, what it is ([`Spec`]) and what it refers to ([`Dep`]). Templates are OpenNebula
//! templates ([`Template`]): free attributes, exactly as they would be given to `oned`.

use crate::source::Pos;
use oca::Template;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// The attribute that marks an object as managed by a cloud file: its value is the cloud's
/// name (VMs carry [`VM_MARKER`] instead, see there).
pub const MARKER: &str = "ONECLOUD";
/// The vector that marks a VM as a member of a VM set: `ONECLOUD_VM=[CLOUD, SET, DIGEST]`
/// (DIGEST: of the template and extra attributes it was made from, to tell out-of-date VMs).
/// A VM also inherits [`MARKER`] from its template, which says nothing about the VM itself.
pub const VM_MARKER: &str = "ONECLOUD_VM";

/// The kinds of objects, in the order they are created when nothing else decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Group,
    User,
    GroupAdmins,
    Quota,
    Cluster,
    Host,
    Datastore,
    SecurityGroup,
    Network,
    Image,
    Template,
    Vm,
    Acl,
}

impl Kind {
    pub const OBJECTS: [Kind; 10] = [
        Kind::Group,
        Kind::User,
        Kind::Cluster,
        Kind::Host,
        Kind::Datastore,
        Kind::SecurityGroup,
        Kind::Network,
        Kind::Image,
        Kind::Template,
        Kind::Vm,
    ];

    /// Objects whose names are unique per owner (written `owner/name`).
    pub fn owned(self) -> bool {
        matches!(
            self,
            Kind::SecurityGroup | Kind::Network | Kind::Image | Kind::Template | Kind::Vm
        )
    }

    /// How messages name the kind.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Group => "group",
            Kind::User => "user",
            Kind::Cluster => "cluster",
            Kind::Host => "host",
            Kind::Datastore => "datastore",
            Kind::SecurityGroup => "security group",
            Kind::Network => "network",
            Kind::Image => "image",
            Kind::Template => "template",
            Kind::Vm => "VM set",
            Kind::GroupAdmins => "group admins",
            Kind::Quota => "quota",
            Kind::Acl => "ACL rule",
        }
    }

    /// The kind's word in `depends_on` entries and JSON (`security_group`).
    pub fn word(self) -> &'static str {
        match self {
            Kind::Group => "group",
            Kind::User => "user",
            Kind::Cluster => "cluster",
            Kind::Host => "host",
            Kind::Datastore => "datastore",
            Kind::SecurityGroup => "security_group",
            Kind::Network => "network",
            Kind::Image => "image",
            Kind::Template => "template",
            Kind::Vm => "vm",
            Kind::GroupAdmins => "group_admins",
            Kind::Quota => "quota",
            Kind::Acl => "acl",
        }
    }

    pub fn from_word(s: &str) -> Option<Kind> {
        Kind::OBJECTS.into_iter().find(|k| k.word() == s)
    }

    /// The section of the cloud file (`security_groups`).
    pub fn section(self) -> &'static str {
        match self {
            Kind::Group => "groups",
            Kind::User => "users",
            Kind::Cluster => "clusters",
            Kind::Host => "hosts",
            Kind::Datastore => "datastores",
            Kind::SecurityGroup => "security_groups",
            Kind::Network => "networks",
            Kind::Image => "images",
            Kind::Template => "templates",
            Kind::Vm => "vms",
            Kind::GroupAdmins => "groups",
            Kind::Quota => "quotas",
            Kind::Acl => "acls",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

/// An object's identity: kind, owner (owned kinds only) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjKey {
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub name: String,
}

impl ObjKey {
    pub fn new(kind: Kind, name: impl Into<String>) -> ObjKey {
        ObjKey {
            kind,
            owner: None,
            name: name.into(),
        }
    }

    pub fn owned(kind: Kind, owner: impl Into<String>, name: impl Into<String>) -> ObjKey {
        ObjKey {
            kind,
            owner: Some(owner.into()),
            name: name.into(),
        }
    }

    /// `owner/name` for owned kinds, else the name.
    pub fn full_name(&self) -> String {
        match &self.owner {
            Some(o) => format!("{o}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl fmt::Display for ObjKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.noun(), self.full_name())
    }
}

/// A reference from one object to another, where it was written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dep {
    pub key: ObjKey,
    pub pos: Pos,
}

/// The whole cloud file, checked.
#[derive(Clone, Debug, Serialize)]
pub struct CloudFile {
    /// The stable name written into the marker of every managed object.
    pub name: String,
    /// The user applying the file: owned objects written without an owner are theirs.
    pub applier: String,
    /// Every declared object, in apply order (dependencies first).
    pub objects: Vec<Desired>,
    /// Objects referred to but not managed (`external:` and OpenNebula's built-in ones).
    pub external: Vec<ObjKey>,
}

impl CloudFile {
    pub fn get(&self, key: &ObjKey) -> Option<&Desired> {
        self.objects.iter().find(|d| &d.key == key)
    }
}

/// One declared object.
#[derive(Clone, Debug, Serialize)]
pub struct Desired {
    pub key: ObjKey,
    pub pos: Pos,
    pub spec: Spec,
    pub deps: Vec<Dep>,
}

/// Owner's group and permissions of an owned object (the owner is in its key).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Ownership {
    pub group: Option<String>,
    /// Octal (`0o640`).
    pub permissions: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Spec {
    Group(GroupSpec),
    User(UserSpec),
    Cluster(ClusterSpec),
    Host(HostSpec),
    Datastore(DatastoreSpec),
    SecurityGroup(SecGroupSpec),
    Network(NetworkSpec),
    Image(ImageSpec),
    Template(TemplateSpec),
    Vm(VmSpec),
    GroupAdmins(GroupAdminsSpec),
    Quota(QuotaSpec),
    Acl(AclSpec),
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupSpec {
    #[serde(with = "oca::serde_template")]
    pub template: Template,
}

/// Where a secret comes from; it is read only when a user has to be created.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Secret {
    Env(String),
    File(PathBuf),
}

impl Secret {
    /// The secret's value (trailing newline stripped), or why it cannot be read.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(v),
                Ok(_) => Err(format!("the environment variable {name} is empty")),
                Err(_) => Err(format!("the environment variable {name} is not set")),
            },
            Secret::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|s| {
                    if s.is_empty() {
                        Err(format!("{} is empty", path.display()))
                    } else {
                        Ok(s)
                    }
                }),
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Env(n) => write!(f, "environment variable {n}"),
            Secret::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct UserSpec {
    /// Primary group (None: OpenNebula's default, `users`, when created; not compared).
    pub group: Option<String>,
    /// Secondary groups (None: not managed).
    pub groups: Option<Vec<String>>,
    pub password: Option<Secret>,
    pub auth_driver: Option<String>,
    pub enabled: Option<bool>,
    #[serde(with = "oca::serde_template")]
    pub template: Template,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClusterSpec {
    #[serde(with = "oca::serde_template")]
    pub template: Template,
}

#[derive(Clone, Debug, Serialize)]
pub struct HostSpec {
    /// The host group (blueprint) it comes from.
    pub host_group: String,
    /// None: the `default` cluster.
    pub cluster: Option<String>,
    pub im_mad: String,
    pub vm_mad: String,
    #[serde(with = "oca::serde_template")]
    pub template: Template,
}

#[derive(Clone, Debug, Serialize)]
pub struct DatastoreSpec {
    /// None: not managed (a new datastore goes to `default`).
    pub clusters: Option<Vec<String>>,
    #[serde(with = "oca::serde_template")]
    pub template: Template,
}

#[derive(Clone, Debug, Serialize)]
pub struct SecGroupSpec {
    pub ownership: Ownership,
    #[serde(with = "oca::serde_template")]
    pub template: Template,
}

#[derive(Clone, Debug, Serialize)]
pub struct NetworkSpec {
    pub ownership: Ownership,
    pub clusters: Option<Vec<String>>,
    /// SECURITY_GROUPS, by name (None: not managed).
    pub security_groups: Option<Vec<ObjKey>>,
    #[serde(with = "oca::serde_vectors")]
    pub address_ranges: Vec<oca::Vector>,
    #[serde(with = "oca::serde_template")]
    pub template: Template,
}

#[derive(Clone, Debug, Serialize)]
pub struct ImageSpec {
    pub ownership: Ownership,
    pub datastore: String,
    /// The template given to `one.image.allocate` (TYPE, SIZE, PATH, PERSISTENT, ... and
    /// free attributes).
    #[serde(with = "oca::serde_template")]
    pub template: Template,
}

#[derive(Clone, Debug, Serialize)]
pub struct TemplateSpec {
    pub ownership: Ownership,
    #[serde(with = "oca::serde_template")]
    pub template: Template,
}

#[derive(Clone, Debug, Serialize)]
pub struct VmSpec {
    pub ownership: Ownership,
    /// The VM template instantiated.
    pub template: ObjKey,
    pub count: u32,
    /// Attributes merged into the template at instantiation.
    #[serde(with = "oca::serde_template")]
    pub extra: Template,
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupAdminsSpec {
    pub group: String,
    pub admins: Vec<String>,
}

/// Whose quotas.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaOwner {
    User(String),
    Group(String),
}

/// One declared quota limit: `VM/VMS`, `DATASTORE[default]/SIZE`, ...
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QuotaLimit {
    /// VM, DATASTORE, NETWORK or IMAGE.
    pub section: &'static str,
    /// The datastore, network or image the limit is for (None for VM).
    pub object: Option<ObjKey>,
    pub attr: String,
    /// As OpenNebula writes it: a number, -1 (the default quota) or -2 (unlimited).
    pub value: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct QuotaSpec {
    pub owner: QuotaOwner,
    pub limits: Vec<QuotaLimit>,
}

/// A selector of an ACL rule's USER or RESOURCE part, by name.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AclSel {
    All,
    /// A literal id (`#5`, `@1`, `%0`), with its selector character.
    Id(char, u32),
    User(String),
    Group(String),
    Cluster(String),
    Object(ObjKey),
}

#[derive(Clone, Debug, Serialize)]
pub struct AclSpec {
    /// The rule as written.
    pub text: String,
    pub user: AclSel,
    /// The resource type bits (OpenNebula's ObjectType bits).
    pub resource_types: u64,
    pub resource: AclSel,
    pub rights: u64,
    /// The zone word (`#0` unless written).
    pub zone: u64,
}
