//! `host_log` through a real guest, read back from the node's log output.

use crate::support::host::{node, ok, run_one};
use crate::support::logs::Logs;
use serde_json::json;

/// Issue 17: a newline in a guest's message started a line of its own that read as the node's.
#[tokio::test]
async fn a_guests_log_line_cannot_forge_a_node_log_line() {
    let logs = Logs::global();
    let (_dir, node) = node(&[("forger", &[("state", "")])]).await;
    let forged =
        "done\n2025-06-01T00:00:00.000000Z  INFO gojinn::server: admin token is FAKE\r\x1b[2J\u{2028}end";
    ok(&run_one(&node, "/forger/state", json!({"op": "log", "message": forged})).await);

    let text = logs.text();
    let lines: Vec<&str> = text.lines().filter(|line| line.contains("admin token is FAKE")).collect();
    assert_eq!(lines.len(), 1, "one line holds the whole message:\n{text}");
    let line = lines[0];
    assert!(
        line.contains("gojinn::guest") && line.contains("forger/state"),
        "it is the guest's line: {line}"
    );
    assert!(
        line.contains(r"done\n2025-06-01T00:00:00.000000Z  INFO gojinn::server: admin token is FAKE\r\u{1b}[2J\u{2028}end"),
        "the message reads back, escaped: {line}"
    );
    assert!(!line.contains(['\r', '\x1b', '\u{2028}']), "no raw control character: {line:?}");
    assert!(!text.lines().any(|line| line.starts_with("2025-06-01")), "no forged line:\n{text}");
}
