//! VNC ports for VMs whose GRAPHICS gives none, as OpenNebula's VNC_PORTS: per cluster, the
//! first guess is `start + vm id`, else the lowest free port from `start`, never one of the
//! reserved ranges (`[hosts] vnc_port_start`, `vnc_ports_reserved`). A bare `5900 + id`
//! would overflow the port range past id 59,635 and collide across clusters' moves.

use crate::config::{HostsConfig, parse_reserved};
use crate::store::State;
use one_proto::objects::vm::Vm;
use one_proto::state::VmState;
use std::collections::HashSet;
use std::ops::RangeInclusive;

/// The highest TCP port.
const MAX_PORT: u32 = 65535;

/// The VNC ports VMs of cluster `cluster_id` hold (GRAPHICS/PORT of VMs not DONE whose last
/// stay is in that cluster), VM `except` left out.
pub fn used_ports(st: &State, cluster_id: i64, except: i64) -> HashSet<u32> {
    st.vms
        .iter()
        .filter(|vm| vm.state != VmState::Done && vm.header.id != except)
        .filter(|vm| vm.history.last().is_some_and(|h| h.cid == cluster_id))
        .filter_map(|vm| vm.template.vector("GRAPHICS")?.get("PORT")?.parse().ok())
        .collect()
}

/// A free port for VM `vm_id`: `start + vm_id` when free, else the lowest free port from
/// `start`; None when every port is taken or reserved.
pub fn pick(
    start: u32,
    reserved: &[RangeInclusive<u32>],
    used: &HashSet<u32>,
    vm_id: i64,
) -> Option<u32> {
    let free =
        |p: u32| p <= MAX_PORT && !used.contains(&p) && !reserved.iter().any(|r| r.contains(&p));
    let hint = u32::try_from(vm_id)
        .ok()
        .and_then(|id| start.checked_add(id))
        .filter(|p| free(*p));
    hint.or_else(|| (start..=MAX_PORT).find(|p| free(*p)))
}

/// Gives `vm` a console port in the cluster it is going to, as OpenNebula does at deploy and
/// at a migration: a VM with GRAPHICS (VNC or SPICE) keeps the PORT it has when no other VM
/// of that cluster holds it, else gets a free one. Err when none is left.
pub fn assign(cfg: &HostsConfig, st: &State, vm: &mut Vm, cluster_id: i64) -> Result<(), String> {
    let Some(g) = vm.template.vector("GRAPHICS") else {
        return Ok(());
    };
    let kind = g.get("TYPE").unwrap_or_default().to_ascii_uppercase();
    if kind != "VNC" && kind != "SPICE" {
        return Ok(());
    }
    let used = used_ports(st, cluster_id, vm.header.id);
    let current = g.get("PORT").and_then(|p| p.trim().parse::<u32>().ok());
    if current.is_some_and(|p| p > 0 && p <= MAX_PORT && !used.contains(&p)) {
        return Ok(());
    }
    // Validated at start (Config::validate).
    let reserved = parse_reserved(&cfg.vnc_ports_reserved).unwrap_or_default();
    let port = pick(cfg.vnc_port_start, &reserved, &used, vm.header.id).ok_or_else(|| {
        format!("No free VNC port left in cluster [{cluster_id}] (hosts.vnc_port_start, vnc_ports_reserved)")
    })?;
    if let Some(g) = vm.template.vector_mut("GRAPHICS") {
        g.set("PORT", port.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm_with_graphics(id: i64, port: Option<&str>) -> Vm {
        let mut vm = crate::lcm::tests_support::vm(id);
        let mut text = String::from("GRAPHICS=[TYPE=\"vnc\", LISTEN=\"0.0.0.0\"");
        if let Some(p) = port {
            text.push_str(&format!(", PORT=\"{p}\""));
        }
        text.push(']');
        vm.template = one_proto::template::Template::parse(&text).unwrap();
        vm
    }

    #[test]
    fn assign_keeps_a_free_port_and_replaces_a_taken_one() {
        let cfg = HostsConfig::default();
        let st = State::default();
        let mut vm = vm_with_graphics(3, None);
        assign(&cfg, &st, &mut vm, 0).unwrap();
        assert_eq!(
            vm.template.vector("GRAPHICS").unwrap().get("PORT"),
            Some("5903")
        );
        let mut given = vm_with_graphics(4, Some("6000"));
        assign(&cfg, &st, &mut given, 0).unwrap();
        assert_eq!(
            given.template.vector("GRAPHICS").unwrap().get("PORT"),
            Some("6000")
        );
        // No GRAPHICS: nothing to do.
        let mut bare = crate::lcm::tests_support::vm(5);
        assign(&cfg, &st, &mut bare, 0).unwrap();
        assert!(bare.template.vector("GRAPHICS").is_none());
    }

    #[test]
    fn reserved_ranges() {
        assert_eq!(parse_reserved("").unwrap(), vec![]);
        assert_eq!(
            parse_reserved("32768:65536, 5901").unwrap(),
            vec![32768..=65536, 5901..=5901]
        );
        assert!(parse_reserved("9:1").is_err());
        assert!(parse_reserved("a:b").is_err());
    }

    #[test]
    fn hint_first_then_lowest_free_never_reserved() {
        let reserved = parse_reserved("32768:65536").unwrap();
        let mut used = HashSet::new();
        assert_eq!(pick(5900, &reserved, &used, 7), Some(5907));
        used.insert(5907);
        assert_eq!(pick(5900, &reserved, &used, 7), Some(5900));
        // An id whose hint falls in the reserved range, or past the port range.
        assert_eq!(pick(5900, &reserved, &used, 30_000), Some(5900));
        assert_eq!(pick(5900, &[], &used, 70_000), Some(5900));
        // Everything from start taken.
        let all: HashSet<u32> = (5900..=32767).collect();
        assert_eq!(pick(5900, &reserved, &all, 1), None);
    }
}
