//! Secret environment values (`env: { NAME: { valueFrom: ... } }`): each node reads them when it
//! deploys a function, from its own secrets directory or its own environment, so a secret's value
//! is never in a spec, the state backend, a plan, status, a receipt or a log; only where to find
//! it is. A tenant reaches only its own: files under `<dir>/<tenant>/`, variables named
//! `GOJINN_SECRET_<TENANT>_<NAME>`. The values read count in the function's environment size
//! (`limits.envBytesPerFunction`), which the spec alone can only count without them.

use crate::spec::{EnvValue, FunctionId, Name, ValueFrom, env_entry_bytes};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest secret a node reads, in bytes.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// The node's `secrets` settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct SecretSettings {
    /// Where `valueFrom.file` secrets are, one directory per tenant; default `dataDir/secrets`.
    pub dir: Option<PathBuf>,
}

/// Why a secret could not be read. Names the variable and where it was looked for, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("env {name}: secret file {} cannot be read: {reason}", path.display())]
    Unreadable { name: String, path: PathBuf, reason: String },
    #[error("env {name}: secret file {} is larger than {MAX_SECRET_BYTES} bytes", path.display())]
    TooLarge { name: String, path: PathBuf },
    #[error("env {name}: secret file {} is not UTF-8", path.display())]
    NotUtf8 { name: String, path: PathBuf },
    #[error("env {name}: the node's environment has no {variable}")]
    MissingVariable { name: String, variable: String },
    #[error("env {name}: the node's variable {variable} is not UTF-8")]
    VariableNotUtf8 { name: String, variable: String },
    #[error(
        "env {name}: with the value of this secret, function {function}'s environment is {bytes} bytes \
         of names and values, more than the {max} it may hold (limits.envBytesPerFunction)"
    )]
    TooLargeEnv { function: FunctionId, name: String, bytes: u64, max: u64 },
}

/// Where this node finds secrets, and how large an environment they may make.
pub struct Secrets {
    dir: PathBuf,
    /// `limits.envBytesPerFunction`.
    max_env_bytes: u64,
}

impl Secrets {
    pub fn new(settings: &SecretSettings, data_dir: &Path, max_env_bytes: u64) -> Self {
        Self { dir: settings.dir.clone().unwrap_or_else(|| data_dir.join("secrets")), max_env_bytes }
    }

    /// The environment `function` runs with: literals as written, secrets read now, all of it
    /// within `limits.envBytesPerFunction`.
    pub fn resolve(
        &self,
        function: &FunctionId,
        env: &BTreeMap<String, EnvValue>,
    ) -> Result<Vec<(String, String)>, SecretError> {
        self.resolve_with(function, env, |variable| std::env::var_os(variable))
    }

    /// [`Self::resolve`] with the node's environment read through `variable`.
    fn resolve_with(
        &self,
        function: &FunctionId,
        env: &BTreeMap<String, EnvValue>,
        variable: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Vec<(String, String)>, SecretError> {
        let resolved = self.read_all(&function.tenant, env, variable)?;
        self.check_size(function, env, &resolved)?;
        Ok(resolved)
    }

    /// Every variable of `env` with its value, secrets read from `tenant`'s own places.
    fn read_all(
        &self,
        tenant: &Name,
        env: &BTreeMap<String, EnvValue>,
        variable: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Vec<(String, String)>, SecretError> {
        env.iter()
            .map(|(name, value)| {
                let value = match value {
                    EnvValue::Literal(literal) => literal.clone(),
                    EnvValue::Secret { value_from: ValueFrom::File(file) } => {
                        read_file(name, &self.dir.join(tenant.as_str()).join(&file.0))?
                    }
                    EnvValue::Secret { value_from: ValueFrom::Env(from) } => {
                        let variable_name = tenant_variable(tenant, &from.0);
                        variable(&variable_name)
                            .ok_or_else(|| SecretError::MissingVariable {
                                name: name.clone(),
                                variable: variable_name.clone(),
                            })?
                            .into_string()
                            .map_err(|_| SecretError::VariableNotUtf8 {
                                name: name.clone(),
                                variable: variable_name,
                            })?
                    }
                };
                Ok((name.clone(), value))
            })
            .collect()
    }

    /// The environment's size with the secrets' values. Names and literals were checked against
    /// the bound when the spec was loaded, so the secrets' values, added in name order, take it
    /// past: the one that does is named, never quoted.
    fn check_size(
        &self,
        function: &FunctionId,
        env: &BTreeMap<String, EnvValue>,
        resolved: &[(String, String)],
    ) -> Result<(), SecretError> {
        let max = self.max_env_bytes;
        let bytes: u64 = resolved.iter().map(|(name, value)| env_entry_bytes(name, value.len())).sum();
        if bytes <= max {
            return Ok(());
        }
        let secret_bytes = |name: &str, value: &str| match env.get(name) {
            Some(EnvValue::Secret { .. }) => value.len() as u64,
            _ => 0,
        };
        let mut size = bytes - resolved.iter().map(|(name, value)| secret_bytes(name, value)).sum::<u64>();
        let crossing = resolved.iter().find(|(name, value)| {
            size += secret_bytes(name, value);
            size > max
        });
        let name = crossing.map(|(name, _)| name.clone()).unwrap_or_default();
        Err(SecretError::TooLargeEnv { function: function.clone(), name, bytes, max })
    }
}

/// The node variable that holds `tenant`'s secret `name`: `GOJINN_SECRET_<TENANT>_<NAME>`, the
/// tenant upper-cased with '-' as '_' (tenant names have no '_', so two tenants never share one).
pub fn tenant_variable(tenant: &Name, name: &str) -> String {
    format!("GOJINN_SECRET_{}_{name}", tenant.as_str().to_ascii_uppercase().replace('-', "_"))
}

/// A secret file's content, exactly (a trailing newline is part of it). Only regular files (or
/// links to them) are read, so a FIFO cannot hold up a deploy.
fn read_file(name: &str, path: &Path) -> Result<String, SecretError> {
    let unreadable =
        |reason: String| SecretError::Unreadable { name: name.to_owned(), path: path.to_owned(), reason };
    let metadata = std::fs::metadata(path).map_err(|e| unreadable(e.kind().to_string()))?;
    if !metadata.is_file() {
        return Err(unreadable("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_SECRET_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| unreadable(e.kind().to_string()))?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(SecretError::TooLarge { name: name.to_owned(), path: path.to_owned() });
    }
    String::from_utf8(bytes)
        .map_err(|_| SecretError::NotUtf8 { name: name.to_owned(), path: path.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{EnvName, SecretFile};

    fn env(pairs: &[(&str, EnvValue)]) -> BTreeMap<String, EnvValue> {
        pairs.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect()
    }

    fn file(name: &str) -> EnvValue {
        EnvValue::Secret { value_from: ValueFrom::File(SecretFile(name.into())) }
    }

    fn variable(name: &str) -> EnvValue {
        EnvValue::Secret { value_from: ValueFrom::Env(EnvName(name.into())) }
    }

    fn id(tenant: &str) -> FunctionId {
        FunctionId { tenant: Name::new(tenant).unwrap(), function: Name::new("hello").unwrap() }
    }

    #[test]
    fn literals_pass_and_secrets_are_read_from_the_tenants_own_file_and_variable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("acme-co")).unwrap();
        std::fs::write(dir.path().join("acme-co/db-password"), "s3cret\n").unwrap();
        let secrets = Secrets { dir: dir.path().to_owned(), max_env_bytes: 1024 };
        let function = id("acme-co");
        let env = env(&[("GREETING", "hi".into()), ("DB", file("db-password")), ("TOKEN", variable("API"))]);
        let lookup = |name: &str| (name == "GOJINN_SECRET_ACME_CO_API").then(|| OsString::from("t0ken"));
        let resolved = secrets.resolve_with(&function, &env, lookup).unwrap();
        let expected = [("DB", "s3cret\n"), ("GREETING", "hi"), ("TOKEN", "t0ken")];
        assert_eq!(resolved, expected.map(|(n, v)| (n.to_owned(), v.to_owned())));
    }

    #[test]
    fn a_missing_secret_names_the_variable_and_the_place_never_another_tenants() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("other")).unwrap();
        std::fs::write(dir.path().join("other/db-password"), "theirs").unwrap();
        let secrets = Secrets { dir: dir.path().to_owned(), max_env_bytes: 1024 };
        let function = id("acme");

        let error =
            secrets.resolve_with(&function, &env(&[("DB", file("db-password"))]), |_| None).unwrap_err();
        let expected = format!(
            "env DB: secret file {} cannot be read: entity not found",
            dir.path().join("acme/db-password").display()
        );
        assert_eq!(error.to_string(), expected);

        let error =
            secrets.resolve_with(&function, &env(&[("TOKEN", variable("API"))]), |_| None).unwrap_err();
        assert_eq!(error.to_string(), "env TOKEN: the node's environment has no GOJINN_SECRET_ACME_API");
    }

    #[test]
    fn oversized_non_utf8_and_non_regular_secret_files_are_refused_without_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let tenant_dir = dir.path().join("acme");
        std::fs::create_dir_all(tenant_dir.join("a-directory")).unwrap();
        std::fs::write(tenant_dir.join("big"), vec![b'x'; MAX_SECRET_BYTES as usize + 1]).unwrap();
        std::fs::write(tenant_dir.join("binary"), [0xff, 0xfe, 0x00]).unwrap();
        let secrets = Secrets { dir: dir.path().to_owned(), max_env_bytes: 1 << 20 };
        let function = id("acme");
        let refused = |name: &str| {
            secrets.resolve_with(&function, &env(&[("V", file(name))]), |_| None).unwrap_err().to_string()
        };
        assert!(refused("big").ends_with("is larger than 65536 bytes"), "{}", refused("big"));
        assert!(!refused("big").contains("xxx"));
        assert!(refused("binary").ends_with("is not UTF-8"));
        assert!(refused("a-directory").ends_with("cannot be read: not a regular file"));
    }

    #[test]
    fn secret_values_count_in_the_environment_size_up_to_its_bound_and_are_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("acme")).unwrap();
        std::fs::write(dir.path().join("acme/key"), "k".repeat(10)).unwrap();
        // "A=bc\0" 5 bytes, "KEY=kkkkkkkkkk\0" 15, "TOKEN=ttttt\0" 12: 32 in all.
        let env = env(&[("A", "bc".into()), ("KEY", file("key")), ("TOKEN", variable("T"))]);
        let lookup = |name: &str| (name == "GOJINN_SECRET_ACME_T").then(|| OsString::from("ttttt"));
        let at = Secrets { dir: dir.path().to_owned(), max_env_bytes: 32 };
        assert_eq!(at.resolve_with(&id("acme"), &env, lookup).unwrap().len(), 3, "exactly the bound");

        let past = Secrets { max_env_bytes: 31, ..at };
        let refused = past.resolve_with(&id("acme"), &env, lookup).unwrap_err().to_string();
        assert_eq!(
            refused,
            "env TOKEN: with the value of this secret, function acme/hello's environment is 32 bytes of \
             names and values, more than the 31 it may hold (limits.envBytesPerFunction)"
        );
        let small = Secrets { max_env_bytes: 20, ..past };
        let refused = small.resolve_with(&id("acme"), &env, lookup).unwrap_err().to_string();
        assert!(refused.starts_with("env KEY: "), "the first secret past the bound is named: {refused}");
        assert!(!refused.contains("kkk") && !refused.contains("ttt"), "{refused}");
    }
}
