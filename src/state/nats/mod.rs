//! The NATS JetStream backend. Placeholder until written.
