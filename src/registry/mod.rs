//! Where artifacts are published: one interface, two backends.
//!
//! A [`Target`] is a single repository, either in a registry ([`remote`]) or in an OCI
//! image layout on disk ([`layout`]). Planning and applying only use this interface, so a
//! plan against a layout and a plan against GHCR walk the same code path. [`Targets`] holds
//! one connection per registry host (credentials, TLS roots, limits) and one handle per
//! layout folder, shared by every artifact of a run.

pub mod at_once;
pub mod credentials;
pub mod helper;
pub mod layout;
pub mod remote;
pub mod retry;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::artifact::{ARTIFACT_TYPE, Blob};
use crate::diagnostic::Problem;
use crate::diagnostic::codes;
use crate::reference::{Digest, Repository, is_loopback};
use layout::Layout;
pub use remote::BlobState;
use remote::{Access, Registry, RegistryError, RegistryOptions, Stats};

/// A failure at a target, ready to be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError {
    /// The registry host or the layout folder.
    pub target: String,
    pub code: &'static str,
    pub message: String,
    pub help: String,
    /// True when trying again later may succeed (network, server, rate limit).
    pub transient: bool,
    /// For a registry failure: what kind it was (the source of `code`), as data.
    pub kind: Option<remote::ErrorKind>,
    /// For a registry failure with an answer: its HTTP status.
    pub status: Option<u16>,
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl TargetError {
    pub fn to_problem(&self) -> Problem {
        let p = Problem::error(self.code, self.message.clone());
        if self.help.is_empty() {
            p
        } else {
            p.help(self.help.clone())
        }
    }
}

impl From<RegistryError> for TargetError {
    fn from(e: RegistryError) -> Self {
        // The message may quote the registry's body, headers and URLs: sanitised and cut
        // here, where every registry failure passes on its way to any output.
        TargetError {
            message: crate::sanitize::registry_text(&e.to_string()),
            target: crate::sanitize::text(&e.registry),
            code: e.code(),
            help: crate::sanitize::registry_text(&e.help),
            transient: e.is_transient(),
            kind: Some(e.kind),
            status: e.status,
        }
    }
}

impl From<layout::LayoutError> for TargetError {
    fn from(e: layout::LayoutError) -> Self {
        let (code, help) = if e.tag_moved {
            (
                codes::LAYOUT_TAG_MOVED,
                "another run published this tag meanwhile; run `eigenpub plan` to see what it holds now, and bump `version` if yours should be published too",
            )
        } else {
            (
                codes::LAYOUT_IO,
                "check the folder's permissions and free space",
            )
        };
        TargetError {
            target: crate::sanitize::text(&e.dir.display().to_string()),
            code,
            message: crate::sanitize::text(&e.to_string()),
            help: help.into(),
            transient: false,
            kind: None,
            status: None,
        }
    }
}

/// One repository to publish into.
#[derive(Clone)]
pub enum Target {
    Remote {
        registry: Arc<Registry>,
        repository: String,
    },
    Layout(Arc<Layout>),
}

impl Target {
    /// The digest a tag points at, or `None` when the tag does not exist.
    /// A digest that is not one (a hostile registry's header) is an error, never shown raw.
    pub async fn manifest_digest(&self, tag: &str) -> Result<Option<Digest>, TargetError> {
        let digest = match self {
            Target::Remote {
                registry,
                repository,
            } => registry.manifest_digest(repository, tag).await?,
            Target::Layout(l) => l.manifest_digest(tag)?,
        };
        match digest.as_deref().map(Digest::parse) {
            Some(Err(_)) => Err(TargetError {
                target: self.registry().unwrap_or("OCI layout").to_string(),
                code: codes::REGISTRY_PROTOCOL,
                message: format!(
                    "the digest of tag {tag} is not a digest: {}",
                    crate::sanitize::registry_text(&crate::sanitize::truncate(
                        digest.as_deref().unwrap_or_default(),
                        100
                    ))
                ),
                help: "the registry (or what answers in its place) sent a malformed Docker-Content-Digest; check what is serving this host".into(),
                transient: false,
                kind: Some(remote::ErrorKind::Protocol),
                status: None,
            }),
            Some(Ok(d)) => Ok(Some(d)),
            None => Ok(None),
        }
    }

    /// True when the repository holds a manifest with this digest (tagged or not).
    pub async fn has_manifest(&self, digest: &str) -> Result<bool, TargetError> {
        match self {
            Target::Remote {
                registry,
                repository,
            } => Ok(registry
                .manifest_digest(repository, digest)
                .await?
                .is_some()),
            Target::Layout(l) => Ok(l.blob_exists(digest)?),
        }
    }

    /// Makes sure the repository holds a blob, uploading it only when absent. `from` names
    /// another repository of the same registry known to hold it (mounted, not uploaded).
    pub async fn ensure_blob(
        &self,
        blob: &Blob,
        from: Option<&str>,
    ) -> Result<BlobState, TargetError> {
        match self {
            Target::Remote {
                registry,
                repository,
            } => Ok(registry.ensure_blob(repository, blob, from).await?),
            Target::Layout(l) => {
                let (l, blob) = (l.clone(), blob.clone());
                let written = blocking(move || l.push_blob(&blob)).await?;
                Ok(if written {
                    BlobState::Uploaded
                } else {
                    BlobState::Present
                })
            }
        }
    }

    /// The registry host, for remote targets.
    pub fn registry(&self) -> Option<&str> {
        match self {
            Target::Remote { registry, .. } => Some(&registry.host),
            Target::Layout(_) => None,
        }
    }

    /// The repository path within its registry, for remote targets.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Target::Remote { repository, .. } => Some(repository),
            Target::Layout(_) => None,
        }
    }

    /// Pushes the manifest's exact bytes under a tag; returns the digest the target reports.
    /// `blobs` are those the manifest names: a registry that says one is unknown gets it
    /// again (see [`Registry::push_manifest`]).
    /// `guard` says what the tag held when planned: a layout refuses an immutable tag that
    /// moved since (a registry cannot: it has no compare-and-swap).
    pub async fn push_manifest(
        &self,
        tag: &str,
        manifest: &Blob,
        blobs: &[&Blob],
        guard: &layout::TagGuard,
    ) -> Result<String, TargetError> {
        match self {
            Target::Remote {
                registry,
                repository,
            } => Ok(registry
                .push_manifest(repository, tag, manifest, blobs)
                .await?),
            // Layout writes block (file locks, fsync): off the async workers, so that a
            // cancelled run is not held up by them.
            Target::Layout(l) => {
                let (l, tag, manifest) = (l.clone(), tag.to_string(), manifest.clone());
                let guard = guard.clone();
                blocking(move || l.push_manifest(&tag, &manifest, ARTIFACT_TYPE, &guard)).await
            }
        }
    }

    pub async fn fetch_manifest(&self, reference: &str) -> Result<Option<Bytes>, TargetError> {
        match self {
            Target::Remote {
                registry,
                repository,
            } => Ok(registry.fetch_manifest(repository, reference).await?),
            Target::Layout(l) => Ok(l.fetch_manifest(reference)?),
        }
    }

    pub async fn fetch_blob(&self, digest: &str) -> Result<Option<Bytes>, TargetError> {
        match self {
            Target::Remote {
                registry,
                repository,
            } => Ok(registry.fetch_blob(repository, digest).await?),
            Target::Layout(l) => Ok(l.fetch_blob(digest)?),
        }
    }

    /// [`Target::fetch_blob`], an answer of more than `limit` bytes being an error (a
    /// registry's is read no further).
    pub async fn fetch_blob_at_most(
        &self,
        digest: &str,
        limit: usize,
    ) -> Result<Option<Bytes>, TargetError> {
        match self {
            Target::Remote {
                registry,
                repository,
            } => Ok(registry
                .fetch_blob_at_most(repository, digest, limit)
                .await?),
            Target::Layout(l) => match l.fetch_blob(digest)? {
                Some(bytes) if bytes.len() > limit => Err(TargetError {
                    target: "OCI layout".into(),
                    code: codes::LAYOUT_IO,
                    message: format!(
                        "blob {digest} is {} bytes, more than the {limit} read here",
                        bytes.len()
                    ),
                    help: "check what the layout holds".into(),
                    transient: false,
                    kind: None,
                    status: None,
                }),
                fetched => Ok(fetched),
            },
        }
    }
}

/// Runs blocking layout work on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, layout::LayoutError> + Send + 'static,
) -> Result<T, TargetError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(TargetError {
            target: "OCI layout".into(),
            code: codes::LAYOUT_IO,
            message: format!("a layout write stopped: {e}"),
            help: "run apply again".into(),
            transient: true,
            kind: None,
            status: None,
        }),
    }
}

/// How to reach one registry, as the project configures it (`[registries."host"]`), with
/// paths already resolved against the project's folder.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// `None`: plain HTTP for loopback hosts only.
    pub plain_http: Option<bool>,
    /// A PEM file of extra CA certificates: as written in the project, and resolved.
    pub ca_file: Option<(String, PathBuf)>,
    pub max_concurrency: Option<usize>,
    pub requests_per_second: Option<f64>,
    /// The per-request deadline (`timeout`, seconds); `None`: the default.
    pub timeout: Option<f64>,
}

/// Opens a client for one registry: TLS roots, limits and the given credential. `plan`,
/// `apply` and `login` all connect through here.
pub fn open_registry(
    host: &str,
    connection: &Connection,
    access: Access,
    credential: Option<crate::registry::credentials::Credential>,
    stats: Arc<Stats>,
) -> Result<Registry, Problem> {
    let ca_pem = match &connection.ca_file {
        // Regular and bounded (not confined: a CA bundle may live in /etc/ssl).
        Some((written, full)) => {
            match crate::project::paths::read_regular(full, crate::project::paths::max_file_size())
            {
                Ok(pem) => Some((written.clone(), pem)),
                Err(e) => {
                    return Err(Problem::error(
                        codes::REGISTRY_CA_FILE,
                        format!(
                            "registry {host}: cannot read ca-file {}: {e}",
                            full.display()
                        ),
                    )
                    .help("ca-file is relative to the project file"));
                }
            }
        }
        None => None,
    };
    let options = RegistryOptions {
        plain_http: connection.plain_http.unwrap_or_else(|| is_loopback(host)),
        ca_pem,
        max_concurrency: connection.max_concurrency,
        requests_per_second: connection.requests_per_second,
        deadline: connection
            .timeout
            .map_or(remote::DEFAULT_DEADLINE, std::time::Duration::from_secs_f64),
        access,
        ..RegistryOptions::default()
    };
    Registry::new(host, options, credential, stats).map_err(|e| TargetError::from(e).to_problem())
}

/// Looks up the credential for a host (Docker's config, a credential helper, or
/// `EIGENPUB_REGISTRY_*`). A helper is killed at its deadline ([`helper::timeout`]); the
/// timeout here is a backstop.
pub async fn lookup_credential(
    host: &str,
) -> Result<Option<crate::registry::credentials::Credential>, Problem> {
    let lookup = host.to_string();
    // A credential helper may run (and hang, waiting for a prompt nobody sees).
    let task = tokio::task::spawn_blocking(move || crate::registry::credentials::resolve(&lookup));
    let deadline = helper::timeout() + std::time::Duration::from_secs(5);
    let result = match tokio::time::timeout(deadline, task).await {
        Ok(joined) => {
            joined.unwrap_or_else(|e| Err(format!("credential lookup failed: {e}").into()))
        }
        Err(_) => Err(format!(
            "looking up credentials did not finish in {} s: a credential helper is not answering",
            deadline.as_secs()
        )
        .into()),
    };
    result.map_err(|e| match e.help {
        // The environment named another host's credentials: not a broken config.
        Some(help) => Problem::error(
            codes::REGISTRY_SHARED_CREDENTIALS,
            format!("registry {host}: {}", e.message),
        )
        .help(help),
        None => Problem::error(
            codes::REGISTRY_CREDENTIALS,
            format!("registry {host}: {}", e.message),
        )
        .help(format!(
            "fix Docker's config.json or the credential helper, or log in again with `docker login {host}`"
        )),
    })
}

/// Every registry and layout a run talks to.
pub struct Targets {
    registries: HashMap<String, Arc<Registry>>,
    layouts: std::sync::Mutex<HashMap<PathBuf, Arc<Layout>>>,
    pub stats: Arc<Stats>,
}

impl Targets {
    /// Sets up a connection per registry host: credentials, TLS, limits. Every problem
    /// (a credential helper failing, an unreadable ca-file) is returned together.
    pub async fn connect(
        hosts: impl IntoIterator<Item = (String, Connection)>,
        access: Access,
    ) -> Result<Targets, Vec<Problem>> {
        let stats = Arc::new(Stats::default());
        let mut registries = HashMap::new();
        let mut problems = Vec::new();
        let hosts: Vec<(String, Connection)> = hosts.into_iter().collect();
        for (host, connection) in hosts {
            let opened = match lookup_credential(&host).await {
                Ok(credential) => {
                    open_registry(&host, &connection, access, credential, stats.clone())
                }
                Err(p) => Err(p),
            };
            match opened {
                Ok(r) => {
                    registries.insert(host, Arc::new(r));
                }
                Err(p) => problems.push(p),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Targets {
            registries,
            layouts: std::sync::Mutex::new(HashMap::new()),
            stats,
        })
    }

    /// The target for a repository.
    pub fn target(&self, repository: &Repository) -> Target {
        match repository {
            Repository::Remote { registry, path } => Target::Remote {
                registry: self.registries[registry].clone(),
                repository: path.clone(),
            },
            Repository::Layout { root, path, .. } => {
                let dir = root.join(path);
                let mut layouts = self.layouts.lock().unwrap_or_else(|e| e.into_inner());
                Target::Layout(
                    layouts
                        .entry(dir.clone())
                        .or_insert_with(|| Arc::new(Layout::new(dir)))
                        .clone(),
                )
            }
        }
    }

    /// Warnings the registries gave cause for so far (each once), such as a 403 taken as
    /// a missing tag ([`codes::REGISTRY_TAG_FORBIDDEN`]).
    pub fn notes(&self) -> Vec<Problem> {
        let mut hosts: Vec<&String> = self.registries.keys().collect();
        hosts.sort();
        hosts
            .into_iter()
            .flat_map(|h| self.registries[h].notes())
            .map(|note| {
                Problem::warning(codes::REGISTRY_TAG_FORBIDDEN, note).help(
                    "if the tag does exist, the plan's create fails at push time with the registry's reason; give the account read access to every repository behind the virtual repository to get exact answers",
                )
            })
            .collect()
    }

    /// Requests sent to registries so far (token requests included).
    pub fn requests(&self) -> u64 {
        self.stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}
