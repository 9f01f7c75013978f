//! eigenpub: publish EigenRuntime specifications to OCI registries, declaratively.
//!
//! The pipeline, pure in the middle and with side effects at the edges:
//! [`load`] reads `eigenruntime.toml` and the specs into [`load::Publication`]s (exact
//! [`artifact::Artifact`] bytes); [`plan::observe`] reads one digest per tag from the
//! [`target`]s; [`plan::diff`] decides the actions; [`apply::apply`] pushes what changed.
//! [`commands`] ties them to the command line; [`report`] renders results.

// `Problem` is large, but it is only built on the error path, where boxing buys nothing.
#![allow(clippy::result_large_err)]

pub mod apply;
pub mod artifact;
pub mod atomic;
pub mod cli;
pub mod commands;
pub mod created;
pub mod credentials;
pub mod diagnostic;
pub mod discover;
pub mod load;
pub mod plan;
pub mod previous;
pub mod project;
pub mod reference;
pub mod release;
pub mod report;
pub mod saved;
pub mod schema;
pub mod select;
pub mod spec;
pub mod target;
