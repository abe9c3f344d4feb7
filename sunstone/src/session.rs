//! Browser sessions: a random cookie value names a session kept in memory, which holds the
//! user's oned login token (never sent to the browser), the CSRF token of its forms and the
//! messages waiting for the next page.
//!
//! A session ends after `idle` without a request (background polling does not count), at
//! `lifetime` after login whatever happens (the token oned issued expires then too), or at
//! logout. The map is keyed by a SHA-256 of the cookie, so the cookie itself is never kept.
//! Sessions do not survive a restart of sunstone: users log in again.
//!
//! A user's sessions share one oned token (oned allows ten per user): a new login refreshes
//! the token its other sessions use, and the token is revoked when its last session ends.

use oca::Client;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The session cookie.
pub const COOKIE: &str = "sunstone_session";
/// The cookie that pairs with the login form's hidden CSRF field (before a session exists).
pub const LOGIN_COOKIE: &str = "sunstone_login";

/// What the user is, as oned said at login.
#[derive(Clone, Debug)]
pub struct Identity {
    pub username: String,
    pub uid: i64,
    pub gid: i64,
    pub gname: String,
    pub groups: Vec<i64>,
}

impl Identity {
    /// Group oneadmin (0): the admin view.
    pub fn is_admin(&self) -> bool {
        self.gid == 0 || self.groups.contains(&0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlashKind {
    Ok,
    Error,
}

/// A message for the next page drawn (the result of a form post).
#[derive(Clone, Debug)]
pub struct Flash {
    pub kind: FlashKind,
    pub text: String,
}

pub struct Session {
    pub who: Identity,
    /// oned's login token: calls go out as `user:token`.
    pub token: String,
    /// The CSRF token every form and htmx request of this session carries.
    pub csrf: String,
    /// A client of oned with this user's session string.
    pub client: Client,
    pub expires: Instant,
    last_seen: Mutex<Instant>,
    flash: Mutex<Vec<Flash>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn push_flash(&self, kind: FlashKind, text: impl Into<String>) {
        let mut f = self.flash.lock().unwrap();
        // A user who never looks at a page again must not grow the list forever.
        if f.len() < 20 {
            f.push(Flash {
                kind,
                text: text.into(),
            });
        }
    }

    pub fn take_flash(&self) -> Vec<Flash> {
        std::mem::take(&mut *self.flash.lock().unwrap())
    }

    pub fn is_admin(&self) -> bool {
        self.who.is_admin()
    }
}

/// What a cookie names.
pub enum Lookup {
    Live(Arc<Session>),
    /// Just ended by this lookup; true when its token is to be revoked.
    Expired(Arc<Session>, bool),
    Missing,
}

/// Every live session.
pub struct SessionStore {
    map: RwLock<HashMap<[u8; 32], Arc<Session>>>,
    /// Per user name: the token its sessions share and how many sessions use it.
    tokens: Mutex<HashMap<String, (String, usize)>>,
    idle: Duration,
    lifetime: Duration,
}

fn key(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

/// `n` random bytes as hex (cookie values, CSRF tokens).
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl SessionStore {
    pub fn new(idle: Duration, lifetime: Duration) -> Self {
        SessionStore {
            map: RwLock::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            idle,
            lifetime,
        }
    }

    /// The token `user`'s live sessions use, if any (a new login refreshes and shares it).
    pub fn user_token(&self, user: &str) -> Option<String> {
        self.tokens
            .lock()
            .unwrap()
            .get(user)
            .map(|(t, _)| t.clone())
    }

    /// One session less on its token; true when it was the last (revoke the token then).
    fn release(&self, s: &Session) -> bool {
        let mut t = self.tokens.lock().unwrap();
        match t.get_mut(&s.who.username) {
            Some((token, n)) if *token == s.token => {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    t.remove(&s.who.username);
                    true
                } else {
                    false
                }
            }
            // A session whose token was replaced (an old one): its token is its own.
            _ => true,
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A new session; returns the cookie value to give the browser.
    pub fn create(&self, who: Identity, token: String, client: Client) -> (String, Arc<Session>) {
        let cookie = random_hex(32);
        let now = Instant::now();
        {
            let mut t = self.tokens.lock().unwrap();
            let e = t.entry(who.username.clone()).or_insert((token.clone(), 0));
            if e.0 == token {
                e.1 += 1;
            } else {
                *e = (token.clone(), 1);
            }
        }
        let s = Arc::new(Session {
            who,
            token,
            csrf: random_hex(32),
            client,
            expires: now + self.lifetime,
            last_seen: Mutex::new(now),
            flash: Mutex::new(Vec::new()),
        });
        self.map.write().unwrap().insert(key(&cookie), s.clone());
        (cookie, s)
    }

    /// The live session named by `cookie`; `touch` counts this request as activity (a
    /// background poll does not). An expired session is ended (see [`SessionStore::lookup`]).
    pub fn get(&self, cookie: &str, touch: bool) -> Option<Arc<Session>> {
        match self.lookup(cookie, touch) {
            Lookup::Live(s) => Some(s),
            _ => None,
        }
    }

    /// Like [`SessionStore::get`], telling an expired session (now ended, with whether its
    /// token is to be revoked) from an unknown cookie.
    pub fn lookup(&self, cookie: &str, touch: bool) -> Lookup {
        let k = key(cookie);
        let Some(s) = self.map.read().unwrap().get(&k).cloned() else {
            return Lookup::Missing;
        };
        let now = Instant::now();
        let mut seen = s.last_seen.lock().unwrap();
        if now >= s.expires || now.duration_since(*seen) >= self.idle {
            drop(seen);
            if self.map.write().unwrap().remove(&k).is_none() {
                // Another request ended it meanwhile.
                return Lookup::Missing;
            }
            let last = self.release(&s);
            return Lookup::Expired(s, last);
        }
        if touch {
            *seen = now;
        }
        drop(seen);
        Lookup::Live(s)
    }

    /// Ends the session named by `cookie` (logout); returns it, and whether its token is
    /// to be revoked (no other session uses it).
    pub fn remove(&self, cookie: &str) -> Option<(Arc<Session>, bool)> {
        let s = self.map.write().unwrap().remove(&key(cookie))?;
        let last = self.release(&s);
        Some((s, last))
    }

    /// Ends `session` however it is named; returns whether its token is to be revoked, or
    /// None when it had ended already.
    pub fn remove_session(&self, session: &Arc<Session>) -> Option<bool> {
        let mut map = self.map.write().unwrap();
        let key = map
            .iter()
            .find(|(_, s)| Arc::ptr_eq(s, session))
            .map(|(k, _)| *k)?;
        map.remove(&key);
        drop(map);
        Some(self.release(session))
    }

    /// Removes every expired session; returns them with whether each one's token is to be
    /// revoked.
    pub fn sweep(&self) -> Vec<(Arc<Session>, bool)> {
        let now = Instant::now();
        let mut map = self.map.write().unwrap();
        let mut gone = Vec::new();
        map.retain(|_, s| {
            let seen = *s.last_seen.lock().unwrap();
            let live = now < s.expires && now.duration_since(seen) < self.idle;
            if !live {
                gone.push(s.clone());
            }
            live
        });
        drop(map);
        gone.into_iter()
            .map(|s| {
                let last = self.release(&s);
                (s, last)
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of cookie `name` in a Cookie header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// A Set-Cookie value: HttpOnly, SameSite=Strict, Secure over TLS. No Path: the browser then
/// scopes the cookie to the directory of the URL it posted to, which is the console's own
/// root however a reverse proxy mounts it. `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Identity {
        Identity {
            username: "alice".into(),
            uid: 3,
            gid: 1,
            gname: "users".into(),
            groups: vec![1],
        }
    }

    fn client() -> Client {
        Client::new("http://127.0.0.1:1/RPC2", "alice:t")
    }

    #[test]
    fn sessions_expire_when_idle_and_at_their_lifetime() {
        let store = SessionStore::new(Duration::from_millis(200), Duration::from_secs(60));
        let (cookie, s) = store.create(who(), "t".into(), client());
        assert_eq!(s.who.username, "alice");
        assert!(store.get(&cookie, true).is_some());
        assert!(store.get("nope", true).is_none());
        std::thread::sleep(Duration::from_millis(120));
        // A poll does not keep the session alive...
        assert!(store.get(&cookie, false).is_some());
        std::thread::sleep(Duration::from_millis(120));
        assert!(
            matches!(store.lookup(&cookie, false), Lookup::Expired(_, true)),
            "idle for 240 ms: ended, its token to be revoked"
        );
        assert!(matches!(store.lookup(&cookie, false), Lookup::Missing));
        assert!(store.is_empty());

        let short = SessionStore::new(Duration::from_secs(60), Duration::from_millis(50));
        let (cookie, _) = short.create(who(), "t".into(), client());
        std::thread::sleep(Duration::from_millis(80));
        let gone = short.sweep();
        assert_eq!(gone.len(), 1);
        assert!(gone[0].1, "its token is revoked");
        assert!(short.get(&cookie, true).is_none());
    }

    #[test]
    fn logout_removes_and_flash_is_taken_once() {
        let store = SessionStore::new(Duration::from_secs(60), Duration::from_secs(60));
        let (cookie, s) = store.create(who(), "t".into(), client());
        s.push_flash(FlashKind::Error, "[one.vm.action] no");
        assert_eq!(s.take_flash().len(), 1);
        assert!(s.take_flash().is_empty());
        assert!(store.remove(&cookie).is_some());
        assert!(store.get(&cookie, true).is_none());
    }

    #[test]
    fn sessions_of_a_user_share_a_token_until_the_last_ends() {
        let store = SessionStore::new(Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(store.user_token("alice"), None);
        let (a, _) = store.create(who(), "t1".into(), client());
        assert_eq!(store.user_token("alice").as_deref(), Some("t1"));
        let (b, _) = store.create(who(), "t1".into(), client());
        let (_, last) = store.remove(&a).unwrap();
        assert!(!last, "b still uses the token");
        let (_, last) = store.remove(&b).unwrap();
        assert!(last);
        assert_eq!(store.user_token("alice"), None);
    }

    #[test]
    fn cookies_and_secrets() {
        assert_eq!(
            cookie_value("a=1; sunstone_session=xyz; b=2", COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie_value("a=1", COOKIE), None);
        let c = set_cookie(COOKIE, "v", true, None);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie(COOKIE, "v", false, Some(0)).contains("Secure"));
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert_eq!(random_hex(16).len(), 32);
    }
}
