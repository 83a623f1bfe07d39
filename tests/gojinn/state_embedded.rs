//! The state conformance suite against the embedded backend, each test on its own temp dir.

use gojinn::state::State;
use gojinn::state::embedded::EmbeddedBackend;
use std::future::{Ready, ready};
use std::sync::Arc;

/// Fresh storage: an opener of the embedded backend on a new temp dir, which it owns.
async fn storage() -> impl Fn() -> Ready<State> {
    let dir = tempfile::tempdir().expect("temp dir");
    move || {
        ready(State::from_backend(Arc::new(
            EmbeddedBackend::open(dir.path()).expect("open the embedded backend"),
        )))
    }
}

crate::conformance_tests!(storage);

/// Control records, blobs and leases are committed to the database file: a reopened backend
/// (a restarted node) finds them, and its write counter starts from zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_data_survives_a_reopen() {
    use sha2::Digest;
    let dir = tempfile::tempdir().expect("temp dir");
    let open = || State::from_backend(Arc::new(EmbeddedBackend::open(dir.path()).expect("open")));
    let module = bytes::Bytes::from_static(b"\0asm kept");
    let sha = hex::encode(sha2::Sha256::digest(&module));
    let ttl = std::time::Duration::from_secs(60);
    {
        let state = open();
        assert!(state.control.put_record("applied/acme", "v1".into()).await.unwrap());
        assert!(state.control.put_blob(&sha, module.clone()).await.unwrap());
        assert!(state.control.acquire_lease("reconcile", "node-a", ttl).await.unwrap());
        assert_eq!(state.control.writes(), 3);
    }
    let state = open();
    assert_eq!(state.control.writes(), 0, "the counter is per backend object");
    assert_eq!(
        state.control.records("").await.unwrap().get("applied/acme").map(|v| v.to_vec()),
        Some(b"v1".to_vec())
    );
    assert_eq!(state.control.blob(&sha).await.unwrap(), Some(module));
    assert!(
        !state.control.acquire_lease("reconcile", "node-b", ttl).await.unwrap(),
        "the lease is still held"
    );
    assert!(!state.control.put_record("applied/acme", "v1".into()).await.unwrap());
    assert_eq!(state.control.writes(), 0);
}
