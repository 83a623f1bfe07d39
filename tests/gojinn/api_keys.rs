//! Tenants' API keys on a real node: an authorization matrix over every route a credential
//! decides (function calls, sync and async; a tenant's jobs and receipts; what a tenant deployed,
//! open to any of its keys; the admin-only routes; the job status capability URL and the OpenAPI
//! document; a tenant without keys) × {admin token, tenant A's key, A's key
//! with another scope, tenant B's key, a wrong key, none}, each cell asserting the exact status
//! and code; and a key, once used, nowhere after the edge: not in what the guest sees, the job's
//! payload, the receipt or the node's logs; and a key change, applied, closing or opening a
//! running tenant, on the node that applied it and on a follower over NATS. Keys are made by `gojinn keys new`, as an operator would, and their lines
//! pasted into the spec.

use crate::support::api::Api;
use crate::support::logs::Logs;
use crate::support::nats::NatsServer;
use crate::support::{Node, SpecDir, specs};
use reqwest::Method;
use serde_json::Value;
use std::fmt::Write as _;
use std::process::Command;

/// Runs `gojinn keys new TENANT ARGS`: the key and the line to paste under `apiKeys`.
pub(crate) fn new_key(tenant: &str, args: &[&str]) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gojinn"))
        .args(["keys", "new", tenant])
        .args(args)
        .output()
        .expect("run gojinn keys new");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{text}{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let key = lines.iter().find(|l| l.starts_with("gjk_")).expect("the key").to_string();
    let line = lines.iter().find(|l| l.starts_with("- {")).expect("the spec line").to_string();
    (key, line)
}

/// A credential a request presents.
#[derive(Clone, Copy, Debug)]
enum Credential {
    Admin,
    /// Tenant alpha's key with every scope (sent as `X-Gojinn-Key`).
    Alpha,
    /// Tenant alpha's key with the `receipts` scope only (sent as `Authorization: Bearer`).
    AlphaReceipts,
    /// Tenant beta's key with every scope.
    Beta,
    Wrong,
    None,
}

const CREDENTIALS: [Credential; 6] = [
    Credential::Admin,
    Credential::Alpha,
    Credential::AlphaReceipts,
    Credential::Beta,
    Credential::Wrong,
    Credential::None,
];

struct Keys {
    admin: String,
    alpha: String,
    alpha_receipts: String,
    beta: String,
}

impl Keys {
    fn apply(&self, request: reqwest::RequestBuilder, credential: Credential) -> reqwest::RequestBuilder {
        match credential {
            Credential::Admin => request.bearer_auth(&self.admin),
            Credential::Alpha => request.header("x-gojinn-key", &self.alpha),
            Credential::AlphaReceipts => request.bearer_auth(&self.alpha_receipts),
            Credential::Beta => request.header("x-gojinn-key", &self.beta),
            Credential::Wrong => request.header("x-gojinn-key", format!("gjk_{}", "0".repeat(64))),
            Credential::None => request,
        }
    }
}

/// A node serving tenants alpha and beta (both with keys, each with the jobprobe guest as
/// `probe`) and open (no keys), with the keys made by `gojinn keys new`; and its spec dir.
async fn node() -> (Node, Keys, SpecDir) {
    let (alpha, alpha_line) = new_key("alpha", &["--name", "ci"]);
    let (alpha_receipts, receipts_line) = new_key("alpha", &["--name", "auditor", "--scope", "receipts"]);
    let (beta, beta_line) = new_key("beta", &[]);
    assert!(receipts_line.ends_with("scopes: [receipts] }"), "{receipts_line}");
    let dir = SpecDir::new();
    dir.module("guest-jobprobe");
    let mut yaml = String::new();
    for (tenant, keys) in
        [("alpha", vec![alpha_line, receipts_line]), ("beta", vec![beta_line]), ("open", vec![])]
    {
        let keys: String = keys.iter().map(|line| format!("    {line}\n")).collect();
        let api_keys = if keys.is_empty() { String::new() } else { format!("  apiKeys:\n{keys}") };
        write!(
            yaml,
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: {tenant} }}\nspec:\n  replicas: 1\n{api_keys}---\n\
             apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: {{ name: probe, tenant: {tenant} }}\n\
             spec: {{ module: {{ path: modules/guest-jobprobe.wasm }} }}\n---\n"
        )
        .unwrap();
    }
    dir.write("specs.yaml", &yaml);
    let node = Node::start(&dir).await;
    let admin = Api::of(&node).token;
    (node, Keys { admin, alpha, alpha_receipts, beta }, dir)
}

/// The status and error code (empty for a success) of a response.
async fn outcome(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let code = if status < 300 {
        String::new()
    } else {
        let body: Value = response.json().await.unwrap_or_default();
        body["code"].as_str().unwrap_or("(no code)").to_owned()
    };
    (status, code)
}

/// One row of the matrix: a route and what each credential gets, in [`CREDENTIALS`] order (a
/// code `*`: any, for an answer that is not the node's but its MCP library's).
struct Row {
    name: &'static str,
    method: Method,
    path: String,
    headers: &'static [(&'static str, &'static str)],
    expected: [(u16, &'static str); 6],
}

const OK: (u16, &str) = (200, "");
const UNAUTHORIZED: (u16, &str) = (401, "unauthorized");
const FORBIDDEN: (u16, &str) = (403, "forbidden");

#[tokio::test(flavor = "multi_thread")]
async fn every_route_opens_to_exactly_the_credentials_it_should() {
    let (node, keys, _specs) = node().await;
    let api = Api::of(&node);
    // A receipt and a finished job of alpha to read.
    let call =
        keys.apply(node.client.post(node.url("/alpha/probe")), Credential::Admin).send().await.unwrap();
    assert_eq!(call.status(), 200);
    let receipt = call.headers()["gojinn-receipt"].to_str().unwrap().to_owned();
    let job = api.enqueue("/alpha/probe", &[("authorization", &format!("Bearer {}", keys.admin))], "x").await;
    api.wait_for(&job, "succeeded").await;

    let row = |name, method, path: String, expected| Row { name, method, path, headers: &[], expected };
    let admin_only = [OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED];
    let invoke = [OK, OK, FORBIDDEN, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED];
    let jobs = invoke;
    let receipts = [OK, OK, OK, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED];
    let open = [OK; 6];
    // What a tenant deployed: the admin token and any of the tenant's keys, whatever its scopes.
    let deployed = [OK, OK, OK, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED];
    let accepted = (202, "");
    let not_dead = (409, "not_dead");
    let rows = [
        row("call alpha", Method::POST, "/alpha/probe".into(), invoke),
        Row {
            name: "call alpha async",
            method: Method::POST,
            path: "/alpha/probe".into(),
            headers: &[("x-gojinn-async", "true")],
            expected: [accepted, accepted, FORBIDDEN, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED],
        },
        row(
            "call beta",
            Method::POST,
            "/beta/probe".into(),
            [OK, FORBIDDEN, FORBIDDEN, OK, UNAUTHORIZED, UNAUTHORIZED],
        ),
        row("call open tenant", Method::POST, "/open/probe".into(), open),
        row("list jobs", Method::GET, "/_gojinn/v1/tenants/alpha/jobs".into(), jobs),
        row("show job", Method::GET, format!("/_gojinn/v1/tenants/alpha/jobs/{job}"), jobs),
        row(
            "redrive job",
            Method::POST,
            format!("/_gojinn/v1/tenants/alpha/jobs/{job}/redrive"),
            [not_dead, not_dead, FORBIDDEN, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED],
        ),
        row("job status capability URL", Method::GET, format!("/_gojinn/v1/jobs/{job}"), open),
        row("list receipts", Method::GET, "/_gojinn/v1/tenants/alpha/receipts".into(), receipts),
        row("show receipt", Method::GET, format!("/_gojinn/v1/receipts/{receipt}"), receipts),
        row("audit log", Method::GET, "/_gojinn/v1/tenants/alpha/audit".into(), admin_only),
        row("status", Method::GET, "/_gojinn/v1/status".into(), admin_only),
        row("list tenants", Method::GET, "/_gojinn/v1/tenants".into(), admin_only),
        row("show tenant", Method::GET, "/_gojinn/v1/tenants/alpha".into(), deployed),
        row("list functions", Method::GET, "/_gojinn/v1/tenants/alpha/functions".into(), deployed),
        row("show function", Method::GET, "/_gojinn/v1/tenants/alpha/functions/probe".into(), deployed),
        row(
            "beta's functions",
            Method::GET,
            "/_gojinn/v1/tenants/beta/functions".into(),
            [OK, FORBIDDEN, FORBIDDEN, OK, UNAUTHORIZED, UNAUTHORIZED],
        ),
        row("OpenAPI document", Method::GET, "/_gojinn/v1/openapi.json".into(), open),
        row(
            "beta's jobs",
            Method::GET,
            "/_gojinn/v1/tenants/beta/jobs".into(),
            [OK, FORBIDDEN, FORBIDDEN, OK, UNAUTHORIZED, UNAUTHORIZED],
        ),
        // The reconcile webhook takes the admin token or a git host's proof: a tenant's key is
        // a credential it does not open (403), anything else unknown is not a proof (401).
        row(
            "reconcile webhook",
            Method::POST,
            "/_gojinn/v1/reconcile".into(),
            [accepted, FORBIDDEN, FORBIDDEN, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED],
        ),
        // MCP: authenticated first; the admin token then meets the transport's 405 for GET.
        row(
            "MCP",
            Method::GET,
            "/_gojinn/mcp".into(),
            [(405, "*"), FORBIDDEN, FORBIDDEN, FORBIDDEN, UNAUTHORIZED, UNAUTHORIZED],
        ),
    ];

    let mut table = String::new();
    let mut wrong = 0;
    for row in &rows {
        write!(table, "{:28}", row.name).unwrap();
        for (credential, expected) in CREDENTIALS.iter().zip(row.expected) {
            let mut request = node.client.request(row.method.clone(), node.url(&row.path)).body("x");
            for (name, value) in row.headers {
                request = request.header(*name, *value);
            }
            let response = keys.apply(request, *credential).send().await.unwrap();
            let unauthorized = response.status() == 401;
            let challenge = response.headers().get("www-authenticate").is_some();
            let (status, code) = outcome(response).await;
            let code_ok = expected.1 == "*" || code == expected.1;
            let cell_ok = status == expected.0 && code_ok && (!unauthorized || challenge);
            if !cell_ok {
                wrong += 1;
            }
            let mark = if cell_ok { " " } else { "!" };
            write!(table, " | {mark}{credential:?} {status} {code}").unwrap();
        }
        table.push('\n');
    }
    assert_eq!(wrong, 0, "{wrong} cells differ (marked !; a 401 must carry WWW-Authenticate):\n{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_goes_no_further_than_the_edge() {
    let logs = Logs::global();
    let (node, keys, _specs) = node().await;
    let api = Api::of(&node);
    let no_credential_headers = |seen: &Value| {
        let headers: Vec<&str> =
            seen["headers"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
        assert!(!headers.contains(&"authorization") && !headers.contains(&"x-gojinn-key"), "{headers:?}");
        assert!(headers.contains(&"x-kept"), "other headers still reach the guest: {headers:?}");
    };

    // Sync: the key in X-Gojinn-Key, and an Authorization header beside it.
    let response = node
        .client
        .post(node.url("/alpha/probe"))
        .header("x-gojinn-key", &keys.alpha)
        .header("authorization", "Basic c29tZW9uZTpzZWNyZXQ=")
        .header("x-kept", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let receipt = response.headers()["gojinn-receipt"].to_str().unwrap().to_owned();
    no_credential_headers(&response.json().await.unwrap());

    // Async: the key as a bearer token; the job's payload carries neither header.
    let bearer = format!("Bearer {}", keys.alpha);
    let job = api.enqueue("/alpha/probe", &[("authorization", &bearer), ("x-kept", "1")], "x").await;
    let done = api.wait_for(&job, "succeeded").await;
    let seen: Value = serde_json::from_str(done["result"]["body"].as_str().unwrap()).unwrap();
    no_credential_headers(&seen);
    let record = api.admin(Method::GET, &format!("alpha/jobs/{job}")).await.text().await.unwrap();

    // The receipt, as stored.
    let stored = api.admin(Method::GET, "alpha/receipts").await.text().await.unwrap();
    assert!(stored.contains(&receipt), "{stored}");

    // A tenant without keys is as before: its guest sees the headers it is sent.
    let open: Value = node
        .client
        .post(node.url("/open/probe"))
        .header("authorization", "Bearer not-a-gojinn-credential")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(open["headers"].as_array().unwrap().iter().any(|h| h == "authorization"), "{open}");

    for (what, text) in [("the job record", &record), ("the receipts", &stored), ("the logs", &logs.text())] {
        assert!(!text.contains(&keys.alpha), "the key is in {what}");
        assert!(!text.contains(&keys.alpha[4..20]), "part of the key is in {what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_added_to_a_running_tenant_closes_it_and_removing_it_opens_it_again() {
    let (node, _keys, specs) = node().await;
    let yaml = std::fs::read_to_string(specs.path().join("specs.yaml")).unwrap();
    assert_eq!(node.post("/open/probe", "x").await.status(), 200);
    let (key, line) = new_key("open", &["--scope", "invoke"]);
    let closed = yaml.replace(
        "metadata: { name: open }\nspec:\n  replicas: 1\n",
        &format!("metadata: {{ name: open }}\nspec:\n  replicas: 1\n  apiKeys:\n    {line}\n"),
    );
    assert_ne!(closed, yaml);
    specs.write("specs.yaml", &closed);
    let within = std::time::Duration::from_secs(30);
    node.eventually("/open/probe", within, |response| response.status() == 401).await;
    let with_key =
        node.client.post(node.url("/open/probe")).header("x-gojinn-key", &key).send().await.unwrap();
    assert_eq!(with_key.status(), 200);
    specs.write("specs.yaml", &yaml);
    node.eventually("/open/probe", within, |response| response.status() == 200).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_on_nats_enforces_the_keys_the_lease_holder_applied() {
    let nats = NatsServer::start().await;
    let leader_specs = SpecDir::new();
    leader_specs.module("hello");
    leader_specs.write("acme.yaml", &specs("acme", "", &[("hello", "hello", "")]));
    // The follower's own spec dir is empty: it serves only what the lease holder applied.
    let follower_specs = SpecDir::new();
    let leader = Node::start_on_nats(leader_specs.path(), &nats.url()).await;
    let follower = Node::start_on_nats(follower_specs.path(), &nats.url()).await;
    let within = std::time::Duration::from_secs(30);
    follower.eventually("/acme/hello", within, |r| r.status() == 200).await;

    let (key, line) = new_key("acme", &[]);
    leader_specs
        .write("acme.yaml", &specs("acme", &format!("apiKeys: [{}]", &line[2..]), &[("hello", "hello", "")]));
    leader.eventually("/acme/hello", within, |r| r.status() == 401).await;
    follower.eventually("/acme/hello", within, |r| r.status() == 401).await;
    let with_key = follower.client.get(follower.url("/acme/hello")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(with_key.status(), 200);
}

/// POSTs one JSON-RPC request to an MCP endpoint with `credential`: the HTTP status and the body.
async fn mcp(node: &Node, path: &str, key: &str, method: &str, params: Value) -> (u16, Value) {
    let message = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let response = node
        .client
        .post(node.url(path))
        .header("x-gojinn-key", key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&message)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// The keys of [`mcp_node`]: the admin token, alpha's with the `mcp` scope and with `invoke`
/// only, and beta's with every scope.
struct McpKeys {
    admin: String,
    alpha: String,
    alpha_invoke: String,
    beta: String,
}

/// A node serving tenants alpha and beta, each with keys and the echo example as an MCP tool;
/// and its spec dir.
async fn mcp_node() -> (Node, McpKeys, SpecDir) {
    let (alpha, alpha_line) = new_key("alpha", &["--name", "agent", "--scope", "mcp"]);
    let (alpha_invoke, invoke_line) = new_key("alpha", &["--name", "app", "--scope", "invoke"]);
    let (beta, beta_line) = new_key("beta", &[]);
    let dir = SpecDir::new();
    dir.module("echo");
    let mut yaml = String::new();
    for (tenant, keys) in [("alpha", vec![alpha_line, invoke_line]), ("beta", vec![beta_line])] {
        let keys: String = keys.iter().map(|line| format!("    {line}\n")).collect();
        write!(
            yaml,
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: {tenant} }}\nspec:\n  apiKeys:\n{keys}---\n\
             apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: {{ name: echo, tenant: {tenant} }}\n\
             spec: {{ module: {{ path: modules/echo.wasm }}, mcp: {{ tool: true }} }}\n---\n"
        )
        .unwrap();
    }
    dir.write("specs.yaml", &yaml);
    let node = Node::start(&dir).await;
    let admin = Api::of(&node).token;
    (node, McpKeys { admin, alpha, alpha_invoke, beta }, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_mcp_endpoint_offers_its_tools_only_to_its_keys_with_the_mcp_scope() {
    let (node, McpKeys { admin, alpha, alpha_invoke, beta }, _dir) = mcp_node().await;
    let names = |listed: &Value| -> Vec<String> {
        let tools = listed["result"]["tools"].as_array().cloned().unwrap_or_default();
        tools.iter().map(|tool| tool["name"].as_str().unwrap().to_owned()).collect()
    };

    let (status, listed) =
        mcp(&node, "/_gojinn/mcp/alpha", &alpha, "tools/list", serde_json::json!({})).await;
    assert_eq!((status, names(&listed)), (200, vec!["alpha.echo".to_owned()]), "{listed}");
    let (_, listed) = mcp(&node, "/_gojinn/mcp/alpha", &admin, "tools/list", serde_json::json!({})).await;
    assert_eq!(names(&listed), ["alpha.echo"], "the admin token sees the tenant's endpoint as its keys do");
    let (_, listed) = mcp(&node, "/_gojinn/mcp", &admin, "tools/list", serde_json::json!({})).await;
    assert!(names(&listed).contains(&"beta.echo".to_owned()), "the node's endpoint lists every tool");

    let call = |name: &str| serde_json::json!({ "name": name, "arguments": { "hi": 1 } });
    let (status, called) = mcp(&node, "/_gojinn/mcp/alpha", &alpha, "tools/call", call("alpha.echo")).await;
    assert_eq!((status, &called["result"]["isError"]), (200, &Value::Bool(false)), "{called}");
    for other in ["beta.echo", "gojinn.status"] {
        let (status, refused) = mcp(&node, "/_gojinn/mcp/alpha", &alpha, "tools/call", call(other)).await;
        assert_eq!((status, &refused["error"]["code"]), (200, &Value::from(-32602)), "{other}: {refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("unknown tool"), "{refused}");
    }

    for (path, key, expected) in [
        ("/_gojinn/mcp/alpha", &alpha_invoke, (403, "forbidden")),
        ("/_gojinn/mcp/alpha", &beta, (403, "forbidden")),
        ("/_gojinn/mcp", &alpha, (403, "forbidden")),
        ("/_gojinn/mcp/alpha", &format!("gjk_{}", "0".repeat(64)), (401, "unauthorized")),
    ] {
        let (status, refused) = mcp(&node, path, key, "tools/list", serde_json::json!({})).await;
        assert_eq!((status, refused["code"].as_str().unwrap_or_default()), expected, "{path}: {refused}");
    }
}

/// The authorization matrix of MCP: every method on both endpoints with each credential. The
/// node's endpoint takes the admin token only; a tenant's takes the admin token and the tenant's
/// keys with the `mcp` scope, and offers that tenant's function tools only. A cell is the HTTP
/// status and what the body is: a JSON-RPC `result`, a JSON-RPC error code, or the node's error
/// code.
#[tokio::test(flavor = "multi_thread")]
async fn every_mcp_method_on_both_endpoints_opens_to_exactly_the_credentials_it_should() {
    let (node, McpKeys { admin, alpha, alpha_invoke, beta }, _dir) = mcp_node().await;
    let wrong = format!("gjk_{}", "0".repeat(64));
    let credentials: [(&str, Option<&str>); 6] = [
        ("admin", Some(&admin)),
        ("alpha mcp", Some(&alpha)),
        ("alpha invoke", Some(&alpha_invoke)),
        ("beta", Some(&beta)),
        ("wrong", Some(&wrong)),
        ("none", None),
    ];
    let initialize = serde_json::json!({
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "matrix", "version": "1" }
    });
    let call = |name: &str| serde_json::json!({ "name": name, "arguments": { "hi": 1 } });
    let methods: [(&str, &str, Value); 4] = [
        ("initialize", "initialize", initialize),
        ("tools/list", "tools/list", serde_json::json!({})),
        ("call alpha.echo", "tools/call", call("alpha.echo")),
        ("call gojinn.status", "tools/call", serde_json::json!({ "name": "gojinn.status", "arguments": {} })),
    ];
    const RESULT: (u16, &str) = (200, "result");
    const UNKNOWN_TOOL: (u16, &str) = (200, "-32602");
    const REFUSED: (u16, &str) = (403, "forbidden");
    const NO_CREDENTIAL: (u16, &str) = (401, "unauthorized");
    // In `credentials` order.
    let expected = |path: &str, method: &str| -> [(u16, &str); 6] {
        let admin_only = [RESULT, REFUSED, REFUSED, REFUSED, NO_CREDENTIAL, NO_CREDENTIAL];
        let tenants = [RESULT, RESULT, REFUSED, REFUSED, NO_CREDENTIAL, NO_CREDENTIAL];
        match (path, method) {
            ("/_gojinn/mcp", _) => admin_only,
            // A tenant's endpoint offers its function tools, not the admin tools.
            (_, "call gojinn.status") => {
                [UNKNOWN_TOOL, UNKNOWN_TOOL, REFUSED, REFUSED, NO_CREDENTIAL, NO_CREDENTIAL]
            }
            _ => tenants,
        }
    };

    let mut table = String::new();
    let mut wrong_cells = 0;
    for path in ["/_gojinn/mcp", "/_gojinn/mcp/alpha"] {
        for (label, method, params) in &methods {
            write!(table, "{path:20} {label:20}").unwrap();
            for ((credential, key), wanted) in credentials.iter().zip(expected(path, label)) {
                let message =
                    serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
                let mut request = node
                    .client
                    .post(node.url(path))
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2025-06-18")
                    .json(&message);
                if let Some(key) = key {
                    request = request.header("x-gojinn-key", *key);
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or_default();
                let seen = if body.get("result").is_some() {
                    "result".to_owned()
                } else if let Some(code) = body["error"]["code"].as_i64() {
                    code.to_string()
                } else {
                    body["code"].as_str().unwrap_or("(none)").to_owned()
                };
                let ok = (status, seen.as_str()) == wanted;
                wrong_cells += usize::from(!ok);
                write!(table, " | {}{credential} {status} {seen}", if ok { " " } else { "!" }).unwrap();
            }
            table.push('\n');
        }
    }
    assert_eq!(wrong_cells, 0, "{wrong_cells} cells differ (marked !):\n{table}");
}
