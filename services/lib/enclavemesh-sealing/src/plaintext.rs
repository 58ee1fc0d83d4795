//! Opened state: a byte buffer that wipes its whole allocation when dropped.
//!
//! Why not `Zeroizing<Vec<u8>>`: zeroize's `Vec` impl wipes the initialised elements
//! one at a time with volatile writes (about a byte per cycle), which for `open`
//! cost almost as much as decrypting them (see BENCH.md: `open` was 0.76x OpenSSL at
//! 16 KiB, 0.86x without the wipe). Here the whole allocation (plaintext and spare
//! capacity) is cleared in one go through zeroize's slice impl for `MaybeUninit<u8>`:
//! a bulk `write_bytes` (memset) followed by an assembly optimisation barrier that
//! takes the buffer's address, so the compiler must assume the zeros are read and can
//! neither drop nor shorten the stores before the deallocation (zeroize >= 1.9 on
//! x86/x86_64/ARM/RISC-V; portable bulk volatile writes on other targets).

use std::fmt;
use std::ops::Deref;

use zeroize::Zeroize;

/// Plaintext returned by [`crate::open`]; dereferences to `&[u8]` and is wiped on drop.
///
/// It never reallocates (it offers no way to grow), so no unwiped copy is left behind.
pub struct Plaintext(Vec<u8>);

impl Plaintext {
    /// An empty buffer with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Plaintext(Vec::with_capacity(capacity))
    }

    /// The buffer for in-place decryption (crate-internal: callers only read).
    pub(crate) fn vec_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

/// Wipes every byte of `v`'s allocation (initialised or not) and leaves it empty.
pub(crate) fn wipe_vec(v: &mut Vec<u8>) {
    // `u8` has no drop glue: `clear` only sets the length to 0, after which the spare
    // capacity is the whole allocation.
    v.clear();
    v.spare_capacity_mut().zeroize();
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        wipe_vec(&mut self.0);
    }
}

impl Deref for Plaintext {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Plaintext {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Never prints the bytes.
impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext({} bytes, redacted)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)] // reading the spare capacity is the only way to see it was wiped
    fn wipe_clears_the_whole_allocation() {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&[0xAB; 40]);
        let cap = v.capacity();
        wipe_vec(&mut v);
        assert!(v.is_empty());
        assert_eq!(v.capacity(), cap);
        // SAFETY (test): the allocation is `cap` bytes and was just fully written with zeros.
        let all = unsafe { std::slice::from_raw_parts(v.as_ptr(), cap) };
        assert!(all.iter().all(|&b| b == 0));
    }

    #[test]
    fn debug_redacts() {
        let mut p = Plaintext::with_capacity(4);
        p.vec_mut().extend_from_slice(b"sec!");
        assert_eq!(format!("{p:?}"), "Plaintext(4 bytes, redacted)");
        assert_eq!(p.as_slice(), b"sec!");
    }
}
