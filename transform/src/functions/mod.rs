//! # The transformation function library
//!
//! Pure functions a field mapping chains on a vendor value: no I/O, no Kafka, no clock, no
//! panics on any input. Each takes a `serde_json::Value` and returns the canonical value or a
//! [`FunctionError`] with a stable [`code`](FunctionError::code) and a sentence a dealership
//! admin can act on.
//!
//! | function | accepts | returns |
//! |---|---|---|
//! | [`format_date`] | RFC 3339 / ISO 8601 with or without offset, epoch milliseconds (number or numeric string, as HubSpot sends), `MM/DD/YYYY` and `M/D/YYYY`, STAR `xs:dateTime`, Salesforce `…T12:00:00.000+0000` | epoch milliseconds (i64) |
//! | [`format_currency`] | `"$1,234.50"`, `"1234.5"`, `1234.5`, `"(1,234.50)"`, `"-12.00"`, `"USD 1,234.50"`, `"1234.50 USD"`, or minor units already | `{"amount_minor": i64, "currency": "USD"}` |
//! | [`format_phone`] | any national or international notation libphonenumber reads, with a default region | E.164 string |
//! | [`normalize_text`] | strings (numbers and booleans as their text) | string: NFC, trimmed, spaces collapsed, case changed |
//! | [`lookup_value`] | strings, numbers, booleans (as their text) | the table's value, or the default |
//! | [`concatenate`] | a list of strings, numbers, booleans, nulls | one string |
//! | [`split`] | a string | an array of parts, or one part |
//!
//! Absent values: a JSON `null` passes through every function but [`concatenate`] (where it
//! counts as empty) as `null`, and so does a blank string for the format functions (date,
//! currency, phone) — CRMs send `""` for "not filled in". Whether a field must be present is
//! the validation rules' business, not the functions'.

mod currency;
mod date;
mod lookup;
mod phone;
mod strings;
mod text;

pub use currency::{CurrencyOptions, format_currency, minor_digits};
pub use date::{DateInput, DateOptions, format_date};
pub use lookup::lookup_value;
pub use phone::format_phone;
pub use strings::{concatenate, split};
pub use text::{Case, TextOptions, normalize_text};

use serde_json::Value;

/// Why a function refused a value. [`code`](Self::code) is stable (dead letters and the
/// console key on it); the message is for a person and quotes the value (shortened).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FunctionError {
    #[error("{value:?} is not a date the hub can read; expected {expected}")]
    DateInvalid { value: String, expected: String },
    #[error("{value:?} is not an amount of money the hub can read: {reason}")]
    CurrencyInvalid { value: String, reason: String },
    #[error("{code:?} is not an ISO 4217 currency code (three letters, like USD)")]
    CurrencyCodeInvalid { code: String },
    #[error("{value:?} is not a valid phone number (read with {region} as the default country)")]
    PhoneInvalid { value: String, region: String },
    #[error("{region:?} is not a country code the phone library knows (use two letters, like US)")]
    PhoneRegionInvalid { region: String },
    #[error("{value:?} is not in the lookup table and the table has no default value")]
    LookupUnmapped { value: String },
    #[error("{function} expects text, a number or true/false, but got {found}")]
    ValueNotText {
        function: &'static str,
        found: &'static str,
    },
    #[error("the separator for split must not be empty")]
    SeparatorEmpty,
}

impl FunctionError {
    /// The stable code for this kind of failure.
    pub fn code(&self) -> &'static str {
        match self {
            Self::DateInvalid { .. } => "date_invalid",
            Self::CurrencyInvalid { .. } => "currency_invalid",
            Self::CurrencyCodeInvalid { .. } => "currency_code_invalid",
            Self::PhoneInvalid { .. } => "phone_invalid",
            Self::PhoneRegionInvalid { .. } => "phone_region_invalid",
            Self::LookupUnmapped { .. } => "lookup_unmapped",
            Self::ValueNotText { .. } => "value_not_text",
            Self::SeparatorEmpty => "separator_empty",
        }
    }
}

/// The value as it appears in a message: at most 64 characters, so a dead letter stays
/// readable when a vendor puts a paragraph into a date field.
fn shown(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// A scalar's text: strings as they are, numbers and booleans as JSON writes them.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What kind of JSON value this is, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The text of a value for functions that take text, or the error naming the function.
fn text_of(function: &'static str, v: &Value) -> Result<String, FunctionError> {
    scalar_text(v).ok_or(FunctionError::ValueNotText {
        function,
        found: kind(v),
    })
}

/// Null or a blank string: "no value", passed through by the format functions.
fn is_absent(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// Strategy for "any JSON value", shared by the no-panic property tests.
#[cfg(test)]
pub(crate) fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::from),
        "[0-9$,.() +-]{0,20}".prop_map(Value::from),
        "[0-9/:T.Z+-]{0,30}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_shortened_in_messages() {
        let e = FunctionError::LookupUnmapped {
            value: shown(&"x".repeat(500)),
        };
        assert!(e.to_string().len() < 150);
        assert_eq!(e.code(), "lookup_unmapped");
    }
}
