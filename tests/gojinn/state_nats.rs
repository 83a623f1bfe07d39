//! The state conformance suite against NATS JetStream (a single node and a 3-node cluster).
