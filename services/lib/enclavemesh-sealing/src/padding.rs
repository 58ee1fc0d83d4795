//! Size buckets for sealed state, so that a ciphertext's length does not tell the
//! number of digits in a balance or the length of a note.
//!
//! Layout: `u32 big-endian length || plaintext || zeros`, to the bucket size: the
//! smallest power of two that holds it, and at least `floor`. What still shows is the
//! bucket, which grows only with the state as a whole (its history, one record a step:
//! the step count is public anyway).

use zeroize::Zeroizing;

/// Default smallest bucket: a fresh ledger with a short note fits in it.
pub const DEFAULT_PAD_FLOOR: usize = 1024;
const LEN_BYTES: usize = 4;

/// Why padded bytes could not be unpadded (after authentication, so only a sealing
/// agent with a bug gets here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaddingError {
    #[error("padded state of {len} bytes is shorter than its length prefix")]
    Short { len: usize },
    #[error("padded state claims {claimed} bytes of content but holds {available}")]
    BadLength { claimed: usize, available: usize },
    #[error("state of {len} bytes is too large to pad (over 2 GiB)")]
    TooLarge { len: usize },
}

/// The bucket `len` content bytes are padded to.
pub fn bucket(len: usize, floor: usize) -> usize {
    (len + LEN_BYTES).checked_next_power_of_two().unwrap_or(usize::MAX).max(floor)
}

/// Pads `plain` to its bucket, into a buffer that is wiped when dropped.
pub fn pad(plain: &[u8], floor: usize) -> Result<Zeroizing<Vec<u8>>, PaddingError> {
    let len =
        u32::try_from(plain.len()).ok().filter(|l| *l <= 1 << 31).ok_or(PaddingError::TooLarge { len: plain.len() })?;
    let size = bucket(plain.len(), floor);
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(plain);
    out.resize(size, 0);
    Ok(out)
}

/// The content of padded bytes.
pub fn unpad(padded: &[u8]) -> Result<&[u8], PaddingError> {
    let (prefix, rest) = padded.split_first_chunk::<LEN_BYTES>().ok_or(PaddingError::Short { len: padded.len() })?;
    let claimed = u32::from_be_bytes(*prefix) as usize;
    rest.get(..claimed).ok_or(PaddingError::BadLength { claimed, available: rest.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fall_into_buckets_and_round_trip() {
        assert_eq!(bucket(0, 1024), 1024);
        assert_eq!(bucket(1020, 1024), 1024);
        assert_eq!(bucket(1021, 1024), 2048);
        assert_eq!(bucket(5000, 1024), 8192);
        // A balance of 7 and one of 7,340,291,553, notes of 1 and 300 bytes: one size.
        for content in [vec![1u8; 20], vec![2u8; 30], vec![3u8; 330]] {
            let p = pad(&content, 1024).unwrap();
            assert_eq!(p.len(), 1024);
            assert_eq!(unpad(&p).unwrap(), content.as_slice());
        }
        assert_eq!(unpad(&[0, 0]), Err(PaddingError::Short { len: 2 }));
        assert_eq!(unpad(&[0, 0, 0, 9, 1]), Err(PaddingError::BadLength { claimed: 9, available: 1 }));
    }
}
