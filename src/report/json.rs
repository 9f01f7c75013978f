//! The JSON renderer: a documented, versioned document for automation
//! (`format_version` 1; see the README's "JSON output" section).

use serde_json::{Value, json};

use crate::apply::{Outcome, totals};
use crate::diagnostic::Problem;
use crate::plan::saved::PlanDocument;

pub use crate::plan::saved::FORMAT_VERSION;

/// A plan as JSON (the same document `plan --out` saves).
pub fn plan(document: &PlanDocument) -> Value {
    serde_json::to_value(document).expect("plan documents serialize")
}

/// An apply's results as JSON: the plan's artifacts, each with its `result`.
pub fn apply(document: &PlanDocument, outcomes: &[Outcome]) -> Value {
    let artifacts: Vec<Value> = document
        .artifacts
        .iter()
        .zip(outcomes)
        .map(|(artifact, outcome)| {
            let mut a = serde_json::to_value(artifact).expect("artifacts serialize");
            a["result"] = json!(outcome.name());
            if let Outcome::Failed(e) = outcome {
                a["error"] = json!({ "code": e.code, "message": e.message, "help": e.help });
            }
            a
        })
        .collect();
    json!({
        "format_version": FORMAT_VERSION,
        "inputs_hash": document.inputs_hash,
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
