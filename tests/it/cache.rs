//! The manifest cache: a plan over tags devkit published (equivalent content under other
//! digests) reads each tag's manifest and config once per digest, not once per run. The
//! registry's access log counts what each plan sent; a corrupted or planted cache entry is
//! never used, and is fetched and replaced.

use std::path::Path;

use crate::harness::http::{HttpRequest, HttpResponse};
use crate::harness::registry_emulator::{Emulator, Play, Script};
use crate::harness::{Output, Project, Registry, Request, sha256_digest};
use crate::lock::{ALL, PO0, devkit_publish_all, devkit_push, project};

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

/// The cache's entries: `<source>/<hex>` (relative to `sources/`) → bytes.
fn entries(cache: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<(String, Vec<u8>)> = Vec::new();
    for source in std::fs::read_dir(cache.join("sources"))
        .into_iter()
        .flatten()
    {
        let source = source.expect("source folder");
        for entry in std::fs::read_dir(source.path()).expect("read source folder") {
            let entry = entry.expect("entry");
            found.push((
                format!(
                    "{}/{}",
                    source.file_name().to_string_lossy(),
                    entry.file_name().to_string_lossy()
                ),
                std::fs::read(entry.path()).expect("read entry"),
            ));
        }
    }
    found.sort();
    found
}

/// How many files are in `dir` and its folders, whatever the cache's layout.
fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

/// The digest an entry is named by.
fn digest_of(name: &str) -> String {
    format!("sha256:{}", name.rsplit('/').next().unwrap_or_default())
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
        assert_eq!(digest_of(name), sha256_digest(bytes));
    }

    // Second plan: one HEAD per artifact, nothing else.
    let second = plan("second");
    assert_eq!(second.len(), ALL.len(), "{second:#?}");
    assert_eq!(count(&second, "HEAD"), ALL.len(), "{second:#?}");

    // A truncated entry and a planted one (other bytes under a digest's name) are never
    // trusted: each is fetched again and replaced with the right bytes.
    let dir = cache.path().join("sources");
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
    std::fs::remove_dir_all(cache.path().join("sources")).unwrap();
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

/// A host that answers the `HEAD` of one tag with `digest` (the tag "holds" it), and
/// forwards everything else to the registry behind it.
fn claiming(tag_path: String, digest: String) -> Script {
    Box::new(move |request: &HttpRequest| {
        if request.method == "HEAD" && request.path() == tag_path {
            Play::Answer(
                HttpResponse::new(200)
                    .with_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                    .with_header("Docker-Content-Digest", &digest),
            )
        } else {
            Play::Forward
        }
    })
}

/// `project`'s file with its registry line pointing at `registry` (`host/namespace`).
fn point_at(project: &Project, from: &str, to: &str) {
    let path = project.path().join("eigenruntime.toml");
    let text = std::fs::read_to_string(&path).expect("read the project file");
    assert!(text.contains(from), "{text}");
    std::fs::write(&path, text.replace(from, to)).expect("write the project file");
}

// The cache was keyed by digest alone, in a folder every project of the user shares: a
// registry a pull request adds, claiming the digest of an artifact another registry (or
// another repository) served this user before, got its bytes from the cache without a
// request, and `plan --format markdown` showed that spec in the pull request's comment.
#[test]
fn a_digest_served_by_one_repository_is_never_read_from_the_cache_for_another() {
    let registry = Registry::start();
    let secret = PO0.text("only-the-victim-has-this");
    let digest = devkit_push(&registry, PO0, &secret, "2025-01-01T00:00:00Z", "Hourglass");
    let own_spec = PO0.text("image-1");
    let secret_line = secret
        .lines()
        .find(|l| !own_spec.lines().any(|o| o == *l))
        .expect("a line only the victim's spec has")
        .trim()
        .to_string();
    let tag_path =
        |namespace: &str| format!("/v2/{namespace}/price-oracle/manifests/{}", PO0.tag());
    // The victim reads its registry through a host that, for another repository on it
    // (`evil/price-oracle`), claims the victim's digest.
    let host = Emulator::start(&registry, claiming(tag_path("evil"), digest.clone()));
    let cache = tempfile::tempdir().expect("cache dir");
    let victim = project(&registry, "created = \"2025-01-01T00:00:00Z\"");
    point_at(
        &victim,
        &format!("{}/acme", registry.host()),
        &format!("{}/acme", host.host()),
    );
    // Its own plan shows what its tag holds now (the review reads manifest, config and
    // spec, into the cache).
    let own = run_cached(&victim, cache.path(), &["plan", "--format", "markdown"]);
    own.no_panic();
    assert!(own.stdout.contains(&secret_line), "{own}");
    assert!(
        files_under(cache.path()) >= 3,
        "{:?}",
        entries(cache.path())
    );

    // Another repository on the same host, and the same repository on another host (one
    // that holds nothing), each claiming that digest for their tag.
    let empty = Registry::start();
    let elsewhere = Emulator::start(&empty, claiming(tag_path("acme"), digest.clone()));
    for (label, claimant, namespace) in [
        ("another repository", &host, "evil"),
        ("another registry", &elsewhere, "acme"),
    ] {
        let attacker = project(&registry, "created = \"2025-01-01T00:00:00Z\"");
        point_at(
            &attacker,
            &format!("{}/acme", registry.host()),
            &format!("{}/{namespace}", claimant.host()),
        );
        claimant.reset();
        let out = run_cached(&attacker, cache.path(), &["plan", "--format", "markdown"]);
        out.no_panic();
        assert!(
            !out.stdout.contains(&secret_line) && !out.stderr.contains(&secret_line),
            "{label}: the victim's spec was shown\n{out}"
        );
        // The claimant was asked for the manifest (and had nothing to give).
        let manifest_path = format!("/v2/{namespace}/price-oracle/manifests/{digest}");
        assert!(
            claimant
                .seen()
                .iter()
                .any(|s| s.method == "GET" && s.path == manifest_path),
            "{label}: {:#?}",
            claimant.seen()
        );
    }
}

// The cache's folder was not checked for links, and trimming deleted every file older than
// an hour in it that was not an entry: with its entries' folder a link to another folder,
// a plan that added entries wrote them there and deleted that folder's old files. With
// the home folder the checkout (Jenkins' `HOME=$WORKSPACE`), the cache was kept where a
// pull request commits files, links included.
#[cfg(unix)]
#[test]
fn a_cache_folder_through_a_link_or_in_the_checkout_is_refused_and_deletes_nothing() {
    let registry = Registry::start();
    devkit_publish_all(&registry);
    let project = project(&registry, "created = \"2025-01-01T00:00:00Z\"");
    let dir = tempfile::tempdir().expect("temp dir");
    let (cache, precious) = (dir.path().join("cache"), dir.path().join("precious"));
    let notes = precious.join("folder/notes.txt");
    std::fs::create_dir_all(notes.parent().unwrap()).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(&notes, b"keep me").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&notes)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    std::os::unix::fs::symlink(&precious, cache.join("sources")).unwrap();
    let out = run_cached(&project, &cache, &["plan"]);
    out.no_panic().success();
    assert!(
        out.stderr.contains("sources is a symbolic link")
            && out.stderr.contains("the cache is off for this run"),
        "{out}"
    );
    assert_eq!(std::fs::read(&notes).unwrap(), b"keep me", "{out}");
    assert_eq!(files_under(&precious), 1, "written through the link\n{out}");

    // The home folder the checkout, no other folder named: refused, nothing kept there.
    let mut cmd = project.eigenpub(&["plan"]);
    cmd.env_remove("EIGENPUB_NO_CACHE")
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", project.path());
    let out = crate::harness::run(cmd);
    out.no_panic().success();
    assert!(
        out.stderr
            .contains("is inside the project's folder or work tree")
            && out.stderr.contains("set EIGENPUB_CACHE_DIR"),
        "{out}"
    );
    assert!(!project.exists(".cache"), "{out}");
}
