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
    use crate::sanitize::guard;
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
        let cwd = std::env::current_dir().ok();
        let workspace = std::env::var_os("GITHUB_WORKSPACE").map(std::path::PathBuf::from);
        let file = annotation_path(file, cwd.as_deref(), workspace.as_deref());
        props.push(format!("file={}", escape_property(&file)));
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

/// A file as GitHub matches annotations to a pull request's files: relative to the
/// repository's root (`GITHUB_WORKSPACE`), `/`-separated, with no `./` (GitHub attaches no
/// annotation whose path starts with it). Without a workspace, or for a file outside it,
/// the path is only cleaned.
fn annotation_path(
    file: &str,
    cwd: Option<&std::path::Path>,
    workspace: Option<&std::path::Path>,
) -> String {
    use std::path::{Component, Path, PathBuf};
    let clean = |path: &Path| -> PathBuf {
        let mut out = PathBuf::new();
        for part in path.components() {
            match part {
                Component::CurDir => {}
                Component::ParentDir
                    if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
                {
                    out.pop();
                }
                other => out.push(other),
            }
        }
        out
    };
    let path = Path::new(file);
    let relative = match (cwd, workspace) {
        (Some(cwd), Some(workspace)) => {
            let absolute = clean(&cwd.join(path));
            absolute
                .strip_prefix(clean(workspace))
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| clean(path))
        }
        _ => clean(path),
    };
    let text = relative.to_string_lossy().replace('\\', "/");
    if text.is_empty() { ".".into() } else { text }
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
    fn annotation_paths_are_relative_to_the_repository_root_without_dot_slash() {
        use std::path::Path;
        let none = |f: &str| annotation_path(f, None, None);
        assert_eq!(none("./avs/a.yaml"), "avs/a.yaml");
        assert_eq!(none("././avs/./a.yaml"), "avs/a.yaml");
        assert_eq!(none("m/avs/a.yaml"), "m/avs/a.yaml");
        let (repo, sub) = (Path::new("/w/repo"), Path::new("/w/repo/examples/m"));
        // Run from a folder of the repository: the folder is part of the path.
        assert_eq!(
            annotation_path("./avs/a.yaml", Some(sub), Some(repo)),
            "examples/m/avs/a.yaml"
        );
        assert_eq!(
            annotation_path("../m/avs/a.yaml", Some(sub), Some(repo)),
            "examples/m/avs/a.yaml"
        );
        assert_eq!(
            annotation_path("/w/repo/avs/a.yaml", Some(sub), Some(repo)),
            "avs/a.yaml"
        );
        // Outside the workspace: only cleaned.
        assert_eq!(
            annotation_path("/elsewhere/./a.yaml", Some(sub), Some(repo)),
            "/elsewhere/a.yaml"
        );
    }

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
