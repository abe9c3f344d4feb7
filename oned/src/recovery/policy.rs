//! What recovery does, as pure functions of the configuration, the templates and a VM's
//! state: kept apart from the task so every decision is unit-tested.

use super::RecoveryConfig;
use one_proto::objects::datastore::Datastore;
use one_proto::state::{HostState, LcmState, VmState};
use one_proto::template::Template;
use std::time::Duration;

/// HOST_ERROR_RECOVERY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing is done (the default).
    None,
    /// VMs on a shared system datastore are rescheduled; the others are left, with the reason.
    Migrate,
    /// As MIGRATE, but VMs that cannot migrate are deleted and recreated (PENDING again).
    Recreate,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim().to_ascii_uppercase().as_str() {
            "" | "NONE" | "NO" => Some(Mode::None),
            "MIGRATE" | "RESCHED" => Some(Mode::Migrate),
            "RECREATE" | "DELETE-RECREATE" => Some(Mode::Recreate),
            _ => None,
        }
    }
}

/// The policy that applies to one host.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub mode: Mode,
    pub grace: Duration,
    /// Empty: the host is not fenced.
    pub fence: String,
}

/// A host attribute, else its cluster's, else none (an empty value counts as unset).
fn lookup<'a>(host: &'a Template, cluster: Option<&'a Template>, name: &str) -> Option<&'a str> {
    let set = |t: &'a Template| t.get(name).map(str::trim).filter(|v| !v.is_empty());
    set(host).or_else(|| cluster.and_then(set))
}

/// The policy of a host: HOST_ERROR_RECOVERY, HOST_ERROR_GRACE and FENCE_COMMAND from the
/// host's template, else its cluster's, else the configuration. A value that does not parse
/// is an error (the caller logs it and does nothing: a typo must not fence a host).
pub fn resolve(
    cfg: &RecoveryConfig,
    host: &Template,
    cluster: Option<&Template>,
) -> Result<Policy, String> {
    let mode = match lookup(host, cluster, "HOST_ERROR_RECOVERY") {
        None => Mode::None,
        Some(v) => Mode::parse(v)
            .ok_or_else(|| format!("HOST_ERROR_RECOVERY={v:?} is not NONE, MIGRATE or RECREATE"))?,
    };
    let grace = match lookup(host, cluster, "HOST_ERROR_GRACE") {
        None => cfg.grace_seconds,
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|g| g.is_finite() && (0.0..=1e9).contains(g))
            .ok_or_else(|| format!("HOST_ERROR_GRACE={v:?} is not a number of seconds"))?,
    };
    let fence = lookup(host, cluster, "FENCE_COMMAND")
        .unwrap_or(cfg.fence_command.trim())
        .to_string();
    Ok(Policy {
        mode,
        grace: Duration::from_secs_f64(grace.clamp(0.0, 1e9)),
        fence,
    })
}

/// Host states that count as failed (OpenNebula's host_error hook waits for the same two).
pub fn is_failed(s: HostState) -> bool {
    matches!(s, HostState::Error | HostState::MonitoringError)
}

/// Whether a system datastore is shared by its hosts, so a VM's disks are reachable from
/// another host: SHARED=YES/NO in its template when set, else by TM_MAD as OpenNebula's
/// TM_MAD_CONF says (ssh, local and fs_lvm_ssh copy files to the host; shared, qcow2, ceph,
/// fs_lvm, ... do not).
pub fn ds_shared(ds: &Datastore) -> bool {
    match ds.template.get("SHARED").map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("YES") => true,
        Some(v) if v.eq_ignore_ascii_case("NO") => false,
        _ => !matches!(
            ds.tm_mad.trim().to_ascii_lowercase().as_str(),
            "ssh" | "local" | "fs_lvm_ssh"
        ),
    }
}

/// What happens to one VM of a failed host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmAction {
    /// `resched`: the scheduler cold-migrates it (PROLOG_MIGRATE_UNKNOWN) with its disks.
    Resched,
    /// `recover delete-recreate`: back to PENDING, its disks' state lost.
    Recreate,
    /// Left as it is; the reason goes to its USER_TEMPLATE/ERROR and the log.
    Leave(String),
}

impl VmAction {
    pub fn name(&self) -> &'static str {
        match self {
            VmAction::Resched => "resched",
            VmAction::Recreate => "recreate",
            VmAction::Leave(_) => "leave",
        }
    }
}

/// The VM as recovery sees it.
pub struct VmView<'a> {
    pub state: VmState,
    pub lcm: LcmState,
    /// RESCHED already set (by an earlier pass or an admin): nothing more to do.
    pub resched: bool,
    /// The VM's system datastore, if it still exists.
    pub ds: Option<&'a Datastore>,
    /// The datastore id the VM's history names.
    pub ds_id: i64,
}

/// The action for one VM of a failed host, or None when recovery does not concern it: only
/// ACTIVE VMs are recovered (POWEROFF, SUSPENDED, ... have nothing running to lose and are
/// left alone, as OpenNebula's hook does by default).
pub fn decide(mode: Mode, vm: &VmView<'_>) -> Option<VmAction> {
    if mode == Mode::None || vm.state != VmState::Active {
        return None;
    }
    let movable = matches!(vm.lcm, LcmState::Unknown | LcmState::Running);
    if movable && vm.resched {
        return None;
    }
    let shared = vm.ds.is_some_and(ds_shared);
    if movable && shared {
        return Some(VmAction::Resched);
    }
    if mode == Mode::Recreate {
        return Some(VmAction::Recreate);
    }
    let why = if !movable {
        format!(
            "it is in LCM state {} and can only be rescheduled from UNKNOWN or RUNNING",
            vm.lcm
        )
    } else {
        match vm.ds {
            None => format!("its system datastore {} no longer exists", vm.ds_id),
            Some(ds) => format!(
                "its system datastore {} (TM_MAD {}) is not shared, so its disks stayed on the host",
                ds.header.id, ds.tm_mad
            ),
        }
    };
    Some(VmAction::Leave(format!(
        "not recovered: {why}; recover it by hand or set HOST_ERROR_RECOVERY=RECREATE"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use one_proto::objects::Header;
    use one_proto::state::{DatastoreState, DatastoreType, DiskType};

    fn tmpl(pairs: &[(&str, &str)]) -> Template {
        let mut t = Template::new();
        for (k, v) in pairs {
            t.set(k, *v);
        }
        t
    }

    fn ds(id: i64, tm_mad: &str, shared: Option<&str>) -> Datastore {
        let mut template = Template::new();
        if let Some(s) = shared {
            template.set("SHARED", s);
        }
        Datastore {
            header: Header::oneadmin(id, "sys"),
            ds_mad: "-".into(),
            tm_mad: tm_mad.into(),
            base_path: "/x".into(),
            ds_type: DatastoreType::System,
            disk_type: DiskType::File,
            state: DatastoreState::Ready,
            clusters: vec![0],
            total_mb: 0,
            free_mb: 0,
            used_mb: 0,
            images: vec![],
            template,
        }
    }

    #[test]
    fn off_unless_a_template_enables_it() {
        let cfg = RecoveryConfig::default();
        let p = resolve(&cfg, &Template::new(), Some(&Template::new())).unwrap();
        assert_eq!(p.mode, Mode::None);
        assert_eq!(p.grace, Duration::from_secs_f64(cfg.grace_seconds));
        assert_eq!(p.fence, "");
    }

    #[test]
    fn host_overrides_cluster_overrides_config() {
        let cfg = RecoveryConfig {
            fence_command: "/bin/default-fence".into(),
            ..RecoveryConfig::default()
        };
        let cluster = tmpl(&[
            ("HOST_ERROR_RECOVERY", "migrate"),
            ("HOST_ERROR_GRACE", "30"),
        ]);
        let p = resolve(&cfg, &Template::new(), Some(&cluster)).unwrap();
        assert_eq!(
            (p.mode, p.grace.as_secs(), p.fence.as_str()),
            (Mode::Migrate, 30, "/bin/default-fence")
        );
        let host = tmpl(&[
            ("HOST_ERROR_RECOVERY", "NONE"),
            ("FENCE_COMMAND", "/bin/ipmi-off"),
            ("HOST_ERROR_GRACE", ""),
        ]);
        let p = resolve(&cfg, &host, Some(&cluster)).unwrap();
        assert_eq!(
            (p.mode, p.grace.as_secs(), p.fence.as_str()),
            (Mode::None, 30, "/bin/ipmi-off")
        );
    }

    #[test]
    fn typos_are_errors_not_guesses() {
        let cfg = RecoveryConfig::default();
        let e = resolve(&cfg, &tmpl(&[("HOST_ERROR_RECOVERY", "MIGRATEE")]), None).unwrap_err();
        assert!(e.contains("MIGRATEE"), "{e}");
        let e = resolve(
            &cfg,
            &tmpl(&[
                ("HOST_ERROR_RECOVERY", "RECREATE"),
                ("HOST_ERROR_GRACE", "-1"),
            ]),
            None,
        )
        .unwrap_err();
        assert!(e.contains("HOST_ERROR_GRACE"), "{e}");
    }

    #[test]
    fn shared_by_attribute_then_tm_mad() {
        assert!(ds_shared(&ds(0, "shared", None)));
        assert!(ds_shared(&ds(0, "qcow2", None)));
        assert!(ds_shared(&ds(0, "ceph", None)));
        assert!(!ds_shared(&ds(0, "ssh", None)));
        assert!(!ds_shared(&ds(0, "local", None)));
        assert!(ds_shared(&ds(0, "ssh", Some("yes"))));
        assert!(!ds_shared(&ds(0, "shared", Some("NO"))));
    }

    fn view(lcm: LcmState, resched: bool, d: Option<&Datastore>) -> VmView<'_> {
        VmView {
            state: VmState::Active,
            lcm,
            resched,
            ds: d,
            ds_id: 7,
        }
    }

    #[test]
    fn vm_decisions() {
        use LcmState as L;
        let shared = ds(0, "shared", None);
        let local = ds(1, "ssh", None);
        // Shared disks: rescheduled, whatever the mode.
        for mode in [Mode::Migrate, Mode::Recreate] {
            assert_eq!(
                decide(mode, &view(L::Unknown, false, Some(&shared))),
                Some(VmAction::Resched)
            );
        }
        // Already flagged: done before (a restart re-runs the pass).
        assert_eq!(
            decide(Mode::Migrate, &view(L::Unknown, true, Some(&shared))),
            None
        );
        // Local disks: left with the reason, or recreated.
        let Some(VmAction::Leave(why)) =
            decide(Mode::Migrate, &view(L::Unknown, false, Some(&local)))
        else {
            panic!("expected leave");
        };
        assert!(
            why.contains("TM_MAD ssh") && why.contains("not shared"),
            "{why}"
        );
        assert_eq!(
            decide(Mode::Recreate, &view(L::Unknown, false, Some(&local))),
            Some(VmAction::Recreate)
        );
        // A VM in the middle of something cannot be rescheduled.
        let Some(VmAction::Leave(why)) =
            decide(Mode::Migrate, &view(L::BootFailure, false, Some(&shared)))
        else {
            panic!("expected leave");
        };
        assert!(why.contains("BOOT_FAILURE"), "{why}");
        assert_eq!(
            decide(Mode::Recreate, &view(L::BootFailure, false, Some(&shared))),
            Some(VmAction::Recreate)
        );
        // A vanished datastore is not shared.
        let Some(VmAction::Leave(why)) = decide(Mode::Migrate, &view(L::Unknown, false, None))
        else {
            panic!("expected leave");
        };
        assert!(why.contains("datastore 7 no longer exists"), "{why}");
        // Not ACTIVE, or recovery off: not concerned.
        let mut v = view(L::LcmInit, false, Some(&shared));
        v.state = VmState::Poweroff;
        assert_eq!(decide(Mode::Recreate, &v), None);
        assert_eq!(
            decide(Mode::None, &view(L::Unknown, false, Some(&shared))),
            None
        );
    }

    #[test]
    fn failed_states() {
        assert!(is_failed(HostState::Error));
        assert!(is_failed(HostState::MonitoringError));
        assert!(!is_failed(HostState::Monitored));
        assert!(!is_failed(HostState::Disabled));
    }
}
