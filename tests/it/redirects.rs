//! Credentials and redirects (issue 10): the README promises that token requests follow
//! no redirect at all (a 307 would carry a refresh token in its body, a 302 would let a
//! token service hand out tokens from somewhere the registry never named), and that a
//! registry request redirected to another origin (a CDN, as registries do for blobs)
//! loses its `Authorization` header. These tests play the redirecting servers on
//! loopback ([`crate::hostile`]) and search everything the redirect target received for
//! every spelling of the secret; the CDN of the second test is a real registry behind a
//! byte-copying relay ([`Tee`]), so that eigenpub really reads the manifest through the
//! redirect.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::harness::env::Env;
use crate::harness::relay::Tee;
use crate::harness::secrets::{Secret, Transcript};
use crate::harness::{LOOPBACK, Output, Project, Registry, spec_yaml};
use crate::hostile::{Hostile, Reply, Seen};

const USER: &str = "release-bot";
/// A run against loopback servers that answer at once takes well under a second; this
/// bound only guards against a hang (on a loaded CI machine, a debug build). That a
/// redirect is not retried is asserted by counting requests.
const QUICK: Duration = Duration::from_secs(30);

/// How eigenpub holds the registry's credentials.
#[derive(Clone, Copy, Debug)]
enum Held {
    /// A user name and password: sent as Basic authentication on a GET to the realm.
    Password,
    /// An identity token (`auths.<host>.identitytoken`): sent as `refresh_token` in the
    /// body of a POST to the realm, which a 307 or 308 would carry along.
    IdentityToken,
}

impl Held {
    /// The secret, and an environment holding it for `host`.
    fn environment(self, host: &str) -> (Secret, Env) {
        match self {
            Held::Password => {
                let secret = Secret::new(USER);
                let env = Env::new().registry_vars(host, &secret);
                (secret, env)
            }
            Held::IdentityToken => {
                let secret = Secret::new("<token>");
                let env = Env::new().with_config(
                    &serde_json::json!({"auths": {host: {"identitytoken": secret.password}}}),
                );
                (secret, env)
            }
        }
    }

    /// True when `request` to the token service carried these credentials (so the test
    /// exercised the path it claims to).
    fn carried_by(self, request: &Seen, secret: &Secret) -> bool {
        match self {
            Held::Password => {
                request.header("authorization") == Some(&format!("Basic {}", secret.basic()))
            }
            Held::IdentityToken => {
                request.method == "POST"
                    && String::from_utf8_lossy(&request.body).contains(&secret.password)
            }
        }
    }
}

fn project_for(host: &str) -> Project {
    let p = Project::new();
    p.write(
        "eigenruntime.toml",
        format!(
            "[defaults]\nregistry = \"{host}/acme\"\ncreated = \"2024-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"oracle\"\n[avs.operator-sets]\n0 = \"spec.yaml\"\n"
        ),
    );
    p.write("spec.yaml", spec_yaml("oracle", "aggregator", "1"));
    p
}

/// A request as one text (start line, headers, body) to search for secrets in.
fn as_text(request: &Seen) -> String {
    let headers: String = request
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect();
    let query: String = request
        .query()
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    format!(
        "{} {}\n{query}{headers}\n{}",
        request.method,
        request.target,
        String::from_utf8_lossy(&request.body)
    )
}

/// Panics when any of `texts` (what a server that must get no credentials received)
/// holds an `Authorization` or `Referer` header or any spelling of `secret` or of `tokens`.
#[track_caller]
fn assert_no_credentials_in(texts: &[String], secret: &Secret, tokens: &[&str], what: &str) {
    for text in texts {
        for form in secret.forms() {
            assert!(
                !text.contains(&form),
                "{what} received the secret {form:?}:\n{text}"
            );
        }
        for token in tokens {
            assert!(
                !text.contains(token),
                "{what} received the token {token:?}:\n{text}"
            );
        }
        assert!(
            !text.to_ascii_lowercase().contains("\nauthorization:"),
            "{what} received an Authorization header:\n{text}"
        ); // Nor where it came from: a signed URL's query would travel in a Referer.
        assert!(
            !text.to_ascii_lowercase().contains("\nreferer:"),
            "{what} received a Referer header:\n{text}"
        );
    }
}

/// A report's text as words, whatever the terminal width wrapped.
fn unwrapped(report: &str) -> String {
    report
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `plan` with `env`, timed.
fn timed_plan(env: &Env, p: &Project) -> (Output, Duration) {
    let started = Instant::now();
    let out = env.run(p, &["plan"]);
    (out, started.elapsed())
}

// ---------------------------------------------------------------------------
// Token requests follow no redirect
// ---------------------------------------------------------------------------

/// Where the token service the registry names lives.
#[derive(Clone, Copy, Debug)]
enum Realm {
    /// `/token` on the registry's own origin.
    OnTheRegistry,
    /// A token service of its own (another port: another origin).
    OfItsOwn,
}

/// A token service that answers every token request with a redirect `status` to
/// `elsewhere` (path and query kept).
fn redirecting(status: u16, elsewhere: String) -> impl Fn(&Seen) -> Reply + Send + Sync {
    move |req: &Seen| {
        Reply::new(status).with_header("Location", format!("http://{elsewhere}{}", req.target))
    }
}

/// Runs `plan` against a registry whose token service redirects its token requests to
/// another origin, for every placement of the realm and every redirect status, and
/// checks that the redirect target received nothing (no request at all), that the run
/// failed at once saying why, and that the secret was printed nowhere.
fn token_redirects_are_not_followed(held: Held) {
    const FOREIGN_TOKEN: &str = "tok-from-the-redirect-target-0123456789";
    for realm in [Realm::OnTheRegistry, Realm::OfItsOwn] {
        for status in [307, 302] {
            let case = format!("{held:?}, realm {realm:?}, HTTP {status}");
            // What a redirect-following client would end at: a token service that hands
            // out a token to anyone.
            let elsewhere = Hostile::start(|_req: &Seen| {
                Reply::new(200)
                    .with_header("Content-Type", "application/json")
                    .with_body(format!(r#"{{"token":"{FOREIGN_TOKEN}","expires_in":300}}"#))
            });
            let own_host = Arc::new(OnceLock::<String>::new());
            let token_service = match realm {
                Realm::OnTheRegistry => None,
                Realm::OfItsOwn => Some(Hostile::start(redirecting(status, elsewhere.host()))),
            };
            let realm_url = token_service
                .as_ref()
                .map(|t| format!("http://{}/token", t.host()));
            let on_registry = redirecting(status, elsewhere.host());
            let registry = {
                let own_host = own_host.clone();
                Hostile::start(move |req: &Seen| {
                    if req.path() == "/token" {
                        return on_registry(req);
                    }
                    if req.header("authorization").is_some() {
                        return Reply::new(404);
                    }
                    let realm = realm_url.clone().unwrap_or_else(|| {
                        format!("http://{}/token", own_host.get().expect("host set"))
                    });
                    Reply::new(401).with_header(
                        "WWW-Authenticate",
                        format!("Bearer realm=\"{realm}\",service=\"redirecting\""),
                    )
                })
            };
            own_host.set(registry.host()).unwrap();
            let (secret, env) = held.environment(&registry.host());
            let p = project_for(&registry.host());

            let (out, took) = timed_plan(&env, &p);

            let received: Vec<String> = elsewhere.requests().iter().map(as_text).collect();
            assert_no_credentials_in(
                &received,
                &secret,
                &[],
                &format!("{case}: the redirect target"),
            );
            assert!(
                received.is_empty(),
                "{case}: a token request followed a redirect (the target got {} requests):\n{}",
                received.len(),
                received.join("\n---\n")
            );
            let asked: Vec<Seen> = match &token_service {
                Some(t) => t.requests(),
                None => registry
                    .requests()
                    .into_iter()
                    .filter(|r| r.path() == "/token")
                    .collect(),
            };
            assert_eq!(
                asked.iter().filter(|r| held.carried_by(r, &secret)).count(),
                1,
                "{case}: the token service was asked with the credentials once (the test exercised it, and a redirect is not retried): {asked:?}"
            );
            assert!(
                registry
                    .requests()
                    .iter()
                    .all(|r| !as_text(r).contains(FOREIGN_TOKEN)),
                "{case}: the redirect target's token was used"
            );
            out.expect_code(1);
            let said = unwrapped(&out.stderr);
            assert!(
                said.contains("eigenpub::registry::protocol")
                    && said.contains("token service")
                    && said.contains(&format!("HTTP {status} (a redirect)")),
                "{case}: the error says the token service redirected\n{out}"
            );
            Transcript::of(&[(&case, &out)]).assert_free_of(&[&secret]);
            assert!(took < QUICK, "{case}: took {took:?}\n{out}");
        }
    }
}

#[test]
fn a_token_request_with_a_password_follows_no_redirect() {
    token_redirects_are_not_followed(Held::Password);
}

#[test]
fn a_token_request_with_an_identity_token_follows_no_redirect() {
    token_redirects_are_not_followed(Held::IdentityToken);
}

// ---------------------------------------------------------------------------
// Registry requests redirected to another origin lose their credentials
// ---------------------------------------------------------------------------

/// How the front registry of the CDN test authenticates.
#[derive(Clone, Copy, Debug)]
enum Front {
    Basic,
    Bearer,
}

#[test]
fn a_manifest_redirected_to_another_origin_is_read_there_without_credentials() {
    // The CDN: a real, open registry holding the artifact, behind a relay that keeps a
    // copy of every byte eigenpub sends it.
    let cdn = Registry::start();
    let published = project_for(&cdn.host());
    published.run(&["apply"]).success();
    let tee = Tee::start(LOOPBACK, &cdn.host());

    for front in [Front::Bearer, Front::Basic] {
        let bearer = format!("tok-front-{front:?}-0123456789abcdef");
        let tokens = {
            let bearer = bearer.clone();
            Hostile::start(move |_req: &Seen| {
                Reply::new(200)
                    .with_header("Content-Type", "application/json")
                    .with_body(format!(r#"{{"token":"{bearer}","expires_in":300}}"#))
            })
        };
        // The registry: challenges, and answers every authenticated request with a 307
        // to the same path on the CDN (another port: another origin).
        let registry = {
            let (cdn, realm, bearer) = (
                tee.host(),
                format!("http://{}/token", tokens.host()),
                bearer.clone(),
            );
            Hostile::start(move |req: &Seen| {
                let authorized = match front {
                    Front::Basic => req
                        .header("authorization")
                        .is_some_and(|a| a.starts_with("Basic ")),
                    Front::Bearer => {
                        req.header("authorization") == Some(&format!("Bearer {bearer}"))
                    }
                };
                if authorized {
                    Reply::new(307).with_header("Location", format!("http://{cdn}{}", req.target))
                } else {
                    let challenge = match front {
                        Front::Basic => "Basic realm=\"front\"".to_string(),
                        Front::Bearer => format!("Bearer realm=\"{realm}\",service=\"front\""),
                    };
                    Reply::new(401).with_header("WWW-Authenticate", challenge)
                }
            })
        };
        let (secret, env) = Held::Password.environment(&registry.host());
        let p = project_for(&registry.host());
        let before = tee.sent().len();

        // Unchanged: the manifest is found (HEAD, through the redirect) and matches.
        let (same, took_same) = timed_plan(&env, &p);
        // Changed: the plan reads what the tag holds now (GET, through the redirect).
        p.write("spec.yaml", spec_yaml("oracle", "aggregator", "2"));
        let (changed, took_changed) = timed_plan(&env, &p);

        let case = format!("{front:?} front");
        let through: Vec<String> = tee.sent()[before..].to_vec();
        assert_no_credentials_in(&through, &secret, &[&bearer], &format!("{case}: the CDN"));
        let redirected: Vec<String> = registry
            .requests()
            .iter()
            .filter(|r| r.header("authorization").is_some())
            .map(|r| format!("{} {}", r.method, r.path()))
            .collect();
        assert!(
            redirected
                .iter()
                .any(|r| r.starts_with("HEAD ") && r.contains("/manifests/"))
                && redirected
                    .iter()
                    .any(|r| r.starts_with("GET ") && r.contains("/manifests/")),
            "{case}: the manifest HEAD and GET went to the registry with credentials first: {redirected:?}"
        );
        let followed: Vec<&str> = through
            .iter()
            .flat_map(|connection| connection.lines())
            .filter(|line| line.ends_with(" HTTP/1.1"))
            .collect();
        for method in ["HEAD ", "GET "] {
            assert!(
                followed
                    .iter()
                    .any(|l| l.starts_with(method) && l.contains("/manifests/")),
                "{case}: the manifest {method}was followed to the CDN: {followed:?}"
            );
        }
        same.success();
        assert!(
            same.stdout
                .contains("0 to create, 0 to update, 1 unchanged"),
            "{case}: the manifest read through the redirect matches\n{same}"
        );
        // The tag holds other content (read from the CDN): a refused overwrite.
        changed.expect_code(1);
        assert!(
            changed.stdout.contains("1 refused")
                && changed
                    .stderr
                    .contains("eigenpub::apply::refused-overwrite"),
            "{case}: the changed spec is compared with what the CDN served\n{changed}"
        );
        Transcript::of(&[("unchanged plan", &same), ("changed plan", &changed)])
            .assert_free_of(&[&secret]);
        assert!(
            took_same < QUICK && took_changed < QUICK,
            "{case}: {took_same:?}, {took_changed:?}"
        );
    }
}
