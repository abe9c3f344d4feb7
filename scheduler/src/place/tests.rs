//! Placement table tests: pools written as oned's XML (crate::synth), parsed, scheduled.

use super::*;
use crate::expr::Requirement;
use crate::model::{DatastorePool, HostPool, parse_cluster_pool, parse_vm_pool};
use crate::synth::{DsSpec, HostSpec, VmSpec, ds_pool_xml, host_pool_xml, vm_pool_xml};

fn run(hosts: &[HostSpec], dss: &[DsSpec], vms: &[VmSpec], cfg: &PlaceConfig) -> Outcome {
    let hp = HostPool::parse(&host_pool_xml(hosts)).unwrap();
    let dp = DatastorePool::parse(&ds_pool_xml(dss)).unwrap();
    let vms = parse_vm_pool(&vm_pool_xml(vms)).unwrap();
    schedule(&vms, &hp, &dp, cfg)
}

fn hosts(n: i64) -> Vec<HostSpec> {
    (0..n).map(HostSpec::new).collect()
}

fn vms(ids: std::ops::Range<i64>) -> Vec<VmSpec> {
    ids.map(|i| VmSpec::pending(i, 0.1, 64)).collect()
}

fn sys() -> Vec<DsSpec> {
    vec![DsSpec::system(0)]
}

fn policy(p: HostPolicy) -> PlaceConfig {
    PlaceConfig {
        host_policy: p,
        ..PlaceConfig::default()
    }
}

/// (vm, host) pairs in decision order.
fn placed(o: &Outcome) -> Vec<(i64, i64)> {
    o.decisions.iter().map(|d| (d.vm_id, d.host_id)).collect()
}

/// How many VMs each host id got, in host id order.
fn per_host(o: &Outcome, n_hosts: i64) -> Vec<usize> {
    (0..n_hosts)
        .map(|h| o.decisions.iter().filter(|d| d.host_id == h).count())
        .collect()
}

fn message(o: &Outcome, vm: i64) -> &str {
    &o.unplaced
        .iter()
        .find(|u| u.vm_id == vm)
        .unwrap_or_else(|| panic!("VM {vm} was placed: {o:?}"))
        .message
}

#[test]
fn striping_spreads_within_one_pass() {
    let o = run(
        &hosts(5),
        &sys(),
        &vms(0..50),
        &policy(HostPolicy::Striping),
    );
    assert_eq!(per_host(&o, 5), vec![10; 5]);
    assert!(o.unplaced.is_empty());
    // Round robin: ties go to the lowest host id.
    assert_eq!(
        &placed(&o)[..6],
        &[(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 0)]
    );
    assert!(
        o.decisions
            .iter()
            .all(|d| d.action == Action::Deploy && d.ds_id == 0)
    );
}

#[test]
fn packing_fills_one_host_first() {
    let o = run(&hosts(5), &sys(), &vms(0..50), &policy(HostPolicy::Packing));
    assert_eq!(per_host(&o, 5), vec![50, 0, 0, 0, 0]);
    // Capacity still applies: 800 CPU / 10 per VM = 80 VMs on host 0, the rest on host 1.
    let o = run(
        &hosts(5),
        &sys(),
        &vms(0..100),
        &policy(HostPolicy::Packing),
    );
    assert_eq!(per_host(&o, 5), vec![80, 20, 0, 0, 0]);
    // The busiest host wins from the start.
    let mut hs = hosts(3);
    hs[2].running_vms = 4;
    let o = run(&hs, &sys(), &vms(0..3), &policy(HostPolicy::Packing));
    assert_eq!(per_host(&o, 3), vec![0, 0, 3]);
}

#[test]
fn load_aware_prefers_free_cpu_and_counts_this_pass() {
    let mut hs = hosts(3);
    hs[0].free_cpu = Some(300);
    hs[1].free_cpu = Some(700);
    hs[2].free_cpu = Some(500);
    // VMs of 2 CPUs (200): 700 → 500 (tie with host 2, lower id wins) → ...
    let v: Vec<VmSpec> = (0..3).map(|i| VmSpec::pending(i, 2.0, 64)).collect();
    let o = run(&hs, &sys(), &v, &policy(HostPolicy::LoadAware));
    assert_eq!(placed(&o), vec![(0, 1), (1, 1), (2, 2)]);
}

#[test]
fn custom_and_fixed_policies_and_vm_rank() {
    let hs = vec![
        HostSpec::new(0).attr("SPEEDY", 1).attr("PRIORITY", 5),
        HostSpec::new(1).attr("SPEEDY", 3).attr("PRIORITY", 1),
        HostSpec::new(2).attr("SPEEDY", 2),
    ];
    let o = run(
        &hs,
        &sys(),
        &vms(0..2),
        &policy(HostPolicy::Custom("SPEEDY * 10".into())),
    );
    assert_eq!(per_host(&o, 3), vec![0, 2, 0]);
    let o = run(&hs, &sys(), &vms(0..2), &policy(HostPolicy::Fixed));
    assert_eq!(per_host(&o, 3), vec![2, 0, 0]);
    // A VM's SCHED_RANK overrides the policy for that VM only.
    let mut v = vms(0..2);
    v[1].rank = "- SPEEDY".into();
    let o = run(&hs, &sys(), &v, &policy(HostPolicy::Fixed));
    assert_eq!(placed(&o), vec![(0, 0), (1, 0)]);
    v[1].rank = "SPEEDY".into();
    let o = run(&hs, &sys(), &v, &policy(HostPolicy::Fixed));
    assert_eq!(placed(&o), vec![(0, 0), (1, 1)]);
}

#[test]
fn fixed_policy_reads_the_cluster_template() {
    let mut hs = hosts(2);
    hs[1].cluster_id = 100;
    let mut hp = HostPool::parse(&host_pool_xml(&hs)).unwrap();
    let clusters = parse_cluster_pool(
        "<CLUSTER_POOL><CLUSTER><ID>0</ID><NAME>a</NAME><TEMPLATE><PRIORITY>1</PRIORITY></TEMPLATE></CLUSTER>\
         <CLUSTER><ID>100</ID><NAME>b</NAME><TEMPLATE><PRIORITY>9</PRIORITY></TEMPLATE></CLUSTER></CLUSTER_POOL>",
    )
    .unwrap();
    hp.attach_clusters(&clusters);
    let mut ds = DsSpec::system(0);
    ds.clusters = vec![0, 100];
    let dp = DatastorePool::parse(&ds_pool_xml(&[ds])).unwrap();
    let mut v = VmSpec::pending(1, 0.1, 64);
    v.automatic_requirements.clear();
    let vm = parse_vm_pool(&vm_pool_xml(&[v])).unwrap();
    let o = schedule(&vm, &hp, &dp, &policy(HostPolicy::Fixed));
    assert_eq!(placed(&o), vec![(1, 1)]);
}

#[test]
fn capacity_filters() {
    let mut hs = hosts(3);
    hs[0].cpu_usage = 700; // 100 free
    hs[1].mem_usage = hs[1].max_mem - 1024; // 1 MB free
    let v = vec![VmSpec::pending(1, 1.0, 512), VmSpec::pending(2, 0.5, 100)];
    let o = run(&hs, &sys(), &v, &policy(HostPolicy::Striping));
    // VM 1 needs 100 CPU and 512 MB: host 0 has exactly 100 CPU free, host 1 lacks memory.
    assert_eq!(placed(&o), vec![(1, 0), (2, 2)]);
    // Too big for anyone.
    let o = run(
        &hs,
        &sys(),
        &[VmSpec::pending(3, 9.0, 64)],
        &PlaceConfig::default(),
    );
    assert_eq!(
        message(&o, 3),
        "No host fits VM 3: 3 of 3 hosts lack CPU (needs 900, best free 800) (hosts 0, 1, 2)"
    );
    let o = run(
        &hs,
        &sys(),
        &[VmSpec::pending(4, 0.1, 32 * 1024)],
        &PlaceConfig::default(),
    );
    assert_eq!(
        message(&o, 4),
        "No host fits VM 4: 3 of 3 hosts lack memory (needs 33554432 KB, best free 16777216 KB) (hosts 0, 1, 2)"
    );
}

#[test]
fn requirements_filter_hosts() {
    let hs = vec![
        HostSpec::new(0).attr("GPU", "nvidia-a100"),
        HostSpec::new(1),
        HostSpec::new(2).attr("GPU", "nvidia-t4"),
        HostSpec::new(3).attr("GPU", "amd"),
    ];
    let mut v = vms(0..4);
    for vm in &mut v {
        vm.requirements = "GPU = \"nvidia-*\"".into();
    }
    let o = run(&hs, &sys(), &v, &PlaceConfig::default());
    assert_eq!(per_host(&o, 4), vec![2, 0, 2, 0]);
    let mut v = VmSpec::pending(9, 0.1, 64);
    v.requirements = "CPUSPEED > 9000".into();
    let o = run(&hs, &sys(), &[v], &PlaceConfig::default());
    assert_eq!(
        message(&o, 9),
        "No host fits VM 9: 4 of 4 hosts fail SCHED_REQUIREMENTS \"CPUSPEED > 9000\" (hosts 0, 1, 2, ...)"
    );
}

#[test]
fn automatic_requirements_keep_vms_in_their_clusters() {
    let mut hs = hosts(4);
    hs[0].cluster_id = 100;
    hs[1].cluster_id = 100;
    let mut ds = DsSpec::system(0);
    ds.clusters = vec![0, 100];
    let mut v = vms(0..4);
    v[3].automatic_requirements = "(CLUSTER_ID = 100) & !(PIN_POLICY = PINNED)".into();
    let o = run(&hs, &[ds], &v, &PlaceConfig::default());
    assert_eq!(placed(&o), vec![(0, 2), (1, 3), (2, 2), (3, 0)]);
}

#[test]
fn host_states() {
    let mut hs = hosts(5);
    hs[0].state = 0; // INIT: allowed
    hs[1].state = 3; // ERROR
    hs[2].state = 4; // DISABLED
    hs[3].state = 8; // OFFLINE
    hs[4].state = 2; // MONITORED
    let o = run(&hs, &sys(), &vms(0..4), &PlaceConfig::default());
    assert_eq!(per_host(&o, 5), vec![2, 0, 0, 0, 2]);
    // An INIT host not monitored yet has no capacity.
    let mut hs = hosts(2);
    hs[0].state = 0;
    hs[0].max_cpu = 0;
    hs[0].max_mem = 0;
    hs[1].state = 4;
    let o = run(&hs, &sys(), &vms(0..1), &PlaceConfig::default());
    assert_eq!(
        message(&o, 0),
        "No host fits VM 0: 1 of 2 hosts is not schedulable (DISABLED) (host 1); 1 lacks CPU (needs 10, best free 0) (host 0)"
    );
}

#[test]
fn user_priority_goes_first() {
    // Room for one VM only.
    let mut hs = hosts(1);
    hs[0].max_cpu = 10;
    let mut v = vms(0..3);
    v[2].user_priority = Some(10);
    v[1].user_priority = Some(-1);
    let o = run(&hs, &sys(), &v, &PlaceConfig::default());
    assert_eq!(placed(&o), vec![(2, 0)]);
    assert_eq!(
        o.unplaced.iter().map(|u| u.vm_id).collect::<Vec<_>>(),
        vec![0, 1]
    );
    // Equal priorities: lower id first.
    let o = run(&hs, &sys(), &vms(3..6), &PlaceConfig::default());
    assert_eq!(placed(&o), vec![(3, 0)]);
}

#[test]
fn per_host_and_per_cycle_limits() {
    let cfg = PlaceConfig {
        max_host: 1,
        host_policy: HostPolicy::Packing,
        ..PlaceConfig::default()
    };
    let o = run(&hosts(3), &sys(), &vms(0..5), &cfg);
    assert_eq!(per_host(&o, 3), vec![1, 1, 1]);
    assert_eq!(
        message(&o, 3),
        "No host fits VM 3: 3 of 3 hosts reached the limit of 1 VMs dispatched per host and cycle (hosts 0, 1, 2)"
    );
    assert_eq!(message(&o, 4), message(&o, 3).replace("VM 3", "VM 4"));
    let cfg = PlaceConfig {
        max_dispatch: 2,
        ..PlaceConfig::default()
    };
    let o = run(&hosts(3), &sys(), &vms(0..5), &cfg);
    assert_eq!(placed(&o), vec![(0, 0), (1, 1)]);
    assert!(o.unplaced.is_empty(), "deferred VMs get no message");
    assert_eq!(o.deferred, 3);
    let cfg = PlaceConfig {
        max_vm: 4,
        ..PlaceConfig::default()
    };
    let o = run(&hosts(3), &sys(), &vms(0..5), &cfg);
    assert_eq!(o.decisions.len(), 4);
    assert_eq!(o.deferred, 1);
}

#[test]
fn system_datastore_choice() {
    let mut big = DsSpec::system(10);
    big.free_mb = 90_000;
    let mut small = DsSpec::system(11);
    small.free_mb = 1_000;
    let mut other_cluster = DsSpec::system(12);
    other_cluster.clusters = vec![100];
    other_cluster.free_mb = 999_999;
    other_cluster.total_mb = 999_999;
    let mut disabled = DsSpec::system(13);
    disabled.state = 1;
    disabled.free_mb = 999_999;
    disabled.total_mb = 999_999;
    let mut image = DsSpec::system(14);
    image.ds_type = 0;
    image.free_mb = 999_999;
    image.total_mb = 999_999;
    let dss = vec![small.clone(), big.clone(), other_cluster, disabled, image];
    let ds_of = |o: &Outcome| o.decisions.iter().map(|d| d.ds_id).collect::<Vec<_>>();
    let cfg = |p: DsPolicy| PlaceConfig {
        ds_policy: p,
        ..PlaceConfig::default()
    };
    // Striping: most free; packing: least free.
    let o = run(&hosts(1), &dss, &vms(0..1), &cfg(DsPolicy::Striping));
    assert_eq!(ds_of(&o), vec![10]);
    let o = run(&hosts(1), &dss, &vms(0..1), &cfg(DsPolicy::Packing));
    assert_eq!(ds_of(&o), vec![11]);
    // Fixed and custom ranks read the datastore's template.
    let dss2 = vec![
        small.clone().attr("PRIORITY", 3),
        big.clone().attr("PRIORITY", 1),
    ];
    let o = run(&hosts(1), &dss2, &vms(0..1), &cfg(DsPolicy::Fixed));
    assert_eq!(ds_of(&o), vec![11]);
    let o = run(
        &hosts(1),
        &dss2,
        &vms(0..1),
        &cfg(DsPolicy::Custom("- ID".into())),
    );
    assert_eq!(ds_of(&o), vec![10]);
    // Space: a 2,000 MB volatile disk does not fit in the small one, even when packing.
    let mut v = VmSpec::pending(1, 0.1, 64);
    v.volatile_disks_mb = vec![1_500, 500];
    let o = run(
        &hosts(1),
        &dss,
        std::slice::from_ref(&v),
        &cfg(DsPolicy::Packing),
    );
    assert_eq!(ds_of(&o), vec![10]);
    // SCHED_DS_REQUIREMENTS and SCHED_DS_RANK.
    let mut w = VmSpec::pending(2, 0.1, 64);
    w.ds_requirements = "NAME = \"system1?\" & ID != 10".into();
    let o = run(
        &hosts(1),
        &dss,
        std::slice::from_ref(&w),
        &cfg(DsPolicy::Striping),
    );
    assert_eq!(ds_of(&o), vec![11]);
    w.ds_requirements.clear();
    w.ds_rank = "- FREE_MB".into();
    let o = run(&hosts(1), &dss, &[w], &cfg(DsPolicy::Striping));
    assert_eq!(ds_of(&o), vec![11]);
    // The free space counts what this pass placed: 3 VMs of 600 MB on 1,000 + 1,500 MB.
    let mut a = DsSpec::system(20);
    a.free_mb = 1_000;
    let mut b = DsSpec::system(21);
    b.free_mb = 1_500;
    let v: Vec<VmSpec> = (0..4)
        .map(|i| VmSpec {
            volatile_disks_mb: vec![600],
            ..VmSpec::pending(i, 0.1, 64)
        })
        .collect();
    let o = run(&hosts(1), &[a, b], &v, &cfg(DsPolicy::Striping));
    assert_eq!(ds_of(&o), vec![21, 20, 21]);
    assert_eq!(
        message(&o, 3),
        "No host fits VM 3: 1 of 1 host lacks system datastore space (needs 600 MB, best free 400 MB) (host 0)"
    );
}

#[test]
fn unmonitored_datastores_do_not_refuse_for_space() {
    let mut ds = DsSpec::system(0);
    ds.total_mb = 0;
    ds.free_mb = 0;
    let v = VmSpec {
        volatile_disks_mb: vec![10_000],
        ..VmSpec::pending(1, 0.1, 64)
    };
    let o = run(&hosts(1), &[ds], &[v], &PlaceConfig::default());
    assert_eq!(placed(&o), vec![(1, 0)]);
}

#[test]
fn local_datastores_use_the_hosts_free_space() {
    let mut ds = DsSpec::system(0);
    ds.shared = false;
    let mut hs = hosts(2);
    hs[0].datastores = vec![(0, 100, 1_000)];
    hs[1].datastores = vec![(0, 5_000, 10_000)];
    let v: Vec<VmSpec> = (0..3)
        .map(|i| VmSpec {
            volatile_disks_mb: vec![2_000],
            ..VmSpec::pending(i, 0.1, 64)
        })
        .collect();
    let o = run(&hs, &[ds], &v, &PlaceConfig::default());
    // Host 0 has 100 MB locally: everything goes to host 1 until it is full too.
    assert_eq!(placed(&o), vec![(0, 1), (1, 1)]);
    assert_eq!(
        message(&o, 2),
        "No host fits VM 2: 2 of 2 hosts lack system datastore space (needs 2000 MB, best free 1000 MB) (hosts 0, 1)"
    );
}

#[test]
fn datastore_reasons() {
    let mut ds = DsSpec::system(0);
    ds.clusters = vec![100];
    let o = run(&hosts(1), &[ds], &vms(0..1), &PlaceConfig::default());
    assert_eq!(
        message(&o, 0),
        "No host fits VM 0: 1 of 1 host has no READY system datastore in its cluster (host 0)"
    );
    let mut v = VmSpec::pending(1, 0.1, 64);
    v.ds_requirements = "NAME = fast".into();
    let o = run(&hosts(2), &sys(), &[v], &PlaceConfig::default());
    assert_eq!(
        message(&o, 1),
        "No host fits VM 1: 2 of 2 hosts have no system datastore matching \
         AUTOMATIC_DS_REQUIREMENTS \"(\"CLUSTERS/ID\" @> 0)\" & SCHED_DS_REQUIREMENTS \"NAME = fast\" (hosts 0, 1)"
    );
}

#[test]
fn rescheduled_vms_move_to_another_host() {
    let mut hs = hosts(3);
    hs[0].running_vms = 1;
    let r = VmSpec::resched(7, 0.1, 64, 0, 0);
    let o = run(
        &hs,
        &sys(),
        std::slice::from_ref(&r),
        &PlaceConfig::default(),
    );
    assert_eq!(
        o.decisions,
        vec![Decision {
            vm_id: 7,
            host_id: 1,
            ds_id: -1,
            action: Action::Migrate
        }]
    );
    // Packing would prefer host 0 (busiest), but that is where the VM is.
    let o = run(
        &hs,
        &sys(),
        std::slice::from_ref(&r),
        &policy(HostPolicy::Packing),
    );
    assert_eq!(placed(&o), vec![(7, 1)]);
    // Alone on its host: nowhere to go.
    let o = run(
        &hosts(1),
        &sys(),
        std::slice::from_ref(&r),
        &PlaceConfig::default(),
    );
    assert_eq!(
        message(&o, 7),
        "No host fits VM 7: 1 of 1 host is the VM's current host (host 0)"
    );
    // POWEROFF with RESCHED moves too; RUNNING without RESCHED is left alone.
    let mut p = r.clone();
    p.state = 8;
    p.lcm_state = 0;
    let mut q = r.clone();
    q.id = 8;
    q.resched = false;
    let o = run(&hs, &sys(), &[p, q], &PlaceConfig::default());
    assert_eq!(placed(&o), vec![(7, 1)]);
    // Pending and resched VMs share one pass and its accounting.
    let o = run(
        &hs,
        &sys(),
        &[r, VmSpec::pending(1, 0.1, 64)],
        &PlaceConfig::default(),
    );
    assert_eq!(placed(&o), vec![(1, 1), (7, 2)]);
}

#[test]
fn reasons_combine_groups_in_check_order() {
    let mut hs = hosts(6);
    hs[0].state = 4;
    hs[1].cluster_id = 100;
    hs[2].template = vec![("CPUSPEED".into(), "100".into())];
    hs[3].cpu_usage = 790;
    hs[4].mem_usage = hs[4].max_mem - 1024;
    hs[5].state = 3;
    let mut v = VmSpec::pending(7, 0.5, 4096);
    v.requirements = "CPUSPEED > 1000".into();
    let o = run(&hs, &sys(), &[v], &PlaceConfig::default());
    assert_eq!(
        message(&o, 7),
        "No host fits VM 7: 2 of 6 hosts are not schedulable (DISABLED, ERROR) (hosts 0, 5); \
         1 fails AUTOMATIC_REQUIREMENTS \"(CLUSTER_ID = 0) & !(PIN_POLICY = PINNED)\" (host 1); \
         1 fails SCHED_REQUIREMENTS \"CPUSPEED > 1000\" (host 2); \
         1 lacks CPU (needs 50, best free 10) (host 3); \
         1 lacks memory (needs 4194304 KB, best free 1024 KB) (host 4)"
    );
    let o = run(&[], &sys(), &vms(0..1), &PlaceConfig::default());
    assert_eq!(message(&o, 0), "No host fits VM 0: there are no hosts");
}

#[test]
fn bad_expressions_are_reported() {
    let mut v = VmSpec::pending(3, 0.1, 64);
    v.requirements = "CPUSPEED >".into();
    let mut w = VmSpec::pending(4, 0.1, 64);
    w.rank = "FREE_CPU +* 2".into();
    let o = run(
        &hosts(1),
        &sys(),
        &[v, w, VmSpec::pending(5, 0.1, 64)],
        &PlaceConfig::default(),
    );
    assert_eq!(
        message(&o, 3),
        "Cannot schedule VM 3: SCHED_REQUIREMENTS \"CPUSPEED >\" does not parse: \
         unexpected end of expression, expected a value at column 11"
    );
    assert!(message(&o, 4).contains("SCHED_RANK \"FREE_CPU +* 2\" does not parse"));
    assert_eq!(placed(&o), vec![(5, 0)]);
}

#[test]
fn requirements_reading_live_figures_are_reevaluated() {
    let mut v = vms(0..3);
    for vm in &mut v {
        vm.requirements = "RUNNING_VMS < 1".into();
    }
    let o = run(&hosts(2), &sys(), &v, &policy(HostPolicy::Packing));
    assert_eq!(placed(&o), vec![(0, 0), (1, 1)]);
    assert!(message(&o, 2).contains("2 of 2 hosts fail SCHED_REQUIREMENTS"));
}

#[test]
fn other_vms_are_ignored() {
    let mut running = VmSpec::pending(1, 0.1, 64);
    running.state = 3;
    running.lcm_state = 3;
    let mut hold = VmSpec::pending(2, 0.1, 64);
    hold.state = 2;
    let o = run(&hosts(1), &sys(), &[running, hold], &PlaceConfig::default());
    assert_eq!(o, Outcome::default());
}

/// A mixed cloud: whatever the pass decides never overcommits a host, never breaks a
/// requirement, and places a VM only when it leaves no fitting host unused that ranks higher
/// at that moment (checked by replaying the decisions with plain loops).
#[test]
fn invariants_on_a_mixed_cloud() {
    use crate::expr::MapResolver;
    let hs: Vec<HostSpec> = (0..40)
        .map(|i| {
            let mut h = HostSpec::new(i).attr("RACK", i % 3);
            h.cluster_id = i % 2;
            h.max_cpu = 200 + (i % 4) * 100;
            h.running_vms = i % 3;
            if i % 11 == 5 {
                h.state = 4;
            }
            h
        })
        .collect();
    let mut ds = DsSpec::system(0);
    ds.clusters = vec![0, 1];
    let v: Vec<VmSpec> = (0..300)
        .map(|i| {
            let mut v = VmSpec::pending(i, [0.5, 1.0, 1.5][(i % 3) as usize], 256);
            v.automatic_requirements = format!("CLUSTER_ID = {}", i % 2);
            v.requirements = match i % 4 {
                0 => "RACK != 1".into(),
                1 => "RUNNING_VMS < 6".into(),
                _ => String::new(),
            };
            v.user_priority = Some(i % 5);
            v
        })
        .collect();
    let o = run(&hs, &[ds], &v, &PlaceConfig::default());
    assert!(!o.decisions.is_empty() && !o.unplaced.is_empty());
    // Replay: usage and running VMs per host, in decision order.
    let mut cpu: Vec<i64> = hs.iter().map(|h| h.cpu_usage).collect();
    let mut running: Vec<i64> = hs.iter().map(|h| h.running_vms).collect();
    for d in &o.decisions {
        let vm = v.iter().find(|x| x.id == d.vm_id).unwrap();
        let need = (vm.cpu * 100.0).round() as i64;
        let fits = |h: &HostSpec, cpu: &[i64], running: &[i64]| {
            let rack = (h.id % 3).to_string();
            let cluster = h.cluster_id.to_string();
            let rv = running[h.id as usize].to_string();
            let pairs = [
                ("RACK", rack.as_str()),
                ("CLUSTER_ID", cluster.as_str()),
                ("RUNNING_VMS", rv.as_str()),
            ];
            let ok = |text: &str| {
                let r = Requirement::parse(text).unwrap();
                r.eval(&MapResolver::new(r.vars(), &pairs))
            };
            h.state == 2
                && h.max_cpu - cpu[h.id as usize] >= need
                && ok(&vm.automatic_requirements)
                && ok(&vm.requirements)
        };
        let chosen = &hs[d.host_id as usize];
        assert!(
            fits(chosen, &cpu, &running),
            "VM {} on host {}",
            d.vm_id,
            d.host_id
        );
        // Striping: no fitting host had fewer running VMs (ties: lower id).
        for h in hs.iter().filter(|h| fits(h, &cpu, &running)) {
            let (a, b) = (running[h.id as usize], running[chosen.id as usize]);
            assert!(
                a > b || (a == b && h.id >= chosen.id),
                "VM {}: host {} beat {}",
                d.vm_id,
                h.id,
                chosen.id
            );
        }
        cpu[chosen.id as usize] += need;
        running[chosen.id as usize] += 1;
    }
    for h in &hs {
        assert!(
            cpu[h.id as usize] <= h.max_cpu,
            "host {} overcommitted",
            h.id
        );
    }
    let order: Vec<(i64, i64)> = o
        .decisions
        .iter()
        .map(|d| {
            let vm = v.iter().find(|x| x.id == d.vm_id).unwrap();
            (-vm.user_priority.unwrap(), vm.id)
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "decisions follow USER_PRIORITY, then id"
    );
}

#[test]
fn hosts_that_do_not_see_a_shared_datastore_are_passed_over_with_the_reason() {
    // Host 0 sees the system datastore 0 only; host 1 sees 0 and the image datastore 101;
    // host 2 never reported (a dummy host): not limited.
    let hs = vec![
        HostSpec::new(0)
            .attr("SHARED_DS", "0")
            .attr("SHARED_DS_MISSING", "101")
            .attr(
                "SHARED_DS_ERROR",
                "101: /var/lib/one/datastores/101 does not exist on this host",
            ),
        HostSpec::new(1).attr("SHARED_DS", "0 101"),
    ];
    let mut vm = VmSpec::pending(0, 0.1, 64);
    vm.image_disks = vec![(101, "shared".into())];
    let o = run(
        &hs,
        &sys(),
        std::slice::from_ref(&vm),
        &PlaceConfig::default(),
    );
    assert_eq!(placed(&o), vec![(0, 1)]);
    // Only host 0: the VM waits, saying why.
    let o = run(&hs[..1], &sys(), &[vm.clone()], &PlaceConfig::default());
    assert_eq!(
        message(&o, 0),
        "No host fits VM 0: 1 of 1 host does not see the shared image datastore of the VM's \
         disks: datastore 101 (/var/lib/one/datastores/101 does not exist on this host) (host 0)"
    );
    // A disk of a `local` image datastore needs nothing of the host.
    vm.image_disks = vec![(101, "local".into())];
    let o = run(&hs[..1], &sys(), &[vm], &PlaceConfig::default());
    assert_eq!(placed(&o), vec![(0, 0)]);
    // The system datastore itself.
    let blind = vec![HostSpec::new(3).attr("SHARED_DS", "")];
    let o = run(&blind, &sys(), &vms(0..1), &PlaceConfig::default());
    assert_eq!(
        message(&o, 0),
        "No host fits VM 0: 1 of 1 host does not see the shared system datastore: datastore 0 \
         (not reported by its agent) (host 3)"
    );
    let dummy = vec![HostSpec::new(4)];
    let o = run(&dummy, &sys(), &vms(0..1), &PlaceConfig::default());
    assert_eq!(placed(&o), vec![(0, 4)]);
}

#[test]
fn a_local_system_datastore_needs_no_shared_image_datastore() {
    // Host 0 sees no image datastore; the VM's disk is in the shared image datastore 101.
    let hs = vec![
        HostSpec::new(0)
            .attr("SHARED_DS", "0")
            .attr("SHARED_DS_MISSING", "101"),
    ];
    let mut vm = VmSpec::pending(0, 0.1, 64);
    vm.image_disks = vec![(101, "shared".into())];
    // With a host-local system datastore beside the shared one, the VM goes there: its
    // image is copied to the host through the byte stream.
    let mut local = DsSpec::system(100);
    local.shared = false;
    let o = run(
        &hs,
        &[DsSpec::system(0), local],
        std::slice::from_ref(&vm),
        &PlaceConfig::default(),
    );
    let d: Vec<(i64, i64, i64)> = o
        .decisions
        .iter()
        .map(|d| (d.vm_id, d.host_id, d.ds_id))
        .collect();
    assert_eq!(d, vec![(0, 0, 100)]);
    // Only the shared one: the VM waits, saying why.
    let o = run(
        &hs,
        &sys(),
        std::slice::from_ref(&vm),
        &PlaceConfig::default(),
    );
    assert!(
        message(&o, 0).contains("does not see the shared image datastore"),
        "{}",
        message(&o, 0)
    );
}

#[test]
fn hosts_without_a_nics_network_driver_are_passed_over_with_the_reason() {
    // Host 0's kernel cannot make VLAN interfaces; host 1 serves 802.1Q; host 2 never
    // reported (a dummy host): not limited.
    let no_vlan = HostSpec::new(0)
        .attr("NETWORK_DRIVERS", "dummy bridge vxlan fw")
        .attr("NETWORK_DRIVERS_MISSING", "802.1Q")
        .attr(
            "NETWORK_DRIVERS_ERROR",
            "802.1Q: the kernel cannot make 802.1Q VLAN interfaces (8021q): Unknown device type",
        );
    let hs = vec![
        no_vlan.clone(),
        HostSpec::new(1).attr("NETWORK_DRIVERS", "dummy bridge 802.1Q vxlan fw"),
    ];
    let mut vm = VmSpec::pending(0, 0.1, 64);
    vm.nics = vec!["bridge".into(), "802.1Q".into()];
    let o = run(
        &hs,
        &sys(),
        std::slice::from_ref(&vm),
        &PlaceConfig::default(),
    );
    assert_eq!(placed(&o), vec![(0, 1)]);
    let o = run(
        &hs[..1],
        &sys(),
        std::slice::from_ref(&vm),
        &PlaceConfig::default(),
    );
    assert!(placed(&o).is_empty());
    assert_eq!(
        message(&o, 0),
        "No host fits VM 0: 1 of 1 host cannot serve the network driver of the VM's NICs: \
         802.1Q (the kernel cannot make 802.1Q VLAN interfaces (8021q): Unknown device type) \
         (host 0)"
    );
    // NICs of drivers the host serves (and `dummy`, which needs nothing) fit.
    vm.nics = vec!["vxlan".into(), "dummy".into(), "".into()];
    let o = run(
        &hs[..1],
        &sys(),
        std::slice::from_ref(&vm),
        &PlaceConfig::default(),
    );
    assert_eq!(placed(&o), vec![(0, 0)]);
    vm.nics = vec!["802.1Q".into()];
    let o = run(&[HostSpec::new(2)], &sys(), &[vm], &PlaceConfig::default());
    assert_eq!(placed(&o), vec![(0, 2)]);
}
