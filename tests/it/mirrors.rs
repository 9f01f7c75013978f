//! Mirrors: one reviewed plan publishes every spec to several registries, with the same
//! digest everywhere.
//!
//! Everything is real: the primary is an anonymous `docker-registry`, the registry
//! mirror another one behind token auth (the harness's token service, credentials from
//! Docker's `config.json`), and the third target an OCI layout on disk. What each target
//! holds is read back with skopeo, and the requests eigenpub sent are counted from each
//! registry's access log. Tags "published by devkit" are pushed with curl, in devkit's
//! encoding (see `lock.rs`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::harness::env::Env;
use crate::harness::secrets::Secret;
use crate::harness::token_server::TokenServer;
use crate::harness::{
    Auth, LOOPBACK, Output, Project, Registry, sha256_digest, skopeo_raw, skopeo_raw_with_creds,
};
use crate::lock::{ALL, Art, DEVKIT_VERSION, PO0, devkit_push, devkit_push_edited, project};

/// Two registries (the mirror behind token auth) and a project publishing `ALL` to the
/// primary, mirrored to the registry and to `oci:archive`.
struct World {
    primary: Registry,
    mirror: Registry,
    _tokens: TokenServer,
    secret: Secret,
    env: Env,
    project: Project,
}

impl World {
    fn new() -> World {
        let secret = Secret::new("publisher");
        let tokens = TokenServer::start(&secret);
        let mirror = Registry::serve(LOOPBACK, None, Auth::Token(&tokens));
        let primary = Registry::start();
        let env = Env::with_auths(&mirror.host(), &secret);
        let project = project(
            &primary,
            &format!(
                "created = \"2025-01-01T00:00:00Z\"\nmirrors = [\"{}/acme\", \"oci:archive\"]",
                mirror.host()
            ),
        );
        World {
            primary,
            mirror,
            _tokens: tokens,
            secret,
            env,
            project,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.env.run(&self.project, args)
    }

    /// The manifest bytes each target holds for `art`: primary, registry mirror, layout.
    fn held(&self, art: Art) -> [Option<Vec<u8>>; 3] {
        [
            self.primary.skopeo_raw(&art.name_and_tag()),
            skopeo_raw_with_creds(
                &format!("{}/{}", self.mirror.host(), art.name_and_tag()),
                &self.secret.user,
                &self.secret.password,
            ),
            self.layout(art),
        ]
    }

    fn layout(&self, art: Art) -> Option<Vec<u8>> {
        skopeo_raw(&format!(
            "oci:{}:{}",
            self.project.join(&format!("archive/{}", art.avs)).display(),
            art.tag()
        ))
    }

    fn mirror_reference(&self, art: Art) -> String {
        format!("{}/{}", self.mirror.host(), art.name_and_tag())
    }
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l.trim() == line)
}

/// The requests a registry answered since its last reset: (method, status) counts.
fn counts(registry: &Registry) -> BTreeMap<(String, u16), usize> {
    let mut counts = BTreeMap::new();
    for r in registry.request_lines() {
        *counts.entry((r.method, r.status)).or_default() += 1;
    }
    counts
}

#[test]
fn a_first_apply_fills_every_target_and_a_second_is_one_request_per_artifact_per_registry() {
    let world = World::new();
    let plan = world.run(&["plan"]);
    plan.success();
    assert!(
        has_line(&plan.stdout, "Plan: 9 to create, 0 to update, 0 unchanged."),
        "{plan}"
    );
    // The mirror's copy wants exactly the primary's digest.
    let primary_line = format!("{}/{}", world.primary.host(), PO0.name_and_tag());
    let digest = plan
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("+ create {primary_line} ")))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or_else(|| panic!("a create line for {primary_line}\n{plan}"));
    assert!(
        has_line(
            &plan.stdout,
            &format!("+ create {} {digest} (mirror)", world.mirror_reference(PO0))
        ),
        "{plan}"
    );
    for target in [
        world.primary.host(),
        world.mirror.host(),
        "oci:archive".to_string(),
    ] {
        assert!(
            has_line(
                &plan.stdout,
                &format!("{target}: 3 to create, 0 to update, 0 unchanged")
            ),
            "per-target summary for {target}\n{plan}"
        );
    }

    let apply = world.run(&[
        "apply",
        "--format",
        "json",
        "--release-json",
        "release.json",
    ]);
    apply.success();
    let doc: Value = serde_json::from_str(&apply.stdout).expect("apply JSON");
    assert_eq!(doc["summary"]["pushed"], 9, "{apply}");
    for target in [world.primary.host(), world.mirror.host()] {
        assert_eq!(doc["targets"][&target]["pushed"], 3, "{doc:#}");
    }
    let release: Value =
        serde_json::from_slice(&world.project.read("release.json")).expect("release JSON");
    for art in ALL {
        let [primary, mirror, layout] = world.held(art);
        let primary = primary.expect("the primary holds it");
        assert_eq!(mirror.as_ref(), Some(&primary), "{}", art.name_and_tag());
        assert_eq!(layout.as_ref(), Some(&primary), "{}", art.name_and_tag());
        let entry = &release[art.avs][art.opset.to_string()];
        assert_eq!(entry["digest"], sha256_digest(&primary));
        assert_eq!(
            entry["registry"],
            format!("{}/{}", world.primary.host(), art.repository())
        );
        assert_eq!(
            entry["mirrors"],
            serde_json::json!([
                format!("{}/{}", world.mirror.host(), art.repository()),
                format!("oci:archive/{}", art.avs)
            ]),
            "{release:#}"
        );
    }

    // A second run reads one tag per artifact per registry, and writes nothing.
    world.primary.reset_requests();
    world.mirror.reset_requests();
    let again = world.run(&["apply"]);
    again.success();
    assert!(
        has_line(&again.stdout, "Apply: 0 pushed, 9 unchanged, 0 failed."),
        "{again}"
    );
    let n = ALL.len();
    assert_eq!(
        counts(&world.primary),
        BTreeMap::from([(("HEAD".to_string(), 200), n)]),
        "one HEAD per artifact on the primary"
    );
    // On the token registry, plus the one 401 that teaches the scheme for the whole run.
    let mirror = counts(&world.mirror);
    assert_eq!(
        mirror.get(&("HEAD".to_string(), 200)),
        Some(&n),
        "{mirror:?}"
    );
    let other: usize = mirror
        .iter()
        .filter(|((m, s), _)| !(m == "HEAD" && *s == 200))
        .map(|(_, c)| c)
        .sum();
    assert!(other <= 1, "at most one 401 besides the HEADs: {mirror:?}");
}

#[test]
fn a_tag_devkit_published_on_the_primary_is_copied_byte_for_byte_to_the_mirrors() {
    let world = World::new();
    let mut published = BTreeMap::new();
    for (i, art) in ALL.iter().enumerate() {
        let created = format!("2025-06-01T12:00:0{i}Z");
        let digest = devkit_push(
            &world.primary,
            *art,
            &art.text("image-1"),
            &created,
            "Hourglass",
        );
        published.insert(art.name_and_tag(), digest);
    }

    let plan = world.run(&["-v", "plan"]);
    plan.success();
    for art in ALL {
        let digest = &published[&art.name_and_tag()];
        assert!(
            has_line(
                &plan.stdout,
                &format!("+ create {} {digest} (mirror)", world.mirror_reference(art))
            ),
            "the mirror wants devkit's digest, not eigenpub's own\n{plan}"
        );
    }

    world.run(&["apply"]).success();
    for art in ALL {
        let [primary, mirror, layout] = world.held(art);
        let primary = primary.expect("primary");
        assert_eq!(sha256_digest(&primary), published[&art.name_and_tag()]);
        assert_eq!(
            mirror,
            Some(primary.clone()),
            "byte for byte on the registry mirror"
        );
        assert_eq!(layout, Some(primary), "byte for byte in the layout");
    }
    let again = world.run(&["-v", "plan", "--detailed-exitcode"]);
    again.expect_code(0);
    assert!(
        has_line(
            &again.stdout,
            &format!(
                "= unchanged {} {} (equivalent: published 2025-06-01 by devkit {DEVKIT_VERSION}) (mirror)",
                world.mirror_reference(PO0),
                published[&PO0.name_and_tag()]
            )
        ),
        "{again}"
    );

    // devkit publishes the tag again (another time, another digest): the primary adopts
    // it, and the mirrors, holding the old digest under an immutable tag, are refused.
    let moved = devkit_push(
        &world.primary,
        PO0,
        &PO0.text("image-1"),
        "2025-07-01T00:00:00Z",
        "Hourglass",
    );
    let plan = world.run(&["plan"]);
    plan.expect_code(1);
    assert!(
        has_line(
            &plan.stdout,
            &format!(
                "! refuse {} {} -> {moved} (published tag is immutable; bump the version or pass --allow-overwrite) (mirror)",
                world.mirror_reference(PO0),
                published[&PO0.name_and_tag()]
            )
        ),
        "{plan}"
    );
    let json = world.run(&["plan", "--format", "json"]);
    let doc: Value = serde_json::from_str(&json.stdout).expect("plan JSON");
    let refused: Vec<&Value> = doc["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "refused")
        .collect();
    assert_eq!(refused.len(), 2, "both mirrors: {doc:#}");
    for a in refused {
        assert_eq!(a["digest"], moved.as_str());
        assert_eq!(
            a["mirror_of"],
            format!("{}/{}", world.primary.host(), PO0.repository())
        );
    }
}

#[test]
fn verify_names_a_tag_moved_on_a_mirror() {
    let primary = Registry::start();
    let mirror = Registry::start();
    let project = project(
        &primary,
        &format!(
            "created = \"2025-01-01T00:00:00Z\"\nmirrors = [\"{}/acme\"]",
            mirror.host()
        ),
    );
    project.run(&["lock"]).success();
    let lock = String::from_utf8(project.read("eigenruntime.lock")).unwrap();
    assert!(
        lock.contains(&format!(
            "mirrors = [\"{}/acme/price-oracle\"]",
            mirror.host()
        )),
        "{lock}"
    );
    project.run(&["apply", "--locked"]).success();
    let out = project.run(&["verify"]);
    out.success();
    assert!(
        has_line(&out.stdout, "Verify: 6 as locked, 0 moved, 0 missing."),
        "{out}"
    );

    // Another client moves the tag on the mirror only.
    let locked = sha256_digest(primary.skopeo_raw(&PO0.name_and_tag()).unwrap());
    let moved = devkit_push(
        &mirror,
        PO0,
        &PO0.text("image-1"),
        "2025-06-01T12:00:00Z",
        "Hourglass",
    );
    let out = project.run(&["verify"]);
    out.expect_code(1);
    let bad: Vec<&str> = out
        .stdout_lines()
        .into_iter()
        .filter(|l| l.starts_with('!'))
        .collect();
    assert_eq!(
        bad,
        [format!(
            "! moved   {}/{} holds {moved}, locked {locked} (price-oracle/0)",
            mirror.host(),
            PO0.name_and_tag()
        )],
        "{out}"
    );
    let json = project.run(&["verify", "--format", "json"]);
    json.expect_code(1);
    let doc: Value = serde_json::from_str(&json.stdout).expect("verify JSON");
    let entry = doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == "moved")
        .expect("the moved tag");
    assert_eq!(
        entry["repository"],
        format!("{}/{}", mirror.host(), PO0.repository())
    );
    assert_eq!(
        entry["mirror_of"],
        format!("{}/{}", primary.host(), PO0.repository())
    );
}

#[test]
fn a_mirror_that_is_down_never_blocks_the_others_and_a_rerun_fills_the_gap() {
    let mut world = World::new();
    world.mirror.stop();
    let apply = world.run(&["apply", "--format", "json"]);
    apply.expect_code(1);
    let doc: Value = serde_json::from_str(&apply.stdout).expect("apply JSON");
    let mirror = world.mirror.host();
    assert_eq!(
        doc["targets"][&world.primary.host()]["pushed"],
        3,
        "{doc:#}"
    );
    assert_eq!(doc["targets"]["oci:archive"]["pushed"], 3, "{doc:#}");
    for a in doc["artifacts"].as_array().unwrap() {
        let on_mirror = a["repository"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("{mirror}/")));
        assert_eq!(
            a["result"] == "pushed",
            !on_mirror,
            "every artifact landed but the down mirror's: {a:#}"
        );
    }
    // One problem for the mirror, naming it.
    let problems: Vec<&str> = apply
        .stderr
        .lines()
        .filter(|l| l.contains("error") && l.contains(&mirror))
        .collect();
    assert!(!problems.is_empty(), "{apply}");
    for art in ALL {
        let [primary, on_mirror, layout] = world.held(art);
        assert!(primary.is_some() && on_mirror.is_none());
        assert_eq!(layout, primary);
    }

    // Back up: the next run pushes exactly what the mirror misses.
    world.mirror.restart();
    let again = world.run(&["apply"]);
    again.success();
    assert!(
        has_line(&again.stdout, "Apply: 3 pushed, 6 unchanged, 0 failed."),
        "{again}"
    );
    for art in ALL {
        let [primary, on_mirror, layout] = world.held(art);
        assert_eq!(on_mirror, primary);
        assert_eq!(layout, primary);
    }
}

// A mirror copy failing because of what the primary holds (here the manifest states a
// config size its config does not have: judged equivalent, but not copyable byte for byte)
// was reported as transient, with "run plan again": no rerun changes it. It is not
// transient, and the help says what would.
#[test]
fn a_primary_that_cannot_be_copied_as_it_is_is_no_transient_failure() {
    let primary = Registry::start();
    let project = project(
        &primary,
        "created = \"2025-01-01T00:00:00Z\"\nmirrors = [\"oci:archive\"]",
    );
    devkit_push_edited(
        &primary,
        PO0,
        &PO0.text("image-1"),
        "2025-06-01T12:00:00Z",
        "Hourglass",
        &|manifest| {
            let mut value: serde_json::Value = serde_json::from_str(&manifest).unwrap();
            let size = value["config"]["size"].as_u64().unwrap();
            value["config"]["size"] = (size + 1).into();
            serde_json::to_string(&value).unwrap()
        },
    );
    let out = project.run(&["plan", "--format", "json"]);
    out.no_panic();
    let doc: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let text = doc.to_string();
    let failure = doc["artifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|a| {
            a.get("error")
                .filter(|e| e["code"] == "eigenpub::mirror::copy")
        })
        .unwrap_or_else(|| panic!("no mirror copy failure: {text}"));
    let help = failure["help"].as_str().unwrap_or_default();
    assert_eq!(failure["transient"], false, "{failure:#}");
    assert!(
        !help.contains("run plan again")
            && help.contains("adopt-equivalent = false")
            && help.contains(&format!(
                "eigenpub inspect {}/acme/price-oracle:{}",
                primary.host(),
                PO0.tag()
            )),
        "{failure:#}"
    );
}
