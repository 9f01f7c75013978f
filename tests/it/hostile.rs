//! A hostile registry: a fake server on loopback whose every answer a test decides, to
//! play what a real registry never does on purpose: echo the `Authorization` header back,
//! redirect elsewhere, challenge with any realm, send escape sequences, send a malformed
//! digest. It records every request (with its headers) so that a test can check where
//! credentials went. It speaks through the harness's one HTTP/1.1 server
//! ([`crate::harness::http::serve`]), listens on 127.0.0.1 only and sends nothing anywhere.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub use crate::harness::http::{HttpRequest as Seen, HttpResponse as Reply};
use crate::harness::http::{Server, serve};

/// A running hostile server; stops when dropped.
pub struct Hostile {
    server: Server,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Hostile {
    /// Starts a server on loopback answering every request with `handler`.
    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Hostile {
        Hostile::start_on("127.0.0.1".parse().unwrap(), handler)
    }

    /// Starts a server on `ip`: loopback, or this machine's own non-loopback address (to
    /// play a host that eigenpub must treat as another machine; no packet leaves it).
    pub fn start_on(
        ip: std::net::IpAddr,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Hostile {
        let listener = TcpListener::bind((ip, 0)).expect("bind a local port");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let server = serve(listener, move |request, _stream| {
            record.lock().unwrap().push(request.clone());
            Some(handler(&request))
        });
        Hostile { server, seen }
    }

    /// `<ip>:<port>`.
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
