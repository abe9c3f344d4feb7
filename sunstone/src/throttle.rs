//! Slowing down repeated failed logins, per user name and per client address.
//!
//! After `free` failures in a row, each further attempt must wait: 2 s, then 4, 8, ... up to
//! five minutes. An attempt made while it must wait is refused at once, without asking oned
//! (so guessing costs the attacker time, not oned CPU). A success clears the user name's
//! count. Entries untouched for an hour are forgotten.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_WAIT: Duration = Duration::from_secs(300);
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// An upper bound on remembered keys, so a flood of made-up names cannot grow memory
/// without end: past it, the oldest entries are dropped.
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    until: Instant,
    last: Instant,
}

/// A key is a user name or a client address; each kind has its own number of free failures.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    User(String),
    Addr(String),
}

impl Key {
    fn free(&self) -> u32 {
        match self {
            Key::User(_) => 3,
            // Many users may share an address (NAT): allow more before slowing it down.
            Key::Addr(_) => 10,
        }
    }
}

#[derive(Default)]
pub struct Throttle {
    map: Mutex<HashMap<Key, Entry>>,
}

impl Throttle {
    /// How long the caller must still wait before trying any of `keys`; None when it may.
    pub fn wait(&self, keys: &[Key]) -> Option<Duration> {
        let now = Instant::now();
        let map = self.map.lock().unwrap();
        keys.iter()
            .filter_map(|k| map.get(k))
            .filter(|e| e.until > now)
            .map(|e| e.until - now)
            .max()
    }

    /// Records a failed attempt.
    pub fn failed(&self, keys: &[Key]) {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap();
        if map.len() >= MAX_ENTRIES {
            let mut by_age: Vec<(Instant, Key)> =
                map.iter().map(|(k, e)| (e.last, k.clone())).collect();
            by_age.sort_by_key(|(t, _)| *t);
            for (_, k) in by_age.into_iter().take(MAX_ENTRIES / 10) {
                map.remove(&k);
            }
        }
        for k in keys {
            let e = map.entry(k.clone()).or_insert(Entry {
                failures: 0,
                until: now,
                last: now,
            });
            e.failures = e.failures.saturating_add(1);
            e.last = now;
            if e.failures > k.free() {
                let over = (e.failures - k.free()).min(20);
                let wait = Duration::from_secs(1u64 << over).min(MAX_WAIT);
                e.until = now + wait;
            }
        }
    }

    /// A successful login clears the user's count (not the address's: one good password
    /// must not reset a guesser's count on other names).
    pub fn succeeded(&self, user: &Key) {
        self.map.lock().unwrap().remove(user);
    }

    /// Forgets entries untouched for an hour.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.map
            .lock()
            .unwrap()
            .retain(|_, e| now.duration_since(e.last) < FORGET_AFTER || e.until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_after_the_free_failures() {
        let t = Throttle::default();
        let keys = [Key::User("bob".into()), Key::Addr("10.0.0.1".into())];
        for _ in 0..3 {
            assert!(t.wait(&keys).is_none());
            t.failed(&keys);
        }
        assert!(t.wait(&keys).is_none(), "three failures are free");
        t.failed(&keys);
        let w = t.wait(&keys).unwrap();
        assert!(w > Duration::from_millis(1500) && w <= Duration::from_secs(2));
        t.failed(&keys);
        assert!(t.wait(&keys).unwrap() > Duration::from_secs(3));
        // Another name from the same address is not blocked yet (10 free per address)...
        assert!(
            t.wait(&[Key::User("carol".into()), keys[1].clone()])
                .is_none()
        );
        // ...and a success clears the name only.
        t.succeeded(&keys[0]);
        assert!(t.wait(&keys[..1]).is_none());
        for _ in 0..10 {
            t.failed(&keys[1..]);
        }
        assert!(
            t.wait(&keys[1..]).is_some(),
            "the address is slowed down too"
        );
    }

    #[test]
    fn waits_are_capped() {
        let t = Throttle::default();
        let k = [Key::User("x".into())];
        for _ in 0..40 {
            t.failed(&k);
        }
        assert!(t.wait(&k).unwrap() <= MAX_WAIT);
    }
}
