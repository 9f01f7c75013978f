//! Content equivalence: when a tag holds another digest than eigenpub would push, is what it
//! holds the same artifact for everyone who reads it?
//!
//! Teams adopting eigenpub already have tags pushed by devkit: the same spec bytes, but a
//! wall-clock `created`, another `devkitVersion`, devkit's own annotations and no layer
//! title, so every digest differs. Re-publishing them would change the digests already
//! referenced on chain, and refusing them would block adoption. [`compare`] is the one rule
//! that decides: a published artifact is *equivalent* to the wanted one when everything a
//! consumer uses is equal —
//!
//! - the manifest's `mediaType` and `artifactType`, and the config's media type;
//! - exactly one layer, of media type `text/yaml`, with the same digest (the spec's bytes);
//! - the config's identity: `formatVersion`, `eigenRuntimeAPIVersion`, `kind`, `avsName`,
//!   `validationSchema` and `metadata.releaseVersion`.
//!
//! Everything else is metadata and is ignored: timestamps (`createdAt`, the `created`
//! annotation), tool versions (`devkitVersion`), descriptive annotations (`source`,
//! `description`, the spec version annotation) and the layer's title. The published bytes
//! are checked against the digests that name them first, so a registry cannot make a tag
//! look equivalent by answering with other bytes.
//!
//! Pure: bytes in, a verdict out. The plan calls it only for tags whose digest differs from
//! the wanted one (`plan::observe_each`), after reading that manifest and its config.

use serde_json::Value;

use crate::artifact::{Artifact, LAYER_MEDIA_TYPE, sha256_digest};

/// The config fields that identify an artifact (paths into the config JSON).
pub const IDENTITY: [&[&str]; 6] = [
    &["formatVersion"],
    &["eigenRuntimeAPIVersion"],
    &["kind"],
    &["avsName"],
    &["validationSchema"],
    &["metadata", "releaseVersion"],
];

/// Who published an equivalent artifact, and when, as its metadata says (for display only;
/// both fields are reduced to safe characters, since they come from the registry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// The publication date (`YYYY-MM-DD`), from the `created` annotation or `createdAt`.
    pub date: Option<String>,
    /// The tool, e.g. `devkit v0.0.9` (from `metadata.devkitVersion`).
    pub tool: Option<String>,
}

#[cfg(test)]
impl Provenance {
    /// A provenance for tests, e.g. `published 2025-06-01 by devkit v0.0.9`.
    pub fn for_tests(text: &str) -> Provenance {
        let rest = text.strip_prefix("published ").unwrap_or(text);
        let (date, tool) = match rest.split_once(" by ") {
            Some((d, t)) => (Some(d.to_string()), Some(t.to_string())),
            None => (Some(rest.to_string()), None),
        };
        Provenance { date, tool }
    }
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("published")?;
        if let Some(date) = &self.date {
            write!(f, " {date}")?;
        }
        if let Some(tool) = &self.tool {
            write!(f, " by {tool}")?;
        }
        Ok(())
    }
}

/// Why a published artifact is not equivalent: the first difference found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference(pub String);

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `sha256:` digest of a manifest's config, when that config is of EigenRuntime's
/// media type (what [`compare`] requires first): checked before the config is read, so
/// that nothing of another kind of manifest (a container image's config) is read.
pub fn our_config_digest(manifest: &[u8]) -> Option<String> {
    let manifest = serde_json::from_slice::<Value>(manifest).ok()?;
    let config = manifest.get("config")?;
    (config.get("mediaType")?.as_str()? == crate::artifact::CONFIG_MEDIA_TYPE)
        .then(|| config.get("digest")?.as_str().map(str::to_string))
        .flatten()
        .filter(|d| crate::reference::is_sha256(d))
}

/// Compares a published artifact (its manifest at `digest`, and its config blob) with the
/// wanted one. `Ok` with who published it when they are equivalent; else the first
/// difference.
pub fn compare(
    wanted: &Artifact,
    digest: &str,
    manifest: &[u8],
    config: &[u8],
) -> Result<Provenance, Difference> {
    let differ = |what: &str| Err(Difference(what.to_string()));
    if sha256_digest(manifest) != digest {
        return differ("the manifest's bytes do not match its digest");
    }
    let Ok(published) = serde_json::from_slice::<Value>(manifest) else {
        return differ("the manifest is not JSON");
    };
    let ours: Value =
        serde_json::from_slice(&wanted.manifest.bytes).expect("eigenpub's manifest is JSON");
    for field in ["mediaType", "artifactType"] {
        if published.get(field) != ours.get(field) {
            return differ(&format!("the manifest's `{field}` differs"));
        }
    }
    let config_descriptor = &published["config"];
    if config_descriptor.get("mediaType") != ours["config"].get("mediaType") {
        return differ("the config's media type differs");
    }
    if config_descriptor.get("digest").and_then(Value::as_str) != Some(&sha256_digest(config)) {
        return differ("the config's bytes do not match the digest the manifest names");
    }
    let layers = published
        .get("layers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let [layer] = layers else {
        return differ("the manifest does not have exactly one layer");
    };
    if layer.get("mediaType").and_then(Value::as_str) != Some(LAYER_MEDIA_TYPE) {
        return differ("the layer is not `text/yaml`");
    }
    if layer.get("digest").and_then(Value::as_str) != Some(wanted.layer.digest.as_str()) {
        return differ("the spec differs (the layer's digest)");
    }
    let Ok(published_config) = serde_json::from_slice::<Value>(config) else {
        return differ("the config is not JSON");
    };
    let our_config: Value =
        serde_json::from_slice(&wanted.config.bytes).expect("eigenpub's config is JSON");
    for path in IDENTITY {
        let at = |v: &Value| path.iter().try_fold(v.clone(), |v, k| v.get(k).cloned());
        if at(&published_config) != at(&our_config) {
            return differ(&format!("the config's `{}` differs", path.join(".")));
        }
    }
    let created = published
        .pointer("/annotations/org.opencontainers.image.created")
        .or_else(|| published_config.pointer("/metadata/createdAt"))
        .and_then(Value::as_str);
    let tool = published_config
        .pointer("/metadata/devkitVersion")
        .and_then(Value::as_str);
    Ok(Provenance {
        date: created.and_then(date),
        tool: tool.and_then(tool_name),
    })
}

/// `YYYY-MM-DD` from an RFC 3339 time, when it starts with one.
fn date(created: &str) -> Option<String> {
    let d = created.get(..10)?;
    let ok = d.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        _ => b.is_ascii_digit(),
    });
    ok.then(|| d.to_string())
}

/// `devkit v0.0.9` for a version, the name itself for another tool (`eigenpub`); `None`
/// for anything but a short run of safe characters.
fn tool_name(version: &str) -> Option<String> {
    let safe = !version.is_empty()
        && version.len() <= 64
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if !safe {
        return None;
    }
    let numbered = version
        .strip_prefix('v')
        .unwrap_or(version)
        .starts_with(|c: char| c.is_ascii_digit());
    Some(if numbered {
        format!("devkit {version}")
    } else {
        version.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{ArtifactInput, Blob, CONFIG_MEDIA_TYPE, go_json};
    use serde_json::json;

    fn input() -> ArtifactInput {
        ArtifactInput {
            avs: "price-oracle".into(),
            tag: "opset-0-v3".into(),
            kind: "Hourglass".into(),
            schema: "https://eigenruntime.io/schemas/hourglass/v1/manifest.json".into(),
            devkit_version: "eigenpub".into(),
            created: "2025-01-01T00:00:00Z".into(),
            source: Some("https://github.com/acme/avs".into()),
            layer_title: Some("aggregator.yaml".into()),
            spec: bytes::Bytes::from_static(b"name: price-oracle\nversion: 3\n"),
        }
    }

    /// The same spec as devkit publishes it: its own time, version, source, no title.
    fn devkit() -> Artifact {
        Artifact::build(&ArtifactInput {
            devkit_version: "v0.0.9".into(),
            created: "2025-06-01T12:34:56Z".into(),
            source: Some("https://github.com/acme/other".into()),
            layer_title: None,
            ..input()
        })
    }

    fn judge(published: &Artifact) -> Result<Provenance, Difference> {
        compare(
            &Artifact::build(&input()),
            published.digest(),
            &published.manifest.bytes,
            &published.config.bytes,
        )
    }

    /// An artifact with its manifest (as JSON) and config rewritten by `edit`.
    fn edited(edit_manifest: impl Fn(&mut Value), edit_config: impl Fn(&mut Value)) -> Artifact {
        let base = devkit();
        let mut config: Value = serde_json::from_slice(&base.config.bytes).unwrap();
        edit_config(&mut config);
        let config = Blob::new(CONFIG_MEDIA_TYPE, go_json(&config, true));
        let mut manifest: Value = serde_json::from_slice(&base.manifest.bytes).unwrap();
        manifest["config"]["digest"] = json!(config.digest);
        manifest["config"]["size"] = json!(config.size());
        edit_manifest(&mut manifest);
        Artifact {
            manifest: Blob::new(
                crate::artifact::MANIFEST_MEDIA_TYPE,
                go_json(&manifest, false),
            ),
            config,
            layer: base.layer,
        }
    }

    #[test]
    fn devkit_metadata_is_not_content() {
        let published = devkit();
        assert_ne!(published.digest(), Artifact::build(&input()).digest());
        let provenance = judge(&published).unwrap();
        assert_eq!(
            provenance.to_string(),
            "published 2025-06-01 by devkit v0.0.9"
        );
    }

    #[test]
    fn descriptive_annotations_and_layer_title_are_metadata() {
        let published = edited(
            |m| {
                m["annotations"]["org.opencontainers.image.description"] = json!("anything");
                m["annotations"]["com.example.extra"] = json!("x");
                m["layers"][0]["annotations"] = json!({"org.opencontainers.image.title": "a.yml"});
            },
            |c| c["metadata"]["createdAt"] = json!("2020-01-01T00:00:00Z"),
        );
        assert!(judge(&published).is_ok());
    }

    #[test]
    fn a_different_spec_is_content() {
        let published = Artifact::build(&ArtifactInput {
            spec: bytes::Bytes::from_static(b"name: price-oracle\nversion: 4\n"),
            ..input()
        });
        assert_eq!(
            judge(&published).unwrap_err().0,
            "the spec differs (the layer's digest)"
        );
    }

    #[test]
    fn every_identity_field_is_content() {
        for path in IDENTITY {
            let published = edited(
                |_| {},
                |c| {
                    let (last, parents) = path.split_last().unwrap();
                    let mut v = &mut *c;
                    for p in parents {
                        v = &mut v[*p];
                    }
                    v[*last] = json!("other");
                },
            );
            let err = judge(&published).unwrap_err();
            assert!(err.0.contains(&path.join(".")), "{path:?}: {err}");
        }
    }

    type Edit = Box<dyn Fn(&mut Value)>;

    #[test]
    fn media_types_and_layers_are_content() {
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|m| m["artifactType"] = json!("application/x")),
                "artifactType",
            ),
            (
                Box::new(|m| m["mediaType"] = json!("application/x")),
                "mediaType",
            ),
            (
                Box::new(|m| m["config"]["mediaType"] = json!("application/x")),
                "config's media type",
            ),
            (
                Box::new(|m| m["layers"][0]["mediaType"] = json!("text/plain")),
                "text/yaml",
            ),
            (
                Box::new(|m| {
                    let layer = m["layers"][0].clone();
                    m["layers"].as_array_mut().unwrap().push(layer);
                }),
                "exactly one layer",
            ),
            (Box::new(|m| m["layers"] = json!([])), "exactly one layer"),
        ];
        for (edit, expected) in cases {
            let err = judge(&edited(edit, |_| {})).unwrap_err();
            assert!(err.0.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn bytes_must_match_their_digests() {
        let published = devkit();
        let wanted = Artifact::build(&input());
        // The manifest answered for a digest is not the manifest with that digest.
        let err = compare(
            &wanted,
            "sha256:0000",
            &published.manifest.bytes,
            &published.config.bytes,
        );
        assert!(err.unwrap_err().0.contains("manifest's bytes"));
        // The config answered is not the one the manifest names.
        let err = compare(
            &wanted,
            published.digest(),
            &published.manifest.bytes,
            &wanted.config.bytes,
        );
        assert!(err.unwrap_err().0.contains("config's bytes"));
        // Not JSON at all.
        let junk = b"not json";
        let err = compare(&wanted, &sha256_digest(junk), junk, b"{}");
        assert!(err.unwrap_err().0.contains("not JSON"));
    }

    #[test]
    fn provenance_is_reduced_to_safe_text() {
        let published = edited(
            |m| m["annotations"]["org.opencontainers.image.created"] = json!("\u{1b}[31mevil"),
            |c| c["metadata"]["devkitVersion"] = json!("v1\n::error::x"),
        );
        let p = judge(&published).unwrap();
        assert_eq!(
            p,
            Provenance {
                date: None,
                tool: None
            }
        );
        assert_eq!(p.to_string(), "published");
        assert_eq!(tool_name("eigenpub").as_deref(), Some("eigenpub"));
        assert_eq!(tool_name("0.1.0").as_deref(), Some("devkit 0.1.0"));
    }
}
