//! The embedded backend: a local store under the data dir (redb). Placeholder until written.
