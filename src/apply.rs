//! Carrying out a plan: push exactly the artifacts that changed, concurrently, each blob
//! at most once per repository, blobs before the manifest that names them.
//!
//! A manifest is pushed only after every blob it names is confirmed present, so an
//! interrupted run never leaves a tag pointing at missing content, and a re-run pushes only
//! what is still missing. The manifest is pushed as the exact bytes eigenpub computed and
//! the digest the target reports is checked against the computed one. Independent artifacts
//! go on when one fails, unless the run is stopped (fail-fast or Ctrl-C): then nothing new
//! is started, and what was not started is reported as such.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use tokio::sync::OnceCell;

use crate::artifact::Blob;
use crate::plan::{Action, Change, Plan};
use crate::registry::{Target, TargetError, Targets};

/// What happened to one artifact.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Pushed; the digest the target reported (equal to the planned one).
    Pushed { digest: String },
    /// Nothing to do: the tag already held this artifact.
    Unchanged,
    /// Failed; the target's error.
    Failed(TargetError),
    /// Not attempted because the run was stopped.
    NotStarted,
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Pushed { .. } => "pushed",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed(_) => "failed",
            Outcome::NotStarted => "not-started",
        }
    }
}

/// Totals of an apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub pushed: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub not_started: usize,
}

pub fn totals(outcomes: &[Outcome]) -> Totals {
    let mut t = Totals::default();
    for o in outcomes {
        match o {
            Outcome::Pushed { .. } => t.pushed += 1,
            Outcome::Unchanged => t.unchanged += 1,
            Outcome::Failed(_) => t.failed += 1,
            Outcome::NotStarted => t.not_started += 1,
        }
    }
    t
}

/// Hears about progress as artifacts start and finish (the CLI draws bars or prints lines).
pub trait Progress: Sync {
    fn started(&self, _change: &Change) {}
    fn finished(&self, _change: &Change, _outcome: &Outcome) {}
}

/// No progress output.
pub struct Silent;
impl Progress for Silent {}

/// How an apply runs.
pub struct Options {
    pub concurrency: usize,
    pub fail_fast: bool,
    /// Set (by Ctrl-C, or by fail-fast) to stop starting new work.
    pub stop: Arc<AtomicBool>,
    /// Set by Ctrl-C/SIGTERM: in-flight artifacts get `grace` to finish, then are cancelled.
    pub interrupted: Arc<AtomicBool>,
    pub grace: std::time::Duration,
}

/// One cell per `(repository, digest)`: set once the blob is known to be there.
type Cells = HashMap<(String, String), Arc<OnceCell<()>>>;

/// Which blobs are known present in which repository, shared by the whole run.
#[derive(Default)]
struct Ledger {
    cells: std::sync::Mutex<Cells>,
    /// Per `(registry, digest)`: a repository of that registry known to hold the blob,
    /// so another repository can mount it instead of uploading it again.
    holders: std::sync::Mutex<HashMap<(String, String), String>>,
}

impl Ledger {
    /// Makes sure a blob is in a repository, uploading it only when absent. Concurrent
    /// callers for the same blob and repository share one check and one upload.
    async fn ensure(&self, key: &str, target: &Target, blob: &Blob) -> Result<(), TargetError> {
        let cell = self
            .cells
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((key.to_string(), blob.digest.clone()))
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let holder_key = target
                .registry()
                .map(|r| (r.to_string(), blob.digest.clone()));
            let from = holder_key.as_ref().and_then(|k| {
                self.holders
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(k)
                    .cloned()
            });
            target.ensure_blob(blob, from.as_deref()).await?;
            if let (Some(k), Some(repository)) = (holder_key, target.repository()) {
                self.holders
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(k)
                    .or_insert_with(|| repository.to_string());
            }
            Ok::<(), TargetError>(())
        })
        .await?;
        Ok(())
    }
}

/// Applies a plan. Refused overwrites must have been dealt with before (the CLI refuses
/// to start); here they are reported as not started.
pub async fn apply(
    plan: &Plan,
    targets: &Targets,
    options: &Options,
    progress: &dyn Progress,
) -> Vec<Outcome> {
    let ledger = Ledger::default();
    let outcomes: std::sync::Mutex<Vec<Option<Outcome>>> =
        std::sync::Mutex::new(vec![None; plan.changes.len()]);
    let started: std::sync::Mutex<Vec<bool>> =
        std::sync::Mutex::new(vec![false; plan.changes.len()]);
    let work = futures::stream::iter(plan.changes.iter().enumerate())
        .map(|(i, change)| {
            let (ledger, outcomes, started) = (&ledger, &outcomes, &started);
            async move {
                let outcome = match &change.action {
                    Action::Unchanged => Outcome::Unchanged,
                    Action::Refused { .. } => Outcome::NotStarted,
                    Action::Create | Action::Update { .. } | Action::Retag { .. } => {
                        if options.stop.load(Ordering::SeqCst) {
                            Outcome::NotStarted
                        } else {
                            started.lock().unwrap_or_else(|e| e.into_inner())[i] = true;
                            progress.started(change);
                            let outcome = match push(change, targets, ledger).await {
                                Ok(digest) => Outcome::Pushed { digest },
                                Err(e) => {
                                    if options.fail_fast {
                                        options.stop.store(true, Ordering::SeqCst);
                                    }
                                    Outcome::Failed(e)
                                }
                            };
                            progress.finished(change, &outcome);
                            outcome
                        }
                    }
                };
                outcomes.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .for_each(|()| async {});
    // Once the run is interrupted, in-flight artifacts get a grace period to finish; then they
    // are cancelled. Cancelling is safe: a manifest is only pushed after its blobs, so no
    // tag can point at content that did not land.
    let grace = async {
        while !options.interrupted.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tokio::time::sleep(options.grace).await;
    };
    tokio::select! {
        _ = work => {}
        _ = grace => {}
    }
    let started = started.into_inner().unwrap_or_else(|e| e.into_inner());
    outcomes
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .enumerate()
        .map(|(i, o)| match o {
            Some(o) => o,
            None if started[i] => Outcome::Failed(TargetError {
                target: plan.changes[i].publication.repository.to_string(),
                code: "eigenpub::apply::interrupted",
                message: format!(
                    "{}: interrupted before it finished; its tag may or may not have been written (if it was, it is complete)",
                    plan.changes[i].publication.reference()
                ),
                help: "run apply again: it pushes whatever is still missing".into(),
                transient: true,
            }),
            None => Outcome::NotStarted,
        })
        .collect()
}

/// Pushes one artifact: its blobs (each once per repository), then its manifest.
async fn push(change: &Change, targets: &Targets, ledger: &Ledger) -> Result<String, TargetError> {
    let p = &change.publication;
    let target = targets.target(&p.repository);
    let key = p.repository.to_string();
    // A retag's manifest is already in the repository, and with it its blobs.
    if !matches!(change.action, Action::Retag { .. }) {
        for blob in p.artifact.blobs() {
            ledger.ensure(&key, &target, blob).await?;
        }
    }
    let reported = target.push_manifest(&p.tag, &p.artifact.manifest).await?;
    if reported != p.artifact.digest() {
        return Err(TargetError {
            target: key.clone(),
            code: "eigenpub::registry::digest-mismatch",
            message: format!(
                "{}: the target reports digest {reported} for the manifest eigenpub computed as {}",
                p.reference(),
                p.artifact.digest()
            ),
            help: "the registry rewrote the manifest; eigenpub's digests would not match what is stored. Report this registry's behaviour".into(),
            transient: false,
        });
    }
    Ok(reported)
}
