//! `normalize_text`: the same name written the same way, whatever system typed it.

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use super::{FunctionError, text_of};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Case {
    #[default]
    Keep,
    Lower,
    Upper,
    /// Each word (split at whitespace and `-`) gets a capital first letter and the rest in
    /// lower case: `MARY-ANN SMITH` → `Mary-Ann Smith`. After an apostrophe that follows a
    /// single letter the next letter is capitalised too (`o'brien` → `O'Brien`, `d'angelo` →
    /// `D'Angelo`), but not otherwise (`don't` → `Don't`). No surname rules: `MCDONALD`
    /// becomes `Mcdonald`, `van der berg` becomes `Van Der Berg` — leave the case alone
    /// (`Keep`) for fields where that matters.
    Title,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextOptions {
    /// Remove leading and trailing whitespace (Unicode's definition, so NBSP too).
    pub trim: bool,
    /// Turn every run of whitespace (tabs, newlines, NBSP) into one space.
    pub collapse_spaces: bool,
    pub case: Case,
    /// Unicode NFC, so `é` typed as `e` + combining accent equals the precomposed `é`.
    pub nfc: bool,
}

impl Default for TextOptions {
    fn default() -> Self {
        Self {
            trim: true,
            collapse_spaces: true,
            case: Case::Keep,
            nfc: true,
        }
    }
}

/// Applies, in this order: NFC, collapse, trim, case. Numbers and booleans are normalised
/// as their text; null passes through; lists and objects are `value_not_text`.
pub fn normalize_text(value: &Value, opts: &TextOptions) -> Result<Value, FunctionError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let mut s = text_of("normalize_text", value)?;
    if opts.nfc {
        s = s.nfc().collect();
    }
    if opts.collapse_spaces {
        let mut out = String::with_capacity(s.len());
        let mut in_space = false;
        for c in s.chars() {
            if c.is_whitespace() {
                if !in_space {
                    out.push(' ');
                }
                in_space = true;
            } else {
                out.push(c);
                in_space = false;
            }
        }
        s = out;
    }
    if opts.trim {
        s = s.trim().to_owned();
    }
    s = match opts.case {
        Case::Keep => s,
        Case::Lower => s.to_lowercase(),
        Case::Upper => s.to_uppercase(),
        Case::Title => title_case(&s),
    };
    Ok(Value::String(s))
}

fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // Letters seen in the current word, and whether the next letter starts a word part.
    let mut letters_in_word = 0usize;
    let mut capitalise_next = true;
    for c in s.chars() {
        if c.is_whitespace() || c == '-' {
            out.push(c);
            letters_in_word = 0;
            capitalise_next = true;
        } else if c == '\'' || c == '’' {
            out.push(c);
            capitalise_next = letters_in_word == 1;
        } else if c.is_alphabetic() {
            if capitalise_next {
                out.extend(c.to_uppercase());
            } else {
                out.extend(c.to_lowercase());
            }
            letters_in_word += 1;
            capitalise_next = false;
        } else {
            out.push(c);
            capitalise_next = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn with_case(case: Case) -> TextOptions {
        TextOptions {
            case,
            ..TextOptions::default()
        }
    }

    fn norm(s: &str, opts: &TextOptions) -> String {
        normalize_text(&json!(s), opts)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn dms_padding_and_tabs_are_cleaned() {
        assert_eq!(
            norm("  1420  Main\tSt.\u{a0} Suite 4 ", &TextOptions::default()),
            "1420 Main St. Suite 4"
        );
        let keep_spaces = TextOptions {
            trim: false,
            collapse_spaces: false,
            ..TextOptions::default()
        };
        assert_eq!(norm("  a  b ", &keep_spaces), "  a  b ");
    }

    #[test]
    fn nfc_makes_decomposed_accents_equal_precomposed() {
        let decomposed = "Jose\u{301} Pen\u{303}a";
        assert_eq!(norm(decomposed, &TextOptions::default()), "José Peña");
        let raw = TextOptions {
            nfc: false,
            ..TextOptions::default()
        };
        assert_eq!(norm(decomposed, &raw), decomposed);
    }

    #[test]
    fn title_case_handles_irish_and_hyphenated_names() {
        let t = with_case(Case::Title);
        assert_eq!(norm("o'brien", &t), "O'Brien");
        assert_eq!(norm("MARY-ANN SMITH", &t), "Mary-Ann Smith");
        assert_eq!(norm("MCDONALD", &t), "Mcdonald");
        assert_eq!(norm("don't call", &t), "Don't Call");
        assert_eq!(norm("d’angelo ford", &t), "D’Angelo Ford");
        assert_eq!(norm("élodie ÉCLAIR", &t), "Élodie Éclair");
    }

    #[test]
    fn lower_and_upper_case() {
        assert_eq!(
            norm("Pat.Lee@Example.COM", &with_case(Case::Lower)),
            "pat.lee@example.com"
        );
        assert_eq!(norm("tx", &with_case(Case::Upper)), "TX");
    }

    #[test]
    fn scalars_are_text_and_structures_are_refused() {
        let o = TextOptions::default();
        assert_eq!(normalize_text(&json!(78701), &o), Ok(json!("78701")));
        assert_eq!(normalize_text(&json!(null), &o), Ok(Value::Null));
        assert_eq!(
            normalize_text(&json!(["a"]), &o).unwrap_err().code(),
            "value_not_text"
        );
    }

    proptest! {
        #[test]
        fn normalize_text_never_panics_and_is_idempotent(s in "\\PC{0,40}", case in 0u8..4) {
            let case = [Case::Keep, Case::Lower, Case::Upper, Case::Title][usize::from(case)];
            let o = with_case(case);
            let once = normalize_text(&json!(s), &o).unwrap();
            let twice = normalize_text(&once, &o).unwrap();
            if case == Case::Keep {
                prop_assert_eq!(once, twice);
            }
        }

        #[test]
        fn normalize_text_never_panics_on_any_value(v in super::super::arb_json()) {
            let _ = normalize_text(&v, &with_case(Case::Title));
        }
    }
}
