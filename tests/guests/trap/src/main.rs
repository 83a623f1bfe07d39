//! Test guest: aborts straight away, before reading or writing anything. On WASI, `abort` is the
//! `unreachable` instruction, so the host sees a trap.

fn main() {
    std::process::abort()
}
