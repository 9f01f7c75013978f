//! The commands, one file each. A command gets the resolved [`Context`] and its own
//! arguments, does its work through the pipeline, prints its result, and returns an
//! [`Exit`] or a [`Failure`]; [`run`] is the one place that prints failures and turns
//! outcomes into exit codes.

mod apply;
mod login;
mod plan;
mod validate;

use std::process::ExitCode;

use crate::cli::context::{Context, Diagnostics};
use crate::cli::{Cli, Command};
use crate::diagnostic::Problem;
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
}

impl From<Problem> for Failure {
    fn from(problem: Problem) -> Failure {
        Failure {
            problems: vec![problem],
            closing: None,
        }
    }
}

impl From<Vec<Problem>> for Failure {
    fn from(problems: Vec<Problem>) -> Failure {
        Failure {
            problems,
            closing: None,
        }
    }
}

/// What a command returns.
pub type Outcome = Result<Exit, Failure>;

/// Runs a parsed command line and returns the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    let format = match &cli.command {
        Command::Validate(args) => args.format,
        Command::Plan(args) => args.diagnostics,
        Command::Apply(args) => args.diagnostics,
        Command::Login(_) => crate::report::DiagnosticFormat::Human,
    };
    let ctx = match Context::new(&cli.global, format) {
        Ok(ctx) => ctx,
        Err((diagnostics, problem)) => {
            return finish(&diagnostics, Err(problem.into()));
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let problem = Problem::error(
                "eigenpub::runtime",
                format!("cannot start the async runtime: {e}"),
            )
            .help("the system refused threads or file descriptors; check ulimits");
            return finish(&ctx.diagnostics, Err(problem.into()));
        }
    };
    let outcome = runtime.block_on(async {
        match &cli.command {
            Command::Validate(args) => validate::run(&ctx, args),
            Command::Plan(args) => plan::run(&ctx, args).await,
            Command::Apply(args) => apply::run(&ctx, args).await,
            Command::Login(args) => login::run(&ctx, args).await,
        }
    });
    // Do not wait for stray blocking tasks (a hung credential helper) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    finish(&ctx.diagnostics, outcome)
}

/// Prints a failure (if any) and maps the outcome to an exit code.
fn finish(diagnostics: &Diagnostics, outcome: Outcome) -> ExitCode {
    let exit = match outcome {
        Ok(exit) => exit,
        Err(failure) => {
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
            })
        }
    }
}

/// Writes a plan or a release record, atomically.
fn write_file(path: &std::path::Path, bytes: &[u8], what: &str) -> Result<(), Problem> {
    crate::atomic::write(path, bytes, 0o644).map_err(|e| {
        Problem::error(
            "eigenpub::output::write",
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
            let settings = project.registries.get(host).cloned().unwrap_or_default();
            (host.to_string(), connection(&project.dir, &settings))
        })
        .collect()
}
