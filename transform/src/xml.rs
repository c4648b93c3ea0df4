//! XML payloads (ADF leads, STAR BODs) read into the same tree as JSON ones, so one path
//! syntax serves both.
//!
//! The tree: the document is an object with one key, the root element's name. An element
//! is a string (its trimmed text) when it has neither attributes nor children; otherwise an
//! object keyed by child name, where a repeated child becomes an array in document order,
//! each attribute is `@name` and the element's own text (trimmed, when not blank) is
//! `#text`. Names are local names: namespace prefixes and `xmlns` declarations are dropped,
//! since STAR documents differ only in how they declare the same vocabulary.
//!
//! ```xml
//! <adf><prospect status="new"><vehicle interest="buy"><year>2003</year></vehicle>
//!   <customer><contact><name part="first">Pat</name><name part="last">Lee</name></contact></customer>
//! </prospect></adf>
//! ```
//! reads as `{"adf": {"prospect": {"@status": "new", "vehicle": {"@interest": "buy", "year":
//! "2003"}, "customer": {"contact": {"name": [{"@part": "first", "#text": "Pat"}, {"@part":
//! "last", "#text": "Lee"}]}}}}}`.
//!
//! Safety: quick-xml never expands entities other than the five predefined ones and
//! character references; a `DOCTYPE` is skipped and a reference to any other entity is an
//! error, so neither external entities nor "billion laughs" can happen. The reader is a
//! loop with an explicit stack (no recursion), nesting is bounded by [`MAX_DEPTH`], the
//! number of elements and attributes by [`MAX_NODES`] and the input by [`MAX_BYTES`].

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

/// Deepest element nesting read (ADF is 6 deep, STAR BODs about 12).
pub const MAX_DEPTH: usize = 64;
/// Most elements plus attributes in one document.
pub const MAX_NODES: usize = 100_000;
/// Largest document read, in bytes.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;

/// Why a payload is not XML the hub reads. The message names the byte offset, never the
/// content (a lead is personal data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct XmlError(String);

/// Reads an XML document into a JSON tree (see the module docs).
pub fn parse(text: &str) -> Result<Value, XmlError> {
    if text.len() > MAX_BYTES {
        return Err(XmlError(format!(
            "the document is larger than {} MiB",
            MAX_BYTES / (1024 * 1024)
        )));
    }
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<(String, Value)> = None;
    let mut nodes = 0usize;
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| XmlError(format!("malformed XML near byte {at}: {e}")))?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(XmlError(format!(
                    "a second root element at byte {at}; an XML document has one"
                )));
            }
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError(format!(
                        "elements are nested deeper than {MAX_DEPTH} levels"
                    )));
                }
                stack.push(Element::open(&start, &mut nodes, at)?);
            }
            Event::Empty(start) => {
                let el = Element::open(&start, &mut nodes, at)?;
                close(el, &mut stack, &mut root);
            }
            Event::End(_) => {
                // quick-xml has already checked that the end tag matches the start tag.
                let Some(el) = stack.pop() else {
                    return Err(XmlError(format!("an end tag without a start at byte {at}")));
                };
                close(el, &mut stack, &mut root);
            }
            Event::Text(t) => text_into(&mut stack, &String::from_utf8_lossy(&t), at)?,
            Event::CData(t) => text_into(&mut stack, &String::from_utf8_lossy(&t), at)?,
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = String::from_utf8_lossy(&r);
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| {
                                XmlError(format!(
                                    "an undefined entity reference at byte {at} (only &lt; &gt; &amp; &apos; &quot; and character references are read)"
                                ))
                            })?
                            .to_string()
                    }
                    Err(e) => return Err(XmlError(format!("malformed XML near byte {at}: {e}"))),
                };
                text_into(&mut stack, &resolved, at)?;
            }
            // Declarations, processing instructions (`<?adf version="1.0"?>`), comments and
            // a DOCTYPE carry no data; a DOCTYPE's entities are never expanded.
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(XmlError(format!(
            "the document ends before <{}> is closed",
            open.name
        )));
    }
    let (name, value) = root.ok_or_else(|| XmlError("the document has no element".into()))?;
    let mut doc = Map::new();
    doc.insert(name, value);
    Ok(Value::Object(doc))
}

/// An element being read.
struct Element {
    name: String,
    fields: Map<String, Value>,
    has_attributes: bool,
    text: String,
}

impl Element {
    fn open(start: &BytesStart<'_>, nodes: &mut usize, at: u64) -> Result<Self, XmlError> {
        *nodes += 1;
        let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
        let mut fields = Map::new();
        let mut has_attributes = false;
        for attr in start.attributes() {
            let attr =
                attr.map_err(|e| XmlError(format!("a malformed attribute at byte {at}: {e}")))?;
            if attr.key.as_namespace_binding().is_some() {
                continue;
            }
            *nodes += 1;
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| XmlError(format!("a malformed attribute value at byte {at}: {e}")))?;
            let key = format!(
                "@{}",
                String::from_utf8_lossy(attr.key.local_name().as_ref())
            );
            fields.insert(key, Value::String(value.into_owned()));
            has_attributes = true;
        }
        if *nodes > MAX_NODES {
            return Err(XmlError(format!(
                "the document has more than {MAX_NODES} elements and attributes"
            )));
        }
        Ok(Element {
            name,
            fields,
            has_attributes,
            text: String::new(),
        })
    }

    fn into_value(self) -> Value {
        let text = self.text.trim();
        if self.fields.is_empty() && !self.has_attributes {
            return Value::String(text.to_string());
        }
        let mut fields = self.fields;
        if !text.is_empty() {
            fields.insert("#text".into(), Value::String(text.to_string()));
        }
        Value::Object(fields)
    }
}

fn text_into(stack: &mut [Element], text: &str, at: u64) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(el) => el.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => {
            return Err(XmlError(format!(
                "text outside the root element at byte {at}"
            )));
        }
    }
    Ok(())
}

/// Adds a finished element to its parent (repeated names become an array) or makes it the
/// root.
fn close(el: Element, stack: &mut [Element], root: &mut Option<(String, Value)>) {
    let name = el.name.clone();
    let value = el.into_value();
    let Some(parent) = stack.last_mut() else {
        *root = Some((name, value));
        return;
    };
    match parent.fields.get_mut(&name) {
        None => {
            parent.fields.insert(name, value);
        }
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) const ADF: &str = include_str!("../tests/fixtures/adf_lead_two_vehicles.xml");

    #[test]
    fn an_adf_lead_becomes_a_tree_with_attributes_text_and_repeats() {
        let v = parse(ADF).unwrap();
        let p = &v["adf"]["prospect"];
        assert_eq!(p["@status"], "new");
        assert_eq!(p["requestdate"], "2024-05-01T10:00:00-05:00");
        assert_eq!(
            p["id"],
            json!({"@sequence": "1", "@source": "hub", "#text": "L-1001"})
        );
        assert_eq!(p["vehicle"][0]["vin"], "1HGCM82633A004352");
        assert_eq!(p["vehicle"][1]["@interest"], "trade-in");
        let names = &p["customer"]["contact"]["name"];
        assert_eq!(
            names[0],
            json!({"@part": "first", "@type": "individual", "#text": "Pat"})
        );
        assert_eq!(
            p["customer"]["comments"],
            "Is it still available? <yes> & \"soon\""
        );
        assert_eq!(
            p["customer"]["contact"]["email"]["#text"],
            "pat@example.com"
        );
    }

    #[test]
    fn namespaces_are_dropped_and_entities_are_read() {
        let v = parse(
            r#"<?xml version="1.0"?><star:ProcessSalesLead xmlns:star="http://www.starstandard.org/STAR/5" releaseID="5.4.4"><star:Name>A &amp; B &#x41;</star:Name><Empty/></star:ProcessSalesLead>"#,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"ProcessSalesLead": {"@releaseID": "5.4.4", "Name": "A & B A", "Empty": ""}})
        );
    }

    #[test]
    fn a_byte_order_mark_and_surrounding_whitespace_are_fine() {
        assert_eq!(parse("\u{feff}<a>x</a>\n").unwrap(), json!({"a": "x"}));
        assert_eq!(parse("\n  <a> x </a>  ").unwrap(), json!({"a": "x"}));
    }

    #[test]
    fn malformed_and_hostile_documents_are_refused() {
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "text<a/>",
            "<a>&nope;</a>",
            "<a x='1' x='2'/>",
            "<a><b></a>",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        // Billion laughs: the DOCTYPE is skipped and its entity never expanded.
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        assert!(
            parse(laughs)
                .unwrap_err()
                .to_string()
                .contains("undefined entity")
        );
        // External entities: likewise never fetched.
        let xxe = r#"<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>"#;
        assert!(parse(xxe).is_err());
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );
        assert!(
            parse(&deep)
                .unwrap_err()
                .to_string()
                .contains("nested deeper")
        );
        let ok = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
            let _ = parse(&s);
        }

        #[test]
        fn xml_like_text_never_panics(s in "(<[a-c]( [a-c]='[^']{0,3}')?/?>|</[a-c]>|&[a-z#0-9]{0,4};|[^<&]{0,5}|<!\\[CDATA\\[[^\\]]{0,4}\\]\\]>){0,40}") {
            let _ = parse(&s);
        }
    }
}
