//! oned: the cloud's central daemon.
//!
//! Layout: [`server`] speaks HTTP/XML-RPC, [`api`] holds one module per object kind,
//! [`authz`] decides every call, [`store`] keeps the pools in memory over the [`db`].

pub mod api;
pub mod auth;
pub mod authz;
pub mod bootstrap;
pub mod config;
pub mod context;
pub mod daemon;
pub mod datadir;
pub mod db;
pub mod doc;
pub mod driver;
pub mod events;
pub mod hooks;
pub mod hostmgr;
pub mod lcm;
pub mod metrics;
pub mod monitor;
pub mod ops;
pub mod recovery;
pub mod run;
pub mod secgroup;
pub mod server;
pub mod store;
