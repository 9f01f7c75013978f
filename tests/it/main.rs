//! The single integration-test binary for `eigenpub` (cargo target `it`).
//!
//! It exists so that the CLI is exercised the way a user runs it: the built
//! binary, a real `docker-registry` (CNCF distribution) process on loopback,
//! real OCI image layouts on disk, and `skopeo` as an independent reader of what
//! was pushed. One binary (rather than one per file under `tests/`) keeps link
//! time down and lets every topic share the harness in `harness/` (one module a
//! part: registry process, bounded process runner, HTTP/1.1 helper, fault proxy,
//! PKI, token service, credential helper). Tests are grouped by topic in sibling
//! modules (`auth/` by sub-topic).

mod harness;
mod hostile;

mod action;
mod attack;
mod auth;
mod cache;
mod children;
mod cli;
mod contract;
mod core;
mod diagnostics;
mod faults;
mod lock;
mod mirrors;
mod partial;
mod progress;
mod redirects;
mod registries;
mod security;
mod transport;
mod trust;
