//! The resolution rules seen from the outside: a project folder (project file, specs, and
//! for some a git repository or a lock) loaded into [`Publication`]s, with the values each
//! rule decides asserted exactly.

use std::path::Path;
use std::process::Command;

use super::*;
use crate::diagnostic::codes;

const SPEC: &str = "apiVersion: eigenruntime.io/v1
kind: Hourglass
name: price-oracle
version: 0.3.1
spec:
  aggregator:
    registry: public.ecr.aws/acme/price-oracle-aggregator
    digest: sha256:2adb1da199c7f6401203ec52abb9b37a311aa432ceb0677f5abfdfb5f717e528
";

/// A project folder with `eigenruntime.toml` and the given spec files.
fn folder(toml: &str, specs: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("eigenruntime.toml"), toml).unwrap();
    for spec in specs {
        let path = dir.path().join(spec);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, SPEC).unwrap();
    }
    dir
}

fn load_with(dir: &Path, epoch: Option<&str>) -> Result<Project, Vec<Problem>> {
    let env = Env {
        source_date_epoch: epoch.map(str::to_string),
    };
    load(&dir.join("eigenruntime.toml"), &env).map_err(Problems::sorted)
}

/// The config blob a publication would push, parsed.
fn config(p: &Publication) -> serde_json::Value {
    serde_json::from_slice(&p.artifact.config.bytes).expect("config JSON")
}

/// The manifest a publication would push, parsed.
fn manifest(p: &Publication) -> serde_json::Value {
    serde_json::from_slice(&p.artifact.manifest.bytes).expect("manifest JSON")
}

fn codes(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.code).collect()
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .env("GIT_COMMITTER_DATE", "2024-02-03T04:05:06Z")
        .env("GIT_AUTHOR_DATE", "2024-02-03T04:05:06Z")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

#[test]
fn defaults_and_per_avs_overrides_reach_the_publications() {
    let dir = folder(
        r#"
[defaults]
registry = "ghcr.io/acme"
created = "2025-01-01T00:00:00Z"
kind = "Hourglass"
tag = "v{version}-{opset}"

[[avs]]
name = "plain"
[avs.operator-sets]
0 = "plain.yaml"

[[avs]]
name = "special"
version = 7
repository = "registry.example/team/special"
tag = "{avs}-{opset}-{version}"
created = "2025-06-01T12:00:00+02:00"
devkit-version = "v0.0.9"
[avs.operator-sets]
3 = "special.yaml"
"#,
        &["plain.yaml", "special.yaml"],
    );
    let project = load_with(dir.path(), None).unwrap();
    let [plain, special] = &project.publications[..] else {
        panic!("two publications: {:?}", project.publications);
    };
    assert_eq!(
        plain.reference(),
        "ghcr.io/acme/plain:v0.3.1-0",
        "the spec's version"
    );
    assert_eq!(plain.created, "2025-01-01T00:00:00Z");
    assert_eq!(config(plain)["metadata"]["devkitVersion"], "eigenpub");
    assert_eq!(
        special.reference(),
        "registry.example/team/special:special-3-7"
    );
    assert_eq!(special.created, "2025-06-01T10:00:00Z", "normalised to UTC");
    assert_eq!(config(special)["metadata"]["devkitVersion"], "v0.0.9");
    assert_eq!(
        manifest(special)["layers"][0]["annotations"]["org.opencontainers.image.title"],
        "special.yaml"
    );
    assert!(project.warnings.is_empty(), "{:?}", project.warnings);
}

#[test]
fn publications_carry_their_origin() {
    let dir = folder(
        r#"
[defaults]
registry = "oci:out"
created = "2025-01-01T00:00:00Z"
[[avs]]
name = "a"
[avs.operator-sets]
1 = "a.yaml"
[[discover]]
specs = "fleet/{avs}/opset-{opset}.yaml"
"#,
        &["a.yaml", "fleet/b/opset-2.yaml"],
    );
    let project = load_with(dir.path(), None).unwrap();
    let text = &project.file.text;
    let [a, b] = &project.publications[..] else {
        panic!("{:?}", project.publications);
    };
    let Declared::Avs { index: 0, key } = &a.origin.declared else {
        panic!("{:?}", a.origin);
    };
    assert_eq!(&text[key.clone()], "1");
    assert_eq!(&text[a.origin.span.clone()], "\"a.yaml\"");
    assert_eq!(a.origin.label, "a operator set 1");
    assert_eq!(b.origin.declared, Declared::Discover { index: 0 });
    assert_eq!(
        &text[b.origin.span.clone()],
        "\"fleet/{avs}/opset-{opset}.yaml\""
    );
    assert_eq!(
        b.origin.label,
        "fleet/b/opset-2.yaml (found by this pattern)"
    );
    assert_eq!((b.avs.as_str(), b.operator_set), ("b", 2));
}

#[test]
fn mutable_tags_mark_publications() {
    let dir = folder(
        r#"
[defaults]
registry = "oci:out"
created = "2025-01-01T00:00:00Z"
mutable-tags = ["latest-*"]
[[avs]]
name = "a"
tag = "latest-{opset}"
[avs.operator-sets]
0 = "a.yaml"
[[avs]]
name = "b"
[avs.operator-sets]
0 = "b.yaml"
"#,
        &["a.yaml", "b.yaml"],
    );
    let project = load_with(dir.path(), None).unwrap();
    let mutable: Vec<_> = project
        .publications
        .iter()
        .map(|p| (p.tag.as_str(), p.mutable))
        .collect();
    assert_eq!(mutable, [("latest-0", true), ("opset-0-v0.3.1", false)]);
}

#[test]
fn created_from_source_date_epoch_unless_set() {
    let toml = r#"
[defaults]
registry = "oci:out"
[[avs]]
name = "a"
[avs.operator-sets]
0 = "a.yaml"
[[avs]]
name = "b"
created = "2020-01-01T00:00:00Z"
[avs.operator-sets]
0 = "b.yaml"
"#;
    let dir = folder(toml, &["a.yaml", "b.yaml"]);
    let project = load_with(dir.path(), Some("1735689600")).unwrap();
    let created: Vec<_> = project
        .publications
        .iter()
        .map(|p| p.created.as_str())
        .collect();
    assert_eq!(created, ["2025-01-01T00:00:00Z", "2020-01-01T00:00:00Z"]);

    // An invalid epoch is one error, however many entries rely on it.
    let dir = folder(
        "[defaults]\nregistry = \"oci:out\"\n[[avs]]\nname = \"a\"\n[avs.operator-sets]\n0 = \"a.yaml\"\n1 = \"b.yaml\"\n",
        &["a.yaml", "b.yaml"],
    );
    let problems = load_with(dir.path(), Some("soon")).unwrap_err();
    assert_eq!(codes(&problems), [codes::CREATED_EPOCH]);
}

#[test]
fn created_from_git_is_the_last_commit_of_the_spec() {
    let dir = folder(
        "[defaults]\nregistry = \"oci:out\"\n[[avs]]\nname = \"a\"\n[avs.operator-sets]\n0 = \"a.yaml\"\n1 = \"b.yaml\"\n",
        &["a.yaml", "b.yaml"],
    );
    // Not in git, no epoch, no lock: no time can be found.
    let problems = load_with(dir.path(), None).unwrap_err();
    assert_eq!(
        codes(&problems),
        [codes::CREATED_UNKNOWN, codes::CREATED_UNKNOWN]
    );
    assert!(
        problems[0].message.ends_with(
            "`created` is \"git\" (the default) but the project is not in a git repository"
        ),
        "{}",
        problems[0].message
    );

    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "specs"]);
    std::fs::write(dir.path().join("b.yaml"), format!("{SPEC}# changed\n")).unwrap();
    let project = load_with(dir.path(), None).unwrap();
    let created: Vec<_> = project
        .publications
        .iter()
        .map(|p| p.created.as_str())
        .collect();
    assert_eq!(created, ["2024-02-03T04:05:06Z", "2024-02-03T04:05:06Z"]);
    assert_eq!(codes(&project.warnings), [codes::CREATED_UNCOMMITTED]);
    assert!(
        project.warnings[0]
            .message
            .starts_with("b.yaml has uncommitted changes")
    );
}

#[test]
fn created_from_the_lock_when_the_inputs_are_unchanged() {
    let toml = "[defaults]\nregistry = \"oci:out\"\n[[avs]]\nname = \"a\"\n[avs.operator-sets]\n0 = \"a.yaml\"\n";
    let dir = folder(toml, &["a.yaml"]);
    // Lock what an epoch gives, then load with no epoch and no git: the lock's time holds.
    let locked = load_with(dir.path(), Some("1700000000")).unwrap();
    let (lock, _) = lock::update(None, &locked.publications, &[]);
    std::fs::write(dir.path().join("eigenruntime.lock"), lock.render()).unwrap();
    let project = load_with(dir.path(), None).unwrap();
    assert_eq!(project.publications[0].created, "2023-11-14T22:13:20Z");
    assert_eq!(
        project.publications[0].artifact.digest(),
        locked.publications[0].artifact.digest()
    );
    assert!(project.lock.is_some());

    // The lock wins over SOURCE_DATE_EPOCH too, while the spec is unchanged...
    let project = load_with(dir.path(), Some("1735689600")).unwrap();
    assert_eq!(project.publications[0].created, "2023-11-14T22:13:20Z");
    // ...and no longer once it changed.
    std::fs::write(dir.path().join("a.yaml"), format!("{SPEC}# changed\n")).unwrap();
    let project = load_with(dir.path(), Some("1735689600")).unwrap();
    assert_eq!(project.publications[0].created, "2025-01-01T00:00:00Z");
}

#[test]
fn two_publications_on_one_tag_are_named_by_their_origins() {
    let dir = folder(
        r#"
[defaults]
registry = "oci:out"
created = "2025-01-01T00:00:00Z"
tag = "same"
[[avs]]
name = "a"
[avs.operator-sets]
0 = "a.yaml"
1 = "b.yaml"
"#,
        &["a.yaml", "b.yaml"],
    );
    let problems = load_with(dir.path(), None).unwrap_err();
    assert_eq!(codes(&problems), [codes::PROJECT_DUPLICATE]);
    assert_eq!(
        problems[0].message,
        "two artifacts on oci:out/a:same: a operator set 0 (a.yaml) and a operator set 1 (b.yaml)"
    );
    let labels: Vec<_> = problems[0].labels.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(labels, ["second: b.yaml", "first: a.yaml"]);
}

#[test]
fn mirrors_derive_repositories_the_way_registry_does() {
    let dir = folder(
        r#"
[defaults]
registry = "ghcr.io/acme"
mirrors = ["registry.gitlab.com/acme/specs", "oci:archive"]
created = "2025-01-01T00:00:00Z"

[[avs]]
name = "a"
[avs.operator-sets]
0 = "a.yaml"

[[avs]]
name = "b"
repository = "ghcr.io/acme/other/bee"
mirrors = ["localhost:5000"]
[avs.operator-sets]
0 = "b.yaml"

[[avs]]
name = "c"
mirrors = []
[avs.operator-sets]
0 = "c.yaml"
"#,
        &["a.yaml", "b.yaml", "c.yaml"],
    );
    let project = load_with(dir.path(), None).expect("loads");
    let primaries: Vec<_> = project.publications.iter().map(|p| p.reference()).collect();
    assert_eq!(
        primaries,
        [
            "ghcr.io/acme/a:opset-0-v0.3.1",
            "ghcr.io/acme/other/bee:opset-0-v0.3.1",
            "ghcr.io/acme/c:opset-0-v0.3.1"
        ]
    );
    let mirrors: Vec<_> = project
        .mirrors
        .iter()
        .map(|p| (p.reference(), p.primary_reference()))
        .collect();
    assert_eq!(
        mirrors,
        [
            (
                "registry.gitlab.com/acme/specs/a:opset-0-v0.3.1".to_string(),
                "ghcr.io/acme/a:opset-0-v0.3.1".to_string()
            ),
            (
                "oci:archive/a:opset-0-v0.3.1".to_string(),
                "ghcr.io/acme/a:opset-0-v0.3.1".to_string()
            ),
            (
                "localhost:5000/b:opset-0-v0.3.1".to_string(),
                "ghcr.io/acme/other/bee:opset-0-v0.3.1".to_string()
            ),
        ]
    );
    // The same bytes everywhere, and a mirror never adopts merely equivalent content.
    let a = &project.publications[0];
    for m in &project.mirrors[..2] {
        assert!(m.is_mirror() && !m.adopt_equivalent);
        assert_eq!(m.artifact.digest(), a.artifact.digest());
    }
    assert!(!a.is_mirror());
}

#[test]
fn bad_mirrors_are_errors_at_their_line() {
    let dir = folder(
        r#"[defaults]
registry = "localhost:5000/acme"
created = "2025-01-01T00:00:00Z"

[[avs]]
name = "a"
mirrors = ["Not A Registry!", "127.0.0.1:5000/acme", "oci:x", "oci:x/"]
[avs.operator-sets]
0 = "a.yaml"
"#,
        &["a.yaml"],
    );
    let problems = load_with(dir.path(), None).expect_err("bad mirrors");
    assert_eq!(
        codes(&problems),
        [
            codes::PROJECT_MIRROR,
            codes::PROJECT_MIRROR,
            codes::PROJECT_MIRROR
        ]
    );
    let found: Vec<_> = problems
        .iter()
        .map(|p| {
            let (file, at) = p.position().expect("placed");
            (file.to_string(), at.expect("a line").0, p.message.clone())
        })
        .collect();
    assert!(
        found
            .iter()
            .all(|(f, line, _)| f.ends_with("eigenruntime.toml") && *line == 7)
    );
    assert!(found[0].2.contains("mirror `Not A Registry!`"), "{found:?}");
    assert!(
        found[1]
            .2
            .contains("is the primary repository localhost:5000/acme/a"),
        "{found:?}"
    );
    assert!(found[2].2.contains("is mirror `oci:x`"), "{found:?}");

    // A wrong type is a parse error naming the key.
    let dir = folder(
        "[defaults]\nregistry = \"ghcr.io/a\"\nmirrors = \"ghcr.io/b\"\n",
        &[],
    );
    let problems = load_with(dir.path(), None).expect_err("a string, not a list");
    assert_eq!(
        problems[0].position().and_then(|(_, at)| at).map(|at| at.0),
        Some(3)
    );
    assert!(
        problems[0].message.contains("expected a sequence"),
        "{:?}",
        problems[0]
    );
}
