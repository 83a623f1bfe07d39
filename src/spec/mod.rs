//! Tenant and Function specs: strict types, loading from a directory, and resolution into a
//! normalized [`DesiredState`]. Nothing here touches the runtime or the network; the server and
//! the reconciler both build on it.

mod bounds;
mod cors;
mod depth;
mod files;
mod load;
mod names;
mod quantity;
mod resolve;
mod routes;
pub mod schema;
mod tool_schema;
mod types;

pub use bounds::{
    Bounds, DEFAULT_MAX_ENV_BYTES_PER_FUNCTION, DEFAULT_MAX_ENV_PER_FUNCTION,
    DEFAULT_MAX_FUNCTIONS_PER_TENANT, DEFAULT_MAX_ROUTES_PER_FUNCTION, DEFAULT_MAX_TENANTS, env_entry_bytes,
};
pub use cors::{
    Cors, CorsHeader, CorsMethod, CorsOrigin, MAX_CORS_HEADERS, MAX_CORS_MAX_AGE, MAX_CORS_METHODS,
    MAX_CORS_ORIGINS, WILDCARD as CORS_WILDCARD,
};
pub use files::SpecRoot;
pub use load::{Document, MAX_NESTING, load_documents, parse_file, spec_files};
pub use names::{FunctionId, Name};
pub use quantity::{ByteSize, Span};
pub use resolve::{
    DEFAULT_KV_MAX_BYTES, DEFAULT_MAX_BODY, DesiredState, Function, FunctionLimits, LoadReport,
    MAX_REQUESTS_PER_SECOND, ModuleBlob, Tenant, TenantQuotas, load_dir, resolve,
};
pub use routes::path_tenant;
pub use tool_schema::ToolSchema;
pub use types::*;

use std::fmt;
use std::path::PathBuf;

/// Where a document or a value is: file relative to the spec root, and line/column when known.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl Location {
    pub fn file(file: PathBuf) -> Self {
        Self { file, line: None, column: None }
    }

    pub fn at(file: PathBuf, line: usize) -> Self {
        Self { file, line: Some(line), column: None }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(column) = self.column {
            write!(f, ":{column}")?;
        }
        Ok(())
    }
}

/// One invalid document or value: where it is, which field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{location}: {message}")]
pub struct SpecError {
    pub location: Location,
    /// The message, starting with the field path when there is one (`spec.limits.memory: ...`).
    pub message: String,
    /// The resource the document describes (`tenant/acme`, `function/acme/hello`), when the
    /// document names one, so that status can say which resource is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

impl SpecError {
    pub fn new(location: Location, message: String) -> Self {
        Self { location, message, resource: None }
    }

    pub fn field(location: Location, field: &str, message: String) -> Self {
        Self::new(location, format!("{field}: {message}"))
    }

    /// The same error, about `resource` (a tenant's or a function's resource id).
    pub fn about(self, resource: String) -> Self {
        Self { resource: Some(resource), ..self }
    }
}

/// The resource id of a tenant, as the reconciler and status name it.
pub fn tenant_resource(tenant: impl fmt::Display) -> String {
    format!("tenant/{tenant}")
}

/// The resource id of a function, as the reconciler and status name it.
pub fn function_resource(tenant: impl fmt::Display, function: impl fmt::Display) -> String {
    format!("function/{tenant}/{function}")
}
