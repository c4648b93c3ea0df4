//! Mapping files: entity mappings that carry their own test cases.
//!
//! A mapping file holds one or more entity mappings in exactly the syntax of a connector's
//! `entities:` list in a topology file (so a mapping moves between the two by copy and paste),
//! and `tests:`, each a vendor payload with the canonical fields it must produce or the rules
//! it must fail. `hub test` runs them; CI runs the shipped ones in `connectors/mappings/`.
//!
//! ```yaml
//! vendor: salesforce
//! entities:
//!   - vendor_entity: Contact
//!     canonical: customer
//!     external_id: /Id
//!     fields:
//!       last_name: { from: /LastName, transform: [trim], required: true }
//!       email: { from: /Email, transform: [trim, lowercase], format: email }
//! tests:
//!   - name: contact_becomes_a_customer
//!     entity: Contact
//!     input: { Id: 003A, LastName: Lee, Email: " Pat.Lee@Example.com" }
//!     expect: { last_name: Lee, email: pat.lee@example.com }
//!   - name: contact_without_a_last_name_is_refused
//!     entity: Contact
//!     input: { Id: 003B, Email: nope }
//!     errors:
//!       - { field: last_name, code: required }
//!       - { field: email, code: email_invalid }
//! ```
//!
//! `expect` is a subset match: only the fields given are compared; a dotted name
//! (`address.city`) or a nested object reaches into records; `null` means "absent".
//! `errors` is an exact set of `{field, code}` pairs. Pure: no I/O, no logging — the values of
//! a test case may be personal data and are only shown to whoever runs the tests.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use hub_schemas::FieldError;
use hub_topology::{EntityMapping, Vendor};
use serde::Deserialize;
use serde_json::Value;

/// A parsed mapping file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    /// File format version; only `1` exists. Optional so a bare `entities:` list works.
    #[serde(default = "one")]
    pub version: u32,
    /// The vendor whose records these mappings read (documentation, and the topology's
    /// connector vendor when the mapping is moved there).
    #[serde(default)]
    pub vendor: Option<Vendor>,
    pub entities: Vec<EntityMapping>,
    #[serde(default)]
    pub tests: Vec<TestCase>,
}

fn one() -> u32 {
    1
}

/// One test case: a vendor payload and what must come of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    /// The vendor entity the payload is of (a `vendor_entity` of this file).
    pub entity: String,
    /// `application/json` (the default) or an XML content type, whose `input` is a string.
    #[serde(default)]
    pub content_type: Option<String>,
    /// A JSON object, or the payload's text.
    pub input: Value,
    /// Canonical fields expected (subset match).
    #[serde(default)]
    pub expect: Option<serde_json::Map<String, Value>>,
    /// The failed rules expected (exact set).
    #[serde(default)]
    pub errors: Option<Vec<ExpectedError>>,
}

/// A failed rule a test case expects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedError {
    pub field: String,
    pub code: String,
}

impl TestCase {
    /// The payload's content type.
    pub fn content_type(&self) -> &str {
        self.content_type.as_deref().unwrap_or("application/json")
    }

    /// The payload's text, as a vendor would send it.
    pub fn payload(&self) -> String {
        match &self.input {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

impl MappingFile {
    pub fn mapping(&self, vendor_entity: &str) -> Option<&EntityMapping> {
        self.entities
            .iter()
            .find(|e| e.vendor_entity == vendor_entity)
    }
}

/// A problem in a mapping file, with its line when it can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// 1-based line.
    pub line: Option<usize>,
    /// Where in the document, e.g. `entities[0].fields.email` or `tests[2]`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a mapping file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub Vec<FileError>);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Parses and checks a mapping file. The mappings get the same checks as in a topology file
/// (canonical field names, JSON pointers); the test cases must name a mapped entity and say
/// what they expect.
pub fn load(text: &str) -> Result<MappingFile, Error> {
    let file: MappingFile = serde_yaml::from_str(text).map_err(|e| {
        let msg = e.to_string();
        // serde_yaml appends " at line N column M"; the line is reported on its own.
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        let line = e.location().map(|l| refine_line(text, l.line(), &msg));
        Error(vec![FileError {
            line,
            path: String::new(),
            message: msg,
        }])
    })?;
    let mut errors = Vec::new();
    if file.version != 1 {
        errors.push(FileError {
            line: line_of(text, 0, &["version:"]),
            path: "version".into(),
            message: format!(
                "unsupported version {}; this hub reads version 1",
                file.version
            ),
        });
    }
    errors.extend(check_mappings(&file, text));
    let mut names = HashSet::new();
    for (i, case) in file.tests.iter().enumerate() {
        let line = line_of(text, 0, &["name:", &case.name]);
        let mut err = |message: String| {
            errors.push(FileError {
                line,
                path: format!("tests[{i}]"),
                message,
            })
        };
        if !names.insert(&case.name) {
            err(format!("test name '{}' is used twice", case.name));
        }
        if file.mapping(&case.entity).is_none() {
            let known: Vec<&str> = file
                .entities
                .iter()
                .map(|e| e.vendor_entity.as_str())
                .collect();
            err(format!(
                "'{}' is not mapped in this file; it maps {}",
                case.entity,
                known.join(", ")
            ));
        }
        match (&case.expect, &case.errors) {
            (Some(_), Some(_)) => err("give either 'expect' or 'errors', not both".into()),
            (None, None) => err("needs 'expect' (fields) or 'errors' (failed rules)".into()),
            _ => {}
        }
        let json = case.content_type().contains("json");
        match &case.input {
            Value::Object(_) if json => {}
            Value::String(_) if !json => {}
            _ if json => {
                err("'input' must be a JSON object (or give an XML 'content_type')".into())
            }
            _ => err(format!(
                "'input' must be the payload's text for content type '{}'",
                case.content_type()
            )),
        }
    }
    if errors.is_empty() {
        Ok(file)
    } else {
        Err(Error(errors))
    }
}

/// The topology's own checks of entity mappings, run on a one-connector topology made of
/// this file's mappings; paths and lines are then mapped back to this file.
fn check_mappings(file: &MappingFile, text: &str) -> Vec<FileError> {
    let topology = hub_topology::Topology {
        version: 1,
        runtime: Default::default(),
        tenants: vec![hub_topology::Tenant {
            id: "mapping-file".into(),
            name: None,
            connectors: vec![hub_topology::Connector {
                id: "mapping-file".into(),
                vendor: file.vendor.unwrap_or(Vendor::Generic),
                webhook_secret: "checked-offline-only".into(),
                entities: file.entities.clone(),
                api: None,
            }],
            targets: Vec::new(),
            routes: Vec::new(),
            conflicts: Default::default(),
            limits: Default::default(),
        }],
    };
    let Ok(yaml) = serde_yaml::to_string(&topology) else {
        return Vec::new();
    };
    let Err(found) = hub_topology::parse_with_env(&yaml, &|_| None) else {
        return Vec::new();
    };
    found
        .into_iter()
        .map(|e| {
            let path = e
                .path
                .strip_prefix("tenants[0].connectors[0].")
                .unwrap_or(&e.path)
                .to_string();
            FileError {
                line: line_for_path(file, text, &path),
                path,
                message: e.message,
            }
        })
        .collect()
}

/// The line of `entities[i]` (or of a field of it) in the original text.
fn line_for_path(file: &MappingFile, text: &str, path: &str) -> Option<usize> {
    let index: usize = path
        .strip_prefix("entities[")?
        .split(']')
        .next()?
        .parse()
        .ok()?;
    let entity = file.entities.get(index)?;
    let start = line_of(text, 0, &["vendor_entity:", &entity.vendor_entity])?;
    let rest = path.split_once("].")?.1;
    let key = match rest.strip_prefix("fields.") {
        Some(f) => f.strip_suffix(".from").unwrap_or(f),
        None => rest,
    };
    line_of(text, start - 1, &[&format!("{key}:")]).or(Some(start))
}

/// serde_yaml reports errors from custom deserialisers at the start of the enclosing
/// mapping; the offending value or field, quoted in the message, is usually a few lines on.
fn refine_line(text: &str, reported: usize, message: &str) -> usize {
    let quoted = message
        .split('`')
        .nth(1)
        .or_else(|| message.split('\'').nth(1))
        .filter(|q| !q.is_empty());
    let Some(q) = quoted else { return reported };
    text.lines()
        .enumerate()
        .skip(reported.saturating_sub(1))
        .take(50)
        .find(|(_, l)| l.contains(q))
        .map_or(reported, |(i, _)| i + 1)
}

/// The first line at or after `skip` (0-based) holding every needle, 1-based.
fn line_of(text: &str, skip: usize, needles: &[&str]) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(skip)
        .find(|(_, l)| needles.iter().all(|n| l.contains(n)))
        .map(|(i, _)| i + 1)
}

/// The tenant and connector a dry run's records claim to come from.
pub const DRY_RUN_TENANT: &str = "mapping-test";

use crate::mapping::dry_run;

/// What running a file's test cases found.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    pub cases: Vec<CaseResult>,
}

/// One test case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub entity: String,
    /// `None` when the case passed; otherwise what differed, expected against actual, one
    /// line each.
    pub failure: Option<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed()).count()
    }

    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    pub fn ok(&self) -> bool {
        self.failed() == 0
    }
}

/// Runs every test case of a file.
pub fn run_tests(file: &MappingFile) -> TestReport {
    TestReport {
        cases: file
            .tests
            .iter()
            .map(|case| CaseResult {
                name: case.name.clone(),
                entity: case.entity.clone(),
                failure: run_case(file, case).err(),
            })
            .collect(),
    }
}

fn run_case(file: &MappingFile, case: &TestCase) -> Result<(), String> {
    let mapping = file
        .mapping(&case.entity)
        .ok_or_else(|| format!("'{}' is not mapped in this file", case.entity))?;
    let result = dry_run(mapping, case.content_type(), &case.payload());
    match (&case.expect, &case.errors, result) {
        (Some(expect), _, Ok(m)) => compare_fields(expect, &m.doc),
        (Some(_), _, Err(f)) => Err(format!(
            "expected the record to map, but it failed ({}): {}\n{}",
            f.class,
            f.reason,
            describe_errors("  actual", &f.errors)
        )),
        (None, Some(want), Err(f)) => compare_errors(want, &f.errors),
        (None, Some(want), Ok(m)) => Err(format!(
            "expected {} failed rule(s), but the record mapped:\n{}\n{}",
            want.len(),
            want.iter()
                .map(|e| format!("  expected error: {}: {}", e.field, e.code))
                .collect::<Vec<_>>()
                .join("\n"),
            pretty(&m.doc)
                .lines()
                .map(|l| format!("  actual | {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        )),
        (None, None, _) => Err("the case says neither 'expect' nor 'errors'".into()),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn describe_errors(label: &str, errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| {
            format!(
                "{label}: {}: {} ({})",
                e.field.as_deref().unwrap_or("-"),
                e.code,
                e.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every expected (dotted) field against the actual document, differences one per line.
fn compare_fields(expect: &serde_json::Map<String, Value>, doc: &Value) -> Result<(), String> {
    let mut want = BTreeMap::new();
    flatten("", &Value::Object(expect.clone()), &mut want);
    let mut diffs = Vec::new();
    for (path, expected) in &want {
        let actual = lookup(doc, path);
        let same = match (expected, actual) {
            (Value::Null, None | Some(Value::Null)) => true,
            (e, Some(a)) => same_value(e, a),
            (_, None) => false,
        };
        if !same {
            diffs.push(format!(
                "  {path}:\n    expected: {}\n    actual:   {}",
                expected,
                actual.map_or_else(|| "(absent)".to_string(), Value::to_string)
            ));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} field(s) differ:\n{}",
            diffs.len(),
            diffs.join("\n")
        ))
    }
}

/// Numbers compare by value (YAML `2021` against Avro-bound `2021`), the rest structurally.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

/// `{address: {city: X}}` and `{address.city: X}` both become `address.city → X`.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |v, k| v.get(k))
}

fn compare_errors(want: &[ExpectedError], actual: &[FieldError]) -> Result<(), String> {
    let want: BTreeSet<(&str, &str)> = want
        .iter()
        .map(|e| (e.field.as_str(), e.code.as_str()))
        .collect();
    let got: BTreeSet<(&str, &str)> = actual
        .iter()
        .map(|e| (e.field.as_deref().unwrap_or(""), e.code.as_str()))
        .collect();
    if want == got {
        return Ok(());
    }
    let mut lines = Vec::new();
    for (f, c) in want.difference(&got) {
        lines.push(format!("  - expected, not reported: {f}: {c}"));
    }
    for (f, c) in got.difference(&want) {
        let message = actual
            .iter()
            .find(|e| e.field.as_deref().unwrap_or("") == *f && e.code == *c)
            .map(|e| e.message.as_str())
            .unwrap_or_default();
        lines.push(format!("  + reported, not expected: {f}: {c} ({message})"));
    }
    Err(format!("the failed rules differ:\n{}", lines.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
vendor: salesforce
entities:
  - vendor_entity: Contact
    canonical: customer
    external_id: /Id
    updated_at: /LastModifiedDate
    fields:
      last_name: { from: /LastName, transform: [trim], required: true }
      email: { from: /Email, transform: [trim, lowercase], format: email }
      address.city: { from: /MailingCity, transform: [trim] }
tests:
  - name: contact_becomes_a_customer
    entity: Contact
    input: { Id: 003A, LastName: " Lee ", Email: " Pat.Lee@Example.com", MailingCity: Austin, LastModifiedDate: "2024-05-01T12:00:00.000+0000" }
    expect: { last_name: Lee, email: pat.lee@example.com, address.city: Austin, source_updated_at: 1714564800000, first_name: null }
  - name: contact_without_a_last_name_is_refused
    entity: Contact
    input: { Id: 003B, Email: nope }
    errors:
      - { field: last_name, code: required }
      - { field: email, code: email_invalid }
"#;

    #[test]
    fn passing_cases_pass() {
        let file = load(FILE).unwrap();
        let report = run_tests(&file);
        assert_eq!(report.cases.len(), 2);
        assert!(report.ok(), "{report:?}");
    }

    #[test]
    fn a_wrong_expectation_fails_with_a_diff_of_expected_and_actual() {
        let text = FILE.replace("address.city: Austin", "address: { city: Dallas }");
        let report = run_tests(&load(&text).unwrap());
        assert_eq!(report.failed(), 1);
        let diff = report.cases[0].failure.as_deref().unwrap();
        assert!(diff.contains("address.city"), "{diff}");
        assert!(
            diff.contains("\"Dallas\"") && diff.contains("\"Austin\""),
            "{diff}"
        );
    }

    #[test]
    fn expected_errors_are_an_exact_set() {
        let text = FILE.replace("      - { field: email, code: email_invalid }\n", "");
        let report = run_tests(&load(&text).unwrap());
        let diff = report.cases[1].failure.as_deref().unwrap();
        assert!(
            diff.contains("+ reported, not expected: email: email_invalid"),
            "{diff}"
        );
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let text = FILE.replace("canonical: customer", "canonical: spaceship");
        let err = load(&text).unwrap_err();
        assert_eq!(err.0[0].line, Some(5), "{err}");
    }

    #[test]
    fn mapping_errors_name_the_field_and_its_line() {
        let text = FILE.replace("address.city:", "shoe_size:");
        let err = load(&text).unwrap_err();
        assert_eq!(err.0[0].line, Some(11), "{err}");
        assert!(err.0[0].message.contains("shoe_size"), "{err}");
    }

    #[test]
    fn a_case_for_an_unmapped_entity_or_without_expectations_is_refused() {
        let text = FILE.replace(
            "    entity: Contact\n    input: { Id: 003B",
            "    entity: Lead\n    input: { Id: 003B",
        );
        let err = load(&text).unwrap_err();
        assert!(err.to_string().contains("'Lead' is not mapped"), "{err}");
        assert_eq!(err.0[0].line, Some(17), "{err}");
    }

    #[test]
    fn xml_payloads_are_read_through_the_same_paths() {
        let text = r#"
entities:
  - vendor_entity: Contact
    canonical: customer
    fields:
      last_name: { from: /Contact/LastName, transform: [trim], required: true }
      email: { from: /Contact/Email, transform: [trim, lowercase], format: email }
tests:
  - name: xml_contact
    entity: Contact
    content_type: application/xml
    input: "<Contact><LastName> Lee </LastName><Email>Pat@Example.com</Email></Contact>"
    expect: { last_name: Lee, email: pat@example.com }
  - name: xml_contact_without_a_name
    entity: Contact
    content_type: application/xml
    input: "<Contact><Email>nope</Email></Contact>"
    errors: [{ field: last_name, code: required }, { field: email, code: email_invalid }]
"#;
        let report = run_tests(&load(text).unwrap());
        assert!(report.ok(), "{report:?}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics_the_loader(s in "\\PC{0,300}") {
            if let Ok(f) = load(&s) {
                let _ = run_tests(&f);
            }
        }
    }
}
