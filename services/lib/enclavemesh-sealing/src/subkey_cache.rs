//! A bounded cache of expanded per-workflow subkeys, so that small envelopes do not
//! each pay an HKDF-SHA256 derivation and an AES-256-GCM key expansion.
//!
//! # What is cached
//!
//! Entries are keyed by `(TSK version, workflow id)` and hold the AES-256-GCM key
//! schedule ([`ExpandedKey`]: round keys + GHASH table) of
//! `HKDF-SHA256(TSK[version], workflow id)` (see [`crate::key`]). The workflow id is
//! compared in full (a `HashMap` keyed by the id itself, SipHash with a random key,
//! so a host choosing ids cannot force collisions into long chains): two workflows,
//! or two versions, never share an entry. [`crate::KeyRing::retire`] drops every
//! entry of the retired version, so a version number later reused for another TSK
//! can never reach a stale schedule.
//!
//! # Why caching changes nothing about nonce safety
//!
//! The subkey was never per envelope: it is a deterministic function of the TSK
//! version and the workflow id, and every envelope of a workflow has always been
//! sealed under that same key with a fresh 96-bit nonce drawn from the OS RNG
//! (`getrandom`; [`crate::nonce`] fetches its bytes in batches, each used once). The
//! cache returns the byte-identical key, the nonces are still uniform OS bytes, and
//! the wire format is unchanged. The set of (key, nonce)
//! pairs an attacker can observe therefore has exactly the distribution it had
//! before: for `q` seals under one workflow key the probability that any two share
//! a nonce is at most `q^2 / 2^97`, and the usage limit is NIST SP 800-38D's for
//! random 96-bit nonces, `q <= 2^32` invocations per key (collision probability
//! <= 2^-33 there). A workflow seals once per step it processes, plus once per re-run
//! the host forces (see README, threat model): honest workflows stay many orders of
//! magnitude below 2^32; a host that did nothing but re-run one workflow's step at a
//! few thousand `Process` calls per second would need one to two weeks to reach it. That
//! property is the same with and without this cache.
//!
//! # The use counter, and what it does not do
//!
//! Each cached instance counts the seals it has served and is evicted (and, once the
//! last in-flight use ends, wiped) after [`MAX_SEALS_PER_INSTANCE`] (2^20, a factor
//! 4096 below 2^32); the next seal derives and expands the key again. That bounds how
//! long one in-memory key schedule lives and how much one instance encrypts, but
//! because derivation is deterministic it yields the *same* key: it does not reset
//! the per-key 2^32 budget, and neither the count nor the budget survive an
//! eviction or an enclave restart (the enclave has no trusted persistent state).
//! Fresh keys come only from a new TSK version (rotation through the key ring);
//! a per-envelope key-derivation salt would need a new envelope format. Opening
//! consumes no nonces and is not counted.
//!
//! # Memory
//!
//! At most `capacity` entries ([`DEFAULT_SUBKEY_CACHE_CAPACITY`] by default), each a ring
//! AES-256-GCM key (about half a KiB) plus its id; on a miss with the cache full the
//! least recently used entry is evicted. Evicted entries are wiped by
//! [`ExpandedKey`]'s `Drop` when the last `Arc` to them goes (an envelope being
//! sealed or opened at that moment keeps it alive until it is done). Capacity 0
//! disables caching: every call derives, expands and wipes a key of its own, as
//! before this cache existed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::cipher::ExpandedKey;
use crate::key::Tsk;

/// Default number of cached subkeys per key ring (about 150 KiB when full).
pub const DEFAULT_SUBKEY_CACHE_CAPACITY: usize = 256;

/// Seals one cached key instance serves before it is evicted and re-derived.
pub(crate) const MAX_SEALS_PER_INSTANCE: u64 = 1 << 20;

/// What a key is fetched for: only sealing draws nonces, so only sealing counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Seal,
    Open,
}

/// Expanded subkeys by `(TSK version, workflow id)`; see the module docs.
pub(crate) struct SubkeyCache {
    capacity: usize,
    max_seals: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// version -> workflow id -> entry. Two levels so a lookup borrows the id (no
    /// allocation on a hit); rings hold one or two versions.
    by_version: HashMap<u32, HashMap<Box<str>, Slot>>,
    /// Entries across all versions.
    len: usize,
    /// Logical clock for least-recently-used eviction.
    tick: u64,
}

struct Slot {
    key: Arc<ExpandedKey>,
    last_used: u64,
    seals: u64,
}

impl SubkeyCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self::with_limits(capacity, MAX_SEALS_PER_INSTANCE)
    }

    pub(crate) fn with_limits(capacity: usize, max_seals: u64) -> Self {
        SubkeyCache { capacity, max_seals: max_seals.max(1), inner: Mutex::new(Inner::default()) }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The expanded subkey of `tsk` (which is `version`) for `workflow_id`: cached,
    /// or derived, expanded and (capacity permitting) cached. `Err` only if the AEAD
    /// library refuses a 32-byte key, which it never does.
    pub(crate) fn get(
        &self,
        version: u32,
        tsk: &Tsk,
        workflow_id: &str,
        purpose: Purpose,
    ) -> Result<Arc<ExpandedKey>, ()> {
        if self.capacity == 0 {
            return Ok(Arc::new(ExpandedKey::new(&tsk.derive_subkey(workflow_id))?));
        }
        {
            let mut inner = self.lock();
            inner.tick += 1;
            let tick = inner.tick;
            if let Some(per_version) = inner.by_version.get_mut(&version)
                && let Some(slot) = per_version.get_mut(workflow_id)
            {
                if purpose == Purpose::Open || slot.seals < self.max_seals {
                    slot.last_used = tick;
                    if purpose == Purpose::Seal {
                        slot.seals += 1;
                    }
                    return Ok(Arc::clone(&slot.key));
                }
                // Served its share of seals: evict, derive a fresh instance below.
                per_version.remove(workflow_id);
                inner.len -= 1;
            }
        }

        // Miss: derive and expand outside the lock, so other workflows' envelopes
        // are not held up by an HKDF.
        let key = Arc::new(ExpandedKey::new(&tsk.derive_subkey(workflow_id))?);
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let seals = u64::from(purpose == Purpose::Seal);
        if let Some(slot) = inner.by_version.get_mut(&version).and_then(|m| m.get_mut(workflow_id)) {
            // Another thread cached it meanwhile: same key bytes; replace theirs only if
            // it has no seals to spare (keeps the count meaningful).
            if seals == 0 || slot.seals < self.max_seals {
                slot.last_used = tick;
                slot.seals += seals;
                return Ok(Arc::clone(&slot.key));
            }
            *slot = Slot { key: Arc::clone(&key), last_used: tick, seals };
            return Ok(key);
        }
        if inner.len >= self.capacity {
            inner.evict_lru();
        }
        inner
            .by_version
            .entry(version)
            .or_default()
            .insert(workflow_id.into(), Slot { key: Arc::clone(&key), last_used: tick, seals });
        inner.len += 1;
        Ok(key)
    }

    /// Drops (and so wipes, once no envelope is using them) every entry of `version`.
    pub(crate) fn purge_version(&self, version: u32) {
        let mut inner = self.lock();
        if let Some(removed) = inner.by_version.remove(&version) {
            inner.len -= removed.len();
        }
    }

    /// Locks the map. A panic while it was held (only an allocation failure could
    /// cause one) may have left the bookkeeping inconsistent: start over empty,
    /// which costs re-derivations and nothing else.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned: PoisonError<_>| {
            let mut inner = poisoned.into_inner();
            *inner = Inner::default();
            self.inner.clear_poison();
            inner
        })
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let inner = self.lock();
        debug_assert_eq!(inner.len, inner.by_version.values().map(HashMap::len).sum::<usize>());
        inner.len
    }

    /// The cached instance for `(version, workflow_id)`, without touching its
    /// recency or count.
    #[cfg(test)]
    pub(crate) fn peek(&self, version: u32, workflow_id: &str) -> Option<(Arc<ExpandedKey>, u64)> {
        let inner = self.lock();
        inner.by_version.get(&version)?.get(workflow_id).map(|s| (Arc::clone(&s.key), s.seals))
    }
}

impl Inner {
    /// Removes the least recently used entry (linear scan: only on a miss with the
    /// cache full, which already pays an HKDF).
    fn evict_lru(&mut self) {
        let oldest = self
            .by_version
            .iter()
            .flat_map(|(v, m)| m.iter().map(move |(id, s)| (s.last_used, *v, id)))
            .min_by_key(|(t, _, _)| *t)
            .map(|(_, v, id)| (v, id.clone()));
        if let Some((version, id)) = oldest
            && let Some(per_version) = self.by_version.get_mut(&version)
        {
            if per_version.remove(&id).is_some() {
                self.len -= 1;
            }
            if per_version.is_empty() {
                self.by_version.remove(&version);
            }
        }
    }
}
