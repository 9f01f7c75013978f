//! The JSON renderer: a documented, versioned document for automation
//! (`format_version` 1; see the README's "JSON output" section).

use serde_json::{Value, json};

use crate::apply::{Outcome, totals};
use crate::diagnostic::Problem;
use crate::plan::{Change, Plan};

/// The version of the JSON documents eigenpub prints.
pub const FORMAT_VERSION: u32 = 1;

fn artifact(change: &Change) -> Value {
    let p = &change.publication;
    json!({
        "avs": p.avs,
        "operator_set": p.operator_set,
        "spec": p.spec,
        "repository": p.repository.to_string(),
        "tag": p.tag,
        "action": change.action.name(),
        "digest": p.artifact.digest(),
        "observed_digest": change.observed,
        "mutable": p.mutable,
    })
}

/// A plan as JSON.
pub fn plan(plan: &Plan) -> Value {
    json!({
        "format_version": FORMAT_VERSION,
        "artifacts": plan.changes.iter().map(artifact).collect::<Vec<_>>(),
        "summary": plan.summary(),
    })
}

/// An apply's results as JSON.
pub fn apply(plan: &Plan, outcomes: &[Outcome]) -> Value {
    let artifacts: Vec<Value> = plan
        .changes
        .iter()
        .zip(outcomes)
        .map(|(change, outcome)| {
            let mut a = artifact(change);
            a["result"] = json!(outcome.name());
            if let Outcome::Failed(e) = outcome {
                a["error"] = json!({ "code": e.code, "message": e.message, "help": e.help });
            }
            a
        })
        .collect();
    json!({
        "format_version": FORMAT_VERSION,
        "artifacts": artifacts,
        "summary": totals(outcomes),
    })
}

/// Problems as JSON: file, line, column, severity, code, message, help.
pub fn problems(problems: &[Problem]) -> Value {
    let items: Vec<Value> = problems
        .iter()
        .map(|p| {
            let (file, line, column) = match p.position() {
                Some((f, Some((l, c)))) => (Some(f.to_string()), Some(l), Some(c)),
                Some((f, None)) => (Some(f.to_string()), None, None),
                None => (None, None, None),
            };
            json!({
                "file": file,
                "line": line,
                "column": column,
                "severity": p.severity.as_str(),
                "code": p.code,
                "message": p.message,
                "help": p.help,
            })
        })
        .collect();
    json!({ "format_version": FORMAT_VERSION, "diagnostics": items })
}
