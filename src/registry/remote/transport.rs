//! Sending requests to a registry: one retry driver for every request (token fetches
//! included), with pacing, authentication and the retry table applied in one place.
//!
//! A request is a sequence of attempts. Each attempt says whether it is done (a success,
//! or a failure that would fail the same way again) or worth another try; [`Registry::drive`]
//! alone decides whether the budget allows one, counts it and waits the backoff (or the
//! registry's `Retry-After`). [`Registry::send`] is the attempt for registry requests:
//! wait for a place and a turn ([`super::pacing`]), authenticate ([`super::auth`]), send,
//! read the answer.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use tokio::sync::MutexGuard;

use super::body::{self, BodyError, Failure, SMALL_BODY, STALL_MIN_BYTES, STALL_WINDOW};
use super::error::{self, ErrorKind, RegistryError, error_body};
use super::routing::{answered_by_registry, same_origin};
use super::{Access, Answer, Registry};
use crate::registry::retry::{self, Verdict};

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
        /// Rate limited: the whole registry slows down.
        throttled: bool,
        /// How many attempts this kind of failure may use in all.
        budget: u32,
        /// Counted in the run's retry statistics.
        counted: bool,
    },
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
        loop {
            match attempts.attempt(number).await {
                Attempt::Done(result) => return result,
                Attempt::Again {
                    last,
                    retry_after,
                    throttled,
                    budget,
                    counted,
                } => {
                    if number + 1 >= budget {
                        return last;
                    }
                    if counted {
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    }
                    self.pause(number, retry_after, throttled).await;
                    number += 1;
                }
            }
        }
    }

    /// Sends a request and reads its answer within the per-request deadline, every body
    /// bounded (`limit` for a success; an error answer is cut to [`SMALL_BODY`]).
    pub(super) async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        limit: usize,
    ) -> Result<Answer, Failure> {
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
        tokio::time::timeout(self.deadline, exchange)
            .await
            .unwrap_or(Err(Failure::Deadline))
    }

    /// What a failed exchange means for the request: an error, and whether to try again.
    /// `what` names the other end in messages ("" for the registry, "token service: ").
    /// A registry that cannot be connected to is marked down for the rest of the run.
    pub(super) fn after_failure<T>(&self, failure: Failure, token: bool) -> Attempt<T> {
        let prefix = if token { "token service: " } else { "" };
        let slow = self.backoff.attempts.min(2);
        let (error, budget) = match failure {
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
                    self.backoff.attempts,
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
                        "check the registry's health and the network; for a slow registry raise [registries.\"{}\"] timeout (seconds)",
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
                    "check the registry's health and the network, then run again",
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
            throttled: false,
            budget,
            counted: true,
        }
    }

    /// Sleeps before a retry. A throttled answer also slows the registry's rate down;
    /// its `Retry-After` delays only this request. Both use it within the backoff's cap: a
    /// registry's "come back tomorrow" must not hold the rate down for the rest of the run.
    async fn pause(&self, attempt: u32, retry_after: Option<Duration>, throttled: bool) {
        if throttled {
            let hold = retry_after.map(|d| d.min(self.backoff.cap));
            self.pacing.throttled(hold).await;
        }
        let delay = self.backoff.delay(attempt, retry_after, retry::jitter());
        tokio::time::sleep(delay).await;
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
            registry.pacing.wait_for_turn().await;
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
            let exchanged = registry.exchange(request, self.limit).await;
            let answer = match exchanged {
                Ok(answer) => answer,
                Err(failure) => {
                    drop(permit);
                    return registry.after_failure(failure, false);
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
                    Ok(false) => {
                        return Attempt::Done(Err(registry.unexpected(&answer, "authenticate")));
                    }
                    Err(e) => return Attempt::Done(Err(e)),
                }
            }
            if self.learning.take().is_some() && status != StatusCode::UNAUTHORIZED {
                registry.auth.learned_open().await;
            }
            if status.is_success() || status.is_redirection() || status == StatusCode::NOT_FOUND {
                registry.pacing.accepted().await;
                return Attempt::Done(Ok(answer));
            }
            let (codes, message) = error_body(&answer.body);
            let verdict = retry::classify(status.as_u16(), &codes, &message);
            if verdict == Verdict::Fail {
                return Attempt::Done(Ok(answer));
            }
            let retry_after = header(&answer.headers, "retry-after")
                .and_then(|v| retry::parse_retry_after(&v, SystemTime::now()));
            let mut last = registry.unexpected(&answer, "complete a request");
            last.message = format!("{} (after {} attempts)", last.message, number + 1);
            // A 503 that says when to come back is the registry asking to slow down.
            let throttled = verdict == Verdict::Throttled
                || (status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some());
            return Attempt::Again {
                last: Err(last),
                retry_after,
                throttled,
                budget: registry.backoff.attempts,
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
mod tests {
    use super::*;
    use crate::registry::remote::{RegistryOptions, Stats};
    use std::sync::Arc;
    use tokio::time::Instant;

    fn registry() -> Registry {
        Registry::new(
            "r.example",
            RegistryOptions::default(),
            None,
            Arc::new(Stats::default()),
        )
        .unwrap()
    }

    /// Fails with a retryable answer `failures` times, then succeeds.
    struct Flaky {
        failures: u32,
        made: u32,
        retry_after: Option<Duration>,
        throttled: bool,
    }

    impl Attempts for Flaky {
        type Output = u32;
        async fn attempt(&mut self, number: u32) -> Attempt<u32> {
            assert_eq!(number, self.made);
            self.made += 1;
            if self.made > self.failures {
                return Attempt::Done(Ok(number));
            }
            Attempt::Again {
                last: Err(RegistryError {
                    registry: "r.example".into(),
                    kind: ErrorKind::Server,
                    status: Some(503),
                    message: "busy".into(),
                    help: String::new(),
                }),
                retry_after: self.retry_after,
                throttled: self.throttled,
                budget: crate::registry::retry::Backoff::default().attempts,
                counted: true,
            }
        }
    }

    fn flaky(failures: u32) -> Flaky {
        Flaky {
            failures,
            made: 0,
            retry_after: None,
            throttled: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_exponentially_with_jitter() {
        let r = registry();
        let start = Instant::now();
        let done = r.drive(&mut flaky(3)).await.unwrap();
        assert_eq!(done, 3, "the fourth attempt succeeds");
        assert_eq!(r.stats.retries.load(Ordering::Relaxed), 3);
        // 50 + 100 + 200 ms at most, half of it at least.
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(175), "{waited:?}");
        assert!(waited <= Duration::from_millis(350), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_ends_retries_with_the_last_failure() {
        let r = registry();
        let mut attempts = flaky(100);
        let e = r.drive(&mut attempts).await.unwrap_err();
        assert_eq!(attempts.made, 8, "the default budget is eight attempts");
        assert_eq!(e.status, Some(503));
        assert_eq!(r.stats.retries.load(Ordering::Relaxed), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_wins_over_the_backoff() {
        let r = registry();
        let mut attempts = flaky(1);
        attempts.retry_after = Some(Duration::from_secs(3));
        let start = Instant::now();
        r.drive(&mut attempts).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_retry_after_holds_the_rate_down_no_longer_than_the_cap() {
        // Six requests refused at once with `Retry-After: 86400` cut the rate; the
        // registry then accepts everything. The rate grows fast again once the backoff's
        // cap (20 s) and the calm have passed, not after a day. (Before: 5% a second for
        // the whole run, some 20/s after a minute.)
        let r = registry();
        let refused = (0..6).map(|_| {
            let mut attempts = flaky(1);
            attempts.retry_after = Some(Duration::from_secs(86_400));
            attempts.throttled = true;
            attempts
        });
        let mut refused: Vec<Flaky> = refused.collect();
        let drives = futures::future::join_all(refused.iter_mut().map(|a| r.drive(a)));
        let accepted = async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let end = Instant::now() + Duration::from_secs(60);
            while Instant::now() < end && r.pacing.rate().await.is_some() {
                r.pacing.wait_for_turn().await;
                r.pacing.accepted().await;
            }
        };
        let (done, ()) = tokio::join!(drives, accepted);
        assert!(done.iter().all(Result::is_ok));
        let rate = r.pacing.rate().await;
        assert!(rate.is_none_or(|r| r > 1000.0), "{rate:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_delays_only_the_request_that_got_it() {
        let r = registry();
        let mut attempts = flaky(1);
        attempts.retry_after = Some(Duration::from_secs(2));
        attempts.throttled = true;
        let other = async {
            // Another request to the same registry, while the refused one waits.
            tokio::time::sleep(Duration::from_millis(10)).await;
            let start = Instant::now();
            r.pacing.wait_for_turn().await;
            start.elapsed()
        };
        let (done, waited) = tokio::join!(r.drive(&mut attempts), other);
        done.unwrap();
        assert!(waited < Duration::from_millis(100), "{waited:?}");
    }
}
