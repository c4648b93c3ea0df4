//! Vendor API usage per tenant and connector, counted against the vendor's published limits:
//! the UTC day's calls against the daily allocation, and the current 10-second window against
//! the per-window limit.
//!
//! Every client built for a connector ([`crate::build`]) reports each call that reached the
//! vendor to the connector's [`ApiUsage`] (one per tenant + connector in the process, shared by
//! the poller, the webhook path and the sinks). Where the vendor reports its own count
//! (Salesforce's `Sforce-Limit-Info: api-usage=N/M`, vendor-apis.md §2.8; HubSpot's daily
//! headers for private apps, §3.7), that count and limit are authoritative for the day: they
//! include the dealer's other tools, which the hub cannot see.
//!
//! The process's counts are drained by the node ([`ApiUsage::take_unflushed`]) into the
//! control store, which adds up every node's calls per tenant, connector and day; the node then
//! hands the stored total back ([`ApiUsage::committed`]), so "remaining" covers all nodes and
//! survives a restart.
//!
//! Gauges: `hub_vendor_api_budget_remaining{tenant,connector,window}` (`day`, `10s`) and
//! `hub_vendor_api_budget_low{tenant,connector}`; when the remaining daily budget falls under
//! `warn_percent` of the limit, one warning is logged per connector and day (ids and numbers
//! only, never a record).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Remaining budget. Labels: tenant, connector, window (`day`, `10s`).
pub const VENDOR_API_BUDGET_REMAINING: &str = crate::http::VENDOR_API_BUDGET_REMAINING;
/// 1 while the day's remaining budget is under the warning threshold. Labels: tenant,
/// connector.
pub const VENDOR_API_BUDGET_LOW: &str = "hub_vendor_api_budget_low";

/// Length of the per-window count, in ms (HubSpot's `TEN_SECONDLY_ROLLING`, §3.7).
pub const WINDOW_MS: i64 = 10_000;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// Warn when less than this percentage of the daily limit is left, unless configured.
pub const DEFAULT_WARN_PERCENT: u8 = 20;

/// The limits one connector's calls are counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageLimits {
    /// Requests per UTC day.
    pub daily_limit: u64,
    /// Requests per 10-second window, where the vendor publishes one.
    pub per_10s: Option<u64>,
    /// Warn below this percentage of `daily_limit` remaining (1..=99).
    pub warn_percent: u8,
}

/// The vendor's published base limits (vendor-apis.md): Salesforce's daily allocation starts
/// at 100,000 (plus 1,000 or 5,000 per licence, which only the org knows: override it) and has
/// no per-window limit, only a concurrency cap (§2.8); HubSpot's lowest private-app tier is
/// 100 per 10 s and 250,000 per day (§3.7). Unknown vendors (none published, §12): a
/// conservative 1 per second, i.e. 10 per window and 86,400 per day.
pub fn published_limits(vendor: &str) -> UsageLimits {
    let (daily_limit, per_10s) = match vendor {
        "salesforce" => (100_000, None),
        "hubspot" => (250_000, Some(100)),
        _ => (86_400, Some(10)),
    };
    UsageLimits {
        daily_limit,
        per_10s,
        warn_percent: DEFAULT_WARN_PERCENT,
    }
}

/// The Unix day (days since 1970-01-01, UTC) of `unix_ms`.
pub fn utc_day(unix_ms: i64) -> i64 {
    unix_ms.div_euclid(DAY_MS)
}

/// `2026-11-27` for a Unix day.
pub fn day_text(day: i64) -> String {
    chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One connector's usage in this process.
#[derive(Debug)]
pub struct ApiUsage {
    pub tenant: String,
    pub connector: String,
    pub vendor: &'static str,
    limits: UsageLimits,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The day `stored_today` and `vendor` belong to.
    day: i64,
    /// Today's calls of every node, as the store last reported them.
    stored_today: u64,
    /// Calls not yet in the store, by day.
    unflushed: BTreeMap<i64, u64>,
    /// Calls handed to the node for storing, not yet confirmed.
    in_flight: BTreeMap<i64, u64>,
    window_start_ms: i64,
    window_calls: u64,
    /// The vendor's own (used, limit) for today, last seen.
    vendor: Option<(u64, u64)>,
    /// The warning was given for `day`.
    low: bool,
}

/// Where a connector stands now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSnapshot {
    pub day: i64,
    /// Requests counted today: the vendor's own count when it reports one, else every node's
    /// calls.
    pub used_today: u64,
    /// The daily limit in force: the vendor's reported one, else the configured one.
    pub daily_limit: u64,
    pub remaining_today: u64,
    pub window_calls: u64,
    pub window_limit: Option<u64>,
    /// Remaining is under the warning threshold.
    pub low: bool,
    /// `used_today` and `daily_limit` come from the vendor's own headers.
    pub vendor_reported: bool,
}

/// Calls of one day to add to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    pub tenant: String,
    pub connector: String,
    pub vendor: &'static str,
    pub day: i64,
    pub calls: u64,
    pub limits: UsageLimits,
    /// The vendor's own (used, limit) for the day, when it is today's.
    pub vendor_reported: Option<(u64, u64)>,
}

impl ApiUsage {
    pub fn new(tenant: &str, connector: &str, vendor: &'static str, limits: UsageLimits) -> Self {
        ApiUsage {
            tenant: tenant.to_owned(),
            connector: connector.to_owned(),
            vendor,
            limits,
            state: Mutex::new(State::default()),
        }
    }

    pub fn limits(&self) -> UsageLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one call that reached the vendor.
    pub fn record_call(&self) {
        self.record_call_at(now_ms());
    }

    pub fn record_call_at(&self, now_ms: i64) {
        let snap = {
            let mut s = self.lock();
            let day = utc_day(now_ms);
            roll(&mut s, day);
            *s.unflushed.entry(day).or_default() += 1;
            let window = now_ms - now_ms.rem_euclid(WINDOW_MS);
            if s.window_start_ms != window {
                s.window_start_ms = window;
                s.window_calls = 0;
            }
            s.window_calls += 1;
            if let Some((used, _)) = &mut s.vendor {
                // Until the next response says otherwise, this call is one more.
                *used += 1;
            }
            self.snapshot_locked(&mut s, now_ms)
        };
        self.publish(&snap);
    }

    /// The vendor reported `used` of `limit` for today (e.g. `Sforce-Limit-Info`).
    pub fn observe_vendor(&self, used: u64, limit: u64) {
        self.observe_vendor_at(used, limit, now_ms());
    }

    pub fn observe_vendor_at(&self, used: u64, limit: u64, now_ms: i64) {
        let snap = {
            let mut s = self.lock();
            roll(&mut s, utc_day(now_ms));
            s.vendor = Some((used, limit));
            self.snapshot_locked(&mut s, now_ms)
        };
        self.publish(&snap);
    }

    /// Where the connector stands at `now_ms`.
    pub fn snapshot_at(&self, now_ms: i64) -> UsageSnapshot {
        let mut s = self.lock();
        roll(&mut s, utc_day(now_ms));
        self.snapshot_locked(&mut s, now_ms)
    }

    fn snapshot_locked(&self, s: &mut State, now_ms: i64) -> UsageSnapshot {
        let day = s.day;
        let ours = s.stored_today
            + s.unflushed.get(&day).copied().unwrap_or(0)
            + s.in_flight.get(&day).copied().unwrap_or(0);
        let (used_today, daily_limit, vendor_reported) = match s.vendor {
            Some((used, limit)) if limit > 0 => (used, limit, true),
            _ => (ours, self.limits.daily_limit, false),
        };
        let remaining_today = daily_limit.saturating_sub(used_today);
        let low = remaining_today.saturating_mul(100)
            < daily_limit.saturating_mul(u64::from(self.limits.warn_percent));
        let window_calls = if now_ms - s.window_start_ms < WINDOW_MS {
            s.window_calls
        } else {
            0
        };
        let crossed = low && !s.low;
        s.low = low;
        let snap = UsageSnapshot {
            day,
            used_today,
            daily_limit,
            remaining_today,
            window_calls,
            window_limit: self.limits.per_10s,
            low,
            vendor_reported,
        };
        if crossed {
            tracing::warn!(
                tenant = %self.tenant,
                connector = %self.connector,
                vendor = self.vendor,
                used_today,
                daily_limit,
                remaining_today,
                warn_percent = self.limits.warn_percent,
                vendor_reported,
                "vendor API daily budget is running low"
            );
        }
        snap
    }

    fn publish(&self, snap: &UsageSnapshot) {
        let t = self.tenant.clone();
        let c = self.connector.clone();
        metrics::gauge!(VENDOR_API_BUDGET_REMAINING, "tenant" => t.clone(), "connector" => c.clone(), "window" => "day")
            .set(snap.remaining_today as f64);
        if let Some(limit) = snap.window_limit {
            metrics::gauge!(VENDOR_API_BUDGET_REMAINING, "tenant" => t.clone(), "connector" => c.clone(), "window" => "10s")
                .set(limit.saturating_sub(snap.window_calls) as f64);
        }
        metrics::gauge!(VENDOR_API_BUDGET_LOW, "tenant" => t, "connector" => c).set(if snap.low {
            1.0
        } else {
            0.0
        });
    }

    /// The calls not yet stored, one delta per day (oldest first); they stay counted as in
    /// flight until [`ApiUsage::committed`] or [`ApiUsage::failed`].
    pub fn take_unflushed(&self) -> Vec<UsageDelta> {
        let mut s = self.lock();
        let today = s.day;
        let vendor = s.vendor;
        let taken = std::mem::take(&mut s.unflushed);
        let mut out = Vec::with_capacity(taken.len());
        for (day, calls) in taken {
            *s.in_flight.entry(day).or_default() += calls;
            out.push(self.delta(day, calls, (day == today).then_some(vendor).flatten()));
        }
        out
    }

    /// A delta of no calls carrying today's vendor-reported numbers, to refresh the store
    /// when nothing was called (e.g. the first flush after a restart).
    pub fn heartbeat(&self, now_ms: i64) -> UsageDelta {
        let mut s = self.lock();
        roll(&mut s, utc_day(now_ms));
        self.delta(s.day, 0, s.vendor)
    }

    fn delta(&self, day: i64, calls: u64, vendor_reported: Option<(u64, u64)>) -> UsageDelta {
        UsageDelta {
            tenant: self.tenant.clone(),
            connector: self.connector.clone(),
            vendor: self.vendor,
            day,
            calls,
            limits: self.limits,
            vendor_reported,
        }
    }

    /// `delta` is stored; the store now holds `stored_total` calls for its day (every node's).
    pub fn committed(&self, delta: &UsageDelta, stored_total: u64) {
        let mut s = self.lock();
        take_in_flight(&mut s, delta);
        if delta.day == s.day {
            s.stored_today = stored_total;
        }
    }

    /// Storing `delta` failed: its calls go back to be sent next time.
    pub fn failed(&self, delta: &UsageDelta) {
        let mut s = self.lock();
        take_in_flight(&mut s, delta);
        *s.unflushed.entry(delta.day).or_default() += delta.calls;
    }
}

fn take_in_flight(s: &mut State, delta: &UsageDelta) {
    if let Some(n) = s.in_flight.get_mut(&delta.day) {
        *n = n.saturating_sub(delta.calls);
        if *n == 0 {
            s.in_flight.remove(&delta.day);
        }
    }
}

/// A new UTC day: what was stored and reported belongs to the old one.
fn roll(s: &mut State, day: i64) {
    if s.day != day {
        s.day = day;
        s.stored_today = 0;
        s.vendor = None;
        s.low = false;
    }
}

type Registry = Mutex<BTreeMap<(String, String), Arc<ApiUsage>>>;

fn registry() -> &'static Registry {
    static USAGE: OnceLock<Registry> = OnceLock::new();
    USAGE.get_or_init(Default::default)
}

/// The usage of `connector` of `tenant` in this process, created on first use with `limits`
/// (every client of the connector shares it).
pub fn connector_usage(
    tenant: &str,
    connector: &str,
    vendor: &'static str,
    limits: UsageLimits,
) -> Arc<ApiUsage> {
    let mut all = registry().lock().unwrap_or_else(|e| e.into_inner());
    all.entry((tenant.to_owned(), connector.to_owned()))
        .or_insert_with(|| Arc::new(ApiUsage::new(tenant, connector, vendor, limits)))
        .clone()
}

/// Every connector's usage in this process (the node's flusher walks it).
pub fn all() -> Vec<Arc<ApiUsage>> {
    let all = registry().lock().unwrap_or_else(|e| e.into_inner());
    all.values().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY0: i64 = 20_419 * DAY_MS; // 2025-11-27T00:00Z

    fn hubspot(daily: u64) -> ApiUsage {
        ApiUsage::new(
            "lakeside-auto",
            "hs",
            "hubspot",
            UsageLimits {
                daily_limit: daily,
                per_10s: Some(100),
                warn_percent: 20,
            },
        )
    }

    #[test]
    fn calls_count_in_the_day_and_the_ten_second_window() {
        let u = hubspot(1000);
        for i in 0..5 {
            u.record_call_at(DAY0 + 1_000 + i);
        }
        let s = u.snapshot_at(DAY0 + 2_000);
        assert_eq!((s.used_today, s.remaining_today), (5, 995));
        assert_eq!((s.window_calls, s.window_limit), (5, Some(100)));
        // The next window starts empty; the day goes on.
        u.record_call_at(DAY0 + 10_500);
        let s = u.snapshot_at(DAY0 + 10_600);
        assert_eq!((s.used_today, s.window_calls), (6, 1));
        assert_eq!(u.snapshot_at(DAY0 + 30_000).window_calls, 0);
        // A new UTC day starts from zero.
        let s = u.snapshot_at(DAY0 + DAY_MS + 1);
        assert_eq!((s.used_today, s.day), (0, utc_day(DAY0) + 1));
    }

    #[test]
    fn low_budget_turns_on_below_the_threshold_and_off_on_a_new_day() {
        let u = hubspot(100);
        for i in 0..80 {
            u.record_call_at(DAY0 + i);
        }
        assert!(
            !u.snapshot_at(DAY0 + 100).low,
            "20 of 100 left is not below 20 %"
        );
        u.record_call_at(DAY0 + 200);
        let s = u.snapshot_at(DAY0 + 300);
        assert!(s.low);
        assert_eq!(s.remaining_today, 19);
        assert!(!u.snapshot_at(DAY0 + DAY_MS).low);
    }

    #[test]
    fn the_vendors_own_count_wins_over_ours() {
        let u = hubspot(1000);
        u.record_call_at(DAY0 + 5);
        u.observe_vendor_at(4_500, 5_000, DAY0 + 6);
        let s = u.snapshot_at(DAY0 + 7);
        assert!(s.vendor_reported);
        assert_eq!(
            (s.used_today, s.daily_limit, s.remaining_today),
            (4_500, 5_000, 500)
        );
        assert!(s.low, "500 of 5,000 is 10 %");
        // A call after the report is one more until the next report.
        u.record_call_at(DAY0 + 8);
        assert_eq!(u.snapshot_at(DAY0 + 9).used_today, 4_501);
    }

    #[test]
    fn flushed_calls_stay_counted_and_the_stored_total_covers_other_nodes() {
        let u = hubspot(1000);
        for i in 0..3 {
            u.record_call_at(DAY0 + i);
        }
        let deltas = u.take_unflushed();
        assert_eq!(deltas.len(), 1);
        assert_eq!(deltas[0].calls, 3);
        assert_eq!(deltas[0].day, utc_day(DAY0));
        // In flight: still counted.
        assert_eq!(u.snapshot_at(DAY0 + 10).used_today, 3);
        // The store has 3 of ours plus 7 from another node.
        u.committed(&deltas[0], 10);
        assert_eq!(u.snapshot_at(DAY0 + 10).used_today, 10);
        u.record_call_at(DAY0 + 11);
        assert_eq!(u.snapshot_at(DAY0 + 12).used_today, 11);
        // A failed flush puts the calls back.
        let d = u.take_unflushed();
        u.failed(&d[0]);
        let again = u.take_unflushed();
        assert_eq!(again[0].calls, 1);
        assert!(u.take_unflushed().is_empty());
    }

    #[test]
    fn published_limits_follow_vendor_apis_md() {
        assert_eq!(published_limits("salesforce").daily_limit, 100_000);
        assert_eq!(published_limits("salesforce").per_10s, None);
        assert_eq!(published_limits("hubspot").per_10s, Some(100));
        assert_eq!(published_limits("hubspot").daily_limit, 250_000);
        assert_eq!(day_text(utc_day(DAY0)), "2025-11-27");
    }
}
