//! Per-tenant rate limits on the ingest endpoint: one GCRA limiter (`governor`) per tenant,
//! sized from the tenant's `limits:` in the topology, so one dealership's runaway sender gets
//! `429 rate_limited` with `Retry-After` while the others on the node go on unhindered.
//!
//! Limits are per node: behind a load balancer spreading requests over N ingest nodes a
//! tenant may send up to N times its limit — the limit guards a node, not a contract.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hub_topology::metrics::INGEST_THROTTLED_TOTAL;
use hub_topology::{TenantLimits, Topology};

/// The limiters of every tenant of a topology (tenants are fixed for the topology's life).
pub(crate) struct TenantThrottle {
    limiters: HashMap<String, DefaultDirectRateLimiter>,
    clock: DefaultClock,
}

impl std::fmt::Debug for TenantThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantThrottle")
            .field("tenants", &self.limiters.len())
            .finish()
    }
}

fn quota(limits: &TenantLimits) -> Quota {
    // Validation refuses zeros; a hand-built topology that skipped it gets one per second.
    let per_s = NonZeroU32::new(limits.ingest_per_s).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limits.ingest_burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(per_s).allow_burst(burst)
}

impl TenantThrottle {
    pub(crate) fn new(topology: &Topology) -> Self {
        TenantThrottle {
            limiters: topology
                .tenants
                .iter()
                .map(|t| (t.id.clone(), RateLimiter::direct(quota(&t.limits))))
                .collect(),
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` when `tenant` may send one more request now; otherwise the whole seconds to
    /// wait (at least 1), and `hub_ingest_throttled_total{tenant}` counts the refusal.
    pub(crate) fn admit(&self, tenant: &str) -> Result<(), u32> {
        let Some(limiter) = self.limiters.get(tenant) else {
            return Ok(());
        };
        match limiter.check() {
            Ok(()) => Ok(()),
            Err(not_until) => {
                metrics::counter!(INGEST_THROTTLED_TOTAL, "tenant" => tenant.to_owned())
                    .increment(1);
                Err(retry_after_secs(not_until.wait_time_from(self.clock.now())))
            }
        }
    }
}

/// `Retry-After` takes whole seconds; round up so a sender that obeys it is admitted.
fn retry_after_secs(wait: Duration) -> u32 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.clamp(1, u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(20)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }
}
