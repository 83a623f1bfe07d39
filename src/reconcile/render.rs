//! Plans, apply reports and status, as `gojinn plan|apply|status` print them. Text: one line per
//! resource with a sign (`+` create, `~` update, `!` repair drift, `-` delete), the fields that
//! change indented below with their units (`memory: 64MiB -> 128MiB`), denials (one line per
//! resource) and invalid documents after, a summary last; colored when `color` is set (a
//! terminal). JSON ([`document`]): one shape for a plan and an apply, the apply adding what
//! happened to each change.

use super::Admitted;
use super::apply::{ApplyReport, Outcome};
use super::plan::{Action, Change, Plan};
use super::status::{ResourceState, Status};
use anstyle::{AnsiColor, Style};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Field paths left out of the text diff: derived from the fields shown (the function's
/// revision is a hash of everything it runs with).
const DERIVED_FIELDS: &[&str] = &["revision"];

struct Painter {
    color: bool,
}

impl Painter {
    fn paint(&self, color: AnsiColor, text: &str) -> String {
        if self.color {
            let style = Style::new().fg_color(Some(color.into()));
            format!("{style}{text}{style:#}")
        } else {
            text.to_string()
        }
    }
}

fn sign(action: Action) -> (&'static str, AnsiColor) {
    match action {
        Action::Create => ("+", AnsiColor::Green),
        Action::Update => ("~", AnsiColor::Yellow),
        Action::Repair => ("!", AnsiColor::Magenta),
        Action::Delete => ("-", AnsiColor::Red),
    }
}

fn write_change(out: &mut String, p: &Painter, change: &Change, outcome: Option<&Outcome>) {
    let (mark, color) = sign(change.action);
    let action = format!("{:?}", change.action).to_lowercase();
    let result = match outcome {
        Some(Outcome::Applied) | None => String::new(),
        Some(Outcome::Failed(error)) => format!("  {}", p.paint(AnsiColor::Red, &format!("FAILED: {error}"))),
    };
    let _ = writeln!(out, "  {} {} ({action}){result}", p.paint(color, mark), change.resource);
    for drift in &change.drift {
        let _ = writeln!(out, "      drift: {drift}");
    }
    for field in change.fields.iter().filter(|f| !DERIVED_FIELDS.contains(&f.path.as_str())) {
        let show = |v: &Option<serde_json::Value>| {
            v.as_ref().map_or("(none)".to_string(), |v| with_unit(&field.path, v))
        };
        let _ = writeln!(out, "      {}: {} -> {}", field.path, show(&field.before), show(&field.after));
    }
}

/// A field's value as the spec would write it: sizes in bytes as `64MiB`, the function timeout
/// (stored in milliseconds) as `1s`; anything else as JSON.
fn with_unit(path: &str, value: &serde_json::Value) -> String {
    let field = path.rsplit('.').next().unwrap_or(path);
    match value.as_u64() {
        Some(bytes) if matches!(field, "memory" | "maxMemory" | "maxOutput" | "maxBody" | "kvMaxBytes") => {
            byte_size(bytes)
        }
        Some(ms) if path == "limits.timeout" => {
            humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
        }
        _ => value.to_string(),
    }
}

/// `bytes` in the largest binary unit that divides it exactly.
fn byte_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    UNITS
        .iter()
        .find(|(_, shift)| bytes != 0 && bytes.trailing_zeros() >= *shift)
        .map_or_else(|| format!("{bytes}B"), |(unit, shift)| format!("{}{unit}", bytes >> shift))
}

/// The denials of each resource, in order: a resource several policies refuse is one line.
fn denials_by_resource(admitted: &Admitted) -> BTreeMap<&str, Vec<&super::policy::Denial>> {
    let mut by_resource: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for denial in &admitted.denials {
        by_resource.entry(denial.resource.as_str()).or_default().push(denial);
    }
    by_resource
}

/// Spared resources other than the denied ones, which their denial line already names.
fn write_spared(out: &mut String, plan: &Plan, admitted: &Admitted) {
    let denied = denials_by_resource(admitted);
    for spared in plan.spared.iter().filter(|s| !denied.contains_key(s.resource.to_string().as_str())) {
        let _ = writeln!(out, "  = {} (kept: {})", spared.resource, spared.reason);
    }
}

fn write_admission(out: &mut String, p: &Painter, plan: &Plan, admitted: &Admitted) {
    for (resource, denials) in denials_by_resource(admitted) {
        let reasons: Vec<String> =
            denials.iter().map(|d| format!("{} (by {})", d.message, d.policy)).collect();
        let kept = plan.spared.iter().any(|s| s.resource.to_string() == resource);
        let kept = if kept { "; the applied version stays" } else { "" };
        let _ = writeln!(
            out,
            "  {} {resource} denied: {}{kept}",
            p.paint(AnsiColor::Red, "x"),
            reasons.join("; ")
        );
    }
    for error in &admitted.invalid {
        let _ = writeln!(out, "  {} invalid: {error}", p.paint(AnsiColor::Red, "x"));
    }
    for (resource, error) in &admitted.unloadable {
        let _ = writeln!(out, "  {} {resource} failed: {error}", p.paint(AnsiColor::Red, "x"));
    }
}

fn header(plan: &Plan) -> String {
    match &plan.commit {
        Some(commit) => format!("At commit {commit}:\n"),
        None => String::new(),
    }
}

fn summary(plan: &Plan, admitted: &Admitted) -> String {
    let [create, update, repair, delete] = plan.counts();
    let mut line = format!("{create} to create, {update} to update, {repair} to repair, {delete} to delete");
    if !plan.spared.is_empty() {
        let _ = write!(line, ", {} kept", plan.spared.len());
    }
    let denied = denials_by_resource(admitted).len();
    if denied > 0 {
        let _ = write!(line, ", {denied} denied");
    }
    if !admitted.invalid.is_empty() {
        let _ = write!(line, ", {} invalid document(s)", admitted.invalid.len());
    }
    if !admitted.unloadable.is_empty() {
        let _ = write!(line, ", {} module(s) that do not load", admitted.unloadable.len());
    }
    line
}

/// A plan, as `gojinn plan` prints it.
pub fn plan_text(plan: &Plan, admitted: &Admitted, color: bool) -> String {
    let p = Painter { color };
    let mut out = header(plan);
    for change in &plan.changes {
        write_change(&mut out, &p, change, None);
    }
    write_spared(&mut out, plan, admitted);
    write_admission(&mut out, &p, plan, admitted);
    if plan.is_empty() {
        let _ = writeln!(out, "No changes: the state backend matches the specs.");
    }
    let _ = writeln!(out, "Plan: {}.", summary(plan, admitted));
    out
}

/// An apply report, as `gojinn apply` prints it.
pub fn apply_text(report: &ApplyReport, admitted: &Admitted, color: bool) -> String {
    let p = Painter { color };
    let mut out = header(&report.plan);
    for change in &report.plan.changes {
        write_change(&mut out, &p, change, report.outcomes.get(&change.resource));
    }
    write_spared(&mut out, &report.plan, admitted);
    write_admission(&mut out, &p, &report.plan, admitted);
    let failed = report.failures().count();
    let _ = writeln!(
        out,
        "Applied: {}; {failed} failed; {} module blob(s) collected; {} write(s).",
        summary(&report.plan, admitted),
        report.blobs_collected,
        report.writes
    );
    out
}

/// A plan (`report` `None`) or an apply as `--output json` prints it; both have one shape:
///
/// `{"plan": {"commit", "changes": [{"resource", "action", "fields"?, "drift"?}], "spared"?},
///   "denials": [{"resource", "policy", "message"}], "invalid": [..]}`
///
/// An apply adds to each change `"outcome": "applied"` or `"outcome": "failed", "error": ".."`,
/// and `"applied": {"failed", "blobs_collected", "writes"}`. Field values are as stored: sizes
/// in bytes, the function timeout in milliseconds.
pub fn document(plan: &Plan, admitted: &Admitted, report: Option<&ApplyReport>) -> serde_json::Value {
    let mut plan_json = serde_json::to_value(plan).expect("plans serialize");
    if let Some(report) = report
        && let Some(changes) = plan_json.get_mut("changes").and_then(|c| c.as_array_mut())
    {
        for (json, change) in changes.iter_mut().zip(&plan.changes) {
            let outcome = report.outcomes.get(&change.resource).map(serde_json::to_value);
            if let (Some(Ok(serde_json::Value::Object(outcome))), Some(json)) =
                (outcome, json.as_object_mut())
            {
                json.extend(outcome);
            }
        }
    }
    let mut document =
        serde_json::json!({ "plan": plan_json, "denials": admitted.denials, "invalid": admitted.invalid });
    if let Some(report) = report {
        document["applied"] = serde_json::json!({
            "failed": report.failures().count(),
            "blobs_collected": report.blobs_collected,
            "writes": report.writes,
        });
    }
    document
}

/// Status, as `gojinn status` prints it: the applied commit (partially applied when some
/// resources or documents are not served at it), then one line per resource and per invalid
/// document that names none.
pub fn status_text(status: &Status, color: bool) -> String {
    let p = Painter { color };
    let mut out =
        format!("Applied commit: {}", status.commit.as_deref().unwrap_or("(none: a directory source)"));
    if status.partial {
        let mut parts = Vec::new();
        let problems = status.resources.iter().filter(|r| r.state.is_problem()).count();
        if problems > 0 {
            parts.push(format!(
                "{problems} resource(s) failed, denied or invalid keep what was applied before (at the commit shown)"
            ));
        }
        if !status.invalid.is_empty() {
            parts.push(format!("{} invalid document(s) name no resource", status.invalid.len()));
        }
        let _ = write!(out, ", {} {}", p.paint(AnsiColor::Red, "partially:"), parts.join("; "));
    }
    out.push('\n');
    for resource in &status.resources {
        let (word, color) = match resource.state {
            ResourceState::Applied => ("applied", AnsiColor::Green),
            ResourceState::Failed => ("failed", AnsiColor::Red),
            ResourceState::Denied => ("denied", AnsiColor::Red),
            ResourceState::Invalid => ("invalid", AnsiColor::Red),
            ResourceState::Kept => ("kept", AnsiColor::Yellow),
        };
        let commit =
            resource.commit.as_deref().map(|c| format!(" @{}", &c[..c.len().min(12)])).unwrap_or_default();
        let _ = write!(out, "  {} {}{commit}", p.paint(color, &format!("{word:<8}")), resource.resource);
        if let Some(message) = &resource.message {
            let _ = write!(out, "  {message}");
        }
        out.push('\n');
        for drift in &resource.drift {
            let _ = writeln!(out, "           drift corrected: {drift}");
        }
    }
    for error in &status.invalid {
        let _ = writeln!(out, "  {} {error}", p.paint(AnsiColor::Red, &format!("{:<8}", "invalid")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_and_the_timeout_show_with_units() {
        assert_eq!(with_unit("limits.memory", &json!(64u64 << 20)), "64MiB");
        assert_eq!(with_unit("quotas.kvMaxBytes", &json!(1u64 << 30)), "1GiB");
        assert_eq!(with_unit("limits.maxBody", &json!(1536)), "1536B");
        assert_eq!(with_unit("limits.timeout", &json!(1500)), "1s 500ms");
        assert_eq!(with_unit("limits.maxConcurrency", &json!(8)), "8");
        assert_eq!(with_unit("env.memory", &json!("x")), "\"x\"");
    }
}
