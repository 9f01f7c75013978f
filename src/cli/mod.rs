//! Command-line arguments (clap definitions only; no I/O here).

pub mod context;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::report::{DiagnosticFormat, Format, PlanFormat};

/// Publish EigenRuntime specs to OCI registries, declaratively.
#[derive(Debug, Parser)]
#[command(name = "eigenpub", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    /// `--select`, `--exclude` and `--concurrency` written before the command (as earlier
    /// versions took them); merged with the command's own. Only validate, plan and apply
    /// show and use them.
    #[command(flatten, next_help_heading = "Scope (validate, plan, apply)")]
    pub scope: Scope,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The project file [default: eigenruntime.toml in this folder, or in the nearest
    /// folder above it that has one, as cargo finds Cargo.toml; `init` writes it here].
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print only errors and the final line.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more: list every artifact (also unchanged ones), count registry requests.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// When to use colour (NO_COLOR is honoured by `auto`).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

impl Cli {
    /// The scope a command runs with: the command's own options, plus any written before
    /// the command name (`eigenpub --select x plan`). A command without a scope (lock,
    /// verify, inspect, …) refuses one written before it rather than ignore it: `eigenpub
    /// --select x lock` would otherwise lock the whole project. The error is the flag.
    pub fn scope(&self) -> Result<Scope, &'static str> {
        let own = match &self.command {
            Command::Plan(a) => &a.scope,
            Command::Apply(a) => &a.scope,
            Command::Validate(a) => &a.scope,
            _ => {
                return match (&self.scope.select[..], &self.scope.exclude[..]) {
                    ([_, ..], _) => Err("--select"),
                    (_, [_, ..]) => Err("--exclude"),
                    _ if self.scope.concurrency.is_some() => Err("--concurrency"),
                    _ => Ok(Scope::default()),
                };
            }
        };
        let mut scope = self.scope.clone();
        scope.select.extend(own.select.iter().cloned());
        scope.exclude.extend(own.exclude.iter().cloned());
        scope.concurrency = own.concurrency.or(scope.concurrency);
        Ok(scope)
    }

    /// The subcommand's name, as typed.
    pub fn command_name(&self) -> &'static str {
        match &self.command {
            Command::Plan(_) => "plan",
            Command::Apply(_) => "apply",
            Command::Validate(_) => "validate",
            Command::Login(_) => "login",
            Command::Logout(_) => "logout",
            Command::Inspect(_) => "inspect",
            Command::Pull(_) => "pull",
            Command::Init(_) => "init",
            Command::Completions(_) => "completions",
            Command::Man(_) => "man",
            Command::Lock(_) => "lock",
            Command::Verify(_) => "verify",
        }
    }
}

/// Which artifacts a command works on, and how many at once (validate, plan, apply).
#[derive(Debug, Args, Default, Clone)]
pub struct Scope {
    /// At most this many artifacts at once (overrides `concurrency` in the project file; default 64; one waiting out a registry's Retry-After lends its place): requests in flight to a registry adapt up to it.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub concurrency: Option<u64>,
    /// Only artifacts matching this glob (AVS name, `avs/opset` or `repository:tag`); repeatable.
    #[arg(long = "select", value_name = "GLOB")]
    pub select: Vec<String>,
    /// Leave out artifacts matching this glob (AVS name, `avs/opset` or `repository:tag`); repeatable.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change: create, update, unchanged, refused overwrites.
    Plan(PlanArgs),
    /// Push exactly what the plan shows as changed.
    Apply(ApplyArgs),
    /// Load and check the project and every spec; touches no registry.
    Validate(ValidateArgs),
    /// Check credentials against a registry and store them as `docker login` does.
    Login(LoginArgs),
    /// Forget the credentials stored for a registry (in its credential helper or `auths`).
    Logout(LogoutArgs),
    /// Show what a tag or digest holds: manifest, config, annotations and the spec.
    Inspect(InspectArgs),
    /// Write the spec a tag or digest holds to a file, byte for byte.
    Pull(PullArgs),
    /// Write an eigenruntime.toml listing the spec files found under the current folder.
    Init(InitArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print a man page (roff): eigenpub's, or a command's; or write them all to a folder.
    Man(ManArgs),
    /// Write or update eigenruntime.lock: each operator set's created time and digest.
    Lock(LockArgs),
    /// Check that every tag in eigenruntime.lock holds exactly its locked digest (read-only).
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub scope: Scope,
    /// Exit 2 (instead of 0) when the plan has changes.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Output format: text, json, or markdown (a pull-request comment).
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Also save the plan (JSON) to FILE, for `eigenpub apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Plan updates of immutable tags instead of refusing them.
    #[arg(long)]
    pub allow_overwrite: bool,
    /// Fail, pushing nothing, if eigenruntime.lock is missing or out of date, or the plan
    /// would not land every tag on its locked digest.
    #[arg(long)]
    pub locked: bool,
    /// How diagnostics are printed.
    #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
    pub diagnostics: DiagnosticFormat,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub scope: Scope,
    /// A plan saved with `plan --out`: apply exactly it, or refuse if it went stale.
    #[arg(value_name = "PLAN")]
    pub plan: Option<PathBuf>,
    /// Write the release record (devkit's shape: avs -> operator set -> digest, registry,
    /// runtimeSpec) of every artifact in scope to FILE.
    #[arg(long, value_name = "FILE")]
    pub release_json: Option<PathBuf>,
    /// Overwrite published tags that match no `mutable-tags` glob.
    #[arg(long)]
    pub allow_overwrite: bool,
    /// Stop starting new artifacts after the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// Fail, pushing nothing, if eigenruntime.lock is missing or out of date, or the plan
    /// would not land every tag on its locked digest.
    #[arg(long)]
    pub locked: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How diagnostics are printed.
    #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
    pub diagnostics: DiagnosticFormat,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub scope: Scope,
    /// How problems are printed: human (source snippets), json (one document on standard
    /// output, with every resolved artifact), or github (annotations).
    #[arg(long = "format", value_enum, default_value_t = DiagnosticFormat::Human)]
    pub format: DiagnosticFormat,
    /// Fail if eigenruntime.lock is missing or out of date.
    #[arg(long)]
    pub locked: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Also read the registry, to pin the published digest of every tag that holds
    /// equivalent content (e.g. published by devkit). Offline without it.
    #[arg(long)]
    pub registry: bool,
    /// How diagnostics are printed.
    #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
    pub diagnostics: DiagnosticFormat,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Output format: one line per mismatch (text), or a JSON document.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How diagnostics are printed.
    #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
    pub diagnostics: DiagnosticFormat,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry host, e.g. ghcr.io or localhost:5000.
    pub registry: String,
    /// The user name.
    #[arg(short, long)]
    pub username: String,
    /// Read the password (or token) from standard input; without it eigenpub asks at the
    /// terminal (without echo). Passwords are never taken as arguments.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry host, e.g. ghcr.io or localhost:5000.
    pub registry: String,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// `repository:tag`, `repository@sha256:…`, or `oci:DIR:tag` (an OCI layout).
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// `repository:tag`, `repository@sha256:…`, or `oci:DIR:tag` (an OCI layout).
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The folder to write the spec into (made if missing).
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    pub output: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The registry prefix to publish to (e.g. ghcr.io/acme, or oci:out for OCI layouts).
    #[arg(long, default_value = "oci:out")]
    pub registry: String,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print (`eigenpub man plan` is eigenpub-plan(1)); without
    /// it, eigenpub(1).
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
    /// Write every page (eigenpub.1 and eigenpub-COMMAND.1 for each command) into DIR
    /// instead, e.g. /usr/local/share/man/man1.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
