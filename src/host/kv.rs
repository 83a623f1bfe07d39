//! `host_kv_get`, `host_kv_set`, `host_kv_delete`, `host_kv_list` and `host_kv_cas`: the
//! tenant's key-value store, through the function's `grants.kv`.
//!
//! A grant pattern is an exact key, or a prefix ending in `*` (`*` alone: every key). `read`
//! patterns allow get and list; `write` patterns allow set, delete, cas (and mutex locks).
//! Listing requires the whole prefix to be readable: some read pattern `p*` with the listed
//! prefix starting with `p`. Exact read patterns never allow a list, so a list answer never
//! needs filtering and is never silently short. A list longer than [`MAX_LIST_KEYS`] is a quota
//! error rather than a truncated answer.

use super::capabilities::Capabilities;
use super::work::Work;
use super::{ErrorCode, HostError, HostView, Imports, Waits, memory};
use crate::spec::KvGrant;
use crate::state::{MAX_KEY_BYTES, MAX_VALUE_BYTES, validate_key};
use bytes::Bytes;
use std::sync::Arc;
use wasmtime::Caller;

/// Most keys one `host_kv_list` answers.
pub const MAX_LIST_KEYS: usize = 10_000;

pub(super) fn link<T: HostView>(imports: &mut Imports<'_, T>) -> wasmtime::Result<()> {
    imports.func_async("host_kv_get", Waits::StateBackend, get::<T>)?;
    imports.func_async("host_kv_set", Waits::StateBackend, set::<T>)?;
    imports.func_async("host_kv_delete", Waits::StateBackend, delete::<T>)?;
    imports.func_async("host_kv_list", Waits::StateBackend, list::<T>)?;
    imports.func_async("host_kv_cas", Waits::StateBackend, cas::<T>)
}

/// Read or write access to a key.
#[derive(Clone, Copy)]
pub(super) enum Access {
    Read,
    Write,
}

/// A function's compiled `grants.kv`.
#[derive(Debug, Default)]
pub(super) struct Grants {
    read: Patterns,
    write: Patterns,
}

impl Grants {
    /// Checks every pattern, naming each bad one.
    pub(super) fn configure(grant: Option<&KvGrant>) -> Result<Self, Vec<String>> {
        let Some(grant) = grant else { return Ok(Self::default()) };
        let mut problems = Vec::new();
        let read = Patterns::parse("kv.read", &grant.read, &mut problems);
        let write = Patterns::parse("kv.write", &grant.write, &mut problems);
        if problems.is_empty() { Ok(Self { read, write }) } else { Err(problems) }
    }

    fn patterns(&self, access: Access) -> (&Patterns, &'static str) {
        match access {
            Access::Read => (&self.read, "read"),
            Access::Write => (&self.write, "write"),
        }
    }

    pub(super) fn check(&self, access: Access, op: &str, key: &str) -> Result<(), HostError> {
        let (patterns, name) = self.patterns(access);
        if patterns.exact.iter().any(|k| k == key)
            || patterns.prefixes.iter().any(|p| key.starts_with(p.as_str()))
        {
            return Ok(());
        }
        Err(HostError::denied(format!("{op} of key {key:?} denied: grants.kv.{name} is {:?}", patterns.raw)))
    }

    pub(super) fn check_list(&self, prefix: &str) -> Result<(), HostError> {
        if self.read.prefixes.iter().any(|p| prefix.starts_with(p.as_str())) {
            return Ok(());
        }
        Err(HostError::denied(format!(
            "listing prefix {prefix:?} denied: no pattern \"p*\" of grants.kv.read {:?} covers it",
            self.read.raw
        )))
    }
}

#[derive(Debug, Default)]
struct Patterns {
    raw: Vec<String>,
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl Patterns {
    fn parse(field: &str, raw: &[String], problems: &mut Vec<String>) -> Self {
        let mut patterns = Self { raw: raw.to_vec(), ..Self::default() };
        for (i, pattern) in raw.iter().enumerate() {
            let valid = match pattern.strip_suffix('*') {
                Some(prefix) if !prefix.contains('*') => {
                    let ok = prefix.is_empty() || validate_key(&format!("{prefix}x")).is_ok();
                    patterns.prefixes.push(prefix.to_owned());
                    ok
                }
                Some(_) => false,
                None => {
                    patterns.exact.push(pattern.clone());
                    validate_key(pattern).is_ok()
                }
            };
            if !valid {
                problems.push(format!(
                    "{field}[{i}] {pattern:?}: a pattern is a valid key, or the start of one followed by a final *"
                ));
            }
        }
        patterns
    }
}

/// Reads a key argument, validates it and checks `access` for `op`; returns it with the
/// function's capabilities.
pub(super) fn granted_key<T: HostView>(
    caller: &mut Caller<'_, T>,
    key: (i32, i32),
    access: Access,
    op: &str,
) -> Result<(Arc<Capabilities>, String), HostError> {
    let key = memory::read_str(caller, key, MAX_KEY_BYTES, "the key")?;
    validate_key(&key)?;
    let caps = caller.data_mut().host().caps.clone();
    caps.kv.check(access, op, &key)?;
    Ok((caps, key))
}

fn get<T: HostView>(
    caller: &mut Caller<'_, T>,
    (key_ptr, key_len, out_ptr, out_cap): (i32, i32, i32, i32),
) -> Result<Work, HostError> {
    let (caps, key) = granted_key(caller, (key_ptr, key_len), Access::Read, "kv get")?;
    Ok(Work::data((out_ptr, out_cap), vec![Bytes::from(key.clone())], async move {
        let value = caps.state.kv.get(&caps.function.tenant, &key).await?;
        value.ok_or_else(|| HostError::Guest(ErrorCode::NotFound, format!("key {key:?} does not exist")))
    }))
}

fn set<T: HostView>(
    caller: &mut Caller<'_, T>,
    (key_ptr, key_len, val_ptr, val_len): (i32, i32, i32, i32),
) -> Result<Work, HostError> {
    let (caps, key) = granted_key(caller, (key_ptr, key_len), Access::Write, "kv set")?;
    let value = Bytes::from(memory::read(caller, val_ptr, val_len, MAX_VALUE_BYTES)?);
    Ok(Work::value(async move {
        caps.state.kv.put(&caps.function.tenant, &key, value).await?;
        Ok(0)
    }))
}

fn delete<T: HostView>(
    caller: &mut Caller<'_, T>,
    (key_ptr, key_len): (i32, i32),
) -> Result<Work, HostError> {
    let (caps, key) = granted_key(caller, (key_ptr, key_len), Access::Write, "kv delete")?;
    Ok(Work::value(async move {
        caps.state.kv.delete(&caps.function.tenant, &key).await?;
        Ok(0)
    }))
}

fn list<T: HostView>(
    caller: &mut Caller<'_, T>,
    (prefix_ptr, prefix_len, out_ptr, out_cap): (i32, i32, i32, i32),
) -> Result<Work, HostError> {
    let prefix = memory::read_str(caller, (prefix_ptr, prefix_len), MAX_KEY_BYTES, "the prefix")?;
    let caps = caller.data_mut().host().caps.clone();
    caps.kv.check_list(&prefix)?;
    Ok(Work::data((out_ptr, out_cap), vec![Bytes::from(prefix.clone())], async move {
        let keys = caps.state.kv.keys(&caps.function.tenant, &prefix, MAX_LIST_KEYS + 1).await?;
        if keys.len() > MAX_LIST_KEYS {
            return Err(HostError::Guest(
                ErrorCode::Quota,
                format!("more than {MAX_LIST_KEYS} keys start with {prefix:?}; list a longer prefix"),
            ));
        }
        Ok(Bytes::from(serde_json::to_vec(&keys).expect("keys serialize")))
    }))
}

fn cas<T: HostView>(
    caller: &mut Caller<'_, T>,
    (key_ptr, key_len, expected_ptr, expected_len, new_ptr, new_len): (i32, i32, i32, i32, i32, i32),
) -> Result<Work, HostError> {
    let (caps, key) = granted_key(caller, (key_ptr, key_len), Access::Write, "kv cas")?;
    let expected = match expected_len {
        -1 => None,
        _ => Some(Bytes::from(memory::read(caller, expected_ptr, expected_len, MAX_VALUE_BYTES)?)),
    };
    let new = Bytes::from(memory::read(caller, new_ptr, new_len, MAX_VALUE_BYTES)?);
    Ok(Work::value(async move {
        let swapped = caps.state.kv.cas(&caps.function.tenant, &key, expected, new).await?;
        Ok(i64::from(swapped))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(read: &[&str], write: &[&str]) -> Result<Grants, Vec<String>> {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Grants::configure(Some(&KvGrant { read: owned(read), write: owned(write) }))
    }

    #[test]
    fn patterns_are_exact_keys_or_final_star_prefixes() {
        let g = grants(&["*"], &["counters/*", "config"]).unwrap();
        assert!(g.check(Access::Read, "get", "anything/at/all").is_ok());
        assert!(g.check(Access::Write, "set", "counters/a").is_ok());
        assert!(g.check(Access::Write, "set", "config").is_ok());
        let denied = g.check(Access::Write, "kv set", "configx").unwrap_err().to_string();
        assert!(denied.contains("\"configx\"") && denied.contains("counters/*"), "{denied}");
        assert!(g.check(Access::Write, "set", "counter").is_err());
    }

    #[test]
    fn listing_needs_a_prefix_pattern_covering_the_whole_prefix() {
        let g = grants(&["public/*", "secret"], &[]).unwrap();
        assert!(g.check_list("public/").is_ok());
        assert!(g.check_list("public/a").is_ok());
        assert!(g.check_list("").is_err());
        assert!(g.check_list("pub").is_err());
        assert!(g.check_list("secret").is_err(), "an exact pattern allows a get, not a list");
    }

    #[test]
    fn bad_patterns_are_all_reported() {
        let problems = grants(&["a*b", "**", "../x"], &["ok/*", "/abs"]).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("kv.read[0] \"a*b\""), "{problems:?}");
        assert!(problems[3].starts_with("kv.write[1]"), "{problems:?}");
    }
}
