//! The settings in force for one entry: `[defaults]` layered under the overrides of one
//! `[[avs]]` or `[[discover]]` table, each value with the span it was written at (so a
//! problem can point at the setting to fix). Pure data; what the settings resolve to (tags,
//! repositories) is [`super::resolve`].

use std::ops::Range;

use toml::Spanned;

use crate::project::file::{
    AvsEntry, DEFAULT_DEVKIT_VERSION, DEFAULT_KIND, DEFAULT_SCHEMA, DEFAULT_TAG, Defaults,
    DiscoverEntry,
};

/// A setting's value and where it was written (for error labels).
#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub span: Option<Range<usize>>,
}

impl<T> Setting<T> {
    fn default(value: T) -> Self {
        Setting { value, span: None }
    }
}

fn pick(over: &Option<Spanned<String>>, base: &Option<Spanned<String>>) -> Option<Setting<String>> {
    over.as_ref().or(base.as_ref()).map(|s| Setting {
        value: s.get_ref().clone(),
        span: Some(s.span()),
    })
}

/// The mirrors in force: the entry's own list when it has one (`[]` turns them off), else
/// `[defaults]`'s. The span of the whole list is kept for problems about the list.
fn pick_mirrors(
    over: &Option<Spanned<Vec<Spanned<String>>>>,
    base: &Option<Spanned<Vec<Spanned<String>>>>,
) -> Vec<Setting<String>> {
    over.as_ref()
        .or(base.as_ref())
        .map(|list| {
            list.get_ref()
                .iter()
                .map(|m| Setting {
                    value: m.get_ref().clone(),
                    span: Some(m.span()),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pick_or(
    over: &Option<Spanned<String>>,
    base: &Option<Spanned<String>>,
    default: &str,
) -> Setting<String> {
    pick(over, base).unwrap_or_else(|| Setting::default(default.to_string()))
}

/// Where an entry's artifacts go, as written.
#[derive(Debug, Clone)]
pub enum Destination {
    /// `registry = …`: a prefix the AVS name is appended to.
    Prefix(Setting<String>),
    /// An AVS's own `repository = …`: the whole repository.
    Repository(Setting<String>),
}

impl Destination {
    /// The setting as written, wherever it came from.
    pub fn setting(&self) -> &Setting<String> {
        match self {
            Destination::Prefix(s) | Destination::Repository(s) => s,
        }
    }
}

/// The settings in force for one AVS or one `[[discover]]` block, defaults applied.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `registry` (a prefix) or, for an AVS with `repository`, the full repository.
    pub registry: Option<Destination>,
    /// `mirrors`: prefixes that get a copy of every artifact (`<mirror>/<avs name>`).
    pub mirrors: Vec<Setting<String>>,
    pub source: Option<Setting<String>>,
    pub kind: Setting<String>,
    pub schema: Setting<String>,
    pub devkit_version: Setting<String>,
    pub created: Option<Setting<String>>,
    pub tag: Setting<String>,
    pub layer_title: bool,
    /// `adopt-equivalent` (`[defaults]` only; default true).
    pub adopt_equivalent: bool,
}

impl Settings {
    pub fn for_avs(defaults: &Defaults, avs: &AvsEntry) -> Settings {
        let registry = match &avs.repository {
            Some(r) => Some(Destination::Repository(Setting {
                value: r.get_ref().clone(),
                span: Some(r.span()),
            })),
            None => pick(&None, &defaults.registry).map(Destination::Prefix),
        };
        Settings {
            registry,
            mirrors: pick_mirrors(&avs.mirrors, &defaults.mirrors),
            source: pick(&avs.source, &defaults.source),
            kind: pick_or(&avs.kind, &defaults.kind, DEFAULT_KIND),
            schema: pick_or(&avs.schema, &defaults.schema, DEFAULT_SCHEMA),
            devkit_version: pick_or(
                &avs.devkit_version,
                &defaults.devkit_version,
                DEFAULT_DEVKIT_VERSION,
            ),
            created: pick(&avs.created, &defaults.created),
            tag: pick_or(&avs.tag, &defaults.tag, DEFAULT_TAG),
            layer_title: avs.layer_title.or(defaults.layer_title).unwrap_or(true),
            adopt_equivalent: defaults.adopt_equivalent.unwrap_or(true),
        }
    }

    pub fn for_discover(defaults: &Defaults, d: &DiscoverEntry) -> Settings {
        Settings {
            registry: pick(&d.registry, &defaults.registry).map(Destination::Prefix),
            mirrors: pick_mirrors(&d.mirrors, &defaults.mirrors),
            source: pick(&d.source, &defaults.source),
            kind: pick_or(&d.kind, &defaults.kind, DEFAULT_KIND),
            schema: pick_or(&d.schema, &defaults.schema, DEFAULT_SCHEMA),
            devkit_version: pick_or(
                &d.devkit_version,
                &defaults.devkit_version,
                DEFAULT_DEVKIT_VERSION,
            ),
            created: pick(&d.created, &defaults.created),
            tag: pick_or(&d.tag, &defaults.tag, DEFAULT_TAG),
            layer_title: d.layer_title.or(defaults.layer_title).unwrap_or(true),
            adopt_equivalent: defaults.adopt_equivalent.unwrap_or(true),
        }
    }
}
