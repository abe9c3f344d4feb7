//! The XML-RPC API: method registry, parameter extraction and OpenNebula's error messages.
//!
//! Each object kind registers its methods in its own module (`api::vm`, `api::host`, ...).
//! A handler receives the authenticated [`Call`] and the parameters after the session string,
//! and answers a [`Value`] or an [`ApiError`] whose message already reads as OpenNebula's.

pub mod common;
pub mod errors;
pub mod params;

pub mod acl;
pub mod cluster;
pub mod datastore;
pub mod group;
pub mod hook;
pub mod host;
pub mod image;
pub mod monitoring;
pub mod recovery;
pub mod secgroup;
pub mod system;
pub mod user;
pub mod vm;
pub mod vm_hotplug;
pub mod vm_lifecycle;
pub mod vmtemplate;
pub mod vnet;

use crate::auth::Session;
use crate::daemon::Oned;
pub use errors::*;
use one_proto::ApiError;
use one_proto::xmlrpc::Value;
pub use params::Params;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type ApiResult = Result<Value, ApiError>;
pub type HandlerFuture = Pin<Box<dyn Future<Output = ApiResult> + Send>>;
pub type Handler = Arc<dyn Fn(Call, Params) -> HandlerFuture + Send + Sync>;

/// One authenticated API call.
#[derive(Clone)]
pub struct Call {
    /// The method name, e.g. `one.vm.info` (used in every error message).
    pub method: &'static str,
    pub session: Session,
    pub oned: Arc<Oned>,
}

/// Method name → handler.
#[derive(Default)]
pub struct Registry {
    methods: HashMap<&'static str, Handler>,
}

impl Registry {
    /// Registers `f` under `name`; a name registered twice is a programming error.
    pub fn add<F, Fut>(&mut self, name: &'static str, f: F)
    where
        F: Fn(Call, Params) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ApiResult> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |c, p| Box::pin(f(c, p)));
        let prev = self.methods.insert(name, handler);
        assert!(prev.is_none(), "method {name} registered twice");
    }

    pub fn get(&self, name: &str) -> Option<(&'static str, Handler)> {
        self.methods
            .get_key_value(name)
            .map(|(k, h)| (*k, h.clone()))
    }

    pub fn names(&self) -> impl Iterator<Item = &&'static str> {
        self.methods.keys()
    }

    /// Every method oned serves.
    pub fn full() -> Registry {
        let mut r = Registry::default();
        system::register(&mut r);
        user::register(&mut r);
        group::register(&mut r);
        acl::register(&mut r);
        cluster::register(&mut r);
        host::register(&mut r);
        datastore::register(&mut r);
        image::register(&mut r);
        vnet::register(&mut r);
        secgroup::register(&mut r);
        vmtemplate::register(&mut r);
        vm::register(&mut r);
        hook::register(&mut r);
        recovery::register(&mut r);
        vm_lifecycle::register(&mut r);
        vm_hotplug::register(&mut r);
        monitoring::register(&mut r);
        r
    }
}

/// OpenNebula's success value for an id.
pub fn ok_id(id: i64) -> ApiResult {
    Ok(Value::Int(id))
}

/// OpenNebula's success value for a document.
pub fn ok_xml(xml: String) -> ApiResult {
    Ok(Value::String(xml))
}
