//! Salesforce's error bodies and their classification (vendor-apis.md §1.2, §2.9).
//!
//! REST errors come as a JSON array even for one error: `[{"message", "errorCode", "fields"}]`.
//! Per-record errors inside an sObject Collections result use the key `statusCode` instead of
//! `errorCode` (§2.5); [`parse_error_body`] and [`classify_record_errors`] accept either.
//! A 300 on an external-id upsert carries an array of the matching record URLs, not errors.
//!
//! The class is decided by the error code first (a code means the same thing whatever the
//! status — `UNABLE_TO_LOCK_ROW` arrives both as a top-level 400 and as a per-record error), then
//! by the HTTP status. When several errors come back, any permanent one makes the whole response
//! permanent (retrying cannot fix it); otherwise the first error decides.

use std::time::Duration;

use serde_json::Value;

use crate::error::{ErrorClass, VendorError};

/// The vendor name carried by every [`VendorError`] from this connector.
pub const VENDOR: &str = "salesforce";

/// Back-off hint for 403 `REQUEST_LIMIT_EXCEEDED` "TotalRequests Limit exceeded." — the daily
/// allocation over a rolling 24 hours (§2.8). Salesforce sends no `Retry-After` (§2.8, §2.9), so
/// this is our choice: calls age out of the rolling window slowly, and probing more often than
/// every 15 minutes would only spend requests we no longer have.
pub const DAILY_LIMIT_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// Back-off hint for 403 `REQUEST_LIMIT_EXCEEDED` "ConcurrentPerOrgLongTxn Limit exceeded." —
/// too many requests of 20 s or more in flight at once (§2.8). Our choice as well: one
/// long-request threshold (20 s) is roughly how soon a slot can free up.
pub const CONCURRENCY_LIMIT_BACKOFF: Duration = Duration::from_secs(20);

/// One entry of a Salesforce error array.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiError {
    pub message: String,
    /// `errorCode` at the top level, `statusCode` inside a Collections result (§2.5).
    pub error_code: String,
    /// The fields the error concerns, e.g. `["LastName"]`; empty when not given.
    pub fields: Vec<String>,
}

/// Parses an error body into its entries. Tolerant by design: a single object instead of an
/// array, missing keys and wrong types are accepted; an unparseable body gives an empty list.
/// It never panics.
pub fn parse_error_body(body: &[u8]) -> Vec<ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items.iter().filter_map(api_error_from_value).collect(),
        Ok(v @ Value::Object(_)) => api_error_from_value(&v).into_iter().collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn api_error_from_value(v: &Value) -> Option<ApiError> {
    let o = v.as_object()?;
    let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
    let error_code = text("errorCode").or_else(|| text("statusCode"))?;
    let fields = match o.get("fields") {
        Some(Value::Array(fs)) => fs
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    Some(ApiError {
        message: text("message").unwrap_or_default(),
        error_code,
        fields,
    })
}

/// Classifies a failed REST response from its status and body.
///
/// `status` is the HTTP status (0 for a transport failure, which is transient).
pub fn classify(status: u16, body: &[u8]) -> VendorError {
    if status == 300 {
        // §2.5: several records match the external id; the body lists their URLs. Picking one
        // would be a guess, so the record goes to the dead letter with the count.
        let matches = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(a)) => a.len(),
            _ => 0,
        };
        return VendorError {
            vendor: VENDOR,
            status,
            code: "MULTIPLE_CHOICES".into(),
            message: format!("the external id matched {matches} records"),
            class: ErrorClass::Permanent,
        };
    }
    let errors = parse_error_body(body);
    if errors.is_empty() {
        return VendorError {
            vendor: VENDOR,
            status,
            code: format!("HTTP_{status}"),
            // The body is not echoed: it may hold record data.
            message: format!(
                "Salesforce answered HTTP {status} without a readable error ({} bytes)",
                body.len()
            ),
            class: class_for(status, ""),
        };
    }
    decide(status, &errors)
}

/// Classifies the `errors` of one failed item in an sObject Collections result (§2.5). The
/// response itself was a 200, so only the codes decide; `status` is recorded as given.
pub fn classify_record_errors(status: u16, errors: &[ApiError]) -> VendorError {
    if errors.is_empty() {
        return VendorError {
            vendor: VENDOR,
            status,
            code: "UNKNOWN_ERROR".into(),
            message: "Salesforce reported the record as failed without an error".into(),
            class: ErrorClass::Permanent,
        };
    }
    decide(status, errors)
}

fn decide(status: u16, errors: &[ApiError]) -> VendorError {
    let classes: Vec<ErrorClass> = errors.iter().map(|e| class_for_error(status, e)).collect();
    let pick = classes
        .iter()
        .position(|c| *c == ErrorClass::Permanent)
        .unwrap_or(0);
    let e = &errors[pick];
    let message = if e.fields.is_empty() {
        e.message.clone()
    } else {
        format!("{} (fields: {})", e.message, e.fields.join(", "))
    };
    VendorError {
        vendor: VENDOR,
        status,
        code: e.error_code.clone(),
        message,
        class: classes[pick].clone(),
    }
}

fn class_for_error(status: u16, e: &ApiError) -> ErrorClass {
    if e.error_code == "REQUEST_LIMIT_EXCEEDED" {
        // §2.8: the same code covers the daily allocation and the long-request concurrency cap;
        // only the message tells them apart.
        let hint = if e.message.contains("ConcurrentPerOrgLongTxn") {
            CONCURRENCY_LIMIT_BACKOFF
        } else {
            DAILY_LIMIT_BACKOFF
        };
        return ErrorClass::RateLimited {
            retry_after: Some(hint),
        };
    }
    class_for(status, &e.error_code)
}

/// The class for a code (when known) or else the HTTP status (§1.2, §2.9).
fn class_for(status: u16, code: &str) -> ErrorClass {
    match code {
        // §2.1: the session expired; refresh or re-mint, then retry once.
        "INVALID_SESSION_ID" => return ErrorClass::Auth,
        "REQUEST_LIMIT_EXCEEDED" => {
            return ErrorClass::RateLimited {
                retry_after: Some(DAILY_LIMIT_BACKOFF),
            };
        }
        // §2.9 marks UNABLE_TO_LOCK_ROW "retry"; QUERY_TIMEOUT is load-dependent (§2.8);
        // SERVER_UNAVAILABLE is the body of a 503.
        "UNABLE_TO_LOCK_ROW" | "QUERY_TIMEOUT" | "SERVER_UNAVAILABLE" => {
            return ErrorClass::Transient { retry_after: None };
        }
        // §1.2 permanent list, plus the other §2.9 codes that retrying cannot fix.
        "INVALID_FIELD"
        | "REQUIRED_FIELD_MISSING"
        | "DUPLICATE_VALUE"
        | "DUPLICATES_DETECTED"
        | "FIELD_CUSTOM_VALIDATION_EXCEPTION"
        | "NOT_FOUND"
        | "MALFORMED_QUERY"
        | "INVALID_TYPE"
        | "INVALID_ID_FIELD"
        | "MALFORMED_ID"
        | "STRING_TOO_LONG"
        | "INVALID_EMAIL_ADDRESS"
        | "ENTITY_IS_DELETED"
        | "INVALID_CROSS_REFERENCE_KEY"
        | "INSUFFICIENT_ACCESS_OR_READONLY"
        | "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY"
        | "EXCEEDED_ID_LIMIT"
        | "API_DISABLED_FOR_ORG" => return ErrorClass::Permanent,
        _ => {}
    }
    match status {
        0 | 408 | 500 | 502 | 503 | 504 => ErrorClass::Transient { retry_after: None },
        401 => ErrorClass::Auth,
        // Salesforce does not document 429 (§2.8); treat one as a rate limit if a proxy sends it.
        429 => ErrorClass::RateLimited { retry_after: None },
        // Other 403s are "not allowed" (§2.9); a per-record error inside a 200 with an unknown
        // code is also permanent, and so is every other 3xx/4xx.
        _ => ErrorClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn expired_session_asks_for_a_token_refresh() {
        let e = classify(
            401,
            br#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
        );
        assert_eq!(e.class, ErrorClass::Auth);
        assert_eq!(e.code, "INVALID_SESSION_ID");
        assert_eq!(e.vendor, "salesforce");
    }

    #[test]
    fn daily_limit_403_backs_off_for_minutes_without_retry_after() {
        let e = classify(
            403,
            br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        );
        assert_eq!(
            e.class,
            ErrorClass::RateLimited {
                retry_after: Some(DAILY_LIMIT_BACKOFF)
            }
        );
        assert!(e.is_retriable());
    }

    #[test]
    fn concurrent_long_request_limit_backs_off_for_seconds() {
        let e = classify(
            403,
            br#"[{"message":"ConcurrentPerOrgLongTxn Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        );
        assert_eq!(
            e.class,
            ErrorClass::RateLimited {
                retry_after: Some(CONCURRENCY_LIMIT_BACKOFF)
            }
        );
    }

    #[test]
    fn other_403_is_permanent() {
        let e = classify(
            403,
            br#"[{"message":"insufficient access rights on object id","errorCode":"INSUFFICIENT_ACCESS_OR_READONLY"}]"#,
        );
        assert_eq!(e.class, ErrorClass::Permanent);
    }

    #[test]
    fn row_lock_and_query_timeout_and_server_errors_are_transient() {
        for (status, body) in [
            (
                400,
                &br#"[{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW"}]"#[..],
            ),
            (
                400,
                br#"[{"message":"Your query request was running for too long.","errorCode":"QUERY_TIMEOUT"}]"#,
            ),
            (503, b"<html>Service Unavailable</html>"),
            (500, b""),
            (0, b""),
        ] {
            let e = classify(status, body);
            assert_eq!(e.class, ErrorClass::Transient { retry_after: None }, "{status}");
        }
    }

    #[test]
    fn missing_last_name_on_a_lead_is_permanent_and_names_the_field() {
        let e = classify(
            400,
            br#"[{"message":"Required fields are missing: [LastName]","errorCode":"REQUIRED_FIELD_MISSING","fields":["LastName"]}]"#,
        );
        assert_eq!(e.class, ErrorClass::Permanent);
        assert_eq!(e.code, "REQUIRED_FIELD_MISSING");
        assert!(e.message.contains("LastName"));
    }

    #[test]
    fn permanent_client_errors_go_to_the_dead_letter() {
        for (status, code) in [
            (400, "INVALID_FIELD"),
            (400, "DUPLICATE_VALUE"),
            (400, "FIELD_CUSTOM_VALIDATION_EXCEPTION"),
            (404, "NOT_FOUND"),
        ] {
            let body = format!(r#"[{{"message":"x","errorCode":"{code}"}}]"#);
            let e = classify(status, body.as_bytes());
            assert_eq!(e.class, ErrorClass::Permanent, "{code}");
            assert!(!e.is_retriable());
        }
    }

    #[test]
    fn vin_matching_two_vehicles_on_upsert_is_permanent() {
        let e = classify(
            300,
            br#"["/services/data/v66.0/sobjects/Vehicle__c/a0X5e000001AbCdEAF","/services/data/v66.0/sobjects/Vehicle__c/a0X5e000001AbCeEAF"]"#,
        );
        assert_eq!(e.class, ErrorClass::Permanent);
        assert_eq!(e.message, "the external id matched 2 records");
    }

    #[test]
    fn collection_item_errors_use_status_code_key() {
        let errs = parse_error_body(
            br#"[{"statusCode":"DUPLICATE_VALUE","message":"duplicate value found: VIN__c","fields":["VIN__c"]}]"#,
        );
        assert_eq!(errs[0].error_code, "DUPLICATE_VALUE");
        assert_eq!(errs[0].fields, vec!["VIN__c".to_string()]);
        assert_eq!(
            classify_record_errors(200, &errs).class,
            ErrorClass::Permanent
        );
    }

    #[test]
    fn a_permanent_error_outweighs_a_retriable_one() {
        let errs = parse_error_body(
            br#"[{"statusCode":"UNABLE_TO_LOCK_ROW","message":"lock"},{"statusCode":"STRING_TOO_LONG","message":"Phone: data value too large","fields":["Phone"]}]"#,
        );
        let e = classify_record_errors(200, &errs);
        assert_eq!(e.class, ErrorClass::Permanent);
        assert_eq!(e.code, "STRING_TOO_LONG");
    }

    #[test]
    fn unreadable_body_is_classified_by_status_without_echoing_it() {
        let e = classify(400, b"{\"Email\":\"pat@example.com\"");
        assert_eq!(e.class, ErrorClass::Permanent);
        assert_eq!(e.code, "HTTP_400");
        assert!(!e.message.contains("pat@example.com"));
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(status in 0u16..600, body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let e = classify(status, &body);
            prop_assert_eq!(e.vendor, VENDOR);
        }

        #[test]
        fn json_shaped_bodies_never_panic(
            status in 0u16..600,
            code in "[A-Z_]{0,30}",
            msg in ".{0,40}",
            wrap in 0u8..4,
        ) {
            let item = serde_json::json!({"message": msg, "errorCode": code, "fields": [1, "x", null]});
            let body = match wrap {
                0 => serde_json::json!([item]),
                1 => item,
                2 => serde_json::json!([null, 3, {"errorCode": 7}]),
                _ => serde_json::json!([]),
            };
            let _ = classify(status, body.to_string().as_bytes());
        }
    }
}
