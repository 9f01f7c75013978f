//! When to try a registry request again, and how long to wait: one table, one place.
//!
//! Registries fail in a few recognisable ways: rate limits (429, and GHCR's 403 "secondary
//! rate limit"), overload (502/503/504), timeouts (408) and dropped connections. Those are
//! worth another try after a pause; everything else (401, a 404 on push, `DIGEST_INVALID`,
//! `MANIFEST_INVALID`) would fail the same way again and is reported at once, except a
//! manifest refused for a blob the repository holds ([`LINK_RACE`]).

use std::time::{Duration, SystemTime};

/// Whether a failed attempt is worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Retry,
    /// Rate limited: retry, and slow down for the whole registry.
    Throttled,
    Fail,
}

/// Registry error codes that never succeed on a second try.
const PERMANENT_CODES: &[&str] = &[
    "DIGEST_INVALID",
    "MANIFEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "BLOB_UPLOAD_INVALID",
];

/// Classifies an HTTP answer: status and the registry's error codes / message.
pub fn classify(status: u16, codes: &[String], message: &str) -> Verdict {
    if codes.iter().any(|c| PERMANENT_CODES.contains(&c.as_str())) && status != 429 {
        // A 403 with DENIED is permanent unless it speaks of a rate limit (below).
        if !(status == 403 && mentions_rate_limit(message)) {
            return Verdict::Fail;
        }
    }
    match status {
        429 => Verdict::Throttled,
        403 if mentions_rate_limit(message) => Verdict::Throttled,
        408 | 500 | 502 | 503 | 504 => Verdict::Retry,
        _ => Verdict::Fail,
    }
}

fn mentions_rate_limit(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("rate limit") || m.contains("too many requests") || m.contains("toomanyrequests")
}

/// A rate-limit quota the registry says is spent (Docker Hub's `ratelimit-remaining: 0;w=21600`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// How many requests the window allows (`ratelimit-limit`), when said.
    pub limit: Option<u64>,
    /// How long the window is.
    pub window: Duration,
}

impl Quota {
    /// "0 of 100 left per 6 h".
    pub fn describe(&self) -> String {
        let secs = self.window.as_secs();
        let window = if secs >= 3600 && secs.is_multiple_of(3600) {
            format!("{} h", secs / 3600)
        } else if secs >= 60 && secs.is_multiple_of(60) {
            format!("{} min", secs / 60)
        } else {
            format!("{secs} s")
        };
        match self.limit {
            Some(limit) => format!("0 of {limit} left per {window}"),
            None => format!("none left for up to {window}"),
        }
    }
}

/// The quota a throttled answer says is spent, when its window is too long to wait out
/// within a run (a minute or more): retrying would only spend the request's budget, so
/// the refusal is reported at once. `remaining` and `limit` are the `ratelimit-remaining`
/// and `ratelimit-limit` headers (`N;w=SECONDS`, the IETF draft Docker Hub follows).
pub fn spent_quota(remaining: Option<&str>, limit: Option<&str>) -> Option<Quota> {
    fn parse(value: &str) -> Option<(u64, Option<u64>)> {
        let mut parts = value.split(';');
        let count = parts.next()?.trim().parse().ok()?;
        let window = parts
            .filter_map(|p| p.trim().strip_prefix("w="))
            .find_map(|w| w.trim().parse().ok());
        Some((count, window))
    }
    let (left, window) = parse(remaining?)?;
    let limit = limit.and_then(parse);
    let window = window.or(limit.and_then(|(_, w)| w))?;
    (left == 0 && window >= 60).then(|| Quota {
        limit: limit.map(|(n, _)| n),
        window: Duration::from_secs(window.min(86_400 * 31)),
    })
}

/// Backoff policy: exponential with full jitter, capped; `Retry-After` wins when given.
///
/// Two schedules. A request whose registry is failing ([`Health`] says so: nothing else
/// accepted since the request began, or most answers failing) waits exponentially
/// longer, up to `cap`: an outage gets its patience (3.2–6.4 s over 8 attempts), and a
/// registry that keeps failing is not hammered. A request hit by a fault while the
/// registry accepts other requests (one backend of several overloaded, a pooled
/// connection dropped) waits at most `transient_cap` per pause: such faults are
/// independent of each other, so a longer pause does not make the next attempt likelier
/// to succeed, it only holds the artifact (and the run's end) back. With 25% of
/// requests failing at random, one request in a few thousand fails 6-7 times in a row;
/// doubling pauses made it wait 1.6–6.4 s, a tail of twice the whole run.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// The longest pause after a server error or a broken connection while the
    /// registry is up (see [`Health::up_since`]).
    pub transient_cap: Duration,
    /// Attempts a request may use in all when its last failure came while the registry
    /// was up: its faults are a run of bad luck, not an outage, and short pauses make
    /// more attempts cheap. With 25% of answers failing at random, 8 attempts left one
    /// request in 65,536 failing all of them (one apply of 1,700 requests in 40 failed);
    /// 12 leave one in 16.8 million, for at most a second more.
    pub attempts_while_up: u32,
}

impl Default for Backoff {
    /// Eight attempts, the first retry after 25–50 ms, each pause up to twice the last:
    /// most transient faults (a pooled connection the server dropped, one overloaded
    /// backend behind a load balancer) clear on the next attempt, which should not wait
    /// long, while an outage still gets 3.2–6.4 s of patience in all. While the registry
    /// is up, pauses stop growing at 125–250 ms (Envoy's default: a 25 ms base, ten
    /// times that at most, fully jittered): 0.8–1.6 s in all.
    fn default() -> Self {
        Backoff {
            attempts: 8,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(20),
            transient_cap: Duration::from_millis(250),
            attempts_while_up: 12,
        }
    }
}

impl Backoff {
    /// How long to wait before attempt `attempt + 1` (attempt counts from 0) of a request
    /// the registry throttled or keeps failing.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.cap);
        }
        self.jittered(attempt, self.cap, jitter)
    }

    /// How long to wait before attempt `attempt + 1` after a server error or a broken
    /// connection: short while the registry is `up` (it accepts other requests), else
    /// [`Backoff::delay`]. A `Retry-After` always wins.
    pub fn pause(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        up: bool,
        jitter: f64,
    ) -> Duration {
        if up && retry_after.is_none() {
            self.jittered(attempt, self.transient_cap.min(self.cap), jitter)
        } else {
            self.delay(attempt, retry_after, jitter)
        }
    }

    fn jittered(&self, attempt: u32, cap: Duration, jitter: f64) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.min(16));
        let max = exp.min(cap);
        // Full jitter between half and all of the exponential delay.
        max.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// How a registry has been answering, for telling a fault that hit one request from a
/// registry that is failing (see [`Backoff`]): the retry throttling of gRPC (A6: a token
/// bucket per server, a failure takes one token, a success gives some back, retries
/// only while more than half are left), used here to choose the pause, not to refuse
/// the retry: a publish should finish. Plus what a single request can tell on its own:
/// a registry that accepted nothing since the request began may be down, however
/// healthy it looked before.
#[derive(Debug, Clone)]
pub struct Health {
    /// Answers accepted so far (anything not retried).
    accepted: u64,
    tokens: u32,
}

/// Tokens of [`Health`]: a failure takes one, an accepted answer gives one back, so the
/// registry counts as up while it fails fewer than half of its answers (a random walk
/// that drifts up at 25% failures, down above 50%), and is judged failing after some
/// ten failures more than successes (the first round of an outage at 8 or more in flight).
const HEALTH_TOKENS: u32 = 20;

impl Default for Health {
    fn default() -> Self {
        Health {
            accepted: 0,
            tokens: HEALTH_TOKENS,
        }
    }
}

impl Health {
    /// The registry accepted a request (answered anything not worth a retry).
    pub fn accepted(&mut self) {
        self.accepted += 1;
        self.tokens = (self.tokens + 1).min(HEALTH_TOKENS);
    }

    /// An attempt failed with a server error, a broken connection or a timeout.
    pub fn failed(&mut self) {
        self.tokens = self.tokens.saturating_sub(1);
    }

    /// A mark to pass to [`Health::up_since`], taken when a request begins.
    pub fn mark(&self) -> u64 {
        self.accepted
    }

    /// Whether the registry is up for a request that began at `mark`: it accepted
    /// another request since, and fails fewer than half of its answers lately.
    pub fn up_since(&self, mark: u64) -> bool {
        self.accepted > mark && self.tokens > HEALTH_TOKENS / 2
    }
}

/// A manifest `PUT` refused for a blob the repository holds: how often it is tried in all,
/// and the pause before each new try. distribution's filesystem storage (before v3.1)
/// rewrites a repository's link to a blob by truncating the file and then writing it, so
/// while another writer pushes or mounts the same blob into the same repository the link
/// reads empty for a moment and the manifest's check answers `DIGEST_INVALID` with
/// `MANIFEST_BLOB_UNKNOWN`. The window is microseconds wide: a short pause with jitter
/// (which also breaks the lock-step of identical applies run at once) clears it.
pub const LINK_RACE: Backoff = Backoff {
    attempts: 5,
    base: Duration::from_millis(50),
    cap: Duration::from_secs(1),
    transient_cap: Duration::from_secs(1),
    attempts_while_up: 5,
};

/// Parses `Retry-After`: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        // A day at most: a registry's number must not overflow the clock it is added to.
        return Some(Duration::from_secs(secs.min(86_400)));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let when = time::PrimitiveDateTime::parse(value, &format)
        .ok()?
        .assume_utc();
    let when: SystemTime = when.into();
    Some(
        when.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(86_400)),
    )
}

/// A small, dependency-free jitter source (quality is irrelevant, spread is what matters).
pub fn jitter() -> f64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() % 10_000) as f64 / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        assert_eq!(classify(429, &[], ""), Verdict::Throttled);
        assert_eq!(classify(503, &[], ""), Verdict::Retry);
        assert_eq!(classify(500, &[], ""), Verdict::Retry);
        assert_eq!(classify(408, &[], ""), Verdict::Retry);
        assert_eq!(classify(401, &[], ""), Verdict::Fail);
        assert_eq!(classify(404, &[], ""), Verdict::Fail);
        assert_eq!(classify(400, &["DIGEST_INVALID".into()], ""), Verdict::Fail);
        assert_eq!(
            classify(500, &["MANIFEST_INVALID".into()], ""),
            Verdict::Fail
        );
        assert_eq!(
            classify(
                403,
                &["DENIED".into()],
                "You have exceeded a secondary rate limit"
            ),
            Verdict::Throttled
        );
        assert_eq!(
            classify(403, &["DENIED".into()], "permission denied"),
            Verdict::Fail
        );
    }

    #[test]
    fn a_spent_quota_is_read_from_docker_hubs_headers() {
        let spent = spent_quota(Some("0;w=21600"), Some("100;w=21600")).expect("spent");
        assert_eq!(spent.describe(), "0 of 100 left per 6 h");
        assert_eq!(spent_quota(Some("3;w=21600"), Some("100;w=21600")), None);
        // A window short enough to wait out within the run is retried as usual.
        assert_eq!(spent_quota(Some("0;w=10"), None), None);
        assert_eq!(spent_quota(None, Some("100;w=21600")), None);
        assert_eq!(spent_quota(Some("zero"), None), None);
        assert_eq!(
            spent_quota(Some("0"), Some("100;w=3600")).map(|q| q.describe()),
            Some("0 of 100 left per 1 h".into())
        );
    }

    #[test]
    fn a_link_race_is_waited_out_briefly() {
        // The pauses between the 5 tries: under a second in all, never back to back.
        let total: Duration = (0..LINK_RACE.attempts - 1)
            .map(|a| LINK_RACE.delay(a, None, 1.0))
            .sum();
        assert_eq!(total, Duration::from_millis(50 + 100 + 200 + 400));
        assert!(LINK_RACE.delay(0, None, 0.0) >= Duration::from_millis(25));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        // A hostile number or date is capped, so adding it to a clock cannot overflow.
        let day = Some(Duration::from_secs(86_400));
        assert_eq!(parse_retry_after("18446744073709551615", now), day);
        assert_eq!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now), day);
    }

    /// The pauses of a request that fails `failures` times in a row, at full jitter.
    fn pauses(b: &Backoff, failures: u32, up: bool) -> Duration {
        (0..failures).map(|a| b.pause(a, None, up, 1.0)).sum()
    }

    #[test]
    fn a_fault_while_the_registry_is_up_is_retried_within_a_quarter_second() {
        // 25% of requests failing at random: one in 4,096 fails 6 times in a row, one
        // in 16,384 7 times, which an apply of 200 (1,700 requests) meets one run in
        // three to ten. Doubling pauses held that request 1.6–3.2 s, then 3.2–6.4 s.
        let b = Backoff::default();
        assert!(pauses(&b, 6, true) <= Duration::from_millis(1100));
        assert!(pauses(&b, 7, true) <= Duration::from_millis(1350));
        for attempt in 0..b.attempts {
            assert!(b.pause(attempt, None, true, 1.0) <= Duration::from_millis(250));
        }
        // The first pauses are the same either way: 25-50 ms, then doubling.
        assert_eq!(b.pause(0, None, true, 0.0), Duration::from_millis(25));
        assert_eq!(b.pause(2, None, true, 1.0), Duration::from_millis(200));
        // A Retry-After still wins.
        let after = Some(Duration::from_secs(2));
        assert_eq!(b.pause(5, after, true, 0.0), Duration::from_secs(2));
    }

    #[test]
    fn an_outage_keeps_its_patience() {
        // A registry failing every request: the documented 3.2-6.4 s over 8 attempts.
        let b = Backoff::default();
        assert_eq!(
            pauses(&b, b.attempts - 1, false),
            Duration::from_millis(6350)
        );
        let least: Duration = (0..b.attempts - 1)
            .map(|a| b.pause(a, None, false, 0.0))
            .sum();
        assert_eq!(least, Duration::from_millis(3175));
        assert_eq!(b.pause(30, None, false, 1.0), b.cap);
    }

    #[test]
    fn a_registry_is_up_while_it_accepts_other_requests_and_fails_under_half() {
        let mut health = Health::default();
        // A request alone against a registry that fails it: nothing says the registry is
        // up, so it gets an outage's patience.
        let began = health.mark();
        for _ in 0..7 {
            health.failed();
            assert!(!health.up_since(began));
        }
        // Another request accepted meanwhile: the failure was this request's alone.
        health.accepted();
        assert!(health.up_since(began));
        assert!(!health.up_since(health.mark()));
        // A quarter of the answers failing, in the worst order: stays up.
        let mut health = Health::default();
        for i in 0..2_000 {
            if i % 4 == 3 {
                health.failed();
            } else {
                health.accepted();
            }
            assert!(health.up_since(0), "answer {i}");
        }
        for _ in 0..6 {
            health.failed();
        }
        assert!(
            health.up_since(0),
            "six failures in a row among many answers"
        );
        // An outage: more failures than answers, and some accepted long ago do not count.
        let mut health = Health::default();
        for _ in 0..100 {
            health.accepted();
        }
        for i in 0..40 {
            health.failed();
            if i % 3 == 0 {
                health.accepted();
            }
        }
        assert!(!health.up_since(0), "two thirds of the answers failing");
        // Recovered: a run of accepted answers brings it back.
        for _ in 0..10 {
            health.accepted();
        }
        assert!(health.up_since(0));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff::default();
        assert!(b.delay(0, None, 1.0) <= Duration::from_millis(50));
        assert!(b.delay(0, None, 0.0) >= Duration::from_millis(25));
        assert!(b.delay(3, None, 1.0) == Duration::from_millis(400));
        // The patience of a whole request: 3.2-6.4 s of pauses before it gives up.
        let pauses =
            |jitter| -> Duration { (0..b.attempts - 1).map(|a| b.delay(a, None, jitter)).sum() };
        assert_eq!(pauses(1.0), Duration::from_millis(6350));
        assert_eq!(pauses(0.0), Duration::from_millis(3175));
        assert_eq!(b.delay(30, None, 1.0), b.cap);
        assert_eq!(b.delay(0, Some(Duration::from_secs(999)), 0.0), b.cap);
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(2)), 0.0),
            Duration::from_secs(2)
        );
    }
}
