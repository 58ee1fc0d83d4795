//! The canonical byte encoding a record's hash is computed over.
//!
//! Why not hash the JSON: JSON has many spellings of the same value (key order,
//! escapes, whitespace), so a verifier re-serialising a record could disagree with
//! the writer. Here every field has one fixed position and a length prefix, and an
//! absent optional field is distinct from an empty one.
//!
//! The encoding goes to a [`Sink`]: a `Vec` (what a verifier or a test looks at) or
//! straight into SHA-256 (what the writer does per call: no buffer at all).

use sha2::{Digest, Sha256};

/// Where canonical bytes go.
pub(crate) trait Sink {
    fn put(&mut self, b: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, b: &[u8]) {
        self.update(b);
    }
}

/// Builder of a length-prefixed, position-fixed encoding.
pub(crate) struct Canonical<S: Sink>(S);

impl Canonical<Vec<u8>> {
    pub(crate) fn new(domain: &[u8]) -> Self {
        Canonical::into_sink(Vec::with_capacity(256), domain)
    }
}

impl<S: Sink> Canonical<S> {
    pub(crate) fn into_sink(sink: S, domain: &[u8]) -> Self {
        let mut c = Canonical(sink);
        c.bytes(domain);
        c
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.put(&(b.len() as u64).to_be_bytes());
        self.0.put(b);
        self
    }

    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.put(&v.to_be_bytes());
        self
    }

    pub(crate) fn opt_str(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            None => self.0.put(&[0]),
            Some(s) => {
                self.0.put(&[1]);
                self.str(s);
            }
        }
        self
    }

    pub(crate) fn opt_u64(&mut self, v: Option<u64>) -> &mut Self {
        match v {
            None => self.0.put(&[0]),
            Some(v) => {
                self.0.put(&[1]);
                self.u64(v);
            }
        }
        self
    }

    pub(crate) fn finish(self) -> S {
        self.0
    }
}

/// Lower-case hex of a digest, on the stack.
pub(crate) struct Hex32([u8; 64]);

impl Hex32 {
    pub(crate) fn of(b: &[u8; 32]) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, byte) in b.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(byte >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(byte & 0x0f)];
        }
        Hex32(out)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII hex digits were written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}
