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

/// POSTs `body` as is, with the headers an MCP client sends; returns the status and the JSON-RPC
/// error object of the answer, which must be `application/json`.
async fn raw(mcp: &Mcp, body: &str) -> (u16, Value) {
    let request =
        mcp.request().header("mcp-protocol-version", VERSION).header("content-type", "application/json");
    json_rpc(request.body(body.to_owned()).send().await.unwrap()).await
}

/// The status and the JSON-RPC answer of `response`, checking its type and `jsonrpc`.
async fn json_rpc(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], "application/json", "{status}");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
    (status, answer)
}

/// The `gojinn_requests_total` samples of the node's metrics whose labels contain `labels`.
async fn requests_total(node: &Node, labels: &str) -> Vec<String> {
    let text = node.get("/_gojinn/metrics").await.text().await.unwrap();
    let prefix = format!("gojinn_requests_total{{{labels}");
    let mut samples: Vec<String> =
        text.lines().filter(|line| line.starts_with(&prefix)).map(str::to_owned).collect();
    samples.sort();
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_json_rpc_errors_with_the_status_the_specification_names() {
    let (_specs, _node, mcp) = start().await;
    let call = |arguments: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"acme.echo","arguments":{arguments}}}}}"#
        )
    };
    let cases: [(&str, String, u16, Value, i64); 12] = [
        ("not JSON", "{\"jsonrpc\": \"2.0\",".into(), 400, Value::Null, -32700),
        ("a batch", r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.into(), 400, Value::Null, -32600),
        ("an empty batch", "[]".into(), 400, Value::Null, -32600),
        ("not an object", "42".into(), 400, Value::Null, -32600),
        ("no jsonrpc", r#"{"id":5,"method":"ping"}"#.into(), 400, json!(5), -32600),
        ("a null id", r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#.into(), 400, Value::Null, -32600),
        ("no method", r#"{"jsonrpc":"2.0","id":"m"}"#.into(), 400, json!("m"), -32600),
        ("string arguments", call(r#""name=gojinn""#), 200, json!(9), -32602),
        ("array arguments", call(r#"["gojinn"]"#), 200, json!(9), -32602),
        ("number arguments", call("5"), 200, json!(9), -32602),
        (
            "an unknown method",
            r#"{"jsonrpc":"2.0","id":11,"method":"tools/explode"}"#.into(),
            200,
            json!(11),
            -32601,
        ),
        (
            "a notification's bad params",
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":7}"#.into(),
            400,
            Value::Null,
            -32602,
        ),
    ];
    for (what, body, status, id, code) in cases {
        let (answered, answer) = raw(&mcp, &body).await;
        assert_eq!(
            (answered, &answer["id"], answer["error"]["code"].as_i64()),
            (status, &id, Some(code)),
            "{what}: {answer}"
        );
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {answer}");
        assert!(answer.get("result").is_none(), "{what}: {answer}");
    }
    let (_, answer) = raw(&mcp, &call(r#""text""#)).await;
    assert_eq!(
        answer["error"]["message"],
        "invalid params: tools/call `arguments` must be an object of named arguments, not a string"
    );
    let (_, answer) = raw(&mcp, "[]").await;
    assert!(answer["error"]["message"].as_str().unwrap().contains("no JSON-RPC batching"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_content_type_accept_or_protocol_version_is_a_json_rpc_error() {
    let (_specs, _node, mcp) = start().await;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let untyped = mcp.request().header("mcp-protocol-version", VERSION).body(ping).send().await.unwrap();
    let (status, answer) = json_rpc(untyped).await;
    assert_eq!(
        (status, &answer["id"], &answer["error"]["code"]),
        (415, &Value::Null, &json!(-32600)),
        "{answer}"
    );
    let text = mcp.request().header("content-type", "text/plain").body(ping).send().await.unwrap();
    let (status, answer) = json_rpc(text).await;
    assert_eq!(status, 415);
    assert!(answer["error"]["message"].as_str().unwrap().contains("\"text/plain\""), "{answer}");

    let json_only =
        mcp.api.http.post(&mcp.url).bearer_auth(&mcp.api.token).header("accept", "application/json");
    let (status, answer) =
        json_rpc(json_only.header("content-type", "application/json").body(ping).send().await.unwrap()).await;
    assert_eq!((status, &answer["error"]["code"]), (406, &json!(-32600)), "{answer}");

    let unsupported =
        mcp.request().header("mcp-protocol-version", "1999-01-01").header("content-type", "application/json");
    let (status, answer) = json_rpc(unsupported.body(ping).send().await.unwrap()).await;
    assert_eq!(
        (status, &answer["id"], &answer["error"]["code"]),
        (400, &json!(1), &json!(-32600)),
        "{answer}"
    );
    assert!(answer["error"]["message"].as_str().unwrap().contains("1999-01-01"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_that_break_the_input_schema_are_refused_before_the_function_runs() {
    let (_specs, node, mcp) = start().await;
    let admitted = "gojinn_admission_wait_seconds_count{tenant=\"acme\",function=\"echo\"}";
    let cases = [
        (json!({}), "invalid arguments for acme.echo: /name: missing properties 'name'"),
        (json!({ "name": 5 }), "invalid arguments for acme.echo: /name: want string, but got number"),
    ];
    for (arguments, expected) in cases {
        let error = mcp.call_error("acme.echo", arguments.clone()).await;
        assert_eq!(
            (error["code"].as_i64(), error["message"].as_str()),
            (Some(-32602), Some(expected)),
            "{arguments}"
        );
    }
    let metrics = node.get("/_gojinn/metrics").await.text().await.unwrap();
    assert!(!metrics.contains(admitted), "the function was never admitted, so never ran: {metrics}");

    let result = mcp.call("acme.echo", json!({ "name": "gojinn", "extra": [1] })).await;
    assert_eq!(result["isError"], false, "{result}");
    receipt_of(&result);
    let metrics = node.get("/_gojinn/metrics").await.text().await.unwrap();
    assert!(metrics.contains(&format!("{admitted} 1")), "a valid call runs: {metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_requests_are_counted_under_a_fixed_label_and_not_as_the_functions() {
    let (_specs, node, mcp) = start().await;
    assert_eq!(requests_total(&node, "tenant=\"_mcp\"").await, Vec::<String>::new());
    mcp.rpc("ping", json!({})).await;
    mcp.call("acme.echo", json!({ "name": "counted" })).await;
    raw(&mcp, "not json").await;
    let anonymous = node.client.post(&mcp.url).json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }));
    assert_eq!(anonymous.send().await.unwrap().status(), 401);
    assert_eq!(
        requests_total(&node, "tenant=\"_mcp\"").await,
        [
            r#"gojinn_requests_total{tenant="_mcp",function="_mcp",status="200"} 2"#,
            r#"gojinn_requests_total{tenant="_mcp",function="_mcp",status="400"} 1"#,
            r#"gojinn_requests_total{tenant="_mcp",function="_mcp",status="401"} 1"#,
        ]
    );
    assert_eq!(
        requests_total(&node, "tenant=\"acme\"").await,
        Vec::<String>::new(),
        "a tool call counts once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_origin_is_allowed_and_a_schema_that_does_not_compile_is_refused_at_deploy() {
    let dir = SpecDir::new();
    dir.module("echo");
    let broken = "mcp: { tool: true, inputSchema: { type: object, properties: { n: { type: strnig } } } }";
    dir.write(
        "specs.yaml",
        &specs("acme", "", &[("echo", "echo", "mcp: { tool: true }"), ("broken", "echo", broken)]),
    );
    let data = tempfile::tempdir().unwrap();
    let mut config = Node::config(dir.path(), data.path());
    config.admin.mcp_allowed_origins = vec!["https://tools.example.com".to_owned()];
    let node = Node::start_config(config, data).await;
    let errors = &node.server.first_deploy().errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].location.file, std::path::Path::new("specs.yaml"), "{errors:?}");
    assert!(
        errors[0].message.starts_with("spec.mcp.inputSchema: not a valid JSON Schema: /properties/n/type: "),
        "{errors:?}"
    );

    let mcp = Mcp::of(&node);
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });
    let listed =
        mcp.request().header("origin", "https://tools.example.com").json(&ping).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    let unlisted =
        mcp.request().header("origin", "https://other.example.com").json(&ping).send().await.unwrap();
    assert_eq!(error_code(unlisted).await.1, "forbidden_origin");
    let tools = mcp.rpc("tools/list", json!({})).await["result"]["tools"].clone();
    assert!(!tools.to_string().contains("acme.broken"), "{tools}");
}
