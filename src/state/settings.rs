//! The state backend's settings (`state:` in the node configuration).

use crate::spec::Span;
use serde::Deserialize;

/// Where tenants' state lives.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct StateSettings {
    pub backend: BackendKind,
    /// The most bytes of one job the embedded backend stores: an async call's request envelope
    /// (larger: 413 `job_too_large`) and its result (larger: cut to fit, with an error). On NATS
    /// the server's `max_payload` decides.
    pub max_job_bytes: crate::spec::ByteSize,
    /// NATS server URL(s), comma-separated, for the `nats` backend.
    pub nats_url: String,
    /// Replicas of the reconciler's shared control bucket and module object store (`nats`
    /// backend): 1, 3 or 5. Used when a node creates them; existing buckets keep theirs.
    #[serde(deserialize_with = "replica_count")]
    pub control_replicas: u8,
    /// How long a call waits for the state backend (`nats`) before it fails with 503
    /// `unavailable` (a guest's host call with `-5`); while the node is disconnected, at once.
    pub timeout: Span,
}

/// A JetStream replica count: 1, 3 or 5.
fn replica_count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
    let replicas = u8::deserialize(deserializer)?;
    if [1, 3, 5].contains(&replicas) {
        Ok(replicas)
    } else {
        Err(serde::de::Error::custom(format!("replicas must be 1, 3 or 5, not {replicas}")))
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A local store under `dataDir/state`, for a single node.
    #[default]
    Embedded,
    /// NATS JetStream, for clusters.
    Nats,
}

impl Default for StateSettings {
    fn default() -> Self {
        Self {
            backend: BackendKind::Embedded,
            max_job_bytes: crate::spec::ByteSize(super::embedded::DEFAULT_MAX_JOB_BYTES as u64),
            nats_url: "nats://127.0.0.1:4222".into(),
            control_replicas: 1,
            timeout: Span(std::time::Duration::from_secs(5)),
        }
    }
}
