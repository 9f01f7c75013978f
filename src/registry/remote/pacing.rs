//! How fast eigenpub talks to one registry: a bound on requests in flight
//! (`max-concurrency`), a fixed spacing (`requests-per-second`), and a slowdown while the
//! registry throttles (429).
//!
//! Pure bookkeeping over tokio time, so it is tested with paused time: every registry owns
//! one [`Pacing`], and every request waits for its turn here before it is sent.

use std::time::Duration;

use tokio::sync::{Mutex, Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// The widest spacing a throttling registry pushes requests to.
const MAX_INTERVAL: Duration = Duration::from_secs(1);

/// A registry's concurrency bound and pace.
#[derive(Debug)]
pub(super) struct Pacing {
    permits: Option<Semaphore>,
    pace: Mutex<Pace>,
}

/// Spacing of requests: a fixed rate when configured, and a pause after a 429.
#[derive(Debug)]
struct Pace {
    /// The spacing in force now: the configured one, widened while the registry throttles.
    interval: Option<Duration>,
    /// The configured spacing (`requests-per-second`), which a calm registry returns to.
    configured: Option<Duration>,
    next: Instant,
    paused_until: Instant,
}

impl Pacing {
    pub(super) fn new(max_concurrency: Option<usize>, requests_per_second: Option<f64>) -> Pacing {
        let now = Instant::now();
        let configured = requests_per_second
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(1.0 / r));
        Pacing {
            permits: max_concurrency.map(Semaphore::new),
            pace: Mutex::new(Pace {
                interval: configured,
                configured,
                next: now,
                paused_until: now,
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

    /// Waits for this registry's pace: a configured rate, and any pause after a 429.
    pub(super) async fn wait_for_turn(&self) {
        let wait = {
            let mut pace = self.pace.lock().await;
            let now = Instant::now();
            let mut at = now.max(pace.paused_until);
            if let Some(interval) = pace.interval {
                at = at.max(pace.next);
                pace.next = at + interval;
            }
            at.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// After a success, a spacing widened by throttling narrows back towards the configured one.
    pub(super) async fn calm(&self) {
        let mut pace = self.pace.lock().await;
        if pace.interval == pace.configured {
            return;
        }
        let narrower = pace.interval.map(|i| i.mul_f64(0.9));
        pace.interval = match (narrower, pace.configured) {
            (Some(n), Some(c)) if n <= c => Some(c),
            (Some(n), None) if n < Duration::from_millis(5) => None,
            (n, _) => n,
        };
    }

    /// The registry throttled: pause every request to it for `delay`, and widen the spacing.
    pub(super) async fn throttled(&self, delay: Duration) {
        let mut pace = self.pace.lock().await;
        let now = Instant::now();
        // One burst of 429s (many requests refused at once) counts once: widen the
        // spacing only when no pause is already in force, and never beyond a second.
        if now >= pace.paused_until {
            pace.interval =
                Some((pace.interval.unwrap_or(Duration::from_millis(25)) * 2).min(MAX_INTERVAL));
        }
        let until = now + delay;
        if until > pace.paused_until {
            pace.paused_until = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn throttling_pauses_then_calms_back() {
        let pacing = Pacing::new(None, None);
        pacing.throttled(Duration::from_secs(2)).await;
        let start = Instant::now();
        pacing.wait_for_turn().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        // Spacing widened to 50 ms; successes narrow it until it disappears.
        let at = turns(&pacing, 2).await;
        assert_eq!(at[1] - at[0], Duration::from_millis(50));
        for _ in 0..100 {
            pacing.calm().await;
        }
        let at = turns(&pacing, 3).await;
        assert_eq!(at[2] - at[1], Duration::ZERO);
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
}
