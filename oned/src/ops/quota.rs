//! Quotas of users and groups: checked and charged in the transaction that uses resources.
//! (Owned by the users/groups work; the signatures below are the contract other kinds use.)
//!
//! As OpenNebula: an operation charges its owner's user quotas and the owner's group quotas;
//! user 0 (oneadmin) and group 0 (oneadmin) are never charged nor counted (so other members of
//! group oneadmin are still limited by their own user quotas). A limit of -1 takes the default
//! quota (`one.userquota.update` / `one.groupquota.update`), unlimited when none is set; -2 is
//! unlimited. Only positive amounts are checked: giving back never fails.
//!
//! The default quotas are stored with group 0 (see [`Quotas::defaults`]), so they are loaded
//! with the pools and read and written under the same transaction as every other change.

use crate::store::Txn;
use one_proto::objects::group::Group;
use one_proto::objects::quota::{DefaultQuotas, QuotaExceeded, QuotaKind, Quotas};
use one_proto::objects::user::User;
use one_proto::{ApiError, ErrorCode};

/// Group 0 (oneadmin): never charged, and the keeper of the default quotas.
const ONEADMIN_GROUP: i64 = 0;
/// User 0 (oneadmin): never charged.
const ONEADMIN_USER: i64 = 0;

/// Resources one operation uses (positive) or gives back (negative).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuotaUsage {
    /// VM_QUOTA: number of VMs, CPU, MEMORY (MB), SYSTEM_DISK_SIZE (MB), and the RUNNING_* ones.
    pub vms: i64,
    pub cpu: f64,
    pub memory_mb: i64,
    pub system_disk_mb: i64,
    pub running_vms: i64,
    pub running_cpu: f64,
    pub running_memory_mb: i64,
    /// NETWORK_QUOTA: leases per virtual network id.
    pub leases: Vec<(i64, i64)>,
    /// IMAGE_QUOTA: running VMs per image id.
    pub image_rvms: Vec<(i64, i64)>,
    /// DATASTORE_QUOTA: (datastore id, images, size MB).
    pub datastore: Vec<(i64, i64, i64)>,
}

/// The amounts one quota entry (kind, resource id) is charged, per metric.
type Item = (QuotaKind, Option<i64>, Vec<(&'static str, f64)>);

impl QuotaUsage {
    /// The same usage with every amount negated (what `release` gives back).
    pub fn negated(&self) -> QuotaUsage {
        QuotaUsage {
            vms: -self.vms,
            cpu: -self.cpu,
            memory_mb: -self.memory_mb,
            system_disk_mb: -self.system_disk_mb,
            running_vms: -self.running_vms,
            running_cpu: -self.running_cpu,
            running_memory_mb: -self.running_memory_mb,
            leases: self.leases.iter().map(|(id, n)| (*id, -n)).collect(),
            image_rvms: self.image_rvms.iter().map(|(id, n)| (*id, -n)).collect(),
            datastore: self
                .datastore
                .iter()
                .map(|(id, i, s)| (*id, -i, -s))
                .collect(),
        }
    }

    /// The charges per quota entry, in OpenNebula's checking order (datastore, network, VM,
    /// image).
    fn items(&self) -> Vec<Item> {
        let mut out = Vec::new();
        for (ds, images, size) in &self.datastore {
            out.push((
                QuotaKind::Datastore,
                Some(*ds),
                vec![("IMAGES", *images as f64), ("SIZE", *size as f64)],
            ));
        }
        for (net, n) in &self.leases {
            out.push((QuotaKind::Network, Some(*net), vec![("LEASES", *n as f64)]));
        }
        out.push((
            QuotaKind::Vm,
            None,
            vec![
                ("VMS", self.vms as f64),
                ("CPU", self.cpu),
                ("MEMORY", self.memory_mb as f64),
                ("SYSTEM_DISK_SIZE", self.system_disk_mb as f64),
                ("RUNNING_VMS", self.running_vms as f64),
                ("RUNNING_CPU", self.running_cpu),
                ("RUNNING_MEMORY", self.running_memory_mb as f64),
            ],
        ));
        for (img, n) in &self.image_rvms {
            out.push((QuotaKind::Image, Some(*img), vec![("RVMS", *n as f64)]));
        }
        out
    }
}

/// The default quotas as this transaction sees them.
pub fn defaults(tx: &Txn<'_>) -> DefaultQuotas {
    tx.get::<Group>(ONEADMIN_GROUP)
        .and_then(|g| g.quotas.defaults.map(|d| *d))
        .unwrap_or_default()
}

/// Default quotas from a committed state (for info calls outside a transaction).
pub fn defaults_in(state: &crate::store::State) -> DefaultQuotas {
    state
        .groups
        .get(ONEADMIN_GROUP)
        .and_then(|g| g.quotas.defaults.as_deref().cloned())
        .unwrap_or_default()
}

/// Stores new default quotas (in group 0) within the transaction.
pub fn set_defaults(tx: &mut Txn<'_>, defaults: DefaultQuotas) -> Result<(), String> {
    let mut g: Group = tx
        .get(ONEADMIN_GROUP)
        .ok_or_else(|| "group 0 (oneadmin) is missing; cannot store default quotas".to_string())?;
    g.quotas.defaults = Some(Box::new(defaults));
    tx.put(g);
    Ok(())
}

/// Charges every item of `usage` to `quotas`, or leaves them untouched.
fn charge_quotas(
    quotas: &mut Quotas,
    defaults: &Quotas,
    usage: &QuotaUsage,
) -> Result<(), QuotaExceeded> {
    let mut next = quotas.clone();
    for (kind, id, deltas) in usage.items() {
        next.check_and_add(kind, id, &deltas, defaults)?;
    }
    *quotas = next;
    Ok(())
}

fn release_quotas(quotas: &mut Quotas, usage: &QuotaUsage) {
    for (kind, id, deltas) in usage.negated().items() {
        quotas.add(kind, id, &deltas);
    }
}

/// `[one.vm.allocate] User [3] : user [3] limit of 2 reached for VMS quota in VM.`
fn exceeded(method: &str, uid: i64, who: &str, id: i64, e: &QuotaExceeded) -> ApiError {
    ApiError::new(
        ErrorCode::Authorization,
        format!("[{method}] User [{uid}] : {who} [{id}] {e}."),
    )
}

/// Checks the owner's user and group quotas for `usage` and charges them, or refuses with a
/// message naming the exceeded limit. Nothing is charged when the check fails.
pub fn charge(
    tx: &mut Txn<'_>,
    method: &str,
    uid: i64,
    gid: i64,
    usage: &QuotaUsage,
) -> Result<(), ApiError> {
    let defaults = defaults(tx);
    let user = if uid != ONEADMIN_USER {
        tx.get::<User>(uid)
    } else {
        None
    };
    let group = if gid != ONEADMIN_GROUP {
        tx.get::<Group>(gid)
    } else {
        None
    };
    let user = match user {
        Some(mut u) => {
            charge_quotas(&mut u.quotas, &defaults.user, usage).map_err(|e| {
                tracing::info!(uid, gid, method, limit = %e, "user quota exceeded");
                exceeded(method, uid, "user", uid, &e)
            })?;
            Some(u)
        }
        None => None,
    };
    let group = match group {
        Some(mut g) => {
            charge_quotas(&mut g.quotas, &defaults.group, usage).map_err(|e| {
                tracing::info!(uid, gid, method, limit = %e, "group quota exceeded");
                exceeded(method, uid, "group", gid, &e)
            })?;
            Some(g)
        }
        None => None,
    };
    // Only now that both passed: a refusal leaves both untouched.
    if let Some(u) = user {
        tx.put(u);
    }
    if let Some(g) = group {
        tx.put(g);
    }
    Ok(())
}

/// Gives back what `usage` charged (never fails: usage just goes down, not below zero).
pub fn release(tx: &mut Txn<'_>, uid: i64, gid: i64, usage: &QuotaUsage) {
    if uid != ONEADMIN_USER
        && let Some(mut u) = tx.get::<User>(uid)
    {
        release_quotas(&mut u.quotas, usage);
        tx.put(u);
    }
    if gid != ONEADMIN_GROUP
        && let Some(mut g) = tx.get::<Group>(gid)
    {
        release_quotas(&mut g.quotas, usage);
        tx.put(g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::store::Store;
    use one_proto::template::Template;

    fn user(id: i64, gid: i64) -> User {
        User {
            id,
            gid,
            groups: vec![gid],
            gname: String::new(),
            name: format!("u{id}"),
            password: String::new(),
            auth_driver: "core".into(),
            enabled: true,
            login_tokens: vec![],
            template: Template::new(),
            quotas: Quotas::default(),
        }
    }

    fn group(id: i64) -> Group {
        Group {
            id,
            name: format!("g{id}"),
            template: Template::new(),
            users: vec![],
            admins: vec![],
            quotas: Quotas::default(),
        }
    }

    /// A store on a fresh SQLite file with groups 0 and 100 and users 0 and 3.
    async fn store(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("oned-quota-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/one.db?mode=rwc", dir.display());
        let db = Db::open(&url, false).await.expect("test db");
        let store = Store::load(db).await.expect("load");
        let mut tx = store.begin().await;
        tx.put(group(0));
        tx.put(group(100));
        tx.put(user(0, 0));
        tx.put(user(3, 100));
        tx.commit().await.unwrap();
        store
    }

    fn set(tx: &mut Txn<'_>, uid: Option<i64>, gid: Option<i64>, text: &str) {
        let t = Template::parse(text).unwrap();
        if let Some(uid) = uid {
            let mut u: User = tx.get(uid).unwrap();
            u.quotas.set(&t, false).unwrap();
            tx.put(u);
        }
        if let Some(gid) = gid {
            let mut g: Group = tx.get(gid).unwrap();
            g.quotas.set(&t, false).unwrap();
            tx.put(g);
        }
    }

    fn vm(n: i64) -> QuotaUsage {
        QuotaUsage {
            vms: n,
            cpu: 0.5 * n as f64,
            memory_mb: 256 * n,
            leases: vec![(0, n)],
            ..QuotaUsage::default()
        }
    }

    fn used(tx: &Txn<'_>, uid: i64, kind: QuotaKind, id: Option<i64>, m: &str) -> f64 {
        tx.get::<User>(uid)
            .unwrap()
            .quotas
            .entry(kind, id)
            .map_or(0.0, |e| e.used(m))
    }

    fn gused(tx: &Txn<'_>, gid: i64, kind: QuotaKind, id: Option<i64>, m: &str) -> f64 {
        tx.get::<Group>(gid)
            .unwrap()
            .quotas
            .entry(kind, id)
            .map_or(0.0, |e| e.used(m))
    }

    #[tokio::test]
    async fn user_limit_refuses_and_charges_nothing() {
        let store = store("user_limit_refuses_and_charges_nothing").await;
        let mut tx = store.begin().await;
        set(&mut tx, Some(3), None, "VM = [ VMS = 2 ]");
        charge(&mut tx, "one.vm.allocate", 3, 100, &vm(1)).unwrap();
        charge(&mut tx, "one.vm.allocate", 3, 100, &vm(1)).unwrap();
        let e = charge(&mut tx, "one.vm.allocate", 3, 100, &vm(1)).unwrap_err();
        assert_eq!(e.code, ErrorCode::Authorization);
        assert_eq!(
            e.message,
            "[one.vm.allocate] User [3] : user [3] limit of 2 reached for VMS quota in VM."
        );
        assert_eq!(used(&tx, 3, QuotaKind::Vm, None, "VMS"), 2.0);
        assert_eq!(used(&tx, 3, QuotaKind::Network, Some(0), "LEASES"), 2.0);
        assert_eq!(gused(&tx, 100, QuotaKind::Vm, None, "VMS"), 2.0);
        release(&mut tx, 3, 100, &vm(1));
        assert_eq!(used(&tx, 3, QuotaKind::Vm, None, "VMS"), 1.0);
        assert_eq!(gused(&tx, 100, QuotaKind::Vm, None, "CPU"), 0.5);
        release(&mut tx, 3, 100, &vm(5));
        assert_eq!(used(&tx, 3, QuotaKind::Vm, None, "VMS"), 0.0);
        // Limits set, no usage: the entry stays (it has a limit); the group's is gone.
        assert!(
            tx.get::<User>(3)
                .unwrap()
                .quotas
                .entry(QuotaKind::Vm, None)
                .is_some()
        );
        assert!(tx.get::<Group>(100).unwrap().quotas.is_empty());
    }

    #[tokio::test]
    async fn group_limit_is_enforced_and_user_left_untouched() {
        let store = store("group_limit_is_enforced_and_user_left_untouched").await;
        let mut tx = store.begin().await;
        set(&mut tx, None, Some(100), "NETWORK = [ ID = 0, LEASES = 1 ]");
        charge(&mut tx, "one.vm.allocate", 3, 100, &vm(1)).unwrap();
        let before = tx.get::<User>(3).unwrap();
        let e = charge(&mut tx, "one.vm.allocate", 3, 100, &vm(1)).unwrap_err();
        assert_eq!(
            e.message,
            "[one.vm.allocate] User [3] : group [100] limit of 1 reached for LEASES quota in \
             NETWORK with ID: 0."
        );
        assert_eq!(
            tx.get::<User>(3).unwrap(),
            before,
            "user not charged on group refusal"
        );
    }

    #[tokio::test]
    async fn defaults_apply_and_oneadmin_is_not_counted() {
        let store = store("defaults_apply_and_oneadmin_is_not_counted").await;
        let mut tx = store.begin().await;
        let mut d = DefaultQuotas::default();
        d.user
            .set(&Template::parse("VM = [ VMS = 1 ]").unwrap(), true)
            .unwrap();
        set_defaults(&mut tx, d).unwrap();
        charge(&mut tx, "one.vm.allocate", 3, 100, &vm(1)).unwrap();
        assert!(charge(&mut tx, "one.vm.allocate", 3, 100, &vm(1)).is_err());
        // -2 lifts the default for this user.
        set(&mut tx, Some(3), None, "VM = [ VMS = -2 ]");
        charge(&mut tx, "one.vm.allocate", 3, 100, &vm(3)).unwrap();
        assert_eq!(used(&tx, 3, QuotaKind::Vm, None, "VMS"), 4.0);
        // oneadmin (user 0, group 0) is neither limited nor counted.
        for _ in 0..3 {
            charge(&mut tx, "one.vm.allocate", 0, 0, &vm(1)).unwrap();
        }
        assert!(tx.get::<User>(0).unwrap().quotas.is_empty());
        let g0 = tx.get::<Group>(0).unwrap();
        assert!(g0.quotas.vm.is_empty() && g0.quotas.defaults.is_some());
        // The defaults survive a commit.
        tx.commit().await.unwrap();
        let tx = store.begin().await;
        assert_eq!(defaults(&tx).user.vm.len(), 1);
        assert_eq!(defaults_in(&store.read()).user.vm.len(), 1);
    }

    #[tokio::test]
    async fn missing_owner_is_skipped() {
        let store = store("missing_owner_is_skipped").await;
        let mut tx = store.begin().await;
        charge(&mut tx, "one.vm.allocate", 42, 4242, &vm(1)).unwrap();
        release(&mut tx, 42, 4242, &vm(1));
    }
}
