//! What `gojinn validate` checks: a spec directory as a deploy on a given node would see it.
//! Every document is loaded and resolved (every problem of each, with file, line and field),
//! then every function's module is prepared by a runtime built from the node's configuration
//! (the same engine settings, host functions and memory limit a node serves with): it must be
//! WebAssembly, compile, export `_start` and `memory`, import only what the node provides, and
//! fit the node's memory per instance. Each distinct module is compiled once. Nothing here
//! writes: no module cache, no state.

use crate::config::NodeConfig;
use crate::metrics::Metrics;
use crate::runtime::{Runtime, RuntimeError};
use crate::spec::{LoadReport, SpecError, function_resource, load_dir};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Loads the specs under `specs` and checks every function's module against `config`'s
/// runtime. Functions whose module does not load are errors and leave the returned state.
pub fn validate(specs: &Path, config: &NodeConfig) -> Result<LoadReport, RuntimeError> {
    let mut report = load_dir(specs, &config.spec_bounds());
    let runtime = Runtime::new(config.runtime.pool(), None, Arc::new(Metrics::new()))?;
    let mut checked: HashMap<(String, u64), Result<(), String>> = HashMap::new();
    let mut unloadable = Vec::new();
    for function in report.state.functions.values() {
        let key = (function.module.sha256.clone(), function.limits.memory);
        let outcome = checked.entry(key).or_insert_with(|| {
            let prepared =
                runtime.prepare(&function.module.sha256, &function.module.bytes, function.limits.memory);
            prepared.map(drop).map_err(|e| e.to_string())
        });
        if let Err(error) = outcome {
            let message = format!("{:?}: {error}", function.module.path);
            let resource = function_resource(&function.id.tenant, &function.id.function);
            report
                .errors
                .push(SpecError::field(function.source.clone(), "spec.module", message).about(resource));
            unloadable.push(function.id.clone());
        }
    }
    for id in unloadable {
        report.state.functions.remove(&id);
    }
    report
        .errors
        .sort_by(|a, b| (&a.location.file, a.location.line).cmp(&(&b.location.file, b.location.line)));
    Ok(report)
}
