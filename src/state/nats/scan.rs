//! Reads a bounded run of messages from a stream with a throwaway ordered consumer: the keys or
//! values of a KV bucket (last message per subject) and ranges of the audit log. Never acks,
//! never changes the stream.
//!
//! An ordered consumer is a single-replica consumer, and on a replicated stream the server puts
//! it on any of the stream's peers, a follower that has not yet applied the latest acknowledged
//! writes too. [`Scan::run_complete`] closes that gap for scans that must miss nothing.

use super::NatsResult;
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{Consumer, DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use bytes::Bytes;
use futures::StreamExt;
use std::time::Duration;

/// Longest wait for the next message of a scan the server said is pending.
const IDLE: Duration = Duration::from_secs(10);
/// How long [`Scan::run_complete`] retries a scan that landed on a replica lagging behind the
/// stream leader, and the pause between attempts.
const CATCH_UP: Duration = Duration::from_secs(5);
const CATCH_UP_PAUSE: Duration = Duration::from_millis(20);

/// A message as a scan returns it.
pub(super) struct Scanned {
    pub subject: String,
    pub sequence: u64,
    pub headers: Option<HeaderMap>,
    /// Empty when the scan asked for headers only.
    pub payload: Bytes,
}

/// What to read.
#[derive(Clone)]
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

    /// Like [`Self::run`] for a [`Self::latest`] scan, but complete as of the call: it sees
    /// every write acknowledged before it began, wherever the server placed its consumer.
    ///
    /// The stream leader first names the newest message matching the filter (one non-direct
    /// get, which only the leader answers). A replica that holds that message holds everything
    /// before it, so a scan that delivered it, or a newer message, missed nothing; a scan that
    /// did not ran on a lagging replica and is repeated until it catches up, for at most
    /// [`CATCH_UP`] (then the error says the stream is unavailable).
    pub async fn run_complete<I>(self, stream: &Stream<I>) -> NatsResult<Vec<Scanned>> {
        let newest = match stream.get_last_raw_message_by_subject(&self.filter).await {
            Ok(message) => message.sequence,
            Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(Vec::new()),
            Err(err) => return Err(err.into()),
        };
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        loop {
            let found = self.clone().run(stream).await?;
            if found.iter().any(|m| m.sequence >= newest) {
                return Ok(found);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("a replica of the stream stayed behind its leader for {CATCH_UP:?}"),
                )
                .into());
            }
            tokio::time::sleep(CATCH_UP_PAUSE).await;
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
