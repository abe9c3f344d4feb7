//! The `dummy` host driver: simulates every operation inside oned, like OpenNebula's dummy
//! VMM. It takes `delay` (the host's DUMMY_DELAY in ms, else `[dummy] delay_ms`) and fails the
//! operations named in the host's DUMMY_FAIL (comma-separated [`DriverOp`] names, e.g.
//! `DUMMY_FAIL="prolog,deploy"`), so every failure path of the lifecycle can be exercised.

use super::{DriverFuture, HostDriver};
use crate::config::DummyConfig;
use one_proto::agent::VmDocument;
use one_proto::driver::{DriverError, DriverOp, DriverReply, DriverRequest};
use one_proto::objects::host::Host;
use std::collections::HashSet;
use std::time::Duration;

pub struct Dummy {
    delay: Duration,
    fail: HashSet<DriverOp>,
    /// DUMMY_FAIL names `update_sg`: security-group updates fail.
    fail_update_sg: bool,
}

impl Dummy {
    pub fn for_host(cfg: &DummyConfig, host: &Host) -> Dummy {
        let delay_ms = host
            .template
            .get("DUMMY_DELAY")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(cfg.delay_ms);
        let fail_list = host.template.get("DUMMY_FAIL").unwrap_or("");
        Dummy {
            delay: Duration::from_millis(delay_ms),
            fail: parse_fail_list(fail_list),
            fail_update_sg: fail_list
                .split([',', ' '])
                .any(|n| n.trim().eq_ignore_ascii_case("update_sg")),
        }
    }
}

/// The operations a DUMMY_FAIL value names; unknown names (such as `monitor`, which the
/// monitor reads) are ignored here.
pub fn parse_fail_list(v: &str) -> HashSet<DriverOp> {
    v.split([',', ' '])
        .filter_map(|n| DriverOp::from_name(n.trim().to_ascii_lowercase().as_str()))
        .collect()
}

impl HostDriver for Dummy {
    fn execute(&self, req: DriverRequest) -> DriverFuture {
        let delay = self.delay;
        let fails = self.fail.contains(&req.op);
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if fails {
                return Err(DriverError::new(format!(
                    "dummy driver: {} failed on host {} as its DUMMY_FAIL asks",
                    req.op.name(),
                    req.host
                )));
            }
            let deploy_id = matches!(
                req.op,
                DriverOp::Deploy | DriverOp::Restore | DriverOp::Migrate
            )
            .then(|| format!("one-{}", req.vm_id));
            Ok(DriverReply {
                deploy_id,
                info: String::new(),
            })
        })
    }

    fn update_security_groups(&self, vms: Vec<VmDocument>) -> DriverFuture {
        let (delay, fails) = (self.delay, self.fail_update_sg);
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if fails {
                return Err(DriverError::new(
                    "dummy driver: update_sg failed as the host's DUMMY_FAIL asks",
                ));
            }
            Ok(DriverReply {
                deploy_id: None,
                info: format!("{} VM(s)", vms.len()),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_list_parsing() {
        let f = parse_fail_list("prolog, Deploy,monitor,,net_pre");
        assert!(f.contains(&DriverOp::Prolog));
        assert!(f.contains(&DriverOp::Deploy));
        assert!(f.contains(&DriverOp::NetPre));
        assert_eq!(f.len(), 3);
    }

    fn req(op: DriverOp) -> DriverRequest {
        DriverRequest {
            op,
            vm_id: 7,
            deploy_id: String::new(),
            host: "h1".into(),
            source_host: String::new(),
            ds_id: 0,
            vm_xml: String::new(),
            args: Default::default(),
        }
    }

    #[tokio::test]
    async fn succeeds_fails_and_names_domains() {
        let d = Dummy {
            delay: Duration::ZERO,
            fail: parse_fail_list("save"),
            fail_update_sg: true,
        };
        assert!(d.update_security_groups(Vec::new()).await.is_err());
        let r = d.execute(req(DriverOp::Deploy)).await.unwrap();
        assert_eq!(r.deploy_id.as_deref(), Some("one-7"));
        assert_eq!(
            d.execute(req(DriverOp::Prolog)).await.unwrap().deploy_id,
            None
        );
        let e = d.execute(req(DriverOp::Save)).await.unwrap_err();
        assert!(e.message.contains("save failed on host h1"), "{e}");
    }
}
