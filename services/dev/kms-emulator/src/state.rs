//! The emulator's key store (it plays the HSM: key material lives here) and its
//! persistence to `--state-file`, written atomically (temp file + rename) after each
//! mutation so a crash never leaves a half-written file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::EmulatorError;

const STATE_VERSION: u32 = 1;

/// Key lifecycle states we model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
        }
    }
}

/// One symmetric KMS key.
#[derive(Clone)]
pub struct Key {
    pub key_id: String,
    pub arn: String,
    pub material: Zeroizing<[u8; 32]>,
    /// The "default" key policy exactly as put (returned verbatim by GetKeyPolicy).
    pub policy: String,
    pub description: String,
    /// Epoch seconds.
    pub created: f64,
    pub state: KeyState,
    pub deletion_date: Option<f64>,
    pub tags: Vec<(String, String)>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("key_id", &self.key_id).field("state", &self.state).finish()
    }
}

/// An alias (`alias/name` -> key id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alias {
    pub target_key_id: String,
    pub created: f64,
}

/// A grant: `grantee` may run `operations` on the key, within `constraints` (KMS grants
/// are the other way, besides the key policy, to be allowed an operation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    pub grant_id: String,
    pub key_id: String,
    pub grantee_principal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_principal: Option<String>,
    pub operations: Vec<String>,
    /// `EncryptionContextSubset`: the request's context must contain these pairs.
    #[serde(default)]
    pub context_subset: BTreeMap<String, String>,
    /// `EncryptionContextEquals`: the request's context must be exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_equals: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub issuing_account: String,
    pub created: f64,
}

/// Everything the emulator knows.
#[derive(Debug, Default, Clone)]
pub struct Store {
    pub keys: BTreeMap<String, Key>,
    pub aliases: BTreeMap<String, Alias>,
    pub grants: Vec<Grant>,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    key_id: String,
    arn: String,
    /// Base64 of the 32-byte AES-256 key material. The state file is the HSM: keep it 0600.
    material: String,
    policy: String,
    description: String,
    created: f64,
    state: KeyState,
    #[serde(default)]
    deletion_date: Option<f64>,
    #[serde(default)]
    tags: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct StoredState {
    version: u32,
    keys: Vec<StoredKey>,
    aliases: BTreeMap<String, Alias>,
    #[serde(default)]
    grants: Vec<Grant>,
}

impl Store {
    /// Loads `path`, or an empty store when it does not exist yet.
    pub fn load(path: &Path) -> Result<Store, EmulatorError> {
        let err = |reason: String| EmulatorError::StateLoad { path: path.display().to_string(), reason };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Store::default()),
            Err(e) => return Err(err(e.to_string())),
        };
        let stored: StoredState =
            serde_json::from_str(&text).map_err(|e| err(format!("not valid emulator state JSON: {e}")))?;
        if stored.version != STATE_VERSION {
            return Err(err(format!("state version {} (this emulator reads {STATE_VERSION})", stored.version)));
        }
        let mut keys = BTreeMap::new();
        for k in stored.keys {
            let raw =
                Zeroizing::new(B64.decode(&k.material).map_err(|e| err(format!("key {}: material: {e}", k.key_id)))?);
            let mut material = Zeroizing::new([0u8; 32]);
            if raw.len() != 32 {
                return Err(err(format!("key {}: material is {} bytes, expected 32", k.key_id, raw.len())));
            }
            material.copy_from_slice(&raw);
            keys.insert(
                k.key_id.clone(),
                Key {
                    key_id: k.key_id,
                    arn: k.arn,
                    material,
                    policy: k.policy,
                    description: k.description,
                    created: k.created,
                    state: k.state,
                    deletion_date: k.deletion_date,
                    tags: k.tags,
                },
            );
        }
        Ok(Store { keys, aliases: stored.aliases, grants: stored.grants })
    }

    /// Writes the store to `path` atomically (same-directory temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), EmulatorError> {
        let err = |reason: String| EmulatorError::StateWrite { path: path.display().to_string(), reason };
        let stored = StoredState {
            version: STATE_VERSION,
            keys: self
                .keys
                .values()
                .map(|k| StoredKey {
                    key_id: k.key_id.clone(),
                    arn: k.arn.clone(),
                    material: B64.encode(k.material.as_ref()),
                    policy: k.policy.clone(),
                    description: k.description.clone(),
                    created: k.created,
                    state: k.state,
                    deletion_date: k.deletion_date,
                    tags: k.tags.clone(),
                })
                .collect(),
            aliases: self.aliases.clone(),
            grants: self.grants.clone(),
        };
        let json = Zeroizing::new(serde_json::to_vec_pretty(&stored).map_err(|e| err(e.to_string()))?);
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| err(format!("create {}: {e}", dir.display())))?;
        let tmp: PathBuf = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
            std::process::id()
        ));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(|e| err(format!("create {}: {e}", tmp.display())))?;
        f.write_all(&json).and_then(|_| f.sync_all()).map_err(|e| err(e.to_string()))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| err(format!("rename into place: {e}")))?;
        Ok(())
    }
}
