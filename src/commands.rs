//! The commands: `validate`, `plan`, `apply`. Each loads the project, does its work through
//! the pure core and the targets, prints through a renderer, and returns an exit code:
//! 0 success, 1 error (or failed pushes), 2 changes present (`plan --detailed-exitcode`).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::apply::{self, Outcome};
use crate::cli::{ApplyArgs, Cli, ColorChoice, Command, Global, PlanArgs, ValidateArgs};
use crate::diagnostic::Problem;
use crate::load::{self, Env, Project};
use crate::plan::{self, Plan};
use crate::report::progress::Printer;
use crate::report::text::{self, Style};
use crate::report::{self, DiagnosticFormat, Format};
use crate::target::Targets;
use crate::target::remote::Access;

/// Exit codes.
const OK: u8 = 0;
const FAILED: u8 = 1;
const CHANGES: u8 = 2;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(FAILED);
        }
    };
    let code = runtime.block_on(async {
        match &cli.command {
            Command::Validate(args) => validate(&cli.global, args),
            Command::Plan(args) => plan_command(&cli.global, args).await,
            Command::Apply(args) => apply_command(&cli.global, args).await,
        }
    });
    // Do not wait for stray blocking tasks (a hung credential helper) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    ExitCode::from(code)
}

/// Colour on standard output / standard error, from `--color` and `NO_COLOR`.
fn color(global: &Global, stream_is_terminal: bool) -> bool {
    match global.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

fn stderr_color(global: &Global) -> bool {
    color(global, std::io::stderr().is_terminal())
}

fn stdout_style(global: &Global) -> Style {
    Style {
        color: color(global, std::io::stdout().is_terminal()),
    }
}

/// Loads the project; prints its problems. `None` when it has errors.
fn load_project(global: &Global, format: DiagnosticFormat) -> Option<Project> {
    match load::load(&global.config, &Env::from_process()) {
        Ok(project) => {
            if !global.quiet && !project.warnings.is_empty() {
                report::print_problems(&project.warnings, format, stderr_color(global));
            }
            Some(project)
        }
        Err(problems) => {
            let problems = problems.sorted();
            report::print_problems(&problems, format, stderr_color(global));
            let errors = problems.iter().filter(|p| p.is_error()).count();
            if format == DiagnosticFormat::Human {
                eprintln!(
                    "error: {errors} problem{} found; nothing was planned or pushed",
                    if errors == 1 { "" } else { "s" }
                );
            }
            None
        }
    }
}

fn concurrency(global: &Global, project: &Project) -> usize {
    global
        .concurrency
        .map(|c| c as usize)
        .unwrap_or(project.concurrency)
}

fn validate(global: &Global, args: &ValidateArgs) -> u8 {
    let Some(project) = load_project(global, args.format) else {
        return FAILED;
    };
    if args.format == DiagnosticFormat::Json && project.warnings.is_empty() {
        eprintln!("{}", report::json::problems(&[]));
    }
    if !global.quiet {
        let avs: std::collections::BTreeSet<&str> = project
            .publications
            .iter()
            .map(|p| p.avs.as_str())
            .collect();
        println!(
            "Valid: {} artifact{} for {} AVS{}.",
            project.publications.len(),
            if project.publications.len() == 1 {
                ""
            } else {
                "s"
            },
            avs.len(),
            if avs.len() == 1 { "" } else { "s" },
        );
    }
    OK
}

/// Loads, connects and observes: the shared first half of `plan` and `apply`.
async fn make_plan(
    global: &Global,
    diagnostics: DiagnosticFormat,
    access: Access,
    allow_overwrite: bool,
) -> Result<(Project, Targets, Plan), u8> {
    let project = load_project(global, diagnostics).ok_or(FAILED)?;
    let targets = match Targets::connect(&project, access).await {
        Ok(mut t) => {
            t.allow_overwrite = allow_overwrite;
            t
        }
        Err(problems) => {
            report::print_problems(&problems, diagnostics, stderr_color(global));
            return Err(FAILED);
        }
    };
    let observed = match plan::observe(
        &targets,
        &project.publications,
        concurrency(global, &project),
    )
    .await
    {
        Ok(o) => o,
        Err(errors) => {
            // One line per distinct failure (an unreachable registry fails every tag alike).
            let mut seen = std::collections::BTreeMap::new();
            for (i, e) in &errors {
                seen.entry(e.message.clone())
                    .or_insert((e.clone(), Vec::new()))
                    .1
                    .push(*i);
            }
            let problems: Vec<Problem> = seen
                .into_values()
                .map(|(e, indices)| {
                    let first = &project.publications[indices[0]];
                    let mut p = e.to_problem();
                    p.message = if indices.len() == 1 {
                        format!("{} (while reading {})", p.message, first.reference())
                    } else {
                        format!(
                            "{} (while reading {} and {} other tag{})",
                            p.message,
                            first.reference(),
                            indices.len() - 1,
                            if indices.len() == 2 { "" } else { "s" }
                        )
                    };
                    p
                })
                .collect();
            report::print_problems(&problems, diagnostics, stderr_color(global));
            return Err(FAILED);
        }
    };
    let publications = project.publications.clone();
    let plan = plan::diff(publications, observed, allow_overwrite);
    Ok((project, targets, plan))
}

fn report_requests(global: &Global, targets: &Targets) {
    if global.verbose {
        eprintln!(
            "{} registry request{}",
            targets.requests(),
            if targets.requests() == 1 { "" } else { "s" }
        );
    }
}

async fn plan_command(global: &Global, args: &PlanArgs) -> u8 {
    let (_project, targets, plan) =
        match make_plan(global, args.diagnostics, Access::Pull, args.allow_overwrite).await {
            Ok(x) => x,
            Err(code) => return code,
        };
    match args.format {
        Format::Text => print!(
            "{}",
            text::plan(&plan, stdout_style(global), global.verbose)
        ),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report::json::plan(&plan)).expect("JSON")
        ),
    }
    report_requests(global, &targets);
    if args.detailed_exitcode && plan.has_changes() {
        CHANGES
    } else {
        OK
    }
}

async fn apply_command(global: &Global, args: &ApplyArgs) -> u8 {
    let (project, targets, plan) =
        match make_plan(global, args.diagnostics, Access::Push, args.allow_overwrite).await {
            Ok(x) => x,
            Err(code) => return code,
        };
    let style = stdout_style(global);
    if plan.refused().next().is_some() {
        let refused: Vec<_> = plan.refused().collect();
        if args.format == Format::Text {
            for change in &refused {
                if let Some(line) = text::change_line(change, style, false) {
                    println!("{line}");
                }
            }
        }
        let problem = Problem::error(
            "eigenpub::apply::refused-overwrite",
            format!(
                "{} published tag{} would be overwritten with different content; nothing was pushed",
                refused.len(),
                if refused.len() == 1 { "" } else { "s" }
            ),
        )
        .help("published tags are immutable by default (their digests may be on chain): bump `version` so a new tag is made, or, if overwriting is really intended, pass --allow-overwrite or list the tags in `mutable-tags`");
        report::print_problems(&[problem], args.diagnostics, stderr_color(global));
        if args.format == Format::Json {
            let outcomes = vec![Outcome::NotStarted; plan.changes.len()];
            println!(
                "{}",
                serde_json::to_string_pretty(&report::json::apply(&plan, &outcomes)).expect("JSON")
            );
        }
        return FAILED;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let signals = watch_signals(stop.clone(), global.quiet);
    let to_push = plan.changes.iter().filter(|c| c.action.pushes()).count();
    let printer = Printer::new(
        global.quiet,
        args.format == Format::Text,
        std::io::stderr().is_terminal(),
        to_push,
        style,
    );
    let options = apply::Options {
        concurrency: concurrency(global, &project),
        fail_fast: args.fail_fast,
        stop: stop.clone(),
    };
    let outcomes = apply::apply(&plan, &targets, &options, &printer).await;
    printer.finish();
    signals.abort();
    let totals = apply::totals(&outcomes);
    match args.format {
        Format::Text => {
            if global.verbose {
                for (change, outcome) in plan.changes.iter().zip(&outcomes) {
                    if matches!(outcome, Outcome::Unchanged) {
                        println!("{}", text::outcome_line(change, outcome, style));
                    }
                }
            }
            if stop.load(Ordering::SeqCst) && totals.not_started > 0 {
                for (change, outcome) in plan.changes.iter().zip(&outcomes) {
                    if matches!(outcome, Outcome::NotStarted) && change.action.pushes() {
                        println!("{}", text::outcome_line(change, outcome, style));
                    }
                }
            }
            println!("{}", style.bold(&text::apply_summary(&outcomes)));
        }
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report::json::apply(&plan, &outcomes)).expect("JSON")
        ),
    }
    report_requests(global, &targets);
    if totals.failed > 0 || totals.not_started > 0 {
        if totals.failed > 0 && args.format == Format::Text && !global.quiet {
            eprintln!(
                "error: {} artifact{} failed; run apply again to push what is missing (what landed is kept)",
                totals.failed,
                if totals.failed == 1 { "" } else { "s" }
            );
        }
        FAILED
    } else {
        OK
    }
}

/// Ctrl-C or SIGTERM once: stop starting new work. Twice: exit at once.
fn watch_signals(stop: Arc<AtomicBool>, quiet: bool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            wait_for_signal().await;
            count += 1;
            if count == 1 {
                stop.store(true, Ordering::SeqCst);
                if !quiet {
                    eprintln!(
                        "\nStopping: no new artifacts will be started; waiting for those in flight (press Ctrl-C again to exit now)."
                    );
                }
            } else {
                eprintln!(
                    "\nExiting now. Tags already pushed are complete; run apply again to finish."
                );
                std::process::exit(130);
            }
        }
    })
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
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
