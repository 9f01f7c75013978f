//! A credential helper speaking Docker's protocol, for tests of where credentials
//! come from and where `login` stores them.
//!
//! It exists so that `credHelpers` and `credsStore` are tested against a real
//! program found on `PATH` the way Docker finds one (`docker-credential-<name>`),
//! a shell script whose every call leaves a trace the test can read.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::{Value, json};
use tempfile::TempDir;

/// The name of the test credential helper: `docker-credential-eigentest`.
pub const HELPER: &str = "eigentest";

/// `docker-credential-eigentest` in a folder of its own. `get` answers from
/// `<state>/store.json` when it names the asked server (else "not found", exit 1,
/// as real helpers do) and logs each asked server URL to `<state>/get.log`;
/// `store` saves its stdin to `<state>/store.json` verbatim.
pub struct CredHelper {
    dir: TempDir,
}

impl CredHelper {
    pub fn install() -> CredHelper {
        let dir = tempfile::Builder::new()
            .prefix("eigenpub-it-helper-")
            .tempdir()
            .expect("create helper dir");
        let state = dir.path().join("state");
        fs::create_dir_all(dir.path().join("bin")).expect("create helper bin dir");
        fs::create_dir_all(&state).expect("create helper state dir");
        let script = format!(
            r#"#!/bin/sh
# docker-credential-{HELPER}: a credential helper for eigenpub's tests.
state='{state}'
case "$1" in
  get)
    url=$(cat)
    printf '%s\n' "$url" >> "$state/get.log"
    if [ -f "$state/store.json" ] && grep -qF "\"$url\"" "$state/store.json"; then
      cat "$state/store.json"
      exit 0
    fi
    echo "credentials not found in native keychain"
    exit 1
    ;;
  store)
    cat > "$state/store.json"
    echo store >> "$state/calls.log"
    ;;
  erase)
    cat > /dev/null
    echo erase >> "$state/calls.log"
    ;;
  list)
    echo '{{}}'
    ;;
  *)
    echo "unknown action $1" >&2
    exit 2
    ;;
esac
"#,
            state = state.display()
        );
        let path = dir.path().join(format!("bin/docker-credential-{HELPER}"));
        fs::write(&path, script).expect("write helper script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod helper");
        CredHelper { dir }
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn state(&self, name: &str) -> PathBuf {
        self.dir.path().join("state").join(name)
    }

    /// Make the helper hold credentials for `server`.
    pub fn hold(&self, server: &str, user: &str, password: &str) {
        let entry = json!({"ServerURL": server, "Username": user, "Secret": password});
        fs::write(self.state("store.json"), entry.to_string()).expect("write helper store");
    }

    /// The server URLs `get` was asked for, in order.
    pub fn gets(&self) -> Vec<String> {
        fs::read_to_string(self.state("get.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// What `store` received, parsed, if it was called.
    pub fn stored(&self) -> Option<Value> {
        let text = fs::read_to_string(self.state("store.json")).ok()?;
        Some(serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("the helper's store received something that is not JSON ({e}): {text}")
        }))
    }

    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.state("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}
