//! The node's bounds on what specs declare (`limits` in `gojinn.yaml`): how large a spec file is
//! and how many documents it holds, how many tenants a node serves, how many functions a tenant
//! has, how many routes a function declares and how large its environment is. They are the
//! operator's, not a tenant's: no spec can raise them. A document past a bound is invalid and fails
//! alone, with a message naming the field, the count and the setting; documents are counted in file
//! order, so which ones fail never depends on anything but the specs.

use super::types::EnvValue;
use super::{Location, SpecError};
use std::collections::BTreeMap;

/// Bytes of one spec file when `limits.bytesPerSpecFile` is not set: a file is read whole into
/// memory on every reconcile pass, and anything bigger is an operator's mistake, not a spec.
pub const DEFAULT_MAX_SPEC_FILE_BYTES: u64 = 4 << 20;
/// Documents in one spec file when `limits.documentsPerSpecFile` is not set: a thousand tenants
/// with five functions each fit in one.
pub const DEFAULT_MAX_DOCUMENTS_PER_SPEC_FILE: u32 = 10_000;
/// Tenants a node serves when `limits.tenants` is not set: ten times what the reconcile
/// benchmark deploys, far more than one node's memory holds busy.
pub const DEFAULT_MAX_TENANTS: u32 = 10_000;
/// Functions of one tenant when `limits.functionsPerTenant` is not set.
pub const DEFAULT_MAX_FUNCTIONS_PER_TENANT: u32 = 1_000;
/// Routes one function declares when `limits.routesPerFunction` is not set: every route is a
/// node in the router of every node, and an API with more paths is several functions.
pub const DEFAULT_MAX_ROUTES_PER_FUNCTION: u32 = 64;
/// Environment variables of one function when `limits.envPerFunction` is not set.
pub const DEFAULT_MAX_ENV_PER_FUNCTION: u32 = 256;
/// Bytes of one function's environment (names and values, secrets' values included) when
/// `limits.envBytesPerFunction` is not set: the environment is copied into every call's sandbox.
pub const DEFAULT_MAX_ENV_BYTES_PER_FUNCTION: u64 = 64 << 10;

/// Bounds on what the specs a node loads may declare, and the one default a spec leaves to the
/// node (`default_replicas`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub bytes_per_spec_file: u64,
    pub documents_per_spec_file: u32,
    pub tenants: u32,
    pub functions_per_tenant: u32,
    pub routes_per_function: u32,
    pub env_per_function: u32,
    pub env_bytes_per_function: u64,
    /// The replicas of a tenant whose spec does not set them (`cluster.replicas`): 1, 3 or 5.
    pub default_replicas: u8,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            bytes_per_spec_file: DEFAULT_MAX_SPEC_FILE_BYTES,
            documents_per_spec_file: DEFAULT_MAX_DOCUMENTS_PER_SPEC_FILE,
            tenants: DEFAULT_MAX_TENANTS,
            functions_per_tenant: DEFAULT_MAX_FUNCTIONS_PER_TENANT,
            routes_per_function: DEFAULT_MAX_ROUTES_PER_FUNCTION,
            env_per_function: DEFAULT_MAX_ENV_PER_FUNCTION,
            env_bytes_per_function: DEFAULT_MAX_ENV_BYTES_PER_FUNCTION,
            default_replicas: 1,
        }
    }
}

impl Bounds {
    /// The error of a tenant document past `limits.tenants`, when `admitted` tenants are already in.
    pub(super) fn tenant(&self, admitted: usize, at: &Location) -> Result<(), SpecError> {
        match admitted < self.tenants as usize {
            true => Ok(()),
            false => Err(SpecError::field(
                at.clone(),
                "metadata.name",
                format!(
                    "the node serves at most {} tenants (limits.tenants) and the documents before this one \
                     define them; this tenant is not deployed",
                    self.tenants
                ),
            )),
        }
    }

    /// The error of a function document past `limits.functionsPerTenant`, when its tenant has
    /// `admitted` functions already.
    pub(super) fn function(&self, tenant: &str, admitted: usize, at: &Location) -> Result<(), SpecError> {
        match admitted < self.functions_per_tenant as usize {
            true => Ok(()),
            false => Err(SpecError::field(
                at.clone(),
                "metadata.tenant",
                format!(
                    "tenant {tenant} has {} functions before this one, the most a tenant may have \
                     (limits.functionsPerTenant); this function is not deployed",
                    self.functions_per_tenant
                ),
            )),
        }
    }

    /// Every problem of a function's routes and environment against these bounds.
    pub(super) fn function_spec(
        &self,
        routes: usize,
        env: &BTreeMap<String, EnvValue>,
        at: &Location,
        problems: &mut Vec<SpecError>,
    ) {
        if routes > self.routes_per_function as usize {
            problems.push(SpecError::field(
                at.clone(),
                "spec.routes",
                format!(
                    "{routes} routes, more than the {} a function may declare (limits.routesPerFunction)",
                    self.routes_per_function
                ),
            ));
        }
        if env.len() > self.env_per_function as usize {
            problems.push(SpecError::field(
                at.clone(),
                "spec.env",
                format!(
                    "{} variables, more than the {} a function may have (limits.envPerFunction)",
                    env.len(),
                    self.env_per_function
                ),
            ));
        }
        let bytes = env_bytes(env);
        if bytes > self.env_bytes_per_function {
            problems.push(SpecError::field(
                at.clone(),
                "spec.env",
                format!(
                    "{bytes} bytes of names and values, more than the {} a function's environment may hold \
                     (limits.envBytesPerFunction)",
                    self.env_bytes_per_function
                ),
            ));
        }
    }
}

/// Bytes of an environment as the spec declares it: a secret counts its name only here; its value
/// is counted where it is read, at deploy (`secrets`).
fn env_bytes(env: &BTreeMap<String, EnvValue>) -> u64 {
    env.iter()
        .map(|(name, value)| match value {
            EnvValue::Literal(literal) => env_entry_bytes(name, literal.len()),
            EnvValue::Secret { .. } => env_entry_bytes(name, 0),
        })
        .sum()
}

/// Bytes one variable takes in an environment as the guest gets it: `NAME=value` and its
/// terminating NUL.
pub fn env_entry_bytes(name: &str, value_len: usize) -> u64 {
    (name.len() + 1 + value_len + 1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, EnvValue> {
        pairs.iter().map(|(name, value)| (name.to_string(), EnvValue::from(*value))).collect()
    }

    fn problems(bounds: &Bounds, routes: usize, env: &BTreeMap<String, EnvValue>) -> Vec<String> {
        let mut problems = Vec::new();
        bounds.function_spec(routes, env, &Location::at("f.yaml".into(), 3), &mut problems);
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn routes_and_env_are_accepted_at_their_bounds_and_refused_one_past() {
        let bounds = Bounds {
            routes_per_function: 2,
            env_per_function: 2,
            env_bytes_per_function: 10,
            ..Bounds::default()
        };
        // "A=bc\0" and "D=ef\0": 5 + 5 bytes.
        assert_eq!(problems(&bounds, 2, &env(&[("A", "bc"), ("D", "ef")])), Vec::<String>::new());
        assert_eq!(
            problems(&bounds, 3, &env(&[])),
            [
                "f.yaml:3: spec.routes: 3 routes, more than the 2 a function may declare (limits.routesPerFunction)"
            ]
        );
        assert_eq!(
            problems(&bounds, 0, &env(&[("A", ""), ("B", ""), ("C", "")])),
            ["f.yaml:3: spec.env: 3 variables, more than the 2 a function may have (limits.envPerFunction)"]
        );
        assert_eq!(
            problems(&bounds, 0, &env(&[("A", "bc"), ("D", "efg")])),
            [
                "f.yaml:3: spec.env: 11 bytes of names and values, more than the 10 a function's environment may hold (limits.envBytesPerFunction)"
            ]
        );
    }

    #[test]
    fn tenants_and_functions_are_counted_up_to_their_bounds() {
        let bounds = Bounds { tenants: 2, functions_per_tenant: 1, ..Bounds::default() };
        let at = Location::at("t.yaml".into(), 9);
        assert!(bounds.tenant(1, &at).is_ok());
        let refused = bounds.tenant(2, &at).unwrap_err().to_string();
        assert!(
            refused
                .starts_with("t.yaml:9: metadata.name: the node serves at most 2 tenants (limits.tenants)"),
            "{refused}"
        );
        assert!(bounds.function("acme", 0, &at).is_ok());
        let refused = bounds.function("acme", 1, &at).unwrap_err().to_string();
        assert!(
            refused.starts_with("t.yaml:9: metadata.tenant: tenant acme has 1 functions before this one, the most a tenant may have (limits.functionsPerTenant)"),
            "{refused}"
        );
    }
}
