//! First start: the objects OpenNebula creates in a new installation.

use crate::auth::{hash_password, random_hex};
use crate::datadir::DataDir;
use crate::store::{Kind, Store, StoreError};
use one_proto::acl::{AclRule, default_rules};
use one_proto::objects::cluster::Cluster;
use one_proto::objects::datastore::Datastore;
use one_proto::objects::group::Group;
use one_proto::objects::quota::Quotas;
use one_proto::objects::secgroup::{self, SecurityGroup};
use one_proto::objects::user::User;
use one_proto::objects::{Header, Permissions};
use one_proto::state::{DatastoreState, DatastoreType, DiskType};
use one_proto::template::Template;

/// Marker row written with the bootstrap objects, so a crash halfway never leaves a
/// half-bootstrapped database (it is all one transaction) and a restart never repeats it.
const BOOTSTRAP_MARK: &str = "bootstrap";

fn user(id: i64, gid: i64, gname: &str, name: &str, password: &str, driver: &str) -> User {
    User {
        id,
        gid,
        groups: vec![gid],
        gname: gname.into(),
        name: name.into(),
        password: hash_password(password),
        auth_driver: driver.into(),
        enabled: true,
        login_tokens: Vec::new(),
        template: Template::new(),
        quotas: Quotas::default(),
    }
}

fn datastore(dir: &DataDir, id: i64, name: &str, ty: DatastoreType, ds_mad: &str) -> Datastore {
    let base_path = dir.datastore_path(id).display().to_string();
    let mut template = Template::new();
    template.set("TYPE", ty.name());
    template.set("TM_MAD", "shared");
    if ty != DatastoreType::System {
        template.set("DS_MAD", ds_mad);
    }
    template.set("SHARED", "YES");
    template.set("CLONE_TARGET", "SYSTEM");
    template.set("LN_TARGET", "NONE");
    template.set("DISK_TYPE", "FILE");
    template.set("BASE_PATH", base_path.clone());
    // OpenNebula's default datastores are usable by everyone: USE for group and others.
    let mut perms = Permissions::from_umask(0o177);
    perms.bits[Permissions::GROUP_U] = true;
    perms.bits[Permissions::OTHER_U] = id != 0 || ty == DatastoreType::System;
    Datastore {
        header: Header {
            perms,
            ..Header::oneadmin(id, name)
        },
        ds_mad: if ty == DatastoreType::System {
            "-".into()
        } else {
            ds_mad.into()
        },
        tm_mad: "shared".into(),
        base_path,
        ds_type: ty,
        disk_type: DiskType::File,
        state: DatastoreState::Ready,
        clusters: vec![0],
        total_mb: 0,
        free_mb: 0,
        used_mb: 0,
        images: Vec::new(),
        template,
    }
}

/// Security group 0, `default`: allows all traffic; every new network gets it. Owned by
/// oneadmin, usable by everyone (OpenNebula's permissions 1 1 1 / 1 0 0 / 1 0 0).
fn default_secgroup() -> SecurityGroup {
    let mut perms = Permissions::from_umask(0o177);
    perms.bits = [true, true, true, true, false, false, true, false, false];
    SecurityGroup::new(
        Header {
            perms,
            ..Header::oneadmin(secgroup::DEFAULT_ID, "default")
        },
        secgroup::default_template(),
    )
}

/// Adds what a database bootstrapped by an older oned lacks (security group 0); nothing
/// when it is there.
pub async fn upgrade(store: &Store) -> Result<(), StoreError> {
    if store.get::<SecurityGroup>(secgroup::DEFAULT_ID).is_some() {
        return Ok(());
    }
    let mut tx = store.begin().await;
    tx.put(default_secgroup());
    tx.bump_next_id(Kind::SecGroup, secgroup::FIRST_USER_ID);
    tx.commit().await?;
    tracing::info!("added the default security group to an existing installation");
    Ok(())
}

/// Creates the bootstrap objects unless the database already has them. Returns oneadmin's
/// password when it was generated or taken from `ONE_AUTH` (so the caller writes `one_auth`).
pub async fn bootstrap(
    store: &Store,
    dir: &DataDir,
    oneadmin_password: Option<String>,
) -> Result<Option<String>, StoreError> {
    if store.db.load_system(BOOTSTRAP_MARK).await?.is_some() {
        return Ok(None);
    }
    let password = oneadmin_password.unwrap_or_else(|| random_hex(16));
    let mut tx = store.begin().await;

    tx.put(Group {
        id: 0,
        name: "oneadmin".into(),
        template: Template::new(),
        users: vec![0, 1],
        admins: Vec::new(),
        quotas: Quotas::default(),
    });
    tx.put(Group {
        id: 1,
        name: "users".into(),
        template: Template::new(),
        users: Vec::new(),
        admins: Vec::new(),
        quotas: Quotas::default(),
    });
    // OpenNebula reserves ids below 100 for system groups and users.
    tx.bump_next_id(Kind::Group, 100);

    tx.put(user(0, 0, "oneadmin", "oneadmin", &password, "core"));
    tx.put(user(
        1,
        0,
        "oneadmin",
        "serveradmin",
        &random_hex(16),
        "server_cipher",
    ));
    tx.bump_next_id(Kind::User, 2);

    let datastores = [
        datastore(dir, 0, "system", DatastoreType::System, "-"),
        datastore(dir, 1, "default", DatastoreType::Image, "fs"),
        datastore(dir, 2, "files", DatastoreType::File, "fs"),
    ];
    for ds in &datastores {
        if let Err(e) = dir.create_dir(std::path::Path::new(&ds.base_path)) {
            tracing::warn!(ds = ds.header.id, error = %e, "cannot create datastore directory");
        }
    }
    tx.put(Cluster {
        id: 0,
        name: "default".into(),
        hosts: Vec::new(),
        datastores: datastores.iter().map(|d| d.header.id).collect(),
        vnets: Vec::new(),
        template: {
            let mut t = Template::new();
            t.set("RESERVED_CPU", "");
            t.set("RESERVED_MEM", "");
            t
        },
    });
    tx.bump_next_id(Kind::Cluster, 100);
    for ds in datastores {
        tx.put(ds);
    }
    tx.bump_next_id(Kind::Datastore, 100);

    // OpenNebula's built-in rules, then the two its default VDC adds for group `users`
    // (use networks and datastores, manage hosts of zone 0).
    let mut rules = default_rules();
    for text in ["@1 HOST/* MANAGE #0", "@1 NET+DATASTORE/* USE #0"] {
        rules.push(AclRule::parse_rule_string(text).expect("built-in ACL rule parses"));
    }
    let n = rules.len() as i64;
    for (i, mut r) in rules.into_iter().enumerate() {
        r.id = i as i64;
        tx.put(r);
    }
    tx.bump_next_id(Kind::Acl, n);
    tx.put(default_secgroup());
    tx.bump_next_id(Kind::SecGroup, secgroup::FIRST_USER_ID);
    tx.set_system(
        BOOTSTRAP_MARK,
        format!("{{\"time\":{}}}", crate::auth::now_secs()),
    );
    tx.commit().await?;
    tracing::info!("bootstrapped a new installation");
    Ok(Some(password))
}
