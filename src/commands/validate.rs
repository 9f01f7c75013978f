//! `eigenpub validate`: load and check the project and every spec, offline. With `-v` or
//! `--format json` it lists every artifact the project resolves to (AVS, operator set,
//! spec, `repository:tag`, digest), so what a plan would push can be seen without a
//! registry. `--format json` prints one document on standard output, valid or not.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{Context, Exit, Outcome, load_project, plural};
use crate::cli::ValidateArgs;
use crate::project::Publication;
use crate::report::{self, DiagnosticFormat, out};
use crate::sanitize::Untrusted;

pub(super) fn run(ctx: &Context, args: &ValidateArgs) -> Outcome {
    if args.format == DiagnosticFormat::Json {
        return Ok(json_document(ctx, args.locked));
    }
    let project = load_project(ctx)?;
    super::lock::check_offline(ctx, &project, args.locked)?;
    let problems = ctx.selection.check(&project.publications);
    if !problems.is_empty() {
        return Err(problems.into());
    }
    let publications = ctx.selection.apply(project.publications);
    if ctx.verbose() {
        for p in &publications {
            out::line(&format!(
                "{}/{}  {}  {}  {}",
                Untrusted(&p.avs),
                p.operator_set,
                Untrusted(&p.spec),
                Untrusted(&p.reference()),
                p.artifact.digest()
            ));
        }
    }
    let count = publications.len();
    let avs: BTreeSet<&str> = publications.iter().map(|p| p.avs.as_str()).collect();
    out::line(&format!(
        "Valid: {count} artifact{} for {} AVS{}.",
        plural(count),
        avs.len(),
        plural(avs.len()),
    ));
    Ok(Exit::Ok)
}

/// `--format json`: diagnostics and artifacts in one document on standard output.
fn json_document(ctx: &Context, locked: bool) -> Exit {
    let (valid, problems, artifacts) =
        match crate::project::load(&ctx.config, &crate::project::Env::from_process()) {
            Ok(project) => {
                let (_, mut lock_problems) = super::lock::offline_problems(&project, locked);
                lock_problems.extend(ctx.selection.check(&project.publications));
                let valid = !lock_problems.iter().any(|p| p.is_error());
                let mut problems = project.warnings.clone();
                problems.extend(lock_problems);
                let artifacts: Vec<Value> = ctx
                    .selection
                    .apply(project.publications)
                    .iter()
                    .map(artifact)
                    .collect();
                (valid, problems, artifacts)
            }
            Err(problems) => (false, problems.sorted(), Vec::new()),
        };
    let mut doc = report::json::problems(&problems);
    doc["valid"] = json!(valid);
    doc["artifacts"] = json!(artifacts);
    out::line(&serde_json::to_string_pretty(&doc).expect("JSON"));
    if valid { Exit::Ok } else { Exit::Failed }
}

fn artifact(p: &Publication) -> Value {
    json!({
        "avs": p.avs,
        "operator_set": p.operator_set,
        "spec": p.spec,
        "repository": p.repository.to_string(),
        "tag": p.tag,
        "digest": p.artifact.digest(),
    })
}
