//! `gojinn validate` checks what a deploy would: every problem of every document with file and
//! line, modules that are WebAssembly, compile and import only the host functions a node
//! links, limits within the node's settings (`--config`), and tenants' API keys (unique names
//! and digests, known scopes).

use crate::support::{SpecDir, specs};
use std::process::Command;

/// Runs `gojinn validate --specs DIR [ARGS]`: exit code and everything printed.
fn validate(dir: &SpecDir, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gojinn"))
        .arg("validate")
        .arg("--specs")
        .arg(dir.path())
        .args(args)
        .output()
        .expect("run gojinn validate");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

fn has(text: &str, line: &str) {
    assert!(text.lines().any(|l| l == line), "missing line {line:?} in:\n{text}");
}

/// A line of `text` that starts with `at` (file and line; the column varies with the YAML
/// style) and ends with `message`.
fn has_at(text: &str, at: &str, message: &str) {
    assert!(
        text.lines().any(|l| l.starts_with(at) && l.ends_with(message)),
        "missing {at}...{message:?} in:\n{text}"
    );
}

#[test]
fn every_problem_of_a_document_is_reported_with_its_file_and_line() {
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write(
        "acme.yaml",
        "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: acme }\n---\n\
         apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: { name: hello, tenant: acme }\nspec:\n\
         \x20 module: { path: modules/hello.wasm }\n\
         \x20 limits:\n\
         \x20   memory: lots\n\
         \x20   maxOutput: -1\n\
         \x20   timeout: 5\n\
         \x20   maxConcurrency: -1\n\
         \x20 colour: red\n",
    );
    let (code, text) = validate(&dir, &[]);
    assert_eq!(code, 1, "{text}");
    has_at(
        &text,
        "acme.yaml:11:",
        "spec.limits.memory: invalid size \"lots\": expected a whole number with an optional unit like 64Mi",
    );
    has_at(
        &text,
        "acme.yaml:12:",
        "spec.limits.maxOutput: expected a size such as 64Mi or a number of bytes, got -1",
    );
    has_at(
        &text,
        "acme.yaml:13:",
        "spec.limits.timeout: expected a duration such as 500ms, 2s or 1m (with a unit), got 5",
    );
    has_at(
        &text,
        "acme.yaml:14:",
        "spec.limits.maxConcurrency: expected a whole number from 0 to 4294967295, got -1",
    );
    assert!(
        text.lines().any(|l| l.starts_with("acme.yaml:15:") && l.contains("unknown field `colour`")),
        "{text}"
    );
    assert!(text.contains("1 tenant(s), 0 function(s), 5 error(s)"), "{text}");
}

#[test]
fn api_keys_are_checked_naming_the_key_and_field_that_is_wrong() {
    let dir = SpecDir::new();
    dir.module("hello");
    let (one, two) = ("1".repeat(64), "2".repeat(64));
    let acme = format!(
        "apiKeys: [{{ name: ci, sha256: \"{one}\" }}, {{ name: ci, sha256: \"{two}\", scopes: [jobs] }}, \
         {{ name: again, sha256: \"{one}\", scopes: [] }}]"
    );
    let mut yaml = specs("acme", &acme, &[("hello", "hello", "")]);
    let beta = format!("apiKeys: [{{ name: ci, sha256: \"{one}\", scopes: [admin] }}]");
    yaml.push_str(&format!("---\n{}", specs("beta", &beta, &[])));
    let gamma = format!("apiKeys: [{{ name: ci, sha256: \"{two}\", scopes: [invoke, receipts] }}]");
    yaml.push_str(&format!("---\n{}", specs("gamma", &gamma, &[])));
    let delta = format!("apiKeys: [{{ name: ops, sha256: \"{two}\" }}]");
    yaml.push_str(&format!("---\n{}", specs("delta", &delta, &[])));
    dir.write("acme.yaml", &yaml);
    let (code, text) = validate(&dir, &[]);
    assert_eq!(code, 1, "{text}");
    has(
        &text,
        "acme.yaml:1: spec.apiKeys[1].name: ci names another key too: key names are unique within a tenant",
    );
    has(&text, "acme.yaml:1: spec.apiKeys[2].sha256: the same digest as key ci: one key, listed once");
    has(
        &text,
        "acme.yaml:1: spec.apiKeys[2].scopes: names no scope: leave it out for every scope, or list one or \
         more of invoke, jobs, receipts, mcp",
    );
    has_at(
        &text,
        "acme.yaml:15:",
        "spec.apiKeys[0].scopes[0]: unknown variant `admin`, expected one of `invoke`, `jobs`, `receipts`, `mcp`",
    );
    has(
        &text,
        "acme.yaml:22: spec.apiKeys[0].sha256: tenant gamma lists the same digest: a key opens one tenant",
    );
    // Only gamma is valid; acme's function fails with its tenant.
    assert!(text.contains("1 tenant(s), 0 function(s), 6 error(s)"), "{text}");
}

#[test]
fn rate_limits_are_one_to_a_million_a_second_and_a_functions_within_its_tenants() {
    let dir = SpecDir::new();
    dir.module("hello");
    let functions = [
        ("within", "hello", "limits: { requestsPerSecond: 10 }"),
        ("above", "hello", "limits: { requestsPerSecond: 20 }"),
        ("zero", "hello", "limits: { requestsPerSecond: 0 }"),
    ];
    let acme = specs("acme", "quotas: { requestsPerSecond: 10 }", &functions);
    let beta = specs("beta", "quotas: { requestsPerSecond: 1000001 }", &[]);
    dir.write("acme.yaml", &format!("{acme}---\n{beta}"));
    let (code, text) = validate(&dir, &[]);
    assert_eq!(code, 1, "{text}");
    has_at(
        &text,
        "acme.yaml:",
        "spec.limits.requestsPerSecond: 20 exceeds tenant acme's quota requestsPerSecond of 10",
    );
    has_at(&text, "acme.yaml:", "spec.limits.requestsPerSecond: must be at least 1");
    has_at(&text, "acme.yaml:", "spec.quotas.requestsPerSecond: must be at most 1000000");
    assert!(!text.contains("within"), "a function limit within its tenant's is valid:\n{text}");
}

/// A WASI command that imports a host function no node links.
fn unknown_import_module() -> Vec<u8> {
    wat::parse_str(
        r#"(module
            (import "gojinn" "host_teleport" (func (param i32 i32) (result i64)))
            (memory (export "memory") 1)
            (func (export "_start")))"#,
    )
    .unwrap()
}

#[test]
fn modules_are_checked_as_the_node_would_load_them() {
    let dir = SpecDir::new();
    dir.module("hello");
    dir.truncated_module("hello", "truncated");
    std::fs::write(dir.path().join("modules/text.wasm"), "(module)").unwrap();
    std::fs::write(dir.path().join("modules/teleport.wasm"), unknown_import_module()).unwrap();
    dir.write(
        "acme.yaml",
        &specs(
            "acme",
            "",
            &[
                ("hello", "hello", ""),
                ("truncated", "truncated", ""),
                ("text", "text", ""),
                ("teleport", "teleport", ""),
                ("greedy", "hello", "limits: { memory: 200Mi }"),
            ],
        ),
    );
    let (code, text) = validate(&dir, &[]);
    assert_eq!(code, 1, "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.contains(&format!("modules/{name}.wasm")))
            .unwrap_or_else(|| panic!("{name}: {text}"))
    };
    assert!(
        line("truncated")
            .starts_with("acme.yaml:12: spec.module: \"modules/truncated.wasm\": invalid module"),
        "{text}"
    );
    assert!(line("text").contains("is not a WebAssembly module"), "{text}");
    assert!(line("teleport").contains("host_teleport"), "{text}");
    assert!(text.contains("1 tenant(s), 2 function(s), 3 error(s)"), "greedy fits the default 256Mi: {text}");

    let node = tempfile::tempdir().unwrap();
    let config = node.path().join("gojinn.yaml");
    std::fs::write(&config, "runtime: { maxMemoryPerInstance: 128Mi }\n").unwrap();
    let (code, text) = validate(&dir, &["--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("acme.yaml:")
            && l.contains("module needs 209715200 bytes of memory but this node allows at most 134217728")),
        "{text}"
    );
    assert!(text.contains("1 tenant(s), 1 function(s), 4 error(s)"), "{text}");
}

#[test]
fn keep_headers_accepts_only_credential_headers() {
    let dir = SpecDir::new();
    dir.module("guest-jobprobe");
    let spec = "jobs: { keepHeaders: [x-colour] }";
    dir.write("specs.yaml", &specs("acme", "", &[("probe", "guest-jobprobe", spec)]));
    let (code, text) = validate(&dir, &[]);
    assert_eq!(code, 1, "{text}");
    has_at(
        &text,
        "specs.yaml:",
        "keepHeaders lists \"x-colour\", which is not a credential header: only authorization, cookie, proxy-authorization, x-gojinn-key are removed from queued calls",
    );
}

#[test]
fn a_spec_file_at_the_nodes_size_and_document_bounds_loads_and_one_past_either_is_refused() {
    let node = tempfile::tempdir().unwrap();
    let config = node.path().join("gojinn.yaml");
    std::fs::write(&config, "limits: { bytesPerSpecFile: 1Ki, documentsPerSpecFile: 2 }\n").unwrap();
    let config = ["--config", config.to_str().unwrap()];
    let tenant =
        |name: &str| format!("---\napiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: {name} }}\n");
    // Two documents padded with a comment to exactly 1024 bytes.
    let two = format!("{}{}", tenant("a"), tenant("b"));
    let padded = |text: &str, bytes: usize| format!("{text}#{}\n", "x".repeat(bytes - text.len() - 2));
    let dir = SpecDir::new();

    dir.write("tenants.yaml", &padded(&two, 1024));
    let (code, text) = validate(&dir, &config);
    assert_eq!(code, 0, "a file of exactly the bounds loads: {text}");
    assert!(text.contains("2 tenant(s)"), "{text}");

    dir.write("tenants.yaml", &padded(&two, 1025));
    let (code, text) = validate(&dir, &config);
    assert_eq!(code, 1, "{text}");
    has(
        &text,
        "tenants.yaml: the file is larger than the 1024 bytes a spec file may hold (limits.bytesPerSpecFile); split it into several files",
    );

    dir.write("tenants.yaml", &format!("{two}{}", tenant("c")));
    let (code, text) = validate(&dir, &config);
    assert_eq!(code, 1, "{text}");
    has(
        &text,
        "tenants.yaml: the file holds more than the 2 documents a spec file may hold (limits.documentsPerSpecFile); split it into several files",
    );
}
