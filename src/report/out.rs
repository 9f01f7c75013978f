//! Standard output that never panics. `println!` panics when standard output is closed
//! (`eigenpub apply | head -1`: the reader exits, the next write fails with a broken
//! pipe), which would abort an apply in the middle of its pushes. Results are written here
//! instead: after the first failed write, output is dropped silently and the work goes on;
//! the exit code still says how the work went, and [`closed`] lets a command mention it.
//!
//! Everything written here passes [`crate::sanitize::guard`]: whatever a renderer
//! put in (a project's folder name, a registry's text), no line of standard output can
//! start a GitHub Actions workflow command in a job log, and no bidirectional override or
//! C1 control reaches a terminal raw. The escapes it uses are also valid in JSON strings,
//! so JSON documents pass through it unchanged in meaning.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to standard output (and flushes), unless it was found closed.
pub fn print(text: &str) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let text = crate::sanitize::guard(text);
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Writes `text` and a line break.
pub fn line(text: &str) {
    let mut owned = String::with_capacity(text.len() + 1);
    owned.push_str(text);
    owned.push('\n');
    print(&owned);
}

/// True once a write to standard output has failed.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}
