//! The harness every integration test stands on.
//!
//! It exists so tests can state behaviour in a few lines while everything they
//! touch is real and independent of `eigenpub`'s own code:
//!
//! - [`Registry`]: a throw-away CNCF distribution (`docker-registry`) process on a
//!   free loopback port, optionally behind htpasswd basic auth, whose access log is
//!   parsed so tests can count the requests a command made.
//! - [`skopeo_raw`], [`http_get`] and [`sha256_digest`]: independent readers of what
//!   was pushed (skopeo for manifests, a hand-written HTTP/1.1 GET for blobs).
//! - [`Project`]: a temporary project directory (files, git history with fixed
//!   dates) in which the CLI runs.
//! - [`eigenpub`] and [`run`]: the built binary in a hermetic environment (no colour,
//!   no developer credentials, no `SOURCE_DATE_EPOCH`), every run bounded in time.

#![allow(dead_code)] // Parts of the harness are for tests that other topics will add.

use std::cell::Cell;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// Longest any single command (eigenpub, skopeo, git, htpasswd) may run.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a registry may take to answer `GET /v2/` after being spawned.
const REGISTRY_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Prefix of the repository the harness probes to flush the access log.
const SENTINEL_PREFIX: &str = "/v2/it-harness-sentinel/";

// ---------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------

/// A running `docker-registry serve` on `127.0.0.1:<free port>`, killed on drop.
pub struct Registry {
    dir: TempDir,
    child: Child,
    port: u16,
    log_path: PathBuf,
    /// Byte offset into the log file: `requests()` only reports what follows it.
    offset: Cell<u64>,
    sentinels: Cell<u32>,
    credentials: Option<(String, String)>,
}

/// One line of the registry's access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub status: u16,
}

impl Registry {
    /// An anonymous registry with an empty filesystem store and deletes enabled.
    pub fn start() -> Registry {
        Registry::launch(None)
    }

    /// A registry that requires HTTP basic auth (`htpasswd -Bbn user password`).
    pub fn with_htpasswd(user: &str, password: &str) -> Registry {
        Registry::launch(Some((user.to_string(), password.to_string())))
    }

    fn launch(credentials: Option<(String, String)>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("eigenpub-it-registry-")
            .tempdir()
            .expect("create registry temp dir");
        let auth_yaml = match &credentials {
            None => String::new(),
            Some((user, password)) => {
                let mut cmd = Command::new("htpasswd");
                cmd.args(["-Bbn", user, password]);
                let out = run(cmd);
                assert_eq!(out.code, 0, "htpasswd failed: {out}");
                let path = dir.path().join("htpasswd");
                fs::write(&path, out.stdout.trim_end().to_string() + "\n").expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    path.display()
                )
            }
        };
        let log_path = dir.path().join("registry.log");
        let config_path = dir.path().join("config.yml");
        let mut failures = Vec::new();
        // A port picked by binding :0 can be taken by someone else before the
        // registry binds it; a few attempts make that race harmless.
        for _attempt in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n\
                 {auth_yaml}",
                data = dir.path().join("data").display(),
            );
            fs::write(&config_path, config).expect("write registry config");
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .expect("open registry log");
            let start_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().expect("dup log fd")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawn docker-registry (apt-get install docker-registry)");
            let host = format!("127.0.0.1:{port}");
            let creds = credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
            match wait_ready(&mut child, &host, creds) {
                Ok(()) => {
                    let registry = Registry {
                        dir,
                        child,
                        port,
                        log_path,
                        offset: Cell::new(start_offset),
                        sentinels: Cell::new(0),
                        credentials,
                    };
                    registry.reset_requests();
                    return registry;
                }
                Err(why) => {
                    failures.push(format!("port {port}: {why}"));
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        panic!(
            "docker-registry did not become ready:\n{}\n--- registry log ---\n{log}",
            failures.join("\n")
        );
    }

    /// `127.0.0.1:PORT`, the registry part of a reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the registry keeps its files (`<dir>/data`), its config and its log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `(user, password)` given to [`Registry::with_htpasswd`], if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The whole log (registry messages and access log) for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Every request the registry served since start or the last
    /// [`Registry::reset_requests`], oldest first, as `(method, path, status)`.
    ///
    /// The access log line of a request is written when its handler returns, so
    /// this first makes a sentinel request and waits until it shows up in the log
    /// (the harness's own probes are left out of the result).
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        self.request_lines()
            .into_iter()
            .map(|r| (r.method, r.path, r.status))
            .collect()
    }

    /// Like [`Registry::requests`], as structs.
    pub fn request_lines(&self) -> Vec<Request> {
        self.flush_log();
        let bytes = fs::read(&self.log_path).expect("read registry log");
        let start = (self.offset.get() as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..])
            .lines()
            .filter_map(parse_access_log_line)
            .filter(|r| !r.path.starts_with(SENTINEL_PREFIX))
            .collect()
    }

    /// Number of requests served since start or the last reset.
    pub fn request_count(&self) -> usize {
        self.request_lines().len()
    }

    /// Forget the requests served so far: later calls to [`Registry::requests`]
    /// only see what comes after this point.
    pub fn reset_requests(&self) {
        self.flush_log();
        let len = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
        self.offset.set(len);
    }

    /// Make a request of our own and wait until its access-log line appears; every
    /// request that completed before it has been logged by then.
    fn flush_log(&self) {
        let n = self.sentinels.get();
        self.sentinels.set(n + 1);
        let path = format!("{SENTINEL_PREFIX}n{n}/tags/list");
        let _ = http_get(&self.host(), &path, self.credentials());
        let needle = format!(" {path} ");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = fs::read(&self.log_path).unwrap_or_default();
            if String::from_utf8_lossy(&log).contains(&needle) {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "sentinel request {path} never appeared in the registry access log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        // Lines of other connections finishing at the same instant.
        thread::sleep(Duration::from_millis(30));
    }

    /// GET `path` (e.g. `/v2/acme/x/tags/list`) with the registry's credentials.
    pub fn get(&self, path: &str) -> HttpResponse {
        http_get(&self.host(), path, self.credentials())
            .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", self.host()))
    }

    /// The bytes of blob `digest` in `repository` (path without host, e.g.
    /// `acme/price-oracle`), fetched with a plain HTTP GET. Panics unless 200.
    pub fn blob(&self, repository: &str, digest: &str) -> Vec<u8> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let resp = self.get(&path);
        assert_eq!(
            resp.status,
            200,
            "GET {path} answered {}: {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
        resp.body
    }

    /// `skopeo inspect --raw` of `repository:tag` on this registry (without the
    /// host, e.g. `acme/price-oracle:opset-0-v3`), with its credentials if any.
    pub fn skopeo_raw(&self, name_and_tag: &str) -> Option<Vec<u8>> {
        let reference = format!("{}/{name_and_tag}", self.host());
        match self.credentials() {
            None => skopeo_raw(&reference),
            Some((user, password)) => skopeo_raw_with_creds(&reference, user, password),
        }
    }
}

/// Poll `GET /v2/` until it answers 200, the process dies, or the time is up.
fn wait_ready(
    child: &mut Child,
    host: &str,
    credentials: Option<(&str, &str)>,
) -> Result<(), String> {
    let deadline = Instant::now() + REGISTRY_START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("docker-registry exited early with {status}"));
        }
        let last = match http_get(host, "/v2/", credentials) {
            Ok(resp) if resp.status == 200 => return Ok(()),
            Ok(resp) => format!("GET /v2/ answered {}", resp.status),
            Err(e) => format!("GET /v2/ failed: {e}"),
        };
        if Instant::now() > deadline {
            return Err(format!(
                "not ready within {REGISTRY_START_TIMEOUT:?} ({last})"
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parse one Apache combined-format line as distribution 2.8 writes it:
/// `127.0.0.1 - - [29/Nov/2026:18:20:01 +0000] "HEAD /v2/acme/x/manifests/t HTTP/1.1" 404 91 "" "ua"`.
/// Other lines (the registry's `time=... level=...` messages) give `None`.
pub fn parse_access_log_line(line: &str) -> Option<Request> {
    if line.starts_with("time=") {
        return None;
    }
    let open = line.find("] \"")?;
    let rest = &line[open + 3..];
    let close = rest.find('"')?;
    let mut request = rest[..close].split(' ');
    let method = request.next()?.to_string();
    let path = request.next()?.to_string();
    let protocol = request.next()?;
    if !protocol.starts_with("HTTP/") || !method.chars().all(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let status = rest[close + 1..].split_whitespace().next()?.parse().ok()?;
    Some(Request {
        method,
        path,
        status,
    })
}

/// A loopback port nothing listens on right now (bind `127.0.0.1:0`, read, drop).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------
// Independent readers: HTTP, skopeo, digests
// ---------------------------------------------------------------------------

/// A response read by [`http_request`].
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` over plain HTTP/1.1 with std's TcpStream.
pub fn http_get(
    host: &str,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> io::Result<HttpResponse> {
    http_request("GET", host, path, &[], credentials)
}

/// A minimal HTTP/1.1 client (`Connection: close`, Content-Length or chunked
/// bodies, no redirects), deliberately separate from whatever eigenpub uses.
pub fn http_request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    credentials: Option<(&str, &str)>,
) -> io::Result<HttpResponse> {
    let addr = host
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("cannot resolve {host}")))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: eigenpub-it-harness\r\nConnection: close\r\n"
    );
    if let Some((user, password)) = credentials {
        req.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64(format!("{user}:{password}").as_bytes())
        ));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;

    let head_end = find(&raw, b"\r\n\r\n")
        .ok_or_else(|| io::Error::other("response without end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[head_end + 4..].to_vec();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if method == "HEAD" || status == 204 || status == 304 {
        body.clear();
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body)?;
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if body.len() < len {
            return Err(io::Error::other(format!(
                "body truncated: {} of {len} bytes",
                body.len()
            )));
        }
        body.truncate(len);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or_else(|| io::Error::other("bad chunk"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::other(format!("bad chunk size {size_text:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err(io::Error::other("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

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
// Running commands
// ---------------------------------------------------------------------------

/// The built `eigenpub` binary, run in `project_dir` with no colour, an empty
/// `DOCKER_CONFIG` (the developer's credentials never leak in) and no
/// `SOURCE_DATE_EPOCH`.
pub fn eigenpub(project_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eigenpub"));
    cmd.current_dir(project_dir)
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

/// What a finished command did.
pub struct Output {
    /// Exit code; `128 + signal` when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panic (showing both streams) unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }

    /// Panic unless the command exited 0.
    #[track_caller]
    pub fn success(&self) -> &Self {
        self.expect_code(0)
    }

    /// Panic if the program reported a Rust panic.
    #[track_caller]
    pub fn no_panic(&self) -> &Self {
        assert!(
            !self.stderr.contains("panicked") && !self.stdout.contains("panicked"),
            "the program panicked\n{self}"
        );
        self
    }

    /// Lines of stdout, trimmed.
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().map(str::trim).collect()
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
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

/// Like [`Output`] with stdout kept as bytes.
pub struct BytesOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Run `cmd` to completion (stdin closed), killing it and panicking with a clear
/// message if it takes longer than [`RUN_TIMEOUT`].
pub fn run(cmd: Command) -> Output {
    let out = run_bytes(cmd);
    Output {
        code: out.code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: out.stderr,
    }
}

/// [`run`] returning stdout as bytes.
pub fn run_bytes(cmd: Command) -> BytesOutput {
    run_bytes_with_stdin(cmd, None)
}

/// Like [`run`], with `input` piped to stdin.
pub fn run_with_stdin(cmd: Command, input: &str) -> Output {
    let out = run_bytes_with_stdin(cmd, Some(input.as_bytes()));
    Output {
        code: out.code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: out.stderr,
    }
}

/// The one bounded runner: stdin closed, or fed `input`; killed after [`RUN_TIMEOUT`].
fn run_bytes_with_stdin(mut cmd: Command, input: Option<&[u8]>) -> BytesOutput {
    use std::os::unix::process::ExitStatusExt;

    let description = format!("{cmd:?}");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
    let stdout = read_in_background(child.stdout.take().expect("stdout pipe"));
    let stderr = read_in_background(child.stderr.take().expect("stderr pipe"));
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // The program may exit before reading (e.g. a usage error): ignore EPIPE.
        let _ = stdin.write_all(input);
    }
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let out = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
                let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
                panic!(
                    "{description} did not finish within {RUN_TIMEOUT:?} and was killed\n\
                     --- stdout ---\n{out}\n--- stderr ---\n{err}"
                );
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {description}: {e}"),
        }
    };
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    BytesOutput {
        code,
        stdout: stdout.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned(),
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
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
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
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
