//! `one.user.*`, `one.userpool.info` and `one.userquota.*`.

use super::{boolean, calls_struct, int, object_calls, string};
use crate::{Object, OcaError, Quotas, User, Value};

calls_struct!(
    /// Users: `one.user.*`, `one.userpool.info`, `one.userquota.*`.
    UserCalls,
    user
);

object_calls!(UserCalls, "one.user", User, [info, update, rename, delete]);

/// How long a login token lives (`one.user.login`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenLife {
    /// This many seconds.
    Seconds(i64),
    /// As long as the server allows (-1).
    Max,
    /// Revoke the token (0).
    Revoke,
}

impl UserCalls<'_> {
    /// `one.userpool.info`: every user, each with its quotas and the default quotas.
    pub async fn list(&self) -> Result<Vec<User>, OcaError> {
        User::pool_from_xml(&self.list_xml().await?)
    }

    /// `one.userpool.info` as XML text.
    pub async fn list_xml(&self) -> Result<String, OcaError> {
        self.c.call_string("one.userpool.info", vec![]).await
    }

    /// `one.user.info(-1)`: the user the session belongs to.
    pub async fn me(&self) -> Result<User, OcaError> {
        self.info(-1).await
    }

    /// `one.user.allocate` with `driver` ("" is core) in `groups` (the first is the primary
    /// one; empty: OpenNebula's default group). Returns the id.
    pub async fn allocate(
        &self,
        name: &str,
        password: &str,
        driver: &str,
        groups: &[i64],
    ) -> Result<i64, OcaError> {
        let mut params = vec![string(name), string(password), string(driver)];
        if !groups.is_empty() {
            params.push(Value::Array(groups.iter().map(|g| int(*g)).collect()));
        }
        self.c.call_int("one.user.allocate", params).await
    }

    /// `one.user.passwd`.
    pub async fn passwd(&self, id: i64, password: &str) -> Result<(), OcaError> {
        self.c
            .call_done("one.user.passwd", vec![int(id), string(password)])
            .await
    }

    /// `one.user.login`: creates (`token` "") or refreshes a login token for `user`, valid
    /// for `life`, acting in group `egid` (-1: all the user's groups). Returns the token.
    /// The session may be the user's password or an existing token.
    pub async fn login(
        &self,
        user: &str,
        token: &str,
        life: TokenLife,
        egid: i64,
    ) -> Result<String, OcaError> {
        let seconds = match life {
            TokenLife::Seconds(s) => s,
            TokenLife::Max => -1,
            TokenLife::Revoke => 0,
        };
        self.c
            .call_string(
                "one.user.login",
                vec![string(user), string(token), int(seconds), int(egid)],
            )
            .await
    }

    /// `one.user.chgrp`: a new primary group.
    pub async fn chgrp(&self, id: i64, gid: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.user.chgrp", vec![int(id), int(gid)])
            .await
    }

    /// `one.user.addgroup`: a secondary group.
    pub async fn addgroup(&self, id: i64, gid: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.user.addgroup", vec![int(id), int(gid)])
            .await
    }

    /// `one.user.delgroup`.
    pub async fn delgroup(&self, id: i64, gid: i64) -> Result<(), OcaError> {
        self.c
            .call_done("one.user.delgroup", vec![int(id), int(gid)])
            .await
    }

    /// `one.user.chauth`: a new authentication driver (and password, "" to keep it).
    pub async fn chauth(&self, id: i64, driver: &str, password: &str) -> Result<(), OcaError> {
        self.c
            .call_done(
                "one.user.chauth",
                vec![int(id), string(driver), string(password)],
            )
            .await
    }

    /// `one.user.enable` (or disable).
    pub async fn enable(&self, id: i64, enable: bool) -> Result<(), OcaError> {
        self.c
            .call_done("one.user.enable", vec![int(id), boolean(enable)])
            .await
    }

    /// `one.user.quota`: sets the quotas given in `template` (`VM=[VMS=10]`, see
    /// [`Quotas::to_template`]).
    pub async fn quota(&self, id: i64, template: &str) -> Result<(), OcaError> {
        self.c
            .call_done("one.user.quota", vec![int(id), string(template)])
            .await
    }

    /// `one.userquota.info`: the default user quotas.
    pub async fn default_quotas(&self) -> Result<Quotas, OcaError> {
        let xml = self.default_quotas_xml().await?;
        crate::objects::user::default_quotas_from_xml(&xml, "DEFAULT_USER_QUOTAS")
    }

    /// `one.userquota.info` as XML text.
    pub async fn default_quotas_xml(&self) -> Result<String, OcaError> {
        self.c.call_string("one.userquota.info", vec![]).await
    }

    /// `one.userquota.update`: sets default user quotas.
    pub async fn set_default_quotas(&self, template: &str) -> Result<(), OcaError> {
        self.c
            .call_done("one.userquota.update", vec![string(template)])
            .await
    }
}
