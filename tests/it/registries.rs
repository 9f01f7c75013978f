//! Hosted registries as they answer: each test plays one registry's documented refusal
//! (or quirk) with the [`Emulator`] in front of a real `docker-registry`, and checks
//! what eigenpub does and says: reasons read with a GET when a HEAD has no body, rate
//! limits retried, permissions worded for reads and writes, immutable tags and quotas
//! explained, a missing ECR repository named in the plan, mounts that work, a lost upload
//! session started again, and a 401 to a request that carried credentials never taken as
//! a new scheme. The answers come from the sources collected in the project's registry
//! notes (`registries.md`); the real registry stays the store, and a no-op plan still
//! costs one request per artifact.
//!
//! ECR's behaviour depends on its host name (`<account>.dkr.ecr.<region>.amazonaws.com`):
//! those tests run eigenpub in a mount namespace of its own whose `/etc/hosts` maps that
//! name to 127.0.0.1, so every byte still goes to loopback.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::harness::env::Env;
use crate::harness::http::{HttpRequest, HttpResponse};
use crate::harness::registry_emulator::{
    Emulator, Play, error, error_with_detail, is_manifest, is_upload_finish, is_upload_start,
    mount_from, repository, transparent,
};
use crate::harness::secrets::Secret;
use crate::harness::token_server::TokenServer;
use crate::harness::{Auth, LOOPBACK, Output, Project, Registry, run, spec_yaml};

const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// A project publishing one operator set per AVS in `avss` to `<host>/acme/<avs>`, each
/// spec made from `seed` (the same seed: the same layer), every tag mutable; `extra` is
/// appended to `[defaults]`'s file verbatim.
fn project(host: &str, avss: &[&str], seed: &str, extra: &str) -> Project {
    let project = Project::new();
    let mut toml = format!(
        "[defaults]\nregistry = \"{host}/acme\"\ncreated = \"2025-01-01T00:00:00Z\"\nmutable-tags = [\"*\"]\n{extra}\n"
    );
    for avs in avss {
        toml.push_str(&format!(
            "[[avs]]\nname = \"{avs}\"\nversion = 3\n[avs.operator-sets]\n0 = \"{avs}.yaml\"\n"
        ));
        project.write(
            &format!("{avs}.yaml"),
            spec_yaml("shared", "aggregator", seed),
        );
    }
    project.write("eigenruntime.toml", toml);
    project
}

fn squash(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && !"│╭╰─×├┬┴┼╮╯▶•·".contains(*c))
        .collect()
}

#[track_caller]
fn says(out: &Output, phrases: &[&str]) {
    let all = squash(&format!("{}{}", out.stdout, out.stderr));
    for phrase in phrases {
        assert!(
            all.contains(&squash(phrase)),
            "the output does not say {phrase:?}\n{out}"
        );
    }
}

#[track_caller]
fn never_says(out: &Output, phrases: &[&str]) {
    let all = squash(&format!("{}{}", out.stdout, out.stderr)).to_ascii_lowercase();
    for phrase in phrases {
        assert!(
            !all.contains(&squash(phrase).to_ascii_lowercase()),
            "the output says {phrase:?}\n{out}"
        );
    }
}

/// A script answering requests `pick` selects with `answer`, forwarding the rest.
fn answer_when(
    pick: impl Fn(&HttpRequest) -> bool + Send + 'static,
    answer: impl Fn() -> HttpResponse + Send + 'static,
) -> Box<dyn FnMut(&HttpRequest) -> Play + Send> {
    Box::new(move |r| {
        if pick(r) {
            Play::Answer(answer())
        } else {
            Play::Forward
        }
    })
}

// ---------------------------------------------------------------------------
// Reasons behind HEADs, rate limits, reads and writes
// ---------------------------------------------------------------------------

#[test]
fn a_ghcr_secondary_rate_limit_403_on_a_plan_head_is_retried_as_throttling() {
    // GHCR answers 403 "secondary rate limit" (G3); on a HEAD there is no body to say so.
    let registry = Registry::start();
    let mut left = 2;
    let emulator = Emulator::start(
        &registry,
        Box::new(move |r| {
            if is_manifest(r) && left > 0 {
                left -= 1;
                Play::Answer(error(
                    403,
                    "DENIED",
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                ))
            } else {
                Play::Forward
            }
        }),
    );
    let project = project(&emulator.host(), &["alpha"], "one", "");
    let plan = project.run(&["plan"]);
    plan.success();
    says(&plan, &["+ create"]);
    let seen = emulator.seen();
    assert_eq!(
        seen.iter()
            .map(|s| (s.method.as_str(), s.status))
            .collect::<Vec<_>>(),
        [("HEAD", Some(403)), ("GET", Some(403)), ("GET", Some(404))],
        "the HEAD's refusal was read with a GET, which was retried as throttling: {seen:#?}"
    );
}

#[test]
fn a_refused_read_says_may_not_read_and_not_write() {
    let registry = Registry::start();
    let emulator = Emulator::start(
        &registry,
        answer_when(is_manifest, || {
            error(403, "DENIED", "requested access to the resource is denied")
        }),
    );
    let project = project(&emulator.host(), &["alpha"], "one", "");
    let plan = project.run(&["plan"]);
    plan.expect_code(1);
    says(
        &plan,
        &[
            "eigenpub::registry::denied",
            "HTTP 403 DENIED: requested access to the resource is denied",
            "may not read acme/alpha",
        ],
    );
    never_says(&plan, &["may not write", "may not push", "GHCR"]);
    // One HEAD, and one GET to read its reason: a permanent refusal is not retried.
    let methods: Vec<String> = emulator.seen().iter().map(|s| s.method.clone()).collect();
    assert_eq!(methods, ["HEAD", "GET"], "{:#?}", emulator.seen());
}

#[test]
fn an_expired_ecr_token_on_a_plan_head_says_to_log_in_again() {
    let registry = Registry::start();
    let emulator = Emulator::start(
        &registry,
        answer_when(is_manifest, || {
            error(
                403,
                "DENIED",
                "Your authorization token has expired. Reauthenticate and try again.",
            )
        }),
    );
    let project = project(&emulator.host(), &["alpha"], "one", "");
    let plan = project.run(&["plan"]);
    plan.expect_code(1);
    says(
        &plan,
        &[
            "eigenpub::registry::auth",
            "Your authorization token has expired",
            "token expired",
            "docker login",
        ],
    );
    never_says(&plan, &["may not write", "GHCR"]);
}

#[test]
fn insufficient_scope_says_the_credentials_were_accepted_but_may_not_push() {
    // A read-only Docker Hub token, a foreign namespace, a GitLab path too deep (D3, L1,
    // S7): 401 with error="insufficient_scope" to the push, the credentials being fine.
    let secret = Secret::new("publisher");
    let tokens = TokenServer::start(&secret);
    let registry = Registry::serve(LOOPBACK, None, Auth::Token(&tokens));
    let realm = tokens.realm();
    let emulator = Emulator::start(
        &registry,
        Box::new(move |r| {
            if is_upload_start(r) && r.header("authorization").is_some() {
                Play::Answer(
                    error(401, "UNAUTHORIZED", "authentication required").with_header(
                        "WWW-Authenticate",
                        format!(
                            "Bearer realm=\"{realm}\",service=\"eigenpub-test-registry\",scope=\"repository:acme/alpha:pull,push\",error=\"insufficient_scope\""
                        ),
                    ),
                )
            } else {
                Play::Forward
            }
        }),
    );
    let host = emulator.host();
    let env = Env::with_auths(&host, &secret);
    let project = project(&host, &["alpha"], "one", "");
    let apply = env.run(&project, &["apply", "--format", "json"]);
    apply.expect_code(1);
    says(
        &apply,
        &[
            "eigenpub::registry::denied",
            "insufficient_scope",
            "the registry accepted the credentials from",
            "may not push to acme/alpha",
        ],
    );
    never_says(&apply, &["log in again"]);
    // No second token for the same scope: it would be refused the same way. The config
    // and the layer start their uploads at once: one authenticated POST each.
    let seen = emulator.seen();
    let posts: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == "POST" && s.auth.is_some())
        .map(|s| s.path.as_str())
        .collect();
    let blobs: std::collections::BTreeSet<&str> = posts.iter().copied().collect();
    assert_eq!((posts.len(), blobs.len()), (2, 2), "{seen:#?}");
}

// ---------------------------------------------------------------------------
// Policy refusals
// ---------------------------------------------------------------------------

/// Publishes `alpha` once, then changes its spec and applies again with the manifest
/// `PUT` answered by `refusal`.
fn second_push_refused(refusal: fn() -> HttpResponse) -> Output {
    let registry = Registry::start();
    let emulator = Emulator::start(&registry, transparent());
    let host = emulator.host();
    let first = project(&host, &["alpha"], "one", "");
    first.run(&["apply"]).success();
    first.write("alpha.yaml", spec_yaml("shared", "aggregator", "two"));
    emulator.set_script(answer_when(
        |r| r.method == "PUT" && is_manifest(r),
        refusal,
    ));
    let apply = first.run(&["apply"]);
    apply.expect_code(1);
    apply
}

#[test]
fn an_ecr_immutable_tag_is_explained_not_called_a_bug() {
    let apply = second_push_refused(|| {
        error(
            400,
            "TAG_INVALID",
            "The image tag 'opset-0-v3' already exists in the 'acme/alpha' repository and cannot be overwritten because the tag is immutable.",
        )
    });
    says(
        &apply,
        &[
            "HTTP 400 TAG_INVALID",
            "forbids overwriting this tag",
            "new version",
        ],
    );
    never_says(&apply, &["bug in eigenpub"]);
}

#[test]
fn a_harbor_immutable_tag_412_is_explained_not_called_a_bug() {
    let apply = second_push_refused(|| {
        error(
            412,
            "PRECONDITION",
            "Failed to process request due to 'alpha:opset-0-v3' configured as immutable.",
        )
    });
    says(
        &apply,
        &["HTTP 412 PRECONDITION", "forbids overwriting this tag"],
    );
    never_says(&apply, &["bug in eigenpub"]);
}

#[test]
fn a_quay_manifest_refusal_shows_its_detail_and_the_media_type_fix() {
    // Quay before 3.10 (Q1): the reason is only in `detail`.
    let registry = Registry::start();
    let emulator = Emulator::start(
        &registry,
        answer_when(
            |r| r.method == "PUT" && is_manifest(r),
            || {
                error_with_detail(
                    400,
                    "MANIFEST_INVALID",
                    "manifest invalid",
                    json!({"message": "'application/vnd.eigenruntime.manifest.config.v1+json' is not one of ['application/vnd.oci.image.config.v1+json', 'application/vnd.cncf.helm.config.v1+json']"}),
                )
            },
        ),
    );
    let project = project(&emulator.host(), &["alpha"], "one", "");
    let apply = project.run(&["apply"]);
    apply.expect_code(1);
    says(
        &apply,
        &[
            "HTTP 400 MANIFEST_INVALID: manifest invalid",
            "is not one of",
            "ALLOWED_OCI_ARTIFACT_TYPES",
        ],
    );
    never_says(&apply, &["bug in eigenpub"]);
}

#[test]
fn an_artifact_registry_403_names_the_missing_repository_or_role() {
    let registry = Registry::start();
    let emulator = Emulator::start(
        &registry,
        answer_when(is_upload_start, || {
            error(
                403,
                "DENIED",
                "Permission \"artifactregistry.repositories.uploadArtifacts\" denied on resource \"projects/p/locations/europe/repositories/acme\" (or it may not exist)",
            )
        }),
    );
    let project = project(&emulator.host(), &["alpha"], "one", "");
    let apply = project.run(&["apply"]);
    apply.expect_code(1);
    says(
        &apply,
        &[
            "gcloud artifacts repositories create",
            "roles/artifactregistry.writer",
        ],
    );
    never_says(&apply, &["GHCR"]);
}

#[test]
fn a_full_harbor_quota_is_named() {
    let registry = Registry::start();
    let emulator = Emulator::start(
        &registry,
        answer_when(
            |r| r.method == "PUT" && is_manifest(r),
            || {
                error(
                    403,
                    "DENIED",
                    "adding 1.2 KiB of storage resource, which when updated to current usage of 10 GiB will exceed the configured upper limit of 10 GiB.",
                )
            },
        ),
    );
    let project = project(&emulator.host(), &["alpha"], "one", "");
    let apply = project.run(&["apply"]);
    apply.expect_code(1);
    says(&apply, &["storage quota is full"]);
    never_says(&apply, &["GHCR", "may not write"]);
}

#[test]
fn docker_hubs_pull_limit_gets_its_own_help() {
    let registry = Registry::start();
    let emulator = Emulator::start(&registry, transparent());
    let host = emulator.host();
    let project = project(&host, &["alpha"], "one", "");
    project.run(&["apply"]).success();
    emulator.set_script(answer_when(
        |r| r.method == "GET" && is_manifest(r),
        || {
            error(
                429,
                "TOOMANYREQUESTS",
                "You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit",
            )
            .with_header("ratelimit-limit", "100;w=21600")
            .with_header("ratelimit-remaining", "0;w=21600")
            .with_header("docker-ratelimit-source", "192.0.2.1")
        },
    ));
    emulator.reset();
    let inspect = project.run(&["inspect", &format!("{host}/acme/alpha:opset-0-v3")]);
    inspect.expect_code(1);
    says(
        &inspect,
        &[
            "TOOMANYREQUESTS",
            "pull limit is reached",
            "0 of 100 left per 6 h",
        ],
    );
    never_says(&inspect, &["bug in eigenpub"]);
    // A quota that refills in hours is not retried: one GET, said at once.
    let gets = emulator.seen().iter().filter(|s| s.method == "GET").count();
    assert_eq!(gets, 1, "{:#?}", emulator.seen());
}

#[test]
fn a_token_service_400_is_permanent_and_shows_its_message() {
    // Quay's token service refuses a nested name with 400 NAME_INVALID (S8, Q4).
    let registry = Registry::start();
    let emulator = Emulator::start(&registry, transparent());
    let realm = format!("http://{}/token", emulator.host());
    emulator.set_script(Box::new(move |r| {
        if r.path() == "/token" {
            Play::Answer(error(
                400,
                "NAME_INVALID",
                "Nested repositories are not supported. Found: acme/team/alpha",
            ))
        } else if r.header("authorization").is_none() {
            Play::Answer(
                error(401, "UNAUTHORIZED", "authentication required").with_header(
                    "WWW-Authenticate",
                    format!("Bearer realm=\"{realm}\",service=\"quay\""),
                ),
            )
        } else {
            Play::Forward
        }
    }));
    let project = project(&emulator.host(), &["alpha"], "one", "");
    let plan = project.run(&["plan"]);
    plan.expect_code(1);
    says(
        &plan,
        &[
            "eigenpub::registry::rejected",
            "Nested repositories are not supported",
            "FEATURE_EXTENDED_REPOSITORY_NAMES",
        ],
    );
    never_says(&plan, &["try again later", "eigenpub::registry::server"]);
    let tokens = emulator
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/token"))
        .count();
    assert_eq!(tokens, 1, "a 400 is not retried: {:#?}", emulator.seen());
}

// ---------------------------------------------------------------------------
// Authentication schemes, mounts and upload sessions
// ---------------------------------------------------------------------------

#[test]
fn a_harbor_basic_401_to_an_authenticated_request_does_not_switch_to_basic() {
    // Harbor answers `Basic realm="harbor"` to any refused request that carried
    // credentials (S13), e.g. a mount from a project the robot may not read.
    let secret = Secret::new("publisher");
    let tokens = TokenServer::start(&secret);
    let registry = Registry::serve(LOOPBACK, None, Auth::Token(&tokens));
    let emulator = Emulator::start(
        &registry,
        answer_when(
            |r| is_upload_start(r) && mount_from(r).is_some_and(|f| f != repository(r)),
            || {
                error(401, "UNAUTHORIZED", "unauthorized")
                    .with_header("WWW-Authenticate", "Basic realm=\"harbor\"")
            },
        ),
    );
    let host = emulator.host();
    let env = Env::with_auths(&host, &secret);
    let project = project(&host, &["alpha", "beta"], "same", "");
    let apply = env.run(&project, &["--concurrency", "1", "apply"]);
    apply.success();
    let seen = emulator.seen();
    assert!(
        seen.iter().any(|s| s.status == Some(401) && s.played),
        "the premise: a cross-repository mount got Harbor's Basic 401: {seen:#?}"
    );
    assert!(
        seen.iter().all(|s| s.auth.as_deref() != Some("Basic")),
        "no request carried the password as Basic after Harbor's 401: {seen:#?}"
    );
}

#[test]
fn a_lost_upload_session_is_started_again() {
    // ACR answers a retried upload with 404 BLOB_UPLOAD_INVALID (A4); ECR loses sessions
    // now and then (E9).
    let registry = Registry::start();
    let mut left = 1;
    let emulator = Emulator::start(
        &registry,
        Box::new(move |r| {
            if is_upload_finish(r) && left > 0 {
                left -= 1;
                Play::Answer(error(404, "BLOB_UPLOAD_INVALID", "blob upload invalid"))
            } else {
                Play::Forward
            }
        }),
    );
    let host = emulator.host();
    let project = project(&host, &["alpha"], "one", "");
    let apply = project.run(&["apply"]);
    apply.success();
    let posts = emulator
        .seen()
        .iter()
        .filter(|s| s.method == "POST")
        .count();
    assert_eq!(
        posts,
        3,
        "a new session for the lost one: {:#?}",
        emulator.seen()
    );
    assert!(registry.skopeo_raw("acme/alpha:opset-0-v3").is_some());
}

#[test]
fn a_registry_that_ignores_mounts_is_not_asked_again() {
    // ECR without blob mounting answers a mount with 202 and a session (S2, E2).
    let registry = Registry::start();
    let emulator = Emulator::start(
        &registry,
        Box::new(|r| match mount_from(r) {
            Some(from) if is_upload_start(r) && from != repository(r) => {
                Play::ForwardAs(r.path().to_string())
            }
            _ => Play::Forward,
        }),
    );
    let project = project(&emulator.host(), &["alpha", "beta", "gamma"], "same", "");
    project.run(&["--concurrency", "1", "apply"]).success();
    let seen = emulator.seen();
    let cross: Vec<_> = seen
        .iter()
        .filter(|s| {
            s.method == "POST" && s.path.contains("from=") && {
                let into = s
                    .path
                    .trim_start_matches("/v2/")
                    .split("/blobs/")
                    .next()
                    .unwrap_or("");
                !s.path.ends_with(&format!("from={into}"))
            }
        })
        .collect();
    assert_eq!(
        cross.len(),
        1,
        "one mount tried, then none for the rest of the run: {seen:#?}"
    );
    for avs in ["alpha", "beta", "gamma"] {
        assert!(
            registry
                .skopeo_raw(&format!("acme/{avs}:opset-0-v3"))
                .is_some()
        );
    }
}

#[test]
fn a_mount_comes_only_from_a_repository_whose_manifest_is_pushed() {
    // ECR mounts only blobs a manifest of the source references (E2): alpha's manifest
    // push is held back while beta starts on the same layer.
    let registry = Registry::start();
    let mut beta_first = true;
    let emulator = Emulator::start(
        &registry,
        Box::new(move |r| {
            if r.method == "PUT" && is_manifest(r) && repository(r) == "acme/alpha" {
                Play::Stall(Duration::from_millis(2500))
            } else if is_upload_start(r) && repository(r) == "acme/beta" && beta_first {
                beta_first = false;
                Play::Stall(Duration::from_millis(700))
            } else {
                Play::Forward
            }
        }),
    );
    let project = project(&emulator.host(), &["alpha", "beta"], "same", "");
    project.run(&["--concurrency", "2", "apply"]).success();
    let seen = emulator.seen();
    let alpha_manifest = seen
        .iter()
        .find(|s| s.method == "PUT" && s.path.starts_with("/v2/acme/alpha/manifests/"))
        .and_then(|s| s.answered)
        .expect("alpha's manifest was pushed");
    let from_alpha = seen
        .iter()
        .filter(|s| s.path.starts_with("/v2/acme/beta/") && s.path.contains("from=acme/alpha"));
    for s in from_alpha {
        assert!(
            s.at >= alpha_manifest,
            "a mount from acme/alpha before its manifest was pushed: {seen:#?}"
        );
    }
}

#[test]
fn a_mount_asks_one_token_with_pull_on_its_source() {
    // distribution (and Harbor) check the mount's source against the same token (S1).
    let secret = Secret::new("publisher");
    let tokens = TokenServer::start(&secret);
    let registry = Registry::serve(LOOPBACK, None, Auth::Token(&tokens));
    let emulator = Emulator::start(&registry, transparent());
    let host = emulator.host();
    let env = Env::with_auths(&host, &secret);
    let project = project(&host, &["alpha", "beta"], "same", "");
    env.run(&project, &["--concurrency", "1", "apply"])
        .success();
    let seen = emulator.seen();
    let mounts: Vec<_> = seen
        .iter()
        .filter(|s| {
            s.method == "POST"
                && s.path.starts_with("/v2/acme/beta/")
                && s.path.contains("from=acme/alpha")
        })
        .collect();
    assert_eq!(mounts.len(), 1, "{seen:#?}");
    assert_eq!(mounts[0].status, Some(201), "mounted: {seen:#?}");
    assert!(
        tokens.requests().iter().any(|t| t.scopes
            == [
                "repository:acme/beta:pull,push",
                "repository:acme/alpha:pull"
            ]),
        "{:?}",
        tokens.requests()
    );
    assert!(
        !seen
            .iter()
            .any(|s| s.status == Some(401) && s.auth.is_some()),
        "{seen:#?}"
    );
}

// ---------------------------------------------------------------------------
// Artifactory, and the cost of a plan
// ---------------------------------------------------------------------------

#[test]
fn artifactorys_403_for_a_missing_tag_is_planned_as_new_with_a_warning() {
    // Virtual repositories answer 403 for a tag they do not have (F1, RTFACT-13797).
    let registry = Registry::start();
    let emulator = Emulator::start(
        &registry,
        Box::new(|r| {
            if is_manifest(r) && r.method != "PUT" {
                let path = r.path().to_string();
                Play::Rewrite(Box::new(move |answer| {
                    if answer.status == 404 {
                        error(
                            403,
                            "UNAUTHORIZED",
                            &format!(
                                "The client does not have permission for manifest: Download request for repo:path 'docker-virtual:{path}/list.manifest.json' is forbidden for user: 'ci'."
                            ),
                        )
                    } else {
                        answer
                    }
                }))
            } else {
                Play::Forward
            }
        }),
    );
    let host = emulator.host();
    let project = project(&host, &["alpha"], "one", "");
    let plan = project.run(&["plan"]);
    plan.success();
    says(&plan, &["+ create", "eigenpub::registry::tag-forbidden"]);
    project.run(&["apply"]).success();
    assert!(registry.skopeo_raw("acme/alpha:opset-0-v3").is_some());
}

#[test]
fn a_no_op_plan_is_one_request_per_artifact() {
    let registry = Registry::start();
    let emulator = Emulator::start(&registry, transparent());
    let project = project(&emulator.host(), &["alpha", "beta", "gamma"], "one", "");
    project.run(&["apply"]).success();
    emulator.reset();
    let plan = project.run(&["plan"]);
    plan.success();
    let seen = emulator.seen();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    assert!(
        seen.iter()
            .all(|s| s.method == "HEAD" && s.status == Some(200)),
        "{seen:#?}"
    );
}

// ---------------------------------------------------------------------------
// ECR, by its host name
// ---------------------------------------------------------------------------

/// `cmd` run in a mount namespace of its own whose `/etc/hosts` also maps [`ECR_HOST`]
/// to 127.0.0.1: eigenpub sees ECR's name, and its traffic stays on loopback.
fn as_ecr(cmd: Command, hosts_dir: &Path) -> Command {
    let hosts = hosts_dir.join("hosts");
    let system = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    std::fs::write(&hosts, format!("127.0.0.1 {ECR_HOST}\n{system}")).expect("write hosts");
    let mut wrapped = Command::new("unshare");
    wrapped
        .args([
            "-m",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
        ])
        .arg(&hosts)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped
}

/// A project on the emulator, named as ECR.
fn ecr_project(emulator: &Emulator, avs: &str, opsets: usize) -> Project {
    let host = format!("{ECR_HOST}:{}", emulator.port());
    let project = Project::new();
    let mut toml = format!(
        "[defaults]\nregistry = \"{host}/acme\"\ncreated = \"2025-01-01T00:00:00Z\"\n\n[registries.\"{host}\"]\nplain-http = true\n\n[[avs]]\nname = \"{avs}\"\nversion = 3\n[avs.operator-sets]\n"
    );
    for n in 0..opsets {
        toml.push_str(&format!("{n} = \"{avs}-{n}.yaml\"\n"));
        project.write(
            &format!("{avs}-{n}.yaml"),
            spec_yaml(avs, "aggregator", &format!("seed-{n}")),
        );
    }
    project.write("eigenruntime.toml", toml);
    project
}

/// ECR's 404 for a repository that does not exist, in place of distribution's.
fn ecr_name_unknown(request: &HttpRequest) -> Play {
    if request.method == "GET" && is_manifest(request) {
        let name = repository(request);
        return Play::Rewrite(Box::new(move |answer| {
            if answer.status == 404 {
                error(
                    404,
                    "NAME_UNKNOWN",
                    &format!(
                        "The repository with name '{name}' does not exist in the registry with id '123456789012'"
                    ),
                )
            } else {
                answer
            }
        }));
    }
    Play::Forward
}

#[test]
fn a_missing_ecr_repository_is_named_once_in_the_plan_with_its_fix() {
    let registry = Registry::start();
    let emulator = Emulator::start(&registry, Box::new(ecr_name_unknown));
    let project = ecr_project(&emulator, "alpha", 2);
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = run(as_ecr(project.eigenpub(&["plan"]), dir.path()));
    plan.expect_code(1);
    says(
        &plan,
        &[
            "eigenpub::registry::repository-missing",
            "does not exist in the registry with id",
            "aws ecr create-repository --repository-name acme/alpha --region us-east-1",
            // One problem for the repository, naming its artifacts.
            "2 artifacts not attempted: opset-0-v3, opset-1-v3",
        ],
    );
    never_says(&plan, &["+ create"]);
    let seen = emulator.seen();
    let gets = seen.iter().filter(|s| s.method == "GET").count();
    let heads = seen.iter().filter(|s| s.method == "HEAD").count();
    assert_eq!(
        (heads, gets),
        (2, 1),
        "one GET for the repository: {seen:#?}"
    );
}

#[test]
fn an_ecr_connection_dropped_at_the_first_upload_says_the_repository_may_not_exist() {
    // 2023: ECR closed the connection when asked to upload to a missing repository (E1).
    let registry = Registry::start();
    let emulator = Emulator::start(
        &registry,
        Box::new(|r| {
            if is_upload_start(r) {
                return Play::Drop;
            }
            if r.method == "GET" && is_manifest(r) {
                // The repository exists as far as reads go: the tag is what is missing.
                return Play::Rewrite(Box::new(|answer| {
                    if answer.status == 404 {
                        error(404, "MANIFEST_UNKNOWN", "manifest unknown")
                    } else {
                        answer
                    }
                }));
            }
            Play::Forward
        }),
    );
    let project = ecr_project(&emulator, "alpha", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let apply = run(as_ecr(project.eigenpub(&["apply"]), dir.path()));
    apply.expect_code(1);
    says(
        &apply,
        &[
            "the repository may not exist",
            "aws ecr create-repository --repository-name",
        ],
    );
    never_says(&apply, &["registry is running"]);
    // One request's budget of POSTs per blob (the config and the layer start their
    // uploads at once), not one per new upload session on top.
    let seen = emulator.seen();
    let mut posts = std::collections::BTreeMap::<&str, usize>::new();
    for s in seen.iter().filter(|s| s.method == "POST") {
        *posts.entry(s.path.as_str()).or_default() += 1;
    }
    assert_eq!(
        posts.values().copied().collect::<Vec<_>>(),
        [8, 8],
        "{seen:#?}"
    );
}
