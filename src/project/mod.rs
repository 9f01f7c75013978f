//! From `eigenruntime.toml` to the list of [`Publication`]s a run wants: every AVS, every
//! operator set, each with its repository, tag and exact artifact bytes.
//!
//! [`load`] reads the project file and runs the pipeline, one stage per module:
//!
//! ```text
//! file (parse) → entries (expand [[avs]] / [[discover]]) → build (read each spec)
//!   → created_time (lock, SOURCE_DATE_EPOCH, git) → resolve (version, tag, repository)
//!   → build (artifact) → unique (one artifact per operator set and per repository:tag)
//! ```
//!
//! This is the edge where the project's files are read (the project file, the specs, git's
//! commit times); what they mean is decided by pure rules ([`mod@file`], `resolve`,
//! [`discover`], [`spec`], [`crate::artifact`]). One failure style throughout: a rule
//! returns its value or the [`Problem`] that stops it; a stage that finds several problems
//! at once (one per entry, say) pushes them to the load's one [`Problems`] and goes on. All
//! problems come back together, in a stable order, and nothing is planned when any of them
//! is an error.

mod build;
pub mod created;
mod created_time;
pub mod discover;
mod entries;
pub mod file;
pub mod git;
pub mod lock;
mod operator_set;
pub mod paths;
mod resolve;
pub mod schema;
mod settings;
pub mod spec;
pub mod unique;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::artifact::Artifact;
use crate::diagnostic::codes;
use crate::diagnostic::{Problem, Problems, SourceFile};
use crate::project::build::Resolver;
use crate::project::created_time::Clock;
use crate::project::file::{ProjectFile, RegistrySettings};
use crate::project::lock::Lock;
use crate::project::resolve::MutableTags;
use crate::project::schema::SchemaSet;
use crate::reference::{self, Repository, Tag};

#[cfg(test)]
pub use entries::Declared;
pub use entries::Origin;

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
    pub repository: Repository,
    pub tag: Tag,
    /// Set on a mirror's copy of an artifact: the primary repository (the one `registry`
    /// names) whose digest this repository must hold. `None` on the primary itself.
    pub mirror_of: Option<Repository>,
    /// True when the tag matches a `mutable-tags` glob and may be overwritten.
    pub mutable: bool,
    /// True (`adopt-equivalent`, the default) when a tag holding equivalent content under
    /// other metadata is kept as it is; false when only the same bytes count as unchanged.
    pub adopt_equivalent: bool,
    /// The artifact's `created` time (RFC 3339 UTC), as the lock records it. The rest of
    /// what built the artifact is in its bytes; keeping only this keeps a plan of
    /// thousands of artifacts small.
    pub created: String,
    pub artifact: Artifact,
    /// Where the project file asks for it: the `[[avs]]` operator set or the `[[discover]]`.
    pub origin: Origin,
}

impl Publication {
    /// `repository:tag`, as users see it.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    /// True for a mirror's copy of an artifact.
    pub fn is_mirror(&self) -> bool {
        self.mirror_of.is_some()
    }

    /// The primary's `repository:tag` (this one's, for the primary itself).
    pub fn primary_reference(&self) -> String {
        format!(
            "{}:{}",
            self.mirror_of.as_ref().unwrap_or(&self.repository),
            self.tag
        )
    }
}

/// A loaded project: what to publish, and how to reach the registries.
#[derive(Debug)]
pub struct Project {
    pub dir: PathBuf,
    pub file: SourceFile,
    pub publications: Vec<Publication>,
    /// The mirrors' copies of the publications (`mirrors = […]`), in the publications'
    /// order, each naming its primary ([`Publication::mirror_of`]). Kept apart so that
    /// what keeps one entry per operator set (the lock, release records) never sees them.
    pub mirrors: Vec<Publication>,
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

/// Loads and checks a project. Errors and warnings come back together, sorted.
pub fn load(config: &Path, env: &Env) -> Result<Project, Problems> {
    let name = config.display().to_string();
    // A regular file within the size limit, in its own folder: a project file swapped for
    // a link to /dev/zero, or to a file elsewhere (whose lines a parse error would quote),
    // is refused before it is read.
    let text = match paths::read_beside(config, paths::max_file_size()) {
        Ok(bytes) => bytes,
        Err(paths::ReadError::Missing) => {
            return Err(Problem::error(
                codes::PROJECT_MISSING,
                format!("project file {name} not found"),
            )
            .help(format!(
                "without -c, eigenpub looks for eigenruntime.toml in this folder and every folder above it; run `eigenpub init` to write one from the spec files below this folder, or pass -c/--config FILE (every setting is documented in eigenruntime.toml.example at {})",
                env!("CARGO_PKG_REPOSITORY")
            ))
            .into());
        }
        Err(e) => {
            return Err(Problem::error(
                codes::PROJECT_UNREADABLE,
                format!("cannot read project file {name}: {e}"),
            )
            .help("the project file is a regular UTF-8 file of at most 16 MiB inside the folder it is named in (a symlink to a file elsewhere is refused)")
            .into());
        }
    };
    let text = String::from_utf8(text).map_err(|_| {
        Problems::from(
            Problem::error(
                codes::PROJECT_ENCODING,
                format!("project file {name} is not UTF-8 text"),
            )
            .help("save it as UTF-8"),
        )
    })?;
    let file = SourceFile::new(name, text);
    let parsed = file::parse(&file).map_err(Problems::from)?;
    let dir = paths::folder_of(config);
    let lock_path = lock::path_for(config);
    let lock = Lock::read(&lock_path).map_err(Problems::from)?;
    let mut project = resolve(&file, &parsed, &dir, env, lock.as_ref())?;
    project.lock = lock;
    project.lock_path = lock_path;
    Ok(project)
}

/// Resolves a parsed project against its folder: every entry to its publication.
fn resolve(
    file: &SourceFile,
    parsed: &ProjectFile,
    dir: &Path,
    env: &Env,
    lock: Option<&Lock>,
) -> Result<Project, Problems> {
    let mut problems = Problems::new();
    let schemas = SchemaSet::new(file, &parsed.schemas, dir, &mut problems);
    let mutable = MutableTags::new(file, &parsed.defaults.mutable_tags, &mut problems);
    let entries = entries::entries(file, parsed, dir, &mut problems);
    unique::check_avs_names(file, parsed, &mut problems);
    unique::check_operator_sets(file, &entries, &mut problems);
    if parsed.avs.is_empty() && parsed.discover.is_empty() {
        problems.push(
            Problem::warning(codes::PROJECT_EMPTY, "the project lists no AVS, so there is nothing to publish")
                .in_file(file)
                .help("add an [[avs]] with [avs.operator-sets], or a [[discover]] with `specs = \"fleet/{avs}/opset-{opset}.yaml\"`"),
        );
    }
    let mut resolver = Resolver {
        file,
        dir,
        schemas: &schemas,
        mutable: &mutable,
        // Known once the lock has said which entries it covers (below).
        clock: Clock::default(),
    };

    // Read and parse every spec; keep going to report every problem at once.
    let specs: Vec<_> = entries
        .iter()
        .map(|entry| {
            let spec = resolver.read_spec(entry, &mut problems);
            if spec.is_none() {
                // The spec could not be used, but the entry's settings can still be
                // checked, so that one run reports every problem.
                for problem in resolve::check_without_spec(file, entry) {
                    problems.push(problem);
                }
            }
            spec
        })
        .collect();

    // The lock's `created` for every entry whose inputs are unchanged: git is not asked.
    let locked: Vec<Option<String>> = entries
        .iter()
        .zip(&specs)
        .map(|(entry, spec)| {
            let spec = spec.as_ref()?;
            created_time::locked(lock?, dir, entry, &spec.bytes, &spec.document)
        })
        .collect();
    let bytes: Vec<Option<&[u8]>> = specs
        .iter()
        .map(|s| s.as_ref().map(|s| &s.bytes[..]))
        .collect();
    resolver.clock = Clock::new(file, &entries, &locked, &bytes, dir, env, &mut problems);

    let mut mirrors: Vec<Publication> = Vec::new();
    let mut publications: Vec<Publication> = entries
        .iter()
        .zip(specs)
        .zip(locked)
        .filter_map(|((entry, spec), locked)| {
            let primary = resolver.publication(entry, spec?, locked, &mut problems)?;
            mirrors.extend(resolver.mirrors(entry, &primary, &parsed.registries, &mut problems));
            Some(primary)
        })
        .collect();
    // Kept for the whole run: no slack from growing the vector.
    publications.shrink_to_fit();
    mirrors.shrink_to_fit();
    unique::check_duplicates(
        file,
        publications.iter().chain(&mirrors),
        &parsed.registries,
        &mut problems,
    );

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
            Problem::error(codes::PROJECT_CONCURRENCY, "concurrency must be at least 1")
                .at(file, span, "zero")
                .help("leave it out (the default, 64: the registry window adapts up to it) or set a positive number"),
        );
    }
    check_registries(file, &parsed.registries, &mut problems);

    if problems.has_errors() {
        return Err(problems);
    }
    Ok(Project {
        dir: dir.to_path_buf(),
        file: file.clone(),
        publications,
        mirrors,
        registries: parsed.registries.clone(),
        concurrency,
        lock: None,
        lock_path: PathBuf::new(),
        warnings: problems.sorted(),
    })
}

/// A message naming `[registries."…"]` keys (outside text: a TOML key may hold a line
/// break), sanitised and kept on one line.
fn one_line(message: &str) -> String {
    crate::sanitize::line(message)
}

/// `[registries."host"]`: keyed by a host, with bounds in range.
fn check_registries(
    file: &SourceFile,
    registries: &BTreeMap<String, RegistrySettings>,
    problems: &mut Problems,
) {
    // Two tables for one registry (`ghcr.io` and `GHCR.io:443`) would leave which one
    // applies to the order of their keys.
    let mut seen: std::collections::HashMap<reference::RegistryId, &str> = Default::default();
    for (host, settings) in registries {
        let plain = settings.plain_http_for(host);
        if let Some(id) = reference::RegistryId::of(host, plain)
            && let Some(first) = seen.insert(id, host)
        {
            problems.push(
                Problem::error(
                    codes::PROJECT_REGISTRY,
                    one_line(&format!("[registries.\"{first}\"] and [registries.\"{host}\"] are one registry")),
                )
                .in_file(file)
                .help("keep one table per registry: case, a trailing dot, the default port and this machine's or Docker Hub's other names do not make another"),
            );
        }
        if let Err(m) = reference::parse_prefix(host)
            && !host.is_empty()
        {
            problems.push(
                Problem::error(
                    codes::PROJECT_REGISTRY,
                    one_line(&format!("[registries.\"{host}\"]: {m}")),
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
                    codes::PROJECT_REGISTRY,
                    one_line(&format!("[registries.\"{host}\"] max-concurrency = {n}: it must be between 1 and 1024")),
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
                    codes::PROJECT_REGISTRY,
                    one_line(&format!("[registries.\"{host}\"] requests-per-second = {r}: it must be between 0.01 and 100000")),
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
                    codes::PROJECT_REGISTRY,
                    one_line(&format!("[registries.\"{host}\"] timeout = {t}: it must be between 0.1 and 3600 seconds")),
                )
                .in_file(file)
                .help("leave it out for the default (60 seconds per request), or set e.g. timeout = 120"),
            );
        }
    }
}

#[cfg(test)]
mod tests;
