//! `eigenpub apply` at scale against a registry that misbehaves the way real ones do.
//!
//! The other modules talk to a well-behaved `docker-registry`. Real registries rate-limit
//! (429 with `Retry-After`), fall over (500/503), drop connections, stall, and lose the
//! answer to a request they did carry out; and users press Ctrl-C or CI kills the job.
//! This module puts a fault-injecting HTTP/1.1 proxy (written here, std only) between
//! eigenpub and a real registry and checks what eigenpub promises under those conditions:
//! transient faults are retried to success (and `Retry-After` is honoured), permanent ones
//! fail only the artifacts they touch and are named, a killed or interrupted run never
//! leaves a tag pointing at missing blobs, and the next run finishes the job.
//!
//! What is checked is read back independently: skopeo and plain HTTP against the real
//! registry (bypassing the proxy), sha256 of the spec bytes written here, the registry's
//! access log, and the proxy's own record of what it saw and when.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::fault_proxy::{
    Fault, INJECTED_MESSAGE, Proxy, Seen, always, first, flaky, is_write,
};
use crate::harness::{
    Output, Project, Registry, Running, http_request, run, sha256_digest, spec_yaml,
};

const SOURCE: &str = "https://github.com/acme/avs-monorepo";
const CREATED: &str = "2025-01-01T00:00:00Z";
/// The `version` every spec written here carries (that of `harness::spec_yaml`); discovered artifacts are tagged with it.
const SPEC_VERSION: &str = "0.3.1";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// How long a stalled request is held before it is forwarded; far below eigenpub's 60 s
/// read timeout, so a stall is slowness, not failure.
const STALL: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------
// Projects: many AVSs found by a discover pattern
// ---------------------------------------------------------------------------

/// One spec written by [`fleet`].
#[derive(Clone, Debug)]
struct Spec {
    avs: String,
    tag: String,
    bytes: Vec<u8>,
}

impl Spec {
    /// `acme/<avs>:<tag>`, the reference on the real registry (without its host).
    fn name_and_tag(&self) -> String {
        format!("acme/{}:{}", self.avs, self.tag)
    }
}

/// A project publishing `avs_count` AVSs (`avs-00`, `avs-01`, …) with `per_avs` operator
/// sets each to `<registry>/acme`, found by `[[discover]]`. Returns every spec written.
fn fleet(registry: &str, avs_count: usize, per_avs: u64) -> (Project, Vec<Spec>) {
    let project = Project::new();
    project.write(
        "eigenruntime.toml",
        format!(
            "[defaults]\nregistry = \"{registry}/acme\"\nsource = \"{SOURCE}\"\ncreated = \"{CREATED}\"\n\n\
             [[discover]]\nspecs = \"fleet/{{avs}}/opset-{{opset}}.yaml\"\n"
        ),
    );
    let mut specs = Vec::new();
    for a in 0..avs_count {
        let avs = format!("avs-{a:02}");
        for opset in 0..per_avs {
            let component = if opset % 2 == 0 {
                "aggregator"
            } else {
                "executor"
            };
            let yaml = spec_yaml(&avs, component, &format!("{avs}-{opset}"));
            project.write(&format!("fleet/{avs}/opset-{opset}.yaml"), &yaml);
            specs.push(Spec {
                avs: avs.clone(),
                tag: format!("opset-{opset}-v{SPEC_VERSION}"),
                bytes: yaml.into_bytes(),
            });
        }
    }
    (project, specs)
}

/// `plan --format json` (must exit 0): `acme/<avs>:<tag>` → planned digest, and every
/// artifact's action.
fn planned_digests(project: &Project, proxy: &Proxy) -> BTreeMap<String, (String, String)> {
    let out = project.run(&["plan", "--format", "json"]);
    out.no_panic().success();
    let doc: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("plan --format json printed no JSON ({e})\n{out}"));
    let prefix = format!("{}/", proxy.host());
    doc["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("no artifacts array\n{out}"))
        .iter()
        .map(|a| {
            let repository = a["repository"].as_str().expect("repository");
            let name = repository.strip_prefix(&prefix).unwrap_or_else(|| {
                panic!("repository {repository} is not on the proxy {prefix}\n{out}")
            });
            (
                format!("{name}:{}", a["tag"].as_str().expect("tag")),
                (
                    a["digest"].as_str().expect("digest").to_string(),
                    a["action"].as_str().expect("action").to_string(),
                ),
            )
        })
        .collect()
}

/// The `Apply: …` summary line of a text apply.
fn apply_summary(out: &Output) -> &str {
    out.stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("Apply:") || l.starts_with("Apply interrupted:"))
        .unwrap_or_else(|| panic!("no `Apply:` summary line on stdout\n{out}"))
}

/// `(pushed, unchanged, failed, not started)` read from an `Apply:` summary line.
fn apply_counts(out: &Output) -> (usize, usize, usize, usize) {
    let line = apply_summary(out);
    let count = |word: &str| -> usize {
        let mut previous = None;
        for token in line
            .trim_start_matches("Apply interrupted:")
            .trim_start_matches("Apply:")
            .split([',', '.'])
            .map(str::trim)
        {
            if let Some(n) = token.strip_suffix(word).map(str::trim) {
                previous = n.parse().ok();
            }
        }
        previous.unwrap_or(0)
    };
    (
        count("pushed"),
        count("unchanged"),
        count("failed"),
        count("not started"),
    )
}

#[track_caller]
fn assert_line(out: &Output, expected: &str) {
    assert!(
        out.stdout_lines().contains(&expected),
        "no stdout line equal to {expected:?}\n{out}"
    );
}

// ---------------------------------------------------------------------------
// Reading the real registry, bypassing the proxy
// ---------------------------------------------------------------------------

/// Tags of `acme/<avs>` on the registry itself (empty when the repository does not exist).
fn tags(registry: &Registry, avs: &str) -> Vec<String> {
    let resp = registry.get(&format!("/v2/acme/{avs}/tags/list"));
    match resp.status {
        404 => Vec::new(),
        200 => {
            let doc: Value = serde_json::from_slice(&resp.body).expect("tags/list JSON");
            doc["tags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        }
        other => panic!(
            "tags/list of acme/{avs} answered {other}: {}",
            String::from_utf8_lossy(&resp.body)
        ),
    }
}

/// Every tag on the registry must name a manifest whose config and layers all exist.
/// Returns how many tags were checked.
fn assert_every_tag_is_complete(registry: &Registry, avs_names: &BTreeSet<String>) -> usize {
    let mut checked = 0;
    for avs in avs_names {
        for tag in tags(registry, avs) {
            let path = format!("/v2/acme/{avs}/manifests/{tag}");
            let resp = http_request(
                "GET",
                &registry.host(),
                &path,
                &[("Accept", OCI_MANIFEST)],
                None,
            )
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
            assert_eq!(resp.status, 200, "GET {path}");
            let manifest: Value = serde_json::from_slice(&resp.body).expect("manifest JSON");
            let mut digests = vec![manifest["config"]["digest"].as_str().expect("config")];
            for layer in manifest["layers"].as_array().expect("layers") {
                digests.push(layer["digest"].as_str().expect("layer digest"));
            }
            for digest in digests {
                let blob = format!("/v2/acme/{avs}/blobs/{digest}");
                let head = http_request("HEAD", &registry.host(), &blob, &[], None)
                    .unwrap_or_else(|e| panic!("HEAD {blob}: {e}"));
                assert_eq!(
                    head.status, 200,
                    "tag acme/{avs}:{tag} names blob {digest}, which the repository does not hold"
                );
            }
            checked += 1;
        }
    }
    checked
}

/// Waits until the proxy has seen `n` requests matching `what` (the apply phase has begun).
fn wait_for_requests(proxy: &Proxy, running: &mut Running, n: usize, what: fn(&Seen) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if proxy.seen().iter().filter(|s| what(s)).count() >= n {
            return;
        }
        assert!(
            !running.finished(),
            "eigenpub exited before the proxy saw {n} of the requests waited for"
        );
        assert!(
            Instant::now() < deadline,
            "the proxy did not see {n} of the requests waited for within 30 s"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn is_manifest_put(s: &Seen) -> bool {
    s.method == "PUT" && s.path.contains("/manifests/")
}

fn is_write_seen(s: &Seen) -> bool {
    s.method == "POST" || s.method == "PUT"
}

fn avs_names(specs: &[Spec]) -> BTreeSet<String> {
    specs.iter().map(|s| s.avs.clone()).collect()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn apply_survives_a_flaky_registry() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let (project, specs) = fleet(&proxy.host(), 8, 5);
    assert_eq!(specs.len(), 40);
    let planned = planned_digests(&project, &proxy);
    assert_eq!(planned.len(), 40, "{planned:?}");

    registry.reset_requests();
    proxy.reset();
    proxy.set_policy(flaky(
        0x5eed_f1a6,
        20,
        &[
            (Fault::Unavailable, 4),
            (Fault::Drop, 3),
            (Fault::Stall(STALL), 2),
            (Fault::TooManyRequests { retry_after: 1 }, 1),
        ],
        |_| true,
    ));
    let out = project.run(&["--concurrency", "8", "apply"]);
    proxy.faults_off();
    let faults = proxy.faults();
    out.no_panic();
    assert_eq!(
        out.code, 0,
        "apply through a flaky registry (faults: {faults:?})\n{out}"
    );
    assert_line(&out, "Apply: 40 pushed, 0 unchanged, 0 failed.");
    assert!(
        faults.iter().any(|f| f.fails()),
        "the proxy injected no failures, so this test proved nothing: {faults:?}"
    );
    // Everything the registry served came through the proxy: eigenpub never bypassed it
    // (e.g. by following an upload Location to the registry's own address).
    assert_eq!(
        registry.request_count(),
        proxy.forwarded(),
        "requests the registry served vs requests the proxy forwarded"
    );

    for spec in &specs {
        let name = spec.name_and_tag();
        let manifest = registry
            .skopeo_raw(&name)
            .unwrap_or_else(|| panic!("{name} is not on the registry\n{out}"));
        let (digest, action) = &planned[&name];
        assert_eq!(action, "create", "{name}");
        assert_eq!(
            &sha256_digest(&manifest),
            digest,
            "{name}: stored vs planned"
        );
        let doc: Value = serde_json::from_slice(&manifest).expect("manifest JSON");
        assert_eq!(
            doc["layers"][0]["digest"].as_str(),
            Some(sha256_digest(&spec.bytes).as_str()),
            "{name}: the layer is the spec file's bytes"
        );
    }

    let plan = project.run(&["plan"]);
    plan.no_panic().success();
    assert_line(&plan, "Plan: 0 to create, 0 to update, 40 unchanged.");
}

#[test]
fn a_permanently_failing_repository_fails_alone_and_the_next_run_completes_it() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let (project, specs) = fleet(&proxy.host(), 4, 3);
    let broken = "avs-02";
    let broken_path = format!("/v2/acme/{broken}/");
    // The plan's HEADs still work (a repository that cannot even be read stops the whole
    // plan); every write to the broken repository fails with a 500.
    proxy.set_policy(always(Fault::ServerError, move |h| {
        is_write(h) && h.path.starts_with(&broken_path)
    }));
    let out = project.run(&["--concurrency", "8", "apply"]);
    proxy.faults_off();
    out.no_panic().expect_code(1);

    let failing: Vec<&Spec> = specs.iter().filter(|s| s.avs == broken).collect();
    let all = format!("{}\n{}", out.stdout, out.stderr);
    for spec in &failing {
        let reference = format!("{}/acme/{}:{}", proxy.host(), spec.avs, spec.tag);
        assert!(
            all.lines()
                .any(|l| l.contains(&reference) && l.contains("failed")),
            "no line says {reference} failed\n{out}"
        );
    }
    assert!(
        all.contains(INJECTED_MESSAGE),
        "the registry's error message is not shown\n{out}"
    );
    assert_line(
        &out,
        &format!(
            "Apply: {} pushed, 0 unchanged, {} failed.",
            specs.len() - failing.len(),
            failing.len()
        ),
    );
    // A 500 is retried before giving up: each failing request was sent more than once.
    let seen = proxy.seen();
    let mut attempts: BTreeMap<String, usize> = BTreeMap::new();
    for s in seen.iter().filter(|s| s.fault.is_some()) {
        *attempts
            .entry(format!("{} {}", s.method, s.path))
            .or_default() += 1;
    }
    assert!(!attempts.is_empty());
    for (request, n) in &attempts {
        assert!(
            *n > 1,
            "{request} was not retried after a 500 ({n} attempt)"
        );
    }

    for spec in &specs {
        let present = registry.skopeo_raw(&spec.name_and_tag()).is_some();
        assert_eq!(
            present,
            spec.avs != broken,
            "{} present on the registry",
            spec.name_and_tag()
        );
    }

    let again = project.run(&["--concurrency", "8", "apply"]);
    again.no_panic().success();
    assert_line(
        &again,
        &format!(
            "Apply: {} pushed, {} unchanged, 0 failed.",
            failing.len(),
            specs.len() - failing.len()
        ),
    );
    for spec in &failing {
        assert!(
            registry.skopeo_raw(&spec.name_and_tag()).is_some(),
            "{} after the second apply",
            spec.name_and_tag()
        );
    }
}

#[test]
fn killed_mid_apply_leaves_no_tag_pointing_at_missing_blobs() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let (project, specs) = fleet(&proxy.host(), 6, 10);
    assert_eq!(specs.len(), 60);
    proxy.set_policy(flaky(
        0x0c0f_fee5,
        30,
        &[(Fault::Stall(STALL), 1)],
        is_write,
    ));
    let mut running = Running::spawn(project.eigenpub(&["--concurrency", "8", "apply"]));
    // Kill it once some manifests were pushed and more are in flight.
    wait_for_requests(&proxy, &mut running, 1, is_manifest_put);
    thread::sleep(Duration::from_millis(500));
    assert!(
        !running.finished(),
        "apply finished before it could be killed; make it slower"
    );
    let out = running
        .wait_at_most(Duration::ZERO)
        .expect_err("SIGKILL was sent");
    assert_eq!(out.code, 128 + 9, "killed by SIGKILL\n{out}");
    proxy.wait_idle();
    proxy.faults_off();

    let checked = assert_every_tag_is_complete(&registry, &avs_names(&specs));
    assert!(
        checked < specs.len(),
        "all {checked} tags were pushed before the kill; the test proved nothing"
    );

    let again = project.run(&["--concurrency", "8", "apply"]);
    again.no_panic().success();
    let (pushed, unchanged, failed, not_started) = apply_counts(&again);
    assert_eq!(
        (pushed + unchanged, failed, not_started),
        (specs.len(), 0, 0),
        "{again}"
    );
    assert_eq!(
        unchanged, checked,
        "tags present after the kill are unchanged\n{again}"
    );
    let plan = project.run(&["plan"]);
    plan.no_panic().success();
    assert_line(&plan, "Plan: 0 to create, 0 to update, 60 unchanged.");
}

#[test]
fn sigint_stops_promptly_with_a_summary() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let (project, specs) = fleet(&proxy.host(), 4, 10);
    // Slow blob upload starts down so that the run is still going when interrupted.
    proxy.set_policy(flaky(0x1b7e_2217, 50, &[(Fault::Stall(STALL), 1)], |h| {
        h.method == "POST"
    }));
    let mut running = Running::spawn(project.eigenpub(&["--concurrency", "4", "apply"]));
    wait_for_requests(&proxy, &mut running, 1, is_write_seen);
    thread::sleep(Duration::from_secs(1));
    assert!(
        !running.finished(),
        "apply finished before SIGINT; make it slower"
    );
    let pid = running.pid().to_string();
    let sent_at = Instant::now();
    let kill = run({
        let mut cmd = Command::new("kill");
        cmd.args(["-INT", &pid]);
        cmd
    });
    kill.success();
    let out = running
        .wait_at_most(Duration::from_secs(10))
        .unwrap_or_else(|out| panic!("apply still ran 10 s after SIGINT; killed\n{out}"));
    let took = sent_at.elapsed();
    proxy.wait_idle();
    proxy.faults_off();
    out.no_panic();
    assert_ne!(out.code, 0, "an interrupted apply must not exit 0\n{out}");
    let (pushed, unchanged, failed, not_started) = apply_counts(&out);
    assert_eq!(
        pushed + unchanged + failed + not_started,
        specs.len(),
        "every artifact is accounted for in the summary\n{out}"
    );
    assert!(
        not_started > 0,
        "SIGINT after ~1 s of {} artifacts left none not started (took {took:?})\n{out}",
        specs.len()
    );
    assert!(
        apply_summary(&out).ends_with(&format!(", {not_started} not started.")),
        "{out}"
    );
    // Issue 20: the summary says the run was interrupted, and the lines use its wording.
    assert!(
        apply_summary(&out).starts_with("Apply interrupted:"),
        "{out}"
    );
    let listed = out
        .stdout_lines()
        .iter()
        .filter(|l| l.starts_with("not started "))
        .count();
    assert_eq!(
        listed, not_started,
        "one `not started` line per artifact not started\n{out}"
    );
    // What was reported pushed is there, completely. An artifact cancelled after the grace
    // period (reported as failed: interrupted) may have had its manifest PUT land just
    // before the cancel, so it may be there too; every tag there is complete either way.
    let checked = assert_every_tag_is_complete(&registry, &avs_names(&specs));
    assert!(
        checked >= pushed && checked <= pushed + failed,
        "tags on the registry ({checked}) vs pushed ({pushed}) and interrupted ({failed}) before SIGINT\n{out}"
    );

    let again = project.run(&["--concurrency", "8", "apply"]);
    again.no_panic().success();
    assert_line(
        &again,
        &format!(
            "Apply: {} pushed, {checked} unchanged, 0 failed.",
            specs.len() - checked
        ),
    );
}

#[test]
fn retry_after_is_honoured() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let (project, specs) = fleet(&proxy.host(), 1, 3);
    let retry_after = 2;
    proxy.set_policy(first(3, Fault::TooManyRequests { retry_after }, |h| {
        h.method == "HEAD" && h.path.contains("/manifests/")
    }));
    let out = project.run(&["plan"]);
    out.no_panic().success();
    assert_line(
        &out,
        &format!("Plan: {} to create, 0 to update, 0 unchanged.", specs.len()),
    );
    let seen = proxy.seen();
    let limited: Vec<&Seen> = seen.iter().filter(|s| s.fault.is_some()).collect();
    assert_eq!(limited.len(), 3, "{seen:#?}");
    for s in limited {
        let retry = seen
            .iter()
            .find(|r| r.at > s.at && r.method == s.method && r.path == s.path)
            .unwrap_or_else(|| panic!("{} {} was never retried: {seen:#?}", s.method, s.path));
        let waited = retry.at - s.at;
        assert!(
            waited >= Duration::from_millis(1500),
            "{} {} was retried {waited:?} after a 429 with Retry-After: {retry_after}",
            s.method,
            s.path
        );
    }
}

#[test]
fn a_burst_of_rate_limits_slows_the_run_down_only_for_a_while() {
    // One burst of concurrent 429s must count once: doubling the request spacing per 429
    // (with no cap and no recovery) once made this 12-tag plan take ~60 s.
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let (project, specs) = fleet(&proxy.host(), 1, 12);
    // One burst: the first 8 HEADs (as many as run at once) are rate-limited.
    proxy.set_policy(first(8, Fault::TooManyRequests { retry_after: 1 }, |h| {
        h.method == "HEAD" && h.path.contains("/manifests/")
    }));
    let started = Instant::now();
    let running = Running::spawn(project.eigenpub(&["--concurrency", "8", "plan"]));
    let limit = Duration::from_secs(20);
    let out = running.wait_at_most(limit).unwrap_or_else(|out| {
        panic!(
            "a {}-tag plan still ran {limit:?} after one burst of 8 rate limits (Retry-After: 1); killed\n{out}",
            specs.len()
        )
    });
    let took = started.elapsed();
    out.no_panic().success();
    assert_line(
        &out,
        &format!("Plan: {} to create, 0 to update, 0 unchanged.", specs.len()),
    );
    assert_eq!(proxy.faults().len(), 8, "{out}");
    assert!(
        took >= Duration::from_millis(900),
        "Retry-After: 1 was not waited ({took:?})"
    );
}

#[test]
fn a_digest_invalid_is_not_retried() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let (project, specs) = fleet(&proxy.host(), 1, 2);
    proxy.set_policy(always(Fault::DigestInvalid, |h| {
        h.method == "PUT" && h.path.contains("/blobs/uploads/")
    }));
    let out = project.run(&["apply"]);
    proxy.faults_off();
    out.no_panic().expect_code(1);
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("DIGEST_INVALID"),
        "the registry's error code is shown\n{out}"
    );
    assert_line(
        &out,
        &format!("Apply: 0 pushed, 0 unchanged, {} failed.", specs.len()),
    );
    let mut attempts: BTreeMap<String, usize> = BTreeMap::new();
    for s in proxy.seen().iter().filter(|s| s.fault.is_some()) {
        *attempts.entry(s.path.clone()).or_default() += 1;
    }
    assert!(!attempts.is_empty(), "no upload was refused\n{out}");
    for (path, n) in &attempts {
        assert_eq!(*n, 1, "PUT {path} was retried after DIGEST_INVALID");
    }
    for spec in &specs {
        assert!(registry.skopeo_raw(&spec.name_and_tag()).is_none());
    }
}

#[test]
fn an_upload_whose_answer_was_lost_is_completed() {
    // A retried PUT to an upload session the registry already closed (it stored the
    // blob, then the answer was lost) gets 404 BLOB_UPLOAD_UNKNOWN: eigenpub must look
    // for the blob and carry on.
    // The registry stores the blob, but the client's connection drops before the answer
    // arrives: a retry of the same PUT finds the upload session gone. The run must still
    // end with the artifact pushed (the blob is there).
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let (project, specs) = fleet(&proxy.host(), 1, 2);
    proxy.set_policy(first(1, Fault::LoseAnswer, |h| {
        h.method == "PUT" && h.path.contains("/blobs/uploads/")
    }));
    let out = project.run(&["apply"]);
    proxy.faults_off();
    out.no_panic();
    assert_eq!(proxy.faults(), [Fault::LoseAnswer]);
    assert_eq!(out.code, 0, "a lost answer to a blob upload\n{out}");
    assert_line(
        &out,
        &format!("Apply: {} pushed, 0 unchanged, 0 failed.", specs.len()),
    );
    assert_every_tag_is_complete(&registry, &avs_names(&specs));
}
