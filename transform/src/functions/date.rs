//! `format_date`: a vendor's date or timestamp → milliseconds since the Unix epoch.
//!
//! Times that carry an offset mean what they say. Times without one are wall-clock times in
//! the source system's zone (`source_tz`, UTC when unset) — a dealer's DMS export says "9:00"
//! meaning 9:00 at the store. Dates alone are local midnight.
//!
//! DST: an ambiguous local time (the repeated hour in autumn) is read as its earliest
//! instant, per chrono's `LocalResult::earliest()` — the first, daylight-time occurrence. A
//! local time that does not exist (the skipped hour in spring; `earliest()` has nothing to
//! offer) is read with the offset in force just before the gap, so it lands as far after the
//! transition as it was written after it: 02:30 on a Chicago spring-forward day is 03:30 CDT.
//! That is what java.time and Python do, and it keeps a record rather than dead-lettering it.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone};
use chrono_tz::Tz;
use serde_json::Value;

use super::{FunctionError, is_absent, shown};

/// Which shape the input is in. `Auto` tries, in this order: epoch milliseconds (a JSON
/// integer, or a string of digits with an optional leading `-`), ISO 8601 without offset
/// (date-time or date alone, in `source_tz`), `MM/DD/YYYY`, then anything with an offset
/// (RFC 3339, STAR, Salesforce — through `hub_connectors::timefmt`). The shapes do not
/// overlap, so the order only matters for speed and for which message an error quotes.
/// (ISO 8601's basic format `20240501` is not read as a date: all digits means milliseconds.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DateInput {
    #[default]
    Auto,
    /// ISO 8601 / RFC 3339: `2024-05-01T12:00:00Z`, `…+02:00`, `2024-05-01T12:00:00`,
    /// `2024-05-01 12:00:00`, `2024-05-01`.
    Iso8601,
    /// Milliseconds since the epoch, as a JSON integer or a string of digits (HubSpot).
    /// Always milliseconds: unlike `timefmt`, ten digits are not taken to be seconds.
    EpochMillis,
    /// US dealer exports: `05/01/2024`, `5/1/2024`, at local midnight.
    UsDate,
    /// STAR `xs:dateTime`: `2024-05-01T12:00:00`, `2024-05-01T12:00:00.5-05:00`, `…Z`.
    StarDateTime,
    /// Salesforce REST: `2024-05-01T12:00:00.000+0000`.
    Salesforce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DateOptions {
    pub input: DateInput,
    /// The zone of times written without an offset; UTC when `None`.
    pub source_tz: Option<Tz>,
}

const NAIVE_DATETIME: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"];

/// Reads `value` as `opts.input` says and returns epoch milliseconds as a JSON integer.
/// Null and blank strings pass through as null.
pub fn format_date(value: &Value, opts: &DateOptions) -> Result<Value, FunctionError> {
    if is_absent(value) {
        return Ok(Value::Null);
    }
    let tz = opts.source_tz.unwrap_or(Tz::UTC);
    let parsed = match value {
        Value::Number(n) => match opts.input {
            DateInput::Auto | DateInput::EpochMillis => n.as_i64().filter(|&ms| in_range(ms)),
            _ => None,
        },
        Value::String(s) => {
            let s = s.trim();
            match opts.input {
                DateInput::Auto => epoch_millis(s)
                    .or_else(|| naive_iso(s, tz))
                    .or_else(|| us_date(s, tz))
                    .or_else(|| with_offset(s)),
                DateInput::Iso8601 => naive_iso(s, tz).or_else(|| with_offset(s)),
                DateInput::EpochMillis => epoch_millis(s),
                DateInput::UsDate => us_date(s, tz),
                DateInput::StarDateTime => star(s, tz),
                DateInput::Salesforce => salesforce(s),
            }
        }
        _ => None,
    };
    parsed.map(Value::from).ok_or_else(|| {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        FunctionError::DateInvalid {
            value: shown(&text),
            expected: expected(opts.input).to_owned(),
        }
    })
}

fn expected(input: DateInput) -> &'static str {
    match input {
        DateInput::Auto => {
            "a date like 2024-05-01, 2024-05-01T12:00:00Z, 05/01/2024 or epoch milliseconds"
        }
        DateInput::Iso8601 => "an ISO 8601 date like 2024-05-01 or 2024-05-01T12:00:00-05:00",
        DateInput::EpochMillis => "milliseconds since 1970 like 1714564800000",
        DateInput::UsDate => "a US date like 05/01/2024",
        DateInput::StarDateTime => "a STAR date-time like 2024-05-01T12:00:00-05:00",
        DateInput::Salesforce => "a Salesforce date-time like 2024-05-01T12:00:00.000+0000",
    }
}

/// Years 0001–9999 in milliseconds: beyond that no vendor means a real date, and chrono
/// could not format it back.
fn in_range(ms: i64) -> bool {
    (-62_135_596_800_000..=253_402_300_799_999).contains(&ms)
}

fn epoch_millis(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&ms| in_range(ms))
}

fn naive_iso(s: &str, tz: Tz) -> Option<i64> {
    if let Some(t) = NAIVE_DATETIME
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    {
        return local_ms(t, tz);
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    local_ms(d.and_hms_opt(0, 0, 0)?, tz)
}

fn us_date(s: &str, tz: Tz) -> Option<i64> {
    // chrono's %m and %d accept one or two digits, so this covers M/D/YYYY too; the
    // four-digit check stops "5/1/24" being read as the year 24.
    let year = s.rsplit('/').next()?;
    if year.len() != 4 {
        return None;
    }
    let d = NaiveDate::parse_from_str(s, "%m/%d/%Y").ok()?;
    local_ms(d.and_hms_opt(0, 0, 0)?, tz)
}

/// Anything with an offset; `timefmt` already knows RFC 3339 and Salesforce's `+0000`.
fn with_offset(s: &str) -> Option<i64> {
    if naive_iso(s, Tz::UTC).is_some() || epoch_millis(s).is_some() {
        // timefmt would read these as UTC (or seconds); the caller chose otherwise.
        return None;
    }
    hub_connectors::timefmt::parse_timestamp_ms(s).filter(|&ms| in_range(ms))
}

/// `xs:dateTime`: `YYYY-MM-DDThh:mm:ss(.s+)?` then `Z`, `±hh:mm` or nothing (local time).
fn star(s: &str, tz: Tz) -> Option<i64> {
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return local_ms(t, tz);
    }
    let t = DateTime::parse_from_rfc3339(s).ok()?;
    // RFC 3339 also allows a space or a lowercase `t`; xs:dateTime does not.
    (s.as_bytes().get(10) == Some(&b'T')).then(|| t.timestamp_millis())
}

/// Salesforce always writes milliseconds and a colon-less offset.
fn salesforce(s: &str) -> Option<i64> {
    let t = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.3f%z").ok()?;
    let offset = s.get(s.len().checked_sub(5)?..)?;
    let colonless =
        offset.starts_with(['+', '-']) && offset[1..].bytes().all(|b| b.is_ascii_digit());
    colonless.then(|| t.timestamp_millis())
}

/// A wall-clock time in `tz` → epoch ms, with the DST rules in the module doc.
fn local_ms(t: NaiveDateTime, tz: Tz) -> Option<i64> {
    let ms = match tz.from_local_datetime(&t).earliest() {
        Some(dt) => dt.timestamp_millis(),
        None => {
            // In a gap: use the offset in force a day earlier (no zone has two transitions
            // within a day) — i.e. before the clocks jumped.
            let before = tz
                .offset_from_utc_datetime(&t.checked_sub_signed(TimeDelta::days(1))?)
                .fix()
                .local_minus_utc();
            t.and_utc().timestamp_millis() - i64::from(before) * 1000
        }
    };
    in_range(ms).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// 2024-05-01T12:00:00Z
    const NOON_UTC: i64 = 1_714_564_800_000;

    fn auto(v: Value) -> Result<Value, FunctionError> {
        format_date(&v, &DateOptions::default())
    }

    fn in_tz(v: Value, input: DateInput, tz: Tz) -> Result<Value, FunctionError> {
        format_date(
            &v,
            &DateOptions {
                input,
                source_tz: Some(tz),
            },
        )
    }

    #[test]
    fn vendor_timestamps_for_the_same_instant_agree() {
        for v in [
            json!("2024-05-01T12:00:00Z"),
            json!("2024-05-01T07:00:00-05:00"),
            json!("2024-05-01T12:00:00.000+0000"), // Salesforce
            json!("2024-05-01T12:00:00"),          // STAR, no offset, UTC by default
            json!("2024-05-01 12:00:00"),
            json!(1714564800000i64), // HubSpot, as a number
            json!("1714564800000"),  // HubSpot, as a string
        ] {
            assert_eq!(auto(v.clone()), Ok(json!(NOON_UTC)), "{v}");
        }
    }

    #[test]
    fn star_fractional_seconds_with_offset() {
        let v = json!("2024-05-01T07:00:00.5-05:00");
        assert_eq!(auto(v.clone()), Ok(json!(NOON_UTC + 500)));
        let star = DateOptions {
            input: DateInput::StarDateTime,
            source_tz: None,
        };
        assert_eq!(format_date(&v, &star), Ok(json!(NOON_UTC + 500)));
        assert!(format_date(&json!("2024-05-01 12:00:00Z"), &star).is_err());
    }

    #[test]
    fn times_without_offset_are_read_in_the_source_zone() {
        let chicago = chrono_tz::America::Chicago; // CDT, UTC-5, in May
        assert_eq!(
            in_tz(json!("2024-05-01T07:00:00"), DateInput::Auto, chicago),
            Ok(json!(NOON_UTC))
        );
        // An explicit offset wins over the source zone.
        assert_eq!(
            in_tz(json!("2024-05-01T12:00:00Z"), DateInput::Auto, chicago),
            Ok(json!(NOON_UTC))
        );
    }

    #[test]
    fn us_dealer_dates_are_local_midnight() {
        let chicago = chrono_tz::America::Chicago;
        let midnight_cdt = NOON_UTC - 7 * 3_600_000; // 2024-05-01T05:00:00Z
        for s in ["05/01/2024", "5/1/2024"] {
            assert_eq!(
                in_tz(json!(s), DateInput::Auto, chicago),
                Ok(json!(midnight_cdt))
            );
            assert_eq!(
                in_tz(json!(s), DateInput::UsDate, chicago),
                Ok(json!(midnight_cdt))
            );
        }
        assert_eq!(
            auto(json!("2024-05-01")),
            Ok(json!(NOON_UTC - 12 * 3_600_000))
        );
        assert!(auto(json!("5/1/24")).is_err(), "two-digit year");
        assert!(auto(json!("13/01/2024")).is_err(), "no month 13");
    }

    #[test]
    fn chicago_spring_forward_gap_moves_forward_and_fall_back_takes_the_earlier() {
        let chicago = chrono_tz::America::Chicago;
        // 2024-03-10: 02:00 CST jumps to 03:00 CDT; 02:30 does not exist → 03:30 CDT.
        let gap = in_tz(json!("2024-03-10T02:30:00"), DateInput::Auto, chicago).unwrap();
        let three_thirty_cdt = in_tz(json!("2024-03-10T03:30:00"), DateInput::Auto, chicago);
        assert_eq!(Ok(gap.clone()), three_thirty_cdt);
        assert_eq!(gap, json!(1_710_059_400_000i64)); // 08:30Z
        // 2024-11-03: 01:30 happens twice; the first (CDT, UTC-5) is chosen.
        assert_eq!(
            in_tz(json!("2024-11-03T01:30:00"), DateInput::Auto, chicago),
            Ok(json!(1_730_615_400_000i64)) // 06:30Z
        );
    }

    #[test]
    fn explicit_input_refuses_other_shapes() {
        let sf = DateOptions {
            input: DateInput::Salesforce,
            source_tz: None,
        };
        assert_eq!(
            format_date(&json!("2024-05-01T12:00:00.000+0000"), &sf),
            Ok(json!(NOON_UTC))
        );
        assert!(format_date(&json!("2024-05-01T12:00:00Z"), &sf).is_err());
        let ms = DateOptions {
            input: DateInput::EpochMillis,
            source_tz: None,
        };
        assert!(format_date(&json!("2024-05-01"), &ms).is_err());
        let us = DateOptions {
            input: DateInput::UsDate,
            source_tz: None,
        };
        assert!(format_date(&json!(1714564800000i64), &us).is_err());
    }

    #[test]
    fn blanks_pass_through_and_garbage_is_date_invalid() {
        assert_eq!(auto(json!(null)), Ok(Value::Null));
        assert_eq!(auto(json!("  ")), Ok(Value::Null));
        let e = auto(json!("next Tuesday")).unwrap_err();
        assert_eq!(e.code(), "date_invalid");
        assert!(e.to_string().contains("next Tuesday"), "{e}");
        assert!(auto(json!(true)).is_err());
        assert!(auto(json!(1.5)).is_err());
        assert!(auto(json!("99999999999999999999")).is_err());
        assert!(auto(json!(i64::MAX)).is_err());
    }

    proptest! {
        #[test]
        fn format_date_never_panics(v in super::super::arb_json(), tz_east in any::<bool>()) {
            let tz = if tz_east { chrono_tz::Asia::Kolkata } else { chrono_tz::America::Chicago };
            for input in [DateInput::Auto, DateInput::Iso8601, DateInput::EpochMillis,
                          DateInput::UsDate, DateInput::StarDateTime, DateInput::Salesforce] {
                let _ = format_date(&v, &DateOptions { input, source_tz: Some(tz) });
            }
        }

        #[test]
        fn epoch_millis_round_trip(ms in -62_135_596_800_000i64..=253_402_300_799_999) {
            prop_assert_eq!(auto(json!(ms)), Ok(json!(ms)));
            prop_assert_eq!(auto(json!(ms.to_string())), Ok(json!(ms)));
        }
    }
}
