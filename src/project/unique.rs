//! One artifact per operator set.
//!
//! The release record (what the on-chain step reads) holds one digest per AVS and operator
//! set, so a project that names an operator set twice would silently lose one of them. Here
//! every operator set has exactly one spelling (`0`, `1`, … : not `00`, `+0` or `1.0`), an
//! AVS name is listed once, and two entries (from `[[avs]]` or `[[discover]]`) for the same
//! AVS and operator set are an error naming both places. Two publications on one
//! `repository:tag` are caught after the repositories are resolved (`check_duplicates`),
//! however the registry is spelled (`localhost:5000` and `127.0.0.1:5000`, `ghcr.io` and
//! `GHCR.io:443` are one registry: [`RegistryId`]).

use std::collections::{BTreeMap, HashMap};

use super::Publication;
use super::entries::Entry;
use crate::diagnostic::codes;
use crate::diagnostic::{Problem, Problems, SourceFile};
use crate::project::file::{ProjectFile, RegistrySettings};
use crate::reference::{RegistryId, Repository};

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

/// Where a publication lands, as one string whatever the registry's spelling.
fn landing(p: &Publication, registries: &BTreeMap<String, RegistrySettings>) -> String {
    format!("{}:{}", place(&p.repository, registries), p.tag)
}

/// A repository as one string whatever its registry's spelling (`localhost:5000/a` and
/// `127.0.0.1:5000/a` are one place).
pub fn place(repository: &Repository, registries: &BTreeMap<String, RegistrySettings>) -> String {
    match repository {
        Repository::Remote { registry, path } => {
            let plain = RegistrySettings::for_host(registries, registry).plain_http_for(registry);
            match RegistryId::of(registry, plain) {
                // Docker Hub's one-component names are its `library/` namespace.
                Some(id) if crate::reference::is_docker_hub(registry) && !path.contains('/') => {
                    format!("{id}/library/{path}")
                }
                Some(id) => format!("{id}/{path}"),
                None => repository.to_string(),
            }
        }
        Repository::Layout { root, path, .. } => {
            // `oci:x` and `oci:x/` (or `oci:./x`) are one folder.
            let root: std::path::PathBuf = root.components().collect();
            format!("oci:{}/{path}", root.display())
        }
    }
}

/// Two publications on one `repository:tag` (in any spelling of its registry) is an error
/// naming both.
pub(super) fn check_duplicates<'p>(
    file: &SourceFile,
    publications: impl IntoIterator<Item = &'p Publication>,
    registries: &BTreeMap<String, RegistrySettings>,
    problems: &mut Problems,
) {
    let mut seen: HashMap<String, &Publication> = HashMap::new();
    for p in publications {
        let key = landing(p, registries);
        let Some(first) = seen.get(&key) else {
            seen.insert(key, p);
            continue;
        };
        let (a, b) = (&first.origin, &p.origin);
        let (one, two) = (first.reference(), p.reference());
        let place = if one == two {
            one
        } else {
            format!("{one} and {two} (one registry, spelled two ways)")
        };
        let mut problem = Problem::error(
            codes::PROJECT_DUPLICATE,
            format!(
                "two artifacts on {place}: {} ({}) and {} ({})",
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
