//! Host names of a test's own: eigenpub run in a mount namespace where `/etc/hosts` is a
//! file the test wrote, so that a name such as `registry-example.com` reaches a server on
//! loopback.
//!
//! It exists for the tests of where credentials go by name (a look-alike host must not get
//! another host's credentials): eigenpub must treat such a name as another machine (HTTPS,
//! credentials only where they belong), yet every packet stays on loopback. Only
//! eigenpub's view of `/etc/hosts` changes (`unshare --mount`, then a bind mount that
//! vanishes with the process); the machine's own file is never written.

use std::ffi::OsStr;
use std::fs;
use std::process::Command;

use tempfile::TempDir;

/// An `/etc/hosts` of a test's own.
pub struct Hosts {
    dir: TempDir,
}

impl Hosts {
    /// `names`, each mapped to its address, and `localhost` as usual.
    pub fn new(names: &[(&str, &str)]) -> Hosts {
        let dir = tempfile::Builder::new()
            .prefix("eigenpub-it-hosts-")
            .tempdir()
            .expect("create hosts dir");
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (name, ip) in names {
            text.push_str(&format!("{ip} {name}\n"));
        }
        fs::write(dir.path().join("hosts"), text).expect("write hosts");
        Hosts { dir }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("hosts")
    }

    /// `cmd` (a program, arguments, folder and environment), run where `/etc/hosts` is
    /// this file.
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut wrapped = Command::new("unshare");
        wrapped
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
            .arg(self.path())
            .arg(cmd.get_program())
            .args(cmd.get_args());
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => wrapped.env(key, v),
                None => wrapped.env_remove(key),
            };
        }
        wrapped
    }
}

/// Asserts that the wrapped world works: `getent` sees `name` at `ip`.
pub fn assert_resolves(hosts: &Hosts, name: &str, ip: &str) {
    let mut getent = Command::new("getent");
    getent.args([OsStr::new("hosts"), OsStr::new(name)]);
    let out = super::process::run(hosts.wrap(&getent));
    assert!(
        out.code == 0 && out.stdout.contains(ip),
        "{name} does not resolve to {ip} in the test's mount namespace (needs root and unshare): {out}"
    );
}
