//! Vendor API usage per tenant, connector and UTC day: what the nodes counted (summed over
//! every node by an upsert), the limits in force, and the vendor's own last report for the
//! day where it gives one (Salesforce's `Sforce-Limit-Info`, which then wins). Nodes add to
//! it periodically (`hub`'s usage flusher); the API's `GET …/api-usage` reads it.

use crate::auth::TenantId;
use crate::error::{ControlError, Result};

use super::{ControlStore, on_pool};

/// Calls of one connector on one day to add, with the limits they count against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageAdd {
    pub tenant: TenantId,
    pub connector: String,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub vendor: String,
    /// Calls to add (0 refreshes the limits and the vendor's report only).
    pub calls: i64,
    pub daily_limit: i64,
    /// Requests per `window_seconds` window, where the vendor publishes one.
    pub window_limit: Option<i64>,
    pub window_seconds: i64,
    /// Warn below this percentage of the daily limit left.
    pub warn_percent: i64,
    /// The vendor's own count and limit for the day, when it reported them.
    pub vendor_used: Option<i64>,
    pub vendor_limit: Option<i64>,
}

/// One connector's usage on one day, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDay {
    pub connector: String,
    pub day: String,
    pub vendor: String,
    /// Every node's calls.
    pub calls: i64,
    pub daily_limit: i64,
    pub window_limit: Option<i64>,
    pub window_seconds: i64,
    pub warn_percent: i64,
    pub vendor_used: Option<i64>,
    pub vendor_limit: Option<i64>,
    pub updated_at_ms: i64,
}

impl UsageDay {
    /// Requests counted against the day: the vendor's own count when it reported one.
    pub fn used(&self) -> i64 {
        match (self.vendor_used, self.vendor_limit) {
            (Some(u), Some(l)) if l > 0 => u,
            _ => self.calls,
        }
    }

    /// The daily limit in force: the vendor's reported one, else the configured one.
    pub fn limit(&self) -> i64 {
        match self.vendor_limit {
            Some(l) if l > 0 => l,
            _ => self.daily_limit,
        }
    }

    pub fn remaining(&self) -> i64 {
        (self.limit() - self.used()).max(0)
    }

    /// Share of the limit used, in percent (100 and more when over).
    pub fn percent_used(&self) -> f64 {
        if self.limit() <= 0 {
            return 100.0;
        }
        (self.used() as f64) * 100.0 / (self.limit() as f64)
    }

    /// Less than `warn_percent` of the limit is left.
    pub fn warning(&self) -> bool {
        self.remaining().saturating_mul(100) < self.limit().saturating_mul(self.warn_percent)
    }
}

type UsageRow = (
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
);

fn day_from_row(r: UsageRow) -> UsageDay {
    let (
        connector,
        day,
        vendor,
        calls,
        daily_limit,
        window_limit,
        window_seconds,
        warn_percent,
        vendor_used,
        vendor_limit,
        updated_at_ms,
    ) = r;
    UsageDay {
        connector,
        day,
        vendor,
        calls,
        daily_limit,
        window_limit,
        window_seconds,
        warn_percent,
        vendor_used,
        vendor_limit,
        updated_at_ms,
    }
}

/// `YYYY-MM-DD`, a real date.
pub fn check_day(field: &'static str, day: &str) -> Result<()> {
    let ok = day.len() == 10 && chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_ok();
    if ok {
        Ok(())
    } else {
        Err(ControlError::invalid(
            field,
            "must be a date written YYYY-MM-DD (UTC)",
        ))
    }
}

impl ControlStore {
    /// Adds `u.calls` to the connector's day (creating it), refreshes its limits and, when
    /// given, the vendor's own report; returns the day's calls of every node.
    pub async fn add_api_usage(&self, u: &UsageAdd) -> Result<i64> {
        check_day("day", &u.day)?;
        if u.calls < 0 || u.daily_limit < 1 || u.connector.is_empty() {
            return Err(ControlError::invalid(
                "calls",
                "calls must be 0 or more, daily_limit at least 1, and the connector named",
            ));
        }
        let now = self.now_ms();
        let total: (i64,) = on_pool!(self, |p| sqlx::query_as(
            "INSERT INTO api_usage (tenant_id, connector, day, vendor, calls, daily_limit, \
             window_limit, window_seconds, warn_percent, vendor_used, vendor_limit, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (tenant_id, connector, day) DO UPDATE SET \
             calls = api_usage.calls + excluded.calls, vendor = excluded.vendor, \
             daily_limit = excluded.daily_limit, window_limit = excluded.window_limit, \
             window_seconds = excluded.window_seconds, warn_percent = excluded.warn_percent, \
             vendor_used = COALESCE(excluded.vendor_used, api_usage.vendor_used), \
             vendor_limit = COALESCE(excluded.vendor_limit, api_usage.vendor_limit), \
             updated_at_ms = excluded.updated_at_ms \
             RETURNING calls"
        )
        .bind(u.tenant.as_str())
        .bind(&u.connector)
        .bind(&u.day)
        .bind(&u.vendor)
        .bind(u.calls)
        .bind(u.daily_limit)
        .bind(u.window_limit)
        .bind(u.window_seconds)
        .bind(u.warn_percent)
        .bind(u.vendor_used)
        .bind(u.vendor_limit)
        .bind(now)
        .fetch_one(p)
        .await?);
        Ok(total.0)
    }

    /// The tenant's usage from `from` to `to` (UTC days, inclusive), optionally of one
    /// connector, ordered by connector then day.
    pub async fn api_usage(
        &self,
        tenant: &TenantId,
        connector: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<Vec<UsageDay>> {
        check_day("from", from)?;
        check_day("to", to)?;
        let rows: Vec<UsageRow> = on_pool!(self, |p| sqlx::query_as(
            "SELECT connector, day, vendor, calls, daily_limit, window_limit, window_seconds, \
             warn_percent, vendor_used, vendor_limit, updated_at_ms FROM api_usage \
             WHERE tenant_id = $1 AND day >= $2 AND day <= $3 \
             AND ($4 = '' OR connector = $4) ORDER BY connector, day"
        )
        .bind(tenant.as_str())
        .bind(from)
        .bind(to)
        .bind(connector.unwrap_or(""))
        .fetch_all(p)
        .await?);
        Ok(rows.into_iter().map(day_from_row).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::on_both_backends;

    fn add(tenant: &str, connector: &str, day: &str, calls: i64) -> UsageAdd {
        UsageAdd {
            tenant: TenantId::new(tenant).unwrap(),
            connector: connector.into(),
            day: day.into(),
            vendor: "hubspot".into(),
            calls,
            daily_limit: 250_000,
            window_limit: Some(100),
            window_seconds: 10,
            warn_percent: 20,
            vendor_used: None,
            vendor_limit: None,
        }
    }

    on_both_backends! {
        async fn usage_sums_over_nodes_and_survives_a_reconnect(h) {
            let s = &h.store;
            assert_eq!(s.add_api_usage(&add("acme", "hs", "2026-11-27", 3)).await.unwrap(), 3);
            let other = h.open(crate::crypto::MasterKey::generate(1), Default::default()).await;
            assert_eq!(other.add_api_usage(&add("acme", "hs", "2026-11-27", 4)).await.unwrap(), 7);
            other.close().await;
            s.add_api_usage(&add("acme", "hs", "2026-11-28", 1)).await.unwrap();
            s.add_api_usage(&add("acme", "sf", "2026-11-27", 2)).await.unwrap();
            s.add_api_usage(&add("globex", "hs", "2026-11-27", 9)).await.unwrap();
            let acme = TenantId::new("acme").unwrap();
            let days = s.api_usage(&acme, None, "2026-11-27", "2026-11-28").await.unwrap();
            let seen: Vec<(&str, &str, i64)> = days
                .iter()
                .map(|d| (d.connector.as_str(), d.day.as_str(), d.calls))
                .collect();
            assert_eq!(
                seen,
                [("hs", "2026-11-27", 7), ("hs", "2026-11-28", 1), ("sf", "2026-11-27", 2)]
            );
            let one = s.api_usage(&acme, Some("sf"), "2026-11-01", "2026-11-30").await.unwrap();
            assert_eq!(one.len(), 1);
            assert_eq!(one[0].remaining(), 249_998);
            assert!(!one[0].warning());
            let bad = s.add_api_usage(&add("acme", "hs", "27/11/2026", 1)).await.unwrap_err();
            assert_eq!(bad.code(), "invalid_input");
            let bad = s.add_api_usage(&add("acme", "hs", "2026-11-27", -1)).await.unwrap_err();
            assert_eq!(bad.code(), "invalid_input");
        }
    }

    #[test]
    fn the_vendors_count_and_limit_win_and_warning_is_under_the_percentage() {
        let d = UsageDay {
            connector: "sf".into(),
            day: "2026-11-27".into(),
            vendor: "salesforce".into(),
            calls: 10,
            daily_limit: 100_000,
            window_limit: None,
            window_seconds: 10,
            warn_percent: 20,
            vendor_used: Some(95_000),
            vendor_limit: Some(115_000),
            updated_at_ms: 0,
        };
        assert_eq!(
            (d.used(), d.limit(), d.remaining()),
            (95_000, 115_000, 20_000)
        );
        assert!(d.warning(), "20,000 of 115,000 is 17 %");
        let ours = UsageDay {
            vendor_used: None,
            vendor_limit: None,
            ..d
        };
        assert_eq!((ours.used(), ours.limit()), (10, 100_000));
        assert!(!ours.warning());
    }
}
