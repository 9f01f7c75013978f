//! The registry calls eigenpub makes: check a login, read a tag's digest, read manifests
//! and blobs, make sure a blob is present (mount or upload), push a manifest.
//!
//! Each call is one or two requests through [`Registry::send`], which authenticates,
//! paces and retries; here only the meaning of the answers is decided.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

use super::body::{BLOB_BODY, MANIFEST_BODY};
use super::error::{self, ErrorKind, RegistryError};
use super::transport::header;
use super::{Answer, BlobState, Registry};
use crate::artifact::{self, Blob};
use crate::registry::retry;

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
    ///
    /// One HEAD. A HEAD answer has no body, so any answer but 200 and 404 is asked again
    /// once as a GET, whose body says why (and which the transport retries when it is a
    /// rate limit, such as GHCR's 403 "secondary rate limit"). A 404 on a registry that
    /// does not create repositories on push (ECR) is asked again as a GET once per
    /// repository, to tell a missing tag (`MANIFEST_UNKNOWN`) from a missing repository
    /// (`NAME_UNKNOWN`): the plan then names the repository, not `+ create`.
    pub async fn manifest_digest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<String>, RegistryError> {
        let url = self.url(repository, &format!("manifests/{tag}"));
        let answer = self
            .send(repository, Method::HEAD, &url, accept_manifests(), None)
            .await?;
        let answer = match answer.status {
            StatusCode::OK => answer,
            StatusCode::NOT_FOUND => {
                self.repository_exists(repository, &url).await?;
                return Ok(None);
            }
            _ => self.read_reason(repository, &url, answer).await?,
        };
        match answer.status {
            StatusCode::OK => match header(&answer.headers, "docker-content-digest") {
                Some(d) => Ok(Some(d)),
                None if answer.body.is_empty() => {
                    // Rare: a registry that sends no digest on HEAD. Hash the manifest.
                    let got = self.get_manifest_at(repository, &url).await?;
                    self.expect(&got, &[StatusCode::OK], "read a manifest")?;
                    Ok(Some(artifact::sha256_digest(&got.body)))
                }
                None => Ok(Some(artifact::sha256_digest(&answer.body))),
            },
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::FORBIDDEN if artifactory_hides_missing_tags(&answer) => {
                // Artifactory's virtual repositories answer 403 for a tag that does not
                // exist (RTFACT-13797): take it as absent, as go-containerregistry does,
                // and let the push decide; say so once.
                self.note_once(format!(
                    "{}: the registry answered 403 for tag {tag} of {repository} (Artifactory answers so for a tag that does not exist in a virtual repository); it is planned as new, and the push decides",
                    self.host
                ));
                Ok(None)
            }
            _ => Err(self.unexpected(&answer, "check a tag")),
        }
    }

    /// A bounded GET of the manifest at `url` (a tag's or digest's manifest URL).
    async fn get_manifest_at(&self, repository: &str, url: &str) -> Result<Answer, RegistryError> {
        self.send_limited(
            repository,
            Method::GET,
            url,
            accept_manifests(),
            None,
            MANIFEST_BODY,
        )
        .await
    }

    /// The answer to `url` again as a bounded GET, when `head` (a HEAD's answer) is neither
    /// 200 nor 404: a HEAD has no body to say why.
    async fn read_reason(
        &self,
        repository: &str,
        url: &str,
        head: Answer,
    ) -> Result<Answer, RegistryError> {
        let got = self.get_manifest_at(repository, url).await?;
        // Keep the HEAD's challenge when the GET's answer has none.
        if got.status == head.status
            && got.headers.get("www-authenticate").is_none()
            && let Some(c) = head.headers.get("www-authenticate")
        {
            let mut got = got;
            got.headers.insert("www-authenticate", c.clone());
            return Ok(got);
        }
        Ok(got)
    }

    /// After a 404 for a tag: on a registry that does not create repositories on push,
    /// whether the repository exists, asked once per repository and run (a GET of the
    /// same tag: its error code tells). Elsewhere nothing is asked: the repository will
    /// be created by the first push.
    async fn repository_exists(&self, repository: &str, url: &str) -> Result<(), RegistryError> {
        // Only ECR answers a missing repository with a 404 worth telling apart (Artifact
        // Registry answers 403, which is read with its reason anyway).
        if !matches!(
            super::refusal::family(&self.host, None),
            super::refusal::Family::Ecr { .. }
        ) {
            return Ok(());
        }
        let cell = self
            .repositories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(repository.to_string())
            .or_default()
            .clone();
        let known = cell
            .get_or_try_init(|| async {
                let got = self.get_manifest_at(repository, url).await?;
                let e = self.unexpected(&got, "check a tag");
                Ok::<_, RegistryError>((e.kind == ErrorKind::RepositoryMissing).then_some(e))
            })
            .await?;
        match known {
            Some(missing) => Err(missing.clone()),
            None => Ok(()),
        }
    }

    /// The manifest bytes at a tag or digest, or `None` when absent.
    pub async fn fetch_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Bytes>, RegistryError> {
        let path = format!("manifests/{reference}");
        self.fetch(
            repository,
            &path,
            accept_manifests(),
            MANIFEST_BODY,
            "read a manifest",
        )
        .await
    }

    /// A blob's bytes, or `None` when absent.
    pub async fn fetch_blob(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Option<Bytes>, RegistryError> {
        self.fetch_blob_at_most(repository, digest, BLOB_BODY).await
    }

    /// A blob's bytes, or `None` when absent; an answer of more than `limit` bytes is an
    /// error, read no further.
    pub async fn fetch_blob_at_most(
        &self,
        repository: &str,
        digest: &str,
        limit: usize,
    ) -> Result<Option<Bytes>, RegistryError> {
        let path = format!("blobs/{digest}");
        self.fetch(
            repository,
            &path,
            HeaderMap::new(),
            limit.min(BLOB_BODY),
            "read a blob",
        )
        .await
    }

    /// A bounded GET of `path` in a repository: its body, or `None` on 404.
    async fn fetch(
        &self,
        repository: &str,
        path: &str,
        headers: HeaderMap,
        limit: usize,
        what: &str,
    ) -> Result<Option<Bytes>, RegistryError> {
        let url = self.url(repository, path);
        let answer = self
            .send_limited(repository, Method::GET, &url, headers, None, limit)
            .await?;
        match answer.status {
            StatusCode::OK => Ok(Some(answer.body)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.unexpected(&answer, what)),
        }
    }

    /// True when the repository holds the blob. A HEAD answer other than 200 and 404 is
    /// asked again as a GET, whose body says why.
    pub async fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool, RegistryError> {
        let url = self.url(repository, &format!("blobs/{digest}"));
        let answer = self
            .send(repository, Method::HEAD, &url, HeaderMap::new(), None)
            .await?;
        let answer = match answer.status {
            StatusCode::OK => return Ok(true),
            StatusCode::NOT_FOUND => return Ok(false),
            _ => {
                self.send_limited(
                    repository,
                    Method::GET,
                    &url,
                    HeaderMap::new(),
                    None,
                    BLOB_BODY,
                )
                .await?
            }
        };
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
        // A retried upload starts its session again: the transport already repeated each
        // request, so what fails here is a lost session or a registry that keeps failing.
        let mut tries = 0;
        loop {
            let result = self.try_ensure_blob(repository, blob, from).await;
            let Err(failed) = &result else {
                return result;
            };
            tries += 1;
            if self.down.get().is_some() {
                return result;
            }
            // The upload may have landed even though its answer was lost (a dropped
            // connection, a retried PUT to a session the registry already closed): look.
            if self
                .blob_exists(repository, &blob.digest)
                .await
                .unwrap_or(false)
            {
                return Ok(BlobState::Uploaded);
            }
            if tries >= 3 || !matches!(failed.kind, ErrorKind::Server | ErrorKind::Unreachable) {
                return result;
            }
        }
    }

    async fn try_ensure_blob(
        &self,
        repository: &str,
        blob: &Blob,
        from: Option<&str>,
    ) -> Result<BlobState, RegistryError> {
        // Where mounts were ignored or refused once, they are not tried again this run:
        // the POST asks the repository itself (present, or an upload session).
        let from =
            from.filter(|f| *f != repository && !self.mounts_refused.load(Ordering::Relaxed));
        let source = self.api_path(from.unwrap_or(repository));
        let url = self.url(
            repository,
            &format!("blobs/uploads/?mount={}&from={}", blob.digest, source),
        );
        // A mount needs pull on its source in the same token (distribution, Harbor).
        let scope = self.scope(repository, from);
        let answer = match self
            .send_scoped(
                scope,
                Method::POST,
                &url,
                HeaderMap::new(),
                Some(Bytes::new()),
                super::body::SMALL_BODY,
            )
            .await
        {
            Ok(answer) => answer,
            Err(e) => return Err(self.upload_refused(e)),
        };
        if from.is_some() && answer.status == StatusCode::UNAUTHORIZED {
            // The registry refuses mounts from there for these credentials: upload, and
            // do not ask again this run.
            self.mounts_refused.store(true, Ordering::Relaxed);
            return Box::pin(self.try_ensure_blob(repository, blob, None)).await;
        }
        if answer.status == StatusCode::CREATED {
            return Ok(if from.is_some() {
                BlobState::Mounted
            } else {
                BlobState::Present
            });
        }
        if from.is_some() && answer.status == StatusCode::ACCEPTED {
            // The source holds the blob (its manifest was pushed in this run), so a 202 is
            // a registry that does not mount (ECR without blob mounting): upload into the
            // session it opened, and mount no more this run.
            self.mounts_refused.store(true, Ordering::Relaxed);
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
        // `Location` may be absolute or relative: to the URL that answered (after any
        // redirect of the POST), else to the one asked.
        let base = match &answer.url {
            Some(u) => Ok(u.clone()),
            None => reqwest::Url::parse(&url),
        };
        let put = base.and_then(|u| u.join(&location)).map_err(|e| {
            self.error(
                ErrorKind::Protocol,
                Some(202),
                format!("the registry sent an upload Location that is not a URL ({location}): {e}"),
                "report this registry's behaviour",
            )
        })?;
        // Where a registry may redirect a request, and no further (`routing::may_redirect`):
        // one on another machine sends no blob to this one.
        if !super::routing::may_redirect(&self.host, &put) {
            return Err(self.error(
                ErrorKind::Protocol,
                Some(202),
                format!(
                    "the registry sent an upload Location on this machine or its link ({}://{}), which a registry on another machine may not send eigenpub to; nothing was sent there",
                    put.scheme(),
                    crate::sanitize::text(put.host_str().unwrap_or_default())
                ),
                "check what serves this registry: its uploads may go to storage elsewhere, never to the machine eigenpub runs on",
            ));
        }
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
    ///
    /// When the registry says a blob the manifest names is unknown although eigenpub made
    /// sure of it, each blob is checked (`HEAD`): one really missing (a garbage collection
    /// or a delete in between) is uploaded again and the manifest pushed at once; when all
    /// are there, the registry could not read its link to one while another writer was
    /// rewriting it (see [`retry::LINK_RACE`]), and the manifest is pushed again after a
    /// short pause with jitter, up to [`retry::LINK_RACE`]`.attempts` pushes in all.
    pub async fn push_manifest(
        &self,
        repository: &str,
        tag: &str,
        manifest: &Blob,
        blobs: &[&Blob],
    ) -> Result<String, RegistryError> {
        let race = &retry::LINK_RACE;
        let mut pushes = 0;
        loop {
            let answer = match self.put_manifest(repository, tag, manifest).await? {
                Ok(digest) => return Ok(digest),
                Err(answer) => answer,
            };
            if !names_unknown_blob(&answer) {
                return Err(self.unexpected(&answer, "push a manifest"));
            }
            pushes += 1;
            let mut missing = Vec::new();
            for blob in blobs {
                // A HEAD that keeps failing (distribution answers 500 while the link is
                // empty) proves nothing either way: the next push decides, and the loop
                // is bounded, so a failure here must not replace the race's own help.
                if let Ok(false) = self.blob_exists(repository, &blob.digest).await {
                    missing.push(*blob);
                }
            }
            if pushes >= race.attempts {
                let mut e = self.unexpected(&answer, "push a manifest");
                (e.kind, e.help) = error::unknown_blob_help(pushes, missing.is_empty());
                return Err(e);
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            if missing.is_empty() {
                let pause = race.delay(pushes - 1, None, retry::jitter());
                tokio::time::sleep(pause).await;
            }
            for blob in missing {
                self.ensure_blob(repository, blob, None).await?;
            }
        }
    }

    /// One manifest PUT: the digest reported, or the refusing answer.
    async fn put_manifest(
        &self,
        repository: &str,
        tag: &str,
        manifest: &Blob,
    ) -> Result<Result<String, Answer>, RegistryError> {
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
        if matches!(answer.status, StatusCode::CREATED | StatusCode::OK) {
            Ok(Ok(header(&answer.headers, "docker-content-digest")
                .unwrap_or_else(|| manifest.digest.clone())))
        } else {
            Ok(Err(answer))
        }
    }

    fn expect(&self, answer: &Answer, ok: &[StatusCode], what: &str) -> Result<(), RegistryError> {
        if ok.contains(&answer.status) {
            Ok(())
        } else {
            Err(self.unexpected(answer, what))
        }
    }
}

impl Registry {
    /// A failed first upload `POST`: on ECR, a connection dropped there at every attempt is
    /// how a missing repository was answered (2023 reports), so the error says so, and no
    /// new upload session is started for it.
    fn upload_refused(&self, e: RegistryError) -> RegistryError {
        let ecr = matches!(
            super::refusal::family(&self.host, None),
            super::refusal::Family::Ecr { .. }
        );
        if !ecr || e.kind != ErrorKind::Unreachable || self.down.get().is_some() {
            return e;
        }
        // The transport already tried the POST a budget's worth of times on new
        // connections: a repository that is missing, not a flaky network. Starting more
        // upload sessions would only ask again.
        RegistryError {
            kind: ErrorKind::RepositoryMissing,
            message: format!(
                "{} (ECR closed the connection every time it was asked to start an upload: the repository may not exist)",
                e.message
            ),
            help: "ECR does not create repositories on push: create it with `aws ecr create-repository --repository-name REPOSITORY`, then run again; if it exists, check the network".into(),
            ..e
        }
    }
}

/// True when a 403 for a manifest is Artifactory's answer for a tag it does not have:
/// "The client does not have permission for manifest: Download request for repo:path
/// '…' is forbidden" (RTFACT-13797).
fn artifactory_hides_missing_tags(answer: &Answer) -> bool {
    let (_, message) = super::error::error_body(&answer.body);
    let message = message.to_ascii_lowercase();
    message.contains("does not have permission for manifest")
        || (message.contains("download request for repo:path") && message.contains("forbidden"))
}

fn accept_manifests() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("accept", HeaderValue::from_static(MANIFEST_ACCEPT));
    h
}

/// True when a refused manifest PUT says a blob it names is unknown to the registry
/// (`MANIFEST_BLOB_UNKNOWN`, or distribution's `DIGEST_INVALID` "blob unknown").
fn names_unknown_blob(answer: &Answer) -> bool {
    let (codes, message) = super::error::error_body(&answer.body);
    codes
        .iter()
        .any(|c| c == "MANIFEST_BLOB_UNKNOWN" || c == "BLOB_UNKNOWN")
        || (codes.iter().any(|c| c == "DIGEST_INVALID")
            && message.to_ascii_lowercase().contains("blob unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(body: &'static [u8]) -> Answer {
        Answer {
            status: StatusCode::BAD_REQUEST,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body),
            url: None,
        }
    }

    #[test]
    fn unknown_blobs_are_recognised() {
        // distribution 2.8's answer when its link to a blob it holds reads empty.
        assert!(names_unknown_blob(&refusal(
            br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"},{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:fc11d6f28e59d3cc33c0b14ceb644bf0902ebd63d61218dffe9e7dac7c254542"}]}"#
        )));
        assert!(names_unknown_blob(&refusal(
            br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#
        )));
        assert!(names_unknown_blob(&refusal(
            br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content; blob unknown to registry"}]}"#
        )));
        assert!(!names_unknown_blob(&refusal(
            br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#
        )));
        assert!(!names_unknown_blob(&refusal(
            br#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}"#
        )));
    }
}
