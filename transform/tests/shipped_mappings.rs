//! The default mappings shipped in `connectors/mappings/` are tested like code: every file
//! loads, and every one of its test cases passes.

use std::path::PathBuf;

use hub_transform::mapping_file;

fn shipped() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../connectors/mappings");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_mapping_file_passes_its_own_test_cases() {
    let files = shipped();
    assert!(files.len() >= 2, "no mapping files found: {files:?}");
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let file = match mapping_file::load(&text) {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{}:\n{e}", path.display()));
                continue;
            }
        };
        assert!(
            !file.tests.is_empty(),
            "{} has no test cases",
            path.display()
        );
        // Every mapping is exercised by at least one case.
        for m in &file.entities {
            assert!(
                file.tests.iter().any(|t| t.entity == m.vendor_entity),
                "{}: no test case feeds {}",
                path.display(),
                m.vendor_entity
            );
        }
        for case in mapping_file::run_tests(&file).cases {
            if let Some(diff) = case.failure {
                failures.push(format!(
                    "{} {}::{}:\n{diff}",
                    path.display(),
                    case.entity,
                    case.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}
