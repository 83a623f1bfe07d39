//! Secret env values (`valueFrom`): the node reads them at deploy from its secrets directory or
//! its environment, the guest sees them, and they are found nowhere else: not in the state store,
//! the node's status or `gojinn validate`'s output; nor is a caller's bearer token, in any output
//! channel of a node logging at debug level and exporting its spans. A missing secret fails its
//! function, naming the variable and where it was looked for.

use crate::support::api::{ChildNode, WITHIN};
use crate::support::otlp::Receiver;
use crate::support::{Node, SpecDir, specs};
use gojinn::spec::ByteSize;
use serde_json::{Value, json};

const FILE_SECRET: &str = "planted-file-secret-7d2e91";
const VARIABLE_SECRET: &str = "planted-variable-secret-40ac3b";

/// `acme/env` (the env guest) with a literal, a file secret and a variable secret.
fn secret_specs(dir: &SpecDir) {
    dir.module("guest-env");
    let env = "env: { GREETING: hi, DB_PASSWORD: { valueFrom: { file: db-password } }, \
               API_TOKEN: { valueFrom: { env: API_TOKEN } } }";
    dir.write("specs.yaml", &specs("acme", "", &[("env", "guest-env", env)]));
}

async fn status_text(node: &Node) -> String {
    let token = std::fs::read_to_string(node.data.path().join("admin.token")).unwrap();
    let response =
        node.client.get(node.url("/_gojinn/v1/status")).bearer_auth(token.trim()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn secret_env_values_reach_the_guest_and_nothing_else() {
    // SAFETY: a variable no other test reads, set before the node starts.
    unsafe { std::env::set_var("GOJINN_SECRET_ACME_API_TOKEN", VARIABLE_SECRET) };
    let dir = SpecDir::new();
    secret_specs(&dir);
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("secrets/acme")).unwrap();
    std::fs::write(data.path().join("secrets/acme/db-password"), FILE_SECRET).unwrap();
    let node = Node::start_with(dir.path(), data).await;

    let seen: Value = node.get("/acme/env").await.json().await.unwrap();
    let expected = json!({ "GREETING": "hi", "DB_PASSWORD": FILE_SECRET, "API_TOKEN": VARIABLE_SECRET });
    assert_eq!(seen["env"], expected);

    let status = status_text(&node).await;
    assert!(status.contains("function/acme/env"), "{status}");
    let store = std::fs::read(node.data.path().join("state/state.redb")).expect("read the store file");
    let (passed, printed) = validate(&dir);
    assert!(passed, "{printed}");
    for secret in [FILE_SECRET, VARIABLE_SECRET] {
        assert!(!status.contains(secret), "status shows a secret: {status}");
        assert!(
            !store.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the store file holds {secret}"
        );
        assert!(!printed.contains(secret), "validate printed {secret}");
    }
    let store_holds = |text: &str| store.windows(text.len()).any(|w| w == text.as_bytes());
    assert!(store_holds("db-password"), "the store keeps where the secret is, so the search above is real");
}

#[tokio::test]
async fn a_function_whose_secret_is_missing_fails_naming_the_variable_and_the_place() {
    let dir = SpecDir::new();
    secret_specs(&dir);
    dir.write(
        "specs.yaml",
        &specs(
            "acme",
            "",
            &[("env", "guest-env", "env: { DB_PASSWORD: { valueFrom: { file: db-password } } }")],
        ),
    );
    let node = Node::start(&dir).await;
    assert_eq!(node.get("/acme/env").await.status(), 404, "a function without its secret is not served");
    let status: Value = serde_json::from_str(&status_text(&node).await).unwrap();
    let resources = status["resources"].as_array().unwrap();
    let env = resources.iter().find(|r| r["resource"] == "function/acme/env").expect("its status");
    assert_eq!(env["state"], "failed", "{env:#}");
    let place = node.data.path().join("secrets/acme/db-password");
    let message = env["message"].as_str().unwrap();
    assert!(
        message.ends_with(&format!(
            "spec.env: env DB_PASSWORD: secret file {} cannot be read: entity not found",
            place.display()
        )),
        "{message}"
    );
}

#[tokio::test]
async fn a_secret_value_counts_in_the_environment_bound_at_its_edge_and_is_never_quoted() {
    let dir = SpecDir::new();
    dir.module("guest-env");
    let env = |file: &str| format!("env: {{ DB_PASSWORD: {{ valueFrom: {{ file: {file} }} }} }}");
    let (at, past) = (env("at-bound"), env("past-bound"));
    dir.write("specs.yaml", &specs("acme", "", &[("at", "guest-env", &at), ("past", "guest-env", &past)]));
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("secrets/acme")).unwrap();
    // "DB_PASSWORD=" and the NUL after the value are 13 bytes: a value of 1011 makes 1 KiB.
    std::fs::write(data.path().join("secrets/acme/at-bound"), "s".repeat(1011)).unwrap();
    std::fs::write(data.path().join("secrets/acme/past-bound"), "s".repeat(1012)).unwrap();
    let mut config = Node::config(dir.path(), data.path());
    config.limits.env_bytes_per_function = ByteSize(1 << 10);
    let node = Node::start_config(config, data).await;

    let seen: Value = node.get("/acme/at").await.json().await.unwrap();
    assert_eq!(seen["env"]["DB_PASSWORD"].as_str().map(str::len), Some(1011), "exactly the bound is served");
    assert_eq!(node.get("/acme/past").await.status(), 404, "one byte past it is not deployed");
    let status: Value = serde_json::from_str(&status_text(&node).await).unwrap();
    let resources = status["resources"].as_array().unwrap();
    let past = resources.iter().find(|r| r["resource"] == "function/acme/past").expect("its status");
    assert_eq!(past["state"], "failed", "{past:#}");
    let message = past["message"].as_str().unwrap();
    assert!(
        message.ends_with(
            "spec.env: env DB_PASSWORD: with the value of this secret, function acme/past's environment \
             is 1025 bytes of names and values, more than the 1024 it may hold (limits.envBytesPerFunction)"
        ),
        "{message}"
    );
    assert!(!message.contains("sss"), "{message}");
}

#[tokio::test]
async fn planted_secrets_reach_no_log_span_receipt_job_record_status_or_validate_output() {
    const ENV_SECRET: &str = "planted-env-secret-b3d90a";
    const BEARER: &str = "planted-bearer-token-1c7e55";
    const KEPT: &str = "planted-kept-bearer-7a41d2";
    let receiver = Receiver::start().await;
    let dir = SpecDir::new();
    dir.module("guest-env").module("guest-jobprobe");
    let env = "env: { API_TOKEN: { valueFrom: { env: API_TOKEN } } }";
    let functions = [
        ("env", "guest-env", env),
        ("probe", "guest-jobprobe", env),
        ("keeper", "guest-jobprobe", "jobs: { keepHeaders: [Authorization] }"),
    ];
    dir.write("specs.yaml", &specs("acme", "", &functions));
    let data = tempfile::tempdir().unwrap();
    let endpoint = receiver.endpoint();
    let environment = [
        ("RUST_LOG", "debug"),
        ("GOJINN_SECRET_ACME_API_TOKEN", ENV_SECRET),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ];
    let node = ChildNode::start_env(dir.path(), data.path(), None, &environment).await;
    let api = &node.api;
    let bearer = format!("Bearer {BEARER}");
    let call = |path: &str| api.http.post(format!("{}{path}", api.base)).header("authorization", &bearer);

    // Where they belong, the values are found: the guest sees its secret (and shows it), the
    // synchronous call hands the guest its Authorization header, a function that keeps it
    // stores it with its jobs. So the searches below can find what they look for.
    let seen: Value = call("/acme/env").send().await.unwrap().json().await.unwrap();
    assert_eq!(seen["env"]["API_TOKEN"], ENV_SECRET, "{seen}");
    let seen: Value = call("/acme/probe").send().await.unwrap().json().await.unwrap();
    assert!(seen["headers"].as_array().unwrap().contains(&json!("authorization")), "{seen}");
    let queued = api.enqueue("/acme/probe", &[("authorization", &bearer)], "").await;
    let kept = api.enqueue("/acme/keeper", &[("authorization", &format!("Bearer {KEPT}"))], "").await;
    let mut channels = vec![
        ("job record", api.wait_for(&queued, "succeeded").await.to_string()),
        ("kept job record", api.wait_for(&kept, "succeeded").await.to_string()),
    ];
    for path in ["acme/jobs", "acme/receipts"] {
        let response = api.admin(reqwest::Method::GET, path).await;
        assert_eq!(response.status(), 200, "{path}");
        channels.push((path, response.text().await.unwrap()));
    }
    let status = api.http.get(format!("{}/_gojinn/v1/status", api.base)).bearer_auth(&api.token);
    channels.push(("status", status.send().await.unwrap().text().await.unwrap()));
    channels.push(("validate", validate(&dir).1));

    // A stopped node has exported every span and written every log line.
    assert!(node.terminate().await.success());
    let spans = receiver.wait_for(WITHIN, |spans| spans.iter().any(|span| span.name == "job")).await;
    assert!(spans.iter().any(|span| span.attribute("gojinn.function") == Some("env")), "{spans:#?}");
    channels.push(("exported spans", format!("{spans:?}")));
    let log = std::fs::read_dir(data.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "log"))
        .expect("the node's log");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains(" DEBUG "), "the node logged at debug level: {log}");
    channels.push(("log", log));
    let store = std::fs::read(data.path().join("state/state.redb")).expect("read the store file");
    let store_holds = |text: &str| store.windows(text.len()).any(|w| w == text.as_bytes());
    assert!(store_holds(KEPT), "a kept header is at rest, so the search of the store is real");

    for secret in [ENV_SECRET, BEARER] {
        assert!(!store_holds(secret), "the store file holds {secret}");
        for (channel, text) in &channels {
            let lines: Vec<&str> = text.lines().filter(|line| line.contains(secret)).collect();
            assert!(lines.is_empty(), "{channel} holds {secret}:\n{}", lines.join("\n"));
        }
    }
}

/// Runs `gojinn validate` on `dir`: whether it passed, and everything it printed.
fn validate(dir: &SpecDir) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gojinn"))
        .args(["validate", "--specs"])
        .arg(dir.path())
        .output()
        .expect("run gojinn validate");
    let said =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), said)
}

/// `gojinn validate`'s output for `acme/env` with `env`; asserts that it failed.
fn refused(env: &str) -> String {
    let dir = SpecDir::new();
    dir.module("guest-env");
    dir.write("specs.yaml", &specs("acme", "", &[("env", "guest-env", env)]));
    let (passed, said) = validate(&dir);
    assert!(!passed && said.contains("specs.yaml:"), "{said}");
    said
}

#[test]
fn secret_references_are_checked_by_validate_with_file_and_line() {
    let said = refused("env: { A: { valueFrom: { file: ../etc/passwd } } }");
    assert!(said.contains("invalid secret file name \"../etc/passwd\""), "{said}");
    let said = refused("env: { A: { valueFrom: { vault: x } } }");
    assert!(said.contains("unknown field `vault`"), "{said}");
}

#[test]
fn value_from_takes_exactly_one_place() {
    let said = refused("env: { A: { valueFrom: { file: a, env: A } } }");
    assert!(said.contains("valueFrom takes exactly one of `file` and `env`"), "{said}");
}
