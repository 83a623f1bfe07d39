//! `host_http_fetch` through a real guest against a test server on 127.0.0.1: refused by default
//! (the SSRF rules), and reachable only when the node allows private egress and the function's
//! allow-list names it, with redirects, size cap and deadline enforced.

use crate::support::host::{Tenant, error, node, node_with, ok, run_one};
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use gojinn::config::EgressSettings;
use gojinn::spec::{ByteSize, Span};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A server on 127.0.0.1 that counts the requests it receives.
struct Remote {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Remote {
    async fn start() -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route("/hello", get(|| async { ([("x-test", "1")], "hello") }))
            .route(
                "/echo",
                post(|headers: axum::http::HeaderMap, body: String| async move {
                    let kind = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    format!("{kind}:{body}")
                }),
            )
            .route("/big", get(|| async { "x".repeat(64 << 10) }))
            .route(
                "/to",
                get(|RawQuery(target): RawQuery| async move { Redirect::to(&target.unwrap_or_default()) }),
            )
            .route("/loop", get(|| async { Redirect::to("/loop") }))
            .route("/hang", get(std::future::pending::<String>))
            .layer(axum::middleware::from_fn_with_state(hits.clone(), count))
            .into_make_service();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { port, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn count(
    State(hits): State<Arc<AtomicUsize>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> impl IntoResponse {
    hits.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

fn fetch(url: &str) -> Value {
    json!({"op": "fetch", "url": url})
}

fn allow(entries: &[String]) -> String {
    format!("grants: {{ http: {{ allow: {} }} }}", serde_json::to_string(entries).unwrap())
}

fn private_egress() -> EgressSettings {
    EgressSettings { allow_private: true, timeout: Span(Duration::from_secs(5)), ..EgressSettings::default() }
}

#[tokio::test]
async fn host_http_loopback_is_refused_by_default_whatever_its_spelling() {
    let remote = Remote::start().await;
    let port = remote.port;
    let entries: Vec<String> = ["127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]", "0.0.0.0"]
        .iter()
        .map(|host| format!("{host}:{port}"))
        .collect();
    let grants = allow(&entries);
    let (_dir, node) = node(&[("acme", &[("fetch", grants.as_str())])]).await;
    for url in [
        format!("http://127.0.0.1:{port}/hello"),
        format!("http://localhost:{port}/hello"),
        format!("http://[::1]:{port}/hello"),
        format!("http://[::ffff:127.0.0.1]:{port}/hello"),
        format!("http://2130706433:{port}/hello"),
        format!("http://0x7f.1:{port}/hello"),
        format!("http://0.0.0.0:{port}/hello"),
    ] {
        let result = run_one(&node, "/acme/fetch", fetch(&url)).await;
        let (code, message) = error(&result);
        assert_eq!(code, "denied", "{url}: {result}");
        assert!(message.contains("not a public address"), "{url}: {message}");
    }
    assert_eq!(remote.hits(), 0, "no request reached the loopback server");
}

#[tokio::test]
async fn host_http_fetch_round_trips_when_the_node_allows_private_egress() {
    let remote = Remote::start().await;
    let grants = allow(&[format!("127.0.0.1:{}", remote.port)]);
    let tenants: &[Tenant<'_>] = &[("acme", &[("fetch", grants.as_str())])];
    let (_dir, node) = node_with(tenants, |config| config.egress = private_egress()).await;

    let hello = run_one(&node, "/acme/fetch", fetch(&remote.url("/hello"))).await;
    let hello = ok(&hello);
    assert_eq!((hello["status"].as_u64(), hello["body"].as_str()), (Some(200), Some("hello")));
    assert_eq!(hello["headers"]["x-test"], json!(["1"]));

    let echo = json!({"op": "fetch", "method": "POST", "url": remote.url("/echo"),
                      "headers": {"content-type": "text/plain"}, "body": "ping"});
    assert_eq!(ok(&run_one(&node, "/acme/fetch", echo).await)["body"], "text/plain:ping");
}

#[tokio::test]
async fn host_http_hosts_and_schemes_outside_the_grant_are_refused() {
    let remote = Remote::start().await;
    let other = Remote::start().await;
    let grants = allow(&[format!("127.0.0.1:{}", remote.port)]);
    let tenants: &[Tenant<'_>] = &[("acme", &[("fetch", grants.as_str()), ("none", "")])];
    let (_dir, node) = node_with(tenants, |config| config.egress = private_egress()).await;
    let cases = [
        (other.url("/hello"), "grants.http.allow"),
        (format!("http://localhost:{}/hello", remote.port), "grants.http.allow"),
        (format!("ftp://127.0.0.1:{}/hello", remote.port), "only http and https"),
        (remote.url("/to?") + &other.url("/hello"), "grants.http.allow"),
        (remote.url("/to?") + &format!("http://localhost:{}/hello", remote.port), "grants.http.allow"),
    ];
    for (url, expected) in cases {
        let result = run_one(&node, "/acme/fetch", fetch(&url)).await;
        let (code, message) = error(&result);
        assert_eq!(code, "denied", "{url}: {result}");
        assert!(message.contains(expected), "{url}: {message}");
    }
    assert_eq!(other.hits(), 0, "the server outside the allow-list was never reached");
    let ungranted = run_one(&node, "/acme/none", fetch(&remote.url("/hello"))).await;
    assert!(error(&ungranted).1.contains("grants.http.allow"), "{ungranted}");
}

#[tokio::test]
async fn host_http_redirects_within_the_grant_are_followed_up_to_the_limit() {
    let remote = Remote::start().await;
    let grants = allow(&[format!("127.0.0.1:{}", remote.port)]);
    let tenants: &[Tenant<'_>] = &[("acme", &[("fetch", grants.as_str())])];
    let (_dir, node) =
        node_with(tenants, |config| config.egress = EgressSettings { max_redirects: 3, ..private_egress() })
            .await;
    let followed = run_one(&node, "/acme/fetch", fetch(&(remote.url("/to?") + &remote.url("/hello")))).await;
    assert_eq!(ok(&followed)["body"], "hello");
    let before = remote.hits();
    let looping = run_one(&node, "/acme/fetch", fetch(&remote.url("/loop"))).await;
    let (code, message) = error(&looping);
    assert_eq!((code, message.contains("more than 3 times")), ("unavailable", true), "{message}");
    assert_eq!(remote.hits() - before, 4, "the first request and three redirects");
}

#[tokio::test]
async fn host_http_a_body_past_max_response_is_a_quota_error_and_a_hung_remote_times_out() {
    let remote = Remote::start().await;
    let grants = allow(&[format!("127.0.0.1:{}", remote.port)]);
    let tenants: &[Tenant<'_>] =
        &[("acme", &[("fetch", grants.as_str()), ("slow", &format!("limits: {{ timeout: 5s }}\n{grants}"))])];
    let egress = EgressSettings {
        max_response: ByteSize(16 << 10),
        timeout: Span(Duration::from_millis(300)),
        ..private_egress()
    };
    let (_dir, node) = node_with(tenants, |config| config.egress = egress).await;
    let big = run_one(&node, "/acme/fetch", fetch(&remote.url("/big"))).await;
    let (code, message) = error(&big);
    assert_eq!(code, "quota", "{big}");
    assert!(message.contains("16384"), "{message}");
    assert_eq!(ok(&run_one(&node, "/acme/fetch", fetch(&remote.url("/hello"))).await)["body"], "hello");

    let hung = run_one(&node, "/acme/slow", fetch(&remote.url("/hang"))).await;
    let (code, message) = error(&hung);
    assert_eq!(code, "unavailable", "{hung}");
    assert!(message.contains("300ms"), "{message}");
}
