//! The registry calls eigenpub makes: check a login, read a tag's digest, read manifests
//! and blobs, make sure a blob is present (mount or upload), push a manifest.
//!
//! Each call is one or two requests through [`Registry::send`], which authenticates,
//! paces and retries; here only the meaning of the answers is decided.

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

use super::error::{ErrorKind, RegistryError};
use super::transport::header;
use super::{Answer, BlobState, Registry};
use crate::artifact::{self, Blob};

/// Every manifest type a HEAD or GET accepts.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

impl Registry {
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
}

fn accept_manifests() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("accept", HeaderValue::from_static(MANIFEST_ACCEPT));
    h
}
