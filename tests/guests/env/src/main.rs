//! Test guest: reports what the sandbox lets a function see, for isolation tests:
//! `{"env": {name: value}, "args": N, "random": "32 hex digits", "etc_passwd_opens": bool}`.
//!
//! The random bytes come from std's `RandomState`, which seeds itself through WASI `random_get`,
//! so two calls give different values only if the host's random source is real.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use gojinn::{Request, Response};
use serde::Serialize;

#[derive(Serialize)]
struct Sandbox {
    env: BTreeMap<String, String>,
    args: usize,
    random: String,
    etc_passwd_opens: bool,
}

#[gojinn::handler]
fn handle(_req: Request) -> Response {
    let env = std::env::vars_os()
        .map(|(name, value)| (name.to_string_lossy().into(), value.to_string_lossy().into()))
        .collect();
    let sandbox = Sandbox {
        env,
        args: std::env::args_os().count(),
        random: random_hex(),
        etc_passwd_opens: std::fs::File::open("/etc/passwd").is_ok(),
    };
    Response::json(200, &sandbox)
}

/// 16 bytes as 32 hex digits: two hashes under freshly seeded keys.
fn random_hex() -> String {
    let seed = RandomState::new();
    [seed.hash_one(0u8), seed.hash_one(1u8)].iter().map(|half| format!("{half:016x}")).collect()
}
