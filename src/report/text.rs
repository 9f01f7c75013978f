//! The text renderer: plans and apply results for people at a terminal and in CI logs.

use std::fmt::Write;

use crate::apply::{Applied, Outcome, totals};
use crate::plan::{Action, Change, Plan};
use crate::sanitize::Untrusted;

/// ANSI styling, on or off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    pub fn green(&self, t: &str) -> String {
        self.paint("32", t)
    }
    pub fn yellow(&self, t: &str) -> String {
        self.paint("33", t)
    }
    pub fn red(&self, t: &str) -> String {
        self.paint("31", t)
    }
    pub fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
    pub fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }
}

/// One plan line for a change (`None` for unchanged artifacts unless verbose).
pub fn change_line(change: &Change, style: Style, verbose: bool) -> Option<String> {
    let p = &change.publication;
    // From the project file (an `oci:` folder name is any text): shown sanitised.
    let reference = p.reference();
    let reference = Untrusted(&reference);
    let digest = p.artifact.digest();
    let line = match &change.action {
        Action::Create => format!("{} {reference} {digest}", style.green("+ create")),
        Action::Update { from } => format!(
            "{} {reference} {from} -> {digest}",
            style.yellow("~ update")
        ),
        Action::Retag { from } => format!(
            "{} {reference} {}{digest} (already in the repository; no upload)",
            style.green("> retag "),
            from.as_ref()
                .map(|f| format!("{f} -> "))
                .unwrap_or_default()
        ),
        Action::Refused { from } => format!(
            "{} {reference} {from} -> {digest} (published tag is immutable; bump the version or pass --allow-overwrite)",
            style.red("! refuse")
        ),
        Action::Unreadable { .. } => format!(
            "{} {reference} (its tag could not be read; see the error for its repository)",
            style.red("? unread ")
        ),
        Action::Unchanged if verbose => match &change.equivalent {
            Some(provenance) => format!(
                "{} {reference} {} (equivalent: {})",
                style.dim("= unchanged"),
                change.digest(),
                // From the registry's annotations.
                Untrusted(&provenance.to_string())
            ),
            None => format!("{} {reference} {digest}", style.dim("= unchanged")),
        },
        Action::Unchanged => return None,
    };
    Some(if p.is_mirror() {
        format!("{line} {}", style.dim("(mirror)"))
    } else {
        line
    })
}

/// With mirrors, one line per target: `  ghcr.io: 1 to create, 7 unchanged`.
pub fn target_lines(plan: &Plan) -> String {
    let mut out = String::new();
    for (target, counts) in target_counts(plan) {
        let _ = writeln!(out, "  {}: {counts}", Untrusted(&target));
    }
    out
}

/// With mirrors, each target's name (as the project spells it: outside text) and its
/// counts (`1 to create, 0 to update, 7 unchanged`), for [`target_lines`] and the
/// Markdown plan, which shows the name in a code span.
pub fn target_counts(plan: &Plan) -> Vec<(String, String)> {
    crate::plan::mirror::per_target(plan)
        .into_iter()
        .map(|(target, s)| {
            let mut counts = format!(
                "{} to create, {} to update, {} unchanged",
                s.create, s.update, s.unchanged
            );
            counts_when_any(&mut counts, &s);
            (target, counts)
        })
        .collect()
}

/// The counts a summary names only when they are not zero: retags, refusals, unreadable tags.
fn counts_when_any(out: &mut String, s: &crate::plan::Summary) {
    if s.retag > 0 {
        let _ = write!(out, ", {} to retag", s.retag);
    }
    if s.refused > 0 {
        let _ = write!(out, ", {} refused", s.refused);
    }
    if s.unreadable > 0 {
        let _ = write!(out, ", {} unreadable", s.unreadable);
    }
}

/// The summary line: `Plan: N to create, M to update, K unchanged.`
pub fn plan_summary(plan: &Plan) -> String {
    let s = plan.summary();
    let mut line = format!(
        "Plan: {} to create, {} to update, {} unchanged",
        s.create, s.update, s.unchanged
    );
    let equivalent = plan
        .changes
        .iter()
        .filter(|c| c.equivalent.is_some())
        .count();
    if equivalent > 0 {
        let _ = write!(
            line,
            " ({equivalent} of them equivalent content, kept as published)"
        );
    }
    counts_when_any(&mut line, &s);
    line.push('.');
    line
}

/// The whole plan as text.
pub fn plan(plan: &Plan, style: Style, verbose: bool) -> String {
    let mut out = String::new();
    for change in &plan.changes {
        if let Some(line) = change_line(change, style, verbose) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    if out.is_empty() {
        out.push_str("No changes: every tag already holds its artifact.\n");
    } else {
        out.push('\n');
    }
    out.push_str(&style.bold(&plan_summary(plan)));
    out.push('\n');
    out.push_str(&target_lines(plan));
    out
}

/// One result line for a finished artifact.
pub fn outcome_line(change: &Change, outcome: &Outcome, style: Style) -> String {
    let reference = change.publication.reference();
    let reference = Untrusted(&reference);
    if let Outcome::Interrupted = outcome {
        let applied = Applied {
            change: change.clone(),
            outcome: outcome.clone(),
        };
        if let Some(e) = applied.error() {
            return outcome_line(change, &Outcome::Failed(e), style);
        }
    }
    match outcome {
        Outcome::Pushed { digest } => format!("{} {reference} {digest}", style.green("pushed   ")),
        Outcome::Unchanged => format!("{} {reference}", style.dim("unchanged")),
        Outcome::Failed(e) => {
            let message = crate::sanitize::text(&e.message);
            let mut line = format!("{} {reference}: {message}", style.red("failed   "));
            if !e.help.is_empty() {
                let _ = write!(line, "\n          help: {}", crate::sanitize::text(&e.help));
            }
            line
        }
        Outcome::NotStarted | Outcome::Interrupted => {
            format!("{} {reference}", style.yellow("not started"))
        }
    }
}

/// With mirrors, what landed where: one line per target, `  ghcr.io: 8 pushed, 0 failed`.
pub fn apply_target_lines(applied: &[Applied]) -> String {
    let mut out = String::new();
    for (target, t) in crate::apply::per_target(applied) {
        let _ = write!(
            out,
            "  {}: {} pushed, {} unchanged, {} failed",
            Untrusted(&target),
            t.pushed,
            t.unchanged,
            t.failed
        );
        if t.not_started > 0 {
            let _ = write!(out, ", {} not started", t.not_started);
        }
        out.push('\n');
    }
    out
}

/// The apply summary line.
pub fn apply_summary(applied: &[Applied]) -> String {
    let t = totals(applied);
    let mut line = format!(
        "Apply: {} pushed, {} unchanged, {} failed",
        t.pushed, t.unchanged, t.failed
    );
    if t.not_started > 0 {
        let _ = write!(line, ", {} not started", t.not_started);
    }
    line.push('.');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Overwrite;
    use crate::plan::{Observation, diff, tests::publication};

    #[test]
    fn renders_a_plan() {
        let a = publication("a", "opset-0-v1", "x: 1", false);
        let b = publication("b", "opset-0-v1", "x: 2", true);
        let c = publication("c", "opset-0-v1", "x: 3", false);
        let c_digest = c.artifact.digest().to_string();
        let (da, db) = (
            a.artifact.digest().to_string(),
            b.artifact.digest().to_string(),
        );
        let p = diff(
            vec![a, b, c],
            vec![
                Observation::tag(None),
                Observation::tag(Some("sha256:old")),
                Observation::tag(Some(&c_digest)),
            ],
            Overwrite::Refuse,
        );
        let text = plan(&p, Style { color: false }, false);
        assert_eq!(
            text,
            format!(
                "+ create r.example/a:opset-0-v1 {da}\n~ update r.example/b:opset-0-v1 sha256:old -> {db}\n\nPlan: 1 to create, 1 to update, 1 unchanged.\n"
            )
        );
    }

    #[test]
    fn an_equivalent_tag_is_unchanged_with_who_published_it() {
        let a = publication("a", "opset-0-v1", "x: 1", false);
        let observed = Observation {
            tag: Some("sha256:devkit".into()),
            manifest_present: false,
            equivalent: Some(crate::plan::equivalence::Provenance {
                date: Some("2025-06-01".into()),
                tool: Some("devkit v0.0.9".into()),
            }),
        };
        let p = diff(vec![a], vec![observed], crate::plan::Overwrite::Refuse);
        assert!(!p.has_changes());
        let text = plan(&p, Style { color: false }, true);
        assert_eq!(
            text,
            "= unchanged r.example/a:opset-0-v1 sha256:devkit (equivalent: published 2025-06-01 by devkit v0.0.9)\n\nPlan: 0 to create, 0 to update, 1 unchanged (1 of them equivalent content, kept as published).\n"
        );
    }

    #[test]
    fn no_changes_says_so() {
        let a = publication("a", "t", "x: 1", false);
        let d = a.artifact.digest().to_string();
        let p = diff(vec![a], vec![Observation::tag(Some(&d))], Overwrite::Refuse);
        let text = plan(&p, Style { color: false }, false);
        assert!(text.ends_with("Plan: 0 to create, 0 to update, 1 unchanged.\n"));
    }
}
