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
pub(crate) const DEVKIT_VERSION: &str = "v0.0.9";
const SCHEMA: &str = "https://eigenruntime.io/schemas/hourglass/v1/manifest.json";

/// One artifact of the test project: AVS, operator set, component, `version` of its AVS.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Art {
    pub(crate) avs: &'static str,
    pub(crate) opset: u32,
    component: &'static str,
}

pub(crate) const PO0: Art = Art {
    avs: "price-oracle",
    opset: 0,
    component: "aggregator",
};
pub(crate) const PO1: Art = Art {
    avs: "price-oracle",
    opset: 1,
    component: "executor",
};
pub(crate) const DR0: Art = Art {
    avs: "dice-roller",
    opset: 0,
    component: "aggregator",
};
pub(crate) const ALL: [Art; 3] = [PO0, PO1, DR0];

impl Art {
    pub(crate) fn spec(&self) -> String {
        format!("avs/{}/opset-{}.yaml", self.avs, self.opset)
    }
    pub(crate) fn tag(&self) -> String {
        format!("opset-{}-v3", self.opset)
    }
    pub(crate) fn repository(&self) -> String {
        format!("acme/{}", self.avs)
    }
    pub(crate) fn name_and_tag(&self) -> String {
        format!("{}:{}", self.repository(), self.tag())
    }
    fn reference(&self, registry: &Registry) -> String {
        format!("{}/{}", registry.host(), self.name_and_tag())
    }
    pub(crate) fn text(&self, seed: &str) -> String {
        spec_yaml(
            self.avs,
            self.component,
            &format!("{}-{seed}", self.component),
        )
    }
}

/// A project publishing `ALL` to the registry (`version = 3`), with `extra` lines in
/// `[defaults]` (e.g. `created`).
pub(crate) fn project(registry: &Registry, extra: &str) -> Project {
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
pub(crate) fn push_blob(registry: &Registry, repository: &str, bytes: &str) {
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
pub(crate) fn devkit_push(
    registry: &Registry,
    art: Art,
    text: &str,
    created: &str,
    kind: &str,
) -> String {
    devkit_push_edited(registry, art, text, created, kind, &|m| m)
}

/// [`devkit_push`], with the manifest's text passed through `edit` before it is pushed.
pub(crate) fn devkit_push_edited(
    registry: &Registry,
    art: Art,
    text: &str,
    created: &str,
    kind: &str,
    edit: &dyn Fn(String) -> String,
) -> String {
    let config = devkit_config(art.avs, &art.tag(), created, kind);
    let manifest = edit(devkit_manifest(art.avs, created, &config, text));
    push_blob(registry, &art.repository(), &config);
    push_blob(registry, &art.repository(), text);
    push_manifest(registry, &art.repository(), &art.tag(), &manifest);
    sha256_digest(&manifest)
}

/// Pushes an OCI image manifest to `repository:tag` with curl.
pub(crate) fn push_manifest(registry: &Registry, repository: &str, tag: &str, manifest: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("manifest");
    std::fs::write(&file, manifest).expect("write manifest");
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("http://{}/v2/{repository}/manifests/{tag}", registry.host()),
    ]);
}

/// Publishes every artifact as devkit does: the wall clock, a second apart each.
pub(crate) fn devkit_publish_all(registry: &Registry) -> BTreeMap<String, String> {
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

// ---------------------------------------------------------------------------
// eigenruntime.lock
// ---------------------------------------------------------------------------

/// git in `dir` with a fixed identity, no user configuration, and both dates `date`.
fn git(dir: &std::path::Path, args: &[&str], date: &str) -> String {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Eigenpub Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Eigenpub Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date);
    let out = run(cmd);
    assert_eq!(out.code, 0, "git {args:?} failed: {out}");
    out.stdout
}

/// The project with `created = "git"` (the default), committed at 2024-03-05.
fn git_project(registry: &Registry) -> Project {
    let project = project(registry, "");
    project.git_init();
    project.git_commit_all("specs", "2024-03-05T10:20:30Z");
    project
}

/// `repository:tag` → digest, from `plan --format json` (plus `extra` arguments).
fn planned_digests(project: &Project, extra: &[&str]) -> BTreeMap<String, String> {
    let mut args = vec!["plan", "--format", "json"];
    args.extend_from_slice(extra);
    let out = project.run(&args);
    out.no_panic().success();
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    plan["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| {
            (
                format!(
                    "{}:{}",
                    a["repository"].as_str().unwrap(),
                    a["tag"].as_str().unwrap()
                ),
                a["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `repository:tag` → digest, from a lock file's text (read without eigenpub's code).
fn locked_digests(text: &str) -> BTreeMap<String, String> {
    let lock: toml::Value = toml::from_str(text).expect("lock TOML");
    lock["artifact"]
        .as_array()
        .expect("[[artifact]]")
        .iter()
        .map(|a| {
            (
                format!(
                    "{}:{}",
                    a["repository"].as_str().unwrap(),
                    a["tag"].as_str().unwrap()
                ),
                a["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn lock_text(project: &Project) -> String {
    String::from_utf8(project.read("eigenruntime.lock")).expect("UTF-8 lock")
}

#[test]
fn the_lock_keeps_digests_across_a_rewritten_history_a_shallow_clone_and_no_git() {
    let registry = Registry::start();
    let project = git_project(&registry);
    project.run(&["lock"]).no_panic().success();
    let text = lock_text(&project);
    assert!(
        text.starts_with("# This file is generated by `eigenpub lock`"),
        "{text}"
    );
    assert!(
        text.contains("created = \"2024-03-05T10:20:30Z\""),
        "{text}"
    );
    let locked = locked_digests(&text);
    assert_eq!(locked.len(), ALL.len());
    assert_eq!(planned_digests(&project, &["--locked"]), locked);
    project.git_commit_all("lock", "2024-03-05T10:20:30Z");

    // A squash merge: the same content, committed again at another time.
    git(
        project.path(),
        &["reset", "--soft", "HEAD~1"],
        "2025-02-02T02:02:02Z",
    );
    git(
        project.path(),
        &[
            "commit",
            "-q",
            "--no-gpg-sign",
            "--amend",
            "--no-edit",
            "--reset-author",
        ],
        "2025-02-02T02:02:02Z",
    );
    assert_eq!(
        git(
            project.path(),
            &["log", "--format=%ct"],
            "2025-02-02T02:02:02Z"
        )
        .trim(),
        "1738461722",
        "one commit, at the new time"
    );
    assert_eq!(
        planned_digests(&project, &["--locked"]),
        locked,
        "same digests after the rewrite"
    );
    // Without the lock, the rewritten history would give other digests (so the lock is
    // what keeps them).
    std::fs::rename(
        project.join("eigenruntime.lock"),
        project.join("lock.aside"),
    )
    .unwrap();
    let unlocked = planned_digests(&project, &[]);
    assert!(
        unlocked.values().all(|d| !locked.values().any(|l| l == d)),
        "{unlocked:?}"
    );
    std::fs::rename(
        project.join("lock.aside"),
        project.join("eigenruntime.lock"),
    )
    .unwrap();

    // The release job publishes exactly the locked digests.
    let apply = project.run(&["apply", "--locked", "--release-json", "release.json"]);
    apply.no_panic().success();
    let release: Value = serde_json::from_slice(&project.read("release.json")).unwrap();
    for art in ALL {
        let digest = &locked[&art.reference(&registry)];
        assert_eq!(
            tag_digest(&registry, art).as_ref(),
            Some(digest),
            "{}",
            art.name_and_tag()
        );
        assert_eq!(
            release[art.avs][art.opset.to_string()]["digest"],
            digest.as_str()
        );
    }

    // A shallow clone: the same digests, and nothing left to do.
    let clones = tempfile::tempdir().unwrap();
    let shallow = clones.path().join("shallow");
    git(
        clones.path(),
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            &format!("file://{}", project.path().display()),
            "shallow",
        ],
        "2025-02-02T02:02:02Z",
    );
    let out = run({
        let mut cmd = crate::harness::eigenpub(&shallow);
        cmd.args(["plan", "--locked", "--detailed-exitcode"]);
        cmd
    });
    out.no_panic().expect_code(0);
    assert!(
        !out.stderr.contains("shallow"),
        "a locked project needs no git history\n{out}"
    );

    // No git at all: the files alone.
    let bare = clones.path().join("no-git");
    std::fs::create_dir_all(&bare).unwrap();
    let copy = Command::new("cp")
        .args([
            "-r",
            &format!("{}/.", shallow.display()),
            &bare.display().to_string(),
        ])
        .status()
        .unwrap();
    assert!(copy.success());
    std::fs::remove_dir_all(bare.join(".git")).unwrap();
    let out = run({
        let mut cmd = crate::harness::eigenpub(&bare);
        cmd.args(["plan", "--locked", "--detailed-exitcode"]);
        cmd
    });
    out.no_panic().expect_code(0);
}

#[test]
fn an_edited_spec_fails_plan_locked_naming_it_and_lock_changes_exactly_that_entry() {
    let registry = Registry::start();
    let project = git_project(&registry);
    project.run(&["lock"]).no_panic().success();
    project.git_commit_all("lock", "2024-03-05T10:20:30Z");
    let before = lock_text(&project);

    project.write(&PO1.spec(), PO1.text("image-2"));
    project.git_commit_all("new executor image", "2024-04-01T00:00:00Z");
    registry.reset_requests();
    for args in [
        &["plan", "--locked"][..],
        &["apply", "--locked"],
        &["validate", "--locked"],
    ] {
        let out = project.run(args);
        out.no_panic().expect_code(1);
        assert!(
            out.stderr.contains("lock out of date: price-oracle/1"),
            "{args:?}\n{out}"
        );
        assert!(!out.stderr.contains("price-oracle/0 ("), "{args:?}\n{out}");
        assert!(!out.stderr.contains("dice-roller/0 ("), "{args:?}\n{out}");
    }
    assert_eq!(
        registry.request_lines(),
        [],
        "nothing was asked, nothing pushed"
    );
    // Without --locked: planned with a fresh created, and flagged.
    let plan = project.run(&["plan"]);
    plan.no_panic().success();
    assert!(
        plan.stderr.contains("lock out of date: price-oracle/1"),
        "{plan}"
    );

    let lock = project.run(&["lock"]);
    lock.no_panic().success();
    assert!(
        has_line(
            &lock.stdout,
            "Lock: 0 added, 1 changed, 0 removed, 2 unchanged; wrote eigenruntime.lock."
        ),
        "{lock}"
    );
    let after = lock_text(&project);
    let changed: Vec<(&str, &str)> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(before.lines().count(), after.lines().count());
    let keys: Vec<&str> = changed
        .iter()
        .map(|(a, _)| a.split(' ').next().unwrap())
        .collect();
    assert_eq!(keys, ["spec-sha256", "created", "digest"], "{changed:#?}");
    assert!(after.contains("created = \"2024-04-01T00:00:00Z\""));
    // Exactly the executor's entry changed.
    let (old, new) = (locked_digests(&before), locked_digests(&after));
    for art in ALL {
        let key = art.reference(&registry);
        assert_eq!(
            old[&key] == new[&key],
            art.opset != 1 || art.avs != "price-oracle",
            "{key}"
        );
    }
    assert_eq!(planned_digests(&project, &["--locked"]), new);
}

#[test]
fn verify_passes_after_apply_and_names_a_tag_moved_by_another_client() {
    let registry = Registry::start();
    let project = project(&registry, "created = \"2025-01-01T00:00:00Z\"");
    project.run(&["lock"]).no_panic().success();
    let locked = locked_digests(&lock_text(&project));

    let out = project.run(&["verify"]);
    out.no_panic().expect_code(1);
    assert!(
        has_line(&out.stdout, "Verify: 0 as locked, 0 moved, 3 missing."),
        "{out}"
    );
    assert!(
        has_line(
            &out.stdout,
            &format!(
                "! missing {} (locked {}, price-oracle/0)",
                PO0.reference(&registry),
                locked[&PO0.reference(&registry)]
            )
        ),
        "{out}"
    );

    project.run(&["apply", "--locked"]).no_panic().success();
    registry.reset_requests();
    let out = project.run(&["verify"]);
    out.no_panic().success();
    assert!(
        has_line(&out.stdout, "Verify: 3 as locked, 0 moved, 0 missing."),
        "{out}"
    );
    let requests = registry.request_lines();
    assert_eq!(
        requests.len(),
        ALL.len(),
        "one request per entry: {requests:#?}"
    );
    assert!(writes(&requests).is_empty());

    // Another client moves one tag.
    let moved = devkit_push(
        &registry,
        PO0,
        &PO0.text("image-1"),
        "2025-06-01T12:00:00Z",
        "Hourglass",
    );
    let out = project.run(&["verify"]);
    out.no_panic().expect_code(1);
    let lines: Vec<&str> = out
        .stdout_lines()
        .into_iter()
        .filter(|l| l.starts_with('!'))
        .collect();
    assert_eq!(
        lines,
        [format!(
            "! moved   {} holds {moved}, locked {} (price-oracle/0)",
            PO0.reference(&registry),
            locked[&PO0.reference(&registry)]
        )],
        "{out}"
    );
    let json = project.run(&["verify", "--format", "json"]);
    json.no_panic().expect_code(1);
    let doc: Value = serde_json::from_str(&json.stdout).expect("verify JSON");
    assert_eq!(
        doc["summary"],
        serde_json::json!({"ok": 2, "moved": 1, "missing": 0})
    );
    let entry = doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == "moved")
        .unwrap();
    assert_eq!(entry["avs"], "price-oracle");
    assert_eq!(entry["digest"], moved.as_str());
    assert_eq!(
        entry["locked_digest"],
        locked[&PO0.reference(&registry)].as_str()
    );
}

#[test]
fn lock_with_registry_pins_adopted_devkit_digests_and_plan_locked_holds_to_them() {
    let registry = Registry::start();
    let published = devkit_publish_all(&registry);
    let project = project(&registry, "created = \"2025-01-01T00:00:00Z\"");

    // Offline, the lock pins eigenpub's own digests: --locked says the tags hold others.
    project.run(&["lock"]).no_panic().success();
    let out = project.run(&["plan", "--locked"]);
    out.no_panic().expect_code(1);
    assert!(out.stderr.contains("--registry"), "{out}");
    assert!(out.stderr.contains("equivalent content"), "{out}");

    let lock = project.run(&["lock", "--registry"]);
    lock.no_panic().success();
    assert!(lock.stdout.contains("(3 adopted as published)"), "{lock}");
    let text = lock_text(&project);
    assert_eq!(text.matches("adopted = true").count(), 3, "{text}");
    let locked = locked_digests(&text);
    for art in ALL {
        assert_eq!(
            locked[&art.reference(&registry)],
            published[&art.name_and_tag()]
        );
    }
    project
        .run(&["plan", "--locked", "--detailed-exitcode"])
        .no_panic()
        .expect_code(0);
    // Offline again: adopted entries are kept.
    project.run(&["lock"]).no_panic().success();
    assert_eq!(lock_text(&project), text);
    project.run(&["verify"]).no_panic().success();
}
