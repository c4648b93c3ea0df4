//! `lookup_value`: a vendor's code → the canonical one, through a table the mapping carries
//! (e.g. a CRM's lead statuses → the hub's).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{FunctionError, shown, text_of};

/// Looks `value` up in `table`. The key is the value's text (numbers and booleans as JSON
/// writes them, so HubSpot's numeric ids work), trimmed. With `case_insensitive`, an exact
/// match still wins; otherwise the first key (in the table's sorted order) equal ignoring
/// case. Unmapped values get `default`, or `lookup_unmapped` when there is none. Null passes
/// through as null.
pub fn lookup_value(
    value: &Value,
    table: &BTreeMap<String, Value>,
    default: Option<Value>,
    case_insensitive: bool,
) -> Result<Value, FunctionError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let text = text_of("lookup_value", value)?;
    let key = text.trim();
    let found = table.get(key).or_else(|| {
        if !case_insensitive {
            return None;
        }
        let lower = key.to_lowercase();
        table
            .iter()
            .find(|(k, _)| k.trim().to_lowercase() == lower)
            .map(|(_, v)| v)
    });
    match (found, default) {
        (Some(v), _) => Ok(v.clone()),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(FunctionError::LookupUnmapped { value: shown(key) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn lead_statuses() -> BTreeMap<String, Value> {
        [
            ("Open - Not Contacted", "new"),
            ("Working - Contacted", "contacted"),
            ("Closed - Converted", "sold"),
            ("Closed - Not Converted", "lost"),
            ("IN_PROGRESS", "contacted"), // HubSpot hs_lead_status
            ("UNQUALIFIED", "lost"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect()
    }

    #[test]
    fn crm_lead_statuses_map_to_canonical() {
        let t = lead_statuses();
        assert_eq!(
            lookup_value(&json!("Closed - Converted"), &t, None, false),
            Ok(json!("sold"))
        );
        assert_eq!(
            lookup_value(&json!(" IN_PROGRESS "), &t, None, false),
            Ok(json!("contacted"))
        );
    }

    #[test]
    fn case_insensitive_lookup_matches_any_case() {
        let t = lead_statuses();
        assert_eq!(
            lookup_value(&json!("in_progress"), &t, None, true),
            Ok(json!("contacted"))
        );
        assert!(lookup_value(&json!("in_progress"), &t, None, false).is_err());
    }

    #[test]
    fn unmapped_values_get_the_default_or_an_error() {
        let t = lead_statuses();
        assert_eq!(
            lookup_value(&json!("Nurture"), &t, Some(json!("unknown")), false),
            Ok(json!("unknown"))
        );
        let e = lookup_value(&json!("Nurture"), &t, None, false).unwrap_err();
        assert_eq!(e.code(), "lookup_unmapped");
        assert!(e.to_string().contains("Nurture"));
        assert_eq!(lookup_value(&json!(null), &t, None, false), Ok(Value::Null));
        assert_eq!(
            lookup_value(&json!({"a": 1}), &t, None, false)
                .unwrap_err()
                .code(),
            "value_not_text"
        );
    }

    #[test]
    fn numeric_codes_look_up_by_their_text() {
        let t: BTreeMap<String, Value> = [("3".to_owned(), json!("sold"))].into();
        assert_eq!(lookup_value(&json!(3), &t, None, false), Ok(json!("sold")));
    }

    proptest! {
        #[test]
        fn lookup_value_never_panics(v in super::super::arb_json(), ci in any::<bool>()) {
            let _ = lookup_value(&v, &lead_statuses(), None, ci);
        }
    }
}
