//! Reads a bounded run of messages from a stream with a throwaway ordered consumer: the keys or
//! values of a KV bucket (last message per subject) and ranges of the audit log. Never acks,
//! never changes the stream.

use super::NatsResult;
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{Consumer, DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::stream::Stream;
use bytes::Bytes;
use futures::StreamExt;
use std::time::Duration;

/// Longest wait for the next message of a scan the server said is pending.
const IDLE: Duration = Duration::from_secs(10);

/// A message as a scan returns it.
pub(super) struct Scanned {
    pub subject: String,
    pub sequence: u64,
    pub headers: Option<HeaderMap>,
    /// Empty when the scan asked for headers only.
    pub payload: Bytes,
}

/// What to read.
pub(super) struct Scan {
    pub filter: String,
    pub deliver: DeliverPolicy,
    pub headers_only: bool,
    pub limit: usize,
}

impl Scan {
    /// The latest message of each subject matching `filter`, every one of them.
    pub fn latest(filter: String, headers_only: bool) -> Self {
        Self { filter, deliver: DeliverPolicy::LastPerSubject, headers_only, limit: usize::MAX }
    }

    /// Up to `limit` messages matching `filter`, from stream sequence `from`.
    pub fn from_sequence(filter: String, from: u64, limit: usize) -> Self {
        Self {
            filter,
            deliver: DeliverPolicy::ByStartSequence { start_sequence: from.max(1) },
            headers_only: false,
            limit,
        }
    }

    /// Reads the messages, stopping when the server has no more pending or at the limit.
    pub async fn run<I>(self, stream: &Stream<I>) -> NatsResult<Vec<Scanned>> {
        if self.limit == 0 {
            return Ok(Vec::new());
        }
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: self.filter,
                deliver_policy: self.deliver,
                headers_only: self.headers_only,
                ..OrderedConfig::default()
            })
            .await?;
        let name = consumer.cached_info().name.clone();
        let found = match consumer.cached_info().num_pending {
            0 => Ok(Vec::new()),
            _ => read(consumer, self.limit).await,
        };
        // Done with it: an ordered consumer would otherwise linger on the server for 30 s.
        if let Err(err) = stream.delete_consumer(&name).await {
            tracing::debug!(consumer = name, "scan consumer left to expire: {err}");
        }
        found
    }
}

async fn read(consumer: Consumer<OrderedConfig>, limit: usize) -> NatsResult<Vec<Scanned>> {
    let mut messages = consumer.messages().await?;
    let mut found = Vec::new();
    loop {
        let next = tokio::time::timeout(IDLE, messages.next()).await;
        let Some(message) =
            next.map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "scan stalled"))?
        else {
            break;
        };
        let message = message?;
        let info = message.info()?;
        let (pending, sequence) = (info.pending, info.stream_sequence);
        let message = message.message;
        found.push(Scanned {
            subject: message.subject.to_string(),
            sequence,
            headers: message.headers,
            payload: message.payload,
        });
        if pending == 0 || found.len() >= limit {
            return Ok(found);
        }
    }
    Ok(found)
}
