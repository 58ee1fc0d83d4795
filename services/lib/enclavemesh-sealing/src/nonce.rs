//! Random 96-bit GCM nonces: bytes from the operating system's RNG, fetched in
//! batches.
//!
//! Why batches: `getrandom` is a system call, and on the project's (virtualised)
//! machines one costs about 0.5 µs: more than encrypting a 1 KiB envelope. Each
//! thread therefore fetches [`POOL_NONCES`] nonces' worth of OS randomness in one
//! call and hands the bytes out 12 at a time, each byte exactly once (a cursor that
//! only moves forward; the pool is thread-local, so no two threads share bytes).
//!
//! What this does not change: every nonce is still 96 bits straight from the
//! kernel's CSPRNG (no userspace generator, no counter), used once, so the nonce
//! distribution, and with it the collision bound of [`crate::subkey_cache`], is
//! exactly that of one `getrandom` per nonce. Nonces are public (they travel in the
//! envelope), so holding the next few in memory reveals nothing.
//!
//! The one difference, and why it does not apply here: a process that `fork`s
//! without `exec` duplicates the forking thread's unused nonces (at most
//! `POOL_NONCES - 1`) into the child; parent and child both sealing under the same
//! workflow key would then repeat a nonce. Nothing in this workspace forks without
//! exec (the agents are multi-threaded tokio processes; `std::process::Command`
//! execs at once), and Nitro Enclaves cannot be snapshotted or cloned. Userspace
//! RNGs (OpenSSL's DRBG, rand's `ThreadRng`) share the hazard.

use std::cell::RefCell;

use rand::RngCore;
use rand::rngs::OsRng;

use crate::cipher::NONCE_LEN;

/// Nonces fetched per `getrandom` call (384 bytes: the kernel's per-call cost is
/// amortised, the per-byte cost is not, so larger batches gain little).
pub(crate) const POOL_NONCES: usize = 32;

struct Pool {
    bytes: [u8; POOL_NONCES * NONCE_LEN],
    /// Next unused byte; `bytes.len()` when empty (which is also the initial state).
    next: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; POOL_NONCES * NONCE_LEN], next: POOL_NONCES * NONCE_LEN }) };
}

/// A fresh random nonce. `Err` carries the OS RNG's message when it fails.
pub(crate) fn random_nonce() -> Result<[u8; NONCE_LEN], String> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.next + NONCE_LEN > pool.bytes.len() {
            OsRng.try_fill_bytes(&mut pool.bytes).map_err(|e| e.to_string())?;
            pool.next = 0;
        }
        let start = pool.next;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(pool.bytes.get(start..start + NONCE_LEN).ok_or_else(|| "nonce pool".to_owned())?);
        // Not secret, but no byte should ever be handed out twice: overwrite it.
        if let Some(used) = pool.bytes.get_mut(start..start + NONCE_LEN) {
            used.fill(0);
        }
        pool.next = start + NONCE_LEN;
        Ok(nonce)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn nonces_are_distinct_across_refills_and_threads() {
        let draw = || (0..POOL_NONCES * 5 + 3).map(|_| random_nonce().unwrap()).collect::<Vec<_>>();
        let mut all = HashSet::new();
        for n in draw() {
            assert!(all.insert(n), "nonce repeated within a thread");
        }
        let others: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3).map(|_| s.spawn(draw)).collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        for n in others {
            assert!(all.insert(n), "nonce repeated across threads");
        }
        assert!(!all.contains(&[0u8; NONCE_LEN]));
    }
}
