//! Traces over OTLP, received by a collector started in the test (support/otlp.rs): the span
//! tree of a request (request → instantiate, host calls), its attributes, `traceparent` in and
//! out, an async job continuing the trace of the request that queued it, and nothing exported for
//! a request its caller did not sample; over OTLP/gRPC and OTLP/HTTP.
//!
//! Each test installs its own subscriber for its thread (`set_default`); `#[tokio::test]` runs
//! the node on that thread, and guest calls carry the subscriber to the guest executor.

use crate::support::api::Api;
use crate::support::otlp::{Protocol, ReceivedSpan, Receiver};
use crate::support::{Node, SpecDir, specs};
use gojinn::config::OtlpProtocol;
use gojinn::telemetry::{self, ExportConfig, Telemetry};
use std::time::Duration;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";
const WITHIN: Duration = Duration::from_secs(30);

/// Dropped in field order: the exporter sends its last spans while the receiver still listens.
struct Traced {
    telemetry: Telemetry,
    receiver: Receiver,
    node: Node,
    _specs: SpecDir,
    _subscriber: tracing::dispatcher::DefaultGuard,
}

/// A receiver, this thread's subscriber exporting to it over `protocol`, and [`hello_node`].
async fn traced(protocol: OtlpProtocol) -> Traced {
    let receiver = Receiver::start().await;
    let export = ExportConfig::new(&receiver.endpoint(), protocol);
    let (dispatch, telemetry) = telemetry::subscriber(Some(&export)).expect("telemetry");
    let subscriber = tracing::dispatcher::set_default(&dispatch);
    let (specs, node) = hello_node().await;
    Traced { receiver, node, telemetry, _specs: specs, _subscriber: subscriber }
}

/// A node serving `hello` (which logs through the host) for tenant `acme`, and its specs.
async fn hello_node() -> (SpecDir, Node) {
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write("specs.yaml", &specs("acme", "", &[("hello", "hello", "")]));
    let node = Node::start(&dir).await;
    (dir, node)
}

impl Traced {
    /// Exports what is finished, then waits until `done` accepts the spans of `trace`.
    async fn spans_of(&self, trace: &str, done: impl Fn(&[&ReceivedSpan]) -> bool) -> Vec<ReceivedSpan> {
        self.telemetry.flush().await.expect("flush");
        let spans = self
            .receiver
            .wait_for(WITHIN, |spans| done(&spans.iter().filter(|s| s.trace_id == trace).collect::<Vec<_>>()))
            .await;
        spans.into_iter().filter(|s| s.trace_id == trace).collect()
    }
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn has(spans: &[&ReceivedSpan], name: &str) -> bool {
    spans.iter().any(|s| s.name == name)
}

/// The `(trace id, span id)` of a `traceparent`.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!((parts.len(), parts[0], parts[3]), (4, "00", "01"), "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test]
async fn a_request_exports_its_span_tree_in_the_callers_trace_over_grpc() {
    let traced = traced(OtlpProtocol::Grpc).await;
    let response = traced
        .node
        .client
        .get(traced.node.url("/acme/hello?name=otel"))
        .header("traceparent", format!("00-{TRACE}-{CALLER}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let revision = response.headers()["gojinn-revision"].to_str().unwrap().to_owned();
    let (trace, server_span) = ids(response.headers()["traceparent"].to_str().unwrap());
    assert_eq!(trace, TRACE, "the response continues the caller's trace");

    let spans = traced
        .spans_of(TRACE, |spans| {
            has(spans, "GET /acme/hello/{*rest}") && has(spans, "instantiate") && has(spans, "host.log")
        })
        .await;
    let request = named(&spans, "GET /acme/hello/{*rest}")[0];
    assert_eq!(request.parent_span_id, CALLER, "the caller's span is the request span's parent");
    assert_eq!(request.span_id, server_span, "the response names the request span");
    assert_eq!(request.protocol, Protocol::Grpc);
    assert_eq!(request.service, "gojinn");
    for (key, expected) in [
        ("http.request.method", "GET"),
        ("url.path", "/acme/hello"),
        ("http.route", "/acme/hello/{*rest}"),
        ("http.response.status_code", "200"),
        ("server.address", "127.0.0.1"),
        ("gojinn.tenant", "acme"),
        ("gojinn.function", "hello"),
    ] {
        assert_eq!(request.attribute(key), Some(expected), "{key} of {request:#?}");
    }
    assert!(request.attribute("gojinn.revision").is_some_and(|r| r.starts_with(&revision)), "{request:#?}");
    assert!(request.attributes.keys().all(|key| !key.contains("query") && !key.contains("header")));
    for child in ["instantiate", "host.log"] {
        let child = named(&spans, child);
        assert_eq!(child.len(), 1, "{spans:#?}");
        assert_eq!(child[0].parent_span_id, request.span_id, "{} is a child of the request", child[0].name);
    }
}

#[tokio::test]
async fn an_async_job_continues_the_trace_of_the_request_that_queued_it() {
    let traced = traced(OtlpProtocol::Grpc).await;
    let api = Api::of(&traced.node);
    let traceparent = format!("00-{TRACE}-{CALLER}-01");
    let job = api.enqueue("/acme/hello", &[("traceparent", &traceparent)], "").await;
    api.wait_for(&job, "succeeded").await;

    let spans = traced.spans_of(TRACE, |spans| has(spans, "job") && has(spans, "host.log")).await;
    let request = named(&spans, "POST /acme/hello/{*rest}")[0];
    assert_eq!(request.parent_span_id, CALLER);
    assert_eq!(request.attribute("http.response.status_code"), Some("202"));
    let job_span = named(&spans, "job")[0];
    assert_eq!(job_span.parent_span_id, request.span_id, "the job's parent is the request that queued it");
    assert_eq!(job_span.attribute("gojinn.job"), Some(job.as_str()));
    assert_eq!(job_span.attribute("gojinn.attempt"), Some("1"));
    for child in ["instantiate", "host.log"] {
        assert!(
            named(&spans, child).iter().any(|s| s.parent_span_id == job_span.span_id),
            "{child} runs under the job span: {spans:#?}"
        );
    }
}

#[tokio::test]
async fn spans_are_exported_over_http_and_a_request_without_traceparent_starts_a_trace() {
    let traced = traced(OtlpProtocol::Http).await;
    let response = traced.node.get("/acme/hello").await;
    assert_eq!(response.status(), 200);
    let (trace, server_span) = ids(response.headers()["traceparent"].to_str().unwrap());
    let unrouted = traced.node.get("/acme/nothing").await;
    assert_eq!(unrouted.status(), 404);
    let (unrouted_trace, _) = ids(unrouted.headers()["traceparent"].to_str().unwrap());

    let spans = traced.spans_of(&trace, |spans| has(spans, "instantiate")).await;
    let request = spans.iter().find(|s| s.span_id == server_span).expect("the request span");
    assert_eq!((request.parent_span_id.as_str(), request.protocol), ("", Protocol::Http), "a root span");
    let unrouted = traced.spans_of(&unrouted_trace, |spans| !spans.is_empty()).await;
    assert_eq!(unrouted[0].name, "GET", "an unrouted request's span is named by its method only");
    assert_eq!(unrouted[0].attribute("http.response.status_code"), Some("404"));
    assert_eq!(unrouted[0].attribute("gojinn.tenant"), None);
}

#[tokio::test]
async fn without_an_exporter_responses_carry_no_traceparent() {
    let (_specs, node) = hello_node().await;
    let response = node
        .client
        .get(node.url("/acme/hello"))
        .header("traceparent", format!("00-{TRACE}-{CALLER}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("traceparent").is_none());
}

#[tokio::test]
async fn a_request_the_caller_did_not_sample_exports_no_span_at_all() {
    const UNSAMPLED: &str = "0af7651916cd43dd8448eb211c80319c";
    let traced = traced(OtlpProtocol::Grpc).await;
    let get = |trace: &str, flags: &str| {
        let request = traced.node.client.get(traced.node.url("/acme/hello"));
        request.header("traceparent", format!("00-{trace}-{CALLER}-{flags}")).send()
    };
    assert_eq!(get(UNSAMPLED, "00").await.unwrap().status(), 200);
    assert_eq!(get(TRACE, "01").await.unwrap().status(), 200);

    // Spans are exported in the order they end: once the sampled request's tree has arrived,
    // anything of the unsampled one would have too.
    traced.spans_of(TRACE, |spans| has(spans, "GET /acme/hello/{*rest}") && has(spans, "host.log")).await;
    let received = traced.receiver.spans();
    let stray: Vec<_> = received
        .iter()
        .filter(|s| s.trace_id == UNSAMPLED || (s.parent_span_id.is_empty() && s.name != "audit.append"))
        .filter(|s| s.trace_id != TRACE)
        .collect();
    assert!(stray.is_empty(), "no span of the unsampled request, nor an orphaned child: {stray:#?}");
}
