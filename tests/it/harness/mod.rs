//! The harness every integration test stands on.
//!
//! It exists so tests can state behaviour in a few lines while everything they
//! touch is real and independent of `eigenpub`'s own code. One module a part:
//!
//! - [`registry`]: a throw-away CNCF distribution (`docker-registry`) process on a
//!   free port (loopback unless asked), anonymous or behind htpasswd or a token
//!   service, over plain HTTP or TLS; its access log is parsed so tests can count
//!   the requests a command made.
//! - [`process`]: every program a test runs ([`eigenpub`], skopeo, git, openssl)
//!   bounded in time, in the foreground ([`run`]) or the background ([`Running`]).
//! - [`http`]: the one small HTTP/1.1 client and server of the tests, shared by the
//!   fault proxy, the token service and any hostile fake server (see its module doc
//!   for how to write one).
//! - [`fault_proxy`]: a proxy that injects registry faults (429, 5xx, dropped and
//!   stalled connections, lost answers) in front of a [`Registry`].
//! - [`pki`], [`token_server`], [`credential_helper`], [`env`], [`secrets`],
//!   [`relay`]: what authentication tests need: a private CA, a bearer-token
//!   service, a Docker credential helper, a `DOCKER_CONFIG` of a test's own, secrets
//!   and the check that they never leak, and a relay that keeps the bytes a client
//!   sent.
//! - Here: [`Project`] (a temporary project directory with git history at fixed
//!   dates), [`eigenpub`] (the built binary in a hermetic environment: no colour, no
//!   developer credentials, no `SOURCE_DATE_EPOCH`), and the independent readers
//!   [`skopeo_raw`] and [`sha256_digest`].

#![allow(dead_code)] // Parts of the harness are for tests that other topics will add.

pub mod credential_helper;
pub mod env;
pub mod fault_proxy;
pub mod http;
pub mod names;
pub mod pki;
pub mod process;
pub mod registry;
pub mod registry_emulator;
pub mod relay;
pub mod secrets;
pub mod token_server;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use tempfile::TempDir;

pub use http::{http_get, http_request};
pub use process::{Output, Running, dies_within, run, run_bytes, run_with_stdin};
pub use registry::{Auth, LOOPBACK, Registry, Request, free_port, parse_access_log_line};

// ---------------------------------------------------------------------------
// Independent readers: skopeo, digests, dates
// ---------------------------------------------------------------------------

/// `skopeo inspect --raw` of a reference: `oci:<dir>:<tag>` is read from an OCI
/// layout; anything else is `docker://<reference>` over plain HTTP, anonymously.
/// The exact manifest bytes, or `None` when skopeo fails (e.g. no such tag).
pub fn skopeo_raw(reference: &str) -> Option<Vec<u8>> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw"]);
    if reference.starts_with("oci:") {
        cmd.arg(reference);
    } else {
        cmd.args(["--tls-verify=false", "--no-creds"]);
        cmd.arg(format!("docker://{reference}"));
    }
    skopeo_output(cmd)
}

/// [`skopeo_raw`] of a registry reference with basic-auth credentials.
pub fn skopeo_raw_with_creds(reference: &str, user: &str, password: &str) -> Option<Vec<u8>> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw", "--tls-verify=false", "--creds"]);
    cmd.arg(format!("{user}:{password}"));
    cmd.arg(format!("docker://{reference}"));
    skopeo_output(cmd)
}

fn skopeo_output(mut cmd: Command) -> Option<Vec<u8>> {
    // Never read the developer's container auth file.
    cmd.env(
        "REGISTRY_AUTH_FILE",
        empty_docker_config().join("auth.json"),
    );
    let out = run_bytes(cmd);
    (out.code == 0).then_some(out.stdout)
}

/// `sha256:<lowercase hex>` of `bytes`.
pub fn sha256_digest(bytes: impl AsRef<[u8]>) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes.as_ref())))
}

/// Seconds since the Unix epoch as RFC 3339 in UTC (`YYYY-MM-DDTHH:MM:SSZ`),
/// computed here (civil-from-days) so tests need not trust eigenpub's formatting.
pub fn rfc3339_utc(epoch_seconds: i64) -> String {
    let days = epoch_seconds.div_euclid(86_400);
    let secs = epoch_seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

// ---------------------------------------------------------------------------
// Projects
// ---------------------------------------------------------------------------

/// A temporary project directory, deleted on drop.
pub struct Project {
    dir: TempDir,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::Builder::new()
            .prefix("eigenpub-it-project-")
            .tempdir()
            .expect("create project temp dir");
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `<project>/<rel>`.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Write `contents` to `<project>/<rel>`, creating parent directories.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> &Self {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent dirs");
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        let path = self.join(rel);
        fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.join(rel).exists()
    }

    /// `git init` on branch `main`, ignoring the user's git configuration.
    pub fn git_init(&self) -> &Self {
        self.git(&["init", "-q", "-b", "main"]);
        self
    }

    /// `git add -A && git commit` with a fixed author and committer and both dates
    /// set to `date` (anything git accepts, e.g. `2024-03-05T10:20:30+05:30`).
    pub fn git_commit_all(&self, message: &str, date: &str) -> &Self {
        self.git(&["add", "-A"]);
        let mut cmd = self.git_command(&["commit", "-q", "--no-gpg-sign", "-m", message]);
        cmd.env("GIT_AUTHOR_DATE", date)
            .env("GIT_COMMITTER_DATE", date);
        let out = run(cmd);
        assert_eq!(out.code, 0, "git commit failed: {out}");
        self
    }

    /// Run git in the project; panics unless it succeeds; returns stdout.
    pub fn git(&self, args: &[&str]) -> String {
        let out = run(self.git_command(args));
        assert_eq!(out.code, 0, "git {args:?} failed: {out}");
        out.stdout
    }

    fn git_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .current_dir(self.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Eigenpub Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
            .env("GIT_COMMITTER_NAME", "Eigenpub Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.invalid");
        cmd
    }

    /// [`eigenpub`] in this project, with `args`.
    pub fn eigenpub(&self, args: &[&str]) -> Command {
        let mut cmd = eigenpub(self.path());
        cmd.args(args);
        cmd
    }

    /// Run `eigenpub <args>` in this project (bounded).
    pub fn run(&self, args: &[&str]) -> Output {
        run(self.eigenpub(args))
    }
}

// ---------------------------------------------------------------------------
// Running eigenpub
// ---------------------------------------------------------------------------

/// The built `eigenpub` binary, run in `project_dir` with no colour, an empty
/// `DOCKER_CONFIG` (the developer's credentials never leak in), no
/// `SOURCE_DATE_EPOCH`, and its manifest cache off (each test counts its own requests;
/// the cache's tests turn it on in a folder of their own).
pub fn eigenpub(project_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eigenpub"));
    cmd.current_dir(project_dir)
        .env("EIGENPUB_NO_CACHE", "1")
        .env_remove("EIGENPUB_CACHE_DIR")
        .env("NO_COLOR", "1")
        .env("DOCKER_CONFIG", empty_docker_config())
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("FORCE_COLOR")
        .env_remove("RUST_LOG");
    cmd
}

/// An empty directory shared by all runs; asserted to still be empty each time.
fn empty_docker_config() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("it-empty-docker-config");
        fs::create_dir_all(&dir).expect("create empty DOCKER_CONFIG dir");
        dir
    });
    let entries: Vec<_> = fs::read_dir(dir)
        .expect("read empty DOCKER_CONFIG dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(
        entries.is_empty(),
        "{} must stay empty (tests needing credentials use their own DOCKER_CONFIG), found {entries:?}",
        dir.display()
    );
    dir.clone()
}

/// A realistic runtime spec (valid per the reference validator), version 0.3.1. `seed`
/// feeds its image digest line, so different seeds give specs differing in one line.
pub fn spec_yaml(avs: &str, component: &str, seed: &str) -> String {
    let image_digest = sha256_digest(seed.as_bytes());
    format!(
        "apiVersion: eigenruntime.io/v1\n\
         kind: Hourglass\n\
         name: {avs}\n\
         version: 0.3.1\n\
         spec:\n  \
           {component}:\n    \
             registry: public.ecr.aws/acme/{avs}-{component}\n    \
             digest: {image_digest}\n    \
             env:\n    \
             resources:\n      \
               tee_enabled: false\n"
    )
}

// ---------------------------------------------------------------------------
// The harness's own checks
// ---------------------------------------------------------------------------

mod self_test {
    use super::*;

    #[test]
    fn access_log_lines_parse_and_other_lines_do_not() {
        let line = r#"127.0.0.1 - - [29/Nov/2026:18:20:01 +0000] "HEAD /v2/acme/x/manifests/t HTTP/1.1" 404 91 "" "curl/7.88.1""#;
        assert_eq!(
            parse_access_log_line(line),
            Some(Request {
                method: "HEAD".into(),
                path: "/v2/acme/x/manifests/t".into(),
                status: 404
            })
        );
        let authed = r#"127.0.0.1 - alice [29/Nov/2026:18:20:01 +0000] "PUT /v2/acme/x/manifests/t HTTP/1.1" 201 0 "" "ua""#;
        assert_eq!(parse_access_log_line(authed).map(|r| r.status), Some(201));
        let info = r#"time="2026-11-29T18:18:34Z" level=info msg="response completed" http.request.method=GET"#;
        assert_eq!(parse_access_log_line(info), None);
    }

    #[test]
    fn rfc3339_utc_matches_known_instants() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(1_735_689_600), "2025-01-01T00:00:00Z");
    }

    #[test]
    fn registry_counts_the_requests_it_serves() {
        let registry = Registry::start();
        assert_eq!(registry.request_count(), 0, "fresh registry after reset");
        let resp = registry.get("/v2/acme/x/tags/list");
        assert_eq!(resp.status, 404);
        assert_eq!(
            registry.requests(),
            vec![("GET".to_string(), "/v2/acme/x/tags/list".to_string(), 404)]
        );
        registry.reset_requests();
        assert_eq!(registry.request_count(), 0);
        assert_eq!(
            skopeo_raw(&format!("{}/acme/x:nope", registry.host())),
            None
        );
        assert!(
            registry.request_count() >= 1,
            "skopeo's requests are logged"
        );
    }

    #[test]
    fn htpasswd_registry_requires_its_credentials() {
        let registry = Registry::with_htpasswd("alice", "s3cret");
        let anonymous = http_get(&registry.host(), "/v2/", None).expect("GET /v2/");
        assert_eq!(anonymous.status, 401);
        let wrong = http_get(&registry.host(), "/v2/", Some(("alice", "nope"))).expect("GET /v2/");
        assert_eq!(wrong.status, 401);
        assert_eq!(registry.get("/v2/").status, 200);
    }

    #[test]
    fn a_background_run_past_its_limit_is_killed_and_says_so() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; exec sleep 30"]);
        let mut running = Running::spawn(cmd);
        assert!(!running.finished());
        let started = std::time::Instant::now();
        let out = running
            .wait_at_most(std::time::Duration::from_millis(300))
            .expect_err("sleep 30 does not finish in 300 ms");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!((out.code, out.stdout.as_str()), (128 + 9, "started\n"));
    }

    #[test]
    fn bounded_run_reports_exit_codes_and_output() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = run(cmd);
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (3, "out\n", "err\n")
        );
    }
}
