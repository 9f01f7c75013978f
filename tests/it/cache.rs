//! The manifest cache: a plan over tags devkit published (equivalent content under other
//! digests) reads each tag's manifest and config once per digest, not once per run. The
//! registry's access log counts what each plan sent; a corrupted or planted cache entry is
//! never used, and is fetched and replaced.

use std::path::Path;

use crate::harness::{Output, Project, Registry, Request, sha256_digest};
use crate::lock::{ALL, devkit_publish_all, project};

/// `eigenpub <args>` with the cache on, in `cache`.
fn run_cached(project: &Project, cache: &Path, args: &[&str]) -> Output {
    let mut cmd = project.eigenpub(args);
    cmd.env_remove("EIGENPUB_NO_CACHE")
        .env("EIGENPUB_CACHE_DIR", cache);
    crate::harness::run(cmd)
}

fn count(requests: &[Request], method: &str) -> usize {
    requests.iter().filter(|r| r.method == method).count()
}

/// The cache's entries: file name → bytes.
fn entries(cache: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = cache.join("blobs/sha256");
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).expect("read entry"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

#[test]
fn a_second_plan_over_adopted_tags_costs_one_head_per_artifact() {
    let registry = Registry::start();
    devkit_publish_all(&registry);
    let project = project(&registry, "created = \"2025-01-01T00:00:00Z\"");
    let cache = tempfile::tempdir().expect("cache dir");
    let plan = |label: &str| {
        registry.reset_requests();
        let out = run_cached(&project, cache.path(), &["plan", "--detailed-exitcode"]);
        out.no_panic().expect_code(0);
        assert!(
            out.stdout
                .contains("3 unchanged (3 of them equivalent content"),
            "{label}\n{out}"
        );
        registry.request_lines()
    };

    // First plan: each tag's HEAD, and its manifest and config to judge equivalence.
    let first = plan("first");
    assert_eq!(
        (count(&first, "HEAD"), count(&first, "GET")),
        (ALL.len(), 2 * ALL.len()),
        "{first:#?}"
    );
    // What the cache holds is named by its digest and is exactly those bytes.
    let held = entries(cache.path());
    assert_eq!(held.len(), 2 * ALL.len(), "{held:?}");
    for (name, bytes) in &held {
        assert_eq!(format!("sha256:{name}"), sha256_digest(bytes));
    }

    // Second plan: one HEAD per artifact, nothing else.
    let second = plan("second");
    assert_eq!(second.len(), ALL.len(), "{second:#?}");
    assert_eq!(count(&second, "HEAD"), ALL.len(), "{second:#?}");

    // A truncated entry and a planted one (other bytes under a digest's name) are never
    // trusted: each is fetched again and replaced with the right bytes.
    let dir = cache.path().join("blobs/sha256");
    let (truncated, planted) = (&held[0], &held[1]);
    std::fs::write(
        dir.join(&truncated.0),
        &truncated.1[..truncated.1.len() / 2],
    )
    .unwrap();
    std::fs::write(dir.join(&planted.0), b"{\"schemaVersion\":2,\"layers\":[]}").unwrap();
    let third = plan("third");
    assert_eq!(count(&third, "HEAD"), ALL.len(), "{third:#?}");
    assert_eq!(count(&third, "GET"), 2, "{third:#?}");
    assert_eq!(entries(cache.path()), held);

    // Off: every plan reads again, and the cache is not touched.
    std::fs::remove_dir_all(cache.path().join("blobs")).unwrap();
    registry.reset_requests();
    let mut cmd = project.eigenpub(&["plan"]);
    cmd.env("EIGENPUB_CACHE_DIR", cache.path());
    crate::harness::run(cmd).no_panic().success();
    assert_eq!(count(&registry.request_lines(), "GET"), 2 * ALL.len());
    assert!(entries(cache.path()).is_empty());
}

#[test]
fn the_cache_lives_under_xdg_cache_home_and_never_in_the_project() {
    let registry = Registry::start();
    devkit_publish_all(&registry);
    let project = project(&registry, "created = \"2025-01-01T00:00:00Z\"");
    let home = tempfile::tempdir().expect("home");
    let xdg = home.path().join("xdg-cache");
    let mut cmd = project.eigenpub(&["plan"]);
    cmd.env_remove("EIGENPUB_NO_CACHE")
        .env("XDG_CACHE_HOME", &xdg)
        .env("HOME", home.path());
    crate::harness::run(cmd).no_panic().success();
    assert_eq!(entries(&xdg.join("eigenpub")).len(), 2 * ALL.len());

    // A relative EIGENPUB_CACHE_DIR would depend on where eigenpub runs (a checkout a pull
    // request controls): refused with a warning, the cache off.
    let mut cmd = project.eigenpub(&["plan"]);
    cmd.env_remove("EIGENPUB_NO_CACHE")
        .env("EIGENPUB_CACHE_DIR", "cache")
        .env("HOME", home.path());
    let out = crate::harness::run(cmd);
    out.no_panic().success();
    assert!(
        out.stderr
            .contains("EIGENPUB_CACHE_DIR must be an absolute path"),
        "{out}"
    );
    assert!(!project.exists("cache"), "{out}");
}
