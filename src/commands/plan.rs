//! `eigenpub plan`: what apply would change, as text, JSON or a pull-request comment; and
//! [`make_plan`], the first half that `apply` shares (load, select, connect, observe, diff).

use super::{
    Context, Exit, Failure, Outcome, connections, load_project, report_requests, write_file,
};
use crate::cli::PlanArgs;
use crate::diagnostic::Problem;
use crate::plan::saved::{self, PlanDocument};
use crate::plan::select::Selection;
use crate::plan::{self, Overwrite, Plan, previous};
use crate::project::Project;
use crate::registry::Targets;
use crate::registry::remote::Access;
use crate::report::progress::ObserveBar;
use crate::report::{self, PlanFormat, text};

/// A plan made against the targets, with what produced it.
pub(super) struct Planned {
    pub project: Project,
    pub targets: Targets,
    pub plan: Plan,
    pub document: PlanDocument,
}

/// Loads, selects, connects and observes: the shared first half of `plan` and `apply`.
pub(super) async fn make_plan(
    ctx: &Context,
    access: Access,
    overwrite: Overwrite,
    selection: &Selection,
) -> Result<Planned, Failure> {
    let mut project = load_project(ctx)?;
    if !selection.is_everything() {
        let all = project.publications.len();
        project.publications = selection.apply(std::mem::take(&mut project.publications));
        if project.publications.is_empty() && !ctx.quiet() {
            let p = Problem::warning(
                "eigenpub::select::empty",
                format!("the selection matches none of the project's {all} artifacts"),
            )
            .help("--select and --exclude match the AVS name, `avs/opset`, or `repository:tag`");
            ctx.diagnostics.print(&[p]);
        }
    }
    let targets = Targets::connect(connections(&project), access).await?;
    let concurrency = ctx.concurrency(project.concurrency);
    let bar = ObserveBar::new(
        project.publications.len(),
        !ctx.quiet() && ctx.stderr_is_terminal,
    );
    let observed = plan::observe(
        &targets,
        &project.publications,
        overwrite,
        concurrency,
        &|| bar.inc(),
    )
    .await;
    bar.finish();
    let observed =
        observed.map_err(|errors| plan::observe_problems(&errors, &project.publications))?;
    let hash = saved::inputs_hash(&project.file.text, &project.publications);
    let plan = plan::diff(project.publications.clone(), observed, overwrite);
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
    })
}

pub(super) async fn run(ctx: &Context, args: &PlanArgs) -> Outcome {
    let overwrite = Overwrite::from_flag(args.allow_overwrite);
    let planned = make_plan(ctx, Access::Pull, overwrite, &ctx.selection).await?;
    let Planned {
        project,
        targets,
        plan,
        document,
    } = &planned;
    match args.format {
        PlanFormat::Text => print!("{}", text::plan(plan, ctx.stdout, ctx.verbose())),
        PlanFormat::Json => println!("{}", report::json::plan_text(document)),
        PlanFormat::Markdown => {
            let concurrency = ctx.concurrency(project.concurrency);
            let contents = previous::for_review(targets, plan, concurrency)
                .await
                .map_err(|e| e.to_problem())?;
            print!("{}", report::markdown::plan(plan, &contents, ctx.verbose()));
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
    Ok(if args.detailed_exitcode && plan.has_changes() {
        Exit::Changes
    } else {
        Exit::Ok
    })
}
