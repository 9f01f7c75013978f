//! eigenpub: publish EigenRuntime specifications to OCI registries, declaratively.
//!
//! The pipeline, pure in the middle and with side effects at the edges, one folder a stage:
//!
//! ```text
//! cli/ ─▶ commands/ ─▶ project/ ─▶ artifact ─▶ plan/ ─▶ apply ─▶ report/
//!                      (toml, specs,  (exact     (observe,  (push)   (text, json,
//!                       schemas)       bytes)     diff)               markdown)
//!                                         └──── registry/ (remote, layout) ───┘
//! ```
//!
//! `project` reads `eigenruntime.toml` and the specs into `Publication`s (exact `Artifact`
//! bytes); `plan::observe_each` reads one digest per tag from the `registry` backends;
//! `plan::diff` decides the actions; `apply::apply` pushes what changed. `commands` ties
//! them to the command line; `report` renders results.
//!
//! The library exists for the binary and its tests: its only public item is [`main`];
//! every module is crate-private, so the compiler reports code nothing uses.

mod apply;
mod artifact;
mod atomic;
mod child;
mod cli;
mod commands;
mod diagnostic;
mod plan;
mod project;
mod reference;
mod registry;
mod report;
mod sanitize;

/// Parses the command line, runs the command, and returns the process's exit code.
///
/// Exit codes (the README's table): 0 success or no changes, 1 any error (a usage error
/// included: clap's own 2 would read as `plan --detailed-exitcode`'s "changes present"),
/// 2 changes present with `--detailed-exitcode`. `--help` and `--version` exit 0.
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    match cli::Cli::try_parse() {
        Ok(cli) => commands::run(cli),
        Err(e) => {
            // Help and version go to standard output and are not errors.
            let _ = e.print();
            if e.use_stderr() {
                std::process::ExitCode::from(1)
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
    }
}
