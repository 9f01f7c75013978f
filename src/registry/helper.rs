//! Running Docker credential helpers (`docker-credential-<name> get|store|erase`), and
//! reading credentials from `get`, so that no helper outlives eigenpub, floods it or sees
//! its secrets.
//!
//! Every call to a helper goes through [`run`], and so through [`crate::child`]: a helper
//! may hang (waiting for a prompt nobody sees, a locked keychain), so it gets a deadline,
//! and when the deadline passes it is killed together with every process it started. It
//! runs in `/` (not in the project folder a pull request controls), with the operator's
//! environment less every `EIGENPUB_*` variable: no `EIGENPUB_REGISTRY_*` password reaches
//! it. What it prints is read up to a bound, and never echoed by this module: a failing
//! helper's output may hold the secret.

use std::process::ExitStatus;
use std::time::Duration;

use crate::child::{self, ChildError, Environment, Launch};

/// How long a credential helper may take unless `EIGENPUB_CREDENTIAL_HELPER_TIMEOUT` (in
/// seconds) says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The most of a helper's standard output or error that is read.
const OUTPUT_LIMIT: u64 = 1 << 20;

/// The helper deadline of this run.
pub fn timeout() -> Duration {
    std::env::var("EIGENPUB_CREDENTIAL_HELPER_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_TIMEOUT, |s| Duration::from_secs_f64(s.min(3600.0)))
}

/// What a helper answered.
pub struct HelperOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a helper gave no answer.
#[derive(Debug)]
pub enum HelperError {
    /// It could not be started (not installed, not executable).
    Start(ChildError),
    /// It did not finish in time and was killed, with its children.
    TimedOut(Duration),
}

impl std::fmt::Display for HelperError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelperError::Start(e) => write!(f, "{e}"),
            HelperError::TimedOut(t) => write!(
                f,
                "it did not answer within {} s and was stopped (it may be waiting for a prompt or a locked keychain; EIGENPUB_CREDENTIAL_HELPER_TIMEOUT sets the limit)",
                t.as_secs_f64()
            ),
        }
    }
}

/// Runs `program action` with `input` on standard input, within `timeout`.
pub fn run(
    program: &str,
    action: &str,
    input: &[u8],
    timeout: Duration,
) -> Result<HelperOutput, HelperError> {
    let finished = child::run(Launch {
        program,
        args: vec![action.into()],
        env: Environment::OperatorLessEigenpub,
        dir: std::path::Path::new("/"),
        input,
        timeout,
        output_limit: OUTPUT_LIMIT,
    })
    .map_err(|e| match e {
        ChildError::TimedOut(t) => HelperError::TimedOut(t),
        other => HelperError::Start(other),
    })?;
    Ok(HelperOutput {
        status: finished.status,
        stdout: finished.stdout,
        stderr: finished.stderr,
    })
}

/// What `get` answered: Docker's `{"Username": …, "Secret": …}`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Answer {
    pub username: String,
    pub secret: String,
}

/// Asks `docker-credential-<helper> get` for a key's credentials, within the helper
/// deadline. `None` when it has none (then the next spelling is tried, and in the end the
/// registry is used anonymously, as Docker does). Never echoes what the helper printed.
pub fn get(helper: &str, key: &str) -> Result<Option<Answer>, String> {
    let program = format!("docker-credential-{helper}");
    let timeout = timeout();
    let out = run(&program, "get", key.as_bytes(), timeout)
        .map_err(|e| format!("credential helper {program} failed for {key}: {e}"))?;
    if !out.status.success() {
        let said = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .to_ascii_lowercase()
                .contains("credentials not found")
        };
        if said(&out.stdout) || said(&out.stderr) {
            return Ok(None);
        }
        let status = out
            .status
            .code()
            .map_or("a signal".to_string(), |c| format!("status {c}"));
        // What it printed may hold the secret, so it is not shown here.
        return Err(format!(
            "credential helper {program} failed for {key} (exit {status}); its output is not shown, since it may hold a secret: run `printf {key} | {program} get` to see it"
        ));
    }
    let answer: Answer = serde_json::from_slice(&out.stdout).map_err(|_| {
        format!(
            "credential helper {program} answered something that is not credentials for {key} (expected JSON with Username and Secret)"
        )
    })?;
    Ok(Some(answer))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    fn script(dir: &std::path::Path, body: &str) -> String {
        let path = dir.join("docker-credential-test");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    #[test]
    fn a_hung_helper_and_its_children_are_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child.pid");
        let program = script(
            dir.path(),
            &format!("sleep 300 & echo $! > {}\nwait", marker.display()),
        );
        let started = Instant::now();
        let result = run(&program, "get", b"host", Duration::from_millis(500));
        assert!(matches!(result, Err(HelperError::TimedOut(_))));
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid = std::fs::read_to_string(&marker).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let alive = std::path::Path::new(&format!("/proc/{}", pid.trim())).exists()
            && !std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(!alive, "the helper's child {pid} outlived the timeout");
    }

    #[test]
    fn answers_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let program = script(
            dir.path(),
            "read host; echo \"{\\\"got\\\":\\\"$host\\\"}\"",
        );
        let out = run(&program, "get", b"r.example\n", Duration::from_secs(10)).unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            r#"{"got":"r.example"}"#
        );
    }
}
