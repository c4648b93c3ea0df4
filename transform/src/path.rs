//! Paths into a payload, JSON or XML: JSON pointers with two additions for XML's
//! "one or many" elements and its attributes.
//!
//! - `/a/b` descends into objects; `~1` and `~0` escape `/` and `~` as in RFC 6901.
//! - A numeric segment indexes a list; on a single element (an XML element that happens
//!   not to repeat), `0` is that element itself.
//! - A name on a list descends into its first element (the first of repeated elements).
//! - `name[key=value]` keeps the first of the `name` elements whose `key` (an attribute
//!   `@part`, or a child element) has that text: `/contact/name[@part=first]`.
//! - A path that ends at an element with attributes and text (`{"@part": "first", "#text":
//!   "Pat"}`) reads its text.

use std::borrow::Cow;

use serde_json::Value;

/// The value at `path` in `root`, or `None` when the path leads nowhere.
pub fn resolve<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let Some(rest) = path.strip_prefix('/') else {
        return path.is_empty().then_some(root);
    };
    let mut cur = root;
    for raw in rest.split('/') {
        let (name, filter) = split_filter(raw);
        cur = step(cur, &unescape(name))?;
        if let Some((key, want)) = filter {
            cur = select(cur, &unescape(key), want)?;
        }
    }
    Some(text_of_element(cur))
}

fn split_filter(seg: &str) -> (&str, Option<(&str, &str)>) {
    if let Some(open) = seg.find('[')
        && let Some(inner) = seg[open + 1..].strip_suffix(']')
        && let Some((k, v)) = inner.split_once('=')
    {
        return (&seg[..open], Some((k, v)));
    }
    (seg, None)
}

fn unescape(s: &str) -> Cow<'_, str> {
    if s.contains('~') {
        Cow::Owned(s.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(s)
    }
}

fn index(seg: &str) -> Option<usize> {
    // RFC 6901: no leading zeros, no sign.
    if seg.is_empty() || (seg.len() > 1 && seg.starts_with('0')) {
        return None;
    }
    seg.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| seg.parse().ok())
        .flatten()
}

fn step<'a>(cur: &'a Value, seg: &str) -> Option<&'a Value> {
    match cur {
        Value::Object(m) => m.get(seg).or_else(|| (seg == "0").then_some(cur)),
        Value::Array(items) => match index(seg) {
            Some(i) => items.get(i),
            None => match items.first()? {
                // A list of lists is not XML's doing; do not guess further.
                Value::Array(_) => None,
                first => step(first, seg),
            },
        },
        _ => (seg == "0").then_some(cur),
    }
}

fn select<'a>(cur: &'a Value, key: &str, want: &str) -> Option<&'a Value> {
    let matches = |v: &&Value| {
        v.as_object()
            .and_then(|m| m.get(key))
            .is_some_and(|k| match text_of_element(k) {
                Value::String(s) => s == want,
                Value::Number(n) => n.to_string() == want,
                Value::Bool(b) => b.to_string() == want,
                _ => false,
            })
    };
    match cur {
        Value::Array(items) => items.iter().find(matches),
        single => Some(single).filter(matches),
    }
}

/// `{"@part": "first", "#text": "Pat"}` → `"Pat"`: an element with attributes and text,
/// read as a value, is its text.
fn text_of_element(v: &Value) -> &Value {
    if let Value::Object(m) = v
        && let Some(text) = m.get("#text")
        && m.keys().all(|k| k == "#text" || k.starts_with('@'))
    {
        return text;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_pointers_still_read_json() {
        let v = json!({"a": {"b": [10, 20]}, "x/y": 1, "m~n": 2, "": 3});
        assert_eq!(resolve(&v, "/a/b/1"), Some(&json!(20)));
        assert_eq!(resolve(&v, "/x~1y"), Some(&json!(1)));
        assert_eq!(resolve(&v, "/m~0n"), Some(&json!(2)));
        assert_eq!(resolve(&v, "/a/c"), None);
        assert_eq!(resolve(&v, "/a/b/01"), Some(&json!(10)).filter(|_| false));
        assert_eq!(resolve(&v, ""), Some(&v));
    }

    #[test]
    fn xml_trees_read_by_first_index_and_filter() {
        let v =
            crate::xml::parse(include_str!("../tests/fixtures/adf_lead_two_vehicles.xml")).unwrap();
        let r = |p: &str| resolve(&v, p).cloned();
        assert_eq!(r("/adf/prospect/vehicle/@interest"), Some(json!("buy")));
        assert_eq!(
            r("/adf/prospect/vehicle/1/@interest"),
            Some(json!("trade-in"))
        );
        assert_eq!(
            r("/adf/prospect/vehicle[@interest=trade-in]/make"),
            Some(json!("Ford"))
        );
        let contact = "/adf/prospect/customer/contact";
        assert_eq!(
            r(&format!("{contact}/name[@part=last]")),
            Some(json!("Lee"))
        );
        assert_eq!(r(&format!("{contact}/name/0")), Some(json!("Pat")));
        assert_eq!(
            r(&format!("{contact}/email")),
            Some(json!("pat@example.com"))
        );
        assert_eq!(
            r(&format!("{contact}/email/0")),
            Some(json!("pat@example.com"))
        );
        assert_eq!(r(&format!("{contact}/name[@part=middle]")), None);
        assert_eq!(
            r("/adf/prospect/vehicle[make=Ford]/year"),
            Some(json!("2010"))
        );
        assert_eq!(
            r("/adf/prospect/requestdate/0"),
            Some(json!("2024-05-01T10:00:00-05:00"))
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_paths_never_panic(v in crate::functions::arb_json(), p in "(/[a-z0-9@#~\\[\\]=]{0,6}){0,6}") {
            let _ = resolve(&v, &p);
        }
    }
}
