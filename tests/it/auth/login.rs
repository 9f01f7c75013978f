//! `eigenpub login`: credentials checked at the registry, then stored the way
//! `docker login` stores them (in `auths`, or handed to a `credsStore` helper),
//! and nothing stored when the registry refuses them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::json;

use super::{SPEC, USER, assert_applied, assert_says, json_doc, project_for, reference};
use crate::harness::credential_helper::{CredHelper, HELPER};
use crate::harness::env::Env;
use crate::harness::secrets::{Secret, Transcript, files_under};
use crate::harness::{Registry, skopeo_raw_with_creds};

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
    assert_applied(&apply, &reference(&host), &project.read(SPEC), &|r| {
        skopeo_raw_with_creds(r, &secret.user, &secret.password)
    });

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
    let env =
        Env::new().with_config(&json!({"auths": {"registry.example": {"auth": "dXNlcjpwdw=="}}}));
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
    let env = Env::new()
        .with_helper(&helper)
        .with_config(&json!({"credsStore": HELPER}));
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
    let env = Env::new()
        .with_helper(&helper)
        .with_config(&json!({"credsStore": HELPER}));
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
    assert_applied(&apply, &reference(&host), &project.read(SPEC), &|r| {
        skopeo_raw_with_creds(r, &secret.user, &secret.password)
    });

    t.dir(project.path());
    t.assert_free_of(&[&secret]);
}
