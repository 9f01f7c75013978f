//! A TCP relay that keeps a copy of what clients sent through it.
//!
//! It exists to read what eigenpub put on the wire when the server's own records
//! do not show it: the registry's access log has no request headers, so a test that
//! must prove no `Authorization` header (or token) was sent puts this relay
//! between eigenpub and the registry and searches the bytes. It is byte-level, not
//! HTTP: nothing is parsed or changed on the way.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The bytes one client connection sent through a [`Tee`].
type Copied = Arc<Mutex<Vec<u8>>>;

/// A TCP relay on `ip:<free port>` to `upstream` that keeps a copy of everything
/// each client connection sent, so that a test can read the headers of every
/// request; stopped on drop.
pub struct Tee {
    addr: String,
    sent: Arc<Mutex<Vec<Copied>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Tee {
    pub fn start(ip: IpAddr, upstream: &str) -> Tee {
        let listener = TcpListener::bind((ip, 0)).expect("bind the relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("relay addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let sent: Arc<Mutex<Vec<Copied>>> = Arc::default();
        let upstream = upstream.to_string();
        let thread = {
            let (stop, sent) = (stop.clone(), sent.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((client, _)) = listener.accept() else {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let Ok(server) = TcpStream::connect(&upstream) else {
                        continue;
                    };
                    let _ = client.set_nonblocking(false);
                    let copy: Copied = Arc::default();
                    sent.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(copy.clone());
                    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone())
                    else {
                        continue;
                    };
                    thread::spawn(move || relay(client, server, Some(copy)));
                    thread::spawn(move || relay(server2, client2, None));
                }
            })
        };
        Tee {
            addr,
            sent,
            stop,
            thread: Some(thread),
        }
    }

    /// `IP:PORT` to connect to instead of the upstream.
    pub fn host(&self) -> String {
        self.addr.clone()
    }

    /// What each client connection sent, as lossy text.
    pub fn sent(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| {
                String::from_utf8_lossy(&c.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
            })
            .collect()
    }
}

/// Copies `from` to `to` until either closes, keeping a copy in `keep`.
fn relay(mut from: TcpStream, mut to: TcpStream, keep: Option<Copied>) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(keep) = &keep {
                    keep.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
