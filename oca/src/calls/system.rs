//! `one.system.*`.

use super::calls_struct;
use crate::OcaError;

calls_struct!(
    /// The server itself: `one.system.*`.
    SystemCalls,
    system
);

impl SystemCalls<'_> {
    /// `one.system.version`: the OpenNebula version the server speaks (`7.4.0`).
    pub async fn version(&self) -> Result<String, OcaError> {
        self.c.call_string("one.system.version", vec![]).await
    }

    /// `one.system.config`: the server's configuration as `<OPENNEBULA_CONFIGURATION>` XML.
    pub async fn config_xml(&self) -> Result<String, OcaError> {
        self.c.call_string("one.system.config", vec![]).await
    }
}
