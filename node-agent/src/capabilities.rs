//! Host capabilities (docs/node-agent.md, "Host capabilities"): what this host can serve,
//! pushed with each host usage sample (and after a Configure) as [`Capability`] values.
//! oned writes each into the host's TEMPLATE as `NAME="items it can serve"`,
//! `NAME_MISSING="items it cannot"` and `NAME_ERROR="item: reason; ..."`, and the scheduler,
//! a client of the API, honours them (`scheduler/src/capability.rs`).
//!
//! Adding a capability: a function here answering a [`Capability`] (probe what the host
//! has; never change the host), listed in [`probe`]; its name in
//! `one_proto::agent::capabilities`; what a VM needs of it in the scheduler's capability
//! table (and oned's deploy check, `oned/src/ops/capability.rs`).

use one_drivers::vnm::detect::Support;
use one_proto::agent::{AgentConfig, Capability, Missing, SharedDatastore, capabilities};
use one_proto::ds::TOKEN_FILE;
use std::path::Path;
use std::time::Duration;

/// How long one look at a datastore may take: a hung NFS mount blocks a read for minutes.
const LOOK_LIMIT: Duration = Duration::from_secs(10);

/// Every capability of this host the agent itself finds (the driver adds its own:
/// [`crate::driver::AgentDriver::network_drivers`]).
pub async fn probe(cfg: &AgentConfig) -> Vec<Capability> {
    vec![shared_datastores(&cfg.shared_datastores).await]
}

/// `SHARED_DS`: the shared datastores whose directory holds the frontend's token (the host
/// sees the frontend's file system there). A missing directory is never created: it would
/// put VM disks on this host's own disk behind everyone's back.
pub async fn shared_datastores(list: &[SharedDatastore]) -> Capability {
    let mut cap = Capability {
        name: capabilities::SHARED_DS.into(),
        ..Capability::default()
    };
    for ds in list {
        let d = ds.clone();
        let look = tokio::task::spawn_blocking(move || look_at(&d));
        let verdict = match tokio::time::timeout(LOOK_LIMIT, look).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => Err(format!("the check failed: {e}")),
            Err(_) => Err(format!(
                "{} does not answer within {} s (a hung network mount?)",
                ds.path,
                LOOK_LIMIT.as_secs()
            )),
        };
        match verdict {
            Ok(()) => cap.available.push(ds.id.to_string()),
            Err(reason) => cap.missing.push(Missing {
                item: ds.id.to_string(),
                reason,
            }),
        }
    }
    cap
}

/// `NETWORK_DRIVERS`: the VN_MADs whose devices this host's kernel could make when tried
/// (`one_drivers::vnm::detect`), the others missing with the kernel's words.
pub fn network_drivers(found: &[Support]) -> Capability {
    let mut cap = Capability {
        name: capabilities::NETWORK_DRIVERS.into(),
        ..Capability::default()
    };
    for s in found {
        if s.ok {
            cap.available.push(s.vn_mad.to_string());
        } else {
            cap.missing.push(Missing {
                item: s.vn_mad.to_string(),
                reason: s.reason.clone(),
            });
        }
    }
    cap
}

/// Whether `ds.path` is the frontend's datastore: its token file holds `ds.token`.
pub fn look_at(ds: &SharedDatastore) -> Result<(), String> {
    let dir = Path::new(&ds.path);
    if !dir.is_dir() {
        return Err(format!(
            "{} does not exist on this host (mount the shared datastore there)",
            ds.path
        ));
    }
    match std::fs::read_to_string(dir.join(TOKEN_FILE)) {
        Ok(t) if t.trim_end() == ds.token => Ok(()),
        Ok(_) => Err(format!(
            "{} is not the frontend's datastore {} (its {TOKEN_FILE} belongs to another \
             datastore or cloud)",
            ds.path, ds.id
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{} has no {TOKEN_FILE}: it is a directory of this host, not the frontend's \
             shared datastore (mount it there)",
            ds.path
        )),
        Err(e) => Err(format!("cannot read {}/{TOKEN_FILE}: {e}", ds.path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_drivers_name_the_missing_with_the_reason() {
        let s = |vn_mad, ok, reason: &str| Support {
            vn_mad,
            ok,
            reason: reason.into(),
        };
        let cap = network_drivers(&[
            s("dummy", true, ""),
            s("bridge", true, ""),
            s(
                "802.1Q",
                false,
                "the kernel cannot make 802.1Q VLAN interfaces (8021q): x",
            ),
            s("vxlan", true, ""),
        ]);
        assert_eq!(cap.name, "NETWORK_DRIVERS");
        assert_eq!(cap.available, vec!["dummy", "bridge", "vxlan"]);
        assert_eq!(cap.missing.len(), 1);
        assert_eq!(cap.missing[0].item, "802.1Q");
        assert!(cap.missing[0].reason.contains("8021q"));
    }

    #[tokio::test]
    async fn shared_datastores_are_seen_by_their_token_and_never_created() {
        let d = tempfile::tempdir().unwrap();
        let seen = d.path().join("100");
        std::fs::create_dir(&seen).unwrap();
        std::fs::write(seen.join(TOKEN_FILE), "one-rs datastore 100 cloud c\n").unwrap();
        let local = d.path().join("101");
        std::fs::create_dir(&local).unwrap();
        let other = d.path().join("102");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join(TOKEN_FILE), "one-rs datastore 102 cloud x\n").unwrap();
        let gone = d.path().join("103");
        let ds = |id: i64, p: &Path| SharedDatastore {
            id,
            path: p.display().to_string(),
            token: format!("one-rs datastore {id} cloud c"),
        };
        let cap = shared_datastores(&[
            ds(100, &seen),
            ds(101, &local),
            ds(102, &other),
            ds(103, &gone),
        ])
        .await;
        assert_eq!(cap.name, "SHARED_DS");
        assert_eq!(cap.available, vec!["100"]);
        let why: Vec<(&str, &str)> = cap
            .missing
            .iter()
            .map(|m| (m.item.as_str(), m.reason.as_str()))
            .collect();
        assert_eq!(why.len(), 3);
        assert!(why[0].1.contains("has no .one-rs-datastore"), "{why:?}");
        assert!(why[1].1.contains("another datastore or cloud"), "{why:?}");
        assert!(why[2].1.contains("does not exist"), "{why:?}");
        assert!(
            !gone.exists(),
            "a missing shared datastore is never created"
        );
    }
}
