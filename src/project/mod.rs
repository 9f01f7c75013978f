//! From `eigenruntime.toml` to the list of [`Publication`]s a run wants: every AVS, every
//! operator set, each with its repository, tag and exact artifact bytes.
//!
//! This is the edge where the project's files are read (the project file, the specs, git's
//! commit times); everything it decides is decided by the pure modules it calls
//! ([`mod@file`], [`discover`], [`spec`], [`crate::artifact`]). All problems found are returned
//! together, in a stable order, and nothing is planned when any of them is an error.

pub mod created;
pub mod discover;
pub mod file;
pub mod lock;
pub mod paths;
pub mod schema;
pub mod spec;
pub mod unique;
pub mod yaml;

use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::artifact::{Artifact, ArtifactInput};
use crate::diagnostic::{Problem, Problems, SourceFile};
use crate::project::created::{Created, GitTimes};
use crate::project::discover::Pattern;
use crate::project::file::{ProjectFile, RegistrySettings, Settings};
use crate::project::lock::Lock;
use crate::project::schema::SchemaSet;
use crate::project::spec::SpecDocument;
use crate::reference::{self, RegistryPrefix, Repository};

/// What the environment contributes to a load (read once, at the edge).
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub source_date_epoch: Option<String>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }
}

/// One artifact the project wants at one `repository:tag`.
#[derive(Debug, Clone)]
pub struct Publication {
    pub avs: String,
    pub operator_set: u32,
    /// The spec path as written (relative to the project folder).
    pub spec: String,
    pub spec_path: PathBuf,
    pub repository: Repository,
    pub tag: String,
    /// True when the tag matches a `mutable-tags` glob and may be overwritten.
    pub mutable: bool,
    /// True (`adopt-equivalent`, the default) when a tag holding equivalent content under
    /// other metadata is kept as it is; false when only the same bytes count as unchanged.
    pub adopt_equivalent: bool,
    pub input: ArtifactInput,
    pub artifact: Artifact,
}

impl Publication {
    /// `repository:tag`, as users see it.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

/// A loaded project: what to publish, and how to reach the registries.
#[derive(Debug)]
pub struct Project {
    pub dir: PathBuf,
    pub file: SourceFile,
    pub publications: Vec<Publication>,
    pub registries: BTreeMap<String, RegistrySettings>,
    pub concurrency: usize,
    /// The lock beside the project file (`eigenruntime.lock`), when there is one; its
    /// `created` times were used for every entry whose inputs are unchanged.
    pub lock: Option<Lock>,
    /// Where the lock is (or would be) written.
    pub lock_path: PathBuf,
    /// Warnings found while loading (errors abort the load).
    pub warnings: Vec<Problem>,
}

/// One spec the project names, before its file is read.
struct Entry {
    avs: String,
    operator_set: u32,
    spec: String,
    spec_path: PathBuf,
    settings: Settings,
    version: Option<String>,
    /// Where in the project file this entry comes from.
    origin: Range<usize>,
    /// What the origin label says.
    origin_label: String,
    /// Where the AVS name is written (`name = …`, or the discover pattern).
    name_span: Range<usize>,
    /// Where the version is written, when the project file sets it.
    version_span: Option<Range<usize>>,
}

/// Loads and checks a project. Errors and warnings come back together, sorted.
pub fn load(config: &Path, env: &Env) -> Result<Project, Problems> {
    let name = config.display().to_string();
    // A regular file within the size limit: a project file swapped for a link to /dev/zero
    // is refused, not read until memory runs out.
    let text = match paths::read_regular(config, paths::MAX_FILE_SIZE) {
        Ok(bytes) => bytes,
        Err(paths::ReadError::Missing) => {
            return Err(Problem::error(
                "eigenpub::project::missing",
                format!("project file {name} not found"),
            )
            .help("run eigenpub in the folder that holds eigenruntime.toml, or pass -c/--config FILE; eigenruntime.toml.example documents the format")
            .into());
        }
        Err(e) => {
            return Err(Problem::error(
                "eigenpub::project::unreadable",
                format!("cannot read project file {name}: {e}"),
            )
            .into());
        }
    };
    let text = String::from_utf8(text).map_err(|_| {
        Problems::from(
            Problem::error(
                "eigenpub::project::encoding",
                format!("project file {name} is not UTF-8 text"),
            )
            .help("save it as UTF-8"),
        )
    })?;
    let file = SourceFile::new(name, text);
    let parsed = file::parse(&file).map_err(Problems::from)?;
    let dir = config
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."));
    let lock_path = lock::path_for(config);
    let lock = Lock::read(&lock_path).map_err(Problems::from)?;
    let mut project = resolve(&file, &parsed, &dir, env, lock.as_ref())?;
    project.lock = lock;
    project.lock_path = lock_path;
    Ok(project)
}

/// Resolves a parsed project against its folder.
fn resolve(
    file: &SourceFile,
    parsed: &ProjectFile,
    dir: &Path,
    env: &Env,
    lock: Option<&Lock>,
) -> Result<Project, Problems> {
    let mut problems = Problems::new();
    let schemas = SchemaSet::new(file, &parsed.schemas, dir, &mut problems);
    let mutable = mutable_tags(file, parsed, &mut problems);
    let entries = entries(file, parsed, dir, &mut problems);
    unique::check_avs_names(file, parsed, &mut problems);
    unique::check_operator_sets(file, &entries, &mut problems);
    if parsed.avs.is_empty() && parsed.discover.is_empty() {
        problems.push(
            Problem::warning("eigenpub::project::empty", "the project lists no AVS, so there is nothing to publish")
                .in_file(file)
                .help("add an [[avs]] with [avs.operator-sets], or a [[discover]] with `specs = \"fleet/{avs}/opset-{opset}.yaml\"`"),
        );
    }

    // Read and parse every spec; keep going to report every problem at once.
    let mut documents: Vec<Option<(Bytes, SpecDocument)>> = Vec::with_capacity(entries.len());
    for entry in &entries {
        let document = read_spec(file, dir, entry, &schemas, &mut problems);
        if document.is_none() {
            // The spec could not be used, but the entry's settings can still be checked,
            // so that one run reports every problem.
            check_settings(file, entry, &mut problems);
        }
        documents.push(document);
    }

    // The lock's `created` for every entry whose inputs are unchanged: git is not asked.
    let locked: Vec<Option<String>> = entries
        .iter()
        .zip(&documents)
        .map(|(entry, document)| {
            let (bytes, document) = document.as_ref()?;
            locked_created(lock?, dir, entry, bytes, document)
        })
        .collect();
    let git = git_times_if_needed(file, parsed, &entries, &locked, dir, env, &mut problems);
    let epoch = env.source_date_epoch.as_deref().map(|e| {
        created::parse_epoch(e).map_err(|m| Problem::error("eigenpub::created::epoch", m))
    });
    let epoch = match epoch {
        Some(Ok(t)) => Epoch::Valid(t),
        Some(Err(p)) => {
            problems.push(p.help("unset SOURCE_DATE_EPOCH or set it to an integer"));
            Epoch::Invalid
        }
        None => Epoch::Unset,
    };

    let mut publications = Vec::new();
    for ((entry, document), locked) in entries.iter().zip(documents).zip(locked) {
        let Some((bytes, document)) = document else {
            continue;
        };
        let created = Time {
            locked,
            git: &git,
            epoch: &epoch,
        };
        if let Some(p) = publication(
            file,
            dir,
            entry,
            bytes,
            &document,
            &created,
            &mutable,
            &mut problems,
        ) {
            // The config blob is checked against its schema before anything is pushed.
            if let Err(m) = schemas.check_config(&p.artifact) {
                problems.push(
                    Problem::error(
                        "eigenpub::artifact::config",
                        format!("{}: the config blob eigenpub would push is invalid: {m}", p.reference()),
                    )
                    .at(file, entry.origin.clone(), "this artifact")
                    .help("check `kind`, `schema` and `devkit-version` for this AVS: they must be non-empty, and the schema a URL"),
                );
                continue;
            }
            publications.push(p);
        }
    }
    check_duplicates(file, &entries, &publications, &mut problems);

    let concurrency = parsed
        .defaults
        .concurrency
        .as_ref()
        .map(|c| *c.get_ref())
        .unwrap_or(file::DEFAULT_CONCURRENCY);
    if concurrency == 0 {
        let span = parsed
            .defaults
            .concurrency
            .as_ref()
            .map(|c| c.span())
            .unwrap_or(0..0);
        problems.push(
            Problem::error(
                "eigenpub::project::concurrency",
                "concurrency must be at least 1",
            )
            .at(file, span, "zero")
            .help("set concurrency = 8 (the default) or another positive number"),
        );
    }
    for (host, settings) in &parsed.registries {
        if let Err(m) = reference::parse_prefix(host)
            && !host.is_empty()
        {
            problems.push(
                Problem::error(
                    "eigenpub::project::registry",
                    format!("[registries.\"{host}\"]: {m}"),
                )
                .in_file(file)
                .help("key registry settings by host[:port], e.g. [registries.\"ghcr.io\"]"),
            );
        }
        if let Some(n) = settings.max_concurrency
            && !(1..=1024).contains(&n)
        {
            problems.push(
                Problem::error(
                    "eigenpub::project::registry",
                    format!("[registries.\"{host}\"] max-concurrency = {n}: it must be between 1 and 1024"),
                )
                .in_file(file)
                .help("leave it out for no per-registry bound, or set e.g. max-concurrency = 4"),
            );
        }
        if let Some(r) = settings.requests_per_second
            && !(r.is_finite() && (0.01..=100_000.0).contains(&r))
        {
            problems.push(
                Problem::error(
                    "eigenpub::project::registry",
                    format!("[registries.\"{host}\"] requests-per-second = {r}: it must be between 0.01 and 100000"),
                )
                .in_file(file)
                .help("leave it out for no rate limit, or set e.g. requests-per-second = 20"),
            );
        }
        if let Some(t) = settings.timeout
            && !(t.is_finite() && (0.1..=3600.0).contains(&t))
        {
            problems.push(
                Problem::error(
                    "eigenpub::project::registry",
                    format!("[registries.\"{host}\"] timeout = {t}: it must be between 0.1 and 3600 seconds"),
                )
                .in_file(file)
                .help("leave it out for the default (60 seconds per request), or set e.g. timeout = 120"),
            );
        }
    }

    if problems.has_errors() {
        return Err(problems);
    }
    Ok(Project {
        dir: dir.to_path_buf(),
        file: file.clone(),
        publications,
        registries: parsed.registries.clone(),
        concurrency,
        lock: None,
        lock_path: PathBuf::new(),
        warnings: problems.sorted(),
    })
}

fn mutable_tags(file: &SourceFile, parsed: &ProjectFile, problems: &mut Problems) -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    for glob in &parsed.defaults.mutable_tags {
        match Glob::new(glob.get_ref()) {
            Ok(g) => {
                builder.add(g);
            }
            Err(e) => problems.push(
                Problem::error(
                    "eigenpub::project::glob",
                    format!("`{}` is not a valid glob: {e}", glob.get_ref()),
                )
                .at(file, glob.span(), "invalid glob")
                .help("use globs like \"latest\" or \"opset-*-dev\""),
            ),
        }
    }
    builder.build().unwrap_or_else(|_| GlobSet::empty())
}

/// Every spec the project names, from `[[avs]]` and `[[discover]]`.
fn entries(
    file: &SourceFile,
    parsed: &ProjectFile,
    dir: &Path,
    problems: &mut Problems,
) -> Vec<Entry> {
    let mut entries = Vec::new();
    for avs in &parsed.avs {
        let a = avs.get_ref();
        let settings = Settings::for_avs(&parsed.defaults, a);
        if a.operator_sets.is_empty() {
            problems.push(
                Problem::warning(
                    "eigenpub::project::no-operator-sets",
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
        for (key, path) in opsets {
            let Ok(operator_set) = unique::operator_set_id(key.get_ref()) else {
                problems.push(unique::key_problem(
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
                origin: path.span(),
                origin_label: format!("{} operator set {operator_set}", a.name.get_ref()),
            });
        }
    }
    for d in &parsed.discover {
        let d = d.get_ref();
        let pattern = match Pattern::parse(d.specs.get_ref()) {
            Ok(p) => p,
            Err(m) => {
                problems.push(
                    Problem::error("eigenpub::project::discover", m)
                        .at(file, d.specs.span(), "invalid pattern")
                        .help("write e.g. specs = \"fleet/{avs}/opset-{opset}.yaml\""),
                );
                continue;
            }
        };
        let found = match pattern.find(dir) {
            Ok(f) => f,
            Err(e) => {
                problems.push(
                    Problem::error(
                        "eigenpub::project::discover",
                        format!("cannot search for `{}`: {e}", pattern.as_str()),
                    )
                    .at(file, d.specs.span(), "here"),
                );
                continue;
            }
        };
        if found.is_empty() {
            problems.push(
                Problem::warning(
                    "eigenpub::project::discover-empty",
                    format!("`{}` matches no files", pattern.as_str()),
                )
                .at(file, d.specs.span(), "matches nothing")
                .help("check the pattern against your folders; paths are relative to the project file"),
            );
        }
        let settings = Settings::for_discover(&parsed.defaults, d);
        for f in found {
            entries.push(Entry {
                origin_label: format!("{} (found by this pattern)", f.relative),
                avs: f.avs,
                operator_set: f.operator_set,
                spec: f.relative,
                spec_path: f.path,
                settings: settings.clone(),
                version: None,
                version_span: None,
                name_span: d.specs.span(),
                origin: d.specs.span(),
            });
        }
    }
    entries
}

/// Reads an entry's spec: inside the project folder, a regular file, within the size limit
/// (see [`paths`]); nothing of a refused file is read, so nothing of it can be shown.
fn read_spec(
    file: &SourceFile,
    dir: &Path,
    entry: &Entry,
    schemas: &SchemaSet,
    problems: &mut Problems,
) -> Option<(Bytes, SpecDocument)> {
    let bytes = match paths::read_inside(dir, &entry.spec_path, paths::MAX_FILE_SIZE) {
        Ok(b) => b,
        Err(e) => {
            let (code, label, help) = match &e {
                paths::ReadError::Outside { .. } => (
                    "eigenpub::spec::outside-project",
                    "outside the project",
                    "spec paths must stay inside the folder that holds the project file, also after following symlinks: move the spec into the project",
                ),
                paths::ReadError::NotRegular { .. } => (
                    "eigenpub::spec::not-a-file",
                    "not a regular file",
                    "point the operator set at a YAML file",
                ),
                paths::ReadError::TooLarge { .. } => (
                    "eigenpub::spec::too-large",
                    "too large",
                    "a runtime spec is a small YAML file; check that the path names the right file",
                ),
                _ => (
                    "eigenpub::spec::missing",
                    "this spec file",
                    "paths are relative to the project file; fix the path or add the file",
                ),
            };
            problems.push(
                Problem::error(
                    code,
                    format!("spec file {} ({}): {e}", entry.spec, entry.origin_label),
                )
                .at(file, entry.origin.clone(), label)
                .help(help),
            );
            return None;
        }
    };
    let display = entry.spec_path.display().to_string();
    let source = match spec::source(&display, &bytes) {
        Ok(s) => s,
        Err(p) => {
            problems.push(p);
            return None;
        }
    };
    let document = match spec::parse(&source) {
        Ok(d) => d,
        Err(p) => {
            problems.push(p);
            return None;
        }
    };
    let before = problems.error_count();
    schemas.validate(&source, &document, &entry.settings.schema, file, problems);
    if problems.error_count() > before {
        return None;
    }
    Some((Bytes::from(bytes), document))
}

/// The checks of an entry's settings that need no spec: `created` and the tag template.
fn check_settings(file: &SourceFile, entry: &Entry, problems: &mut Problems) {
    let s = &entry.settings;
    if let Some(c) = &s.created
        && let Err(m) = created::parse_created(&c.value)
    {
        problems.push(created_problem(file, entry, &c.span, m));
    }
    if let Err(m) = file::render_tag(&s.tag.value, &entry.avs, entry.operator_set, "0") {
        problems.push(template_problem(file, entry, m));
    }
}

fn created_problem(
    file: &SourceFile,
    entry: &Entry,
    span: &Option<Range<usize>>,
    message: String,
) -> Problem {
    Problem::error("eigenpub::created::invalid", message)
        .at(
            file,
            span.clone().unwrap_or(entry.origin.clone()),
            "created",
        )
        .help("use an RFC 3339 time such as \"2025-01-01T00:00:00Z\", or \"git\"")
}

fn template_problem(file: &SourceFile, entry: &Entry, message: String) -> Problem {
    Problem::error(
        "eigenpub::project::tag-template",
        format!("{}: {message}", entry.origin_label),
    )
    .at(
        file,
        entry.settings.tag.span.clone().unwrap_or(entry.origin.clone()),
        "tag template",
    )
    .help("the placeholders are {avs}, {opset} and {version}, e.g. tag = \"opset-{opset}-v{version}\"")
}

fn uses_git(entry: &Entry, env: &Env) -> bool {
    match &entry.settings.created {
        Some(c) => c.value == "git",
        None => env.source_date_epoch.is_none(),
    }
}

/// The locked `created` of an entry whose spec bytes, repository and tag are those the lock
/// records (see [`Lock::created`]).
fn locked_created(
    lock: &Lock,
    dir: &Path,
    entry: &Entry,
    bytes: &[u8],
    document: &SpecDocument,
) -> Option<String> {
    let version = entry.version.clone().or_else(|| document.version())?;
    let tag = file::render_tag(
        &entry.settings.tag.value,
        &entry.avs,
        entry.operator_set,
        &version,
    )
    .ok()?;
    let repository = repository(dir, entry).ok()?.to_string();
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

/// Where an entry's creation time comes from: the lock, git, or `SOURCE_DATE_EPOCH`.
struct Time<'a> {
    locked: Option<String>,
    git: &'a GitTimes,
    epoch: &'a Epoch,
}

fn git_times_if_needed(
    file: &SourceFile,
    _parsed: &ProjectFile,
    entries: &[Entry],
    locked: &[Option<String>],
    dir: &Path,
    env: &Env,
    problems: &mut Problems,
) -> GitTimes {
    let paths: Vec<PathBuf> = entries
        .iter()
        .zip(locked)
        .filter(|(e, locked)| locked.is_none() && uses_git(e, env))
        .map(|(e, _)| e.spec_path.clone())
        .collect();
    if paths.is_empty() {
        return GitTimes::default();
    }
    match created::git_times(dir, &paths) {
        Ok(times) => {
            if times.shallow {
                problems.push(
                    Problem::warning(
                        "eigenpub::created::shallow",
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
                "eigenpub::created::git",
                format!("cannot read commit times from git: {m}"),
            ));
            GitTimes::default()
        }
    }
}

/// `SOURCE_DATE_EPOCH` as read from the environment.
enum Epoch {
    Unset,
    Valid(String),
    /// Set but not a time: already reported once, so specs relying on it say nothing more.
    Invalid,
}

#[allow(clippy::too_many_arguments)]
fn publication(
    file: &SourceFile,
    dir: &Path,
    entry: &Entry,
    bytes: Bytes,
    document: &SpecDocument,
    time: &Time<'_>,
    mutable: &GlobSet,
    problems: &mut Problems,
) -> Option<Publication> {
    let (git, epoch) = (time.git, time.epoch);
    let s = &entry.settings;
    let span_of = |setting: &Option<Range<usize>>| setting.clone().unwrap_or(entry.origin.clone());
    let mut ok = true;

    // The version: from the project file, else the spec's own field.
    let version = match entry.version.clone().or_else(|| document.version()) {
        Some(v) => v,
        None => {
            problems.push(
                Problem::error(
                    "eigenpub::spec::no-version",
                    format!("{}: no version for {} (the spec has no `version` field and the project sets none)", entry.spec, entry.origin_label),
                )
                .at(file, entry.origin.clone(), "needs a version")
                .help("add `version: …` to the spec, or `version = …` to its [[avs]] entry"),
            );
            return None;
        }
    };
    if version.trim().is_empty() {
        let (span, label) = match &entry.version_span {
            Some(span) => (span.clone(), "empty version"),
            None => (entry.origin.clone(), "this spec's `version` is empty"),
        };
        problems.push(
            Problem::error(
                "eigenpub::project::version",
                format!("{}: the version is empty", entry.origin_label),
            )
            .at(file, span, label)
            .help("set a version such as `version = 3` or `version = \"1.4.0\"` (or the spec's `version: …`)"),
        );
        return None;
    }

    // The tag.
    let tag = match file::render_tag(&s.tag.value, &entry.avs, entry.operator_set, &version) {
        Err(m) => {
            problems.push(template_problem(file, entry, m));
            return None;
        }
        Ok(t) => match reference::check_tag(&t) {
            Ok(()) => t,
            Err(m) => {
                // Point at what made the tag invalid: the template when it is written, else
                // the version (from the project file, or from the spec).
                let (span, label) = if let Some(span) = &s.tag.span {
                    (span.clone(), "tag template".to_string())
                } else if let Some(span) = &entry.version_span {
                    (span.clone(), format!("version `{version}`"))
                } else {
                    (
                        entry.origin.clone(),
                        format!("the spec's version `{version}`"),
                    )
                };
                problems.push(
                    Problem::error("eigenpub::project::tag", format!("{}: {m}", entry.origin_label))
                        .at(file, span, label)
                        .help("tags are up to 128 of [A-Za-z0-9_.-], not starting with . or -; choose a version (or tag template) that gives one"),
                );
                return None;
            }
        },
    };

    // The repository.
    let repository = match repository(dir, entry) {
        Ok(r) => Some(r),
        Err((m, span)) => {
            problems.push(
                Problem::error("eigenpub::project::repository", format!("{}: {m}", entry.origin_label))
                    .at(file, span, "not a valid repository name")
                    .help("repository names are lowercase letters, digits and . _ - separators; set `repository = \"…\"` on the [[avs]] to choose another name"),
            );
            ok = false;
            None
        }
    };

    // The creation time: the lock's when its inputs are unchanged, else from the settings.
    let created_setting = match &s.created {
        _ if time.locked.is_some() => time.locked.clone().map(Created::Fixed),
        Some(c) => match created::parse_created(&c.value) {
            Ok(c) => Some(c),
            Err(m) => {
                problems.push(created_problem(file, entry, &c.span, m));
                return None;
            }
        },
        None => match epoch {
            Epoch::Valid(t) => Some(Created::Fixed(t.clone())),
            Epoch::Unset => Some(Created::Git),
            Epoch::Invalid => return None,
        },
    };
    let created = match created_setting {
        Some(Created::Fixed(t)) => t,
        _ => {
            let canonical = entry
                .spec_path
                .canonicalize()
                .unwrap_or(entry.spec_path.clone());
            match git.times.get(&canonical) {
                Some(t) => {
                    if git.modified.contains(&canonical) {
                        problems.push(
                            Problem::warning(
                                "eigenpub::created::uncommitted",
                                format!("{} has uncommitted changes; its created time is that of its last commit, so commit before publishing", entry.spec),
                            )
                            .at(file, entry.origin.clone(), "uncommitted spec")
                            .help("commit the spec, or set `created` to a fixed time"),
                        );
                    }
                    t.clone()
                }
                None => {
                    let why = if git.toplevel.is_none() {
                        "the project is not in a git repository"
                    } else {
                        "the spec has never been committed"
                    };
                    // An explicit `created = "git"` wins over SOURCE_DATE_EPOCH, so only
                    // the default may suggest it.
                    let (how, help) = if s.created.is_some() {
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
                    problems.push(
                        Problem::error(
                            "eigenpub::created::unknown",
                            format!("no creation time for {}: {how} but {why}", entry.spec),
                        )
                        .at(
                            file,
                            span_of(&s.created.as_ref().and_then(|c| c.span.clone())),
                            "needs a created time",
                        )
                        .help(help),
                    );
                    return None;
                }
            }
        }
    };

    let repository = repository?;
    if !ok {
        return None;
    }
    let input = ArtifactInput {
        avs: entry.avs.clone(),
        tag: tag.clone(),
        kind: s.kind.value.clone(),
        schema: s.schema.value.clone(),
        devkit_version: s.devkit_version.value.clone(),
        created,
        source: s.source.as_ref().map(|v| v.value.clone()),
        layer_title: s.layer_title.then(|| {
            entry
                .spec_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        }),
        spec: bytes,
    };
    let artifact = Artifact::build(&input);
    Some(Publication {
        avs: entry.avs.clone(),
        operator_set: entry.operator_set,
        spec: entry.spec.clone(),
        spec_path: entry.spec_path.clone(),
        mutable: mutable.is_match(&tag),
        adopt_equivalent: s.adopt_equivalent,
        repository,
        tag,
        input,
        artifact,
    })
}

/// The repository an entry publishes to.
fn repository(dir: &Path, entry: &Entry) -> Result<Repository, (String, Range<usize>)> {
    let s = &entry.settings;
    let Some(registry) = &s.registry else {
        return Err((
            "no registry: set `registry` in [defaults] (e.g. \"ghcr.io/acme\" or \"oci:out\")"
                .into(),
            entry.origin.clone(),
        ));
    };
    let span = registry.span.clone().unwrap_or(entry.origin.clone());
    let parsed = if s.registry_is_repository {
        reference::parse_repository(&registry.value)
    } else {
        reference::parse_prefix(&registry.value)
    }
    .map_err(|m| (m, span.clone()))?;
    let (repository, path) = match parsed {
        RegistryPrefix::Remote { registry, path } => {
            let path = if s.registry_is_repository {
                path
            } else if path.is_empty() {
                entry.avs.clone()
            } else {
                format!("{path}/{}", entry.avs)
            };
            (
                Repository::Remote {
                    registry,
                    path: path.clone(),
                },
                path,
            )
        }
        RegistryPrefix::Layout { display_root } => {
            let (root, path) = if s.registry_is_repository {
                match display_root.trim_end_matches('/').rsplit_once('/') {
                    // `oci:/abs` is the layout `abs` at the file system's root: written
                    // there and reported so, not written under the project folder.
                    Some(("", name)) => ("/".to_string(), name.to_string()),
                    Some((root, name)) => (root.to_string(), name.to_string()),
                    None => (".".to_string(), display_root.clone()),
                }
            } else {
                (display_root.clone(), entry.avs.clone())
            };
            (
                Repository::Layout {
                    root: dir.join(&root),
                    display_root: root,
                    path: path.clone(),
                },
                path,
            )
        }
    };
    // Blame the AVS name when the prefix alone is fine (it was checked when parsed).
    let span = if !s.registry_is_repository && reference::check_repository_path(&entry.avs).is_err()
    {
        entry.name_span.clone()
    } else {
        span
    };
    reference::check_repository_path(&path).map_err(|m| (m, span))?;
    Ok(repository)
}

/// Two publications on one `repository:tag` is an error naming both.
fn check_duplicates(
    file: &SourceFile,
    entries: &[Entry],
    publications: &[Publication],
    problems: &mut Problems,
) {
    let origin: HashMap<(&str, u32, &Path), &Entry> = entries
        .iter()
        .map(|e| ((e.avs.as_str(), e.operator_set, e.spec_path.as_path()), e))
        .collect();
    let mut seen: HashMap<String, &Publication> = HashMap::new();
    for p in publications {
        let key = p.reference();
        if let Some(first) = seen.get(&key) {
            let a = origin[&(
                first.avs.as_str(),
                first.operator_set,
                first.spec_path.as_path(),
            )];
            let b = origin[&(p.avs.as_str(), p.operator_set, p.spec_path.as_path())];
            let mut problem = Problem::error(
                "eigenpub::project::duplicate",
                format!(
                    "two artifacts on {key}: {} ({}) and {} ({})",
                    a.origin_label, first.spec, b.origin_label, p.spec
                ),
            )
            .at(file, b.origin.clone(), format!("second: {}", p.spec));
            if a.origin != b.origin {
                problem = problem.also(a.origin.clone(), format!("first: {}", first.spec));
            }
            problems.push(problem.help(
                "give one of them another AVS name, operator set, `repository` or `tag` template",
            ));
        } else {
            seen.insert(key, p);
        }
    }
}
