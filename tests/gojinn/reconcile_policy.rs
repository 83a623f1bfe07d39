//! Operator policies from the spec source, end to end through `gojinn plan`: a denied function
//! is reported with the policy file and its message, and the plan fails.

use crate::support::{SpecDir, specs};
use std::process::Command;

#[test]
fn an_operator_policy_in_the_source_denies_with_its_message() {
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write(
        "acme.yaml",
        &specs(
            "acme",
            "",
            &[("hello", "hello", "env: { SECRET_TOKEN: x }"), ("fine", "hello", "env: { MODE: x }")],
        ),
    );
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/no-secrets.rego"),
        r#"package gojinn.admission

deny contains msg if {
    input.kind == "Function"
    some name, _ in input.function.env
    regex.match("^SECRET_", name)
    msg := sprintf("function %s: secrets do not belong in env (%s)", [input.function.id, name])
}
"#,
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gojinn"))
        .args(["plan", dir.path().to_str().unwrap(), "--data-dir", data.path().to_str().unwrap()])
        .args(["--no-default-policies", "--output", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "a denial fails the plan: {text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let denials = json["denials"].as_array().unwrap();
    assert_eq!(denials.len(), 1, "{json:#}");
    assert_eq!(denials[0]["resource"], "function/acme/hello");
    assert_eq!(denials[0]["policy"], "policies/no-secrets.rego");
    assert_eq!(denials[0]["message"], "function acme/hello: secrets do not belong in env (SECRET_TOKEN)");
    let planned: Vec<&str> =
        json["plan"]["changes"].as_array().unwrap().iter().map(|c| c["resource"].as_str().unwrap()).collect();
    assert_eq!(planned, ["tenant/acme", "function/acme/fine"], "nothing of the denied function is planned");
}
