//! Test guest: writes 100 MiB to stdout, or to stderr when built as `guest-stderrflood`, to hit
//! the host's output cap. It stops early, quietly, if the stream refuses a write.

use std::io::{self, Write};

static CHUNK: [u8; 64 << 10] = [b'x'; 64 << 10];
const TOTAL: usize = 100 << 20;

fn main() {
    let mut out: Box<dyn Write> = if env!("CARGO_BIN_NAME") == "guest-stderrflood" {
        Box::new(io::stderr().lock())
    } else {
        Box::new(io::stdout().lock())
    };
    for _ in 0..TOTAL / CHUNK.len() {
        if out.write_all(&CHUNK).is_err() {
            return;
        }
    }
}
