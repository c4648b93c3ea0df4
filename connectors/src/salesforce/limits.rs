//! The org's daily API request budget (vendor-apis.md §2.8).
//!
//! Salesforce sends no `Retry-After` or `X-RateLimit-*` headers; what it does send is
//! `Sforce-Limit-Info: api-usage=18/5000` on REST responses (used/allowed over a rolling 24
//! hours), and `GET …/limits` returns `{"DailyApiRequests": {"Max": 15000, "Remaining": 14998}}`.
//! The hub throttles itself before the allocation runs out, rather than meeting 403
//! `REQUEST_LIMIT_EXCEEDED`.

use serde_json::Value;

/// Daily API requests: the allocation and what is left of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiBudget {
    pub max: u64,
    /// Saturates at 0: Salesforce may allow some overage before blocking (§2.8), so `used` can
    /// exceed `max`.
    pub remaining: u64,
}

impl ApiBudget {
    pub fn used(&self) -> u64 {
        self.max.saturating_sub(self.remaining)
    }

    /// True when no more than `reserve_fraction` of the allocation is left (e.g. `0.1` keeps
    /// the last 10 % for the dealer's own integrations and users). A zero allocation always
    /// throttles.
    pub fn should_throttle(&self, reserve_fraction: f64) -> bool {
        if self.max == 0 {
            return true;
        }
        (self.remaining as f64) <= (self.max as f64) * reserve_fraction.clamp(0.0, 1.0)
    }
}

/// Parses `Sforce-Limit-Info`. The header may list several entries
/// (`api-usage=25/15000, per-app-api-usage=17/250(appName=…)`, the latter a pilot, §2.8); only
/// the org-wide `api-usage` counts here. `None` when it is absent or malformed.
pub fn parse_limit_info(header: &str) -> Option<ApiBudget> {
    header.split(',').find_map(|entry| {
        let (key, value) = entry.trim().split_once('=')?;
        if key.trim() != "api-usage" {
            return None;
        }
        let (used, max) = value.trim().split_once('/')?;
        let used: u64 = used.trim().parse().ok()?;
        let max: u64 = max.trim().parse().ok()?;
        Some(ApiBudget {
            max,
            remaining: max.saturating_sub(used),
        })
    })
}

/// Parses the `/limits` resource's `DailyApiRequests`. `None` when it is absent or malformed.
pub fn parse_limits_resource(body: &[u8]) -> Option<ApiBudget> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let d = v.get("DailyApiRequests")?;
    let max = d.get("Max")?.as_u64()?;
    // Negative when the org is in overage; saturate at 0.
    let remaining = d.get("Remaining")?.as_i64()?.max(0) as u64;
    Some(ApiBudget {
        max,
        remaining: remaining.min(max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_info_header_gives_the_remaining_budget() {
        assert_eq!(
            parse_limit_info("api-usage=25/15000"),
            Some(ApiBudget {
                max: 15000,
                remaining: 14975
            })
        );
    }

    #[test]
    fn per_app_usage_is_ignored_in_favour_of_org_usage() {
        let b = parse_limit_info("per-app-api-usage=17/250(appName=hub), api-usage=100500/110000")
            .unwrap();
        assert_eq!(b.remaining, 9500);
        assert_eq!(b.used(), 100500);
    }

    #[test]
    fn malformed_limit_info_is_none() {
        for h in [
            "",
            "api-usage=",
            "api-usage=25",
            "api-usage=x/100",
            "usage=1/2",
        ] {
            assert_eq!(parse_limit_info(h), None, "{h}");
        }
    }

    #[test]
    fn overage_saturates_at_zero_remaining() {
        let b = parse_limit_info("api-usage=15200/15000").unwrap();
        assert_eq!(b.remaining, 0);
        assert!(b.should_throttle(0.0));
    }

    #[test]
    fn limits_resource_gives_daily_api_requests() {
        let body = br#"{"DailyApiRequests":{"Max":15000,"Remaining":14998},"DailyBulkV2QueryJobs":{"Max":10000,"Remaining":10000}}"#;
        assert_eq!(
            parse_limits_resource(body),
            Some(ApiBudget {
                max: 15000,
                remaining: 14998
            })
        );
        assert_eq!(
            parse_limits_resource(br#"{"DailyApiRequests":{"Max":15000}}"#),
            None
        );
        assert_eq!(parse_limits_resource(b"[]"), None);
    }

    #[test]
    fn throttles_when_the_reserve_is_reached() {
        let b = ApiBudget {
            max: 100_000,
            remaining: 9_000,
        };
        assert!(b.should_throttle(0.1));
        assert!(!b.should_throttle(0.05));
        assert!(
            ApiBudget {
                max: 0,
                remaining: 0
            }
            .should_throttle(0.0)
        );
    }
}
