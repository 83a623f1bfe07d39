//! `host_kv_*` through a real guest: round trips, compare-and-set, grants, tenant isolation.

use crate::support::host::{error, node, node_with, ok, run, run_one};
use crate::support::nats::NatsServer;
use crate::support::{Node, SpecDir, specs};
use gojinn::config::BackendKind;
use serde_json::json;

const ALL: &str = r#"grants: { kv: { read: ["*"], write: ["*"] } }"#;

#[tokio::test]
async fn host_kv_round_trip_list_and_cas_conflicts() {
    let (_dir, node) = node(&[("acme", &[("state", ALL)])]).await;
    let results = run(
        &node,
        "/acme/state",
        json!([
            {"op": "kv_set", "key": "users/1", "value": "ada"},
            {"op": "kv_set", "key": "users/2", "value": "bob"},
            {"op": "kv_get", "key": "users/1"},
            {"op": "kv_list", "prefix": "users/"},
            {"op": "kv_cas", "key": "users/1", "expected": null, "new": "x"},
            {"op": "kv_cas", "key": "users/1", "expected": "wrong", "new": "x"},
            {"op": "kv_cas", "key": "users/1", "expected": "ada", "new": "grace"},
            {"op": "kv_get", "key": "users/1"},
            {"op": "kv_delete", "key": "users/1"},
            {"op": "kv_delete", "key": "users/1"},
            {"op": "kv_get", "key": "users/1"},
            {"op": "kv_cas", "key": "users/1", "expected": null, "new": "new"},
            {"op": "kv_get", "key": "users/1"},
        ]),
    )
    .await;
    let values: Vec<&serde_json::Value> = results.iter().map(ok).collect();
    assert_eq!(values[2], "ada");
    assert_eq!(values[3], &json!(["users/1", "users/2"]));
    assert_eq!(
        values[4..7],
        [&json!(false), &json!(false), &json!(true)],
        "absent and stale expectations lose"
    );
    assert_eq!(values[7], "grace");
    assert_eq!(values[10], &json!(null), "deleted (twice, which is fine)");
    assert_eq!((values[11], values[12]), (&json!(true), &json!("new")), "expected null: must be absent");
}

#[tokio::test]
async fn host_kv_grants_are_enforced_on_every_call() {
    let grants = r#"grants: { kv: { read: ["public/*", "config"], write: ["public/own/*"] } }"#;
    let (_dir, node) = node(&[("acme", &[("limited", grants), ("none", "")])]).await;
    let results = run(
        &node,
        "/acme/limited",
        json!([
            {"op": "kv_get", "key": "secret"},
            {"op": "kv_set", "key": "public/x", "value": "v"},
            {"op": "kv_set", "key": "config", "value": "v"},
            {"op": "kv_delete", "key": "public/x"},
            {"op": "kv_cas", "key": "public/x", "expected": null, "new": "v"},
            {"op": "kv_list", "prefix": ""},
            {"op": "kv_list", "prefix": "conf"},
            {"op": "kv_set", "key": "public/own/x", "value": "mine"},
            {"op": "kv_get", "key": "public/own/x"},
            {"op": "kv_get", "key": "config"},
            {"op": "kv_list", "prefix": "public/"},
        ]),
    )
    .await;
    for denied in &results[..7] {
        assert_eq!(error(denied).0, "denied", "{denied}");
    }
    let (_, message) = error(&results[0]);
    assert!(
        message.contains("\"secret\"") && message.contains("grants.kv.read") && message.contains("public/*")
    );
    assert!(error(&results[1]).1.contains("grants.kv.write"), "{}", results[1]);
    assert_eq!(ok(&results[8]), "mine");
    assert_eq!(ok(&results[9]), &json!(null));
    assert_eq!(ok(&results[10]), &json!(["public/own/x"]));

    let ungranted = run_one(&node, "/acme/none", json!({"op": "kv_get", "key": "public/own/x"})).await;
    assert_eq!(error(&ungranted).0, "denied");
}

#[tokio::test]
async fn host_kv_tenants_are_isolated_even_with_crafted_keys() {
    let (_dir, node) = node(&[("a", &[("state", ALL)]), ("b", &[("state", ALL)])]).await;
    let set = |value: &str| json!({"op": "kv_set", "key": "shared", "value": value});
    ok(&run_one(&node, "/a/state", set("from a")).await);
    let read_shared = json!({"op": "kv_get", "key": "shared"});
    assert_eq!(
        ok(&run_one(&node, "/b/state", read_shared.clone()).await),
        &json!(null),
        "b cannot see a's key"
    );
    ok(&run_one(&node, "/b/state", set("from b")).await);
    assert_eq!(ok(&run_one(&node, "/a/state", read_shared.clone()).await), "from a", "b's write is b's own");
    assert_eq!(ok(&run_one(&node, "/b/state", read_shared).await), "from b");

    for crafted in ["../b/shared", "/b/shared", "b/../shared", "b//shared", "_gojinn/tenants", "a b"] {
        let ops = json!([
            {"op": "kv_get", "key": crafted},
            {"op": "kv_set", "key": crafted, "value": "x"},
        ]);
        for result in run(&node, "/a/state", ops).await {
            assert_eq!(error(&result).0, "invalid_argument", "{crafted}: {result}");
        }
    }
    let listed = run_one(&node, "/a/state", json!({"op": "kv_list", "prefix": ""})).await;
    assert_eq!(ok(&listed), &json!(["shared"]));
}

#[tokio::test]
async fn host_kv_concurrent_counter_increments_are_never_lost() {
    let dir = SpecDir::new();
    dir.module("counter");
    let grants = r#"grants: { kv: { read: ["counters/*"], write: ["counters/*"] } }"#;
    dir.write("specs.yaml", &specs("acme", "", &[("counter", "counter", grants)]));
    let node = Node::start(&dir).await;
    let increments: Vec<_> = (0..20)
        .map(|_| tokio::spawn(node.client.post(node.url("/acme/counter?name=visits")).send()))
        .collect();
    for increment in increments {
        assert_eq!(increment.await.unwrap().unwrap().status(), 200);
    }
    let count = node.get("/acme/counter?name=visits").await.text().await.unwrap();
    assert_eq!(count, "20");
    assert_eq!(node.get("/acme/counter?name=other").await.text().await.unwrap(), "0");
}

#[tokio::test]
async fn host_grants_that_cannot_be_honoured_fail_the_deploy_listing_every_problem() {
    let dir = SpecDir::new();
    dir.module("guest-state");
    let grants = r#"grants: { kv: { read: ["a*b"], write: ["../x"] }, http: { allow: ["*.example.com:443", "example.com"] } }"#;
    dir.write("specs.yaml", &specs("acme", "", &[("bad", "guest-state", grants)]));
    let node = Node::start(&dir).await;
    let errors = &node.server.first_deploy().errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let message = errors[0].to_string();
    for expected in
        ["spec.grants", "kv.read[0] \"a*b\"", "kv.write[0] \"../x\"", "*.example.com:443", "\"example.com\""]
    {
        assert!(message.contains(expected), "{expected:?} missing from {message}");
    }
    assert_eq!(node.get("/acme/bad").await.status(), 404, "the function was not deployed");
}

#[tokio::test]
async fn host_kv_locks_and_isolation_behave_the_same_on_nats() {
    let server = NatsServer::start().await;
    let tenants = [("a", &[("state", ALL)][..]), ("b", &[("state", ALL)][..])];
    let (_dir, node) = node_with(&tenants, |config| {
        config.state.backend = BackendKind::Nats;
        config.state.nats_url = server.url();
    })
    .await;
    let results = run(
        &node,
        "/a/state",
        json!([
            {"op": "kv_set", "key": "k/1", "value": "one"},
            {"op": "kv_cas", "key": "k/1", "expected": "one", "new": "two"},
            {"op": "kv_cas", "key": "k/1", "expected": "one", "new": "three"},
            {"op": "kv_cas", "key": "k/2", "expected": null, "new": "x"},
            {"op": "kv_list", "prefix": "k/"},
            {"op": "kv_get", "key": "k/1"},
            {"op": "lock", "key": "k/lock", "ttl_ms": 60_000},
        ]),
    )
    .await;
    let values: Vec<&serde_json::Value> = results.iter().map(ok).collect();
    assert_eq!(
        values[1..],
        [&json!(true), &json!(false), &json!(true), &json!(["k/1", "k/2"]), &json!("two"), &json!(true)]
    );
    let other = run(
        &node,
        "/b/state",
        json!([
            {"op": "kv_get", "key": "k/1"},
            {"op": "kv_list", "prefix": ""},
            {"op": "lock", "key": "k/lock", "ttl_ms": 60_000},
        ]),
    )
    .await;
    let values: Vec<&serde_json::Value> = other.iter().map(ok).collect();
    assert_eq!(values, [&json!(null), &json!([]), &json!(true)], "b has its own keys and locks");
    let again = run_one(&node, "/a/state", json!({"op": "lock", "key": "k/lock", "ttl_ms": 60_000})).await;
    assert_eq!(ok(&again), &json!(false), "a's lock is held by the earlier call");
}

/// One call storing 100 values of 1 MiB, with no `kvMaxBytes` in the tenant's spec: the default
/// quota (64 MiB) stops it with `-3` before the tenant's data passes the quota.
async fn one_call_storing_100_mib_hits_the_default_quota(node: &Node, path: &str) {
    let value = "x".repeat(1024);
    let ops: Vec<serde_json::Value> = (0..100)
        .map(|i| json!({"op": "kv_set", "key": format!("big/{i}"), "value": value, "repeat": 1024}))
        .collect();
    let results = run(node, path, json!(ops)).await;
    let stored = results.iter().take_while(|r| r.get("ok").is_some()).count();
    assert!((60..64).contains(&stored), "{stored} values of 1 MiB were stored");
    let (code, message) = error(&results[stored]);
    assert_eq!(code, "quota", "{message}");
    assert!(results[stored..].iter().all(|r| error(r).0 == "quota"), "every later write is refused too");
    let used = stored as u64 * ((1 << 20) + 6);
    assert!(used <= gojinn::spec::DEFAULT_KV_MAX_BYTES, "{used} bytes stored");
}

const BIG_WRITES: &str = r#"grants: { kv: { read: ["*"], write: ["big/*"] } }
limits: { timeout: 60s }"#;

#[tokio::test]
async fn host_kv_a_tenant_without_a_kv_quota_gets_the_default_one() {
    let (_dir, node) = node(&[("acme", &[("state", BIG_WRITES)])]).await;
    one_call_storing_100_mib_hits_the_default_quota(&node, "/acme/state").await;
}

#[tokio::test]
async fn host_kv_a_tenant_without_a_kv_quota_gets_the_default_one_on_nats() {
    let server = NatsServer::start().await;
    let (_dir, node) = node_with(&[("acme", &[("state", BIG_WRITES)])], |config| {
        config.state.backend = BackendKind::Nats;
        config.state.nats_url = server.url();
    })
    .await;
    one_call_storing_100_mib_hits_the_default_quota(&node, "/acme/state").await;
}

/// A tenant with `kvMaxKeys: 3`: a guest stores three keys, a fourth is `-3` (quota) like a full
/// bucket, an overwrite of a key it holds succeeds, and a delete makes room for a new key.
async fn a_fourth_key_is_quota_until_a_delete_makes_room(node: &Node) {
    let set = |key: &str, value: &str| json!({"op": "kv_set", "key": key, "value": value});
    let results = run(
        node,
        "/acme/state",
        json!([
            set("a", "1"),
            set("b", "1"),
            set("c", "1"),
            set("d", "1"),
            set("a", "2"),
            {"op": "kv_delete", "key": "b"},
            set("d", "1"),
            {"op": "kv_list", "prefix": ""},
        ]),
    )
    .await;
    for stored in &results[..3] {
        ok(stored);
    }
    let (code, message) = error(&results[3]);
    assert_eq!(code, "quota", "{message}");
    for done in &results[4..7] {
        ok(done);
    }
    assert_eq!(ok(&results[7]), &json!(["a", "c", "d"]));
}

/// `acme/state` with every KV grant, its tenant limited to 3 keys.
fn three_keys() -> SpecDir {
    let dir = SpecDir::new();
    dir.module("guest-state");
    dir.write("specs.yaml", &specs("acme", "quotas: { kvMaxKeys: 3 }", &[("state", "guest-state", ALL)]));
    dir
}

#[tokio::test]
async fn host_kv_a_new_key_past_the_tenants_key_quota_is_refused_on_embedded() {
    let dir = three_keys();
    let node = Node::start(&dir).await;
    a_fourth_key_is_quota_until_a_delete_makes_room(&node).await;
}

#[tokio::test]
async fn host_kv_a_new_key_past_the_tenants_key_quota_is_refused_on_nats() {
    let server = NatsServer::start().await;
    let dir = three_keys();
    let data = tempfile::tempdir().unwrap();
    let mut config = Node::config(dir.path(), data.path());
    config.state.backend = BackendKind::Nats;
    config.state.nats_url = server.url();
    let node = Node::start_config(config, data).await;
    a_fourth_key_is_quota_until_a_delete_makes_room(&node).await;
}
