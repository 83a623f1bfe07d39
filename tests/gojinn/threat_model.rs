//! THREAT_MODEL.md names the test that proves each mitigation: every test it names exists.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            name.starts_with(head)
                && (head.len()..=name.len()).any(|i| name.is_char_boundary(i) && matches(rest, &name[i..]))
        }
    }
}

/// The names of the functions a Rust file defines.
fn functions(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.split("fn ")
        .skip(1)
        .map(|rest| rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect())
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The files a test can live in: a unit test's module under src when its path has a `tests`
/// segment (`audit::verify::tests::name`), else an integration test module (`receipts::name`)
/// with the shared conformance suites in tests/support.
fn candidate_files(modules: &[&str], unit: bool) -> Vec<PathBuf> {
    let root = root();
    if unit {
        let module: Vec<&str> = modules.iter().copied().filter(|m| *m != "tests").collect();
        let path = root.join("src").join(module.join("/"));
        return [path.with_extension("rs"), path.join("mod.rs")]
            .into_iter()
            .filter(|f| f.is_file())
            .collect();
    }
    let integration: Vec<PathBuf> = rust_files(&root.join("tests/gojinn"))
        .into_iter()
        .filter(|f| f.file_stem().is_some_and(|s| matches(modules[0], &s.to_string_lossy())))
        .collect();
    if integration.is_empty() {
        return integration;
    }
    integration.into_iter().chain(rust_files(&root.join("tests/support"))).collect()
}

/// The backquoted references of the test column (the last) of each threat row.
fn named_tests(threat_model: &str) -> Vec<(String, String)> {
    let mut named = Vec::new();
    for row in threat_model.lines().filter(|l| l.starts_with("| T")) {
        let cells: Vec<&str> = row.trim().trim_matches('|').split('|').map(str::trim).collect();
        let (id, tests) = (cells[0], cells[cells.len() - 1]);
        for (i, reference) in tests.split('`').enumerate() {
            if i % 2 == 1 && (reference.contains("::") || reference.contains('/')) {
                named.push((id.to_owned(), reference.to_owned()));
            }
        }
    }
    named
}

#[test]
fn every_test_the_threat_model_names_exists() {
    let text = std::fs::read_to_string(root().join("THREAT_MODEL.md")).unwrap();
    let named = named_tests(&text);
    assert!(named.len() > 100, "found only {} test references: did the table format change?", named.len());
    let mut missing = Vec::new();
    for (id, reference) in &named {
        let found = if reference.contains('/') {
            root().join(reference).exists()
        } else {
            let parts: Vec<&str> = reference.split("::").collect();
            let unit = parts.contains(&"tests");
            match parts.split_last().expect("a path has segments") {
                // A whole module of tests.
                (&"tests", modules) => !candidate_files(modules, true).is_empty(),
                (&"*", modules) => !candidate_files(modules, unit).is_empty(),
                (name, modules) => candidate_files(modules, unit)
                    .iter()
                    .flat_map(|f| functions(f))
                    .any(|f| matches(name, &f)),
            }
        };
        if !found {
            missing.push(format!("{id}: {reference}"));
        }
    }
    assert!(missing.is_empty(), "THREAT_MODEL.md names tests that do not exist:\n{}", missing.join("\n"));
}

#[test]
fn the_pattern_matcher_takes_stars_anywhere() {
    assert!(matches("control_lease_*", "control_lease_released_only_by_holder"));
    assert!(matches("state_*", "state_nats"));
    assert!(matches("a*c*e", "abcde"));
    assert!(!matches("a*c", "abd"));
    assert!(!matches("exact", "exactly"));
}
