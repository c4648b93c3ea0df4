//! `concatenate` and `split`: joining first and last name, splitting a full name or a
//! street line.

use serde_json::Value;

use super::{FunctionError, text_of};

/// Joins the values' text with `separator`. Null counts as empty; with `skip_empty`, empty
/// and whitespace-only parts are left out (so `["Pat", null, "Lee"]` joined by a space is
/// `"Pat Lee"`, not `"Pat  Lee"`). Numbers and booleans join as their text; lists and objects
/// are `value_not_text`.
pub fn concatenate(
    values: &[Value],
    separator: &str,
    skip_empty: bool,
) -> Result<Value, FunctionError> {
    let mut parts = Vec::with_capacity(values.len());
    for v in values {
        let text = if v.is_null() {
            String::new()
        } else {
            text_of("concatenate", v)?
        };
        if skip_empty && text.trim().is_empty() {
            continue;
        }
        parts.push(text);
    }
    Ok(Value::String(parts.join(separator)))
}

/// Splits the value's text at every `separator`. With `index`, returns that part (null when
/// there are fewer parts — a one-word name has no last name; `required` decides if that is
/// an error); without, the array of all parts. Parts are not trimmed: chain `normalize_text`
/// for `"Lee, Pat"`. Null passes through; an empty separator is `separator_empty`.
pub fn split(value: &Value, separator: &str, index: Option<usize>) -> Result<Value, FunctionError> {
    if separator.is_empty() {
        return Err(FunctionError::SeparatorEmpty);
    }
    if value.is_null() {
        return Ok(Value::Null);
    }
    let text = text_of("split", value)?;
    let mut parts = text.split(separator);
    Ok(match index {
        Some(i) => parts
            .nth(i)
            .map_or(Value::Null, |p| Value::String(p.to_owned())),
        None => Value::Array(parts.map(|p| Value::String(p.to_owned())).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn names_join_without_double_spaces_when_skipping_empty() {
        let parts = [json!("Pat"), json!(null), json!(""), json!("Lee")];
        assert_eq!(concatenate(&parts, " ", true), Ok(json!("Pat Lee")));
        assert_eq!(concatenate(&parts, "|", false), Ok(json!("Pat|||Lee")));
        assert_eq!(
            concatenate(&[json!(2021), json!("Ford"), json!("F-150")], " ", true),
            Ok(json!("2021 Ford F-150"))
        );
        assert_eq!(concatenate(&[], " ", true), Ok(json!("")));
        assert_eq!(
            concatenate(&[json!({"a": 1})], " ", true)
                .unwrap_err()
                .code(),
            "value_not_text"
        );
    }

    #[test]
    fn split_returns_all_parts_or_one() {
        assert_eq!(
            split(&json!("Lee, Pat"), ", ", None),
            Ok(json!(["Lee", "Pat"]))
        );
        assert_eq!(split(&json!("Pat Q Lee"), " ", Some(2)), Ok(json!("Lee")));
        assert_eq!(split(&json!("Cher"), " ", Some(1)), Ok(Value::Null));
        assert_eq!(split(&json!("Cher"), " ", None), Ok(json!(["Cher"])));
        assert_eq!(split(&json!(null), " ", None), Ok(Value::Null));
        assert_eq!(
            split(&json!("a"), "", None).unwrap_err().code(),
            "separator_empty"
        );
    }

    proptest! {
        #[test]
        fn split_then_concatenate_gives_the_input_back(s in "\\PC{0,40}", sep in "[ ,;|]{1,2}") {
            let Value::Array(parts) = split(&json!(s), &sep, None).unwrap() else {
                panic!("split without index returns an array");
            };
            prop_assert_eq!(concatenate(&parts, &sep, false), Ok(json!(s)));
        }

        #[test]
        fn split_and_concatenate_never_panic(v in super::super::arb_json(), sep in "\\PC{0,3}", i in proptest::option::of(0usize..5)) {
            let _ = split(&v, &sep, i);
            if let Value::Array(items) = &v {
                let _ = concatenate(items, &sep, true);
            }
            let _ = concatenate(std::slice::from_ref(&v), &sep, false);
        }
    }
}
