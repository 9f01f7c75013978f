//! TLS to a registry signed by a private CA: refused with advice to set
//! `ca-file` when the CA is unknown, published to (and logged in to) when the
//! project names the CA.

use super::{
    SPEC, USER, assert_applied, assert_says, json_diagnostic, project_for, publish_twice, reference,
};
use crate::harness::env::Env;
use crate::harness::pki::{Pki, skopeo_raw_tls};
use crate::harness::secrets::{Secret, Transcript};
use crate::harness::{Auth, LOOPBACK, Registry};

fn https_settings(host: &str, ca_file: Option<&str>) -> String {
    let ca = ca_file
        .map(|f| format!("ca-file = \"{f}\"\n"))
        .unwrap_or_default();
    format!("\n[registries.\"{host}\"]\nplain-http = false\n{ca}")
}

#[test]
fn tls_registry_signed_by_an_unknown_ca_is_refused_with_ca_file_advice() {
    let pki = Pki::new(LOOPBACK);
    let registry = Registry::serve(LOOPBACK, Some(&pki), Auth::Anonymous);
    let host = registry.host();
    let project = project_for(&host, &https_settings(&host, None));
    let env = Env::new();

    let plan = env.run(&project, &["plan"]);
    plan.expect_code(1);
    assert_says(&plan, &[&host, "not trusted", "ca-file"]);
    let d = json_diagnostic(&env.run(&project, &["plan", "--diagnostics", "json"]));
    assert_eq!(d["code"], "eigenpub::registry::tls", "{d}");
    assert!(
        d["message"]
            .as_str()
            .is_some_and(|m| m.contains(&host) && m.contains("not trusted")),
        "{d}"
    );
    assert!(
        d["help"].as_str().is_some_and(|h| h.contains("ca-file")),
        "{d}"
    );
    // The refusal happened in the handshake: no request reached the registry.
    assert!(
        !registry.log().contains("\"HEAD /v2/"),
        "no request was served over an untrusted connection:\n{}",
        registry.log()
    );
}

#[test]
fn tls_registry_with_the_project_ca_file_is_published_to() {
    let pki = Pki::new(LOOPBACK);
    let registry = Registry::serve(LOOPBACK, Some(&pki), Auth::Anonymous);
    let host = registry.host();
    let project = project_for(&host, &https_settings(&host, Some("certs/ca.pem")));
    project.write("certs/ca.pem", pki.ca_pem());
    let env = Env::new();

    let apply = env.run(&project, &["apply", "--format", "json"]);
    apply.success();
    assert_applied(&apply, &reference(&host), &project.read(SPEC), &|r| {
        skopeo_raw_tls(r, &pki.cert_dir(), None)
    });
    let plan = env.run(&project, &["plan", "--detailed-exitcode"]);
    plan.expect_code(0);
}

#[test]
fn login_and_publish_over_tls_with_the_project_ca_file() {
    let secret = Secret::new(USER);
    let pki = Pki::new(LOOPBACK);
    let registry = Registry::serve(LOOPBACK, Some(&pki), Auth::Htpasswd(&secret));
    let host = registry.host();
    let project = project_for(&host, &https_settings(&host, Some("ca.pem")));
    project.write("ca.pem", pki.ca_pem());
    let env = Env::new();
    let mut t = Transcript::default();

    // login reads plain-http and ca-file from the project file in the current folder.
    let login = env.login(&project, &host, &secret.user, &secret.password);
    t.output("login", &login);
    login.success();
    let cert_dir = pki.cert_dir();
    let read = |r: &str| skopeo_raw_tls(r, &cert_dir, Some(&secret));
    let published = publish_twice(&project, &env, &host, &read);
    t.pieces.extend(published.pieces);
    t.assert_free_of(&[&secret]);
}
