//! `HOOK` (hook.xsd) and `HOOK_POOL`.

use super::{Lock, Object, int, int_or, text};
use crate::dom::Element;
use crate::template::{Template, serde_template};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hook {
    pub id: i64,
    pub name: String,
    /// `state` or `api`.
    #[serde(rename = "type")]
    pub hook_type: String,
    pub lock: Option<Lock>,
    #[serde(with = "serde_template")]
    pub template: Template,
    /// The execution records the server returned with the hook (`HOOKLOG`).
    pub log: Vec<HookExecution>,
}

/// One execution of a hook (`HOOK_EXECUTION_RECORD`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookExecution {
    pub hook_id: i64,
    pub execution_id: i64,
    pub timestamp: i64,
    /// The arguments as passed (base64 for `$TEMPLATE`).
    pub arguments: String,
    pub command: String,
    /// Base64 of the command's stdout and stderr, as OpenNebula sends them.
    pub stdout: String,
    pub stderr: String,
    pub code: i64,
}

impl HookExecution {
    pub(crate) fn from_element(e: Element<'_>) -> HookExecution {
        let r = e.child("EXECUTION_RESULT");
        let rt = |n: &str| r.map(|r| text(r, n)).unwrap_or_default();
        HookExecution {
            hook_id: int(e, "HOOK_ID"),
            execution_id: int(e, "EXECUTION_ID"),
            timestamp: int(e, "TIMESTAMP"),
            arguments: text(e, "ARGUMENTS"),
            command: rt("COMMAND"),
            stdout: rt("STDOUT"),
            stderr: rt("STDERR"),
            code: r.map_or(-1, |r| int_or(r, "CODE", -1)),
        }
    }
}

impl Object for Hook {
    const ROOT: &'static str = "HOOK";
    const POOL_ROOT: &'static str = "HOOK_POOL";
    const KIND: &'static str = "hook";

    fn from_element(e: Element<'_>) -> Hook {
        Hook {
            id: int(e, "ID"),
            name: text(e, "NAME"),
            hook_type: text(e, "TYPE"),
            lock: Lock::from_parent(e),
            template: crate::template::child_template(e, "TEMPLATE"),
            log: e
                .child("HOOKLOG")
                .map(|l| {
                    l.children_named("HOOK_EXECUTION_RECORD")
                        .map(HookExecution::from_element)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn id(&self) -> i64 {
        self.id
    }

    fn name(&self) -> &str {
        &self.name
    }
}
