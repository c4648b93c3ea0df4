//! The simulators' clock: wall time plus an offset a test can move forward (and, if asked,
//! frozen), so token expiry, rate-limit windows and query-locator timeouts are exercised without
//! sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
    /// Wall time at which the clock was frozen; 0 while it runs.
    frozen_at_ms: AtomicI64,
}

impl Clock {
    /// Epoch milliseconds as the simulator sees them.
    pub fn now_ms(&self) -> i64 {
        let frozen = self.frozen_at_ms.load(Ordering::Relaxed);
        let wall = if frozen != 0 { frozen } else { Self::wall_ms() };
        wall.saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Stops time where it is; only [`Clock::advance`] moves it afterwards. Tests of
    /// per-second windows then do not depend on how fast the machine is.
    pub fn freeze(&self) {
        let _ = self.frozen_at_ms.compare_exchange(
            0,
            Self::wall_ms(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn wall_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    /// Moves the simulator's time forward (tokens expire, windows roll over).
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}
