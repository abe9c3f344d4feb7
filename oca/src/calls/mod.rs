//! Typed calls, grouped by object kind the way OpenNebula names its methods:
//! `client.vm().info(7)` is `one.vm.info(7)`, `client.vm().list(..)` is `one.vmpool.info`.
//!
//! Every call that reads a document has a `*_xml` twin returning the document's text, for
//! clients that print or forward it (`onevm show -x`). Calls that only change something
//! return `()` (OpenNebula answers the object's id, which the caller already has).

use crate::{Client, OcaError, Value};

pub mod acl;
pub mod cluster;
pub mod console;
pub mod datastore;
pub mod group;
pub mod hook;
pub mod host;
pub mod image;
pub mod system;
pub mod upload;
pub mod user;
pub mod vm;
pub mod vmtemplate;
pub mod vnet;

pub(crate) fn int(v: i64) -> Value {
    Value::Int(v)
}

pub(crate) fn string(s: &str) -> Value {
    Value::String(s.to_owned())
}

pub(crate) fn boolean(b: bool) -> Value {
    Value::Bool(b)
}

/// Whose objects a pool call returns (OpenNebula's filter flag).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PoolFilter {
    /// Every object the user may see (-2).
    #[default]
    All,
    /// The user's own (-3).
    Mine,
    /// The user's own and those of the user's groups (-1).
    MineAndGroups,
    /// Those of the user's primary group (-4).
    PrimaryGroup,
    /// Those of one user (its uid).
    User(i64),
}

impl PoolFilter {
    pub fn flag(self) -> i64 {
        match self {
            PoolFilter::All => -2,
            PoolFilter::Mine => -3,
            PoolFilter::MineAndGroups => -1,
            PoolFilter::PrimaryGroup => -4,
            PoolFilter::User(uid) => uid,
        }
    }
}

/// Which part of a pool to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolRange {
    pub start: i64,
    pub end: i64,
}

impl Default for PoolRange {
    /// Everything.
    fn default() -> Self {
        PoolRange { start: -1, end: -1 }
    }
}

impl PoolRange {
    /// Objects with ids from `first` to `last`, both included.
    pub fn ids(first: i64, last: i64) -> Self {
        PoolRange {
            start: first,
            end: last,
        }
    }

    /// A page: `size` objects after skipping `offset` (OpenNebula's `end < -1` form).
    pub fn page(offset: i64, size: i64) -> Self {
        PoolRange {
            start: offset,
            end: -size.max(2),
        }
    }
}

/// How `update` calls change a template.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpdateMode {
    /// Replace the whole (user) template (0).
    #[default]
    Replace,
    /// Merge: the given attributes replace those of the same name (1).
    Merge,
}

impl UpdateMode {
    pub(crate) fn num(self) -> i64 {
        match self {
            UpdateMode::Replace => 0,
            UpdateMode::Merge => 1,
        }
    }
}

/// The nine bits of a `chmod` call; `None` leaves a bit as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Chmod {
    pub bits: [Option<bool>; 9],
}

impl Chmod {
    /// All nine bits from an octal mode (`0o640`).
    pub fn octal(mode: u32) -> Chmod {
        let p = crate::Permissions::from_octal(mode);
        Chmod {
            bits: [
                p.owner_u, p.owner_m, p.owner_a, p.group_u, p.group_m, p.group_a, p.other_u,
                p.other_m, p.other_a,
            ]
            .map(Some),
        }
    }

    /// An octal mode as the CLI takes it (`640`, `0640`); `None` if it is not one.
    pub fn parse_octal(s: &str) -> Option<Chmod> {
        let s = s.trim();
        if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return None;
        }
        u32::from_str_radix(s, 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .map(Chmod::octal)
    }

    pub(crate) fn params(&self) -> Vec<Value> {
        self.bits
            .iter()
            .map(|b| Value::Int(b.map_or(-1, i64::from)))
            .collect()
    }
}

/// Lock levels of `lock` calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LockLevel {
    /// Blocks use, manage and admin operations (1).
    #[default]
    Use,
    /// Blocks manage and admin operations (2).
    Manage,
    /// Blocks admin operations (3).
    Admin,
    /// Everything (4).
    All,
}

impl LockLevel {
    pub(crate) fn num(self) -> i64 {
        match self {
            LockLevel::Use => 1,
            LockLevel::Manage => 2,
            LockLevel::Admin => 3,
            LockLevel::All => 4,
        }
    }
}

impl Client {
    /// A call whose answer is only success or failure (the value, an id, is dropped).
    pub(crate) async fn call_done(&self, method: &str, params: Vec<Value>) -> Result<(), OcaError> {
        self.call(method, params).await.map(|_| ())
    }
}

/// Generates the calls every object kind shares, as methods of a `*Calls` struct holding
/// `c: &Client`. Ops: info, update, rename, chown, chmod, lock, delete.
macro_rules! object_calls {
    ($calls:ident, $prefix:literal, $obj:ty, [$($op:ident),* $(,)?]) => {
        impl $calls<'_> {
            $( object_calls!(@$op $prefix, $obj); )*
        }
    };
    (@info $p:literal, $obj:ty) => {
        #[doc = concat!("`", $p, ".info`: the object's document.")]
        pub async fn info(&self, id: i64) -> Result<$obj, $crate::OcaError> {
            <$obj as $crate::Object>::from_xml(&self.info_xml(id).await?)
        }

        #[doc = concat!("`", $p, ".info`: the object's document as XML text.")]
        pub async fn info_xml(&self, id: i64) -> Result<String, $crate::OcaError> {
            self.c
                .call_string(
                    concat!($p, ".info"),
                    vec![$crate::calls::int(id), $crate::calls::boolean(false)],
                )
                .await
        }
    };
    (@update $p:literal, $obj:ty) => {
        #[doc = concat!("`", $p, ".update`: replaces or merges (`mode`) the template.")]
        pub async fn update(
            &self,
            id: i64,
            template: &str,
            mode: $crate::UpdateMode,
        ) -> Result<(), $crate::OcaError> {
            self.c
                .call_done(
                    concat!($p, ".update"),
                    vec![
                        $crate::calls::int(id),
                        $crate::calls::string(template),
                        $crate::calls::int(mode.num()),
                    ],
                )
                .await
        }
    };
    (@rename $p:literal, $obj:ty) => {
        #[doc = concat!("`", $p, ".rename`.")]
        pub async fn rename(&self, id: i64, name: &str) -> Result<(), $crate::OcaError> {
            self.c
                .call_done(
                    concat!($p, ".rename"),
                    vec![$crate::calls::int(id), $crate::calls::string(name)],
                )
                .await
        }
    };
    (@chown $p:literal, $obj:ty) => {
        #[doc = concat!("`", $p, ".chown`: new owner and group (-1 keeps either).")]
        pub async fn chown(&self, id: i64, uid: i64, gid: i64) -> Result<(), $crate::OcaError> {
            self.c
                .call_done(
                    concat!($p, ".chown"),
                    vec![
                        $crate::calls::int(id),
                        $crate::calls::int(uid),
                        $crate::calls::int(gid),
                    ],
                )
                .await
        }
    };
    (@chmod $p:literal, $obj:ty) => {
        #[doc = concat!("`", $p, ".chmod`.")]
        pub async fn chmod(&self, id: i64, mode: &$crate::Chmod) -> Result<(), $crate::OcaError> {
            let mut params = vec![$crate::calls::int(id)];
            params.extend(mode.params());
            self.c.call_done(concat!($p, ".chmod"), params).await
        }
    };
    (@lock $p:literal, $obj:ty) => {
        #[doc = concat!("`", $p, ".lock`.")]
        pub async fn lock(&self, id: i64, level: $crate::LockLevel) -> Result<(), $crate::OcaError> {
            self.c
                .call_done(
                    concat!($p, ".lock"),
                    vec![$crate::calls::int(id), $crate::calls::int(level.num())],
                )
                .await
        }

        #[doc = concat!("`", $p, ".unlock`.")]
        pub async fn unlock(&self, id: i64) -> Result<(), $crate::OcaError> {
            self.c
                .call_done(concat!($p, ".unlock"), vec![$crate::calls::int(id)])
                .await
        }
    };
    (@delete $p:literal, $obj:ty) => {
        #[doc = concat!("`", $p, ".delete`.")]
        pub async fn delete(&self, id: i64) -> Result<(), $crate::OcaError> {
            self.c
                .call_done(concat!($p, ".delete"), vec![$crate::calls::int(id)])
                .await
        }
    };
}

pub(crate) use object_calls;

/// Declares a `*Calls` struct and its `Client` accessor.
macro_rules! calls_struct {
    ($(#[$m:meta])* $calls:ident, $accessor:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug)]
        pub struct $calls<'a> {
            pub(crate) c: &'a $crate::Client,
        }

        impl $crate::Client {
            $(#[$m])*
            pub fn $accessor(&self) -> $calls<'_> {
                $calls { c: self }
            }
        }
    };
}

pub(crate) use calls_struct;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_octal() {
        let c = Chmod::parse_octal("640").unwrap();
        let p: Vec<i64> = c
            .params()
            .into_iter()
            .map(|v| match v {
                Value::Int(n) => n,
                _ => panic!(),
            })
            .collect();
        assert_eq!(p, [1, 1, 0, 1, 0, 0, 0, 0, 0]);
        assert!(Chmod::parse_octal("800").is_none());
        assert!(Chmod::parse_octal("u=rw").is_none());
        assert!(Chmod::parse_octal("0644").is_some());
    }

    #[test]
    fn pool_ranges_and_filters() {
        assert_eq!(
            PoolRange::page(100, 50),
            PoolRange {
                start: 100,
                end: -50
            }
        );
        assert_eq!(PoolFilter::User(5).flag(), 5);
        assert_eq!(PoolFilter::default().flag(), -2);
    }
}
