//! The environment eigenpub runs in when a test is about credentials.
//!
//! It exists so that such tests give eigenpub a Docker config folder of their own
//! (`DOCKER_CONFIG`), the `EIGENPUB_REGISTRY_<HOST>_*` variables they set, and a
//! credential helper first on `PATH`, while everything else comes from
//! [`eigenpub`](super::eigenpub)'s hermetic environment. The developer's own
//! credentials never leak in.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use tempfile::TempDir;

use super::Project;
use super::credential_helper::CredHelper;
use super::process::{Output, run, run_with_stdin};
use super::secrets::Secret;

/// A Docker config folder of a test's own, variables, and a folder put first on `PATH`.
pub struct Env {
    pub docker_config: TempDir,
    vars: Vec<(String, String)>,
    path_prepend: Option<PathBuf>,
}

impl Env {
    /// An empty Docker config folder of this test's own, no variables.
    pub fn new() -> Env {
        Env {
            docker_config: tempfile::Builder::new()
                .prefix("eigenpub-it-docker-config-")
                .tempdir()
                .expect("create DOCKER_CONFIG dir"),
            vars: Vec::new(),
            path_prepend: None,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.docker_config.path().join("config.json")
    }

    pub fn write_config(&self, config: &Value) -> &Self {
        fs::write(
            self.config_path(),
            serde_json::to_vec_pretty(config).expect("serialize config"),
        )
        .expect("write config.json");
        self
    }

    /// With `config` written as `config.json`.
    pub fn with_config(self, config: &Value) -> Env {
        self.write_config(config);
        self
    }

    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Env {
        self.vars.push((name.into(), value.into()));
        self
    }

    /// `EIGENPUB_REGISTRY_<HOST>_USERNAME` and `_PASSWORD` set to `secret`'s.
    pub fn registry_vars(self, host: &str, secret: &Secret) -> Env {
        let prefix = registry_var_prefix(host);
        self.var(format!("{prefix}_USERNAME"), &secret.user)
            .var(format!("{prefix}_PASSWORD"), &secret.password)
    }

    /// `registry_vars`, and the same pair under the name eigenpub read before 0.2 (see
    /// [`old_registry_var_prefix`]), so that a test of where credentials go fails on the
    /// old code for the reason it tests, not for not finding them.
    pub fn registry_vars_old_and_new(self, host: &str, secret: &Secret) -> Env {
        let old = old_registry_var_prefix(host);
        self.registry_vars(host, secret)
            .var(format!("{old}_USERNAME"), &secret.user)
            .var(format!("{old}_PASSWORD"), &secret.password)
    }

    /// An environment whose `config.json` holds `secret` in `auths` for `key`
    /// (a host, or a URL as older Docker versions write), as `base64(user:password)`.
    pub fn with_auths(key: &str, secret: &Secret) -> Env {
        Env::new().with_config(&json!({"auths": {key: {"auth": secret.basic()}}}))
    }

    /// Put `helper`'s folder first on PATH (for eigenpub only).
    pub fn with_helper(mut self, helper: &CredHelper) -> Env {
        self.path_prepend = Some(helper.bin_dir());
        self
    }

    pub fn command(&self, project: &Project, args: &[&str]) -> Command {
        let mut cmd = project.eigenpub(args);
        cmd.env("DOCKER_CONFIG", self.docker_config.path());
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.path_prepend {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", dir.display()));
        }
        cmd
    }

    pub fn run(&self, project: &Project, args: &[&str]) -> Output {
        let out = run(self.command(project, args));
        out.no_panic();
        out
    }

    /// `echo PASSWORD | eigenpub login HOST -u USER --password-stdin`.
    pub fn login(&self, project: &Project, host: &str, user: &str, password: &str) -> Output {
        let cmd = self.command(project, &["login", host, "-u", user, "--password-stdin"]);
        let out = run_with_stdin(cmd, &format!("{password}\n"));
        out.no_panic();
        out
    }
}

/// `EIGENPUB_REGISTRY_<HOST>` for `host` (`IP:PORT` or a name), as the README says:
/// upper-cased, `.` as `_`, `-` as `__`, the `:` before the port as `___`.
pub fn registry_var_prefix(host: &str) -> String {
    let mut name = String::from("EIGENPUB_REGISTRY_");
    for c in host.chars() {
        match c {
            '.' => name.push('_'),
            '-' => name.push_str("__"),
            ':' => name.push_str("___"),
            c => name.push(c.to_ascii_uppercase()),
        }
    }
    name
}

/// The name the variables had before eigenpub 0.2, when every character other than a
/// letter or digit became `_` (and `registry.example.com` and `registry-example.com`
/// shared one): what the look-alike tests set besides the right one.
pub fn old_registry_var_prefix(host: &str) -> String {
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("EIGENPUB_REGISTRY_{host}")
}
