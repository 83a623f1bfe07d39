//! Gojinn: a self-hosted, multi-tenant serverless platform for WebAssembly functions.
//!
//! Specs (`spec`) are deployed (`deploy`) into a registry of prepared functions (`registry`),
//! which the HTTP edge (`edge`) serves by running each call in a fresh sandbox (`runtime`) with
//! the `gojinn` host functions (`host`) speaking guest ABI v1 (`abi`). Host capabilities reach
//! the state backends (`state`), tenants' SQL databases (`sql`) and the network (`egress`).
//! Calls asked for asynchronously become jobs (`jobs`) in the state backend (`state`), run by
//! this node's workers; the admin API (`api`) inspects and redrives them. Every request and job
//! is traced (`telemetry`, exported over OTLP when configured) and counted (`metrics`).
//! `validate` checks a spec directory as a deploy on a node would.

pub mod abi;
pub mod api;
pub mod audit;
pub mod config;
pub mod deploy;
pub mod edge;
pub mod egress;
pub mod host;
pub mod jobs;
pub mod metrics;
pub mod reconcile;
pub mod registry;
pub mod reload;
pub mod runtime;
pub mod scaffold;
pub mod server;
pub mod spec;
pub mod sql;
pub mod state;
pub mod telemetry;
pub mod validate;
