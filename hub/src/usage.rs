//! Moves the vendor API usage this process counted (`hub_connectors::usage`) into the control
//! store every few seconds, where every node's calls add up per tenant, connector and UTC day;
//! the stored total then comes back to the counters, so a node's "remaining budget" (gauges,
//! low-budget warning) covers the whole hub and survives a restart. Started by the node when
//! `HUB_CONTROL_STORE` is set, whatever its roles (the calls are made by ingest and sinks).

use std::time::Duration;

use hub_connectors::usage::{self, UsageDelta, WINDOW_MS};
use hub_control::ControlStore;
use hub_control::auth::TenantId;
use hub_control::store::usage::UsageAdd;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// How often counts are flushed: often enough that nodes see each other's calls within a
/// minute, rarely enough that the store sees a handful of upserts per connector and minute.
pub const FLUSH_EVERY: Duration = Duration::from_secs(15);

/// Flushes every [`FLUSH_EVERY`] into an already opened store (the node's control plane's)
/// until `shutdown`, then once more.
pub fn spawn_flusher_on(store: ControlStore, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(flush_until_shutdown(store, shutdown))
}

async fn flush_until_shutdown(store: ControlStore, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => flush(&store).await,
            _ = shutdown.changed() => {
                flush(&store).await;
                return;
            }
        }
    }
}

/// Opens the store at `url` (retrying) and flushes into it like [`spawn_flusher_on`].
pub fn spawn_flusher(url: String, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        // The flusher never reads a credential, so the master key only matters when the
        // node also runs the API (which checks it); without one a throwaway key will do.
        let key = hub_control::MasterKey::from_env()
            .unwrap_or_else(|_| hub_control::MasterKey::generate(1));
        let store = loop {
            match ControlStore::connect(&url, key.clone(), Default::default()).await {
                Ok(s) => break s,
                Err(e) => {
                    warn!(error = %e, "usage flusher cannot open the control store; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(FLUSH_EVERY) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        };
        flush_until_shutdown(store, shutdown).await;
    })
}

/// One round: every connector's unflushed calls, or a zero delta carrying today's limits and
/// the vendor's report, so the day's row exists and the counters learn the stored total.
pub async fn flush(store: &ControlStore) {
    let now_ms = hub_schemas::records::now_ms();
    for u in usage::all() {
        let mut deltas = u.take_unflushed();
        if deltas.is_empty() {
            deltas.push(u.heartbeat(now_ms));
        }
        for d in deltas {
            let Some(add) = to_add(&d) else {
                // Not a tenant id the control plane can hold (validation prevents it).
                u.committed(&d, 0);
                continue;
            };
            match store.add_api_usage(&add).await {
                Ok(total) => u.committed(&d, u64::try_from(total).unwrap_or(0)),
                Err(e) => {
                    warn!(tenant = %d.tenant, connector = %d.connector, error = %e,
                        "vendor API usage not stored; kept for the next flush");
                    u.failed(&d);
                }
            }
        }
    }
    debug!("vendor API usage flushed");
}

fn to_add(d: &UsageDelta) -> Option<UsageAdd> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Some(UsageAdd {
        tenant: TenantId::new(d.tenant.clone()).ok()?,
        connector: d.connector.clone(),
        day: usage::day_text(d.day),
        vendor: d.vendor.to_owned(),
        calls: n(d.calls),
        daily_limit: n(d.limits.daily_limit.max(1)),
        window_limit: d.limits.per_10s.map(n),
        window_seconds: WINDOW_MS / 1000,
        warn_percent: i64::from(d.limits.warn_percent),
        vendor_used: d.vendor_reported.map(|(used, _)| n(used)),
        vendor_limit: d.vendor_reported.map(|(_, limit)| n(limit)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_connectors::usage::{UsageLimits, connector_usage};

    #[tokio::test]
    async fn a_flush_stores_the_calls_and_hands_the_stored_total_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("control.db").display());
        let store = ControlStore::connect(
            &url,
            hub_control::MasterKey::generate(1),
            Default::default(),
        )
        .await
        .expect("store");
        let limits = UsageLimits {
            daily_limit: 1000,
            per_10s: Some(100),
            warn_percent: 20,
        };
        let u = connector_usage("flush-test", "hs", "hubspot", limits);
        for _ in 0..3 {
            u.record_call();
        }
        // Another node already stored 5 calls today.
        let now = hub_schemas::records::now_ms();
        let today = usage::day_text(usage::utc_day(now));
        let tenant = TenantId::new("flush-test").expect("id");
        store
            .add_api_usage(&UsageAdd {
                calls: 5,
                ..to_add(&u.heartbeat(now)).expect("valid")
            })
            .await
            .expect("other node");
        flush(&store).await;
        let days = store
            .api_usage(&tenant, Some("hs"), &today, &today)
            .await
            .expect("read");
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].calls, 8);
        assert_eq!(days[0].window_limit, Some(100));
        assert_eq!(u.snapshot_at(now).used_today, 8, "the whole hub's calls");
        // Nothing new: a flush adds nothing.
        flush(&store).await;
        let days = store
            .api_usage(&tenant, Some("hs"), &today, &today)
            .await
            .expect("read");
        assert_eq!(days[0].calls, 8);
    }
}
