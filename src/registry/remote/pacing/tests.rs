//! The rate controller and the window under paused time: configured bounds, cuts, and
//! simulated registries (token buckets, sporadic refusals, round trips) driven by many
//! clients at once.

use super::*;
use std::sync::Arc;

/// Times (from the start) at which `n` turns are granted, one after another.
async fn turns(pacing: &Pacing, n: usize) -> Vec<Duration> {
    let start = Instant::now();
    let mut at = Vec::new();
    for _ in 0..n {
        let _ = pacing.wait_for_turn().await;
        at.push(start.elapsed());
    }
    at
}

#[tokio::test(start_paused = true)]
async fn a_configured_rate_spaces_requests() {
    let pacing = Pacing::new(64, Some(10.0));
    let at = turns(&pacing, 4).await;
    let ms: Vec<u128> = at.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [0, 100, 200, 300]);
}

#[tokio::test(start_paused = true)]
async fn no_limits_means_no_waiting() {
    let pacing = Pacing::new(64, None);
    let at = turns(&pacing, 5).await;
    assert!(at.iter().all(|d| d.is_zero()));
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded() {
    let pacing = Pacing::new(2, None);
    let a = pacing.permit().await;
    let _b = pacing.permit().await;
    let third = tokio::time::timeout(Duration::from_secs(1), pacing.permit()).await;
    assert!(
        third.is_err(),
        "a third request waits while two are in flight"
    );
    drop(a);
    let _c = pacing.permit().await;
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_throttles_cuts_once() {
    let pacing = Pacing::new(64, None);
    // 50 accepted a second, then a burst of thirty 429s to requests sent together.
    for _ in 0..50 {
        pacing.accepted(Turn::now()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = Instant::now() - Duration::from_millis(5);
    for _ in 0..30 {
        pacing
            .throttled(Turn::at(sent), Some(Duration::from_secs(1)))
            .await;
    }
    // 90% of the 50 a second accepted
    let rate = pacing.rate().await.unwrap();
    assert!((44.0..=47.0).contains(&rate), "{rate}");
}

#[tokio::test(start_paused = true)]
async fn refusals_answered_first_among_many_in_flight_set_no_rate() {
    // 128 uploads sent together behind 6% sporadic refusals: the limiter answers its 8
    // refusals at once, the registry its 120 acceptances later. Weighed against the
    // answers alone (4 accepted so far) they were 67% refused, and the rate was cut to
    // what the run's first moments measured (the bench's sporadic row: seconds lost);
    // with the 116 still in flight, 6%.
    let pacing = Pacing::new(128, None);
    let sent = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A registry 200 ms away: the window opens to 128 on the first answer.
    pacing.accepted(Turn::at(sent)).await;
    let mut places = Vec::new();
    for _ in 0..124 {
        places.push(pacing.permit().await);
    }
    for _ in 0..3 {
        pacing.accepted(Turn::at(sent)).await;
    }
    let sent = Instant::now();
    tokio::time::sleep(Duration::from_millis(1)).await;
    for _ in 0..8 {
        places.pop();
        pacing
            .throttled(Turn::at(sent), Some(Duration::from_secs(1)))
            .await;
    }
    assert_eq!(pacing.rate().await, None, "a rate was set");
}

#[tokio::test(start_paused = true)]
async fn a_first_burst_is_measured_over_a_quarter_second_at_least() {
    let pacing = Pacing::new(64, None);
    // 20 accepted within 100 ms of the start, then refused: 80 a second, not 200 (a
    // token bucket's saved burst says little of its rate), and the rate 90% of that.
    for _ in 0..20 {
        pacing.accepted(Turn::now()).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sent = Instant::now() - Duration::from_millis(5);
    for _ in 0..10 {
        pacing.throttled(Turn::at(sent), None).await;
    }
    let rate = pacing.rate().await.unwrap();
    assert!((71.0..=73.0).contains(&rate), "{rate}");
}

#[tokio::test(start_paused = true)]
async fn the_configured_rate_stays_an_upper_bound() {
    let pacing = Pacing::new(64, Some(20.0));
    for _ in 0..10_000 {
        pacing.accepted(Turn::now()).await;
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
    /// A full bucket, shared by simulated clients.
    fn shared(rate: f64, burst: f64) -> Arc<std::sync::Mutex<Bucket>> {
        Arc::new(std::sync::Mutex::new(Bucket {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
        }))
    }

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

/// What a simulated registry does with a request.
#[derive(Clone)]
enum Registry {
    /// A token bucket: refuses what comes faster than its rate, beyond its burst.
    Bucket(Arc<std::sync::Mutex<Bucket>>),
    /// Refuses `percent` of the requests at random whatever the rate (seeded draws).
    Sporadic {
        percent: u64,
        draw: Arc<std::sync::Mutex<u64>>,
    },
    /// Accepts everything.
    Open,
    /// Refuses the `first` answers, then as `then`.
    FirstRefused {
        first: u64,
        answers: Arc<std::sync::atomic::AtomicU64>,
        then: Box<Registry>,
    },
}

impl Registry {
    fn sporadic(percent: u64, seed: u64) -> Registry {
        Registry::Sporadic {
            percent,
            draw: Arc::new(std::sync::Mutex::new(seed)),
        }
    }

    fn accepts(&self) -> bool {
        match self {
            Registry::Bucket(bucket) => bucket.lock().unwrap().take(),
            Registry::Sporadic { percent, draw } => {
                // xorshift64: the same draws for the same seed
                let mut x = draw.lock().unwrap();
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                *x % 100 >= *percent
            }
            Registry::Open => true,
            Registry::FirstRefused {
                first,
                answers,
                then,
            } => {
                let n = answers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                n >= *first && then.accepts()
            }
        }
    }
}

/// A simulated run: what it took.
#[derive(Debug)]
struct Run {
    wall: Duration,
    accepted: u64,
    refused: u64,
}

/// Seeded draws (xorshift64): the same run for the same seed.
#[derive(Clone)]
struct Draws(Arc<std::sync::Mutex<u64>>);

impl Draws {
    fn new(seed: u64) -> Draws {
        Draws(Arc::new(std::sync::Mutex::new(seed.max(1))))
    }

    /// Uniform in [0, 1).
    fn uniform(&self) -> f64 {
        let mut x = self.0.lock().unwrap();
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (*x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponential with this mean.
    fn exponential(&self, mean: Duration) -> Duration {
        mean.mul_f64(-(1.0 - self.uniform()).ln())
    }
}

/// The way between the clients and a simulated registry: each request reaches the
/// registry `round_trip - back` after its turn, plus a delay drawn at random (the
/// scheduling of both ends and the network: a real token bucket sees requests off the
/// spacing they were sent at), and its answer comes back `back` later; a refusal
/// `refusal_delay` later still (a proxy that writes its 429's body after its headers
/// waits out the client's delayed ACK, some 40 ms).
#[derive(Clone)]
struct Net {
    round_trip: Duration,
    back: Duration,
    /// Every request is late by up to this much (uniform)…
    jitter: Duration,
    /// … and this share of them (a thread waiting for a core, a lock, Python's GIL)…
    hiccups: f64,
    /// … by this much more on average (exponential).
    hiccup: Duration,
    refusal_delay: Duration,
    draws: Draws,
}

impl Net {
    /// Every request exactly `round_trip`, no jitter, the registry deciding at its end.
    fn exact(round_trip: Duration) -> Net {
        Net {
            round_trip,
            back: Duration::ZERO,
            jitter: Duration::ZERO,
            hiccups: 0.0,
            hiccup: Duration::ZERO,
            refusal_delay: Duration::ZERO,
            draws: Draws::new(1),
        }
    }

    /// Loopback through scripts/bench's proxy (a Python thread per connection, the
    /// bucket checked once the request is read), fitted to its arrival times against
    /// eigenpub's send times (logged at both ends, 7 December 2026): the proxy sees a
    /// request 0.24-0.6 ms after it was sent for 98% of them (median 0.4 ms), one in a
    /// hundred up to a few milliseconds later; refusals 40 ms late. (The spread of the
    /// gaps between arrivals, 9.4-14 ms for requests booked 11 ms apart, was eigenpub's
    /// own: requests woke for their turns up to a millisecond or two late, see
    /// [`Pacing::depart`].)
    fn loopback(seed: u64) -> Net {
        Net {
            round_trip: Duration::from_millis(4),
            back: Duration::from_millis(2),
            jitter: Duration::from_micros(300),
            hiccups: 0.01,
            hiccup: Duration::from_millis(1),
            refusal_delay: Duration::from_millis(40),
            draws: Draws::new(seed),
        }
    }

    /// How late a request reaches the registry, past `round_trip - back`.
    fn late(&self) -> Duration {
        let mut late = self.jitter.mul_f64(self.draws.uniform());
        if self.draws.uniform() < self.hiccups {
            late += self.draws.exponential(self.hiccup);
        }
        late
    }
}

/// `artifacts` clients at once (a run's `concurrency`) sending `requests` requests in
/// all, through the pacing's window and turns and `net`; each client takes one of the
/// requests left and sends it until accepted, a refused one waiting its `Retry-After`
/// (1 s) first. `lending`: as a run does, an artifact waiting out a `Retry-After` lends
/// its place among the `artifacts` at once to another (up to four times `artifacts`
/// started): the clients are four times `artifacts`, each holding one of `artifacts`
/// places while it works, none while it waits. `heed`: whether the pacing hears of the
/// refusals (without, only the `Retry-After` waits cost).
async fn run(
    pacing: Arc<Pacing>,
    registry: Registry,
    artifacts: usize,
    requests: u64,
    round_trip: Duration,
    heed: bool,
) -> Run {
    run_over(
        pacing,
        registry,
        artifacts,
        requests,
        Net::exact(round_trip),
        false,
        heed,
    )
    .await
}

/// [`run`] over `net`.
async fn run_over(
    pacing: Arc<Pacing>,
    registry: Registry,
    artifacts: usize,
    requests: u64,
    net: Net,
    lending: bool,
    heed: bool,
) -> Run {
    let left = Arc::new(std::sync::atomic::AtomicI64::new(requests as i64));
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let active = Arc::new(tokio::sync::Semaphore::new(artifacts));
    let start = Instant::now();
    let mut tasks = Vec::new();
    let clients = if lending { 4 * artifacts } else { artifacts };
    for _ in 0..clients {
        let (pacing, registry, net) = (pacing.clone(), registry.clone(), net.clone());
        let (left, refused, active) = (left.clone(), refused.clone(), active.clone());
        tasks.push(tokio::spawn(async move {
            let mut working = Some(active.clone().acquire_owned().await.unwrap());
            // Each client takes a request of those left, and sends it until accepted.
            while left.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) > 0 {
                loop {
                    if working.is_none() {
                        working = Some(active.clone().acquire_owned().await.unwrap());
                    }
                    let place = pacing.permit().await;
                    let sent = pacing.wait_for_turn().await;
                    tokio::time::sleep(net.round_trip - net.back + net.late()).await;
                    let ok = registry.accepts();
                    tokio::time::sleep(if ok {
                        net.back
                    } else {
                        net.back + net.refusal_delay
                    })
                    .await;
                    drop(place);
                    if ok {
                        pacing.accepted(sent).await;
                        break;
                    }
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if heed {
                        pacing.throttled(sent, Some(Duration::from_secs(1))).await;
                    }
                    working = None; // lent while waiting
                    pacing.sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Run {
        wall: start.elapsed(),
        accepted: requests,
        refused: refused.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// An apply's worth behind a token bucket of 100 a second (1,200 requests, as
/// scripts/bench's 200 artifacts make) over `net`, refused artifacts lending their
/// places. Returns (share of the allowed rate
/// used, share of the requests refused), as the bench counts them.
async fn behind_a_bucket(burst: f64, artifacts: usize, net: Net) -> (f64, f64) {
    // The run's concurrency caps the window too (scripts/bench passes --concurrency).
    let pacing = Arc::new(Pacing::new(artifacts, None));
    let bucket = Registry::Bucket(Bucket::shared(100.0, burst));
    let r = run_over(pacing, bucket, artifacts, 1200, net, true, true).await;
    // Ideal: the burst at once, the rest at 100 a second.
    let used = (1200.0 - burst) / 100.0 / r.wall.as_secs_f64();
    let refused = r.refused as f64 / (r.accepted + r.refused) as f64;
    (used, refused)
}

#[tokio::test(start_paused = true)]
async fn a_bursty_token_bucket_stays_used_over_a_jittery_network() {
    // 100 a second with bursts of 20 over loopback as scripts/bench's proxy sees it
    // (requests up to a millisecond off their spacing, one in twenty some 4 ms more),
    // refused artifacts lending their places: issue 18's targets are at least 80% of the
    // rate used and at most 10% of the requests refused, at every concurrency; the bounds
    // here (85%, 6%) are tighter on purpose, to hold what was gained. Measured
    // 86-100% used, 2.4-4.5% refused. Before refusals judged with a cut were kept out of
    // the next one's reckoning, and a run's first moments were kept from making a safe
    // rate out of a saved burst: 80-99%, 3.3-8.1% (the share refused at the limit's rate
    // taken for sporadic, the rate unlimited again into the limit).
    let mut failures = Vec::new();
    for artifacts in [4, 8, 16, 32, 64] {
        for seed in 1..=4u64 {
            let (used, refused) =
                behind_a_bucket(20.0, artifacts, Net::loopback(seed * 7919)).await;
            if used < 0.85 || refused > 0.06 {
                failures.push(format!(
                    "{artifacts} at once, seed {seed}: {used:.2} of the rate used, \
                     {refused:.3} of the requests refused"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_token_bucket_is_used_to_the_full_at_any_concurrency() {
    // 100 a second with bursts of 1 and of 20, from 4 to 64 artifacts at once (64: the
    // default cap, the window adapting). Before: a quarter of the last second's answers
    // refused made a limit, which few in flight never reach: each refused request waits
    // its Retry-After and sends nothing meanwhile. (One at a time is not covered: a
    // refusal a second among a hundred answers looks sporadic; see the README.)
    let mut failures = Vec::new();
    for burst in [1.0, 20.0] {
        for artifacts in [4, 8, 16, 32, 64] {
            let (used, refused) =
                behind_a_bucket(burst, artifacts, Net::exact(Duration::from_millis(5))).await;
            // Measured: 77-99% used, 1.2-2.4% refused, refused artifacts lending their
            // places (before the share rule: 27-97%, 5-20%).
            if used < 0.75 || refused > 0.05 {
                failures.push(format!(
                    "burst {burst}, {artifacts} at once: {used:.2} of the rate used, \
                     {refused:.3} of the requests refused"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_token_bucket_with_no_burst_is_not_taken_for_sporadic_refusals() {
    // 100 a second with bursts of 1 over loopback as the bench's proxy sees it: a request
    // that comes less than 10 ms after the one before it is refused. Taken for sporadic
    // refusals, such refusals made the rate unlimited again, and every request waiting
    // for a turn went at once into the limit; cut on each of them, the rate fell a tenth
    // at a time (60-63% of the rate used on average, 48-70% for one seed). Requests now
    // go a whole spacing apart, a limit is cut under by 5%, and the first cut, measured
    // on a run's first milliseconds, does not hold the rate a second; refusals a cut
    // judged do not count again in the next (they made a 5% cut a 40% one, held a
    // second), and near a limit the rate grows back by 2% a second, not past the rate
    // refused in one step: 91-94% used for every seed from 4 to 64 at once, at most 1.7%
    // refused (before the last two: 83-91%, 87-88% on average, 2.4-3.1% refused; before
    // the first: 57-63% on average, 46-69% for one seed, 4.9% refused).
    let mut failures = Vec::new();
    for artifacts in [4, 8, 16, 32, 64] {
        let mut used_in_all = 0.0;
        for seed in 1..=6u64 {
            let (used, refused) = behind_a_bucket(1.0, artifacts, Net::loopback(seed * 7919)).await;
            used_in_all += used;
            if used < 0.9 || refused > 0.02 {
                failures.push(format!(
                    "{artifacts} at once, seed {seed}: {used:.2} of the rate used, \
                     {refused:.3} of the requests refused"
                ));
            }
        }
        let used = used_in_all / 6.0;
        if used < 0.92 {
            failures.push(format!("{artifacts} at once: {used:.2} of the rate used"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// `artifacts` clients for 1,200 requests of 10 ms against a registry that refuses
/// `percent` of them at random however fast they come: the wall time against the same
/// run when only the `Retry-After` waits count.
async fn sporadic(artifacts: usize, percent: u64, seed: u64) -> (Run, Run) {
    let run_with = |heed| {
        run(
            Arc::new(Pacing::new(artifacts, None)),
            Registry::sporadic(percent, seed),
            artifacts,
            1200,
            Duration::from_millis(10),
            heed,
        )
    };
    (run_with(false).await, run_with(true).await)
}

#[tokio::test(start_paused = true)]
async fn sporadic_refusals_cost_no_more_than_their_own_waits() {
    // 6% refused whatever the rate: no limit to settle under, cutting would not help.
    // (Cutting the rate on every refusal kept 30-40% of this.)
    let mut failures = Vec::new();
    for artifacts in [4, 8, 16, 32, 64] {
        for seed in 1..=6u64 {
            let seed = seed * 7919;
            let (ideal, heeded) = sporadic(artifacts, 6, seed).await;
            let extra = heeded.wall.saturating_sub(ideal.wall);
            // A throttle while unlimited sets no rate unless a fifth of the last second's
            // answers were refused (a limit refuses most of what comes past it, refused
            // artifacts lending their places): measured +0 at every concurrency. Before
            // that rule, the first 6% refusals cut the rate to what the run's first
            // moments measured: +0.1-0.8 s from 16 in flight, +13% at 4.
            let allowed = Duration::from_millis(200) + ideal.wall / 20;
            if extra > allowed {
                failures.push(format!(
                    "{artifacts} at once, seed {seed}: {:?} against {:?} when only the \
                     Retry-After waits count ({} refused)",
                    heeded.wall, ideal.wall, heeded.refused
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_registry_far_away_gets_a_wider_window() {
    // A plan of 500 tags, 64 artifacts at once, each request answered after 50 ms: the
    // window grows from 8 to 64 while requests wait for a place and nothing is refused.
    // (At 8 in flight: 3.1 s.)
    let (window, r) = open_plan_of_500(Duration::from_millis(50)).await;
    assert_eq!(window, 64);
    // 500 / 64 x 50 ms = 0.39 s with the whole window from the start.
    assert!(r.wall <= Duration::from_millis(600), "{:?}", r.wall);
}

#[tokio::test(start_paused = true)]
async fn a_registry_100_ms_away_gets_its_whole_window_from_the_first_answers() {
    // A no-op plan of 500 tags at the default cap, each request answered after 100 ms
    // (scripts/bench's latency row). 64 in flight from the first answers: 8 round trips
    // for the first 8 and 492 more, 0.9 s. (Doubling from 8 per round trip, as before:
    // 8 + 16 + 32 in the first three, 1.0 s, and 1.27x curl's time at 64 in the bench.)
    let (window, r) = open_plan_of_500(Duration::from_millis(100)).await;
    assert_eq!(window, 64);
    assert!(r.wall <= Duration::from_millis(950), "{:?}", r.wall);
}

/// A plan of 500 tags against an open registry answering each request `latency` late,
/// 64 artifacts at once and a cap of 64: the window it ends with, and the run.
async fn open_plan_of_500(latency: Duration) -> (usize, Run) {
    let pacing = Arc::new(Pacing::new(64, None));
    let r = run(pacing.clone(), Registry::Open, 64, 500, latency, true).await;
    (pacing.window(), r)
}

#[tokio::test(start_paused = true)]
async fn the_window_halves_on_a_limit_and_stays_within_its_cap() {
    let pacing = Arc::new(Pacing::new(16, None));
    run(
        pacing.clone(),
        Registry::Open,
        64,
        500,
        Duration::from_millis(50),
        true,
    )
    .await;
    assert_eq!(pacing.window(), 16, "the cap");
    // (A limit that comes within seconds of a faster spell is taken for sporadic
    // refusals at first: the rate accepted then is remembered for 10 s.)
    tokio::time::sleep(Duration::from_secs(11)).await;
    let bucket = Registry::Bucket(Bucket::shared(100.0, 20.0));
    run(
        pacing.clone(),
        bucket,
        64,
        200,
        Duration::from_millis(50),
        true,
    )
    .await;
    assert!(pacing.window() <= 8, "{}", pacing.window());
    assert!(pacing.window() >= 2, "{}", pacing.window());
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_refusals_at_the_start_does_not_limit_the_rest_of_the_run() {
    // Four refusals among the first sixteen answers (a token bucket another client had
    // just emptied), then 6% sporadic: the sporadic ones that follow are found
    // sporadic. (Before the share rule: cut to 1/s for good, every sporadic refusal
    // cutting again: 2% of this.)
    for seed in 1..=6u64 {
        let seed = seed * 7919;
        let run_with = |heed| {
            let answers = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let registry = Registry::FirstRefused {
                first: 4,
                answers,
                then: Box::new(Registry::sporadic(6, seed)),
            };
            run(
                Arc::new(Pacing::new(16, None)),
                registry,
                16,
                1200,
                Duration::from_millis(10),
                heed,
            )
        };
        let ideal = run_with(false).await;
        let heeded = run_with(true).await;
        let extra = heeded.wall.saturating_sub(ideal.wall);
        // Measured: +0.1-0.4 s for four seeds of six; 1.6 and 2x for two, where four of
        // the first seven or eight answers were refused: a first limit measured on three
        // answers (12/s), and at that rate sporadic refusals take seconds to tell.
        assert!(
            extra <= ideal.wall * 3 / 2,
            "seed {seed}: {:?} against {:?} ({} refused)",
            heeded.wall,
            ideal.wall,
            heeded.refused
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_limit_that_is_no_longer_reached_is_dropped() {
    // Limited to 20 a second, then the registry accepts everything. (Growing to the cap
    // instead would take some 200,000 requests.)
    let pacing = Arc::new(Pacing::new(16, None));
    let bucket = Bucket::shared(20.0, 5.0);
    let limited = Registry::Bucket(bucket.clone());
    run(
        pacing.clone(),
        limited,
        16,
        200,
        Duration::from_millis(5),
        true,
    )
    .await;
    let rate = pacing.rate().await.expect("limited");
    assert!(rate < 50.0, "settled at {rate:.1}/s");
    let t = run(
        pacing.clone(),
        Registry::Open,
        4,
        6000,
        Duration::from_millis(5),
        true,
    )
    .await;
    assert_eq!(t.refused, 0);
    assert_eq!(pacing.rate().await, None, "unlimited again");
}

#[tokio::test(start_paused = true)]
async fn converges_under_a_token_bucket_and_recovers_when_it_lifts() {
    let pacing = Arc::new(Pacing::new(32, None));
    let bucket = Registry::Bucket(Bucket::shared(100.0, 20.0));
    let t = run(
        pacing.clone(),
        bucket,
        32,
        3000,
        Duration::from_millis(5),
        true,
    )
    .await;
    let refused = t.refused as f64 / (t.accepted + t.refused) as f64;
    assert!(refused <= 0.05, "{refused:.3} of the requests were refused");
    let rate = pacing.rate().await.expect("still limited");
    assert!((80.0..=130.0).contains(&rate), "settled at {rate:.1}/s");
    // The limit lifts: within ten seconds the rate is back above 1000/s or unlimited.
    let start = Instant::now();
    let t = run(
        pacing.clone(),
        Registry::Open,
        32,
        10_000,
        Duration::from_millis(5),
        true,
    )
    .await;
    assert_eq!(t.refused, 0);
    assert!(
        start.elapsed() < Duration::from_secs(12),
        "{:?}",
        start.elapsed()
    );
    assert!(
        pacing.rate().await.is_none_or(|r| r > 1000.0),
        "rate after the limit lifted: {:?}",
        pacing.rate().await
    );
}

#[tokio::test(start_paused = true)]
async fn a_spell_of_refusals_lasts_until_a_request_is_accepted() {
    // Refusals every half second for a minute, one request accepted every 20 s: the
    // spell (what gives a registry up, in transport.rs) never reaches 20 s.
    let pacing = Pacing::new(64, None);
    let start = Instant::now();
    let mut longest = Duration::ZERO;
    for i in 1..=120u32 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if i % 40 == 0 {
            pacing.accepted(Turn::now()).await;
            continue;
        }
        let spell = pacing.refused(Some(Duration::from_secs(i.into()))).await;
        longest = longest.max(spell.since.elapsed());
        assert!(spell.count <= 40, "{}", spell.count);
        assert!(spell.longest_retry_after >= Some(Duration::from_secs(1)));
    }
    assert!(longest < Duration::from_secs(20), "{longest:?}");
    // Nothing accepted: one spell since the first refusal.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let first = pacing.refused(None).await;
    tokio::time::sleep(Duration::from_secs(40)).await;
    let spell = pacing.refused(None).await;
    assert_eq!((spell.since, spell.count), (first.since, 2));
    assert!(start.elapsed() > Duration::from_secs(100));
}

#[tokio::test(start_paused = true)]
async fn a_stopped_pacing_lets_nobody_wait() {
    let pacing = Pacing::new(64, Some(0.1));
    pacing.wait_for_turn().await; // the first turn is at once, the next in 10 s
    let start = Instant::now();
    let (_, ()) = tokio::join!(pacing.wait_for_turn(), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        pacing.stop();
    });
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    pacing.sleep(Duration::from_secs(3600)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn requests_go_a_spacing_apart_even_when_they_wake_late() {
    // 95 a second: turns fall between the timer's millisecond ticks, and a request wakes
    // for its turn on the tick after it, up to a millisecond late, the next one maybe on
    // time. A token bucket with no burst refuses a request that comes less than its
    // spacing after the one before (scripts/bench's, 5% of them at 90 a second, where
    // the proxy added 0.5 +- 0.2 ms): every request goes a whole spacing after the one
    // before it. Before: requests went 10 ms apart, 0.5 ms early.
    let pacing = Arc::new(Pacing::new(8, Some(95.0)));
    let departures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (pacing, departures) = (pacing.clone(), departures.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..12 {
                let _place = pacing.permit().await;
                let _ = pacing.wait_for_turn().await;
                departures.lock().unwrap().push(Instant::now());
                tokio::time::sleep(Duration::from_micros(3_700)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut at = departures.lock().unwrap().clone();
    at.sort();
    let spacing = Duration::from_secs_f64(1.0 / 95.0);
    let early: Vec<Duration> = at
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|gap| *gap + Duration::from_micros(1) < spacing)
        .collect();
    assert!(
        early.is_empty(),
        "{} of {} requests went early: {early:?}",
        early.len(),
        at.len()
    );
    // And the rate holds: 96 requests in about 95 spacings (the timer's ticks cost a
    // little under paused time: no precise last millisecond there).
    let span = *at.last().unwrap() - at[0];
    assert!(span < spacing.mul_f64(95.0 * 1.1), "{span:?}");
}
