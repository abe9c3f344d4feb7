//! The host manager against agents played by the tests over in-memory streams: handshake,
//! refusal, requests and replies, timeouts, keepalive, session loss and reconnection,
//! monitoring ingest, onboarding failures.

use super::ingest::tests::{host, system, vm_on};
use super::transport::{AgentStream, ConnectFuture, StderrTail, Target, Transport};
use super::*;
use crate::auth::Authenticator;
use crate::datadir::DataDir;
use crate::db::Db;
use crate::store::Store;
use one_proto::agent::{
    AgentVersion, Beat, Check, DomainState, DomainStates, FrameDecoder, FromAgent, Hello, HostInfo,
    HostMonitoring, HostUsage, OnboardingReport, RefuseCode, ToAgent, Welcome, encode,
};
use one_proto::driver::{DriverOp, DriverReply, DriverRequest};
use one_proto::objects::cluster::Cluster;
use one_proto::objects::vm::Vm;
use one_proto::state::{LcmState, VmState};
use one_proto::template::Template;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

/// The agent's side of an in-memory session.
struct FakeAgent {
    r: ReadHalf<DuplexStream>,
    w: WriteHalf<DuplexStream>,
    dec: FrameDecoder,
    simulate: bool,
}

const WAIT: Duration = Duration::from_secs(10);

impl FakeAgent {
    async fn send(&mut self, m: &FromAgent) {
        self.w.write_all(&encode(m).unwrap()).await.unwrap();
    }

    /// The next frame from oned other than a ping; None when oned closed the stream.
    async fn recv(&mut self) -> Option<ToAgent> {
        let mut buf = [0u8; 8192];
        loop {
            match self.dec.next_message::<ToAgent>().unwrap() {
                Some(ToAgent::Ping(_)) => continue,
                Some(m) => return Some(m),
                None => {}
            }
            let n = tokio::time::timeout(WAIT, self.r.read(&mut buf))
                .await
                .expect("oned said nothing")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.dec.feed(&buf[..n]);
        }
    }

    async fn hello(&mut self, build: &str) -> Option<ToAgent> {
        let h = Hello::new(
            AgentVersion {
                version: "0.1.0".into(),
                build: build.into(),
            },
            HostInfo {
                hostname: "localhost".into(),
                ..HostInfo::default()
            },
        );
        self.send(&FromAgent::Hello(h)).await;
        self.recv().await
    }

    /// Says hello, expects the welcome, passes its checks and reports `totalcpu`.
    async fn join(&mut self, build: &str) -> Welcome {
        let Some(ToAgent::Welcome(w)) = self.hello(build).await else {
            panic!("no welcome");
        };
        self.send(&FromAgent::OnboardingReport(OnboardingReport {
            checks: vec![Check {
                name: "libvirt".into(),
                ok: true,
                detail: "simulated".into(),
            }],
            domain_type: None,
        }))
        .await;
        self.send(&FromAgent::HostMonitoring(HostMonitoring {
            timestamp: 1000,
            system: Some(system()),
            usage: Some(HostUsage {
                usedcpu: 20,
                freecpu: 180,
                ..HostUsage::default()
            }),
            datastores: None,
        }))
        .await;
        w
    }

    /// Waits for the `shutdown` request, answers it and exits.
    async fn finish(mut self) {
        loop {
            match self.recv().await {
                Some(ToAgent::Request {
                    id,
                    request: Request::Shutdown,
                }) => {
                    let reply = Reply::ShuttingDown;
                    self.send(&FromAgent::Reply { id, reply }).await;
                    return;
                }
                Some(_) => {}
                None => panic!("closed without a shutdown request"),
            }
        }
    }

    /// Waits for an `execute` request and answers it with `reply`.
    async fn serve(&mut self, reply: impl FnOnce(&DriverRequest) -> Reply) -> DriverRequest {
        loop {
            match self.recv().await {
                Some(ToAgent::Request {
                    id,
                    request: Request::Execute(r),
                }) => {
                    let rep = reply(&r);
                    self.send(&FromAgent::Reply { id, reply: rep }).await;
                    return r;
                }
                Some(_) => continue,
                None => panic!("session closed"),
            }
        }
    }
}

/// Hands every connection's agent side to the test.
struct Duplex {
    agents: mpsc::UnboundedSender<FakeAgent>,
    connects: AtomicUsize,
}

impl Transport for Duplex {
    fn name(&self) -> &'static str {
        "in-memory"
    }

    fn connect<'a>(&'a self, target: &'a Target) -> ConnectFuture<'a> {
        Box::pin(async move {
            self.connects.fetch_add(1, Ordering::Relaxed);
            let (oned, agent) = tokio::io::duplex(1 << 16);
            let (or, ow) = tokio::io::split(oned);
            let (ar, aw) = tokio::io::split(agent);
            let _ = self.agents.send(FakeAgent {
                r: ar,
                w: aw,
                dec: FrameDecoder::new(),
                simulate: target.simulate,
            });
            Ok(AgentStream {
                reader: Box::pin(or),
                writer: Box::pin(ow),
                stderr: StderrTail::default(),
                keep: None,
            })
        })
    }
}

struct World {
    oned: Arc<Oned>,
    agents: mpsc::UnboundedReceiver<FakeAgent>,
    build: String,
    dir: PathBuf,
    transport: Arc<Duplex>,
}

impl World {
    async fn new(tag: &str, tune: impl FnOnce(&mut Config)) -> World {
        let dir = std::env::temp_dir().join(format!("oned-hostmgr-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let agent = dir.join("agent-binary");
        std::fs::write(&agent, b"not really an agent").unwrap();
        let build = hex::encode(Sha256::digest(b"not really an agent"));
        let mut cfg = Config {
            data_dir: dir.clone(),
            ..Config::default()
        };
        cfg.hosts.agent_path = agent;
        cfg.hosts.reconnect_initial_seconds = 0.05;
        cfg.hosts.reconnect_max_seconds = 0.2;
        cfg.hosts.hello_timeout_seconds = 2.0;
        tune(&mut cfg);
        cfg.validate().unwrap();
        let data_dir = DataDir::open(&dir).unwrap();
        let url = format!("sqlite://{}/one.db?mode=rwc", dir.display());
        let store = Store::load(Db::open(&url, false).await.unwrap())
            .await
            .unwrap();
        let mut tx = store.begin().await;
        tx.put(Cluster {
            id: 0,
            name: "default".into(),
            hosts: vec![],
            datastores: vec![],
            vnets: vec![],
            template: Template::new(),
        });
        tx.commit().await.unwrap();
        let (tx, agents) = mpsc::unbounded_channel();
        let transport = Arc::new(Duplex {
            agents: tx,
            connects: AtomicUsize::new(0),
        });
        let oned = Arc::new(Oned {
            auth: Authenticator::new(Duration::from_secs(60)),
            lcm: crate::lcm::Lcm::new(&cfg),
            monitor: crate::monitor::Monitor::new(&cfg),
            hooks: crate::hooks::Hooks::new(&cfg),
            hostmgr: HostMgr::with_local_transport(&cfg, transport.clone()),
            secgroups: Default::default(),
            config: cfg,
            store,
            data_dir,
        });
        World {
            oned,
            agents,
            build,
            dir,
            transport,
        }
    }

    /// Adds host `id` named `name` (kvm) with `vms` and starts its session.
    async fn add_host(&self, id: i64, name: &str, vms: &[Vm]) {
        let mut tx = self.oned.store.begin().await;
        let mut h = host(id, name);
        h.vms = vms.iter().map(|v| v.header.id).collect();
        tx.put(h);
        for v in vms {
            tx.put(v.clone());
        }
        tx.commit().await.unwrap();
        reconcile(&self.oned);
    }

    async fn agent(&mut self) -> FakeAgent {
        tokio::time::timeout(WAIT, self.agents.recv())
            .await
            .expect("no connection from oned")
            .unwrap()
    }

    fn host(&self, id: i64) -> Arc<Host> {
        self.oned.store.get::<Host>(id).unwrap()
    }

    fn vm_state(&self, id: i64) -> (VmState, LcmState) {
        let v = self.oned.store.get::<Vm>(id).unwrap();
        (v.state, v.lcm_state)
    }

    async fn until(&self, what: &str, check: impl Fn(&World) -> bool) {
        let deadline = std::time::Instant::now() + WAIT;
        while !check(self) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn close(self) {
        // Stop every session (deleting the hosts), then the database.
        let ids: Vec<i64> = self.oned.store.read().hosts.map.keys().copied().collect();
        let mut tx = self.oned.store.begin().await;
        for id in ids {
            tx.delete::<Host>(id);
        }
        tx.commit().await.unwrap();
        reconcile(&self.oned);
        self.oned.store.db.close().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn request(op: DriverOp, vm_id: i64) -> DriverRequest {
    DriverRequest {
        op,
        vm_id,
        deploy_id: String::new(),
        host: "localhost".into(),
        source_host: String::new(),
        ds_id: 0,
        vm_xml: "<VM/>".into(),
        args: Default::default(),
    }
}

fn domain(vm_id: i64, state: DomainState) -> one_proto::agent::Domain {
    one_proto::agent::Domain {
        vm_id,
        deploy_id: format!("uuid-{vm_id}"),
        name: format!("one-{vm_id}"),
        state,
    }
}

#[tokio::test]
async fn handshake_monitoring_and_driver_operations() {
    let mut w = World::new("basic", |c| c.hosts.domain_prefix = "t1-".into()).await;
    w.add_host(1, "localhost", &[]).await;
    let mut a = w.agent().await;
    assert!(!a.simulate);
    let welcome = a.join(&w.build).await;
    assert_eq!(
        (welcome.host_id, welcome.host_name.as_str()),
        (1, "localhost")
    );
    assert_eq!(welcome.config.domain_prefix, "t1-");
    assert_eq!(welcome.config.monitoring.host_usage_ms, 120_000);
    assert_eq!(welcome.config.shutdown_timeout_ms, 120_000);

    w.until("MONITORED", |w| w.host(1).state == HostState::Monitored)
        .await;
    let h = w.host(1);
    assert_eq!((h.share.total_cpu, h.share.max_cpu), (200, 200));
    assert_eq!(h.template.get("MODELNAME"), Some("Test CPU"));
    assert_eq!(h.monitoring.as_ref().unwrap().free_cpu, 180);
    drop(h);

    // Driver operations go over the session and come back by id.
    let driver = crate::driver::for_host(&w.oned, &w.host(1));
    let call = tokio::spawn(async move { driver.execute(request(DriverOp::Deploy, 7)).await });
    let got = a
        .serve(|r| {
            Reply::Ok(DriverReply {
                deploy_id: Some(format!("uuid-{}", r.vm_id)),
                info: String::new(),
            })
        })
        .await;
    assert_eq!((got.op, got.vm_id), (DriverOp::Deploy, 7));
    assert_eq!(
        call.await.unwrap().unwrap().deploy_id.as_deref(),
        Some("uuid-7")
    );

    let driver = crate::driver::for_host(&w.oned, &w.host(1));
    let call = tokio::spawn(async move { driver.execute(request(DriverOp::Shutdown, 7)).await });
    a.serve(|_| Reply::Err(one_proto::driver::DriverError::new("virsh says no")))
        .await;
    assert_eq!(call.await.unwrap().unwrap_err().message, "virsh says no");

    // A request that is not a driver operation, answered by the agent.
    let mgr = &w.oned.hostmgr;
    let probe = mgr.request(1, Request::ListDomains);
    let serve = async {
        let Some(ToAgent::Request { id, request }) = a.recv().await else {
            panic!("no request");
        };
        assert_eq!(request, Request::ListDomains);
        let reply = Reply::DomainList {
            domains: vec![domain(3, DomainState::Running)],
        };
        a.send(&FromAgent::Reply { id, reply }).await;
    };
    let (res, ()) = tokio::join!(probe, serve);
    assert!(matches!(res, Ok(Reply::DomainList { domains }) if domains.len() == 1));

    // A ping is answered with a pong of the same sequence number.
    a.send(&FromAgent::Ping(Beat {
        seq: 42,
        time_ms: 0,
    }))
    .await;
    let Some(ToAgent::Pong(b)) = a.recv().await else {
        panic!("no pong");
    };
    assert_eq!(b.seq, 42);

    // Deleted: the agent is asked to shut down.
    let mut tx = w.oned.store.begin().await;
    tx.delete::<Host>(1);
    tx.commit().await.unwrap();
    reconcile(&w.oned);
    a.finish().await;
    w.close().await;
}

#[tokio::test]
async fn another_build_is_refused_and_the_host_errs_at_once() {
    let mut w = World::new("refuse", |_| {}).await;
    w.add_host(1, "localhost", &[]).await;
    let mut a = w.agent().await;
    let Some(ToAgent::Refused(r)) = a.hello("0123456789abcdef").await else {
        panic!("not refused");
    };
    assert_eq!(r.code, RefuseCode::BuildMismatch);
    w.until("ERROR", |w| w.host(1).state == HostState::Error)
        .await;
    let err = w.host(1).template.get("ERROR").unwrap().to_string();
    assert!(
        err.contains(
            "Error monitoring Host localhost (1): oned refused the agent: agent build 0123456789ab"
        ),
        "{err}"
    );
    // It keeps trying (the binary may be replaced), backing off.
    let mut b = w.agent().await;
    b.join(&w.build).await;
    w.until("MONITORED", |w| w.host(1).state == HostState::Monitored)
        .await;
    assert!(!w.host(1).template.contains("ERROR"));
    w.close().await;
}

#[tokio::test]
async fn driver_timeout_and_unconnected_hosts() {
    let mut w = World::new("timeout", |c| {
        c.lcm.driver_timeout_seconds = 1;
        c.hosts.error_after_seconds = 0.0;
    })
    .await;
    w.add_host(1, "localhost", &[]).await;
    let mut a = w.agent().await;
    a.join(&w.build).await;
    w.until("MONITORED", |w| w.host(1).state == HostState::Monitored)
        .await;
    let driver = crate::driver::for_host(&w.oned, &w.host(1));
    let e = driver
        .execute(request(DriverOp::Reboot, 3))
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        "host localhost: no reply from the agent within 1 s"
    );

    // A host that is not this machine, with no SSH transport: not connected, and in ERROR
    // (error_after is 0 here).
    w.add_host(2, "node-x.invalid", &[]).await;
    w.until("ERROR", |w| w.host(2).state == HostState::Error)
        .await;
    let err = w.host(2).template.get("ERROR").unwrap().to_string();
    assert!(
        err.contains("cannot resolve host name node-x.invalid"),
        "{err}"
    );
    let driver = crate::driver::for_host(&w.oned, &w.host(2));
    let e = driver
        .execute(request(DriverOp::Deploy, 4))
        .await
        .unwrap_err();
    assert!(
        e.message
            .starts_with("host node-x.invalid is not connected: cannot resolve host name"),
        "{e}"
    );
    w.close().await;
}

#[tokio::test]
async fn session_loss_errs_the_host_and_reconnect_settles_vms() {
    let mut w = World::new("reconnect", |c| c.hosts.error_after_seconds = 0.0).await;
    let vms = [
        vm_on(10, 1, VmState::Active, LcmState::Running),
        vm_on(11, 1, VmState::Active, LcmState::Running),
    ];
    w.add_host(1, "localhost", &vms).await;
    let mut a = w.agent().await;
    a.join(&w.build).await;
    w.until("MONITORED", |w| w.host(1).state == HostState::Monitored)
        .await;

    // An operation in flight when the session dies is sent again on the next one.
    let driver = crate::driver::for_host(&w.oned, &w.host(1));
    let call = tokio::spawn(async move { driver.execute(request(DriverOp::Reboot, 10)).await });
    let Some(ToAgent::Request { .. }) = a.recv().await else {
        panic!("no request");
    };
    drop(a); // the agent dies

    w.until("ERROR", |w| w.host(1).state == HostState::Error)
        .await;
    assert_eq!(w.vm_state(10), (VmState::Active, LcmState::Unknown));
    assert_eq!(w.vm_state(11), (VmState::Active, LcmState::Unknown));
    let err = w.host(1).template.get("ERROR").unwrap().to_string();
    assert!(err.contains("the agent closed the session"), "{err}");

    // Reconnected: the operation comes again; the full report settles the VMs (10 runs,
    // 11 is gone); monitoring makes the host MONITORED.
    let mut b = w.agent().await;
    b.join(&w.build).await;
    let again = b.serve(|_| Reply::Ok(DriverReply::default())).await;
    assert_eq!((again.op, again.vm_id), (DriverOp::Reboot, 10));
    assert!(call.await.unwrap().is_ok());
    b.send(&FromAgent::DomainStates(DomainStates {
        full: true,
        domains: vec![domain(10, DomainState::Running)],
    }))
    .await;
    w.until("VMs settled", |w| {
        w.vm_state(10) == (VmState::Active, LcmState::Running)
            && w.vm_state(11) == (VmState::Poweroff, LcmState::LcmInit)
    })
    .await;
    assert_eq!(w.host(1).state, HostState::Monitored);
    assert!(w.transport.connects.load(Ordering::Relaxed) >= 2);
    w.close().await;
}

#[tokio::test]
async fn error_waits_for_error_after_and_keepalive_notices_silence() {
    let mut w = World::new("keepalive", |c| {
        c.hosts.error_after_seconds = 30.0;
        c.hosts.keepalive_interval_seconds = 0.1;
        c.hosts.keepalive_timeout_seconds = 0.4;
    })
    .await;
    w.add_host(
        1,
        "localhost",
        &[vm_on(10, 1, VmState::Active, LcmState::Running)],
    )
    .await;
    let mut a = w.agent().await;
    a.join(&w.build).await;
    w.until("MONITORED", |w| w.host(1).state == HostState::Monitored)
        .await;
    // oned pings an idle session.
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(WAIT, a.r.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    a.dec.feed(&buf[..n]);
    assert!(matches!(
        a.dec.next_message::<ToAgent>().unwrap(),
        Some(ToAgent::Ping(_))
    ));
    // The agent stops answering: the session is taken as dead, a new one starts; the
    // host is not in ERROR before error_after.
    let mut b = w.agent().await;
    assert_eq!(w.host(1).state, HostState::Monitored);
    assert_eq!(w.vm_state(10), (VmState::Active, LcmState::Running));
    b.join(&w.build).await;
    drop(a);
    w.close().await;
}

#[tokio::test]
async fn failed_onboarding_errs_until_a_probe_passes() {
    let mut w = World::new("onboarding", |c| {
        c.hosts.simulate_agents = true;
        c.hosts.reconnect_max_seconds = 0.1; // the probe retry period
    })
    .await;
    w.add_host(1, "localhost", &[]).await;
    let mut a = w.agent().await;
    assert!(a.simulate, "simulate_agents starts agents with --simulate");
    let Some(ToAgent::Welcome(_)) = a.hello(&w.build).await else {
        panic!("no welcome");
    };
    let failed = OnboardingReport {
        checks: vec![Check {
            name: "datastores".into(),
            ok: false,
            detail: "/var/lib/one/datastores/0 is not writable".into(),
        }],
        domain_type: None,
    };
    a.send(&FromAgent::OnboardingReport(failed.clone())).await;
    a.send(&FromAgent::HostMonitoring(HostMonitoring {
        system: Some(system()),
        ..HostMonitoring::default()
    }))
    .await;
    w.until("ERROR", |w| w.host(1).state == HostState::Error)
        .await;
    let err = w.host(1).template.get("ERROR").unwrap().to_string();
    assert!(
        err.ends_with(
            "onboarding checks failed: datastores: /var/lib/one/datastores/0 is not writable"
        ),
        "{err}"
    );
    // Capacity is known, the state stays ERROR while the checks fail.
    w.until("capacity", |w| w.host(1).share.total_cpu == 200)
        .await;
    assert_eq!(w.host(1).state, HostState::Error);
    // oned probes again: first still failing, then fixed.
    for ok in [false, true] {
        loop {
            match a.recv().await {
                Some(ToAgent::Request {
                    id,
                    request: Request::Probe,
                }) => {
                    let mut r = failed.clone();
                    r.checks[0].ok = ok;
                    a.send(&FromAgent::Reply {
                        id,
                        reply: Reply::CheckReport(r),
                    })
                    .await;
                    break;
                }
                Some(_) => {}
                None => panic!("closed"),
            }
        }
    }
    w.until("MONITORED", |w| w.host(1).state == HostState::Monitored)
        .await;
    assert!(!w.host(1).template.contains("ERROR"));
    w.close().await;
}

#[tokio::test]
async fn offline_hosts_have_no_session_and_renames_restart_it() {
    let mut w = World::new("offline", |_| {}).await;
    w.add_host(1, "localhost", &[]).await;
    let mut a = w.agent().await;
    a.join(&w.build).await;
    w.until("MONITORED", |w| w.host(1).state == HostState::Monitored)
        .await;
    assert_eq!(w.oned.hostmgr.managed_hosts(), 1);
    let mut tx = w.oned.store.begin().await;
    let mut h: Host = tx.get(1).unwrap();
    h.state = HostState::Offline;
    tx.put(h);
    tx.commit().await.unwrap();
    reconcile(&w.oned);
    assert_eq!(w.oned.hostmgr.managed_hosts(), 0);
    a.finish().await;
    let e = crate::driver::for_host(&w.oned, &w.host(1))
        .execute(request(DriverOp::Deploy, 1))
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        "host localhost is not connected: it has no agent session"
    );

    // Back (INIT) under another loopback name: a new session.
    let mut tx = w.oned.store.begin().await;
    let mut h: Host = tx.get(1).unwrap();
    h.state = HostState::Init;
    h.name = "127.0.0.1".into();
    tx.put(h);
    tx.commit().await.unwrap();
    reconcile(&w.oned);
    let mut b = w.agent().await;
    let welcome = b.join(&w.build).await;
    assert_eq!(welcome.host_name, "127.0.0.1");
    w.until("MONITORED", |w| w.host(1).state == HostState::Monitored)
        .await;
    w.close().await;
}
