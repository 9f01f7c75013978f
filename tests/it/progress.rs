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

/// Issue 20: at a terminal the bar replaces the per-artifact lines (the summary says what
/// was pushed), `-v` lists every one, and a standard output that is not the terminal
/// (`apply > log`) still gets every line.
#[test]
fn at_a_terminal_the_bar_replaces_per_artifact_lines() {
    let project = layout_project(5);
    let drawn = at_a_terminal(&project, "apply");
    let pushed_lines = |text: &str| text.matches("pushed    oci:").count();
    assert_eq!(
        pushed_lines(&drawn),
        0,
        "per-artifact lines at a terminal:\n{drawn}"
    );
    assert!(drawn.contains("Apply: 5 pushed"), "{drawn}");
    let project = layout_project(5);
    let drawn = at_a_terminal(&project, "-v apply");
    assert_eq!(pushed_lines(&drawn), 5, "-v lists every artifact:\n{drawn}");
    let project = layout_project(5);
    at_a_terminal(&project, "apply > log.txt");
    let log = fs::read_to_string(project.join("log.txt")).unwrap();
    assert_eq!(pushed_lines(&log), 5, "standard output to a file:\n{log}");
}

/// A tmux server of the test's own (its own socket), one 80-column window running a
/// command; killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(project: &Project, command: &str) -> Tmux {
        let socket = format!(
            "eigenpub-it-{}-{}",
            std::process::id(),
            project.path().file_name().unwrap().to_string_lossy()
        );
        let docker_config = project.join(".docker");
        fs::create_dir_all(&docker_config).unwrap();
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "80", "-y", "40", "-s", "t"])
            .arg(format!("{command}; echo EXIT=$?; sleep 120"))
            .current_dir(project.path())
            .env("NO_COLOR", "1")
            .env("DOCKER_CONFIG", &docker_config)
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("TMUX");
        run(cmd).success();
        Tmux { socket }
    }

    /// What the window shows now.
    fn screen(&self) -> String {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket, "capture-pane", "-p", "-t", "t"]);
        run(cmd).stdout
    }

    fn keys(&self, keys: &str) {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket, "send-keys", "-t", "t", keys]);
        run(cmd).success();
    }

    /// Waits until the window shows `text`; the screen then.
    fn wait_for(&self, text: &str, limit: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{text:?} not shown within {limit:?}:\n{screen}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket, "kill-server"]);
        let _ = cmd.output();
    }
}

/// Issue 20: Ctrl-C at a terminal, as a user sees it in an 80-column window: the
/// "Stopping…" notice stays on the screen (the bars do not draw over it), no stale bar is
/// left, and the summary says the run was interrupted, in the same words as the lines.
#[test]
fn ctrl_c_at_a_terminal_leaves_the_notice_and_an_interrupted_summary() {
    use crate::harness::Registry;
    use crate::harness::fault_proxy::{Fault, Proxy, always};
    use std::time::Duration;

    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    // Every blob upload is held 2 s: the run is still going when Ctrl-C comes.
    proxy.set_policy(always(Fault::Stall(Duration::from_secs(2)), |h| {
        h.method == "POST"
    }));
    let project = Project::new();
    let mut toml = format!(
        "[defaults]\nregistry = \"{}/acme\"\ncreated = \"2025-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"dice\"\nversion = 1\n\n[avs.operator-sets]\n",
        proxy.host()
    );
    for i in 0..12 {
        toml.push_str(&format!("{i} = \"opset-{i}.yaml\"\n"));
        project.write(
            &format!("opset-{i}.yaml"),
            crate::harness::spec_yaml("dice", "aggregator", &i.to_string()),
        );
    }
    project.write("eigenruntime.toml", toml);
    let bin = Path::new(env!("CARGO_BIN_EXE_eigenpub"));
    let tmux = Tmux::start(
        &project,
        &format!("'{}' --concurrency 2 apply", bin.display()),
    );
    tmux.wait_for("pushing 12 artifacts", Duration::from_secs(30));
    tmux.keys("C-c");
    let screen = tmux.wait_for("EXIT=", Duration::from_secs(30));
    proxy.faults_off();
    assert!(
        screen.contains("Stopping: no new artifacts will be started"),
        "the notice was erased:\n{screen}"
    );
    assert!(screen.contains("Apply interrupted:"), "{screen}");
    assert!(screen.contains("not started"), "{screen}");
    assert!(
        !screen.contains("skipped"),
        "two words for one thing:\n{screen}"
    );
    assert!(
        !screen.contains("pushing 12 artifacts"),
        "a stale bar was left:\n{screen}"
    );
    assert!(screen.contains("EXIT=1"), "{screen}");
}
