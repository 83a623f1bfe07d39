//! Entry points for the fuzz targets in `fuzz/` and for the tests that replay what they found.
//!
//! Each takes arbitrary bytes and runs one decoder of untrusted input as the node runs it: the
//! spec loader, the guest's response envelope, host-call arguments, audit records, job records
//! and MCP requests. None may panic, hang or allocate without bound, and a decoder that accepts
//! its input must keep its own promises (the checks below say which). Compiled only for tests
//! and for the fuzz targets (`--cfg fuzzing`, scripts/fuzz.sh): nothing here is part of the node.

use crate::abi::{GuestRequest, GuestResponse};
use crate::audit::{Keyring, MasterKey, Window};
use std::path::Path;

/// One fuzz target: its name (a directory under `fuzz/corpus` and `fuzz/regressions`) and its
/// entry point.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every fuzz target, as `fuzz/fuzz_targets/` names them.
pub const TARGETS: [Target; 6] = [
    Target { name: "spec_file", run: spec_file },
    Target { name: "guest_response", run: guest_response },
    Target { name: "host_arguments", run: host_arguments },
    Target { name: "audit_log", run: audit_log },
    Target { name: "job_record", run: job_record },
    Target { name: "mcp_request", run: mcp_request },
];

/// A spec file's text, parsed into documents and resolved into the desired state as a reconcile
/// pass does (module paths point into a directory that does not exist).
pub fn spec_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Path::new("fuzz.yaml");
    let (mut docs, mut errors) = (Vec::new(), Vec::new());
    let bounds = crate::spec::Bounds::default();
    crate::spec::parse_file(file, text, &bounds, &mut docs, &mut errors);
    for error in &errors {
        assert_eq!(error.location.file, file, "an error names the file it is about: {error}");
    }
    let _ = crate::spec::resolve(Path::new("/nonexistent/gojinn-fuzz"), docs, &bounds);
}

/// A guest's stdout as the response envelope; an accepted one has a status from 200 to 599 and
/// none of the framing headers a guest may not set.
pub fn guest_response(data: &[u8]) {
    let Ok(response) = GuestResponse::parse(data) else { return };
    assert!((200..=599).contains(&response.status.as_u16()));
    for reserved in ["content-length", "transfer-encoding", "connection"] {
        assert!(!response.headers.contains_key(reserved), "{reserved} passed through");
    }
}

/// Host-call arguments as the host functions decode them from guest memory (see
/// `host::decode_arguments`).
pub fn host_arguments(data: &[u8]) {
    crate::host::decode_arguments(data);
}

/// Records of one tenant's audit log, separated by 0xff bytes (which JSON text never holds),
/// verified with a fixed key; the same bytes as one receipt.
pub fn audit_log(data: &[u8]) {
    let keys = Keyring::new(MasterKey::from_bytes(vec![7; 32]), Vec::new());
    let records: Vec<&[u8]> = data.split(|&b| b == 0xff).collect();
    let _ = crate::audit::verify(&keys, "acme", &records, Window::ALL);
    for record in &records {
        let _ = crate::audit::Record::decode(record);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::audit::verify_receipt(&keys, "acme", text);
    }
}

/// A job as a backend stores it (its public record) and the request envelope a worker decodes
/// from its payload; an envelope decodes to what it encodes to.
pub fn job_record(data: &[u8]) {
    let _ = serde_json::from_slice::<crate::state::JobRecord>(data);
    if let Ok(envelope) = serde_json::from_slice::<GuestRequest>(data) {
        let again: GuestRequest =
            serde_json::from_slice(&envelope.to_json()).expect("an envelope re-encodes");
        assert_eq!(again, envelope);
        let _ = envelope.without_credentials(&[]);
    }
}

/// An MCP JSON-RPC message as the endpoint decodes it, with a tool call's arguments checked as
/// the admin tools check theirs.
pub fn mcp_request(data: &[u8]) {
    crate::api::mcp::decode_request(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Every input kept under `fuzz/corpus/<target>` and `fuzz/regressions/<target>` (what a
    /// fuzz run found) runs through its target without a panic.
    #[test]
    fn every_kept_fuzz_input_runs_through_its_target() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut ran = 0;
        for target in TARGETS {
            for kind in ["corpus", "regressions"] {
                let Ok(entries) = std::fs::read_dir(root.join(kind).join(target.name)) else { continue };
                for entry in entries {
                    let path = entry.unwrap().path();
                    let data = std::fs::read(&path).unwrap();
                    let outcome = std::panic::catch_unwind(|| (target.run)(&data));
                    assert!(outcome.is_ok(), "{} panicked on {}", target.name, path.display());
                    ran += 1;
                }
            }
        }
        assert!(ran >= TARGETS.len(), "the kept inputs were not found under {}", root.display());
    }

    /// The audit seed is a log signed with the target's key, so that fuzzing starts from records
    /// that pass their signatures and reach the chain checks.
    #[test]
    fn the_audit_seed_is_a_log_that_verifies_with_the_targets_key() {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/audit_log/chain-with-checkpoint");
        let data = std::fs::read(&path).unwrap();
        let records: Vec<&[u8]> = data.split(|&b| b == 0xff).collect();
        let keys = Keyring::new(MasterKey::from_bytes(vec![7; 32]), Vec::new());
        let verdict = crate::audit::verify(&keys, "acme", &records, Window::ALL);
        assert_eq!(verdict.first_bad, None);
        assert_eq!((verdict.checked, verdict.checkpoints, verdict.chains), (5, 1, 1));
    }
}
