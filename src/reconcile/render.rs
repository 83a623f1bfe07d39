//! Human-readable plans, apply reports and status, as `gojinn plan|apply|status` print them:
//! one line per resource with a sign (`+` create, `~` update, `!` repair drift, `-` delete), the
//! fields that change indented below, denials and invalid documents after, a summary last.
//! Colored when `color` is set (a terminal).

use super::Admitted;
use super::apply::{ApplyReport, Outcome};
use super::plan::{Action, Change, Plan};
use super::status::{ResourceState, Status};
use anstyle::{AnsiColor, Style};
use std::fmt::Write;

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
    for field in &change.fields {
        let show = |v: &Option<serde_json::Value>| v.as_ref().map_or("(none)".to_string(), |v| v.to_string());
        let _ = writeln!(out, "      {}: {} -> {}", field.path, show(&field.before), show(&field.after));
    }
}

fn write_admission(out: &mut String, p: &Painter, admitted: &Admitted) {
    for denial in &admitted.denials {
        let _ = writeln!(
            out,
            "  {} {} denied by {}: {}",
            p.paint(AnsiColor::Red, "x"),
            denial.resource,
            denial.policy,
            denial.message
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
    if !admitted.denials.is_empty() {
        let _ = write!(line, ", {} denied", admitted.denials.len());
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
    for spared in &plan.spared {
        let _ = writeln!(out, "  = {} (kept: {})", spared.resource, spared.reason);
    }
    write_admission(&mut out, &p, admitted);
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
    for spared in &report.plan.spared {
        let _ = writeln!(out, "  = {} (kept: {})", spared.resource, spared.reason);
    }
    write_admission(&mut out, &p, admitted);
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
