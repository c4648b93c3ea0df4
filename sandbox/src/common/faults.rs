//! Fault knobs a test turns at run time: server errors (at a rate, or the next N requests),
//! added latency, and dropped connections. Each vendor renders the error in its own shape.

use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;

use super::lock;
use super::rng::SplitMix64;

/// The knobs. All off by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultSettings {
    /// Probability in `[0, 1]` that a request is answered with `error_status` instead.
    pub error_rate: f64,
    /// The status of injected errors (503 when 0).
    pub error_status: u16,
    /// Delay added before every request is handled.
    pub latency: Duration,
    /// Probability in `[0, 1]` that the connection is cut instead of answered.
    pub drop_rate: f64,
    /// The next N requests fail with `error_status`, whatever the rate (deterministic tests).
    pub fail_next: u32,
    /// The next N requests have their connection cut.
    pub drop_next: u32,
    /// `Retry-After` (whole seconds) on injected errors, for vendors that send one (HubSpot's
    /// 423 and 477, §3.6). Salesforce never sends it (§2.8), so its sandbox ignores this.
    pub retry_after: Option<Duration>,
}

/// What the dice say for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Error(u16),
    Drop,
}

#[derive(Debug)]
pub struct Faults {
    inner: Mutex<(FaultSettings, SplitMix64)>,
}

impl Faults {
    pub fn new(seed: u64) -> Self {
        Faults {
            inner: Mutex::new((FaultSettings::default(), SplitMix64::new(seed ^ 0xFA17))),
        }
    }

    pub fn set(&self, settings: FaultSettings) {
        lock(&self.inner).0 = settings;
    }

    pub fn get(&self) -> FaultSettings {
        lock(&self.inner).0.clone()
    }

    /// Changes the knobs in place, e.g. `faults.update(|f| f.fail_next = 3)`.
    pub fn update(&self, f: impl FnOnce(&mut FaultSettings)) {
        f(&mut lock(&self.inner).0);
    }

    pub fn latency(&self) -> Duration {
        lock(&self.inner).0.latency
    }

    /// Decides the fate of one request, consuming `drop_next`/`fail_next` first.
    pub fn roll(&self) -> Option<Fault> {
        let mut g = lock(&self.inner);
        let (s, rng) = &mut *g;
        let status = if s.error_status == 0 {
            503
        } else {
            s.error_status
        };
        if s.drop_next > 0 {
            s.drop_next -= 1;
            return Some(Fault::Drop);
        }
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Some(Fault::Error(status));
        }
        if rng.chance(s.drop_rate) {
            return Some(Fault::Drop);
        }
        if rng.chance(s.error_rate) {
            return Some(Fault::Error(status));
        }
        None
    }
}

/// A response whose body fails before any byte is written: hyper then aborts the connection,
/// which the client sees as a connection closed mid-request.
pub fn dropped_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "sandbox fault: connection dropped",
        ))
    });
    Response::new(Body::from_stream(stream))
}
