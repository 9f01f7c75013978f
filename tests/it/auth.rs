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

use std::fs;
use std::net::{IpAddr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::credential_helper::{CredHelper, HELPER};
use crate::harness::env::Env;
use crate::harness::pki::{Pki, skopeo_raw_tls};
use crate::harness::relay::Tee;
use crate::harness::secrets::{Secret, Transcript, files_under};
use crate::harness::token_server::{Lifetime, Overload, TOKEN_SERVICE, TokenServer};
use crate::harness::{
    self, Auth, LOOPBACK, Output, Project, Registry, http_get, run_with_stdin, sha256_digest,
    skopeo_raw_with_creds,
};

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

fn https_settings(host: &str, ca_file: Option<&str>) -> String {
    let ca = ca_file
        .map(|f| format!("ca-file = \"{f}\"\n"))
        .unwrap_or_default();
    format!("\n[registries.\"{host}\"]\nplain-http = false\n{ca}")
}

#[test]
fn tls_registry_signed_by_an_unknown_ca_is_refused_with_ca_file_advice() {
    let pki = Pki::new(LOOPBACK);
    let registry = Registry::serve(LOOPBACK, Some(&pki), Auth::Anonymous);
    let host = registry.host();
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
    let registry = Registry::serve(LOOPBACK, Some(&pki), Auth::Anonymous);
    let host = registry.host();
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
    let registry = Registry::serve(LOOPBACK, Some(&pki), Auth::Htpasswd(&secret));
    let host = registry.host();
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

#[test]
fn bearer_token_registry_gets_credentials_only_at_its_token_service() {
    let secret = Secret::new(USER);
    let tokens = TokenServer::start(&secret);
    let registry = Registry::serve(LOOPBACK, None, Auth::Token(&tokens));
    let host = registry.host();
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
    let mut secrets = tokens.issued_secrets();

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
    secrets.extend(tokens.issued_secrets());
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
    let registry = Registry::serve(LOOPBACK, None, Auth::Token(&tokens));
    let host = registry.host();
    let prefix = env_prefix(registry.port());
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
    let registry = Registry::serve(LOOPBACK, None, Auth::Token(&tokens));
    let host = registry.host();
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
    let token_secrets = tokens.issued_secrets();
    let mut all: Vec<&Secret> = token_secrets.iter().collect();
    all.extend([&secret, &wrong]);
    t.assert_free_of(&all);
}

#[test]
fn a_refreshed_token_is_used_after_expiry_in_long_runs() {
    const LIFETIME: u64 = 2;
    const ARTIFACTS: usize = 12;
    let secret = Secret::new(USER);
    let tokens = TokenServer::start_with_lifetime(&secret, Lifetime::Enforced(LIFETIME));
    let registry = Registry::serve(LOOPBACK, None, Auth::Token(&tokens));
    let host = registry.host();
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
    let lines = registry.log_through(marker);
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
    let token_secrets = tokens.issued_secrets();
    let mut all: Vec<&Secret> = token_secrets.iter().collect();
    all.push(&secret);
    t.assert_free_of(&all);
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

#[test]
fn a_blob_shared_by_two_repositories_is_published_on_a_token_registry() {
    // Two AVSs publish the same spec file, one artifact at a time: the second
    // repository's layer is one the first already holds, so eigenpub tries to mount
    // it. The token service grants exactly the scope asked, one repository's, and
    // distribution refuses a mount from a repository the token has no pull on: the
    // upload must then go ahead in the second repository alone.
    let secret = Secret::new(USER);
    let tokens = TokenServer::start(&secret);
    let registry = Registry::serve(LOOPBACK, None, Auth::Token(&tokens));
    let host = registry.host();
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
    let token = tokens.token_for(&secret, "repository:acme/beta:pull");
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
    let token_secrets = tokens.issued_secrets();
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
                status: 503,
                retry_after: None,
            },
            Overload {
                status: 429,
                retry_after: Some(1),
            },
        ],
    );
    let registry = Registry::serve(LOOPBACK, None, Auth::Token(&tokens));
    let host = registry.host();
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
    let token_secrets = tokens.issued_secrets();
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
    let registry = Registry::serve(ip, None, Auth::Htpasswd(&secret));
    let host = registry.host();
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

    // No request of eigenpub's carried the credentials: the registry never saw the
    // user in them (the harness's own probes do authenticate, hence the filter on
    // the user agent, which both the access log and the messages record).
    let log = registry.log();
    let from_eigenpub: Vec<&str> = log.lines().filter(|l| l.contains("eigenpub/")).collect();
    let served: Vec<&str> = from_eigenpub
        .iter()
        .copied()
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
    for line in &from_eigenpub {
        assert!(
            !line.contains(&secret.user),
            "the user name reached the registry: {line}"
        );
    }
    t.dir(project.path());
    t.assert_free_of(&[&secret]);
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
    let registry = Registry::serve(ip, None, Auth::Token(&tokens));
    let tee = Tee::start(ip, &registry.host());
    let host = tee.host();
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
    let token_secrets = tokens.issued_secrets();
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
