//! A proxy that plays a hosted registry's documented answers in front of a real
//! `docker-registry`.
//!
//! GHCR, ECR, Docker Hub, ACR, Artifact Registry, Quay, Harbor, GitLab and Artifactory
//! refuse requests in ways distribution never does: a 403 "secondary rate limit" on a
//! HEAD, `TAG_INVALID` for an immutable tag, a `detail` with the only useful reason,
//! `401 Basic realm="harbor"` to a request that carried a token, a 403 for a tag that
//! does not exist. The answers and their sources are collected in the project's registry
//! notes (`registries.md`). An [`Emulator`] forwards every request to the real registry
//! (which stays the store) unless its [`Script`] plays something else for it: an answer
//! of its own, a dropped connection, the request forwarded with another path, or the
//! registry's answer rewritten. It records every request with what it got, including the
//! `Authorization` scheme it carried.
//!
//! One request per connection, `Connection: close` both ways, `Location` headers rewritten
//! to point at the emulator, through the harness's [`http`](super::http) helper.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Registry;
use super::http::{self, HttpRequest, HttpResponse};

/// What the emulator does with one request.
pub enum Play {
    /// Forward it to the registry and relay its answer.
    Forward,
    /// Answer this instead; the registry never sees the request.
    Answer(HttpResponse),
    /// Read the request, then close the connection without an answer.
    Drop,
    /// Forward it with this path and query instead (a mount turned into a plain upload).
    ForwardAs(String),
    /// Forward it, then answer what this makes of the registry's answer.
    Rewrite(Box<dyn FnOnce(HttpResponse) -> HttpResponse + Send>),
    /// Wait this long, then forward it.
    Stall(Duration),
}

/// Decides, request by request, what to play.
pub type Script = Box<dyn FnMut(&HttpRequest) -> Play + Send>;

/// One request the emulator received, and what came of it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// The `Authorization` scheme it carried (`Basic`, `Bearer`), if any.
    pub auth: Option<String>,
    /// The status answered (`None` for a dropped connection).
    pub status: Option<u16>,
    /// True when the emulator answered (or dropped) it itself.
    pub played: bool,
    pub at: Instant,
    /// When the answer was written.
    pub answered: Option<Instant>,
}

struct Shared {
    upstream: String,
    public: String,
    script: Mutex<Script>,
    seen: Mutex<Vec<Seen>>,
}

/// A registry emulator on `127.0.0.1:<free port>` in front of a [`Registry`].
pub struct Emulator {
    shared: Arc<Shared>,
    _server: http::Server,
}

impl Emulator {
    /// Starts an emulator that plays `script` in front of `registry`.
    pub fn start(registry: &Registry, script: Script) -> Emulator {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the emulator");
        let public = format!(
            "127.0.0.1:{}",
            listener.local_addr().expect("emulator address").port()
        );
        let shared = Arc::new(Shared {
            upstream: registry.host(),
            public,
            script: Mutex::new(script),
            seen: Mutex::new(Vec::new()),
        });
        let serving = shared.clone();
        let server = http::serve(listener, move |request, client| {
            handle(request, client, &serving);
            None
        });
        Emulator {
            shared,
            _server: server,
        }
    }

    /// `127.0.0.1:PORT`, to put in a project's `registry`.
    pub fn host(&self) -> String {
        self.shared.public.clone()
    }

    pub fn port(&self) -> u16 {
        self.shared
            .public
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port")
    }

    pub fn set_script(&self, script: Script) {
        *self.shared.script.lock().unwrap() = script;
    }

    /// The requests seen, in the order they arrived (each is recorded once answered, so a
    /// quick answer to a later request can be recorded before a slow earlier one).
    pub fn seen(&self) -> Vec<Seen> {
        let mut seen = self.shared.seen.lock().unwrap().clone();
        seen.sort_by_key(|s| s.at);
        seen
    }

    pub fn reset(&self) {
        self.shared.seen.lock().unwrap().clear();
    }
}

/// Forward everything: the registry as it is.
pub fn transparent() -> Script {
    Box::new(|_| Play::Forward)
}

/// The spec's error body: `{"errors":[{"code","message"}]}`.
pub fn error(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::new(status).json(&json!({"errors": [{"code": code, "message": message}]}))
}

/// An error body with a `detail` too.
pub fn error_with_detail(status: u16, code: &str, message: &str, detail: Value) -> HttpResponse {
    HttpResponse::new(status)
        .json(&json!({"errors": [{"code": code, "message": message, "detail": detail}]}))
}

/// True for a manifest request (`/v2/<name>/manifests/<reference>`).
pub fn is_manifest(request: &HttpRequest) -> bool {
    request.path().contains("/manifests/")
}

/// True for a blob upload's start (`POST /v2/<name>/blobs/uploads/`).
pub fn is_upload_start(request: &HttpRequest) -> bool {
    request.method == "POST" && request.path().ends_with("/blobs/uploads/")
}

/// True for the `PUT` that completes a blob upload.
pub fn is_upload_finish(request: &HttpRequest) -> bool {
    request.method == "PUT" && request.path().contains("/blobs/uploads/")
}

/// The `from` of a mount request, if any.
pub fn mount_from(request: &HttpRequest) -> Option<String> {
    request
        .query()
        .into_iter()
        .find(|(k, _)| k == "from")
        .map(|(_, v)| v)
}

/// The repository a request names (`/v2/<name>/…`).
pub fn repository(request: &HttpRequest) -> String {
    let path = request.path().trim_start_matches("/v2/");
    for marker in ["/manifests/", "/blobs/", "/tags/"] {
        if let Some(i) = path.find(marker) {
            return path[..i].to_string();
        }
    }
    String::new()
}

fn handle(request: HttpRequest, client: &mut TcpStream, shared: &Shared) {
    let play = (shared.script.lock().unwrap())(&request);
    let auth = request
        .header("authorization")
        .and_then(|a| a.split(' ').next())
        .map(str::to_string);
    let at = Instant::now();
    let (status, played) = match play {
        Play::Answer(response) => {
            let _ = http::write_response(client, &response, &request.method);
            (Some(response.status), true)
        }
        Play::Drop => {
            let _ = client.shutdown(Shutdown::Both);
            (None, true)
        }
        Play::Forward => (
            relay(client, shared, &request, request.target.clone(), None),
            false,
        ),
        Play::ForwardAs(target) => (relay(client, shared, &request, target, None), false),
        Play::Rewrite(f) => (
            relay(client, shared, &request, request.target.clone(), Some(f)),
            true,
        ),
        Play::Stall(d) => {
            std::thread::sleep(d);
            (
                relay(client, shared, &request, request.target.clone(), None),
                false,
            )
        }
    };
    shared.seen.lock().unwrap().push(Seen {
        method: request.method.clone(),
        path: request.target.clone(),
        auth,
        status,
        played,
        at,
        answered: Some(Instant::now()),
    });
}

/// Forwards the request (to `target`) and relays the answer, rewritten by `rewrite` if
/// given; returns the status relayed.
fn relay(
    client: &mut TcpStream,
    shared: &Shared,
    request: &HttpRequest,
    target: String,
    rewrite: Option<Box<dyn FnOnce(HttpResponse) -> HttpResponse + Send>>,
) -> Option<u16> {
    let mut answer = forward(shared, request, &target).ok()?;
    if let Some(rewrite) = rewrite {
        answer = rewrite(answer);
    }
    let status = answer.status;
    let _ = http::write_response(client, &answer, &request.method);
    Some(status)
}

fn forward(shared: &Shared, request: &HttpRequest, target: &str) -> io::Result<HttpResponse> {
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
        &format!("{} {target} HTTP/1.1", request.method),
        &headers,
    )?;
    bytes.extend_from_slice(&request.body);
    upstream.write_all(&bytes)?;
    let mut raw = Vec::new();
    (&mut upstream)
        .take((http::MAX_HEAD + http::MAX_BODY) as u64)
        .read_to_end(&mut raw)?;
    let mut answer = http::parse_response(&raw, &request.method)?;
    let head = request.method == "HEAD";
    answer.headers = answer
        .headers
        .into_iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            !matches!(
                k.as_str(),
                "connection" | "keep-alive" | "transfer-encoding"
            ) && (head || k != "content-length")
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
    Ok(answer)
}
