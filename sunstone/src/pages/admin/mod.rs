//! The admin view (users of group oneadmin): hosts, clusters, datastores, virtual networks,
//! users, groups, quotas, ACL rules. The pages are reachable by anybody who types their URL,
//! but every call they make is oned's to allow or refuse: a plain user sees oned's refusal.

pub mod accounts;
pub mod hosts;
pub mod infra;
pub mod vnets;
