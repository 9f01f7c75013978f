//! The `eigenpub` binary: parse arguments, run the command, exit with its code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = eigenpub::cli::Cli::parse();
    eigenpub::commands::run(cli)
}
