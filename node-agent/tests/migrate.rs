//! Live and cold migration between two namespace "hosts", each with its own libvirtd
//! (tests/hostenv/netns-host.sh --libvirtd), sharing the system datastore directory.
//! Skips, saying why, when the hosts cannot be made (not root, no libvirt).

use one_node_agent::driver::{AgentDriver, DriverContext};
use one_node_agent::libvirt::Libvirt;
use one_node_agent::outbox::{Clock, spawn_writer};
use one_proto::agent::{AgentConfig, DatastoreDir, DomainType};
use one_proto::driver::{DriverError, DriverOp, DriverRequest};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/hostenv/netns-host.sh"
);

struct Host {
    name: String,
    dir: String,
    bridge: String,
    ip: String,
}

impl Host {
    fn up(name: &str, ip: &str, bridge: &str) -> Result<Host, String> {
        let dir = format!("/var/tmp/one-rs-mig-{name}");
        let out = Command::new(SCRIPT)
            .args(["up", name, "--dir", &dir, "--ip", &format!("{ip}/24")])
            .args(["--bridge", bridge, "--libvirtd"])
            .output()
            .map_err(|e| e.to_string())?;
        let host = Host {
            name: name.into(),
            dir,
            bridge: bridge.into(),
            ip: ip.into(),
        };
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(host)
    }

    fn uri(&self) -> String {
        format!("qemu+tcp://{}/system", self.ip)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT)
            .args([
                "down",
                &self.name,
                "--dir",
                &self.dir,
                "--bridge",
                &self.bridge,
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn driver(uri: String, prefix: &str, ds: &str) -> Arc<dyn AgentDriver> {
    let (log, _w) = spawn_writer(tokio::io::sink(), Clock::new());
    Libvirt::open(DriverContext {
        host_id: 0,
        host_name: "h".into(),
        config: AgentConfig {
            libvirt_uri: uri,
            domain_prefix: prefix.into(),
            domain_type: Some(DomainType::Qemu),
            shutdown_timeout_ms: 1000,
            datastores: vec![DatastoreDir {
                id: 0,
                path: ds.into(),
            }],
            ..AgentConfig::default()
        },
        log,
        sim: Default::default(),
        streams: None,
    })
    .unwrap()
}

fn domain_uuid_on(uri: &str, name: &str) -> Option<String> {
    let out = Command::new("virsh")
        .args(["-c", uri, "domuuid", name])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_and_cold_migration_between_two_libvirt_hosts() {
    let pid = std::process::id();
    let n = pid % 200 + 20;
    let bridge = format!("onemig{n}");
    let (a, b) = match (
        Host::up(&format!("mga{n}"), &format!("10.78.{n}.2"), &bridge),
        Host::up(&format!("mgb{n}"), &format!("10.78.{n}.3"), &bridge),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            println!(
                "SKIP: cannot make two libvirt hosts here: {:?} {:?}",
                a.err(),
                b.err()
            );
            return;
        }
    };
    let ds = format!("/var/tmp/one-rs-mig-ds-{pid}");
    // The shared datastore is there (a host never makes a missing one).
    std::fs::create_dir_all(&ds).unwrap();
    let prefix = format!("one-rs-m{pid}-");
    let name = format!("{prefix}4");
    let on_a = driver(a.uri(), &prefix, &ds);
    let on_b = driver(b.uri(), &prefix, &ds);
    let req = |op, source_host: &str, args: &[(&str, String)]| DriverRequest {
        op,
        vm_id: 4,
        deploy_id: String::new(),
        host: "h".into(),
        source_host: source_host.into(),
        ds_id: 0,
        vm_xml: "<VM><ID>4</ID><NAME>m</NAME><TEMPLATE><MEMORY>32</MEMORY>\
                 <DISK><DISK_ID>0</DISK_ID><TYPE>fs</TYPE><SIZE>8</SIZE><FORMAT>qcow2</FORMAT>\
                 <TARGET>vda</TARGET></DISK></TEMPLATE></VM>"
            .into(),
        args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    };
    let result = async {
        on_a.execute(req(DriverOp::Prolog, "", &[])).await?;
        let uuid = on_a
            .execute(req(DriverOp::Deploy, "", &[]))
            .await?
            .deploy_id
            .unwrap();
        assert_eq!(
            domain_uuid_on(&a.uri(), &name).as_deref(),
            Some(uuid.as_str())
        );

        // Live: from A to B (MIGRATE_URI names B's libvirt), with the qcow2 disk in the
        // shared directory (UNSAFE).
        let t = Instant::now();
        let r = on_a
            .execute(req(DriverOp::Migrate, &b.name, &[("MIGRATE_URI", b.uri())]))
            .await?;
        println!("live migration: {:?} ({})", t.elapsed(), r.info);
        assert_eq!(r.deploy_id.as_deref(), Some(uuid.as_str()));
        assert_eq!(
            domain_uuid_on(&b.uri(), &name).as_deref(),
            Some(uuid.as_str())
        );
        assert_eq!(
            domain_uuid_on(&a.uri(), &name),
            None,
            "transient: gone from A"
        );
        // Repeated: the destination has it.
        let again = on_a
            .execute(req(DriverOp::Migrate, &b.name, &[("MIGRATE_URI", b.uri())]))
            .await?;
        assert!(again.info.contains("already"), "{again:?}");

        // Cold: save on B, prolog_migrate + restore on A from the shared directory.
        let t = Instant::now();
        on_b.execute(req(DriverOp::Save, &a.name, &[])).await?;
        on_a.execute(req(DriverOp::PrologMigrate, &b.name, &[]))
            .await?;
        let r = on_a.execute(req(DriverOp::Restore, &b.name, &[])).await?;
        println!("cold migration (save + restore): {:?}", t.elapsed());
        assert_eq!(r.deploy_id.as_deref(), Some(uuid.as_str()));
        assert_eq!(
            domain_uuid_on(&a.uri(), &name).as_deref(),
            Some(uuid.as_str())
        );
        assert_eq!(domain_uuid_on(&b.uri(), &name), None);

        on_a.execute(req(DriverOp::Cancel, "", &[])).await?;
        on_a.execute(req(DriverOp::Epilog, "", &[])).await?;
        Ok::<(), DriverError>(())
    }
    .await;
    let _ = on_a.execute(req(DriverOp::Cancel, "", &[])).await;
    let _ = on_b.execute(req(DriverOp::Cancel, "", &[])).await;
    let _ = std::fs::remove_dir_all(&ds);
    drop((a, b));
    result.unwrap();
}
