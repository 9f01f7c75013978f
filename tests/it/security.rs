//! Trust against hostile registries, hostile project files and races (issue 10): secrets
//! never leave where they belong, outside text is sanitised before it is shown, project
//! files stay in the project, saved plans are enforced, layouts survive concurrent applies.
//! The hostile registry is [`crate::hostile`]; real registries come from the harness.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine as _;

use crate::harness::{Output, Project, dies_within, run, spec_yaml};
use crate::hostile::{Hostile, Reply, Seen};

const USER: &str = "release-bot";
/// A password whose plain, base64 and URL-safe base64 forms all differ.
const PASSWORD: &str = "s3cr3t-P@ss/w0rd+x?y";

/// Every form the secret may leak in.
fn secret_forms() -> Vec<(&'static str, String)> {
    let std = base64::engine::general_purpose::STANDARD;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let pair = format!("{USER}:{PASSWORD}");
    vec![
        ("password", PASSWORD.to_string()),
        ("base64 password", std.encode(PASSWORD)),
        ("user:password", pair.clone()),
        ("base64 user:password", std.encode(&pair)),
        ("url-safe base64 user:password", url.encode(&pair)),
        ("the password's distinctive middle", "P@ss/w0rd".to_string()),
    ]
}

/// Panics when any form of the secret, a raw escape, or a signed URL's signature is in
/// the output or in any file under `dir` (written by eigenpub).
#[track_caller]
fn assert_clean(what: &str, out: &Output, dir: &Path) {
    let mut channels = vec![
        ("stdout".to_string(), out.stdout.clone()),
        ("stderr".to_string(), out.stderr.clone()),
    ];
    for file in walk(dir) {
        let bytes = fs::read(&file).unwrap_or_default();
        channels.push((
            file.display().to_string(),
            String::from_utf8_lossy(&bytes).into(),
        ));
    }
    for (channel, text) in &channels {
        for (form, value) in secret_forms() {
            assert!(
                !text.contains(&value),
                "{what}: the {form} appears in {channel}\n{out}"
            );
        }
        assert!(
            !text.contains('\x1b') && !text.contains('\x07'),
            "{what}: a raw escape sequence reached {channel}\n{out}"
        );
        assert!(
            !text.contains("SIG-LEAK"),
            "{what}: a signed URL's query reached {channel}\n{out}"
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for e in entries.flatten() {
        let path = e.path();
        // What the test planted (a Docker config holding the secret, helpers) is not output.
        if [".git", ".docker-config", ".helper-bin"]
            .iter()
            .any(|planted| path.ends_with(planted))
        {
            continue;
        }
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.is_file() {
            files.push(path);
        }
    }
    files
}

/// A project publishing one artifact to `host/acme`.
fn project_for(host: &str) -> Project {
    let p = Project::new();
    p.write(
        "eigenruntime.toml",
        format!(
            "[defaults]\nregistry = \"{host}/acme\"\ncreated = \"2024-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"oracle\"\n[avs.operator-sets]\n0 = \"spec.yaml\"\n"
        ),
    );
    p.write("spec.yaml", spec_yaml("oracle", "aggregator", "1"));
    p
}

/// A registry that asks for Basic credentials, then answers every authenticated request
/// with a body (and headers) echoing them, with escape sequences and a signed URL.
fn echoing_registry() -> Hostile {
    Hostile::start(|req: &Seen| {
        let Some(auth) = req.header("authorization").map(str::to_string) else {
            return Reply::new(401).with_header("WWW-Authenticate", "Basic realm=\"hostile\"");
        };
        if req.method == "HEAD" {
            return Reply::new(404);
        }
        let decoded = auth
            .strip_prefix("Basic ")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let password = decoded.split_once(':').map(|(_, p)| p).unwrap_or("");
        let message = format!(
            "denied: you sent Authorization: {auth} ({decoded}); password {password}, base64 {}; \x1b]0;owned\x07\x1b[31mred\x1b[0m; retry at https://bucket.s3.example/up?X-Amz-Signature=SIG-LEAK&x=1",
            base64::engine::general_purpose::STANDARD.encode(password)
        );
        let body = serde_json::json!({"errors": [{"code": "DENIED", "message": message}]});
        Reply::new(400)
            .with_header("Content-Type", "application/json")
            .with_header("X-Echo", &auth)
            .with_body(body.to_string())
    })
}

/// How the secret reaches eigenpub.
enum Channel {
    Env,
    DockerConfig,
    Helper,
}

/// Runs eigenpub in `p` with the secret planted in `channel`.
fn run_with(p: &Project, host: &str, channel: &Channel, args: &[&str]) -> Output {
    // Helpers live outside the project: eigenpub runs no program from the project's folder.
    let helpers = tempfile::tempdir().unwrap();
    let docker = p.join(".docker-config");
    fs::create_dir_all(&docker).unwrap();
    let mut cmd = p.eigenpub(args);
    cmd.env("DOCKER_CONFIG", &docker);
    match channel {
        Channel::Env => {
            let prefix = crate::harness::env::registry_var_prefix(host);
            cmd.env(format!("{prefix}_USERNAME"), USER)
                .env(format!("{prefix}_PASSWORD"), PASSWORD);
        }
        Channel::DockerConfig => {
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
            fs::write(
                docker.join("config.json"),
                serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
            )
            .unwrap();
        }
        Channel::Helper => {
            let bin = helpers.path().join(".helper-bin");
            install_helper(
                &bin,
                "leaky",
                &format!(
                    "read server\necho '{{\"ServerURL\":\"'\"$server\"'\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'"
                ),
            );
            fs::write(
                docker.join("config.json"),
                serde_json::json!({"credHelpers": {host: "leaky"}}).to_string(),
            )
            .unwrap();
            cmd.env("PATH", path_with(&bin));
        }
    }
    let out = run(cmd);
    out.no_panic();
    out
}

fn install_helper(bin: &Path, name: &str, body: &str) {
    fs::create_dir_all(bin).unwrap();
    let path = bin.join(format!("docker-credential-{name}"));
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn path_with(bin: &Path) -> String {
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn a_registry_echoing_credentials_and_escapes_gets_neither_printed_nor_written() {
    for (name, channel) in [
        ("environment", Channel::Env),
        ("Docker config auths", Channel::DockerConfig),
        ("credential helper", Channel::Helper),
    ] {
        let registry = echoing_registry();
        let host = registry.host();
        let p = project_for(&host);
        // Plans (saved, and as a pull-request comment) succeed: nothing to echo, but what
        // they print and write is checked too.
        for args in [
            &["plan", "--out", "plan.json"][..],
            &["-v", "plan", "--format", "markdown"][..],
        ] {
            let out = run_with(&p, &host, &channel, args);
            out.success();
            assert_clean(&format!("{name} {args:?}"), &out, p.path());
        }
        for args in [
            &["apply", "--release-json", "release.json"][..],
            &["apply", "--format", "json", "--diagnostics", "json"][..],
            &["apply", "--diagnostics", "github"][..],
            &["-v", "apply", "plan.json"][..],
        ] {
            let out = run_with(&p, &host, &channel, args);
            out.expect_code(1);
            // The registry's words are there, sanitised: proof the body was shown at all.
            assert!(
                out.stdout.contains("[redacted]") || out.stderr.contains("[redacted]"),
                "{name} {args:?}: the echoed credentials should show as [redacted]\n{out}"
            );
            assert!(
                format!("{}{}", out.stdout, out.stderr).contains("\\x1b"),
                "{name} {args:?}: the escape should be shown escaped\n{out}"
            );
            assert_clean(&format!("{name} {args:?}"), &out, p.path());
        }
        // The credentials did reach the registry: the test exercised the secret.
        assert!(
            registry
                .requests()
                .iter()
                .any(|r| r.header("authorization").is_some()
                    && r.target.starts_with("/v2/acme/oracle/")),
            "{name}: no request carried credentials"
        );
    }
}

#[test]
fn a_failing_credential_helper_is_not_echoed() {
    let registry = echoing_registry();
    let host = registry.host();
    let p = project_for(&host);
    // Outside the project: eigenpub runs no program from the project's folder.
    let helpers = tempfile::tempdir().unwrap();
    let bin = helpers.path().join(".helper-bin");
    install_helper(
        &bin,
        "broken",
        &format!(
            "echo '{{\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\necho \"debug: secret={PASSWORD} \x1b[2J\" >&2\nexit 3"
        ),
    );
    let docker = p.join(".docker-config");
    fs::create_dir_all(&docker).unwrap();
    fs::write(
        docker.join("config.json"),
        serde_json::json!({"credHelpers": {host.clone(): "broken"}}).to_string(),
    )
    .unwrap();
    let mut cmd = p.eigenpub(&["plan", "--diagnostics", "json"]);
    cmd.env("DOCKER_CONFIG", &docker)
        .env("PATH", path_with(&bin));
    let out = run(cmd);
    out.no_panic().expect_code(1);
    assert!(
        out.stderr.contains("docker-credential-broken") && out.stderr.contains("status 3"),
        "the failure should name the helper and its exit status\n{out}"
    );
    assert_clean("failing helper", &out, p.path());
}

#[test]
fn a_hung_credential_helper_is_killed_with_its_children() {
    let p = project_for("127.0.0.1:9");
    // Outside the project: eigenpub runs no program from the project's folder.
    let helpers = tempfile::tempdir().unwrap();
    let bin = helpers.path().join(".helper-bin");
    let pid_file = p.join("helper-child.pid");
    install_helper(
        &bin,
        "hung",
        &format!("sleep 300 &\necho $! > {}\nwait", pid_file.display()),
    );
    let docker = p.join(".docker-config");
    fs::create_dir_all(&docker).unwrap();
    fs::write(
        docker.join("config.json"),
        serde_json::json!({"credsStore": "hung"}).to_string(),
    )
    .unwrap();
    let mut cmd = p.eigenpub(&["plan", "--diagnostics", "json"]);
    cmd.env("DOCKER_CONFIG", &docker)
        .env("PATH", path_with(&bin))
        .env("EIGENPUB_CREDENTIAL_HELPER_TIMEOUT", "1");
    let started = std::time::Instant::now();
    let out = run(cmd);
    out.no_panic().expect_code(1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        out.stderr.contains("did not answer within 1 s"),
        "the timeout should be named\n{out}"
    );
    let pid = fs::read_to_string(&pid_file).expect("the helper started its child");
    assert!(
        dies_within(&pid, std::time::Duration::from_secs(5)),
        "the helper's child {} outlived eigenpub",
        pid.trim()
    );
}

#[test]
fn a_malformed_digest_header_is_an_error_not_output() {
    let registry = Hostile::start(|req: &Seen| {
        if req.method == "HEAD" {
            Reply::new(200).with_header("Docker-Content-Digest", "sha256:../../../etc/passwd")
        } else {
            Reply::new(404)
        }
    });
    let p = project_for(&registry.host());
    let out = p.run(&["plan", "--out", "plan.json"]);
    out.no_panic().expect_code(1);
    assert!(out.stderr.contains("is not a digest"), "{out}");
    assert!(
        !p.exists("plan.json"),
        "no plan may be saved with a digest that is not one"
    );
    assert_clean("malformed digest", &out, p.path());
}

// The digest a registry reports for a pushed manifest was quoted whole in the mismatch
// error: a header of 60,000 characters made one line of 60,000 (registry text is cut to
// 1,000 characters everywhere else), and it was never checked to be a digest.
#[test]
fn a_malformed_digest_reported_for_a_push_is_cut_and_named_as_such() {
    let reported = format!("sha256:{}", "e".repeat(60_000));
    let header = reported.clone();
    let registry = Hostile::start(move |req: &Seen| match req.method.as_str() {
        "HEAD" | "GET" => Reply::new(404),
        "POST" => Reply::new(202).with_header("Location", "/v2/upload/1"),
        "PUT" if req.path().contains("/manifests/") => {
            Reply::new(201).with_header("Docker-Content-Digest", &header)
        }
        _ => Reply::new(201),
    });
    let p = project_for(&registry.host());
    for format in ["text", "json"] {
        let out = p.run(&["apply", "--format", format]);
        out.no_panic().expect_code(1);
        assert!(out.stdout.contains("is not a digest"), "{format}: {out}");
        for channel in [&out.stdout, &out.stderr] {
            assert!(
                !channel.contains(&"e".repeat(1_001)),
                "{format}: the registry's header is shown whole\n{}",
                channel.chars().take(2_000).collect::<String>()
            );
        }
    }
}

// A registry a pull request names answers a plan's reads of an artifact's config and
// spec (by digest) with redirects to an address only the CI machine reaches (a metadata
// service, an internal page). The bytes there were taken as the blobs without checking
// them against their digests, and the Markdown plan showed them in the pull request's
// comment: the config's fields and the "spec" text.
#[test]
fn blobs_read_by_digest_that_do_not_hash_to_it_are_never_shown() {
    let internal = Hostile::start(|req: &Seen| match req.path() {
        "/config" => Reply::new(200).json(&serde_json::json!({"AccessKeyId": "INTERNAL-KEY-ID"})),
        _ => Reply::new(200).with_body("INTERNAL-PAGE-TEXT"),
    });
    let internal_host = internal.host();
    let config = serde_json::json!({"avsName": "oracle"}).to_string();
    let layer = "name: oracle\n";
    let manifest = artifact_manifest(&config, layer, layer.len());
    let registry = Hostile::start(move |req: &Seen| {
        let path = req.path();
        if path.contains("/manifests/") {
            manifest_reply(req, &manifest)
        } else if path.contains("/blobs/") {
            // The config to a JSON document there, the layer to a page.
            let to = if path.ends_with(&crate::harness::sha256_digest(&config)) {
                "config"
            } else {
                "page"
            };
            Reply::new(302).with_header("Location", format!("http://{internal_host}/{to}"))
        } else {
            Reply::new(200)
        }
    });
    let p = project_for(&registry.host());
    // Judged for equivalence first (which reads the config), and not (adopt-equivalent =
    // false: only the review reads it and the layer).
    for adopt in [true, false] {
        let toml = String::from_utf8(p.read("eigenruntime.toml")).unwrap();
        p.write(
            "eigenruntime.toml",
            toml.replace(
                "[defaults]\n",
                &format!("[defaults]\nadopt-equivalent = {adopt}\n"),
            )
            .replace(&format!("adopt-equivalent = {}\n", !adopt), ""),
        );
        let out = p.run(&["plan", "--format", "markdown"]);
        out.no_panic().expect_code(1);
        assert!(
            !internal.requests().is_empty(),
            "the redirects were not followed at all\n{out}"
        );
        for internal_text in ["INTERNAL-KEY-ID", "INTERNAL-PAGE-TEXT"] {
            assert!(
                !out.stdout.contains(internal_text) && !out.stderr.contains(internal_text),
                "adopt-equivalent = {adopt}: {internal_text}: bytes that are not the blob were shown\n{out}"
            );
        }
        let said = out.stderr_flat();
        assert!(
            said.contains("does not hash to that digest, so it is not used"),
            "adopt-equivalent = {adopt}: the error says why\n{out}"
        );
    }
}

// A registry on another machine (one a pull request names) redirected a plan's reads to
// this machine, and eigenpub, in CI, asked whatever listens there (a local service, the
// Docker API, a metadata service at 169.254.169.254 on the link). Not followed now: the
// redirect is the error; a registry on this machine still redirects anywhere.
#[test]
fn a_registry_on_another_machine_cannot_redirect_reads_to_this_one() {
    let ip = crate::auth::clear_text::non_loopback_local_ip();
    let local = Hostile::start(|_: &Seen| Reply::new(200).with_body("LOCAL-SERVICE"));
    let local_host = local.host();
    let registry = Hostile::start_on(ip, move |req: &Seen| {
        if req.path().contains("/manifests/") || req.path().contains("/blobs/") {
            Reply::new(302).with_header("Location", format!("http://{local_host}/x"))
        } else {
            Reply::new(200)
        }
    });
    let host = registry.host();
    let p = project_for(&host);
    let toml = String::from_utf8(p.read("eigenruntime.toml")).unwrap();
    p.write(
        "eigenruntime.toml",
        format!("{toml}\n[registries.\"{host}\"]\nplain-http = true\n"),
    );
    let out = p.run(&["plan", "--format", "markdown"]);
    out.no_panic().expect_code(1);
    assert!(
        registry
            .requests()
            .iter()
            .any(|r| r.path().contains("/manifests/")),
        "the registry was asked\n{out}"
    );
    assert_eq!(
        local.requests().len(),
        0,
        "a redirect from another machine was followed to this one\n{out}"
    );
    let said = out.stderr_flat();
    assert!(
        said.contains(&format!(
            "HTTP 302: the registry redirected the request to http://{}",
            local.host()
        )) && said.contains("it was not followed"),
        "the redirect is the error, named as such\n{out}"
    );
}

// The same for an upload's `Location`: a registry on another machine had apply PUT the
// blobs to a service on this one.
#[test]
fn a_registry_on_another_machine_cannot_send_uploads_to_this_one() {
    let ip = crate::auth::clear_text::non_loopback_local_ip();
    let local = Hostile::start(|_: &Seen| Reply::new(201));
    let local_host = local.host();
    let registry = Hostile::start_on(ip, move |req: &Seen| match req.method.as_str() {
        "HEAD" | "GET" if req.path() != "/v2/" => Reply::new(404),
        "POST" => Reply::new(202).with_header("Location", format!("http://{local_host}/upload")),
        _ => Reply::new(201),
    });
    let host = registry.host();
    let p = project_for(&host);
    let toml = String::from_utf8(p.read("eigenruntime.toml")).unwrap();
    p.write(
        "eigenruntime.toml",
        format!("{toml}\n[registries.\"{host}\"]\nplain-http = true\n"),
    );
    let out = p.run(&["apply"]);
    out.no_panic().expect_code(1);
    assert!(
        registry.requests().iter().any(|r| r.method == "POST"),
        "an upload was started\n{out}"
    );
    assert_eq!(
        local.requests().len(),
        0,
        "an upload went to this machine\n{out}"
    );
    assert!(
        out.stdout.contains("nothing was sent there")
            || out.stderr.contains("nothing was sent there"),
        "the error says why\n{out}"
    );
}

// The review read the spec each tag held (up to 32 MiB a blob) and held every one until
// the comment was made: a registry a pull request names, serving a large spec for each of
// as many artifacts as the project lists, had a plan job hold gigabytes and diff them for
// a comment that shows 65,000 characters. A spec too large to show is not read; no blob
// is read past 4 MiB.
#[test]
fn the_review_reads_no_spec_too_large_to_show() {
    let layer = format!("name: oracle\n{}", "x: 1\n".repeat(2_000_000));
    let config = serde_json::json!({"avsName": "oracle"}).to_string();
    // The layer's true size, and a size that lies (small): the read stops at 4 MiB.
    for size in [layer.len(), 100] {
        let manifest = artifact_manifest(&config, &layer, size);
        let (served_config, served_layer) = (config.clone(), layer.clone());
        let config_digest = crate::harness::sha256_digest(&config);
        let registry = Hostile::start(move |req: &Seen| {
            let path = req.path();
            if path.contains("/manifests/") {
                manifest_reply(req, &manifest)
            } else if path.ends_with(&config_digest) {
                Reply::new(200).with_body(served_config.clone())
            } else if path.contains("/blobs/") {
                Reply::new(200).with_body(served_layer.clone())
            } else {
                Reply::new(200)
            }
        });
        let p = project_for(&registry.host());
        let out = p.run(&["plan", "--format", "markdown"]);
        out.no_panic().expect_code(1);
        let layer_reads = registry
            .requests()
            .iter()
            .filter(|r| {
                r.method == "GET"
                    && r.path().contains("/blobs/")
                    && !r.path().ends_with(&crate::harness::sha256_digest(&config))
            })
            .count();
        if size == 100 {
            let said = out.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                said.contains("the answer is larger than 4096 KiB"),
                "size {size}: the read stopped at the limit, saying so\n{out}"
            );
        } else {
            assert_eq!(
                layer_reads, 0,
                "size {size}: the large spec was read\n{out}"
            );
            assert!(
                out.stdout.contains(&format!(
                    "-(the spec this tag holds is {} bytes: too large to show here)",
                    layer.len()
                )),
                "size {size}: the comment says why the spec is not shown\n{out}"
            );
        }
    }
}

/// An EigenRuntime artifact's manifest naming `config` and the spec `layer` (its size
/// given as `layer_size`, which may lie).
fn artifact_manifest(config: &str, layer: &str, layer_size: usize) -> String {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.eigenruntime.manifest.v1",
        "config": {"mediaType": "application/vnd.eigenruntime.manifest.config.v1+json", "digest": crate::harness::sha256_digest(config), "size": config.len()},
        "layers": [{"mediaType": "text/yaml", "digest": crate::harness::sha256_digest(layer), "size": layer_size}],
    })
    .to_string()
}

/// A registry's answer to a manifest request: `manifest` under its own digest (its
/// headers only, to a `HEAD`).
fn manifest_reply(req: &Seen, manifest: &str) -> Reply {
    Reply::new(200)
        .with_header(
            "Docker-Content-Digest",
            crate::harness::sha256_digest(manifest),
        )
        .with_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .with_body(if req.method == "HEAD" {
            String::new()
        } else {
            manifest.to_string()
        })
}

// ---------------------------------------------------------------------------
// Project files stay in the project
// ---------------------------------------------------------------------------

/// What a file outside the project holds; it must never be shown.
const OUTSIDE_CONTENT: &str = "auths: TOP-SECRET-OUTSIDE-CONTENT";

/// A project in `<tmp>/project` with a secret file next to it, in `<tmp>/secret.yaml`.
fn project_beside_a_secret(spec_path: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("project");
    fs::create_dir_all(&dir).unwrap();
    fs::write(outer.path().join("secret.yaml"), OUTSIDE_CONTENT).unwrap();
    fs::write(
        dir.join("eigenruntime.toml"),
        format!(
            "[defaults]\nregistry = \"oci:out\"\ncreated = \"2024-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"oracle\"\n[avs.operator-sets]\n0 = \"{spec_path}\"\n"
        ),
    )
    .unwrap();
    (outer, dir)
}

fn validate_in(dir: &Path) -> Output {
    let mut cmd = crate::harness::eigenpub(dir);
    cmd.args(["validate", "--format", "json"]);
    let out = run(cmd);
    out.no_panic();
    out
}

/// The diagnostics' codes from `validate --format json` (on standard output).
fn codes(out: &Output) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("validate --format json printed no JSON ({e})\n{out}"));
    doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn spec_paths_escaping_the_project_are_refused_without_reading_them() {
    let outer_secret = |outer: &tempfile::TempDir| outer.path().join("secret.yaml");
    for how in ["dot-dot", "absolute", "symlink", "symlinked folder"] {
        let (outer, dir) = project_beside_a_secret("spec.yaml");
        let path = match how {
            "dot-dot" => "../secret.yaml".to_string(),
            "absolute" => outer_secret(&outer).display().to_string(),
            "symlink" => {
                std::os::unix::fs::symlink(outer_secret(&outer), dir.join("spec.yaml")).unwrap();
                "spec.yaml".to_string()
            }
            _ => {
                std::os::unix::fs::symlink(outer.path(), dir.join("linked")).unwrap();
                "linked/secret.yaml".to_string()
            }
        };
        let toml = fs::read_to_string(dir.join("eigenruntime.toml"))
            .unwrap()
            .replace("\"spec.yaml\"", &format!("{path:?}"));
        fs::write(dir.join("eigenruntime.toml"), toml).unwrap();
        let out = validate_in(&dir);
        out.expect_code(1);
        assert!(
            codes(&out).contains(&"eigenpub::spec::outside-project".to_string()),
            "{how}: {out}"
        );
        assert!(
            !out.stderr.contains("TOP-SECRET") && !out.stdout.contains("TOP-SECRET"),
            "{how}: the outside file's contents were shown\n{out}"
        );
        // Human output names the key's place and says what to do.
        let mut cmd = crate::harness::eigenpub(&dir);
        cmd.arg("validate");
        let human = run(cmd);
        assert!(
            human.stderr.contains("outside the project") && !human.stderr.contains("TOP-SECRET"),
            "{how}: {human}"
        );
    }
}

#[test]
fn a_discovered_spec_symlinked_out_of_the_project_is_refused() {
    let (outer, dir) = project_beside_a_secret("unused.yaml");
    fs::write(
        dir.join("eigenruntime.toml"),
        "[defaults]\nregistry = \"oci:out\"\ncreated = \"2024-01-01T00:00:00Z\"\n\n[[discover]]\nspecs = \"fleet/{avs}/opset-{opset}.yaml\"\n",
    )
    .unwrap();
    fs::create_dir_all(dir.join("fleet/oracle")).unwrap();
    std::os::unix::fs::symlink(
        outer.path().join("secret.yaml"),
        dir.join("fleet/oracle/opset-0.yaml"),
    )
    .unwrap();
    let out = validate_in(&dir);
    out.expect_code(1);
    assert!(
        codes(&out).contains(&"eigenpub::spec::outside-project".to_string()),
        "{out}"
    );
    assert!(!out.stderr.contains("TOP-SECRET"), "{out}");
}

#[test]
fn devices_fifos_and_huge_specs_are_refused_before_reading() {
    // Inside the project: a FIFO (reading it would block forever), a 17 MiB file (sparse),
    // and a link to /dev/zero (outside, and a device).
    let (_outer, dir) = project_beside_a_secret("fifo.yaml");
    let status = std::process::Command::new("mkfifo")
        .arg(dir.join("fifo.yaml"))
        .status()
        .unwrap();
    assert!(status.success());
    let big = fs::File::create(dir.join("big.yaml")).unwrap();
    big.set_len(17 * 1024 * 1024).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.yaml")).unwrap();
    let toml = fs::read_to_string(dir.join("eigenruntime.toml"))
        .unwrap()
        .replace(
            "0 = \"fifo.yaml\"",
            "0 = \"fifo.yaml\"\n1 = \"big.yaml\"\n2 = \"zero.yaml\"",
        );
    fs::write(dir.join("eigenruntime.toml"), toml).unwrap();
    let started = std::time::Instant::now();
    let out = validate_in(&dir);
    out.expect_code(1);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let codes = codes(&out);
    for code in [
        "eigenpub::spec::not-a-file",
        "eigenpub::spec::too-large",
        "eigenpub::spec::outside-project",
    ] {
        assert!(codes.contains(&code.to_string()), "{code} missing\n{out}");
    }
}

#[test]
fn a_project_file_linked_to_dev_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("eigenruntime.toml")).unwrap();
    let started = std::time::Instant::now();
    let out = validate_in(dir.path());
    out.expect_code(1);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(
        out.stdout.contains("not a regular file") || out.stdout.contains("outside"),
        "{out}"
    );
}

#[test]
fn an_absolute_oci_repository_is_written_where_it_is_reported() {
    let p = Project::new();
    let name = format!("eigenpub-it-abs-{}", std::process::id());
    p.write(
        "eigenruntime.toml",
        format!(
            "[defaults]\ncreated = \"2024-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"oracle\"\nrepository = \"oci:/{name}\"\n[avs.operator-sets]\n0 = \"spec.yaml\"\n"
        ),
    );
    p.write("spec.yaml", spec_yaml("oracle", "aggregator", "1"));
    let out = p.run(&["apply"]);
    out.no_panic();
    let root = Path::new("/").join(&name);
    let written_at_root = root.join("index.json").exists();
    let _ = fs::remove_dir_all(&root);
    assert!(
        !p.exists(&name),
        "oci:/{name} was written under the project folder\n{out}"
    );
    // Either it was written at /NAME (as reported), or writing there was refused and the
    // error says so.
    assert!(
        (out.code == 0 && written_at_root && out.stdout.contains(&format!("oci:/{name}")))
            || (out.code == 1
                && format!("{}{}", out.stdout, out.stderr).contains(&format!("/{name}"))),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// One artifact per operator set
// ---------------------------------------------------------------------------

/// A project with `body` after `[defaults]`, and specs `a.yaml`, `b.yaml`.
fn project_with(body: &str) -> Project {
    let p = Project::new();
    p.write(
        "eigenruntime.toml",
        format!("[defaults]\nregistry = \"oci:out\"\ncreated = \"2024-01-01T00:00:00Z\"\n\n{body}"),
    );
    p.write("a.yaml", spec_yaml("oracle", "aggregator", "a"));
    p.write("b.yaml", spec_yaml("oracle", "aggregator", "b"));
    p
}

/// `validate --format json`'s diagnostics: (code, message, help).
fn diagnostics(out: &Output) -> Vec<(String, String, String)> {
    let doc: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("validate --format json printed no JSON ({e})\n{out}"));
    doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap_or_default().to_string(),
                d["message"].as_str().unwrap_or_default().to_string(),
                d["help"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn operator_sets_spelled_another_way_are_errors_saying_what_to_write() {
    for (key, write) in [("00", "0"), ("\"+0\"", "0"), ("\"1.0\"", "1"), ("007", "7")] {
        // Alone, and next to the canonical spelling of the same operator set.
        for with_canonical in [false, true] {
            let extra = if with_canonical {
                format!("{write} = \"a.yaml\"\n")
            } else {
                String::new()
            };
            let p = project_with(&format!(
                "[[avs]]\nname = \"oracle\"\n[avs.operator-sets]\n{extra}{key} = \"b.yaml\"\n"
            ));
            let out = p.run(&["validate", "--format", "json"]);
            out.no_panic().expect_code(1);
            let found = diagnostics(&out);
            assert!(
                found
                    .iter()
                    .any(|(code, _, help)| code == "eigenpub::project::operator-set"
                        && help.contains(&format!("write `{write} = "))),
                "{key}: {found:?}\n{out}"
            );
            // Nothing is published for a project with such a key.
            let apply = p.run(&["apply"]);
            apply.expect_code(1);
            assert!(!p.exists("out"), "{key}: something was published");
        }
    }
    let p = project_with("[[avs]]\nname = \"oracle\"\n[avs.operator-sets]\n-1 = \"a.yaml\"\n");
    let out = p.run(&["validate", "--format", "json"]);
    out.no_panic().expect_code(1);
    assert!(
        diagnostics(&out).iter().any(|(code, message, _)| code
            == "eigenpub::project::operator-set"
            && message.contains("negative")),
        "{out}"
    );
}

#[test]
fn the_same_avs_twice_is_an_error_naming_both_places() {
    let p = project_with(
        "[[avs]]\nname = \"oracle\"\n[avs.operator-sets]\n0 = \"a.yaml\"\n\n[[avs]]\nname = \"oracle\"\n[avs.operator-sets]\n1 = \"b.yaml\"\n",
    );
    let out = p.run(&["validate", "--format", "json"]);
    out.no_panic().expect_code(1);
    assert!(
        diagnostics(&out)
            .iter()
            .any(|(code, _, _)| code == "eigenpub::project::duplicate-avs"),
        "{out}"
    );
    // Human output labels both places.
    let human = p.run(&["validate"]);
    assert!(
        human.stderr.contains("first") && human.stderr.contains("second"),
        "{human}"
    );
}

#[test]
fn an_operator_set_from_avs_and_from_discover_is_an_error_naming_both() {
    let p = project_with(
        "[[avs]]\nname = \"oracle\"\n[avs.operator-sets]\n0 = \"a.yaml\"\n\n[[discover]]\nspecs = \"fleet/{avs}/opset-{opset}.yaml\"\n",
    );
    p.write(
        "fleet/oracle/opset-0.yaml",
        spec_yaml("oracle", "aggregator", "c"),
    );
    let out = p.run(&["validate", "--format", "json"]);
    out.no_panic().expect_code(1);
    let found = diagnostics(&out);
    assert!(
        found.iter().any(
            |(code, message, _)| code == "eigenpub::project::duplicate-operator-set"
                && message.contains("a.yaml")
                && message.contains("fleet/oracle/opset-0.yaml")
        ),
        "{found:?}\n{out}"
    );
    // A discovered file spelled `opset-00` is the same operator set.
    let p = project_with("[[discover]]\nspecs = \"fleet/{avs}/opset-{opset}.yaml\"\n");
    p.write(
        "fleet/oracle/opset-0.yaml",
        spec_yaml("oracle", "aggregator", "c"),
    );
    p.write(
        "fleet/oracle/opset-00.yaml",
        spec_yaml("oracle", "aggregator", "d"),
    );
    let out = p.run(&["validate", "--format", "json"]);
    out.no_panic().expect_code(1);
    assert!(
        diagnostics(&out)
            .iter()
            .any(|(code, _, _)| code == "eigenpub::project::duplicate-operator-set"),
        "{out}"
    );
}

#[test]
fn two_avs_on_one_repository_and_tag_is_an_error_naming_both() {
    let p = project_with(
        "[[avs]]\nname = \"oracle\"\nrepository = \"oci:out/shared\"\ntag = \"v1\"\n[avs.operator-sets]\n0 = \"a.yaml\"\n\n[[avs]]\nname = \"other\"\nrepository = \"oci:out/shared\"\ntag = \"v1\"\n[avs.operator-sets]\n0 = \"b.yaml\"\n",
    );
    let out = p.run(&["validate", "--format", "json"]);
    out.no_panic().expect_code(1);
    assert!(
        diagnostics(&out)
            .iter()
            .any(|(code, message, _)| code == "eigenpub::project::duplicate"
                && message.contains("oracle")
                && message.contains("other")),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// Saved plans are enforced
// ---------------------------------------------------------------------------

/// Applies `plan.json` after `edit`; asserts it is refused as stale and pushes nothing.
#[track_caller]
fn assert_edit_refused(p: &Project, what: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let original = p.read("plan.json");
    let mut doc: serde_json::Value = serde_json::from_slice(&original).unwrap();
    edit(&mut doc);
    p.write("plan.json", serde_json::to_vec_pretty(&doc).unwrap());
    let before = walk(&p.join("out"));
    let out = p.run(&["apply", "plan.json", "--diagnostics", "json"]);
    out.no_panic();
    p.write("plan.json", original);
    assert_eq!(
        out.code, 1,
        "{what}: the edited plan was not refused\n{out}"
    );
    assert!(
        out.stderr.contains("eigenpub::apply::stale-plan"),
        "{what}: refused for another reason\n{out}"
    );
    assert_eq!(
        walk(&p.join("out")),
        before,
        "{what}: something was written\n{out}"
    );
}

#[test]
fn a_saved_plan_edited_in_any_field_is_refused_and_pushes_nothing() {
    let p = project_with(
        "[[avs]]\nname = \"alpha\"\n[avs.operator-sets]\n0 = \"a.yaml\"\n\n[[avs]]\nname = \"beta\"\n[avs.operator-sets]\n0 = \"b.yaml\"\n",
    );
    p.run(&["plan", "--out", "plan.json"]).success();
    let set = |pointer: &'static str, value: serde_json::Value| {
        move |doc: &mut serde_json::Value| *doc.pointer_mut(pointer).unwrap() = value
    };
    assert_edit_refused(&p, "allow_overwrite", set("/allow_overwrite", true.into()));
    assert_edit_refused(&p, "select", set("/select", serde_json::json!(["alpha"])));
    assert_edit_refused(&p, "exclude", set("/exclude", serde_json::json!(["beta"])));
    assert_edit_refused(&p, "an artifact removed", |doc| {
        doc["artifacts"].as_array_mut().unwrap().pop();
    });
    assert_edit_refused(
        &p,
        "digest",
        set(
            "/artifacts/0/digest",
            format!("sha256:{}", "0".repeat(64)).into(),
        ),
    );
    assert_edit_refused(&p, "action", set("/artifacts/0/action", "unchanged".into()));
    assert_edit_refused(
        &p,
        "observed_digest",
        set(
            "/artifacts/0/observed_digest",
            format!("sha256:{}", "1".repeat(64)).into(),
        ),
    );
    assert_edit_refused(&p, "mutable", set("/artifacts/0/mutable", true.into()));
    assert_edit_refused(&p, "spec", set("/artifacts/0/spec", "b.yaml".into()));
    assert_edit_refused(&p, "tag", set("/artifacts/0/tag", "other".into()));
    assert_edit_refused(&p, "summary", set("/summary/create", 0.into()));
    assert_edit_refused(
        &p,
        "inputs_hash",
        set("/inputs_hash", format!("sha256:{}", "2".repeat(64)).into()),
    );
    assert_edit_refused(&p, "plan_hash removed", |doc| {
        doc.as_object_mut().unwrap().remove("plan_hash");
    });
    // The unedited plan applies, and applies again (every tag already holds what it wanted).
    p.run(&["apply", "plan.json"]).success();
    p.run(&["apply", "plan.json"]).success();
}

#[test]
fn a_refused_overwrite_stays_refused_when_the_saved_plan_says_allow_overwrite() {
    let p = project_with("[[avs]]\nname = \"alpha\"\n[avs.operator-sets]\n0 = \"a.yaml\"\n");
    p.run(&["apply"]).success();
    let index = p.read("out/alpha/index.json");
    // Same tag, other content: the plan refuses the overwrite.
    p.write("a.yaml", spec_yaml("oracle", "aggregator", "changed"));
    let out = p.run(&["plan", "--format", "json", "--out", "plan.json"]);
    assert!(out.stdout.contains("\"refused\""), "{out}");
    assert_edit_refused(&p, "allow_overwrite on a refused plan", |doc| {
        doc["allow_overwrite"] = true.into();
    });
    assert_eq!(
        p.read("out/alpha/index.json"),
        index,
        "the immutable tag moved"
    );
}

// ---------------------------------------------------------------------------
// Layouts under concurrency
// ---------------------------------------------------------------------------

#[test]
fn two_concurrent_applies_with_different_content_never_both_push_an_immutable_tag() {
    let shared = tempfile::tempdir().unwrap();
    let projects: Vec<Project> = ["one", "two"]
        .iter()
        .map(|seed| {
            let p = Project::new();
            p.write("spec.yaml", spec_yaml("oracle", "aggregator", seed));
            p
        })
        .collect();
    let mut both_raced = 0;
    for round in 0..8 {
        // Each round publishes into a fresh layout folder, shared by the two projects.
        for p in &projects {
            p.write(
                "eigenruntime.toml",
                format!(
                    "[defaults]\nregistry = \"oci:{}\"\ncreated = \"2024-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"oracle\"\n[avs.operator-sets]\n0 = \"spec.yaml\"\n",
                    shared.path().join(format!("ROUND{round}")).display()
                ),
            );
        }
        let outputs: Vec<Output> = std::thread::scope(|scope| {
            let handles: Vec<_> = projects
                .iter()
                .map(|p| scope.spawn(|| p.run(&["apply", "--format", "json"])))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let pushed: Vec<String> = outputs
            .iter()
            .filter(|o| o.code == 0)
            .map(|o| {
                let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
                doc["artifacts"][0]["digest"].as_str().unwrap().to_string()
            })
            .collect();
        for o in &outputs {
            o.no_panic();
            assert!(o.code == 0 || o.code == 1, "{o}");
            if o.code == 1 {
                assert!(
                    o.stdout.contains("eigenpub::layout::tag-moved")
                        || o.stdout.contains("\"refused\"")
                        || o.stderr.contains("refused-overwrite"),
                    "round {round}: the losing run should say why\n{o}"
                );
                if o.stdout.contains("eigenpub::layout::tag-moved") {
                    both_raced += 1;
                }
            }
        }
        assert_eq!(
            pushed.len(),
            1,
            "round {round}: exactly one run may publish the tag\n{}\n{}",
            outputs[0],
            outputs[1]
        );
        let index: serde_json::Value = serde_json::from_slice(
            &fs::read(
                shared
                    .path()
                    .join(format!("ROUND{round}/oracle/index.json")),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            index["manifests"][0]["digest"].as_str(),
            Some(pushed[0].as_str()),
            "round {round}: the tag holds what the successful run reported"
        );
    }
    eprintln!("rounds in which both runs planned before either wrote: {both_raced}");
}

// ---------------------------------------------------------------------------
// Login and credential variable names
// ---------------------------------------------------------------------------

#[test]
fn login_writes_through_a_symlinked_docker_config() {
    let registry = Hostile::start(|req: &Seen| {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        );
        if req.header("authorization") == Some(expected.as_str()) {
            Reply::new(200)
        } else {
            Reply::new(401).with_header("WWW-Authenticate", "Basic realm=\"r\"")
        }
    });
    let p = Project::new();
    let docker = p.join("docker");
    let dotfiles = p.join("dotfiles");
    fs::create_dir_all(&docker).unwrap();
    fs::create_dir_all(&dotfiles).unwrap();
    fs::write(
        dotfiles.join("docker.json"),
        r#"{"auths": {"other.example": {"auth": "eDp5"}}}"#,
    )
    .unwrap();
    std::os::unix::fs::symlink("../dotfiles/docker.json", docker.join("config.json")).unwrap();
    let mut cmd = p.eigenpub(&["login", &registry.host(), "-u", USER, "--password-stdin"]);
    cmd.env("DOCKER_CONFIG", &docker);
    let out = crate::harness::run_with_stdin(cmd, &format!("{PASSWORD}\n"));
    out.no_panic().success();
    let link = fs::symlink_metadata(docker.join("config.json")).unwrap();
    assert!(
        link.file_type().is_symlink(),
        "login replaced the symlinked config.json with a file"
    );
    let written: serde_json::Value =
        serde_json::from_slice(&fs::read(dotfiles.join("docker.json")).unwrap()).unwrap();
    assert!(
        written["auths"][registry.host()]["auth"].is_string()
            && written["auths"]["other.example"]["auth"] == "eDp5",
        "the linked file holds the new login and keeps the old one: {written}"
    );
}

#[test]
fn registries_sharing_a_credential_variable_name_are_an_error_before_any_request() {
    let p = project_with(
        "[[avs]]\nname = \"alpha\"\nrepository = \"my-reg.io/acme/alpha\"\n[avs.operator-sets]\n0 = \"a.yaml\"\n\n[[avs]]\nname = \"beta\"\nrepository = \"my.reg.io/acme/beta\"\n[avs.operator-sets]\n0 = \"b.yaml\"\n",
    );
    // With the shared variables set, both hosts would get them: refused before any
    // connection (these hosts are never contacted).
    let mut cmd = p.eigenpub(&["plan", "--diagnostics", "json"]);
    cmd.env("EIGENPUB_REGISTRY_MY_REG_IO_USERNAME", USER)
        .env("EIGENPUB_REGISTRY_MY_REG_IO_PASSWORD", PASSWORD);
    let out = run(cmd);
    out.no_panic().expect_code(1);
    assert!(
        out.stderr
            .contains("eigenpub::registry::shared-credentials")
            && out.stderr.contains("my-reg.io")
            && out.stderr.contains("my.reg.io"),
        "{out}"
    );
    assert!(!out.stderr.contains(PASSWORD) && !out.stdout.contains(PASSWORD));
}

// ---------------------------------------------------------------------------
// Where credentials may go
// ---------------------------------------------------------------------------

/// A token service that records who asked, and answers with a token.
fn token_service_on(ip: std::net::IpAddr) -> Hostile {
    Hostile::start_on(ip, |_req: &Seen| {
        Reply::new(200)
            .with_header("Content-Type", "application/json")
            .with_body(r#"{"token":"tok-from-the-wrong-place-0123456789","expires_in":300}"#)
    })
}

/// Runs `plan` against `host` with the secret in the environment.
fn plan_with_env_credentials(p: &Project, host: &str, extra_args: &[&str]) -> Output {
    let mut args = vec!["plan", "--diagnostics", "json"];
    args.extend_from_slice(extra_args);
    let out = run_with(p, host, &Channel::Env, &args);
    assert_clean("plan", &out, p.path());
    out
}

#[track_caller]
fn assert_no_credentials_reached(server: &Hostile, what: &str) {
    let carrying: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| {
            r.header("authorization").is_some() || r.body.windows(8).any(|w| w == b"password")
        })
        .collect();
    assert!(
        carrying.is_empty(),
        "{what} received credentials: {carrying:?}"
    );
}

#[test]
fn a_realm_spelled_with_an_upper_case_http_scheme_gets_no_credentials() {
    let ip = crate::auth::clear_text::non_loopback_local_ip();
    let tokens = token_service_on(ip);
    let realm = format!("HTTP://{}/token", tokens.host());
    let registry = Hostile::start(move |req: &Seen| {
        if req.header("authorization").is_none() {
            Reply::new(401).with_header(
                "WWW-Authenticate",
                format!("Bearer realm=\"{realm}\",service=\"hostile\""),
            )
        } else {
            Reply::new(404)
        }
    });
    let p = project_for(&registry.host());
    let out = plan_with_env_credentials(&p, &registry.host(), &[]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("refusing") && out.stderr.contains("plain HTTP"),
        "{out}"
    );
    assert_no_credentials_reached(&tokens, "a plain-HTTP token service on another address");
    assert!(tokens.requests().is_empty(), "nothing at all is sent there");
}

#[test]
fn a_plain_http_registry_on_another_machine_gets_no_token_fetched_with_credentials() {
    // The registry is on this machine's non-loopback address with plain-http = true; its
    // token service is on loopback (where credentials may go over plain HTTP). The
    // credentials must not be sent to the token service for a token the registry could not
    // be given anyway.
    let tokens = token_service_on("127.0.0.1".parse().unwrap());
    let realm = format!("http://{}/token", tokens.host());
    let ip = crate::auth::clear_text::non_loopback_local_ip();
    let registry = Hostile::start_on(ip, move |_req: &Seen| {
        Reply::new(401).with_header(
            "WWW-Authenticate",
            format!("Bearer realm=\"{realm}\",service=\"hostile\""),
        )
    });
    let host = registry.host();
    let p = project_for(&host);
    let toml = String::from_utf8(p.read("eigenruntime.toml")).unwrap()
        + &format!("\n[registries.\"{host}\"]\nplain-http = true\n");
    p.write("eigenruntime.toml", toml);
    let out = plan_with_env_credentials(&p, &host, &[]);
    out.expect_code(1);
    assert!(out.stderr.contains("plain HTTP"), "{out}");
    assert_no_credentials_reached(&tokens, "the token service");
    assert_no_credentials_reached(&registry, "the plain-HTTP registry");
}

#[test]
fn a_challenge_from_a_redirect_target_is_not_learned() {
    // An open registry redirects a tag to another origin, which challenges with its own
    // realm: the credentials must not go to that realm (nor to the redirect target).
    let tokens = token_service_on("127.0.0.1".parse().unwrap());
    let realm = format!("http://{}/token", tokens.host());
    let elsewhere = Hostile::start(move |_req: &Seen| {
        Reply::new(401).with_header(
            "WWW-Authenticate",
            format!("Bearer realm=\"{realm}\",service=\"elsewhere\""),
        )
    });
    let target = format!("http://{}", elsewhere.host());
    let registry = Hostile::start(move |req: &Seen| {
        Reply::new(307).with_header("Location", format!("{target}{}", req.target))
    });
    let p = project_for(&registry.host());
    let out = plan_with_env_credentials(&p, &registry.host(), &[]);
    out.expect_code(1);
    assert_no_credentials_reached(&tokens, "the redirect target's token service");
    assert_no_credentials_reached(&elsewhere, "the redirect target");
    assert!(
        !elsewhere.requests().is_empty(),
        "the redirect was followed (the test exercised it)"
    );
}

#[test]
fn basic_credentials_are_not_carried_across_a_redirect() {
    let elsewhere = Hostile::start(|_req: &Seen| Reply::new(404));
    let target = format!("http://{}", elsewhere.host());
    let registry = Hostile::start(move |req: &Seen| {
        if req.header("authorization").is_none() {
            Reply::new(401).with_header("WWW-Authenticate", "Basic realm=\"r\"")
        } else {
            Reply::new(307).with_header("Location", format!("{target}{}", req.target))
        }
    });
    let p = project_for(&registry.host());
    let _ = plan_with_env_credentials(&p, &registry.host(), &[]);
    assert!(
        !elsewhere.requests().is_empty(),
        "the redirect was followed"
    );
    assert_no_credentials_reached(&elsewhere, "the redirect target");
}

#[test]
fn a_project_file_lock_or_schema_linked_out_of_the_project_is_not_quoted() {
    // A file outside that a TOML or JSON parser would reject, quoting its lines.
    let outer = tempfile::tempdir().unwrap();
    let secret = outer.path().join("config.json");
    fs::write(
        &secret,
        format!("{{\"auths\": \"{OUTSIDE_CONTENT}\"\n  [broken"),
    )
    .unwrap();
    let dir = outer.path().join("project");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("spec.yaml"),
        spec_yaml("oracle", "aggregator", "1"),
    )
    .unwrap();
    let toml = "[defaults]\nregistry = \"oci:out\"\ncreated = \"2024-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"oracle\"\n[avs.operator-sets]\n0 = \"spec.yaml\"\n";
    for (what, setup) in [("project file", 0), ("lock file", 1), ("schema file", 2)] {
        let _ = fs::remove_file(dir.join("eigenruntime.toml"));
        let _ = fs::remove_file(dir.join("eigenruntime.lock"));
        match setup {
            0 => std::os::unix::fs::symlink(&secret, dir.join("eigenruntime.toml")).unwrap(),
            1 => {
                fs::write(dir.join("eigenruntime.toml"), toml).unwrap();
                std::os::unix::fs::symlink(&secret, dir.join("eigenruntime.lock")).unwrap();
            }
            _ => fs::write(
                dir.join("eigenruntime.toml"),
                toml.replace(
                    "[defaults]\n",
                    "[defaults]\nschema = \"https://example.invalid/s.json\"\n",
                ) + "\n[schemas]\n\"https://example.invalid/s.json\" = \"../config.json\"\n",
            )
            .unwrap(),
        }
        let mut cmd = crate::harness::eigenpub(&dir);
        cmd.arg("validate");
        let out = run(cmd);
        out.no_panic();
        assert_eq!(out.code, 1, "{what}: {out}");
        assert!(
            !out.stdout.contains("TOP-SECRET") && !out.stderr.contains("TOP-SECRET"),
            "{what}: the outside file was quoted\n{out}"
        );
        assert!(out.stderr.contains("outside"), "{what}: {out}");
        assert!(
            !out.stderr.contains("eigenpub::project::operator-set"),
            "{what}: the project file itself is wrong\n{out}"
        );
    }
}

#[test]
fn a_signed_upload_url_in_a_connection_error_loses_its_query() {
    // The registry hands out an upload Location on a port where nothing listens, signed
    // like an S3 URL: the connection error names the URL, without its signature.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let registry = Hostile::start(move |req: &Seen| {
        if req.method == "POST" {
            Reply::new(202).with_header(
                "Location",
                format!(
                    "http://127.0.0.1:{closed}/upload?X-Amz-Credential=AKIA-SIG-LEAK&X-Amz-Signature=SIG-LEAK"
                ),
            )
        } else {
            Reply::new(404)
        }
    });
    let p = project_for(&registry.host());
    for args in [&["apply"][..], &["apply", "--format", "json"][..]] {
        let out = p.run(args);
        out.no_panic().expect_code(1);
        assert!(
            format!("{}{}", out.stdout, out.stderr).contains(&format!("127.0.0.1:{closed}")),
            "the failing upload should be named\n{out}"
        );
        assert_clean(&format!("{args:?}"), &out, p.path());
    }
}

#[test]
fn a_layout_committed_with_links_out_shows_nothing_of_their_targets() {
    let (outer, dir) = project_beside_a_secret("spec.yaml");
    fs::write(
        dir.join("spec.yaml"),
        spec_yaml("oracle", "aggregator", "1"),
    )
    .unwrap();
    let mut cmd = crate::harness::eigenpub(&dir);
    cmd.arg("apply");
    run(cmd).success();
    // The tag's spec layer becomes a link to a file outside (as a pull request could
    // commit it), and the spec changes so that the Markdown plan shows what the tag holds.
    let blob_path = |digest: &str| {
        dir.join(format!(
            "out/oracle/blobs/sha256/{}",
            digest.trim_start_matches("sha256:")
        ))
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("out/oracle/index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(blob_path(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let blob = blob_path(manifest["layers"][0]["digest"].as_str().unwrap());
    fs::remove_file(&blob).unwrap();
    std::os::unix::fs::symlink(outer.path().join("secret.yaml"), &blob).unwrap();
    fs::write(
        dir.join("spec.yaml"),
        spec_yaml("oracle", "aggregator", "2"),
    )
    .unwrap();
    let mut cmd = crate::harness::eigenpub(&dir);
    cmd.args(["plan", "--format", "markdown", "--allow-overwrite"]);
    let out = run(cmd);
    out.no_panic();
    assert!(
        !out.stdout.contains("TOP-SECRET") && !out.stderr.contains("TOP-SECRET"),
        "a linked blob's target was shown\n{out}"
    );
    // index.json linked to /dev/zero: refused at once, not read forever.
    fs::remove_file(dir.join("out/oracle/index.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("out/oracle/index.json")).unwrap();
    let started = std::time::Instant::now();
    let mut cmd = crate::harness::eigenpub(&dir);
    cmd.arg("plan");
    let out = run(cmd);
    out.no_panic().expect_code(1);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(
        out.stderr.contains("not a regular file") || out.stderr.contains("outside"),
        "{out}"
    );
}

#[test]
fn the_file_size_limit_is_set_by_the_environment_not_the_project() {
    let (_outer, dir) = project_beside_a_secret("big.yaml");
    let big =
        spec_yaml("oracle", "aggregator", "1") + &format!("# {}\n", "x".repeat(2 * 1024 * 1024));
    fs::write(dir.join("big.yaml"), big).unwrap();
    let validate = |limit: Option<&str>| {
        let mut cmd = crate::harness::eigenpub(&dir);
        cmd.args(["validate", "--format", "json"]);
        if let Some(l) = limit {
            cmd.env("EIGENPUB_MAX_FILE_MIB", l);
        }
        let out = run(cmd);
        out.no_panic();
        out
    };
    validate(None).success();
    let out = validate(Some("1"));
    out.expect_code(1);
    assert!(
        codes(&out).contains(&"eigenpub::spec::too-large".to_string()),
        "{out}"
    );
}

#[test]
fn temporary_files_an_interrupted_run_left_in_a_layout_are_removed_by_the_next_write() {
    let p = project_with("[[avs]]\nname = \"alpha\"\n[avs.operator-sets]\n0 = \"a.yaml\"\n");
    p.run(&["apply"]).success();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let leave = |rel: &str, modified| {
        let f = fs::File::create(p.join(rel)).unwrap();
        f.set_modified(modified).unwrap();
    };
    leave("out/alpha/.eigenpub-left1", old);
    leave("out/alpha/blobs/sha256/.eigenpub-left2", old);
    leave(
        "out/alpha/.eigenpub-in-progress",
        std::time::SystemTime::now(),
    );
    p.write("a.yaml", spec_yaml("oracle", "aggregator", "next"));
    p.run(&["apply", "--allow-overwrite"]).success();
    assert!(!p.exists("out/alpha/.eigenpub-left1"));
    assert!(!p.exists("out/alpha/blobs/sha256/.eigenpub-left2"));
    assert!(
        p.exists("out/alpha/.eigenpub-in-progress"),
        "a young temporary file may belong to a run in progress"
    );
}
