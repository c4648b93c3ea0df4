//! The data contract's guard rails. Every schema change must stay backward compatible, and every
//! change must leave a snapshot behind:
//!
//! - `schemas/avro/<name>.avsc` is the current schema; `schemas/avro/history/<name>.vN.avsc` are
//!   the snapshots of every released version (v1, v2, ... with no gaps).
//! - The current schema must read data written with every snapshot (BACKWARD_TRANSITIVE).
//! - The newest snapshot must equal the current schema (as JSON, so whitespace does not matter
//!   but docs and attributes do): changing a schema means adding `<name>.v(N+1).avsc`, which is
//!   then checked against all older ones.
//!
//! To change a schema: edit `avro/<name>.avsc` (new fields nullable with `"default": null`, or
//! arrays with `"default": []`), copy it to `avro/history/<name>.v<N+1>.avsc`, run this test.
//!
//! It also checks the conventions the rest of the hub relies on: names and namespaces, the ten
//! common fields of every canonical entity, nullable entity fields, money, time and PII tagging.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use serde_json::{Value, json};

const CANONICAL_NS: &str = "com.automatrix.hub.canonical";

/// The schema files the hub loads, with the full name of their record.
const SCHEMAS: [(&str, &str); 10] = [
    ("raw_change", "com.automatrix.hub.raw.RawChange"),
    ("dead_letter", "com.automatrix.hub.dlq.DeadLetter"),
    ("customer", "com.automatrix.hub.canonical.Customer"),
    ("lead", "com.automatrix.hub.canonical.Lead"),
    ("vehicle", "com.automatrix.hub.canonical.Vehicle"),
    ("deal", "com.automatrix.hub.canonical.Deal"),
    ("repair_order", "com.automatrix.hub.canonical.RepairOrder"),
    (
        "service_appointment",
        "com.automatrix.hub.canonical.ServiceAppointment",
    ),
    ("part", "com.automatrix.hub.canonical.Part"),
    (
        "accounting_entry",
        "com.automatrix.hub.canonical.AccountingEntry",
    ),
];

/// Field names that hold personal data and must carry `"pii": true` wherever they appear.
const PII_NAMES: [&str; 14] = [
    "first_name",
    "last_name",
    "email",
    "phone",
    "mobile_phone",
    "work_phone",
    "address",
    "line1",
    "line2",
    "postal_code",
    "date_of_birth",
    "driver_license_number",
    "credit_score",
    "payload",
];

fn avro_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("avro")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn parse(path: &Path) -> Schema {
    Schema::parse(&read_json(path))
        .unwrap_or_else(|e| panic!("{} is not a valid Avro schema: {e}", path.display()))
}

fn current_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(avro_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("avsc"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// `name` → version → path, from `history/<name>.v<N>.avsc`.
fn history() -> BTreeMap<String, BTreeMap<u32, PathBuf>> {
    let mut out: BTreeMap<String, BTreeMap<u32, PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(avro_dir().join("history")).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(stem) = file.strip_suffix(".avsc") else {
            panic!("unexpected file in avro/history: {file}");
        };
        let (name, version) = stem
            .rsplit_once(".v")
            .and_then(|(n, v)| Some((n, v.parse::<u32>().ok()?)))
            .unwrap_or_else(|| panic!("history file {file} is not named <name>.v<N>.avsc"));
        out.entry(name.to_owned())
            .or_default()
            .insert(version, path);
    }
    out
}

#[test]
fn every_schema_file_is_there_and_parses_to_the_right_record() {
    let mut expected: Vec<String> = SCHEMAS.iter().map(|(n, _)| (*n).to_owned()).collect();
    expected.sort();
    assert_eq!(
        current_names(),
        expected,
        "avro/ must hold exactly the hub's schemas"
    );
    for (name, fullname) in SCHEMAS {
        let path = avro_dir().join(format!("{name}.avsc"));
        match parse(&path) {
            Schema::Record(r) => assert_eq!(r.name.fullname(None), fullname, "{name}"),
            other => panic!("{name}: top level must be a record, is {other:?}"),
        }
    }
}

#[test]
fn current_schemas_read_every_snapshot_and_the_newest_snapshot_is_current() {
    let history = history();
    for name in current_names() {
        let current_path = avro_dir().join(format!("{name}.avsc"));
        let current = parse(&current_path);
        let versions = history.get(&name).unwrap_or_else(|| {
            panic!("{name}: no snapshot; copy avro/{name}.avsc to avro/history/{name}.v1.avsc")
        });
        let numbers: Vec<u32> = versions.keys().copied().collect();
        assert_eq!(
            numbers,
            (1..=numbers.len() as u32).collect::<Vec<_>>(),
            "{name}: snapshot versions must be 1..N without gaps"
        );
        for (version, path) in versions {
            let writer = parse(path);
            match SchemaCompatibility::can_read(&writer, &current) {
                Ok(Compatibility::Full) => {}
                Ok(Compatibility::Partial) => panic!(
                    "{name}: the current schema can read only some data written with v{version} (enum symbols or union branches missing)"
                ),
                Err(e) => panic!(
                    "{name}: the current schema cannot read data written with v{version}: {e}"
                ),
            }
        }
        let (newest, newest_path) = versions.iter().next_back().unwrap();
        let (snapshot, now) = (read_json(newest_path), read_json(&current_path));
        assert!(
            snapshot == now,
            "{name}: avro/{name}.avsc differs from its newest snapshot v{newest} ({}); \
             copy it to avro/history/{name}.v{}.avsc (this test then checks it against every older version)",
            differences(&snapshot, &now),
            newest + 1
        );
    }
    for name in history.keys() {
        assert!(
            current_names().contains(name),
            "history holds {name}, which has no current schema"
        );
    }
}

/// The names of the fields (or record attributes) that differ between two versions of a record.
fn differences(old: &Value, new: &Value) -> String {
    let fields = |v: &Value| -> BTreeMap<String, Value> {
        v["fields"]
            .as_array()
            .map(|f| {
                f.iter()
                    .map(|f| (f["name"].as_str().unwrap_or("?").to_owned(), f.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (a, b) = (fields(old), fields(new));
    let mut out: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("field {k}"))
        .collect();
    out.dedup();
    let order = |v: &Value| -> Vec<String> {
        v["fields"]
            .as_array()
            .map(|f| f.iter().map(|f| f["name"].to_string()).collect())
            .unwrap_or_default()
    };
    if out.is_empty() && order(old) != order(new) {
        out.push("field order".to_owned());
    }
    for attr in ["name", "namespace", "doc", "aliases"] {
        if old.get(attr) != new.get(attr) {
            out.push(format!("record {attr}"));
        }
    }
    if out.is_empty() {
        "other attributes".to_owned()
    } else {
        out.join(", ")
    }
}

#[test]
fn canonical_entities_start_with_the_common_fields() {
    let ts = json!({"type": "long", "logicalType": "timestamp-millis"});
    let expected = [
        ("tenant_id", json!("string"), None),
        ("key", json!("string"), None),
        ("source_vendor", json!("string"), None),
        ("source_connector", json!("string"), None),
        ("source_entity", json!("string"), None),
        ("external_id", json!(["null", "string"]), Some(Value::Null)),
        ("source_updated_at", ts.clone(), None),
        ("received_at", ts, None),
        ("ingest_id", json!("string"), None),
        ("deleted", json!("boolean"), Some(json!(false))),
    ];
    for (name, _) in SCHEMAS
        .iter()
        .filter(|(_, full)| full.starts_with(CANONICAL_NS))
    {
        let schema = read_json(&avro_dir().join(format!("{name}.avsc")));
        assert_eq!(schema["namespace"], json!(CANONICAL_NS), "{name}");
        let fields = schema["fields"].as_array().unwrap();
        assert!(
            fields.len() > expected.len(),
            "{name}: no entity fields after the common ones"
        );
        for (i, (field, ty, default)) in expected.iter().enumerate() {
            let f = &fields[i];
            assert_eq!(f["name"], json!(field), "{name}: field {i} must be {field}");
            assert_eq!(&f["type"], ty, "{name}.{field}: type");
            assert_eq!(
                f.get("default"),
                default.as_ref(),
                "{name}.{field}: default"
            );
        }
        // Entity fields: optional (validation decides what is required), arrays default empty.
        for f in &fields[expected.len()..] {
            let field = f["name"].as_str().unwrap();
            match &f["type"] {
                Value::Object(t) if t.get("type") == Some(&json!("array")) => {
                    assert_eq!(
                        f.get("default"),
                        Some(&json!([])),
                        "{name}.{field}: arrays default to []"
                    );
                }
                Value::Array(branches) => {
                    assert_eq!(branches.len(), 2, "{name}.{field}: must be [\"null\", T]");
                    assert_eq!(
                        branches[0],
                        json!("null"),
                        "{name}.{field}: null must be the first branch"
                    );
                    assert_eq!(
                        f.get("default"),
                        Some(&Value::Null),
                        "{name}.{field}: must default to null"
                    );
                }
                other => panic!("{name}.{field}: entity fields must be nullable, found {other}"),
            }
        }
    }
}

/// Every record and field of every schema, with a path for messages.
fn walk<'a>(v: &'a Value, at: &str, out: &mut Vec<(String, &'a serde_json::Map<String, Value>)>) {
    match v {
        Value::Object(m) => {
            let here = match m.get("name").and_then(Value::as_str) {
                Some(n) => format!("{at}.{n}"),
                None => at.to_owned(),
            };
            if m.contains_key("name") && (m.contains_key("fields") || m.contains_key("type")) {
                out.push((here.clone(), m));
            }
            for (k, child) in m {
                if k != "default" {
                    walk(child, &here, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, at, out)),
        _ => {}
    }
}

/// The non-null branch of a field's type (the type itself when not a union).
fn value_type(ty: &Value) -> &Value {
    match ty {
        Value::Array(b) => b.iter().find(|t| **t != json!("null")).unwrap_or(ty),
        _ => ty,
    }
}

#[test]
fn docs_pii_money_and_time_conventions() {
    for (name, _) in SCHEMAS {
        let schema = read_json(&avro_dir().join(format!("{name}.avsc")));
        let mut nodes = Vec::new();
        walk(&schema, name, &mut nodes);
        let mut has_money = false;
        let mut has_currency = false;
        for (path, node) in nodes {
            let doc = node.get("doc").and_then(Value::as_str).unwrap_or("");
            assert!(
                !doc.trim().is_empty(),
                "{path}: every record and field needs a doc"
            );
            if let Some(pii) = node.get("pii") {
                assert!(
                    pii.is_boolean(),
                    "{path}: \"pii\" must be a boolean, is {pii}"
                );
            }
            let is_record = node.contains_key("fields");
            if is_record {
                continue;
            }
            let field = node["name"].as_str().unwrap();
            let ty = value_type(&node["type"]);
            if PII_NAMES.contains(&field) {
                assert_eq!(
                    node.get("pii"),
                    Some(&json!(true)),
                    "{path}: personal data must be tagged \"pii\": true"
                );
            }
            if field.ends_with("_minor") {
                has_money = true;
                assert_eq!(ty, &json!("long"), "{path}: money is a long in minor units");
            }
            if field == "currency" {
                has_currency = true;
            }
            if field.ends_with("_at") {
                assert_eq!(
                    ty,
                    &json!({"type": "long", "logicalType": "timestamp-millis"}),
                    "{path}: times are timestamp-millis"
                );
            }
            if field == "date_of_birth" {
                assert_eq!(
                    ty,
                    &json!({"type": "int", "logicalType": "date"}),
                    "{path}: dates are int/date"
                );
            }
        }
        assert!(
            !has_money || has_currency,
            "{name}: amounts in minor units need a currency field"
        );
    }
}
