//! Integration tests for eigenpub's core promise: `plan` says exactly what `apply`
//! will do, `apply` pushes exactly the artifacts planned (byte for byte, to a real
//! registry or an OCI layout), the same inputs always give the same digests, and
//! bad input is a clear error rather than a panic.
//!
//! Every expected value is computed here from the test's own inputs (spec bytes
//! hashed with sha2, tags from the documented template, times formatted by the
//! harness) or read back through an independent path (skopeo, plain HTTP, files
//! of the layout), never copied from eigenpub's output.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::process::Command;

use serde_json::Value;

use crate::harness::{
    Output, Project, Registry, free_port, rfc3339_utc, run, sha256_digest, skopeo_raw, spec_yaml,
};

const AVS: &str = "price-oracle";
const AGGREGATOR: &str = "avs/price-oracle/aggregator.yaml";
const EXECUTOR: &str = "avs/price-oracle/executor.yaml";
const SOURCE: &str = "https://github.com/acme/avs-monorepo";
const CREATED: &str = "2025-01-01T00:00:00Z";
const VERSION: u32 = 3;

const ARTIFACT_TYPE: &str = "application/vnd.eigenruntime.manifest.v1";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.eigenruntime.manifest.config.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const TITLE: &str = "org.opencontainers.image.title";

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// The documented default tag template `opset-{opset}-v{version}`, applied here.
fn tag(opset: u64, version: impl Display) -> String {
    format!("opset-{opset}-v{version}")
}

/// `[defaults]` with `registry`, `source`, `created` (omitted when `None`) and
/// `extra` lines appended verbatim.
fn defaults_toml(registry: &str, created: Option<&str>, extra: &str) -> String {
    let created = created
        .map(|c| format!("created = \"{c}\"\n"))
        .unwrap_or_default();
    format!("[defaults]\nregistry = \"{registry}\"\nsource = \"{SOURCE}\"\n{created}{extra}")
}

/// One `[[avs]]` table with a `version` and its operator sets.
fn avs_toml(name: &str, version: u32, operator_sets: &[(u64, &str)]) -> String {
    let mut s =
        format!("\n[[avs]]\nname = \"{name}\"\nversion = {version}\n\n[avs.operator-sets]\n");
    for (id, path) in operator_sets {
        s.push_str(&format!("{id} = \"{path}\"\n"));
    }
    s
}

/// The price-oracle AVS: operator set 0 (aggregator) and 1 (executor), version 3,
/// `created` fixed, published to `registry`.
fn price_oracle(registry: &str, extra_defaults: &str) -> Project {
    let project = Project::new();
    write_price_oracle(&project, registry, Some(CREATED), extra_defaults);
    project
}

fn write_price_oracle(project: &Project, registry: &str, created: Option<&str>, extra: &str) {
    project
        .write(
            "eigenruntime.toml",
            defaults_toml(registry, created, extra)
                + &avs_toml(AVS, VERSION, &[(0, AGGREGATOR), (1, EXECUTOR)]),
        )
        .write(
            AGGREGATOR,
            spec_yaml(AVS, "aggregator", "aggregator-image-1"),
        )
        .write(EXECUTOR, spec_yaml(AVS, "executor", "executor-image-1"));
}

/// `<host>/acme`, the repository prefix used with a live registry.
fn prefix(registry: &Registry) -> String {
    format!("{}/acme", registry.host())
}

/// The repository eigenpub should derive: `<registry>/<avs name>`.
fn repository(registry: &Registry, avs: &str) -> String {
    format!("{}/acme/{avs}", registry.host())
}

// ---------------------------------------------------------------------------
// Reading eigenpub's output
// ---------------------------------------------------------------------------

/// One entry of `plan --format json`'s `artifacts`.
#[derive(Clone, Debug)]
struct Planned {
    avs: String,
    operator_set: u64,
    spec: String,
    repository: String,
    tag: String,
    action: String,
    digest: String,
    observed_digest: Option<String>,
}

struct JsonPlan {
    output: Output,
    artifacts: Vec<Planned>,
    summary: Value,
}

impl JsonPlan {
    fn get(&self, avs: &str, operator_set: u64) -> &Planned {
        self.artifacts
            .iter()
            .find(|a| a.avs == avs && a.operator_set == operator_set)
            .unwrap_or_else(|| {
                panic!(
                    "no artifact for {avs} operator set {operator_set} in the plan\n{}",
                    self.output
                )
            })
    }

    #[track_caller]
    fn assert_summary(&self, create: u64, update: u64, unchanged: u64, refused: u64) {
        let got = [
            &self.summary["create"],
            &self.summary["update"],
            &self.summary["unchanged"],
            &self.summary["refused"],
        ];
        let want = [create, update, unchanged, refused].map(Value::from);
        assert_eq!(
            got.map(Clone::clone),
            want,
            "summary (create, update, unchanged, refused)\n{}",
            self.output
        );
    }
}

/// Run a prepared `plan --format json` command and parse its stdout (any exit code).
fn plan_json_of(cmd: Command) -> JsonPlan {
    let output = run(cmd);
    output.no_panic();
    let doc: Value = serde_json::from_str(&output.stdout)
        .unwrap_or_else(|e| panic!("plan --format json printed no JSON document ({e})\n{output}"));
    assert_eq!(doc["format_version"], 1, "format_version\n{output}");
    let field = |a: &Value, key: &str| -> String {
        a[key]
            .as_str()
            .unwrap_or_else(|| panic!("artifact field {key:?} is not a string in {a}\n{output}"))
            .to_string()
    };
    let artifacts: Vec<Planned> = doc["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("`artifacts` is not an array\n{output}"))
        .iter()
        .map(|a| {
            let planned = Planned {
                avs: field(a, "avs"),
                operator_set: a["operator_set"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("operator_set is not an integer in {a}\n{output}")),
                spec: field(a, "spec"),
                repository: field(a, "repository"),
                tag: field(a, "tag"),
                action: field(a, "action"),
                digest: field(a, "digest"),
                observed_digest: match &a["observed_digest"] {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => panic!("observed_digest is {other}, want null or a string\n{output}"),
                },
            };
            assert!(
                a.as_object()
                    .is_some_and(|o| o.contains_key("observed_digest")),
                "observed_digest must be present (null when absent) in {a}"
            );
            assert_digest_shape(&planned.digest);
            if let Some(observed) = &planned.observed_digest {
                assert_digest_shape(observed);
            }
            planned
        })
        .collect();
    let summary = doc["summary"].clone();
    JsonPlan {
        output,
        artifacts,
        summary,
    }
}

/// `plan --format json` in `project`; must exit 0.
fn plan_json(project: &Project) -> JsonPlan {
    let plan = plan_json_of(project.eigenpub(&["plan", "--format", "json"]));
    plan.output.success();
    plan
}

#[track_caller]
fn assert_digest_shape(digest: &str) {
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    assert!(
        hex.len() == 64
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{digest:?} is not sha256:<64 lowercase hex>"
    );
}

/// The change lines of a text plan (`+ create`, `~ update`, `! refuse`), trimmed.
fn change_lines(out: &Output) -> Vec<String> {
    out.stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("+ ") || l.starts_with("~ ") || l.starts_with("! "))
        .map(String::from)
        .collect()
}

/// Some stdout line, trimmed, equals `expected`.
#[track_caller]
fn assert_line(out: &Output, expected: &str) {
    assert!(
        out.stdout_lines().contains(&expected),
        "no stdout line equal to {expected:?}\n{out}"
    );
}

/// `skopeo inspect --raw` of a registry tag, which must exist.
fn registry_manifest(registry: &Registry, avs: &str, tag: &str) -> Vec<u8> {
    registry
        .skopeo_raw(&format!("acme/{avs}:{tag}"))
        .unwrap_or_else(|| panic!("skopeo cannot read acme/{avs}:{tag} on {}", registry.host()))
}

/// `skopeo inspect --raw oci:<project>/out/<avs>:<tag>`, which must exist.
fn layout_manifest(project: &Project, avs: &str, tag: &str) -> Vec<u8> {
    let reference = format!(
        "oci:{}:{tag}",
        project.join(&format!("out/{avs}")).display()
    );
    skopeo_raw(&reference).unwrap_or_else(|| panic!("skopeo cannot read {reference}"))
}

/// A blob of an OCI layout, read straight from `blobs/sha256/<hex>`.
fn layout_blob(project: &Project, avs: &str, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    project.read(&format!("out/{avs}/blobs/sha256/{hex}"))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Checks of one artifact's manifest and config against the spec it was made from.
/// `config` is the config blob's bytes as read back independently.
fn check_artifact(
    manifest_bytes: &[u8],
    config_bytes: &[u8],
    spec_path: &str,
    spec_bytes: &[u8],
    expected_tag: &str,
    expected_created: &str,
) {
    let m = json(manifest_bytes);
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["artifactType"], ARTIFACT_TYPE);

    let layers = m["layers"].as_array().expect("layers array");
    assert_eq!(layers.len(), 1, "exactly one layer: {m}");
    assert_eq!(layers[0]["mediaType"], "text/yaml");
    assert_eq!(
        layers[0]["digest"],
        sha256_digest(spec_bytes),
        "layer digest is the sha256 of {spec_path} as written"
    );
    assert_eq!(layers[0]["size"], spec_bytes.len());

    assert_eq!(m["config"]["mediaType"], CONFIG_MEDIA_TYPE);
    assert_eq!(m["config"]["digest"], sha256_digest(config_bytes));
    assert_eq!(m["config"]["size"], config_bytes.len());

    let a = &m["annotations"];
    assert_eq!(a["io.eigenruntime.spec.version"], "v1");
    assert_eq!(a["org.opencontainers.image.created"], expected_created);
    assert_eq!(
        a["org.opencontainers.image.description"],
        format!("EigenRuntime specification for {AVS}")
    );
    assert_eq!(a["org.opencontainers.image.source"], SOURCE);

    let c = json(config_bytes);
    assert_eq!(c["formatVersion"], "1.0");
    assert_eq!(c["eigenRuntimeAPIVersion"], "v1");
    assert_eq!(c["kind"], "Hourglass");
    assert_eq!(c["avsName"], AVS);
    assert!(
        c["validationSchema"]
            .as_str()
            .is_some_and(|s| s.starts_with("https://")),
        "validationSchema is a URL: {c}"
    );
    assert_eq!(
        c["metadata"]["releaseVersion"], expected_tag,
        "releaseVersion is the tag"
    );
    assert_eq!(c["metadata"]["createdAt"], expected_created);
    assert!(
        c["metadata"]["devkitVersion"].is_string(),
        "devkitVersion: {c}"
    );
}

/// How Go's `json.Marshal` of a map encodes `v`: compact, keys sorted, and
/// `<`, `>`, `&` escaped. (serde_json here has no `preserve_order`, so its maps
/// are sorted.)
fn go_marshal(v: &Value) -> String {
    go_escape(serde_json::to_string(v).expect("serialize"))
}

/// Go's `json.MarshalIndent(v, "", "  ")` of a map: as above, two-space indent.
fn go_marshal_indent(v: &Value) -> String {
    go_escape(serde_json::to_string_pretty(v).expect("serialize"))
}

fn go_escape(s: String) -> String {
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

// ---------------------------------------------------------------------------
// Plan and apply against a registry
// ---------------------------------------------------------------------------

#[test]
fn apply_then_plan_shows_no_changes() {
    let registry = Registry::start();
    let project = price_oracle(&prefix(&registry), "");
    let repo = repository(&registry, AVS);

    let before = project.run(&["plan", "--detailed-exitcode"]);
    before.no_panic().expect_code(2);
    assert_line(&before, "Plan: 2 to create, 0 to update, 0 unchanged.");
    let changes = change_lines(&before);
    assert_eq!(changes.len(), 2, "one line per change\n{before}");
    for opset in [0, 1] {
        let start = format!("+ create {repo}:{} sha256:", tag(opset, VERSION));
        assert!(
            changes.iter().any(|l| l.starts_with(&start)),
            "no line starting {start:?}\n{before}"
        );
    }
    // Without --detailed-exitcode a plan with changes still exits 0.
    project.run(&["plan"]).no_panic().success();

    let apply = project.run(&["apply"]);
    apply.no_panic().success();
    assert_line(&apply, "Apply: 2 pushed, 0 unchanged, 0 failed.");

    let after = project.run(&["plan", "--detailed-exitcode"]);
    after.no_panic().expect_code(0);
    assert_line(&after, "Plan: 0 to create, 0 to update, 2 unchanged.");
    assert_eq!(
        change_lines(&after),
        Vec::<String>::new(),
        "no change lines\n{after}"
    );

    let again = project.run(&["apply"]);
    again.no_panic().success();
    assert_line(&again, "Apply: 0 pushed, 2 unchanged, 0 failed.");
}

#[test]
fn pushed_manifests_are_the_planned_bytes_and_carry_the_spec_unmodified() {
    let registry = Registry::start();
    let project = price_oracle(&prefix(&registry), "");
    let repo = repository(&registry, AVS);

    let plan = plan_json(&project);
    assert_eq!(plan.artifacts.len(), 2, "{}", plan.output);
    plan.assert_summary(2, 0, 0, 0);
    for (opset, spec) in [(0, AGGREGATOR), (1, EXECUTOR)] {
        let a = plan.get(AVS, opset);
        assert_eq!(a.spec, spec, "spec path as written");
        assert_eq!(a.repository, repo);
        assert_eq!(a.tag, tag(opset, VERSION));
        assert_eq!(a.action, "create");
        assert_eq!(a.observed_digest, None);
    }
    assert_ne!(plan.get(AVS, 0).digest, plan.get(AVS, 1).digest);

    project.run(&["apply"]).no_panic().success();

    for (opset, spec) in [(0, AGGREGATOR), (1, EXECUTOR)] {
        let planned = plan.get(AVS, opset);
        let expected_tag = tag(opset, VERSION);
        let manifest = registry_manifest(&registry, AVS, &expected_tag);
        assert_eq!(
            sha256_digest(&manifest),
            planned.digest,
            "registry holds exactly the planned manifest bytes for {expected_tag}"
        );
        let m = json(&manifest);
        let config_digest = m["config"]["digest"].as_str().expect("config digest");
        let config = registry.blob(&format!("acme/{AVS}"), config_digest);
        let spec_bytes = project.read(spec);
        check_artifact(
            &manifest,
            &config,
            spec,
            &spec_bytes,
            &expected_tag,
            CREATED,
        );

        // layer-title defaults to true: the layer is named after the spec file.
        let file_name = spec.rsplit('/').next().unwrap();
        assert_eq!(m["layers"][0]["annotations"][TITLE], file_name, "{m}");

        // The layer blob in the registry is the spec file, byte for byte.
        let layer_digest = m["layers"][0]["digest"].as_str().unwrap();
        assert_eq!(
            registry.blob(&format!("acme/{AVS}"), layer_digest),
            spec_bytes
        );
    }
}

#[test]
fn changed_spec_on_an_immutable_tag_is_refused_and_nothing_is_pushed() {
    let registry = Registry::start();
    let project = price_oracle(&prefix(&registry), "");
    let repo = repository(&registry, AVS);
    project.run(&["apply"]).no_panic().success();
    let executor_tag = tag(1, VERSION);
    let aggregator_tag = tag(0, VERSION);
    let old = sha256_digest(registry_manifest(&registry, AVS, &executor_tag));
    let aggregator = sha256_digest(registry_manifest(&registry, AVS, &aggregator_tag));

    project.write(EXECUTOR, spec_yaml(AVS, "executor", "executor-image-2"));

    let plan = plan_json_of(project.eigenpub(&["plan", "--format", "json"]));
    let executor = plan.get(AVS, 1);
    assert_eq!(executor.action, "refused", "{}", plan.output);
    assert_eq!(executor.observed_digest.as_deref(), Some(old.as_str()));
    assert_ne!(executor.digest, old, "the changed spec gives a new digest");
    let unchanged = plan.get(AVS, 0);
    assert_eq!(unchanged.action, "unchanged", "{}", plan.output);
    assert_eq!(unchanged.digest, aggregator);
    assert_eq!(
        unchanged.observed_digest.as_deref(),
        Some(aggregator.as_str())
    );
    plan.assert_summary(0, 0, 1, 1);

    let text = project.run(&["plan"]);
    text.no_panic();
    let changes = change_lines(&text);
    assert_eq!(changes.len(), 1, "exactly one change line\n{text}");
    assert!(
        changes[0].starts_with(&format!("! refuse {repo}:{executor_tag}")),
        "refuse line names {repo}:{executor_tag}\n{text}"
    );

    registry.reset_requests();
    let apply = project.run(&["apply"]);
    apply.no_panic().expect_code(1);
    let said = format!("{}{}", apply.stdout, apply.stderr);
    assert!(
        said.contains("--allow-overwrite") && said.contains("version"),
        "apply explains: bump `version` or pass --allow-overwrite\n{apply}"
    );
    let writes: Vec<_> = registry
        .requests()
        .into_iter()
        .filter(|(method, _, _)| method != "GET" && method != "HEAD")
        .collect();
    assert_eq!(
        writes,
        vec![],
        "a refused apply writes nothing to the registry"
    );
    assert_eq!(
        sha256_digest(registry_manifest(&registry, AVS, &executor_tag)),
        old
    );
    assert_eq!(
        sha256_digest(registry_manifest(&registry, AVS, &aggregator_tag)),
        aggregator
    );

    // --allow-overwrite pushes exactly the planned bytes.
    let forced = project.run(&["apply", "--allow-overwrite"]);
    forced.no_panic().success();
    assert_line(&forced, "Apply: 1 pushed, 1 unchanged, 0 failed.");
    assert_eq!(
        sha256_digest(registry_manifest(&registry, AVS, &executor_tag)),
        executor.digest
    );
    assert_eq!(
        sha256_digest(registry_manifest(&registry, AVS, &aggregator_tag)),
        aggregator
    );
    let after = project.run(&["plan"]);
    after.no_panic().success();
    assert_line(&after, "Plan: 0 to create, 0 to update, 2 unchanged.");
}

#[test]
fn mutable_tag_globs_that_do_not_match_still_refuse() {
    let registry = Registry::start();
    let project = price_oracle(
        &prefix(&registry),
        "mutable-tags = [\"latest\", \"opset-*-rc\"]\n",
    );
    project.run(&["apply"]).no_panic().success();
    project.write(EXECUTOR, spec_yaml(AVS, "executor", "executor-image-2"));
    let plan = plan_json_of(project.eigenpub(&["plan", "--format", "json"]));
    assert_eq!(plan.get(AVS, 1).action, "refused", "{}", plan.output);
    assert_eq!(plan.get(AVS, 0).action, "unchanged", "{}", plan.output);
}

#[test]
fn changed_spec_on_a_mutable_tag_is_one_update_and_apply_overwrites_it() {
    let registry = Registry::start();
    let project = price_oracle(&prefix(&registry), "mutable-tags = [\"opset-*\"]\n");
    let repo = repository(&registry, AVS);
    project.run(&["apply"]).no_panic().success();
    let executor_tag = tag(1, VERSION);
    let aggregator_tag = tag(0, VERSION);
    let old = sha256_digest(registry_manifest(&registry, AVS, &executor_tag));
    let aggregator = sha256_digest(registry_manifest(&registry, AVS, &aggregator_tag));

    project.write(EXECUTOR, spec_yaml(AVS, "executor", "executor-image-2"));

    let plan = plan_json(&project);
    let executor = plan.get(AVS, 1).clone();
    assert_eq!(executor.action, "update", "{}", plan.output);
    assert_eq!(executor.observed_digest.as_deref(), Some(old.as_str()));
    assert_ne!(executor.digest, old);
    assert_eq!(plan.get(AVS, 0).action, "unchanged", "{}", plan.output);
    plan.assert_summary(0, 1, 1, 0);

    let text = project.run(&["plan", "--detailed-exitcode"]);
    text.no_panic().expect_code(2);
    assert_eq!(
        change_lines(&text),
        vec![format!(
            "~ update {repo}:{executor_tag} {old} -> {}",
            executor.digest
        )],
        "{text}"
    );
    assert_line(&text, "Plan: 0 to create, 1 to update, 1 unchanged.");

    let apply = project.run(&["apply"]);
    apply.no_panic().success();
    assert_line(&apply, "Apply: 1 pushed, 1 unchanged, 0 failed.");
    assert_eq!(
        sha256_digest(registry_manifest(&registry, AVS, &executor_tag)),
        executor.digest
    );
    assert_eq!(
        sha256_digest(registry_manifest(&registry, AVS, &aggregator_tag)),
        aggregator
    );
    project
        .run(&["plan", "--detailed-exitcode"])
        .no_panic()
        .expect_code(0);
}

#[test]
fn new_operator_set_is_exactly_one_create() {
    let registry = Registry::start();
    let project = price_oracle(&prefix(&registry), "");
    let repo = repository(&registry, AVS);
    project.run(&["apply"]).no_panic().success();

    let watcher = "avs/price-oracle/watcher.yaml";
    project
        .write(watcher, spec_yaml(AVS, "watcher", "watcher-image-1"))
        .write(
            "eigenruntime.toml",
            defaults_toml(&prefix(&registry), Some(CREATED), "")
                + &avs_toml(
                    AVS,
                    VERSION,
                    &[(0, AGGREGATOR), (1, EXECUTOR), (2, watcher)],
                ),
        );

    let plan = plan_json(&project);
    plan.assert_summary(1, 0, 2, 0);
    let created = plan.get(AVS, 2);
    assert_eq!(created.action, "create");
    assert_eq!(created.observed_digest, None);
    assert_eq!(created.spec, watcher);

    let text = project.run(&["plan", "--detailed-exitcode"]);
    text.no_panic().expect_code(2);
    assert_eq!(
        change_lines(&text),
        vec![format!(
            "+ create {repo}:{} {}",
            tag(2, VERSION),
            created.digest
        )],
        "{text}"
    );
    assert_line(&text, "Plan: 1 to create, 0 to update, 2 unchanged.");
}

#[test]
fn unreachable_registry_is_a_clear_error() {
    let port = free_port(); // nothing listens here
    let host = format!("127.0.0.1:{port}");
    let project = price_oracle(&format!("{host}/acme"), "");
    for command in ["plan", "apply"] {
        let out = project.run(&[command]);
        out.no_panic().expect_code(1);
        assert!(
            out.stderr.contains(&host),
            "`{command}` names the unreachable registry {host} on stderr\n{out}"
        );
    }
}

#[test]
fn noop_plan_costs_one_request_per_artifact() {
    let registry = Registry::start();
    let project = Project::new();
    project
        .write(
            "eigenruntime.toml",
            defaults_toml(&prefix(&registry), Some(CREATED), "")
                + &avs_toml(AVS, VERSION, &[(0, AGGREGATOR), (1, EXECUTOR)])
                + &avs_toml("weather", 1, &[(0, "avs/weather/aggregator.yaml")]),
        )
        .write(
            AGGREGATOR,
            spec_yaml(AVS, "aggregator", "aggregator-image-1"),
        )
        .write(EXECUTOR, spec_yaml(AVS, "executor", "executor-image-1"))
        .write(
            "avs/weather/aggregator.yaml",
            spec_yaml("weather", "aggregator", "weather-image-1"),
        );
    project.run(&["apply"]).no_panic().success();

    registry.reset_requests();
    let plan = project.run(&["plan"]);
    plan.no_panic().success();
    assert_line(&plan, "Plan: 0 to create, 0 to update, 3 unchanged.");
    let requests = registry.requests();
    let expected: BTreeSet<String> = [
        format!("/v2/acme/{AVS}/manifests/{}", tag(0, VERSION)),
        format!("/v2/acme/{AVS}/manifests/{}", tag(1, VERSION)),
        format!("/v2/acme/weather/manifests/{}", tag(0, 1)),
    ]
    .into();
    assert_eq!(
        requests.len(),
        3,
        "a no-op plan of 3 artifacts makes 3 requests, made: {requests:#?}"
    );
    let paths: BTreeSet<String> = requests.iter().map(|(_, p, _)| p.clone()).collect();
    assert_eq!(
        paths, expected,
        "one manifest lookup per artifact: {requests:#?}"
    );
    for (method, path, status) in &requests {
        assert!(method == "HEAD" || method == "GET", "{method} {path}");
        assert_eq!(*status, 200, "{method} {path}");
    }
}

// ---------------------------------------------------------------------------
// OCI layout target
// ---------------------------------------------------------------------------

#[test]
fn oci_layout_target_holds_the_planned_manifests() {
    let project = price_oracle("oci:out", "");
    let plan = plan_json(&project);
    plan.assert_summary(2, 0, 0, 0);

    let apply = project.run(&["apply"]);
    apply.no_panic().success();
    assert_line(&apply, "Apply: 2 pushed, 0 unchanged, 0 failed.");

    assert!(
        project.exists(&format!("out/{AVS}/oci-layout")),
        "oci-layout file"
    );
    assert!(
        project.exists(&format!("out/{AVS}/index.json")),
        "index.json"
    );
    let layout = json(&project.read(&format!("out/{AVS}/oci-layout")));
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");

    for (opset, spec) in [(0, AGGREGATOR), (1, EXECUTOR)] {
        let planned = plan.get(AVS, opset);
        let expected_tag = tag(opset, VERSION);
        assert_eq!(planned.tag, expected_tag);
        let manifest = layout_manifest(&project, AVS, &expected_tag);
        assert_eq!(
            sha256_digest(&manifest),
            planned.digest,
            "layout holds the planned bytes"
        );
        assert_eq!(layout_blob(&project, AVS, &planned.digest), manifest);
        let m = json(&manifest);
        let config = layout_blob(&project, AVS, m["config"]["digest"].as_str().unwrap());
        let spec_bytes = project.read(spec);
        check_artifact(
            &manifest,
            &config,
            spec,
            &spec_bytes,
            &expected_tag,
            CREATED,
        );
        let layer = layout_blob(&project, AVS, m["layers"][0]["digest"].as_str().unwrap());
        assert_eq!(layer, spec_bytes, "the layer blob is the spec file");
    }

    let after = project.run(&["plan", "--detailed-exitcode"]);
    after.no_panic().expect_code(0);
    assert_line(&after, "Plan: 0 to create, 0 to update, 2 unchanged.");
}

#[test]
fn artifact_bytes_are_encoded_like_devkit_when_layer_title_is_off() {
    // Go's encoder escapes `&`; a source URL with a query shows whether we do too.
    let source = "https://github.com/acme/avs-monorepo?ref=main&path=avs";
    let project = Project::new();
    project
        .write(
            "eigenruntime.toml",
            format!(
                "[defaults]\nregistry = \"oci:out\"\nsource = \"{source}\"\ncreated = \"{CREATED}\"\nlayer-title = false\n"
            ) + &avs_toml(AVS, VERSION, &[(0, AGGREGATOR)]),
        )
        .write(AGGREGATOR, spec_yaml(AVS, "aggregator", "aggregator-image-1"));
    let plan = plan_json(&project);
    project.run(&["apply"]).no_panic().success();

    let manifest = layout_manifest(&project, AVS, &tag(0, VERSION));
    assert_eq!(sha256_digest(&manifest), plan.get(AVS, 0).digest);
    let m = json(&manifest);
    assert_eq!(
        String::from_utf8_lossy(&manifest),
        go_marshal(&m),
        "manifest is compact JSON with sorted keys and Go's HTML escaping"
    );
    assert_eq!(
        keys(&m),
        set(&[
            "annotations",
            "artifactType",
            "config",
            "layers",
            "mediaType",
            "schemaVersion"
        ])
    );
    assert_eq!(keys(&m["config"]), set(&["digest", "mediaType", "size"]));
    assert_eq!(
        keys(&m["layers"][0]),
        set(&["digest", "mediaType", "size"]),
        "layer-title = false: no annotations on the layer"
    );
    assert_eq!(m["annotations"]["org.opencontainers.image.source"], source);

    let config = layout_blob(&project, AVS, m["config"]["digest"].as_str().unwrap());
    let c = json(&config);
    assert_eq!(
        String::from_utf8_lossy(&config),
        go_marshal_indent(&c),
        "config is two-space-indented JSON with sorted keys and no trailing newline"
    );
    assert_eq!(
        keys(&c),
        set(&[
            "avsName",
            "eigenRuntimeAPIVersion",
            "formatVersion",
            "kind",
            "metadata",
            "validationSchema"
        ])
    );
    assert_eq!(
        keys(&c["metadata"]),
        set(&["createdAt", "devkitVersion", "releaseVersion"])
    );
    assert_eq!(
        c["validationSchema"], "https://eigenruntime.io/schemas/hourglass/v1/manifest.json",
        "devkit's schema URL for kind Hourglass"
    );
}

// ---------------------------------------------------------------------------
// Determinism
// ---------------------------------------------------------------------------

#[test]
fn digests_do_not_depend_on_time_zone_or_project_directory() {
    let first = price_oracle("oci:out", "");
    let second = price_oracle("oci:out", "");
    assert_ne!(first.path(), second.path());
    let mut seen = Vec::new();
    for project in [&first, &second] {
        for tz in ["UTC", "Asia/Kolkata"] {
            let mut cmd = project.eigenpub(&["plan", "--format", "json"]);
            cmd.env("TZ", tz);
            let plan = plan_json_of(cmd);
            plan.output.success();
            let digests: Vec<(u64, String)> = [0, 1]
                .map(|opset| (opset, plan.get(AVS, opset).digest.clone()))
                .into();
            seen.push((project.path().to_path_buf(), tz, digests));
        }
    }
    for other in &seen[1..] {
        assert_eq!(other.2, seen[0].2, "{:?} vs {:?}", other, seen[0]);
    }
}

#[test]
fn source_date_epoch_is_the_default_created_time() {
    let project = Project::new();
    write_price_oracle(&project, "oci:out", None, "");
    let epoch: i64 = 1_700_000_000;
    let expected = rfc3339_utc(epoch);

    let mut plan_cmd = project.eigenpub(&["plan", "--format", "json"]);
    plan_cmd
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("TZ", "Asia/Kolkata");
    let plan = plan_json_of(plan_cmd);
    plan.output.success();

    let mut apply = project.eigenpub(&["apply"]);
    apply
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("TZ", "Asia/Kolkata");
    run(apply).no_panic().success();

    let manifest = layout_manifest(&project, AVS, &tag(0, VERSION));
    assert_eq!(sha256_digest(&manifest), plan.get(AVS, 0).digest);
    let m = json(&manifest);
    assert_eq!(
        m["annotations"]["org.opencontainers.image.created"],
        expected
    );
    let config = json(&layout_blob(
        &project,
        AVS,
        m["config"]["digest"].as_str().unwrap(),
    ));
    assert_eq!(config["metadata"]["createdAt"], expected);
}

// ---------------------------------------------------------------------------
// created = "git"
// ---------------------------------------------------------------------------

/// A committed price-oracle project with `created = "git"`, publishing to `oci:out`
/// (ignored by git), all at `commit_date`.
fn committed_price_oracle(commit_date: &str) -> Project {
    let project = Project::new();
    write_price_oracle(&project, "oci:out", Some("git"), "");
    project
        .write(".gitignore", "out/\n")
        .git_init()
        .git_commit_all("release price-oracle", commit_date);
    project
}

#[test]
fn created_from_git_is_the_commit_time_in_utc() {
    let project = committed_price_oracle("2024-03-05T10:20:30+05:30");
    let epoch: i64 = project
        .git(&["log", "-1", "--format=%ct"])
        .trim()
        .parse()
        .expect("commit time");
    let expected = rfc3339_utc(epoch);
    assert_eq!(
        expected, "2024-03-05T04:50:30Z",
        "harness sanity: 10:20:30+05:30 in UTC"
    );

    let mut digests = Vec::new();
    for tz in ["UTC", "Asia/Kolkata", "America/Los_Angeles"] {
        let mut cmd = project.eigenpub(&["plan", "--format", "json"]);
        cmd.env("TZ", tz);
        let plan = plan_json_of(cmd);
        plan.output.success();
        for spec in [AGGREGATOR, EXECUTOR] {
            assert!(
                !plan.output.stderr.contains(spec),
                "a clean tree gives no warning about {spec}\n{}",
                plan.output
            );
        }
        digests.push([0, 1].map(|opset| plan.get(AVS, opset).digest.clone()));
    }
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "same digests in every TZ: {digests:?}"
    );

    let mut apply = project.eigenpub(&["apply"]);
    apply.env("TZ", "Asia/Kolkata");
    run(apply).no_panic().success();
    for opset in [0, 1] {
        let manifest = layout_manifest(&project, AVS, &tag(opset, VERSION));
        assert_eq!(sha256_digest(&manifest), digests[0][opset as usize]);
        let m = json(&manifest);
        assert_eq!(
            m["annotations"]["org.opencontainers.image.created"],
            expected
        );
        let config = json(&layout_blob(
            &project,
            AVS,
            m["config"]["digest"].as_str().unwrap(),
        ));
        assert_eq!(config["metadata"]["createdAt"], expected);
    }
}

#[test]
fn uncommitted_spec_change_warns_naming_the_file() {
    let project = committed_price_oracle("2024-03-05T10:20:30+05:30");
    project.write(EXECUTOR, spec_yaml(AVS, "executor", "executor-image-2"));
    let out = project.run(&["plan"]);
    out.no_panic().success();
    // A warning headline: miette marks warnings with `⚠`; plain loggers say "warning".
    let headlines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains('⚠') || l.to_lowercase().contains("warn"))
        .collect();
    assert!(
        headlines.iter().any(|l| l.contains("executor.yaml")),
        "a warning on stderr names the uncommitted executor.yaml\n{out}"
    );
    // (Source snippets may quote neighbouring lines, so only headlines are checked.)
    assert!(
        !headlines.iter().any(|l| l.contains("aggregator.yaml")),
        "the committed aggregator.yaml is not warned about\n{out}"
    );
}

// ---------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------

#[test]
fn discover_finds_specs_by_pattern_and_tags_them_with_the_spec_version() {
    let project = Project::new();
    project
        .write(
            "eigenruntime.toml",
            defaults_toml("oci:out", Some(CREATED), "")
                + "\n[[discover]]\nspecs = \"fleet/{avs}/opset-{opset}.yaml\"\n",
        )
        .write(
            "fleet/alpha/opset-0.yaml",
            spec_yaml("alpha", "aggregator", "alpha-0"),
        )
        .write(
            "fleet/alpha/opset-1.yaml",
            spec_yaml("alpha", "executor", "alpha-1"),
        )
        .write(
            "fleet/beta/opset-0.yaml",
            spec_yaml("beta", "aggregator", "beta-0"),
        )
        .write("fleet/beta/notes.yaml", "not: a spec\n");
    let plan = plan_json(&project);
    // spec_yaml writes `version: 0.3.1`; no [[avs]] gives a version, so it is used.
    let got: BTreeSet<(String, u64, String, String, String)> = plan
        .artifacts
        .iter()
        .map(|a| {
            (
                a.avs.clone(),
                a.operator_set,
                a.spec.clone(),
                a.tag.clone(),
                a.action.clone(),
            )
        })
        .collect();
    let want: BTreeSet<_> = [("alpha", 0), ("alpha", 1), ("beta", 0)]
        .into_iter()
        .map(|(avs, opset)| {
            (
                avs.to_string(),
                opset,
                format!("fleet/{avs}/opset-{opset}.yaml"),
                tag(opset, "0.3.1"),
                "create".to_string(),
            )
        })
        .collect();
    assert_eq!(got, want, "{}", plan.output);
    plan.assert_summary(3, 0, 0, 0);
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[test]
fn missing_project_file_is_named() {
    let project = Project::new();
    for args in [&["validate"][..], &["plan"][..]] {
        let out = project.run(args);
        out.no_panic().expect_code(1);
        assert!(out.stderr.contains("eigenruntime.toml"), "{args:?}\n{out}");
    }
    let out = project.run(&["-c", "release.toml", "validate"]);
    out.no_panic().expect_code(1);
    assert!(out.stderr.contains("release.toml"), "{out}");
}

#[test]
fn toml_syntax_error_names_the_line() {
    let project = price_oracle("oci:out", "");
    let toml = defaults_toml("oci:out", Some(CREATED), "")
        + "\n[[avs]]\nname = \"price-oracle\nversion = 3\n\n[avs.operator-sets]\n0 = \"avs/price-oracle/aggregator.yaml\"\n";
    let line = toml
        .lines()
        .position(|l| l == "name = \"price-oracle")
        .expect("the broken line")
        + 1;
    project.write("eigenruntime.toml", &toml);
    let out = project.run(&["validate"]);
    out.no_panic().expect_code(1);
    let mentions = [
        format!(":{line}:"),
        format!("line {line}"),
        format!("{line} │"),
        format!("{line} |"),
    ];
    assert!(
        mentions.iter().any(|m| out.stderr.contains(m.as_str())),
        "stderr points at line {line} (one of {mentions:?})\n{out}"
    );
}

#[test]
fn missing_spec_file_is_named() {
    let project = Project::new();
    let missing = "avs/price-oracle/executr.yaml";
    project
        .write(
            "eigenruntime.toml",
            defaults_toml("oci:out", Some(CREATED), "")
                + &avs_toml(AVS, VERSION, &[(0, AGGREGATOR), (1, missing)]),
        )
        .write(
            AGGREGATOR,
            spec_yaml(AVS, "aggregator", "aggregator-image-1"),
        );
    for command in ["validate", "plan"] {
        let out = project.run(&[command]);
        out.no_panic().expect_code(1);
        assert!(
            out.stderr.contains(missing),
            "`{command}` names {missing}\n{out}"
        );
    }
}

#[test]
fn two_artifacts_on_one_repository_tag_are_both_named() {
    let project = Project::new();
    let (first, second) = ("team-a/aggregator.yaml", "team-b/aggregator.yaml");
    project
        .write(
            "eigenruntime.toml",
            defaults_toml("oci:out", Some(CREATED), "")
                + &avs_toml(AVS, VERSION, &[(0, first)])
                + &avs_toml(AVS, VERSION, &[(0, second)]),
        )
        .write(first, spec_yaml(AVS, "aggregator", "a"))
        .write(second, spec_yaml(AVS, "aggregator", "b"));
    let out = project.run(&["validate"]);
    out.no_panic().expect_code(1);
    assert!(
        out.stderr.contains(first) && out.stderr.contains(second),
        "both colliding artifacts ({first}, {second}) are named\n{out}"
    );
    assert!(
        out.stderr.contains(&tag(0, VERSION)),
        "the contested tag is named\n{out}"
    );
}

#[test]
fn tag_template_that_merges_operator_sets_is_an_error() {
    let project = price_oracle("oci:out", "tag = \"v{version}\"\n");
    let out = project.run(&["validate"]);
    out.no_panic().expect_code(1);
    for needle in [
        "eigenpub::project::duplicate",
        ":v3",
        &format!("first: {AGGREGATOR}"),
        &format!("second: {EXECUTOR}"),
    ] {
        assert!(
            out.stderr.contains(needle),
            "names both artifacts on :v3, each at its place ({needle:?})\n{out}"
        );
    }
}

#[test]
fn unknown_keys_are_named() {
    for (key, toml) in [
        (
            "colour",
            defaults_toml("oci:out", Some(CREATED), "colour = \"blue\"\n")
                + &avs_toml(AVS, VERSION, &[(0, AGGREGATOR)]),
        ),
        (
            "descripton",
            defaults_toml("oci:out", Some(CREATED), "")
                + &avs_toml(AVS, VERSION, &[(0, AGGREGATOR)])
                    .replace("version = 3\n", "version = 3\ndescripton = \"oracle\"\n"),
        ),
    ] {
        let project = Project::new();
        project.write("eigenruntime.toml", &toml).write(
            AGGREGATOR,
            spec_yaml(AVS, "aggregator", "aggregator-image-1"),
        );
        let out = project.run(&["validate"]);
        out.no_panic().expect_code(1);
        assert!(
            out.stderr.contains(key),
            "unknown key {key:?} is named\n{toml}\n{out}"
        );
    }
}

#[test]
fn valid_project_validates_without_a_registry() {
    // A registry prefix nothing listens on: validate succeeds without one.
    let project = price_oracle(&format!("127.0.0.1:{}/acme", free_port()), "");
    project.run(&["validate"]).no_panic().success();
    // And with a registry there, validate does not contact it.
    let registry = Registry::start();
    let project = price_oracle(&prefix(&registry), "");
    project.run(&["validate"]).no_panic().success();
    assert_eq!(
        registry.requests(),
        Vec::new(),
        "validate sent requests to the registry"
    );
}

/// A blob already in one repository of the registry is mounted into another, not uploaded
/// again: two AVSs publish the same spec file, and the second upload of its bytes is a
/// cross-repository mount (`POST ?mount=…&from=<first repository>` answered 201, no `PUT`).
#[test]
fn a_blob_in_another_repository_of_the_registry_is_mounted_not_uploaded() {
    let registry = Registry::start();
    let project = Project::new();
    let shared = spec_yaml("shared", "aggregator", "shared-image");
    project
        .write(
            "eigenruntime.toml",
            defaults_toml(&prefix(&registry), Some(CREATED), "")
                + &avs_toml("first", 1, &[(0, "shared.yaml")])
                + &avs_toml("second", 1, &[(0, "shared.yaml")]),
        )
        .write("shared.yaml", &shared);
    let layer = sha256_digest(shared.as_bytes());
    registry.reset_requests();
    // One artifact at a time, so the first repository holds the layer before the second asks.
    project
        .run(&["--concurrency", "1", "apply"])
        .no_panic()
        .success();
    let requests = registry.request_lines();
    let layer_puts: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains(&format!("digest={layer}")))
        .collect();
    assert_eq!(
        layer_puts.len(),
        1,
        "the layer's bytes are uploaded once: {requests:#?}"
    );
    let mounted: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.path.starts_with("/v2/acme/second/blobs/uploads/")
                && r.path.contains(&format!("mount={layer}"))
                && r.path.contains("from=acme/first")
        })
        .collect();
    assert_eq!(mounted.len(), 1, "{requests:#?}");
    assert_eq!(mounted[0].status, 201, "{requests:#?}");
    // And the second repository really serves it.
    assert_eq!(registry.blob("acme/second", &layer), shared.as_bytes());
}

/// `git status` lists a renamed spec as two entries (new name, then old name): eigenpub
/// reads it without stumbling (it once panicked on a non-ASCII old name) and warns that
/// the spec has uncommitted changes.
#[test]
fn a_renamed_spec_in_git_status_is_read_without_panicking() {
    let project = Project::new();
    project
        .write(
            "eigenruntime.toml",
            defaults_toml("oci:out", Some("git"), "")
                + &avs_toml("renamed", 1, &[(0, "spécs/a.yaml"), (1, "spécs/b.yaml")]),
        )
        .write("spécs/a.yaml", spec_yaml("renamed", "aggregator", "one"))
        .git_init()
        .git_commit_all("specs", "2025-03-01T12:00:00+00:00");
    project.git(&["mv", "spécs/a.yaml", "spécs/b.yaml"]);
    project.write("spécs/a.yaml", spec_yaml("renamed", "aggregator", "two"));
    let out = project.run(&["validate"]);
    out.no_panic();
    assert!(
        out.code == 0 || out.code == 1,
        "validate ends with a verdict\n{out}"
    );
    assert!(
        out.stderr.contains("spécs/b.yaml"),
        "the renamed spec is named\n{out}"
    );
}

/// Registry limits outside their range are refused at load time with the setting named,
/// rather than hanging (`max-concurrency = 0`) or panicking later.
#[test]
fn registry_limits_out_of_range_are_errors() {
    for (setting, text) in [
        ("max-concurrency = 0", "max-concurrency"),
        ("requests-per-second = 1e-300", "requests-per-second"),
    ] {
        // A live registry, so that a failure cannot come from an unreachable one.
        let registry = Registry::start();
        let project = price_oracle(&prefix(&registry), "");
        let toml = String::from_utf8(project.read("eigenruntime.toml")).unwrap();
        project.write(
            "eigenruntime.toml",
            format!("{toml}\n[registries.\"{}\"]\n{setting}\n", registry.host()),
        );
        let out = project.run(&["plan"]);
        out.no_panic().expect_code(1);
        assert!(out.stderr.contains(text), "{setting}\n{out}");
        assert_eq!(
            registry.requests(),
            Vec::new(),
            "a bad setting is refused before any request ({setting})"
        );
    }
}
