//! The webhook sender (vendor-apis.md §3.8): changes made through the API or a test helper become
//! events, batched (up to 100) into one JSON array POSTed to the app's target URL, signed v1 and
//! v3 (the v3 signer is `hub_connectors::hubspot::events::sign_v3`, the same code the hub
//! verifies with), retried with growing delays on connection failure, timeout, 5xx and 429
//! (honouring `Retry-After`), up to `max_attempts` times; other 4xx are not retried.

use std::sync::Arc;
use std::time::Duration;

use hub_connectors::hubspot::events::sign_v3;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::Shared;
use super::store::{Change, ChangeKind};
use crate::common::lock;

/// Who made a change: `changeSource` and `sourceId` of §3.8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeSource {
    /// Through the API with the app's token: `INTEGRATION`, `sourceId` the app id.
    Integration,
    /// A person in HubSpot's UI (the sandbox's test helpers).
    CrmUi,
}

#[derive(Debug, Clone)]
pub struct Pending {
    pub change: Change,
    pub source: ChangeSource,
}

/// Sender settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// The app's one target URL (§3.8); `None` sends nothing. Can be changed at run time.
    pub target_url: Option<String>,
    /// §3.8: up to 10 tries.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one (HubSpot's are minutes;
    /// tests use milliseconds).
    pub retry_base: Duration,
    /// How long the sender waits for more events before posting a batch.
    pub batch_window: Duration,
    /// §3.8: at most 100 events per request.
    pub max_batch: usize,
    /// §3.8: a delivery taking longer than 5 s is a failure.
    pub timeout: Duration,
    /// Sends every batch twice (§3.8: consumers must de-duplicate).
    pub duplicate: bool,
    /// Added to `X-HubSpot-Request-Timestamp`; e.g. −6 minutes makes deliveries "late", so the
    /// receiver's 5-minute freshness check must refuse them (§3.9).
    pub timestamp_offset_ms: i64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            target_url: None,
            max_attempts: 10,
            retry_base: Duration::from_secs(2),
            batch_window: Duration::from_millis(100),
            max_batch: 100,
            timeout: Duration::from_secs(5),
            duplicate: false,
            timestamp_offset_ms: 0,
        }
    }
}

/// One delivery attempt, as a test sees it afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttempt {
    pub event_ids: Vec<u64>,
    pub attempt_number: u32,
    /// The receiver's status, `None` when the connection failed or timed out.
    pub status: Option<u16>,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    WillRetry,
    GaveUp,
}

/// `subscriptionId` per subscription type: fixed, as if configured once in the app settings.
fn subscription_id(object: &str, action: &str) -> u64 {
    let o = match object {
        "contact" => 0,
        "company" => 1,
        _ => 2,
    };
    let a = match action {
        "creation" => 0,
        "propertyChange" => 1,
        _ => 2,
    };
    12_345 + o * 3 + a
}

fn event_json(sh: &Shared, event_id: u64, p: &Pending, attempt: u32) -> Value {
    let object = p.change.object_type.singular();
    let action = match &p.change.kind {
        ChangeKind::Created => "creation",
        ChangeKind::PropertyChanged { .. } => "propertyChange",
        ChangeKind::Deleted => "deletion",
    };
    let mut e = json!({
        "eventId": event_id,
        "subscriptionId": subscription_id(object, action),
        "portalId": sh.config.portal_id,
        "appId": sh.config.app_id,
        "occurredAt": p.change.occurred_at_ms,
        "subscriptionType": format!("{object}.{action}"),
        "attemptNumber": attempt,
        "objectId": p.change.object_id,
    });
    match &p.source {
        ChangeSource::Integration => {
            e["changeSource"] = json!("INTEGRATION");
            e["sourceId"] = json!(sh.config.app_id.to_string());
        }
        ChangeSource::CrmUi => {
            e["changeSource"] = json!("CRM_UI");
            e["sourceId"] = json!("userId:42");
        }
    }
    match &p.change.kind {
        ChangeKind::Created => e["changeFlag"] = json!("NEW"),
        ChangeKind::PropertyChanged { name, value } => {
            e["propertyName"] = json!(name);
            e["propertyValue"] = json!(value);
        }
        ChangeKind::Deleted => {}
    }
    e
}

/// The sender loop: runs until the sandbox stops.
pub(crate) async fn run(sh: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let client = match reqwest::Client::builder()
        .timeout(sh.config.webhook.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the webhook sender cannot build its HTTP client");
            return;
        }
    };
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + sh.config.webhook.batch_window;
        while batch.len() < sh.config.webhook.max_batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => batch.push(p),
                _ => break,
            }
        }
        let Some(target) = lock(&sh.webhook_target).clone() else {
            continue;
        };
        let ids: Vec<u64> = {
            let mut st = lock(&sh.state);
            batch
                .iter()
                .map(|_| {
                    st.next_event_id += 1;
                    st.next_event_id
                })
                .collect()
        };
        deliver(&sh, &client, &target, &ids, &batch).await;
        if sh.config.webhook.duplicate {
            deliver(&sh, &client, &target, &ids, &batch).await;
        }
    }
}

async fn deliver(
    sh: &Shared,
    client: &reqwest::Client,
    target: &str,
    ids: &[u64],
    batch: &[Pending],
) {
    let cfg = &sh.config.webhook;
    for attempt in 0..cfg.max_attempts.max(1) {
        let events: Vec<Value> = ids
            .iter()
            .zip(batch)
            .map(|(id, p)| event_json(sh, *id, p, attempt))
            .collect();
        let body = serde_json::to_vec(&events).unwrap_or_default();
        let ts = (sh.clock.now_ms() + cfg.timestamp_offset_ms).to_string();
        let secret = sh.config.client_secret.as_bytes();
        let v3 = sign_v3(secret, "POST", target, &body, &ts);
        // v1: SHA-256 of client secret + body, lowercase hex (§3.8 table).
        let v1 = hex::encode(
            Sha256::new()
                .chain_update(secret)
                .chain_update(&body)
                .finalize(),
        );
        let sent = client
            .post(target)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                "HubSpot Connect 2.0 (http://dev.hubspot.com/) - sandbox",
            )
            .header("x-hubspot-signature", v1)
            .header("x-hubspot-signature-version", "v1")
            .header("x-hubspot-signature-v3", v3)
            .header("x-hubspot-request-timestamp", ts)
            .header(
                "x-hubspot-timeout-millis",
                cfg.timeout.as_millis().to_string(),
            )
            .body(body)
            .send()
            .await;
        let (status, retry_after) = match &sent {
            Ok(r) => (
                Some(r.status().as_u16()),
                r.headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
            ),
            Err(_) => (None, None),
        };
        let retriable = match status {
            None => true,
            Some(s) => s == 429 || s >= 500,
        };
        let outcome = match status {
            Some(s) if (200..300).contains(&s) => AttemptOutcome::Delivered,
            _ if retriable && attempt + 1 < cfg.max_attempts => AttemptOutcome::WillRetry,
            _ => AttemptOutcome::GaveUp,
        };
        lock(&sh.webhook_log).push(WebhookAttempt {
            event_ids: ids.to_vec(),
            attempt_number: attempt,
            status,
            outcome,
        });
        if outcome != AttemptOutcome::WillRetry {
            return;
        }
        let backoff = cfg.retry_base.saturating_mul(1u32 << attempt.min(16));
        tokio::time::sleep(backoff.max(retry_after.unwrap_or_default())).await;
    }
}
