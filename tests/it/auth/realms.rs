//! Token services a registry names: one set of rules whether eigenpub asks with
//! credentials or anonymously, and "this machine" meaning exactly this machine.
//!
//! An anonymous token request is a request eigenpub makes to a URL a registry chose (a
//! project in a pull request can name any registry): over plain HTTP to another machine,
//! or to this machine for a registry that is not on it, it would fetch what the registry
//! pointed at and relay or print the answer. `localhost.` (with the dot) is resolved
//! through DNS, so it is another machine: credentials never go there over plain HTTP.

use super::{USER, assert_says, project_for};
use crate::auth::clear_text::non_loopback_local_ip;
use crate::harness::env::Env;
use crate::harness::names::{Hosts, assert_resolves};
use crate::harness::secrets::Secret;
use crate::hostile::{Hostile, Reply, Seen};

/// A token service that records who asked and answers with a token.
fn token_service_on(ip: std::net::IpAddr) -> Hostile {
    Hostile::start_on(ip, |_req: &Seen| {
        Reply::new(200)
            .with_header("Content-Type", "application/json")
            .with_body(
                r#"{"token":"tok-from-a-realm-it-must-not-ask-0123456789","expires_in":300}"#,
            )
    })
}

/// A registry on `ip` that challenges every request with `realm`.
fn challenging_on(ip: std::net::IpAddr, realm: String) -> Hostile {
    Hostile::start_on(ip, move |req: &Seen| {
        if req.header("authorization").is_some() {
            Reply::new(404)
        } else {
            Reply::new(401).with_header(
                "WWW-Authenticate",
                format!("Bearer realm=\"{realm}\",service=\"hostile\""),
            )
        }
    })
}

#[test]
fn an_anonymous_token_request_goes_by_the_rules_of_one_with_credentials() {
    let remote = non_loopback_local_ip();
    let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    // (where the registry is, where its token service is, what eigenpub says)
    for (registry_ip, realm_ip, says) in [
        // A registry on this machine names a plain-HTTP token service on another.
        (local, remote, "over plain HTTP"),
        // A registry on another machine names a token service on this one.
        (remote, local, "named a token service on it"),
    ] {
        let tokens = token_service_on(realm_ip);
        let registry = challenging_on(registry_ip, format!("http://{}/token", tokens.host()));
        let host = registry.host();
        let project = project_for(
            &host,
            &format!("\n[registries.\"{host}\"]\nplain-http = true\n"),
        );
        // No credentials anywhere: the request would be anonymous.
        let out = Env::new().run(&project, &["plan"]);
        assert!(
            tokens.requests().is_empty(),
            "the token service at {} was asked: {:?}\n{out}",
            tokens.host(),
            tokens.requests()
        );
        out.expect_code(1);
        assert_says(&out, &["refusing to ask for a token", says]);
        assert!(
            !out.stdout.contains("tok-from-a-realm") && !out.stderr.contains("tok-from-a-realm")
        );
        assert!(
            registry
                .requests()
                .iter()
                .all(|r| r.header("authorization").is_none()),
            "no token was relayed to the registry"
        );
    }
}

#[test]
fn a_token_service_on_localhost_with_a_trailing_dot_gets_no_credentials_over_plain_http() {
    // `localhost.` goes to DNS; here the test's own hosts file plays the answer (this
    // machine), so that a request sent there would be seen.
    let hosts = Hosts::new(&[("localhost.", "127.0.0.1")]);
    assert_resolves(&hosts, "localhost.", "127.0.0.1");
    let tokens = token_service_on("127.0.0.1".parse().unwrap());
    let port = tokens.host().rsplit_once(':').unwrap().1.to_string();
    let registry = challenging_on(
        "127.0.0.1".parse().unwrap(),
        format!("http://localhost.:{port}/token"),
    );
    let host = registry.host();
    let project = project_for(&host, "");
    let secret = Secret::new(USER);
    let env = Env::new().registry_vars_old_and_new(&host, &secret);
    let out = crate::harness::run(hosts.wrap(&env.command(&project, &["plan"])));
    let carrying: Vec<_> = tokens
        .requests()
        .into_iter()
        .filter(|r| r.header("authorization").is_some())
        .collect();
    assert!(
        carrying.is_empty(),
        "credentials went to localhost. over plain HTTP: {carrying:?}"
    );
    out.no_panic().expect_code(1);
    assert_says(
        &out,
        &["refusing to send credentials", "plain HTTP", "localhost."],
    );
}
