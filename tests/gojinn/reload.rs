//! A changed spec or module is deployed without a restart; calls in flight finish on the
//! revision they started on; an invalid push keeps the last good revision serving.

use crate::support::{Node, SpecDir, error_code, specs};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(20);

fn revision(response: &reqwest::Response) -> String {
    response.headers()["gojinn-revision"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_changed_spec_is_served_while_in_flight_calls_finish_on_the_old_revision() {
    let dir = SpecDir::new();
    dir.module("guest-slow");
    let spec = |greeting: &str| {
        specs(
            "acme",
            "",
            &[(
                "slow",
                "guest-slow",
                &format!("limits: {{ timeout: 10s }}\nenv: {{ GREETING: {greeting} }}"),
            )],
        )
    };
    dir.write("specs.yaml", &spec("one"));
    let node = Node::start(&dir).await;
    let old = revision(&node.get("/acme/slow?ms=0").await);

    let in_flight = tokio::spawn(node.client.get(node.url("/acme/slow?ms=1500")).send());
    node.wait_in_flight("acme", "slow", 1).await;
    dir.write("specs.yaml", &spec("two"));
    let new = node.eventually("/acme/slow?ms=0", WITHIN, |r| revision(r) != old).await;
    assert_eq!(new.status(), 200);

    let finished = in_flight.await.unwrap().unwrap();
    assert_eq!(finished.status(), 200);
    assert_eq!(
        revision(&finished),
        old,
        "the call that started before the change finished on the old revision"
    );
}

#[tokio::test]
async fn a_changed_module_is_picked_up_without_a_restart() {
    let dir = SpecDir::new();
    dir.module("hello").module("echo");
    dir.write("specs.yaml", &specs("acme", "", &[("fn", "hello", "")]));
    let node = Node::start(&dir).await;
    let first = node.get("/acme/fn").await;
    let old = revision(&first);
    assert!(first.text().await.unwrap().contains("Hello"));

    let modules = dir.path().join("modules");
    std::fs::copy(modules.join("echo.wasm"), modules.join("next.tmp")).unwrap();
    std::fs::rename(modules.join("next.tmp"), modules.join("hello.wasm")).unwrap();
    let response = node.eventually("/acme/fn", WITHIN, |r| revision(r) != old).await;
    assert_eq!(response.status(), 200);
    assert!(!response.text().await.unwrap().contains("Hello"), "the new module (echo) answers");
}

#[tokio::test]
async fn an_invalid_push_keeps_the_last_good_revision_and_a_fix_deploys() {
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write("specs.yaml", &specs("acme", "", &[("hello", "hello", "")]));
    dir.write("other.yaml", &specs("beta", "", &[("hi", "hello", "")]));
    let node = Node::start(&dir).await;
    let good = revision(&node.get("/acme/hello").await);
    let beta = revision(&node.get("/beta/hi").await);

    dir.write("specs.yaml", "apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: { name: hello, tenant: acme }\nspec: { modul: oops }\n");
    dir.write("other.yaml", &specs("beta", "", &[("hi", "hello", "env: { CHANGED: \"yes\" }")]));
    // The valid document deploys...
    node.eventually("/beta/hi", WITHIN, |r| revision(r) != beta).await;
    // ...while the function of the invalid one keeps serving its last good revision.
    let still = node.get("/acme/hello").await;
    assert_eq!(still.status(), 200);
    assert_eq!(revision(&still), good);

    dir.write("specs.yaml", &specs("acme", "", &[("bye", "hello", "")]));
    node.eventually("/acme/bye", WITHIN, |r| r.status() == 200).await;
    let gone = node.eventually("/acme/hello", WITHIN, |r| r.status() == 404).await;
    let (status, code, _) = error_code(gone).await;
    assert_eq!(
        (status, code.as_str()),
        (404, "no_route"),
        "once every document is valid, removed functions go"
    );
}
