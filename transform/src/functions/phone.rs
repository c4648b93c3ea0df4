//! `format_phone`: a phone number as a CRM or DMS stores it → E.164, through the
//! libphonenumber port (`phonenumber`), never hand-written rules.

use phonenumber::{Mode, country};
use serde_json::Value;

use super::{FunctionError, is_absent, scalar_text, shown};

/// Reads `value` with `default_region` (ISO 3166 alpha-2, e.g. `"US"`) as the country of
/// numbers written without `+`, and returns the E.164 string. A number libphonenumber
/// parses but does not consider valid for its region (e.g. `555-0143` without an area code,
/// or an unassigned area code) is `phone_invalid`. Numbers as JSON integers (`5125550143`)
/// are read as their digits. Null and blank strings pass through as null.
pub fn format_phone(value: &Value, default_region: &str) -> Result<Value, FunctionError> {
    if is_absent(value) {
        return Ok(Value::Null);
    }
    let region: country::Id = default_region
        .trim()
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| FunctionError::PhoneRegionInvalid {
            region: shown(default_region),
        })?;
    let text = match value {
        Value::Bool(_) => None,
        other => scalar_text(other),
    };
    let invalid = || FunctionError::PhoneInvalid {
        value: shown(&text.clone().unwrap_or_else(|| value.to_string())),
        region: default_region.trim().to_ascii_uppercase(),
    };
    let Some(s) = text.as_deref() else {
        return Err(invalid());
    };
    // libphonenumber itself refuses inputs over 250 characters; this keeps the parser off
    // pathological lengths before that.
    if s.len() > 250 {
        return Err(invalid());
    }
    let parsed = phonenumber::parse(Some(region), s).map_err(|_| invalid())?;
    if !phonenumber::is_valid(&parsed) {
        return Err(invalid());
    }
    Ok(Value::String(parsed.format().mode(Mode::E164).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn us_notations_become_e164() {
        for v in [
            json!("(512) 555-0143"),
            json!("512-555-0143"),
            json!("512.555.0143"),
            json!("+1 512 555 0143"),
            json!("1-512-555-0143"),
            json!("5125550143"),
            json!(5125550143u64),
        ] {
            assert_eq!(format_phone(&v, "US"), Ok(json!("+15125550143")), "{v}");
        }
    }

    #[test]
    fn default_region_applies_only_to_national_numbers() {
        assert_eq!(
            format_phone(&json!("020 7946 0958"), "GB"),
            Ok(json!("+442079460958"))
        );
        assert_eq!(
            format_phone(&json!("+44 20 7946 0958"), "us"),
            Ok(json!("+442079460958"))
        );
        // Canada shares +1 with the US.
        assert_eq!(
            format_phone(&json!("(416) 555-0199"), "CA"),
            Ok(json!("+14165550199"))
        );
    }

    #[test]
    fn invalid_numbers_and_regions_are_refused() {
        for v in [
            json!("555-0143"),
            json!("call me maybe"),
            json!("(000) 000-0000"),
            json!(true),
        ] {
            let e = format_phone(&v, "US").unwrap_err();
            assert_eq!(e.code(), "phone_invalid", "{v}: {e}");
        }
        let e = format_phone(&json!("5125550143"), "USA").unwrap_err();
        assert_eq!(e.code(), "phone_region_invalid");
        assert_eq!(format_phone(&json!(""), "US"), Ok(Value::Null));
    }

    proptest! {
        #[test]
        fn format_phone_never_panics(v in super::super::arb_json(), digits in "[0-9 ()+.-]{0,30}", region in "\\PC{0,3}") {
            let _ = format_phone(&v, "US");
            let _ = format_phone(&json!(digits), "US");
            let _ = format_phone(&json!(digits), &region);
        }

        #[test]
        fn e164_output_reads_back_to_itself(area in 201u32..990, line in 0u32..10_000) {
            if let Ok(Value::String(e164)) = format_phone(&json!(format!("({area}) 555-{line:04}")), "US") {
                prop_assert_eq!(format_phone(&json!(e164.clone()), "US"), Ok(json!(e164)));
            }
        }
    }
}
