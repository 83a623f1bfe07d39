//! Compiled modules, keyed by the sha256 of their bytes: in memory, linked and ready to
//! instantiate, within a size budget (`runtime.moduleCacheBytes`; past it the least recently
//! used are dropped), and serialized under the data dir so that a restart, or the next call of a
//! module dropped from memory, loads it instead of compiling it again. Only files this node
//! wrote are deserialized, and each is checked against the digest recorded beside it.
//!
//! It never decides whether a module is valid or deployed: the runtime checks a module before
//! it is first cached, and says which ones may stay ([`ModuleCache::retain`]).

use super::{CallState, RuntimeError};
use lru::LruCache;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wasmtime::{Engine, InstancePre, Module};

pub(super) struct ModuleCache {
    dir: Option<PathBuf>,
    /// Distinguishes artifacts of different wasmtime versions and engine settings.
    engine_key: String,
    /// Most bytes of compiled code and data kept in memory.
    budget: u64,
    resident: Mutex<Resident>,
}

/// The modules in memory, most recently used first, and the bytes they hold.
struct Resident {
    modules: LruCache<Arc<str>, Cached>,
    bytes: u64,
}

struct Cached {
    pre: InstancePre<CallState>,
    size: u64,
}

impl ModuleCache {
    pub(super) fn new(engine: &Engine, dir: Option<PathBuf>, budget: u64) -> Result<Self, RuntimeError> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| RuntimeError::Cache(format!("create {}: {e}", dir.display())))?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let resident = Resident { modules: LruCache::unbounded(), bytes: 0 };
        Ok(Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
            budget,
            resident: Mutex::new(resident),
        })
    }

    fn resident(&self) -> std::sync::MutexGuard<'_, Resident> {
        self.resident.lock().expect("module cache lock")
    }

    /// The linked module whose sha256 is `sha256`, if it is in memory (now the most recently used).
    pub(super) fn get(&self, sha256: &str) -> Option<InstancePre<CallState>> {
        self.resident().modules.get(sha256).map(|cached| cached.pre.clone())
    }

    /// Keeps `pre` in memory, then drops the least recently used modules while more than the
    /// budget is held (never `pre` itself, however large).
    pub(super) fn insert(&self, sha256: &str, pre: InstancePre<CallState>) {
        let size = footprint(pre.module());
        let mut resident = self.resident();
        if let Some(old) = resident.modules.put(sha256.into(), Cached { pre, size }) {
            resident.bytes -= old.size;
        }
        resident.bytes += size;
        while resident.bytes > self.budget && resident.modules.len() > 1 {
            let Some((_, dropped)) = resident.modules.pop_lru() else { break };
            resident.bytes -= dropped.size;
        }
    }

    /// Drops in-memory modules whose sha256 is not in `keep`.
    pub(super) fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        let mut resident = self.resident();
        let gone: Vec<Arc<str>> =
            resident.modules.iter().filter(|(sha, _)| !keep(sha)).map(|(sha, _)| sha.clone()).collect();
        for sha in gone {
            if let Some(dropped) = resident.modules.pop(&sha) {
                resident.bytes -= dropped.size;
            }
        }
    }

    /// Bytes of compiled modules held in memory now.
    #[cfg(test)]
    fn resident_bytes(&self) -> u64 {
        self.resident().bytes
    }

    /// The compiled module for `bytes`, whose sha256 is `sha256`: loaded from the data dir when
    /// this node compiled it before, else compiled (CPU-heavy) and written there.
    pub(super) fn compile(
        &self,
        engine: &Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<Module, RuntimeError> {
        if let Some(module) = self.load(engine, sha256) {
            return Ok(module);
        }
        // Binary only: the text-format parser would quote the module's first line in its error,
        // and specs accept binary modules only.
        let module =
            Module::from_binary(engine, bytes).map_err(|e| RuntimeError::InvalidModule(format!("{e:#}")))?;
        self.store(sha256, &module);
        Ok(module)
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

/// What a compiled module holds in memory, as the cache counts it: its image (machine code,
/// the data it initializes memory with, and its metadata).
fn footprint(module: &Module) -> u64 {
    let image = module.image_range();
    (image.end as u64).saturating_sub(image.start as u64)
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::Linker;

    /// A module with `data` bytes of initialized memory, so that modules differ in size.
    fn module(data: usize) -> (String, Vec<u8>) {
        let wat = format!(
            r#"(module (memory (export "memory") 1) (data (i32.const 0) "{}") (func (export "_start")))"#,
            "x".repeat(data)
        );
        let bytes = wat::parse_str(&wat).unwrap();
        (hex::encode(Sha256::digest(&bytes)), bytes)
    }

    #[test]
    fn past_its_budget_the_cache_drops_the_least_recently_used_and_keeps_it_on_disk() {
        let engine = Engine::default();
        let linker = Linker::<CallState>::new(&engine);
        let dir = tempfile::tempdir().unwrap();
        let modules: Vec<_> = (1..=3).map(|i| module(i * 1000)).collect();
        let link = |cache: &ModuleCache, (sha, bytes): &(String, Vec<u8>)| {
            let compiled = cache.compile(&engine, sha, bytes).unwrap();
            cache.insert(sha, linker.instantiate_pre(&compiled).unwrap());
            footprint(&compiled)
        };
        let probe = ModuleCache::new(&engine, None, u64::MAX).unwrap();
        let sizes: Vec<u64> = modules.iter().map(|m| link(&probe, m)).collect();
        let budget = sizes[0] + sizes[1] + sizes[2] - 1;

        let cache = ModuleCache::new(&engine, Some(dir.path().to_owned()), budget).unwrap();
        let [a, b, c] = [&modules[0], &modules[1], &modules[2]];
        link(&cache, a);
        link(&cache, b);
        assert!(cache.get(&a.0).is_some(), "a is used again, so b is now the least recent");
        link(&cache, c);
        assert!(cache.get(&b.0).is_none(), "b was dropped to stay within the budget");
        assert!(cache.get(&a.0).is_some() && cache.get(&c.0).is_some());
        assert!(cache.resident_bytes() <= budget);
        assert!(cache.load(&engine, &b.0).is_some(), "b is loaded from disk instead of compiled");

        cache.retain(&|sha| sha == a.0);
        assert!(cache.get(&c.0).is_none(), "a module no function uses is dropped");
        assert_eq!(cache.resident_bytes(), sizes[0]);
    }

    #[test]
    fn a_module_larger_than_the_budget_is_still_kept_alone() {
        let engine = Engine::default();
        let linker = Linker::<CallState>::new(&engine);
        let cache = ModuleCache::new(&engine, None, 1).unwrap();
        for (sha, bytes) in [module(10), module(20)] {
            let compiled = cache.compile(&engine, &sha, &bytes).unwrap();
            cache.insert(&sha, linker.instantiate_pre(&compiled).unwrap());
            assert!(cache.get(&sha).is_some(), "the module just inserted stays");
        }
        assert_eq!(cache.resident().modules.len(), 1);
    }
}
