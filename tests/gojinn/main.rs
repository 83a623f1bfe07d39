//! Integration tests: real guests built from source, a real node on a loopback port, real HTTP.

#[path = "../support/mod.rs"]
mod support;

mod backpressure;
mod bodies;
mod bounds;
mod cache;
mod cli;
mod connections;
mod cpu;
mod errors;
mod host_db;
mod host_http;
mod host_jobs;
mod host_kv;
mod host_log;
mod host_mutex;
mod isolation;
mod jobs;
mod jobs_crash;
mod jobs_embedded;
mod jobs_nats;
mod mcp;
mod metrics;
mod nats_security;
mod node_config;
mod outage;
mod receipts;
mod reconcile;
mod reconcile_policy;
mod reconcile_props;
mod reconcile_source;
mod reload;
mod routes;
mod sandbox;
mod scaffold;
mod secrets;
mod shutdown;
mod specs;
mod state_embedded;
mod state_nats;
mod status;
mod telemetry;
mod threat_model;
mod validate;
mod webhook;
