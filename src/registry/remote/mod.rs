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
//!
//! The client in layers: [`endpoints`] (the calls), [`transport`] (sending, one retry
//! driver), [`auth`] (challenges, tokens, where credentials may go), [`pacing`] (rate and
//! concurrency), [`error`] (kinds, codes, help texts). This file holds the facade.

mod auth;
mod body;
mod endpoints;
mod error;
mod pacing;
mod proxy;
mod refusal;
mod routing;
mod transport;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::retry::Backoff;
use crate::registry::credentials::Credential;
pub use error::{ErrorKind, RegistryError};

/// Requests in flight to one registry at most, unless `[registries."host"]
/// max-concurrency` says otherwise: the window adapts up to it ([`pacing`]), and a run
/// works on at most `concurrency` artifacts at once, which bounds it too. Twice the
/// default `concurrency` (64): an apply uploads an artifact's config and layer at once, so
/// 64 artifacts keep up to 128 requests in flight to a registry far away.
pub const MAX_CONCURRENCY: usize = 128;

/// The per-request deadline unless `[registries."host"] timeout` says otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

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
    /// The whole of one request (connect, first byte, whole body) must fit in this: the
    /// only read timeout (none of reqwest's, which would race it and count as a broken
    /// connection).
    pub deadline: Duration,
    pub backoff: Backoff,
    /// Where "waiting for H: no answer for N s" goes (standard error unless set).
    pub notices: Notices,
}

/// Lines a registry prints while a run waits on it.
#[derive(Clone)]
pub struct Notices(Arc<dyn Fn(&str) + Send + Sync>);

impl Notices {
    pub fn new(print: impl Fn(&str) + Send + Sync + 'static) -> Notices {
        Notices(Arc::new(print))
    }

    fn say(&self, line: &str) {
        (self.0)(line);
    }
}

impl Default for Notices {
    fn default() -> Self {
        Notices::new(|line| eprintln!("{line}"))
    }
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notices")
    }
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
            deadline: DEFAULT_DEADLINE,
            backoff: Backoff::default(),
            notices: Notices::default(),
        }
    }
}

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
    /// Where the answer came from after redirects (`None` in tests).
    pub url: Option<reqwest::Url>,
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
    /// The same, following no redirects: for token requests only.
    token_http: reqwest::Client,
    credential: Option<Credential>,
    access: Access,
    auth: auth::AuthState,
    pacing: pacing::Pacing,
    backoff: Backoff,
    /// The per-request deadline.
    deadline: Duration,
    /// Set when the registry could not be connected to, or was given up after refusing
    /// every request for long: every later request fails at once with this error (one
    /// failure per registry, not one per artifact).
    down: std::sync::OnceLock<RegistryError>,
    /// Set once the registry ignored (202) or refused (401) a cross-repository mount: no
    /// more are tried this run.
    mounts_refused: std::sync::atomic::AtomicBool,
    /// Per repository, on registries that need repositories created first: whether it
    /// was found missing (asked once per run).
    repositories: std::sync::Mutex<RepositoryChecks>,
    /// Things worth telling the user that are not failures, each once.
    notes: std::sync::Mutex<Vec<String>>,
    /// When the registry last answered anything, for giving a silent one up.
    hearing: transport::Hearing,
    /// How it has been answering, for the pause before a retry.
    health: std::sync::Mutex<super::retry::Health>,
    notices: Notices,
    pub stats: Arc<Stats>,
}

/// One check per repository: `Some(error)` when it does not exist.
type RepositoryChecks =
    std::collections::HashMap<String, Arc<tokio::sync::OnceCell<Option<RegistryError>>>>;

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
        let ca = match &options.ca_pem {
            Some((name, pem)) => {
                Some(reqwest::Certificate::from_pem_bundle(pem).map_err(|e| RegistryError {
                    registry: host.to_string(),
                    kind: ErrorKind::Tls,
                    status: None,
                    message: format!("ca-file {name} holds no usable PEM certificate: {e}"),
                    help: "point ca-file at the PEM file of the CA that signed the registry's certificate"
                        .into(),
                })?)
            }
            None => None,
        };
        // Proxies from the environment, never for this machine (see `proxy`).
        let proxies = proxy::from_env().map_err(|message| RegistryError {
            registry: host.to_string(),
            kind: ErrorKind::Unreachable,
            status: None,
            message,
            help: "fix the proxy variable, or unset it to connect directly".into(),
        })?;
        let client = |redirect: reqwest::redirect::Policy| {
            let mut builder = reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(options.connect_timeout.min(options.deadline))
                .user_agent(concat!("eigenpub/", env!("CARGO_PKG_VERSION")))
                // A redirect target (a CDN) learns nothing of where it came from: no
                // Referer, which would carry the registry URL and any signed query.
                .referer(false)
                .redirect(redirect);
            if let Some(certs) = &ca {
                builder = builder.tls_certs_merge(certs.clone());
            }
            for proxy in &proxies {
                builder = builder.proxy(proxy.clone());
            }
            builder.build().map_err(|e| RegistryError {
                registry: host.to_string(),
                kind: ErrorKind::Tls,
                status: None,
                message: format!("cannot set up HTTPS: {e}"),
                help: String::new(),
            })
        };
        // Redirects as the HTTP client's default (ten at most), but a registry that is not
        // on this machine sends eigenpub to nothing on it (see `routing::may_redirect`):
        // such a redirect is not followed, and its answer is the error.
        let redirecting_host = host.to_string();
        let http = client(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                attempt.error("too many redirects")
            } else if routing::may_redirect(&redirecting_host, attempt.url()) {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))?;
        // Token requests carry credentials (Basic authentication, or a refresh token in
        // their body, which a 307/308 would carry to wherever it points), and their answer
        // is a credential: the token service gets no redirects at all, whatever the
        // credential (tests/it/redirects.rs).
        let token_http = client(reqwest::redirect::Policy::none())?;
        Ok(Registry {
            host: host.to_string(),
            base: format!("{scheme}://{api_host}"),
            http,
            token_http,
            credential,
            access: options.access,
            auth: auth::AuthState::new(),
            pacing: pacing::Pacing::new(
                options.max_concurrency.unwrap_or(MAX_CONCURRENCY),
                options.requests_per_second,
            ),
            backoff: options.backoff,
            deadline: options.deadline,
            down: std::sync::OnceLock::new(),
            mounts_refused: Default::default(),
            repositories: Default::default(),
            notes: Default::default(),
            hearing: transport::Hearing::default(),
            health: Default::default(),
            notices: options.notices,
            stats,
        })
    }

    /// Warnings this registry gave cause for during the run, each once (Artifactory's 403
    /// for a missing tag taken as absent).
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn note_once(&self, note: String) {
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        // One note per registry for the same reason, however many tags it hit.
        let key: String = note.split(" tag ").next().unwrap_or(&note).to_string();
        if !notes.iter().any(|n| n.starts_with(&key)) {
            notes.push(note);
        }
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

    /// Where a repository's manifests and blobs are read from, as the registry's own URL
    /// (`https://ghcr.io/v2/acme/oracle/`): the source the plan cache keys its entries by,
    /// so that bytes one repository served are only used again for that repository.
    pub fn repository_url(&self, repository: &str) -> String {
        self.url(repository, "")
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

    /// Turns an unexpected answer into an error that says what to do; `what` says what
    /// was being done ("check a tag", "push a manifest"): reads are worded as reads.
    fn unexpected(&self, answer: &Answer, what: &str) -> RegistryError {
        error::unexpected(&self.context(what), answer, what)
    }

    /// What [`error::unexpected`] needs to know about this registry and the request.
    fn context(&self, what: &str) -> error::Context<'_> {
        let read = self.access == Access::Pull
            || ["check ", "read ", "log in"]
                .iter()
                .any(|verb| what.starts_with(verb));
        error::Context {
            host: &self.host,
            credential: self.credential.as_ref(),
            read,
            realm: self.auth.realm(),
        }
    }
}
