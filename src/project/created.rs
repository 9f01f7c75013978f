//! Reproducible time: where `org.opencontainers.image.created` comes from.
//!
//! devkit stamps artifacts with the wall clock, so its digests change on every run. eigenpub
//! never does: `created` is a fixed RFC 3339 time, `SOURCE_DATE_EPOCH`, or `"git"` (the
//! commit time of the last commit that changed the spec). Times are normalised to UTC with
//! seconds precision (`2025-01-01T00:00:00Z`, devkit's format), so the time zone of the
//! machine never shows in a digest. Git is asked twice per run in all (one `git log`, one
//! `git status`), however many specs there are.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// Where an artifact's creation time comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A fixed time, already normalised.
    Fixed(String),
    /// The commit time of the last commit that changed the spec file.
    Git,
}

/// Parses a `created = "…"` value.
pub fn parse_created(text: &str) -> Result<Created, String> {
    if text == "git" {
        return Ok(Created::Git);
    }
    let time = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        format!("`{text}` is not an RFC 3339 time ({e}); write e.g. \"2025-01-01T00:00:00Z\", or \"git\"")
    })?;
    Ok(Created::Fixed(format_utc(time)))
}

/// Reads `SOURCE_DATE_EPOCH` (seconds since 1970).
pub fn parse_epoch(text: &str) -> Result<String, String> {
    let secs: i64 = text.trim().parse().map_err(|_| {
        format!("SOURCE_DATE_EPOCH=`{text}` is not a number of seconds since 1970-01-01")
    })?;
    format_unix(secs)
}

/// Formats seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_unix(secs: i64) -> Result<String, String> {
    let time = OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|_| format!("{secs} seconds since 1970 is not a representable time"))?;
    Ok(format_utc(time))
}

fn format_utc(time: OffsetDateTime) -> String {
    let utc = time.to_offset(time::UtcOffset::UTC);
    utc.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .expect("a UTC time always formats")
}

/// What git knows about a set of spec files.
#[derive(Debug, Default)]
pub struct GitTimes {
    /// Last commit time (UTC, formatted) per canonical path.
    pub times: HashMap<PathBuf, String>,
    /// Files with uncommitted changes (staged or not).
    pub modified: HashSet<PathBuf>,
    /// True when the clone is shallow: commit times may be those of the cut-off commit.
    pub shallow: bool,
    /// The repository's top folder; `None` when the project is not in a git repository.
    pub toplevel: Option<PathBuf>,
}

/// Asks git, in the project folder, for the last commit time of each file.
pub fn git_times(project_dir: &Path, files: &[PathBuf]) -> Result<GitTimes, String> {
    let mut result = GitTimes::default();
    let top = match git(
        project_dir,
        &["rev-parse", "--show-toplevel", "--is-shallow-repository"],
    ) {
        Ok(out) => out,
        // Not a repository, or no git at all: nothing is known, which callers report.
        Err(m) if m.contains("not a git repository") || m.starts_with("could not run git") => {
            return Ok(result);
        }
        // Anything else (e.g. "detected dubious ownership" in CI containers) is git's to say.
        Err(m) => return Err(m),
    };
    let mut lines = top.lines();
    let toplevel = PathBuf::from(lines.next().unwrap_or_default());
    let toplevel = toplevel.canonicalize().unwrap_or(toplevel);
    result.shallow = lines.next() == Some("true");
    let mut relative: Vec<(String, PathBuf)> = Vec::new();
    for file in files {
        let canonical = file.canonicalize().unwrap_or_else(|_| file.clone());
        if let Ok(rel) = canonical.strip_prefix(&toplevel)
            && let Some(rel) = rel.to_str()
        {
            relative.push((rel.replace('\\', "/"), canonical));
        }
    }
    result.toplevel = Some(toplevel.clone());
    if relative.is_empty() {
        return Ok(result);
    }
    let by_rel: HashMap<&str, &PathBuf> = relative.iter().map(|(r, p)| (r.as_str(), p)).collect();
    let mut args: Vec<&str> = vec![
        "-c",
        "core.quotepath=off",
        "log",
        "-z",
        "--no-renames",
        "--format=%x01%ct",
        "--name-only",
        "--",
    ];
    args.extend(relative.iter().map(|(r, _)| r.as_str()));
    // A repository with no commits yet has no log: every file is then uncommitted.
    let log = git(&toplevel, &args).unwrap_or_default();
    let mut current: Option<i64> = None;
    for token in log.split('\0') {
        if let Some(secs) = token.strip_prefix('\u{1}') {
            current = secs.trim().parse().ok();
        } else if let Some(secs) = current {
            let name = token.trim_start_matches('\n');
            if let Some(path) = by_rel.get(name)
                && !result.times.contains_key(*path)
            {
                result.times.insert((*path).clone(), format_unix(secs)?);
            }
        }
    }
    let mut args: Vec<&str> = vec![
        "-c",
        "core.quotepath=off",
        "status",
        "--porcelain",
        "-z",
        "--untracked-files=all",
        "--",
    ];
    args.extend(relative.iter().map(|(r, _)| r.as_str()));
    let status = git(&toplevel, &args)?;
    // Entries are `XY path`; a rename or copy (`R`/`C`) is followed by its original
    // path as a token of its own, which is not an entry.
    let mut tokens = status.split('\0');
    while let Some(entry) = tokens.next() {
        let (Some(xy), Some(name)) = (entry.get(..2), entry.get(3..)) else {
            continue;
        };
        if let Some(path) = by_rel.get(name) {
            result.modified.insert((*path).clone());
        }
        if xy.contains(['R', 'C']) {
            tokens.next();
        }
    }
    Ok(result)
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .map_err(|e| format!("could not run git: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    String::from_utf8(out.stdout).map_err(|_| "git printed something that is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_times_are_normalised_to_utc_seconds() {
        assert_eq!(
            parse_created("2025-01-01T05:30:00+05:30").unwrap(),
            Created::Fixed("2025-01-01T00:00:00Z".into())
        );
        assert_eq!(
            parse_created("2025-01-01T00:00:00.999Z").unwrap(),
            Created::Fixed("2025-01-01T00:00:00Z".into())
        );
        assert_eq!(parse_created("git").unwrap(), Created::Git);
        assert!(parse_created("yesterday").unwrap_err().contains("RFC 3339"));
        assert!(parse_created("2025-01-01").is_err());
    }

    #[test]
    fn source_date_epoch() {
        assert_eq!(parse_epoch("1735689600").unwrap(), "2025-01-01T00:00:00Z");
        assert!(parse_epoch("soon").is_err());
    }
}
