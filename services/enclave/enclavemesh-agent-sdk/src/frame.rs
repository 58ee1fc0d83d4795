//! The plaintext inside every envelope: the SDK's header around a role's own state.
//!
//! Why a frame: what the SDK must keep across calls (the workflow and step, the owner's
//! key that results are sealed to, the manifest digest the topology is checked against)
//! is not the role's to carry or to change. The role gets only `state`, decoded as its
//! own message, and every plaintext copy made here is wiped.

use enclavemesh_proto::DecodeError;
use enclavemesh_proto::v1::StateFrame;
use prost::Message;
use zeroize::{Zeroize, Zeroizing};

use crate::role::Plain;

/// An opened state: the header the SDK keeps, and the role's state.
pub(crate) struct Frame<S: Message + Default + Zeroize> {
    pub workflow_id: String,
    pub step: u64,
    pub owner_public_key: Vec<u8>,
    pub manifest_sha256: Vec<u8>,
    pub state: Plain<S>,
}

/// A decoded `StateFrame` whose `state` bytes are wiped when dropped.
struct Wire(StateFrame);

impl Drop for Wire {
    fn drop(&mut self) {
        self.0.state.zeroize();
    }
}

impl<S: Message + Default + Zeroize> Frame<S> {
    /// Encodes into a buffer that is wiped when dropped.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let wire = Wire(StateFrame {
            workflow_id: self.workflow_id.clone(),
            step: self.step,
            owner_public_key: self.owner_public_key.clone(),
            manifest_sha256: self.manifest_sha256.clone(),
            state: self.state.encode_to_vec(),
        });
        Zeroizing::new(wire.0.encode_to_vec())
    }

    /// Decodes a frame and the role's state in it, both bounded by `limit` bytes.
    pub fn decode(bytes: &[u8], limit: usize) -> Result<Self, DecodeError> {
        let mut wire = Wire(enclavemesh_proto::decode_bounded(bytes, limit)?);
        let state = Plain::new(enclavemesh_proto::decode_bounded::<S>(&wire.0.state, limit)?);
        Ok(Frame {
            workflow_id: std::mem::take(&mut wire.0.workflow_id),
            step: wire.0.step,
            owner_public_key: std::mem::take(&mut wire.0.owner_public_key),
            manifest_sha256: std::mem::take(&mut wire.0.manifest_sha256),
            state,
        })
    }
}
