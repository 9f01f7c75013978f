//! Trust, round three (issue 19), for what apply may do and what output may carry: a saved
//! plan (a pull-request job's artifact, which its author can write) never grants more than
//! apply's own command line, and no string from outside (a folder name in the project
//! file, a registry's error text) can start a GitHub workflow command in a log, hide part
//! of the pull-request comment, or reach a terminal as an escape sequence.

use crate::harness::{Project, Registry, sha256_digest, skopeo_raw, spec_yaml};

// ---------------------------------------------------------------------------
// A saved plan narrows; it never grants an overwrite
// ---------------------------------------------------------------------------

/// A project with one AVS (`oracle`, operator set 0, `a.yaml`) published to `registry`.
fn oracle_on(registry: &Registry) -> Project {
    let p = Project::new();
    p.write(
        "eigenruntime.toml",
        format!(
            "[defaults]\nregistry = \"{}/acme\"\ncreated = \"2025-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"oracle\"\nversion = 1\n[avs.operator-sets]\n0 = \"a.yaml\"\n",
            registry.host()
        ),
    );
    p.write("a.yaml", spec_yaml("oracle", "aggregator", "image-1"));
    p
}

#[test]
fn a_saved_plan_made_with_allow_overwrite_does_not_move_an_immutable_tag() {
    let registry = Registry::start();
    let p = oracle_on(&registry);
    p.run(&["apply"]).success();
    let reference = format!("{}/acme/oracle:opset-0-v1", registry.host());
    let published = sha256_digest(skopeo_raw(&reference).expect("the tag was pushed"));

    // The pull request changes the spec and its job saves a genuine plan made with
    // --allow-overwrite (every hash right: eigenpub computed them).
    p.write("a.yaml", spec_yaml("oracle", "aggregator", "image-2"));
    p.run(&["plan", "--allow-overwrite", "--out", "plan.json"])
        .no_panic();
    let saved: serde_json::Value = serde_json::from_slice(&p.read("plan.json")).unwrap();
    assert_eq!(saved["allow_overwrite"], true);
    assert_eq!(saved["artifacts"][0]["action"], "update", "{saved}");

    // The release job applies it without --allow-overwrite: refused, nothing pushed.
    registry.reset_requests();
    let out = p.run(&["apply", "plan.json", "--diagnostics", "json"]);
    out.no_panic().expect_code(1);
    assert!(
        out.stderr.contains("eigenpub::apply::saved-plan-overwrite")
            && out.stderr.contains(&reference)
            && out
                .stderr
                .contains("eigenpub apply --allow-overwrite plan.json"),
        "the refusal names the tag and the flag to add\n{out}"
    );
    let writes: Vec<_> = registry
        .requests()
        .into_iter()
        .filter(|(method, _, _)| method != "GET" && method != "HEAD")
        .collect();
    assert_eq!(writes, vec![], "the refused apply wrote to the registry");
    assert_eq!(
        sha256_digest(skopeo_raw(&reference).unwrap()),
        published,
        "the immutable tag moved"
    );

    // With the permission on apply's own command line, the reviewed plan applies.
    p.run(&["apply", "--allow-overwrite", "plan.json"])
        .success();
    assert_eq!(
        sha256_digest(skopeo_raw(&reference).unwrap()),
        saved["artifacts"][0]["digest"].as_str().unwrap(),
        "the reviewed overwrite landed"
    );
}

#[test]
fn a_saved_plan_refusing_an_overwrite_is_not_turned_into_an_update_by_the_command_line() {
    let registry = Registry::start();
    let p = oracle_on(&registry);
    p.run(&["apply"]).success();
    let reference = format!("{}/acme/oracle:opset-0-v1", registry.host());
    let published = sha256_digest(skopeo_raw(&reference).unwrap());
    p.write("a.yaml", spec_yaml("oracle", "aggregator", "image-2"));
    // The reviewed plan showed `refused`: --allow-overwrite at apply does not turn it into
    // an update nobody reviewed.
    p.run(&["plan", "--out", "plan.json"]).no_panic();
    let out = p.run(&["apply", "--allow-overwrite", "plan.json"]);
    out.no_panic().expect_code(1);
    assert!(out.stderr.contains("eigenpub::apply::stale-plan"), "{out}");
    assert_eq!(sha256_digest(skopeo_raw(&reference).unwrap()), published);
}

#[test]
fn the_command_line_selection_narrows_a_saved_plan() {
    let registry = Registry::start();
    let p = oracle_on(&registry);
    p.write(
        "eigenruntime.toml",
        String::from_utf8(p.read("eigenruntime.toml")).unwrap()
            + "\n[[avs]]\nname = \"dice\"\nversion = 1\n[avs.operator-sets]\n0 = \"b.yaml\"\n",
    );
    p.write("b.yaml", spec_yaml("dice", "aggregator", "image-1"));
    p.run(&["plan", "--out", "plan.json"]).no_panic();
    p.run(&["apply", "plan.json", "--select", "dice"]).success();
    let host = registry.host();
    assert!(skopeo_raw(&format!("{host}/acme/dice:opset-0-v1")).is_some());
    assert!(
        skopeo_raw(&format!("{host}/acme/oracle:opset-0-v1")).is_none(),
        "an artifact outside the command line's selection was pushed"
    );
    // The rest of the reviewed plan applies later (the pushed tag holds what was planned).
    p.run(&["apply", "plan.json"]).success();
    assert!(skopeo_raw(&format!("{host}/acme/oracle:opset-0-v1")).is_some());
}
