//! eigenpub: publish EigenRuntime specifications to OCI registries, declaratively.
//!
//! The pipeline, pure in the middle and with side effects at the edges, one folder a stage:
//!
//! ```text
//! cli/ ─▶ commands/ ─▶ project/ ─▶ artifact ─▶ plan/ ─▶ apply ─▶ report/
//!                      (toml, specs,  (exact     (observe,  (push)   (text, json,
//!                       schemas)       bytes)     diff)               markdown)
//!                                         └──── registry/ (remote, layout) ───┘
//! ```
//!
//! [`project`] reads `eigenruntime.toml` and the specs into [`project::Publication`]s (exact
//! [`artifact::Artifact`] bytes); [`plan::observe`] reads one digest per tag from the
//! [`registry`] backends; [`plan::diff`] decides the actions; [`apply::apply`] pushes what
//! changed. [`commands`] ties them to the command line; [`report`] renders results.

// `Problem` is large, but it is only built on the error path, where boxing buys nothing.
#![allow(clippy::result_large_err)]

pub mod apply;
pub mod artifact;
pub mod atomic;
pub mod cli;
pub mod commands;
pub mod diagnostic;
pub mod plan;
pub mod project;
pub mod reference;
pub mod registry;
pub mod report;
pub mod sanitize;
