//! An OTLP trace receiver for tests and benchmarks: one loopback port answering both OTLP/gRPC
//! (the collector's `TraceService`) and OTLP/HTTP with protobuf bodies (`POST /v1/traces`),
//! counting the spans it is sent and, unless it only counts, keeping them with the protocol they
//! came by.

use axum::body::Bytes;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How a span reached the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
}

/// A received span, with ids in lowercase hex and attribute values as text.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: BTreeMap<String, String>,
    /// `service.name` of the resource the span came with.
    pub service: String,
    pub protocol: Protocol,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct Inbox {
    /// Keep spans, or only count them.
    keep: bool,
    count: AtomicU64,
    spans: Mutex<Vec<ReceivedSpan>>,
    arrived: Notify,
}

impl Inbox {
    fn take(&self, request: ExportTraceServiceRequest, protocol: Protocol) {
        let scopes = request.resource_spans.iter().flat_map(|r| &r.scope_spans);
        self.count.fetch_add(scopes.map(|s| s.spans.len() as u64).sum(), Ordering::Relaxed);
        if !self.keep {
            return;
        }
        let mut spans = self.spans.lock().unwrap();
        for resource in request.resource_spans {
            let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
            let service = attributes_map(attributes).remove("service.name").unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|scope| scope.spans) {
                spans.push(ReceivedSpan {
                    name: span.name,
                    trace_id: hex::encode(span.trace_id),
                    span_id: hex::encode(span.span_id),
                    parent_span_id: hex::encode(span.parent_span_id),
                    attributes: attributes_map(span.attributes),
                    service: service.clone(),
                    protocol,
                });
            }
        }
        self.arrived.notify_waiters();
    }
}

fn attributes_map(attributes: Vec<KeyValue>) -> BTreeMap<String, String> {
    attributes.into_iter().map(|kv| (kv.key, kv.value.map(text).unwrap_or_default())).collect()
}

fn text(value: AnyValue) -> String {
    match value.value {
        Some(any_value::Value::StringValue(s)) => s,
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

struct Grpc(Arc<Inbox>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.take(request.into_inner(), Protocol::Grpc);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// A receiver running on the current tokio runtime until dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    inbox: Arc<Inbox>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver keeping every span.
    pub async fn start() -> Self {
        Self::serve(Inbox { keep: true, ..Inbox::default() }).await
    }

    /// A receiver that only counts spans, for load.
    pub async fn counting() -> Self {
        Self::serve(Inbox::default()).await
    }

    async fn serve(inbox: Inbox) -> Self {
        let inbox = Arc::new(inbox);
        let http_inbox = inbox.clone();
        let http = axum::routing::post(move |body: Bytes| async move {
            match ExportTraceServiceRequest::decode(body) {
                Ok(request) => {
                    http_inbox.take(request, Protocol::Http);
                    (StatusCode::OK, ExportTraceServiceResponse { partial_success: None }.encode_to_vec())
                }
                Err(error) => (StatusCode::BAD_REQUEST, error.to_string().into_bytes()),
            }
        });
        let app = tonic::service::Routes::new(TraceServiceServer::new(Grpc(inbox.clone())))
            .into_axum_router()
            .route("/v1/traces", http);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the OTLP receiver");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the OTLP receiver failed");
        });
        Self { addr, inbox, task }
    }

    /// The base URL exporters are pointed at.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Spans received so far.
    pub fn count(&self) -> u64 {
        self.inbox.count.load(Ordering::Relaxed)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.inbox.spans.lock().unwrap().clone()
    }

    /// Waits until `done` accepts the spans received so far; fails the test after `within`.
    pub async fn wait_for<F>(&self, within: Duration, mut done: F) -> Vec<ReceivedSpan>
    where
        F: FnMut(&[ReceivedSpan]) -> bool,
    {
        let deadline = Instant::now() + within;
        loop {
            let arrived = self.inbox.arrived.notified();
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the expected spans did not arrive within {within:?}; received: {spans:#?}"
            );
            let _ = tokio::time::timeout(left, arrived).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
