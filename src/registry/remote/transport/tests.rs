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
            budget: Budget::General,
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
async fn a_fault_streak_while_other_requests_are_accepted_is_retried_briefly() {
    // One request fails 7 times in a row (25% faults at random: one in 16,384) while
    // the registry accepts the others, one every 10 ms. Before: 3.2-6.4 s of doubling
    // pauses, the whole run's tail; now at most 250 ms a pause.
    let r = registry();
    let start = Instant::now();
    let streak = async {
        let done = r.drive(&mut flaky(7)).await;
        (done, start.elapsed())
    };
    let others = async {
        for _ in 0..1_000 {
            r.drive(&mut flaky(0)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let ((done, waited), ()) = tokio::join!(streak, others);
    assert_eq!(done.unwrap(), 7, "the eighth attempt succeeds");
    assert!(
        waited >= Duration::from_millis(25 + 50 + 100 + 5 * 125 - 10),
        "{waited:?}"
    );
    assert!(
        waited <= Duration::from_millis(50 + 100 + 200 + 5 * 250),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fault_streak_while_the_registry_is_up_gets_twelve_attempts() {
    // 25% faults at random: one request in 65,536 fails 8 times in a row, and failed
    // its artifact and the run (one apply of 1,700 requests in 40). While the others
    // are accepted it gets 12 attempts, pauses short; alone (the registry may be down),
    // 8, as documented.
    let r = registry();
    let start = Instant::now();
    let streak = async {
        let mut attempts = flaky(100);
        let done = r.drive(&mut attempts).await;
        (done, attempts.made, start.elapsed())
    };
    let others = async {
        for _ in 0..1_000 {
            r.drive(&mut flaky(0)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let ((done, made, waited), ()) = tokio::join!(streak, others);
    assert_eq!(done.unwrap_err().status, Some(503));
    assert_eq!(made, 12, "twelve attempts while the registry is up");
    assert!(
        waited <= Duration::from_millis(50 + 100 + 200 + 9 * 250),
        "{waited:?}"
    );
    let r = registry();
    let mut alone = flaky(100);
    r.drive(&mut alone).await.unwrap_err();
    assert_eq!(alone.made, 8, "eight when nothing else is accepted");
    let mut streak = flaky(10);
    let (done, ()) = tokio::join!(r.drive(&mut streak), async {
        for _ in 0..1_000 {
            r.drive(&mut flaky(0)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert_eq!(
        done.unwrap(),
        10,
        "the eleventh attempt succeeds while others land"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_failing_alone_gets_an_outages_patience() {
    // Nothing else accepted since it began: the registry may be down, so the pauses
    // double as documented (3.2-6.4 s over 8 attempts), also after others were accepted
    // before it began.
    let r = registry();
    for _ in 0..50 {
        r.drive(&mut flaky(0)).await.unwrap();
    }
    let start = Instant::now();
    r.drive(&mut flaky(7)).await.unwrap();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(3175), "{waited:?}");
    assert!(waited <= Duration::from_millis(6350), "{waited:?}");
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

/// A registry on a loopback port that accepts connections and then does what `serve`
/// does with each (in the test's runtime, so under its paused clock). Returns the host
/// and how many connections it accepted.
async fn hostile<F, Fut>(serve: F) -> (String, Arc<std::sync::atomic::AtomicUsize>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(serve(stream));
        }
    });
    (host, accepted)
}

/// A plain-HTTP registry client for `host`, its notices collected.
fn client_of(host: &str) -> (Registry, Arc<std::sync::Mutex<Vec<String>>>) {
    let said = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = said.clone();
    let options = RegistryOptions {
        plain_http: true,
        notices: crate::registry::remote::Notices::new(move |line| {
            sink.lock().unwrap().push(line.to_string());
        }),
        ..RegistryOptions::default()
    };
    let registry = Registry::new(host, options, None, Arc::new(Stats::default())).unwrap();
    (registry, said)
}

async fn head_tags(registry: &Registry, n: usize) -> Vec<Result<Answer, RegistryError>> {
    let heads = (0..n).map(|i| {
        let url = registry.url("acme/avs", &format!("manifests/v{i}"));
        async move {
            registry
                .send("acme/avs", Method::HEAD, &url, HeaderMap::new(), None)
                .await
        }
    });
    futures::future::join_all(heads).await
}

#[tokio::test(start_paused = true)]
async fn a_registry_that_never_answers_is_given_up_once_within_its_deadline() {
    // Connections accepted, nothing ever said. Before: every request waited its deadline
    // twice or raced reqwest's own 60 s read timeout into 8 attempts (a plan of 1 tag:
    // 485 s; of 8: more than 25 minutes), without a line of output.
    let (host, accepted) = hostile(|stream| async move {
        let _held = stream;
        std::future::pending::<()>().await;
    })
    .await;
    let (registry, said) = client_of(&host);
    let start = Instant::now();
    let results = head_tags(&registry, 8).await;
    let took = start.elapsed();
    assert!(took <= Duration::from_secs(61), "{took:?}");
    for result in &results {
        let e = result.as_ref().expect_err("no answer");
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert!(
            e.message
                .contains("no complete answer within 60 s, to this request or any other for 60 s"),
            "{}",
            e.message
        );
        assert!(e.help.contains("timeout"), "{}", e.help);
    }
    // The first request learns the registry's scheme while the others wait for it; when
    // it gives up, so do they, at once: one connection in all, none tried again.
    assert_eq!(accepted.load(Ordering::Relaxed), 1);
    let said = said.lock().unwrap().clone();
    let expected: Vec<String> = (1..=5)
        .map(|n| format!("waiting for {host}: no answer for {} s", n * 10))
        .collect();
    assert_eq!(said, expected);
}

#[tokio::test(start_paused = true)]
async fn a_registry_that_trickles_its_headers_is_given_up_at_the_deadline() {
    // A status line, then one header byte a second, forever. Before: reqwest's read
    // timeout raced the deadline, its failure counted as a broken connection, and one
    // HEAD took 8 attempts (484 s).
    let (host, accepted) = hostile(|mut stream| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request).await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if stream.write_all(b"X").await.is_err() {
                return;
            }
        }
    })
    .await;
    let (registry, _) = client_of(&host);
    let start = Instant::now();
    let results = head_tags(&registry, 1).await;
    assert!(
        start.elapsed() <= Duration::from_secs(61),
        "{:?}",
        start.elapsed()
    );
    let e = results[0].as_ref().expect_err("no answer");
    assert!(
        e.message.contains("to this request or any other"),
        "{}",
        e.message
    );
    assert_eq!(accepted.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_registry_that_answers_others_is_not_given_up_for_one_slow_answer() {
    // Every other connection answers at once; the rest never do: those requests take
    // their deadline twice (tried once more), and the registry is not given up.
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (host, _) = hostile(move |mut stream| {
        let n = n.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            if n.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
            } else {
                std::future::pending::<()>().await;
            }
        }
    })
    .await;
    let (registry, _) = client_of(&host);
    // The scheme learnt first (an answer), then a request every 5 s for 70 s: every other
    // connection answered, the others never (a request tried again may land on either).
    let _ = head_tags(&registry, 1).await;
    let start = Instant::now();
    let requests = (0..14).map(|i| {
        let registry = &registry;
        async move {
            tokio::time::sleep(Duration::from_secs(5) * i).await;
            head_tags(registry, 1).await.remove(0)
        }
    });
    let results = futures::future::join_all(requests).await;
    assert!(registry.down.get().is_none(), "{:?}", registry.down.get());
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(!failed.is_empty());
    for e in failed {
        assert!(
            e.message.contains("no complete answer within 60 s"),
            "{}",
            e.message
        );
    }
    assert!(
        start.elapsed() >= Duration::from_secs(120),
        "{:?}",
        start.elapsed()
    );
}

/// How [`h2_server`] fails the first requests it gets.
#[derive(Clone, Copy, Debug)]
enum H2Fault {
    /// `RST_STREAM` (`INTERNAL_ERROR`) for the request.
    Reset,
    /// `GOAWAY` (`INTERNAL_ERROR`) for the whole connection, the request unanswered.
    GoAway,
}

/// An HTTP/2 server on loopback (prior knowledge, no TLS: the protocol ALPN negotiates
/// with GHCR or Docker Hub, without the certificate), answering 200 to every request
/// after failing the first `failing` with `fault`. Returns its host and the requests
/// it got.
async fn h2_server(
    fault: H2Fault,
    failing: usize,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((_, mut respond))) = connection.accept().await {
                    let n = counted.fetch_add(1, Ordering::SeqCst);
                    match fault {
                        H2Fault::Reset if n < failing => {
                            respond.send_reset(h2::Reason::INTERNAL_ERROR);
                        }
                        H2Fault::GoAway if n < failing => {
                            connection.abrupt_shutdown(h2::Reason::INTERNAL_ERROR);
                        }
                        _ => {
                            let ok = http::Response::builder().status(200).body(()).unwrap();
                            let _ = respond.send_response(ok, true);
                        }
                    }
                }
            });
        }
    });
    (host, requests)
}

#[tokio::test]
async fn an_http2_stream_reset_or_goaway_is_a_broken_connection_tried_again() {
    // Over HTTP/2 many requests share one connection: a stream reset fails one request,
    // a GOAWAY every request on the connection. Both are a connection that broke after
    // the request was sent (tried again, on a new connection for a GOAWAY), never a
    // registry that cannot be connected to (given up for the run).
    for (fault, failing) in [(H2Fault::Reset, 3), (H2Fault::GoAway, 1)] {
        let (host, requests) = h2_server(fault, failing).await;
        let (mut registry, _) = client_of(&host);
        registry.http = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        let answers = head_tags(&registry, 8).await;
        for answer in &answers {
            let status = answer.as_ref().map(|a| a.status);
            assert_eq!(status.ok(), Some(StatusCode::OK), "{fault:?}: {answer:?}");
        }
        assert!(registry.down.get().is_none(), "{fault:?}");
        let retried = registry.stats.retries.load(Ordering::Relaxed);
        assert!(retried >= 1, "{fault:?}: nothing was tried again");
        assert!(requests.load(Ordering::SeqCst) >= 8 + failing, "{fault:?}");
    }
}
