//! Authentication with a registry: which scheme it wants (learned from its first 401
//! challenge), bearer tokens per repository scope (fetched once however many requests want
//! one, cached, renewed before they expire). Where credentials may go is decided in one
//! place, [`super::routing::may_send`], before anything is sent.
//!
//! Token requests go through the same retry driver as every other request
//! ([`super::transport`]); challenge parsing is pure and tested here, the origin rules in
//! [`super::routing`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::StatusCode;
use tokio::sync::Mutex;

use super::Registry;
use super::body::SMALL_BODY;
use super::error::{self, ErrorKind, RegistryError, error_body};
use super::routing::{self, Refusal};
use super::transport::{Attempt, Attempts, Budget, Peer, header};
use crate::registry::credentials::{Credential, Secret};
use crate::registry::retry::{self, Verdict};

/// How this registry wants to be authenticated, learned from its first challenge.
#[derive(Debug, Clone)]
pub(super) enum Scheme {
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

/// What a registry connection knows about authenticating: scheme and cached tokens.
#[derive(Debug)]
pub(super) struct AuthState {
    pub(super) scheme: Mutex<Scheme>,
    /// Held by the first request while the scheme is unknown, so that a burst of concurrent
    /// first requests costs one 401, not one each.
    pub(super) learning: Mutex<()>,
    tokens: Mutex<HashMap<String, Token>>,
    /// One lock per scope, so concurrent requests fetch a scope's token once.
    token_locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl AuthState {
    pub(super) fn new() -> AuthState {
        AuthState {
            scheme: Mutex::new(Scheme::Unknown),
            learning: Mutex::new(()),
            tokens: Mutex::new(HashMap::new()),
            token_locks: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// True while no answer has told how this registry authenticates.
    pub(super) async fn scheme_unknown(&self) -> bool {
        matches!(*self.scheme.lock().await, Scheme::Unknown)
    }

    /// The realm of the token service this run learned (or `harbor` for a Basic challenge
    /// with that realm is not kept: only bearer realms), when it is known right now.
    pub(super) fn realm(&self) -> Option<String> {
        match &*self.scheme.try_lock().ok()? {
            Scheme::Bearer { realm, .. } => Some(realm.clone()),
            _ => None,
        }
    }

    /// Drops a cached token the registry refused.
    async fn forget_token(&self, scope: &str) {
        self.tokens.lock().await.remove(scope);
    }

    /// An answer other than 401 came while the scheme was unknown: the registry is open.
    pub(super) async fn learned_open(&self) {
        let mut scheme = self.scheme.lock().await;
        if matches!(*scheme, Scheme::Unknown) {
            *scheme = Scheme::Open;
        }
    }
}

impl Registry {
    /// True when the registry has asked for credentials (answered a 401) during this run.
    pub async fn challenged(&self) -> bool {
        matches!(
            *self.auth.scheme.lock().await,
            Scheme::Basic | Scheme::Bearer { .. }
        )
    }

    /// Adds the Authorization header this registry wants, if any, to a request for `url`.
    pub(super) async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
        scope: &str,
    ) -> Result<reqwest::RequestBuilder, RegistryError> {
        let scheme = self.auth.scheme.lock().await.clone();
        match scheme {
            Scheme::Unknown | Scheme::Open => Ok(request),
            Scheme::Basic => match &self.credential {
                Some(Credential {
                    secret: Secret::Basic { username, password },
                    ..
                }) => {
                    self.route(url, None)?;
                    Ok(request.basic_auth(username, Some(password)))
                }
                _ => Ok(request),
            },
            Scheme::Bearer { .. } => {
                // One token fetch per scope, however many requests want it at once; a
                // token about to expire is renewed before it is used.
                let lock = self
                    .auth
                    .token_locks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(scope.to_string())
                    .or_default()
                    .clone();
                // A token bought with credentials is a credential: it goes where they may.
                if self.credential.is_some() {
                    self.route(url, None)?;
                }
                let _held = lock.lock().await;
                let token = self.auth.tokens.lock().await.get(scope).cloned();
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

    /// Where credentials may go ([`routing::may_send`]), as a registry error when nowhere.
    fn route(
        &self,
        url: &str,
        realm: Option<&reqwest::Url>,
    ) -> Result<routing::Destination, RegistryError> {
        let base = reqwest::Url::parse(&self.base).map_err(|_| {
            self.error(
                ErrorKind::Protocol,
                None,
                "the registry's address is not a URL",
                "",
            )
        })?;
        routing::may_send(url, &base, realm).map_err(|refusal| {
            let help = match &refusal {
                Refusal::PlainHttp(_) if self.credential.is_none() => "a registry's token service is asked over HTTPS unless it is on this machine; report this to the registry's operator; nothing was sent".to_string(),
                Refusal::PlainHttp(_) => format!(
                    "serve the registry and its token service over HTTPS (with ca-file for a private CA); plain-http never carries credentials to another machine, so remove it for {} or use it without credentials",
                    self.host
                ),
                Refusal::OtherOrigin(_) => "credentials go only to the registry and to the token service it names itself; nothing was sent".to_string(),
                Refusal::LocalRealm(_) => "only a registry on this machine may have its token service on this machine; nothing was sent to it".to_string(),
                Refusal::NotHttp(_) => "the registry named a token service that is not an HTTPS URL; nothing was sent".to_string(),
            };
            let what = match (&refusal, self.credential.is_some()) {
                (Refusal::PlainHttp(_), true) => {
                    "refusing to send credentials over plain HTTP to a host that is not this machine: "
                }
                (_, true) => "refusing to send credentials: ",
                (Refusal::PlainHttp(_), false) => {
                    "refusing to ask for a token over plain HTTP from a host that is not this machine: "
                }
                (_, false) => "refusing to ask for a token: ",
            };
            self.error(
                ErrorKind::Auth,
                None,
                format!("{what}{refusal}"),
                help,
            )
        })
    }

    /// Reads a 401's challenge; returns true when a retry with credentials makes sense.
    ///
    /// A scheme is learned only from the challenge to a request that carried no
    /// credentials. A 401 to one that did is the registry's answer about them: Harbor, for
    /// one, answers `Basic realm="harbor"` to every refused request that carried an
    /// `Authorization` header, and learning from that would send the password as Basic on
    /// every later request. Only a bearer token that may have expired (a 401 that is not
    /// `insufficient_scope`) is fetched again, once; `insufficient_scope` would get the
    /// same token again.
    pub(super) async fn learn_challenge(
        &self,
        challenge: Option<&str>,
        scope: &str,
    ) -> Result<bool, RegistryError> {
        let Some(challenge) = challenge else {
            return Ok(false);
        };
        let (kind, params) = parse_challenge(challenge);
        let current = self.auth.scheme.lock().await.clone();
        let basic_credential = matches!(
            self.credential,
            Some(Credential {
                secret: Secret::Basic { .. },
                ..
            })
        );
        let authenticated = match current {
            Scheme::Bearer { .. } => true,
            Scheme::Basic => basic_credential,
            Scheme::Unknown | Scheme::Open => false,
        };
        if authenticated {
            let insufficient = params
                .get("error")
                .is_some_and(|e| e.eq_ignore_ascii_case("insufficient_scope"));
            if matches!(current, Scheme::Bearer { .. })
                && kind.eq_ignore_ascii_case("bearer")
                && !insufficient
            {
                self.auth.forget_token(scope).await;
                self.fetch_token(scope).await?;
                return Ok(true);
            }
            return Ok(false);
        }
        if kind.eq_ignore_ascii_case("basic") {
            *self.auth.scheme.lock().await = Scheme::Basic;
            return Ok(basic_credential);
        }
        if kind.eq_ignore_ascii_case("bearer") {
            let Some(realm) = params.get("realm").cloned() else {
                return Ok(false);
            };
            *self.auth.scheme.lock().await = Scheme::Bearer {
                realm,
                service: params.get("service").cloned(),
            };
            // The token would be sent to the registry: when the registry may not have
            // credentials (plain HTTP to another machine), none go to its realm either.
            if self.credential.is_some() {
                self.route(&self.base, None)?;
            }
            self.fetch_token(scope).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Gets a bearer token for a scope from the realm the registry named, and caches it.
    async fn fetch_token(&self, scope: &str) -> Result<String, RegistryError> {
        let Scheme::Bearer { realm, service } = self.auth.scheme.lock().await.clone() else {
            return Err(self.error(ErrorKind::Protocol, None, "no token service known", ""));
        };
        // Checked before anything is built or sent, with credentials or without: the
        // realm, parsed (scheme and host case do not matter), over HTTPS unless it is this
        // machine, and on this machine only for a registry on it.
        let named = reqwest::Url::parse(&realm).map_err(|_| {
            self.error(
                ErrorKind::Protocol,
                None,
                format!(
                    "the registry named a token service that is not a URL: {}",
                    crate::sanitize::text(&realm)
                ),
                "",
            )
        })?;
        self.route(&realm, Some(&named))?;
        let realm_host = crate::sanitize::text(&match (named.host_str(), named.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => realm.clone(),
        });
        // One `scope` parameter per scope (a mount asks pull on its source too), as
        // distribution's own client sends them; the refresh-token form joins them with
        // spaces (OAuth 2).
        let mut query: Vec<(&str, &str)> = Vec::new();
        for one in scope.split_whitespace() {
            query.push(("scope", one));
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
                self.token_http.post(&realm).form(&form)
            }
            Some(Credential {
                secret: Secret::Basic { username, password },
                ..
            }) => self
                .token_http
                .get(&realm)
                .query(&query)
                .basic_auth(username, Some(password)),
            None => self.token_http.get(&realm).query(&query),
        };
        // The token service gets the same retries as the registry; only a refusal (or
        // another client error) is final.
        let (status, body) = self
            .drive(&mut TokenAttempts {
                registry: self,
                request,
                host: &realm_host,
            })
            .await?;
        if status.is_redirection() {
            // Not followed (the token client follows none): credentials go only to the
            // token service the registry named, and a token only comes from there.
            return Err(self.error(
                ErrorKind::Protocol,
                Some(status.as_u16()),
                format!(
                    "the token service {} answered HTTP {} (a redirect), and token requests follow no redirect; nothing was sent to its target",
                    crate::sanitize::text(&realm),
                    status.as_u16()
                ),
                "the registry's challenge must name the token service's final URL (its realm); report this to the registry's operator",
            ));
        }
        if !status.is_success() {
            return Err(self.token_refusal(status, &body, scope));
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
        // A bearer token is a secret of this run: never shown, whatever echoes it.
        crate::sanitize::register(&value);
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(60).clamp(1, 86_400));
        let expires = Instant::now() + lifetime;
        let margin = Duration::from_secs(5).min(lifetime / 2);
        self.auth.tokens.lock().await.insert(
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

impl Registry {
    /// A token service's refusal. 401 is about the credentials; a 403 may say more (an
    /// Artifact Registry repository that may not exist); another 4xx refuses the request
    /// itself (Quay's `400 NAME_INVALID` for a nested name) and would be refused again:
    /// its message is shown and nothing says "try again".
    fn token_refusal(&self, status: StatusCode, body: &[u8], scope: &str) -> RegistryError {
        let parts = error::error_parts(body);
        let mut detail = parts.message.clone();
        if !parts.detail.is_empty() {
            detail = format!("{detail} (detail: {})", parts.detail);
        }
        let code = status.as_u16();
        let (kind, help) = match code {
            401 => (
                ErrorKind::Auth,
                error::login_help(&self.host, self.credential.as_ref()),
            ),
            403 => {
                let context = self.context("authenticate");
                let mut refusal = error::refusal_of(
                    &context,
                    &super::Answer {
                        status,
                        headers: Default::default(),
                        body: Bytes::copy_from_slice(body),
                        url: None,
                    },
                );
                refusal.repository = scope_repository(scope);
                let (kind, help) = super::refusal::classify(&refusal);
                // A bare 403 from a token service is about the credentials.
                if parts.message.is_empty() || kind == ErrorKind::Denied && parts.codes.is_empty() {
                    (
                        ErrorKind::Auth,
                        error::login_help(&self.host, self.credential.as_ref()),
                    )
                } else {
                    (kind, help)
                }
            }
            400..=499 => (
                ErrorKind::Rejected,
                format!(
                    "the token service refused the request for {}: its reason is above, and asking again would get the same answer{}",
                    if scope.is_empty() {
                        "the registry".to_string()
                    } else {
                        crate::sanitize::text(scope)
                    },
                    if parts.codes.iter().any(|c| c == "NAME_INVALID") {
                        "; the registry refuses this repository name (Quay refuses nested names unless FEATURE_EXTENDED_REPOSITORY_NAMES is on): use a prefix the registry accepts"
                    } else {
                        ""
                    }
                ),
            ),
            _ => (
                ErrorKind::Server,
                "the registry's token service failed; try again later".to_string(),
            ),
        };
        let verb = if matches!(code, 401 | 403) {
            format!("refused {}", error::who(self.credential.as_ref()))
        } else if (400..500).contains(&code) {
            "refused the request".to_string()
        } else {
            "failed".to_string()
        };
        self.error(
            kind,
            Some(code),
            format!("the token service {verb}: HTTP {code} {detail}"),
            help,
        )
    }
}

/// The first repository a token scope names (`repository:<name>:<actions>`).
fn scope_repository(scope: &str) -> Option<String> {
    let first = scope.split_whitespace().next()?;
    let rest = first.strip_prefix("repository:")?;
    let (name, _) = rest.rsplit_once(':')?;
    Some(crate::sanitize::text(name))
}

/// One token request, as the retry driver repeats it.
struct TokenAttempts<'a> {
    registry: &'a Registry,
    request: reqwest::RequestBuilder,
    /// The realm's host, for messages.
    host: &'a str,
}

impl Attempts for TokenAttempts<'_> {
    type Output = (StatusCode, Bytes);

    async fn attempt(&mut self, _number: u32) -> Attempt<(StatusCode, Bytes)> {
        let registry = self.registry;
        registry.stats.requests.fetch_add(1, Ordering::Relaxed);
        // Token requests carry a query or a form, never a stream, so they always clone.
        let Some(request) = self.request.try_clone() else {
            return Attempt::Done(Err(registry.error(
                ErrorKind::Protocol,
                None,
                "cannot repeat a token request",
                "",
            )));
        };
        let sent = super::pacing::Turn::now();
        let peer = Peer::TokenService { host: self.host };
        let answer = match registry.exchange(request, SMALL_BODY, peer).await {
            Ok(answer) => answer,
            Err(failure) => return registry.after_failure(failure, peer),
        };
        let (status, body) = (answer.status, answer.body);
        let retry_after = header(&answer.headers, "retry-after")
            .and_then(|v| retry::parse_retry_after(&v, SystemTime::now()));
        if status.is_success() {
            return Attempt::Done(Ok((status, body)));
        }
        let (codes, message) = error_body(&body);
        match retry::classify(status.as_u16(), &codes, &message) {
            Verdict::Fail => Attempt::Done(Ok((status, body))),
            verdict => Attempt::Again {
                last: Ok((status, body)),
                retry_after,
                throttled: (verdict == Verdict::Throttled).then_some(sent),
                budget: Budget::General,
                counted: true,
            },
        }
    }
}

/// Parses `Bearer realm="…",service="…",scope="…"`.
pub(super) fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
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
    fn challenge_edge_cases() {
        // Unquoted values, spaces after commas, upper-case keys.
        let (kind, p) = parse_challenge("bearer Realm=https://t.example/token, service=reg");
        assert_eq!(kind, "bearer");
        assert_eq!(p["realm"], "https://t.example/token");
        assert_eq!(p["service"], "reg");
        // A quoted value may contain commas.
        let (_, p) =
            parse_challenge(r#"Bearer realm="https://t/x",scope="repository:a:pull,push""#);
        assert_eq!(p["scope"], "repository:a:pull,push");
        // An unterminated quote takes the rest; a bare scheme has no parameters.
        let (_, p) = parse_challenge(r#"Bearer realm="https://t/x"#);
        assert_eq!(p["realm"], "https://t/x");
        let (kind, p) = parse_challenge("Basic");
        assert_eq!(kind, "Basic");
        assert!(p.is_empty());
    }
}
