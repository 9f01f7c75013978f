//! The rate controller under paused time: configured bounds, cuts, and simulated
//! registries (a token bucket; sporadic refusals) driven by many clients at once.

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
    // 90% of the 50 a second accepted
    let rate = pacing.rate().await.unwrap();
    assert!((44.0..=47.0).contains(&rate), "{rate}");
}

#[tokio::test(start_paused = true)]
async fn a_first_burst_is_measured_over_its_own_span() {
    let pacing = Pacing::new(None, None);
    // 20 accepted within 100 ms of the start, then refused: 200 a second, not 20
    // (and the rate 90% of that).
    for _ in 0..20 {
        pacing.accepted().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..10 {
        pacing.throttled(None).await;
    }
    let rate = pacing.rate().await.unwrap();
    assert!((171.0..=189.0).contains(&rate), "{rate}");
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

/// `workers` clients for 10 s against a registry that refuses `percent` of the
/// requests at random (429, `Retry-After: 1`) however fast they come, each request
/// taking 10 ms; `heed` says whether the pacing hears of the refusals. Returns
/// (accepted, refused).
async fn sporadic(workers: usize, percent: u64, seed: u64, heed: bool) -> (u64, u64) {
    sporadic_after(0, workers, percent, seed, heed).await
}

/// [`sporadic`], the first `refused_first` answers refused whatever the draw (a token
/// bucket another client had just emptied, say).
async fn sporadic_after(
    refused_first: u64,
    workers: usize,
    percent: u64,
    seed: u64,
    heed: bool,
) -> (u64, u64) {
    let pacing = Arc::new(Pacing::new(None, None));
    let draw = Arc::new(std::sync::Mutex::new(seed));
    let answers = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(10);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (pacing, draw, answers) = (pacing.clone(), draw.clone(), answers.clone());
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
                let early =
                    answers.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < refused_first;
                if !early && x % 100 >= percent {
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
async fn a_burst_of_refusals_at_the_start_does_not_limit_the_rest_of_the_run() {
    // Four refusals among the first sixteen answers, then 6% sporadic: the four look
    // like a limit when they come, the twelve accepted with them say otherwise. (Before:
    // cut to 1/s for good, every sporadic refusal cutting again: 2% of this.)
    for seed in 1..=6u64 {
        let seed = seed * 7919;
        let (ideal, _) = sporadic_after(4, 16, 6, seed, false).await;
        let (accepted, refused) = sporadic_after(4, 16, 6, seed, true).await;
        let share = accepted as f64 / ideal as f64;
        assert!(
            share >= 0.9,
            "seed {seed}: {accepted} accepted ({refused} refused) against {ideal}: {share:.2}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_limit_that_is_no_longer_reached_is_dropped() {
    // Limited to 20 a second, then the registry accepts everything, and four clients of
    // 5 ms send at most 800 a second. (Growing to the cap instead would take some
    // 200,000 requests, every sporadic refusal meanwhile cutting again.)
    let pacing = Arc::new(Pacing::new(None, None));
    let bucket = Bucket::shared(20.0, 5.0);
    simulate(pacing.clone(), bucket.clone(), 16, Duration::from_secs(10)).await;
    let rate = pacing.rate().await.expect("limited");
    assert!(rate < 50.0, "settled at {rate:.1}/s");
    bucket.lock().unwrap().rate = 1_000_000.0;
    bucket.lock().unwrap().burst = 1_000_000.0;
    let t = simulate(pacing.clone(), bucket, 4, Duration::from_secs(15)).await;
    assert_eq!(t.throttled, 0);
    assert_eq!(pacing.rate().await, None, "unlimited again");
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
async fn an_apply_behind_a_token_bucket_runs_near_the_allowed_rate() {
    // An apply's worth: 16 artifacts in flight, 1,200 requests of 10 ms, against 100 a
    // second with a burst of 20; a refused request waits its Retry-After (1 s).
    let pacing = Arc::new(Pacing::new(None, None));
    let bucket = Bucket::shared(100.0, 20.0);
    let left = Arc::new(std::sync::atomic::AtomicI64::new(1200));
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (pacing, bucket) = (pacing.clone(), bucket.clone());
        let (left, refused) = (left.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            while left.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                pacing.wait_for_turn().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
                if bucket.lock().unwrap().take() {
                    left.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    pacing.accepted().await;
                } else {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    pacing.throttled(Some(Duration::from_secs(1))).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Ideal: the burst at once, the other 1,180 at 100 a second.
    let used = 11.8 / start.elapsed().as_secs_f64();
    let refused = refused.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1200.0;
    // (Cutting to the accepted rate itself, not 90% of it: 89% and 5.2%.)
    assert!(used >= 0.9, "used {used:.3} of the allowed rate");
    assert!(refused <= 0.04, "{refused:.3} of the requests were refused");
}

#[tokio::test(start_paused = true)]
async fn converges_under_a_token_bucket_and_recovers_when_it_lifts() {
    let pacing = Arc::new(Pacing::new(None, None));
    let bucket = Bucket::shared(100.0, 20.0);
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

#[tokio::test(start_paused = true)]
async fn a_spell_of_refusals_lasts_until_a_request_is_accepted() {
    // Refusals every half second for a minute, one request accepted every 20 s: the
    // spell (what gives a registry up, in transport.rs) never reaches 20 s.
    let pacing = Pacing::new(None, None);
    let start = Instant::now();
    let mut longest = Duration::ZERO;
    for i in 1..=120u32 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if i % 40 == 0 {
            pacing.accepted().await;
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
    let pacing = Pacing::new(None, Some(0.1));
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
