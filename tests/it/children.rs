//! What a tree written by a pull request can make eigenpub's child processes and file
//! reads do (issue 19): nothing of the project runs as a program, no `EIGENPUB_*` secret
//! reaches a child, every credential helper runs under the deadline, and a project file
//! is read from what was checked, whatever is swapped meanwhile.
//!
//! Each attack's program is a shell script that leaves a marker (and its environment)
//! where the test looks: the marker must never appear.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{Output, Project, Running, dies_within, run, spec_yaml};

/// A registry password the runs have in their environment; no child may see it.
const PASSWORD: &str = "child-must-not-see-Zq8w";

/// `EIGENPUB_REGISTRY_*` variables for a registry the project does not use.
fn with_secrets(cmd: &mut std::process::Command) {
    cmd.env("EIGENPUB_REGISTRY_GHCR_IO_USERNAME", "release-bot")
        .env("EIGENPUB_REGISTRY_GHCR_IO_PASSWORD", PASSWORD);
}

/// An executable shell script at `path` running `body`.
fn script(path: &Path, body: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A script that records that it ran, and its environment, in `marker`, then succeeds.
fn spy(path: &Path, marker: &Path) {
    script(path, &format!("env >> '{}'\nexit 0", marker.display()));
}

#[track_caller]
fn assert_never_ran(marker: &Path, what: &str, out: &Output) {
    let seen = fs::read_to_string(marker).unwrap_or_default();
    assert!(
        !marker.exists(),
        "{what}: a program named by the project ran, with this environment:\n{seen}\n{out}"
    );
}

// ---------------------------------------------------------------------------
// git
// ---------------------------------------------------------------------------

/// A real repository at the root of `p`, with a project in `sub/` (`created = "git"`)
/// whose commit time is 2024-03-05T04:50:30Z; `created` is a placeholder to fill in.
fn monorepo(p: &Project) {
    p.write(
        "sub/eigenruntime.toml",
        "[defaults]\nregistry = \"oci:out\"\ncreated = \"CREATED\"\n\n[[avs]]\nname = \"oracle\"\n[avs.operator-sets]\n0 = \"spec.yaml\"\n",
    )
    .write("sub/spec.yaml", spec_yaml("oracle", "aggregator", "1"))
    .write(".gitignore", "out/\n")
    .git_init()
    .git_commit_all("the project", "2024-03-05T10:20:30+05:30");
}

fn set_created(p: &Project, created: &str) {
    let text = fs::read_to_string(p.join("sub/eigenruntime.toml")).unwrap();
    let line = text.lines().find(|l| l.starts_with("created")).unwrap();
    fs::write(
        p.join("sub/eigenruntime.toml"),
        text.replace(line, &format!("created = \"{created}\"")),
    )
    .unwrap();
}

/// The digest `plan` computes for the project in `sub/`.
fn planned_digest(p: &Project, path: Option<&str>) -> (Output, Option<String>) {
    let mut cmd = p.eigenpub(&["plan", "--format", "json"]);
    cmd.current_dir(p.join("sub"));
    with_secrets(&mut cmd);
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    let out = run(cmd);
    let digest = serde_json::from_str::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|plan| plan["artifacts"][0]["digest"].as_str().map(str::to_string));
    (out, digest)
}

/// Plants, in `folder`, the plain files of a repository (what a pull request can add)
/// whose configuration names `spy` (a script in the same pull request) for every program
/// git can be told to run; `hooks/` holds it under every hook name eigenpub's git
/// commands could reach.
fn plant_repository(folder: &Path, spy: &Path) {
    let planted = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    git(&["init", "-q", "--bare", planted.path().to_str().unwrap()]);
    for name in ["HEAD", "objects", "refs"] {
        let out = std::process::Command::new("cp")
            .arg("-r")
            .arg(planted.path().join(name))
            .arg(folder)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let cmd = spy.display();
    for hook in [
        "post-index-change",
        "reference-transaction",
        "fsmonitor-watchman",
        "post-checkout",
    ] {
        fs::create_dir_all(folder.join("hooks")).unwrap();
        fs::copy(spy, folder.join("hooks").join(hook)).unwrap();
    }
    fs::create_dir_all(folder.join("info")).unwrap();
    fs::write(folder.join("info/attributes"), "* filter=spy diff=spy\n").unwrap();
    fs::write(
        folder.join("more.config"),
        format!("[core]\n\tfsmonitor = {cmd}\n\tpager = {cmd}\n"),
    )
    .unwrap();
    fs::write(
        folder.join("config"),
        format!(
            "[core]\n\trepositoryformatversion = 1\n\tbare = false\n\tworktree = .\n{}",
            hostile_config(spy)
        ),
    )
    .unwrap();
}

/// Repository configuration naming `spy` for every program git can be told to run, and
/// `hooks/` beside it as the hooks folder.
fn hostile_config(spy: &Path) -> String {
    let cmd = spy.display();
    format!(
        "[core]\n\tfsmonitor = {cmd}\n\thooksPath = hooks\n\tpager = {cmd}\n\
         \tsshCommand = {cmd}\n\talternateRefsCommand = {cmd}\n\taskPass = {cmd}\n\
         \tuntrackedCache = true\n\
         [include]\n\tpath = more.config\n\
         [extensions]\n\tpartialClone = origin\n\
         [remote \"origin\"]\n\turl = ssh://example.invalid/x\n\tpromisor = true\n\
         [log]\n\tshowSignature = true\n[gpg]\n\tprogram = {cmd}\n\
         [diff]\n\texternal = {cmd}\n[diff \"spy\"]\n\ttextconv = {cmd}\n\tcommand = {cmd}\n\
         [filter \"spy\"]\n\tclean = {cmd}\n\tsmudge = {cmd}\n\tprocess = {cmd}\n\trequired = true\n\
         [pager]\n\tlog = {cmd}\n\tstatus = {cmd}\n[credential]\n\thelper = !{cmd}\n\
         [status]\n\tsubmoduleSummary = true\n"
    )
}

#[test]
fn a_repository_planted_in_the_project_folder_runs_nothing_and_the_real_one_is_used() {
    // The planted files in the project folder itself, and in a folder between it and the
    // work tree's root.
    for planted_in in ["sub", "."] {
        let p = Project::new();
        // With the planted files in a folder between, the project is one level deeper.
        let project = if planted_in == "." { "mid/sub" } else { "sub" };
        p.write(
            &format!("{project}/eigenruntime.toml"),
            "[defaults]\nregistry = \"oci:out\"\ncreated = \"git\"\n\n[[avs]]\nname = \"oracle\"\n[avs.operator-sets]\n0 = \"spec.yaml\"\n",
        )
        .write(
            &format!("{project}/spec.yaml"),
            spec_yaml("oracle", "aggregator", "1"),
        )
        .write(".gitignore", "out/\n")
        .git_init();
        let marker = p.path().parent().unwrap().join(format!(
            "{}-planted-git-ran",
            p.path().file_name().unwrap().to_string_lossy()
        ));
        let planted = if planted_in == "." {
            p.join("mid")
        } else {
            p.join(project)
        };
        // The spy is part of the pull request too.
        spy(&planted.join("spy.sh"), &marker);
        plant_repository(&planted, &planted.join("spy.sh"));
        // Committed: the pull request is merged; `git status` of the real tree is clean.
        p.git_commit_all("a pull request", "2024-03-05T10:20:30+05:30");

        for args in [
            &["validate"][..],
            &["plan", "--format", "json"][..],
            &["-v", "lock"][..],
        ] {
            let mut cmd = p.eigenpub(args);
            cmd.current_dir(p.join(project));
            with_secrets(&mut cmd);
            let out = run(cmd);
            assert_never_ran(
                &marker,
                &format!("{args:?} (planted in {planted_in})"),
                &out,
            );
            out.no_panic().success();
        }
        let _ = fs::remove_file(p.join(&format!("{project}/eigenruntime.lock")));
        // The time is the real repository's last commit of the spec: the same digest as
        // that time written out.
        let mut cmd = p.eigenpub(&["plan", "--format", "json"]);
        cmd.current_dir(p.join(project));
        let from_git = run(cmd);
        from_git.success();
        let toml = p.join(&format!("{project}/eigenruntime.toml"));
        let text = fs::read_to_string(&toml).unwrap();
        fs::write(
            &toml,
            text.replace("created = \"git\"", "created = \"2024-03-05T04:50:30Z\""),
        )
        .unwrap();
        let mut cmd = p.eigenpub(&["plan", "--format", "json"]);
        cmd.current_dir(p.join(project));
        let fixed = run(cmd);
        fixed.success();
        let digest = |out: &Output| {
            serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["artifacts"][0]
                ["digest"]
                .clone()
        };
        assert_eq!(digest(&from_git), digest(&fixed), "{from_git}\n{fixed}");
        assert_never_ran(&marker, "the digest runs", &fixed);
    }
}

/// A tree that did not come from a git checkout (an archive, a build artifact) can hold a
/// `.git` of the pull request's own: eigenpub uses it (it is the project's repository),
/// but nothing its configuration names runs, though plain git runs it at once.
#[test]
fn a_hostile_git_folder_names_programs_that_eigenpub_never_runs() {
    let p = Project::new();
    monorepo(&p);
    set_created(&p, "git");
    let marker = p.path().parent().unwrap().join(format!(
        "{}-hostile-git-ran",
        p.path().file_name().unwrap().to_string_lossy()
    ));
    let spy_path = p.join("spy.sh");
    spy(&spy_path, &marker);
    let git_dir = p.join(".git");
    for hook in [
        "post-index-change",
        "reference-transaction",
        "post-checkout",
    ] {
        fs::create_dir_all(git_dir.join("hooks")).unwrap();
        fs::copy(&spy_path, git_dir.join("hooks").join(hook)).unwrap();
    }
    let config = fs::read_to_string(git_dir.join("config")).unwrap();
    fs::write(
        git_dir.join("config"),
        config
            + &hostile_config(&spy_path).replace(
                "hooksPath = hooks",
                &format!("hooksPath = {}", git_dir.join("hooks").display()),
            ),
    )
    .unwrap();
    fs::write(
        git_dir.join("more.config"),
        format!("[core]\n\tfsmonitor = {}\n", spy_path.display()),
    )
    .unwrap();
    fs::create_dir_all(git_dir.join("info")).unwrap();
    fs::write(git_dir.join("info/attributes"), "* filter=spy diff=spy\n").unwrap();
    // The last commit carries a signature, which `log.showSignature` has checked by
    // `gpg.program`.
    let signed = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "c=$(git cat-file commit HEAD | awk '/^committer/{print; print \"gpgsig -----BEGIN PGP SIGNATURE-----\"; print \" \"; print \" abc\"; print \" -----END PGP SIGNATURE-----\"; next} {print}' | git hash-object -w -t commit --stdin --literally) && git update-ref HEAD \"$c\"",
        )
        .current_dir(p.path())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(signed.status.success(), "{signed:?}");
    // Plain git does run the spy: the attack is live.
    for args in [&["log", "-1"][..], &["status"][..]] {
        let _ = std::process::Command::new("git")
            .args(args)
            .current_dir(p.join("sub"))
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(
            marker.exists(),
            "plain git {args:?} should have run the spy"
        );
        fs::remove_file(&marker).unwrap();
    }
    for args in [&["validate"][..], &["plan", "--format", "json"][..]] {
        let mut cmd = p.eigenpub(args);
        cmd.current_dir(p.join("sub"));
        with_secrets(&mut cmd);
        let out = run(cmd);
        assert_never_ran(&marker, &format!("{args:?}"), &out);
        out.no_panic().success();
    }
}

/// A checkout owned by another user (a CI container's workspace): git's ownership check
/// guards discovery, which eigenpub does itself; the time is read all the same.
#[test]
fn a_checkout_owned_by_another_user_is_dated_without_safe_directory() {
    let p = Project::new();
    monorepo(&p);
    set_created(&p, "git");
    let chown = std::process::Command::new("chown")
        .args(["-R", "nobody"])
        .arg(p.path())
        .status()
        .unwrap();
    assert!(chown.success(), "the tests run as root, as CI does");
    let (out, digest) = planned_digest(&p, None);
    out.no_panic().success();
    assert!(digest.is_some(), "{out}");
}

#[test]
fn git_runs_with_an_environment_eigenpub_wrote_and_never_from_the_project_folder() {
    let p = Project::new();
    monorepo(&p);
    set_created(&p, "git");
    // A `git` first on PATH that records its environment, then does git's work.
    let spy_dir = tempfile::tempdir().unwrap();
    let seen = spy_dir.path().join("git-env");
    let real_git = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    script(
        &spy_dir.path().join("bin/git"),
        &format!(
            "env >> '{}'\necho ---- >> '{}'\nexec {} \"$@\"",
            seen.display(),
            seen.display(),
            real_git.trim()
        ),
    );
    let path = format!(
        "{}:{}",
        spy_dir.path().join("bin").display(),
        std::env::var("PATH").unwrap()
    );
    let (out, digest) = planned_digest(&p, Some(&path));
    out.no_panic().success();
    assert!(digest.is_some(), "{out}");
    let env = fs::read_to_string(&seen).expect("eigenpub ran git");
    assert!(
        !env.contains("EIGENPUB_") && !env.contains(PASSWORD),
        "git saw eigenpub's variables:\n{env}"
    );
    for expected in [
        "GIT_CONFIG_NOSYSTEM=1",
        "GIT_CONFIG_GLOBAL=/dev/null",
        "LC_ALL=C",
    ] {
        assert!(env.contains(expected), "{expected} missing:\n{env}");
    }

    // A `git` planted in the project folder, with `.` (or an empty entry) on PATH.
    let marker = p.path().parent().unwrap().join(format!(
        "{}-planted-git-binary-ran",
        p.path().file_name().unwrap().to_string_lossy()
    ));
    spy(&p.join("sub/git"), &marker);
    for path in [
        format!(".:{}", std::env::var("PATH").unwrap()),
        format!(":{}", std::env::var("PATH").unwrap()),
    ] {
        let (out, digest) = planned_digest(&p, Some(&path));
        assert_never_ran(&marker, &format!("PATH={path}"), &out);
        out.no_panic().success();
        assert!(digest.is_some());
    }
}

// ---------------------------------------------------------------------------
// Credential helpers
// ---------------------------------------------------------------------------

/// A project publishing to a loopback port where nothing listens (credentials are looked
/// up before any request), with `config` as Docker's config.
fn helper_project(config: serde_json::Value) -> Project {
    let p = Project::new();
    p.write(
        "eigenruntime.toml",
        "[defaults]\nregistry = \"127.0.0.1:9/acme\"\ncreated = \"2024-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"oracle\"\n[avs.operator-sets]\n0 = \"spec.yaml\"\n",
    )
    .write("spec.yaml", spec_yaml("oracle", "aggregator", "1"))
    .write(".docker/config.json", config.to_string());
    p
}

fn helper_command(p: &Project, bin: &Path) -> std::process::Command {
    let mut cmd = p.eigenpub(&["plan", "--diagnostics", "json"]);
    cmd.env("DOCKER_CONFIG", p.join(".docker"))
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("EIGENPUB_CREDENTIAL_HELPER_TIMEOUT", "1");
    with_secrets(&mut cmd);
    cmd
}

#[test]
fn credential_helpers_never_see_eigenpub_variables() {
    for config in [
        serde_json::json!({"credHelpers": {"127.0.0.1:9": "spy"}}),
        serde_json::json!({"credsStore": "spy"}),
        // An `auths` entry with no password falls through to the store.
        serde_json::json!({"auths": {"127.0.0.1:9": {"username": "u"}}, "credsStore": "spy"}),
    ] {
        let p = helper_project(config.clone());
        let bin = tempfile::tempdir().unwrap();
        let seen = bin.path().join("helper-env");
        script(
            &bin.path().join("docker-credential-spy"),
            &format!(
                "env > '{}'\npwd >> '{}'\ncat > /dev/null\necho '{{\"Username\":\"u\",\"Secret\":\"helper-secret\"}}'",
                seen.display(),
                seen.display()
            ),
        );
        let out = run(helper_command(&p, bin.path()));
        out.no_panic();
        let env = fs::read_to_string(&seen)
            .unwrap_or_else(|_| panic!("{config}: the helper was not asked\n{out}"));
        assert!(
            !env.contains("EIGENPUB_") && !env.contains(PASSWORD),
            "{config}: the helper saw eigenpub's variables:\n{env}"
        );
        assert!(
            env.contains("HOME="),
            "{config}: the operator's own variables are kept\n{env}"
        );
        assert!(
            env.lines().last() == Some("/"),
            "{config}: the helper runs in /, not in the project folder\n{env}"
        );
    }
}

#[test]
fn the_credential_store_behind_an_auths_entry_has_the_deadline_and_is_not_echoed() {
    let config =
        serde_json::json!({"auths": {"127.0.0.1:9": {"username": "u"}}, "credsStore": "store"});
    let pids = tempfile::tempdir().unwrap();
    let pid_file = pids.path().join("store-child.pid");
    for (what, body) in [
        (
            "hung",
            &*format!(
                "echo HELPER-STDERR-MUST-NOT-SHOW >&2\nsleep 300 &\necho $! > '{}'\nwait",
                pid_file.display()
            ),
        ),
        (
            "failing",
            "echo HELPER-STDERR-MUST-NOT-SHOW >&2\necho HELPER-STDOUT-MUST-NOT-SHOW\nexit 3",
        ),
    ] {
        let p = helper_project(config.clone());
        let bin = tempfile::tempdir().unwrap();
        script(&bin.path().join("docker-credential-store"), body);
        let started = Instant::now();
        let run = Running::spawn(helper_command(&p, bin.path()));
        let out = match run.wait_at_most(Duration::from_secs(20)) {
            Ok(out) => out,
            Err(out) => panic!("{what}: the store had no deadline (killed by the test)\n{out}"),
        };
        out.no_panic().expect_code(1);
        assert!(started.elapsed() < Duration::from_secs(15), "{what}");
        assert!(
            !out.stderr.contains("MUST-NOT-SHOW") && !out.stdout.contains("MUST-NOT-SHOW"),
            "{what}: the store's output was printed\n{out}"
        );
        if what == "hung" {
            assert!(out.stderr.contains("did not answer within 1 s"), "{out}");
            let pid = fs::read_to_string(&pid_file).expect("the store started its child");
            assert!(
                dies_within(&pid, Duration::from_secs(5)),
                "the store's child outlived eigenpub\n{out}"
            );
        } else {
            assert!(out.stderr.contains("its output is not shown"), "{out}");
        }
    }
}

#[test]
fn a_helper_planted_in_the_project_folder_is_not_run_through_a_relative_path_entry() {
    let p = helper_project(serde_json::json!({"credsStore": "planted"}));
    let marker = p.path().parent().unwrap().join(format!(
        "{}-planted-helper-ran",
        p.path().file_name().unwrap().to_string_lossy()
    ));
    spy(&p.join("docker-credential-planted"), &marker);
    let mut cmd = p.eigenpub(&["plan", "--diagnostics", "json"]);
    cmd.env("DOCKER_CONFIG", p.join(".docker"))
        .env("PATH", format!(".:{}", std::env::var("PATH").unwrap()));
    let out = run(cmd);
    assert_never_ran(&marker, "a helper in the project folder", &out);
    out.no_panic().expect_code(1);
    assert!(
        out.stderr
            .contains("not found in the absolute folders of PATH"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// Files read once, inside the project
// ---------------------------------------------------------------------------

/// What a file outside the project holds; no byte of it may be shown.
const OUTSIDE: &str = "apiVersion: [OUTSIDE-SECRET-9f2c";

#[test]
fn a_spec_swapped_for_a_link_out_of_the_project_while_reading_never_reads_outside() {
    let outer = tempfile::tempdir().unwrap();
    let project = outer.path().join("project");
    let specs = project.join("specs");
    fs::create_dir_all(&specs).unwrap();
    fs::write(
        project.join("eigenruntime.toml"),
        "[defaults]\nregistry = \"oci:out\"\ncreated = \"2024-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"oracle\"\n[avs.operator-sets]\n0 = \"specs/spec.yaml\"\n",
    )
    .unwrap();
    let keep = specs.join("spec.keep");
    fs::write(&keep, spec_yaml("oracle", "aggregator", "1")).unwrap();
    fs::hard_link(&keep, specs.join("spec.yaml")).unwrap();
    let outside = outer.path().join("outside.yaml");
    fs::write(&outside, OUTSIDE).unwrap();

    // The swapper: `specs/spec.yaml` is the real spec, then a link to the file outside,
    // again and again, each state reached by one rename (the name is never missing).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let spec = specs.join("spec.yaml");
        let (to_link, to_file) = (specs.join(".to-link"), specs.join(".to-file"));
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = fs::remove_file(&to_link);
                std::os::unix::fs::symlink(&outside, &to_link).unwrap();
                fs::rename(&to_link, &spec).unwrap();
                let _ = fs::remove_file(&to_file);
                fs::hard_link(&keep, &to_file).unwrap();
                fs::rename(&to_file, &spec).unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut runs, mut read_inside) = (0, 0);
    let mut leaked = None;
    while Instant::now() < deadline && runs < 300 {
        let mut cmd = crate::harness::eigenpub(&project);
        cmd.arg("validate");
        let out = run(cmd);
        runs += 1;
        if out.code == 0 {
            read_inside += 1;
        }
        if out.stdout.contains("OUTSIDE-SECRET") || out.stderr.contains("OUTSIDE-SECRET") {
            leaked = Some(out);
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!("{runs} runs ({read_inside} read the spec inside), {swaps} swaps");
    if let Some(out) = leaked {
        panic!("after {runs} runs, a file outside the project was read and shown:\n{out}");
    }
    assert!(
        read_inside > 0,
        "no run read the spec at all: the race was not exercised"
    );
}
