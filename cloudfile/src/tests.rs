//! Unit tests across the crate: parsing, references, cycles and planning against a cloud
//! snapshot built by hand (no oned needed).

use crate::export::{ExportOptions, build, write};
use crate::model::*;
use crate::plan::{Action, PlanOptions, plan};
use crate::source::Format;
use crate::{Live, LoadOptions, load_str};
use oca::{Template, Vector};

fn opts() -> LoadOptions {
    LoadOptions {
        applier: "oneadmin".into(),
        ..LoadOptions::default()
    }
}

pub(crate) fn yaml(text: &str) -> Result<CloudFile, crate::Diags> {
    load_str("cloud.yaml", text, Format::Yaml, &opts())
}

const LAB: &str = r#"
cloud: lab
variables:
  count: 3
environments:
  small:
    variables: {count: 1}
    networks:
      net:
        template: {DNS: 9.9.9.9}
clusters:
  lab: {}
host_groups:
  compute:
    cluster: lab
    im_mad: dummy
    template: {ROLE: compute}
    hosts: [h1, h2]
  edge:
    im_mad: dummy
    hosts: [{name: h3, template: {RACK: r2}}]
networks:
  net:
    clusters: [default, lab]
    template: {VN_MAD: dummy, BRIDGE: br0, DNS: 1.1.1.1}
    address_ranges:
      - {TYPE: IP4, IP: 10.0.0.10, SIZE: 50}
images:
  data:
    template: {TYPE: DATABLOCK, SIZE: 16}
templates:
  web:
    template:
      CPU: 0.1
      MEMORY: 64
      DISK: {IMAGE: data}
      NIC: {NETWORK: net}
vms:
  web:
    template: web
    count: ${count}
groups:
  devs:
    quotas:
      vm: {VMS: 10}
users:
  alice:
    group: devs
    password: {env: ONECLOUD_TEST_ALICE}
acls:
  - "@devs VM+IMAGE/* CREATE"
"#;

fn keys(f: &CloudFile) -> Vec<String> {
    f.objects.iter().map(|d| d.key.to_string()).collect()
}

fn pos_of(f: &CloudFile, k: &str) -> usize {
    keys(f)
        .iter()
        .position(|x| x == k)
        .unwrap_or_else(|| panic!("{k} not in {:?}", keys(f)))
}

#[test]
fn reads_a_cloud_file_in_dependency_order() {
    let f = yaml(LAB).unwrap();
    assert_eq!(f.name, "lab");
    assert_eq!(f.objects.len(), 12, "{:?}", keys(&f));
    // Dependencies first.
    assert!(pos_of(&f, "cluster lab") < pos_of(&f, "host h1"));
    assert!(pos_of(&f, "image oneadmin/data") < pos_of(&f, "template oneadmin/web"));
    assert!(pos_of(&f, "network oneadmin/net") < pos_of(&f, "template oneadmin/web"));
    assert!(pos_of(&f, "template oneadmin/web") < pos_of(&f, "VM set oneadmin/web"));
    assert!(pos_of(&f, "group devs") < pos_of(&f, "user alice"));
    // Host groups are blueprints: the group's settings on each host, the host's own win.
    let Spec::Host(h3) = &f.get(&ObjKey::new(Kind::Host, "h3")).unwrap().spec else {
        panic!()
    };
    assert_eq!(h3.template.get("RACK"), Some("r2"));
    assert_eq!(h3.cluster, None);
    let Spec::Host(h1) = &f.get(&ObjKey::new(Kind::Host, "h1")).unwrap().spec else {
        panic!()
    };
    assert_eq!(
        (h1.cluster.as_deref(), h1.template.get("ROLE")),
        (Some("lab"), Some("compute"))
    );
    let Spec::Vm(vm) = &f
        .get(&ObjKey::owned(Kind::Vm, "oneadmin", "web"))
        .unwrap()
        .spec
    else {
        panic!()
    };
    assert_eq!(vm.count, 3);
}

#[test]
fn environments_and_command_line_variables() {
    let mut o = opts();
    o.env = Some("small".into());
    let f = load_str("c.yaml", LAB, Format::Yaml, &o).unwrap();
    let Spec::Vm(vm) = &f
        .get(&ObjKey::owned(Kind::Vm, "oneadmin", "web"))
        .unwrap()
        .spec
    else {
        panic!()
    };
    assert_eq!(vm.count, 1);
    let Spec::Network(n) = &f
        .get(&ObjKey::owned(Kind::Network, "oneadmin", "net"))
        .unwrap()
        .spec
    else {
        panic!()
    };
    // The override replaced DNS and kept the rest.
    assert_eq!(n.template.get("DNS"), Some("9.9.9.9"));
    assert_eq!(n.template.get("VN_MAD"), Some("dummy"));
    o.vars = vec![("count".into(), "5".into())];
    let f = load_str("c.yaml", LAB, Format::Yaml, &o).unwrap();
    let Spec::Vm(vm) = &f
        .get(&ObjKey::owned(Kind::Vm, "oneadmin", "web"))
        .unwrap()
        .spec
    else {
        panic!()
    };
    assert_eq!(vm.count, 5);
    o.env = Some("huge".into());
    let e = load_str("c.yaml", LAB, Format::Yaml, &o).unwrap_err();
    assert!(
        e.to_string()
            .contains("no environment \"huge\"; the file declares: small"),
        "{e}"
    );
}

#[test]
fn toml_reads_the_same() {
    let toml = r#"
cloud = "lab"

[clusters.lab]

[host_groups.compute]
cluster = "lab"
im_mad = "dummy"
hosts = ["h1"]
template = { ROLE = "compute" }

[networks.net]
template = { VN_MAD = "dummy", BRIDGE = "br0" }
address_ranges = [ { TYPE = "IP4", IP = "10.0.0.10", SIZE = 50 } ]

[templates.web.template]
CPU = 0.1
MEMORY = 64
NIC = { NETWORK = "net" }

[vms.web]
template = "web"
count = 2
"#;
    let f = load_str("c.toml", toml, Format::Toml, &opts()).unwrap();
    assert_eq!(f.objects.len(), 5, "{:?}", keys(&f));
    let Spec::Template(t) = &f
        .get(&ObjKey::owned(Kind::Template, "oneadmin", "web"))
        .unwrap()
        .spec
    else {
        panic!()
    };
    assert_eq!(t.template.get("CPU"), Some("0.1"));
    assert_eq!(
        t.template.vector("NIC").unwrap().get("NETWORK"),
        Some("net")
    );
    let e = load_str(
        "c.toml",
        "cloud = \"x\"\n[clusters.n]\ntemplat = {}\n",
        Format::Toml,
        &opts(),
    )
    .unwrap_err();
    assert_eq!(e.items.len(), 1, "{e}");
    assert_eq!(e.items[0].pos.line, 3, "{e}");
    assert!(e.to_string().contains("did you mean \"template\""), "{e}");
}

#[test]
fn unknown_keys_are_refused_with_file_and_line() {
    let e = yaml(
        "cloud: lab\nnetworks:\n  net:\n    template: {VN_MAD: dummy}\n    adress_ranges: []\n",
    )
    .unwrap_err();
    let s = e.to_string();
    assert!(
        s.starts_with("cloud.yaml:5:5: unknown key \"adress_ranges\" in network net"),
        "{s}"
    );
    assert!(s.contains("did you mean \"address_ranges\""), "{s}");
    let e = yaml("cloud: lab\nnetwork: {}\n").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cloud.yaml:2:1: unknown key \"network\""),
        "{e}"
    );
    // Inside a template, attributes are free.
    yaml("cloud: lab\ntemplates:\n  t:\n    template: {ANYTHING: 1, X: {Y: 2}}\n").unwrap();
    // But templates nest one level, as OpenNebula's.
    let e = yaml("cloud: lab\ntemplates:\n  t:\n    template: {X: {Y: {Z: 1}}}\n").unwrap_err();
    assert!(e.to_string().contains("nest one level"), "{e}");
    // The marker and the name are onecloud's.
    let e =
        yaml("cloud: lab\ntemplates:\n  t:\n    template: {ONECLOUD: x, NAME: y}\n").unwrap_err();
    assert_eq!(e.items.len(), 2, "{e}");
    assert!(e.to_string().contains("onecloud's marker"), "{e}");
}

#[test]
fn missing_references_are_refused() {
    let e = yaml(
        "cloud: lab\ntemplates:\n  web:\n    template: {NIC: {NETWORK: nope}}\nvms:\n  web:\n    template: ghost\n",
    )
    .unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("cloud.yaml:4:15: template oneadmin/web refers to network oneadmin/nope, which the file does not declare"),
        "{s}"
    );
    assert!(
        s.contains("cloud.yaml:7:15: VM set oneadmin/web refers to template oneadmin/ghost"),
        "{s}"
    );
    // Listed as external, or one of OpenNebula's own: fine.
    yaml("cloud: lab\nexternal:\n  networks: [nope]\ntemplates:\n  web:\n    template: {NIC: {NETWORK: nope}}\nimages:\n  i: {datastore: default, template: {SIZE: 1}}\n")
        .unwrap();
    // `owner/name` refers to another user's object.
    let e = yaml("cloud: lab\nvms:\n  web:\n    template: alice/web\n").unwrap_err();
    assert!(e.to_string().contains("template alice/web"), "{e}");
}

#[test]
fn cycles_are_refused() {
    let e = yaml(
        "cloud: lab\nclusters:\n  a:\n    depends_on: [cluster/b]\n  b:\n    depends_on: [cluster/c]\n  c:\n    depends_on: [cluster/a]\n  d: {}\n",
    )
    .unwrap_err();
    let s = e.to_string();
    assert!(s.contains("dependency cycle: cluster"), "{s}");
    assert!(
        s.contains("cluster a") && s.contains("cluster b") && s.contains("cluster c"),
        "{s}"
    );
    assert!(!s.contains("cluster d"), "{s}");
}

#[test]
fn duplicates_are_refused() {
    let e = yaml(
        "cloud: lab\nhost_groups:\n  a: {im_mad: dummy, hosts: [h1]}\n  b: {im_mad: dummy, hosts: [h2, h1]}\n",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("cloud.yaml:4:34: host h1 is listed twice (host groups a and b"),
        "{e}"
    );
    // `web` and `oneadmin/web` are the same VM set when oneadmin applies.
    let e = yaml(
        "cloud: lab\nexternal: {templates: [t]}\nvms:\n  web: {template: t}\n  oneadmin/web: {template: t}\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("declared twice"), "{e}");
    let e = yaml("cloud: lab\nclusters:\n  a: {}\n  a: {}\n").unwrap_err();
    assert!(e.to_string().contains("duplicate key"), "{e}");
}

#[test]
fn secrets_are_never_in_the_file() {
    let e = yaml("cloud: lab\nusers:\n  bob:\n    password: hunter2\n").unwrap_err();
    assert!(
        e.to_string().contains("never written in the cloud file"),
        "{e}"
    );
    let f = yaml("cloud: lab\nusers:\n  bob:\n    password: {file: secrets/bob}\n").unwrap();
    let Spec::User(u) = &f.objects[0].spec else {
        panic!()
    };
    assert_eq!(u.password, Some(Secret::File("secrets/bob".into())));
}

#[test]
fn acl_rules_with_names() {
    let f = yaml(
        "cloud: lab\ngroups: {devs: {}}\nusers: {alice: {password: {env: X}}}\nclusters: {lab: {}}\nexternal: {networks: [net]}\nacls:\n  - \"@devs VM+IMAGE/* CREATE\"\n  - \"#alice NET/#net USE\"\n  - \"@devs HOST/%lab MANAGE *\"\n  - \"#5 NET/@1 USE\"\n",
    )
    .unwrap();
    let acls: Vec<&AclSpec> = f
        .objects
        .iter()
        .filter_map(|d| match &d.spec {
            Spec::Acl(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(acls.len(), 4);
    assert!(
        acls.iter()
            .any(|a| a.resource == AclSel::Object(ObjKey::owned(Kind::Network, "oneadmin", "net")))
    );
    assert!(acls.iter().any(|a| a.zone == one_proto::acl::ALL_ID));
    let e = yaml("cloud: lab\nacls:\n  - \"@devs VM+NET/#x USE\"\n").unwrap_err();
    assert!(e.to_string().contains("exactly one resource type"), "{e}");
    let e = yaml("cloud: lab\nacls:\n  - \"@devs VM/* FLY\"\n").unwrap_err();
    assert!(e.to_string().contains("unknown ACL right"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Planning against a snapshot built by hand.

fn tmpl(s: &str) -> Template {
    Template::parse(s).unwrap()
}

fn own(uid: i64, uname: &str) -> oca::Ownership {
    oca::Ownership {
        uid,
        gid: 0,
        uname: uname.into(),
        gname: "oneadmin".into(),
    }
}

fn builtin_live() -> Live {
    let mut l = Live::default();
    l.users.push(oca::User {
        id: 0,
        name: "oneadmin".into(),
        groups: vec![0],
        ..Default::default()
    });
    for (id, n) in [(0, "oneadmin"), (1, "users")] {
        l.groups.push(oca::Group {
            id,
            name: n.into(),
            ..Default::default()
        });
    }
    l.clusters.push(oca::Cluster {
        id: 0,
        name: "default".into(),
        ..Default::default()
    });
    for (id, n) in [(0, "system"), (1, "default"), (2, "files")] {
        l.datastores.push(oca::Datastore {
            id,
            name: n.into(),
            clusters: vec![0],
            ..Default::default()
        });
    }
    l.reindex();
    l
}

pub(crate) const SMALL: &str = r#"
cloud: lab
host_groups:
  compute: {im_mad: dummy, template: {ROLE: compute}, hosts: [h1]}
networks:
  net:
    template: {VN_MAD: dummy, DNS: 1.1.1.1}
    address_ranges: [{TYPE: IP4, IP: 10.0.0.10, SIZE: 50}]
templates:
  web:
    template: {CPU: 0.1, MEMORY: 64, NIC: {NETWORK: net}}
vms:
  web: {template: web, count: 2}
"#;

/// The cloud after applying SMALL (markers included).
pub(crate) fn small_live(f: &CloudFile) -> Live {
    let mut l = builtin_live();
    l.hosts.push(oca::Host {
        id: 0,
        name: "h1".into(),
        state: 2,
        im_mad: "dummy".into(),
        vm_mad: "dummy".into(),
        cluster_id: 0,
        cluster: "default".into(),
        template: tmpl("ROLE=compute\nONECLOUD=lab\nARCH=x86_64\nHYPERVISOR=dummy\nCPUSPEED=3200"),
        ..Default::default()
    });
    let mut ar = Vector::new();
    for (k, v) in [
        ("AR_ID", "0"),
        ("IP", "10.0.0.10"),
        ("MAC", "02:00:0a:00:00:0a"),
        ("SIZE", "50"),
        ("TYPE", "IP4"),
        ("IP_END", "10.0.0.59"),
        ("USED_LEASES", "0"),
    ] {
        ar.set(k, v);
    }
    l.networks.push(oca::VirtualNetwork {
        id: 0,
        owner: own(0, "oneadmin"),
        name: "net".into(),
        clusters: vec![0],
        template: tmpl(
            "VN_MAD=dummy\nDNS=1.1.1.1\nBRIDGE=onebr0\nBRIDGE_TYPE=linux\nSECURITY_GROUPS=0\nONECLOUD=lab",
        ),
        address_ranges: vec![oca::AddressRange {
            id: 0,
            attrs: ar,
            leases: Vec::new(),
        }],
        ..Default::default()
    });
    l.templates.push(oca::VmTemplate {
        id: 0,
        owner: own(0, "oneadmin"),
        name: "web".into(),
        template: tmpl("CPU=0.1\nMEMORY=64\nNIC=[NETWORK=net]\nONECLOUD=lab"),
        ..Default::default()
    });
    let Spec::Vm(vs) = &f
        .get(&ObjKey::owned(Kind::Vm, "oneadmin", "web"))
        .unwrap()
        .spec
    else {
        panic!()
    };
    let digest = crate::plan::vm_digest(f, vs);
    for id in [0, 1] {
        l.vms.push(vm(id, &format!("web-{id}"), &digest));
    }
    l.reindex();
    l
}

fn vm(id: i64, name: &str, digest: &str) -> oca::Vm {
    oca::Vm {
        id,
        name: name.into(),
        owner: own(0, "oneadmin"),
        state: 3,
        lcm_state: 3,
        user_template: tmpl(&format!(
            "ONECLOUD_VM=[CLOUD=lab,SET=oneadmin/web,DIGEST={digest}]"
        )),
        ..Default::default()
    }
}

fn actions(p: &crate::Plan) -> Vec<(String, Action)> {
    p.changes
        .iter()
        .map(|c| (format!("{:?} {}", c.kind, c.name), c.action))
        .collect()
}

#[test]
fn plan_of_an_empty_cloud_creates_everything_in_order() {
    let f = yaml(SMALL).unwrap();
    let p = plan(&f, &builtin_live(), PlanOptions::default());
    let a = actions(&p);
    assert_eq!(
        a,
        vec![
            ("Host h1".into(), Action::Create),
            ("Network net".into(), Action::Create),
            ("Template web".into(), Action::Create),
            ("Vm web-0".into(), Action::Create),
            ("Vm web-1".into(), Action::Create),
        ]
    );
    assert_eq!(p.summary.create, 5);
    assert!(p.refusals.is_empty());
}

#[test]
fn plan_of_a_matching_cloud_is_empty() {
    let f = yaml(SMALL).unwrap();
    let p = plan(&f, &small_live(&f), PlanOptions::default());
    assert!(!p.has_changes(), "{}", crate::render::plan_text(&p));
    assert!(p.notes.is_empty(), "{:?}", p.notes);
}

#[test]
fn plan_lists_exactly_what_changed() {
    let f = yaml(
        &SMALL
            .replace("count: 2", "count: 3")
            .replace("SIZE: 50", "SIZE: 100")
            .replace("MEMORY: 64", "MEMORY: 128"),
    )
    .unwrap();
    let live = small_live(&yaml(SMALL).unwrap());
    let p = plan(&f, &live, PlanOptions::default());
    let changed: Vec<_> = p.changes.iter().filter(|c| c.is_change()).collect();
    assert_eq!(changed.len(), 3, "{}", crate::render::plan_text(&p));
    let net = changed.iter().find(|c| c.kind == Kind::Network).unwrap();
    assert_eq!(net.diffs.len(), 1);
    assert_eq!(net.diffs[0].attr, "AR[0]/SIZE");
    assert_eq!(net.diffs[0].new.as_deref(), Some("100"));
    let t = changed.iter().find(|c| c.kind == Kind::Template).unwrap();
    assert_eq!(t.diffs[0].attr, "TEMPLATE/MEMORY");
    let v = changed.iter().find(|c| c.kind == Kind::Vm).unwrap();
    assert_eq!((v.name.as_str(), v.action), ("web-2", Action::Create));
    // The template changed: the two running VMs are out of date, and stay.
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("2 of 2 VMs are out of date")),
        "{:?}",
        p.notes
    );
    let p = plan(
        &f,
        &live,
        PlanOptions {
            replace: true,
            prune: false,
        },
    );
    assert_eq!(p.summary.replace, 2);
}

#[test]
fn hand_made_changes_show_as_removals_and_updates() {
    let f = yaml(SMALL).unwrap();
    let mut live = small_live(&f);
    live.networks[0].template.set("DNS", "8.8.8.8");
    live.networks[0].template.set("BYHAND", "1");
    // Probe attributes of hosts are not the file's business.
    live.hosts[0].template.set("TOTALMEMORY", "1");
    let p = plan(&f, &live, PlanOptions::default());
    let net = p.changes.iter().find(|c| c.kind == Kind::Network).unwrap();
    assert_eq!(net.action, Action::Update);
    let attrs: Vec<(&str, Option<&str>)> = net
        .diffs
        .iter()
        .map(|d| (d.attr.as_str(), d.new.as_deref()))
        .collect();
    assert_eq!(
        attrs,
        [("TEMPLATE/BYHAND", None), ("TEMPLATE/DNS", Some("1.1.1.1"))]
    );
    assert_eq!(p.summary.update, 1);
}

#[test]
fn other_clouds_are_refused_and_unmarked_objects_adopted() {
    let f = yaml(SMALL).unwrap();
    let mut live = small_live(&f);
    live.templates[0].template.set("ONECLOUD", "other");
    live.hosts[0].template.remove("ONECLOUD");
    let p = plan(&f, &live, PlanOptions::default());
    assert_eq!(p.refusals.len(), 1, "{:?}", p.refusals);
    assert!(p.refusals[0].contains("managed by the cloud file \"other\""));
    let h = p.changes.iter().find(|c| c.kind == Kind::Host).unwrap();
    assert_eq!(h.action, Action::Adopt);
    assert!(h.diffs.is_empty());
}

#[test]
fn counts_drop_newest_first_and_prune_deletes_what_left_the_file() {
    let f = yaml(&SMALL.replace("count: 2", "count: 1")).unwrap();
    let mut live = small_live(&yaml(SMALL).unwrap());
    // A managed network that left the file, and one made by hand.
    live.networks.push(oca::VirtualNetwork {
        id: 7,
        owner: own(0, "oneadmin"),
        name: "old".into(),
        template: tmpl("VN_MAD=dummy\nONECLOUD=lab"),
        ..Default::default()
    });
    live.networks.push(oca::VirtualNetwork {
        id: 8,
        owner: own(0, "oneadmin"),
        name: "byhand".into(),
        template: tmpl("VN_MAD=dummy"),
        ..Default::default()
    });
    live.reindex();
    let p = plan(&f, &live, PlanOptions::default());
    let deleted: Vec<_> = p
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| (c.kind, c.id))
        .collect();
    assert_eq!(deleted, [(Kind::Vm, Some(1))], "the newest VM goes");
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("network old (id 7)") && n.contains("--prune"))
    );
    assert!(!p.notes.iter().any(|n| n.contains("byhand")));
    let p = plan(
        &f,
        &live,
        PlanOptions {
            prune: true,
            replace: false,
        },
    );
    let deleted: Vec<_> = p
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| (c.kind, c.id))
        .collect();
    // VMs go before networks; the hand-made network stays.
    assert_eq!(deleted, [(Kind::Vm, Some(1)), (Kind::Network, Some(7))]);
}

#[test]
fn acl_rules_match_by_content() {
    let f = yaml("cloud: lab\nacls:\n  - \"@users VM/* CREATE\"\n").unwrap();
    let mut live = builtin_live();
    let p = plan(&f, &live, PlanOptions::default());
    assert_eq!(p.changes[0].action, Action::Create);
    let [user, resource, rights, zone] =
        one_proto::acl::AclRule::parse_rule_string("@1 VM/* CREATE")
            .unwrap()
            .to_hex();
    live.acls.push(oca::AclRule {
        id: 9,
        user,
        resource,
        rights,
        zone,
        string: String::new(),
    });
    let p = plan(&f, &live, PlanOptions::default());
    assert_eq!(
        (p.changes[0].action, p.changes[0].id),
        (Action::Nothing, Some(9))
    );
}

#[test]
fn export_reads_back_as_nothing_to_do() {
    let f = yaml(SMALL).unwrap();
    let mut live = small_live(&f);
    // As a cloud made by hand: no markers.
    for h in &mut live.hosts {
        h.template.remove("ONECLOUD");
    }
    for n in &mut live.networks {
        n.template.remove("ONECLOUD");
    }
    live.templates[0].template.remove("ONECLOUD");
    for vm in &mut live.vms {
        vm.user_template = Template::default();
        vm.template.set("TEMPLATE_ID", "0");
    }
    let opts = ExportOptions {
        name: "exported".into(),
        user: None,
        cluster: None,
        adopt: true,
        format: Format::Yaml,
    };
    let (doc, _, messages) = build(&live, "oneadmin", &opts).unwrap();
    assert!(messages.is_empty(), "{messages:?}");
    for format in [Format::Yaml, Format::Toml] {
        let text = write(&doc, format).unwrap();
        let back = load_str("exported", &text, format, &self::opts()).unwrap();
        assert_eq!(back.name, "exported");
        // Before marking, everything is adopted with no attribute to change.
        let p = plan(&back, &live, PlanOptions::default());
        assert!(p.refusals.is_empty(), "{:?}", p.refusals);
        for c in p.changes.iter().filter(|c| c.kind != Kind::Vm) {
            assert!(c.diffs.is_empty(), "{format:?}: {c:?}\n{text}");
            assert!(
                matches!(c.action, Action::Adopt | Action::Create),
                "{format:?}: {c:?}"
            );
        }
        // VMs: two in one set, created from the template, to be marked.
        assert_eq!(
            p.changes.iter().filter(|c| c.kind == Kind::Vm).count(),
            2,
            "{text}"
        );
    }
}

#[test]
fn export_of_one_user_names_what_it_uses_as_external() {
    let f = yaml(SMALL).unwrap();
    let mut live = small_live(&f);
    live.users.push(oca::User {
        id: 5,
        name: "bob".into(),
        gid: 1,
        groups: vec![1],
        password: "$argon2id$secret-hash".into(),
        template: tmpl("TOKEN_PASSWORD=abc\nEMAIL=bob@example"),
        ..Default::default()
    });
    live.templates.push(oca::VmTemplate {
        id: 3,
        owner: own(5, "bob"),
        name: "bobs".into(),
        template: tmpl("CPU=1\nMEMORY=64\nNIC=[NETWORK=net,NETWORK_UNAME=oneadmin]"),
        ..Default::default()
    });
    live.reindex();
    let opts = ExportOptions {
        name: "bob".into(),
        user: Some("bob".into()),
        cluster: None,
        adopt: false,
        format: Format::Yaml,
    };
    let (doc, _, _) = build(&live, "oneadmin", &opts).unwrap();
    let text = write(&doc, Format::Yaml).unwrap();
    assert!(
        !text.contains("argon2") && !text.contains("TOKEN_PASSWORD"),
        "{text}"
    );
    assert!(text.contains("bob/bobs:"), "{text}");
    assert!(!text.contains("h1"), "hosts are not bob's: {text}");
    let back = load_str("exported", &text, Format::Yaml, &self::opts()).unwrap();
    assert!(
        back.external
            .contains(&ObjKey::owned(Kind::Network, "oneadmin", "net")),
        "{text}"
    );
    assert!(back.get(&ObjKey::new(Kind::User, "bob")).is_some());
}

#[test]
fn datastores_are_created_in_their_clusters_and_compared_by_template() {
    let text = "cloud: lab\nclusters:\n  edge: {}\ndatastores:\n  fast:\n    clusters: [default, edge]\n    template: {TYPE: IMAGE_DS, DS_MAD: fs, TM_MAD: shared}\n";
    let f = yaml(text).unwrap();
    let mut live = builtin_live();
    let p = plan(&f, &live, PlanOptions::default());
    assert_eq!(
        actions(&p),
        [
            ("Cluster edge".into(), Action::Create),
            ("Datastore fast".into(), Action::Create)
        ]
    );
    let ds = &p.changes[1];
    assert_eq!(ds.diffs[0].attr, "clusters");
    assert_eq!(ds.diffs[0].new.as_deref(), Some("default, edge"));
    // As apply leaves it: marked, in both clusters, with what the drivers add.
    live.clusters.push(oca::Cluster {
        id: 100,
        name: "edge".into(),
        template: tmpl("ONECLOUD=lab"),
        ..Default::default()
    });
    live.datastores.push(oca::Datastore {
        id: 100,
        name: "fast".into(),
        clusters: vec![0, 100],
        template: tmpl("TYPE=IMAGE_DS\nDS_MAD=fs\nTM_MAD=shared\nONECLOUD=lab"),
        ..Default::default()
    });
    live.reindex();
    let p = plan(&f, &live, PlanOptions::default());
    assert!(!p.has_changes(), "{}", crate::render::plan_text(&p));
    // Out of a cluster by hand, and a driver changed: both show.
    live.datastores[3].clusters = vec![0];
    live.datastores[3].template.set("TM_MAD", "ssh");
    live.reindex();
    let p = plan(&f, &live, PlanOptions::default());
    let ds = p
        .changes
        .iter()
        .find(|c| c.kind == Kind::Datastore)
        .unwrap();
    assert_eq!(ds.action, Action::Update);
    let attrs: Vec<&str> = ds.diffs.iter().map(|d| d.attr.as_str()).collect();
    assert_eq!(attrs, ["clusters", "TEMPLATE/TM_MAD"], "{:?}", ds.diffs);
}

#[test]
fn a_directory_of_cloud_files_reads_as_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a-cloud.yaml"),
        "cloud: lab\nclusters:\n  edge: {}\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("nets")).unwrap();
    std::fs::write(
        dir.path().join("nets/lab.toml"),
        "[networks.net]\nclusters = [\"edge\"]\ntemplate = { VN_MAD = \"dummy\" }\n",
    )
    .unwrap();
    // Hidden files and other files are not cloud files.
    std::fs::write(dir.path().join(".hidden.yaml"), "bogus: 1\n").unwrap();
    std::fs::write(dir.path().join("README.md"), "# not a cloud file\n").unwrap();
    let f = crate::load(dir.path(), &opts()).unwrap();
    assert_eq!(f.name, "lab");
    assert_eq!(keys(&f), ["cluster edge", "network oneadmin/net"]);
    // The same name in two files is refused, naming both places.
    std::fs::write(dir.path().join("b.yaml"), "clusters:\n  edge: {}\n").unwrap();
    let e = crate::load(dir.path(), &opts()).unwrap_err().to_string();
    assert!(
        e.contains("b.yaml:2:3") && e.contains("a-cloud.yaml"),
        "{e}"
    );
}

#[test]
fn quotas_are_matched_by_content_where_the_file_gives_a_limit() {
    let text = "cloud: lab\ngroups:\n  devs:\n    quotas:\n      vm: {VMS: 10}\nusers:\n  bob:\n    group: devs\n    quotas:\n      datastores: {default: {SIZE: 1024}}\n";
    let f = yaml(text).unwrap();
    let mut live = builtin_live();
    live.groups.push(oca::Group {
        id: 100,
        name: "devs".into(),
        template: tmpl("ONECLOUD=lab"),
        ..Default::default()
    });
    live.users.push(oca::User {
        id: 5,
        name: "bob".into(),
        gid: 100,
        groups: vec![100],
        gname: "devs".into(),
        auth_driver: "core".into(),
        enabled: true,
        template: tmpl("ONECLOUD=lab"),
        ..Default::default()
    });
    live.reindex();
    let quota_diffs = |p: &crate::Plan| -> Vec<(String, Action, Vec<String>)> {
        p.changes
            .iter()
            .filter(|c| c.kind == Kind::Quota)
            .map(|c| {
                let d = c
                    .diffs
                    .iter()
                    .map(|d| format!("{}: {:?} -> {:?}", d.attr, d.old, d.new))
                    .collect();
                (c.name.clone(), c.action, d)
            })
            .collect()
    };
    // Not set yet.
    let p = plan(&f, &live, PlanOptions::default());
    assert_eq!(
        quota_diffs(&p),
        [
            (
                "group devs".into(),
                Action::Update,
                vec![r#"VM/VMS: None -> Some("10")"#.into()]
            ),
            (
                "user bob".into(),
                Action::Update,
                vec![r#"DATASTORE[default]/SIZE: None -> Some("1024")"#.into()]
            ),
        ]
    );
    // Set (as OpenNebula writes numbers), with usage and limits the file does not give.
    let mut vm = Vector::new();
    for (k, v) in [("VMS", "10.00"), ("VMS_USED", "3"), ("CPU", "8")] {
        vm.set(k, v);
    }
    live.groups[2].quotas.vm.push(vm);
    let mut ds = Vector::new();
    for (k, v) in [("ID", "1"), ("SIZE", "1024"), ("IMAGES", "5")] {
        ds.set(k, v);
    }
    live.users[1].quotas.datastore.push(ds);
    live.reindex();
    let p = plan(&f, &live, PlanOptions::default());
    assert!(!p.has_changes(), "{}", crate::render::plan_text(&p));
    // Changed by hand: only the limit the file gives shows.
    live.groups[2].quotas.vm[0].set("VMS", "20");
    live.groups[2].quotas.vm[0].set("CPU", "16");
    live.reindex();
    let p = plan(&f, &live, PlanOptions::default());
    assert_eq!(
        quota_diffs(&p),
        [
            (
                "group devs".into(),
                Action::Update,
                vec![r#"VM/VMS: Some("20") -> Some("10")"#.into()]
            ),
            ("user bob".into(), Action::Nothing, vec![]),
        ]
    );
}

#[test]
fn export_of_one_cluster_keeps_to_its_hosts_and_networks() {
    let f = yaml(SMALL).unwrap();
    let mut live = small_live(&f);
    live.clusters.push(oca::Cluster {
        id: 100,
        name: "edge".into(),
        template: tmpl("ONECLOUD=lab"),
        ..Default::default()
    });
    let mut h2 = live.hosts[0].clone();
    (h2.id, h2.name, h2.cluster_id, h2.cluster) = (1, "h2".into(), 100, "edge".into());
    live.hosts.push(h2);
    let mut n2 = live.networks[0].clone();
    (n2.id, n2.name, n2.clusters) = (1, "edge-net".into(), vec![100]);
    live.networks.push(n2);
    live.reindex();
    let opts = ExportOptions {
        name: "lab".into(),
        user: None,
        cluster: Some("edge".into()),
        adopt: false,
        format: Format::Yaml,
    };
    let (doc, _, _) = build(&live, "oneadmin", &opts).unwrap();
    let text = write(&doc, Format::Yaml).unwrap();
    let back = load_str("exported", &text, Format::Yaml, &self::opts()).unwrap();
    let got = keys(&back);
    for k in ["cluster edge", "host h2", "network oneadmin/edge-net"] {
        assert!(got.contains(&k.to_owned()), "{k} missing: {got:?}\n{text}");
    }
    for k in ["host h1", "network oneadmin/net"] {
        assert!(
            !got.contains(&k.to_owned()),
            "{k} is not edge's: {got:?}\n{text}"
        );
    }
    // What the exported objects are is what the cloud has: nothing to do.
    let p = plan(&back, &live, PlanOptions::default());
    assert!(!p.has_changes(), "{}\n{text}", crate::render::plan_text(&p));
    assert!(
        build(
            &live,
            "oneadmin",
            &ExportOptions {
                cluster: Some("nowhere".into()),
                ..opts
            }
        )
        .is_err()
    );
}

#[test]
fn group_admins_are_the_set_the_file_gives_after_the_users() {
    let text =
        "cloud: lab\ngroups:\n  devs:\n    admins: [alice]\nusers:\n  alice: {group: devs}\n";
    let f = yaml(text).unwrap();
    assert!(
        pos_of(&f, "user alice") < pos_of(&f, "group admins devs"),
        "{:?}",
        keys(&f)
    );
    let mut live = builtin_live();
    live.groups.push(oca::Group {
        id: 100,
        name: "devs".into(),
        template: tmpl("ONECLOUD=lab"),
        ..Default::default()
    });
    for (id, name) in [(5, "alice"), (6, "bob")] {
        live.users.push(oca::User {
            id,
            name: name.into(),
            gid: 100,
            groups: vec![100],
            gname: "devs".into(),
            auth_driver: "core".into(),
            enabled: true,
            template: tmpl(if name == "alice" { "ONECLOUD=lab" } else { "" }),
            ..Default::default()
        });
    }
    live.reindex();
    let admins = |live: &Live| {
        let p = plan(&f, live, PlanOptions::default());
        let c = p
            .changes
            .iter()
            .find(|c| c.kind == Kind::GroupAdmins)
            .unwrap()
            .clone();
        let d: Vec<(Option<String>, Option<String>)> = c
            .diffs
            .iter()
            .map(|d| (d.old.clone(), d.new.clone()))
            .collect();
        (
            c.action,
            d,
            p.changes.iter().filter(|c| c.is_change()).count(),
        )
    };
    let (action, diffs, n) = admins(&live);
    assert_eq!(action, Action::Update);
    assert_eq!(n, 1, "only the admins change");
    assert_eq!(diffs, [(Some(String::new()), Some("alice".to_owned()))]);
    live.groups[2].admins = vec![5];
    live.reindex();
    assert_eq!(admins(&live).0, Action::Nothing);
    // An administrator added by hand is removed: the file gives the whole set.
    live.groups[2].admins = vec![5, 6];
    live.reindex();
    let (action, diffs, _) = admins(&live);
    assert_eq!(action, Action::Update);
    assert_eq!(
        diffs,
        [(Some("alice, bob".to_owned()), Some("alice".to_owned()))]
    );
}
