//! Validated identifiers: tenant and function names that can never break a URL path, a NATS
//! subject or a stream name, and never cross into another tenant's namespace.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A DNS-label-like name: 1 to 63 characters of `a-z`, `0-9` and `-`, starting with a letter and
/// not ending with `-`. No dots, wildcards, whitespace, slashes or upper case, so it is safe as a
/// path segment, a NATS subject token and (upper-cased) inside a JetStream stream name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub const MAX_LEN: usize = 63;

    pub fn new(raw: &str) -> Result<Self, String> {
        let bytes = raw.as_bytes();
        let valid_char = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(format!("invalid name {raw:?}: must be 1 to {} characters", Self::MAX_LEN));
        }
        if !bytes[0].is_ascii_lowercase() || !bytes.iter().all(valid_char) || raw.ends_with('-') {
            return Err(format!(
                "invalid name {raw:?}: use lowercase letters, digits and '-', starting with a letter \
                 and not ending with '-'"
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(de)?;
        Name::new(&raw).map_err(serde::de::Error::custom)
    }
}

/// `tenant/function`, the identity of a function across the platform. Serialized as that string.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FunctionId {
    pub tenant: Name,
    pub function: Name,
}

impl fmt::Display for FunctionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.function)
    }
}

impl Serialize for FunctionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FunctionId {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(de)?;
        let (tenant, function) =
            raw.split_once('/').ok_or_else(|| serde::de::Error::custom("expected tenant/function"))?;
        Ok(FunctionId {
            tenant: Name::new(tenant).map_err(serde::de::Error::custom)?,
            function: Name::new(function).map_err(serde::de::Error::custom)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "acme", "acme-2", "a1-b2-c3"] {
            assert!(Name::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_names_that_could_cross_namespaces() {
        let long = "a".repeat(64);
        for bad in ["", "Acme", "1acme", "acme-", "a.b", "a*", "a>", "a b", "a/b", "_gojinn", "a_b", &long] {
            assert!(Name::new(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
