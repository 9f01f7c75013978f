//! The commands: `validate`, `plan`, `apply`. Each loads the project, does its work through
//! the pure core and the targets, prints through a renderer, and returns an exit code:
//! 0 success, 1 error (or failed pushes), 2 changes present (`plan --detailed-exitcode`).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::apply::{self, Outcome};
use crate::cli::{ApplyArgs, Cli, ColorChoice, Command, Global, LoginArgs, PlanArgs, ValidateArgs};
use crate::diagnostic::Problem;
use crate::plan::previous::{self, Contents};
use crate::plan::saved::{self, PlanDocument};
use crate::plan::select::Selection;
use crate::plan::{self, Action, Plan};
use crate::project::{self, Env, Project};
use crate::registry::Targets;
use crate::registry::remote::Access;
use crate::report::progress::Printer;
use crate::report::release;
use crate::report::text::{self, Style};
use crate::report::{self, DiagnosticFormat, Format, PlanFormat};
use std::collections::HashMap;

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
            Command::Login(args) => login(&cli.global, args).await,
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
    match project::load(&global.config, &Env::from_process()) {
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

/// A plan made against the targets, with what produced it.
struct Planned {
    project: Project,
    targets: Targets,
    plan: Plan,
    document: PlanDocument,
}

/// Loads, selects, connects and observes: the shared first half of `plan` and `apply`.
async fn make_plan(
    global: &Global,
    diagnostics: DiagnosticFormat,
    access: Access,
    allow_overwrite: bool,
    selection: &Selection,
) -> Result<Planned, u8> {
    let mut project = load_project(global, diagnostics).ok_or(FAILED)?;
    if !selection.is_everything() {
        let all = project.publications.len();
        project.publications = selection.apply(std::mem::take(&mut project.publications));
        if project.publications.is_empty() && !global.quiet {
            let p = Problem::warning(
                "eigenpub::select::empty",
                format!("the selection matches none of the project's {all} artifacts"),
            )
            .help("--select and --exclude match the AVS name, `avs/opset`, or `repository:tag`");
            report::print_problems(&[p], diagnostics, stderr_color(global));
        }
    }
    let mut targets = match Targets::connect(&project, access).await {
        Ok(t) => t,
        Err(problems) => {
            report::print_problems(&problems, diagnostics, stderr_color(global));
            return Err(FAILED);
        }
    };
    targets.allow_overwrite = allow_overwrite;
    // A plan of many artifacts at a terminal shows a bar while the tags are read.
    let bar =
        (!global.quiet && std::io::stderr().is_terminal() && project.publications.len() >= 50)
            .then(|| {
                let bar = indicatif::ProgressBar::with_draw_target(
                    Some(project.publications.len() as u64),
                    indicatif::ProgressDrawTarget::stderr(),
                );
                bar.set_style(
                    indicatif::ProgressStyle::with_template("[{bar:30}] {pos}/{len} tags read")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar
            });
    let tick = || {
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    };
    let observed = plan::observe(
        &targets,
        &project.publications,
        concurrency(global, &project),
        &tick,
    )
    .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let observed = match observed {
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
    let hash = saved::inputs_hash(&project.file.text, &project.publications);
    let plan = plan::diff(project.publications.clone(), observed, allow_overwrite);
    let document = PlanDocument::new(
        &plan,
        &hash,
        allow_overwrite,
        &selection.select,
        &selection.exclude,
    );
    Ok(Planned {
        project,
        targets,
        plan,
        document,
    })
}

fn selection(global: &Global) -> Result<Selection, u8> {
    Selection::new(&global.select, &global.exclude).map_err(|m| {
        eprintln!("error: --select/--exclude: {m}");
        eprintln!("  help: pass globs over the AVS name, `avs/opset` or `repository:tag`, e.g. --select 'price-oracle' or --exclude '*/1'");
        FAILED
    })
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

/// Writes a plan or a release record, atomically.
fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    crate::atomic::write(path, bytes, 0o644)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

async fn plan_command(global: &Global, args: &PlanArgs) -> u8 {
    let selection = match selection(global) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let planned = match make_plan(
        global,
        args.diagnostics,
        Access::Pull,
        args.allow_overwrite,
        &selection,
    )
    .await
    {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Planned {
        targets,
        plan,
        document,
        ..
    } = &planned;
    match args.format {
        PlanFormat::Text => print!("{}", text::plan(plan, stdout_style(global), global.verbose)),
        PlanFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report::json::plan(document)).expect("JSON")
        ),
        PlanFormat::Markdown => {
            let contents =
                match previous_contents(targets, plan, concurrency(global, &planned.project)).await
                {
                    Ok(c) => c,
                    Err(e) => {
                        report::print_problems(
                            &[e.to_problem()],
                            args.diagnostics,
                            stderr_color(global),
                        );
                        return FAILED;
                    }
                };
            print!(
                "{}",
                report::markdown::plan(plan, &contents, global.verbose)
            );
        }
    }
    if let Some(out) = &args.out {
        let bytes = serde_json::to_vec_pretty(&report::json::plan(document)).expect("JSON");
        if let Err(m) = write_file(out, &bytes) {
            eprintln!("error: {m}");
            return FAILED;
        }
        if !global.quiet {
            eprintln!(
                "Saved the plan to {}; apply exactly it with `eigenpub apply {}`.",
                out.display(),
                out.display()
            );
        }
    }
    report_requests(global, targets);
    if args.detailed_exitcode && plan.has_changes() {
        CHANGES
    } else {
        OK
    }
}

/// For each update (and retag of a tag that held something), what the tag holds now and
/// what would be pushed: three reads per update, only for the Markdown plan.
async fn previous_contents(
    targets: &Targets,
    plan: &Plan,
    concurrency: usize,
) -> Result<HashMap<usize, (Contents, Contents)>, crate::registry::TargetError> {
    use futures::StreamExt;
    let wanted: Vec<(usize, &crate::plan::Change, String)> = plan
        .changes
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match &c.action {
            Action::Update { from } | Action::Refused { from } => Some((i, c, from.clone())),
            Action::Retag { from: Some(from) } => Some((i, c, from.clone())),
            _ => None,
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(wanted)
        .map(|(i, c, from)| async move {
            let target = targets.target(&c.publication.repository);
            let before = previous::fetch(&target, &from).await?.unwrap_or_default();
            Ok::<_, crate::registry::TargetError>((
                i,
                before,
                Contents::of(&c.publication.artifact),
            ))
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut map = HashMap::new();
    for r in results {
        let (i, before, after) = r?;
        map.insert(i, (before, after));
    }
    Ok(map)
}

async fn apply_command(global: &Global, args: &ApplyArgs) -> u8 {
    // With a saved plan: its selection and overwrite flag, and a check that it still holds.
    let saved = match &args.plan {
        Some(path) => match read_saved_plan(path) {
            Ok(doc) => Some(doc),
            Err(m) => {
                eprintln!("error: {m}");
                return FAILED;
            }
        },
        None => None,
    };
    let (selection, allow_overwrite) = match &saved {
        Some(doc) => {
            if !global.select.is_empty() || !global.exclude.is_empty() || args.allow_overwrite {
                eprintln!(
                    "error: a saved plan carries its own selection and --allow-overwrite; apply it without them, or make a new plan"
                );
                return FAILED;
            }
            match Selection::new(&doc.select, &doc.exclude) {
                Ok(s) => (s, doc.allow_overwrite),
                Err(m) => {
                    eprintln!("error: the saved plan's selection is invalid: {m}");
                    return FAILED;
                }
            }
        }
        None => match selection(global) {
            Ok(s) => (s, args.allow_overwrite),
            Err(code) => return code,
        },
    };
    let planned = match make_plan(
        global,
        args.diagnostics,
        Access::Push,
        allow_overwrite,
        &selection,
    )
    .await
    {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Planned {
        project,
        targets,
        plan,
        document,
    } = planned;
    if let Some(saved) = &saved {
        let stale = saved::check(saved, &document);
        if !stale.is_empty() {
            let problems: Vec<Problem> = stale
                .iter()
                .map(|s| {
                    Problem::error("eigenpub::apply::stale-plan", format!("the saved plan is stale: {s}"))
                        .help("nothing was pushed; make a new plan (`eigenpub plan --out FILE`), review it, and apply that")
                })
                .collect();
            report::print_problems(&problems, args.diagnostics, stderr_color(global));
            if args.format == Format::Json {
                let outcomes = vec![Outcome::NotStarted; plan.changes.len()];
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report::json::apply(&document, &outcomes))
                        .expect("JSON")
                );
            }
            return FAILED;
        }
    }
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
                serde_json::to_string_pretty(&report::json::apply(&document, &outcomes))
                    .expect("JSON")
            );
        }
        return FAILED;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    let signals = watch_signals(vec![stop.clone(), interrupted.clone()], global.quiet);
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
        interrupted: interrupted.clone(),
        grace: std::time::Duration::from_secs(3),
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
            if stop.load(Ordering::SeqCst) {
                for (change, outcome) in plan.changes.iter().zip(&outcomes) {
                    let interrupted = matches!(outcome, Outcome::Failed(e) if e.code == "eigenpub::apply::interrupted");
                    if (matches!(outcome, Outcome::NotStarted) && change.action.pushes())
                        || interrupted
                    {
                        println!("{}", text::outcome_line(change, outcome, style));
                    }
                }
            }
            println!("{}", style.bold(&text::apply_summary(&outcomes)));
        }
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report::json::apply(&document, &outcomes)).expect("JSON")
        ),
    }
    let mut code = OK;
    if let Some(path) = &args.release_json {
        let record = release::record(&plan, &outcomes);
        let bytes = serde_json::to_vec_pretty(&record).expect("JSON");
        if let Err(m) = write_file(path, &bytes) {
            eprintln!("error: {m}");
            code = FAILED;
        }
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
        code = FAILED;
    }
    code
}

async fn login(global: &Global, args: &LoginArgs) -> u8 {
    use std::io::Read;
    let host = args
        .registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    if let Err(m) = crate::reference::parse_prefix(&host) {
        eprintln!("error: {m}");
        return FAILED;
    }
    let mut password = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut password) {
        eprintln!("error: cannot read the password from standard input: {e}");
        return FAILED;
    }
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        eprintln!(
            "error: no password on standard input; pipe it in, e.g. `echo \"$TOKEN\" | eigenpub login {host} -u USER --password-stdin`"
        );
        return FAILED;
    }
    // Use the project's settings for this registry (plain-http, ca-file) when there is one.
    let settings = std::fs::read_to_string(&global.config)
        .ok()
        .and_then(|text| toml::from_str::<crate::project::file::ProjectFile>(&text).ok())
        .and_then(|p| p.registries.get(&host).cloned())
        .unwrap_or_default();
    let base = global.config.parent().unwrap_or(std::path::Path::new("."));
    let ca_pem = match &settings.ca_file {
        Some(path) => match std::fs::read(base.join(path.get_ref())) {
            Ok(pem) => Some((path.get_ref().clone(), pem)),
            Err(e) => {
                eprintln!("error: cannot read ca-file {}: {e}", path.get_ref());
                return FAILED;
            }
        },
        None => None,
    };
    let credential = crate::registry::credentials::Credential {
        secret: crate::registry::credentials::Secret::Basic {
            username: args.username.clone(),
            password: password.clone(),
        },
        origin: "eigenpub login".into(),
    };
    let options = crate::registry::remote::RegistryOptions {
        plain_http: settings
            .plain_http
            .unwrap_or_else(|| crate::reference::is_loopback(&host)),
        ca_pem,
        ..Default::default()
    };
    let stats = Arc::new(crate::registry::remote::Stats::default());
    let checked = match crate::registry::remote::Registry::new(
        &host,
        options,
        Some(credential),
        stats,
    ) {
        Ok(registry) => match registry.check_login().await {
            Ok(()) if !registry.challenged().await && !global.quiet => {
                eprintln!(
                    "warning: {host} answered without asking for credentials, so they could not be checked; storing them anyway (they are sent when the registry asks)"
                );
                Ok(())
            }
            other => other,
        },
        Err(e) => Err(e),
    };
    if let Err(e) = checked {
        let refused = e.kind == crate::registry::remote::ErrorKind::Auth;
        let mut problem = crate::registry::TargetError::from(e).to_problem();
        if refused {
            problem.help = Some(format!(
                "{host} refused these credentials: check the user name and the password or token (for GHCR, a token with write:packages); nothing was stored"
            ));
        }
        report::print_problems(&[problem], DiagnosticFormat::Human, stderr_color(global));
        return FAILED;
    }
    let user = args.username.clone();
    let stored = tokio::task::spawn_blocking(move || {
        crate::registry::credentials::store(&host, &user, &password)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match stored {
        Ok(place) => {
            if !global.quiet {
                println!(
                    "Login succeeded for {}; credentials stored in {place}.",
                    args.registry
                );
            }
            OK
        }
        Err(m) => {
            eprintln!(
                "error: the registry accepted the credentials, but they could not be stored: {m}"
            );
            FAILED
        }
    }
}

fn read_saved_plan(path: &std::path::Path) -> Result<PlanDocument, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read the saved plan {}: {e}", path.display()))?;
    let doc: PlanDocument = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{} is not a plan saved by `eigenpub plan --out` ({e})",
            path.display()
        )
    })?;
    if doc.format_version != report::json::FORMAT_VERSION {
        return Err(format!(
            "{} has plan format {}; this eigenpub reads format {}",
            path.display(),
            doc.format_version,
            report::json::FORMAT_VERSION
        ));
    }
    Ok(doc)
}

/// Ctrl-C or SIGTERM once: stop starting new work. Twice: exit at once.
fn watch_signals(flags: Vec<Arc<AtomicBool>>, quiet: bool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            wait_for_signal().await;
            count += 1;
            if count == 1 {
                for flag in &flags {
                    flag.store(true, Ordering::SeqCst);
                }
                if !quiet {
                    eprintln!(
                        "\nStopping: no new artifacts will be started; those in flight get 3 seconds to finish (press Ctrl-C again to exit now)."
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
