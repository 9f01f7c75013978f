//! The specs a project names, before any is read: every key of every `[[avs]]`'s
//! `[avs.operator-sets]`, and every file a `[[discover]]` pattern finds, each with the
//! settings in force for it ([`Settings`]) and the place in the project file that asked
//! for it ([`Origin`]).
//!
//! An [`Entry`] is the unit the rest of loading works on. Its [`Origin`] travels on into
//! the [`Publication`](super::Publication), so diagnostics and duplicate checks point at
//! the project file with no lookup tables on the side.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::diagnostic::codes;
use crate::diagnostic::{Problem, Problems, SourceFile};
use crate::project::discover::Pattern;
use crate::project::file::{AvsEntry, DiscoverEntry, ProjectFile};
use crate::project::operator_set;
use crate::project::settings::Settings;

/// Where in the project file a publication was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The table that names the spec.
    pub declared: Declared,
    /// What diagnostics mark for the whole entry: the spec path of an operator set, or the
    /// `specs` pattern that found the file.
    pub span: Range<usize>,
    /// How messages name the entry: `price-oracle operator set 0`, or
    /// `fleet/a/opset-0.yaml (found by this pattern)`.
    pub label: String,
}

/// The table of the project file an entry comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declared {
    /// The `index`th `[[avs]]` (counting from 0); its operator-set key is written at `key`.
    Avs { index: usize, key: Range<usize> },
    /// The `index`th `[[discover]]` (counting from 0).
    Discover { index: usize },
}

/// One spec the project names, before its file is read.
#[derive(Debug, Clone)]
pub struct Entry {
    pub avs: String,
    pub operator_set: u32,
    /// The spec path as written (relative to the project folder).
    pub spec: String,
    pub spec_path: PathBuf,
    pub settings: Settings,
    /// The version the project file sets (`version = …` of an `[[avs]]`).
    pub version: Option<String>,
    /// Where that version is written.
    pub version_span: Option<Range<usize>>,
    /// Where the AVS name is written (`name = …`, or the discover pattern).
    pub name_span: Range<usize>,
    pub origin: Origin,
}

/// Every spec the project names, `[[avs]]` first, then `[[discover]]`, in file order.
/// Problems (a bad operator-set key, a pattern that finds nothing) go to `problems`; the
/// entries that could be expanded are returned all the same.
pub fn entries(
    file: &SourceFile,
    parsed: &ProjectFile,
    dir: &Path,
    problems: &mut Problems,
) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (index, avs) in parsed.avs.iter().enumerate() {
        let settings = Settings::for_avs(&parsed.defaults, avs.get_ref());
        entries.extend(avs_entries(
            file,
            index,
            avs.get_ref(),
            settings,
            dir,
            problems,
        ));
    }
    for (index, d) in parsed.discover.iter().enumerate() {
        let settings = Settings::for_discover(&parsed.defaults, d.get_ref());
        match discover_entries(file, index, d.get_ref(), settings, dir) {
            Ok((found, warning)) => {
                entries.extend(found);
                if let Some(warning) = warning {
                    problems.push(warning);
                }
            }
            Err(problem) => problems.push(problem),
        }
    }
    entries
}

/// The entries of one `[[avs]]`, by operator set.
fn avs_entries(
    file: &SourceFile,
    index: usize,
    a: &AvsEntry,
    settings: Settings,
    dir: &Path,
    problems: &mut Problems,
) -> Vec<Entry> {
    if a.operator_sets.is_empty() {
        problems.push(
            Problem::warning(
                codes::PROJECT_NO_OPERATOR_SETS,
                format!(
                    "AVS `{}` lists no operator sets, so nothing is published for it",
                    a.name.get_ref()
                ),
            )
            .at(file, a.name.span(), "no [avs.operator-sets]")
            .help("add e.g. [avs.operator-sets] 0 = \"path/to/aggregator.yaml\""),
        );
    }
    let mut opsets: Vec<_> = a.operator_sets.iter().collect();
    opsets.sort_by_key(|(k, _)| k.get_ref().parse::<u64>().unwrap_or(u64::MAX));
    let mut entries = Vec::with_capacity(opsets.len());
    for (key, path) in opsets {
        let Ok(operator_set) = operator_set::operator_set_id(key.get_ref()) else {
            problems.push(operator_set::key_problem(
                file,
                a.name.get_ref(),
                key.get_ref(),
                key.span(),
            ));
            continue;
        };
        entries.push(Entry {
            avs: a.name.get_ref().clone(),
            operator_set,
            spec: path.get_ref().clone(),
            spec_path: dir.join(path.get_ref()),
            settings: settings.clone(),
            version: a.version.as_ref().map(|v| v.get_ref().as_string()),
            version_span: a.version.as_ref().map(|v| v.span()),
            name_span: a.name.span(),
            origin: Origin {
                declared: Declared::Avs {
                    index,
                    key: key.span(),
                },
                span: path.span(),
                label: format!("{} operator set {operator_set}", a.name.get_ref()),
            },
        });
    }
    entries
}

/// The entries one `[[discover]]` finds, with a warning when it finds none; or the
/// problem when the pattern is invalid or the folders cannot be searched.
fn discover_entries(
    file: &SourceFile,
    index: usize,
    d: &DiscoverEntry,
    settings: Settings,
    dir: &Path,
) -> Result<(Vec<Entry>, Option<Problem>), Problem> {
    let span = d.specs.span();
    let pattern = Pattern::parse(d.specs.get_ref()).map_err(|m| {
        Problem::error(codes::PROJECT_DISCOVER, m)
            .at(file, span.clone(), "invalid pattern")
            .help("write e.g. specs = \"fleet/{avs}/opset-{opset}.yaml\"")
    })?;
    let found = pattern.find(dir).map_err(|e| {
        Problem::error(
            codes::PROJECT_DISCOVER,
            format!("cannot search for `{}`: {e}", pattern.as_str()),
        )
        .at(file, span.clone(), "here")
    })?;
    let warning = found.is_empty().then(|| {
        Problem::warning(
            codes::PROJECT_DISCOVER_EMPTY,
            format!("`{}` matches no files", pattern.as_str()),
        )
        .at(file, span.clone(), "matches nothing")
        .help("check the pattern against your folders; paths are relative to the project file")
    });
    let entries = found
        .into_iter()
        .map(|f| Entry {
            origin: Origin {
                declared: Declared::Discover { index },
                span: span.clone(),
                label: format!("{} (found by this pattern)", f.relative),
            },
            avs: f.avs,
            operator_set: f.operator_set,
            spec: f.relative,
            spec_path: f.path,
            settings: settings.clone(),
            version: None,
            version_span: None,
            name_span: span.clone(),
        })
        .collect();
    Ok((entries, warning))
}
