//! The problems users see: what was wrong, where (file, line, column), and what to do.
//!
//! Every user-facing failure, from a TOML typo to an unreachable registry, becomes a
//! [`Problem`]. One type serves every output: miette renders it at a terminal with the
//! source lines and a label, and the same fields give the JSON and GitHub-annotation forms.
//! Problems are collected, not thrown: a run reports all of them together, sorted into a
//! stable order, and its exit code is derived at the end.

pub mod codes;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use miette::{LabeledSpan, MietteError, NamedSource, SourceCode, SourceSpan, SpanContents};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A file whose text a problem points into.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as the user knows it (relative to where they ran eigenpub when possible).
    pub name: String,
    pub text: Arc<str>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// Byte offset of a 1-based line and column (in characters).
    pub fn offset_of(&self, line: usize, col: usize) -> usize {
        let mut offset = 0;
        for (i, l) in self.text.split_inclusive('\n').enumerate() {
            if i + 1 == line {
                return offset
                    + l.char_indices()
                        .nth(col.saturating_sub(1))
                        .map_or(l.trim_end_matches(['\n', '\r']).len(), |(b, _)| b);
            }
            offset += l.len();
        }
        self.text.len()
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A place in a source file, with a label saying what is there.
#[derive(Debug, Clone)]
pub struct Label {
    pub span: Range<usize>,
    pub text: String,
}

/// One problem found in a run.
#[derive(Debug, Clone)]
pub struct Problem {
    pub severity: Severity,
    /// Stable code, e.g. `eigenpub::project::unknown-key`.
    pub code: &'static str,
    pub message: String,
    /// The file the labels point into (none for problems with no place, e.g. a registry).
    pub source: Option<SourceFile>,
    /// The first label is the primary place (its line is the problem's line).
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

impl Problem {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            code,
            message: message.into(),
            source: None,
            labels: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(code, message)
        }
    }

    /// Points the problem at a span of a file.
    pub fn at(mut self, source: &SourceFile, span: Range<usize>, label: impl Into<String>) -> Self {
        self.source = Some(source.clone());
        self.labels.push(Label {
            span,
            text: label.into(),
        });
        self
    }

    /// Names a file without pointing into it.
    pub fn in_file(mut self, source: &SourceFile) -> Self {
        self.source = Some(source.clone());
        self
    }

    /// Adds another label in the same file.
    pub fn also(mut self, span: Range<usize>, label: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            text: label.into(),
        });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// File name, 1-based line and column of the primary place, when there is one.
    pub fn position(&self) -> Option<(&str, Option<(usize, usize)>)> {
        let source = self.source.as_ref()?;
        let line_col = self.labels.first().map(|l| source.line_col(l.span.start));
        Some((&source.name, line_col))
    }

    /// The key problems are sorted by: file, line, column, then severity and message.
    fn sort_key(&self) -> (String, usize, usize, Severity, String) {
        match self.position() {
            Some((file, lc)) => {
                let (l, c) = lc.unwrap_or((0, 0));
                (file.to_string(), l, c, self.severity, self.message.clone())
            }
            None => (String::new(), 0, 0, self.severity, self.message.clone()),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

/// A source for miette that names the file and holds its text.
struct Named(NamedSource<Arc<str>>);

impl SourceCode for Named {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        self.0.read_span(span, before, after)
    }
}

/// A [`Problem`] prepared for miette, owning its named source.
pub struct Rendered<'a> {
    problem: &'a Problem,
    source: Option<Named>,
}

impl<'a> Rendered<'a> {
    pub fn new(problem: &'a Problem) -> Self {
        Rendered {
            problem,
            source: problem
                .source
                .as_ref()
                .map(|s| Named(NamedSource::new(s.name.clone(), s.text.clone()))),
        }
    }
}

impl fmt::Debug for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.problem, f)
    }
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.problem.source, self.problem.labels.is_empty()) {
            // No snippet will be shown, so say which file in the message itself.
            (Some(source), true) => write!(f, "{}: {}", source.name, self.problem.message),
            _ => f.write_str(&self.problem.message),
        }
    }
}

impl std::error::Error for Rendered<'_> {}

impl miette::Diagnostic for Rendered<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.problem.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.problem.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.problem
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        if self.problem.labels.is_empty() {
            return None;
        }
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.source.is_none() || self.problem.labels.is_empty() {
            return None;
        }
        let text_len = self.problem.source.as_ref().map_or(0, |s| s.text.len());
        Some(Box::new(self.problem.labels.iter().enumerate().map(
            move |(i, label)| {
                let start = label.span.start.min(text_len);
                let len = label.span.end.min(text_len).saturating_sub(start);
                let span = SourceSpan::new(start.into(), len);
                if i == 0 {
                    LabeledSpan::new_primary_with_span(Some(label.text.clone()), span)
                } else {
                    LabeledSpan::new_with_span(Some(label.text.clone()), span)
                }
            },
        )))
    }
}

/// All problems of a run, reported together.
#[derive(Debug, Default, Clone)]
pub struct Problems {
    items: Vec<Problem>,
}

impl Problems {
    pub fn new() -> Self {
        Problems::default()
    }

    pub fn push(&mut self, problem: Problem) {
        self.items.push(problem);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Problem::is_error)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|p| p.is_error()).count()
    }

    /// The problems in a stable order: by file, line, column, severity, message.
    /// The same problem found twice (one setting shared by several artifacts) is kept once.
    pub fn sorted(mut self) -> Vec<Problem> {
        self.items.sort_by_cached_key(Problem::sort_key);
        self.items.dedup_by(|a, b| {
            a.code == b.code
                && a.message == b.message
                && a.position() == b.position()
                && a.labels.first().map(|l| &l.span) == b.labels.first().map(|l| &l.span)
        });
        self.items
    }

    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.items.iter()
    }
}

impl From<Problem> for Problems {
    fn from(problem: Problem) -> Self {
        Problems {
            items: vec![problem],
        }
    }
}

impl IntoIterator for Problems {
    type Item = Problem;
    type IntoIter = std::vec::IntoIter<Problem>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

#[cfg(test)]
mod codes_documented {
    //! Problem codes are part of the JSON contract: they are defined once, in [`codes`],
    //! and listed with their meaning and fix in `docs/diagnostics.md`. These tests fail
    //! when a code is defined but not documented, documented but not defined, or written
    //! as a string literal somewhere else in the source (outside unit tests).
    //!
    //! [`codes`]: super::codes

    use std::collections::BTreeSet;
    use std::path::Path;

    /// Every code defined in `codes.rs`.
    fn defined() -> BTreeSet<String> {
        literals(include_str!("diagnostic/codes.rs"), "\"eigenpub::", '"')
    }

    /// The codes documented: every backticked `eigenpub::…`.
    fn documented() -> BTreeSet<String> {
        literals(include_str!("../docs/diagnostics.md"), "`eigenpub::", '`')
    }

    /// Code literals written outside `codes.rs` (unit tests excepted), by file.
    fn stray() -> Vec<(String, BTreeSet<String>)> {
        fn walk(dir: &Path, out: &mut Vec<(String, BTreeSet<String>)>) {
            for entry in std::fs::read_dir(dir).expect("src/ is readable") {
                let path = entry.expect("directory entry").path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("diagnostic/codes.rs")
                {
                    let text = std::fs::read_to_string(&path).expect("source is UTF-8");
                    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
                    let found = literals(code, "\"eigenpub::", '"');
                    if !found.is_empty() {
                        out.push((path.display().to_string(), found));
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
        out
    }

    /// Each `eigenpub::…` that follows `open` up to `close`, when it is a whole code.
    fn literals(text: &str, open: &str, close: char) -> BTreeSet<String> {
        text.split(open)
            .skip(1)
            .filter_map(|rest| rest.split(close).next())
            .filter(|name| {
                !name.is_empty()
                    && name.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == ':'
                    })
            })
            .map(|name| format!("eigenpub::{name}"))
            .collect()
    }

    #[test]
    fn every_code_defined_is_documented() {
        let missing: Vec<String> = defined().difference(&documented()).cloned().collect();
        assert!(
            missing.is_empty(),
            "add these codes to docs/diagnostics.md (meaning and fix): {missing:?}"
        );
    }

    #[test]
    fn every_code_documented_is_defined() {
        let stale: Vec<String> = documented().difference(&defined()).cloned().collect();
        assert!(
            stale.is_empty(),
            "docs/diagnostics.md lists codes eigenpub no longer defines: {stale:?}"
        );
    }

    #[test]
    fn codes_are_defined_only_in_codes_rs() {
        let stray = stray();
        assert!(
            stray.is_empty(),
            "use a constant of src/diagnostic/codes.rs instead of these literals: {stray:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let f = SourceFile::new("a", "ab\ncdé\nx");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        assert_eq!(f.line_col(8), (3, 1));
        assert_eq!(f.offset_of(2, 3), 5);
        assert_eq!(f.offset_of(3, 1), 8);
    }

    #[test]
    fn problems_sort_by_file_then_line() {
        let a = SourceFile::new("a.toml", "x\ny\nz");
        let b = SourceFile::new("b.yaml", "x");
        let mut problems = Problems::new();
        problems.push(Problem::error("c", "third").at(&b, 0..1, ""));
        problems.push(Problem::error("c", "second").at(&a, 4..5, ""));
        problems.push(Problem::error("c", "first").at(&a, 0..1, ""));
        let order: Vec<_> = problems.sorted().into_iter().map(|p| p.message).collect();
        assert_eq!(order, ["first", "second", "third"]);
    }
}
