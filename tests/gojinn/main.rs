//! Integration tests: real guests built from source, a real node on a loopback port, real HTTP.

#[path = "../support/mod.rs"]
mod support;

mod backpressure;
mod bodies;
mod cache;
mod errors;
mod isolation;
mod reload;
mod sandbox;
mod scaffold;
mod specs;
mod state_embedded;
mod state_nats;
