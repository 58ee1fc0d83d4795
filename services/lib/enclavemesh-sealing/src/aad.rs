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

/// AADs up to this many bytes are built on the stack (a KMS key ARN, a workflow id
/// and an agent name of usual lengths take about 200); longer ones go to the heap.
const INLINE_AAD: usize = 512;

/// An encoded AAD: on the stack when it fits, so the common envelope costs no
/// allocation for it. Not secret (every field is in the clear in the envelope).
#[allow(clippy::large_enum_variant)] // the point: a stack buffer instead of a heap one
pub(crate) enum Aad {
    Inline { buf: [u8; INLINE_AAD], len: usize },
    Heap(Vec<u8>),
}

impl Aad {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            // `len <= INLINE_AAD` by construction; `get` keeps even a bug panic-free.
            Aad::Inline { buf, len } => buf.get(..*len).unwrap_or_default(),
            Aad::Heap(v) => v,
        }
    }
}

impl<'a> AadFields<'a> {
    /// The fields an envelope's header carries: what `open` authenticates.
    pub(crate) fn of_envelope(env: &'a enclavemesh_proto::v1::SealedEnvelope) -> Self {
        AadFields {
            format_version: env.format_version,
            key_id: &env.key_id,
            key_version: env.key_version,
            workflow_id: &env.workflow_id,
            step: env.step,
            agent: &env.agent,
        }
    }

    /// Encodes the fields as described in the module docs.
    pub(crate) fn encode(&self) -> Aad {
        let total = 8 * 4 + 4 * 2 + 8 + AAD_LABEL.len() + self.key_id.len() + self.workflow_id.len() + self.agent.len();
        if total <= INLINE_AAD {
            let mut buf = [0u8; INLINE_AAD];
            let mut w = Writer { buf: &mut buf, pos: 0 };
            self.write(&mut w);
            let len = w.pos;
            debug_assert_eq!(len, total);
            Aad::Inline { buf, len }
        } else {
            let mut out = Vec::with_capacity(total);
            self.write(&mut out);
            Aad::Heap(out)
        }
    }

    fn write(&self, out: &mut impl Sink) {
        put_bytes(out, AAD_LABEL);
        out.put(&self.format_version.to_be_bytes());
        put_bytes(out, self.key_id.as_bytes());
        out.put(&self.key_version.to_be_bytes());
        put_bytes(out, self.workflow_id.as_bytes());
        out.put(&self.step.to_be_bytes());
        put_bytes(out, self.agent.as_bytes());
    }
}

/// Where [`AadFields::write`] appends bytes.
trait Sink {
    fn put(&mut self, b: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

/// Appends into a fixed buffer that `encode` sized to fit.
struct Writer<'a> {
    buf: &'a mut [u8; INLINE_AAD],
    pos: usize,
}

impl Sink for Writer<'_> {
    fn put(&mut self, b: &[u8]) {
        let end = self.pos + b.len();
        // `encode` checked the total fits; should that ever be wrong, the AAD comes
        // out short and authentication fails instead of the enclave panicking.
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(b);
            self.pos = end;
        }
    }
}

fn put_bytes(out: &mut impl Sink, b: &[u8]) {
    out.put(&(b.len() as u64).to_be_bytes());
    out.put(b);
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
        assert_ne!(fields("ab", "c", "x").encode().as_slice(), fields("a", "bc", "x").encode().as_slice());
        assert_ne!(fields("k", "wf", "").encode().as_slice(), fields("k", "w", "f").encode().as_slice());
    }

    #[test]
    fn layout_is_pinned() {
        let aad = AadFields { format_version: 1, key_id: "k", key_version: 2, workflow_id: "w", step: 3, agent: "a" }
            .encode();
        assert!(matches!(aad, Aad::Inline { .. }));
        let aad = aad.as_slice().to_vec();
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

    #[test]
    fn long_fields_go_to_the_heap_with_the_same_layout() {
        // Around the inline limit: both representations must encode identically.
        for n in [0usize, 100, 400, 430, 431, 432, 433, 600, 5000] {
            let wf = "w".repeat(n);
            let f = fields("key", &wf, "agent");
            let aad = f.encode();
            let mut reference = Vec::new();
            f.write(&mut reference);
            assert_eq!(aad.as_slice(), reference.as_slice(), "workflow id of {n} bytes");
            assert_eq!(matches!(aad, Aad::Inline { .. }), reference.len() <= INLINE_AAD);
        }
    }
}
