//! Incident locks: what keeps several agents that share one event stream from acting twice
//! on one incident. Before the first step of an enforced incident the driver asks the
//! [`IncidentLock`] for `(playbook, key)`; only the agent that gets it acts, the others
//! record a suppression. The lock expires after a TTL (the playbook's cooldown), so it is
//! also the cooldown shared by every agent.
//!
//! [`NoLock`] is the single-agent default (the engine's own guardrails suffice there);
//! [`MemoryLock`] shares one lock table between engines in one process (tests, benches).
//! The JetStream KV lock lives with the binary's wiring.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opsloop_core::time::Clock;

/// Why a lock could not be asked for (the store behind it is down or refused).
#[derive(Debug, thiserror::Error)]
#[error("incident lock unavailable: {0}")]
pub struct LockUnavailable(pub String);

/// What [`IncidentLock::try_acquire`] returns.
pub type LockFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, LockUnavailable>> + Send + 'a>>;

/// A create-if-absent lock per (playbook, key) with a time to live.
pub trait IncidentLock: Send + Sync {
    /// Takes the lock for `ttl` if nobody holds it: `Ok(true)` when this caller got it,
    /// `Ok(false)` when another holder has it, an error when that cannot be known (the
    /// caller must then not act).
    fn try_acquire<'a>(&'a self, playbook: &'a str, key: &'a str, ttl: Duration) -> LockFuture<'a>;
}

/// Always granted: one agent, whose engine already keeps one incident per key.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLock;

impl IncidentLock for NoLock {
    fn try_acquire<'a>(&'a self, _: &'a str, _: &'a str, _: Duration) -> LockFuture<'a> {
        Box::pin(std::future::ready(Ok(true)))
    }
}

/// An in-process lock table on a clock: engines sharing it behave like agents sharing a KV
/// bucket. `fail` makes every request fail (a KV outage).
pub struct MemoryLock {
    clock: Arc<dyn Clock>,
    /// Expiry (Unix ms) per lock name.
    held: Mutex<HashMap<String, i64>>,
    fail: std::sync::atomic::AtomicBool,
}

impl MemoryLock {
    /// An empty table on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> MemoryLock {
        MemoryLock {
            clock,
            held: Mutex::new(HashMap::new()),
            fail: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// From now on every request fails (`true`) or is answered again (`false`).
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, std::sync::atomic::Ordering::SeqCst);
    }
}

impl IncidentLock for MemoryLock {
    fn try_acquire<'a>(&'a self, playbook: &'a str, key: &'a str, ttl: Duration) -> LockFuture<'a> {
        let result = if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            Err(LockUnavailable("the lock table is failing".into()))
        } else {
            let now = self.clock.now_ms();
            let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            match self.held.lock() {
                Ok(mut held) => {
                    held.retain(|_, &mut expiry| expiry > now);
                    match held.entry(lock_name(playbook, key)) {
                        std::collections::hash_map::Entry::Occupied(_) => Ok(false),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(now.saturating_add(ttl_ms));
                            Ok(true)
                        }
                    }
                }
                Err(_) => Err(LockUnavailable("lock table poisoned".into())),
            }
        };
        Box::pin(std::future::ready(result))
    }
}

/// The lock's name, `heal.<playbook>.<key>`, each part escaped so that it is a valid NATS KV
/// key (`[-/_=.a-zA-Z0-9]`, no empty token) and distinct parts never give the same name:
/// `[A-Za-z0-9_-]` stays, every other byte becomes `=XX` (hex), an empty part is `=`.
pub fn lock_name(playbook: &str, key: &str) -> String {
    let mut out = String::with_capacity(6 + playbook.len() + key.len());
    out.push_str("heal.");
    escape_into(playbook, &mut out);
    out.push('.');
    escape_into(key, &mut out);
    out
}

fn escape_into(part: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if part.is_empty() {
        out.push('=');
        return;
    }
    for b in part.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push('=');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    struct TestClock(AtomicI64);
    impl Clock for TestClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn names_are_valid_kv_keys_and_distinct() {
        assert_eq!(lock_name("disk", "host-1"), "heal.disk.host-1");
        assert_eq!(lock_name("a.b", "c"), "heal.a=2Eb.c");
        assert_eq!(lock_name("", "x:9100"), "heal.=.x=3A9100");
        assert_ne!(lock_name("a", "=2E"), lock_name("a", "."));
        assert_eq!(lock_name("p", "é"), "heal.p.=C3=A9");
        let valid = |s: &str| {
            s.split('.').all(|t| !t.is_empty())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
        };
        for (p, k) in [("", ""), ("a b", "{x}"), ("*", ">"), ("..", "\n")] {
            assert!(valid(&lock_name(p, k)), "{p:?} {k:?}");
        }
    }

    #[tokio::test]
    async fn memory_lock_is_granted_once_until_it_expires() {
        let clock = Arc::new(TestClock(AtomicI64::new(1_000)));
        let lock = MemoryLock::new(clock.clone());
        let ttl = Duration::from_secs(60);
        assert!(lock.try_acquire("p", "k", ttl).await.unwrap());
        assert!(!lock.try_acquire("p", "k", ttl).await.unwrap());
        assert!(lock.try_acquire("p", "other", ttl).await.unwrap());
        clock.0.store(61_000, Ordering::SeqCst);
        assert!(lock.try_acquire("p", "k", ttl).await.unwrap());
        lock.set_failing(true);
        assert!(lock.try_acquire("q", "k", ttl).await.is_err());
        assert!(NoLock.try_acquire("p", "k", ttl).await.unwrap());
    }
}
