//! Slow and greedy clients over real sockets: a client that dribbles its request head or keeps a
//! connection idle is closed at its timeout, one address holds at most its share of
//! connections and the node at most its total, request heads are bounded in count, size and URL
//! length, and a stop lets a call in flight finish. Timeouts are short and each test waits for
//! the server's close with a deadline far longer than the timeout, so a loaded machine only
//! makes the waits longer, never the outcome different.

use crate::support::sockets::{closed_within, connect_from, eventually_served, exchange, get, read_response};
use crate::support::{Node, SpecDir, specs};
use gojinn::config::{HttpSettings, NodeConfig};
use gojinn::spec::{ByteSize, Span};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Far longer than any timeout configured here, so that waiting for a close cannot flake.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);
/// Long enough that no test sees it expire.
const NEVER: Span = Span(Duration::from_secs(600));

fn ms(millis: u64) -> Span {
    Span(Duration::from_millis(millis))
}

/// A node serving the slow guest as `demo/slow`, with `http` bounds.
async fn node(http: HttpSettings) -> (SpecDir, Node) {
    let dir = SpecDir::new();
    let slow = ("slow", "guest-slow", "limits: { timeout: 10s }");
    dir.module("guest-slow").write("specs.yaml", &specs("demo", "", &[slow]));
    let data = tempfile::tempdir().unwrap();
    let config = NodeConfig { http, ..Node::config(dir.path(), data.path()) };
    let node = Node::start_config(config, data).await;
    (dir, node)
}

const HEALTH: &str = "/_gojinn/health";

#[tokio::test]
async fn a_client_that_dribbles_its_headers_or_sends_nothing_is_closed_at_the_header_timeout() {
    let (_dir, node) =
        node(HttpSettings { header_read_timeout: ms(300), idle_timeout: NEVER, ..HttpSettings::default() })
            .await;
    let addr = node.server.addr();

    let (mut reader, mut writer) = connect_from("127.0.0.1", addr).await.into_split();
    let dribbler = tokio::spawn(async move {
        writer.write_all(b"GET /_gojinn/health HTTP/1.1\r\nHost: gojinn.test\r\n").await?;
        let mut every = tokio::time::interval(Duration::from_millis(50));
        for line in 0.. {
            every.tick().await;
            writer.write_all(format!("X-Dribble-{line}: 1\r\n").as_bytes()).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut silent = connect_from("127.0.0.1", addr).await;

    let before_close = closed_within(&mut reader, CLOSE_WITHIN).await;
    assert!(before_close.is_empty(), "no answer to a head that never ended: {before_close:?}");
    let dribbled = tokio::time::timeout(CLOSE_WITHIN, dribbler).await.expect("the dribbler ends");
    assert!(dribbled.unwrap().is_err(), "the server stopped taking the dribbled lines");
    assert!(closed_within(&mut silent, CLOSE_WITHIN).await.is_empty(), "a silent connection is closed too");

    let mut prompt = connect_from("127.0.0.1", addr).await;
    let response = exchange(&mut prompt, &get(HEALTH, &[])).await.expect("a prompt client is served");
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let (_dir, node) =
        node(HttpSettings { header_read_timeout: NEVER, idle_timeout: ms(300), ..HttpSettings::default() })
            .await;
    let mut stream = connect_from("127.0.0.1", node.server.addr()).await;
    for _ in 0..2 {
        let response = exchange(&mut stream, &get(HEALTH, &[])).await.expect("served on one connection");
        assert_eq!(response.status, 200);
    }
    // The header timeout is ten minutes: only the idle timeout can close it within the deadline.
    assert!(closed_within(&mut stream, CLOSE_WITHIN).await.is_empty(), "closed without a word");
}

#[tokio::test]
async fn a_call_that_runs_longer_than_both_timeouts_is_answered() {
    let (_dir, node) =
        node(HttpSettings { header_read_timeout: ms(200), idle_timeout: ms(200), ..HttpSettings::default() })
            .await;
    let mut stream = connect_from("127.0.0.1", node.server.addr()).await;
    let response = exchange(&mut stream, &get("/demo/slow?ms=1500", &[])).await.expect("answered");
    assert_eq!((response.status, response.body.as_slice()), (200, &b"slept 1500"[..]));
}

#[tokio::test]
async fn one_address_holds_at_most_its_connections_and_others_are_unaffected() {
    let (_dir, node) =
        node(HttpSettings { max_connections: 100, max_connections_per_client: 3, ..HttpSettings::default() })
            .await;
    let addr = node.server.addr();
    let request = get(HEALTH, &[]);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from("127.0.0.1", addr).await;
        assert_eq!(exchange(&mut stream, &request).await.expect("within the cap").status, 200);
        held.push(stream);
    }
    let mut fourth = connect_from("127.0.0.1", addr).await;
    assert!(closed_within(&mut fourth, CLOSE_WITHIN).await.is_empty(), "the fourth is closed unanswered");

    let mut other = connect_from("127.0.0.2", addr).await;
    assert_eq!(exchange(&mut other, &request).await.expect("another address is served").status, 200);

    drop(held.pop());
    let (_again, response) = eventually_served("127.0.0.1", addr, &request).await;
    assert_eq!(response.status, 200, "a place again once one of the three closed");
}

#[tokio::test]
async fn the_node_holds_at_most_its_total_of_connections() {
    let (_dir, node) =
        node(HttpSettings { max_connections: 2, max_connections_per_client: 2, ..HttpSettings::default() })
            .await;
    let addr = node.server.addr();
    let request = get(HEALTH, &[]);
    let mut first = connect_from("127.0.0.1", addr).await;
    assert_eq!(exchange(&mut first, &request).await.expect("first").status, 200);
    let mut second = connect_from("127.0.0.2", addr).await;
    assert_eq!(exchange(&mut second, &request).await.expect("second").status, 200);

    let mut third = connect_from("127.0.0.3", addr).await;
    assert!(closed_within(&mut third, CLOSE_WITHIN).await.is_empty(), "the third is closed unanswered");

    drop(first);
    let (_again, response) = eventually_served("127.0.0.3", addr, &request).await;
    assert_eq!(response.status, 200, "a place again once one closed");
}

/// A GET of the health route whose head is exactly `bytes` long, padded with one header.
fn head_of(bytes: usize) -> String {
    let bare = get(HEALTH, &["X-Pad: ".into()]).len();
    get(HEALTH, &[format!("X-Pad: {}", "p".repeat(bytes - bare))])
}

#[tokio::test]
async fn request_heads_are_bounded_in_url_length_header_count_and_size_at_their_edges() {
    let (_dir, node) = node(HttpSettings {
        max_url_length: ByteSize(100),
        max_headers: 8,
        max_header_bytes: ByteSize(1024),
        ..HttpSettings::default()
    })
    .await;
    let addr = node.server.addr();
    let answer = |request: String| async move {
        let mut stream = connect_from("127.0.0.1", addr).await;
        let response = exchange(&mut stream, &request).await.expect("an answer");
        (response, stream)
    };

    let at_limit = format!("/{}", "a".repeat(99));
    let (response, _) = answer(get(&at_limit, &[])).await;
    assert_eq!(
        (response.status, response.json()["code"].clone()),
        (404, "no_route".into()),
        "100 bytes pass"
    );
    let (response, _) = answer(get(&format!("{at_limit}b"), &[])).await;
    let body = response.json();
    assert_eq!((response.status, body["code"].as_str()), (414, Some("url_too_long")), "{body}");
    assert_eq!(body["message"], "the URL is longer than this node's limit of 100 bytes");

    let headers = |count: usize| (1..count).map(|n| format!("X-N{n}: {n}")).collect::<Vec<_>>();
    let (response, _) = answer(get(HEALTH, &headers(8))).await;
    assert_eq!(response.status, 200, "Host and 7 more: 8 headers pass");
    let (response, mut stream) = answer(get(HEALTH, &headers(9))).await;
    assert_eq!((response.status, response.body.len()), (431, 0), "a 9th header: an empty 431");
    assert!(closed_within(&mut stream, CLOSE_WITHIN).await.is_empty(), "and the connection closes");

    let (response, _) = answer(head_of(1024)).await;
    assert_eq!(response.status, 200, "a head of 1024 bytes passes");
    let (response, mut stream) = answer(head_of(1025)).await;
    assert_eq!((response.status, response.body.len()), (431, 0), "one byte more: an empty 431");
    assert!(closed_within(&mut stream, CLOSE_WITHIN).await.is_empty(), "and the connection closes");
}

#[tokio::test]
async fn stopping_the_node_lets_a_call_in_flight_finish_and_closes_idle_connections() {
    let (_dir, node) = node(HttpSettings::default()).await;
    let addr = node.server.addr();
    let mut idle = connect_from("127.0.0.1", addr).await;
    assert_eq!(exchange(&mut idle, &get(HEALTH, &[])).await.expect("served").status, 200);
    let mut in_flight = connect_from("127.0.0.1", addr).await;
    in_flight.write_all(get("/demo/slow?ms=1000", &[]).as_bytes()).await.unwrap();
    node.wait_in_flight("demo", "slow", 1).await;

    let Node { server, .. } = node;
    let stopped = tokio::spawn(server.stop());
    let response = read_response(&mut in_flight).await.expect("the call in flight is answered");
    assert_eq!((response.status, response.body.as_slice()), (200, &b"slept 1000"[..]));
    assert!(closed_within(&mut idle, CLOSE_WITHIN).await.is_empty(), "the idle connection is closed");
    tokio::time::timeout(CLOSE_WITHIN, stopped).await.expect("stopped in time").unwrap().unwrap();
}
