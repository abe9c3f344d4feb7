//! Named steps of an operation, and (in this crate's unit tests only) a failure injected at
//! any one of them.
//!
//! Every operation that changes files calls [`step`] before each change it makes. In a
//! release or debug build of the agent a step is nothing but a trace line. Under `cfg(test)`
//! a test can arm a plan, "fail at step N", and then check what the operation left on disk
//! when that step failed: the generic checks in `tm::testkit` run every operation once per
//! step, failing that step, and compare the files before and after (omicron's "fail at each
//! saga node" test, at the scale of one host operation).

use crate::Result;

/// Marks the start of one step of an operation (`what` names it in traces and in the error
/// a test injects).
pub fn step(what: &str) -> Result<()> {
    tracing::trace!(step = what, "step");
    plan::hit(what)
}

#[cfg(not(test))]
mod plan {
    #[inline(always)]
    pub fn hit(_what: &str) -> crate::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
pub use plan::{Plan, armed, disarm};

#[cfg(test)]
mod plan {
    use std::cell::RefCell;

    /// Which step fails (0-based) and the steps seen so far.
    #[derive(Debug, Default, Clone)]
    pub struct Plan {
        pub fail_at: Option<usize>,
        pub seen: Vec<String>,
    }

    thread_local! {
        static PLAN: RefCell<Option<Plan>> = const { RefCell::new(None) };
    }

    /// Counts steps from now on; step number `fail_at` (if any) fails with an injected error.
    pub fn armed(fail_at: Option<usize>) {
        PLAN.with(|p| {
            *p.borrow_mut() = Some(Plan {
                fail_at,
                seen: Vec::new(),
            })
        });
    }

    /// Stops counting; answers what was seen.
    pub fn disarm() -> Plan {
        PLAN.with(|p| p.borrow_mut().take()).unwrap_or_default()
    }

    pub fn hit(what: &str) -> crate::Result<()> {
        PLAN.with(|p| {
            let mut p = p.borrow_mut();
            let Some(plan) = p.as_mut() else {
                return Ok(());
            };
            let n = plan.seen.len();
            plan.seen.push(what.to_string());
            if plan.fail_at == Some(n) {
                return Err(crate::Error::Refused(format!(
                    "injected failure at step {n} ({what})"
                )));
            }
            Ok(())
        })
    }
}
