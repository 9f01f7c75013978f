//! No credentials or tokens in clear text off this machine: a registry on a
//! non-loopback address over plain HTTP gets neither, whatever the project says.
//!
//! These tests need an address of this machine that is not loopback; on a machine
//! without one they fail, saying so.

use std::net::{IpAddr, TcpListener, UdpSocket};

use super::{USER, assert_free_of_secrets_and_tokens, assert_says, eigenpub_requests, project_for};
use crate::harness::env::Env;
use crate::harness::relay::Tee;
use crate::harness::secrets::{Secret, Transcript};
use crate::harness::token_server::TokenServer;
use crate::harness::{self, Auth, Registry, http_get};

/// A local IPv4 address that is not loopback (the one the default route uses).
/// A machine without one cannot run these tests, and they fail saying so rather
/// than pass without testing anything.
pub(crate) fn non_loopback_local_ip() -> IpAddr {
    local_route_ip().expect(
        "this machine has no non-loopback IPv4 address with a route (needed to serve a \
         registry that eigenpub must treat as remote); give it a network interface",
    )
}

/// The address the default route would use, if any. No packet is sent: connecting
/// a UDP socket only picks a route.
fn local_route_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("203.0.113.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        return None;
    }
    TcpListener::bind((ip, 0)).ok()?;
    Some(ip)
}

#[test]
fn credentials_are_not_sent_over_plain_http_to_a_host_that_is_not_loopback() {
    let ip = non_loopback_local_ip();
    let secret = Secret::new(USER);
    let registry = Registry::serve(ip, None, Auth::Htpasswd(&secret));
    let host = registry.host();
    // The registry answers plain HTTP with a Basic challenge on that address.
    let probe = http_get(&host, "/v2/", None).expect("GET /v2/");
    assert_eq!(probe.status, 401, "the registry demands credentials");
    let project = project_for(
        &host,
        &format!("\n[registries.\"{host}\"]\nplain-http = true\n"),
    );
    let env = Env::new().registry_vars(&host, &secret);
    let mut t = Transcript::default();

    let plan = env.run(&project, &["-v", "plan"]);
    t.output("plan", &plan);
    plan.expect_code(1);
    assert_says(&plan, &[&host, "plain HTTP", "refusing"]);
    let apply = env.run(&project, &["-v", "apply"]);
    t.output("apply", &apply);
    apply.expect_code(1);

    // No request of eigenpub's carried the credentials: the registry never saw the
    // user in them (the harness's own probes do authenticate, hence the filter on
    // the user agent, which both the access log and the messages record).
    let log = registry.log();
    let from_eigenpub: Vec<&str> = log.lines().filter(|l| l.contains("eigenpub/")).collect();
    let served: Vec<&str> = from_eigenpub
        .iter()
        .copied()
        .filter(|l| harness::parse_access_log_line(l).is_some())
        .collect();
    assert!(
        !served.is_empty(),
        "eigenpub did contact the registry:\n{log}"
    );
    for line in &served {
        let user = line.split(' ').nth(2).unwrap_or_default();
        assert_eq!(user, "-", "a request was authenticated: {line}");
    }
    for line in &from_eigenpub {
        assert!(
            !line.contains(&secret.user),
            "the user name reached the registry: {line}"
        );
    }
    t.dir(project.path());
    t.assert_free_of(&[&secret]);
}

#[test]
fn a_token_is_not_sent_over_plain_http_to_a_host_that_is_not_this_machine() {
    let ip = non_loopback_local_ip();
    // A token registry on that address over plain HTTP, its token service on
    // loopback (credentials may go there: it is this machine). eigenpub talks to the
    // registry through a relay on the same address that keeps every byte it sent.
    let secret = Secret::new(USER);
    let tokens = TokenServer::start(&secret);
    let registry = Registry::serve(ip, None, Auth::Token(&tokens));
    let tee = Tee::start(ip, &registry.host());
    let host = tee.host();
    let probe = http_get(&host, "/v2/", None).expect("GET /v2/ through the relay");
    assert_eq!(probe.status, 401, "the registry demands a token");
    assert!(
        probe
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer ") && c.contains(&tokens.realm())),
        "the challenge names the loopback token service: {:?}",
        probe.headers
    );
    let project = project_for(
        &host,
        &format!("\n[registries.\"{host}\"]\nplain-http = true\n"),
    );
    let env = Env::new().registry_vars(&host, &secret);

    let plan = env.run(&project, &["-v", "plan"]);
    plan.expect_code(1);
    assert_says(&plan, &[&host, "plain HTTP", "refusing"]);

    // Nothing eigenpub sent to the registry carried an Authorization header, nor any
    // token the token service issued.
    let sent = tee.sent();
    let from_eigenpub: Vec<&String> = sent
        .iter()
        .filter(|c| c.to_ascii_lowercase().contains("user-agent: eigenpub/"))
        .collect();
    assert!(
        !from_eigenpub.is_empty(),
        "eigenpub did contact the registry: {sent:#?}"
    );
    for connection in &sent {
        assert!(
            !connection.to_ascii_lowercase().contains("\nauthorization:"),
            "a request to {host} carried credentials:\n{connection}"
        );
        for token in tokens.requests().iter().filter_map(|r| r.token.as_ref()) {
            assert!(
                !connection.contains(token.as_str()),
                "a token went to {host}:\n{connection}"
            );
        }
    }
    // And the registry answered eigenpub nothing but its challenge.
    let requests = eigenpub_requests(&registry, "plain-http-token-probe");
    assert!(
        !requests.is_empty(),
        "the registry logged eigenpub's requests"
    );
    assert!(
        requests.iter().all(|r| r.status == 401),
        "no request got past the challenge: {requests:#?}"
    );

    let mut t = Transcript::of(&[("plan", &plan)]);
    t.dir(project.path());
    assert_free_of_secrets_and_tokens(&t, &[&secret], &tokens);
}
