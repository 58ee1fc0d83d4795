//! The canonical byte encoding a record's hash is computed over.
//!
//! Why not hash the JSON: JSON has many spellings of the same value (key order,
//! escapes, whitespace), so a verifier re-serialising a record could disagree with
//! the writer. Here every field has one fixed position and a length prefix, and an
//! absent optional field is distinct from an empty one.

/// Builder of a length-prefixed, position-fixed encoding.
pub(crate) struct Canonical(Vec<u8>);

impl Canonical {
    pub(crate) fn new(domain: &[u8]) -> Self {
        let mut c = Canonical(Vec::with_capacity(256));
        c.bytes(domain);
        c
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&(b.len() as u64).to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }

    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn opt_str(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            None => self.0.push(0),
            Some(s) => {
                self.0.push(1);
                self.str(s);
            }
        }
        self
    }

    pub(crate) fn opt_u64(&mut self, v: Option<u64>) -> &mut Self {
        match v {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                self.u64(v);
            }
        }
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.0
    }
}
