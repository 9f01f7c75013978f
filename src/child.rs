//! The one place eigenpub starts another program: git (for `created = "git"`) and Docker
//! credential helpers.
//!
//! A pull request controls the project folder, and CI runs eigenpub there with registry
//! passwords in its environment. So a child never inherits eigenpub's environment as it is:
//! git gets a fixed environment eigenpub writes ([`Environment::Fixed`]); a credential
//! helper, which is the operator's own program and may need the operator's variables (a
//! cloud helper reads `AWS_*`), gets them less every `EIGENPUB_*` variable
//! ([`Environment::OperatorLessEigenpub`]). Either way no `EIGENPUB_REGISTRY_*` secret
//! reaches a child. The program is looked up on `PATH` by eigenpub, in absolute folders
//! only, so that a `.` or an empty entry in `PATH` never runs a program planted in the
//! project folder; names with a `/` are refused.
//!
//! Every child gets a deadline: when it passes, the child is killed together with every
//! process it started (it runs in its own process group). What it prints is read up to a
//! bound, and never echoed by this module.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The variables a child starts with.
pub enum Environment {
    /// Only these, plus `PATH` (its absolute folders) and `LC_ALL=C`.
    Fixed(Vec<(&'static str, OsString)>),
    /// The operator's environment less every variable whose name starts with `EIGENPUB_`,
    /// with `PATH` reduced to its absolute folders.
    OperatorLessEigenpub,
}

/// A program to run, and how.
pub struct Launch<'a> {
    /// A bare program name, looked up on `PATH`, or an absolute path (see [`find_program`]).
    pub program: &'a str,
    pub args: Vec<OsString>,
    pub env: Environment,
    /// The working folder.
    pub dir: &'a Path,
    /// Written to standard input (which is closed after it); empty means no input at all.
    pub input: &'a [u8],
    pub timeout: Duration,
    /// The most of standard output, and of standard error, that is read.
    pub output_limit: u64,
}

/// What a child did.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// True when standard output went past the limit (what was read is kept).
    pub truncated: bool,
}

/// Why a child gave no answer.
#[derive(Debug)]
pub enum ChildError {
    /// Not found on `PATH` (in its absolute folders), or not a bare program name.
    NotFound(String),
    /// It could not be started.
    Start(std::io::Error),
    /// It did not finish in time and was killed, with its children.
    TimedOut(Duration),
}

impl std::fmt::Display for ChildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChildError::NotFound(name) if name.contains('/') => write!(
                f,
                "`{name}` is not a program name (a name with `/` is refused, so that no file in the project folder is run)"
            ),
            ChildError::NotFound(name) => write!(
                f,
                "`{name}` is not found in the absolute folders of PATH (relative entries of PATH, and folders inside the project or its repository, are not searched, even when $HOME is one of them): install it in a folder outside the project, such as /usr/local/bin"
            ),
            ChildError::Start(e) => write!(f, "cannot run it: {e}"),
            ChildError::TimedOut(t) => write!(
                f,
                "it did not finish within {} s and was stopped, with every process it started",
                t.as_secs_f64()
            ),
        }
    }
}

/// Folders whose files a pull request may have written (the project's folder and its
/// repository's work tree): no program is run from them, even through an absolute `PATH`
/// entry (CI jobs add `$GITHUB_WORKSPACE/.venv/bin` or `$PWD/bin` to `PATH`).
static DISTRUSTED: std::sync::RwLock<Vec<PathBuf>> = std::sync::RwLock::new(Vec::new());

/// Marks `folder` (and everything below it) as one no program is run from.
pub fn distrust(folder: &Path) {
    if let Ok(folder) = folder.canonicalize() {
        let mut all = DISTRUSTED.write().unwrap_or_else(|e| e.into_inner());
        if !all.contains(&folder) {
            all.push(folder);
        }
    }
}

/// Whether a `PATH` folder may hold programs eigenpub runs: absolute, and not in a
/// distrusted folder.
fn trusted_folder(folder: &Path) -> bool {
    if !folder.is_absolute() {
        return false;
    }
    let distrusted = DISTRUSTED.read().unwrap_or_else(|e| e.into_inner());
    if distrusted.is_empty() {
        return true;
    }
    let real = folder
        .canonicalize()
        .unwrap_or_else(|_| folder.to_path_buf());
    !distrusted.iter().any(|d| real.starts_with(d))
}

/// `PATH`'s absolute folders, in order, less those in distrusted folders ([`distrust`]):
/// a relative entry (`.`, `bin`, or an empty one, which means the working folder) would
/// look for programs in whatever folder a child runs in.
pub fn absolute_path() -> OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let folders: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|p| trusted_folder(p))
        .collect();
    std::env::join_paths(folders).unwrap_or_default()
}

/// Where `name` is on `PATH`, searching its absolute folders only. An absolute path is
/// taken as it is; `None` for a relative name with a `/` (it would be relative to some
/// folder) or a name found nowhere.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if Path::new(name).is_absolute() {
        return is_executable(Path::new(name)).then(|| PathBuf::from(name));
    }
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return None;
    }
    std::env::split_paths(&absolute_path())
        .map(|folder| folder.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

/// Whether a variable of the operator's environment is kept for a credential helper.
fn kept_for_helper(name: &OsStr) -> bool {
    let name = name.to_string_lossy().to_ascii_uppercase();
    !name.starts_with("EIGENPUB_") && name != "PATH"
}

/// Runs a child to its end or its deadline.
pub fn run(launch: Launch<'_>) -> Result<Finished, ChildError> {
    let program =
        find_program(launch.program).ok_or_else(|| ChildError::NotFound(launch.program.into()))?;
    let mut command = Command::new(program);
    command
        .args(&launch.args)
        .current_dir(launch.dir)
        .env_clear()
        .env("PATH", absolute_path())
        .stdin(if launch.input.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match launch.env {
        Environment::Fixed(vars) => {
            command.env("LC_ALL", "C");
            command.envs(vars);
        }
        Environment::OperatorLessEigenpub => {
            command.envs(std::env::vars_os().filter(|(name, _)| kept_for_helper(name)));
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let mut child = spawn(&mut command)?;
    let deadline = Instant::now() + launch.timeout;
    let limit = launch.output_limit;
    let stdout = child.stdout.take().map(|pipe| reader(pipe, limit));
    let stderr = child.stderr.take().map(|pipe| reader(pipe, limit));
    if let Some(mut stdin) = child.stdin.take() {
        let input = launch.input.to_vec();
        // In a thread: a child that never reads must not block eigenpub on a full pipe.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                kill_group(&mut child);
                return Err(ChildError::TimedOut(launch.timeout));
            }
        }
    };
    // The child has exited; its output is complete unless a process it left behind still
    // holds the pipe, which is not waited for long.
    let collect = |rx: Option<mpsc::Receiver<Vec<u8>>>| {
        rx.and_then(|rx| rx.recv_timeout(Duration::from_secs(1)).ok())
            .unwrap_or_default()
    };
    let mut stdout = collect(stdout);
    let mut stderr = collect(stderr);
    let truncated = stdout.len() as u64 > limit;
    stdout.truncate(limit as usize);
    stderr.truncate(limit as usize);
    Ok(Finished {
        status,
        stdout,
        stderr,
        truncated,
    })
}

/// Starts the child. A program file that is still open for writing somewhere (just
/// installed or updated, or held by another fork of this process) cannot be run for a
/// moment (`ETXTBSY`): that is tried again a few times.
fn spawn(command: &mut Command) -> Result<std::process::Child, ChildError> {
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 10 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.map_err(ChildError::Start),
        }
    }
}

/// Reads a pipe up to one byte past `limit` (so that going past it shows), then drops it.
fn reader(pipe: impl Read + Send + 'static, limit: u64) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.take(limit + 1).read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Kills the child and everything in its process group, and reaps it.
#[allow(unsafe_code)]
fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid signals the process group the child leads
        // (it was started with process_group(0)); it touches no memory.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn eigenpub_variables_are_never_kept_for_a_helper() {
        for name in [
            "EIGENPUB_REGISTRY_GHCR_IO_PASSWORD",
            "eigenpub_registry_x_password",
            "EIGENPUB_CREDENTIAL_HELPER_TIMEOUT",
            "PATH",
        ] {
            assert!(!kept_for_helper(OsStr::new(name)), "{name}");
        }
        for name in ["HOME", "AWS_PROFILE", "DBUS_SESSION_BUS_ADDRESS"] {
            assert!(kept_for_helper(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn program_names_with_a_slash_are_not_looked_up() {
        assert_eq!(find_program("../sh"), None);
        assert_eq!(find_program("./sh"), None);
        assert_eq!(find_program(""), None);
        assert!(find_program("sh").is_some_and(|p| p.is_absolute()));
    }
}
