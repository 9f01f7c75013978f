//! What eigenpub prints: one renderer per output format, and the diagnostics printer.
//!
//! Results (plans, apply results) go to standard output; diagnostics and progress go to
//! standard error, so `eigenpub plan --format json > plan.json` stays clean.

pub mod json;
pub mod markdown;
pub mod out;
pub mod progress;
pub mod release;
pub mod text;

use std::io::Write;

use miette::{GraphicalReportHandler, GraphicalTheme};

use crate::diagnostic::{Problem, Rendered};

/// Output formats for plans and results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Output formats for plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    /// For a pull-request comment: summary, table, and diffs of every update.
    Markdown,
}

/// Output formats for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiagnosticFormat {
    /// Source snippets with labels (miette).
    Human,
    /// One JSON document: file, line, column, severity, code, message, help.
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`).
    Github,
}

/// Renders one problem for a terminal (or a log), with its source lines.
pub fn render_problem(problem: &Problem, color: bool, width: usize) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(width)
        .with_context_lines(1);
    let mut out = String::new();
    let problem = &crate::sanitize::problem(problem);
    let rendered = Rendered::new(problem);
    if handler.render_report(&mut out, &rendered).is_err() {
        out = format!("{}: {}\n", problem.severity.as_str(), problem.message);
    }
    out
}

/// Prints problems to standard error in the chosen format. Every renderer sanitises the
/// problem first (secrets, escape sequences and URL queries never reach a terminal or log).
pub fn print_problems(problems: &[Problem], format: DiagnosticFormat, color: bool) {
    use crate::sanitize::workflow::guard;
    let mut err = std::io::stderr().lock();
    match format {
        // Guarded as standard output is (see `out`): no line starts a workflow command.
        DiagnosticFormat::Human => {
            for p in problems {
                let _ = write!(err, "{}", guard(&render_problem(p, color, 100)));
            }
        }
        DiagnosticFormat::Json => {
            let _ = writeln!(err, "{}", guard(&json::problems(problems).to_string()));
        }
        // Workflow commands by design: each one line, its outside text sanitised (so no
        // `##[`) and its data %-escaped (so no line break).
        DiagnosticFormat::Github => {
            for p in problems {
                let _ = writeln!(err, "{}", github_annotation(p));
            }
        }
    }
}

/// A GitHub Actions workflow command for a problem.
pub fn github_annotation(problem: &Problem) -> String {
    let problem = &crate::sanitize::problem(problem);
    let kind = match problem.severity {
        crate::diagnostic::Severity::Error => "error",
        crate::diagnostic::Severity::Warning => "warning",
    };
    let mut props = Vec::new();
    if let Some((file, lc)) = problem.position() {
        props.push(format!("file={}", escape_property(file)));
        if let Some((line, col)) = lc {
            props.push(format!("line={line}"));
            props.push(format!("col={col}"));
        }
    }
    props.push(format!("title={}", escape_property(problem.code)));
    let mut message = problem.message.clone();
    if let Some(help) = &problem.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    format!("::{kind} {}::{}", props.join(","), escape_data(&message))
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::SourceFile;

    #[test]
    fn github_annotations_carry_file_and_line() {
        let f = SourceFile::new("a/b.yaml", "x: 1\ny: 2\n");
        let p = Problem::error("eigenpub::x", "bad y")
            .at(&f, 5..6, "here")
            .help("fix, it");
        assert_eq!(
            github_annotation(&p),
            "::error file=a/b.yaml,line=2,col=1,title=eigenpub%3A%3Ax::bad y%0Ahelp: fix, it"
        );
    }
}
