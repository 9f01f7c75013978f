//! A registry, spoken to over the OCI distribution API with exactly the requests eigenpub
//! needs: one manifest HEAD per tag to plan; blob HEAD, upload and manifest PUT to apply.
//!
//! Why not oci-client's `Client` for the requests themselves: measured against
//! distribution 2.8 (see the README), it precedes every request with `GET /v2/` when no
//! token is cached (anonymous access to an open registry doubles the cost of a plan), turns
//! a HEAD for a missing tag into four requests, never retries, and drops the status and
//! `Retry-After` a retry decision needs. Here each request is sent once, authentication is
//! learned from the first 401 challenge and then cached (bearer tokens per repository, and
//! renewed when they expire), retries follow the table in [`super::retry`], and every
//! registry gets its own concurrency bound, pace and TLS roots.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::sync::{Mutex, Semaphore};

use super::retry::{self, Backoff, Verdict};
use crate::artifact::{self, Blob};
use crate::reference::is_loopback;
use crate::registry::credentials::{Credential, Secret};

/// Every manifest type a HEAD or GET accepts.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// What access a run needs: a plan only reads; an apply writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

/// How to reach one registry.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub plain_http: bool,
    pub ca_pem: Option<(String, Vec<u8>)>,
    pub max_concurrency: Option<usize>,
    pub requests_per_second: Option<f64>,
    pub access: Access,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub backoff: Backoff,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            plain_http: false,
            ca_pem: None,
            max_concurrency: None,
            requests_per_second: None,
            access: Access::Pull,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            backoff: Backoff::default(),
        }
    }
}

/// What went wrong talking to a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Unreachable,
    Tls,
    Auth,
    Denied,
    Rejected,
    Server,
    Protocol,
}

/// A registry failure: which registry, what happened, and what to do.
#[derive(Debug, Clone)]
pub struct RegistryError {
    pub registry: String,
    pub kind: ErrorKind,
    pub status: Option<u16>,
    pub message: String,
    pub help: String,
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "registry {}: {}", self.registry, self.message)
    }
}

impl std::error::Error for RegistryError {}

/// How a blob came to be in a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    /// It was already there.
    Present,
    /// Mounted from another repository of the same registry (no bytes sent).
    Mounted,
    /// Its bytes were uploaded.
    Uploaded,
}

/// A registry's answer, body read.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// How this registry wants to be authenticated, learned from its first challenge.
#[derive(Debug, Clone)]
enum Scheme {
    Unknown,
    /// Requests succeed without credentials (so far; a later 401 is still learned from).
    Open,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    expires: Instant,
    /// Renew this long before `expires` (five seconds, or half a short token's life).
    margin: Duration,
}

/// Counters a run reports (and the benchmark reads).
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
}

/// One registry host.
pub struct Registry {
    /// The host as the project names it (`ghcr.io`, `127.0.0.1:5000`, `docker.io`).
    pub host: String,
    base: String,
    http: reqwest::Client,
    credential: Option<Credential>,
    access: Access,
    scheme: Mutex<Scheme>,
    /// Held by the first request while the scheme is unknown, so that a burst of concurrent
    /// first requests costs one 401, not one each.
    learning: Mutex<()>,
    tokens: Mutex<HashMap<String, Token>>,
    /// One lock per scope, so concurrent requests fetch a scope's token once.
    token_locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    permits: Option<Semaphore>,
    pace: Mutex<Pace>,
    backoff: Backoff,
    pub stats: Arc<Stats>,
}

/// Spacing of requests: a fixed rate when configured, and a pause after a 429.
#[derive(Debug)]
struct Pace {
    /// The spacing in force now: the configured one, widened while the registry throttles.
    interval: Option<Duration>,
    /// The configured spacing (`requests-per-second`), which a calm registry returns to.
    configured: Option<Duration>,
    next: Instant,
    paused_until: Instant,
}

/// The widest spacing a throttling registry pushes requests to.
const MAX_INTERVAL: Duration = Duration::from_secs(1);

impl Registry {
    pub fn new(
        host: &str,
        options: RegistryOptions,
        credential: Option<Credential>,
        stats: Arc<Stats>,
    ) -> Result<Registry, RegistryError> {
        let api_host = if crate::registry::credentials::is_docker_hub(host) {
            "registry-1.docker.io"
        } else {
            host
        };
        let scheme = if options.plain_http { "http" } else { "https" };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .user_agent(concat!("eigenpub/", env!("CARGO_PKG_VERSION")));
        if let Some((name, pem)) = &options.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| RegistryError {
                registry: host.to_string(),
                kind: ErrorKind::Tls,
                status: None,
                message: format!("ca-file {name} holds no usable PEM certificate: {e}"),
                help:
                    "point ca-file at the PEM file of the CA that signed the registry's certificate"
                        .into(),
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| RegistryError {
            registry: host.to_string(),
            kind: ErrorKind::Tls,
            status: None,
            message: format!("cannot set up HTTPS: {e}"),
            help: String::new(),
        })?;
        let now = Instant::now();
        let configured_interval = options
            .requests_per_second
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(1.0 / r));
        Ok(Registry {
            host: host.to_string(),
            base: format!("{scheme}://{api_host}"),
            http,
            credential,
            access: options.access,
            scheme: Mutex::new(Scheme::Unknown),
            learning: Mutex::new(()),
            tokens: Mutex::new(HashMap::new()),
            token_locks: std::sync::Mutex::new(HashMap::new()),
            permits: options.max_concurrency.map(Semaphore::new),
            pace: Mutex::new(Pace {
                interval: configured_interval,
                configured: configured_interval,
                next: now,
                paused_until: now,
            }),
            backoff: options.backoff,
            stats,
        })
    }

    /// The repository path as the registry's API names it (Docker Hub's `library/`).
    fn api_path(&self, repository: &str) -> String {
        if crate::registry::credentials::is_docker_hub(&self.host) && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        }
    }

    fn url(&self, repository: &str, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, self.api_path(repository))
    }

    fn error(
        &self,
        kind: ErrorKind,
        status: Option<u16>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> RegistryError {
        RegistryError {
            registry: self.host.clone(),
            kind,
            status,
            message: message.into(),
            help: help.into(),
        }
    }

    /// True when the registry has asked for credentials (answered a 401) during this run.
    pub async fn challenged(&self) -> bool {
        matches!(
            *self.scheme.lock().await,
            Scheme::Basic | Scheme::Bearer { .. }
        )
    }

    /// Checks that the registry accepts this client's credentials (`GET /v2/`).
    pub async fn check_login(&self) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.base);
        let answer = self
            .send("", Method::GET, &url, HeaderMap::new(), None)
            .await?;
        self.expect(&answer, &[StatusCode::OK], "log in")
    }

    /// The digest `repository:tag` points at, or `None` when the tag does not exist.
    pub async fn manifest_digest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<String>, RegistryError> {
        let url = self.url(repository, &format!("manifests/{tag}"));
        let answer = self
            .send(repository, Method::HEAD, &url, accept_manifests(), None)
            .await?;
        match answer.status {
            StatusCode::OK => match header(&answer.headers, "docker-content-digest") {
                Some(d) => Ok(Some(d)),
                None => {
                    // Rare: a registry that sends no digest on HEAD. Hash the manifest.
                    let got = self
                        .send(repository, Method::GET, &url, accept_manifests(), None)
                        .await?;
                    self.expect(&got, &[StatusCode::OK], "read a manifest")?;
                    Ok(Some(artifact::sha256_digest(&got.body)))
                }
            },
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.unexpected(&answer, "check a tag")),
        }
    }

    /// The manifest bytes at a tag or digest, or `None` when absent.
    pub async fn fetch_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Bytes>, RegistryError> {
        let url = self.url(repository, &format!("manifests/{reference}"));
        let answer = self
            .send(repository, Method::GET, &url, accept_manifests(), None)
            .await?;
        match answer.status {
            StatusCode::OK => Ok(Some(answer.body)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.unexpected(&answer, "read a manifest")),
        }
    }

    /// A blob's bytes, or `None` when absent.
    pub async fn fetch_blob(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Option<Bytes>, RegistryError> {
        let url = self.url(repository, &format!("blobs/{digest}"));
        let answer = self
            .send(repository, Method::GET, &url, HeaderMap::new(), None)
            .await?;
        match answer.status {
            StatusCode::OK => Ok(Some(answer.body)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.unexpected(&answer, "read a blob")),
        }
    }

    /// True when the repository holds the blob.
    pub async fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool, RegistryError> {
        let url = self.url(repository, &format!("blobs/{digest}"));
        let answer = self
            .send(repository, Method::HEAD, &url, HeaderMap::new(), None)
            .await?;
        match answer.status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.unexpected(&answer, "check a blob")),
        }
    }

    /// Makes sure the repository holds a blob, in as few requests as the registry allows:
    /// `POST …/blobs/uploads/?mount=<digest>&from=<repository>` answers 201 when the blob
    /// is already there (or was mounted from `from`, another repository of this registry),
    /// else 202 with an upload session, which a `PUT` with the bytes completes. One request
    /// for a blob that is present, two for one that is not.
    pub async fn ensure_blob(
        &self,
        repository: &str,
        blob: &Blob,
        from: Option<&str>,
    ) -> Result<BlobState, RegistryError> {
        let mut result = self.try_ensure_blob(repository, blob, from).await;
        if let Err(first) = &result {
            // The upload may have landed even though its answer was lost (a dropped
            // connection, a retried PUT to a session the registry already closed): look.
            if self
                .blob_exists(repository, &blob.digest)
                .await
                .unwrap_or(false)
            {
                return Ok(BlobState::Uploaded);
            }
            // A lost session or a server failure: one fresh upload session.
            if matches!(first.kind, ErrorKind::Server | ErrorKind::Unreachable) {
                result = self.try_ensure_blob(repository, blob, from).await;
            }
        }
        result
    }

    async fn try_ensure_blob(
        &self,
        repository: &str,
        blob: &Blob,
        from: Option<&str>,
    ) -> Result<BlobState, RegistryError> {
        let source = self.api_path(from.unwrap_or(repository));
        let url = self.url(
            repository,
            &format!("blobs/uploads/?mount={}&from={}", blob.digest, source),
        );
        let answer = self
            .send(
                repository,
                Method::POST,
                &url,
                HeaderMap::new(),
                Some(Bytes::new()),
            )
            .await?;
        if answer.status == StatusCode::UNAUTHORIZED && from.is_some_and(|f| f != repository) {
            // Mounting from another repository needs pull access there, which a token
            // scoped to this repository lacks on some registries: ask this repository alone.
            return Box::pin(self.try_ensure_blob(repository, blob, None)).await;
        }
        if answer.status == StatusCode::CREATED {
            return Ok(if from.is_some_and(|f| f != repository) {
                BlobState::Mounted
            } else {
                BlobState::Present
            });
        }
        self.expect(&answer, &[StatusCode::ACCEPTED], "start a blob upload")?;
        let location = header(&answer.headers, "location").ok_or_else(|| {
            self.error(
                ErrorKind::Protocol,
                Some(202),
                "the registry started an upload but sent no Location",
                "report this registry's behaviour",
            )
        })?;
        // `Location` may be absolute or relative (to the request URL).
        let put = reqwest::Url::parse(&url)
            .and_then(|u| u.join(&location))
            .map_err(|e| {
                self.error(
                    ErrorKind::Protocol,
                    Some(202),
                    format!(
                        "the registry sent an upload Location that is not a URL ({location}): {e}"
                    ),
                    "report this registry's behaviour",
                )
            })?;
        // The digest as clients write it (`sha256:…`, colon unescaped).
        let mut put = put.to_string();
        put.push(if put.contains('?') { '&' } else { '?' });
        put.push_str("digest=");
        put.push_str(&blob.digest);
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/octet-stream"),
        );
        let answer = self
            .send(
                repository,
                Method::PUT,
                &put,
                headers,
                Some(blob.bytes.clone()),
            )
            .await?;
        self.expect(
            &answer,
            &[StatusCode::CREATED, StatusCode::NO_CONTENT],
            "upload a blob",
        )?;
        Ok(BlobState::Uploaded)
    }

    /// Pushes a manifest's exact bytes under a tag; returns the digest the registry reports.
    pub async fn push_manifest(
        &self,
        repository: &str,
        tag: &str,
        manifest: &Blob,
    ) -> Result<String, RegistryError> {
        let url = self.url(repository, &format!("manifests/{tag}"));
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static(manifest.media_type),
        );
        let body = manifest.bytes.clone();
        let answer = self
            .send(repository, Method::PUT, &url, headers, Some(body))
            .await?;
        self.expect(
            &answer,
            &[StatusCode::CREATED, StatusCode::OK],
            "push a manifest",
        )?;
        Ok(header(&answer.headers, "docker-content-digest")
            .unwrap_or_else(|| manifest.digest.clone()))
    }

    fn expect(&self, answer: &Answer, ok: &[StatusCode], what: &str) -> Result<(), RegistryError> {
        if ok.contains(&answer.status) {
            Ok(())
        } else {
            Err(self.unexpected(answer, what))
        }
    }

    /// Turns an unexpected answer into an error that says what to do.
    fn unexpected(&self, answer: &Answer, what: &str) -> RegistryError {
        let status = answer.status.as_u16();
        let (codes, detail) = error_body(&answer.body);
        let detail = if detail.is_empty() {
            answer.status.canonical_reason().unwrap_or("").to_string()
        } else {
            detail
        };
        let code = codes.first().cloned().unwrap_or_default();
        let (kind, help) = match status {
            _ if code == "BLOB_UPLOAD_UNKNOWN" => (ErrorKind::Server, "the registry lost the upload session; run apply again".to_string()),
            401 => (ErrorKind::Auth, self.login_help()),
            403 => (ErrorKind::Denied, format!(
                "{} may not write to this repository; check its permissions (for GHCR, the token needs write:packages and the package must grant the repository access)",
                self.who()
            )),
            404 => (ErrorKind::Rejected, "check the repository name; some registries need the repository created first".to_string()),
            400..=499 => (ErrorKind::Rejected, "the registry refused the request as sent; this is likely a bug in eigenpub or an unsupported registry: please report it with -v output".to_string()),
            _ => (ErrorKind::Server, "the registry failed; try again later".to_string()),
        };
        let code = if code.is_empty() {
            String::new()
        } else {
            format!(" {code}")
        };
        self.error(
            kind,
            Some(status),
            format!("could not {what}: HTTP {status}{code}: {detail}"),
            help,
        )
    }

    fn who(&self) -> String {
        match &self.credential {
            Some(c) => format!("the credentials from {}", c.origin),
            None => "anonymous access (no credentials found)".to_string(),
        }
    }

    fn login_help(&self) -> String {
        let env = crate::registry::credentials::env_prefix(&self.host);
        match &self.credential {
            Some(c) => format!(
                "the registry refused the credentials from {}; log in again with `docker login {host}` or `eigenpub login {host}`, or set {env}_USERNAME and {env}_PASSWORD",
                c.origin,
                host = self.host
            ),
            None => format!(
                "no credentials were found for {host}; log in with `docker login {host}` or `eigenpub login {host} --username U --password-stdin`, or set {env}_USERNAME and {env}_PASSWORD",
                host = self.host
            ),
        }
    }

    /// Sends one request, authenticating and retrying as needed.
    pub async fn send(
        &self,
        repository: &str,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Answer, RegistryError> {
        let scope = if repository.is_empty() {
            String::new() // the API root (a login check): no repository scope
        } else {
            format!(
                "repository:{}:{}",
                self.api_path(repository),
                match self.access {
                    Access::Pull => "pull",
                    Access::Push => "pull,push",
                }
            )
        };
        let mut attempt = 0u32;
        let mut authenticated_retry = false;
        let mut learning = None;
        if matches!(*self.scheme.lock().await, Scheme::Unknown) {
            let guard = self.learning.lock().await;
            if matches!(*self.scheme.lock().await, Scheme::Unknown) {
                learning = Some(guard);
            }
        }
        loop {
            let _permit = match &self.permits {
                Some(s) => Some(s.acquire().await.expect("the semaphore is never closed")),
                None => None,
            };
            self.wait_for_turn().await;
            let mut request = self
                .http
                .request(method.clone(), url)
                .headers(headers.clone());
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            // Credentials and tokens go only to the registry itself, never to another host
            // an upload `Location` may name.
            if same_origin(url, &self.base) {
                request = self.authorize(request, &scope).await?;
            }
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let result = request.send().await;
            let response = match result {
                Ok(r) => r,
                Err(e) => {
                    let (kind, message, help) = self.transport_error(&e);
                    if kind == ErrorKind::Unreachable && attempt + 1 < self.backoff.attempts.min(3)
                    {
                        drop(_permit);
                        self.pause(attempt, None, false).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(self.error(kind, None, message, help));
                }
            };
            let status = response.status();
            let response_headers = response.headers().clone();
            let body_bytes = match response.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    if attempt + 1 < self.backoff.attempts {
                        drop(_permit);
                        self.pause(attempt, None, false).await;
                        attempt += 1;
                        continue;
                    }
                    let (kind, message, help) = self.transport_error(&e);
                    return Err(self.error(kind, Some(status.as_u16()), message, help));
                }
            };
            let answer = Answer {
                status,
                headers: response_headers,
                body: body_bytes,
            };
            drop(_permit);
            if status == StatusCode::UNAUTHORIZED
                && !authenticated_retry
                && same_origin(url, &self.base)
            {
                authenticated_retry = true;
                let learned = self.learn_challenge(&answer, &scope).await;
                learning = None;
                if learned? {
                    continue;
                }
                return Err(self.unexpected(&answer, "authenticate"));
            }
            if learning.take().is_some() && status != StatusCode::UNAUTHORIZED {
                let mut scheme = self.scheme.lock().await;
                if matches!(*scheme, Scheme::Unknown) {
                    *scheme = Scheme::Open;
                }
            }
            if status.is_success() || status.is_redirection() || status == StatusCode::NOT_FOUND {
                self.calm().await;
                return Ok(answer);
            }
            let (codes, message) = error_body(&answer.body);
            let verdict = retry::classify(status.as_u16(), &codes, &message);
            if verdict == Verdict::Fail || attempt + 1 >= self.backoff.attempts {
                if verdict != Verdict::Fail {
                    let mut e = self.unexpected(&answer, "complete a request");
                    e.message = format!("{} (after {} attempts)", e.message, attempt + 1);
                    return Err(e);
                }
                return Ok(answer);
            }
            let retry_after = header(&answer.headers, "retry-after")
                .and_then(|v| retry::parse_retry_after(&v, SystemTime::now()));
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            self.pause(attempt, retry_after, verdict == Verdict::Throttled)
                .await;
            attempt += 1;
        }
    }

    /// Waits for this registry's pace: a configured rate, and any pause after a 429.
    async fn wait_for_turn(&self) {
        let wait = {
            let mut pace = self.pace.lock().await;
            let now = Instant::now();
            let mut at = now.max(pace.paused_until);
            if let Some(interval) = pace.interval {
                at = at.max(pace.next);
                pace.next = at + interval;
            }
            at.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// After a success, a spacing widened by throttling narrows back towards the configured one.
    async fn calm(&self) {
        let mut pace = self.pace.lock().await;
        if pace.interval == pace.configured {
            return;
        }
        let narrower = pace.interval.map(|i| i.mul_f64(0.9));
        pace.interval = match (narrower, pace.configured) {
            (Some(n), Some(c)) if n <= c => Some(c),
            (Some(n), None) if n < Duration::from_millis(5) => None,
            (n, _) => n,
        };
    }

    /// Sleeps before a retry; a throttled registry is paused for every request to it.
    async fn pause(&self, attempt: u32, retry_after: Option<Duration>, throttled: bool) {
        let delay = self.backoff.delay(attempt, retry_after, retry::jitter());
        if throttled {
            let mut pace = self.pace.lock().await;
            let now = Instant::now();
            // One burst of 429s (many requests refused at once) counts once: widen the
            // spacing only when no pause is already in force, and never beyond a second.
            if now >= pace.paused_until {
                pace.interval = Some(
                    (pace.interval.unwrap_or(Duration::from_millis(25)) * 2).min(MAX_INTERVAL),
                );
            }
            let until = now + delay;
            if until > pace.paused_until {
                pace.paused_until = until;
            }
        }
        tokio::time::sleep(delay).await;
    }

    fn transport_error(&self, e: &reqwest::Error) -> (ErrorKind, String, String) {
        let chain = error_chain(e);
        let lower = chain.to_ascii_lowercase();
        if lower.contains("certificate")
            || lower.contains("unknownissuer")
            || lower.contains("invalid peer")
        {
            return (
                ErrorKind::Tls,
                format!("the registry's TLS certificate is not trusted: {chain}"),
                format!(
                    "if it is signed by a private CA, add its PEM to the project: [registries.\"{}\"] ca-file = \"ca.pem\"",
                    self.host
                ),
            );
        }
        if e.is_timeout() {
            return (
                ErrorKind::Unreachable,
                format!("timed out: {chain}"),
                "check the network and the registry's health, then run again; nothing was left half-done".into(),
            );
        }
        (
            ErrorKind::Unreachable,
            format!("cannot reach {}: {chain}", self.base),
            if self.base.starts_with("https://") {
                format!(
                    "check that {} is the right host and is up; for a registry without TLS set [registries.\"{}\"] plain-http = true",
                    self.host, self.host
                )
            } else {
                format!(
                    "check that {} is the right host and port, and that the registry is running",
                    self.host
                )
            },
        )
    }

    /// Adds the Authorization header this registry wants, if any.
    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        scope: &str,
    ) -> Result<reqwest::RequestBuilder, RegistryError> {
        let scheme = self.scheme.lock().await.clone();
        match scheme {
            Scheme::Unknown | Scheme::Open => Ok(request),
            Scheme::Basic => match &self.credential {
                Some(Credential {
                    secret: Secret::Basic { username, password },
                    ..
                }) => {
                    self.check_transport_for_credentials()?;
                    Ok(request.basic_auth(username, Some(password)))
                }
                _ => Ok(request),
            },
            Scheme::Bearer { .. } => {
                // One token fetch per scope, however many requests want it at once; a
                // token about to expire is renewed before it is used.
                let lock = self
                    .token_locks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(scope.to_string())
                    .or_default()
                    .clone();
                if self.credential.is_some() {
                    self.check_transport_for_credentials()?;
                }
                let _held = lock.lock().await;
                let token = self.tokens.lock().await.get(scope).cloned();
                match token {
                    Some(t) if t.expires > Instant::now() + t.margin => {
                        Ok(request.bearer_auth(t.value))
                    }
                    _ => {
                        let fresh = self.fetch_token(scope).await?;
                        Ok(request.bearer_auth(fresh))
                    }
                }
            }
        }
    }

    /// Refuses to send credentials in clear text to anything but this machine.
    fn check_transport_for_credentials(&self) -> Result<(), RegistryError> {
        if self.base.starts_with("http://") && !is_loopback(&self.host) && self.credential.is_some()
        {
            return Err(self.error(
                ErrorKind::Auth,
                None,
                "refusing to send credentials over plain HTTP to a host that is not this machine",
                format!("serve the registry over HTTPS (with ca-file for a private CA), or remove plain-http for {}", self.host),
            ));
        }
        Ok(())
    }

    /// Reads a 401's challenge; returns true when a retry with credentials makes sense.
    async fn learn_challenge(&self, answer: &Answer, scope: &str) -> Result<bool, RegistryError> {
        let Some(challenge) = header(&answer.headers, "www-authenticate") else {
            return Ok(false);
        };
        let (kind, params) = parse_challenge(&challenge);
        if kind.eq_ignore_ascii_case("basic") {
            *self.scheme.lock().await = Scheme::Basic;
            return Ok(matches!(
                self.credential,
                Some(Credential {
                    secret: Secret::Basic { .. },
                    ..
                })
            ));
        }
        if kind.eq_ignore_ascii_case("bearer") {
            let Some(realm) = params.get("realm").cloned() else {
                return Ok(false);
            };
            *self.scheme.lock().await = Scheme::Bearer {
                realm,
                service: params.get("service").cloned(),
            };
            self.fetch_token(scope).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Gets a bearer token for a scope from the realm the registry named, and caches it.
    async fn fetch_token(&self, scope: &str) -> Result<String, RegistryError> {
        let Scheme::Bearer { realm, service } = self.scheme.lock().await.clone() else {
            return Err(self.error(ErrorKind::Protocol, None, "no token service known", ""));
        };
        let mut query: Vec<(&str, &str)> = Vec::new();
        if !scope.is_empty() {
            query.push(("scope", scope));
        }
        if let Some(s) = &service {
            query.push(("service", s));
        }
        let request = match &self.credential {
            Some(Credential {
                secret: Secret::IdentityToken(token),
                ..
            }) => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", "eigenpub"),
                ];
                if !scope.is_empty() {
                    form.push(("scope", scope));
                }
                if let Some(s) = &service {
                    form.push(("service", s));
                }
                self.http.post(&realm).form(&form)
            }
            Some(Credential {
                secret: Secret::Basic { username, password },
                ..
            }) => self
                .http
                .get(&realm)
                .query(&query)
                .basic_auth(username, Some(password)),
            None => self.http.get(&realm).query(&query),
        };
        if realm.starts_with("http://")
            && self.credential.is_some()
            && !is_loopback(host_of(&realm))
        {
            return Err(self.error(
                ErrorKind::Auth,
                None,
                format!("the registry's token service {realm} is plain HTTP; refusing to send credentials there"),
                "use a registry whose token service is served over HTTPS",
            ));
        }
        // The token service gets the same retries as the registry; only a refusal (or
        // another client error) is final.
        let mut attempt = 0u32;
        let (status, body) = loop {
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            // Token requests carry a query or a form, never a stream, so they always clone.
            let Some(attempt_request) = request.try_clone() else {
                return Err(self.error(
                    ErrorKind::Protocol,
                    None,
                    "cannot repeat a token request",
                    "",
                ));
            };
            let sent = attempt_request.send().await;
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    if attempt + 1 < self.backoff.attempts.min(3) {
                        self.pause(attempt, None, false).await;
                        attempt += 1;
                        continue;
                    }
                    let (kind, message, help) = self.transport_error(&e);
                    return Err(self.error(kind, None, format!("token service: {message}"), help));
                }
            };
            let status = response.status();
            let retry_after = header(response.headers(), "retry-after")
                .and_then(|v| retry::parse_retry_after(&v, SystemTime::now()));
            let body = response.bytes().await.unwrap_or_default();
            let (codes, message) = error_body(&body);
            let verdict = if status.is_success() {
                Verdict::Fail
            } else {
                retry::classify(status.as_u16(), &codes, &message)
            };
            if verdict != Verdict::Fail && attempt + 1 < self.backoff.attempts {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                self.pause(attempt, retry_after, verdict == Verdict::Throttled)
                    .await;
                attempt += 1;
                continue;
            }
            break (status, body);
        };
        if !status.is_success() {
            let (_, detail) = error_body(&body);
            let (kind, help) = match status.as_u16() {
                401 | 403 => (ErrorKind::Auth, self.login_help()),
                _ => (
                    ErrorKind::Server,
                    "the registry's token service failed; try again later".to_string(),
                ),
            };
            return Err(self.error(
                kind,
                Some(status.as_u16()),
                format!(
                    "the token service refused {}: HTTP {} {}",
                    self.who(),
                    status.as_u16(),
                    detail
                ),
                help,
            ));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let parsed: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            self.error(
                ErrorKind::Protocol,
                Some(status.as_u16()),
                format!("the token service answered something that is not a token: {e}"),
                "",
            )
        })?;
        let value = parsed.token.or(parsed.access_token).ok_or_else(|| {
            self.error(
                ErrorKind::Protocol,
                Some(status.as_u16()),
                "the token service answered without a token",
                "",
            )
        })?;
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(60).clamp(1, 86_400));
        let expires = Instant::now() + lifetime;
        let margin = Duration::from_secs(5).min(lifetime / 2);
        self.tokens.lock().await.insert(
            scope.to_string(),
            Token {
                value: value.clone(),
                expires,
                margin,
            },
        );
        Ok(value)
    }
}

/// True when `url` is on the registry's own scheme, host and port.
fn same_origin(url: &str, base: &str) -> bool {
    let (Ok(a), Ok(b)) = (reqwest::Url::parse(url), reqwest::Url::parse(base)) else {
        return false;
    };
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

fn accept_manifests() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("accept", HeaderValue::from_static(MANIFEST_ACCEPT));
    h
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_string)
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// The registry's error codes and a readable message from a JSON error body.
pub fn error_body(body: &[u8]) -> (Vec<String>, String) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(body) {
        let codes = envelope
            .errors
            .iter()
            .filter_map(|e| e.code.clone())
            .collect();
        let messages: Vec<String> = envelope
            .errors
            .iter()
            .filter_map(|e| e.message.clone())
            .collect();
        return (codes, messages.join("; "));
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    (Vec::new(), text.chars().take(300).collect())
}

/// Parses `Bearer realm="…",service="…",scope="…"`.
fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (kind, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_string());
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    (kind.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_stay_on_the_registry() {
        assert!(same_origin(
            "https://ghcr.io/v2/a/blobs/uploads/x",
            "https://ghcr.io"
        ));
        assert!(!same_origin(
            "https://ghcr.io.evil.example/v2/",
            "https://ghcr.io"
        ));
        assert!(!same_origin("https://uploads.example/x", "https://ghcr.io"));
        assert!(!same_origin("http://ghcr.io/v2/", "https://ghcr.io"));
        assert!(same_origin(
            "http://LOCALHOST:5000/v2/x",
            "http://localhost:5000"
        ));
        assert!(same_origin("https://ghcr.io:443/v2/x", "https://ghcr.io"));
    }

    #[test]
    fn challenges() {
        let (kind, p) = parse_challenge(
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull""#,
        );
        assert_eq!(kind, "Bearer");
        assert_eq!(p["realm"], "https://ghcr.io/token");
        assert_eq!(p["service"], "ghcr.io");
        assert_eq!(p["scope"], "repository:a/b:pull");
        let (kind, p) = parse_challenge(r#"Basic realm="test""#);
        assert_eq!(kind, "Basic");
        assert_eq!(p["realm"], "test");
    }

    #[test]
    fn error_bodies() {
        let (codes, msg) = error_body(br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#);
        assert_eq!(codes, ["DIGEST_INVALID"]);
        assert!(msg.contains("did not match"));
        let (codes, msg) = error_body(b"plain text");
        assert!(codes.is_empty());
        assert_eq!(msg, "plain text");
    }
}
