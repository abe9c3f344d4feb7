//! The built agent, driven as oned drives it: frames on its stdin and stdout.

use one_proto::agent::{
    AgentConfig, Beat, DatastoreDir, DomainState, FrameDecoder, FromAgent, Keepalive,
    MonitoringPeriods, PROTOCOL_VERSION, RefuseCode, Refused, Reply, Request, ToAgent, Welcome,
    encode,
};
use one_proto::driver::{DriverOp, DriverRequest};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_one-node-agent");
const WAIT: Duration = Duration::from_secs(10);

struct Agent {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    dec: FrameDecoder,
}

impl Agent {
    fn spawn(args: &[&str]) -> Agent {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("ONE_AGENT_DRIVER")
            .env("ONE_AGENT_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("agent starts");
        Agent {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().unwrap(),
            child,
            dec: FrameDecoder::new(),
        }
    }

    async fn send(&mut self, m: &ToAgent) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(&encode(m).unwrap()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// The next frame; `None` at the end of the agent's output.
    async fn next(&mut self) -> Option<FromAgent> {
        tokio::time::timeout(WAIT, async {
            let mut buf = [0u8; 8192];
            loop {
                if let Some(m) = self.dec.next_message::<FromAgent>().unwrap() {
                    return Some(m);
                }
                let n = self.stdout.read(&mut buf).await.unwrap();
                if n == 0 {
                    self.dec.finish().unwrap();
                    return None;
                }
                self.dec.feed(&buf[..n]);
            }
        })
        .await
        .expect("a frame from the agent in time")
    }

    /// The next frame; the end of the agent's output fails the test with its exit status
    /// and stderr, which say why it ended.
    async fn recv(&mut self) -> FromAgent {
        if let Some(m) = self.next().await {
            return m;
        }
        let status = tokio::time::timeout(WAIT, self.child.wait()).await;
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = tokio::time::timeout(WAIT, e.read_to_string(&mut err)).await;
        }
        panic!("the agent's output ended ({status:?}); stderr:\n{err}");
    }

    /// The next frame that is not a keepalive ping (pings come on their own clock: on a
    /// loaded machine one can come before the connect sequence is out).
    async fn recv_no_ping(&mut self) -> FromAgent {
        loop {
            match self.recv().await {
                FromAgent::Ping(_) => continue,
                m => return m,
            }
        }
    }

    /// Skips frames until one `pick` takes; what was skipped is returned too.
    async fn until<T>(
        &mut self,
        mut pick: impl FnMut(&FromAgent) -> Option<T>,
    ) -> (T, Vec<FromAgent>) {
        let mut skipped = Vec::new();
        loop {
            let m = self.recv().await;
            if let Some(t) = pick(&m) {
                return (t, skipped);
            }
            skipped.push(m);
        }
    }

    async fn reply(&mut self, id: u64) -> (Reply, Vec<FromAgent>) {
        self.until(|m| match m {
            FromAgent::Reply { id: i, reply } if *i == id => Some(reply.clone()),
            _ => None,
        })
        .await
    }

    /// The exit code and stderr once the agent is done.
    async fn exit(mut self) -> (i32, String) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("agent exits in time")
            .unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err).await.unwrap();
        }
        (status.code().expect("exited, not killed"), err)
    }

    async fn hello(&mut self) -> one_proto::agent::Hello {
        match self.recv().await {
            FromAgent::Hello(h) => h,
            other => panic!("first frame is not a hello: {other:?}"),
        }
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("one-agent-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn welcome(config: AgentConfig) -> ToAgent {
    ToAgent::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        host_id: 3,
        host_name: "node1".into(),
        time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        config,
    })
}

fn fast_config(ds: &std::path::Path) -> AgentConfig {
    AgentConfig {
        monitoring: MonitoringPeriods {
            host_system_ms: 700,
            host_usage_ms: 200,
            vm_usage_ms: 200,
            vm_state_ms: 100,
            vm_state_sync_ms: 1_000,
        },
        keepalive: Keepalive {
            interval_ms: 1_000,
            timeout_ms: 20_000,
        },
        domain_prefix: "t-one-".into(),
        datastores: vec![DatastoreDir {
            id: 0,
            path: ds.display().to_string(),
        }],
        bridges: vec!["one-it-nobr0".into()],
        ..AgentConfig::default()
    }
}

fn execute(id: u64, op: DriverOp, vm_id: i64) -> ToAgent {
    ToAgent::Request {
        id,
        request: Request::Execute(DriverRequest {
            op,
            vm_id,
            deploy_id: String::new(),
            host: "node1".into(),
            source_host: String::new(),
            ds_id: 0,
            vm_xml: format!(
                "<VM><ID>{vm_id}</ID><TEMPLATE><CPU>1</CPU><MEMORY>128</MEMORY></TEMPLATE></VM>"
            ),
            args: Default::default(),
        }),
    }
}

#[tokio::test]
async fn a_whole_session() {
    let ds = temp_dir("ds");
    let mut a = Agent::spawn(&["--stdio", "--simulate", "--sim-delay-ms", "300"]);

    // Hello: our protocol, and the build is the SHA-256 of the executable.
    let hello = a.hello().await;
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    assert_eq!(hello.agent.version, env!("CARGO_PKG_VERSION"));
    let sha: String = Sha256::digest(std::fs::read(BIN).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hello.agent.build, sha);
    assert!(
        !hello.host.hostname.is_empty() && !hello.host.kernel.is_empty(),
        "{hello:?}"
    );

    a.send(&welcome(fast_config(&ds))).await;

    // At connect: onboarding report, host monitoring with every part, a full domain report,
    // VM monitoring.
    let report = match a.recv_no_ping().await {
        FromAgent::OnboardingReport(r) => r,
        other => panic!("onboarding report first, got {other:?}"),
    };
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "libvirt",
            "kvm",
            "cpu_model",
            "bridges",
            "datastores",
            "clock_skew"
        ]
    );
    assert_eq!(
        report.failure_message().as_deref(),
        Some("onboarding checks failed: bridges: bridge one-it-nobr0 does not exist")
    );
    assert!(ds.is_dir(), "the datastore directory was created");
    assert!(report.domain_type.is_some());

    let hm = match a.recv_no_ping().await {
        FromAgent::HostMonitoring(hm) => hm,
        other => panic!("host monitoring second, got {other:?}"),
    };
    let sys = hm.system.expect("system at connect");
    assert_eq!(sys.hypervisor, "simulated");
    assert!(sys.totalcpu >= 100 && sys.totalmemory > 0, "{sys:?}");
    assert_eq!(sys.extra["VERSION"], env!("CARGO_PKG_VERSION"));
    let usage = hm.usage.expect("usage at connect");
    assert_eq!(usage.usedcpu + usage.freecpu, sys.totalcpu);
    assert_eq!(usage.usedmemory + usage.freememory, sys.totalmemory);
    let dss = hm.datastores.expect("datastores at connect");
    assert_eq!(dss.len(), 1);
    assert!(dss[0].id == 0 && dss[0].total_mb > 0, "{dss:?}");

    let full = match a.recv_no_ping().await {
        FromAgent::DomainStates(full) => full,
        other => panic!("domain states third, got {other:?}"),
    };
    assert!(full.full && full.domains.is_empty());
    assert!(matches!(a.recv_no_ping().await, FromAgent::VmMonitoring(v) if v.vms.is_empty()));

    // A deploy takes 300 ms; a domain listing sent after it is answered first.
    a.send(&execute(1, DriverOp::Deploy, 5)).await;
    a.send(&ToAgent::Request {
        id: 2,
        request: Request::ListDomains,
    })
    .await;
    let (list, _) = a
        .until(|m| match m {
            FromAgent::Reply { id, reply } => Some((*id, reply.clone())),
            _ => None,
        })
        .await;
    assert_eq!(list, (2, Reply::DomainList { domains: vec![] }));
    let (r, _) = a.reply(1).await;
    let Reply::Ok(r) = r else {
        panic!("deploy failed: {r:?}")
    };
    let uuid = r.deploy_id.expect("deploy answers the UUID");
    assert_eq!(uuid.len(), 36);

    // The new domain is reported as a change, then monitored.
    let (d, _) = a
        .until(|m| match m {
            FromAgent::DomainStates(s) if !s.full => Some(s.domains.clone()),
            _ => None,
        })
        .await;
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].vm_id, d[0].name.as_str()), (5, "t-one-5"));
    assert_eq!(
        (d[0].deploy_id.as_str(), d[0].state),
        (uuid.as_str(), DomainState::Running)
    );
    let (vms, _) = a
        .until(|m| match m {
            FromAgent::VmMonitoring(v) if !v.vms.is_empty() => Some(v.vms.clone()),
            _ => None,
        })
        .await;
    assert_eq!((vms[0].id, vms[0].deploy_id.as_str()), (5, uuid.as_str()));
    assert!(vms[0].memory_kb > 0 && vms[0].memory_kb <= 128 * 1024);

    // Usage alone at its period, the system part at its own.
    let (u, _) = a
        .until(|m| match m {
            FromAgent::HostMonitoring(h) if h.system.is_none() => Some(h.clone()),
            _ => None,
        })
        .await;
    assert!(u.usage.is_some() && u.datastores.is_some());
    a.until(|m| matches!(m, FromAgent::HostMonitoring(h) if h.system.is_some()).then_some(()))
        .await;

    // Keepalive from oned is answered with the same sequence number.
    a.send(&ToAgent::Ping(Beat {
        seq: 42,
        time_ms: 1,
    }))
    .await;
    a.until(|m| matches!(m, FromAgent::Pong(b) if b.seq == 42).then_some(()))
        .await;

    // A probe runs the checks again.
    a.send(&ToAgent::Request {
        id: 3,
        request: Request::Probe,
    })
    .await;
    let (r, _) = a.reply(3).await;
    assert!(
        matches!(r, Reply::CheckReport(ref c) if c.checks.len() == 6),
        "{r:?}"
    );

    // Shutdown: the domain is gone, reported as missing once, then absent from full reports.
    a.send(&execute(4, DriverOp::Shutdown, 5)).await;
    assert!(matches!(a.reply(4).await.0, Reply::Ok(_)));
    let (d, _) = a
        .until(|m| match m {
            FromAgent::DomainStates(s) if !s.full => Some(s.domains.clone()),
            _ => None,
        })
        .await;
    assert_eq!((d[0].vm_id, d[0].state), (5, DomainState::Missing));
    a.until(|m| {
        matches!(m, FromAgent::DomainStates(s) if s.full && s.domains.is_empty()).then_some(())
    })
    .await;

    // A Shutdown request is answered at once; the deploy in flight is finished and answered
    // before the agent exits, cleanly.
    a.send(&execute(5, DriverOp::Deploy, 6)).await;
    a.send(&ToAgent::Request {
        id: 6,
        request: Request::Shutdown,
    })
    .await;
    let (r, _) = a
        .until(|m| match m {
            FromAgent::Reply { id, reply } => Some((*id, reply.clone())),
            _ => None,
        })
        .await;
    assert_eq!(r, (6, Reply::ShuttingDown));
    let (r, _) = a.reply(5).await;
    assert!(matches!(r, Reply::Ok(_)), "{r:?}");
    let mut rest = Vec::new();
    while let Some(m) = a.next().await {
        rest.push(m);
    }
    assert!(
        rest.iter().all(|m| !matches!(m, FromAgent::Reply { .. })),
        "{rest:?}"
    );
    let (code, err) = a.exit().await;
    assert_eq!(code, 0, "{err}");
    std::fs::remove_dir_all(&ds).unwrap();
}

#[tokio::test]
async fn refused_by_oned_exits_with_its_own_code() {
    let mut a = Agent::spawn(&["--stdio", "--simulate"]);
    a.hello().await;
    a.send(&ToAgent::Refused(Refused {
        code: RefuseCode::BuildMismatch,
        reason: "agent build 0123 differs from oned's 4567".into(),
    }))
    .await;
    assert!(a.next().await.is_none(), "nothing after a refusal");
    let (code, err) = a.exit().await;
    assert_eq!(code, one_node_agent::EXIT_REFUSED, "{err}");
    assert!(
        err.contains("oned refused this agent (BuildMismatch): agent build 0123 differs"),
        "{err}"
    );
}

#[tokio::test]
async fn a_welcome_of_another_protocol_is_refused() {
    let mut a = Agent::spawn(&["--stdio", "--simulate"]);
    a.hello().await;
    // A newer oned's welcome, with fields this agent does not know.
    let body = br#"{"type":"welcome","protocol_version":2,"host_id":1,"session":{"x":1}}"#;
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    let stdin = a.stdin.as_mut().unwrap();
    stdin.write_all(&frame).await.unwrap();
    stdin.flush().await.unwrap();
    let FromAgent::Refused(r) = a.recv().await else {
        panic!("the agent refuses");
    };
    assert_eq!(r.code, RefuseCode::ProtocolMismatch);
    assert_eq!(
        r.reason,
        "oned's welcome speaks protocol 2, this agent speaks 1"
    );
    assert!(a.next().await.is_none());
    let (code, _) = a.exit().await;
    assert_eq!(code, one_node_agent::EXIT_BAD_WELCOME);
}

#[tokio::test]
async fn an_unusable_config_is_refused() {
    let mut a = Agent::spawn(&["--stdio", "--simulate"]);
    a.hello().await;
    let mut cfg = AgentConfig::default();
    cfg.monitoring.vm_state_ms = 0;
    a.send(&welcome(cfg)).await;
    let FromAgent::Refused(r) = a.recv().await else {
        panic!("the agent refuses");
    };
    assert_eq!(r.code, RefuseCode::BadConfig);
    assert_eq!(r.reason, "monitoring.vm_state_ms must be above 0");
    assert_eq!(a.exit().await.0, one_node_agent::EXIT_BAD_WELCOME);
}

#[tokio::test]
async fn end_of_input_ends_cleanly_and_silence_ends_the_session() {
    // EOF after the welcome: a clean exit.
    let mut a = Agent::spawn(&["--stdio", "--simulate"]);
    a.hello().await;
    a.send(&welcome(AgentConfig::default())).await;
    assert!(matches!(a.recv().await, FromAgent::OnboardingReport(_)));
    let (code, err) = a.exit().await;
    assert_eq!(code, 0, "{err}");

    // EOF before any welcome: no session was had.
    let mut a = Agent::spawn(&["--stdio", "--simulate"]);
    a.hello().await;
    let (code, err) = a.exit().await;
    assert_eq!(code, one_node_agent::EXIT_SESSION_LOST, "{err}");
    assert!(
        err.contains("closed the session before its welcome"),
        "{err}"
    );

    // oned says nothing after the welcome: the agent pings when idle, then gives up.
    let mut a = Agent::spawn(&["--stdio", "--simulate"]);
    a.hello().await;
    let cfg = AgentConfig {
        keepalive: Keepalive {
            interval_ms: 100,
            timeout_ms: 800,
        },
        ..AgentConfig::default()
    };
    a.send(&welcome(cfg)).await;
    let started = std::time::Instant::now();
    let mut pings = 0;
    while let Some(m) = a.next().await {
        if let FromAgent::Ping(b) = m {
            pings += 1;
            assert_eq!(b.seq, pings);
        }
    }
    assert!(pings >= 3, "{pings} pings");
    assert!(started.elapsed() >= Duration::from_millis(700));
    let (code, err) = a.exit().await;
    assert_eq!(code, one_node_agent::EXIT_SESSION_LOST);
    assert!(err.contains("the session is dead"), "{err}");
}

#[tokio::test]
async fn an_unreachable_libvirt_fails_the_checks_and_every_request() {
    let mut a = Agent::spawn(&["--stdio", "--driver", "libvirt"]);
    a.hello().await;
    let cfg = AgentConfig {
        libvirt_uri: "qemu+unix:///system?socket=/nonexistent/one-test-libvirt-sock".into(),
        ..AgentConfig::default()
    };
    a.send(&welcome(cfg)).await;
    let (report, mut seen) = a
        .until(|m| match m {
            FromAgent::OnboardingReport(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    let msg = report.failure_message().unwrap();
    assert!(
        msg.starts_with("onboarding checks failed: libvirt:"),
        "{msg}"
    );
    a.send(&execute(1, DriverOp::Deploy, 1)).await;
    let (r, skipped) = a.reply(1).await;
    seen.extend(skipped);
    let Reply::Err(e) = r else { panic!("{r:?}") };
    assert!(!e.message.is_empty(), "{e}");
    // The host's own figures are still reported. The system part goes out once at connect
    // (then every 600 s): right after the onboarding report, so before or after the deploy's
    // reply. Waiting for another one would outlast the agent's keepalive timeout (this test
    // answers no ping), and the agent would end the session.
    let system = |m: &FromAgent| match m {
        FromAgent::HostMonitoring(h) => h.system.clone(),
        _ => None,
    };
    let sys = match seen.iter().find_map(system) {
        Some(sys) => sys,
        None => a.until(system).await.0,
    };
    assert_eq!(sys.hypervisor, "kvm");
    assert_eq!(a.exit().await.0, 0);
}
