//! Unguessable ids (Engine.IO session ids, Socket.IO recovery ids).

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    sync::atomic::{AtomicU64, Ordering},
};

/// 128 random bits: SipHash keyed with the thread's random keys (from the OS) over a
/// process-wide counter is a PRF, so outputs cannot be predicted from earlier ones.
pub fn random_bits() -> u128 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static KEYS: RandomState = RandomState::new();
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let (a, b) = KEYS.with(|keys| {
        let word = |i: u64| {
            let mut h = keys.build_hasher();
            h.write_u64(n);
            h.write_u64(i);
            h.finish()
        };
        (word(0), word(1))
    });
    (u128::from(a) << 64) | u128::from(b)
}
