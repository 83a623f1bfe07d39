//! Shared by the `host_*` tests: nodes whose functions all run the `guest-state` test guest
//! (which performs the host calls its request names), and reading its answers.

use super::{Node, SpecDir, specs};
use gojinn::config::{NodeConfig, RuntimeSettings};
use gojinn::spec::ByteSize;
use serde_json::Value;

/// A tenant and its functions, each `(name, extra spec YAML)`, all running `guest-state`.
pub type Tenant<'a> = (&'a str, &'a [(&'a str, &'a str)]);

fn write_specs(tenants: &[Tenant<'_>]) -> SpecDir {
    let dir = SpecDir::new();
    dir.module("guest-state");
    let documents: Vec<String> = tenants
        .iter()
        .map(|(tenant, functions)| {
            let functions: Vec<_> =
                functions.iter().map(|(name, extra)| (*name, "guest-state", *extra)).collect();
            specs(tenant, "", &functions)
        })
        .collect();
    dir.write("specs.yaml", &documents.join("---\n"));
    dir
}

fn assert_deployed(node: &Node) {
    let errors = &node.server.first_deploy().errors;
    assert!(errors.is_empty(), "{errors:?}");
}

/// A node with the default node config serving `tenants`.
pub async fn node(tenants: &[Tenant<'_>]) -> (SpecDir, Node) {
    let dir = write_specs(tenants);
    let node = Node::start(&dir).await;
    assert_deployed(&node);
    (dir, node)
}

/// A node serving `tenants` with a node config changed by `configure` (egress, state backend).
pub async fn node_with(tenants: &[Tenant<'_>], configure: impl FnOnce(&mut NodeConfig)) -> (SpecDir, Node) {
    let dir = write_specs(tenants);
    let data = tempfile::tempdir().expect("data dir");
    let mut config = NodeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data.path().to_path_buf(),
        specs: dir.path().to_path_buf(),
        watch: false,
        runtime: RuntimeSettings {
            max_instances: 16,
            max_memory_per_instance: ByteSize(128 << 20),
            ..Default::default()
        },
        ..NodeConfig::default()
    };
    configure(&mut config);
    let server = gojinn::server::Server::start(config).await.expect("start node");
    let node = Node { server, data, client: reqwest::Client::new() };
    assert_deployed(&node);
    (dir, node)
}

/// Posts `ops` to the function at `path` and returns one result per operation.
pub async fn run(node: &Node, path: &str, ops: Value) -> Vec<Value> {
    let response = node.client.post(node.url(path)).json(&ops).send().await.expect("POST");
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Runs one operation and returns its result.
pub async fn run_one(node: &Node, path: &str, op: Value) -> Value {
    run(node, path, op).await.remove(0)
}

/// The value of a successful result.
pub fn ok(result: &Value) -> &Value {
    result.get("ok").unwrap_or_else(|| panic!("expected success, got {result}"))
}

/// The error code and message of a failed result.
pub fn error(result: &Value) -> (&str, &str) {
    match (result["error"].as_str(), result["message"].as_str()) {
        (Some(code), Some(message)) => (code, message),
        _ => panic!("expected an error, got {result}"),
    }
}
