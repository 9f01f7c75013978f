//! `eigenpub validate`: load and check the project and every spec, offline.

use std::collections::BTreeSet;

use super::{Context, Exit, Outcome, load_project, plural};
use crate::cli::ValidateArgs;
use crate::report::{self, DiagnosticFormat};

pub(super) fn run(ctx: &Context, args: &ValidateArgs) -> Outcome {
    let project = load_project(ctx)?;
    if args.format == DiagnosticFormat::Json && project.warnings.is_empty() {
        eprintln!("{}", report::json::problems(&[]));
    }
    if !ctx.quiet() {
        let count = project.publications.len();
        let avs: BTreeSet<&str> = project
            .publications
            .iter()
            .map(|p| p.avs.as_str())
            .collect();
        println!(
            "Valid: {count} artifact{} for {} AVS{}.",
            plural(count),
            avs.len(),
            plural(avs.len()),
        );
    }
    Ok(Exit::Ok)
}
