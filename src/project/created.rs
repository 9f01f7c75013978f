//! Reproducible time: where `org.opencontainers.image.created` comes from.
//!
//! devkit stamps artifacts with the wall clock, so its digests change on every run. eigenpub
//! never does: `created` is a fixed RFC 3339 time, `SOURCE_DATE_EPOCH`, or `"git"` (the
//! commit time of the last commit that changed the spec). Times are normalised to UTC with
//! seconds precision (`2025-01-01T00:00:00Z`, devkit's format), so the time zone of the
//! machine never shows in a digest. Git is asked three times per run in all (`rev-parse`,
//! one `log`, one `ls-tree`), however many specs there are, and only about commits and
//! trees (see [`super::git`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use crate::project::git::{GitError, Repository};

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
    /// Files whose bytes are not those of the last commit (changed, staged or untracked).
    pub modified: HashSet<PathBuf>,
    /// True when the clone is shallow: commit times may be those of the cut-off commit.
    pub shallow: bool,
    /// The repository's top folder; `None` when the project is not in a git repository.
    pub toplevel: Option<PathBuf>,
}

/// Asks git, about the repository the project folder is in, for the last commit time of
/// each spec, and compares each spec's bytes (as eigenpub read them) with the commit's.
/// Git is only asked to read commits and trees (see [`git`]): which files changed is
/// decided here, by hashing the bytes the way git does.
pub fn git_times(project_dir: &Path, files: &[(PathBuf, &[u8])]) -> Result<GitTimes, String> {
    let mut result = GitTimes::default();
    let Some(repository) = Repository::find(project_dir) else {
        return Ok(result);
    };
    let shallow = match repository.run(&["rev-parse", "--is-shallow-repository"]) {
        Ok(out) => out,
        // No git at all: nothing is known, which callers report.
        Err(GitError::NoGit) => return Ok(result),
        // Anything else (a `.git` that is not a repository) is git's to say.
        Err(GitError::Failed(m)) => return Err(m),
    };
    result.shallow = shallow.trim_ascii() == b"true";
    let toplevel = repository.work_tree.clone();
    let mut relative: Vec<(String, PathBuf, &[u8])> = Vec::new();
    for (file, bytes) in files {
        let canonical = file.canonicalize().unwrap_or_else(|_| file.clone());
        if let Ok(rel) = canonical.strip_prefix(&toplevel)
            && let Some(rel) = rel.to_str()
        {
            relative.push((rel.replace('\\', "/"), canonical, bytes));
        }
    }
    result.toplevel = Some(toplevel);
    if relative.is_empty() {
        return Ok(result);
    }
    let by_rel: HashMap<&str, &PathBuf> =
        relative.iter().map(|(r, p, _)| (r.as_str(), p)).collect();
    let names = relative.iter().map(|(r, _, _)| r.as_str());
    let mut args: Vec<&str> = vec![
        "log",
        "-z",
        "--no-renames",
        "--no-show-signature",
        "--no-ext-diff",
        "--no-textconv",
        "--format=%x01%ct",
        "--name-only",
        "--",
    ];
    args.extend(names.clone());
    // A repository with no commits yet has no log: every file is then uncommitted.
    let log = repository.run(&args).unwrap_or_default();
    let log = String::from_utf8(log).map_err(|_| "git log printed something that is not UTF-8")?;
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
    // The blobs the last commit holds; none when there is no commit yet.
    let mut args: Vec<&str> = vec!["ls-tree", "-z", "--full-tree", "HEAD", "--"];
    args.extend(names);
    let tree = repository.run(&args).unwrap_or_default();
    let committed: HashMap<&[u8], &[u8]> = tree
        .split(|b| *b == 0)
        .filter_map(|entry| {
            // `<mode> SP <type> SP <object> TAB <path>`
            let tab = entry.iter().position(|b| *b == b'\t')?;
            let (head, path) = (&entry[..tab], &entry[tab + 1..]);
            let object = head.rsplit(|b| *b == b' ').next()?;
            Some((path, object))
        })
        .collect();
    for (rel, canonical, bytes) in &relative {
        let unchanged = committed
            .get(rel.as_bytes())
            .is_some_and(|object| same_blob(bytes, object));
        if !unchanged {
            result.modified.insert(canonical.clone());
        }
    }
    Ok(result)
}

/// Whether `bytes` are the blob git names `object` (hex; SHA-1, or SHA-256 in a
/// repository of that format). A file checked out with CRLF line ends from a blob with LF
/// ones (`core.autocrlf`) counts as the same.
fn same_blob(bytes: &[u8], object: &[u8]) -> bool {
    let id = |bytes: &[u8]| -> String {
        let header = format!("blob {}\0", bytes.len());
        if object.len() == 64 {
            use sha2::Digest as _;
            hex::encode(
                sha2::Sha256::new_with_prefix(header)
                    .chain_update(bytes)
                    .finalize(),
            )
        } else {
            use sha1::Digest as _;
            hex::encode(
                sha1::Sha1::new_with_prefix(header)
                    .chain_update(bytes)
                    .finalize(),
            )
        }
    };
    if id(bytes).as_bytes() == object {
        return true;
    }
    bytes.windows(2).any(|w| w == b"\r\n") && {
        let mut lf = Vec::with_capacity(bytes.len());
        let mut iter = bytes.iter().peekable();
        while let Some(&b) = iter.next() {
            if !(b == b'\r' && iter.peek() == Some(&&b'\n')) {
                lf.push(b);
            }
        }
        id(&lf).as_bytes() == object
    }
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
    fn blobs_are_recognised_by_their_git_object_ids() {
        // `printf 'a: 1\n' | git hash-object --stdin`, in a SHA-1 and a SHA-256 repository.
        let sha1 = b"a8926a52d8dcba5c4386945476ab6a2ad008afd4";
        let sha256 = b"80d3735834c615c1ed161b8c218d42171f3247f20cfc07f033dee488cb7b98a9";
        for object in [&sha1[..], &sha256[..]] {
            assert!(same_blob(b"a: 1\n", object));
            assert!(
                same_blob(b"a: 1\r\n", object),
                "a CRLF checkout of an LF blob"
            );
            assert!(!same_blob(b"a: 2\n", object));
            assert!(!same_blob(b"a: 1\r", object));
        }
    }

    #[test]
    fn source_date_epoch() {
        assert_eq!(parse_epoch("1735689600").unwrap(), "2025-01-01T00:00:00Z");
        assert!(parse_epoch("soon").is_err());
    }
}
