//! The retry driver under paused time: backoff, budgets, `Retry-After`, and when a
//! registry is given up.

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
            throttled: self
                .throttled
                .then(crate::registry::remote::pacing::Turn::now),
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
            let sent = r.pacing.wait_for_turn().await;
            r.pacing.accepted(sent).await;
        }
    };
    let (done, ()) = tokio::join!(drives, accepted);
    assert!(done.iter().all(Result::is_ok));
    let rate = r.pacing.rate().await;
    assert!(rate.is_none_or(|r| r > 1000.0), "{rate:?}");
}

#[tokio::test(start_paused = true)]
async fn a_registry_is_given_up_only_after_refusing_everything_for_long() {
    let r = registry();
    let since = Instant::now();
    let spell = |count, longest_retry_after| Refusals {
        since,
        count,
        longest_retry_after,
    };
    let too_many = StatusCode::TOO_MANY_REQUESTS;
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(
        r.give_up(&spell(50, None), too_many, true).is_none(),
        "29 s"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(
        r.give_up(&spell(7, None), too_many, true).is_none(),
        "7 answers"
    );
    // A Retry-After of 20 s (the cap): a request's patience is 7 x 20 s.
    let slow = Some(Duration::from_secs(20));
    assert!(
        r.give_up(&spell(8, slow), too_many, true).is_none(),
        "140 s"
    );
    assert!(r.down.get().is_none());
    let e = r
        .give_up(&spell(8, None), too_many, true)
        .expect("given up");
    assert_eq!((e.kind, e.status), (ErrorKind::Unreachable, Some(429)));
    assert!(
        e.message.contains("refused every request for 31 s"),
        "{}",
        e.message
    );
    assert!(e.help.contains("wait for its limit to reset"), "{}", e.help);
    assert_eq!(r.down.get().map(|d| d.message.clone()), Some(e.message));
    // Retries pause no more (a registry request's next attempt fails with the error).
    let start = Instant::now();
    assert_eq!(r.drive(&mut flaky(3)).await.unwrap(), 3);
    assert_eq!(start.elapsed(), Duration::ZERO);
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
