//! What a user sees when their project is wrong: every problem says what is wrong,
//! where (file:line:col) and what to do, and bad input never makes eigenpub panic,
//! hang, or touch a registry.
//!
//! The core is a snapshot corpus, `tests/diagnostics/<case>/`: each folder is a
//! small project (`eigenruntime.toml`, spec files) with one kind of mistake, and
//! `expected.txt` is the rendered diagnostics (`validate`'s stderr, no colour),
//! reviewed by eye. Run with `UPDATE_SNAPSHOTS=1` to rewrite the snapshots after an
//! intended change, then review the diff. Cases named `warn-*` only warn (exit 0).
//!
//! Snapshots pin wording; separate tests pin what must hold whatever the wording:
//! the primary location of each problem is computed here from the case's own files
//! (the place of a marked needle), every diagnostic has a file, a line and a help in
//! `--format json`, the JSON and GitHub forms agree with the human one, hostile
//! input (alias bombs, deep nesting, 10 MiB specs, BOM + CRLF) is handled promptly,
//! and an invalid spec stops `plan`/`apply` before a single registry request.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Output, Project, Registry, sha256_digest, skopeo_raw};

/// Longest a hostile input may keep eigenpub busy.
const PROMPT: Duration = Duration::from_secs(10);

/// A spec that the bundled hourglass schema accepts.
const GOOD_SPEC: &str = "apiVersion: eigenruntime.io/v1
kind: Hourglass
name: price-oracle
version: 0.3.1
spec:
  aggregator:
    registry: public.ecr.aws/acme/price-oracle-aggregator
    digest: sha256:2adb1da199c7f6401203ec52abb9b37a311aa432ceb0677f5abfdfb5f717e528
    env:
      - name: L1_RPC_URL
        type: runtime
    resources:
      tee_enabled: false
";

/// Every case the corpus must hold (more may be added).
const REQUIRED_CASES: &[&str] = &[
    "toml-syntax-error",
    "toml-unknown-key-near-miss",
    "toml-wrong-type-concurrency",
    "toml-unknown-key-in-avs",
    "spec-yaml-syntax-error",
    "spec-is-a-list",
    "spec-duplicate-key",
    "spec-empty-file",
    "spec-not-utf8",
    "schema-missing-name",
    "schema-component-without-digest",
    "schema-env-entry-without-name",
    "schema-spec-wrong-type",
    "many-problems-in-many-files",
    "spec-file-missing",
    "warn-discover-empty",
    "duplicate-repository-tag",
    "repository-uppercase",
    "tag-unknown-placeholder",
    "tag-invalid-after-rendering",
    "created-not-a-time",
    "schema-url-unknown",
    "schema-mapped-local-violated",
    "warn-digest-tag",
];

// ---------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics")
}

/// The case folders, sorted by name.
fn cases() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(corpus_dir())
        .expect("read tests/diagnostics")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Copy `from` into `to` recursively, leaving out `expected.txt` and `out/`.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        if name == "expected.txt" || name == "out" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        }
    }
}

/// A temporary copy of corpus case `name` (so paths in messages are relative and stable).
fn case_project(name: &str) -> Project {
    let project = Project::new();
    copy_tree(&corpus_dir().join(name), project.path());
    project
}

/// The exit code `validate` must give for a case.
fn expected_code(case: &str) -> i32 {
    if case.starts_with("warn-") { 0 } else { 1 }
}

/// `validate` (with `extra` arguments) in a copy of `case`, checked for exit code
/// and absence of panics.
fn validate_case(case: &str, extra: &[&str]) -> Output {
    let project = case_project(case);
    let mut args = vec!["validate"];
    args.extend_from_slice(extra);
    let out = project.run(&args);
    assert!(
        !out.stderr.contains("panicked") && !out.stdout.contains("panicked"),
        "case {case}: eigenpub panicked\n{out}"
    );
    assert_eq!(
        out.code,
        expected_code(case),
        "case {case}: unexpected exit code\n{out}"
    );
    out
}

/// A line-by-line comparison that marks the first difference.
fn show_mismatch(case: &str, expected: &str, actual: &str) -> String {
    let first = expected
        .lines()
        .zip(actual.lines())
        .position(|(e, a)| e != a)
        .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
    format!(
        "=== case {case}: stderr differs from expected.txt (first difference at line {})\n\
         --- expected ---\n{expected}\n--- actual ---\n{actual}\n",
        first + 1
    )
}

#[test]
fn corpus_holds_every_required_case() {
    let present = cases();
    let missing: Vec<_> = REQUIRED_CASES
        .iter()
        .filter(|c| !present.iter().any(|p| p == *c))
        .collect();
    assert!(missing.is_empty(), "corpus cases missing: {missing:?}");
    for case in &present {
        let dir = corpus_dir().join(case);
        assert!(
            dir.join("eigenruntime.toml").is_file(),
            "{case} has no eigenruntime.toml"
        );
    }
}

/// The rendered diagnostics of every corpus case equal its reviewed snapshot.
#[test]
fn corpus_diagnostics_match_their_snapshots() {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for case in cases() {
        let out = case_project(&case).run(&["validate"]);
        if out.stderr.contains("panicked") || out.code != expected_code(&case) {
            failures.push(format!(
                "=== case {case}: want exit code {} and no panic\n{out}\n",
                expected_code(&case)
            ));
            continue;
        }
        let expected_path = corpus_dir().join(&case).join("expected.txt");
        if update {
            fs::write(&expected_path, &out.stderr)
                .unwrap_or_else(|e| panic!("write {}: {e}", expected_path.display()));
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_SNAPSHOTS=1 to create it, then review it)",
                expected_path.display()
            )
        });
        if out.stderr != expected {
            failures.push(show_mismatch(&case, &expected, &out.stderr));
        }
    }
    assert!(
        failures.is_empty(),
        "{} snapshot(s) differ (UPDATE_SNAPSHOTS=1 rewrites them; review the diff):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Locations, computed from the case files themselves
// ---------------------------------------------------------------------------

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (u64, u64) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line as u64, col as u64)
}

/// Where `needle` points in `text`: the `^` in it marks the spot (else its start).
fn needle_position(text: &str, needle: &str) -> Option<(u64, u64)> {
    let mark = needle.find('^').unwrap_or(0);
    let plain = needle.replacen('^', "", 1);
    let at = text.find(&plain)?;
    Some(line_col(text, at + mark))
}

/// Where a problem must point.
struct Place {
    case: &'static str,
    /// The diagnostic's code; empty: any code.
    code: &'static str,
    /// The file as eigenpub names it (specs are `./<path>` when run in the project folder).
    file: &'static str,
    /// Picks one diagnostic when a case has several with the same code and file.
    message_contains: &'static str,
    /// Acceptable places: a needle in `file` whose `^` marks the expected line:col.
    needles: &'static [&'static str],
    /// Only the line is checked (the column depends on where a parser gave up).
    line_only: bool,
}

const fn place(
    case: &'static str,
    code: &'static str,
    file: &'static str,
    needles: &'static [&'static str],
) -> Place {
    Place {
        case,
        code,
        file,
        message_contains: "",
        needles,
        line_only: false,
    }
}

const PLACES: &[Place] = &[
    // A syntax error is `project::toml` (it once was `project::type`, "check the value's type").
    Place {
        line_only: true,
        ..place(
            "toml-syntax-error",
            "eigenpub::project::toml",
            "eigenruntime.toml",
            &["[[avs]"],
        )
    },
    place(
        "toml-unknown-key-near-miss",
        "eigenpub::project::unknown-key",
        "eigenruntime.toml",
        &["^regsitry"],
    ),
    place(
        "toml-wrong-type-concurrency",
        "eigenpub::project::type",
        "eigenruntime.toml",
        &["concurrency = ^\"8\""],
    ),
    place(
        "toml-unknown-key-in-avs",
        "eigenpub::project::unknown-key",
        "eigenruntime.toml",
        &["^operator-set ="],
    ),
    Place {
        line_only: true,
        ..place(
            "spec-yaml-syntax-error",
            "eigenpub::spec::yaml",
            "./aggregator.yaml",
            &["^    env:"],
        )
    },
    place(
        "spec-duplicate-key",
        "",
        "./aggregator.yaml",
        &["^version: 9.9.9"],
    ),
    place(
        "spec-is-a-list",
        "eigenpub::spec::not-a-mapping",
        "./aggregator.yaml",
        &["^- apiVersion"],
    ),
    Place {
        line_only: true,
        ..place(
            "spec-not-utf8",
            "eigenpub::spec::encoding",
            "./aggregator.yaml",
            &["^description: caf"],
        )
    },
    // A missing field is labelled at its parent: the start of the document for a
    // top-level field, the key naming the parent mapping, or the list entry.
    place(
        "schema-missing-name",
        "eigenpub::spec::schema",
        "./aggregator.yaml",
        &["^apiVersion"],
    ),
    place(
        "schema-component-without-digest",
        "eigenpub::spec::schema",
        "./aggregator.yaml",
        &["  ^aggregator:"],
    ),
    place(
        "schema-env-entry-without-name",
        "eigenpub::spec::schema",
        "./aggregator.yaml",
        &["^- type: secret", "- ^type: secret"],
    ),
    place(
        "schema-spec-wrong-type",
        "eigenpub::spec::schema",
        "./aggregator.yaml",
        &["spec: ^3"],
    ),
    place(
        "many-problems-in-many-files",
        "eigenpub::spec::schema",
        "./aggregator.yaml",
        &["^apiVersion"],
    ),
    Place {
        line_only: true,
        ..place(
            "many-problems-in-many-files",
            "eigenpub::spec::yaml",
            "./dice.yaml",
            &["  ^kind: x"],
        )
    },
    place(
        "many-problems-in-many-files",
        "eigenpub::spec::schema",
        "./executor.yaml",
        &["spec: ^3"],
    ),
    place(
        "many-problems-in-many-files",
        "eigenpub::spec::missing",
        "eigenruntime.toml",
        &["2 = ^\"missing.yaml\""],
    ),
    place(
        "many-problems-in-many-files",
        "eigenpub::created::invalid",
        "eigenruntime.toml",
        &["created = ^\"last tuesday\""],
    ),
    place(
        "spec-file-missing",
        "eigenpub::spec::missing",
        "eigenruntime.toml",
        &["0 = ^\"avs/price-oracle/aggregator.yaml\""],
    ),
    place(
        "warn-discover-empty",
        "eigenpub::project::discover-empty",
        "eigenruntime.toml",
        &["specs = ^\"fleet/"],
    ),
    // The primary place is the second of the two entries; both are labelled in the snapshot.
    place(
        "duplicate-repository-tag",
        "eigenpub::project::duplicate",
        "eigenruntime.toml",
        &["1 = ^\"executor.yaml\""],
    ),
    place(
        "repository-uppercase",
        "eigenpub::project::repository",
        "eigenruntime.toml",
        &["name = ^\"Price-Oracle\""],
    ),
    place(
        "tag-unknown-placeholder",
        "eigenpub::project::tag-template",
        "eigenruntime.toml",
        &["tag = ^\"opset-", "-v^{ver}"],
    ),
    place(
        "tag-invalid-after-rendering",
        "eigenpub::project::tag",
        "eigenruntime.toml",
        &["version = ^\"1.0+build\""],
    ),
    place(
        "created-not-a-time",
        "eigenpub::created::invalid",
        "eigenruntime.toml",
        &["created = ^\"yesterday\""],
    ),
    place(
        "schema-url-unknown",
        "eigenpub::schema::unknown",
        "eigenruntime.toml",
        &["schema = ^\"https://example.com/x.json\""],
    ),
    Place {
        message_contains: "maintainer",
        ..place(
            "schema-mapped-local-violated",
            "eigenpub::spec::schema",
            "./aggregator.yaml",
            &["^apiVersion"],
        )
    },
    Place {
        message_contains: "Hourglass",
        ..place(
            "schema-mapped-local-violated",
            "eigenpub::spec::schema",
            "./aggregator.yaml",
            &["kind: ^Sandglass"],
        )
    },
    place(
        "warn-digest-tag",
        "eigenpub::spec::digest",
        "./aggregator.yaml",
        &["digest: ^latest"],
    ),
];

/// `validate --format json` of a case: the whole of stdout is one JSON document.
fn json_diagnostics(case: &str) -> Vec<Value> {
    try_json_diagnostics(case).unwrap_or_else(|why| panic!("{why}"))
}

/// [`json_diagnostics`], with a wrong exit code, a panic or bad JSON as `Err`.
fn try_json_diagnostics(case: &str) -> Result<Vec<Value>, String> {
    let out = case_project(case).run(&["validate", "--format", "json"]);
    if out.stderr.contains("panicked") || out.code != expected_code(case) {
        return Err(format!(
            "case {case}: want exit code {} and no panic\n{out}",
            expected_code(case)
        ));
    }
    let doc: Value = serde_json::from_str(out.stdout.trim()).map_err(|e| {
        format!("case {case}: stdout of --format json is not one JSON document: {e}\n{out}")
    })?;
    if doc["format_version"] != 1 {
        return Err(format!("case {case}: format_version is not 1: {doc}"));
    }
    doc["diagnostics"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("case {case}: no diagnostics array: {doc}"))
}

/// Each problem's primary location is the place in the case's own file that
/// causes it (computed here from the file, not from eigenpub's output).
#[test]
fn diagnostics_point_at_the_cause() {
    let mut failures = Vec::new();
    let mut by_case: Vec<(&str, Vec<&Place>)> = Vec::new();
    for p in PLACES {
        match by_case.iter_mut().find(|(c, _)| *c == p.case) {
            Some((_, v)) => v.push(p),
            None => by_case.push((p.case, vec![p])),
        }
    }
    for (case, places) in by_case {
        let diagnostics = match try_json_diagnostics(case) {
            Ok(d) => d,
            Err(why) => {
                failures.push(why);
                continue;
            }
        };
        for p in places {
            let bytes = fs::read(
                corpus_dir()
                    .join(case)
                    .join(p.file.trim_start_matches("./")),
            )
            .expect("read case file");
            let text = String::from_utf8_lossy(&bytes);
            let wanted: Vec<(u64, u64)> = p
                .needles
                .iter()
                .map(|n| {
                    needle_position(&text, n)
                        .unwrap_or_else(|| panic!("case {case}: needle {n:?} not in {}", p.file))
                })
                .collect();
            let found = diagnostics.iter().find(|d| {
                (p.code.is_empty() || d["code"] == p.code)
                    && d["file"] == p.file
                    && d["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(p.message_contains))
            });
            let Some(d) = found else {
                let seen: Vec<String> = diagnostics
                    .iter()
                    .map(|d| format!("{} {} {}:{}", d["code"], d["file"], d["line"], d["column"]))
                    .collect();
                failures.push(format!(
                    "{case}: no {} diagnostic in {} (want it at {wanted:?}); got {seen:?}",
                    p.code, p.file
                ));
                continue;
            };
            let got = (d["line"].as_u64(), d["column"].as_u64());
            let ok = wanted
                .iter()
                .any(|&(line, col)| got.0 == Some(line) && (p.line_only || got.1 == Some(col)));
            if !ok {
                failures.push(format!(
                    "{case}: {} in {} is at line {:?} column {:?}; expected {} {wanted:?} ({:?})\n  message: {}",
                    p.code,
                    p.file,
                    got.0,
                    got.1,
                    if p.line_only { "the line of" } else { "one of" },
                    p.needles,
                    d["message"]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} misplaced diagnostic(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// In every case, every diagnostic names its file, line and column (only an empty
/// file has no line to point at) and says what to do.
#[test]
fn every_diagnostic_names_its_place_and_a_help() {
    let mut failures = Vec::new();
    for case in cases() {
        let diagnostics = match try_json_diagnostics(&case) {
            Ok(d) => d,
            Err(why) => {
                failures.push(why);
                continue;
            }
        };
        for d in diagnostics {
            let what = format!("{case}: {} {}", d["code"], d["message"]);
            if !d["file"].is_string() {
                failures.push(format!("{what}: no file"));
            }
            if case != "spec-empty-file" && !(d["line"].is_u64() && d["column"].is_u64()) {
                failures.push(format!("{what}: no line/column"));
            }
            if d["help"].as_str().is_none_or(|h| h.trim().is_empty()) {
                failures.push(format!("{what}: no help"));
            }
            let severity = if case.starts_with("warn-") {
                "warning"
            } else {
                "error"
            };
            if d["severity"] != severity {
                failures.push(format!(
                    "{what}: severity {} (want {severity})",
                    d["severity"]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} incomplete diagnostic(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The other formats agree with the human one
// ---------------------------------------------------------------------------

/// The `╭─[file:line:col]` headers of a human rendering, in order.
fn snapshot_places(rendered: &str) -> Vec<(String, u64, u64)> {
    rendered
        .lines()
        .filter_map(|l| {
            let inner = l.split_once("╭─[")?.1.strip_suffix(']')?;
            let mut parts = inner.rsplitn(3, ':');
            let col = parts.next()?.parse().ok()?;
            let line = parts.next()?.parse().ok()?;
            Some((parts.next()?.to_string(), line, col))
        })
        .collect()
}

const MANY: &str = "many-problems-in-many-files";

#[test]
fn validate_json_lists_every_problem_with_the_snapshot_places() {
    let diagnostics = json_diagnostics(MANY);
    let human = fs::read_to_string(corpus_dir().join(MANY).join("expected.txt"))
        .expect("read the reviewed snapshot");
    let mut from_json = Vec::new();
    for d in &diagnostics {
        for key in ["severity", "code", "message", "file"] {
            assert!(d[key].is_string(), "`{key}` is not a string: {d}");
        }
        assert!(
            d["line"].is_u64() && d["column"].is_u64(),
            "line/column: {d}"
        );
        assert_eq!(d["severity"], "error", "{d}");
        from_json.push((
            d["file"].as_str().unwrap().to_string(),
            d["line"].as_u64().unwrap(),
            d["column"].as_u64().unwrap(),
        ));
    }
    let from_human = snapshot_places(&human);
    assert_eq!(
        from_json, from_human,
        "JSON places differ from the snapshot's\n{human}"
    );
    // Every file with a problem is there: the four files that have one each.
    let files: std::collections::BTreeSet<_> =
        from_json.iter().map(|(f, _, _)| f.as_str()).collect();
    assert_eq!(
        files.into_iter().collect::<Vec<_>>(),
        [
            "./aggregator.yaml",
            "./dice.yaml",
            "./executor.yaml",
            "eigenruntime.toml"
        ]
    );
    assert_eq!(diagnostics.len(), 5, "{diagnostics:#?}");
}

/// `%XX` decoding of a GitHub workflow-command property or message.
fn unescape_github(s: &str) -> String {
    s.replace("%0A", "\n")
        .replace("%0D", "\r")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
}

#[test]
fn validate_github_prints_one_annotation_per_problem_with_file_line_col_title() {
    let diagnostics = json_diagnostics(MANY);
    let out = validate_case(MANY, &["--format", "github"]);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        diagnostics.len(),
        "one line per problem\n{out}"
    );
    for (line, d) in lines.iter().zip(&diagnostics) {
        let rest = line
            .strip_prefix("::error ")
            .unwrap_or_else(|| panic!("not an ::error command: {line}"));
        let (props, message) = rest
            .split_once("::")
            .unwrap_or_else(|| panic!("no `::` before the message: {line}"));
        let props: Vec<(&str, &str)> = props
            .split(',')
            .map(|p| {
                p.split_once('=')
                    .unwrap_or_else(|| panic!("bad property {p:?}"))
            })
            .collect();
        let keys: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["file", "line", "col", "title"], "{line}");
        let get = |k: &str| unescape_github(props.iter().find(|(key, _)| *key == k).unwrap().1);
        // GitHub matches annotations by the path from the repository's root, with no
        // leading `./` (issue 20); the JSON keeps the path as eigenpub read it.
        let file = d["file"].as_str().unwrap();
        assert_eq!(get("file"), file.trim_start_matches("./"), "{line}");
        assert_eq!(get("line"), d["line"].to_string(), "{line}");
        assert_eq!(get("col"), d["column"].to_string(), "{line}");
        assert_eq!(get("title"), d["code"].as_str().unwrap(), "{line}");
        assert!(
            unescape_github(message).starts_with(d["message"].as_str().unwrap()),
            "{line}"
        );
    }
}

// ---------------------------------------------------------------------------
// The good example
// ---------------------------------------------------------------------------

#[test]
fn example_monorepo_validates_without_warnings() {
    let project = Project::new();
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/monorepo"),
        project.path(),
    );
    let specs = count_files(project.path(), "yaml");
    let out = project.run(&["validate"]);
    out.success().no_panic();
    assert_eq!(out.stderr.trim(), "", "no warnings expected\n{out}");
    assert!(
        out.stdout.contains(&format!("Valid: {specs} artifacts")),
        "one artifact per spec file ({specs})\n{out}"
    );
}

fn count_files(dir: &Path, ext: &str) -> usize {
    fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_files(&p, ext)
            } else {
                usize::from(p.extension().is_some_and(|x| x == ext))
            }
        })
        .sum()
}

// ---------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------

const PROJECT_TOML: &str = "[defaults]
registry = \"oci:out\"
created = \"2025-01-01T00:00:00Z\"

[[avs]]
name = \"price-oracle\"
version = 3

[avs.operator-sets]
0 = \"aggregator.yaml\"
";

/// A project whose only spec is `spec` (bytes written as given).
fn one_spec_project(spec: impl AsRef<[u8]>) -> Project {
    let project = Project::new();
    project
        .write("eigenruntime.toml", PROJECT_TOML)
        .write("aggregator.yaml", spec);
    project
}

/// Run and time a command; it must not panic and must finish within [`PROMPT`].
fn prompt(project: &Project, args: &[&str]) -> Output {
    let start = Instant::now();
    let out = project.run(args);
    let took = start.elapsed();
    out.no_panic();
    assert!(
        took < PROMPT,
        "{args:?} took {took:?} (limit {PROMPT:?})\n{out}"
    );
    out
}

/// A rejected hostile spec: exit 1, promptly, and the message names the file.
fn assert_rejected(project: &Project, file: &str) {
    let out = prompt(project, &["validate"]);
    out.expect_code(1);
    assert!(out.stderr.contains(file), "the message names {file}\n{out}");
}

#[test]
fn yaml_alias_bomb_is_rejected_promptly_naming_the_file() {
    // "Billion laughs": 9 levels of 9 aliases, 9^9 strings once expanded.
    let mut spec = String::from(
        "apiVersion: eigenruntime.io/v1\nkind: Hourglass\nname: price-oracle\nversion: 0.3.1\n\
         a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut prev = 'a';
    for name in "bcdefghi".chars() {
        let refs = vec![format!("*{prev}"); 9].join(",");
        spec.push_str(&format!("{name}: &{name} [{refs}]\n"));
        prev = name;
    }
    spec.push_str(&format!(
        "spec: {{aggregator: {{registry: r, digest: *{prev}}}}}\n"
    ));
    assert_rejected(&one_spec_project(spec), "aggregator.yaml");
}

#[test]
fn deeply_nested_yaml_sequences_are_rejected_without_overflow() {
    let depth = 10_000;
    let spec = format!("spec: {}{}\n", "[".repeat(depth), "]".repeat(depth));
    assert_rejected(&one_spec_project(spec), "aggregator.yaml");
}

#[test]
fn deeply_nested_yaml_mappings_are_rejected_without_overflow() {
    let depth = 10_000;
    let flow = format!("spec: {}1{}\n", "{a: ".repeat(depth), "}".repeat(depth));
    assert_rejected(&one_spec_project(flow), "aggregator.yaml");
    // Block style: 1,000 levels of indentation (about 1 MB).
    let mut block = String::from("spec:\n");
    for level in 1..=1_000 {
        block.push_str(&format!("{}a:\n", "  ".repeat(level)));
    }
    block.push_str(&format!("{}b: 1\n", "  ".repeat(1_001)));
    assert_rejected(&one_spec_project(block), "aggregator.yaml");
}

#[test]
fn deeply_nested_toml_is_rejected_without_overflow() {
    let depth = 10_000;
    let project = one_spec_project(GOOD_SPEC);
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    project.write(
        "eigenruntime.toml",
        PROJECT_TOML.replace(
            "[defaults]\n",
            &format!("[defaults]\nmutable-tags = {nested}\n"),
        ),
    );
    assert_rejected(&project, "eigenruntime.toml");
}

/// The manifest of `price-oracle:opset-0-v3` in the project's OCI layout, read by
/// skopeo, and the bytes of its only layer read from `blobs/sha256/`.
fn published_layer(project: &Project) -> Vec<u8> {
    let layout = project.join("out/price-oracle");
    let reference = format!("oci:{}:opset-0-v3", layout.display());
    let manifest =
        skopeo_raw(&reference).unwrap_or_else(|| panic!("skopeo cannot read {reference}"));
    let manifest: Value = serde_json::from_slice(&manifest).expect("manifest is JSON");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest}");
    let digest = layers[0]["digest"].as_str().expect("layer digest");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let blob = project.read(&format!("out/price-oracle/blobs/sha256/{hex}"));
    assert_eq!(
        sha256_digest(&blob),
        digest,
        "blob content matches its name"
    );
    assert_eq!(
        layers[0]["size"].as_u64(),
        Some(blob.len() as u64),
        "{manifest}"
    );
    blob
}

#[test]
fn ten_mib_spec_validates_and_is_pushed_byte_for_byte() {
    let description = "x".repeat(10 * 1024 * 1024);
    let spec = GOOD_SPEC.replace(
        "spec:\n",
        &format!("description: \"{description}\"\nspec:\n"),
    );
    let project = one_spec_project(&spec);
    prompt(&project, &["validate"]).success();
    prompt(&project, &["apply"]).success();
    let layer = published_layer(&project);
    assert!(layer == spec.as_bytes(), "layer differs from the spec file");
}

#[test]
fn bom_and_crlf_spec_is_accepted_and_pushed_unchanged() {
    let spec = format!("\u{feff}{}", GOOD_SPEC.replace('\n', "\r\n"));
    let project = one_spec_project(&spec);
    let out = prompt(&project, &["validate"]);
    out.success();
    prompt(&project, &["apply"]).success();
    let layer = published_layer(&project);
    assert_eq!(&layer[..3], b"\xef\xbb\xbf", "the BOM is kept");
    assert!(
        layer == spec.as_bytes(),
        "layer differs from the spec file:\n{:?}",
        String::from_utf8_lossy(&layer)
    );
}

// ---------------------------------------------------------------------------
// Nothing happens when anything is invalid
// ---------------------------------------------------------------------------

#[test]
fn invalid_spec_stops_plan_and_apply_before_any_registry_request() {
    let registry = Registry::start();
    let project = Project::new();
    project
        .write(
            "eigenruntime.toml",
            format!(
                "[defaults]\nregistry = \"{}/acme\"\ncreated = \"2025-01-01T00:00:00Z\"\n\n\
                 [[avs]]\nname = \"price-oracle\"\nversion = 3\n[avs.operator-sets]\n\
                 0 = \"aggregator.yaml\"\n1 = \"executor.yaml\"\n\n\
                 [[avs]]\nname = \"dice-roller\"\nversion = 1\n[avs.operator-sets]\n\
                 0 = \"dice.yaml\"\n",
                registry.host()
            ),
        )
        .write("aggregator.yaml", GOOD_SPEC)
        // The executor's component has no digest: a schema violation.
        .write(
            "executor.yaml",
            GOOD_SPEC
                .replace("aggregator", "executor")
                .lines()
                .filter(|l| !l.contains("digest:"))
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        )
        .write(
            "dice.yaml",
            GOOD_SPEC.replace("price-oracle", "dice-roller"),
        );
    registry.reset_requests();

    for args in [&["plan"][..], &["apply"], &["apply", "--allow-overwrite"]] {
        let out = project.run(args);
        out.expect_code(1).no_panic();
        assert!(
            out.stderr.contains("executor.yaml"),
            "names the bad spec\n{out}"
        );
        assert!(!out.stdout.contains("pushed"), "{out}");
        assert_eq!(
            registry.requests(),
            Vec::<(String, String, u16)>::new(),
            "`eigenpub {args:?}` with an invalid spec must not contact the registry\n{out}"
        );
    }

    // Control: once the spec is fixed, the same apply does reach the registry.
    project.write("executor.yaml", GOOD_SPEC.replace("aggregator", "executor"));
    project.run(&["apply"]).success();
    assert!(
        registry.request_count() > 0,
        "the control apply made requests"
    );
    assert!(
        registry
            .skopeo_raw("acme/price-oracle:opset-0-v3")
            .is_some(),
        "the control apply pushed"
    );
}
