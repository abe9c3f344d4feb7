//! The VM's screen (one-rs's extension, docs/api-compatibility.md): `one.vm.vnc` issues a
//! short-lived, single-use token bound to the calling user and the VM; the websocket
//! `GET /vnc/{vm_id}?token=TOKEN` on oned's port redeems it and carries the bytes of the
//! VM's VNC server, which listens on its host's loopback only, through the host's byte
//! stream (the node agent connects to that port on the host).
//!
//! Tokens live in memory only: a restart of oned invalidates them (clients ask for another).

use rand::RngCore;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tokens issued and not yet redeemed are capped, so a client asking in a loop cannot grow
/// memory without end; past the cap the oldest are dropped.
const MAX_TOKENS: usize = 10_000;

/// What a token grants: the screen of one VM, to one user, until `expires`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub uid: i64,
    pub vm_id: i64,
    pub expires: Instant,
}

/// Why a token was refused (each is logged; the client only sees "refused").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Never issued, or already used (single use).
    Unknown,
    /// Issued, but its time ran out.
    Expired,
    /// Issued for another VM.
    OtherVm,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Unknown => "unknown or already used token",
            Refusal::Expired => "expired token",
            Refusal::OtherVm => "token issued for another VM",
        })
    }
}

#[derive(Default)]
pub struct ConsoleTokens {
    map: Mutex<HashMap<String, Grant>>,
}

impl ConsoleTokens {
    /// A new token for `uid` on `vm_id`, valid `ttl`.
    pub fn issue(&self, uid: i64, vm_id: i64, ttl: Duration) -> String {
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        let token = hex::encode(b);
        let now = Instant::now();
        let mut map = self.map.lock().unwrap();
        map.retain(|_, g| g.expires > now);
        if map.len() >= MAX_TOKENS {
            let mut by_age: Vec<(Instant, String)> =
                map.iter().map(|(t, g)| (g.expires, t.clone())).collect();
            by_age.sort();
            for (_, t) in by_age.into_iter().take(MAX_TOKENS / 10) {
                map.remove(&t);
            }
        }
        map.insert(
            token.clone(),
            Grant {
                uid,
                vm_id,
                expires: now + ttl,
            },
        );
        token
    }

    /// Redeems `token` for `vm_id`: it is gone afterwards, whatever the outcome (a token
    /// tried on the wrong VM cannot be tried again).
    pub fn redeem(&self, token: &str, vm_id: i64) -> Result<Grant, Refusal> {
        let g = self
            .map
            .lock()
            .unwrap()
            .remove(token)
            .ok_or(Refusal::Unknown)?;
        if g.expires <= Instant::now() {
            return Err(Refusal::Expired);
        }
        if g.vm_id != vm_id {
            return Err(Refusal::OtherVm);
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_single_use_short_lived_and_bound_to_their_vm() {
        let t = ConsoleTokens::default();
        let a = t.issue(3, 7, Duration::from_secs(60));
        assert_eq!(a.len(), 64);
        assert_eq!(t.redeem(&a, 7).unwrap().uid, 3);
        assert_eq!(t.redeem(&a, 7), Err(Refusal::Unknown), "single use");
        let b = t.issue(3, 7, Duration::from_secs(60));
        assert_eq!(t.redeem(&b, 8), Err(Refusal::OtherVm));
        assert_eq!(
            t.redeem(&b, 7),
            Err(Refusal::Unknown),
            "a wrong try uses it up"
        );
        let c = t.issue(3, 7, Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(t.redeem(&c, 7), Err(Refusal::Expired));
        assert_eq!(t.redeem("made-up", 7), Err(Refusal::Unknown));
    }

    #[test]
    fn the_store_is_bounded() {
        let t = ConsoleTokens::default();
        for i in 0..(MAX_TOKENS + 5) {
            t.issue(0, i as i64, Duration::from_secs(60));
        }
        assert!(t.map.lock().unwrap().len() <= MAX_TOKENS);
    }
}
