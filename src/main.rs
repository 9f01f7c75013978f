//! The `eigenpub` binary: parse arguments, run the command, exit with its code.
//!
//! Exit codes (the README's table): 0 success or no changes, 1 any error (a usage error
//! included: clap's own 2 would read as `plan --detailed-exitcode`'s "changes present"),
//! 2 changes present with `--detailed-exitcode`. `--help` and `--version` exit 0.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match eigenpub::cli::Cli::try_parse() {
        Ok(cli) => eigenpub::commands::run(cli),
        Err(e) => {
            // Help and version go to standard output and are not errors.
            let _ = e.print();
            if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
