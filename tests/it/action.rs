//! The GitHub Action (`action.yml`) run for real (issue 20): nektos/act runs a workflow
//! that uses it on this machine as the runner (`-P ubuntu-latest=-self-hosted`, act from
//! PyPI through `scripts/act`), with no remote action: `eigenpub/eigenpub@REF` is mapped to
//! a folder holding this checkout's `action.yml`. GitHub is a fake on loopback that serves
//! the release files (an archive of the eigenpub this test built, with its SHA256SUMS)
//! and the pull-request comments API. `gh` and `cargo` are small stand-ins on PATH that
//! record how they were called: `gh attestation verify` cannot reach Sigstore here, and
//! a real source build would take minutes.
//!
//! What it checks: installing from the release (attestation checked, or a warning naming
//! the missing `gh`), the fallback to a source build for the action's own version only, a
//! `version:` without a release refused, a forged release refused, a download that never
//! answers given up; a plan with changes (multi-line `args` with quotes split as a shell
//! would), its re-run updating the same comment, a second project getting its own, a
//! refused plan and a plan that cannot be made reported in the comment and the job
//! summary, a failed apply reported; a comment the pull request's author wrote with the
//! same marker never touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::harness::http::{self, HttpResponse};
use crate::harness::run;

const TOKEN: &str = "test-token";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The version of the action's source that has no release (its source is "built").
const UNRELEASED: &str = "0.0.1-unreleased";
/// The version whose download never answers.
const HANGS: &str = "0.0.2-hangs";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn target() -> String {
    format!("{}-unknown-linux-musl", std::env::consts::ARCH)
}

#[derive(Clone, Debug)]
struct Comment {
    id: u64,
    user: String,
    body: String,
}

#[derive(Default)]
struct GitHub {
    comments: Vec<Comment>,
    next_id: u64,
    /// `METHOD path` of every API request.
    requests: Vec<String>,
    /// Requests whose Authorization was not the test's token.
    unauthorized: usize,
}

/// The fake GitHub: release downloads under `/eigenpub/eigenpub/releases/download/`, the
/// REST API under `/api`.
fn fake_github(release: Vec<(String, Vec<u8>)>, state: Arc<Mutex<GitHub>>) -> http::Server {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    http::serve(listener, move |request, _stream| {
        let path = request.path().to_string();
        if let Some(file) = path.strip_prefix("/eigenpub/eigenpub/releases/download/") {
            if file.starts_with(&format!("v{HANGS}/")) {
                // Accepts, reads the request, and never answers (until the test is over).
                std::thread::sleep(Duration::from_secs(60));
                return None;
            }
            return Some(match release.iter().find(|(name, _)| name == file) {
                Some((_, bytes)) => HttpResponse::new(200).with_body(bytes.clone()),
                None => HttpResponse::new(404).with_body("Not Found"),
            });
        }
        let Some(api) = path.strip_prefix("/api") else {
            return Some(HttpResponse::new(404));
        };
        let mut gh = state.lock().unwrap();
        gh.requests.push(format!("{} {api}", request.method));
        if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            gh.unauthorized += 1;
            return Some(HttpResponse::new(401).json(&json!({"message": "Bad credentials"})));
        }
        let parts: Vec<&str> = api.trim_start_matches('/').split('/').collect();
        let comment_json = |c: &Comment| json!({"id": c.id, "body": c.body, "user": {"login": c.user, "type": if c.user.ends_with("[bot]") { "Bot" } else { "User" }}});
        let body = || -> String {
            let v: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            v["body"].as_str().unwrap_or_default().to_string()
        };
        Some(match (request.method.as_str(), parts.as_slice()) {
            // GITHUB_TOKEN cannot read /user.
            ("GET", ["user"]) => HttpResponse::new(403)
                .json(&json!({"message": "Resource not accessible by integration"})),
            ("GET", ["repos", _, _, "issues", "7", "comments"]) => {
                let page: usize = request
                    .query()
                    .iter()
                    .find(|(k, _)| k == "page")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(1);
                let items: Vec<Value> = gh
                    .comments
                    .iter()
                    .skip((page - 1) * 100)
                    .take(100)
                    .map(comment_json)
                    .collect();
                HttpResponse::new(200).json(&Value::Array(items))
            }
            ("POST", ["repos", _, _, "issues", "7", "comments"]) => {
                gh.next_id += 1;
                let comment = Comment {
                    id: 1000 + gh.next_id,
                    user: "github-actions[bot]".into(),
                    body: body(),
                };
                let answer = comment_json(&comment);
                gh.comments.push(comment);
                HttpResponse::new(201).json(&answer)
            }
            ("PATCH", ["repos", _, _, "issues", "comments", id]) => {
                let id: u64 = id.parse().unwrap_or(0);
                let text = body();
                match gh.comments.iter_mut().find(|c| c.id == id) {
                    Some(c) => {
                        c.body = text;
                        let answer = comment_json(c);
                        HttpResponse::new(200).json(&answer)
                    }
                    None => HttpResponse::new(404).json(&json!({"message": "Not Found"})),
                }
            }
            _ => HttpResponse::new(404).json(&json!({"message": "Not Found"})),
        })
    })
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

fn write_executable(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    let mut cmd = Command::new("chmod");
    cmd.arg("+x").arg(path);
    run(cmd).success();
}

/// An action folder as act's `--local-repository` takes it: this checkout's action.yml
/// and a Cargo.toml naming `version` (the action's own version).
fn action_folder(dir: &Path, version: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    fs::copy(root().join("action.yml"), dir.join("action.yml")).unwrap();
    fs::write(
        dir.join("Cargo.toml"),
        format!("[package]\nname = \"eigenpub\"\nversion = \"{version}\"\n"),
    )
    .unwrap();
    dir.to_path_buf()
}

/// The release files of `VERSION`: the archive (the eigenpub this test run built) and
/// its SHA256SUMS.
fn release_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let name = format!("eigenpub-{VERSION}-{}", target());
    fs::create_dir_all(dir.join(&name)).unwrap();
    // Without debug information (a tenth of the size): downloads and checks stay quick.
    let mut strip = Command::new("objcopy");
    strip
        .arg("--strip-debug")
        .arg(env!("CARGO_BIN_EXE_eigenpub"))
        .arg(dir.join(&name).join("eigenpub"));
    run(strip).success();
    let archive = format!("{name}.tar.gz");
    let mut tar = Command::new("tar");
    tar.arg("-czf")
        .arg(dir.join(&archive))
        .arg("-C")
        .arg(dir)
        .arg(&name);
    run(tar).success();
    let bytes = fs::read(dir.join(&archive)).unwrap();
    let sums = format!(
        "{}  {archive}\n{}  eigenpub-{VERSION}-other-target.tar.gz\n",
        hex(&Sha256::digest(&bytes)),
        "0".repeat(64)
    );
    vec![
        (format!("v{VERSION}/{archive}"), bytes),
        (format!("v{VERSION}/SHA256SUMS"), sums.into_bytes()),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The marker the action puts first in its comment for this project file and job.
fn marker(workflow: &str, job: &str, config: &str) -> String {
    let key = hex(&Sha256::digest(
        format!("acme/avs\n{workflow}\n{job}\n{config}").as_bytes(),
    ));
    format!("<!-- eigenpub-action: {} -->", &key[..16])
}

#[test]
fn the_action_installs_verifies_plans_comments_and_reports_every_outcome() {
    let tmp = TempDir::new().unwrap();
    let t = tmp.path();
    let out = t.join("out");
    fs::create_dir_all(&out).unwrap();

    // Projects: two that plan (A, B), one that cannot be loaded (C), one whose registry
    // refuses connections (D).
    let (a, b, c, d) = (t.join("a"), t.join("b"), t.join("c"), t.join("d"));
    copy_tree(&root().join("examples/monorepo"), &a);
    copy_tree(&root().join("examples/monorepo"), &b);
    fs::create_dir_all(&c).unwrap();
    fs::write(c.join("eigenruntime.toml"), "[defaults]\nregistry = 3\n").unwrap();
    copy_tree(&root().join("examples/monorepo"), &d);
    let toml = fs::read_to_string(d.join("eigenruntime.toml")).unwrap();
    fs::write(
        d.join("eigenruntime.toml"),
        toml.replace("registry = \"oci:out\"", "registry = \"127.0.0.1:1/acme\""),
    )
    .unwrap();

    // Stand-ins: gh (attestation verify as FAKE_GH_ATTESTATION says) and cargo (a
    // "source build" that installs the eigenpub this test built), each logging its calls.
    let (gh_dir, cargo_dir) = (t.join("bin-gh"), t.join("bin-cargo"));
    fs::create_dir_all(&gh_dir).unwrap();
    fs::create_dir_all(&cargo_dir).unwrap();
    let (gh_log, cargo_log) = (out.join("gh.log"), out.join("cargo.log"));
    write_executable(
        &gh_dir.join("gh"),
        &format!(
            "#!/usr/bin/env bash\necho \"gh $*\" >> '{}'\ncase \" $* \" in *' --help '*) exit 0 ;; esac\ncase \"$1 $2\" in\n  'attestation verify') [ \"${{FAKE_GH_ATTESTATION:-ok}}\" = ok ] && exit 0; echo 'fake gh: no attestation matched' >&2; exit 1 ;;\nesac\necho \"fake gh: unexpected: $*\" >&2\nexit 2\n",
            gh_log.display()
        ),
    );
    write_executable(
        &cargo_dir.join("cargo"),
        &format!(
            "#!/usr/bin/env bash\necho \"cargo $*\" >> '{}'\nroot=\nwhile [ $# -gt 0 ]; do [ \"$1\" = --root ] && root=\"$2\"; shift; done\nmkdir -p \"$root/bin\" && cp '{}' \"$root/bin/eigenpub\"\n",
            cargo_log.display(),
            env!("CARGO_BIN_EXE_eigenpub")
        ),
    );
    let host_path = std::env::var("PATH").unwrap_or_default();
    // PATH without any gh, for the step that shows the warning.
    let no_gh: Vec<String> = std::env::split_paths(&host_path)
        .filter(|dir| !dir.join("gh").exists())
        .map(|dir| dir.display().to_string())
        .collect();
    let path_without_gh = format!("{}:{}", cargo_dir.display(), no_gh.join(":"));
    let path = format!("{}:{}:{}", gh_dir.display(), cargo_dir.display(), host_path);

    // The fake GitHub, with a comment by the pull request's author that carries the
    // marker of project A's comment (anyone can compute it): it must never be edited.
    let state = Arc::new(Mutex::new(GitHub::default()));
    let a_config = format!("{}/eigenruntime.toml", a.display());
    let a_marker = marker("action-test", "pr", &a_config);
    let mallory_body = format!("{a_marker}\nI wrote this. Approve now.");
    state.lock().unwrap().comments.push(Comment {
        id: 1,
        user: "mallory".into(),
        body: mallory_body.clone(),
    });
    let server = fake_github(release_files(&t.join("release")), state.clone());
    let base = format!("http://{}", server.host());

    // The workspace act runs in: a git repository of "acme/avs" holding the workflow.
    let ws = t.join("workspace");
    fs::create_dir_all(ws.join(".github/workflows")).unwrap();
    let step = |id: &str, reference: &str, with: &str, extra: &str| {
        format!(
            "      - id: {id}\n        uses: eigenpub/eigenpub@{reference}\n{extra}        with:\n          github-token: {TOKEN}\n{with}"
        )
    };
    // After a step: its outputs, outcome and report into OUT/<id>.*
    let record = |id: &str| {
        format!(
            "      - if: always()\n        env:\n          OUTCOME: ${{{{ steps.{id}.outcome }}}}\n          CODE: ${{{{ steps.{id}.outputs.exit-code }}}}\n          CHANGES: ${{{{ steps.{id}.outputs.changes }}}}\n          REPORT: ${{{{ steps.{id}.outputs.report }}}}\n        run: |\n          echo \"${{OUTCOME}} ${{CODE}} ${{CHANGES}}\" > \"${{OUT}}/{id}.result\"\n          if [ -n \"${{REPORT}}\" ]; then cp \"${{REPORT}}\" \"${{OUT}}/{id}.md\"; fi\n"
        )
    };
    let plan = |config: &Path, args: &str| {
        format!(
            "          command: plan\n          config: {}/eigenruntime.toml\n{args}",
            config.display()
        )
    };
    let args_a = "          args: |\n            --select 'price-*'\n            --select \"dice-roller\"\n            --exclude price-oracle/1\n";
    let failing = "        continue-on-error: true\n";
    let mut pr_steps = vec![
        step("first", VERSION_REF, &plan(&a, args_a), ""),
        record("first"),
        step("again", VERSION_REF, &plan(&a, args_a), ""),
        record("again"),
        step("other", VERSION_REF, &plan(&b, ""), ""),
        record("other"),
        step(
            "publish",
            VERSION_REF,
            &format!(
                "          command: apply\n          config: {}/eigenruntime.toml\n",
                a.display()
            ),
            "",
        ),
        record("publish"),
        format!(
            "      - run: echo '# changed after publishing' >> '{}/avs/price-oracle/aggregator.yaml'\n",
            a.display()
        ),
        step("refused", VERSION_REF, &plan(&a, args_a), failing),
        record("refused"),
        step("broken", VERSION_REF, &plan(&c, ""), failing),
        record("broken"),
        step(
            "applyfail",
            VERSION_REF,
            &format!(
                "          command: apply\n          config: {}/eigenruntime.toml\n",
                d.display()
            ),
            failing,
        ),
        record("applyfail"),
    ];
    let install_steps = vec![
        step(
            "nogh",
            VERSION_REF,
            "",
            &format!("        env:\n          PATH: {path_without_gh}\n"),
        ),
        record("nogh"),
        step("source", "unreleased", "", ""),
        record("source"),
        step(
            "norelease",
            VERSION_REF,
            "          version: 9.9.9\n",
            failing,
        ),
        record("norelease"),
        step(
            "forged",
            VERSION_REF,
            "",
            &format!("{failing}        env:\n          FAKE_GH_ATTESTATION: fail\n"),
        ),
        record("forged"),
        step(
            "hang",
            "hangs",
            "",
            &format!("{failing}        env:\n          EIGENPUB_INSTALL_TIMEOUT: \"2\"\n"),
        ),
        record("hang"),
    ];
    pr_steps.iter_mut().for_each(|s| s.push('\n'));
    let workflow = format!(
        "name: action-test\non: pull_request\njobs:\n  pr:\n    runs-on: ubuntu-latest\n    env:\n      OUT: {out}\n    steps:\n{pr}\n  install:\n    runs-on: ubuntu-latest\n    env:\n      OUT: {out}\n    steps:\n{install}\n",
        out = out.display(),
        pr = pr_steps.concat(),
        install = install_steps.concat(),
    );
    fs::write(ws.join(".github/workflows/test.yml"), &workflow).unwrap();
    fs::write(
        ws.join("event.json"),
        json!({"pull_request": {"number": 7}, "repository": {"full_name": "acme/avs"}}).to_string(),
    )
    .unwrap();
    for args in [
        &["init", "-q"][..],
        &["remote", "add", "origin", "https://github.com/acme/avs.git"],
        &["add", "-A"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            "workflow",
        ],
    ] {
        let mut git = Command::new("git");
        git.current_dir(&ws).args(args);
        run(git).success();
    }

    let actions = [
        (VERSION_REF, action_folder(&t.join("action-own"), VERSION)),
        (
            "unreleased",
            action_folder(&t.join("action-unreleased"), UNRELEASED),
        ),
        ("hangs", action_folder(&t.join("action-hangs"), HANGS)),
    ];
    let mut act = Command::new(root().join("scripts/act"));
    act.current_dir(&ws)
        .env("PATH", &path)
        .env("XDG_CACHE_HOME", t.join("cache"))
        .env_remove("GH_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .args([
            "pull_request",
            "-e",
            "event.json",
            "-P",
            "ubuntu-latest=-self-hosted",
        ])
        .args(["--env", &format!("GITHUB_SERVER_URL={base}")])
        .args(["--env", &format!("GITHUB_API_URL={base}/api")]);
    for (reference, folder) in &actions {
        act.arg("--local-repository").arg(format!(
            "eigenpub/eigenpub@{reference}={}",
            folder.display()
        ));
    }
    let started = Instant::now();
    let log = run(act);
    let took = started.elapsed();
    let result =
        |id: &str| fs::read_to_string(out.join(format!("{id}.result"))).unwrap_or_default();
    let report = |id: &str| fs::read_to_string(out.join(format!("{id}.md"))).unwrap_or_default();
    let context = format!("act took {took:?}\n{log}\nworkflow:\n{workflow}");
    log.success();

    // Installed from the release, its attestation checked against the action's repository.
    let gh_calls = fs::read_to_string(&gh_log).unwrap_or_default();
    let verified = format!(
        "eigenpub-{VERSION}-{}.tar.gz --repo eigenpub/eigenpub",
        target()
    );
    assert!(
        gh_calls
            .lines()
            .any(|l| l.starts_with("gh attestation verify ") && l.ends_with(&verified)),
        "gh calls:\n{gh_calls}\n{context}"
    );
    // Without gh: installed, with a warning that says gh is missing.
    assert_eq!(result("nogh").trim(), "success", "{context}");
    assert!(
        log.stdout.contains("gh is not installed on this runner"),
        "{context}"
    );
    assert!(!log.stdout.contains("read-only token"), "{context}");
    // The action's own version without a release: its source is built (cargo install
    // --locked); another version without a release is an error, and nothing is built.
    let cargo_calls = fs::read_to_string(&cargo_log).unwrap_or_default();
    assert_eq!(result("source").trim(), "success", "{context}");
    assert_eq!(
        cargo_calls.lines().count(),
        1,
        "cargo calls:\n{cargo_calls}\n{context}"
    );
    assert!(
        cargo_calls.contains("install --locked --path"),
        "{cargo_calls}"
    );
    assert!(result("norelease").starts_with("failure"), "{context}");
    assert!(
        log.stdout.contains("cannot install eigenpub 9.9.9"),
        "{context}"
    );
    // A release whose attestation does not verify is not installed.
    assert!(result("forged").starts_with("failure"), "{context}");
    assert!(
        log.stdout.contains("no valid build provenance attestation"),
        "{context}"
    );
    // A download that is accepted and never answered is given up.
    assert!(result("hang").starts_with("failure"), "{context}");
    assert!(log.stdout.contains("could not download"), "{context}");

    // A plan with changes: multi-line args, quotes removed as a shell would.
    assert_eq!(result("first").trim(), "success 2 true", "{context}");
    let first = report("first");
    assert!(first.contains("Plan: 3 to create"), "{first}\n{context}");
    // Apply, then a refused plan and a plan that cannot be made: reported, step failed.
    assert_eq!(result("publish").trim(), "success 0", "{context}");
    assert!(report("publish").contains("**Applied.**"), "{context}");
    assert_eq!(result("refused").trim(), "failure 1 false", "{context}");
    let refused = report("refused");
    assert!(refused.contains("`apply` would push nothing"), "{refused}");
    assert!(refused.contains("would be overwritten"), "{refused}");
    assert_eq!(result("broken").trim(), "failure 1 false", "{context}");
    let broken = report("broken");
    assert!(broken.contains("could not be made"), "{broken}");
    assert!(broken.contains("eigenpub::project"), "{broken}");
    // A failed apply: reported, step failed.
    assert_eq!(result("applyfail").trim(), "failure 1", "{context}");
    assert!(
        report("applyfail").contains("eigenpub apply failed"),
        "{context}"
    );

    // The comments: one per project file, updated in place, the author's untouched.
    let gh = state.lock().unwrap();
    assert_eq!(gh.unauthorized, 0, "{:?}", gh.requests);
    let mallory = gh.comments.iter().find(|c| c.id == 1).unwrap();
    assert_eq!(
        mallory.body, mallory_body,
        "the author's comment was edited"
    );
    let ours: Vec<&Comment> = gh
        .comments
        .iter()
        .filter(|c| c.user == "github-actions[bot]")
        .collect();
    assert_eq!(ours.len(), 3, "A, B and C: {:#?}", gh.comments);
    let a_comment = ours
        .iter()
        .find(|c| c.body.starts_with(&a_marker))
        .unwrap_or_else(|| panic!("no comment starts with {a_marker}: {:#?}", gh.comments));
    assert_eq!(a_comment.body, refused, "A's comment holds the last plan");
    let patches = gh
        .requests
        .iter()
        .filter(|r| r.starts_with("PATCH"))
        .count();
    assert_eq!(
        patches, 2,
        "the re-run and the refused plan update A's: {:?}",
        gh.requests
    );
    assert!(ours.iter().any(|c| c.body == report("other")));
    assert!(ours.iter().any(|c| c.body == broken));
    drop(gh);
    drop(server);
    assert!(took < Duration::from_secs(110), "{context}");
}

const VERSION_REF: &str = "v-own";
