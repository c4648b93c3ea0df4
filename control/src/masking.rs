//! Masking of personal data before it is kept where it should not be in clear: the audit
//! log's before/after snapshots (and anything else that records a customer's or user's data
//! for people other than the tenant who owns it).
//!
//! Two nets, both always applied:
//! - **by key**: a value under a sensitive key ([`SENSITIVE_KEYS`], matched on the key
//!   lower-cased with `_`, `-`, `.` and spaces removed) is masked whole — an e-mail address
//!   keeps its first letter and its domain (`j***@example.com`), anything else becomes
//!   `***`, and objects and arrays under such a key are masked leaf by leaf;
//! - **by shape**: every other string is scanned, and e-mail addresses and phone numbers in it
//!   are masked where they stand (`"call j***@example.com or ***"`), so a note or a free-text
//!   field under an innocent key lets neither through.
//!
//! Masking is idempotent, so masking twice (a caller's, then the store's) changes nothing.

use serde_json::Value;

/// What a masked value (other than an e-mail address) becomes.
pub const MASK: &str = "***";

/// Keys whose values are personal data, in normalised form (lower case, no `_`, `-`, `.` or
/// spaces): names, e-mail addresses, phone numbers, postal addresses, identity and credit
/// details. A key matches if it equals one of these or, for the entries in
/// [`SENSITIVE_KEY_PARTS`], contains it.
pub const SENSITIVE_KEYS: &[&str] = &[
    "name",
    "firstname",
    "lastname",
    "middlename",
    "fullname",
    "givenname",
    "familyname",
    "surname",
    "displayname",
    "contactname",
    "customername",
    "email",
    "phone",
    "mobile",
    "cell",
    "fax",
    "telephone",
    "address",
    "street",
    "city",
    "zip",
    "zipcode",
    "postalcode",
    "postcode",
    "ssn",
    "taxid",
    "dateofbirth",
    "dob",
    "birthdate",
    "driverslicense",
    "licensenumber",
    "creditcard",
    "cardnumber",
    "cvv",
    "cvc",
    "iban",
    "accountnumber",
    "routingnumber",
    "creditscore",
];

/// Fragments that make a key sensitive wherever they appear in it (`home_phone`,
/// `billing_address_line1`, `contact_email`, `credit_card_last4`).
pub const SENSITIVE_KEY_PARTS: &[&str] = &[
    "email",
    "phone",
    "mobile",
    "address",
    "street",
    "firstname",
    "lastname",
    "fullname",
    "creditcard",
    "cardnumber",
    "iban",
    "accountnumber",
    "ssn",
];

/// Whether a JSON key names personal data.
pub fn is_sensitive_key(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    SENSITIVE_KEYS.contains(&k.as_str()) || SENSITIVE_KEY_PARTS.iter().any(|p| k.contains(p))
}

/// A copy of `value` with personal data masked (see the module docs).
pub fn mask_personal_data(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let masked = if is_sensitive_key(k) {
                        mask_whole(v)
                    } else {
                        mask_personal_data(v)
                    };
                    (k.clone(), masked)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_personal_data).collect()),
        Value::String(s) => Value::String(mask_text(s)),
        other => other.clone(),
    }
}

/// Masks every leaf of a value that sits under a sensitive key. `null` stays `null` (that a
/// field was empty is not personal data, and an audit reader needs to see it was cleared).
fn mask_whole(value: &Value) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), mask_whole(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_whole).collect()),
        Value::String(s) if looks_like_email(s.trim()) => Value::String(mask_email(s.trim())),
        _ => Value::String(MASK.to_string()),
    }
}

/// `john.doe@example.com` → `j***@example.com`. Already-masked addresses stay as they are.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}{MASK}@{domain}")
        }
        None => MASK.to_string(),
    }
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        None => false,
    }
}

fn is_email_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-' | '\'' | '*' | '@')
}

fn is_phone_char(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')' | '.' | '/')
}

/// Masks e-mail addresses and phone numbers inside free text, leaving the rest.
pub fn mask_text(text: &str) -> String {
    mask_phones(&mask_emails(text))
}

fn mask_emails(text: &str) -> String {
    if !text.contains('@') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        // Trailing dots belong to the sentence, not the address.
        let trimmed = word.trim_end_matches('.');
        let tail = &word[trimmed.len()..];
        if looks_like_email(trimmed) && !trimmed.starts_with('@') {
            out.push_str(&mask_email(trimmed));
            out.push_str(tail);
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if is_email_char(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// A run of digits and phone punctuation holding at least 7 digits is a phone number — unless
/// it is an ISO date (`2026-01-31`), which would otherwise qualify.
fn mask_phones(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts_run = chars[i].is_ascii_digit() || (chars[i] == '+' || chars[i] == '(');
        if !starts_run {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len() && is_phone_char(chars[j]) {
            j += 1;
        }
        // Hand trailing separators (a space before the next word) back to the text.
        let mut end = j;
        while end > i && !chars[end - 1].is_ascii_digit() {
            end -= 1;
        }
        // A run glued to letters (`abc1234567`, hex ids) is an identifier, not a number.
        let glued = (i > 0 && chars[i - 1].is_alphanumeric())
            || (j < chars.len() && chars[j].is_alphanumeric() && end == j);
        let run: String = chars[i..end].iter().collect();
        let digits = run.chars().filter(char::is_ascii_digit).count();
        if end > i && digits >= 7 && !glued && !is_iso_date(&run) {
            out.push_str(MASK);
            i = end;
        } else {
            let stop = end.max(i + 1);
            out.extend(&chars[i..stop]);
            i = stop;
        }
    }
    out
}

fn is_iso_date(run: &str) -> bool {
    let b = run.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sensitive_keys_are_masked_whole() {
        let v = json!({
            "email": "John.Doe@example.com",
            "first_name": "John",
            "LastName": "Doe",
            "home_phone": "+1 (555) 010-9999",
            "billing_address": {"line1": "1 Main St", "zip": "90210"},
            "credit_card_number": 4111111111111111_i64,
            "emails": ["a@b.example", "not an address"],
            "middle_name": null,
            "stage": "qualified",
        });
        let m = mask_personal_data(&v);
        assert_eq!(
            m,
            json!({
                "email": "J***@example.com",
                "first_name": "***",
                "LastName": "***",
                "home_phone": "***",
                "billing_address": {"line1": "***", "zip": "***"},
                "credit_card_number": "***",
                "emails": ["a***@b.example", "***"],
                "middle_name": null,
                "stage": "qualified",
            })
        );
        assert_eq!(mask_personal_data(&m), m, "masking is idempotent");
    }

    #[test]
    fn emails_and_phones_in_free_text_are_masked() {
        let v = json!({
            "notes": "Call jane.roe@dealer.example or 555-010-1234 (cell +44 20 7946 0958).",
            "list": [{"comment": "reach me: 5550101234"}],
        });
        let m = mask_personal_data(&v).to_string();
        for leak in [
            "jane.roe@dealer.example",
            "555-010-1234",
            "5550101234",
            "7946",
        ] {
            assert!(!m.contains(leak), "{leak} leaked: {m}");
        }
        assert!(m.contains("j***@dealer.example"), "{m}");
        assert!(m.contains("Call "), "{m}");
    }

    #[test]
    fn ordinary_values_pass_unchanged() {
        let v = json!({
            "frequency": "hourly",
            "updated": "2026-01-31T10:00:00Z",
            "batch_size": 200,
            "id": "0035e00000AbCdE1234567",
            "vin": "1HGCM82633A004352",
            "version": "1.2.3",
        });
        assert_eq!(mask_personal_data(&v), v);
    }
}
