//! Secrets for tests, and the check that eigenpub never printed or wrote them.
//!
//! It exists because a leak is found by searching for the secret, in every
//! spelling a program could use (the password, `base64(user:password)` as in a
//! Basic header or `auths`, the password's own base64), in everything eigenpub
//! printed and every file it wrote. Passwords are random per test
//! (`s3cret-Pa55-<hex>`), so a plain substring search cannot be fooled by a
//! fixture that happens to contain them.

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::time::Instant;

use base64::Engine as _;

use super::process::Output;

/// A user name and a distinctive random password.
pub struct Secret {
    pub user: String,
    pub password: String,
}

impl Secret {
    pub fn new(user: &str) -> Secret {
        let random = RandomState::new().hash_one((std::process::id(), Instant::now()));
        Secret {
            user: user.to_string(),
            password: format!("s3cret-Pa55-{random:016x}"),
        }
    }

    /// `base64(user:password)`, as in `auths.<host>.auth` and a Basic header.
    pub fn basic(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.user, self.password))
    }

    /// Every spelling of the secret that must never be printed or written.
    pub fn forms(&self) -> Vec<String> {
        let basic = self.basic();
        vec![
            self.password.clone(),
            basic.trim_end_matches('=').to_string(),
            base64::engine::general_purpose::STANDARD.encode(&self.password),
        ]
    }
}

/// Everything eigenpub printed and wrote in a test, to be searched for secrets.
#[derive(Default)]
pub struct Transcript {
    pub pieces: Vec<(String, String)>,
}

impl Transcript {
    /// A transcript of these runs' output, each with its label.
    pub fn of(runs: &[(&str, &Output)]) -> Transcript {
        let mut t = Transcript::default();
        for (label, out) in runs {
            t.output(label, out);
        }
        t
    }

    /// Record both streams of a run.
    pub fn output(&mut self, label: &str, out: &Output) {
        self.pieces
            .push((format!("stdout of {label}"), out.stdout.clone()));
        self.pieces
            .push((format!("stderr of {label}"), out.stderr.clone()));
    }

    /// Record every file under `dir` (recursively), as lossy text.
    pub fn dir(&mut self, dir: &Path) {
        for path in files_under(dir) {
            let bytes = fs::read(&path).unwrap_or_default();
            self.pieces.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }

    /// Panic if any spelling of any of `secrets` appears anywhere recorded.
    #[track_caller]
    pub fn assert_free_of(&self, secrets: &[&Secret]) {
        assert!(!self.pieces.is_empty(), "nothing was recorded");
        for secret in secrets {
            for form in secret.forms() {
                for (label, text) in &self.pieces {
                    assert!(
                        !text.contains(&form),
                        "the secret {form:?} appears in {label}:\n{text}"
                    );
                }
            }
        }
    }
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

impl Transcript {
    /// Add what another transcript recorded.
    pub fn extend(&mut self, other: Transcript) {
        self.pieces.extend(other.pieces);
    }
}
