//! One registry, one identity: credentials from the environment go only to the host
//! their name spells (a look-alike host a pull request names gets nothing), and the
//! spellings of one registry are one registry for duplicate detection.
//!
//! The look-alike is a name (`registry-example.com`) that an `/etc/hosts` of the test's
//! own maps to a real registry on loopback ([`crate::harness::names`]): eigenpub treats it
//! as another machine (HTTPS with the test's CA), and the registry's access log shows
//! whether the credentials arrived.

use super::{USER, assert_says, project_for};
use crate::harness::env::{Env, old_registry_var_prefix, registry_var_prefix};
use crate::harness::names::{Hosts, assert_resolves};
use crate::harness::pki::Pki;
use crate::harness::registry::{Auth, LOOPBACK};
use crate::harness::secrets::{Secret, Transcript};
use crate::harness::{self, Output, Project, Registry};

const RIGHT: &str = "registry.example.com";
const LOOK_ALIKE: &str = "registry-example.com";

/// The users eigenpub's requests were authorized as (the registry logs
/// `auth.user.name=` for each request whose credentials it accepted).
fn eigenpub_users(registry: &Registry) -> Vec<String> {
    registry
        .log()
        .lines()
        .filter(|l| l.contains("useragent=eigenpub/"))
        .filter_map(|l| l.split("auth.user.name=").nth(1))
        .map(|rest| rest.split(' ').next().unwrap_or_default().to_string())
        .collect()
}

/// A project publishing to `host` over TLS with the test CA.
fn tls_project(host: &str, pki: &Pki) -> Project {
    let project = project_for(
        host,
        &format!("\n[registries.\"{host}\"]\nca-file = \"ca.pem\"\n"),
    );
    project.write("ca.pem", pki.ca_pem());
    project
}

#[test]
fn a_look_alike_host_never_gets_the_credentials_of_the_host_it_imitates() {
    let secret = Secret::new(USER);
    let pki = Pki::for_names(LOOPBACK, &[RIGHT, LOOK_ALIKE]);
    let registry = Registry::serve(LOOPBACK, Some(&pki), Auth::Htpasswd(&secret));
    let port = registry.port();
    let hosts = Hosts::new(&[(RIGHT, "127.0.0.1"), (LOOK_ALIKE, "127.0.0.1")]);
    assert_resolves(&hosts, LOOK_ALIKE, "127.0.0.1");
    let right = format!("{RIGHT}:{port}");
    let look_alike = format!("{LOOK_ALIKE}:{port}");
    // The CI's variables for the right host, under today's name and the old one (a
    // CI that has not renamed them); the old name was the look-alike's too.
    let (new, old) = (registry_var_prefix(&right), old_registry_var_prefix(&right));
    let env = Env::new()
        .var(format!("{new}_USERNAME"), &secret.user)
        .var(format!("{new}_PASSWORD"), &secret.password)
        .var(format!("{old}_USERNAME"), &secret.user)
        .var(format!("{old}_PASSWORD"), &secret.password);
    let run = |project: &Project, args: &[&str]| -> Output {
        let out = harness::run(hosts.wrap(&env.command(project, args)));
        out.no_panic();
        out
    };
    let mut t = Transcript::default();

    // A pull request switches the registry to the look-alike: refused before any
    // request, saying whose name the variables are and what to rename.
    let pr = tls_project(&look_alike, &pki);
    let mut outs = Vec::new();
    for args in [&["-v", "plan"][..], &["-v", "apply"][..]] {
        let out = run(&pr, args);
        t.output(&args.join(" "), &out);
        outs.push(out);
    }
    // First where the credentials went, then what eigenpub said.
    let users = eigenpub_users(&registry);
    assert!(
        users.is_empty(),
        "the look-alike got the credentials: users {users:?}\n{}",
        registry.log()
    );
    assert!(
        !registry.log().contains(&secret.user),
        "the user name reached the look-alike:\n{}",
        registry.log()
    );
    for out in &outs {
        out.expect_code(1);
        assert_says(
            out,
            &[
                "eigenpub::registry::shared-credentials",
                &look_alike,
                &format!("and also {right}'s"),
                &format!("{}_USERNAME", registry_var_prefix(&look_alike)),
                "nothing was sent",
            ],
        );
    }

    // The same registry under the right name gets them (so the check above could see
    // them arrive).
    let ok = tls_project(&right, &pki);
    let out = run(&ok, &["plan"]);
    t.output("plan (right host)", &out);
    out.success();
    assert!(
        eigenpub_users(&registry).contains(&secret.user),
        "the right host got the credentials:\n{}",
        registry.log()
    );
    t.dir(pr.path());
    t.dir(ok.path());
    t.assert_free_of(&[&secret]);
}

#[test]
fn two_spellings_of_one_registry_on_one_tag_are_a_duplicate() {
    for (a, b) in [
        ("localhost:5000", "127.0.0.1:5000"),
        ("[::1]:5000", "localhost:5000"),
        ("127.1:5000", "localhost:5000"),
        ("ghcr.io", "ghcr.io:443"),
        ("ghcr.io", "GHCR.io"),
        ("ghcr.io.", "ghcr.io"),
        ("docker.io", "index.docker.io"),
        ("registry-1.docker.io", "docker.io"),
    ] {
        assert_duplicate(&format!("{a}/acme/oracle"), &format!("{b}/acme/oracle"));
    }
    // Docker Hub's one-component names are its `library/` namespace.
    assert_duplicate("docker.io/oracle", "docker.io/library/oracle");
}

/// Two AVSs published to `a` and `b` with one tag are a duplicate.
#[track_caller]
fn assert_duplicate(a: &str, b: &str) {
    let project = Project::new();
    project
        .write(
            "eigenruntime.toml",
            format!(
                "[defaults]\ncreated = \"2025-01-01T00:00:00Z\"\n\n\
                     [[avs]]\nname = \"alpha\"\nversion = 1\nrepository = \"{a}\"\n\
                     [avs.operator-sets]\n0 = \"a.yaml\"\n\n\
                     [[avs]]\nname = \"beta\"\nversion = 1\nrepository = \"{b}\"\n\
                     [avs.operator-sets]\n0 = \"b.yaml\"\n"
            ),
        )
        .write("a.yaml", harness::spec_yaml("alpha", "aggregator", "a"))
        .write("b.yaml", harness::spec_yaml("beta", "aggregator", "b"));
    let out = project.run(&["validate"]);
    out.no_panic().expect_code(1);
    assert_says(
        &out,
        &[
            "eigenpub::project::duplicate",
            "one registry, spelled two ways",
        ],
    );
}

#[test]
fn two_settings_tables_for_one_registry_are_an_error() {
    let project = Project::new();
    project
        .write(
            "eigenruntime.toml",
            "[defaults]\ncreated = \"2025-01-01T00:00:00Z\"\nregistry = \"ghcr.io/acme\"\n\n\
             [registries.\"ghcr.io\"]\nmax-concurrency = 4\n\n\
             [registries.\"GHCR.io:443\"]\nmax-concurrency = 64\n\n\
             [[avs]]\nname = \"alpha\"\nversion = 1\n[avs.operator-sets]\n0 = \"a.yaml\"\n",
        )
        .write("a.yaml", harness::spec_yaml("alpha", "aggregator", "a"));
    let out = project.run(&["validate"]);
    out.no_panic().expect_code(1);
    assert_says(&out, &["eigenpub::project::registry", "are one registry"]);
}
