//! JSON Schemas for specs and config blobs, bundled into the binary and resolved by URL,
//! offline.
//!
//! An artifact's config names the schema its spec follows (`validationSchema`). No schema
//! is published at those URLs, so eigenpub ships its own (`schemas/`, compiled in) and lets
//! a project map further URLs to local files (`[schemas]`). Nothing is ever fetched from the
//! network. A schema violation points at the YAML node that failed: the failing instance's
//! JSON pointer is mapped back to a line and column of the spec file (for a missing field,
//! the line of its parent).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use jsonschema::Validator;
use serde_json::Value;
use toml::Spanned;

use crate::artifact::Artifact;
use crate::diagnostic::codes;
use crate::diagnostic::{Problem, Problems, SourceFile};
use crate::project::settings::Setting;
use crate::project::spec::SpecDocument;
use crate::project::yaml::{Positions, escape};

/// The schemas compiled into eigenpub: `(URL, JSON text)`.
pub const BUNDLED: &[(&str, &str)] = &[
    (
        "https://eigenruntime.io/schemas/hourglass/v1/manifest.json",
        include_str!("../../schemas/hourglass-v1.json"),
    ),
    (
        "https://eigenruntime.io/schemas/template-type/v1/manifest.json",
        include_str!("../../schemas/template-type-v1.json"),
    ),
];

/// The schema of the config blob, checked before anything is pushed.
pub const CONFIG_SCHEMA: &str = include_str!("../../schemas/config-v1.json");

/// The schemas a project can use, compiled on first use.
pub struct SchemaSet {
    sources: HashMap<String, Result<Value, String>>,
    compiled: RefCell<HashMap<String, Result<std::rc::Rc<Validator>, String>>>,
    reported: RefCell<HashSet<String>>,
    config: Option<Validator>,
}

impl SchemaSet {
    /// The bundled schemas plus the project's `[schemas]` table (paths relative to `dir`).
    pub fn new(
        file: &SourceFile,
        mapped: &BTreeMap<String, Spanned<String>>,
        dir: &Path,
        problems: &mut Problems,
    ) -> SchemaSet {
        let mut sources = HashMap::new();
        for (url, text) in BUNDLED {
            sources.insert(
                url.to_string(),
                serde_json::from_str(text).map_err(|e| e.to_string()),
            );
        }
        for (url, path) in mapped {
            let full = dir.join(path.get_ref());
            // Schema files are project files: inside the project, regular, bounded.
            let loaded = super::paths::read_inside(dir, &full, super::paths::max_file_size())
                .map_err(|e| format!("cannot read {}: {e}", full.display()))
                .and_then(|b| {
                    String::from_utf8(b).map_err(|_| format!("{} is not UTF-8", full.display()))
                })
                .and_then(|t| {
                    serde_json::from_str::<Value>(&t)
                        .map_err(|e| format!("{} is not JSON: {e}", full.display()))
                });
            match loaded {
                Ok(v) => {
                    sources.insert(url.clone(), Ok(v));
                }
                Err(m) => problems.push(
                    Problem::error(codes::SCHEMA_UNREADABLE, m)
                        .at(file, path.span(), "schema file")
                        .help("map the URL to a JSON Schema file, relative to the project file"),
                ),
            }
        }
        let config = serde_json::from_str(CONFIG_SCHEMA)
            .ok()
            .and_then(|v| jsonschema::options().build(&v).ok());
        SchemaSet {
            sources,
            compiled: RefCell::new(HashMap::new()),
            reported: RefCell::new(HashSet::new()),
            config,
        }
    }

    fn validator(&self, url: &str) -> Option<Result<std::rc::Rc<Validator>, String>> {
        if let Some(v) = self.compiled.borrow().get(url) {
            return Some(v.clone());
        }
        let source = self.sources.get(url)?;
        let compiled = source.clone().and_then(|schema| {
            jsonschema::options()
                .build(&schema)
                .map(std::rc::Rc::new)
                .map_err(|e| format!("the schema for {url} is not a valid JSON Schema: {e}"))
        });
        self.compiled
            .borrow_mut()
            .insert(url.to_string(), compiled.clone());
        Some(compiled)
    }

    /// Validates a spec against the schema its artifact names; problems point into the spec.
    pub fn validate(
        &self,
        spec: &SourceFile,
        document: &SpecDocument,
        schema: &Setting<String>,
        project: &SourceFile,
        problems: &mut Problems,
    ) {
        let url = &schema.value;
        let validator = match self.validator(url) {
            Some(Ok(v)) => v,
            Some(Err(m)) => {
                if self.reported.borrow_mut().insert(url.clone()) {
                    problems.push(Problem::error(codes::SCHEMA_INVALID, m));
                }
                return;
            }
            None => {
                if self.reported.borrow_mut().insert(url.clone()) {
                    let mut p = Problem::error(
                        codes::SCHEMA_UNKNOWN,
                        format!("no schema is known for `{url}`"),
                    )
                    .help(format!(
                        "eigenpub bundles {}; map other URLs to local files in the project file:\n[schemas]\n\"{}\" = \"schemas/my-schema.json\"",
                        BUNDLED.iter().map(|(u, _)| *u).collect::<Vec<_>>().join(" and "),
                        // The help spans lines; the URL (the project's text) is kept on its own.
                        crate::sanitize::line(url)
                    ));
                    if let Some(span) = &schema.span {
                        p = p.at(project, span.clone(), "validationSchema");
                    }
                    problems.push(p);
                }
                return;
            }
        };
        let mut errors: Vec<_> = validator.iter_errors(&document.value).collect();
        if errors.is_empty() {
            advise(spec, document, problems);
            return;
        }
        let positions = Positions::of(spec);
        errors.sort_by(|a, b| a.instance_path().as_str().cmp(b.instance_path().as_str()));
        for error in errors {
            let pointer = error.instance_path().as_str().to_string();
            let (span, _) = positions.span_of(&pointer);
            let place = if pointer.is_empty() {
                "the spec".to_string()
            } else {
                format!("`{}`", dotted(&pointer))
            };
            let message = error.to_string();
            let label = if message.chars().count() > 70 {
                format!("{}…", message.chars().take(69).collect::<String>())
            } else {
                message.clone()
            };
            problems.push(
                Problem::error(
                    codes::SPEC_SCHEMA,
                    format!("{}: {place}: {message}", spec.name),
                )
                .at(spec, span, label)
                .help(format!("the spec must follow {url}")),
            );
        }
    }

    /// Checks a config blob against the config schema (before anything is pushed).
    pub fn check_config(&self, artifact: &Artifact) -> Result<(), String> {
        let Some(validator) = &self.config else {
            return Ok(());
        };
        let value: Value =
            serde_json::from_slice(&artifact.config.bytes).map_err(|e| e.to_string())?;
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{}: {e}", e.instance_path().as_str()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// Advice that is not an error: what the reference validator accepts but a careful
/// release should not carry.
fn advise(spec: &SourceFile, document: &SpecDocument, problems: &mut Problems) {
    let Some(components) = document.value.get("spec").and_then(Value::as_object) else {
        return;
    };
    let mut positions = None;
    for (name, component) in components {
        let Some(digest) = component.get("digest").and_then(Value::as_str) else {
            continue;
        };
        let good = digest.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if good {
            continue;
        }
        let positions = positions.get_or_insert_with(|| Positions::of(spec));
        let pointer = format!("/spec/{}/digest", escape(name));
        let (span, _) = positions.span_of(&pointer);
        let looks_like_tag = !digest.contains(':');
        let message = if looks_like_tag {
            format!(
                "{}: `spec.{name}.digest` is `{digest}`, which looks like a tag, not a digest",
                spec.name
            )
        } else {
            format!(
                "{}: `spec.{name}.digest` is `{digest}`, not `sha256:` and 64 lowercase hex digits",
                spec.name
            )
        };
        problems.push(
            Problem::warning(codes::SPEC_DIGEST, message)
                .at(spec, span, "not a sha256 digest")
                .help("pin the component image by digest (sha256:…) so operators run exactly what was released"),
        );
    }
}

/// `/spec/aggregator/digest` → `spec.aggregator.digest`.
fn dotted(pointer: &str) -> String {
    pointer
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: eigenruntime.io/v1\nkind: Hourglass\nname: price-oracle\nversion: 0.3.1\nspec:\n  aggregator:\n    registry: public.ecr.aws/acme/agg\n    digest: sha256:285a54285a54285a54285a54285a54285a54285a54285a54285a54285a54285a\n    env:\n    resources:\n      tee_enabled: false\n";

    fn check(text: &str) -> Problems {
        let project = SourceFile::new("eigenruntime.toml", "");
        let mut problems = Problems::new();
        let set = SchemaSet::new(&project, &BTreeMap::new(), Path::new("."), &mut problems);
        let spec = SourceFile::new("s.yaml", text);
        let doc = crate::project::spec::parse(&spec).unwrap();
        let setting = Setting {
            value: crate::project::file::DEFAULT_SCHEMA.to_string(),
            span: None,
        };
        set.validate(&spec, &doc, &setting, &project, &mut problems);
        problems
    }

    #[test]
    fn a_real_spec_is_valid() {
        assert!(check(GOOD).is_empty());
    }

    #[test]
    fn accepts_what_the_reference_validator_accepts() {
        let text = GOOD.replace("tee_enabled", "teeEnabled") + "extra: [1, 2]\n";
        assert!(!check(&text).has_errors());
    }

    #[test]
    fn missing_digest_points_at_the_component_line() {
        let text = GOOD.replace(
            "    digest: sha256:285a54285a54285a54285a54285a54285a54285a54285a54285a54285a54285a\n",
            "",
        );
        let problems = check(&text).sorted();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let (file, lc) = problems[0].position().unwrap();
        assert_eq!(file, "s.yaml");
        // The mapping lacking `digest` is labelled at the line that names it: `aggregator:`.
        assert_eq!(lc.unwrap(), (6, 3), "{:?}", problems[0]);
        assert!(
            problems[0].message.contains("digest"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let text = GOOD.replace("name: price-oracle", "name: \"\"");
        let problems = check(&text).sorted();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].position().unwrap().1.unwrap(), (3, 7));
    }

    #[test]
    fn all_problems_at_once() {
        let text = "apiVersion: x\nkind: K\nspec:\n  a:\n    env:\n      - type: plain\n";
        let problems = check(text);
        // name, version missing; component a lacks registry and digest; env entry lacks name.
        assert!(problems.error_count() >= 4, "{problems:?}");
    }

    #[test]
    fn tag_instead_of_digest_is_a_warning() {
        let text = GOOD.replace(
            "sha256:285a54285a54285a54285a54285a54285a54285a54285a54285a54285a54285a",
            "latest",
        );
        let problems = check(&text);
        assert!(!problems.has_errors());
        assert_eq!(problems.len(), 1);
        assert!(
            problems
                .iter()
                .next()
                .unwrap()
                .message
                .contains("looks like a tag")
        );
    }
}
