//! Tenants' API keys and who may do what. A request presents at most one credential,
//! `X-Gojinn-Key: KEY` or else `Authorization: Bearer KEY` ([`credential`]); [`authorize`]
//! decides, for what the request needs ([`Need`]), whether it passes: the admin token passes
//! everywhere; a tenant's key passes where the need is that tenant's and one of the key's
//! scopes, or that tenant's with any scope (what it deployed); any other key is 403 `forbidden`; no credential, or one that is neither the admin
//! token nor any tenant's key, is 401 `unauthorized` (asking for the admin token where only it
//! opens). Keys are known only by their sha256
//! (the spec lists digests, the registry holds them decoded), compared in constant time with
//! every key of every tenant, so neither the key nor which tenant's it is leaks through timing.
//! A key is never logged, and [`strip_credentials`] keeps it from the guest, the receipt and
//! the job payload. [`generate`] makes a new key for `gojinn keys new`.

use super::AdminToken;
use crate::failure::PublicError;
use crate::registry::{DeployedKey, Registry};
use crate::spec::{Name, Scope};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The header that carries a tenant's API key (`Authorization: Bearer` does too).
pub const KEY_HEADER: &str = "x-gojinn-key";
/// How every key `gojinn keys new` makes starts, so that a leaked one is recognizable.
pub const KEY_PREFIX: &str = "gjk_";

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need<'a> {
    /// The admin token: a tenant's key never opens this.
    Admin,
    /// The admin token, or a key of this tenant with this scope.
    Tenant(&'a Name, Scope),
    /// The admin token, or any key of this tenant, whatever its scopes: routes that only
    /// describe what the tenant deployed (`api::deployed`).
    AnyScope(&'a Name),
}

/// Who passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    Admin,
    /// The tenant's key of this name.
    Key(Name),
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessError {
    #[error(
        "a credential is required: the admin token or an API key, as Authorization: Bearer or X-Gojinn-Key"
    )]
    Missing,
    #[error("the credential is neither the admin token nor any tenant's API key")]
    Unknown,
    /// No credential, or an unknown one, where only the admin token opens.
    #[error("a valid admin bearer token is required")]
    NoAdminToken,
    #[error("this API key is not one of tenant {0}'s")]
    OtherTenant(Name),
    #[error("API key {key} does not have the {scope} scope")]
    NoScope { key: Name, scope: Scope },
    #[error("this route takes the admin token, not a tenant's API key")]
    AdminOnly,
}

impl PublicError for AccessError {
    fn status(&self) -> StatusCode {
        match self {
            AccessError::Missing | AccessError::Unknown | AccessError::NoAdminToken => {
                StatusCode::UNAUTHORIZED
            }
            AccessError::OtherTenant(_) | AccessError::NoScope { .. } | AccessError::AdminOnly => {
                StatusCode::FORBIDDEN
            }
        }
    }

    fn code(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "unauthorized",
            _ => "forbidden",
        }
    }

    fn headers(&self, headers: &mut HeaderMap) {
        if self.status() == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="gojinn""#));
        }
    }
}

/// The credential a request presents: `X-Gojinn-Key`, or else the token of `Authorization:
/// Bearer`. A header that is not text presents an empty credential, which matches nothing.
pub fn credential(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(KEY_HEADER) {
        return Some(value.to_str().map_or("", str::trim));
    }
    super::bearer(headers)
}

/// Removes the headers a credential travels in (`Authorization`, `X-Gojinn-Key`), so that what
/// follows (the guest's envelope, a job's payload, the receipt) never holds one.
pub fn strip_credentials(headers: &mut HeaderMap) {
    headers.remove(header::AUTHORIZATION);
    headers.remove(KEY_HEADER);
}

/// Whether `headers` meet `need`, given the admin token and the keys `registry` serves.
pub fn authorize(
    admin: &AdminToken,
    registry: &Registry,
    headers: &HeaderMap,
    need: Need<'_>,
) -> Result<Access, AccessError> {
    let unauthorized = |error| if need == Need::Admin { AccessError::NoAdminToken } else { error };
    let presented = credential(headers).ok_or_else(|| unauthorized(AccessError::Missing))?;
    if admin.verify(presented) {
        return Ok(Access::Admin);
    }
    let found = find_key(registry.keys(), presented);
    let (tenant, key) = found.ok_or_else(|| unauthorized(AccessError::Unknown))?;
    match need {
        Need::Admin => Err(AccessError::AdminOnly),
        Need::Tenant(wanted, _) | Need::AnyScope(wanted) if wanted != tenant => {
            Err(AccessError::OtherTenant(wanted.clone()))
        }
        Need::Tenant(_, scope) if !key.scopes.contains(&scope) => {
            Err(AccessError::NoScope { key: key.name.clone(), scope })
        }
        Need::Tenant(..) | Need::AnyScope(_) => Ok(Access::Key(key.name.clone())),
    }
}

/// The tenant and key whose digest is `presented`'s. Every key is compared, whole and in
/// constant time, whichever matches.
fn find_key<'a>(
    keys: impl Iterator<Item = (&'a Name, &'a DeployedKey)>,
    presented: &str,
) -> Option<(&'a Name, &'a DeployedKey)> {
    let digest = digest(presented);
    let mut found = None;
    for (tenant, key) in keys {
        let matches = bool::from(key.digest.ct_eq(&digest));
        if matches && found.is_none() {
            found = Some((tenant, key));
        }
    }
    found
}

/// The sha256 of a key, as the spec lists it (in hex) and the registry holds it.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A new key and its digest.
pub struct NewKey {
    /// [`KEY_PREFIX`] and 256 random bits in hex: shown once, kept by its holder only.
    pub key: String,
    /// The sha256 of `key` in hex, for the spec.
    pub sha256: String,
}

/// A fresh random key.
pub fn generate() -> NewKey {
    let key = format!("{KEY_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
    let sha256 = hex::encode(digest(&key));
    NewKey { key, sha256 }
}

/// The entry of `spec.apiKeys` for a key, as one YAML line: `- { name, sha256, scopes }`, the
/// scopes left out when `scopes` is empty (every scope).
pub fn spec_line(name: &Name, sha256: &str, scopes: &[Scope]) -> String {
    let mut scopes = scopes.to_vec();
    scopes.sort_unstable();
    scopes.dedup();
    let scopes = match scopes.as_slice() {
        [] => String::new(),
        listed => format!(", scopes: [{}]", listed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
    };
    format!("- {{ name: {name}, sha256: \"{sha256}\"{scopes} }}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ApiKey;
    use std::collections::HashMap;

    const ADMIN: &str = "admin-secret";

    fn name(raw: &str) -> Name {
        Name::new(raw).unwrap()
    }

    /// A registry with tenants `alpha` (keys `all`, every scope, and `jobs-only`), `beta` (key
    /// `all`) and `open` (no keys).
    fn registry() -> Registry {
        let key = |key_name: &str, secret: &str, scopes: Option<Vec<Scope>>| ApiKey {
            name: name(key_name),
            sha256: crate::spec::Sha256Hex(hex::encode(digest(secret))),
            scopes,
        };
        let mut keys = HashMap::new();
        keys.insert(
            name("alpha"),
            DeployedKey::all(&[
                key("all", "alpha-all", None),
                key("jobs-only", "alpha-jobs", Some(vec![Scope::Jobs])),
            ]),
        );
        keys.insert(name("beta"), DeployedKey::all(&[key("all", "beta-all", None)]));
        keys.insert(name("open"), DeployedKey::all(&[]));
        Registry::new(HashMap::new(), HashMap::new()).with_keys(keys)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_str(v).unwrap()))
            .collect()
    }

    fn decide(pairs: &[(&'static str, &str)], need: Need<'_>) -> Result<Access, AccessError> {
        authorize(&AdminToken::new(ADMIN), &registry(), &headers(pairs), need)
    }

    #[test]
    fn each_credential_opens_what_it_should_and_nothing_else() {
        let alpha = name("alpha");
        let jobs = Need::Tenant(&alpha, Scope::Jobs);
        let invoke = Need::Tenant(&alpha, Scope::Invoke);
        let bearer = |token: &str| format!("Bearer {token}");
        assert_eq!(decide(&[("authorization", &bearer(ADMIN))], Need::Admin), Ok(Access::Admin));
        assert_eq!(decide(&[("authorization", &bearer(ADMIN))], invoke), Ok(Access::Admin));
        assert_eq!(decide(&[("x-gojinn-key", "alpha-all")], invoke), Ok(Access::Key(name("all"))));
        assert_eq!(decide(&[("authorization", "bearer  alpha-all ")], jobs), Ok(Access::Key(name("all"))));
        assert_eq!(decide(&[("x-gojinn-key", "alpha-jobs")], jobs), Ok(Access::Key(name("jobs-only"))));
        assert_eq!(
            decide(&[("x-gojinn-key", "alpha-jobs")], invoke),
            Err(AccessError::NoScope { key: name("jobs-only"), scope: Scope::Invoke })
        );
        assert_eq!(
            decide(&[("x-gojinn-key", "beta-all")], invoke),
            Err(AccessError::OtherTenant(alpha.clone()))
        );
        assert_eq!(decide(&[("x-gojinn-key", "alpha-all")], Need::Admin), Err(AccessError::AdminOnly));
        // What a tenant deployed: any of its keys, whatever the scopes; no other tenant's.
        let described = Need::AnyScope(&alpha);
        assert_eq!(decide(&[("x-gojinn-key", "alpha-jobs")], described), Ok(Access::Key(name("jobs-only"))));
        assert_eq!(decide(&[("authorization", &bearer(ADMIN))], described), Ok(Access::Admin));
        assert_eq!(
            decide(&[("x-gojinn-key", "beta-all")], described),
            Err(AccessError::OtherTenant(alpha.clone()))
        );
        assert_eq!(decide(&[("x-gojinn-key", "alpha-al")], described), Err(AccessError::Unknown));
        assert_eq!(decide(&[], described), Err(AccessError::Missing));
        assert_eq!(decide(&[("x-gojinn-key", "alpha-al")], invoke), Err(AccessError::Unknown));
        assert_eq!(decide(&[("x-gojinn-key", "alpha-al")], Need::Admin), Err(AccessError::NoAdminToken));
        assert_eq!(decide(&[], Need::Admin), Err(AccessError::NoAdminToken));
        assert_eq!(decide(&[], invoke), Err(AccessError::Missing));
        assert_eq!(decide(&[("authorization", "Basic YWxwaGEtYWxs")], invoke), Err(AccessError::Missing));
        // X-Gojinn-Key wins over Authorization, whatever the latter holds.
        assert_eq!(
            decide(&[("x-gojinn-key", "wrong"), ("authorization", &bearer(ADMIN))], invoke),
            Err(AccessError::Unknown)
        );
    }

    #[test]
    fn refusals_are_401_with_a_challenge_or_403() {
        for (error, status, code) in [
            (AccessError::Missing, 401, "unauthorized"),
            (AccessError::Unknown, 401, "unauthorized"),
            (AccessError::NoAdminToken, 401, "unauthorized"),
            (AccessError::OtherTenant(name("a")), 403, "forbidden"),
            (AccessError::NoScope { key: name("k"), scope: Scope::Mcp }, 403, "forbidden"),
            (AccessError::AdminOnly, 403, "forbidden"),
        ] {
            assert_eq!((error.status().as_u16(), error.code()), (status, code), "{error}");
            let mut headers = HeaderMap::new();
            error.headers(&mut headers);
            assert_eq!(headers.contains_key(header::WWW_AUTHENTICATE), status == 401, "{error}");
        }
    }

    #[test]
    fn credentials_are_stripped_and_other_headers_kept() {
        let mut map = headers(&[("authorization", "Bearer x"), ("x-gojinn-key", "y"), ("accept", "*/*")]);
        strip_credentials(&mut map);
        assert_eq!(map.len(), 1);
        assert!(map.contains_key("accept"));
    }

    #[test]
    fn new_keys_are_prefixed_random_and_listed_by_their_digest() {
        let (one, two) = (generate(), generate());
        assert_ne!(one.key, two.key);
        assert!(one.key.starts_with(KEY_PREFIX) && one.key.len() == KEY_PREFIX.len() + 64, "{}", one.key);
        assert_eq!(one.sha256, hex::encode(Sha256::digest(one.key.as_bytes())));
    }

    #[test]
    fn the_spec_line_parses_as_the_key_it_names() {
        let new = generate();
        for scopes in [vec![], vec![Scope::Receipts, Scope::Jobs, Scope::Jobs]] {
            let line = spec_line(&name("ci"), &new.sha256, &scopes);
            let parsed: Vec<ApiKey> = serde_norway::from_str(&line).unwrap();
            let expected = (!scopes.is_empty()).then(|| vec![Scope::Jobs, Scope::Receipts]);
            assert_eq!(parsed[0].name, name("ci"), "{line}");
            assert_eq!(parsed[0].sha256.0, new.sha256, "{line}");
            assert_eq!(parsed[0].scopes, expected, "{line}");
        }
    }
}
