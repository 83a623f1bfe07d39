//! Golden tests for spec loading: each directory under tests/fixtures/specs holds YAML and the
//! expected outcome beside it, `expected.json` (the normalized desired state) or `expected.txt`
//! (the error text). Run with GOJINN_BLESS=1 to rewrite the expectations after a deliberate change.
//! Then bounded loading: what a push (an operator's mistake or a hostile one) can make the loader
//! spend or read: huge document counts, deep nesting, FIFOs, devices, symlinks out of the specs.

use crate::support::{Node, SpecDir, specs};
use gojinn::spec::MAX_NESTING;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn spec_fixtures_match_their_expected_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/specs");
    let bless = std::env::var_os("GOJINN_BLESS").is_some();
    let mut cases: Vec<_> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(cases.len() >= 6, "fixtures are missing");
    let mut failures = Vec::new();
    for case in cases {
        let report = gojinn::spec::load_dir(&case, &gojinn::spec::Bounds::default());
        let (file, actual) = if report.errors.is_empty() {
            ("expected.json", serde_json::to_string_pretty(&report.state).unwrap() + "\n")
        } else {
            ("expected.txt", report.error_text())
        };
        let expected_path = case.join(file);
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures
                .push(format!("{}:\n--- expected\n{expected}--- actual\n{actual}", expected_path.display())),
            Err(_) => {
                failures.push(format!("{} is missing; actual output:\n{actual}", expected_path.display()))
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const WITHIN: Duration = Duration::from_secs(30);

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

fn symlink(target: impl AsRef<Path>, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("create symlink");
}

/// 60,000 one-line documents: 540 KB that took time and memory growing with the square of the
/// count (7.7 GB) when every document was padded to its line.
fn many_documents() -> String {
    "a: 1\n---\n".repeat(60_000)
}

/// A Tenant whose spec nests `depth` flow sequences: 400 KB took the YAML parser over a minute.
fn deeply_nested(depth: usize) -> String {
    format!(
        "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: deep }}\nspec: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// Runs `gojinn validate DIR`, failing the test if it has not finished within `WITHIN`.
fn validate(dir: &Path) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gojinn"))
        .args(["validate", "--specs"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gojinn validate");
    let deadline = Instant::now() + WITHIN;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gojinn validate did not finish within {WITHIN:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn a_file_of_60000_tiny_documents_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("many.yaml"), many_documents()).unwrap();
    let report = gojinn::spec::load_dir(dir.path(), &gojinn::spec::Bounds::default());
    assert_eq!(
        report.error_text(),
        "many.yaml: the file holds more than the 10000 documents a spec file may hold \
         (limits.documentsPerSpecFile); split it into several files\n"
    );
}

#[test]
fn deep_nesting_is_refused_before_the_yaml_parser_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flow.yaml"), deeply_nested(200_000)).unwrap();
    let block: String = (0..=MAX_NESTING).map(|level| format!("{}k{level}:\n", "  ".repeat(level))).collect();
    std::fs::write(dir.path().join("block.yaml"), format!("# block nesting\n{block}")).unwrap();
    let report = gojinn::spec::load_dir(dir.path(), &gojinn::spec::Bounds::default());
    assert_eq!(
        report.error_text(),
        format!(
            "block.yaml:{}: the document nests more than {MAX_NESTING} levels deep\n\
             flow.yaml:4: the document nests more than {MAX_NESTING} levels deep\n",
            MAX_NESTING + 2
        )
    );
}

#[test]
fn fifos_devices_and_symlinks_out_of_the_spec_dir_are_refused_and_never_quoted() {
    let dir = SpecDir::new();
    dir.module("hello");
    let outside = tempfile::tempdir().unwrap();
    // Text-format WebAssembly, so a parser that tried it would quote its first line.
    std::fs::write(outside.path().join("secret.wat"), "(module $SECRET_FIRST_LINE)\n").unwrap();
    std::fs::write(outside.path().join("secret.yaml"), "apiVersion: SECRET_SPEC_LINE\n").unwrap();
    let modules = dir.path().join("modules");
    symlink(outside.path().join("secret.wat"), &modules.join("outside.wasm"));
    symlink("/dev/zero", &modules.join("zero.wasm"));
    mkfifo(&modules.join("fifo.wasm"));
    std::fs::write(modules.join("text.wasm"), "(module $SECRET_INSIDE)\n").unwrap();
    symlink(outside.path().join("secret.yaml"), &dir.path().join("leak.yaml"));
    mkfifo(&dir.path().join("pipe.yaml"));
    let functions = [
        ("ok", "hello", ""),
        ("outside", "outside", ""),
        ("zero", "zero", ""),
        ("fifo", "fifo", ""),
        ("text", "text", ""),
    ];
    dir.write("specs.yaml", &specs("acme", "", &functions));

    let (code, out) = validate(dir.path());
    assert_eq!(code, 1, "{out}");
    for expected in [
        "leak.yaml: cannot read the spec file: it resolves outside the spec directory (through a symlink)",
        "pipe.yaml: cannot read the spec file: it is a FIFO, not a regular file",
        "spec.module.path: \"modules/outside.wasm\" cannot be read: it resolves outside the spec directory (through a symlink)",
        "spec.module.path: \"modules/zero.wasm\" cannot be read: it resolves outside the spec directory (through a symlink)",
        "spec.module.path: \"modules/fifo.wasm\" cannot be read: it is a FIFO, not a regular file",
        "spec.module.path: \"modules/text.wasm\" is not a WebAssembly module (it starts with bytes [28 6d 6f 64], not \\0asm",
        "1 tenant(s), 1 function(s), 6 error(s)",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from\n{out}");
    }
    assert!(!out.contains("SECRET"), "file content was quoted:\n{out}");
}

#[tokio::test]
async fn a_bad_push_of_many_documents_deep_nesting_or_a_fifo_fails_alone_while_the_node_serves() {
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write("acme.yaml", &specs("acme", "", &[("hello", "hello", "")]));
    let node = Node::start(&dir).await;
    let first = node.get("/acme/hello").await;
    assert_eq!(first.status(), 200);
    let revision = first.headers()["gojinn-revision"].clone();

    dir.write("many.yaml", &many_documents());
    dir.write("deep.yaml", &deeply_nested(200_000));
    mkfifo(&dir.path().join("modules/fifo.wasm"));
    dir.write("fifo.yaml", &specs("piped", "", &[("f", "fifo", "")]));
    // A function added after the bad push deploys: passes go on, none hangs on the FIFO.
    dir.write("later.yaml", &specs("later", "", &[("hi", "hello", "")]));
    node.eventually("/later/hi", WITHIN, |r| r.status() == 200).await;

    let still = node.get("/acme/hello").await;
    assert_eq!(still.status(), 200);
    assert_eq!(still.headers()["gojinn-revision"], revision, "the last good revision keeps serving");
    assert_eq!(node.get("/piped/f").await.status(), 404);
}
