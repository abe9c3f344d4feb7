//! `one.template.*` and `one.templatepool.info` (VM templates).

use super::{PoolFilter, PoolRange, boolean, calls_struct, int, object_calls, string};
use crate::{Chmod, Object, OcaError, VmTemplate};

calls_struct!(
    /// VM templates: `one.template.*` and `one.templatepool.info`.
    TemplateCalls,
    template
);

object_calls!(
    TemplateCalls,
    "one.template",
    VmTemplate,
    [info, update, rename, chown, lock]
);

impl TemplateCalls<'_> {
    /// `one.templatepool.info`.
    pub async fn list(
        &self,
        filter: PoolFilter,
        range: PoolRange,
    ) -> Result<Vec<VmTemplate>, OcaError> {
        VmTemplate::pool_from_xml(&self.list_xml(filter, range).await?)
    }

    /// `one.templatepool.info` as XML text.
    pub async fn list_xml(&self, filter: PoolFilter, range: PoolRange) -> Result<String, OcaError> {
        self.c
            .call_string(
                "one.templatepool.info",
                vec![int(filter.flag()), int(range.start), int(range.end)],
            )
            .await
    }

    /// `one.template.allocate`. Returns its id.
    pub async fn allocate(&self, template: &str) -> Result<i64, OcaError> {
        self.c
            .call_int("one.template.allocate", vec![string(template)])
            .await
    }

    /// `one.template.delete`; `recursive` also deletes the images it uses.
    pub async fn delete(&self, id: i64, recursive: bool) -> Result<(), OcaError> {
        self.c
            .call_done("one.template.delete", vec![int(id), boolean(recursive)])
            .await
    }

    /// `one.template.chmod`; `recursive` applies it to the images too.
    pub async fn chmod(&self, id: i64, mode: &Chmod, recursive: bool) -> Result<(), OcaError> {
        let mut params = vec![int(id)];
        params.extend(mode.params());
        params.push(boolean(recursive));
        self.c.call_done("one.template.chmod", params).await
    }

    /// `one.template.clone` as `name`; `recursive` clones its images too. Returns the id.
    pub async fn clone_template(
        &self,
        id: i64,
        name: &str,
        recursive: bool,
    ) -> Result<i64, OcaError> {
        self.c
            .call_int(
                "one.template.clone",
                vec![int(id), string(name), boolean(recursive)],
            )
            .await
    }

    /// `one.template.instantiate`: a VM named `name` ("" for OpenNebula's default), on hold
    /// if `hold`, with `extra` merged into the template. Returns the VM id.
    pub async fn instantiate(
        &self,
        id: i64,
        name: &str,
        hold: bool,
        extra: &str,
        persistent: bool,
    ) -> Result<i64, OcaError> {
        self.c
            .call_int(
                "one.template.instantiate",
                vec![
                    int(id),
                    string(name),
                    boolean(hold),
                    string(extra),
                    boolean(persistent),
                ],
            )
            .await
    }
}
