//! The state conformance suite: one public async function per behaviour every backend must show,
//! each taking a [`State`] (or, for restarts, an opener that opens a `State` on the same storage
//! every call). [`conformance_tests!`](crate::conformance_tests) stamps out one `#[tokio::test]`
//! per behaviour for a backend.
//!
//! Every function provisions its own tenants with unique names, so tests may share one backend
//! (one NATS server). Waits are bounded poll loops or blocking fetches with a deadline, never a
//! sleep that the outcome depends on.

mod control;
mod jobs;

pub use control::*;
pub use jobs::*;

use bytes::Bytes;
use gojinn::spec::Name;
use gojinn::state::{MAX_KEY_BYTES, MAX_VALUE_BYTES, State, StateError, TenantResources};
use jobs::{fetch_none, fetch_one, keyed_job, new_job, patient};
use std::future::Future;
use std::time::{Duration, Instant};

/// Stamps out one `#[tokio::test]` per conformance behaviour.
///
/// `$open` is called once per test, as `($open)().await`, and must give fresh storage as an
/// *opener*: a value `open` such that `open().await` is a [`State`] on that storage, the same
/// storage every call (the restart test calls it twice, dropping the first `State` before the
/// second call). The opener is kept alive until the test ends, so it may own a temp dir or a
/// server. In types: `$open: Fn() -> impl Future<Output = O>`, `O: Fn() -> impl Future<Output = State>`.
#[macro_export]
macro_rules! conformance_tests {
    ($open:expr) => {
        $crate::conformance_tests!(@each $open;
            kv_get_put_delete,
            kv_keys_prefix_order_limit,
            kv_cas,
            kv_rejects_invalid_keys,
            kv_value_size_limit,
            kv_quota,
            kv_key_quota,
            tenant_isolation_kv,
            tenant_isolation_locks,
            tenant_isolation_jobs,
            tenant_isolation_audit,
            provisioning_is_idempotent,
            remove_tenant_deletes_everything,
            unprovisioned_tenant_is_rejected,
            lock_excludes_others_and_owner_renews,
            lock_expires_after_ttl,
            unlock_only_by_owner,
            job_runs_to_success,
            job_idempotency_key_dedups,
            job_redelivered_after_ack_wait,
            job_released_is_delivered_again_at_once,
            job_in_progress_extends_lease,
            job_retried_after_backoff,
            job_dead_after_max_deliver,
            job_redrive,
            job_list_newest_first,
            fetch_ignores_other_functions,
            fetch_wakes_on_enqueue,
            audit_append_read,
            control_records_put_list_delete,
            control_record_changes_are_told_to_a_watcher,
            control_record_keys_are_validated,
            control_blobs_put_get_delete,
            control_lease_excludes_others_and_holder_renews,
            control_lease_taken_over_only_after_expiry,
            control_lease_released_only_by_holder,
            control_writes_are_counted_exactly,
            provisioning_drift,
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn restart_durability() {
            let open = ($open)().await;
            $crate::support::conformance::restart_durability(&open).await;
        }
    };
    (@each $open:expr; $($behaviour:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                let open = ($open)().await;
                let state = open().await;
                $crate::support::conformance::$behaviour(&state).await;
            }
        )+
    };
}

/// Upper bound of every wait for something that should happen.
const PATIENCE: Duration = Duration::from_secs(10);
/// Allowance for clock granularity when checking that a wait lasted at least as long as asked.
const SLACK: Duration = Duration::from_millis(50);

fn name(raw: &str) -> Name {
    Name::new(raw).unwrap()
}

/// A name no other test uses: `label-` and eight hex digits.
fn unique(label: &str) -> Name {
    name(&format!("{label}-{:08x}", rand::random::<u32>()))
}

async fn provision(state: &State, tenant: Name, kv_max_bytes: Option<u64>) -> Name {
    let resources = TenantResources { name: tenant.clone(), replicas: 1, kv_max_bytes, kv_max_keys: None };
    state.provisioner.ensure_tenant(&resources).await.expect("ensure tenant");
    tenant
}

/// A freshly provisioned tenant with no KV quota.
async fn tenant(state: &State, label: &str) -> Name {
    provision(state, unique(label), None).await
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// Polls `check` until it returns true; fails after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StateError>, what: &str) {
    assert!(
        matches!(result, Err(StateError::InvalidArgument(_))),
        "{what}: expected InvalidArgument, got {result:?}"
    );
}

fn assert_no_tenant<T: std::fmt::Debug>(result: Result<T, StateError>, what: &str) {
    assert!(matches!(result, Err(StateError::NoTenant(_))), "{what}: expected NoTenant, got {result:?}");
}

pub async fn kv_get_put_delete(state: &State) {
    let t = tenant(state, "kv").await;
    assert_eq!(state.kv.get(&t, "a").await.unwrap(), None);
    state.kv.put(&t, "a", bytes("1")).await.unwrap();
    assert_eq!(state.kv.get(&t, "a").await.unwrap(), Some(bytes("1")));
    state.kv.put(&t, "a", bytes("2")).await.unwrap();
    assert_eq!(state.kv.get(&t, "a").await.unwrap(), Some(bytes("2")), "put overwrites");
    state.kv.put(&t, "empty", Bytes::new()).await.unwrap();
    assert_eq!(state.kv.get(&t, "empty").await.unwrap(), Some(Bytes::new()), "an empty value is not absence");
    state.kv.delete(&t, "a").await.unwrap();
    assert_eq!(state.kv.get(&t, "a").await.unwrap(), None);
    state.kv.delete(&t, "a").await.expect("deleting an absent key succeeds");
}

pub async fn kv_keys_prefix_order_limit(state: &State) {
    let t = tenant(state, "keys").await;
    for key in ["b/2", "a", "b/1", "c", "b/10", "b", "gone"] {
        state.kv.put(&t, key, bytes("v")).await.unwrap();
    }
    state.kv.delete(&t, "gone").await.unwrap();
    let keys = |prefix: &'static str, limit| {
        let t = t.clone();
        async move { state.kv.keys(&t, prefix, limit).await.unwrap() }
    };
    assert_eq!(keys("", 100).await, ["a", "b", "b/1", "b/10", "b/2", "c"], "all keys, sorted, none deleted");
    assert_eq!(keys("b/", 100).await, ["b/1", "b/10", "b/2"]);
    assert_eq!(keys("b", 100).await, ["b", "b/1", "b/10", "b/2"]);
    assert_eq!(keys("b/", 2).await, ["b/1", "b/10"], "the limit keeps the first keys");
    assert!(keys("", 0).await.is_empty());
    assert!(keys("zzz", 100).await.is_empty());
}

pub async fn kv_cas(state: &State) {
    let t = tenant(state, "cas").await;
    let cas = |expected: Option<&str>, new: &str| state.kv.cas(&t, "k", expected.map(bytes), bytes(new));
    assert!(cas(None, "1").await.unwrap(), "expected absent creates");
    assert!(!cas(None, "2").await.unwrap(), "expected absent fails on an existing key");
    assert!(!cas(Some("x"), "3").await.unwrap(), "a wrong expected value conflicts");
    assert_eq!(state.kv.get(&t, "k").await.unwrap(), Some(bytes("1")), "a conflict changes nothing");
    assert!(cas(Some("1"), "4").await.unwrap());
    assert_eq!(state.kv.get(&t, "k").await.unwrap(), Some(bytes("4")));
    assert!(!state.kv.cas(&t, "missing", Some(bytes("4")), bytes("5")).await.unwrap());
    assert_eq!(state.kv.get(&t, "missing").await.unwrap(), None);
    state.kv.delete(&t, "k").await.unwrap();
    assert!(cas(None, "6").await.unwrap(), "a deleted key is absent");
    assert_eq!(state.kv.get(&t, "k").await.unwrap(), Some(bytes("6")));
}

pub async fn kv_rejects_invalid_keys(state: &State) {
    let t = tenant(state, "badkeys").await;
    let too_long = "k".repeat(MAX_KEY_BYTES + 1);
    let bad = [
        "",
        "/a",
        "a/",
        "a//b",
        "../b/x",
        ".hidden",
        "a..b",
        "a.",
        "_gojinn/x",
        "a b",
        "a*",
        "a>",
        "ü",
        too_long.as_str(),
    ];
    for key in bad {
        assert_invalid(state.kv.get(&t, key).await, &format!("get {key:?}"));
        assert_invalid(state.kv.put(&t, key, bytes("v")).await, &format!("put {key:?}"));
        assert_invalid(state.kv.delete(&t, key).await, &format!("delete {key:?}"));
        assert_invalid(state.kv.cas(&t, key, None, bytes("v")).await, &format!("cas {key:?}"));
        assert_invalid(state.locks.lock(&t, key, "me", PATIENCE).await, &format!("lock {key:?}"));
    }
    assert!(state.kv.keys(&t, "", 100).await.unwrap().is_empty(), "nothing was written");
    let longest = "k".repeat(MAX_KEY_BYTES);
    state.kv.put(&t, &longest, bytes("v")).await.expect("a key of the maximum length");
    state.kv.put(&t, "A-z_0=9/x.y", bytes("v")).await.expect("every allowed character");
}

pub async fn kv_value_size_limit(state: &State) {
    let t = tenant(state, "bigvalue").await;
    let largest = Bytes::from(vec![b'v'; MAX_VALUE_BYTES]);
    state.kv.put(&t, "largest", largest.clone()).await.expect("a value of the maximum size");
    assert_eq!(state.kv.get(&t, "largest").await.unwrap(), Some(largest));
    let too_big = Bytes::from(vec![b'v'; MAX_VALUE_BYTES + 1]);
    assert_invalid(state.kv.put(&t, "big", too_big.clone()).await, "put of an oversized value");
    assert_invalid(state.kv.cas(&t, "big", None, too_big).await, "cas of an oversized value");
    assert_eq!(state.kv.get(&t, "big").await.unwrap(), None);
}

/// Loose bounds, so backends that count per-entry overhead conform too.
pub async fn kv_quota(state: &State) {
    let t = provision(state, unique("quota"), Some(4096)).await;
    let value = |n| Bytes::from(vec![b'q'; n]);
    state.kv.put(&t, "a", value(1000)).await.expect("well within the quota");
    state.kv.put(&t, "b", value(1000)).await.expect("still within the quota");
    let over = state.kv.put(&t, "c", value(3000)).await;
    assert!(matches!(over, Err(StateError::Quota(_))), "expected Quota, got {over:?}");
    assert_eq!(state.kv.get(&t, "c").await.unwrap(), None, "a refused write stores nothing");
    state.kv.delete(&t, "a").await.unwrap();
    state.kv.delete(&t, "b").await.unwrap();
    state.kv.put(&t, "c", value(3000)).await.expect("deleting frees quota");
}

/// A key quota of 3: a fourth key is refused (by put and by cas), an overwrite and a cas of a
/// key it holds are not, and a delete frees its key's room.
pub async fn kv_key_quota(state: &State) {
    let t = unique("keys");
    let resources =
        TenantResources { name: t.clone(), replicas: 1, kv_max_bytes: None, kv_max_keys: Some(3) };
    state.provisioner.ensure_tenant(&resources).await.expect("ensure tenant");
    for key in ["a", "b", "c"] {
        state.kv.put(&t, key, bytes("v")).await.expect("a key within the quota");
    }
    let over = state.kv.put(&t, "d", bytes("v")).await;
    assert!(matches!(over, Err(StateError::Quota(_))), "a fourth key: expected Quota, got {over:?}");
    let over = state.kv.cas(&t, "d", None, bytes("v")).await;
    assert!(matches!(over, Err(StateError::Quota(_))), "a fourth key by cas: expected Quota, got {over:?}");
    assert_eq!(state.kv.get(&t, "d").await.unwrap(), None, "a refused write stores nothing");
    state.kv.put(&t, "a", bytes("overwritten")).await.expect("an overwrite at the quota");
    assert!(state.kv.cas(&t, "b", Some(bytes("v")), bytes("swapped")).await.unwrap(), "a cas at the quota");
    state.kv.delete(&t, "absent").await.expect("deleting an absent key at the quota");
    state.kv.delete(&t, "c").await.unwrap();
    assert_eq!(state.kv.get(&t, "c").await.unwrap(), None);
    state.kv.put(&t, "d", bytes("v")).await.expect("a delete frees its key's room");
    assert_eq!(state.kv.keys(&t, "", 10).await.unwrap(), ["a", "b", "d"]);
    assert_eq!(state.kv.get(&t, "a").await.unwrap(), Some(bytes("overwritten")));
}

pub async fn tenant_isolation_kv(state: &State) {
    let a = tenant(state, "iso").await;
    // B's name extends A's, so a store keyed by a plain name prefix would leak between them.
    let b = provision(state, name(&format!("{a}-b")), None).await;
    state.kv.put(&a, "x", bytes("a")).await.unwrap();
    state.kv.put(&a, "-b/x", bytes("a2")).await.unwrap();
    state.kv.put(&b, "x", bytes("b")).await.unwrap();
    assert_eq!(state.kv.get(&a, "x").await.unwrap(), Some(bytes("a")));
    assert_eq!(state.kv.get(&b, "x").await.unwrap(), Some(bytes("b")));
    assert_eq!(state.kv.keys(&a, "", 100).await.unwrap(), ["-b/x", "x"]);
    assert_eq!(state.kv.keys(&b, "", 100).await.unwrap(), ["x"]);
    assert_eq!(state.kv.get(&b, &format!("{a}/x")).await.unwrap(), None);
    assert_eq!(state.kv.get(&b, "b/x").await.unwrap(), None);
    assert_invalid(state.kv.get(&b, &format!("../{a}/x")).await, "a key climbing out of the tenant");
    assert_invalid(state.kv.get(&b, "../b/x").await, "a key climbing out of the tenant");
    state.kv.delete(&b, "x").await.unwrap();
    assert!(!state.kv.cas(&b, "x", Some(bytes("a")), bytes("stolen")).await.unwrap());
    assert_eq!(state.kv.get(&a, "x").await.unwrap(), Some(bytes("a")), "B's writes never reach A");
}

pub async fn tenant_isolation_locks(state: &State) {
    let (a, b) = (tenant(state, "isolock").await, tenant(state, "isolock").await);
    assert!(state.locks.lock(&a, "l", "o", PATIENCE).await.unwrap());
    assert!(state.locks.lock(&b, "l", "p", PATIENCE).await.unwrap(), "B's lock of the same key is its own");
    assert!(!state.locks.unlock(&b, "l", "o").await.unwrap(), "A's owner holds nothing in B");
    assert!(!state.locks.lock(&a, "l", "p", PATIENCE).await.unwrap(), "A's lock is still held");
    assert!(state.locks.unlock(&a, "l", "o").await.unwrap());
}

pub async fn tenant_isolation_jobs(state: &State) {
    let (a, b) = (tenant(state, "isojob").await, tenant(state, "isojob").await);
    let a_id = state.jobs.enqueue(keyed_job(&a, "same")).await.unwrap();
    assert_eq!(state.jobs.job(&b, &a_id).await.unwrap(), None);
    assert!(state.jobs.list(&b, None, 100).await.unwrap().is_empty());
    fetch_none(state, &b, "work", &patient()).await;
    assert!(state.jobs.redrive(&b, &a_id).await.is_err());
    let b_id = state.jobs.enqueue(keyed_job(&b, "same")).await.unwrap();
    assert_ne!(a_id, b_id, "the same idempotency key in another tenant is another job");
    assert_eq!(fetch_one(state, &b, "work", &patient()).await.job_id, b_id);
    assert_eq!(fetch_one(state, &a, "work", &patient()).await.job_id, a_id);
}

pub async fn tenant_isolation_audit(state: &State) {
    let (a, b) = (tenant(state, "isoaudit").await, tenant(state, "isoaudit").await);
    assert_eq!(state.audit.append(&a, bytes("a1")).await.unwrap(), 1);
    assert_eq!(state.audit.append(&a, bytes("a2")).await.unwrap(), 2);
    assert!(state.audit.read(&b, 1, 100).await.unwrap().is_empty());
    assert_eq!(state.audit.append(&b, bytes("b1")).await.unwrap(), 1, "B's sequence is its own");
    assert_eq!(state.audit.read(&a, 1, 100).await.unwrap(), [(1, bytes("a1")), (2, bytes("a2"))]);
}

pub async fn provisioning_is_idempotent(state: &State) {
    let mut resources =
        TenantResources { name: unique("prov"), replicas: 1, kv_max_bytes: None, kv_max_keys: None };
    assert!(state.provisioner.ensure_tenant(&resources).await.unwrap(), "the first ensure writes");
    assert!(
        !state.provisioner.ensure_tenant(&resources).await.unwrap(),
        "an identical ensure writes nothing"
    );
    resources.kv_max_bytes = Some(1 << 20);
    assert!(state.provisioner.ensure_tenant(&resources).await.unwrap(), "a changed quota is written");
    assert!(!state.provisioner.ensure_tenant(&resources).await.unwrap());
}

pub async fn remove_tenant_deletes_everything(state: &State) {
    let (t, other) = (tenant(state, "removed").await, tenant(state, "kept").await);
    state.kv.put(&t, "k", bytes("v")).await.unwrap();
    state.kv.put(&other, "k", bytes("v")).await.unwrap();
    assert!(state.locks.lock(&t, "l", "o", PATIENCE).await.unwrap());
    state.jobs.enqueue(new_job(&t, "work", "{}")).await.unwrap();
    state.audit.append(&t, bytes("r")).await.unwrap();

    assert!(state.provisioner.remove_tenant(&t).await.unwrap(), "something existed");
    assert!(!state.provisioner.remove_tenant(&t).await.unwrap(), "removing an absent tenant succeeds");
    assert_no_tenant(state.kv.get(&t, "k").await, "get after remove");

    provision(state, t.clone(), None).await;
    assert_eq!(state.kv.get(&t, "k").await.unwrap(), None);
    assert!(state.kv.keys(&t, "", 100).await.unwrap().is_empty());
    assert!(state.jobs.list(&t, None, 100).await.unwrap().is_empty());
    assert!(state.audit.read(&t, 0, 100).await.unwrap().is_empty());
    assert_eq!(state.audit.append(&t, bytes("r")).await.unwrap(), 1);
    assert!(state.locks.lock(&t, "l", "p", PATIENCE).await.unwrap(), "the old lock is gone");
    fetch_none(state, &t, "work", &patient()).await;
    assert_eq!(state.kv.get(&other, "k").await.unwrap(), Some(bytes("v")), "other tenants keep their data");
}

pub async fn unprovisioned_tenant_is_rejected(state: &State) {
    let t = unique("ghost");
    let p = patient();
    assert_no_tenant(state.kv.get(&t, "k").await, "get");
    assert_no_tenant(state.kv.put(&t, "k", bytes("v")).await, "put");
    assert_no_tenant(state.kv.delete(&t, "k").await, "delete");
    assert_no_tenant(state.kv.keys(&t, "", 10).await, "keys");
    assert_no_tenant(state.kv.cas(&t, "k", None, bytes("v")).await, "cas");
    assert_no_tenant(state.locks.lock(&t, "k", "o", PATIENCE).await, "lock");
    assert_no_tenant(state.locks.unlock(&t, "k", "o").await, "unlock");
    assert_no_tenant(state.jobs.enqueue(new_job(&t, "work", "{}")).await, "enqueue");
    assert_no_tenant(state.jobs.job(&t, "0123").await, "job");
    assert_no_tenant(state.jobs.list(&t, None, 10).await, "list");
    assert_no_tenant(state.jobs.fetch(&t, &name("work"), &p, 1, Duration::from_millis(10)).await, "fetch");
    assert_no_tenant(state.jobs.redrive(&t, "0123").await, "redrive");
    assert_no_tenant(state.audit.append(&t, bytes("r")).await, "append");
    assert_no_tenant(state.audit.read(&t, 1, 10).await, "read");
}

pub async fn lock_excludes_others_and_owner_renews(state: &State) {
    let t = tenant(state, "lock").await;
    let short = Duration::from_millis(300);
    assert!(state.locks.lock(&t, "renewed", "a", short).await.unwrap());
    assert!(!state.locks.lock(&t, "renewed", "b", PATIENCE).await.unwrap(), "held by another owner");
    // A reference lock taken after the first: once it has expired, so has the first TTL.
    assert!(state.locks.lock(&t, "timer", "a", short).await.unwrap());
    assert!(state.locks.lock(&t, "renewed", "a", Duration::from_secs(60)).await.unwrap(), "the owner renews");
    eventually("the reference lock expiring", || async {
        state.locks.lock(&t, "timer", "b", Duration::from_secs(60)).await.unwrap()
    })
    .await;
    assert!(
        !state.locks.lock(&t, "renewed", "b", PATIENCE).await.unwrap(),
        "the renewal outlived the first TTL"
    );
}

pub async fn lock_expires_after_ttl(state: &State) {
    let t = tenant(state, "expiry").await;
    let ttl = Duration::from_millis(300);
    let taken = Instant::now();
    assert!(state.locks.lock(&t, "l", "a", ttl).await.unwrap());
    assert!(!state.locks.lock(&t, "l", "b", ttl).await.unwrap());
    eventually("the lock expiring", || async { state.locks.lock(&t, "l", "b", PATIENCE).await.unwrap() })
        .await;
    assert!(taken.elapsed() + SLACK >= ttl, "the lock expired after {:?}, before its TTL", taken.elapsed());
    assert!(!state.locks.lock(&t, "l", "a", ttl).await.unwrap(), "the new owner holds it");
}

pub async fn unlock_only_by_owner(state: &State) {
    let t = tenant(state, "unlock").await;
    assert!(state.locks.lock(&t, "l", "a", PATIENCE).await.unwrap());
    assert!(!state.locks.unlock(&t, "l", "b").await.unwrap(), "not the owner");
    assert!(!state.locks.lock(&t, "l", "b", PATIENCE).await.unwrap(), "still held");
    assert!(state.locks.unlock(&t, "l", "a").await.unwrap());
    assert!(!state.locks.unlock(&t, "l", "a").await.unwrap(), "already released");
    assert!(!state.locks.unlock(&t, "never", "a").await.unwrap(), "never locked");
    assert!(state.locks.lock(&t, "l", "b", PATIENCE).await.unwrap());
}

pub async fn audit_append_read(state: &State) {
    let t = tenant(state, "audit").await;
    for (n, record) in ["r1", "r2", "r3"].into_iter().enumerate() {
        assert_eq!(state.audit.append(&t, bytes(record)).await.unwrap(), n as u64 + 1);
    }
    let all = [(1, bytes("r1")), (2, bytes("r2")), (3, bytes("r3"))];
    assert_eq!(state.audit.read(&t, 1, 100).await.unwrap(), all);
    assert_eq!(state.audit.read(&t, 0, 100).await.unwrap(), all, "from 0 reads from the start");
    assert_eq!(state.audit.read(&t, 2, 1).await.unwrap(), [(2, bytes("r2"))]);
    assert!(state.audit.read(&t, 4, 100).await.unwrap().is_empty());
    assert!(state.audit.read(&t, 1, 0).await.unwrap().is_empty());
}
