//! Sending requests to a registry: one retry driver for every request (token fetches
//! included), with pacing, authentication and the retry table applied in one place.
//!
//! A request is a sequence of attempts. Each attempt says whether it is done (a success,
//! or a failure that would fail the same way again) or worth another try; [`Registry::drive`]
//! alone decides whether the budget allows one, counts it and waits the backoff (or the
//! registry's `Retry-After`). [`Registry::send`] is the attempt for registry requests:
//! wait for a place and a turn ([`super::pacing`]), authenticate ([`super::auth`]), send,
//! read the answer. A registry that cannot be connected to, or that has refused every
//! request for long ([`GIVE_UP_AFTER`]), is marked down: later requests fail at once.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use tokio::sync::MutexGuard;

use super::body::{self, BodyError, Failure, SMALL_BODY, STALL_MIN_BYTES, STALL_WINDOW};
use super::error::{self, ErrorKind, RegistryError, error_body};
use super::pacing::{Refusals, Turn};
use super::routing::{answered_by_registry, same_origin};
use super::{Access, Answer, Registry};
use crate::registry::retry::{self, Verdict};

/// The least time a registry must have refused every request (throttles, server errors)
/// before it is given up. A token bucket (GHCR's, ECR's, Quay's) refills within seconds,
/// and the pacing still sends at least one request a second, so a registry with any
/// capacity left accepts one of these thirty; one that does not is over a quota that
/// resets in hours (Docker Hub's pull limit) or down, and every request would only spend
/// its whole budget (a plan of 200 tags: some 26 minutes at one request a second).
pub(super) const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

/// A registry waited on this long with no answer to any request gets a line on the
/// terminal ("waiting for H: no answer for N s"), and another every as long.
pub(super) const NOTICE_EVERY: Duration = Duration::from_secs(10);

/// When a registry last answered, and how many requests wait on it: a registry that
/// answers nothing for a whole per-request deadline (accepts connections and says
/// nothing, or trickles) is given up, once for the registry, like one that refuses.
#[derive(Debug, Default)]
pub(super) struct Hearing {
    state: std::sync::Mutex<HearingState>,
}

#[derive(Debug, Default)]
struct HearingState {
    /// Requests waiting for an answer.
    waiting: usize,
    /// The last answer, or the moment requests began to wait after none did.
    since: Option<tokio::time::Instant>,
    /// The last "waiting for" line.
    noticed: Option<tokio::time::Instant>,
}

impl Hearing {
    fn state(&self) -> std::sync::MutexGuard<'_, HearingState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request starts waiting; it stops when the guard drops.
    fn wait(&self) -> Waiting<'_> {
        let mut state = self.state();
        if state.waiting == 0 {
            state.since = Some(tokio::time::Instant::now());
        }
        state.waiting += 1;
        Waiting(self)
    }

    /// The registry answered (whatever it said).
    fn heard(&self) {
        self.state().since = Some(tokio::time::Instant::now());
    }

    /// How long requests have waited with no answer to any (asked right after one
    /// gave up waiting).
    fn silence(&self) -> Duration {
        self.state()
            .since
            .map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// The silence, if a "waiting for" line is due for it.
    fn notice_due(&self) -> Option<Duration> {
        let mut state = self.state();
        let since = state.since.filter(|_| state.waiting > 0)?;
        let now = tokio::time::Instant::now();
        let silence = now - since;
        let due = silence >= NOTICE_EVERY
            && state
                .noticed
                .is_none_or(|at| at < since || now - at >= NOTICE_EVERY);
        if due {
            state.noticed = Some(now);
        }
        due.then_some(silence)
    }
}

/// A request waiting for an answer (see [`Hearing::wait`]).
struct Waiting<'a>(&'a Hearing);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.waiting = state.waiting.saturating_sub(1);
    }
}

/// What one attempt of a request came to.
pub(super) enum Attempt<T> {
    /// Final: a success, or a failure that would fail the same way again.
    Done(Result<T, RegistryError>),
    /// Worth another try after a pause, if the budget allows; `last` is the result when
    /// it does not.
    Again {
        last: Result<T, RegistryError>,
        /// The registry's `Retry-After`, which wins over the backoff.
        retry_after: Option<Duration>,
        /// Rate limited (the refused request's turn): the whole registry slows down.
        throttled: Option<Turn>,
        /// How many attempts this kind of failure may use in all.
        budget: Budget,
        /// Counted in the run's retry statistics.
        counted: bool,
    },
}

/// How many attempts a kind of failure may use in all.
#[derive(Debug, Clone, Copy)]
pub(super) enum Budget {
    /// The backoff's `attempts`, stretched to its `attempts_while_up` when the failure
    /// came while the registry was up: a fault streak of one request among accepted
    /// others is bad luck.
    General,
    /// This many, whatever the registry's health (a timeout, a stalled answer).
    Fixed(u32),
}

/// Who a request goes to: the registry, or the token service its challenge named (a
/// host of its own: messages name it, not the registry).
#[derive(Debug, Clone, Copy)]
pub(super) enum Peer<'a> {
    Registry,
    TokenService {
        /// The realm's host (and port), as displayed.
        host: &'a str,
    },
}

impl Peer<'_> {
    /// The host to name in messages, `registry` being the registry's.
    fn name<'b>(&'b self, registry: &'b str) -> &'b str {
        match self {
            Peer::Registry => registry,
            Peer::TokenService { host } => host,
        }
    }
}

/// A request that can be attempted again.
pub(super) trait Attempts {
    type Output;
    /// Makes attempt `number` (from 0).
    async fn attempt(&mut self, number: u32) -> Attempt<Self::Output>;
}

impl Registry {
    /// The retry driver: attempts until one is done or the budget is spent, pausing between.
    pub(super) async fn drive<A: Attempts>(
        &self,
        attempts: &mut A,
    ) -> Result<A::Output, RegistryError> {
        let mut number = 0u32;
        let began = self.health().mark();
        loop {
            match attempts.attempt(number).await {
                Attempt::Done(result) => {
                    if result.is_ok() {
                        self.health().accepted();
                    }
                    return result;
                }
                Attempt::Again {
                    last,
                    retry_after,
                    throttled,
                    budget,
                    counted,
                } => {
                    // A throttle is the pacing's business; anything else is a failure.
                    let up = throttled.is_none() && {
                        let mut health = self.health();
                        health.failed();
                        health.up_since(began)
                    };
                    let budget = match budget {
                        Budget::General if up => {
                            self.backoff.attempts.max(self.backoff.attempts_while_up)
                        }
                        Budget::General => self.backoff.attempts,
                        Budget::Fixed(n) => n,
                    };
                    if number + 1 >= budget {
                        // Out of budget while the registry was given up: that is the
                        // failure to report, once for the registry.
                        if let (Err(_), Some(down)) = (&last, self.down.get()) {
                            return Err(down.clone());
                        }
                        return last;
                    }
                    if counted {
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    }
                    self.pause(number, retry_after, throttled, up).await;
                    number += 1;
                }
            }
        }
    }

    /// Sends a request and reads its answer within the per-request deadline, every body
    /// bounded (`limit` for a success; an error answer is cut to [`SMALL_BODY`]). While
    /// it waits, a registry silent for [`NOTICE_EVERY`] gets a line on the terminal; a
    /// registry given up meanwhile ends the wait at once.
    pub(super) async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        limit: usize,
        peer: Peer<'_>,
    ) -> Result<Answer, Failure> {
        let _waiting = self.hearing.wait();
        let exchange = async {
            let mut response = request.send().await.map_err(|e| {
                if e.is_connect() {
                    Failure::Connect(e)
                } else {
                    Failure::Broken(e)
                }
            })?;
            let status = response.status();
            let headers = response.headers().clone();
            let final_url = response.url().clone();
            let success = status.is_success();
            let limit = if success { limit } else { SMALL_BODY };
            let body = body::read(&mut response, limit, !success)
                .await
                .map_err(|e| match e {
                    BodyError::TooLarge => Failure::TooLarge {
                        status: status.as_u16(),
                        limit,
                    },
                    BodyError::Stalled => Failure::Stalled,
                    BodyError::Broken(e) => Failure::Broken(e),
                })?;
            Ok(Answer {
                status,
                headers,
                body,
                url: Some(final_url),
            })
        };
        tokio::pin!(exchange);
        let deadline = tokio::time::Instant::now() + self.deadline;
        loop {
            let now = tokio::time::Instant::now();
            let wake = deadline.min(now + NOTICE_EVERY);
            tokio::select! {
                answered = &mut exchange => {
                    if answered.is_ok() {
                        self.hearing.heard();
                    }
                    return answered;
                }
                () = self.pacing.sleep(wake - now) => {}
            }
            if let Some(down) = self.down.get() {
                return Err(Failure::GivenUp(down.clone()));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Failure::Deadline);
            }
            if let Some(silence) = self.hearing.notice_due() {
                self.notices.say(&format!(
                    "waiting for {}: no answer for {} s",
                    peer.name(&self.host),
                    silence.as_secs()
                ));
            }
        }
    }

    /// What a failed exchange with `peer` means for the request: an error, and whether to
    /// try again. A registry that cannot be connected to is marked down for the rest of
    /// the run.
    pub(super) fn after_failure<T>(&self, failure: Failure, peer: Peer<'_>) -> Attempt<T> {
        let token = matches!(peer, Peer::TokenService { .. });
        let prefix = match peer {
            Peer::Registry => String::new(),
            Peer::TokenService { host } => format!("token service {host}: "),
        };
        let check = match peer {
            Peer::Registry => "check the registry's health and the network".to_string(),
            Peer::TokenService { host } => format!(
                "check the token service {host} (the registry's challenge names it) and the network"
            ),
        };
        if matches!(failure, Failure::Deadline | Failure::Stalled)
            && let Some(given_up) = self.give_up_silent(peer)
        {
            return Attempt::Done(Err(given_up));
        }
        let slow = Budget::Fixed(self.backoff.attempts.min(2));
        let (error, budget) = match failure {
            Failure::GivenUp(down) => return Attempt::Done(Err(down)),
            Failure::Connect(e) => {
                let (kind, message, help) = error::transport_error(&self.host, &self.base, &e);
                let error = self.error(kind, None, format!("{prefix}{message}"), help);
                if !token {
                    let _ = self.down.set(error.clone());
                }
                return Attempt::Done(Err(error));
            }
            Failure::Broken(e) => {
                let (kind, message, help) = error::transport_error(&self.host, &self.base, &e);
                (
                    self.error(kind, None, format!("{prefix}{message}"), help),
                    Budget::General,
                )
            }
            Failure::Deadline => (
                self.error(
                    ErrorKind::Unreachable,
                    None,
                    format!(
                        "{prefix}no complete answer within {} s",
                        self.deadline.as_secs_f64()
                    ),
                    format!(
                        "{check}; for a slow one raise [registries.\"{}\"] timeout (seconds)",
                        self.host
                    ),
                ),
                slow,
            ),
            Failure::Stalled => (
                self.error(
                    ErrorKind::Unreachable,
                    None,
                    format!(
                        "{prefix}the answer stalled: less than {STALL_MIN_BYTES} bytes in {} s",
                        STALL_WINDOW.as_secs()
                    ),
                    format!("{check}, then run again"),
                ),
                slow,
            ),
            Failure::TooLarge { status, limit } => {
                return Attempt::Done(Err(self.error(
                    ErrorKind::Protocol,
                    Some(status),
                    format!(
                        "{prefix}the answer is larger than {} KiB, more than this request can need; it was not read",
                        limit / 1024
                    ),
                    "check what is serving this host: a registry does not send that much here",
                )));
            }
        };
        Attempt::Again {
            last: Err(error),
            retry_after: None,
            throttled: None,
            budget,
            counted: true,
        }
    }

    /// Sleeps before a retry: briefly while the registry is `up` (see
    /// [`retry::Backoff::pause`]). A throttled answer also slows the registry's rate down;
    /// its `Retry-After` delays only this request. Both use it within the backoff's cap: a
    /// registry's "come back tomorrow" must not hold the rate down for the rest of the run.
    async fn pause(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        throttled: Option<Turn>,
        up: bool,
    ) {
        let delay = self
            .backoff
            .pause(attempt, retry_after, up, retry::jitter());
        if let Some(turn) = throttled {
            let hold = retry_after.map(|d| d.min(self.backoff.cap));
            self.pacing.throttled(turn, hold).await;
            // Throttled: another artifact may use this one's place meanwhile.
            crate::registry::at_once::lending_place(self.pacing.sleep(delay)).await;
        } else {
            self.pacing.sleep(delay).await;
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, retry::Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the registry up when no request has had an answer for a whole per-request
    /// deadline (it accepts connections and says nothing, or trickles): every later
    /// request fails at once with the returned error, which the run reports once for the
    /// registry, and every request waiting on it stops waiting.
    /// `peer` is who kept silent: the registry, or the token service it sends clients to
    /// (without tokens, nothing can be done there either).
    fn give_up_silent(&self, peer: Peer<'_>) -> Option<RegistryError> {
        let silence = self.hearing.silence();
        if silence < self.deadline {
            return None;
        }
        let (message, check) = match peer {
            Peer::Registry => (
                format!(
                    "no complete answer within {} s, to this request or any other for {} s, so \
                     eigenpub gave up on it",
                    self.deadline.as_secs_f64(),
                    silence.as_secs()
                ),
                "check the registry's health and the network".to_string(),
            ),
            Peer::TokenService { host } => (
                format!(
                    "its token service {host} gave no complete answer within {} s, to this \
                     request or any other for {} s, so eigenpub gave up on the registry (it \
                     asks for a token first)",
                    self.deadline.as_secs_f64(),
                    silence.as_secs()
                ),
                format!(
                    "check the token service {host} (the registry's challenge names it) and the \
                     network"
                ),
            ),
        };
        let error = self.error(
            ErrorKind::Unreachable,
            None,
            message,
            format!(
                "{check} (a proxy or firewall that accepts connections and drops them says \
                 nothing); for one that is slow to answer, raise [registries.\"{}\"] timeout \
                 (seconds)",
                self.host
            ),
        );
        // The first error wins (a registry also given up for refusing keeps that one).
        let _ = self.down.set(error);
        self.pacing.stop();
        self.down.get().cloned()
    }

    /// Gives the registry up when it has refused every request for longer than one
    /// request's whole patience and at least [`GIVE_UP_AFTER`], at least a budget's worth
    /// of them: every later request fails at once with the returned error, which the run
    /// reports once for the registry. A registry that accepts any request never gets here.
    fn give_up(
        &self,
        spell: &Refusals,
        last: StatusCode,
        throttled: bool,
    ) -> Option<RegistryError> {
        let patience: Duration = (0..self.backoff.attempts.saturating_sub(1))
            .map(|a| self.backoff.delay(a, spell.longest_retry_after, 1.0))
            .sum();
        let lasted = spell.since.elapsed();
        if spell.count < self.backoff.attempts || lasted < patience.max(GIVE_UP_AFTER) {
            return None;
        }
        let help = if throttled {
            format!(
                "the registry is rate limiting every request: wait for its limit to reset (a pull \
                 limit such as Docker Hub's resets within hours), lower [registries.\"{host}\"] \
                 requests-per-second (or max-concurrency) if this project set them high, and check \
                 the credentials: anonymous and free accounts get lower limits",
                host = self.host
            )
        } else {
            "the registry keeps failing: check its health or status page, then run again"
                .to_string()
        };
        let error = self.error(
            ErrorKind::Unreachable,
            Some(last.as_u16()),
            format!(
                "it refused every request for {} s ({} answers, none accepted; the last: {} {}), \
                 so eigenpub gave up on it",
                lasted.as_secs(),
                spell.count,
                last.as_u16(),
                last.canonical_reason().unwrap_or("")
            ),
            help,
        );
        // The first error wins (a registry also given up as unreachable keeps that one).
        let _ = self.down.set(error);
        self.pacing.stop();
        self.down.get().cloned()
    }

    /// Sends one request, authenticating and retrying as needed; a successful answer's
    /// body may hold at most [`SMALL_BODY`] bytes.
    pub async fn send(
        &self,
        repository: &str,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Answer, RegistryError> {
        self.send_limited(repository, method, url, headers, body, SMALL_BODY)
            .await
    }

    /// [`Registry::send`], with a successful answer's body allowed up to `limit` bytes.
    pub(super) async fn send_limited(
        &self,
        repository: &str,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
        limit: usize,
    ) -> Result<Answer, RegistryError> {
        let scope = self.scope(repository, None);
        self.send_scoped(scope, method, url, headers, body, limit)
            .await
    }

    /// The token scope of a request for `repository`: pull, or pull and push for an
    /// apply; with `also_pull`, pull on that repository too (the source of a mount, which
    /// registries check against the same token), as a second space-separated scope.
    pub(super) fn scope(&self, repository: &str, also_pull: Option<&str>) -> String {
        if repository.is_empty() {
            return String::new(); // the API root (a login check): no repository scope
        }
        let mut scope = format!(
            "repository:{}:{}",
            self.api_path(repository),
            match self.access {
                Access::Pull => "pull",
                Access::Push => "pull,push",
            }
        );
        if let Some(from) = also_pull.filter(|f| *f != repository) {
            scope.push_str(&format!(" repository:{}:pull", self.api_path(from)));
        }
        scope
    }

    /// [`Registry::send_limited`] with an explicit token scope ([`Registry::scope`]).
    pub(super) async fn send_scoped(
        &self,
        scope: String,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
        limit: usize,
    ) -> Result<Answer, RegistryError> {
        let mut learning = None;
        if self.auth.scheme_unknown().await {
            let guard = self.auth.learning.lock().await;
            if self.auth.scheme_unknown().await {
                learning = Some(guard);
            }
        }
        self.drive(&mut RegistryAttempts {
            registry: self,
            method,
            url,
            headers,
            body,
            scope,
            limit,
            authenticated_retry: false,
            learning,
        })
        .await
    }
}

/// One registry request, as the retry driver repeats it.
struct RegistryAttempts<'a> {
    registry: &'a Registry,
    method: Method,
    url: &'a str,
    headers: HeaderMap,
    body: Option<Bytes>,
    scope: String,
    /// The most a successful answer's body may hold.
    limit: usize,
    /// A 401 was answered once already (with what it taught): the next one is final.
    authenticated_retry: bool,
    /// Held while this request is the one learning the registry's scheme.
    learning: Option<MutexGuard<'a, ()>>,
}

impl Attempts for RegistryAttempts<'_> {
    type Output = Answer;

    async fn attempt(&mut self, number: u32) -> Attempt<Answer> {
        let registry = self.registry;
        loop {
            // A registry that could not be connected to is not tried again in this run:
            // every later request gets the same answer at once.
            if let Some(down) = registry.down.get() {
                return Attempt::Done(Err(down.clone()));
            }
            let permit = registry.pacing.permit().await;
            let turn = registry.pacing.wait_for_turn().await;
            if let Some(down) = registry.down.get() {
                return Attempt::Done(Err(down.clone()));
            }
            let mut request = registry
                .http
                .request(self.method.clone(), self.url)
                .headers(self.headers.clone());
            if let Some(body) = &self.body {
                request = request.body(body.clone());
            }
            // Credentials and tokens go only to the registry itself, never to another host
            // an upload `Location` may name.
            if same_origin(self.url, &registry.base) {
                request = match registry.authorize(request, self.url, &self.scope).await {
                    Ok(r) => r,
                    Err(e) => return Attempt::Done(Err(e)),
                };
            }
            registry.stats.requests.fetch_add(1, Ordering::Relaxed);
            let exchanged = registry.exchange(request, self.limit, Peer::Registry).await;
            let answer = match exchanged {
                Ok(answer) => answer,
                Err(failure) => {
                    drop(permit);
                    return registry.after_failure(failure, Peer::Registry);
                }
            };
            let status = answer.status;
            drop(permit);
            if status == StatusCode::UNAUTHORIZED
                && !self.authenticated_retry
                && answered_by_registry(self.url, &answer, &registry.base)
            {
                self.authenticated_retry = true;
                let challenge = header(&answer.headers, "www-authenticate");
                let learned = registry
                    .learn_challenge(challenge.as_deref(), &self.scope)
                    .await;
                self.learning = None;
                match learned {
                    Ok(true) => continue,
                    // A refusal, not a challenge to answer: the caller says what it was doing.
                    Ok(false) => return Attempt::Done(Ok(answer)),
                    Err(e) => return Attempt::Done(Err(e)),
                }
            }
            if self.learning.take().is_some() && status != StatusCode::UNAUTHORIZED {
                registry.auth.learned_open().await;
            }
            if status.is_success() || status.is_redirection() || status == StatusCode::NOT_FOUND {
                registry.pacing.accepted(turn).await;
                return Attempt::Done(Ok(answer));
            }
            let (codes, message) = error_body(&answer.body);
            let verdict = retry::classify(status.as_u16(), &codes, &message);
            // A spent quota that refills in hours (Docker Hub's pull limit) is said at once.
            if verdict == Verdict::Fail || error::spent_quota(&answer).is_some() {
                return Attempt::Done(Ok(answer));
            }
            let retry_after = header(&answer.headers, "retry-after")
                .and_then(|v| retry::parse_retry_after(&v, SystemTime::now()));
            let mut last = registry.unexpected(&answer, "complete a request");
            last.message = format!("{} (after {} attempts)", last.message, number + 1);
            // A 503 that says when to come back is the registry asking to slow down.
            let throttled = verdict == Verdict::Throttled
                || (status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some());
            if throttled || status.is_server_error() {
                let capped = retry_after.map(|d| d.min(registry.backoff.cap));
                let spell = registry.pacing.refused(capped).await;
                if let Some(given_up) = registry.give_up(&spell, status, throttled) {
                    return Attempt::Done(Err(given_up));
                }
            }
            return Attempt::Again {
                last: Err(last),
                retry_after,
                throttled: throttled.then_some(turn),
                budget: Budget::General,
                counted: true,
            };
        }
    }
}

/// A header's value as text, when it is there and printable.
pub(super) fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests;
