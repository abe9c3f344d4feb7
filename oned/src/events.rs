//! The event bus between the places where things happen and the hook manager.
//!
//! * State events come from [`crate::store::Txn::commit`]: a committed VM, host, image or
//!   network that is new or whose state changed, carrying the committed object.
//! * API events come from the server after a handler answered.
//! * Retry requests come from `one.hook.retry`.
//!
//! Nothing is built unless somebody listens: the store checks one atomic mask of the
//! resources some state hook watches, the server one set of the methods some API hook
//! watches; the hook manager keeps both up to date ([`EventBus::set_watch`]).

use crate::store::{AnyObject, Kind, State};
use one_proto::ApiError;
use one_proto::objects::{host::Host, image::Image, vm::Vm, vnet::Vnet};
use one_proto::xmlrpc::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use tokio::sync::mpsc;

/// The resources state hooks can watch, as bits of the watch mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    Vm = 1,
    Host = 2,
    Image = 4,
    Vnet = 8,
}

impl Resource {
    pub fn bit(self) -> u8 {
        self as u8
    }

    pub fn of_kind(kind: Kind) -> Option<Resource> {
        match kind {
            Kind::Vm => Some(Resource::Vm),
            Kind::Host => Some(Resource::Host),
            Kind::Image => Some(Resource::Image),
            Kind::Vnet => Some(Resource::Vnet),
            _ => None,
        }
    }

    /// The RESOURCE value of hook templates (OpenNebula's object type names: NET, not VNET).
    pub fn name(self) -> &'static str {
        match self {
            Resource::Vm => "VM",
            Resource::Host => "HOST",
            Resource::Image => "IMAGE",
            Resource::Vnet => "NET",
        }
    }

    /// Parses RESOURCE; VNET is accepted for NET (the name of the network's document).
    pub fn parse(s: &str) -> Option<Resource> {
        match s.trim().to_ascii_uppercase().as_str() {
            "VM" => Some(Resource::Vm),
            "HOST" => Some(Resource::Host),
            "IMAGE" => Some(Resource::Image),
            "NET" | "VNET" => Some(Resource::Vnet),
            _ => None,
        }
    }
}

/// The object of a state event, as committed.
#[derive(Clone, Debug)]
pub enum StateObject {
    Vm(Arc<Vm>),
    Host(Arc<Host>),
    Image(Arc<Image>),
    Vnet(Arc<Vnet>),
}

impl StateObject {
    pub fn resource(&self) -> Resource {
        match self {
            StateObject::Vm(_) => Resource::Vm,
            StateObject::Host(_) => Resource::Host,
            StateObject::Image(_) => Resource::Image,
            StateObject::Vnet(_) => Resource::Vnet,
        }
    }

    pub fn id(&self) -> i64 {
        match self {
            StateObject::Vm(o) => o.header.id,
            StateObject::Host(o) => o.id,
            StateObject::Image(o) => o.header.id,
            StateObject::Vnet(o) => o.header.id,
        }
    }

    /// STATE as OpenNebula names it (`ACTIVE`, `MONITORED`, `READY`, ...).
    pub fn state_name(&self) -> &'static str {
        match self {
            StateObject::Vm(o) => o.state.name(),
            StateObject::Host(o) => o.state.name(),
            StateObject::Image(o) => o.state.name(),
            StateObject::Vnet(o) => o.state.name(),
        }
    }

    /// LCM_STATE of a VM (`RUNNING`, `LCM_INIT`, ...); None for other objects.
    pub fn lcm_state_name(&self) -> Option<&'static str> {
        match self {
            StateObject::Vm(o) => Some(o.lcm_state.name()),
            _ => None,
        }
    }

    /// The hypervisor host the event concerns: a VM's current host, a host itself.
    pub fn remote_host(&self) -> Option<String> {
        match self {
            StateObject::Vm(o) => o.last_history().map(|h| h.hostname.clone()),
            StateObject::Host(o) => Some(o.name.clone()),
            _ => None,
        }
    }
}

/// An API call that some API hook watches, after its handler answered.
#[derive(Debug)]
pub struct ApiEvent {
    pub method: &'static str,
    /// The caller.
    pub uid: i64,
    /// The parameters after the session.
    pub params: Vec<Value>,
    pub outcome: Result<Value, ApiError>,
    /// The document of the object the call allocated or deleted (CALL_INFO's EXTRA).
    pub extra: Option<String>,
}

#[derive(Debug)]
pub enum Event {
    State(StateObject),
    Api(Box<ApiEvent>),
    /// `one.hook.retry`: run a recorded execution again.
    Retry {
        hook_id: i64,
        execution_id: i64,
    },
}

/// Who listens, and the channel to the hook manager.
#[derive(Default)]
pub struct EventBus {
    sender: OnceLock<mpsc::UnboundedSender<Event>>,
    /// Bits of the [`Resource`]s some state hook watches.
    state_mask: AtomicU8,
    /// Whether `api_calls` is non-empty (spares the lock on every call when there are no hooks).
    api_any: AtomicBool,
    api_calls: RwLock<HashSet<String>>,
}

impl EventBus {
    /// Connects the (single) consumer; None when one is already connected.
    pub fn connect(&self) -> Option<mpsc::UnboundedReceiver<Event>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.sender.set(tx).ok()?;
        Some(rx)
    }

    /// Sends an event to the consumer; dropped when nobody is connected.
    pub fn send(&self, ev: Event) {
        if let Some(tx) = self.sender.get()
            && tx.send(ev).is_err()
        {
            tracing::warn!("hook manager gone; event dropped");
        }
    }

    /// The resources state hooks watch, as a mask of [`Resource::bit`]s.
    pub fn state_mask(&self) -> u8 {
        if self.sender.get().is_none() {
            return 0;
        }
        self.state_mask.load(Ordering::Acquire)
    }

    /// Whether some API hook watches `method`.
    pub fn watches_api(&self, method: &str) -> bool {
        self.sender.get().is_some()
            && self.api_any.load(Ordering::Acquire)
            && self
                .api_calls
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(method)
    }

    /// Replaces what is watched (the hook manager calls it whenever hooks change).
    pub fn set_watch(&self, state_mask: u8, api_calls: HashSet<String>) {
        let any = !api_calls.is_empty();
        *self.api_calls.write().unwrap_or_else(|e| e.into_inner()) = api_calls;
        self.api_any.store(any, Ordering::Release);
        self.state_mask.store(state_mask, Ordering::Release);
    }
}

/// Called by `Txn::commit` under the write lock, before a change is applied: whether it makes
/// a state event (a watched kind, put, and new or with a state other than the committed one).
pub fn state_changed(
    state: &State,
    mask: u8,
    key: (Kind, i64),
    change: &Option<AnyObject>,
) -> bool {
    let (kind, id) = key;
    if Resource::of_kind(kind).is_none_or(|r| mask & r.bit() == 0) {
        return false;
    }
    match change {
        Some(AnyObject::Vm(new)) => state
            .vms
            .get(id)
            .is_none_or(|old| old.state != new.state || old.lcm_state != new.lcm_state),
        Some(AnyObject::Host(new)) => state.hosts.get(id).is_none_or(|old| old.state != new.state),
        Some(AnyObject::Image(new)) => state
            .images
            .get(id)
            .is_none_or(|old| old.state != new.state),
        Some(AnyObject::Vnet(new)) => state.vnets.get(id).is_none_or(|old| old.state != new.state),
        _ => false,
    }
}

/// Called by `Txn::commit` after applying: the events of the keys [`state_changed`] picked,
/// each with the object now in the pool.
pub fn state_events(state: &State, keys: &[(Kind, i64)]) -> Vec<Event> {
    keys.iter()
        .filter_map(|&(kind, id)| {
            let obj = match kind {
                Kind::Vm => StateObject::Vm(state.vms.get(id)?.clone()),
                Kind::Host => StateObject::Host(state.hosts.get(id)?.clone()),
                Kind::Image => StateObject::Image(state.images.get(id)?.clone()),
                Kind::Vnet => StateObject::Vnet(state.vnets.get(id)?.clone()),
                _ => return None,
            };
            Some(Event::State(obj))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse_as_opennebula_names_them() {
        assert_eq!(Resource::parse("vm"), Some(Resource::Vm));
        assert_eq!(Resource::parse("NET"), Some(Resource::Vnet));
        assert_eq!(Resource::parse("VNET"), Some(Resource::Vnet));
        assert_eq!(Resource::parse("DATASTORE"), None);
        assert_eq!(Resource::Vnet.name(), "NET");
        assert_eq!(Resource::of_kind(Kind::Cluster), None);
    }

    #[test]
    fn bus_is_silent_until_connected_and_watching() {
        let bus = EventBus::default();
        bus.set_watch(
            Resource::Host.bit(),
            HashSet::from(["one.vm.allocate".to_string()]),
        );
        // Nobody connected: nothing is watched, whatever the sets say.
        assert_eq!(bus.state_mask(), 0);
        assert!(!bus.watches_api("one.vm.allocate"));
        let mut rx = bus.connect().unwrap();
        assert!(bus.connect().is_none(), "one consumer only");
        assert_eq!(bus.state_mask(), Resource::Host.bit());
        assert!(bus.watches_api("one.vm.allocate"));
        assert!(!bus.watches_api("one.vm.delete"));
        bus.send(Event::Retry {
            hook_id: 1,
            execution_id: 2,
        });
        assert!(matches!(
            rx.try_recv(),
            Ok(Event::Retry {
                hook_id: 1,
                execution_id: 2
            })
        ));
        bus.set_watch(0, HashSet::new());
        assert!(!bus.watches_api("one.vm.allocate"));
    }

    fn host(id: i64, state: one_proto::state::HostState) -> Host {
        Host {
            id,
            name: format!("h{id}"),
            state,
            prev_state: state,
            im_mad: "dummy".into(),
            vm_mad: "dummy".into(),
            cluster_id: 0,
            cluster: "default".into(),
            share: Default::default(),
            vms: vec![],
            template: Default::default(),
            monitoring: None,
        }
    }

    fn received(rx: &mut mpsc::UnboundedReceiver<Event>) -> Vec<(i64, &'static str)> {
        let mut out = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            match ev {
                Event::State(o) => out.push((o.id(), o.state_name())),
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    #[tokio::test]
    async fn commits_emit_state_events_for_new_objects_and_state_changes_only() {
        use crate::db::Db;
        use crate::store::Store;
        use one_proto::state::HostState;
        let dir = std::env::temp_dir().join(format!("oned-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/one.db?mode=rwc", dir.display());
        let store = Store::load(Db::open(&url, false).await.unwrap())
            .await
            .unwrap();
        let mut rx = store.events.connect().unwrap();
        let commit = |hosts: Vec<Host>| {
            let store = &store;
            async move {
                let mut tx = store.begin().await;
                for h in hosts {
                    tx.put(h);
                }
                tx.commit().await.unwrap();
            }
        };

        // Nobody watches hosts: nothing is sent.
        commit(vec![host(1, HostState::Init)]).await;
        assert!(received(&mut rx).is_empty());

        store.events.set_watch(Resource::Host.bit(), HashSet::new());
        // A new host, and a known one entering a new state.
        commit(vec![
            host(2, HostState::Init),
            host(1, HostState::Monitored),
        ])
        .await;
        assert_eq!(received(&mut rx), [(2, "INIT"), (1, "MONITORED")]);
        // Same state, other changes: nothing.
        let mut h = host(1, HostState::Monitored);
        h.name = "renamed".into();
        commit(vec![h]).await;
        assert!(received(&mut rx).is_empty());
        // The event carries the committed object.
        let mut h = host(1, HostState::Error);
        h.name = "broken".into();
        commit(vec![h]).await;
        match rx.try_recv() {
            Ok(Event::State(StateObject::Host(h))) => {
                assert_eq!((h.name.as_str(), h.state), ("broken", HostState::Error));
                assert!(Arc::ptr_eq(&h, &store.get::<Host>(1).unwrap()));
            }
            other => panic!("expected the host, got {other:?}"),
        }
        // Deleting is not a state.
        let mut tx = store.begin().await;
        tx.delete::<Host>(2);
        tx.commit().await.unwrap();
        // A failed or dropped transaction sends nothing.
        let mut tx = store.begin().await;
        tx.put(host(1, HostState::Disabled));
        drop(tx);
        assert!(received(&mut rx).is_empty());
        store.db.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
