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
