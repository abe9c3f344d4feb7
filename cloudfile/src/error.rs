//! What can go wrong, with enough context to act on: file problems carry the file, line and
//! reason ([`Diags`]); cloud problems carry the object and the call that failed.

use crate::source::Pos;
use serde::Serialize;
use std::fmt;

/// One problem in a cloud file, where it was written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diag {
    pub pos: Pos,
    pub message: String,
}

impl Diag {
    pub fn new(pos: &Pos, message: impl Into<String>) -> Diag {
        Diag {
            pos: pos.clone(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

/// Every problem found in a cloud file: reading goes on after the first so that one run
/// shows them all, in file order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Diags {
    pub items: Vec<Diag>,
}

impl Diags {
    pub fn push(&mut self, d: Diag) {
        self.items.push(d);
    }

    pub fn extend(&mut self, other: Diags) {
        self.items.extend(other.items);
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// `Ok(value)` when nothing was found, else the problems sorted by place.
    pub fn into_result<T>(mut self, value: T) -> Result<T, Diags> {
        if self.items.is_empty() {
            Ok(value)
        } else {
            self.items.sort_by(|a, b| {
                (&*a.pos.file, a.pos.line, a.pos.column).cmp(&(
                    &*b.pos.file,
                    b.pos.line,
                    b.pos.column,
                ))
            });
            self.items.dedup();
            Err(self)
        }
    }
}

impl From<Diag> for Diags {
    fn from(d: Diag) -> Diags {
        Diags { items: vec![d] }
    }
}

impl fmt::Display for Diags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diags {}

/// Errors of planning, applying and exporting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cloud file is wrong; nothing was called.
    #[error("{0}")]
    File(#[from] Diags),
    /// Reading the cloud's state failed.
    #[error("reading the cloud: {0}")]
    Read(#[source] oca::OcaError),
    /// The plan cannot be applied (objects of another cloud, changes that cannot be made in
    /// place, missing external objects, secrets that cannot be read). Nothing was changed.
    #[error("the plan cannot be applied:\n  {}", .0.join("\n  "))]
    Refused(Vec<String>),
    /// Something else (files, the git command, the metrics listener).
    #[error("{0}")]
    Other(String),
}
