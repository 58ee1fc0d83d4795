//! Content digest of an envelope.

use enclavemesh_proto::v1::SealedEnvelope;
use prost::Message;
use sha2::{Digest, Sha256};

/// SHA-256 of the envelope's protobuf encoding.
///
/// Why: workflow history and audit logs record which sealed state went in and
/// came out of a step without storing the (opaque, possibly large) envelope, and
/// without anything about the plaintext. The digest is of the bytes as this build
/// encodes them (prost writes fields in tag order and omits defaults), so
/// compare digests computed here, not digests of bytes from another encoder.
pub fn envelope_sha256(env: &SealedEnvelope) -> [u8; 32] {
    Sha256::digest(env.encode_to_vec()).into()
}
