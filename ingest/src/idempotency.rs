//! The `Idempotency-Key` cache: which (tenant, connector, key) were already accepted, for which
//! request, with how many records.
//!
//! An entry is small and fixed-size: the SHA-256 of the scope and key, the SHA-256 of the
//! request (entity, media type, body) and the record count. The answer itself is not stored:
//! with a key, ingest ids are UUIDv5 of (tenant, connector, key, index), so the `202` can be
//! rebuilt from the count. 100 000 entries therefore stay around 10 MB however large the
//! batches were.
//!
//! The cache is per process. Behind a load balancer a retry may land on another node and be
//! published again; that is still at-least-once, and its records carry the same ingest ids, so
//! downstream deduplication sees them as the same changes.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub type Digest32 = [u8; 32];

/// What the cache knows about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Never seen (or expired): handle the request.
    Miss,
    /// The same request was accepted before, with this many records: answer it again.
    Replay { accepted: usize },
    /// The key was used for a different request.
    Conflict,
}

struct Entry {
    request: Digest32,
    accepted: usize,
    stored_at: Instant,
}

struct Inner {
    entries: HashMap<Digest32, Entry>,
    /// Insertion order, for eviction. An item whose `stored_at` no longer matches its entry is
    /// stale (the key was stored again later) and is skipped.
    order: VecDeque<(Digest32, Instant)>,
}

/// A bounded, expiring map of accepted idempotency keys.
pub struct IdempotencyCache {
    inner: Mutex<Inner>,
    capacity: usize,
    ttl: Duration,
}

impl IdempotencyCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        IdempotencyCache {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// The cache key of an idempotency key, scoped to its tenant and connector.
    pub fn scope_digest(tenant: &str, connector: &str, key: &str) -> Digest32 {
        digest(&[tenant.as_bytes(), connector.as_bytes(), key.as_bytes()])
    }

    /// The fingerprint of a request: the same key with another fingerprint is a conflict.
    pub fn request_digest(entity: &str, media_type: &str, body: &[u8]) -> Digest32 {
        digest(&[entity.as_bytes(), media_type.as_bytes(), body])
    }

    pub fn lookup(&self, scope: &Digest32, request: &Digest32, now: Instant) -> Lookup {
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get(scope) else {
            return Lookup::Miss;
        };
        if now.saturating_duration_since(entry.stored_at) >= self.ttl {
            inner.entries.remove(scope);
            return Lookup::Miss;
        }
        if &entry.request == request {
            Lookup::Replay {
                accepted: entry.accepted,
            }
        } else {
            Lookup::Conflict
        }
    }

    /// Remembers an accepted request, evicting expired and then oldest entries.
    pub fn insert(&self, scope: Digest32, request: Digest32, accepted: usize, now: Instant) {
        let mut inner = self.lock();
        while let Some(&(key, stored_at)) = inner.order.front() {
            let expired = now.saturating_duration_since(stored_at) >= self.ttl;
            if !expired && inner.entries.len() < self.capacity {
                break;
            }
            inner.order.pop_front();
            if inner
                .entries
                .get(&key)
                .is_some_and(|e| e.stored_at == stored_at)
            {
                inner.entries.remove(&key);
            }
        }
        inner.entries.insert(
            scope,
            Entry {
                request,
                accepted,
                stored_at: now,
            },
        );
        inner.order.push_back((scope, now));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// SHA-256 over length-prefixed parts, so no two different part lists share a digest.
fn digest(parts: &[&[u8]]) -> Digest32 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest32 {
        digest(&[s.as_bytes()])
    }

    #[test]
    fn same_request_replays_and_different_request_conflicts() {
        let c = IdempotencyCache::new(10, Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(c.lookup(&d("k"), &d("body"), now), Lookup::Miss);
        c.insert(d("k"), d("body"), 3, now);
        assert_eq!(
            c.lookup(&d("k"), &d("body"), now),
            Lookup::Replay { accepted: 3 }
        );
        assert_eq!(c.lookup(&d("k"), &d("other"), now), Lookup::Conflict);
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let c = IdempotencyCache::new(10, Duration::from_secs(60));
        let now = Instant::now();
        c.insert(d("k"), d("body"), 1, now);
        assert_eq!(
            c.lookup(&d("k"), &d("body"), now + Duration::from_secs(61)),
            Lookup::Miss
        );
        assert!(c.is_empty());
    }

    #[test]
    fn the_oldest_entry_is_evicted_at_capacity() {
        let c = IdempotencyCache::new(2, Duration::from_secs(60));
        let now = Instant::now();
        c.insert(d("a"), d("x"), 1, now);
        c.insert(d("b"), d("x"), 1, now + Duration::from_millis(1));
        c.insert(d("c"), d("x"), 1, now + Duration::from_millis(2));
        assert_eq!(c.len(), 2);
        assert_eq!(c.lookup(&d("a"), &d("x"), now), Lookup::Miss);
        assert_eq!(
            c.lookup(&d("c"), &d("x"), now),
            Lookup::Replay { accepted: 1 }
        );
    }

    #[test]
    fn a_key_stored_again_is_not_evicted_by_its_stale_queue_item() {
        let c = IdempotencyCache::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        c.insert(d("a"), d("x"), 1, t0);
        c.insert(d("a"), d("x"), 1, t0 + Duration::from_millis(1));
        c.insert(d("b"), d("x"), 1, t0 + Duration::from_millis(2));
        // The stale item for "a" is popped without removing the live entry; the live one goes
        // only when it is itself the oldest.
        assert_eq!(c.len(), 2);
        c.insert(d("c"), d("x"), 1, t0 + Duration::from_millis(3));
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.lookup(&d("b"), &d("x"), t0),
            Lookup::Replay { accepted: 1 }
        );
    }

    #[test]
    fn scope_separates_tenants_and_connectors() {
        assert_ne!(
            IdempotencyCache::scope_digest("t1", "c", "k"),
            IdempotencyCache::scope_digest("t2", "c", "k")
        );
        assert_ne!(
            IdempotencyCache::scope_digest("ab", "c", "k"),
            IdempotencyCache::scope_digest("a", "bc", "k")
        );
    }
}
