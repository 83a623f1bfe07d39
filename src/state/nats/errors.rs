//! Turns async-nats errors into [`StateError`]s: the only place that reads NATS error kinds and
//! JetStream error codes. Internal functions return boxed errors; a `StateError` boxed among them
//! comes back out unchanged.

use crate::spec::Name;
use crate::state::StateError;
use async_nats::jetstream::context::{
    CreateStreamError, CreateStreamErrorKind, GetStreamError, GetStreamErrorKind, PublishError,
    PublishErrorKind, RequestError, RequestErrorKind,
};
use async_nats::jetstream::kv::{EntryError, EntryErrorKind, UpdateError, UpdateErrorKind};
use async_nats::jetstream::stream::{
    ConsumerError, ConsumerErrorKind, LastRawMessageError, LastRawMessageErrorKind,
};
use async_nats::jetstream::{self, ErrorCode};
use std::error::Error;

/// What a failure means to the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// A stream or bucket of the tenant does not exist: the tenant is not provisioned.
    Missing,
    /// The tenant's KV bucket is full.
    Quota,
    /// The request can never succeed as made (too large, more replicas than servers).
    Rejected,
    /// The server or cluster did not answer in time or has no leader: retry later.
    Unavailable,
}

pub(super) fn to_state_error(tenant: &Name, err: async_nats::Error) -> StateError {
    let err = match err.downcast::<StateError>() {
        Ok(state) => return *state,
        Err(err) => err,
    };
    let message = chain_text(&*err);
    match chain(&*err).find_map(class_of) {
        Some(Class::Missing) => StateError::NoTenant(tenant.clone()),
        Some(Class::Quota) => StateError::Quota(format!(
            "tenant {tenant} is over its storage quota ({}): {message}",
            quota_setting(&message)
        )),
        Some(Class::Rejected) => StateError::InvalidArgument(message),
        Some(Class::Unavailable) => StateError::Unavailable(message),
        None => StateError::Internal(message),
    }
}

/// Whether `err` says a stream or bucket does not exist (what [`to_state_error`] turns into
/// `NoTenant`).
pub(super) fn is_stream_missing(err: &async_nats::Error) -> bool {
    match err.downcast_ref::<StateError>() {
        Some(state) => matches!(state, StateError::NoTenant(_)),
        None => chain(&**err).find_map(class_of) == Some(Class::Missing),
    }
}

/// How a publish that got no acknowledgement ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unacknowledged {
    /// No answer in time: it may have been stored.
    Unanswered,
    /// The stream leader is still proposing a copy of it (sent earlier under the same
    /// `Nats-Msg-Id`), which may yet be stored.
    InProcess,
    /// An answer that settles it: not stored.
    Refused,
}

/// What a failed publish means for the message it carried.
pub(super) fn unacknowledged(err: &PublishError) -> Unacknowledged {
    if err.kind() == PublishErrorKind::TimedOut {
        return Unacknowledged::Unanswered;
    }
    let in_process = chain(err)
        .filter_map(|e| e.downcast_ref::<jetstream::Error>())
        .any(|e| e.error_code() == ErrorCode::STREAM_DUPLICATE_MESSAGE_CONFLICT);
    if in_process { Unacknowledged::InProcess } else { Unacknowledged::Refused }
}

/// The tenant setting a full bucket's error is about: the server says "maximum messages" when
/// the key count (the bucket's `max_msgs`) is reached and "maximum bytes" for its size.
fn quota_setting(message: &str) -> &'static str {
    if message.contains("maximum messages") { "quotas.kvMaxKeys" } else { "quotas.kvMaxBytes" }
}

/// `outer: inner: innermost`, skipping a source whose text its parent already includes.
fn chain_text(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    for source in chain(err).skip(1) {
        let part = source.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
    }
    text
}

/// The error and its sources, outermost first.
fn chain<'a>(err: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn Error + 'static)| (*e).source())
}

/// Returns the class of `$err` if it is a `$ty`: its `JetStream(api)` kind by the API's error
/// code, the other kinds by `$arms`.
macro_rules! with_api_kind {
    ($err:expr, $ty:ty, $kind:ident { $($arm:pat => $class:expr),* $(,)? }) => {
        if let Some(e) = $err.downcast_ref::<$ty>() {
            return match e.kind() {
                $kind::JetStream(api) => api_error(&api),
                $($arm => $class,)*
                _ => None,
            };
        }
    };
}

fn class_of(err: &(dyn Error + 'static)) -> Option<Class> {
    use Class::*;
    if let Some(e) = err.downcast_ref::<jetstream::Error>() {
        return api_error(e);
    }
    if let Some(e) = err.downcast_ref::<PublishError>() {
        return match e.kind() {
            PublishErrorKind::StreamNotFound => Some(Missing),
            PublishErrorKind::MaxPayloadExceeded => Some(Rejected),
            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => {
                Some(Unavailable)
            }
            _ => None,
        };
    }
    if let Some(e) = err.downcast_ref::<RequestError>() {
        // The JetStream API always answers when JetStream runs: no responder means it does not.
        return matches!(e.kind(), RequestErrorKind::TimedOut | RequestErrorKind::NoResponders)
            .then_some(Unavailable);
    }
    if let Some(e) = err.downcast_ref::<async_nats::RequestError>() {
        use async_nats::RequestErrorKind as Kind;
        return matches!(e.kind(), Kind::TimedOut | Kind::NoResponders).then_some(Unavailable);
    }
    // Errors whose kind carries the API's answer.
    with_api_kind!(err, GetStreamError, GetStreamErrorKind {});
    with_api_kind!(err, LastRawMessageError, LastRawMessageErrorKind {});
    with_api_kind!(err, ConsumerError, ConsumerErrorKind { ConsumerErrorKind::TimedOut => Some(Unavailable) });
    with_api_kind!(err, CreateStreamError, CreateStreamErrorKind {
        CreateStreamErrorKind::NotFound => Some(Missing),
        CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => Some(Unavailable),
    });
    if let Some(e) = err.downcast_ref::<UpdateError>() {
        return (e.kind() == UpdateErrorKind::TimedOut).then_some(Unavailable);
    }
    if let Some(e) = err.downcast_ref::<EntryError>() {
        return (e.kind() == EntryErrorKind::TimedOut).then_some(Unavailable);
    }
    if let Some(e) = err.downcast_ref::<std::io::Error>() {
        return (e.kind() == std::io::ErrorKind::TimedOut || is_pull_interrupted(e)).then_some(Unavailable);
    }
    None
}

/// A pull request that JetStream ended with a status while the cluster changes: 503 (no
/// consumer leader answers yet) or 409 (leadership change, consumer re-created). async-nats's
/// `fetch` hands these over only as text, in this form.
fn is_pull_interrupted(err: &std::io::Error) -> bool {
    let text = err.to_string();
    ["503", "409"].iter().any(|status| {
        text.strip_prefix("error while processing messages from the stream: ")
            .is_some_and(|rest| rest.starts_with(status))
    })
}

/// An error answered by the JetStream API, by its code.
fn api_error(err: &jetstream::Error) -> Option<Class> {
    match err.error_code() {
        ErrorCode::STREAM_NOT_FOUND => Some(Class::Missing),
        // "maximum bytes exceeded" of a bucket with discard-new.
        ErrorCode::STREAM_STORE_FAILED if err.to_string().contains("maximum") => Some(Class::Quota),
        ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED | ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM => {
            Some(Class::Rejected)
        }
        ErrorCode::CLUSTER_NOT_AVAILABLE
        | ErrorCode::CLUSTER_NOT_LEADER
        | ErrorCode::CLUSTER_NOT_ACTIVE
        | ErrorCode::CLUSTER_INCOMPLETE
        | ErrorCode::CLUSTER_NO_PEERS
        | ErrorCode::INSUFFICIENT_RESOURCES
        | ErrorCode::JETSTREAM_NOT_ENABLED
        | ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT
        // A copy of this message (same `Nats-Msg-Id`) is still being proposed: it may yet land.
        | ErrorCode::STREAM_DUPLICATE_MESSAGE_CONFLICT => Some(Class::Unavailable),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> Name {
        Name::new("acme").unwrap()
    }

    #[test]
    fn a_boxed_state_error_comes_back_unchanged() {
        let err = to_state_error(&tenant(), Box::new(StateError::InvalidArgument("bad key".into())));
        assert!(matches!(err, StateError::InvalidArgument(m) if m == "bad key"));
    }

    #[test]
    fn no_stream_for_a_publish_is_an_unprovisioned_tenant() {
        let err = UpdateError::with_source(
            UpdateErrorKind::Other,
            PublishError::new(PublishErrorKind::StreamNotFound),
        );
        assert!(matches!(to_state_error(&tenant(), Box::new(err)), StateError::NoTenant(t) if t == tenant()));
    }

    fn api(code: u64, description: &str) -> jetstream::Error {
        serde_json::from_value(serde_json::json!({"code": 400, "err_code": code, "description": description}))
            .unwrap()
    }

    #[test]
    fn a_publish_unanswered_or_still_in_process_is_told_from_one_refused() {
        let publish = |code, says| PublishError::with_source(PublishErrorKind::Other, api(code, says));
        assert_eq!(
            unacknowledged(&PublishError::new(PublishErrorKind::TimedOut)),
            Unacknowledged::Unanswered
        );
        let in_process = publish(10158, "duplicate message id is in process");
        assert_eq!(unacknowledged(&in_process), Unacknowledged::InProcess);
        assert!(matches!(to_state_error(&tenant(), Box::new(in_process)), StateError::Unavailable(_)));
        assert_eq!(unacknowledged(&publish(10077, "maximum bytes exceeded")), Unacknowledged::Refused);
        let no_stream = PublishError::new(PublishErrorKind::StreamNotFound);
        assert_eq!(unacknowledged(&no_stream), Unacknowledged::Refused);
    }

    #[test]
    fn api_errors_map_by_code() {
        for (server_says, setting) in [
            ("maximum bytes exceeded", "quotas.kvMaxBytes"),
            ("maximum messages exceeded", "quotas.kvMaxKeys"),
        ] {
            let full = UpdateError::with_source(
                UpdateErrorKind::Other,
                PublishError::with_source(PublishErrorKind::Other, api(10077, server_says)),
            );
            match to_state_error(&tenant(), Box::new(full)) {
                StateError::Quota(message) => assert!(message.contains(setting), "{message}"),
                other => panic!("{server_says}: {other:?}"),
            }
        }
        let missing = GetStreamError::new(GetStreamErrorKind::JetStream(api(10059, "stream not found")));
        assert!(matches!(to_state_error(&tenant(), Box::new(missing)), StateError::NoTenant(_)));
        let replicas = CreateStreamError::new(CreateStreamErrorKind::JetStream(api(
            10074,
            "replicas > 1 not supported",
        )));
        assert!(matches!(to_state_error(&tenant(), Box::new(replicas)), StateError::InvalidArgument(_)));
    }

    #[test]
    fn timeouts_and_leaderless_pulls_are_unavailable_and_unknown_errors_internal() {
        let timeout = PublishError::new(PublishErrorKind::TimedOut);
        assert!(matches!(to_state_error(&tenant(), Box::new(timeout)), StateError::Unavailable(_)));
        let leaderless = std::io::Error::other("error while processing messages from the stream: 503, None");
        assert!(matches!(to_state_error(&tenant(), Box::new(leaderless)), StateError::Unavailable(_)));
        let other = std::io::Error::other("strange");
        assert!(
            matches!(to_state_error(&tenant(), Box::new(other)), StateError::Internal(m) if m == "strange")
        );
    }
}
