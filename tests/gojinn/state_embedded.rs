//! The state conformance suite against the embedded backend.
