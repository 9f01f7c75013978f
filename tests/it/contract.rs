//! Integration tests for "the plan as a contract": what `plan` promises is what
//! `apply` does, in every output format a reviewer or a pipeline reads.
//!
//! They pin the documented JSON plan and apply documents field by field, the
//! Markdown plan a pull request shows (summary, table, YAML diff), saved plans
//! (`plan --out` then `apply FILE`, refused when the registry or the inputs moved
//! since), `--select`/`--exclude`, release records (`apply --release-json`),
//! retags that upload nothing, and snapshots of the text and Markdown renderers.
//!
//! Expected values come from the test's own inputs (spec text, the documented tag
//! template) or from independent readers: `skopeo inspect --raw` hashed with
//! sha2 for digests, and the registry's access log for what was sent. Snapshot
//! files live in `tests/snapshots/contract/`; `UPDATE_SNAPSHOTS=1` rewrites them
//! (review the diff before keeping it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

use crate::harness::{Output, Project, Registry, Request, sha256_digest};

const CREATED: &str = "2025-01-01T00:00:00Z";
const SOURCE: &str = "https://github.com/acme/avs-monorepo";

const PRICE_ORACLE: &str = "price-oracle";
const DICE_ROLLER: &str = "dice-roller";
const WEATHER_FEED: &str = "weather-feed";

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// One artifact of a test project: AVS, operator set, spec component, version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Art {
    avs: &'static str,
    opset: u32,
    component: &'static str,
    version: u32,
}

const PO0: Art = Art {
    avs: PRICE_ORACLE,
    opset: 0,
    component: "aggregator",
    version: 3,
};
const PO1: Art = Art {
    avs: PRICE_ORACLE,
    opset: 1,
    component: "executor",
    version: 3,
};
const DR0: Art = Art {
    avs: DICE_ROLLER,
    opset: 0,
    component: "aggregator",
    version: 1,
};
const WF0: Art = Art {
    avs: WEATHER_FEED,
    opset: 0,
    component: "aggregator",
    version: 2,
};

impl Art {
    /// The spec file, relative to the project.
    fn spec(&self) -> String {
        format!("avs/{}/opset-{}.yaml", self.avs, self.opset)
    }

    /// The documented default tag template `opset-{opset}-v{version}`, applied here.
    fn tag(&self) -> String {
        format!("opset-{}-v{}", self.opset, self.version)
    }

    /// `acme/<avs>:<tag>`, the reference on a test registry without its host.
    fn name_and_tag(&self) -> String {
        format!("acme/{}:{}", self.avs, self.tag())
    }

    /// The repository eigenpub should derive: `<registry>/<avs name>`.
    fn repository(&self, registry: &Registry) -> String {
        format!("{}/acme/{}", registry.host(), self.avs)
    }

    /// `<host>/acme/<avs>:<tag>`.
    fn reference(&self, registry: &Registry) -> String {
        format!("{}:{}", self.repository(registry), self.tag())
    }

    /// The path of this tag's manifest in the registry API.
    fn manifest_path(&self) -> String {
        format!("/v2/acme/{}/manifests/{}", self.avs, self.tag())
    }
}

/// The `digest:` line of a spec made with `seed` (what changes when a seed does).
fn digest_line(seed: &str) -> String {
    format!("    digest: {}", sha256_digest(seed.as_bytes()))
}

/// A realistic runtime spec (valid per the reference validator); `seed` feeds its
/// image digest line, so different seeds give specs that differ in one line.
fn spec_yaml(art: Art, seed: &str) -> String {
    spec_text(art.avs, art.component, seed)
}

fn spec_text(avs: &str, component: &str, seed: &str) -> String {
    crate::harness::spec_yaml(avs, component, seed)
}

/// The seed every artifact starts with.
fn seed(art: Art) -> String {
    format!("{}-{}-image-1", art.avs, art.component)
}

/// `eigenruntime.toml` listing `arts` (grouped into `[[avs]]` tables) with
/// `registry`, `source` and a fixed `created`, plus `extra` lines in `[defaults]`.
fn project_toml(registry: &str, source: &str, extra: &str, arts: &[Art]) -> String {
    let mut s = format!(
        "[defaults]\nregistry = \"{registry}\"\nsource = \"{source}\"\ncreated = \"{CREATED}\"\n{extra}"
    );
    let mut by_avs: Vec<(&str, u32, Vec<Art>)> = Vec::new();
    for art in arts {
        match by_avs.iter_mut().find(|(name, _, _)| *name == art.avs) {
            Some((_, _, list)) => list.push(*art),
            None => by_avs.push((art.avs, art.version, vec![*art])),
        }
    }
    for (name, version, list) in by_avs {
        s.push_str(&format!(
            "\n[[avs]]\nname = \"{name}\"\nversion = {version}\n\n[avs.operator-sets]\n"
        ));
        for art in list {
            s.push_str(&format!("{} = \"{}\"\n", art.opset, art.spec()));
        }
    }
    s
}

/// Writes the project file for `arts` and each artifact's spec with its first seed.
fn write_project(project: &Project, registry: &str, extra: &str, arts: &[Art]) {
    project.write(
        "eigenruntime.toml",
        project_toml(registry, SOURCE, extra, arts),
    );
    for art in arts {
        write_spec(project, *art, &seed(*art));
    }
}

fn write_spec(project: &Project, art: Art, seed: &str) {
    project.write(&art.spec(), spec_yaml(art, seed));
}

/// A new project publishing `arts` to `<host>/acme`.
fn fleet(registry: &Registry, extra: &str, arts: &[Art]) -> Project {
    let project = Project::new();
    write_project(&project, &prefix(registry), extra, arts);
    project
}

/// `<host>/acme`, the repository prefix used with a live registry.
fn prefix(registry: &Registry) -> String {
    format!("{}/acme", registry.host())
}

// ---------------------------------------------------------------------------
// Independent readers
// ---------------------------------------------------------------------------

/// sha256 of the manifest bytes skopeo reads at the artifact's tag (`None` if absent).
fn registry_digest(registry: &Registry, art: Art) -> Option<String> {
    registry.skopeo_raw(&art.name_and_tag()).map(sha256_digest)
}

/// Like [`registry_digest`] for a tag that must exist.
#[track_caller]
fn must_digest(registry: &Registry, art: Art) -> String {
    registry_digest(registry, art).unwrap_or_else(|| {
        panic!(
            "skopeo cannot read {} on {}",
            art.name_and_tag(),
            registry.host()
        )
    })
}

/// Requests that write to the registry (anything but GET and HEAD).
fn writes(requests: &[Request]) -> Vec<&Request> {
    requests
        .iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .collect()
}

/// Blob upload requests (`POST`/`PATCH`/`PUT` under `/blobs/uploads/`).
fn uploads(requests: &[Request]) -> Vec<&Request> {
    requests
        .iter()
        .filter(|r| r.path.contains("/blobs/uploads/"))
        .collect()
}

/// Paths of the manifest PUTs.
fn manifest_puts(requests: &[Request]) -> BTreeSet<String> {
    requests
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/manifests/"))
        .map(|r| r.path.clone())
        .collect()
}

/// stdout of a command as one JSON document.
#[track_caller]
fn json_stdout(out: &Output) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e})\n{out}"))
}

#[track_caller]
fn json_file(project: &Project, rel: &str) -> Value {
    let bytes = project.read(rel);
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{rel} is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// The entry of `doc["artifacts"]` for `art`; panics when there is not exactly one.
#[track_caller]
fn entry(doc: &Value, art: Art) -> &Value {
    let found: Vec<&Value> = artifacts(doc)
        .iter()
        .filter(|a| a["avs"] == art.avs && a["operator_set"] == art.opset)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "want exactly one entry for {}/{} in {doc:#}",
        art.avs,
        art.opset
    );
    found[0]
}

#[track_caller]
fn artifacts(doc: &Value) -> &Vec<Value> {
    doc["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("`artifacts` is not an array in {doc:#}"))
}

/// `(avs, operator set)` of every entry of `doc["artifacts"]`.
fn listed(doc: &Value) -> BTreeSet<(String, u64)> {
    artifacts(doc)
        .iter()
        .map(|a| {
            (
                a["avs"].as_str().unwrap_or_default().to_string(),
                a["operator_set"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

fn keys_of(arts: &[Art]) -> BTreeSet<(String, u64)> {
    arts.iter()
        .map(|a| (a.avs.to_string(), u64::from(a.opset)))
        .collect()
}

/// Lines of `text` (the whole line, untrimmed).
fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

// ---------------------------------------------------------------------------
// JSON plan and apply documents
// ---------------------------------------------------------------------------

/// A registry holding price-oracle/0, price-oracle/1 and dice-roller/0 (tags
/// `opset-1-*` mutable), and a project that now changes price-oracle/1's spec and
/// adds weather-feed/0. Returns the digests skopeo read before the change.
fn mixed_state() -> (Registry, Project, BTreeMap<(String, u64), String>) {
    let registry = Registry::start();
    let extra = "mutable-tags = [\"opset-1-*\"]\n";
    let project = fleet(&registry, extra, &[PO0, PO1, DR0]);
    project.run(&["apply"]).no_panic().success();
    let mut before = BTreeMap::new();
    for art in [PO0, PO1, DR0] {
        before.insert(
            (art.avs.to_string(), u64::from(art.opset)),
            must_digest(&registry, art),
        );
    }
    write_spec(&project, PO1, "price-oracle-executor-image-2");
    project.write(
        "eigenruntime.toml",
        project_toml(&prefix(&registry), SOURCE, extra, &[PO0, PO1, DR0, WF0]),
    );
    write_spec(&project, WF0, &seed(WF0));
    (registry, project, before)
}

#[test]
fn json_plan_fields_name_each_artifact_and_its_observed_and_wanted_digests() {
    let (registry, project, before) = mixed_state();
    let out = project.run(&["plan", "--format", "json"]);
    out.no_panic().success();
    let doc = json_stdout(&out);

    assert_eq!(doc["format_version"], 1, "{doc:#}");
    let hash = doc["inputs_hash"].as_str().unwrap_or_default();
    let hex = hash.strip_prefix("sha256:").unwrap_or_default();
    assert!(
        hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "inputs_hash {hash:?} is not sha256:<64 hex>"
    );

    let all = [PO0, PO1, DR0, WF0];
    assert_eq!(
        listed(&doc),
        keys_of(&all),
        "one entry per artifact\n{doc:#}"
    );
    assert_eq!(artifacts(&doc).len(), all.len(), "{doc:#}");
    let expected_action = |art: Art| match art {
        PO1 => "update",
        WF0 => "create",
        _ => "unchanged",
    };
    for art in all {
        let a = entry(&doc, art);
        assert_eq!(a["spec"], art.spec(), "spec of {a}");
        assert_eq!(
            a["repository"],
            art.repository(&registry),
            "repository of {a}"
        );
        assert_eq!(a["tag"], art.tag(), "tag of {a}");
        assert_eq!(a["action"], expected_action(art), "action of {a}");
        assert_eq!(a["mutable"], art.opset == 1, "mutable of {a}");
        let observed = before.get(&(art.avs.to_string(), u64::from(art.opset)));
        match observed {
            Some(d) => assert_eq!(a["observed_digest"], d.as_str(), "observed_digest of {a}"),
            None => assert!(
                a.as_object()
                    .is_some_and(|o| o.get("observed_digest") == Some(&Value::Null)),
                "observed_digest must be present and null for an absent tag: {a}"
            ),
        }
    }

    // The summary counts exactly the actions listed.
    let summary = doc["summary"]
        .as_object()
        .unwrap_or_else(|| panic!("`summary` is not an object in {doc:#}"));
    for action in ["create", "update", "retag", "unchanged", "refused"] {
        let listed = artifacts(&doc)
            .iter()
            .filter(|a| a["action"] == action)
            .count();
        assert_eq!(
            summary.get(action),
            Some(&Value::from(listed)),
            "summary.{action} vs {listed} listed\n{doc:#}"
        );
    }
    for (action, n) in [("create", 1), ("update", 1), ("unchanged", 2)] {
        assert_eq!(summary[action], n, "summary.{action}\n{doc:#}");
    }

    // `digest` is what the tag holds once applied, as skopeo reads it.
    project.run(&["apply"]).no_panic().success();
    for art in all {
        assert_eq!(
            entry(&doc, art)["digest"],
            must_digest(&registry, art),
            "planned digest of {} vs the manifest skopeo reads after apply",
            art.name_and_tag()
        );
    }
}

#[test]
fn json_apply_reports_a_result_per_artifact_and_totals() {
    let (registry, project, _) = mixed_state();
    let out = project.run(&["apply", "--format", "json"]);
    out.no_panic().success();
    let doc = json_stdout(&out);
    assert_eq!(doc["format_version"], 1, "{doc:#}");
    let all = [PO0, PO1, DR0, WF0];
    assert_eq!(listed(&doc), keys_of(&all), "{doc:#}");
    for art in all {
        let a = entry(&doc, art);
        let want = if art == PO1 || art == WF0 {
            "pushed"
        } else {
            "unchanged"
        };
        assert_eq!(a["result"], want, "result of {a}");
        assert_eq!(
            a["digest"],
            must_digest(&registry, art),
            "digest of {a} vs skopeo"
        );
        assert!(a.get("error").is_none_or(Value::is_null), "no error: {a}");
    }
    let s = &doc["summary"];
    assert_eq!(
        (&s["pushed"], &s["unchanged"], &s["failed"]),
        (&Value::from(2), &Value::from(2), &Value::from(0)),
        "summary\n{doc:#}"
    );
    assert_eq!(s["not_started"], 0, "summary\n{doc:#}");
}

// ---------------------------------------------------------------------------
// Markdown plans
// ---------------------------------------------------------------------------

/// The `<details>…</details>` block that names `reference`.
#[track_caller]
fn details_block<'a>(md: &'a str, reference: &str) -> &'a str {
    let mut rest = md;
    while let Some(start) = rest.find("<details>") {
        let block = &rest[start..];
        let end = block
            .find("</details>")
            .unwrap_or_else(|| panic!("<details> without </details>\n{md}"));
        let block = &block[..end + "</details>".len()];
        if block.contains(reference) {
            return block;
        }
        rest = &rest[start + end..];
    }
    panic!("no <details> block naming {reference}\n{md}");
}

/// The lines of every ```` ```diff ```` fence in `block`.
#[track_caller]
fn diff_fence_lines(block: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut inside = false;
    let mut fences = 0;
    for line in block.lines() {
        if !inside && line == "```diff" {
            inside = true;
            fences += 1;
        } else if inside && line == "```" {
            inside = false;
        } else if inside {
            lines.push(line);
        }
    }
    assert!(!inside, "unclosed diff fence\n{block}");
    assert!(fences > 0, "no ```diff fence\n{block}");
    lines
}

/// First 12 hex digits of a digest, as a reader would compare them.
fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..12]
}

#[test]
fn markdown_plan_of_an_update_shows_the_spec_lines_that_changed() {
    let registry = Registry::start();
    let project = fleet(&registry, "mutable-tags = [\"*\"]\n", &[PO0, PO1]);
    project.run(&["apply"]).no_panic().success();
    let old = must_digest(&registry, PO1);

    let new_seed = "price-oracle-executor-image-2";
    write_spec(&project, PO1, new_seed);
    let out = project.run(&["plan", "--format", "markdown"]);
    out.no_panic().success();
    let md = &out.stdout;

    assert!(
        has_line(md, "**Plan: 0 to create, 1 to update, 1 unchanged.**"),
        "bold summary line\n{md}"
    );
    let reference = PO1.reference(&registry);
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with('|') && l.contains(&format!("`{reference}`")))
        .collect();
    assert_eq!(rows.len(), 1, "one table row for {reference}\n{md}");
    let row = rows[0];
    assert!(row.contains("update"), "row says update: {row}");
    assert!(
        row.contains(&format!("`{}`", PO1.spec())),
        "row names the spec: {row}"
    );
    assert!(row.contains(short(&old)), "row shows the old digest: {row}");
    assert!(
        !md.contains(&format!("`{}`", PO0.reference(&registry))),
        "an unchanged artifact gets no row\n{md}"
    );

    let block = details_block(md, &reference);
    let lines = diff_fence_lines(block);
    let removed = format!("-{}", digest_line(&seed(PO1)));
    let added = format!("+{}", digest_line(new_seed));
    assert!(
        lines.contains(&removed.as_str()),
        "{removed:?} in the diff\n{block}"
    );
    assert!(
        lines.contains(&added.as_str()),
        "{added:?} in the diff\n{block}"
    );
    let changed: Vec<&&str> = lines
        .iter()
        .filter(|l| {
            (l.starts_with('-') || l.starts_with('+'))
                && !l.starts_with("---")
                && !l.starts_with("+++")
        })
        .collect();
    assert_eq!(
        changed.len(),
        2,
        "exactly the one changed line, removed and added\n{block}"
    );
    assert!(
        !md.contains("config.metadata.createdAt"),
        "created is fixed, so createdAt does not change\n{md}"
    );

    // Applying it makes the tag hold the digest the row announced.
    project.run(&["apply"]).no_panic().success();
    let new = must_digest(&registry, PO1);
    assert!(
        row.contains(short(&new)),
        "row shows the new digest {new}: {row}"
    );
}

#[test]
fn markdown_plan_shows_a_changed_source_as_an_annotation_line() {
    let registry = Registry::start();
    // Only byte-identical tags are unchanged here: a new source annotation alone is
    // metadata, which the default (`adopt-equivalent = true`) would keep as published.
    let extra = "mutable-tags = [\"*\"]\nadopt-equivalent = false\n";
    let project = fleet(&registry, extra, &[PO0, PO1]);
    project.run(&["apply"]).no_panic().success();

    let new_source = "https://github.com/acme/avs-monorepo-moved";
    project.write(
        "eigenruntime.toml",
        project_toml(&prefix(&registry), new_source, extra, &[PO0, PO1]),
    );
    let out = project.run(&["plan", "--format", "markdown"]);
    out.no_panic().success();
    let md = &out.stdout;
    assert!(
        has_line(md, "**Plan: 0 to create, 2 to update, 0 unchanged.**"),
        "bold summary line\n{md}"
    );
    for art in [PO0, PO1] {
        let block = details_block(md, &art.reference(&registry));
        let lines = diff_fence_lines(block);
        let key = "annotation.org.opencontainers.image.source";
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with('-') && l.contains(key) && l.ends_with(SOURCE)),
            "a removed {key} line with {SOURCE}\n{block}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with('+') && l.contains(key) && l.ends_with(new_source)),
            "an added {key} line with {new_source}\n{block}"
        );
    }
    assert!(
        !md.contains("config.metadata.createdAt"),
        "created is fixed, so createdAt does not change\n{md}"
    );
}

#[test]
fn markdown_plan_of_many_new_artifacts_fits_a_pull_request_comment() {
    // An OCI layout target: planning creates needs no server.
    let project = Project::new();
    project.write(
        "eigenruntime.toml",
        format!(
            "[defaults]\nregistry = \"oci:out\"\ncreated = \"{CREATED}\"\n\n[[discover]]\nspecs = \"fleet/{{avs}}/opset-{{opset}}.yaml\"\n"
        ),
    );
    let n = 300;
    for i in 0..n {
        let name = format!(
            "an-actively-validated-service-whose-name-is-long-enough-to-make-the-table-rows-of-a-big-plan-overflow-{i:03}"
        );
        project.write(
            &format!("fleet/{name}/opset-0.yaml"),
            spec_text(&name, "aggregator", &format!("seed-{i}")),
        );
    }
    let out = project.run(&["plan", "--format", "markdown"]);
    out.no_panic().success();
    let md = &out.stdout;
    let chars = md.chars().count();
    assert!(
        chars <= 65_000,
        "{chars} characters; GitHub refuses comments over 65,536"
    );
    assert!(
        has_line(
            md,
            &format!("**Plan: {n} to create, 0 to update, 0 unchanged.**")
        ),
        "the summary counts every artifact, shown or not\n{}",
        &md[..md.len().min(2000)]
    );
    let rows = md
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("`oci:out/"))
        .count();
    assert!(rows > 0 && rows < n, "{rows} rows shown of {n}");
    let left_out = (n - rows).to_string();
    let tail: String = md.lines().rev().take(5).collect::<Vec<_>>().join("\n");
    assert!(
        tail.split(|c: char| !c.is_ascii_digit())
            .any(|w| w == left_out),
        "a note says that {left_out} rows were left out\n{tail}"
    );
}

// ---------------------------------------------------------------------------
// Saved plans
// ---------------------------------------------------------------------------

#[test]
fn saved_plan_applies_exactly_the_planned_artifacts() {
    let registry = Registry::start();
    let project = fleet(&registry, "", &[PO0, PO1, DR0]);
    project
        .run(&["--select", DICE_ROLLER, "apply"])
        .no_panic()
        .success();
    let dice_before = must_digest(&registry, DR0);

    project
        .run(&["plan", "--out", "plan.json"])
        .no_panic()
        .success();
    let saved = json_file(&project, "plan.json");
    assert_eq!(entry(&saved, PO0)["action"], "create", "{saved:#}");
    assert_eq!(entry(&saved, PO1)["action"], "create", "{saved:#}");
    assert_eq!(entry(&saved, DR0)["action"], "unchanged", "{saved:#}");

    registry.reset_requests();
    project.run(&["apply", "plan.json"]).no_panic().success();
    let requests = registry.request_lines();
    assert_eq!(
        manifest_puts(&requests),
        [PO0, PO1].iter().map(Art::manifest_path).collect(),
        "manifest PUTs are the planned creates\n{requests:#?}"
    );
    for art in [PO0, PO1, DR0] {
        assert_eq!(
            entry(&saved, art)["digest"],
            must_digest(&registry, art),
            "saved plan's digest of {} vs skopeo",
            art.name_and_tag()
        );
    }
    assert_eq!(must_digest(&registry, DR0), dice_before);

    let after = project.run(&["plan", "--detailed-exitcode"]);
    after.no_panic().expect_code(0);
    assert!(
        has_line(
            &after.stdout,
            "Plan: 0 to create, 0 to update, 3 unchanged."
        ),
        "{after}"
    );
}

/// Applying a saved plan a second time (what eigenpub advises after a partial failure)
/// is not refused as stale: the tags hold what the plan wanted, so nothing is pushed.
#[test]
fn saved_plan_applied_again_completes_without_pushing() {
    let registry = Registry::start();
    let project = fleet(&registry, "", &[PO0, PO1]);
    project
        .run(&["plan", "--out", "plan.json"])
        .no_panic()
        .success();
    project.run(&["apply", "plan.json"]).no_panic().success();
    registry.reset_requests();
    let again = project.run(&["apply", "plan.json"]);
    again.no_panic().success();
    assert!(
        has_line(&again.stdout, "Apply: 0 pushed, 2 unchanged, 0 failed."),
        "{again}"
    );
    let writes: Vec<_> = registry
        .request_lines()
        .into_iter()
        .filter(|r| r.method != "HEAD" && r.method != "GET")
        .collect();
    assert!(writes.is_empty(), "no writes on the re-run: {writes:#?}");
}

#[test]
fn saved_plan_is_refused_when_the_registry_changed_behind_it() {
    let registry = Registry::start();
    // Mutable tags: without the staleness check, apply would happily overwrite.
    let extra = "mutable-tags = [\"*\"]\n";
    let project = fleet(&registry, extra, &[PO0, PO1]);
    project
        .run(&["plan", "--out", "plan.json"])
        .no_panic()
        .success();

    // Someone else publishes other content to one planned tag.
    let other = fleet(&registry, extra, &[PO0, PO1]);
    write_spec(&other, PO0, "someone-elses-aggregator");
    other
        .run(&["--select", "price-oracle/0", "apply"])
        .no_panic()
        .success();
    let theirs = must_digest(&registry, PO0);
    assert_eq!(registry_digest(&registry, PO1), None);

    registry.reset_requests();
    let out = project.run(&["apply", "plan.json"]);
    out.no_panic().expect_code(1);
    assert!(
        out.stderr.contains(&PO0.reference(&registry)),
        "stderr names the tag that moved, {}\n{out}",
        PO0.reference(&registry)
    );
    assert!(
        !out.stderr.contains(&PO1.reference(&registry)),
        "the tag that did not move is not called stale\n{out}"
    );
    let requests = registry.request_lines();
    assert_eq!(
        writes(&requests),
        Vec::<&Request>::new(),
        "nothing was pushed"
    );
    assert_eq!(must_digest(&registry, PO0), theirs, "their push stands");
    assert_eq!(registry_digest(&registry, PO1), None, "still absent");
}

#[test]
fn saved_plan_is_refused_when_a_spec_changed_since() {
    let registry = Registry::start();
    let project = fleet(&registry, "", &[PO0, PO1]);
    project
        .run(&["plan", "--out", "plan.json"])
        .no_panic()
        .success();
    write_spec(&project, PO1, "price-oracle-executor-image-2");

    registry.reset_requests();
    let out = project.run(&["apply", "plan.json"]);
    out.no_panic().expect_code(1);
    assert!(
        out.stderr.contains(&PO1.reference(&registry)),
        "stderr names the tag whose inputs changed, {}\n{out}",
        PO1.reference(&registry)
    );
    assert!(
        !out.stderr.contains(&PO0.reference(&registry)),
        "the artifact whose inputs did not change is not called stale\n{out}"
    );
    let requests = registry.request_lines();
    assert_eq!(
        writes(&requests),
        Vec::<&Request>::new(),
        "nothing was pushed"
    );
    for art in [PO0, PO1] {
        assert_eq!(
            registry_digest(&registry, art),
            None,
            "{} absent",
            art.name_and_tag()
        );
    }
}

// ---------------------------------------------------------------------------
// Selection
// ---------------------------------------------------------------------------

/// Runs `plan --format json` and `apply` with the same selection flags; returns
/// the plan document.
fn plan_and_apply_selected(project: &Project, flags: &[&str]) -> Value {
    let mut args = flags.to_vec();
    args.extend(["plan", "--format", "json"]);
    let plan = project.run(&args);
    plan.no_panic().success();
    let mut args = flags.to_vec();
    args.push("apply");
    project.run(&args).no_panic().success();
    json_stdout(&plan)
}

#[track_caller]
fn assert_present(registry: &Registry, present: &[Art], absent: &[Art]) {
    for art in present {
        assert!(
            registry_digest(registry, *art).is_some(),
            "{} was pushed",
            art.name_and_tag()
        );
    }
    for art in absent {
        assert_eq!(
            registry_digest(registry, *art),
            None,
            "{} is out of scope and must not be pushed",
            art.name_and_tag()
        );
    }
}

#[test]
fn select_by_avs_name_plans_and_applies_only_that_avs() {
    let registry = Registry::start();
    let project = fleet(&registry, "", &[PO0, PO1, DR0, WF0]);
    let plan = plan_and_apply_selected(&project, &["--select", PRICE_ORACLE]);
    assert_eq!(listed(&plan), keys_of(&[PO0, PO1]), "{plan:#}");
    assert_present(&registry, &[PO0, PO1], &[DR0, WF0]);
}

#[test]
fn exclude_by_avs_and_operator_set_leaves_only_that_artifact_out() {
    let registry = Registry::start();
    let project = fleet(&registry, "", &[PO0, PO1, DR0, WF0]);
    let plan = plan_and_apply_selected(&project, &["--exclude", "price-oracle/1"]);
    assert_eq!(listed(&plan), keys_of(&[PO0, DR0, WF0]), "{plan:#}");
    assert_present(&registry, &[PO0, DR0, WF0], &[PO1]);
}

#[test]
fn select_by_repository_and_tag_glob() {
    let registry = Registry::start();
    let project = fleet(&registry, "", &[PO0, PO1, DR0, WF0]);
    let glob = format!("{}:opset-0-*", PO0.repository(&registry));
    let plan = plan_and_apply_selected(&project, &["--select", &glob]);
    assert_eq!(listed(&plan), keys_of(&[PO0]), "{plan:#}");
    assert_present(&registry, &[PO0], &[PO1, DR0, WF0]);
}

#[test]
fn saved_plan_made_with_select_applies_only_the_selection() {
    let registry = Registry::start();
    let project = fleet(&registry, "", &[PO0, PO1, DR0, WF0]);
    project
        .run(&["--select", PRICE_ORACLE, "plan", "--out", "plan.json"])
        .no_panic()
        .success();
    let saved = json_file(&project, "plan.json");
    assert_eq!(listed(&saved), keys_of(&[PO0, PO1]), "{saved:#}");
    project.run(&["apply", "plan.json"]).no_panic().success();
    assert_present(&registry, &[PO0, PO1], &[DR0, WF0]);
}

// ---------------------------------------------------------------------------
// Release records
// ---------------------------------------------------------------------------

#[test]
fn release_json_records_every_artifact_in_scope_pushed_or_unchanged() {
    let registry = Registry::start();
    let project = fleet(&registry, "", &[PO0, PO1, DR0, WF0]);
    // Characters JSON and YAML treat specially, kept byte for byte in runtimeSpec.
    let odd =
        spec_yaml(PO1, &seed(PO1)) + "# café <b>&amp;</b> \"quoted\" \\ back\\slash \ttab 🦀\n";
    project.write(&PO1.spec(), &odd);
    project
        .run(&["--select", "price-oracle/0", "apply"])
        .no_panic()
        .success();

    let out = project.run(&[
        "--exclude",
        WEATHER_FEED,
        "apply",
        "--release-json",
        "rel.json",
    ]);
    out.no_panic().success();
    let rel = json_file(&project, "rel.json");
    let avs: BTreeSet<&str> = rel
        .as_object()
        .unwrap_or_else(|| panic!("release record is not an object: {rel:#}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        avs,
        BTreeSet::from([PRICE_ORACLE, DICE_ROLLER]),
        "every AVS in scope (the unchanged price-oracle/0 too), none out of scope\n{rel:#}"
    );
    assert_eq!(
        rel[PRICE_ORACLE].as_object().map(|o| o.len()),
        Some(2),
        "{rel:#}"
    );
    assert_eq!(
        rel[DICE_ROLLER].as_object().map(|o| o.len()),
        Some(1),
        "{rel:#}"
    );
    for art in [PO0, PO1, DR0] {
        let r = &rel[art.avs][art.opset.to_string()];
        let keys: BTreeSet<&str> = r
            .as_object()
            .unwrap_or_else(|| panic!("no record for {}/{}: {rel:#}", art.avs, art.opset))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["digest", "registry", "runtimeSpec"]),
            "{r}"
        );
        assert_eq!(
            r["digest"],
            must_digest(&registry, art),
            "digest vs skopeo: {r}"
        );
        assert_eq!(r["registry"], art.repository(&registry), "{r}");
        let text = String::from_utf8(project.read(&art.spec())).expect("UTF-8 spec");
        assert_eq!(
            r["runtimeSpec"], text,
            "runtimeSpec is the spec file's text"
        );
    }
    assert_eq!(rel[PRICE_ORACLE]["1"]["runtimeSpec"], odd);
}

// ---------------------------------------------------------------------------
// Retag
// ---------------------------------------------------------------------------

#[test]
fn reverted_spec_on_a_mutable_tag_is_a_retag_that_uploads_nothing() {
    let registry = Registry::start();
    let project = fleet(&registry, "mutable-tags = [\"opset-1-*\"]\n", &[PO0, PO1]);
    project.run(&["apply"]).no_panic().success();
    let original = must_digest(&registry, PO1);

    write_spec(&project, PO1, "price-oracle-executor-image-2");
    project.run(&["apply"]).no_panic().success();
    let changed = must_digest(&registry, PO1);
    assert_ne!(changed, original);

    write_spec(&project, PO1, &seed(PO1));
    let plan = project.run(&["plan"]);
    plan.no_panic().success();
    let reference = PO1.reference(&registry);
    let retags: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|l| l.starts_with("> retag"))
        .collect();
    assert_eq!(retags.len(), 1, "one retag line\n{plan}");
    let words: Vec<&str> = retags[0].split_whitespace().collect();
    assert!(
        words
            .windows(4)
            .any(|w| w == [reference.as_str(), &changed, "->", &original]),
        "`> retag {reference} {changed} -> {original}`\n{plan}"
    );
    assert!(
        has_line(
            &plan.stdout,
            "Plan: 0 to create, 0 to update, 1 unchanged, 1 to retag."
        ),
        "{plan}"
    );

    registry.reset_requests();
    project.run(&["apply"]).no_panic().success();
    let requests = registry.request_lines();
    assert_eq!(uploads(&requests), Vec::<&Request>::new(), "no blob upload");
    assert_eq!(
        manifest_puts(&requests),
        BTreeSet::from([PO1.manifest_path()]),
        "one manifest PUT, the retag\n{requests:#?}"
    );
    assert_eq!(
        must_digest(&registry, PO1),
        original,
        "the tag is back on the original"
    );
}

// ---------------------------------------------------------------------------
// Snapshots of the text and Markdown renderers
// ---------------------------------------------------------------------------

/// Compares `actual` with `tests/snapshots/contract/<name>`, or writes it there
/// when `UPDATE_SNAPSHOTS` is set.
#[track_caller]
fn snapshot(name: &str, actual: &str) {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "snapshots",
        "contract",
        name,
    ]
    .iter()
    .collect();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create snapshot dir");
        std::fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read snapshot {} ({e}); run with UPDATE_SNAPSHOTS=1 to create it\n--- actual ---\n{actual}",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "snapshot {} differs (- expected, + actual; UPDATE_SNAPSHOTS=1 rewrites it):\n{}",
            path.display(),
            line_diff(&expected, actual)
        );
    }
}

/// A line diff (longest common subsequence), `-` expected, `+` actual.
fn line_diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.split_inclusive('\n').collect();
    let b: Vec<&str> = actual.split_inclusive('\n').collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    let show = |sign: char, line: &str| format!("{sign}{line:?}\n");
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&show(' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&show('-', a[i]));
            i += 1;
        } else {
            out.push_str(&show('+', b[j]));
            j += 1;
        }
    }
    out
}

#[test]
fn text_and_markdown_renderings_match_their_snapshots() {
    // An OCI layout, fixed time and fixed specs: every byte of output is stable.
    let project = Project::new();
    let extra = "mutable-tags = [\"opset-1-*\"]\n";
    write_project(&project, "oci:out", extra, &[PO0, PO1, DR0]);

    let first = project.run(&["plan"]);
    first.no_panic().success();
    snapshot("plan-create.txt", &first.stdout);
    let apply = project.run(&["--concurrency", "1", "apply"]);
    apply.no_panic().success();
    snapshot("apply.txt", &apply.stdout);

    // One update (mutable tag), one refusal (immutable tag), one create, one unchanged.
    write_spec(&project, PO1, "price-oracle-executor-image-2");
    write_spec(&project, DR0, "dice-roller-aggregator-image-2");
    project.write(
        "eigenruntime.toml",
        project_toml("oci:out", SOURCE, extra, &[PO0, PO1, DR0, WF0]),
    );
    write_spec(&project, WF0, &seed(WF0));

    // A refused overwrite fails the plan (exit 1): apply would refuse it.
    let plan = project.run(&["plan"]);
    plan.no_panic().expect_code(1);
    snapshot("plan-mixed.txt", &plan.stdout);
    let verbose = project.run(&["-v", "plan"]);
    verbose.no_panic().expect_code(1);
    snapshot("plan-mixed-verbose.txt", &verbose.stdout);
    let md = project.run(&["plan", "--format", "markdown"]);
    md.no_panic().expect_code(1);
    snapshot("plan-mixed.md", &md.stdout);

    // An apply that refuses prints the refusals and pushes nothing.
    let refused = project.run(&["apply"]);
    refused.no_panic().expect_code(1);
    snapshot("apply-refused.txt", &refused.stdout);

    // With the overwrite allowed: apply, then nothing left to do.
    let allowed = project.run(&["--concurrency", "1", "apply", "--allow-overwrite"]);
    allowed.no_panic().success();
    snapshot("apply-mixed.txt", &allowed.stdout);
    let done = project.run(&["plan"]);
    done.no_panic().success();
    snapshot("plan-none.txt", &done.stdout);
    let done_md = project.run(&["plan", "--format", "markdown"]);
    done_md.no_panic().success();
    snapshot("plan-none.md", &done_md.stdout);

    // Back to the first executor spec: its manifest is still in the layout.
    write_spec(&project, PO1, &seed(PO1));
    let retag = project.run(&["plan"]);
    retag.no_panic().success();
    snapshot("plan-retag.txt", &retag.stdout);
    let retag_md = project.run(&["plan", "--format", "markdown"]);
    retag_md.no_panic().success();
    snapshot("plan-retag.md", &retag_md.stdout);
}
