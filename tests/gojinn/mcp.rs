//! The MCP endpoint over real HTTP: the admin token and same-origin check in front, the
//! `initialize` handshake, a tool per opted-in function (real guests), each call a receipt with
//! trigger `mcp`, failures as error results with their receipt, and the admin tools answering as
//! the REST API does.

use crate::support::api::Api;
use crate::support::{Node, SpecDir, error_code, specs};
use serde_json::{Value, json};

const VERSION: &str = "2025-06-18";
const ECHO_SCHEMA: &str = r#"{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}"#;

/// Tenant acme: echo, trap and spin (a loop past 200ms) are tools; hello is not.
async fn start() -> (SpecDir, Node, Mcp) {
    let dir = SpecDir::new();
    dir.module("echo").module("hello").module("guest-trap").module("guest-loop");
    let echo =
        format!("mcp: {{ tool: true, description: \"Echoes its arguments\", inputSchema: {ECHO_SCHEMA} }}");
    let functions = [
        ("echo", "echo", echo.as_str()),
        ("hello", "hello", ""),
        ("trap", "guest-trap", "mcp: { tool: true }"),
        ("spin", "guest-loop", "limits: { timeout: 200ms }\nmcp: { tool: true }"),
    ];
    dir.write("specs.yaml", &specs("acme", "", &functions));
    let node = Node::start(&dir).await;
    assert!(node.server.first_deploy().errors.is_empty(), "{:?}", node.server.first_deploy().errors);
    let mcp = Mcp::of(&node);
    (dir, node, mcp)
}

/// A client of the node's MCP endpoint, with the admin token.
struct Mcp {
    url: String,
    api: Api,
}

impl Mcp {
    fn of(node: &Node) -> Self {
        Self { url: node.url("/_gojinn/mcp"), api: Api::of(node) }
    }

    /// A POST to the endpoint with the admin token, accepting what an MCP client accepts.
    fn request(&self) -> reqwest::RequestBuilder {
        let request = self.api.http.post(&self.url).bearer_auth(&self.api.token);
        request.header("accept", "application/json, text/event-stream")
    }

    /// POSTs `message` as an MCP client does.
    async fn post(&self, message: &Value) -> reqwest::Response {
        let request = self.request().header("mcp-protocol-version", VERSION).json(message);
        request.send().await.expect("POST /_gojinn/mcp")
    }

    /// A JSON-RPC request answered with `application/json`; returns the whole answer.
    async fn rpc(&self, method: &str, params: Value) -> Value {
        let response =
            self.post(&json!({ "jsonrpc": "2.0", "id": 7, "method": method, "params": params })).await;
        assert_eq!(response.status(), 200, "{method}");
        assert_eq!(response.headers()["content-type"], "application/json", "{method}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!((answer["jsonrpc"].as_str(), answer["id"].as_i64()), (Some("2.0"), Some(7)), "{answer}");
        answer
    }

    /// `tools/call` of `name`; returns the result, failing on a protocol error.
    async fn call(&self, name: &str, arguments: Value) -> Value {
        let answer = self.rpc("tools/call", json!({ "name": name, "arguments": arguments })).await;
        assert!(answer.get("error").is_none(), "{name}: {answer}");
        answer["result"].clone()
    }

    /// `tools/call` of `name` that must fail as a protocol error; returns the error.
    async fn call_error(&self, name: &str, arguments: Value) -> Value {
        let answer = self.rpc("tools/call", json!({ "name": name, "arguments": arguments })).await;
        assert!(answer.get("result").is_none(), "{name} should fail: {answer}");
        answer["error"].clone()
    }
}

/// The receipt id a tool result names.
fn receipt_of(result: &Value) -> String {
    result["_meta"]["gojinn/receipt"].as_str().unwrap_or_else(|| panic!("no receipt in {result}")).to_owned()
}

/// `GET /_gojinn/v1/{path}` with the admin token, as JSON.
async fn rest(mcp: &Mcp, path: &str) -> Value {
    let url = format!("{}/_gojinn/v1/{path}", mcp.api.base);
    let response = mcp.api.http.get(url).bearer_auth(&mcp.api.token).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_takes_only_the_admin_token_and_same_origin_posts() {
    let (_specs, node, mcp) = start().await;
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });
    let anonymous = node.client.post(&mcp.url).json(&ping).send().await.unwrap();
    assert_eq!(anonymous.headers()["www-authenticate"], r#"Bearer realm="gojinn""#);
    assert_eq!(
        error_code(anonymous).await,
        (401, "unauthorized".into(), "a valid admin bearer token is required".into())
    );
    let wrong = node.client.post(&mcp.url).bearer_auth("not-the-token").json(&ping).send().await.unwrap();
    assert_eq!(wrong.status(), 401);

    let cross_origin =
        mcp.request().header("origin", "https://evil.example").json(&ping).send().await.unwrap();
    assert_eq!(error_code(cross_origin).await.1, "forbidden_origin");
    let origin = format!("http://{}", node.server.addr());
    let same_origin = mcp.request().header("origin", origin).json(&ping).send().await.unwrap();
    assert_eq!(same_origin.status(), 200);

    let stream = mcp.api.http.get(&mcp.url).bearer_auth(&mcp.api.token).send().await.unwrap();
    assert_eq!(stream.status(), 405, "no server-sent event stream to open");
    assert_eq!(stream.headers()["allow"], "POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_names_the_protocol_the_server_and_its_tools() {
    let (_specs, _node, mcp) = start().await;
    let params = json!({
        "protocolVersion": VERSION,
        "capabilities": {},
        "clientInfo": { "name": "tests", "version": "1" }
    });
    let result = mcp.rpc("initialize", params).await["result"].clone();
    assert_eq!(result["protocolVersion"], VERSION);
    assert_eq!(result["serverInfo"]["name"], "gojinn");
    assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(result["capabilities"]["tools"].is_object(), "{result}");

    let initialized = mcp.post(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).await;
    assert_eq!(initialized.status(), 202);
    assert_eq!(mcp.rpc("ping", json!({})).await["result"], json!({}));

    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });
    let unsupported =
        mcp.request().header("mcp-protocol-version", "1999-01-01").json(&ping).send().await.unwrap();
    assert_eq!(unsupported.status(), 400, "an unknown MCP-Protocol-Version is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_shows_the_opted_in_functions_and_the_admin_tools() {
    let (_specs, _node, mcp) = start().await;
    let tools = mcp.rpc("tools/list", json!({})).await["result"]["tools"].clone();
    let names: Vec<&str> = tools.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["gojinn.job", "gojinn.receipt", "gojinn.status", "acme.echo", "acme.spin", "acme.trap"]
    );
    let echo = &tools[3];
    assert_eq!(echo["description"], "Echoes its arguments");
    assert_eq!(echo["inputSchema"], serde_json::from_str::<Value>(ECHO_SCHEMA).unwrap());
    let trap = &tools[5];
    assert_eq!(trap["inputSchema"], json!({ "type": "object" }), "the default schema");
    assert_eq!(trap["description"], "Calls function acme/trap");
    let job = &tools[0];
    assert_eq!(job["inputSchema"]["required"], json!(["tenant", "id"]));
    assert_eq!(job["annotations"]["readOnlyHint"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_runs_the_guest_and_its_receipt_says_mcp() {
    let (_specs, _node, mcp) = start().await;
    let result = mcp.call("acme.echo", json!({ "name": "gojinn" })).await;
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(result["content"], json!([{ "type": "text", "text": r#"{"name":"gojinn"}"# }]));
    assert_eq!(result["_meta"]["gojinn/status"], 200);
    let id = receipt_of(&result);

    let receipt = rest(&mcp, &format!("receipts/{id}")).await;
    let execution = &receipt["execution"];
    assert_eq!((execution["trigger"].as_str(), execution["status"].as_str()), (Some("mcp"), Some("ok")));
    assert_eq!((execution["tenant"].as_str(), execution["function"].as_str()), (Some("acme"), Some("echo")));
    assert_eq!(execution["http_status"], 200);

    let shown = mcp.call("gojinn.receipt", json!({ "id": id })).await;
    assert_eq!(shown["isError"], false);
    assert_eq!(shown["structuredContent"], receipt, "the admin tool shows what the REST API shows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_or_looping_tool_is_an_error_result_with_a_receipt() {
    let (_specs, _node, mcp) = start().await;
    for (tool, code, status) in [("acme.trap", "trap", 500), ("acme.spin", "timeout", 504)] {
        let result = mcp.call(tool, json!({})).await;
        assert_eq!(result["isError"], true, "{result}");
        let text: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(text["code"], code, "{tool}: the edge's stable error body");
        assert_eq!(result["_meta"]["gojinn/status"], status);
        let receipt = rest(&mcp, &format!("receipts/{}", receipt_of(&result))).await;
        let execution = &receipt["execution"];
        assert_eq!((execution["trigger"].as_str(), execution["status"].as_str()), (Some("mcp"), Some(code)));
        assert_eq!(execution["http_status"], status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tools_and_bad_arguments_are_protocol_errors() {
    let (_specs, _node, mcp) = start().await;
    for unknown in ["acme.hello", "acme.nope", "nope", "gojinn.plan", "Acme.echo"] {
        let error = mcp.call_error(unknown, json!({})).await;
        assert_eq!(error["code"], -32602, "{unknown}: {error}");
        assert!(error["message"].as_str().unwrap().contains("unknown tool"), "{error}");
    }
    let error = mcp.call_error("gojinn.receipt", json!({})).await;
    assert_eq!(error["code"], -32602);
    assert!(error["message"].as_str().unwrap().contains("missing field `id`"), "{error}");
    let error = mcp.call_error("gojinn.job", json!({ "tenant": "acme", "id": 5 })).await;
    assert!(error["message"].as_str().unwrap().contains("id: invalid type"), "{error}");

    let missing = mcp.call("gojinn.receipt", json!({ "id": "acme.00000000000000000000000000000000" })).await;
    assert_eq!(missing["isError"], true);
    assert_eq!(missing["structuredContent"]["code"], "no_receipt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_tools_answer_as_the_rest_api_does() {
    let (_specs, node, mcp) = start().await;
    let status = mcp.call("gojinn.status", json!({})).await;
    assert_eq!(status["structuredContent"], rest(&mcp, "status").await);
    let resources = status["structuredContent"]["resources"].as_array().unwrap();
    assert!(resources.iter().any(|r| r["resource"] == "function/acme/echo"), "{status}");

    let api = Api::of(&node);
    let id = api.enqueue("/acme/echo", &[], "{}").await;
    let done = api.wait_for(&id, "succeeded").await;
    let job = mcp.call("gojinn.job", json!({ "tenant": "acme", "id": id })).await;
    assert_eq!(job["structuredContent"], done);
    let elsewhere = mcp.call("gojinn.job", json!({ "tenant": "other", "id": id })).await;
    assert_eq!(
        (elsewhere["isError"].as_bool(), elsewhere["structuredContent"]["code"].as_str()),
        (Some(true), Some("no_job"))
    );
}
