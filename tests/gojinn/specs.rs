//! Golden tests for spec loading: each directory under tests/fixtures/specs holds YAML and the
//! expected outcome beside it, `expected.json` (the normalized desired state) or `expected.txt`
//! (the error text). Run with GOJINN_BLESS=1 to rewrite the expectations after a deliberate change.

use std::path::Path;

#[test]
fn spec_fixtures_match_their_expected_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/specs");
    let bless = std::env::var_os("GOJINN_BLESS").is_some();
    let mut cases: Vec<_> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(cases.len() >= 6, "fixtures are missing");
    let mut failures = Vec::new();
    for case in cases {
        let report = gojinn::spec::load_dir(&case);
        let (file, actual) = if report.errors.is_empty() {
            ("expected.json", serde_json::to_string_pretty(&report.state).unwrap() + "\n")
        } else {
            ("expected.txt", report.error_text())
        };
        let expected_path = case.join(file);
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures
                .push(format!("{}:\n--- expected\n{expected}--- actual\n{actual}", expected_path.display())),
            Err(_) => {
                failures.push(format!("{} is missing; actual output:\n{actual}", expected_path.display()))
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
