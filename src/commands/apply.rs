//! `eigenpub apply [PLAN]`: push what the plan shows as changed, or exactly a saved plan.
//! Refused overwrites and stale saved plans stop it before anything is pushed.

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;

use super::plan::{Planned, make_plan};
use super::{Context, Exit, Failure, Outcome, plural, report_requests, write_file};
use crate::apply::{self, Applied, RunState};
use crate::cli::ApplyArgs;
use crate::diagnostic::Problem;
use crate::diagnostic::codes;
use crate::plan::saved::{self, PlanDocument};
use crate::plan::select::Selection;
use crate::plan::{self, Overwrite, Plan};
use crate::registry::TargetError;
use crate::registry::remote::Access;
use crate::report::progress::{Notices, Printer};
use crate::report::release;
use crate::report::text;
use crate::report::{self, Format, out};

/// In-flight artifacts get this long to finish after Ctrl-C before they are cancelled.
const GRACE: Duration = Duration::from_secs(3);

pub(super) async fn run(ctx: &Context, args: &ApplyArgs) -> Outcome {
    // A saved plan only narrows: its selection on top of the project's artifacts (the
    // command line's selection narrows further, below), and never an overwrite permission
    // of its own: that comes from this command line alone (see `plan::saved`).
    let saved = args.plan.as_deref().map(read_saved_plan).transpose()?;
    let overwrite = Overwrite::from_flag(args.allow_overwrite);
    let selection = match &saved {
        Some(doc) => Selection::new(&doc.select, &doc.exclude).map_err(|m| {
            Problem::error(
                codes::APPLY_SAVED_PLAN_INVALID,
                format!("the saved plan's selection is invalid: {m}"),
            )
            .help("make a new plan with `eigenpub plan --out FILE`")
        })?,
        None => ctx.selection.clone(),
    };
    let Planned {
        project,
        targets,
        mut plan,
        mut document,
        cache,
    } = make_plan(ctx, Access::Push, overwrite, &selection, args.locked).await?;
    // The plan's reads are done: the cache is trimmed now, before the pushes.
    cache.trim().await;

    if let Some(saved) = &saved {
        // Compared with the saved options, so that the hashes compare the project's inputs
        // only; what may be done is decided by the actions, made with this run's options.
        let inputs = saved::inputs_hash(
            &project.file.text,
            plan.changes.iter().map(|c| &c.publication),
        );
        document = PlanDocument::new(
            &plan,
            &inputs,
            saved.allow_overwrite,
            &saved.select,
            &saved.exclude,
        );
        let problems = saved_plan_problems(saved, &document, args.plan.as_deref());
        if !problems.is_empty() {
            let not_attempted = references(&plan);
            print_not_started(args, &document.inputs_hash, plan);
            return Err(Failure {
                problems,
                not_attempted,
                document_printed: args.format == Format::Json,
                ..Failure::default()
            });
        }
        // The command line's selection narrows the reviewed plan (never widens it).
        // Every glob must match one of the plan's artifacts (see `Selection::check`).
        let problems = ctx
            .selection
            .check(plan.changes.iter().map(|c| &c.publication));
        if !problems.is_empty() {
            return Err(problems.into());
        }
        plan.changes
            .retain(|c| ctx.selection.matches(&c.publication));
        not_reviewed(saved, &mut plan);
    }
    // From here on only the inputs hash of the plan document is needed (the JSON result
    // names it); its artifact list, as large as the plan, goes.
    let inputs_hash = document.inputs_hash.clone();
    drop(document);
    let refused = plan.refused().count();
    if refused > 0 {
        if args.format == Format::Text {
            for change in plan.refused() {
                if let Some(line) = text::change_line(change, ctx.stdout, false) {
                    out::line(&line);
                }
            }
        }
        let not_attempted = references(&plan);
        let mut problems = super::plan::unreadable_problems(&plan, "not pushed");
        problems.push(super::plan::refused_overwrite(
            refused,
            "nothing was pushed",
        ));
        print_not_started(args, &inputs_hash, plan);
        return Err(Failure {
            problems,
            not_attempted,
            document_printed: args.format == Format::Json,
            ..Failure::default()
        });
    }
    // --fail-fast: a tag that could not be read is a failure known before any push.
    if args.fail_fast && plan.unreadable().next().is_some() {
        let not_attempted = references(&plan);
        let problems = super::plan::unreadable_problems(&plan, "not pushed");
        print_not_started(args, &inputs_hash, plan);
        return Err(Failure {
            problems,
            closing: Some("--fail-fast: some tags could not be read, so nothing was pushed".into()),
            not_attempted,
            document_printed: args.format == Format::Json,
        });
    }

    let to_push = plan.changes.iter().filter(|c| c.action.pushes()).count();
    let places = super::places(
        plan.changes
            .iter()
            .filter(|c| c.action.pushes())
            .map(|c| &c.publication),
    );
    let printer = Printer::new(
        ctx.quiet(),
        ctx.verbose(),
        args.format == Format::Text,
        ctx.stderr_is_terminal,
        ctx.stdout_is_terminal,
        to_push,
        &places,
        ctx.stdout,
    );
    // Notices go above the bars, so that a redraw does not erase them.
    let (state_tx, state) = watch::channel(RunState::Running);
    let signals = watch_signals(state_tx, ctx.quiet(), printer.notices());
    let options = apply::Options {
        // Each target (a registry, or the layouts) gets the project's concurrency, under
        // its own pacing: a mirror adds its registry's work, not a share of the primary's.
        concurrency: ctx.concurrency(project.concurrency) * crate::plan::mirror::targets(&plan),
        fail_fast: args.fail_fast,
        state: state.clone(),
        grace: GRACE,
    };
    let applied = apply::apply(plan, &targets, &options, &printer).await;
    printer.finish();
    signals.abort();
    let stopped = *state.borrow() != RunState::Running;
    print_results(ctx, args, &inputs_hash, &applied, stopped);

    let mut exit = Exit::Ok;
    if let Some(path) = &args.release_json {
        let record = serde_json::to_string_pretty(&release::record(&applied)).expect("JSON");
        // The same document, escaped where a job log would read a workflow command.
        let bytes = crate::sanitize::guard(&record).into_owned().into_bytes();
        if let Err(problem) = write_file(path, &bytes, "the release record") {
            ctx.diagnostics.print(&[problem]);
            exit = Exit::Failed;
        }
    }
    report_requests(ctx, targets.requests());
    if out::closed() {
        eprintln!(
            "warning: standard output was closed, so some results were not printed; the apply itself ran to its end"
        );
    }
    // One problem per repository that could not be read or written, naming its artifacts.
    let problems = apply::problems(&applied);
    if !problems.is_empty() {
        ctx.diagnostics.print(&problems);
    }
    let totals = apply::totals(&applied);
    if totals.failed > 0 || totals.not_started > 0 {
        if totals.failed > 0 && args.format == Format::Text && !ctx.quiet() {
            eprintln!(
                "error: {} artifact{} failed; run apply again to push what is missing (what landed is kept)",
                totals.failed,
                plural(totals.failed)
            );
        }
        exit = Exit::Failed;
    }
    Ok(exit)
}

/// The results: a line per artifact worth naming and the summary, or the JSON document.
fn print_results(
    ctx: &Context,
    args: &ApplyArgs,
    inputs_hash: &str,
    applied: &[Applied],
    stopped: bool,
) {
    let style = ctx.stdout;
    match args.format {
        Format::Text => {
            for a in applied {
                let unchanged = matches!(a.outcome, apply::Outcome::Unchanged);
                let cut_short = matches!(a.outcome, apply::Outcome::Interrupted)
                    || (matches!(a.outcome, apply::Outcome::NotStarted)
                        && a.change.action.pushes());
                if (unchanged && ctx.verbose()) || (cut_short && stopped) {
                    out::line(&text::outcome_line(&a.change, &a.outcome, style));
                }
            }
            let mut summary = text::apply_summary(applied);
            if stopped {
                // "Apply interrupted: 3 pushed, …, 36 not started."
                summary = summary.replacen("Apply:", "Apply interrupted:", 1);
            }
            out::line(&style.bold(&summary));
            if !ctx.quiet() {
                out::print(&text::apply_target_lines(applied));
            }
        }
        Format::Json => out::line(
            &serde_json::to_string_pretty(&report::json::apply(inputs_hash, applied))
                .expect("JSON"),
        ),
    }
}

/// With `--format json`, a run stopped before pushing still prints its document: every
/// artifact not started.
fn print_not_started(args: &ApplyArgs, inputs_hash: &str, plan: Plan) {
    if args.format == Format::Json {
        let applied: Vec<Applied> = plan
            .changes
            .into_iter()
            .map(|change| Applied {
                change,
                outcome: apply::Outcome::NotStarted,
            })
            .collect();
        out::line(
            &serde_json::to_string_pretty(&report::json::apply(inputs_hash, &applied))
                .expect("JSON"),
        );
    }
}

/// Why a saved plan may not be applied by this run: the overwrites it needs that this
/// command line does not allow (with what to add), then every way it went stale.
fn saved_plan_problems(
    saved: &PlanDocument,
    now: &PlanDocument,
    path: Option<&Path>,
) -> Vec<Problem> {
    let overwrites = saved::overwrites_not_allowed(saved, now);
    let mut problems = Vec::new();
    if !overwrites.is_empty() {
        let file = path.map_or_else(|| "PLAN".to_string(), |p| p.display().to_string());
        problems.push(
            Problem::error(
                codes::APPLY_SAVED_PLAN_OVERWRITE,
                format!(
                    "the saved plan moves {} published immutable tag{} to other content ({}), and this apply was not given --allow-overwrite",
                    overwrites.len(),
                    plural(overwrites.len()),
                    overwrites.join(", ")
                ),
            )
            .help(format!(
                "nothing was pushed; a saved plan's `allow_overwrite` is not a permission: only the apply command line gives it. If overwriting was reviewed and is intended, run `eigenpub apply --allow-overwrite {file}`; otherwise bump `version` and make a new plan"
            )),
        );
    }
    problems.extend(
        saved::check(saved, now)
            .into_iter()
            // A `refused` now where the saved plan moves the tag is the problem above.
            .filter(|s| !matches!(s, saved::Stale::Action { reference, now, .. } if now == "refused" && overwrites.contains(reference)))
            .map(|s| {
                Problem::error(codes::APPLY_STALE_PLAN, format!("the saved plan is stale: {s}"))
                    .help("nothing was pushed; make a new plan (`eigenpub plan --out FILE`), review it, and apply that")
            }),
    );
    problems
}

/// A saved plan's artifacts whose tags could not be read when it was made were not
/// reviewed: they are not pushed (nor refused) now, whatever the registry says today (unless
/// the tag already holds what they would push). The reviewed rest goes ahead.
fn not_reviewed(saved: &PlanDocument, plan: &mut Plan) {
    let unread: std::collections::HashSet<(&str, &str)> = saved
        .artifacts
        .iter()
        .filter(|a| a.action == plan::Action::UNREADABLE)
        .map(|a| (a.repository.as_str(), a.tag.as_str()))
        .collect();
    if unread.is_empty() {
        return;
    }
    for change in &mut plan.changes {
        let p = &change.publication;
        let key = (p.repository.to_string(), p.tag.to_string());
        let settled = matches!(
            change.action,
            plan::Action::Unchanged | plan::Action::Unreadable { .. }
        );
        if settled || !unread.contains(&(key.0.as_str(), key.1.as_str())) {
            continue;
        }
        change.action = plan::Action::Unreadable {
            reason: Box::new(TargetError {
                target: key.0.clone(),
                code: codes::APPLY_NOT_REVIEWED,
                message: "its tag could not be read when the saved plan was made, so the plan did not review it".into(),
                help: "nothing was pushed to it; make a new plan (`eigenpub plan --out FILE`), review it, and apply that".into(),
                transient: false,
                kind: None,
                status: None,
            }),
        };
    }
}

/// `repository:tag` of every artifact of a plan.
fn references(plan: &Plan) -> Vec<String> {
    plan.changes
        .iter()
        .map(|c| c.publication.reference())
        .collect()
}

fn read_saved_plan(path: &Path) -> Result<PlanDocument, Failure> {
    let invalid = |message: String| {
        Failure::from(
            Problem::error(codes::APPLY_SAVED_PLAN_INVALID, message)
                .help("pass a file written by `eigenpub plan --out FILE`, or make a new plan"),
        )
    };
    let bytes = crate::project::paths::read_regular(path, crate::project::paths::max_file_size())
        .map_err(|e| {
        invalid(format!(
            "cannot read the saved plan {}: {e}",
            path.display()
        ))
    })?;
    let doc: PlanDocument = serde_json::from_slice(&bytes).map_err(|e| {
        invalid(format!(
            "{} is not a plan saved by `eigenpub plan --out` ({e})",
            path.display()
        ))
    })?;
    if doc.format_version != saved::FORMAT_VERSION {
        return Err(invalid(format!(
            "{} has plan format {}; this eigenpub reads format {}",
            path.display(),
            doc.format_version,
            saved::FORMAT_VERSION
        )));
    }
    Ok(doc)
}

/// Ctrl-C or SIGTERM once: stop starting new work, and after the grace period cancel what
/// is in flight. Twice: exit at once.
fn watch_signals(
    state: watch::Sender<RunState>,
    quiet: bool,
    notices: Notices,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        wait_for_signal().await;
        state.send_replace(RunState::Interrupted);
        if !quiet {
            notices.say(&format!(
                "Stopping: no new artifacts will be started; those in flight get {} seconds to finish (press Ctrl-C again to exit now).",
                GRACE.as_secs()
            ));
        }
        wait_for_signal().await;
        notices.last_words(
            "Exiting now (interrupted twice). Tags already pushed are complete; run apply again to finish.",
        );
        std::process::exit(130);
    })
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
