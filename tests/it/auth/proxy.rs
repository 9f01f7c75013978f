//! Proxies from the environment: used for registries on other machines (as an HTTPS
//! tunnel the proxy cannot read), never for this machine, whose plain-HTTP requests
//! carry credentials in clear text.
//!
//! The proxy is a hostile fake on loopback that records every request it gets and
//! forwards nothing.

use super::{USER, assert_says, project_for};
use crate::harness::Registry;
use crate::harness::env::Env;
use crate::harness::secrets::{Secret, Transcript};
use crate::hostile::{Hostile, Reply, Seen};

/// A proxy that records, and plays the registry far enough to be sent credentials:
/// a Basic challenge to a request without them, 502 to one with them.
fn recording_proxy() -> Hostile {
    Hostile::start(|req: &Seen| {
        if req.header("authorization").is_some() || req.method == "CONNECT" {
            Reply::new(502)
        } else {
            Reply::new(401).with_header("WWW-Authenticate", "Basic realm=\"proxy\"")
        }
    })
}

/// Every proxy variable, both cases, pointing at `proxy`.
fn proxied(env: Env, proxy: &Hostile) -> Env {
    let url = format!("http://{}", proxy.host());
    [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .fold(env, |env, name| env.var(name, &url))
    .var("NO_PROXY", "")
    .var("no_proxy", "")
}

#[test]
fn a_loopback_registry_is_never_reached_through_a_proxy() {
    let secret = Secret::new(USER);
    let registry = Registry::with_htpasswd(&secret.user, &secret.password);
    let host = registry.host();
    let proxy = recording_proxy();
    let project = project_for(&host, "");
    let env = proxied(Env::new().registry_vars_old_and_new(&host, &secret), &proxy);
    let plan = env.run(&project, &["plan"]);
    let apply = env.run(&project, &["apply"]);
    let seen = proxy.requests();
    assert!(
        seen.is_empty(),
        "{} requests to {host} went through the proxy, {} with credentials; the first: {:#?}",
        seen.len(),
        seen.iter()
            .filter(|r| r.header("authorization").is_some())
            .count(),
        seen.first()
    );
    plan.success();
    apply.success();
    Transcript::of(&[("plan", &plan), ("apply", &apply)]).assert_free_of(&[&secret]);
}

#[test]
fn a_remote_registry_is_reached_through_the_proxy_as_a_tunnel() {
    let secret = Secret::new(USER);
    let proxy = recording_proxy();
    let host = "registry.example.com";
    let project = project_for(host, "");
    let env = proxied(Env::new().registry_vars(host, &secret), &proxy);
    let out = env.run(&project, &["plan"]);
    out.expect_code(1);
    assert_says(&out, &[host]);
    let seen = proxy.requests();
    assert!(
        seen.iter()
            .any(|r| r.method == "CONNECT" && r.target == "registry.example.com:443"),
        "the proxy was asked for a tunnel to {host}: {seen:#?}"
    );
    assert!(
        seen.iter().all(|r| r.header("authorization").is_none()
            && !String::from_utf8_lossy(&r.body).contains(&secret.password)),
        "the proxy saw credentials: {seen:#?}"
    );
}
