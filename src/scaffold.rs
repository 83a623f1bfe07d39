//! `gojinn new NAME`: writes a Rust function project on the guest SDK that builds for
//! wasm32-wasip1, with the spec that deploys it ([`SPEC_FILE`], never `gojinn.yaml`, the node
//! configuration's name) and a `.gitignore` that keeps the build and the node's data dir (its
//! admin token and audit key) out of git.

use crate::spec::Name;
use std::path::{Path, PathBuf};

/// The SDK inside the source tree this binary was built from.
pub fn bundled_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/rust");
    sdk.join("Cargo.toml").is_file().then_some(sdk)
}

/// The spec file of a new project.
pub const SPEC_FILE: &str = "specs.yaml";
/// What a new project keeps out of git: the build, and the data dir `gojinn serve` makes in it.
const GITIGNORE: &str = "/target\n/gojinn-data/\n";

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("{0}")]
    InvalidName(String),
    #[error("{0} already exists; pick another name or directory")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Creates `dir` with a function named `name` of `tenant`, depending on the SDK at `sdk`.
pub fn create(dir: &Path, name: &str, tenant: &str, sdk: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    let name = Name::new(name).map_err(ScaffoldError::InvalidName)?;
    let tenant = Name::new(tenant).map_err(ScaffoldError::InvalidName)?;
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    let files = [
        ("Cargo.toml", cargo_toml(&name, sdk)),
        ("src/main.rs", MAIN_RS.to_owned()),
        (SPEC_FILE, spec_yaml(&name, &tenant)),
        (".gitignore", GITIGNORE.to_owned()),
    ];
    let mut written = Vec::new();
    for (relative, contents) in files {
        let path = dir.join(relative);
        let write = |path: &Path| {
            std::fs::create_dir_all(path.parent().expect("file has a parent"))?;
            std::fs::write(path, contents)
        };
        write(&path).map_err(|source| ScaffoldError::Write { path: path.clone(), source })?;
        written.push(path);
    }
    Ok(written)
}

fn cargo_toml(name: &Name, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
gojinn = {{ package = "gojinn-sdk", path = {sdk:?} }}

[profile.release]
opt-level = "s"
strip = true

# A function is its own project, even inside another workspace.
[workspace]
"#,
        sdk = sdk.display().to_string()
    )
}

fn spec_yaml(name: &Name, tenant: &Name) -> String {
    format!(
        r#"# Deploy with: gojinn serve --specs .
apiVersion: gojinn.dev/v1
kind: Tenant
metadata: {{ name: {tenant} }}
spec:
  quotas: {{ maxConcurrency: 16, maxMemory: 128Mi }}
---
apiVersion: gojinn.dev/v1
kind: Function
metadata: {{ name: {name}, tenant: {tenant} }}
spec:
  module: {{ path: target/wasm32-wasip1/release/{name}.wasm }}
  limits: {{ memory: 32Mi, timeout: 500ms, maxOutput: 1Mi, maxBody: 1Mi }}
  env: {{ GREETING: Hello }}
"#
    )
}

const MAIN_RS: &str = r#"//! A Gojinn function: one request in, one response out.

use gojinn::{Request, Response};

#[gojinn::handler]
fn handle(req: Request) -> Response {
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
    let name = req.query("name").unwrap_or("world");
    Response::text(200, format!("{greeting}, {name}!\n"))
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_is_not_named_like_the_node_config_and_the_data_dir_is_ignored() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("greeter");
        let written = create(&dir, "greeter", "demo", Path::new("/sdk")).unwrap();
        assert!(written.contains(&dir.join(SPEC_FILE)));
        assert!(!dir.join("gojinn.yaml").exists(), "gojinn.yaml is the node configuration's name");
        let ignored = std::fs::read_to_string(dir.join(".gitignore")).unwrap();
        assert!(ignored.lines().any(|line| line == "/gojinn-data/"), "{ignored}");
        let spec = std::fs::read_to_string(dir.join(SPEC_FILE)).unwrap();
        assert!(spec.contains("kind: Function") && spec.contains("name: greeter"), "{spec}");
    }
}
