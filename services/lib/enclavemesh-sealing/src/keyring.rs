//! The versioned set of TSKs an enclave holds for one KMS key.
//!
//! Why versions: rotating the TSK must not strand state sealed before the rotation.
//! New envelopes always use the newest version; older versions stay only to open
//! existing envelopes until they are re-sealed, then get retired, after which
//! envelopes still under them are refused with a precise error.
//!
//! The ring also holds the [`crate::subkey_cache`] of expanded per-workflow subkeys
//! derived from its TSKs, so the keys and everything derived from them live and die
//! together.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cipher::ExpandedKey;
use crate::key::Tsk;
use crate::subkey_cache::{DEFAULT_SUBKEY_CACHE_CAPACITY, Purpose, SubkeyCache};

/// Why a key could not be added to a [`KeyRing`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyRingError {
    /// Version 0 is what a proto3 envelope carries when `key_version` was never
    /// set, so accepting it would let a header with the field missing select a key.
    #[error("TSK version 0 is reserved (it is the protobuf default for an unset field); number versions from 1")]
    VersionZero,
    /// Replacing a version's key would make every envelope sealed under it
    /// unopenable; use a new version number for a new key.
    #[error(
        "key ring {key_id:?} already holds a different TSK for version {version}; give a new key a new version number"
    )]
    ConflictingVersion {
        /// KMS key id of the ring.
        key_id: String,
        /// Version that is already taken.
        version: u32,
    },
}

/// TSKs by version for one KMS key id, and a bounded cache of the per-workflow
/// subkeys derived from them (see [`KeyRing::with_subkey_cache_capacity`]).
///
/// Cloning copies the TSKs; the clone starts with an empty cache of the same
/// capacity.
pub struct KeyRing {
    key_id: String,
    versions: BTreeMap<u32, Tsk>,
    subkeys: SubkeyCache,
}

impl Clone for KeyRing {
    fn clone(&self) -> Self {
        KeyRing {
            key_id: self.key_id.clone(),
            versions: self.versions.clone(),
            subkeys: SubkeyCache::new(self.subkeys.capacity()),
        }
    }
}

impl KeyRing {
    /// An empty ring for `key_id` (the KMS key id or ARN the TSKs are wrapped under;
    /// it is written into and checked against every envelope), caching up to
    /// [`DEFAULT_SUBKEY_CACHE_CAPACITY`] per-workflow subkeys.
    pub fn new(key_id: impl Into<String>) -> Self {
        Self::with_subkey_cache_capacity(key_id, DEFAULT_SUBKEY_CACHE_CAPACITY)
    }

    /// Like [`KeyRing::new`], keeping at most `capacity` expanded per-workflow
    /// subkeys (least recently used evicted first, each wiped when evicted). 0
    /// disables the cache: every seal and open then derives and expands its subkey
    /// afresh. Envelopes are byte-for-byte the same either way.
    pub fn with_subkey_cache_capacity(key_id: impl Into<String>, capacity: usize) -> Self {
        KeyRing { key_id: key_id.into(), versions: BTreeMap::new(), subkeys: SubkeyCache::new(capacity) }
    }

    /// KMS key id this ring belongs to.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Adds `tsk` as `version`.
    ///
    /// Inserting the identical key again is accepted (idempotent reload); a
    /// different key under a held version, or version 0, is refused.
    pub fn insert(&mut self, version: u32, tsk: Tsk) -> Result<(), KeyRingError> {
        if version == 0 {
            return Err(KeyRingError::VersionZero);
        }
        if let Some(held) = self.versions.get(&version) {
            if held.ct_eq(&tsk) {
                return Ok(());
            }
            return Err(KeyRingError::ConflictingVersion { key_id: self.key_id.clone(), version });
        }
        self.versions.insert(version, tsk);
        Ok(())
    }

    /// Highest version held: the one [`crate::seal`] uses. `None` when empty.
    pub fn newest_version(&self) -> Option<u32> {
        self.versions.keys().next_back().copied()
    }

    /// Versions held, ascending.
    pub fn versions(&self) -> Vec<u32> {
        self.versions.keys().copied().collect()
    }

    /// Drops (and thereby wipes) `version` and the subkeys cached for it; returns
    /// whether it was held. Envelopes sealed under it then fail with
    /// `UnknownKeyVersion`.
    pub fn retire(&mut self, version: u32) -> bool {
        // Purge first and unconditionally: a version number given to a different TSK
        // after retirement must never find the old TSK's subkeys.
        self.subkeys.purge_version(version);
        self.versions.remove(&version).is_some()
    }

    /// The TSK for `version`, if held (tests derive subkeys from it directly).
    #[cfg(test)]
    pub(crate) fn get(&self, version: u32) -> Option<&Tsk> {
        self.versions.get(&version)
    }

    /// The expanded subkey of `version` for `workflow_id` (from the cache when
    /// there), or `None` when the version is not held. `Some(Err(()))` only if the
    /// AEAD library refuses a 32-byte key, which it never does.
    pub(crate) fn subkey(
        &self,
        version: u32,
        workflow_id: &str,
        purpose: Purpose,
    ) -> Option<Result<Arc<ExpandedKey>, ()>> {
        let tsk = self.versions.get(&version)?;
        Some(self.subkeys.get(version, tsk, workflow_id, purpose))
    }

    #[cfg(test)]
    pub(crate) fn subkey_cache(&self) -> &SubkeyCache {
        &self.subkeys
    }

    #[cfg(test)]
    pub(crate) fn set_subkey_cache_for_test(&mut self, cache: SubkeyCache) {
        self.subkeys = cache;
    }

    /// Whether no version is held.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}

impl std::fmt::Debug for KeyRing {
    /// Shows the key id and version numbers only, never key bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("key_id", &self.key_id).field("versions", &self.versions()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_newest_and_retire() {
        let mut ring = KeyRing::new("alias/tsk");
        assert_eq!(ring.newest_version(), None);
        assert!(ring.is_empty());
        ring.insert(2, Tsk::from_bytes([2; 32])).unwrap();
        ring.insert(1, Tsk::from_bytes([1; 32])).unwrap();
        assert_eq!(ring.versions(), vec![1, 2]);
        assert_eq!(ring.newest_version(), Some(2));
        assert!(ring.retire(2));
        assert!(!ring.retire(2));
        assert_eq!(ring.newest_version(), Some(1));
        assert_eq!(ring.key_id(), "alias/tsk");
    }

    #[test]
    fn insert_refuses_zero_and_conflicts_but_is_idempotent() {
        let mut ring = KeyRing::new("k");
        assert_eq!(ring.insert(0, Tsk::from_bytes([1; 32])), Err(KeyRingError::VersionZero));
        ring.insert(1, Tsk::from_bytes([1; 32])).unwrap();
        ring.insert(1, Tsk::from_bytes([1; 32])).unwrap();
        assert_eq!(
            ring.insert(1, Tsk::from_bytes([9; 32])),
            Err(KeyRingError::ConflictingVersion { key_id: "k".into(), version: 1 })
        );
    }

    #[test]
    fn debug_shows_versions_not_keys() {
        let mut ring = KeyRing::new("k");
        ring.insert(1, Tsk::from_bytes([0xCD; 32])).unwrap();
        let s = format!("{ring:?}");
        assert_eq!(s, r#"KeyRing { key_id: "k", versions: [1] }"#);
    }
}
