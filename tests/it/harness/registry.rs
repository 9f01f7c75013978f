//! The registry process every publishing test talks to.
//!
//! It exists so that tests publish to the real thing: a throw-away CNCF
//! distribution (`docker-registry`) process on a free port, anonymous, behind
//! htpasswd basic auth or behind a token service ([`TokenServer`]), over plain
//! HTTP or over TLS with a private CA ([`Pki`]). Its access log is parsed so tests
//! can count and inspect the requests a command made.

use std::cell::Cell;
use std::fs::{self, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::http::{HttpResponse, http_get};
use super::pki::Pki;
use super::process::run;
use super::secrets::Secret;
use super::token_server::TokenServer;
use super::{skopeo_raw, skopeo_raw_with_creds};

/// `127.0.0.1`, where registries listen unless a test needs another address.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Longest a registry may take to listen after being spawned.
const REGISTRY_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Prefix of the repository the harness probes to flush the access log.
const SENTINEL_PREFIX: &str = "/v2/it-harness-sentinel/";

/// How a [`Registry`] wants clients to authenticate.
pub enum Auth<'a> {
    Anonymous,
    /// HTTP basic auth against an htpasswd file with this one user.
    Htpasswd(&'a Secret),
    /// Bearer tokens from this token service (distribution's `auth.token`).
    Token(&'a TokenServer),
}

/// A running `docker-registry serve`, with an empty filesystem store and deletes
/// enabled, killed on drop.
pub struct Registry {
    dir: TempDir,
    child: Child,
    addr: String,
    port: u16,
    tls: bool,
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
    /// An anonymous registry on loopback over plain HTTP.
    pub fn start() -> Registry {
        Registry::serve(LOOPBACK, None, Auth::Anonymous)
    }

    /// A registry on loopback that requires HTTP basic auth (`htpasswd -Bbn user password`).
    pub fn with_htpasswd(user: &str, password: &str) -> Registry {
        let secret = Secret {
            user: user.to_string(),
            password: password.to_string(),
        };
        Registry::serve(LOOPBACK, None, Auth::Htpasswd(&secret))
    }

    /// A registry on `ip:<free port>`, over TLS with `pki`'s server certificate if
    /// given, authenticating as `auth` says.
    pub fn serve(ip: IpAddr, tls: Option<&Pki>, auth: Auth<'_>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("eigenpub-it-registry-")
            .tempdir()
            .expect("create registry temp dir");
        let mut credentials = None;
        let auth_yaml = match auth {
            Auth::Anonymous => String::new(),
            Auth::Token(server) => server.registry_yaml(),
            Auth::Htpasswd(secret) => {
                let mut cmd = Command::new("htpasswd");
                cmd.args(["-Bbn", &secret.user, &secret.password]);
                let out = run(cmd);
                assert_eq!(out.code, 0, "htpasswd failed: {out}");
                let path = dir.path().join("htpasswd");
                fs::write(&path, out.stdout.trim_end().to_string() + "\n").expect("write htpasswd");
                credentials = Some((secret.user.clone(), secret.password.clone()));
                format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    path.display()
                )
            }
        };
        let tls_yaml = match tls.map(Pki::server) {
            None => String::new(),
            Some((cert, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
        };
        let log_path = dir.path().join("registry.log");
        let config_path = dir.path().join("config.yml");
        let mut failures = Vec::new();
        // A port picked by binding :0 can be taken by someone else before the
        // registry binds it; a few attempts make that race harmless.
        for _attempt in 0..5 {
            let port = TcpListener::bind((ip, 0))
                .and_then(|l| l.local_addr())
                .expect("bind a free port")
                .port();
            let addr = match ip {
                IpAddr::V4(_) => format!("{ip}:{port}"),
                IpAddr::V6(_) => format!("[{ip}]:{port}"),
            };
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n{tls_yaml}\
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
            match wait_listening(&mut child, &addr, &log_path, start_offset) {
                Ok(()) => {
                    let registry = Registry {
                        dir,
                        child,
                        addr,
                        port,
                        tls: tls.is_some(),
                        log_path,
                        offset: Cell::new(start_offset),
                        sentinels: Cell::new(0),
                        credentials,
                    };
                    if !registry.tls {
                        // Also proves that it serves HTTP: the sentinel must be logged.
                        registry.reset_requests();
                    }
                    return registry;
                }
                Err(why) => {
                    failures.push(format!("{addr}: {why}"));
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

    /// `IP:PORT` (`127.0.0.1:PORT` unless started on another address), the
    /// registry part of a reference.
    pub fn host(&self) -> String {
        self.addr.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the registry keeps its files (`<dir>/data`), its config and its log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `(user, password)` of an htpasswd registry, if any.
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

    /// The log lines up to and including the first one containing `marker`,
    /// waiting (up to 10 s) for it: a request with `marker` in its path made after
    /// everything else has been answered flushes the log.
    pub fn log_through(&self, marker: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if let Some(at) = log.find(marker) {
                let end = log[at..].find('\n').map_or(log.len(), |n| at + n);
                return log[..end].lines().map(String::from).collect();
            }
            assert!(
                Instant::now() < deadline,
                "{marker} never appeared in the registry's access log:\n{log}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Wait until distribution logs "listening on <addr>" (after `offset` in the log;
/// it exits if it cannot bind) and a TCP connection to it succeeds; or the process
/// dies, or the time is up.
fn wait_listening(
    child: &mut Child,
    addr: &str,
    log_path: &Path,
    offset: u64,
) -> Result<(), String> {
    let deadline = Instant::now() + REGISTRY_START_TIMEOUT;
    let needle = format!("listening on {addr}");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("docker-registry exited early with {status}"));
        }
        let log = fs::read(log_path).unwrap_or_default();
        let fresh = String::from_utf8_lossy(log.get(offset as usize..).unwrap_or_default());
        if fresh.contains(&needle) && TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not listening within {REGISTRY_START_TIMEOUT:?}:\n{fresh}"
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

impl Registry {
    /// Stops the registry process: its port then refuses connections, as a registry
    /// that is down does. [`Registry::restart`] brings it back.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a stopped registry again on the same address, with the same storage and
    /// settings (panics if it does not come up).
    pub fn restart(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open registry log");
        let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        self.child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dup log fd")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn docker-registry");
        if let Err(why) = wait_listening(&mut self.child, &self.addr, &self.log_path, offset) {
            panic!("docker-registry did not come back on {}: {why}", self.addr);
        }
        if !self.tls {
            self.reset_requests();
        }
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
