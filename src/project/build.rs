//! One entry, from its spec file to its [`Publication`]: the spec read from disk (inside
//! the project, a regular file, within the size limit), parsed and validated against its
//! schema; then the version, tag, repository and creation time resolved, the artifact
//! built, and its config blob checked against the config schema.
//!
//! [`Resolver`] holds what every entry shares (the project file, its folder, the schemas,
//! the mutable-tag globs, the [`Clock`]); the rules themselves are in [`super::resolve`]
//! and [`super::created_time`], and return a value or a [`Problem`]. The two methods here
//! are where those problems are reported.

use std::path::Path;

use bytes::Bytes;

use crate::artifact::{Artifact, ArtifactInput};
use crate::diagnostic::codes;
use crate::diagnostic::{Problem, Problems, SourceFile};
use crate::project::created_time::{self, Clock};
use crate::project::entries::Entry;
use crate::project::resolve::{self, MutableTags};
use crate::project::schema::SchemaSet;
use crate::project::spec::{self, SpecDocument};
use crate::project::{Publication, paths, unique};

/// A spec as read and parsed: the exact bytes the layer carries, and their YAML.
#[derive(Debug)]
pub struct Spec {
    pub bytes: Bytes,
    pub document: SpecDocument,
}

/// What building a publication needs from the whole project, gathered once.
pub struct Resolver<'a> {
    pub file: &'a SourceFile,
    pub dir: &'a Path,
    pub schemas: &'a SchemaSet,
    pub mutable: &'a MutableTags,
    pub clock: Clock,
}

impl Resolver<'_> {
    /// Reads an entry's spec: inside the project folder, a regular file, within the size
    /// limit (see [`paths`]); nothing of a refused file is read, so nothing of it can be
    /// shown. `None` when the spec cannot be used; why is in `problems` (with the schema's
    /// advice when it can).
    pub fn read_spec(&self, entry: &Entry, problems: &mut Problems) -> Option<Spec> {
        let (bytes, source, document) = match self.parse_spec(entry) {
            Ok(parsed) => parsed,
            Err(problem) => {
                problems.push(problem);
                return None;
            }
        };
        let before = problems.error_count();
        self.schemas.validate(
            &source,
            &document,
            &entry.settings.schema,
            self.file,
            problems,
        );
        // Only `version` is read after validation: the parsed tree is dropped here.
        (problems.error_count() == before).then(|| Spec {
            bytes: Bytes::from(bytes),
            document: document.slim(),
        })
    }

    fn parse_spec(&self, entry: &Entry) -> Result<(Vec<u8>, SourceFile, SpecDocument), Problem> {
        let bytes = paths::read_inside(self.dir, &entry.spec_path, paths::max_file_size())
            .map_err(|e| {
                let (code, label, help) = match &e {
                    paths::ReadError::Outside { .. } => (
                        codes::SPEC_OUTSIDE_PROJECT,
                        "outside the project",
                        "spec paths must stay inside the folder that holds the project file, also after following symlinks: move the spec into the project",
                    ),
                    paths::ReadError::NotRegular { .. } => (
                        codes::SPEC_NOT_A_FILE,
                        "not a regular file",
                        "point the operator set at a YAML file",
                    ),
                    paths::ReadError::TooLarge { .. } => (
                        codes::SPEC_TOO_LARGE,
                        "too large",
                        "a runtime spec is a small YAML file; check that the path names the right file",
                    ),
                    _ => (
                        codes::SPEC_MISSING,
                        "this spec file",
                        "paths are relative to the project file; fix the path or add the file",
                    ),
                };
                Problem::error(
                    code,
                    format!("spec file {} ({}): {e}", entry.spec, entry.origin.label),
                )
                .at(self.file, entry.origin.span.clone(), label)
                .help(help)
            })?;
        let source = spec::source(&entry.spec_path.display().to_string(), &bytes)?;
        let document = spec::parse(&source)?;
        Ok((bytes, source, document))
    }

    /// Builds the publication of an entry whose spec was read, its creation time being
    /// `locked` when the lock's inputs are unchanged. `None` when a setting is wrong; what
    /// is wrong (everything that can be found at once) is in `problems`.
    pub fn publication(
        &self,
        entry: &Entry,
        spec: Spec,
        locked: Option<String>,
        problems: &mut Problems,
    ) -> Option<Publication> {
        let file = self.file;
        let tag = resolve::version(file, entry, &spec.document)
            .and_then(|version| resolve::tag(file, entry, &version));
        let tag = match tag {
            Ok(tag) => tag,
            Err(problem) => {
                problems.push(problem);
                return None;
            }
        };
        // The repository and the time do not depend on each other: both are reported.
        let repository = resolve::repository(file, self.dir, entry);
        let created = self.clock.created(file, entry, locked);
        let (repository, created) = match (repository, created) {
            (Ok(repository), Ok(created)) => (repository, created),
            (repository, created) => {
                for problem in repository.err().into_iter().chain(created.err()) {
                    problems.push(problem);
                }
                return None;
            }
        };
        if created.uncommitted {
            problems.push(created_time::uncommitted_warning(file, entry));
        }

        let s = &entry.settings;
        let input = ArtifactInput {
            avs: entry.avs.clone(),
            tag: tag.to_string(),
            kind: s.kind.value.clone(),
            schema: s.schema.value.clone(),
            devkit_version: s.devkit_version.value.clone(),
            created: created.time.clone(),
            source: s.source.as_ref().map(|v| v.value.clone()),
            layer_title: s.layer_title.then(|| {
                entry
                    .spec_path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            }),
            spec: spec.bytes,
        };
        let artifact = Artifact::build(&input);
        let publication = Publication {
            avs: entry.avs.clone(),
            operator_set: entry.operator_set,
            spec: entry.spec.clone(),
            mutable: self.mutable.matches(&tag),
            adopt_equivalent: s.adopt_equivalent,
            repository,
            mirror_of: None,
            tag,
            created: created.time,
            artifact,
            origin: entry.origin.clone(),
        };
        // The config blob is checked against its schema before anything is pushed.
        if let Err(m) = self.schemas.check_config(&publication.artifact) {
            problems.push(
                Problem::error(
                    codes::ARTIFACT_CONFIG,
                    format!("{}: the config blob eigenpub would push is invalid: {m}", publication.reference()),
                )
                .at(file, entry.origin.span.clone(), "this artifact")
                .help("check `kind`, `schema` and `devkit-version` for this AVS: they must be non-empty, and the schema a URL"),
            );
            return None;
        }
        Some(publication)
    }

    /// The copies of `primary` its entry's `mirrors` ask for, one per mirror, in the order
    /// written. A mirror that is no valid prefix, or that lands where the primary or an
    /// earlier mirror does (however its registry is spelled), is a problem pointing at it.
    pub fn mirrors(
        &self,
        entry: &Entry,
        primary: &Publication,
        registries: &std::collections::BTreeMap<String, crate::project::file::RegistrySettings>,
        problems: &mut Problems,
    ) -> Vec<Publication> {
        let file = self.file;
        let mut places = vec![(
            unique::place(&primary.repository, registries),
            format!("the primary repository {}", primary.repository),
        )];
        let mut copies = Vec::new();
        for mirror in &entry.settings.mirrors {
            let repository = match resolve::mirror_repository(file, self.dir, entry, mirror) {
                Ok(r) => r,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            let place = unique::place(&repository, registries);
            if let Some((_, what)) = places.iter().find(|(p, _)| *p == place) {
                problems.push(
                    Problem::error(
                        codes::PROJECT_MIRROR,
                        format!(
                            "{}: mirror `{}` is {what} ({repository})",
                            entry.origin.label, mirror.value
                        ),
                    )
                    .at(
                        file,
                        mirror.span.clone().unwrap_or(entry.origin.span.clone()),
                        "lands on a repository already published to",
                    )
                    .help("list each mirror once, and not the registry `registry` names: a mirror is another registry (or `oci:` folder) holding the same digests"),
                );
                continue;
            }
            places.push((place, format!("mirror `{}`", mirror.value)));
            copies.push(Publication {
                repository,
                mirror_of: Some(primary.repository.clone()),
                // A mirror holds exactly the primary's digest, never merely equivalent content.
                adopt_equivalent: false,
                ..primary.clone()
            });
        }
        copies
    }
}
