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
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The project file.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        default_value = "eigenruntime.toml"
    )]
    pub config: PathBuf,
    /// Artifacts worked on at once (overrides `concurrency` in the project file).
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub concurrency: Option<u64>,
    /// Print only errors and the result.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also list unchanged artifacts, and count registry requests.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Only artifacts matching this glob (AVS name, `avs/opset` or `repository:tag`); repeatable.
    #[arg(long = "select", global = true, value_name = "GLOB")]
    pub select: Vec<String>,
    /// Leave out artifacts matching this glob (AVS name, `avs/opset` or `repository:tag`); repeatable.
    #[arg(long = "exclude", global = true, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// When to use colour (NO_COLOR is honoured by `auto`).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
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
}

#[derive(Debug, Args)]
pub struct PlanArgs {
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
    /// How diagnostics are printed.
    #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
    pub diagnostics: DiagnosticFormat,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
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
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How diagnostics are printed.
    #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
    pub diagnostics: DiagnosticFormat,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// How problems are printed: human (source snippets), json, or github (annotations).
    #[arg(long = "format", value_enum, default_value_t = DiagnosticFormat::Human)]
    pub format: DiagnosticFormat,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry host, e.g. ghcr.io or localhost:5000.
    pub registry: String,
    /// The user name.
    #[arg(short, long)]
    pub username: String,
    /// Read the password (or token) from standard input; passwords are never taken as arguments.
    #[arg(long, required = true)]
    pub password_stdin: bool,
}
