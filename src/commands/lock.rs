//! `eigenpub lock`: write or update `eigenruntime.lock`; and the lock checks that `plan`,
//! `apply` and `validate` make (warnings, or with `--locked` failures that push nothing).
//!
//! The rule of what the lock holds is [`crate::project::lock::update`]; this file only
//! reads the registry when asked (`--registry`), writes the file, and turns differences
//! into problems that name each entry.

use super::{
    Context, Exit, Failure, Outcome, connections, load_project, plural, report_requests, write_file,
};
use crate::cli::LockArgs;
use crate::diagnostic::Problem;
use crate::diagnostic::codes;
use crate::plan::{self, Overwrite, Plan, locked};
use crate::project::Project;
use crate::project::lock::{self, EntryChange, Lock, Published};
use crate::registry::Targets;
use crate::registry::remote::Access;
use crate::report::out;

pub(super) async fn run(ctx: &Context, args: &LockArgs) -> Outcome {
    let project = load_project(ctx)?;
    let mut requests = None;
    let published = if args.registry {
        let targets = Targets::connect(connections(&project), Access::Pull).await?;
        let cache = super::plan::cache(ctx);
        let observed = plan::observe_each(
            &targets,
            &project.publications,
            Overwrite::Refuse,
            ctx.concurrency(project.concurrency),
            &cache,
            &|| {},
        )
        .await;
        cache.trim().await;
        let observed = plan::all_read(observed)
            .map_err(|errors| plan::observe_problems(&errors, &project.publications))?;
        requests = Some(targets.requests());
        let plan = plan::diff(project.publications.clone(), observed, Overwrite::Refuse);
        plan.changes
            .iter()
            .map(|c| {
                Some(Published {
                    digest: c.digest().to_string(),
                    adopted: c.equivalent.is_some(),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let (new, changes) = lock::update_with_mirrors(
        project.lock.as_ref(),
        &project.publications,
        &project.mirrors,
        &published,
    );
    let text = new.render();
    let before = project.lock.as_ref().and_then(|l| l.file.as_ref());
    let path = project.lock_path.display().to_string();
    let write = before.is_none_or(|f| *f.text != *text);
    if write {
        write_file(&project.lock_path, text.as_bytes(), "the lock")?;
    }
    // `-q`: the summary line only.
    if !ctx.quiet() {
        for change in &changes {
            out::line(&line(change));
        }
    }
    let count = |f: fn(&EntryChange) -> bool| changes.iter().filter(|c| f(c)).count();
    let added = count(|c| matches!(c, EntryChange::Added(_)));
    let changed = count(|c| matches!(c, EntryChange::Changed { .. }));
    let removed = count(|c| matches!(c, EntryChange::Removed(_)));
    let kept = new.entries.len() - added - changed;
    let adopted = new.entries.values().filter(|e| e.adopted).count();
    let adopted = if adopted > 0 {
        format!(" ({adopted} adopted as published)")
    } else {
        String::new()
    };
    if write {
        out::line(&format!(
            "Lock: {added} added, {changed} changed, {removed} removed, {kept} unchanged{adopted}; wrote {path}."
        ));
    } else {
        out::line(&format!(
            "Lock: {kept} unchanged{adopted}; {path} is up to date."
        ));
    }
    if let Some(n) = requests {
        report_requests(ctx, n);
    }
    Ok(Exit::Ok)
}

/// One line of `eigenpub lock`'s output for a changed entry.
fn line(change: &EntryChange) -> String {
    match change {
        EntryChange::Added(e) => format!("+ pin    {} {}", e.name(), e.digest),
        EntryChange::Changed {
            before,
            after,
            fields,
        } => {
            let mut line = format!("~ repin  {} {} changed", after.name(), fields.join(", "));
            if before.digest != after.digest {
                line.push_str(&format!(": {} -> {}", before.digest, after.digest));
            }
            line
        }
        EntryChange::Removed(e) => format!("- unpin  {} (no longer in the project)", e.name()),
    }
}

/// Before planning: the lock against the project, offline. Returns the entries that are
/// out of date (already reported as warnings); fails, with each entry named, when
/// `--locked` is given and the lock is missing or out of date.
pub(super) fn check_offline(
    ctx: &Context,
    project: &Project,
    locked: bool,
) -> Result<Vec<EntryChange>, Failure> {
    let (changes, problems) = offline_problems(project, locked);
    if locked && !problems.is_empty() {
        let closing = if project.lock.is_some() {
            format!(
                "{} is out of date ({} entr{}); nothing was planned or pushed",
                project.lock_path.display(),
                changes.len(),
                if changes.len() == 1 { "y" } else { "ies" }
            )
        } else {
            "nothing was planned or pushed".to_string()
        };
        return Err(Failure {
            problems,
            closing: Some(closing),
            ..Failure::default()
        });
    }
    if !ctx.quiet() && !problems.is_empty() {
        ctx.diagnostics.print(&problems);
    }
    Ok(changes)
}

/// The lock's entries that are out of date, and a problem for each (errors with
/// `--locked`, which also requires the lock to exist; warnings without).
pub(super) fn offline_problems(
    project: &Project,
    locked: bool,
) -> (Vec<EntryChange>, Vec<Problem>) {
    let Some(lock) = &project.lock else {
        let missing = Problem::error(
            codes::LOCK_MISSING,
            format!(
                "--locked: there is no lock ({})",
                project.lock_path.display()
            ),
        )
        .help("run `eigenpub lock`, review eigenruntime.lock and commit it");
        return (Vec::new(), if locked { vec![missing] } else { Vec::new() });
    };
    let (_, changes) =
        lock::update_with_mirrors(Some(lock), &project.publications, &project.mirrors, &[]);
    let problems = changes
        .iter()
        .map(|c| out_of_date(lock, c, locked))
        .collect();
    (changes, problems)
}

fn out_of_date(lock: &Lock, change: &EntryChange, locked: bool) -> Problem {
    let message = format!("lock out of date: {change}");
    let mut problem = if locked {
        Problem::error(codes::LOCK_OUT_OF_DATE, message)
    } else {
        Problem::warning(codes::LOCK_OUT_OF_DATE, message)
    };
    let (avs, opset) = change.key();
    if let (Some(file), Some(span)) = (&lock.file, lock.span(avs, opset)) {
        problem = problem.at(file, span, "this entry");
    }
    problem.help("run `eigenpub lock` and commit eigenruntime.lock with the change (a changed spec gets a fresh created time and digest)")
}

/// After planning: every artifact must land on its locked digest. Warnings without
/// `--locked`; with it, a failure naming each artifact, before anything is pushed.
pub(super) fn check_plan(
    ctx: &Context,
    project: &Project,
    plan: &Plan,
    stale: &[EntryChange],
    locked: bool,
) -> Result<(), Failure> {
    let Some(lock) = &project.lock else {
        return Ok(());
    };
    let found = locked::mismatches(lock, plan, stale);
    if found.is_empty() {
        return Ok(());
    }
    let problems: Vec<Problem> = found
        .iter()
        .map(|m| {
            let problem = if locked {
                Problem::error(codes::LOCK_DIGEST, m.to_string())
            } else {
                Problem::warning(codes::LOCK_DIGEST, m.to_string())
            };
            let problem = match (&lock.file, lock.span(&m.avs, m.operator_set)) {
                (Some(file), Some(span)) => problem.at(file, span, "this entry"),
                _ => problem,
            };
            problem.help(if m.equivalent.is_some() {
                "run `eigenpub lock --registry` to pin the digest the tag holds, and commit eigenruntime.lock"
            } else {
                "the tag no longer holds the locked digest: find out who moved it (`eigenpub verify`), or pin what would be published with `eigenpub lock --registry`"
            })
        })
        .collect();
    if locked {
        return Err(Failure {
            problems,
            closing: Some(format!(
                "{} artifact{} would not hold {} locked digest; nothing was pushed",
                found.len(),
                plural(found.len()),
                if found.len() == 1 { "its" } else { "their" }
            )),
            ..Failure::default()
        });
    }
    if !ctx.quiet() {
        ctx.diagnostics.print(&problems);
    }
    Ok(())
}
