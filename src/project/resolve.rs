//! The settings in force for each entry, and what they resolve to: `[defaults]` layered
//! under per-`[[avs]]` and per-`[[discover]]` overrides ([`Settings`]), the version, the tag
//! (a template filled in, [`render_tag`]), whether that tag is mutable ([`MutableTags`]),
//! and the repository (`registry` + the AVS name, or an AVS's `repository` as written).
//!
//! Every rule here is pure: it reads the parsed project file and returns a value, or the
//! [`Problem`] that points at the setting to fix. Reading files and asking git happen in
//! [`super::build`] and [`super::created_time`].

use std::ops::Range;
use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};
use toml::Spanned;

use crate::diagnostic::codes;
use crate::diagnostic::{Problem, Problems, SourceFile};
use crate::project::created;
use crate::project::entries::Entry;
use crate::project::settings::Destination;
#[cfg(test)]
use crate::project::settings::Settings;
use crate::project::spec::SpecDocument;
use crate::reference::{self, RegistryPrefix, Repository, Tag};

/// Fills a tag template. Unknown placeholders and unbalanced braces are errors.
pub fn render_tag(template: &str, avs: &str, opset: u32, version: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        out.push_str(&rest[..open]);
        if rest[open..].starts_with('}') {
            return Err(format!("tag template `{template}` has a `}}` with no `{{`"));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("tag template `{template}` has a `{{` with no `}}`"))?;
        let name = &after[..close];
        match name {
            "avs" => out.push_str(avs),
            "opset" => out.push_str(&opset.to_string()),
            "version" => out.push_str(version),
            other => {
                return Err(format!(
                    "tag template `{template}` uses `{{{other}}}`; the placeholders are {{avs}}, {{opset}} and {{version}}"
                ));
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `mutable-tags` globs of `[defaults]`: tags matching one may be overwritten.
#[derive(Debug)]
pub struct MutableTags(GlobSet);

impl MutableTags {
    /// Compiles the globs; an invalid one is reported and left out.
    pub fn new(file: &SourceFile, globs: &[Spanned<String>], problems: &mut Problems) -> Self {
        let mut builder = GlobSetBuilder::new();
        for glob in globs {
            match Glob::new(glob.get_ref()) {
                Ok(g) => {
                    builder.add(g);
                }
                Err(e) => problems.push(
                    Problem::error(
                        codes::PROJECT_GLOB,
                        format!("`{}` is not a valid glob: {e}", glob.get_ref()),
                    )
                    .at(file, glob.span(), "invalid glob")
                    .help("use globs like \"latest\" or \"opset-*-dev\""),
                ),
            }
        }
        MutableTags(builder.build().unwrap_or_else(|_| GlobSet::empty()))
    }

    pub fn matches(&self, tag: &str) -> bool {
        self.0.is_match(tag)
    }
}

/// The version an entry publishes: the project file's, else the spec's own field. It
/// must not be empty.
pub fn version(
    file: &SourceFile,
    entry: &Entry,
    document: &SpecDocument,
) -> Result<String, Problem> {
    let Some(version) = entry.version.clone().or_else(|| document.version()) else {
        return Err(Problem::error(
            codes::SPEC_NO_VERSION,
            format!(
                "{}: no version for {} (the spec has no `version` field and the project sets none)",
                entry.spec, entry.origin.label
            ),
        )
        .at(file, entry.origin.span.clone(), "needs a version")
        .help("add `version: …` to the spec, or `version = …` to its [[avs]] entry"));
    };
    if version.trim().is_empty() {
        let (span, label) = match &entry.version_span {
            Some(span) => (span.clone(), "empty version"),
            None => (entry.origin.span.clone(), "this spec's `version` is empty"),
        };
        return Err(Problem::error(
            codes::PROJECT_VERSION,
            format!("{}: the version is empty", entry.origin.label),
        )
        .at(file, span, label)
        .help("set a version such as `version = 3` or `version = \"1.4.0\"` (or the spec's `version: …`)"));
    }
    Ok(version)
}

/// The tag an entry publishes: its template filled in, and valid as a tag.
pub fn tag(file: &SourceFile, entry: &Entry, version: &str) -> Result<Tag, Problem> {
    let s = &entry.settings;
    let rendered = render_tag(&s.tag.value, &entry.avs, entry.operator_set, version)
        .map_err(|m| template_problem(file, entry, m))?;
    Tag::parse(&rendered).map_err(|m| {
        // Point at what made the tag invalid: the template when it is written, else the
        // version (from the project file, or from the spec).
        let (span, label) = if let Some(span) = &s.tag.span {
            (span.clone(), "tag template".to_string())
        } else if let Some(span) = &entry.version_span {
            (span.clone(), format!("version `{version}`"))
        } else {
            (
                entry.origin.span.clone(),
                format!("the spec's version `{version}`"),
            )
        };
        Problem::error(codes::PROJECT_TAG, format!("{}: {m}", entry.origin.label))
            .at(file, span, label)
            .help("tags are up to 128 of [A-Za-z0-9_.-], not starting with . or -; choose a version (or tag template) that gives one")
    })
}

/// The checks of an entry's settings that need no spec (`created` and the tag template),
/// for entries whose spec could not be used, so that one run reports every problem.
pub fn check_without_spec(file: &SourceFile, entry: &Entry) -> Vec<Problem> {
    let s = &entry.settings;
    let mut problems = Vec::new();
    if let Some(c) = &s.created
        && let Err(m) = created::parse_created(&c.value)
    {
        problems.push(invalid_created(file, entry, &c.span, m));
    }
    if let Err(m) = render_tag(&s.tag.value, &entry.avs, entry.operator_set, "0") {
        problems.push(template_problem(file, entry, m));
    }
    problems
}

fn template_problem(file: &SourceFile, entry: &Entry, message: String) -> Problem {
    Problem::error(
        codes::PROJECT_TAG_TEMPLATE,
        format!("{}: {message}", entry.origin.label),
    )
    .at(
        file,
        entry
            .settings
            .tag
            .span
            .clone()
            .unwrap_or(entry.origin.span.clone()),
        "tag template",
    )
    .help("the placeholders are {avs}, {opset} and {version}, e.g. tag = \"opset-{opset}-v{version}\"")
}

/// The repository an entry publishes to, as a problem pointing at the setting to fix.
pub fn repository(file: &SourceFile, dir: &Path, entry: &Entry) -> Result<Repository, Problem> {
    let repository = derive_repository(dir, entry).map_err(|(m, span)| {
        Problem::error(codes::PROJECT_REPOSITORY, format!("{}: {m}", entry.origin.label))
            .at(file, span, "not a valid repository name")
            .help("repository names are lowercase letters, digits and . _ - separators; set `repository = \"…\"` on the [[avs]] to choose another name")
    })?;
    if let Some(destination) = &entry.settings.registry {
        let field = match destination {
            Destination::Prefix(_) => "registry",
            Destination::Repository(_) => "repository",
        };
        let setting = destination.setting();
        let written = format!("{field} = \"{}\"", crate::sanitize::text(&setting.value));
        if let Some(m) = layout_link_out(dir, &repository, &written) {
            let span = setting.span.clone().unwrap_or(entry.origin.span.clone());
            return Err(Problem::error(
                codes::PROJECT_REPOSITORY,
                format!("{}: {m}", entry.origin.label),
            )
            .at(file, span, "its folder is a link out of the project")
            .help(format!("{LAYOUT_LINK_HELP} `{field}`")));
        }
    }
    Ok(repository)
}

/// What to do about a layout folder reached through a link out of the project.
const LAYOUT_LINK_HELP: &str = "replace the link with a folder (or remove it: eigenpub makes the folder), or write the folder the layout is to be in (outside the project: `oci:/srv/layouts`, shown so in every plan) in";

/// Why an `oci:` repository is refused, if it is: a symbolic link in the project on the
/// way to its folder leads out of the project ([`link_out_of_project`]).
///
/// [`link_out_of_project`]: crate::registry::layout::link_out_of_project
fn layout_link_out(dir: &Path, repository: &Repository, setting: &str) -> Option<String> {
    let Repository::Layout { root, path, .. } = repository else {
        return None;
    };
    let folder = root.join(path);
    let out = crate::registry::layout::link_out_of_project(
        &folder,
        &crate::project::git::pull_request_folders(dir),
    )?;
    let shown = |p: &Path| crate::sanitize::text(&p.display().to_string());
    Some(format!(
        "{setting}: the layout folder {} is reached through {}, a symbolic link in the project to {}, outside it; nothing is written through it (a pull request can commit such a link)",
        shown(&folder),
        shown(&out.link),
        shown(&out.target),
    ))
}

/// The repository an entry publishes to: `registry` (a prefix) + the AVS name, or the
/// AVS's own `repository` as written. An error says why, and where to point.
pub fn derive_repository(dir: &Path, entry: &Entry) -> Result<Repository, (String, Range<usize>)> {
    let s = &entry.settings;
    let Some(destination) = &s.registry else {
        return Err((
            "no registry: set `registry` in [defaults] (e.g. \"ghcr.io/acme\" or \"oci:out\")"
                .into(),
            entry.origin.span.clone(),
        ));
    };
    derive_at(dir, entry, destination)
}

/// The repository a mirror of an entry is: the mirror's prefix + the AVS name, the way
/// `registry` derives the primary's (also for an AVS whose own `repository` is set).
pub fn mirror_repository(
    file: &SourceFile,
    dir: &Path,
    entry: &Entry,
    mirror: &crate::project::settings::Setting<String>,
) -> Result<Repository, Problem> {
    let repository =
        derive_at(dir, entry, &Destination::Prefix(mirror.clone())).map_err(|(m, span)| {
            Problem::error(
                codes::PROJECT_MIRROR,
                format!("{}: mirror `{}`: {m}", entry.origin.label, mirror.value),
            )
            .at(file, span, "not a valid mirror")
            .help("a mirror is a registry prefix like \"registry.gitlab.com/acme/specs\" or an OCI layout folder like \"oci:archive\"; the AVS name is appended to it")
        })?;
    let written = format!("mirrors entry \"{}\"", crate::sanitize::text(&mirror.value));
    if let Some(m) = layout_link_out(dir, &repository, &written) {
        let span = mirror.span.clone().unwrap_or(entry.origin.span.clone());
        return Err(Problem::error(
            codes::PROJECT_MIRROR,
            format!("{}: mirror `{}`: {m}", entry.origin.label, mirror.value),
        )
        .at(file, span, "its folder is a link out of the project")
        .help(format!("{LAYOUT_LINK_HELP} `mirrors`")));
    }
    Ok(repository)
}

/// The repository `destination` gives an entry.
fn derive_at(
    dir: &Path,
    entry: &Entry,
    destination: &Destination,
) -> Result<Repository, (String, Range<usize>)> {
    let registry = destination.setting();
    let whole = matches!(destination, Destination::Repository(_));
    let span = registry.span.clone().unwrap_or(entry.origin.span.clone());
    let parsed = if whole {
        reference::parse_repository(&registry.value)
    } else {
        reference::parse_prefix(&registry.value)
    }
    .map_err(|m| (m, span.clone()))?;
    let (repository, path) = match parsed {
        RegistryPrefix::Remote { registry, path } => {
            let path = if whole {
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
            let (root, path) = if whole {
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
    let span = if !whole && reference::check_repository_path(&entry.avs).is_err() {
        entry.name_span.clone()
    } else {
        span
    };
    reference::check_repository_path(&path).map_err(|m| (m, span))?;
    Ok(repository)
}

/// An invalid `created = …` setting.
pub fn invalid_created(
    file: &SourceFile,
    entry: &Entry,
    span: &Option<Range<usize>>,
    message: String,
) -> Problem {
    Problem::error(codes::CREATED_INVALID, message)
        .at(
            file,
            span.clone().unwrap_or(entry.origin.span.clone()),
            "created",
        )
        .help("use an RFC 3339 time such as \"2025-01-01T00:00:00Z\", or \"git\"")
}

#[cfg(test)]
mod tests;
