//! Bearer tokens from a token service, as GHCR and Docker Hub have: credentials go
//! only to the token service, refusals there name their origin, tokens are renewed
//! before they expire, a blob another repository holds is mounted with a token that
//! may pull from it, and a briefly overloaded service is retried.

use std::fs;
use std::time::{Duration, Instant};

use super::{
    AVS, SPEC, TAG, USER, assert_applied, assert_free_of_secrets_and_tokens, assert_manifest,
    assert_says, eigenpub_requests, json_doc, project_for, reference, spec_yaml,
};
use crate::harness::env::Env;
use crate::harness::secrets::{Secret, Transcript};
use crate::harness::token_server::{Lifetime, Overload, TOKEN_SERVICE, TokenServer};
use crate::harness::{
    self, Auth, LOOPBACK, Project, Registry, sha256_digest, skopeo_raw_with_creds,
};

#[test]
fn bearer_token_registry_gets_credentials_only_at_its_token_service() {
    let secret = Secret::new(USER);
    let tokens = TokenServer::start(&secret);
    let registry = Registry::serve(LOOPBACK, None, Auth::Token(&tokens));
    let host = registry.host();
    let env = Env::with_auths(&host, &secret);
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
    assert_applied(&apply, &reference(&host), &project.read(SPEC), &|r| {
        skopeo_raw_with_creds(r, &secret.user, &secret.password)
    });

    let mut t = Transcript::of(&[("plan", &plan), ("apply", &apply)]);
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
    let env = Env::new().registry_vars(&host, &wrong);
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
    let mut t = Transcript::of(&[("plan", &plan)]);
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

    let mut t = Transcript::of(&[
        ("refused login", &refused),
        ("login", &login),
        ("apply", &apply),
    ]);
    t.dir(project.path());
    assert_free_of_secrets_and_tokens(&t, &[&secret, &wrong], &tokens);
}

#[test]
fn a_refreshed_token_is_used_after_expiry_in_long_runs() {
    const LIFETIME: u64 = 2;
    const ARTIFACTS: usize = 12;
    let secret = Secret::new(USER);
    let tokens = TokenServer::start_with_lifetime(&secret, Lifetime::Enforced(LIFETIME));
    let registry = Registry::serve(LOOPBACK, None, Auth::Token(&tokens));
    let host = registry.host();
    let env = Env::with_auths(&host, &secret);
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

    let mut t = Transcript::of(&[("apply", &apply)]);
    t.dir(project.path());
    assert_free_of_secrets_and_tokens(&t, &[&secret], &tokens);
}

#[test]
fn a_blob_shared_by_two_repositories_is_mounted_on_a_token_registry() {
    // Two AVSs publish the same spec file, one artifact at a time: the second
    // repository's layer is one the first already holds under a pushed manifest, so
    // eigenpub mounts it. distribution refuses a mount from a repository the token has
    // no pull on, and the token service grants exactly the scopes asked: the mount's
    // token must ask pull on the source too (as oras-go does).
    let secret = Secret::new(USER);
    let tokens = TokenServer::start(&secret);
    let registry = Registry::serve(LOOPBACK, None, Auth::Token(&tokens));
    let host = registry.host();
    let env = Env::with_auths(&host, &secret);
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

    // Every token was for this project's repositories, exactly as asked; the mount's
    // names its source with pull only.
    let asked = tokens.requests();
    assert!(
        asked.iter().all(|r| r.credentials == Some(true)
            && r.scopes.iter().all(|s| s.starts_with("repository:acme/"))),
        "every token is scoped to the project's repositories: {asked:?}"
    );
    assert!(
        asked.iter().any(|r| r.scopes
            == [
                "repository:acme/beta:pull,push".to_string(),
                "repository:acme/alpha:pull".to_string()
            ]),
        "one token for the mount, with pull on its source: {asked:?}"
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

    // The layer was mounted from acme/alpha (201), and its bytes never sent to acme/beta.
    let requests = eigenpub_requests(&registry, "shared-blob-probe");
    let beta_uploads = "/v2/acme/beta/blobs/uploads/";
    let from_alpha = format!("{beta_uploads}?mount={layer}&from=acme/alpha");
    let mounts: Vec<&harness::Request> = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path == from_alpha)
        .collect();
    assert_eq!(mounts.len(), 1, "{requests:#?}");
    assert_eq!(mounts[0].status, 201, "mounted: {requests:#?}");
    assert!(
        !requests.iter().any(|r| r.method == "PUT"
            && r.path.starts_with(beta_uploads)
            && r.path.contains(&format!("digest={layer}"))),
        "the layer's bytes were not uploaded to acme/beta: {requests:#?}"
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

    let mut t = Transcript::of(&[("apply", &apply)]);
    t.dir(project.path());
    assert_free_of_secrets_and_tokens(&t, &[&secret], &tokens);
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
    let env = Env::with_auths(&host, &secret);
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

    let t = Transcript::of(&[("plan", &plan)]);
    assert_free_of_secrets_and_tokens(&t, &[&secret], &tokens);
}
