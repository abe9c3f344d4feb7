//! Upload tokens: `POST /upload` streams a file into the staging area and answers a token;
//! `one.image.allocate` with `PATH="upload://<token>"` registers it. A token is its
//! uploader's only, used once, and expires unused after `storage.upload_token_seconds`
//! (its file is then removed). Tokens live in memory: a restart of oned forgets them, and
//! the staging area is emptied when the frontend agent starts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The PATH prefix that names an upload.
pub const SCHEME: &str = "upload://";

/// An upload waiting for its image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// The uploader: nobody else may use the token.
    pub uid: i64,
    /// The staged file on the frontend.
    pub path: String,
    pub bytes: u64,
    pub expires: Instant,
}

/// The tokens of the uploads waiting.
#[derive(Default)]
pub struct Uploads {
    map: Mutex<HashMap<String, Upload>>,
}

/// Why a token cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("upload token {0} does not exist, was used already or has expired")]
    Unknown(String),
    #[error("upload token {0} belongs to another user")]
    NotYours(String),
}

impl Uploads {
    pub fn add(&self, token: String, up: Upload) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(token, up);
        }
    }

    /// The token of a PATH, if it names an upload.
    pub fn token_of(path: &str) -> Option<&str> {
        path.trim().strip_prefix(SCHEME)
    }

    /// Takes the upload `token` for user `uid` (it cannot be used twice); give it back
    /// with [`Self::give_back`] when the registration does not happen after all.
    pub fn take(&self, token: &str, uid: i64) -> Result<Upload, TokenError> {
        let mut m = self
            .map
            .lock()
            .map_err(|_| TokenError::Unknown(token.into()))?;
        match m.get(token) {
            None => Err(TokenError::Unknown(token.into())),
            Some(u) if u.expires <= Instant::now() => Err(TokenError::Unknown(token.into())),
            Some(u) if u.uid != uid => Err(TokenError::NotYours(token.into())),
            Some(_) => Ok(m.remove(token).expect("present")),
        }
    }

    /// Puts back an upload taken for a registration that failed before it was recorded.
    pub fn give_back(&self, token: &str, up: Upload) {
        self.add(token.to_string(), up);
    }

    /// Removes the expired uploads from the registry; answers their files.
    pub fn expire(&self) -> Vec<String> {
        let now = Instant::now();
        let Ok(mut m) = self.map.lock() else {
            return Vec::new();
        };
        let gone: Vec<String> = m
            .iter()
            .filter(|(_, u)| u.expires <= now)
            .map(|(t, _)| t.clone())
            .collect();
        gone.into_iter()
            .filter_map(|t| m.remove(&t).map(|u| u.path))
            .collect()
    }

    /// The staged files of the uploads waiting.
    pub fn paths(&self) -> Vec<String> {
        self.map
            .lock()
            .map(|m| m.values().map(|u| u.path.clone()).collect())
            .unwrap_or_default()
    }

    /// Uploads waiting.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A new token: 32 hex characters, as unguessable as a password.
pub fn new_token() -> String {
    crate::auth::random_hex(16)
}

/// How long a new token lives.
pub fn lifetime(seconds: u64) -> Duration {
    Duration::from_secs(seconds.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_single_use_personal_and_expire() {
        let u = Uploads::default();
        let up = |uid, secs: u64| Upload {
            uid,
            path: format!("/up/{uid}"),
            bytes: 1,
            expires: Instant::now() + Duration::from_secs(secs),
        };
        u.add("t1".into(), up(5, 60));
        assert_eq!(u.take("t1", 6), Err(TokenError::NotYours("t1".into())));
        let got = u.take("t1", 5).unwrap();
        assert_eq!(u.take("t1", 5), Err(TokenError::Unknown("t1".into())));
        u.give_back("t1", got);
        assert!(u.take("t1", 5).is_ok());
        u.add("old".into(), up(5, 0));
        assert_eq!(u.take("old", 5), Err(TokenError::Unknown("old".into())));
        assert_eq!(u.expire(), vec!["/up/5".to_string()]);
        assert!(u.is_empty());
        assert_eq!(Uploads::token_of("upload://abc"), Some("abc"));
        assert_eq!(Uploads::token_of("/var/tmp/x"), None);
    }
}
