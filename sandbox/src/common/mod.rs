//! What both simulators share and no vendor owns: the clock tests can move, the fault knobs, the
//! in-process server, the deterministic PRNG and the dealership data it draws from.

pub mod clock;
pub mod faults;
pub mod people;
pub mod rng;
pub mod server;
pub mod vin;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Locks a mutex even if a previous holder panicked: a simulator keeps answering (the state is
/// plain data, every write completes before the lock is released).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `application/x-www-form-urlencoded` body or query string into a map (last value wins).
pub(crate) fn parse_form(bytes: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

/// A random-looking but deterministic token: `prefix` + 32 hex characters from the PRNG.
pub(crate) fn token(rng: &mut rng::SplitMix64, prefix: &str) -> String {
    format!("{prefix}{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}
