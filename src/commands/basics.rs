//! The commands around the pipeline: `completions` (clap_complete), `man` (clap_mangen),
//! and `init`, which scaffolds an `eigenruntime.toml` from the spec files it finds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::{Context, Exit, Outcome};
use crate::cli::{Cli, CompletionsArgs, InitArgs, ManArgs};
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

pub(super) fn man(args: &ManArgs) -> Outcome {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let failed = |e: std::io::Error| {
        Problem::error(codes::MAN, format!("cannot render the man page: {e}"))
            .help("check that the folder exists and is writable")
    };
    if let Some(dir) = &args.out {
        let mut pages = vec![cli.clone()];
        pages.extend(cli.get_subcommands().cloned());
        for page in pages {
            let path = dir.join(format!("{}.1", page_name(&page)));
            let roff = man_page(&page).map_err(failed)?;
            crate::atomic::write(&path, roff.as_bytes(), 0o644).map_err(failed)?;
            out::line(&path.display().to_string());
        }
        return Ok(Exit::Ok);
    }
    let page = match &args.command {
        None => cli,
        Some(name) => cli.find_subcommand(name).cloned().ok_or_else(|| {
            let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
            Problem::error(
                codes::MAN,
                format!("no command `{}`", crate::sanitize::text(name)),
            )
            .help(format!("the commands are: {}", names.join(", ")))
        })?,
    };
    out::print(&man_page(&page).map_err(failed)?);
    Ok(Exit::Ok)
}

/// `eigenpub` or `eigenpub-plan`.
fn page_name(page: &clap::Command) -> String {
    page.get_display_name()
        .unwrap_or_else(|| page.get_name())
        .to_string()
}

/// A page as clap_mangen renders it, with EXIT STATUS, ENVIRONMENT and SEE ALSO added.
fn man_page(page: &clap::Command) -> std::io::Result<String> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(page.clone()).render(&mut buf)?;
    let mut roff = String::from_utf8_lossy(&buf).into_owned();
    let name = page_name(page);
    roff.push_str(".SH \"EXIT STATUS\"\n");
    let mut codes = vec![
        ("0", "Success; no changes (also for --help and --version)."),
        (
            "1",
            "Any error: an invalid project, an unreachable or refusing registry, a refused overwrite, a failed push, a stale saved plan, a usage error, a --select or --exclude glob that matches none of the project's artifacts, --locked with a missing or out-of-date lock, a verify that found a moved or missing tag.",
        ),
    ];
    if name == "eigenpub" || name == "eigenpub-plan" {
        codes.push(("2", "plan --detailed-exitcode only: the plan has changes."));
    }
    for (code, meaning) in codes {
        roff.push_str(&format!(".TP\n\\fB{code}\\fR\n{meaning}\n"));
    }
    roff.push_str(".SH ENVIRONMENT\n");
    for (variable, meaning) in ENVIRONMENT {
        roff.push_str(&format!(".TP\n\\fB{variable}\\fR\n{meaning}\n"));
    }
    roff.push_str(".SH \"SEE ALSO\"\n");
    let see_also: Vec<String> = std::iter::once("eigenpub".to_string())
        .chain(
            Cli::command()
                .get_subcommands()
                .map(|c| format!("eigenpub-{}", c.get_name())),
        )
        .filter(|n| *n != name)
        .map(|n| format!("\\fB{n}\\fR(1)"))
        .collect();
    roff.push_str(&see_also.join(", "));
    roff.push('\n');
    Ok(roff)
}

/// The environment eigenpub reads, for the man pages.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "EIGENPUB_REGISTRY_<HOST>_USERNAME, EIGENPUB_REGISTRY_<HOST>_PASSWORD",
        "Credentials for a registry (HOST upper-cased, . as _, - as __, the : before a port as ___: EIGENPUB_REGISTRY_GHCR_IO_USERNAME). They come before Docker's config and are never passed to git or credential helpers.",
    ),
    (
        "DOCKER_CONFIG",
        "The folder of Docker's config.json (default ~/.docker), read for credentials and written by login and logout.",
    ),
    (
        "EIGENPUB_MAX_FILE_MIB",
        "The largest project file, spec or lock read, in MiB (default 16).",
    ),
    (
        "EIGENPUB_CREDENTIAL_HELPER_TIMEOUT",
        "Seconds a Docker credential helper may take (default 30).",
    ),
    (
        "EIGENPUB_CACHE_DIR",
        "An absolute folder for the cache of manifests and configs read from registries, kept by repository and digest (default $XDG_CACHE_HOME/eigenpub, else ~/.cache/eigenpub).",
    ),
    (
        "EIGENPUB_NO_CACHE",
        "Set to anything but empty or 0: no cache.",
    ),
    (
        "SOURCE_DATE_EPOCH",
        "The default created time of every artifact, when the project file sets none (else the spec's last commit).",
    ),
    (
        "NO_COLOR",
        "When set and not empty, no colour (--color auto).",
    ),
];

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
    let mut walked = Walk::default();
    walk(&dir, &dir, 0, &mut walked);
    let Walk {
        found,
        skipped,
        files,
    } = walked;
    // What was left out, and why: before anything else, also when nothing was found.
    let mut notes: Vec<Problem> = skipped
        .iter()
        .map(|(path, why)| {
            Problem::warning(
                codes::INIT_SKIPPED,
                format!("skipped {}: {why}", crate::sanitize::text(path)),
            )
            .help("fix it and run init again, or add it to eigenruntime.toml by hand")
        })
        .collect();
    if files >= MAX_FILES {
        notes.push(
            Problem::warning(
                codes::INIT_SKIPPED,
                format!("stopped looking after {MAX_FILES} files; specs further on were not seen"),
            )
            .help("run init in a smaller folder, or add the missing specs to eigenruntime.toml by hand"),
        );
    }
    if found.is_empty() {
        if !ctx.quiet() && !notes.is_empty() {
            ctx.diagnostics.print(&notes);
        }
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
    for (avs, specs) in &by_avs {
        if operator_sets(specs).1 {
            notes.push(
                Problem::warning(
                    codes::INIT_GUESSED,
                    format!(
                        "the operator sets of {} are numbered by the order of their file names (guessed): {}",
                        crate::sanitize::text(avs),
                        operator_sets(specs)
                            .0
                            .iter()
                            .map(|(n, spec)| format!("{n} = {}", crate::sanitize::text(spec)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .help("check them against the AVS's operator sets and correct eigenruntime.toml (files named opset-N.yaml are numbered N)"),
            );
        }
    }
    if !ctx.quiet() && !notes.is_empty() {
        ctx.diagnostics.print(&notes);
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
    crate::sanitize::toml_string(s)
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
        let (numbered, guessed) = operator_sets(specs);
        if guessed {
            text.push_str("# GUESSED from the order of the file names: check each number.\n");
        }
        for (opset, spec) in numbered {
            text.push_str(&format!("{opset} = {}\n", quote(&spec)));
        }
    }
    text
}

/// Operator set numbers: `opset-N` in the file name when every spec has one, else the
/// specs in path order from 0, and then `true`: guessed.
fn operator_sets(specs: &[String]) -> (Vec<(u32, String)>, bool) {
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
            (n, false)
        }
        _ => ((0..).zip(sorted).collect(), true),
    }
}

/// What `init`'s walk saw.
#[derive(Default)]
struct Walk {
    found: Vec<Found>,
    /// Spec-like files left out: path (relative, `/`) and why.
    skipped: Vec<(String, String)>,
    /// Entries looked at.
    files: usize,
}

fn walk(root: &Path, dir: &Path, depth: usize, walked: &mut Walk) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if walked.files >= MAX_FILES {
            return;
        }
        walked.files += 1;
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if depth < MAX_DEPTH && !name.starts_with('.') && !SKIPPED.contains(&name) {
                walk(root, &path, depth + 1, walked);
            }
            continue;
        }
        if !meta.is_file() || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        let Some(rel) = path
            .strip_prefix(root)
            .ok()
            .and_then(Path::to_str)
            .map(|r| r.replace('\\', "/"))
        else {
            continue;
        };
        let candidate = if meta.len() > MAX_SPEC_BYTES {
            Candidate::Skipped(format!(
                "larger than {} MiB, not read",
                MAX_SPEC_BYTES >> 20
            ))
        } else {
            spec_name(root, &path)
        };
        match candidate {
            Candidate::Spec(avs) => walked.found.push(Found { path: rel, avs }),
            Candidate::Skipped(why) => walked.skipped.push((rel, why)),
            Candidate::Other => {}
        }
    }
}

/// A YAML file as `init` sees it.
#[derive(Debug, PartialEq, Eq)]
enum Candidate {
    /// An EigenRuntime spec, with its AVS name.
    Spec(String),
    /// Looks like one (it names `eigenruntime.io/`), but cannot be used: why.
    Skipped(String),
    /// Any other YAML.
    Other,
}

/// What a YAML file is to `init` (reads it).
fn spec_name(root: &Path, path: &Path) -> Candidate {
    match crate::project::paths::read_inside(root, path, crate::project::paths::max_file_size()) {
        Ok(bytes) => classify(&bytes),
        Err(e) => Candidate::Skipped(format!("cannot be read: {e}")),
    }
}

/// What a YAML file's bytes are to `init` (pure).
fn classify(bytes: &[u8]) -> Candidate {
    const MARK: &[u8] = b"eigenruntime.io/";
    let looks_like_a_spec = bytes.windows(MARK.len()).any(|w| w == MARK);
    let Ok(text) = std::str::from_utf8(bytes) else {
        return if looks_like_a_spec {
            Candidate::Skipped("not UTF-8 text".into())
        } else {
            Candidate::Other
        };
    };
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(value) => value,
        Err(e) if looks_like_a_spec => {
            let line = e
                .location()
                .map(|l| format!(" at line {}", l.line()))
                .unwrap_or_default();
            return Candidate::Skipped(format!("not valid YAML{line}"));
        }
        Err(_) => return Candidate::Other,
    };
    let Some(api) = value.get("apiVersion").and_then(|v| v.as_str()) else {
        return Candidate::Other;
    };
    if !api.starts_with("eigenruntime.io/") {
        return Candidate::Other;
    }
    let Some(name) = value.get("name").and_then(|v| v.as_str()) else {
        return Candidate::Skipped("no `name` (the AVS name) at the top level".into());
    };
    match crate::reference::check_repository_path(name) {
        Ok(_) => Candidate::Spec(name.to_string()),
        Err(m) => Candidate::Skipped(format!(
            "its name `{}` cannot be a repository name: {m}",
            crate::sanitize::text(name)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_sets_come_from_names_or_order() {
        let named = vec!["f/a/opset-1.yaml".to_string(), "f/a/opset-0.yaml".into()];
        assert_eq!(
            operator_sets(&named),
            (
                vec![
                    (0, "f/a/opset-0.yaml".into()),
                    (1, "f/a/opset-1.yaml".into())
                ],
                false
            )
        );
        let plain = vec!["a/executor.yaml".to_string(), "a/aggregator.yaml".into()];
        assert_eq!(
            operator_sets(&plain),
            (
                vec![
                    (0, "a/aggregator.yaml".into()),
                    (1, "a/executor.yaml".into())
                ],
                true
            )
        );
    }

    #[test]
    fn yaml_files_are_specs_skipped_specs_or_other() {
        let spec = b"apiVersion: eigenruntime.io/v1\nname: oracle\n";
        assert_eq!(classify(spec), Candidate::Spec("oracle".into()));
        assert_eq!(classify(b"jobs: {}\n"), Candidate::Other);
        assert_eq!(classify(b"jobs: [\n"), Candidate::Other);
        assert_eq!(
            classify(b"apiVersion: apps/v1\nname: x\n"),
            Candidate::Other
        );
        let skipped = |bytes: &[u8]| match classify(bytes) {
            Candidate::Skipped(why) => why,
            other => panic!("{other:?}"),
        };
        assert!(
            skipped(b"apiVersion: eigenruntime.io/v1\nspec: [\n").starts_with("not valid YAML")
        );
        assert!(skipped(b"apiVersion: eigenruntime.io/v1\nkind: x\n").starts_with("no `name`"));
        assert!(
            skipped(b"apiVersion: eigenruntime.io/v1\nname: A B\n")
                .contains("cannot be a repository name")
        );
        assert_eq!(
            skipped(b"apiVersion: eigenruntime.io/v1\n\xff\n"),
            "not UTF-8 text"
        );
    }

    /// Every `EIGENPUB_*` variable eigenpub reads is in the man pages' ENVIRONMENT.
    #[test]
    fn the_man_pages_name_every_environment_variable() {
        fn sources(dir: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        let mut texts = Vec::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut texts,
        );
        let documented: String = ENVIRONMENT
            .iter()
            .map(|(v, _)| *v)
            .collect::<Vec<_>>()
            .join(" ");
        for text in texts {
            for (at, _) in text.match_indices("\"EIGENPUB_") {
                let name: String = text[at + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if name.starts_with("EIGENPUB_REGISTRY_") || name == "EIGENPUB_" {
                    continue; // credentials: documented as EIGENPUB_REGISTRY_<HOST>_*
                }
                assert!(
                    documented.contains(&name),
                    "{name} is not in the man pages' ENVIRONMENT"
                );
            }
        }
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
