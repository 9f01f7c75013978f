//! Git, asked about the project's own repository and nothing else, in a way no file of
//! the project can turn into running a program.
//!
//! A pull request controls the files of the project folder. Had eigenpub let git look for
//! a repository from there, the plain files of a bare repository added to the folder
//! (`HEAD`, `objects/`, `refs/`, and a `config` with `core.fsmonitor = "<command>"`) would
//! have been found first and their configuration obeyed. So eigenpub finds the work tree
//! itself ([`Repository::find`]: the nearest folder at or above the project that holds a
//! `.git`, which no commit can contain) and names it to git (`GIT_DIR`, `GIT_WORK_TREE`):
//! git discovers nothing. Git then runs through [`crate::child`] with a fixed environment
//! (no system or global configuration, no `EIGENPUB_*` secret, `LC_ALL=C`), a deadline,
//! and command-line settings that switch off every program repository configuration could
//! name for the commands eigenpub runs (fsmonitor, hooks, pagers, signature checks,
//! external diffs, credential helpers, any transport, so no lazy fetch either). eigenpub
//! only asks git to read commits and trees (`rev-parse`, `ls-tree`, `log`): never the
//! index or the work tree, where filters and submodules would come in.
//!
//! Git's ownership check (`safe.directory`) does not come in: it guards repository
//! discovery, and git trusts a repository named in `GIT_DIR`. That is safe here because
//! nothing a repository's configuration says can make these commands run a program; a
//! checkout owned by another user (a CI container's workspace) needs no `safe.directory`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::child::{self, ChildError, Environment, Launch};

/// How long one git command may take: `git log` over the whole history of a large
/// monorepo takes seconds; a hang (a configuration include naming a FIFO) is stopped.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The most of git's output that is read (`git log` lists every commit that changed a
/// spec, which is far less in any real repository).
const OUTPUT_LIMIT: u64 = 64 << 20;

/// Settings given on git's command line, which win over the repository's configuration.
const SETTINGS: &[&str] = &[
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.pager=cat",
    "core.sshCommand=false",
    "core.alternateRefsCommand=",
    "core.askPass=",
    "core.untrackedCache=false",
    "credential.helper=",
    "protocol.allow=never",
    "safe.bareRepository=explicit",
    "log.showSignature=false",
    "submodule.recurse=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "core.quotepath=off",
];

/// Why git gave no answer.
#[derive(Debug)]
pub enum GitError {
    /// There is no git on `PATH`.
    NoGit,
    /// Git failed, or did not finish in time; the text says what (git's own message, one
    /// line per line it printed).
    Failed(String),
}

/// A work tree and its `.git`, found by eigenpub.
#[derive(Debug, Clone)]
pub struct Repository {
    /// The work tree's top folder (canonical).
    pub work_tree: PathBuf,
    git_dir: PathBuf,
}

impl Repository {
    /// The repository `start` is in: the nearest folder at or above it (after following
    /// symlinks) that holds `.git`, a folder or a file (a linked work tree, a submodule).
    /// A repository without a work tree (bare) is never used. `None` when there is none.
    pub fn find(start: &Path) -> Option<Repository> {
        let start = start.canonicalize().ok()?;
        start.ancestors().find_map(|folder| {
            let git_dir = folder.join(".git");
            let metadata = std::fs::metadata(&git_dir).ok()?;
            (metadata.is_dir() || metadata.is_file()).then(|| Repository {
                work_tree: folder.to_path_buf(),
                git_dir,
            })
        })
    }

    /// Runs `git <args>` in the work tree, returning its standard output.
    pub fn run(&self, args: &[&str]) -> Result<Vec<u8>, GitError> {
        let mut all: Vec<OsString> = Vec::new();
        for setting in SETTINGS {
            all.push("-c".into());
            all.push((*setting).into());
        }
        for flag in [
            "--no-pager",
            "--no-optional-locks",
            "--literal-pathspecs",
            "--no-replace-objects",
        ] {
            all.push(flag.into());
        }
        all.extend(args.iter().map(OsString::from));
        let mut env = fixed_env();
        env.push(("GIT_DIR", self.git_dir.clone().into_os_string()));
        env.push(("GIT_WORK_TREE", self.work_tree.clone().into_os_string()));
        let out = child::run(Launch {
            program: "git",
            args: all,
            env: Environment::Fixed(env),
            dir: &self.work_tree,
            input: b"",
            timeout: TIMEOUT,
            output_limit: OUTPUT_LIMIT,
        })
        .map_err(|e| match e {
            ChildError::NotFound(_) => GitError::NoGit,
            ChildError::TimedOut(t) => GitError::Failed(format!(
                "git {} did not finish within {} s and was stopped, with every process it started",
                args[0],
                t.as_secs()
            )),
            other => GitError::Failed(format!("could not run git: {other}")),
        })?;
        if !out.status.success() {
            return Err(GitError::Failed(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        if out.truncated {
            return Err(GitError::Failed(format!(
                "git {} printed more than {} MiB",
                args[0],
                OUTPUT_LIMIT >> 20
            )));
        }
        Ok(out.stdout)
    }
}

/// The environment every git eigenpub runs starts from.
fn fixed_env() -> Vec<(&'static str, OsString)> {
    [
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ("GIT_ATTR_NOSYSTEM", "1"),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("GIT_NO_LAZY_FETCH", "1"),
        ("GIT_PROTOCOL_FROM_USER", "0"),
        ("GIT_PAGER", "cat"),
        ("PAGER", "cat"),
    ]
    .into_iter()
    .map(|(k, v)| (k, OsString::from(v)))
    .collect()
}

/// The folders a pull request controls: the project's folder `dir` and its repository's
/// work tree, canonical (those that exist). No program is run from them, no cache is kept
/// in them, and no layout is written through a link out of them.
pub fn pull_request_folders(dir: &Path) -> Vec<PathBuf> {
    let work_tree = Repository::find(dir).map(|r| r.work_tree);
    std::iter::once(dir.to_path_buf())
        .chain(work_tree)
        .filter_map(|f| f.canonicalize().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_repository_in_the_project_folder_is_not_a_repository() {
        let outer = tempfile::tempdir().unwrap();
        let project = outer.path().join("project");
        for dir in ["objects", "refs/heads"] {
            std::fs::create_dir_all(project.join(dir)).unwrap();
        }
        std::fs::write(project.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(project.join("config"), "[core]\n\tbare = false\n").unwrap();
        assert!(Repository::find(&project).is_none());
        std::fs::create_dir_all(outer.path().join(".git")).unwrap();
        let found = Repository::find(&project).unwrap();
        assert_eq!(found.work_tree, outer.path().canonicalize().unwrap());
    }
}
