//! Which time each entry's artifact is stamped with (`org.opencontainers.image.created`),
//! in order of precedence: the lock's, when the entry's inputs are unchanged; the
//! `created` setting (a fixed time, or `"git"`); `SOURCE_DATE_EPOCH`; git.
//!
//! [`super::created`] parses times and asks git; this module decides, per entry, which
//! source counts, asks git once for every spec that needs it ([`Clock::new`]), and says
//! what is wrong when no time can be found.

use std::path::{Path, PathBuf};

use crate::diagnostic::codes;
use crate::diagnostic::{Problem, Problems, SourceFile};
use crate::project::Env;
use crate::project::created::{self, Created, GitTimes};
use crate::project::entries::Entry;
use crate::project::lock::Lock;
use crate::project::resolve::{self, derive_repository, render_tag};
use crate::project::spec::SpecDocument;

/// What the environment and git say about time, read once for the whole project.
#[derive(Debug, Default)]
pub struct Clock {
    git: GitTimes,
    epoch: Epoch,
}

/// `SOURCE_DATE_EPOCH` as read from the environment.
#[derive(Debug, Default)]
enum Epoch {
    #[default]
    Unset,
    Valid(String),
    /// Set but not a time: reported once by [`Clock::new`]; every entry relying on it
    /// fails with the same problem, which the sorted report keeps once.
    Invalid(Problem),
}

/// An entry's creation time.
#[derive(Debug, PartialEq, Eq)]
pub struct Stamp {
    /// RFC 3339, UTC, seconds.
    pub time: String,
    /// True when the time is the spec's last commit but the spec has changed since.
    pub uncommitted: bool,
}

impl Clock {
    /// Reads `SOURCE_DATE_EPOCH` from `env` and, in one go, git's commit times of the specs
    /// whose time comes from git (those read, as `bytes`, with no `locked` time). Problems
    /// (an invalid epoch, a failing git, a shallow clone) go to `problems`.
    pub fn new(
        file: &SourceFile,
        entries: &[Entry],
        locked: &[Option<String>],
        bytes: &[Option<&[u8]>],
        dir: &Path,
        env: &Env,
        problems: &mut Problems,
    ) -> Clock {
        let epoch = match env.source_date_epoch.as_deref().map(created::parse_epoch) {
            None => Epoch::Unset,
            Some(Ok(t)) => Epoch::Valid(t),
            Some(Err(m)) => {
                let problem = Problem::error(codes::CREATED_EPOCH, m)
                    .help("unset SOURCE_DATE_EPOCH or set it to an integer");
                problems.push(problem.clone());
                Epoch::Invalid(problem)
            }
        };
        let paths: Vec<(PathBuf, &[u8])> = entries
            .iter()
            .zip(locked)
            .zip(bytes)
            .filter(|((e, locked), _)| locked.is_none() && uses_git(e, env))
            .filter_map(|((e, _), bytes)| Some((e.spec_path.clone(), (*bytes)?)))
            .collect();
        let git = if paths.is_empty() {
            GitTimes::default()
        } else {
            match created::git_times(dir, &paths) {
                Ok(times) => {
                    if times.shallow {
                        problems.push(
                            Problem::warning(
                                codes::CREATED_SHALLOW,
                                "this is a shallow git clone: commit times of specs may be those of the cut-off commit, which changes digests",
                            )
                            .in_file(file)
                            .help("fetch full history (actions/checkout: fetch-depth: 0) or set `created` to a fixed time"),
                        );
                    }
                    times
                }
                Err(m) => {
                    problems.push(Problem::error(
                        codes::CREATED_GIT,
                        format!("cannot read commit times from git: {m}"),
                    ));
                    GitTimes::default()
                }
            }
        };
        Clock { git, epoch }
    }

    /// An entry's creation time: `locked` when the lock's inputs are unchanged, else its
    /// `created` setting, else `SOURCE_DATE_EPOCH`, else the spec's last commit.
    pub fn created(
        &self,
        file: &SourceFile,
        entry: &Entry,
        locked: Option<String>,
    ) -> Result<Stamp, Problem> {
        let setting = &entry.settings.created;
        let source = match (locked, setting) {
            (Some(t), _) => Created::Fixed(t),
            (None, Some(c)) => created::parse_created(&c.value)
                .map_err(|m| resolve::invalid_created(file, entry, &c.span, m))?,
            (None, None) => match &self.epoch {
                Epoch::Valid(t) => Created::Fixed(t.clone()),
                Epoch::Unset => Created::Git,
                Epoch::Invalid(problem) => return Err(problem.clone()),
            },
        };
        match source {
            Created::Fixed(time) => Ok(Stamp {
                time,
                uncommitted: false,
            }),
            Created::Git => self.committed(file, entry),
        }
    }

    /// The last commit time of an entry's spec.
    fn committed(&self, file: &SourceFile, entry: &Entry) -> Result<Stamp, Problem> {
        let canonical = entry
            .spec_path
            .canonicalize()
            .unwrap_or(entry.spec_path.clone());
        if let Some(time) = self.git.times.get(&canonical) {
            return Ok(Stamp {
                time: time.clone(),
                uncommitted: self.git.modified.contains(&canonical),
            });
        }
        let why = if self.git.toplevel.is_none() {
            "the project is not in a git repository"
        } else {
            "the spec has never been committed"
        };
        // An explicit `created = "git"` wins over SOURCE_DATE_EPOCH, so only the default
        // may suggest it.
        let setting = &entry.settings.created;
        let (how, help) = if setting.is_some() {
            (
                "`created = \"git\"` is set",
                "commit the spec, or set `created = \"2025-01-01T00:00:00Z\"` (a fixed time) instead of \"git\"",
            )
        } else {
            (
                "`created` is \"git\" (the default)",
                "commit the spec, set SOURCE_DATE_EPOCH, or set `created = \"2025-01-01T00:00:00Z\"` in [defaults]",
            )
        };
        let span = setting
            .as_ref()
            .and_then(|c| c.span.clone())
            .unwrap_or(entry.origin.span.clone());
        Err(Problem::error(
            codes::CREATED_UNKNOWN,
            format!("no creation time for {}: {how} but {why}", entry.spec),
        )
        .at(file, span, "needs a created time")
        .help(help))
    }
}

/// Whether an entry's time comes from git when the lock does not give it.
fn uses_git(entry: &Entry, env: &Env) -> bool {
    match &entry.settings.created {
        Some(c) => c.value == "git",
        None => env.source_date_epoch.is_none(),
    }
}

/// The locked `created` of an entry whose spec bytes, repository and tag are those the
/// lock records (see [`Lock::created`]); `None` when any of them changed.
pub fn locked(
    lock: &Lock,
    dir: &Path,
    entry: &Entry,
    bytes: &[u8],
    document: &SpecDocument,
) -> Option<String> {
    let version = entry.version.clone().or_else(|| document.version())?;
    let tag = render_tag(
        &entry.settings.tag.value,
        &entry.avs,
        entry.operator_set,
        &version,
    )
    .ok()?;
    let repository = derive_repository(dir, entry).ok()?.to_string();
    let fixed = entry.settings.created.as_ref().map(|c| c.value.as_str());
    lock.created(
        &entry.avs,
        entry.operator_set,
        bytes,
        &repository,
        &tag,
        fixed,
    )
    .map(str::to_string)
}

/// The warning for a spec stamped with its last commit's time while it has changed since.
pub fn uncommitted_warning(file: &SourceFile, entry: &Entry) -> Problem {
    Problem::warning(
        codes::CREATED_UNCOMMITTED,
        format!(
            "{} has uncommitted changes; its created time is that of its last commit, so commit before publishing",
            entry.spec
        ),
    )
    .at(file, entry.origin.span.clone(), "uncommitted spec")
    .help("commit the spec, or set `created` to a fixed time")
}
