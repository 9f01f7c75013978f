//! `eigenpub plan`: what apply would change, as text, JSON or a pull-request comment; and
//! [`make_plan`], the first half that `apply` shares (load, select, connect, observe, diff).

use super::{
    Context, Exit, Failure, Outcome, connections, load_project, report_requests, write_file,
};
use crate::cli::PlanArgs;
use crate::diagnostic::Problem;
use crate::diagnostic::codes;
use crate::plan::cache::Cache;
use crate::plan::saved::{self, PlanDocument};
use crate::plan::select::Selection;
use crate::plan::{self, Overwrite, Plan, mirror, previous};
use crate::project::Project;
use crate::registry::Targets;
use crate::registry::remote::Access;
use crate::report::progress::ObserveBar;
use crate::report::{self, PlanFormat, out, text};

/// A plan made against the targets, with what produced it.
pub(super) struct Planned {
    /// The project, its publications moved into `plan`.
    pub project: Project,
    pub targets: Targets,
    pub plan: Plan,
    pub document: PlanDocument,
    /// The cache the plan read through; trimmed when the command is done with it.
    pub cache: Cache,
}

/// Loads, selects, connects and observes: the shared first half of `plan` and `apply`.
pub(super) async fn make_plan(
    ctx: &Context,
    access: Access,
    overwrite: Overwrite,
    selection: &Selection,
    locked: bool,
) -> Result<Planned, Failure> {
    let mut project = load_project(ctx)?;
    let everything = |mut failure: Failure, project: &Project| {
        failure.not_attempted = project.publications.iter().map(|p| p.reference()).collect();
        failure
    };
    // The lock covers the whole project, so it is checked before the selection.
    let stale =
        super::lock::check_offline(ctx, &project, locked).map_err(|f| everything(f, &project))?;
    // Every glob must match something: a typo would otherwise pass as "no changes", or
    // publish what an --exclude meant to leave out.
    let problems = selection.check(project.publications.iter().chain(&project.mirrors));
    project.publications = selection.apply(std::mem::take(&mut project.publications));
    if !problems.is_empty() {
        return Err(everything(problems.into(), &project));
    }
    // Every artifact on every target: each primary followed by its mirrors' copies.
    let mirrors = mirror::in_scope(
        selection,
        &project.publications,
        std::mem::take(&mut project.mirrors),
    );
    project.publications = mirror::interleave(std::mem::take(&mut project.publications), mirrors);
    let not_attempted = |problems: Vec<Problem>, project: &Project| Failure {
        problems,
        not_attempted: project.publications.iter().map(|p| p.reference()).collect(),
        ..Failure::default()
    };
    let targets = Targets::connect(connections(&project), access)
        .await
        .map_err(|problems| not_attempted(problems, &project))?;
    let concurrency = ctx.concurrency(project.concurrency);
    let cache = cache(ctx);
    let bar = ObserveBar::new(
        project.publications.len(),
        &super::places(&project.publications),
        !ctx.quiet() && ctx.stderr_is_terminal,
    );
    let observed = plan::observe_each(
        &targets,
        &project.publications,
        overwrite,
        concurrency,
        &cache,
        &|| bar.inc(),
    )
    .await;
    bar.finish();
    let notes = targets.notes();
    if !ctx.quiet() && !notes.is_empty() {
        ctx.diagnostics.print(&notes);
    }
    // Nothing could be read: nothing to plan. Otherwise the unreadable tags are in the
    // plan as such, and everything else goes ahead.
    if !observed.is_empty() && observed.iter().all(Result::is_err) {
        cache.trim().await;
        let errors = plan::all_read(observed).err().unwrap_or_default();
        return Err(not_attempted(
            plan::observe_problems(&errors, &project.publications),
            &project,
        ));
    }
    let hash = saved::inputs_hash(&project.file.text, &project.publications);
    // A mirror holds exactly the digest its primary holds (or will hold); one whose
    // primary could not be read, or whose copy cannot be made, is unreadable.
    let mut observed = observed;
    mirror::copy_adopted(
        &targets,
        &cache,
        &mut project.publications,
        &mut observed,
        concurrency,
    )
    .await;
    // The plan owns the publications from here on (no second copy of every artifact).
    let plan = plan::diff_read(
        std::mem::take(&mut project.publications),
        observed,
        overwrite,
    );
    super::lock::check_plan(ctx, &project, &plan, &stale, locked).map_err(|mut f| {
        f.not_attempted = plan
            .changes
            .iter()
            .map(|c| c.publication.reference())
            .collect();
        f
    })?;
    let document = PlanDocument::new(
        &plan,
        &hash,
        overwrite.allowed(),
        &selection.select,
        &selection.exclude,
    );
    Ok(Planned {
        project,
        targets,
        plan,
        document,
        cache,
    })
}

/// The run's cache of manifests and configs (see [`crate::plan::cache`]), and a warning
/// when it is off for a reason (see [`Cache::from_env`]).
pub(super) fn cache(ctx: &Context) -> Cache {
    let (cache, warning) = Cache::from_env(&ctx.project_folders());
    if let Some(warning) = warning
        && !ctx.quiet()
    {
        eprintln!("warning: {warning}");
    }
    cache
}

/// The problems of a plan's unreadable tags, one per repository (`consequence`: what
/// became of their artifacts).
pub(super) fn unreadable_problems(plan: &Plan, consequence: &str) -> Vec<Problem> {
    plan::unread_problems(
        plan.unreadable().map(|(c, e)| (&c.publication, e)),
        consequence,
    )
}

pub(super) async fn run(ctx: &Context, args: &PlanArgs) -> Outcome {
    let overwrite = Overwrite::from_flag(args.allow_overwrite);
    let planned = make_plan(ctx, Access::Pull, overwrite, &ctx.selection, args.locked).await?;
    let Planned {
        project,
        targets,
        plan,
        document,
        cache,
    } = &planned;
    match args.format {
        PlanFormat::Text if ctx.quiet() => {
            out::line(&ctx.stdout.bold(&text::plan_summary(plan)));
        }
        PlanFormat::Text => out::print(&text::plan(plan, ctx.stdout, ctx.verbose())),
        PlanFormat::Json => out::line(&report::json::plan_text(document)),
        PlanFormat::Markdown => {
            let concurrency = ctx.concurrency(project.concurrency);
            let (contents, unread) = previous::for_review(targets, cache, plan, concurrency).await;
            if !unread.is_empty() && !ctx.quiet() {
                // The comment goes out without those diffs; say which and why.
                let problems: Vec<Problem> = unread
                    .iter()
                    .map(|(i, e)| {
                        let mut p = e.to_problem();
                        p.severity = crate::diagnostic::Severity::Warning;
                        p.message = format!(
                            "{}: what the tag holds could not be read, so the comment shows no diff for it: {}",
                            plan.changes[*i].publication.reference(),
                            p.message
                        );
                        p
                    })
                    .collect();
                ctx.diagnostics.print(&problems);
            }
            out::print(&report::markdown::plan(plan, &contents, ctx.verbose()));
        }
    }
    if let Some(out) = &args.out {
        write_file(
            out,
            report::json::plan_text(document).as_bytes(),
            "the plan",
        )?;
        if !ctx.quiet() {
            eprintln!(
                "Saved the plan to {}; apply exactly it with `eigenpub apply {}`.",
                out.display(),
                out.display()
            );
        }
    }
    report_requests(ctx, targets.requests());
    cache.trim().await;
    // Unreadable tags: apply would push everything else, and fail on those.
    let mut problems = unreadable_problems(plan, "not planned");
    let refused = plan.refused().count();
    if refused > 0 {
        // apply would refuse this plan: a pull-request check must not stay green.
        problems.push(refused_overwrite(refused, "apply would refuse to push"));
    }
    if !problems.is_empty() {
        return Err(Failure {
            problems,
            document_printed: true,
            ..Failure::default()
        });
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        Exit::Changes
    } else {
        Exit::Ok
    })
}

/// The problem a plan with refused overwrites is: `plan` and `apply` say the same.
pub(super) fn refused_overwrite(refused: usize, consequence: &str) -> Problem {
    Problem::error(
        codes::APPLY_REFUSED_OVERWRITE,
        format!(
            "{refused} published tag{} would be overwritten with different content; {consequence}",
            super::plural(refused)
        ),
    )
    .help("published tags are immutable by default (their digests may be on chain): bump `version` so a new tag is made, or, if overwriting is really intended, pass --allow-overwrite or list the tags in `mutable-tags`")
}
