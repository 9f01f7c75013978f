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

use super::auth::same_origin;
use super::error::{self, ErrorKind, RegistryError, error_body};
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

    /// Sleeps before a retry; a throttled registry is paused for every request to it.
    async fn pause(&self, attempt: u32, retry_after: Option<Duration>, throttled: bool) {
        let delay = self.backoff.delay(attempt, retry_after, retry::jitter());
        if throttled {
            self.pacing.throttled(delay).await;
        }
        tokio::time::sleep(delay).await;
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
                request = match registry.authorize(request, &self.scope).await {
                    Ok(r) => r,
                    Err(e) => return Attempt::Done(Err(e)),
                };
            }
            registry.stats.requests.fetch_add(1, Ordering::Relaxed);
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    let (kind, message, help) =
                        error::transport_error(&registry.host, &registry.base, &e);
                    let last = Err(registry.error(kind, None, message, help));
                    if kind != ErrorKind::Unreachable {
                        return Attempt::Done(last);
                    }
                    return Attempt::Again {
                        last,
                        retry_after: None,
                        throttled: false,
                        budget: registry.backoff.attempts.min(3),
                        counted: false,
                    };
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let body = match response.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    let (kind, message, help) =
                        error::transport_error(&registry.host, &registry.base, &e);
                    return Attempt::Again {
                        last: Err(registry.error(kind, Some(status.as_u16()), message, help)),
                        retry_after: None,
                        throttled: false,
                        budget: registry.backoff.attempts,
                        counted: false,
                    };
                }
            };
            let answer = Answer {
                status,
                headers,
                body,
            };
            drop(permit);
            if status == StatusCode::UNAUTHORIZED
                && !self.authenticated_retry
                && same_origin(self.url, &registry.base)
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
                registry.pacing.calm().await;
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
            return Attempt::Again {
                last: Err(last),
                retry_after,
                throttled: verdict == Verdict::Throttled,
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
                budget: 6,
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
        // 200 + 400 + 800 ms at most, half of it at least.
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(700), "{waited:?}");
        assert!(waited <= Duration::from_millis(1400), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_ends_retries_with_the_last_failure() {
        let r = registry();
        let mut attempts = flaky(100);
        let e = r.drive(&mut attempts).await.unwrap_err();
        assert_eq!(attempts.made, 6, "the default budget is six attempts");
        assert_eq!(e.status, Some(503));
        assert_eq!(r.stats.retries.load(Ordering::Relaxed), 5);
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
    async fn a_throttled_answer_holds_back_other_requests() {
        let r = registry();
        let mut attempts = flaky(1);
        attempts.retry_after = Some(Duration::from_secs(2));
        attempts.throttled = true;
        r.drive(&mut attempts).await.unwrap();
        let start = Instant::now();
        r.pacing.wait_for_turn().await;
        // The pause has passed; only the widened spacing (50 ms) may remain.
        assert!(start.elapsed() <= Duration::from_millis(50));
    }
}
