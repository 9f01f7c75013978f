//! What can go wrong talking to a registry, as data: a kind, the HTTP status when there
//! was one, a message and a help text saying what to do.
//!
//! The kind decides the diagnostic code (`eigenpub::registry::…`, stable: JSON output and
//! tests rely on it) and whether trying again later may help; the help texts for the
//! common refusals (bad credentials, missing permission, a refused request) live here so
//! that every endpoint words them the same way.

use super::Answer;
use super::refusal::{self, Refusal};
use crate::diagnostic::codes;
use crate::registry::credentials::{self, Credential};
use crate::registry::retry;

/// What went wrong talking to a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Unreachable,
    Tls,
    Auth,
    Denied,
    Rejected,
    /// The repository does not exist and the registry does not create it on push (ECR).
    RepositoryMissing,
    Server,
    Protocol,
}

impl ErrorKind {
    /// The diagnostic code shown to users and in JSON output.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => codes::REGISTRY_UNREACHABLE,
            ErrorKind::Tls => codes::REGISTRY_TLS,
            ErrorKind::Auth => codes::REGISTRY_AUTH,
            ErrorKind::Denied => codes::REGISTRY_DENIED,
            ErrorKind::Rejected => codes::REGISTRY_REJECTED,
            ErrorKind::RepositoryMissing => codes::REGISTRY_REPOSITORY_MISSING,
            ErrorKind::Server => codes::REGISTRY_SERVER,
            ErrorKind::Protocol => codes::REGISTRY_PROTOCOL,
        }
    }

    /// True when trying again later may succeed (network, server, rate limit).
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Unreachable | ErrorKind::Server)
    }
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

impl RegistryError {
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "registry {}: {}", self.registry, self.message)
    }
}

impl std::error::Error for RegistryError {}

/// Who the registry saw: the credentials' origin, or anonymous access.
pub(super) fn who(credential: Option<&Credential>) -> String {
    match credential {
        Some(c) => format!("the credentials from {}", c.origin),
        None => "anonymous access (no credentials found)".to_string(),
    }
}

/// What to do when the registry refuses the credentials (or wants some).
pub(super) fn login_help(host: &str, credential: Option<&Credential>) -> String {
    let env = credentials::env_prefix(host)
        .map(|env| format!(", or set {env}_USERNAME and {env}_PASSWORD"))
        .unwrap_or_default();
    match credential {
        Some(c) => format!(
            "the registry refused the credentials from {}; log in again with `docker login {host}` or `eigenpub login {host}`{env}",
            c.origin
        ),
        None => format!(
            "no credentials were found for {host}; log in with `docker login {host}` or `eigenpub login {host} --username U --password-stdin`{env}"
        ),
    }
}

/// What was being done when a registry answered unexpectedly, for [`unexpected`].
pub(super) struct Context<'a> {
    pub host: &'a str,
    pub credential: Option<&'a Credential>,
    /// True for a read (a plan's check, a GET), false for a write.
    pub read: bool,
    /// The token service's realm this run learned, if any.
    pub realm: Option<String>,
}

/// Turns an unexpected answer into an error that says what to do, from everything the
/// registry said: status, error codes, `message`, `detail`, the challenge and the host
/// ([`super::refusal`]).
pub(super) fn unexpected(context: &Context<'_>, answer: &Answer, what: &str) -> RegistryError {
    if answer.status.is_redirection()
        && let Some(error) = redirect_not_followed(context, answer, what)
    {
        return error;
    }
    let refusal = refusal_of(context, answer);
    let (kind, help) = refusal::classify(&refusal);
    let status = refusal.status;
    let mut reason = if refusal.message.is_empty() {
        answer.status.canonical_reason().unwrap_or("").to_string()
    } else {
        refusal.message.clone()
    };
    if !refusal.detail.is_empty() && !reason.contains(&refusal.detail) {
        reason = format!("{reason} (detail: {})", refusal.detail);
    }
    if let Some(e) = &refusal.challenge_error
        && !reason.contains(e.as_str())
    {
        reason = format!("{reason} ({e})");
    }
    if let Some(quota) = &refusal.quota {
        reason = format!("{reason} (rate limit: {quota})");
    }
    let code = match refusal.codes.first() {
        Some(code) => format!(" {code}"),
        None => String::new(),
    };
    RegistryError {
        registry: context.host.to_string(),
        kind,
        status: Some(status),
        message: format!("could not {what}: HTTP {status}{code}: {reason}"),
        help,
    }
}

/// A redirect the HTTP client did not follow because it leads a registry on another
/// machine to this one or its link ([`super::routing::may_redirect`]), as an error that
/// says so (its target's origin only: the rest is the registry's text).
fn redirect_not_followed(
    context: &Context<'_>,
    answer: &Answer,
    what: &str,
) -> Option<RegistryError> {
    let location = super::transport::header(&answer.headers, "location")?;
    let base = answer.url.as_ref()?;
    let target = base.join(&location).ok()?;
    if super::routing::may_redirect(context.host, &target) {
        return None;
    }
    let origin =
        crate::sanitize::text(&match (target.host_str(), target.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", target.scheme()),
            _ => "a URL without a host".to_string(),
        });
    Some(RegistryError {
        registry: context.host.to_string(),
        kind: super::ErrorKind::Protocol,
        status: Some(answer.status.as_u16()),
        message: format!(
            "could not {what}: HTTP {}: the registry redirected the request to {origin}, on this machine or its link (a metadata service), which a registry on another machine may not send eigenpub to; it was not followed",
            answer.status.as_u16()
        ),
        help: "check what serves this registry: a registry's reads may be redirected to a CDN or to storage elsewhere, never to the machine eigenpub runs on".into(),
    })
}

/// The rate-limit quota a throttled answer says is spent for longer than a run waits
/// ([`retry::spent_quota`]).
pub(super) fn spent_quota(answer: &Answer) -> Option<retry::Quota> {
    if answer.status.as_u16() != 429 {
        return None;
    }
    let header = |name| super::transport::header(&answer.headers, name);
    retry::spent_quota(
        header("ratelimit-remaining").as_deref(),
        header("ratelimit-limit").as_deref(),
    )
}

/// The facts of one refusal, read from the answer.
pub(super) fn refusal_of<'a>(context: &Context<'a>, answer: &Answer) -> Refusal<'a> {
    let parts = error_parts(&answer.body);
    let challenge = super::transport::header(&answer.headers, "www-authenticate")
        .map(|c| super::auth::parse_challenge(&c));
    let (scheme, challenge_error, challenge_realm) = match challenge {
        Some((scheme, params)) => (
            Some(scheme),
            params
                .get("error")
                .map(|e| crate::sanitize::text(e).chars().take(60).collect()),
            params.get("realm").cloned(),
        ),
        None => (None, None, None),
    };
    Refusal {
        host: context.host,
        repository: answer.url.as_ref().and_then(repository_of),
        status: answer.status.as_u16(),
        codes: parts.codes,
        message: parts.message,
        detail: parts.detail,
        authenticated: context.credential.is_some(),
        challenge: scheme,
        challenge_error,
        realm: context.realm.clone().or(challenge_realm),
        read: context.read,
        quota: spent_quota(answer).map(|q| q.describe()),
        who: who(context.credential),
        login_help: login_help(context.host, context.credential),
    }
}

/// The repository a registry API URL names (`/v2/<name>/manifests/…`).
fn repository_of(url: &reqwest::Url) -> Option<String> {
    let path = url.path().strip_prefix("/v2/")?;
    ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .filter_map(|marker| path.rfind(marker).map(|i| &path[..i]))
        .next()
        .filter(|name| !name.is_empty())
        .map(crate::sanitize::text)
}

/// Kind and help for a manifest the registry kept refusing (`pushes` times) for a blob it
/// called unknown; `all_present` when a `HEAD` then found every blob in the repository.
/// Both are transient: another run converges.
pub(super) fn unknown_blob_help(pushes: u32, all_present: bool) -> (ErrorKind, String) {
    let help = if all_present {
        format!(
            "the registry refused the manifest {pushes} times for a blob it holds: another writer (another apply of this project?) kept pushing or mounting the same blobs into this repository, which a registry on distribution's filesystem storage before v3.1 (such as Debian's docker-registry 2.8) answers this way while it rewrites its link to the blob (elsewhere, suspect a fault of the registry); run apply again when the other writer has finished: it pushes only what is still missing"
        )
    } else {
        format!(
            "the registry refused the manifest {pushes} times because a blob it names was missing, although eigenpub uploaded it again each time: something is deleting blobs of this repository while this apply runs (a garbage collection, a delete); run apply again when it has finished"
        )
    };
    (ErrorKind::Server, help)
}

/// Classifies a failure of the HTTP client itself (no answer): kind, message, help.
pub(super) fn transport_error(
    host: &str,
    base: &str,
    e: &reqwest::Error,
) -> (ErrorKind, String, String) {
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
                "if it is signed by a private CA, add its PEM to the project: [registries.\"{host}\"] ca-file = \"ca.pem\""
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
        format!("cannot reach {base}: {chain}"),
        if base.starts_with("https://") {
            format!(
                "check that {host} is the right host and is up; for a registry without TLS set [registries.\"{host}\"] plain-http = true"
            )
        } else {
            format!(
                "check that {host} is the right host and port, and that the registry is running"
            )
        },
    )
}

/// An error and its causes, each said once.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
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

/// How many characters of a registry's `detail` are kept.
const DETAIL_LIMIT: usize = 300;

/// What a registry's error body says: its codes, its messages and its details.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorParts {
    pub codes: Vec<String>,
    /// The messages, each once, joined with "; " (or the body's text when it is not the
    /// spec's JSON).
    pub message: String,
    /// The `detail`s (a string as it is, anything else as compact JSON), each once, cut to
    /// [`DETAIL_LIMIT`] characters in all. Quay puts its reason only here.
    pub detail: String,
}

/// The registry's error codes and a readable message from a JSON error body.
pub fn error_body(body: &[u8]) -> (Vec<String>, String) {
    let parts = error_parts(body);
    (parts.codes, parts.message)
}

/// Reads an error body: `{"errors":[{"code","message","detail"}]}`, or plain text.
pub fn error_parts(body: &[u8]) -> ErrorParts {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
        detail: Option<serde_json::Value>,
    }
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(body) {
        let codes = envelope
            .errors
            .iter()
            .filter_map(|e| e.code.clone())
            .collect();
        // Each message once: distribution repeats its pair of errors for every blob.
        let mut messages: Vec<String> = Vec::new();
        for m in envelope.errors.iter().filter_map(|e| e.message.clone()) {
            if !messages.contains(&m) {
                messages.push(m);
            }
        }
        let mut details: Vec<String> = Vec::new();
        for d in envelope.errors.iter().filter_map(|e| e.detail.as_ref()) {
            let text = match d {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) if s.trim().is_empty() => continue,
                serde_json::Value::String(s) => s.trim().to_string(),
                other => other.to_string(),
            };
            if !details.contains(&text) && !messages.contains(&text) {
                details.push(text);
            }
        }
        let detail = details.join("; ");
        let detail = if detail.chars().count() > DETAIL_LIMIT {
            let cut: String = detail.chars().take(DETAIL_LIMIT).collect();
            format!("{cut}…")
        } else {
            detail
        };
        return ErrorParts {
            codes,
            message: messages.join("; "),
            detail,
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    ErrorParts {
        codes: Vec::new(),
        message: text.chars().take(300).collect(),
        detail: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn error_bodies() {
        let (codes, msg) = error_body(
            br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#,
        );
        assert_eq!(codes, ["DIGEST_INVALID"]);
        assert!(msg.contains("did not match"));
        // distribution's refusal of a manifest whose two blobs it could not read.
        let (codes, msg) = error_body(
            br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"},{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:aa"},{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"},{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:bb"}]}"#,
        );
        assert_eq!(codes.len(), 4);
        assert_eq!(
            msg,
            "provided digest did not match uploaded content; blob unknown to registry"
        );
        let (codes, msg) = error_body(b"plain text");
        assert!(codes.is_empty());
        assert_eq!(msg, "plain text");
    }

    #[test]
    fn details_are_read_as_text_or_compact_json_and_cut() {
        // Quay before 3.10: the reason only in the detail.
        let parts = error_parts(
            br#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":{"message":"'x' is not one of ['y']"}}]}"#,
        );
        assert_eq!(parts.codes, ["MANIFEST_INVALID"]);
        assert_eq!(parts.message, "manifest invalid");
        assert_eq!(parts.detail, r#"{"message":"'x' is not one of ['y']"}"#);
        let parts =
            error_parts(br#"{"errors":[{"code":"DENIED","message":"no","detail":"the reason"}]}"#);
        assert_eq!(parts.detail, "the reason");
        // Null, empty and repeated details say nothing more.
        let parts = error_parts(
            br#"{"errors":[{"code":"A","message":"m","detail":null},{"code":"B","message":"m","detail":"m"},{"code":"C","detail":" "}]}"#,
        );
        assert_eq!(parts.detail, "");
        let long = format!(
            r#"{{"errors":[{{"code":"A","message":"m","detail":"{}"}}]}}"#,
            "x".repeat(5000)
        );
        let parts = error_parts(long.as_bytes());
        assert_eq!(parts.detail.chars().count(), DETAIL_LIMIT + 1);
        assert!(parts.detail.ends_with('…'));
    }

    #[test]
    fn a_refusal_shows_its_detail_and_the_challenges_error() {
        let answer = Answer {
            status: StatusCode::UNAUTHORIZED,
            headers: [(
                reqwest::header::WWW_AUTHENTICATE,
                reqwest::header::HeaderValue::from_static(
                    r#"Bearer realm="https://auth.example/token",error="insufficient_scope""#,
                ),
            )]
            .into_iter()
            .collect(),
            body: bytes::Bytes::from_static(
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Name":"acme/x","Action":"push"}]}]}"#,
            ),
            url: Some(
                reqwest::Url::parse("https://r.example/v2/acme/x/blobs/uploads/").expect("url"),
            ),
        };
        let credential = Credential {
            secret: credentials::Secret::IdentityToken("t0ken-for-the-test".into()),
            origin: "the environment".into(),
        };
        let context = Context {
            host: "r.example",
            credential: Some(&credential),
            read: false,
            realm: None,
        };
        let e = unexpected(&context, &answer, "start a blob upload");
        assert_eq!(e.kind, ErrorKind::Denied);
        assert_eq!(
            e.message,
            r#"could not start a blob upload: HTTP 401 UNAUTHORIZED: authentication required (detail: [{"Action":"push","Name":"acme/x","Type":"repository"}]) (insufficient_scope)"#
        );
        assert!(e.help.contains("may not push to acme/x"), "{}", e.help);
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(
            ErrorKind::Unreachable.code(),
            "eigenpub::registry::unreachable"
        );
        assert_eq!(ErrorKind::Protocol.code(), "eigenpub::registry::protocol");
        assert!(ErrorKind::Server.is_transient());
        assert!(!ErrorKind::Rejected.is_transient());
    }

    #[test]
    fn refusals_say_what_to_do() {
        let answer = Answer {
            status: StatusCode::FORBIDDEN,
            headers: Default::default(),
            body: bytes::Bytes::from_static(br#"{"errors":[{"code":"DENIED","message":"no"}]}"#),
            url: None,
        };
        let context = Context {
            host: "r.example",
            credential: None,
            read: false,
            realm: None,
        };
        let e = unexpected(&context, &answer, "push a manifest");
        assert_eq!(e.kind, ErrorKind::Denied);
        assert_eq!(e.status, Some(403));
        assert_eq!(e.message, "could not push a manifest: HTTP 403 DENIED: no");
        assert!(e.help.contains("anonymous access"));
    }
}
