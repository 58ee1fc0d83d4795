//! Contracts shared by every Enclave Mesh program, generated from `proto/`.
//!
//! Besides the generated types this crate holds [`decode_bounded`], the one way the
//! boundary turns untrusted bytes into a message: size-checked before any allocation,
//! typed error, never a panic; and [`Refusal`], the one vocabulary of refusals, carried
//! in gRPC status details.

pub mod kms_context;
pub mod limits;
pub mod refusal;

pub use refusal::Refusal;

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("enclavemesh.v1");
}

/// Encoded `FileDescriptorSet` of all enclavemesh protos, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/enclavemesh_descriptor.bin"));

/// Default upper bound for one gRPC message at the enclave boundary (4 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Why bytes could not become a message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed protobuf: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// A length-delimited field whose length runs past its buffer (found by a decoder
    /// that reads fields by hand, e.g. the agent SDK's state frame).
    #[error("malformed protobuf: field {field} is {len} bytes, but only {remaining} remain")]
    Truncated { field: u32, len: u64, remaining: usize },
}

/// Decodes `bytes` as `M` after checking `bytes.len() <= limit`.
///
/// The length check comes first so an oversized input is refused before prost
/// allocates anything for it.
pub fn decode_bounded<M: prost::Message + Default>(bytes: &[u8], limit: usize) -> Result<M, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge { len: bytes.len(), limit });
    }
    Ok(M::decode(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use v1::SealedEnvelope;

    #[test]
    fn bounded_decode_refuses_oversized_before_parsing() {
        let env = SealedEnvelope { ciphertext: vec![7; 100], ..Default::default() };
        let bytes = env.encode_to_vec();
        let err = decode_bounded::<SealedEnvelope>(&bytes, 10).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { limit: 10, .. }));
        let ok: SealedEnvelope = decode_bounded(&bytes, 1000).unwrap();
        assert_eq!(ok, env);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let err = decode_bounded::<SealedEnvelope>(&[0xff, 0xff, 0xff], 1000).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)));
    }

    #[test]
    fn descriptor_set_names_the_services() {
        let fds = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let services: Vec<_> = fds.file.iter().flat_map(|f| f.service.iter()).filter_map(|s| s.name.clone()).collect();
        assert!(services.contains(&"AgentService".to_string()));
        assert!(services.contains(&"KmsForwarder".to_string()));
    }
}
