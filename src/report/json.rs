//! The JSON renderer: a documented, versioned document for automation
//! (`format_version` 1; see the README's "JSON output" section).

use serde_json::{Value, json};

use crate::apply::{Applied, totals};
use crate::diagnostic::Problem;
use crate::plan::saved::{PlanDocument, PlannedArtifact};

pub use crate::plan::saved::FORMAT_VERSION;

/// A plan as pretty-printed JSON text: what `plan --format json` prints and `plan --out` saves.
pub fn plan_text(document: &PlanDocument) -> String {
    // Guarded (the same document, escaped where a job log would read a workflow command):
    // a saved plan is a file a workflow may print.
    crate::sanitize::guard(
        &serde_json::to_string_pretty(document).expect("plan documents serialize"),
    )
    .into_owned()
}

/// An apply's results as JSON: every artifact of the plan, each with its `result`.
pub fn apply(inputs_hash: &str, applied: &[Applied]) -> Value {
    let artifacts: Vec<Value> = applied
        .iter()
        .map(|a| {
            let mut artifact =
                serde_json::to_value(PlannedArtifact::of(&a.change)).expect("artifacts serialize");
            artifact["result"] = json!(a.outcome.name());
            if let Some(e) = a.error() {
                artifact["error"] = json!({
                    "code": e.code,
                    "message": crate::sanitize::text(&e.message),
                    "help": crate::sanitize::text(&e.help),
                    // As data, for automation deciding whether to run again.
                    "transient": e.transient,
                    "status": e.status,
                });
            }
            artifact
        })
        .collect();
    let mut document = json!({
        "format_version": FORMAT_VERSION,
        "inputs_hash": inputs_hash,
        "artifacts": artifacts,
        "summary": totals(applied),
    });
    // With mirrors: what landed on each target.
    let targets = crate::apply::per_target(applied);
    if !targets.is_empty() {
        document["targets"] = json!(targets);
    }
    document
}

/// Problems as JSON: file, line, column, severity, code, message, help.
pub fn problems(problems: &[Problem]) -> Value {
    let items: Vec<Value> = problems
        .iter()
        .map(crate::sanitize::problem)
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

/// A command that failed before its result, as a document: the first error (code,
/// message, help), every diagnostic, and the artifacts that were not attempted.
pub fn failure(list: &[Problem], not_attempted: &[String]) -> Value {
    let first = list
        .iter()
        .find(|p| p.is_error())
        .or(list.first())
        .map(crate::sanitize::problem);
    let error = first.map(|p| json!({ "code": p.code, "message": p.message, "help": p.help }));
    json!({
        "format_version": FORMAT_VERSION,
        "error": error,
        "diagnostics": problems(list)["diagnostics"],
        "not_attempted": not_attempted,
    })
}
