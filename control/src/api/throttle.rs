//! Per-tenant (and per-caller) request limits of the API: GCRA limiters from `governor`,
//! keyed by the tenant the path names — so one tenant's script cannot starve the console of
//! the others — and, for endpoints without a tenant, by the caller. Checked by the guard
//! after authentication and the access check, so an unauthenticated or foreign caller cannot
//! spend a tenant's allowance (and a foreign tenant still answers 404, not 429).
//!
//! Limits are per control node. Over the limit: `429 rate_limited` in the one error shape
//! with `Retry-After`, and `hub_api_throttled_total{tenant}` counts it.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::ApiConfig;
use super::error::ApiError;

/// Requests refused by these limits. Labels: tenant (`-` for tenant-less endpoints). Listed
/// with the hub's other metrics in `hub_topology::metrics`.
pub const API_THROTTLED_TOTAL: &str = "hub_api_throttled_total";

/// Keys kept before idle ones are dropped (a key whose allowance is full again is
/// indistinguishable from a new one, so dropping it changes nothing).
const RETAIN_ABOVE: usize = 10_000;

/// The two keyed limiters.
pub(crate) struct ApiThrottle {
    tenants: DefaultKeyedRateLimiter<String>,
    callers: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl std::fmt::Debug for ApiThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiThrottle").finish_non_exhaustive()
    }
}

fn quota(per_s: u32, burst: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(per_s).unwrap_or(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

/// What the guard is about to admit a request for.
pub(crate) enum Key<'a> {
    Tenant(&'a str),
    Caller(String),
}

impl ApiThrottle {
    pub(crate) fn new(config: &ApiConfig) -> Self {
        ApiThrottle {
            tenants: RateLimiter::keyed(quota(config.tenant_requests_per_s, config.tenant_burst)),
            callers: RateLimiter::keyed(quota(config.caller_requests_per_s, config.caller_burst)),
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` when the request may go on; else the 429 to answer.
    pub(crate) fn admit(&self, key: Key<'_>) -> Result<(), ApiError> {
        let (limiter, key, label) = match key {
            Key::Tenant(t) => (&self.tenants, t.to_owned(), t.to_owned()),
            Key::Caller(c) => (&self.callers, c, "-".to_owned()),
        };
        if limiter.len() > RETAIN_ABOVE {
            limiter.retain_recent();
        }
        match limiter.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                metrics::counter!(API_THROTTLED_TOTAL, "tenant" => label).increment(1);
                let wait = not_until.wait_time_from(self.clock.now());
                Err(ApiError {
                    retry_after_s: Some(whole_seconds(wait)),
                    ..ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        "too many requests for this tenant right now; retry after the Retry-After seconds",
                    )
                })
            }
        }
    }
}

/// Rounded up, at least 1: a client that obeys `Retry-After` is then admitted.
fn whole_seconds(wait: Duration) -> i64 {
    let s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    s.clamp(1, i64::MAX as u64) as i64
}
