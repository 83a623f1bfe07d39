//! The command line as operators use it: one JSON document for `plan` and `apply`, a plan that
//! writes nothing and runs beside a node, diffs with units and without noise, one line per denied
//! resource, no library INFO lines and no colours into a pipe, and each error's cause said once.
//! (`plan`'s exit codes are in reconcile.rs.)

use crate::support::nats::NatsServer;
use crate::support::{Node, SpecDir, specs};
use std::path::Path;
use std::process::{Command, Output};

/// Runs the `gojinn` binary with `args`, its logs as an operator's shell would leave them (no
/// `RUST_LOG`, no `NO_COLOR`) plus `env`.
fn gojinn_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gojinn"));
    command.args(args).env_remove("RUST_LOG").env_remove("NO_COLOR");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run gojinn")
}

fn gojinn(args: &[&str]) -> Output {
    gojinn_with(args, &[])
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `gojinn VERB SPECS --data-dir DATA --no-default-policies EXTRA...`.
fn reconcile(verb: &str, specs: &Path, data: &Path, extra: &[&str]) -> Output {
    let mut args = vec![verb, specs.to_str().unwrap(), "--data-dir", data.to_str().unwrap()];
    args.push("--no-default-policies");
    args.extend(extra);
    gojinn(&args)
}

fn hello_specs(extra: &str) -> SpecDir {
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write("acme.yaml", &specs("acme", "", &[("hello", "hello", extra)]));
    dir
}

#[test]
fn plan_creates_no_data_dir_and_no_state_file() {
    let dir = hello_specs("");
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let planned = reconcile("plan", dir.path(), &data, &[]);
    assert_eq!(planned.status.code(), Some(0), "{}{}", stdout(&planned), stderr(&planned));
    assert!(stdout(&planned).contains("+ function/acme/hello"), "{}", stdout(&planned));
    assert!(!data.exists(), "plan wrote {}", data.display());
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0, "nothing else either");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_runs_beside_a_running_node_and_sees_what_it_applied() {
    let dir = hello_specs("");
    let node = Node::start(&dir).await;
    assert_eq!(node.get("/acme/hello").await.status(), 200);

    let planned = reconcile("plan", dir.path(), node.data.path(), &["--detailed-exitcode"]);
    assert_eq!(planned.status.code(), Some(0), "{}{}", stdout(&planned), stderr(&planned));
    assert!(stdout(&planned).contains("No changes"), "{}", stdout(&planned));

    dir.write("acme.yaml", &specs("acme", "", &[("hello", "hello", "env: { GREETING: Hi }")]));
    let planned = reconcile("plan", dir.path(), node.data.path(), &["--detailed-exitcode"]);
    let text = stdout(&planned);
    // The node may already have applied the change (it watches the directory): either way the
    // plan read the node's store while the node held it.
    assert!(
        planned.status.code() == Some(2) && text.contains("env.GREETING: (none) -> \"Hi\"")
            || planned.status.code() == Some(0) && text.contains("No changes"),
        "{text}{}",
        stderr(&planned)
    );
    assert_eq!(node.get("/acme/hello").await.status(), 200, "the node keeps serving");
    node.server.stop().await.unwrap();
}

#[test]
fn apply_output_json_is_the_plan_document_with_what_happened_to_each_change() {
    let dir = hello_specs("");
    let data = tempfile::tempdir().unwrap();
    let json = |output: Output| -> serde_json::Value {
        assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
        serde_json::from_str(&stdout(&output)).expect("--output json prints JSON")
    };
    let plan = json(reconcile("plan", dir.path(), data.path(), &["--output", "json"]));
    let apply = json(reconcile("apply", dir.path(), data.path(), &["--output", "json"]));

    for key in ["plan", "denials", "invalid"] {
        assert_eq!(plan[key], without_outcomes(&apply[key]), "{key}: plan {plan:#} apply {apply:#}");
    }
    let changes = apply["plan"]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{apply:#}");
    assert!(changes.iter().all(|change| change["outcome"] == "applied"), "{apply:#}");
    assert_eq!(apply["applied"]["failed"], 0, "{apply:#}");
    assert!(apply["applied"]["writes"].as_u64().unwrap() > 0, "{apply:#}");
    assert!(plan.get("applied").is_none(), "a plan applies nothing: {plan:#}");
}

/// `value` with the `outcome` and `error` of each change removed.
fn without_outcomes(value: &serde_json::Value) -> serde_json::Value {
    let mut value = value.clone();
    if let Some(changes) = value.get_mut("changes").and_then(|c| c.as_array_mut()) {
        for change in changes.iter_mut().filter_map(|c| c.as_object_mut()) {
            change.remove("outcome");
            change.remove("error");
        }
    }
    value
}

#[test]
fn a_plan_shows_sizes_and_durations_with_units_and_only_the_fields_that_change() {
    let dir = hello_specs("limits: { memory: 64Mi, timeout: 1s }");
    let data = tempfile::tempdir().unwrap();
    assert!(reconcile("apply", dir.path(), data.path(), &[]).status.success());
    dir.write(
        "acme.yaml",
        &specs("acme", "", &[("hello", "hello", "limits: { memory: 128Mi, timeout: 2s }")]),
    );

    let planned = reconcile("plan", dir.path(), data.path(), &[]);
    let text = stdout(&planned);
    let fields: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("~ function/acme/hello"))
        .skip(1)
        .take_while(|l| l.starts_with("      "))
        .map(str::trim)
        .collect();
    assert_eq!(fields, ["limits.memory: 64MiB -> 128MiB", "limits.timeout: 1s -> 2s"], "{text}");
}

#[test]
fn a_denied_resource_that_was_applied_is_listed_once() {
    let dir = hello_specs("");
    let data = tempfile::tempdir().unwrap();
    assert!(reconcile("apply", dir.path(), data.path(), &[]).status.success());
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/no-functions.rego"),
        "package gojinn.admission\n\ndeny contains \"no functions today\" if { input.kind == \"Function\" }\n",
    )
    .unwrap();

    let planned = reconcile("plan", dir.path(), data.path(), &[]);
    assert_eq!(planned.status.code(), Some(1), "a denial fails the plan");
    let text = stdout(&planned);
    let lines: Vec<&str> = text.lines().filter(|line| line.contains("function/acme/hello")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("denied") && lines[0].contains("no functions today"), "{text}");
    assert!(lines[0].contains("the applied version stays"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_print_no_library_info_lines_and_no_colours_into_a_pipe() {
    let nats = NatsServer::start().await;
    let dir = hello_specs("");
    let url = nats.url();
    let plan = ["plan", dir.path().to_str().unwrap(), "--nats", url.as_str(), "--no-default-policies"];

    let quiet = gojinn(&plan);
    assert!(quiet.status.success(), "{}{}", stdout(&quiet), stderr(&quiet));
    assert!(!stderr(&quiet).contains("INFO"), "library INFO lines: {}", stderr(&quiet));

    let asked = gojinn_with(&plan, &[("RUST_LOG", "info")]);
    assert!(stderr(&asked).contains("INFO"), "RUST_LOG still opens them: {}", stderr(&asked));
    assert!(!stderr(&asked).contains('\x1b'), "escape codes into a pipe: {:?}", stderr(&asked));
}

#[test]
fn an_error_says_its_cause_once() {
    let missing = tempfile::tempdir().unwrap().path().join("admin.token");
    let failed = gojinn(&["jobs", "list", "acme", "--token-file", missing.to_str().unwrap()]);
    assert_eq!(failed.status.code(), Some(1));
    let text = stderr(&failed);
    assert!(text.starts_with("error: cannot read the admin token from"), "{text}");
    assert_eq!(text.matches("No such file or directory").count(), 1, "{text}");
}
