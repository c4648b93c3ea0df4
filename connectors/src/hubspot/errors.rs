//! Classify HubSpot error responses once, here (vendor-apis.md §1.2, §3.6), and read the
//! `X-HubSpot-RateLimit-*` headers (§3.7).

use std::time::Duration;

use crate::error::{ErrorClass, VendorError, retry_after};

pub const VENDOR: &str = "hubspot";

/// §3.6: 423 Locked means "wait at least 2 s".
pub const LOCKED_MIN_WAIT: Duration = Duration::from_secs(2);

/// HubSpot's error envelope (§3.6). Only `status`, `message`, `correlationId` and `category`
/// are reliable; everything is optional here so a stray body never stops classification.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub status: Option<String>,
    pub message: Option<String>,
    pub correlation_id: Option<String>,
    pub category: Option<String>,
    pub sub_category: Option<serde_json::Value>,
    /// 429 bodies carry `errorType: "RATE_LIMIT"` rather than a category.
    pub error_type: Option<String>,
    /// 429 only: `TEN_SECONDLY_ROLLING`, `SECONDLY` or `DAILY`.
    pub policy_name: Option<String>,
    #[serde(default)]
    pub errors: Vec<ErrorDetail>,
}

#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct ErrorDetail {
    pub message: Option<String>,
    /// The property the detail concerns, e.g. `email`.
    #[serde(rename = "in")]
    pub in_field: Option<String>,
    pub code: Option<String>,
}

impl ErrorBody {
    /// Lenient: an unparseable body (an HTML page from a proxy, say) is an empty envelope.
    pub fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// A message without record values where HubSpot gives structured details: its top-level
    /// validation message quotes the rejected value (`Email address bob@ is invalid`), while
    /// `errors[]` names only the code and the property. The correlation id is kept for support.
    fn admin_message(&self, status: u16) -> String {
        let details: Vec<String> = self
            .errors
            .iter()
            .filter_map(|d| match (&d.code, &d.in_field) {
                (Some(code), Some(field)) => Some(format!("{code} on property {field}")),
                (Some(code), None) => Some(code.clone()),
                _ => None,
            })
            .collect();
        let mut msg = if !details.is_empty() {
            details.join("; ")
        } else {
            self.message
                .clone()
                .unwrap_or_else(|| format!("HubSpot answered HTTP {status} without an error body"))
        };
        if let Some(id) = &self.correlation_id {
            msg.push_str(&format!(" (correlationId {id})"));
        }
        msg
    }
}

/// The 429 policy, which decides how long to back off (§3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitPolicy {
    TenSecondlyRolling,
    Secondly,
    /// Wait until midnight in the account's time zone.
    Daily,
    Other(String),
}

impl RateLimitPolicy {
    pub fn parse(name: &str) -> Self {
        match name {
            "TEN_SECONDLY_ROLLING" => Self::TenSecondlyRolling,
            "SECONDLY" => Self::Secondly,
            "DAILY" => Self::Daily,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// Classifies a failed HubSpot response. `retry_after_header` is the raw `Retry-After` value.
pub fn classify(status: u16, retry_after_header: Option<&str>, body: &[u8]) -> VendorError {
    let parsed = ErrorBody::parse(body);
    let retry = retry_after(retry_after_header);
    let class = match status {
        401 => ErrorClass::Auth,
        429 => ErrorClass::RateLimited { retry_after: retry },
        423 => ErrorClass::Transient {
            retry_after: Some(retry.map_or(LOCKED_MIN_WAIT, |r| r.max(LOCKED_MIN_WAIT))),
        },
        // 477 Migration in progress: honour Retry-After (§3.6).
        477 => ErrorClass::Transient { retry_after: retry },
        502 | 503 | 504 | 524 => ErrorClass::Transient { retry_after: retry },
        // Other 5xx are not in §3.6 but are the vendor's fault, like the listed ones [inferred].
        500..=599 => ErrorClass::Transient { retry_after: retry },
        // 400 VALIDATION_ERROR, 403 MISSING_SCOPES, 404 OBJECT_NOT_FOUND, 409 CONFLICT, …
        _ => ErrorClass::Permanent,
    };
    let code = match (status, &parsed.policy_name) {
        (429, Some(policy)) => policy.clone(),
        _ => parsed
            .category
            .clone()
            .or_else(|| parsed.error_type.clone())
            // §3.1: the token endpoint's errors carry their code in `status`
            // (`BAD_REFRESH_TOKEN`, `BAD_AUTH_CODE`, …) rather than a category.
            .or_else(|| parsed.status.clone().filter(|s| s.starts_with("BAD_")))
            .unwrap_or_else(|| format!("HTTP_{status}")),
    };
    VendorError {
        vendor: VENDOR,
        status,
        code,
        message: parsed.admin_message(status),
        class,
    }
}

/// Classifies one per-record error of a 207 batch response (§3.5) by its `category`.
pub fn classify_category(category: Option<&str>, message: String) -> VendorError {
    let class = match category {
        Some("RATE_LIMITS") => ErrorClass::RateLimited { retry_after: None },
        Some("EXPIRED_AUTHENTICATION" | "INVALID_AUTHENTICATION") => ErrorClass::Auth,
        _ => ErrorClass::Permanent,
    };
    VendorError {
        vendor: VENDOR,
        status: 207,
        code: category.unwrap_or("UNKNOWN").to_owned(),
        message,
        class,
    }
}

/// The `X-HubSpot-RateLimit-*` headers of one response (§3.7). Every field is optional:
/// search responses carry none, OAuth calls carry no daily pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitStatus {
    pub daily: Option<u64>,
    pub daily_remaining: Option<u64>,
    pub interval_ms: Option<u64>,
    pub max_per_interval: Option<u64>,
    pub remaining_in_interval: Option<u64>,
    pub secondly: Option<u64>,
    pub secondly_remaining: Option<u64>,
}

impl RateLimitStatus {
    /// `header` looks a header up by its lower-case name (HTTP names are case-insensitive).
    pub fn from_headers<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Self {
        let num = |name: &str| header(name).and_then(|v| v.trim().parse::<u64>().ok());
        RateLimitStatus {
            daily: num("x-hubspot-ratelimit-daily"),
            daily_remaining: num("x-hubspot-ratelimit-daily-remaining"),
            interval_ms: num("x-hubspot-ratelimit-interval-milliseconds"),
            max_per_interval: num("x-hubspot-ratelimit-max"),
            remaining_in_interval: num("x-hubspot-ratelimit-remaining"),
            secondly: num("x-hubspot-ratelimit-secondly"),
            secondly_remaining: num("x-hubspot-ratelimit-secondly-remaining"),
        }
    }

    /// True when the response carried no rate-limit header at all (e.g. search, §3.4).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// True when the next call would exceed the burst or the daily allowance.
    pub fn is_exhausted(&self) -> bool {
        self.remaining_in_interval == Some(0)
            || self.secondly_remaining == Some(0)
            || self.daily_remaining == Some(0)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn token_endpoint_errors_keep_their_status_word_as_code() {
        let e = classify(
            400,
            None,
            br#"{"status":"BAD_REFRESH_TOKEN","message":"missing or invalid refresh token","correlationId":"c1"}"#,
        );
        assert_eq!(e.code, "BAD_REFRESH_TOKEN");
        assert_eq!(e.class, ErrorClass::Permanent);
    }

    use super::*;
    use std::collections::HashMap;

    #[test]
    fn expired_token_is_auth() {
        let body = br#"{"status":"error","message":"The OAuth token used to make this call expired 3 minute(s) ago.","correlationId":"c-1","category":"EXPIRED_AUTHENTICATION"}"#;
        let e = classify(401, None, body);
        assert_eq!(e.class, ErrorClass::Auth);
        assert_eq!(e.code, "EXPIRED_AUTHENTICATION");
        assert!(e.is_retriable());
    }

    #[test]
    fn ten_secondly_limit_is_rate_limited_with_retry_after_and_policy_code() {
        let body = br#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","correlationId":"c-2","policyName":"TEN_SECONDLY_ROLLING"}"#;
        let e = classify(429, Some("3"), body);
        assert_eq!(
            e.class,
            ErrorClass::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(e.code, "TEN_SECONDLY_ROLLING");
        assert_eq!(
            RateLimitPolicy::parse(&e.code),
            RateLimitPolicy::TenSecondlyRolling
        );
        assert!(e.message.contains("c-2"));
    }

    #[test]
    fn locked_record_waits_at_least_two_seconds() {
        let e = classify(423, None, b"");
        assert_eq!(
            e.class,
            ErrorClass::Transient {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        let e = classify(423, Some("1"), b"");
        assert_eq!(
            e.class,
            ErrorClass::Transient {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        let e = classify(423, Some("5"), b"");
        assert_eq!(
            e.class,
            ErrorClass::Transient {
                retry_after: Some(Duration::from_secs(5))
            }
        );
    }

    #[test]
    fn account_migration_is_transient_honouring_retry_after() {
        let e = classify(477, Some("120"), b"{}");
        assert_eq!(
            e.class,
            ErrorClass::Transient {
                retry_after: Some(Duration::from_secs(120))
            }
        );
    }

    #[test]
    fn gateway_failures_are_transient_even_with_html_bodies() {
        for status in [502, 503, 504, 524] {
            let e = classify(status, None, b"<html>Bad gateway</html>");
            assert_eq!(e.class, ErrorClass::Transient { retry_after: None });
            assert_eq!(e.code, format!("HTTP_{status}"));
        }
    }

    #[test]
    fn invalid_contact_email_is_permanent_without_quoting_the_value() {
        let body = br#"{"status":"error","message":"Property values were not valid: [{\"isValid\":false,\"message\":\"Email address bob@ is invalid\",\"error\":\"INVALID_EMAIL\",\"name\":\"email\"}]","correlationId":"c-3","category":"VALIDATION_ERROR","errors":[{"message":"Email address bob@ is invalid","in":"email","code":"INVALID_EMAIL","context":{}}]}"#;
        let e = classify(400, None, body);
        assert_eq!(e.class, ErrorClass::Permanent);
        assert_eq!(e.code, "VALIDATION_ERROR");
        assert!(e.message.contains("INVALID_EMAIL on property email"));
        assert!(!e.message.contains("bob@"), "{}", e.message);
    }

    #[test]
    fn missing_deal_and_duplicate_contact_are_permanent() {
        let e = classify(
            404,
            None,
            br#"{"status":"error","message":"resource not found","correlationId":"c-4","category":"OBJECT_NOT_FOUND"}"#,
        );
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Permanent, "OBJECT_NOT_FOUND")
        );
        let e = classify(
            409,
            None,
            br#"{"status":"error","message":"Contact already exists. Existing ID: 12345","correlationId":"c-5","category":"CONFLICT"}"#,
        );
        assert_eq!(e.class, ErrorClass::Permanent);
        assert!(!e.is_retriable());
    }

    #[test]
    fn rate_limit_headers_are_read_and_search_responses_have_none() {
        let headers: HashMap<&str, &str> = [
            ("x-hubspot-ratelimit-daily", "250000"),
            ("x-hubspot-ratelimit-daily-remaining", "249100"),
            ("x-hubspot-ratelimit-interval-milliseconds", "10000"),
            ("x-hubspot-ratelimit-max", "100"),
            ("x-hubspot-ratelimit-remaining", "0"),
            ("x-hubspot-ratelimit-secondly", "10"),
            ("x-hubspot-ratelimit-secondly-remaining", "junk"),
        ]
        .into_iter()
        .collect();
        let s = RateLimitStatus::from_headers(|n| headers.get(n).copied());
        assert_eq!(s.daily, Some(250_000));
        assert_eq!(s.interval_ms, Some(10_000));
        assert_eq!(s.max_per_interval, Some(100));
        assert_eq!(s.secondly_remaining, None);
        assert!(s.is_exhausted());
        let none = RateLimitStatus::from_headers(|_| None);
        assert!(none.is_empty());
        assert!(!none.is_exhausted());
    }
}
