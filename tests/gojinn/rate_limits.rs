//! Request rate limits over real HTTP: a tenant's `quotas.requestsPerSecond` and a function's
//! `limits.requestsPerSecond` let exactly a second's worth of a burst through and refuse the rest
//! with 429 `rate_limited` and `Retry-After`; each tenant and function has its own bucket; HTTP
//! calls, MCP tool calls and async enqueues draw from the same one.
//!
//! The limits refill with the real clock, so a burst that took `elapsed` may pass up to
//! `rate × elapsed` more than the bucket held; [`assert_passed`] allows exactly that and no
//! more, which is the exact burst whenever the burst ends within one refill interval.

use crate::support::api::Api;
use crate::support::{Node, SpecDir, error_code, specs};
use serde_json::{Value, json};
use std::time::Instant;

/// How a burst of calls ended.
struct Burst {
    passed: u32,
    /// `(status, code, Retry-After)` of each refused call.
    refused: Vec<(u16, String, u64)>,
    /// The message of the first refused call.
    message: Option<String>,
}

/// Sends `count` GETs of `path` at once.
async fn burst(node: &Node, path: &str, count: usize) -> Burst {
    let requests = (0..count).map(|_| node.client.get(node.url(path)).send());
    let mut burst = Burst { passed: 0, refused: Vec::new(), message: None };
    for response in futures::future::join_all(requests).await {
        let response = response.expect("request");
        if response.status() == 200 {
            burst.passed += 1;
            continue;
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse::<u64>().expect("Retry-After in whole seconds"))
            .unwrap_or(0);
        let (status, code, message) = error_code(response).await;
        burst.refused.push((status, code, retry_after));
        burst.message.get_or_insert(message);
    }
    burst
}

/// `passed` is the bucket's `held` tokens plus what `per_second` refilled since `since`, no
/// more and no less; every refused call was a 429 `rate_limited` with a `Retry-After` of 1.
fn assert_passed(burst: &Burst, held: u32, per_second: u32, since: Instant, what: &str) {
    let elapsed = since.elapsed();
    let refilled = (elapsed.as_secs_f64() * f64::from(per_second)) as u32;
    assert!(
        (held..=held + refilled).contains(&burst.passed),
        "{what}: {} passed, expected {held} (+ up to {refilled} refilled in {elapsed:?})",
        burst.passed
    );
    for refused in &burst.refused {
        assert_eq!(refused, &(429, "rate_limited".to_owned(), 1), "{what}");
    }
}

/// Tenant alpha (5 a second): `open` (no limit of its own) and `narrow` (2 a second). Tenant
/// beta (5 a second): `open`. Tenant gamma: no limit. Tenant delta (1 a second): `open`, an MCP
/// tool too.
fn spec_dir() -> SpecDir {
    let dir = SpecDir::new();
    dir.module("hello");
    let alpha = specs(
        "alpha",
        "quotas: { requestsPerSecond: 5 }",
        &[("open", "hello", ""), ("narrow", "hello", "limits: { requestsPerSecond: 2 }")],
    );
    let beta = specs("beta", "quotas: { requestsPerSecond: 5 }", &[("open", "hello", "")]);
    let gamma = specs("gamma", "", &[("open", "hello", "")]);
    let delta =
        specs("delta", "quotas: { requestsPerSecond: 1 }", &[("open", "hello", "mcp: { tool: true }")]);
    dir.write("specs.yaml", &format!("{alpha}---\n{beta}---\n{gamma}---\n{delta}"));
    dir
}

async fn start() -> (SpecDir, Node) {
    let dir = spec_dir();
    let node = Node::start(&dir).await;
    assert!(node.server.first_deploy().errors.is_empty(), "{:?}", node.server.first_deploy().errors);
    (dir, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_passes_a_seconds_worth_and_the_rest_is_rate_limited_for_that_tenant_only() {
    let (_specs, node) = start().await;
    let since = Instant::now();
    let alpha = burst(&node, "/alpha/open", 12).await;
    assert_passed(&alpha, 5, 5, since, "alpha");
    assert!(!alpha.refused.is_empty());

    // Beta's bucket is its own: alpha's burst took none of it.
    let since = Instant::now();
    let beta = burst(&node, "/beta/open", 12).await;
    assert_passed(&beta, 5, 5, since, "beta");
    // Gamma sets no limit.
    assert_eq!(burst(&node, "/gamma/open", 30).await.passed, 30);

    let metrics = node.get("/_gojinn/metrics").await.text().await.unwrap();
    let counted = format!(
        r#"gojinn_rate_limited_total{{tenant="alpha",function="open",limit="tenant"}} {}"#,
        alpha.refused.len()
    );
    assert!(metrics.contains(&counted), "{counted} missing from\n{metrics}");
    assert!(metrics.contains(r#"gojinn_requests_total{tenant="alpha",function="open",status="429"}"#));
    assert!(!metrics.contains(r#"tenant="gamma",function="open",limit="#), "gamma was never limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_limit_below_its_tenants_applies_and_leaves_the_rest_to_its_siblings() {
    let (_specs, node) = start().await;
    let since = Instant::now();
    let narrow = burst(&node, "/alpha/narrow", 10).await;
    assert_passed(&narrow, 2, 2, since, "narrow");
    let message = narrow.message.as_deref().unwrap_or_default();
    assert!(message.starts_with("the function's rate limit of 2 requests per second"), "{message}");

    // The calls narrow's own limit refused took nothing from the tenant: 5 - 2 are left.
    let open = burst(&node, "/alpha/open", 10).await;
    assert_passed(&open, 5 - narrow.passed, 5, since, "open after narrow");
    let message = open.message.as_deref().unwrap_or_default();
    assert!(message.starts_with("the tenant's rate limit of 5 requests per second"), "{message}");
}

/// `tools/call` of `tool` with the admin token; returns the result.
async fn call_tool(node: &Node, api: &Api, tool: &str) -> Value {
    let call = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": tool, "arguments": {} } });
    let answer: Value = api
        .http
        .post(node.url("/_gojinn/mcp"))
        .bearer_auth(&api.token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&call)
        .send()
        .await
        .expect("POST /_gojinn/mcp")
        .json()
        .await
        .unwrap();
    answer["result"].clone()
}

/// The stable code of a tool result's error body.
fn tool_error_code(result: &Value) -> (Value, String) {
    let body: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    (result["_meta"]["gojinn/status"].clone(), body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tool_calls_and_async_enqueues_draw_from_the_same_bucket_as_http_calls() {
    // Delta's bucket holds one token and takes a second to refill one: the calls below run
    // within a few milliseconds, far inside that second.
    let (_specs, node) = start().await;
    let api = Api::of(&node);
    let job = api.enqueue("/delta/open", &[], "").await;
    let refused = burst(&node, "/delta/open", 1).await;
    assert_eq!(refused.refused, [(429, "rate_limited".to_owned(), 1)], "the enqueue took the token");
    let tool = call_tool(&node, &api, "delta.open").await;
    assert_eq!(tool["isError"], true, "{tool}");
    assert_eq!(tool_error_code(&tool), (json!(429), "rate_limited".to_owned()));
    let queued = api.call_async("/delta/open", &[], "").await;
    assert_eq!(error_code(queued).await.1, "rate_limited");

    // The queued job runs (its attempts take no token: its request took one).
    api.wait_for(&job, "succeeded").await;
}
