//! How fast eigenpub talks to one registry: how many requests are in flight (a window
//! that adapts, see [`window`]), and a request rate that adapts to what the registry
//! accepts.
//!
//! The rate is unlimited until the registry throttles (429, a rate-limit 403, a 503 with
//! `Retry-After`). A throttle is then a question: is the registry over a limit (a token
//! bucket: it accepts some rate and refuses what comes faster), or does it refuse a few
//! requests whatever the rate (sporadic refusals)? The share of refused answers cannot
//! tell them apart: with few requests in flight, each refused one waits its
//! `Retry-After` and sends nothing meanwhile, so a token bucket's refusals are about as
//! rare among the answers as sporadic ones (some 7% at 8 in flight behind 100 req/s,
//! under the quarter the rule before this one asked for). What tells them apart is the
//! rate a refused request was sent at, against the rate the registry has accepted: a
//! limit refuses what comes faster than it accepts, sporadic refusals come at any rate.
//!
//! So the controller keeps the best rate the registry accepted lately (over two-second
//! spans, so that a token bucket's saved burst counts for half; at least a quarter
//! second in a run's first moments; remembered 10 s), as TCP Westwood and BBR estimate a
//! path from what it delivered rather than from what was sent. A throttle, while
//! unlimited and with enough answers to measure on (24 over the last second, a fifth of
//! them refused, or four refusals making 30% of them: with 4 in flight behind a token
//! bucket, requests refused together wait out their `Retry-After` together and few
//! answers come; the requests still in flight count with the answers, as a limiter
//! answers 429 at once and the requests it lets through take their time), cuts the
//! rate to 90% of that. A limit refuses most of what comes past it (refused artifacts
//! lend their places, [`crate::registry::at_once`]); 6% sporadic refusals do not cut.
//! After each cut the rate holds for a second (not after a first cut made in a run's
//! first two seconds, likely far under the limit), then grows: fast (doubling every
//! 0.35 s, every 0.17 s before a limit refused anything) up to just under the rate the
//! limit is taken to refuse, by 2% a second from there, by 50% a second once past it and calm for
//! two seconds (and not before a `Retry-After` has passed). Requests waiting for a turn take a new
//! one when the rate is cut or grows by a quarter.
//!
//! A request goes no sooner than a spacing (at the rate in force) after the one before
//! it went, to the microsecond ([`Pacing::depart`]): a turn is booked a spacing after
//! the one before, but a request woke for it up to a millisecond or two late (the
//! timer's ticks, a runtime busy with answers) and the next one on time, and a token
//! bucket with no burst to speak of refuses a request that comes early. Logged at both
//! ends of scripts/bench's bucket, every refused request had been sent less than 10 ms
//! after the one before it, 5% of them at 90 a second; the way there added 0.4 +- 0.2
//! ms. So a token bucket refuses only a rate past its own, and each throttle after a cut
//! is weighed by the rate its request was sent at (the rate in force if it waited for
//! it or went close behind the request before it):
//!
//! - at or below the *safe* rate (90% of the best accepted): sporadic, as a token
//!   bucket does not refuse a rate it accepted; three of those (less than a quarter of
//!   the answers there, and of all the answers since the cut) and the rate grows as after a first cut and is dropped
//!   (unlimited again) once it holds nothing back, their share remembered: a later
//!   throttle cuts only when the refused share over the last second is more than twice
//!   it. Unless refused under 30% as often as when a limit was last found on 64 answers
//!   or more: a limit's refusals fall steeply once the rate is under it, but a few go on
//!   near it (requests reach a registry a few milliseconds off the spacing they were
//!   sent at, and a token bucket with no burst to speak of refuses one that comes
//!   early); taken for sporadic ones they made the rate unlimited again, and every
//!   request waiting for a turn went at once into the limit. More than a quarter: the
//!   best rate was a burst, or a quota since spent, and the rate is cut to 90% of the
//!   last second's accepted;
//! - at the limit's rate, above the safe one (the limit may have been taken from a rate
//!   a saved burst let through): three of those, and the rate is cut to the safe one and
//!   holds there until the share refused above would have made three refusals (none
//!   came: a limit) or three came (sporadic); as the code stands, answers at the limit's
//!   rate are not counted, so that share is taken as 1 and the test ends after three
//!   answers at the safe rate. Unless the safe rate was measured in the run's first two
//!   seconds: there it holds the climb from the first cut (25 a second where the limit
//!   was 100) or a saved burst (above the limit), and the rate is cut to 90% of the rate
//!   in force instead (a cut made then also keeps its safe rate under its own, so that
//!   refusals at it are not taken for sporadic ones; nor are they ever weighed against
//!   refusals at the safe rate, which is the cost: a registry that throttles in a run's
//!   first moments and then refuses 6% at random can hold the rate low for seconds);
//! - above the limit's rate: the limit, unless no more often than at the safe rate
//!   (sporadic, three in all, as above); the rate is cut to 95% of the rate refused
//!   (the rate the request went at; if it did not wait, the rate in force, or the rate
//!   requests went at if less: requests waiting out a `Retry-After` send nothing), or,
//!   if that is more than 1.25 times what was accepted and a quarter of the last
//!   second's answers were refused, to 60% of it (TCP's multiplicative decrease) but not
//!   below 90% of the best accepted; at most once a second, unless the rate grew past
//!   the one cut to since. The rate then grows fast again up to just under the rate
//!   refused (the rate the refused request went at, if paced, else the rate in force;
//!   after a cut of 5% of the former, at once), and slowly from there.
//!
//! Refusals a cut was made on, and those of requests sent before it, are judged with it:
//! they do not count in the share refused when the next throttle is weighed (counted
//! again, a run's first refusals made the cut after its first climb 40% instead of 5%,
//! held a second).
//!
//! The AWS SDKs' adaptive retry mode cuts on every throttle (to 70% of what was sent,
//! CUBIC growth after), and so slows down for good on sporadic ones. Once calm, the rate
//! is dropped (unlimited again) when no request waits for a turn. A configured
//! `requests-per-second` is an upper bound throughout. `Retry-After` itself delays only
//! the request that got it (see [`super::transport`]).
//!
//! Pure bookkeeping over tokio time, so it is unit-tested with paused time against
//! simulated registries (token buckets, sporadic refusals, round trips).

mod window;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

pub(super) use window::Place;
use window::Window;

/// The timer's resolution: a sleep ends on the first tick after its deadline.
const TICK: Duration = Duration::from_millis(1);
/// Whether a request waits out its last [`TICK`] yielding, to go at its time to the
/// microsecond: not under the unit tests' paused clock, which stands still while a task
/// yields.
const PRECISE: bool = !cfg!(test);
/// The adaptive rate never goes below this (requests per second).
const MIN_RATE: f64 = 1.0;
/// Above this the adaptive rate is dropped: the registry is not limiting.
const UNLIMITED: f64 = 100_000.0;
/// The window over which refusals are weighed, and the least time between cuts on
/// refusals above the limit's rate.
const WINDOW: Duration = Duration::from_secs(1);
/// The span the best accepted rate is measured over: a token bucket's saved burst counts
/// for half of what it would over a second (100 req/s with bursts of 20: at most 110).
const RATE_SPAN: Duration = Duration::from_secs(2);
/// The least span an accepted rate is measured over: a run's first answers come within
/// milliseconds, and twenty in 5 ms (a token bucket's saved burst) are not 4,000 a
/// second.
const MIN_SPAN: Duration = Duration::from_millis(250);
/// How long the best accepted rate is remembered.
const PEAK_MEMORY: Duration = Duration::from_secs(10);
/// Calm this long after the last throttle (and its `Retry-After`) before the rate grows
/// at [`RECOVER`] or is dropped.
const CALM: Duration = Duration::from_secs(2);
/// A cut leaves this share of the rate: a rate just under the limit lets a token bucket
/// refill instead of refusing the next second's requests, each refusal holding one
/// artifact for its `Retry-After`. The safe rate is this share of the best accepted.
const BELOW: f64 = 0.9;
/// After a cut, the rate holds this long (refusals then come at the rate cut to).
const HOLD: Duration = Duration::from_secs(1);
/// Growth per second (fraction of the rate) up to [`NEAR`] the rate the limit is taken
/// to refuse: the rate doubles every 0.35 s, as in TCP's slow start, so that a limit
/// measured on little (a second of answers thinned by requests waiting out their
/// `Retry-After`) costs little.
const GROWTH: f64 = 2.0;
/// See [`GROWTH`].
const NEAR: f64 = 0.95;
/// Growth per second before a limit refused any rate (the first cut, measured on a
/// run's first answers, may be far below it): the rate doubles every 0.17 s.
const FIRST_GROWTH: f64 = 4.0;
/// Growth per second near the rate the limit is taken to refuse: from a cut of 5%, back
/// to the rate refused in 2.5 s, after the second it holds (growing past the rate
/// refused right after the hold, as before f523443, a token bucket that holds refused
/// about once a second; at 5% a second to the rate refused, about every two seconds;
/// each refusal late in a run's reads or at its end holds the run up for its
/// `Retry-After`)…
const PROBE: f64 = 0.02;
/// … and past it once calm (a limit that lifted is left behind within seconds).
const RECOVER: f64 = 0.5;
/// A rate grown this many times over the one turns were booked at books them anew.
const REBOOK: f64 = 1.25;
/// How many of the latest turns measure the rate requests go at…
const RECENT_TURNS: usize = 6;
/// … over this span at least.
const MIN_GAP: Duration = Duration::from_millis(10);
/// A refusal at a rate more than this many times what was accepted (the best rate, or
/// the last second's, if more)…
const CLOSE: f64 = 1.25;
/// … cuts to this share of it (TCP's multiplicative decrease), not below the safe rate,
/// when more than a quarter ([`LIMIT_SHARE`]) of the last second's answers were refused
/// (a rate growing fast past what was accepted, refused once, is a rate just past the
/// limit).
const DEEP: f64 = 0.6;
/// A refusal near the rate accepted cuts to this share of the rate refused: requests go
/// a spacing apart to the microsecond ([`Pacing::depart`]), so a token bucket refuses
/// only a rate past its own, and a cut of 5% is under it.
const NEAR_CUT: f64 = 0.95;
/// A request that did not wait went at the rate in force if it left within this share of
/// a spacing after its earliest time.
const CLOSE_BEHIND: f64 = 0.25;
/// Refusals at the safe rate that make them sporadic (or the limit's, see
/// [`Cut::testing`]).
const SPORADIC_REFUSALS: u32 = 3;
/// Answers over the last [`WINDOW`] that measure the share refused when a rate is set
/// from unlimited (with fewer, a few sporadic refusals together look like a limit's).
const MEASURED: f64 = 64.0;
/// Refusals are sporadic only when their share after a cut is at least this share of the
/// one measured when a limit was last found (see [`Pace::limit_share`]).
const SAME: f64 = 0.3;
/// Refusals at the safe rate this common are no sporadic ones: the best rate the safe
/// one was taken from was a burst, or a limit that no longer holds.
const LIMIT_SHARE: f64 = 0.25;
/// Refusals a test of the safe rate waits for (see [`Cut::testing`]).
const TEST_REFUSALS: f64 = 3.0;
/// While unlimited, a throttle cuts when the last [`WINDOW`] holds this many answers
/// (a run's first few say too little, and measure no rate: a refusal among the first
/// four is a 6% sporadic one 22% of the time), or (a token bucket with no burst to speak
/// of)…
const GATE_ANSWERS: f64 = 24.0;
/// … refused at least this share of them (6% sporadic refusals do not cut: refused
/// artifacts lend their places, so a limit refuses most of what comes past it), or…
const GATE_MIN_SHARE: f64 = 0.2;
/// … at least this many refusals…
const GATE_REFUSALS: usize = 4;
/// … making this share of the answers, with something accepted.
const GATE_SHARE: f64 = 0.3;
/// Once sporadic refusals were recognised, a throttle while unlimited cuts only when the
/// refused share over the last [`WINDOW`] is more than this many times theirs.
const NOISE_MARGIN: f64 = 2.0;
/// Accepted answers counted on top of the refusals' when weighing their share.
const PRIOR_ANSWERS: f64 = 10.0;

/// Prints what the controller does when `PACING_TRACE` is set (tests only).
macro_rules! trace {
    ($pace:expr, $($arg:tt)*) => {
        #[cfg(test)]
        if std::env::var_os("PACING_TRACE").is_some() {
            eprintln!(
                "{:>8.3} rate {:>8.1} | {}",
                $pace.born.elapsed().as_secs_f64(),
                $pace.rate().unwrap_or(f64::INFINITY),
                format!($($arg)*)
            );
        }
    };
}

/// A registry's window of requests in flight and rate controller.
#[derive(Debug)]
pub(super) struct Pacing {
    window: Window,
    pace: Mutex<Pace>,
    /// Set when the registry was given up: nobody waits for a turn any more.
    stopped: AtomicBool,
    stop: Notify,
    /// The turns were booked anew (a new generation): waiting requests take new ones.
    rebook: Notify,
}

/// A request's turn: when it was given (at the rate then in force), and when the request
/// went.
#[derive(Debug, Clone, Copy)]
pub(super) struct Turn {
    given: Instant,
    at: Instant,
    /// The rate in force when the request went, if it waited for it (its turn, or a
    /// spacing after the request before it).
    paced: Option<f64>,
}

impl Turn {
    /// A turn given now, outside the pace (a token request).
    pub(super) fn now() -> Turn {
        let now = Instant::now();
        Turn {
            given: now,
            at: now,
            paced: None,
        }
    }

    /// A turn given and taken at `at` (for tests).
    #[cfg(test)]
    fn at(at: Instant) -> Turn {
        Turn {
            given: at,
            at,
            paced: None,
        }
    }
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

/// A cut of the rate.
#[derive(Debug, Clone, Copy)]
struct Cut {
    at: Instant,
    /// The rate it set.
    limit: f64,
    /// 90% of the best rate the registry accepted lately (no more than `limit`): a
    /// token bucket does not refuse requests sent at it, sporadic refusals go on.
    safe: f64,
    /// Refused at this share at the limit's rate, the rate is now the safe one, and
    /// holds until that share would have made [`TEST_REFUSALS`] refusals here (a limit:
    /// none came) or three came (sporadic). (`Pacing::accepted` does not count answers
    /// at the limit's rate in `Pace::between`, so the share is 1: see the module doc.)
    testing: Option<f64>,
    /// Answers at the safe rate since.
    tested: u32,
    /// How long the rate holds before it grows.
    hold: Duration,
    /// Whether `safe` was measured over a whole [`RATE_SPAN`] (not on a run's first
    /// moments, which hold the climb from its first cut).
    measured: bool,
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
    /// Counts bookings of turns (a cut, a rate grown by a quarter, unlimited again): a
    /// request that waited for a turn given before takes another.
    generation: u64,
    /// The rate the turns of this generation were booked at.
    booked: f64,
    /// When the latest request went: a new booking keeps its spacing from it.
    last_turn: Instant,
    /// When the last [`RECENT_TURNS`] requests went (the latest last: see
    /// [`Pace::departed`]).
    turns: VecDeque<Instant>,
    /// When requests were accepted, over the last [`RATE_SPAN`].
    accepted: VecDeque<Instant>,
    /// When requests were refused (throttled), over the last [`WINDOW`].
    refused: VecDeque<Instant>,
    /// When the registry first answered (the run's age, for measuring rates).
    first_answer: Option<Instant>,
    /// The best accepted rate over the last [`PEAK_MEMORY`], and when it was seen.
    peak: (f64, Instant),
    /// The last cut.
    last_cut: Option<Cut>,
    /// Answers and refusals at the limit's rate, above the safe rate, since the last
    /// cut.
    between: (u32, u32),
    /// Answers and refusals, since the rate was set, to requests sent at or below the
    /// safe rate…
    below: (u32, u32),
    /// … and above it.
    above: (u32, u32),
    /// The rate in force when the limit last refused.
    ceiling: Option<f64>,
    /// The window before the first cut: back to it if the refusals were sporadic.
    window_before: Option<usize>,
    /// When the rate last grew.
    grown_at: Instant,
    /// No fast growth before this (a throttle's `Retry-After`, or [`CALM`] after it).
    hold_until: Instant,
    /// The share of sporadic refusals, once recognised.
    sporadic: f64,
    /// The share of answers refused when a rate was last set from unlimited on enough
    /// answers to measure it ([`MEASURED`]): refusals are sporadic only if about as
    /// common (a limit's fall steeply once the rate is under it).
    limit_share: Option<f64>,
    /// The smoothed round trip of accepted requests (turn to answer).
    round_trip: Option<Duration>,
    /// The least round trip of an accepted request (the way to the registry, without
    /// the queues a run builds).
    least_round_trip: Option<Duration>,
    /// The registry's refusals since it last accepted a request, if it refused any.
    refusing: Option<Refusals>,
    /// When the controller was made (for tracing).
    #[cfg(test)]
    born: Instant,
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
        while self.accepted.front().is_some_and(|t| now - *t > RATE_SPAN) {
            self.accepted.pop_front();
        }
        while self.refused.front().is_some_and(|t| now - *t > WINDOW) {
            self.refused.pop_front();
        }
    }

    /// Answers accepted over the last [`WINDOW`].
    fn accepted_in_window(&self, now: Instant) -> usize {
        let recent = self.accepted.partition_point(|t| now - *t > WINDOW);
        self.accepted.len() - recent
    }

    /// The accepted rate over the last [`RATE_SPAN`], or over the run so far if younger
    /// (at least [`MIN_SPAN`]).
    fn accepted_rate(&self, now: Instant) -> f64 {
        let age = self
            .first_answer
            .map_or(Duration::ZERO, |first| now - first);
        self.accepted.len() as f64 / age.clamp(MIN_SPAN, RATE_SPAN).as_secs_f64()
    }

    /// The best rate the registry accepted lately.
    fn best(&self, now: Instant) -> f64 {
        let current = self.accepted_rate(now);
        if now - self.peak.1 > PEAK_MEMORY {
            current
        } else {
            self.peak.0.max(current)
        }
    }

    /// Whether a throttle while unlimited is worth setting a rate: enough answers over
    /// the last [`WINDOW`] to measure a rate on (or many refused), and more than twice
    /// the sporadic refusals already recognised.
    ///
    /// The share counts the requests still in flight (`in_flight`) with the answers: a
    /// registry's limiter answers 429 at once while the requests it lets through take
    /// their time, so the first answers to many requests sent together are mostly the
    /// refused ones, whatever their share (the first 8 of 128 uploads at 6% sporadic).
    fn worth_a_rate(&self, now: Instant, in_flight: usize) -> bool {
        let refused = self.refused.len() as f64;
        let answers = refused + self.accepted_in_window(now) as f64;
        let share = refused / (answers + in_flight as f64).max(1.0);
        // (With nothing accepted yet there is no rate to measure.)
        let many =
            self.refused.len() >= GATE_REFUSALS && share >= GATE_SHARE && !self.accepted.is_empty();
        ((answers >= GATE_ANSWERS && share >= GATE_MIN_SHARE) || many)
            && share > NOISE_MARGIN * self.sporadic
    }

    /// When the latest request went, if one did (see [`Pacing::depart`]).
    fn departed(&self) -> Option<Instant> {
        self.turns.back().copied()
    }

    /// A request went at `at`.
    fn took_turn(&mut self, at: Instant) {
        self.last_turn = at;
        if self.turns.len() == RECENT_TURNS {
            self.turns.pop_front();
        }
        self.turns.push_back(at);
    }

    /// The rate requests went at over the last few (at most the last
    /// [`WINDOW`]): less than the rate in force while requests wait out their
    /// `Retry-After`.
    fn sending_rate(&self, now: Instant) -> Option<f64> {
        let first = self.turns.iter().find(|t| now - **t <= WINDOW)?;
        let last = self.turns.back()?;
        let n = self.turns.iter().filter(|t| now - **t <= WINDOW).count();
        (n >= 4).then(|| (n - 1) as f64 / (*last - *first).max(MIN_GAP).as_secs_f64())
    }

    /// Books turns anew, at the rate in force.
    fn rebook(&mut self, now: Instant) {
        self.generation += 1;
        self.booked = self.rate().unwrap_or(f64::INFINITY);
        let spacing = Duration::from_secs_f64(1.0 / self.booked);
        self.next = now.max(self.last_turn.min(now) + spacing);
    }

    /// Back to no adaptive rate.
    fn unlimited(&mut self, now: Instant) {
        self.adaptive = None;
        self.last_cut = None;
        self.between = (0, 0);
        self.below = (0, 0);
        self.above = (0, 0);
        self.ceiling = None;
        self.window_before = None;
        self.hold_until = now;
    }

    /// The window that the rate in force needs at least: twice the requests one round
    /// trip holds at that rate.
    fn window_needed(&self) -> usize {
        match (self.rate(), self.round_trip) {
            (Some(rate), Some(rtt)) => (2.0 * rate * rtt.as_secs_f64()).ceil() as usize + 1,
            _ => 1,
        }
    }
}

impl Pacing {
    /// `max_concurrency`: at most this many requests in flight (the window adapts up to
    /// it); `requests_per_second`: at most this rate.
    pub(super) fn new(max_concurrency: usize, requests_per_second: Option<f64>) -> Pacing {
        let now = Instant::now();
        Pacing {
            window: Window::new(max_concurrency),
            pace: Mutex::new(Pace {
                configured: requests_per_second.filter(|r| *r > 0.0),
                adaptive: None,
                next: now,
                generation: 0,
                booked: f64::INFINITY,
                last_turn: now,
                turns: VecDeque::new(),
                accepted: VecDeque::new(),
                refused: VecDeque::new(),
                first_answer: None,
                peak: (0.0, now),
                last_cut: None,
                between: (0, 0),
                below: (0, 0),
                above: (0, 0),
                ceiling: None,
                window_before: None,
                grown_at: now,
                hold_until: now,
                sporadic: 0.0,
                limit_share: None,
                round_trip: None,
                least_round_trip: None,
                refusing: None,
                #[cfg(test)]
                born: now,
            }),
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
            rebook: Notify::new(),
        }
    }

    /// A place among the requests in flight.
    pub(super) async fn permit(&self) -> Place<'_> {
        self.window.enter().await
    }

    /// Waits for this registry's pace (requests go no faster than the rate in force; a
    /// cut, or a rate grown by a quarter, applies at once to the requests waiting);
    /// returns the turn, which the request's answer is reported with.
    pub(super) async fn wait_for_turn(&self) -> Turn {
        loop {
            let rebooked = self.rebook.notified();
            tokio::pin!(rebooked);
            rebooked.as_mut().enable();
            let (turn, generation, wait) = {
                let mut pace = self.pace.lock().await;
                let now = Instant::now();
                match pace.rate() {
                    Some(rate) => {
                        let at = now.max(pace.next);
                        pace.next = at + Duration::from_secs_f64(1.0 / rate);
                        (
                            Turn {
                                given: now,
                                at,
                                paced: None,
                            },
                            pace.generation,
                            at - now,
                        )
                    }
                    None => {
                        pace.took_turn(now);
                        return Turn {
                            given: now,
                            at: now,
                            paced: None,
                        };
                    }
                }
            };
            if !wait.is_zero() {
                tokio::select! {
                    () = self.sleep(wait) => {}
                    () = &mut rebooked => {}
                }
                if self.pace.lock().await.generation != generation
                    && !self.stopped.load(Ordering::Acquire)
                {
                    continue;
                }
            }
            return self.depart(turn, !wait.is_zero()).await;
        }
    }

    /// Lets a request whose turn came go, once at least a spacing at the rate in force
    /// has passed since the request before it went: a turn is booked a spacing after the
    /// one before, but a request wakes for it up to a millisecond or two late (the timer's
    /// ticks, a runtime busy with answers), and the next one on time; a token bucket
    /// with no burst to speak of refuses a request come early, whatever the rate
    /// (scripts/bench's bucket refused every request sent less than 10 ms after the one
    /// before it, 5% of them at 90 a second, where the proxy added 0.5 +- 0.2 ms).
    async fn depart(&self, mut turn: Turn, mut waited: bool) -> Turn {
        loop {
            let rebooked = self.rebook.notified();
            tokio::pin!(rebooked);
            rebooked.as_mut().enable();
            let wait = {
                let mut pace = self.pace.lock().await;
                let now = Instant::now();
                let departed = pace.departed();
                let (earliest, spacing) = match (pace.rate(), departed) {
                    (Some(rate), Some(departed)) => {
                        let spacing = Duration::from_secs_f64(1.0 / rate);
                        (departed + spacing, spacing)
                    }
                    _ => (now, Duration::ZERO),
                };
                if now >= earliest || self.stopped.load(Ordering::Acquire) {
                    // Went at the rate in force: waited for it, or close behind the request
                    // before it.
                    let close =
                        departed.is_some() && now < earliest + spacing.mul_f64(CLOSE_BEHIND);
                    turn.paced = if waited || close { pace.rate() } else { None };
                    pace.took_turn(now);
                    turn.at = now;
                    return turn;
                }
                waited = true;
                // The turns booked after this one keep their spacing from it.
                pace.next = pace.next.max(earliest + spacing);
                earliest - now
            };
            if PRECISE && wait <= TICK {
                // The timer wakes on its next millisecond tick: the last one is waited
                // out yielding to the other tasks.
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                () = self.sleep(if PRECISE { wait - TICK } else { wait }) => {}
                () = &mut rebooked => {}
            }
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

    /// The registry accepted a request sent on `turn`: count it, and let the rate and
    /// the window grow.
    pub(super) async fn accepted(&self, turn: Turn) {
        let mut pace = self.pace.lock().await;
        let now = Instant::now();
        let rtt = now - turn.at;
        pace.round_trip = Some(match pace.round_trip {
            Some(srtt) => (srtt * 7 + rtt) / 8,
            None => rtt,
        });
        pace.least_round_trip = Some(pace.least_round_trip.map_or(rtt, |least| least.min(rtt)));
        pace.accepted.push_back(now);
        pace.first_answer.get_or_insert(now);
        pace.forget_before(now);
        pace.refusing = None;
        // The best rate over whole spans only: a run's first moments count a token
        // bucket's saved burst as a rate (twenty in a quarter second: 80 a second).
        let whole = pace
            .first_answer
            .is_some_and(|first| now - first >= RATE_SPAN);
        let accepted = pace.accepted_rate(now);
        if whole && (accepted >= pace.peak.0 || now - pace.peak.1 > PEAK_MEMORY) {
            pace.peak = (accepted, now);
        }
        let Some(rate) = pace.adaptive else {
            // Unlimited: the window may grow (limited, the rate holds requests back,
            // not the window).
            self.window
                .accepted(now >= pace.hold_until, pace.least_round_trip.unwrap_or(rtt));
            return;
        };
        let in_flight = pace.round_trip.unwrap_or_default();
        if let Some(cut) = pace.last_cut.as_mut() {
            let counted = turn.given > cut.at + in_flight;
            if counted && rate <= cut.safe {
                cut.tested += 1;
            }
            if let Some(share) = cut.testing
                && f64::from(cut.tested) * share >= TEST_REFUSALS
            {
                cut.testing = None; // none came: a limit
            }
            let holding = now - cut.at < cut.hold || cut.testing.is_some();
            if counted {
                if rate <= cut.safe {
                    pace.below.0 += 1;
                } else {
                    pace.above.0 += 1;
                }
            }
            if holding {
                return; // the rate holds a while: are the refusals gone?
            }
        }
        // Exponential in time (answers thinned by Retry-After waits would slow a growth
        // per answer): fast up to just under the rate the limit refused, slowly from
        // there, fast again past it once calm (a limit that lifted).
        let calm = now >= pace.hold_until;
        let growth = match pace.ceiling {
            Some(ceiling) if rate >= ceiling && calm => RECOVER,
            Some(ceiling) if rate >= NEAR * ceiling => PROBE,
            Some(_) => GROWTH,
            None => FIRST_GROWTH,
        };
        let since = pace.last_cut.map_or(pace.grown_at, |cut| cut.at + cut.hold);
        let elapsed = now.saturating_duration_since(pace.grown_at.max(since));
        pace.grown_at = now;
        // Only while the rate holds requests back (some wait for a turn).
        let binding = pace.next > now;
        let grown = if binding {
            rate * (growth * elapsed.as_secs_f64()).exp()
        } else {
            rate
        };
        // Unlimited again once calm, when the rate no longer holds requests back: none
        // waits for a turn (requests waiting out a Retry-After come back to wait).
        if grown >= UNLIMITED || (calm && !binding) {
            trace!(pace, "unlimited again");
            pace.unlimited(now);
        } else {
            pace.adaptive = Some(grown);
        }
        // Turns booked at a rate a quarter lower hold requests back for nothing.
        if pace.rate().is_none_or(|rate| rate >= REBOOK * pace.booked) {
            pace.rebook(now);
            self.rebook.notify_waiters();
        }
    }

    /// The registry throttled a request sent on `turn`: see the module's documentation.
    /// The rate is not dropped until `retry_after` and [`CALM`] have passed.
    pub(super) async fn throttled(&self, turn: Turn, retry_after: Option<Duration>) {
        let mut pace = self.pace.lock().await;
        let now = Instant::now();
        trace!(
            pace,
            "throttled: paced {:?}, sending {:?}",
            turn.paced,
            pace.sending_rate(now)
        );
        pace.forget_before(now);
        pace.first_answer.get_or_insert(now);
        if pace
            .last_cut
            .is_some_and(|cut| turn.given <= cut.at + pace.round_trip.unwrap_or_default())
        {
            // Given its turn before the last cut, or while requests sent before it were
            // still in flight (emptying a token bucket): judged with that cut.
            return;
        }
        pace.refused.push_back(now);
        let hold = now + retry_after.unwrap_or(Duration::ZERO).max(CALM);
        let rate = pace.adaptive;
        let best = pace.best(now);
        let mut testing = None;
        let mut refused_near = None;
        let target = if let Some(cut) = pace.last_cut {
            pace.hold_until = pace.hold_until.max(hold);
            let rate = rate.unwrap_or(f64::INFINITY);
            if rate <= cut.safe {
                // Refused at a rate the registry accepted: sporadic, after a few, unless
                // refused too often for that: the best rate was a burst, or a limit that
                // no longer holds (a quota spent), and the safe rate is not.
                pace.below.0 += 1;
                pace.below.1 += 1;
                let (answers, refused) = pace.below;
                if refused < SPORADIC_REFUSALS {
                    return;
                }
                let common = f64::from(refused) / f64::from(answers);
                if common < LIMIT_SHARE {
                    if pace.limit_share.is_none_or(|limit| common >= SAME * limit) {
                        self.sporadic(&mut pace, now);
                    }
                    return;
                }
                pace.below = (0, 0);
                let lately = pace.accepted_in_window(now) as f64 / WINDOW.as_secs_f64();
                pace.peak = (lately, now);
                BELOW * lately
            } else if rate <= cut.limit {
                // Refused at the limit's rate: set from the rate refused, it may be above
                // the registry's. A few, and the next cut is to the safe rate, where the
                // refusals stop or show themselves sporadic.
                pace.between.1 += 1;
                pace.between.0 += 1;
                if pace.between.1 < SPORADIC_REFUSALS {
                    return;
                }
                if cut.measured {
                    let (answers, refused) = pace.between;
                    testing = Some(f64::from(refused) / f64::from(answers));
                    cut.safe
                } else {
                    // The safe rate was measured on the climb from a run's first cut, far
                    // under the limit: under the rate refused instead.
                    BELOW * rate
                }
            } else {
                // Above the limit's rate: the limit, unless refused no more often than
                // below it.
                pace.above.0 += 1;
                pace.above.1 += 1;
                let share = |(answers, refused): (u32, u32)| {
                    f64::from(refused) / (f64::from(answers) + PRIOR_ANSWERS)
                };
                let noise = share(pace.below).max(pace.sporadic);
                if pace.below.1 > 0 && share(pace.above) <= NOISE_MARGIN * noise {
                    // No more often above the safe rate than at it: sporadic, after a few
                    // (and about as often as when the limit was measured; if not,
                    // refusals near a limit: weighed as above it).
                    if pace.below.1 + pace.above.1 < SPORADIC_REFUSALS {
                        return;
                    }
                    let since = share((pace.below.0 + pace.above.0, pace.below.1 + pace.above.1));
                    if since < LIMIT_SHARE
                        && pace.limit_share.is_none_or(|limit| since >= SAME * limit)
                    {
                        self.sporadic(&mut pace, now);
                        return;
                    }
                }
                if now - cut.at < WINDOW && rate <= cut.limit / BELOW {
                    return; // one burst of refusals counts once
                }
                // 95% of the rate refused: the rate the request went at if it was paced,
                // else the rate in force, or the rate requests went at over their last
                // few turns if less (requests waiting out their Retry-After send
                // nothing). If a token bucket's saved burst let the rate climb far past
                // its own, refusals at that rate soon cut to the safe one.
                let sending = pace.sending_rate(now).unwrap_or(rate);
                let refused_at = turn.paced.unwrap_or(rate.min(sending));
                let accepted = pace.accepted_in_window(now);
                let lately = accepted as f64 / WINDOW.as_secs_f64();
                let refused_share =
                    pace.refused.len() as f64 / (pace.refused.len() + accepted).max(1) as f64;
                if refused_at <= CLOSE * lately.max(best) || refused_share < LIMIT_SHARE {
                    refused_near = Some(turn.paced.unwrap_or(rate));
                    NEAR_CUT * refused_at
                } else {
                    // Far above what the registry accepted: down by 30% (TCP CUBIC's
                    // cut), not below 90% of the best accepted.
                    refused_near = turn.paced;
                    (BELOW * refused_at).min((BELOW * best).max(DEEP * refused_at))
                }
            }
        } else {
            // (Unlimited, or growing after sporadic refusals.)
            if !pace.worth_a_rate(now, self.window.in_flight()) {
                return;
            }
            let refused = pace.refused.len() as f64;
            let answers = refused + pace.accepted_in_window(now) as f64;
            if answers >= MEASURED {
                pace.limit_share = Some(refused / answers);
            }
            pace.hold_until = pace.hold_until.max(hold);
            BELOW * best.min(rate.unwrap_or(f64::INFINITY))
        };
        let first_cut = pace.last_cut.is_none();
        let young = pace
            .first_answer
            .is_none_or(|first| now - first < RATE_SPAN);
        if first_cut {
            pace.window_before = Some(self.window.size());
        }
        // Over the limit: the rate grows back fast to just under the rate it is taken
        // to refuse (when it refused one; the first cut may be far below it).
        if pace.last_cut.is_some() {
            pace.ceiling = Some(refused_near.unwrap_or(target / BELOW));
        }
        let safe = (BELOW * best).max(MIN_RATE).min(target);
        let limit = target.max(MIN_RATE);
        let current = pace.rate().unwrap_or(f64::INFINITY);
        let limit = limit.min(current);
        pace.adaptive = Some(limit);
        pace.rebook(now);
        pace.last_cut = Some(Cut {
            at: now,
            limit,
            // A test of the safe rate tests the one set.
            safe: if testing.is_some() {
                limit
            } else if young {
                // The best rate of a run's first moments counts a saved burst: refusals
                // at the limit's rate are not taken for sporadic ones.
                safe.min(BELOW * limit)
            } else {
                safe.min(limit)
            },
            testing,
            tested: 0,
            hold: if first_cut && young {
                Duration::ZERO
            } else {
                HOLD
            },
            measured: !young,
        });
        pace.between = (0, 0);
        pace.refused.clear(); // judged
        trace!(
            pace,
            "cut: best {best:.1}, safe {safe:.1}, below {:?} above {:?} window {}",
            pace.below,
            pace.above,
            self.window.size()
        );
        self.window.throttled(pace.window_needed());
    }

    /// The refusals since the first cut were sporadic: unlimited again, their share
    /// remembered, the window back to what it was.
    fn sporadic(&self, pace: &mut Pace, now: Instant) {
        let answers = pace.below.0 + pace.above.0;
        let refused = pace.below.1 + pace.above.1;
        trace!(pace, "sporadic: {refused} of {answers}");
        let share = f64::from(refused) / (f64::from(answers) + PRIOR_ANSWERS);
        pace.sporadic = pace.sporadic.max(share);
        // Not unlimited at once: every request waiting for a turn would go together,
        // into the limit if the refusals were a limit's after all (a token bucket with
        // no burst refuses a few requests near its rate, come early). The rate grows as
        // after a first cut, and is dropped once it holds nothing back.
        let rate = pace.adaptive;
        pace.unlimited(now);
        pace.adaptive = rate;
        pace.refused.clear(); // judged
        if let Some(size) = pace.window_before.take() {
            self.window.restore(size);
        }
    }

    /// The adaptive rate in force (for tests and the verbose report).
    #[cfg(test)]
    pub(super) async fn rate(&self) -> Option<f64> {
        self.pace.lock().await.rate()
    }

    /// The window of requests in flight (for tests).
    #[cfg(test)]
    pub(super) fn window(&self) -> usize {
        self.window.size()
    }
}

#[cfg(test)]
mod tests;
