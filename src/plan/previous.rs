//! What a tag held before: the previous artifact's spec, config and annotations, fetched
//! only to show a reviewer what an update changes (`plan --format markdown`), through the
//! digest-keyed [`Cache`]; only when the tag holds an EigenRuntime artifact (its config's
//! media type says so): of anything else, only that media type is shown.

use std::collections::BTreeMap;

use oci_client::manifest::OciImageManifest;
use serde_json::Value;

use std::collections::HashMap;

use futures::StreamExt;

use crate::artifact::{Artifact, CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE};
use crate::plan::cache::Cache;
use crate::plan::{Action, Plan};
use crate::registry::{Target, TargetError, Targets};

/// The readable contents of an artifact: its spec text and its fields, flattened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    /// The first `text/yaml` layer as text (`None` when absent or not UTF-8).
    pub spec: Option<String>,
    /// `config.<path>` and `annotation.<key>` → value.
    pub fields: BTreeMap<String, String>,
}

impl Contents {
    /// The contents of an artifact eigenpub built.
    pub fn of(artifact: &Artifact) -> Contents {
        let mut fields = BTreeMap::new();
        if let Ok(config) = serde_json::from_slice::<Value>(&artifact.config.bytes) {
            flatten("config", &config, &mut fields);
        }
        if let Ok(manifest) = serde_json::from_slice::<OciImageManifest>(&artifact.manifest.bytes) {
            for (k, v) in manifest.annotations.unwrap_or_default() {
                fields.insert(format!("annotation.{k}"), v);
            }
        }
        Contents {
            spec: String::from_utf8(artifact.layer.bytes.to_vec()).ok(),
            fields,
        }
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// Fetches the contents of the artifact at `digest` in a target: manifest, config, spec.
pub async fn fetch(
    target: &Target,
    cache: &Cache,
    digest: &str,
) -> Result<Option<Contents>, TargetError> {
    let Some(bytes) = cache.manifest(target, digest).await? else {
        return Ok(None);
    };
    let Ok(manifest) = serde_json::from_slice::<OciImageManifest>(&bytes) else {
        return Ok(Some(Contents::default()));
    };
    let mut fields = BTreeMap::new();
    // Only an EigenRuntime artifact's config, annotations and spec are shown. A pull
    // request chooses the repository and tag a plan reads, with the job's credentials:
    // whatever else a tag holds (a container image, whose config keeps its environment)
    // is named by its config's media type, and nothing of it is read further.
    if manifest.config.media_type != CONFIG_MEDIA_TYPE {
        fields.insert(
            "manifest.config.mediaType".to_string(),
            format!(
                "{} (not an EigenRuntime artifact: its contents are not shown)",
                manifest.config.media_type
            ),
        );
        return Ok(Some(Contents { spec: None, fields }));
    }
    if let Some(config) = cache.blob(target, &manifest.config.digest).await?
        && let Ok(value) = serde_json::from_slice::<Value>(&config)
    {
        flatten("config", &value, &mut fields);
    }
    for (k, v) in manifest.annotations.clone().unwrap_or_default() {
        fields.insert(format!("annotation.{k}"), v);
    }
    let mut spec = None;
    if let Some(layer) = manifest
        .layers
        .iter()
        .find(|l| l.media_type == LAYER_MEDIA_TYPE)
    {
        // A spec a comment cannot show is not read, nor held until the comment is made
        // (a registry a pull request names could serve one per artifact).
        let too_large = |size: &dyn std::fmt::Display| {
            format!("(the spec this tag holds is {size} bytes: too large to show here)\n")
        };
        if u64::try_from(layer.size).map_or(true, |size| size > SPEC_SHOWN as u64) {
            spec = Some(too_large(&layer.size));
        } else if let Some(blob) = cache.blob(target, &layer.digest).await? {
            spec = if blob.len() > SPEC_SHOWN {
                Some(too_large(&blob.len()))
            } else {
                String::from_utf8(blob.to_vec()).ok()
            };
        }
    }
    Ok(Some(Contents { spec, fields }))
}

/// The largest spec a tag holds that the review reads: a comment holds at most
/// [`crate::report::markdown::LIMIT`] characters.
const SPEC_SHOWN: usize = crate::report::markdown::LIMIT;

/// What the review shows of each change: (before, after), keyed by the change's index.
pub type Review = HashMap<usize, (Contents, Contents)>;

/// For each update (and retag or refusal of a tag that held something), what the tag holds
/// now and what would be pushed, keyed by the change's index in the plan: up to three reads
/// per such change (none for what `cache` holds), only for the Markdown plan. A change whose
/// previous contents cannot be read is left out of the review (its row stays), with the
/// error returned beside it: one repository failing does not take the comment down.
pub async fn for_review(
    targets: &Targets,
    cache: &Cache,
    plan: &Plan,
    concurrency: usize,
) -> (Review, Vec<(usize, TargetError)>) {
    let wanted = plan
        .changes
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match &c.action {
            Action::Update { from }
            | Action::Refused { from }
            | Action::Retag { from: Some(from) } => Some((i, c, from.clone())),
            _ => None,
        });
    let results: Vec<_> = crate::registry::at_once::at_once(
        wanted.map(|(i, c, from)| async move {
            let target = targets.target(&c.publication.repository);
            let before = fetch(&target, cache, from.as_str()).await;
            (
                i,
                before.map(|b| (b.unwrap_or_default(), Contents::of(&c.publication.artifact))),
            )
        }),
        concurrency,
    )
    .collect()
    .await;
    let mut review = Review::new();
    let mut errors = Vec::new();
    for (i, r) in results {
        match r {
            Ok(contents) => {
                review.insert(i, contents);
            }
            Err(e) => errors.push((i, e)),
        }
    }
    errors.sort_by_key(|(i, _)| *i);
    (review, errors)
}
