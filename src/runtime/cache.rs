//! Compiled modules, keyed by the sha256 of their bytes: in memory for the life of the process,
//! and serialized under the data dir so that a restart skips compilation. Only files this node
//! wrote are deserialized, and each is checked against the digest recorded beside it.

use super::RuntimeError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use wasmtime::{Engine, Module};

pub(super) struct ModuleCache {
    dir: Option<PathBuf>,
    /// Distinguishes artifacts of different wasmtime versions and engine settings.
    engine_key: String,
    modules: Mutex<HashMap<String, Module>>,
}

impl ModuleCache {
    pub(super) fn new(engine: &Engine, dir: Option<PathBuf>) -> Result<Self, RuntimeError> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| RuntimeError::Cache(format!("create {}: {e}", dir.display())))?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self { dir, engine_key: format!("{:016x}", hasher.finish()), modules: Mutex::default() })
    }

    /// The compiled module for `bytes`, whose sha256 is `sha256`, compiling at most once.
    pub(super) fn get_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<Module, RuntimeError> {
        if let Some(module) = self.modules.lock().expect("cache lock").get(sha256) {
            return Ok(module.clone());
        }
        let module = match self.load(engine, sha256) {
            Some(module) => module,
            None => {
                // Binary only: the text-format parser would quote the module's first line in
                // its error, and specs accept binary modules only.
                let module = Module::from_binary(engine, bytes)
                    .map_err(|e| RuntimeError::InvalidModule(format!("{e:#}")))?;
                self.store(sha256, &module);
                module
            }
        };
        self.modules.lock().expect("cache lock").insert(sha256.to_owned(), module.clone());
        Ok(module)
    }

    /// Drops in-memory modules whose sha256 is not in `keep`.
    pub(super) fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        self.modules.lock().expect("cache lock").retain(|sha, _| keep(sha));
    }

    fn artifact(&self, sha256: &str) -> Option<(PathBuf, PathBuf)> {
        let dir = self.dir.as_ref()?;
        let stem = format!("{sha256}-{}", self.engine_key);
        Some((dir.join(format!("{stem}.cwasm")), dir.join(format!("{stem}.sha256"))))
    }

    fn load(&self, engine: &Engine, sha256: &str) -> Option<Module> {
        let (artifact, digest) = self.artifact(sha256)?;
        let expected = std::fs::read_to_string(&digest).ok()?;
        let bytes = std::fs::read(&artifact).ok()?;
        if hex::encode(Sha256::digest(&bytes)) != expected.trim() {
            tracing::warn!(path = %artifact.display(), "compiled module does not match its digest; recompiling");
            return None;
        }
        // SAFETY: the artifact was written by this node (see `store`) for this engine
        // configuration, and its bytes match the digest recorded when it was written.
        match unsafe { Module::deserialize(engine, &bytes) } {
            Ok(module) => Some(module),
            Err(e) => {
                tracing::warn!(path = %artifact.display(), error = %e, "cannot load compiled module; recompiling");
                None
            }
        }
    }

    fn store(&self, sha256: &str, module: &Module) {
        let Some((artifact, digest)) = self.artifact(sha256) else { return };
        let result = module.serialize().map_err(|e| e.to_string()).and_then(|bytes| {
            write_atomically(&artifact, &bytes)?;
            write_atomically(&digest, hex::encode(Sha256::digest(&bytes)).as_bytes())
        });
        if let Err(e) = result {
            tracing::warn!(path = %artifact.display(), error = %e, "cannot cache compiled module");
        }
    }
}

/// Writes `path` whole or not at all: a temporary file beside it, moved into place.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let written = tempfile::NamedTempFile::new_in(dir).and_then(|mut file| {
        file.write_all(bytes)?;
        file.persist(path).map(drop).map_err(|err| err.error)
    });
    written.map_err(|e| format!("write {}: {e}", path.display()))
}
