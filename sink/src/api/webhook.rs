//! The webhook target: batched, HMAC-signed POSTs of canonical records.
//!
//! Body: `{"records":[{"tenant","entity","key","version","record"}]}` where `version` is the
//! record's `source_updated_at` (a receiver keeps the highest) and `record` the canonical
//! record. Headers: `x-hub-timestamp` (unix seconds) and `x-hub-signature-256`, the hub's
//! generic signature scheme (`hub_connectors::generic::signature`), the same one the hub's own
//! ingest verifies.
//!
//! Answers: 2xx ok; 408, 425, 429, 5xx and transport errors transient (honouring
//! `Retry-After`, seconds or an HTTP date); any other status permanent, with the first 500
//! characters of the body as the reason. A batch refused permanently is retried one record at
//! a time to find the records at fault.

use std::time::Duration;

use hub_connectors::generic::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use hub_schemas::records::now_ms;
use hub_topology::{Target, TargetKind};
use serde_json::{Value as Json, json};

use super::{Sink, WriteResult};
use crate::error::SinkError;
use crate::record::CanonicalRecord;

/// How much of an error body becomes the dead letter's reason.
const REASON_CHARS: usize = 500;
/// How much of an error body is read at all.
const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;

/// Posts batches to one webhook target.
#[derive(Clone)]
pub struct WebhookSink {
    target_id: String,
    url: reqwest::Url,
    secret: Vec<u8>,
    batch_size: usize,
    client: reqwest::Client,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("WebhookSink")
            .field("target_id", &self.target_id)
            .field("url", &self.url.as_str())
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl WebhookSink {
    /// A sink posting at most `batch_size` records per request to `url`, signed with `secret`.
    pub fn new(
        target_id: &str,
        url: &str,
        secret: &str,
        batch_size: usize,
    ) -> Result<Self, SinkError> {
        let url = reqwest::Url::parse(url).map_err(|e| {
            SinkError::Config(format!(
                "target '{target_id}': the webhook URL is not valid: {e}"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SinkError::Config(format!(
                "target '{target_id}': the webhook URL must be http or https"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            // A redirect would re-send signed data somewhere the topology did not name.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SinkError::Config(format!("target '{target_id}': HTTP client: {e}")))?;
        Ok(WebhookSink {
            target_id: target_id.to_string(),
            url,
            secret: secret.as_bytes().to_vec(),
            batch_size: batch_size.max(1),
            client,
        })
    }

    /// The sink of a `webhook` target from the topology.
    pub fn from_target(target: &Target) -> Result<Self, SinkError> {
        match &target.kind {
            TargetKind::Webhook {
                url,
                secret,
                batch_size,
                ..
            } => Self::new(&target.id, url, secret, *batch_size),
            _ => Err(SinkError::Config(format!(
                "target '{}' is not a webhook target",
                target.id
            ))),
        }
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The JSON body for a batch.
    pub fn body(records: &[CanonicalRecord]) -> Vec<u8> {
        let items: Vec<Json> = records
            .iter()
            .map(|r| {
                json!({
                    "tenant": r.tenant,
                    "entity": r.entity.name(),
                    "key": r.key,
                    "version": r.source_updated_at,
                    "record": r.doc,
                })
            })
            .collect();
        serde_json::to_vec(&json!({ "records": items })).unwrap_or_default()
    }

    async fn post(&self, records: &[CanonicalRecord]) -> WriteResult {
        let body = Self::body(records);
        let ts = now_ms() / 1000;
        let signature = sign(&self.secret, ts, &body);
        let sent = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => {
                let class = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "transport error"
                };
                return WriteResult::Transient {
                    retry_after: None,
                    reason: format!("{class}: {}", e.without_url()),
                };
            }
        };
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return WriteResult::Ok;
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now_ms()));
        let mut body = Vec::new();
        while body.len() < MAX_ERROR_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        classify(status, retry_after, &String::from_utf8_lossy(&body))
    }
}

/// Classifies a non-transport answer.
pub fn classify(status: u16, retry_after: Option<Duration>, body: &str) -> WriteResult {
    match status {
        200..=299 => WriteResult::Ok,
        408 | 425 | 429 | 500..=599 => WriteResult::Transient {
            retry_after,
            reason: format!("HTTP {status}"),
        },
        _ => {
            let excerpt: String = body.chars().take(REASON_CHARS).collect();
            WriteResult::Permanent {
                reason: if excerpt.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {excerpt}")
                },
            }
        }
    }
}

/// `Retry-After` as a delay from `now_ms`: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(Duration::from_millis(
        (at.timestamp_millis() - now_ms).max(0) as u64,
    ))
}

impl Sink for WebhookSink {
    fn target_id(&self) -> &str {
        &self.target_id
    }

    async fn write(&self, batch: &[CanonicalRecord]) -> Vec<WriteResult> {
        let mut results = Vec::with_capacity(batch.len());
        let mut chunks = batch.chunks(self.batch_size);
        for chunk in chunks.by_ref() {
            match self.post(chunk).await {
                WriteResult::Permanent { .. } if chunk.len() > 1 => {
                    for record in chunk {
                        results.push(self.post(std::slice::from_ref(record)).await);
                    }
                }
                transient @ WriteResult::Transient { .. } => {
                    // Later records wait for this chunk: a retry must not deliver an older
                    // version of a key after a newer one already went through.
                    let rest = batch.len() - results.len();
                    results.extend(std::iter::repeat_n(transient, rest));
                    break;
                }
                outcome => results.extend(std::iter::repeat_n(outcome, chunk.len())),
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_once() {
        assert_eq!(classify(204, None, ""), WriteResult::Ok);
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify(s, None, ""), WriteResult::Transient { .. }),
                "{s}"
            );
        }
        let long = "x".repeat(2000);
        match classify(422, None, &long) {
            WriteResult::Permanent { reason } => assert_eq!(reason.len(), "HTTP 422: ".len() + 500),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            classify(404, None, ""),
            WriteResult::Permanent {
                reason: "HTTP 404".into()
            }
        );
        assert!(matches!(
            classify(301, None, ""),
            WriteResult::Permanent { .. }
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after(" 7 ", 0), Some(Duration::from_secs(7)));
        // 2015-10-21T07:28:00Z
        let at = 1_445_412_480_000;
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", at - 3_000),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", at + 60_000),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
    }
}
