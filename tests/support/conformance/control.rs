//! The control behaviours of the conformance suite: the reconciler's records, module blobs and
//! leases, the write counter that proves an apply idempotent, and provisioning drift.
//!
//! Control records are shared by the whole backend, not scoped to a tenant, so every behaviour
//! keeps to keys, blobs and leases under a name of its own.

use super::{PATIENCE, SLACK, assert_invalid, bytes, eventually, provision, tenant, unique};
use bytes::Bytes;
use gojinn::state::{State, TenantResources};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A record key prefix no other test uses.
fn prefix(label: &str) -> String {
    format!("{}/", unique(label))
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Distinct bytes of `len`, so a blob is not a run of one byte value.
fn module(len: usize, seed: u8) -> Bytes {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>().into()
}

fn records(pairs: &[(&str, &str)]) -> BTreeMap<String, Bytes> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), bytes(v))).collect()
}

pub async fn control_records_put_list_delete(state: &State) {
    let c = &state.control;
    let p = prefix("rec");
    let key = |k: &str| format!("{p}{k}");
    assert!(c.records(&p).await.unwrap().is_empty());
    for (k, v) in [("a", "1"), ("b/1", "2"), ("b/2", "3"), ("b.x", "4"), ("ba", "5")] {
        assert!(c.put_record(&key(k), bytes(v)).await.unwrap(), "a new record is a change");
    }
    // A record that shares the prefix string but not the directory.
    let sibling = format!("{}x/a", p.trim_end_matches('/'));
    assert!(c.put_record(&sibling, bytes("s")).await.unwrap());

    let all = c.records(&p).await.unwrap();
    let want = [("a", "1"), ("b.x", "4"), ("b/1", "2"), ("b/2", "3"), ("ba", "5")];
    let want: Vec<(String, &str)> = want.iter().map(|(k, v)| (key(k), *v)).collect();
    let want: Vec<(&str, &str)> = want.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(all, records(&want), "every record under the prefix, none beside it");
    assert_eq!(c.records(&key("b/")).await.unwrap(), records(&want[2..4]));
    assert_eq!(c.records(&key("b")).await.unwrap().len(), 4, "b.x, b/1, b/2 and ba");
    assert_eq!(c.records(&key("b.")).await.unwrap(), records(&want[1..2]));
    assert!(c.records(&key("zzz")).await.unwrap().is_empty());
    assert!(c.records("").await.unwrap().contains_key(&sibling), "the empty prefix lists everything");

    assert!(!c.put_record(&key("a"), bytes("1")).await.unwrap(), "an identical value writes nothing");
    assert!(c.put_record(&key("a"), bytes("1b")).await.unwrap(), "a new value is a change");
    assert!(c.put_record(&key("empty"), Bytes::new()).await.unwrap());
    assert!(!c.put_record(&key("empty"), Bytes::new()).await.unwrap());
    assert_eq!(c.records(&key("empty")).await.unwrap(), records(&[(key("empty").as_str(), "")]));

    assert!(c.delete_record(&key("a")).await.unwrap(), "it existed");
    assert!(!c.delete_record(&key("a")).await.unwrap(), "already gone");
    assert!(!c.delete_record(&key("never")).await.unwrap());
    assert!(!c.records(&p).await.unwrap().contains_key(&key("a")));
    assert!(c.put_record(&key("a"), bytes("1")).await.unwrap(), "a deleted record can come back");
    assert_eq!(c.records(&key("a")).await.unwrap(), records(&[(key("a").as_str(), "1")]));
}

pub async fn control_record_changes_are_told_to_a_watcher(state: &State) {
    use futures::StreamExt;
    let c = &state.control;
    let key = format!("{}applied", prefix("watch"));
    let mut changes = c.record_changes(&key).await.expect("watch a record");
    async fn told(changes: &mut gojinn::state::RecordChanges) -> Option<()> {
        tokio::time::timeout(PATIENCE, changes.next()).await.expect("a change told within the patience")
    }
    assert!(c.put_record(&key, bytes("1")).await.unwrap());
    assert_eq!(told(&mut changes).await, Some(()), "a write is told");
    assert!(c.put_record(&key, bytes("2")).await.unwrap());
    assert_eq!(told(&mut changes).await, Some(()), "each write is told");
    assert!(c.delete_record(&key).await.unwrap());
    assert_eq!(told(&mut changes).await, Some(()), "a delete is told");

    let mut second = c.record_changes(&key).await.expect("a second watcher");
    assert!(c.put_record(&key, bytes("3")).await.unwrap());
    assert_eq!(told(&mut second).await, Some(()), "every watcher is told");
    assert_eq!(told(&mut changes).await, Some(()));
    assert_invalid(c.record_changes("Not A Key").await.map(drop), "an invalid key is refused");
}

pub async fn control_record_keys_are_validated(state: &State) {
    let c = &state.control;
    let too_long = "k".repeat(257);
    let bad = [
        "",
        "/a",
        "a/",
        "a//b",
        "a..b",
        ".a",
        "a.",
        "a/.b",
        "A",
        "a b",
        "a*",
        "a>",
        "ü",
        "LEASE.x",
        too_long.as_str(),
    ];
    for key in bad {
        assert_invalid(c.put_record(key, bytes("v")).await, &format!("put {key:?}"));
        assert_invalid(c.delete_record(key).await, &format!("delete {key:?}"));
    }
    for prefix in ["/", "a//", "A", "a*", "LEASE."] {
        assert_invalid(c.records(prefix).await, &format!("records {prefix:?}"));
    }
    let p = prefix("keys");
    let longest = format!("{p}{}", "k".repeat(256 - p.len()));
    assert!(c.put_record(&longest, bytes("v")).await.expect("a key of the maximum length"));
    assert!(c.put_record(&format!("{p}a-z_0.9/x"), bytes("v")).await.expect("every allowed character"));
    let too_big = Bytes::from(vec![b'v'; gojinn::state::MAX_VALUE_BYTES + 1]);
    assert_invalid(c.put_record(&format!("{p}big"), too_big).await, "an oversized record");
    assert_eq!(c.records(&p).await.unwrap().len(), 2, "nothing invalid was written");
}

pub async fn control_blobs_put_get_delete(state: &State) {
    let c = &state.control;
    let small = module(1000, 1);
    // Several object store chunks, with a short last one.
    let large = module((3 << 20) + 12_345, 2);
    let (small_sha, large_sha) = (sha256(&small), sha256(&large));
    assert_eq!(c.blob(&small_sha).await.unwrap(), None);

    assert!(c.put_blob(&small_sha, small.clone()).await.unwrap(), "a new blob is written");
    assert!(!c.put_blob(&small_sha, small.clone()).await.unwrap(), "a present blob writes nothing");
    assert!(c.put_blob(&large_sha, large.clone()).await.unwrap());
    assert_eq!(c.blob(&small_sha).await.unwrap(), Some(small.clone()));
    assert_eq!(c.blob(&large_sha).await.unwrap(), Some(large.clone()));
    let listed = c.blobs().await.unwrap();
    assert!(listed.contains(&small_sha) && listed.contains(&large_sha), "{listed:?}");

    let other = module(1000, 3);
    assert_invalid(c.put_blob(&sha256(&other), small.clone()).await, "bytes that do not match the sha256");
    assert_eq!(c.blob(&sha256(&other)).await.unwrap(), None, "a refused blob is not stored");
    assert_invalid(c.put_blob(&small_sha, other).await, "other bytes under a present sha256");
    assert_eq!(c.blob(&small_sha).await.unwrap(), Some(small.clone()), "the blob is unchanged");

    for bad in ["", "abc", &small_sha.to_uppercase(), &format!("{small_sha}0"), &"g".repeat(64)] {
        assert_invalid(c.put_blob(bad, small.clone()).await, &format!("put_blob {bad:?}"));
        assert_invalid(c.blob(bad).await, &format!("blob {bad:?}"));
        assert_invalid(c.delete_blob(bad).await, &format!("delete_blob {bad:?}"));
    }
    let too_big = Bytes::from(vec![0u8; (128 << 20) + 1]);
    assert_invalid(c.put_blob(&sha256(&too_big), too_big).await, "a blob over 128 MiB");

    assert!(c.delete_blob(&small_sha).await.unwrap(), "it existed");
    assert!(!c.delete_blob(&small_sha).await.unwrap(), "already gone");
    assert_eq!(c.blob(&small_sha).await.unwrap(), None);
    assert!(!c.blobs().await.unwrap().contains(&small_sha));
    assert!(c.put_blob(&small_sha, small.clone()).await.unwrap(), "a deleted blob can be stored again");
    assert_eq!(c.blob(&small_sha).await.unwrap(), Some(small));
}

pub async fn control_lease_excludes_others_and_holder_renews(state: &State) {
    let c = &state.control;
    let lease = unique("lease").to_string();
    let timer = format!("{lease}/timer");
    let short = Duration::from_millis(300);
    assert!(c.acquire_lease(&lease, "node-a", short).await.unwrap());
    assert!(!c.acquire_lease(&lease, "node-b", PATIENCE).await.unwrap(), "held by another");
    // A reference lease taken after the first: once it has expired, so has the first ttl.
    assert!(c.acquire_lease(&timer, "node-a", short).await.unwrap());
    assert!(c.acquire_lease(&lease, "node-a", Duration::from_secs(60)).await.unwrap(), "the holder renews");
    eventually("the reference lease expiring", || async {
        c.acquire_lease(&timer, "node-b", Duration::from_secs(60)).await.unwrap()
    })
    .await;
    assert!(
        !c.acquire_lease(&lease, "node-b", PATIENCE).await.unwrap(),
        "the renewal outlived the first ttl"
    );
}

pub async fn control_lease_taken_over_only_after_expiry(state: &State) {
    let c = &state.control;
    let lease = unique("expiry").to_string();
    let ttl = Duration::from_millis(300);
    let taken = Instant::now();
    assert!(c.acquire_lease(&lease, "node-a", ttl).await.unwrap());
    assert!(!c.acquire_lease(&lease, "node-b", ttl).await.unwrap());
    eventually("the lease expiring", || async { c.acquire_lease(&lease, "node-b", PATIENCE).await.unwrap() })
        .await;
    assert!(taken.elapsed() + SLACK >= ttl, "taken over after {:?}, before its ttl", taken.elapsed());
    assert!(!c.acquire_lease(&lease, "node-a", ttl).await.unwrap(), "the new holder has it");
    assert!(!c.release_lease(&lease, "node-a").await.unwrap(), "the old holder cannot release it");
    assert!(c.acquire_lease(&lease, "node-b", PATIENCE).await.unwrap(), "the new holder renews");

    for (name, holder, ttl) in [
        ("", "h", PATIENCE),
        ("Bad", "h", PATIENCE),
        ("a//b", "h", PATIENCE),
        ("ok", "", PATIENCE),
        ("ok", "h", Duration::ZERO),
    ] {
        assert_invalid(
            c.acquire_lease(name, holder, ttl).await,
            &format!("acquire {name:?} {holder:?} {ttl:?}"),
        );
    }
    assert_invalid(c.release_lease("a..b", "h").await, "release of an invalid name");
}

pub async fn control_lease_released_only_by_holder(state: &State) {
    let c = &state.control;
    let lease = unique("release").to_string();
    assert!(c.acquire_lease(&lease, "node-a", PATIENCE).await.unwrap());
    assert!(!c.release_lease(&lease, "node-b").await.unwrap(), "not the holder");
    assert!(!c.acquire_lease(&lease, "node-b", PATIENCE).await.unwrap(), "still held");
    assert!(c.release_lease(&lease, "node-a").await.unwrap());
    assert!(!c.release_lease(&lease, "node-a").await.unwrap(), "already released");
    assert!(!c.release_lease(&format!("{lease}/never"), "node-a").await.unwrap(), "never taken");
    assert!(c.acquire_lease(&lease, "node-b", PATIENCE).await.unwrap(), "a released lease is free");
    let listed = state.control.records("").await.unwrap();
    assert!(listed.keys().all(|k| !k.contains(&lease)), "leases are not records: {listed:?}");
}

/// Every changing call counts exactly one write; unchanged ones, refusals and reads count none.
pub async fn control_writes_are_counted_exactly(state: &State) {
    let c = &state.control;
    let mut last = c.writes();
    let mut expect = |what: &str, wrote: u64| {
        let now = c.writes();
        assert_eq!(now - last, wrote, "{what}: writes went from {last} to {now}");
        last = now;
    };
    let resources =
        TenantResources { name: unique("writes"), replicas: 1, kv_max_bytes: None, kv_max_keys: None };
    assert!(state.provisioner.ensure_tenant(&resources).await.unwrap());
    expect("a first ensure", 1);
    assert!(!state.provisioner.ensure_tenant(&resources).await.unwrap());
    expect("an identical ensure", 0);
    state.provisioner.drift(&resources).await.unwrap();
    expect("drift", 0);

    let key = format!("{}rec", prefix("writes"));
    assert!(c.put_record(&key, bytes("1")).await.unwrap());
    expect("a new record", 1);
    assert!(!c.put_record(&key, bytes("1")).await.unwrap());
    expect("an identical record", 0);
    assert!(c.put_record(&key, bytes("2")).await.unwrap());
    expect("a changed record", 1);
    c.records(&key).await.unwrap();
    expect("a listing", 0);
    assert!(c.delete_record(&key).await.unwrap());
    expect("a deleted record", 1);
    assert!(!c.delete_record(&key).await.unwrap());
    expect("deleting an absent record", 0);
    assert_invalid(c.put_record("Bad", bytes("1")).await, "a bad key");
    expect("a refused record", 0);

    let blob = module(4096, 9);
    let sha = sha256(&blob);
    assert!(c.put_blob(&sha, blob.clone()).await.unwrap());
    expect("a new blob", 1);
    assert!(!c.put_blob(&sha, blob.clone()).await.unwrap());
    expect("a present blob", 0);
    c.blob(&sha).await.unwrap();
    c.blobs().await.unwrap();
    expect("blob reads", 0);
    assert!(c.delete_blob(&sha).await.unwrap());
    expect("a deleted blob", 1);
    assert!(!c.delete_blob(&sha).await.unwrap());
    expect("deleting an absent blob", 0);

    let lease = unique("wlease").to_string();
    assert!(c.acquire_lease(&lease, "a", PATIENCE).await.unwrap());
    expect("a taken lease", 1);
    assert!(c.acquire_lease(&lease, "a", PATIENCE).await.unwrap());
    expect("a renewed lease", 1);
    assert!(!c.acquire_lease(&lease, "b", PATIENCE).await.unwrap());
    expect("a refused lease", 0);
    assert!(!c.release_lease(&lease, "b").await.unwrap());
    expect("a release by another holder", 0);
    assert!(c.release_lease(&lease, "a").await.unwrap());
    expect("a released lease", 1);

    assert!(state.provisioner.remove_tenant(&resources.name).await.unwrap());
    expect("a removal", 1);
    assert!(!state.provisioner.remove_tenant(&resources.name).await.unwrap());
    expect("removing an absent tenant", 0);
}

/// Drift is empty for a tenant as ensured, names a quota that changed behind the caller's back
/// (here: by an ensure with other settings), and reports a tenant without resources as missing.
pub async fn provisioning_drift(state: &State) {
    let p = &state.provisioner;
    let ghost =
        TenantResources { name: unique("nodrift"), replicas: 1, kv_max_bytes: None, kv_max_keys: None };
    assert!(!p.drift(&ghost).await.unwrap().is_empty(), "no resources at all is all missing");

    let t = tenant(state, "drift").await;
    let wanted = TenantResources { name: t.clone(), replicas: 1, kv_max_bytes: None, kv_max_keys: None };
    assert_eq!(p.drift(&wanted).await.unwrap(), Vec::<String>::new(), "as ensured");
    provision(state, t.clone(), Some(1 << 20)).await;
    let lines = p.drift(&wanted).await.unwrap();
    assert!(
        lines.iter().any(|l| l.contains("max_bytes 1048576, want unlimited")),
        "the changed quota is named with its value and the wanted one: {lines:?}"
    );
    let quota = TenantResources { kv_max_bytes: Some(1 << 20), ..wanted };
    assert_eq!(p.drift(&quota).await.unwrap(), Vec::<String>::new());
    p.remove_tenant(&t).await.unwrap();
    assert!(!p.drift(&quota).await.unwrap().is_empty(), "removed: everything is missing");
}
