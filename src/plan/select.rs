//! `--select` and `--exclude`: publish part of a monorepo.
//!
//! Globs (globset syntax) match an artifact's AVS name, `avs/opset`, or `repository:tag`;
//! an artifact is in scope when it matches some `--select` (or none is given) and no
//! `--exclude`. Plan and apply use the same selection, and a saved plan records it.
//!
//! A selection cannot silently miss: [`Selection::check`] fails on every glob that matches
//! none of the project's artifacts (a typo in `--exclude` would otherwise publish what a
//! release job meant to skip), naming it with a "did you mean" from the project's names,
//! and on a selection that leaves nothing in scope.

use globset::{GlobMatcher, GlobSet, GlobSetBuilder};

use crate::diagnostic::Problem;
use crate::diagnostic::codes;
use crate::project::Publication;

/// A compiled selection.
#[derive(Debug, Clone)]
pub struct Selection {
    pub select: Vec<String>,
    pub exclude: Vec<String>,
    select_set: GlobSet,
    exclude_set: GlobSet,
    /// Each glob on its own (`--select` ones first), to tell which ones match nothing.
    each: Vec<(&'static str, String, GlobMatcher)>,
}

impl Selection {
    pub fn new(select: &[String], exclude: &[String]) -> Result<Selection, String> {
        Ok(Selection {
            select: select.to_vec(),
            exclude: exclude.to_vec(),
            select_set: build(select)?,
            exclude_set: build(exclude)?,
            each: [("--select", select), ("--exclude", exclude)]
                .into_iter()
                .flat_map(|(flag, globs)| globs.iter().map(move |g| (flag, g)))
                .map(|(flag, g)| Ok((flag, g.clone(), glob(g)?.compile_matcher())))
                .collect::<Result<_, String>>()?,
        })
    }

    #[cfg(test)]
    pub fn everything() -> Selection {
        Selection::new(&[], &[]).expect("no globs always compile")
    }

    pub fn is_everything(&self) -> bool {
        self.select.is_empty() && self.exclude.is_empty()
    }

    /// The names a glob is matched against.
    fn names(p: &Publication) -> [String; 3] {
        [
            p.avs.clone(),
            format!("{}/{}", p.avs, p.operator_set),
            p.reference(),
        ]
    }

    pub fn matches(&self, p: &Publication) -> bool {
        self.matches_names(&Selection::names(p))
    }

    /// True when an `--exclude` glob matches one of the artifact's names (a mirror's copy is
    /// left out by its own `repository:tag`; it otherwise goes with its primary).
    pub fn excludes(&self, p: &Publication) -> bool {
        Selection::names(p)
            .iter()
            .any(|n| self.exclude_set.is_match(n))
    }

    fn matches_names(&self, names: &[String; 3]) -> bool {
        let selected = self.select.is_empty() || names.iter().any(|n| self.select_set.is_match(n));
        selected && !names.iter().any(|n| self.exclude_set.is_match(n))
    }

    /// Problems with this selection over all of the project's publications (or a saved
    /// plan's, which it narrows): one per glob that matches none of them, and one when
    /// nothing is left in scope. Empty when the selection is fine (always for no selection).
    pub fn check<'a>(
        &self,
        publications: impl IntoIterator<Item = &'a Publication>,
    ) -> Vec<Problem> {
        if self.is_everything() {
            return Vec::new();
        }
        let names: Vec<[String; 3]> = publications.into_iter().map(Selection::names).collect();
        let all = names.len();
        let mut problems: Vec<Problem> = self
            .each
            .iter()
            .filter(|(_, _, m)| !names.iter().flatten().any(|n| m.is_match(n)))
            .map(|(flag, g, _)| unmatched(flag, g, &names, all))
            .collect();
        if problems.is_empty() && all > 0 && !names.iter().any(|n| self.matches_names(n)) {
            problems.push(
                Problem::error(
                    codes::SELECT_EMPTY,
                    format!("the selection matches none of the project's {all} artifact{}", s(all)),
                )
                .help("every glob matches something, but --exclude leaves out all that --select takes; `eigenpub validate -v` lists the artifacts"),
            );
        }
        problems
    }

    /// The publications in scope, in order.
    pub fn apply(&self, publications: Vec<Publication>) -> Vec<Publication> {
        publications
            .into_iter()
            .filter(|p| self.matches(p))
            .collect()
    }
}

fn glob(g: &str) -> Result<globset::Glob, String> {
    globset::GlobBuilder::new(g)
        .literal_separator(false)
        .build()
        .map_err(|e| {
            // A glob may come from a saved plan (outside text): shown on one line.
            crate::sanitize::line(&format!("`{g}` is not a valid glob: {e}"))
        })
}

fn build(globs: &[String]) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for g in globs {
        builder.add(glob(g)?);
    }
    builder.build().map_err(|e| e.to_string())
}

/// The problem for one glob that matches nothing, with the nearest of the project's names.
fn unmatched(flag: &str, g: &str, names: &[[String; 3]], all: usize) -> Problem {
    // A glob may come from a saved plan (outside text): shown on one line.
    let shown = crate::sanitize::line(g);
    let unquoted = g
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| g.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
        .filter(|inner| !inner.is_empty());
    let matches_unquoted = unquoted.is_some_and(|inner| {
        glob(inner).is_ok_and(|inner| {
            let m = inner.compile_matcher();
            names.iter().flatten().any(|n| m.is_match(n))
        })
    });
    let known: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
    let hint = match unquoted {
        Some(inner) if matches_unquoted => Some(format!(
            "the quotes are part of the glob (no shell removed them): pass {flag} {}",
            crate::sanitize::line(inner)
        )),
        _ => crate::project::file::did_you_mean(unquoted.unwrap_or(g), &known)
            .map(|best| format!("did you mean `{flag} {}`?", crate::sanitize::line(best))),
    };
    let rule = "globs match the AVS name, `avs/opset` or `repository:tag`; `eigenpub validate -v` lists them";
    let help = match hint {
        Some(hint) => format!("{hint} ({rule})"),
        None => rule.to_string(),
    };
    Problem::error(
        codes::SELECT_UNMATCHED,
        format!(
            "`{flag} {shown}` matches none of the project's {all} artifact{}",
            s(all)
        ),
    )
    .help(help)
}

fn s(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::publication;

    fn names(sel: &Selection, ps: &[Publication]) -> Vec<String> {
        ps.iter()
            .filter(|p| sel.matches(p))
            .map(|p| p.avs.clone())
            .collect()
    }

    #[test]
    fn select_and_exclude() {
        let ps = vec![
            publication("price-oracle", "opset-0-v1", "a", false),
            publication("dice-roller", "opset-0-v1", "b", false),
            publication("weather-feed", "opset-0-v1", "c", false),
        ];
        let all = Selection::everything();
        assert_eq!(names(&all, &ps).len(), 3);
        let one = Selection::new(&["price-oracle".into()], &[]).unwrap();
        assert_eq!(names(&one, &ps), ["price-oracle"]);
        let by_opset = Selection::new(&["dice-roller/0".into()], &[]).unwrap();
        assert_eq!(names(&by_opset, &ps), ["dice-roller"]);
        let by_ref = Selection::new(&["r.example/weather-*:opset-0-*".into()], &[]).unwrap();
        assert_eq!(names(&by_ref, &ps), ["weather-feed"]);
        let excluded = Selection::new(&[], &["*-roller".into()]).unwrap();
        assert_eq!(names(&excluded, &ps), ["price-oracle", "weather-feed"]);
        assert!(Selection::new(&["[".into()], &[]).is_err());
    }

    #[test]
    fn every_glob_that_matches_nothing_is_a_problem_naming_it() {
        let ps = vec![
            publication("price-oracle", "opset-0-v1", "a", false),
            publication("dice-roller", "opset-0-v1", "b", false),
        ];
        assert!(Selection::everything().check(&ps).is_empty());
        let fine = Selection::new(&["price-*".into()], &["dice-roller".into()]).unwrap();
        assert!(fine.check(&ps).is_empty());
        // A misspelt --exclude, next to a good --select: one problem, for the exclude.
        let typo = Selection::new(&["price-oracle".into()], &["dice-rollr".into()]).unwrap();
        let problems = typo.check(&ps);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].code, codes::SELECT_UNMATCHED);
        assert!(problems[0].message.contains("`--exclude dice-rollr`"));
        let help = problems[0].help.as_deref().unwrap_or_default();
        assert!(
            help.contains("did you mean `--exclude dice-roller`?"),
            "{help}"
        );
        // Two that miss: two problems.
        let two =
            Selection::new(&["nope".into(), "price-oracle".into(), "nah/1".into()], &[]).unwrap();
        assert_eq!(two.check(&ps).len(), 2);
        // All match, nothing left.
        let empty = Selection::new(&["price-oracle".into()], &["*".into()]).unwrap();
        let problems = empty.check(&ps);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].code, codes::SELECT_EMPTY);
    }
}
