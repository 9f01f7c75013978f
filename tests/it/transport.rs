//! The registry transport under the failures hosted registries produce: dropped
//! connections and overload (retried until every artifact lands), a registry that cannot
//! be reached or refuses every request (one problem, quickly), answers that are huge or trickle in (cut off with a
//! clear error within the deadline), and several applies of the same project at once.
//!
//! Real registry and the harness's fault proxy where a real registry can play the part;
//! a fake server on loopback for what no real registry does (a 3 GB manifest, a body sent
//! a byte at a time). Results are read back with skopeo.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::fault_proxy::{Fault, Proxy, always, first, flaky, is_write};
use crate::harness::http::{HttpRequest, HttpResponse, serve, write_head};
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
fn a_fault_streak_on_one_request_is_retried_briefly_while_the_others_land() {
    // One manifest PUT answered 503 seven times in a row (with 25% of requests failing
    // at random, one request in 16,384), while the registry accepts every other request,
    // each held 100 ms so the run lasts seconds. The registry is up: the streak is that
    // request's bad luck, and its pauses stay short. Before: they doubled to 1.6-3.2 s
    // (3.2-6.4 s in all), the tail that set the whole run's time.
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let (project, references) = fleet(&proxy.host(), 4, 6, "");
    let unlucky = |method: &str, path: &str| {
        method == "PUT" && path.starts_with("/v2/acme/avs-00/manifests/opset-0-")
    };
    let mut left = 7;
    proxy.set_policy(Box::new(move |head| {
        if unlucky(&head.method, &head.path) && left > 0 {
            left -= 1;
            Some(Fault::Unavailable)
        } else {
            Some(Fault::Stall(Duration::from_millis(100)))
        }
    }));
    let out = project.run(&["--concurrency", "4", "apply"]);
    proxy.faults_off();
    out.no_panic().success();
    assert_all_on(&registry, &references, &out);
    let attempts: Vec<Instant> = proxy
        .seen()
        .iter()
        .filter(|s| unlucky(&s.method, &s.path))
        .map(|s| s.at)
        .collect();
    assert_eq!(attempts.len(), 8, "7 refused, the eighth accepted\n{out}");
    let pauses: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    let longest = pauses.iter().max().copied().unwrap_or_default();
    // At most 250 ms of backoff per pause (a stall of 100 ms and a loaded machine on
    // top); the last doubling pause was at least 1.6 s.
    assert!(
        longest < Duration::from_millis(1000),
        "pauses between the attempts: {pauses:?}\n{out}"
    );
}

#[test]
fn an_artifact_waiting_out_a_retry_after_lets_the_others_go_on() {
    // Two at once; the first two manifest pushes (one per artifact in flight) answered
    // 429 `Retry-After: 3`. Each waits out its 3 s; meanwhile its place goes to the next
    // artifacts, and the other ten land before either is pushed again. Before: both
    // places were held by artifacts that sent nothing, and nothing was pushed for 3 s.
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let (project, references) = fleet(&proxy.host(), 4, 3, "");
    let manifest_put = |method: &str, path: &str| method == "PUT" && path.contains("/manifests/");
    proxy.set_policy(first(
        2,
        Fault::TooManyRequests { retry_after: 3 },
        move |h| manifest_put(&h.method, &h.path),
    ));
    let out = project.run(&["--concurrency", "2", "apply"]);
    proxy.faults_off();
    out.no_panic().success();
    assert_all_on(&registry, &references, &out);
    let puts: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| manifest_put(&s.method, &s.path))
        .collect();
    let refused: Vec<&str> = puts
        .iter()
        .filter(|s| s.fault.is_some())
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(refused.len(), 2, "{puts:#?}\n{out}");
    let again = puts
        .iter()
        .position(|s| s.fault.is_none() && refused.contains(&s.path.as_str()))
        .expect("the refused pushes were tried again");
    let landed_meanwhile = puts[..again].iter().filter(|s| s.fault.is_none()).count();
    assert_eq!(
        landed_meanwhile, 10,
        "the other artifacts' manifests pushed while the two waited: {puts:#?}\n{out}"
    );
}

#[test]
fn an_artifact_back_from_a_retry_after_goes_on_though_its_place_was_taken() {
    // One at once; two tags of one repository share their spec (one layer blob,
    // uploaded once: the second artifact waits for the first's upload). The first
    // artifact's two uploads are answered 429 `Retry-After: 2`: it lends its place, the
    // second takes it and waits for the shared blob. Back, the first must go on without
    // waiting for a place (the only one is held by the artifact waiting for it).
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let (project, mut references) = fleet(&proxy.host(), 1, 1, "");
    let spec = fs::read_to_string(project.path().join("fleet/avs-00/opset-0.yaml")).unwrap();
    project.write("fleet/avs-00/opset-1.yaml", &spec);
    references.push(format!("acme/avs-00:opset-1-v{SPEC_VERSION}"));
    proxy.set_policy(first(2, Fault::TooManyRequests { retry_after: 2 }, |h| {
        h.method == "POST" && h.path.contains("/blobs/uploads/")
    }));
    let started = Instant::now();
    let out = project.run(&["--concurrency", "1", "apply"]);
    proxy.faults_off();
    out.no_panic().success();
    assert_all_on(&registry, &references, &out);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}\n{out}",
        started.elapsed()
    );
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

#[test]
fn a_registry_that_refuses_every_request_is_given_up_as_one_problem() {
    // Every request answered 429 `Retry-After: 1`. Before: the rate cut to one request
    // a second and every tag spending its eight attempts, some 224 s for 30 tags (240
    // requests); now given up after 30 s of refusals.
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let server = serve(listener, move |_, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        Some(
            HttpResponse::new(429)
                .with_header("Retry-After", 1)
                .json(&serde_json::json!({"errors": [{"code": "TOOMANYREQUESTS", "message": "rate limit exceeded"}]})),
        )
    });
    let host = server.host();
    let (project, _) = fleet(&host, 3, 10, "");
    for format in ["text", "json"] {
        requests.store(0, Ordering::SeqCst);
        let start = Instant::now();
        let running = Running::spawn(project.eigenpub(&["plan", "--format", format]));
        let out = running
            .wait_at_most(Duration::from_secs(150))
            .unwrap_or_else(|out| panic!("plan still ran after 150 s\n{out}"));
        let took = start.elapsed();
        out.no_panic().expect_code(1);
        // 30 s of refusals and the last Retry-After; generous for a loaded 2-core machine.
        assert!(
            took < Duration::from_secs(90),
            "{format}: took {took:?}\n{out}"
        );
        let sent = requests.load(Ordering::SeqCst);
        assert!(
            sent < 30 * 8 / 2,
            "{format}: {sent} requests: most tags did not spend their budget\n{out}"
        );
        let problem = format!("registry {host} is unreachable: it refused every request");
        if format == "text" {
            let codes = out.stderr.matches("eigenpub::registry::").count();
            assert_eq!(codes, 1, "one problem\n{out}");
            // The text as one line (it is wrapped to the terminal's width).
            let flat = out.stderr_flat();
            assert!(flat.contains(&problem), "{out}");
            assert!(flat.contains("30 artifacts not attempted"), "{out}");
            assert!(flat.contains("429 Too Many Requests"), "{out}");
            assert!(
                flat.contains("wait for its limit to reset"),
                "the help\n{out}"
            );
        } else {
            let doc: serde_json::Value = serde_json::from_str(&out.stdout)
                .unwrap_or_else(|e| panic!("not JSON: {e}\n{out}"));
            let text = doc.to_string();
            assert!(text.contains(&problem), "{text}");
            let diagnostics = doc["diagnostics"].as_array().map(Vec::len);
            assert_eq!(diagnostics, Some(1), "{text}");
            let not_attempted = doc["not_attempted"].as_array().map(Vec::len);
            assert_eq!(not_attempted, Some(30), "{text}");
        }
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
fn a_silent_token_service_is_named_when_given_up() {
    // The registry answers 401 with a bearer challenge naming a token service on another
    // port, which accepts connections and never answers. Given up like a silent registry
    // (once, within the deadline's reach), but the error names the token service, not
    // the registry that answered. Before: "check the registry's health".
    let silent = serve(
        TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"),
        |_, _| {
            thread::sleep(Duration::from_secs(30));
            None
        },
    );
    let realm_host = silent.host();
    let challenge = format!("Bearer realm=\"http://{realm_host}/token\",service=\"fake\"");
    let registry = serve(
        TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"),
        move |_, _| {
            Some(
                HttpResponse::new(401)
                    .with_header("WWW-Authenticate", challenge.clone())
                    .json(&serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})),
            )
        },
    );
    let host = registry.host();
    let (project, _) = fleet(
        &host,
        2,
        2,
        &format!("[registries.\"{host}\"]\ntimeout = 2\n"),
    );
    let start = Instant::now();
    let out = Running::spawn(project.eigenpub(&["plan"]))
        .wait_at_most(Duration::from_secs(40))
        .unwrap_or_else(|out| panic!("plan still ran after 40 s\n{out}"));
    let took = start.elapsed();
    out.no_panic().expect_code(1);
    assert!(took < Duration::from_secs(15), "took {took:?}\n{out}");
    assert!(
        out.stderr.contains(&format!("token service {realm_host}")),
        "the error names the token service\n{out}"
    );
    assert!(
        !out.stderr.contains("check the registry's health"),
        "the registry answered: it is not the one to check\n{out}"
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

/// An artifact's config and layer are uploaded at once (both upload starts, then both
/// bytes), and its manifest is pushed only after both uploads were answered: with every
/// write answered 400 ms late, the two `POST`s arrive together, not one upload apart.
#[test]
fn an_artifacts_blobs_are_uploaded_at_once_and_confirmed_before_its_manifest() {
    const LATE: Duration = Duration::from_millis(400);
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    proxy.set_policy(always(Fault::Stall(LATE), is_write));
    let (project, references) = fleet(&proxy.host(), 1, 1, "");
    let out = project.run(&["--concurrency", "1", "apply"]);
    out.no_panic().success();
    assert_all_on(&registry, &references, &out);
    let seen = proxy.seen();
    let at = |method: &str, what: &str| -> Vec<Instant> {
        seen.iter()
            .filter(|s| s.method == method && s.path.contains(what))
            .map(|s| s.at)
            .collect()
    };
    let (starts, uploads) = (at("POST", "/blobs/uploads/"), at("PUT", "/blobs/uploads/"));
    let manifests = at("PUT", "/manifests/");
    assert_eq!(
        (starts.len(), uploads.len(), manifests.len()),
        (2, 2, 1),
        "{seen:?}"
    );
    let apart = |a: Instant, b: Instant| if a > b { a - b } else { b - a };
    assert!(
        apart(starts[0], starts[1]) < LATE / 2 && apart(uploads[0], uploads[1]) < LATE / 2,
        "the blobs were uploaded one after the other: {seen:?}"
    );
    for upload in uploads {
        assert!(
            manifests[0] >= upload + LATE,
            "the manifest was pushed before a blob's upload was answered: {seen:?}"
        );
    }
}

/// Where distribution's filesystem storage keeps a repository's links to its blobs
/// (`<hex>/link`, holding `sha256:<hex>`).
fn blob_links(registry: &Registry, repository: &str) -> PathBuf {
    registry
        .dir()
        .join("data/docker/registry/v2/repositories")
        .join(repository)
        .join("_layers/sha256")
}

/// Empties every link under `dir` the way distribution 2.8's filesystem driver starts
/// rewriting one (open the existing file, truncate it), or writes each back in full.
fn set_links(dir: &Path, full: bool) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let hex = entry.file_name().to_string_lossy().into_owned();
        let Ok(mut link) = OpenOptions::new()
            .write(true)
            .open(entry.path().join("link"))
        else {
            continue;
        };
        link.set_len(0).expect("truncate a blob link");
        if full {
            link.write_all(format!("sha256:{hex}").as_bytes())
                .expect("write a blob link");
        }
    }
}

/// distribution 2.8's filesystem storage rewrites a repository's link to a blob by
/// truncating the file and then writing it, each time another writer pushes or mounts
/// that blob into the repository; a manifest PUT whose check reads the link in between is
/// refused (`DIGEST_INVALID` + `MANIFEST_BLOB_UNKNOWN`), a blob HEAD answers 500. The
/// proxy plays that other writer, deterministically: the real registry serves the first
/// two manifest PUTs, and the first blob HEAD, with the repository's links empty.
#[test]
fn a_manifest_refused_while_another_writer_rewrites_its_blob_links_is_pushed_again() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let (project, references) = fleet(&proxy.host(), 1, 1, "");
    let links = blob_links(&registry, "acme/avs-00");
    let mut emptied_puts = 0;
    let mut empty_heads = 0;
    proxy.set_policy(Box::new(move |head| {
        let manifest_put = head.method == "PUT" && head.path.contains("/manifests/");
        let blob_head = head.method == "HEAD" && head.path.contains("/blobs/");
        if manifest_put && emptied_puts < 2 {
            emptied_puts += 1;
            empty_heads = if emptied_puts == 1 { 1 } else { 0 };
            set_links(&links, false);
        } else if blob_head && empty_heads > 0 {
            empty_heads -= 1;
        } else {
            set_links(&links, true);
        }
        None
    }));
    registry.reset_requests();
    let out = project.run(&["apply"]);
    proxy.faults_off();
    out.no_panic();
    assert_eq!(out.code, 0, "{out}");
    assert_all_on(&registry, &references, &out);
    // What the real registry answered to the manifest PUTs and the blob HEADs.
    let answers: Vec<String> = registry
        .requests()
        .into_iter()
        .filter(|(method, path, _)| {
            (method == "PUT" && path.contains("/manifests/"))
                || (method == "HEAD" && path.contains("/blobs/"))
        })
        .map(|(method, _, status)| format!("{method} {status}"))
        .collect();
    assert_eq!(
        answers,
        [
            "PUT 400", "HEAD 500", "HEAD 200", "HEAD 200", "PUT 400", "HEAD 200", "HEAD 200",
            "PUT 201"
        ],
        "{out}"
    );
    // The third push waited a pause after its blobs were confirmed (at least 50 ms).
    let seen = proxy.seen();
    let puts: Vec<usize> = (0..seen.len())
        .filter(|&i| seen[i].method == "PUT" && seen[i].path.contains("/manifests/"))
        .collect();
    assert_eq!(puts.len(), 3, "{out}");
    let third = puts[2];
    let pause = seen[third].at - seen[third - 1].at;
    assert!(
        pause >= Duration::from_millis(50),
        "pushed again after {pause:?} only"
    );
}

/// A writer that never lets go (every manifest PUT reads empty links, and so does every
/// attempt of the first blob HEAD, which so fails with a 500): eigenpub stops after 5
/// pushes and names the cause, as a transient server problem, not the failed HEAD.
#[test]
fn a_manifest_refused_for_blobs_the_registry_holds_fails_naming_the_concurrent_writer() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let (project, references) = fleet(&proxy.host(), 1, 1, "");
    let links = blob_links(&registry, "acme/avs-00");
    let blob_heads = std::sync::atomic::AtomicUsize::new(0);
    proxy.set_policy(Box::new(move |head| {
        let manifest_put = head.method == "PUT" && head.path.contains("/manifests/");
        let blob_head = head.method == "HEAD" && head.path.contains("/blobs/");
        // The whole retry budget of one HEAD (8 attempts) reads empty links.
        let failing_head =
            blob_head && blob_heads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 8;
        set_links(&links, !(manifest_put || failing_head));
        None
    }));
    let out = project.run(&["apply", "--format", "json"]);
    proxy.faults_off();
    out.no_panic();
    assert_eq!(out.code, 1, "{out}");
    let puts = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "PUT" && s.path.contains("/manifests/"))
        .count();
    assert_eq!(puts, 5, "{out}");
    for words in [
        "\"eigenpub::registry::server\"",
        "HTTP 400 DIGEST_INVALID",
        "blob unknown to registry",
        "refused the manifest 5 times for a blob it holds",
        "another writer",
        "rewrites its link to the blob",
        "run apply again",
    ] {
        assert!(out.stdout.contains(words), "no {words:?}\n{out}");
    }
    assert!(registry.skopeo_raw(&references[0]).is_none());
    // Once the other writer is done, a re-run converges.
    project.run(&["apply"]).no_panic().success();
    assert_all_on(&registry, &references, &out);
}

/// Blobs really gone (their links deleted, as a garbage collection or a delete leaves
/// them): the HEADs say 404, the blobs are uploaded again, and the manifest pushed at once.
#[test]
fn a_manifest_refused_for_blobs_really_gone_uploads_them_again() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let (project, references) = fleet(&proxy.host(), 1, 1, "");
    let links = blob_links(&registry, "acme/avs-00");
    let mut removed = false;
    proxy.set_policy(Box::new(move |head| {
        if !removed && head.method == "PUT" && head.path.contains("/manifests/") {
            removed = true;
            fs::remove_dir_all(&links).expect("remove the repository's blob links");
        }
        None
    }));
    registry.reset_requests();
    let out = project.run(&["apply"]);
    proxy.faults_off();
    out.no_panic();
    assert_eq!(out.code, 0, "{out}");
    assert_all_on(&registry, &references, &out);
    // From the first manifest PUT to the one that landed (skopeo's reads follow).
    let mut answers = Vec::new();
    let requests = registry.requests().into_iter();
    for (method, path, status) in
        requests.skip_while(|(method, path, _)| !(method == "PUT" && path.contains("/manifests/")))
    {
        let what = if path.contains("/manifests/") {
            "manifest"
        } else {
            "blob"
        };
        answers.push(format!("{method} {what} {status}"));
        if method == "PUT" && what == "manifest" && status == 201 {
            break;
        }
    }
    assert_eq!(
        answers,
        [
            "PUT manifest 400",
            "HEAD blob 404",
            "HEAD blob 404",
            "POST blob 202",
            "PUT blob 201",
            "POST blob 202",
            "PUT blob 201",
            "PUT manifest 201"
        ],
        "{out}"
    );
}
