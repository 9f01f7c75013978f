//! Running programs from tests, always bounded in time.
//!
//! It exists so that no test can hang on a program that does not finish: [`run`]
//! and its variants kill a command after [`RUN_TIMEOUT`] and panic with what it
//! printed, and [`Running`] keeps a program in the background (to interrupt or kill
//! it mid-run) while collecting its output. Exit codes of programs killed by a
//! signal are `128 + signal`, as a shell reports them.

use std::fmt;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest any single command (eigenpub, skopeo, git, htpasswd) may run.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What a finished command did.
pub struct Output {
    /// Exit code; `128 + signal` when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panic (showing both streams) unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }

    /// Panic unless the command exited 0.
    #[track_caller]
    pub fn success(&self) -> &Self {
        self.expect_code(0)
    }

    /// Panic if the program reported a Rust panic.
    #[track_caller]
    pub fn no_panic(&self) -> &Self {
        assert!(
            !self.stderr.contains("panicked") && !self.stdout.contains("panicked"),
            "the program panicked\n{self}"
        );
        self
    }

    /// Lines of stdout, trimmed.
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().map(str::trim).collect()
    }

    /// stderr as one line: diagnostics are wrapped to the terminal's width, their lines
    /// led by `│`.
    pub fn stderr_flat(&self) -> String {
        self.stderr
            .split_whitespace()
            .filter(|w| *w != "│")
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Like [`Output`] with stdout kept as bytes.
pub struct BytesOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Run `cmd` to completion (stdin closed), killing it and panicking with a clear
/// message if it takes longer than [`RUN_TIMEOUT`].
pub fn run(cmd: Command) -> Output {
    let out = run_bytes(cmd);
    Output {
        code: out.code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: out.stderr,
    }
}

/// [`run`] returning stdout as bytes.
pub fn run_bytes(cmd: Command) -> BytesOutput {
    run_bytes_with_stdin(cmd, None)
}

/// Like [`run`], with `input` piped to stdin.
pub fn run_with_stdin(cmd: Command, input: &str) -> Output {
    let out = run_bytes_with_stdin(cmd, Some(input.as_bytes()));
    Output {
        code: out.code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: out.stderr,
    }
}

/// The one bounded runner: stdin closed, or fed `input`; killed after [`RUN_TIMEOUT`].
fn run_bytes_with_stdin(mut cmd: Command, input: Option<&[u8]>) -> BytesOutput {
    use std::os::unix::process::ExitStatusExt;

    let description = format!("{cmd:?}");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
    let stdout = read_in_background(child.stdout.take().expect("stdout pipe"));
    let stderr = read_in_background(child.stderr.take().expect("stderr pipe"));
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // The program may exit before reading (e.g. a usage error): ignore EPIPE.
        let _ = stdin.write_all(input);
    }
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let out = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
                let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
                panic!(
                    "{description} did not finish within {RUN_TIMEOUT:?} and was killed\n\
                     --- stdout ---\n{out}\n--- stderr ---\n{err}"
                );
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {description}: {e}"),
        }
    };
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    BytesOutput {
        code,
        stdout: stdout.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned(),
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// An `eigenpub` process whose output is collected while it runs.
pub struct Running {
    child: Child,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = read_in_background(child.stdout.take().expect("stdout"));
        let stderr = read_in_background(child.stderr.take().expect("stderr"));
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// The process id, e.g. to signal it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn finished(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits at most `limit` for the process to exit: `Ok` with what it printed, or, when
    /// it did not exit in time, `Err` with what it printed before it was killed (SIGKILL).
    pub fn wait_at_most(mut self, limit: Duration) -> Result<Output, Output> {
        use std::os::unix::process::ExitStatusExt;
        let deadline = Instant::now() + limit;
        let (status, in_time) = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break (status, true);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break (self.child.wait().expect("wait"), false);
            }
            thread::sleep(Duration::from_millis(20));
        };
        let out = Output {
            code: status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&self.stdout.join().unwrap_or_default()).into_owned(),
            stderr: String::from_utf8_lossy(&self.stderr.join().unwrap_or_default()).into_owned(),
        };
        if in_time { Ok(out) } else { Err(out) }
    }
}

/// Whether the process `pid` (as written to a file by a test's script) is gone or a zombie
/// within `grace`. A SIGKILL takes effect when the process next runs, which on a loaded
/// machine can be a moment after the program that sent it has exited. A process still
/// alive then is killed, so that a failing test leaves nothing behind.
pub fn dies_within(pid: &str, grace: Duration) -> bool {
    let alive = || {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        !stat.is_empty() && !stat.contains(") Z ")
    };
    let start = Instant::now();
    while alive() {
        if start.elapsed() > grace {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}
