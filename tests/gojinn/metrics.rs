//! `GET /_gojinn/metrics`: after real calls (answered, unrouted, timed out, queued as jobs, dead-
//! lettered) the Prometheus counters and histograms moved, with bounded label values.

use crate::support::api::{Api, WITHIN};
use crate::support::{Node, SpecDir, specs};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One sample of the exposition: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format (enough of it for these tests: no escaped quotes inside
/// label values, no timestamps).
fn parse(text: &str) -> Vec<Sample> {
    let sample = |line: &str| -> Sample {
        let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect("labels end with }")),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').expect("label=\"value\"");
                (key.to_owned(), value.trim_matches('"').to_owned())
            })
            .collect();
        Sample { name: name.to_owned(), labels, value: value.parse().expect("a numeric value") }
    };
    text.lines().filter(|line| !line.starts_with('#') && !line.is_empty()).map(sample).collect()
}

/// The value of the sample with exactly these labels.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> =
        labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    samples.iter().find(|s| s.name == name && s.labels == wanted).map(|s| s.value)
}

async fn scrape(node: &Node) -> Vec<Sample> {
    let response = node.get("/_gojinn/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    parse(&text)
}

/// Scrapes until `check` accepts the samples; fails after [`WITHIN`].
async fn scrape_until(node: &Node, what: &str, check: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + WITHIN;
    loop {
        let samples = scrape(node).await;
        if check(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "{what} not seen within {WITHIN:?}: {samples:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn requests_are_counted_by_function_and_status_and_timed() {
    let dir = SpecDir::new();
    dir.module("hello").module("guest-loop");
    dir.write(
        "specs.yaml",
        &specs("acme", "", &[("hello", "hello", ""), ("spin", "guest-loop", "limits: { timeout: 100ms }")]),
    );
    let node = Node::start(&dir).await;
    for _ in 0..2 {
        assert_eq!(node.get("/acme/hello").await.status(), 200);
    }
    assert_eq!(node.get("/nobody/nothing/secret-token-in-path").await.status(), 404);
    assert_eq!(node.get("/acme/spin").await.status(), 504);

    let samples = scrape(&node).await;
    let hello = [("tenant", "acme"), ("function", "hello")];
    let requests = |labels: &[(&str, &str)], status| {
        let labels: Vec<(&str, &str)> = labels.iter().copied().chain([("status", status)]).collect();
        value(&samples, "gojinn_requests_total", &labels)
    };
    assert_eq!(requests(&hello, "200"), Some(2.0));
    assert_eq!(requests(&[("tenant", "_unrouted"), ("function", "_unrouted")], "404"), Some(1.0));
    assert_eq!(requests(&[("tenant", "acme"), ("function", "spin")], "504"), Some(1.0));
    assert_eq!(value(&samples, "gojinn_request_duration_seconds_count", &hello), Some(2.0));
    let slow =
        value(&samples, "gojinn_request_duration_seconds_sum", &[("tenant", "acme"), ("function", "spin")]);
    assert!(slow.is_some_and(|secs| secs >= 0.1), "the timed-out call took its timeout: {slow:?}");
    assert_eq!(value(&samples, "gojinn_admission_wait_seconds_count", &hello), Some(2.0));
    let instantiated = value(&samples, "gojinn_instantiate_duration_seconds_count", &[]);
    assert!(instantiated.is_some_and(|n| n >= 3.0), "{instantiated:?}");
    assert_eq!(value(&samples, "gojinn_active_instances", &[]), Some(0.0));
    assert!(
        samples.iter().all(|s| s.labels.values().all(|v| !v.contains('/') && !v.contains("secret"))),
        "no label carries a path"
    );
}

#[tokio::test]
async fn jobs_are_counted_by_outcome_and_dead_letters_per_tenant() {
    let dir = SpecDir::new();
    dir.module("hello").module("guest-trap");
    dir.write(
        "specs.yaml",
        &specs(
            "acme",
            "",
            &[("hello", "hello", ""), ("trap", "guest-trap", "jobs: { maxDeliver: 1, backoff: [10ms] }")],
        ),
    );
    let node = Node::start(&dir).await;
    let api = Api::of(&node);
    let done = api.enqueue("/acme/hello", &[], "").await;
    let dead = api.enqueue("/acme/trap", &[], "").await;
    api.wait_for(&done, "succeeded").await;
    api.wait_for(&dead, "dead").await;

    let samples = scrape_until(&node, "the dead-letter gauge", |samples| {
        value(samples, "gojinn_dead_jobs", &[("tenant", "acme")]) == Some(1.0)
    })
    .await;
    let jobs = |function, state| {
        value(&samples, "gojinn_jobs_total", &[("tenant", "acme"), ("function", function), ("state", state)])
    };
    assert_eq!(jobs("hello", "succeeded"), Some(1.0));
    assert_eq!(jobs("trap", "dead"), Some(1.0));
    assert_eq!(jobs("trap", "failed"), None, "one delivery allowed: the only failure is the dead one");
    let accepted = [("tenant", "acme"), ("function", "hello"), ("status", "202")];
    assert_eq!(
        value(&samples, "gojinn_requests_total", &accepted),
        Some(1.0),
        "queued calls count as requests"
    );
}
