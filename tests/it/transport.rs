//! The registry transport under the failures hosted registries produce: dropped
//! connections and overload (retried until every artifact lands), a registry that cannot
//! be reached (one problem, quickly), answers that are huge or trickle in (cut off with a
//! clear error within the deadline), and several applies of the same project at once.
//!
//! Real registry and the harness's fault proxy where a real registry can play the part;
//! a fake server on loopback for what no real registry does (a 3 GB manifest, a body sent
//! a byte at a time). Results are read back with skopeo.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::fault_proxy::{Fault, Proxy, flaky};
use crate::harness::http::{HttpRequest, serve, write_head};
use crate::harness::registry::free_port;
use crate::harness::{Output, Project, Registry, Running, spec_yaml};

const CREATED: &str = "2025-01-01T00:00:00Z";
/// The `version` of `harness::spec_yaml`'s specs: discovered artifacts are tagged with it.
const SPEC_VERSION: &str = "0.3.1";

/// A project of `avs_count` × `per_avs` specs published to `<registry>/acme`, with extra
/// project-file lines (e.g. a `[registries."host"]` table). Returns it and the references
/// (`acme/<avs>:<tag>`) it publishes.
fn fleet(registry: &str, avs_count: usize, per_avs: usize, extra: &str) -> (Project, Vec<String>) {
    fleet_in(registry, "acme", avs_count, per_avs, extra)
}

/// [`fleet`] under another namespace than `acme`.
fn fleet_in(
    registry: &str,
    namespace: &str,
    avs_count: usize,
    per_avs: usize,
    extra: &str,
) -> (Project, Vec<String>) {
    let project = Project::new();
    project.write(
        "eigenruntime.toml",
        format!(
            "[defaults]\nregistry = \"{registry}/{namespace}\"\ncreated = \"{CREATED}\"\n\n\
             [[discover]]\nspecs = \"fleet/{{avs}}/opset-{{opset}}.yaml\"\n\n{extra}"
        ),
    );
    let mut references = Vec::new();
    for a in 0..avs_count {
        let avs = format!("avs-{a:02}");
        for opset in 0..per_avs {
            let yaml = spec_yaml(&avs, "aggregator", &format!("{avs}-{opset}"));
            project.write(&format!("fleet/{avs}/opset-{opset}.yaml"), &yaml);
            references.push(format!("{namespace}/{avs}:opset-{opset}-v{SPEC_VERSION}"));
        }
    }
    (project, references)
}

fn assert_all_on(registry: &Registry, references: &[String], out: &Output) {
    for r in references {
        assert!(
            registry.skopeo_raw(r).is_some(),
            "{r} is not on the registry\n{out}"
        );
    }
}

#[test]
fn every_artifact_lands_through_a_quarter_of_resets_and_overload() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    for seed in [0x7a11_0001u64, 0x7a11_0002, 0x7a11_0003] {
        // A namespace per seed: each run pushes everything anew.
        let namespace = format!("seed-{seed:x}");
        let (project, references) = fleet_in(&proxy.host(), &namespace, 4, 4, "");
        proxy.reset();
        proxy.set_policy(flaky(
            seed,
            25,
            &[
                (Fault::Unavailable, 2),
                (Fault::Drop, 2),
                (Fault::LoseAnswer, 1),
                (Fault::ServerError, 1),
            ],
            |_| true,
        ));
        let out = project.run(&["--concurrency", "8", "apply"]);
        proxy.faults_off();
        let faults = proxy.faults();
        out.no_panic();
        assert_eq!(out.code, 0, "seed {seed:#x}, faults {faults:?}\n{out}");
        assert!(
            faults.iter().filter(|f| **f == Fault::Drop).count() >= 2,
            "seed {seed:#x}: too few dropped connections to prove anything: {faults:?}"
        );
        assert!(
            out.stdout
                .contains("Apply: 16 pushed, 0 unchanged, 0 failed."),
            "seed {seed:#x}\n{out}"
        );
        assert_all_on(&registry, &references, &out);
        let plan = project.run(&["plan"]);
        plan.no_panic().success();
        assert!(plan.stdout.contains("16 unchanged"), "{plan}");
    }
}

#[test]
fn an_unreachable_registry_is_one_problem_reported_quickly() {
    // A loopback port nothing listens on: every connection is refused.
    let host = format!("127.0.0.1:{}", free_port());
    let (project, _) = fleet(&host, 5, 4, "");
    for command in ["plan", "apply"] {
        let start = Instant::now();
        let out = project.run(&[command]);
        let took = start.elapsed();
        out.no_panic().expect_code(1);
        assert!(
            took < Duration::from_secs(10),
            "{command} took {took:?}\n{out}"
        );
        let mentions = out.stderr.matches("is unreachable").count();
        assert_eq!(
            mentions, 1,
            "{command}: one problem for the registry\n{out}"
        );
        assert!(
            out.stderr
                .contains(&format!("registry {host} is unreachable")),
            "{out}"
        );
        assert!(out.stderr.contains("20 artifacts not attempted"), "{out}");
    }
}

/// A fake registry: `HEAD` of a manifest answers 200 without a digest (so eigenpub reads
/// the manifest with a `GET`), and the `GET` is answered by `body`.
fn fake_registry(
    body: impl Fn(&HttpRequest, &mut TcpStream) + Send + Sync + 'static,
) -> crate::harness::http::Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    serve(listener, move |request, stream| {
        if request.method == "GET" && request.path().contains("/manifests/") {
            body(&request, stream);
            return None;
        }
        let _ = write_head(
            stream,
            "HTTP/1.1 200 OK",
            &[
                (
                    "Content-Type".into(),
                    "application/vnd.oci.image.manifest.v1+json".into(),
                ),
                ("Content-Length".into(), "2".into()),
                ("Connection".into(), "close".into()),
            ],
        );
        None
    })
}

#[test]
fn a_huge_manifest_is_refused_without_reading_it() {
    let server = fake_registry(|_, stream| {
        // 3 GB announced; bytes sent until the client hangs up.
        let _ = write_head(
            stream,
            "HTTP/1.1 200 OK",
            &[
                ("Content-Length".into(), "3000000000".into()),
                ("Connection".into(), "close".into()),
            ],
        );
        let chunk = vec![b'{'; 64 * 1024];
        for _ in 0..(3_000_000_000usize / chunk.len()) {
            if stream.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let (project, _) = fleet(&server.host(), 1, 1, "");
    let start = Instant::now();
    let running = Running::spawn(project.eigenpub(&["plan"]));
    let out = running
        .wait_at_most(Duration::from_secs(20))
        .unwrap_or_else(|out| panic!("plan still ran after 20 s\n{out}"));
    out.no_panic().expect_code(1);
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(
        out.stderr.contains("larger than 4096 KiB"),
        "a clear error naming the limit\n{out}"
    );
}

#[test]
fn an_endless_manifest_without_a_length_is_cut_off() {
    let server = fake_registry(|_, stream| {
        let _ = write_head(
            stream,
            "HTTP/1.1 200 OK",
            &[("Connection".into(), "close".into())],
        );
        let chunk = vec![b' '; 64 * 1024];
        while stream.write_all(&chunk).is_ok() {}
    });
    let (project, _) = fleet(&server.host(), 1, 1, "");
    let out = Running::spawn(project.eigenpub(&["plan"]))
        .wait_at_most(Duration::from_secs(20))
        .unwrap_or_else(|out| panic!("plan still ran after 20 s\n{out}"));
    out.no_panic().expect_code(1);
    assert!(out.stderr.contains("larger than 4096 KiB"), "{out}");
}

#[test]
fn a_trickling_answer_is_given_up_within_the_deadline() {
    let server = fake_registry(|_, stream| {
        let _ = write_head(
            stream,
            "HTTP/1.1 200 OK",
            &[
                ("Content-Length".into(), "100000".into()),
                ("Connection".into(), "close".into()),
            ],
        );
        // A byte every half second: never done, never quite silent.
        for _ in 0..100_000 {
            if stream.write_all(b" ").is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(500));
        }
    });
    let host = server.host();
    let (project, _) = fleet(
        &host,
        1,
        1,
        &format!("[registries.\"{host}\"]\ntimeout = 2\n"),
    );
    let start = Instant::now();
    let out = Running::spawn(project.eigenpub(&["plan"]))
        .wait_at_most(Duration::from_secs(30))
        .unwrap_or_else(|out| panic!("plan still ran after 30 s\n{out}"));
    let took = start.elapsed();
    out.no_panic().expect_code(1);
    // Two attempts of at most 2 s each, and the backoff between them.
    assert!(took < Duration::from_secs(8), "took {took:?}\n{out}");
    assert!(
        out.stderr.contains("no complete answer within 2 s"),
        "a clear error naming the deadline\n{out}"
    );
    assert!(
        out.stderr.contains("timeout"),
        "the help names the setting\n{out}"
    );
}

#[test]
fn three_identical_applies_at_once_all_succeed() {
    let registry = Registry::start();
    let (project, references) = fleet(&registry.host(), 3, 6, "");
    let runs: Vec<Running> = (0..3)
        .map(|_| Running::spawn(project.eigenpub(&["--concurrency", "8", "apply"])))
        .collect();
    for running in runs {
        let out = running
            .wait_at_most(Duration::from_secs(120))
            .unwrap_or_else(|out| panic!("an apply still ran after 120 s\n{out}"));
        out.no_panic();
        assert_eq!(out.code, 0, "{out}");
    }
    let plan = project.run(&["plan"]);
    plan.no_panic().success();
    assert!(
        plan.stdout
            .contains("0 to create, 0 to update, 18 unchanged"),
        "{plan}"
    );
    let check = project.run(&["plan"]);
    assert_all_on(&registry, &references, &check);
}
