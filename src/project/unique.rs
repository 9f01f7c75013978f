//! One artifact per operator set.
//!
//! The release record (what the on-chain step reads) holds one digest per AVS and operator
//! set, so a project that names an operator set twice would silently lose one of them. Here
//! every operator set has exactly one spelling (`0`, `1`, … : not `00`, `+0` or `1.0`), an
//! AVS name is listed once, and two entries (from `[[avs]]` or `[[discover]]`) for the same
//! AVS and operator set are an error naming both places. Two publications on one
//! `repository:tag` are caught after the repositories are resolved (`check_duplicates`).

use std::collections::HashMap;

use super::Publication;
use super::entries::Entry;
use crate::diagnostic::codes;
use crate::diagnostic::{Problem, Problems, SourceFile};
use crate::project::file::ProjectFile;

/// An operator-set key as written in `[avs.operator-sets]`.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyError {
    /// A number, spelled another way: the canonical spelling.
    NotCanonical(String),
    Negative,
    NotANumber,
}

/// Parses an operator-set key: a non-negative integer in its one spelling.
pub fn operator_set_id(key: &str) -> Result<u32, KeyError> {
    let canonical = !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_digit())
        && (key == "0" || !key.starts_with('0'));
    if canonical {
        return key.parse::<u32>().map_err(|_| KeyError::NotANumber);
    }
    let unsigned = key.strip_prefix('+').unwrap_or(key);
    if key.starts_with('-') && key[1..].bytes().any(|b| b.is_ascii_digit()) {
        return Err(KeyError::Negative);
    }
    // `00`, `+1`, `1.0`, `1.00`, ` 1`: the number they mean, if it is a whole one.
    let trimmed = unsigned.trim();
    let whole = match trimmed.split_once('.') {
        Some((int, frac)) if frac.bytes().all(|b| b == b'0') => int,
        Some(_) => return Err(KeyError::NotANumber),
        None => trimmed,
    };
    if !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()) {
        let digits = whole.trim_start_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        if digits.parse::<u32>().is_ok() {
            return Err(KeyError::NotCanonical(digits.to_string()));
        }
    }
    Err(KeyError::NotANumber)
}

/// The problem for an operator-set key that is not one.
pub fn key_problem(
    file: &SourceFile,
    avs: &str,
    key: &str,
    span: std::ops::Range<usize>,
) -> Problem {
    let (message, label, help) = match operator_set_id(key) {
        Ok(_) => unreachable!("only called for keys that are not operator sets"),
        Err(KeyError::NotCanonical(canonical)) => (
            format!("operator set `{key}` of AVS `{avs}` is not written as a plain number"),
            format!("write `{canonical}`"),
            format!(
                "write `{canonical} = \"…\"`: an operator set has one spelling (no sign, leading zeros or decimals), so that it cannot be listed twice"
            ),
        ),
        Err(KeyError::Negative) => (
            format!("operator set `{key}` of AVS `{avs}` is negative"),
            "not an operator set id".to_string(),
            "operator sets are numbered from 0: 0 = \"…\", 1 = \"…\"".to_string(),
        ),
        Err(KeyError::NotANumber) => (
            format!("operator set `{key}` of AVS `{avs}` is not a number"),
            "not an operator set id".to_string(),
            "operator sets are numbered: 0 = \"…\", 1 = \"…\"".to_string(),
        ),
    };
    Problem::error(codes::PROJECT_OPERATOR_SET, message)
        .at(file, span, label)
        .help(help)
}

/// The same AVS name in two `[[avs]]` tables is an error naming both.
pub fn check_avs_names(file: &SourceFile, parsed: &ProjectFile, problems: &mut Problems) {
    let mut seen: HashMap<&str, std::ops::Range<usize>> = HashMap::new();
    for avs in &parsed.avs {
        let name = avs.get_ref().name.get_ref().as_str();
        let span = avs.get_ref().name.span();
        match seen.get(name) {
            Some(first) => problems.push(
                Problem::error(
                    codes::PROJECT_DUPLICATE_AVS,
                    format!("AVS `{name}` is listed twice"),
                )
                .at(file, span, "second")
                .also(first.clone(), "first")
                .help("list each AVS once: merge the two [[avs]] tables, or rename one"),
            ),
            None => {
                seen.insert(name, span);
            }
        }
    }
}

/// Two entries for one AVS and operator set are an error naming both. (When they also land
/// on one `repository:tag`, that is reported too, naming the tag.)
pub(super) fn check_operator_sets(file: &SourceFile, entries: &[Entry], problems: &mut Problems) {
    let mut index: HashMap<(&str, u32), &Entry> = HashMap::new();
    for entry in entries {
        let key = (entry.avs.as_str(), entry.operator_set);
        if let Some(first) = index.get(&key) {
            let mut problem = Problem::error(
                codes::PROJECT_DUPLICATE_OPERATOR_SET,
                format!(
                    "AVS `{}` operator set {} has two specs: {} ({}) and {} ({})",
                    entry.avs,
                    entry.operator_set,
                    first.spec,
                    first.origin.label,
                    entry.spec,
                    entry.origin.label
                ),
            )
            .at(
                file,
                entry.origin.span.clone(),
                format!("second: {}", entry.spec),
            );
            if first.origin.span != entry.origin.span {
                problem = problem.also(first.origin.span.clone(), format!("first: {}", first.spec));
            }
            problems.push(problem.help(
                "an operator set has one artifact (the release record keeps one digest per operator set): keep one of the two",
            ));
            continue;
        }
        index.insert(key, entry);
    }
}

/// Two publications on one `repository:tag` is an error naming both.
pub(super) fn check_duplicates(
    file: &SourceFile,
    publications: &[Publication],
    problems: &mut Problems,
) {
    let mut seen: HashMap<String, &Publication> = HashMap::new();
    for p in publications {
        let key = p.reference();
        let Some(first) = seen.get(&key) else {
            seen.insert(key, p);
            continue;
        };
        let (a, b) = (&first.origin, &p.origin);
        let mut problem = Problem::error(
            codes::PROJECT_DUPLICATE,
            format!(
                "two artifacts on {key}: {} ({}) and {} ({})",
                a.label, first.spec, b.label, p.spec
            ),
        )
        .at(file, b.span.clone(), format!("second: {}", p.spec));
        if a.span != b.span {
            problem = problem.also(a.span.clone(), format!("first: {}", first.spec));
        }
        problems.push(problem.help(
            "give one of them another AVS name, operator set, `repository` or `tag` template",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_sets_have_one_spelling() {
        assert_eq!(operator_set_id("0"), Ok(0));
        assert_eq!(operator_set_id("17"), Ok(17));
        for (key, canonical) in [
            ("00", "0"),
            ("+0", "0"),
            ("007", "7"),
            ("1.0", "1"),
            ("+1.00", "1"),
            (" 1", "1"),
        ] {
            assert_eq!(
                operator_set_id(key),
                Err(KeyError::NotCanonical(canonical.into())),
                "{key}"
            );
        }
        assert_eq!(operator_set_id("-1"), Err(KeyError::Negative));
        assert_eq!(operator_set_id("-0"), Err(KeyError::Negative));
        for bad in ["", "a", "1.5", "0x1", "99999999999", "1e3"] {
            assert_eq!(operator_set_id(bad), Err(KeyError::NotANumber), "{bad}");
        }
    }
}
