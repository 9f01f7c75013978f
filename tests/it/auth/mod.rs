//! Integration tests for registry authentication and transport security, by topic.
//!
//! They exist because credentials are where a publishing tool can hurt its user
//! most: it must find them wherever Docker keeps them (`auths`, credential
//! helpers, `credsStore`) or in `EIGENPUB_REGISTRY_<HOST>_*` variables, say
//! plainly which ones a registry refused and how to log in ([`sources`]), store
//! them the way `docker login` does ([`login`]), speak TLS to registries signed by
//! a private CA ([`tls`]), renew short-lived bearer tokens before the registry
//! refuses them, retry a briefly overloaded token service, mount a blob another
//! repository holds with a token that may pull from it ([`tokens`]), refuse to send credentials or tokens in clear text off this
//! machine ([`clear_text`]), and never print or write a secret (every test).
//!
//! Everything is real and comes from the harness: `docker-registry` behind
//! htpasswd basic auth or a token service signing JWTs with `openssl`, over TLS
//! with a CA made with `openssl`, a credential helper that is a shell script
//! speaking Docker's helper protocol, a TCP relay that keeps the bytes eigenpub
//! sent, and skopeo reading back what was pushed. Passwords are random per test
//! (`s3cret-Pa55-<hex>`) so that a leak is found by a plain substring search of
//! everything eigenpub printed and every file it wrote. This file holds the
//! fixtures the topics share: the project, the full publishing round, and the
//! checks of messages and pushed manifests.

pub(crate) mod clear_text;
mod identity;
mod login;
mod proxy;
mod realms;
mod sources;
mod tls;
mod tokens;

use std::process::Command;

use serde_json::Value;

use crate::harness::env::Env;
use crate::harness::secrets::{Secret, Transcript};
use crate::harness::token_server::TokenServer;
use crate::harness::{self, Output, Project, Registry, run_with_stdin, sha256_digest};

const AVS: &str = "price-oracle";
const SPEC: &str = "avs/price-oracle/aggregator.yaml";
/// The documented default tag template `opset-{opset}-v{version}` for opset 0, version 3.
const TAG: &str = "opset-0-v3";
const USER: &str = "publisher";

// ---------------------------------------------------------------------------
// Project fixture
// ---------------------------------------------------------------------------

/// The fixture AVS's aggregator spec; `seed` varies its bytes.
fn spec_yaml(seed: &str) -> String {
    harness::spec_yaml(AVS, "aggregator", seed)
}

/// One AVS with one operator set, published to `<host>/acme/price-oracle:opset-0-v3`
/// (every tag mutable, so a second round can update it). `extra` is appended
/// verbatim (e.g. a `[registries."…"]` table).
fn project_for(host: &str, extra: &str) -> Project {
    let project = Project::new();
    project
        .write(
            "eigenruntime.toml",
            format!(
                "[defaults]\n\
                 registry = \"{host}/acme\"\n\
                 created = \"2025-01-01T00:00:00Z\"\n\
                 mutable-tags = [\"*\"]\n\
                 {extra}\n\
                 [[avs]]\n\
                 name = \"{AVS}\"\n\
                 version = 3\n\
                 [avs.operator-sets]\n\
                 0 = \"{SPEC}\"\n"
            ),
        )
        .write(SPEC, spec_yaml("image-1"));
    project
}

fn reference(host: &str) -> String {
    format!("{host}/acme/{AVS}:{TAG}")
}

fn json_doc(text: &str, what: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what} is not JSON ({e}):\n{text}"))
}

/// The one artifact of a `plan --format json` / `apply --format json` document.
fn only_artifact(doc: &Value) -> &Value {
    let artifacts = doc["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("no artifacts array in {doc}"));
    assert_eq!(artifacts.len(), 1, "one artifact expected in {doc}");
    &artifacts[0]
}

/// Check manifest bytes read back independently: its digest is `digest` and its
/// one layer is exactly `spec`.
#[track_caller]
fn assert_manifest(manifest: &[u8], digest: &str, spec: &[u8]) {
    assert_eq!(
        sha256_digest(manifest),
        digest,
        "the manifest read back hashes to the digest eigenpub planned and pushed"
    );
    let m: Value = serde_json::from_slice(manifest).expect("manifest is JSON");
    assert_eq!(
        m["layers"][0]["digest"],
        sha256_digest(spec),
        "the layer is the spec file: {m}"
    );
}

/// Text without whitespace or miette's frame characters, so that a phrase can be
/// found however the diagnostic was wrapped (words and hyphenated names may be
/// split over lines).
fn squash(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && !"│╭╰─×├┬┴┼╮╯▶•·".contains(*c))
        .collect()
}

#[track_caller]
fn assert_says(out: &Output, phrases: &[&str]) {
    let squashed = squash(&out.stderr);
    for phrase in phrases {
        assert!(
            squashed.contains(&squash(phrase)),
            "stderr does not say {phrase:?}\n{out}"
        );
    }
}

/// The only diagnostic of a `--diagnostics json` run, from stderr.
fn json_diagnostic(out: &Output) -> Value {
    let start = out
        .stderr
        .find('{')
        .unwrap_or_else(|| panic!("no JSON diagnostics on stderr\n{out}"));
    let doc: Value = serde_json::Deserializer::from_str(&out.stderr[start..])
        .into_iter::<Value>()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("stderr holds no JSON document\n{out}"));
    let diags = doc["diagnostics"]
        .as_array()
        .unwrap_or_else(|| panic!("no diagnostics array\n{out}"));
    assert_eq!(diags.len(), 1, "one diagnostic expected\n{out}");
    diags[0].clone()
}

// ---------------------------------------------------------------------------
// The full publishing round, with every kind of output eigenpub has
// ---------------------------------------------------------------------------

/// Plan (text with -v, JSON, Markdown, saved), apply the saved plan (JSON, -v,
/// release record), check the pushed manifest with `read` (an independent reader,
/// e.g. skopeo), then change the spec and go again (Markdown plan with the YAML
/// diff, which reads the published manifest and blobs back through eigenpub's
/// authenticated client). Returns everything printed and written.
fn publish_twice(
    project: &Project,
    env: &Env,
    host: &str,
    read: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Transcript {
    let mut t = Transcript::default();
    let reference = reference(host);

    let plan = env.run(project, &["-v", "plan"]);
    t.output("plan -v", &plan);
    plan.success();
    assert!(
        plan.stdout_lines()
            .iter()
            .any(|l| l.starts_with(&format!("+ create {reference} sha256:"))),
        "the plan creates {reference}\n{plan}"
    );

    let planned = env.run(project, &["plan", "--format", "json"]);
    t.output("plan --format json", &planned);
    planned.success();
    let planned_doc = json_doc(&planned.stdout, "plan --format json");
    let digest = only_artifact(&planned_doc)["digest"]
        .as_str()
        .expect("digest")
        .to_string();

    let markdown = env.run(project, &["-v", "plan", "--format", "markdown"]);
    t.output("plan --format markdown", &markdown);
    markdown.success();

    let saved = env.run(project, &["plan", "--out", "saved-plan.json"]);
    t.output("plan --out", &saved);
    saved.success();

    let apply = env.run(
        project,
        &[
            "-v",
            "apply",
            "saved-plan.json",
            "--format",
            "json",
            "--release-json",
            "release.json",
        ],
    );
    t.output("apply saved-plan.json --format json", &apply);
    apply.success();
    let applied = json_doc(&apply.stdout, "apply --format json");
    let artifact = only_artifact(&applied);
    assert_eq!(artifact["result"], "pushed", "{apply}");
    assert_eq!(artifact["digest"], digest.as_str(), "{apply}");
    let manifest = read(&reference)
        .unwrap_or_else(|| panic!("the independent reader cannot read {reference}"));
    assert_manifest(&manifest, &digest, &project.read(SPEC));

    // Second round: an update, whose Markdown plan diffs the published YAML.
    project.write(SPEC, spec_yaml("image-2"));
    let markdown = env.run(project, &["-v", "plan", "--format", "markdown"]);
    t.output("second plan --format markdown", &markdown);
    markdown.success();
    assert!(
        markdown.stdout.contains(&sha256_digest("image-1")),
        "the Markdown plan of an update shows the published YAML it replaces\n{markdown}"
    );
    let replanned = env.run(project, &["plan", "--format", "json"]);
    t.output("second plan --format json", &replanned);
    replanned.success();
    let new_digest = only_artifact(&json_doc(&replanned.stdout, "plan --format json"))["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    assert_ne!(new_digest, digest, "a changed spec is a new artifact");
    let apply = env.run(project, &["-v", "apply"]);
    t.output("second apply -v", &apply);
    apply.success();
    assert!(
        apply
            .stdout_lines()
            .iter()
            .any(|l| l.starts_with("pushed") && l.contains(&reference)),
        "the update is pushed\n{apply}"
    );
    let manifest = read(&reference)
        .unwrap_or_else(|| panic!("the independent reader cannot read {reference}"));
    assert_manifest(&manifest, &new_digest, &project.read(SPEC));

    t.dir(project.path());
    t
}

/// The requests eigenpub made to `registry` (its user agent), from the access log,
/// flushed by a request of ours whose path holds `marker`.
fn eigenpub_requests(registry: &Registry, marker: &str) -> Vec<harness::Request> {
    let probe = harness::http_request(
        "GET",
        &registry.host(),
        &format!("/v2/?{marker}"),
        &[],
        None,
    )
    .expect("probe the registry");
    assert_eq!(probe.status, 401, "the registry demands a token");
    registry
        .log_through(marker)
        .iter()
        .filter(|l| l.contains("\"eigenpub/"))
        .filter_map(|l| harness::parse_access_log_line(l))
        .collect()
}

/// The digest of the one artifact of an `apply --format json` run.
fn applied_digest(apply: &Output) -> String {
    only_artifact(&json_doc(&apply.stdout, "apply --format json"))["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no digest in the applied artifact\n{apply}"))
        .to_string()
}

/// Check that what `apply --format json` says it pushed to `reference` is there:
/// read back by `read` (an independent reader), its digest as applied, its layer
/// `spec`.
#[track_caller]
fn assert_applied(
    apply: &Output,
    reference: &str,
    spec: &[u8],
    read: &dyn Fn(&str) -> Option<Vec<u8>>,
) {
    let manifest = read(reference)
        .unwrap_or_else(|| panic!("the independent reader cannot read {reference}\n{apply}"));
    assert_manifest(&manifest, &applied_digest(apply), spec);
}

/// [`Transcript::assert_free_of`] for `secrets` and every token `tokens` issued.
#[track_caller]
fn assert_free_of_secrets_and_tokens(t: &Transcript, secrets: &[&Secret], tokens: &TokenServer) {
    let issued = tokens.issued_secrets();
    let mut all: Vec<&Secret> = issued.iter().collect();
    all.extend(secrets);
    t.assert_free_of(&all);
}

#[test]
fn own_helpers_find_wrapped_phrases_and_every_spelling_of_a_leak() {
    // squash finds a phrase across miette's wrapping and frame characters.
    let wrapped =
        "  │ log in with `docker\n  │ login 127.0.0.1:5000` or docker-credential-\n  │ eigentest";
    assert!(squash(wrapped).contains(&squash("docker login 127.0.0.1:5000")));
    assert!(squash(wrapped).contains(&squash("docker-credential-eigentest")));
    // Secret forms include the Basic header value.
    let s = Secret {
        user: "u".into(),
        password: "p".into(),
    };
    assert_eq!(s.basic(), "dTpw");
    // A transcript holding a secret, in any of its spellings, fails the check.
    let secret = Secret::new(USER);
    for leak in [
        secret.password.clone(),
        format!("Authorization: Basic {}", secret.basic()),
    ] {
        let mut t = Transcript::default();
        t.pieces.push(("leak".into(), format!("x {leak} y")));
        let caught = std::panic::catch_unwind(|| t.assert_free_of(&[&secret]));
        assert!(caught.is_err(), "{leak:?} was not caught");
    }
    let mut clean = Transcript::default();
    clean.pieces.push(("clean".into(), "nothing here".into()));
    clean.assert_free_of(&[&secret]);
    // run_with_stdin pipes its input.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "read x; echo \"got $x\""]);
    let out = run_with_stdin(cmd, "hello\n");
    assert_eq!((out.code, out.stdout.as_str()), (0, "got hello\n"));
}
