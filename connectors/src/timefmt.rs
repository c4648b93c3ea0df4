//! Vendor time formats → milliseconds since the Unix epoch.
//!
//! Seen in the wild: RFC 3339 (`2024-05-01T12:00:00Z`, `...+02:00`), Salesforce's
//! `2024-05-01T12:00:00.000+0000` (offset without a colon; REST API Developer Guide, "Valid
//! Date and DateTime Formats"), HubSpot's epoch milliseconds as a number or a string, and a
//! bare date.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// Parses a vendor timestamp; `None` when it is none of the known shapes.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().ok()?;
        // Ten digits or fewer is seconds (until the year 2286).
        return Some(if s.len() <= 10 {
            n.checked_mul(1000)?
        } else {
            n
        });
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.timestamp_millis());
        }
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

/// The same for a JSON value: numbers are epoch milliseconds (or seconds if small).
pub fn json_timestamp_ms(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => {
            let n = n.as_i64()?;
            Some(if n.abs() < 100_000_000_000 {
                n.checked_mul(1000)?
            } else {
                n
            })
        }
        serde_json::Value::String(s) => parse_timestamp_ms(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_formats_parse_to_the_same_instant() {
        let want = 1_714_564_800_000; // 2024-05-01T12:00:00Z
        for s in [
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00.000Z",
            "2024-05-01T12:00:00.000+0000",
            "2024-05-01T14:00:00+02:00",
            "2024-05-01T12:00:00",
            "1714564800000",
            "1714564800",
        ] {
            assert_eq!(parse_timestamp_ms(s), Some(want), "{s}");
        }
        assert_eq!(
            json_timestamp_ms(&serde_json::json!(1714564800000i64)),
            Some(want)
        );
        assert_eq!(parse_timestamp_ms("2024-05-01"), Some(1_714_521_600_000));
        assert_eq!(parse_timestamp_ms("yesterday"), None);
        assert_eq!(parse_timestamp_ms("99999999999999999999999"), None);
    }
}
