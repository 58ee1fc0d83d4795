//! What the caller says about an envelope: who seals it, what the opener expects,
//! and how much it is willing to decrypt.

/// Envelope format written by this build: AES-256-GCM under an HKDF-SHA256
/// per-workflow subkey, 96-bit random nonce, AAD per [`crate::aad`].
pub const FORMAT_VERSION: u32 = 1;

/// Header fields written into a new envelope (and bound into its AAD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealHeader {
    /// Temporal workflow id the state belongs to; also selects the subkey.
    pub workflow_id: String,
    /// Step number of the state inside (0 = initial state from Init).
    pub step: u64,
    /// Name of the sealing agent, recorded for audit and bound so it can't be
    /// relabelled.
    pub agent: String,
}

/// What the opener expects the envelope to be for.
///
/// Why this exists: authentication alone proves an envelope is *some* genuine
/// state, not that it is the state for *this* step of *this* workflow. Without the
/// check, an old (authentic) step could be replayed to roll a ledger back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Workflow the opener is working for.
    pub workflow_id: String,
    /// Step whose input state the opener expects.
    pub step: u64,
}

/// Resource bounds for opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest ciphertext (including the 16-byte tag) that will be decrypted.
    /// Checked before anything is allocated, so a hostile envelope cannot make the
    /// enclave reserve memory.
    pub max_ciphertext_bytes: usize,
}

impl Limits {
    /// 1 MiB: agent state is small; anything larger is a bug or an attack.
    pub const DEFAULT_MAX_CIPHERTEXT_BYTES: usize = 1024 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_ciphertext_bytes: Self::DEFAULT_MAX_CIPHERTEXT_BYTES }
    }
}
