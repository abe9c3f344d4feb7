//! Undo as a value: an operation pushes how to take back each change it makes, and unless it
//! reaches [`Revert::success`], the undos run in reverse order when the `Revert` is dropped.
//!
//! ```
//! use one_drivers::Revert;
//! let log = std::cell::RefCell::new(Vec::new());
//! {
//!     let mut r = Revert::new();
//!     r.add("first", || { log.borrow_mut().push("undo first"); Ok(()) });
//!     r.add("second", || { log.borrow_mut().push("undo second"); Ok(()) });
//!     // an error here: `r` is dropped without success()
//! }
//! assert_eq!(*log.borrow(), ["undo second", "undo first"]);
//! ```

use crate::Result;

type Undo<'a> = Box<dyn FnOnce() -> Result<()> + 'a>;

#[derive(Default)]
pub struct Revert<'a> {
    undos: Vec<(String, Undo<'a>)>,
}

impl<'a> Revert<'a> {
    pub fn new() -> Revert<'a> {
        Revert { undos: Vec::new() }
    }

    /// Registers how to take back a change just made; `what` names it in the log if the undo
    /// itself fails.
    pub fn add(&mut self, what: impl Into<String>, undo: impl FnOnce() -> Result<()> + 'a) {
        self.undos.push((what.into(), Box::new(undo)));
    }

    /// The operation reached its end: nothing is undone.
    pub fn success(mut self) {
        self.undos.clear();
    }

    /// Runs the undos now, newest first, and answers the ones that failed (also logged).
    pub fn unwind(mut self) -> Vec<String> {
        self.run()
    }

    fn run(&mut self) -> Vec<String> {
        let mut failed = Vec::new();
        while let Some((what, undo)) = self.undos.pop() {
            if let Err(e) = undo() {
                tracing::warn!(undo = %what, error = %e, "undo failed");
                failed.push(format!("{what}: {e}"));
            }
        }
        failed
    }
}

impl Drop for Revert<'_> {
    fn drop(&mut self) {
        self.run();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn success_keeps_every_change() {
        let n = RefCell::new(0);
        let mut r = Revert::new();
        r.add("a", || {
            *n.borrow_mut() += 1;
            Ok(())
        });
        r.success();
        assert_eq!(*n.borrow(), 0);
    }

    #[test]
    fn unwind_reports_failed_undos_and_runs_the_rest() {
        let log = RefCell::new(Vec::new());
        let mut r = Revert::new();
        r.add("a", || {
            log.borrow_mut().push("a");
            Ok(())
        });
        r.add("b", || {
            Err(crate::Error::Refused("b cannot be undone".into()))
        });
        let failed = r.unwind();
        assert_eq!(failed, ["b: b cannot be undone"]);
        assert_eq!(*log.borrow(), ["a"]);
    }
}
