//! The commands, one file each. A command gets the resolved [`Context`] and its own
//! arguments, does its work through the pipeline, prints its result, and returns an
//! [`Exit`] or a [`Failure`]; [`run`] is the one place that prints failures and turns
//! outcomes into exit codes.

mod apply;
mod basics;
mod inspect;
mod lock;
mod login;
mod plan;
mod validate;
mod verify;

use std::process::ExitCode;

use crate::cli::context::{Context, Diagnostics};
use crate::cli::{Cli, Command};
use crate::diagnostic::Problem;
use crate::diagnostic::codes;
use crate::project::file::RegistrySettings;
use crate::project::{self, Env, Project};
use crate::registry::Connection;

/// How a command ended, when it ran to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success; nothing to report (exit 0).
    Ok,
    /// The work ran but something failed, already reported (exit 1).
    Failed,
    /// `plan --detailed-exitcode` found changes (exit 2).
    Changes,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Changes => 2,
        }
    }
}

/// Why a command stopped early: the problems to print, and for people a closing line.
#[derive(Debug, Default)]
pub struct Failure {
    pub problems: Vec<Problem>,
    /// Printed after the problems when diagnostics are for people (e.g. "nothing was pushed").
    pub closing: Option<String>,
    /// `repository:tag` of every artifact in scope that was not attempted because of it.
    pub not_attempted: Vec<String>,
    /// True when the command already printed its JSON document on standard output.
    pub document_printed: bool,
}

impl From<Problem> for Failure {
    fn from(problem: Problem) -> Failure {
        Failure {
            problems: vec![problem],
            ..Failure::default()
        }
    }
}

impl From<Vec<Problem>> for Failure {
    fn from(problems: Vec<Problem>) -> Failure {
        Failure {
            problems,
            ..Failure::default()
        }
    }
}

/// What a command returns.
pub type Outcome = Result<Exit, Failure>;

/// Runs a parsed command line and returns the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    use crate::report::{DiagnosticFormat, Format, PlanFormat};
    let format = match &cli.command {
        Command::Validate(args) => args.format,
        Command::Plan(args) => args.diagnostics,
        Command::Apply(args) => args.diagnostics,
        Command::Lock(args) => args.diagnostics,
        Command::Verify(args) => args.diagnostics,
        _ => DiagnosticFormat::Human,
    };
    // Commands whose result is a JSON document: one is printed on standard output
    // whatever happens, a failure included.
    let json_document = match &cli.command {
        Command::Plan(args) => args.format == PlanFormat::Json,
        Command::Apply(args) => args.format == Format::Json,
        Command::Inspect(args) => args.format == Format::Json,
        _ => false,
    };
    let scope = cli.scope().map_err(|flag| {
        let name = cli.command_name();
        Problem::error(
            codes::SELECT_UNUSED,
            format!("`eigenpub {name}` does not take {flag}; it would be ignored"),
        )
        .help(format!(
            "{flag} applies to validate, plan and apply only; run `eigenpub {name}` without it"
        ))
    });
    let search_parents = !matches!(cli.command, Command::Init(_));
    let ctx = match Context::new(&cli.global, scope, format, search_parents) {
        Ok(ctx) => ctx,
        Err((diagnostics, problem)) => {
            return finish(&diagnostics, json_document, Err(problem.into()));
        }
    };
    // Commands that need no registry and no runtime.
    match &cli.command {
        Command::Completions(args) => {
            return finish(&ctx.diagnostics, false, basics::completions(args));
        }
        Command::Man(args) => return finish(&ctx.diagnostics, false, basics::man(args)),
        Command::Init(args) => return finish(&ctx.diagnostics, false, basics::init(&ctx, args)),
        Command::Logout(args) => return finish(&ctx.diagnostics, false, login::logout(&ctx, args)),
        _ => {}
    }
    // Blocking threads write OCI layouts, run credential helpers and resolve registry host
    // names (hyper's resolver). Tokio's default (512) gives a layout apply one thread per
    // in-flight file write (37 at concurrency 16), each with its stack and malloc arena:
    // 2.4 MiB of a 5000-artifact apply's peak. Eight keep a local disk busy; no blocking
    // task waits on another, so the queue drains (a DNS lookup of a run that also writes a
    // layout waits behind a few file writes of milliseconds each) and cannot deadlock.
    // Every task runs on this thread: a run mostly waits on registries, and its own work
    // (some 0.1 ms of CPU per request) fits one core. With worker threads, hyper's
    // connection tasks ran there and every answer crossed to this thread (a wakeup, a
    // context switch): 10-25% more CPU for a plan or apply on loopback or at 20-100 ms,
    // CPU a registry on the same machine (a CI service container) goes without, and no
    // faster (scripts/bench, README "Where the time goes"). Loading and validating specs
    // and building artifacts ran on this thread before too (`block_on` polls its future
    // on the calling thread whatever the runtime); only spawned tasks moved here (hyper's
    // connections, the signal watcher), and the blocking threads above are unchanged.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let problem = Problem::error(
                codes::RUNTIME,
                format!("cannot start the async runtime: {e}"),
            )
            .help("the system refused threads or file descriptors; check ulimits");
            return finish(&ctx.diagnostics, json_document, Err(problem.into()));
        }
    };
    let outcome = runtime.block_on(async {
        match &cli.command {
            Command::Validate(args) => validate::run(&ctx, args),
            Command::Plan(args) => plan::run(&ctx, args).await,
            Command::Apply(args) => apply::run(&ctx, args).await,
            Command::Login(args) => login::run(&ctx, args).await,
            Command::Lock(args) => lock::run(&ctx, args).await,
            Command::Verify(args) => verify::run(&ctx, args).await,
            Command::Inspect(args) => inspect::inspect(&ctx, args).await,
            Command::Pull(args) => inspect::pull(&ctx, args).await,
            Command::Logout(_) | Command::Init(_) | Command::Completions(_) | Command::Man(_) => {
                unreachable!("handled above")
            }
        }
    });
    // Do not wait for stray blocking tasks (a hung credential helper) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    finish(&ctx.diagnostics, json_document, outcome)
}

/// Prints a failure (if any) and maps the outcome to an exit code. With `json_document`,
/// a failure is also printed as a JSON document on standard output (unless the command
/// printed its own).
fn finish(diagnostics: &Diagnostics, json_document: bool, outcome: Outcome) -> ExitCode {
    let exit = match outcome {
        Ok(exit) => exit,
        Err(failure) => {
            if json_document && !failure.document_printed {
                let doc = crate::report::json::failure(&failure.problems, &failure.not_attempted);
                crate::report::out::line(&serde_json::to_string_pretty(&doc).expect("JSON"));
            }
            diagnostics.print(&failure.problems);
            if let Some(line) = failure.closing.filter(|_| diagnostics.for_people()) {
                eprintln!("error: {line}");
            }
            Exit::Failed
        }
    };
    ExitCode::from(exit.code())
}

/// Loads the project; prints its warnings (unless quiet). Its errors are the failure.
fn load_project(ctx: &Context) -> Result<Project, Failure> {
    match project::load(&ctx.config, &Env::from_process()) {
        Ok(project) => {
            if !ctx.quiet() && !project.warnings.is_empty() {
                ctx.diagnostics.print(&project.warnings);
            }
            Ok(project)
        }
        Err(problems) => {
            let problems = problems.sorted();
            let errors = problems.iter().filter(|p| p.is_error()).count();
            Err(Failure {
                problems,
                closing: Some(format!(
                    "{errors} problem{} found; nothing was planned or pushed",
                    plural(errors)
                )),
                ..Failure::default()
            })
        }
    }
}

/// Writes a plan or a release record, atomically.
fn write_file(path: &std::path::Path, bytes: &[u8], what: &str) -> Result<(), Problem> {
    crate::atomic::write(path, bytes, 0o644).map_err(|e| {
        Problem::error(
            codes::OUTPUT_WRITE,
            format!("cannot write {what} to {}: {e}", path.display()),
        )
        .help("check that the directory exists and is writable")
    })
}

/// `-v`: how many requests the run sent.
fn report_requests(ctx: &Context, requests: u64) {
    if ctx.verbose() {
        eprintln!("{requests} registry request{}", plural(requests as usize));
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// How to reach one registry, from its `[registries."host"]` table.
fn connection(dir: &std::path::Path, settings: &RegistrySettings) -> Connection {
    Connection {
        plain_http: settings.plain_http,
        ca_file: settings
            .ca_file
            .as_ref()
            .map(|path| (path.get_ref().clone(), dir.join(path.get_ref()))),
        max_concurrency: settings.max_concurrency,
        requests_per_second: settings.requests_per_second,
        timeout: settings.timeout,
    }
}

/// Every registry host the publications name, with its connection settings.
fn connections(project: &Project) -> Vec<(String, Connection)> {
    let hosts: std::collections::BTreeSet<&str> = project
        .publications
        .iter()
        .filter_map(|p| p.repository.registry())
        .collect();
    hosts
        .into_iter()
        .map(|host| {
            let settings =
                crate::project::file::RegistrySettings::for_host(&project.registries, host);
            (host.to_string(), connection(&project.dir, &settings))
        })
        .collect()
}

/// Where publications go, for progress text: registry hosts, and `oci:` layouts.
fn places<'a>(
    publications: impl IntoIterator<Item = &'a crate::project::Publication>,
) -> Vec<String> {
    let places: std::collections::BTreeSet<String> = publications
        .into_iter()
        .map(|p| {
            p.repository
                .registry()
                .map_or_else(|| "an OCI layout".to_string(), str::to_string)
        })
        .collect();
    places.into_iter().collect()
}
