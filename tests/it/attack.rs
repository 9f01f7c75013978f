//! An attacker's pass over issue 19 as landed: new variants of its defects that the fixes'
//! own tests did not try. Each test is one attack that got through before its fix.

use crate::harness::{Project, spec_yaml};

/// A project publishing one spec to an OCI layout in the project folder (no registry: the
/// attacks here need none).
fn layout_project() -> Project {
    let p = Project::new();
    p.write(
        "eigenruntime.toml",
        "[defaults]\ncreated = \"2025-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"oracle\"\nversion = 1\nrepository = \"oci:out/oracle\"\n[avs.operator-sets]\n0 = \"a.yaml\"\n",
    );
    p.write("a.yaml", spec_yaml("oracle", "aggregator", "image-1"));
    p
}

/// A value that, shown raw, starts a line of its own holding a workflow command.
const LINE_BREAK: &str = "x\n::error::PWNED";

/// The injected value never starts a line of its own: its line break is shown escaped, so
/// what follows it (`::error::PWNED`, escaped as `\x3a:error::PWNED`) stays on its line.
fn assert_one_line(what: &str, text: &str) {
    assert!(
        text.contains("PWNED"),
        "{what}: the value is not shown at all\n{text}"
    );
    for line in text.lines() {
        let start = line.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{2502}');
        assert!(
            !start.starts_with("\\x3a:error::PWNED") && !start.starts_with("::error::PWNED"),
            "{what}: an outside value was shown across lines: {line:?}\n{text}"
        );
    }
}

// A saved plan (a pull-request job's artifact) is outside text like a registry's: the
// values it holds that apply prints (its artifacts' fields when it is stale, its
// selection's globs) are kept on one line in every format, not only escaped.
#[test]
fn a_saved_plans_values_are_shown_on_one_line() {
    let p = layout_project();
    p.run(&["plan", "--out", "plan.json"]).success();
    let genuine: serde_json::Value = serde_json::from_slice(&p.read("plan.json")).unwrap();

    // Stale: every field the comparison quotes from the file.
    let mut doc = genuine.clone();
    let artifact = &mut doc["artifacts"][0];
    artifact["avs"] = format!("av{LINE_BREAK}").into();
    artifact["spec"] = format!("s{LINE_BREAK}").into();
    artifact["action"] = format!("up{LINE_BREAK}").into();
    let mut extra = artifact.clone();
    extra["repository"] = format!("oci:{LINE_BREAK}").into();
    doc["artifacts"].as_array_mut().unwrap().push(extra);
    p.write("stale.json", serde_json::to_vec(&doc).unwrap());
    let out = p.run(&["apply", "stale.json"]);
    out.no_panic().expect_code(1);
    assert!(out.stderr.contains("eigenpub::apply::stale-plan"), "{out}");
    assert_one_line("stale plan", &out.stderr);

    // Its selection: a glob that matches nothing, and one that is not a glob.
    for glob in [format!("sel{LINE_BREAK}"), format!("[{LINE_BREAK}")] {
        let mut doc = genuine.clone();
        doc["select"] = serde_json::json!([glob]);
        p.write("select.json", serde_json::to_vec(&doc).unwrap());
        let out = p.run(&["apply", "select.json"]);
        out.no_panic().expect_code(1);
        assert_one_line("saved selection", &out.stderr);
    }
    assert!(
        !p.path().join("out").exists(),
        "a doctored plan was applied"
    );
}

// An OCI layout may be committed in a pull request. Its reads stay beneath its folder; its
// writes followed a `blobs` (or `blobs/sha256`) that links elsewhere: `apply` wrote the
// blobs (content the pull request chose, under names it can compute) into the linked folder.
#[test]
fn apply_writes_no_blob_through_a_link_in_a_committed_layout() {
    for (link, with_marker) in [("blobs", false), ("blobs/sha256", true)] {
        let p = layout_project();
        let elsewhere = tempfile::tempdir().unwrap();
        let layout = p.path().join("out/oracle");
        let link_path = layout.join(link);
        std::fs::create_dir_all(link_path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), &link_path).unwrap();
        if with_marker {
            // A committed marker: the layout counts as existing.
            p.write("out/oracle/oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#);
        }
        let out = p.run(&["apply"]);
        out.no_panic().expect_code(1);
        assert!(
            out.stdout
                .contains(&format!("{link} is not a folder of the layout (a link")),
            "{link}: {out}"
        );
        let written: Vec<_> = walk(elsewhere.path());
        assert_eq!(
            written,
            Vec::<String>::new(),
            "{link}: apply wrote outside the layout"
        );
        assert!(
            !layout.join("index.json").exists(),
            "{link}: a tag was written"
        );
    }
}

// The link check covered `blobs` and `blobs/sha256` only: a relative `oci:` folder (or the
// layout's own folder in it) committed as a link to a folder outside the project had
// `apply` write the layout there, while the project file and the plan named a folder of
// the project. Refused before anything is written, naming the file, line and field; a
// link that stays in the project is followed.
#[test]
fn apply_writes_no_layout_through_a_committed_link_out_of_the_project() {
    let mirrored = |p: &Project| {
        let path = p.path().join("eigenruntime.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace(
            "repository = \"oci:out/oracle\"\n",
            "repository = \"oci:out/oracle\"\nmirrors = [\"oci:archive\"]\n",
        );
        std::fs::write(path, text).unwrap();
    };
    for (link, field, line, code, mirror) in [
        (
            "out",
            "repository = \"oci:out/oracle\"",
            7,
            "repository",
            false,
        ),
        (
            "out/oracle",
            "repository = \"oci:out/oracle\"",
            7,
            "repository",
            false,
        ),
        (
            "archive",
            "mirrors entry \"oci:archive\"",
            8,
            "mirror",
            true,
        ),
    ] {
        let p = layout_project();
        if mirror {
            mirrored(&p);
        }
        let elsewhere = tempfile::tempdir().unwrap();
        let link_path = p.path().join(link);
        std::fs::create_dir_all(link_path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), &link_path).unwrap();
        // What, where (file, line, field) and what to do.
        let out = p.run(&["validate", "--format", "json"]);
        out.no_panic().expect_code(1);
        let doc: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("{link}: {e}\n{out}"));
        let found = &doc["diagnostics"][0];
        let message = found["message"].as_str().unwrap_or_default();
        assert!(
            found["code"] == format!("eigenpub::project::{code}")
                && found["file"] == "eigenruntime.toml"
                && found["line"] == line
                && message.contains(field)
                && message.contains("a symbolic link in the project to")
                && message.contains(&elsewhere.path().display().to_string())
                && found["help"]
                    .as_str()
                    .is_some_and(|h| h.contains("replace the link with a folder")),
            "{link}: {doc:#}"
        );
        let out = p.run(&["apply"]);
        out.no_panic().expect_code(1);
        assert!(
            out.stderr.contains(&format!("eigenpub::project::{code}")),
            "{link}: {out}"
        );
        assert_eq!(
            walk(elsewhere.path()),
            Vec::<String>::new(),
            "{link}: apply wrote outside the project"
        );
    }
    // A link that stays in the project is followed.
    let p = layout_project();
    std::fs::create_dir_all(p.path().join("build")).unwrap();
    std::os::unix::fs::symlink(p.path().join("build"), p.path().join("out")).unwrap();
    p.run(&["apply"]).no_panic().success();
    assert!(p.path().join("build/oracle/index.json").is_file());
}

/// The files and folders under `dir`, relative.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            files.push(path.strip_prefix(dir).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    files
}

// A `[registries."…"]` key is project-file text, and a TOML key may hold a line break
// (`"\n"`): the problems naming the key showed it across lines.
#[test]
fn a_registries_key_is_shown_on_one_line() {
    let p = layout_project();
    let toml = String::from_utf8(p.read("eigenruntime.toml")).unwrap();
    let key = LINE_BREAK.replace('\n', "\\n");
    p.write(
        "eigenruntime.toml",
        format!("[registries.\"{key}\"]\ntimeout = 0\n\n{toml}"),
    );
    let out = p.run(&["validate"]);
    out.no_panic().expect_code(1);
    assert!(out.stderr.contains("eigenpub::project::registry"), "{out}");
    assert_one_line("registries key", &out.stderr);
}

// Every value of the project file that a problem quotes is kept on one line in its
// message (and in the schema help's example): a tag, a registry, a time, an operator-set
// key, a spec path, an unknown key and a schema URL, each with a line break, showed
// across lines.
#[test]
fn project_file_values_in_problems_are_shown_on_one_line() {
    let v = LINE_BREAK.replace('\n', "\\n");
    let avs = |extra: &str, opset: &str, spec: &str| {
        format!(
            "[defaults]\ncreated = \"2025-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"o\"\nversion = 1\nrepository = \"oci:out/o\"\n{extra}\n[avs.operator-sets]\n{opset} = \"{spec}\"\n"
        )
    };
    let cases = [
        ("tag", avs(&format!("tag = \"{v}\""), "0", "a.yaml")),
        (
            "registry",
            avs("", "0", "a.yaml").replace("oci:out/o", &format!("{v}/o")),
        ),
        ("created", avs(&format!("created = \"{v}\""), "0", "a.yaml")),
        ("operator-set key", avs("", &format!("\"{v}\""), "a.yaml")),
        ("spec path", avs("", "0", &v)),
        ("unknown key", avs(&format!("\"{v}\" = 1"), "0", "a.yaml")),
        ("schema", avs(&format!("schema = \"{v}\""), "0", "a.yaml")),
    ];
    for (what, toml) in cases {
        let p = Project::new();
        p.write("a.yaml", spec_yaml("o", "aggregator", "image-1"));
        p.write("eigenruntime.toml", toml);
        let out = p.run(&["validate", "-v"]);
        out.no_panic().expect_code(1);
        assert_one_line(what, &out.stderr);
    }
}

// CI jobs put folders of the checkout on PATH by absolute path (`$GITHUB_WORKSPACE/.venv/bin`,
// `$PWD/bin`): a `git` a pull request commits there ran for `created = "git"`, with the
// project's work tree as its folder. Only relative PATH entries were skipped.
#[test]
fn no_program_runs_from_an_absolute_path_entry_inside_the_repository() {
    let p = Project::new();
    p.write(
        "sub/eigenruntime.toml",
        "[defaults]\nregistry = \"oci:out\"\ncreated = \"git\"\n\n[[avs]]\nname = \"oracle\"\nversion = 1\n[avs.operator-sets]\n0 = \"spec.yaml\"\n",
    )
    .write("sub/spec.yaml", spec_yaml("oracle", "aggregator", "1"))
    .git_init()
    .git_commit_all("the project", "2024-03-05T10:20:30+05:30");
    let marker = p.path().parent().unwrap().join(format!(
        "{}-planted-git-ran",
        p.path().file_name().unwrap().to_string_lossy()
    ));
    let planted = p.path().join(".venv/bin/git");
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    std::fs::write(
        &planted,
        format!("#!/bin/sh\necho ran >> '{}'\nexit 1\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = p.eigenpub(&["-c", "sub/eigenruntime.toml", "validate"]);
    cmd.env(
        "PATH",
        format!(
            "{}:{}",
            planted.parent().unwrap().display(),
            std::env::var("PATH").unwrap()
        ),
    );
    let out = crate::harness::run(cmd);
    out.no_panic();
    let ran = marker.exists();
    let _ = std::fs::remove_file(&marker);
    assert!(!ran, "the git planted in the repository ran\n{out}");
    out.success();
}

// Jenkins runs jobs with `HOME=$WORKSPACE`: the work tree held the home folder, so it was
// trusted whole, and a `git` or credential helper a pull request committed in
// `.local/bin` (on PATH by absolute path, as `~/.local/bin` is) ran, with the job's push
// credentials in its environment. Folders inside the project are never searched now,
// whatever `$HOME` is; the not-found error says so, and what to do.
#[test]
fn no_program_runs_from_the_work_tree_when_home_is_the_work_tree() {
    let p = Project::new();
    p.write(
        "sub/eigenruntime.toml",
        "[defaults]\nregistry = \"127.0.0.1:9/acme\"\ncreated = \"git\"\n\n[[avs]]\nname = \"oracle\"\nversion = 1\n[avs.operator-sets]\n0 = \"spec.yaml\"\n",
    )
    .write("sub/spec.yaml", spec_yaml("oracle", "aggregator", "1"))
    .write(".docker/config.json", r#"{"credsStore": "home"}"#);
    let bin = p.path().join(".local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let marker = p.path().parent().unwrap().join(format!(
        "{}-planted-program-ran",
        p.path().file_name().unwrap().to_string_lossy()
    ));
    use std::os::unix::fs::PermissionsExt;
    for name in ["git", "docker-credential-home"] {
        std::fs::write(
            bin.join(name),
            format!("#!/bin/sh\necho {name} >> '{}'\nexit 1\n", marker.display()),
        )
        .unwrap();
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    p.git_init()
        .git_commit_all("a pull request", "2024-03-05T10:20:30+05:30");
    let run = |args: &[&str]| {
        let mut cmd = p.eigenpub(args);
        cmd.env("HOME", p.path()).env_remove("DOCKER_CONFIG").env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        );
        crate::harness::run(cmd)
    };
    let validate = run(&["-c", "sub/eigenruntime.toml", "validate"]);
    validate.no_panic();
    let plan = run(&["-c", "sub/eigenruntime.toml", "plan"]);
    plan.no_panic().expect_code(1);
    let ran = std::fs::read_to_string(&marker).unwrap_or_default();
    let _ = std::fs::remove_file(&marker);
    assert_eq!(
        ran, "",
        "a program planted in the work tree ran\n{validate}\n{plan}"
    );
    validate.success();
    // The helper is not found, and the error says where it was not looked for and what to do.
    assert!(
        plan.stderr.contains("docker-credential-home")
            && plan
                .stderr
                .contains("folders inside the project or its repository")
            && plan.stderr.contains("outside the project"),
        "{plan}"
    );
}
