//! Settings resolved once, from the raw arguments, before any command runs (as ripgrep's
//! `HiArgs` does): how loud to be, where colour goes, how diagnostics are printed, how many
//! artifacts at once, which artifacts are in scope. Commands read these; they never look
//! at the environment or at `--color`/`-q`/`-v` themselves.

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::cli::{ColorChoice, Global, Scope};
use crate::diagnostic::Problem;
use crate::diagnostic::codes;
use crate::plan::select::Selection;
use crate::report::text::Style;
use crate::report::{self, DiagnosticFormat};

/// How much a run prints besides its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Only errors and the final result (`-q`).
    Quiet,
    Normal,
    /// Also unchanged artifacts and request counts (`-v`).
    Verbose,
}

/// Prints problems in the format the command asked for, coloured when standard error is
/// a terminal (and `--color`/`NO_COLOR` allow it). Built before anything else can fail.
#[derive(Debug, Clone, Copy)]
pub struct Diagnostics {
    pub format: DiagnosticFormat,
    pub color: bool,
}

impl Diagnostics {
    pub fn print(&self, problems: &[Problem]) {
        report::print_problems(problems, self.format, self.color);
    }

    /// True when diagnostics are read by people (plain closing lines are added then).
    pub fn for_people(&self) -> bool {
        self.format == DiagnosticFormat::Human
    }
}

/// Everything a command needs to know about how it was asked to run.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: PathBuf,
    /// `--concurrency`, overriding the project file's setting.
    concurrency: Option<usize>,
    pub verbosity: Verbosity,
    pub diagnostics: Diagnostics,
    /// Style of standard output (colour on or off).
    pub stdout: Style,
    /// Whether standard error is a terminal (bars are drawn only there).
    pub stderr_is_terminal: bool,
    /// Whether standard output is a terminal (where bars replace per-artifact lines).
    pub stdout_is_terminal: bool,
    pub selection: Selection,
}

impl Context {
    /// Resolves the global options (and the command's scope, if it has one) for a command
    /// that prints diagnostics as `format`.
    /// Fails only on a scope the command cannot take (`scope` is that problem) or a bad
    /// `--select`/`--exclude` glob, as a problem to print.
    /// Without `-c`, the project file is looked for in this folder and then in every
    /// folder above it (`search_parents`; `init` writes one here instead).
    pub fn new(
        global: &Global,
        scope: Result<Scope, Problem>,
        format: DiagnosticFormat,
        search_parents: bool,
    ) -> Result<Context, (Diagnostics, Problem)> {
        let stderr_is_terminal = std::io::stderr().is_terminal();
        let diagnostics = Diagnostics {
            format,
            color: color(global.color, stderr_is_terminal),
        };
        let scope = scope.map_err(|problem| (diagnostics, problem))?;
        let selection = Selection::new(&scope.select, &scope.exclude).map_err(|m| {
            let problem = Problem::error(codes::SELECT_GLOB, format!("--select/--exclude: {m}"))
                .help("pass globs over the AVS name, `avs/opset` or `repository:tag`, e.g. --select 'price-oracle' or --exclude '*/1'");
            (diagnostics, problem)
        })?;
        let verbosity = if global.quiet {
            Verbosity::Quiet
        } else if global.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        };
        let stdout_is_terminal = std::io::stdout().is_terminal();
        let config = match &global.config {
            Some(path) => path.clone(),
            None if search_parents => std::env::current_dir()
                .ok()
                .and_then(|cwd| nearest_project_file(&cwd))
                .unwrap_or_else(|| PathBuf::from(PROJECT_FILE)),
            None => PathBuf::from(PROJECT_FILE),
        };
        distrust_project(&config);
        Ok(Context {
            config,
            concurrency: scope.concurrency.map(|c| c as usize),
            verbosity,
            diagnostics,
            stdout: Style {
                color: color(global.color, stdout_is_terminal),
            },
            stderr_is_terminal,
            stdout_is_terminal,
            selection,
        })
    }

    /// Artifacts worked on at once: `--concurrency`, else the project's setting.
    pub fn concurrency(&self, project_setting: usize) -> usize {
        self.concurrency.unwrap_or(project_setting).max(1)
    }

    pub fn quiet(&self) -> bool {
        self.verbosity == Verbosity::Quiet
    }

    pub fn verbose(&self) -> bool {
        self.verbosity == Verbosity::Verbose
    }

    /// The folders a pull request controls (the project's folder and its repository's work
    /// tree, canonical): no program is run from them, and no cache is kept in them.
    pub fn project_folders(&self) -> Vec<PathBuf> {
        project_folders(&self.config)
    }

    /// The directory the project file is in (relative paths in it are relative to this).
    pub fn project_dir(&self) -> PathBuf {
        crate::project::paths::folder_of(&self.config)
    }
}

/// No program is run from the project's folder or its repository's work tree, which a
/// pull request controls ([`crate::child::distrust`]), whatever `$HOME` is: a CI job whose
/// home folder is its checkout (Jenkins runs with `HOME=$WORKSPACE`) would otherwise run a
/// `git` or credential helper a pull request commits in `.local/bin`. Run in `~` (or with
/// `~` a dotfiles repository), the programs of `~/.local/bin` are so not run either: the
/// not-found error says where they are not looked for.
fn distrust_project(config: &std::path::Path) {
    for folder in project_folders(config) {
        crate::child::distrust(&folder);
    }
}

/// The folders a pull request controls: the project's folder and its repository's work
/// tree, canonical (those that exist).
fn project_folders(config: &std::path::Path) -> Vec<PathBuf> {
    crate::project::git::pull_request_folders(&crate::project::paths::folder_of(config))
}

/// The project file's default name.
pub const PROJECT_FILE: &str = "eigenruntime.toml";

/// The project file in `cwd` or the nearest folder above it, as a path relative to `cwd`
/// (`eigenruntime.toml`, `../eigenruntime.toml`, …), so that the paths eigenpub prints
/// stay short. `None` when no folder up to the root has one.
fn nearest_project_file(cwd: &std::path::Path) -> Option<PathBuf> {
    cwd.ancestors().enumerate().find_map(|(up, dir)| {
        dir.join(PROJECT_FILE).is_file().then(|| {
            let mut path: PathBuf = std::iter::repeat_n("..", up).collect();
            path.push(PROJECT_FILE);
            path
        })
    })
}

/// Colour for one stream, from `--color` and `NO_COLOR`.
fn color(choice: ColorChoice, stream_is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_file_is_found_in_the_nearest_folder_above() {
        let tmp = tempfile::TempDir::new().unwrap();
        let deep = tmp.path().join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(nearest_project_file(&deep), None);
        std::fs::write(tmp.path().join("a").join(PROJECT_FILE), "").unwrap();
        assert_eq!(
            nearest_project_file(&deep),
            Some(PathBuf::from("../../eigenruntime.toml"))
        );
        std::fs::write(deep.join(PROJECT_FILE), "").unwrap();
        assert_eq!(
            nearest_project_file(&deep),
            Some(PathBuf::from(PROJECT_FILE))
        );
    }

    #[test]
    fn never_and_always_ignore_the_terminal() {
        assert!(!color(ColorChoice::Never, true));
        assert!(color(ColorChoice::Always, false));
        assert!(!color(ColorChoice::Auto, false));
    }
}
