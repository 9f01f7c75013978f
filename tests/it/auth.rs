//! Integration tests for registry authentication and transport security.
//!
//! They exist because credentials are where a publishing tool can hurt its user
//! most: it must find them wherever Docker keeps them (`auths`, credential
//! helpers, `credsStore`) or in `EIGENPUB_REGISTRY_<HOST>_*` variables, say
//! plainly which ones a registry refused and how to log in, store them the way
//! `docker login` does, speak TLS to registries signed by a private CA, renew
//! short-lived bearer tokens before the registry refuses them, retry a briefly
//! overloaded token service, upload a blob itself when a token scoped to one
//! repository may not mount it from another, refuse to send credentials or tokens
//! in clear text off this machine, and never print or write a secret.
//!
//! Everything is real: `docker-registry` behind htpasswd basic auth (from the
//! harness), a token service of this file's own signing JWTs with `openssl`, or
//! over TLS with a CA made here with `openssl` (started in this file),
//! a credential helper that is a shell script speaking Docker's helper protocol,
//! a TCP relay that keeps the bytes eigenpub sent (to read request headers the
//! access log does not show), and skopeo reading back what was pushed. Passwords
//! are random per test (`s3cret-Pa55-<hex>`) so that a leak is found by a plain
//! substring search of everything eigenpub printed and every file it wrote.

use std::collections::hash_map::RandomState;
use std::fs::{self, OpenOptions};
use std::hash::BuildHasher;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::harness::{
    self, Output, Project, Registry, http_get, run, run_bytes, run_with_stdin, sha256_digest,
    skopeo_raw_with_creds,
};

const AVS: &str = "price-oracle";
const SPEC: &str = "avs/price-oracle/aggregator.yaml";
/// The documented default tag template `opset-{opset}-v{version}` for opset 0, version 3.
const TAG: &str = "opset-0-v3";
const USER: &str = "publisher";
/// The name of the test credential helper: `docker-credential-eigentest`.
const HELPER: &str = "eigentest";

// ---------------------------------------------------------------------------
// Secrets and where they must not appear
// ---------------------------------------------------------------------------

/// A user name and a distinctive random password.
struct Secret {
    user: String,
    password: String,
}

impl Secret {
    fn new(user: &str) -> Secret {
        let random = RandomState::new().hash_one((std::process::id(), Instant::now()));
        Secret {
            user: user.to_string(),
            password: format!("s3cret-Pa55-{random:016x}"),
        }
    }

    /// `base64(user:password)`, as in `auths.<host>.auth` and a Basic header.
    fn basic(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.user, self.password))
    }

    /// Every spelling of the secret that must never be printed or written.
    fn forms(&self) -> Vec<String> {
        let basic = self.basic();
        vec![
            self.password.clone(),
            basic.trim_end_matches('=').to_string(),
            base64::engine::general_purpose::STANDARD.encode(&self.password),
        ]
    }
}

/// Everything eigenpub printed and wrote in a test, to be searched for secrets.
#[derive(Default)]
struct Transcript {
    pieces: Vec<(String, String)>,
}

impl Transcript {
    /// Record both streams of a run.
    fn output(&mut self, label: &str, out: &Output) {
        self.pieces
            .push((format!("stdout of {label}"), out.stdout.clone()));
        self.pieces
            .push((format!("stderr of {label}"), out.stderr.clone()));
    }

    /// Record every file under `dir` (recursively), as lossy text.
    fn dir(&mut self, dir: &Path) {
        for path in files_under(dir) {
            let bytes = fs::read(&path).unwrap_or_default();
            self.pieces.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }

    /// Panic if any spelling of any of `secrets` appears anywhere recorded.
    #[track_caller]
    fn assert_free_of(&self, secrets: &[&Secret]) {
        assert!(!self.pieces.is_empty(), "nothing was recorded");
        for secret in secrets {
            for form in secret.forms() {
                for (label, text) in &self.pieces {
                    assert!(
                        !text.contains(&form),
                        "the secret {form:?} appears in {label}:\n{text}"
                    );
                }
            }
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------
// The environment eigenpub runs in: its own DOCKER_CONFIG, variables, PATH
// ---------------------------------------------------------------------------

struct Env {
    docker_config: TempDir,
    vars: Vec<(String, String)>,
    path_prepend: Option<PathBuf>,
}

impl Env {
    /// An empty Docker config folder of this test's own, no variables.
    fn new() -> Env {
        Env {
            docker_config: tempfile::Builder::new()
                .prefix("eigenpub-it-docker-config-")
                .tempdir()
                .expect("create DOCKER_CONFIG dir"),
            vars: Vec::new(),
            path_prepend: None,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.docker_config.path().join("config.json")
    }

    fn write_config(&self, config: &Value) -> &Self {
        fs::write(
            self.config_path(),
            serde_json::to_vec_pretty(config).expect("serialize config"),
        )
        .expect("write config.json");
        self
    }

    fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Env {
        self.vars.push((name.into(), value.into()));
        self
    }

    /// Put `helper`'s folder first on PATH (for eigenpub only).
    fn with_helper(mut self, helper: &CredHelper) -> Env {
        self.path_prepend = Some(helper.bin_dir());
        self
    }

    fn command(&self, project: &Project, args: &[&str]) -> Command {
        let mut cmd = project.eigenpub(args);
        cmd.env("DOCKER_CONFIG", self.docker_config.path());
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.path_prepend {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", dir.display()));
        }
        cmd
    }

    fn run(&self, project: &Project, args: &[&str]) -> Output {
        let out = run(self.command(project, args));
        out.no_panic();
        out
    }

    /// `echo PASSWORD | eigenpub login HOST -u USER --password-stdin`.
    fn login(&self, project: &Project, host: &str, user: &str, password: &str) -> Output {
        let cmd = self.command(project, &["login", host, "-u", user, "--password-stdin"]);
        let out = run_with_stdin(cmd, &format!("{password}\n"));
        out.no_panic();
        out
    }
}

// ---------------------------------------------------------------------------
// A credential helper: docker-credential-eigentest, a shell script
// ---------------------------------------------------------------------------

/// `docker-credential-eigentest` in a folder of its own. `get` answers from
/// `<state>/store.json` when it names the asked server (else "not found", exit 1,
/// as real helpers do) and logs each asked server URL to `<state>/get.log`;
/// `store` saves its stdin to `<state>/store.json` verbatim.
struct CredHelper {
    dir: TempDir,
}

impl CredHelper {
    fn install() -> CredHelper {
        let dir = tempfile::Builder::new()
            .prefix("eigenpub-it-helper-")
            .tempdir()
            .expect("create helper dir");
        let state = dir.path().join("state");
        fs::create_dir_all(dir.path().join("bin")).expect("create helper bin dir");
        fs::create_dir_all(&state).expect("create helper state dir");
        let script = format!(
            r#"#!/bin/sh
# docker-credential-{HELPER}: a credential helper for eigenpub's tests.
state='{state}'
case "$1" in
  get)
    url=$(cat)
    printf '%s\n' "$url" >> "$state/get.log"
    if [ -f "$state/store.json" ] && grep -qF "\"$url\"" "$state/store.json"; then
      cat "$state/store.json"
      exit 0
    fi
    echo "credentials not found in native keychain"
    exit 1
    ;;
  store)
    cat > "$state/store.json"
    echo store >> "$state/calls.log"
    ;;
  erase)
    cat > /dev/null
    echo erase >> "$state/calls.log"
    ;;
  list)
    echo '{{}}'
    ;;
  *)
    echo "unknown action $1" >&2
    exit 2
    ;;
esac
"#,
            state = state.display()
        );
        let path = dir.path().join(format!("bin/docker-credential-{HELPER}"));
        fs::write(&path, script).expect("write helper script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod helper");
        CredHelper { dir }
    }

    fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn state(&self, name: &str) -> PathBuf {
        self.dir.path().join("state").join(name)
    }

    /// Make the helper hold credentials for `server`.
    fn hold(&self, server: &str, user: &str, password: &str) {
        let entry = json!({"ServerURL": server, "Username": user, "Secret": password});
        fs::write(self.state("store.json"), entry.to_string()).expect("write helper store");
    }

    /// The server URLs `get` was asked for, in order.
    fn gets(&self) -> Vec<String> {
        fs::read_to_string(self.state("get.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// What `store` received, parsed, if it was called.
    fn stored(&self) -> Option<Value> {
        let text = fs::read_to_string(self.state("store.json")).ok()?;
        Some(serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("the helper's store received something that is not JSON ({e}): {text}")
        }))
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.state("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

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

/// [`publish_twice`] against an htpasswd registry, read back with skopeo and the
/// registry's credentials; then the secret must appear nowhere.
fn publish_with(registry: &Registry, env: &Env, secret: &Secret) -> Transcript {
    let project = project_for(&registry.host(), "");
    let read = |r: &str| skopeo_raw_with_creds(r, &secret.user, &secret.password);
    let t = publish_twice(&project, env, &registry.host(), &read);
    t.assert_free_of(&[secret]);
    t
}

fn env_prefix(port: u16) -> String {
    // `127.0.0.1:PORT` upper-cased, every other character `_` (README).
    format!("EIGENPUB_REGISTRY_127_0_0_1_{port}")
}

// ---------------------------------------------------------------------------
// Where credentials come from
// ---------------------------------------------------------------------------

#[test]
fn credentials_from_docker_config_auths_base64_auth_publish() {
    let secret = Secret::new(USER);
    let registry = Registry::with_htpasswd(&secret.user, &secret.password);
    let env = Env::new();
    env.write_config(&json!({"auths": {registry.host(): {"auth": secret.basic()}}}));
    publish_with(&registry, &env, &secret);
}

#[test]
fn credentials_from_docker_config_auths_username_and_password_publish() {
    let secret = Secret::new(USER);
    let registry = Registry::with_htpasswd(&secret.user, &secret.password);
    let env = Env::new();
    env.write_config(&json!({"auths": {registry.host(): {
        "username": secret.user, "password": secret.password
    }}}));
    publish_with(&registry, &env, &secret);
}

#[test]
fn credentials_from_a_cred_helpers_helper_publish() {
    let secret = Secret::new(USER);
    let registry = Registry::with_htpasswd(&secret.user, &secret.password);
    let helper = CredHelper::install();
    helper.hold(&registry.host(), &secret.user, &secret.password);
    let env = Env::new().with_helper(&helper);
    env.write_config(&json!({"credHelpers": {registry.host(): HELPER}}));
    let mut t = publish_with(&registry, &env, &secret);
    assert!(
        helper.gets().contains(&registry.host()),
        "the helper was asked for {}; it was asked for {:?}",
        registry.host(),
        helper.gets()
    );
    t.dir(env.docker_config.path());
    t.assert_free_of(&[&secret]);
}

#[test]
fn credentials_from_a_creds_store_publish() {
    let secret = Secret::new(USER);
    let registry = Registry::with_htpasswd(&secret.user, &secret.password);
    let helper = CredHelper::install();
    helper.hold(&registry.host(), &secret.user, &secret.password);
    let env = Env::new().with_helper(&helper);
    env.write_config(&json!({"credsStore": HELPER}));
    let mut t = publish_with(&registry, &env, &secret);
    assert!(
        helper.gets().contains(&registry.host()),
        "the store was asked for {}; it was asked for {:?}",
        registry.host(),
        helper.gets()
    );
    t.dir(env.docker_config.path());
    t.assert_free_of(&[&secret]);
}

#[test]
fn credentials_from_environment_variables_publish_with_an_empty_docker_config() {
    let secret = Secret::new(USER);
    let registry = Registry::with_htpasswd(&secret.user, &secret.password);
    let prefix = env_prefix(registry.port());
    let env = Env::new()
        .var(format!("{prefix}_USERNAME"), &secret.user)
        .var(format!("{prefix}_PASSWORD"), &secret.password);
    publish_with(&registry, &env, &secret);
    assert_eq!(
        files_under(env.docker_config.path()),
        Vec::<PathBuf>::new(),
        "nothing is written to the Docker config"
    );
}

#[test]
fn credentials_from_auths_keyed_by_the_https_url_publish() {
    // Older Docker versions and other tools key `auths` by `https://<host>`.
    let secret = Secret::new(USER);
    let registry = Registry::with_htpasswd(&secret.user, &secret.password);
    let env = Env::new();
    env.write_config(&json!({"auths": {
        format!("https://{}", registry.host()): {"auth": secret.basic()}
    }}));
    publish_with(&registry, &env, &secret);
}

#[test]
fn only_one_of_the_two_environment_variables_is_an_error_naming_both() {
    let registry = Registry::start();
    let prefix = env_prefix(registry.port());
    let project = project_for(&registry.host(), "");
    for (set, unset) in [("USERNAME", "PASSWORD"), ("PASSWORD", "USERNAME")] {
        let env = Env::new().var(format!("{prefix}_{set}"), "s3cret-Pa55-half");
        let plan = env.run(&project, &["plan"]);
        plan.expect_code(1);
        assert_says(
            &plan,
            &[
                &registry.host(),
                &format!("{prefix}_{set}"),
                &format!("{prefix}_{unset}"),
            ],
        );
        assert!(
            !plan.stderr.contains("s3cret-Pa55-half") && !plan.stdout.contains("s3cret-Pa55-half"),
            "{plan}"
        );
    }
    assert_eq!(registry.request_count(), 0, "nothing was sent");
}

#[test]
fn a_cred_helper_with_nothing_for_the_registry_means_anonymous_access_as_in_docker() {
    // Docker treats a helper's "credentials not found" answer as no credentials and
    // goes on anonymously; an open registry then works.
    let registry = Registry::start();
    let helper = CredHelper::install();
    let env = Env::new().with_helper(&helper);
    env.write_config(&json!({"credHelpers": {registry.host(): HELPER}}));
    let project = project_for(&registry.host(), "");
    let apply = env.run(&project, &["apply"]);
    apply.success();
    assert!(
        helper.gets().contains(&registry.host()),
        "{:?}",
        helper.gets()
    );
    assert!(
        registry.skopeo_raw(&format!("acme/{AVS}:{TAG}")).is_some(),
        "published anonymously"
    );
}

#[test]
fn a_credential_helper_that_is_not_installed_is_an_error_naming_it() {
    let registry = Registry::start();
    let env = Env::new();
    env.write_config(&json!({"credHelpers": {registry.host(): "eigentest-absent"}}));
    let project = project_for(&registry.host(), "");
    let plan = env.run(&project, &["plan"]);
    plan.expect_code(1);
    assert_says(
        &plan,
        &[&registry.host(), "docker-credential-eigentest-absent"],
    );
    assert_eq!(registry.request_count(), 0, "nothing was sent");
}

// ---------------------------------------------------------------------------
// Refusals say which registry, which credentials, and how to log in
// ---------------------------------------------------------------------------

#[test]
fn refused_credentials_name_the_registry_their_origin_and_how_to_log_in() {
    let right = Secret::new(USER);
    let wrong = Secret::new(USER);
    let registry = Registry::with_htpasswd(&right.user, &right.password);
    let host = registry.host();
    let prefix = env_prefix(registry.port());

    let helper = CredHelper::install();
    helper.hold(&host, &wrong.user, &wrong.password);
    let from_auths = Env::new();
    from_auths.write_config(&json!({"auths": {&host: {"auth": wrong.basic()}}}));
    let from_helper = Env::new().with_helper(&helper);
    from_helper.write_config(&json!({"credHelpers": {&host: HELPER}}));
    let from_env = Env::new()
        .var(format!("{prefix}_USERNAME"), &wrong.user)
        .var(format!("{prefix}_PASSWORD"), &wrong.password);
    // What each case's message must name as the origin of the refused credentials
    // (and the others must not, so that the origin is really this one).
    let helper_name = format!("docker-credential-{HELPER}");
    let origins = ["auths", helper_name.as_str(), "environment"];
    let cases: [(&str, &Env, usize); 3] = [
        ("auths", &from_auths, 0),
        ("credHelpers", &from_helper, 1),
        ("environment", &from_env, 2),
    ];

    let mut t = Transcript::default();
    for (case, env, which) in cases {
        let origin = origins[which];
        let project = project_for(&host, "");
        let plan = env.run(&project, &["-v", "plan"]);
        t.output(&format!("plan ({case})"), &plan);
        plan.expect_code(1);
        assert_says(
            &plan,
            &[
                &host,
                "refused",
                origin,
                &format!("docker login {host}"),
                &format!("eigenpub login {host}"),
            ],
        );

        let plan = env.run(&project, &["plan", "--diagnostics", "json"]);
        t.output(&format!("plan --diagnostics json ({case})"), &plan);
        plan.expect_code(1);
        let d = json_diagnostic(&plan);
        assert_eq!(d["code"], "eigenpub::registry::auth", "{plan}");
        let message = d["message"].as_str().unwrap_or_default();
        let help = d["help"].as_str().unwrap_or_default();
        assert!(message.contains(&host), "the message names {host}: {d}");
        for needle in [
            "refused",
            origin,
            &format!("docker login {host}"),
            &format!("eigenpub login {host}"),
        ] {
            assert!(help.contains(needle), "the help says {needle:?}: {d}");
        }
        for (i, other) in origins.iter().enumerate() {
            assert!(
                i == which || !help.contains(other),
                "the credentials came from {origin}, not {other}: {d}"
            );
        }

        let apply = env.run(&project, &["-v", "apply", "--release-json", "release.json"]);
        t.output(&format!("apply ({case})"), &apply);
        apply.expect_code(1);
        assert_says(&apply, &[&host, "refused", origin]);
        assert_eq!(
            skopeo_raw_with_creds(&reference(&host), &right.user, &right.password),
            None,
            "nothing was pushed with refused credentials ({case})"
        );
        t.dir(project.path());
    }
    t.assert_free_of(&[&wrong, &right]);
}

#[test]
fn missing_credentials_for_an_auth_registry_say_none_were_found_and_how_to_log_in() {
    let secret = Secret::new(USER);
    let registry = Registry::with_htpasswd(&secret.user, &secret.password);
    let host = registry.host();
    let env = Env::new();
    let project = project_for(&host, "");
    let mut t = Transcript::default();

    let plan = env.run(&project, &["plan"]);
    t.output("plan", &plan);
    plan.expect_code(1);
    assert_says(
        &plan,
        &[
            &host,
            "no credentials",
            &format!("docker login {host}"),
            &format!("eigenpub login {host}"),
        ],
    );
    let d = json_diagnostic(&env.run(&project, &["plan", "--diagnostics", "json"]));
    assert_eq!(d["code"], "eigenpub::registry::auth", "{d}");
    let help = d["help"].as_str().unwrap_or_default();
    assert!(
        help.contains("no credentials") && help.contains(&format!("eigenpub login {host}")),
        "{d}"
    );

    let apply = env.run(&project, &["apply"]);
    t.output("apply", &apply);
    apply.expect_code(1);
    assert_says(&apply, &[&host, "no credentials"]);
    t.dir(project.path());
    t.assert_free_of(&[&secret]);
}

// ---------------------------------------------------------------------------
// eigenpub login
// ---------------------------------------------------------------------------

#[test]
fn login_stores_credentials_in_auths_that_a_later_apply_uses() {
    let secret = Secret::new(USER);
    let registry = Registry::with_htpasswd(&secret.user, &secret.password);
    let host = registry.host();
    let env = Env::new();
    let project = project_for(&host, "");
    let mut t = Transcript::default();

    let login = env.login(&project, &host, &secret.user, &secret.password);
    t.output("login", &login);
    login.success();

    let config = json_doc(
        &fs::read_to_string(env.config_path()).expect("login wrote config.json"),
        "config.json",
    );
    assert_eq!(
        config["auths"][&host]["auth"],
        secret.basic(),
        "auths[{host}].auth is base64(user:password), as docker login writes: {config}"
    );
    let mode = fs::metadata(env.config_path())
        .expect("stat config.json")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "config.json holds a secret: readable by its owner only (mode {mode:o})"
    );

    // No variables: the stored credentials are found and accepted.
    let apply = env.run(&project, &["-v", "apply", "--format", "json"]);
    t.output("apply", &apply);
    apply.success();
    let digest = only_artifact(&json_doc(&apply.stdout, "apply --format json"))["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let manifest = skopeo_raw_with_creds(&reference(&host), &secret.user, &secret.password)
        .expect("skopeo reads the pushed manifest");
    assert_manifest(&manifest, &digest, &project.read(SPEC));

    t.dir(project.path());
    t.assert_free_of(&[&secret]);
}

#[test]
fn login_with_a_wrong_password_exits_1_and_stores_nothing() {
    let right = Secret::new(USER);
    let wrong = Secret::new(USER);
    let registry = Registry::with_htpasswd(&right.user, &right.password);
    let host = registry.host();
    let project = project_for(&host, "");
    let mut t = Transcript::default();

    // No config.json yet: none is created.
    let env = Env::new();
    let login = env.login(&project, &host, &wrong.user, &wrong.password);
    t.output("login (no config)", &login);
    login.expect_code(1);
    assert_says(&login, &[&host, "refused"]);
    assert_eq!(
        files_under(env.docker_config.path()),
        Vec::<PathBuf>::new(),
        "a refused login writes nothing\n{login}"
    );

    // An existing config.json is left exactly as it was.
    let env = Env::new();
    env.write_config(&json!({"auths": {"registry.example": {"auth": "dXNlcjpwdw=="}}}));
    let before = fs::read(env.config_path()).expect("read config");
    let login = env.login(&project, &host, &wrong.user, &wrong.password);
    t.output("login (existing config)", &login);
    login.expect_code(1);
    assert_eq!(
        fs::read(env.config_path()).expect("read config"),
        before,
        "a refused login leaves config.json untouched\n{login}"
    );
    assert_eq!(files_under(env.docker_config.path()).len(), 1);

    // With a credsStore, the helper is never asked to store refused credentials.
    let helper = CredHelper::install();
    let env = Env::new().with_helper(&helper);
    env.write_config(&json!({"credsStore": HELPER}));
    let before = fs::read(env.config_path()).expect("read config");
    let login = env.login(&project, &host, &wrong.user, &wrong.password);
    t.output("login (credsStore)", &login);
    login.expect_code(1);
    assert_eq!(
        helper.calls(),
        Vec::<String>::new(),
        "no store call\n{login}"
    );
    assert_eq!(helper.stored(), None);
    assert_eq!(fs::read(env.config_path()).expect("read config"), before);

    t.dir(project.path());
    t.assert_free_of(&[&wrong, &right]);
}

#[test]
fn login_with_a_creds_store_hands_the_credentials_to_the_helper() {
    let secret = Secret::new(USER);
    let registry = Registry::with_htpasswd(&secret.user, &secret.password);
    let host = registry.host();
    let helper = CredHelper::install();
    let env = Env::new().with_helper(&helper);
    env.write_config(&json!({"credsStore": HELPER}));
    let project = project_for(&host, "");
    let mut t = Transcript::default();

    let login = env.login(&project, &host, &secret.user, &secret.password);
    t.output("login", &login);
    login.success();
    assert_eq!(helper.calls(), ["store"], "the helper's store ran once");
    let stored = helper.stored().expect("the helper received credentials");
    assert_eq!(
        stored,
        json!({"ServerURL": host, "Username": secret.user, "Secret": secret.password}),
        "docker-credential-{HELPER} store got the server, user and secret"
    );

    // The secret went to the helper, not into config.json.
    t.dir(env.docker_config.path());
    let config = json_doc(
        &fs::read_to_string(env.config_path()).expect("config.json"),
        "config.json",
    );
    assert_eq!(config["credsStore"], HELPER, "credsStore kept: {config}");

    // And apply finds them through the store.
    let apply = env.run(&project, &["-v", "apply", "--format", "json"]);
    t.output("apply", &apply);
    apply.success();
    assert!(helper.gets().contains(&host), "{:?}", helper.gets());
    let digest = only_artifact(&json_doc(&apply.stdout, "apply --format json"))["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let manifest = skopeo_raw_with_creds(&reference(&host), &secret.user, &secret.password)
        .expect("skopeo reads the pushed manifest");
    assert_manifest(&manifest, &digest, &project.read(SPEC));

    t.dir(project.path());
    t.assert_free_of(&[&secret]);
}

// ---------------------------------------------------------------------------
// TLS with a private CA
// ---------------------------------------------------------------------------

/// A CA and a server certificate for `ip`, made with openssl.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new(ip: IpAddr) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("eigenpub-it-pki-")
            .tempdir()
            .expect("create pki dir");
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let mut cmd = Command::new("openssl");
            cmd.args(args).current_dir(d);
            let out = run(cmd);
            assert_eq!(out.code, 0, "openssl {args:?} failed: {out}");
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            &[
                &["req", "-x509", "-nodes", "-days", "2"][..],
                &ec[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-subj",
                    "/CN=eigenpub test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ][..],
            ]
            .concat(),
        );
        let cn = format!("/CN={ip}");
        openssl(
            &[
                &["req", "-new", "-nodes"][..],
                &ec[..],
                &["-keyout", "server.key", "-out", "server.csr", "-subj", &cn][..],
            ]
            .concat(),
        );
        fs::write(
            d.join("server.ext"),
            format!(
                "subjectAltName=IP:{ip}\n\
                 basicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=serverAuth\n"
            ),
        )
        .expect("write server.ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        Pki { dir }
    }

    fn ca_pem(&self) -> Vec<u8> {
        fs::read(self.dir.path().join("ca.pem")).expect("read ca.pem")
    }

    fn server(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("server.pem"),
            self.dir.path().join("server.key"),
        )
    }

    /// A folder for skopeo's `--cert-dir` (`ca.crt` = the CA).
    fn cert_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("skopeo-certs");
        fs::create_dir_all(&dir).expect("create cert dir");
        fs::write(dir.join("ca.crt"), self.ca_pem()).expect("write ca.crt");
        dir
    }
}

/// How an [`OwnRegistry`] wants clients to authenticate.
enum Auth<'a> {
    Anonymous,
    /// HTTP basic auth against an htpasswd file with this one user.
    Htpasswd(&'a Secret),
    /// Bearer tokens from this token service (distribution's `auth.token`).
    Token(&'a TokenServer),
}

/// A `docker-registry` of this file's own, on `ip:<free port>`, optionally over TLS
/// and behind htpasswd or a token service; killed on drop.
struct OwnRegistry {
    _dir: TempDir,
    child: Child,
    addr: String,
    log_path: PathBuf,
}

impl OwnRegistry {
    fn start(ip: IpAddr, tls: Option<(PathBuf, PathBuf)>, auth: Auth) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("eigenpub-it-own-registry-")
            .tempdir()
            .expect("create registry dir");
        let auth_yaml = match auth {
            Auth::Anonymous => String::new(),
            Auth::Token(server) => server.registry_yaml(),
            Auth::Htpasswd(secret) => {
                let mut cmd = Command::new("htpasswd");
                cmd.args(["-Bbn", &secret.user, &secret.password]);
                let out = run(cmd);
                assert_eq!(out.code, 0, "htpasswd failed: {out}");
                let path = dir.path().join("htpasswd");
                fs::write(&path, out.stdout.trim_end().to_string() + "\n").expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    path.display()
                )
            }
        };
        let tls_yaml = match &tls {
            None => String::new(),
            Some((cert, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
        };
        let log_path = dir.path().join("registry.log");
        let config_path = dir.path().join("config.yml");
        let mut failures = Vec::new();
        for _attempt in 0..5 {
            let port = TcpListener::bind((ip, 0))
                .and_then(|l| l.local_addr())
                .expect("bind a free port")
                .port();
            let addr = match ip {
                IpAddr::V4(_) => format!("{ip}:{port}"),
                IpAddr::V6(_) => format!("[{ip}]:{port}"),
            };
            fs::write(
                &config_path,
                format!(
                    "version: 0.1\n\
                     log:\n  level: info\n  accesslog:\n    disabled: false\n\
                     storage:\n  filesystem:\n    rootdirectory: {data}\n\
                     http:\n  addr: {addr}\n{tls_yaml}\
                     {auth_yaml}",
                    data = dir.path().join("data").display(),
                ),
            )
            .expect("write registry config");
            let _ = fs::remove_file(&log_path);
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .expect("open registry log");
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().expect("dup log fd")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawn docker-registry");
            // distribution logs "listening on <addr>" once the socket is bound, and
            // exits if it cannot bind; a TCP connect then confirms it.
            let deadline = Instant::now() + Duration::from_secs(10);
            let ready = loop {
                if let Ok(Some(status)) = child.try_wait() {
                    break Err(format!("exited early with {status}"));
                }
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                if log.contains(&format!("listening on {addr}"))
                    && TcpStream::connect(&addr).is_ok()
                {
                    break Ok(());
                }
                if Instant::now() > deadline {
                    break Err("not listening within 10 s".to_string());
                }
                thread::sleep(Duration::from_millis(50));
            };
            match ready {
                Ok(()) => {
                    return OwnRegistry {
                        _dir: dir,
                        child,
                        addr,
                        log_path,
                    };
                }
                Err(why) => {
                    failures.push(format!(
                        "{addr}: {why}\n{}",
                        fs::read_to_string(&log_path).unwrap_or_default()
                    ));
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        panic!("docker-registry did not start:\n{}", failures.join("\n"));
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `skopeo inspect --raw` over verified TLS (the CA in `cert_dir`), optionally
/// with credentials.
fn skopeo_raw_tls(reference: &str, cert_dir: &Path, creds: Option<&Secret>) -> Option<Vec<u8>> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw", "--tls-verify=true", "--cert-dir"])
        .arg(cert_dir);
    match creds {
        Some(s) => cmd.arg("--creds").arg(format!("{}:{}", s.user, s.password)),
        None => cmd.arg("--no-creds"),
    };
    cmd.arg(format!("docker://{reference}"));
    // Never read the developer's container auth file.
    cmd.env("REGISTRY_AUTH_FILE", cert_dir.join("no-auth.json"));
    let out = run_bytes(cmd);
    (out.code == 0).then_some(out.stdout)
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn https_settings(host: &str, ca_file: Option<&str>) -> String {
    let ca = ca_file
        .map(|f| format!("ca-file = \"{f}\"\n"))
        .unwrap_or_default();
    format!("\n[registries.\"{host}\"]\nplain-http = false\n{ca}")
}

#[test]
fn tls_registry_signed_by_an_unknown_ca_is_refused_with_ca_file_advice() {
    let pki = Pki::new(LOOPBACK);
    let registry = OwnRegistry::start(LOOPBACK, Some(pki.server()), Auth::Anonymous);
    let host = registry.addr.clone();
    let project = project_for(&host, &https_settings(&host, None));
    let env = Env::new();

    let plan = env.run(&project, &["plan"]);
    plan.expect_code(1);
    assert_says(&plan, &[&host, "not trusted", "ca-file"]);
    let d = json_diagnostic(&env.run(&project, &["plan", "--diagnostics", "json"]));
    assert_eq!(d["code"], "eigenpub::registry::tls", "{d}");
    assert!(
        d["message"]
            .as_str()
            .is_some_and(|m| m.contains(&host) && m.contains("not trusted")),
        "{d}"
    );
    assert!(
        d["help"].as_str().is_some_and(|h| h.contains("ca-file")),
        "{d}"
    );
    // The refusal happened in the handshake: no request reached the registry.
    assert!(
        !registry.log().contains("\"HEAD /v2/"),
        "no request was served over an untrusted connection:\n{}",
        registry.log()
    );
}

#[test]
fn tls_registry_with_the_project_ca_file_is_published_to() {
    let pki = Pki::new(LOOPBACK);
    let registry = OwnRegistry::start(LOOPBACK, Some(pki.server()), Auth::Anonymous);
    let host = registry.addr.clone();
    let project = project_for(&host, &https_settings(&host, Some("certs/ca.pem")));
    project.write("certs/ca.pem", pki.ca_pem());
    let env = Env::new();

    let apply = env.run(&project, &["apply", "--format", "json"]);
    apply.success();
    let digest = only_artifact(&json_doc(&apply.stdout, "apply --format json"))["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let manifest = skopeo_raw_tls(&reference(&host), &pki.cert_dir(), None)
        .expect("skopeo reads the manifest over verified TLS");
    assert_manifest(&manifest, &digest, &project.read(SPEC));
    let plan = env.run(&project, &["plan", "--detailed-exitcode"]);
    plan.expect_code(0);
}

#[test]
fn login_and_publish_over_tls_with_the_project_ca_file() {
    let secret = Secret::new(USER);
    let pki = Pki::new(LOOPBACK);
    let registry = OwnRegistry::start(LOOPBACK, Some(pki.server()), Auth::Htpasswd(&secret));
    let host = registry.addr.clone();
    let project = project_for(&host, &https_settings(&host, Some("ca.pem")));
    project.write("ca.pem", pki.ca_pem());
    let env = Env::new();
    let mut t = Transcript::default();

    // login reads plain-http and ca-file from the project file in the current folder.
    let login = env.login(&project, &host, &secret.user, &secret.password);
    t.output("login", &login);
    login.success();
    let cert_dir = pki.cert_dir();
    let read = |r: &str| skopeo_raw_tls(r, &cert_dir, Some(&secret));
    let published = publish_twice(&project, &env, &host, &read);
    t.pieces.extend(published.pieces);
    t.assert_free_of(&[&secret]);
}

// ---------------------------------------------------------------------------
// Bearer tokens: a token service of our own, as GHCR and Docker Hub have
// ---------------------------------------------------------------------------

const TOKEN_SERVICE: &str = "eigenpub-test-registry";
const TOKEN_ISSUER: &str = "eigenpub-test-issuer";
/// distribution accepts a token until its `exp` claim plus this much (its
/// `token.Leeway`, for clock skew), and before `nbf` minus this much.
const DISTRIBUTION_LEEWAY_SECS: u64 = 60;

/// How long the tokens of a [`TokenServer`] live.
#[derive(Clone, Copy, Debug)]
enum Lifetime {
    /// `expires_in: 300`, `exp` = now + 300 s: never an issue within a test.
    Long,
    /// `expires_in: N`, and an `exp` claim that makes the registry itself refuse
    /// the token once N s have passed (up to 1 s more, JWT times being whole
    /// seconds): `ceil(now + N)` minus distribution's leeway.
    Enforced(u64),
}

impl Lifetime {
    fn expires_in(self) -> u64 {
        match self {
            Lifetime::Long => 300,
            Lifetime::Enforced(n) => n,
        }
    }

    /// The `exp` claim of a token issued at `now` (UNIX seconds, fractional).
    fn exp_claim(self, now: f64) -> u64 {
        match self {
            Lifetime::Long => now as u64 + 300,
            Lifetime::Enforced(n) => (now + n as f64).ceil() as u64 - DISTRIBUTION_LEEWAY_SECS,
        }
    }
}

/// One request the token service answered.
#[derive(Clone, Debug)]
struct TokenRequest {
    /// Every `scope` parameter, decoded (none for the API root).
    scopes: Vec<String>,
    service: Option<String>,
    /// `None`: no Authorization header; `Some(ok)`: Basic credentials, right or not.
    credentials: Option<bool>,
    /// The token issued, if any.
    token: Option<String>,
    /// The HTTP status answered.
    status: u16,
    /// When the request arrived.
    at: Instant,
}

/// An answer a [`TokenServer`] gives instead of a token, whatever the request: an
/// overloaded or rate-limited service.
#[derive(Clone, Copy, Debug)]
struct Overload {
    /// Status line, e.g. `"503 Service Unavailable"`.
    status: &'static str,
    /// `Retry-After` in seconds, if sent.
    retry_after: Option<u32>,
}

/// A token service on loopback, answering `GET /token?scope=…&service=…` for
/// one user (HTTP basic auth) with an RS256 JWT that distribution accepts: signed
/// with `openssl dgst` by a key whose self-signed certificate is the registry's
/// `rootcertbundle` and rides in the token's `x5c` header.
struct TokenServer {
    dir: TempDir,
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    log: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenServer {
    fn start(secret: &Secret) -> TokenServer {
        TokenServer::start_with_lifetime(secret, Lifetime::Long)
    }

    fn start_with_lifetime(secret: &Secret, lifetime: Lifetime) -> TokenServer {
        TokenServer::start_full(secret, lifetime, Vec::new())
    }

    /// A service that answers its first requests with `overloads`, in order, then
    /// normally.
    fn start_overloaded(secret: &Secret, overloads: Vec<Overload>) -> TokenServer {
        TokenServer::start_full(secret, Lifetime::Long, overloads)
    }

    fn start_full(secret: &Secret, lifetime: Lifetime, overloads: Vec<Overload>) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("eigenpub-it-token-")
            .tempdir()
            .expect("create token dir");
        let d = dir.path().to_path_buf();
        let openssl = |args: &[&str]| {
            let mut cmd = Command::new("openssl");
            cmd.args(args).current_dir(&d);
            let out = run(cmd);
            assert_eq!(out.code, 0, "openssl {args:?} failed: {out}");
        };
        openssl(&[
            "req",
            "-x509",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-days",
            "2",
            "-keyout",
            "token.key",
            "-out",
            "token.pem",
            "-subj",
            "/CN=eigenpub test token signer",
        ]);
        openssl(&[
            "x509",
            "-in",
            "token.pem",
            "-outform",
            "DER",
            "-out",
            "token.der",
        ]);
        let x5c = base64::engine::general_purpose::STANDARD
            .encode(fs::read(d.join("token.der")).expect("read token.der"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token service");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let expected = format!("Basic {}", secret.basic());
        let user = secret.user.clone();
        let thread = {
            let (stop, log) = (stop.clone(), log.clone());
            thread::spawn(move || {
                let mut issued = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            issued += 1;
                            let signer = Signer {
                                dir: &d,
                                x5c: &x5c,
                                user: &user,
                                n: issued,
                                lifetime,
                            };
                            let overload = overloads.get(issued as usize - 1);
                            if let Some(request) = serve_token(stream, &expected, &signer, overload)
                            {
                                log.lock().unwrap_or_else(|e| e.into_inner()).push(request);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        TokenServer {
            dir,
            port,
            stop,
            thread: Some(thread),
            log,
        }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    fn registry_yaml(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            self.realm(),
            self.dir.path().join("token.pem").display()
        )
    }

    fn requests(&self) -> Vec<TokenRequest> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn clear(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Signer<'a> {
    dir: &'a Path,
    x5c: &'a str,
    user: &'a str,
    n: u32,
    lifetime: Lifetime,
}

impl Signer<'_> {
    /// An RS256 JWT granting `scopes` (`repository:<name>:<actions>`).
    fn token(&self, scopes: &[String]) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now_exact = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        let now = now_exact as u64;
        let access: Vec<Value> = scopes
            .iter()
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = json!({
            "iss": TOKEN_ISSUER, "sub": self.user, "aud": TOKEN_SERVICE,
            "exp": self.lifetime.exp_claim(now_exact), "nbf": now - 10, "iat": now,
            "jti": format!("token-{}", self.n), "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let input = self.dir.join(format!("input-{}", self.n));
        let sig = self.dir.join(format!("sig-{}", self.n));
        fs::write(&input, &signing_input).expect("write signing input");
        let mut cmd = Command::new("openssl");
        cmd.args(["dgst", "-sha256", "-sign", "token.key", "-out"])
            .arg(&sig)
            .arg(&input)
            .current_dir(self.dir);
        let out = run(cmd);
        assert_eq!(out.code, 0, "openssl dgst failed: {out}");
        let signature = fs::read(&sig).expect("read signature");
        format!("{signing_input}.{}", b64(&signature))
    }
}

/// Answer one connection: `overload` if given, else 200 with a token for the right
/// credentials, 401 else.
fn serve_token(
    mut stream: TcpStream,
    expected: &str,
    signer: &Signer,
    overload: Option<&Overload>,
) -> Option<TokenRequest> {
    stream.set_nonblocking(false).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines.next()?.split(' ').nth(1)?.to_string();
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_string());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let mut request = TokenRequest {
        scopes: params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(String::from).collect::<Vec<_>>())
            .collect(),
        service: params
            .iter()
            .find(|(k, _)| k == "service")
            .map(|(_, v)| v.clone()),
        credentials: authorization.as_deref().map(|a| a == expected),
        token: None,
        status: 200,
        at: Instant::now(),
    };
    let mut extra_headers = String::new();
    let (status, body) = if let Some(overload) = overload {
        if let Some(secs) = overload.retry_after {
            extra_headers = format!("Retry-After: {secs}\r\n");
        }
        (
            overload.status,
            json!({"errors": [{"code": "UNAVAILABLE", "message": "overloaded, try again"}]})
                .to_string(),
        )
    } else if path != "/token" {
        ("404 Not Found", "{}".to_string())
    } else if request.credentials != Some(true) {
        (
            "401 Unauthorized",
            json!({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}).to_string(),
        )
    } else {
        let token = signer.token(&request.scopes);
        request.token = Some(token.clone());
        (
            "200 OK",
            json!({"token": token, "access_token": token, "expires_in": signer.lifetime.expires_in()})
                .to_string(),
        )
    };
    request.status = status
        .split(' ')
        .next()
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n{body}",
        body.len()
    );
    Some(request)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                }
                Err(_) => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Token secrets for the leak check: each issued token is a bearer secret too.
fn token_secrets(server: &TokenServer) -> Vec<Secret> {
    server
        .requests()
        .into_iter()
        .filter_map(|r| r.token)
        .map(|token| Secret {
            user: String::new(),
            password: token,
        })
        .collect()
}

#[test]
fn bearer_token_registry_gets_credentials_only_at_its_token_service() {
    let secret = Secret::new(USER);
    let tokens = TokenServer::start(&secret);
    let registry = OwnRegistry::start(LOOPBACK, None, Auth::Token(&tokens));
    let host = registry.addr.clone();
    let env = Env::new();
    env.write_config(&json!({"auths": {&host: {"auth": secret.basic()}}}));
    let project = project_for(&host, "");
    let repo = format!("acme/{AVS}");

    // A plan reads: one token, for pull, fetched once.
    let plan = env.run(&project, &["-v", "plan"]);
    plan.success();
    let asked = tokens.requests();
    assert!(
        asked.iter().all(|r| r.credentials == Some(true)),
        "every token request carried the right credentials: {asked:?}"
    );
    assert!(
        asked
            .iter()
            .all(|r| r.service.as_deref() == Some(TOKEN_SERVICE)),
        "the challenge's service is passed on: {asked:?}"
    );
    let pulls = asked
        .iter()
        .filter(|r| r.scopes == [format!("repository:{repo}:pull")])
        .count();
    assert_eq!(
        (pulls, asked.len()),
        (1, 1),
        "one token for the pull scope: {asked:?}"
    );
    let mut secrets = token_secrets(&tokens);

    // An apply writes: a pull,push token, fetched once.
    tokens.clear();
    let apply = env.run(&project, &["-v", "apply", "--format", "json"]);
    apply.success();
    let asked = tokens.requests();
    let push_scope = format!("repository:{repo}:pull,push");
    assert!(
        asked.iter().all(|r| r.credentials == Some(true)),
        "{asked:?}"
    );
    assert_eq!(
        asked
            .iter()
            .filter(|r| r.scopes == [push_scope.clone()])
            .count(),
        1,
        "one token for {push_scope}: {asked:?}"
    );
    secrets.extend(token_secrets(&tokens));
    let digest = only_artifact(&json_doc(&apply.stdout, "apply --format json"))["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let manifest = skopeo_raw_with_creds(&reference(&host), &secret.user, &secret.password)
        .expect("skopeo reads the manifest");
    assert_manifest(&manifest, &digest, &project.read(SPEC));

    let mut t = Transcript::default();
    t.output("plan", &plan);
    t.output("apply", &apply);
    t.dir(project.path());
    let mut all: Vec<&Secret> = secrets.iter().collect();
    all.push(&secret);
    t.assert_free_of(&all);
}

#[test]
fn bearer_token_service_refusing_the_credentials_names_their_origin_and_how_to_log_in() {
    let right = Secret::new(USER);
    let wrong = Secret::new(USER);
    let tokens = TokenServer::start(&right);
    let registry = OwnRegistry::start(LOOPBACK, None, Auth::Token(&tokens));
    let host = registry.addr.clone();
    let prefix = env_prefix(
        registry
            .addr
            .rsplit_once(':')
            .expect("port")
            .1
            .parse()
            .expect("port"),
    );
    let env = Env::new()
        .var(format!("{prefix}_USERNAME"), &wrong.user)
        .var(format!("{prefix}_PASSWORD"), &wrong.password);
    let project = project_for(&host, "");
    let plan = env.run(&project, &["-v", "plan"]);
    plan.expect_code(1);
    assert_says(
        &plan,
        &[
            &host,
            "refused",
            "environment",
            &format!("docker login {host}"),
            &format!("eigenpub login {host}"),
        ],
    );
    assert!(
        tokens
            .requests()
            .iter()
            .all(|r| r.credentials == Some(false)),
        "{:?}",
        tokens.requests()
    );
    let mut t = Transcript::default();
    t.output("plan", &plan);
    t.dir(project.path());
    t.assert_free_of(&[&wrong, &right]);
}

#[test]
fn login_against_a_bearer_token_registry_checks_the_credentials_at_the_token_service() {
    let secret = Secret::new(USER);
    let wrong = Secret::new(USER);
    let tokens = TokenServer::start(&secret);
    let registry = OwnRegistry::start(LOOPBACK, None, Auth::Token(&tokens));
    let host = registry.addr.clone();
    let env = Env::new();
    let project = project_for(&host, "");

    let refused = env.login(&project, &host, &wrong.user, &wrong.password);
    refused.expect_code(1);
    assert!(
        !env.config_path().exists(),
        "a refused login stores nothing"
    );

    let login = env.login(&project, &host, &secret.user, &secret.password);
    login.success();
    let config = json_doc(
        &fs::read_to_string(env.config_path()).expect("config.json"),
        "config.json",
    );
    assert_eq!(config["auths"][&host]["auth"], secret.basic(), "{config}");
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| r.credentials == Some(true)),
        "the token service checked the credentials: {:?}",
        tokens.requests()
    );
    let apply = env.run(&project, &["apply"]);
    apply.success();

    let mut t = Transcript::default();
    t.output("refused login", &refused);
    t.output("login", &login);
    t.output("apply", &apply);
    t.dir(project.path());
    let token_secrets = token_secrets(&tokens);
    let mut all: Vec<&Secret> = token_secrets.iter().collect();
    all.extend([&secret, &wrong]);
    t.assert_free_of(&all);
}

/// The access-log lines of `registry` up to and including the first one containing
/// `marker`, waiting (up to 10 s) for it: a request with `marker` in its path
/// made after everything else has been answered flushes the log.
fn access_log_through(registry: &OwnRegistry, marker: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = registry.log();
        if let Some(at) = log.find(marker) {
            let end = log[at..].find('\n').map_or(log.len(), |n| at + n);
            return log[..end].lines().map(String::from).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{marker} never appeared in the registry's access log:\n{log}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_refreshed_token_is_used_after_expiry_in_long_runs() {
    const LIFETIME: u64 = 2;
    const ARTIFACTS: usize = 12;
    let secret = Secret::new(USER);
    let tokens = TokenServer::start_with_lifetime(&secret, Lifetime::Enforced(LIFETIME));
    let registry = OwnRegistry::start(LOOPBACK, None, Auth::Token(&tokens));
    let host = registry.addr.clone();
    let env = Env::new();
    env.write_config(&json!({"auths": {&host: {"auth": secret.basic()}}}));
    let repo = format!("acme/{AVS}");

    // Twelve operator sets of one AVS: twelve tags of one repository, so one
    // token scope serves the whole run; eight requests a second, two at a time,
    // make the run outlive several tokens.
    let project = Project::new();
    let mut opsets = String::new();
    for n in 0..ARTIFACTS {
        let rel = format!("avs/{AVS}/opset-{n}.yaml");
        project.write(&rel, spec_yaml(&format!("image-{n}")));
        opsets.push_str(&format!("{n} = \"{rel}\"\n"));
    }
    project.write(
        "eigenruntime.toml",
        format!(
            "[defaults]\n\
             registry = \"{host}/acme\"\n\
             created = \"2025-01-01T00:00:00Z\"\n\
             \n\
             [registries.\"{host}\"]\n\
             requests-per-second = 8\n\
             \n\
             [[avs]]\n\
             name = \"{AVS}\"\n\
             version = 3\n\
             [avs.operator-sets]\n\
             {opsets}"
        ),
    );

    let started = Instant::now();
    let apply = env.run(
        &project,
        &["-v", "--concurrency", "2", "apply", "--format", "json"],
    );
    let elapsed = started.elapsed();
    apply.success();
    assert!(
        elapsed >= Duration::from_secs(3 * LIFETIME),
        "the run must outlive several {LIFETIME} s tokens to test anything; it took {elapsed:?}\n{apply}"
    );

    // Every request to the registry, then one of ours with the first token issued,
    // long expired by now: the registry must refuse it (else it does not enforce
    // the lifetime, and the absence of refusals below would prove nothing).
    let asked = tokens.requests();
    let first_token = asked
        .iter()
        .find_map(|r| r.token.clone())
        .expect("the token service issued a token");
    let marker = "expired-token-probe";
    let bearer = format!("Bearer {first_token}");
    let probe = harness::http_request(
        "GET",
        &host,
        &format!("/v2/{repo}/tags/list?{marker}"),
        &[("Authorization", bearer.as_str())],
        None,
    )
    .expect("probe the registry");
    assert_eq!(
        probe.status,
        401,
        "the registry refuses a token {LIFETIME} s past its lifetime: {}",
        String::from_utf8_lossy(&probe.body)
    );
    let lines = access_log_through(&registry, marker);
    let statuses: Vec<(String, String, u16)> = lines
        .iter()
        .filter(|l| l.contains("\"eigenpub/"))
        .filter_map(|l| harness::parse_access_log_line(l))
        .map(|r| (r.method, r.path, r.status))
        .collect();
    assert!(
        statuses.len() >= 5 * ARTIFACTS,
        "every artifact took several requests: {statuses:#?}"
    );
    let refusals: Vec<usize> = statuses
        .iter()
        .enumerate()
        .filter(|(_, (_, _, status))| *status == 401)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        refusals,
        [0],
        "only the very first request is refused (the challenge that names the token \
         service); tokens are renewed before they expire, not after the registry refuses \
         them. {} requests in {elapsed:?}, token fetches at {:?} s:\n{statuses:#?}",
        statuses.len(),
        asked
            .iter()
            .map(|r| format!(
                "{:.2}",
                r.at.saturating_duration_since(started).as_secs_f64()
            ))
            .collect::<Vec<_>>(),
    );

    // The token service: always the right credentials, one scope, asked again and
    // again as its tokens ran out.
    let push_scope = format!("repository:{repo}:pull,push");
    assert!(
        asked.iter().all(|r| r.credentials == Some(true)),
        "{asked:?}"
    );
    assert!(
        asked.iter().all(|r| r.scopes == [push_scope.clone()]),
        "every token was for {push_scope}: {asked:?}"
    );
    assert!(
        asked.len() >= 2,
        "a run of {elapsed:?} with {LIFETIME} s tokens asks for {push_scope} more than once: {asked:?}"
    );

    // Every artifact is there, as planned and pushed, read back by skopeo.
    let doc = json_doc(&apply.stdout, "apply --format json");
    let artifacts = doc["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("no artifacts array in {doc}"));
    assert_eq!(artifacts.len(), ARTIFACTS, "{doc}");
    for n in 0..ARTIFACTS {
        let tag = format!("opset-{n}-v3");
        let artifact = artifacts
            .iter()
            .find(|a| a["tag"] == tag.as_str())
            .unwrap_or_else(|| panic!("no artifact tagged {tag} in {doc}"));
        let digest = artifact["digest"].as_str().expect("digest");
        let manifest = skopeo_raw_with_creds(
            &format!("{host}/{repo}:{tag}"),
            &secret.user,
            &secret.password,
        )
        .unwrap_or_else(|| panic!("skopeo reads {tag}"));
        assert_manifest(
            &manifest,
            digest,
            &project.read(&format!("avs/{AVS}/opset-{n}.yaml")),
        );
    }

    let mut t = Transcript::default();
    t.output("apply", &apply);
    t.dir(project.path());
    let token_secrets = token_secrets(&tokens);
    let mut all: Vec<&Secret> = token_secrets.iter().collect();
    all.push(&secret);
    t.assert_free_of(&all);
}

/// A token of our own from `tokens` for `scope`, fetched the way any client does.
fn own_token(tokens: &TokenServer, secret: &Secret, scope: &str) -> String {
    let answer = harness::http_request(
        "GET",
        &format!("127.0.0.1:{}", tokens.port),
        &format!("/token?scope={scope}&service={TOKEN_SERVICE}"),
        &[],
        Some((&secret.user, &secret.password)),
    )
    .expect("ask the token service");
    assert_eq!(answer.status, 200, "the token service grants {scope}");
    json_doc(&String::from_utf8_lossy(&answer.body), "token answer")["token"]
        .as_str()
        .expect("a token")
        .to_string()
}

/// The requests eigenpub made to `registry` (its user agent), from the access log,
/// flushed by a request of ours whose path holds `marker`.
fn eigenpub_requests(registry: &OwnRegistry, marker: &str) -> Vec<harness::Request> {
    let probe = harness::http_request("GET", &registry.addr, &format!("/v2/?{marker}"), &[], None)
        .expect("probe the registry");
    assert_eq!(probe.status, 401, "the registry demands a token");
    access_log_through(registry, marker)
        .iter()
        .filter(|l| l.contains("\"eigenpub/"))
        .filter_map(|l| harness::parse_access_log_line(l))
        .collect()
}

#[test]
fn a_blob_shared_by_two_repositories_is_published_on_a_token_registry() {
    // Two AVSs publish the same spec file, one artifact at a time: the second
    // repository's layer is one the first already holds, so eigenpub tries to mount
    // it. The token service grants exactly the scope asked, one repository's, and
    // distribution refuses a mount from a repository the token has no pull on: the
    // upload must then go ahead in the second repository alone.
    let secret = Secret::new(USER);
    let tokens = TokenServer::start(&secret);
    let registry = OwnRegistry::start(LOOPBACK, None, Auth::Token(&tokens));
    let host = registry.addr.clone();
    let env = Env::new();
    env.write_config(&json!({"auths": {&host: {"auth": secret.basic()}}}));
    let shared = spec_yaml("shared-image");
    let layer = sha256_digest(shared.as_bytes());
    let project = Project::new();
    project
        .write(
            "eigenruntime.toml",
            format!(
                "[defaults]\n\
                 registry = \"{host}/acme\"\n\
                 created = \"2025-01-01T00:00:00Z\"\n\
                 \n\
                 [[avs]]\n\
                 name = \"alpha\"\n\
                 version = 3\n\
                 [avs.operator-sets]\n\
                 0 = \"shared.yaml\"\n\
                 \n\
                 [[avs]]\n\
                 name = \"beta\"\n\
                 version = 3\n\
                 [avs.operator-sets]\n\
                 0 = \"shared.yaml\"\n"
            ),
        )
        .write("shared.yaml", &shared);

    let apply = env.run(
        &project,
        &["-v", "--concurrency", "1", "apply", "--format", "json"],
    );
    apply.success();

    // The premise: every token was for one repository, exactly as asked.
    let asked = tokens.requests();
    assert!(
        asked.iter().all(|r| r.credentials == Some(true)
            && r.scopes.len() == 1
            && r.scopes[0].starts_with("repository:acme/")),
        "every token is scoped to one repository: {asked:?}"
    );

    // Both tags are there, as pushed, read back by skopeo.
    let doc = json_doc(&apply.stdout, "apply --format json");
    for avs in ["alpha", "beta"] {
        let artifact = doc["artifacts"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|x| x["repository"] == format!("{host}/acme/{avs}").as_str())
            })
            .unwrap_or_else(|| panic!("no artifact for acme/{avs} in {doc}"));
        assert_eq!(artifact["tag"], TAG, "{doc}");
        let digest = artifact["digest"].as_str().expect("digest");
        let manifest = skopeo_raw_with_creds(
            &format!("{host}/acme/{avs}:{TAG}"),
            &secret.user,
            &secret.password,
        )
        .unwrap_or_else(|| panic!("skopeo reads acme/{avs}:{TAG}"));
        assert_manifest(&manifest, digest, shared.as_bytes());
    }

    // The mount from acme/alpha was refused, and the layer was then uploaded to
    // acme/beta on its own: a mount from acme/beta itself, i.e. a plain upload.
    let requests = eigenpub_requests(&registry, "shared-blob-probe");
    let beta_uploads = "/v2/acme/beta/blobs/uploads/";
    let from_alpha = format!("{beta_uploads}?mount={layer}&from=acme/alpha");
    let from_beta = format!("{beta_uploads}?mount={layer}&from=acme/beta");
    let posts: Vec<(usize, &harness::Request)> = requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.method == "POST" && r.path.contains(&format!("mount={layer}")))
        .filter(|(_, r)| r.path.starts_with(beta_uploads))
        .collect();
    let first_from_alpha = posts
        .iter()
        .find(|(_, r)| r.path == from_alpha)
        .unwrap_or_else(|| panic!("no mount of the layer from acme/alpha: {requests:#?}"));
    assert_eq!(
        first_from_alpha.1.status, 401,
        "the token for acme/beta alone cannot mount from acme/alpha: {requests:#?}"
    );
    assert!(
        posts
            .iter()
            .filter(|(_, r)| r.path == from_alpha)
            .all(|(_, r)| r.status == 401),
        "{requests:#?}"
    );
    let fallback = posts
        .iter()
        .find(|(i, r)| *i > first_from_alpha.0 && r.path == from_beta)
        .unwrap_or_else(|| {
            panic!("the refused mount was not followed by {from_beta}: {requests:#?}")
        });
    assert_eq!(fallback.1.status, 202, "an upload session: {requests:#?}");
    assert!(
        requests[fallback.0..].iter().any(|r| r.method == "PUT"
            && r.path.starts_with(beta_uploads)
            && r.path.contains(&format!("digest={layer}"))
            && r.status == 201),
        "the layer's bytes were uploaded to acme/beta: {requests:#?}"
    );

    // And acme/beta serves the layer, asked with a token of our own.
    let token = own_token(&tokens, &secret, "repository:acme/beta:pull");
    let blob = harness::http_request(
        "GET",
        &host,
        &format!("/v2/acme/beta/blobs/{layer}"),
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    )
    .expect("GET the layer");
    assert_eq!(
        (blob.status, blob.body.as_slice()),
        (200, shared.as_bytes()),
        "acme/beta serves the layer"
    );

    let mut t = Transcript::default();
    t.output("apply", &apply);
    t.dir(project.path());
    let token_secrets = token_secrets(&tokens);
    let mut all: Vec<&Secret> = token_secrets.iter().collect();
    all.push(&secret);
    t.assert_free_of(&all);
}

#[test]
fn a_token_service_that_is_briefly_overloaded_is_retried() {
    let secret = Secret::new(USER);
    let tokens = TokenServer::start_overloaded(
        &secret,
        vec![
            Overload {
                status: "503 Service Unavailable",
                retry_after: None,
            },
            Overload {
                status: "429 Too Many Requests",
                retry_after: Some(1),
            },
        ],
    );
    let registry = OwnRegistry::start(LOOPBACK, None, Auth::Token(&tokens));
    let host = registry.addr.clone();
    let env = Env::new();
    env.write_config(&json!({"auths": {&host: {"auth": secret.basic()}}}));
    let project = project_for(&host, "");

    let plan = env.run(&project, &["-v", "plan"]);
    plan.success();
    assert!(
        plan.stdout_lines()
            .iter()
            .any(|l| l.starts_with(&format!("+ create {} sha256:", reference(&host)))),
        "{plan}"
    );

    let asked = tokens.requests();
    let statuses: Vec<u16> = asked.iter().map(|r| r.status).collect();
    assert!(
        asked.len() >= 2,
        "the token service was asked again: {asked:?}"
    );
    assert_eq!(
        statuses,
        [503, 429, 200],
        "asked until it answered, then no more: {asked:?}"
    );
    assert!(
        asked
            .iter()
            .all(|r| r.credentials == Some(true)
                && r.scopes == [format!("repository:acme/{AVS}:pull")]),
        "every attempt is the same request: {asked:?}"
    );
    let waited = asked[2].at.saturating_duration_since(asked[1].at);
    assert!(
        waited >= Duration::from_millis(900),
        "Retry-After: 1 was honoured, the next attempt came {waited:?} after the 429"
    );

    // The registry then accepted the token: only the first request was refused.
    let requests = eigenpub_requests(&registry, "overload-probe");
    assert!(
        requests.len() >= 2 && requests[0].status == 401,
        "{requests:#?}"
    );
    assert!(
        requests[1..].iter().all(|r| r.status != 401),
        "{requests:#?}"
    );

    let mut t = Transcript::default();
    t.output("plan", &plan);
    let token_secrets = token_secrets(&tokens);
    let mut all: Vec<&Secret> = token_secrets.iter().collect();
    all.push(&secret);
    t.assert_free_of(&all);
}

// ---------------------------------------------------------------------------
// Clear text off this machine
// ---------------------------------------------------------------------------

/// A local IPv4 address that is not loopback (the one the default route uses),
/// if this machine has one. No packet is sent: connecting a UDP socket only
/// picks a route.
fn non_loopback_local_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("203.0.113.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        return None;
    }
    TcpListener::bind((ip, 0)).ok()?;
    Some(ip)
}

#[test]
fn credentials_are_not_sent_over_plain_http_to_a_host_that_is_not_loopback() {
    let Some(ip) = non_loopback_local_ip() else {
        eprintln!("skipped: this machine has no non-loopback address to serve a registry on");
        return;
    };
    let secret = Secret::new(USER);
    let registry = OwnRegistry::start(ip, None, Auth::Htpasswd(&secret));
    let host = registry.addr.clone();
    // The registry answers plain HTTP with a Basic challenge on that address.
    let probe = http_get(&host, "/v2/", None).expect("GET /v2/");
    assert_eq!(probe.status, 401, "the registry demands credentials");
    let project = project_for(
        &host,
        &format!("\n[registries.\"{host}\"]\nplain-http = true\n"),
    );
    let port = host.rsplit_once(':').expect("host:port").1;
    let prefix = format!(
        "EIGENPUB_REGISTRY_{}_{port}",
        ip.to_string().replace('.', "_")
    );
    let env = Env::new()
        .var(format!("{prefix}_USERNAME"), &secret.user)
        .var(format!("{prefix}_PASSWORD"), &secret.password);
    let mut t = Transcript::default();

    let plan = env.run(&project, &["-v", "plan"]);
    t.output("plan", &plan);
    plan.expect_code(1);
    assert_says(&plan, &[&host, "plain HTTP", "refusing"]);
    let apply = env.run(&project, &["-v", "apply"]);
    t.output("apply", &apply);
    apply.expect_code(1);

    // No request carried the credentials: the registry never saw the user.
    let log = registry.log();
    let served: Vec<&str> = log
        .lines()
        .filter(|l| harness::parse_access_log_line(l).is_some())
        .collect();
    assert!(
        !served.is_empty(),
        "eigenpub did contact the registry:\n{log}"
    );
    for line in &served {
        let user = line.split(' ').nth(2).unwrap_or_default();
        assert_eq!(user, "-", "a request was authenticated: {line}");
    }
    assert!(
        !log.contains(&secret.user),
        "the user name reached the registry:\n{log}"
    );
    t.dir(project.path());
    t.assert_free_of(&[&secret]);
}

/// The bytes one client connection sent through a [`Tee`].
type Copied = Arc<Mutex<Vec<u8>>>;

/// A TCP relay on `ip:<free port>` to `upstream` that keeps a copy of everything
/// each client connection sent, so that a test can read the headers of every
/// request; stopped on drop.
struct Tee {
    addr: String,
    sent: Arc<Mutex<Vec<Copied>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Tee {
    fn start(ip: IpAddr, upstream: &str) -> Tee {
        let listener = TcpListener::bind((ip, 0)).expect("bind the relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("relay addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let sent: Arc<Mutex<Vec<Copied>>> = Arc::default();
        let upstream = upstream.to_string();
        let thread = {
            let (stop, sent) = (stop.clone(), sent.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((client, _)) = listener.accept() else {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let Ok(server) = TcpStream::connect(&upstream) else {
                        continue;
                    };
                    let _ = client.set_nonblocking(false);
                    let copy: Copied = Arc::default();
                    sent.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(copy.clone());
                    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone())
                    else {
                        continue;
                    };
                    thread::spawn(move || relay(client, server, Some(copy)));
                    thread::spawn(move || relay(server2, client2, None));
                }
            })
        };
        Tee {
            addr,
            sent,
            stop,
            thread: Some(thread),
        }
    }

    /// What each client connection sent, as lossy text.
    fn sent(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| {
                String::from_utf8_lossy(&c.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
            })
            .collect()
    }
}

/// Copies `from` to `to` until either closes, keeping a copy in `keep`.
fn relay(mut from: TcpStream, mut to: TcpStream, keep: Option<Copied>) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(keep) = &keep {
                    keep.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_token_is_not_sent_over_plain_http_to_a_host_that_is_not_this_machine() {
    let Some(ip) = non_loopback_local_ip() else {
        eprintln!("skipped: this machine has no non-loopback address to serve a registry on");
        return;
    };
    // A token registry on that address over plain HTTP, its token service on
    // loopback (credentials may go there: it is this machine). eigenpub talks to the
    // registry through a relay on the same address that keeps every byte it sent.
    let secret = Secret::new(USER);
    let tokens = TokenServer::start(&secret);
    let registry = OwnRegistry::start(ip, None, Auth::Token(&tokens));
    let tee = Tee::start(ip, &registry.addr);
    let host = tee.addr.clone();
    let probe = http_get(&host, "/v2/", None).expect("GET /v2/ through the relay");
    assert_eq!(probe.status, 401, "the registry demands a token");
    assert!(
        probe
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer ") && c.contains(&tokens.realm())),
        "the challenge names the loopback token service: {:?}",
        probe.headers
    );
    let project = project_for(
        &host,
        &format!("\n[registries.\"{host}\"]\nplain-http = true\n"),
    );
    let port = host.rsplit_once(':').expect("host:port").1;
    let prefix = format!(
        "EIGENPUB_REGISTRY_{}_{port}",
        ip.to_string().replace('.', "_")
    );
    let env = Env::new()
        .var(format!("{prefix}_USERNAME"), &secret.user)
        .var(format!("{prefix}_PASSWORD"), &secret.password);

    let plan = env.run(&project, &["-v", "plan"]);
    plan.expect_code(1);
    assert_says(&plan, &[&host, "plain HTTP", "refusing"]);

    // Nothing eigenpub sent to the registry carried an Authorization header, nor any
    // token the token service issued.
    let sent = tee.sent();
    let from_eigenpub: Vec<&String> = sent
        .iter()
        .filter(|c| c.to_ascii_lowercase().contains("user-agent: eigenpub/"))
        .collect();
    assert!(
        !from_eigenpub.is_empty(),
        "eigenpub did contact the registry: {sent:#?}"
    );
    for connection in &sent {
        assert!(
            !connection.to_ascii_lowercase().contains("\nauthorization:"),
            "a request to {host} carried credentials:\n{connection}"
        );
        for token in tokens.requests().iter().filter_map(|r| r.token.as_ref()) {
            assert!(
                !connection.contains(token.as_str()),
                "a token went to {host}:\n{connection}"
            );
        }
    }
    // And the registry answered eigenpub nothing but its challenge.
    let requests = eigenpub_requests(&registry, "plain-http-token-probe");
    assert!(
        !requests.is_empty(),
        "the registry logged eigenpub's requests"
    );
    assert!(
        requests.iter().all(|r| r.status == 401),
        "no request got past the challenge: {requests:#?}"
    );

    let mut t = Transcript::default();
    t.output("plan", &plan);
    t.dir(project.path());
    let token_secrets = token_secrets(&tokens);
    let mut all: Vec<&Secret> = token_secrets.iter().collect();
    all.push(&secret);
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
