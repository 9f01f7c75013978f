//! A bearer-token service of the tests' own, as GHCR and Docker Hub have.
//!
//! It exists so that token authentication is tested against distribution's real
//! `auth.token` support: the registry ([`Registry`](super::Registry) with
//! [`Auth::Token`](super::Auth::Token)) challenges clients to fetch a token here;
//! this service checks one user's basic credentials and answers an RS256 JWT
//! signed with `openssl dgst`, whose key's self-signed certificate is the
//! registry's `rootcertbundle` and rides in the token's `x5c` header. It keeps a
//! record of every request (scopes, service, whether the credentials were right,
//! the token issued), can issue short-lived tokens the registry itself refuses
//! once expired, and can play an overloaded service. It serves with the
//! harness's [`http`](super::http) helper.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::http::{self, HttpRequest, HttpResponse};
use super::process::run;
use super::secrets::Secret;

pub const TOKEN_SERVICE: &str = "eigenpub-test-registry";
pub const TOKEN_ISSUER: &str = "eigenpub-test-issuer";
/// distribution accepts a token until its `exp` claim plus this much (its
/// `token.Leeway`, for clock skew), and before `nbf` minus this much.
const DISTRIBUTION_LEEWAY_SECS: u64 = 60;

/// How long the tokens of a [`TokenServer`] live.
#[derive(Clone, Copy, Debug)]
pub enum Lifetime {
    /// `expires_in: 300`, `exp` = now + 300 s: never an issue within a test.
    Long,
    /// `expires_in: N`, and an `exp` claim that makes the registry itself refuse
    /// the token once N s have passed (up to 1 s more, JWT times being whole
    /// seconds): `ceil(now + N)` minus distribution's leeway.
    Enforced(u64),
}

impl Lifetime {
    fn expires_in(self) -> u64 {
        match self {
            Lifetime::Long => 300,
            Lifetime::Enforced(n) => n,
        }
    }

    /// The `exp` claim of a token issued at `now` (UNIX seconds, fractional).
    fn exp_claim(self, now: f64) -> u64 {
        match self {
            Lifetime::Long => now as u64 + 300,
            Lifetime::Enforced(n) => (now + n as f64).ceil() as u64 - DISTRIBUTION_LEEWAY_SECS,
        }
    }
}

/// One request the token service answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// Every `scope` parameter, decoded (none for the API root).
    pub scopes: Vec<String>,
    pub service: Option<String>,
    /// `None`: no Authorization header; `Some(ok)`: Basic credentials, right or not.
    pub credentials: Option<bool>,
    /// The token issued, if any.
    pub token: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// When the request arrived.
    pub at: Instant,
}

/// An answer a [`TokenServer`] gives instead of a token, whatever the request: an
/// overloaded or rate-limited service.
#[derive(Clone, Copy, Debug)]
pub struct Overload {
    /// The status answered, e.g. 503.
    pub status: u16,
    /// `Retry-After` in seconds, if sent.
    pub retry_after: Option<u32>,
}

/// A token service on loopback, answering `GET /token?scope=…&service=…` for
/// one user (HTTP basic auth) with an RS256 JWT that distribution accepts; stopped
/// on drop.
pub struct TokenServer {
    dir: TempDir,
    server: http::Server,
    log: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenServer {
    pub fn start(secret: &Secret) -> TokenServer {
        TokenServer::start_with_lifetime(secret, Lifetime::Long)
    }

    pub fn start_with_lifetime(secret: &Secret, lifetime: Lifetime) -> TokenServer {
        TokenServer::start_full(secret, lifetime, Vec::new())
    }

    /// A service that answers its first requests with `overloads`, in order, then
    /// normally.
    pub fn start_overloaded(secret: &Secret, overloads: Vec<Overload>) -> TokenServer {
        TokenServer::start_full(secret, Lifetime::Long, overloads)
    }

    fn start_full(secret: &Secret, lifetime: Lifetime, overloads: Vec<Overload>) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("eigenpub-it-token-")
            .tempdir()
            .expect("create token dir");
        let d = dir.path().to_path_buf();
        let openssl = |args: &[&str]| {
            let mut cmd = Command::new("openssl");
            cmd.args(args).current_dir(&d);
            let out = run(cmd);
            assert_eq!(out.code, 0, "openssl {args:?} failed: {out}");
        };
        openssl(&[
            "req",
            "-x509",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-days",
            "2",
            "-keyout",
            "token.key",
            "-out",
            "token.pem",
            "-subj",
            "/CN=eigenpub test token signer",
        ]);
        openssl(&[
            "x509",
            "-in",
            "token.pem",
            "-outform",
            "DER",
            "-out",
            "token.der",
        ]);
        let x5c = base64::engine::general_purpose::STANDARD
            .encode(fs::read(d.join("token.der")).expect("read token.der"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let expected = format!("Basic {}", secret.basic());
        let user = secret.user.clone();
        let issued = AtomicU32::new(0);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind token service");
        let server = {
            let log = log.clone();
            http::serve(listener, move |request, _stream| {
                let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
                let signer = Signer {
                    dir: &d,
                    x5c: &x5c,
                    user: &user,
                    n,
                    lifetime,
                };
                let overload = overloads.get(n as usize - 1);
                let (record, response) = serve_token(&request, &expected, &signer, overload);
                log.lock().unwrap_or_else(|e| e.into_inner()).push(record);
                Some(response)
            })
        };
        TokenServer { dir, server, log }
    }

    /// `127.0.0.1:PORT` of the service.
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// The URL registries send clients to (the `realm` of their challenge).
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.host())
    }

    /// The `auth:` section of a registry configuration that trusts this service.
    pub fn registry_yaml(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            self.realm(),
            self.dir.path().join("token.pem").display()
        )
    }

    /// Every request answered since start or the last [`TokenServer::clear`].
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Every token issued, as secrets for the leak check: a bearer token is a
    /// credential too.
    pub fn issued_secrets(&self) -> Vec<Secret> {
        self.requests()
            .into_iter()
            .filter_map(|r| r.token)
            .map(|token| Secret {
                user: String::new(),
                password: token,
            })
            .collect()
    }

    /// A token for `scope`, fetched with `secret` the way any client does.
    pub fn token_for(&self, secret: &Secret, scope: &str) -> String {
        let answer = http::http_request(
            "GET",
            &self.host(),
            &format!("/token?scope={scope}&service={TOKEN_SERVICE}"),
            &[],
            Some((&secret.user, &secret.password)),
        )
        .expect("ask the token service");
        assert_eq!(answer.status, 200, "the token service grants {scope}");
        let doc: Value = serde_json::from_slice(&answer.body).expect("a JSON token answer");
        doc["token"].as_str().expect("a token").to_string()
    }
}

struct Signer<'a> {
    dir: &'a Path,
    x5c: &'a str,
    user: &'a str,
    n: u32,
    lifetime: Lifetime,
}

impl Signer<'_> {
    /// An RS256 JWT granting `scopes` (`repository:<name>:<actions>`).
    fn token(&self, scopes: &[String]) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now_exact = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        let now = now_exact as u64;
        let access: Vec<Value> = scopes
            .iter()
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = json!({
            "iss": TOKEN_ISSUER, "sub": self.user, "aud": TOKEN_SERVICE,
            "exp": self.lifetime.exp_claim(now_exact), "nbf": now - 10, "iat": now,
            "jti": format!("token-{}", self.n), "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let input = self.dir.join(format!("input-{}", self.n));
        let sig = self.dir.join(format!("sig-{}", self.n));
        fs::write(&input, &signing_input).expect("write signing input");
        let mut cmd = Command::new("openssl");
        cmd.args(["dgst", "-sha256", "-sign", "token.key", "-out"])
            .arg(&sig)
            .arg(&input)
            .current_dir(self.dir);
        let out = run(cmd);
        assert_eq!(out.code, 0, "openssl dgst failed: {out}");
        let signature = fs::read(&sig).expect("read signature");
        format!("{signing_input}.{}", b64(&signature))
    }
}

/// Answer one request: `overload` if given, else 200 with a token for the right
/// credentials, 401 else; and the record of it.
fn serve_token(
    request: &HttpRequest,
    expected: &str,
    signer: &Signer<'_>,
    overload: Option<&Overload>,
) -> (TokenRequest, HttpResponse) {
    let params = request.query();
    let mut record = TokenRequest {
        scopes: params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(String::from).collect::<Vec<_>>())
            .collect(),
        service: params
            .iter()
            .find(|(k, _)| k == "service")
            .map(|(_, v)| v.clone()),
        credentials: request.header("authorization").map(|a| a == expected),
        token: None,
        status: 200,
        at: Instant::now(),
    };
    let response = if let Some(overload) = overload {
        let response = HttpResponse::new(overload.status).json(
            &json!({"errors": [{"code": "UNAVAILABLE", "message": "overloaded, try again"}]}),
        );
        match overload.retry_after {
            Some(secs) => response.with_header("Retry-After", secs),
            None => response,
        }
    } else if request.path() != "/token" {
        HttpResponse::new(404).json(&json!({}))
    } else if record.credentials != Some(true) {
        HttpResponse::new(401)
            .json(&json!({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}))
    } else {
        let token = signer.token(&record.scopes);
        record.token = Some(token.clone());
        HttpResponse::new(200).json(
            &json!({"token": token, "access_token": token, "expires_in": signer.lifetime.expires_in()}),
        )
    };
    record.status = response.status;
    (record, response)
}
