//! The commands around the pipeline: `completions` (clap_complete), `man` (clap_mangen),
//! and `init`, which scaffolds an `eigenruntime.toml` from the spec files it finds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::{Context, Exit, Outcome};
use crate::cli::{Cli, CompletionsArgs, InitArgs};
use crate::diagnostic::Problem;
use crate::diagnostic::codes;
use crate::report::out;

/// Folders `init` does not look into.
const SKIPPED: &[&str] = &["target", "node_modules", "out", "vendor"];
/// Bounds of `init`'s walk, so a huge tree cannot keep it busy.
const MAX_DEPTH: usize = 8;
const MAX_FILES: usize = 20_000;
const MAX_SPEC_BYTES: u64 = 1 << 20;

pub(super) fn completions(args: &CompletionsArgs) -> Outcome {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "eigenpub", &mut buf);
    out::print(&String::from_utf8_lossy(&buf));
    Ok(Exit::Ok)
}

pub(super) fn man() -> Outcome {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut buf)
        .map_err(|e| Problem::error(codes::MAN, format!("cannot render the man page: {e}")))?;
    out::print(&String::from_utf8_lossy(&buf));
    Ok(Exit::Ok)
}

/// One spec file `init` found.
struct Found {
    /// Relative to the project folder, with `/`.
    path: String,
    avs: String,
}

pub(super) fn init(ctx: &Context, args: &InitArgs) -> Outcome {
    let config = &ctx.config;
    if config.exists() {
        return Err(Problem::error(
            codes::INIT_EXISTS,
            format!(
                "{} already exists; init never overwrites it",
                config.display()
            ),
        )
        .help("edit it, or pass -c/--config NEW.toml to write another file")
        .into());
    }
    crate::reference::parse_prefix(&args.registry).map_err(|m| {
        Problem::error(codes::INIT_REGISTRY, format!("--registry: {m}"))
            .help("write e.g. --registry ghcr.io/acme, or --registry oci:out")
    })?;
    let dir = ctx.project_dir();
    let mut found = Vec::new();
    let mut files = 0;
    walk(&dir, &dir, 0, &mut files, &mut found);
    if found.is_empty() {
        return Err(Problem::error(
            codes::INIT_NO_SPECS,
            format!("no EigenRuntime spec (YAML with `apiVersion: eigenruntime.io/…` and a `name`) under {}", dir.display()),
        )
        .help("run init in the repository that holds the specs, or write eigenruntime.toml by hand from eigenruntime.toml.example")
        .into());
    }
    let mut by_avs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in found {
        by_avs.entry(f.avs).or_default().push(f.path);
    }
    let in_git = crate::project::git::Repository::find(&dir).is_some();
    let text = render(&args.registry, &by_avs, in_git);
    let schema_path = dir.join(SCHEMA_FILE);
    if !schema_path.exists() {
        crate::atomic::write(&schema_path, PROJECT_SCHEMA.as_bytes(), 0o644)
            .map_err(|e| write_problem(&schema_path, e))?;
    }
    crate::atomic::write(config, text.as_bytes(), 0o644).map_err(|e| write_problem(config, e))?;
    let count: usize = by_avs.values().map(Vec::len).sum();
    out::line(&format!(
        "Wrote {} with {} AVS{} and {count} spec{}; check it with `eigenpub validate -v`.",
        config.display(),
        by_avs.len(),
        super::plural(by_avs.len()),
        super::plural(count)
    ));
    Ok(Exit::Ok)
}

/// The project file's JSON schema, written beside the new project for editors.
const PROJECT_SCHEMA: &str = include_str!("../../schemas/eigenruntime-toml.json");
const SCHEMA_FILE: &str = "eigenruntime.schema.json";

fn write_problem(path: &Path, e: std::io::Error) -> Problem {
    Problem::error(
        codes::INIT_WRITE,
        format!("cannot write {}: {e}", path.display()),
    )
    .help("check that the folder is writable")
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The project file text (pure).
fn render(registry: &str, by_avs: &BTreeMap<String, Vec<String>>, in_git: bool) -> String {
    let mut text = format!(
        "#:schema ./{SCHEMA_FILE}\n# Written by `eigenpub init`; eigenruntime.toml.example in eigenpub's repository documents every setting.\n\n[defaults]\nregistry = {}\n",
        quote(registry)
    );
    if in_git {
        text.push_str("# created = \"git\" (the default): each spec's last commit time.\n");
    } else {
        text.push_str("# Not in a git repository, so no commit times: a fixed creation time.\ncreated = \"2025-01-01T00:00:00Z\"\n");
    }
    for (avs, specs) in by_avs {
        text.push_str(&format!(
            "\n[[avs]]\nname = {}\n[avs.operator-sets]\n",
            quote(avs)
        ));
        for (opset, spec) in operator_sets(specs) {
            text.push_str(&format!("{opset} = {}\n", quote(&spec)));
        }
    }
    text
}

/// Operator set numbers: `opset-N` in the file name when every spec has one, else the
/// specs in path order from 0.
fn operator_sets(specs: &[String]) -> Vec<(u32, String)> {
    let mut sorted = specs.to_vec();
    sorted.sort();
    let numbered: Option<Vec<(u32, String)>> = sorted
        .iter()
        .map(|s| {
            let stem = Path::new(s).file_stem()?.to_str()?;
            let n = stem.strip_prefix("opset-")?.parse().ok()?;
            Some((n, s.clone()))
        })
        .collect();
    match numbered {
        Some(mut n)
            if {
                let mut ids: Vec<u32> = n.iter().map(|(i, _)| *i).collect();
                ids.dedup();
                ids.len() == n.len()
            } =>
        {
            n.sort();
            n
        }
        _ => (0..).zip(sorted).collect(),
    }
}

fn walk(root: &Path, dir: &Path, depth: usize, files: &mut usize, found: &mut Vec<Found>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if *files >= MAX_FILES {
            return;
        }
        *files += 1;
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if depth < MAX_DEPTH && !name.starts_with('.') && !SKIPPED.contains(&name) {
                walk(root, &path, depth + 1, files, found);
            }
        } else if meta.is_file()
            && meta.len() <= MAX_SPEC_BYTES
            && (name.ends_with(".yaml") || name.ends_with(".yml"))
            && let Some(avs) = spec_name(root, &path)
            && let Ok(rel) = path.strip_prefix(root)
            && let Some(rel) = rel.to_str()
        {
            found.push(Found {
                path: rel.replace('\\', "/"),
                avs,
            });
        }
    }
}

/// The AVS name of an EigenRuntime spec (its `name`, usable as a repository name), or
/// `None` for any other YAML.
fn spec_name(root: &Path, path: &Path) -> Option<String> {
    let text = String::from_utf8(
        crate::project::paths::read_inside(root, path, crate::project::paths::max_file_size())
            .ok()?,
    )
    .ok()?;
    let value: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    let api = value.get("apiVersion")?.as_str()?;
    if !api.starts_with("eigenruntime.io/") {
        return None;
    }
    let name = value.get("name")?.as_str()?;
    crate::reference::check_repository_path(name).ok()?;
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_sets_come_from_names_or_order() {
        let named = vec!["f/a/opset-1.yaml".to_string(), "f/a/opset-0.yaml".into()];
        assert_eq!(
            operator_sets(&named),
            vec![
                (0, "f/a/opset-0.yaml".into()),
                (1, "f/a/opset-1.yaml".into())
            ]
        );
        let plain = vec!["a/executor.yaml".to_string(), "a/aggregator.yaml".into()];
        assert_eq!(
            operator_sets(&plain),
            vec![
                (0, "a/aggregator.yaml".into()),
                (1, "a/executor.yaml".into())
            ]
        );
    }

    #[test]
    fn rendered_projects_parse() {
        let mut by_avs = BTreeMap::new();
        by_avs.insert("a\"b".to_string(), vec!["x \"y\".yaml".to_string()]);
        let text = render("oci:out", &by_avs, false);
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(parsed["avs"][0]["name"].as_str(), Some("a\"b"));
    }
}
