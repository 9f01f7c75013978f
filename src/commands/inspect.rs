//! `eigenpub inspect REF` and `eigenpub pull REF`: read a published artifact back, through
//! the same registry client as `plan` (credentials, TLS, retries, limits) or from an OCI
//! layout. REF is `repository:tag`, `repository@sha256:…` or `oci:DIR:tag`.
//!
//! Everything read is verified: a tag is resolved to a digest first and the manifest is
//! fetched by that digest and hashed; the config and the spec layer are hashed and their
//! sizes checked against the manifest. A mismatch is refused, never shown. Strings from
//! the artifact are stripped of control characters before they reach a terminal, and
//! `pull` writes the spec under its title annotation only when that is a plain file name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

use super::{Context, Exit, Failure, Outcome, connection};
use crate::artifact::{LAYER_MEDIA_TYPE, TITLE_ANNOTATION, sha256_digest};
use crate::cli::{InspectArgs, PullArgs};
use crate::diagnostic::Problem;
use crate::diagnostic::codes;
use crate::project::file::ProjectFile;
use crate::reference::{self, RegistryPrefix};
use crate::registry::layout::Layout;
use crate::registry::remote::{Access, Stats};
use crate::registry::{Target, TargetError, lookup_credential, open_registry};
use crate::report::{Format, out};

/// Largest config or spec blob read back (a spec is a small YAML file).
const MAX_BLOB: u64 = 16 << 20;

/// Where a REF points.
#[derive(Debug, PartialEq, Eq)]
enum Location {
    Remote { registry: String, path: String },
    Layout(PathBuf),
}

/// A parsed REF: where, and a tag or a digest.
#[derive(Debug, PartialEq, Eq)]
struct Ref {
    location: Location,
    tag: Option<String>,
    digest: Option<String>,
}

/// Parses REF (pure).
fn parse_ref(text: &str) -> Result<Ref, String> {
    let (rest, digest) = match text.rsplit_once('@') {
        Some((r, d)) if crate::reference::is_sha256(d) => (r, Some(d.to_string())),
        Some((_, d)) => {
            return Err(format!(
                "`{d}` is not a sha256 digest (sha256: and 64 lowercase hex digits)"
            ));
        }
        None => (text, None),
    };
    if let Some(layout) = rest.strip_prefix("oci:") {
        let (dir, tag) = match (layout.rsplit_once(':'), &digest) {
            (Some((dir, tag)), None) => (dir, Some(tag.to_string())),
            (_, Some(_)) => (layout, None),
            (None, None) => {
                return Err(format!(
                    "`{text}` names no tag: write oci:DIR:TAG or oci:DIR@sha256:…"
                ));
            }
        };
        if dir.is_empty() {
            return Err("`oci:` needs a folder, e.g. oci:out/price-oracle:opset-0-v3".into());
        }
        if let Some(tag) = &tag {
            reference::check_tag(tag)?;
        }
        return Ok(Ref {
            location: Location::Layout(PathBuf::from(dir)),
            tag,
            digest,
        });
    }
    // The tag is after the last `:` that follows the last `/` (a port comes before it).
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
        None => (rest, None),
    };
    if tag.is_none() && digest.is_none() {
        return Err(format!(
            "`{text}` names no tag or digest: write REPOSITORY:TAG or REPOSITORY@sha256:…"
        ));
    }
    if let Some(tag) = &tag {
        reference::check_tag(tag)?;
    }
    match reference::parse_repository(repository)? {
        RegistryPrefix::Remote { registry, path } => Ok(Ref {
            location: Location::Remote { registry, path },
            tag,
            digest,
        }),
        RegistryPrefix::Layout { .. } => Err(format!("`{text}` is not a reference")),
    }
}

/// What was read, all of it verified.
struct Read {
    reference: String,
    digest: String,
    manifest: Value,
    config: Option<Value>,
    /// The spec layer: its descriptor and bytes.
    spec: Option<(Value, Bytes)>,
}

fn problem(message: String) -> Problem {
    Problem::error(codes::INSPECT_INVALID, message).help(
        "the registry (or layout) served content that does not match its digest or is not an eigenpub artifact; nothing was used",
    )
}

fn target_problem(e: TargetError) -> Failure {
    e.to_problem().into()
}

async fn open(ctx: &Context, r: &Ref) -> Result<Target, Failure> {
    match &r.location {
        Location::Layout(dir) => Ok(Target::Layout(Arc::new(Layout::new(dir.clone())))),
        Location::Remote { registry, path } => {
            let settings = crate::project::paths::project_text(&ctx.config)
                .ok()
                .and_then(|text| toml::from_str::<ProjectFile>(&text).ok())
                .map(|p| crate::project::file::RegistrySettings::for_host(&p.registries, registry))
                .unwrap_or_default();
            let credential = lookup_credential(registry).await?;
            let client = open_registry(
                registry,
                &connection(&ctx.project_dir(), &settings),
                Access::Pull,
                credential,
                Arc::new(Stats::default()),
            )?;
            Ok(Target::Remote {
                registry: Arc::new(client),
                repository: path.clone(),
            })
        }
    }
}

/// Fetches a blob named by a descriptor, checking its size and digest.
async fn verified_blob(target: &Target, descriptor: &Value, what: &str) -> Result<Bytes, Failure> {
    let digest = descriptor["digest"]
        .as_str()
        .filter(|d| crate::reference::is_sha256(d))
        .ok_or_else(|| problem(format!("the manifest's {what} has no sha256 digest")))?;
    let size = descriptor["size"]
        .as_u64()
        .ok_or_else(|| problem(format!("the manifest's {what} has no size")))?;
    if size > MAX_BLOB {
        return Err(problem(format!(
            "the {what} is {size} bytes; eigenpub reads at most {MAX_BLOB}"
        ))
        .into());
    }
    let bytes = target
        .fetch_blob(digest)
        .await
        .map_err(target_problem)?
        .ok_or_else(|| problem(format!("the {what} {digest} is missing")))?;
    if bytes.len() as u64 != size || sha256_digest(&bytes) != digest {
        return Err(problem(format!(
            "the {what} served for {digest} does not match that digest ({} bytes, {})",
            bytes.len(),
            sha256_digest(&bytes)
        ))
        .into());
    }
    Ok(bytes)
}

async fn read(ctx: &Context, text: &str) -> Result<Read, Failure> {
    let r = parse_ref(text).map_err(|m| {
        Problem::error(codes::INSPECT_REFERENCE, m)
            .help("e.g. ghcr.io/acme/price-oracle:opset-0-v3, ghcr.io/acme/price-oracle@sha256:…, or oci:out/price-oracle:opset-0-v3")
    })?;
    let target = open(ctx, &r).await?;
    let digest = match (&r.digest, &r.tag) {
        (Some(d), _) => d.clone(),
        (None, Some(tag)) => target.manifest_digest(tag).await.map_err(target_problem)?.ok_or_else(|| {
            Problem::error(codes::INSPECT_NOT_FOUND, format!("{text}: no such tag"))
                .help("check the repository and tag (`eigenpub plan -v` lists what the project publishes)")
        })?.into(),
        (None, None) => unreachable!("parse_ref requires a tag or a digest"),
    };
    if !crate::reference::is_sha256(&digest) {
        return Err(problem(format!(
            "the tag points at `{}`, not a sha256 digest",
            clean(&digest)
        ))
        .into());
    }
    let bytes = target
        .fetch_manifest(&digest)
        .await
        .map_err(target_problem)?
        .ok_or_else(|| {
            Problem::error(
                codes::INSPECT_NOT_FOUND,
                format!("{text}: no manifest {digest}"),
            )
            .help("check the repository and digest")
        })?;
    if sha256_digest(&bytes) != digest {
        return Err(problem(format!(
            "the manifest served for {digest} hashes to {}",
            sha256_digest(&bytes)
        ))
        .into());
    }
    let manifest: Value = serde_json::from_slice(&bytes)
        .map_err(|e| problem(format!("the manifest is not JSON: {e}")))?;
    let config = match manifest.get("config") {
        Some(d) => {
            let b = verified_blob(&target, d, "config").await?;
            Some(serde_json::from_slice(&b).unwrap_or_else(|_| json!(String::from_utf8_lossy(&b))))
        }
        None => None,
    };
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let spec_layer = layers
        .iter()
        .find(|l| l["mediaType"] == LAYER_MEDIA_TYPE)
        .or(if layers.len() == 1 {
            layers.first()
        } else {
            None
        });
    let spec = match spec_layer {
        Some(d) => Some((d.clone(), verified_blob(&target, d, "spec layer").await?)),
        None => None,
    };
    Ok(Read {
        reference: text.to_string(),
        digest,
        manifest,
        config,
        spec,
    })
}

/// Text from an artifact, safe for a terminal: control characters other than line breaks
/// and tabs, and bidirectional overrides, are shown escaped (`\x1b`, `\u{202e}`).
fn clean(s: &str) -> String {
    // The one sanitiser: also bidirectional overrides, and the run's secrets.
    crate::sanitize::current().source(s).0
}

/// One line of artifact text: no line breaks either.
fn clean_line(s: &str) -> String {
    clean(s).replace('\n', "\\n").replace('\t', "\\t")
}

pub(super) async fn inspect(ctx: &Context, args: &InspectArgs) -> Outcome {
    let read = read(ctx, &args.reference).await?;
    match args.format {
        Format::Json => {
            let spec = read.spec.as_ref().map(|(d, b)| {
                json!({
                    "digest": d["digest"], "size": d["size"], "media_type": d["mediaType"],
                    "title": d["annotations"][TITLE_ANNOTATION],
                    "text": String::from_utf8_lossy(b),
                })
            });
            let doc = json!({
                "format_version": crate::report::json::FORMAT_VERSION,
                "reference": read.reference,
                "digest": read.digest,
                "manifest": read.manifest,
                "annotations": read.manifest.get("annotations").cloned().unwrap_or(json!({})),
                "config": read.config,
                "spec": spec,
            });
            out::line(&serde_json::to_string_pretty(&crate::sanitize::json(doc)).expect("JSON"));
        }
        Format::Text => out::print(&human(&read)),
    }
    Ok(Exit::Ok)
}

fn human(read: &Read) -> String {
    let mut s = format!(
        "Reference: {}\nDigest:    {}\n",
        clean_line(&read.reference),
        read.digest
    );
    if let Some(t) = read.manifest["artifactType"].as_str() {
        s.push_str(&format!("Type:      {}\n", clean_line(t)));
    }
    if let Some(map) = read.manifest["annotations"].as_object() {
        s.push_str("\nAnnotations:\n");
        for (k, v) in map {
            s.push_str(&format!(
                "  {}: {}\n",
                clean_line(k),
                clean_line(v.as_str().unwrap_or(&v.to_string()))
            ));
        }
    }
    if let Some(config) = &read.config {
        let d = &read.manifest["config"];
        s.push_str(&format!(
            "\nConfig ({}, {}):\n",
            clean_line(d["mediaType"].as_str().unwrap_or("?")),
            clean_line(d["digest"].as_str().unwrap_or("?"))
        ));
        let pretty = serde_json::to_string_pretty(config).expect("JSON");
        for line in pretty.lines() {
            s.push_str(&format!("  {}\n", clean_line(line)));
        }
    }
    if let Some((d, bytes)) = &read.spec {
        let title = d["annotations"][TITLE_ANNOTATION]
            .as_str()
            .map(clean_line)
            .unwrap_or_else(|| "untitled".into());
        s.push_str(&format!(
            "\nSpec ({title}, {} bytes, {}):\n",
            bytes.len(),
            clean_line(d["digest"].as_str().unwrap_or("?"))
        ));
        let text = clean(&String::from_utf8_lossy(bytes));
        s.push_str(&text);
        if !text.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}

/// The file name `pull` writes: the title annotation when it is a plain file name, else
/// `<repository's last component>-<tag or short digest>.yaml` (pure).
fn file_name(title: Option<&str>, reference: &str, digest: &str) -> String {
    if let Some(t) = title
        && !t.is_empty()
        && t.len() <= 255
        && !t.starts_with('.')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return t.to_string();
    }
    let last = reference.rsplit(['/', ':']).next().unwrap_or("spec");
    let base = reference.split('@').next().unwrap_or(reference);
    let name_part = base.rsplit('/').next().unwrap_or(last);
    let (repo, tag) = match name_part.split_once(':') {
        Some((r, t)) => (r.to_string(), t.to_string()),
        None => (
            name_part.to_string(),
            digest.trim_start_matches("sha256:")[..12].to_string(),
        ),
    };
    let stable: String = format!("{repo}-{tag}.yaml")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    stable.trim_start_matches('.').to_string()
}

pub(super) async fn pull(ctx: &Context, args: &PullArgs) -> Outcome {
    let read = read(ctx, &args.reference).await?;
    let Some((descriptor, bytes)) = &read.spec else {
        return Err(problem("the artifact has no text/yaml spec layer".into()).into());
    };
    let title = descriptor["annotations"][TITLE_ANNOTATION].as_str();
    let name = file_name(title, &read.reference, &read.digest);
    if title.is_some_and(|t| t != name) && !ctx.quiet() {
        eprintln!(
            "warning: the title annotation `{}` is not a plain file name; writing {name} instead",
            clean_line(title.unwrap_or_default())
        );
    }
    std::fs::create_dir_all(&args.output).map_err(|e| write_problem(&args.output, e))?;
    let path = args.output.join(&name);
    if path.exists() && !args.force {
        return Err(Problem::error(
            codes::PULL_EXISTS,
            format!("{} already exists", path.display()),
        )
        .help("pass --force to replace it, or -o DIR to write elsewhere")
        .into());
    }
    crate::atomic::write(&path, bytes, 0o644).map_err(|e| write_problem(&path, e))?;
    if !ctx.quiet() {
        eprintln!(
            "Pulled {} ({}) into {}",
            clean_line(&read.reference),
            read.digest,
            path.display()
        );
    }
    out::line(&path.display().to_string());
    Ok(Exit::Ok)
}

fn write_problem(path: &Path, e: std::io::Error) -> Problem {
    Problem::error(
        codes::PULL_WRITE,
        format!("cannot write {}: {e}", path.display()),
    )
    .help("check that the folder is writable")
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references() {
        let r = parse_ref("localhost:5000/acme/a:opset-0-v1").unwrap();
        assert_eq!(
            r.location,
            Location::Remote {
                registry: "localhost:5000".into(),
                path: "acme/a".into()
            }
        );
        assert_eq!(r.tag.as_deref(), Some("opset-0-v1"));
        let r = parse_ref(&format!("ghcr.io/acme/a@{D}")).unwrap();
        assert_eq!((r.tag, r.digest.as_deref()), (None, Some(D)));
        let r = parse_ref("oci:out/a:v1").unwrap();
        assert_eq!(r.location, Location::Layout("out/a".into()));
        assert!(parse_ref("localhost:5000/acme/a").is_err());
        assert!(parse_ref("ghcr.io/acme/a@sha256:xyz").is_err());
        assert!(parse_ref("ghcr.io/acme/a:bad/tag").is_err());
    }

    #[test]
    fn titles_with_paths_are_not_used() {
        assert_eq!(
            file_name(Some("aggregator.yaml"), "r/a:t", D),
            "aggregator.yaml"
        );
        for bad in [
            "../x.yaml",
            "a/b.yaml",
            "..",
            "",
            "a\\b",
            "x\u{1b}y",
            ".bashrc",
            "x\u{202e}lmay.exe",
            "a\u{200b}.yaml",
        ] {
            let name = file_name(Some(bad), "r.io/acme/a:opset-0-v1", D);
            assert_eq!(name, "a-opset-0-v1.yaml", "{bad:?}");
        }
        assert_eq!(
            file_name(None, &format!("r.io/a@{D}"), D),
            "a-0123456789ab.yaml"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            clean_line("a\u{1b}[2Jb\nc\u{202e}"),
            "a\\x1b[2Jb\\nc\\u{202e}"
        );
    }
}
