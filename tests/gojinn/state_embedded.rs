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
