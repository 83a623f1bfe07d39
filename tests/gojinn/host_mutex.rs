//! `host_mutex_*` through a real guest: a lock belongs to the call that took it, expires after
//! its ttl, and needs the kv write grant on its key.

use crate::support::host::{error, node, ok, run, run_one};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const LOCKS: &str = r#"grants: { kv: { read: ["*"], write: ["locks/*"] } }"#;

fn lock(key: &str, ttl_ms: u64) -> Value {
    json!({"op": "lock", "key": key, "ttl_ms": ttl_ms})
}

fn unlock(key: &str) -> Value {
    json!({"op": "unlock", "key": key})
}

fn values(results: &[Value]) -> Vec<&Value> {
    results.iter().map(ok).collect()
}

#[tokio::test]
async fn host_mutex_a_lock_belongs_to_the_call_that_took_it() {
    let (_dir, node) = node(&[("acme", &[("state", LOCKS)])]).await;
    let first = run(&node, "/acme/state", json!([lock("locks/m", 60_000), lock("locks/m", 60_000)])).await;
    assert_eq!(values(&first), [&json!(true), &json!(true)], "the owner may take its lock again");

    let other = run(&node, "/acme/state", json!([lock("locks/m", 60_000), unlock("locks/m")])).await;
    assert_eq!(
        values(&other),
        [&json!(false), &json!(false)],
        "held by the first call, which ended without unlocking"
    );

    let own =
        run(&node, "/acme/state", json!([lock("locks/n", 60_000), unlock("locks/n"), unlock("locks/n")]))
            .await;
    assert_eq!(values(&own), [&json!(true), &json!(true), &json!(false)]);
    assert_eq!(ok(&run_one(&node, "/acme/state", lock("locks/n", 60_000)).await), &json!(true), "released");
}

#[tokio::test]
async fn host_mutex_a_lock_left_behind_expires_after_its_ttl() {
    let (_dir, node) = node(&[("acme", &[("state", LOCKS)])]).await;
    assert_eq!(ok(&run_one(&node, "/acme/state", lock("locks/e", 200)).await), &json!(true));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if ok(&run_one(&node, "/acme/state", lock("locks/e", 60_000)).await) == &json!(true) {
            break;
        }
        assert!(Instant::now() < deadline, "the 200 ms lock never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn host_mutex_needs_the_write_grant_and_a_sane_ttl() {
    let (_dir, node) = node(&[("acme", &[("state", LOCKS)])]).await;
    let results = run(
        &node,
        "/acme/state",
        json!([
            lock("other", 1000),
            unlock("other"),
            lock("locks/t", 0),
            lock("locks/t", 3_600_001),
            lock("../x", 1000)
        ]),
    )
    .await;
    let codes: Vec<&str> = results.iter().map(|r| error(r).0).collect();
    assert_eq!(codes, ["denied", "denied", "invalid_argument", "invalid_argument", "invalid_argument"]);
    assert!(error(&results[0]).1.contains("grants.kv.write"), "{}", results[0]);
}
