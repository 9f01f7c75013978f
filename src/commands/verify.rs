//! `eigenpub verify`: read-only monitoring that every tag in `eigenruntime.lock` holds
//! exactly its locked digest (someone moved a tag, a registry lost data). One request per
//! entry; one line per tag that moved or is missing; exit 1 if there is any.
//!
//! Only the lock and the project file's `[registries]` settings are read: no spec is
//! needed, so a broken spec on the branch does not stop the check.

use futures::StreamExt;
use serde_json::json;

use super::{Context, Exit, Failure, Outcome, connection, report_requests};
use crate::cli::VerifyArgs;
use crate::diagnostic::codes;
use crate::diagnostic::{Problem, SourceFile};
use crate::project::file;
use crate::project::lock::{self, Lock, LockEntry};
use crate::reference::Repository;
use crate::reference::{Digest, is_sha256};
use crate::registry::remote::Access;
use crate::registry::{TargetError, Targets};
use crate::report::Format;
use crate::report::out;

/// What a locked tag holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    /// Exactly the locked digest.
    Locked,
    /// Another digest (shown sanitised).
    Moved(String),
    /// No such tag.
    Missing,
}

impl Status {
    fn name(&self) -> &'static str {
        match self {
            Status::Locked => "ok",
            Status::Moved(_) => "moved",
            Status::Missing => "missing",
        }
    }
}

pub(super) async fn run(ctx: &Context, args: &VerifyArgs) -> Outcome {
    let path = lock::path_for(&ctx.config);
    let lock = Lock::read(&path)?.ok_or_else(|| {
        Problem::error(
            codes::LOCK_MISSING,
            format!("there is no lock to verify ({})", path.display()),
        )
        .help("run `eigenpub lock` and commit eigenruntime.lock; verify checks the tags it pins")
    })?;
    let dir = ctx.project_dir();
    let registries = registry_settings(&ctx.config)?;
    // Every target of every entry: its repository, then each mirror's (which must hold
    // the locked digest too), with the name the lock gives it.
    let mut entries: Vec<(&LockEntry, Repository, &str)> = Vec::new();
    for e in lock.entries.values() {
        let repositories = e
            .targets(&dir)
            .map_err(|m| Problem::error(codes::LOCK_INVALID, format!("{}: {m}", e.name())))?;
        let names = std::iter::once(&e.repository).chain(&e.mirrors);
        for (repository, name) in repositories.into_iter().zip(names) {
            entries.push((e, repository, name));
        }
    }
    let hosts: std::collections::BTreeSet<&str> = entries
        .iter()
        .filter_map(|(_, r, _)| r.registry())
        .collect();
    let connections = hosts.into_iter().map(|host| {
        let settings = crate::project::file::RegistrySettings::for_host(&registries, host);
        (host.to_string(), connection(&dir, &settings))
    });
    let targets = Targets::connect(connections, Access::Pull).await?;
    let concurrency = ctx.concurrency(file::DEFAULT_CONCURRENCY);
    let results: Vec<(usize, Result<Option<Digest>, TargetError>)> =
        futures::stream::iter(entries.iter().enumerate())
            .map(|(i, (e, repository, _))| {
                let target = targets.target(repository);
                async move { (i, target.manifest_digest(&e.tag).await) }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let mut statuses = vec![Status::Missing; entries.len()];
    let mut errors = Vec::new();
    for (i, result) in results {
        match result {
            Ok(None) => statuses[i] = Status::Missing,
            Ok(Some(d)) if d == entries[i].0.digest.as_str() => statuses[i] = Status::Locked,
            Ok(Some(d)) => statuses[i] = Status::Moved(shown(d.as_str())),
            Err(e) => errors.push((i, e)),
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|(i, _)| *i);
        let problems: Vec<Problem> = errors
            .iter()
            .map(|(i, e)| {
                let mut p = e.to_problem();
                p.message = format!(
                    "{} (while reading {}:{})",
                    p.message, entries[*i].2, entries[*i].0.tag
                );
                p
            })
            .collect();
        return Err(Failure {
            problems,
            closing: Some("the tags could not all be read; nothing is known about them".into()),
            ..Failure::default()
        });
    }
    let count = |name: &str| statuses.iter().filter(|s| s.name() == name).count();
    let (ok, moved, missing) = (count("ok"), count("moved"), count("missing"));
    match args.format {
        Format::Text => {
            for ((e, _, repository), status) in entries.iter().zip(&statuses) {
                let reference = format!("{repository}:{}", e.tag);
                match status {
                    Status::Locked => {
                        if ctx.verbose() {
                            out::line(&format!("= locked  {reference} {}", e.digest));
                        }
                    }
                    Status::Moved(d) => out::line(&format!(
                        "! moved   {reference} holds {d}, locked {} ({}/{})",
                        e.digest, e.avs, e.operator_set
                    )),
                    Status::Missing => out::line(&format!(
                        "! missing {reference} (locked {}, {}/{})",
                        e.digest, e.avs, e.operator_set
                    )),
                }
            }
            out::line(&format!(
                "Verify: {ok} as locked, {moved} moved, {missing} missing."
            ));
        }
        Format::Json => {
            let items: Vec<_> = entries
                .iter()
                .zip(&statuses)
                .map(|((e, _, repository), status)| {
                    let mut item = json!({
                        "avs": e.avs,
                        "operator_set": e.operator_set,
                        "repository": repository,
                        "tag": e.tag,
                        "locked_digest": e.digest,
                        "digest": match status {
                            Status::Locked => Some(e.digest.clone()),
                            Status::Moved(d) => Some(d.clone()),
                            Status::Missing => None,
                        },
                        "status": status.name(),
                    });
                    // A mirror's target names its primary.
                    if *repository != e.repository {
                        item["mirror_of"] = json!(e.repository);
                    }
                    item
                })
                .collect();
            let document = json!({
                "format_version": 1,
                "entries": items,
                "summary": {"ok": ok, "moved": moved, "missing": missing},
            });
            out::line(
                &serde_json::to_string_pretty(&crate::sanitize::json(document)).expect("JSON"),
            );
        }
    }
    report_requests(ctx, targets.requests());
    Ok(if moved + missing > 0 {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

/// A digest a registry reported, safe to print.
fn shown(digest: &str) -> String {
    if is_sha256(digest) {
        digest.to_string()
    } else {
        format!(
            "an invalid digest ({})",
            crate::sanitize::truncate(&crate::sanitize::registry_text(digest), 80)
        )
    }
}

/// The project file's `[registries]` settings (plain-http, ca-file, limits), without
/// loading its specs.
fn registry_settings(
    config: &std::path::Path,
) -> Result<std::collections::BTreeMap<String, file::RegistrySettings>, Failure> {
    let name = config.display().to_string();
    let text = crate::project::paths::project_text(config).map_err(|e| {
        Problem::error(
            codes::PROJECT_UNREADABLE,
            format!("cannot read project file {name}: {e}"),
        )
        .help("run eigenpub in the folder that holds eigenruntime.toml, or pass -c/--config FILE")
    })?;
    let parsed = file::parse(&SourceFile::new(name, text))?;
    Ok(parsed.registries)
}
