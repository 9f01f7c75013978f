//! How fast eigenpub talks to one registry: a bound on requests in flight
//! (`max-concurrency`), and a request rate that adapts to what the registry accepts.
//!
//! The rate is unlimited until the registry throttles (429, a rate-limit 403, a 503 with
//! `Retry-After`) often enough to be a limit: a quarter of the answers over the last second.
//! Fewer refusals are sporadic (a registry refusing a few requests whatever the rate:
//! cutting the rate would not stop them, only slow the run down for nothing); each still
//! waits its own `Retry-After`. Once a limit was found, every throttle counts, as the rate
//! then probes just above it. On a limit the rate drops to 90% of the rate the registry
//! accepted over the last second (a multiplicative decrease by the accepted fraction, at
//! most once per second so that one burst of refusals counts once; the first three cuts
//! after an unlimited spell may come a quarter second apart and take at least 30% off, as
//! a first burst says little about the registry's rate), and climbs back while requests
//! succeed: additively, by 5% a second, probing just above the limit; after two calm
//! seconds (and not before a `Retry-After` has passed) multiplicatively, so a lifted limit
//! is found again within seconds. Once calm, the rate is dropped (unlimited again, sporadic
//! refusals judged by their share again) as soon as it is more than twice what the
//! registry accepted over the last second: it no longer holds requests back. A first cut
//! made on refusals alone (nothing accepted yet) is withdrawn when the answers in flight
//! then, accepted within a quarter second, show the refusals were not a quarter of the
//! answers after all.
//! A configured `requests-per-second` is an upper bound throughout.
//! `Retry-After` itself delays only the request that got it (see [`super::transport`]).
//!
//! Pure bookkeeping over tokio time, so it is unit-tested with paused time against a
//! simulated token bucket.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// The adaptive rate never goes below this (requests per second).
const MIN_RATE: f64 = 1.0;
/// Above this the adaptive rate is dropped: the registry is not limiting.
const UNLIMITED: f64 = 100_000.0;
/// The window over which the accepted rate is measured, and the least time between cuts.
const WINDOW: Duration = Duration::from_secs(1);
/// Calm this long after the last throttle before the rate climbs fast again.
const CALM: Duration = Duration::from_secs(2);
/// The least time between the first few cuts after an unlimited spell.
const QUICK: Duration = Duration::from_millis(250);
/// How many cuts may come [`QUICK`]ly after an unlimited spell.
const QUICK_CUTS: u32 = 3;
/// A quick cut leaves at most this much of the rate.
const QUICK_FACTOR: f64 = 0.7;
/// A cut leaves this share of the rate accepted over the last [`WINDOW`]: that count
/// includes the burst a token bucket had saved, and a rate just under the limit lets the
/// bucket refill instead of refusing the next second's requests, each refusal holding
/// one artifact for its `Retry-After` (cutting to the accepted rate itself: 62-149
/// refusals in an apply of 1,200 requests behind 100/s, burst 20, against 52-83).
const BELOW: f64 = 0.9;
/// Probing growth per second near the limit (fraction of the rate).
const PROBE: f64 = 0.05;
/// Growth per second once calm (fraction of the rate).
const RECOVER: f64 = 0.5;
/// While the registry has not limited the rate, a throttle says "you are over a limit"
/// only when at least this share of the answers over the last [`WINDOW`] were refusals:
/// below it, refusals are sporadic (a few requests refused whatever the rate), and
/// cutting the rate would not make them stop. A token bucket's first refusals are most
/// of the answers; a share threshold once limited only let the probe overshoot further
/// (more refusals under a simulated token bucket, for no gain), so there is none.
const LIMIT_SHARE: f64 = 0.25;
/// Answers counted on top of the window's when weighing [`LIMIT_SHARE`], so that the
/// first few answers of a run (two refusals in twenty) do not pass for a limit.
const PRIOR_ANSWERS: f64 = 10.0;

/// A registry's concurrency bound and rate controller.
#[derive(Debug)]
pub(super) struct Pacing {
    permits: Option<Semaphore>,
    pace: Mutex<Pace>,
    /// Set when the registry was given up: nobody waits for a turn any more.
    stopped: AtomicBool,
    stop: Notify,
}

/// A spell of refusals: every answer since `since` was a throttle or a server error.
#[derive(Debug, Clone, Copy)]
pub(super) struct Refusals {
    pub since: Instant,
    /// How many answers the spell holds.
    pub count: u32,
    /// The longest `Retry-After` among them (as the caller capped it).
    pub longest_retry_after: Option<Duration>,
}

/// The rate controller's state.
#[derive(Debug)]
struct Pace {
    /// `requests-per-second` from the project: an upper bound.
    configured: Option<f64>,
    /// The adaptive rate; `None` while the registry has not throttled (or has recovered).
    adaptive: Option<f64>,
    /// When the next request may go.
    next: Instant,
    /// When requests were accepted, over the last [`WINDOW`].
    accepted: VecDeque<Instant>,
    /// When requests were refused (throttled), over the last [`WINDOW`].
    refused: VecDeque<Instant>,
    /// The last throttle that cut the rate.
    last_cut: Option<Instant>,
    /// No fast growth before this (a throttle's `Retry-After`, or [`CALM`] after it).
    hold_until: Instant,
    /// Cuts left that may follow each other after [`QUICK`] rather than [`WINDOW`]: the
    /// first refusals after an unlimited spell measure a burst, not the registry's rate.
    quick_cuts: u32,
    /// When the first cut after an unlimited spell was made on refusals alone (nothing
    /// accepted over the last [`WINDOW`]: it measured no rate, and fell to [`MIN_RATE`]),
    /// for [`QUICK`] after it: the answers to the requests in flight then decide.
    provisional: Option<Instant>,
    /// The registry's refusals since it last accepted a request, if it refused any.
    refusing: Option<Refusals>,
}

impl Pace {
    /// The rate in force: the adaptive one within the configured bound.
    fn rate(&self) -> Option<f64> {
        match (self.configured, self.adaptive) {
            (Some(c), Some(a)) => Some(c.min(a)),
            (c, a) => c.or(a),
        }
    }

    fn forget_before(&mut self, now: Instant) {
        for times in [&mut self.accepted, &mut self.refused] {
            while times.front().is_some_and(|t| now - *t > WINDOW) {
                times.pop_front();
            }
        }
    }

    /// Whether the refusals over the last [`WINDOW`] are a limit rather than sporadic:
    /// always once a limit was found.
    fn over_the_limit(&self) -> bool {
        self.adaptive.is_some() || self.refused_share_is_a_limit()
    }

    /// Whether at least [`LIMIT_SHARE`] of the answers over the last [`WINDOW`] (with
    /// [`PRIOR_ANSWERS`]) were refusals.
    fn refused_share_is_a_limit(&self) -> bool {
        let refused = self.refused.len() as f64;
        let answers = refused + self.accepted.len() as f64;
        refused >= LIMIT_SHARE * (answers + PRIOR_ANSWERS)
    }

    /// Back to no adaptive rate: the next throttle must pass the share test again.
    fn unlimited(&mut self) {
        self.adaptive = None;
        self.quick_cuts = QUICK_CUTS;
        self.provisional = None;
    }
}

impl Pacing {
    pub(super) fn new(max_concurrency: Option<usize>, requests_per_second: Option<f64>) -> Pacing {
        let now = Instant::now();
        Pacing {
            permits: max_concurrency.map(Semaphore::new),
            pace: Mutex::new(Pace {
                configured: requests_per_second.filter(|r| *r > 0.0),
                adaptive: None,
                next: now,
                accepted: VecDeque::new(),
                refused: VecDeque::new(),
                last_cut: None,
                hold_until: now,
                quick_cuts: QUICK_CUTS,
                provisional: None,
                refusing: None,
            }),
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
        }
    }

    /// A place among the requests in flight (none when the registry has no bound).
    pub(super) async fn permit(&self) -> Option<SemaphorePermit<'_>> {
        match &self.permits {
            Some(s) => Some(s.acquire().await.expect("the semaphore is never closed")),
            None => None,
        }
    }

    /// Waits for this registry's pace: requests go no faster than the rate in force.
    pub(super) async fn wait_for_turn(&self) {
        let wait = {
            let mut pace = self.pace.lock().await;
            let now = Instant::now();
            match pace.rate() {
                Some(rate) => {
                    let at = now.max(pace.next);
                    pace.next = at + Duration::from_secs_f64(1.0 / rate);
                    at - now
                }
                None => Duration::ZERO,
            }
        };
        if !wait.is_zero() {
            self.sleep(wait).await;
        }
    }

    /// Sleeps `duration`, or until the registry is given up ([`Pacing::stop`]).
    pub(super) async fn sleep(&self, duration: Duration) {
        let stopped = self.stop.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = stopped => {}
        }
    }

    /// The registry was given up: wakes every request waiting for a turn or a retry.
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.stop.notify_waiters();
    }

    /// The registry refused a request (a throttle or a server error, with its
    /// `Retry-After`): the spell of refusals since it last accepted one, this one counted.
    pub(super) async fn refused(&self, retry_after: Option<Duration>) -> Refusals {
        let mut pace = self.pace.lock().await;
        let spell = pace.refusing.get_or_insert(Refusals {
            since: Instant::now(),
            count: 0,
            longest_retry_after: None,
        });
        spell.count += 1;
        spell.longest_retry_after = spell.longest_retry_after.max(retry_after);
        *spell
    }

    /// The registry accepted a request: count it, and let the rate grow.
    pub(super) async fn accepted(&self) {
        let mut pace = self.pace.lock().await;
        let now = Instant::now();
        pace.accepted.push_back(now);
        pace.forget_before(now);
        pace.refusing = None;
        let Some(rate) = pace.adaptive else {
            return;
        };
        // A first cut made on refusals alone (four of the first sixteen answers, say) is
        // withdrawn when the answers in flight then, accepted, show the refusals were not
        // a quarter of the answers after all: no limit, only a few refused requests.
        if let Some(cut) = pace.provisional {
            if now - cut >= QUICK {
                pace.provisional = None;
            } else if !pace.refused_share_is_a_limit() {
                pace.unlimited();
                pace.hold_until = now;
                return;
            }
        }
        // Per accepted request, so the growth per second is a fraction of the rate.
        let calm = now >= pace.hold_until;
        let growth = if calm { RECOVER } else { PROBE };
        let grown = rate * (1.0 + growth / rate.max(1.0));
        // Unlimited again once calm, when the rate is no longer what holds the requests
        // back: more than twice what the registry accepted over the last second. Growing
        // to [`UNLIMITED`] would take some 200,000 accepted requests, and while limited
        // every throttle cuts, sporadic ones included.
        let binding = grown <= 2.0 * pace.accepted.len() as f64 / WINDOW.as_secs_f64();
        if grown >= UNLIMITED || (calm && !binding) {
            pace.unlimited();
        } else {
            pace.adaptive = Some(grown);
        }
    }

    /// The registry throttled: if that is a limit (not a sporadic refusal), the rate drops
    /// to what it accepted over the last second (once per second), and grows only slowly
    /// until `retry_after` and [`CALM`] have passed. A sporadic one changes nothing.
    pub(super) async fn throttled(&self, retry_after: Option<Duration>) {
        let mut pace = self.pace.lock().await;
        let now = Instant::now();
        pace.forget_before(now);
        pace.refused.push_back(now);
        if !pace.over_the_limit() {
            return;
        }
        let hold = now + retry_after.unwrap_or(Duration::ZERO).max(CALM);
        pace.hold_until = pace.hold_until.max(hold);
        let quick = pace.quick_cuts > 0;
        let guard = if quick { QUICK } else { WINDOW };
        if pace.last_cut.is_some_and(|t| now - t < guard) {
            return;
        }
        if pace.adaptive.is_none() && pace.accepted.is_empty() {
            pace.provisional = Some(now);
        }
        pace.last_cut = Some(now);
        pace.quick_cuts = pace.quick_cuts.saturating_sub(1);
        // The accepted rate over the window, or over the part of it since the first of
        // its requests (a run's first burst, after an idle spell), at least 100 ms.
        let span = pace
            .accepted
            .front()
            .map_or(WINDOW, |first| now - *first)
            .clamp(WINDOW / 10, WINDOW);
        let accepted = pace.accepted.len() as f64 / span.as_secs_f64();
        // A quick cut also takes at least 30% off: a short span still counts the burst.
        let current = match pace.rate() {
            Some(rate) if quick => rate * QUICK_FACTOR,
            Some(rate) => rate,
            None => f64::INFINITY,
        };
        pace.adaptive = Some((accepted * BELOW).min(current).max(MIN_RATE));
    }

    /// The adaptive rate in force (for tests and the verbose report).
    #[cfg(test)]
    pub(super) async fn rate(&self) -> Option<f64> {
        self.pace.lock().await.rate()
    }
}

#[cfg(test)]
mod tests;
