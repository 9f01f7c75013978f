//! `eigenruntime.toml`, format 1: the model users write, parsed with the places of every
//! value kept, so that a later error (a bad tag, a duplicate, a missing file) can point at
//! the line that caused it.
//!
//! Parsing is pure (text in, [`ProjectFile`] or problems out). What the values mean for
//! each entry (defaults under overrides, tag templates, repositories) is decided in
//! `project::resolve`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::codes;
use crate::diagnostic::{Problem, SourceFile};

/// The default `config.kind`.
pub const DEFAULT_KIND: &str = "Hourglass";
/// The default `config.validationSchema`.
pub const DEFAULT_SCHEMA: &str = "https://eigenruntime.io/schemas/hourglass/v1/manifest.json";
/// The default tag template.
pub const DEFAULT_TAG: &str = "opset-{opset}-v{version}";
/// The default `config.metadata.devkitVersion`. Deliberately not the running binary's
/// version: upgrading eigenpub must change no digest.
pub const DEFAULT_DEVKIT_VERSION: &str = "eigenpub";
/// The default number of artifacts worked on at once.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// The whole project file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProjectFile {
    /// Format of the file; only 1 exists.
    pub format: Option<Spanned<i64>>,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub registries: BTreeMap<String, RegistrySettings>,
    #[serde(default)]
    pub schemas: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub avs: Vec<Spanned<AvsEntry>>,
    #[serde(default)]
    pub discover: Vec<Spanned<DiscoverEntry>>,
}

/// `[defaults]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Defaults {
    pub registry: Option<Spanned<String>>,
    /// Registry prefixes (or `oci:` folders) that hold a copy of every artifact, with the
    /// digest the primary (`registry`) holds.
    pub mirrors: Option<Spanned<Vec<Spanned<String>>>>,
    pub source: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    pub schema: Option<Spanned<String>>,
    pub devkit_version: Option<Spanned<String>>,
    pub created: Option<Spanned<String>>,
    pub tag: Option<Spanned<String>>,
    pub layer_title: Option<bool>,
    /// Keep a published tag that holds equivalent content (see `plan::equivalence`).
    pub adopt_equivalent: Option<bool>,
    #[serde(default)]
    pub mutable_tags: Vec<Spanned<String>>,
    pub concurrency: Option<Spanned<usize>>,
}

/// `[registries."host[:port]"]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistrySettings {
    /// Talk plain HTTP instead of HTTPS. Loopback hosts default to true.
    pub plain_http: Option<bool>,
    /// A PEM file of extra CA certificates to trust for this registry.
    pub ca_file: Option<Spanned<String>>,
    /// At most this many requests in flight to this registry.
    pub max_concurrency: Option<usize>,
    /// At most this many requests per second to this registry.
    pub requests_per_second: Option<f64>,
    /// Seconds one request may take in all (connect, first byte, whole body).
    pub timeout: Option<f64>,
}

impl RegistrySettings {
    /// The settings for a registry host, however the key and the host spell the registry
    /// (`[registries."GHCR.io:443"]` applies to `ghcr.io`; `localhost:5000` to
    /// `127.0.0.1:5000`): a key applies when both are one registry under the key's own
    /// `plain-http`. An exact key wins; none found is the defaults.
    pub fn for_host(
        registries: &BTreeMap<String, RegistrySettings>,
        host: &str,
    ) -> RegistrySettings {
        use crate::reference::{RegistryId, plain_http_by_default};
        if let Some(exact) = registries.get(host) {
            return exact.clone();
        }
        registries
            .iter()
            .find(|(key, settings)| {
                let plain = settings
                    .plain_http
                    .unwrap_or_else(|| plain_http_by_default(key));
                RegistryId::of(key, plain).is_some_and(|k| RegistryId::of(host, plain) == Some(k))
            })
            .map(|(_, settings)| settings.clone())
            .unwrap_or_default()
    }

    /// Whether `host` is spoken to over plain HTTP with these settings.
    pub fn plain_http_for(&self, host: &str) -> bool {
        self.plain_http
            .unwrap_or_else(|| crate::reference::plain_http_by_default(host))
    }
}

/// A `version = …` value: an integer or a string.
#[derive(Debug, Clone)]
pub enum VersionValue {
    Int(i64),
    Str(String),
}

/// The start of every error a bad `version = …` value gives.
const VERSION_EXPECTED: &str =
    "`version` must be an integer (version = 3) or a string (version = \"1.4.0\")";

impl<'de> Deserialize<'de> for VersionValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'v> serde::de::Visitor<'v> for Visitor {
            type Value = VersionValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<VersionValue, E> {
                Ok(VersionValue::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<VersionValue, E> {
                i64::try_from(v).map(VersionValue::Int).map_err(|_| {
                    E::custom(format!("version {v} is too large; write it as a string"))
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<VersionValue, E> {
                Ok(VersionValue::Str(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<VersionValue, E> {
                Err(E::custom(format!(
                    "{VERSION_EXPECTED}; {v} is a number with a fraction, which TOML cannot keep exactly: write version = \"{v}\""
                )))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<VersionValue, E> {
                Err(E::custom(format!("{VERSION_EXPECTED}, not {v}")))
            }
            fn visit_map<A: serde::de::MapAccess<'v>>(
                self,
                _: A,
            ) -> Result<VersionValue, A::Error> {
                Err(serde::de::Error::custom(format!(
                    "{VERSION_EXPECTED}, not a table"
                )))
            }
            fn visit_seq<A: serde::de::SeqAccess<'v>>(
                self,
                _: A,
            ) -> Result<VersionValue, A::Error> {
                Err(serde::de::Error::custom(format!(
                    "{VERSION_EXPECTED}, not an array"
                )))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl VersionValue {
    pub fn as_string(&self) -> String {
        match self {
            VersionValue::Int(i) => i.to_string(),
            VersionValue::Str(s) => s.clone(),
        }
    }
}

/// One `[[avs]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AvsEntry {
    pub name: Spanned<String>,
    pub version: Option<Spanned<VersionValue>>,
    pub repository: Option<Spanned<String>>,
    /// This AVS's mirrors, instead of `[defaults]`'s (`[]`: none).
    pub mirrors: Option<Spanned<Vec<Spanned<String>>>>,
    pub source: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    pub schema: Option<Spanned<String>>,
    pub devkit_version: Option<Spanned<String>>,
    pub created: Option<Spanned<String>>,
    pub tag: Option<Spanned<String>>,
    pub layer_title: Option<bool>,
    #[serde(default)]
    pub operator_sets: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// One `[[discover]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DiscoverEntry {
    pub specs: Spanned<String>,
    pub registry: Option<Spanned<String>>,
    /// The mirrors of what this pattern finds, instead of `[defaults]`'s.
    pub mirrors: Option<Spanned<Vec<Spanned<String>>>>,
    pub source: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    pub schema: Option<Spanned<String>>,
    pub devkit_version: Option<Spanned<String>>,
    pub created: Option<Spanned<String>>,
    pub tag: Option<Spanned<String>>,
    pub layer_title: Option<bool>,
}

/// Every key the file accepts, for "did you mean" suggestions.
const KNOWN_KEYS: &[&str] = &[
    "format",
    "defaults",
    "registries",
    "schemas",
    "avs",
    "discover",
    "registry",
    "mirrors",
    "source",
    "kind",
    "schema",
    "devkit-version",
    "created",
    "tag",
    "layer-title",
    "adopt-equivalent",
    "mutable-tags",
    "concurrency",
    "plain-http",
    "ca-file",
    "max-concurrency",
    "requests-per-second",
    "timeout",
    "name",
    "version",
    "repository",
    "operator-sets",
    "specs",
];

/// Parses the project file's text.
pub fn parse(file: &SourceFile) -> Result<ProjectFile, Problem> {
    let parsed: ProjectFile = toml::from_str(&file.text).map_err(|e| toml_problem(file, &e))?;
    if let Some(format) = &parsed.format
        && *format.get_ref() != 1
    {
        return Err(Problem::error(
            codes::PROJECT_FORMAT,
            format!(
                "project file format {} is not supported; this eigenpub reads format 1",
                format.get_ref()
            ),
        )
        .at(file, format.span(), "unsupported format")
        .help("write `format = 1`, or upgrade eigenpub"));
    }
    Ok(parsed)
}

fn toml_problem(file: &SourceFile, error: &toml::de::Error) -> Problem {
    let message = readable_types(error.message().trim());
    let span = error.span().unwrap_or(0..0);
    let (code, label, help) = if let Some(key) = unknown_field(&message) {
        let help = match did_you_mean(&key, KNOWN_KEYS) {
            Some(best) => format!(
                "did you mean `{best}`? Every setting is documented in eigenruntime.toml.example"
            ),
            None => "remove it; every setting is documented in eigenruntime.toml.example".into(),
        };
        (codes::PROJECT_UNKNOWN_KEY, "unknown key".to_string(), help)
    } else if let Some(key) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        (
            codes::PROJECT_MISSING_KEY,
            format!("`{key}` is missing in this table"),
            format!("add `{key} = …`; eigenruntime.toml.example shows every setting"),
        )
    } else if message.starts_with(VERSION_EXPECTED) {
        (
            codes::PROJECT_VERSION,
            "not an integer or a string".to_string(),
            "quote versions that are not whole numbers: version = \"3.5\"".to_string(),
        )
    } else if message.contains("invalid type") || message.contains("invalid value") {
        (
            codes::PROJECT_TYPE,
            "wrong type".to_string(),
            "check the value's type against eigenruntime.toml.example".to_string(),
        )
    } else {
        (
            codes::PROJECT_TOML,
            first_line(&message),
            "fix the TOML syntax at the marked place".to_string(),
        )
    };
    let (line, _) = file.line_col(span.start);
    Problem::error(code, format!("{} (line {line}): {message}", file.name))
        .at(file, span, label)
        .help(help)
}

/// serde's Rust type names, in words.
fn readable_types(message: &str) -> String {
    message
        .replace("expected usize", "expected a whole number")
        .replace("expected i64", "expected an integer")
        .replace("expected f64", "expected a number")
        .replace("expected a boolean", "expected true or false")
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// The closest known word within a small edit distance.
pub fn did_you_mean<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod agreement;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::settings::Settings;

    fn file(text: &str) -> SourceFile {
        SourceFile::new("eigenruntime.toml", text)
    }

    #[test]
    fn parses_the_documented_example() {
        let text = r#"
[defaults]
registry = "ghcr.io/acme"
source = "https://github.com/acme/avs-monorepo"
kind = "Hourglass"
schema = "https://eigenruntime.io/schemas/hourglass/v1/manifest.json"
devkit-version = "v0.0.9"
created = "2025-01-01T00:00:00Z"
tag = "opset-{opset}-v{version}"
layer-title = true
mutable-tags = []
concurrency = 8

[registries."localhost:5000"]
plain-http = true

[[avs]]
name = "price-oracle"
version = 3
[avs.operator-sets]
0 = "avs/price-oracle/aggregator.yaml"
1 = "avs/price-oracle/executor.yaml"

[[discover]]
specs = "fleet/{avs}/opset-{opset}.yaml"
"#;
        let p = parse(&file(text)).unwrap();
        assert_eq!(p.avs.len(), 1);
        assert_eq!(p.avs[0].get_ref().operator_sets.len(), 2);
        assert_eq!(p.discover.len(), 1);
        assert_eq!(p.registries["localhost:5000"].plain_http, Some(true));
        let s = Settings::for_avs(&p.defaults, p.avs[0].get_ref());
        assert_eq!(s.registry.unwrap().setting().value, "ghcr.io/acme");
        assert_eq!(s.devkit_version.value, "v0.0.9");
    }

    #[test]
    fn unknown_key_is_an_error_with_line_and_suggestion() {
        let f = file("[defaults]\nregistry = \"x\"\nregsitry = \"y\"\n");
        let problem = parse(&f).unwrap_err();
        assert_eq!(problem.code, "eigenpub::project::unknown-key");
        assert!(problem.message.contains("line 3"), "{}", problem.message);
        assert!(problem.help.unwrap().contains("`registry`"));
    }

    #[test]
    fn syntax_error_names_the_line() {
        let f = file("[defaults]\nregistry = \n");
        let problem = parse(&f).unwrap_err();
        assert!(problem.message.contains("line 2"), "{}", problem.message);
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("regsitry", KNOWN_KEYS), Some("registry"));
        assert_eq!(
            did_you_mean("mutable-tag", KNOWN_KEYS),
            Some("mutable-tags")
        );
        assert_eq!(did_you_mean("zzzzzzzz", KNOWN_KEYS), None);
    }
}
