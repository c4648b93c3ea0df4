//! Named formats canonical fields are checked against, and phone normalisation.

use std::sync::OnceLock;

use regex::Regex;

/// ISO 3779 / 49 CFR 565: 17 characters from `0-9A-Z` without I, O, Q, whose ninth is the
/// check digit computed from the others (`X` stands for 10).
pub fn vin_is_valid(vin: &str) -> bool {
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    let bytes = vin.as_bytes();
    if bytes.len() != 17 {
        return false;
    }
    let mut sum = 0u32;
    for (i, &b) in bytes.iter().enumerate() {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A' | b'J' => 1,
            b'B' | b'K' | b'S' => 2,
            b'C' | b'L' | b'T' => 3,
            b'D' | b'M' | b'U' => 4,
            b'E' | b'N' | b'V' => 5,
            b'F' | b'W' => 6,
            b'G' | b'P' | b'X' => 7,
            b'H' | b'Y' => 8,
            b'R' | b'Z' => 9,
            _ => return false, // I, O, Q, lowercase, anything else
        };
        sum += v * WEIGHTS[i];
    }
    let check = match sum % 11 {
        10 => b'X',
        n => b'0' + n as u8,
    };
    bytes[8] == check
}

/// The check digit a VIN's other 16 characters call for (used by generators and tests).
pub fn vin_with_check_digit(vin17: &str) -> Option<String> {
    if vin17.len() != 17 || !vin17.is_ascii() {
        return None;
    }
    for c in ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'X'] {
        let candidate = format!("{}{}{}", &vin17[..8], c, &vin17[9..]);
        if vin_is_valid(&candidate) {
            return Some(candidate);
        }
    }
    None
}

/// A deterministic, valid VIN for demos, benchmarks and tests: the first eight characters
/// given (manufacturer and vehicle descriptor), the check digit computed, and `n` written in
/// the eight serial positions — distinct `n` give distinct VINs.
pub fn sample_vin(first8: &str, n: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ";
    let mut serial = [b'0'; 8];
    let mut rest = n;
    for slot in serial.iter_mut().rev() {
        *slot = ALPHABET[(rest % 33) as usize];
        rest /= 33;
    }
    let body = format!("{first8:0<8.8}0{}", String::from_utf8_lossy(&serial));
    vin_with_check_digit(&body).unwrap_or(body)
}

fn email_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$").expect("valid regex"))
}

pub fn email_is_valid(s: &str) -> bool {
    s.len() <= 254 && email_re().is_match(s)
}

pub fn e164_is_valid(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

pub fn us_zip_is_valid(s: &str) -> bool {
    let b = s.as_bytes();
    (b.len() == 5 && b.iter().all(u8::is_ascii_digit))
        || (b.len() == 10 && b[5] == b'-' && b[..5].iter().chain(&b[6..]).all(u8::is_ascii_digit))
}

const US_STATES: [&str; 56] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC", "PR", "GU", "VI", "AS", "MP",
];

pub fn us_state_is_valid(s: &str) -> bool {
    US_STATES.contains(&s)
}

/// A phone number in E.164, read with the US as the default region, through the
/// libphonenumber port (`phonenumber`). `None` when it is not a valid number.
pub fn phone_to_e164(s: &str) -> Option<String> {
    let parsed = phonenumber::parse(Some(phonenumber::country::Id::US), s).ok()?;
    if !phonenumber::is_valid(&parsed) {
        return None;
    }
    Some(parsed.format().mode(phonenumber::Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn real_vins_pass_and_altered_ones_fail() {
        for vin in ["1HGCM82633A004352", "1M8GDM9AXKP042788"] {
            assert!(vin_is_valid(vin), "{vin}");
        }
        assert!(!vin_is_valid("1HGCM82643A004352"), "wrong check digit");
        assert!(!vin_is_valid("1HGCM82633A00435"), "16 characters");
        assert!(!vin_is_valid("1HGCM82633A00435I"), "letter I");
        assert!(!vin_is_valid("1hgcm82633a004352"), "lowercase");
    }

    #[test]
    fn formats_accept_and_refuse() {
        assert!(email_is_valid("pat.lee+cars@example.com"));
        assert!(!email_is_valid("pat.lee@"));
        assert!(!email_is_valid("no at sign.com"));
        assert!(e164_is_valid("+15125550143"));
        assert!(!e164_is_valid("5125550143"));
        assert!(
            us_zip_is_valid("78701") && us_zip_is_valid("78701-1234") && !us_zip_is_valid("7870")
        );
        assert!(us_state_is_valid("TX") && !us_state_is_valid("XX"));
        assert_eq!(
            phone_to_e164("(512) 555-0143").as_deref(),
            Some("+15125550143")
        );
        assert_eq!(
            phone_to_e164("+44 20 7946 0958").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(phone_to_e164("call me maybe"), None);
    }

    #[test]
    fn sample_vins_are_valid_and_distinct() {
        let vins: std::collections::HashSet<String> =
            (0..5000).map(|n| sample_vin("1HGCM826", n)).collect();
        assert_eq!(vins.len(), 5000);
        assert!(vins.iter().all(|v| vin_is_valid(v)));
    }

    proptest! {
        #[test]
        fn any_seventeen_chars_get_exactly_one_valid_check_digit(body in "[A-HJ-NPR-Z0-9]{17}") {
            let vin = vin_with_check_digit(&body).unwrap();
            prop_assert!(vin_is_valid(&vin));
            prop_assert_eq!(&vin[..8], &body[..8]);
        }

        #[test]
        fn format_checks_never_panic(s in "\\PC{0,40}") {
            let _ = (vin_is_valid(&s), email_is_valid(&s), e164_is_valid(&s), us_zip_is_valid(&s), phone_to_e164(&s));
        }
    }
}
