//! How fast eigenpub talks to one registry: a bound on requests in flight
//! (`max-concurrency`), and a request rate that adapts to what the registry accepts.
//!
//! The rate is unlimited until the registry throttles (429, a rate-limit 403, a 503 with
//! `Retry-After`) often enough to be a limit: a quarter of the answers over the last second.
//! Fewer refusals are sporadic (a registry refusing a few requests whatever the rate:
//! cutting the rate would not stop them, only slow the run down for nothing); each still
//! waits its own `Retry-After`. Once a limit was found, every throttle counts, as the rate
//! then probes just above it. On a limit the rate drops to the rate the registry accepted
//! over the last second (a multiplicative decrease by the accepted fraction, at most once
//! per second so that one burst of refusals counts once; the first three cuts after an
//! unlimited spell may come a quarter second apart and take at least 30% off, as a first
//! burst says little about the registry's rate), and climbs back while requests succeed:
//! additively, by 5% a second, probing just above the limit; after two calm seconds (and
//! not before a `Retry-After` has passed) multiplicatively, so a lifted limit is found
//! again within seconds. A configured `requests-per-second` is an upper bound throughout.
//! `Retry-After` itself delays only the request that got it (see [`super::transport`]).
//!
//! Pure bookkeeping over tokio time, so it is unit-tested with paused time against a
//! simulated token bucket.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::{Mutex, Semaphore, SemaphorePermit};
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
        let refused = self.refused.len() as f64;
        let answers = refused + self.accepted.len() as f64;
        self.adaptive.is_some() || refused >= LIMIT_SHARE * (answers + PRIOR_ANSWERS)
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
            }),
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
            tokio::time::sleep(wait).await;
        }
    }

    /// The registry accepted a request: count it, and let the rate grow.
    pub(super) async fn accepted(&self) {
        let mut pace = self.pace.lock().await;
        let now = Instant::now();
        pace.accepted.push_back(now);
        pace.forget_before(now);
        let Some(rate) = pace.adaptive else {
            return;
        };
        // Per accepted request, so the growth per second is a fraction of the rate.
        let growth = if now >= pace.hold_until {
            RECOVER
        } else {
            PROBE
        };
        let grown = rate * (1.0 + growth / rate.max(1.0));
        pace.adaptive = (grown < UNLIMITED).then_some(grown);
        if pace.adaptive.is_none() {
            pace.quick_cuts = QUICK_CUTS;
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
        pace.adaptive = Some(accepted.min(current).max(MIN_RATE));
    }

    /// The adaptive rate in force (for tests and the verbose report).
    #[cfg(test)]
    async fn rate(&self) -> Option<f64> {
        self.pace.lock().await.rate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Times (from the start) at which `n` turns are granted, one after another.
    async fn turns(pacing: &Pacing, n: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..n {
            pacing.wait_for_turn().await;
            at.push(start.elapsed());
        }
        at
    }

    #[tokio::test(start_paused = true)]
    async fn a_configured_rate_spaces_requests() {
        let pacing = Pacing::new(None, Some(10.0));
        let at = turns(&pacing, 4).await;
        let ms: Vec<u128> = at.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 100, 200, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_limits_means_no_waiting() {
        let pacing = Pacing::new(None, None);
        let at = turns(&pacing, 5).await;
        assert!(at.iter().all(|d| d.is_zero()));
        assert!(pacing.permit().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded() {
        let pacing = Pacing::new(Some(2), None);
        let a = pacing.permit().await;
        let b = pacing.permit().await;
        assert!(a.is_some() && b.is_some());
        let third = tokio::time::timeout(Duration::from_secs(1), pacing.permit()).await;
        assert!(
            third.is_err(),
            "a third request waits while two are in flight"
        );
        drop(a);
        assert!(pacing.permit().await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_throttles_cuts_once() {
        let pacing = Pacing::new(None, None);
        // 50 accepted a second, then a burst of thirty 429s.
        for _ in 0..50 {
            pacing.accepted().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for _ in 0..30 {
            pacing.throttled(Some(Duration::from_secs(1))).await;
        }
        let rate = pacing.rate().await.unwrap();
        assert!((49.0..=52.0).contains(&rate), "{rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_burst_is_measured_over_its_own_span() {
        let pacing = Pacing::new(None, None);
        // 20 accepted within 100 ms of the start, then refused: 200 a second, not 20.
        for _ in 0..20 {
            pacing.accepted().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for _ in 0..10 {
            pacing.throttled(None).await;
        }
        let rate = pacing.rate().await.unwrap();
        assert!((190.0..=210.0).contains(&rate), "{rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_configured_rate_stays_an_upper_bound() {
        let pacing = Pacing::new(None, Some(20.0));
        for _ in 0..10_000 {
            pacing.accepted().await;
        }
        assert_eq!(pacing.rate().await, Some(20.0));
    }

    /// A registry behind a token bucket: `rate` tokens a second, at most `burst` saved.
    struct Bucket {
        rate: f64,
        burst: f64,
        tokens: f64,
        at: Instant,
    }

    impl Bucket {
        fn take(&mut self) -> bool {
            let now = Instant::now();
            self.tokens = (self.tokens + (now - self.at).as_secs_f64() * self.rate).min(self.burst);
            self.at = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                true
            } else {
                false
            }
        }
    }

    /// Counts over a simulated run: (accepted, throttled).
    #[derive(Default)]
    struct Tally {
        accepted: u64,
        throttled: u64,
    }

    /// `workers` clients sending as fast as the pacing lets them for `run`, each request
    /// taking 5 ms; a refused one waits its `Retry-After` (1 s) and goes again.
    async fn simulate(
        pacing: Arc<Pacing>,
        bucket: Arc<std::sync::Mutex<Bucket>>,
        workers: usize,
        run: Duration,
    ) -> Tally {
        let end = Instant::now() + run;
        let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (pacing, bucket, tally) = (pacing.clone(), bucket.clone(), tally.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    pacing.wait_for_turn().await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let ok = bucket.lock().unwrap().take();
                    if ok {
                        tally.lock().unwrap().accepted += 1;
                        pacing.accepted().await;
                    } else {
                        tally.lock().unwrap().throttled += 1;
                        pacing.throttled(Some(Duration::from_secs(1))).await;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let t = tally.lock().unwrap();
        Tally {
            accepted: t.accepted,
            throttled: t.throttled,
        }
    }

    /// `workers` clients for `run` against a registry that refuses `percent` of the
    /// requests at random (429, `Retry-After: 1`) however fast they come, each request
    /// taking 10 ms; `heed` says whether the pacing hears of the refusals. Returns
    /// (accepted, refused).
    async fn sporadic(workers: usize, percent: u64, seed: u64, heed: bool) -> (u64, u64) {
        let pacing = Arc::new(Pacing::new(None, None));
        let draw = Arc::new(std::sync::Mutex::new(seed));
        let end = Instant::now() + Duration::from_secs(10);
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (pacing, draw) = (pacing.clone(), draw.clone());
            tasks.push(tokio::spawn(async move {
                let (mut accepted, mut refused) = (0, 0);
                while Instant::now() < end {
                    pacing.wait_for_turn().await;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let x = {
                        // xorshift64: the same draws for the same seed
                        let mut x = draw.lock().unwrap();
                        *x ^= *x << 13;
                        *x ^= *x >> 7;
                        *x ^= *x << 17;
                        *x
                    };
                    if x % 100 >= percent {
                        accepted += 1;
                        pacing.accepted().await;
                    } else {
                        refused += 1;
                        if heed {
                            pacing.throttled(Some(Duration::from_secs(1))).await;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                (accepted, refused)
            }));
        }
        let mut total = (0, 0);
        for t in tasks {
            let (a, r) = t.await.unwrap();
            total = (total.0 + a, total.1 + r);
        }
        total
    }

    #[tokio::test(start_paused = true)]
    async fn sporadic_refusals_cost_no_more_than_their_own_waits() {
        // 6% refused whatever the rate: no limit to settle under, cutting would not help.
        // (Cutting the rate on every refusal, as before, kept 30-40% of this.)
        for workers in [4, 16, 32] {
            for seed in 1..=6u64 {
                let seed = seed * 7919;
                let (ideal, _) = sporadic(workers, 6, seed, false).await;
                let (accepted, refused) = sporadic(workers, 6, seed, true).await;
                let share = accepted as f64 / ideal as f64;
                assert!(
                    share >= 0.9,
                    "{workers} workers, seed {seed}: {accepted} accepted ({refused} refused) \
                     against {ideal} when only the Retry-After waits count: {share:.2}"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_refusal_among_many_acceptances_changes_no_rate() {
        let pacing = Pacing::new(None, None);
        for _ in 0..50 {
            pacing.accepted().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pacing.throttled(Some(Duration::from_secs(1))).await;
        assert_eq!(pacing.rate().await, None, "still unlimited");
        let at = turns(&pacing, 3).await;
        assert!(at.iter().all(|d| d.is_zero()), "nobody else waits: {at:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn converges_under_a_token_bucket_and_recovers_when_it_lifts() {
        let pacing = Arc::new(Pacing::new(None, None));
        let bucket = Arc::new(std::sync::Mutex::new(Bucket {
            rate: 100.0,
            burst: 20.0,
            tokens: 20.0,
            at: Instant::now(),
        }));
        // 32 workers of 5 ms could send 6400 requests a second; the bucket allows 100.
        let run = Duration::from_secs(30);
        let t = simulate(pacing.clone(), bucket.clone(), 32, run).await;
        let allowed = 100.0 * run.as_secs_f64() + 20.0;
        let used = t.accepted as f64 / allowed;
        let refused = t.throttled as f64 / (t.accepted + t.throttled) as f64;
        assert!(used >= 0.8, "used {used:.2} of the allowed rate");
        assert!(refused <= 0.10, "{refused:.3} of the requests were refused");
        let rate = pacing.rate().await.expect("still limited");
        assert!((80.0..=130.0).contains(&rate), "settled at {rate:.1}/s");

        // The limit lifts: within ten seconds the rate is back above 1000/s.
        bucket.lock().unwrap().rate = 1_000_000.0;
        bucket.lock().unwrap().burst = 1_000_000.0;
        let t = simulate(pacing.clone(), bucket, 32, Duration::from_secs(10)).await;
        assert_eq!(t.throttled, 0);
        assert!(
            pacing.rate().await.is_none_or(|r| r > 1000.0),
            "rate after the limit lifted: {:?}",
            pacing.rate().await
        );
    }
}
