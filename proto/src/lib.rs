//! one-proto: the wire formats every part of the cloud shares. No I/O lives here.

pub mod acl;
pub mod agent;
pub mod driver;
pub mod ds;
pub mod error;
pub mod objects;
pub mod state;
pub mod stream;
pub mod template;
pub mod time;
pub mod xml;
pub mod xmlrpc;

pub use error::{ApiError, ErrorCode};
pub use template::{AttrValue, Template, Vector};
