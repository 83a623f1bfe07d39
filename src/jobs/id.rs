//! Public job ids: `<tenant>.<32 hex digits>`. The tenant part routes a lookup to its tenant's
//! jobs without any table mapping ids to tenants (tenant names never contain `.`); the hex part
//! is the id the state backend made: 128 random bits, or derived from the tenant and its
//! idempotency key. Whoever knows an id can read its job's status and result, so an id is a
//! capability (see THREAT_MODEL.md) and is never guessable from another id.

use super::JobError;
use crate::spec::Name;
use crate::state::StateError;
use std::fmt;

/// Hex digits of the backend's part of an id (16 bytes).
const KEY_HEX_LEN: usize = 32;

/// A parsed, validated job id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JobId {
    tenant: Name,
    key: String,
}

impl JobId {
    /// Parses a public id. Anything malformed is `NotFound`, as an unknown id is: both mean "no
    /// job by that id", and neither tells a prober more.
    pub fn parse(raw: &str) -> Result<Self, JobError> {
        let not_found = || JobError::NotFound(raw.to_owned());
        let (tenant, key) = raw.split_once('.').ok_or_else(not_found)?;
        let tenant = Name::new(tenant).map_err(|_| not_found())?;
        if !is_key(key) {
            return Err(not_found());
        }
        Ok(Self { tenant, key: key.to_owned() })
    }

    /// The public id of the job a backend stored under `key` for `tenant`.
    pub fn from_backend(tenant: Name, key: String) -> Result<Self, StateError> {
        if !is_key(&key) {
            return Err(StateError::Internal(format!("the state backend made a malformed job id {key:?}")));
        }
        Ok(Self { tenant, key })
    }

    pub fn tenant(&self) -> &Name {
        &self.tenant
    }

    /// The id within the tenant, as the state backend knows it.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.tenant, self.key)
    }
}

fn is_key(key: &str) -> bool {
    key.len() == KEY_HEX_LEN && key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn an_id_names_its_tenant_and_round_trips() {
        let id = JobId::parse(&format!("acme.{KEY}")).unwrap();
        assert_eq!((id.tenant().as_str(), id.key()), ("acme", KEY));
        assert_eq!(id.to_string(), format!("acme.{KEY}"));
        assert_eq!(JobId::from_backend(Name::new("acme").unwrap(), KEY.into()).unwrap(), id);
    }

    #[test]
    fn malformed_ids_are_not_found() {
        let upper = KEY.to_uppercase();
        for raw in [
            "",
            "acme",
            KEY,
            "acme.",
            "acme.0123",
            "Acme.0123456789abcdef0123456789abcdef",
            "ac.me.0123456789abcdef0123456789abcdef",
            "acme.0123456789abcdef0123456789abcdeg",
            &format!("acme.{upper}"),
            &format!("acme.{KEY}0"),
            &format!("../acme.{KEY}"),
        ] {
            assert!(matches!(JobId::parse(raw), Err(JobError::NotFound(_))), "{raw:?} parsed");
        }
    }

    #[test]
    fn a_malformed_backend_id_is_an_internal_error() {
        let err = JobId::from_backend(Name::new("acme").unwrap(), "x".into()).unwrap_err();
        assert!(matches!(err, StateError::Internal(_)), "{err:?}");
    }
}
