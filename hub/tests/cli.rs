//! The `hub` command line, as an admin meets it.

use std::process::Command;

fn hub() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hub"))
}

#[test]
fn validate_accepts_the_demo_topology() {
    let out = hub()
        .arg("validate")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../topology/examples/demo.yaml"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn validate_names_the_line_of_each_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "version: 1\ntenants:\n  - id: acme\n    connectors:\n      - id: c1\n        vendor: salesforce\n        webhook_secret: 0123456789abcdef0123\n        entities:\n          - vendor_entity: Contact\n            canonical: customer\n            fields:\n              shoe_size: { from: /Shoe }\n",
    )
    .unwrap();
    let out = hub().arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 12") && err.contains("shoe_size"),
        "{err}"
    );
}

fn repo_file(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

const MAPPING: &str = "\
vendor: salesforce
entities:
  - vendor_entity: Contact
    canonical: customer
    external_id: /Id
    fields:
      last_name: { from: /LastName, transform: [trim], required: true }
      email: { from: /Email, transform: [trim, lowercase], format: email }
      address.state: { from: /MailingState, transform: [uppercase], format: us_state }
tests:
  - name: contact_maps
    entity: Contact
    input: { Id: 003A, LastName: Lee, Email: Pat@Example.com, MailingState: tx }
    expect: { last_name: Lee, email: pat@example.com, address.state: TX }
";

#[test]
fn hub_test_passes_the_shipped_mapping_files() {
    let out = hub()
        .arg("test")
        .arg(repo_file("connectors/mappings/salesforce.yaml"))
        .arg(repo_file("connectors/mappings/hubspot.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("test Contact::contact_becomes_a_customer_keyed_by_email ... ok"),
        "{stdout}"
    );
    assert!(stdout.contains(" 0 failed in 2 file(s)"), "{stdout}");
}

#[test]
fn hub_test_fails_a_wrong_expectation_and_shows_the_diff() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("contact.yaml");
    std::fs::write(
        &file,
        MAPPING.replace("address.state: TX", "address.state: CA"),
    )
    .unwrap();
    let out = hub().arg("test").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("test Contact::contact_maps ... FAILED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("address.state")
            && stdout.contains("expected: \"CA\"")
            && stdout.contains("actual:   \"TX\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("test result: FAILED. 0 passed; 1 failed"),
        "{stdout}"
    );
}

#[test]
fn hub_test_names_the_line_of_a_malformed_mapping_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, MAPPING.replace("format: email", "format: e-mail")).unwrap();
    let out = hub().arg("test").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 8") && err.contains("e-mail"), "{err}");
}

#[test]
fn hub_test_checks_the_mappings_of_a_topology_file() {
    let out = hub()
        .arg("test")
        .arg(repo_file("topology/examples/demo.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("connector sf-main: 2 mapping(s) checked")
    );
}

#[test]
fn mapping_test_prints_the_canonical_record() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("contact.yaml");
    let sample = dir.path().join("contact.json");
    std::fs::write(&mapping, MAPPING).unwrap();
    std::fs::write(
        &sample,
        r#"{"Id":"003A","LastName":" Lee ","Email":"Pat@Example.com"}"#,
    )
    .unwrap();
    let out = hub()
        .args(["mapping", "test", "--mapping"])
        .arg(&mapping)
        .arg("--sample")
        .arg(&sample)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["last_name"], "Lee");
    assert_eq!(doc["email"], "pat@example.com");
}

#[test]
fn mapping_test_lists_every_validation_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("contact.yaml");
    let sample = dir.path().join("contact.json");
    std::fs::write(&mapping, MAPPING).unwrap();
    std::fs::write(
        &sample,
        r#"{"Id":"003B","Email":"nope","MailingState":"ZZ"}"#,
    )
    .unwrap();
    let run = |json: bool| {
        let mut cmd = hub();
        cmd.args(["mapping", "test", "--entity", "Contact", "--mapping"])
            .arg(&mapping)
            .arg("--sample")
            .arg(&sample);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let out = run(false);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for want in [
        "last_name: required",
        "email: email_invalid",
        "address.state: state_invalid",
    ] {
        assert!(stdout.contains(want), "{want} missing from {stdout}");
    }
    let out = run(true);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["errors"].as_array().unwrap().len(), 3);
}

#[test]
fn mapping_test_refuses_an_unknown_entity_or_a_malformed_sample_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("contact.yaml");
    let sample = dir.path().join("contact.json");
    std::fs::write(&mapping, MAPPING).unwrap();
    std::fs::write(&sample, "{not json").unwrap();
    let out = hub()
        .args(["mapping", "test", "--mapping"])
        .arg(&mapping)
        .arg("--sample")
        .arg(&sample)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = hub()
        .args(["mapping", "test", "--entity", "Lead", "--mapping"])
        .arg(&mapping)
        .arg("--sample")
        .arg(&sample)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no mapping for 'Lead'"));
}
