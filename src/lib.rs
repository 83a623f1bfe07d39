//! Gojinn: a self-hosted, multi-tenant serverless platform for WebAssembly functions.
//!
//! Specs (`spec`) are deployed (`deploy`) into a registry of prepared functions (`registry`),
//! which the HTTP edge (`edge`) serves by running each call in a fresh sandbox (`runtime`) with
//! the `gojinn` host functions (`host`) speaking guest ABI v1 (`abi`).

pub mod abi;
pub mod audit;
pub mod config;
pub mod deploy;
pub mod edge;
pub mod host;
pub mod registry;
pub mod reload;
pub mod runtime;
pub mod scaffold;
pub mod server;
pub mod spec;
pub mod state;
