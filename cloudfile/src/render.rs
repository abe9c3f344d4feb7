//! Plans and apply reports as people read them.

use crate::apply::ApplyReport;
use crate::diff::AttrDiff;
use crate::plan::{Action, Change, Plan};
use std::fmt::Write;

fn quote(v: &Option<String>) -> String {
    match v {
        Some(s) => format!("{s:?}"),
        None => "(none)".into(),
    }
}

/// One attribute change: `DNS: "1.1.1.1" -> "8.8.8.8"`, `+ DNS: "8.8.8.8"`, `- DNS: "1.1.1.1"`.
pub fn diff_line(d: &AttrDiff) -> String {
    match (&d.old, &d.new) {
        (None, Some(n)) => format!("+ {}: {n:?}", d.attr),
        (Some(o), None) => format!("- {}: {o:?}", d.attr),
        _ => format!("~ {}: {} -> {}", d.attr, quote(&d.old), quote(&d.new)),
    }
}

/// `network lab-net (id 3)`.
pub fn change_title(c: &Change) -> String {
    let noun = change_noun(c.kind);
    match c.id {
        Some(id) => format!("{noun} {} (id {id})", c.name),
        None => format!("{noun} {}", c.name),
    }
}

/// A change's noun: changes of a VM set are about one VM each.
fn change_noun(kind: crate::Kind) -> &'static str {
    if kind == crate::Kind::Vm {
        "VM"
    } else {
        kind.noun()
    }
}

/// The whole plan: one entry per object in apply order, with its attribute changes, then
/// the notes, the refusals and the counts.
pub fn plan_text(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Cloud {:?}, as user {}:", plan.cloud, plan.user);
    if plan.changes.is_empty() {
        let _ = writeln!(s, "  (the file declares nothing)");
    }
    for c in &plan.changes {
        let _ = writeln!(
            s,
            "  {} {:<48} {}",
            c.action.symbol(),
            change_title(c),
            c.action.word()
        );
        for d in &c.diffs {
            let _ = writeln!(s, "      {}", diff_line(d));
        }
        for n in &c.notes {
            if c.action != Action::Nothing || !n.is_empty() {
                let _ = writeln!(s, "      ({n})");
            }
        }
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(s, "\nNotes:");
        for n in &plan.notes {
            let _ = writeln!(s, "  {n}");
        }
    }
    if !plan.refusals.is_empty() {
        let _ = writeln!(s, "\nThis plan cannot be applied:");
        for r in &plan.refusals {
            let _ = writeln!(s, "  {r}");
        }
    }
    let m = &plan.summary;
    let _ = writeln!(
        s,
        "\nPlan: {} to create, {} to update, {} to delete, {} to adopt, {} to replace, {} unchanged.",
        m.create, m.update, m.delete, m.adopt, m.replace, m.unchanged
    );
    if !plan.has_changes() && plan.refusals.is_empty() {
        let _ = writeln!(s, "Nothing to do: the cloud matches the file.");
    }
    s
}

/// What apply did, and when it stopped, what it did not do.
pub fn report_text(r: &ApplyReport) -> String {
    let mut s = String::new();
    match &r.failed {
        None => {
            let _ = writeln!(s, "Apply complete: {} changes made.", r.done.len());
        }
        Some(f) => {
            let _ = writeln!(
                s,
                "Apply stopped: {} {} failed ({}): {}",
                change_noun(f.kind),
                f.name,
                f.action.word(),
                f.error
            );
            let _ = writeln!(s, "Done ({}):", r.done.len());
            for o in &r.done {
                let _ = writeln!(
                    s,
                    "  {} {} {}",
                    o.action.word(),
                    change_noun(o.kind),
                    o.name
                );
            }
            let _ = writeln!(s, "Not done ({}):", r.not_done.len() + 1);
            let _ = writeln!(
                s,
                "  {} {} {} (failed)",
                f.action.word(),
                change_noun(f.kind),
                f.name
            );
            for o in &r.not_done {
                let _ = writeln!(
                    s,
                    "  {} {} {}",
                    o.action.word(),
                    change_noun(o.kind),
                    o.name
                );
            }
        }
    }
    s
}
