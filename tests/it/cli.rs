//! The CLI as users meet it (issue 13): the exit-code table, stdout/stderr separation
//! (JSON documents parse and are alone on stdout, also on failure), the read side
//! (`inspect`, `pull`) against a real registry (open and with auth), an OCI layout and a
//! hostile server serving a wrong digest, `init` on the example monorepo, shell
//! completions, byte-identical `index.json` across applies, a closed stdout during
//! apply, and the lint of the GitHub workflow files.

use std::fs;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::harness::env::registry_var_prefix;
use crate::harness::{Project, Registry, eigenpub, run, sha256_digest};
use crate::hostile::{Hostile, Reply};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of `examples/monorepo` (8 specs, 4 AVSs, `registry = "oci:out"`, fixed time).
fn monorepo() -> Project {
    let project = Project::new();
    copy_tree(&root().join("examples/monorepo"), project.path());
    project
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "out" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A project publishing two price-oracle specs to `registry` (e.g. `127.0.0.1:5000/acme`).
fn registry_project(registry: &str) -> Project {
    let project = Project::new();
    for spec in ["aggregator", "executor"] {
        let rel = format!("avs/price-oracle/{spec}.yaml");
        project.write(
            &rel,
            fs::read(root().join("examples/monorepo").join(&rel)).unwrap(),
        );
    }
    project.write(
        "eigenruntime.toml",
        format!(
            "[defaults]\nregistry = \"{registry}\"\ncreated = \"2025-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"price-oracle\"\nversion = 3\n[avs.operator-sets]\n0 = \"avs/price-oracle/aggregator.yaml\"\n1 = \"avs/price-oracle/executor.yaml\"\n"
        ),
    );
    project
}

fn json(stdout: &str, what: &str) -> Value {
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: stdout is not one JSON document ({e}):\n{stdout}"))
}

// ---------------------------------------------------------------------------
// Exit codes and streams
// ---------------------------------------------------------------------------

#[test]
fn every_exit_code_of_the_table() {
    let project = monorepo();
    // Usage errors are 1 (2 would read as "changes present").
    for args in [
        &["--bogus"][..],
        &["plan", "--concurrency", "0"],
        &["plan", "--format", "yaml"],
        &["nonsense"],
    ] {
        project.run(args).no_panic().expect_code(1);
    }
    // --help and --version are 0, on stdout.
    for args in [&["--help"][..], &["plan", "--help"], &["--version"]] {
        let out = project.run(args);
        out.no_panic().success();
        assert!(!out.stdout.is_empty(), "{args:?}\n{out}");
    }
    // Changes: 0 without, 2 with --detailed-exitcode; after apply: 0 with both.
    project.run(&["plan"]).success();
    project.run(&["plan", "--detailed-exitcode"]).expect_code(2);
    project.run(&["apply"]).success();
    project.run(&["plan", "--detailed-exitcode"]).success();
    // A selection that matches nothing is an error, not "no changes".
    let typo = project.run(&["plan", "--select", "price-orcale"]);
    typo.no_panic().expect_code(1);
    assert!(
        typo.stderr.contains("eigenpub::select::unmatched"),
        "{typo}"
    );
    // Written before the command, as before.
    project
        .run(&["--select", "price-orcale", "plan"])
        .expect_code(1);
    // An invalid project is 1.
    project.write("eigenruntime.toml", "[defaults]\nregistry = 3\n");
    project.run(&["validate"]).expect_code(1);
    project.run(&["plan"]).expect_code(1);
}

/// Issue 20: every `--select`/`--exclude` glob must match one of the project's artifacts,
/// in every command, or the command fails naming it (with a "did you mean"), pushing and
/// writing nothing; a command that takes no selection refuses one written before it.
#[test]
fn a_selection_glob_that_matches_nothing_fails_in_every_command_naming_it() {
    let project = monorepo();
    let cases: &[(&[&str], &str)] = &[
        // A typo in --exclude: would publish what the release job meant to skip.
        (
            &["apply", "--exclude", "dice-rollr"],
            "did you mean `--exclude dice-roller`?",
        ),
        // One good, one misspelt --select: would publish half of what was meant.
        (
            &[
                "plan",
                "--select",
                "price-oracle",
                "--select",
                "price-orcale",
            ],
            "did you mean `--select price-oracle`?",
        ),
        (
            &["validate", "--select", "nothing"],
            "`--select nothing` matches none",
        ),
        (
            &[
                "validate",
                "--format",
                "github",
                "--select",
                "weather-feed/7",
            ],
            "did you mean `--select weather-feed/",
        ),
        // Quotes a shell would have removed (an Action's `args:` taken literally).
        (
            &["plan", "--select", "'price*'"],
            "the quotes are part of the glob",
        ),
        (
            &["--exclude", "tide-gauge/9", "apply"],
            "`--exclude tide-gauge/9`",
        ),
        // Every glob matches, but nothing is left.
        (
            &["plan", "--select", "price-oracle", "--exclude", "price-*"],
            "eigenpub::select::empty",
        ),
        // Commands without a selection refuse one rather than ignore it.
        (
            &["--select", "price-oracle", "lock"],
            "`eigenpub lock` does not take --select",
        ),
        (
            &["--exclude", "dice-roller", "verify"],
            "`eigenpub verify` does not take --exclude",
        ),
        (
            &["--concurrency", "2", "init"],
            "`eigenpub init` does not take --concurrency",
        ),
        // Narrowing a saved plan: the same rule.
        (
            &["apply", "plan.json", "--exclude", "dice-rollr"],
            "did you mean `--exclude dice-roller`?",
        ),
    ];
    project.run(&["plan", "--out", "plan.json"]).success();
    for (args, expected) in cases {
        let out = project.run(args);
        out.no_panic().expect_code(1);
        assert!(
            out.stderr.contains(expected) || out.stdout.contains(expected),
            "{args:?}: expected {expected:?}\n{out}"
        );
    }
    // Nothing was pushed or written.
    assert!(!project.join("out").exists(), "an apply pushed");
    assert!(!project.join("eigenruntime.lock").exists(), "lock wrote");
    assert!(!project.join("eigenruntime.toml.new").exists());
    // The JSON document says so too.
    let out = project.run(&["validate", "--format", "json", "--exclude", "dice-rollr"]);
    out.expect_code(1);
    let doc = json(&out.stdout, "validate --format json");
    assert_eq!(doc["valid"], false, "{out}");
    assert_eq!(
        doc["diagnostics"][0]["code"], "eigenpub::select::unmatched",
        "{out}"
    );
    // Globs that all match still work, before or after the command.
    project
        .run(&["--select", "price-*", "plan", "--exclude", "*/1"])
        .success();
    project
        .run(&[
            "validate",
            "--select",
            "dice-roller",
            "--exclude",
            "dice-roller/0",
        ])
        .success();
}

#[test]
fn scope_options_show_only_on_the_commands_they_apply_to() {
    let project = monorepo();
    let login = project.run(&["login", "--help"]);
    login.success();
    for flag in ["--select", "--exclude", "--concurrency"] {
        assert!(
            !login.stdout.contains(flag),
            "login --help shows {flag}\n{login}"
        );
        assert!(project.run(&["plan", "--help"]).stdout.contains(flag));
    }
}

#[test]
fn json_documents_are_alone_on_stdout_and_list_every_resolved_artifact() {
    let project = monorepo();
    let validate = project.run(&["validate", "--format", "json"]);
    validate.success();
    assert_eq!(validate.stderr.trim(), "", "{validate}");
    let doc = json(&validate.stdout, "validate --format json");
    let artifacts = doc["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 8, "{doc:#}");
    for a in artifacts {
        for key in ["avs", "operator_set", "spec", "repository", "tag", "digest"] {
            assert!(!a[key].is_null(), "{key} missing in {a}");
        }
    }
    // -v lists the same artifacts as text, offline.
    let verbose = project.run(&["validate", "-v"]);
    verbose.success();
    for a in artifacts {
        assert!(
            verbose.stdout.contains(a["digest"].as_str().unwrap()),
            "{verbose}"
        );
    }
    // plan --format json: one document, and -q leaves only the final line for text.
    let plan = project.run(&["plan", "--format", "json"]);
    plan.success();
    assert_eq!(
        json(&plan.stdout, "plan")["artifacts"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    let quiet = project.run(&["-q", "plan"]);
    quiet.success();
    assert_eq!(quiet.stdout_lines().len(), 1, "{quiet}");
    assert!(quiet.stdout.starts_with("Plan: 8 to create"), "{quiet}");
    // An invalid project still prints one document, with the error as data.
    project.write("eigenruntime.toml", "[defaults]\nregistry = 3\n");
    let bad = project.run(&["validate", "--format", "json"]);
    bad.expect_code(1);
    let doc = json(&bad.stdout, "invalid validate --format json");
    assert_eq!(doc["valid"], false);
    assert!(!doc["diagnostics"].as_array().unwrap().is_empty());
    let bad_plan = project.run(&["plan", "--format", "json"]);
    bad_plan.expect_code(1);
    assert!(json(&bad_plan.stdout, "invalid plan")["error"]["code"].is_string());
}

#[test]
fn an_unreachable_registry_still_gives_a_json_document_naming_what_was_not_attempted() {
    let port = crate::harness::free_port();
    let project = registry_project(&format!("127.0.0.1:{port}/acme"));
    for command in ["plan", "apply"] {
        let out = project.run(&[command, "--format", "json"]);
        out.no_panic().expect_code(1);
        let doc = json(&out.stdout, command);
        assert!(
            doc["error"]["code"]
                .as_str()
                .unwrap()
                .starts_with("eigenpub::"),
            "{doc:#}"
        );
        assert!(
            doc["error"]["message"].is_string() && doc["error"]["help"].is_string(),
            "{doc:#}"
        );
        let not_attempted: Vec<&str> = doc["not_attempted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(not_attempted.len(), 2, "{doc:#}");
        assert!(
            not_attempted[0].ends_with("/acme/price-oracle:opset-0-v3"),
            "{doc:#}"
        );
    }
}

#[test]
fn a_closed_stdout_never_stops_an_apply() {
    let project = monorepo();
    // `eigenpub apply | head -0`: the reader is gone before the first line.
    let mut cmd = eigenpub(project.path());
    cmd.arg("apply")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn eigenpub");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Every artifact landed.
    let plan = project.run(&["plan", "--format", "json"]);
    let doc = json(&plan.stdout, "plan after apply");
    assert_eq!(doc["summary"]["unchanged"], 8, "{doc:#}");
}

#[test]
fn two_applies_into_fresh_layouts_write_byte_identical_indexes() {
    let (a, b) = (monorepo(), monorepo());
    a.run(&["apply"]).success();
    b.run(&["--concurrency", "1", "apply"]).success();
    for avs in ["price-oracle", "dice-roller", "tide-gauge", "weather-feed"] {
        let rel = format!("out/{avs}/index.json");
        assert_eq!(a.read(&rel), b.read(&rel), "{rel} differs");
    }
}

// ---------------------------------------------------------------------------
// inspect and pull
// ---------------------------------------------------------------------------

/// `inspect --format json` and `pull` of `reference`, checked against the spec file.
fn inspect_and_pull(project: &Project, reference: &str, env: &[(String, String)]) {
    let run_with = |args: &[&str]| {
        let mut cmd = eigenpub(project.path());
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(cmd)
    };
    let spec = project.read("avs/price-oracle/aggregator.yaml");
    let inspected = run_with(&["inspect", "--format", "json", reference]);
    inspected.no_panic().success();
    let doc = json(&inspected.stdout, "inspect");
    assert_eq!(doc["spec"]["text"].as_str().unwrap().as_bytes(), &spec[..]);
    assert_eq!(doc["spec"]["title"], "aggregator.yaml");
    assert_eq!(doc["config"]["avsName"], "price-oracle");
    assert_eq!(
        doc["annotations"]["org.opencontainers.image.created"],
        "2025-01-01T00:00:00Z"
    );
    let human = run_with(&["inspect", reference]);
    human.success();
    assert!(
        human.stdout.contains(doc["digest"].as_str().unwrap()),
        "{human}"
    );
    // By digest too.
    let by_digest = reference
        .rsplit_once(':')
        .map(|(repo, _)| format!("{repo}@{}", doc["digest"].as_str().unwrap()))
        .unwrap();
    if !reference.starts_with("oci:") {
        run_with(&["inspect", &by_digest]).success();
    }
    let pulled = run_with(&["pull", reference, "-o", "pulled"]);
    pulled.success();
    assert_eq!(
        project.read("pulled/aggregator.yaml"),
        spec,
        "pull is byte-exact"
    );
    run_with(&["pull", reference, "-o", "pulled"]).expect_code(1);
    run_with(&["pull", reference, "-o", "pulled", "--force"]).success();
}

#[test]
fn inspect_and_pull_read_a_layout_and_an_open_registry() {
    let project = monorepo();
    project.run(&["apply"]).success();
    inspect_and_pull(&project, "oci:out/price-oracle:opset-0-v3", &[]);

    let registry = Registry::start();
    let project = registry_project(&format!("{}/acme", registry.host()));
    project.run(&["apply"]).success();
    let reference = format!("{}/acme/price-oracle:opset-0-v3", registry.host());
    inspect_and_pull(&project, &reference, &[]);
    let manifest = registry
        .skopeo_raw("acme/price-oracle:opset-0-v3")
        .expect("skopeo reads it");
    let doc = json(
        &project
            .run(&["inspect", "--format", "json", &reference])
            .stdout,
        "inspect",
    );
    assert_eq!(doc["digest"], sha256_digest(&manifest));
}

#[test]
fn inspect_and_pull_use_the_registry_credentials() {
    let registry = Registry::with_htpasswd("alice", "s3cret-pw");
    let project = registry_project(&format!("{}/acme", registry.host()));
    let prefix = registry_var_prefix(&registry.host());
    let env = vec![
        (format!("{prefix}_USERNAME"), "alice".to_string()),
        (format!("{prefix}_PASSWORD"), "s3cret-pw".to_string()),
    ];
    let mut apply = eigenpub(project.path());
    apply.arg("apply");
    for (k, v) in &env {
        apply.env(k, v);
    }
    run(apply).success();
    let reference = format!("{}/acme/price-oracle:opset-0-v3", registry.host());
    inspect_and_pull(&project, &reference, &env);
    // Without credentials the registry refuses, and inspect says so.
    let anonymous = project.run(&["inspect", &reference]);
    anonymous.no_panic().expect_code(1);
    assert!(!anonymous.stdout.contains("s3cret"), "{anonymous}");
}

#[test]
fn a_manifest_that_does_not_match_its_digest_is_refused() {
    let served = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
    let claimed = sha256_digest(b"something else entirely");
    let claimed_for_server = claimed.clone();
    let server = Hostile::start(move |seen| {
        if seen.target.contains("/manifests/") {
            Reply::new(200)
                .with_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .with_header("Docker-Content-Digest", &claimed_for_server)
                .with_body(served.to_vec())
        } else {
            Reply::new(200)
        }
    });
    let project = Project::new();
    for reference in [
        format!("{}/acme/a:v1", server.host()),
        format!("{}/acme/a@{claimed}", server.host()),
    ] {
        let out = project.run(&["inspect", "--format", "json", &reference]);
        out.no_panic().expect_code(1);
        let doc = json(&out.stdout, "refused inspect");
        assert_eq!(
            doc["error"]["code"], "eigenpub::inspect::invalid",
            "{doc:#}"
        );
        assert!(
            !out.stdout.contains("schemaVersion"),
            "nothing served is shown\n{out}"
        );
        let pulled = project.run(&["pull", &reference]);
        pulled.expect_code(1);
        assert!(
            fs::read_dir(project.path()).unwrap().next().is_none(),
            "pull wrote nothing"
        );
    }
}

// ---------------------------------------------------------------------------
// init, completions, man
// ---------------------------------------------------------------------------

#[test]
fn init_on_the_example_monorepo_gives_a_project_with_the_same_artifacts() {
    let project = monorepo();
    // Never overwrites.
    let refused = project.run(&["init"]);
    refused.expect_code(1);
    assert_eq!(
        project.read("eigenruntime.toml"),
        fs::read(root().join("examples/monorepo/eigenruntime.toml")).unwrap()
    );
    project.run(&["-c", "generated.toml", "init"]).success();
    let text = String::from_utf8(project.read("generated.toml")).unwrap();
    assert!(
        text.starts_with("#:schema ./eigenruntime.schema.json\n"),
        "{text}"
    );
    assert!(project.exists("eigenruntime.schema.json"));
    let list = |config: &str| {
        let out = project.run(&["-c", config, "validate", "--format", "json"]);
        out.success();
        let doc = json(&out.stdout, config);
        let mut set: Vec<(String, u64, String)> = doc["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["avs"].as_str().unwrap().to_string(),
                    a["operator_set"].as_u64().unwrap(),
                    a["spec"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        set.sort();
        set
    };
    assert_eq!(list("generated.toml"), list("eigenruntime.toml"));
    let plan = project.run(&["-c", "generated.toml", "plan", "--format", "json"]);
    plan.success();
    assert_eq!(
        json(&plan.stdout, "plan")["artifacts"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    project
        .run(&["-c", "generated.toml", "init"])
        .expect_code(1);
}

#[test]
fn completions_generate_for_bash_zsh_and_fish_and_the_man_page_renders() {
    let project = Project::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = project.run(&["completions", shell]);
        out.success();
        assert!(
            out.stdout.contains("eigenpub") && out.stdout.contains("inspect"),
            "{shell}\n{out}"
        );
    }
    let out = run({
        let mut c = std::process::Command::new("bash");
        c.arg("-n")
            .arg("-c")
            .arg(project.run(&["completions", "bash"]).stdout);
        c
    });
    out.success();
    let man = project.run(&["man"]);
    man.success();
    assert!(man.stdout.contains(".TH eigenpub"), "{man}");
    project.run(&["completions", "tcsh"]).expect_code(1);
}

// ---------------------------------------------------------------------------
// Workflow files
// ---------------------------------------------------------------------------

#[test]
fn the_workflow_and_action_files_pass_the_linter_and_a_bad_one_does_not() {
    let lint = root().join("scripts/lint-actions");
    let out = run(std::process::Command::new(&lint));
    out.success();
    let project = Project::new();
    project.write(
        "bad.yml",
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.event.pull_request.title }}\n",
    );
    let mut cmd = std::process::Command::new(&lint);
    cmd.arg(project.join("bad.yml"));
    let out = run(cmd);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stdout.contains("untrusted"), "{out}");
    // Issue 20: what actionlint lets through, zizmor does not: an action pinned by tag
    // (which whoever can move the tag can replace) whose checkout keeps the token.
    project.write(
        "unpinned.yml",
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-latest\n    permissions:\n      contents: read\n    steps:\n      - uses: actions/checkout@v5\n      - run: echo hi\n",
    );
    let mut cmd = std::process::Command::new(&lint);
    cmd.arg(project.join("unpinned.yml"));
    let out = run(cmd);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stdout.contains("actionlint: 1 file(s) clean"), "{out}");
    for finding in ["unpinned-uses", "artipacked"] {
        assert!(out.stdout.contains(finding), "{finding}\n{out}");
    }
}

/// Issue 20: the image is built from base images pinned by digest (a moved tag cannot
/// change what is built), runs as an unprivileged user, and the README's `docker run`
/// says how credentials reach it. (Building it needs the base images, which this test
/// does not fetch.)
#[test]
fn the_dockerfile_pins_its_base_images_by_digest_and_runs_as_a_user() {
    let dockerfile = fs::read_to_string(root().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert!(froms.len() >= 2, "{dockerfile}");
    for from in &froms {
        let image = from.split_whitespace().nth(1).unwrap_or_default();
        let digest = image
            .split_once("@sha256:")
            .map(|(_, d)| d)
            .unwrap_or_default();
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "not pinned by digest: {from}"
        );
    }
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let user = lines[last_from..]
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap_or_else(|| panic!("the final stage runs as root (no USER)\n{dockerfile}"));
    let user = user.trim();
    assert!(
        !["root", "0", "0:0", "root:root"].contains(&user),
        "USER {user}"
    );
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let docker_run = readme
        .split("docker run")
        .nth(1)
        .unwrap_or_else(|| panic!("the README has no `docker run` line"));
    let docker_run: String = docker_run.chars().take(600).collect();
    assert!(
        docker_run.contains("-e EIGENPUB_REGISTRY_") && docker_run.contains("DOCKER_CONFIG"),
        "the README's docker run does not say how credentials reach the container:{docker_run}"
    );
}

/// Issue 20: GitHub attaches an annotation to a pull request's file only when its path is
/// relative to the repository's root and does not start with `./`.
#[test]
fn github_annotations_name_files_from_the_repository_root() {
    let project = monorepo();
    let spec = "avs/dice-roller/executor.yaml";
    let mut text = fs::read_to_string(project.join(spec)).unwrap();
    text.push_str("bad: [\n");
    project.write(spec, text);
    let annotations = |workspace: Option<&Path>| {
        let mut cmd = project.eigenpub(&["validate", "--format", "github"]);
        cmd.env_remove("GITHUB_WORKSPACE");
        if let Some(w) = workspace {
            cmd.env("GITHUB_WORKSPACE", w);
        }
        let out = run(cmd);
        out.expect_code(1);
        out.stderr.clone() + &out.stdout
    };
    let plain = annotations(None);
    assert!(
        plain.contains(&format!("::error file={spec},line=")),
        "{plain}"
    );
    assert!(!plain.contains("file=./"), "{plain}");
    // The project in a folder of the repository (`working-directory:`).
    let repo = project.path().parent().unwrap();
    let folder = project.path().file_name().unwrap().to_string_lossy();
    let nested = annotations(Some(repo));
    assert!(
        nested.contains(&format!("::error file={folder}/{spec},line=")),
        "{nested}"
    );
}

/// Issue 20: `init` says which spec-like files it left out and why, and marks operator-set
/// numbers it guessed (in its output and in the file it writes).
#[test]
fn init_reports_what_it_skipped_and_marks_guessed_operator_sets() {
    let project = Project::new();
    let spec = |name: &str| crate::harness::spec_yaml(name, "aggregator", "1");
    project.write("avs/oracle/aggregator.yaml", spec("oracle"));
    project.write("avs/oracle/executor.yaml", spec("oracle"));
    project.write("fleet/dice/opset-0.yaml", spec("dice"));
    project.write(
        "avs/broken/aggregator.yaml",
        "apiVersion: eigenruntime.io/v1\nname: broken\nspec: [\n",
    );
    project.write(
        "avs/upper/aggregator.yaml",
        "apiVersion: eigenruntime.io/v1\nkind: Hourglass\nname: Not A Repo\n",
    );
    project.write("ci/other.yaml", "jobs: {}\n");
    let out = project.run(&["init"]);
    out.success();
    for expected in [
        "skipped avs/broken/aggregator.yaml: not valid YAML",
        "skipped avs/upper/aggregator.yaml: its name `Not A Repo` cannot be a repository name",
        "the operator sets of oracle are numbered by the order of their file names (guessed)",
    ] {
        assert!(out.stderr.contains(expected), "{expected}\n{out}");
    }
    assert!(!out.stderr.contains("ci/other.yaml"), "{out}");
    assert!(!out.stderr.contains("of dice are numbered"), "{out}");
    let text = String::from_utf8(project.read("eigenruntime.toml")).unwrap();
    let oracle = text.split("name = \"oracle\"").nth(1).unwrap();
    assert!(oracle.contains("# GUESSED"), "{text}");
    let dice = text.split("name = \"dice\"").nth(1).unwrap();
    assert!(
        !dice.split("[[avs]]").next().unwrap().contains("GUESSED"),
        "{text}"
    );
    // -q: only the final line.
    let quiet = Project::new();
    quiet.write("a/x.yaml", spec("oracle"));
    quiet.write("a/y.yaml", spec("oracle"));
    let out = quiet.run(&["-q", "init"]);
    out.success();
    assert_eq!(out.stderr, "", "{out}");
}

/// Issue 20: a man page for every command, each with EXIT STATUS and ENVIRONMENT, and
/// each rendering without a roff warning.
#[test]
fn man_pages_for_every_command_with_exit_codes_and_environment() {
    let project = Project::new();
    let out = project.run(&["man", "--out", "."]);
    out.success();
    let pages: Vec<&str> = out.stdout.lines().collect();
    let help = project.run(&["--help"]).stdout;
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 12, "{help}");
    assert_eq!(pages.len(), commands.len() + 1, "{out}");
    for name in std::iter::once("eigenpub".to_string())
        .chain(commands.iter().map(|c| format!("eigenpub-{c}")))
    {
        let file = format!("{name}.1");
        let roff = String::from_utf8(project.read(&file)).unwrap();
        assert!(roff.contains(&format!(".TH {name}")), "{file}\n{roff}");
        for section in [
            ".SH \"EXIT STATUS\"",
            ".SH ENVIRONMENT",
            "EIGENPUB_REGISTRY_",
        ] {
            assert!(roff.contains(section), "{file} lacks {section}");
        }
        let mut groff = std::process::Command::new("groff");
        groff
            .args(["-k", "-man", "-Tutf8", "-z", "-ww"])
            .arg(project.join(&file));
        let rendered = run(groff);
        rendered.success();
        assert_eq!(rendered.stderr, "", "{file}: {rendered}");
    }
    let plan = project.run(&["man", "plan"]);
    plan.success();
    assert!(plan.stdout.contains("--detailed-exitcode"), "{plan}");
    project.run(&["man", "nope"]).expect_code(1);
}

/// Issue 20: `-q` prints only the final line, in every command: `lock` too.
#[test]
fn lock_q_prints_only_its_summary() {
    let project = monorepo();
    let out = project.run(&["-q", "lock"]);
    out.success();
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    assert!(out.stdout.starts_with("Lock: 8 added"), "{out}");
}

/// Issue 20: without `-c`, the project file is found in the nearest folder above, as
/// cargo finds Cargo.toml; when there is none, the help says to run `eigenpub init`.
#[test]
fn the_project_file_is_found_in_parent_folders_and_missing_says_init() {
    let project = monorepo();
    let mut cmd = crate::harness::eigenpub(&project.join("avs/price-oracle"));
    cmd.arg("validate");
    let out = run(cmd);
    out.success();
    assert!(out.stdout.contains("Valid: 8 artifacts"), "{out}");
    let empty = Project::new();
    let out = empty.run(&["validate"]);
    out.expect_code(1);
    assert!(out.stderr.contains("eigenpub init"), "{out}");
    assert!(out.stderr.contains("every folder above"), "{out}");
}
