//! A fault-injecting HTTP/1.1 proxy to put between eigenpub and a real registry.
//!
//! It exists because real registries misbehave in ways a well-behaved
//! `docker-registry` never does: they rate-limit (429 with `Retry-After`), fall over
//! (500/503), drop connections, stall, and lose the answer to a request they did
//! carry out. The [`Proxy`] forwards each request to a [`Registry`], or injects the
//! [`Fault`] its current [`Policy`] decides, and records what it saw and when. It
//! is built on the harness's [`http`](super::http) helper: one request per
//! connection, `Connection: close` both ways, `Location` headers rewritten to point
//! at the proxy.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::Registry;
use super::http::{self, HttpRequest, HttpResponse};

/// What the proxy does to one request instead of (or before) forwarding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `429` with `Retry-After: <secs>` and a TOOMANYREQUESTS error body.
    TooManyRequests { retry_after: u64 },
    /// `503 Service Unavailable`, no body.
    Unavailable,
    /// `500` with an `UNKNOWN` error body whose message is [`INJECTED_MESSAGE`].
    ServerError,
    /// `400` with a `DIGEST_INVALID` error body.
    DigestInvalid,
    /// `403` with a `DENIED` error body (e.g. GHCR refusing one package).
    Forbidden,
    /// Read the whole request, then close the connection without answering.
    Drop,
    /// Forward the request (the registry carries it out), then close the connection
    /// without relaying the answer: the client never learns that it succeeded.
    LoseAnswer,
    /// Hold the request this long, then forward it.
    Stall(Duration),
}

/// The message of the 500s [`Fault::ServerError`] answers with.
pub const INJECTED_MESSAGE: &str = "injected failure for the fault tests";

impl Fault {
    /// Whether the client sees a failed attempt (a stall is only slow).
    pub fn fails(self) -> bool {
        !matches!(self, Fault::Stall(_))
    }
}

/// The request line of a request, as the proxy saw it.
pub struct Head {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
}

/// Decides, request by request, which fault (if any) to inject.
pub type Policy = Box<dyn FnMut(&Head) -> Option<Fault> + Send>;

/// One request the proxy received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub fault: Option<Fault>,
}

struct Shared {
    /// `127.0.0.1:<registry port>`.
    upstream: String,
    /// `127.0.0.1:<proxy port>`.
    public: String,
    policy: Mutex<Policy>,
    seen: Mutex<Vec<Seen>>,
    /// Requests sent on to the registry.
    forwarded: AtomicUsize,
}

/// An HTTP/1.1 proxy on `127.0.0.1:<free port>` in front of a [`Registry`]: one thread per
/// connection, one request per connection (`Connection: close` both ways), `Location`
/// headers rewritten to point at the proxy. Faults come from the current [`Policy`].
pub struct Proxy {
    shared: Arc<Shared>,
    server: http::Server,
}

impl Proxy {
    pub fn start(registry: &Registry) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let public = format!(
            "127.0.0.1:{}",
            listener.local_addr().expect("proxy address").port()
        );
        let shared = Arc::new(Shared {
            upstream: registry.host(),
            public,
            policy: Mutex::new(no_faults()),
            seen: Mutex::new(Vec::new()),
            forwarded: AtomicUsize::new(0),
        });
        let serving = shared.clone();
        let server = http::serve(listener, move |request, client| {
            handle(request, client, &serving)
        });
        Proxy { shared, server }
    }

    /// `127.0.0.1:PORT`, to put in a project's `registry`.
    pub fn host(&self) -> String {
        self.shared.public.clone()
    }

    pub fn set_policy(&self, policy: Policy) {
        *self.shared.policy.lock().unwrap() = policy;
    }

    pub fn faults_off(&self) {
        self.set_policy(no_faults());
    }

    /// Forget what was seen so far.
    pub fn reset(&self) {
        self.shared.seen.lock().unwrap().clear();
        self.shared.forwarded.store(0, Ordering::SeqCst);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Faults injected since start or the last reset.
    pub fn faults(&self) -> Vec<Fault> {
        self.seen().iter().filter_map(|s| s.fault).collect()
    }

    pub fn forwarded(&self) -> usize {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// Waits until no connection is being handled (stalled requests of a killed client
    /// are still forwarded, as a real network would deliver them).
    pub fn wait_idle(&self) {
        self.server.wait_idle(Duration::from_secs(30));
    }
}

pub fn no_faults() -> Policy {
    Box::new(|_| None)
}

/// A small seeded PRNG (xorshift64): the same seed gives the same sequence of decisions.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-enough in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Most consecutive failed attempts of one request (same method, path and query) that
/// [`flaky`] injects. eigenpub makes up to 3 attempts after a connection error and up to
/// 6 after an error status, so two in a row is within its documented budget whatever the
/// kinds: a run that fails under [`flaky`] has given up on a transient fault.
pub const MAX_STREAK: u32 = 2;

/// Faults `percent`% of the requests matching `filter`, kinds drawn from `mix` (weights),
/// in a sequence fixed by `seed` (the n-th request the proxy sees gets the n-th decision;
/// which request is n-th depends on scheduling). No request fails more than
/// [`MAX_STREAK`] times in a row.
pub fn flaky(
    seed: u64,
    percent: u64,
    mix: &[(Fault, u64)],
    filter: impl Fn(&Head) -> bool + Send + 'static,
) -> Policy {
    let mix = mix.to_vec();
    let total: u64 = mix.iter().map(|(_, w)| w).sum();
    let mut rng = XorShift::new(seed);
    let mut streaks: HashMap<String, u32> = HashMap::new();
    Box::new(move |head| {
        if !filter(head) {
            return None;
        }
        let streak = streaks
            .entry(format!("{} {}", head.method, head.path))
            .or_default();
        let roll = rng.below(100);
        let mut pick = rng.below(total);
        if *streak >= MAX_STREAK || roll >= percent {
            *streak = 0;
            return None;
        }
        let fault = mix
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map(|(f, _)| *f)
            .expect("weights add up");
        if fault.fails() {
            *streak += 1;
        } else {
            *streak = 0;
        }
        Some(fault)
    })
}

/// `fault` for every request matching `filter`.
pub fn always(fault: Fault, filter: impl Fn(&Head) -> bool + Send + 'static) -> Policy {
    Box::new(move |head| filter(head).then_some(fault))
}

/// `fault` for the first `n` requests matching `filter`, then nothing.
pub fn first(n: usize, fault: Fault, filter: impl Fn(&Head) -> bool + Send + 'static) -> Policy {
    let mut left = n;
    Box::new(move |head| {
        if left > 0 && filter(head) {
            left -= 1;
            Some(fault)
        } else {
            None
        }
    })
}

/// Requests that change the registry (blob upload start and finish, manifest push).
pub fn is_write(head: &Head) -> bool {
    head.method == "POST" || head.method == "PUT" || head.method == "PATCH"
}

/// Serves one request: faulted, or forwarded.
fn handle(request: HttpRequest, client: &mut TcpStream, shared: &Shared) -> Option<HttpResponse> {
    let head = Head {
        method: request.method.clone(),
        path: request.target.clone(),
    };
    let fault = (shared.policy.lock().unwrap())(&head);
    shared.seen.lock().unwrap().push(Seen {
        at: Instant::now(),
        method: head.method.clone(),
        path: head.path.clone(),
        fault,
    });
    let error = |status: u16, code: &str, message: &str| {
        HttpResponse::new(status)
            .json(&serde_json::json!({"errors": [{"code": code, "message": message}]}))
    };
    match fault {
        None | Some(Fault::LoseAnswer) => {
            let _ = forward(client, shared, &request, fault);
            None
        }
        Some(Fault::Stall(d)) => {
            thread::sleep(d);
            let _ = forward(client, shared, &request, None);
            None
        }
        Some(Fault::Drop) => {
            let _ = client.shutdown(Shutdown::Both);
            None
        }
        Some(Fault::TooManyRequests { retry_after }) => Some(
            error(429, "TOOMANYREQUESTS", "rate limit").with_header("Retry-After", retry_after),
        ),
        Some(Fault::Unavailable) => Some(HttpResponse::new(503)),
        Some(Fault::ServerError) => Some(error(500, "UNKNOWN", INJECTED_MESSAGE)),
        Some(Fault::Forbidden) => Some(error(
            403,
            "DENIED",
            "permission_denied: The token provided does not match expected scopes.",
        )),
        Some(Fault::DigestInvalid) => Some(error(
            400,
            "DIGEST_INVALID",
            "provided digest did not match uploaded content",
        )),
    }
}

/// Sends the request on to the registry and relays its answer (unless the fault is
/// [`Fault::LoseAnswer`], which closes the client's connection instead).
fn forward(
    client: &mut TcpStream,
    shared: &Shared,
    request: &HttpRequest,
    fault: Option<Fault>,
) -> io::Result<()> {
    let mut upstream = TcpStream::connect(&shared.upstream)?;
    upstream.set_read_timeout(Some(http::IO_TIMEOUT))?;
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.to_ascii_lowercase().as_str(),
                "host" | "connection" | "keep-alive" | "proxy-connection" | "te" | "upgrade"
            )
        })
        .cloned()
        .collect();
    headers.push(("Host".into(), shared.upstream.clone()));
    headers.push(("Connection".into(), "close".into()));
    let mut bytes = Vec::new();
    http::write_head(
        &mut bytes,
        &format!("{} {} HTTP/1.1", request.method, request.target),
        &headers,
    )?;
    bytes.extend_from_slice(&request.body);
    upstream.write_all(&bytes)?;
    shared.forwarded.fetch_add(1, Ordering::SeqCst);

    // The registry closes the connection after its answer (Connection: close), so the
    // answer is everything up to EOF: head rewritten, body relayed verbatim.
    let mut response = Vec::new();
    (&mut upstream)
        .take((http::MAX_HEAD + http::MAX_BODY) as u64)
        .read_to_end(&mut response)?;
    if fault == Some(Fault::LoseAnswer) {
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
    let (status_line, headers, body) = http::split_head(&response)
        .ok_or_else(|| io::Error::other("registry answer without end of headers"))?;
    let mut headers: Vec<(String, String)> = headers
        .into_iter()
        .filter(|(k, _)| {
            !k.eq_ignore_ascii_case("connection") && !k.eq_ignore_ascii_case("keep-alive")
        })
        .map(|(k, v)| {
            if k.eq_ignore_ascii_case("location") {
                let v = v.replace(&shared.upstream, &shared.public);
                (k, v)
            } else {
                (k, v)
            }
        })
        .collect();
    headers.push(("Connection".into(), "close".into()));
    let mut bytes = Vec::new();
    http::write_head(&mut bytes, &status_line, &headers)?;
    bytes.extend_from_slice(body);
    client.write_all(&bytes)?;
    client.flush()?;
    let _ = client.shutdown(Shutdown::Write);
    Ok(())
}
