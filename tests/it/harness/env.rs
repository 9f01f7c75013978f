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

use serde_json::Value;
use tempfile::TempDir;

use super::Project;
use super::credential_helper::CredHelper;
use super::process::{Output, run, run_with_stdin};

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

    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Env {
        self.vars.push((name.into(), value.into()));
        self
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
