//! oca: an async OpenNebula Cloud API client.
//!
//! * [`Client`]: one endpoint and one session (`user:password` or `user:token`), cheap to
//!   clone; [`Client::with_session`] gives another user's client over the same connections.
//!   Built from explicit values ([`Client::new`]) or found as OpenNebula's clients find them
//!   ([`Client::from_env`]: `ONE_XMLRPC`, `ONE_AUTH`, `~/.one/`).
//! * Typed calls grouped like OpenNebula's methods: `client.vm().info(7)` is `one.vm.info`,
//!   `client.vm().list(&query)` is `one.vmpool.info`; see [`calls`]. [`Client::call`] stays
//!   for anything else.
//! * Typed documents ([`Vm`], [`Host`], [`Image`], [`VirtualNetwork`], [`VmTemplate`],
//!   [`Datastore`], [`User`], [`Group`], [`Cluster`], [`AclRule`], [`Hook`]) with every
//!   template section as a generic [`Template`], all serializable with serde; see
//!   [`objects`].
//! * [`OcaError::Api`] keeps OpenNebula's method, message and code.
//! * [`render`]: a document as the Ruby CLI prints it with `-j`, `-y`, `-x`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), oca::OcaError> {
//! let client = oca::Client::from_env()?;
//! println!("oned {}", client.system().version().await?);
//! for vm in client.vm().list(&oca::VmQuery::default()).await? {
//!     println!("{} {} {}", vm.id, vm.name, vm.short_state());
//! }
//! # Ok(())
//! # }
//! ```

pub mod calls;
mod client;
mod discovery;
pub mod dom;
mod error;
pub mod objects;
pub mod render;
pub mod template;

pub use calls::acl::AclCalls;
pub use calls::cluster::{ClusterCalls, ClusterMember};
pub use calls::datastore::DatastoreCalls;
pub use calls::group::GroupCalls;
pub use calls::hook::HookCalls;
pub use calls::host::{HostCalls, HostStatus};
pub use calls::image::ImageCalls;
pub use calls::system::SystemCalls;
pub use calls::upload::UploadTicket;
pub use calls::user::{TokenLife, UserCalls};
pub use calls::vm::{MigrationType, RecoverOp, VmAction, VmCalls, VmQuery, VmStateFilter};
pub use calls::vmtemplate::TemplateCalls;
pub use calls::vnet::VnetCalls;
pub use calls::{Chmod, LockLevel, PoolFilter, PoolRange, UpdateMode};
pub use client::Client;
pub use discovery::{DEFAULT_ENDPOINT, Discovery, SYSTEM_ONE_DIR};
pub use error::{ApiFailure, OcaError};
pub use objects::acl::AclRule;
pub use objects::cluster::Cluster;
pub use objects::datastore::Datastore;
pub use objects::group::Group;
pub use objects::hook::{Hook, HookExecution};
pub use objects::host::{Host, HostDatastore, HostShare};
pub use objects::image::Image;
pub use objects::quota::{QuotaLimit, Quotas};
pub use objects::user::{LoginToken, User};
pub use objects::vm::{DiskSnapshot, DiskSnapshots, History, Vm};
pub use objects::vmtemplate::VmTemplate;
pub use objects::vnet::{AddressRange, VirtualNetwork};
pub use objects::{Lock, Object, Ownership, Permissions};
pub use one_proto::state::{
    DatastoreState, DatastoreType, HostState, ImageState, ImageType, LcmState, VmState, VnetState,
};
pub use one_proto::xmlrpc::{Limits, Value};
pub use one_proto::{ApiError, ErrorCode};
pub use template::{AttrValue, Template, Vector, serde_template, serde_vector, serde_vectors};
