//! Progress as a user at a terminal sees it (issue 13): the plan's and the apply's bars
//! appear from the first moment with their phase text and 0/N, and each artifact in
//! flight is named. A pseudo-terminal comes from util-linux's `script`; without one (CI
//! logs) no bar is drawn, only plain result lines.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::harness::{Project, run};

/// A layout project of `n` artifacts (one AVS, operator sets 0..n).
fn layout_project(n: usize) -> Project {
    let project = Project::new();
    let mut toml = String::from(
        "[defaults]\nregistry = \"oci:out\"\ncreated = \"2025-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"dice\"\nversion = 1\n\n[avs.operator-sets]\n",
    );
    for i in 0..n {
        toml.push_str(&format!("{i} = \"opset-{i}.yaml\"\n"));
        project.write(
            &format!("opset-{i}.yaml"),
            crate::harness::spec_yaml("dice", "aggregator", &i.to_string()),
        );
    }
    project.write("eigenruntime.toml", toml);
    project
}

/// Runs eigenpub with `args` under a pseudo-terminal; returns everything it drew.
fn at_a_terminal(project: &Project, args: &str) -> String {
    let docker_config = project.join(".docker");
    fs::create_dir_all(&docker_config).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_eigenpub"));
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c"])
        .arg(format!("'{}' {args}", bin.display()))
        .arg("/dev/null")
        .current_dir(project.path())
        .env("NO_COLOR", "1")
        .env("DOCKER_CONFIG", &docker_config)
        .env("COLUMNS", "160")
        .env_remove("SOURCE_DATE_EPOCH");
    let out = run(cmd);
    assert_eq!(out.code, 0, "{out}");
    out.stdout
}

#[test]
fn at_a_terminal_bars_name_the_phase_from_zero_and_each_artifact() {
    let project = layout_project(3);
    let drawn = at_a_terminal(&project, "apply");
    for expected in [
        "checking 3 tags on an OCI layout",
        "0/3",
        "pushing 3 artifacts to an OCI layout",
        "out/dice:opset-0-v1",
    ] {
        assert!(
            drawn.contains(expected),
            "missing {expected:?} in:\n{drawn}"
        );
    }
    // Quiet: no bars at all, only the summary.
    let project = layout_project(2);
    let drawn = at_a_terminal(&project, "-q apply");
    assert!(!drawn.contains("pushing"), "bars drawn with -q:\n{drawn}");
    assert!(!drawn.contains("checking"), "bars drawn with -q:\n{drawn}");
}

#[test]
fn without_a_terminal_no_bar_is_drawn() {
    let project = layout_project(3);
    let out = project.run(&["apply"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(!out.stderr.contains("pushing"), "{out}");
    assert!(!out.stderr.contains("checking"), "{out}");
    assert_eq!(
        out.stdout.matches("pushed").count(),
        4,
        "three lines and the summary:\n{out}"
    );
}
