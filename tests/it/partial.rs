//! One failing repository never blocks the others: a monorepo of three AVSs in front of a
//! real `docker-registry`, with the harness's fault proxy failing every request to one
//! repository (a 500 that outlasts the retries, a 403 on one GHCR package), on reads or on
//! writes. Every other artifact is planned and pushed (read back with skopeo, bypassing the
//! proxy), the failing repository is one problem naming it and its artifacts, the run exits
//! 1, the JSON results say what happened to each artifact, and a run after the fault clears
//! fills the gap. Before, one unreadable repository stopped the whole plan: nothing was
//! pushed for any AVS.

use serde_json::Value;

use crate::harness::fault_proxy::{Fault, Head, Proxy, always, is_write};
use crate::harness::{Output, Project, Registry, spec_yaml};

const CREATED: &str = "2025-01-01T00:00:00Z";
const AVSS: [&str; 3] = ["alpha", "bravo", "charlie"];
/// The AVS whose repository fails.
const BROKEN: &str = "bravo";
const TAGS: [&str; 2] = ["opset-0-v1", "opset-1-v1"];

/// A monorepo: three AVSs with two operator sets each, published to `<host>/acme/<avs>`.
fn monorepo(host: &str) -> Project {
    let project = Project::new();
    let mut toml = format!("[defaults]\nregistry = \"{host}/acme\"\ncreated = \"{CREATED}\"\n\n");
    for avs in AVSS {
        toml.push_str(&format!(
            "[[avs]]\nname = \"{avs}\"\nversion = 1\n[avs.operator-sets]\n0 = \"avs/{avs}/opset-0.yaml\"\n1 = \"avs/{avs}/opset-1.yaml\"\n\n"
        ));
        for (opset, component) in [(0, "aggregator"), (1, "executor")] {
            project.write(
                &format!("avs/{avs}/opset-{opset}.yaml"),
                spec_yaml(avs, component, &format!("{avs}-{opset}")),
            );
        }
    }
    project.write("eigenruntime.toml", toml);
    project
}

/// Requests to the broken AVS's repository (manifests, blobs, uploads).
fn broken_repository(head: &Head) -> bool {
    head.path.starts_with(&format!("/v2/acme/{BROKEN}/"))
}

/// Which of the project's tags the registry holds, read with skopeo past the proxy.
fn landed(registry: &Registry) -> Vec<(String, bool)> {
    AVSS.iter()
        .flat_map(|avs| TAGS.iter().map(move |tag| format!("acme/{avs}:{tag}")))
        .map(|name| {
            let there = registry.skopeo_raw(&name).is_some();
            (name, there)
        })
        .collect()
}

/// Every tag but the broken AVS's is in the registry.
fn assert_all_but_broken_landed(registry: &Registry, out: &Output) {
    for (name, there) in landed(registry) {
        let broken = name.starts_with(&format!("acme/{BROKEN}:"));
        assert_eq!(there, !broken, "{name}\n{out}");
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e})\n{out}"))
}

/// `artifact["repository"]` ends with `/acme/<avs>`.
fn of_avs(artifact: &Value, avs: &str) -> bool {
    artifact["repository"]
        .as_str()
        .is_some_and(|r| r.ends_with(&format!("/acme/{avs}")))
}

#[test]
fn a_repository_whose_reads_fail_is_one_problem_and_every_other_artifact_is_pushed() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let host = proxy.host();
    let project = monorepo(&host);
    // A 500 on every request to one repository: it outlasts the retries.
    proxy.set_policy(always(Fault::ServerError, broken_repository));

    // The plan shows the rest, marks the broken repository's tags, and exits 1.
    let plan = project.run(&["plan"]);
    plan.no_panic().expect_code(1);
    assert!(
        plan.stdout
            .contains("Plan: 4 to create, 0 to update, 0 unchanged, 2 unreadable."),
        "{plan}"
    );
    for tag in TAGS {
        assert!(
            plan.stdout
                .contains(&format!("? unread  {host}/acme/{BROKEN}:{tag}")),
            "{plan}"
        );
    }
    let problem = format!("repository {host}/acme/{BROKEN}: ");
    let stderr = plan.stderr_flat();
    assert_eq!(stderr.matches(&problem).count(), 1, "{plan}");
    assert!(stderr.contains("HTTP 500"), "{plan}");
    assert!(
        stderr.contains("2 artifacts not planned: opset-0-v1, opset-1-v1"),
        "{plan}"
    );

    // apply pushes every other artifact, names the repository once, and exits 1.
    let apply = project.run(&[
        "apply",
        "--format",
        "json",
        "--release-json",
        "release.json",
    ]);
    apply.no_panic().expect_code(1);
    assert_all_but_broken_landed(&registry, &apply);
    let stderr = apply.stderr_flat();
    assert_eq!(
        stderr.matches(&format!("{host}/acme/{BROKEN}")).count(),
        1,
        "{apply}"
    );
    assert!(stderr.contains(&problem), "{apply}");
    assert!(
        stderr.contains("2 artifacts not pushed: opset-0-v1, opset-1-v1"),
        "{apply}"
    );
    // The JSON results say what happened to each artifact.
    let doc = json(&apply);
    assert_eq!(doc["format_version"], 1, "{doc:#}");
    assert_eq!(
        doc["summary"],
        serde_json::json!({"pushed": 4, "unchanged": 0, "failed": 2, "not_started": 0}),
        "{doc:#}"
    );
    for artifact in doc["artifacts"].as_array().expect("artifacts") {
        if of_avs(artifact, BROKEN) {
            assert_eq!(artifact["action"], "unreadable", "{artifact:#}");
            assert_eq!(artifact["result"], "failed", "{artifact:#}");
            assert_eq!(artifact["error"]["status"], 500, "{artifact:#}");
            assert_eq!(artifact["error"]["transient"], true, "{artifact:#}");
            assert_eq!(
                artifact["error"]["code"], "eigenpub::registry::server",
                "{artifact:#}"
            );
        } else {
            assert_eq!(
                (&artifact["action"], &artifact["result"]),
                (&"create".into(), &"pushed".into()),
                "{artifact:#}"
            );
        }
    }
    // The release record holds what landed, and only that.
    let release: Value = serde_json::from_slice(&project.read("release.json")).expect("JSON");
    let avss: Vec<&String> = release.as_object().expect("object").keys().collect();
    assert_eq!(avss, ["alpha", "charlie"], "{release:#}");

    // Once the fault clears, a re-run fills the gap and leaves the rest alone.
    proxy.faults_off();
    let again = project.run(&["apply"]);
    again.no_panic().success();
    assert!(
        again
            .stdout
            .contains("Apply: 2 pushed, 4 unchanged, 0 failed."),
        "{again}"
    );
    assert!(landed(&registry).iter().all(|(_, there)| *there));
}

#[test]
fn a_package_that_refuses_every_request_with_403_does_not_block_the_others() {
    // GHCR refusing one package (its Actions access not granted): a 403 on every request.
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let host = proxy.host();
    let project = monorepo(&host);
    proxy.set_policy(always(Fault::Forbidden, broken_repository));

    // The JSON plan says which tags could not be read and why; the PR comment shows them.
    let plan = project.run(&["plan", "--format", "json"]);
    plan.no_panic().expect_code(1);
    let doc = json(&plan);
    assert_eq!(doc["summary"]["unreadable"], 2, "{doc:#}");
    assert_eq!(doc["summary"]["create"], 4, "{doc:#}");
    for artifact in doc["artifacts"].as_array().expect("artifacts") {
        if of_avs(artifact, BROKEN) {
            assert_eq!(artifact["action"], "unreadable", "{artifact:#}");
            assert_eq!(artifact["error"]["status"], 403, "{artifact:#}");
            assert!(
                artifact["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("403")),
                "{artifact:#}"
            );
        }
    }
    let markdown = project.run(&["plan", "--format", "markdown"]);
    markdown.no_panic().expect_code(1);
    assert_eq!(
        markdown.stdout.matches("| ❓ unreadable |").count(),
        2,
        "{markdown}"
    );
    assert!(markdown.stdout.contains("2 unreadable"), "{markdown}");

    let apply = project.run(&["apply"]);
    apply.no_panic().expect_code(1);
    assert_all_but_broken_landed(&registry, &apply);
    assert!(
        apply
            .stdout
            .contains("Apply: 4 pushed, 0 unchanged, 2 failed."),
        "{apply}"
    );
    let stderr = apply.stderr_flat();
    assert_eq!(
        stderr.matches(&format!("{host}/acme/{BROKEN}")).count(),
        1,
        "{apply}"
    );
    assert!(stderr.contains("HTTP 403"), "{apply}");

    proxy.faults_off();
    project.run(&["apply"]).no_panic().success();
    assert!(landed(&registry).iter().all(|(_, there)| *there));
}

#[test]
fn a_repository_whose_writes_fail_is_one_problem_naming_its_artifacts() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let host = proxy.host();
    let project = monorepo(&host);
    // Reads work, every write to one repository is refused.
    proxy.set_policy(always(Fault::Forbidden, |h| {
        is_write(h) && broken_repository(h)
    }));
    let apply = project.run(&["apply", "--format", "json"]);
    apply.no_panic().expect_code(1);
    assert_all_but_broken_landed(&registry, &apply);
    let stderr = apply.stderr_flat();
    let problem = format!("could not push to repository {host}/acme/{BROKEN}:");
    assert_eq!(stderr.matches(&problem).count(), 1, "{apply}");
    assert_eq!(
        stderr.matches(&format!("{host}/acme/{BROKEN}")).count(),
        1,
        "{apply}"
    );
    assert!(
        stderr.contains("2 artifacts not pushed: opset-0-v1, opset-1-v1"),
        "{apply}"
    );
    let doc = json(&apply);
    for artifact in doc["artifacts"].as_array().expect("artifacts") {
        let expected = if of_avs(artifact, BROKEN) {
            "failed"
        } else {
            "pushed"
        };
        assert_eq!(artifact["action"], "create", "{artifact:#}");
        assert_eq!(artifact["result"], expected, "{artifact:#}");
    }
    proxy.faults_off();
    project.run(&["apply"]).no_panic().success();
    assert!(landed(&registry).iter().all(|(_, there)| *there));
}

#[test]
fn a_saved_plan_applies_what_was_reviewed_and_never_what_could_not_be_read() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let host = proxy.host();
    let project = monorepo(&host);
    proxy.set_policy(always(Fault::Forbidden, broken_repository));
    let plan = project.run(&["plan", "--out", "plan.json"]);
    plan.no_panic().expect_code(1);
    let saved: Value = serde_json::from_slice(&project.read("plan.json")).expect("JSON");
    let actions: Vec<&str> = saved["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| a["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        [
            "create",
            "create",
            "unreadable",
            "unreadable",
            "create",
            "create"
        ],
        "{saved:#}"
    );

    // The fault clears before the saved plan is applied: what was reviewed is pushed, the
    // tags the plan could not read are not (they were not reviewed), and it says so.
    proxy.faults_off();
    let apply = project.run(&["apply", "plan.json"]);
    apply.no_panic().expect_code(1);
    assert_all_but_broken_landed(&registry, &apply);
    let stderr = apply.stderr_flat();
    assert!(stderr.contains("eigenpub::apply::not-reviewed"), "{apply}");
    assert!(
        stderr.contains(&format!(
            "repository {host}/acme/{BROKEN}: its tag could not be read when the saved plan was made"
        )),
        "{apply}"
    );

    // A new plan, reviewed and applied, fills the gap.
    project
        .run(&["plan", "--out", "plan2.json"])
        .no_panic()
        .success();
    project.run(&["apply", "plan2.json"]).no_panic().success();
    assert!(landed(&registry).iter().all(|(_, there)| *there));
}

#[test]
fn fail_fast_pushes_nothing_when_a_repository_cannot_be_read() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let project = monorepo(&proxy.host());
    proxy.set_policy(always(Fault::Forbidden, broken_repository));
    let apply = project.run(&["apply", "--fail-fast"]);
    apply.no_panic().expect_code(1);
    assert!(
        landed(&registry).iter().all(|(_, there)| !*there),
        "{apply}"
    );
    assert!(
        apply
            .stderr_flat()
            .contains("--fail-fast: some tags could not be read, so nothing was pushed"),
        "{apply}"
    );
}
