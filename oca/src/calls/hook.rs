//! `one.hook.*`, `one.hookpool.info`, `one.hooklog.info`.

use super::{PoolFilter, calls_struct, int, object_calls, string};
use crate::objects::hook::HookExecution;
use crate::{Hook, Object, OcaError};

calls_struct!(
    /// Hooks: `one.hook.*`, `one.hookpool.info`, `one.hooklog.info`.
    HookCalls,
    hook
);

object_calls!(
    HookCalls,
    "one.hook",
    Hook,
    [info, update, rename, lock, delete]
);

impl HookCalls<'_> {
    /// `one.hookpool.info`.
    pub async fn list(&self) -> Result<Vec<Hook>, OcaError> {
        Hook::pool_from_xml(&self.list_xml().await?)
    }

    /// `one.hookpool.info` as XML text.
    pub async fn list_xml(&self) -> Result<String, OcaError> {
        self.c
            .call_string(
                "one.hookpool.info",
                vec![int(PoolFilter::All.flag()), int(-1), int(-1)],
            )
            .await
    }

    /// `one.hook.allocate`. Returns the id.
    pub async fn allocate(&self, template: &str) -> Result<i64, OcaError> {
        self.c
            .call_int("one.hook.allocate", vec![string(template)])
            .await
    }

    /// `one.hook.retry`: runs an execution again.
    pub async fn retry(&self, id: i64, execution_id: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.hook.retry", vec![int(id), int(execution_id)])
            .await
    }

    /// `one.hooklog.info`: executions between two times (-1: no bound) of one hook (-1:
    /// all), by result (`rc` -1 failed, 1 succeeded, 0 all).
    pub async fn log(
        &self,
        min_ts: i64,
        max_ts: i64,
        hook_id: i64,
        rc: i64,
    ) -> Result<Vec<HookExecution>, OcaError> {
        let xml = self
            .c
            .call_string(
                "one.hooklog.info",
                vec![int(min_ts), int(max_ts), int(hook_id), int(rc)],
            )
            .await?;
        let doc = crate::dom::Document::parse(&xml)?;
        crate::objects::check_root(&doc, "HOOKLOG")?;
        Ok(doc
            .root()
            .children_named("HOOK_EXECUTION_RECORD")
            .map(HookExecution::from_element)
            .collect())
    }
}
