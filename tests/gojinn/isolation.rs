//! A misbehaving guest never breaks or blocks other requests.

use crate::support::{Node, SpecDir, specs};
use std::time::Duration;

#[tokio::test]
async fn hello_keeps_answering_while_guests_loop() {
    let dir = SpecDir::new();
    dir.module("guest-loop").module("hello");
    dir.write(
        "specs.yaml",
        &specs("acme", "", &[("spin", "guest-loop", "limits: { timeout: 3s }"), ("hello", "hello", "")]),
    );
    let node = Node::start(&dir).await;
    // As many loopers as this machine has cores, so every worker thread could be hogged.
    let loopers: Vec<_> = (0..4)
        .map(|_| {
            let request = node.client.get(node.url("/acme/spin")).send();
            tokio::spawn(request)
        })
        .collect();
    node.wait_in_flight("acme", "spin", 4).await;
    for _ in 0..20 {
        let response = node.get("/acme/hello").await;
        assert_eq!(response.status(), 200);
    }
    assert!(
        loopers.iter().all(|l| !l.is_finished()),
        "hello answered 20 times while every looping guest was still running"
    );
    for looper in loopers {
        let response = tokio::time::timeout(Duration::from_secs(10), looper).await.unwrap().unwrap().unwrap();
        assert_eq!(response.status(), 504);
    }
    assert_eq!(node.get("/acme/hello").await.status(), 200);
}

#[tokio::test]
async fn a_trapping_guest_leaves_the_next_call_unaffected() {
    let dir = SpecDir::new();
    dir.module("guest-trap").module("guest-membomb").module("hello");
    dir.write(
        "specs.yaml",
        &specs(
            "acme",
            "",
            &[
                ("trap", "guest-trap", ""),
                ("bomb", "guest-membomb", "limits: { memory: 8Mi, timeout: 5s }"),
                ("hello", "hello", ""),
            ],
        ),
    );
    let node = Node::start(&dir).await;
    for _ in 0..3 {
        assert_eq!(node.get("/acme/trap").await.status(), 500);
        assert_eq!(node.get("/acme/bomb").await.status(), 500);
        let hello = node.get("/acme/hello").await;
        assert_eq!(hello.status(), 200);
        assert!(hello.text().await.unwrap().contains("Hello"));
    }
}
