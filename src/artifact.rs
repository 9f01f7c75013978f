//! Artifacts, pure and deterministic: resolved inputs in, the exact config, layer and
//! manifest bytes out.
//!
//! This is the one place that decides what eigenpub publishes. It encodes exactly as devkit
//! does (Go `json.Marshal` of maps for the manifest, `json.MarshalIndent(map, "", "  ")` for
//! the config: keys sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped), so that with the same
//! field values and `layer_title = false` the bytes, and therefore the digests, equal
//! devkit's. Nothing here reads a clock, the environment or a file: the same [`ArtifactInput`]
//! gives the same bytes on every machine and in every time zone.

use bytes::Bytes;
use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// `artifactType` of every EigenRuntime manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.eigenruntime.manifest.v1";
/// Media type of the config blob.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.eigenruntime.manifest.config.v1+json";
/// Media type of the single layer: the runtime spec YAML, unmodified.
pub const LAYER_MEDIA_TYPE: &str = "text/yaml";
/// Media type of the manifest itself.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Annotation naming the file a layer came from (lets `oras pull` write it).
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// Annotation holding the creation time.
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
/// Annotation holding the source repository URL.
pub const SOURCE_ANNOTATION: &str = "org.opencontainers.image.source";
/// Annotation describing the artifact.
pub const DESCRIPTION_ANNOTATION: &str = "org.opencontainers.image.description";
/// Annotation holding the EigenRuntime spec version.
pub const SPEC_VERSION_ANNOTATION: &str = "io.eigenruntime.spec.version";

/// Everything that determines an artifact's bytes, already resolved from the project file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactInput {
    /// The AVS name (`avsName`, and the description annotation).
    pub avs: String,
    /// The tag; also the config's `metadata.releaseVersion`, as devkit does.
    pub tag: String,
    /// `config.kind`.
    pub kind: String,
    /// `config.validationSchema`.
    pub schema: String,
    /// `config.metadata.devkitVersion`.
    pub devkit_version: String,
    /// RFC 3339 UTC time, seconds precision (`2025-01-01T00:00:00Z`).
    pub created: String,
    /// The `org.opencontainers.image.source` annotation; omitted when `None`.
    pub source: Option<String>,
    /// The layer's title annotation (the spec file name); `None` = devkit's exact layout.
    pub layer_title: Option<String>,
    /// The spec file's bytes, unmodified.
    pub spec: Bytes,
}

/// A content-addressed blob: its media type, its bytes and their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: &'static str,
    pub digest: String,
    pub bytes: Bytes,
}

impl Blob {
    /// Wraps bytes, computing their `sha256:` digest.
    pub fn new(media_type: &'static str, bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Blob {
            media_type,
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    pub fn size(&self) -> usize {
        self.bytes.len()
    }
}

/// The three blobs of one EigenRuntime artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub config: Blob,
    pub layer: Blob,
    pub manifest: Blob,
}

impl Artifact {
    /// Encodes an artifact. Pure: same input, same bytes.
    pub fn build(input: &ArtifactInput) -> Artifact {
        let config = Blob::new(CONFIG_MEDIA_TYPE, config_bytes(input));
        let layer = Blob::new(LAYER_MEDIA_TYPE, input.spec.clone());
        let manifest = Blob::new(MANIFEST_MEDIA_TYPE, manifest_bytes(input, &config, &layer));
        Artifact {
            config,
            layer,
            manifest,
        }
    }

    /// The manifest digest: what a tag points at and what goes on chain.
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// The blobs the manifest names, in upload order (children before the parent).
    pub fn blobs(&self) -> [&Blob; 2] {
        [&self.config, &self.layer]
    }
}

/// The config blob, as devkit's `json.MarshalIndent(map, "", "  ")` writes it.
pub fn config_bytes(input: &ArtifactInput) -> Vec<u8> {
    let config = json!({
        "formatVersion": "1.0",
        "eigenRuntimeAPIVersion": "v1",
        "kind": input.kind,
        "avsName": input.avs,
        "validationSchema": input.schema,
        "metadata": {
            "createdAt": input.created,
            "releaseVersion": input.tag,
            "devkitVersion": input.devkit_version,
        },
    });
    go_json(&config, true)
}

/// The manifest, as devkit's `json.Marshal` of maps writes it.
pub fn manifest_bytes(input: &ArtifactInput, config: &Blob, layer: &Blob) -> Vec<u8> {
    let mut annotations = BTreeMap::new();
    annotations.insert(SPEC_VERSION_ANNOTATION, input_str("v1"));
    annotations.insert(CREATED_ANNOTATION, input_str(&input.created));
    annotations.insert(
        DESCRIPTION_ANNOTATION,
        input_str(&format!("EigenRuntime specification for {}", input.avs)),
    );
    if let Some(source) = &input.source {
        annotations.insert(SOURCE_ANNOTATION, input_str(source));
    }
    let mut layer_descriptor = descriptor(layer);
    if let Some(title) = &input.layer_title {
        layer_descriptor["annotations"] = json!({ TITLE_ANNOTATION: title });
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": descriptor(config),
        "layers": [layer_descriptor],
        "annotations": annotations,
    });
    go_json(&manifest, false)
}

fn input_str(s: &str) -> Value {
    Value::String(s.to_string())
}

fn descriptor(blob: &Blob) -> Value {
    json!({ "mediaType": blob.media_type, "digest": blob.digest, "size": blob.size() })
}

/// Serializes like Go's `encoding/json`: object keys sorted (serde_json's map is a
/// `BTreeMap` without the `preserve_order` feature), HTML-sensitive characters and the
/// JavaScript line separators escaped; compact, or indented by two spaces.
pub fn go_json(value: &Value, indent: bool) -> Vec<u8> {
    let text = if indent {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .expect("a serde_json::Value always serializes");
    // These characters can only occur inside JSON strings, so replacing them in the
    // output is exactly Go's escaping.
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ArtifactInput {
        ArtifactInput {
            avs: "price-oracle".into(),
            tag: "opset-0-v2".into(),
            kind: "Hourglass".into(),
            schema: "https://eigenruntime.io/schemas/hourglass/v1/manifest.json".into(),
            devkit_version: "v0.0.9".into(),
            created: "2025-01-01T00:00:00Z".into(),
            source: Some("https://github.com/Layr-Labs/devkit-cli".into()),
            layer_title: None,
            spec: Bytes::from_static(b"apiVersion: eigenruntime.io/v1\nkind: Hourglass\nname: price-oracle\nversion: 0.3.1\nspec:\n  aggregator:\n    registry: public.ecr.aws/acme/price-oracle-aggregator\n    digest: sha256:285a54\n    env:\n"),
        }
    }

    /// The config exactly as Go's `json.MarshalIndent(map, "", "  ")` writes it: keys sorted
    /// at every level, two-space indent, `": "` separators, no trailing newline.
    const DEVKIT_CONFIG: &str = "{\n  \"avsName\": \"price-oracle\",\n  \"eigenRuntimeAPIVersion\": \"v1\",\n  \"formatVersion\": \"1.0\",\n  \"kind\": \"Hourglass\",\n  \"metadata\": {\n    \"createdAt\": \"2025-01-01T00:00:00Z\",\n    \"devkitVersion\": \"v0.0.9\",\n    \"releaseVersion\": \"opset-0-v2\"\n  },\n  \"validationSchema\": \"https://eigenruntime.io/schemas/hourglass/v1/manifest.json\"\n}";

    #[test]
    fn config_matches_devkit_marshal_indent() {
        assert_eq!(
            String::from_utf8(config_bytes(&input())).unwrap(),
            DEVKIT_CONFIG
        );
    }

    #[test]
    fn manifest_matches_devkit_marshal_of_maps() {
        let input = input();
        let artifact = Artifact::build(&input);
        let expected = format!(
            "{{\"annotations\":{{\"io.eigenruntime.spec.version\":\"v1\",\"org.opencontainers.image.created\":\"2025-01-01T00:00:00Z\",\"org.opencontainers.image.description\":\"EigenRuntime specification for price-oracle\",\"org.opencontainers.image.source\":\"https://github.com/Layr-Labs/devkit-cli\"}},\"artifactType\":\"application/vnd.eigenruntime.manifest.v1\",\"config\":{{\"digest\":\"{}\",\"mediaType\":\"application/vnd.eigenruntime.manifest.config.v1+json\",\"size\":{}}},\"layers\":[{{\"digest\":\"{}\",\"mediaType\":\"text/yaml\",\"size\":{}}}],\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"schemaVersion\":2}}",
            sha256_digest(DEVKIT_CONFIG.as_bytes()),
            DEVKIT_CONFIG.len(),
            sha256_digest(&input.spec),
            input.spec.len()
        );
        assert_eq!(
            String::from_utf8(artifact.manifest.bytes.to_vec()).unwrap(),
            expected
        );
    }

    /// Golden digests, computed independently (Python `json.dumps(sort_keys=True)` with Go's
    /// separators) from the same fields. Any change to the encoding changes these and must be deliberate,
    /// because every published digest (and every on-chain reference) would change with it.
    #[test]
    fn golden_digests_are_pinned() {
        let artifact = Artifact::build(&input());
        assert_eq!(
            artifact.config.digest,
            "sha256:b7bafae3ff45ece26d75cb14d1038ae6165755f9122acd83a9fee1e840912ade"
        );
        assert_eq!(
            artifact.manifest.digest,
            "sha256:8754040ac1bec8411dbd4edc9367b8ea00ca323f9daf2da96d438d3c413af7a5"
        );
        let mut titled = input();
        titled.layer_title = Some("aggregator.yaml".into());
        assert_eq!(
            Artifact::build(&titled).manifest.digest,
            "sha256:f1127a5bf2c2e38e96e63dd85fd1e8eb8d7cfdb2e532082299da95955c01ece0"
        );
    }

    #[test]
    fn layer_is_the_spec_bytes_unmodified() {
        let mut input = input();
        input.spec = Bytes::from_static(b"\xef\xbb\xbfname: x\r\nversion: 1\r\n");
        let artifact = Artifact::build(&input);
        assert_eq!(&*artifact.layer.bytes, &*input.spec);
        assert_eq!(artifact.layer.media_type, LAYER_MEDIA_TYPE);
    }

    #[test]
    fn title_annotation_only_when_asked() {
        let mut input = input();
        let plain = String::from_utf8(Artifact::build(&input).manifest.bytes.to_vec()).unwrap();
        assert!(!plain.contains(TITLE_ANNOTATION));
        input.layer_title = Some("aggregator.yaml".into());
        let titled = String::from_utf8(Artifact::build(&input).manifest.bytes.to_vec()).unwrap();
        assert!(titled.contains(
            "\"layers\":[{\"annotations\":{\"org.opencontainers.image.title\":\"aggregator.yaml\"},\"digest\""
        ));
    }

    #[test]
    fn source_annotation_omitted_when_unset() {
        let mut input = input();
        input.source = None;
        let text = String::from_utf8(Artifact::build(&input).manifest.bytes.to_vec()).unwrap();
        assert!(!text.contains(SOURCE_ANNOTATION));
    }

    #[test]
    fn html_characters_escaped_like_go() {
        let mut input = input();
        input.source = Some("https://x/?a=1&b=<2>".into());
        let text = String::from_utf8(Artifact::build(&input).manifest.bytes.to_vec()).unwrap();
        assert!(text.contains("https://x/?a=1\\u0026b=\\u003c2\\u003e"));
    }
}
