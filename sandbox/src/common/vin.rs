//! VINs with a valid check digit (vendor-apis.md §11.3: transliterate, weight, sum mod 11,
//! 10 → `X`). Written here rather than borrowed from hub-transform: a simulator must not know
//! the canonical model.

use super::rng::SplitMix64;

/// Characters a VIN may hold: digits and letters except I, O, Q.
const VIN_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ";
const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
/// Model-year codes (position 10), 2010 = `A` … 2030 = `Y`, skipping I, O, Q, U, Z.
const YEAR_CODES: &[u8] = b"ABCDEFGHJKLMNPRSTVWXY";

fn transliterate(c: u8) -> Option<u32> {
    Some(match c {
        b'0'..=b'9' => u32::from(c - b'0'),
        b'A' | b'J' => 1,
        b'B' | b'K' | b'S' => 2,
        b'C' | b'L' | b'T' => 3,
        b'D' | b'M' | b'U' => 4,
        b'E' | b'N' | b'V' => 5,
        b'F' | b'W' => 6,
        b'G' | b'P' | b'X' => 7,
        b'H' | b'Y' | b'Z' => 8,
        b'R' => 9,
        _ => return None,
    })
}

/// The check digit (position 9) a 17-character VIN must carry, or `None` if a character is
/// not allowed in a VIN.
pub fn check_digit(vin: &str) -> Option<char> {
    let b = vin.as_bytes();
    if b.len() != 17 {
        return None;
    }
    let mut sum = 0;
    for (i, c) in b.iter().enumerate() {
        sum += transliterate(c.to_ascii_uppercase())? * WEIGHTS[i];
    }
    Some(match sum % 11 {
        10 => 'X',
        d => char::from(b'0' + d as u8),
    })
}

/// True for 17 allowed characters with the right check digit.
pub fn is_valid(vin: &str) -> bool {
    vin.len() == 17 && check_digit(vin) == vin.chars().nth(8).map(|c| c.to_ascii_uppercase())
}

/// A valid VIN for `wmi` and model year `year` (2010–2030), drawn from `rng`.
pub fn generate(rng: &mut SplitMix64, wmi: &str, year: u16) -> String {
    let mut v: Vec<u8> = wmi.bytes().take(3).collect();
    while v.len() < 3 {
        v.push(b'1');
    }
    for _ in 0..5 {
        v.push(*rng.pick(VIN_CHARS));
    }
    v.push(b'0'); // check digit placeholder
    let y = usize::from(year.clamp(2010, 2030) - 2010);
    v.push(YEAR_CODES[y]);
    v.push(*rng.pick(b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789"));
    for _ in 0..6 {
        v.push(b'0' + rng.below(10) as u8);
    }
    let mut s = String::from_utf8(v).unwrap_or_default();
    if let Some(d) = check_digit(&s) {
        s.replace_range(8..9, &d.to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vins_check_out() {
        // The classic example VIN (check digit X) and a Honda Accord VIN used in vendor docs.
        assert_eq!(check_digit("1M8GDM9AXKP042788"), Some('X'));
        assert!(is_valid("1M8GDM9AXKP042788"));
        assert!(is_valid("1HGCM82633A004352"));
        assert!(!is_valid("1HGCM82643A004352"));
        assert!(!is_valid("1HGCM8263"));
        assert!(!is_valid("1HGCM82633A00435Q"));
    }

    #[test]
    fn generated_vins_are_valid() {
        let mut rng = SplitMix64::new(1);
        for i in 0..500 {
            let v = generate(&mut rng, "1HG", 2010 + (i % 21) as u16);
            assert!(is_valid(&v), "{v}");
            assert!(v.starts_with("1HG"));
        }
    }
}
