//! Trust, round three (issue 19), for what apply may do and what output may carry: a saved
//! plan (a pull-request job's artifact, which its author can write) never grants more than
//! apply's own command line, and no string from outside (a folder name in the project
//! file, a registry's error text) can start a GitHub workflow command in a log, hide part
//! of the pull-request comment, or reach a terminal as an escape sequence.

use crate::harness::{Project, Registry, sha256_digest, skopeo_raw, spec_yaml};
use crate::hostile::{Hostile, Reply, Seen};

// ---------------------------------------------------------------------------
// A saved plan narrows; it never grants an overwrite
// ---------------------------------------------------------------------------

/// A project with one AVS (`oracle`, operator set 0, `a.yaml`) published to `registry`.
fn oracle_on(registry: &Registry) -> Project {
    let p = Project::new();
    p.write(
        "eigenruntime.toml",
        format!(
            "[defaults]\nregistry = \"{}/acme\"\ncreated = \"2025-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"oracle\"\nversion = 1\n[avs.operator-sets]\n0 = \"a.yaml\"\n",
            registry.host()
        ),
    );
    p.write("a.yaml", spec_yaml("oracle", "aggregator", "image-1"));
    p
}

#[test]
fn a_saved_plan_made_with_allow_overwrite_does_not_move_an_immutable_tag() {
    let registry = Registry::start();
    let p = oracle_on(&registry);
    p.run(&["apply"]).success();
    let reference = format!("{}/acme/oracle:opset-0-v1", registry.host());
    let published = sha256_digest(skopeo_raw(&reference).expect("the tag was pushed"));

    // The pull request changes the spec and its job saves a genuine plan made with
    // --allow-overwrite (every hash right: eigenpub computed them).
    p.write("a.yaml", spec_yaml("oracle", "aggregator", "image-2"));
    p.run(&["plan", "--allow-overwrite", "--out", "plan.json"])
        .no_panic();
    let saved: serde_json::Value = serde_json::from_slice(&p.read("plan.json")).unwrap();
    assert_eq!(saved["allow_overwrite"], true);
    assert_eq!(saved["artifacts"][0]["action"], "update", "{saved}");

    // The release job applies it without --allow-overwrite: refused, nothing pushed.
    registry.reset_requests();
    let out = p.run(&["apply", "plan.json", "--diagnostics", "json"]);
    out.no_panic().expect_code(1);
    assert!(
        out.stderr.contains("eigenpub::apply::saved-plan-overwrite")
            && out.stderr.contains(&reference)
            && out
                .stderr
                .contains("eigenpub apply --allow-overwrite plan.json"),
        "the refusal names the tag and the flag to add\n{out}"
    );
    let writes: Vec<_> = registry
        .requests()
        .into_iter()
        .filter(|(method, _, _)| method != "GET" && method != "HEAD")
        .collect();
    assert_eq!(writes, vec![], "the refused apply wrote to the registry");
    assert_eq!(
        sha256_digest(skopeo_raw(&reference).unwrap()),
        published,
        "the immutable tag moved"
    );

    // With the permission on apply's own command line, the reviewed plan applies.
    p.run(&["apply", "--allow-overwrite", "plan.json"])
        .success();
    assert_eq!(
        sha256_digest(skopeo_raw(&reference).unwrap()),
        saved["artifacts"][0]["digest"].as_str().unwrap(),
        "the reviewed overwrite landed"
    );
}

#[test]
fn a_saved_plan_refusing_an_overwrite_is_not_turned_into_an_update_by_the_command_line() {
    let registry = Registry::start();
    let p = oracle_on(&registry);
    p.run(&["apply"]).success();
    let reference = format!("{}/acme/oracle:opset-0-v1", registry.host());
    let published = sha256_digest(skopeo_raw(&reference).unwrap());
    p.write("a.yaml", spec_yaml("oracle", "aggregator", "image-2"));
    // The reviewed plan showed `refused`: --allow-overwrite at apply does not turn it into
    // an update nobody reviewed.
    p.run(&["plan", "--out", "plan.json"]).no_panic();
    let out = p.run(&["apply", "--allow-overwrite", "plan.json"]);
    out.no_panic().expect_code(1);
    assert!(out.stderr.contains("eigenpub::apply::stale-plan"), "{out}");
    assert_eq!(sha256_digest(skopeo_raw(&reference).unwrap()), published);
}

#[test]
fn the_command_line_selection_narrows_a_saved_plan() {
    let registry = Registry::start();
    let p = oracle_on(&registry);
    p.write(
        "eigenruntime.toml",
        String::from_utf8(p.read("eigenruntime.toml")).unwrap()
            + "\n[[avs]]\nname = \"dice\"\nversion = 1\n[avs.operator-sets]\n0 = \"b.yaml\"\n",
    );
    p.write("b.yaml", spec_yaml("dice", "aggregator", "image-1"));
    p.run(&["plan", "--out", "plan.json"]).no_panic();
    p.run(&["apply", "plan.json", "--select", "dice"]).success();
    let host = registry.host();
    assert!(skopeo_raw(&format!("{host}/acme/dice:opset-0-v1")).is_some());
    assert!(
        skopeo_raw(&format!("{host}/acme/oracle:opset-0-v1")).is_none(),
        "an artifact outside the command line's selection was pushed"
    );
    // The rest of the reviewed plan applies later (the pushed tag holds what was planned).
    p.run(&["apply", "plan.json"]).success();
    assert!(skopeo_raw(&format!("{host}/acme/oracle:opset-0-v1")).is_some());
}

// ---------------------------------------------------------------------------
// No outside string starts a workflow command, hides part of a comment or reaches a
// terminal as an escape sequence
// ---------------------------------------------------------------------------

/// Text meant to break out: an escape sequence (a terminal title), a line that starts a
/// workflow command (modern and legacy form, after whitespace the runner trims), and the
/// end of the Markdown comment's `<summary>` followed by an HTML comment.
const BREAKOUT: &str = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{202e}\u{85}\n::error::pwned\n \u{a0}::add-mask::x\nmid ##[error]legacy\n</code></summary><!--";

/// The lines of `text` that the Actions runner would take for a workflow command: one that
/// starts with `::` after leading whitespace, or holds `##[` anywhere (lines split as .NET's
/// `ReadLine` does).
fn commands_in(text: &str) -> Vec<String> {
    text.split(['\n', '\r'])
        .filter(|line| line.trim_start().starts_with("::") || line.contains("##["))
        .map(str::to_string)
        .collect()
}

/// Panics when `text` (one output channel) carries a raw escape or a workflow command.
#[track_caller]
fn assert_inert(what: &str, text: &str) {
    assert!(
        !text.contains(['\u{1b}', '\u{7}', '\u{202e}', '\u{85}']),
        "{what}: a raw escape sequence, override or C1 control got through\n{text}"
    );
    let commands = commands_in(text);
    assert!(
        commands.is_empty(),
        "{what}: these lines start workflow commands: {commands:?}\n{text}"
    );
}

/// Outside the fenced code blocks (where HTML is text), a Markdown plan has exactly its
/// marker as a comment and closes every element it opens.
#[track_caller]
fn assert_markdown_closed(md: &str, details: usize) {
    let outside: String = md.split("```").step_by(2).collect();
    assert_eq!(outside.matches("<!--").count(), 1, "{md}");
    for (open, close) in [
        ("<details>", "</details>"),
        ("<summary>", "</summary>"),
        ("<code>", "</code>"),
    ] {
        assert_eq!(outside.matches(open).count(), details, "{open}\n{md}");
        assert_eq!(outside.matches(close).count(), details, "{close}\n{md}");
    }
}

#[test]
fn an_oci_folder_name_cannot_break_out_of_any_output() {
    let p = Project::new();
    let folder = format!("out/x{BREAKOUT}y");
    let toml = |extra: &str| {
        format!(
            "[defaults]\nregistry = {}\ncreated = \"2025-01-01T00:00:00Z\"\n{extra}\n[[avs]]\nname = \"oracle\"\nversion = 1\n[avs.operator-sets]\n0 = \"a.yaml\"\n",
            toml_string(&format!("oci:{folder}"))
        )
    };
    // The spec's path too (a file whose name is the breakout; its `/` make folders).
    let spec = format!("specs/a{BREAKOUT}.yaml");
    let toml = |extra: &str| toml(extra).replace("\"a.yaml\"", &toml_string(&spec));
    p.write("eigenruntime.toml", toml(""));
    p.write(&spec, spec_yaml("oracle", "aggregator", "image-1"));
    for (what, args) in [
        ("validate -v", &["validate", "-v"][..]),
        ("validate json", &["validate", "--format", "json"]),
        ("plan", &["plan", "-v"]),
        (
            "plan json",
            &["plan", "--format", "json", "--out", "plan.json"],
        ),
        ("plan markdown", &["plan", "--format", "markdown", "-v"]),
        (
            "apply",
            &["apply", "plan.json", "--release-json", "release.json"],
        ),
    ] {
        let out = p.run(args);
        out.no_panic();
        assert_eq!(out.code, 0, "{what}\n{out}");
        assert_inert(&format!("{what}: stdout"), &out.stdout);
        assert_inert(&format!("{what}: stderr"), &out.stderr);
    }
    for file in ["plan.json", "release.json"] {
        let text = String::from_utf8(p.read(file)).unwrap();
        assert_inert(file, &text);
        // Still the same data: the escapes are JSON's.
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(doc.to_string().contains("::error::pwned"), "{file}: {doc}");
    }
    // The tag was written where the project said, folder name and all.
    assert!(p.join(&folder).join("oracle").join("index.json").is_file());

    // An update shows a diff in a <details> block, summary named after the repository.
    p.write("eigenruntime.toml", toml("mutable-tags = [\"*\"]\n"));
    p.write(&spec, spec_yaml("oracle", "aggregator", "image-2"));
    let out = p.run(&["plan", "--format", "markdown"]);
    out.no_panic().success();
    assert!(out.stdout.contains("<details>"), "{out}");
    assert_inert("markdown update: stdout", &out.stdout);
    assert_markdown_closed(&out.stdout, 1);
    let out = p.run(&["apply"]);
    out.no_panic().success();
    assert_inert("apply update: stdout", &out.stdout);
}

/// A TOML basic string holding `s` (escapes as TOML wants them).
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[test]
fn a_registry_error_cannot_start_a_workflow_command_or_add_lines() {
    // The tag is absent; every write is refused with the breakout text, in the JSON error
    // body and in a plain-text body.
    for json in [true, false] {
        let registry = Hostile::start(move |req: &Seen| {
            if req.method == "HEAD" || req.method == "GET" {
                return Reply::new(404);
            }
            let reply = Reply::new(400);
            if json {
                reply
                    .json(&serde_json::json!({"errors": [{"code": "DENIED", "message": BREAKOUT}]}))
            } else {
                reply
                    .with_header("Content-Type", "text/plain")
                    .with_body(format!("refused\n{BREAKOUT}\nfake: pushed everything"))
            }
        });
        let p = Project::new();
        p.write(
            "eigenruntime.toml",
            format!(
                "[defaults]\nregistry = \"{}/acme\"\ncreated = \"2025-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"oracle\"\nversion = 1\n[avs.operator-sets]\n0 = \"a.yaml\"\n",
                registry.host()
            ),
        );
        p.write("a.yaml", spec_yaml("oracle", "aggregator", "image-1"));
        for diagnostics in ["human", "json", "github"] {
            for format in ["text", "json"] {
                let what =
                    format!("json body {json}, --diagnostics {diagnostics}, --format {format}");
                let out = p.run(&["apply", "--format", format, "--diagnostics", diagnostics]);
                out.no_panic().expect_code(1);
                assert!(
                    out.stdout.contains("pwned") || out.stderr.contains("pwned"),
                    "{what}: the registry's text is shown\n{out}"
                );
                assert_inert(&format!("{what}: stdout"), &out.stdout);
                if diagnostics == "github" {
                    // Its own annotations are commands, one line each; nothing else is.
                    for line in commands_in(&out.stderr) {
                        assert!(
                            // The title is the code, escaped as a property (`:` is %3A).
                            line.starts_with("::error title=eigenpub%3A%3A")
                                || line.starts_with("::warning title=eigenpub%3A%3A")
                                || line.starts_with("::error file=")
                                || line.starts_with("::warning file="),
                            "{what}: a command eigenpub did not write: {line}\n{out}"
                        );
                        assert!(!line.contains("##["), "{what}: {line}");
                    }
                    assert!(!out.stderr.contains('\u{1b}'), "{what}\n{out}");
                } else {
                    assert_inert(&format!("{what}: stderr"), &out.stderr);
                }
                // The registry's text adds no line of its own.
                for channel in [&out.stdout, &out.stderr] {
                    assert!(
                        !channel.lines().any(|l| l.starts_with("fake: pushed")),
                        "{what}: the registry added a line\n{out}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Secrets echoed in any encoding are redacted
// ---------------------------------------------------------------------------

/// A password with the characters encoders treat differently: `&`, `<`, `>` (Go's JSON),
/// a space (form encoding), `/` (`\/` in some JSON), non-ASCII (Python's `\u00f6`).
const ODD_PASSWORD: &str = "Tr0ub4dor & <3> hörse/battery";
const ODD_USER: &str = "release-bot";

/// The base64 characters of `encoded` (the encoding of `prefix + secret + …`) that depend
/// on the secret's bytes alone.
fn secret_part_of_base64(encoded: &str, prefix_len: usize, secret_len: usize) -> String {
    let first = (8 * prefix_len).div_ceil(6);
    let end = 8 * (prefix_len + secret_len) / 6;
    encoded[first..end].to_string()
}

/// Every way the registry below echoes the password, as it writes them.
fn echoes() -> Vec<(String, String)> {
    use base64::Engine as _;
    let std = base64::engine::general_purpose::STANDARD;
    let pw = ODD_PASSWORD;
    let go_json = serde_json::to_string(pw)
        .unwrap()
        .replace('&', "\\u0026")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e");
    let python_json = "Tr0ub4dor \\u0026 <3> h\\u00f6rse\\/battery".to_string();
    let lower_percent: String = pw
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else if b == b' ' {
                "+".to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect();
    let html = pw
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&#62;");
    let mut echoes = vec![
        (
            "Go's JSON".to_string(),
            go_json.trim_matches('"').to_string(),
        ),
        ("Python's JSON".to_string(), python_json),
        (
            "form encoding, lower-case escapes".to_string(),
            lower_percent,
        ),
        ("HTML references".to_string(), html),
    ];
    for prefix in ["x", "xy", "{\"password\":\""] {
        let encoded = std.encode(format!("{prefix}{pw}\"}}"));
        echoes.push((
            format!("base64 after {} bytes", prefix.len()),
            secret_part_of_base64(&encoded, prefix.len(), pw.len()),
        ));
    }
    echoes
}

#[test]
fn a_password_echoed_in_any_encoding_is_redacted() {
    use base64::Engine as _;
    let registry = Hostile::start(|req: &Seen| {
        if req.header("authorization").is_none() {
            return Reply::new(401).with_header("WWW-Authenticate", "Basic realm=\"echo\"");
        }
        if req.method == "HEAD" || req.method == "GET" {
            return Reply::new(404);
        }
        let std = base64::engine::general_purpose::STANDARD;
        let pw = ODD_PASSWORD;
        let mut body = String::from("refused; you sent ");
        for (_, echo) in echoes() {
            body.push_str(&echo);
            body.push_str(" | ");
        }
        for prefix in ["x", "xy", "{\"password\":\""] {
            body.push_str(&std.encode(format!("{prefix}{pw}\"}}")));
            body.push(' ');
        }
        Reply::new(400)
            .with_header("Content-Type", "text/plain")
            .with_body(body)
    });
    let p = Project::new();
    p.write(
        "eigenruntime.toml",
        format!(
            "[defaults]\nregistry = \"{}/acme\"\ncreated = \"2025-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"oracle\"\nversion = 1\n[avs.operator-sets]\n0 = \"a.yaml\"\n",
            registry.host()
        ),
    );
    p.write("a.yaml", spec_yaml("oracle", "aggregator", "image-1"));
    let prefix = crate::harness::env::registry_var_prefix(&registry.host());
    for format in ["text", "json"] {
        let mut cmd = p.eigenpub(&[
            "apply",
            "--format",
            format,
            "--diagnostics",
            format.replace("text", "human").as_str(),
        ]);
        cmd.env(format!("{prefix}_USERNAME"), ODD_USER)
            .env(format!("{prefix}_PASSWORD"), ODD_PASSWORD);
        let out = crate::harness::run(cmd);
        out.no_panic().expect_code(1);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            all.contains("refused; you sent"),
            "the registry's text is shown\n{out}"
        );
        for (what, echo) in echoes() {
            assert!(
                !all.contains(&echo),
                "--format {format}: the password leaked as {what}: {echo}\n{out}"
            );
        }
        for fragment in ["Tr0ub4dor", "rse/battery", "rse\\/battery"] {
            assert!(
                !all.contains(fragment),
                "--format {format}: {fragment} leaked\n{out}"
            );
        }
    }
}

/// The text of a Markdown line outside its code spans (a line's backticks pair up: the
/// renderer escapes every backtick of an outside value).
fn outside_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect()
}

// A tag the registry refused to show is a row of the pull-request comment with the
// registry's reason. The reason stood in the table as Markdown, outside any code span: a
// registry a pull request names (or any that words its errors so) had the comment the CI's
// account posts mention people (`@org/team`), link and show images.
#[test]
fn a_registry_refusal_in_the_markdown_plan_mentions_links_and_shows_nothing() {
    const REASON: &str = "@acme/admins [sign in again](https://evil.example/login) ![x](https://evil.example/p.png) <https://evil.example/> *loud*";
    let registry = Hostile::start(move |req: &Seen| {
        // `good` is readable (its tag absent); `oracle`'s tag is refused with the text.
        if req.path() == "/v2/" || req.path().starts_with("/v2/acme/good/") {
            return Reply::new(404);
        }
        Reply::new(403)
            .json(&serde_json::json!({"errors": [{"code": "DENIED", "message": REASON}]}))
    });
    let p = Project::new();
    p.write(
        "eigenruntime.toml",
        format!(
            "[defaults]\nregistry = \"{}/acme\"\ncreated = \"2025-01-01T00:00:00Z\"\n\n[[avs]]\nname = \"oracle\"\nversion = 1\n[avs.operator-sets]\n0 = \"a.yaml\"\n\n[[avs]]\nname = \"good\"\nversion = 1\n[avs.operator-sets]\n0 = \"b.yaml\"\n",
            registry.host()
        ),
    );
    p.write("a.yaml", spec_yaml("oracle", "aggregator", "image-1"));
    p.write("b.yaml", spec_yaml("good", "aggregator", "image-1"));
    let out = p.run(&["plan", "--format", "markdown"]);
    out.no_panic().expect_code(1);
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("| ❓ unreadable |"))
        .unwrap_or_else(|| panic!("no unreadable row\n{out}"));
    assert!(row.contains("@acme/admins"), "the reason is shown\n{out}");
    let live = outside_code_spans(row);
    for markdown in ["@acme", "](", "<https", "*loud*"] {
        assert!(
            !live.contains(markdown),
            "{markdown} is live Markdown in the comment: {row}\n{out}"
        );
    }
}

// A pull request chooses the repository and tag a plan reads (`registry`, `name`, `tag`),
// and a plan job with credentials reads what they may read. The Markdown plan showed the
// config of whatever the tag held as "what the registry holds": for a container image, its
// environment (`config.config.Env`, where images keep keys) went into the comment.
#[test]
fn the_markdown_plan_shows_nothing_of_a_tag_that_holds_no_eigenruntime_artifact() {
    const KEY: &str = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIprivatekey";
    let registry = Registry::start();
    let p = oracle_on(&registry);
    let repository = "acme/oracle";
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin", KEY], "Labels": {"team": "payments"}},
    })
    .to_string();
    let layer = "not a tarball, but the registry does not mind";
    crate::lock::push_blob(&registry, repository, &config);
    crate::lock::push_blob(&registry, repository, layer);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256_digest(layer), "size": layer.len()}],
        "annotations": {"org.opencontainers.image.source": "https://git.example/private"},
    })
    .to_string();
    crate::lock::push_manifest(&registry, repository, "opset-0-v1", &manifest);

    let out = p.run(&["plan", "--format", "markdown"]);
    out.no_panic();
    assert!(
        out.stdout.contains("<details><summary>"),
        "the tag's change is reviewed\n{out}"
    );
    for private in ["wJalrXUtnFEMI", "payments", "git.example/private"] {
        assert!(
            !out.stdout.contains(private),
            "{private}: the comment shows the image's config\n{out}"
        );
    }
    assert!(
        out.stdout.contains(
            "- manifest.config.mediaType: application/vnd.oci.image.config.v1+json (not an EigenRuntime artifact"
        ),
        "the comment says what the tag holds\n{out}"
    );
    // Nothing but the manifest was read: neither its config nor its layer.
    let reads: Vec<_> = registry
        .requests()
        .into_iter()
        .filter(|(method, path, _)| method == "GET" && path.contains("/blobs/"))
        .collect();
    assert_eq!(reads, Vec::new(), "blobs of the image were read");
}
