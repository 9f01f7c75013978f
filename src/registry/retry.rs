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
#[derive(Debug, Clone)]
pub struct Backoff {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    /// Eight attempts, the first retry after 25–50 ms, each pause up to twice the last:
    /// most transient faults (a pooled connection the server dropped, one overloaded
    /// backend behind a load balancer) clear on the next attempt, which should not wait
    /// long, while an outage still gets 3.2–6.4 s of patience in all.
    fn default() -> Self {
        Backoff {
            attempts: 8,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(20),
        }
    }
}

impl Backoff {
    /// How long to wait before attempt `attempt + 1` (attempt counts from 0).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.cap);
        }
        let exp = self.base.saturating_mul(1u32 << attempt.min(16));
        let max = exp.min(self.cap);
        // Full jitter between half and all of the exponential delay.
        max.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
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
