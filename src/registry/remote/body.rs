//! Reading a registry's answer with every read bounded: a size limit (an answer larger
//! than eigenpub can need is cut off with a clear error, never buffered whole), and a stall
//! detector for bodies that trickle in (less than [`STALL_MIN_BYTES`] in a
//! [`STALL_WINDOW`] is given up on). The per-request deadline around the whole exchange is
//! in [`super::transport`]; the limits per kind of answer and the ways an exchange fails
//! without an answer are here.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

/// The most a successful answer's body may hold unless the call says otherwise (an upload
/// session, a login check, a token): and the most of an error answer that is read.
pub(super) const SMALL_BODY: usize = 64 * 1024;
/// The most a manifest may hold (the OCI distribution spec's suggested limit).
pub(super) const MANIFEST_BODY: usize = 4 * 1024 * 1024;
/// The most a blob read back from the registry may hold (configs and spec layers).
pub(super) const BLOB_BODY: usize = 32 * 1024 * 1024;

/// How an exchange (request sent, answer read) failed without an answer to judge.
pub(super) enum Failure {
    /// No connection at all (refused, DNS, TLS): the same would happen again at once.
    Connect(reqwest::Error),
    /// The connection broke after the request was sent (a reset, closed before the
    /// answer, a read timeout): worth another try, like a 503.
    Broken(reqwest::Error),
    /// No complete answer within the per-request deadline.
    Deadline,
    /// The body trickled in slower than the stall detector allows.
    Stalled,
    /// The registry was given up while the request waited: why, as reported once for
    /// the registry.
    GivenUp(super::error::RegistryError),
    /// A successful answer's body is larger than the call can need.
    TooLarge { status: u16, limit: usize },
}

/// A body that delivers less than this in a [`STALL_WINDOW`] has stalled.
pub(super) const STALL_MIN_BYTES: usize = 1024;
/// How long a body may take to deliver [`STALL_MIN_BYTES`].
pub(super) const STALL_WINDOW: Duration = Duration::from_secs(5);

/// Why a body could not be read.
#[derive(Debug)]
pub(super) enum BodyError {
    /// Larger than the limit (known from `Content-Length`, or counted while reading).
    TooLarge,
    /// Trickling: less than [`STALL_MIN_BYTES`] arrived in a [`STALL_WINDOW`].
    Stalled,
    /// The connection broke while reading.
    Broken(reqwest::Error),
}

/// Where the bytes come from: a response, or (in tests) a scripted source.
pub(super) trait Chunks {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, reqwest::Error>;
    fn announced_length(&self) -> Option<u64>;
}

impl Chunks for reqwest::Response {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, reqwest::Error> {
        self.chunk().await
    }
    fn announced_length(&self) -> Option<u64> {
        self.content_length()
    }
}

/// Reads a body of at most `limit` bytes. With `truncate` (an error answer, read only for
/// its message) a longer body is cut at `limit` instead of refused.
pub(super) async fn read(
    source: &mut impl Chunks,
    limit: usize,
    truncate: bool,
) -> Result<Bytes, BodyError> {
    if !truncate && source.announced_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut buf = BytesMut::new();
    let mut window_end = Instant::now() + STALL_WINDOW;
    let mut window_bytes = 0usize;
    loop {
        let chunk = match tokio::time::timeout_at(window_end, source.next_chunk()).await {
            Err(_) => {
                if window_bytes < STALL_MIN_BYTES {
                    return Err(BodyError::Stalled);
                }
                window_end = Instant::now() + STALL_WINDOW;
                window_bytes = 0;
                continue;
            }
            Ok(Err(e)) => return Err(BodyError::Broken(e)),
            Ok(Ok(None)) => return Ok(buf.freeze()),
            Ok(Ok(Some(chunk))) => chunk,
        };
        if buf.len() + chunk.len() > limit {
            if truncate {
                let room = limit - buf.len();
                buf.extend_from_slice(&chunk[..room]);
                return Ok(buf.freeze());
            }
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
        window_bytes += chunk.len();
        if Instant::now() >= window_end {
            if window_bytes < STALL_MIN_BYTES {
                return Err(BodyError::Stalled);
            }
            window_end = Instant::now() + STALL_WINDOW;
            window_bytes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks of `size` bytes, `count` of them, one every `every`.
    struct Script {
        size: usize,
        count: usize,
        every: Duration,
        announced: Option<u64>,
    }

    impl Chunks for Script {
        async fn next_chunk(&mut self) -> Result<Option<Bytes>, reqwest::Error> {
            if self.count == 0 {
                return Ok(None);
            }
            tokio::time::sleep(self.every).await;
            self.count -= 1;
            Ok(Some(Bytes::from(vec![b'x'; self.size])))
        }
        fn announced_length(&self) -> Option<u64> {
            self.announced
        }
    }

    fn script(size: usize, count: usize, every_ms: u64) -> Script {
        Script {
            size,
            count,
            every: Duration::from_millis(every_ms),
            announced: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_within_the_limit_is_read_whole() {
        let body = read(&mut script(1000, 4, 10), 4096, false).await.unwrap();
        assert_eq!(body.len(), 4000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_over_the_limit_is_refused_or_cut() {
        let e = read(&mut script(1000, 100, 0), 4096, false).await;
        assert!(matches!(e, Err(BodyError::TooLarge)));
        let cut = read(&mut script(1000, 100, 0), 4096, true).await.unwrap();
        assert_eq!(cut.len(), 4096);
        // An announced length over the limit is refused before any byte is read.
        let mut announced = script(1, 1, 0);
        announced.announced = Some(1 << 40);
        assert!(matches!(
            read(&mut announced, 4096, false).await,
            Err(BodyError::TooLarge)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_is_given_up_on() {
        let start = Instant::now();
        // One byte every two seconds: stalled at the end of the first window.
        let e = read(&mut script(1, 1000, 2000), 1 << 20, false).await;
        assert!(matches!(e, Err(BodyError::Stalled)));
        assert!(start.elapsed() <= STALL_WINDOW + Duration::from_secs(2));
        // A slow but steady body (2 KiB a second) is not a stall.
        let body = read(&mut script(2048, 20, 1000), 1 << 20, false)
            .await
            .unwrap();
        assert_eq!(body.len(), 20 * 2048);
    }
}
