//! The plaintext inside every envelope: the SDK's header around a role's own state.
//!
//! Why a frame: what the SDK must keep across calls (the workflow and step, the owner's
//! key that results are sealed to, the manifest digest the topology is checked against)
//! is not the role's to carry or to change. The role gets only `state`, decoded as its
//! own message.
//!
//! The wire form is `enclavemesh.v1.StateFrame`. It is written and read here field by
//! field, with the role's state encoded in place and decoded from its slice: no second
//! plaintext copy of the state is made (a copy would be one more buffer to wipe, and
//! it cost ~5 µs of a ~95 µs Process; BENCHMARKS.md).

use enclavemesh_proto::DecodeError;
use prost::Message;
use prost::bytes::Buf;
use prost::encoding::{self, DecodeContext, WireType};
use zeroize::{Zeroize, Zeroizing};

use crate::role::Plain;

/// `StateFrame`'s field numbers (proto/enclavemesh/v1/state.proto).
const WORKFLOW_ID: u32 = 1;
const STEP: u32 = 2;
const OWNER_PUBLIC_KEY: u32 = 3;
const MANIFEST_SHA256: u32 = 4;
const STATE: u32 = 5;

/// An opened state: the header the SDK keeps, and the role's state.
pub(crate) struct Frame<S: Message + Default + Zeroize> {
    pub workflow_id: String,
    pub step: u64,
    pub owner_public_key: Vec<u8>,
    pub manifest_sha256: Vec<u8>,
    pub state: Plain<S>,
}

impl<S: Message + Default + Zeroize> Frame<S> {
    /// Encodes as a `StateFrame`, into a buffer that is wiped when dropped.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let state_len = self.state.encoded_len();
        let mut len = encoding::key_len(STATE) + encoding::encoded_len_varint(state_len as u64) + state_len;
        if !self.workflow_id.is_empty() {
            len += encoding::string::encoded_len(WORKFLOW_ID, &self.workflow_id);
        }
        if self.step != 0 {
            len += encoding::uint64::encoded_len(STEP, &self.step);
        }
        if !self.owner_public_key.is_empty() {
            len += encoding::bytes::encoded_len(OWNER_PUBLIC_KEY, &self.owner_public_key);
        }
        if !self.manifest_sha256.is_empty() {
            len += encoding::bytes::encoded_len(MANIFEST_SHA256, &self.manifest_sha256);
        }
        // Sized once: the buffer never reallocates (which would leave an unwiped copy).
        let mut buf = Zeroizing::new(Vec::with_capacity(len));
        if !self.workflow_id.is_empty() {
            encoding::string::encode(WORKFLOW_ID, &self.workflow_id, &mut *buf);
        }
        if self.step != 0 {
            encoding::uint64::encode(STEP, &self.step, &mut *buf);
        }
        if !self.owner_public_key.is_empty() {
            encoding::bytes::encode(OWNER_PUBLIC_KEY, &self.owner_public_key, &mut *buf);
        }
        if !self.manifest_sha256.is_empty() {
            encoding::bytes::encode(MANIFEST_SHA256, &self.manifest_sha256, &mut *buf);
        }
        encoding::encode_key(STATE, WireType::LengthDelimited, &mut *buf);
        encoding::encode_varint(state_len as u64, &mut *buf);
        self.state.encode_raw(&mut *buf);
        buf
    }

    /// Decodes a `StateFrame` and the role's state in it (from its slice), bounded by
    /// `limit` bytes.
    pub fn decode(bytes: &[u8], limit: usize) -> Result<Self, DecodeError> {
        if bytes.len() > limit {
            return Err(DecodeError::TooLarge { len: bytes.len(), limit });
        }
        let mut buf = bytes;
        let (mut workflow_id, mut step) = (String::new(), 0u64);
        let (mut owner_public_key, mut manifest_sha256) = (Vec::new(), Vec::new());
        let mut state = None;
        while buf.has_remaining() {
            let (tag, wire_type) = encoding::decode_key(&mut buf)?;
            let ctx = DecodeContext::default();
            match tag {
                WORKFLOW_ID => encoding::string::merge(wire_type, &mut workflow_id, &mut buf, ctx)?,
                STEP => encoding::uint64::merge(wire_type, &mut step, &mut buf, ctx)?,
                OWNER_PUBLIC_KEY => encoding::bytes::merge(wire_type, &mut owner_public_key, &mut buf, ctx)?,
                MANIFEST_SHA256 => encoding::bytes::merge(wire_type, &mut manifest_sha256, &mut buf, ctx)?,
                STATE => {
                    encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                    let declared = encoding::decode_varint(&mut buf)?;
                    let len = usize::try_from(declared)
                        .ok()
                        .filter(|l| *l <= buf.remaining())
                        .ok_or(DecodeError::Truncated { field: STATE, len: declared, remaining: buf.remaining() })?;
                    // A repeated field 5 replaces the earlier one (last one wins, as in
                    // proto3 for a non-repeated message field read as bytes).
                    state = Some(Plain::new(S::decode(&buf[..len])?));
                    buf.advance(len);
                }
                _ => encoding::skip_field(wire_type, tag, &mut buf, ctx)?,
            }
        }
        Ok(Frame {
            workflow_id,
            step,
            owner_public_key,
            manifest_sha256,
            state: state.unwrap_or_else(|| Plain::new(S::default())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclavemesh_proto::v1::{LedgerState, StateFrame, StepRecord};

    fn frame() -> Frame<LedgerState> {
        let history = vec![StepRecord { step: 1, agent: "b".into(), balance_before: 10, balance_after: 11 }];
        Frame {
            workflow_id: "wf-1".into(),
            step: 7,
            owner_public_key: vec![4; 32],
            manifest_sha256: vec![5; 32],
            state: Plain::new(LedgerState { secret_note: "n".into(), balance: 11, history, ..Default::default() }),
        }
    }

    #[test]
    fn the_frame_is_a_state_frame_on_the_wire_both_ways() {
        let f = frame();
        let bytes = f.encode();
        // What prost makes of it: the same fields, the state as its own message.
        let wire = StateFrame::decode(bytes.as_slice()).unwrap();
        assert_eq!((wire.workflow_id.as_str(), wire.step), ("wf-1", 7));
        assert_eq!((wire.owner_public_key.len(), wire.manifest_sha256.len()), (32, 32));
        assert_eq!(LedgerState::decode(wire.state.as_slice()).unwrap(), *f.state);
        assert_eq!(bytes.len(), wire.encoded_len(), "sized exactly");
        // And back: prost's encoding decodes here to the same frame.
        let back = Frame::<LedgerState>::decode(&wire.encode_to_vec(), 1 << 20).unwrap();
        assert_eq!((back.workflow_id.as_str(), back.step, &*back.state), ("wf-1", 7, &*f.state));
        assert_eq!((back.owner_public_key, back.manifest_sha256), (vec![4; 32], vec![5; 32]));
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let good = frame().encode();
        assert!(matches!(Frame::<LedgerState>::decode(&good, 8), Err(DecodeError::TooLarge { .. })));
        for cut in 1..good.len() {
            let _ = Frame::<LedgerState>::decode(&good[..cut], 1 << 20);
        }
        // A state length past the end, a wrong wire type for the state, garbage.
        for bad in [&[0x2a, 0x7f, 0x01][..], &[0x28, 0x01], &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff], &[0x0a, 0x05, b'a']]
        {
            assert!(Frame::<LedgerState>::decode(bad, 1 << 20).is_err(), "{bad:?}");
        }
    }
}
