//! Where eigenpub finds credentials, and what it says when they are missing,
//! incomplete or refused.
//!
//! The sources are one table, [`Source`]: every test that is about "credentials
//! from somewhere" runs over all of it, so a source added to eigenpub is a row
//! added here, tested for publishing, for the message that names it when refused,
//! and for leaks.

use std::path::PathBuf;

use serde_json::json;

use super::{AVS, TAG, USER, assert_says, json_diagnostic, project_for, publish_twice, reference};
use crate::harness::credential_helper::{CredHelper, HELPER};
use crate::harness::env::{Env, registry_var_prefix};
use crate::harness::secrets::{Secret, Transcript, files_under};
use crate::harness::{Registry, skopeo_raw_with_creds};

/// Where a test puts the credentials eigenpub is to find for a registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// `auths.<host>.auth`: `base64(user:password)`, as `docker login` writes.
    AuthsBase64,
    /// `auths.<host>.username` and `.password`.
    AuthsUsernamePassword,
    /// `auths."https://<host>".auth`, as older Docker versions and other tools key it.
    AuthsHttpsUrl,
    /// `credHelpers.<host>`: a helper for this registry.
    CredHelpers,
    /// `credsStore`: the helper for every registry.
    CredsStore,
    /// `EIGENPUB_REGISTRY_<HOST>_USERNAME` / `_PASSWORD`, with an empty Docker config.
    Environment,
}

impl Source {
    const ALL: [Source; 6] = [
        Source::AuthsBase64,
        Source::AuthsUsernamePassword,
        Source::AuthsHttpsUrl,
        Source::CredHelpers,
        Source::CredsStore,
        Source::Environment,
    ];

    /// An environment in which eigenpub finds `secret` for `host` this way, and the
    /// helper it asks, if any (kept alive with the environment).
    fn env(self, host: &str, secret: &Secret) -> (Env, Option<CredHelper>) {
        let helper = || {
            let helper = CredHelper::install();
            helper.hold(host, &secret.user, &secret.password);
            helper
        };
        match self {
            Source::AuthsBase64 => (Env::with_auths(host, secret), None),
            Source::AuthsHttpsUrl => (Env::with_auths(&format!("https://{host}"), secret), None),
            Source::AuthsUsernamePassword => {
                let auths = json!({host: {"username": secret.user, "password": secret.password}});
                (Env::new().with_config(&json!({ "auths": auths })), None)
            }
            Source::CredHelpers => {
                let helper = helper();
                let config = json!({"credHelpers": {host: HELPER}});
                (
                    Env::new().with_helper(&helper).with_config(&config),
                    Some(helper),
                )
            }
            Source::CredsStore => {
                let helper = helper();
                let config = json!({ "credsStore": HELPER });
                (
                    Env::new().with_helper(&helper).with_config(&config),
                    Some(helper),
                )
            }
            Source::Environment => (Env::new().registry_vars(host, secret), None),
        }
    }

    /// What eigenpub's messages name as the origin of credentials found this way.
    fn origin(self, host: &str) -> String {
        match self {
            Source::AuthsBase64 | Source::AuthsUsernamePassword => format!("auths[\"{host}\"]"),
            Source::AuthsHttpsUrl => format!("auths[\"https://{host}\"]"),
            Source::CredHelpers => format!("docker-credential-{HELPER} (credHelpers"),
            Source::CredsStore => format!("docker-credential-{HELPER} (credsStore"),
            Source::Environment => format!("environment ({}_USERNAME", registry_var_prefix(host)),
        }
    }

    /// Whether the Docker config folder holds the secret by design (`auths`).
    fn config_holds_secret(self) -> bool {
        matches!(
            self,
            Source::AuthsBase64 | Source::AuthsUsernamePassword | Source::AuthsHttpsUrl
        )
    }
}

/// Publish twice (every output kind) to an htpasswd registry with credentials from
/// `source`, read back with skopeo; then check that the helper (if any) was asked
/// for this registry, that nothing was written to the Docker config when the
/// credentials came from variables, and that the secret appears nowhere eigenpub
/// printed or wrote (the Docker config included, unless it holds it by design).
fn publishes_with_credentials_from(source: Source) {
    let secret = Secret::new(USER);
    let registry = Registry::with_htpasswd(&secret.user, &secret.password);
    let host = registry.host();
    let (env, helper) = source.env(&host, &secret);
    let project = project_for(&host, "");
    let read = |r: &str| skopeo_raw_with_creds(r, &secret.user, &secret.password);
    let mut t = publish_twice(&project, &env, &host, &read);
    if let Some(helper) = &helper {
        assert!(
            helper.gets().contains(&host),
            "the helper was asked for {host}; it was asked for {:?}",
            helper.gets()
        );
    }
    if source == Source::Environment {
        assert_eq!(
            files_under(env.docker_config.path()),
            Vec::<PathBuf>::new(),
            "nothing is written to the Docker config"
        );
    }
    if !source.config_holds_secret() {
        t.dir(env.docker_config.path());
    }
    t.assert_free_of(&[&secret]);
}

/// One test a row, so that they run in parallel and fail by name; and a test
/// that no row of [`Source::ALL`] was left out.
macro_rules! publishing_tests {
    ($($name:ident: $source:expr,)*) => {
        $(
            #[test]
            fn $name() {
                publishes_with_credentials_from($source);
            }
        )*

        #[test]
        fn every_credential_source_has_a_publishing_test() {
            let tested = [$($source),*];
            for source in Source::ALL {
                assert!(tested.contains(&source), "{source:?} has no publishing test");
            }
        }
    };
}

publishing_tests! {
    credentials_from_docker_config_auths_base64_auth_publish: Source::AuthsBase64,
    credentials_from_docker_config_auths_username_and_password_publish: Source::AuthsUsernamePassword,
    credentials_from_auths_keyed_by_the_https_url_publish: Source::AuthsHttpsUrl,
    credentials_from_a_cred_helpers_helper_publish: Source::CredHelpers,
    credentials_from_a_creds_store_publish: Source::CredsStore,
    credentials_from_environment_variables_publish_with_an_empty_docker_config: Source::Environment,
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
    let login_advice = [
        format!("docker login {host}"),
        format!("eigenpub login {host}"),
    ];

    let mut t = Transcript::default();
    for source in Source::ALL {
        // What the message must name as the origin of the refused credentials, and
        // the origins of the other sources, which it must not name.
        let origin = source.origin(&host);
        let (env, _helper) = source.env(&host, &wrong);
        let project = project_for(&host, "");

        let plan = env.run(&project, &["-v", "plan"]);
        t.output(&format!("plan ({source:?})"), &plan);
        plan.expect_code(1);
        assert_says(
            &plan,
            &[
                &host,
                "refused",
                &origin,
                &login_advice[0],
                &login_advice[1],
            ],
        );

        let plan = env.run(&project, &["plan", "--diagnostics", "json"]);
        t.output(&format!("plan --diagnostics json ({source:?})"), &plan);
        plan.expect_code(1);
        let d = json_diagnostic(&plan);
        assert_eq!(d["code"], "eigenpub::registry::auth", "{plan}");
        let message = d["message"].as_str().unwrap_or_default();
        let help = d["help"].as_str().unwrap_or_default();
        assert!(message.contains(&host), "the message names {host}: {d}");
        for needle in [
            &"refused".to_string(),
            &origin,
            &login_advice[0],
            &login_advice[1],
        ] {
            assert!(
                help.contains(needle.as_str()),
                "the help says {needle:?}: {d}"
            );
        }
        for other in Source::ALL.map(|s| s.origin(&host)) {
            assert!(
                other == origin || !help.contains(&other),
                "the credentials came from {origin}, not {other}: {d}"
            );
        }

        let apply = env.run(&project, &["-v", "apply", "--release-json", "release.json"]);
        t.output(&format!("apply ({source:?})"), &apply);
        apply.expect_code(1);
        assert_says(&apply, &[&host, "refused", &origin]);
        assert_eq!(
            skopeo_raw_with_creds(&reference(&host), &right.user, &right.password),
            None,
            "nothing was pushed with refused credentials ({source:?})"
        );
        t.dir(project.path());
        if !source.config_holds_secret() {
            t.dir(env.docker_config.path());
        }
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
// Incomplete sources
// ---------------------------------------------------------------------------

#[test]
fn only_one_of_the_two_environment_variables_is_an_error_naming_both() {
    let registry = Registry::start();
    let prefix = registry_var_prefix(&registry.host());
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
    let env = Env::new()
        .with_helper(&helper)
        .with_config(&json!({"credHelpers": {registry.host(): HELPER}}));
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
    let env =
        Env::new().with_config(&json!({"credHelpers": {registry.host(): "eigentest-absent"}}));
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
