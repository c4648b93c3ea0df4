//! HubSpot's rate limits (vendor-apis.md §3.7): a rolling 10-second burst per app, a daily cap
//! for private apps only (public OAuth apps have none, and their responses carry no daily
//! headers), and the search endpoint's own per-second limit without any headers (§3.4).

use std::collections::VecDeque;

use axum::http::HeaderMap;

use super::errors::ApiError;

/// The numbers, per app. Defaults are §3.7's Free/Starter private app and public app rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per rolling 10 s for private-app tokens (100 on Free/Starter).
    pub private_per_10s: u32,
    /// Requests per day for private-app tokens (250,000 on Free/Starter).
    pub private_daily: u32,
    /// Requests per rolling 10 s per installed account for OAuth tokens (110).
    pub oauth_per_10s: u32,
    /// Search requests per second per token (§3.4: about 5).
    pub search_per_second: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            private_per_10s: 100,
            private_daily: 250_000,
            oauth_per_10s: 110,
            search_per_second: 5,
        }
    }
}

/// Which kind of credential made the call: the limits and headers differ (§3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    PrivateApp,
    OAuth,
}

const INTERVAL_MS: i64 = 10_000;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Default)]
pub struct Limiter {
    private_window: VecDeque<i64>,
    oauth_window: VecDeque<i64>,
    search_window: VecDeque<i64>,
    /// (UTC day number, count): §3.7 resets at midnight in the account's time zone; the
    /// sandbox's account is on UTC.
    private_daily: (i64, u32),
    /// Requests let through and refused with a 429, since start (for benchmarks' reports).
    pub admitted: u64,
    pub refused: u64,
}

fn trim(w: &mut VecDeque<i64>, now: i64, span: i64) {
    while w.front().is_some_and(|&t| t <= now - span) {
        w.pop_front();
    }
}

impl Limiter {
    /// Counts one request, or refuses it with the 429 of the policy it exceeds. The headers
    /// to put on the response come back either way (none for search, §3.4).
    pub fn admit(
        &mut self,
        limits: &RateLimits,
        kind: AppKind,
        is_search: bool,
        now: i64,
    ) -> (HeaderMap, Result<(), ApiError>) {
        let out = self.decide(limits, kind, is_search, now);
        match out.1 {
            Ok(()) => self.admitted += 1,
            Err(_) => self.refused += 1,
        }
        out
    }

    fn decide(
        &mut self,
        limits: &RateLimits,
        kind: AppKind,
        is_search: bool,
        now: i64,
    ) -> (HeaderMap, Result<(), ApiError>) {
        let day = now.div_euclid(DAY_MS);
        if self.private_daily.0 != day {
            self.private_daily = (day, 0);
        }
        if is_search {
            trim(&mut self.search_window, now, 1000);
            if self.search_window.len() >= limits.search_per_second as usize {
                return (HeaderMap::new(), Err(ApiError::rate_limited("SECONDLY")));
            }
            if kind == AppKind::PrivateApp {
                if self.private_daily.1 >= limits.private_daily {
                    return (HeaderMap::new(), Err(ApiError::rate_limited("DAILY")));
                }
                self.private_daily.1 += 1;
            }
            self.search_window.push_back(now);
            return (HeaderMap::new(), Ok(()));
        }
        let (window, max) = match kind {
            AppKind::PrivateApp => (&mut self.private_window, limits.private_per_10s),
            AppKind::OAuth => (&mut self.oauth_window, limits.oauth_per_10s),
        };
        trim(window, now, INTERVAL_MS);
        let verdict = if kind == AppKind::PrivateApp && self.private_daily.1 >= limits.private_daily
        {
            Err(ApiError::rate_limited("DAILY"))
        } else if window.len() >= max as usize {
            Err(ApiError::rate_limited("TEN_SECONDLY_ROLLING"))
        } else {
            window.push_back(now);
            if kind == AppKind::PrivateApp {
                self.private_daily.1 += 1;
            }
            Ok(())
        };
        let in_last_second = window.iter().filter(|&&t| t > now - 1000).count() as u32;
        let secondly = (max / 10).max(1);
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, v: u32| {
            h.insert(name, v.into());
        };
        if kind == AppKind::PrivateApp {
            put("x-hubspot-ratelimit-daily", limits.private_daily);
            put(
                "x-hubspot-ratelimit-daily-remaining",
                limits.private_daily.saturating_sub(self.private_daily.1),
            );
        }
        put(
            "x-hubspot-ratelimit-interval-milliseconds",
            INTERVAL_MS as u32,
        );
        put("x-hubspot-ratelimit-max", max);
        put(
            "x-hubspot-ratelimit-remaining",
            max.saturating_sub(window.len() as u32),
        );
        put("x-hubspot-ratelimit-secondly", secondly);
        put(
            "x-hubspot-ratelimit-secondly-remaining",
            secondly.saturating_sub(in_last_second),
        );
        (h, verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_window_rolls_over_after_ten_seconds() {
        let limits = RateLimits {
            private_per_10s: 3,
            ..Default::default()
        };
        let mut l = Limiter::default();
        for _ in 0..3 {
            assert!(
                l.admit(&limits, AppKind::PrivateApp, false, 1_000)
                    .1
                    .is_ok()
            );
        }
        let (h, r) = l.admit(&limits, AppKind::PrivateApp, false, 1_001);
        assert_eq!(r.unwrap_err().body["policyName"], "TEN_SECONDLY_ROLLING");
        assert_eq!(h["x-hubspot-ratelimit-remaining"], "0");
        assert!(
            l.admit(&limits, AppKind::PrivateApp, false, 11_000)
                .1
                .is_ok()
        );
    }

    #[test]
    fn oauth_calls_carry_no_daily_headers() {
        let mut l = Limiter::default();
        let (h, _) = l.admit(&RateLimits::default(), AppKind::OAuth, false, 0);
        assert!(h.get("x-hubspot-ratelimit-daily").is_none());
        assert_eq!(h["x-hubspot-ratelimit-max"], "110");
    }
}
