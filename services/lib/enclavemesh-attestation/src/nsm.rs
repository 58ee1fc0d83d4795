//! The NSM abstraction: the agent asks "an NSM" for attestation documents and PCRs, and does
//! not care whether it is the real `/dev/nsm` or the dev-mode simulator.

use crate::MAX_FIELD_BYTES;
use crate::error::NsmError;

/// A Nitro Secure Module (real or simulated).
pub trait Nsm: Send + Sync {
    /// An attestation document (untagged COSE_Sign1 bytes) embedding the optional fields,
    /// each at most [`MAX_FIELD_BYTES`].
    fn attestation(
        &self,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, NsmError>;

    /// Current value of PCR `index` (48 bytes, SHA-384 bank).
    fn describe_pcr(&self, index: u16) -> Result<Vec<u8>, NsmError>;

    /// "nitro" or "simulated" (for logs, metrics and `Describe`).
    fn kind(&self) -> &'static str;
}

/// Reject fields larger than the real NSM accepts, with the field named.
pub(crate) fn check_field_sizes(
    user_data: Option<&[u8]>,
    nonce: Option<&[u8]>,
    public_key: Option<&[u8]>,
) -> Result<(), NsmError> {
    for (field, value) in [("user_data", user_data), ("nonce", nonce), ("public_key", public_key)] {
        if let Some(v) = value
            && v.len() > MAX_FIELD_BYTES
        {
            return Err(NsmError::InputTooLarge { field, len: v.len(), limit: MAX_FIELD_BYTES });
        }
    }
    Ok(())
}
