//! Authentication: `user:secret` sessions checked against login tokens and salted slow
//! password hashes, with a short-lived in-memory cache of verified sessions.
//!
//! The cache key is a keyed hash (SHA-256 over a per-process random key and the session), so
//! the cache never holds a usable secret; an entry is valid only while the user's stored
//! password hash is unchanged and the user is enabled.

use crate::store::Store;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use one_proto::objects::user::User;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Group whose members bypass ACLs.
pub const ONEADMIN_GROUP: i64 = 0;
pub const ONEADMIN_USER: i64 = 0;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Session {
    pub uid: i64,
    pub uname: String,
    /// Primary group (or the token's effective group).
    pub gid: i64,
    pub gname: String,
    /// Every group the caller acts in.
    pub gids: Vec<i64>,
}

impl Session {
    /// oneadmin and members of group oneadmin bypass permissions and ACLs.
    pub fn is_admin(&self) -> bool {
        self.uid == ONEADMIN_USER || self.gids.contains(&ONEADMIN_GROUP)
    }
}

struct Cached {
    uid: i64,
    egid: i64,
    password: String,
    expires: Instant,
}

pub struct Authenticator {
    key: [u8; 32],
    ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

/// Argon2id with OWASP's minimum parameters: slow enough to resist offline guessing, fast
/// enough (~20 ms) that a cache miss does not stall the API.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password for storage (a PHC string carrying its salt and parameters).
pub fn hash_password(password: &str) -> String {
    let mut salt_bytes = [0u8; 16];
    rand::fill(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).expect("16-byte salt encodes");
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing of an in-memory password cannot fail")
        .to_string()
}

pub fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A random secret of `n` bytes as lowercase hex (passwords, tokens).
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// OpenNebula's rules for user names and passwords.
pub fn check_username(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Invalid NAME, it cannot be empty".into());
    }
    if name.len() > 128 {
        return Err("Invalid NAME, max length is 128 chars".into());
    }
    if name.chars().any(|c| c == ':' || c.is_whitespace()) {
        return Err("Invalid NAME, it cannot contain spaces or ':'".into());
    }
    Ok(())
}

pub fn check_password(password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err("Invalid password, it cannot be empty".into());
    }
    if password.chars().any(char::is_whitespace) {
        return Err("Invalid password, it cannot contain spaces".into());
    }
    Ok(())
}

impl Authenticator {
    pub fn new(ttl: Duration) -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Authenticator {
            key,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cache_key(&self, session: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(session.as_bytes());
        h.finalize().into()
    }

    /// Checks a session string; `None` when it does not authenticate.
    pub async fn authenticate(&self, store: &Store, session: &str) -> Option<Session> {
        let (name, secret) = session.split_once(':')?;
        let key = self.cache_key(session);
        let now = Instant::now();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = cache.get(&key) {
                if c.expires > now
                    && let Some(user) = store.get::<User>(c.uid)
                    && user.enabled
                    && user.password == c.password
                    && user.name == name
                {
                    return Some(session_of(store, &user, c.egid));
                }
                cache.remove(&key);
            }
            if cache.len() > 100_000 {
                cache.retain(|_, c| c.expires > now);
            }
        }

        let user = {
            let state = store.read();
            state.users.iter().find(|u| u.name == name).cloned()?
        };
        if !user.enabled {
            return None;
        }
        let now_s = now_secs();
        let token = user
            .login_tokens
            .iter()
            .find(|t| t.token == secret && (t.expiration_time < 0 || t.expiration_time > now_s));
        let egid = match token {
            Some(t) => t.egid,
            None => {
                if user.auth_driver != "core" {
                    return None;
                }
                let (secret, stored) = (secret.to_string(), user.password.clone());
                let ok = tokio::task::spawn_blocking(move || verify_password(&secret, &stored))
                    .await
                    .unwrap_or(false);
                if !ok {
                    return None;
                }
                -1
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(
            key,
            Cached {
                uid: user.id,
                egid,
                password: user.password.clone(),
                expires: now + self.ttl,
            },
        );
        Some(session_of(store, &user, egid))
    }

    /// Forgets cached sessions of a user (password change, token revocation, disable).
    pub fn forget_user(&self, uid: i64) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, c| c.uid != uid);
    }
}

fn session_of(store: &Store, user: &User, egid: i64) -> Session {
    let gid = if egid >= 0 { egid } else { user.gid };
    let gids = if egid >= 0 {
        vec![egid]
    } else {
        user.groups.clone()
    };
    let gname = if gid == user.gid {
        user.gname.clone()
    } else {
        store
            .get::<one_proto::objects::group::Group>(gid)
            .map(|g| g.name.clone())
            .unwrap_or_default()
    };
    Session {
        uid: user.id,
        uname: user.name.clone(),
        gid,
        gname,
        gids,
    }
}

/// `user:secret` from the value of an `Authorization: Basic` header (`curl -u user:secret`),
/// the session string of the XML-RPC API.
pub fn basic_session(header: &str) -> Option<String> {
    use base64::Engine;
    let (scheme, b64) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    String::from_utf8(raw).ok().filter(|s| s.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash_password("secret");
        let b = hash_password("secret");
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password("secret", &a));
        assert!(!verify_password("Secret", &a));
        assert!(!verify_password("secret", "not-a-hash"));
    }

    #[test]
    fn name_and_password_rules() {
        assert!(check_username("alice").is_ok());
        assert!(check_username("a b").is_err());
        assert!(check_username("a:b").is_err());
        assert!(check_username("").is_err());
        assert!(check_password("x y").is_err());
        assert!(check_password("xy").is_ok());
    }
}
