//! Gojinn: a self-hosted, multi-tenant serverless platform for WebAssembly functions.
//!
//! Specs (`spec`) are reconciled (`reconcile`, whose controller runs the passes) and deployed
//! (`deploy`) into a registry of prepared functions (`registry`), which the triggers read through
//! a handle they are given when the node starts (`server`). Every execution, whatever triggered
//! it, takes one path (`invoke`): admission through its gates (`gate`), a fresh sandbox
//! (`runtime`) with the `gojinn` host functions (`host`) speaking guest ABI v1 (`abi`), its
//! signed receipt (`audit`), its metrics (`metrics`) and span (`telemetry`). The triggers around it are thin: the HTTP edge
//! (`edge`, which composes the whole HTTP stack), MCP tool calls (`api::mcp`) and the job
//! workers (`workers`) running the jobs (`jobs`) queued in the state backend. Host capabilities
//! reach the state backends (`state`), tenants' SQL databases (`state::sql`) and the network
//! (`state::egress`). Every public error says what a caller is told of it (`failure`). The admin
//! API (`api`) inspects and redrives jobs and reads receipts. Modules import one another one
//! way only: no two top-level modules import each other, directly or around a cycle.
//! `validate` checks a spec directory as a deploy on a node would; `backoff` is the one doubling
//! retry delay. Secret env values are read by each node at deploy (`secrets`), never stored.
//! `fuzz` (tests and scripts/fuzz.sh only) runs each decoder of untrusted input on arbitrary bytes.
//! `dev` runs a whole cluster on loopback (`gojinn dev cluster`), child processes of real binaries.

pub mod abi;
pub mod api;
pub mod audit;
pub mod backoff;
pub mod config;
pub mod deploy;
pub mod dev;
pub mod edge;
pub mod failure;
#[cfg(any(test, fuzzing))]
pub mod fuzz;
pub mod gate;
pub mod host;
pub mod invoke;
pub mod jobs;
pub mod metrics;
pub mod reconcile;
pub mod registry;
pub mod runtime;
pub mod scaffold;
pub mod secrets;
pub mod server;
pub mod spec;
pub mod state;
pub mod telemetry;
pub mod validate;
pub mod workers;
