//! Which VN_MADs this host's kernel can serve, found by trying: the devices of each driver
//! are made in a throwaway network namespace (nothing of the host's own network is
//! touched) and the answers kept as the reasons. The agent reports the result as host
//! capabilities; a host that cannot make VLAN interfaces (no 8021q module, as on the
//! project's test machines) reports 802.1Q as unsupported, with the kernel's words.

use super::exec::{Exec, System};
use super::links::{self, VxlanSpec};
use crate::cmd;
use std::process::Command;

/// One VN_MAD and whether this host serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Support {
    pub vn_mad: &'static str,
    pub ok: bool,
    /// Why not (empty when supported).
    pub reason: String,
}

impl Support {
    fn new(vn_mad: &'static str, r: Result<(), String>) -> Support {
        match r {
            Ok(()) => Support {
                vn_mad,
                ok: true,
                reason: String::new(),
            },
            Err(reason) => Support {
                vn_mad,
                ok: false,
                reason,
            },
        }
    }
}

/// Tries each driver's devices with `x` (a throwaway namespace's tools). `nft` says whether
/// nftables answers there.
pub fn probe_with(x: &dyn Exec) -> Vec<Support> {
    let bridge = links::add_bridge(x, "probebr0", None)
        .map(|_| ())
        .map_err(|e| format!("the kernel cannot make bridges: {e}"));
    // A lower device for the VLAN and VXLAN interfaces (veth: dummy links may be missing).
    let lower = x
        .ip(&[
            "link", "add", "probe0", "type", "veth", "peer", "name", "probe1",
        ]
        .map(String::from))
        .map(|_| ())
        .map_err(|e| format!("no lower device to try on: {e}"));
    let vlan = lower.clone().and_then(|()| {
        links::add_vlan(x, "probe0", "probe0.2", 2, 1500)
            .map(|_| ())
            .map_err(|e| format!("the kernel cannot make 802.1Q VLAN interfaces (8021q): {e}"))
    });
    let vxlan = lower.and_then(|()| {
        links::add_vxlan(
            x,
            &VxlanSpec {
                name: "probe0.3",
                vni: 3,
                group: "239.0.0.3",
                ttl: 16,
                dev: "probe0",
                mtu: 1450,
                dstport: 0,
            },
        )
        .map(|_| ())
        .map_err(|e| format!("the kernel cannot make VXLAN interfaces: {e}"))
    });
    let fw = x
        .nft("add table bridge one_rs_probe\n", true)
        .map_err(|e| format!("nftables (bridge family) does not answer: {e}"));
    vec![
        Support::new("dummy", Ok(())),
        Support::new("bridge", bridge.clone()),
        Support::new("802.1Q", vlan),
        Support::new("vxlan", vxlan),
        Support::new("fw", bridge.and(fw)),
    ]
}

/// Tries the drivers on this host, in a network namespace of its own that is removed
/// afterwards. Needs root (as the drivers do); without it every driver but `dummy` is
/// reported unsupported with the reason.
pub fn probe() -> Vec<Support> {
    try_probe().unwrap_or_else(|why| {
        ["bridge", "802.1Q", "vxlan", "fw"]
            .into_iter()
            .map(|m| Support::new(m, Err(why.clone())))
            .chain(std::iter::once(Support::new("dummy", Ok(()))))
            .collect()
    })
}

/// As [`probe`], but Err (why) when the throwaway namespace cannot be made: then nothing
/// was learnt about the kernel (the agent reports no capability rather than a wrong one).
pub fn try_probe() -> Result<Vec<Support>, String> {
    let ns = format!("one-probe-{}", std::process::id());
    if let Err(e) = cmd::run(Command::new("ip").args(["netns", "add", &ns])) {
        return Err(format!(
            "cannot try the drivers in a network namespace: {e}"
        ));
    }
    let out = probe_with(&System::in_netns(ns.clone()));
    if let Err(e) = cmd::run(Command::new("ip").args(["netns", "del", &ns])) {
        tracing::warn!(netns = ns, error = %e, "cannot remove the probe namespace");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vnm::fake::FakeHost;

    #[test]
    fn a_kernel_without_8021q_is_told_with_its_words() {
        let got = probe_with(&FakeHost::without_vlan());
        let by = |m: &str| got.iter().find(|s| s.vn_mad == m).unwrap().clone();
        assert!(by("bridge").ok && by("vxlan").ok && by("dummy").ok && by("fw").ok);
        let v = by("802.1Q");
        assert!(!v.ok);
        assert!(
            v.reason.contains("8021q") && v.reason.contains("Unknown device type"),
            "{}",
            v.reason
        );
        let all = probe_with(&FakeHost::new());
        assert!(all.iter().all(|s| s.ok), "{all:?}");
    }

    /// This host, for real (in a throwaway namespace): bridges and VXLAN work here;
    /// 802.1Q is reported either way, with the kernel's reason when missing.
    #[test]
    fn probe_this_host() {
        if let Some(why) = crate::vnm::tests::no_netns() {
            crate::vnm::tests::skip(&why);
            return;
        }
        let got = probe();
        println!("{got:#?}");
        for s in &got {
            if s.vn_mad == "802.1Q" && !s.ok {
                assert!(s.reason.contains("8021q"), "{}", s.reason);
                println!("SKIP-NOTE: 802.1Q unsupported here: {}", s.reason);
            } else if s.vn_mad != "fw" {
                assert!(s.ok, "{s:?}");
            }
        }
    }
}
