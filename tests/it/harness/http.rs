//! The one small HTTP/1.1 implementation of the tests: a client, a server, and the
//! reading and writing of messages they share.
//!
//! It exists so that every test that speaks HTTP without eigenpub (reading back
//! blobs, the fault proxy, the token service, hostile fake registries) does so
//! through one piece of code that is independent of eigenpub's own client, bounded
//! (a head is at most [`MAX_HEAD`] bytes, a body at most [`MAX_BODY`], every socket
//! has timeouts) and deliberately simple: one request per connection,
//! `Connection: close` both ways, no redirects, no TLS.
//!
//! # Writing a fake server
//!
//! [`serve`] binds nothing itself: it takes a listener (bind `127.0.0.1:0`, never
//! anything but loopback) and calls the handler once per connection, on a thread of
//! its own, with the request already read and the connection to answer on. The
//! handler either returns a [`HttpResponse`] (written with `Content-Length` and
//! `Connection: close`), or writes on the stream itself and returns `None`, which is
//! how a hostile server misbehaves:
//!
//! ```ignore
//! let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//! let server = http::serve(listener, |request, stream| match request.path() {
//!     // A well-formed answer.
//!     "/v2/" => Some(HttpResponse::new(200).json(&json!({}))),
//!     // A body that never ends: trickle a byte a second.
//!     "/v2/slow" => {
//!         let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
//!         for _ in 0..30 { let _ = stream.write_all(b"x"); std::thread::sleep(SECOND); }
//!         None
//!     }
//!     // A connection dropped without an answer.
//!     _ => None,
//! });
//! let host = server.host(); // 127.0.0.1:PORT, stopped when `server` is dropped
//! ```
//!
//! [`write_head`] writes a start line and headers exactly as given (no
//! `Content-Length` added), for answers whose framing is the point of the test
//! (a huge announced length, a lying `Content-Length`, a head and no body).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Largest request or response head read (start line and headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest body read (a request body on the server side, a response on the client side).
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// Read and write timeout of every socket here.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// A request as a server reads it.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query, as sent (`/token?scope=…`).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query's `key=value` pairs, percent-decoded, in order.
    pub fn query(&self) -> Vec<(String, String)> {
        let query = self.target.split_once('?').map_or("", |(_, q)| q);
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (percent_decode(k), percent_decode(v)))
            .collect()
    }
}

/// A response: as a client reads it, or as a server writes it.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// An answer with `status`, no headers and no body.
    pub fn new(status: u16) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// With a header added.
    pub fn with_header(mut self, name: &str, value: impl ToString) -> HttpResponse {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// With `body` as an `application/json` body.
    pub fn json(self, body: &serde_json::Value) -> HttpResponse {
        self.with_header("Content-Type", "application/json")
            .with_body(body.to_string())
    }

    /// With `body` as the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> HttpResponse {
        self.body = body.into();
        self
    }

    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The reason phrase of the statuses tests use (`"Status"` for others).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Header names and values, in order, as sent.
pub type Headers = Vec<(String, String)>;

/// A head split off raw bytes: the start line, the headers, and what follows the
/// blank line (verbatim). `None` while the blank line has not come.
pub fn split_head(raw: &[u8]) -> Option<(String, Headers, &[u8])> {
    let end = find(raw, b"\r\n\r\n")?;
    let text = String::from_utf8_lossy(&raw[..end]);
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or_default().to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some((start, headers, &raw[end + 4..]))
}

/// Read a request: its head (at most [`MAX_HEAD`] bytes) and its `Content-Length`
/// body (at most [`MAX_BODY`]). Chunked request bodies are refused (no test client
/// sends one).
pub fn read_request(stream: &mut TcpStream) -> io::Result<HttpRequest> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let (start, headers, rest) = loop {
        if let Some((start, headers, rest)) = split_head(&data) {
            break (start, headers, rest.to_vec());
        }
        if data.len() > MAX_HEAD {
            return Err(io::Error::other("request head over the limit"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::other(
                "connection closed before the request head",
            ));
        }
        data.extend_from_slice(&chunk[..n]);
    };
    let mut parts = start.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    if header(&headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return Err(io::Error::other(format!(
            "chunked request bodies are not handled by the test server: {start}"
        )));
    }
    let length = header(&headers, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return Err(io::Error::other(format!("request body of {length} bytes")));
    }
    let mut body = rest;
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::other(
                "connection closed inside the request body",
            ));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(HttpRequest {
        method,
        target,
        headers,
        body,
    })
}

/// Write a start line and headers exactly as given, then the blank line.
pub fn write_head(
    stream: &mut impl Write,
    start: &str,
    headers: &[(String, String)],
) -> io::Result<()> {
    let mut head = format!("{start}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())
}

/// Write `response` with `Content-Length` (unless it has one) and
/// `Connection: close`; the body is left out when answering a `HEAD`. Then flush
/// and close the writing side.
pub fn write_response(
    stream: &mut TcpStream,
    response: &HttpResponse,
    method: &str,
) -> io::Result<()> {
    let mut headers = response.headers.clone();
    if response.header("content-length").is_none() {
        headers.push(("Content-Length".into(), response.body.len().to_string()));
    }
    headers.push(("Connection".into(), "close".into()));
    let start = format!("HTTP/1.1 {} {}", response.status, reason(response.status));
    write_head(stream, &start, &headers)?;
    if method != "HEAD" {
        stream.write_all(&response.body)?;
    }
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// `GET path` over plain HTTP/1.1.
pub fn http_get(
    host: &str,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> io::Result<HttpResponse> {
    http_request("GET", host, path, &[], credentials)
}

/// A minimal HTTP/1.1 client (`Connection: close`, Content-Length or chunked
/// bodies, no redirects), deliberately separate from whatever eigenpub uses.
pub fn http_request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    credentials: Option<(&str, &str)>,
) -> io::Result<HttpResponse> {
    let addr = host
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("cannot resolve {host}")))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut all: Vec<(String, String)> = vec![
        ("Host".into(), host.into()),
        ("User-Agent".into(), "eigenpub-it-harness".into()),
        ("Connection".into(), "close".into()),
    ];
    if let Some((user, password)) = credentials {
        all.push((
            "Authorization".into(),
            format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
        ));
    }
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    write_head(&mut stream, &format!("{method} {path} HTTP/1.1"), &all)?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_BODY as u64 + MAX_HEAD as u64)
        .read_to_end(&mut raw)?;
    parse_response(&raw, method)
}

/// A whole response read to the end of the connection: status, headers, and the
/// body de-chunked or cut to its `Content-Length`.
pub fn parse_response(raw: &[u8], method: &str) -> io::Result<HttpResponse> {
    let (status_line, headers, rest) =
        split_head(raw).ok_or_else(|| io::Error::other("response without end of headers"))?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut body = rest.to_vec();
    if method == "HEAD" || status == 204 || status == 304 {
        body.clear();
    } else if header(&headers, "transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body)?;
    } else if let Some(len) =
        header(&headers, "content-length").and_then(|v| v.parse::<usize>().ok())
    {
        if body.len() < len {
            return Err(io::Error::other(format!(
                "body truncated: {} of {len} bytes",
                body.len()
            )));
        }
        body.truncate(len);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or_else(|| io::Error::other("bad chunk"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::other(format!("bad chunk size {size_text:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err(io::Error::other("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// Standard base64 with padding, written here so the harness does not trust a
/// crate eigenpub also uses.
pub fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `%XX` and `+` decoded (invalid escapes kept as they are).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// A running [`serve`]: stops accepting when dropped (connections being handled
/// finish on their own threads).
pub struct Server {
    addr: String,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// `IP:PORT` of the listener (`[IP]:PORT` for IPv6).
    pub fn host(&self) -> String {
        self.addr.clone()
    }

    /// Connections being handled right now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Wait until no connection is being handled, at most `limit`; panics after.
    pub fn wait_idle(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.active() > 0 {
            assert!(
                Instant::now() < deadline,
                "the server still handles connections after {limit:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Serve `listener`: one thread per connection, the request read with
/// [`read_request`] (a connection that sends no whole request is closed unanswered),
/// then `handler(request, stream)`. A returned response is written with
/// [`write_response`]; `None` means the handler has written what it wanted (or
/// nothing), and the connection is closed.
pub fn serve<F>(listener: TcpListener, handler: F) -> Server
where
    F: Fn(HttpRequest, &mut TcpStream) -> Option<HttpResponse> + Send + Sync + 'static,
{
    let addr = listener.local_addr().expect("listener address").to_string();
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let stop = Arc::new(AtomicBool::new(false));
    let active = Arc::new(AtomicUsize::new(0));
    let handler = Arc::new(handler);
    let accept = {
        let (stop, active) = (stop.clone(), active.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((mut stream, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                active.fetch_add(1, Ordering::SeqCst);
                let (handler, active) = (handler.clone(), active.clone());
                thread::spawn(move || {
                    let _ = answer(&mut stream, &*handler);
                    active.fetch_sub(1, Ordering::SeqCst);
                });
            }
        })
    };
    Server {
        addr,
        stop,
        active,
        accept: Some(accept),
    }
}

fn answer<F>(stream: &mut TcpStream, handler: &F) -> io::Result<()>
where
    F: Fn(HttpRequest, &mut TcpStream) -> Option<HttpResponse>,
{
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let request = read_request(stream)?;
    let method = request.method.clone();
    match handler(request, stream) {
        Some(response) => write_response(stream, &response, &method),
        None => {
            let _ = stream.flush();
            let _ = stream.shutdown(Shutdown::Both);
            Ok(())
        }
    }
}

#[cfg(test)]
mod self_test {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(
            percent_decode("repository%3Aacme%2Fx%3Apull+push"),
            "repository:acme/x:pull push"
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn a_served_answer_reaches_the_client_and_raw_writes_are_possible() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = serve(listener, |request, stream| match request.path() {
            "/json" => Some(
                HttpResponse::new(201)
                    .with_header("X-Seen", request.query().len())
                    .json(&serde_json::json!({"method": request.method})),
            ),
            "/raw" => {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                );
                None
            }
            _ => None,
        });
        let host = server.host();
        let json = http_request("POST", &host, "/json?a=1&b=2", &[], None).expect("POST");
        assert_eq!(json.status, 201);
        assert_eq!(json.header("x-seen"), Some("2"));
        assert_eq!(json.body, br#"{"method":"POST"}"#);
        let raw = http_get(&host, "/raw", None).expect("GET /raw");
        assert_eq!((raw.status, raw.body.as_slice()), (200, &b"abc"[..]));
        assert!(
            http_get(&host, "/dropped", None).is_err(),
            "no answer is an error"
        );
    }
}
