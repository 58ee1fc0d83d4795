//! Canonical additional authenticated data for an envelope.
//!
//! Why a hand-written encoding rather than the protobuf bytes: protobuf encoding
//! is not canonical (field order, default omission, unknown fields), so two
//! encoders could disagree on the bytes. Here every field is fixed-width or
//! length-prefixed, in a fixed order, after a domain label: distinct headers always
//! give distinct AAD (no "ab"+"c" = "a"+"bc" ambiguity), and editing any header
//! field makes GCM authentication fail.
//!
//! Layout (all integers big-endian):
//! ```text
//! u64 len || "enclavemesh/v1/seal/aad"
//! u32 format_version
//! u64 len || key_id
//! u32 key_version
//! u64 len || workflow_id
//! u64 step
//! u64 len || agent
//! ```

/// Domain label at the start of the AAD, so it can never be mistaken for another
/// protocol's AAD under the same key.
pub(crate) const AAD_LABEL: &[u8] = b"enclavemesh/v1/seal/aad";

/// Header fields bound into the AAD, borrowed from either side (seal or open).
pub(crate) struct AadFields<'a> {
    pub format_version: u32,
    pub key_id: &'a str,
    pub key_version: u32,
    pub workflow_id: &'a str,
    pub step: u64,
    pub agent: &'a str,
}

impl AadFields<'_> {
    /// Encodes the fields as described in the module docs.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            8 * 4 + 4 * 2 + 8 + AAD_LABEL.len() + self.key_id.len() + self.workflow_id.len() + self.agent.len(),
        );
        put_bytes(&mut out, AAD_LABEL);
        out.extend_from_slice(&self.format_version.to_be_bytes());
        put_bytes(&mut out, self.key_id.as_bytes());
        out.extend_from_slice(&self.key_version.to_be_bytes());
        put_bytes(&mut out, self.workflow_id.as_bytes());
        out.extend_from_slice(&self.step.to_be_bytes());
        put_bytes(&mut out, self.agent.as_bytes());
        out
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_be_bytes());
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(key_id: &'a str, wf: &'a str, agent: &'a str) -> AadFields<'a> {
        AadFields { format_version: 1, key_id, key_version: 1, workflow_id: wf, step: 0, agent }
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        // Moving bytes between adjacent string fields must change the encoding.
        assert_ne!(fields("ab", "c", "x").encode(), fields("a", "bc", "x").encode());
        assert_ne!(fields("k", "wf", "").encode(), fields("k", "w", "f").encode());
    }

    #[test]
    fn layout_is_pinned() {
        let aad = AadFields { format_version: 1, key_id: "k", key_version: 2, workflow_id: "w", step: 3, agent: "a" }
            .encode();
        let mut expect = Vec::new();
        expect.extend_from_slice(&(AAD_LABEL.len() as u64).to_be_bytes());
        expect.extend_from_slice(AAD_LABEL);
        expect.extend_from_slice(&[0, 0, 0, 1]);
        expect.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, b'k']);
        expect.extend_from_slice(&[0, 0, 0, 2]);
        expect.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, b'w']);
        expect.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3]);
        expect.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, b'a']);
        assert_eq!(aad, expect);
    }
}
