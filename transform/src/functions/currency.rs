//! `format_currency`: an amount as a vendor writes it → integer minor units and a currency.
//!
//! The string path is integer arithmetic on the digits; a JSON float goes through its
//! shortest decimal text (`1234.5` → `"1234.5"`), so no binary rounding ever reaches a price.
//! Read: an optional ISO code before or after (`USD 1,234.50`, `1234.50 usd`), `$`, a minus
//! sign or accounting parentheses, thousands commas in groups of three, a `.` decimal point.
//! Not read, on purpose: European notation (`1.234,50 €`) and other currency symbols — a
//! comma decimal or `€`/`£`/`¥` is refused rather than guessed at, since `1,5` could be 1.5
//! or 15. More decimals than the currency has are refused unless they are zeros
//! (`12.340` USD is fine, `12.345` is not): the hub does not round money.

use serde_json::{Value, json};

use super::{FunctionError, is_absent, shown};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyOptions {
    /// ISO 4217 code used when the value does not name one. Default `USD`.
    pub currency: String,
    /// The value is already in minor units (cents), e.g. a DMS that stores `123450`.
    pub input_is_minor: bool,
}

impl Default for CurrencyOptions {
    fn default() -> Self {
        Self {
            currency: "USD".to_owned(),
            input_is_minor: false,
        }
    }
}

/// Digits after the decimal point in `code` (ISO 4217): 2 unless listed here.
pub fn minor_digits(code: &str) -> u32 {
    match code {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Reads an amount into `{"amount_minor": i64, "currency": "USD"}`. A code written in the
/// value wins over `opts.currency`. Null and blank strings pass through as null.
pub fn format_currency(value: &Value, opts: &CurrencyOptions) -> Result<Value, FunctionError> {
    if is_absent(value) {
        return Ok(Value::Null);
    }
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(invalid(&other.to_string(), "it is not text or a number"));
        }
    };
    let (code, amount) = split_code(text.trim());
    let currency = match code {
        Some(c) => c,
        None => opts.currency.trim().to_ascii_uppercase(),
    };
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(FunctionError::CurrencyCodeInvalid {
            code: shown(&currency),
        });
    }
    let digits = if opts.input_is_minor {
        0
    } else {
        minor_digits(&currency)
    };
    let amount_minor = parse_amount(amount, digits, &currency).map_err(|r| invalid(&text, &r))?;
    Ok(json!({ "amount_minor": amount_minor, "currency": currency }))
}

fn invalid(value: &str, reason: &str) -> FunctionError {
    FunctionError::CurrencyInvalid {
        value: shown(value),
        reason: reason.to_owned(),
    }
}

/// Splits a leading or trailing three-letter code off (`USD 12`, `12 usd`, `USD12`).
fn split_code(s: &str) -> (Option<String>, &str) {
    let is_code = |c: &str| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic());
    if let Some(head) = s.get(..3).filter(|h| is_code(h)) {
        return (Some(head.to_ascii_uppercase()), s[3..].trim_start());
    }
    if let Some(tail) = s
        .len()
        .checked_sub(3)
        .and_then(|i| s.get(i..))
        .filter(|t| is_code(t))
    {
        return (Some(tail.to_ascii_uppercase()), s[..s.len() - 3].trim_end());
    }
    (None, s)
}

/// `-$1,234.50`, `$-1,234.50`, `(1,234.50)`, `1234.5` → minor units with `digits` decimals.
fn parse_amount(s: &str, digits: u32, currency: &str) -> Result<i64, String> {
    let mut s = s.trim();
    let mut negative = false;
    if let Some(inner) = s.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        negative = true;
        s = inner.trim();
    }
    for _ in 0..2 {
        // Sign and `$` come in either order: `-$12`, `$-12`.
        if let Some(rest) = s.strip_prefix('-') {
            if negative {
                return Err("it has two minus signs".into());
            }
            negative = true;
            s = rest.trim_start();
        }
        if let Some(rest) = s.strip_prefix('$') {
            s = rest.trim_start();
        }
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err("it has no digits".into());
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(
            "only digits may follow the decimal point (European 1.234,50 is not read)".into(),
        );
    }
    let whole = ungroup(whole)
        .ok_or_else(|| "use digits with optional thousands commas, like 1,234.50".to_owned())?;
    let (kept, dropped) = frac.split_at(frac.len().min(digits as usize));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(format!(
            "{currency} has {digits} decimal places and the hub does not round money"
        ));
    }
    let too_large = || "the amount is too large".to_owned();
    let mut minor: i64 = 0;
    for b in whole.bytes().chain(kept.bytes()) {
        minor = minor
            .checked_mul(10)
            .and_then(|m| m.checked_add(i64::from(b - b'0')))
            .ok_or_else(too_large)?;
    }
    for _ in kept.len()..digits as usize {
        minor = minor.checked_mul(10).ok_or_else(too_large)?;
    }
    Ok(if negative { -minor } else { minor })
}

/// The whole part without its thousands commas, when they are where commas belong.
fn ungroup(whole: &str) -> Option<String> {
    if !whole.bytes().all(|b| b.is_ascii_digit() || b == b',') {
        return None;
    }
    let mut groups = whole.split(',');
    let first = groups.next()?;
    if whole.contains(',') && !(1..=3).contains(&first.len()) {
        return None;
    }
    let mut out = first.to_owned();
    for g in groups {
        if g.len() != 3 {
            return None;
        }
        out.push_str(g);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd(v: Value) -> Result<Value, FunctionError> {
        format_currency(&v, &CurrencyOptions::default())
    }

    fn minor(v: Value) -> Option<i64> {
        usd(v).ok()?.get("amount_minor")?.as_i64()
    }

    #[test]
    fn dealer_price_notations_read_to_cents() {
        for (v, want) in [
            (json!("$1,234.50"), 123_450),
            (json!("1234.5"), 123_450),
            (json!(1234.5), 123_450),
            (json!(1234), 123_400),
            (json!("(1,234.50)"), -123_450),
            (json!("-12.00"), -1_200),
            (json!("-$12"), -1_200),
            (json!("$-12"), -1_200),
            (json!("USD 1,234.50"), 123_450),
            (json!("1234.50 usd"), 123_450),
            (json!(".99"), 99),
            (json!("$34,995"), 3_499_500),
            (json!("12.340"), 1_234),
        ] {
            assert_eq!(minor(v.clone()), Some(want), "{v}");
        }
        assert_eq!(
            usd(json!("$1,234.50")),
            Ok(json!({"amount_minor": 123450, "currency": "USD"}))
        );
    }

    #[test]
    fn currencies_with_zero_and_three_minor_digits() {
        let jpy = CurrencyOptions {
            currency: "JPY".into(),
            input_is_minor: false,
        };
        assert_eq!(
            format_currency(&json!("1,500,000"), &jpy),
            Ok(json!({"amount_minor": 1_500_000, "currency": "JPY"}))
        );
        assert!(format_currency(&json!("1500.5"), &jpy).is_err());
        assert_eq!(
            usd(json!("KWD 12.345")),
            Ok(json!({"amount_minor": 12_345, "currency": "KWD"}))
        );
        assert_eq!(
            usd(json!("BHD 1.5")),
            Ok(json!({"amount_minor": 1_500, "currency": "BHD"}))
        );
    }

    #[test]
    fn minor_unit_input_is_taken_as_is() {
        let cents = CurrencyOptions {
            currency: "usd".into(),
            input_is_minor: true,
        };
        assert_eq!(
            format_currency(&json!(123450), &cents),
            Ok(json!({"amount_minor": 123450, "currency": "USD"}))
        );
        assert_eq!(
            format_currency(&json!("123450.00"), &cents),
            Ok(json!({"amount_minor": 123450, "currency": "USD"}))
        );
        assert!(format_currency(&json!("1234.5"), &cents).is_err());
    }

    #[test]
    fn ambiguous_or_broken_amounts_are_refused() {
        for v in [
            json!("1.234,50 €"),
            json!("1,5"),
            json!("12.345"),
            json!("$"),
            json!("--12"),
            json!("12-"),
            json!("call for price"),
            json!("99999999999999999999"),
            json!(1e300),
            json!(true),
            json!(["12"]),
        ] {
            let e = usd(v.clone()).unwrap_err();
            assert_eq!(e.code(), "currency_invalid", "{v}: {e}");
        }
        let e = format_currency(
            &json!("12"),
            &CurrencyOptions {
                currency: "dollars".into(),
                input_is_minor: false,
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "currency_code_invalid");
        assert_eq!(usd(json!("")), Ok(Value::Null));
        assert_eq!(usd(json!(null)), Ok(Value::Null));
    }

    proptest! {
        #[test]
        fn format_currency_never_panics(v in super::super::arb_json(), minor in any::<bool>(), code in "\\PC{0,5}") {
            let _ = format_currency(&v, &CurrencyOptions { currency: code, input_is_minor: minor });
            let _ = format_currency(&v, &CurrencyOptions::default());
        }

        #[test]
        fn written_cents_read_back_exactly(cents in -10_000_000_000i64..10_000_000_000) {
            let text = format!("{}{}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() / 100, cents.abs() % 100);
            prop_assert_eq!(minor(json!(text)), Some(cents));
        }
    }
}
