//! How redb failures and unreadable records become [`StateError`]s, keeping the source's message.
//! I/O failures and a database held by someone else are `Unavailable` (the caller may retry
//! later); everything else is `Internal`.

use crate::state::StateError;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn classify(error: redb::Error) -> StateError {
    match error {
        redb::Error::Io(_) | redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StateError::Unavailable(format!("embedded store: {error}"))
        }
        _ => StateError::Internal(format!("embedded store: {error}")),
    }
}

macro_rules! from_redb {
    ($($error:ty),+) => {
        $(impl From<$error> for StateError {
            fn from(error: $error) -> Self {
                classify(error.into())
            }
        })+
    };
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A stored record as JSON.
pub(super) fn encode<T: Serialize>(what: &str, record: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(record).map_err(|e| StateError::Internal(format!("cannot encode {what} record: {e}")))
}

/// A stored record from JSON; a record that does not parse is corruption, not bad input.
pub(super) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Internal(format!("corrupt {what} record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_unavailable_and_corruption_is_internal() {
        let io = redb::StorageError::Io(std::io::Error::other("disk gone"));
        let err = StateError::from(io);
        assert!(matches!(&err, StateError::Unavailable(m) if m.contains("disk gone")), "{err:?}");
        let corrupt = StateError::from(redb::StorageError::Corrupted("bad page".into()));
        assert!(matches!(&corrupt, StateError::Internal(m) if m.contains("bad page")), "{corrupt:?}");
        let record = decode::<u32>("job", b"{").unwrap_err();
        assert!(matches!(&record, StateError::Internal(m) if m.contains("corrupt job record")), "{record:?}");
    }
}
