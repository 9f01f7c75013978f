//! Integration tests for adopting tags devkit published, `eigenruntime.lock` and `verify`.
//!
//! Tags are published the way devkit publishes them (its Go encoding, a wall-clock
//! `created` a second apart per artifact, its `devkitVersion`, its own annotations, no
//! layer title), pushed with curl, so nothing of eigenpub's is involved in making them;
//! what a tag holds afterwards is read back with skopeo, and what eigenpub sent is read
//! from the registry's access log.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

use crate::harness::{Project, Registry, Request, rfc3339_utc, run, sha256_digest, spec_yaml};

const SOURCE: &str = "https://github.com/acme/avs-monorepo";
const DEVKIT_VERSION: &str = "v0.0.9";
const SCHEMA: &str = "https://eigenruntime.io/schemas/hourglass/v1/manifest.json";

/// One artifact of the test project: AVS, operator set, component, `version` of its AVS.
#[derive(Clone, Copy, Debug)]
struct Art {
    avs: &'static str,
    opset: u32,
    component: &'static str,
}

const PO0: Art = Art {
    avs: "price-oracle",
    opset: 0,
    component: "aggregator",
};
const PO1: Art = Art {
    avs: "price-oracle",
    opset: 1,
    component: "executor",
};
const DR0: Art = Art {
    avs: "dice-roller",
    opset: 0,
    component: "aggregator",
};
const ALL: [Art; 3] = [PO0, PO1, DR0];

impl Art {
    fn spec(&self) -> String {
        format!("avs/{}/opset-{}.yaml", self.avs, self.opset)
    }
    fn tag(&self) -> String {
        format!("opset-{}-v3", self.opset)
    }
    fn repository(&self) -> String {
        format!("acme/{}", self.avs)
    }
    fn name_and_tag(&self) -> String {
        format!("{}:{}", self.repository(), self.tag())
    }
    fn reference(&self, registry: &Registry) -> String {
        format!("{}/{}", registry.host(), self.name_and_tag())
    }
    fn text(&self, seed: &str) -> String {
        spec_yaml(
            self.avs,
            self.component,
            &format!("{}-{seed}", self.component),
        )
    }
}

/// A project publishing `ALL` to the registry (`version = 3`), with `extra` lines in
/// `[defaults]` (e.g. `created`).
fn project(registry: &Registry, extra: &str) -> Project {
    let project = Project::new();
    let mut toml = format!(
        "[defaults]\nregistry = \"{}/acme\"\nsource = \"{SOURCE}\"\n{extra}\n",
        registry.host()
    );
    for avs in ["price-oracle", "dice-roller"] {
        toml.push_str(&format!(
            "[[avs]]\nname = \"{avs}\"\nversion = 3\n[avs.operator-sets]\n"
        ));
        for art in ALL.iter().filter(|a| a.avs == avs) {
            toml.push_str(&format!("{} = \"{}\"\n", art.opset, art.spec()));
            project.write(&art.spec(), art.text("image-1"));
        }
        toml.push('\n');
    }
    project.write("eigenruntime.toml", toml);
    project
}

// ---------------------------------------------------------------------------
// Publishing as devkit does
// ---------------------------------------------------------------------------

/// The config devkit writes (Go `json.MarshalIndent` of a map: sorted keys, two spaces).
fn devkit_config(avs: &str, tag: &str, created: &str, kind: &str) -> String {
    format!(
        "{{\n  \"avsName\": \"{avs}\",\n  \"eigenRuntimeAPIVersion\": \"v1\",\n  \"formatVersion\": \"1.0\",\n  \"kind\": \"{kind}\",\n  \"metadata\": {{\n    \"createdAt\": \"{created}\",\n    \"devkitVersion\": \"{DEVKIT_VERSION}\",\n    \"releaseVersion\": \"{tag}\"\n  }},\n  \"validationSchema\": \"{SCHEMA}\"\n}}"
    )
}

/// The manifest devkit writes (Go `json.Marshal` of maps: compact, sorted keys, no title).
fn devkit_manifest(avs: &str, created: &str, config: &str, spec: &str) -> String {
    format!(
        "{{\"annotations\":{{\"io.eigenruntime.spec.version\":\"v1\",\"org.opencontainers.image.created\":\"{created}\",\"org.opencontainers.image.description\":\"EigenRuntime specification for {avs}\",\"org.opencontainers.image.source\":\"https://github.com/acme/devkit-project\"}},\"artifactType\":\"application/vnd.eigenruntime.manifest.v1\",\"config\":{{\"digest\":\"{}\",\"mediaType\":\"application/vnd.eigenruntime.manifest.config.v1+json\",\"size\":{}}},\"layers\":[{{\"digest\":\"{}\",\"mediaType\":\"text/yaml\",\"size\":{}}}],\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"schemaVersion\":2}}",
        sha256_digest(config),
        config.len(),
        sha256_digest(spec),
        spec.len()
    )
}

fn curl(args: &[&str]) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "--max-time", "30"])
        .args(args);
    let out = run(cmd);
    assert_eq!(out.code, 0, "curl {args:?} failed: {out}");
    out.stdout
}

/// Uploads a blob with curl (POST, then PUT with the digest).
fn push_blob(registry: &Registry, repository: &str, bytes: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("blob");
    std::fs::write(&file, bytes).expect("write blob");
    let head = curl(&[
        "-X",
        "POST",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://{}/v2/{repository}/blobs/uploads/", registry.host()),
    ]);
    let location = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Location in {head}"));
    let location = if location.starts_with('/') {
        format!("http://{}{location}", registry.host())
    } else {
        location
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{location}{separator}digest={}", sha256_digest(bytes)),
    ]);
}

/// Pushes `art`'s spec `text` as devkit would, created at `created`; returns the digest.
fn devkit_push(registry: &Registry, art: Art, text: &str, created: &str, kind: &str) -> String {
    let config = devkit_config(art.avs, &art.tag(), created, kind);
    let manifest = devkit_manifest(art.avs, created, &config, text);
    push_blob(registry, &art.repository(), &config);
    push_blob(registry, &art.repository(), text);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("manifest");
    std::fs::write(&file, &manifest).expect("write manifest");
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!(
            "http://{}/v2/{}/manifests/{}",
            registry.host(),
            art.repository(),
            art.tag()
        ),
    ]);
    sha256_digest(&manifest)
}

/// Publishes every artifact as devkit does: the wall clock, a second apart each.
fn devkit_publish_all(registry: &Registry) -> BTreeMap<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    ALL.iter()
        .enumerate()
        .map(|(i, art)| {
            let created = rfc3339_utc(now + i as i64);
            let digest = devkit_push(registry, *art, &art.text("image-1"), &created, "Hourglass");
            (art.name_and_tag(), digest)
        })
        .collect()
}

/// The digest a tag holds, read with skopeo.
fn tag_digest(registry: &Registry, art: Art) -> Option<String> {
    registry.skopeo_raw(&art.name_and_tag()).map(sha256_digest)
}

fn writes(requests: &[Request]) -> Vec<&Request> {
    requests
        .iter()
        .filter(|r| r.method != "HEAD" && r.method != "GET")
        .collect()
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l.trim() == line)
}

// ---------------------------------------------------------------------------
// Adopting tags devkit published
// ---------------------------------------------------------------------------

#[test]
fn devkit_published_tags_are_adopted_unchanged_with_their_digests() {
    let registry = Registry::start();
    let published = devkit_publish_all(&registry);
    let project = project(&registry, "created = \"2025-01-01T00:00:00Z\"");

    registry.reset_requests();
    let plan = project.run(&["plan", "--detailed-exitcode"]);
    plan.no_panic().expect_code(0);
    assert!(
        has_line(
            &plan.stdout,
            "Plan: 0 to create, 0 to update, 3 unchanged (3 of them equivalent content, kept as published)."
        ),
        "{plan}"
    );
    let requests = registry.request_lines();
    assert!(writes(&requests).is_empty(), "{requests:#?}");
    // One HEAD per tag, and for each differing tag its manifest and config.
    assert_eq!(requests.len(), 3 * ALL.len(), "{requests:#?}");

    let verbose = project.run(&["-v", "plan"]);
    verbose.no_panic().success();
    let today = &rfc3339_utc(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    )[..10];
    for art in ALL {
        let line = format!(
            "= unchanged {} {} (equivalent: published {today} by devkit {DEVKIT_VERSION})",
            art.reference(&registry),
            published[&art.name_and_tag()]
        );
        assert!(has_line(&verbose.stdout, &line), "{line}\n{verbose}");
    }

    registry.reset_requests();
    let apply = project.run(&["apply", "--release-json", "release.json"]);
    apply.no_panic().success();
    assert!(
        has_line(&apply.stdout, "Apply: 0 pushed, 3 unchanged, 0 failed."),
        "{apply}"
    );
    let requests = registry.request_lines();
    assert!(
        writes(&requests).is_empty(),
        "nothing re-pushed: {requests:#?}"
    );
    let release: Value =
        serde_json::from_slice(&project.read("release.json")).expect("release JSON");
    for art in ALL {
        let digest = &published[&art.name_and_tag()];
        assert_eq!(tag_digest(&registry, art).as_ref(), Some(digest));
        assert_eq!(
            release[art.avs][art.opset.to_string()]["digest"],
            digest.as_str(),
            "the release records the published digest\n{release:#}"
        );
    }
}

#[test]
fn a_changed_spec_is_the_only_one_planned_and_refused_when_immutable() {
    let registry = Registry::start();
    let published = devkit_publish_all(&registry);
    let project = project(&registry, "created = \"2025-01-01T00:00:00Z\"");
    project.write(&PO1.spec(), PO1.text("image-2"));

    // A refused overwrite fails the plan (exit 1), --detailed-exitcode or not.
    let plan = project.run(&["plan", "--detailed-exitcode"]);
    plan.no_panic().expect_code(1);
    let changed: Vec<&str> = plan
        .stdout_lines()
        .into_iter()
        .filter(|l| l.starts_with(['+', '~', '!', '>']))
        .collect();
    assert_eq!(changed.len(), 1, "{plan}");
    assert!(
        changed[0].starts_with(&format!(
            "! refuse {} {}",
            PO1.reference(&registry),
            published[&PO1.name_and_tag()]
        )),
        "{plan}"
    );
    assert!(
        has_line(
            &plan.stdout,
            "Plan: 0 to create, 0 to update, 2 unchanged (2 of them equivalent content, kept as published), 1 refused."
        ),
        "{plan}"
    );

    registry.reset_requests();
    let apply = project.run(&["apply"]);
    apply.no_panic().expect_code(1);
    assert!(writes(&registry.request_lines()).is_empty());

    // A mutable tag is updated: only that one.
    let project = {
        let p = self::project(
            &registry,
            "created = \"2025-01-01T00:00:00Z\"\nmutable-tags = [\"*\"]",
        );
        p.write(&PO1.spec(), PO1.text("image-2"));
        p
    };
    registry.reset_requests();
    let apply = project.run(&["apply"]);
    apply.no_panic().success();
    let requests = registry.request_lines();
    let puts: Vec<&str> = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/manifests/"))
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        puts,
        [format!("/v2/{}/manifests/{}", PO1.repository(), PO1.tag())]
    );
    for art in [PO0, DR0] {
        assert_eq!(
            tag_digest(&registry, art),
            Some(published[&art.name_and_tag()].clone())
        );
    }
}

#[test]
fn other_content_is_never_equivalent_and_adopt_equivalent_false_wants_the_same_bytes() {
    let registry = Registry::start();
    let published = devkit_publish_all(&registry);
    // Same spec, another `kind` in the config: content, so refused.
    let created = rfc3339_utc(1_750_000_000);
    let other_kind = devkit_push(&registry, PO0, &PO0.text("image-1"), &created, "Other");
    assert_ne!(other_kind, published[&PO0.name_and_tag()]);
    let project = project(&registry, "created = \"2025-01-01T00:00:00Z\"");
    let plan = project.run(&["plan"]);
    plan.no_panic().expect_code(1);
    assert!(
        plan.stdout.contains(&format!(
            "! refuse {} {other_kind}",
            PO0.reference(&registry)
        )),
        "{plan}"
    );

    // With adopt-equivalent = false only identical bytes count: everything is refused,
    // and nothing but one HEAD per tag is asked.
    let strict = self::project(
        &registry,
        "created = \"2025-01-01T00:00:00Z\"\nadopt-equivalent = false",
    );
    registry.reset_requests();
    let plan = strict.run(&["plan"]);
    plan.no_panic().expect_code(1);
    assert!(
        has_line(
            &plan.stdout,
            "Plan: 0 to create, 0 to update, 0 unchanged, 3 refused."
        ),
        "{plan}"
    );
    let requests = registry.request_lines();
    assert_eq!(requests.len(), ALL.len(), "{requests:#?}");
}
